-- Password-reset requests per client address and fixed window, shared by every
-- replica. Only the keyed hash of the address is kept. Each request is one
-- upsert, whatever the e-mail asked for; the scheduler deletes ended windows.
CREATE TABLE reset_request_windows (
    client_hash  text        NOT NULL,
    window_start timestamptz NOT NULL,
    hits         integer     NOT NULL,
    PRIMARY KEY (client_hash, window_start)
);
CREATE INDEX reset_request_windows_by_start ON reset_request_windows (window_start);
