//! `recovery`: several instances on one PostgreSQL database with streams spread over them;
//! one instance is killed (SIGKILL) and each of its streams does what an EventSource does —
//! waits the `retry:` the server suggested, then reconnects (here: to the next instance, as a
//! load balancer would send it) with its `Last-Event-ID`. Measured: the time from the kill to
//! each such stream's new `200`, and, after one more build, whether any stream got an event
//! twice (redelivered) or missed one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use quotabell_testbed::Postgres;
use tokio::sync::{mpsc, watch};

use crate::launcher::Launcher;
use crate::report::{Section, ms, spread_text};
use crate::stats::{Spread, percentile, sort};
use crate::{BoxError, Common, posts};

const TARGET_P99_MS: f64 = 2000.0;

#[derive(clap::Args, Clone)]
#[group(id = "recovery-options")]
pub struct Args {
    /// Streams per instance.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub streams_per_instance: u32,
    /// Instances on the one database.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=16))]
    pub recovery_instances: u32,
}

impl Args {
    pub fn config(&self, common: &Common) -> Config {
        Config {
            rounds: common.rounds(3),
            per_instance: self.streams_per_instance as usize,
            instances: self.recovery_instances as usize,
        }
    }
}

pub struct Config {
    pub rounds: usize,
    pub per_instance: usize,
    pub instances: usize,
}

pub struct Round {
    /// Kill → new 200, per stream of the killed instance, sorted.
    pub resumed_ms: Vec<f64>,
    pub redelivered: usize,
    pub missed: usize,
}

pub struct Report {
    pub streams: usize,
    pub instances: usize,
    pub rounds: Vec<Round>,
}

/// What a stream reports.
enum Note {
    /// Connected (again) at this time.
    Open {
        stream: usize,
        at: Instant,
    },
    Event {
        stream: usize,
        id: u64,
    },
}

pub async fn run(launcher: &Launcher, cfg: &Config) -> Result<Report, BoxError> {
    let pg = Postgres::start()?;
    let mut report = Report {
        streams: cfg.per_instance * cfg.instances,
        instances: cfg.instances,
        rounds: Vec::new(),
    };
    for r in 0..cfg.rounds {
        let db = format!("recovery{r}");
        pg.create_database(&db)?;
        let mut servers = launcher.start_cluster("recovery", &pg.url(&db), cfg.instances, &[])?;
        let token = servers[0].add_user("recovery@bench.invalid", "pro")?;
        let bases: Arc<Vec<String>> = Arc::new(
            servers
                .iter()
                .map(|s| format!("http://{}", s.addr))
                .collect(),
        );
        let client = posts::client()?;
        let streaming = reqwest::Client::builder().http1_only().no_proxy().build()?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (stop_tx, stop) = watch::channel(false);
        let total = cfg.per_instance * cfg.instances;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..total {
            tasks.spawn(follow(
                streaming.clone(),
                bases.clone(),
                i,
                token.clone(),
                tx.clone(),
                stop.clone(),
            ));
        }
        let mut opened = vec![0usize; total];
        let mut last = vec![0u64; total];
        let mut redelivered = 0;
        let ready_by = Instant::now() + Duration::from_secs(120);
        while opened.contains(&0) {
            match tokio::time::timeout_at(ready_by.into(), rx.recv()).await {
                Ok(Some(Note::Open { stream, .. })) => opened[stream] += 1,
                Ok(Some(Note::Event { .. })) => {}
                _ => return Err("streams did not open within 120 s".into()),
            }
        }
        // One build before the kill, so that every stream has a cursor to resume from.
        post(&client, &bases[1], &token, 0).await?;
        let first_id = wait_events(&mut rx, &mut last, &mut redelivered, total, None).await?;
        let killed_at = Instant::now();
        servers[0].kill9();
        let victims: Vec<usize> = (0..total).filter(|i| i % cfg.instances == 0).collect();
        let mut resumed = vec![None; total];
        let resume_by = Instant::now() + Duration::from_secs(60);
        while victims.iter().any(|&v| resumed[v].is_none()) {
            match tokio::time::timeout_at(resume_by.into(), rx.recv()).await {
                Ok(Some(Note::Open { stream, at })) if resumed[stream].is_none() => {
                    resumed[stream] = Some(at.duration_since(killed_at).as_secs_f64() * 1e3);
                }
                Ok(Some(Note::Event { stream, id })) => {
                    if id <= last[stream] {
                        redelivered += 1;
                    }
                    last[stream] = last[stream].max(id);
                }
                Ok(Some(_)) => {}
                _ => return Err("killed streams did not resume within 60 s".into()),
            }
        }
        post(&client, &bases[1], &token, 1).await?;
        wait_events(&mut rx, &mut last, &mut redelivered, total, Some(first_id)).await?;
        let missed = last.iter().filter(|&&l| l <= first_id).count();
        let _ = stop_tx.send(true);
        tasks.abort_all();
        let mut resumed_ms: Vec<f64> = victims.iter().filter_map(|&v| resumed[v]).collect();
        sort(&mut resumed_ms);
        println!(
            "[recovery] round {}/{}: {} streams of the killed instance resumed, p50 {:.0} ms p99 {:.0} ms max {:.0} ms; redelivered {redelivered}, missed {missed}",
            r + 1,
            cfg.rounds,
            resumed_ms.len(),
            percentile(&resumed_ms, 50.0).unwrap_or(f64::NAN),
            percentile(&resumed_ms, 99.0).unwrap_or(f64::NAN),
            resumed_ms.last().copied().unwrap_or(f64::NAN),
        );
        report.rounds.push(Round {
            resumed_ms,
            redelivered,
            missed,
        });
    }
    Ok(report)
}

