//! A load over a cluster while something goes wrong: users posting builds (each under its own
//! `Idempotency-Key`, retried on another instance until answered), two streams and one
//! long-poll client per user spread over the instances (each moving to the next instance when
//! its own fails, resuming from its last id), and a fault injected once half the builds are in.
//! Then every guarantee is checked against the log.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::watch;

use crate::Cluster;
use crate::support::*;

pub struct Plan {
    pub users: usize,
    pub builds_per_user: usize,
}

/// One SSE event as it arrived: its id and the block's exact text.
#[derive(Debug, Clone, PartialEq)]
struct Frame {
    id: u64,
    text: String,
}

#[derive(Debug, Default)]
struct Followed {
    frames: Vec<Frame>,
    epochs: HashSet<String>,
    resets: usize,
    connections: usize,
}

/// Runs the load, calls `fault` once half the builds are answered, and checks everything.
/// Returns how many stream connections were made beyond the first of each stream (so a test
/// can tell that streams did move).
pub async fn run_with_fault(
    cluster: &mut Cluster,
    plan: Plan,
    fault: impl FnOnce(&mut Cluster),
) -> usize {
    let c = client();
    let tokens: Vec<String> = (0..plan.users)
        .map(|u| cluster.servers[0].add_user(&format!("u{u}@example.com"), "pro"))
        .collect();
    let bases = Arc::new(cluster.bases());
    let (done_tx, done_rx) = watch::channel(None::<Vec<u64>>);

    let mut followers = Vec::new();
    for (u, token) in tokens.iter().enumerate() {
        for k in 0..2 {
            followers.push((
                u,
                tokio::spawn(follow_stream(
                    c.clone(),
                    bases.clone(),
                    u + k,
                    token.clone(),
                    u,
                    done_rx.clone(),
                )),
            ));
        }
    }
    let pollers: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(u, token)| {
            tokio::spawn(long_poll(
                c.clone(),
                bases.clone(),
                u + 2,
                token.clone(),
                u,
                done_rx.clone(),
            ))
        })
        .collect();
    // Streams are open (each has connected once) before the first build.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let answered = Arc::new(AtomicUsize::new(0));
    let posters: Vec<_> = tokens
        .iter()
        .enumerate()
        .map(|(u, token)| {
            tokio::spawn(post_all(
                c.clone(),
                bases.clone(),
                token.clone(),
                u,
                plan.builds_per_user,
                answered.clone(),
            ))
        })
        .collect();
    let half = plan.users * plan.builds_per_user / 2;
    assert!(
        wait_until(Duration::from_secs(60), || {
            let n = answered.load(Ordering::Relaxed);
            async move { n >= half }
        })
        .await,
        "half the builds were not answered within 60 s"
    );
    tokio::task::block_in_place(|| fault(cluster));
    let mut accepted = Vec::new();
    for p in posters {
        accepted.push(p.await.unwrap());
    }

    // The log as a surviving instance has it, once every build is answered.
    let live = cluster
        .servers
        .iter()
        .position(|s| alive(&s.base))
        .expect("an instance is up");
    let s = &cluster.servers[live];
    let mut logs = Vec::new();
    let mut finals = Vec::new();
    for token in &tokens {
        let log = all_events(&c, s, token).await;
        finals.push(log.last().map_or(0, |e| e.id.parse().unwrap()));
        logs.push(log);
    }
    done_tx.send(Some(finals.clone())).unwrap();

    let mut moved = 0;
    let mut by_user: BTreeMap<usize, Vec<Followed>> = BTreeMap::new();
    for (u, f) in followers {
        let f = tokio::time::timeout(Duration::from_secs(60), f)
            .await
            .unwrap_or_else(|_| panic!("user {u}'s stream did not reach the end within 60 s"))
            .unwrap();
        moved += f.connections - 1;
        by_user.entry(u).or_default().push(f);
    }
    for (u, p) in pollers.into_iter().enumerate() {
        let polled = tokio::time::timeout(Duration::from_secs(60), p)
            .await
            .unwrap_or_else(|_| panic!("user {u}'s long poll did not reach the end within 60 s"))
            .unwrap();
        let log = &logs[u];
        assert_eq!(polled.len(), log.len(), "user {u}: long-poll events");
        for (got, want) in polled.iter().zip(log) {
            assert_eq!(got, want, "user {u}: long poll");
        }
    }

    for (u, log) in logs.iter().enumerate() {
        let ids: Vec<u64> = log.iter().map(|e| e.id.parse().unwrap()).collect();
        assert_eq!(
            ids,
            (1..=finals[u]).collect::<Vec<_>>(),
            "user {u}: contiguous ids"
        );
        let (_, usage) = get_json(&c, s, &tokens[u], "/usage").await;
        let epoch = usage["stream_epoch"].as_str().unwrap().to_owned();
        let streams = &by_user[&u];
        for f in streams {
            assert_eq!(f.resets, 0, "user {u}: no sync.reset");
            assert_eq!(
                f.epochs,
                HashSet::from([epoch.clone()]),
                "user {u}: one Stream-Epoch on every connection"
            );
            let got: Vec<u64> = f.frames.iter().map(|fr| fr.id).collect();
            assert_eq!(got, ids, "user {u}: each event once, in id order");
            for (fr, e) in f.frames.iter().zip(log) {
                let data = fr
                    .text
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap();
                assert_eq!(serde_json::from_str::<Value>(data).unwrap(), e.data);
                assert!(fr.text.contains(&format!("event: {}\n", e.kind)));
            }
        }
        assert_eq!(
            streams[0].frames, streams[1].frames,
            "user {u}: byte-identical streams"
        );
        // Every 201 has its build.accepted, exactly once; nothing else was counted.
        let mut logged: Vec<i64> = log
            .iter()
            .filter(|e| e.kind == "build.accepted")
            .map(|e| e.data["id"].as_i64().unwrap())
            .collect();
        logged.sort_unstable();
        let mut acked = accepted[u].clone();
        acked.sort_unstable();
        assert_eq!(logged, acked, "user {u}: accepted builds and their events");
        assert_eq!(
            usage["quotas"][0]["used"].as_u64(),
            Some(acked.len() as u64),
            "user {u}: the counter"
        );
    }
    moved
}

