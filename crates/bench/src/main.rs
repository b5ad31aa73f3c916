//! `quotabell-bench`: runs the real `quotabell-server` as a child process on a throwaway
//! database and measures build posts per second (`posts`) and the latency of one event fanned
//! out to many SSE streams of one user (`fanout`), also side by side with nginx + nchan in one
//! run (`fanout-vs-nchan`). With the real engine (`quotabell watch`) in
//! a private desktop session it measures build → desktop notification latency
//! (`notify-latency`), catching up on 100,000 missed events (`catchup`) and the cost of
//! staying connected to an idle server (`idle`). With the desktop app (`quotabell-app`) in the
//! same kind of session it measures the start until the tray is up (`app-start`) and the memory
//! of all the app's processes with the window never opened, open, and closed (`app-memory`).
//!
//! The server, the desktop session, the engine profile, the tray watcher and the X11 helpers
//! are the test bed's (crates/testbed), the same the end-to-end tests run against. Each
//! benchmark module owns its command-line options (its `Args`) and the rows of its summary;
//! report.rs prints them.

mod app;
mod cache;
mod catchup;
mod fanout;
mod idle;
mod launcher;
mod monitor;
mod nchan;
mod notify;
mod posts;
mod recovery;
mod report;
mod sse;
mod stats;
mod stores;
mod sys;
mod vs_nchan;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use quotabell_testbed::process::CpuMask;

use crate::launcher::{EngineArgs, Launcher};
use crate::report::{SUMMARY_COLUMNS, Section};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser)]
#[command(
    name = "quotabell-bench",
    version,
    about = "Benchmarks the real quotabell-server (build posts per second, SSE fan-out latency), the real engine, quotabell watch (notification latency, catch-up, idle cost) and the desktop app (start to tray, memory)"
)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
    #[command(flatten)]
    common: Common,
}

/// Options of every benchmark. Global, so that they may stand before or after the
/// subcommand, as they could when the benchmark was a positional argument.
#[derive(clap::Args)]
#[group(id = "common-options")]
pub struct Common {
    /// The server binary [default: quotabell-server next to this executable].
    #[arg(long, global = true)]
    server_bin: Option<PathBuf>,
    /// The engine binary [default: quotabell next to this executable].
    #[arg(long, global = true)]
    engine_bin: Option<PathBuf>,
    /// The desktop app binary [default: quotabell-app next to this executable].
    #[arg(long, global = true)]
    app_bin: Option<PathBuf>,
    /// Rounds per benchmark [default: 5 for posts, 10 for fanout (per server and block in
    /// fanout-vs-nchan), 3 for notify-latency and catchup, 2 for idle, 20 starts of each kind
    /// for app-start].
    #[arg(long, global = true, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: Option<u32>,
    /// Run the server under `taskset -c K` [default: the first allowed CPU when there are 2+].
    #[arg(long, global = true)]
    server_cpu: Option<usize>,
    /// Pin the bench itself to CPU K [default: the second allowed CPU when there are 2+].
    #[arg(long, global = true)]
    client_cpu: Option<usize>,
    /// Pin nothing.
    #[arg(long, global = true, conflicts_with_all = ["server_cpu", "client_cpu"])]
    no_pin: bool,
}

impl Common {
    /// `--rounds`, or the benchmark's own default.
    pub fn rounds(&self, default: usize) -> usize {
        self.rounds.map_or(default, |r| r as usize)
    }
}

/// A clap parser for a number of seconds in `[min, max]`, or `(min, max]` when `open_min`.
pub fn seconds_in(
    min: f64,
    max: f64,
    open_min: bool,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |text| {
        let v: f64 = text.parse().map_err(|e| format!("{e}"))?;
        let low_ok = if open_min { v > min } else { v >= min };
        if low_ok && v <= max {
            Ok(v)
        } else {
            Err(format!(
                "must be in {}{min}, {max}]",
                if open_min { "(" } else { "[" }
            ))
        }
    }
}

