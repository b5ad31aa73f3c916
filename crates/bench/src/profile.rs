//! The real engine (`quotabell`) in one profile directory inside a [`Desktop`]: its one-shot
//! subcommands, `watch` as a guarded child process, and a read-only view of its SQLite cache.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::io::AsyncWriteExt;

use crate::desktop::Desktop;
use crate::{BoxError, sys};

const CLI_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Profile {
    pub bin: PathBuf,
    pub dir: PathBuf,
}

impl Profile {
    pub fn db(&self) -> PathBuf {
        self.dir.join("quotabell.db")
    }

    /// Runs `quotabell --data-dir DIR ARGS` to the end, with `stdin` as its input.
    pub async fn run(
        &self,
        desktop: &Desktop,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, BoxError> {
        let mut cmd = desktop.tokio_command(&self.bin);
        cmd.arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        if let Some(mut input) = child.stdin.take() {
            if let Some(s) = stdin {
                input.write_all(s.as_bytes()).await?;
            }
            drop(input);
        }
        let what = format!("quotabell {}", args.first().copied().unwrap_or(""));
        let out = tokio::time::timeout(CLI_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| format!("`{what}` timed out"))??;
        if !out.status.success() {
            return Err(format!(
                "`{what}` failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
            .into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Signs in with the token on standard input, as a user would.
    pub async fn login(&self, desktop: &Desktop, url: &str, token: &str) -> Result<(), BoxError> {
        self.run(
            desktop,
            &["login", "--server", url],
            Some(&format!("{token}\n")),
        )
        .await
        .map(|_| ())
    }

    /// Starts `quotabell watch ARGS` in the background; its stderr goes to `watch.stderr`.
    pub fn watch(&self, desktop: &Desktop, args: &[&str]) -> Result<Watch, BoxError> {
        let log = std::fs::File::create(self.dir.join("watch.stderr"))?;
        let mut cmd = desktop.command(&self.bin);
        cmd.arg("--data-dir")
            .arg(&self.dir)
            .arg("watch")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        sys::die_with_parent(&mut cmd, None);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {} watch: {e}", self.bin.display()))?;
        Ok(Watch {
            pid: child.id(),
            child,
            log: self.dir.join("watch.stderr"),
        })
    }

    /// Opens the engine's cache read-only (it must exist).
    pub fn cache(&self) -> Result<Cache, BoxError> {
        Cache::open(&self.db())
    }
}

/// A running `quotabell watch`, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Watch {
    child: Child,
    pub pid: u32,
    log: PathBuf,
}

impl Watch {
    /// `None` while running.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Asks it to stop (SIGTERM, as a logout or system shutdown would) and waits up to
    /// `grace`; kills it after that.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.exited() {
            return Some(s);
        }
        sys::signal(self.pid, libc::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }

    /// The last `n` lines the engine logged.
    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// What the bench reads from the engine's cache.
#[derive(Debug, Clone, Default)]
pub struct SyncView {
    /// The id of the last event stored (event ids are numbers on this server).
    pub cursor: Option<u64>,
    pub connection: String,
    /// Notifications decided but not shown yet.
    pub pending: i64,
    /// Notifications recorded as shown.
    pub shown: i64,
}

/// A read-only connection to an engine's SQLite cache (WAL: it never blocks the engine).
pub struct Cache {
    conn: Connection,
}

impl Cache {
    pub fn open(path: &Path) -> Result<Self, BoxError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| format!("cannot open the engine cache {}: {e}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(Self { conn })
    }

    pub fn view(&self) -> Result<SyncView, BoxError> {
        let row = self
            .conn
            .prepare_cached("SELECT cursor, connection FROM sync_state LIMIT 1")?
            .query_row([], |r| {
                Ok((r.get::<_, Option<String>>(0)?, r.get::<_, String>(1)?))
            })
            .optional()?;
        let Some((cursor, connection)) = row else {
            return Ok(SyncView::default());
        };
        let (pending, shown) = self
            .conn
            .prepare_cached(
                "SELECT coalesce(sum(state = 'pending'), 0), coalesce(sum(state = 'shown'), 0)
                 FROM notifications",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(SyncView {
            cursor: cursor.and_then(|c| c.parse().ok()),
            connection,
            pending,
            shown,
        })
    }

    /// Only the cursor: the cheapest read, for tight polling.
    pub fn cursor(&self) -> Result<Option<u64>, BoxError> {
        let c: Option<Option<String>> = self
            .conn
            .prepare_cached("SELECT cursor FROM sync_state LIMIT 1")?
            .query_row([], |r| r.get(0))
            .optional()?;
        Ok(c.flatten().and_then(|c| c.parse().ok()))
    }
}

/// The server's newest event id for the token's user (`GET /api/v1/usage`).
pub async fn server_last_event_id(
    client: &reqwest::Client,
    base: &str,
    token: &str,
) -> Result<u64, BoxError> {
    let resp = client
        .get(format!("{base}/api/v1/usage"))
        .bearer_auth(token)
        .send()
        .await?;
    let status = resp.status();
    let v: serde_json::Value = resp.json().await?;
    if !status.is_success() {
        return Err(format!("GET /usage: HTTP {status}: {v}").into());
    }
    let id = &v["last_event_id"];
    id.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| id.as_u64())
        .ok_or_else(|| format!("GET /usage: no last_event_id in {v}").into())
}

/// Polls `f` every `every` until it returns `Some`, for at most `timeout`.
pub async fn poll<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Result<Option<T>, BoxError>,
) -> Result<T, BoxError> {
    let start = Instant::now();
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?} waiting for {what}").into());
        }
        tokio::time::sleep(every).await;
    }
}
