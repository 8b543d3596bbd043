-- An ack no longer deletes the envelope and writes a separate delivered
-- record: it drops the ciphertext (body = NULL) and stamps acked_at, and
-- the row itself is the delivered record (for reports) until it expires.
-- Acked receipts get expires_at = the ack time, so the purge takes them.
-- Only unacked items are indexed per device. e2e_delivered keeps the
-- records written before this migration until they age out.
ALTER TABLE e2e_mailbox ADD COLUMN acked_at BIGINT;
DROP INDEX e2e_mailbox_by_device;
CREATE INDEX e2e_mailbox_pending ON e2e_mailbox (device_id, id) WHERE acked_at IS NULL;
