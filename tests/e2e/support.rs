//! Real parts for end-to-end tests: the backend binary, the engine binary, and a private
//! desktop session (a D-Bus session bus with gnome-keyring's Secret Service and the dunst
//! notification daemon), all from the shared test bed (crates/testbed), which the benchmarks
//! use too. Everything is per test, so tests run in parallel without seeing each other's
//! notifications or secrets. Needs an X display (Xvfb) for dunst: the test command runs
//! everything under `xvfb-run`.
//!
//! The wrappers here turn the test bed's errors into test failures, so that a test reads as
//! its steps.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use quotabell_testbed::{FakeClock, Profile, Session, Watch};
use serde_json::Value;

pub use quotabell_testbed::process::{cmdline, descendants, parent_of};

/// A binary of the workspace, next to this test binary's `deps/` directory.
pub fn bin(name: &str) -> PathBuf {
    let path = quotabell_testbed::workspace_bin(name).unwrap();
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

pub fn wait_until(what: &str, timeout: Duration, ok: impl FnMut() -> bool) {
    quotabell_testbed::wait_for(what, timeout, ok).unwrap_or_else(|e| panic!("{e}"));
}

/// Held by each test that runs the desktop app: WebKit is heavy, and two or three of them at
/// once on a 2-core CI machine make every timeout in the run a gamble.
pub fn one_app_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SLOT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SLOT.lock().unwrap_or_else(|e| e.into_inner())
}

/// A private desktop session (see [`quotabell_testbed::Desktop`]).
pub struct Desktop(quotabell_testbed::Desktop);

impl Desktop {
    /// Notifications close after a second, so the history fills quickly.
    pub fn start() -> Self {
        Self::start_with(Duration::from_secs(1))
    }

    /// Notifications stay on screen for a minute, so a test can act on them.
    pub fn start_lingering() -> Self {
        Self::start_with(Duration::from_secs(60))
    }

    /// A session whose bus starts nothing on demand: a daemon the test stops stays gone.
    pub fn start_without_activation() -> Self {
        Self::launch(Session {
            bus_activation: false,
            ..Session::default()
        })
    }

    /// Every engine command of the session runs on `clock`.
    pub fn start_on(clock: &FakeClock) -> Self {
        Self::launch(Session {
            clock: Some(clock.clone()),
            ..Session::default()
        })
    }

    fn start_with(shown: Duration) -> Self {
        Self::launch(Session {
            shown,
            ..Session::default()
        })
    }

    fn launch(session: Session) -> Self {
        Self(
            quotabell_testbed::Desktop::launch(&session)
                .unwrap_or_else(|e| panic!("desktop session: {e}")),
        )
    }

    /// Every notification the daemon received so far: (summary, body), oldest first.
    pub fn notifications(&self) -> Vec<(String, String)> {
        self.0.notifications().unwrap_or_else(|e| panic!("{e}"))
    }

