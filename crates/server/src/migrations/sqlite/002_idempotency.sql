-- The first outcome of each `POST /builds` that carried an `Idempotency-Key`, written in the
-- same transaction as the build it describes, so a retry answers the same and counts nothing.
CREATE TABLE idempotency_keys (
    user_id      INTEGER NOT NULL REFERENCES users(id),
    key          TEXT NOT NULL,
    fingerprint  BLOB NOT NULL,                     -- SHA-256 of the build body's fields
    outcome      TEXT NOT NULL,                     -- compact JSON: {"status": 201, "build": …} or {"status": 402, …}
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (user_id, key)
) STRICT, WITHOUT ROWID;
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
