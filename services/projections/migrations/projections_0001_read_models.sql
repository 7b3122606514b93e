-- Which version of each read model serves reads, and how far each version got.
--
-- A read model's own tables carry its version in their names (directory_users_v2);
-- they are created by the code when a version starts, not here, since a rebuild
-- makes a new set while the current one keeps serving. Switching is one UPDATE
-- of active_version.

CREATE TABLE read_models (
    name             text        PRIMARY KEY,
    active_version   integer     NOT NULL CHECK (active_version > 0),
    -- The version a rebuild is filling, NULL when none is running.
    building_version integer     CHECK (building_version > active_version),
    switched_at      timestamptz NOT NULL DEFAULT now()
);

-- One row per version and partition, written in the same transaction as the
-- events it counts: next_offset is where that version stands in the partition.
CREATE TABLE read_model_checkpoints (
    name           text        NOT NULL,
    version        integer     NOT NULL,
    topic          text        NOT NULL,
    partition      integer     NOT NULL,
    next_offset    bigint      NOT NULL,
    events_applied bigint      NOT NULL DEFAULT 0,
    last_event_id  uuid        NOT NULL,
    last_event_at  timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (name, version, topic, partition)
);
