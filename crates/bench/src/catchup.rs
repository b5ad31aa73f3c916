//! `catchup`: how long the real engine takes to catch up on 100,000 events it missed, and
//! its peak memory while doing so.
//!
//! A `pro` user (soft limit: every build is accepted, 2 or 3 events each). The engine signs
//! in and runs `watch` once, so that its cursor stands at the start; it is stopped, and the
//! bench posts builds until the user's event log has grown by the wanted number of events.
//! Each round copies that stopped profile (the keychain entry is shared through the same
//! session) and starts `quotabell watch` on the copy. Measured from just before the start:
//!
//! - *events caught up*: the cache's cursor (`sync_state.cursor`, read-only from the engine's
//!   SQLite file) reaches the server's newest event id;
//! - *catch-up done*: the engine has also refreshed usage and builds and opened the stream
//!   (its stored connection state becomes `connected`).
//!
//! Then VmHWM and VmRSS of the engine, and it is stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::path::{Path, PathBuf};

use quotabell_testbed::Profile;
use quotabell_testbed::process::Memory;

use crate::cache::{Cache, poll, server_last_event_id};
use crate::launcher::{EngineArgs, Launcher};
use crate::report::{Fmt, Section, figure_row, thousands, verdict_below};
use crate::stats::Spread;
use crate::{BoxError, Common, posts, sys};

/// The engine's target, as BENCHMARKS.md's At a glance states it.
const CATCHUP_TARGET_SECS: f64 = 3.0;

/// `catchup`'s options.
#[derive(clap::Args, Clone)]
#[group(id = "catchup-options")]
pub struct Args {
    /// Events the engine misses (the server keeps 1,000,000 per user).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=900_000))]
    pub events: u64,
    /// Concurrent keep-alive HTTP/1.1 clients posting the missed builds.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
}

impl Args {
    pub fn config(&self, common: &Common, engine: &EngineArgs, engine_bin: PathBuf) -> Config {
        Config {
            rounds: common.rounds(3),
            events: self.events,
            concurrency: self.concurrency as usize,
            engine_bin,
            keepalive_secs: engine.engine_keepalive_secs,
        }
    }
}

const EMAIL: &str = "catchup@bench.invalid";
const ROUND_TIMEOUT: Duration = Duration::from_secs(120);
const POST_TIMEOUT: Duration = Duration::from_secs(300);

pub struct Config {
    pub rounds: usize,
    pub events: u64,
    pub concurrency: usize,
    pub engine_bin: PathBuf,
    pub keepalive_secs: f64,
}

pub struct Round {
    /// Engine start → the first page of events stored (start-up, keychain, first request).
    pub first_secs: f64,
    pub events_secs: f64,
    pub done_secs: f64,
    pub mem: Option<Memory>,
    pub engine_cpu_secs: Option<f64>,
    /// The server's CPU time from the engine's start until it was done.
    pub server_cpu_secs: Option<f64>,
    pub notifications_shown: i64,
}

pub struct Report {
    pub missed_events: u64,
    pub builds_posted: u64,
    pub post_secs: f64,
    pub rounds: Vec<Round>,
    pub other_load: Option<f64>,
}

impl Report {
    /// Its lines and rows of the engine summary.
    pub fn summarize(&self, out: &mut Section) {
        let c = self;
        let mibf: &Fmt = &|v| format!("{v:.1} MiB");
        let secf: &Fmt = &|v| format!("{v:.3} s");
        let label = format!(
            "catchup ({} missed events, {} rounds)",
            thousands(c.missed_events as f64),
            c.rounds.len()
        );
        out.note(format!(
            "catchup: {} events missed ({} builds posted in {:.1} s); caught up in {} (median), done in {}, engine VmHWM {}",
            c.missed_events,
            c.builds_posted,
            c.post_secs,
            c.events_secs().map_or("n/a".into(), |s| secf(s.median)),
            c.done_secs().map_or("n/a".into(), |s| secf(s.median)),
            c.hwm_mib().map_or("n/a".into(), |s| mibf(s.median)),
        ));
        out.load(&label, c.other_load);
        let mut ev = figure_row(
            &label,
            "engine start → cursor at the server's last event",
            c.events_secs(),
            secf,
            "< 3 s",
        );
        ev[5] = verdict_below(c.events_secs().map(|s| s.median), CATCHUP_TARGET_SECS);
        out.row(ev);
        let mut done = figure_row(
            &label,
            "engine start → usage and builds synced, stream connected",
            c.done_secs(),
            secf,
            "< 3 s",
        );
        done[5] = verdict_below(c.done_secs().map(|s| s.median), CATCHUP_TARGET_SECS);
        out.row(done);
        out.figure(&label, "engine VmHWM (peak RSS)", c.hwm_mib(), mibf, "–");
        out.figure(&label, "engine VmRSS when done", c.rss_mib(), mibf, "–");
        out.figure(
            &label,
            "engine start → first page of events stored (diagnostic)",
            c.first_secs(),
            secf,
            "–",
        );
        out.figure(
            &label,
            "engine CPU time until done (diagnostic)",
            c.cpu_secs(),
            &|v| format!("{v:.2} s"),
            "–",
        );
        out.figure(
            &label,
            "server CPU time meanwhile (diagnostic)",
            c.server_cpu_secs(),
            &|v| format!("{v:.2} s"),
            "–",
        );
    }

