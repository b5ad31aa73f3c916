//! `posts`: accepted build POSTs per second with C keep-alive HTTP/1.1 clients.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::launcher::Launcher;
use crate::report::{Section, ms, spread_text, thousands};
use crate::stats::{Spread, percentile, sort};
use crate::{BoxError, Common, sys};

const POSTS_TARGET: f64 = 3000.0;

/// `posts`' options (also `catchup`'s `--concurrency`, which posts its missed builds).
#[derive(clap::Args, Clone)]
#[group(id = "posts-options")]
pub struct Args {
    /// Concurrent keep-alive HTTP/1.1 clients in `posts` (and posting the missed builds in
    /// `catchup`).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
    /// Length of one `posts` round, in seconds.
    #[arg(long, default_value_t = 5.0, value_parser = crate::seconds_in(0.0, 600.0, true))]
    pub seconds: f64,
    /// Unmeasured `posts` warm-up before the rounds, in seconds (0 for none).
    #[arg(long, default_value_t = 1.0, value_parser = crate::seconds_in(0.0, 60.0, false))]
    pub warmup_secs: f64,
}

impl Args {
    pub fn config(&self, common: &Common) -> Config {
        Config {
            rounds: common.rounds(5),
            concurrency: self.concurrency as usize,
            seconds: self.seconds,
            warmup_secs: self.warmup_secs,
        }
    }
}

pub struct Config {
    pub rounds: usize,
    pub concurrency: usize,
    pub seconds: f64,
    pub warmup_secs: f64,
}

pub struct Round {
    pub accepted: u64,
    pub secs: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    pub server_cpu: Option<f64>,
}

impl Round {
    pub fn rate(&self) -> f64 {
        self.accepted as f64 / self.secs
    }
}

pub struct Report {
    pub concurrency: usize,
    pub seconds: f64,
    pub rounds: Vec<Round>,
    pub error_samples: Vec<String>,
    /// CPU used by other processes during the rounds, in cores.
    pub other_load: Option<f64>,
}

impl Report {
    /// Its lines and rows of the backend summary.
    pub fn summarize(&self, out: &mut Section) {
        let p = self;
        let label = format!(
            "posts ({} clients, {} × {:.0} s)",
            p.concurrency,
            p.rounds.len(),
            p.seconds
        );
        let rate = p.rate();
        out.note(format!(
            "posts: median {} builds/s (min {}, max {}), POST p50 {} p99 {} (medians of rounds), {} error(s)",
            rate.map_or("n/a".into(), |s| thousands(s.median)),
            rate.map_or("n/a".into(), |s| thousands(s.min)),
            rate.map_or("n/a".into(), |s| thousands(s.max)),
            p.p50().map_or("n/a".into(), |s| ms(s.median)),
            p.p99().map_or("n/a".into(), |s| ms(s.median)),
            p.errors()
        ));
        for e in &p.error_samples {
            out.note(format!("  error sample: {e}"));
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
        out.row([
            label.clone(),
            "accepted builds per second".into(),
            m,
            sp,
            "≥ 3,000/s on 2 cores".into(),
            verdict,
        ]);
        out.load(&label, p.other_load);
        let (m, sp) = spread_text(p.p50(), ms);
        out.row([
            label.clone(),
            "POST latency p50".into(),
            m,
            sp,
            "–".into(),
            "–".into(),
        ]);
        let (m, sp) = spread_text(p.p99(), ms);
        out.row([
            label,
            "POST latency p99".into(),
            m,
            sp,
            "–".into(),
            "–".into(),
        ]);
        if p.errors() > 0 {
            out.row([
                "posts".into(),
                "errors (not counted above)".into(),
                p.errors().to_string(),
                "–".into(),
                "0".into(),
                "–".into(),
            ]);
        }
    }

    pub fn rate(&self) -> Option<Spread> {
        Spread::of(&self.rounds.iter().map(Round::rate).collect::<Vec<_>>())
    }
    pub fn p50(&self) -> Option<Spread> {
        Spread::of(&self.rounds.iter().map(|r| r.p50_ms).collect::<Vec<_>>())
    }
    pub fn p99(&self) -> Option<Spread> {
        Spread::of(&self.rounds.iter().map(|r| r.p99_ms).collect::<Vec<_>>())
    }
    pub fn errors(&self) -> u64 {
        self.rounds.iter().map(|r| r.errors).sum()
    }
}

#[derive(Default)]
struct Worker {
    accepted: u64,
    latencies_ms: Vec<f64>,
    errors: u64,
    samples: Vec<String>,
}

pub fn client() -> Result<reqwest::Client, BoxError> {
    Ok(reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(4096)
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .build()?)
}

/// A unique build body: `n` makes version and commit differ per post.
pub fn build_body(app: &str, worker: usize, n: u64) -> String {
    format!(
        r#"{{"app":"{app}","version":"1.{worker}.{n}","commit":"{:016x}{:024x}"}}"#,
        worker, n
    )
}

pub async fn run(launcher: &Launcher, cfg: &Config) -> Result<Report, BoxError> {
    let mut server = launcher.start("posts")?;
    println!(
        "[posts] server pid {} on http://{} ({} clients, {} round(s) of {:.1} s)",
        server.pid, server.addr, cfg.concurrency, cfg.rounds, cfg.seconds
    );
    let url = format!("http://{}/api/v1/builds", server.addr);
    let client = client()?;
    let mut report = Report {
        concurrency: cfg.concurrency,
        seconds: cfg.seconds,
        rounds: Vec::new(),
        error_samples: Vec::new(),
        other_load: None,
    };

    if cfg.warmup_secs > 0.0 {
        let token = server.add_user("posts-warmup@bench.invalid", "pro")?;
        let targets = [Target {
            url: url.clone(),
            token,
        }];
        let w = round(&client, &targets, cfg.concurrency, cfg.warmup_secs).await;
        println!(
            "[posts] warm-up {:.1} s: {} accepted, {} error(s)",
            cfg.warmup_secs, w.0.accepted, w.0.errors
        );
        report.error_samples.extend(w.1);
    }

    let probe = sys::LoadProbe::start(&[server.pid]);
    for r in 0..cfg.rounds {
        // A fresh pro user per round: every round starts from the same quota state.
        let email = format!("posts-round{}@bench.invalid", r + 1);
        let token = server.add_user(&email, "pro")?;
        let cpu0 = sys::cpu_seconds(server.pid);
        let targets = [Target {
            url: url.clone(),
            token,
        }];
        let (round, samples) = round(&client, &targets, cfg.concurrency, cfg.seconds).await;
        let cpu1 = sys::cpu_seconds(server.pid);
        let round = Round {
            server_cpu: cpu0.zip(cpu1).map(|(a, b)| (b - a) / round.secs),
            ..round
        };
        println!(
            "[posts] round {}/{}: {:>7.0} builds/s ({} in {:.2} s), POST p50 {:.2} ms p99 {:.2} ms, errors {}, server CPU {}",
            r + 1,
            cfg.rounds,
            round.rate(),
            round.accepted,
            round.secs,
            round.p50_ms,
            round.p99_ms,
            round.errors,
            round
                .server_cpu
                .map_or("n/a".into(), |c| format!("{:.0}%", c * 100.0)),
        );
        report.error_samples.extend(samples);
        report.rounds.push(round);
        if let Some(status) = server.exited() {
            return Err(format!(
                "server exited during the posts bench: {status}\n{}",
                server.log_tail(20)
            )
            .into());
        }
    }
    report.other_load = probe.other_cores();
    report.error_samples.truncate(5);
    Ok(report)
}

/// Where one client posts: a server's builds URL and a user's token.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub token: String,
}

