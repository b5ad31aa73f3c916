-- As ../sqlite/002_idempotency.sql.
CREATE TABLE idempotency_keys (
    user_id      BIGINT NOT NULL REFERENCES users(id),
    key          TEXT NOT NULL,
    fingerprint  BYTEA NOT NULL,
    outcome      TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
