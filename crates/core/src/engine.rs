//! The engine: keeps one account in sync and raises its notifications.
//!
//! Data flows one way: stream / catch-up → store (events, cursor, projections and notification
//! decisions in one transaction) → notifier. The loop: catch up over HTTP, then follow the
//! stream from the stored cursor; on any end of the stream, wait (backoff, `Retry-After`, the
//! server's `retry:`), catch up again and reconnect. A wake from suspend or a clock jump cuts
//! the wait short. 401/403 stops the loop in the signed-out state; 204 stops streaming and
//! leaves the 10-minute backstop; a stream that keeps failing while `/events` works falls back
//! to long-polling for a while.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::watch;

use crate::backoff::{Backoff, HEALTHY_AFTER};
use crate::client::{ApiClient, ApiError};
use crate::clock::Clock;
use crate::notifier::Notifier;
use crate::policy::{self, Context, Settings};
use crate::protocol::Usage;
use crate::store::{AccountRow, Incoming, NotificationRow, Source, Store, StoreError};
use crate::stream::{self, StreamError, StreamItem, StreamSettings};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub stream: StreamSettings,
    /// Catch-up runs at least this often, whatever the stream does.
    pub backstop: Duration,
    /// How often the wall clock is compared with the monotonic clock to spot a wake.
    pub wake_check: Duration,
    /// A wall-clock jump beyond this (relative to monotonic time) counts as a wake.
    pub wake_jump: Duration,
    /// Consecutive stream failures (while `/events` answers) before falling back to long-poll.
    pub fallback_after: u32,
    /// How long to long-poll before trying the stream again.
    pub fallback_for: Duration,
    pub events_page: u32,
    /// Upper bound of the reconnect backoff.
    pub max_backoff: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            stream: StreamSettings::default(),
            backstop: Duration::from_secs(600),
            wake_check: Duration::from_secs(5),
            wake_jump: Duration::from_secs(10),
            fallback_after: 3,
            fallback_for: Duration::from_secs(300),
            events_page: 1000,
            max_backoff: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// Why the engine stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    Shutdown,
    SignedOut,
}

/// Connection states as stored for `status` and the tray.
pub mod conn {
    pub const CONNECTING: &str = "connecting";
    pub const CONNECTED: &str = "connected";
    pub const POLLING: &str = "polling";
    pub const OFFLINE: &str = "offline";
    pub const SIGNED_OUT: &str = "signed_out";
    pub const STOPPED: &str = "stream_stopped";
}

/// Something the UI may want to redraw for. The engine never waits for listeners.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    Synced,
    Connection(String),
    Notified(String),
}

pub struct Engine {
    store: Store,
    account: AccountRow,
    api: ApiClient,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    cfg: EngineConfig,
    backoff: Backoff,
    rng: StdRng,
    updates: tokio::sync::broadcast::Sender<Update>,
    stream_failures: u32,
    streaming_disabled: bool,
    fallback_until: Option<std::time::Instant>,
    /// The server's `retry:` hint from the last connection.
    last_retry_hint: Option<Duration>,
    /// A wait the server asked for (`Retry-After`), used once instead of the backoff.
    forced_delay: Option<Duration>,
    /// Why the stream last failed: kept in the status while long-polling instead.
    last_stream_error: Option<String>,
}

enum StreamEnd {
    Failed { error: StreamError, lived: Duration },
    Resync,
    Wake,
    Shutdown,
}

