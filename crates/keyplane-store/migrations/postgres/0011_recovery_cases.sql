-- Help-desk recovery cases (issue 7, path 3). The case itself is a JSON document (`body`, the
-- domain's RecoveryCase); the columns beside it are what is searched and what a change is
-- conditional on (`version`: a change is written only over the version it was read at).
CREATE TABLE recovery_cases (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    user_id     TEXT NOT NULL,
    state       TEXT NOT NULL,
    network     TEXT,
    link_hash   BYTEA,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    version     BIGINT NOT NULL,
    body        TEXT NOT NULL
);
CREATE INDEX recovery_cases_by_user ON recovery_cases (tenant_id, user_id, created_at);
CREATE INDEX recovery_cases_by_network ON recovery_cases (tenant_id, network, created_at);
CREATE INDEX recovery_cases_by_state ON recovery_cases (tenant_id, state);
CREATE UNIQUE INDEX recovery_cases_by_link ON recovery_cases (link_hash);

-- A session opened by a recovery path (`code:<id>` or `case:<id>`): it may only register a
-- passkey, and ends when it has.
ALTER TABLE sessions ADD COLUMN recovery TEXT;
