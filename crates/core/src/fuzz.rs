//! Property tests over the engine's input paths ("fuzzing" on stable Rust; see ARCHITECTURE.md,
//! Testing): the SSE parser as the stream uses it, the protocol decoders, the store's ingest of
//! arbitrary events and the policy over arbitrary observations. Each asserts no panic, bounded
//! output, and the invariant the path promises. The SseGuard's own properties sit next to it
//! (`sse_guard::fuzz`).
//!
//! Short run (part of `cargo test --workspace`): `cargo test -p quotabell-core fuzz_`.
//! Long run: `PROPTEST_CASES=100000 cargo test --release -p quotabell-core fuzz_`.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use es::Client as _;
use eventsource_client as es;
use futures_util::StreamExt;
use launchdarkly_sdk_transport::{ByteStream, HttpTransport, ResponseFuture, TransportError};
use proptest::prelude::*;
use serde_json::Value;

use crate::ipc::NotificationState;
use crate::policy::{self, Context, Held, Observed, Settings};
use crate::protocol::{
    Account, Build, BuildsPage, EventsPage, Plan, QuotaObservation, Usage, WireEvent, kind,
};
use crate::sse_guard::fuzz::{split, sse_bytes};
use crate::sse_guard::{OVERSIZED, SseGuard};
use crate::store::{Incoming, Source, Store};

// ---- strategies ---------------------------------------------------------------------------

/// Numbers where the edge cases are: zero, negatives, the ends of i64, and small values.
fn number() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0i64),
        Just(-1),
        Just(i64::MIN),
        Just(i64::MAX),
        Just(i64::MAX / 100 + 1),
        -5i64..200,
        any::<i64>(),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("builds".to_owned()),
        Just("applications".to_owned()),
        Just("2026-11-01T00:00:00Z".to_owned()),
        Just("é".to_owned()),
        any::<String>(),
    ]
}

/// Any JSON value, with the protocol's field names common enough to reach the decoders' paths.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    let key = prop_oneof![
        Just("metric"),
        Just("used"),
        Just("limit"),
        Just("period"),
        Just("start"),
        Just("end"),
        Just("plan"),
        Just("name"),
        Just("id"),
        Just("hard_limit"),
        Just("quotas"),
        Just("title"),
        Just("body"),
        Just("url"),
        Just("severity"),
        Just("created_at"),
        Just("app"),
        Just("version"),
        Just("commit"),
        Just("overage"),
        Just("x"),
    ]
    .prop_map(str::to_owned);
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A quota-ish event payload: the fields the policy reads, with arbitrary numbers.
fn quota_payload() -> impl Strategy<Value = Value> {
    (
        text(),
        number(),
        number(),
        proptest::option::of((text(), text())),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(metric, used, limit, period, hard)| {
            let mut v = serde_json::json!({"metric": metric, "used": used, "limit": limit});
            if let Some((start, end)) = period {
                v["period"] = serde_json::json!({"start": start, "end": end});
            }
            if let Some(h) = hard {
                v["hard_limit"] = Value::Bool(h);
            }
            v
        })
}

fn event_kind() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(kind::BUILD_ACCEPTED.to_owned()),
        Just(kind::BUILD_REJECTED.to_owned()),
        Just(kind::QUOTA_UPDATED.to_owned()),
        Just(kind::QUOTA_WARNING.to_owned()),
        Just(kind::QUOTA_EXCEEDED.to_owned()),
        Just(kind::QUOTA_RESET.to_owned()),
        Just(kind::PLAN_CHANGED.to_owned()),
        Just(kind::NOTICE.to_owned()),
        Just(kind::SYNC_RESET.to_owned()),
        any::<String>(),
    ]
}

/// An event's data as text: valid JSON (quota-shaped or any), or arbitrary text.
fn event_data() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => quota_payload().prop_map(|v| v.to_string()),
        3 => json().prop_map(|v| v.to_string()),
        1 => any::<String>(),
        1 => Just("{".to_owned()),
    ]
}

fn settings() -> impl Strategy<Value = Settings> {
    (
        proptest::collection::vec(any::<u8>(), 0..6),
        proptest::option::of((any::<u16>(), any::<u16>())),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(number()),
    )
        .prop_map(
            |(thresholds, quiet_hours, urgent, rejected, paused)| Settings {
                thresholds,
                quiet_hours,
                urgent_through_quiet: urgent,
                notify_rejected_builds: rejected,
                paused_until: paused,
            },
        )
}

