//! A small WebDriver client for the desktop app, through `tauri-driver` (which starts
//! WebKitWebDriver and maps `tauri:options` to `webkitgtk:browserOptions`).
//!
//! How the driver reaches our web view, which lives in the *window* process, a child of the
//! process WebKitWebDriver launches: WebKitWebDriver starts the "browser" (our tray process) with
//! only the argv given in `tauri:options.args` — no extra flags — and with
//! `WEBKIT_INSPECTOR_SERVER=127.0.0.1:<port>` in its environment; tauri-driver adds
//! `TAURI_WEBVIEW_AUTOMATION=true`. The tray process never creates a web view, so neither
//! variable does anything there; the window process inherits both, WebKitGTK starts its remote
//! inspector server on that port when the web context is created, and tauri-runtime-wry marks
//! the first web context as allowing automation and hands WebKitWebDriver the existing web view
//! for its session. So the session drives the real window in the real window process. A session
//! lasts as long as that window process: a window reopened later (a new process) is not
//! reattached.
//!
//! The protocol subset is tiny, so it is spoken here over `std::net` (JSON over HTTP/1.1) rather
//! than through a client crate.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Desktop, descendants};

/// The key W3C WebDriver uses for element references.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A free TCP port on loopback (bound and released; the window for a clash is tiny).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `tauri-driver` from PATH or `~/.cargo/bin` (where `cargo install` puts it).
pub fn tauri_driver_path() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin")));
    for dir in candidates {
        let p = dir.join("tauri-driver");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "tauri-driver is missing: `cargo install tauri-driver --version '^2' --locked` \
         (scripts/test does), and apt `webkit2gtk-driver` for WebKitWebDriver"
    );
}

/// A running `tauri-driver` (and its WebKitWebDriver) inside a [`Desktop`] session: the app it
/// launches inherits the session's bus and keyring, plus `envs`.
pub struct TauriDriver {
    port: u16,
    child: Option<Child>,
    pub log: PathBuf,
}

impl TauriDriver {
    pub fn start(desktop: &Desktop, envs: &[(&str, &OsStr)], log: &Path) -> Self {
        let (port, native) = (free_port(), free_port());
        let err = std::fs::File::create(log).unwrap();
        let mut cmd = desktop.command(tauri_driver_path());
        cmd.arg("--port")
            .arg(port.to_string())
            .arg("--native-port")
            .arg(native.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // The app's own log (stderr) goes here too: WebKitWebDriver passes it through.
            .stderr(err);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("tauri-driver");
        let me = Self {
            port,
            child: Some(child),
            log: log.to_owned(),
        };
        let start = Instant::now();
        loop {
            if let Ok((200, v)) = request(port, "GET", "/status", None)
                && v["value"]["ready"].as_bool() == Some(true)
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "tauri-driver did not become ready on port {port}: {}",
                me.log_tail(20)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        me
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Starts the app (`application` with `args`) and opens a session on its web view.
    pub fn session(&self, application: &Path, args: &[&str]) -> Session {
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "tauri:options": { "application": application, "args": args }
                }
            }
        });
        let (status, v) = request(self.port, "POST", "/session", Some(&caps))
            .unwrap_or_else(|e| panic!("new session: {e}\n{}", self.log_tail(40)));
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("new session failed ({status}): {v}\n{}", self.log_tail(40)));
        Session {
            port: self.port,
            id: id.to_owned(),
        }
    }

    /// The last `n` lines of the driver's and the app's log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for TauriDriver {
    /// Ends everything it started, deepest first: the app's processes (tray, window, WebKit's),
    /// WebKitWebDriver, then tauri-driver itself. By pid, from /proc: only our own descendants.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- tauri-driver / app log ({}) ---\n{}",
                self.log.display(),
                self.log_tail(60)
            );
        }
        if let Some(mut c) = self.child.take() {
            let mut all = descendants(c.id());
            all.reverse();
            for pid in all {
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A WebDriver session.
pub struct Session {
    port: u16,
    pub id: String,
}

/// A WebDriver error: the `error` code ("no such element", "stale element reference", ...).
#[derive(Debug)]
pub struct WdError {
    pub status: u16,
    pub error: String,
    pub message: String,
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.error, self.status, self.message)
    }
}

#[derive(Clone, Debug)]
pub struct Element(pub String);

impl Session {
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, WdError> {
        let path = format!("/session/{}{path}", self.id);
        let (status, v) =
            request(self.port, method, &path, body.as_ref()).map_err(|e| WdError {
                status: 0,
                error: "io".into(),
                message: e.to_string(),
            })?;
        if status == 200 {
            Ok(v["value"].clone())
        } else {
            Err(WdError {
                status,
                error: v["value"]["error"].as_str().unwrap_or("").to_owned(),
                message: v["value"]["message"].as_str().unwrap_or("").to_owned(),
            })
        }
    }

