-- Every signed checkpoint of the messenger's consent log that a feed
-- batch carried: the partner's witness, outside the messenger's database,
-- of what that log held (`accord ledger verify --witness partner`).
CREATE TABLE witnessed_checkpoints (
    shard BIGINT NOT NULL,
    size BIGINT NOT NULL,
    root TEXT NOT NULL,
    at BIGINT NOT NULL,
    signature TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (shard, size)
);
