-- Administration: a forced re-enrolment pending on a user, fraud alerts opened by clone
-- signals, time-boxed exceptions to the policy, and resumable bulk actions over credentials.
ALTER TABLE users ADD COLUMN re_enrol_reason TEXT;

CREATE TABLE fraud_alerts (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    kind           TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    credential_id  TEXT,
    status         TEXT NOT NULL,
    opened_at      BIGINT NOT NULL,
    details        TEXT NOT NULL,
    resolved_by    TEXT,
    resolved_at    BIGINT,
    resolution     TEXT,
    note           TEXT
);
CREATE INDEX fraud_alerts_by_tenant ON fraud_alerts (tenant_id, opened_at);

CREATE TABLE exceptions (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    subject_type  TEXT NOT NULL,
    subject       TEXT NOT NULL,
    rule          TEXT NOT NULL,
    reason        TEXT NOT NULL,
    requested_by  TEXT NOT NULL,
    approved_by   TEXT NOT NULL,
    approval_id   TEXT NOT NULL,
    status        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    announced_at  BIGINT,
    ended_by      TEXT,
    ended_at      BIGINT
);
CREATE INDEX exceptions_by_tenant ON exceptions (tenant_id, status, expires_at);

CREATE TABLE bulk_jobs (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    action           TEXT NOT NULL,
    filter           TEXT NOT NULL,
    reason           TEXT NOT NULL,
    total            BIGINT NOT NULL,
    done             BIGINT NOT NULL,
    last_credential  TEXT,
    status           TEXT NOT NULL,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    finished_at      BIGINT
);
