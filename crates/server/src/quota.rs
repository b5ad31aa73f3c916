//! The quota check: decides whether a build is accepted, records it and stages its events, all
//! inside the caller's transaction.

use serde::Deserialize;
use serde_json::json;

use crate::account;
use crate::error::StoreError;
use crate::events::{self, EventKind, StoredEvent};
use crate::metric::{Metric, Usage};
use crate::period;
use crate::store::{Sql, params};

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
///
/// The builds quota is decided by one conditional `UPDATE ... WHERE builds_used < limit`: the
/// counter moves only if there was room, whatever else runs at the same time, so a check and
/// its count can never be split by another writer (on PostgreSQL the batch also holds the
/// user's row lock, which serialises the applications check).
pub fn record_build(
    sql: &mut dyn Sql,
    user_id: i64,
    build: &NewBuild,
    now: i64,
) -> Result<BuildOutcome, StoreError> {
    let (mut acct, app_known, reset) = account::current_with(sql, user_id, now, |sql| {
        account::load_with_app(sql, user_id, &build.app)
    })?;
    let mut staged: Vec<StoredEvent> = reset.into_iter().collect();

    let apps_full = !app_known && acct.apps_used >= acct.plan.applications;
    let hard = acct.plan.hard_limit;

    let counted = if hard && apps_full {
        None
    } else {
        // A hard limit counts only below the limit; a soft one always counts (as overage).
        let ceiling = if hard {
            acct.plan.builds_per_period
        } else {
            i64::MAX
        };
        sql.query_opt(
            "UPDATE users SET builds_used = builds_used + 1 WHERE id = $1 AND builds_used < $2
             RETURNING builds_used",
            params![user_id, ceiling],
        )?
        .map(|r| r.int(0))
        .transpose()?
    };
    let Some(builds_used) = counted else {
        // Only a hard limit refuses; builds are named first when both are full.
        let full = if !apps_full || acct.builds_used >= acct.plan.builds_per_period {
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
            sql,
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
    };

    // Over either limit on a soft plan: accepted, and marked as overage.
    let overage = acct.builds_used >= acct.plan.builds_per_period || apps_full;
    acct.builds_used = builds_used;
    if !app_known {
        sql.execute(
            "INSERT INTO apps (user_id, name, created_at) VALUES ($1, $2, $3)",
            params![user_id, &build.app, now],
        )?;
        acct.apps_used += 1;
    }
    let build_id = sql
        .query_one(
            "build",
            "INSERT INTO builds (user_id, app, version, commit_sha, overage, period_start, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            params![
                user_id,
                &build.app,
                &build.version,
                &build.commit,
                overage,
                acct.period_start,
                now
            ],
        )?
        .int(0)?;

    let build_json = build_json(build_id, build, overage, now);
    staged.push(events::append(
        sql,
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
            sql,
            user_id,
            EventKind::QuotaUpdated,
            &acct.usage(metric).event_json(),
            Some(build_id),
            now,
        )?);
        staged.extend(acct.announce_crossing(sql, metric, now)?);
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
