//! Following writes this process did not make: operator commands, the background jobs, and on
//! PostgreSQL every other instance. Whoever commits events also names the users it wrote for
//! (`wake`); each instance then re-reads those users' new events and publishes them to its
//! hubs (`refresh`), exactly as its own writer publishes its own commits.
//!
//! The wake-up is only a hint. On SQLite it is the file's `data_version` (any other
//! connection's commit changes it), polled. On PostgreSQL it is a `NOTIFY` sent in the writing
//! transaction (so it arrives only if that commit did), received on one dedicated `LISTEN`
//! connection per instance; a notification sent while that connection was down is gone, so
//! after every (re)connection, and on a short backstop interval, every live hub re-reads its
//! user's newest id. A lost wake-up delays an event by at most the backstop; it never loses one,
//! because the log itself is the truth and streams read it by id.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

use super::hub::Hubs;
use crate::error::StoreError;
use crate::events::{self, StoredEvent};
use crate::store::{Dialect, ReadPool, Sql, params, postgres};

/// A notification payload stays under PostgreSQL's 8,000-byte limit.
const MAX_PAYLOAD: usize = 7_900;
/// Events read for one user per refresh; a stream further behind reads the log itself.
const REFRESH_PAGE: usize = 1024;

/// In a wake-up in place of a newest id: the user's log got a new epoch (see
/// `account::reset_events`); hubs re-check it.
pub const EPOCH_CHANGED: u64 = 0;

/// The wake-up for `events`: each user's newest id among them.
pub fn newest(events: &[StoredEvent]) -> Vec<(i64, u64)> {
    let mut newest: HashMap<i64, u64> = HashMap::new();
    for e in events {
        let n = newest.entry(e.user_id).or_default();
        *n = (*n).max(e.id);
    }
    newest.into_iter().collect()
}

/// Queues a wake-up for `newest` (user, newest event id) in the caller's transaction, to be
/// delivered when (and only if) it commits. SQLite needs none: `data_version` tells.
pub fn wake(sql: &mut dyn Sql, newest: &[(i64, u64)]) -> Result<(), StoreError> {
    if sql.dialect() != Dialect::Postgres || newest.is_empty() {
        return Ok(());
    }
    let mut payload = String::new();
    for (user, id) in newest {
        let entry = format!("{user}:{id}");
        if !payload.is_empty() && payload.len() + 1 + entry.len() > MAX_PAYLOAD {
            notify(sql, &payload)?;
            payload.clear();
        }
        if !payload.is_empty() {
            payload.push(' ');
        }
        payload.push_str(&entry);
    }
    notify(sql, &payload)
}

fn notify(sql: &mut dyn Sql, payload: &str) -> Result<(), StoreError> {
    sql.execute(
        "SELECT pg_notify($1, $2)",
        params![postgres::WAKE_CHANNEL, payload],
    )?;
    Ok(())
}

/// Reads a payload written by `wake`: user → newest id. Anything unreadable is skipped (a
/// backstop refresh covers it).
pub fn parse_wake(payload: &str) -> HashMap<i64, u64> {
    payload
        .split(' ')
        .filter_map(|entry| {
            let (user, id) = entry.split_once(':')?;
            Some((user.parse().ok()?, id.parse().ok()?))
        })
        .collect()
}

/// Brings the hubs of live users up to date with the log: every live user, or those in `only`
/// whose newest id is beyond what their hub knows. A hub whose log got a new epoch is retired
/// (its streams reconnect and meet the new epoch).
pub fn refresh(sql: &mut dyn Sql, hubs: &Hubs, only: Option<&HashMap<i64, u64>>) {
    for (user, hub, known) in hubs.live_users() {
        if let Some(only) = only {
            match only.get(&user) {
                Some(&newest) if newest > known || newest == EPOCH_CHANGED => {}
                _ => continue,
            }
        }
        match events::epoch(sql, user) {
            Ok(Some(epoch)) if epoch == hub.epoch() => {}
            Ok(_) => {
                hubs.retire(user);
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, user, "cannot read the epoch");
                continue;
            }
        }
        match events::bounds(sql, user) {
            Ok(b) if b.last_id > known && known > 0 => {
                if let Ok(evs) = events::after(sql, user, known, REFRESH_PAGE) {
                    hubs.publish(user, &evs);
                }
                hub.note_newest(b.last_id);
            }
            Ok(b) => hub.note_newest(b.last_id),
            Err(e) => tracing::warn!(error = %e, user, "cannot read event bounds"),
        }
    }
}

/// SQLite: polls `data_version` on a connection of its own and refreshes every live hub when
/// another connection committed.
pub fn watch_sqlite(
    mut conn: rusqlite::Connection,
    hubs: Arc<Hubs>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("quotabell-watch".into())
        .spawn(move || {
            let _ = conn.busy_timeout(Duration::from_secs(5));
            let mut seen: i64 = -1;
            while !*shutdown.borrow() {
                std::thread::sleep(Duration::from_millis(250));
                let Ok(version) = conn.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))
                else {
                    continue;
                };
                if version != seen {
                    seen = version;
                    refresh(&mut conn, &hubs, None);
                }
            }
        })
}

/// PostgreSQL: keeps one `LISTEN` connection (reconnecting when it is lost) and refreshes on
/// each wake-up, after each (re)connection, and every `backstop`.
pub async fn follow_postgres(
    store: postgres::Store,
    pool: ReadPool,
    hubs: Arc<Hubs>,
    backstop: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let refresh_with = |only: Option<HashMap<i64, u64>>| {
        let hubs = hubs.clone();
        let pool = pool.clone();
        async move {
            if hubs.live_users().is_empty() {
                return;
            }
            let done = pool
                .read(move |sql| {
                    refresh(sql, &hubs, only.as_ref());
                    Ok(())
                })
                .await;
            if let Err(e) = done {
                tracing::warn!(error = %e, "cannot refresh live streams");
            }
        }
    };
    while !*shutdown.borrow() {
        let (tx, mut wakes) = mpsc::unbounded_channel();
        match listen(&store, tx).await {
            Ok(client) => {
                tracing::debug!("listening for wake-ups");
                // Anything committed while no connection listened is read now.
                refresh_with(None).await;
                let mut tick = tokio::time::interval(backstop);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        wake = wakes.recv() => match wake {
                            Some(payload) => refresh_with(Some(parse_wake(&payload))).await,
                            None => break, // the connection is gone
                        },
                        _ = tick.tick() => refresh_with(None).await,
                        _ = shutdown.changed() => return,
                    }
                }
                drop(client);
                tracing::warn!("the wake-up connection was lost; reconnecting");
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for wake-ups"),
        }
        // Until the listener is back, the backstop still runs.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => refresh_with(None).await,
            _ = shutdown.changed() => return,
        }
    }
}

/// Opens the dedicated connection, subscribes, and forwards each notification's payload to
/// `tx`; `tx` is dropped (ending the receiver) when the connection ends.
async fn listen(
    store: &postgres::Store,
    tx: mpsc::UnboundedSender<String>,
) -> Result<tokio_postgres::Client, StoreError> {
    let (client, mut conn) = store.dedicated(postgres::LISTENER_NAME).await?;
    let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
    tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "wake-up connection ended");
                    break;
                }
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {}", postgres::WAKE_CHANNEL))
        .await?;
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_payloads_read_back_and_noise_is_skipped() {
        let m = parse_wake("7:12 8:3 x 9: :4 10:5");
        assert_eq!(m.len(), 3);
        assert_eq!((m[&7], m[&8], m[&10]), (12, 3, 5));
        assert!(parse_wake("").is_empty());
    }
}
