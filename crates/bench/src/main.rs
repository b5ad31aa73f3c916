//! `quotabell-bench`: runs the real `quotabell-server` as a child process on a throwaway
//! database and measures build posts per second (`posts`) and the latency of one event fanned
//! out to many SSE streams of one user (`fanout`), also side by side with nginx + nchan in one
//! run (`fanout-vs-nchan`). With the real engine (`quotabell watch`) in
//! a private desktop session it measures build → desktop notification latency
//! (`notify-latency`), catching up on 100,000 missed events (`catchup`) and the cost of
//! staying connected to an idle server (`idle`). With the desktop app (`quotabell-app`) in the
//! same kind of session it measures the start until the tray is up (`app-start`) and the memory
//! of all the app's processes with the window never opened, open, and closed (`app-memory`).

mod app;
mod catchup;
mod desktop;
mod fanout;
mod idle;
mod nchan;
mod notify;
mod posts;
mod profile;
mod server;
mod sse;
mod stats;
mod sys;
mod tray;
mod vs_nchan;
mod x11;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::server::Launcher;
use crate::stats::Spread;
use crate::sys::CpuMask;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The reference the own fan-out bench is judged against: nginx + nchan on the first
/// benchmark machine, one message to 1,000 EventSource subscribers.
const NCHAN_P50_MS: f64 = 11.0;
const NCHAN_P99_MS: f64 = 22.0;
const NCHAN_RSS_MIB: f64 = 24.5;
const POSTS_TARGET: f64 = 3000.0;
/// Engine targets: notification latency, catch-up time, idle memory.
const NOTIFY_P99_TARGET_MS: f64 = 25.0;
const CATCHUP_TARGET_SECS: f64 = 3.0;
const IDLE_RSS_TARGET_MB: f64 = 20.0;
/// Desktop app targets: start to tray, memory with the window never opened, open, closed.
const APP_TRAY_TARGET_MS: f64 = 400.0;
const APP_HIDDEN_PSS_TARGET_MB: f64 = 90.0;
const APP_OPEN_PSS_TARGET_MB: f64 = 250.0;
const APP_CLOSED_PSS_TARGET_MB: f64 = 100.0;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Backend: accepted build posts per second.
    Posts,
    /// Backend: one event to many SSE streams of one user.
    Fanout,
    /// Backend: posts, then fanout.
    All,
    /// Backend: fanout against Quotabell and against nginx + nchan in one run, with ratios.
    FanoutVsNchan,
    /// Engine: build POST → D-Bus `Notify` call of `quotabell watch`.
    NotifyLatency,
    /// Engine: catching up on 100,000 missed events.
    Catchup,
    /// Engine: memory and wake-ups while connected to an idle server.
    Idle,
    /// Engine: notify-latency, catchup, then idle.
    Engine,
    /// Desktop app: spawn → tray item registered, signed in and signed out.
    AppStart,
    /// Desktop app: PSS/RSS of all its processes, window never opened, open, closed.
    AppMemory,
    /// Desktop app: app-start, then app-memory.
    App,
}

impl Mode {
    fn posts(self) -> bool {
        matches!(self, Self::Posts | Self::All)
    }
    fn fanout(self) -> bool {
        matches!(self, Self::Fanout | Self::All)
    }
    /// Whether the run holds many SSE streams open (and needs the file descriptors).
    fn streams(self) -> bool {
        self.fanout() || self == Self::FanoutVsNchan
    }
    fn notify(self) -> bool {
        matches!(self, Self::NotifyLatency | Self::Engine)
    }
    fn catchup(self) -> bool {
        matches!(self, Self::Catchup | Self::Engine)
    }
    fn idle(self) -> bool {
        matches!(self, Self::Idle | Self::Engine)
    }
    fn engine(self) -> bool {
        self.notify() || self.catchup() || self.idle()
    }
    fn app_start(self) -> bool {
        matches!(self, Self::AppStart | Self::App)
    }
    fn app_memory(self) -> bool {
        matches!(self, Self::AppMemory | Self::App)
    }
    fn app(self) -> bool {
        self.app_start() || self.app_memory()
    }
}

