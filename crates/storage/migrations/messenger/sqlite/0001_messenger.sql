-- Messenger: policies, consent ledger, accounts, devices, verifications.
CREATE TABLE ledger_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash BLOB NOT NULL
);
INSERT INTO ledger_head (id, seq, hash) VALUES (1, 0, zeroblob(32));

CREATE TABLE ledger (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    account_id TEXT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE INDEX ledger_by_account ON ledger (account_id, seq);

CREATE TABLE policies (
    version BIGINT PRIMARY KEY,
    text TEXT NOT NULL,
    text_sha256 TEXT NOT NULL,
    purposes TEXT NOT NULL,
    profile TEXT NOT NULL,
    published_at BIGINT NOT NULL,
    accept_by BIGINT NOT NULL
);

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    phone TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    consent TEXT NOT NULL,
    consent_rev BIGINT NOT NULL
);

CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    info TEXT NOT NULL,
    token_hash BLOB NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);
CREATE INDEX devices_by_account ON devices (account_id);

CREATE TABLE verifications (
    id TEXT PRIMARY KEY,
    phone TEXT NOT NULL,
    salt BLOB NOT NULL,
    code_digest BLOB NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL
);
CREATE INDEX verifications_by_phone ON verifications (phone, created_at);
