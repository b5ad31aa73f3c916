//! The real engine (`quotabell`) in one data directory inside a [`Desktop`]: its one-shot
//! subcommands, and `watch` as a guarded child process whose stderr is kept in the profile.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::process;
use crate::{Desktop, Error, Result};

/// An engine profile: the binary and its `--data-dir`.
#[derive(Clone, Debug)]
pub struct Profile {
    pub bin: PathBuf,
    pub dir: PathBuf,
}

/// What a one-shot subcommand did.
pub struct Ran {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Profile {
    /// The engine's SQLite cache.
    pub fn db(&self) -> PathBuf {
        self.dir.join("quotabell.db")
    }

    /// `quotabell --data-dir DIR ARGS` inside `desktop`.
    pub fn command(&self, desktop: &Desktop, args: &[&str]) -> Command {
        let mut c = desktop.command(&self.bin);
        c.arg("--data-dir").arg(&self.dir).args(args);
        c
    }

    /// Runs a subcommand to the end with `stdin` as its input.
    pub fn run(&self, desktop: &Desktop, args: &[&str], stdin: Option<&str>) -> Result<Ran> {
        let what = format!("quotabell {}", args.first().copied().unwrap_or(""));
        let mut child = self
            .command(desktop, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(Error::io(format!("starting {what}")))?;
        if let Some(mut input) = child.stdin.take()
            && let Some(s) = stdin
        {
            input
                .write_all(s.as_bytes())
                .map_err(Error::io(format!("writing to {what}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(Error::io(format!("waiting for {what}")))?;
        Ok(Ran {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Signs in to `server` with the token on standard input, as a user would.
    pub fn login(&self, desktop: &Desktop, server: &str, token: &str) -> Result<()> {
        let ran = self.run(
            desktop,
            &["login", "--server", server],
            Some(&format!("{token}\n")),
        )?;
        if !ran.success {
            return Err(Error::Failed(format!(
                "login failed: {}{}",
                ran.stdout, ran.stderr
            )));
        }
        Ok(())
    }

    /// Starts `quotabell watch ARGS` in the background, its stderr to `watch.stderr` in the
    /// profile, at `rust_log` if given.
    pub fn watch(&self, desktop: &Desktop, args: &[&str], rust_log: Option<&str>) -> Result<Watch> {
        let log = self.dir.join("watch.stderr");
        let stderr = std::fs::File::create(&log).map_err(Error::io("watch.stderr"))?;
        let mut cmd = self.command(desktop, &["watch"]);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        if let Some(level) = rust_log {
            cmd.env("RUST_LOG", level);
        }
        let child = cmd.spawn().map_err(Error::io("starting quotabell watch"))?;
        Ok(Watch {
            pid: child.id(),
            child,
            log,
        })
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
        process::signal(self.pid, libc::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < grace {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill9();
        self.child.wait().ok()
    }

    /// Kills it outright, as a crash would, and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines it logged.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}
