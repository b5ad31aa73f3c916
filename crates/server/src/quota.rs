//! The quota check: decides whether a build is accepted, records it and stages its events, all
//! inside the caller's transaction.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use serde_json::json;

use crate::account;
use crate::error::StoreError;
use crate::events::{self, EventKind, StoredEvent};
use crate::metric::{Metric, Usage};
use crate::period;

/// What a build plugin posts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBuild {
    pub app: String,
    pub version: String,
    pub commit: String,
}

#[derive(Debug)]
pub enum BuildOutcome {
    Accepted {
        build: serde_json::Value,
        events: Vec<StoredEvent>,
    },
    Rejected {
        metric: Metric,
        used: i64,
        limit: i64,
        events: Vec<StoredEvent>,
    },
}

impl BuildOutcome {
    pub fn events(&self) -> &[StoredEvent] {
        match self {
            Self::Accepted { events, .. } | Self::Rejected { events, .. } => events,
        }
    }
}

/// Records one build for `user_id` at `now` after checking the plan's quotas.
pub fn record_build(
    conn: &Connection,
    user_id: i64,
    build: &NewBuild,
    now: i64,
) -> Result<BuildOutcome, StoreError> {
    let mut staged = Vec::new();
    let mut acct = account::load(conn, user_id)?;
    if now >= acct.period_end {
        let (start, end) = period::advance_to(acct.period_start, acct.period_end, now);
        staged.push(account::start_period(conn, user_id, start, end, now)?);
        acct = account::load(conn, user_id)?;
    }

    let app_known = conn
        .prepare_cached("SELECT 1 FROM apps WHERE user_id = ?1 AND name = ?2")?
        .query_row(params![user_id, build.app], |_| Ok(()))
        .optional()?
        .is_some();
    let builds_full = acct.builds_used >= acct.plan.builds_per_period;
    let apps_full = !app_known && acct.apps_used >= acct.plan.applications;

    if acct.plan.hard_limit && (builds_full || apps_full) {
        let full = if builds_full {
            Metric::Builds
        } else {
            Metric::Applications
        };
        let Usage {
            metric,
            used,
            limit,
            ..
        } = acct.usage(full);
        staged.push(events::append(
            conn,
            user_id,
            EventKind::BuildRejected,
            &json!({
                "app": build.app, "version": build.version, "commit": build.commit,
                "metric": metric, "used": used, "limit": limit,
                "created_at": period::rfc3339(now),
            }),
            None,
            now,
        )?);
        return Ok(BuildOutcome::Rejected {
            metric,
            used,
            limit,
            events: staged,
        });
    }

    let overage = builds_full || apps_full;
    if !app_known {
        conn.prepare_cached("INSERT INTO apps (user_id, name, created_at) VALUES (?1, ?2, ?3)")?
            .execute(params![user_id, build.app, now])?;
    }
    conn.prepare_cached(
        "INSERT INTO builds (user_id, app, version, commit_sha, overage, period_start, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        user_id,
        build.app,
        build.version,
        build.commit,
        overage,
        acct.period_start,
        now
    ])?;
    let build_id = conn.last_insert_rowid();
    conn.prepare_cached("UPDATE users SET builds_used = builds_used + 1 WHERE id = ?1")?
        .execute([user_id])?;
    acct.builds_used += 1;
    if !app_known {
        acct.apps_used += 1;
    }

    let build_json = build_json(build_id, build, overage, now);
    staged.push(events::append(
        conn,
        user_id,
        EventKind::BuildAccepted,
        &build_json,
        Some(build_id),
        now,
    )?);
    let mut metrics = vec![Metric::Builds];
    if !app_known {
        metrics.push(Metric::Applications);
    }
    for metric in metrics {
        staged.push(events::append(
            conn,
            user_id,
            EventKind::QuotaUpdated,
            &acct.usage(metric).event_json(),
            Some(build_id),
            now,
        )?);
        staged.extend(acct.announce_crossing(conn, metric, now)?);
    }
    Ok(BuildOutcome::Accepted {
        build: build_json,
        events: staged,
    })
}

pub fn build_json(id: i64, build: &NewBuild, overage: bool, at: i64) -> serde_json::Value {
    json!({
        "id": id, "app": build.app, "version": build.version, "commit": build.commit,
        "overage": overage, "created_at": period::rfc3339(at),
    })
}
