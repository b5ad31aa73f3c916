//! Faults on the wire: a proxy that cuts and stalls connections
//! between the engine and the real backend, and a scripted server for each way a stream
//! answer can be wrong. Timings use keepalive 0.3 s (watchdog 0.75 s) and a backoff capped at
//! 0.5 s; bounds are generous for a loaded machine but far from what a broken engine does.

use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::proxy::Proxy;
use crate::scripted::{Request, Scripted, StreamReply};
use crate::support::*;

/// The keepalive both sides use, in seconds; the engine's watchdog is 2.5 times this.
const KEEPALIVE: f64 = 0.3;
const WATCH_ARGS: [&str; 4] = ["--keepalive-secs", "0.3", "--max-backoff-secs", "0.5"];
const SERVER_ARGS: [&str; 4] = ["--keepalive-secs", "0.3", "--retry-ms", "100"];

// ---- helpers ------------------------------------------------------------------------------

fn engine_log(data: &Path) -> String {
    std::fs::read_to_string(data.join("state/logs/engine.log")).unwrap_or_default()
}

/// The engine's log without the TRACE/DEBUG noise, for failure messages.
fn log_tail(data: &Path) -> String {
    let log = engine_log(data);
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains("TRACE") && !l.contains("DEBUG"))
        .collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// `quotabell watch` with the fast test timings, as a child this test holds (for its exit
/// code and its memory); logs at trace level like `Engine::start_watch`.
struct Watch {
    child: Child,
}

