//! A fault-injecting TCP proxy on loopback, between the engine and the backend.
//!
//! Every accepted connection gets its own upstream connection and two pump threads (one per
//! direction) that move bytes through a fixed buffer. Faults are switched on and off while
//! connections run:
//!
//! - `cut_after_bytes(n)`: every connection, open now or accepted later, is closed (both sides)
//!   once `n` more bytes went downstream (server → engine) on it: the engine sees its response
//!   end in the middle of whatever was on the wire, typically mid-event.
//!   `cut_streams_after_bytes(lo..=hi)` does the same only for connections that carry
//!   `GET /api/v1/stream`, each after its own random number of bytes in that range counted
//!   from the request, so catch-up calls are left alone. The last bytes each cut connection
//!   delivered are kept (`cut_tails`), to tell cuts inside an event from cuts between events.
//! - `stall()`: both directions stop being read (sockets stay open, so the engine sees a
//!   silent connection, not a closed one); `resume()` lets the bytes flow again.
//!
//! The proxy binds to 127.0.0.1 and forwards only to a loopback address; it holds at most
//! `MAX_LIVE` connections at once (more are closed at once) and stops, closing everything, on
//! drop.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;

use crate::loopback::{Listener, Threads};

const MAX_LIVE: usize = 128;
const POLL: Duration = Duration::from_millis(10);
const STREAM_REQUEST: &[u8] = b"GET /api/v1/stream";
/// How many of the last bytes before a cut are kept, for how many cuts.
const TAIL: usize = 512;
const MAX_TAILS: usize = 1000;

#[derive(Clone, Copy, Debug)]
struct Cut {
    /// Each connection is cut after a number of bytes drawn from this range.
    lo: u64,
    hi: u64,
    streams_only: bool,
    /// Changes with every new policy, so that open connections start counting afresh.
    generation: u64,
}

struct Shared {
    upstream: SocketAddr,
    threads: Arc<Threads>,
    stalled: AtomicBool,
    accepted: AtomicUsize,
    live: AtomicUsize,
    cuts: AtomicUsize,
    cut_tails: Mutex<Vec<Vec<u8>>>,
    cut: Mutex<Option<Cut>>,
    generation: AtomicU64,
}

pub struct Proxy {
    shared: Arc<Shared>,
    listener: Listener,
}

