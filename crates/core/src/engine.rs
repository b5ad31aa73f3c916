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
use serde::Deserialize as _;
use tokio::sync::watch;

use crate::backoff::{Backoff, HEALTHY_AFTER};
use crate::client::{ApiClient, ApiError};
use crate::clock::Clock;
use crate::foresight;
use crate::ipc::{Connection, NotificationState};
use crate::notifier::Notifier;
use crate::page::{Applied, Gap, Page};
use crate::policy::{self, Context, Settings};
use crate::protocol::{EventsPage, Plan, Usage, kind};
use crate::store::{AccountRow, Incoming, NotificationRow, Source, Store, StoreError};
use crate::stream::{self, StreamError, StreamItem, StreamSettings};
use crate::wake::WakeWatch;

/// How long one notification call may take before it counts as failed.
#[cfg(not(test))]
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);
#[cfg(test)]
const NOTIFY_TIMEOUT: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub stream: StreamSettings,
    /// Catch-up runs at least this often, whatever the stream does.
    pub backstop: Duration,
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

/// Something the UI may want to redraw for. The engine never waits for listeners.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    Synced,
    Connection(Connection),
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
    /// Notices a suspend when the engine wakes anyway; the process's one, shared by every
    /// account's engine (see [`Engine::sharing_wake`]), or the engine's own.
    wake: WakeWatch,
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
        let (clock_for_wake, wake_jump) = (clock.clone(), cfg.wake_jump);
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
            wake: WakeWatch::new(clock_for_wake, wake_jump),
        }
    }

    /// Looks for a wake with `wake` instead of a watch of its own: a suspend is the
    /// machine's, so every account in the process hears of it from whichever looks first.
    pub fn sharing_wake(mut self, wake: WakeWatch) -> Self {
        self.wake = wake;
        self
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Update> {
        self.updates.subscribe()
    }

    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<Exit, EngineError> {
        let mut wake = self.wake.subscribe();
        // Notifications decided before a crash but not shown yet, failed ones, and those whose
        // call the crash interrupted (counted as possible repeats by the store).
        let leftover = self.store.notifications_to_resume(self.account.id)?;
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
                    self.set_connection(Connection::Offline, Some(&e.to_string()))?;
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
                        Some(Exit::SignedOut) => return Ok(Exit::SignedOut),
                        Some(exit) => return self.stop(exit),
                        None => self.forced_delay.take(),
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
                                // `Retry-After` is a floor: `Retry-After: 0` must not make a loop.
                                Some(self.forced_delay.take().map_or(backoff, |d| d.max(backoff)))
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
        self.set_connection(Connection::Offline, Some("engine stopped"))?;
        Ok(exit)
    }

    fn signed_out(&self, e: &ApiError) -> Result<Exit, EngineError> {
        tracing::warn!(error = %e, "the server rejected the token: signed out");
        self.set_connection(Connection::SignedOut, Some(&e.to_string()))?;
        Ok(Exit::SignedOut)
    }

    fn set_connection(&self, state: Connection, detail: Option<&str>) -> Result<(), StoreError> {
        self.store
            .set_connection(self.account.id, state, detail, self.clock.now_unix())?;
        let _ = self.updates.send(Update::Connection(state));
        Ok(())
    }

    fn delay_for_api(&mut self, e: &ApiError, hint: Option<Duration>) -> Duration {
        let backoff = self.backoff.next_delay(hint, &mut self.rng);
        match e {
            ApiError::RateLimited {
                retry_after: Some(d),
                ..
            } => backoff.max(*d),
            _ => backoff,
        }
    }

    /// Decides what a stream failure means; `Some` ends the engine.
    fn after_stream_error(
        &mut self,
        error: StreamError,
        lived: Duration,
    ) -> Result<Option<Exit>, EngineError> {
        // A stall is noticed only after the watchdog's silence: the connection was of use only
        // until its last byte. (A buffering proxy answers 200 and then sends nothing.)
        let lived = match &error {
            StreamError::Stalled(silence) => lived.saturating_sub(*silence),
            _ => lived,
        };
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
                self.set_connection(Connection::StreamStopped, Some(&error.to_string()))?;
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
        self.set_connection(Connection::Connecting, Some(&error.to_string()))?;
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
        let now = self.clock.now_unix();
        let local_minute = self.clock.local_minute(now);
        // A `plan.changed` in the batch changes the plan the events after it are judged by
        // (`quota.updated` carries no `hard_limit`: the plan says whether builds are blocked).
        let mut plan = self.account.plan.clone();
        let ingested = self.store.ingest(
            self.account.id,
            epoch,
            events,
            source,
            now,
            &mut |ev, known| {
                if ev.kind == kind::PLAN_CHANGED
                    && let Some(p) = ev
                        .data
                        .and_then(|d| d.get("plan"))
                        .and_then(|p| Plan::deserialize(p).ok())
                {
                    plan = p;
                }
                let ctx = Context {
                    settings: &settings,
                    now_unix: now,
                    local_minute,
                    catching_up: source == Source::CatchUp,
                    hard_limit: plan.hard_limit,
                    plan_name: &plan.name,
                };
                policy::decide_event(&ctx, ev, known)
            },
        )?;
        self.account.plan = plan;
        if ingested.parse_failures > 0 {
            tracing::error!(
                count = ingested.parse_failures,
                "events with invalid JSON were recorded and skipped"
            );
        }
        let builds = ingested.builds;
        let news = ingested.stored > 0;
        self.show(ingested.pending).await?;
        // A catch-up looks ahead once, at its end, over everything it fetched.
        if news && source == Source::Stream {
            self.foresee(false).await?;
        }
        let _ = self.updates.send(Update::Synced);
        Ok(builds)
    }

    /// The early warning and the runaway check, after new data (never on a timer: the same
    /// cache gives the same answer).
    async fn foresee(&mut self, catching_up: bool) -> Result<(), EngineError> {
        let settings = self.store.settings()?;
        let plan_name = self.account.plan.name.clone();
        let ctx = self.context(&settings, catching_up, &plan_name);
        let clock = self.clock.clone();
        let pending =
            self.store
                .foresee(self.account.id, ctx.now_unix, &mut |data, watch, known| {
                    data.metrics()
                        .iter()
                        .flat_map(|m| foresight::decide(&ctx, clock.as_ref(), m, watch, known))
                        .collect()
                })?;
        self.show(pending).await
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

    /// Shows notifications one by one and records the outcome of each. Each call is recorded
    /// as in flight (committed) before it is made: a kill during the call leaves the row
    /// `sending`, and the next start shows it again as a counted possible repeat rather than
    /// losing it (ARCHITECTURE.md, "Decided once, ever").
    async fn show(&mut self, rows: Vec<NotificationRow>) -> Result<(), EngineError> {
        // With several accounts signed in, each notification says whose it is.
        let several = !rows.is_empty() && self.store.account_count()? > 1;
        for row in rows {
            self.store.mark_sending(row.id)?;
            let notifier = self.notifier.clone();
            let shown = {
                let row = if several {
                    row.clone().naming(&self.account.name)
                } else {
                    row.clone()
                };
                let call = tokio::task::spawn_blocking(move || notifier.show(&row));
                // A notification server that never answers must not stop the engine.
                tokio::time::timeout(NOTIFY_TIMEOUT, call).await
            };
            match shown {
                Err(_) => {
                    tracing::error!(key = %row.dedupe_key, "the notification server did not answer");
                    // The call may still get through: a retry at the next start may repeat it.
                    self.store.mark_outcome_unknown(
                        row.id,
                        "the notification server did not answer in time",
                    )?;
                }
                Ok(Ok(Ok(()))) => {
                    self.store
                        .set_notification_state(row.id, NotificationState::Shown, None)?;
                    let _ = self.updates.send(Update::Notified(row.title.clone()));
                }
                Ok(Ok(Err(e))) => {
                    tracing::error!(error = %e, key = %row.dedupe_key, "notification failed");
                    self.store.set_notification_state(
                        row.id,
                        NotificationState::Failed,
                        Some(&e.to_string()),
                    )?;
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "notifier task failed");
                    // Where the task died is unknown: before or after the daemon had the call.
                    self.store
                        .mark_outcome_unknown(row.id, "notifier crashed")?;
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
                // The sign-in recorded where history ends (`mark_sign_in`).
                Some(oldest) => {
                    self.ingest(&first.stream_epoch, &[oldest.into()], Source::CatchUp)
                        .await?;
                }
            }
            state = self.store.sync_state(account)?;
        }
        let mut prefetched: Option<tokio::task::JoinHandle<Result<EventsPage, ApiError>>> = None;
        match (state.cursor.clone(), state.epoch.clone()) {
            (Some(mut cursor), Some(epoch)) => loop {
                let fetched = match prefetched.take() {
                    Some(next) => next.await.unwrap_or_else(|e| {
                        Err(ApiError::Transport(format!("page fetch failed: {e}")))
                    }),
                    None => {
                        self.api
                            .events_after(Some(&cursor), self.cfg.events_page, None)
                            .await
                    }
                };
                let mut more = false;
                if let Ok(page) = &fetched {
                    if let Some(last) = page.events.last() {
                        cursor = last.id.clone();
                    }
                    more = page.has_more && !page.events.is_empty();
                    // The next page is asked for while this one is stored: the server's time
                    // and ours overlap instead of adding up. Not past a gap: the resync starts
                    // from elsewhere.
                    if more && page.stream_epoch == epoch {
                        let (api, after, n) =
                            (self.api.clone(), cursor.clone(), self.cfg.events_page);
                        prefetched = Some(tokio::spawn(async move {
                            api.events_after(Some(&after), n, None).await
                        }));
                        tokio::task::yield_now().await; // let the request go out before we block
                    }
                }
                match self
                    .apply(Page::fetched(fetched)?, &epoch, Source::CatchUp)
                    .await?
                {
                    Applied::Stored { builds } => builds_seen += builds,
                    Applied::Gap => break,
                }
                if !more {
                    break;
                }
            },
            _ => self.resync("no cursor").await?,
        }
        let usage = self.api.usage().await?;
        self.record_usage(&usage, true).await?;
        self.sync_builds().await?;
        self.foresee(true).await?;
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

    /// The one step every page of events goes through — catch-up and backstop pages, long-poll
    /// answers, stream bursts: a page of the stored cursor's epoch is stored (`ingest`); a
    /// page of another epoch, or the server's word that history is gone, resyncs from
    /// `/usage`. An error reading `/usage` is returned as an API error: each caller ends its
    /// own way of fetching as it does for a failed fetch.
    async fn apply(
        &mut self,
        page: Page,
        epoch: &str,
        source: Source,
    ) -> Result<Applied, EngineError> {
        let gap = match page {
            Page::Events { epoch: theirs, .. } if theirs != epoch => Gap::EpochChanged,
            Page::Events { events, .. } => {
                let builds = self.ingest(epoch, &events, source).await?;
                return Ok(Applied::Stored { builds });
            }
            Page::Gone(gap) => gap,
        };
        self.resync(&gap.to_string()).await?;
        Ok(Applied::Gap)
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

    /// A long poll that failed: signed out on 401/403, otherwise back to the main loop after
    /// a delay (network errors, 5xx and timeouts must not end the engine).
    fn poll_failed(&mut self, e: ApiError) -> Result<Option<Exit>, EngineError> {
        if e.is_auth() {
            return self.signed_out(&e).map(Some);
        }
        tracing::warn!(error = %e, "long poll failed");
        self.forced_delay = Some(self.delay_for_api(&e, None));
        Ok(None)
    }

    /// Pages `/builds` after the builds cursor, unless the cached builds are already complete
    /// up to the event cursor (every later build then came as its `build.accepted` event).
    async fn sync_builds(&mut self) -> Result<(), EngineError> {
        let state = self.store.sync_state(self.account.id)?;
        if state.builds_complete {
            return Ok(());
        }
        let events_at = state.cursor;
        let mut after = state.builds_cursor;
        loop {
            let page = self.api.builds_after(after, 1000).await?;
            let last = !page.has_more || page.builds.is_empty();
            let complete = if last { events_at.as_deref() } else { None };
            self.store
                .store_builds(self.account.id, &page.builds, complete)?;
            if last {
                return Ok(());
            }
            // Where the store moved the builds cursor (it never moves back).
            after = page.builds.iter().map(|b| b.id).fold(after, i64::max);
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
        self.set_connection(Connection::Connecting, None)?;
        let started = self.clock.instant();
        let (mut events, probe) = match stream::connect(
            &self.api,
            state.cursor.as_deref(),
            self.cfg.stream,
            &self.wake,
        ) {
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
        // An item read past the end of a burst, handled before reading on.
        let mut held_over = None;
        let end = loop {
            let item = match held_over.take() {
                Some(item) => item,
                // Biased, in this order: what the connection already delivered is stored as
                // live before a clock jump noticed with it is taken for a wake; by the draw of
                // an unbiased `select!`, those events would go to the catch-up's digest.
                None => tokio::select! {
                    biased;
                    _ = stopped(shutdown) => break StreamEnd::Shutdown,
                    item = events.next() => item,
                    _ = wake.changed() => break StreamEnd::Wake,
                    _ = backstop.tick() => {
                        // A full catch-up (events after the cursor, usage, builds) even while
                        // the stream looks healthy; events it fetches first are skipped when
                        // the stream delivers them too, and the cursor never moves back.
                        match self.catch_up().await {
                            Ok(()) => {}
                            // A token revoked while the stream stays open: signed out all the
                            // same.
                            Err(EngineError::Api(e)) if e.is_auth() => {
                                let lived =
                                    self.clock.instant().saturating_duration_since(started);
                                break StreamEnd::Failed { error: StreamError::Api(e), lived };
                            }
                            Err(e) => tracing::warn!(error = %e, "backstop refresh failed"),
                        }
                        continue;
                    }
                },
            };
            let lived = self.clock.instant().saturating_duration_since(started);
            let page = match item {
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
                        Page::Gone(Gap::EpochChanged)
                    } else {
                        // Not yet a sign of health: a buffering proxy answers 200 and then
                        // sends nothing. The failure count restarts when an event arrives.
                        self.set_connection(Connection::Connected, None)?;
                        continue;
                    }
                }
                Some(Ok(StreamItem::Reset { data, .. })) => Page::Gone(Gap::Reset(data)),
                Some(Ok(StreamItem::Oversized { id: None, .. })) => continue,
                Some(Ok(StreamItem::Oversized { id: Some(id), data })) => Page::Events {
                    epoch: epoch.clone(),
                    events: vec![Incoming {
                        id,
                        kind: crate::sse_guard::OVERSIZED.into(),
                        data,
                    }],
                },
                Some(Ok(StreamItem::Event(first))) => {
                    self.stream_failures = 0;
                    // Take whatever else is already buffered: one transaction per burst.
                    let mut batch = vec![first];
                    while batch.len() < 500 {
                        match events.next().now_or_never() {
                            Some(Some(Ok(StreamItem::Event(ev)))) => batch.push(ev),
                            Some(other) => {
                                held_over = Some(other);
                                break;
                            }
                            None => break,
                        }
                    }
                    Page::Events {
                        epoch: epoch.clone(),
                        events: batch,
                    }
                }
            };
            // A gap ends the connection. If `/usage` cannot be read for the resync now, it
            // ends as a failed one (backoff, then catch-up meets the gap again), not the engine.
            match self.apply(page, &epoch, Source::Stream).await {
                Ok(Applied::Stored { .. }) => {}
                Ok(Applied::Gap) => break StreamEnd::Resync,
                Err(EngineError::Api(e)) => {
                    break StreamEnd::Failed {
                        error: StreamError::Api(e),
                        lived,
                    };
                }
                Err(e) => return Err(e),
            }
        };
        // Read once the connection is over: a `retry:` just before its end counts too.
        self.last_retry_hint = probe.retry();
        Ok(end)
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
        self.set_connection(Connection::Polling, Some(&detail))?;
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
            let answer = tokio::select! {
                p = poll => p,
                _ = wake.changed() => return Ok(None),
                _ = stopped(shutdown) => return Ok(Some(Exit::Shutdown)),
            };
            // An answer is a moment the engine is awake anyway: time to look for a suspend.
            self.wake.look();
            let applied = match Page::fetched(answer) {
                Ok(page) => self.apply(page, &epoch, Source::Stream).await,
                Err(e) => Err(e.into()),
            };
            match applied {
                Ok(Applied::Stored { .. }) => self
                    .store
                    .mark_synced(self.account.id, self.clock.now_unix())?,
                // Back to the main loop, which catches up from the new cursor.
                Ok(Applied::Gap) => return Ok(None),
                Err(EngineError::Api(e)) => return self.poll_failed(e),
                Err(e) => return Err(e),
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::clock::SystemClock;
    use crate::ipc::NotificationKind;
    use crate::notifier::NotifyError;
    use crate::protocol::Account;
    use crate::secret::Token;
    use crate::server_url::ServerUrl;

    /// One canned HTTP answer: status line, Content-Type, body; `hold` keeps the connection
    /// open after the body (a stream that stays up).
    struct Reply {
        status: &'static str,
        content_type: &'static str,
        body: String,
        hold: bool,
    }

    fn json(status: &'static str, body: &str) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: body.into(),
            hold: false,
        }
    }

    /// A server on an ephemeral port answering each request by its path and query.
    async fn serve(route: impl Fn(&str) -> Reply + Send + Sync + 'static) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let route = Arc::new(route);
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let route = route.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let target = head.split(' ').nth(1).unwrap_or("").to_owned();
                    let r = route(&target);
                    let mut out = format!(
                        "HTTP/1.1 {}\r\ncontent-type: {}\r\nconnection: close\r\n",
                        r.status, r.content_type
                    );
                    if !r.hold {
                        out.push_str(&format!("content-length: {}\r\n", r.body.len()));
                    }
                    out.push_str("\r\n");
                    out.push_str(&r.body);
                    let _ = sock.write_all(out.as_bytes()).await;
                    if r.hold {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                });
            }
        });
        url
    }

    const USAGE: &str = r#"{"last_event_id":"5","period":{"end":"2026-12-01T00:00:00Z","start":"2026-11-01T00:00:00Z"},"plan":{"hard_limit":false,"id":"pro","name":"Pro"},"quotas":[{"limit":100,"metric":"builds","used":1},{"limit":3,"metric":"applications","used":1}],"stream_epoch":"e1"}"#;
    const NO_EVENTS: &str =
        r#"{"events":[],"has_more":false,"last_event_id":"5","stream_epoch":"e1"}"#;
    const NO_BUILDS: &str = r#"{"builds":[],"has_more":false}"#;

    #[derive(Default)]
    struct Shown(Mutex<Vec<NotificationRow>>);

    impl Notifier for Shown {
        fn show(&self, n: &NotificationRow) -> Result<(), NotifyError> {
            self.0.lock().unwrap().push(n.clone());
            Ok(())
        }
    }

    /// An engine signed in to `url` (on plan Pro) with its cursor at 5 in epoch `e1`.
    fn engine(dir: &tempfile::TempDir, url: &str, cfg: EngineConfig) -> (Engine, Arc<Shown>) {
        let mut store = Store::open(&dir.path().join("q.db")).unwrap();
        let plan = Plan {
            id: "pro".into(),
            name: "Pro".into(),
            hard_limit: false,
        };
        let acct = Account {
            id: "1".into(),
            email: "a@x".into(),
            plan,
        };
        let server = ServerUrl::parse(url).unwrap();
        let id = store
            .upsert_account(server.as_str(), &server.origin(), &acct, None, 0)
            .unwrap();
        store
            .start_cursor(id, &serde_json::from_str(USAGE).unwrap())
            .unwrap();
        let account = store.account(id).unwrap().unwrap();
        let api = ApiClient::new(server, Token::new("qb_test").unwrap()).unwrap();
        let shown = Arc::new(Shown::default());
        let engine = Engine::new(
            store,
            account,
            api,
            shown.clone(),
            Arc::new(SystemClock),
            cfg,
        );
        (engine, shown)
    }

    fn ev(id: &str, kind: &str, data: serde_json::Value) -> Incoming {
        Incoming {
            id: id.into(),
            kind: kind.into(),
            data: data.to_string(),
        }
    }

    #[tokio::test]
    async fn a_plan_change_in_the_stream_decides_how_the_next_crossing_reads() {
        let dir = tempfile::tempdir().unwrap();
        let (mut engine, shown) = engine(&dir, "http://127.0.0.1:1", EngineConfig::default());
        // A period that has not ended by the system clock (a crossing of an ended one is old
        // news, recorded and not shown).
        let period =
            serde_json::json!({"start": "2026-11-01T00:00:00Z", "end": "2100-01-01T00:00:00Z"});
        let events = [
            ev(
                "6",
                kind::PLAN_CHANGED,
                serde_json::json!({"plan": {"id": "free", "name": "Free", "hard_limit": true},
                    "quotas": [], "period": period}),
            ),
            // `quota.updated` has no `hard_limit`: the plan now in force says builds are blocked.
            ev(
                "7",
                kind::QUOTA_UPDATED,
                serde_json::json!({"metric": "builds", "used": 100, "limit": 100, "period": period}),
            ),
        ];
        engine.ingest("e1", &events, Source::Stream).await.unwrap();
        let shown = shown.0.lock().unwrap();
        let quota = shown
            .iter()
            .find(|n| n.kind == NotificationKind::Quota)
            .expect("the crossing");
        assert!(
            quota.urgent && quota.title.contains("new builds are refused"),
            "{quota:?}"
        );
        assert!(quota.body.contains("Free plan"), "{quota:?}");
        assert!(engine.account.plan.hard_limit);
    }

    struct Hung;

    impl Notifier for Hung {
        fn show(&self, _: &NotificationRow) -> Result<(), NotifyError> {
            std::thread::sleep(NOTIFY_TIMEOUT * 5);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_notification_server_that_never_answers_does_not_stop_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let (mut engine, _) = engine(&dir, "http://127.0.0.1:1", EngineConfig::default());
        engine.notifier = Arc::new(Hung);
        let notice = ev(
            "6",
            kind::NOTICE,
            serde_json::json!({"title": "t", "body": "b", "severity": "info"}),
        );
        engine
            .ingest("e1", &[notice], Source::Stream)
            .await
            .unwrap();
        let rows = engine
            .store
            .notifications(engine.account.id, None, 10)
            .unwrap();
        assert_eq!(rows[0].state, NotificationState::Failed);
        assert_eq!(
            rows[0].repeats_possible, 1,
            "the hung call may still get through"
        );
    }

    /// Reads, during each call, the row's state as another process would see it.
    struct Witness(std::path::PathBuf, Mutex<Vec<String>>);

    impl Notifier for Witness {
        fn show(&self, n: &NotificationRow) -> Result<(), NotifyError> {
            let store = Store::open(&self.0).unwrap();
            let state: String = store
                .conn()
                .query_row(
                    "SELECT state FROM notifications WHERE id = ?1",
                    [n.id],
                    |r| r.get(0),
                )
                .unwrap();
            self.1.lock().unwrap().push(state);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_call_is_recorded_in_flight_before_it_is_made() {
        let dir = tempfile::tempdir().unwrap();
        let (mut engine, _) = engine(&dir, "http://127.0.0.1:1", EngineConfig::default());
        let witness = Arc::new(Witness(dir.path().join("q.db"), Mutex::default()));
        engine.notifier = witness.clone();
        let notice = ev(
            "6",
            kind::NOTICE,
            serde_json::json!({"title": "t", "body": "b", "severity": "info"}),
        );
        engine
            .ingest("e1", &[notice], Source::Stream)
            .await
            .unwrap();
        assert_eq!(*witness.1.lock().unwrap(), ["sending"]);
    }

    /// What the daemon holds and what the store says of a row: for a kill during the call.
    #[tokio::test]
    async fn a_call_in_flight_at_a_crash_is_shown_again_as_a_counted_possible_repeat() {
        let dir = tempfile::tempdir().unwrap();
        let (mut engine, shown) = engine(&dir, "http://127.0.0.1:1", EngineConfig::default());
        let notice = ev(
            "6",
            kind::NOTICE,
            serde_json::json!({"title": "t", "body": "b", "severity": "info"}),
        );
        engine
            .ingest("e1", &[notice], Source::Stream)
            .await
            .unwrap();
        let account = engine.account.id;
        let row = &engine.store.notifications(account, None, 10).unwrap()[0];
        assert_eq!(
            (row.state, row.repeats_possible),
            (NotificationState::Shown, 0)
        );
        // The process died after recording the call and before recording its outcome.
        engine.store.mark_sending(row.id).unwrap();
        let resumed = engine.store.notifications_to_resume(account).unwrap();
        assert_eq!(resumed.len(), 1, "an alert in flight is not lost");
        engine.show(resumed).await.unwrap();
        let row = &engine.store.notifications(account, None, 10).unwrap()[0];
        assert_eq!(
            (row.state, row.repeats_possible),
            (NotificationState::Shown, 1)
        );
        assert_eq!(shown.0.lock().unwrap().len(), 2);
        // Nothing left to resume: the count stays.
        assert!(
            engine
                .store
                .notifications_to_resume(account)
                .unwrap()
                .is_empty()
        );
        let row = &engine.store.notifications(account, None, 10).unwrap()[0];
        assert_eq!(row.repeats_possible, 1);
    }

    #[tokio::test]
    async fn a_stall_after_headers_counts_as_a_failure_and_leads_to_long_polling() {
        let dir = tempfile::tempdir().unwrap();
        let (mut engine, _) = engine(&dir, "http://127.0.0.1:1", EngineConfig::default());
        // A buffering proxy: 200, then silence until the watchdog (37.5 s) ends it.
        let silence = Duration::from_millis(37_500);
        for _ in 0..3 {
            let lived = silence + Duration::from_millis(10);
            let end = engine.after_stream_error(StreamError::Stalled(silence), lived);
            assert!(end.unwrap().is_none());
        }
        assert!(
            engine.fallback_until.is_some(),
            "falls back to long-polling"
        );
    }

    #[tokio::test]
    async fn retry_after_zero_does_not_remove_the_backoff() {
        let dir = tempfile::tempdir().unwrap();
        let (mut engine, _) = engine(&dir, "http://127.0.0.1:1", EngineConfig::default());
        let e = ApiError::RateLimited {
            status: 429,
            retry_after: Some(Duration::from_secs(3)),
        };
        assert!(engine.delay_for_api(&e, None) >= Duration::from_secs(3));
        let zero = ApiError::RateLimited {
            status: 429,
            retry_after: Some(Duration::ZERO),
        };
        let delays: Vec<_> = (0..8).map(|_| engine.delay_for_api(&zero, None)).collect();
        assert!(
            delays.iter().any(|d| *d > Duration::from_millis(100)),
            "{delays:?}"
        );
    }

    /// A server with no history whose long polls (`/events?wait=`) answer `status`.
    async fn long_polls_answer(status: &'static str) -> String {
        serve(move |target| match target {
            t if t.contains("wait=") => json(status, "{}"),
            t if t.contains("/usage") => json("200 OK", USAGE),
            t if t.contains("/events") => json("200 OK", NO_EVENTS),
            t if t.contains("/builds") => json("200 OK", NO_BUILDS),
            _ => json("404 Not Found", "{}"),
        })
        .await
    }

    #[tokio::test]
    async fn a_failing_long_poll_does_not_end_the_engine() {
        let url = long_polls_answer("503 Service Unavailable").await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = EngineConfig {
            max_backoff: Duration::from_millis(50),
            ..EngineConfig::default()
        };
        let (mut engine, _) = engine(&dir, &url, cfg);
        engine.fallback_until = Some(Instant::now() + Duration::from_secs(60));
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let _ = stop.send(true);
        });
        assert_eq!(engine.run(stopped).await.unwrap(), Exit::Shutdown);
    }

    #[tokio::test]
    async fn a_401_while_long_polling_leaves_the_signed_out_state() {
        let url = long_polls_answer("401 Unauthorized").await;
        let dir = tempfile::tempdir().unwrap();
        let (mut engine, _) = engine(&dir, &url, EngineConfig::default());
        engine.fallback_until = Some(Instant::now() + Duration::from_secs(60));
        let store = Store::open(&dir.path().join("q.db")).unwrap();
        let account = engine.account.id;
        let (_stop, stopped) = watch::channel(false);
        assert_eq!(engine.run(stopped).await.unwrap(), Exit::SignedOut);
        assert_eq!(
            store.sync_state(account).unwrap().connection,
            Connection::SignedOut
        );
    }

    /// Every way a page can show a gap goes through the same step: one history gap recorded
    /// with its reason, the cursor restarted from `/usage`, nothing of the page stored.
    #[tokio::test]
    async fn a_page_that_shows_a_gap_resyncs_and_stores_none_of_it() {
        const USAGE_E2: &str = r#"{"last_event_id":"40","period":{"end":"2026-12-01T00:00:00Z","start":"2026-11-01T00:00:00Z"},"plan":{"hard_limit":false,"id":"pro","name":"Pro"},"quotas":[],"stream_epoch":"e2"}"#;
        let url = serve(|target| match target {
            t if t.contains("/usage") => json("200 OK", USAGE_E2),
            _ => json("404 Not Found", "{}"),
        })
        .await;
        let gone = || {
            Page::fetched(Err(ApiError::HistoryExpired {
                reason: "too old".into(),
            }))
            .unwrap()
        };
        let other_epoch = || Page::Events {
            epoch: "e2".into(),
            events: vec![ev("6", kind::NOTICE, serde_json::json!({"title": "t"}))],
        };
        for (page, detail) in [
            (other_epoch(), "stream epoch changed"),
            (gone(), "history_expired (too old)"),
            (Page::Gone(Gap::Reset("{}".into())), "sync.reset {}"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let (mut engine, shown) = engine(&dir, &url, EngineConfig::default());
            let applied = engine.apply(page, "e1", Source::Stream).await.unwrap();
            assert_eq!(applied, Applied::Gap);
            let account = engine.account.id;
            let gaps = engine.store.gaps(account).unwrap();
            assert_eq!(gaps.len(), 1);
            assert_eq!(gaps[0].detail.as_deref(), Some(detail));
            let state = engine.store.sync_state(account).unwrap();
            assert_eq!(
                (state.cursor.as_deref(), state.epoch.as_deref()),
                (Some("40"), Some("e2"))
            );
            assert!(engine.store.events(account, 0, 10).unwrap().is_empty());
            assert!(shown.0.lock().unwrap().is_empty());
        }
    }

    #[tokio::test]
    async fn a_page_of_the_cursors_epoch_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (mut engine, _) = engine(&dir, "http://127.0.0.1:1", EngineConfig::default());
        let wire: EventsPage = serde_json::from_str(
            &serde_json::json!({
                "events": [{"id": "6", "type": kind::BUILD_ACCEPTED, "data": {"id": 1, "app": "web",
                    "version": "1", "commit": "c", "overage": false,
                    "created_at": "2026-11-02T00:00:00Z"}}],
                "has_more": false, "last_event_id": "6", "stream_epoch": "e1"
            })
            .to_string(),
        )
        .unwrap();
        let page = Page::fetched(Ok(wire)).unwrap();
        let applied = engine.apply(page, "e1", Source::CatchUp).await.unwrap();
        assert_eq!(applied, Applied::Stored { builds: 1 });
        let account = engine.account.id;
        assert_eq!(
            engine.store.sync_state(account).unwrap().cursor.as_deref(),
            Some("6")
        );
        assert!(engine.store.gaps(account).unwrap().is_empty());
    }

    #[tokio::test]
    async fn builds_are_paged_once_then_come_as_events_until_a_history_gap() {
        let pages = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = pages.clone();
        let url = serve(move |target| match target {
            t if t.starts_with("/api/v1/usage") => json("200 OK", USAGE),
            t if t.starts_with("/api/v1/events") => json("200 OK", NO_EVENTS),
            t if t.starts_with("/api/v1/builds") => {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                json(
                    "200 OK",
                    r#"{"builds":[{"id":3,"app":"web","version":"1","commit":"c","overage":false,"created_at":"2026-11-02T00:00:00Z"}],"has_more":false}"#,
                )
            }
            _ => json("404 Not Found", "{}"),
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let (mut engine, _) = engine(&dir, &url, EngineConfig::default());
        let account = engine.account.id;
        let paged = || pages.load(std::sync::atomic::Ordering::SeqCst);

        engine.catch_up().await.unwrap();
        assert_eq!(paged(), 1, "the first catch-up pages /builds");
        assert!(engine.store.sync_state(account).unwrap().builds_complete);
        assert_eq!(engine.store.sync_state(account).unwrap().builds_cursor, 3);
        engine.catch_up().await.unwrap();
        assert_eq!(paged(), 1, "complete builds are not paged again");

        // A history gap drops the cached builds: the next sync pages them again.
        let usage: Usage = serde_json::from_str(USAGE).unwrap();
        engine
            .store
            .resync(account, &usage, "history_gap", "test", 0)
            .unwrap();
        assert!(!engine.store.sync_state(account).unwrap().builds_complete);
        engine.catch_up().await.unwrap();
        assert_eq!(paged(), 2, "after a gap /builds is paged again");
        assert!(engine.store.sync_state(account).unwrap().builds_complete);
    }

    #[tokio::test]
    async fn a_sync_reset_while_usage_is_unreachable_ends_the_connection_not_the_engine() {
        let url = serve(|target| match target {
            t if t.contains("/stream") => Reply {
                status: "200 OK",
                content_type: "text/event-stream",
                body: "retry: 100\n\nid: 9\nevent: sync.reset\ndata: {\"reason\":\"expired\"}\n\n"
                    .into(),
                hold: true,
            },
            _ => json("503 Service Unavailable", "{}"),
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let (mut engine, _) = engine(&dir, &url, EngineConfig::default());
        let (_stop, mut stopped) = watch::channel(false);
        let (_tx, mut wake) = watch::channel(0u64);
        let end = engine.follow_stream(&mut stopped, &mut wake).await.unwrap();
        assert!(
            matches!(
                end,
                StreamEnd::Failed {
                    error: StreamError::Api(ApiError::RateLimited { .. }),
                    ..
                }
            ),
            "the connection ends as a failed one"
        );
    }

    #[tokio::test]
    async fn a_token_revoked_under_an_open_stream_is_noticed_by_the_backstop() {
        let url = serve(|target| match target {
            t if t.contains("/stream") => Reply {
                status: "200 OK",
                content_type: "text/event-stream",
                body: "retry: 100\n\n".into(),
                hold: true,
            },
            _ => json("401 Unauthorized", "{}"),
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = EngineConfig {
            backstop: Duration::from_millis(200),
            ..EngineConfig::default()
        };
        let (mut engine, _) = engine(&dir, &url, cfg);
        let (_stop, mut stopped) = watch::channel(false);
        let (_tx, mut wake) = watch::channel(0u64);
        let end = tokio::time::timeout(
            Duration::from_secs(5),
            engine.follow_stream(&mut stopped, &mut wake),
        )
        .await
        .expect("the stream is left")
        .unwrap();
        assert!(
            matches!(end, StreamEnd::Failed { error: StreamError::Api(ref e), .. } if e.is_auth())
        );
    }
}
