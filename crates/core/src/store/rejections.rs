//! The run of rejected builds the rejection notices are spaced over (`policy::RejectionRun`):
//! kept per account, moved by each new event in event order inside the ingest transaction.

use rusqlite::{OptionalExtension, Transaction, params};

use super::Result;
use crate::policy::RejectionRun;
use crate::protocol::kind;

/// Moves the account's run for one newly stored event: an accepted build or a period roll ends
/// it, a rejection at `at` extends it (or starts one). Returns the run a rejection belongs to.
pub(super) fn track(
    tx: &Transaction<'_>,
    account: i64,
    event_kind: &str,
    at: &str,
) -> Result<Option<RejectionRun>> {
    match event_kind {
        kind::BUILD_ACCEPTED | kind::QUOTA_RESET => {
            tx.prepare_cached("DELETE FROM rejection_runs WHERE account_id = ?1")?
                .execute([account])?;
            Ok(None)
        }
        kind::BUILD_REJECTED => {
            tx.prepare_cached(
                "INSERT INTO rejection_runs (account_id, first_at, count) VALUES (?1, ?2, 1)
                 ON CONFLICT (account_id) DO UPDATE SET count = count + 1",
            )?
            .execute(params![account, at])?;
            Ok(tx
                .prepare_cached("SELECT first_at, count FROM rejection_runs WHERE account_id = ?1")?
                .query_row([account], |r| {
                    Ok(RejectionRun {
                        first_at: r.get(0)?,
                        count: r.get(1)?,
                    })
                })
                .optional()?)
        }
        _ => Ok(None),
    }
}
