//! The line protocol between the tray process and its window process: one JSON object per
//! line, on the window process's stdin (tray → window) and stdout (window → tray). Pipes
//! rather than a socket: nothing to name or clean up, and the window process sees EOF the
//! moment the tray process dies.

use quotabell_core::ipc::{Call, IpcError, Snapshot, View};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
}
