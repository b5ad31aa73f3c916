//! A wall clock that a test moves: libfaketime, preloaded into each process started with
//! [`FakeClock::apply`], reads an offset from one file on every call, so the backend and the
//! engine see the same time and move together. Monotonic time is left real, as on a machine
//! whose clock is set (timers and timeouts keep working).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result};

/// libfaketime's multithreading-safe variant (the engine and the backend run Tokio threads).
pub const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// The offset file; clones share it.
#[derive(Clone, Debug)]
pub struct FakeClock {
    file: PathBuf,
}

impl FakeClock {
    /// A clock at real time whose offset lives in `file`.
    pub fn new(file: &Path) -> Result<Self> {
        if !Path::new(FAKETIME).exists() {
            return Err(Error::Failed(format!(
                "{FAKETIME} is missing: install the faketime package (scripts/test does)"
            )));
        }
        let me = Self {
            file: file.to_owned(),
        };
        me.set_offset(0)?;
        Ok(me)
    }

    /// Moves every process's clock to real time plus `secs`.
    pub fn set_offset(&self, secs: i64) -> Result<()> {
        // Written whole, by renaming: libfaketime reads the file on every call
        // (FAKETIME_NO_CACHE) and must never read half a number.
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, format!("{secs:+}\n")).map_err(Error::io("the clock file"))?;
        std::fs::rename(&tmp, &self.file).map_err(Error::io("the clock file"))
    }

    /// Makes `cmd` run on this clock, in UTC (so that the dates it words are the test's).
    pub fn apply(&self, cmd: &mut Command) {
        cmd.env("TZ", "UTC")
            .env("LD_PRELOAD", FAKETIME)
            .env("FAKETIME_TIMESTAMP_FILE", &self.file)
            .env("FAKETIME_NO_CACHE", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    }
}
