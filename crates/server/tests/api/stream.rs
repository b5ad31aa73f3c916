use std::collections::HashSet;
use std::time::Duration;

use rand::Rng;

use crate::support::*;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_stream_gets_every_event_once_in_order() {
    let s = Server::start();
    let token = s.add_user("replay@example.com", "pro");
    let c = client();
    // A second, steady stream keeps the user's hub alive, so the reconnecting reader crosses
    // between the database and the in-memory tail (which holds 1024 events) many times.
    let mut steady = Sse::open(&c, &s, &token, Some("0")).await;

    // Posts run concurrently with the reconnecting reader.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (c, token, url) = (c.clone(), token.clone(), s.url("/builds"));
            tokio::spawn(async move {
                for n in 0..150 {
                    let body = build_body(&format!("app{w}"), n);
                    let res = c
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(res.status(), 201);
                    if n % 10 == 0 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            })
        })
        .collect();

    let mut received = Vec::new();
    let mut last: Option<String> = Some("0".into());
    let mut reconnects = 0;
    let mut posting_done = false;
    loop {
        let mut sse = Sse::open(&c, &s, &token, last.as_deref()).await;
        let take = rand::rng().random_range(1..40);
        for _ in 0..take {
            match sse.next_event(Duration::from_millis(500)).await {
                Some(e) => {
                    last = Some(e.id.clone());
                    received.push(e);
                }
                None => break,
            }
        }
        drop(sse);
        reconnects += 1;
        if !posting_done && writers.iter().all(|w| w.is_finished()) {
            posting_done = true;
        }
        if posting_done {
            let (_, usage) = get_json(&c, &s, &token, "/usage").await;
            if usage["last_event_id"].as_str() == last.as_deref() {
                break;
            }
        }
        assert!(reconnects < 2000, "did not converge");
    }
    for w in writers {
        w.await.unwrap();
    }
    let server_log = all_events(&c, &s, &token).await;
    assert!(server_log.len() >= 600 * 2, "{} events", server_log.len());
    assert!(reconnects > 10, "only {reconnects} reconnects");
    assert_eq!(
        received, server_log,
        "stream and /events differ (gap, duplicate or order)"
    );
    let ids: Vec<u64> = received.iter().map(|e| e.id.parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1));
    for expected in &server_log {
        assert_eq!(
            &steady.next_event(WAIT).await.unwrap(),
            expected,
            "steady stream"
        );
    }
}

#[tokio::test]
async fn live_stream_sees_builds_and_operator_notices() {
    let s = Server::start_with(&["--keepalive-secs", "0.2"]);
    let token = s.add_user("live@example.com", "free");
    let c = client();
    let mut sse = Sse::open(&c, &s, &token, None).await;
    assert!(sse.headers.contains_key("stream-epoch"));
    match sse.next_block().await {
        Some(Block::Other(text)) => assert!(text.starts_with("retry: "), "{text}"),
        other => panic!("expected the retry prelude, got {other:?}"),
    }
    // Keepalive comments arrive while idle.
    match tokio::time::timeout(Duration::from_secs(2), sse.next_block()).await {
        Ok(Some(Block::Other(text))) => assert_eq!(text, ":\n\n"),
        other => panic!("expected a keepalive, got {other:?}"),
    }
    post_build(&c, &s, &token, &build_body("web", 1)).await;
    let e = sse.next_event(WAIT).await.unwrap();
    assert_eq!((e.id.as_str(), e.kind.as_str()), ("1", "build.accepted"));
    assert_eq!(e.data["app"], "web");

    cli(
        &s.db,
        &[
            "notice",
            "--user",
            "live@example.com",
            "--title",
            "<b>Hi</b>",
            "--body",
            "maintenance",
            "--severity",
            "warning",
        ],
    );
    let e = loop {
        let e = sse.next_event(WAIT).await.expect("notice");
        if e.kind == "notice" {
            break e;
        }
    };
    assert_eq!(e.data["title"], "<b>Hi</b>");
    assert_eq!(e.data["severity"], "warning");
}

