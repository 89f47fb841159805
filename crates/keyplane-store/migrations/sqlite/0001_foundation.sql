-- Foundation schema: tenants, users, enrolments, credentials, ceremonies, sessions.
-- Times are milliseconds since the Unix epoch. Every row carries its tenant.
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    rp_id       TEXT NOT NULL,
    rp_name     TEXT NOT NULL,
    origins     TEXT NOT NULL,
    created_at  INTEGER NOT NULL
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
    user_handle  BLOB NOT NULL,
    status       TEXT NOT NULL,
    role         TEXT,
    created_at   INTEGER NOT NULL,
    UNIQUE (tenant_id, username),
    UNIQUE (tenant_id, user_handle)
);

CREATE TABLE enrolments (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    user_id     TEXT NOT NULL REFERENCES users(id),
    token_hash  BLOB NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);

CREATE TABLE credentials (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants(id),
    user_id            TEXT NOT NULL REFERENCES users(id),
    credential_id      BLOB NOT NULL,
    public_key         BLOB NOT NULL,
    sign_count         INTEGER NOT NULL,
    aaguid             TEXT NOT NULL,
    transports         TEXT NOT NULL,
    backup_eligible    INTEGER NOT NULL,
    backup_state       INTEGER NOT NULL,
    attestation_format TEXT NOT NULL,
    attestation_type   TEXT NOT NULL,
    user_verified      INTEGER NOT NULL,
    nickname           TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    last_used_at       INTEGER,
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
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);
CREATE INDEX ceremonies_by_expiry ON ceremonies (expires_at);

CREATE TABLE sessions (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    user_id        TEXT NOT NULL REFERENCES users(id),
    token_hash     BLOB NOT NULL UNIQUE,
    aal            TEXT NOT NULL,
    amr            TEXT NOT NULL,
    auth_time      INTEGER NOT NULL,
    credential_id  TEXT,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    revoked_at     INTEGER
);
CREATE INDEX sessions_by_user ON sessions (tenant_id, user_id);
