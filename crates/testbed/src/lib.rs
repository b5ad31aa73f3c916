//! The real parts the end-to-end tests (tests/e2e) and the benchmarks (crates/bench) run
//! Quotabell against, in one place so that both exercise the same setup:
//!
//! - [`Desktop`]: a private desktop session (a D-Bus session bus, gnome-keyring's Secret
//!   Service unlocked with a password, the dunst notification daemon) in a throwaway directory;
//! - [`Backend`]: the real `quotabell-server` on an ephemeral port, restartable on that port;
//! - [`Profile`]: the real engine (`quotabell`) in one data directory inside a session, its
//!   one-shot subcommands and `watch` as a guarded child ([`Watch`]);
//! - [`TrayWatcher`]: the panel's side of the system tray (StatusNotifierWatcher + dbusmenu);
//! - [`X`]: the X server's view of the app's windows, and closing one as a window manager does;
//! - [`Postgres`]: a throwaway PostgreSQL cluster on a free loopback port, for the backend's
//!   PostgreSQL store;
//! - [`FakeClock`]: a wall clock the backend and the engine share, moved by the test;
//! - [`process`]: the few /proc readings and process knobs both need.
//!
//! Starting a part returns a [`Result`]: the bench reports a broken setup and exits, a test
//! unwraps it (a harness that cannot start is a failed test). Everything is synchronous: the
//! tests run on plain threads, and the bench starts its children from its main thread, which
//! `PR_SET_PDEATHSIG` needs (see [`process::Placement`]). Dunst needs an X display: run
//! everything under `xvfb-run -a`.

mod backend;
mod clock;
mod desktop;
mod postgres;
pub mod process;
mod profile;
mod tray;
mod x11;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use backend::{Backend, ServerOptions};
pub use clock::{FAKETIME, FakeClock};
pub use desktop::{Desktop, Session};
pub use postgres::Postgres;
pub use profile::{Profile, Ran, Watch};
pub use tray::{
    IconImage, ItemRef, MenuEntry, Pixmap, TrayItem, TrayWatcher, WATCHER_NAME, WATCHER_PATH,
    icon_file, icon_pixels, load_png_rgba, strip_mnemonic,
};
pub use x11::{Window, X};

/// Why a part of the test bed could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("D-Bus: {0}")]
    Bus(#[from] zbus::Error),
    /// A program ran but did not do what was asked; the text says what it printed.
    #[error("{0}")]
    Failed(String),
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout { what: String, timeout: Duration },
}

impl Error {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A binary of the workspace: next to the running executable (the bench in target/<profile>/),
/// or one level up when that runs from deps/ (a test binary). It must have been built: cargo
/// builds the binaries of other packages only when asked.
pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(Error::io("the running executable"))?;
    let mut dir = exe
        .parent()
        .ok_or_else(|| Error::Failed("the running executable has no directory".into()))?;
    if dir.ends_with("deps") {
        dir = dir.parent().unwrap_or(dir);
    }
    Ok(dir.join(name))
}

/// Checks `ok` every 50 ms until it holds; `Err` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> Result<()> {
    let start = Instant::now();
    while !ok() {
        if start.elapsed() >= timeout {
            return Err(Error::Timeout {
                what: what.to_owned(),
                timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
