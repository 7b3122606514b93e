-- depends: audit_0002_replays
-- The people each entry concerns besides its subject and actor (services/audit/people.py):
-- data fields whose name ends in user_id, person_id, subject_id, inviter_id or _by, and the
-- subject ids of personal-data ciphertext ("pd1:<id>:..."). Derived from the hashed data
-- column, so in no hash; a table of its own, so the log is never updated to hold it.

CREATE TABLE audit_log_people (
    person   text   NOT NULL CHECK (length(person) BETWEEN 1 AND 200),
    sequence bigint NOT NULL,
    PRIMARY KEY (person, sequence)
);

CREATE TRIGGER audit_log_people_append_only
    BEFORE UPDATE OR DELETE ON audit_log_people
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_log_people_no_truncate
    BEFORE TRUNCATE ON audit_log_people
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

REVOKE ALL ON audit_log_people FROM PUBLIC;
GRANT SELECT, INSERT ON audit_log_people TO guestlist_audit_writer;

-- The entries already in the log, by the rules people.py applies at ingest. Data that
-- jsonb does not take (NaN, a lone surrogate) names nobody here.
CREATE FUNCTION audit_people_named(data text) RETURNS SETOF text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    document jsonb;
BEGIN
    BEGIN
        document := data::jsonb;
    EXCEPTION WHEN others THEN
        RETURN;
    END;
    IF jsonb_typeof(document) <> 'object' THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT person FROM (
        SELECT CASE
                   WHEN value LIKE 'pd1:%' THEN
                       CASE WHEN strpos(substr(value, 5), ':') > 0
                            THEN split_part(substr(value, 5), ':', 1) END
                   WHEN key ~ '(user_id|person_id|subject_id|inviter_id|_by)$' THEN value
               END AS person
        FROM (SELECT key, field #>> '{}' AS value
              FROM jsonb_each(document) AS fields(key, field)
              WHERE jsonb_typeof(field) = 'string') AS strings
    ) AS named
    WHERE length(person) BETWEEN 1 AND 200;
END
$$;

INSERT INTO audit_log_people (person, sequence)
SELECT DISTINCT named.person, entry.sequence
FROM audit_log AS entry, audit_people_named(entry.data) AS named(person)
WHERE named.person NOT IN (entry.ce_subject, entry.ce_actorid);

DROP FUNCTION audit_people_named(text);
