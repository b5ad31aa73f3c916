//! SSE conformance: a scripted raw-bytes server (`scripted.rs`) drives the real
//! `quotabell` engine through the WHATWG event-stream rules, byte for byte and status by
//! status. Each case checks what the engine stored (`events --json`), where it resumes (the
//! `Last-Event-ID` of its reconnect), its connection state (`status --json`) and the headers the
//! servers saw.
//!
//! Cases covered in `faults.rs` and not repeated here: 204 (`stream_204_stops_streaming`),
//! a wrong Content-Type (`stream_with_wrong_content_type_is_reported_and_retried_with_backoff`),
//! 302 and 307 to another origin (`stream_302_…`, `stream_307_to_another_origin_never_carries_the_token`;
//! 301 and 308 run the same check below), an event of 1.5 MiB
//! (`oversized_event_becomes_a_marker_and_memory_stays_bounded`), invalid JSON, 401, 429 with
//! `Retry-After`, cuts mid-event through a proxy, and a stall.
//!
//! Where Quotabell departs from the rules on purpose: the reconnect's `Last-Event-ID` is the
//! newest event the engine *stored* (store, then advance), so an id-only block sets the id of
//! the events after it on that connection but is not itself committed; an event whose `id`
//! line was ignored (NUL) inherits the previous id and is then a duplicate of that event.
//!
//! Timings: keepalive 0.3 s (watchdog 0.75 s), backoff capped at 0.5 s, and each first stream
//! answer closes, so the reconnect shows where the engine resumes.

use std::time::Duration;

use serde_json::{Value, json};

use crate::scripted::{Scripted, StreamReply};
use crate::support::*;

const TOKEN: &str = "qb_conformance_token";
const FAST: [&str; 4] = ["--keepalive-secs", "0.3", "--max-backoff-secs", "0.5"];
const WAIT: Duration = Duration::from_secs(10);

/// A signed-in engine following `server`, started with `args`.
fn watching<'a>(
    desktop: &'a Desktop,
    dir: &tempfile::TempDir,
    server: &Scripted,
    args: &[&str],
) -> Engine<'a> {
    let mut engine = Engine::new(desktop, &dir.path().join("profile"));
    engine.watch_args = args.iter().map(|s| s.to_string()).collect();
    engine.login(&server.url(), TOKEN);
    engine.start_watch();
    engine
}

fn s(text: &str) -> Value {
    Value::String(text.into())
}

