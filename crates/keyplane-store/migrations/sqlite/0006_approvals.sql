-- Dual control: requests for a second administrator's approval of a sensitive act, and how
-- each was decided.
CREATE TABLE approvals (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    action        TEXT NOT NULL,
    payload       TEXT NOT NULL,
    summary       TEXT NOT NULL,
    requested_by  TEXT NOT NULL,
    requested_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    status        TEXT NOT NULL,
    decided_by    TEXT,
    decided_at    BIGINT,
    note          TEXT
);
CREATE INDEX approvals_by_tenant ON approvals (tenant_id, requested_at);
