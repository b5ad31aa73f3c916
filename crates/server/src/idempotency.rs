//! Retries without double builds. A build plugin that lost the answer to `POST /builds` (the
//! connection or the server died after the commit) cannot tell whether its build counted. With an
//! `Idempotency-Key` header it can simply send the same request again: the first outcome is
//! stored under the key in the same transaction as the build, and a retry gets that outcome back,
//! counting nothing and raising no event. Keys are per user and kept for `KEEP_SECS`.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::metric::Metric;
use crate::quota::{self, BuildOutcome, NewBuild};
use crate::store::{Sql, params};

/// How long a key is remembered: longer than any sensible retry loop, short enough that the
/// table stays small.
pub const KEEP_SECS: i64 = 24 * 60 * 60;
/// The longest key accepted (a UUID is 36).
pub const MAX_KEY_CHARS: usize = 255;

/// A client's `Idempotency-Key`: 1 to `MAX_KEY_CHARS` visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(header: &[u8]) -> Option<Self> {
        let ok = !header.is_empty()
            && header.len() <= MAX_KEY_CHARS
            && header.iter().all(|b| b.is_ascii_graphic());
        ok.then(|| Self(String::from_utf8_lossy(header).into_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a keyed (or unkeyed) build request came to.
#[derive(Debug)]
pub enum Recorded {
    /// Decided now.
    Fresh(BuildOutcome),
    /// The key's first outcome, given again (it has no events: they were published then).
    Replayed(BuildOutcome),
    /// The key was first used for a different build.
    KeyReused,
}

/// Records the build, or answers from the key's first outcome; inside the caller's transaction.
pub fn record_build(
    sql: &mut dyn Sql,
    user_id: i64,
    key: Option<&IdempotencyKey>,
    build: &NewBuild,
    now: i64,
) -> Result<Recorded, StoreError> {
    let Some(key) = key else {
        return Ok(Recorded::Fresh(quota::record_build(
            sql, user_id, build, now,
        )?));
    };
    let fingerprint = fingerprint(build);
    let prior = sql.query_opt(
        "SELECT fingerprint, outcome FROM idempotency_keys
         WHERE user_id = $1 AND key = $2 AND created_at > $3",
        params![user_id, key.as_str(), now - KEEP_SECS],
    )?;
    if let Some(row) = prior {
        if row.blob(0)? != fingerprint {
            return Ok(Recorded::KeyReused);
        }
        return Ok(Recorded::Replayed(decode(row.text(1)?)?));
    }
    let outcome = quota::record_build(sql, user_id, build, now)?;
    let stored = encode(&outcome).to_string();
    // An expired key is replaced: the retry window is over, so this is a new request.
    sql.execute(
        "INSERT INTO idempotency_keys (user_id, key, fingerprint, outcome, created_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (user_id, key) DO UPDATE
         SET fingerprint = excluded.fingerprint, outcome = excluded.outcome,
             created_at = excluded.created_at",
        params![user_id, key.as_str(), &fingerprint, &stored, now],
    )?;
    Ok(Recorded::Fresh(outcome))
}

/// Forgets keys older than `KEEP_SECS`.
pub fn prune(sql: &mut dyn Sql, now: i64) -> Result<u64, StoreError> {
    sql.execute(
        "DELETE FROM idempotency_keys WHERE created_at <= $1",
        params![now - KEEP_SECS],
    )
}

/// The request's identity: a retry must carry the same build.
fn fingerprint(build: &NewBuild) -> Vec<u8> {
    let mut h = Sha256::new();
    for field in [&build.app, &build.version, &build.commit] {
        h.update((field.len() as u64).to_le_bytes());
        h.update(field.as_bytes());
    }
    h.finalize().to_vec()
}

fn encode(outcome: &BuildOutcome) -> Value {
    match outcome {
        BuildOutcome::Accepted { build, .. } => json!({ "status": 201, "build": build }),
        BuildOutcome::Rejected {
            metric,
            used,
            limit,
            ..
        } => json!({ "status": 402, "metric": metric, "used": used, "limit": limit }),
    }
}

fn decode(stored: &str) -> Result<BuildOutcome, StoreError> {
    let bad = || StoreError::Corrupt(format!("stored idempotent outcome {stored:?}"));
    let v: Value = serde_json::from_str(stored).map_err(|_| bad())?;
    match v["status"].as_u64() {
        Some(201) => Ok(BuildOutcome::Accepted {
            build: v["build"].clone(),
            events: Vec::new(),
        }),
        Some(402) => Ok(BuildOutcome::Rejected {
            metric: v["metric"]
                .as_str()
                .and_then(|m| m.parse::<Metric>().ok())
                .ok_or_else(bad)?,
            used: v["used"].as_i64().ok_or_else(bad)?,
            limit: v["limit"].as_i64().ok_or_else(bad)?,
            events: Vec::new(),
        }),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_visible_ascii_of_bounded_length() {
        assert!(IdempotencyKey::parse(b"3f2c-9a").is_some());
        assert!(IdempotencyKey::parse(&[b'k'; MAX_KEY_CHARS]).is_some());
        for bad in [
            &b""[..],
            b"with space",
            b"tab\t",
            "é".as_bytes(),
            &[b'k'; 256],
        ] {
            assert!(IdempotencyKey::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn outcomes_round_trip_without_events() {
        let accepted = BuildOutcome::Accepted {
            build: json!({"id": "7", "app": "web"}),
            events: Vec::new(),
        };
        let back = decode(&encode(&accepted).to_string()).unwrap();
        assert!(matches!(back, BuildOutcome::Accepted { build, .. } if build["id"] == "7"));
        let rejected = BuildOutcome::Rejected {
            metric: Metric::Applications,
            used: 3,
            limit: 3,
            events: Vec::new(),
        };
        let back = decode(&encode(&rejected).to_string()).unwrap();
        assert!(matches!(
            back,
            BuildOutcome::Rejected {
                metric: Metric::Applications,
                used: 3,
                limit: 3,
                ..
            }
        ));
        assert!(decode(r#"{"status":500}"#).is_err());
    }
}
