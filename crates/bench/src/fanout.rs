//! `fanout`: N SSE streams of one user; one build post; time until each stream has the
//! `build.accepted` event.
//!
//! The streams are plain TCP connections that speak just enough HTTP/1.1 (one GET, then a
//! chunked or close-delimited body) and SSE (blocks split on a blank line) to notice the
//! prelude and the events. That keeps the client cheap, so that 1,000 streams on one core
//! measure the server more than the client. Each stream stamps the time right after the read
//! that completed the event and sends it to the coordinator.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::server::{Launcher, add_user};
use crate::stats::{Spread, percentile, sort};
use crate::sys::{self, Memory};
use crate::{BoxError, posts};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(120);
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Config {
    pub rounds: usize,
    pub streams: usize,
    pub pause: Duration,
    pub connect_parallel: usize,
}

pub struct Round {
    pub delivered: usize,
    pub expected: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub post_ms: f64,
}

pub struct Report {
    pub streams: usize,
    pub connected: usize,
    pub connect_secs: f64,
    pub mem_idle: Option<Memory>,
    pub mem_connected: Option<Memory>,
    pub mem_after: Option<Memory>,
    pub rounds: Vec<Round>,
    /// Streams that ended or failed, with a sample reason.
    pub stream_errors: usize,
    pub missed: usize,
    pub post_errors: usize,
    pub stray_events: usize,
    pub error_samples: Vec<String>,
}

impl Report {
    fn spread(&self, f: impl Fn(&Round) -> f64) -> Option<Spread> {
        let v: Vec<f64> = self
            .rounds
            .iter()
            .filter(|r| r.delivered > 0)
            .map(f)
            .collect();
        Spread::of(&v)
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
}

enum Msg {
    Ready,
    Accepted { build_id: i64, at: Instant },
    Closed { reason: String },
}

pub async fn run(launcher: &Launcher, cfg: &Config) -> Result<Report, BoxError> {
    let mut server = launcher.start("fanout")?;
    let token = add_user(&launcher.bin, &server.db, "fanout@bench.invalid").await?;
    println!(
        "[fanout] server pid {} on http://{}; opening {} streams of one user ({} at a time)",
        server.pid, server.addr, cfg.streams, cfg.connect_parallel
    );
    let mut report = Report {
        streams: cfg.streams,
        connected: 0,
        connect_secs: 0.0,
        mem_idle: Memory::of(server.pid),
        mem_connected: None,
        mem_after: None,
        rounds: Vec::new(),
        stream_errors: 0,
        missed: 0,
        post_errors: 0,
        stray_events: 0,
        error_samples: Vec::new(),
    };

    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    let gate = Arc::new(Semaphore::new(cfg.connect_parallel.max(1)));
    // Dropping the set aborts every stream task.
    let mut streams = tokio::task::JoinSet::new();
    let started = Instant::now();
    let connect_deadline = started + CONNECT_TIMEOUT;
    let (mut ready, mut closed) = (0usize, 0usize);
    for _ in 0..cfg.streams {
        let permit = tokio::time::timeout_at(connect_deadline.into(), gate.clone().acquire_owned())
            .await
            .map_err(|_| "timed out opening streams")?
            .map_err(|_| "connection gate closed")?;
        let (tx, token) = (tx.clone(), token.clone());
        let addr = server.addr;
        streams.spawn(async move {
            let reason = match stream(addr, &token, &tx, permit).await {
                Ok(()) => "stream ended".to_owned(),
                Err(e) => e,
            };
            let _ = tx.send(Msg::Closed { reason });
        });
    }
    drop(tx);
    while ready + closed < cfg.streams {
        match tokio::time::timeout_at(connect_deadline.into(), rx.recv()).await {
            Ok(Some(Msg::Ready)) => ready += 1,
            Ok(Some(Msg::Closed { reason })) => {
                closed += 1;
                sample(&mut report, format!("while connecting: {reason}"));
            }
            Ok(Some(Msg::Accepted { .. })) => report.stray_events += 1,
            Ok(None) | Err(_) => break,
        }
    }
    report.connect_secs = started.elapsed().as_secs_f64();
    report.connected = ready;
    report.stream_errors = closed;
    // Let the server settle (allocations of the last streams, idle timers) before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    report.mem_connected = Memory::of(server.pid);
    println!(
        "[fanout] {ready}/{} streams connected in {:.2} s ({} failed); server RSS {}",
        cfg.streams,
        report.connect_secs,
        closed,
        mem_text(report.mem_connected)
    );
    if ready == 0 {
        return Err(format!(
            "no stream connected: {:?}\n{}",
            report.error_samples,
            server.log_tail(20)
        )
        .into());
    }

    let client = posts::client()?;
    let url = format!("http://{}/api/v1/builds", server.addr);
    let auth = format!("Bearer {token}");
    let mut alive = ready;
    for r in 0..cfg.rounds {
        if r > 0 {
            tokio::time::sleep(cfg.pause).await;
        }
        // Anything still queued belongs to an earlier round.
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Msg::Closed { reason } => {
                    alive -= 1;
                    report.stream_errors += 1;
                    sample(&mut report, reason);
                }
                Msg::Accepted { .. } => report.stray_events += 1,
                Msg::Ready => {}
            }
        }
        let t0 = Instant::now();
        let res = client
            .post(&url)
            .header(reqwest::header::AUTHORIZATION, &auth)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(posts::build_body("fanout-app", 0, r as u64 + 1))
            .send()
            .await;
        let post_ms = t0.elapsed().as_secs_f64() * 1e3;
        let build_id = match res {
            Ok(resp) if resp.status() == reqwest::StatusCode::CREATED => resp
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v.get("id").and_then(serde_json::Value::as_i64)),
            Ok(resp) => {
                sample(&mut report, format!("POST answered HTTP {}", resp.status()));
                None
            }
            Err(e) => {
                sample(&mut report, format!("POST failed: {e}"));
                None
            }
        };
        let Some(build_id) = build_id else {
            report.post_errors += 1;
            println!("[fanout] round {}/{}: POST failed", r + 1, cfg.rounds);
            continue;
        };
        let expected = alive;
        let mut lat = Vec::with_capacity(expected);
        let deadline = t0 + ROUND_TIMEOUT;
        while lat.len() < alive {
            match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                Ok(Some(Msg::Accepted { build_id: id, at })) if id == build_id => {
                    lat.push(at.saturating_duration_since(t0).as_secs_f64() * 1e3);
                }
                Ok(Some(Msg::Accepted { .. })) => report.stray_events += 1,
                Ok(Some(Msg::Closed { reason })) => {
                    alive -= 1;
                    report.stream_errors += 1;
                    sample(&mut report, reason);
                }
                Ok(Some(Msg::Ready)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        report.missed += expected.saturating_sub(lat.len());
        sort(&mut lat);
        let round = Round {
            delivered: lat.len(),
            expected,
            p50_ms: percentile(&lat, 50.0).unwrap_or(f64::NAN),
            p99_ms: percentile(&lat, 99.0).unwrap_or(f64::NAN),
            max_ms: lat.last().copied().unwrap_or(f64::NAN),
            post_ms,
        };
        println!(
            "[fanout] round {:>2}/{}: {}/{} streams got build {build_id}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (POST answered in {:.2} ms)",
            r + 1,
            cfg.rounds,
            round.delivered,
            round.expected,
            round.p50_ms,
            round.p99_ms,
            round.max_ms,
            round.post_ms
        );
        report.rounds.push(round);
        if let Some(status) = server.exited() {
            return Err(format!(
                "server exited during the fanout bench: {status}\n{}",
                server.log_tail(20)
            )
            .into());
        }
    }
    report.mem_after = Memory::of(server.pid);
    println!(
        "[fanout] after the rounds: server RSS {}",
        mem_text(report.mem_after)
    );
    streams.abort_all();
    drop(server);
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
            "VmRSS {:.1} MiB, VmHWM {:.1} MiB",
            sys::mib(m.rss_kib),
            sys::mib(m.hwm_kib)
        )
    })
}

