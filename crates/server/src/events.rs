//! The per-user event log (the outbox). Events are appended inside the caller's transaction,
//! so an event exists exactly when the change it describes was committed.

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::StoreError;
use crate::store::{Sql, params};
use crate::wire::wire_enum;

wire_enum! {
    /// The type of a stored event, as `/events` and `/stream` name it.
    pub enum EventKind("event type") {
        BuildAccepted = "build.accepted",
        BuildRejected = "build.rejected",
        QuotaUpdated = "quota.updated",
        QuotaWarning = "quota.warning",
        QuotaExceeded = "quota.exceeded",
        QuotaReset = "quota.reset",
        PlanChanged = "plan.changed",
        Notice = "notice",
    }
}

/// Synthetic: sent on the stream in place of history a cursor can no longer reach. Never
/// stored, so not an `EventKind`.
pub const SYNC_RESET: &str = "sync.reset";

/// An event as stored and as sent: `data` is compact JSON text, identical on `/stream` and `/events`.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub user_id: i64,
    pub id: u64,
    pub kind: EventKind,
    pub data: String,
    pub created_at: i64,
}

impl StoredEvent {
    /// The event as one SSE block. `data` is single-line JSON (serde escapes newlines), so one
    /// `data:` line carries it whole.
    pub fn sse_frame(&self) -> String {
        format!(
            "id: {}\nevent: {}\ndata: {}\n\n",
            self.id, self.kind, self.data
        )
    }

    /// The event as `/events` lists it. `data` is the stored text as it is (it was written
    /// by `serde_json`, so it is the same bytes a parse and re-serialization would give), not
    /// built into a tree and serialized again: that was most of the server's work in a
    /// catch-up. Stored text that is not JSON reads as `null`, as it always did.
    pub fn wire(&self) -> WireEvent<'_> {
        let data = serde_json::from_str::<&RawValue>(&self.data).unwrap_or_else(|_| null_raw());
        WireEvent {
            created_at: crate::period::rfc3339(self.created_at),
            data,
            id: self.id.to_string(),
            kind: self.kind,
        }
    }
}

/// An event as `/events` lists it; the fields in the order a `serde_json::Value` map (sorted
/// keys) wrote them, so the bytes are unchanged.
#[derive(Serialize)]
pub struct WireEvent<'a> {
    created_at: String,
    data: &'a RawValue,
    id: String,
    #[serde(rename = "type")]
    kind: EventKind,
}

fn null_raw() -> &'static RawValue {
    static NULL: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    NULL.get_or_init(|| RawValue::from_string("null".into()).expect("null is JSON"))
}

/// Appends one event for `user_id`, taking the next id of that user's contiguous sequence.
pub fn append(
    sql: &mut dyn Sql,
    user_id: i64,
    kind: EventKind,
    data: &Value,
    build_id: Option<i64>,
    now: i64,
) -> Result<StoredEvent, StoreError> {
    let data = data.to_string();
    // The next id of the user's sequence; the insert trigger advances the counter (see the
    // migration), so an append is one round trip. (The casts give PostgreSQL the parameters'
    // types, which a select list does not.) Callers hold the user's row (the writer's
    // batch lock, `account::lock`) or the only write lock (SQLite).
    let id = sql
        .query_one(
            "user",
            "INSERT INTO events (user_id, id, type, data, build_id, created_at)
             SELECT CAST($1 AS BIGINT), last_event_id + 1, CAST($2 AS TEXT), CAST($3 AS TEXT),
                    CAST($4 AS BIGINT), CAST($5 AS BIGINT)
             FROM users WHERE id = $1
             RETURNING id",
            params![user_id, kind, &data, build_id, now],
        )?
        .id(0)?;
    Ok(StoredEvent {
        user_id,
        id,
        kind,
        data,
        created_at: now,
    })
}

/// Where a user's log stands: ids `<= pruned_through` are gone, `last_id` is the newest.
#[derive(Debug, Clone, Copy)]
pub struct LogBounds {
    pub pruned_through: u64,
    pub last_id: u64,
}

pub fn bounds(sql: &mut dyn Sql, user_id: i64) -> Result<LogBounds, StoreError> {
    let r = sql.query_one(
        "user",
        "SELECT pruned_through, last_event_id FROM users WHERE id = $1",
        params![user_id],
    )?;
    Ok(LogBounds {
        pruned_through: r.id(0)?,
        last_id: r.id(1)?,
    })
}

/// Up to `limit` events after `after`, oldest first.
pub fn after(
    sql: &mut dyn Sql,
    user_id: i64,
    after: u64,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    sql.query(
        "SELECT id, type, data, created_at FROM events WHERE user_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        params![user_id, after, limit as u64],
    )?
    .into_iter()
    .map(|r| {
        Ok(StoredEvent {
            user_id,
            id: r.id(0)?,
            kind: r.parse(1)?,
            data: r.string(2)?,
            created_at: r.int(3)?,
        })
    })
    .collect()
}

/// Drops the oldest events so that at most `keep` remain; returns how many were removed.
pub fn prune(sql: &mut dyn Sql, user_id: i64, keep: u64) -> Result<u64, StoreError> {
    let b = bounds(sql, user_id)?;
    if b.last_id.saturating_sub(b.pruned_through) <= keep {
        return Ok(0);
    }
    let through = b.last_id - keep;
    let removed = sql.execute(
        "DELETE FROM events WHERE user_id = $1 AND id <= $2",
        params![user_id, through],
    )?;
    sql.execute(
        "UPDATE users SET pruned_through = $1 WHERE id = $2",
        params![through, user_id],
    )?;
    Ok(removed)
}

/// Current stream epoch of a user, if the user exists.
pub fn epoch(sql: &mut dyn Sql, user_id: i64) -> Result<Option<String>, StoreError> {
    sql.query_opt(
        "SELECT stream_epoch FROM users WHERE id = $1",
        params![user_id],
    )?
    .map(|r| r.string(0))
    .transpose()
}

/// A fresh random epoch value.
pub fn new_epoch() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::check_names;

    #[test]
    fn event_types_read_back_and_unknown_ones_are_errors() {
        check_names(&EventKind::ALL, SYNC_RESET);
    }
}
