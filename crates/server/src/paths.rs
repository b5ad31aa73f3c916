//! Default file locations, following the XDG base directory rules.

use std::path::PathBuf;

/// `$XDG_DATA_HOME/quotabell-server`, falling back to `~/.local/share/quotabell-server`.
pub fn data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("quotabell-server")
}

pub fn default_db() -> PathBuf {
    data_dir().join("server.db")
}

pub fn demo_db() -> PathBuf {
    data_dir().join("demo.db")
}

pub fn demo_token_file() -> PathBuf {
    data_dir().join("demo-token")
}