    /// How many notifications mention `text` in their summary or body.
    pub fn count_mentions(&self, text: &str) -> usize {
        self.0
            .count_mentions(text)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The secret stored for a keychain key, read with libsecret's own tool.
    pub fn secret(&self, service: &str) -> String {
        self.0.secret(service).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Deref for Desktop {
    type Target = quotabell_testbed::Desktop;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// The reference backend on a fixed file (or a PostgreSQL URL); restartable on the same port.
pub struct Backend(quotabell_testbed::Backend);

impl Backend {
    pub fn start(dir: &Path, args: &[&str]) -> Self {
        Self::launch(dir, args, None)
    }

    /// The backend on `clock` (its periods and build times follow it).
    pub fn start_on(dir: &Path, args: &[&str], clock: &FakeClock) -> Self {
        Self::launch(dir, args, Some(clock.clone()))
    }

    fn launch(dir: &Path, args: &[&str], clock: Option<FakeClock>) -> Self {
        let options = quotabell_testbed::ServerOptions {
            args: args.iter().map(|s| s.to_string()).collect(),
            rust_log: Some("warn".into()),
            clock,
            ..Default::default()
        };
        Self(
            quotabell_testbed::Backend::launch(
                &bin("quotabell-server"),
                &dir.join("server.db"),
                options,
            )
            .unwrap_or_else(|e| panic!("{e}")),
        )
    }

    /// One instance on any `--db` value (a PostgreSQL URL), its log in `log_dir`.
    pub fn start_at(db: &str, log_dir: &Path, args: &[&str]) -> Self {
        let options = quotabell_testbed::ServerOptions {
            args: args.iter().map(|s| s.to_string()).collect(),
            rust_log: Some("warn".into()),
            ..Default::default()
        };
        Self(
            quotabell_testbed::Backend::launch_at(
                &bin("quotabell-server"),
                db.as_ref(),
                log_dir,
                options,
            )
            .unwrap_or_else(|e| panic!("{e}")),
        )
    }

    pub fn restart(&mut self) {
        self.0.restart().unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn cli(&self, args: &[&str]) -> String {
        self.0.cli(args).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn add_user(&self, email: &str, plan: &str) -> String {
        self.0
            .add_user(email, plan)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Deref for Backend {
    type Target = quotabell_testbed::Backend;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Backend {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// The engine's command line in one profile directory, inside a desktop session.
pub struct Engine<'a> {
    pub desktop: &'a Desktop,
    pub data: PathBuf,
    watch: Option<Watch>,
    pub watch_args: Vec<String>,
    /// The `quotabell` binary: this build's, or another release's (the migration fixture).
    pub bin: PathBuf,
}

impl<'a> Engine<'a> {
    pub fn new(desktop: &'a Desktop, data: &Path) -> Self {
        Self {
            desktop,
            data: data.to_owned(),
            watch: None,
            watch_args: vec!["--keepalive-secs".into(), "1".into()],
            bin: bin("quotabell"),
        }
    }

    fn profile(&self) -> Profile {
        Profile {
            bin: self.bin.clone(),
            dir: self.data.clone(),
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        self.profile().command(self.desktop, args)
    }

    /// Runs a subcommand to the end; returns (success, stdout, stderr).
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let ran = self
            .profile()
            .run(self.desktop, args, stdin)
            .unwrap_or_else(|e| panic!("{e}"));
        (ran.success, ran.stdout, ran.stderr)
    }

    pub fn login(&self, server: &str, token: &str) {
        self.profile()
            .login(self.desktop, server, token)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts `watch` in the background (logging at trace level to its log file).
    pub fn start_watch(&mut self) {
        self.kill9();
        let args: Vec<&str> = self.watch_args.iter().map(String::as_str).collect();
        let watch = self
            .profile()
            .watch(self.desktop, &args, Some("trace"))
            .unwrap_or_else(|e| panic!("{e}"));
        self.watch = Some(watch);
    }

    pub fn pid(&self) -> Option<u32> {
        self.watch.as_ref().map(|w| w.pid)
    }

    pub fn kill9(&mut self) {
        if let Some(mut w) = self.watch.take() {
            w.kill9();
        }
    }

    pub fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            quotabell_testbed::process::signal(pid, sig);
        }
    }

    pub fn status_json(&self) -> Value {
        let (ok, out, err) = self.run(&["status", "--json"], None);
        assert!(ok, "status failed: {err}");
        serde_json::from_str(&out).unwrap()
    }

    /// The cached event log as (id, type, data).
    pub fn events(&self) -> Vec<(String, String, Value)> {
        let (ok, out, err) = self.run(&["events", "--json"], None);
        assert!(ok, "events failed: {err}");
        out.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (
                    v["id"].as_str().unwrap().to_owned(),
                    v["type"].as_str().unwrap().to_owned(),
                    v["data"].clone(),
                )
            })
            .collect()
    }

    /// `watch`'s log (trace level) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("watch.stderr")).unwrap_or_default()
    }

    /// The last lines of `watch`'s log above DEBUG, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| !l.contains("TRACE") && !l.contains("DEBUG"))
            .collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The connection state and its detail, from `status --json`.
    pub fn connection(&self) -> (String, String) {
        let s = self.status_json();
        (
            s["connection"].as_str().unwrap_or("").to_owned(),
            s["connection_detail"].as_str().unwrap_or("").to_owned(),
        )
    }

    pub fn notifications(&self) -> Vec<Value> {
        let (ok, out, err) = self.run(&["notifications", "--json"], None);
        assert!(ok, "notifications failed: {err}");
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Engine<'_> {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The server's event log (id, type, data), over HTTP.
pub fn server_events(base: &str, token: &str) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/v1/events?limit=5000");
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let page = http_get(&url, token);
        for e in page["events"].as_array().unwrap() {
            out.push((
                e["id"].as_str().unwrap().to_owned(),
                e["type"].as_str().unwrap().to_owned(),
                e["data"].clone(),
            ));
        }
        if !page["has_more"].as_bool().unwrap_or(false) {
            return out;
        }
        after = out.last().map(|e| e.0.clone());
    }
}

/// A minimal blocking HTTP/1.1 client (tests post from plain threads).
pub fn http(
    method: &str,
    url: &str,
    token: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, Value)> {
    http_with(method, url, token, body, "")
}

/// `http` with extra header lines (each ending in CRLF).
pub fn http_with(
    method: &str,
    url: &str,
    token: &str,
    body: Option<&str>,
    headers: &str,
) -> std::io::Result<(u16, Value)> {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let json = resp
        .split("\r\n\r\n")
        .nth(1)
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    Ok((status, json))
}

pub fn http_get(url: &str, token: &str) -> Value {
    let (status, v) = http("GET", url, token, None).expect("GET");
    assert_eq!(status, 200, "GET {url}: {v}");
    v
}

/// Posts build `n` of `app`; `Err` when the backend is unreachable (being restarted, say).
pub fn post_build(base: &str, token: &str, app: &str, n: usize) -> std::io::Result<u16> {
    post_build_with(base, token, app, n, "")
}

/// Posts build `n` of `app` under `Idempotency-Key: key`, so that it can be sent again after a
/// lost answer without counting twice.
pub fn post_build_keyed(
    base: &str,
    token: &str,
    app: &str,
    n: usize,
    key: &str,
) -> std::io::Result<u16> {
    post_build_with(base, token, app, n, &format!("Idempotency-Key: {key}\r\n"))
}

fn post_build_with(
    base: &str,
    token: &str,
    app: &str,
    n: usize,
    headers: &str,
) -> std::io::Result<u16> {
    // A commit id that looks like one (distinct leading digits), as screenshots show it.
    let commit = format!("{:08x}{n:032x}", (n as u32).wrapping_mul(2_654_435_761));
    let body = format!(r#"{{"app":"{app}","version":"1.0.{n}","commit":"{commit}"}}"#);
    let url = format!("{base}/api/v1/builds");
    http_with("POST", &url, token, Some(&body), headers).map(|r| r.0)
}

/// Waits until the engine's cached event log equals the server's, then checks it has no
/// duplicate ids; on timeout it shows the first difference and the engine's log tail.
pub fn engine_matches_server(engine: &Engine<'_>, backend: &Backend, token: &str) {
    engine_matches_server_at(engine, &backend.url(), token);
}

/// `engine_matches_server` for the server behind `base`.
pub fn engine_matches_server_at(engine: &Engine<'_>, base: &str, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (local, server) = (engine.events(), server_events(base, token));
        if local == server {
            break;
        }
        if Instant::now() > deadline {
            let first = local.iter().zip(&server).position(|(a, b)| a != b);
            let log = std::fs::read_to_string(engine.data.join("watch.stderr")).unwrap_or_default();
            let tail: Vec<&str> = log
                .lines()
                .filter(|l| !l.contains("TRACE") && !l.contains("DEBUG"))
                .collect();
            panic!(
                "local log ({}) differs from the server's ({}) first at {first:?}: {:?} vs {:?}\nengine log:\n{}",
                local.len(),
                server.len(),
                first.map(|i| &local[i]),
                first.map(|i| &server[i]),
                tail[tail.len().saturating_sub(40)..].join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let local = engine.events();
    let mut ids: Vec<&str> = local.iter().map(|e| e.0.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), local.len(), "no duplicate ids");
}

/// The titles of the Free plan's two build crossings, as the engine words them.
pub const BUILDS_80: &str = "Builds at 80%";
pub const BUILDS_100: &str = "Builds limit reached";

/// Each of the two build crossings reached the daemon exactly once.
pub fn each_crossing_shown_once(desktop: &Desktop) {
    for text in [BUILDS_80, BUILDS_100] {
        assert_eq!(
            desktop.count_mentions(text),
            1,
            "{text}: {:#?}",
            desktop.notifications()
        );
    }
}

/// Turns off rejected-build notifications (soak tests may post past the limit).
pub fn quiet_rejections(engine: &Engine<'_>) {
    let (ok, _, err) = engine.run(&["settings", "--notify-rejected", "false"], None);
    assert!(ok, "{err}");
}

/// A live process's peak resident memory (VmHWM) in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    quotabell_testbed::process::Memory::of(pid)
        .expect("VmHWM in /proc/PID/status")
        .hwm_kib
        * 1024
}

/// What a notification daemon displays for a body in the markup subset: entities decoded.
pub fn unescape_markup(body: &str) -> String {
    body.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}
