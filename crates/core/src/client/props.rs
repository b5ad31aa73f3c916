//! A server's error answer, whatever it holds: a bounded wait and never the token in a message.

use std::time::Duration;

use proptest::prelude::*;

use crate::strategies::{json, text};

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
}
