//! What the bench reads of a running engine: its SQLite cache (read-only, beside the engine)
//! and the server's newest event id, to tell when the engine has caught up; and [`poll`], how
//! the bench waits for either.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::BoxError;

/// What the bench reads from the engine's cache.
#[derive(Debug, Clone, Default)]
pub struct SyncView {
    /// The id of the last event stored (event ids are numbers on this server).
    pub cursor: Option<u64>,
    pub connection: String,
    /// Notifications decided but not shown yet.
    pub pending: i64,
    /// Notifications recorded as shown.
    pub shown: i64,
}

/// A read-only connection to an engine's SQLite cache (WAL: it never blocks the engine).
pub struct Cache {
    conn: Connection,
}

impl Cache {
    pub fn open(path: &Path) -> Result<Self, BoxError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| format!("cannot open the engine cache {}: {e}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(Self { conn })
    }

    /// Each account's cursor and connection, in the order the accounts were added.
    pub fn views(&self) -> Result<Vec<SyncView>, BoxError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT cursor, connection FROM sync_state ORDER BY account_id")?;
        let rows = stmt.query_map([], |r| {
            Ok(SyncView {
                cursor: r.get::<_, Option<String>>(0)?.and_then(|c| c.parse().ok()),
                connection: r.get(1)?,
                ..SyncView::default()
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn view(&self) -> Result<SyncView, BoxError> {
        let row = self
            .conn
            .prepare_cached("SELECT cursor, connection FROM sync_state LIMIT 1")?
            .query_row([], |r| {
                Ok((r.get::<_, Option<String>>(0)?, r.get::<_, String>(1)?))
            })
            .optional()?;
        let Some((cursor, connection)) = row else {
            return Ok(SyncView::default());
        };
        let (pending, shown) = self
            .conn
            .prepare_cached(
                "SELECT coalesce(sum(state = 'pending'), 0), coalesce(sum(state = 'shown'), 0)
                 FROM notifications",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(SyncView {
            cursor: cursor.and_then(|c| c.parse().ok()),
            connection,
            pending,
            shown,
        })
    }

    /// Only the cursor: the cheapest read, for tight polling.
    pub fn cursor(&self) -> Result<Option<u64>, BoxError> {
        let c: Option<Option<String>> = self
            .conn
            .prepare_cached("SELECT cursor FROM sync_state LIMIT 1")?
            .query_row([], |r| r.get(0))
            .optional()?;
        Ok(c.flatten().and_then(|c| c.parse().ok()))
    }
}

/// The server's newest event id for the token's user (`GET /api/v1/usage`).
pub async fn server_last_event_id(
    client: &reqwest::Client,
    base: &str,
    token: &str,
) -> Result<u64, BoxError> {
    let resp = client
        .get(format!("{base}/api/v1/usage"))
        .bearer_auth(token)
        .send()
        .await?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await?;
    if !status.is_success() {
        return Err(format!("GET /usage: HTTP {status}: {v}").into());
    }
    let id = &v["last_event_id"];
    id.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| id.as_u64())
        .ok_or_else(|| format!("GET /usage: no last_event_id in {v}").into())
}

/// Polls `f` every `every` until it returns `Some`, for at most `timeout`.
pub async fn poll<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Result<Option<T>, BoxError>,
) -> Result<T, BoxError> {
    let start = Instant::now();
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?} waiting for {what}").into());
        }
        tokio::time::sleep(every).await;
    }
}
