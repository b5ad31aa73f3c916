use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rand::Rng;

use crate::cluster::Deployment;
use crate::support::*;

/// Posts builds of one app until the Free plan's 100 are used, never beyond `allowed` builds
/// until that is raised; posts fail while the backend is down and are retried.
fn post_until_full(
    base: String,
    token: String,
    allowed: Arc<AtomicUsize>,
    done: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut n = 0;
        loop {
            if n >= allowed.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            match post_build(&base, &token, "web", n) {
                Ok(201) => n += 1,
                Ok(402) => break,
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
            std::thread::sleep(Duration::from_millis(15));
        }
        done.store(true, Ordering::SeqCst);
    })
}

/// The server side of a [`Filling`] run.
enum Store {
    Sqlite,
    /// This many instances on one PostgreSQL database, behind a round-robin balancer.
    Postgres(usize),
}

/// A watched Free account (the backend on half-second keepalives, the engine's backoff capped at
/// a second) and a poster filling its 100 builds in the background: what the soak tests below
/// do their faults to.
struct Filling<'d> {
    desktop: &'d Desktop,
    engine: Engine<'d>,
    backend: Deployment,
    // Held for the backend's database and the engine's profile.
    _dir: tempfile::TempDir,
    token: String,
    allowed: Arc<AtomicUsize>,
    done: Arc<AtomicBool>,
    poster: Option<std::thread::JoinHandle<()>>,
}

impl<'d> Filling<'d> {
    fn start(desktop: &'d Desktop, email: &str, store: Store) -> Self {
        Self::start_holding_at(desktop, email, store, usize::MAX)
    }

    /// Starts with the poster held after `allowed` builds (see [`Filling::release`]).
    fn start_holding_at(desktop: &'d Desktop, email: &str, store: Store, allowed: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let args = ["--keepalive-secs", "0.5", "--retry-ms", "100"];
        let backend = match store {
            Store::Sqlite => Deployment::sqlite(dir.path(), &args),
            Store::Postgres(n) => Deployment::postgres(dir.path(), n, &args),
        };
        let token = backend.add_user(email, "free");
        let mut engine = Engine::new(desktop, &dir.path().join("profile"));
        engine
            .watch_args
            .extend(["--max-backoff-secs".into(), "1".into()]);
        engine.login(&backend.url(), &token);
        quiet_rejections(&engine);
        engine.start_watch();
        let allowed = Arc::new(AtomicUsize::new(allowed));
        let done = Arc::new(AtomicBool::new(false));
        let poster = post_until_full(backend.url(), token.clone(), allowed.clone(), done.clone());
        Self {
            desktop,
            engine,
            backend,
            _dir: dir,
            token,
            allowed,
            done,
            poster: Some(poster),
        }
    }

    /// Lets the poster go on to `allowed` builds.
    fn release(&self, allowed: usize) {
        self.allowed.store(allowed, Ordering::SeqCst);
    }

    /// How many builds the engine has stored.
    fn builds_seen(&self) -> usize {
        self.engine
            .events()
            .iter()
            .filter(|e| e.1 == "build.accepted")
            .count()
    }

    /// Waits for the poster to fill the account, checks that the engine's log is the server's
    /// and waits for the limit notification (and two seconds more, for a late repeat).
    fn finish(&mut self) {
        self.release(usize::MAX);
        self.poster.take().expect("finished once").join().unwrap();
        assert!(self.done.load(Ordering::SeqCst));
        engine_matches_server_at(&self.engine, &self.backend.url(), &self.token);
        wait_until("the limit notification", Duration::from_secs(20), || {
            self.desktop.count_mentions(BUILDS_100) >= 1
        });
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
fn backend_restarted_20_times_loses_and_repeats_nothing() {
    let desktop = Desktop::start();
    let mut run = Filling::start(&desktop, "restarts@example.com", Store::Sqlite);
    let mut rng = rand::rng();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(rng.random_range(50..400)));
        run.backend.instances[0].restart();
    }
    run.finish();
    each_crossing_shown_once(&desktop);
}

