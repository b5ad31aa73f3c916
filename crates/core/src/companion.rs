//! The desktop app without its shell: runs one engine per signed-in account, answers the
//! window's calls from the cache, and publishes a fresh [`Snapshot`] whenever something the
//! tray or the window shows may have changed. The Tauri shell only renders and relays.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::dashboard::{self, Moment};
use crate::engine::{EngineConfig, Exit};
use crate::ipc::{Call, Connection, ErrorCode, IpcError, Snapshot};
use crate::lock::EngineLock;
use crate::notifier::Notifier;
use crate::paths::Paths;
use crate::secret::{Keychain, Token, TokenError};
use crate::session::{self, SessionError};
use crate::store::AccountRow;
use crate::store::{Store, StoreError};
use crate::wake::WakeWatch;

/// How often the snapshot is recomputed while a window shows it: its "last synced 2 min ago"
/// moves with the clock. With no window, only the tray's words count, and they are refreshed
/// when they change (`Moment::next_change`), not on a timer.
const TICK: Duration = Duration::from_secs(30);
/// With no wording due to change, the snapshot is still recomputed this often (a plan for
/// later that costs nothing now).
const LONGEST_WAIT: Duration = Duration::from_secs(6 * 3600);
/// A failed engine (its store, say) is started again after this long.
const ENGINE_RESTART: Duration = Duration::from_secs(30);

pub struct Companion {
    inner: Arc<Inner>,
}

struct Inner {
    paths: Paths,
    keychain: Arc<dyn Keychain>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    cfg: EngineConfig,
    /// The companion's own connection: reads for the views and settings writes. The engine
    /// has its own; SQLite's WAL lets both work at once.
    store: Mutex<Option<Store>>,
    snapshots: watch::Sender<Snapshot>,
    /// When the snapshot's tray words next change by themselves (unix seconds).
    next_change: Mutex<Option<i64>>,
    /// Whether a window shows the snapshot (its words then follow the clock).
    window_open: watch::Sender<bool>,
    engines: tokio::sync::Mutex<Engines>,
    /// The account the window shows; `None` (or an account since signed out): the first.
    selected: Mutex<Option<i64>>,
}

/// The engines of this process: the profile lock, taken with the first, and one task per
/// account, each on its own connection to its own server, so that one failing account (a
/// revoked token, a server down) leaves the others as they are.
#[derive(Default)]
struct Engines {
    lock: Option<EngineLock>,
    tasks: BTreeMap<i64, EngineTask>,
    /// One wake watch for every account's engine (a suspend is the machine's).
    wake: Option<WakeWatch>,
}

impl Engines {
    fn running(&self, account: i64) -> bool {
        self.tasks
            .get(&account)
            .is_some_and(|t| !t.join.is_finished())
    }
}

struct EngineTask {
    shutdown: watch::Sender<bool>,
    join: JoinHandle<()>,
}

impl Companion {
    /// Builds the companion; call [`Companion::start`] from within a Tokio runtime.
    pub fn new(
        paths: Paths,
        keychain: Arc<dyn Keychain>,
        notifier: Arc<dyn Notifier>,
        clock: Arc<dyn Clock>,
        cfg: EngineConfig,
    ) -> Self {
        let now = clock.now_unix();
        let first = dashboard::snapshot_signed_out(now, clock.as_ref());
        Self {
            inner: Arc::new(Inner {
                paths,
                keychain,
                notifier,
                clock,
                cfg,
                store: Mutex::new(None),
                snapshots: watch::channel(first).0,
                next_change: Mutex::new(None),
                window_open: watch::channel(false).0,
                engines: tokio::sync::Mutex::new(Engines::default()),
                selected: Mutex::new(None),
            }),
        }
    }

