-- Key service: sealed OPRF keys, API clients and their quotas, and hourly
-- usage counters (the rolling-day quota window and the audit log).

CREATE TABLE oprf_keys (
    purpose TEXT NOT NULL,
    version BIGINT NOT NULL CHECK (version >= 1),
    -- OprfSecretKey::seal output: nonce || ciphertext || tag. Never the key.
    sealed BLOB NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'previous')),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (purpose, version)
);
-- At most one active version per purpose.
CREATE UNIQUE INDEX oprf_keys_one_active ON oprf_keys (purpose) WHERE state = 'active';

CREATE TABLE clients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('messenger', 'partner', 'business', 'device')),
    -- TokenHash (SHA-256) of the client's API token; the token is never stored.
    token_hash BLOB NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    -- Written first by every charge: serialises a client's charges.
    last_charge_at BIGINT
);

CREATE TABLE client_quotas (
    client_id TEXT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    purpose TEXT NOT NULL,
    daily_limit BIGINT NOT NULL CHECK (daily_limit >= 0),
    PRIMARY KEY (client_id, purpose)
);

-- Elements evaluated per client, purpose and UTC hour (ms since epoch
-- / 3,600,000). Counts only: no element is ever stored.
CREATE TABLE usage_hourly (
    client_id TEXT NOT NULL REFERENCES clients (id),
    purpose TEXT NOT NULL,
    hour BIGINT NOT NULL,
    elements BIGINT NOT NULL CHECK (elements >= 0),
    PRIMARY KEY (client_id, purpose, hour)
);
