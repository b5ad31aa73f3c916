//! `Idempotency-Key` on `POST /builds`: a retry after a lost answer gets the first outcome and
//! counts nothing, also across a `kill -9` of the server.

use serde_json::Value;

use crate::support::*;

/// Posts `body` with `key`; the status, the `Idempotent-Replayed` header and the JSON body.
async fn post_keyed(
    c: &reqwest::Client,
    s: &Server,
    token: &str,
    key: &str,
    body: &Value,
) -> (u16, bool, Value) {
    let res = c
        .post(s.url("/builds"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let replayed = res
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    (status, replayed, res.json().await.unwrap_or(Value::Null))
}

async fn builds_used(c: &reqwest::Client, s: &Server, token: &str) -> u64 {
    let (_, usage) = get_json(c, s, token, "/usage").await;
    usage["quotas"][0]["used"].as_u64().unwrap()
}

fn count(events: &[Event], kind: &str) -> usize {
    events.iter().filter(|e| e.kind == kind).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_build_counts_once_and_answers_the_same() {
    let s = Server::start();
    let token = s.add_user("retry@example.com", "free");
    let c = client();
    let body = build_body("web", 1);
    let (status, replayed, first) = post_keyed(&c, &s, &token, "k-1", &body).await;
    assert_eq!((status, replayed), (201, false), "{first}");
    // Sequential and concurrent retries alike.
    for _ in 0..3 {
        let (status, replayed, again) = post_keyed(&c, &s, &token, "k-1", &body).await;
        assert_eq!((status, replayed), (201, true));
        assert_eq!(again, first, "the first answer, byte for byte in JSON");
    }
    let retries = (0..20).map(|_| {
        let (c, token, body) = (c.clone(), token.clone(), body.clone());
        let url = s.url("/builds");
        tokio::spawn(async move {
            let res = c
                .post(url)
                .bearer_auth(token)
                .header("Idempotency-Key", "k-2")
                .json(&body)
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        })
    });
    let mut answers = Vec::new();
    for r in retries.collect::<Vec<_>>() {
        answers.push(r.await.unwrap());
    }
    assert!(answers.iter().all(|(st, _)| *st == 201), "{answers:?}");
    assert!(
        answers.iter().all(|(_, b)| *b == answers[0].1),
        "one build for the key"
    );
    assert_eq!(
        builds_used(&c, &s, &token).await,
        2,
        "k-1 and k-2: two builds"
    );
    let events = all_events(&c, &s, &token).await;
    assert_eq!(count(&events, "build.accepted"), 2, "{events:?}");
    // Without a key every post is a build of its own.
    assert_eq!(post_build(&c, &s, &token, &body).await.0, 201);
    assert_eq!(builds_used(&c, &s, &token).await, 3);
}

#[tokio::test]
async fn a_retried_rejection_is_the_same_402_and_no_new_event() {
    let s = Server::start();
    let token = s.add_user("refused@example.com", "free");
    let c = client();
    for app in ["a", "b", "c"] {
        assert_eq!(post_build(&c, &s, &token, &build_body(app, 0)).await.0, 201);
    }
    let fourth = build_body("d", 0);
    let (status, _, first) = post_keyed(&c, &s, &token, "new-app", &fourth).await;
    assert_eq!(status, 402, "{first}");
    assert_eq!(first["error"]["metric"], "applications");
    let rejected = count(&all_events(&c, &s, &token).await, "build.rejected");
    assert_eq!(rejected, 1);
    let (status, replayed, again) = post_keyed(&c, &s, &token, "new-app", &fourth).await;
    assert_eq!((status, replayed), (402, true));
    assert_eq!(again, first);
    let events = all_events(&c, &s, &token).await;
    assert_eq!(count(&events, "build.rejected"), 1, "{events:?}");
}

#[tokio::test]
async fn a_key_reused_for_another_build_or_malformed_is_refused() {
    let s = Server::start();
    let token = s.add_user("misuse@example.com", "free");
    let c = client();
    assert_eq!(
        post_keyed(&c, &s, &token, "same", &build_body("web", 1))
            .await
            .0,
        201
    );
    let (status, _, body) = post_keyed(&c, &s, &token, "same", &build_body("web", 2)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "idempotency_key_reused");
    for bad in ["with space", &"k".repeat(256)] {
        let (status, _, body) = post_keyed(&c, &s, &token, bad, &build_body("web", 3)).await;
        assert_eq!(status, 400, "{bad:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_header");
        assert_eq!(body["error"]["header"], "Idempotency-Key");
    }
    let res = c
        .post(s.url("/builds"))
        .bearer_auth(&token)
        .header("Idempotency-Key", "one")
        .header("Idempotency-Key", "two")
        .json(&build_body("web", 4))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400, "two keys are ambiguous");
    // Keys are per user: another user's "same" is a build of its own.
    let other = s.add_user("other@example.com", "free");
    let (status, replayed, _) = post_keyed(&c, &s, &other, "same", &build_body("web", 1)).await;
    assert_eq!((status, replayed), (201, false));
    assert_eq!(
        builds_used(&c, &s, &token).await,
        1,
        "refused requests count nothing"
    );
}

#[tokio::test]
async fn a_retry_after_the_server_was_killed_gets_the_committed_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db(dir.path());
    let mut s = Server::start_on(&db, &[]);
    let token = s.add_user("crash@example.com", "free");
    let c = client();
    let body = build_body("web", 9);
    let (status, _, first) = post_keyed(&c, &s, &token, "before-crash", &body).await;
    assert_eq!(status, 201);
    s.kill9();
    let s = Server::start_on(&db, &[]);
    let (status, replayed, again) = post_keyed(&c, &s, &token, "before-crash", &body).await;
    assert_eq!((status, replayed), (201, true));
    assert_eq!(again, first);
    assert_eq!(builds_used(&c, &s, &token).await, 1);
}
