//! The window process: one web view, its commands relayed to the tray process (see
//! `relay.rs`). It exits when the window closes, and with it WebKit's web and network
//! processes, so a closed window costs nothing.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use quotabell_core::ipc::{Call, ErrorCode, IpcError, View};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tauri::{Emitter, Manager, WebviewUrl, WebviewWindowBuilder};
use tokio::sync::oneshot;

use crate::commands;
use crate::relay::{Message, Request};

pub const WINDOW: &str = "main";

/// Sends calls to the tray process over stdout and matches the replies read from stdin.
pub struct Relay {
    next: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<Value, IpcError>>>>,
}

impl Relay {
    fn new() -> Self {
        Self {
            next: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
        }
    }

    pub async fn call<T: DeserializeOwned>(&self, call: Call) -> Result<T, IpcError> {
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
        let value = rx.await.map_err(|_| gone())??;
        serde_json::from_value(value)
            .map_err(|e| IpcError::new(ErrorCode::Internal, format!("unexpected reply: {e}")))
    }

    fn complete(&self, id: u64, result: Result<Value, IpcError>) {
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

/// WebKitGTK settings that keep the window light: accelerated compositing brings in GL (Mesa,
/// and with it libLLVM when there is no GPU) and its buffers — about 90 MB of the web process
/// for a page that is text, bars and one SVG chart (BENCHMARKS.md). A user's own setting wins.
///
/// Not under WebDriver (`TAURI_WEBVIEW_AUTOMATION`): WebKitWebDriver's screenshot command never
/// answers when compositing is off (seen with WebKitGTK 2.50 on Xvfb), and the end-to-end test
/// takes screenshots. Everything else the test checks is the same either way.
#[cfg(target_os = "linux")]
fn light_webkit() {
    if std::env::var_os("TAURI_WEBVIEW_AUTOMATION").is_some() {
        return;
    }
    for var in [
        "WEBKIT_DISABLE_COMPOSITING_MODE",
        "WEBKIT_DISABLE_DMABUF_RENDERER",
    ] {
        if std::env::var_os(var).is_none() {
            // SAFETY: called first thing in `run`, before this process starts any thread.
            unsafe { std::env::set_var(var, "1") };
        }
    }
}

pub fn run(view: View) -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(target_os = "linux")]
    light_webkit();
    let hash = serde_json::to_value(view)?
        .as_str()
        .unwrap_or("usage")
        .to_owned();
    tauri::Builder::default()
        .plugin(tauri_plugin_window_state::Builder::default().build())
        .manage(Relay::new())
        .invoke_handler(tauri::generate_handler![
            commands::snapshot,
            commands::usage_history,
            commands::builds,
            commands::build_apps,
            commands::notifications,
            commands::settings,
            commands::save_settings,
            commands::sign_in,
            commands::sign_out,
            commands::pause,
        ])
        .setup(move |app| {
            let window = WebviewWindowBuilder::new(
                app,
                WINDOW,
                WebviewUrl::App(format!("index.html#{hash}").into()),
            )
            .title("Quotabell")
            .inner_size(980.0, 700.0)
            .min_inner_size(560.0, 420.0)
            .build()?;
            // One page, read from memory: no page or resource caches worth their memory.
            #[cfg(target_os = "linux")]
            window.with_webview(|webview| {
                use webkit2gtk::{CacheModel, WebContextExt, WebViewExt};
                if let Some(context) = webview.inner().context() {
                    context.set_cache_model(CacheModel::DocumentViewer);
                }
            })?;
            let handle = app.handle().clone();
            std::thread::Builder::new()
                .name("relay-in".into())
                .spawn(move || read_tray(handle))?;
            Ok(())
        })
        .run(tauri::generate_context!())?;
    Ok(())
}

/// Reads the tray process's messages until it goes away, then closes the window.
fn read_tray(app: tauri::AppHandle) {
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let msg: Message = match serde_json::from_str(&line) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable message from the tray process");
                continue;
            }
        };
        match msg {
            Message::Reply { id, result } => app.state::<Relay>().complete(id, result),
            Message::Snapshot { snapshot } => {
                let _ = app.emit_to(WINDOW, "snapshot", &*snapshot);
            }
            Message::Show { view } => {
                if let Some(view) = view {
                    let _ = app.emit_to(WINDOW, "navigate", view);
                }
                if let Some(w) = app.get_webview_window(WINDOW) {
                    let _ = w.unminimize();
                    let _ = w.show();
                    let _ = w.set_focus();
                }
            }
        }
    }
    tracing::info!("the tray process is gone: closing the window");
    app.exit(0);
}