impl Engine {
    pub fn new(
        store: Store,
        account: AccountRow,
        api: ApiClient,
        notifier: Arc<dyn Notifier>,
        clock: Arc<dyn Clock>,
        cfg: EngineConfig,
    ) -> Self {
        Self {
            store,
            account,
            api,
            notifier,
            clock,
            backoff: Backoff::new(Duration::from_secs(1).min(cfg.max_backoff), cfg.max_backoff),
            cfg,
            rng: StdRng::from_os_rng(),
            updates: tokio::sync::broadcast::channel(64).0,
            stream_failures: 0,
            streaming_disabled: false,
            fallback_until: None,
            last_retry_hint: None,
            forced_delay: None,
            last_stream_error: None,
        }
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Update> {
        self.updates.subscribe()
    }

    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<Exit, EngineError> {
        let mut wake =
            spawn_wake_watch(self.clock.clone(), self.cfg.wake_check, self.cfg.wake_jump);
        // Notifications decided before a crash but not shown yet.
        let leftover = self.store.pending_notifications(self.account.id)?;
        self.show(leftover).await?;
        loop {
            if *shutdown.borrow() {
                return self.stop(Exit::Shutdown);
            }
            let delay = match self.catch_up().await {
                Ok(()) => None,
                Err(EngineError::Api(e)) if e.is_auth() => return self.signed_out(&e),
                Err(EngineError::Api(e)) => {
                    tracing::warn!(error = %e, "catch-up failed; offline");
                    self.set_connection(conn::OFFLINE, Some(&e.to_string()))?;
                    Some(self.delay_for_api(&e, None))
                }
                Err(e) => return Err(e),
            };
            let delay = match delay {
                Some(d) => Some(d),
                None if self.streaming_disabled => Some(self.cfg.backstop),
                None if self
                    .fallback_until
                    .is_some_and(|t| t > self.clock.instant()) =>
                {
                    match self.long_poll(&mut shutdown, &mut wake).await? {
                        Some(exit) => return self.stop(exit),
                        None => None,
                    }
                }
                None => match self.follow_stream(&mut shutdown, &mut wake).await? {
                    StreamEnd::Shutdown => return self.stop(Exit::Shutdown),
                    StreamEnd::Resync | StreamEnd::Wake => None,
                    StreamEnd::Failed { error, lived } => {
                        match self.after_stream_error(error, lived)? {
                            Some(Exit::SignedOut) => return Ok(Exit::SignedOut),
                            Some(exit) => return self.stop(exit),
                            None => {
                                let hint = self.last_retry_hint;
                                let backoff = self.backoff.next_delay(hint, &mut self.rng);
                                Some(self.forced_delay.take().unwrap_or(backoff))
                            }
                        }
                    }
                },
            };
            if let Some(d) = delay {
                tracing::debug!(delay = ?d, "waiting before the next attempt");
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = wake.changed() => tracing::info!("woke up: catching up now"),
                    _ = stopped(&mut shutdown) => {}
                }
            }
        }
    }

    fn stop(&self, exit: Exit) -> Result<Exit, EngineError> {
        self.set_connection(conn::OFFLINE, Some("engine stopped"))?;
        Ok(exit)
    }

    fn signed_out(&self, e: &ApiError) -> Result<Exit, EngineError> {
        tracing::warn!(error = %e, "the server rejected the token: signed out");
        self.set_connection(conn::SIGNED_OUT, Some(&e.to_string()))?;
        Ok(Exit::SignedOut)
    }

    fn set_connection(&self, state: &str, detail: Option<&str>) -> Result<(), StoreError> {
        self.store
            .set_connection(self.account.id, state, detail, self.clock.now_unix())?;
        let _ = self.updates.send(Update::Connection(state.to_owned()));
        Ok(())
    }

    fn delay_for_api(&mut self, e: &ApiError, hint: Option<Duration>) -> Duration {
        match e {
            ApiError::RateLimited {
                retry_after: Some(d),
                ..
            } => *d,
            _ => self.backoff.next_delay(hint, &mut self.rng),
        }
    }

