//! A cache written by the previous release (one account, before accounts had names) opens under
//! this build with everything in it: the cursor and epoch, the event log, the build history and
//! the notifications, as the previous release itself listed them.
//!
//! The fixture (`tests/fixtures/cache-0.1.0.db` and what that release printed about it,
//! `cache-0.1.0.json`) is made by `make_migration_fixture` below, run by hand with the previous
//! release's `quotabell`:
//! `QUOTABELL_FIXTURE_BIN=/path/to/old/quotabell xvfb-run -a cargo test --test e2e -- --ignored make_migration_fixture`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The JSON lines a subcommand prints.
fn lines(engine: &Engine<'_>, args: &[&str]) -> Vec<Value> {
    let (ok, out, err) = engine.run(args, None);
    assert!(ok, "quotabell {args:?}: {err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// What the previous release said about its cache, and what this build must say the same.
fn listing(engine: &Engine<'_>) -> Value {
    let cursor: (Option<String>, Option<String>, i64) =
        rusqlite::Connection::open(engine.data.join("quotabell.db"))
            .unwrap()
            .query_row(
                "SELECT cursor, epoch, builds_cursor FROM sync_state",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
    let mut notifications = lines(engine, &["notifications", "--json"]);
    // Fields this build added to a row are not the previous release's to compare.
    for n in &mut notifications {
        n.as_object_mut().unwrap().remove("account_id");
    }
    let status = engine.status_json();
    json!({
        "cursor": cursor.0,
        "epoch": cursor.1,
        "builds_cursor": cursor.2,
        "events": lines(engine, &["events", "--json"]),
        "history": lines(engine, &["history", "--json", "--limit", "100000"]),
        "notifications": notifications,
        "meters": status["meters"],
        "period": status["period"],
        "email": status["account"]["email"],
        "server": status["account"]["server"],
    })
}

#[test]
fn a_cache_of_the_previous_release_opens_with_cursor_history_and_notifications() {
    let desktop = Desktop::start();
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile");
    std::fs::create_dir_all(&profile).unwrap();
    std::fs::copy(
        fixtures().join("cache-0.1.0.db"),
        profile.join("quotabell.db"),
    )
    .unwrap();
    let before: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("cache-0.1.0.json")).unwrap(),
    )
    .unwrap();
    assert!(
        before["events"].as_array().unwrap().len() > 100
            && before["notifications"].as_array().unwrap().len() >= 3,
        "the fixture has something to lose"
    );
    let engine = Engine::new(&desktop, &profile);

    let after = listing(&engine);
    assert_eq!(
        after, before,
        "the cache reads as the previous release read it"
    );
    let version: i64 = rusqlite::Connection::open(profile.join("quotabell.db"))
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 5, "migrated to this build's schema");

    // The account got a name (its email) and is the one `--account` and `accounts` know.
    let accounts = lines(&engine, &["accounts", "--json"]);
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    assert_eq!(accounts[0]["account"]["name"], before["email"]);
    let by_name = engine.run(
        &[
            "history",
            "--json",
            "--limit",
            "100000",
            "--account",
            before["email"].as_str().unwrap(),
        ],
        None,
    );
    assert!(by_name.0, "{}", by_name.2);
    assert_eq!(
        by_name.1.lines().count(),
        before["history"].as_array().unwrap().len()
    );

    // Opening it again changes nothing.
    assert_eq!(listing(&engine), before);
}

/// Makes the fixture with the previous release's binary (see the module's comment).
#[test]
#[ignore = "run by hand with the previous release's quotabell to renew the fixture"]
fn make_migration_fixture() {
    let old = PathBuf::from(
        std::env::var_os("QUOTABELL_FIXTURE_BIN")
            .expect("QUOTABELL_FIXTURE_BIN: the previous release's quotabell"),
    );
    let desktop = Desktop::start();
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start(dir.path(), &["--keepalive-secs", "0.5"]);
    let email = "fixture@example.com";
    let token = backend.add_user(email, "free");
    let mut engine = Engine::new(&desktop, &dir.path().join("profile"));
    engine.bin = old;
    engine.login(&backend.url(), &token);
    engine.start_watch();
    // 80 %, the limit, two refused builds and a notice: every kind of row.
    for n in 0..102 {
        post_build(&backend.url(), &token, "web", n).unwrap();
    }
    backend.cli(&[
        "notice",
        "--user",
        email,
        "--title",
        "Maintenance",
        "--body",
        "Sunday 02:00 UTC",
    ]);
    engine_matches_server(&engine, &backend, &token);
    wait_until(
        "the notifications are shown",
        Duration::from_secs(30),
        || {
            engine
                .notifications()
                .iter()
                .filter(|n| n["state"] == "shown")
                .count()
                >= 4
        },
    );
    engine.signal(libc::SIGTERM);
    wait_until("the engine stopped", Duration::from_secs(10), || {
        engine.connection().1 == "engine stopped"
    });
    engine.kill9();
    let listed = listing(&engine);
    let out = fixtures();
    let db = out.join("cache-0.1.0.db");
    let _ = std::fs::remove_file(&db);
    rusqlite::Connection::open(engine.data.join("quotabell.db"))
        .unwrap()
        .execute("VACUUM INTO ?1", [db.to_str().unwrap()])
        .unwrap();
    std::fs::write(
        out.join("cache-0.1.0.json"),
        serde_json::to_string_pretty(&listed).unwrap() + "\n",
    )
    .unwrap();
}
