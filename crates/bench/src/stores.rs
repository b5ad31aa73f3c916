//! `stores`: one build-post load against three deployments in one run — one instance on
//! SQLite, one on PostgreSQL, and several on one PostgreSQL database — with the same load
//! generator (`posts::round`). Clients are spread round-robin over the instances and over
//! many users (one per client by default): a real service has many users posting at once, and
//! posts of one user queue on that user's row lock whichever instance takes them.
//!
//! PostgreSQL is a throwaway cluster (the test bed's `Postgres`) on the same machine, unpinned:
//! the figures are what the machine does with the database on it.

use quotabell_testbed::Postgres;

use crate::launcher::{Launcher, ServerChild};
use crate::posts::{self, Round, Target};
use crate::report::{Section, ms, spread_text, thousands};
use crate::stats::Spread;
use crate::{BoxError, Common, sys};

/// The target for several instances on PostgreSQL.
const CLUSTER_TARGET: f64 = 3_000.0;

#[derive(clap::Args, Clone)]
#[group(id = "stores-options")]
pub struct Args {
    /// Concurrent keep-alive clients.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub clients: u32,
    /// Users the clients post as (client `w` as user `w % users`).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub users: u32,
    /// Instances in the several-instance deployment.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=16))]
    pub instances: u32,
    /// Length of one round, in seconds.
    #[arg(long, default_value_t = 5.0, value_parser = crate::seconds_in(0.0, 600.0, true))]
    pub seconds: f64,
    /// `serve --pg-writers` for each instance on PostgreSQL [default: the server's].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub pg_writers: Option<u32>,
}

impl Args {
    pub fn config(&self, common: &Common) -> Config {
        Config {
            rounds: common.rounds(5),
            clients: self.clients as usize,
            users: self.users as usize,
            instances: self.instances as usize,
            seconds: self.seconds,
            server_args: self
                .pg_writers
                .map(|n| vec!["--pg-writers".to_owned(), n.to_string()])
                .unwrap_or_default(),
        }
    }
}

pub struct Config {
    pub rounds: usize,
    pub clients: usize,
    pub users: usize,
    pub instances: usize,
    pub seconds: f64,
    pub server_args: Vec<String>,
}

pub struct Deployment {
    pub label: String,
    pub rounds: Vec<Round>,
    /// CPU of the instances and of PostgreSQL's processes per second of round, in cores.
    pub server_cores: Vec<f64>,
    pub errors: Vec<String>,
}

pub struct Report {
    pub clients: usize,
    pub users: usize,
    pub seconds: f64,
    pub deployments: Vec<Deployment>,
}

/// PostgreSQL's processes: the postmaster and its children (backends, writer, WAL writer).
fn postgres_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .collect()
}

pub async fn run(launcher: &Launcher, cfg: &Config) -> Result<Report, BoxError> {
    let pg = Postgres::start()?;
    println!("[stores] PostgreSQL cluster on 127.0.0.1:{}", pg.port());
    let mut report = Report {
        clients: cfg.clients,
        users: cfg.users,
        seconds: cfg.seconds,
        deployments: Vec::new(),
    };
    let plans: [(String, Option<usize>); 3] = [
        ("1 instance, SQLite".into(), None),
        ("1 instance, PostgreSQL".into(), Some(1)),
        (
            format!("{} instances, one PostgreSQL", cfg.instances),
            Some(cfg.instances),
        ),
    ];
    for (i, (label, instances)) in plans.into_iter().enumerate() {
        let servers = match instances {
            None => vec![launcher.start("stores-sqlite")?],
            Some(n) => {
                let db = format!("stores{i}");
                pg.create_database(&db)?;
                launcher.start_cluster("stores-pg", &pg.url(&db), n, &cfg.server_args)?
            }
        };
        report
            .deployments
            .push(measure(&label, &servers, cfg).await?);
    }
    Ok(report)
}

