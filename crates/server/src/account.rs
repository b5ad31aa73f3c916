//! Users, plans and their quota state as stored; the operator actions on them.

use serde::Serialize;
use serde_json::{Value, json};

use crate::error::StoreError;
use crate::events::{self, EventKind, StoredEvent};
use crate::metric::{Metric, Usage};
use crate::period;
use crate::store::{Row, Sql, params};
use crate::threshold;

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub id: String,
    pub name: String,
    pub hard_limit: bool,
    #[serde(skip)]
    pub builds_per_period: i64,
    #[serde(skip)]
    pub applications: i64,
}

/// A user with the plan and quota counters the quota check needs.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: i64,
    pub email: String,
    pub plan: Plan,
    pub period_start: i64,
    pub period_end: i64,
    pub builds_used: i64,
    pub apps_used: i64,
    pub last_event_id: u64,
    pub stream_epoch: String,
}

impl Account {
    /// The account as of `now`: a period that has ended reads as the next one with nothing
    /// used yet, before any build has rolled it over in the database.
    pub fn as_of(mut self, now: i64) -> Self {
        if now >= self.period_end {
            (self.period_start, self.period_end) =
                period::advance_to(self.period_start, self.period_end, now);
            self.builds_used = 0;
        }
        self
    }

    /// How much of `metric` the account has used, against its plan's limit.
    pub fn usage(&self, metric: Metric) -> Usage {
        match metric {
            Metric::Builds => Usage {
                metric,
                used: self.builds_used,
                limit: self.plan.builds_per_period,
                period: Some((self.period_start, self.period_end)),
            },
            Metric::Applications => Usage {
                metric,
                used: self.apps_used,
                limit: self.plan.applications,
                period: None,
            },
        }
    }

    pub fn quotas_json(&self) -> Value {
        Value::Array(
            Metric::ALL
                .into_iter()
                .map(|m| self.usage(m).quota_json())
                .collect(),
        )
    }

    pub fn period_json(&self) -> Value {
        period::json(self.period_start, self.period_end)
    }

    /// Announces the threshold of `metric` that the account's usage newly reached, if any.
    pub fn announce_crossing(
        &self,
        sql: &mut dyn Sql,
        metric: Metric,
        now: i64,
    ) -> Result<Option<StoredEvent>, StoreError> {
        threshold::announce(sql, self.id, &self.usage(metric), self.plan.hard_limit, now)
    }

    pub fn account_json(&self) -> Value {
        json!({ "id": self.id.to_string(), "email": self.email, "plan": self.plan })
    }
}

fn account(r: &Row) -> Result<Account, StoreError> {
    Ok(Account {
        id: r.int(0)?,
        email: r.string(1)?,
        plan: Plan {
            id: r.string(2)?,
            name: r.string(3)?,
            hard_limit: r.bool(4)?,
            builds_per_period: r.int(5)?,
            applications: r.int(6)?,
        },
        period_start: r.int(7)?,
        period_end: r.int(8)?,
        builds_used: r.int(9)?,
        last_event_id: r.id(10)?,
        stream_epoch: r.string(11)?,
        apps_used: r.int(12)?,
    })
}

pub fn load(sql: &mut dyn Sql, user_id: i64) -> Result<Account, StoreError> {
    let r = sql.query_one(
        "user",
        "SELECT u.id, u.email, p.id, p.name, p.hard_limit, p.builds_per_period, p.applications,
                u.period_start, u.period_end, u.builds_used, u.last_event_id, u.stream_epoch,
                (SELECT count(*) FROM apps a WHERE a.user_id = u.id)
         FROM users u JOIN plans p ON p.id = u.plan_id WHERE u.id = $1",
        params![user_id],
    )?;
    account(&r)
}

