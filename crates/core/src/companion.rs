//! The desktop app without its shell: runs the engine of the signed-in account, answers the
//! window's calls from the cache, and publishes a fresh [`Snapshot`] whenever something the
//! tray or the window shows may have changed. The Tauri shell only renders and relays.

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
use crate::ipc::{Call, ErrorCode, IpcError, Snapshot};
use crate::notifier::Notifier;
use crate::paths::Paths;
use crate::secret::{Keychain, Token, TokenError};
use crate::session::{self, SessionError};
use crate::store::{Store, StoreError};

/// How often the snapshot is recomputed with nothing else happening: "synced 2 min ago" and
/// the end of a pause move with the clock.
const TICK: Duration = Duration::from_secs(30);
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
    engine: tokio::sync::Mutex<Option<EngineTask>>,
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
                engine: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// Publishes the cached state, starts the engine when signed in, and keeps the snapshot
    /// current until the process ends.
    pub async fn start(&self) {
        self.inner.refresh().await;
        Inner::start_engine(&self.inner).await;
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = inner.upgrade() else { break };
                inner.refresh().await;
            }
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
                inner
                    .read(move |s| match s.active_account()? {
                        Some(a) => Ok(dashboard::usage_history(s, &a, now)?),
                        None => Ok(Vec::new()),
                    })
                    .await
                    .and_then(json)
            }
            Call::Builds(q) => inner
                .read_ipc(move |s| {
                    let a = signed_in(s)?;
                    dashboard::builds(s, a, &q)
                })
                .await
                .and_then(json),
            Call::BuildApps => inner
                .read_ipc(|s| s.build_apps(signed_in(s)?).map_err(storage))
                .await
                .and_then(json),
            Call::Notifications(q) => {
                let now = inner.clock.now_unix();
                inner
                    .read_ipc(move |s| {
                        let a = signed_in(s)?;
                        dashboard::notifications(s, a, &q, now).map_err(storage)
                    })
                    .await
                    .and_then(json)
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
                Inner::stop_engine(inner).await;
                let now = inner.clock.now_unix();
                let signed = session::login(
                    &inner.paths,
                    form.server.trim(),
                    token,
                    inner.keychain.clone(),
                    now,
                )
                .await;
                // The store may have a new active account either way: reopen it.
                *inner.store.lock().unwrap_or_else(|e| e.into_inner()) = None;
                if let Err(e) = signed {
                    Inner::start_engine(inner).await;
                    return Err(session_error(e));
                }
                Inner::start_engine(inner).await;
                json(inner.refresh().await)
            }
            Call::SignOut => {
                Inner::stop_engine(inner).await;
                *inner.store.lock().unwrap_or_else(|e| e.into_inner()) = None;
                let out = session::logout(&inner.paths, inner.keychain.clone()).await;
                if let Err(e) = out {
                    Inner::start_engine(inner).await;
                    return Err(session_error(e));
                }
                json(inner.refresh().await)
            }
        }
    }

    /// Stops the engine and waits for it to record that it stopped.
    pub async fn shutdown(&self) {
        Inner::stop_engine(&self.inner).await;
    }
}

impl Inner {
    /// Recomputes the snapshot from the cache and publishes it when it changed.
    async fn refresh(self: &Arc<Self>) -> Snapshot {
        let running = self
            .engine
            .lock()
            .await
            .as_ref()
            .is_some_and(|t| !t.join.is_finished());
        let clock = self.clock.clone();
        let got = self
            .read(move |s| {
                let now = clock.now_unix();
                dashboard::snapshot(
                    s,
                    &Moment {
                        now,
                        clock: clock.as_ref(),
                        engine_running: running,
                    },
                )
            })
            .await;
        match got {
            Ok(snap) => {
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

    /// Starts the engine of the signed-in account, if there is one and none runs. Boxed: a
    /// failed engine schedules this again, and a recursive `async fn` cannot be `Send`.
    fn start_engine(self: &Arc<Self>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.start_engine_now())
    }

    async fn start_engine_now(self: &Arc<Self>) {
        let mut slot = self.engine.lock().await;
        if slot.as_ref().is_some_and(|t| !t.join.is_finished()) {
            return;
        }
        let opened = session::open_engine(
            &self.paths,
            "quotabell-app",
            self.keychain.clone(),
            self.notifier.clone(),
            self.clock.clone(),
            self.cfg.clone(),
        )
        .await;
        let running = match opened {
            Ok(r) => r,
            Err(SessionError::NotSignedIn) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the engine");
                // A held lock or a locked keychain may clear: try again later.
                restart_later(Arc::downgrade(self));
                return;
            }
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut updates = running.engine.subscribe();
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
            let lock = running.lock;
            let exit = running.engine.run(shutdown_rx).await;
            drop(lock);
            match exit {
                Ok(Exit::Shutdown) => {}
                Ok(Exit::SignedOut) => tracing::warn!("the server refused the token: signed out"),
                Err(e) => {
                    tracing::error!(error = %e, "the engine stopped");
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
        *slot = Some(EngineTask { shutdown, join });
    }

    async fn stop_engine(self: &Arc<Self>) {
        let task = self.engine.lock().await.take();
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
            Inner::start_engine(&me).await;
        }
    });
}

fn signed_in(s: &Store) -> Result<i64, IpcError> {
    match s.active_account().map_err(storage)? {
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
        SessionError::Store(_) => IpcError::new(ErrorCode::Storage, message),
        SessionError::Lock(_) => IpcError::new(ErrorCode::Busy, message),
        SessionError::NotSignedIn => IpcError::new(ErrorCode::NotSignedIn, message),
    }
}
