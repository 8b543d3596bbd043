-- Partner sign-up with a verified phone number, several tokens per user,
-- and meters (rolling-day limits: each user's OPRF quota, sign-ups per
-- client address, the global daily sign-up budget, codes per number).
-- No phone number is stored: a number appears only as its `number_tag`,
-- an HMAC-SHA256 under a key the partner keeps outside its database.

-- Pending sign-ups: the code as an HMAC under a random salt; expire in
-- minutes and are purged.
CREATE TABLE partner_registrations (
    id TEXT PRIMARY KEY,
    number_tag BLOB NOT NULL,
    salt BLOB NOT NULL,
    code_digest BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL
);

-- One person, one partner user: a verified number that already has a
-- user adds a token to it.
ALTER TABLE partner_users ADD COLUMN number_tag BLOB;
CREATE UNIQUE INDEX partner_users_by_number ON partner_users (number_tag);

CREATE TABLE partner_tokens (
    token_hash BLOB PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX partner_tokens_by_user ON partner_tokens (user_id);
INSERT INTO partner_tokens (token_hash, user_id, created_at)
    SELECT token_hash, id, created_at FROM partner_users;

-- A meter's row is written first by every charge, which serialises the
-- charges of one meter (SQLite's write lock; a row lock in PostgreSQL).
CREATE TABLE meters (
    kind TEXT NOT NULL,
    subject BLOB NOT NULL,
    charged_at BIGINT NOT NULL,
    PRIMARY KEY (kind, subject)
);

-- Hourly buckets; the rolling day is the last 24 (accord_domain::keyd).
CREATE TABLE meter_hourly (
    kind TEXT NOT NULL,
    subject BLOB NOT NULL,
    hour BIGINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (kind, subject, hour)
);
CREATE INDEX meter_hourly_by_hour ON meter_hourly (kind, hour);