fn alive(base: &str) -> bool {
    let addr = base.trim_start_matches("http://");
    std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_millis(500)).is_ok()
}

/// Posts the user's builds one after another, each under its own key, moving to the next
/// instance whenever one gives no answer (down, or 5xx); returns the ids of accepted builds.
async fn post_all(
    c: reqwest::Client,
    bases: Arc<Vec<String>>,
    token: String,
    user: usize,
    builds: usize,
    answered: Arc<AtomicUsize>,
) -> Vec<i64> {
    let mut accepted = Vec::new();
    let mut at = user;
    for n in 0..builds {
        let key = format!("u{user}-b{n}");
        let body = build_body(&format!("app{}", n % 3), n);
        let mut tries = 0;
        loop {
            tries += 1;
            assert!(tries < 400, "user {user} build {n}: never answered");
            let base = &bases[at % bases.len()];
            let res = c
                .post(format!("{base}/api/v1/builds"))
                .bearer_auth(&token)
                .header("Idempotency-Key", &key)
                .timeout(Duration::from_secs(10))
                .json(&body)
                .send()
                .await;
            match res {
                Ok(r) if r.status() == 201 => {
                    let b: Value = r.json().await.unwrap();
                    accepted.push(b["id"].as_i64().unwrap());
                    break;
                }
                Ok(r) if r.status().is_client_error() => {
                    panic!("user {user} build {n}: {}", r.status())
                }
                _ => {
                    at += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        answered.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    accepted
}

fn reached(done: &watch::Receiver<Option<Vec<u64>>>, user: usize, last: u64) -> bool {
    done.borrow().as_ref().is_some_and(|f| last >= f[user])
}

/// One stream that moves to the next instance whenever its connection ends.
async fn follow_stream(
    c: reqwest::Client,
    bases: Arc<Vec<String>>,
    mut at: usize,
    token: String,
    user: usize,
    mut done: watch::Receiver<Option<Vec<u64>>>,
) -> Followed {
    let mut out = Followed::default();
    let mut last = 0u64;
    loop {
        if reached(&done, user, last) {
            return out;
        }
        let base = &bases[at % bases.len()];
        let res = c
            .get(format!("{base}/api/v1/stream"))
            .bearer_auth(&token)
            .header("Last-Event-ID", last.to_string())
            .timeout(Duration::from_secs(3600))
            .send()
            .await;
        let res = match res {
            Ok(r) if r.status() == 200 => r,
            _ => {
                at += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        out.connections += 1;
        if let Some(e) = res.headers().get("stream-epoch") {
            out.epochs.insert(e.to_str().unwrap().to_owned());
        }
        let mut body = res.bytes_stream();
        let mut buf = Vec::new();
        loop {
            let chunk = tokio::select! {
                chunk = body.next() => chunk,
                _ = done.changed() => {
                    if reached(&done, user, last) {
                        return out;
                    }
                    continue;
                }
            };
            match chunk {
                Some(Ok(bytes)) => buf.extend_from_slice(&bytes),
                _ => break,
            }
            while let Some(pos) = buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = buf.drain(..pos + 2).collect();
                let text = String::from_utf8(block).unwrap();
                if text.contains("event: sync.reset\n") {
                    out.resets += 1;
                }
                if let Some(id) = text.lines().find_map(|l| l.strip_prefix("id: ")) {
                    let id: u64 = id.parse().unwrap();
                    out.frames.push(Frame { id, text });
                    last = id;
                }
            }
            if reached(&done, user, last) {
                return out;
            }
        }
        // The instance went away (or ended the stream): resume on the next one.
        at += 1;
    }
}

/// One long-poll client: `GET /events?after=...&wait=5`, moving on when an instance fails.
async fn long_poll(
    c: reqwest::Client,
    bases: Arc<Vec<String>>,
    mut at: usize,
    token: String,
    user: usize,
    done: watch::Receiver<Option<Vec<u64>>>,
) -> Vec<Event> {
    let mut got: Vec<Event> = Vec::new();
    let mut last = 0u64;
    while !reached(&done, user, last) {
        let base = &bases[at % bases.len()];
        let res = c
            .get(format!("{base}/api/v1/events?after={last}&wait=2"))
            .bearer_auth(&token)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let page: Value = match res {
            Ok(r) if r.status() == 200 => match r.json().await {
                Ok(v) => v,
                Err(_) => {
                    at += 1;
                    continue;
                }
            },
            _ => {
                at += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        for e in page["events"].as_array().unwrap() {
            let ev = Event {
                id: e["id"].as_str().unwrap().to_owned(),
                kind: e["type"].as_str().unwrap().to_owned(),
                data: e["data"].clone(),
            };
            last = ev.id.parse().unwrap();
            got.push(ev);
        }
    }
    got
}