    /// Decides what a stream failure means; `Some` ends the engine.
    fn after_stream_error(
        &mut self,
        error: StreamError,
        lived: Duration,
    ) -> Result<Option<Exit>, EngineError> {
        if lived >= HEALTHY_AFTER {
            self.backoff.reset();
            self.stream_failures = 0;
        }
        match &error {
            StreamError::Api(e) if e.is_auth() => return self.signed_out(e).map(Some),
            StreamError::NoContent => {
                tracing::warn!(
                    "the server answered 204: streaming stopped; catch-up continues every {:?}",
                    self.cfg.backstop
                );
                self.streaming_disabled = true;
                self.set_connection(conn::STOPPED, Some(&error.to_string()))?;
                return Ok(None);
            }
            StreamError::Api(ApiError::RateLimited {
                retry_after: Some(d),
                ..
            }) => {
                self.forced_delay = Some(*d);
            }
            _ => {}
        }
        tracing::warn!(error = %error, lived = ?lived, "stream ended");
        self.last_stream_error = Some(error.to_string());
        if lived < HEALTHY_AFTER {
            self.stream_failures += 1;
            if self.stream_failures >= self.cfg.fallback_after {
                tracing::warn!(
                    failures = self.stream_failures,
                    "stream keeps failing while /events works: long-polling for a while"
                );
                self.fallback_until = Some(self.clock.instant() + self.cfg.fallback_for);
                self.stream_failures = 0;
            }
        }
        self.set_connection(conn::CONNECTING, Some(&error.to_string()))?;
        Ok(None)
    }

