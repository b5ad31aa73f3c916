//! Test support: the real `quotabell-server` binary on an ephemeral port over a real store.
//!
//! The suite is parametrised by store: `QUOTABELL_TEST_STORE=postgres` runs every test on a
//! throwaway PostgreSQL cluster (one per test process, a fresh database per test); anything
//! else (the default) on a fresh SQLite file per test.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use quotabell_testbed::Postgres;

pub const BIN: &str = env!("CARGO_BIN_EXE_quotabell-server");

/// Whether this run of the suite is on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("QUOTABELL_TEST_STORE").is_ok_and(|s| s == "postgres")
}

/// The process's cluster, stopped when the test process exits (statics are never dropped).
static CLUSTER: OnceLock<Mutex<Option<Postgres>>> = OnceLock::new();

extern "C" fn stop_cluster() {
    if let Some(cluster) = CLUSTER.get() {
        drop(cluster.lock().map(|mut c| c.take()));
    }
}

/// Runs `f` with the process's PostgreSQL cluster, starting it on first use.
pub fn with_cluster<T>(f: impl FnOnce(&Postgres) -> T) -> T {
    let cluster = CLUSTER.get_or_init(|| {
        let pg = Postgres::start().expect("start a throwaway PostgreSQL cluster");
        unsafe { libc::atexit(stop_cluster) };
        Mutex::new(Some(pg))
    });
    let guard = cluster.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.as_ref().expect("the cluster is running"))
}

/// A fresh, empty database in the suite's store: a SQLite path in `dir` or a new PostgreSQL
/// database's URL.
pub fn fresh_db(dir: &std::path::Path) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    if on_postgres() {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        with_cluster(|pg| {
            pg.create_database(&name).expect("create a test database");
            pg.url(&name)
        })
    } else {
        dir.join(format!("server{}.db", N.fetch_add(1, Ordering::Relaxed)))
            .display()
            .to_string()
    }
}

pub struct Server {
    pub child: Child,
    pub base: String,
    /// The `--db` value: a SQLite path or a PostgreSQL URL.
    pub db: String,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = fresh_db(dir.path());
        let mut s = Self::start_on(&db, extra);
        s._dir = Some(dir);
        s
    }

    /// Starts a server on an existing (or new) database.
    pub fn start_on(db: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--db", db])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start quotabell-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Self {
            child,
            base: addr,
            db: db.to_owned(),
            _dir: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// Creates a user with the CLI and returns the token it printed.
    pub fn add_user(&self, email: &str, plan: &str) -> String {
        cli(&self.db, &["user", "add", "--email", email, "--plan", plan])
            .lines()
            .last()
            .unwrap()
            .to_owned()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not stop within 5 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs an operator command against `db` and returns its stdout.
pub fn cli(db: &str, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .args(["--db", db])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Polls `ok` every 50 ms until it holds or `limit` passes; whether it held.
pub async fn wait_until<F, Fut>(limit: Duration, mut ok: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if ok().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn client() -> reqwest::Client {
    // Built together with quotabell-core, reqwest has rustls without a default provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub fn build_body(app: &str, n: usize) -> Value {
    serde_json::json!({ "app": app, "version": format!("1.0.{n}"), "commit": format!("{n:040x}") })
}

pub async fn post_build(
    c: &reqwest::Client,
    s: &Server,
    token: &str,
    body: &Value,
) -> (u16, Value) {
    post_to(c, s.url("/builds"), token, body).await
}

/// `POST` of a build body to `url` (owned, so that a spawned task can post).
pub async fn post_to(c: &reqwest::Client, url: String, token: &str, body: &Value) -> (u16, Value) {
    let res = c
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

pub async fn get_json(c: &reqwest::Client, s: &Server, token: &str, path: &str) -> (u16, Value) {
    let res = c.get(s.url(path)).bearer_auth(token).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub kind: String,
    pub data: Value,
}

/// Every event in the user's log, paging through `/events`.
pub async fn all_events(c: &reqwest::Client, s: &Server, token: &str) -> Vec<Event> {
    let mut out = Vec::new();
    let mut path = "/events?limit=5000".to_owned();
    loop {
        let (status, page) = get_json(c, s, token, &path).await;
        assert_eq!(status, 200, "{page}");
        for e in page["events"].as_array().unwrap() {
            out.push(Event {
                id: e["id"].as_str().unwrap().to_owned(),
                kind: e["type"].as_str().unwrap().to_owned(),
                data: e["data"].clone(),
            });
        }
        if !page["has_more"].as_bool().unwrap() {
            return out;
        }
        path = format!("/events?limit=5000&after={}", out.last().unwrap().id);
    }
}

/// A minimal SSE reader for tests: the server frames with LF only.
pub struct Sse {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: Vec<u8>,
    pub headers: reqwest::header::HeaderMap,
}

/// A parsed SSE block: an event, or a comment / retry line.
#[derive(Debug)]
pub enum Block {
    Event(Event),
    Other(String),
}

impl Sse {
    pub async fn open(c: &reqwest::Client, s: &Server, token: &str, last_id: Option<&str>) -> Self {
        let mut req = c
            .get(s.url("/stream"))
            .bearer_auth(token)
            .timeout(Duration::from_secs(3600));
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        let headers = res.headers().clone();
        Self {
            body: Box::pin(res.bytes_stream()),
            buf: Vec::new(),
            headers,
        }
    }

    pub async fn next_block(&mut self) -> Option<Block> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..pos + 2).collect();
                let text = String::from_utf8(block).unwrap();
                let (mut id, mut kind, mut data) = (None, None, None);
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        kind = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).unwrap());
                    }
                }
                return Some(match (id, kind, data) {
                    (Some(id), Some(kind), Some(data)) => Block::Event(Event { id, kind, data }),
                    _ => Block::Other(text),
                });
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                _ => return None,
            }
        }
    }

    /// The next event, skipping comments and the retry prelude; `None` when the stream ends
    /// or nothing arrives within `wait`.
    pub async fn next_event(&mut self, wait: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.next_block()).await {
                Ok(Some(Block::Event(e))) => return Some(e),
                Ok(Some(Block::Other(_))) => continue,
                _ => return None,
            }
        }
    }
}
