-- depends: audit_0001_log
-- Replays of the log into a topic (services/audit/README.md, "Replay"). A row is
-- written with the AuditReplayStarted event that announces it; its progress
-- (last_sequence published and acknowledged) moves after every batch, so a
-- restarted service continues where the last one stopped.

CREATE TABLE audit_replays (
    replay_id      uuid        PRIMARY KEY,
    requested_by   text        NOT NULL,
    requested_at   timestamptz NOT NULL,
    from_sequence  bigint      NOT NULL CHECK (from_sequence > 0),
    to_sequence    bigint      NOT NULL CHECK (to_sequence >= from_sequence),
    types          text[],     -- NULL: every type
    subjects       text[],     -- NULL: every subject
    target_topic   text        NOT NULL,
    status         text        NOT NULL DEFAULT 'running'
                               CHECK (status IN ('running', 'completed', 'failed')),
    total          bigint      NOT NULL CHECK (total >= 0),
    published      bigint      NOT NULL DEFAULT 0,
    last_sequence  bigint      NOT NULL,
    errors         integer     NOT NULL DEFAULT 0,
    last_error     text,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX audit_replays_running ON audit_replays (requested_at) WHERE status = 'running';

GRANT SELECT, INSERT, UPDATE ON audit_replays TO guestlist_audit_writer;
