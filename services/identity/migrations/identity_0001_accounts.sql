-- Identity's own tables beside its event store: lookups that need uniqueness or
-- secrets that never go into events. The events stay the record of what happened.

-- One AES-256-GCM key per person, wrapped with a key derived from IDENTITY_SECRET.
-- Deleting the row is the erasure: every encrypted copy of their data goes dark.
CREATE TABLE personal_data_keys (
    subject_id  uuid        PRIMARY KEY,
    wrapped_key bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Sign-in lookup: the keyed hash of the lower-cased e-mail is unique, the e-mail
-- itself is never stored in clear.
CREATE TABLE credentials (
    user_id       uuid        PRIMARY KEY,
    email_hash    text        NOT NULL UNIQUE,
    password_hash text        NOT NULL,
    changed_at    timestamptz NOT NULL DEFAULT now()
);

-- Single-use secrets sent by e-mail (confirmation, password reset), stored hashed.
CREATE TABLE one_time_tokens (
    token_hash text        PRIMARY KEY,
    user_id    uuid        NOT NULL,
    purpose    text        NOT NULL CHECK (purpose IN ('confirm_email', 'reset_password')),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX one_time_tokens_user ON one_time_tokens (user_id, purpose);

-- Ed25519 keys that sign access tokens. A retired key stays published until the
-- last token it signed has expired.
CREATE TABLE signing_keys (
    kid             text        PRIMARY KEY,
    wrapped_private bytea       NOT NULL,
    public_jwk      jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    retired_at      timestamptz,
    published_until timestamptz
);

-- A session is one sign-in; its refresh tokens form one family (rotation chain).
CREATE TABLE sessions (
    session_id uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE refresh_tokens (
    token_hash  text        PRIMARY KEY,
    session_id  uuid        NOT NULL REFERENCES sessions ON DELETE CASCADE,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    -- Set when exchanged for the next one; presenting it again is reuse.
    replaced_at timestamptz
);

-- What identity knows of invitations, from invitations.invitation events.
CREATE TABLE invitations (
    invitation_id      uuid        PRIMARY KEY,
    code_hash          text        NOT NULL UNIQUE,
    status             text        NOT NULL,
    valid_from         timestamptz NOT NULL,
    valid_until        timestamptz NOT NULL,
    invitee_email_hash text,
    roles              jsonb       NOT NULL DEFAULT '[]'::jsonb
);

-- Work due later (end of a timed suspension, a requested deletion). Replicas take
-- due rows with FOR UPDATE SKIP LOCKED, so each runs once.
CREATE TABLE scheduled_work (
    user_id uuid        NOT NULL,
    kind    text        NOT NULL CHECK (kind IN ('reactivate', 'delete')),
    due_at  timestamptz NOT NULL,
    PRIMARY KEY (user_id, kind)
);
CREATE INDEX scheduled_work_due ON scheduled_work (due_at);
