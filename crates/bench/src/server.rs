//! The real `quotabell-server` as a child process on a throwaway SQLite file.
//!
//! [`ServerChild`] kills the child and removes its directory when dropped, so an error or a
//! panic anywhere in the bench does not leave a server behind. The child also gets
//! `PR_SET_PDEATHSIG`, so it dies with the bench even if the bench is killed outright.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::BoxError;
use crate::sys::CpuMask;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How to start servers: which binary, and on which CPUs.
#[derive(Clone)]
pub struct Launcher {
    pub bin: PathBuf,
    /// Run the server under `taskset -c CPU`.
    pub cpu: Option<usize>,
    /// The bench's own mask before it pinned itself: an unpinned server gets it back.
    pub original_mask: Option<CpuMask>,
}

pub struct ServerChild {
    child: Child,
    pub addr: SocketAddr,
    pub pid: u32,
    pub db: PathBuf,
    dir: PathBuf,
}

impl Launcher {
    /// Starts `serve` on 127.0.0.1 with a random port and a fresh database.
    pub fn start(&self, label: &str) -> Result<ServerChild, BoxError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "quotabell-bench-{}-{label}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        let db = dir.join("bench.sqlite3");
        let log = std::fs::File::create(dir.join("server.log"))?;

        let mut cmd = match self.cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--db")
            .arg(&db)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mask = if self.cpu.is_none() {
            self.original_mask
        } else {
            None
        };
        // SAFETY: the closure runs between fork and exec and makes only async-signal-safe
        // syscalls (prctl, sched_setaffinity); it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if let Some(mask) = &mask {
                    mask.apply()?;
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        let stdout = child.stdout.take();
        // From here on the guard owns the child: any early return kills it.
        let mut server = ServerChild {
            pid: child.id(),
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            db,
            dir,
        };
        let (tx, rx) = mpsc::channel();
        if let Some(stdout) = stdout {
            std::thread::spawn(move || {
                let mut lines = BufReader::new(stdout).lines();
                let _ = tx.send(lines.next());
                // Keep draining so the server never blocks on a full pipe.
                for _ in lines {}
            });
        }
        let addr = match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Some(Ok(line))) => line
                .strip_prefix("listening on http://")
                .and_then(|a| a.trim().parse::<SocketAddr>().ok())
                .filter(|a| a.ip().is_loopback())
                .ok_or_else(|| format!("server did not announce a loopback address: {line:?}")),
            other => Err(format!("server did not start ({other:?})")),
        };
        match addr {
            Ok(addr) => server.addr = addr,
            Err(e) => return Err(format!("{e}; its log:\n{}", server.log_tail(20)).into()),
        }
        Ok(server)
    }
}

impl ServerChild {
    /// The last `n` lines the server wrote to stderr.
    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// `None` while running; the exit status once it has stopped.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Creates a user on plan `pro` with the server's own CLI and returns its token.
pub async fn add_user(bin: &Path, db: &Path, email: &str) -> Result<String, BoxError> {
    add_user_on(bin, db, email, "pro").await
}

/// Runs an operator command of the server's CLI on `db` (`--db DB` is appended); returns its
/// standard output.
pub async fn server_cli(bin: &Path, db: &Path, args: &[&str]) -> Result<String, BoxError> {
    let out = tokio::process::Command::new(bin)
        .args(args)
        .arg("--db")
        .arg(db)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let what = args.iter().take(2).copied().collect::<Vec<_>>().join(" ");
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .map_err(|_| format!("`{what}` timed out"))??;
    if !out.status.success() {
        return Err(format!(
            "`{what}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Creates a user on `plan` with the server's own CLI and returns its token.
pub async fn add_user_on(
    bin: &Path,
    db: &Path,
    email: &str,
    plan: &str,
) -> Result<String, BoxError> {
    let stdout = server_cli(bin, db, &["user", "add", "--plan", plan, "--email", email]).await?;
    stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .filter(|t| !t.contains(char::is_whitespace))
        .map(str::to_owned)
        .ok_or_else(|| format!("`user add` printed no token: {stdout:?}").into())
}
