//! `GET /events?after=ID&limit=N&wait=S`: the event log over plain HTTP, for catch-up and for
//! clients behind proxies that buffer streams (they long-poll with `wait`).

use std::time::Duration;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;

use super::{AuthUser, Params, Shared, epoch_header};
use crate::error::{ApiError, StoreError};
use crate::events::{self, LogBounds, StoredEvent, WireEvent};
use crate::store::Sql;

const MAX_WAIT_SECS: u64 = 30;

pub async fn list(
    State(st): State<Shared>,
    AuthUser(user): AuthUser,
    RawQuery(raw): RawQuery,
) -> Result<axum::response::Response, ApiError> {
    let p = Params::parse(raw.as_deref());
    let after = p.u64("after")?;
    let limit = p.limit(1000, 5000)? as usize;
    let wait = match p.u64("wait")? {
        Some(w) if w > MAX_WAIT_SECS => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("query parameter `wait` must be at most {MAX_WAIT_SECS}"),
            )
            .with("field", "wait"));
        }
        w => Duration::from_secs(w.unwrap_or(0)),
    };

    // Subscribe before the first page is read so that an event committed in between still
    // wakes us.
    let (last_id, epoch) = st
        .read(move |sql| {
            Ok((
                events::bounds(sql, user)?.last_id,
                events::epoch(sql, user)?.unwrap_or_default(),
            ))
        })
        .await?;
    let hub = st.hubs.hub(user, last_id, &epoch);
    let mut newest = hub.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    let mut shutdown = st.shutdown.clone();
    loop {
        newest.borrow_and_update();
        let page = st
            .read(move |sql| read_page(sql, user, after, limit))
            .await?;
        let (bounds, epoch, evs) = match page {
            Page::Events {
                bounds,
                epoch,
                events,
            } => (bounds, epoch, events),
            Page::Gone {
                bounds,
                epoch,
                reason,
            } => {
                let err = ApiError::new(
                    StatusCode::GONE,
                    "history_expired",
                    "the cursor is outside the retained event history; resync from /usage and /builds",
                )
                .with("reason", reason)
                .with("oldest_id", (bounds.pruned_through + 1).to_string())
                .with("last_event_id", bounds.last_id.to_string())
                .with("stream_epoch", epoch.clone());
                return Ok(([epoch_header(&epoch)], err).into_response());
            }
        };
        let now = tokio::time::Instant::now();
        if !evs.is_empty() || now >= deadline || *shutdown.borrow() {
            let body = EventsPage {
                events: evs.iter().map(StoredEvent::wire).collect(),
                has_more: evs.last().is_some_and(|e| e.id < bounds.last_id),
                last_event_id: bounds.last_id.to_string(),
                stream_epoch: &epoch,
            };
            return Ok(([epoch_header(&epoch)], Json(body)).into_response());
        }
        tokio::select! {
            _ = newest.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// A page of `/events`, its fields in the order a `serde_json::Value` map (sorted keys)
/// wrote them.
#[derive(serde::Serialize)]
struct EventsPage<'a> {
    events: Vec<WireEvent<'a>>,
    has_more: bool,
    last_event_id: String,
    stream_epoch: &'a str,
}

enum Page {
    Events {
        bounds: LogBounds,
        epoch: String,
        events: Vec<StoredEvent>,
    },
    Gone {
        bounds: LogBounds,
        epoch: String,
        reason: &'static str,
    },
}

fn read_page(
    sql: &mut dyn Sql,
    user: i64,
    after: Option<u64>,
    limit: usize,
) -> Result<Page, StoreError> {
    // One read transaction, so bounds, epoch and events are one consistent snapshot.
    sql.snapshot(|sql| {
        let bounds = events::bounds(sql, user)?;
        let epoch = events::epoch(sql, user)?.unwrap_or_default();
        let cursor = after.unwrap_or(bounds.pruned_through);
        if cursor < bounds.pruned_through {
            return Ok(Page::Gone {
                bounds,
                epoch,
                reason: "expired",
            });
        }
        if cursor > bounds.last_id {
            return Ok(Page::Gone {
                bounds,
                epoch,
                reason: "ahead",
            });
        }
        let events = events::after(sql, user, cursor, limit)?;
        Ok(Page::Events {
            bounds,
            epoch,
            events,
        })
    })
}
