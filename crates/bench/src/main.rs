//! `quotabell-bench`: runs the real `quotabell-server` as a child process on a throwaway
//! database and measures build posts per second (`posts`) and the latency of one event fanned
//! out to many SSE streams of one user (`fanout`).

mod fanout;
mod posts;
mod server;
mod stats;
mod sys;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::server::Launcher;
use crate::stats::Spread;
use crate::sys::CpuMask;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// nginx + nchan on the same machine, from the issue: one message to 1,000 EventSource
/// subscribers.
const NCHAN_P50_MS: f64 = 11.0;
const NCHAN_P99_MS: f64 = 22.0;
const NCHAN_RSS_MIB: f64 = 24.5;
const POSTS_TARGET: f64 = 3000.0;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Posts,
    Fanout,
    All,
}

#[derive(Parser)]
#[command(
    name = "quotabell-bench",
    version,
    about = "Benchmarks the real quotabell-server: build posts per second and SSE fan-out latency"
)]
struct Cli {
    /// Which benchmark to run.
    #[arg(value_enum)]
    mode: Mode,
    /// The server binary [default: quotabell-server next to this executable].
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Rounds per benchmark [default: 5 for posts, 10 for fanout].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: Option<u32>,
    /// SSE streams of the one user in `fanout`.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    streams: u32,
    /// Concurrent keep-alive HTTP/1.1 clients in `posts`.
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quotabell-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn default_server_bin() -> Result<PathBuf, BoxError> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or("cannot tell the directory of this executable")?;
    Ok(dir.join("quotabell-server"))
}

fn run(cli: Cli) -> Result<(), BoxError> {
    if !(cli.seconds > 0.0 && cli.seconds <= 600.0) {
        return Err("--seconds must be in (0, 600]".into());
    }
    if !(0.0..=60.0).contains(&cli.warmup_secs) {
        return Err("--warmup-secs must be in [0, 60]".into());
    }
    let bin = match cli.server_bin.clone() {
        Some(b) => b,
        None => default_server_bin()?,
    };
    if !bin.is_file() {
        return Err(format!(
            "server binary {} not found (build it with `cargo build --release -p quotabell-server`, or pass --server-bin)",
            bin.display()
        )
        .into());
    }

    println!("machine: {}", sys::machine());
    let needed = u64::from(cli.streams) + 200;
    match sys::raise_nofile() {
        Ok((before, after, hard)) => {
            println!(
                "RLIMIT_NOFILE: soft {before} -> {after} (hard {hard}); the server inherits it"
            );
            if after < needed && cli.mode != Mode::Posts {
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
        streams: cli.streams as usize,
        pause: Duration::from_millis(cli.pause_ms),
        connect_parallel: cli.connect_parallel.max(1) as usize,
    };
    // Servers are started from this (the main) thread inside block_on, which matters for
    // PR_SET_PDEATHSIG: it fires when the thread that started the child ends.
    let (posts, fanout) = rt.block_on(async {
        let posts = if cli.mode != Mode::Fanout {
            Some(posts::run(&launcher, &posts_cfg).await?)
        } else {
            None
        };
        let fanout = if cli.mode != Mode::Posts {
            Some(fanout::run(&launcher, &fanout_cfg).await?)
        } else {
            None
        };
        Ok::<_, BoxError>((posts, fanout))
    })?;
    rt.shutdown_timeout(Duration::from_secs(2));
    println!(
        "bench process CPU time: {:.1} s (user + system)",
        sys::own_cpu_seconds()
    );
    println!();
    summary(posts.as_ref(), fanout.as_ref());
    let errors = posts.as_ref().map_or(0, posts::Report::errors)
        + fanout
            .as_ref()
            .map_or(0, |f| (f.stream_errors + f.missed + f.post_errors) as u64);
    if errors > 0 {
        println!("\nnote: {errors} error(s) were counted; the figures above exclude them");
    }
    Ok(())
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
