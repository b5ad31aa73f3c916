//! One engine per profile: an exclusive lock on a file beside the database, so a CLI `watch`
//! and the desktop app never both notify. The holder writes who it is into the file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another Quotabell engine is running for this profile ({holder}); stop it first")]
    Held { holder: String },
    #[error("cannot open the lock file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Held while the engine runs; the OS releases it when the process ends, even on `kill -9`.
pub struct EngineLock {
    _file: File,
}

impl EngineLock {
    pub fn acquire(path: &Path, who: &str) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    holder: if holder.is_empty() {
                        "unknown process".into()
                    } else {
                        holder.to_owned()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "pid {} ({who})", std::process::id()).map_err(io)?;
        Ok(Self { _file: file })
    }
}

/// Whether the engine that last took the lock at `path` is still running, judged from the pid
/// it wrote (without taking the lock, so a starting engine is never refused). `None` when
/// unknown (no lock file, or no /proc to look in).
pub fn holder_running(path: &Path) -> Option<bool> {
    let text = std::fs::read_to_string(path).ok()?;
    let pid: u32 = text
        .strip_prefix("pid ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let proc = Path::new("/proc");
    proc.is_dir().then(|| proc.join(pid.to_string()).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_told_who_has_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.lock");
        let first = EngineLock::acquire(&path, "quotabell watch").unwrap();
        let err = EngineLock::acquire(&path, "desktop").err().unwrap();
        assert!(
            err.to_string()
                .contains(&format!("pid {} (quotabell watch)", std::process::id())),
            "{err}"
        );
        assert_eq!(holder_running(&path), Some(true));
        drop(first);
        EngineLock::acquire(&path, "desktop").unwrap();
        std::fs::write(&path, "pid 4294967295 (gone)").unwrap();
        assert_eq!(holder_running(&path), Some(false));
    }
}
