//! The line protocol between the tray process and its window process: one JSON object per
//! line, on the window process's stdin (tray → window) and stdout (window → tray). Pipes
//! rather than a socket: nothing to name or clean up, and the window process sees EOF the
//! moment the tray process dies.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use quotabell_core::ipc::{Call, ErrorCode, IpcError, Snapshot, View};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;

/// Window → tray: a command of the web view, to be answered with the same `id`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    pub call: Call,
}

/// Tray → window.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    Reply {
        id: u64,
        result: Result<Value, IpcError>,
    },
    Snapshot {
        snapshot: Box<Snapshot>,
    },
    /// Bring the window to the front, on `view` when given.
    Show {
        view: Option<View>,
    },
}

/// The window process's end: writes requests to stdout and matches the replies its reader
/// hands to [`Relay::complete`]. The reply stays JSON: the web view gets it as it came.
#[derive(Default)]
pub struct Relay {
    next: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<Value, IpcError>>>>,
}

impl Relay {
    pub async fn call(&self, call: Call) -> Result<Value, IpcError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        let line = serde_json::to_string(&Request { id, call })
            .map_err(|e| IpcError::new(ErrorCode::Internal, e.to_string()))?;
        let sent = {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{line}").and_then(|_| out.flush())
        };
        if sent.is_err() {
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            return Err(gone());
        }
        rx.await.map_err(|_| gone())?
    }

    /// Hands a reply read from the tray process to the call waiting for it.
    pub fn complete(&self, id: u64, result: Result<Value, IpcError>) {
        if let Some(tx) = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)
        {
            let _ = tx.send(result);
        }
    }
}

fn gone() -> IpcError {
    IpcError::new(ErrorCode::Internal, "Quotabell's tray process is gone")
}

#[cfg(test)]
mod tests {
    use super::*;
    use quotabell_core::ipc::{BuildQuery, ErrorCode};

    #[test]
    fn lines_round_trip() {
        let r = Request {
            id: 7,
            call: Call::Builds(BuildQuery {
                search: Some("a\nb".into()),
                ..Default::default()
            }),
        };
        let line = serde_json::to_string(&r).unwrap();
        assert!(!line.contains('\n'), "one request is one line");
        let back: Request = serde_json::from_str(&line).unwrap();
        assert_eq!(back.call, r.call);
        let m = Message::Reply {
            id: 7,
            result: Err(IpcError::new(ErrorCode::Busy, "x")),
        };
        let back: Message = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert!(
            matches!(back, Message::Reply { id: 7, result: Err(e) } if e.code == ErrorCode::Busy)
        );
    }

    /// What the UI's `call` function sends as the command's `call` argument (ui/src/ipc.ts):
    /// a call without arguments has no `args` key at all.
    #[test]
    fn calls_read_as_the_ui_writes_them() {
        let read = |json: &str| serde_json::from_str::<Call>(json).unwrap();
        assert_eq!(read(r#"{"call":"snapshot"}"#), Call::Snapshot);
        assert_eq!(
            read(r#"{"call":"pause","args":"one_hour"}"#),
            Call::Pause(quotabell_core::ipc::PauseChoice::OneHour)
        );
        let builds = read(r#"{"call":"builds","args":{"search":"x","offset":200,"limit":200}}"#);
        assert_eq!(builds.name(), "builds");
        assert!(serde_json::from_str::<Call>(r#"{"call":"format_disk"}"#).is_err());
    }
}
