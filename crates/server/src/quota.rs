//! The quota check: decides whether a build is accepted, records it and stages its events, all
//! inside the caller's transaction.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use serde_json::json;

use crate::account::{self, Account, METRIC_APPLICATIONS, METRIC_BUILDS};
use crate::error::StoreError;
use crate::events::{self, StoredEvent};
use crate::period;

/// Percentages announced once per metric and period: 80 and 90 as warnings, 100 as exceeded.
pub const THRESHOLDS: [i64; 3] = [80, 90, 100];

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
        metric: &'static str,
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
        let (metric, used, limit) = if builds_full {
            (METRIC_BUILDS, acct.builds_used, acct.plan.builds_per_period)
        } else {
            (METRIC_APPLICATIONS, acct.apps_used, acct.plan.applications)
        };
        staged.push(events::append(
            conn,
            user_id,
            events::BUILD_REJECTED,
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
        events::BUILD_ACCEPTED,
        &build_json,
        Some(build_id),
        now,
    )?);
    let mut metrics = vec![METRIC_BUILDS];
    if !app_known {
        metrics.push(METRIC_APPLICATIONS);
    }
    for metric in metrics {
        let mut data = acct.quota_json(metric);
        if metric == METRIC_BUILDS {
            data["period"] = acct.period_json();
        }
        staged.push(events::append(
            conn,
            user_id,
            events::QUOTA_UPDATED,
            &data,
            Some(build_id),
            now,
        )?);
        staged.extend(announce_crossings(conn, &acct, metric, now)?);
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

/// Announces the highest threshold of `metric` that usage has newly reached, once per period
/// and limit (per account and limit for metrics that are not per period). Lower thresholds reached in the same step
/// are recorded as announced too, so a jump from 70% to 100% is one event, not three.
pub fn announce_crossings(
    conn: &Connection,
    acct: &Account,
    metric: &str,
    now: i64,
) -> Result<Option<StoredEvent>, StoreError> {
    let (used, limit, period_key) = match metric {
        METRIC_BUILDS => (
            acct.builds_used,
            acct.plan.builds_per_period,
            acct.period_start,
        ),
        _ => (acct.apps_used, acct.plan.applications, 0),
    };
    let mut highest = None;
    for threshold in THRESHOLDS {
        if used * 100 < threshold * limit {
            break;
        }
        let fresh = conn
            .prepare_cached(
                "INSERT OR IGNORE INTO crossings (user_id, metric, period_start, quota_limit, threshold)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![acct.id, metric, period_key, limit, threshold])?
            == 1;
        if fresh {
            highest = Some(threshold);
        }
    }
    let Some(threshold) = highest else {
        return Ok(None);
    };
    let mut data = acct.quota_json(metric);
    data["threshold_percent"] = threshold.into();
    data["hard_limit"] = acct.plan.hard_limit.into();
    if metric == METRIC_BUILDS {
        data["period"] = acct.period_json();
    }
    let kind = if threshold >= 100 {
        events::QUOTA_EXCEEDED
    } else {
        events::QUOTA_WARNING
    };
    events::append(conn, acct.id, kind, &data, None, now).map(Some)
}