impl Watch {
    fn start(engine: &Engine<'_>) -> Self {
        let log = std::fs::File::create(engine.data.join("watch.stderr")).unwrap();
        let child = engine
            .cmd(&["watch"])
            .args(WATCH_ARGS)
            .env("RUST_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Self { child }
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(s) = self.exited() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Peak resident memory (VmHWM) in bytes.
    fn peak_rss(&self) -> u64 {
        peak_rss(self.child.id())
    }

    /// SIGTERM, as a desktop session ending would send; waits for the exit.
    fn terminate(&mut self) -> ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.wait_exit(Duration::from_secs(10))
            .expect("watch exits on SIGTERM")
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A profile signed in to a scripted server (through the real keychain).
fn signed_in<'a>(desktop: &'a Desktop, dir: &Path, server: &Scripted) -> Engine<'a> {
    let engine = Engine::new(desktop, &dir.join("profile"));
    engine.login(&server.url(), "qb_scripted_token");
    engine
}

fn status(engine: &Engine<'_>) -> (String, String) {
    let s = engine.status_json();
    (
        s["connection"].as_str().unwrap_or("").to_owned(),
        s["connection_detail"].as_str().unwrap_or("").to_owned(),
    )
}

fn wait_for_status(
    engine: &Engine<'_>,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&str, &str) -> bool,
) -> (String, String) {
    let start = Instant::now();
    loop {
        let (c, d) = status(engine);
        if ok(&c, &d) {
            return (c, d);
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}; status is {c:?} ({d:?})\n{}",
            log_tail(&engine.data)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stream_times(server: &Scripted) -> Vec<Instant> {
    server.stream_requests().iter().map(|r| r.at).collect()
}

/// Stops `watch`, starts it again and checks where it resumes: the catch-up asks for events
/// after `cursor` and the stream is opened with `Last-Event-ID: cursor`.
fn assert_resumes_after(
    engine: &Engine<'_>,
    server: &Scripted,
    watch: &mut Watch,
    cursor: &str,
) -> Watch {
    assert!(watch.terminate().success());
    let before = server.requests().len();
    let restarted = Watch::start(engine);
    wait_until(
        "the restarted engine's stream",
        Duration::from_secs(15),
        || server.requests()[before..].iter().any(Request::is_stream),
    );
    let requests = server.requests()[before..].to_vec();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    let after = format!("after={cursor}");
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("/api/v1/events?") && p.split(['?', '&']).any(|kv| kv == after)),
        "catch-up resumes after {cursor}: {paths:?}"
    );
    let stream = requests.iter().find(|r| r.is_stream()).unwrap();
    assert_eq!(
        stream.header("last-event-id"),
        Some(cursor),
        "the stream resumes after {cursor}"
    );
    restarted
}

// ---- the proxy between the engine and the real backend ------------------------------------

/// The stream is cut in the middle of events again and again while builds
/// arrive; in the end the local log is the server's, and each threshold is notified once.
#[test]
fn stream_cut_mid_event_again_and_again_loses_and_repeats_nothing() {
    let desktop = Desktop::start();
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start(dir.path(), &SERVER_ARGS);
    let token = backend.add_user("cuts@example.com", "free");
    let proxy = Proxy::start(&backend.addr);
    let mut engine = Engine::new(&desktop, &dir.path().join("profile"));
    engine.watch_args = WATCH_ARGS.iter().map(|s| s.to_string()).collect();
    engine.login(&proxy.url(), &token);
    quiet_rejections(&engine);
    engine.start_watch();
    wait_for_status(&engine, "connected", Duration::from_secs(15), |c, _| {
        c == "connected"
    });

    // Builds go straight to the backend; only the engine's traffic passes the proxy.
    let done = Arc::new(AtomicBool::new(false));
    let poster = {
        let (base, token, done) = (backend.url(), token.clone(), done.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            loop {
                match post_build(&base, &token, "web", n) {
                    Ok(201) => n += 1,
                    Ok(402) => break,
                    other => panic!("post failed: {other:?}"),
                }
                std::thread::sleep(Duration::from_millis(40));
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    // Each stream connection ends after its own 250 bytes to 2 KB (the response head is ~190):
    // nearly always inside an event (one is ~150–250 bytes and ends in a 2-byte blank line).
    proxy.cut_streams_after_bytes(250..=2000);
    poster.join().unwrap();
    assert!(done.load(Ordering::SeqCst));
    proxy.no_cuts();
    let cuts = proxy.cut_tails();
    // Cuts that delivered the start of an event (its id) but not its end: the engine must
    // drop that part, not store it nor move its cursor to that id.
    let mid_event = cuts
        .iter()
        .filter(|tail| {
            let text = String::from_utf8_lossy(tail);
            let after_last_event = text.rsplit("\n\n").next().unwrap_or("");
            after_last_event.contains("id: ")
        })
        .count();
    assert!(
        mid_event >= 5,
        "the proxy cut {} connections, {mid_event} of them inside an event",
        cuts.len()
    );

    engine_matches_server(&engine, &backend, &token);
    let local = engine.events();
    assert!(local.len() > 200, "{} events", local.len());
    assert!(
        local.iter().all(|(_, _, data)| data.is_object()),
        "no event was stored from a partial payload"
    );
    wait_until("the limit notification", Duration::from_secs(20), || {
        desktop.count_mentions(BUILDS_100) >= 1
    });
    std::thread::sleep(Duration::from_secs(2));
    each_crossing_shown_once(&desktop);
    eprintln!(
        "{} cuts ({mid_event} inside an event) over {} proxied connections",
        cuts.len(),
        proxy.connections()
    );
}

/// A connection that goes silent (open, but no bytes: not even keepalives) is
/// given up within 2.5 keepalive intervals; once the network is back, events flow again.
#[test]
fn stalled_stream_is_abandoned_within_the_watchdog_and_recovers() {
    let desktop = Desktop::start();
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start(dir.path(), &SERVER_ARGS);
    let token = backend.add_user("stall@example.com", "free");
    let proxy = Proxy::start(&backend.addr);
    let mut engine = Engine::new(&desktop, &dir.path().join("profile"));
    engine.watch_args = WATCH_ARGS.iter().map(|s| s.to_string()).collect();
    engine.login(&proxy.url(), &token);
    engine.start_watch();
    for n in 0..3 {
        assert_eq!(post_build(&backend.url(), &token, "web", n).unwrap(), 201);
    }
    engine_matches_server(&engine, &backend, &token);
    wait_for_status(&engine, "connected", Duration::from_secs(15), |c, _| {
        c == "connected"
    });
    // Idle: only keepalives for a while, and the engine stays on its connection.
    let idle_from = proxy.connections();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(status(&engine).0, "connected");
    assert_eq!(
        proxy.connections(),
        idle_from,
        "keepalives keep an idle stream alive"
    );

    let before = proxy.connections();
    proxy.stall();
    let stalled_at = Instant::now();
    let bound = Duration::from_secs_f64(2.5 * KEEPALIVE + 1.0);
    let left_after = loop {
        let (c, _) = status(&engine);
        if c != "connected" || proxy.connections() > before {
            break stalled_at.elapsed();
        }
        assert!(
            stalled_at.elapsed() < Duration::from_secs(10),
            "the engine still thinks it is connected 10 s into a stall\n{}",
            log_tail(&engine.data)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        left_after <= bound,
        "the stall was noticed after {left_after:?}, later than 2.5 × keepalive + 1 s = {bound:?}"
    );
    assert!(
        engine_log(&engine.data).contains("the connection is stalled"),
        "the watchdog ended it:\n{}",
        log_tail(&engine.data)
    );

    std::thread::sleep(Duration::from_millis(500));
    proxy.resume();
    for n in 3..8 {
        assert_eq!(post_build(&backend.url(), &token, "web", n).unwrap(), 201);
    }
    engine_matches_server(&engine, &backend, &token);
    wait_for_status(
        &engine,
        "connected again",
        Duration::from_secs(15),
        |c, _| c == "connected",
    );
    assert!(
        proxy.connections() > before,
        "the stream was reopened on a new connection"
    );
    eprintln!("stall noticed after {left_after:?}");
}

// ---- a scripted server, one stream answer per case -----------------------------------------

/// 401 on the stream: signed out, `watch` exits with code 3, no retry storm.
#[test]
fn stream_401_signs_out_and_exits_3_without_retrying() {
    let desktop = Desktop::start();
    let dir = tempfile::tempdir().unwrap();
    let server = Scripted::start(vec![StreamReply::status(
        "HTTP/1.1 401 Unauthorized",
        &[
            ("Content-Type", "application/json"),
            ("WWW-Authenticate", "Bearer realm=\"quotabell\""),
        ],
        r#"{"error":{"code":"unauthorized","message":"unknown or revoked token"}}"#,
    )]);
    let engine = signed_in(&desktop, dir.path(), &server);
    let mut watch = Watch::start(&engine);
    let code = watch
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("watch did not exit\n{}", log_tail(&engine.data)));
    assert_eq!(code.code(), Some(3), "{}", log_tail(&engine.data));
    let (c, d) = status(&engine);
    assert_eq!(c, "signed_out", "{d}");
    std::thread::sleep(Duration::from_secs(1));
    let streams = server.stream_requests();
    assert!(
        (1..=2).contains(&streams.len()),
        "{} stream requests",
        streams.len()
    );
    assert_eq!(
        streams[0].header("authorization"),
        Some("Bearer qb_scripted_token")
    );
}

/// 204 on the stream: the server asks clients not to stream, and the engine stops asking.
#[test]
fn stream_204_stops_streaming() {
    let desktop = Desktop::start();
    let dir = tempfile::tempdir().unwrap();
    let server = Scripted::start(vec![StreamReply::status(
        "HTTP/1.1 204 No Content",
        &[],
        "",
    )]);
    let engine = signed_in(&desktop, dir.path(), &server);
    let mut watch = Watch::start(&engine);
    wait_for_status(
        &engine,
        "stream_stopped",
        Duration::from_secs(15),
        |c, _| c == "stream_stopped",
    );
    let first = server.stream_requests().len();
    assert_eq!(first, 1);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        server.stream_requests().len(),
        1,
        "no stream request after the 204"
    );
    assert!(watch.exited().is_none(), "the engine keeps running");
    assert_eq!(status(&engine).0, "stream_stopped");
}

/// 200 with `text/html`: not a stream. The reason is shown, and reconnects back off.
#[test]
fn stream_with_wrong_content_type_is_reported_and_retried_with_backoff() {
    let desktop = Desktop::start();
    let dir = tempfile::tempdir().unwrap();
    let page = "<html><body>Sign in to the captive portal</body></html>\n";
    let server = Scripted::start(vec![StreamReply::status(
        "HTTP/1.1 200 OK",
        &[("Content-Type", "text/html; charset=utf-8")],
        page,
    )]);
    let engine = signed_in(&desktop, dir.path(), &server);
    let mut watch = Watch::start(&engine);
    wait_until("the first stream request", Duration::from_secs(15), || {
        !server.stream_requests().is_empty()
    });
    let t0 = stream_times(&server)[0];
    let (_, detail) = wait_for_status(
        &engine,
        "the Content-Type in the connection detail",
        Duration::from_secs(10),
        |_, d| d.contains("text/html"),
    );
    assert!(detail.contains("Content-Type"), "{detail}");
    std::thread::sleep((t0 + Duration::from_secs(3)).saturating_duration_since(Instant::now()));
    let in_3s = stream_times(&server)
        .iter()
        .filter(|t| t.duration_since(t0) <= Duration::from_secs(3))
        .count();
    // A loop without backoff makes hundreds of requests in 3 s; with a backoff of at most
    // 0.5 s (plus a catch-up each time) there are at most ~10.
    assert!(
        (2..=10).contains(&in_3s),
        "{in_3s} stream requests in the first 3 s"
    );
    assert!(watch.exited().is_none(), "the engine keeps running");
    let (c, d) = status(&engine);
    assert!(d.contains("text/html"), "{c}: {d}");
}

/// 429 with `Retry-After: 2`: the next stream request waits for it.
#[test]
fn stream_429_retry_after_is_honoured() {
    let desktop = Desktop::start();
    let dir = tempfile::tempdir().unwrap();
    let server = Scripted::start(vec![
        StreamReply::status(
            "HTTP/1.1 429 Too Many Requests",
            &[("Content-Type", "application/json"), ("Retry-After", "2")],
            r#"{"error":{"code":"rate_limited","message":"slow down"}}"#,
        ),
        StreamReply::sse("retry: 100\n\n"),
    ]);
    let engine = signed_in(&desktop, dir.path(), &server);
    let _watch = Watch::start(&engine);
    wait_until("a second stream request", Duration::from_secs(15), || {
        server.stream_requests().len() >= 2
    });
    let t = stream_times(&server);
    let gap = t[1].duration_since(t[0]);
    assert!(
        gap >= Duration::from_secs(2),
        "reconnected {gap:?} after a 429 with Retry-After: 2"
    );
    assert!(
        gap <= Duration::from_millis(3500),
        "reconnected only {gap:?} after a 429 with Retry-After: 2"
    );
    wait_for_status(&engine, "connected", Duration::from_secs(10), |c, _| {
        c == "connected"
    });
}

/// An event of 1.5 MiB, then a normal one: the big one becomes a marker (so the cursor moves
/// past it), the normal one is stored and notified, memory stays small, the engine runs on.
#[test]
fn oversized_event_becomes_a_marker_and_memory_stays_bounded() {
    let desktop = Desktop::start();
    let dir = tempfile::tempdir().unwrap();
    let mut body =
        b"retry: 100\n\nid: 1\nevent: notice\ndata: {\"title\":\"Huge\",\"body\":\"".to_vec();
    body.extend(std::iter::repeat_n(b'x', 1536 * 1024));
    body.extend_from_slice(b"\",\"severity\":\"info\"}\n\n");
    body.extend_from_slice(
        b"id: 2\nevent: notice\ndata: {\"title\":\"Small\",\"body\":\"after the big one\",\"severity\":\"info\"}\n\n",
    );
    let server = Scripted::start(vec![StreamReply::sse(body)]);
    let engine = signed_in(&desktop, dir.path(), &server);
    let mut watch = Watch::start(&engine);
    wait_until("two events stored", Duration::from_secs(15), || {
        engine.events().len() >= 2
    });
    let events = engine.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        (events[0].0.as_str(), events[0].1.as_str()),
        ("1", "quotabell.oversized")
    );
    let bytes = events[0].2["bytes"].as_u64().unwrap_or(0);
    assert!(bytes > 1536 * 1024, "the marker records the size: {bytes}");
    assert_eq!(
        events[1],
        (
            "2".to_owned(),
            "notice".to_owned(),
            serde_json::json!({"title":"Small","body":"after the big one","severity":"info"})
        )
    );
    assert!(
        engine_log(&engine.data).contains("over the size limit"),
        "{}",
        log_tail(&engine.data)
    );
    wait_until("the small notice shown", Duration::from_secs(10), || {
        desktop.count_mentions("after the big one") == 1
    });
    assert_eq!(
        desktop.count_mentions("Huge"),
        0,
        "the dropped event is not shown"
    );
    assert!(watch.exited().is_none(), "the engine keeps running");
    assert_eq!(status(&engine).0, "connected");
    assert_eq!(server.stream_requests().len(), 1, "no reconnect");
    let peak = watch.peak_rss();
    assert!(
        peak < 60 * 1024 * 1024,
        "peak RSS {} MiB",
        peak / (1024 * 1024)
    );
    eprintln!("peak RSS {} KiB", peak / 1024);
    let _watch = assert_resumes_after(&engine, &server, &mut watch, "2");
}

/// `data: {not json` with an id, then a valid event: both stored (the first with its parse
/// error, data kept as text), the cursor past both, the connection kept.
#[test]
fn invalid_json_payload_is_recorded_and_skipped() {
    let desktop = Desktop::start();
    let dir = tempfile::tempdir().unwrap();
    let server = Scripted::start(vec![StreamReply::sse(
        "retry: 100\n\nid: 1\nevent: notice\ndata: {not json\n\n\
         id: 2\nevent: notice\ndata: {\"title\":\"Valid\",\"body\":\"after the broken one\",\"severity\":\"info\"}\n\n",
    )]);
    let engine = signed_in(&desktop, dir.path(), &server);
    let mut watch = Watch::start(&engine);
    wait_until("two events stored", Duration::from_secs(15), || {
        engine.events().len() >= 2
    });
    let events = engine.events();
    assert_eq!(
        events,
        vec![
            (
                "1".to_owned(),
                "notice".to_owned(),
                Value::String("{not json".into())
            ),
            (
                "2".to_owned(),
                "notice".to_owned(),
                serde_json::json!({"title":"Valid","body":"after the broken one","severity":"info"})
            ),
        ]
    );
    assert!(
        engine_log(&engine.data).contains("event payload is not JSON"),
        "{}",
        log_tail(&engine.data)
    );
    wait_until("the valid notice shown", Duration::from_secs(10), || {
        desktop.count_mentions("after the broken one") == 1
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        desktop.notifications().len(),
        1,
        "{:#?}",
        desktop.notifications()
    );
    assert!(watch.exited().is_none(), "the engine keeps running");
    assert_eq!(status(&engine).0, "connected");
    assert_eq!(server.stream_requests().len(), 1, "no reconnect");
    let _watch = assert_resumes_after(&engine, &server, &mut watch, "2");
}

/// A redirect of the stream to another origin: the token never goes there; the engine
/// reports the error and keeps running. (Also run for 301 and 308 by `conformance`.)
pub(crate) fn cross_origin_redirect(status_line: &str) {
    let desktop = Desktop::start();
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = Scripted::start(vec![StreamReply::sse("retry: 100\n\n")]);
    let location = format!("{}/api/v1/stream", elsewhere.url());
    let server = Scripted::start(vec![StreamReply::status(
        status_line,
        &[("Location", &location)],
        "",
    )]);
    let engine = signed_in(&desktop, dir.path(), &server);
    let mut watch = Watch::start(&engine);
    wait_until("the redirect reported", Duration::from_secs(15), || {
        engine_log(&engine.data).contains("redirected to another origin")
    });
    let (_, detail) = wait_for_status(
        &engine,
        "the redirect in the connection detail",
        Duration::from_secs(10),
        |_, d| d.contains("another origin"),
    );
    assert!(detail.contains(&elsewhere.url()), "{detail}");
    // Let it retry a few times.
    std::thread::sleep(Duration::from_secs(2));
    assert!(server.stream_requests().len() >= 2, "it keeps trying");
    elsewhere.assert_never_sent_a_token();
    eprintln!(
        "{status_line}: the other origin got {} requests",
        elsewhere.requests().len()
    );
    assert!(watch.exited().is_none(), "the engine keeps running");
    let (c, d) = status(&engine);
    assert!(d.contains("another origin"), "still reported: {c}: {d}");
}

#[test]
fn stream_307_to_another_origin_never_carries_the_token() {
    cross_origin_redirect("HTTP/1.1 307 Temporary Redirect");
}

#[test]
fn stream_302_to_another_origin_never_carries_the_token() {
    cross_origin_redirect("HTTP/1.1 302 Found");
}
