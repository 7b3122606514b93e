-- Delivery keys: one AES-256-GCM key per message that must reach one reader
-- (a confirmation or reset token, the address for the farewell after erasure).
-- The value travels in an event sealed under this key; identity's key endpoint
-- serves it only to its audience (a service client) and only until expires_at,
-- and the scheduler deletes it then. Wrapped like personal_data_keys.
CREATE TABLE delivery_keys (
    key_id      uuid        PRIMARY KEY,
    user_id     uuid        NOT NULL,  -- whose message it is; key reads are recorded for them
    purpose     text        NOT NULL,
    audience    text        NOT NULL,  -- the service client's name
    audience_id uuid        NOT NULL,  -- its token's sub
    wrapped_key bytea       NOT NULL,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX delivery_keys_user ON delivery_keys (user_id);
CREATE INDEX delivery_keys_expiry ON delivery_keys (expires_at);

-- Password-reset requests as they come in: the answer is the same insert for
-- every address; the scheduler looks the address up afterwards.
CREATE TABLE password_reset_requests (
    request_id   bigserial   PRIMARY KEY,
    email_hash   text        NOT NULL,
    requested_at timestamptz NOT NULL
);

-- Failed sign-ins with an address that has no account, per keyed hash: the write
-- a known address's LoginFailed costs, so both answers take the same work.
CREATE TABLE unknown_sign_ins (
    email_hash      text        PRIMARY KEY,
    failures        integer     NOT NULL,
    last_failed_at  timestamptz NOT NULL
);
CREATE INDEX unknown_sign_ins_last ON unknown_sign_ins (last_failed_at);
