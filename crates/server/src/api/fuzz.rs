//! Property tests over the backend's request decoders ("fuzzing" on stable Rust; see
//! ARCHITECTURE.md, Testing): build bodies, query parameters and `Last-Event-ID` from arbitrary
//! input give a value or a clear 400 that names its field, never a panic.
//!
//! Short run (part of `cargo test --workspace`): `cargo test -p quotabell-server fuzz_`.
//! Long run: `PROPTEST_CASES=100000 cargo test --release -p quotabell-server fuzz_`.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use proptest::prelude::*;
use serde_json::Value;

use super::builds::decode_build;
use super::{MAX_BODY, Params, parse_id};
use crate::error::ApiError;
use crate::live::stream::requested_cursor;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("web".to_owned()),
        Just("x".repeat(200)),
        Just("é".repeat(201)),
        Just("a\u{7f}b".to_owned()),
        Just("a\nb".to_owned()),
        any::<String>(),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A build body: the three fields, each present or not, with any value, maybe extra fields.
fn build_body() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![3 => text().prop_map(Value::String), 1 => json()];
    (
        proptest::option::of(field.clone()),
        proptest::option::of(field.clone()),
        proptest::option::of(field),
        proptest::option::of((any::<String>(), json())),
        prop_oneof![Just(""), Just(" "), Just(" x"), Just("}"), Just("\n")],
    )
        .prop_map(|(app, version, commit, extra, tail)| {
            let mut m = serde_json::Map::new();
            for (k, v) in [("app", app), ("version", version), ("commit", commit)] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            if let Some((k, v)) = extra {
                m.insert(k, v);
            }
            let mut body = Value::Object(m).to_string().into_bytes();
            body.extend_from_slice(tail.as_bytes());
            body
        })
}

/// A decoder's error is a 400 with a known code and a message; a field error names a field.
fn check_error(e: ApiError) -> Result<(), TestCaseError> {
    prop_assert_eq!(e.status, StatusCode::BAD_REQUEST);
    prop_assert!(
        matches!(
            e.code,
            "malformed_json" | "invalid_field" | "invalid_parameter"
        ),
        "{}",
        e.code
    );
    prop_assert!(!e.message.is_empty());
    if e.code != "malformed_json" {
        prop_assert!(
            e.extra.get("field").is_some_and(Value::is_string),
            "{:?}",
            e
        );
    }
    let res = e.into_response();
    prop_assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    Ok(())
}

fn check_build(body: &[u8]) -> Result<(), TestCaseError> {
    match decode_build(body) {
        Ok(b) => {
            for v in [&b.app, &b.version, &b.commit] {
                let n = v.chars().count();
                prop_assert!((1..=200).contains(&n) && !v.chars().any(char::is_control));
            }
        }
        Err(e) => check_error(e)?,
    }
    Ok(())
}

fn check_param(p: &Params, name: &'static str) -> Result<(), TestCaseError> {
    match p.u64(name) {
        Ok(Some(n)) => prop_assert!(n <= i64::MAX as u64),
        Ok(None) => {}
        Err(e) => {
            prop_assert_eq!(e.extra.get("field").and_then(Value::as_str), Some(name));
            check_error(e)?;
        }
    }
    Ok(())
}

/// A query string: the parameters the API reads, with values around the edges, percent
/// escapes and separators, or plain noise.
fn query() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("after"),
        Just("before"),
        Just("limit"),
        Just("wait"),
        Just("af%74er"),
        Just(""),
        Just("x"),
    ];
    let value = prop_oneof![
        Just("0".to_owned()),
        Just("1".to_owned()),
        Just("-1".to_owned()),
        Just("+1".to_owned()),
        Just(" 1".to_owned()),
        Just("9223372036854775807".to_owned()),
        Just("9223372036854775808".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("%31".to_owned()),
        Just("%ff".to_owned()),
        Just("%".to_owned()),
        Just("١".to_owned()),
        "[0-9]{1,30}",
        any::<String>(),
    ];
    let pair = (name, prop_oneof![Just("="), Just("")], value)
        .prop_map(|(n, eq, v)| format!("{n}{eq}{v}"));
    prop_oneof![
        proptest::collection::vec(pair, 0..6).prop_map(|p| p.join("&")),
        any::<String>(),
    ]
}

proptest! {
    /// Arbitrary bytes as a build body (up to the body limit's order of size).
    #[test]
    fn fuzz_decode_build_bytes(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check_build(&body)?;
    }

    /// JSON build bodies with missing, mistyped, oversized and extra fields, and trailing data.
    #[test]
    fn fuzz_decode_build_json(body in build_body()) {
        prop_assume!(body.len() <= MAX_BODY);
        check_build(&body)?;
    }

    /// Paging parameters: a value within range or a 400 naming the parameter.
    #[test]
    fn fuzz_query_params(q in query(), none in any::<bool>()) {
        let p = Params::parse((!none).then_some(q.as_str()));
        for name in ["after", "before", "wait"] {
            check_param(&p, name)?;
        }
        for (default, max) in [(100, 1000), (1000, 5000)] {
            match p.limit(default, max) {
                Ok(n) => prop_assert!((1..=max).contains(&n)),
                Err(e) => {
                    prop_assert_eq!(e.extra.get("field").and_then(Value::as_str), Some("limit"));
                    check_error(e)?;
                }
            }
        }
    }

    /// A cursor is ASCII digits up to i64::MAX, and every such number reads back as itself.
    #[test]
    fn fuzz_parse_id(s in any::<String>(), n in any::<u64>()) {
        if let Some(id) = parse_id(&s) {
            prop_assert!(id <= i64::MAX as u64);
            prop_assert!(!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
        }
        prop_assert_eq!(parse_id(&n.to_string()), (n <= i64::MAX as u64).then_some(n));
    }

    /// `Last-Event-ID` as any header value the HTTP layer lets through.
    #[test]
    fn fuzz_last_event_id(raw in proptest::collection::vec(any::<u8>(), 0..64), digits in "[0-9 ]{0,24}") {
        for bytes in [raw, digits.into_bytes()] {
            let Ok(value) = HeaderValue::from_bytes(&bytes) else { continue };
            let mut headers = HeaderMap::new();
            headers.insert("last-event-id", value);
            match requested_cursor(&headers) {
                None => prop_assert!(String::from_utf8_lossy(&bytes).trim().is_empty()),
                Some(Ok(id)) => {
                    prop_assert!(id <= i64::MAX as u64);
                    prop_assert_eq!(String::from_utf8_lossy(&bytes).trim().parse::<u64>().ok(), Some(id));
                }
                Some(Err(())) => {}
            }
        }
        prop_assert!(requested_cursor(&HeaderMap::new()).is_none());
    }
}
