-- Tamper-evident audit log: per-tenant hash-chained events, the chain head (the one row that
-- serialises appends per tenant), signed checkpoints, and the checkpoint keys seen.
CREATE TABLE audit_heads (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants(id),
    seq        INTEGER NOT NULL,
    hash       BLOB NOT NULL
);
INSERT INTO audit_heads (tenant_id, seq, hash) SELECT id, 0, zeroblob(32) FROM tenants;

CREATE TABLE audit_events (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    seq          INTEGER NOT NULL,
    id           TEXT NOT NULL UNIQUE,
    time         INTEGER NOT NULL,
    actor_type   TEXT NOT NULL,
    actor_id     TEXT NOT NULL,
    action       TEXT NOT NULL,
    target_type  TEXT NOT NULL,
    target_id    TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    reasons      TEXT NOT NULL,
    request_id   TEXT,
    client_ip    TEXT,
    user_agent   TEXT,
    details      TEXT NOT NULL,
    prev_hash    BLOB NOT NULL,
    hash         BLOB NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX audit_events_by_time ON audit_events (tenant_id, time);

CREATE TABLE audit_checkpoints (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    seq        INTEGER NOT NULL,
    hash       BLOB NOT NULL,
    signed_at  INTEGER NOT NULL,
    key_id     TEXT NOT NULL,
    signature  BLOB NOT NULL,
    PRIMARY KEY (tenant_id, seq, key_id)
);
