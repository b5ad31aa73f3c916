use std::collections::HashMap;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_posts_never_overshoot_a_hard_limit() {
    let s = Server::start();
    let token = s.add_user("race@example.com", "free");
    let c = client();
    let posts = (0..200).map(|n| {
        let (c, token, url) = (c.clone(), token.clone(), s.url("/builds"));
        tokio::spawn(async move { post_to(&c, url, &token, &build_body("web", n)).await })
    });
    let mut by_status: HashMap<u16, usize> = HashMap::new();
    for p in posts.collect::<Vec<_>>() {
        let (status, body) = p.await.unwrap();
        if status == 402 {
            assert_eq!(body["error"]["code"], "quota_exceeded");
            assert_eq!(body["error"]["metric"], "builds");
            assert_eq!(body["error"]["used"], 100);
            assert_eq!(body["error"]["limit"], 100);
        }
        *by_status.entry(status).or_default() += 1;
    }
    assert_eq!(by_status.get(&201), Some(&100), "{by_status:?}");
    assert_eq!(by_status.get(&402), Some(&100), "{by_status:?}");

    let (_, usage) = get_json(&c, &s, &token, "/usage").await;
    assert_eq!(
        usage["quotas"][0],
        serde_json::json!({"metric": "builds", "used": 100, "limit": 100})
    );
    let events = all_events(&c, &s, &token).await;
    let count = |kind: &str| events.iter().filter(|e| e.kind == kind).count();
    assert_eq!(count("quota.exceeded"), 1);
    assert_eq!(count("build.accepted"), 100);
    assert_eq!(count("build.rejected"), 100);
    let (_, builds) = get_json(&c, &s, &token, "/builds?limit=1000").await;
    assert_eq!(builds["builds"].as_array().unwrap().len(), 100);
}

#[tokio::test]
async fn thresholds_are_announced_once_each() {
    let s = Server::start();
    let token = s.add_user("t@example.com", "free");
    let c = client();
    for n in 0..101 {
        post_build(&c, &s, &token, &build_body("web", n)).await;
    }
    let events = all_events(&c, &s, &token).await;
    let crossings: Vec<(String, u64)> = events
        .iter()
        .filter(|e| e.kind == "quota.warning" || e.kind == "quota.exceeded")
        .map(|e| {
            (
                e.kind.clone(),
                e.data["threshold_percent"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        crossings,
        [
            ("quota.warning".into(), 80),
            ("quota.warning".into(), 90),
            ("quota.exceeded".into(), 100)
        ]
    );
    // The warning fires on the build that reaches the threshold, with usage at that moment.
    let w80 = events.iter().find(|e| e.kind == "quota.warning").unwrap();
    assert_eq!(
        (w80.data["used"].as_u64(), w80.data["metric"].as_str()),
        (Some(80), Some("builds"))
    );

    // A new period starts the count again and is announced.
    cli(&s.db, &["period", "roll", "--user", "t@example.com"]);
    let (status, _) = post_build(&c, &s, &token, &build_body("web", 999)).await;
    assert_eq!(status, 201);
    let events = all_events(&c, &s, &token).await;
    let reset = events
        .iter()
        .find(|e| e.kind == "quota.reset")
        .expect("quota.reset");
    assert_eq!(reset.data["quotas"][0]["used"], 0);
    let (_, usage) = get_json(&c, &s, &token, "/usage").await;
    assert_eq!(usage["quotas"][0]["used"], 1);
}

#[tokio::test]
async fn applications_count_and_soft_plans_flag_overage() {
    let s = Server::start();
    let free = s.add_user("apps@example.com", "free");
    let c = client();
    for app in ["a", "b", "c", "a"] {
        assert_eq!(post_build(&c, &s, &free, &build_body(app, 1)).await.0, 201);
    }
    let (status, body) = post_build(&c, &s, &free, &build_body("d", 1)).await;
    assert_eq!(status, 402);
    assert_eq!(body["error"]["metric"], "applications");
    let (_, usage) = get_json(&c, &s, &free, "/usage").await;
    assert_eq!(
        usage["quotas"][1],
        serde_json::json!({"metric": "applications", "used": 3, "limit": 3})
    );

    // Moving to the soft-limit plan: the same build is now accepted (not over pro's limits).
    cli(
        &s.db,
        &["plan", "set", "--user", "apps@example.com", "--plan", "pro"],
    );
    let (status, body) = post_build(&c, &s, &free, &build_body("d", 2)).await;
    assert_eq!(status, 201);
    assert_eq!(body["overage"], false);
    let events = all_events(&c, &s, &free).await;
    let changed = events
        .iter()
        .find(|e| e.kind == "plan.changed")
        .expect("plan.changed");
    assert_eq!(changed.data["plan"]["id"], "pro");
    assert_eq!(changed.data["plan"]["hard_limit"], false);

    let (_, account) = get_json(&c, &s, &free, "/account").await;
    assert_eq!(account["plan"]["id"], "pro");
    assert_eq!(account["email"], "apps@example.com");
}

#[tokio::test]
async fn soft_limit_builds_over_quota_are_accepted_as_overage() {
    let s = Server::start();
    let token = s.add_user("soft@example.com", "pro");
    let c = client();
    // Pro allows 50 applications; the 51st is accepted but flagged.
    for n in 0..50 {
        let (status, body) = post_build(&c, &s, &token, &build_body(&format!("app{n}"), n)).await;
        assert_eq!((status, body["overage"].as_bool()), (201, Some(false)));
    }
    let (status, body) = post_build(&c, &s, &token, &build_body("app50", 50)).await;
    assert_eq!((status, body["overage"].as_bool()), (201, Some(true)));
    let events = all_events(&c, &s, &token).await;
    let exceeded: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "quota.exceeded")
        .collect();
    assert_eq!(exceeded.len(), 1);
    assert_eq!(exceeded[0].data["metric"], "applications");
    assert_eq!(exceeded[0].data["hard_limit"], false);
}
