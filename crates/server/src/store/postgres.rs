//! The shared store: PostgreSQL, for several stateless instances. Connecting with clear errors,
//! migrations, the pool, and `Sql` over a pooled tokio-postgres client.
//!
//! The domain is synchronous (it runs on the writer thread and in `spawn_blocking`), so a
//! `PgConn` drives each statement to completion with the runtime handle it was created on; the
//! connection tasks themselves run on that runtime's workers.

use std::fmt;
use std::str::FromStr;

use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Config, NoTls};

use super::{Cell, Dialect, Param, Row, Sql};
use crate::error::StoreError;

/// The schema, in order; the version is the number of files applied (as SQLite's
/// `user_version` counts them for rusqlite_migration).
const MIGRATIONS: [&str; 3] = [
    include_str!("../migrations/postgres/001_init.sql"),
    include_str!("../migrations/postgres/002_idempotency.sql"),
    include_str!("../migrations/postgres/003_event_counter_trigger.sql"),
];

/// Advisory lock keys (one 64-bit namespace per database): schema migration at start-up, and
/// the leader of background jobs (see `leader`).
pub const MIGRATION_LOCK: i64 = 0x5142_0001;
pub const LEADER_LOCK: i64 = 0x5142_0002;

/// How the dedicated connections name themselves (`pg_stat_activity.application_name`), so an
/// operator (or a test) can tell them from the pool's.
pub const LISTENER_NAME: &str = "quotabell listener";
pub const LEADER_NAME: &str = "quotabell leader";

/// The channel `NOTIFY` wakes instances on (see `live::follow`).
pub const WAKE_CHANNEL: &str = "quotabell_events";

/// A `postgres://` URL. Its `Display` leaves the password out, so it can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Url(String);

impl Url {
    pub fn new(text: &str) -> Self {
        Self(text.to_owned())
    }

    pub fn config(&self) -> Result<Config, StoreError> {
        Config::from_str(&self.0).map_err(|e| StoreError::Connect {
            location: self.to_string(),
            reason: format!("not a valid PostgreSQL URL ({e})"),
        })
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(cfg) = Config::from_str(&self.0) else {
            return f.write_str("postgres://(unreadable URL)");
        };
        let user = cfg.get_user().unwrap_or("");
        let host = match cfg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = cfg.get_ports().first().copied().unwrap_or(5432);
        let db = cfg.get_dbname().unwrap_or(user);
        write!(f, "postgres://{user}@{host}:{port}/{db}")
    }
}

/// What a failed connection attempt means, in the words an operator needs.
fn connect_error(url: &Url, e: &tokio_postgres::Error) -> StoreError {
    let reason = match e.code() {
        Some(c) if *c == SqlState::INVALID_PASSWORD => "wrong password".to_owned(),
        Some(c) if *c == SqlState::INVALID_CATALOG_NAME => "the database does not exist".to_owned(),
        Some(c) if *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
            "authentication refused".to_owned()
        }
        _ => String::new(),
    };
    let detail = match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => std::error::Error::source(e).map_or_else(|| e.to_string(), |s| format!("{e}: {s}")),
    };
    StoreError::Connect {
        location: url.to_string(),
        reason: if reason.is_empty() {
            detail
        } else {
            format!("{reason} ({detail})")
        },
    }
}

/// A connected, migrated PostgreSQL database and its connection pool.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    url: Url,
}

impl Store {
    /// Connects once (so that a bad URL, password or database fails here, clearly), brings the
    /// schema up to date, and builds a pool of `size` connections.
    pub async fn open(url: &Url, size: usize) -> Result<Self, StoreError> {
        let config = url.config()?;
        let (mut client, conn) = config
            .connect(NoTls)
            .await
            .map_err(|e| connect_error(url, &e))?;
        let task = tokio::spawn(conn);
        migrate(&mut client).await?;
        drop(client);
        let _ = task.await;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        Ok(Self {
            pool,
            url: url.clone(),
        })
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// A pooled connection for synchronous use on a blocking thread.
    pub async fn conn(&self) -> Result<PgConn, StoreError> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        Ok(PgConn {
            client,
            rt: tokio::runtime::Handle::current(),
        })
    }

    /// A connection of its own, outside the pool (the listener, the leader's lock): its
    /// messages and session state belong to one task.
    pub async fn dedicated(
        &self,
        name: &str,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
        ),
        StoreError,
    > {
        let mut config = self.url.config()?;
        config.application_name(name);
        config
            .connect(NoTls)
            .await
            .map_err(|e| connect_error(&self.url, &e))
    }
}

/// Applies the migrations this build knows and the database lacks, under an advisory lock so
/// that instances starting together migrate once. A database migrated by a newer build is
/// refused: this build would misread it.
async fn migrate(client: &mut tokio_postgres::Client) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS quotabell_schema (version BIGINT NOT NULL)")
        .await?;
    let found: i64 = match tx
        .query_opt("SELECT version FROM quotabell_schema", &[])
        .await?
    {
        Some(row) => row.get(0),
        None => {
            tx.execute("INSERT INTO quotabell_schema (version) VALUES (0)", &[])
                .await?;
            0
        }
    };
    let known = MIGRATIONS.len() as i64;
    if found > known {
        return Err(StoreError::SchemaTooNew { found, known });
    }
    for sql in &MIGRATIONS[found as usize..] {
        tx.batch_execute(sql).await?;
    }
    tx.execute("UPDATE quotabell_schema SET version = $1", &[&known])
        .await?;
    tx.commit().await?;
    Ok(())
}