/// Waits for the `n`-th stream request (1-based) and returns it.
fn nth_stream(engine: &Engine<'_>, server: &Scripted, n: usize) -> crate::scripted::Request {
    let start = std::time::Instant::now();
    loop {
        if let Some(r) = server.stream_requests().get(n - 1) {
            return r.clone();
        }
        assert!(
            start.elapsed() < WAIT,
            "no stream request #{n} after {WAIT:?}; {} so far\n{}",
            server.stream_requests().len(),
            engine.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_connected(engine: &Engine<'_>) {
    wait_until("the connected state", WAIT, || {
        engine.connection().0 == "connected"
    });
}

/// The first stream answer is `first` (then the connection closes); the second holds. Checks
/// that the engine stored exactly `stored`, resumed with `Last-Event-ID: resume`, never hit a
/// parser error, and is connected again.
fn one_connection(first: StreamReply, stored: &[(&str, &str, Value)], resume: &str) {
    let desktop = Desktop::start();
    let dir = tempfile::tempdir().unwrap();
    let server = Scripted::start(vec![first.closing(), StreamReply::sse("")]);
    let engine = watching(&desktop, &dir, &server, &FAST);
    let opened = nth_stream(&engine, &server, 1);
    assert_eq!(opened.header("last-event-id"), Some("0"));
    let reconnect = nth_stream(&engine, &server, 2);
    let expected: Vec<(String, String, Value)> = stored
        .iter()
        .map(|(i, k, d)| (i.to_string(), k.to_string(), d.clone()))
        .collect();
    assert_eq!(engine.events(), expected, "{}", engine.log_tail());
    assert_eq!(
        reconnect.header("last-event-id"),
        Some(resume),
        "where the reconnect resumes"
    );
    wait_connected(&engine);
    let log = engine.log();
    assert!(
        !log.contains("event stream error") && !log.contains("panicked"),
        "the first connection ended only by its end:\n{}",
        engine.log_tail()
    );
    assert!(log.contains("the stream ended"), "{}", engine.log_tail());
}

// ---- line ends ------------------------------------------------------------------------------

/// Each event ends its lines differently; the last mixes all three in one event.
const MIXED: &[u8] = b"id: 1\revent: t\rdata: \"cr\"\r\r\
id: 2\nevent: t\ndata: \"lf\"\n\n\
id: 3\r\nevent: t\r\ndata: \"crlf\"\r\n\r\n\
id: 4\revent: t\ndata: a\r\ndata: b\r\r\n";

fn mixed_stored() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        ("1", "t", s("cr")),
        ("2", "t", s("lf")),
        ("3", "t", s("crlf")),
        ("4", "t", s("a\nb")),
    ]
}

#[test]
fn line_ends_cr_lf_and_crlf() {
    one_connection(StreamReply::sse(MIXED), &mixed_stored(), "4");
}

/// A read ends after every CR (so a CRLF is split across reads) and inside some fields.
#[test]
fn line_ends_split_across_reads() {
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut from = 0;
    for (i, &b) in MIXED.iter().enumerate() {
        if b == b'\r' || (b == b':' && i % 2 == 0) {
            parts.push(&MIXED[from..=i]);
            from = i + 1;
        }
    }
    parts.push(&MIXED[from..]);
    assert!(parts.iter().any(|p| p.ends_with(b"\r")) && parts.len() > 12);
    let reply = StreamReply::sse("").in_parts(&parts, Duration::from_millis(15));
    one_connection(reply, &mixed_stored(), "4");
}

#[test]
fn one_byte_per_read() {
    let reply = StreamReply::sse(MIXED).bytes_per_write(1, Duration::from_millis(3));
    one_connection(reply, &mixed_stored(), "4");
}

// ---- fields ---------------------------------------------------------------------------------

/// The stream's first BOM (split across reads here) is stripped; a later one is part of the
/// field name, so its line is ignored.
#[test]
fn only_the_first_bom_is_stripped() {
    let reply = StreamReply::sse("").in_parts(
        &[
            b"\xEF\xBB",
            b"\xBFid: 1\nevent: t\ndata: \"first\"\n\n\
              id: 2\nevent: t\n\xEF\xBB\xBFdata: \"ignored\"\ndata: \"second\"\n\n\
              id: 3\nevent: t\ndata: \"third\"\n\xEF\xBB\xBFid: 9\n\n",
        ],
        Duration::from_millis(20),
    );
    one_connection(
        reply,
        &[
            ("1", "t", s("first")),
            ("2", "t", s("second")),
            ("3", "t", s("third")),
        ],
        "3",
    );
}

#[test]
fn comments_are_ignored() {
    one_connection(
        StreamReply::sse(
            ":\n\n: before any id\n\nid: 1\n: inside\nevent: t\n:data: \"no\"\ndata: \"yes\"\n: last\n\n\
             :id: 5\n\n",
        ),
        &[("1", "t", s("yes"))],
        "1",
    );
}

/// One leading space is dropped from a value, no more; a field name alone is an empty value.
#[test]
fn field_values_with_and_without_the_space() {
    one_connection(
        StreamReply::sse(
            "id: 1\nevent: t\ndata:no space\n\n\
             id: 2\nevent: t\ndata: one space\n\n\
             id: 3\nevent: t\ndata:  two spaces\n\n\
             id: 4\nevent: t\ndata\n\n\
             id:5\nevent:t\ndata:\"x\"\n\n",
        ),
        &[
            ("1", "t", s("no space")),
            ("2", "t", s("one space")),
            ("3", "t", s(" two spaces")),
            ("4", "t", s("")),
            ("5", "t", s("x")),
        ],
        "5",
    );
}

/// `data` lines join with LF; only the last LF is removed.
#[test]
fn multi_line_data_is_joined_with_lf() {
    one_connection(
        StreamReply::sse(
            "id: 1\nevent: t\ndata: {\"a\":\ndata: 1}\n\n\
             id: 2\nevent: t\ndata: x\ndata:\ndata: y\ndata:\n\n",
        ),
        &[("1", "t", json!({"a": 1})), ("2", "t", s("x\n\ny\n"))],
        "2",
    );
}

/// An `id` with NUL is ignored: the event keeps the previous id (so it is a duplicate), the
/// resume point stays, and a NUL id alone before any id does not end the connection.
#[test]
fn an_id_with_nul_is_ignored() {
    one_connection(
        StreamReply::sse(
            &b"id: 7\0\n\n\
               id: 1\nevent: t\ndata: \"one\"\n\n\
               id: 2\0x\nevent: t\ndata: \"two\"\n\n"[..],
        ),
        &[("1", "t", s("one"))],
        "1",
    );
}

/// An id-only block dispatches nothing; it sets the id the next event carries. The id of one
/// at the end is not committed: the engine resumes after what it stored.
#[test]
fn an_id_only_block_sets_the_id_and_dispatches_nothing() {
    one_connection(
        StreamReply::sse(
            "id: 1\nevent: t\ndata: \"one\"\n\n\
             id: 5\n\n\
             event: t\ndata: \"five\"\n\n\
             id: 6\n\n",
        ),
        &[("1", "t", s("one")), ("5", "t", s("five"))],
        "5",
    );
}

/// `retry` that is not all ASCII digits (or empty, or too big) is ignored: the valid one
/// before it still sets the floor of the reconnect delay.
#[test]
fn bogus_and_empty_retry_are_ignored() {
    let desktop = Desktop::start();
    let dir = tempfile::tempdir().unwrap();
    let first = StreamReply::sse("")
        .in_parts(
            &[
                b"retry: 1200\n\nretry: x\n\nretry:\n\nretry\n\nretry: -1\n\nretry: 1.5\n\n\
                  retry: 99999999999999999999999\n\n",
                b"id: 1\nretry: 0x\nevent: t\ndata: \"one\"\nretry: 1 0\n\n",
            ],
            Duration::from_millis(50),
        )
        .closing();
    let server = Scripted::start(vec![first, StreamReply::sse("")]);
    // A backoff cap above the hint, so the hint is the floor (1.2 s over a 1 s first ceiling).
    let args = ["--keepalive-secs", "0.3", "--max-backoff-secs", "3"];
    let engine = watching(&desktop, &dir, &server, &args);
    let first = nth_stream(&engine, &server, 1);
    let second = nth_stream(&engine, &server, 2);
    assert_eq!(engine.events(), vec![("1".into(), "t".into(), s("one"))]);
    assert_eq!(second.header("last-event-id"), Some("1"));
    let gap = second.at.duration_since(first.at);
    assert!(
        gap >= Duration::from_millis(1200),
        "reconnected after {gap:?}: a bogus retry replaced `retry: 1200`"
    );
    assert!(
        gap < Duration::from_secs(4),
        "reconnected only after {gap:?}"
    );
    wait_connected(&engine);
}

#[test]
fn unknown_fields_are_ignored() {
    one_connection(
        StreamReply::sse(
            "foo: bar\n\nfoo\n\nData: x\n\n\
             id: 1\nfoo: bar\nevent: t\nDATA: no\nbar\ndata: \"one\"\nid : 9\nevent : u\n\n",
        ),
        &[("1", "t", s("one"))],
        "1",
    );
}

/// An event cut off by the end of the stream (after a line end, or in a line) is discarded
/// and its id not committed.
#[test]
fn an_unterminated_event_at_the_end_is_discarded() {
    let desktop = Desktop::start();
    let dir = tempfile::tempdir().unwrap();
    let server = Scripted::start(vec![
        StreamReply::sse("id: 1\nevent: t\ndata: \"one\"\n\nid: 2\nevent: t\ndata: \"two\"\n")
            .closing(),
        StreamReply::sse("id: 3\nevent: t\ndata: \"three\"").closing(),
        StreamReply::sse(""),
    ]);
    let engine = watching(&desktop, &dir, &server, &FAST);
    assert_eq!(
        nth_stream(&engine, &server, 2).header("last-event-id"),
        Some("1")
    );
    assert_eq!(
        nth_stream(&engine, &server, 3).header("last-event-id"),
        Some("1")
    );
    assert_eq!(engine.events(), vec![("1".into(), "t".into(), s("one"))]);
    wait_connected(&engine);
}

/// Invalid UTF-8 is decoded to U+FFFD (WHATWG), in data, event types and field names alike:
/// the event is kept, the connection too (eventsource-client would fail it, every time).
#[test]
fn invalid_utf8_is_replaced_with_u_fffd() {
    one_connection(
        StreamReply::sse(
            &b"id: 1\nevent: t\ndata: \"caf\xC3\"\n\n\
               \xFF\xFEfoo: x\n\n\
               id: 2\nevent: t\xFF\ndata: \"ok \xF0\x9F\x94\x94\"\n\n"[..],
        ),
        &[("1", "t", s("caf\u{FFFD}")), ("2", "t\u{FFFD}", s("ok 🔔"))],
        "2",
    );
}

/// A 5 MiB event: the 1 MiB limit turns it into a marker with its id, the event after it is
/// stored, and the engine never holds the 5 MiB.
#[test]
fn an_event_of_5_mib_is_bounded() {
    let desktop = Desktop::start();
    let dir = tempfile::tempdir().unwrap();
    let mut body = b"id: 1\nevent: t\ndata: \"".to_vec();
    body.extend(std::iter::repeat_n(b'x', 5 * 1024 * 1024));
    body.extend_from_slice(b"\"\n\nid: 2\nevent: t\ndata: \"after\"\n\n");
    let server = Scripted::start(vec![StreamReply::sse(body).closing(), StreamReply::sse("")]);
    let engine = watching(&desktop, &dir, &server, &FAST);
    let reconnect = nth_stream(&engine, &server, 2);
    let events = engine.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        (events[0].0.as_str(), events[0].1.as_str()),
        ("1", "quotabell.oversized")
    );
    let bytes = events[0].2["bytes"].as_u64().unwrap_or(0);
    assert!(
        bytes > 5 * 1024 * 1024,
        "the marker records the size: {bytes}"
    );
    assert_eq!(events[1], ("2".into(), "t".into(), s("after")));
    assert_eq!(reconnect.header("last-event-id"), Some("2"));
    let peak = peak_rss(engine.pid().unwrap());
    eprintln!("peak RSS {} KiB", peak / 1024);
    assert!(
        peak < PEAK_RSS_BOUND,
        "peak RSS {} KiB: the event was buffered",
        peak / 1024
    );
    wait_connected(&engine);
}