#[tokio::test]
async fn users_never_see_each_others_events() {
    let s = Server::start();
    let a = s.add_user("a@example.com", "pro");
    let b = s.add_user("b@example.com", "pro");
    let c = client();
    let mut sa = Sse::open(&c, &s, &a, Some("0")).await;
    let mut sb = Sse::open(&c, &s, &b, Some("0")).await;
    for n in 0..20 {
        post_build(&c, &s, &a, &build_body("alpha", n)).await;
        post_build(&c, &s, &b, &build_body("beta", n)).await;
    }
    cli(
        &s.db,
        &[
            "notice",
            "--user",
            "b@example.com",
            "--title",
            "only b",
            "--body",
            "x",
        ],
    );
    let (ea, eb) = (all_events(&c, &s, &a).await, all_events(&c, &s, &b).await);
    assert!(ea.iter().all(|e| e.kind != "notice"));
    assert!(eb.iter().any(|e| e.kind == "notice"));
    for (events, mine) in [(&ea, "alpha"), (&eb, "beta")] {
        let apps: HashSet<_> = events
            .iter()
            .filter_map(|e| e.data["app"].as_str())
            .collect();
        assert_eq!(apps, HashSet::from([mine]));
    }
    for (sse, log) in [(&mut sa, &ea), (&mut sb, &eb)] {
        for expected in log.iter() {
            assert_eq!(&sse.next_event(WAIT).await.unwrap(), expected);
        }
        assert!(
            sse.next_event(Duration::from_millis(600)).await.is_none(),
            "extra event"
        );
    }
    let (_, builds_a) = get_json(&c, &s, &a, "/builds?limit=1000").await;
    assert!(
        builds_a["builds"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["app"] == "alpha")
    );
}

