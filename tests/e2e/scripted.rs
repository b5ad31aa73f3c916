//! A scripted HTTP/1.1 server on loopback: what a broken or hostile backend might send.
//!
//! `/api/v1/account`, `/usage`, `/events` and `/builds` answer valid protocol-v1 JSON for one
//! user with no history (epoch `E1`, newest id `0`); `/events` honours `wait` as the real
//! server does (it holds the request), so a long-polling client is not answered in a loop.
//! `/api/v1/stream` answers from a script: the n-th stream request gets the n-th reply (the last
//! one again when the script runs out), written byte for byte as given — at once, or in
//! chosen pieces with a pause after each (`in_parts`, `bytes_per_write`: a line end split
//! across reads, one byte per read). Every request is
//! recorded with its arrival time, path and headers. One thread per connection; every answer
//! closes its connection; everything stops on drop.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::loopback::{Listener, Threads};

pub const EPOCH: &str = "E1";

const ACCOUNT: &str = r#"{"email":"scripted@example.com","id":"1","plan":{"hard_limit":true,"id":"free","name":"Free"}}"#;
const USAGE: &str = r#"{"last_event_id":"0","period":{"end":"2100-01-01T00:00:00Z","start":"2020-01-01T00:00:00Z"},"plan":{"hard_limit":true,"id":"free","name":"Free"},"quotas":[{"limit":100,"metric":"builds","used":0},{"limit":3,"metric":"applications","used":0}],"stream_epoch":"E1"}"#;
const EVENTS: &str = r#"{"events":[],"has_more":false,"last_event_id":"0","stream_epoch":"E1"}"#;
const BUILDS: &str = r#"{"builds":[],"has_more":false}"#;

/// A request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub at: Instant,
    pub method: String,
    /// Path and query, as on the request line.
    pub path: String,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_stream(&self) -> bool {
        self.path == "/api/v1/stream" || self.path.starts_with("/api/v1/stream?")
    }
}

/// What happens after a stream reply's body was written.
#[derive(Debug, Clone, Copy)]
pub enum Then {
    Close,
    /// Keep the connection open until the client goes or the server stops, sending a `:`
    /// comment at this interval (if any).
    Hold {
        keepalive: Option<Duration>,
    },
}

/// One scripted answer to `GET /api/v1/stream`.
#[derive(Debug, Clone)]
pub struct StreamReply {
    /// Status line and header lines, CRLF-separated, without the blank line that ends them.
    pub head: String,
    pub body: Vec<u8>,
    pub then: Then,
    /// Lengths of the body's first writes (the rest is one more); each write is flushed
    /// (TCP_NODELAY) and followed by `pause`, so the client reads them one by one.
    pub writes: Vec<usize>,
    pub pause: Duration,
}

impl StreamReply {
    pub fn raw(head: &str, body: impl Into<Vec<u8>>, then: Then) -> Self {
        Self {
            head: head.to_owned(),
            body: body.into(),
            then,
            writes: Vec::new(),
            pause: Duration::ZERO,
        }
    }

    /// The body is `parts` concatenated, each part written on its own.
    pub fn in_parts(mut self, parts: &[&[u8]], pause: Duration) -> Self {
        self.body = parts.concat();
        self.writes = parts.iter().map(|p| p.len()).collect();
        self.pause = pause;
        self
    }

    /// The body written `n` bytes at a time.
    pub fn bytes_per_write(mut self, n: usize, pause: Duration) -> Self {
        assert!(n > 0);
        self.writes = vec![n; self.body.len().div_ceil(n)];
        self.pause = pause;
        self
    }

    /// The connection closes after the body (instead of what the reply would do then).
    pub fn closing(mut self) -> Self {
        self.then = Then::Close;
        self
    }

    /// A well-formed event stream (epoch `E1`, delimited by the connection's end) that sends
    /// `body` and then keepalives every 100 ms.
    pub fn sse(body: impl Into<Vec<u8>>) -> Self {
        Self::raw(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nStream-Epoch: E1\r\nConnection: close",
            body,
            Then::Hold {
                keepalive: Some(Duration::from_millis(100)),
            },
        )
    }

    /// A status line, extra headers and a body, with a Content-Length; the connection closes.
    pub fn status(status_line: &str, headers: &[(&str, &str)], body: &str) -> Self {
        let mut head = status_line.to_owned();
        for (n, v) in headers {
            head.push_str(&format!("\r\n{n}: {v}"));
        }
        head.push_str(&format!(
            "\r\nContent-Length: {}\r\nConnection: close",
            body.len()
        ));
        Self::raw(&head, body, Then::Close)
    }
}

struct Shared {
    threads: Arc<Threads>,
    requests: Mutex<Vec<Request>>,
    script: Mutex<Vec<StreamReply>>,
}

