-- Policy as code: every version of a tenant's policy document, which one is active, and the
-- populations users belong to.
CREATE TABLE policies (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    version     INTEGER NOT NULL,
    document    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, version)
);

CREATE TABLE active_policies (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants(id),
    version    INTEGER NOT NULL
);

CREATE TABLE user_populations (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    user_id     TEXT NOT NULL REFERENCES users(id),
    population  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, population)
);

-- Step-up: a session's elevated level and when it was reached; a step-up ceremony's session and
-- the level it is for.
ALTER TABLE sessions ADD COLUMN elevated_aal TEXT;
ALTER TABLE sessions ADD COLUMN elevated_at INTEGER;
ALTER TABLE ceremonies ADD COLUMN session_id TEXT;
ALTER TABLE ceremonies ADD COLUMN level TEXT;

-- Re-enrolment: a session opened with a passkey that no longer complies with the policy may only
-- register a compliant one; the reason is kept for the user and the audit log.
ALTER TABLE sessions ADD COLUMN restricted TEXT;