fn usage_json() -> impl Strategy<Value = Value> {
    (
        proptest::collection::vec((text(), number(), number()), 0..4),
        text(),
        any::<bool>(),
    )
        .prop_map(|(quotas, end, hard)| {
            serde_json::json!({
                "period": {"start": "2026-11-01T00:00:00Z", "end": end},
                "plan": {"id": "free", "name": "Free", "hard_limit": hard},
                "quotas": quotas.into_iter().map(|(m, u, l)| serde_json::json!({"metric": m, "used": u, "limit": l})).collect::<Vec<_>>(),
                "last_event_id": "0", "stream_epoch": "e"
            })
        })
}

// ---- the SSE parser as stream.rs feeds it -------------------------------------------------

/// A transport that answers with the given blocks, as `stream.rs`'s pump hands them on.
#[derive(Clone)]
struct Canned(Vec<Bytes>);

impl HttpTransport for Canned {
    fn request(&self, _req: http::Request<Option<Bytes>>) -> ResponseFuture {
        let blocks = self.0.clone();
        Box::pin(async move {
            let body: ByteStream = Box::pin(futures_util::stream::iter(
                blocks.into_iter().map(Ok::<_, TransportError>),
            ));
            Ok(http::Response::builder().status(200).body(body).unwrap())
        })
    }
}

/// Runs eventsource-client over the guard's output; returns what it yielded up to its first
/// error (the engine ends a connection there).
fn parse(blocks: Vec<Bytes>) -> (Vec<es::Event>, Option<String>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = es::ClientBuilder::for_url("http://127.0.0.1:1/api/v1/stream")
            .unwrap()
            .reconnect(
                es::ReconnectOptions::reconnect(false)
                    .retry_initial(false)
                    .build(),
            )
            .redirect_limit(0)
            .last_event_id("3".to_owned())
            .build_with_transport(Canned(blocks));
        let mut stream = client.stream();
        let mut events = Vec::new();
        let read = async {
            while let Some(item) = stream.next().await {
                match item {
                    Ok(es::SSE::Event(ev)) => events.push(ev),
                    Ok(_) => {}
                    Err(e) => return Some(format!("{e:?}")),
                }
            }
            None
        };
        let end = tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("the parser finishes a finite stream");
        (events, end)
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        // Each case starts a runtime and a client: fewer by default, PROPTEST_CASES still rules.
        cases: cases(64),
        ..ProptestConfig::default()
    })]

    /// Arbitrary bytes at arbitrary read boundaries through the guard and the parser: no
    /// panic, no hang, no event with more data than the limit, no more events than blocks.
    #[test]
    fn fuzz_parser_behind_the_guard(
        bytes in sse_bytes(),
        sizes in proptest::collection::vec(0usize..300, 0..40),
        max in 1usize..2048,
    ) {
        let mut guard = SseGuard::new(max);
        // As stream.rs hands them on: whole blocks, invalid UTF-8 replaced with U+FFFD.
        let blocks: Vec<Bytes> = split(&bytes, &sizes)
            .into_iter()
            .flat_map(|c| guard.push(c))
            .map(|b| Bytes::from(String::from_utf8_lossy(&b).into_owned()))
            .collect();
        let count = blocks.len();
        let (events, _end) = parse(blocks);
        prop_assert!(events.len() <= count);
        for ev in &events {
            // U+FFFD takes 3 bytes for 1 bad byte: the bound is on characters.
            prop_assert!(ev.data.chars().count() <= max || ev.event_type == OVERSIZED, "{} bytes", ev.data.len());
            prop_assert!(ev.id.as_ref().is_none_or(|id| !id.contains('\0')));
        }
    }
}

/// The configured case count, unless PROPTEST_CASES asks for another.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ---- protocol decoders --------------------------------------------------------------------

fn decode_all(bytes: &[u8]) {
    let _ = serde_json::from_slice::<Usage>(bytes);
    let _ = serde_json::from_slice::<Account>(bytes);
    let _ = serde_json::from_slice::<Plan>(bytes);
    let _ = serde_json::from_slice::<Build>(bytes);
    let _ = serde_json::from_slice::<BuildsPage>(bytes);
    let _ = serde_json::from_slice::<WireEvent>(bytes);
    let _ = serde_json::from_slice::<EventsPage>(bytes);
    let _ = serde_json::from_slice::<Settings>(bytes);
}

