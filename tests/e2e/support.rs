//! Real parts for end-to-end tests: the backend binary, the engine binary, and a private
//! desktop session (a D-Bus session bus with gnome-keyring's Secret Service and the dunst
//! notification daemon). Everything is per test, so tests run in parallel without seeing
//! each other's notifications or secrets. Needs an X display (Xvfb) for dunst: the test
//! command runs everything under `xvfb-run`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A binary of the workspace, next to this test binary's `deps/` directory.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test does)",
        path.display()
    );
    path
}

pub fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Held by each test that runs the desktop app: WebKit is heavy, and two or three of them at
/// once on a 2-core CI machine make every timeout in the run a gamble.
pub fn one_app_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SLOT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SLOT.lock().unwrap_or_else(|e| e.into_inner())
}

/// A private desktop session.
pub struct Desktop {
    pub dir: tempfile::TempDir,
    pub bus: String,
    children: Vec<Child>,
}

const DUNSTRC: &str = "[global]
    stack_duplicates = false
    history_length = 100000
    idle_threshold = 0
    sticky_history = yes
    notification_limit = 0
[urgency_low]
    timeout = 1
[urgency_normal]
    timeout = 1
[urgency_critical]
    timeout = 1
";

impl Desktop {
    /// Notifications close after a second, so the history fills quickly.
    pub fn start() -> Self {
        Self::start_with(DUNSTRC)
    }

    /// Notifications stay on screen for a minute, so a test can act on them.
    pub fn start_lingering() -> Self {
        Self::start_with(&DUNSTRC.replace("timeout = 1", "timeout = 60"))
    }

