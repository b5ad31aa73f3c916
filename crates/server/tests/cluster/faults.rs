//! Instances, connections and the database killed under load.

use std::time::Duration;

use crate::Cluster;
use crate::load::{self, Plan};
use crate::support::*;

const PLAN: Plan = Plan {
    users: 50,
    builds_per_user: 16,
};

/// SIGKILL of one instance in the middle of posting and streaming: every stream that was on it
/// resumes elsewhere and still gets each event once, in order, byte-identical to the others;
/// every 201 has its events and no retry counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_under_load_loses_and_repeats_nothing() {
    let mut cluster = Cluster::start(3, &[]);
    let moved = load::run_with_fault(&mut cluster, PLAN, |cluster| {
        cluster.servers[0].kill9();
    })
    .await;
    assert!(moved > 0, "streams on the killed instance moved elsewhere");
}

/// The instances' LISTEN connections terminated by the database, then the database restarted,
/// both under load: nothing lost or repeated, and each instance recovers by itself (its
/// listener is back, so cross-instance wake-ups flow again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_kills_and_a_database_restart_lose_and_repeat_nothing() {
    let mut cluster = Cluster::start_alone(3, &[]);
    load::run_with_fault(&mut cluster, PLAN, |cluster| {
        let killed = cluster.psql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE application_name = 'quotabell listener' AND datname = current_database()",
        );
        assert_eq!(killed, "3", "each instance had one listener");
        cluster.own.as_ref().unwrap().restart().unwrap();
    })
    .await;
    let listeners = || {
        cluster.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'quotabell listener' AND datname = current_database()",
        )
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while listeners() != "3" {
        assert!(
            std::time::Instant::now() < deadline,
            "listeners did not come back: {}",
            listeners()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every instance still serves: a build posted on one reaches a stream on each other one.
    let c = client();
    let token = cluster.servers[0].add_user("after@example.com", "pro");
    for (i, s) in cluster.servers.iter().enumerate() {
        let mut sse = Sse::open(&c, s, &token, None).await;
        let other = &cluster.servers[(i + 1) % 3];
        let (status, _) = post_build(&c, other, &token, &build_body("web", i)).await;
        assert_eq!(status, 201);
        let e = sse.next_event(Duration::from_secs(10)).await.unwrap();
        assert_eq!(e.kind, "build.accepted", "instance {i} after recovery");
    }
}

/// The leader of the background jobs is killed: another instance takes over and rolls an ended
/// billing period (once: one `quota.reset`) and forgets expired idempotency keys, within 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_leader_killed_another_takes_over_within_10_s() {
    let mut cluster = Cluster::start(3, &["--jobs-interval-ms", "200"]);
    let token = cluster.servers[0].add_user("lead@example.com", "pro");
    let c = client();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let leader = loop {
        let l = leaders(&c, &cluster).await;
        if l.len() == 1 {
            break l[0];
        }
        assert!(std::time::Instant::now() < deadline, "leaders: {l:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    cluster.servers[leader].kill9();
    let killed_at = std::time::Instant::now();
    // Only a job can roll this period now (no build arrives), and only a job prunes this key.
    cluster.psql(
        "UPDATE users SET period_end = extract(epoch FROM now())::bigint - 60
         WHERE email = 'lead@example.com';
         INSERT INTO idempotency_keys (user_id, key, fingerprint, outcome, created_at)
         SELECT id, 'old', '\\x00', '{}', 0 FROM users WHERE email = 'lead@example.com'",
    );
    let survivor = &cluster.servers[(leader + 1) % 3];
    let rolled = wait_until(Duration::from_secs(10), || async {
        all_events(&c, survivor, &token)
            .await
            .iter()
            .any(|e| e.kind == "quota.reset")
    })
    .await;
    assert!(
        rolled,
        "no instance rolled the period within 10 s of the kill"
    );
    let left = Duration::from_secs(10).saturating_sub(killed_at.elapsed());
    let pruned = wait_until(left, || async {
        cluster.psql("SELECT count(*) FROM idempotency_keys") == "0"
    })
    .await;
    assert!(pruned, "the expired key was not pruned within 10 s");
    let new_leaders = leaders(&c, &cluster).await;
    assert_eq!(new_leaders.len(), 1, "one new leader: {new_leaders:?}");
    assert_ne!(new_leaders[0], leader);
    // Several job runs later, still one roll.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let resets = all_events(&c, survivor, &token)
        .await
        .iter()
        .filter(|e| e.kind == "quota.reset")
        .count();
    assert_eq!(resets, 1, "the period rolled exactly once");
}

/// The instances that say they lead the background jobs (a dead one says nothing).
async fn leaders(c: &reqwest::Client, cluster: &Cluster) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, s) in cluster.servers.iter().enumerate() {
        let res = c
            .get(format!("{}/healthz", s.base))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        let Ok(res) = res else { continue };
        if res
            .json::<serde_json::Value>()
            .await
            .is_ok_and(|b| b["leader"] == true)
        {
            out.push(i);
        }
    }
    out
}
