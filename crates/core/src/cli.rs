//! The headless front end: `quotabell <subcommand>`. The desktop app reuses this module for
//! the same subcommands, so there is one implementation.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::clock::{Clock, SystemClock};
use crate::dashboard::{self, Moment};
use crate::doctor;
use crate::engine::{EngineConfig, Exit};
use crate::ipc::{BuildStatus, NotificationState, RefillNotice, Snapshot};
use crate::notifier::DesktopNotifier;
use crate::paths::Paths;
use crate::secret::{Keychain, OsKeychain, Token};
use crate::session;
use crate::store::{BuildFilter, Store};
use crate::stream::StreamSettings;

#[derive(Parser, Debug)]
#[command(
    name = "quotabell",
    version,
    about = "Quotabell: know when your usage limits are hit"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Keep data, logs and config under this directory instead of the XDG ones.
    #[arg(long, global = true, env = "QUOTABELL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Which account a command is about; needed only when several are signed in.
#[derive(Args, Debug, Clone, Default)]
pub struct Which {
    /// The account's name, email or id (`quotabell accounts` lists them).
    #[arg(long)]
    pub account: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Sign in: the token is read from standard input (or a prompt), never from arguments.
    /// Each login adds an account (or replaces the token of one already signed in).
    Login {
        #[arg(long)]
        server: String,
        /// What to call the account (`--account NAME` elsewhere); its email by default.
        #[arg(long)]
        name: Option<String>,
    },
    /// Sign out of one account: deletes its token from the keychain and its cache.
    Logout {
        #[command(flatten)]
        which: Which,
    },
    /// The accounts signed in: name, email, server, plan, connection, last sync.
    Accounts {
        #[arg(long)]
        json: bool,
    },
    /// Usage per metric, connection state and when data was last synced (works offline). With
    /// several accounts and no --account, each of them.
    Status {
        #[command(flatten)]
        which: Which,
        #[arg(long)]
        json: bool,
    },
    /// Run the engine in the foreground: follow the stream, catch up, notify.
    Watch {
        /// The server's keepalive interval; silence for 2.5 times this is a stalled connection.
        #[arg(long, default_value_t = 15.0)]
        keepalive_secs: f64,
        /// Seconds between backstop catch-ups.
        #[arg(long, default_value_t = 600)]
        backstop_secs: u64,
        /// Longest wait between reconnection attempts.
        #[arg(long, default_value_t = 60.0)]
        max_backoff_secs: f64,
    },
    /// Build history from the cache.
    History {
        #[command(flatten)]
        which: Which,
        #[arg(long)]
        app: Option<String>,
        /// accepted, overage or rejected
        #[arg(long, value_parser = build_status)]
        status: Option<BuildStatus>,
        /// Earliest date or time (RFC 3339 or YYYY-MM-DD).
        #[arg(long)]
        since: Option<String>,
        /// Latest date or time, exclusive.
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        search: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// The cached event log, oldest first.
    Events {
        #[command(flatten)]
        which: Which,
        #[arg(long)]
        json: bool,
    },
    /// Notifications decided so far: shown, suppressed, digested.
    Notifications {
        #[command(flatten)]
        which: Which,
        #[arg(long)]
        json: bool,
        /// Only the decisions that were not shown as they came, each with why.
        #[arg(long)]
        why: bool,
    },
    /// What stands between you and a working Quotabell: keychain, notification daemon, tray
    /// host, server, token, clock, cache, engine. Exit status 1 when a check fails.
    Doctor {
        #[arg(long)]
        json: bool,
    },
    /// Notification settings.
    Settings {
        /// Comma-separated percentages, e.g. 80,100.
        #[arg(long, value_delimiter = ',')]
        thresholds: Option<Vec<u8>>,
        /// Local quiet hours, e.g. 22:00-07:00, or "off".
        #[arg(long)]
        quiet: Option<String>,
        /// Pause notifications for this many minutes (0 resumes).
        #[arg(long)]
        pause_minutes: Option<i64>,
        #[arg(long)]
        urgent_through_quiet: Option<bool>,
        #[arg(long)]
        notify_rejected: Option<bool>,
        /// Warn this many days before the pace reaches a limit, or "off".
        #[arg(long)]
        early_warning_days: Option<String>,
        /// ...when that is at least this many hours before the period ends.
        #[arg(long)]
        early_warning_margin_hours: Option<u16>,
        /// Alert when builds come this many times faster than usual, or "off".
        #[arg(long)]
        runaway_factor: Option<String>,
        /// ...and at least this many in a quarter hour.
        #[arg(long)]
        runaway_min_builds: Option<u16>,
        /// When a refilled quota is announced.
        #[arg(long, value_enum)]
        refill_notice: Option<RefillNotice>,
    },
}

/// "off" or a whole number, for the options that can be turned off.
fn number_or_off(option: &str, value: &str) -> Result<Option<u8>, String> {
    if value.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    value
        .trim()
        .parse()
        .map(Some)
        .map_err(|_| format!("{option}: {value:?} is not a number from 1 to 255, or off"))
}

/// Runs a subcommand; the caller has installed the tracing subscriber.
pub fn run(cmd: Command, global: &Global) -> ExitCode {
    let paths = Paths::resolve(global.data_dir.as_deref());
    match dispatch(cmd, &paths) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("quotabell: {e}");
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error>;

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    // One thread: the engine is one sequential loop, and an idle tray app should cost nothing.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn dispatch(cmd: Command, paths: &Paths) -> Result<ExitCode, BoxError> {
    let clock = SystemClock;
    match cmd {
        Command::Login { server, name } => {
            let token = Token::new(&read_token()?)?;
            let keychain: Arc<dyn Keychain> = Arc::new(OsKeychain::new());
            let now = clock.now_unix();
            let acct = runtime()?.block_on(session::login(
                paths,
                &server,
                token,
                name.as_deref(),
                keychain,
                now,
            ))?;
            println!(
                "Signed in as {} on {} ({} plan), as account {:?}.",
                acct.email, acct.origin, acct.plan.name, acct.name
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Logout { which } => {
            let keychain: Arc<dyn Keychain> = Arc::new(OsKeychain::new());
            match runtime()?.block_on(session::logout(paths, which.account.as_deref(), keychain))? {
                Some(a) => println!("Signed out {}; its token and cache are deleted.", a.name),
                None => println!("Not signed in."),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Accounts { json } => accounts(paths, json, &clock),
        Command::Status { which, json } => status(paths, &which, json, &clock),
        Command::Doctor { json } => {
            let keychain: Arc<dyn Keychain> = Arc::new(OsKeychain::new());
            let findings = runtime()?.block_on(doctor::examine(paths, keychain, clock.now_unix()));
            for f in &findings {
                if json {
                    println!("{}", serde_json::to_string(f)?);
                } else {
                    println!("{}", f.line());
                }
            }
            Ok(if doctor::failed(&findings) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Watch {
            keepalive_secs,
            backstop_secs,
            max_backoff_secs,
        } => {
            let cfg = EngineConfig {
                stream: StreamSettings {
                    keepalive: secs(keepalive_secs, 0.05, 3600.0)?,
                    ..StreamSettings::default()
                },
                backstop: Duration::from_secs(backstop_secs.max(1)),
                max_backoff: secs(max_backoff_secs, 0.05, 3600.0)?,
                ..EngineConfig::default()
            };
            watch(paths, cfg)
        }
        Command::History {
            which,
            app,
            status,
            since,
            until,
            search,
            limit,
            json,
        } => {
            let (store, account) = open_cache(paths, &which)?;
            let filter = BuildFilter {
                app,
                status,
                since,
                until,
                search,
                limit,
                offset: 0,
            };
            let rows = store.builds(account.id, &filter)?;
            let mut out = std::io::stdout().lock();
            for b in rows {
                if json {
                    writeln!(out, "{}", serde_json::to_string(&b)?)?;
                } else {
                    let id = b
                        .build_id
                        .map(|i| format!("#{i}"))
                        .unwrap_or_else(|| "-".into());
                    writeln!(
                        out,
                        "{}  {:<8} {:<20} {:<12} {:<9} {}",
                        b.created_at,
                        id,
                        b.app,
                        b.version,
                        b.status.as_str(),
                        b.reason.unwrap_or_default()
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Events { which, json } => {
            let (store, account) = open_cache(paths, &which)?;
            let mut out = std::io::stdout().lock();
            let mut after = 0;
            loop {
                let rows = store.events(account.id, after, 5000)?;
                let Some(last) = rows.last() else {
                    break;
                };
                after = last.seq;
                for e in rows {
                    if json {
                        let line =
                            serde_json::json!({ "id": e.id, "type": e.kind, "data": e.data });
                        writeln!(out, "{line}")?;
                    } else {
                        writeln!(out, "{:>8}  {:<16} {}", e.id, e.kind, e.data)?;
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Notifications { which, json, why } => {
            let (store, account) = open_cache(paths, &which)?;
            let mut out = std::io::stdout().lock();
            for n in store.notifications(account.id, None, 100_000)? {
                if why {
                    if n.state == NotificationState::Shown {
                        continue;
                    }
                    writeln!(
                        out,
                        "{}  #{:<5} {}\n        {}",
                        fmt_time(n.created_at),
                        n.id,
                        n.title,
                        dashboard::why(n.state, n.reason.as_deref()),
                    )?;
                } else if json {
                    writeln!(out, "{}", serde_json::to_string(&n)?)?;
                } else {
                    writeln!(
                        out,
                        "{}  {:<10} {}{}",
                        fmt_time(n.created_at),
                        n.state.as_str(),
                        n.title,
                        n.reason.map(|r| format!(" ({r})")).unwrap_or_default()
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Settings {
            thresholds,
            quiet,
            pause_minutes,
            urgent_through_quiet,
            notify_rejected,
            early_warning_days,
            early_warning_margin_hours,
            runaway_factor,
            runaway_min_builds,
            refill_notice,
        } => {
            let store = Store::open(&paths.db())?;
            let current = store.settings()?;
            // Through the Settings view's form and its one validation, so that the command line
            // and the window accept exactly the same settings, with the same words.
            let mut form = dashboard::settings_form(&current, false);
            if let Some(t) = thresholds {
                form.thresholds = t;
            }
            if let Some(q) = quiet {
                (form.quiet_start, form.quiet_end) = quiet_range(&q)?;
            }
            if let Some(u) = urgent_through_quiet {
                form.urgent_through_quiet = u;
            }
            if let Some(n) = notify_rejected {
                form.notify_rejected_builds = n;
            }
            if let Some(d) = early_warning_days {
                form.early_warning_days = number_or_off("--early-warning-days", &d)?;
            }
            if let Some(h) = early_warning_margin_hours {
                form.early_warning_margin_hours = h;
            }
            if let Some(f) = runaway_factor {
                form.runaway_factor = number_or_off("--runaway-factor", &f)?;
            }
            if let Some(n) = runaway_min_builds {
                form.runaway_min_builds = n;
            }
            if let Some(r) = refill_notice {
                form.refill_notice = r;
            }
            let mut s = dashboard::apply_form(&current, &form).map_err(|e| {
                // The form's fields that can be wrong, as the options that set them (the
                // others are named as their option, `_` for `-`).
                match e.field.as_deref() {
                    Some("quiet_start" | "quiet_end") => format!("--quiet: {e}"),
                    Some(field) => format!("--{}: {e}", field.replace('_', "-")),
                    None => e.to_string(),
                }
            })?;
            if let Some(m) = pause_minutes {
                s.paused_until =
                    (m > 0).then(|| clock.now_unix().saturating_add(m.saturating_mul(60)));
            }
            store.set_settings(&s)?;
            println!("{}", serde_json::to_string_pretty(&s)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Seconds from the command line, clamped; NaN is refused (`Duration` would panic on it).
fn secs(value: f64, min: f64, max: f64) -> Result<Duration, BoxError> {
    if value.is_nan() {
        return Err("a duration must be a number of seconds".into());
    }
    Ok(Duration::from_secs_f64(value.clamp(min, max)))
}

/// `--status`, under the names the cache and the window use (serde's).
fn build_status(text: &str) -> Result<BuildStatus, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|_| format!("{text:?} is not a build status: use accepted, overage or rejected"))
}

/// `--quiet 22:00-07:00` (or `off`) as the form's start and end, which the form checks.
fn quiet_range(text: &str) -> Result<(Option<String>, Option<String>), BoxError> {
    if text == "off" {
        return Ok((None, None));
    }
    let (a, b) = text
        .split_once('-')
        .ok_or("--quiet: quiet hours look like 22:00-07:00, or off")?;
    Ok((Some(a.trim().to_owned()), Some(b.trim().to_owned())))
}

/// The token from standard input (one line) or, on a terminal, a prompt that does not echo.
fn read_token() -> Result<String, BoxError> {
    if std::io::stdin().is_terminal() {
        return Ok(rpassword::prompt_password("API token: ")?);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line)
}

/// The cache and the account `which` names (or the only one).
fn open_cache(paths: &Paths, which: &Which) -> Result<(Store, crate::store::AccountRow), BoxError> {
    if !paths.db().exists() {
        return Err(session::SessionError::NotSignedIn.into());
    }
    let store = Store::open(&paths.db())?;
    let account = session::choose(&store, which.account.as_deref())?;
    Ok((store, account))
}

fn fmt_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// `quotabell status`: the same [`Snapshot`] the tray and the window show, as JSON or as text.
/// With several accounts and none named, the text shows each one; the JSON is the first
/// account's snapshot, whose `accounts` summarises them all.
fn status(
    paths: &Paths,
    which: &Which,
    json: bool,
    clock: &dyn Clock,
) -> Result<ExitCode, BoxError> {
    if !paths.db().exists() {
        return Err(session::SessionError::NotSignedIn.into());
    }
    let store = Store::open(&paths.db())?;
    let accounts = store.accounts()?;
    let chosen = match &which.account {
        Some(_) => session::choose(&store, which.account.as_deref())?,
        None => accounts
            .first()
            .cloned()
            .ok_or(session::SessionError::NotSignedIn)?,
    };
    let several = which.account.is_none() && accounts.len() > 1;
    let running = lock_says_running(paths);
    let engine_running = |_| running;
    let moment = Moment::new(clock.now_unix(), clock, &engine_running);
    let snap = dashboard::snapshot(&store, Some(chosen.id), &moment)?;
    if json {
        println!("{}", serde_json::to_string(&snap)?);
    } else if several {
        for a in &accounts {
            let snap = dashboard::snapshot(&store, Some(a.id), &moment)?;
            println!("[{}]", a.name);
            print!("{}", status_text(&snap));
        }
    } else {
        print!("{}", status_text(&snap));
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the profile's engine runs, by its lock file. Unknown (no lock file yet, no /proc)
/// trusts what the engine stored.
fn lock_says_running(paths: &Paths) -> bool {
    crate::lock::holder_running(&paths.lock()) != Some(false)
}

/// `quotabell accounts`: one line (or JSON object) per account.
fn accounts(paths: &Paths, json: bool, clock: &dyn Clock) -> Result<ExitCode, BoxError> {
    if !paths.db().exists() {
        println!("Not signed in.");
        return Ok(ExitCode::SUCCESS);
    }
    let store = Store::open(&paths.db())?;
    let running = lock_says_running(paths);
    let snap = dashboard::snapshot(
        &store,
        None,
        &Moment::new(clock.now_unix(), clock, &|_| running),
    )?;
    if snap.accounts.is_empty() {
        println!("Not signed in.");
    }
    let mut out = std::io::stdout().lock();
    for a in &snap.accounts {
        if json {
            writeln!(out, "{}", serde_json::to_string(a)?)?;
        } else {
            let synced = a.synced_ago.as_deref().unwrap_or("never synced");
            writeln!(
                out,
                "{:>3}  {:<28} {} on {} ({} plan) — {}, synced {synced}",
                a.account.id,
                a.account.name,
                a.account.email,
                a.account.server,
                a.account.plan,
                a.connection.as_str(),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The snapshot for a terminal; every word of it comes from the read model.
fn status_text(s: &Snapshot) -> String {
    let mut out = String::new();
    let mut line = |l: String| {
        out.push_str(&l);
        out.push('\n');
    };
    match &s.account {
        Some(a) if a.name != a.email => line(format!(
            "{} — {} on {} ({} plan)",
            a.name, a.email, a.server, a.plan
        )),
        Some(a) => line(format!("{} on {} ({} plan)", a.email, a.server, a.plan)),
        None => line("not signed in".into()),
    }
    for m in &s.meters {
        let note = m
            .note
            .as_ref()
            .map(|n| format!(" — {n}"))
            .unwrap_or_default();
        line(format!(
            "  {:<13} {:>6} / {:<6}{note}",
            m.label, m.used, m.limit
        ));
        if let Some(f) = &m.forecast {
            line(format!("  {:<13} {f}", ""));
        }
    }
    match &s.period {
        Some(p) => line(format!("  period        {} → {}", p.start, p.end)),
        None => line("  no usage cached yet".into()),
    }
    let connection = serde_json::to_value(s.connection)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let since = s
        .connection_since
        .map(|t| format!(" since {}", dashboard::ago(s.now, t)))
        .unwrap_or_default();
    let detail = s
        .connection_detail
        .as_ref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    line(format!("connection: {connection}{since}{detail}"));
    match s.last_synced_at {
        Some(t) => line(format!(
            "last synced: {} ({})",
            fmt_time(t),
            dashboard::ago(s.now, t)
        )),
        None => line("last synced: never".into()),
    }
    if let Some(t) = s.last_synced_at.filter(|_| !s.connection.is_live()) {
        line(format!(
            "offline — showing cached data from {}",
            fmt_time(t)
        ));
    }
    if let Some(until) = s.paused_until {
        line(format!("notifications paused until {}", fmt_time(until)));
    }
    out
}

/// `quotabell watch`: one engine per account, each on its own connection, until a signal.
/// An account whose engine cannot start (its token missing) or that the server signs out is
/// reported, and the others go on.
fn watch(paths: &Paths, cfg: EngineConfig) -> Result<ExitCode, BoxError> {
    let rt = runtime()?;
    rt.block_on(async {
        let lock = session::lock_profile(paths, "quotabell watch")?;
        if !paths.db().exists() {
            return Err(session::SessionError::NotSignedIn.into());
        }
        let accounts = Store::open(&paths.db())?.accounts()?;
        if accounts.is_empty() {
            return Err(session::SessionError::NotSignedIn.into());
        }
        let keychain: Arc<dyn Keychain> = Arc::new(OsKeychain::new());
        let notifier: Arc<DesktopNotifier> = Arc::new(DesktopNotifier::default());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        // One wake watch for all accounts: the machine sleeps, not an account.
        let wake = crate::wake::WakeWatch::new(Arc::new(SystemClock), cfg.wake_jump);
        let mut running = tokio::task::JoinSet::new();
        let mut failed = false;
        for account in accounts {
            let name = account.name.clone();
            let opened = session::open_engine(
                paths,
                account,
                keychain.clone(),
                notifier.clone(),
                Arc::new(SystemClock),
                cfg.clone(),
            )
            .await;
            match opened {
                Ok(engine) => {
                    let engine = engine.sharing_wake(wake.clone());
                    let stopped = stopped.clone();
                    running.spawn(async move { (name, engine.run(stopped).await) });
                }
                Err(e) => {
                    eprintln!("quotabell: {name}: {e}");
                    failed = true;
                }
            }
        }
        if running.is_empty() {
            return Err("no account's engine could start".into());
        }
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        });
        let mut signed_out = false;
        while let Some(done) = running.join_next().await {
            match done {
                Ok((_, Ok(Exit::Shutdown))) => {}
                Ok((name, Ok(Exit::SignedOut))) => {
                    eprintln!(
                        "quotabell: {name}: the server rejected the token; sign in again with `quotabell login`"
                    );
                    signed_out = true;
                }
                Ok((name, Err(e))) => {
                    eprintln!("quotabell: {name}: the engine stopped: {e}");
                    failed = true;
                }
                Err(e) => {
                    eprintln!("quotabell: an engine task failed: {e}");
                    failed = true;
                }
            }
        }
        drop(lock);
        Ok(if signed_out {
            ExitCode::from(3)
        } else if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = term => {} }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::{AccountInfo, BillingPeriod, Connection};

    /// `quotabell settings ARGS` on a fresh profile: the saved settings' JSON, or the error.
    fn settings(dir: &std::path::Path, args: &[&str]) -> Result<String, String> {
        let cli = Cli::try_parse_from(["quotabell", "settings"].iter().chain(args))
            .map_err(|e| e.to_string())?;
        let paths = Paths::resolve(Some(dir));
        dispatch(cli.command.unwrap(), &paths).map_err(|e| e.to_string())?;
        let s = Store::open(&paths.db()).unwrap().settings().unwrap();
        Ok(serde_json::to_string(&s).unwrap())
    }

    #[test]
    fn settings_go_through_the_windows_form_and_its_words() {
        let dir = tempfile::tempdir().unwrap();
        let ok = settings(
            dir.path(),
            &["--thresholds", "100,50,50", "--quiet", "22:00-07:30"],
        );
        let ok = ok.unwrap();
        assert!(
            ok.contains(r#""thresholds":[50,100]"#),
            "sorted, once each: {ok}"
        );
        assert!(ok.contains(r#""quiet_hours":[1320,450]"#), "{ok}");
        // What the window refuses, the command line refuses, with the window's words.
        let err = settings(dir.path(), &["--quiet", "+1:00-07:00"]).unwrap_err();
        assert_eq!(
            err,
            r#"--quiet: "+1:00" is not a time: use HH:MM, e.g. 22:00"#
        );
        let err = settings(dir.path(), &["--quiet", "07:00-07:00"]).unwrap_err();
        assert!(err.starts_with("--quiet: quiet hours must end"), "{err}");
        let err = settings(dir.path(), &["--thresholds", "0,80"]).unwrap_err();
        assert_eq!(err, "--thresholds: 0% is not a threshold: use 1 to 100");
        let err = settings(dir.path(), &["--quiet", "late"]).unwrap_err();
        assert!(err.contains("22:00-07:00, or off"), "{err}");
        // Nothing of a refused change was saved.
        let after = settings(dir.path(), &[]).unwrap();
        assert_eq!(after, ok);
        let off = settings(dir.path(), &["--quiet", "off"]).unwrap();
        assert!(off.contains(r#""quiet_hours":null"#), "{off}");
    }

    #[test]
    fn foresight_settings_are_validated_by_field() {
        let dir = tempfile::tempdir().unwrap();
        let ok = settings(
            dir.path(),
            &[
                "--early-warning-days",
                "7",
                "--runaway-factor",
                "off",
                "--refill-notice",
                "always",
                "--runaway-min-builds",
                "20",
            ],
        )
        .unwrap();
        assert!(ok.contains(r#""early_warning_days":7"#), "{ok}");
        assert!(ok.contains(r#""runaway_factor":null"#), "{ok}");
        assert!(ok.contains(r#""refill_notice":"always""#), "{ok}");
        assert!(ok.contains(r#""runaway_min_builds":20"#), "{ok}");
        let err = settings(dir.path(), &["--early-warning-days", "0"]).unwrap_err();
        assert!(
            err.starts_with("--early-warning-days: 0 days is no horizon"),
            "{err}"
        );
        let err = settings(dir.path(), &["--runaway-factor", "1"]).unwrap_err();
        assert!(
            err.starts_with("--runaway-factor: 1× is not a factor"),
            "{err}"
        );
        let err = settings(dir.path(), &["--runaway-factor", "fast"]).unwrap_err();
        assert!(
            err.starts_with("--runaway-factor: \"fast\" is not a number"),
            "{err}"
        );
        let err = settings(dir.path(), &["--early-warning-margin-hours", "999"]).unwrap_err();
        assert!(
            err.starts_with("--early-warning-margin-hours: use 0 to 240"),
            "{err}"
        );
        assert_eq!(
            settings(dir.path(), &[]).unwrap(),
            ok,
            "nothing refused was saved"
        );
        let off = settings(dir.path(), &["--early-warning-days", "off"]).unwrap();
        assert!(off.contains(r#""early_warning_days":null"#), "{off}");
    }

    #[test]
    fn history_status_is_a_build_status() {
        let parsed = Cli::try_parse_from(["quotabell", "history", "--status", "overage"]).unwrap();
        let Some(Command::History { status, .. }) = parsed.command else {
            panic!("history")
        };
        assert_eq!(status, Some(BuildStatus::Overage));
        let err = Cli::try_parse_from(["quotabell", "history", "--status", "failed"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("\"failed\" is not a build status: use accepted, overage or rejected"),
            "{err}"
        );
    }

    #[test]
    fn status_text_is_the_snapshot_in_the_read_model_words() {
        let now = 1_800_000_000;
        let mut s = dashboard::snapshot_signed_out(now, &SystemClock);
        s.account = Some(AccountInfo {
            id: 1,
            name: "dev@example.com".into(),
            email: "dev@example.com".into(),
            server: "http://127.0.0.1:8787".into(),
            plan: "Free".into(),
            hard_limit: true,
        });
        s.meters = vec![dashboard::meter("build_minutes", 100, 100, true)];
        s.period = Some(BillingPeriod {
            start: "2026-11-01T00:00:00Z".into(),
            end: "2026-12-01T00:00:00Z".into(),
        });
        s.connection = Connection::Offline;
        s.connection_detail = Some("cannot reach the server".into());
        s.last_synced_at = Some(now - 150);
        let text = status_text(&s);
        assert!(
            text.starts_with("dev@example.com on http://127.0.0.1:8787 (Free plan)\n"),
            "{text}"
        );
        assert!(
            text.contains("Build minutes    100 / 100    — at limit"),
            "{text}"
        );
        assert!(
            text.contains("connection: offline (cannot reach the server)"),
            "{text}"
        );
        assert!(text.contains("(2 min ago)"), "{text}");
        assert!(
            text.contains("offline — showing cached data from"),
            "{text}"
        );
    }

    #[test]
    fn nan_seconds_are_refused_not_a_panic() {
        assert!(secs(f64::NAN, 0.05, 3600.0).is_err());
        assert_eq!(
            secs(f64::INFINITY, 0.05, 3600.0).unwrap(),
            Duration::from_secs(3600)
        );
        assert!(Cli::try_parse_from(["quotabell", "watch", "--keepalive-secs", "NaN"]).is_ok());
    }
}
