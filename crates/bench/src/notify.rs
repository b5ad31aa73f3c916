//! `notify-latency`: the time from a build POST (just before it is sent) to the D-Bus `Notify`
//! call that the real engine (`quotabell watch`) makes for it, as seen on the session bus.
//!
//! A Free user (100 builds per period, hard limit) and engine thresholds at every percent
//! from 1 to 100: each accepted build crosses a new threshold, so each build causes exactly
//! one notification (`Builds at K% ...`, the 100th "limit reached"). A round is one billing
//! period: the bench rolls the user's period with the server's CLI (`quota.reset`, which
//! notifies nothing), waits until the engine has it, then posts the builds one at a time,
//! each after the previous notification. `dbus-monitor` stamps every `Notify` call.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::path::PathBuf;

use quotabell_testbed::Profile;
use quotabell_testbed::process::{CpuMask, Memory};

use crate::cache::{Cache, poll, server_last_event_id};
use crate::launcher::{EngineArgs, Launcher, NOTIFICATION_SHOWN};
use crate::monitor::{self, Monitor, Notified};
use crate::report::{Fmt, Section, figure_row, ms, verdict_below};
use crate::stats::{Spread, percentile, sort};
use crate::{BoxError, Common, posts, sys};

/// The engine's target, as BENCHMARKS.md's At a glance states it.
const NOTIFY_P99_TARGET_MS: f64 = 25.0;

/// `notify-latency`'s options.
#[derive(clap::Args, Clone)]
#[group(id = "notify-latency-options")]
pub struct Args {
    /// Builds (each one notification) per round; at most 100, the Free plan's builds per
    /// period.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub samples: u32,
    /// Least pause after each notification before the next build, in ms (the bench also
    /// waits until dunst has removed it and is idle).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub gap_ms: u64,
}

impl Args {
    pub fn config(
        &self,
        common: &Common,
        engine: &EngineArgs,
        engine_bin: PathBuf,
        launcher: &Launcher,
    ) -> Config {
        Config {
            rounds: common.rounds(3),
            samples: self.samples as usize,
            gap: Duration::from_millis(self.gap_ms),
            engine_bin,
            keepalive_secs: engine.engine_keepalive_secs,
            monitor_mask: launcher.original_mask,
        }
    }
}

const EMAIL: &str = "notify@bench.invalid";
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
const IDLE_FOR: Duration = Duration::from_millis(100);
const SETTLE_MAX: Duration = Duration::from_secs(3);

pub struct Config {
    pub rounds: usize,
    /// Builds (= notifications) per round, at most 100 (the Free plan's limit).
    pub samples: usize,
    /// Least pause after each notification before the next build (the bench also waits
    /// until the notification is gone and the daemon idle).
    pub gap: Duration,
    pub engine_bin: PathBuf,
    pub keepalive_secs: f64,
    /// CPUs for `dbus-monitor` (the bench's original mask when it pinned itself).
    pub monitor_mask: Option<CpuMask>,
}

pub struct Round {
    /// POST → Notify, in ms, one per build that was notified.
    pub latencies_ms: Vec<f64>,
    /// How long the desktop took to be idle again after each notification, in ms.
    pub settle_ms: Vec<f64>,
    pub post_p50_ms: f64,
    /// Engine CPU time per notification (all threads), in ms.
    pub engine_cpu_ms: Option<f64>,
    pub missed: usize,
    /// Notifications that did not name the build's percentage, or extra ones.
    pub unexpected: usize,
}

fn pct_of(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    sort(&mut v);
    percentile(&v, p).unwrap_or(f64::NAN)
}

impl Round {
    fn pct(&self, p: f64) -> f64 {
        pct_of(&self.latencies_ms, p)
    }
}

pub struct Report {
    pub rounds: Vec<Round>,
    pub other_load: Option<f64>,
    pub mem_after: Option<Memory>,
    pub samples_text: Vec<String>,
}