proptest! {
    /// Every protocol type from arbitrary bytes: an error or a value, never a panic.
    #[test]
    fn fuzz_protocol_from_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
    }

    /// ... and from arbitrary JSON (which reaches past the syntax into the fields). A value
    /// that decodes survives a round trip unchanged; a quota observation reads exactly the
    /// fields it names.
    #[test]
    fn fuzz_protocol_from_json(v in json(), q in quota_payload(), k in event_kind()) {
        decode_all(v.to_string().as_bytes());
        if let Ok(u) = serde_json::from_value::<Usage>(v.clone()) {
            let back: Usage = serde_json::from_str(&serde_json::to_string(&u).unwrap()).unwrap();
            prop_assert_eq!(back, u);
        }
        for data in [&v, &q] {
            if let Some(obs) = QuotaObservation::from_event(&k, data) {
                prop_assert!(matches!(k.as_str(), kind::QUOTA_UPDATED | kind::QUOTA_WARNING | kind::QUOTA_EXCEEDED));
                prop_assert_eq!(Some(obs.used), data["used"].as_i64());
                prop_assert_eq!(Some(obs.limit), data["limit"].as_i64());
            }
        }
    }
}

// ---- policy ------------------------------------------------------------------------------

fn check_decisions(
    decisions: &[policy::Decision],
    limit_positive: bool,
) -> Result<(), TestCaseError> {
    let keys: HashSet<&str> = decisions.iter().map(|d| d.dedupe_key.as_str()).collect();
    prop_assert_eq!(
        keys.len(),
        decisions.len(),
        "dedupe keys repeat: {:?}",
        decisions
    );
    // At most one notification per event is meant to be seen; the rest are logged only.
    prop_assert!(
        decisions
            .iter()
            .filter(|d| d.state != NotificationState::Suppressed)
            .count()
            <= 1
    );
    if !limit_positive {
        prop_assert!(decisions.iter().all(|d| d.kind != "quota"));
    }
    Ok(())
}

proptest! {
    /// Decisions over arbitrary observations, settings and times (limits of 0, negative use,
    /// numbers at the ends of i64): no panic, unique keys, at most one shown per event, none
    /// for a limit that is not positive, and none for a key already known.
    #[test]
    fn fuzz_policy_decide_event(
        s in settings(),
        now in number(),
        minute in any::<u16>(),
        catching_up in any::<bool>(),
        hard in any::<bool>(),
        k in event_kind(),
        data in prop_oneof![quota_payload(), json()],
        before in any::<bool>(),
        id in text(),
    ) {
        let ctx = Context { settings: &s, now_unix: now, local_minute: minute, catching_up, hard_limit: hard, plan_name: "Free" };
        let ev = Observed { epoch: "e", id: &id, kind: &k, data: Some(&data), before_sign_in: before };
        let first = policy::decide_event(&ctx, &ev, &mut |_| false);
        let limit_positive = data.get("limit").and_then(Value::as_i64).is_some_and(|l| l > 0);
        check_decisions(&first, limit_positive)?;
        if before {
            prop_assert!(first.is_empty());
        }
        let again = policy::decide_event(&ctx, &ev, &mut |_| true);
        prop_assert!(again.is_empty(), "decided twice: {:?}", again);
        let none = Observed { data: None, ..ev };
        prop_assert!(policy::decide_event(&ctx, &none, &mut |_| false).is_empty());
    }

    /// A usage snapshot's decisions and the digest over arbitrary numbers and titles.
    #[test]
    fn fuzz_policy_usage_and_digest(
        s in settings(),
        now in number(),
        minute in any::<u16>(),
        u in usage_json(),
        titles in proptest::collection::vec((text(), any::<bool>()), 0..20),
        away in any::<u64>(),
    ) {
        let usage: Usage = serde_json::from_value(u).unwrap();
        let ctx = Context { settings: &s, now_unix: now, local_minute: minute, catching_up: false, hard_limit: true, plan_name: "Free" };
        let decisions = policy::decide_usage(&ctx, &usage, &mut |_| false);
        for q in &usage.quotas {
            let mine: Vec<_> = decisions.iter().filter(|d| d.dedupe_key.starts_with(&format!("quota:{}:", q.metric))).cloned().collect();
            if usage.quotas.iter().filter(|o| o.metric.starts_with(&q.metric) || q.metric.starts_with(&o.metric)).count() == 1 {
                check_decisions(&mine, q.limit > 0)?;
            }
        }
        let held: Vec<Held> = titles.into_iter().map(|(title, urgent)| Held { title, urgent }).collect();
        let d = policy::digest(&held, away, Some(&usage), "1");
        // A long absence is a bounded message: eight titles at most, plus the summary.
        prop_assert!(d.body.matches("\n• ").count() <= 9);
        prop_assert_eq!(d.urgent, held.iter().any(|h| h.urgent));
    }
}

// ---- the store's ingest ------------------------------------------------------------------

use crate::store::tests::open as open_store;

