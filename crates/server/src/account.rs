//! Users, plans and their quota state as stored; the operator actions on them.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::StoreError;
use crate::events::{self, EventKind, StoredEvent};
use crate::metric::{Metric, Usage};
use crate::period;
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
        conn: &Connection,
        metric: Metric,
        now: i64,
    ) -> Result<Option<StoredEvent>, StoreError> {
        threshold::announce(
            conn,
            self.id,
            &self.usage(metric),
            self.plan.hard_limit,
            now,
        )
    }

    pub fn account_json(&self) -> Value {
        json!({ "id": self.id.to_string(), "email": self.email, "plan": self.plan })
    }
}

pub fn load(conn: &Connection, user_id: i64) -> Result<Account, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT u.id, u.email, p.id, p.name, p.hard_limit, p.builds_per_period, p.applications,
                u.period_start, u.period_end, u.builds_used, u.last_event_id, u.stream_epoch,
                (SELECT count(*) FROM apps a WHERE a.user_id = u.id)
         FROM users u JOIN plans p ON p.id = u.plan_id WHERE u.id = ?1",
    )?;
    Ok(stmt.query_row([user_id], |r| {
        Ok(Account {
            id: r.get(0)?,
            email: r.get(1)?,
            plan: Plan {
                id: r.get(2)?,
                name: r.get(3)?,
                hard_limit: r.get(4)?,
                builds_per_period: r.get(5)?,
                applications: r.get(6)?,
            },
            period_start: r.get(7)?,
            period_end: r.get(8)?,
            builds_used: r.get(9)?,
            last_event_id: r.get::<_, i64>(10)? as u64,
            stream_epoch: r.get(11)?,
            apps_used: r.get(12)?,
        })
    })?)
}

pub fn id_by_email(conn: &Connection, email: &str) -> Result<i64, StoreError> {
    conn.prepare_cached("SELECT id FROM users WHERE email = ?1")?
        .query_row([email], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::NoSuchUser(email.to_owned()))
}

pub fn all_ids(conn: &Connection) -> Result<Vec<i64>, StoreError> {
    let mut stmt = conn.prepare("SELECT id FROM users ORDER BY id")?;
    let ids = stmt.query_map([], |r| r.get(0))?;
    Ok(ids.collect::<Result<_, _>>()?)
}

fn plan_exists(conn: &Connection, plan: &str) -> Result<(), StoreError> {
    let found: Option<i64> = conn
        .query_row("SELECT 1 FROM plans WHERE id = ?1", [plan], |r| r.get(0))
        .optional()?;
    found
        .map(|_| ())
        .ok_or_else(|| StoreError::NoSuchPlan(plan.to_owned()))
}

/// Creates a user whose token hashes to `token_hash`; the period is the current calendar month.
pub fn create(
    conn: &Connection,
    email: &str,
    plan: &str,
    token_hash: &[u8],
    now: i64,
) -> Result<i64, StoreError> {
    plan_exists(conn, plan)?;
    if id_by_email(conn, email).is_ok() {
        return Err(StoreError::UserExists(email.to_owned()));
    }
    let (start, end) = period::month_containing(now);
    conn.execute(
        "INSERT INTO users (email, token_hash, plan_id, period_start, period_end, stream_epoch, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![email, token_hash, plan, start, end, events::new_epoch(), now],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Replaces a user's token (the old one stops working at once).
pub fn set_token_hash(
    conn: &Connection,
    user_id: i64,
    token_hash: &[u8],
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE users SET token_hash = ?2 WHERE id = ?1",
        params![user_id, token_hash],
    )?;
    Ok(())
}

/// Moves the user to `plan`, announcing it and any threshold the new limits put them over.
pub fn set_plan(
    conn: &Connection,
    user_id: i64,
    plan: &str,
    now: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    plan_exists(conn, plan)?;
    if load(conn, user_id)?.plan.id == plan {
        return Ok(Vec::new());
    }
    conn.execute(
        "UPDATE users SET plan_id = ?2 WHERE id = ?1",
        params![user_id, plan],
    )?;
    let acct = load(conn, user_id)?;
    let mut out = vec![events::append(
        conn,
        user_id,
        EventKind::PlanChanged,
        &json!({ "plan": acct.plan, "quotas": acct.quotas_json(), "period": acct.period_json() }),
        None,
        now,
    )?];
    for metric in Metric::ALL {
        out.extend(acct.announce_crossing(conn, metric, now)?);
    }
    Ok(out)
}

/// Starts a new billing period for the user now (an operator action; periods also roll by
/// themselves when a build arrives after the period's end).
pub fn roll_period(
    conn: &Connection,
    user_id: i64,
    now: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    start_period(conn, user_id, now, period::add_month(now), now).map(|e| vec![e])
}

/// Resets the build counter for a new period `[start, end)` and announces it.
pub fn start_period(
    conn: &Connection,
    user_id: i64,
    start: i64,
    end: i64,
    now: i64,
) -> Result<StoredEvent, StoreError> {
    conn.prepare_cached(
        "UPDATE users SET period_start = ?2, period_end = ?3, builds_used = 0 WHERE id = ?1",
    )?
    .execute(params![user_id, start, end])?;
    let acct = load(conn, user_id)?;
    events::append(
        conn,
        user_id,
        EventKind::QuotaReset,
        &json!({ "period": acct.period_json(), "quotas": acct.quotas_json() }),
        None,
        now,
    )
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
    conn: &Connection,
    user_id: i64,
    notice: &Notice<'_>,
    now: i64,
) -> Result<StoredEvent, StoreError> {
    let mut data =
        json!({ "title": notice.title, "body": notice.body, "severity": notice.severity });
    if let Some(url) = notice.url {
        data["url"] = url.into();
    }
    events::append(conn, user_id, EventKind::Notice, &data, None, now)
}

/// Empties the user's event log and gives it a new epoch, as a restore or a reset of the
/// server's history would: clients holding a cursor must notice and resync. Ids keep counting
/// from where they were, so every old cursor but the newest now points into pruned history and
/// gets `sync.reset` / 410 even from a client that ignores the epoch.
pub fn reset_events(conn: &Connection, user_id: i64) -> Result<String, StoreError> {
    let epoch = events::new_epoch();
    conn.execute("DELETE FROM events WHERE user_id = ?1", [user_id])?;
    conn.execute(
        "UPDATE users SET pruned_through = last_event_id, stream_epoch = ?2 WHERE id = ?1",
        params![user_id, epoch],
    )?;
    Ok(epoch)
}
