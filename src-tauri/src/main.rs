//! Quotabell's desktop shell. One binary, two processes (ARCHITECTURE.md, "Two processes"):
//! the tray process runs the engine and the tray and never loads a web view; the window
//! process (`--window`) hosts the web view and relays its calls to the tray process over its
//! stdin/stdout, and exits when the window closes, taking every WebKit process with it.

// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod commands;
mod relay;
mod tray;
mod tray_process;
mod window_host;
mod window_process;

use std::path::PathBuf;

use clap::Parser;
use quotabell_core::ipc::View;

#[derive(Parser, Debug)]
#[command(
    name = "quotabell-app",
    version,
    about = "Quotabell: your build quota in the tray"
)]
struct Args {
    /// Keep everything (cache, logs, window state) under this directory (tests, portable use).
    #[arg(long, env = "QUOTABELL_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Start in the tray without opening the window (as at login).
    #[arg(long)]
    hidden: bool,
    /// Internal: be the window process of a running tray process.
    #[arg(long, hide = true)]
    window: bool,
    /// The view to open with.
    #[arg(long, value_parser = parse_view, default_value = "usage")]
    view: View,
}

fn parse_view(s: &str) -> Result<View, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("unknown view {s:?}: sign_in, usage, builds, notifications, settings"))
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,quotabell=info".into()),
        )
        .init();
    let result = if args.window {
        window_process::run(args.view)
    } else {
        tray_process::run(args.data_dir, args.hidden, args.view)
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "quotabell-app failed");
            eprintln!("quotabell-app: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