    fn start_with(dunstrc: &str) -> Self {
        assert!(
            std::env::var_os("DISPLAY").is_some(),
            "no X display: run the tests under xvfb-run (scripts/test does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".local/share")).unwrap();
        let mut bus_daemon = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .arg(format!(
                "--address=unix:path={}",
                dir.path().join("bus").display()
            ))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon");
        let mut line = String::new();
        BufReader::new(bus_daemon.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let bus = line.trim().to_owned();
        let mut me = Self {
            dir,
            bus,
            children: vec![bus_daemon],
        };

        let mut keyring = me
            .command("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gnome-keyring-daemon");
        // The password must not be empty; closing stdin ends it.
        keyring.stdin.take().unwrap().write_all(b"pw").unwrap();
        me.children.push(keyring);

        let rc = me.dir.path().join("dunstrc");
        std::fs::write(&rc, dunstrc).unwrap();
        // Generous: under a full parallel test run on 2 cores, daemons start slowly.
        wait_until("org.freedesktop.secrets", Duration::from_secs(60), || {
            me.has_owner("org.freedesktop.secrets")
        });
        me.start_dunst(&rc);
        me
    }

    /// Starts dunst and waits until it owns org.freedesktop.Notifications. A dunst that exits
    /// or has not taken the name within 20 s is started again, up to three times: a CI run
    /// once saw two sessions started together whose dunst never took the name, so the daemon
    /// is given another chance and, if it still fails, its own words end the test.
    fn start_dunst(&mut self, rc: &Path) {
        const NAME: &str = "org.freedesktop.Notifications";
        let log = self.dir.path().join("dunst.log");
        for attempt in 1..=3 {
            let mut dunst = self
                .command("dunst")
                .arg("-config")
                .arg(rc)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("dunst");
            let start = Instant::now();
            let mut exited = None;
            while start.elapsed() < Duration::from_secs(20) {
                if self.has_owner(NAME) {
                    self.children.push(dunst);
                    return;
                }
                if let Ok(Some(status)) = dunst.try_wait() {
                    exited = Some(status);
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = dunst.kill();
            let _ = dunst.wait();
            eprintln!(
                "dunst attempt {attempt}: {} after {:?}; its log: {}",
                exited.map_or("no bus name".to_owned(), |s| format!("exited ({s})")),
                start.elapsed(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        panic!(
            "dunst never took {NAME}; its last log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// A command that runs inside this session (its bus, its keyring home).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        let home = self.dir.path().join("home");
        c.env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .env("HOME", &home)
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_RUNTIME_DIR", self.dir.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_STATE_HOME");
        c
    }

    fn has_owner(&self, name: &str) -> bool {
        self.command("dbus-send")
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
            ])
            .arg(format!("string:{name}"))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("boolean true"))
            .unwrap_or(false)
    }

    /// Every notification the daemon received so far: (summary, body), oldest first.
    pub fn notifications(&self) -> Vec<(String, String)> {
        // Displayed ones move to the history when closed.
        let _ = self.command("dunstctl").arg("close-all").output();
        let out = self
            .command("dunstctl")
            .arg("history")
            .output()
            .expect("dunstctl history");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let mut list: Vec<(i64, String, String)> = v["data"][0]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|n| {
                        (
                            n["id"]["data"].as_i64().unwrap_or(0),
                            n["summary"]["data"].as_str().unwrap_or("").to_owned(),
                            n["body"]["data"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        list.sort();
        list.into_iter().map(|(_, s, b)| (s, b)).collect()
    }

    /// How many notifications mention `text` in their summary or body.
    pub fn count_mentions(&self, text: &str) -> usize {
        self.notifications()
            .iter()
            .filter(|(s, b)| s.contains(text) || b.contains(text))
            .count()
    }

    /// The secret stored for a keychain key, read with libsecret's own tool.
    pub fn secret(&self, service: &str) -> String {
        let out = self
            .command("secret-tool")
            .args(["search", "--all", "service", service])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }
}

impl Drop for Desktop {
    fn drop(&mut self) {
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The reference backend on a fixed file; restartable on the same port.
pub struct Backend {
    pub db: PathBuf,
    pub addr: String,
    args: Vec<String>,
    child: Option<Child>,
}

impl Backend {
    pub fn start(dir: &Path, args: &[&str]) -> Self {
        let mut b = Self {
            db: dir.join("server.db"),
            addr: "127.0.0.1:0".into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        b.restart();
        b
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn restart(&mut self) {
        self.kill9();
        let spawn = |addr: &str| {
            let mut child = Command::new(bin("quotabell-server"))
                .args(["serve", "--listen", addr, "--db"])
                .arg(&self.db)
                .args(&self.args)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            (child, line)
        };
        // The port may still be in TIME_WAIT or briefly held: retry a few times.
        for _ in 0..50 {
            let (child, line) = spawn(&self.addr);
            if let Some(a) = line.trim().strip_prefix("listening on http://") {
                self.addr = a.to_owned();
                self.child = Some(child);
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("backend did not start on {}", self.addr);
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(bin("quotabell-server"))
            .args(args)
            .arg("--db")
            .arg(&self.db)
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

    pub fn add_user(&self, email: &str, plan: &str) -> String {
        self.cli(&["user", "add", "--email", email, "--plan", plan])
            .lines()
            .last()
            .unwrap()
            .to_owned()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The engine's command line in one profile directory, inside a desktop session.
pub struct Engine<'a> {
    pub desktop: &'a Desktop,
    pub data: PathBuf,
    child: Option<Child>,
    pub watch_args: Vec<String>,
}

impl<'a> Engine<'a> {
    pub fn new(desktop: &'a Desktop, data: &Path) -> Self {
        Self {
            desktop,
            data: data.to_owned(),
            child: None,
            watch_args: vec!["--keepalive-secs".into(), "1".into()],
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.desktop.command(bin("quotabell"));
        c.arg("--data-dir").arg(&self.data).args(args);
        c
    }

    /// Runs a subcommand to the end; returns (success, stdout, stderr).
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut c = self.cmd(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
        drop(input);
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn login(&self, server: &str, token: &str) {
        let (ok, out, err) = self.run(&["login", "--server", server], Some(&format!("{token}\n")));
        assert!(ok, "login failed: {out}{err}");
    }

    /// Starts `watch` in the background (logging at trace level to its log file).
    pub fn start_watch(&mut self) {
        self.kill9();
        let log = std::fs::File::create(self.data.join("watch.stderr")).unwrap();
        let child = self
            .cmd(&["watch"])
            .args(&self.watch_args)
            .env("RUST_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            unsafe { libc::kill(pid as i32, sig) };
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
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
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

/// Posts one build; `Err` when the backend is unreachable (being restarted, say).
pub fn post_build(base: &str, token: &str, app: &str, n: usize) -> std::io::Result<u16> {
    // A commit id that looks like one (distinct leading digits), as screenshots show it.
    let commit = format!("{:08x}{n:032x}", (n as u32).wrapping_mul(2_654_435_761));
    let body = format!(r#"{{"app":"{app}","version":"1.0.{n}","commit":"{commit}"}}"#);
    http("POST", &format!("{base}/api/v1/builds"), token, Some(&body)).map(|r| r.0)
}

/// Waits until the engine's cached event log equals the server's, then checks it has no
/// duplicate ids; on timeout it shows the first difference and the engine's log tail.
pub fn engine_matches_server(engine: &Engine<'_>, backend: &Backend, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (local, server) = (engine.events(), server_events(&backend.url(), token));
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

/// Turns off rejected-build notifications (soak tests may post past the limit).
pub fn quiet_rejections(engine: &Engine<'_>) {
    let (ok, _, err) = engine.run(&["settings", "--notify-rejected", "false"], None);
    assert!(ok, "{err}");
}

// ---- processes, from /proc ---------------------------------------------------------------

/// Every process below `pid` (children first-level first), from /proc.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(pp) = parent_of(p) {
                parents.push((p, pp));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(c, pp) in &parents {
            if pp == p && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

/// The parent pid of a live process (field 4 of /proc/<pid>/stat; the name may hold spaces).
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let state = f.next()?;
    if state == "Z" {
        return None;
    }
    f.next()?.parse().ok()
}

/// A live process's peak resident memory (VmHWM) in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib * 1024
}

/// A process's argv, from /proc (empty if it is gone).
pub fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
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
