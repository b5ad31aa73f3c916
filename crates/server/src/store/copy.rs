//! `quotabell-server migrate --from X --to Y`: every table of one store copied into another,
//! in one transaction on the target, ids kept (event ids and cursors stay valid, and so does
//! every client's `Last-Event-ID` and `Stream-Epoch`).

use super::{Cell, Dialect, Param, Sql};
use crate::error::StoreError;

/// One table: how to read it all (parents before children) and how to write one row.
struct Table {
    name: &'static str,
    select: &'static str,
    insert: &'static str,
}

const TABLES: [Table; 7] = [
    Table {
        name: "plans",
        select: "SELECT id, name, hard_limit, builds_per_period, applications FROM plans ORDER BY id",
        // The schema seeds the standard plans: the source's version of them wins.
        insert: "INSERT INTO plans (id, name, hard_limit, builds_per_period, applications)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name,
                     hard_limit = excluded.hard_limit,
                     builds_per_period = excluded.builds_per_period,
                     applications = excluded.applications",
    },
    Table {
        name: "users",
        select: "SELECT id, email, token_hash, plan_id, period_start, period_end, builds_used,
                        last_event_id, pruned_through, stream_epoch, created_at
                 FROM users ORDER BY id",
        insert: "INSERT INTO users (id, email, token_hash, plan_id, period_start, period_end,
                     builds_used, last_event_id, pruned_through, stream_epoch, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    },
    Table {
        name: "apps",
        select: "SELECT user_id, name, created_at FROM apps ORDER BY user_id, name",
        insert: "INSERT INTO apps (user_id, name, created_at) VALUES ($1, $2, $3)",
    },
    Table {
        name: "builds",
        select: "SELECT id, user_id, app, version, commit_sha, overage, period_start, created_at
                 FROM builds ORDER BY id",
        insert: "INSERT INTO builds (id, user_id, app, version, commit_sha, overage, period_start,
                     created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    },
    Table {
        name: "events",
        select: "SELECT user_id, id, type, data, build_id, created_at FROM events
                 ORDER BY user_id, id",
        insert: "INSERT INTO events (user_id, id, type, data, build_id, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
    },
    Table {
        name: "crossings",
        select: "SELECT user_id, metric, period_start, quota_limit, threshold FROM crossings
                 ORDER BY user_id",
        insert: "INSERT INTO crossings (user_id, metric, period_start, quota_limit, threshold)
                 VALUES ($1, $2, $3, $4, $5)",
    },
    Table {
        name: "idempotency_keys",
        select: "SELECT user_id, key, fingerprint, outcome, created_at FROM idempotency_keys
                 ORDER BY user_id, key",
        insert: "INSERT INTO idempotency_keys (user_id, key, fingerprint, outcome, created_at)
                 VALUES ($1, $2, $3, $4, $5)",
    },
];

fn param(cell: &Cell) -> Param<'_> {
    match cell {
        Cell::Null => Param::Null,
        Cell::Int(v) => Param::Int(*v),
        Cell::Bool(v) => Param::Bool(*v),
        Cell::Text(v) => Param::Text(v),
        Cell::Blob(v) => Param::Blob(v),
    }
}

/// Copies every row of `from` into `to`, which must have no users yet; returns the row count.
/// `from` is read in one snapshot, `to` written in one transaction: a failure leaves it as it
/// was.
pub fn all(from: &mut dyn Sql, to: &mut dyn Sql) -> Result<u64, StoreError> {
    let tables = from.snapshot(|from| {
        TABLES
            .iter()
            .map(|t| Ok((t, from.query(t.select, &[])?)))
            .collect::<Result<Vec<_>, StoreError>>()
    })?;
    to.write(|to| {
        if to.query_opt("SELECT 1 FROM users LIMIT 1", &[])?.is_some() {
            return Err(StoreError::TargetNotEmpty);
        }
        let mut copied = 0;
        for (table, rows) in &tables {
            for row in rows {
                let params: Vec<Param<'_>> = row.0.iter().map(param).collect();
                to.execute(table.insert, &params)?;
                copied += 1;
            }
            tracing::info!(table = table.name, rows = rows.len(), "copied");
        }
        if to.dialect() == Dialect::Postgres {
            // Ids were given explicitly: new rows must be numbered after them.
            to.batch(
                "SELECT setval(pg_get_serial_sequence('users', 'id'), COALESCE(max(id), 0) + 1, false) FROM users;
                 SELECT setval(pg_get_serial_sequence('builds', 'id'), COALESCE(max(id), 0) + 1, false) FROM builds;",
            )?;
        }
        Ok(copied)
    })
}
