-- SCIM 2.0 provisioning (issue 9). `scim_users` keeps what an identity provider says about a
-- user beyond the users row (external id, name parts, email addresses: `profile`, JSON), when
-- SCIM last changed it, and whether SCIM deleted it: a deleted user stays (deprovisioned) for
-- the audit log but is no SCIM resource any more. `scim_groups` gives a population (the users
-- whose `user_populations` row names `display_name`) a SCIM id and external id. 0015 is taken by
-- work merged separately.
CREATE TABLE scim_users (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    user_id     TEXT NOT NULL REFERENCES users(id),
    profile     TEXT NOT NULL,
    updated_at  BIGINT NOT NULL,
    deleted_at  BIGINT,
    PRIMARY KEY (tenant_id, user_id)
);

CREATE TABLE scim_groups (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    display_name  TEXT NOT NULL,
    external_id   TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX scim_groups_by_name ON scim_groups (tenant_id, display_name);
