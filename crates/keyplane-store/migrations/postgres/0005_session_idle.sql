-- Sessions follow the policy's lifetime and idle timeout for the user's populations: the idle
-- timeout chosen at sign-in (0 = none) and when the session was last used (updated at most
-- once a minute).
ALTER TABLE sessions ADD COLUMN idle_secs BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN last_seen_at BIGINT NOT NULL DEFAULT 0;
