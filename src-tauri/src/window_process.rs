//! The window process: one web view, its commands relayed to the tray process (see
//! `relay.rs`). It exits when the window closes, and with it WebKit's web and network
//! processes, so a closed window costs nothing.

use std::io::BufRead;

use quotabell_core::ipc::View;
use tauri::{Emitter, Manager, WebviewUrl, WebviewWindowBuilder};

use crate::commands;
use crate::relay::{Message, Relay};

pub const WINDOW: &str = "main";

/// WebKitGTK settings that keep the window light: accelerated compositing brings in GL (Mesa,
/// and with it libLLVM when there is no GPU) and its buffers — about 90 MB of the web process
/// for a page that is text, bars and one SVG chart — and JavaScriptCore's JIT keeps compiled
/// code and its pools for a page whose script runs a few times a minute (about 6 MB; the
/// interpreter is quick enough for it). BENCHMARKS.md has both. A user's own setting wins.
///
/// Not under WebDriver (`TAURI_WEBVIEW_AUTOMATION`): WebKitWebDriver's screenshot command never
/// answers when compositing is off (seen with WebKitGTK 2.50 on Xvfb), and the end-to-end test
/// takes screenshots. Everything else the test checks is the same either way.
#[cfg(target_os = "linux")]
fn light_webkit() {
    if std::env::var_os("TAURI_WEBVIEW_AUTOMATION").is_some() {
        return;
    }
    // Inherited by WebKit's web process, which is where they take effect.
    for (var, value) in [
        ("WEBKIT_DISABLE_COMPOSITING_MODE", "1"),
        ("WEBKIT_DISABLE_DMABUF_RENDERER", "1"),
        ("JSC_useJIT", "0"),
    ] {
        if std::env::var_os(var).is_none() {
            // SAFETY: called first thing in `run`, before this process starts any thread.
            unsafe { std::env::set_var(var, value) };
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
        .manage(Relay::default())
        .invoke_handler(tauri::generate_handler![commands::call])
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
        // The configuration is at the top of the repository (see build.rs).
        .run(tauri::generate_context!("../tauri.conf.json"))?;
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
