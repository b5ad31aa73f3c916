-- What foresight remembers between its checks (foresight::Watch as JSON): the early
-- warning's arm count and the runaway episode. Written in the transaction that records the
-- decisions it goes with.
CREATE TABLE watch (
    account_id  INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    state       TEXT NOT NULL
) STRICT;