/// `watch` peaks at ~28 MiB while skipping the 5 MiB event (27.9 MiB measured; 29.7 MiB in
/// the 1.5 MiB case of `faults.rs`); holding it as the crate would (the line, then a copy as
/// data) adds at least 10 MiB.
const PEAK_RSS_BOUND: u64 = 36 * 1024 * 1024;

// ---- statuses and redirects ------------------------------------------------------------------

/// 404 or 500: the connection fails, the engine waits (backoff) and catches up, then tries
/// again with the same `Last-Event-ID`, until the stream answers.
fn fails_backs_off_and_retries(status_line: &str, code: &str) {
    let desktop = Desktop::start();
    let dir = tempfile::tempdir().unwrap();
    let failing = StreamReply::status(
        status_line,
        &[("Content-Type", "application/json")],
        r#"{"error":{"code":"x","message":"scripted failure"}}"#,
    );
    let server = Scripted::start(vec![
        failing.clone(),
        failing,
        StreamReply::sse("id: 1\nevent: t\ndata: \"one\"\n\n"),
    ]);
    let engine = watching(&desktop, &dir, &server, &FAST);
    wait_until("the event after the failures", WAIT, || {
        !engine.events().is_empty()
    });
    wait_connected(&engine);
    assert_eq!(engine.events(), vec![("1".into(), "t".into(), s("one"))]);
    let requests = server.requests();
    let streams: Vec<usize> = (0..requests.len())
        .filter(|&i| requests[i].is_stream())
        .collect();
    assert_eq!(streams.len(), 3, "two failures, then the stream");
    for w in streams.windows(2) {
        assert!(
            requests[w[0]..w[1]]
                .iter()
                .any(|r| r.path == "/api/v1/usage"),
            "a catch-up between attempts"
        );
    }
    for &i in &streams {
        assert_eq!(requests[i].header("last-event-id"), Some("0"));
        assert_eq!(
            requests[i].header("authorization"),
            Some(&*format!("Bearer {TOKEN}"))
        );
    }
    let log = engine.log();
    let failed = format!("the server answered {code}");
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("stream ended") && l.contains(&failed))
            .count(),
        2,
        "{}",
        engine.log_tail()
    );
    assert!(
        log.matches("waiting before the next attempt").count() >= 2,
        "each failure waits: {}",
        engine.log_tail()
    );
}