/// A pooled client, used synchronously.
pub struct PgConn {
    client: deadpool_postgres::Object,
    rt: tokio::runtime::Handle,
}

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Param::Null => Ok(IsNull::Yes),
            // The schema's integers are BIGINT, but a literal context (`LIMIT`, a comparison
            // with an INTEGER expression) may ask for a narrower one.
            Param::Int(v) if *ty == Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
            Param::Int(v) if *ty == Type::INT2 => i16::try_from(v)?.to_sql(ty, out),
            // SQLite's booleans are integers (a copy from SQLite binds them so).
            Param::Int(v) if *ty == Type::BOOL => (v != 0).to_sql(ty, out),
            Param::Int(v) => v.to_sql(ty, out),
            Param::Bool(v) => v.to_sql(ty, out),
            Param::Text(v) => v.to_sql(ty, out),
            Param::Blob(v) => v.to_sql(ty, out),
            Param::Ints(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty)
            || <i32 as ToSql>::accepts(ty)
            || <i16 as ToSql>::accepts(ty)
            || <bool as ToSql>::accepts(ty)
            || <&str as ToSql>::accepts(ty)
            || <&[u8] as ToSql>::accepts(ty)
            || <&[i64] as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

fn row(r: &tokio_postgres::Row) -> Result<Row, StoreError> {
    let mut cells = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let ty = col.type_();
        let cell = if *ty == Type::INT8 {
            r.try_get::<_, Option<i64>>(i)?.map(Cell::Int)
        } else if *ty == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)?.map(|v| Cell::Int(v.into()))
        } else if *ty == Type::INT2 {
            r.try_get::<_, Option<i16>>(i)?.map(|v| Cell::Int(v.into()))
        } else if *ty == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)?.map(Cell::Bool)
        } else if *ty == Type::VOID {
            None
        } else if *ty == Type::BYTEA {
            r.try_get::<_, Option<Vec<u8>>>(i)?.map(Cell::Blob)
        } else {
            r.try_get::<_, Option<String>>(i)?.map(Cell::Text)
        };
        cells.push(cell.unwrap_or(Cell::Null));
    }
    Ok(Row(cells))
}

impl PgConn {
    fn refs<'p>(params: &'p [Param<'_>]) -> Vec<&'p (dyn ToSql + Sync)> {
        params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
    }
}

impl Sql for PgConn {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn query(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        let client = &self.client;
        let refs = Self::refs(params);
        let rows = self.rt.block_on(async {
            let stmt = client.prepare_cached(sql).await?;
            client.query(&stmt, &refs).await
        })?;
        rows.iter().map(row).collect()
    }

    fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let client = &self.client;
        let refs = Self::refs(params);
        Ok(self.rt.block_on(async {
            let stmt = client.prepare_cached(sql).await?;
            client.execute(&stmt, &refs).await
        })?)
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        let client = &self.client;
        Ok(self.rt.block_on(client.batch_execute(sql))?)
    }
}

/// A connection whose protocol work runs on the thread that uses it: a current-thread runtime
/// of its own drives the connection inside each `block_on`, so a statement costs no hop to
/// another thread and back (the writer threads run thousands of statements a second; a pooled
/// client's connection task runs on the shared runtime's workers).
pub struct LocalConn {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
    statements: std::collections::HashMap<&'static str, tokio_postgres::Statement>,
}

impl LocalConn {
    pub fn connect(store: &Store) -> Result<Self, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Pool(format!("a writer runtime: {e}")))?;
        let config = store.url.config()?;
        let (client, conn) = rt
            .block_on(config.connect(NoTls))
            .map_err(|e| connect_error(&store.url, &e))?;
        rt.spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            rt,
            client,
            statements: std::collections::HashMap::new(),
        })
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    fn statement(&mut self, sql: &'static str) -> Result<tokio_postgres::Statement, StoreError> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self.rt.block_on(self.client.prepare(sql))?;
        self.statements.insert(sql, st.clone());
        Ok(st)
    }
}

impl Sql for LocalConn {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn query(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        let st = self.statement(sql)?;
        let refs = PgConn::refs(params);
        let rows = self.rt.block_on(self.client.query(&st, &refs))?;
        rows.iter().map(row).collect()
    }

    fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let st = self.statement(sql)?;
        let refs = PgConn::refs(params);
        Ok(self.rt.block_on(self.client.execute(&st, &refs))?)
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.rt.block_on(self.client.batch_execute(sql))?)
    }
}

/// A conflict with another transaction (serialization failure, deadlock): the same
/// transaction tried again can succeed at once.
pub fn is_conflict(e: &StoreError) -> bool {
    matches!(e, StoreError::Postgres(pg) if matches!(
        pg.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    ))
}

/// The connection was lost or could not be made (the server restarted, the backend was
/// terminated): nothing of an uncommitted transaction remains, so it can be tried again on a
/// new connection.
pub fn is_disconnect(e: &StoreError) -> bool {
    match e {
        StoreError::Postgres(pg) => {
            pg.is_closed()
                || match pg.code() {
                    // Class 08: connection exception; 57P01..57P03: the server is shutting down
                    // or starting up; none: an I/O error below the protocol.
                    Some(c) => {
                        c.code().starts_with("08")
                            || *c == SqlState::ADMIN_SHUTDOWN
                            || *c == SqlState::CRASH_SHUTDOWN
                            || *c == SqlState::CANNOT_CONNECT_NOW
                    }
                    None => true,
                }
        }
        StoreError::Pool(_) | StoreError::Connect { .. } => true,
        _ => false,
    }
}
