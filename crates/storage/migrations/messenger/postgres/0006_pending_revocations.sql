-- Key-service credentials of deleted devices that are still to be revoked.
-- A row is written in the transaction that deletes the account, and goes
-- once the key service confirms the revocation; a revocation that failed
-- (the key service unreachable) is retried from here, so it cannot be lost.
CREATE TABLE pending_revocations (
    device_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    since BIGINT NOT NULL
);
CREATE INDEX pending_revocations_by_since ON pending_revocations (since);
