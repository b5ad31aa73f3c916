//! The local cache: one SQLite file per profile (WAL, embedded migrations).
//!
//! Writes that belong together share a transaction: an event, the cursor that follows it, the
//! rows it projects to (builds, quota snapshots, folded usage) and the notifications it decides
//! commit together or not at all. A process killed at any point resumes from a consistent
//! cursor with no event stored twice and no notification decided twice.

mod queries;
mod rejections;
mod states;
mod watch;

pub use queries::{BuildFilter, BuildRow, EventRow, NotificationRow, UsageSample};
pub use watch::{Foresee, ForesightData};

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use rusqlite_migration::{M, Migrations};
use serde::Deserialize;
use serde_json::Value;

use crate::ipc::{BuildStatus, Connection as ConnectionState, NotificationState};
use crate::policy::{self, Decision, Observed, Settings};
use crate::protocol::{Account, Build, Period, Plan, QuotaObservation, Usage, WireEvent, kind};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("local database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("local database migration: {0}")]
    Migration(#[from] rusqlite_migration::Error),
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("stored JSON is damaged: {0}")]
    Json(#[from] serde_json::Error),
    #[error("another account is already named {0:?}: choose another name")]
    NameTaken(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub struct Store {
    conn: Connection,
}

/// An account as cached.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountRow {
    pub id: i64,
    /// What the user calls it: unique in the profile (`--account NAME`, the switcher).
    pub name: String,
    pub origin: String,
    pub server_url: String,
    pub user_id: String,
    pub email: String,
    pub plan: Plan,
}

impl AccountRow {
    /// The keychain entry name: the token is filed under the server origin and the user.
    pub fn keychain_key(&self) -> String {
        Self::keychain_key_of(&self.origin, &self.user_id)
    }

    pub fn keychain_key_of(origin: &str, user_id: &str) -> String {
        format!("{origin}#{user_id}")
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncState {
    pub cursor: Option<String>,
    pub epoch: Option<String>,
    pub usage: Option<Usage>,
    pub builds_cursor: i64,
    /// The cached builds are complete up to the event cursor: later ones come as events.
    pub builds_complete: bool,
    pub last_synced_at: Option<i64>,
    pub connection: ConnectionState,
    pub connection_since: Option<i64>,
    pub connection_detail: Option<String>,
}

/// An event as received, before it is stored.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub id: String,
    pub kind: String,
    pub data: String,
}

/// The one conversion from the wire: `/events` pages and the first event of a first sync.
/// (The stream's parser hands over its events already in this form.)
impl From<WireEvent> for Incoming {
    fn from(e: WireEvent) -> Self {
        Self {
            id: e.id,
            kind: e.kind,
            data: Box::<str>::from(e.data).into_string(),
        }
    }
}

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Stream,
    CatchUp,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Self::Stream => "stream",
            Self::CatchUp => "catchup",
        }
    }
}

/// What an ingest stored.
#[derive(Debug, Default)]
pub struct Ingested {
    pub stored: usize,
    pub duplicates: usize,
    pub parse_failures: usize,
    /// `build.accepted` events stored, not counting history from before sign-in.
    pub builds: u64,
    /// Notifications decided in this transaction and to be shown now.
    pub pending: Vec<NotificationRow>,
}

/// The policy as the store calls it, inside the transaction.
pub type Decide<'a> = dyn FnMut(&Observed<'_>, &mut dyn FnMut(&str) -> bool) -> Vec<Decision> + 'a;
pub type DecideUsage<'a> = dyn FnMut(&Usage, &mut dyn FnMut(&str) -> bool) -> Vec<Decision> + 'a;

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!("001_init.sql")),
        M::up(include_str!("002_notification_in_flight.sql")),
        M::up(include_str!("003_watch.sql")),
        M::up(include_str!("004_account_names.sql")),
        M::up(include_str!("005_builds_from_events.sql")),
    ])
}

impl Store {
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        // WAL + NORMAL: a committed transaction survives the process being killed.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        )?;
        migrations().to_latest(&mut conn)?;
        Ok(Self { conn })
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    // ---- accounts -------------------------------------------------------------------------

