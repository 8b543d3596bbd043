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
    member BYTEA NOT NULL,
    PRIMARY KEY (upload_id, row_no)
);
CREATE INDEX audience_candidates_by_member ON audience_candidates (member);

DROP TABLE audience_upload_keys;

-- Partitions (a pseudonym's first byte) whose eligible entries changed
-- since the in-memory index last read them, marked by the statement
-- triggers below (no writer of eligibility can forget to). Duplicates are
-- kept: a unique key would make concurrent writers wait on each other's
-- marks. The index takes the marks (DELETE ... RETURNING); a mark of a
-- transaction not yet committed is invisible to it and taken next time.
CREATE TABLE audience_dirty (part BYTEA NOT NULL);

-- One function a table: the rows a statement inserted (`new_rows`) and
-- removed (`old_rows`); each trigger names only the tables its event has,
-- and PL/pgSQL plans a branch only when it runs.
CREATE FUNCTION audience_mark_records() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO audience_dirty (part)
        SELECT DISTINCT substring(k FROM 1 FOR 1) FROM (
            SELECT n.pseudonym AS k FROM new_rows n WHERE n.purpose = 'ads'
            UNION ALL
            SELECT u.email_pseudonym FROM new_rows n JOIN partner_users u ON u.phone_pseudonym = n.pseudonym
            WHERE n.purpose = 'ads' AND u.email_pseudonym IS NOT NULL
        ) s;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        INSERT INTO audience_dirty (part)
        SELECT DISTINCT substring(k FROM 1 FOR 1) FROM (
            SELECT o.pseudonym AS k FROM old_rows o WHERE o.purpose = 'ads'
            UNION ALL
            SELECT u.email_pseudonym FROM old_rows o JOIN partner_users u ON u.phone_pseudonym = o.pseudonym
            WHERE o.purpose = 'ads' AND u.email_pseudonym IS NOT NULL
        ) s;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION audience_mark_users() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO audience_dirty (part)
        SELECT DISTINCT substring(k FROM 1 FOR 1) FROM (
            SELECT phone_pseudonym AS k FROM new_rows UNION ALL SELECT email_pseudonym FROM new_rows
        ) s WHERE k IS NOT NULL;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        INSERT INTO audience_dirty (part)
        SELECT DISTINCT substring(k FROM 1 FOR 1) FROM (
            SELECT phone_pseudonym AS k FROM old_rows UNION ALL SELECT email_pseudonym FROM old_rows
        ) s WHERE k IS NOT NULL;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER audience_dirty_records_insert AFTER INSERT ON records
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION audience_mark_records();
CREATE TRIGGER audience_dirty_records_update AFTER UPDATE ON records
    REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION audience_mark_records();
CREATE TRIGGER audience_dirty_records_delete AFTER DELETE ON records
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION audience_mark_records();

CREATE TRIGGER audience_dirty_users_insert AFTER INSERT ON partner_users
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION audience_mark_users();
CREATE TRIGGER audience_dirty_users_update AFTER UPDATE ON partner_users
    REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION audience_mark_users();
CREATE TRIGGER audience_dirty_users_delete AFTER DELETE ON partner_users
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION audience_mark_users();