    fn context<'a>(
        &self,
        settings: &'a Settings,
        catching_up: bool,
        plan_name: &'a str,
    ) -> Context<'a> {
        let now = self.clock.now_unix();
        Context {
            settings,
            now_unix: now,
            local_minute: self.clock.local_minute(now),
            catching_up,
            hard_limit: self.account.plan.hard_limit,
            plan_name,
        }
    }

    /// Stores events and shows what they call for now.
    async fn ingest(
        &mut self,
        epoch: &str,
        events: &[Incoming],
        source: Source,
    ) -> Result<u64, EngineError> {
        let settings = self.store.settings()?;
        let plan_name = self.account.plan.name.clone();
        let ctx = self.context(&settings, source == Source::CatchUp, &plan_name);
        let now = ctx.now_unix;
        let ingested = self.store.ingest(
            self.account.id,
            epoch,
            events,
            source,
            now,
            &mut |ev, known| policy::decide_event(&ctx, ev, known),
        )?;
        if ingested.parse_failures > 0 {
            tracing::error!(
                count = ingested.parse_failures,
                "events with invalid JSON were recorded and skipped"
            );
        }
        let builds = ingested.builds;
        self.show(ingested.pending).await?;
        let _ = self.updates.send(Update::Synced);
        Ok(builds)
    }

    async fn record_usage(&mut self, usage: &Usage, catching_up: bool) -> Result<(), EngineError> {
        let settings = self.store.settings()?;
        let plan_name = usage.plan.name.clone();
        self.account.plan = usage.plan.clone();
        let ctx = self.context(&settings, catching_up, &plan_name);
        let now = ctx.now_unix;
        let pending = self
            .store
            .record_usage(self.account.id, usage, now, &mut |u, known| {
                policy::decide_usage(&ctx, u, known)
            })?;
        self.show(pending).await
    }

    /// Shows notifications one by one and records the outcome of each.
    async fn show(&mut self, rows: Vec<NotificationRow>) -> Result<(), EngineError> {
        for row in rows {
            let notifier = self.notifier.clone();
            let shown = {
                let row = row.clone();
                tokio::task::spawn_blocking(move || notifier.show(&row)).await
            };
            match shown {
                Ok(Ok(())) => {
                    self.store.set_notification_state(row.id, "shown", None)?;
                    let _ = self.updates.send(Update::Notified(row.title.clone()));
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, key = %row.dedupe_key, "notification failed");
                    self.store
                        .set_notification_state(row.id, "failed", Some(&e.to_string()))?;
                }
                Err(e) => {
                    tracing::error!(error = %e, "notifier task failed");
                    self.store.set_notification_state(
                        row.id,
                        "failed",
                        Some("notifier crashed"),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Catch-up over HTTP: events after the cursor page by page (each page committed with its
    /// cursor), then usage, then builds; anything decided on the way is shown as one digest.
    pub async fn catch_up(&mut self) -> Result<(), EngineError> {
        let account = self.account.id;
        let mut state = self.store.sync_state(account)?;
        let mut builds_seen = 0;
        if state.cursor.is_none() {
            // First run for this account: the retained history is fetched for offline review,
            // but what happened before sign-in is not announced (the usage below is).
            let usage = self.api.usage().await?;
            let first = self.api.events_after(None, 1, None).await?;
            match first.events.into_iter().next() {
                None => self.store.start_cursor(account, &usage)?,
                Some(oldest) => {
                    self.store
                        .set_history_until(account, &usage.last_event_id)?;
                    let oldest = Incoming {
                        id: oldest.id,
                        kind: oldest.kind,
                        data: oldest.data.to_string(),
                    };
                    self.ingest(&first.stream_epoch, &[oldest], Source::CatchUp)
                        .await?;
                }
            }
            state = self.store.sync_state(account)?;
        }
        match (state.cursor.clone(), state.epoch.clone()) {
            (Some(mut cursor), Some(epoch)) => loop {
                let page = match self
                    .api
                    .events_after(Some(&cursor), self.cfg.events_page, None)
                    .await
                {
                    Ok(p) => p,
                    Err(ApiError::HistoryExpired { reason }) => {
                        self.resync(&format!("history_expired ({reason})")).await?;
                        break;
                    }
                    Err(e) => return Err(e.into()),
                };
                if page.stream_epoch != epoch {
                    self.resync("stream epoch changed").await?;
                    break;
                }
                let events: Vec<Incoming> = page
                    .events
                    .into_iter()
                    .map(|e| Incoming {
                        id: e.id,
                        kind: e.kind,
                        data: e.data.to_string(),
                    })
                    .collect();
                if let Some(last) = events.last() {
                    cursor = last.id.clone();
                }
                builds_seen += self.ingest(&epoch, &events, Source::CatchUp).await?;
                if !page.has_more || events.is_empty() {
                    break;
                }
            },
            _ => self.resync("no cursor").await?,
        }
        let usage = self.api.usage().await?;
        self.record_usage(&usage, true).await?;
        self.sync_builds().await?;
        if let Some(digest) = self
            .store
            .digest_held(account, builds_seen, self.clock.now_unix())?
        {
            self.show(vec![digest]).await?;
        }
        self.store.mark_synced(account, self.clock.now_unix())?;
        let _ = self.updates.send(Update::Synced);
        Ok(())
    }

    async fn resync(&mut self, reason: &str) -> Result<(), EngineError> {
        tracing::warn!(
            reason,
            "history gap: resyncing usage and builds from scratch"
        );
        let usage = self.api.usage().await?;
        self.store.resync(
            self.account.id,
            &usage,
            "history_gap",
            reason,
            self.clock.now_unix(),
        )?;
        Ok(())
    }

    async fn sync_builds(&mut self) -> Result<(), EngineError> {
        loop {
            let after = self.store.sync_state(self.account.id)?.builds_cursor;
            let page = self.api.builds_after(after, 1000).await?;
            self.store.store_builds(self.account.id, &page.builds)?;
            if !page.has_more || page.builds.is_empty() {
                return Ok(());
            }
        }
    }

    /// Follows the stream from the stored cursor until it ends.
    async fn follow_stream(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
        wake: &mut watch::Receiver<u64>,
    ) -> Result<StreamEnd, EngineError> {
        let state = self.store.sync_state(self.account.id)?;
        let Some(epoch) = state.epoch.clone() else {
            return Ok(StreamEnd::Resync);
        };
        self.set_connection(conn::CONNECTING, None)?;
        let started = self.clock.instant();
        let (mut events, probe) =
            match stream::connect(&self.api, state.cursor.as_deref(), self.cfg.stream) {
                Ok(s) => s,
                Err(error) => {
                    return Ok(StreamEnd::Failed {
                        error,
                        lived: Duration::ZERO,
                    });
                }
            };
        let mut backstop = tokio::time::interval_at(
            tokio::time::Instant::now() + self.cfg.backstop,
            self.cfg.backstop,
        );
        let end = loop {
            self.last_retry_hint = probe.retry();
            let item = tokio::select! {
                item = events.next() => item,
                _ = wake.changed() => break StreamEnd::Wake,
                _ = stopped(shutdown) => break StreamEnd::Shutdown,
                _ = backstop.tick() => {
                    // Usage and builds stay fresh even if the stream only carries keepalives.
                    if let Err(e) = self.refresh().await {
                        tracing::warn!(error = %e, "backstop refresh failed");
                    }
                    continue;
                }
            };
            let lived = self.clock.instant().saturating_duration_since(started);
            match item {
                None => {
                    break StreamEnd::Failed {
                        error: StreamError::Ended,
                        lived,
                    };
                }
                Some(Err(error)) => break StreamEnd::Failed { error, lived },
                Some(Ok(StreamItem::Connected {
                    epoch: server_epoch,
                })) => {
                    if server_epoch.as_deref().is_some_and(|e| e != epoch) {
                        self.resync("stream epoch changed").await?;
                        break StreamEnd::Resync;
                    }
                    self.stream_failures = 0;
                    self.set_connection(conn::CONNECTED, None)?;
                }
                Some(Ok(StreamItem::Reset { data, .. })) => {
                    self.resync(&format!("sync.reset {data}")).await?;
                    break StreamEnd::Resync;
                }
                Some(Ok(StreamItem::Oversized { id, data })) => {
                    if let Some(id) = id {
                        let ev = Incoming {
                            id,
                            kind: crate::sse_guard::OVERSIZED.into(),
                            data,
                        };
                        self.ingest(&epoch, &[ev], Source::Stream).await?;
                    }
                }
                Some(Ok(StreamItem::Event(first))) => {
                    // Take whatever else is already buffered: one transaction per burst.
                    let mut batch = vec![first];
                    let mut after = None;
                    while batch.len() < 500 {
                        match events.next().now_or_never() {
                            Some(Some(Ok(StreamItem::Event(ev)))) => batch.push(ev),
                            Some(other) => {
                                after = Some(other);
                                break;
                            }
                            None => break,
                        }
                    }
                    self.ingest(&epoch, &batch, Source::Stream).await?;
                    match after {
                        None | Some(Some(Ok(StreamItem::Connected { .. }))) => {}
                        Some(None) => {
                            break StreamEnd::Failed {
                                error: StreamError::Ended,
                                lived,
                            };
                        }
                        Some(Some(Err(error))) => break StreamEnd::Failed { error, lived },
                        Some(Some(Ok(StreamItem::Reset { data, .. }))) => {
                            self.resync(&format!("sync.reset {data}")).await?;
                            break StreamEnd::Resync;
                        }
                        Some(Some(Ok(StreamItem::Oversized { id: Some(id), data }))) => {
                            let ev = Incoming {
                                id,
                                kind: crate::sse_guard::OVERSIZED.into(),
                                data,
                            };
                            self.ingest(&epoch, &[ev], Source::Stream).await?;
                        }
                        Some(Some(Ok(_))) => {}
                    }
                }
            }
        };
        Ok(end)
    }

    /// Usage and builds, without touching the event cursor.
    async fn refresh(&mut self) -> Result<(), EngineError> {
        let usage = self.api.usage().await?;
        self.record_usage(&usage, false).await?;
        self.sync_builds().await?;
        self.store
            .mark_synced(self.account.id, self.clock.now_unix())?;
        Ok(())
    }

    /// Long-polls `/events` until the fallback period ends; `Some` ends the engine.
    async fn long_poll(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
        wake: &mut watch::Receiver<u64>,
    ) -> Result<Option<Exit>, EngineError> {
        let detail = match &self.last_stream_error {
            Some(e) => format!("the stream keeps failing ({e}); long-polling /events"),
            None => "the stream keeps failing; long-polling /events".to_owned(),
        };
        self.set_connection(conn::POLLING, Some(&detail))?;
        while self
            .fallback_until
            .is_some_and(|t| t > self.clock.instant())
        {
            let state = self.store.sync_state(self.account.id)?;
            let (Some(cursor), Some(epoch)) = (state.cursor, state.epoch) else {
                return Ok(None);
            };
            let poll = self
                .api
                .events_after(Some(&cursor), self.cfg.events_page, Some(25));
            let page = tokio::select! {
                p = poll => p,
                _ = wake.changed() => return Ok(None),
                _ = stopped(shutdown) => return Ok(Some(Exit::Shutdown)),
            };
            match page {
                Ok(page) if page.stream_epoch != epoch => {
                    self.resync("stream epoch changed").await?;
                    return Ok(None);
                }
                Ok(page) => {
                    let events: Vec<Incoming> = page
                        .events
                        .into_iter()
                        .map(|e| Incoming {
                            id: e.id,
                            kind: e.kind,
                            data: e.data.to_string(),
                        })
                        .collect();
                    self.ingest(&epoch, &events, Source::Stream).await?;
                    self.store
                        .mark_synced(self.account.id, self.clock.now_unix())?;
                }
                Err(ApiError::HistoryExpired { reason }) => {
                    self.resync(&format!("history_expired ({reason})")).await?;
                    return Ok(None);
                }
                Err(e) if e.is_auth() => return self.signed_out(&e).map(Some),
                Err(e) => return Err(e.into()),
            }
        }
        self.fallback_until = None;
        Ok(None)
    }
}

/// Resolves when shutdown is asked for, or when whoever could ask is gone.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Compares wall-clock and monotonic time; a difference beyond `jump` between two checks
/// means the machine slept (monotonic time stops in suspend) or the clock was set: the value
/// in the channel changes so the engine reconnects and catches up at once.
fn spawn_wake_watch(
    clock: Arc<dyn Clock>,
    every: Duration,
    jump: Duration,
) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0u64);
    tokio::spawn(async move {
        let mut wall = clock.now_unix();
        let mut mono = clock.instant();
        let mut ticker = tokio::time::interval(every);
        loop {
            ticker.tick().await;
            let (w, m) = (clock.now_unix(), clock.instant());
            let wall_delta = (w - wall) as f64;
            let mono_delta = m.saturating_duration_since(mono).as_secs_f64();
            if (wall_delta - mono_delta).abs() > jump.as_secs_f64() {
                tracing::info!(wall_delta, mono_delta, "clock jump: treating as a wake");
                if tx.send(w as u64).is_err() {
                    return;
                }
            }
            if tx.is_closed() {
                return;
            }
            (wall, mono) = (w, m);
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::time::Instant;

    use super::*;

    /// A wall clock that can be moved by hand; monotonic time is real.
    struct JumpingClock(AtomicI64);

    impl Clock for JumpingClock {
        fn now_unix(&self) -> i64 {
            1_700_000_000
                + self.0.load(Ordering::SeqCst)
                + Instant::now().elapsed().as_secs() as i64
        }
        fn instant(&self) -> Instant {
            Instant::now()
        }
        fn local_minute(&self, _: i64) -> u16 {
            0
        }
    }

    #[tokio::test]
    async fn a_wall_clock_jump_is_a_wake() {
        let clock = Arc::new(JumpingClock(AtomicI64::new(0)));
        let mut wake = spawn_wake_watch(
            clock.clone(),
            Duration::from_millis(20),
            Duration::from_secs(10),
        );
        let quiet = tokio::time::timeout(Duration::from_millis(200), wake.changed()).await;
        assert!(quiet.is_err(), "no wake while the clocks agree");
        clock.0.store(3600, Ordering::SeqCst); // an hour asleep
        tokio::time::timeout(Duration::from_secs(2), wake.changed())
            .await
            .expect("the jump is noticed")
            .unwrap();
    }
}