/// The same account on three instances sharing one PostgreSQL database behind a round-robin
/// balancer: builds posted to any instance reach the engine's stream on another, and when the
/// instance holding that stream is killed (SIGKILL) mid-fill, before either crossing, the
/// engine reconnects through the balancer to a survivor; the killed one comes back on its port
/// for the rest. Nothing is lost or repeated, and each crossing is shown once.
#[test]
fn three_postgres_instances_one_killed_under_the_stream_lose_and_repeat_nothing() {
    let desktop = Desktop::start();
    let mut run =
        Filling::start_holding_at(&desktop, "cluster@example.com", Store::Postgres(3), 50);
    wait_until(
        "the first 50 builds streamed to the engine",
        Duration::from_secs(60),
        || run.builds_seen() == 50 && run.backend.balancer().open_streams().len() == 1,
    );
    let victim = run.backend.balancer().open_streams()[0];
    run.backend.instances[victim].kill9();
    wait_until(
        "the engine's stream to reopen on another instance",
        Duration::from_secs(30),
        || {
            let open = run.backend.balancer().open_streams();
            !open.is_empty() && !open.contains(&victim)
        },
    );
    // Back on its port, the instance takes its share of the rest, crossings included.
    run.backend.instances[victim].restart();
    run.release(usize::MAX);
    run.finish();
    each_crossing_shown_once(&desktop);
    assert_eq!(
        run.backend.psql(
            "SELECT u.builds_used, (SELECT count(*) FROM builds b WHERE b.user_id = u.id)
             FROM users u WHERE email = 'cluster@example.com'"
        ),
        "100|100",
        "counter|rows"
    );
}

#[test]
fn engine_killed_9_at_random_points_loses_and_repeats_nothing() {
    let desktop = Desktop::start();
    let mut run = Filling::start(&desktop, "kills@example.com", Store::Sqlite);
    let mut rng = rand::rng();
    for _ in 0..20 {
        // Short lives hit the start-up catch-up; longer ones the live stream.
        std::thread::sleep(Duration::from_millis(rng.random_range(30..500)));
        run.engine.kill9();
        run.engine.start_watch();
    }
    run.finish();
    shown_once_or_as_a_counted_repeat(&desktop, &run.engine, BUILDS_80);
    shown_once_or_as_a_counted_repeat(&desktop, &run.engine, BUILDS_100);
    let (ok, out, _) = run.engine.run(&["status", "--json"], None);
    assert!(ok && out.contains("\"used\":100"), "{out}");
}

/// The daemon shows `text` once, plus at most the repeats the engine counted: a kill that lands
/// while a notification call is in flight leaves the row `sending`, and the next start shows
/// it again (an alert is never lost) and counts it in `repeats_possible`. Without such a count
/// any second copy is a failure.
fn shown_once_or_as_a_counted_repeat(desktop: &Desktop, engine: &Engine<'_>, text: &str) {
    let at_daemon = desktop.count_mentions(text);
    let rows = engine.notifications();
    let mentions = |n: &serde_json::Value| {
        [&n["title"], &n["body"]]
            .iter()
            .any(|f| f.as_str().is_some_and(|t| t.contains(text)))
    };
    let allowed: u64 = rows
        .iter()
        .filter(|n| mentions(n))
        .map(|n| n["repeats_possible"].as_u64().expect("repeats_possible"))
        .sum();
    println!("{text}: {at_daemon} at the daemon, {allowed} possible repeats counted");
    assert!(
        at_daemon >= 1 && at_daemon as u64 <= 1 + allowed,
        "{text}: {at_daemon} at the daemon, {allowed} possible repeats counted\ndaemon: {:#?}\nrows: {rows:#?}",
        desktop.notifications()
    );
}

