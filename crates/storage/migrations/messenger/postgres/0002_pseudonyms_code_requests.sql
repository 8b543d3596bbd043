-- Keyed pseudonyms of registered numbers, per OPRF purpose and key version.
-- `prefix` is the first two bytes as an integer: the contact-discovery bucket.
CREATE TABLE pseudonyms (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    purpose TEXT NOT NULL,
    key_version BIGINT NOT NULL,
    pseudonym BYTEA NOT NULL,
    prefix BIGINT NOT NULL,
    PRIMARY KEY (account_id, purpose, key_version)
);
CREATE INDEX pseudonyms_by_bucket ON pseudonyms (purpose, key_version, prefix);

-- Every code requested, kept for a day whatever happens to the code, so
-- that the per-number rate limit cannot be reset by using or burning codes.
CREATE TABLE code_requests (
    phone TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX code_requests_by_phone ON code_requests (phone, at);
