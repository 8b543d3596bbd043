-- The nonces of signed feed requests seen within the freshness window
-- (twice it), so that a captured request replayed verbatim is refused.
CREATE TABLE feed_nonces (
    nonce TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);
CREATE INDEX feed_nonces_by_time ON feed_nonces (seen_at);
