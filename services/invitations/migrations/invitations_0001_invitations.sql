-- The invitations service's own state next to its event store. Nothing here is
-- personal data in clear: e-mail, greeting and code live only encrypted in the
-- events, under the invitation's data key (invitation_keys).

-- One AES-256-GCM data key per invitation, wrapped with a key derived from
-- INVITATIONS_SECRET. Deleting the row is the erasure of that invitation's personal data.
CREATE TABLE invitation_keys (
    invitation_id uuid        PRIMARY KEY,
    wrapped_key   bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Lookup and scheduling state, updated in the transaction that appends the events.
CREATE TABLE invitations (
    invitation_id    uuid        PRIMARY KEY,
    -- keyed hashes: the unique pending e-mail, and the code the registration page presents
    email_hash       text        NOT NULL,
    code_hash        text        NOT NULL UNIQUE,
    status           text        NOT NULL
                     CHECK (status IN ('pending', 'accepted', 'expired', 'revoked')),
    inviter_id       uuid        NOT NULL,
    roles            jsonb       NOT NULL,
    locale           text        NOT NULL,
    valid_from       timestamptz NOT NULL,
    valid_until      timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    batch_id         uuid,
    window_opened    boolean     NOT NULL,
    reminded_at      timestamptz,
    accepted_at      timestamptz,
    accepted_user_id uuid,
    closed_at        timestamptz,
    -- from notifications.delivery NotificationSent
    last_sent_at     timestamptz,
    sent_count       integer     NOT NULL DEFAULT 0,
    version          integer     NOT NULL
);

-- One pending invitation per e-mail address; a racing second insert fails here.
CREATE UNIQUE INDEX invitations_one_pending_per_email ON invitations (email_hash)
    WHERE status = 'pending';
-- What the scheduler scans: only pending rows, by the moment they fall due.
CREATE INDEX invitations_due_expiry ON invitations (valid_until) WHERE status = 'pending';
CREATE INDEX invitations_due_window ON invitations (valid_from)
    WHERE status = 'pending' AND NOT window_opened;
CREATE INDEX invitations_due_reminder ON invitations (valid_until)
    WHERE status = 'pending' AND window_opened AND reminded_at IS NULL;

-- Resends per inviter, for the per-inviter throttle; rows older than the window are purged.
CREATE TABLE invitation_sends (
    inviter_id    uuid        NOT NULL,
    sent_at       timestamptz NOT NULL,
    invitation_id uuid        NOT NULL
);
CREATE INDEX invitation_sends_by_inviter ON invitation_sends (inviter_id, sent_at);

-- Bulk uploads: one row per batch, one per input row; rows are worked off by
-- the batch worker (FOR UPDATE SKIP LOCKED, safe with several replicas).
CREATE TABLE invitation_batches (
    batch_id      uuid        PRIMARY KEY,
    submitted_by  uuid        NOT NULL,
    permissions   text[]      NOT NULL,
    submitted_at  timestamptz NOT NULL,
    total         integer     NOT NULL,
    completed_at  timestamptz
);

CREATE TABLE invitation_batch_rows (
    batch_id      uuid        NOT NULL REFERENCES invitation_batches (batch_id),
    row_number    integer     NOT NULL,
    -- the row as uploaded; cleared once processed (it holds an e-mail address)
    input         jsonb,
    outcome       text        CHECK (outcome IN ('created', 'duplicate', 'invalid')),
    invitation_id uuid,
    reason        text,
    PRIMARY KEY (batch_id, row_number)
);
CREATE INDEX invitation_batch_rows_todo ON invitation_batch_rows (batch_id, row_number)
    WHERE outcome IS NULL;
