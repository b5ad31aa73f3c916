//! The per-user event log (the outbox). Events are appended inside the caller's transaction,
//! so an event exists exactly when the change it describes was committed.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::error::StoreError;
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

    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "id": self.id.to_string(),
            "type": self.kind,
            "data": serde_json::from_str::<Value>(&self.data).unwrap_or(Value::Null),
            "created_at": crate::period::rfc3339(self.created_at),
        })
    }
}

/// Appends one event for `user_id`, taking the next id of that user's contiguous sequence.
pub fn append(
    conn: &Connection,
    user_id: i64,
    kind: EventKind,
    data: &Value,
    build_id: Option<i64>,
    now: i64,
) -> Result<StoredEvent, StoreError> {
    let id: i64 = conn
        .prepare_cached(
            "UPDATE users SET last_event_id = last_event_id + 1 WHERE id = ?1 RETURNING last_event_id",
        )?
        .query_row([user_id], |r| r.get(0))?;
    let data = data.to_string();
    conn.prepare_cached(
        "INSERT INTO events (user_id, id, type, data, build_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![user_id, id, kind, data, build_id, now])?;
    Ok(StoredEvent {
        user_id,
        id: id as u64,
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

pub fn bounds(conn: &Connection, user_id: i64) -> Result<LogBounds, StoreError> {
    let (pruned, last): (i64, i64) = conn
        .prepare_cached("SELECT pruned_through, last_event_id FROM users WHERE id = ?1")?
        .query_row([user_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(LogBounds {
        pruned_through: pruned as u64,
        last_id: last as u64,
    })
}

/// Up to `limit` events after `after`, oldest first.
pub fn after(
    conn: &Connection,
    user_id: i64,
    after: u64,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, type, data, created_at FROM events WHERE user_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![user_id, after as i64, limit as i64], |r| {
        Ok(StoredEvent {
            user_id,
            id: r.get::<_, i64>(0)? as u64,
            kind: r.get(1)?,
            data: r.get(2)?,
            created_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Drops the oldest events so that at most `keep` remain; returns how many were removed.
pub fn prune(conn: &Connection, user_id: i64, keep: u64) -> Result<usize, StoreError> {
    let b = bounds(conn, user_id)?;
    if b.last_id.saturating_sub(b.pruned_through) <= keep {
        return Ok(0);
    }
    let through = b.last_id - keep;
    let removed = conn
        .prepare_cached("DELETE FROM events WHERE user_id = ?1 AND id <= ?2")?
        .execute(params![user_id, through as i64])?;
    conn.prepare_cached("UPDATE users SET pruned_through = ?2 WHERE id = ?1")?
        .execute(params![user_id, through as i64])?;
    Ok(removed)
}

/// Current stream epoch of a user, if the user exists.
pub fn epoch(conn: &Connection, user_id: i64) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT stream_epoch FROM users WHERE id = ?1")?
        .query_row([user_id], |r| r.get(0))
        .optional()?)
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
