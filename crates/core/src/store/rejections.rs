//! The run of rejected builds the rejection notices are spaced over (`policy::RejectionRun`):
//! kept per account, moved by each new event in event order inside the ingest transaction.

use rusqlite::{OptionalExtension, Transaction, params};

use super::Result;
use crate::policy::RejectionRun;
use crate::protocol::kind;

/// The account's run as one ingest transaction moves it. Whether a run is open is read once,
/// so the accepted builds of a catch-up (most of its events) cost no statement of their own.
pub(super) struct Runs {
    account: i64,
    open: bool,
}

impl Runs {
    pub fn load(tx: &Transaction<'_>, account: i64) -> Result<Self> {
        let open = tx
            .prepare_cached("SELECT 1 FROM rejection_runs WHERE account_id = ?1")?
            .query_row([account], |_| Ok(()))
            .optional()?
            .is_some();
        Ok(Self { account, open })
    }

    /// Moves the run for one newly stored event: an accepted build or a period roll ends it, a
    /// rejection at `at` extends it (or starts one). Returns the run a rejection belongs to.
    pub fn track(
        &mut self,
        tx: &Transaction<'_>,
        event_kind: &str,
        at: &str,
    ) -> Result<Option<RejectionRun>> {
        match event_kind {
            kind::BUILD_ACCEPTED | kind::QUOTA_RESET if self.open => {
                tx.prepare_cached("DELETE FROM rejection_runs WHERE account_id = ?1")?
                    .execute([self.account])?;
                self.open = false;
                Ok(None)
            }
            kind::BUILD_REJECTED => {
                tx.prepare_cached(
                    "INSERT INTO rejection_runs (account_id, first_at, count) VALUES (?1, ?2, 1)
                     ON CONFLICT (account_id) DO UPDATE SET count = count + 1",
                )?
                .execute(params![self.account, at])?;
                self.open = true;
                Ok(tx
                    .prepare_cached(
                        "SELECT first_at, count FROM rejection_runs WHERE account_id = ?1",
                    )?
                    .query_row([self.account], |r| {
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
}
