//! The embedded store: one SQLite file. Pragmas, migrations, the read pool, and `Sql` for a
//! rusqlite connection.
//!
//! Writes go through one connection owned by the writer thread (see `writer`); reads use a small
//! pool so that handlers never wait behind a write transaction (WAL lets readers run alongside).

use std::path::Path;
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql};
use rusqlite_migration::{M, Migrations};

use super::{Cell, Dialect, Param, Row, Sql};
use crate::error::StoreError;

pub type ReadPool = r2d2::Pool<SqliteConnectionManager>;

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!("../migrations/sqlite/001_init.sql")),
        M::up(include_str!("../migrations/sqlite/002_idempotency.sql")),
        M::up(include_str!(
            "../migrations/sqlite/003_event_counter_trigger.sql"
        )),
    ])
}

/// Pragmas every connection needs. `synchronous = NORMAL` in WAL mode keeps every committed
/// transaction across a process crash (`kill -9`); only a power loss can drop the last commits.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(STATEMENTS);
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;",
    )
}

/// Opens the database for writing, creating and migrating it as needed.
pub fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let mut conn = Connection::open(path)?;
    configure(&conn)?;
    migrations().to_latest(&mut conn)?;
    Ok(conn)
}

/// A connection of its own for following other connections' commits (`live::follow`).
pub fn open_follower(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(STATEMENTS);
    Ok(conn)
}

/// Prepared statements kept per connection: more than the domain has, so none is re-prepared.
const STATEMENTS: usize = 64;

/// A pool of read connections to an already migrated database.
pub fn read_pool(path: &Path, size: u32) -> Result<ReadPool, StoreError> {
    let manager = SqliteConnectionManager::file(path).with_init(|c| {
        c.busy_timeout(Duration::from_secs(5))?;
        c.set_prepared_statement_cache_capacity(STATEMENTS);
        c.execute_batch("PRAGMA foreign_keys = ON;")
    });
    Ok(r2d2::Pool::builder().max_size(size).build(manager)?)
}

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Param::Null => ToSqlOutput::Owned(rusqlite::types::Value::Null),
            Param::Int(v) => ToSqlOutput::from(v),
            Param::Bool(v) => ToSqlOutput::from(v),
            Param::Text(v) => ToSqlOutput::from(v),
            Param::Blob(v) => ToSqlOutput::from(v),
            Param::Ints(_) => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    "SQLite has no array parameters".into(),
                ));
            }
        })
    }
}

fn cell(v: ValueRef<'_>) -> Cell {
    match v {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(i) => Cell::Int(i),
        // No column is REAL; a float would be a foreign database, read as text to be refused.
        ValueRef::Real(f) => Cell::Text(f.to_string()),
        ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
    }
}

/// Binds `$1`, `$2`, ... by position. SQLite numbers `$NAME` parameters in order of first
/// appearance, so the statements introduce them in order; debug builds check it.
fn bind(stmt: &mut rusqlite::CachedStatement<'_>, params: &[Param<'_>]) -> rusqlite::Result<()> {
    for (i, p) in params.iter().enumerate() {
        debug_assert_eq!(
            stmt.parameter_name(i + 1),
            Some(format!("${}", i + 1).as_str()),
            "parameters must appear in order"
        );
        stmt.raw_bind_parameter(i + 1, p)?;
    }
    Ok(())
}

impl Sql for Connection {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn query(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        let mut stmt = self.prepare_cached(sql)?;
        bind(&mut stmt, params)?;
        let width = stmt.column_count();
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut cells = Vec::with_capacity(width);
            for i in 0..width {
                cells.push(cell(r.get_ref(i)?));
            }
            out.push(Row(cells));
        }
        Ok(out)
    }

    fn execute(&mut self, sql: &'static str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let mut stmt = self.prepare_cached(sql)?;
        bind(&mut stmt, params)?;
        Ok(stmt.raw_execute()? as u64)
    }

    fn batch(&mut self, sql: &str) -> Result<(), StoreError> {
        Ok(self.execute_batch(sql)?)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        super::migrations().validate().unwrap();
    }
}
