//! Where the engine's one server origin points: a single backend on a SQLite file, or several
//! backend instances on one throwaway PostgreSQL database behind a round-robin balancer, as an
//! operator runs them behind a load balancer.
//!
//! The balancer is per connection: each new client connection goes to the next instance that
//! accepts one (a killed instance refuses, so it is skipped, as a balancer's health check would
//! take it out), and its bytes are moved both ways until either side closes. A long-lived
//! stream therefore stays on its instance until that instance dies, and the engine's reconnect
//! lands on another one. It binds to 127.0.0.1, forwards only to loopback, and stops, closing
//! everything, on drop.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::loopback::{Listener, Threads};
use crate::support::Backend;

const POLL: Duration = Duration::from_millis(10);
const STREAM_REQUEST: &[u8] = b"GET /api/v1/stream";

/// The backend(s) behind one origin. Fields drop in order: the balancer, then the instances,
/// then the database they write to.
pub struct Deployment {
    pub balancer: Option<Balancer>,
    pub instances: Vec<Backend>,
    pub pg: Option<quotabell_testbed::Postgres>,
    /// The database's name in `pg`.
    pub db_name: String,
}

impl Deployment {
    /// One backend on `dir/server.db`.
    pub fn sqlite(dir: &Path, args: &[&str]) -> Self {
        Self {
            balancer: None,
            instances: vec![Backend::start(dir, args)],
            pg: None,
            db_name: String::new(),
        }
    }

    /// `n` instances on one database of a throwaway cluster, each logging to `dir/instance-I`,
    /// behind a round-robin balancer.
    pub fn postgres(dir: &Path, n: usize, args: &[&str]) -> Self {
        let pg = quotabell_testbed::Postgres::start().unwrap_or_else(|e| panic!("{e}"));
        let db_name = "quotabell";
        pg.create_database(db_name)
            .unwrap_or_else(|e| panic!("{e}"));
        let url = pg.url(db_name);
        let instances: Vec<Backend> = (0..n)
            .map(|i| {
                let logs = dir.join(format!("instance-{i}"));
                std::fs::create_dir_all(&logs).unwrap();
                Backend::start_at(&url, &logs, args)
            })
            .collect();
        let upstreams = instances
            .iter()
            .map(|b| b.addr.as_str())
            .collect::<Vec<_>>();
        Self {
            balancer: Some(Balancer::start(&upstreams)),
            instances,
            pg: Some(pg),
            db_name: db_name.into(),
        }
    }

    /// The origin the engine and the clients use.
    pub fn url(&self) -> String {
        match &self.balancer {
            Some(b) => b.url(),
            None => self.instances[0].url(),
        }
    }

    /// `host:port` of that origin.
    pub fn addr(&self) -> String {
        match &self.balancer {
            Some(b) => b.addr().to_string(),
            None => self.instances[0].addr.clone(),
        }
    }

    /// What operator commands take as `--db`: the SQLite file or the PostgreSQL URL.
    pub fn db(&self) -> std::path::PathBuf {
        self.instances[0].db.clone()
    }

    pub fn add_user(&self, email: &str, plan: &str) -> String {
        self.instances[0].add_user(email, plan)
    }

    /// Runs SQL on the PostgreSQL database (`psql`, unaligned, tuples only).
    pub fn psql(&self, sql: &str) -> String {
        let pg = self.pg.as_ref().expect("a PostgreSQL deployment");
        pg.psql(&self.db_name, sql)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn balancer(&self) -> &Balancer {
        self.balancer.as_ref().expect("a balanced deployment")
    }
}

/// One balanced connection, as both pumps and the test see it.
struct Conn {
    client: TcpStream,
    server: TcpStream,
    upstream: usize,
    closed: AtomicBool,
    /// Whether the client sent a stream request on it.
    stream: AtomicBool,
}

impl Conn {
    fn close(&self) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            let _ = self.client.shutdown(Shutdown::Both);
            let _ = self.server.shutdown(Shutdown::Both);
        }
    }
}

struct Shared {
    upstreams: Vec<SocketAddr>,
    next: AtomicUsize,
    threads: Arc<Threads>,
    /// Open connections (closed ones are dropped at the next accept).
    conns: Mutex<Vec<Arc<Conn>>>,
    /// Stream requests sent to each instance so far.
    streams_to: Vec<AtomicUsize>,
}