    /// Records the account a login validated; returns its local id. A new account is named
    /// `name`, else its email, else (when another account has that email) the email and the
    /// server's host; signing in again to a known account keeps its name unless one is given.
    pub fn upsert_account(
        &mut self,
        server_url: &str,
        origin: &str,
        acct: &Account,
        name: Option<&str>,
        now: i64,
    ) -> Result<i64> {
        let plan = serde_json::to_string(&acct.plan)?;
        let tx = self.conn.transaction()?;
        let current: Option<String> = tx
            .query_row(
                "SELECT name FROM accounts WHERE origin = ?1 AND user_id = ?2",
                params![origin, acct.id],
                |r| r.get(0),
            )
            .optional()?;
        let taken = |candidate: &str| name_taken(&tx, candidate, origin, &acct.id);
        let name = match (name, current) {
            (Some(n), _) => {
                if taken(n)? {
                    return Err(StoreError::NameTaken(n.to_owned()));
                }
                n.to_owned()
            }
            (None, Some(current)) => current,
            (None, None) => {
                let host = origin.split_once("://").map_or(origin, |(_, h)| h);
                let with_host = format!("{} ({host})", acct.email);
                if !taken(&acct.email)? {
                    acct.email.clone()
                } else if !taken(&with_host)? {
                    with_host
                } else {
                    return Err(StoreError::NameTaken(with_host));
                }
            }
        };
        tx.execute(
            "INSERT INTO accounts (origin, server_url, user_id, email, plan, created_at, name)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (origin, user_id) DO UPDATE
                 SET server_url = ?2, email = ?4, plan = ?5, name = ?7",
            params![origin, server_url, acct.id, acct.email, plan, now, name],
        )?;
        let id: i64 = tx.query_row(
            "SELECT id FROM accounts WHERE origin = ?1 AND user_id = ?2",
            params![origin, acct.id],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT OR IGNORE INTO sync_state (account_id) VALUES (?1)",
            [id],
        )?;
        // A new token: an account the server had signed out is no longer (so whatever starts
        // engines, now or at the next launch, starts this one again).
        tx.execute(
            "UPDATE sync_state SET connection = ?2, connection_detail = NULL
             WHERE account_id = ?1 AND connection = ?3",
            params![id, ConnectionState::Offline, ConnectionState::SignedOut],
        )?;
        tx.commit()?;
        Ok(id)
    }

    /// Whether an account other than `origin`'s `user_id` is called `name`.
    pub fn name_taken(&self, name: &str, origin: &str, user_id: &str) -> Result<bool> {
        name_taken(&self.conn, name, origin, user_id)
    }

