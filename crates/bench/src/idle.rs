//! `idle`: the real engine (`quotabell watch`) connected to an idle server. Reported per round:
//! its VmRSS and VmHWM at the end, and its wake-ups during the window: voluntary plus
//! involuntary context switches summed over all its threads (`/proc/PID/task/*/status`).
//!
//! The window starts once the engine has caught up and its stream is connected. The threads
//! are read once a second (reading /proc wakes nobody), so a thread that ends during the
//! window counts with its last reading.

use std::time::{Duration, Instant};

use std::path::PathBuf;

use quotabell_testbed::Profile;
use quotabell_testbed::process::Memory;

use crate::cache::{Cache, poll, server_last_event_id};
use crate::launcher::{EngineArgs, Launcher};
use crate::report::{Fmt, Section, figure_row, verdict_below};
use crate::stats::Spread;
use crate::{BoxError, Common, posts, sys};

/// The engine's target, as BENCHMARKS.md's At a glance states it.
const IDLE_RSS_TARGET_MB: f64 = 20.0;

/// `idle`'s options.
#[derive(clap::Args, Clone)]
#[group(id = "idle-options")]
pub struct Args {
    /// Length of one round, in seconds.
    #[arg(long, default_value_t = 60.0, value_parser = crate::seconds_in(1.0, 3600.0, false))]
    pub idle_secs: f64,
    /// Accounts signed in to the one engine (each its own user on the server, its own stream).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub idle_accounts: u16,
}

impl Args {
    pub fn config(&self, common: &Common, engine: &EngineArgs, engine_bin: PathBuf) -> Config {
        Config {
            rounds: common.rounds(2),
            secs: self.idle_secs,
            engine_bin,
            keepalive_secs: engine.engine_keepalive_secs,
            accounts: self.idle_accounts as usize,
        }
    }
}

const EMAIL: &str = "idle@bench.invalid";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Config {
    pub rounds: usize,
    pub secs: f64,
    pub engine_bin: std::path::PathBuf,
    pub keepalive_secs: f64,
    pub accounts: usize,
}

pub struct Round {
    pub secs: f64,
    pub mem: Option<Memory>,
    pub voluntary: u64,
    pub involuntary: u64,
    pub threads_seen: usize,
    pub cpu_ms: Option<f64>,
    /// Context switches by thread name, most first.
    pub by_thread: Vec<(String, u64)>,
}

impl Round {
    pub fn wakeups_per_sec(&self) -> f64 {
        (self.voluntary + self.involuntary) as f64 / self.secs
    }
}

pub struct Report {
    pub rounds: Vec<Round>,
    pub other_load: Option<f64>,
    pub accounts: usize,
}

impl Report {
    /// Its rows of the engine summary.
    pub fn summarize(&self, out: &mut Section) {
        let i = self;
        let mibf: &Fmt = &|v| format!("{v:.1} MiB");
        let accounts = match i.accounts {
            1 => String::new(),
            n => format!(", {n} accounts"),
        };
        let label = format!(
            "idle ({} × {:.0} s, server keepalive 15 s{accounts})",
            i.rounds.len(),
            i.rounds.first().map_or(0.0, |r| r.secs)
        );
        out.load(&label, i.other_load);
        let target_mib = IDLE_RSS_TARGET_MB * 1e6 / 1024.0 / 1024.0;
        let mut rss = figure_row(
            &label,
            "engine VmRSS at the end",
            i.rss_mib(),
            mibf,
            "< 20 MB (19.07 MiB)",
        );
        rss[5] = verdict_below(i.rss_mib().map(|s| s.median), target_mib);
        out.row(rss);
        out.figure(&label, "engine VmHWM at the end", i.hwm_mib(), mibf, "–");
        out.figure(
            &label,
            "engine wake-ups (context switches, all threads) per second",
            i.wakeups(),
            &|v| format!("{v:.3}/s"),
            "–",
        );
        out.figure(
            &label,
            "engine CPU time per minute idle",
            i.cpu_ms_per_min(),
            &|v| format!("{v:.0} ms"),
            "–",
        );
    }

    fn spread(&self, f: impl Fn(&Round) -> f64) -> Option<Spread> {
        Spread::over(&self.rounds, f)
    }
    pub fn rss_mib(&self) -> Option<Spread> {
        self.spread(|r| r.mem.map_or(f64::NAN, |m| sys::mib(m.rss_kib)))
    }
    pub fn hwm_mib(&self) -> Option<Spread> {
        self.spread(|r| r.mem.map_or(f64::NAN, |m| sys::mib(m.hwm_kib)))
    }
    pub fn wakeups(&self) -> Option<Spread> {
        self.spread(Round::wakeups_per_sec)
    }
    pub fn cpu_ms_per_min(&self) -> Option<Spread> {
        self.spread(|r| r.cpu_ms.map_or(f64::NAN, |c| c * 60.0 / r.secs))
    }
}