/// The benchmarks; the combined ones run their parts in the order listed.
#[derive(Subcommand)]
enum Bench {
    /// Backend: accepted build posts per second.
    Posts(posts::Args),
    /// Backend: one event to many SSE streams of one user.
    Fanout(fanout::Args),
    /// Backend: posts, then fanout.
    All {
        #[command(flatten)]
        posts: posts::Args,
        #[command(flatten)]
        fanout: fanout::Args,
    },
    /// Backend: fanout against Quotabell and against nginx + nchan in one run, with ratios.
    FanoutVsNchan(vs_nchan::Args),
    /// Backend: build posts on 1 instance on SQLite, 1 on PostgreSQL and several on one
    /// PostgreSQL, side by side.
    Stores(stores::Args),
    /// Backend: SIGKILL of one of several instances on PostgreSQL; time until its streams
    /// resume elsewhere.
    Recovery(recovery::Args),
    /// Engine: build POST → D-Bus `Notify` call of `quotabell watch`.
    NotifyLatency {
        #[command(flatten)]
        notify: notify::Args,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Engine: catching up on 100,000 missed events.
    Catchup {
        #[command(flatten)]
        catchup: catchup::Args,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Engine: memory and wake-ups while connected to an idle server.
    Idle {
        #[command(flatten)]
        idle: idle::Args,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Engine: notify-latency, catchup, then idle.
    Engine {
        #[command(flatten)]
        notify: notify::Args,
        #[command(flatten)]
        catchup: catchup::Args,
        #[command(flatten)]
        idle: idle::Args,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Desktop app: spawn → tray item registered, signed in and signed out.
    AppStart(app::Args),
    /// Desktop app: PSS/RSS of all its processes, window never opened, open, closed.
    AppMemory(app::Args),
    /// Desktop app: app-start, then app-memory.
    App(app::Args),
}

impl Bench {
    /// Whether the run holds many SSE streams open, and how many (for the file limit).
    fn streams(&self) -> Option<u32> {
        match self {
            Self::Fanout(f) | Self::All { fanout: f, .. } => Some(f.streams),
            Self::FanoutVsNchan(v) => Some(v.streams),
            _ => None,
        }
    }

    fn engine(&self) -> bool {
        matches!(
            self,
            Self::NotifyLatency { .. }
                | Self::Catchup { .. }
                | Self::Idle { .. }
                | Self::Engine { .. }
        )
    }

    fn app(&self) -> bool {
        matches!(self, Self::AppStart(_) | Self::AppMemory(_) | Self::App(_))
    }
}

fn main() -> ExitCode {
    // reqwest may be built with quotabell-core's TLS features (rustls without a default
    // provider) when the workspace is built together: install one before any client exists.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quotabell-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A binary the bench runs, and what to say when it is missing.
struct Binary {
    name: &'static str,
    what: &'static str,
    build: &'static str,
    flag: &'static str,
}

const SERVER: Binary = Binary {
    name: "quotabell-server",
    what: "server binary",
    build: "`cargo build --release -p quotabell-server`",
    flag: "--server-bin",
};
const ENGINE: Binary = Binary {
    name: "quotabell",
    what: "engine binary",
    build: "`cargo build --release -p quotabell-core`",
    flag: "--engine-bin",
};
const APP: Binary = Binary {
    name: "quotabell-app",
    what: "app binary",
    build: "`cargo build --release -p quotabell-app` or the Tauri bundler",
    flag: "--app-bin",
};

impl Binary {
    /// The path given on the command line, or the workspace's own; it must exist.
    fn locate(&self, given: &Option<PathBuf>) -> Result<PathBuf, BoxError> {
        let bin = match given {
            Some(b) => b.clone(),
            None => quotabell_testbed::workspace_bin(self.name)?,
        };
        if !bin.is_file() {
            return Err(format!(
                "{} {} not found (build it with {}, or pass {})",
                self.what,
                bin.display(),
                self.build,
                self.flag
            )
            .into());
        }
        Ok(bin)
    }
}

/// The engine and app binaries of a run, found before anything starts: each is there exactly
/// when the run's benchmarks use it, so the accessors below are only called then.
struct Binaries {
    engine: Option<PathBuf>,
    app: Option<PathBuf>,
}

impl Binaries {
    fn engine(&self) -> PathBuf {
        self.engine.clone().unwrap_or_default()
    }
    fn app(&self) -> PathBuf {
        self.app.clone().unwrap_or_default()
    }
}

/// What a run measures, each part with its settings.
#[derive(Default)]
struct Plan {
    posts: Option<posts::Config>,
    fanout: Option<fanout::Config>,
    vs_nchan: Option<vs_nchan::Config>,
    stores: Option<stores::Config>,
    recovery: Option<recovery::Config>,
    notify: Option<notify::Config>,
    catchup: Option<catchup::Config>,
    idle: Option<idle::Config>,
    app: Option<app::Config>,
}

/// The results of a run.
#[derive(Default)]
struct Reports {
    posts: Option<posts::Report>,
    fanout: Option<fanout::Report>,
    notify: Option<notify::Report>,
    catchup: Option<catchup::Report>,
    idle: Option<idle::Report>,
    app: Option<app::Report>,
    vs_nchan: Option<vs_nchan::Report>,
    stores: Option<stores::Report>,
    recovery: Option<recovery::Report>,
}

fn plan(cli: &Cli, bins: &Binaries, launcher: &Launcher) -> Plan {
    let c = &cli.common;
    let mut p = Plan::default();
    match &cli.bench {
        Bench::Posts(a) => p.posts = Some(a.config(c)),
        Bench::Fanout(a) => p.fanout = Some(a.config(c)),
        Bench::All { posts, fanout } => {
            p.posts = Some(posts.config(c));
            p.fanout = Some(fanout.config(c));
        }
        Bench::FanoutVsNchan(a) => p.vs_nchan = Some(a.config(c)),
        Bench::Stores(a) => p.stores = Some(a.config(c)),
        Bench::Recovery(a) => p.recovery = Some(a.config(c)),
        Bench::NotifyLatency { notify, engine } => {
            p.notify = Some(notify.config(c, engine, bins.engine(), launcher))
        }
        Bench::Catchup { catchup, engine } => {
            p.catchup = Some(catchup.config(c, engine, bins.engine()))
        }
        Bench::Idle { idle, engine } => p.idle = Some(idle.config(c, engine, bins.engine())),
        Bench::Engine {
            notify,
            catchup,
            idle,
            engine,
        } => {
            p.notify = Some(notify.config(c, engine, bins.engine(), launcher));
            p.catchup = Some(catchup.config(c, engine, bins.engine()));
            p.idle = Some(idle.config(c, engine, bins.engine()));
        }
        Bench::AppStart(a) | Bench::AppMemory(a) | Bench::App(a) => {
            let start = matches!(cli.bench, Bench::AppStart(_) | Bench::App(_));
            let memory = matches!(cli.bench, Bench::AppMemory(_) | Bench::App(_));
            p.app = Some(a.config(c, bins.engine(), bins.app(), start, memory));
        }
    }
    p
}

fn run(cli: Cli) -> Result<(), BoxError> {
    let bin = SERVER.locate(&cli.common.server_bin)?;
    let bins = Binaries {
        engine: (cli.bench.engine() || cli.bench.app())
            .then(|| ENGINE.locate(&cli.common.engine_bin))
            .transpose()?,
        app: cli
            .bench
            .app()
            .then(|| APP.locate(&cli.common.app_bin))
            .transpose()?,
    };

    println!("machine: {}", sys::machine());
    match sys::raise_nofile() {
        Ok((before, after, hard)) => {
            println!(
                "RLIMIT_NOFILE: soft {before} -> {after} (hard {hard}); the server inherits it"
            );
            if let Some(streams) = cli.bench.streams() {
                let needed = u64::from(streams) + 200;
                if after < needed {
                    println!(
                        "warning: {after} file descriptors may be too few for {needed} streams"
                    );
                }
            }
        }
        Err(e) => println!("RLIMIT_NOFILE: cannot raise ({e})"),
    }

    let (launcher, client_cpus) = pinning(&cli, bin)?;
    let workers = client_cpus.max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    println!("bench runtime: tokio, {workers} worker thread(s)");

    let plan = plan(&cli, &bins, &launcher);
    if cli.bench.engine() {
        println!(
            "engine benchmarks: the engine, D-Bus, keyring and dunst run on the bench's CPUs; dbus-monitor on all allowed CPUs"
        );
    }
    // Servers, engines and desktop daemons are started from this (the main) thread inside
    // block_on, which matters for PR_SET_PDEATHSIG: it fires when the thread that started the
    // child ends.
    let reports = rt.block_on(async {
        let mut r = Reports::default();
        if let Some(cfg) = &plan.posts {
            r.posts = Some(posts::run(&launcher, cfg).await?);
        }
        if let Some(cfg) = &plan.fanout {
            r.fanout = Some(fanout::run(&launcher, cfg).await?);
        }
        if let Some(cfg) = &plan.vs_nchan {
            r.vs_nchan = Some(vs_nchan::run(&launcher, cfg).await?);
        }
        if let Some(cfg) = &plan.stores {
            r.stores = Some(stores::run(&launcher, cfg).await?);
        }
        if let Some(cfg) = &plan.recovery {
            r.recovery = Some(recovery::run(&launcher, cfg).await?);
        }
        if let Some(cfg) = &plan.notify {
            r.notify = Some(notify::run(&launcher, cfg).await?);
        }
        if let Some(cfg) = &plan.catchup {
            r.catchup = Some(catchup::run(&launcher, cfg).await?);
        }
        if let Some(cfg) = &plan.idle {
            r.idle = Some(idle::run(&launcher, cfg).await?);
        }
        if let Some(cfg) = &plan.app {
            r.app = Some(app::run(&launcher, cfg).await?);
        }
        Ok::<_, BoxError>(r)
    })?;
    rt.shutdown_timeout(Duration::from_secs(2));
    println!(
        "bench process CPU time: {:.1} s (user + system)",
        sys::own_cpu_seconds()
    );
    println!();
    print(&reports);
    Ok(())
}

/// Every summary of the run, then the count of errors left out of the figures.
fn print(r: &Reports) {
    if r.posts.is_some() || r.fanout.is_some() {
        let mut s = Section::new("Summary", SUMMARY_COLUMNS);
        if let Some(p) = &r.posts {
            p.summarize(&mut s);
        }
        if let Some(f) = &r.fanout {
            f.summarize(&mut s);
        }
        s.print();
    }
    if r.notify.is_some() || r.catchup.is_some() || r.idle.is_some() {
        let mut s = Section::new("Engine summary", SUMMARY_COLUMNS);
        if let Some(n) = &r.notify {
            n.summarize(&mut s);
        }
        if let Some(c) = &r.catchup {
            c.summarize(&mut s);
        }
        if let Some(i) = &r.idle {
            i.summarize(&mut s);
        }
        s.print();
    }
    if let Some(a) = &r.app {
        let mut s = Section::new("Desktop app summary", SUMMARY_COLUMNS);
        a.summarize(&mut s);
        s.print();
    }
    if let Some(v) = &r.vs_nchan {
        v.section(&report::command_line()).print();
    }
    if let Some(s) = &r.stores {
        s.section(&report::command_line()).print();
    }
    if let Some(s) = &r.recovery {
        s.section(&report::command_line()).print();
    }
    let errors = r.posts.as_ref().map_or(0, posts::Report::errors)
        + r.vs_nchan.as_ref().map_or(0, vs_nchan::Report::errors)
        + r.fanout.as_ref().map_or(0, fanout::Report::errors)
        + r.notify.as_ref().map_or(0, |n| n.errors() as u64);
    if errors > 0 {
        println!("\nnote: {errors} error(s) were counted; the figures above exclude them");
    }
}

/// Decides and applies the CPU pinning; returns the launcher and the bench's CPU count.
fn pinning(cli: &Cli, bin: PathBuf) -> Result<(Launcher, usize), BoxError> {
    let original = CpuMask::current().ok();
    let allowed = original.map(|m| m.cpus()).unwrap_or_default();
    let mut launcher = Launcher {
        bin,
        cpu: None,
        original_mask: None,
    };
    if cli.common.no_pin {
        println!("pinning: none (--no-pin)");
        return Ok((launcher, allowed.len()));
    }
    if cli.bench.app() {
        println!("pinning: none (the desktop app runs on all CPUs, as a user's would)");
        return Ok((launcher, allowed.len()));
    }
    let auto = allowed.len() >= 2;
    let taskset = sys::taskset_available();
    let check = |what: &str, cpu: usize| -> Result<usize, BoxError> {
        if allowed.is_empty() || allowed.contains(&cpu) {
            Ok(cpu)
        } else {
            Err(format!("{what} {cpu} is not among the allowed CPUs {allowed:?}").into())
        }
    };
    let server_cpu = match cli.common.server_cpu {
        Some(c) => Some(check("--server-cpu", c)?),
        None if auto && taskset => Some(allowed[0]),
        None => None,
    };
    let client_cpu = match cli.common.client_cpu {
        Some(c) => Some(check("--client-cpu", c)?),
        None if auto && server_cpu.is_some() => {
            allowed.iter().copied().find(|&c| Some(c) != server_cpu)
        }
        None => None,
    };
    match server_cpu {
        Some(c) if taskset => {
            launcher.cpu = Some(c);
            println!("pinning: server under `taskset -c {c}`");
        }
        Some(c) => println!("pinning: taskset not found; server NOT pinned to CPU {c}"),
        None if !taskset => println!("pinning: taskset not found; server not pinned"),
        None => println!("pinning: server not pinned (fewer than 2 CPUs allowed)"),
    }
    let mut bench_cpus = allowed.len();
    if let Some(c) = client_cpu {
        CpuMask::single(c)
            .apply()
            .map_err(|e| format!("cannot pin the bench to CPU {c}: {e}"))?;
        launcher.original_mask = original;
        bench_cpus = 1;
        println!("pinning: bench pinned to CPU {c} (sched_setaffinity)");
    } else {
        println!("pinning: bench not pinned");
    }
    Ok((launcher, bench_cpus))
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The invocations BENCHMARKS.md gives keep working.
    #[test]
    fn documented_invocations_parse() {
        for line in [
            "all",
            "posts --rounds 5 --seconds 5 --concurrency 64",
            "fanout --rounds 10 --streams 1000 --pause-ms 300",
            "fanout --rounds 30",
            "fanout-vs-nchan",
            "fanout-vs-nchan --streams 1000",
            "fanout-vs-nchan --blocks 8",
            "engine",
            "notify-latency --rounds 3 --samples 100 --gap-ms 300",
            "catchup --rounds 3 --events 100000",
            "idle --rounds 2 --idle-secs 60",
            "app --cold-rounds 3",
            "app-start --rounds 20 --cold-rounds 2",
            "app-memory --memory-reps 3 --idle-secs 60",
            "app-start --no-warm-up",
            "notify-latency --engine-keepalive-secs 1",
            "all --no-pin --server-bin /x --warmup-secs 0 --connect-parallel 5",
            "--rounds 2 posts",
        ] {
            let argv = std::iter::once("quotabell-bench").chain(line.split(' '));
            if let Err(e) = Cli::try_parse_from(argv) {
                panic!("`{line}`: {e}");
            }
        }
    }

    #[test]
    fn per_benchmark_defaults_and_ranges() {
        let cli = Cli::try_parse_from(["quotabell-bench", "fanout-vs-nchan"]).unwrap();
        assert_eq!(cli.bench.streams(), Some(10_000));
        let cli = Cli::try_parse_from(["quotabell-bench", "all"]).unwrap();
        assert_eq!(cli.bench.streams(), Some(1000));
        assert_eq!(cli.common.rounds(5), 5);
        for bad in [
            "posts --seconds 0",
            "idle --idle-secs 0.5",
            "notify-latency --samples 101",
            "notify-latency --engine-keepalive-secs 0.01",
            "posts --no-pin --server-cpu 1",
            // A benchmark takes only its own options (and the global ones).
            "posts --streams 10",
            "idle --samples 10",
        ] {
            let argv = std::iter::once("quotabell-bench").chain(bad.split(' '));
            assert!(Cli::try_parse_from(argv).is_err(), "`{bad}` was accepted");
        }
    }
}