    /// Every account signed in, in the order they were added.
    pub fn accounts(&self) -> Result<Vec<AccountRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, name, origin, server_url, user_id, email, plan FROM accounts ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
            ))
        })?;
        rows.map(|row| {
            let (id, name, origin, server_url, user_id, email, plan) = row?;
            Ok(AccountRow {
                id,
                name,
                origin,
                server_url,
                user_id,
                email,
                plan: serde_json::from_str(&plan)?,
            })
        })
        .collect()
    }

    pub fn account(&self, id: i64) -> Result<Option<AccountRow>> {
        Ok(self.accounts()?.into_iter().find(|a| a.id == id))
    }

    /// The account a user means by `selector`: its local id, its name, or its email when only
    /// one account has it.
    pub fn find_account(&self, selector: &str) -> Result<Option<AccountRow>> {
        let accounts = self.accounts()?;
        let selector = selector.trim();
        if let Some(a) = accounts
            .iter()
            .find(|a| a.name == selector || selector.parse() == Ok(a.id))
        {
            return Ok(Some(a.clone()));
        }
        let mut by_email = accounts.into_iter().filter(|a| a.email == selector);
        Ok(match (by_email.next(), by_email.next()) {
            (Some(a), None) => Some(a),
            _ => None,
        })
    }

    pub fn account_count(&self) -> Result<usize> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM accounts")?
            .query_row([], |r| r.get(0))?;
        Ok(n as usize)
    }

    /// Forgets an account and everything cached for it.
    pub fn delete_account(&mut self, account: i64) -> Result<()> {
        self.conn
            .execute("DELETE FROM accounts WHERE id = ?1", [account])?;
        Ok(())
    }

    // ---- sync state -----------------------------------------------------------------------

    pub fn sync_state(&self, account: i64) -> Result<SyncState> {
        let s = self
            .conn
            .query_row(
                "SELECT cursor, epoch, usage, builds_cursor, last_synced_at, connection,
                        connection_since, connection_detail, builds_complete
                 FROM sync_state WHERE account_id = ?1",
                [account],
                |r| {
                    Ok((
                        SyncState {
                            cursor: r.get(0)?,
                            epoch: r.get(1)?,
                            usage: None,
                            builds_cursor: r.get(3)?,
                            last_synced_at: r.get(4)?,
                            connection: r.get(5)?,
                            connection_since: r.get(6)?,
                            connection_detail: r.get(7)?,
                            builds_complete: r.get(8)?,
                        },
                        r.get::<_, Option<String>>(2)?,
                    ))
                },
            )
            .optional()?;
        let Some((mut state, usage)) = s else {
            return Ok(SyncState::default());
        };
        state.usage = usage.map(|u| serde_json::from_str(&u)).transpose()?;
        Ok(state)
    }

    /// Records the connection state (for `status` and the tray), with the time it began.
    pub fn set_connection(
        &self,
        account: i64,
        state: ConnectionState,
        detail: Option<&str>,
        now: i64,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE sync_state SET connection = ?2, connection_detail = ?3,
                 connection_since = CASE WHEN connection = ?2 THEN connection_since ELSE ?4 END
             WHERE account_id = ?1",
            params![account, state, detail, now],
        )?;
        Ok(())
    }

    pub fn mark_synced(&self, account: i64, now: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE sync_state SET last_synced_at = ?2 WHERE account_id = ?1",
            params![account, now],
        )?;
        Ok(())
    }

    /// Starts over from `usage`: the cursor moves to its newest event and epoch, cached builds
    /// are dropped (they are synced again), and one history-gap entry says why.
    pub fn resync(
        &mut self,
        account: i64,
        usage: &Usage,
        reason: &str,
        detail: &str,
        now: i64,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO history_gaps (account_id, at, reason, detail) VALUES (?1, ?2, ?3, ?4)",
            params![account, now, reason, detail],
        )?;
        tx.execute(
            "DELETE FROM builds WHERE account_id = ?1 AND status <> ?2",
            params![account, BuildStatus::Rejected],
        )?;
        // What happened in the gap is unknown: a run of rejections starts over.
        tx.execute(
            "DELETE FROM rejection_runs WHERE account_id = ?1",
            [account],
        )?;
        tx.execute(
            "UPDATE sync_state SET cursor = ?2, epoch = ?3, builds_cursor = 0, builds_complete = 0,
                 history_until = NULL
             WHERE account_id = ?1",
            params![account, usage.last_event_id, usage.stream_epoch],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Records the newest event id at sign-in for an account that has not synced yet: events up
    /// to it are history (stored, not notified). `"0"` (an empty log) marks nothing.
    pub fn mark_sign_in(&self, account: i64, last_event_id: &str) -> Result<()> {
        let history = (last_event_id != "0").then_some(last_event_id);
        self.conn.execute(
            "UPDATE sync_state SET history_until = ?2 WHERE account_id = ?1 AND cursor IS NULL",
            params![account, history],
        )?;
        Ok(())
    }

    /// Marks the events up to `last_id` as history from before sign-in (stored, not notified).
    pub fn set_history_until(&self, account: i64, last_id: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE sync_state SET history_until = ?2 WHERE account_id = ?1",
            params![account, last_id],
        )?;
        Ok(())
    }

    /// Sets the first cursor of an account whose server has no events yet.
    pub fn start_cursor(&self, account: i64, usage: &Usage) -> Result<()> {
        self.conn.execute(
            "UPDATE sync_state SET cursor = ?2, epoch = ?3 WHERE account_id = ?1 AND cursor IS NULL",
            params![account, usage.last_event_id, usage.stream_epoch],
        )?;
        Ok(())
    }

    // ---- ingest ---------------------------------------------------------------------------

    /// Stores events in order, moves the cursor to the last one and records what the policy
    /// decides, all in one transaction. Events already stored are skipped.
    pub fn ingest(
        &mut self,
        account: i64,
        epoch: &str,
        events: &[Incoming],
        source: Source,
        now: i64,
        decide: &mut Decide<'_>,
    ) -> Result<Ingested> {
        let tx = self.conn.transaction()?;
        let mut out = Ingested::default();
        let mut history_until: Option<String> = tx
            .prepare_cached("SELECT history_until FROM sync_state WHERE account_id = ?1")?
            .query_row([account], |r| r.get(0))
            .optional()?
            .flatten();
        let mut last_new: Option<&str> = None;
        let mut runs = rejections::Runs::load(&tx, account)?;
        let mut usage = UsageFold::default();
        for ev in events {
            // Ids are compared as numbers: the event named by `history_until` may never come
            // (a resync, or an event committed between `/usage` and the first page), and an
            // equality test would then keep every later event unannounced.
            let (before_sign_in, reached) = match history_until.as_deref() {
                None => (false, false),
                Some(h) => match (ev.id.parse::<u64>(), h.parse::<u64>()) {
                    (Ok(id), Ok(h)) => (id <= h, id >= h),
                    _ => (true, ev.id == h),
                },
            };
            if reached {
                history_until = None;
                tx.execute(
                    "UPDATE sync_state SET history_until = NULL WHERE account_id = ?1",
                    [account],
                )?;
            }
            let parsed: std::result::Result<Value, _> = serde_json::from_str(&ev.data);
            let parse_error = parsed.as_ref().err().map(|e| e.to_string());
            let inserted = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO events (account_id, epoch, event_id, type, data, parse_error, source, received_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![account, epoch, ev.id, ev.kind, ev.data, parse_error, source.as_str(), now])?;
            if inserted == 0 {
                out.duplicates += 1;
                continue;
            }
            out.stored += 1;
            last_new = Some(ev.id.as_str());
            let data = match parsed {
                Ok(v) => Some(v),
                Err(e) => {
                    out.parse_failures += 1;
                    tracing::error!(event_id = %ev.id, kind = %ev.kind, error = %e, "event payload is not JSON; recorded and skipped");
                    None
                }
            };
            let mut run = None;
            if let Some(data) = &data {
                if ev.kind == kind::BUILD_ACCEPTED && !before_sign_in {
                    out.builds += 1;
                }
                project(&tx, account, epoch, &ev.id, &ev.kind, data, now, &mut usage)?;
                let at = data.get("created_at").and_then(Value::as_str).unwrap_or("");
                run = runs.track(&tx, &ev.kind, at)?;
            }
            let observed = Observed {
                epoch,
                id: &ev.id,
                kind: &ev.kind,
                data: data.as_ref(),
                before_sign_in,
                rejections: run.as_ref(),
            };
            let decisions = decide(&observed, &mut |key| known(&tx, account, key));
            out.pending
                .extend(record_decisions(&tx, account, &decisions, now)?);
        }
        usage.write(&tx, account)?;
        // The cursor names the newest event stored. Events already stored (the stream
        // delivering what a catch-up just fetched) must not move it back.
        if let Some(last) = last_new {
            tx.execute(
                "UPDATE sync_state SET cursor = ?2, epoch = ?3 WHERE account_id = ?1",
                params![account, last, epoch],
            )?;
        }
        tx.commit()?;
        Ok(out)
    }

    /// Stores a fresh usage snapshot, and the notifications it calls for.
    pub fn record_usage(
        &mut self,
        account: i64,
        usage: &Usage,
        now: i64,
        decide: &mut DecideUsage<'_>,
    ) -> Result<Vec<NotificationRow>> {
        let tx = self.conn.transaction()?;
        for q in &usage.quotas {
            let per_period = q.metric == "builds";
            snapshot(
                &tx,
                account,
                now,
                &QuotaObservation {
                    metric: q.metric.clone(),
                    used: q.used,
                    limit: q.limit,
                    period_start: per_period.then(|| usage.period.start.clone()),
                    period_end: per_period.then(|| usage.period.end.clone()),
                },
            )?;
        }
        tx.execute(
            "UPDATE sync_state SET usage = ?2 WHERE account_id = ?1",
            params![account, serde_json::to_string(usage)?],
        )?;
        tx.execute(
            "UPDATE accounts SET plan = ?2 WHERE id = ?1",
            params![account, serde_json::to_string(&usage.plan)?],
        )?;
        let decisions = decide(usage, &mut |key| known(&tx, account, key));
        let pending = record_decisions(&tx, account, &decisions, now)?;
        tx.commit()?;
        Ok(pending)
    }

    /// Stores a page of builds from `/builds?after=` and moves the builds cursor past it.
    /// `last` says the page ended the listing: the builds are then complete up to the event
    /// cursor `events_at` read before the sync began, unless a history gap has moved the
    /// cursor since (events between the two carry their builds as well).
    pub fn store_builds(
        &mut self,
        account: i64,
        builds: &[Build],
        last: Option<&str>,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        for b in builds {
            upsert_build(&tx, account, b)?;
        }
        if let Some(newest) = builds.iter().map(|b| b.id).max() {
            tx.execute(
                "UPDATE sync_state SET builds_cursor = max(builds_cursor, ?2) WHERE account_id = ?1",
                params![account, newest],
            )?;
        }
        if let Some(events_at) = last {
            tx.execute(
                "UPDATE sync_state SET builds_complete = 1 WHERE account_id = ?1 AND cursor IS ?2",
                params![account, events_at],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    // ---- notifications --------------------------------------------------------------------

    pub fn set_notification_state(
        &self,
        id: i64,
        state: NotificationState,
        reason: Option<&str>,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE notifications SET state = ?2, reason = coalesce(?3, reason) WHERE id = ?1",
            params![id, state, reason],
        )?;
        Ok(())
    }

    /// Records that a call to show `id` is about to be made, committed before the call: a row
    /// found `sending` at start-up may have reached the daemon already.
    pub fn mark_sending(&self, id: i64) -> Result<()> {
        self.set_notification_state(id, NotificationState::Sending, None)
    }

    /// Records a call whose outcome is unknown (it timed out or its task died) as failed, to
    /// be retried at the next start, and as a possible repeat: the call may have got through.
    pub fn mark_outcome_unknown(&self, id: i64, reason: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE notifications SET state = ?3, reason = ?2,
                 repeats_possible = repeats_possible + 1
             WHERE id = ?1",
            params![id, reason, NotificationState::Failed],
        )?;
        Ok(())
    }

    /// Notifications to show at start-up: decided but not shown yet (the process stopped in
    /// between), those whose showing failed (no notification daemon then: an alert is retried
    /// rather than lost), and those whose call was in flight when the process died. The last
    /// may have reached the daemon: each is counted as a possible repeat, in the same
    /// transaction that hands it back, before it is shown again.
    pub fn notifications_to_resume(&mut self, account: i64) -> Result<Vec<NotificationRow>> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE notifications SET repeats_possible = repeats_possible + 1
             WHERE account_id = ?1 AND state = ?2",
            params![account, NotificationState::Sending],
        )?;
        let mut rows = Vec::new();
        use NotificationState::{Failed, Pending, Sending};
        for state in [Pending, Failed, Sending] {
            rows.extend(queries::notifications(&tx, account, Some(state), 1000)?);
        }
        tx.commit()?;
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    /// Turns everything held during a catch-up into one digest notification, in one
    /// transaction: the held rows become `digested` and the digest is returned to be shown.
    pub fn digest_held(
        &mut self,
        account: i64,
        builds_while_away: u64,
        now: i64,
    ) -> Result<Option<NotificationRow>> {
        let usage = self.sync_state(account)?.usage;
        let tx = self.conn.transaction()?;
        let held = queries::notifications(&tx, account, Some(NotificationState::Held), 10_000)?;
        let Some(first) = held.first() else {
            return Ok(None);
        };
        let summary: Vec<policy::Held> = held
            .iter()
            .map(|n| policy::Held {
                title: n.title.clone(),
                urgent: n.urgent,
            })
            .collect();
        let decision = policy::digest(
            &summary,
            builds_while_away,
            usage.as_ref(),
            &first.dedupe_key,
        );
        tx.execute(
            "UPDATE notifications SET state = ?2 WHERE account_id = ?1 AND state = ?3",
            params![
                account,
                NotificationState::Digested,
                NotificationState::Held
            ],
        )?;
        let rows = record_decisions(&tx, account, &[decision], now)?;
        tx.commit()?;
        Ok(rows.into_iter().next())
    }

    /// SQLite's `data_version`: differs between two calls on this connection exactly when
    /// another connection (the engine's) committed in between.
    pub fn data_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    // ---- settings -------------------------------------------------------------------------

    pub fn settings(&self) -> Result<Settings> {
        let v: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM settings WHERE key = 'notifications'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.map(|v| serde_json::from_str(&v))
            .transpose()?
            .unwrap_or_default())
    }

    pub fn set_settings(&self, settings: &Settings) -> Result<()> {
        self.conn.execute(
            "INSERT INTO settings (key, value) VALUES ('notifications', ?1)
             ON CONFLICT (key) DO UPDATE SET value = ?1",
            [serde_json::to_string(settings)?],
        )?;
        Ok(())
    }
}

