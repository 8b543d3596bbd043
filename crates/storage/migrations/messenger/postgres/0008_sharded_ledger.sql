-- The consent ledger, sharded by account (accord_domain::transparency).
-- Each shard is its own hash chain and Merkle log with its own head row,
-- so no single row is written by every consent change. The ledger from
-- before sharding becomes shard 0 unchanged (its hashes and sequence
-- numbers stay valid); policy publications keep going to shard 0.
CREATE TABLE ledger_shards (
    shard BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash BYTEA NOT NULL
);
INSERT INTO ledger_shards (shard, seq, hash)
    SELECT n, 0, decode(repeat('00', 32), 'hex') FROM generate_series(0, 15) AS n;
UPDATE ledger_shards SET seq = h.seq, hash = h.hash FROM ledger_head h
 WHERE h.id = 1 AND ledger_shards.shard = 0;
DROP TABLE ledger_head;

ALTER TABLE ledger ADD COLUMN shard BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ledger ALTER COLUMN shard DROP DEFAULT;
ALTER TABLE ledger DROP CONSTRAINT ledger_pkey;
ALTER TABLE ledger ADD PRIMARY KEY (shard, seq);
DROP INDEX ledger_by_account;
CREATE INDEX ledger_by_account ON ledger (account_id, shard, seq);
CREATE INDEX ledger_by_kind ON ledger (kind, shard, seq);

-- Checkpoints the messenger signed (the signing key is not in this
-- database; these rows are a convenience, not a witness).
CREATE TABLE ledger_checkpoints (
    shard BIGINT NOT NULL,
    size BIGINT NOT NULL,
    root TEXT NOT NULL,
    at BIGINT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (shard, size)
);
