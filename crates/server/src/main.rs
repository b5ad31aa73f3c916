//! `quotabell-server`: the reference backend and its operator commands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use quotabell_server::account::{self, Notice, Severity};
use quotabell_server::api::StreamSettings;
use quotabell_server::app::{ServeConfig, Server};
use quotabell_server::error::StoreError;
use quotabell_server::live::follow;
use quotabell_server::store::{self, Location, Sql};
use quotabell_server::writer::Retention;
use quotabell_server::{auth, demo, paths};

#[derive(Parser)]
#[command(
    name = "quotabell-server",
    version,
    about = "Quotabell reference backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API.
    Serve(ServeArgs),
    /// Serve with a demo user on the Free plan and a simulated build plugin.
    Demo {
        #[command(flatten)]
        serve: ServeArgs,
        /// Where the demo token is written (mode 0600).
        #[arg(long, env = "QUOTABELL_DEMO_TOKEN_FILE")]
        token_file: Option<PathBuf>,
        /// Time between simulated builds.
        #[arg(long, default_value_t = 1000)]
        build_interval_ms: u64,
    },
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage plans.
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Send a notice event to one user or to all.
    Notice {
        #[arg(long, env = "QUOTABELL_DB")]
        db: Option<Location>,
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        user: Option<String>,
        #[arg(long)]
        all: bool,
        #[arg(long)]
        title: String,
        #[arg(long)]
        body: String,
        #[arg(long)]
        url: Option<String>,
        #[arg(long, value_enum, default_value = "info")]
        severity: Severity,
    },
    /// Billing periods.
    #[command(subcommand)]
    Period(PeriodCommand),
    /// The event log.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Copy every table of one database into another, empty one (e.g. SQLite into PostgreSQL).
    Migrate {
        /// The database to read (a SQLite path or a postgres:// URL); left unchanged.
        #[arg(long)]
        from: Location,
        /// The database to fill; created and migrated as needed, and it must hold no users.
        #[arg(long)]
        to: Location,
    },
}

