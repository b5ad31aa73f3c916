//! Opening the SQLite file: pragmas, migrations and the read pool.
//!
//! Writes go through one connection owned by the writer thread (see `writer`); reads use a small
//! pool so that handlers never wait behind a write transaction (WAL lets readers run alongside).

use std::path::Path;
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};

use crate::error::StoreError;

pub type ReadPool = r2d2::Pool<SqliteConnectionManager>;

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!("migrations/001_init.sql")),
        M::up(include_str!("migrations/002_idempotency.sql")),
    ])
}

/// Pragmas every connection needs. `synchronous = NORMAL` in WAL mode keeps every committed
/// transaction across a process crash (`kill -9`); only a power loss can drop the last commits.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
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

/// A pool of read connections to an already migrated database.
pub fn read_pool(path: &Path, size: u32) -> Result<ReadPool, StoreError> {
    let manager = SqliteConnectionManager::file(path).with_init(|c| {
        c.busy_timeout(Duration::from_secs(5))?;
        c.execute_batch("PRAGMA foreign_keys = ON;")
    });
    Ok(r2d2::Pool::builder().max_size(size).build(manager)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        super::migrations().validate().unwrap();
    }
}
