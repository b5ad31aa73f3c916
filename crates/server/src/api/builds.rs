//! `POST /builds` (the quota-checked call a build plugin makes) and `GET /builds` (history).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{AuthUser, Params, Shared};
use crate::error::{ApiError, StoreError};
use crate::idempotency::{IdempotencyKey, MAX_KEY_CHARS, Recorded};
use crate::quota::{self, BuildOutcome, NewBuild};
use crate::store::params;

/// The request header that makes a retried `POST /builds` safe (see `idempotency`).
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// Set on an answer that repeats a key's first outcome.
const REPLAYED: &str = "idempotent-replayed";

const MAX_FIELD_CHARS: usize = 200;

pub async fn create(
    State(st): State<Shared>,
    AuthUser(user): AuthUser,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("request body is over {} bytes", super::MAX_BODY),
            )
        } else {
            ApiError::bad_request("unreadable_body", e.body_text())
        }
    })?;
    let build = decode_build(&body)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (outcome, replayed) = match st.writer.record_build(user, key, build, now).await? {
        Recorded::Fresh(o) => (o, false),
        Recorded::Replayed(o) => (o, true),
        Recorded::KeyReused => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "this Idempotency-Key was first used for a different build",
            ));
        }
    };
    let mut answer = answer(outcome);
    if replayed {
        answer
            .headers_mut()
            .insert(REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(answer)
}

/// The optional `Idempotency-Key`; one that is present must be valid (and single).
fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::bad_request(
            "invalid_header",
            format!(
                "{IDEMPOTENCY_KEY} must be one header of 1 to {MAX_KEY_CHARS} visible ASCII characters"
            ),
        )
        .with("header", IDEMPOTENCY_KEY)
    };
    if values.next().is_some() {
        return Err(invalid());
    }
    IdempotencyKey::parse(value.as_bytes())
        .map(Some)
        .ok_or_else(invalid)
}

/// The HTTP answer to a build's outcome: 201 with the build, or 402 naming the full quota.
fn answer(outcome: BuildOutcome) -> Response {
    match outcome {
        BuildOutcome::Accepted { build, .. } => (StatusCode::CREATED, Json(build)).into_response(),
        BuildOutcome::Rejected {
            metric,
            used,
            limit,
            ..
        } => ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "quota_exceeded",
            format!("{metric} quota reached ({used}/{limit}) on a plan with a hard limit"),
        )
        .with("metric", metric.as_str())
        .with("used", used)
        .with("limit", limit)
        .into_response(),
    }
}

/// Parses and validates a build body; every error names the field at fault.
pub fn decode_build(body: &[u8]) -> Result<NewBuild, ApiError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Err(ApiError::bad_request(
            "malformed_json",
            "request body must be a JSON object",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let build: NewBuild = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            let field = if path == "." {
                backticked(&inner.to_string()).unwrap_or_default()
            } else {
                path
            };
            ApiError::bad_request("invalid_field", format!("field `{field}`: {inner}"))
                .with("field", field)
        } else {
            ApiError::bad_request(
                "malformed_json",
                format!("request body is not valid JSON: {inner}"),
            )
        }
    })?;
    de.end().map_err(|e| {
        ApiError::bad_request(
            "malformed_json",
            format!("trailing data after the JSON object: {e}"),
        )
    })?;
    for (field, value) in [
        ("app", &build.app),
        ("version", &build.version),
        ("commit", &build.commit),
    ] {
        let chars = value.chars().count();
        if chars == 0 || chars > MAX_FIELD_CHARS || value.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "invalid_field",
                format!("field `{field}` must be 1 to {MAX_FIELD_CHARS} characters without control characters"),
            )
            .with("field", field));
        }
    }
    Ok(build)
}

/// The first name between backticks in a serde message ("missing field `app`").
fn backticked(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(msg[start..start + len].to_owned())
}

/// `?after=ID` pages forward (oldest first, for syncing); `?before=ID` or no cursor pages back
/// from the newest (for browsing history).
pub async fn list(
    State(st): State<Shared>,
    AuthUser(user): AuthUser,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(raw.as_deref());
    let (after, before) = (p.u64("after")?, p.u64("before")?);
    if after.is_some() && before.is_some() {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            "give `after` or `before`, not both",
        )
        .with("field", "before"));
    }
    let limit = p.limit(100, 1000)?;
    let rows = st
        .read(move |sql| {
            let (text, cursor) = match (after, before) {
                (Some(a), _) => (
                    "SELECT id, app, version, commit_sha, overage, created_at FROM builds
                     WHERE user_id = $1 AND id > $2 ORDER BY id ASC LIMIT $3",
                    a,
                ),
                (None, b) => (
                    "SELECT id, app, version, commit_sha, overage, created_at FROM builds
                     WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                    b.unwrap_or(i64::MAX as u64),
                ),
            };
            sql.query(text, params![user, cursor, limit + 1])?
                .iter()
                .map(|r| {
                    let build = NewBuild {
                        app: r.string(1)?,
                        version: r.string(2)?,
                        commit: r.string(3)?,
                    };
                    Ok(quota::build_json(r.int(0)?, &build, r.bool(4)?, r.int(5)?))
                })
                .collect::<Result<Vec<_>, StoreError>>()
        })
        .await?;
    let mut builds = rows;
    let has_more = builds.len() as u64 > limit;
    builds.truncate(limit as usize);
    Ok(Json(json!({ "builds": builds, "has_more": has_more })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_errors_name_the_field() {
        let field = |body: &str| decode_build(body.as_bytes()).unwrap_err().extra["field"].clone();
        assert_eq!(field(r#"{"version":"1","commit":"a"}"#), "app");
        assert_eq!(field(r#"{"app":5,"version":"1","commit":"a"}"#), "app");
        assert_eq!(field(r#"{"app":"x","version":"1","commit":""}"#), "commit");
        assert_eq!(
            field(r#"{"app":"x","version":"1","commit":"a","extra":1}"#),
            "extra"
        );
        for bad in [
            &b"{not json"[..],
            br#"["web","1","a"]"#,
            br#"{"app":"x","version":"1","commit":"a"} x"#,
        ] {
            assert_eq!(decode_build(bad).unwrap_err().code, "malformed_json");
        }
        assert!(decode_build(br#"{"app":"x","version":"1","commit":"a"}"#).is_ok());
    }
}

/// Property tests over the build body decoder ("fuzzing" on stable Rust; see ARCHITECTURE.md,
/// Testing): arbitrary bytes or JSON give a valid build or a clear 400 that names its field,
/// never a panic.
///
/// Short run: `cargo test -p quotabell-server fuzz_`; long run: the same with `--release` and
/// `PROPTEST_CASES=100000`.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::decode_build;
    use crate::api::MAX_BODY;
    use crate::api::fuzz::check_error;

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
    }
}
