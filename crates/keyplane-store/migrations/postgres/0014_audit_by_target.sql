-- The account page lists a user's recent sign-ins: the newest events about one target, read
-- backwards from the head. An index on (tenant, target, seq) serves that without a scan.
CREATE INDEX audit_events_by_target ON audit_events (tenant_id, target_type, target_id, seq);
