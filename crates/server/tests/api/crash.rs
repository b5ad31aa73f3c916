use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;

/// `kill -9` during a burst of posts: every build answered 201 survives with its events, and
/// no event refers to a build that is not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_builds_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db(dir.path());
    let mut s = Server::start_on(&db, &[]);
    let token = s.add_user("crash@example.com", "pro");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let posters: Vec<_> = (0..16)
        .map(|w| {
            let (c, token, url, acked) =
                (c.clone(), token.clone(), s.url("/builds"), acked.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    let body = build_body(&format!("app{}", w % 4), n);
                    match c.post(&url).bearer_auth(&token).json(&body).send().await {
                        Ok(res) if res.status() == 201 => {
                            if let Ok(b) = res.json::<serde_json::Value>().await {
                                acked.lock().unwrap().insert(b["id"].as_i64().unwrap());
                            }
                        }
                        _ => return,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    s.kill9();
    for p in posters {
        p.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "only {} builds before the kill",
        acked.len()
    );

    let s = Server::start_on(&db, &[]);
    let mut stored = BTreeSet::new();
    let mut after = 0;
    loop {
        let (status, page) =
            get_json(&c, &s, &token, &format!("/builds?after={after}&limit=1000")).await;
        assert_eq!(status, 200);
        let builds = page["builds"].as_array().unwrap();
        for b in builds {
            after = b["id"].as_i64().unwrap();
            stored.insert(after);
        }
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
    }
    let missing: Vec<_> = acked.difference(&stored).collect();
    assert!(missing.is_empty(), "acknowledged builds lost: {missing:?}");

    let events = all_events(&c, &s, &token).await;
    let announced: HashSet<i64> = events
        .iter()
        .filter(|e| e.kind == "build.accepted")
        .map(|e| e.data["id"].as_i64().unwrap())
        .collect();
    let stored_set: HashSet<i64> = stored.iter().copied().collect();
    assert_eq!(
        announced, stored_set,
        "every build has its event and every event its build"
    );
    let ids: Vec<u64> = events.iter().map(|e| e.id.parse().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "event ids stay contiguous"
    );
    let (_, usage) = get_json(&c, &s, &token, "/usage").await;
    assert_eq!(
        usage["quotas"][0]["used"].as_u64().unwrap() as usize,
        stored.len()
    );
}
