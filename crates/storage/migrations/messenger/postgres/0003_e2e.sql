-- E2E messaging: key directory, per-device mailboxes, idempotency records,
-- blocks, delivered-envelope records (for reports) and reports.
-- The server stores public keys and ciphertext only.
CREATE TABLE e2e_device_keys (
    device_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    keys_json TEXT NOT NULL,
    uploaded_at BIGINT NOT NULL
);
CREATE INDEX e2e_device_keys_by_account ON e2e_device_keys (account_id);

CREATE TABLE e2e_one_time_keys (
    device_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (device_id, key_id)
);

CREATE TABLE e2e_fallback_keys (
    device_id TEXT PRIMARY KEY,
    key_json TEXT NOT NULL
);

-- One row per queued item of a device's mailbox: kind 0 = envelope
-- (peer = sender), kind 1 = delivery receipt (peer = recipient device).
CREATE TABLE e2e_mailbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id TEXT NOT NULL,
    kind BIGINT NOT NULL,
    peer_account TEXT NOT NULL,
    peer_device TEXT NOT NULL,
    client_message_id TEXT NOT NULL,
    message_type BIGINT NOT NULL,
    body BYTEA,
    at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX e2e_mailbox_by_device ON e2e_mailbox (device_id, id);
CREATE INDEX e2e_mailbox_by_expiry ON e2e_mailbox (expires_at);

CREATE TABLE e2e_sends (
    sender_device TEXT NOT NULL,
    client_message_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (sender_device, client_message_id)
);
CREATE INDEX e2e_sends_by_at ON e2e_sends (at);

CREATE TABLE e2e_contacts (
    account_id TEXT NOT NULL,
    peer_account TEXT NOT NULL,
    PRIMARY KEY (account_id, peer_account)
);

CREATE TABLE e2e_blocks (
    account_id TEXT NOT NULL,
    blocked_account TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (account_id, blocked_account)
);

CREATE TABLE e2e_delivered (
    device_id TEXT NOT NULL,
    envelope_id BIGINT NOT NULL,
    sender_account TEXT NOT NULL,
    sender_device TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (device_id, envelope_id)
);
CREATE INDEX e2e_delivered_by_at ON e2e_delivered (at);

CREATE TABLE e2e_reports (
    id TEXT PRIMARY KEY,
    sender_account TEXT NOT NULL,
    sender_device TEXT NOT NULL,
    envelope_id BIGINT NOT NULL,
    plaintext TEXT,
    at BIGINT NOT NULL
);