    /// Publishes the cached state, starts an engine per signed-in account, and keeps the
    /// snapshot current until the process ends.
    pub async fn start(&self) {
        self.inner.refresh().await;
        Inner::start_engines(&self.inner).await;
        let weak = Arc::downgrade(&self.inner);
        let mut window_open = self.inner.window_open.subscribe();
        let mut snapshots = self.inner.snapshots.subscribe();
        tokio::spawn(async move {
            loop {
                let wait = {
                    let Some(inner) = weak.upgrade() else { break };
                    inner.until_next_refresh(*window_open.borrow_and_update())
                };
                snapshots.borrow_and_update();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    // A new snapshot or a window opening or closing: plan again.
                    r = snapshots.changed() => { if r.is_err() { break } continue }
                    r = window_open.changed() => { if r.is_err() { break } }
                }
                let Some(inner) = weak.upgrade() else { break };
                inner.refresh().await;
            }
        });
    }

    /// Whether a window shows the snapshot; while one does, its words follow the clock.
    pub fn set_window_open(&self, open: bool) {
        self.inner.window_open.send_if_modified(|cur| {
            let changed = *cur != open;
            *cur = open;
            changed
        });
    }

    /// The latest snapshot, and every later one.
    pub fn snapshots(&self) -> watch::Receiver<Snapshot> {
        self.inner.snapshots.subscribe()
    }

    /// Answers one call of the window. Errors carry a code the UI branches on.
    pub async fn call(&self, call: Call) -> Result<Value, IpcError> {
        let inner = &self.inner;
        match call {
            Call::Snapshot => json(inner.snapshots.borrow().clone()),
            Call::UsageHistory => {
                let now = inner.clock.now_unix();
                let selected = inner.selected();
                inner
                    .read(move |s| match shown_account(s, selected)? {
                        Some(a) => Ok(dashboard::usage_history(s, &a, now)?),
                        None => Ok(Vec::new()),
                    })
                    .await
                    .and_then(json)
            }
            Call::Builds(q) => {
                let selected = inner.selected();
                inner
                    .read_ipc(move |s| {
                        let a = signed_in(s, selected)?;
                        dashboard::builds(s, a, &q)
                    })
                    .await
                    .and_then(json)
            }
            Call::BuildApps => {
                let selected = inner.selected();
                inner
                    .read_ipc(move |s| s.build_apps(signed_in(s, selected)?).map_err(storage))
                    .await
                    .and_then(json)
            }
            Call::Notifications(q) => {
                let now = inner.clock.now_unix();
                let selected = inner.selected();
                inner
                    .read_ipc(move |s| {
                        let a = signed_in(s, selected)?;
                        dashboard::notifications(s, a, &q, now).map_err(storage)
                    })
                    .await
                    .and_then(json)
            }
            Call::SelectAccount { account } => {
                let known = inner.read(move |s| s.account(account)).await?;
                if known.is_none() {
                    return Err(IpcError::new(
                        ErrorCode::NotSignedIn,
                        "that account is no longer signed in",
                    ));
                }
                *inner.selected.lock().unwrap_or_else(|e| e.into_inner()) = Some(account);
                json(inner.refresh().await)
            }
            Call::Diagnose => {
                let findings = crate::doctor::examine(
                    &inner.paths,
                    inner.keychain.clone(),
                    inner.clock.now_unix(),
                )
                .await;
                json(findings)
            }
            Call::Settings => inner
                .read(|s| Ok(dashboard::settings_form(&s.settings()?, false)))
                .await
                .and_then(json),
            Call::SaveSettings(form) => {
                let saved = inner
                    .read_ipc(move |s| {
                        let next = dashboard::apply_form(&s.settings().map_err(storage)?, &form)?;
                        s.set_settings(&next).map_err(storage)?;
                        Ok(dashboard::settings_form(&next, form.start_at_login))
                    })
                    .await?;
                inner.refresh().await;
                json(saved)
            }
            Call::Pause(choice) => {
                let now = inner.clock.now_unix();
                let until = dashboard::pause_until(choice, now, inner.clock.as_ref());
                inner
                    .read(move |s| {
                        let mut settings = s.settings()?;
                        settings.paused_until = until;
                        s.set_settings(&settings)
                    })
                    .await?;
                json(inner.refresh().await)
            }
            Call::SignIn(form) => {
                let token = Token::new(&form.token).map_err(|e| {
                    IpcError::invalid(
                        "token",
                        match e {
                            TokenError::Empty => "paste the API token from your account page",
                            TokenError::TooLong => "this is too long to be a token",
                            TokenError::BadCharacters => {
                                "a token has no spaces or control characters"
                            }
                        },
                    )
                })?;
                if form.server.trim().is_empty() {
                    return Err(IpcError::invalid("server", "give the server's address"));
                }
                let name = form
                    .name
                    .as_deref()
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned);
                let now = inner.clock.now_unix();
                // Signing in to an account already followed replaces its token: stop its
                // engine first so it restarts with the new one. Other accounts go on.
                let account = session::login(
                    &inner.paths,
                    form.server.trim(),
                    token,
                    name.as_deref(),
                    inner.keychain.clone(),
                    now,
                )
                .await
                .map_err(session_error)?;
                Inner::stop_engine(inner, account.id).await;
                *inner.selected.lock().unwrap_or_else(|e| e.into_inner()) = Some(account.id);
                Inner::start_engines(inner).await;
                json(inner.refresh().await)
            }
            Call::SignOut { account } => {
                Inner::stop_engine(inner, account).await;
                let keychain = inner.keychain.clone();
                let out = inner
                    .read_ipc(move |s| {
                        let Some(row) = s.account(account).map_err(storage)? else {
                            return Ok(());
                        };
                        // On the store's thread already: block on the keychain here.
                        tokio::runtime::Handle::current()
                            .block_on(session::forget(s, &row, keychain))
                            .map_err(session_error)
                    })
                    .await;
                if let Err(e) = out {
                    Inner::start_engines(inner).await;
                    return Err(e);
                }
                json(inner.refresh().await)
            }
        }
    }

    /// Which account the window shows; a notification's "Open usage" selects its account.
    pub async fn select(&self, account: i64) {
        let _ = self.call(Call::SelectAccount { account }).await;
    }

    /// Stops every engine and waits for each to record that it stopped.
    pub async fn shutdown(&self) {
        let ids: Vec<i64> = self
            .inner
            .engines
            .lock()
            .await
            .tasks
            .keys()
            .copied()
            .collect();
        for id in ids {
            Inner::stop_engine(&self.inner, id).await;
        }
        self.inner.engines.lock().await.lock = None;
    }
}