#[derive(Parser)]
#[command(
    name = "quotabell-bench",
    version,
    about = "Benchmarks the real quotabell-server (build posts per second, SSE fan-out latency) and the real engine, quotabell watch (notification latency, catch-up, idle cost)"
)]
struct Cli {
    /// Which benchmark to run.
    #[arg(value_enum)]
    mode: Mode,
    /// The server binary [default: quotabell-server next to this executable].
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// The engine binary [default: quotabell next to this executable].
    #[arg(long)]
    engine_bin: Option<PathBuf>,
    /// Rounds per benchmark [default: 5 for posts, 10 for fanout (per server and block in
    /// fanout-vs-nchan), 3 for notify-latency and catchup, 2 for idle, 20 starts of each kind
    /// for app-start].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: Option<u32>,
    /// SSE streams of the one user in `fanout`, subscribers of each server in
    /// `fanout-vs-nchan` [default: 1000 for fanout, 10000 for fanout-vs-nchan].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    streams: Option<u32>,
    /// `fanout-vs-nchan`: blocks, each running both servers one after the other (the order
    /// alternates from block to block).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=50))]
    blocks: u32,
    /// `fanout-vs-nchan`: the nginx binary (Debian package `nginx`).
    #[arg(long, default_value = "nginx")]
    nginx_bin: PathBuf,
    /// `fanout-vs-nchan`: the nchan module (Debian package `libnginx-mod-nchan`).
    #[arg(long, default_value = nchan::DEFAULT_MODULE)]
    nchan_module: PathBuf,
    /// Concurrent keep-alive HTTP/1.1 clients in `posts` (and posting the missed builds in
    /// `catchup`).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    concurrency: u32,
    /// Length of one `posts` round, in seconds.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Unmeasured `posts` warm-up before the rounds, in seconds (0 for none).
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// Pause between `fanout` rounds, in milliseconds.
    #[arg(long, default_value_t = 300)]
    pause_ms: u64,
    /// Streams being opened at once in `fanout`.
    #[arg(long, default_value_t = 100)]
    connect_parallel: u32,
    /// Run the server under `taskset -c K` [default: the first allowed CPU when there are 2+].
    #[arg(long)]
    server_cpu: Option<usize>,
    /// Pin the bench itself to CPU K [default: the second allowed CPU when there are 2+].
    #[arg(long)]
    client_cpu: Option<usize>,
    /// Pin nothing.
    #[arg(long, conflicts_with_all = ["server_cpu", "client_cpu"])]
    no_pin: bool,
    /// Builds (each one notification) per `notify-latency` round; at most 100, the Free
    /// plan's builds per period.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100))]
    samples: u32,
    /// Least pause after each notification in `notify-latency` before the next build, in ms
    /// (the bench also waits until dunst has removed it and is idle).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    gap_ms: u64,
    /// Events the engine misses in `catchup` (the server keeps 1,000,000 per user).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=900_000))]
    events: u64,
    /// Length of one `idle` round, in seconds.
    #[arg(long, default_value_t = 60.0)]
    idle_secs: f64,
    /// The desktop app binary [default: quotabell-app next to this executable].
    #[arg(long)]
    app_bin: Option<PathBuf>,
    /// `app-start`: signed-in starts after `sync; echo 3 > /proc/sys/vm/drop_caches` (root).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    cold_rounds: u32,
    /// `app-memory`: app runs, each through the three states (idle `--idle-secs` in each).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    memory_reps: u32,
    /// Desktop app: skip the unmeasured warm-up starts, so the first app measured is the first
    /// GTK 3 process on the X server (it probes GLX and loads Mesa; see app.rs).
    #[arg(long)]
    no_warm_up: bool,
    /// `quotabell watch --keepalive-secs` (the server keeps its default of 15 s).
    #[arg(long, default_value_t = 15.0)]
    engine_keepalive_secs: f64,
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

/// A binary next to this executable.
fn sibling_bin(name: &str) -> Result<PathBuf, BoxError> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or("cannot tell the directory of this executable")?;
    Ok(dir.join(name))
}

