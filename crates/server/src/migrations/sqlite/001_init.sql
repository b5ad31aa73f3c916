-- Plans are data, not code branches: a new plan is a row.
CREATE TABLE plans (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    hard_limit         INTEGER NOT NULL,           -- 1: reject at the limit; 0: accept as overage
    builds_per_period  INTEGER NOT NULL,
    applications       INTEGER NOT NULL
) STRICT;

INSERT INTO plans (id, name, hard_limit, builds_per_period, applications) VALUES
    ('free', 'Free', 1, 100, 3),
    ('pro', 'Pro', 0, 10000, 50);

CREATE TABLE users (
    id              INTEGER PRIMARY KEY,
    email           TEXT NOT NULL UNIQUE,
    token_hash      BLOB NOT NULL UNIQUE,           -- SHA-256 of the token; the token itself is never stored
    plan_id         TEXT NOT NULL REFERENCES plans(id),
    period_start    INTEGER NOT NULL,               -- unix seconds, inclusive
    period_end      INTEGER NOT NULL,               -- unix seconds, exclusive
    builds_used     INTEGER NOT NULL DEFAULT 0,     -- builds counted in the current period
    last_event_id   INTEGER NOT NULL DEFAULT 0,     -- per-user event sequence, contiguous
    pruned_through  INTEGER NOT NULL DEFAULT 0,     -- events with id <= this are gone (retention)
    stream_epoch    TEXT NOT NULL,                  -- changes when the event log is reset or restored
    created_at      INTEGER NOT NULL
) STRICT;

CREATE TABLE apps (
    user_id     INTEGER NOT NULL REFERENCES users(id),
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, name)
) STRICT, WITHOUT ROWID;

CREATE TABLE builds (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users(id),
    app           TEXT NOT NULL,
    version       TEXT NOT NULL,
    commit_sha    TEXT NOT NULL,
    overage       INTEGER NOT NULL,
    period_start  INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX builds_by_user ON builds (user_id, id);

-- The outbox: events are written in the same transaction as the state change they describe.
CREATE TABLE events (
    user_id     INTEGER NOT NULL REFERENCES users(id),
    id          INTEGER NOT NULL,
    type        TEXT NOT NULL,
    data        TEXT NOT NULL,                      -- compact JSON, sent as-is on the wire
    build_id    INTEGER REFERENCES builds(id),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, id)
) STRICT, WITHOUT ROWID;

-- One row per threshold crossing already announced, so each is announced once per period and
-- limit (a plan change to a different limit is a new set of thresholds).
CREATE TABLE crossings (
    user_id       INTEGER NOT NULL REFERENCES users(id),
    metric        TEXT NOT NULL,
    period_start  INTEGER NOT NULL,                 -- 0 for metrics that are not per period
    quota_limit   INTEGER NOT NULL,
    threshold     INTEGER NOT NULL,
    PRIMARY KEY (user_id, metric, period_start, quota_limit, threshold)
) STRICT, WITHOUT ROWID;
