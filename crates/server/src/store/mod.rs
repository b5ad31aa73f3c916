//! The storage seam: one SQL dialect, two drivers.
//!
//! The domain (accounts, the quota check, the event log, idempotency keys) is written once,
//! against `Sql`: a connection that runs a statement with positional parameters (`$1`, `$2`,
//! ...) and returns rows of plain values. SQLite (rusqlite, the embedded default) and PostgreSQL
//! (tokio-postgres, for several instances) both implement it, and the statements are the
//! subset both understand (`RETURNING`, `ON CONFLICT`, no `INSERT OR ...`). What only one store
//! has is asked of `dialect()` at the few places it matters: row locks, wake-ups, the kind of
//! transaction. Schemas are declared per store (their types differ) with the same numbering.
//!
//! Why not a query builder or sqlx's `Any` driver: the statements are few and plain, rusqlite
//! stays the embedded driver the design names, and this seam is small enough to read whole.

pub mod copy;
pub mod postgres;
pub mod sqlite;
mod value;

use std::path::PathBuf;

pub(crate) use value::params;
pub use value::{Cell, Param, Row};

use crate::error::StoreError;

/// Which SQL engine is on the other side of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A database connection as the domain uses it.
///
/// `sql` is a `&'static str` so that drivers can cache the prepared statement by its text.
pub trait Sql {
    fn dialect(&self) -> Dialect;
    /// Runs a statement and returns every row it produced.
    fn query(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError>;
    /// Runs a statement and returns how many rows it changed.
    fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, StoreError>;
    /// Runs statements without parameters (transaction control, schema).
    fn batch(&mut self, sql: &str) -> Result<(), StoreError>;
}

impl dyn Sql + '_ {
    /// The first row, if any.
    pub fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> Result<Option<Row>, StoreError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Exactly the first row; none is `StoreError::NotFound` naming `what`.
    pub fn query_one(
        &mut self,
        what: &'static str,
        sql: &'static str,
        params: &[Param<'_>],
    ) -> Result<Row, StoreError> {
        self.query_opt(sql, params)?
            .ok_or(StoreError::NotFound(what))
    }

    /// Runs `f` in a write transaction: committed when `f` succeeds, rolled back otherwise.
    pub fn write<T>(
        &mut self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.transaction(Access::Write, f)
    }

    /// Runs `f` in a read-only transaction: one consistent snapshot for all its reads.
    pub fn snapshot<T>(
        &mut self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.transaction(Access::Read, f)
    }

    fn transaction<T>(
        &mut self,
        access: Access,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.batch(begin(self.dialect(), access))?;
        match f(self) {
            Ok(v) => {
                // A failed COMMIT may or may not have committed (the answer was lost): never
                // a reason to run the transaction again.
                self.batch("COMMIT")
                    .map_err(|e| StoreError::CommitUnknown(e.to_string()))?;
                Ok(v)
            }
            Err(e) => {
                // The connection may be gone; the original error is the one worth reporting.
                let _ = self.batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Access {
    Read,
    Write,
}

/// SQLite takes the write lock up front (a deferred transaction that later writes can fail
/// with `SQLITE_BUSY` mid-way); PostgreSQL reads from one snapshot with REPEATABLE READ and
/// writes under READ COMMITTED with explicit row locks.
fn begin(dialect: Dialect, access: Access) -> &'static str {
    match (dialect, access) {
        (Dialect::Sqlite, Access::Write) => "BEGIN IMMEDIATE",
        (Dialect::Sqlite, Access::Read) => "BEGIN",
        (Dialect::Postgres, Access::Write) => "BEGIN",
        (Dialect::Postgres, Access::Read) => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    }
}

/// The writer's connection: its own SQLite connection, or a PostgreSQL connection driven on
/// the writer's own thread (`postgres::LocalConn`), made again when it was lost (so a lost
/// connection costs one attempt at one batch, never the writer).
pub enum WriteConn {
    Sqlite(rusqlite::Connection),
    /// Boxed: a connection with its runtime is large, and there is one per writer thread.
    Postgres(postgres::Store, Option<Box<postgres::LocalConn>>),
}

impl WriteConn {
    pub fn postgres(store: postgres::Store) -> Self {
        Self::Postgres(store, None)
    }

    pub fn with<T>(
        &mut self,
        f: impl FnOnce(&mut dyn Sql) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self {
            Self::Sqlite(conn) => f(conn),
            Self::Postgres(store, slot) => {
                if slot.as_ref().is_none_or(|c| c.is_closed()) {
                    *slot = None;
                    *slot = Some(Box::new(postgres::LocalConn::connect(store)?));
                }
                let conn = slot.as_mut().expect("connected just now");
                f(conn.as_mut())
            }
        }
    }
}

/// The connections request handlers read with.
#[derive(Clone)]
pub enum ReadPool {
    Sqlite(sqlite::ReadPool),
    Postgres(postgres::Store),
}

impl ReadPool {
    /// Runs `f` on a pooled connection on a blocking thread (the domain is synchronous).
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Sql) -> Result<T, StoreError> + Send + 'static,
    {
        let task = match self {
            Self::Sqlite(pool) => {
                let pool = pool.clone();
                tokio::task::spawn_blocking(move || f(&mut *pool.get()?))
            }
            Self::Postgres(store) => {
                let mut conn = store.conn().await?;
                tokio::task::spawn_blocking(move || f(&mut conn))
            }
        };
        task.await
            .map_err(|e| StoreError::WriteFailed(format!("read task failed: {e}")))?
    }
}

/// Where the data lives, as given by `--db` / `QUOTABELL_DB`: a `postgres://` (or
/// `postgresql://`) URL, or else a SQLite file path.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(postgres::Url),
}

impl Location {
    pub fn parse(text: &str) -> Self {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Self::Postgres(postgres::Url::new(text))
        } else {
            Self::Sqlite(PathBuf::from(text))
        }
    }
}

impl std::str::FromStr for Location {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::parse(s))
    }
}

/// Shown in logs and errors: a URL without its password.
impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "{}", p.display()),
            Self::Postgres(u) => write!(f, "{u}"),
        }
    }
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Opens a connection for an operator command (one process, a few statements), migrating the
/// schema as needed. PostgreSQL connections need a Tokio runtime: `rt` drives them.
pub fn open_command(
    location: &Location,
    rt: &tokio::runtime::Handle,
) -> Result<Box<dyn Sql + Send>, StoreError> {
    match location {
        Location::Sqlite(path) => Ok(Box::new(sqlite::open_writer(path)?)),
        Location::Postgres(url) => {
            Ok(Box::new(rt.block_on(async {
                postgres::Store::open(url, 1).await?.conn().await
            })?))
        }
    }
}
