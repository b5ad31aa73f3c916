//! The SSE parser as `stream.rs` feeds it: arbitrary bytes at arbitrary read boundaries through
//! the guard and eventsource-client.

use std::time::Duration;

use bytes::Bytes;
use es::Client as _;
use eventsource_client as es;
use futures_util::StreamExt;
use launchdarkly_sdk_transport::{ByteStream, HttpTransport, ResponseFuture, TransportError};
use proptest::prelude::*;

use crate::sse_guard::fuzz::{split, sse_bytes};
use crate::sse_guard::{OVERSIZED, SseGuard};
use crate::strategies::cases;

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
