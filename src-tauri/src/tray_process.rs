//! The tray process: the engine (through the core's companion), the tray icon and menu, and
//! the window process on demand. No web view is ever created here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use quotabell_core::clock::SystemClock;
use quotabell_core::companion::Companion;
use quotabell_core::doctor;
use quotabell_core::engine::EngineConfig;
use quotabell_core::ipc::{Call, PauseChoice, View};
use quotabell_core::notifier::DesktopNotifier;
use quotabell_core::paths::Paths;
use quotabell_core::secret::OsKeychain;
use tauri::{Manager, RunEvent};
use tauri_plugin_autostart::MacosLauncher;

use crate::tray::{self, Tray};
use crate::window_host::WindowHost;

/// How long an idle blocking thread of the runtime waits for work before it ends.
const BLOCKING_THREAD_KEEP_ALIVE: Duration = Duration::from_secs(24 * 3600);

pub fn run(
    data_dir: Option<PathBuf>,
    hidden: bool,
    view: View,
) -> Result<(), Box<dyn std::error::Error>> {
    quotabell_core::client::install_crypto_provider();
    // The runtime Tauri and the engines run on. One worker: a keepalive then wakes one thread
    // rather than one and a stealing second. Blocking threads (cache reads, notification
    // calls) are kept rather than ended after tokio's default 10 s idle, so that an idle
    // process does not start one for each read (ARCHITECTURE.md, "Idle").
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_keep_alive(BLOCKING_THREAD_KEEP_ALIVE)
        .enable_all()
        .build()?;
    tauri::async_runtime::set(runtime.handle().clone());
    let paths = Paths::resolve(data_dir.as_deref());
    // A notification's "Open usage" (or a click on it) arrives on a notification thread, with
    // the account the notification is about.
    let (open_usage, mut open_usage_rx) = tokio::sync::mpsc::unbounded_channel::<i64>();
    let notifier =
        DesktopNotifier::new("dialog-information").with_action(Arc::new(move |account| {
            let _ = open_usage.send(account);
        }));
    let companion = Arc::new(Companion::new(
        paths,
        Arc::new(OsKeychain::new()),
        Arc::new(notifier),
        Arc::new(SystemClock),
        EngineConfig::default(),
    ));
    let app = tauri::Builder::default()
        // A second launch focuses the running window instead of starting another engine.
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            if let Some(host) = app.try_state::<Arc<WindowHost>>() {
                host.show(None);
            }
        }))
        .plugin(tauri_plugin_autostart::init(
            MacosLauncher::LaunchAgent,
            Some(vec!["--hidden"]),
        ))
        .setup({
            let companion = companion.clone();
            move |app| {
                let host = WindowHost::new(companion.clone(), data_dir, app.handle().clone());
                app.manage(host.clone());
                // Without a tray the app still runs (its window says why there is no icon).
                let mut tray = Tray::create(app.handle(), on_menu)
                    .inspect_err(|e| tracing::warn!(error = %e, "cannot create the tray icon"))
                    .ok();
                let handle = app.handle().clone();
                let render_host = host.clone();
                let first_host = host.clone();
                let start_companion = companion.clone();
                tauri::async_runtime::spawn(async move {
                    let companion = start_companion;
                    companion.start().await;
                    // With no tray host the icon cannot show, and a hidden start would leave
                    // nothing on screen: the window opens on the diagnosis instead.
                    let no_tray = doctor::tray_missing().await;
                    if let Some(f) = &no_tray {
                        tracing::warn!(detail = %f.detail, "no tray host: opening the window");
                    }
                    // After the first read of the cache, so the window opens on real data
                    // rather than on the signed-out placeholder.
                    if no_tray.is_some() {
                        first_host.show(Some(View::Diagnostics));
                    } else if !hidden {
                        first_host.show(Some(view));
                    }
                    let mut snapshots = companion.snapshots();
                    loop {
                        let snap = snapshots.borrow_and_update().clone();
                        if let Some(Err(e)) = tray.as_mut().map(|t| t.render(&handle, &snap.tray)) {
                            tracing::warn!(error = %e, "cannot update the tray");
                        }
                        render_host.snapshot(&snap);
                        if snapshots.changed().await.is_err() {
                            break;
                        }
                    }
                });
                let usage_host = host.clone();
                let usage_companion = companion.clone();
                tauri::async_runtime::spawn(async move {
                    while let Some(account) = open_usage_rx.recv().await {
                        usage_companion.select(account).await;
                        usage_host.show(Some(View::Usage));
                    }
                });
                Ok(())
            }
        })
        // The configuration is at the top of the repository (see build.rs).
        .build(tauri::generate_context!("../tauri.conf.json"))?;
    app.run(move |app, event| match event {
        // No window of ours lives in this process: stay in the tray until Quit.
        RunEvent::ExitRequested {
            api, code: None, ..
        } => api.prevent_exit(),
        RunEvent::Exit => {
            if let Some(host) = app.try_state::<Arc<WindowHost>>() {
                host.close();
            }
            // Let the engine record that it stopped.
            tauri::async_runtime::block_on(companion.shutdown());
        }
        _ => {}
    });
    Ok(())
}

fn on_menu(app: &tauri::AppHandle, id: &str) {
    let Some(host) = app.try_state::<Arc<WindowHost>>() else {
        return;
    };
    let host = host.inner().clone();
    let pause = match id {
        tray::OPEN => return host.show(None),
        tray::PAUSE_HOUR => PauseChoice::OneHour,
        tray::PAUSE_TOMORROW => PauseChoice::UntilTomorrow,
        tray::RESUME => PauseChoice::Resume,
        tray::QUIT => return app.exit(0),
        _ => return,
    };
    let companion = host.companion();
    tauri::async_runtime::spawn(async move {
        if let Err(e) = companion.call(Call::Pause(pause)).await {
            tracing::warn!(error = %e.message, "cannot pause notifications");
        }
    });
}
