//! The reference backend, `quotabell-server serve`, as a child process on a SQLite file.
//! It listens on an ephemeral port that a restart keeps, so that an engine's saved server URL
//! stays right across a crash of the backend.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::process::Placement;
use crate::{Error, Result};

/// How long a start may take to print its address: generous, as under a full parallel test
/// run on 2 cores processes start slowly.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Where and how the server runs. The default is what the tests use.
#[derive(Clone, Default)]
pub struct ServerOptions {
    /// Arguments after `serve --listen ADDR --db DB`.
    pub args: Vec<String>,
    /// Run it under `taskset -c CPU` (the bench keeps server and clients on separate CPUs).
    pub cpu: Option<usize>,
    pub placement: Placement,
    /// `RUST_LOG` for the server; `None` leaves the environment's (the server's default is
    /// `info`, which the bench measures with).
    pub rust_log: Option<String>,
    /// A wall clock of the test's (the instance's periods and timestamps follow it).
    pub clock: Option<crate::FakeClock>,
}

/// A running backend, killed when dropped. Its stderr goes to `server.log` next to the db.
pub struct Backend {
    /// The `--db` value: a SQLite path or a `postgres://` URL.
    pub db: PathBuf,
    /// Where `server.log` goes (next to a SQLite file by default).
    log_dir: PathBuf,
    /// `host:port` once started; `127.0.0.1:0` asks for an ephemeral port.
    pub addr: String,
    bin: PathBuf,
    options: ServerOptions,
    child: Option<Child>,
}

impl Backend {
    /// Starts `BIN serve --listen 127.0.0.1:0 --db DB ARGS` and waits for its address.
    pub fn launch(bin: &Path, db: &Path, options: ServerOptions) -> Result<Self> {
        let log_dir = db.parent().unwrap_or(Path::new(".")).to_owned();
        Self::launch_at(bin, db.as_os_str(), &log_dir, options)
    }

    /// The same on any `--db` value (a PostgreSQL URL too), its log in `log_dir`.
    pub fn launch_at(
        bin: &Path,
        db: &std::ffi::OsStr,
        log_dir: &Path,
        options: ServerOptions,
    ) -> Result<Self> {
        let mut b = Self {
            db: PathBuf::from(db),
            log_dir: log_dir.to_owned(),
            addr: "127.0.0.1:0".into(),
            bin: bin.to_owned(),
            options,
            child: None,
        };
        b.restart()?;
        Ok(b)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the running server, if any, and starts it again on the same address.
    pub fn restart(&mut self) -> Result<()> {
        self.kill9();
        // The port may still be in TIME_WAIT or briefly held: retry a few times.
        let mut last = String::new();
        for _ in 0..50 {
            let (child, line) = self.spawn()?;
            if let Some(a) = line.trim().strip_prefix("listening on http://") {
                self.addr = a.to_owned();
                self.child = Some(child);
                return Ok(());
            }
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
            last = line;
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(Error::Failed(format!(
            "the backend did not start on {} (last said {last:?}); its log:\n{}",
            self.addr,
            self.log_tail(20)
        )))
    }

    /// Starts the child and returns it with the first line it printed ("" if it printed none
    /// before exiting).
    fn spawn(&self) -> Result<(Child, String)> {
        let mut cmd = match self.options.cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        let log = std::fs::File::create(self.log_path()).map_err(Error::io("server.log"))?;
        cmd.args(["serve", "--listen", &self.addr, "--db"])
            .arg(&self.db)
            .args(&self.options.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(level) = &self.options.rust_log {
            cmd.env("RUST_LOG", level);
        }
        if let Some(clock) = &self.options.clock {
            clock.apply(&mut cmd);
        }
        self.options.placement.apply(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(Error::io(format!("starting {}", self.bin.display())))?;
        let (tx, rx) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                let mut lines = BufReader::new(stdout).lines();
                let _ = tx.send(lines.next());
                // Keep draining so the server never blocks on a full pipe.
                for _ in lines {}
            });
        }
        match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Some(Ok(line))) => Ok((child, line)),
            Ok(_) | Err(mpsc::RecvTimeoutError::Disconnected) => Ok((child, String::new())),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(Error::Timeout {
                    what: format!("{} to print its address", self.bin.display()),
                    timeout: STARTUP_TIMEOUT,
                })
            }
        }
    }

    fn log_path(&self) -> PathBuf {
        self.log_dir.join("server.log")
    }

    /// The last `n` lines the server wrote to stderr.
    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// `None` while running; the exit status once it has stopped.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs an operator command of the server's CLI on this database (`--db DB` is appended);
    /// returns its standard output.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .arg("--db")
            .arg(&self.db)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        // An operator command runs on the server's clock (a user added "now" is the server's
        // now).
        if let Some(clock) = &self.options.clock {
            clock.apply(&mut cmd);
        }
        let out = cmd
            .output()
            .map_err(Error::io(format!("running {}", self.bin.display())))?;
        if !out.status.success() {
            return Err(Error::Failed(format!(
                "{args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Creates a user on `plan` and returns its token (the last line `user add` prints).
    pub fn add_user(&self, email: &str, plan: &str) -> Result<String> {
        let stdout = self.cli(&["user", "add", "--email", email, "--plan", plan])?;
        stdout
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .filter(|t| !t.contains(char::is_whitespace))
            .map(str::to_owned)
            .ok_or_else(|| Error::Failed(format!("`user add` printed no token: {stdout:?}")))
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill9();
    }
}