    fn spread(&self, f: impl Fn(&Round) -> f64) -> Option<Spread> {
        Spread::over(&self.rounds, f)
    }
    pub fn events_secs(&self) -> Option<Spread> {
        self.spread(|r| r.events_secs)
    }
    pub fn done_secs(&self) -> Option<Spread> {
        self.spread(|r| r.done_secs)
    }
    pub fn hwm_mib(&self) -> Option<Spread> {
        self.spread(|r| r.mem.map_or(f64::NAN, |m| sys::mib(m.hwm_kib)))
    }
    pub fn rss_mib(&self) -> Option<Spread> {
        self.spread(|r| r.mem.map_or(f64::NAN, |m| sys::mib(m.rss_kib)))
    }
    pub fn cpu_secs(&self) -> Option<Spread> {
        self.spread(|r| r.engine_cpu_secs.unwrap_or(f64::NAN))
    }
    pub fn server_cpu_secs(&self) -> Option<Spread> {
        self.spread(|r| r.server_cpu_secs.unwrap_or(f64::NAN))
    }
    pub fn first_secs(&self) -> Option<Spread> {
        self.spread(|r| r.first_secs)
    }
}

/// Posts `count` builds with `concurrency` keep-alive clients; returns (accepted, errors).
async fn post_many(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    count: u64,
    concurrency: usize,
    offset: u64,
) -> (u64, u64) {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let (client, url, auth, next) = (
            client.clone(),
            url.to_owned(),
            format!("Bearer {token}"),
            next.clone(),
        );
        tasks.spawn(async move {
            let (mut ok, mut errors) = (0u64, 0u64);
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    break;
                }
                let res = client
                    .post(&url)
                    .header(reqwest::header::AUTHORIZATION, &auth)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(posts::build_body("catchup-app", w, offset + n))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == reqwest::StatusCode::CREATED => {
                        let _ = r.bytes().await;
                        ok += 1;
                    }
                    _ => {
                        errors += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (ok, errors)
        });
    }
    let (mut ok, mut errors) = (0, 0);
    while let Some(j) = tasks.join_next().await {
        let (o, e) = j.unwrap_or((0, 1));
        ok += o;
        errors += e;
    }
    (ok, errors)
}

