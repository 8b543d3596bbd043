-- Quotas per person: clients of one group (the devices of one messenger
-- account) share one meter, the group's. A meter is a client's id or a
-- group's, so usage_hourly is keyed by meter and no longer references
-- clients. Every charge writes its meter's row in `meters` first, so that
-- charges of one meter are serialised on either backend.
ALTER TABLE clients ADD COLUMN quota_group TEXT;
CREATE INDEX clients_by_quota_group ON clients (quota_group);
CREATE TABLE meters (
    meter_id TEXT PRIMARY KEY,
    last_charge_at BIGINT NOT NULL
);
ALTER TABLE usage_hourly DROP CONSTRAINT usage_hourly_client_id_fkey;
