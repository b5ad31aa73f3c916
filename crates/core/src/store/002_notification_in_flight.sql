-- A notification call in flight is recorded before it is made (state `sending`); a row found
-- so at start-up may have reached the daemon already. `repeats_possible` counts the calls of a
-- row whose outcome is unknown (the engine died during the call, or the call timed out): the
-- daemon may hold up to that many copies beyond the one meant.
ALTER TABLE notifications ADD COLUMN repeats_possible INTEGER NOT NULL DEFAULT 0;
