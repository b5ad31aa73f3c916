//! Background jobs: rolling billing periods that ended with no build to roll them, forgetting
//! expired idempotency keys, and pruning event logs past retention.
//!
//! They must run on one instance at a time (two instances rolling the same period would
//! announce it twice), so on PostgreSQL the instance that holds a session advisory lock
//! (`LEADER_LOCK`) on a connection of its own runs them; when it dies its session ends, the
//! lock is released, and the next instance to try takes it over. Each job is also safe to run
//! twice (it re-checks under the user's row lock), so a stale leader cannot double anything.
//! On SQLite the one process is the leader.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::account;
use crate::error::StoreError;
use crate::events;
use crate::idempotency;
use crate::live::follow;
use crate::store::{ReadPool, Sql, params, postgres};
use crate::writer::Retention;

/// Users handled per job run; the rest wait for the next run.
const PER_RUN: u64 = 500;

/// Whether this instance runs the jobs now (reported by `/healthz`).
#[derive(Debug, Default)]
pub struct Leadership(AtomicBool);

impl Leadership {
    /// The only instance there is (SQLite): the leader from the start.
    pub fn sole() -> Self {
        Self(AtomicBool::new(true))
    }

    pub fn is_leader(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, leader: bool) {
        if self.0.swap(leader, Ordering::Relaxed) != leader {
            tracing::info!(leader, "background jobs leadership changed");
        }
    }
}

/// One run of every job at `now`; returns the events it committed.
pub fn run_once(sql: &mut dyn Sql, now: i64, retention: Retention) -> Result<usize, StoreError> {
    let mut announced = 0;
    for user in account::period_ended(sql, now, PER_RUN)? {
        announced += sql.write(|sql| {
            account::lock(sql, &[user])?;
            let (_, rolled) = account::current(sql, user, now)?;
            if let Some(ev) = &rolled {
                follow::wake(sql, &[(user, ev.id)])?;
            }
            Ok(usize::from(rolled.is_some()))
        })?;
    }
    sql.write(|sql| idempotency::prune(sql, now))?;
    let keep = retention.events_per_user;
    let over = sql.query(
        "SELECT id FROM users WHERE last_event_id - pruned_through > $1 ORDER BY id LIMIT $2",
        params![keep + keep / 16, PER_RUN],
    )?;
    for row in over {
        let user = row.int(0)?;
        sql.write(|sql| {
            account::lock(sql, &[user])?;
            events::prune(sql, user, keep)
        })?;
    }
    Ok(announced)
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

async fn run_on(pool: &ReadPool, retention: Retention) {
    let done = pool
        .read(move |sql| run_once(sql, unix_now(), retention))
        .await;
    match done {
        Ok(0) => {}
        Ok(n) => tracing::info!(events = n, "background jobs announced period rolls"),
        Err(e) => tracing::warn!(error = %e, "background jobs failed; retrying next run"),
    }
}

/// Runs the jobs every `every` until shutdown, taking and keeping leadership on PostgreSQL.
pub async fn run(
    pool: ReadPool,
    leadership: Arc<Leadership>,
    retention: Retention,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let ReadPool::Postgres(store) = pool.clone() else {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => run_on(&pool, retention).await,
                _ = shutdown.changed() => return,
            }
        }
    };
    while !*shutdown.borrow() {
        if let Some((client, mut alive)) = try_lead(&store).await {
            leadership.set(true);
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => run_on(&pool, retention).await,
                    _ = &mut alive => break, // the lock's session is gone, and the lock with it
                    _ = shutdown.changed() => return,
                }
            }
            drop(client);
            leadership.set(false);
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Opens the leader's connection and tries the lock. Holding it means keeping the connection:
/// the returned task ends when the connection does.
async fn try_lead(
    store: &postgres::Store,
) -> Option<(tokio_postgres::Client, tokio::task::JoinHandle<()>)> {
    let (client, conn) = match store.dedicated(postgres::LEADER_NAME).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "cannot connect to try for leadership");
            return None;
        }
    };
    let alive = tokio::spawn(async move {
        let _ = conn.await;
    });
    let got = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&postgres::LEADER_LOCK])
        .await
        .map(|r| r.get::<_, bool>(0));
    match got {
        Ok(true) => Some((client, alive)),
        Ok(false) => None,
        Err(e) => {
            tracing::debug!(error = %e, "cannot try for leadership");
            None
        }
    }
}