pub async fn run(launcher: &Launcher, cfg: &Config) -> Result<Report, BoxError> {
    let desktop = launcher.desktop("idle")?;
    let server = launcher.start("idle")?;
    let base = format!("http://{}", server.addr);
    println!(
        "[idle] server pid {} on {base} (keepalive: the server's default); private bus {}",
        server.pid, desktop.bus
    );
    let client = posts::client()?;
    let profile = Profile {
        bin: cfg.engine_bin.clone(),
        dir: desktop.dir.path().join("profile"),
    };
    let mut tokens = Vec::new();
    for i in 0..cfg.accounts {
        let email = match i {
            0 => EMAIL.to_owned(),
            i => format!("idle{i}@bench.invalid"),
        };
        let token = server.add_user(&email, "pro")?;
        profile.login(&desktop, &base, &token)?;
        tokens.push(token);
    }
    let keepalive = cfg.keepalive_secs.to_string();

    let mut report = Report {
        rounds: Vec::new(),
        other_load: None,
        accounts: cfg.accounts,
    };
    let probe = sys::GroupLoadProbe::start();
    for r in 0..cfg.rounds {
        let mut watch = profile.watch(&desktop, &["--keepalive-secs", &keepalive], None)?;
        let cache = Cache::open(&profile.db())?;
        let mut last = Vec::new();
        for token in &tokens {
            last.push(server_last_event_id(&client, &base, token).await?);
        }
        let connected = poll(
            "the engine to connect",
            CONNECT_TIMEOUT,
            Duration::from_millis(20),
            || {
                let views = cache.views()?;
                Ok((views.len() == last.len()
                    && views
                        .iter()
                        .zip(&last)
                        .all(|(v, &l)| v.connection == "connected" && v.cursor >= Some(l)))
                .then_some(()))
            },
        )
        .await;
        if let Err(e) = connected {
            return Err(format!("{e}; engine log:\n{}", watch.log_tail(20)).into());
        }
        drop(cache);

        let mut switches =
            sys::ThreadSwitches::start(watch.pid).ok_or("cannot read the engine's threads")?;
        let cpu0 = sys::stat_cpu_seconds(watch.pid);
        let t0 = Instant::now();
        let window = Duration::from_secs_f64(cfg.secs);
        while t0.elapsed() < window {
            let left = window.saturating_sub(t0.elapsed());
            tokio::time::sleep(left.min(Duration::from_secs(1))).await;
            switches.sample();
            if let Some(status) = watch.exited() {
                return Err(format!(
                    "the engine exited while idle: {status}\n{}",
                    watch.log_tail(20)
                )
                .into());
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let mem = Memory::of(watch.pid);
        let cpu1 = sys::stat_cpu_seconds(watch.pid);
        let switches = switches.finish();
        let round = Round {
            secs,
            mem,
            voluntary: switches.voluntary,
            involuntary: switches.involuntary,
            threads_seen: switches.threads_seen,
            cpu_ms: cpu0.zip(cpu1).map(|(a, b)| (b - a) * 1e3),
            by_thread: switches.by_thread,
        };
        watch.stop(Duration::from_secs(5));
        println!(
            "[idle] round {}/{}: {:.1} s idle: {} voluntary + {} involuntary context switches = {:.3} wake-ups/s over {} thread(s); CPU {}; VmRSS {} VmHWM {}",
            r + 1,
            cfg.rounds,
            round.secs,
            round.voluntary,
            round.involuntary,
            round.wakeups_per_sec(),
            round.threads_seen,
            round.cpu_ms.map_or("n/a".into(), |c| format!("{c:.0} ms")),
            mem.map_or("n/a".into(), |m| format!("{:.1} MiB", sys::mib(m.rss_kib))),
            mem.map_or("n/a".into(), |m| format!("{:.1} MiB", sys::mib(m.hwm_kib))),
        );
        let threads: Vec<String> = round
            .by_thread
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        println!(
            "[idle]   context switches by thread: {}",
            threads.join(", ")
        );
        report.rounds.push(round);
    }
    report.other_load = probe.other_cores();
    drop(server);
    drop(desktop);
    Ok(report)
}
