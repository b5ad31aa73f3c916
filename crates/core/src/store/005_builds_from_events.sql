-- Whether the cached builds are complete up to the event cursor: set when a `/builds` sync has
-- finished, cleared by a history gap (a resync drops the builds). While it is set, every
-- later build arrives as its `build.accepted` event, and a catch-up need not page `/builds`.
ALTER TABLE sync_state ADD COLUMN builds_complete INTEGER NOT NULL DEFAULT 0;
