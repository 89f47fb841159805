-- Reports and the audit API read one action's events in sequence order (e.g. sign-ins by level):
-- an index on (tenant, action, seq) serves them without scanning the whole chain.
CREATE INDEX audit_events_by_action ON audit_events (tenant_id, action, seq);
