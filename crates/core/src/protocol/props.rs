//! The protocol decoders over arbitrary bytes and arbitrary JSON.

use proptest::prelude::*;

use crate::policy::Settings;
use crate::protocol::{
    Account, Build, BuildsPage, EventsPage, Plan, QuotaObservation, Usage, WireEvent, kind,
};
use crate::strategies::{event_kind, json, quota_payload};

fn decode_all(bytes: &[u8]) {
    let _ = serde_json::from_slice::<Usage>(bytes);
    let _ = serde_json::from_slice::<Account>(bytes);
    let _ = serde_json::from_slice::<Plan>(bytes);
    let _ = serde_json::from_slice::<Build>(bytes);
    let _ = serde_json::from_slice::<BuildsPage>(bytes);
    let _ = serde_json::from_slice::<WireEvent>(bytes);
    let _ = serde_json::from_slice::<EventsPage>(bytes);
    let _ = serde_json::from_slice::<Settings>(bytes);
}

proptest! {
    /// Every protocol type from arbitrary bytes: an error or a value, never a panic.
    #[test]
    fn fuzz_protocol_from_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
    }

    /// ... and from arbitrary JSON (which reaches past the syntax into the fields). A value
    /// that decodes survives a round trip unchanged; a quota observation reads exactly the
    /// fields it names.
    #[test]
    fn fuzz_protocol_from_json(v in json(), q in quota_payload(), k in event_kind()) {
        decode_all(v.to_string().as_bytes());
        if let Ok(u) = serde_json::from_value::<Usage>(v.clone()) {
            let back: Usage = serde_json::from_str(&serde_json::to_string(&u).unwrap()).unwrap();
            prop_assert_eq!(back, u);
        }
        for data in [&v, &q] {
            if let Some(obs) = QuotaObservation::from_event(&k, data) {
                prop_assert!(matches!(k.as_str(), kind::QUOTA_UPDATED | kind::QUOTA_WARNING | kind::QUOTA_EXCEEDED));
                prop_assert_eq!(Some(obs.used), data["used"].as_i64());
                prop_assert_eq!(Some(obs.limit), data["limit"].as_i64());
            }
        }
    }
}
