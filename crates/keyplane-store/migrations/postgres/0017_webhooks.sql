-- Webhooks (issue 9). An endpoint is a machine client of kind webhook with a URL and the event
-- types it subscribed to. Its signing secret is not stored anywhere: it is derived from the
-- deployment's webhook key and the client's secret hash.
CREATE TABLE webhook_endpoints (
    client_id  TEXT PRIMARY KEY REFERENCES machine_clients(id),
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    url        TEXT NOT NULL
);
CREATE TABLE webhook_event_types (
    client_id   TEXT NOT NULL REFERENCES machine_clients(id),
    tenant_id   TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    PRIMARY KEY (client_id, event_type)
);
CREATE INDEX webhook_event_types_by_type ON webhook_event_types (tenant_id, event_type);

-- The transactional outbox: one row per event and subscribed endpoint, written in the
-- transaction that records the event; delivered at least once, retried, dead-lettered.
CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    client_id        TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    event_seq        BIGINT NOT NULL,
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    claimed_until    BIGINT,
    last_status      INTEGER,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    delivered_at     BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (tenant_id, status, next_attempt_at);

-- When a machine client's coming expiry was announced (client.expiring), once.
ALTER TABLE machine_clients ADD COLUMN expiry_announced_at BIGINT;
