-- The consent ledger, sharded by account (accord_domain::transparency).
-- Each shard is its own hash chain and Merkle log with its own head row,
-- so no single row is written by every consent change. The ledger from
-- before sharding becomes shard 0 unchanged (its hashes and sequence
-- numbers stay valid); policy publications keep going to shard 0.
CREATE TABLE ledger_shards (
    shard BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash BLOB NOT NULL
);
WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n < 15)
INSERT INTO ledger_shards (shard, seq, hash) SELECT n, 0, zeroblob(32) FROM s;
UPDATE ledger_shards SET seq = (SELECT seq FROM ledger_head WHERE id = 1),
                         hash = (SELECT hash FROM ledger_head WHERE id = 1)
 WHERE shard = 0;
DROP TABLE ledger_head;

CREATE TABLE ledger_sharded (
    shard BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    account_id TEXT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (shard, seq)
);
INSERT INTO ledger_sharded (shard, seq, at, account_id, kind, payload, prev_hash, hash)
    SELECT 0, seq, at, account_id, kind, payload, prev_hash, hash FROM ledger;
DROP TABLE ledger;
ALTER TABLE ledger_sharded RENAME TO ledger;
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