fn run(cli: Cli) -> Result<(), BoxError> {
    if !(cli.seconds > 0.0 && cli.seconds <= 600.0) {
        return Err("--seconds must be in (0, 600]".into());
    }
    if !(0.0..=60.0).contains(&cli.warmup_secs) {
        return Err("--warmup-secs must be in [0, 60]".into());
    }
    if !(cli.idle_secs >= 1.0 && cli.idle_secs <= 3600.0) {
        return Err("--idle-secs must be in [1, 3600]".into());
    }
    if !(cli.engine_keepalive_secs >= 0.05 && cli.engine_keepalive_secs <= 3600.0) {
        return Err("--engine-keepalive-secs must be in [0.05, 3600]".into());
    }
    let bin = match cli.server_bin.clone() {
        Some(b) => b,
        None => sibling_bin("quotabell-server")?,
    };
    if !bin.is_file() {
        return Err(format!(
            "server binary {} not found (build it with `cargo build --release -p quotabell-server`, or pass --server-bin)",
            bin.display()
        )
        .into());
    }
    let engine_bin = match cli.engine_bin.clone() {
        Some(b) => b,
        None => sibling_bin("quotabell")?,
    };
    if (cli.mode.engine() || cli.mode.app()) && !engine_bin.is_file() {
        return Err(format!(
            "engine binary {} not found (build it with `cargo build --release -p quotabell-core`, or pass --engine-bin)",
            engine_bin.display()
        )
        .into());
    }

    let app_bin = match cli.app_bin.clone() {
        Some(b) => b,
        None => sibling_bin("quotabell-app")?,
    };
    if cli.mode.app() && !app_bin.is_file() {
        return Err(format!(
            "app binary {} not found (build it with `cargo build --release -p quotabell-app` or the Tauri bundler, or pass --app-bin)",
            app_bin.display()
        )
        .into());
    }

    println!("machine: {}", sys::machine());
    let streams = cli.streams.unwrap_or(if cli.mode == Mode::FanoutVsNchan {
        10_000
    } else {
        1000
    });
    let needed = u64::from(streams) + 200;
    match sys::raise_nofile() {
        Ok((before, after, hard)) => {
            println!(
                "RLIMIT_NOFILE: soft {before} -> {after} (hard {hard}); the server inherits it"
            );
            if after < needed && cli.mode.streams() {
                println!("warning: {after} file descriptors may be too few for {needed} streams");
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

    let rounds = |default: usize| cli.rounds.map_or(default, |r| r as usize);
    let posts_cfg = posts::Config {
        rounds: rounds(5),
        concurrency: cli.concurrency as usize,
        seconds: cli.seconds,
        warmup_secs: cli.warmup_secs,
    };
    let fanout_cfg = fanout::Config {
        rounds: rounds(10),
        streams: streams as usize,
        pause: Duration::from_millis(cli.pause_ms),
        connect_parallel: cli.connect_parallel.max(1) as usize,
    };
    let vs_nchan_cfg = vs_nchan::Config {
        fanout: fanout::Config {
            rounds: rounds(10),
            streams: streams as usize,
            pause: Duration::from_millis(cli.pause_ms),
            connect_parallel: cli.connect_parallel.max(1) as usize,
        },
        blocks: cli.blocks as usize,
        setup: nchan::Setup {
            nginx: cli.nginx_bin.clone(),
            module: cli.nchan_module.clone(),
        },
    };
    let notify_cfg = notify::Config {
        rounds: rounds(3),
        samples: cli.samples as usize,
        gap: Duration::from_millis(cli.gap_ms),
        engine_bin: engine_bin.clone(),
        keepalive_secs: cli.engine_keepalive_secs,
        monitor_mask: launcher.original_mask,
    };
    let catchup_cfg = catchup::Config {
        rounds: rounds(3),
        events: cli.events,
        concurrency: cli.concurrency as usize,
        engine_bin: engine_bin.clone(),
        keepalive_secs: cli.engine_keepalive_secs,
    };
    let idle_cfg = idle::Config {
        rounds: rounds(2),
        secs: cli.idle_secs,
        engine_bin: engine_bin.clone(),
        keepalive_secs: cli.engine_keepalive_secs,
    };
    let app_cfg = app::Config {
        start_rounds: rounds(20),
        cold_rounds: cli.cold_rounds as usize,
        memory_reps: cli.memory_reps as usize,
        idle_secs: cli.idle_secs,
        app_bin,
        engine_bin,
        start: cli.mode.app_start(),
        memory: cli.mode.app_memory(),
        warm_up: !cli.no_warm_up,
    };
    if cli.mode.engine() {
        println!(
            "engine benchmarks: the engine, D-Bus, keyring and dunst run on the bench's CPUs; dbus-monitor on all allowed CPUs"
        );
    }
    // Servers, engines and desktop daemons are started from this (the main) thread inside
    // block_on, which matters for PR_SET_PDEATHSIG: it fires when the thread that started the
    // child ends.
    let reports = rt.block_on(async {
        let mut r = Reports::default();
        if cli.mode.posts() {
            r.posts = Some(posts::run(&launcher, &posts_cfg).await?);
        }
        if cli.mode.fanout() {
            r.fanout = Some(fanout::run(&launcher, &fanout_cfg).await?);
        }
        if cli.mode == Mode::FanoutVsNchan {
            r.vs_nchan = Some(vs_nchan::run(&launcher, &vs_nchan_cfg).await?);
        }
        if cli.mode.notify() {
            r.notify = Some(notify::run(&launcher, &notify_cfg).await?);
        }
        if cli.mode.catchup() {
            r.catchup = Some(catchup::run(&launcher, &catchup_cfg).await?);
        }
        if cli.mode.idle() {
            r.idle = Some(idle::run(&launcher, &idle_cfg).await?);
        }
        if cli.mode.app() {
            r.app = Some(app::run(&launcher, &app_cfg).await?);
        }
        Ok::<_, BoxError>(r)
    })?;
    rt.shutdown_timeout(Duration::from_secs(2));
    println!(
        "bench process CPU time: {:.1} s (user + system)",
        sys::own_cpu_seconds()
    );
    println!();
    let (posts, fanout) = (reports.posts.as_ref(), reports.fanout.as_ref());
    if posts.is_some() || fanout.is_some() {
        summary(posts, fanout);
    }
    if reports.notify.is_some() || reports.catchup.is_some() || reports.idle.is_some() {
        engine_summary(&reports);
    }
    if let Some(a) = &reports.app {
        app_summary(a);
    }
    if let Some(v) = &reports.vs_nchan {
        vs_nchan::print(v, &command_line());
    }
    let errors = posts.map_or(0, posts::Report::errors)
        + reports
            .vs_nchan
            .as_ref()
            .map_or(0, vs_nchan::Report::errors)
        + fanout.map_or(0, |f| (f.stream_errors + f.missed + f.post_errors) as u64)
        + reports.notify.as_ref().map_or(0, |n| n.errors() as u64);
    if errors > 0 {
        println!("\nnote: {errors} error(s) were counted; the figures above exclude them");
    }
    Ok(())
}

#[derive(Default)]
struct Reports {
    posts: Option<posts::Report>,
    fanout: Option<fanout::Report>,
    notify: Option<notify::Report>,
    catchup: Option<catchup::Report>,
    idle: Option<idle::Report>,
    app: Option<app::Report>,
    vs_nchan: Option<vs_nchan::Report>,
}

/// This invocation as a shell command, for the record.
fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,".contains(&b))
            {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
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
    if cli.no_pin {
        println!("pinning: none (--no-pin)");
        return Ok((launcher, allowed.len()));
    }
    if cli.mode.app() {
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
    let server_cpu = match cli.server_cpu {
        Some(c) => Some(check("--server-cpu", c)?),
        None if auto && taskset => Some(allowed[0]),
        None => None,
    };
    let client_cpu = match cli.client_cpu {
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

fn ms(v: f64) -> String {
    format!("{v:.2} ms")
}

fn spread_text(s: Option<Spread>, f: impl Fn(f64) -> String) -> (String, String) {
    s.map_or(("n/a".into(), "n/a".into()), |s| {
        (f(s.median), format!("{} – {}", f(s.min), f(s.max)))
    })
}

fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn verdict_at_most(value: Option<f64>, target: f64) -> String {
    match value {
        Some(v) if v.is_finite() => format!(
            "{} ({:.2}× nchan)",
            if v <= target { "met" } else { "NOT met" },
            v / target
        ),
        _ => "n/a".into(),
    }
}

/// Other processes' CPU use above which a run is flagged as disturbed, in cores.
const QUIET_CORES: f64 = 0.05;

fn load_row(label: &str, other: Option<f64>) -> [String; 6] {
    if let Some(o) = other.filter(|o| *o >= QUIET_CORES) {
        println!(
            "WARNING: other processes used {:.0}% of a core during the {label} rounds; its figures are disturbed, rerun on a quiet machine",
            o * 100.0
        );
    }
    [
        label.to_owned(),
        "other processes' CPU during the rounds".into(),
        other.map_or("n/a".into(), |o| format!("{:.0}% of a core", o * 100.0)),
        "–".into(),
        format!("< {:.0}% (quiet machine)", QUIET_CORES * 100.0),
        match other {
            Some(o) if o < QUIET_CORES => "quiet".into(),
            Some(_) => "DISTURBED".into(),
            None => "n/a".into(),
        },
    ]
}

fn summary(posts: Option<&posts::Report>, fanout: Option<&fanout::Report>) {
    println!("## Summary");
    let mut rows: Vec<[String; 6]> = Vec::new();
    if let Some(p) = posts {
        let label = format!(
            "posts ({} clients, {} × {:.0} s)",
            p.concurrency,
            p.rounds.len(),
            p.seconds
        );
        let rate = p.rate();
        println!(
            "posts: median {} builds/s (min {}, max {}), POST p50 {} p99 {} (medians of rounds), {} error(s)",
            rate.map_or("n/a".into(), |s| thousands(s.median)),
            rate.map_or("n/a".into(), |s| thousands(s.min)),
            rate.map_or("n/a".into(), |s| thousands(s.max)),
            p.p50().map_or("n/a".into(), |s| ms(s.median)),
            p.p99().map_or("n/a".into(), |s| ms(s.median)),
            p.errors()
        );
        for s in &p.error_samples {
            println!("  error sample: {s}");
        }
        let (m, sp) = spread_text(rate, |v| format!("{}/s", thousands(v)));
        let verdict = rate.map_or("n/a".into(), |s| {
            format!(
                "{} ({:.2}× target)",
                if s.median >= POSTS_TARGET {
                    "met"
                } else {
                    "NOT met"
                },
                s.median / POSTS_TARGET
            )
        });
        rows.push([
            label.clone(),
            "accepted builds per second".into(),
            m,
            sp,
            "≥ 3,000/s on 2 cores".into(),
            verdict,
        ]);
        rows.push(load_row(&label, p.other_load));
        let (m, sp) = spread_text(p.p50(), ms);
        rows.push([
            label.clone(),
            "POST latency p50".into(),
            m,
            sp,
            "–".into(),
            "–".into(),
        ]);
        let (m, sp) = spread_text(p.p99(), ms);
        rows.push([
            label,
            "POST latency p99".into(),
            m,
            sp,
            "–".into(),
            "–".into(),
        ]);
        if p.errors() > 0 {
            rows.push([
                "posts".into(),
                "errors (not counted above)".into(),
                p.errors().to_string(),
                "–".into(),
                "0".into(),
                "–".into(),
            ]);
        }
    }
    if let Some(f) = fanout {
        let label = format!(
            "fanout ({} streams of 1 user, {} rounds)",
            f.connected,
            f.rounds.len()
        );
        println!(
            "fanout: {}/{} streams connected in {:.2} s; delivery p50 {} p99 {} max {} (medians of rounds); \
             kernel arrival p50 {} p99 {} max {}; server RSS connected {}; after rounds {}; stream errors {}, missed deliveries {}, failed posts {}, stray events {}",
            f.connected,
            f.streams,
            f.connect_secs,
            f.p50().map_or("n/a".into(), |s| ms(s.median)),
            f.p99().map_or("n/a".into(), |s| ms(s.median)),
            f.max().map_or("n/a".into(), |s| ms(s.median)),
            f.kernel_p50().map_or("n/a".into(), |s| ms(s.median)),
            f.kernel_p99().map_or("n/a".into(), |s| ms(s.median)),
            f.kernel_max().map_or("n/a".into(), |s| ms(s.median)),
            fanout::mem_text(f.mem_connected),
            fanout::mem_text(f.mem_after),
            f.stream_errors,
            f.missed,
            f.post_errors,
            f.stray_events
        );
        for s in &f.error_samples {
            println!("  error sample: {s}");
        }
        rows.push(load_row(&label, f.other_load));
        let (m, sp) = spread_text(f.p50(), ms);
        let v = verdict_at_most(f.p50().map(|s| s.median), NCHAN_P50_MS);
        rows.push([
            label.clone(),
            "delivery latency p50".into(),
            m,
            sp,
            "≤ 11 ms (nchan)".into(),
            v,
        ]);
        let (m, sp) = spread_text(f.p99(), ms);
        let v = verdict_at_most(f.p99().map(|s| s.median), NCHAN_P99_MS);
        rows.push([
            label.clone(),
            "delivery latency p99".into(),
            m,
            sp,
            "≤ 22 ms (nchan)".into(),
            v,
        ]);
        let (m, sp) = spread_text(f.max(), ms);
        rows.push([
            label.clone(),
            "delivery latency max".into(),
            m,
            sp,
            "–".into(),
            "–".into(),
        ]);
        for (what, spread) in [
            ("p50", f.kernel_p50()),
            ("p99", f.kernel_p99()),
            ("max", f.kernel_max()),
        ] {
            let (m, sp) = spread_text(spread, ms);
            rows.push([
                label.clone(),
                format!("kernel arrival at the client socket, {what}"),
                m,
                sp,
                "– (diagnostic)".into(),
                "–".into(),
            ]);
        }
        let (m, sp) = spread_text(f.server_cpu(), |v| format!("{v:.0} ms"));
        rows.push([
            label.clone(),
            "server CPU time per round (user + system)".into(),
            m,
            sp,
            "– (diagnostic)".into(),
            "–".into(),
        ]);
        let mib = |m: Option<sys::Memory>, hwm: bool| {
            m.map(|m| sys::mib(if hwm { m.hwm_kib } else { m.rss_kib }))
        };
        let mem_row = |what: &str, value: Option<f64>, judged: bool| {
            [
                label.clone(),
                what.to_owned(),
                value.map_or("n/a".into(), |v| format!("{v:.1} MiB")),
                "–".into(),
                if judged {
                    "≤ 24.5 MiB (nchan worker)".into()
                } else {
                    "–".into()
                },
                if judged {
                    verdict_at_most(value, NCHAN_RSS_MIB)
                } else {
                    "–".into()
                },
            ]
        };
        rows.push(mem_row("server VmRSS, idle", mib(f.mem_idle, false), false));
        rows.push(mem_row(
            "server VmRSS, streams connected",
            mib(f.mem_connected, false),
            false,
        ));
        rows.push(mem_row(
            "server VmRSS, after the rounds",
            mib(f.mem_after, false),
            true,
        ));
        rows.push(mem_row(
            "server VmHWM (peak), after the rounds",
            mib(f.mem_after, true),
            false,
        ));
        let errors = f.stream_errors + f.missed + f.post_errors;
        if errors > 0 {
            rows.push([
                "fanout".into(),
                "errors: streams lost / deliveries missed / posts failed".into(),
                format!("{} / {} / {}", f.stream_errors, f.missed, f.post_errors),
                "–".into(),
                "0".into(),
                "–".into(),
            ]);
        }
    }
    println!();
    println!("| Benchmark | Figure | Median | Spread (min – max) | Target | Verdict |");
    println!("| --- | --- | ---: | ---: | --- | --- |");
    for r in rows {
        println!("| {} |", r.join(" | "));
    }
}

/// "met (0.52× target)" when `value` is below `target`.
fn verdict_below(value: Option<f64>, target: f64) -> String {
    match value {
        Some(v) if v.is_finite() => format!(
            "{} ({:.2}× target)",
            if v < target { "met" } else { "NOT met" },
            v / target
        ),
        _ => "n/a".into(),
    }
}

fn row(label: &str, figure: &str, spread: Option<Spread>, unit: &Fmt, target: &str) -> [String; 6] {
    let (m, sp) = spread_text(spread, unit);
    [
        label.to_owned(),
        figure.to_owned(),
        m,
        sp,
        target.to_owned(),
        "–".into(),
    ]
}

type Fmt = dyn Fn(f64) -> String;

fn engine_summary(r: &Reports) {
    println!("## Engine summary");
    let mut rows: Vec<[String; 6]> = Vec::new();
    let msf: &Fmt = &ms;
    let mibf: &Fmt = &|v| format!("{v:.1} MiB");
    let secf: &Fmt = &|v| format!("{v:.3} s");
    if let Some(n) = &r.notify {
        let (count, [p50, p99, max]) = n.pooled();
        let label = format!(
            "notify-latency ({} rounds, {count} notifications)",
            n.rounds.len()
        );
        println!(
            "notify-latency: {count} notifications; POST→Notify over all: p50 {} p99 {} max {}; medians of rounds: p50 {} p99 {} max {}; {} error(s)",
            ms(p50),
            ms(p99),
            ms(max),
            n.p50().map_or("n/a".into(), |s| ms(s.median)),
            n.p99().map_or("n/a".into(), |s| ms(s.median)),
            n.max().map_or("n/a".into(), |s| ms(s.median)),
            n.errors()
        );
        for s in &n.samples_text {
            println!("  error sample: {s}");
        }
        rows.push(load_row(&label, n.other_load));
        rows.push(row(
            &label,
            "POST → Notify p50 (per round)",
            n.p50(),
            msf,
            "–",
        ));
        let mut p99_row = row(
            &label,
            "POST → Notify p99 (per round)",
            n.p99(),
            msf,
            "< 25 ms",
        );
        p99_row[5] = verdict_below(n.p99().map(|s| s.median), NOTIFY_P99_TARGET_MS);
        rows.push(p99_row);
        rows.push(row(
            &label,
            "POST → Notify max (per round)",
            n.max(),
            msf,
            "–",
        ));
        rows.push([
            label.clone(),
            format!("POST → Notify over all {count}: p50 / p99 / max"),
            format!("{} / {} / {}", ms(p50), ms(p99), ms(max)),
            "–".into(),
            "p99 < 25 ms".into(),
            verdict_below(Some(p99), NOTIFY_P99_TARGET_MS),
        ]);
        rows.push(row(
            &label,
            "POST round trip p50 (diagnostic)",
            n.post_p50(),
            msf,
            "–",
        ));
        rows.push(row(
            &label,
            "pause after each notification until the desktop is idle, p50 (diagnostic)",
            n.settle_p50(),
            msf,
            "–",
        ));
        rows.push(row(
            &label,
            "engine CPU time per notification (diagnostic)",
            n.engine_cpu(),
            msf,
            "–",
        ));
        if let Some(m) = n.mem_after {
            rows.push([
                label.clone(),
                "engine VmRSS / VmHWM after the rounds".into(),
                format!(
                    "{:.1} / {:.1} MiB",
                    sys::mib(m.rss_kib),
                    sys::mib(m.hwm_kib)
                ),
                "–".into(),
                "–".into(),
                "–".into(),
            ]);
        }
        if n.errors() > 0 {
            rows.push([
                label,
                "errors: missed / unexpected notifications".into(),
                format!(
                    "{} / {}",
                    n.rounds.iter().map(|r| r.missed).sum::<usize>(),
                    n.rounds.iter().map(|r| r.unexpected).sum::<usize>()
                ),
                "–".into(),
                "0".into(),
                "–".into(),
            ]);
        }
    }
    if let Some(c) = &r.catchup {
        let label = format!(
            "catchup ({} missed events, {} rounds)",
            thousands(c.missed_events as f64),
            c.rounds.len()
        );
        println!(
            "catchup: {} events missed ({} builds posted in {:.1} s); caught up in {} (median), done in {}, engine VmHWM {}",
            c.missed_events,
            c.builds_posted,
            c.post_secs,
            c.events_secs().map_or("n/a".into(), |s| secf(s.median)),
            c.done_secs().map_or("n/a".into(), |s| secf(s.median)),
            c.hwm_mib().map_or("n/a".into(), |s| mibf(s.median)),
        );
        rows.push(load_row(&label, c.other_load));
        let mut ev = row(
            &label,
            "engine start → cursor at the server's last event",
            c.events_secs(),
            secf,
            "< 3 s",
        );
        ev[5] = verdict_below(c.events_secs().map(|s| s.median), CATCHUP_TARGET_SECS);
        rows.push(ev);
        let mut done = row(
            &label,
            "engine start → usage and builds synced, stream connected",
            c.done_secs(),
            secf,
            "< 3 s",
        );
        done[5] = verdict_below(c.done_secs().map(|s| s.median), CATCHUP_TARGET_SECS);
        rows.push(done);
        rows.push(row(
            &label,
            "engine VmHWM (peak RSS)",
            c.hwm_mib(),
            mibf,
            "–",
        ));
        rows.push(row(
            &label,
            "engine VmRSS when done",
            c.rss_mib(),
            mibf,
            "–",
        ));
        rows.push(row(
            &label,
            "engine start → first page of events stored (diagnostic)",
            c.first_secs(),
            secf,
            "–",
        ));
        rows.push(row(
            &label,
            "engine CPU time until done (diagnostic)",
            c.cpu_secs(),
            &|v| format!("{v:.2} s"),
            "–",
        ));
        rows.push(row(
            &label,
            "server CPU time meanwhile (diagnostic)",
            c.server_cpu_secs(),
            &|v| format!("{v:.2} s"),
            "–",
        ));
    }
    if let Some(i) = &r.idle {
        let label = format!(
            "idle ({} × {:.0} s, server keepalive 15 s)",
            i.rounds.len(),
            i.rounds.first().map_or(0.0, |r| r.secs)
        );
        rows.push(load_row(&label, i.other_load));
        let target_mib = IDLE_RSS_TARGET_MB * 1e6 / 1024.0 / 1024.0;
        let mut rss = row(
            &label,
            "engine VmRSS at the end",
            i.rss_mib(),
            mibf,
            "< 20 MB (19.07 MiB)",
        );
        rss[5] = verdict_below(i.rss_mib().map(|s| s.median), target_mib);
        rows.push(rss);
        rows.push(row(
            &label,
            "engine VmHWM at the end",
            i.hwm_mib(),
            mibf,
            "–",
        ));
        rows.push(row(
            &label,
            "engine wake-ups (context switches, all threads) per second",
            i.wakeups(),
            &|v| format!("{v:.3}/s"),
            "–",
        ));
        rows.push(row(
            &label,
            "engine CPU time per minute idle",
            i.cpu_ms_per_min(),
            &|v| format!("{v:.0} ms"),
            "–",
        ));
    }
    println!();
    println!("| Benchmark | Figure | Median | Spread (min – max) | Target | Verdict |");
    println!("| --- | --- | ---: | ---: | --- | --- |");
    for r in rows {
        println!("| {} |", r.join(" | "));
    }
}

/// Picks one state's process tree out of an `app-memory` run.
type StateOf = fn(&app::MemoryRep) -> &app::Tree;

fn app_summary(a: &app::Report) {
    println!("## Desktop app summary");
    let mut rows: Vec<[String; 6]> = Vec::new();
    let msf: &Fmt = &ms;
    let mbf: &Fmt = &|v| format!("{v:.1} MB");
    for s in &a.start {
        let label = format!("app-start ({}, {} starts)", s.label, s.rounds.len());
        rows.push(load_row(&label, s.other_load));
        let mut tray = row(
            &label,
            "spawn `--hidden` → tray item registered",
            s.tray(),
            msf,
            "< 400 ms",
        );
        tray[5] = verdict_below(s.tray().map(|t| t.median), APP_TRAY_TARGET_MS);
        rows.push(tray);
        if let Some((p10, p90)) = s.tray_p10_p90() {
            rows.push([
                label.clone(),
                "spawn → tray item registered, p10 / p90".into(),
                format!("{} / {}", ms(p10), ms(p90)),
                "–".into(),
                "–".into(),
                "–".into(),
            ]);
        }
        rows.push(row(
            &label,
            "spawn → tray icon settled on the engine's state (last NewIcon)",
            s.settled(),
            msf,
            "–",
        ));
        for (before, after) in &s.cache_drops {
            println!(
                "{label}: page cache {:.0} MB before the drop, {:.0} MB after",
                app::mb(*before),
                app::mb(*after)
            );
        }
    }
    if !a.memory.is_empty() {
        let label = format!(
            "app-memory ({} runs, {:.0} s idle per state)",
            a.memory.len(),
            a.idle_secs
        );
        let load = a
            .memory
            .iter()
            .flat_map(|m| m.load.iter().flatten().copied())
            .reduce(f64::max);
        rows.push(load_row(&format!("{label}, busiest idle period"), load));
        let states: [(&str, StateOf, f64); 3] = [
            (
                "(a) tray only, window never opened",
                |m| &m.hidden,
                APP_HIDDEN_PSS_TARGET_MB,
            ),
            ("(b) window open", |m| &m.open, APP_OPEN_PSS_TARGET_MB),
            ("(c) window closed", |m| &m.closed, APP_CLOSED_PSS_TARGET_MB),
        ];
        for (state, tree, target) in states {
            let pss = a.memory_spread(|m| Some(app::mb(tree(m).pss_kib())));
            let mut r = row(
                &label,
                &format!("{state}: PSS of all processes"),
                pss,
                mbf,
                &format!("< {target:.0} MB"),
            );
            r[5] = verdict_below(pss.map(|p| p.median), target);
            rows.push(r);
            rows.push(row(
                &label,
                &format!("{state}: RSS of all processes (shared pages counted per process)"),
                a.memory_spread(|m| Some(app::mb(tree(m).rss_kib()))),
                mbf,
                "–",
            ));
            for role in [
                "tray process",
                "window process",
                "WebKitWebProcess",
                "WebKitNetworkProcess",
            ] {
                let v = a.memory_spread(|m| {
                    let t = tree(m);
                    t.procs
                        .iter()
                        .any(|p| p.role == role)
                        .then(|| app::mb(t.pss_of(role)))
                });
                if v.is_some() {
                    rows.push(row(
                        &label,
                        &format!("{state}: PSS of the {role}"),
                        v,
                        mbf,
                        "–",
                    ));
                }
            }
            let procs = a.memory_spread(|m| Some(tree(m).procs.len() as f64));
            rows.push(row(
                &label,
                &format!("{state}: processes"),
                procs,
                &|v| format!("{v:.0}"),
                "–",
            ));
        }
        let left: usize = a.memory.iter().map(|m| m.webkit_left.len()).sum();
        rows.push([
            label.clone(),
            "(c) WebKit processes left after the close (all runs)".into(),
            left.to_string(),
            "–".into(),
            "0".into(),
            if left == 0 { "met" } else { "NOT met" }.into(),
        ]);
        rows.push(row(
            &label,
            "WM_DELETE_WINDOW → window process exited",
            a.memory_spread(|m| m.close_ms),
            msf,
            "–",
        ));
        rows.push(row(
            &label,
            "tray \"Open\" click → window process started",
            a.memory_spread(|m| m.open_times.spawn_ms),
            msf,
            "–",
        ));
        rows.push(row(
            &label,
            "tray \"Open\" click → X window mapped",
            a.memory_spread(|m| m.open_times.mapped_ms),
            msf,
            "–",
        ));
        rows.push(row(
            &label,
            "tray \"Open\" click → web view's first call at the tray process",
            a.memory_spread(|m| m.open_times.first_call_ms),
            msf,
            "–",
        ));
    }
    println!();
    println!("| Benchmark | Figure | Median | Spread (min – max) | Target | Verdict |");
    println!("| --- | --- | ---: | ---: | --- | --- |");
    for r in rows {
        println!("| {} |", r.join(" | "));
    }
}
