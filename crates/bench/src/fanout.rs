//! `fanout`: N SSE streams; one published event per round; time until each stream has it.
//!
//! [`measure`] does not know which server it measures: a [`Target`] says where to subscribe
//! and how to publish. [`run`] (the `fanout` mode) measures Quotabell: the streams are N
//! streams of one user and the event is the `build.accepted` of one build POST by that user.
//! `fanout-vs-nchan` (vs_nchan.rs) runs the same measurement against nginx + nchan too.
//!
//! The streams are the cheap subscribers of sse.rs. Each stamps the time right after the read
//! that completed the event (and the kernel's receive time of those bytes) and sends it to
//! the coordinator here.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Semaphore, mpsc};

use quotabell_testbed::process::Memory;

use crate::launcher::{Launcher, ServerChild};
use crate::report::{Section, ms, spread_text, verdict_at_most};
use crate::sse::{self, Msg, Subscription};
use crate::stats::{Spread, percentile, sort};
use crate::{BoxError, Common, posts, sys};

/// Opening 10,000 streams 100 at a time takes tens of seconds on this machine.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(300);
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);

/// The reference the fan-out bench is judged against: nginx + nchan on the first benchmark
/// machine, one message to 1,000 EventSource subscribers.
const NCHAN_P50_MS: f64 = 11.0;
const NCHAN_P99_MS: f64 = 22.0;
const NCHAN_RSS_MIB: f64 = 24.5;

/// `fanout`'s options.
#[derive(clap::Args, Clone)]
#[group(id = "fanout-options")]
pub struct Args {
    /// SSE streams of the one user.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub streams: u32,
    #[command(flatten)]
    pub pace: Pace,
}

/// How the streams are opened and the rounds spaced (`fanout` and `fanout-vs-nchan`).
#[derive(clap::Args, Clone)]
#[group(id = "pace-options")]
pub struct Pace {
    /// Pause between rounds, in milliseconds.
    #[arg(long, default_value_t = 300)]
    pub pause_ms: u64,
    /// Streams being opened at once.
    #[arg(long, default_value_t = 100)]
    pub connect_parallel: u32,
}

impl Args {
    pub fn config(&self, common: &Common) -> Config {
        self.pace.config(common, self.streams)
    }
}

impl Pace {
    pub fn config(&self, common: &Common, streams: u32) -> Config {
        Config {
            rounds: common.rounds(10),
            streams: streams as usize,
            pause: Duration::from_millis(self.pause_ms),
            connect_parallel: self.connect_parallel.max(1) as usize,
        }
    }
}

pub struct Config {
    pub rounds: usize,
    pub streams: usize,
    pub pause: Duration,
    pub connect_parallel: usize,
}

/// A server under test, as the measurement sees it.
pub struct Target {
    /// "quotabell" or "nchan", for the log lines.
    pub name: &'static str,
    /// Where stream `i` subscribes: `subs[i % len]` (several instances of one deployment).
    pub subs: Vec<Arc<Subscription>>,
    pub publish: Publish,
    /// The process whose CPU and memory are the server's: Quotabell's server, nginx's worker.
    pub pid: u32,
    /// A second process of the same server (nginx's master): its CPU counts as the server's,
    /// its memory is reported apart.
    pub helper_pid: Option<u32>,
}

/// How a round publishes its one event.
pub enum Publish {
    /// Quotabell: one build POST by the subscribed user; the event is its `build.accepted`,
    /// whose data carries the build's id.
    Build { url: String, auth: String },
    /// nchan: one POST to the publisher location whose body is the message, `{"id":N}`
    /// padded to the size of what Quotabell sends per build (see `message`).
    Message { url: String },
}

/// What the server answered to a publish.
struct Published {
    id: i64,
    /// The subscribers the server itself counted (nchan says so in its answer).
    subscribers: Option<usize>,
}

impl Publish {
    async fn send(&self, client: &reqwest::Client, n: u64) -> Result<Published, String> {
        match self {
            Self::Build { url, auth } => {
                let resp = client
                    .post(url)
                    .header(reqwest::header::AUTHORIZATION, auth)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(posts::build_body("fanout-app", 0, n))
                    .send()
                    .await
                    .map_err(|e| format!("POST failed: {e}"))?;
                if resp.status() != reqwest::StatusCode::CREATED {
                    return Err(format!("POST answered HTTP {}", resp.status()));
                }
                let body = resp
                    .json::<serde_json::Value>()
                    .await
                    .map_err(|e| format!("POST answer: {e}"))?;
                let id = body
                    .get("id")
                    .and_then(serde_json::Value::as_i64)
                    .ok_or_else(|| format!("POST answer without an id: {body}"))?;
                Ok(Published {
                    id,
                    subscribers: None,
                })
            }
            Self::Message { url } => {
                let id = i64::try_from(n).map_err(|_| "round number too large")?;
                let resp = client
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(message(id))
                    .send()
                    .await
                    .map_err(|e| format!("publish failed: {e}"))?;
                // 201 when the channel has subscribers, 202 when the message was only queued.
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                if !matches!(status.as_u16(), 201 | 202) {
                    return Err(format!("publish answered HTTP {status}: {text}"));
                }
                Ok(Published {
                    id,
                    subscribers: nchan_subscribers(&text),
                })
            }
        }
    }
}