#[test]
fn stream_404_fails_backs_off_and_retries() {
    fails_backs_off_and_retries("HTTP/1.1 404 Not Found", "404");
}

#[test]
fn stream_500_fails_backs_off_and_retries() {
    fails_backs_off_and_retries("HTTP/1.1 500 Internal Server Error", "500");
}

/// A redirect within the origin is followed with the token and the resume point.
fn redirect_within_the_origin(status_line: &str, absolute: bool) {
    let desktop = Desktop::start();
    let dir = tempfile::tempdir().unwrap();
    let server = Scripted::start(vec![StreamReply::sse("")]);
    let path = format!("/api/v1/stream?moved={}", &status_line[9..12]);
    let location = if absolute {
        format!("{}{path}", server.url())
    } else {
        path.clone()
    };
    server.set_script(vec![
        StreamReply::status(status_line, &[("Location", &location)], ""),
        StreamReply::sse("id: 1\nevent: t\ndata: \"moved\"\n\n"),
    ]);
    let engine = watching(&desktop, &dir, &server, &FAST);
    wait_until("the event behind the redirect", WAIT, || {
        !engine.events().is_empty()
    });
    assert_eq!(engine.events(), vec![("1".into(), "t".into(), s("moved"))]);
    wait_connected(&engine);
    let streams = server.stream_requests();
    assert_eq!(streams.len(), 2, "{streams:?}");
    assert_eq!(streams[1].path, path);
    assert_eq!(
        streams[1].header("authorization"),
        Some(&*format!("Bearer {TOKEN}"))
    );
    assert_eq!(streams[1].header("last-event-id"), Some("0"));
}

