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

use std::os::fd::{AsRawFd, RawFd};
use std::time::SystemTime;

use tokio::io::{AsyncWriteExt, Interest};
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
    /// The same, from the kernel's receive timestamps: without the bench's own scheduling.
    pub kernel_p50_ms: f64,
    pub kernel_p99_ms: f64,
    pub kernel_max_ms: f64,
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
    pub fn server_cpu(&self) -> Option<Spread> {
        self.spread(|r| r.server_cpu_ms)
            .filter(|s| s.median.is_finite())
    }
    pub fn kernel_p50(&self) -> Option<Spread> {
        self.spread(|r| r.kernel_p50_ms)
            .filter(|s| s.median.is_finite())
    }
    pub fn kernel_p99(&self) -> Option<Spread> {
        self.spread(|r| r.kernel_p99_ms)
            .filter(|s| s.median.is_finite())
    }
    pub fn kernel_max(&self) -> Option<Spread> {
        self.spread(|r| r.kernel_max_ms)
            .filter(|s| s.median.is_finite())
    }
}

/// What a stream task tells the coordinator; `stream` is its index.
enum Msg {
    Ready {
        stream: usize,
    },
    Accepted {
        stream: usize,
        build_id: i64,
        /// When the stream task had the event (client-observed).
        at: Instant,
        /// When the kernel queued the bytes on the client socket (SO_TIMESTAMPNS), if known.
        kernel_at: Option<SystemTime>,
    },
    Closed {
        stream: usize,
        reason: String,
    },
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
        other_load: None,
    };

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
        let (tx, token) = (tx.clone(), token.clone());
        let addr = server.addr;
        streams.spawn(async move {
            let reason = match stream(i, addr, &token, &tx, permit).await {
                Ok(()) => "stream ended".to_owned(),
                Err(e) => e,
            };
            let _ = tx.send(Msg::Closed { stream: i, reason });
        });
    }
    drop(tx);
    while state.connecting() > 0 {
        match tokio::time::timeout_at(connect_deadline.into(), rx.recv()).await {
            Ok(Some(Msg::Accepted { .. })) => report.stray_events += 1,
            Ok(Some(msg)) => state.apply(&mut report, &msg),
            Ok(None) | Err(_) => break,
        }
    }
    report.connect_secs = started.elapsed().as_secs_f64();
    let ready = state.ready;
    report.connected = ready;
    // Let the server settle (allocations of the last streams, idle timers) before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    report.mem_connected = Memory::of(server.pid);
    println!(
        "[fanout] {ready}/{} streams connected in {:.2} s ({} failed); server RSS {}",
        cfg.streams,
        report.connect_secs,
        report.stream_errors,
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
    let probe = sys::LoadProbe::start(server.pid);
    for r in 0..cfg.rounds {
        if r > 0 {
            tokio::time::sleep(cfg.pause).await;
        }
        // Anything still queued belongs to an earlier round.
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Msg::Accepted { .. } => report.stray_events += 1,
                msg => state.apply(&mut report, &msg),
            }
        }
        let cpu0 = sys::cpu_seconds(server.pid);
        let t0_wall = SystemTime::now();
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
        let expected = state.ready;
        let mut lat = Vec::with_capacity(expected);
        let mut kernel_lat = Vec::with_capacity(expected);
        let mut seen = vec![false; cfg.streams];
        let deadline = t0 + ROUND_TIMEOUT;
        while lat.len() < state.ready {
            match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                Ok(Some(Msg::Accepted {
                    stream,
                    build_id: id,
                    at,
                    kernel_at,
                })) if id == build_id
                    && state.phase[stream] == Phase::Ready
                    && !std::mem::replace(&mut seen[stream], true) =>
                {
                    lat.push(at.saturating_duration_since(t0).as_secs_f64() * 1e3);
                    if let Some(d) = kernel_at.and_then(|k| k.duration_since(t0_wall).ok()) {
                        kernel_lat.push(d.as_secs_f64() * 1e3);
                    }
                }
                Ok(Some(Msg::Accepted { .. })) => report.stray_events += 1,
                Ok(Some(msg)) => state.apply(&mut report, &msg),
                Ok(None) | Err(_) => break,
            }
        }
        let cpu1 = sys::cpu_seconds(server.pid);
        report.missed += expected.saturating_sub(lat.len());
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
            p50_ms: percentile(&lat, 50.0).unwrap_or(f64::NAN),
            p99_ms: percentile(&lat, 99.0).unwrap_or(f64::NAN),
            max_ms: lat.last().copied().unwrap_or(f64::NAN),
            kernel_p50_ms: kernel(50.0),
            kernel_p99_ms: kernel(99.0),
            kernel_max_ms: kernel(100.0),
            post_ms,
            server_cpu_ms: cpu0.zip(cpu1).map_or(f64::NAN, |(a, b)| (b - a) * 1e3),
        };
        println!(
            "[fanout] round {:>2}/{}: {}/{} streams got build {build_id}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms \
             (kernel arrival first {:.2} p50 {:.2} p99 {:.2} max {:.2}; POST answered in {:.2} ms; server CPU {:.0} ms)",
            r + 1,
            cfg.rounds,
            round.delivered,
            round.expected,
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
        if let Some(status) = server.exited() {
            return Err(format!(
                "server exited during the fanout bench: {status}\n{}",
                server.log_tail(20)
            )
            .into());
        }
    }
    report.other_load = probe.other_cores();
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
            "VmRSS {:.1} MiB, VmHWM {:.1} MiB, {} threads",
            sys::mib(m.rss_kib),
            sys::mib(m.hwm_kib),
            m.threads
        )
    })
}