fn name_taken(conn: &Connection, name: &str, origin: &str, user_id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM accounts WHERE name = ?1 AND NOT (origin = ?2 AND user_id = ?3)",
        )?
        .exists(params![name, origin, user_id])?)
}

fn known(tx: &Transaction<'_>, account: i64, key: &str) -> bool {
    tx.prepare_cached("SELECT 1 FROM notifications WHERE account_id = ?1 AND dedupe_key = ?2")
        .and_then(|mut s| s.exists(params![account, key]))
        // On a read error, claim the key is known: a missed notification is logged, a
        // duplicate cannot be taken back.
        .unwrap_or(true)
}

/// Inserts decisions under their dedupe keys; returns those to be shown now.
fn record_decisions(
    tx: &Transaction<'_>,
    account: i64,
    decisions: &[Decision],
    now: i64,
) -> Result<Vec<NotificationRow>> {
    let mut pending = Vec::new();
    for d in decisions {
        let inserted = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO notifications (account_id, dedupe_key, kind, title, body, urgent, state, reason, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![account, d.dedupe_key, d.kind, d.title, d.body, d.urgent, d.state, d.reason, now])?;
        if inserted == 1 && d.state == NotificationState::Pending {
            pending.push(NotificationRow {
                id: tx.last_insert_rowid(),
                dedupe_key: d.dedupe_key.clone(),
                kind: d.kind,
                title: d.title.clone(),
                body: d.body.clone(),
                urgent: d.urgent,
                state: NotificationState::Pending,
                reason: None,
                created_at: now,
                repeats_possible: 0,
                account_id: account,
            });
        }
    }
    Ok(pending)
}

