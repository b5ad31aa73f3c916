//! The tray process's side of the window: starts the window process on demand, answers its
//! calls through the companion, and forwards snapshots to it while it lives.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use quotabell_core::companion::Companion;
use quotabell_core::ipc::{Call, ErrorCode, IpcError, Snapshot, View};
use tauri::AppHandle;
use tauri_plugin_autostart::ManagerExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::relay::{Message, Request};

pub struct WindowHost {
    companion: Arc<Companion>,
    data_dir: Option<PathBuf>,
    app: AppHandle,
    /// The running window process's inbox; `None` when no window is open.
    window: Mutex<Option<Window>>,
    next_generation: std::sync::atomic::AtomicU64,
}

struct Window {
    inbox: mpsc::UnboundedSender<Message>,
    generation: u64,
}

impl WindowHost {
    pub fn new(companion: Arc<Companion>, data_dir: Option<PathBuf>, app: AppHandle) -> Arc<Self> {
        Arc::new(Self {
            companion,
            data_dir,
            app,
            window: Mutex::new(None),
            next_generation: Default::default(),
        })
    }

    /// Brings the window to the front (on `view` when given), starting it if needed.
    pub fn show(self: &Arc<Self>, view: Option<View>) {
        let mut slot = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = slot.as_ref()
            && w.inbox.send(Message::Show { view }).is_ok()
        {
            return;
        }
        let (inbox, rx) = mpsc::unbounded_channel();
        let generation = self
            .next_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The first thing the window hears is the current state.
        let _ = inbox.send(Message::Snapshot {
            snapshot: Box::new(self.companion.snapshots().borrow().clone()),
        });
        *slot = Some(Window { inbox, generation });
        let me = self.clone();
        tauri::async_runtime::spawn(async move {
            let mut rx = rx;
            let mut undelivered = None;
            if let Err(e) = me
                .run_window(view.unwrap_or(View::Usage), &mut rx, &mut undelivered)
                .await
            {
                tracing::error!(error = %e, "the window process failed");
            }
            {
                let mut slot = me.window.lock().unwrap_or_else(|e| e.into_inner());
                if slot.as_ref().is_some_and(|w| w.generation == generation) {
                    *slot = None;
                }
            }
            // A "show" that reached a window as it was closing (a click on "Open Quotabell" a
            // few ms after the close) must not be lost: it opens a new window.
            while let Ok(m) = rx.try_recv() {
                if let Message::Show { view } = m {
                    undelivered = Some(view);
                }
            }
            if let Some(view) = undelivered {
                me.show(view);
            }
        });
    }

    pub fn companion(&self) -> Arc<Companion> {
        self.companion.clone()
    }

    /// Passes a new snapshot to the window, if one is open.
    pub fn snapshot(&self, snapshot: &Snapshot) {
        if let Some(w) = self
            .window
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = w.inbox.send(Message::Snapshot {
                snapshot: Box::new(snapshot.clone()),
            });
        }
    }

    /// Closes the window: dropping its inbox closes its stdin, and it exits.
    pub fn close(&self) {
        self.window.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Runs one window process until it exits. A `Show` it could not be given is left in
    /// `undelivered`.
    async fn run_window(
        self: &Arc<Self>,
        view: View,
        inbox: &mut mpsc::UnboundedReceiver<Message>,
        undelivered: &mut Option<Option<View>>,
    ) -> std::io::Result<()> {
        let exe = std::env::current_exe()?;
        let mut cmd = tokio::process::Command::new(exe);
        cmd.arg("--window")
            .arg("--view")
            .arg(
                serde_json::to_value(view)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(dir) = &self.data_dir {
            cmd.env("QUOTABELL_DATA_DIR", dir);
        }
        let mut child = cmd.spawn()?;
        tracing::info!(pid = child.id(), "window process started");
        // Its "last synced 2 min ago" follows the clock while it lives.
        self.companion.set_window_open(true);
        let mut stdin = child.stdin.take().expect("piped");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let (replies, mut reply_rx) = mpsc::unbounded_channel::<Message>();
        let writer = async {
            loop {
                let msg = tokio::select! {
                    m = inbox.recv() => m,
                    m = reply_rx.recv() => m,
                };
                let Some(msg) = msg else { break };
                let mut line = serde_json::to_vec(&msg).map_err(std::io::Error::other)?;
                line.push(b'\n');
                if let Err(e) = stdin.write_all(&line).await {
                    if let Message::Show { view } = msg {
                        *undelivered = Some(view);
                    }
                    return Err(e);
                }
            }
            // Our inbox closed (quit): closing stdin makes the window process exit.
            drop(stdin);
            Ok::<_, std::io::Error>(())
        };
        let reader = async {
            while let Some(line) = lines.next_line().await? {
                let req: Request = match serde_json::from_str(&line) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable request from the window process");
                        continue;
                    }
                };
                tracing::debug!(id = req.id, "call from the window process");
                let me = self.clone();
                let replies = replies.clone();
                tauri::async_runtime::spawn(async move {
                    let result = me.answer(req.call).await;
                    let _ = replies.send(Message::Reply { id: req.id, result });
                });
            }
            Ok::<_, std::io::Error>(())
        };
        // The window process ends the exchange by exiting: its stdout closes, or a message
        // written to it as it goes meets a closed pipe. Either way, reap it.
        let ended = tokio::select! {
            r = reader => r,
            r = writer => r,
        };
        let waited = child.wait().await;
        self.companion.set_window_open(false);
        let status = waited?;
        tracing::info!(%status, "window process exited");
        match ended {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e),
            _ => Ok(()),
        }
    }

    /// The companion answers; start-at-login is the shell's (it is a platform matter).
    async fn answer(&self, call: Call) -> Result<serde_json::Value, IpcError> {
        let autostart = self.app.autolaunch();
        match call {
            Call::Settings => {
                let mut v = self.companion.call(Call::Settings).await?;
                v["start_at_login"] = autostart.is_enabled().unwrap_or(false).into();
                Ok(v)
            }
            Call::SaveSettings(form) => {
                let want = form.start_at_login;
                let mut v = self.companion.call(Call::SaveSettings(form)).await?;
                if autostart.is_enabled().unwrap_or(false) != want {
                    let done = if want {
                        autostart.enable()
                    } else {
                        autostart.disable()
                    };
                    done.map_err(|e| {
                        IpcError::invalid(
                            "start_at_login",
                            format!("cannot change start at login: {e}"),
                        )
                    })?;
                }
                v["start_at_login"] = autostart.is_enabled().unwrap_or(want).into();
                Ok(v)
            }
            call => self.companion.call(call).await,
        }
        .inspect_err(|e: &IpcError| {
            if e.code == ErrorCode::Internal {
                tracing::error!(error = %e.message, "call failed");
            }
        })
    }
}
