//! The single writer: one thread that owns the write connection and commits builds in groups.
//!
//! SQLite allows one writer at a time, so instead of many handlers queueing on its lock, they
//! send jobs here. The thread takes every job waiting (up to `MAX_BATCH`), runs each in its own
//! savepoint inside one transaction, commits once, and only then answers the handlers and wakes
//! the streams. That gives two guarantees at once: a build is acknowledged only after it and its
//! events are durable, and the quota check is serialised per database, so concurrent posts can
//! never overshoot a hard limit.

use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::error::StoreError;
use crate::events;
use crate::idempotency::{self, IdempotencyKey, Recorded};
use crate::live::hub::Hubs;
use crate::quota::NewBuild;

const MAX_BATCH: usize = 512;

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
    tx: mpsc::Sender<Job>,
}

/// Settings the writer applies after each commit.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Events kept per user; older ones are pruned and a cursor pointing there gets a reset.
    pub events_per_user: u64,
}

impl Writer {
    pub fn spawn(
        conn: Connection,
        hubs: Arc<Hubs>,
        retention: Retention,
    ) -> std::io::Result<(Self, JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel(4096);
        let handle = std::thread::Builder::new()
            .name("quotabell-writer".into())
            .spawn(move || run(conn, rx, &hubs, retention))?;
        Ok((Self { tx }, handle))
    }

    /// Whether the writer thread still takes jobs.
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    pub async fn record_build(
        &self,
        user_id: i64,
        key: Option<IdempotencyKey>,
        build: NewBuild,
        now: i64,
    ) -> Result<Recorded, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job {
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

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Job>, hubs: &Hubs, retention: Retention) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match commit_batch(&mut conn, &batch, retention) {
            Ok(results) => {
                for (job, result) in batch.drain(..).zip(results) {
                    if let Ok(Recorded::Fresh(outcome)) = &result {
                        hubs.publish(job.user_id, outcome.events());
                    }
                    // The handler may have gone (client disconnected): the build stands anyway.
                    let _ = job.reply.send(result);
                }
            }
            Err(err) => {
                tracing::error!(error = %err, jobs = batch.len(), "write transaction failed");
                let message = err.to_string();
                for job in batch.drain(..) {
                    let _ = job
                        .reply
                        .send(Err(StoreError::WriteFailed(message.clone())));
                }
            }
        }
    }
    tracing::debug!("writer stopped");
}

/// One transaction for the whole batch; a job that fails rolls back its own savepoint only.
fn commit_batch(
    conn: &mut Connection,
    batch: &[Job],
    retention: Retention,
) -> Result<Vec<Result<Recorded, StoreError>>, StoreError> {
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let sp = tx.savepoint()?;
        let result =
            idempotency::record_build(&sp, job.user_id, job.key.as_ref(), &job.build, job.now);
        if result.is_ok() {
            sp.commit()?;
        }
        results.push(result);
    }
    // Only batches that add keys prune them, so unkeyed traffic pays nothing for the feature.
    if let Some(job) = batch.iter().find(|j| j.key.is_some()) {
        idempotency::prune(&tx, job.now)?;
    }
    let mut users: Vec<i64> = batch.iter().map(|j| j.user_id).collect();
    users.sort_unstable();
    users.dedup();
    for user in users {
        // Slack of 1/16 so pruning runs now and then rather than on every commit.
        let keep = retention.events_per_user;
        let b = events::bounds(&tx, user)?;
        if b.last_id.saturating_sub(b.pruned_through) > keep + keep / 16 {
            events::prune(&tx, user, keep)?;
        }
    }
    tx.set_drop_behavior(rusqlite::DropBehavior::Commit);
    tx.commit()?;
    Ok(results)
}
