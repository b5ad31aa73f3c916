//! What foresight reads from the cache (the period's usage and the times of the builds that
//! counted) and the state it keeps between checks.

use rusqlite::{OptionalExtension, params};

use super::{Result, Store, known, record_decisions};
use crate::forecast::{BASELINE_WEEKS, HOUR, WEEK};
use crate::foresight::{Metric, Peak, Watch};
use crate::ipc::BuildStatus;
use crate::policy::Decision;
use crate::protocol::{Usage, unix_seconds};

use super::queries::NotificationRow;

/// The cached usage with the build times of the last `BASELINE_WEEKS` weeks and an hour.
pub struct ForesightData {
    pub usage: Usage,
    period: Option<(i64, i64)>,
    counted: Vec<i64>,
    known_since: i64,
    /// The builds metric's highest use in the period the watch state names, when the period
    /// rolled since.
    previous: Option<Peak>,
}

impl ForesightData {
    /// The per-period metrics foresight watches: builds, the one a build counts in.
    pub fn metrics(&self) -> Vec<Metric<'_>> {
        let Some((start, end)) = self.period else {
            return Vec::new();
        };
        self.usage
            .quotas
            .iter()
            .filter(|q| q.metric == "builds")
            .map(|q| Metric {
                name: &q.metric,
                used: q.used,
                limit: q.limit,
                period_start_text: &self.usage.period.start,
                period_start: start,
                period_end: end,
                counted: &self.counted,
                known_since: self.known_since,
                previous: self.previous,
            })
            .collect()
    }
}

/// The decision function `foresee` calls inside its transaction.
pub type Foresee<'a> =
    dyn FnMut(&ForesightData, &mut Watch, &mut dyn FnMut(&str) -> bool) -> Vec<Decision> + 'a;

fn rfc3339(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_string()
}

/// The highest use of builds the cache saw in the period starting at `period_start` (quota
/// snapshots are written for every observation: events, `/usage`, catch-up).
fn peak(conn: &rusqlite::Connection, account: i64, period_start: &str) -> Result<Option<Peak>> {
    Ok(conn
        .prepare_cached(
            "SELECT used, quota_limit FROM quota_snapshots
             WHERE account_id = ?1 AND metric = 'builds' AND period_start = ?2 AND quota_limit > 0
             ORDER BY CAST(used AS REAL) / quota_limit DESC LIMIT 1",
        )?
        .query_row(params![account, period_start], |r| {
            Ok(Peak {
                used: r.get(0)?,
                limit: r.get(1)?,
            })
        })
        .optional()?)
}

/// What foresight reads as of `now`; `watched` is the period the watch state belongs to.
fn read(
    conn: &rusqlite::Connection,
    account: i64,
    now: i64,
    watched: &str,
) -> Result<Option<ForesightData>> {
    let usage: Option<String> = conn
        .prepare_cached("SELECT usage FROM sync_state WHERE account_id = ?1")?
        .query_row([account], |r| r.get(0))
        .optional()?
        .flatten();
    let Some(usage) = usage else {
        return Ok(None);
    };
    let usage: Usage = serde_json::from_str(&usage)?;
    let period = unix_seconds(&usage.period.start).zip(unix_seconds(&usage.period.end));
    // The server writes `created_at` in one RFC 3339 form (UTC, `Z`), so text order is time
    // order and the index on (account, created_at) serves the range.
    let since = (now - BASELINE_WEEKS * WEEK - HOUR).min(period.map_or(now, |p| p.0));
    // SQLite turns the text into unix seconds itself (`unixepoch`), several times faster than
    // parsing each in Rust; text it cannot read is NULL and skipped.
    let mut stmt = conn.prepare_cached(
        "SELECT unixepoch(created_at) FROM builds
         WHERE account_id = ?1 AND status IN (?2, ?3) AND created_at >= ?4",
    )?;
    let counted = stmt
        .query_map(
            params![
                account,
                BuildStatus::Accepted,
                BuildStatus::Overage,
                rfc3339(since)
            ],
            |r| r.get::<_, Option<i64>>(0),
        )?
        .filter_map(|t| t.ok().flatten())
        .collect();
    let oldest: Option<String> = conn
        .prepare_cached(
            "SELECT min(created_at) FROM builds WHERE account_id = ?1 AND status IN (?2, ?3)",
        )?
        .query_row(
            params![account, BuildStatus::Accepted, BuildStatus::Overage],
            |r| r.get(0),
        )?;
    let previous = if !watched.is_empty() && watched != usage.period.start {
        peak(conn, account, watched)?
    } else {
        None
    };
    Ok(Some(ForesightData {
        previous,
        usage,
        period,
        counted,
        known_since: oldest.as_deref().and_then(unix_seconds).unwrap_or(now),
    }))
}

fn watch(conn: &rusqlite::Connection, account: i64) -> Result<Watch> {
    let stored: Option<String> = conn
        .prepare_cached("SELECT state FROM watch WHERE account_id = ?1")?
        .query_row([account], |r| r.get(0))
        .optional()?;
    Ok(stored
        .map(|s| serde_json::from_str(&s))
        .transpose()?
        .unwrap_or_default())
}

impl Store {
    /// What foresight kept at its last check (the paces the views show among it).
    pub fn watch(&self, account: i64) -> Result<Watch> {
        watch(&self.conn, account)
    }

    /// Runs `decide` over the cache and the stored watch state, and records its decisions
    /// and the new state in one transaction; returns the notifications to show now.
    pub fn foresee(
        &mut self,
        account: i64,
        now: i64,
        decide: &mut Foresee<'_>,
    ) -> Result<Vec<NotificationRow>> {
        let tx = self.conn.transaction()?;
        let mut state = watch(&tx, account)?;
        let Some(data) = read(&tx, account, now, &state.period)? else {
            return Ok(Vec::new());
        };
        let before = state.clone();
        let decisions = decide(&data, &mut state, &mut |key| known(&tx, account, key));
        if state != before {
            tx.execute(
                "INSERT INTO watch (account_id, state) VALUES (?1, ?2)
                 ON CONFLICT (account_id) DO UPDATE SET state = ?2",
                params![account, serde_json::to_string(&state)?],
            )?;
        }
        let pending = record_decisions(&tx, account, &decisions, now)?;
        tx.commit()?;
        Ok(pending)
    }
}
