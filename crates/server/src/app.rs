//! Wiring: opens the database, starts the writer and the watcher of outside writes, and serves
//! the API until shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::Connection;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{self, AppState, StreamSettings};
use crate::auth::TokenCache;
use crate::db;
use crate::error::StoreError;
use crate::events;
use crate::live::hub::Hubs;
use crate::writer::{Retention, Writer};

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub db: PathBuf,
    pub stream: StreamSettings,
    pub retention: Retention,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// A bound, ready server. `run` serves until `shutdown` resolves.
pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
    stop: watch::Sender<bool>,
    writer_thread: std::thread::JoinHandle<()>,
    watcher_thread: std::thread::JoinHandle<()>,
}

impl Server {
    pub async fn bind(cfg: &ServeConfig) -> Result<Self, ServeError> {
        let conn = db::open_writer(&cfg.db)?;
        let pool = db::read_pool(&cfg.db, 8)?;
        let hubs = Arc::new(Hubs::default());
        let (writer, writer_thread) = Writer::spawn(conn, hubs.clone(), cfg.retention)?;
        let (stop, shutdown) = watch::channel(false);
        let watcher_thread = spawn_outside_write_watcher(
            Connection::open(&cfg.db).map_err(StoreError::from)?,
            hubs.clone(),
            shutdown.clone(),
        )?;
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let state = Arc::new(AppState {
            pool,
            writer,
            hubs,
            tokens: TokenCache::default(),
            stream: cfg.stream,
            shutdown,
        });
        Ok(Self {
            listener,
            state,
            stop,
            writer_thread,
            watcher_thread,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let app = api::router(self.state);
        crate::live::serve::run(self.listener, app, shutdown, self.stop).await;
        // The router (and with it the last writer handle) is gone: the writer drains and stops.
        let _ = self.writer_thread.join();
        let _ = self.watcher_thread.join();
        Ok(())
    }
}

/// Operator commands (`notice`, `plan set`, ...) write to the database from another process.
/// SQLite's `data_version` tells this connection when anyone else committed; then every user
/// with open streams gets the events it has not seen published to its hub.
fn spawn_outside_write_watcher(
    conn: Connection,
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
                if version == seen {
                    continue;
                }
                seen = version;
                for (user, hub, newest) in hubs.live_users() {
                    match events::epoch(&conn, user) {
                        Ok(Some(epoch)) if epoch == hub.epoch() => {}
                        Ok(_) => {
                            hubs.retire(user);
                            continue;
                        }
                        Err(e) => tracing::warn!(error = %e, user, "cannot read the epoch"),
                    }
                    match events::bounds(&conn, user) {
                        Ok(b) if b.last_id > newest && newest > 0 => {
                            if let Ok(evs) = events::after(&conn, user, newest, 1024) {
                                hubs.publish(user, &evs);
                            }
                            hub.note_newest(b.last_id);
                        }
                        Ok(b) => hub.note_newest(b.last_id),
                        Err(e) => tracing::warn!(error = %e, user, "cannot read event bounds"),
                    }
                }
            }
        })
}