#[tokio::test]
async fn unreachable_cursors_get_one_sync_reset() {
    let s = Server::start_with(&["--retain-events", "16"]);
    let token = s.add_user("reset@example.com", "pro");
    let c = client();
    for n in 0..30 {
        post_build(&c, &s, &token, &build_body("web", n)).await;
    }
    // Pruned history: /events answers 410, the stream sends sync.reset then goes live.
    let (status, body) = get_json(&c, &s, &token, "/events?after=1").await;
    assert_eq!(status, 410, "{body}");
    assert_eq!(body["error"]["code"], "history_expired");
    assert_eq!(body["error"]["reason"], "expired");
    let oldest: u64 = body["error"]["oldest_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(oldest > 2);
    let (status, _) = get_json(&c, &s, &token, &format!("/events?after={}", oldest - 1)).await;
    assert_eq!(
        status, 200,
        "the cursor just before the oldest retained event is still good"
    );

    for (cursor, reason) in [
        ("1", "expired"),
        ("999999", "ahead"),
        ("not-a-number", "invalid"),
    ] {
        let (_, usage) = get_json(&c, &s, &token, "/usage").await;
        let last = usage["last_event_id"].as_str().unwrap().to_owned();
        let mut sse = Sse::open(&c, &s, &token, Some(cursor)).await;
        let e = sse.next_event(WAIT).await.unwrap();
        assert_eq!(e.kind, "sync.reset");
        assert_eq!(e.data["reason"], reason);
        assert_eq!(e.id, last, "sync.reset moves the cursor to the newest id");
        post_build(&c, &s, &token, &build_body("web", 100)).await;
        let next = sse.next_event(WAIT).await.unwrap();
        assert_eq!(next.kind, "build.accepted", "live after the reset");
    }
    let (status, body) = get_json(&c, &s, &token, "/events?after=999999").await;
    assert_eq!(
        (status, body["error"]["reason"].as_str()),
        (410, Some("ahead"))
    );
}

#[tokio::test]
async fn resetting_the_log_changes_the_epoch() {
    let s = Server::start();
    let token = s.add_user("epoch@example.com", "free");
    let c = client();
    post_build(&c, &s, &token, &build_body("web", 1)).await;
    let epoch =
        |res: &reqwest::Response| res.headers()["stream-epoch"].to_str().unwrap().to_owned();
    let res = c
        .get(s.url("/events"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let before = epoch(&res);
    assert_eq!(before.len(), 16);
    cli(&s.db, &["events", "reset", "--user", "epoch@example.com"]);
    let res = c
        .get(s.url("/events"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let after = epoch(&res);
    assert_ne!(before, after);
    let sse = Sse::open(&c, &s, &token, None).await;
    assert_eq!(sse.headers["stream-epoch"].to_str().unwrap(), after);
    let (_, usage) = get_json(&c, &s, &token, "/usage").await;
    assert_eq!(usage["stream_epoch"], after.as_str());
    drop(sse);

    // A stream open across a reset ends, and its old cursor then gets sync.reset.
    let cursor = usage["last_event_id"].as_str().unwrap().to_owned();
    let mut open = Sse::open(&c, &s, &token, Some(&cursor)).await;
    post_build(&c, &s, &token, &build_body("web", 2)).await;
    let seen = open.next_event(WAIT).await.unwrap();
    assert_eq!(seen.kind, "build.accepted");
    let (_, usage) = get_json(&c, &s, &token, "/usage").await;
    let newest: u64 = usage["last_event_id"].as_str().unwrap().parse().unwrap();
    cli(&s.db, &["events", "reset", "--user", "epoch@example.com"]);
    // The stream delivers what was left of the old log, then ends (rather than idling).
    let started = std::time::Instant::now();
    while let Some(e) = open.next_event(WAIT).await {
        assert!(e.id.parse::<u64>().unwrap() <= newest);
    }
    assert!(started.elapsed() < WAIT, "the stream of the old log ends");
    let mut again = Sse::open(&c, &s, &token, Some(&cursor)).await;
    assert_ne!(again.headers["stream-epoch"].to_str().unwrap(), after);
    assert_eq!(again.next_event(WAIT).await.unwrap().kind, "sync.reset");
    let (status, _) = get_json(&c, &s, &token, &format!("/events?after={cursor}")).await;
    assert_eq!(status, 410);
}

#[tokio::test]
async fn sigterm_ends_open_streams_and_exits_cleanly() {
    let mut s = Server::start();
    let token = s.add_user("bye@example.com", "free");
    let c = client();
    let mut sse = Sse::open(&c, &s, &token, None).await;
    sse.next_block().await.unwrap();
    let status = s.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        sse.next_block().await.is_none(),
        "stream ends with the server"
    );
}

/// Raw HTTP/1.1 on one connection: `request` written in pieces of `piece` bytes, then
/// everything the server sends until it closes (or 5 s pass).
fn raw_exchange(base: &str, request: &[u8], piece: usize, read_for: Duration) -> String {
    use std::io::{Read, Write};
    let addr = base.strip_prefix("http://").unwrap();
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_nodelay(true).unwrap();
    for part in request.chunks(piece) {
        tcp.write_all(part).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    tcp.set_read_timeout(Some(read_for)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Stream requests are served by the server's own writer (not hyper): the same answers as any
/// other route, whatever the client does with the bytes of its request.
#[tokio::test]
async fn stream_requests_get_well_formed_answers() {
    let s = Server::start_with(&["--keepalive-secs", "60"]);
    let token = s.add_user("raw@example.test", "free");
    let base = s.base.clone();
    let head =
        |extra: &str| format!("GET /api/v1/stream HTTP/1.1\r\nHost: x\r\n{extra}\r\n").into_bytes();
    let auth = format!("Authorization: Bearer {token}\r\n");
    let answers = tokio::task::spawn_blocking(move || {
        (
            // One byte per write: the sniffing waits for the whole request line.
            raw_exchange(&base, &head(&auth), 1, Duration::from_millis(800)),
            raw_exchange(&base, &head(""), 4096, Duration::from_secs(5)),
            raw_exchange(
                &base,
                &head(&format!("X-Big: {}\r\n", "a".repeat(20_000))),
                4096,
                Duration::from_secs(5),
            ),
            raw_exchange(&base, &head("Bad header line\r\n"), 4096, Duration::from_secs(5)),
            // Another route first on a keep-alive connection: hyper serves both requests.
            raw_exchange(
                &base,
                format!(
                    "GET /api/v1/usage HTTP/1.1\r\nHost: x\r\n{auth}\r\nGET /api/v1/stream HTTP/1.1\r\nHost: x\r\n{auth}\r\n"
                )
                .as_bytes(),
                4096,
                Duration::from_millis(800),
            ),
        )
    })
    .await
    .unwrap();
    let (slow, anonymous, big, bad, after_usage) = answers;

    assert!(slow.starts_with("HTTP/1.1 200 OK\r\n"), "{slow}");
    assert!(
        slow.contains("content-type: text/event-stream\r\n"),
        "{slow}"
    );
    assert!(slow.contains("transfer-encoding: chunked\r\n"), "{slow}");
    assert!(slow.contains("\r\n\r\nd\r\nretry: 1000\n\n\r\n"), "{slow}");

    assert!(
        anonymous.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
        "{anonymous}"
    );
    assert!(anonymous.contains("connection: close\r\n"), "{anonymous}");
    // The JSON error, chunked and complete.
    assert!(anonymous.contains("\"unauthorized\""), "{anonymous}");
    assert!(anonymous.ends_with("\r\n0\r\n\r\n"), "{anonymous}");

    assert!(big.starts_with("HTTP/1.1 431 "), "{big}");
    assert!(bad.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{bad}");

    assert!(
        after_usage.starts_with("HTTP/1.1 200 OK\r\n"),
        "{after_usage}"
    );
    assert!(after_usage.contains("\"quotas\""), "{after_usage}");
    assert!(after_usage.contains("retry: 1000"), "{after_usage}");
}

/// Two `Authorization` headers are refused with 400, on a stream request (served without
/// hyper) as on any other route (hyper), even when both carry a valid token.
#[tokio::test]
async fn two_authorization_headers_are_refused_on_both_paths() {
    let s = Server::start_with(&["--keepalive-secs", "60"]);
    let token = s.add_user("twice@example.test", "free");
    let other = s.add_user("other@example.test", "free");
    let base = s.base.clone();
    let twice = format!("Authorization: Bearer {token}\r\nAuthorization: Bearer {other}\r\n");
    let answers = tokio::task::spawn_blocking(move || {
        let request = |path: &str, extra: &str| {
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n")
                .into_bytes()
        };
        let once = format!("Authorization: Bearer {token}\r\n");
        (
            raw_exchange(
                &base,
                &request("/api/v1/stream", &twice),
                4096,
                Duration::from_secs(5),
            ),
            raw_exchange(
                &base,
                &request("/api/v1/usage", &twice),
                4096,
                Duration::from_secs(5),
            ),
            raw_exchange(
                &base,
                &request("/api/v1/usage", &once),
                4096,
                Duration::from_secs(5),
            ),
        )
    })
    .await
    .unwrap();
    let (stream, usage, usage_once) = answers;
    for (what, answer) in [("stream", &stream), ("usage", &usage)] {
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{what}: {answer}"
        );
        assert!(
            answer.contains("\"invalid_header\"") && answer.contains("\"Authorization\""),
            "{what}: {answer}"
        );
        assert!(
            !answer.contains("retry:"),
            "{what}: no stream opened: {answer}"
        );
    }
    assert!(
        usage_once.starts_with("HTTP/1.1 200 OK\r\n"),
        "{usage_once}"
    );
}

/// A subscriber that stops reading while large events pile up: the server's direct writes to
/// idle streams are cut short by the full socket, the stream finishes them itself, and the
/// subscriber, reading again, gets every event once, in order, in well-formed chunks.
#[tokio::test]
async fn a_subscriber_that_stops_reading_gets_every_event_once_in_order() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const NOTICES: usize = 48;
    const BODY: usize = 100_000; // a command-line argument stays under Linux's 128 KiB
    let s = Server::start_with(&["--keepalive-secs", "60"]);
    let token = s.add_user("slow@example.test", "free");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket
        .connect(s.base.strip_prefix("http://").unwrap().parse().unwrap())
        .await
        .unwrap();
    tcp.write_all(
        format!("GET /api/v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !got.ends_with(b"retry: 1000\n\n\r\n") {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
    }
    // Idle now: the stream is parked and the hub writes to it. Stop reading.
    let bodies: Vec<String> = (0..NOTICES)
        .map(|i| format!("{i:04}:{}", "x".repeat(BODY)))
        .collect();
    for body in &bodies {
        cli(
            &s.db,
            &[
                "notice",
                "--user",
                "slow@example.test",
                "--title",
                "t",
                "--body",
                body,
            ],
        );
    }
    // Read again until the last notice is in, then check the whole body.
    let last = format!("id: {NOTICES}\n");
    let text = loop {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .expect("events stopped coming")
            .unwrap();
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
        let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        if let Some(body) = dechunk(&got[head_end..]) {
            let text = String::from_utf8(body).unwrap();
            if text.contains(&last) && text.ends_with("\n\n") {
                break text;
            }
        }
    };
    let events: Vec<&str> = text
        .split("\n\n")
        .filter(|b| b.starts_with("id: "))
        .collect();
    let ids: Vec<usize> = events
        .iter()
        .map(|b| b[4..b.find('\n').unwrap()].parse().unwrap())
        .collect();
    assert_eq!(ids, (1..=NOTICES).collect::<Vec<_>>());
    for (event, body) in events.iter().zip(&bodies) {
        let data = event
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap();
        let data: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(data["body"].as_str(), Some(body.as_str()));
    }
}

/// The payload of a chunked body so far, `None` when it stops inside a chunk.
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        let eol = raw.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..eol]).ok()?, 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {:?}", &raw[..eol.min(40)]));
        let start = eol + 2;
        if raw.len() < start + size + 2 {
            return None;
        }
        assert_eq!(
            &raw[start + size..start + size + 2],
            b"\r\n",
            "chunk not closed"
        );
        out.extend_from_slice(&raw[start..start + size]);
        raw = &raw[start + size + 2..];
    }
    Some(out)
}

/// Enough streams of one user that each commit's fan-out is split over the server's workers
/// (`hub::PARALLEL_AT`): every stream still gets every event once, in order, and the same
/// bytes as `/events` lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_parked_streams_of_one_user_get_every_event_once_in_order() {
    const STREAMS: usize = 600;
    const BUILDS: usize = 30;
    let s = Server::start();
    let token = s.add_user("many@example.test", "pro");
    let c = client();
    let mut streams = Vec::with_capacity(STREAMS);
    for _ in 0..STREAMS {
        streams.push(Sse::open(&c, &s, &token, Some("0")).await);
    }
    // Idle streams park; give the last ones a moment to do so (a stream that has not parked
    // yet is served by its own task, which is as correct, only not what is tested here).
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in 0..BUILDS {
        let res = c
            .post(s.url("/builds"))
            .bearer_auth(&token)
            .json(&build_body("web", n))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    let log = all_events(&c, &s, &token).await;
    assert!(log.len() >= 2 * BUILDS, "{} events", log.len());
    for (i, sse) in streams.iter_mut().enumerate() {
        for expected in &log {
            assert_eq!(
                sse.next_event(WAIT).await.as_ref(),
                Some(expected),
                "stream {i}"
            );
        }
    }
}
