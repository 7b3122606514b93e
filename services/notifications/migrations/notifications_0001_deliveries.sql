-- The notifications service's own tables. Personal values (addresses, names,
-- greetings, invitation codes) are stored exactly as the events carried them:
-- encrypted per person, revealed only at send time, unreadable after erasure.

-- The local copy of identity's platform settings (one row).
CREATE TABLE platform_settings (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    name           text        NOT NULL,
    time_zone      text        NOT NULL,
    default_locale text        NOT NULL,
    changed_at     timestamptz NOT NULL
);

-- People with an account, as identity's user events describe them.
CREATE TABLE people (
    user_id   uuid    PRIMARY KEY,
    email     text    NOT NULL,  -- sealed
    name      text,              -- sealed
    locale    text    NOT NULL,
    confirmed boolean NOT NULL DEFAULT false
);

-- Invitations, as the invitations service's events describe them.
CREATE TABLE invitations (
    invitation_id uuid        PRIMARY KEY,
    invitee_email text        NOT NULL,  -- sealed
    greeting      text,                  -- sealed
    locale        text        NOT NULL,
    roles         jsonb       NOT NULL,
    valid_from    timestamptz NOT NULL,
    valid_until   timestamptz NOT NULL,
    status        text        NOT NULL
);

-- One row per e-mail, written before it is sent. The primary key is derived
-- from the causing event and the template, so one event can never ask for the
-- same e-mail twice; the row also carries the retry schedule, so a restart
-- continues it.
CREATE TABLE deliveries (
    notification_id   uuid        PRIMARY KEY,
    message_id        text        NOT NULL UNIQUE,
    template          text        NOT NULL,
    locale            text        NOT NULL,
    owner             text        NOT NULL,  -- the service whose keys open the sealed values
    recipient         text        NOT NULL,  -- sealed
    recipient_hash    text,                  -- keyed hash, known once revealed
    user_id           uuid,
    invitation_id     uuid,
    params            jsonb       NOT NULL,
    sealed            jsonb       NOT NULL,
    cause_event_id    uuid        NOT NULL,
    cause_type        text        NOT NULL,
    cause_subject     text        NOT NULL,
    cause_record      jsonb       NOT NULL,  -- the causing Kafka record, for the DLQ
    status            text        NOT NULL,
    attempts          integer     NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz,
    not_after         timestamptz,
    lease_until       timestamptz,
    last_error        text,
    dead_letter_due   boolean     NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    sent_at           timestamptz,
    UNIQUE (cause_event_id, template)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'scheduled';
CREATE INDEX deliveries_in_flight ON deliveries (lease_until) WHERE status = 'sending';
CREATE INDEX deliveries_dead_letters ON deliveries (updated_at) WHERE dead_letter_due;
CREATE INDEX deliveries_listed ON deliveries (created_at DESC, notification_id DESC);
CREATE INDEX deliveries_by_user ON deliveries (user_id);
CREATE INDEX deliveries_by_invitation ON deliveries (invitation_id);