#[derive(Args, Clone)]
struct ServeArgs {
    #[arg(long, env = "QUOTABELL_LISTEN", default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    #[arg(long, env = "QUOTABELL_DB")]
    db: Option<Location>,
    /// Seconds between `:` keepalive comments on idle streams.
    #[arg(long, default_value_t = 15.0)]
    keepalive_secs: f64,
    /// Reconnection delay suggested to clients in the stream's `retry:` field.
    #[arg(long, default_value_t = 1000)]
    retry_ms: u64,
    /// Events kept per user; a cursor older than that gets `sync.reset` / 410.
    #[arg(long, default_value_t = 1_000_000)]
    retain_events: u64,
    /// Time between runs of the background jobs (period rolls, pruning) on the leader.
    #[arg(long, default_value_t = 1000)]
    jobs_interval_ms: u64,
    /// PostgreSQL: time between re-reads of every live stream's newest id, in case a wake-up
    /// was lost.
    #[arg(long, default_value_t = 1000)]
    backstop_ms: u64,
    /// PostgreSQL: writer threads, each with its own connection (a user's builds always go to
    /// the same one).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pg_writers: u32,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user; the token is printed alone on the last line of stdout and never stored.
    Add {
        #[arg(long, env = "QUOTABELL_DB")]
        db: Option<Location>,
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "free")]
        plan: String,
    },
    /// Give a user a new token; the old one stops working (within the token cache's few
    /// seconds on a running server). Printed alone on the last line, never stored.
    Token {
        #[arg(long, env = "QUOTABELL_DB")]
        db: Option<Location>,
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
enum PlanCommand {
    /// Move a user to another plan (announced as `plan.changed`).
    Set {
        #[arg(long, env = "QUOTABELL_DB")]
        db: Option<Location>,
        #[arg(long)]
        user: String,
        #[arg(long)]
        plan: String,
    },
}

#[derive(Subcommand)]
enum PeriodCommand {
    /// Start a new billing period for a user now (announced as `quota.reset`).
    Roll {
        #[arg(long, env = "QUOTABELL_DB")]
        db: Option<Location>,
        #[arg(long)]
        user: String,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Empty a user's event log and give it a new stream epoch (as a restore would).
    Reset {
        #[arg(long, env = "QUOTABELL_DB")]
        db: Option<Location>,
        #[arg(long)]
        user: String,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quotabell-server: {e}");
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error>;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Operator commands talk to PostgreSQL through tokio-postgres, whose connection tasks need a
/// runtime with a worker (a current-thread runtime would not drive them from `block_on`).
fn command_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
}

/// Runs `f` on the database at `db` (the default file if none) in one write transaction, with
/// the wake-up for the users `f` names (user, newest event id; see `follow::wake`).
fn write<T>(
    db: Option<Location>,
    f: impl FnOnce(&mut dyn Sql) -> Result<(T, Vec<(i64, u64)>), StoreError>,
) -> Result<T, BoxError> {
    let rt = command_runtime()?;
    let location = db.unwrap_or_else(|| Location::Sqlite(paths::default_db()));
    let mut conn = store::open_command(&location, rt.handle())?;
    let sql: &mut dyn Sql = &mut *conn;
    let value = sql.write(|sql| {
        let (value, newest) = f(sql)?;
        follow::wake(sql, &newest)?;
        Ok(value)
    })?;
    drop(conn);
    Ok(value)
}

fn run(cli: Cli) -> Result<(), BoxError> {
    match cli.command {
        Command::Serve(args) => serve(args, Location::Sqlite(paths::default_db()), None),
        Command::Demo {
            serve: args,
            token_file,
            build_interval_ms,
        } => {
            let location = args
                .db
                .clone()
                .unwrap_or_else(|| Location::Sqlite(paths::demo_db()));
            let token = write(Some(location.clone()), |sql| demo::prepare_user(sql, now()))?;
            let token_file = token_file.unwrap_or_else(paths::demo_token_file);
            demo::write_token_file(&token_file, &token)?;
            println!("demo user: {}", demo::DEMO_EMAIL);
            println!("demo token (also in {}): {token}", token_file.display());
            serve(
                args,
                location,
                Some((token, Duration::from_millis(build_interval_ms.max(10)))),
            )
        }
        Command::User(UserCommand::Add { db, email, plan }) => {
            let token = auth::generate();
            let id = write(db, |sql| {
                Ok((
                    account::create(sql, &email, &plan, &auth::hash(&token), now())?,
                    Vec::new(),
                ))
            })?;
            println!("created user {id} <{email}> on plan {plan}; token (shown once):");
            println!("{token}");
            Ok(())
        }
        Command::User(UserCommand::Token { db, email }) => {
            let token = auth::generate();
            write(db, |sql| {
                let id = account::id_by_email(sql, &email)?;
                account::set_token_hash(sql, id, &auth::hash(&token))?;
                Ok(((), Vec::new()))
            })?;
            println!("new token for <{email}>; the old one is revoked (shown once):");
            println!("{token}");
            Ok(())
        }
        Command::Plan(PlanCommand::Set { db, user, plan }) => {
            let n = write(db, |sql| {
                let id = account::id_by_email(sql, &user)?;
                account::lock(sql, &[id])?;
                let evs = account::set_plan(sql, id, &plan, now())?;
                Ok((evs.len(), follow::newest(&evs)))
            })?;
            println!("{user} is now on plan {plan} ({n} events)");
            Ok(())
        }
        Command::Notice {
            db,
            user,
            all: _,
            title,
            body,
            url,
            severity,
        } => {
            let notice = Notice {
                title: &title,
                body: &body,
                url: url.as_deref(),
                severity,
            };
            let n = write(db, |sql| {
                let users = match &user {
                    Some(email) => vec![account::id_by_email(sql, email)?],
                    None => account::all_ids(sql)?,
                };
                account::lock(sql, &users)?;
                let mut evs = Vec::with_capacity(users.len());
                for id in &users {
                    evs.push(account::notice(sql, *id, &notice, now())?);
                }
                Ok((users.len(), follow::newest(&evs)))
            })?;
            println!("notice sent to {n} user(s)");
            Ok(())
        }
        Command::Period(PeriodCommand::Roll { db, user }) => {
            write(db, |sql| {
                let id = account::id_by_email(sql, &user)?;
                account::lock(sql, &[id])?;
                Ok(((), follow::newest(&account::roll_period(sql, id, now())?)))
            })?;
            println!("new billing period started for {user}");
            Ok(())
        }
        Command::Events(EventsCommand::Reset { db, user }) => {
            let epoch = write(db, |sql| {
                let id = account::id_by_email(sql, &user)?;
                account::lock(sql, &[id])?;
                let epoch = account::reset_events(sql, id)?;
                Ok((epoch, vec![(id, follow::EPOCH_CHANGED)]))
            })?;
            println!("event log of {user} reset; new stream epoch {epoch}");
            Ok(())
        }
        Command::Migrate { from, to } => {
            let rt = command_runtime()?;
            let mut source = store::open_command(&from, rt.handle())?;
            let mut target = store::open_command(&to, rt.handle())?;
            let copied = store::copy::all(&mut *source, &mut *target)?;
            println!("copied {copied} rows from {from} to {to}");
            Ok(())
        }
    }
}

fn serve(
    args: ServeArgs,
    default_db: Location,
    demo_plugin: Option<(String, Duration)>,
) -> Result<(), BoxError> {
    let cfg = ServeConfig {
        listen: args.listen,
        db: args.db.unwrap_or(default_db),
        stream: StreamSettings {
            keepalive: Duration::from_secs_f64(args.keepalive_secs.clamp(0.05, 3600.0)),
            retry: Duration::from_millis(args.retry_ms),
        },
        retention: Retention {
            events_per_user: args.retain_events.max(1),
        },
        jobs_every: Duration::from_millis(args.jobs_interval_ms.clamp(10, 3_600_000)),
        backstop: Duration::from_millis(args.backstop_ms.clamp(10, 3_600_000)),
        pg_writers: args.pg_writers as usize,
    };
    // The read pool has 8 connections: more blocking threads would only wait for them (and
    // each costs a stack and a malloc arena).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(16)
        .build()?;
    rt.block_on(async move {
        let server = Server::bind(&cfg).await?;
        let addr = server.local_addr()?;
        // Tests and scripts read this line to learn the port when listening on port 0.
        println!("listening on http://{addr}");
        tracing::info!(%addr, db = %cfg.db, "serving");
        if let Some((token, interval)) = demo_plugin {
            tokio::spawn(demo::run_plugin(addr, token, interval));
        }
        server.run(shutdown_signal()).await?;
        Ok(())
    })
}
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
