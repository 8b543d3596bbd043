-- The coordination feed (messenger -> partner).
-- feed_outbox: written in the same transaction as the consent, device or
-- account change that causes it; the dispatcher computes what to send at
-- send time from the ledger-backed consent state (default deny).
CREATE TABLE feed_outbox (
    id BIGSERIAL PRIMARY KEY,
    account_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL
);
CREATE INDEX feed_outbox_by_account ON feed_outbox (account_id, id);
CREATE INDEX feed_outbox_due ON feed_outbox (next_attempt_at);

-- What the partner holds of each account, as last confirmed by it. Kept
-- after the account is deleted until the partner confirms the deletion.
CREATE TABLE partner_holdings (
    account_id TEXT PRIMARY KEY,
    pseudonym BYTEA NOT NULL,
    key_version BIGINT NOT NULL,
    purposes TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