/// The account and whether it already has the application `app`, in one round trip (the
/// quota check needs both).
pub fn load_with_app(
    sql: &mut dyn Sql,
    user_id: i64,
    app: &str,
) -> Result<(Account, bool), StoreError> {
    let r = sql.query_one(
        "user",
        "SELECT u.id, u.email, p.id, p.name, p.hard_limit, p.builds_per_period, p.applications,
                u.period_start, u.period_end, u.builds_used, u.last_event_id, u.stream_epoch,
                (SELECT count(*) FROM apps a WHERE a.user_id = u.id),
                (SELECT count(*) FROM apps a WHERE a.user_id = u.id AND a.name = $1)
         FROM users u JOIN plans p ON p.id = u.plan_id WHERE u.id = $2",
        params![app, user_id],
    )?;
    Ok((account(&r)?, r.int(13)? > 0))
}

pub fn id_by_email(sql: &mut dyn Sql, email: &str) -> Result<i64, StoreError> {
    sql.query_opt("SELECT id FROM users WHERE email = $1", params![email])?
        .ok_or_else(|| StoreError::NoSuchUser(email.to_owned()))?
        .int(0)
}

/// The user a token belongs to (by its hash), if any.
pub fn id_by_token_hash(sql: &mut dyn Sql, hash: &[u8]) -> Result<Option<i64>, StoreError> {
    sql.query_opt("SELECT id FROM users WHERE token_hash = $1", params![hash])?
        .map(|r| r.int(0))
        .transpose()
}

pub fn all_ids(sql: &mut dyn Sql) -> Result<Vec<i64>, StoreError> {
    sql.query("SELECT id FROM users ORDER BY id", &[])?
        .iter()
        .map(|r| r.int(0))
        .collect()
}

fn plan_exists(sql: &mut dyn Sql, plan: &str) -> Result<(), StoreError> {
    sql.query_opt("SELECT 1 FROM plans WHERE id = $1", params![plan])?
        .map(|_| ())
        .ok_or_else(|| StoreError::NoSuchPlan(plan.to_owned()))
}

/// Creates a user whose token hashes to `token_hash`; the period is the current calendar month.
pub fn create(
    sql: &mut dyn Sql,
    email: &str,
    plan: &str,
    token_hash: &[u8],
    now: i64,
) -> Result<i64, StoreError> {
    plan_exists(sql, plan)?;
    if id_by_email(sql, email).is_ok() {
        return Err(StoreError::UserExists(email.to_owned()));
    }
    let (start, end) = period::month_containing(now);
    let epoch = events::new_epoch();
    sql.query_one(
        "user",
        "INSERT INTO users (email, token_hash, plan_id, period_start, period_end, stream_epoch, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        params![email, token_hash, plan, start, end, &epoch, now],
    )?
    .int(0)
}

/// Replaces a user's token (the old one stops working at once).
pub fn set_token_hash(
    sql: &mut dyn Sql,
    user_id: i64,
    token_hash: &[u8],
) -> Result<(), StoreError> {
    sql.execute(
        "UPDATE users SET token_hash = $1 WHERE id = $2",
        params![token_hash, user_id],
    )?;
    Ok(())
}

/// Moves the user to `plan`, announcing it and any threshold the new limits put them over.
pub fn set_plan(
    sql: &mut dyn Sql,
    user_id: i64,
    plan: &str,
    now: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    plan_exists(sql, plan)?;
    if load(sql, user_id)?.plan.id == plan {
        return Ok(Vec::new());
    }
    sql.execute(
        "UPDATE users SET plan_id = $1 WHERE id = $2",
        params![plan, user_id],
    )?;
    let acct = load(sql, user_id)?;
    let mut out = vec![events::append(
        sql,
        user_id,
        EventKind::PlanChanged,
        &json!({ "plan": acct.plan, "quotas": acct.quotas_json(), "period": acct.period_json() }),
        None,
        now,
    )?];
    for metric in Metric::ALL {
        out.extend(acct.announce_crossing(sql, metric, now)?);
    }
    Ok(out)
}

/// Starts a new billing period for the user now (an operator action; periods also roll by
/// themselves when a build arrives after the period's end).
pub fn roll_period(
    sql: &mut dyn Sql,
    user_id: i64,
    now: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    start_period(sql, user_id, now, period::add_month(now), now).map(|e| vec![e])
}

