-- Custom audiences (issue 13): advertisers, their audiences, uploads of
-- customer-list pseudonyms (deleted as soon as they are matched), the
-- matched members (a person's phone pseudonym), campaigns and impressions.
-- No raw identifier is here: an upload carries OPRF pseudonyms only.

-- A partner user may add an email address, as its pseudonym.
ALTER TABLE partner_users ADD COLUMN email_pseudonym BYTEA;
CREATE INDEX partner_users_by_email ON partner_users (email_pseudonym);

CREATE TABLE advertisers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash BYTEA NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

-- size_dp: the size's release state (accord_domain::audience::report::DpState, JSON).
CREATE TABLE audiences (
    id TEXT PRIMARY KEY,
    advertiser_id TEXT NOT NULL,
    name TEXT NOT NULL,
    size_dp TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (advertiser_id, name)
);

-- An upload: matched only when every declared batch arrived; an
-- unfinished one is discarded whole when it expires. matching_since: its
-- match started (one at a time); matched_at and result (the advertiser's
-- answer, JSON): it is done, and only this row is left of it.
CREATE TABLE audience_uploads (
    id TEXT PRIMARY KEY,
    audience_id TEXT NOT NULL,
    batches BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    matching_since BIGINT,
    matched_at BIGINT,
    result TEXT
);

CREATE TABLE audience_upload_batches (
    upload_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    row_count BIGINT NOT NULL,
    PRIMARY KEY (upload_id, seq)
);

-- One pseudonym of an uploaded row (slot 0 phone, 1 email); prefix is its
-- first byte, the match partition.
CREATE TABLE audience_upload_keys (
    upload_id TEXT NOT NULL,
    prefix BIGINT NOT NULL,
    row_no BIGINT NOT NULL,
    slot BIGINT NOT NULL,
    pseudonym BYTEA NOT NULL
) PARTITION BY RANGE (prefix);
CREATE INDEX audience_upload_keys_by_partition ON audience_upload_keys (upload_id, prefix);

-- PostgreSQL: both pseudonym tables are partitioned by prefix, 16 ranges
-- of 16 first bytes, so that a larger deployment can place them on
-- several nodes (Citus, or foreign tables) without a schema change.
DO $$
BEGIN
    FOR i IN 0..15 LOOP
        EXECUTE format('CREATE TABLE audience_upload_keys_p%s PARTITION OF audience_upload_keys FOR VALUES FROM (%s) TO (%s)', i, i * 16, i * 16 + 16);
    END LOOP;
END $$;

-- A member: a person's phone pseudonym (prefix: its first byte).
CREATE TABLE audience_members (
    audience_id TEXT NOT NULL,
    prefix BIGINT NOT NULL,
    member BYTEA NOT NULL,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (audience_id, prefix, member)
) PARTITION BY RANGE (prefix);
CREATE INDEX audience_members_by_member ON audience_members (member);
DO $$
BEGIN
    FOR i IN 0..15 LOOP
        EXECUTE format('CREATE TABLE audience_members_p%s PARTITION OF audience_members FOR VALUES FROM (%s) TO (%s)', i, i * 16, i * 16 + 16);
    END LOOP;
END $$;

-- reach_dp, impressions_dp: release states (JSON); released_at: when last released.
CREATE TABLE campaigns (
    id TEXT PRIMARY KEY,
    advertiser_id TEXT NOT NULL,
    audience_id TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    link TEXT NOT NULL,
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    reach_dp TEXT NOT NULL,
    impressions_dp TEXT NOT NULL,
    released_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX campaigns_by_audience ON campaigns (audience_id);

CREATE TABLE impressions (
    campaign_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    n BIGINT NOT NULL,
    last_at BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, user_id)
);
