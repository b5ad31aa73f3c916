//! Where a profile lives: XDG directories, or one `--data-dir` for everything (tests).

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Paths {
    pub data: PathBuf,
    pub state: PathBuf,
    pub config: PathBuf,
}

fn xdg(var: &str, fallback: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(fallback)))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("quotabell")
}

impl Paths {
    /// `--data-dir` puts data, state (logs) and config under one directory.
    pub fn resolve(data_dir: Option<&Path>) -> Self {
        match data_dir {
            Some(d) => Self {
                data: d.to_owned(),
                state: d.join("state"),
                config: d.join("config"),
            },
            None => Self {
                data: xdg("XDG_DATA_HOME", ".local/share"),
                state: xdg("XDG_STATE_HOME", ".local/state"),
                config: xdg("XDG_CONFIG_HOME", ".config"),
            },
        }
    }

    pub fn db(&self) -> PathBuf {
        self.data.join("quotabell.db")
    }

    pub fn lock(&self) -> PathBuf {
        self.data.join("quotabell.db.lock")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.state.join("logs")
    }
}
