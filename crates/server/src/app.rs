//! Wiring: opens the database, starts the writer and the watcher of outside writes, and serves
//! the API until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{self, AppState, StreamSettings};
use crate::auth::TokenCache;
use crate::error::StoreError;
use crate::jobs::{self, Leadership};
use crate::live::follow;
use crate::live::hub::Hubs;
use crate::store::{Location, ReadPool, WriteConn, postgres, sqlite};
use crate::writer::{Retention, Writer};

/// Connections each instance keeps to PostgreSQL for handlers and jobs (its writer threads
/// and the listener and leader have their own).
const PG_READERS: usize = 12;
/// Request handlers' SQLite read connections.
const SQLITE_READERS: u32 = 8;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub db: Location,
    pub stream: StreamSettings,
    pub retention: Retention,
    /// How often the background jobs run (on the leader) and, on PostgreSQL, the backstop
    /// refresh of live streams.
    pub jobs_every: Duration,
    pub backstop: Duration,
    /// Writer threads on PostgreSQL: each waits on its own round trips to the database, so
    /// several keep it busy while one waits (SQLite has one writer).
    pub pg_writers: usize,
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
    writer_threads: Vec<std::thread::JoinHandle<()>>,
    watcher_thread: Option<std::thread::JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub async fn bind(cfg: &ServeConfig) -> Result<Self, ServeError> {
        let hubs = Arc::new(Hubs::default());
        let (stop, shutdown) = watch::channel(false);
        let leadership = Arc::new(match cfg.db {
            Location::Sqlite(_) => Leadership::sole(),
            Location::Postgres(_) => Leadership::default(),
        });
        let mut tasks = Vec::new();
        let (pool, writer, writer_threads, watcher_thread) = match &cfg.db {
            Location::Sqlite(path) => {
                let conn = sqlite::open_writer(path)?;
                let pool = ReadPool::Sqlite(sqlite::read_pool(path, SQLITE_READERS)?);
                let (writer, writer_thread) =
                    Writer::spawn(vec![WriteConn::Sqlite(conn)], hubs.clone(), cfg.retention)?;
                let watcher = follow::watch_sqlite(
                    sqlite::open_follower(path)?,
                    hubs.clone(),
                    shutdown.clone(),
                )?;
                (pool, writer, writer_thread, Some(watcher))
            }
            Location::Postgres(url) => {
                let store = postgres::Store::open(url, PG_READERS).await?;
                let pool = ReadPool::Postgres(store.clone());
                let (writer, writer_thread) = Writer::spawn(
                    (0..cfg.pg_writers.max(1))
                        .map(|_| WriteConn::postgres(store.clone()))
                        .collect(),
                    hubs.clone(),
                    cfg.retention,
                )?;
                tasks.push(tokio::spawn(follow::follow_postgres(
                    store,
                    pool.clone(),
                    hubs.clone(),
                    cfg.backstop,
                    shutdown.clone(),
                )));
                (pool, writer, writer_thread, None)
            }
        };
        tasks.push(tokio::spawn(jobs::run(
            pool.clone(),
            leadership.clone(),
            cfg.retention,
            cfg.jobs_every,
            shutdown.clone(),
        )));
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
            leadership,
            shutdown,
        });
        Ok(Self {
            listener,
            state,
            stop,
            writer_threads,
            watcher_thread,
            tasks,
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
        for task in self.tasks {
            let _ = task.await;
        }
        if let Some(watcher) = self.watcher_thread {
            let _ = watcher.join();
        }
        // The writer's PostgreSQL connections need this runtime: join it off the async threads.
        let _ = tokio::task::spawn_blocking(move || {
            for t in self.writer_threads {
                let _ = t.join();
            }
        })
        .await;
        Ok(())
    }
}
