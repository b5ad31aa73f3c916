use crate::support::*;

async fn error_of(res: reqwest::Response) -> (u16, serde_json::Value) {
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(ct.as_deref(), Some("application/json"), "errors are JSON");
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["error"]["message"].is_string());
    (status, body["error"].clone())
}

#[tokio::test]
async fn bad_input_gets_a_clear_error() {
    let s = Server::start();
    let token = s.add_user("bad@example.com", "free");
    let c = client();
    let post = |body: Vec<u8>| {
        c.post(s.url("/builds"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let (status, e) = error_of(post(b"{\"app\": ".to_vec()).await.unwrap()).await;
    assert_eq!((status, e["code"].as_str()), (400, Some("malformed_json")));
    let (status, e) = error_of(
        post(br#"{"version":"1","commit":"abc"}"#.to_vec())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, e["code"].as_str(), e["field"].as_str()),
        (400, Some("invalid_field"), Some("app"))
    );
    let (status, e) = error_of(
        post(br#"{"app":"x","version":7,"commit":"abc"}"#.to_vec())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, e["field"].as_str()), (400, Some("version")));
    let (status, e) = error_of(
        post(br#"{"app":"","version":"1","commit":"abc"}"#.to_vec())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, e["field"].as_str()), (400, Some("app")));
    let (status, e) = error_of(post(b"[1,2,3]".to_vec()).await.unwrap()).await;
    assert_eq!(status, 400, "{e}");
    let (status, e) = error_of(post(vec![0xff, 0xfe, 0x00]).await.unwrap()).await;
    assert_eq!(status, 400, "{e}");
    let trailing = br#"{"app":"x","version":"1","commit":"a"} {}"#.to_vec();
    let (status, e) = error_of(post(trailing).await.unwrap()).await;
    assert_eq!((status, e["code"].as_str()), (400, Some("malformed_json")));

    let mut big = br#"{"app":"x","version":"1","commit":""#.to_vec();
    big.extend(std::iter::repeat_n(b'a', 70 * 1024));
    big.extend(br#""}"#);
    let (status, e) = error_of(post(big).await.unwrap()).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (413, Some("payload_too_large"))
    );

    let res = c
        .get(s.url("/usage"))
        .bearer_auth("qb_nope")
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("www-authenticate"));
    let (status, e) = error_of(res).await;
    assert_eq!((status, e["code"].as_str()), (401, Some("unauthorized")));
    let (status, _) = error_of(c.get(s.url("/usage")).send().await.unwrap()).await;
    assert_eq!(status, 401);
    let lower = format!("bearer {token}");
    let res = c
        .get(s.url("/usage"))
        .header("authorization", lower)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the auth scheme is case-insensitive");
    let (status, _) = error_of(
        c.get(s.url("/stream"))
            .header("authorization", "Basic Zm9vOmJhcg==")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);

    let (status, e) = error_of(c.get(format!("{}/nope", s.base)).send().await.unwrap()).await;
    assert_eq!((status, e["code"].as_str()), (404, Some("not_found")));
    let (status, e) = error_of(
        c.delete(s.url("/builds"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, e["code"].as_str()),
        (405, Some("method_not_allowed"))
    );

    for (path, field) in [
        ("/builds?limit=1001", "limit"),
        ("/builds?limit=0", "limit"),
        ("/builds?after=x", "after"),
        ("/builds?after=1&before=5", "before"),
        ("/events?after=-1", "after"),
        ("/events?wait=31", "wait"),
        ("/events?limit=abc", "limit"),
        ("/events?after=%2B1", "after"),
        ("/builds?before=99999999999999999999", "before"),
    ] {
        let res = c.get(s.url(path)).bearer_auth(&token).send().await.unwrap();
        let (status, e) = error_of(res).await;
        assert_eq!(
            (status, e["field"].as_str()),
            (400, Some(field)),
            "{path}: {e}"
        );
    }
    // Nothing of that was recorded.
    let (_, usage) = get_json(&c, &s, &token, "/usage").await;
    assert_eq!(usage["quotas"][0]["used"], 0);
    assert_eq!(usage["last_event_id"], "0");
}

#[tokio::test]
async fn build_history_pages_both_ways() {
    let s = Server::start();
    let token = s.add_user("pages@example.com", "pro");
    let c = client();
    for n in 0..25 {
        post_build(&c, &s, &token, &build_body("web", n)).await;
    }
    let ids = |page: &serde_json::Value| -> Vec<i64> {
        page["builds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_i64().unwrap())
            .collect()
    };
    let (_, newest) = get_json(&c, &s, &token, "/builds?limit=10").await;
    assert_eq!(ids(&newest), (16..=25).rev().collect::<Vec<_>>());
    assert_eq!(newest["has_more"], true);
    let (_, older) = get_json(&c, &s, &token, "/builds?limit=10&before=16").await;
    assert_eq!(ids(&older), (6..=15).rev().collect::<Vec<_>>());
    let (_, forward) = get_json(&c, &s, &token, "/builds?after=20").await;
    assert_eq!(ids(&forward), (21..=25).collect::<Vec<_>>());
    assert_eq!(forward["has_more"], false);
}

#[tokio::test]
async fn long_poll_returns_when_an_event_commits() {
    let s = Server::start();
    let token = s.add_user("poll@example.com", "free");
    let c = client();
    let started = std::time::Instant::now();
    let poll = {
        let (c, token, url) = (c.clone(), token.clone(), s.url("/events?after=0&wait=20"));
        tokio::spawn(async move {
            c.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    post_build(&c, &s, &token, &build_body("web", 1)).await;
    let page = poll.await.unwrap();
    assert_eq!(page["events"][0]["type"], "build.accepted");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "woken by the commit, not the timeout"
    );
    // With nothing new, `wait` bounds the poll.
    let (status, page) = get_json(
        &c,
        &s,
        &token,
        &format!(
            "/events?after={}&wait=1",
            page["last_event_id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert!(page["events"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn health_and_readiness_answer_without_a_token() {
    let s = Server::start();
    let c = client();
    for (path, status) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let res = c.get(format!("{}{path}", s.base)).send().await.unwrap();
        assert_eq!(res.status().as_u16(), 200, "{path}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["status"], status, "{path}");
    }
    // The only instance takes the background jobs (at once on SQLite, within a moment on
    // PostgreSQL, where it takes the advisory lock).
    let leader = wait_until(std::time::Duration::from_secs(10), || async {
        let body: serde_json::Value = c
            .get(format!("{}/healthz", s.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["leader"] == true
    })
    .await;
    assert!(leader, "a single instance leads the background jobs");
    // Only GET, like every other route.
    let res = c.post(format!("{}/readyz", s.base)).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 405);
}