/// Applies an event to the cached projections: builds, quota snapshots and the folded usage.
#[allow(clippy::too_many_arguments)]
fn project(
    tx: &Transaction<'_>,
    account: i64,
    epoch: &str,
    id: &str,
    kind: &str,
    data: &Value,
    now: i64,
    usage: &mut UsageFold,
) -> Result<()> {
    match kind {
        kind::BUILD_ACCEPTED => {
            if let Ok(b) = Build::deserialize(data) {
                upsert_build(tx, account, &b)?;
            }
        }
        kind::BUILD_REJECTED => {
            let text = |k: &str| data.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let reason = format!(
                "{} {}/{}",
                text("metric"),
                data.get("used").and_then(Value::as_i64).unwrap_or(0),
                data.get("limit").and_then(Value::as_i64).unwrap_or(0)
            );
            tx.prepare_cached(
                "INSERT OR IGNORE INTO builds (account_id, key, build_id, app, version, commit_sha, status, reason, created_at)
                 VALUES (?1, ?2, NULL, ?3, ?4, ?5, ?8, ?6, ?7)",
            )?
            .execute(params![account, format!("r:{epoch}:{id}"), text("app"), text("version"), text("commit"), reason, text("created_at"), BuildStatus::Rejected])?;
        }
        kind::QUOTA_RESET | kind::PLAN_CHANGED => usage.fold(tx, account, |u| {
            if let Some(quotas) = data.get("quotas").and_then(|q| Vec::deserialize(q).ok()) {
                u.quotas = quotas;
            }
            if let Some(period) = data.get("period").and_then(|p| Period::deserialize(p).ok()) {
                u.period = period;
            }
            if let Some(plan) = data.get("plan").and_then(|p| Plan::deserialize(p).ok()) {
                u.plan = plan;
            }
        })?,
        _ => {
            if let Some(obs) = QuotaObservation::from_event(kind, data) {
                snapshot(tx, account, now, &obs)?;
                usage.fold(tx, account, |u| {
                    match u.quotas.iter_mut().find(|q| q.metric == obs.metric) {
                        Some(q) => {
                            q.used = obs.used;
                            q.limit = obs.limit;
                        }
                        None => u.quotas.push(crate::protocol::Quota {
                            metric: obs.metric.clone(),
                            used: obs.used,
                            limit: obs.limit,
                        }),
                    }
                    if let (Some(s), Some(e)) = (&obs.period_start, &obs.period_end) {
                        u.period.start.clone_from(s);
                        u.period.end.clone_from(e);
                    }
                })?;
            }
        }
    }
    if let Some(plan) = data.get("plan").filter(|_| kind == kind::PLAN_CHANGED) {
        {
            tx.execute(
                "UPDATE accounts SET plan = ?2 WHERE id = ?1",
                params![account, plan.to_string()],
            )?;
        }
    }
    Ok(())
}