/// One SSE stream: GET, wait for the prelude (then release the connection permit), then
/// report every `build.accepted` until the stream ends. Returns why it ended.
async fn stream(
    addr: SocketAddr,
    token: &str,
    tx: &mpsc::UnboundedSender<Msg>,
    permit: OwnedSemaphorePermit,
) -> Result<(), String> {
    let mut permit = Some(permit);
    let mut sock = tokio::time::timeout(Duration::from_secs(30), TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = sock.set_nodelay(true);
    let req = format!(
        "GET /api/v1/stream HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
    );
    sock.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut parser = Parser::default();
    let mut buf = vec![0u8; 16 * 1024];
    let mut events = Vec::new();
    loop {
        let read = if permit.is_some() {
            tokio::time::timeout(Duration::from_secs(30), sock.read(&mut buf))
                .await
                .map_err(|_| "no prelude within 30 s".to_owned())?
        } else {
            sock.read(&mut buf).await
        };
        let n = read.map_err(|e| format!("read: {e}"))?;
        let at = Instant::now();
        if n == 0 {
            return Err("server closed the stream".into());
        }
        parser.feed(&buf[..n], &mut events)?;
        for ev in events.drain(..) {
            match ev {
                Sse::Retry if permit.is_some() => {
                    permit = None;
                    let _ = tx.send(Msg::Ready);
                }
                Sse::Retry => {}
                Sse::Event { kind, data } if kind == "build.accepted" => {
                    let build_id = serde_json::from_str::<serde_json::Value>(&data)
                        .ok()
                        .and_then(|v| v.get("id").and_then(serde_json::Value::as_i64))
                        .ok_or_else(|| format!("build.accepted without an id: {data}"))?;
                    let _ = tx.send(Msg::Accepted { build_id, at });
                }
                Sse::Event { .. } => {}
            }
        }
    }
}

#[derive(Debug, PartialEq)]
enum Sse {
    Retry,
    Event { kind: String, data: String },
}

#[derive(Default, Debug, Clone, Copy, PartialEq)]
enum State {
    #[default]
    Head,
    ChunkSize,
    ChunkData(usize),
    ChunkEnd,
    Identity,
}

/// Incremental HTTP/1.1 response + SSE parser, just enough for `/stream`.
#[derive(Default)]
struct Parser {
    state: State,
    raw: Vec<u8>,
    body: Vec<u8>,
}

const MAX_BUFFER: usize = 1 << 20;

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Parser {
    fn feed(&mut self, data: &[u8], out: &mut Vec<Sse>) -> Result<(), String> {
        self.raw.extend_from_slice(data);
        loop {
            match self.state {
                State::Head => {
                    let Some(end) = find(&self.raw, b"\r\n\r\n") else {
                        break;
                    };
                    let head = String::from_utf8_lossy(&self.raw[..end]).to_ascii_lowercase();
                    let status = head.lines().next().unwrap_or_default().to_owned();
                    if status.split_whitespace().nth(1) != Some("200") {
                        let rest = String::from_utf8_lossy(&self.raw[end + 4..]);
                        return Err(format!("stream answered {status:?}: {rest}"));
                    }
                    let chunked = head.lines().any(|l| {
                        l.split_once(':').is_some_and(|(k, v)| {
                            k.trim() == "transfer-encoding" && v.contains("chunked")
                        })
                    });
                    self.raw.drain(..end + 4);
                    self.state = if chunked {
                        State::ChunkSize
                    } else {
                        State::Identity
                    };
                }
                State::ChunkSize => {
                    let Some(end) = find(&self.raw, b"\r\n") else {
                        break;
                    };
                    let line = String::from_utf8_lossy(&self.raw[..end]);
                    let hex = line.split(';').next().unwrap_or_default().trim();
                    let size = usize::from_str_radix(hex, 16)
                        .map_err(|_| format!("bad chunk size line {line:?}"))?;
                    self.raw.drain(..end + 2);
                    if size == 0 {
                        return Err("server ended the stream".into());
                    }
                    self.state = State::ChunkData(size);
                }
                State::ChunkData(left) => {
                    if self.raw.is_empty() {
                        break;
                    }
                    let take = left.min(self.raw.len());
                    self.body.extend(self.raw.drain(..take));
                    self.state = if take == left {
                        State::ChunkEnd
                    } else {
                        State::ChunkData(left - take)
                    };
                }
                State::ChunkEnd => {
                    if self.raw.len() < 2 {
                        break;
                    }
                    if &self.raw[..2] != b"\r\n" {
                        return Err("chunk not followed by CRLF".into());
                    }
                    self.raw.drain(..2);
                    self.state = State::ChunkSize;
                }
                State::Identity => {
                    self.body.append(&mut self.raw);
                    break;
                }
            }
        }
        if self.raw.len() > MAX_BUFFER || self.body.len() > MAX_BUFFER {
            return Err("unparsed data piling up".into());
        }
        while let Some(end) = find(&self.body, b"\n\n") {
            let block: Vec<u8> = self.body.drain(..end + 2).collect();
            parse_block(&String::from_utf8_lossy(&block[..end]), out);
        }
        Ok(())
    }
}

fn parse_block(block: &str, out: &mut Vec<Sse>) {
    let (mut kind, mut data, mut retry) = (None, String::new(), false);
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "retry" => retry = true,
            "event" => kind = Some(value.to_owned()),
            "data" => {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
            }
            _ => {} // comments (keepalives), id
        }
    }
    if retry {
        out.push(Sse::Retry);
    }
    if let Some(kind) = kind {
        out.push(Sse::Event { kind, data });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chunked_sse_split_anywhere() {
        let wire = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
            d\r\nretry: 3000\n\n\r\n3\r\n:\n\n\r\n\
            2d\r\nid: 7\nevent: build.accepted\ndata: {\"id\":42}\n\n\r\n";
        for split in 1..wire.len() {
            let mut p = Parser::default();
            let mut out = Vec::new();
            for part in wire.chunks(split) {
                p.feed(part, &mut out).unwrap();
            }
            assert_eq!(
                out,
                [
                    Sse::Retry,
                    Sse::Event {
                        kind: "build.accepted".into(),
                        data: "{\"id\":42}".into()
                    }
                ],
                "split {split}"
            );
        }
    }

    #[test]
    fn rejects_error_status() {
        let mut p = Parser::default();
        let err = p
            .feed(b"HTTP/1.1 401 Unauthorized\r\n\r\n{}", &mut Vec::new())
            .unwrap_err();
        assert!(err.contains("401"), "{err}");
    }
}
