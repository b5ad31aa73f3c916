//! One SSE connection, through eventsource-client with a reqwest transport of ours.
//!
//! The crate parses the event stream; Quotabell owns everything around it, because the crate
//! gets several things wrong for us (recorded in ARCHITECTURE.md): its reconnect loop forgets
//! the last event id when an event has none, retries a 204 forever, never checks the
//! Content-Type, and forwards every header (including Authorization) on redirects to any
//! origin. So: reconnect is off and the engine reconnects with its stored cursor; the
//! transport checks the status and the Content-Type before the crate sees a byte; the crate
//! never holds the token (the transport adds it, only for our origin) and redirects are
//! refused by reqwest outside the origin; a watchdog ends a connection that stays silent
//! for 2.5 keepalive intervals; and `SseGuard` bounds the size of one event, strips only the
//! first BOM and hands the crate only lines it parses right. Invalid UTF-8 is replaced with
//! U+FFFD here (the crate would fail the connection, and the same event every reconnect).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use es::Client as _;
use eventsource_client as es;
use futures_util::{Stream, StreamExt};
use launchdarkly_sdk_transport::{ByteStream, HttpTransport, ResponseFuture, TransportError};

use crate::client::{ApiClient, ApiError, status_error};
use crate::sse_guard::{OVERSIZED, SseGuard, replace_invalid_utf8};
use crate::store::Incoming;
use crate::wake::WakeWatch;

pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    /// The server's keepalive interval; silence for 2.5 times this ends the connection.
    pub keepalive: Duration,
    pub max_event_bytes: usize,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            keepalive: Duration::from_secs(15),
            max_event_bytes: MAX_EVENT_BYTES,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("the server answered 204 No Content: it asks clients not to stream")]
    NoContent,
    #[error("the server did not answer with an event stream (Content-Type {0:?})")]
    WrongContentType(String),
    #[error("no data for {0:?} (keepalive missed): the connection is stalled")]
    Stalled(Duration),
    #[error("the stream ended")]
    Ended,
    #[error("event stream error: {0}")]
    Protocol(String),
}

/// What a connection delivers.
#[derive(Debug)]
pub enum StreamItem {
    Connected {
        epoch: Option<String>,
    },
    Event(Incoming),
    /// The server replaced unreachable history with a reset (its data says why).
    Reset {
        id: Option<String>,
        data: String,
    },
    /// An event over the size limit was dropped; its id (if it had one) is known.
    Oversized {
        id: Option<String>,
        data: String,
    },
}

/// Reads what the connection learned besides events: the server's `retry:` hint.
#[derive(Clone)]
pub struct Probe(Arc<Mutex<Shared>>);

impl Probe {
    pub fn retry(&self) -> Option<Duration> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retry_ms
            .map(Duration::from_millis)
    }
}

#[derive(Default)]
struct Shared {
    epoch: Option<String>,
    retry_ms: Option<u64>,
}

#[derive(Clone)]
struct Transport {
    api: ApiClient,
    settings: StreamSettings,
    shared: Arc<Mutex<Shared>>,
    /// Looked at with every chunk (keepalives included) and at a stall: the moments the
    /// engine is awake anyway, where a suspend shows as wall time moving unlike monotonic.
    wake: WakeWatch,
}

impl HttpTransport for Transport {
    fn request(&self, req: http::Request<Option<Bytes>>) -> ResponseFuture {
        let this = self.clone();
        Box::pin(async move {
            // The watchdog covers the response head too: a server (or proxy) that accepts the
            // connection and never answers would otherwise hold the engine here for good.
            let silence = head_timeout(this.settings.keepalive);
            match tokio::time::timeout(silence, this.open(req)).await {
                Ok(res) => res.map_err(TransportError::new),
                Err(_) => Err(TransportError::new(StreamError::Stalled(silence))),
            }
        })
    }
}

