//! The policy's decisions over arbitrary observations, settings and times.

use std::collections::HashSet;

use proptest::prelude::*;
use serde_json::Value;

use crate::ipc::{NotificationKind, NotificationState};
use crate::policy::{self, Context, Held, Observed};
use crate::protocol::Usage;
use crate::strategies::{event_kind, json, number, quota_payload, settings, text, usage_json};

fn check_decisions(
    decisions: &[policy::Decision],
    limit_positive: bool,
) -> Result<(), TestCaseError> {
    let keys: HashSet<&str> = decisions.iter().map(|d| d.dedupe_key.as_str()).collect();
    prop_assert_eq!(
        keys.len(),
        decisions.len(),
        "dedupe keys repeat: {:?}",
        decisions
    );
    // At most one notification per event is meant to be seen; the rest are logged only.
    prop_assert!(
        decisions
            .iter()
            .filter(|d| d.state != NotificationState::Suppressed)
            .count()
            <= 1
    );
    if !limit_positive {
        prop_assert!(decisions.iter().all(|d| d.kind != NotificationKind::Quota));
    }
    Ok(())
}

proptest! {
    /// Decisions over arbitrary observations, settings and times (limits of 0, negative use,
    /// numbers at the ends of i64): no panic, unique keys, at most one shown per event, none
    /// for a limit that is not positive, and none for a key already known.
    #[test]
    fn fuzz_policy_decide_event(
        s in settings(),
        now in number(),
        minute in any::<u16>(),
        catching_up in any::<bool>(),
        hard in any::<bool>(),
        k in event_kind(),
        data in prop_oneof![quota_payload(), json()],
        before in any::<bool>(),
        id in text(),
    ) {
        let ctx = Context { settings: &s, now_unix: now, local_minute: minute, catching_up, hard_limit: hard, plan_name: "Free" };
        let ev = Observed { epoch: "e", id: &id, kind: &k, data: Some(&data), before_sign_in: before, rejections: None };
        let first = policy::decide_event(&ctx, &ev, &mut |_| false);
        let limit_positive = data.get("limit").and_then(Value::as_i64).is_some_and(|l| l > 0);
        check_decisions(&first, limit_positive)?;
        if before {
            prop_assert!(first.is_empty());
        }
        let again = policy::decide_event(&ctx, &ev, &mut |_| true);
        prop_assert!(again.is_empty(), "decided twice: {:?}", again);
        let none = Observed { data: None, ..ev };
        prop_assert!(policy::decide_event(&ctx, &none, &mut |_| false).is_empty());
    }

    /// A usage snapshot's decisions and the digest over arbitrary numbers and titles.
    #[test]
    fn fuzz_policy_usage_and_digest(
        s in settings(),
        now in number(),
        minute in any::<u16>(),
        u in usage_json(),
        titles in proptest::collection::vec((text(), any::<bool>()), 0..20),
        away in any::<u64>(),
    ) {
        let usage: Usage = serde_json::from_value(u).unwrap();
        let ctx = Context { settings: &s, now_unix: now, local_minute: minute, catching_up: false, hard_limit: true, plan_name: "Free" };
        let decisions = policy::decide_usage(&ctx, &usage, &mut |_| false);
        for q in &usage.quotas {
            let mine: Vec<_> = decisions.iter().filter(|d| d.dedupe_key.starts_with(&format!("quota:{}:", q.metric))).cloned().collect();
            if usage.quotas.iter().filter(|o| o.metric.starts_with(&q.metric) || q.metric.starts_with(&o.metric)).count() == 1 {
                check_decisions(&mine, q.limit > 0)?;
            }
        }
        let held: Vec<Held> = titles.into_iter().map(|(title, urgent)| Held { title, urgent }).collect();
        let d = policy::digest(&held, away, Some(&usage), "1");
        // A long absence is a bounded message: eight titles at most, plus the summary.
        prop_assert!(d.body.matches("\n• ").count() <= 9);
        prop_assert_eq!(d.urgent, held.iter().any(|h| h.urgent));
    }
}
