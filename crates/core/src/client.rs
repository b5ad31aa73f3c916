//! The HTTP client for protocol v1 (reqwest). The token goes only to the configured origin:
//! redirects are followed only within it, and the URL was checked to be HTTPS or loopback.

use std::sync::Once;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::de::DeserializeOwned;

use crate::protocol::{Account, BuildsPage, EventsPage, Usage};
use crate::secret::Token;
use crate::server_url::ServerUrl;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_REDIRECTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the server rejected the token ({status})")]
    Unauthorized { status: u16 },
    #[error("the event history this client needs is gone from the server ({reason})")]
    HistoryExpired { reason: String },
    #[error("the server asks to slow down ({status}); retry after {retry_after:?}")]
    RateLimited {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("the server answered {status}: {message}")]
    Server { status: u16, message: String },
    #[error("the server redirected to another origin ({0}); the token is not sent there")]
    CrossOriginRedirect(String),
    #[error("cannot reach the server: {0}")]
    Transport(String),
    #[error("the server's answer is not what protocol v1 says: {0}")]
    Decode(String),
}

impl ApiError {
    pub fn is_auth(&self) -> bool {
        matches!(self, Self::Unauthorized { .. })
    }
}

/// Installs rustls' `ring` provider once per process: reqwest is built without a default
/// provider (to avoid building aws-lc), and rustls panics on first use without one.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A reqwest client that follows redirects only within `server`'s origin. No client-wide
/// timeout: streams are long-lived; API calls set their own.
pub fn http_client(server: &ServerUrl) -> Result<reqwest::Client, ApiError> {
    install_crypto_provider();
    let home = server.clone();
    reqwest::Client::builder()
        .user_agent(concat!("Quotabell/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS || !home.same_origin(attempt.url()) {
                attempt.stop()
            } else {
                attempt.follow()
            }
        }))
        .build()
        .map_err(|e| ApiError::Transport(e.to_string()))
}

#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    server: ServerUrl,
    token: Token,
}

impl ApiClient {
    pub fn new(server: ServerUrl, token: Token) -> Result<Self, ApiError> {
        Ok(Self {
            http: http_client(&server)?,
            server,
            token,
        })
    }

    pub fn server(&self) -> &ServerUrl {
        &self.server
    }

    pub fn token(&self) -> &Token {
        &self.token
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub async fn account(&self) -> Result<Account, ApiError> {
        self.get("account", REQUEST_TIMEOUT).await
    }

    pub async fn usage(&self) -> Result<Usage, ApiError> {
        self.get("usage", REQUEST_TIMEOUT).await
    }

    pub async fn builds_after(&self, after: i64, limit: u32) -> Result<BuildsPage, ApiError> {
        self.get(
            &format!("builds?after={after}&limit={limit}"),
            REQUEST_TIMEOUT,
        )
        .await
    }

    /// A page of events after `cursor`; with `wait` the server holds the request until an
    /// event arrives (long-poll), up to that many seconds.
    pub async fn events_after(
        &self,
        cursor: Option<&str>,
        limit: u32,
        wait: Option<u32>,
    ) -> Result<EventsPage, ApiError> {
        let mut path = format!("events?limit={limit}");
        if let Some(c) = cursor {
            path.push_str("&after=");
            path.push_str(&encode(c));
        }
        if let Some(w) = wait {
            path.push_str(&format!("&wait={w}"));
        }
        let timeout = REQUEST_TIMEOUT + Duration::from_secs(u64::from(wait.unwrap_or(0)));
        self.get(&path, timeout).await
    }

    /// `/account` with the server's clock (its `Date` header, unix seconds), for `doctor`.
    pub async fn probe(&self) -> Result<(Account, Option<i64>), ApiError> {
        let res = self.fetch("account", REQUEST_TIMEOUT).await?;
        let date = res
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|d| d.to_str().ok())
            .and_then(|d| jiff::fmt::rfc2822::parse(d).ok())
            .map(|z| z.timestamp().as_second());
        Ok((decode(res).await?, date))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, timeout: Duration) -> Result<T, ApiError> {
        decode(self.fetch(path, timeout).await?).await
    }