/// Resets the build counter for a new period `[start, end)` and announces it.
pub fn start_period(
    sql: &mut dyn Sql,
    user_id: i64,
    start: i64,
    end: i64,
    now: i64,
) -> Result<StoredEvent, StoreError> {
    sql.execute(
        "UPDATE users SET period_start = $1, period_end = $2, builds_used = 0 WHERE id = $3",
        params![start, end, user_id],
    )?;
    let acct = load(sql, user_id)?;
    events::append(
        sql,
        user_id,
        EventKind::QuotaReset,
        &json!({ "period": acct.period_json(), "quotas": acct.quotas_json() }),
        None,
        now,
    )
}

/// Locks the users' rows for the rest of the transaction, in id order, so that writers on other
/// PostgreSQL instances wait rather than interleave (and two lockers never deadlock). SQLite
/// has one writer at a time already.
pub fn lock(sql: &mut dyn Sql, users: &[i64]) -> Result<(), StoreError> {
    if sql.dialect() == crate::store::Dialect::Postgres {
        let mut sorted = users.to_vec();
        sorted.sort_unstable();
        sql.query(
            "SELECT id FROM users WHERE id = ANY($1) ORDER BY id FOR UPDATE",
            params![&sorted[..]],
        )?;
    }
    Ok(())
}

/// Users whose billing period ended before `now`: the background job rolls them over.
pub fn period_ended(sql: &mut dyn Sql, now: i64, limit: u64) -> Result<Vec<i64>, StoreError> {
    sql.query(
        "SELECT id FROM users WHERE period_end <= $1 ORDER BY id LIMIT $2",
        params![now, limit],
    )?
    .iter()
    .map(|r| r.int(0))
    .collect()
}

/// The account as of `now`, its period rolled forward first if it has ended (with the
/// `quota.reset` that announces it). A no-op roll when someone (a build, another instance)
/// already did it, so a period rolls once.
pub fn current(
    sql: &mut dyn Sql,
    user_id: i64,
    now: i64,
) -> Result<(Account, Option<StoredEvent>), StoreError> {
    current_with(sql, user_id, now, |sql| Ok((load(sql, user_id)?, ()))).map(|(a, (), e)| (a, e))
}

/// `current`, loading with `load` (which also gives back what else it read).
pub fn current_with<T>(
    sql: &mut dyn Sql,
    user_id: i64,
    now: i64,
    mut load: impl FnMut(&mut dyn Sql) -> Result<(Account, T), StoreError>,
) -> Result<(Account, T, Option<StoredEvent>), StoreError> {
    let (acct, extra) = load(sql)?;
    if now < acct.period_end {
        return Ok((acct, extra, None));
    }
    let (start, end) = period::advance_to(acct.period_start, acct.period_end, now);
    let reset = start_period(sql, user_id, start, end, now)?;
    let (acct, extra) = load(sql)?;
    Ok((acct, extra, Some(reset)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

pub struct Notice<'a> {
    pub title: &'a str,
    pub body: &'a str,
    pub url: Option<&'a str>,
    pub severity: Severity,
}

pub fn notice(
    sql: &mut dyn Sql,
    user_id: i64,
    notice: &Notice<'_>,
    now: i64,
) -> Result<StoredEvent, StoreError> {
    let mut data =
        json!({ "title": notice.title, "body": notice.body, "severity": notice.severity });
    if let Some(url) = notice.url {
        data["url"] = url.into();
    }
    events::append(sql, user_id, EventKind::Notice, &data, None, now)
}

/// Empties the user's event log and gives it a new epoch, as a restore or a reset of the
/// server's history would: clients holding a cursor must notice and resync. Ids keep counting
/// from where they were, so every old cursor but the newest now points into pruned history and
/// gets `sync.reset` / 410 even from a client that ignores the epoch.
pub fn reset_events(sql: &mut dyn Sql, user_id: i64) -> Result<String, StoreError> {
    let epoch = events::new_epoch();
    sql.execute("DELETE FROM events WHERE user_id = $1", params![user_id])?;
    sql.execute(
        "UPDATE users SET pruned_through = last_event_id, stream_epoch = $1 WHERE id = $2",
        params![&epoch, user_id],
    )?;
    Ok(epoch)
}
