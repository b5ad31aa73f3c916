//! The HTTP surface of protocol v1 (docs/protocol.md): routing, authentication and the pieces
//! every handler shares. The request/response handlers live here; `GET /stream` is routed here
//! too but served by the live-delivery half (`crate::live::stream`).

mod account;
mod builds;
mod events;
mod health;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::routing::get;
use tokio::sync::watch;

use crate::auth::{self, TokenCache};
use crate::error::{ApiError, StoreError};
use crate::jobs::Leadership;
use crate::live::{self, hub::Hubs};
use crate::store::{ReadPool, Sql};
use crate::writer::Writer;

pub const MAX_BODY: usize = 64 * 1024;

/// Stream settings the operator can tune (tests shorten the keepalive).
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    pub keepalive: Duration,
    pub retry: Duration,
}

pub struct AppState {
    pub pool: ReadPool,
    pub writer: Writer,
    pub hubs: Arc<Hubs>,
    pub tokens: TokenCache,
    pub stream: StreamSettings,
    pub leadership: Arc<Leadership>,
    /// Flips to true on shutdown so that open streams and long polls end promptly.
    pub shutdown: watch::Receiver<bool>,
}

pub type Shared = Arc<AppState>;

impl AppState {
    /// Runs a read on a pooled connection off the async threads.
    pub async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Sql) -> Result<T, StoreError> + Send + 'static,
    {
        self.pool.read(f).await.map_err(ApiError::from)
    }
}

pub fn router(state: Shared) -> Router {
    let api = Router::new()
        .route("/account", get(account::account))
        .route("/usage", get(account::usage))
        .route("/builds", get(builds::list).post(builds::create))
        .route("/events", get(events::list))
        .route("/stream", get(live::stream::open));
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// The authenticated user of a request, from `Authorization: Bearer <token>`.
pub struct AuthUser(pub i64);

impl FromRequestParts<Shared> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, ApiError> {
        // Two credentials in one request are ambiguous (which one is meant, and which did a
        // proxy add?): refused rather than resolved by taking the first.
        if parts
            .headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .nth(1)
            .is_some()
        {
            return Err(ApiError::bad_request(
                "invalid_header",
                "Authorization is given more than once",
            )
            .with("header", "Authorization"));
        }
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthorized("missing bearer token"))?;
        let hash = auth::hash(token);
        if let Some(user) = state.tokens.get(&hash, Instant::now()) {
            return Ok(Self(user));
        }
        let user = state
            .read(move |sql| crate::account::id_by_token_hash(sql, &hash))
            .await?
            .ok_or_else(|| ApiError::unauthorized("unknown or revoked token"))?;
        state.tokens.put(hash, user, Instant::now());
        Ok(Self(user))
    }
}

/// Query parameters, parsed one by one so that an error names the parameter.
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(raw: Option<&str>) -> Self {
        Self(
            raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
        )
    }

    pub fn u64(&self, name: &'static str) -> Result<Option<u64>, ApiError> {
        self.0
            .get(name)
            .map(|v| {
                parse_id(v).ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_parameter",
                        format!("query parameter `{name}` must be a non-negative integer"),
                    )
                    .with("field", name)
                })
            })
            .transpose()
    }

    pub fn limit(&self, default: u64, max: u64) -> Result<u64, ApiError> {
        match self.u64("limit")? {
            None => Ok(default),
            Some(n) if (1..=max).contains(&n) => Ok(n),
            Some(_) => Err(ApiError::bad_request(
                "invalid_parameter",
                format!("query parameter `limit` must be between 1 and {max}"),
            )
            .with("field", "limit")),
        }
    }
}

/// A cursor or count: ASCII digits only (no sign, no spaces), at most `i64::MAX` because both
/// stores keep it as a signed 64-bit integer.
pub fn parse_id(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u64>().ok().filter(|n| *n <= i64::MAX as u64)
}

pub fn epoch_header(epoch: &str) -> (&'static str, HeaderValue) {
    (
        "stream-epoch",
        HeaderValue::from_str(epoch).unwrap_or(HeaderValue::from_static("unknown")),
    )
}

/// Property tests over the query decoders ("fuzzing" on stable Rust; see ARCHITECTURE.md,
/// Testing): any query string gives a value in range or a clear 400 that names its parameter,
/// never a panic. `check_error` is what every request decoder's error must be.
///
/// Short run: `cargo test -p quotabell-server fuzz_`; long run: the same with `--release` and
/// `PROPTEST_CASES=100000`.
#[cfg(test)]
pub(crate) mod fuzz {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use proptest::prelude::*;
    use serde_json::Value;

    use super::{Params, parse_id};
    use crate::error::ApiError;

    /// A decoder's error is a 400 with a known code and a message; a field error names a field.
    pub(crate) fn check_error(e: ApiError) -> Result<(), TestCaseError> {
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
        // Signs, spaces, i64::MAX and one past it, past u64, percent escapes, a non-ASCII
        // digit; weighted so that each is as likely as either generated kind of value.
        let edges = vec![
            "0",
            "1",
            "-1",
            "+1",
            " 1",
            "9223372036854775807",
            "9223372036854775808",
            "18446744073709551616",
            "%31",
            "%ff",
            "%",
            "١",
        ];
        let value = prop_oneof![
            12 => proptest::sample::select(edges).prop_map(str::to_owned),
            1 => "[0-9]{1,30}",
            1 => any::<String>(),
        ];
        let pair = (name, prop_oneof![Just("="), Just("")], value)
            .prop_map(|(n, eq, v)| format!("{n}{eq}{v}"));
        prop_oneof![
            proptest::collection::vec(pair, 0..6).prop_map(|p| p.join("&")),
            any::<String>(),
        ]
    }

    proptest! {
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
    }
}
