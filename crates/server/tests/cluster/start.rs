//! Start-up on PostgreSQL: what goes wrong is said in one line, and a SQLite database moves
//! into PostgreSQL whole.

use std::process::Command;

use crate::support::*;
use crate::{new_database, with_cluster};

/// `serve --db <url>` that cannot work: exit status non-zero and one line on stderr that says
/// why.
fn refused(url: &str) -> String {
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--db", url])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{url}: started");
    let err = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{url}: one line, got {err:?}");
    assert!(out.stdout.is_empty(), "{url}: never said it listens");
    lines[0].to_owned()
}

#[test]
fn unusable_databases_fail_at_start_up_with_one_clear_line() {
    let (port, url) = with_cluster(|pg| (pg.port(), pg.url("nosuchdb")));

    // Nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let free = closed.local_addr().unwrap().port();
    drop(closed);
    let line = refused(&format!("postgres://quotabell@127.0.0.1:{free}/x"));
    assert!(
        line.contains("cannot connect to PostgreSQL at postgres://quotabell@127.0.0.1:"),
        "{line}"
    );
    assert!(line.to_lowercase().contains("refused"), "{line}");

    let line = refused(&url);
    assert!(line.contains("the database does not exist"), "{line}");

    with_cluster(|pg| pg.add_password_role("pwuser", "right-password").unwrap());
    let wrong = format!("postgres://pwuser:wrong-password@127.0.0.1:{port}/postgres");
    let line = refused(&wrong);
    assert!(line.contains("wrong password"), "{line}");
    assert!(
        !line.contains("wrong-password"),
        "the password is never shown: {line}"
    );

    let db = new_database();
    cli(&db, &["user", "add", "--email", "a@example.com"]);
    let name = db.rsplit('/').next().unwrap().to_owned();
    with_cluster(|pg| {
        pg.psql(&name, "UPDATE quotabell_schema SET version = 99")
            .unwrap()
    });
    let line = refused(&db);
    assert!(
        line.contains("schema is version 99, newer than this build knows"),
        "{line}"
    );

    let line = refused("postgres://[bad");
    assert!(line.contains("not a valid PostgreSQL URL"), "{line}");
}

/// `migrate --from <sqlite> --to <postgres>`: the same account, builds, log, ids and epoch;
/// the token still works, new ids continue the old ones; a second migrate into the now
/// non-empty database is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_database_migrates_into_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("old.db").display().to_string();
    let c = client();
    let mut old = Server::start_on(&file, &[]);
    let token = old.add_user("m@example.com", "free");
    for n in 0..85 {
        post_build(&c, &old, &token, &build_body(&format!("app{}", n % 2), n)).await;
    }
    cli(
        &file,
        &["notice", "--all", "--title", "Hi", "--body", "there"],
    );
    let (_, usage_before) = get_json(&c, &old, &token, "/usage").await;
    let events_before = all_events(&c, &old, &token).await;
    let (_, builds_before) = get_json(&c, &old, &token, "/builds?limit=1000").await;
    old.terminate();

    let pg = new_database();
    let out = Command::new(BIN)
        .args(["migrate", "--from", &file, "--to", &pg])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let new = Server::start_on(&pg, &[]);
    let (status, usage_after) = get_json(&c, &new, &token, "/usage").await;
    assert_eq!(status, 200, "the token works on the migrated database");
    assert_eq!(usage_after, usage_before);
    assert_eq!(all_events(&c, &new, &token).await, events_before);
    let (_, builds_after) = get_json(&c, &new, &token, "/builds?limit=1000").await;
    assert_eq!(builds_after, builds_before);

    let (status, build) = post_build(&c, &new, &token, &build_body("app0", 1000)).await;
    assert_eq!(status, 201);
    assert_eq!(build["id"], 86, "build ids continue");
    let events = all_events(&c, &new, &token).await;
    let first_new: u64 = events[events_before.len()].id.parse().unwrap();
    assert_eq!(
        first_new,
        events_before.len() as u64 + 1,
        "event ids continue"
    );
    // Crossings were copied too: 80% was announced before, 90% now, nothing twice.
    let warnings: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "quota.warning")
        .map(|e| e.data["threshold_percent"].as_i64().unwrap())
        .collect();
    assert_eq!(warnings, [80]);

    let again = Command::new(BIN)
        .args(["migrate", "--from", &file, "--to", &pg])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has users"));
}