/// Posts for `seconds` with `concurrency` clients, client `w` to `targets[w % len]`; returns
/// the round and error samples.
pub async fn round(
    client: &reqwest::Client,
    targets: &[Target],
    concurrency: usize,
    seconds: f64,
) -> (Round, Vec<String>) {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let t = &targets[w % targets.len()];
        let (client, url, auth) = (client.clone(), t.url.clone(), format!("Bearer {}", t.token));
        tasks.spawn(async move {
            let mut out = Worker::default();
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let body = build_body("bench-app", w, n);
                let t = Instant::now();
                let res = client
                    .post(&url)
                    .header(reqwest::header::AUTHORIZATION, &auth)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body)
                    .send()
                    .await;
                let failure = match res {
                    Ok(resp) => {
                        let status = resp.status();
                        match resp.bytes().await {
                            Ok(_) if status == StatusCode::CREATED => {
                                out.accepted += 1;
                                out.latencies_ms.push(t.elapsed().as_secs_f64() * 1e3);
                                None
                            }
                            Ok(b) => Some(format!(
                                "HTTP {status}: {}",
                                String::from_utf8_lossy(&b[..b.len().min(200)])
                            )),
                            Err(e) => Some(format!("reading body: {e}")),
                        }
                    }
                    Err(e) => Some(format!("request: {e}")),
                };
                if let Some(msg) = failure {
                    out.errors += 1;
                    if out.samples.len() < 2 {
                        out.samples.push(msg);
                    }
                    // Do not spin on a dead server.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            out
        });
    }
    let mut all = Worker::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(w) => {
                all.accepted += w.accepted;
                all.errors += w.errors;
                all.latencies_ms.extend(w.latencies_ms);
                all.samples.extend(w.samples);
            }
            Err(e) => {
                all.errors += 1;
                all.samples.push(format!("client task failed: {e}"));
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    sort(&mut all.latencies_ms);
    let round = Round {
        accepted: all.accepted,
        secs,
        p50_ms: percentile(&all.latencies_ms, 50.0).unwrap_or(f64::NAN),
        p99_ms: percentile(&all.latencies_ms, 99.0).unwrap_or(f64::NAN),
        errors: all.errors,
        server_cpu: None,
    };
    all.samples.truncate(5);
    (round, all.samples)
}
