-- Answers to writes sent with an Idempotency-Key, so a retry gets the first answer.
-- A row is inserted by the command's own transaction and gets its response in that
-- same transaction: it exists (committed) exactly when the command's events do.
CREATE TABLE idempotency_keys (
    key           text        PRIMARY KEY,
    -- sha256 of method, path, canonical body and principal: the same key with
    -- another request is refused instead of answered with someone else's response.
    fingerprint   text        NOT NULL,
    status_code   integer     CHECK (status_code BETWEEN 100 AND 599),
    headers       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- Kept as the exact JSON text sent, so a replay is byte for byte the same.
    response_body text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);

CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);
