//! The writer: threads that own the write connections and commit builds in groups (one on
//! SQLite, a few per instance on PostgreSQL; each user belongs to one of them).
//!
//! SQLite allows one writer at a time, so instead of many handlers queueing on its lock, they
//! send jobs here. The thread takes every job waiting (up to `MAX_BATCH`), runs each in its own
//! savepoint inside one transaction, commits once, and only then answers the handlers and wakes
//! the streams. That gives two guarantees at once: a build is acknowledged only after it and its
//! events are durable, and the quota check is serialised per database, so concurrent posts can
//! never overshoot a hard limit.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::account;
use crate::error::StoreError;
use crate::events;
use crate::idempotency::{self, IdempotencyKey, Recorded};
use crate::live::hub::Hubs;
use crate::quota::NewBuild;
use crate::store::{Sql, WriteConn, postgres};

const MAX_BATCH: usize = 512;
/// Attempts at one batch before its builds get an error: a deadlock or serialization failure
/// retries at once; a lost connection waits `RECONNECT_PAUSE` (a PostgreSQL restart takes a
/// second or two).
const MAX_ATTEMPTS: u32 = 40;
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);

struct Job {
    user_id: i64,
    key: Option<IdempotencyKey>,
    build: NewBuild,
    now: i64,
    reply: oneshot::Sender<Result<Recorded, StoreError>>,
}

/// Handle used by request handlers to submit builds.
#[derive(Clone)]
pub struct Writer {
    /// One queue per writer thread; a user's builds always go to the same one, so they are
    /// committed in the order they arrived and never wait on each other's row locks.
    lanes: Vec<mpsc::Sender<Job>>,
}

/// Settings the writer applies after each commit.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Events kept per user; older ones are pruned and a cursor pointing there gets a reset.
    pub events_per_user: u64,
}

impl Writer {
    /// One writer thread per connection. SQLite gets one (it has one writer at a time);
    /// PostgreSQL several, so that one instance's commits do not wait for each other's round
    /// trips to the database.
    pub fn spawn(
        conns: Vec<WriteConn>,
        hubs: Arc<Hubs>,
        retention: Retention,
    ) -> std::io::Result<(Self, Vec<JoinHandle<()>>)> {
        let mut lanes = Vec::with_capacity(conns.len());
        let mut handles = Vec::with_capacity(conns.len());
        for (i, conn) in conns.into_iter().enumerate() {
            let (tx, rx) = mpsc::channel(4096);
            let hubs = hubs.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("quotabell-writer-{i}"))
                    .spawn(move || run(conn, rx, &hubs, retention))?,
            );
            lanes.push(tx);
        }
        Ok((Self { lanes }, handles))
    }

    /// Whether every writer thread still takes jobs.
    pub fn is_running(&self) -> bool {
        !self.lanes.is_empty() && self.lanes.iter().all(|tx| !tx.is_closed())
    }

    pub async fn record_build(
        &self,
        user_id: i64,
        key: Option<IdempotencyKey>,
        build: NewBuild,
        now: i64,
    ) -> Result<Recorded, StoreError> {
        let (reply, answer) = oneshot::channel();
        let lane = &self.lanes[user_id.unsigned_abs() as usize % self.lanes.len()];
        lane.send(Job {
            user_id,
            key,
            build,
            now,
            reply,
        })
        .await
        .map_err(|_| StoreError::ShuttingDown)?;
        answer.await.map_err(|_| StoreError::ShuttingDown)?
    }
}

fn run(mut conn: WriteConn, mut rx: mpsc::Receiver<Job>, hubs: &Hubs, retention: Retention) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let results = commit(&mut conn, &batch, retention);
        for (job, result) in batch.drain(..).zip(results) {
            if let Ok(Recorded::Fresh(outcome)) = &result {
                hubs.publish(job.user_id, outcome.events());
            }
            // The handler may have gone (client disconnected): the build stands anyway.
            let _ = job.reply.send(result);
        }
    }
    tracing::debug!("writer stopped");
}

/// Commits the batch, retrying what can succeed on a second attempt. A job that fails on its
/// own (not the connection, not a conflict) must not take the others down: the batch is then
/// committed job by job so that only that job gets the error.
fn commit(
    conn: &mut WriteConn,
    batch: &[Job],
    retention: Retention,
) -> Vec<Result<Recorded, StoreError>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = conn.with(|sql| sql.write(|sql| commit_batch(sql, batch, retention)));
        let err = match result {
            Ok(results) => return results,
            Err(e) => e,
        };
        match retry_pause(&err) {
            Some(pause) if attempt < MAX_ATTEMPTS => {
                tracing::debug!(error = %err, attempt, "retrying a write batch");
                std::thread::sleep(pause);
            }
            None if batch.len() > 1 => {
                tracing::warn!(error = %err, jobs = batch.len(), "a batch failed; committing its jobs one by one");
                return batch
                    .chunks(1)
                    .flat_map(|one| commit(conn, one, retention))
                    .collect();
            }
            _ => {
                tracing::error!(error = %err, jobs = batch.len(), "write transaction failed");
                let message = err.to_string();
                return batch
                    .iter()
                    .map(|_| Err(StoreError::WriteFailed(message.clone())))
                    .collect();
            }
        }
    }
}

/// How long to wait before trying a failed batch again, if it is worth trying.
fn retry_pause(err: &StoreError) -> Option<Duration> {
    if postgres::is_conflict(err) {
        Some(Duration::ZERO)
    } else if postgres::is_disconnect(err) {
        Some(RECONNECT_PAUSE)
    } else {
        None
    }
}

/// The batch in one transaction. On PostgreSQL, where other instances write at the same time,
/// the batch first locks its users' rows in id order (so two batches cannot deadlock on each
/// other, and each user's event ids commit in order), and last queues one wake-up per batch
/// for the instances that stream to those users.
fn commit_batch(
    sql: &mut dyn Sql,
    batch: &[Job],
    retention: Retention,
) -> Result<Vec<Result<Recorded, StoreError>>, StoreError> {
    let mut users: Vec<i64> = batch.iter().map(|j| j.user_id).collect();
    users.sort_unstable();
    users.dedup();
    account::lock(sql, &users)?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let recorded =
            idempotency::record_build(sql, job.user_id, job.key.as_ref(), &job.build, job.now)?;
        results.push(Ok(recorded));
    }
    let mut newest = Vec::with_capacity(users.len());
    for &user in &users {
        // Slack of 1/16 so pruning runs now and then rather than on every commit.
        let keep = retention.events_per_user;
        let b = events::bounds(sql, user)?;
        if b.last_id.saturating_sub(b.pruned_through) > keep + keep / 16 {
            events::prune(sql, user, keep)?;
        }
        newest.push((user, b.last_id));
    }
    crate::live::follow::wake(sql, &newest)?;
    Ok(results)
}
