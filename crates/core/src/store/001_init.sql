-- Quotabell's local cache: one file per profile; every row is keyed by account.

CREATE TABLE accounts (
    id          INTEGER PRIMARY KEY,
    origin      TEXT NOT NULL,              -- scheme://host:port, where the token may go
    server_url  TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    email       TEXT NOT NULL,
    plan        TEXT NOT NULL,              -- JSON {id, name, hard_limit}
    created_at  INTEGER NOT NULL,
    UNIQUE (origin, user_id)
) STRICT;

-- Where sync stands. The cursor is the id of the last event stored (opaque text) and belongs
-- to `epoch`; it only ever moves in the transaction that stores the event it names.
CREATE TABLE sync_state (
    account_id        INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    cursor            TEXT,
    epoch             TEXT,
    usage             TEXT,                 -- latest usage JSON, folded with later quota events
    builds_cursor     INTEGER NOT NULL DEFAULT 0,
    history_until     TEXT,                 -- events up to this id predate sign-in: stored, not notified
    last_synced_at    INTEGER,
    connection        TEXT NOT NULL DEFAULT 'offline',
    connection_since  INTEGER,
    connection_detail TEXT
) STRICT;

-- The event log as received. `data` is the raw text; `parse_error` is set when it was not JSON.
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY,
    account_id   INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    epoch        TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    type         TEXT NOT NULL,
    data         TEXT NOT NULL,
    parse_error  TEXT,
    source       TEXT NOT NULL,             -- stream | catchup
    received_at  INTEGER NOT NULL,
    UNIQUE (account_id, epoch, event_id)
) STRICT;

CREATE TABLE quota_snapshots (
    id            INTEGER PRIMARY KEY,
    account_id    INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    at            INTEGER NOT NULL,
    metric        TEXT NOT NULL,
    used          INTEGER NOT NULL,
    quota_limit   INTEGER NOT NULL,
    period_start  TEXT,
    period_end    TEXT
) STRICT;
CREATE INDEX quota_snapshots_by_metric ON quota_snapshots (account_id, metric, at);

-- Builds: accepted ones from /builds and build.accepted (key b:ID), rejected ones from
-- build.rejected events (key r:EPOCH:EVENT_ID), which have no build id.
CREATE TABLE builds (
    account_id   INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    key          TEXT NOT NULL,
    build_id     INTEGER,
    app          TEXT NOT NULL,
    version      TEXT NOT NULL,
    commit_sha   TEXT NOT NULL,
    status       TEXT NOT NULL,             -- accepted | overage | rejected
    reason       TEXT,
    created_at   TEXT NOT NULL,             -- RFC 3339 from the server
    PRIMARY KEY (account_id, key)
) STRICT;
CREATE INDEX builds_by_time ON builds (account_id, created_at DESC, key);

-- Every notification decided, shown or not. The dedupe key is what makes "once per crossing,
-- ever" hold across restarts, replays and reconnects.
CREATE TABLE notifications (
    id          INTEGER PRIMARY KEY,
    account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    dedupe_key  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    urgent      INTEGER NOT NULL,
    state       TEXT NOT NULL,              -- pending | held | shown | suppressed | digested | failed
    reason      TEXT,
    created_at  INTEGER NOT NULL,
    UNIQUE (account_id, dedupe_key)
) STRICT;

CREATE TABLE history_gaps (
    id          INTEGER PRIMARY KEY,
    account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    detail      TEXT
) STRICT;

CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL                    -- JSON
) STRICT;
