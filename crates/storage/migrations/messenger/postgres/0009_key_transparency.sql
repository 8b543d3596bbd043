-- Key transparency: the ordered log of what the messenger published into
-- its auditable key directory (akd). The directory itself is rebuilt in
-- memory from this log on start (same VRF key, same updates in the same
-- order: the same roots); each epoch's root and its signature are kept
-- beside it, so a rebuilt root that differs from the signed one is found.
-- Labels are account ids, values the canonical encoding of an account's
-- device list (device ids and public identity keys): no phone number.
CREATE TABLE kt_epochs (
    epoch BIGINT PRIMARY KEY,
    published_at BIGINT NOT NULL,
    root BYTEA,
    signature BYTEA
);
CREATE TABLE kt_updates (
    epoch BIGINT NOT NULL REFERENCES kt_epochs (epoch),
    label BYTEA NOT NULL,
    value BYTEA NOT NULL,
    PRIMARY KEY (epoch, label)
);