impl Inner {
    /// Recomputes the snapshot from the cache and publishes it when it changed.
    async fn refresh(self: &Arc<Self>) -> Snapshot {
        let running: Vec<i64> = {
            let engines = self.engines.lock().await;
            engines
                .tasks
                .keys()
                .copied()
                .filter(|&id| engines.running(id))
                .collect()
        };
        let clock = self.clock.clone();
        let selected = self.selected();
        let got = self
            .read(move |s| {
                let running = |id| running.contains(&id);
                let at = Moment::new(clock.now_unix(), clock.as_ref(), &running);
                Ok((dashboard::snapshot(s, selected, &at)?, at.next_change.get()))
            })
            .await;
        match got {
            Ok((snap, next_change)) => {
                *self.next_change.lock().unwrap_or_else(|e| e.into_inner()) = next_change;
                self.snapshots.send_if_modified(|cur| {
                    // `now` alone changing is no news.
                    let changed = Snapshot {
                        now: cur.now,
                        ..snap.clone()
                    } != *cur;
                    *cur = snap.clone();
                    changed
                });
                snap
            }
            Err(e) => {
                tracing::warn!(error = %e.message, "cannot read the cache for the snapshot");
                self.snapshots.borrow().clone()
            }
        }
    }

    /// How long until the snapshot must be recomputed with nothing else happening.
    fn until_next_refresh(&self, window_open: bool) -> Duration {
        if window_open {
            return TICK;
        }
        let next = *self.next_change.lock().unwrap_or_else(|e| e.into_inner());
        match next {
            // A second late, so that the words have changed when it is read.
            Some(at) => Duration::from_secs((at - self.clock.now_unix()).max(0) as u64 + 1)
                .min(LONGEST_WAIT),
            None => LONGEST_WAIT,
        }
    }

