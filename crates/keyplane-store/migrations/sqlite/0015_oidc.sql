-- The OpenID Connect provider (issue 9). An OIDC client is a machine client (kind oidc_client)
-- with a registration: exact redirect URIs, how it authenticates at the token endpoint, its
-- public keys for private_key_jwt, the scopes it may ask for.
CREATE TABLE oidc_clients (
    client_id                  TEXT PRIMARY KEY REFERENCES machine_clients(id),
    tenant_id                  TEXT NOT NULL REFERENCES tenants(id),
    redirect_uris              TEXT NOT NULL,
    post_logout_redirect_uris  TEXT NOT NULL,
    auth_method                TEXT NOT NULL,
    jwks                       TEXT,
    scopes                     TEXT NOT NULL
);

-- Pending authorization requests, codes, access and refresh tokens, client-assertion ids: each
-- keyed by the SHA-256 of its secret (or id), single use where it applies (used_at), revocable
-- together by family (a code and every token issued from it).
CREATE TABLE oidc_grants (
    hash        BLOB PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    kind        TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    user_id     TEXT,
    session_id  TEXT,
    family      TEXT,
    body        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    revoked_at  BIGINT
);
CREATE INDEX oidc_grants_by_family ON oidc_grants (tenant_id, family);
CREATE INDEX oidc_grants_by_expiry ON oidc_grants (expires_at);

-- The ID-token signing keys' public halves (JWK), shared by every node through the database so
-- that any node's JWKS lists every node's keys. Private keys stay on each node's disk.
CREATE TABLE oidc_signing_keys (
    kid         TEXT PRIMARY KEY,
    public_jwk  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT
);
