//! The cost of foresight on a busy account: a 30-day period with 100,000 counted builds.
//!
//! `cargo bench -p quotabell-core --bench foresight` prints, over `ROUNDS` runs each, the
//! median and spread of
//! - the computation alone (the pace and the runaway check over the build times), and
//! - one whole check as the engine runs it after new data: reading the build times from a
//!   real SQLite cache, deciding, and writing the watch state in one transaction.
//!
//! The views never pay either: they show the pace the last check stored.

use std::time::Instant;

use quotabell_core::forecast::{self, DAY, Period, RunawayRule};
use quotabell_core::foresight;
use quotabell_core::policy::{Context, Settings};
use quotabell_core::protocol::{Account, Build, Usage};
use quotabell_core::store::Store;

const BUILDS: i64 = 100_000;
const ROUNDS: usize = 101;
/// 2026-11-01T00:00:00Z.
const START: i64 = 1_793_491_200;
const END: i64 = START + 30 * DAY;
/// Day 25 of the period: the builds so far are the period's 100,000.
const NOW: i64 = START + 25 * DAY;

fn times() -> Vec<i64> {
    let step = (NOW - START) as f64 / BUILDS as f64;
    (0..BUILDS)
        .map(|i| START + (i as f64 * step) as i64)
        .collect()
}

fn rfc3339(unix: i64) -> String {
    jiff::Timestamp::from_second(unix).unwrap().to_string()
}

fn summary(name: &str, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];
    println!(
        "{name:<44} median {median:>8.3} ms   min {:>8.3} ms   max {:>8.3} ms   ({} rounds)",
        samples[0],
        samples[samples.len() - 1],
        samples.len()
    );
}

fn time(f: &mut dyn FnMut()) -> Vec<f64> {
    f(); // warm-up
    (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect()
}

fn main() {
    let times = times();
    let limit = 200_000;
    let rule = RunawayRule {
        factor: 5.0,
        min_builds: 10,
    };
    summary(
        "pace + runaway, 100,000 builds (computation)",
        time(&mut || {
            let p = forecast::pace(
                &Period {
                    start: START,
                    end: END,
                    used: BUILDS,
                    limit,
                    counted: &times,
                },
                NOW,
            );
            let r = forecast::runaway(&times, START, NOW, rule);
            std::hint::black_box((p, r));
        }),
    );

    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("cache.sqlite3")).unwrap();
    let account: Account = serde_json::from_value(serde_json::json!({
        "id": "u1", "email": "busy@example.test",
        "plan": {"id": "team", "name": "Team", "hard_limit": true}
    }))
    .unwrap();
    let id = store
        .upsert_account(
            "http://127.0.0.1:1",
            "http://127.0.0.1:1",
            &account,
            None,
            NOW,
        )
        .unwrap();
    let usage: Usage = serde_json::from_value(serde_json::json!({
        "period": {"start": rfc3339(START), "end": rfc3339(END)},
        "plan": {"id": "team", "name": "Team", "hard_limit": true},
        "quotas": [{"metric": "builds", "used": BUILDS, "limit": limit}],
        "last_event_id": "0", "stream_epoch": "e"
    }))
    .unwrap();
    store
        .record_usage(id, &usage, NOW, &mut |_, _| Vec::new())
        .unwrap();
    let builds: Vec<Build> = times
        .iter()
        .enumerate()
        .map(|(i, &t)| Build {
            id: i as i64 + 1,
            app: "web".into(),
            version: format!("1.0.{i}"),
            commit: "c0ffee".into(),
            overage: false,
            created_at: rfc3339(t),
        })
        .collect();
    store.store_builds(id, &builds, None).unwrap();

    let settings = Settings::default();
    let clock = quotabell_core::clock::SystemClock;
    summary(
        "a check after new data (read, decide, write)",
        time(&mut || {
            let ctx = Context {
                settings: &settings,
                now_unix: NOW,
                local_minute: 0,
                catching_up: false,
                hard_limit: true,
                plan_name: "Team",
            };
            let shown = store
                .foresee(id, NOW, &mut |data, watch, known| {
                    data.metrics()
                        .iter()
                        .flat_map(|m| foresight::decide(&ctx, &clock, m, watch, known))
                        .collect()
                })
                .unwrap();
            std::hint::black_box(shown);
        }),
    );
    summary(
        "the stored pace a snapshot reads",
        time(&mut || {
            std::hint::black_box(store.watch(id).unwrap());
        }),
    );
}
