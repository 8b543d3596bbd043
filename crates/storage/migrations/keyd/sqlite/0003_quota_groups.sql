-- Quotas per person: clients of one group (the devices of one messenger
-- account) share one meter, the group's. A meter is a client's id or a
-- group's, so usage_hourly is keyed by meter and no longer references
-- clients (the table is rebuilt: SQLite cannot drop a foreign key). Every
-- charge writes its meter's row in `meters` first, so that charges of one
-- meter are serialised on either backend.
ALTER TABLE clients ADD COLUMN quota_group TEXT;
CREATE INDEX clients_by_quota_group ON clients (quota_group);
CREATE TABLE meters (
    meter_id TEXT PRIMARY KEY,
    last_charge_at BIGINT NOT NULL
);
CREATE TABLE usage_hourly_by_meter (
    client_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    hour BIGINT NOT NULL,
    elements BIGINT NOT NULL CHECK (elements >= 0),
    PRIMARY KEY (client_id, purpose, hour)
);
INSERT INTO usage_hourly_by_meter (client_id, purpose, hour, elements)
    SELECT client_id, purpose, hour, elements FROM usage_hourly;
DROP TABLE usage_hourly;
ALTER TABLE usage_hourly_by_meter RENAME TO usage_hourly;
