-- The event store and its outbox.
--
-- events.position is a global order of *allocation*: a transaction that started
-- earlier may commit later, so positions become visible out of order. Nothing
-- tails this column; the outbox is the hand-off to Kafka and is consumed row by
-- row (rows are deleted once Kafka acknowledged them), so a late commit is
-- simply picked up on the next pass.

CREATE TABLE events (
    position     bigserial   PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    stream_id    text        NOT NULL,
    version      integer     NOT NULL CHECK (version > 0),
    type         text        NOT NULL,
    topic        text        NOT NULL,
    source       text        NOT NULL,
    data         jsonb       NOT NULL,
    actor_id     text        NOT NULL,
    traceparent  text,
    extensions   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT events_stream_version_unique UNIQUE (stream_id, version)
);

CREATE TABLE outbox (
    position bigint PRIMARY KEY REFERENCES events (position)
);
