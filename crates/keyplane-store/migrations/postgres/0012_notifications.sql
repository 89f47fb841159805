-- Notifications (issue 7): a user's verified contact, set by an administrator, and the outbox.
-- An outbox row is written by the store in the transaction that appends the audit event it
-- announces (`audit::append`), so a notification exists exactly when its change does. The
-- delivery worker claims a due row by moving `next_attempt_at` forward with a conditional
-- UPDATE (a lease), so nodes sharing one database never send it twice at once. No secret is
-- ever stored here: `payload` is the event's details without secret-looking keys.
ALTER TABLE users ADD COLUMN contact_email TEXT;

CREATE TABLE notifications (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    user_id          TEXT NOT NULL,
    kind             TEXT NOT NULL,
    event_seq        BIGINT NOT NULL,
    event_id         TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    last_error       TEXT,
    sent_at          BIGINT,
    deliveries       TEXT NOT NULL
);
CREATE INDEX notifications_due ON notifications (tenant_id, status, next_attempt_at);
CREATE INDEX notifications_by_user ON notifications (tenant_id, user_id, created_at);