async fn post(client: &reqwest::Client, base: &str, token: &str, n: u64) -> Result<(), BoxError> {
    let res = client
        .post(format!("{base}/api/v1/builds"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(posts::build_body("recovery", 0, n))
        .send()
        .await?;
    if res.status() != reqwest::StatusCode::CREATED {
        return Err(format!("POST answered {}", res.status()).into());
    }
    Ok(())
}

/// Waits until every stream has an event newer than `after` (the newest id of the build just
/// posted), counting repeats; returns the newest id seen.
async fn wait_events(
    rx: &mut mpsc::UnboundedReceiver<Note>,
    last: &mut [u64],
    redelivered: &mut usize,
    total: usize,
    after: Option<u64>,
) -> Result<u64, BoxError> {
    let floor = after.unwrap_or(0);
    let by = Instant::now() + Duration::from_secs(30);
    while last.iter().take(total).any(|&l| l <= floor) {
        match tokio::time::timeout_at(by.into(), rx.recv()).await {
            Ok(Some(Note::Event { stream, id })) => {
                if id <= last[stream] {
                    *redelivered += 1;
                }
                last[stream] = last[stream].max(id);
            }
            Ok(Some(_)) => {}
            _ => return Err("an event did not reach every stream within 30 s".into()),
        }
    }
    // The build's other events (quota.updated, ...) follow within moments.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(note) = rx.try_recv() {
        if let Note::Event { stream, id } = note {
            if id <= last[stream] {
                *redelivered += 1;
            }
            last[stream] = last[stream].max(id);
        }
    }
    Ok(last.iter().copied().min().unwrap_or(0))
}

/// One EventSource-like stream starting on instance `i % n`.
async fn follow(
    client: reqwest::Client,
    bases: Arc<Vec<String>>,
    i: usize,
    token: String,
    tx: mpsc::UnboundedSender<Note>,
    stop: watch::Receiver<bool>,
) {
    let mut at = i;
    let mut cursor = 0u64;
    let mut retry = Duration::from_millis(3000);
    while !*stop.borrow() {
        let base = &bases[at % bases.len()];
        let res = client
            .get(format!("{base}/api/v1/stream"))
            .bearer_auth(&token)
            .header("Last-Event-ID", cursor.to_string())
            .send()
            .await;
        let Ok(res) = res.and_then(|r| r.error_for_status()) else {
            at += 1;
            tokio::time::sleep(retry).await;
            continue;
        };
        let _ = tx.send(Note::Open {
            stream: i,
            at: Instant::now(),
        });
        let mut body = res.bytes_stream();
        let mut buf = Vec::new();
        while let Some(Ok(chunk)) = body.next().await {
            buf.extend_from_slice(&chunk);
            while let Some(pos) = buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = buf.drain(..pos + 2).collect();
                let text = String::from_utf8_lossy(&block);
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("retry: ") {
                        if let Ok(ms) = v.trim().parse() {
                            retry = Duration::from_millis(ms);
                        }
                    } else if let Some(Ok(id)) = line.strip_prefix("id: ").map(|v| v.trim().parse())
                    {
                        cursor = id;
                        let _ = tx.send(Note::Event { stream: i, id });
                    }
                }
            }
        }
        // As EventSource: wait the server's retry hint, then reconnect (the balancer sends
        // this stream to the next instance).
        at += 1;
        tokio::time::sleep(retry).await;
    }
}

impl Report {
    pub fn section(&self, command: &str) -> Section {
        let mut s = Section::new(
            "Recovery after an instance is killed",
            crate::report::SUMMARY_COLUMNS,
        );
        s.note(format!("command: {command}"));
        s.note(format!(
            "{} streams over {} instances on one PostgreSQL; SIGKILL of one; its streams wait the server's retry hint and resume on the next instance",
            self.streams, self.instances
        ));
        let label = format!("recovery ({} rounds)", self.rounds.len());
        let p50 = Spread::of(
            &self
                .rounds
                .iter()
                .filter_map(|r| percentile(&r.resumed_ms, 50.0))
                .collect::<Vec<_>>(),
        );
        let p99 = Spread::of(
            &self
                .rounds
                .iter()
                .filter_map(|r| percentile(&r.resumed_ms, 99.0))
                .collect::<Vec<_>>(),
        );
        let (m, sp) = spread_text(p50, ms);
        s.row([
            label.clone(),
            "kill → resumed elsewhere, p50".into(),
            m,
            sp,
            "–".into(),
            "–".into(),
        ]);
        let (m, sp) = spread_text(p99, ms);
        s.row([
            label.clone(),
            "kill → resumed elsewhere, p99".into(),
            m,
            sp,
            "< 2 s".into(),
            crate::report::verdict_below(p99.map(|p| p.median), TARGET_P99_MS),
        ]);
        let redelivered: usize = self.rounds.iter().map(|r| r.redelivered).sum();
        let missed: usize = self.rounds.iter().map(|r| r.missed).sum();
        s.row([
            label.clone(),
            "events redelivered".into(),
            redelivered.to_string(),
            "–".into(),
            "0".into(),
            if redelivered == 0 {
                "met".into()
            } else {
                "NOT met".into()
            },
        ]);
        s.row([
            label,
            "events missed".into(),
            missed.to_string(),
            "–".into(),
            "0".into(),
            if missed == 0 {
                "met".into()
            } else {
                "NOT met".into()
            },
        ]);
        s
    }
}
