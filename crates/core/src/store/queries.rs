//! Read-only queries over the cache, for `status`, `history`, `events`, `notifications` and
//! the desktop views. They work offline.

use rusqlite::{Connection, params};
use serde::Serialize;

use super::{Result, Store};
use crate::ipc::{BuildStatus, NotificationKind, NotificationState};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildRow {
    pub key: String,
    pub build_id: Option<i64>,
    pub app: String,
    pub version: String,
    pub commit: String,
    pub status: BuildStatus,
    pub reason: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Default)]
pub struct BuildFilter {
    pub app: Option<String>,
    pub status: Option<BuildStatus>,
    /// RFC 3339 bounds (inclusive since, exclusive until); a date `YYYY-MM-DD` works too.
    pub since: Option<String>,
    pub until: Option<String>,
    /// Free-text search in app, version and commit.
    pub search: Option<String>,
    pub limit: usize,
    pub offset: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRow {
    /// Where the row sits in the cache (all accounts share the sequence): page after it.
    #[serde(skip)]
    pub seq: i64,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: serde_json::Value,
    pub epoch: String,
    pub source: String,
    pub parse_error: Option<String>,
    pub received_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotificationRow {
    pub id: i64,
    pub dedupe_key: String,
    pub kind: NotificationKind,
    pub title: String,
    pub body: String,
    pub urgent: bool,
    pub state: NotificationState,
    pub reason: Option<String>,
    pub created_at: i64,
    /// Calls to show it whose outcome is unknown (the engine died during one, or one timed
    /// out): the daemon may hold up to this many copies beyond one.
    pub repeats_possible: i64,
    /// Whose it is: the notification names the account when several are signed in, and its
    /// "Open usage" opens that account.
    pub account_id: i64,
}

impl NotificationRow {
    /// The row as the desktop shows it when several accounts are signed in: the summary ends
    /// with the account's name.
    pub fn naming(mut self, account: &str) -> Self {
        self.title = format!("{} · {account}", self.title);
        self
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GapRow {
    pub at: i64,
    pub reason: String,
    pub detail: Option<String>,
}

/// Maps a row of `SELECT id, dedupe_key, kind, title, body, urgent, state, reason, created_at,
/// repeats_possible, account_id`.
fn notification_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<NotificationRow> {
    Ok(NotificationRow {
        id: r.get(0)?,
        dedupe_key: r.get(1)?,
        kind: r.get(2)?,
        title: r.get(3)?,
        body: r.get(4)?,
        urgent: r.get(5)?,
        state: r.get(6)?,
        reason: r.get(7)?,
        created_at: r.get(8)?,
        repeats_possible: r.get(9)?,
        account_id: r.get(10)?,
    })
}

pub(super) fn notifications(
    conn: &Connection,
    account: i64,
    state: Option<NotificationState>,
    limit: usize,
) -> Result<Vec<NotificationRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, dedupe_key, kind, title, body, urgent, state, reason, created_at, repeats_possible, account_id
         FROM notifications
         WHERE account_id = ?1 AND (?2 IS NULL OR state = ?2) ORDER BY id LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![account, state, limit as i64], notification_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

impl Store {
    pub fn builds(&self, account: i64, f: &BuildFilter) -> Result<Vec<BuildRow>> {
        let search = like_pattern(f.search.as_deref());
        let mut stmt = self.conn.prepare_cached(
            "SELECT key, build_id, app, version, commit_sha, status, reason, created_at FROM builds
             WHERE account_id = ?1
               AND (?2 IS NULL OR app = ?2)
               AND (?3 IS NULL OR status = ?3)
               AND (?4 IS NULL OR created_at >= ?4)
               AND (?5 IS NULL OR created_at < ?5)
               AND (?6 IS NULL OR app LIKE ?6 ESCAPE '\\' OR version LIKE ?6 ESCAPE '\\' OR commit_sha LIKE ?6 ESCAPE '\\')
             ORDER BY created_at DESC, key DESC LIMIT ?7 OFFSET ?8",
        )?;
        let rows = stmt.query_map(
            params![
                account,
                f.app,
                f.status,
                f.since,
                f.until,
                search,
                f.limit.max(1) as i64,
                f.offset as i64
            ],
            |r| {
                Ok(BuildRow {
                    key: r.get(0)?,
                    build_id: r.get(1)?,
                    app: r.get(2)?,
                    version: r.get(3)?,
                    commit: r.get(4)?,
                    status: r.get(5)?,
                    reason: r.get(6)?,
                    created_at: r.get(7)?,
                })
            },
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The cached event log, oldest first.
    pub fn events(&self, account: i64, after_seq: i64, limit: usize) -> Result<Vec<EventRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT event_id, type, data, epoch, source, parse_error, received_at, seq FROM events
             WHERE account_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![account, after_seq, limit as i64], |r| {
            let data: String = r.get(2)?;
            Ok(EventRow {
                id: r.get(0)?,
                kind: r.get(1)?,
                data: serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data)),
                epoch: r.get(3)?,
                source: r.get(4)?,
                parse_error: r.get(5)?,
                received_at: r.get(6)?,
                seq: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn notifications(
        &self,
        account: i64,
        state: Option<NotificationState>,
        limit: usize,
    ) -> Result<Vec<NotificationRow>> {
        notifications(&self.conn, account, state, limit)
    }

    pub fn gaps(&self, account: i64) -> Result<Vec<GapRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT at, reason, detail FROM history_gaps WHERE account_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([account], |r| {
            Ok(GapRow {
                at: r.get(0)?,
                reason: r.get(1)?,
                detail: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// A stored quota snapshot, for the usage chart.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageSample {
    pub metric: String,
    pub at: i64,
    pub used: i64,
    pub limit: i64,
}

impl Store {
    /// How many builds match `f` (its limit and offset aside), for paging.
    pub fn count_builds(&self, account: i64, f: &BuildFilter) -> Result<u64> {
        let search = like_pattern(f.search.as_deref());
        let mut stmt = self.conn.prepare_cached(
            "SELECT count(*) FROM builds
             WHERE account_id = ?1
               AND (?2 IS NULL OR app = ?2)
               AND (?3 IS NULL OR status = ?3)
               AND (?4 IS NULL OR created_at >= ?4)
               AND (?5 IS NULL OR created_at < ?5)
               AND (?6 IS NULL OR app LIKE ?6 ESCAPE '\\' OR version LIKE ?6 ESCAPE '\\' OR commit_sha LIKE ?6 ESCAPE '\\')",
        )?;
        let n: i64 = stmt.query_row(
            params![account, f.app, f.status, f.since, f.until, search],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Distinct app names of the cached builds, sorted.
    pub fn build_apps(&self, account: i64) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT app FROM builds WHERE account_id = ?1 ORDER BY app LIMIT 10000",
        )?;
        let rows = stmt.query_map([account], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Notifications newest first, a page at a time, with the total.
    /// Newest first; with `not_shown`, only decisions that were not shown as they came.
    pub fn notifications_page(
        &self,
        account: i64,
        offset: usize,
        limit: usize,
        not_shown: bool,
    ) -> Result<(u64, Vec<NotificationRow>)> {
        let total: i64 = self.conn.query_row(
            "SELECT count(*) FROM notifications WHERE account_id = ?1 AND (?2 = 0 OR state <> ?3)",
            params![account, not_shown, NotificationState::Shown],
            |r| r.get(0),
        )?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, dedupe_key, kind, title, body, urgent, state, reason, created_at, repeats_possible, account_id
         FROM notifications
             WHERE account_id = ?1 AND (?4 = 0 OR state <> ?5) ORDER BY id DESC LIMIT ?2 OFFSET ?3",
        )?;
        let rows = stmt.query_map(
            params![
                account,
                limit as i64,
                offset as i64,
                not_shown,
                NotificationState::Shown
            ],
            notification_row,
        )?;
        Ok((total as u64, rows.collect::<rusqlite::Result<_>>()?))
    }

    /// Quota snapshots taken at or after `since` (unix seconds), oldest first, at most `limit`
    /// per call: the chart needs the shape, not every sample.
    pub fn usage_samples(
        &self,
        account: i64,
        since: i64,
        limit: usize,
    ) -> Result<Vec<UsageSample>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT metric, at, used, quota_limit FROM quota_snapshots
             WHERE account_id = ?1 AND at >= ?2 ORDER BY at, id LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![account, since, limit as i64], |r| {
            Ok(UsageSample {
                metric: r.get(0)?,
                at: r.get(1)?,
                used: r.get(2)?,
                limit: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

fn like_pattern(search: Option<&str>) -> Option<String> {
    search.map(|s| {
        format!(
            "%{}%",
            s.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    })
}