    fn selected(&self) -> Option<i64> {
        *self.selected.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the companion's store connection, off the async threads (SQLite blocks).
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, IpcError> {
        self.read_ipc(move |s| f(s).map_err(storage)).await
    }

    async fn read_ipc<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Store) -> Result<T, IpcError> + Send + 'static,
    ) -> Result<T, IpcError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut slot = me.store.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                std::fs::create_dir_all(&me.paths.data).map_err(|e| {
                    IpcError::new(
                        ErrorCode::Storage,
                        format!("cannot create {}: {e}", me.paths.data.display()),
                    )
                })?;
                *slot = Some(Store::open(&me.paths.db()).map_err(storage)?);
            }
            f(slot.as_mut().expect("opened above"))
        })
        .await
        .unwrap_or_else(|e| {
            Err(IpcError::new(
                ErrorCode::Internal,
                format!("task failed: {e}"),
            ))
        })
    }

    /// Starts the engine of each signed-in account that has none running, except those the
    /// server signed out (a new sign-in restarts those). Boxed: a failed engine schedules this
    /// again, and a recursive `async fn` cannot be `Send`.
    fn start_engines(self: &Arc<Self>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.start_engines_now())
    }

    async fn start_engines_now(self: &Arc<Self>) {
        let mut engines = self.engines.lock().await;
        let accounts = match self
            .read(|s| {
                s.accounts()?
                    .into_iter()
                    .map(|a| Ok((s.sync_state(a.id)?.connection, a)))
                    .collect::<Result<Vec<_>, StoreError>>()
            })
            .await
        {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e.message, "cannot read the accounts");
                restart_later(Arc::downgrade(self));
                return;
            }
        };
        if accounts.is_empty() {
            return;
        }
        if engines.lock.is_none() {
            match session::lock_profile(&self.paths, "quotabell-app") {
                Ok(lock) => engines.lock = Some(lock),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the engines");
                    // Another engine process holds the profile; it may end.
                    restart_later(Arc::downgrade(self));
                    return;
                }
            }
        }
        let mut retry = false;
        for (connection, account) in accounts {
            let signed_out =
                connection == Connection::SignedOut && !engines.tasks.contains_key(&account.id);
            if engines.running(account.id) || signed_out {
                continue;
            }
            let wake = engines
                .wake
                .get_or_insert_with(|| WakeWatch::new(self.clock.clone(), self.cfg.wake_jump))
                .clone();
            match self.open_engine(account.clone(), wake).await {
                Ok(task) => {
                    engines.tasks.insert(account.id, task);
                }
                Err(e) => {
                    tracing::warn!(account = %account.name, error = %e, "cannot start the engine");
                    // Said where the account is shown, not only in the log.
                    let (id, detail, now) = (account.id, e.to_string(), self.clock.now_unix());
                    let _ = self
                        .read(move |s| {
                            s.set_connection(id, Connection::Offline, Some(&detail), now)
                        })
                        .await;
                    // A locked keychain may be unlocked; a missing token needs a sign-in.
                    retry |= !matches!(e, SessionError::TokenMissing(_));
                }
            }
        }
        if retry {
            restart_later(Arc::downgrade(self));
        }
    }

    /// Opens one account's engine and runs it in a task of its own.
    async fn open_engine(
        self: &Arc<Self>,
        account: AccountRow,
        wake: WakeWatch,
    ) -> Result<EngineTask, SessionError> {
        let name = account.name.clone();
        let engine = session::open_engine(
            &self.paths,
            account,
            self.keychain.clone(),
            self.notifier.clone(),
            self.clock.clone(),
            self.cfg.clone(),
        )
        .await?
        .sharing_wake(wake);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut updates = engine.subscribe();
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            // Every stored change re-renders; a burst coalesces into one refresh.
            loop {
                match updates.recv().await {
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
                while updates.try_recv().is_ok() {}
                let Some(me) = me.upgrade() else { break };
                me.refresh().await;
            }
        });
        let me = Arc::downgrade(self);
        let join = tokio::spawn(async move {
            match engine.run(shutdown_rx).await {
                Ok(Exit::Shutdown) => {}
                Ok(Exit::SignedOut) => {
                    tracing::warn!(account = %name, "the server refused the token: signed out")
                }
                Err(e) => {
                    tracing::error!(account = %name, error = %e, "the engine stopped");
                    restart_later(me.clone());
                }
            }
            if let Some(me) = me.upgrade() {
                // After `join` is marked finished, so the snapshot reads "offline".
                tokio::spawn(async move {
                    tokio::task::yield_now().await;
                    me.refresh().await;
                });
            }
        });
        Ok(EngineTask { shutdown, join })
    }

    async fn stop_engine(self: &Arc<Self>, account: i64) {
        let task = {
            let mut engines = self.engines.lock().await;
            let task = engines.tasks.remove(&account);
            if engines.tasks.is_empty() {
                engines.wake = None;
            }
            task
        };
        if let Some(t) = task {
            let _ = t.shutdown.send(true);
            let _ = t.join.await;
        }
    }
}

