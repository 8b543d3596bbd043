-- A revoked client's token no longer authenticates (a device of a deleted
-- messenger account, or a client the operator revoked). The row stays, so
-- that the audit of its past charges keeps its name.
ALTER TABLE clients ADD COLUMN revoked_at BIGINT;
