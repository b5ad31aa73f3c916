//! Where a profile lives: the platform's directories (XDG on Linux and the BSDs), or one
//! `--data-dir` for everything (tests).

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Paths {
    pub data: PathBuf,
    pub state: PathBuf,
    pub config: PathBuf,
}

#[cfg(not(any(target_os = "macos", windows)))]
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
            None => Self::platform(),
        }
    }

    /// The XDG base directories.
    #[cfg(not(any(target_os = "macos", windows)))]
    fn platform() -> Self {
        Self {
            data: xdg("XDG_DATA_HOME", ".local/share"),
            state: xdg("XDG_STATE_HOME", ".local/state"),
            config: xdg("XDG_CONFIG_HOME", ".config"),
        }
    }

    /// `~/Library/Application Support/Quotabell` on macOS, `%APPDATA%\Quotabell` on Windows
    /// (logs under the local data directory there).
    #[cfg(any(target_os = "macos", windows))]
    fn platform() -> Self {
        let under =
            |dir: Option<PathBuf>| dir.unwrap_or_else(|| PathBuf::from(".")).join("Quotabell");
        Self {
            data: under(dirs::data_dir()),
            state: under(dirs::data_local_dir()).join("state"),
            config: under(dirs::config_dir()),
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