    /// A successful response to `GET path`, or the error its status means.
    async fn fetch(&self, path: &str, timeout: Duration) -> Result<reqwest::Response, ApiError> {
        let url = self.server.api(path);
        let res = self
            .http
            .get(url)
            .bearer_auth(self.token.expose())
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| ApiError::Transport(without_url(&e)))?;
        let status = res.status();
        if status.is_success() {
            return Ok(res);
        }
        let headers = res.headers().clone();
        let final_url = res.url().clone();
        let body: serde_json::Value = res.json().await.unwrap_or_default();
        Err(status_error(
            status,
            &headers,
            &body,
            &self.server,
            &final_url,
            &self.token,
        ))
    }
}

async fn decode<T: DeserializeOwned>(res: reqwest::Response) -> Result<T, ApiError> {
    let bytes = res
        .bytes()
        .await
        .map_err(|e| ApiError::Transport(without_url(&e)))?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::Decode(e.to_string()))
}

/// Maps a non-success status to the error the engine acts on.
pub fn status_error(
    status: StatusCode,
    headers: &HeaderMap,
    body: &serde_json::Value,
    server: &ServerUrl,
    url: &reqwest::Url,
    token: &Token,
) -> ApiError {
    let mut message = body
        .pointer("/error/message")
        .and_then(|m| m.as_str())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or(""))
        // Server text ends up in logs and in the stored connection detail: a server or proxy
        // that echoes the request must not put the token there.
        .replace(token.expose(), "***");
    if message.contains(token.expose()) {
        // A token of asterisks ("*") is rebuilt by its own replacement.
        message = "(the server's message repeated the token; withheld)".to_owned();
    }
    match status.as_u16() {
        401 | 403 => ApiError::Unauthorized {
            status: status.as_u16(),
        },
        410 => ApiError::HistoryExpired {
            reason: body
                .pointer("/error/reason")
                .and_then(|m| m.as_str())
                .unwrap_or("gone")
                .to_owned(),
        },
        429 | 503 => ApiError::RateLimited {
            status: status.as_u16(),
            retry_after: retry_after(headers),
        },
        300..=399 => {
            let target = headers
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| url.join(l).ok());
            match target {
                Some(t) if !server.same_origin(&t) => {
                    ApiError::CrossOriginRedirect(t.origin().ascii_serialization())
                }
                _ => ApiError::Server {
                    status: status.as_u16(),
                    message: "too many redirects".into(),
                },
            }
        }
        s => ApiError::Server { status: s, message },
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare for APIs and treated as absent).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(3600)))
}

/// A transport error with its causes ("error decoding response body" alone says little). reqwest
/// errors print the URL; ours carry no secrets in URLs, but the path is enough.
pub(crate) fn without_url(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    if let Some(url) = e.url() {
        msg = msg.replace(url.as_str(), url.path());
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_rebuilt_by_its_own_replacement_is_withheld() {
        // Found by fuzz_status_error: token "*" in an echoed message became "***".
        let server = ServerUrl::parse("http://127.0.0.1:1").unwrap();
        let url = reqwest::Url::parse("http://127.0.0.1:1/api/v1/usage").unwrap();
        for (token, echoed) in [("*", "*"), ("a*", "aa**")] {
            let token = Token::new(token).unwrap();
            let body = serde_json::json!({"error": {"message": echoed}});
            let err = status_error(
                StatusCode::BAD_GATEWAY,
                &HeaderMap::new(),
                &body,
                &server,
                &url,
                &token,
            );
            let ApiError::Server { message, .. } = err else {
                panic!("{err:?}")
            };
            assert!(!message.contains(token.expose()), "{message:?}");
        }
    }
}

/// Property tests ("fuzzing" on stable Rust; see `strategies.rs`).
#[cfg(test)]
mod props;