impl Proxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream` (`host:port`, loopback only).
    pub fn start(upstream: &str) -> Self {
        let upstream: SocketAddr = upstream.parse().expect("upstream is ip:port");
        assert!(
            upstream.ip().is_loopback(),
            "the proxy forwards to loopback only"
        );
        let threads = Arc::new(Threads::default());
        let shared = Arc::new(Shared {
            upstream,
            threads: threads.clone(),
            stalled: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            cuts: AtomicUsize::new(0),
            cut_tails: Mutex::new(Vec::new()),
            cut: Mutex::new(None),
            generation: AtomicU64::new(0),
        });
        let s = shared.clone();
        let listener = Listener::start(threads, move |client| accept(client, &s));
        Self { shared, listener }
    }

    pub fn url(&self) -> String {
        self.listener.url()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections open right now.
    pub fn live(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }

    /// Connections closed by a cut so far.
    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(Ordering::SeqCst)
    }

    /// The last bytes (up to 512) each cut connection delivered downstream, oldest cut first
    /// (the first 1000 cuts).
    pub fn cut_tails(&self) -> Vec<Vec<u8>> {
        self.shared.cut_tails.lock().unwrap().clone()
    }

    /// Closes every connection (open now, or accepted while this holds) after `n` more bytes
    /// went downstream on it.
    pub fn cut_after_bytes(&self, n: u64) {
        self.set_cut(n..=n, false);
    }

    /// Like `cut_after_bytes`, only for connections carrying `GET /api/v1/stream`, each after
    /// its own random number of bytes in `range`, counted from that request.
    pub fn cut_streams_after_bytes(&self, range: RangeInclusive<u64>) {
        self.set_cut(range, true);
    }

    /// No more cuts.
    pub fn no_cuts(&self) {
        *self.shared.cut.lock().unwrap() = None;
    }

    fn set_cut(&self, range: RangeInclusive<u64>, streams_only: bool) {
        let generation = self.shared.generation.fetch_add(1, Ordering::SeqCst) + 1;
        *self.shared.cut.lock().unwrap() = Some(Cut {
            lo: *range.start(),
            hi: (*range.end()).max(*range.start()),
            streams_only,
            generation,
        });
    }

    /// Stops forwarding in both directions; sockets stay open.
    pub fn stall(&self) {
        self.shared.stalled.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.shared.stalled.store(false, Ordering::SeqCst);
    }
}

fn accept(client: TcpStream, shared: &Arc<Shared>) {
    shared.accepted.fetch_add(1, Ordering::SeqCst);
    if shared.live.load(Ordering::SeqCst) >= MAX_LIVE {
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    match TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(5)) {
        Ok(server) => start_pumps(client, server, shared),
        Err(_) => {
            let _ = client.shutdown(Shutdown::Both);
        }
    }
}

/// One proxied connection, as both pumps see it.
struct Conn {
    client: TcpStream,
    server: TcpStream,
    closed: AtomicBool,
    /// Bumped by the upstream pump each time it forwards a stream request.
    stream_requests: AtomicU64,
}

impl Conn {
    fn close(&self) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            let _ = self.client.shutdown(Shutdown::Both);
            let _ = self.server.shutdown(Shutdown::Both);
        }
    }
}

fn start_pumps(client: TcpStream, server: TcpStream, shared: &Arc<Shared>) {
    for s in [&client, &server] {
        let _ = s.set_nonblocking(false);
        let _ = s.set_nodelay(true);
        let _ = s.set_read_timeout(Some(POLL));
        let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    }
    let conn = Arc::new(Conn {
        client,
        server,
        closed: AtomicBool::new(false),
        stream_requests: AtomicU64::new(0),
    });
    shared.live.fetch_add(1, Ordering::SeqCst);
    for downstream in [false, true] {
        let (c, s) = (conn.clone(), shared.clone());
        shared.threads.spawn(move || {
            pump(&c, &s, downstream);
            c.close();
            if downstream {
                s.live.fetch_sub(1, Ordering::SeqCst);
            }
        });
    }
}

/// Moves bytes one way until either side closes, the proxy stops or a cut ends the connection.
fn pump(conn: &Conn, shared: &Shared, downstream: bool) {
    let (mut from, mut to) = if downstream {
        (&conn.server, &conn.client)
    } else {
        (&conn.client, &conn.server)
    };
    let mut buf = vec![0u8; 16 * 1024];
    let mut rng = rand::rng();
    // Downstream: bytes counted towards a cut, under which policy and for which request, the
    // cut point drawn for them, and the last bytes sent.
    let mut counted: u64 = 0;
    let mut counted_for: (u64, u64) = (0, 0);
    let mut limit: u64 = 0;
    let mut recent: Vec<u8> = Vec::new();
    // Upstream: the tail of the previous read, so a request line split across reads is seen.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        if shared.threads.stopping() || conn.closed.load(Ordering::SeqCst) {
            return;
        }
        if shared.stalled.load(Ordering::SeqCst) {
            std::thread::sleep(POLL);
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return,
        };
        let mut data = &buf[..n];
        if downstream {
            let cut = *shared.cut.lock().unwrap();
            let requests = conn.stream_requests.load(Ordering::SeqCst);
            if let Some(cut) = cut.filter(|c| !c.streams_only || requests > 0) {
                let key = (cut.generation, if cut.streams_only { requests } else { 0 });
                if key != counted_for {
                    counted_for = key;
                    counted = 0;
                    limit = rng.random_range(cut.lo..=cut.hi);
                }
                let left = limit.saturating_sub(counted);
                if (data.len() as u64) >= left {
                    data = &data[..left as usize];
                    let _ = to.write_all(data);
                    let _ = to.flush();
                    recent.extend_from_slice(data);
                    let tail = recent[recent.len().saturating_sub(TAIL)..].to_vec();
                    let mut tails = shared.cut_tails.lock().unwrap();
                    if tails.len() < MAX_TAILS {
                        tails.push(tail);
                    }
                    drop(tails);
                    shared.cuts.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                counted += data.len() as u64;
            }
            recent.extend_from_slice(data);
            if recent.len() > 4 * TAIL {
                recent.drain(..recent.len() - TAIL);
            }
        } else {
            tail.extend_from_slice(data);
            let seen = tail
                .windows(STREAM_REQUEST.len())
                .filter(|w| *w == STREAM_REQUEST)
                .count();
            if seen > 0 {
                conn.stream_requests
                    .fetch_add(seen as u64, Ordering::SeqCst);
            }
            let keep = tail.len().min(STREAM_REQUEST.len() - 1);
            tail.drain(..tail.len() - keep);
        }
        if to.write_all(data).is_err() {
            return;
        }
    }
}
