-- What foresight remembers between its checks (foresight::Watch as JSON): the early
-- warning's arm count and the runaway episode. Written in the transaction that records the
-- decisions it goes with.
CREATE TABLE watch (
    account_id  INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    state       TEXT NOT NULL
) STRICT;

-- The run of rejected builds since the last accepted build or period roll: its first
-- rejection's time and how many so far. Updated in event order by the ingest transaction,
-- so the rejection notices it spaces out are the same after a restart or a replay.
CREATE TABLE rejection_runs (
    account_id  INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    first_at    TEXT NOT NULL,
    count       INTEGER NOT NULL
) STRICT;
