-- The audit log: append-only, gapless and hash-chained (services/audit/README.md).
--
-- Appends are serialized by the row lock on audit_chain_head, taken in the
-- consumer's transaction, so sequence numbers have no gaps and every entry's
-- prev_hash is the hash of the entry before it. The database itself refuses to
-- change the log: a trigger rejects UPDATE, DELETE and TRUNCATE, and the
-- service's role (a member of guestlist_audit_writer) may only INSERT and SELECT.

CREATE TABLE audit_log (
    sequence        bigint      PRIMARY KEY CHECK (sequence > 0),
    received_at     timestamptz NOT NULL,
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    ce_specversion  text        NOT NULL,
    ce_id           uuid        NOT NULL,
    ce_source       text        NOT NULL,
    ce_type         text        NOT NULL,
    ce_subject      text        NOT NULL,
    ce_time         timestamptz NOT NULL,
    ce_actorid      text        NOT NULL,
    ce_sequence     bigint      NOT NULL,
    ce_traceparent  text,
    ce_extensions   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- The event's data as the exact JSON text received: personal fields stay ciphertext.
    data            text        NOT NULL,
    prev_hash       bytea       NOT NULL CHECK (length(prev_hash) = 32),
    hash            bytea       NOT NULL CHECK (length(hash) = 32)
);

CREATE UNIQUE INDEX audit_log_ce_id ON audit_log (ce_id);
CREATE INDEX audit_log_subject ON audit_log (ce_subject, sequence);
CREATE INDEX audit_log_actor ON audit_log (ce_actorid, sequence);
CREATE INDEX audit_log_type ON audit_log (ce_type, sequence);
CREATE INDEX audit_log_time ON audit_log (ce_time);

-- One row: the last entry's sequence and hash. Locked FOR UPDATE by each append.
CREATE TABLE audit_chain_head (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    sequence bigint  NOT NULL,
    hash     bytea   NOT NULL CHECK (length(hash) = 32)
);
INSERT INTO audit_chain_head (sequence, hash) VALUES (0, '\x0000000000000000000000000000000000000000000000000000000000000000');

-- Ed25519-signed statements of (sequence, head hash, time).
CREATE TABLE audit_checkpoints (
    sequence   bigint      PRIMARY KEY,
    head_hash  bytea       NOT NULL CHECK (length(head_hash) = 32),
    signed_at  timestamptz NOT NULL,
    key_id     text        NOT NULL,
    signature  bytea       NOT NULL
);

CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate
    BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- The role the service runs as. Roles are cluster-wide: created once, by a
-- migrating role with CREATEROLE (or beforehand by the DBA); the service's
-- login role is made a member of it (services/audit/README.md).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'guestlist_audit_writer') THEN
        CREATE ROLE guestlist_audit_writer NOLOGIN;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;  -- another database's migration won
END
$$;

REVOKE ALL ON audit_log, audit_checkpoints FROM PUBLIC;
GRANT SELECT, INSERT ON audit_log, audit_checkpoints TO guestlist_audit_writer;
GRANT SELECT, UPDATE ON audit_chain_head TO guestlist_audit_writer;
-- eventkit's tables: the outbox (access events), the inbox, idempotency keys.
GRANT SELECT, INSERT ON events, processed_events TO guestlist_audit_writer;
GRANT SELECT, INSERT, DELETE ON outbox TO guestlist_audit_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO guestlist_audit_writer;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO guestlist_audit_writer;
-- yoyo checks at every start that nothing is left to apply, under its lock.
GRANT SELECT ON _yoyo_migration, _yoyo_version, _yoyo_log TO guestlist_audit_writer;
GRANT SELECT, INSERT, DELETE ON yoyo_lock TO guestlist_audit_writer;