async fn measure(
    label: &str,
    servers: &[ServerChild],
    cfg: &Config,
) -> Result<Deployment, BoxError> {
    let client = posts::client()?;
    let tokens: Vec<String> = (0..cfg.users)
        .map(|u| servers[0].add_user(&format!("stores{u}@bench.invalid"), "pro"))
        .collect::<Result<_, _>>()?;
    // Client w posts to instance w % n as user w % users.
    let targets: Vec<Target> = (0..cfg.clients.max(cfg.users))
        .map(|w| Target {
            url: format!("http://{}/api/v1/builds", servers[w % servers.len()].addr),
            token: tokens[w % tokens.len()].clone(),
        })
        .collect();
    // Sampled after the warm-up, so that the pools' connections exist.
    println!("[stores] {label}: warm-up");
    let _ = posts::round(&client, &targets, cfg.clients, 1.0).await;
    let pids: Vec<u32> = servers
        .iter()
        .map(|s| s.pid)
        .chain(if label.contains("PostgreSQL") {
            postgres_pids()
        } else {
            Vec::new()
        })
        .collect();
    let mut d = Deployment {
        label: label.to_owned(),
        rounds: Vec::new(),
        server_cores: Vec::new(),
        errors: Vec::new(),
    };
    for r in 0..cfg.rounds {
        // PostgreSQL's backends of the round are the instances' pooled connections, alive
        // throughout; a process missing at either end is left out of both.
        let cpu0: Vec<Option<f64>> = pids.iter().map(|&p| sys::stat_cpu_seconds(p)).collect();
        let (round, samples) = posts::round(&client, &targets, cfg.clients, cfg.seconds).await;
        let used: f64 = pids
            .iter()
            .zip(&cpu0)
            .filter_map(|(&p, a)| Some(sys::stat_cpu_seconds(p)? - (*a)?))
            .sum();
        d.server_cores.push(used / round.secs);
        println!(
            "[stores] {label} round {}/{}: {:>7.0} builds/s, POST p50 {:.2} ms p99 {:.2} ms, errors {}",
            r + 1,
            cfg.rounds,
            round.rate(),
            round.p50_ms,
            round.p99_ms,
            round.errors
        );
        d.errors.extend(samples);
        d.rounds.push(round);
    }
    d.errors.truncate(3);
    Ok(d)
}

impl Report {
    pub fn section(&self, command: &str) -> Section {
        let mut s = Section::new(
            "Build posts by store and instances",
            crate::report::SUMMARY_COLUMNS,
        );
        s.note(format!("command: {command}"));
        s.note(format!(
            "{} clients as {} users, {} s rounds; PostgreSQL 15 on the same machine",
            self.clients, self.users, self.seconds
        ));
        for d in &self.deployments {
            let rate = Spread::of(&d.rounds.iter().map(Round::rate).collect::<Vec<_>>());
            let (m, sp) = spread_text(rate, |v| format!("{}/s", thousands(v)));
            let several = !d.label.starts_with("1 ");
            let (target, verdict) = if several && d.label.contains("PostgreSQL") {
                (
                    "≥ 3,000/s".to_owned(),
                    rate.map_or("n/a".into(), |r| {
                        format!(
                            "{} ({:.2}× target)",
                            if r.median >= CLUSTER_TARGET {
                                "met"
                            } else {
                                "NOT met"
                            },
                            r.median / CLUSTER_TARGET
                        )
                    }),
                )
            } else {
                ("–".to_owned(), "–".to_owned())
            };
            s.row([
                d.label.clone(),
                "accepted builds per second".into(),
                m,
                sp,
                target,
                verdict,
            ]);
            let p50 = Spread::of(&d.rounds.iter().map(|r| r.p50_ms).collect::<Vec<_>>());
            let p99 = Spread::of(&d.rounds.iter().map(|r| r.p99_ms).collect::<Vec<_>>());
            for (name, v) in [("POST latency p50", p50), ("POST latency p99", p99)] {
                let (m, sp) = spread_text(v, ms);
                s.row([d.label.clone(), name.into(), m, sp, "–".into(), "–".into()]);
            }
            let cores = Spread::of(&d.server_cores);
            let (m, sp) = spread_text(cores, |v| format!("{v:.2} cores"));
            s.row([
                d.label.clone(),
                "CPU of the server side (instances + PostgreSQL)".into(),
                m,
                sp,
                "–".into(),
                "–".into(),
            ]);
            let errors: u64 = d.rounds.iter().map(|r| r.errors).sum();
            if errors > 0 {
                s.note(format!(
                    "{}: {errors} error(s), e.g. {:?}",
                    d.label, d.errors
                ));
            }
        }
        s
    }
}
