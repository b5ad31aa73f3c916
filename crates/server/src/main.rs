//! `quotabell-server`: the reference backend and its operator commands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use rusqlite::Connection;

use quotabell_server::account::{self, Notice, Severity};
use quotabell_server::api::StreamSettings;
use quotabell_server::app::{ServeConfig, Server};
use quotabell_server::writer::Retention;
use quotabell_server::{auth, db, demo, paths};

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
        db: Option<PathBuf>,
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
}

#[derive(Args, Clone)]
struct ServeArgs {
    #[arg(long, env = "QUOTABELL_LISTEN", default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    #[arg(long, env = "QUOTABELL_DB")]
    db: Option<PathBuf>,
    /// Seconds between `:` keepalive comments on idle streams.
    #[arg(long, default_value_t = 15.0)]
    keepalive_secs: f64,
    /// Reconnection delay suggested to clients in the stream's `retry:` field.
    #[arg(long, default_value_t = 3000)]
    retry_ms: u64,
    /// Events kept per user; a cursor older than that gets `sync.reset` / 410.
    #[arg(long, default_value_t = 1_000_000)]
    retain_events: u64,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user; the token is printed alone on the last line of stdout and never stored.
    Add {
        #[arg(long, env = "QUOTABELL_DB")]
        db: Option<PathBuf>,
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "free")]
        plan: String,
    },
}

#[derive(Subcommand)]
enum PlanCommand {
    /// Move a user to another plan (announced as `plan.changed`).
    Set {
        #[arg(long, env = "QUOTABELL_DB")]
        db: Option<PathBuf>,
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
        db: Option<PathBuf>,
        #[arg(long)]
        user: String,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Empty a user's event log and give it a new stream epoch (as a restore would).
    Reset {
        #[arg(long, env = "QUOTABELL_DB")]
        db: Option<PathBuf>,
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

fn open(db: Option<PathBuf>) -> Result<Connection, BoxError> {
    Ok(db::open_writer(&db.unwrap_or_else(paths::default_db))?)
}

fn run(cli: Cli) -> Result<(), BoxError> {
    match cli.command {
        Command::Serve(args) => serve(args, paths::default_db(), None),
        Command::Demo {
            serve: args,
            token_file,
            build_interval_ms,
        } => {
            let db_path = args.db.clone().unwrap_or_else(paths::demo_db);
            let mut conn = db::open_writer(&db_path)?;
            let token = demo::prepare_user(&mut conn, now())?;
            drop(conn);
            let token_file = token_file.unwrap_or_else(paths::demo_token_file);
            demo::write_token_file(&token_file, &token)?;
            println!("demo user: {}", demo::DEMO_EMAIL);
            println!("demo token (also in {}): {token}", token_file.display());
            serve(
                args,
                db_path,
                Some((token, Duration::from_millis(build_interval_ms.max(10)))),
            )
        }
        Command::User(UserCommand::Add { db, email, plan }) => {
            let conn = open(db)?;
            let token = auth::generate();
            let id = account::create(&conn, &email, &plan, &auth::hash(&token), now())?;
            println!("created user {id} <{email}> on plan {plan}; token (shown once):");
            println!("{token}");
            Ok(())
        }
        Command::Plan(PlanCommand::Set { db, user, plan }) => {
            let mut conn = open(db)?;
            let tx = conn.transaction()?;
            let id = account::id_by_email(&tx, &user)?;
            let evs = account::set_plan(&tx, id, &plan, now())?;
            tx.commit()?;
            println!("{user} is now on plan {plan} ({} events)", evs.len());
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
            let mut conn = open(db)?;
            let tx = conn.transaction()?;
            let users = match user {
                Some(email) => vec![account::id_by_email(&tx, &email)?],
                None => account::all_ids(&tx)?,
            };
            let notice = Notice {
                title: &title,
                body: &body,
                url: url.as_deref(),
                severity,
            };
            for id in &users {
                account::notice(&tx, *id, &notice, now())?;
            }
            tx.commit()?;
            println!("notice sent to {} user(s)", users.len());
            Ok(())
        }
        Command::Period(PeriodCommand::Roll { db, user }) => {
            let mut conn = open(db)?;
            let tx = conn.transaction()?;
            let id = account::id_by_email(&tx, &user)?;
            account::roll_period(&tx, id, now())?;
            tx.commit()?;
            println!("new billing period started for {user}");
            Ok(())
        }
        Command::Events(EventsCommand::Reset { db, user }) => {
            let mut conn = open(db)?;
            let tx = conn.transaction()?;
            let id = account::id_by_email(&tx, &user)?;
            let epoch = account::reset_events(&tx, id)?;
            tx.commit()?;
            println!("event log of {user} reset; new stream epoch {epoch}");
            Ok(())
        }
    }
}

fn serve(
    args: ServeArgs,
    default_db: PathBuf,
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
        tracing::info!(%addr, db = %cfg.db.display(), "serving");
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