/// The message nchan fans out: `{"id":N}` padded so that, with nchan's `id:`/`data:` framing,
/// each subscriber receives about what Quotabell sends per build post (its `build.accepted`,
/// `quota.updated` and applications `quota.updated` events: 413 bytes of event-stream text in
/// one chunk). A 10-byte message would compare Quotabell's whole event batch with almost
/// nothing; the kernel's per-write cost grows with the bytes copied.
const MESSAGE_BYTES: usize = 390;

fn message(id: i64) -> String {
    let bare = format!(r#"{{"id":{id},"pad":""}}"#);
    let pad = "x".repeat(MESSAGE_BYTES.saturating_sub(bare.len()));
    format!(r#"{{"id":{id},"pad":"{pad}"}}"#)
}

/// The "active subscribers: N" line of nchan's plain-text publish answer.
fn nchan_subscribers(answer: &str) -> Option<usize> {
    answer
        .lines()
        .find_map(|l| l.strip_prefix("active subscribers:"))
        .and_then(|n| n.trim().parse().ok())
}

pub struct Round {
    pub delivered: usize,
    pub expected: usize,
    /// Ready streams that did not have the event within the round's timeout.
    pub missed: usize,
    /// The subscribers the server counted when it accepted the publish, if it says.
    pub server_subscribers: Option<usize>,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The same, from the kernel's receive timestamps: without the bench's own scheduling.
    pub kernel_p50_ms: f64,
    pub kernel_p99_ms: f64,
    pub kernel_max_ms: f64,
    /// Until the publish request was answered.
    pub post_ms: f64,
    /// CPU time the server used from the post until the last delivery (plus the pause noise).
    pub server_cpu_ms: f64,
}

pub struct Report {
    pub streams: usize,
    pub connected: usize,
    pub connect_secs: f64,
    pub mem_idle: Option<Memory>,
    pub mem_connected: Option<Memory>,
    pub mem_after: Option<Memory>,
    /// The helper process (nginx's master) with the streams connected and after the rounds.
    pub helper_mem_connected: Option<Memory>,
    pub helper_mem_after: Option<Memory>,
    pub rounds: Vec<Round>,
    /// Streams that ended or failed, with a sample reason.
    pub stream_errors: usize,
    pub missed: usize,
    pub post_errors: usize,
    pub stray_events: usize,
    pub error_samples: Vec<String>,
    /// CPU used by other processes during the rounds, in cores.
    pub other_load: Option<f64>,
}

/// Per-round figures over the rounds in which at least one stream had the event.
pub fn spread_of<'a>(
    rounds: impl IntoIterator<Item = &'a Round>,
    f: impl Fn(&Round) -> f64,
) -> Option<Spread> {
    let v: Vec<f64> = rounds
        .into_iter()
        .filter(|r| r.delivered > 0)
        .map(f)
        .collect();
    Spread::of(&v).filter(|s| s.median.is_finite())
}

impl Report {
    /// Its lines and rows of the backend summary.
    pub fn summarize(&self, out: &mut Section) {
        let f = self;
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
            mem_text(f.mem_connected),
            mem_text(f.mem_after),
            f.stream_errors,
            f.missed,
            f.post_errors,
            f.stray_events
        );
        for s in &f.error_samples {
            println!("  error sample: {s}");
        }
        out.load(&label, f.other_load);
        let (m, sp) = spread_text(f.p50(), ms);
        let v = verdict_at_most(f.p50().map(|s| s.median), NCHAN_P50_MS);
        out.row([
            label.clone(),
            "delivery latency p50".into(),
            m,
            sp,
            "≤ 11 ms (nchan)".into(),
            v,
        ]);
        let (m, sp) = spread_text(f.p99(), ms);
        let v = verdict_at_most(f.p99().map(|s| s.median), NCHAN_P99_MS);
        out.row([
            label.clone(),
            "delivery latency p99".into(),
            m,
            sp,
            "≤ 22 ms (nchan)".into(),
            v,
        ]);
        let (m, sp) = spread_text(f.max(), ms);
        out.row([
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
            out.row([
                label.clone(),
                format!("kernel arrival at the client socket, {what}"),
                m,
                sp,
                "– (diagnostic)".into(),
                "–".into(),
            ]);
        }
        let (m, sp) = spread_text(f.server_cpu(), |v| format!("{v:.0} ms"));
        out.row([
            label.clone(),
            "server CPU time per round (user + system)".into(),
            m,
            sp,
            "– (diagnostic)".into(),
            "–".into(),
        ]);
        let mib = |m: Option<Memory>, hwm: bool| {
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
        out.row(mem_row("server VmRSS, idle", mib(f.mem_idle, false), false));
        out.row(mem_row(
            "server VmRSS, streams connected",
            mib(f.mem_connected, false),
            false,
        ));
        out.row(mem_row(
            "server VmRSS, after the rounds",
            mib(f.mem_after, false),
            true,
        ));
        out.row(mem_row(
            "server VmHWM (peak), after the rounds",
            mib(f.mem_after, true),
            false,
        ));
        let errors = f.stream_errors + f.missed + f.post_errors;
        if errors > 0 {
            out.row([
                "fanout".into(),
                "errors: streams lost / deliveries missed / posts failed".into(),
                format!("{} / {} / {}", f.stream_errors, f.missed, f.post_errors),
                "–".into(),
                "0".into(),
                "–".into(),
            ]);
        }
    }

    /// Streams lost, deliveries missed and posts failed: left out of the figures.
    pub fn errors(&self) -> u64 {
        (self.stream_errors + self.missed + self.post_errors) as u64
    }

    fn spread(&self, f: impl Fn(&Round) -> f64) -> Option<Spread> {
        spread_of(&self.rounds, f)
    }
    pub fn p50(&self) -> Option<Spread> {
        self.spread(|r| r.p50_ms)
    }
    pub fn p99(&self) -> Option<Spread> {
        self.spread(|r| r.p99_ms)
    }
    pub fn max(&self) -> Option<Spread> {
        self.spread(|r| r.max_ms)
    }
    pub fn server_cpu(&self) -> Option<Spread> {
        self.spread(|r| r.server_cpu_ms)
    }
    pub fn kernel_p50(&self) -> Option<Spread> {
        self.spread(|r| r.kernel_p50_ms)
    }
    pub fn kernel_p99(&self) -> Option<Spread> {
        self.spread(|r| r.kernel_p99_ms)
    }
    pub fn kernel_max(&self) -> Option<Spread> {
        self.spread(|r| r.kernel_max_ms)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Connecting,
    Ready,
    Closed,
}

/// Per-stream phases: a message can only move a stream forward, so late or repeated messages
/// cannot skew the counts.
struct Streams {
    phase: Vec<Phase>,
    ready: usize,
}

impl Streams {
    /// Moves a stream to the phase a `Ready` or `Closed` message reports.
    fn apply(&mut self, report: &mut Report, msg: &Msg) {
        match *msg {
            Msg::Ready { stream } if self.phase[stream] == Phase::Connecting => {
                self.phase[stream] = Phase::Ready;
                self.ready += 1;
            }
            Msg::Closed { stream, ref reason } => {
                match self.phase[stream] {
                    Phase::Ready => {
                        self.ready -= 1;
                        sample(report, reason.clone());
                    }
                    Phase::Connecting => sample(report, format!("while connecting: {reason}")),
                    Phase::Closed => return,
                }
                self.phase[stream] = Phase::Closed;
                report.stream_errors += 1;
            }
            _ => {}
        }
    }

    fn connecting(&self) -> usize {
        self.phase
            .iter()
            .filter(|p| **p == Phase::Connecting)
            .count()
    }
}

/// The `fanout` mode: Quotabell alone.
pub async fn run(launcher: &Launcher, cfg: &Config) -> Result<Report, BoxError> {
    let server = launcher.start("fanout")?;
    let target = quotabell_target(&server)?;
    measure(&target, cfg)
        .await
        .map_err(|e| format!("{e}\nserver log:\n{}", server.log_tail(20)).into())
}

/// Quotabell as a fan-out target: a new `pro` user whose streams and builds are measured.
pub fn quotabell_target(server: &ServerChild) -> Result<Target, BoxError> {
    let token = server.add_user("fanout@bench.invalid", "pro")?;
    let addr = server.addr;
    Ok(Target {
        name: "quotabell",
        subs: vec![stream_subscription(addr, &token)],
        publish: Publish::Build {
            url: format!("http://{addr}/api/v1/builds"),
            auth: format!("Bearer {token}"),
        },
        pid: server.pid,
        helper_pid: None,
    })
}

/// A stream of Quotabell's user with `token`, on the server at `addr`.
pub fn stream_subscription(addr: std::net::SocketAddr, token: &str) -> Arc<Subscription> {
    Arc::new(Subscription {
        addr,
        request: format!(
            "GET /api/v1/stream HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        ),
        kind: "build.accepted",
    })
}

/// Opens the streams, runs the rounds, and closes the streams again.
pub async fn measure(target: &Target, cfg: &Config) -> Result<Report, BoxError> {
    let tag = target.name;
    let server_pids: Vec<u32> = std::iter::once(target.pid)
        .chain(target.helper_pid)
        .collect();
    println!(
        "[{tag}] server pid {} on {}; opening {} streams ({} at a time)",
        target.pid, target.subs[0].addr, cfg.streams, cfg.connect_parallel
    );
    let mut report = Report {
        streams: cfg.streams,
        connected: 0,
        connect_secs: 0.0,
        mem_idle: Memory::of(target.pid),
        mem_connected: None,
        mem_after: None,
        helper_mem_connected: None,
        helper_mem_after: None,
        rounds: Vec::new(),
        stream_errors: 0,
        missed: 0,
        post_errors: 0,
        stray_events: 0,
        error_samples: Vec::new(),
        other_load: None,
    };
    let helper_mem = || target.helper_pid.and_then(Memory::of);

    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    let gate = Arc::new(Semaphore::new(cfg.connect_parallel.max(1)));
    // Dropping the set aborts every stream task.
    let mut streams = tokio::task::JoinSet::new();
    let started = Instant::now();
    let connect_deadline = started + CONNECT_TIMEOUT;
    let mut state = Streams {
        phase: vec![Phase::Connecting; cfg.streams],
        ready: 0,
    };
    for i in 0..cfg.streams {
        let permit = tokio::time::timeout_at(connect_deadline.into(), gate.clone().acquire_owned())
            .await
            .map_err(|_| "timed out opening streams")?
            .map_err(|_| "connection gate closed")?;
        let (tx, sub) = (tx.clone(), target.subs[i % target.subs.len()].clone());
        streams.spawn(async move {
            let reason = match sse::stream(i, sub, tx.clone(), permit).await {
                Ok(()) => "stream ended".to_owned(),
                Err(e) => e,
            };
            let _ = tx.send(Msg::Closed { stream: i, reason });
        });
    }
    drop(tx);
    while state.connecting() > 0 {
        match tokio::time::timeout_at(connect_deadline.into(), rx.recv()).await {
            Ok(Some(Msg::Delivered { .. })) => report.stray_events += 1,
            Ok(Some(msg)) => state.apply(&mut report, &msg),
            Ok(None) | Err(_) => break,
        }
    }
    report.connect_secs = started.elapsed().as_secs_f64();
    let ready = state.ready;
    report.connected = ready;
    // Let the server settle (allocations of the last streams, idle timers) before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    report.mem_connected = Memory::of(target.pid);
    report.helper_mem_connected = helper_mem();
    println!(
        "[{tag}] {ready}/{} streams connected in {:.2} s ({} failed); server RSS {}",
        cfg.streams,
        report.connect_secs,
        report.stream_errors,
        mem_text(report.mem_connected)
    );
    if ready == 0 {
        return Err(format!("[{tag}] no stream connected: {:?}", report.error_samples).into());
    }

    let client = posts::client()?;
    let probe = sys::LoadProbe::start(&server_pids);
    for r in 0..cfg.rounds {
        if r > 0 {
            tokio::time::sleep(cfg.pause).await;
        }
        // Anything still queued belongs to an earlier round.
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Msg::Delivered { .. } => report.stray_events += 1,
                msg => state.apply(&mut report, &msg),
            }
        }
        let cpu0 = sys::cpu_seconds_of(&server_pids);
        let t0_wall = SystemTime::now();
        let t0 = Instant::now();
        let published = target.publish.send(&client, r as u64 + 1).await;
        let post_ms = t0.elapsed().as_secs_f64() * 1e3;
        let published = match published {
            Ok(p) => p,
            Err(e) => {
                sample(&mut report, e);
                report.post_errors += 1;
                println!("[{tag}] round {}/{}: publish failed", r + 1, cfg.rounds);
                continue;
            }
        };
        let expected = state.ready;
        let mut lat = Vec::with_capacity(expected);
        let mut kernel_lat = Vec::with_capacity(expected);
        let mut seen = vec![false; cfg.streams];
        let deadline = t0 + ROUND_TIMEOUT;
        while lat.len() < state.ready {
            match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                Ok(Some(Msg::Delivered {
                    stream,
                    id,
                    at,
                    kernel_at,
                })) if id == published.id
                    && state.phase[stream] == Phase::Ready
                    && !std::mem::replace(&mut seen[stream], true) =>
                {
                    lat.push(at.saturating_duration_since(t0).as_secs_f64() * 1e3);
                    if let Some(d) = kernel_at.and_then(|k| k.duration_since(t0_wall).ok()) {
                        kernel_lat.push(d.as_secs_f64() * 1e3);
                    }
                }
                Ok(Some(Msg::Delivered { .. })) => report.stray_events += 1,
                Ok(Some(msg)) => state.apply(&mut report, &msg),
                Ok(None) | Err(_) => break,
            }
        }
        let cpu1 = sys::cpu_seconds_of(&server_pids);
        let missed = expected.saturating_sub(lat.len());
        report.missed += missed;
        sort(&mut lat);
        sort(&mut kernel_lat);
        // Kernel figures only when every delivery has one (they are all or nothing).
        let kernel = |p: f64| {
            if kernel_lat.len() == lat.len() {
                percentile(&kernel_lat, p).unwrap_or(f64::NAN)
            } else {
                f64::NAN
            }
        };
        let round = Round {
            delivered: lat.len(),
            expected,
            missed,
            server_subscribers: published.subscribers,
            p50_ms: percentile(&lat, 50.0).unwrap_or(f64::NAN),
            p99_ms: percentile(&lat, 99.0).unwrap_or(f64::NAN),
            max_ms: lat.last().copied().unwrap_or(f64::NAN),
            kernel_p50_ms: kernel(50.0),
            kernel_p99_ms: kernel(99.0),
            kernel_max_ms: kernel(100.0),
            post_ms,
            server_cpu_ms: cpu0.zip(cpu1).map_or(f64::NAN, |(a, b)| (b - a) * 1e3),
        };
        let counted = round.server_subscribers.map_or(String::new(), |n| {
            format!("; server counted {n} subscribers")
        });
        let missed_text = if missed > 0 {
            format!(" — {missed} MISSED")
        } else {
            String::new()
        };
        println!(
            "[{tag}] round {:>2}/{}: {}/{} streams got event {}{missed_text}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms \
             (kernel arrival first {:.2} p50 {:.2} p99 {:.2} max {:.2}; publish answered in {:.2} ms; server CPU {:.0} ms{counted})",
            r + 1,
            cfg.rounds,
            round.delivered,
            round.expected,
            published.id,
            round.p50_ms,
            round.p99_ms,
            round.max_ms,
            kernel(0.0),
            round.kernel_p50_ms,
            round.kernel_p99_ms,
            round.kernel_max_ms,
            round.post_ms,
            round.server_cpu_ms
        );
        report.rounds.push(round);
        if !quotabell_testbed::process::alive(target.pid) {
            return Err(format!(
                "[{tag}] server process {} exited during the rounds",
                target.pid
            )
            .into());
        }
    }
    report.other_load = probe.other_cores();
    report.mem_after = Memory::of(target.pid);
    report.helper_mem_after = helper_mem();
    println!(
        "[{tag}] after the rounds: server RSS {}; other processes' CPU during the rounds {}",
        mem_text(report.mem_after),
        report
            .other_load
            .map_or("n/a".into(), |o| format!("{:.0}% of a core", o * 100.0))
    );
    streams.abort_all();
    // Wait until every stream task has ended, so that its socket is closed before the caller
    // stops the server or opens the next server's streams (the file descriptors are limited).
    while streams.join_next().await.is_some() {}
    Ok(report)
}

fn sample(report: &mut Report, msg: String) {
    if report.error_samples.len() < 5 {
        report.error_samples.push(msg);
    }
}

pub fn mem_text(m: Option<Memory>) -> String {
    m.map_or("n/a".into(), |m| {
        format!(
            "VmRSS {:.1} MiB, VmHWM {:.1} MiB, {} threads",
            sys::mib(m.rss_kib),
            sys::mib(m.hwm_kib),
            m.threads
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nchan_subscriber_count() {
        let answer = "queued messages: 1\nlast requested: 0 sec. ago\nactive subscribers: 10000\nlast message id: 1795460990:0";
        assert_eq!(nchan_subscribers(answer), Some(10_000));
        assert_eq!(nchan_subscribers("{}"), None);
    }
}
