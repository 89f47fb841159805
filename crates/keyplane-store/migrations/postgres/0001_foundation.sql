-- Foundation schema: tenants, users, enrolments, credentials, ceremonies, sessions.
-- Times are milliseconds since the Unix epoch. Every row carries its tenant.
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    rp_id       TEXT NOT NULL,
    rp_name     TEXT NOT NULL,
    origins     TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE tenant_hostnames (
    hostname    TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id)
);

CREATE TABLE users (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    username     TEXT NOT NULL,
    display_name TEXT NOT NULL,
    user_handle  BYTEA NOT NULL,
    status       TEXT NOT NULL,
    role         TEXT,
    created_at   BIGINT NOT NULL,
    UNIQUE (tenant_id, username),
    UNIQUE (tenant_id, user_handle)
);

CREATE TABLE enrolments (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    user_id     TEXT NOT NULL REFERENCES users(id),
    token_hash  BYTEA NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);

CREATE TABLE credentials (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants(id),
    user_id            TEXT NOT NULL REFERENCES users(id),
    credential_id      BYTEA NOT NULL,
    public_key         BYTEA NOT NULL,
    sign_count         BIGINT NOT NULL,
    aaguid             TEXT NOT NULL,
    transports         TEXT NOT NULL,
    backup_eligible    BIGINT NOT NULL,
    backup_state       BIGINT NOT NULL,
    attestation_format TEXT NOT NULL,
    attestation_type   TEXT NOT NULL,
    user_verified      BIGINT NOT NULL,
    nickname           TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    last_used_at       BIGINT,
    status             TEXT NOT NULL,
    status_reason      TEXT,
    library_state      TEXT NOT NULL,
    UNIQUE (tenant_id, credential_id)
);
CREATE INDEX credentials_by_user ON credentials (tenant_id, user_id);

CREATE TABLE ceremonies (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    purpose       TEXT NOT NULL,
    user_id       TEXT,
    enrolment_id  TEXT,
    state         TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX ceremonies_by_expiry ON ceremonies (expires_at);

CREATE TABLE sessions (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    user_id        TEXT NOT NULL REFERENCES users(id),
    token_hash     BYTEA NOT NULL UNIQUE,
    aal            TEXT NOT NULL,
    amr            TEXT NOT NULL,
    auth_time      BIGINT NOT NULL,
    credential_id  TEXT,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    revoked_at     BIGINT
);
CREATE INDEX sessions_by_user ON sessions (tenant_id, user_id);
