-- Business messaging. A business is a messenger account (its number, its
-- E2E devices) with a display name, an operator's verification, its API
-- keys (hashed), its templates and their review, its quality rating and
-- messaging-limit tier. Users' controls per business (opt-in, marketing
-- opt-in, muted categories), the customer-service windows, and the status
-- events a business's webhook receives (a transactional outbox: 'sent'
-- rows are written in the mailbox group commit of the send, 'delivered'
-- rows in that of the recipient's ack). No message content anywhere.
CREATE TABLE businesses (
    account_id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    verified_at BIGINT,
    revoked_at BIGINT,
    tier BIGINT NOT NULL,
    tier_changed_at BIGINT NOT NULL,
    tier_reason TEXT NOT NULL,
    quality TEXT NOT NULL,
    quality_changed_at BIGINT NOT NULL,
    quality_reason TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE business_api_keys (
    id TEXT PRIMARY KEY,
    business TEXT NOT NULL,
    token_hash BYTEA NOT NULL UNIQUE,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX business_api_keys_by_business ON business_api_keys (business);

CREATE TABLE business_templates (
    id TEXT PRIMARY KEY,
    business TEXT NOT NULL,
    name TEXT NOT NULL,
    language TEXT NOT NULL,
    version BIGINT NOT NULL,
    category TEXT NOT NULL,
    body TEXT NOT NULL,
    params BIGINT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    submitted_at BIGINT NOT NULL,
    reviewed_at BIGINT,
    UNIQUE (business, name, language, version)
);
CREATE INDEX business_templates_by_status ON business_templates (status, submitted_at);

-- A user's controls for one business.
CREATE TABLE business_controls (
    account_id TEXT NOT NULL,
    business TEXT NOT NULL,
    opted_in BIGINT NOT NULL,
    marketing BIGINT NOT NULL,
    muted TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, business)
);

-- The last time a user wrote to a business (the service window).
CREATE TABLE business_windows (
    business TEXT NOT NULL,
    account_id TEXT NOT NULL,
    last_inbound_at BIGINT NOT NULL,
    PRIMARY KEY (business, account_id)
);

-- Status events: the record the console shows and the webhook outbox.
-- hook_state: 0 due, 1 delivered to the webhook, 2 given up after 24 h,
-- 3 no webhook registered.
CREATE TABLE business_events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    business TEXT NOT NULL,
    message_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    status TEXT NOT NULL,
    category TEXT,
    initiated BIGINT NOT NULL,
    code TEXT,
    at BIGINT NOT NULL,
    hook_state BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT
);
CREATE UNIQUE INDEX business_events_once ON business_events (business, message_id, recipient, status);
CREATE INDEX business_events_due ON business_events (hook_state, next_attempt_at);
CREATE INDEX business_events_by_business ON business_events (business, status, at);

CREATE TABLE business_webhooks (
    business TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- What a recipient's client needs to render a business message: the
-- template (name, language, version) and category, as JSON. Only on
-- envelopes to the recipient's devices.
ALTER TABLE e2e_mailbox ADD COLUMN business_meta TEXT;