/// The usage snapshot of a batch of events, folded in memory and written once at the end of
/// the batch's transaction (a catch-up page carries hundreds of quota events; reading,
/// parsing and rewriting the stored JSON for each was a tenth of the page's time).
#[derive(Default)]
struct UsageFold {
    /// `None` until a quota event needs it; then the stored snapshot, if there is one (and
    /// then it is folded into, so written back).
    usage: Option<Option<Usage>>,
}

impl UsageFold {
    fn fold(
        &mut self,
        tx: &Transaction<'_>,
        account: i64,
        f: impl FnOnce(&mut Usage),
    ) -> Result<()> {
        if self.usage.is_none() {
            let current: Option<String> = tx
                .prepare_cached("SELECT usage FROM sync_state WHERE account_id = ?1")?
                .query_row([account], |r| r.get(0))
                .optional()?
                .flatten();
            self.usage = Some(current.and_then(|u| serde_json::from_str::<Usage>(&u).ok()));
        }
        // Without a usage snapshot there is nothing to fold into; the next /usage brings one.
        if let Some(Some(u)) = &mut self.usage {
            f(u);
        }
        Ok(())
    }

    fn write(self, tx: &Transaction<'_>, account: i64) -> Result<()> {
        if let Some(Some(u)) = &self.usage {
            tx.prepare_cached("UPDATE sync_state SET usage = ?2 WHERE account_id = ?1")?
                .execute(params![account, serde_json::to_string(u)?])?;
        }
        Ok(())
    }
}