#[test]
fn stream_301_within_the_origin_is_followed() {
    redirect_within_the_origin("HTTP/1.1 301 Moved Permanently", false);
}

#[test]
fn stream_302_within_the_origin_is_followed() {
    redirect_within_the_origin("HTTP/1.1 302 Found", true);
}

#[test]
fn stream_307_within_the_origin_is_followed() {
    redirect_within_the_origin("HTTP/1.1 307 Temporary Redirect", false);
}

#[test]
fn stream_308_within_the_origin_is_followed() {
    redirect_within_the_origin("HTTP/1.1 308 Permanent Redirect", true);
}

#[test]
fn stream_301_to_another_origin_never_carries_the_token() {
    crate::faults::cross_origin_redirect("HTTP/1.1 301 Moved Permanently");
}

#[test]
fn stream_308_to_another_origin_never_carries_the_token() {
    crate::faults::cross_origin_redirect("HTTP/1.1 308 Permanent Redirect");
}

/// A redirect within the origin that leads on to another origin: the token stays home.
#[test]
fn a_redirect_chain_leaving_the_origin_never_carries_the_token() {
    let desktop = Desktop::start();
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = Scripted::start(vec![StreamReply::sse("")]);
    let server = Scripted::start(vec![
        StreamReply::status(
            "HTTP/1.1 307 Temporary Redirect",
            &[("Location", "/api/v1/stream?hop=1")],
            "",
        ),
        StreamReply::status(
            "HTTP/1.1 308 Permanent Redirect",
            &[("Location", &format!("{}/api/v1/stream", elsewhere.url()))],
            "",
        ),
    ]);
    let engine = watching(&desktop, &dir, &server, &FAST);
    let mut detail = String::new();
    wait_until("the redirect reported", WAIT, || {
        detail = engine.connection().1;
        detail.contains("another origin")
    });
    assert!(detail.contains(&elsewhere.url()), "{detail}");
    let hop = nth_stream(&engine, &server, 2);
    assert_eq!(hop.path, "/api/v1/stream?hop=1");
    assert_eq!(
        hop.header("authorization"),
        Some(&*format!("Bearer {TOKEN}"))
    );
    elsewhere.assert_never_sent_a_token();
}
