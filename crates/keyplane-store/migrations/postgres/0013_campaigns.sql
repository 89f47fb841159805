-- Re-enrolment campaigns (issue 7): every user holding an active passkey of one authenticator
-- model is marked for re-enrolment. At most one open campaign per tenant and model, enforced by
-- the partial unique index, so two administrators (or an MDS import and an administrator)
-- starting one at once cannot both succeed. `campaign_users` are the users a campaign marked;
-- who re-enrolled is computed from their credentials.
CREATE TABLE campaigns (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    aaguid      TEXT NOT NULL,
    action      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    source      TEXT NOT NULL,
    status      TEXT NOT NULL,
    affected    BIGINT NOT NULL,
    marked      BIGINT NOT NULL,
    started_by  TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    closed_by   TEXT,
    closed_at   BIGINT,
    close_note  TEXT
);
CREATE UNIQUE INDEX campaigns_one_open_per_model ON campaigns (tenant_id, aaguid) WHERE status = 'open';
CREATE INDEX campaigns_by_tenant ON campaigns (tenant_id, started_at);

CREATE TABLE campaign_users (
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    campaign_id  TEXT NOT NULL REFERENCES campaigns(id),
    user_id      TEXT NOT NULL,
    marked_at    BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, user_id)
);