    fn must(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    /// The first element matching `css`, if any.
    pub fn find(&self, css: &str) -> Option<Element> {
        self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        )
        .ok()
        .and_then(|v| v[ELEMENT].as_str().map(|s| Element(s.to_owned())))
    }

    /// Waits for an element matching `css` that is displayed.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> Element {
        let start = Instant::now();
        loop {
            if let Some(e) = self.find(css)
                && self.displayed(&e)
            {
                return e;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {css}; the page says:\n{}",
                self.page_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn displayed(&self, e: &Element) -> bool {
        self.call("GET", &format!("/element/{}/displayed", e.0), None)
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }

    pub fn click(&self, e: &Element) {
        self.must("POST", &format!("/element/{}/click", e.0), Some(json!({})));
    }

    pub fn send_keys(&self, e: &Element, text: &str) {
        self.must(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({ "text": text })),
        );
    }

    pub fn text(&self, e: &Element) -> String {
        self.must("GET", &format!("/element/{}/text", e.0), None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Runs `script` (a function body) in the page.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.must(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Runs `script`; it finishes by calling its last argument.
    pub fn execute_async(&self, script: &str, args: Value) -> Value {
        self.must(
            "POST",
            "/execute/async",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// The rendered text of the first element matching `css`, or `None` if there is none.
    /// Read by script in one step, so views that re-render meanwhile cannot make it stale.
    pub fn text_of(&self, css: &str) -> Option<String> {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({
                "script": "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                "args": [css],
            })),
        )
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
    }

    /// The text of every element matching `css`.
    pub fn texts_of(&self, css: &str) -> Vec<String> {
        self.execute(
            "return Array.from(document.querySelectorAll(arguments[0]), e => e.textContent);",
            json!([css]),
        )
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
    }

    /// Whether an element matching `css` exists and is not hidden (itself or by an ancestor).
    pub fn visible(&self, css: &str) -> bool {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({
                "script": "const e = document.querySelector(arguments[0]); return !!e && !e.closest('[hidden]') && e.getClientRects().length > 0;",
                "args": [css],
            })),
        )
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
    }

    /// The whole page's visible text (for failure messages).
    pub fn page_text(&self) -> String {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": "return document.body ? document.body.innerText : ''", "args": []})),
        )
        .map(|v| v.as_str().unwrap_or("").to_owned())
        .unwrap_or_else(|e| format!("(cannot read the page: {e})"))
    }

    /// A PNG of the window's viewport, after the next two frames (so what was just rendered is
    /// painted).
    pub fn screenshot(&self) -> Vec<u8> {
        self.execute_async(
            "const done = arguments[arguments.length - 1]; requestAnimationFrame(() => requestAnimationFrame(() => done(true)));",
            json!([]),
        );
        let b64 = self.must("GET", "/screenshot", None);
        base64_decode(b64.as_str().expect("screenshot is base64"))
    }

    /// Ends the session; WebKitWebDriver then terminates the app it launched.
    pub fn delete(&self) -> Result<(), WdError> {
        self.call("DELETE", "", None).map(|_| ())
    }
}

/// One request to the WebDriver server on `port`; returns (status, JSON body).
///
/// Keep-alive on purpose, reading exactly the response's length: a `Connection: close` would
/// be forwarded by tauri-driver to WebKitWebDriver, which then closes the connection that
/// tauri-driver's pool may already be reusing for the next request (an empty reply).
fn request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let eof = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "reply cut short");
    let split = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(eof());
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let length = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    let chunked = head.contains("transfer-encoding: chunked");
    let mut content = raw.split_off(split + 4);
    loop {
        let complete = match length {
            Some(n) => content.len() >= n,
            None if chunked => content.windows(5).any(|w| w == b"0\r\n\r\n"),
            None => false,
        };
        if complete {
            break;
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            if length.is_none() && !chunked {
                break; // delimited by the end of the connection
            }
            return Err(eof());
        }
        content.extend_from_slice(&buf[..n]);
    }
    if chunked {
        content = dechunk(&content);
    }
    let v = serde_json::from_slice(&content).unwrap_or(Value::Null);
    Ok((status, v))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..eol])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
    out
}

fn base64_decode(s: &str) -> Vec<u8> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_and_dechunk() {
        assert_eq!(super::base64_decode("aGVsbG8gd29ybGQ="), b"hello world");
        assert_eq!(super::base64_decode("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
        assert_eq!(
            super::dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            b"hello world"
        );
    }
}
