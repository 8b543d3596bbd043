-- Custom audiences (issue 13), the match as a stream: each upload batch is
-- probed on arrival against the partner's standing in-memory index of the
-- eligible set, and only its matched rows are staged. No uploaded
-- pseudonym of a stranger is ever written.

-- The matched rows of uploads not yet completed: a row and its member (a
-- phone pseudonym; prefix is its first byte). Members at completion; kept
-- eligible like members (the change that ends a person's eligibility
-- deletes their candidates too).
CREATE TABLE audience_candidates (
    upload_id TEXT NOT NULL,
    row_no BIGINT NOT NULL,
    prefix BIGINT NOT NULL,
    member BLOB NOT NULL,
    PRIMARY KEY (upload_id, row_no)
);
CREATE INDEX audience_candidates_by_member ON audience_candidates (member);

DROP TABLE audience_upload_keys;

-- Partitions (a pseudonym's first byte) whose eligible entries changed
-- since the in-memory index last read them. The triggers below mark them,
-- so that no writer of eligibility can forget to; the index takes the
-- marks (DELETE ... RETURNING) and reads those partitions again.
CREATE TABLE audience_dirty (part BLOB PRIMARY KEY) WITHOUT ROWID;

CREATE TRIGGER audience_dirty_records_insert AFTER INSERT ON records
WHEN NEW.purpose = 'ads'
BEGIN
    INSERT OR IGNORE INTO audience_dirty (part) VALUES (substr(NEW.pseudonym, 1, 1));
    INSERT OR IGNORE INTO audience_dirty (part)
        SELECT substr(email_pseudonym, 1, 1) FROM partner_users
        WHERE phone_pseudonym = NEW.pseudonym AND email_pseudonym IS NOT NULL;
END;

CREATE TRIGGER audience_dirty_records_delete AFTER DELETE ON records
WHEN OLD.purpose = 'ads'
BEGIN
    INSERT OR IGNORE INTO audience_dirty (part) VALUES (substr(OLD.pseudonym, 1, 1));
    INSERT OR IGNORE INTO audience_dirty (part)
        SELECT substr(email_pseudonym, 1, 1) FROM partner_users
        WHERE phone_pseudonym = OLD.pseudonym AND email_pseudonym IS NOT NULL;
END;

CREATE TRIGGER audience_dirty_records_update AFTER UPDATE OF pseudonym, purpose ON records
BEGIN
    INSERT OR IGNORE INTO audience_dirty (part)
        SELECT substr(v, 1, 1) FROM (SELECT OLD.pseudonym AS v UNION ALL SELECT NEW.pseudonym);
    INSERT OR IGNORE INTO audience_dirty (part)
        SELECT substr(email_pseudonym, 1, 1) FROM partner_users
        WHERE phone_pseudonym IN (OLD.pseudonym, NEW.pseudonym) AND email_pseudonym IS NOT NULL;
END;

CREATE TRIGGER audience_dirty_users_insert AFTER INSERT ON partner_users
BEGIN
    INSERT OR IGNORE INTO audience_dirty (part)
        SELECT substr(v, 1, 1) FROM (SELECT NEW.phone_pseudonym AS v UNION ALL SELECT NEW.email_pseudonym)
        WHERE v IS NOT NULL;
END;

CREATE TRIGGER audience_dirty_users_delete AFTER DELETE ON partner_users
BEGIN
    INSERT OR IGNORE INTO audience_dirty (part)
        SELECT substr(v, 1, 1) FROM (SELECT OLD.phone_pseudonym AS v UNION ALL SELECT OLD.email_pseudonym)
        WHERE v IS NOT NULL;
END;

CREATE TRIGGER audience_dirty_users_update
AFTER UPDATE OF phone_pseudonym, email_pseudonym, ads_personalisation ON partner_users
BEGIN
    INSERT OR IGNORE INTO audience_dirty (part)
        SELECT substr(v, 1, 1) FROM (
            SELECT OLD.phone_pseudonym AS v UNION ALL SELECT OLD.email_pseudonym
            UNION ALL SELECT NEW.phone_pseudonym UNION ALL SELECT NEW.email_pseudonym)
        WHERE v IS NOT NULL;
END;