#[test]
fn offline_start_answers_from_cache_then_one_digest() {
    let desktop = Desktop::start();
    let dir = tempfile::tempdir().unwrap();
    let mut backend = Backend::start(
        dir.path(),
        &["--keepalive-secs", "0.5", "--retry-ms", "100"],
    );
    let token = backend.add_user("offline@example.com", "free");
    let mut engine = Engine::new(&desktop, &dir.path().join("profile"));
    engine
        .watch_args
        .extend(["--max-backoff-secs".into(), "0.5".into()]);
    engine.login(&backend.url(), &token);
    engine.start_watch();
    for n in 0..10 {
        assert_eq!(post_build(&backend.url(), &token, "web", n).unwrap(), 201);
    }
    // Cached by a completed sync: builds, and the usage that comes with them.
    wait_until(
        "ten builds and their usage cached",
        Duration::from_secs(20),
        || {
            let st = engine.status_json();
            st["meters"][0]["used"] == 10
                && !st["last_synced_at"].is_null()
                && engine.run(&["history", "--json"], None).1.lines().count() == 10
        },
    );
    engine.kill9();
    // While the app is closed the user crosses 80% and 100%.
    for n in 10..100 {
        assert_eq!(post_build(&backend.url(), &token, "web", n).unwrap(), 201);
    }
    backend.kill9();
    assert_eq!(desktop.notifications().len(), 0, "nothing notified yet");

    engine.start_watch();
    // The killed engine left "connected" behind; wait for the new one's own verdict.
    wait_until(
        "the new engine to find the backend down",
        Duration::from_secs(20),
        || {
            let st = engine.status_json();
            st["connection"] == "offline"
                && st["connection_detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("cannot reach"))
        },
    );
    let (ok, text, _) = engine.run(&["status"], None);
    assert!(ok);
    assert!(
        text.contains("offline — showing cached data from"),
        "{text}"
    );
    assert!(text.contains("10 / 100"), "{text}");
    let (ok, history, _) = engine.run(&["history", "--app", "web", "--json"], None);
    assert!(ok);
    assert_eq!(
        history.lines().count(),
        10,
        "history answers from the cache"
    );

    backend.restart();
    engine_matches_server(&engine, &backend, &token);
    wait_until("the digest", Duration::from_secs(20), || {
        !desktop.notifications().is_empty()
    });
    std::thread::sleep(Duration::from_secs(2));
    let notes = desktop.notifications();
    assert_eq!(notes.len(), 1, "one digest, not a storm: {notes:#?}");
    let (summary, body) = &notes[0];
    assert!(
        body.contains("While you were away: 90 builds; builds 100/100"),
        "{summary} / {body}"
    );
    assert!(
        body.contains(BUILDS_80) && body.contains(BUILDS_100),
        "{body}"
    );
}

#[test]
fn the_token_lives_only_in_the_keychain() {
    let desktop = Desktop::start();
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start(dir.path(), &["--keepalive-secs", "0.5"]);
    let token = backend.add_user("secret@example.com", "free");
    let profile = dir.path().join("profile");
    let mut engine = Engine::new(&desktop, &profile);

    // A wrong token leaves nothing behind.
    let (ok, _, err) = engine.run(&["login", "--server", &backend.url()], Some("qb_wrong\n"));
    assert!(!ok && err.contains("rejected the token"), "{err}");
    assert!(
        !desktop.secret("quotabell").contains("secret = "),
        "no keychain entry after a failed login"
    );
    assert!(
        !engine.run(&["status"], None).0,
        "no account after a failed login"
    );

    engine.login(&backend.url(), &token);
    assert!(
        desktop
            .secret("quotabell")
            .contains(&format!("secret = {token}")),
        "the keychain holds it"
    );
    engine.start_watch();
    for n in 0..85 {
        post_build(&backend.url(), &token, "web", n).unwrap();
    }
    wait_until("80% notified", Duration::from_secs(20), || {
        desktop.count_mentions(BUILDS_80) == 1
    });

    // While it runs at trace level: not in argv of any process, not in any file of the profile.
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            assert!(
                !String::from_utf8_lossy(&cmdline).contains(&token),
                "token in the argv of {:?}",
                entry.path()
            );
        }
    }
    let mut checked = 0;
    for file in walk(&profile) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !contains(&bytes, token.as_bytes()),
            "token found in {}",
            file.display()
        );
        checked += 1;
    }
    assert!(
        checked >= 3,
        "database, its WAL and the engine log were checked"
    );
    let log = std::fs::read_to_string(profile.join("state/logs/engine.log")).unwrap();
    assert!(log.contains("TRACE"), "the log is at trace level");

    engine.kill9();
    let (ok, out, _) = engine.run(&["logout"], None);
    assert!(ok, "{out}");
    assert!(
        !desktop.secret("quotabell").contains(&token),
        "logout deletes it"
    );
}

#[test]
fn no_secret_service_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start(dir.path(), &[]);
    let token = backend.add_user("nokeyring@example.com", "free");
    let out = std::process::Command::new(bin("quotabell"))
        .arg("--data-dir")
        .arg(dir.path().join("p"))
        .args(["login", "--server", &backend.url()])
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path={}", dir.path().join("no-bus").display()),
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(format!("{token}\n").as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no Secret Service is running") && err.contains("gnome-keyring"),
        "{err}"
    );
    assert!(
        !dir.path().join("p/quotabell.db").exists(),
        "no plaintext fallback, no cache"
    );
}

#[test]
fn only_one_engine_per_profile() {
    let desktop = Desktop::start();
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start(dir.path(), &["--keepalive-secs", "0.5"]);
    let token = backend.add_user("lock@example.com", "free");
    let mut first = Engine::new(&desktop, &dir.path().join("profile"));
    first.login(&backend.url(), &token);
    first.start_watch();
    wait_until(
        "the first engine to connect",
        Duration::from_secs(20),
        || first.status_json()["connection"] == "connected",
    );
    let pid = first.pid().unwrap();
    let second = Engine::new(&desktop, &dir.path().join("profile"));
    let (ok, _, err) = second.run(&["watch"], None);
    assert!(!ok, "a second engine must not run");
    assert!(
        err.contains(&format!("pid {pid} (quotabell watch)")),
        "it says who holds the lock: {err}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
