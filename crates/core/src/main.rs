//! `quotabell`: the headless command line (the desktop app adds the window and the tray).

use std::process::ExitCode;

use clap::Parser;
use quotabell_core::cli::{self, Cli, Command};
use quotabell_core::paths::Paths;
use tracing_subscriber::fmt::writer::MakeWriterExt;

fn main() -> ExitCode {
    let args = Cli::parse();
    let Some(command) = args.command else {
        eprintln!(
            "quotabell: no subcommand given (the desktop app is not part of this build); see --help"
        );
        return ExitCode::from(2);
    };
    init_tracing(&args.global, matches!(command, Command::Watch { .. }));
    cli::run(command, &args.global)
}

/// Logs go to stderr; the engine (`watch`) also appends them to `<state>/logs/engine.log`.
fn init_tracing(global: &cli::Global, to_file: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "warn,quotabell_core=info".into());
    let file = to_file
        .then(|| {
            let dir = Paths::resolve(global.data_dir.as_deref()).log_dir();
            std::fs::create_dir_all(&dir).ok()?;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("engine.log"))
                .ok()
        })
        .flatten();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    match file {
        Some(f) => builder
            .with_writer(std::io::stderr.and(std::sync::Mutex::new(f)))
            .init(),
        None => builder.with_writer(std::io::stderr).init(),
    }
}
