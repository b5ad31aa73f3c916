//! Threshold crossings: the `quota.warning` / `quota.exceeded` events, each announced once.
//!
//! Below both the quota check and the operator actions on accounts, which both announce what a
//! change of usage or of limits crosses; it knows a metric's `Usage`, not the account.

use crate::error::StoreError;
use crate::events::{self, EventKind, StoredEvent};
use crate::metric::Usage;
use crate::store::{Sql, params};

/// Percentages announced once per metric and period: 80 and 90 as warnings, 100 as exceeded.
pub const THRESHOLDS: [i64; 3] = [80, 90, 100];

/// Announces the highest threshold of `usage` that is newly reached, once per period and limit
/// (per account and limit for metrics that are not per period). Lower thresholds reached in the
/// same step are recorded as announced too, so a jump from 70% to 100% is one event, not three.
pub fn announce(
    sql: &mut dyn Sql,
    user_id: i64,
    usage: &Usage,
    hard_limit: bool,
    now: i64,
) -> Result<Option<StoredEvent>, StoreError> {
    // 0 stands for "no period" in the table's key (see the migration).
    let period_key = usage.period.map_or(0, |(start, _)| start);
    let mut highest = None;
    for threshold in THRESHOLDS {
        if usage.used * 100 < threshold * usage.limit {
            break;
        }
        let fresh = sql.execute(
            "INSERT INTO crossings (user_id, metric, period_start, quota_limit, threshold)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            params![user_id, usage.metric, period_key, usage.limit, threshold],
        )? == 1;
        if fresh {
            highest = Some(threshold);
        }
    }
    let Some(threshold) = highest else {
        return Ok(None);
    };
    let mut data = usage.event_json();
    data["threshold_percent"] = threshold.into();
    data["hard_limit"] = hard_limit.into();
    let kind = if threshold >= 100 {
        EventKind::QuotaExceeded
    } else {
        EventKind::QuotaWarning
    };
    events::append(sql, user_id, kind, &data, None, now).map(Some)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::account;
    use crate::metric::Metric;
    use crate::store::sqlite;

    fn kind_and_percent(ev: Option<StoredEvent>) -> Option<(EventKind, i64)> {
        ev.map(|e| {
            let data: Value = serde_json::from_str(&e.data).unwrap();
            (e.kind, data["threshold_percent"].as_i64().unwrap())
        })
    }

    #[test]
    fn a_jump_is_one_event_and_each_threshold_is_announced_once_per_period_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = sqlite::open_writer(&dir.path().join("q.db")).unwrap();
        let user = account::create(&mut conn, "a@example.com", "free", b"hash", 0).unwrap();
        let builds = |used, limit, start| Usage {
            metric: Metric::Builds,
            used,
            limit,
            period: Some((start, start + 10)),
        };
        let mut announce =
            |usage: Usage| kind_and_percent(announce(&mut conn, user, &usage, true, 0).unwrap());

        assert_eq!(announce(builds(79, 100, 0)), None);
        assert_eq!(
            announce(builds(100, 100, 0)),
            Some((EventKind::QuotaExceeded, 100))
        );
        assert_eq!(announce(builds(100, 100, 0)), None);
        // A new period, and a new limit in the same period, start over.
        assert_eq!(
            announce(builds(85, 100, 10)),
            Some((EventKind::QuotaWarning, 80))
        );
        assert_eq!(
            announce(builds(90, 100, 10)),
            Some((EventKind::QuotaWarning, 90))
        );
        assert_eq!(
            announce(builds(90, 110, 10)),
            Some((EventKind::QuotaWarning, 80))
        );
        // Applications are not per period: once per limit for the account's life.
        let apps = Usage {
            metric: Metric::Applications,
            used: 3,
            limit: 3,
            period: None,
        };
        assert_eq!(announce(apps), Some((EventKind::QuotaExceeded, 100)));
        assert_eq!(announce(apps), None);
    }
}
