-- Recovery codes (issue 7, path 2): one row per code, its Argon2id PHC string (never the code),
-- single use (`used_at`). Generating deletes the user's unused codes; used ones stay as history.
CREATE TABLE recovery_codes (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    user_id     TEXT NOT NULL,
    hash        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX recovery_codes_by_user ON recovery_codes (tenant_id, user_id, used_at);