/// One SSE stream: GET, wait for the prelude (then release the connection permit), then
/// report every `build.accepted` until the stream ends. Returns why it ended.
async fn stream(
    index: usize,
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
    let fd = sock.as_raw_fd();
    let timestamps = enable_rx_timestamps(fd);
    let mut parser = Parser::default();
    let mut buf = vec![0u8; 16 * 1024];
    let mut events = Vec::new();
    loop {
        let read = if permit.is_some() {
            tokio::time::timeout(
                Duration::from_secs(30),
                recv(&sock, fd, &mut buf, timestamps),
            )
            .await
            .map_err(|_| "no prelude within 30 s".to_owned())?
        } else {
            recv(&sock, fd, &mut buf, timestamps).await
        };
        let (n, kernel_at) = read.map_err(|e| format!("read: {e}"))?;
        let at = Instant::now();
        if n == 0 {
            return Err("server closed the stream".into());
        }
        parser.feed(&buf[..n], &mut events)?;
        for ev in events.drain(..) {
            match ev {
                Sse::Retry if permit.is_some() => {
                    permit = None;
                    let _ = tx.send(Msg::Ready { stream: index });
                }
                Sse::Retry => {}
                Sse::Event { kind, data } if kind == "build.accepted" => {
                    let build_id = serde_json::from_str::<serde_json::Value>(&data)
                        .ok()
                        .and_then(|v| v.get("id").and_then(serde_json::Value::as_i64))
                        .ok_or_else(|| format!("build.accepted without an id: {data}"))?;
                    let _ = tx.send(Msg::Accepted {
                        stream: index,
                        build_id,
                        at,
                        kernel_at,
                    });
                }
                Sse::Event { .. } => {}
            }
        }
    }
}

/// Asks the kernel to stamp received data (SO_TIMESTAMPNS); false if it refuses.
fn enable_rx_timestamps(fd: RawFd) -> bool {
    let on: libc::c_int = 1;
    // SAFETY: passes a valid int option for a socket this task owns.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// Reads what is there, with the kernel's receive timestamp of the last segment read.
async fn recv(
    sock: &TcpStream,
    fd: RawFd,
    buf: &mut [u8],
    timestamps: bool,
) -> std::io::Result<(usize, Option<SystemTime>)> {
    loop {
        sock.readable().await?;
        match sock.try_io(Interest::READABLE, || recvmsg(fd, buf, timestamps)) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

fn recvmsg(
    fd: RawFd,
    buf: &mut [u8],
    timestamps: bool,
) -> std::io::Result<(usize, Option<SystemTime>)> {
    // u64s keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 16];
    // SAFETY: iov and control point into live buffers of the stated lengths; the cmsg walk
    // uses the libc macros over the length the kernel filled in, and reads the timespec
    // unaligned.
    unsafe {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if timestamps {
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control) as _;
        }
        let n = libc::recvmsg(fd, &mut msg, 0);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut stamp = None;
        if timestamps {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET
                    && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
                {
                    let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    stamp = Some(
                        SystemTime::UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32),
                    );
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        Ok((n as usize, stamp))
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