fn ingest(
    store: &mut Store,
    account: i64,
    events: &[Incoming],
    source: Source,
    s: &Settings,
) -> crate::store::Result<crate::store::Ingested> {
    store.ingest(
        account,
        "e",
        events,
        source,
        1_700_000_000,
        &mut |ev, known| {
            let ctx = Context {
                settings: s,
                now_unix: 1_700_000_000,
                local_minute: 600,
                catching_up: source == Source::CatchUp,
                hard_limit: true,
                plan_name: "Free",
            };
            policy::decide_event(&ctx, ev, known)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        // Each case is a fresh SQLite file with its migrations.
        cases: cases(64),
        ..ProptestConfig::default()
    })]

    /// Batches of events with arbitrary types and payloads, replays mixed in, ids increasing
    /// as the server sends them: every ingest succeeds, each id is stored once, the cursor
    /// names the newest event stored and never moves back, and a decision is made once.
    #[test]
    fn fuzz_store_ingest_arbitrary_events(
        batches in proptest::collection::vec(
            proptest::collection::vec((1u64..4, event_kind(), event_data(), any::<bool>()), 0..8),
            1..5,
        ),
        with_usage in proptest::option::of(usage_json()),
        history in proptest::option::of(0u64..30),
        s in settings(),
    ) {
        let (_dir, mut store, acct) = open_store();
        if let Some(u) = with_usage {
            let usage: Usage = serde_json::from_value(u).unwrap();
            store.record_usage(acct, &usage, 0, &mut |_, _| Vec::new()).unwrap();
        }
        if let Some(h) = history {
            store.set_history_until(acct, &h.to_string()).unwrap();
        }
        let mut next = 0u64;
        let mut sent: Vec<Incoming> = Vec::new();
        let mut newest: Option<u64> = None;
        let mut keys = HashSet::new();
        for (n, batch) in batches.into_iter().enumerate() {
            let mut events = Vec::new();
            for (step, kind, data, replay) in batch {
                if replay && !sent.is_empty() {
                    // An event already stored comes again (stream and catch-up overlap).
                    events.push(sent[(next as usize + step as usize) % sent.len()].clone());
                } else {
                    next += step;
                    events.push(Incoming { id: next.to_string(), kind, data });
                }
            }
            let source = if n % 2 == 0 { Source::CatchUp } else { Source::Stream };
            let out = ingest(&mut store, acct, &events, source, &s).unwrap();
            let fresh: Vec<u64> = events.iter().map(|e| e.id.parse::<u64>().unwrap()).filter(|id| newest.is_none_or(|n| *id > n)).collect();
            prop_assert_eq!(out.stored + out.duplicates, events.len());
            prop_assert_eq!(out.stored, fresh.len());
            for p in &out.pending {
                prop_assert!(keys.insert(p.dedupe_key.clone()), "shown twice: {}", p.dedupe_key);
            }
            newest = fresh.into_iter().max().or(newest);
            sent.extend(events.into_iter().filter(|e| !sent.iter().any(|s| s.id == e.id)).collect::<Vec<_>>());
            let cursor = store.sync_state(acct).unwrap().cursor;
            prop_assert_eq!(cursor, newest.map(|n| n.to_string()));
        }
        let stored: i64 = store.conn().query_row("SELECT count(*) FROM events", [], |r| r.get(0)).unwrap();
        prop_assert_eq!(stored as usize, sent.len());
        let ok: String = store.conn().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        prop_assert_eq!(ok, "ok");
    }

    /// Ids, types and data all arbitrary text (NUL, huge numbers, non-numeric ids): ingest
    /// stores or fails with an error, never panics; the cursor is the last id newly stored
    /// or stays where it was.
    #[test]
    fn fuzz_store_ingest_arbitrary_ids(
        batches in proptest::collection::vec(
            proptest::collection::vec((text(), event_kind(), event_data()), 0..6),
            1..4,
        ),
        history in proptest::option::of(text()),
    ) {
        let (_dir, mut store, acct) = open_store();
        if let Some(h) = history {
            store.set_history_until(acct, &h).unwrap();
        }
        let s = Settings::default();
        let mut seen: HashSet<String> = HashSet::new();
        for batch in batches {
            let events: Vec<Incoming> = batch.into_iter().map(|(id, kind, data)| Incoming { id, kind, data }).collect();
            let before = store.sync_state(acct).unwrap().cursor;
            match ingest(&mut store, acct, &events, Source::Stream, &s) {
                Ok(_) => {
                    let last_new = events.iter().filter(|e| seen.insert(e.id.clone())).last().map(|e| e.id.clone());
                    let cursor = store.sync_state(acct).unwrap().cursor;
                    prop_assert_eq!(cursor, last_new.or(before));
                }
                Err(_) => prop_assert_eq!(store.sync_state(acct).unwrap().cursor, before),
            }
        }
    }
}

