use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

/// `demo` (the README's first command runs it): a demo user with a fresh token in a 0600 file,
/// and a simulated plugin whose builds reach the API; run twice on one database, the second
/// run replaces the token and starts a fresh period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_a_demo_user_and_posts_builds() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_db(dir.path());
    let token_file = dir.path().join("demo-token");
    let c = client();
    let mut tokens = Vec::new();
    for _run in 0..2 {
        let mut child = Command::new(BIN)
            .args([
                "demo",
                "--listen",
                "127.0.0.1:0",
                "--build-interval-ms",
                "20",
            ])
            .args(["--db", &db, "--token-file"])
            .arg(&token_file)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut base = None;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if let Some(addr) = line.strip_prefix("listening on ") {
                base = Some(addr.to_owned());
                break;
            }
        }
        let base = base.expect("demo announced its address");
        let token = std::fs::read_to_string(&token_file)
            .unwrap()
            .trim()
            .to_owned();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let usage = format!("{base}/api/v1/usage");
        let built = wait_until(Duration::from_secs(10), || async {
            let res = c.get(&usage).bearer_auth(&token).send().await.unwrap();
            assert_eq!(res.status(), 200);
            let v: serde_json::Value = res.json().await.unwrap();
            v["quotas"][0]["used"].as_i64().unwrap() >= 3
        })
        .await;
        assert!(built, "the demo plugin's builds were counted");
        let _ = child.kill();
        let _ = child.wait();
        tokens.push(token);
    }
    assert_ne!(
        tokens[0], tokens[1],
        "each run gives the demo user a new token"
    );
}
