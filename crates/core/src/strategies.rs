//! Input generators shared by the property tests that sit beside each input path (`*/props.rs`:
//! the stream's parser, the protocol decoders, the policy, the store's ingest, the backoff, the
//! client's error answers, the settings form). Numbers and texts lean on the edge cases (zero,
//! the ends of i64, empty, non-ASCII), JSON leans on the protocol's field names so generated
//! values reach past the syntax into the decoders' fields.
//!
//! Short run (part of `cargo test --workspace`): `cargo test -p quotabell-core fuzz_`.
//! Long run: `PROPTEST_CASES=100000 cargo test --release -p quotabell-core --lib fuzz_`.

use proptest::prelude::*;
use serde_json::Value;

use crate::policy::Settings;
use crate::protocol::kind;

/// Numbers where the edge cases are: zero, negatives, the ends of i64, and small values.
pub(crate) fn number() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0i64),
        Just(-1),
        Just(i64::MIN),
        Just(i64::MAX),
        Just(i64::MAX / 100 + 1),
        -5i64..200,
        any::<i64>(),
    ]
}

pub(crate) fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("builds".to_owned()),
        Just("applications".to_owned()),
        Just("2026-11-01T00:00:00Z".to_owned()),
        Just("é".to_owned()),
        any::<String>(),
    ]
}

/// Any JSON value, with the protocol's field names common enough to reach the decoders' paths.
pub(crate) fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    let key = prop_oneof![
        Just("metric"),
        Just("used"),
        Just("limit"),
        Just("period"),
        Just("start"),
        Just("end"),
        Just("plan"),
        Just("name"),
        Just("id"),
        Just("hard_limit"),
        Just("quotas"),
        Just("title"),
        Just("body"),
        Just("url"),
        Just("severity"),
        Just("created_at"),
        Just("app"),
        Just("version"),
        Just("commit"),
        Just("overage"),
        Just("x"),
    ]
    .prop_map(str::to_owned);
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A quota-ish event payload: the fields the policy reads, with arbitrary numbers.
pub(crate) fn quota_payload() -> impl Strategy<Value = Value> {
    (
        text(),
        number(),
        number(),
        proptest::option::of((text(), text())),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(metric, used, limit, period, hard)| {
            let mut v = serde_json::json!({"metric": metric, "used": used, "limit": limit});
            if let Some((start, end)) = period {
                v["period"] = serde_json::json!({"start": start, "end": end});
            }
            if let Some(h) = hard {
                v["hard_limit"] = Value::Bool(h);
            }
            v
        })
}

pub(crate) fn event_kind() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(kind::BUILD_ACCEPTED.to_owned()),
        Just(kind::BUILD_REJECTED.to_owned()),
        Just(kind::QUOTA_UPDATED.to_owned()),
        Just(kind::QUOTA_WARNING.to_owned()),
        Just(kind::QUOTA_EXCEEDED.to_owned()),
        Just(kind::QUOTA_RESET.to_owned()),
        Just(kind::PLAN_CHANGED.to_owned()),
        Just(kind::NOTICE.to_owned()),
        Just(kind::SYNC_RESET.to_owned()),
        any::<String>(),
    ]
}

/// An event's data as text: valid JSON (quota-shaped or any), or arbitrary text.
pub(crate) fn event_data() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => quota_payload().prop_map(|v| v.to_string()),
        3 => json().prop_map(|v| v.to_string()),
        1 => any::<String>(),
        1 => Just("{".to_owned()),
    ]
}

pub(crate) fn settings() -> impl Strategy<Value = Settings> {
    (
        proptest::collection::vec(any::<u8>(), 0..6),
        proptest::option::of((any::<u16>(), any::<u16>())),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(number()),
    )
        .prop_map(
            |(thresholds, quiet_hours, urgent, rejected, paused)| Settings {
                thresholds,
                quiet_hours,
                urgent_through_quiet: urgent,
                notify_rejected_builds: rejected,
                paused_until: paused,
                ..Settings::default()
            },
        )
}

pub(crate) fn usage_json() -> impl Strategy<Value = Value> {
    (
        proptest::collection::vec((text(), number(), number()), 0..4),
        text(),
        any::<bool>(),
    )
        .prop_map(|(quotas, end, hard)| {
            serde_json::json!({
                "period": {"start": "2026-11-01T00:00:00Z", "end": end},
                "plan": {"id": "free", "name": "Free", "hard_limit": hard},
                "quotas": quotas.into_iter().map(|(m, u, l)| serde_json::json!({"metric": m, "used": u, "limit": l})).collect::<Vec<_>>(),
                "last_event_id": "0", "stream_epoch": "e"
            })
        })
}

/// The configured case count, unless PROPTEST_CASES asks for another.
pub(crate) fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