pub struct Balancer {
    shared: Arc<Shared>,
    listener: Listener,
}

impl Balancer {
    /// Listens on 127.0.0.1:0 and spreads connections over `upstreams` (`ip:port`, loopback
    /// only; an instance restarted on its port is used again).
    pub fn start(upstreams: &[&str]) -> Self {
        let upstreams: Vec<SocketAddr> = upstreams
            .iter()
            .map(|u| u.parse().expect("upstream is ip:port"))
            .collect();
        assert!(
            upstreams.iter().all(|u| u.ip().is_loopback()),
            "the balancer forwards to loopback only"
        );
        let threads = Arc::new(Threads::default());
        let shared = Arc::new(Shared {
            streams_to: upstreams.iter().map(|_| AtomicUsize::new(0)).collect(),
            upstreams,
            next: AtomicUsize::new(0),
            threads: threads.clone(),
            conns: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let listener = Listener::start(threads, move |client| accept(client, &s));
        Self { shared, listener }
    }

    pub fn url(&self) -> String {
        self.listener.url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.addr()
    }

    /// The instance (index) of each open connection that carried a stream request.
    pub fn open_streams(&self) -> Vec<usize> {
        let conns = self.shared.conns.lock().unwrap();
        conns
            .iter()
            .filter(|c| !c.closed.load(Ordering::SeqCst) && c.stream.load(Ordering::SeqCst))
            .map(|c| c.upstream)
            .collect()
    }

    /// Stream requests each instance received so far.
    pub fn streams_to(&self) -> Vec<usize> {
        self.shared
            .streams_to
            .iter()
            .map(|n| n.load(Ordering::SeqCst))
            .collect()
    }
}

fn accept(client: TcpStream, shared: &Arc<Shared>) {
    shared
        .conns
        .lock()
        .unwrap()
        .retain(|c| !c.closed.load(Ordering::SeqCst));
    let n = shared.upstreams.len();
    let first = shared.next.fetch_add(1, Ordering::SeqCst);
    for i in (first..first + n).map(|i| i % n) {
        // Loopback refuses at once when nothing listens: a dead instance costs no time.
        if let Ok(server) = TcpStream::connect_timeout(&shared.upstreams[i], Duration::from_secs(5))
        {
            start_pumps(client, server, i, shared);
            return;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}

fn start_pumps(client: TcpStream, server: TcpStream, upstream: usize, shared: &Arc<Shared>) {
    for s in [&client, &server] {
        let _ = s.set_nonblocking(false);
        let _ = s.set_nodelay(true);
        let _ = s.set_read_timeout(Some(POLL));
        let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    }
    let conn = Arc::new(Conn {
        client,
        server,
        upstream,
        closed: AtomicBool::new(false),
        stream: AtomicBool::new(false),
    });
    shared.conns.lock().unwrap().push(conn.clone());
    for downstream in [false, true] {
        let (c, s) = (conn.clone(), shared.clone());
        shared.threads.spawn(move || {
            pump(&c, &s, downstream);
            c.close();
        });
    }
}

/// Moves bytes one way until either side closes or the balancer stops.
fn pump(conn: &Conn, shared: &Shared, downstream: bool) {
    let (mut from, mut to) = if downstream {
        (&conn.server, &conn.client)
    } else {
        (&conn.client, &conn.server)
    };
    let mut buf = vec![0u8; 16 * 1024];
    // Upstream: the tail of the previous read, so a request line split across reads is seen.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        if shared.threads.stopping() || conn.closed.load(Ordering::SeqCst) {
            return;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return,
        };
        let data = &buf[..n];
        if !downstream {
            tail.extend_from_slice(data);
            let seen = tail
                .windows(STREAM_REQUEST.len())
                .filter(|w| *w == STREAM_REQUEST)
                .count();
            if seen > 0 {
                conn.stream.store(true, Ordering::SeqCst);
                shared.streams_to[conn.upstream].fetch_add(seen, Ordering::SeqCst);
            }
            let keep = tail.len().min(STREAM_REQUEST.len() - 1);
            tail.drain(..tail.len() - keep);
        }
        if to.write_all(data).is_err() {
            return;
        }
    }
}
