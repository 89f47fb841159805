-- Machine clients: non-human identities Keyplane issues secrets to (admin API tokens, later OIDC
-- clients, SCIM tokens, webhook endpoints). Secrets are kept only as SHA-256 hashes: the current
-- one and, during a rotation's overlap, the previous one. Scopes are a JSON list of permission
-- names.
CREATE TABLE machine_clients (
    id                   TEXT PRIMARY KEY,
    tenant_id            TEXT NOT NULL REFERENCES tenants(id),
    kind                 TEXT NOT NULL,
    name                 TEXT NOT NULL,
    owner_id             TEXT NOT NULL REFERENCES users(id),
    scopes               TEXT NOT NULL,
    status               TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    created_by           TEXT NOT NULL,
    approval_id          TEXT,
    approved_by          TEXT,
    expires_at           BIGINT NOT NULL,
    secret_hash          BLOB UNIQUE,
    previous_hash        BLOB,
    previous_expires_at  BIGINT,
    rotated_at           BIGINT,
    last_used_at         BIGINT,
    revoked_at           BIGINT,
    revoked_by           TEXT,
    revoke_reason        TEXT
);
CREATE INDEX machine_clients_by_tenant ON machine_clients (tenant_id, created_at);
CREATE INDEX machine_clients_by_previous ON machine_clients (previous_hash);
