//! The store's ingest of arbitrary events, ids and payloads into a real SQLite file.

use std::collections::HashSet;

use proptest::prelude::*;

use crate::policy::{self, Context, Settings};
use crate::protocol::Usage;
use crate::store::tests::open as open_store;
use crate::store::{Incoming, Source, Store};
use crate::strategies::{cases, event_data, event_kind, settings, text, usage_json};

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
