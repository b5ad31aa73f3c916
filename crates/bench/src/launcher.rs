//! Starting the test bed's parts for one benchmark: the real `quotabell-server` (the test
//! bed's [`Backend`]) on a throwaway database, placed on the CPUs the bench chose, and a
//! private desktop session ([`Desktop`]) for the engine and the app.
//!
//! Every child dies with the bench even if the bench is killed outright (`PR_SET_PDEATHSIG`),
//! and the guards kill them and remove their directories when dropped, so an error or a panic
//! anywhere in the bench does not leave a server or a daemon behind.

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::PathBuf;
use std::time::Duration;

use quotabell_testbed::process::{CpuMask, Placement};
use quotabell_testbed::{Backend, Desktop, ServerOptions, Session};

use crate::BoxError;

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
    backend: Backend,
    pub addr: SocketAddr,
    pub pid: u32,
    /// Holds the database and the server's log; removed last.
    _dir: tempfile::TempDir,
}

/// How the engine benchmarks run `quotabell watch`.
#[derive(clap::Args, Clone)]
#[group(id = "engine-options")]
pub struct EngineArgs {
    /// `quotabell watch --keepalive-secs` (the server keeps its default of 15 s).
    #[arg(long, default_value_t = 15.0, value_parser = crate::seconds_in(0.05, 3600.0, false))]
    pub engine_keepalive_secs: f64,
}

/// How long dunst shows a notification in the bench's sessions: drawing one costs dunst and
/// Xvfb tens of milliseconds of CPU, and the bench waits for the desktop to be idle again.
pub const NOTIFICATION_SHOWN: Duration = Duration::from_millis(200);

impl Launcher {
    /// How the bench's children run: dying with the bench, on `mask` if given (else the
    /// bench's own CPUs).
    pub fn placement(mask: Option<CpuMask>) -> Placement {
        Placement {
            die_with_parent: true,
            mask,
        }
    }

    /// A private desktop session whose daemons run on the bench's CPUs.
    pub fn desktop(&self, label: &str) -> Result<Desktop, BoxError> {
        let session = Session {
            shown: NOTIFICATION_SHOWN,
            placement: Self::placement(None),
            label: format!("bench-{label}"),
            ..Session::default()
        };
        Ok(Desktop::launch(&session)?)
    }

    /// Starts `serve` on 127.0.0.1 with a random port and a fresh database.
    pub fn start(&self, label: &str) -> Result<ServerChild, BoxError> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("quotabell-bench-{label}-"))
            .tempdir()?;
        let mask = if self.cpu.is_none() {
            self.original_mask
        } else {
            None
        };
        let options = ServerOptions {
            cpu: self.cpu,
            placement: Self::placement(mask),
            ..ServerOptions::default()
        };
        let backend = Backend::launch(&self.bin, &dir.path().join("bench.sqlite3"), options)?;
        let addr = backend
            .addr
            .parse::<SocketAddr>()
            .ok()
            .filter(|a| a.ip().is_loopback())
            .ok_or_else(|| {
                format!(
                    "server did not announce a loopback address: {:?}",
                    backend.addr
                )
            })?;
        let pid = backend.pid().ok_or("the server is not running")?;
        Ok(ServerChild {
            backend,
            addr,
            pid,
            _dir: dir,
        })
    }
}

impl Launcher {
    /// Starts `n` instances on the PostgreSQL database at `url`, each with its own log
    /// directory, placed as `start` places one.
    pub fn start_cluster(
        &self,
        label: &str,
        url: &str,
        n: usize,
        args: &[String],
    ) -> Result<Vec<ServerChild>, BoxError> {
        (0..n)
            .map(|i| {
                let dir = tempfile::Builder::new()
                    .prefix(&format!("quotabell-bench-{label}-{i}-"))
                    .tempdir()?;
                let mask = if self.cpu.is_none() {
                    self.original_mask
                } else {
                    None
                };
                let options = ServerOptions {
                    args: args.to_vec(),
                    cpu: self.cpu,
                    placement: Self::placement(mask),
                    ..ServerOptions::default()
                };
                let backend = Backend::launch_at(&self.bin, url.as_ref(), dir.path(), options)?;
                let addr = backend.addr.parse::<SocketAddr>()?;
                let pid = backend.pid().ok_or("the server is not running")?;
                Ok(ServerChild {
                    backend,
                    addr,
                    pid,
                    _dir: dir,
                })
            })
            .collect()
    }
}

impl ServerChild {
    /// SIGKILL, as a crash of the machine's process would.
    pub fn kill9(&mut self) {
        self.backend.kill9();
    }

    /// `None` while running; the exit status once it has stopped.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.backend.exited()
    }
}

impl Deref for ServerChild {
    type Target = Backend;
    fn deref(&self) -> &Backend {
        &self.backend
    }
}