fn restart_later(me: std::sync::Weak<Inner>) {
    tokio::spawn(async move {
        tokio::time::sleep(ENGINE_RESTART).await;
        if let Some(me) = me.upgrade() {
            Inner::start_engines(&me).await;
        }
    });
}

/// The account the window shows: the selected one, else the first.
fn shown_account(s: &Store, selected: Option<i64>) -> Result<Option<AccountRow>, StoreError> {
    let mut all = s.accounts()?;
    let at = selected
        .and_then(|id| all.iter().position(|a| a.id == id))
        .unwrap_or(0);
    Ok((at < all.len()).then(|| all.swap_remove(at)))
}

fn signed_in(s: &Store, selected: Option<i64>) -> Result<i64, IpcError> {
    match shown_account(s, selected).map_err(storage)? {
        Some(a) => Ok(a.id),
        None => Err(IpcError::new(ErrorCode::NotSignedIn, "not signed in")),
    }
}

fn json(v: impl Serialize) -> Result<Value, IpcError> {
    serde_json::to_value(v).map_err(|e| IpcError::new(ErrorCode::Internal, e.to_string()))
}

fn storage(e: StoreError) -> IpcError {
    IpcError::new(ErrorCode::Storage, e.to_string())
}

/// Sign-in and sign-out failures, with the form field they concern.
fn session_error(e: SessionError) -> IpcError {
    use crate::client::ApiError;
    let message = e.to_string();
    match e {
        SessionError::Url(_) => IpcError::invalid("server", message),
        SessionError::Api(ApiError::Unauthorized { .. }) => IpcError {
            code: ErrorCode::Unauthorized,
            message: "the server does not accept this token".into(),
            field: Some("token".into()),
        },
        SessionError::Api(_) => IpcError {
            code: ErrorCode::Unreachable,
            message,
            field: Some("server".into()),
        },
        SessionError::Secret(_) | SessionError::TokenMissing(_) => {
            IpcError::new(ErrorCode::Keychain, message)
        }
        SessionError::Store(StoreError::NameTaken(_)) => IpcError::invalid("name", message),
        SessionError::Store(_) => IpcError::new(ErrorCode::Storage, message),
        SessionError::Lock(_) => IpcError::new(ErrorCode::Busy, message),
        SessionError::NotSignedIn
        | SessionError::NoSuchAccount { .. }
        | SessionError::ChooseAccount(_) => IpcError::new(ErrorCode::NotSignedIn, message),
    }
}