fn snapshot(tx: &Transaction<'_>, account: i64, now: i64, obs: &QuotaObservation) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO quota_snapshots (account_id, at, metric, used, quota_limit, period_start, period_end)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![account, now, obs.metric, obs.used, obs.limit, obs.period_start, obs.period_end])?;
    Ok(())
}

fn upsert_build(tx: &Transaction<'_>, account: i64, b: &Build) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO builds (account_id, key, build_id, app, version, commit_sha, status, reason, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8)
         ON CONFLICT (account_id, key) DO NOTHING",
    )?
    .execute(params![
        account,
        format!("b:{}", b.id),
        b.id,
        b.app,
        b.version,
        b.commit,
        if b.overage {
            BuildStatus::Overage
        } else {
            BuildStatus::Accepted
        },
        b.created_at
    ])?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn usage(last: &str, epoch: &str) -> Usage {
        serde_json::from_value(serde_json::json!({
            "period": {"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"},
            "plan": {"id": "free", "name": "Free", "hard_limit": true},
            "quotas": [{"metric": "builds", "used": 1, "limit": 100}],
            "last_event_id": last, "stream_epoch": epoch
        }))
        .unwrap()
    }

    /// A fresh store in a temporary directory with one account (also used by the property tests, `store/props.rs`).
    pub(crate) fn open() -> (tempfile::TempDir, Store, i64) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("q.db")).unwrap();
        let id = store
            .upsert_account(
                "http://127.0.0.1:1/",
                "http://127.0.0.1:1",
                &account("1", "a@x"),
                None,
                0,
            )
            .unwrap();
        (dir, store, id)
    }

    fn names(store: &Store) -> Vec<String> {
        store
            .accounts()
            .unwrap()
            .into_iter()
            .map(|a| a.name)
            .collect()
    }

    fn account(id: &str, email: &str) -> Account {
        Account {
            id: id.into(),
            email: email.into(),
            plan: Plan {
                id: "free".into(),
                name: "Free".into(),
                hard_limit: true,
            },
        }
    }

    #[test]
    fn accounts_are_named_uniquely_and_found_by_name_email_or_id() {
        let (_dir, mut store, first) = open();
        let (a, b) = ("http://127.0.0.1:1", "https://staging.example.com");
        // The same email on another server: the name says which server.
        let second = store
            .upsert_account(b, b, &account("7", "a@x"), None, 0)
            .unwrap();
        assert_eq!(names(&store), ["a@x", "a@x (staging.example.com)"]);
        // A chosen name; one already taken is refused and changes nothing.
        let third = store
            .upsert_account(b, b, &account("8", "b@y"), Some("work"), 0)
            .unwrap();
        let taken = store.upsert_account(a, a, &account("9", "c@z"), Some("work"), 0);
        assert!(matches!(taken, Err(StoreError::NameTaken(n)) if n == "work"));
        assert_eq!(store.accounts().unwrap().len(), 3);
        // Signing in again keeps the name unless a new one is given.
        assert_eq!(
            store
                .upsert_account(b, b, &account("8", "b@y"), None, 1)
                .unwrap(),
            third
        );
        assert_eq!(store.account(third).unwrap().unwrap().name, "work");
        let find = |s: &str| store.find_account(s).unwrap().map(|a| a.id);
        assert_eq!(find("work"), Some(third));
        assert_eq!(find(&second.to_string()), Some(second));
        assert_eq!(find("b@y"), Some(third), "an email only one account has");
        assert_eq!(find("a@x"), Some(first), "a name wins over an email");
        assert_eq!(find("nobody"), None);
        // Deleting one account leaves the others' rows.
        store.delete_account(second).unwrap();
        assert_eq!(store.account_count().unwrap(), 2);
        assert!(store.account(first).unwrap().is_some());
    }

    #[test]
    fn the_account_name_migration_names_every_cached_account_uniquely() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            let before = Migrations::new(vec![
                M::up(include_str!("001_init.sql")),
                M::up(include_str!("002_notification_in_flight.sql")),
                M::up(include_str!("003_watch.sql")),
            ]);
            before.to_latest(&mut conn).unwrap();
            for (origin, user) in [
                ("http://a:1", "1"),
                ("https://b.example", "1"),
                ("http://a:1", "2"),
            ] {
                let email = if user == "1" { "same@x" } else { "other@x" };
                conn.execute(
                    "INSERT INTO accounts (origin, server_url, user_id, email, plan, created_at)
                     VALUES (?1, ?1, ?2, ?3, '{\"id\":\"free\",\"name\":\"Free\",\"hard_limit\":true}', 0)",
                    params![origin, user, email],
                )
                .unwrap();
            }
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(
            names(&store),
            ["same@x (a:1)", "same@x (b.example)", "other@x"]
        );
    }

    /// Ingests events with these ids; returns each one's `before_sign_in` as the policy saw it.
    fn seen(store: &mut Store, account: i64, ids: &[&str]) -> Vec<bool> {
        let events: Vec<Incoming> = ids
            .iter()
            .map(|id| Incoming {
                id: (*id).into(),
                kind: "notice".into(),
                data: "{}".into(),
            })
            .collect();
        let mut out = Vec::new();
        store
            .ingest(account, "e", &events, Source::CatchUp, 0, &mut |ev, _| {
                out.push(ev.before_sign_in);
                Vec::new()
            })
            .unwrap();
        out
    }

    #[test]
    fn history_before_sign_in_ends_at_its_id_even_if_that_event_never_comes() {
        let (_dir, mut store, acct) = open();
        // `/usage` said 0, then an event was committed before the first page was read.
        store.set_history_until(acct, "0").unwrap();
        assert_eq!(seen(&mut store, acct, &["1", "2"]), [false, false]);

        let (_dir, mut store, acct) = open();
        store.set_history_until(acct, "5").unwrap();
        assert_eq!(
            seen(&mut store, acct, &["3", "5", "6"]),
            [true, true, false]
        );

        // A resync during the first sync skips the event history ended at.
        let (_dir, mut store, acct) = open();
        store.set_history_until(acct, "5").unwrap();
        assert_eq!(seen(&mut store, acct, &["3"]), [true]);
        store
            .resync(acct, &usage("9", "e"), "history_gap", "test", 0)
            .unwrap();
        assert_eq!(seen(&mut store, acct, &["10"]), [false]);
    }
}

/// Property tests ("fuzzing" on stable Rust; see `strategies.rs`).
#[cfg(test)]
mod props;