// ---- the server's retry hint -------------------------------------------------------------

proptest! {
    /// Whatever `retry:` the server sends (any digits the guard accepts, up to u64::MAX ms),
    /// the reconnect delay stays within [hint capped at the maximum, maximum].
    #[test]
    fn fuzz_backoff_with_any_server_hint(digits in "[0-9]{1,25}", attempts in 0usize..70, seed in any::<u64>()) {
        use rand::SeedableRng;
        let mut guard = SseGuard::new(1024);
        guard.push(format!("retry: {digits}\n\n").as_bytes());
        let hint = guard.retry_ms.map(Duration::from_millis);
        prop_assert_eq!(guard.retry_ms, digits.parse::<u64>().ok());
        let mut b = crate::backoff::Backoff::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for _ in 0..attempts {
            let d = b.next_delay(hint, &mut rng);
            prop_assert!(d <= Duration::from_secs(60));
            prop_assert!(d >= hint.unwrap_or_default().min(Duration::from_secs(60)));
        }
    }
}

// ---- error bodies and the settings form ---------------------------------------------------

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("qb_0123456789abcdef".to_owned()),
        Just("*".to_owned()),
        Just("**".to_owned()),
        Just("a*".to_owned()),
        "[!-~]{1,12}",
    ]
}

proptest! {
    /// A server's error answer (any status, `Retry-After`, `Location`, body): no panic, a
    /// bounded wait, and the token never in the message, whatever the body echoes of it.
    #[test]
    fn fuzz_status_error(
        status in 100u16..1000,
        retry in proptest::option::of(any::<String>()),
        location in proptest::option::of(any::<String>()),
        token in token(),
        before in text(),
        after in text(),
        body in json(),
    ) {
        use crate::client::{ApiError, status_error};
        let server = crate::server_url::ServerUrl::parse("http://127.0.0.1:1").unwrap();
        let url = reqwest::Url::parse("http://127.0.0.1:1/api/v1/usage").unwrap();
        let token = crate::secret::Token::new(&token).unwrap();
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in [(reqwest::header::RETRY_AFTER, retry), (reqwest::header::LOCATION, location)] {
            if let Some(v) = value.and_then(|v| reqwest::header::HeaderValue::from_str(&v).ok()) {
                headers.insert(name, v);
            }
        }
        let echo = serde_json::json!({"error": {"message": format!("{before}{}{after}", token.expose())}});
        for body in [&body, &echo] {
            let status = reqwest::StatusCode::from_u16(status).unwrap();
            match status_error(status, &headers, body, &server, &url, &token) {
                // The token may only be in a text of ours ("too many redirects" holds an "m").
                ApiError::Server { message, .. } => prop_assert!(
                    !message.contains(token.expose())
                        || message == "too many redirects"
                        || Some(message.as_str()) == status.canonical_reason(),
                    "{message:?}"
                ),
                ApiError::RateLimited { retry_after, .. } => prop_assert!(retry_after.is_none_or(|d| d <= Duration::from_secs(3600))),
                _ => {}
            }
        }
    }

    /// The settings form from the window: settings or an error naming the field; accepted
    /// quiet hours read back as the very text given.
    #[test]
    fn fuzz_settings_form(
        thresholds in proptest::collection::vec(any::<u8>(), 0..6),
        start in proptest::option::of(prop_oneof![Just("22:00".to_owned()), "[0-9+]{2}:[0-9+]{2}", any::<String>()]),
        end in proptest::option::of(prop_oneof![Just("07:30".to_owned()), "[0-9+]{2}:[0-9+]{2}", any::<String>()]),
    ) {
        let form = crate::ipc::SettingsForm {
            thresholds,
            quiet_start: start,
            quiet_end: end,
            urgent_through_quiet: true,
            notify_rejected_builds: true,
            start_at_login: false,
        };
        match crate::dashboard::apply_form(&Settings::default(), &form) {
            Ok(s) => {
                prop_assert!(s.thresholds.iter().all(|t| (1..=100).contains(t)));
                let back = crate::dashboard::settings_form(&s, false);
                let given = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
                prop_assert_eq!(back.quiet_start, given(&form.quiet_start));
                prop_assert_eq!(back.quiet_end, given(&form.quiet_end));
            }
            Err(e) => prop_assert!(e.field.is_some(), "{}", e.message),
        }
    }
}