impl Transport {
    async fn open(
        self,
        req: http::Request<Option<Bytes>>,
    ) -> Result<http::Response<ByteStream>, StreamError> {
        let url = reqwest::Url::parse(&req.uri().to_string())
            .map_err(|e| StreamError::Protocol(e.to_string()))?;
        if !self.api.server().same_origin(&url) {
            return Err(ApiError::CrossOriginRedirect(url.origin().ascii_serialization()).into());
        }
        let mut builder = self
            .api
            .http()
            .get(url)
            .bearer_auth(self.api.token().expose())
            .header("accept", "text/event-stream")
            .header("cache-control", "no-cache");
        if let Some(id) = req.headers().get("last-event-id") {
            builder = builder.header("last-event-id", id.clone());
        }
        let res = builder
            .send()
            .await
            .map_err(|e| ApiError::Transport(crate::client::without_url(&e)))?;
        let status = res.status();
        if status == reqwest::StatusCode::NO_CONTENT {
            return Err(StreamError::NoContent);
        }
        if !status.is_success() {
            let headers = res.headers().clone();
            let final_url = res.url().clone();
            let body: serde_json::Value = res.json().await.unwrap_or_default();
            return Err(status_error(
                status,
                &headers,
                &body,
                self.api.server(),
                &final_url,
                self.api.token(),
            )
            .into());
        }
        let content_type = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let mime = content_type.split(';').next().unwrap_or("").trim();
        if !mime.eq_ignore_ascii_case("text/event-stream") {
            return Err(StreamError::WrongContentType(content_type));
        }
        let epoch = res
            .headers()
            .get("stream-epoch")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.shared.lock().unwrap_or_else(|e| e.into_inner()).epoch = epoch;

        // The body is pumped by a task: it applies the watchdog and the guard, and hands over
        // whole blocks through a channel (whose receiver is the Sync stream the crate needs).
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, TransportError>>(16);
        let silence = self.settings.keepalive.mul_f64(2.5);
        let max = self.settings.max_event_bytes;
        let shared = self.shared.clone();
        let wake = self.wake.clone();
        let mut body = res.bytes_stream();
        tokio::spawn(async move {
            let mut guard = SseGuard::new(max);
            loop {
                let next = tokio::select! {
                    // The engine dropped the connection: close it now, not at the next byte.
                    _ = tx.closed() => return,
                    next = tokio::time::timeout(silence, body.next()) => next,
                };
                let chunk = match next {
                    Err(_) => {
                        wake.look();
                        let _ = tx
                            .send(Err(TransportError::new(StreamError::Stalled(silence))))
                            .await;
                        return;
                    }
                    Ok(None) => return,
                    Ok(Some(Err(e))) => {
                        wake.look();
                        let _ = tx
                            .send(Err(TransportError::new(ApiError::Transport(
                                crate::client::without_url(&e),
                            ))))
                            .await;
                        return;
                    }
                    Ok(Some(Ok(chunk))) => chunk,
                };
                let blocks = guard.push(&chunk);
                // Before the blocks: whoever sees an event after a `retry:` sees the hint too.
                if let Some(ms) = guard.retry_ms.take() {
                    shared.lock().unwrap_or_else(|e| e.into_inner()).retry_ms = Some(ms);
                }
                for block in blocks {
                    if tx.send(Ok(replace_invalid_utf8(block))).await.is_err() {
                        return; // the connection was dropped by the engine
                    }
                }
                // After the chunk is handed over: its events are the engine's before a clock
                // jump seen with them is announced as a wake.
                wake.look();
            }
        });
        let stream: ByteStream = Box::pin(tokio_stream_from(rx));
        http::Response::builder()
            .status(status.as_u16())
            .body(stream)
            .map_err(|e| StreamError::Protocol(e.to_string()))
    }
}

