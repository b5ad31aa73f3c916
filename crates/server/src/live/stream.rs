//! `GET /stream`: the user's events as Server-Sent Events.
//!
//! A stream always reads after its own cursor, from the hub's tail when that reaches back far
//! enough and from the database otherwise, so a slow or lagging client loses nothing and never
//! sees an event twice. A cursor the log cannot serve (pruned, or ahead of the newest id) gets
//! one `sync.reset` instead of a silent skip.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::watch;

use super::direct::Sink;
use super::hub::UserHub;
use crate::api::{self, AuthUser, Shared, epoch_header};
use crate::error::ApiError;
use crate::events::{self, LogBounds};

/// Events sent in one chunk at most; bounds the memory a far-behind stream holds at once.
const PAGE: usize = 256;

pub async fn open(
    State(st): State<Shared>,
    AuthUser(user): AuthUser,
    sink: Option<Extension<Arc<Sink>>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let requested = requested_cursor(&headers);
    let (bounds, epoch) = st
        .read(move |c| {
            Ok((
                events::bounds(c, user)?,
                events::epoch(c, user)?.unwrap_or_default(),
            ))
        })
        .await?;
    let hub = st.hubs.hub(user, bounds.last_id, &epoch);
    let newest = hub.subscribe();

    let mut prelude = format!("retry: {}\n\n", st.stream.retry.as_millis());
    let cursor = match requested {
        // No cursor: the client starts live; it learns the past from /usage and /events.
        None => bounds.last_id,
        Some(Ok(id)) if id >= bounds.pruned_through && id <= bounds.last_id => id,
        Some(other) => {
            let reason = match other {
                Ok(id) if id > bounds.last_id => "ahead",
                Ok(_) => "expired",
                Err(()) => "invalid",
            };
            prelude.push_str(&sync_reset(bounds, &epoch, reason));
            bounds.last_id
        }
    };

    let state = StreamState {
        st: st.clone(),
        user,
        hub,
        newest,
        shutdown: st.shutdown.clone(),
        sink: sink.map(|Extension(s)| s),
        attached: false,
        cursor,
        pending: Some(Bytes::from(prelude)),
        keepalive: Box::pin(tokio::time::sleep(st.stream.keepalive)),
    };
    let body = Body::from_stream(futures_util::stream::unfold(state, next_chunk));
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    let (name, value) = epoch_header(&epoch);
    h.insert(name, value);
    Ok(res)
}

/// The `Last-Event-ID` a client resumes after: none (absent or blank), a valid id, or
/// `Err` for anything else (answered with a `sync.reset`, reason `invalid`).
fn requested_cursor(headers: &HeaderMap) -> Option<Result<u64, ()>> {
    headers.get("last-event-id").and_then(|v| {
        let text = String::from_utf8_lossy(v.as_bytes());
        let text = text.trim();
        (!text.is_empty()).then(|| api::parse_id(text).ok_or(()))
    })
}

/// The synthetic event that replaces history a cursor cannot reach. Its id is the newest id,
/// so a client that follows the SSE rules resumes after it once it has resynced.
fn sync_reset(bounds: LogBounds, epoch: &str, reason: &str) -> String {
    let data = json!({
        "reason": reason,
        "oldest_id": (bounds.pruned_through + 1).to_string(),
        "last_event_id": bounds.last_id.to_string(),
        "stream_epoch": epoch,
    });
    format!(
        "id: {}\nevent: {}\ndata: {data}\n\n",
        bounds.last_id,
        events::SYNC_RESET
    )
}

struct StreamState {
    st: Shared,
    user: i64,
    hub: Arc<UserHub>,
    newest: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
    /// Set when the connection is served by `stream_conn`: while idle, the stream parks its
    /// socket with the hub, which writes live batches to it directly (see `direct`).
    sink: Option<Arc<Sink>>,
    attached: bool,
    cursor: u64,
    pending: Option<Bytes>,
    /// One timer per stream, pushed back after every chunk: a keepalive goes out only after
    /// `keepalive` of silence.
    keepalive: Pin<Box<tokio::time::Sleep>>,
}