pub async fn run(launcher: &Launcher, cfg: &Config) -> Result<Report, BoxError> {
    let desktop = launcher.desktop("catchup")?;
    let server = launcher.start("catchup")?;
    let base = format!("http://{}", server.addr);
    println!(
        "[catchup] server pid {} on {base}; private bus {}",
        server.pid, desktop.bus
    );
    let client = posts::client()?;
    let token = server.add_user(EMAIL, "pro")?;
    let keepalive = cfg.keepalive_secs.to_string();
    let watch_args = ["--keepalive-secs", keepalive.as_str()];

    // The profile as a user leaves it: signed in, synced once, engine stopped.
    let base_profile = Profile {
        bin: cfg.engine_bin.clone(),
        dir: desktop.dir.path().join("profile-0"),
    };
    base_profile.login(&desktop, &base, &token)?;
    {
        let mut watch = base_profile.watch(&desktop, &watch_args, None)?;
        let cache = Cache::open(&base_profile.db())?;
        let r = poll(
            "the first engine run to connect",
            ROUND_TIMEOUT,
            Duration::from_millis(20),
            || Ok((cache.view()?.connection == "connected").then_some(())),
        )
        .await;
        if let Err(e) = r {
            return Err(format!("{e}; engine log:\n{}", watch.log_tail(20)).into());
        }
        watch.stop(Duration::from_secs(10));
    }
    let start_cursor = Cache::open(&base_profile.db())?.cursor()?.unwrap_or(0);

    // The events the engine misses.
    let url = format!("{base}/api/v1/builds");
    let t = Instant::now();
    let mut posted = 0u64;
    let mut last = server_last_event_id(&client, &base, &token).await?;
    while last < start_cursor + cfg.events {
        if t.elapsed() > POST_TIMEOUT {
            return Err(format!(
                "posting builds took longer than {POST_TIMEOUT:?} ({last} events so far)"
            )
            .into());
        }
        // Two events per build at least; top up until there are enough.
        let missing = start_cursor + cfg.events - last;
        let count = missing.div_ceil(2).max(1);
        let (ok, errors) = post_many(&client, &url, &token, count, cfg.concurrency, posted).await;
        posted += ok;
        if errors > 0 {
            println!("[catchup] {errors} build post(s) failed (retried by topping up)");
        }
        last = server_last_event_id(&client, &base, &token).await?;
    }
    let post_secs = t.elapsed().as_secs_f64();
    let missed = last - start_cursor;
    println!(
        "[catchup] engine stopped at cursor {start_cursor}; posted {posted} builds in {post_secs:.1} s; server's last event id {last}: {missed} events missed"
    );

    let mut report = Report {
        missed_events: missed,
        builds_posted: posted,
        post_secs,
        rounds: Vec::new(),
        other_load: None,
    };
    let probe = sys::GroupLoadProbe::start();
    for r in 0..cfg.rounds {
        let profile = Profile {
            bin: cfg.engine_bin.clone(),
            dir: desktop.dir.path().join(format!("profile-{}", r + 1)),
        };
        copy_dir(&base_profile.dir, &profile.dir)?;
        let cache = Cache::open(&profile.db())?;
        let server_cpu0 = sys::stat_cpu_seconds(server.pid);
        let t0 = Instant::now();
        let mut watch = profile.watch(&desktop, &watch_args, None)?;
        let mut first = None;
        let events = poll(
            "the cursor to reach the server's last event",
            ROUND_TIMEOUT,
            Duration::from_millis(5),
            || {
                let c = cache.cursor()?;
                if first.is_none() && c > Some(start_cursor) {
                    first = Some(t0.elapsed());
                }
                Ok((c >= Some(last)).then(|| t0.elapsed()))
            },
        )
        .await;
        let events = match events {
            Ok(d) => d,
            Err(e) => return Err(format!("{e}; engine log:\n{}", watch.log_tail(20)).into()),
        };
        let done = poll(
            "the engine to connect after catching up",
            ROUND_TIMEOUT,
            Duration::from_millis(5),
            || Ok((cache.view()?.connection == "connected").then(|| t0.elapsed())),
        )
        .await;
        let done = match done {
            Ok(d) => d,
            Err(e) => return Err(format!("{e}; engine log:\n{}", watch.log_tail(20)).into()),
        };
        let mem = Memory::of(watch.pid);
        let cpu = sys::stat_cpu_seconds(watch.pid);
        let server_cpu = server_cpu0
            .zip(sys::stat_cpu_seconds(server.pid))
            .map(|(a, b)| b - a);
        let shown = cache.view()?.shown;
        watch.stop(Duration::from_secs(10));
        drop(cache);
        let _ = std::fs::remove_dir_all(&profile.dir);
        let round = Round {
            first_secs: first.unwrap_or(events).as_secs_f64(),
            events_secs: events.as_secs_f64(),
            done_secs: done.as_secs_f64(),
            mem,
            engine_cpu_secs: cpu,
            server_cpu_secs: server_cpu,
            notifications_shown: shown,
        };
        println!(
            "[catchup] round {}/{}: first page stored after {:.3} s, {missed} events caught up in {:.3} s, done (usage, builds, stream connected) in {:.3} s; engine VmHWM {} VmRSS {}, CPU {} (server {}), {} notification(s) shown",
            r + 1,
            cfg.rounds,
            round.first_secs,
            round.events_secs,
            round.done_secs,
            mem.map_or("n/a".into(), |m| format!("{:.1} MiB", sys::mib(m.hwm_kib))),
            mem.map_or("n/a".into(), |m| format!("{:.1} MiB", sys::mib(m.rss_kib))),
            cpu.map_or("n/a".into(), |c| format!("{c:.2} s")),
            server_cpu.map_or("n/a".into(), |c| format!("{c:.2} s")),
            round.notifications_shown
        );
        report.rounds.push(round);
    }
    report.other_load = probe.other_cores();
    drop(server);
    drop(desktop);
    Ok(report)
}

/// Copies a directory tree of regular files (a stopped engine's profile).
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
