-- Partner: what the coordination feed delivered, the partner's own users,
-- links between them, and contact edges for friend suggestions.

-- One row per coordination pseudonym the feed has spoken about; after a
-- full revocation only a tombstone remains (no purposes, no data) for
-- an hour, to refuse replays of older events, then it is purged.
CREATE TABLE subjects (
    pseudonym BYTEA PRIMARY KEY,
    key_version BIGINT NOT NULL,
    last_event_id BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE records (
    pseudonym BYTEA NOT NULL,
    purpose TEXT NOT NULL,
    devices TEXT NOT NULL,
    ledger_ref TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (pseudonym, purpose)
);

CREATE TABLE partner_users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash BYTEA NOT NULL UNIQUE,
    phone_pseudonym BYTEA,
    ads_personalisation BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX partner_users_by_pseudonym ON partner_users (phone_pseudonym);

-- A partner user recognised as a messenger user (needs `product`).
CREATE TABLE links (
    partner_user_id TEXT PRIMARY KEY,
    pseudonym BYTEA NOT NULL,
    linked_at BIGINT NOT NULL
);
CREATE INDEX links_by_pseudonym ON links (pseudonym);

-- Uploaded contacts that matched someone; unmatched ones are never stored.
CREATE TABLE contact_edges (
    uploader TEXT NOT NULL,
    pseudonym BYTEA NOT NULL,
    PRIMARY KEY (uploader, pseudonym)
);
CREATE INDEX contact_edges_by_pseudonym ON contact_edges (pseudonym);

CREATE TABLE denied_reads (
    purpose TEXT PRIMARY KEY,
    count BIGINT NOT NULL
);