/// How long a connection may take to answer with its status and headers: the watchdog's
/// 2.5 keepalive intervals, but never under a second.
fn head_timeout(keepalive: Duration) -> Duration {
    keepalive.mul_f64(2.5).max(Duration::from_secs(1))
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl Stream<Item = T> + Send + Sync {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Opens one connection resuming after `cursor`. The returned stream ends after the first
/// error, which it yields: the engine decides whether and when to reconnect.
pub fn connect(
    api: &ApiClient,
    cursor: Option<&str>,
    settings: StreamSettings,
    wake: &WakeWatch,
) -> Result<
    (
        impl Stream<Item = Result<StreamItem, StreamError>> + Send + use<>,
        Probe,
    ),
    StreamError,
> {
    let shared = Arc::new(Mutex::new(Shared::default()));
    let transport = Transport {
        api: api.clone(),
        settings,
        shared: shared.clone(),
        wake: wake.clone(),
    };
    let mut builder = es::ClientBuilder::for_url(api.server().api("stream").as_str())
        .map_err(|e| StreamError::Protocol(e.to_string()))?
        .reconnect(
            es::ReconnectOptions::reconnect(false)
                .retry_initial(false)
                .build(),
        )
        .redirect_limit(0);
    if let Some(c) = cursor {
        builder = builder.last_event_id(c.to_owned());
    }
    let client = builder.build_with_transport(transport);
    let probe = Probe(shared.clone());
    let stream = client.stream().filter_map(move |item| {
        let shared = shared.clone();
        let out = match item {
            Ok(es::SSE::Connected(_)) => {
                let epoch = shared.lock().unwrap_or_else(|e| e.into_inner()).epoch.clone();
                Some(Ok(StreamItem::Connected { epoch }))
            }
            Ok(es::SSE::Comment(_)) => None,
            Ok(es::SSE::Event(ev)) => Some(Ok(match ev.event_type.as_str() {
                "sync.reset" => StreamItem::Reset { id: ev.id, data: ev.data },
                OVERSIZED => StreamItem::Oversized { id: ev.id, data: ev.data },
                _ => match ev.id {
                    Some(id) if !id.is_empty() => StreamItem::Event(Incoming { id, kind: ev.event_type, data: ev.data }),
                    _ => {
                        tracing::warn!(kind = %ev.event_type, "event without an id ignored (protocol v1 ids every event)");
                        return std::future::ready(None);
                    }
                },
            })),
            Err(es::Error::Transport(t)) => Some(Err(unwrap_transport(t))),
            Err(es::Error::Eof) => Some(Err(StreamError::Ended)),
            Err(e) => Some(Err(StreamError::Protocol(e.to_string()))),
        };
        std::future::ready(out)
    });
    Ok((stream, probe))
}

/// Recovers our own error from the crate's transport error wrapper.
fn unwrap_transport(t: TransportError) -> StreamError {
    let inner = t.inner();
    if let Some(e) = inner.downcast_ref::<StreamError>() {
        return match e {
            StreamError::Api(a) => StreamError::Api(clone_api(a)),
            StreamError::NoContent => StreamError::NoContent,
            StreamError::WrongContentType(c) => StreamError::WrongContentType(c.clone()),
            StreamError::Stalled(d) => StreamError::Stalled(*d),
            StreamError::Ended => StreamError::Ended,
            StreamError::Protocol(p) => StreamError::Protocol(p.clone()),
        };
    }
    if let Some(a) = inner.downcast_ref::<ApiError>() {
        return StreamError::Api(clone_api(a));
    }
    StreamError::Protocol(inner.to_string())
}

fn clone_api(a: &ApiError) -> ApiError {
    match a {
        ApiError::Unauthorized { status } => ApiError::Unauthorized { status: *status },
        ApiError::HistoryExpired { reason } => ApiError::HistoryExpired {
            reason: reason.clone(),
        },
        ApiError::RateLimited {
            status,
            retry_after,
        } => ApiError::RateLimited {
            status: *status,
            retry_after: *retry_after,
        },
        ApiError::Server { status, message } => ApiError::Server {
            status: *status,
            message: message.clone(),
        },
        ApiError::CrossOriginRedirect(o) => ApiError::CrossOriginRedirect(o.clone()),
        ApiError::Transport(t) => ApiError::Transport(t.clone()),
        ApiError::Decode(d) => ApiError::Decode(d.clone()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::secret::Token;
    use crate::server_url::ServerUrl;

    #[tokio::test]
    async fn a_server_that_never_answers_is_a_stall_not_a_hang() {
        // Accepts the connection (the kernel does, from the backlog) and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let api =
            ApiClient::new(ServerUrl::parse(&url).unwrap(), Token::new("t").unwrap()).unwrap();
        let settings = StreamSettings {
            keepalive: Duration::from_millis(100),
            ..StreamSettings::default()
        };
        let wake = WakeWatch::new(Arc::new(crate::clock::SystemClock), Duration::from_secs(10));
        let (mut events, _) = connect(&api, Some("3"), settings, &wake).unwrap();
        let started = Instant::now();
        let first = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("the watchdog covers the response head");
        assert!(
            matches!(first, Some(Err(StreamError::Stalled(_)))),
            "{first:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        drop(listener);
    }

    /// The stream's keepalives are when a suspend is noticed: nothing else looks at the clock.
    #[tokio::test]
    async fn a_keepalive_after_a_clock_jump_announces_a_wake() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 4096];
            let _ = tcp.read(&mut head).await;
            tcp.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
            )
            .await
            .unwrap();
            loop {
                if tcp.write_all(b"3\r\n:\n\n\r\n").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let api =
            ApiClient::new(ServerUrl::parse(&url).unwrap(), Token::new("t").unwrap()).unwrap();
        let clock = Arc::new(crate::wake::tests::JumpingClock::default());
        let wake = WakeWatch::new(clock.clone(), Duration::from_secs(10));
        let mut woke = wake.subscribe();
        let (mut events, _) = connect(&api, Some("0"), StreamSettings::default(), &wake).unwrap();
        let reader = tokio::spawn(async move { while events.next().await.is_some() {} });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !woke.has_changed().unwrap(),
            "keepalives with the clocks agreeing"
        );
        clock.0.store(3600, std::sync::atomic::Ordering::SeqCst); // an hour asleep
        tokio::time::timeout(Duration::from_secs(5), woke.changed())
            .await
            .expect("the next keepalive notices the jump")
            .unwrap();
        reader.abort();
    }
}

/// Property tests ("fuzzing" on stable Rust; see `strategies.rs`).
#[cfg(test)]
mod props;
