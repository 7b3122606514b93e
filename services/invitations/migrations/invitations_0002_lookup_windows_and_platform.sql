-- Public code lookups per client and fixed window, shared by every replica.
-- The client address is personal data: only its keyed hash is kept. Each
-- request is one upsert; the scheduler deletes windows that have ended.
CREATE TABLE lookup_windows (
    client_hash  text        NOT NULL,
    window_start timestamptz NOT NULL,
    hits         integer     NOT NULL,
    PRIMARY KEY (client_hash, window_start)
);
CREATE INDEX lookup_windows_by_start ON lookup_windows (window_start);

-- The platform as identity.platform last described it (PlatformSettingsChanged);
-- until one arrives the service uses its PLATFORM_* settings.
CREATE TABLE platform_settings (
    singleton      boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    name           text        NOT NULL,
    default_locale text        NOT NULL,
    time_zone      text        NOT NULL,
    changed_at     timestamptz NOT NULL
);