pub struct Scripted {
    shared: Arc<Shared>,
    listener: Listener,
}

impl Scripted {
    /// Starts a server whose stream answers follow `script` (at least one reply).
    pub fn start(script: Vec<StreamReply>) -> Self {
        assert!(!script.is_empty(), "a stream script needs a reply");
        let threads = Arc::new(Threads::default());
        let shared = Arc::new(Shared {
            threads: threads.clone(),
            requests: Mutex::new(Vec::new()),
            script: Mutex::new(script),
        });
        let s = shared.clone();
        let listener = Listener::start(threads, move |conn| {
            let s2 = s.clone();
            s.threads.spawn(move || {
                let _ = serve(conn, &s2);
            });
        });
        Self { shared, listener }
    }

    pub fn url(&self) -> String {
        self.listener.url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.addr()
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Replaces the stream script (for replies that name this server's own URL).
    pub fn set_script(&self, script: Vec<StreamReply>) {
        assert!(!script.is_empty(), "a stream script needs a reply");
        *self.shared.script.lock().unwrap() = script;
    }

    /// Fails when a request reached this server with an `Authorization` header: used where it
    /// stands for another origin, which must never see the token.
    pub fn assert_never_sent_a_token(&self) {
        let leaked: Vec<Request> = self
            .requests()
            .into_iter()
            .filter(|r| r.header("authorization").is_some())
            .collect();
        assert!(
            leaked.is_empty(),
            "the token went to the other origin: {leaked:?}"
        );
    }

    pub fn stream_requests(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(Request::is_stream)
            .collect()
    }
}

/// Reads one request head; answers it; closes.
fn serve(mut conn: TcpStream, shared: &Shared) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_millis(50)))?;
    conn.set_write_timeout(Some(Duration::from_secs(10)))?;
    let started = Instant::now();
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if shared.threads.stopping() || started.elapsed() > Duration::from_secs(10) {
            return Ok(());
        }
        match conn.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
    }
    let at = Instant::now();
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_owned();
    let path = first.next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let req = Request {
        at,
        method,
        path,
        headers,
    };
    // The how-manyth stream request this is, counted as it is recorded.
    let stream_index = {
        let mut all = shared.requests.lock().unwrap();
        let before = all.iter().filter(|r| r.is_stream()).count();
        all.push(req.clone());
        before
    };

    let route = req.path.split('?').next().unwrap_or("");
    let json = |conn: &mut TcpStream, body: &str, extra: &str| {
        write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    match route {
        "/api/v1/account" => json(&mut conn, ACCOUNT, ""),
        "/api/v1/usage" => json(&mut conn, USAGE, ""),
        "/api/v1/builds" => json(&mut conn, BUILDS, ""),
        "/api/v1/events" => {
            // Like the real server: with `wait`, hold the (empty) answer that long.
            let wait = req
                .path
                .split(['?', '&'])
                .find_map(|p| p.strip_prefix("wait="))
                .and_then(|w| w.parse::<u64>().ok())
                .unwrap_or(0);
            let until = at + Duration::from_secs(wait);
            while Instant::now() < until {
                if shared.threads.stopping() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            json(&mut conn, EVENTS, "Stream-Epoch: E1\r\n")
        }
        "/api/v1/stream" => {
            let reply = {
                let script = shared.script.lock().unwrap();
                script[stream_index.min(script.len() - 1)].clone()
            };
            stream(&mut conn, shared, &reply)
        }
        _ => {
            let body = r#"{"error":{"code":"not_found","message":"no such route"}}"#;
            write!(
                conn,
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        }
    }?;
    conn.flush()
}

fn stream(conn: &mut TcpStream, shared: &Shared, reply: &StreamReply) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    conn.write_all(reply.head.as_bytes())?;
    conn.write_all(b"\r\n\r\n")?;
    conn.flush()?;
    let mut rest = &reply.body[..];
    for &n in &reply.writes {
        let (part, after) = rest.split_at(n.min(rest.len()));
        conn.write_all(part)?;
        conn.flush()?;
        rest = after;
        std::thread::sleep(reply.pause);
        if shared.threads.stopping() {
            return Ok(());
        }
    }
    for part in rest.chunks(64 * 1024) {
        conn.write_all(part)?;
    }
    conn.flush()?;
    let Then::Hold { keepalive } = reply.then else {
        return Ok(());
    };
    let mut last = Instant::now();
    let mut buf = [0u8; 1024];
    while !shared.threads.stopping() {
        // The read times out after 50 ms; 0 bytes means the client went away.
        match conn.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
        if let Some(every) = keepalive
            && last.elapsed() >= every
        {
            conn.write_all(b":\n\n")?;
            last = Instant::now();
        }
    }
    Ok(())
}
