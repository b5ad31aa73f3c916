//! Several accounts in one profile, on two backends: one engine process follows both, each
//! notification is shown once and names its account, a backend going down leaves the other
//! account live, and signing one out removes its token and cache and nothing of the other's.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// `quotabell ARGS --account NAME --json`'s lines.
fn lines(engine: &Engine<'_>, args: &[&str], account: &str) -> Vec<Value> {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--account", account, "--json"]);
    let (ok, out, err) = engine.run(&all, None);
    assert!(ok, "quotabell {all:?}: {err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The account's cached event log equals its server's.
fn synced(engine: &Engine<'_>, account: &str, backend: &Backend, token: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let local: Vec<(String, String)> = lines(engine, &["events"], account)
            .iter()
            .map(|e| {
                (
                    e["id"].as_str().unwrap().into(),
                    e["type"].as_str().unwrap().into(),
                )
            })
            .collect();
        let server: Vec<(String, String)> = server_events(&backend.url(), token)
            .into_iter()
            .map(|(id, kind, _)| (id, kind))
            .collect();
        if local == server {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{account}: {} events cached, {} on the server\n{}",
            local.len(),
            server.len(),
            engine.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn status(engine: &Engine<'_>, account: &str) -> Value {
    let (ok, out, err) = engine.run(&["status", "--json", "--account", account], None);
    assert!(ok, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn two_accounts_on_two_backends_are_followed_and_notified_apart() {
    let desktop = Desktop::start();
    let dir = tempfile::tempdir().unwrap();
    let (work_dir, home_dir) = (dir.path().join("work"), dir.path().join("home"));
    std::fs::create_dir_all(&work_dir).unwrap();
    std::fs::create_dir_all(&home_dir).unwrap();
    let work = Backend::start(&work_dir, &["--keepalive-secs", "0.5"]);
    let mut home = Backend::start(&home_dir, &["--keepalive-secs", "0.5"]);
    let work_token = work.add_user("dev@work.example", "free");
    let home_token = home.add_user("me@home.example", "free");
    let mut engine = Engine::new(&desktop, &dir.path().join("profile"));
    engine
        .watch_args
        .extend(["--max-backoff-secs".into(), "1".into()]);
    for (backend, token, name) in [(&work, &work_token, "work"), (&home, &home_token, "home")] {
        let (ok, out, err) = engine.run(
            &["login", "--server", &backend.url(), "--name", name],
            Some(&format!("{token}\n")),
        );
        assert!(
            ok && out.contains(&format!("as account \"{name}\"")),
            "{out}{err}"
        );
    }
    // A name already taken is refused before anything is filed.
    let third = work.add_user("third@work.example", "free");
    let (ok, _, err) = engine.run(
        &["login", "--server", &work.url(), "--name", "home"],
        Some(&format!("{third}\n")),
    );
    assert!(!ok && err.contains("already named \"home\""), "{err}");
    let (ok, listed, _) = engine.run(&["accounts"], None);
    assert!(ok);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        listed.contains("work") && listed.contains("home"),
        "{listed}"
    );
    // Which account a command is about must be said when there are several.
    let (ok, _, err) = engine.run(&["history"], None);
    assert!(
        !ok && err.contains("choose one with --account (work, home)"),
        "{err}"
    );

    engine.start_watch();
    // Live on both before the builds, so each crossing is news rather than part of a digest.
    wait_until("both accounts connected", Duration::from_secs(30), || {
        ["work", "home"]
            .iter()
            .all(|a| status(&engine, a)["connection"] == "connected")
    });
    for n in 0..85 {
        post_build(&work.url(), &work_token, "web", n).unwrap();
    }
    for n in 0..100 {
        post_build(&home.url(), &home_token, "app", n).unwrap();
    }
    synced(&engine, "work", &work, &work_token);
    synced(&engine, "home", &home, &home_token);
    // Each crossing once, naming its account; none without a name.
    let shown_of = |title: &str, account: &str| {
        desktop
            .notifications()
            .iter()
            .filter(|(summary, _)| {
                summary.starts_with(title) && summary.ends_with(&format!(" · {account}"))
            })
            .count()
    };
    for (title, account) in [
        (BUILDS_80, "work"),
        (BUILDS_80, "home"),
        (BUILDS_100, "home"),
    ] {
        wait_until(
            &format!("{title} · {account}"),
            Duration::from_secs(30),
            || shown_of(title, account) == 1,
        );
    }
    assert_eq!(shown_of(BUILDS_100, "work"), 0);
    let shown: Vec<(String, String)> = desktop.notifications();
    assert_eq!(shown.len(), 3, "{shown:#?}");
    assert_eq!(
        lines(&engine, &["history", "--limit", "1000"], "work").len(),
        85
    );
    assert_eq!(
        lines(&engine, &["history", "--limit", "1000"], "home").len(),
        100
    );

    // The home backend dies: home goes offline, work stays live and keeps being followed.
    home.kill9();
    wait_until("home offline", Duration::from_secs(30), || {
        status(&engine, "home")["connection"] != "connected"
    });
    for n in 85..90 {
        post_build(&work.url(), &work_token, "web", n).unwrap();
    }
    synced(&engine, "work", &work, &work_token);
    assert_eq!(status(&engine, "work")["connection"], "connected");
    assert_eq!(
        lines(&engine, &["history", "--limit", "1000"], "work").len(),
        90
    );
    let text = engine.run(&["status"], None).1;
    assert!(text.contains("[work]") && text.contains("[home]"), "{text}");

    // Signing out home takes its token and its cache, nothing of work's.
    engine.signal(libc::SIGTERM);
    wait_until("the engine stopped", Duration::from_secs(10), || {
        status(&engine, "work")["connection_detail"] == "engine stopped"
    });
    engine.kill9();
    let work_events = lines(&engine, &["events"], "work");
    let work_notes = lines(&engine, &["notifications"], "work");
    let (ok, out, err) = engine.run(&["logout", "--account", "home"], None);
    assert!(ok && out.contains("Signed out home"), "{out}{err}");
    let secrets = desktop.secret("quotabell");
    assert!(!secrets.contains(&home_token), "home's token is gone");
    assert!(secrets.contains(&work_token), "work's token stays");
    let (ok, _, err) = engine.run(&["status", "--account", "home"], None);
    assert!(
        !ok && err.contains("no account is called \"home\""),
        "{err}"
    );
    assert_eq!(lines(&engine, &["events"], "work"), work_events);
    assert_eq!(lines(&engine, &["notifications"], "work"), work_notes);
    let db = rusqlite::Connection::open(engine.data.join("quotabell.db")).unwrap();
    for table in [
        "events",
        "builds",
        "notifications",
        "quota_snapshots",
        "sync_state",
    ] {
        let others: i64 = db
            .query_row(
                &format!(
                    "SELECT COUNT(*) FROM {table} WHERE account_id NOT IN (SELECT id FROM accounts)"
                ),
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(others, 0, "{table} keeps nothing of home");
    }
    // One account left: commands need no --account again.
    assert!(engine.run(&["history"], None).0);
}