impl Report {
    /// Its lines and rows of the engine summary.
    pub fn summarize(&self, out: &mut Section) {
        let n = self;
        let msf: &Fmt = &ms;
        let (count, [p50, p99, max]) = n.pooled();
        let label = format!(
            "notify-latency ({} rounds, {count} notifications)",
            n.rounds.len()
        );
        out.note(format!(
            "notify-latency: {count} notifications; POST→Notify over all: p50 {} p99 {} max {}; medians of rounds: p50 {} p99 {} max {}; {} error(s)",
            ms(p50),
            ms(p99),
            ms(max),
            n.p50().map_or("n/a".into(), |s| ms(s.median)),
            n.p99().map_or("n/a".into(), |s| ms(s.median)),
            n.max().map_or("n/a".into(), |s| ms(s.median)),
            n.errors()
        ));
        for s in &n.samples_text {
            out.note(format!("  error sample: {s}"));
        }
        out.load(&label, n.other_load);
        out.figure(&label, "POST → Notify p50 (per round)", n.p50(), msf, "–");
        let mut p99_row = figure_row(
            &label,
            "POST → Notify p99 (per round)",
            n.p99(),
            msf,
            "< 25 ms",
        );
        p99_row[5] = verdict_below(n.p99().map(|s| s.median), NOTIFY_P99_TARGET_MS);
        out.row(p99_row);
        out.figure(&label, "POST → Notify max (per round)", n.max(), msf, "–");
        out.row([
            label.clone(),
            format!("POST → Notify over all {count}: p50 / p99 / max"),
            format!("{} / {} / {}", ms(p50), ms(p99), ms(max)),
            "–".into(),
            "p99 < 25 ms".into(),
            verdict_below(Some(p99), NOTIFY_P99_TARGET_MS),
        ]);
        out.figure(
            &label,
            "POST round trip p50 (diagnostic)",
            n.post_p50(),
            msf,
            "–",
        );
        out.figure(
            &label,
            "pause after each notification until the desktop is idle, p50 (diagnostic)",
            n.settle_p50(),
            msf,
            "–",
        );
        out.figure(
            &label,
            "engine CPU time per notification (diagnostic)",
            n.engine_cpu(),
            msf,
            "–",
        );
        if let Some(m) = n.mem_after {
            out.row([
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
            out.row([
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

    fn spread(&self, f: impl Fn(&Round) -> f64) -> Option<Spread> {
        let v: Vec<f64> = self
            .rounds
            .iter()
            .filter(|r| !r.latencies_ms.is_empty())
            .map(f)
            .collect();
        Spread::of(&v)
    }
    pub fn p50(&self) -> Option<Spread> {
        self.spread(|r| r.pct(50.0))
    }
    pub fn p99(&self) -> Option<Spread> {
        self.spread(|r| r.pct(99.0))
    }
    pub fn max(&self) -> Option<Spread> {
        self.spread(|r| r.pct(100.0))
    }
    pub fn post_p50(&self) -> Option<Spread> {
        self.spread(|r| r.post_p50_ms)
    }
    pub fn settle_p50(&self) -> Option<Spread> {
        self.spread(|r| pct_of(&r.settle_ms, 50.0))
            .filter(|s| s.median.is_finite())
    }
    pub fn engine_cpu(&self) -> Option<Spread> {
        self.spread(|r| r.engine_cpu_ms.unwrap_or(f64::NAN))
            .filter(|s| s.median.is_finite())
    }
    /// p50, p99 and max over every sample of every round.
    pub fn pooled(&self) -> (usize, [f64; 3]) {
        let mut all: Vec<f64> = self
            .rounds
            .iter()
            .flat_map(|r| r.latencies_ms.iter().copied())
            .collect();
        sort(&mut all);
        let p = |q| percentile(&all, q).unwrap_or(f64::NAN);
        (all.len(), [p(50.0), p(99.0), p(100.0)])
    }
    pub fn errors(&self) -> usize {
        self.rounds.iter().map(|r| r.missed + r.unexpected).sum()
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// Collects every notification that arrives within `quiet` of the last one (for at most
/// [`SETTLE_MAX`] in all).
async fn drain(monitor: &mut Monitor, quiet: Duration) -> Vec<Notified> {
    let start = Instant::now();
    let mut out = Vec::new();
    while start.elapsed() < SETTLE_MAX
        && let Ok(Some(n)) = tokio::time::timeout(quiet, monitor.calls.recv()).await
    {
        out.push(n);
    }
    out
}

/// Waits until the notification daemon has used no CPU for [`IDLE_FOR`] (it draws and
/// later removes each notification, which costs it and Xvfb tens of milliseconds of CPU on
/// this machine), at most [`SETTLE_MAX`]. A real desktop is idle when a build finishes; the
/// bench's rate must not make the engine queue behind the daemon's drawing.
async fn desktop_idle(dunst: u32) {
    let start = Instant::now();
    let mut last = sys::cpu_seconds(dunst);
    let mut since = Instant::now();
    while start.elapsed() < SETTLE_MAX {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = sys::cpu_seconds(dunst);
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= IDLE_FOR {
            return;
        }
    }
}

pub async fn run(launcher: &Launcher, cfg: &Config) -> Result<Report, BoxError> {
    let samples = cfg.samples.clamp(1, 100);
    let desktop = launcher.desktop("notify")?;
    let server = launcher.start("notify")?;
    let base = format!("http://{}", server.addr);
    println!(
        "[notify] server pid {} on {base}; private bus {}",
        server.pid, desktop.bus
    );
    let client = posts::client()?;
    let token = server.add_user(EMAIL, "free")?;
    let builds_url = format!("{base}/api/v1/builds");
    let auth = format!("Bearer {token}");
    let post = |n: u64| {
        client
            .post(&builds_url)
            .header(reqwest::header::AUTHORIZATION, &auth)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(posts::build_body("notify-app", 0, n))
            .send()
    };
    // The first build creates the application (1 of 3 applications, 33%): done before the
    // engine signs in, so no round starts with that extra crossing.
    let r = post(0).await?;
    if r.status() != reqwest::StatusCode::CREATED {
        return Err(format!("warm-up build: HTTP {}", r.status()).into());
    }

    let profile = Profile {
        bin: cfg.engine_bin.clone(),
        dir: desktop.dir.path().join("profile"),
    };
    let thresholds: Vec<String> = (1..=100).map(|p: u32| p.to_string()).collect();
    let ran = profile.run(
        &desktop,
        &["settings", "--thresholds", &thresholds.join(",")],
        None,
    )?;
    if !ran.success {
        return Err(format!("`quotabell settings` failed: {}{}", ran.stdout, ran.stderr).into());
    }
    profile.login(&desktop, &base, &token)?;
    let mut monitor = monitor::start(&desktop, Launcher::placement(cfg.monitor_mask))?;
    let keepalive = cfg.keepalive_secs.to_string();
    let mut watch = profile.watch(&desktop, &["--keepalive-secs", &keepalive], None)?;
    println!(
        "[notify] engine pid {} (watch --keepalive-secs {keepalive})",
        watch.pid
    );
    let cache = poll(
        "the engine's cache",
        SETTLE_TIMEOUT,
        Duration::from_millis(20),
        || {
            Ok(profile
                .db()
                .exists()
                .then(|| Cache::open(&profile.db()).ok())
                .flatten())
        },
    )
    .await?;
    let settle = |what: &'static str| {
        let (cache, client, base, token) = (&cache, &client, &base, &token);
        async move {
            let last = server_last_event_id(client, base, token).await?;
            poll(what, SETTLE_TIMEOUT, Duration::from_millis(20), || {
                let v = cache.view()?;
                Ok(
                    (v.connection == "connected" && v.cursor >= Some(last) && v.pending == 0)
                        .then_some(()),
                )
            })
            .await
        }
    };
    if let Err(e) = settle("the engine to connect").await {
        return Err(format!("{e}; engine log:\n{}", watch.log_tail(20)).into());
    }
    // The sign-in digest (usage at sign-in) and anything else from start-up.
    let startup = drain(&mut monitor, Duration::from_millis(500)).await;
    println!(
        "[notify] engine connected; {} notification(s) at start-up",
        startup.len()
    );

    let mut report = Report {
        rounds: Vec::new(),
        other_load: None,
        mem_after: None,
        samples_text: Vec::new(),
    };
    let probe = sys::GroupLoadProbe::start();
    let mut last_roll = Instant::now() - Duration::from_secs(2);
    for r in 0..cfg.rounds {
        // Periods are keyed by their start second: two rolls must be a second apart.
        if let Some(wait) = Duration::from_millis(1100).checked_sub(last_roll.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        server.cli(&["period", "roll", "--user", EMAIL])?;
        last_roll = Instant::now();
        settle("the engine to take the new period").await?;
        let stray = drain(&mut monitor, Duration::from_millis(300)).await;

        let mut round = Round {
            latencies_ms: Vec::with_capacity(samples),
            settle_ms: Vec::with_capacity(samples),
            post_p50_ms: f64::NAN,
            engine_cpu_ms: None,
            missed: 0,
            unexpected: stray.len(),
        };
        let mut post_ms = Vec::with_capacity(samples);
        let cpu0 = sys::stat_cpu_seconds(watch.pid);
        let n_base = (r as u64 + 1) * 1000;
        for k in 1..=samples {
            let sent_at = unix_now();
            let t = Instant::now();
            let resp = post(n_base + k as u64).await?;
            let status = resp.status();
            let _ = resp.bytes().await?;
            post_ms.push(t.elapsed().as_secs_f64() * 1e3);
            if status != reqwest::StatusCode::CREATED {
                return Err(format!("round {}: build {k}: HTTP {status}", r + 1).into());
            }
            match tokio::time::timeout(NOTIFY_TIMEOUT, monitor.calls.recv()).await {
                Ok(Some(n)) => {
                    let expected = format!("{k} of 100 builds used");
                    if n.text.contains(&expected) {
                        round.latencies_ms.push((n.at - sent_at) * 1e3);
                    } else {
                        round.unexpected += 1;
                        if report.samples_text.len() < 3 {
                            report.samples_text.push(format!(
                                "build {k}: expected {expected:?}, got {:?}",
                                n.text
                            ));
                        }
                    }
                }
                Ok(None) => return Err("dbus-monitor ended".into()),
                Err(_) => {
                    round.missed += 1;
                    if report.samples_text.len() < 3 {
                        report.samples_text.push(format!(
                            "round {} build {k}: no Notify within {NOTIFY_TIMEOUT:?}",
                            r + 1
                        ));
                    }
                }
            }
            // Let the engine finish the call (the daemon's reply, the store update) and the
            // daemon show and remove the notification; catch any second notification for the
            // same build.
            let settle = Instant::now();
            let extra = drain(&mut monitor, cfg.gap.max(NOTIFICATION_SHOWN)).await;
            round.unexpected += extra.len();
            desktop_idle(desktop.dunst()).await;
            round.settle_ms.push(settle.elapsed().as_secs_f64() * 1e3);
            if let Some(status) = watch.exited() {
                return Err(format!(
                    "the engine exited during the rounds: {status}\n{}",
                    watch.log_tail(20)
                )
                .into());
            }
        }
        let cpu1 = sys::stat_cpu_seconds(watch.pid);
        round.engine_cpu_ms = cpu0.zip(cpu1).map(|(a, b)| (b - a) * 1e3 / samples as f64);
        sort(&mut post_ms);
        round.post_p50_ms = percentile(&post_ms, 50.0).unwrap_or(f64::NAN);
        println!(
            "[notify] round {}/{}: {} notification(s), POST→Notify p50 {:.2} ms p99 {:.2} ms max {:.2} ms (POST p50 {:.2} ms; desktop idle again after {:.0} ms), engine CPU {} per notification, missed {}, unexpected {}",
            r + 1,
            cfg.rounds,
            round.latencies_ms.len(),
            round.pct(50.0),
            round.pct(99.0),
            round.pct(100.0),
            round.post_p50_ms,
            pct_of(&round.settle_ms, 50.0),
            round
                .engine_cpu_ms
                .map_or("n/a".into(), |c| format!("{c:.2} ms")),
            round.missed,
            round.unexpected
        );
        report.rounds.push(round);
    }
    report.other_load = probe.other_cores();
    report.mem_after = Memory::of(watch.pid);
    watch.stop(Duration::from_secs(5));
    drop(monitor);
    drop(server);
    drop(desktop);
    Ok(report)
}