async fn next_chunk(mut s: StreamState) -> Option<(Result<Bytes, Infallible>, StreamState)> {
    if let Some(bytes) = s.pending.take() {
        return Some((Ok(bytes), s));
    }
    loop {
        if *s.shutdown.borrow() || s.hub.is_retired() {
            return None;
        }
        let newest = *s.newest.borrow_and_update();
        // Nothing announced past the cursor: wait without touching the tail. Otherwise the
        // tail is used when it reaches back to the cursor and is not behind what the hub
        // announced (an outside write may be announced before it is in the tail).
        let from_tail = if newest <= s.cursor {
            Some(None)
        } else {
            s.hub.after(s.cursor, PAGE).filter(|c| c.is_some())
        };
        if let Some(chunk) = from_tail {
            if let Some(chunk) = chunk {
                s.cursor = chunk.last_id;
                s.keepalive
                    .as_mut()
                    .reset(tokio::time::Instant::now() + s.st.stream.keepalive);
                return Some((Ok(chunk.bytes), s));
            }
        } else {
            let (user, cursor) = (s.user, s.cursor);
            let page =
                s.st.read(move |c| {
                    let bounds = events::bounds(c, user)?;
                    if cursor < bounds.pruned_through {
                        let epoch = events::epoch(c, user)?.unwrap_or_default();
                        return Ok(Err((bounds, epoch)));
                    }
                    Ok(Ok(events::after(c, user, cursor, PAGE)?))
                })
                .await;
            match page {
                Ok(Ok(evs)) if !evs.is_empty() => {
                    s.cursor = evs[evs.len() - 1].id;
                    s.keepalive
                        .as_mut()
                        .reset(tokio::time::Instant::now() + s.st.stream.keepalive);
                    let text: String = evs.iter().map(events::StoredEvent::sse_frame).collect();
                    return Some((Ok(Bytes::from(text)), s));
                }
                Ok(Ok(_)) => {}
                Ok(Err((bounds, epoch))) => {
                    s.cursor = bounds.last_id;
                    return Some((Ok(Bytes::from(sync_reset(bounds, &epoch, "expired"))), s));
                }
                // The database is unavailable: end the stream; the client reconnects with its
                // Last-Event-ID and loses nothing.
                Err(_) => return None,
            }
        }
        if let Some(sink) = s.sink.clone() {
            if !sink.park(s.cursor) {
                // The hub left part of a chunk unwritten: an empty chunk lets the writer send
                // the rest before this stream parks again.
                return Some((Ok(Bytes::new()), s));
            }
            if !s.attached {
                s.hub.attach(&sink);
                s.attached = true;
            }
            // A commit announced between the check above and the parking was not offered to
            // this sink: take the socket back and send it ourselves.
            if s.hub.newest() > s.cursor || s.hub.is_retired() {
                s.cursor = sink.unpark().0;
                continue;
            }
            let woken = tokio::select! {
                () = sink.woken() => true,
                _ = s.keepalive.as_mut() => false,
                _ = s.shutdown.changed() => {
                    sink.unpark();
                    return None;
                }
            };
            let (cursor, written_at) = sink.unpark();
            s.cursor = cursor;
            if woken {
                continue;
            }
            // The keepalive counts silence since the last write, the hub's included.
            let now = tokio::time::Instant::now();
            if let Some(due) = written_at
                .map(|at| at + s.st.stream.keepalive)
                .filter(|due| *due > now)
            {
                s.keepalive.as_mut().reset(due);
                continue;
            }
            s.keepalive.as_mut().reset(now + s.st.stream.keepalive);
            return Some((Ok(Bytes::from_static(b":\n\n")), s));
        }
        tokio::select! {
            changed = s.newest.changed() => {
                if changed.is_err() {
                    return None;
                }
            }
            _ = s.keepalive.as_mut() => {
                s.keepalive.as_mut().reset(tokio::time::Instant::now() + s.st.stream.keepalive);
                return Some((Ok(Bytes::from_static(b":\n\n")), s));
            }
            _ = s.shutdown.changed() => return None,
        }
    }
}

/// Property test over `Last-Event-ID` parsing ("fuzzing" on stable Rust; see ARCHITECTURE.md,
/// Testing): any header value is no cursor, a valid id, or an invalid one, never a panic.
///
/// Short run: `cargo test -p quotabell-server fuzz_`; long run: the same with `--release` and
/// `PROPTEST_CASES=100000`.
#[cfg(test)]
mod fuzz {
    use axum::http::{HeaderMap, HeaderValue};
    use proptest::prelude::*;

    use super::requested_cursor;

    proptest! {
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
}
