//! The fault soak: the real backend, the real engine binary (`quotabell watch`) behind the
//! fault-injecting proxy, a build-plugin simulation that crosses the Free plan's quota again
//! and again and rolls the billing period (`quotabell-server period roll`), and random faults
//! for a fixed time. The ledger at the end compares three records kept by different parts —
//! the server's event log, the engine's SQLite cache, and the notification daemon's history —
//! and the run fails unless nothing was lost or repeated and every crossing was notified
//! exactly once.
//!
//! The faults, drawn at random one after another:
//! - the backend is killed (`kill -9`) and restarted on the same port and database;
//! - the connection is cut after a random few bytes (mid-event when events flow);
//! - the connection stalls for longer than the keepalive watchdog (bytes stop, sockets stay);
//! - the engine is killed (`kill -9`) and restarted;
//! - the engine is stopped (`SIGSTOP`) longer than the keepalive, then continued: a laptop
//!   lid closed and opened;
//! - the engine's wall clock jumps (libfaketime with a rewritable offset; monotonic time is
//!   left alone, as on a real machine whose clock is set).
//!
//! With `QUOTABELL_SOAK_STORE=postgres` the backend is three instances on one throwaway
//! PostgreSQL database behind a round-robin balancer (the fault proxy in front of it), and the
//! backend faults are those of such a deployment instead:
//! - one instance is killed (`kill -9`) and left down for a few seconds of other faults before
//!   it is restarted on its port; the others serve meanwhile;
//! - every instance's LISTEN connection is terminated (`pg_terminate_backend`), so wake-ups
//!   across instances are lost until it reconnects (its backstop re-read covers the gap).
//!
//! Long, so plain `cargo test` skips it. `make soak` runs it for 5 minutes (`make soak-pg` on
//! PostgreSQL); the test command (scripts/test) for 2 (`QUOTABELL_SOAK_SECS`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;

use crate::cluster::Deployment;
use crate::proxy::Proxy;
use quotabell_testbed::FakeClock;

use crate::support::{Desktop, Engine, bin, post_build_keyed, server_events, unescape_markup};

const DEFAULT_SECS: u64 = 300;
/// The default run must inject at least this many; shorter runs proportionally fewer.
const FAULTS_PER_5_MIN: u64 = 100;
/// The server's keepalive; the engine calls a connection dead after 2.5 times that.
const KEEPALIVE_SECS: &str = "1";
/// Stalls and stops last longer than the engine's 2.5 s watchdog.
const SILENCE_MS: std::ops::Range<u64> = 3000..4500;
/// Wall-clock offsets (seconds) the engine's clock jumps between.
const CLOCK_OFFSETS: [i64; 6] = [-7200, -900, 0, 900, 3600, 90_000];
/// Rejected builds in a period before the plugin simulation rolls to the next one.
const REJECTIONS_PER_PERIOD: u32 = 3;
const EMAIL: &str = "soak@example.test";
/// Instances of the PostgreSQL deployment.
const INSTANCES: usize = 3;
/// How long a killed instance stays down (ms) before it is restarted.
const DOWN_MS: std::ops::Range<u64> = 500..5000;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Fault {
    BackendKill,
    InstanceKill,
    ListenerKill,
    Cut,
    Stall,
    EngineKill,
    EngineStop,
    ClockJump,
}

const SQLITE_FAULTS: [Fault; 6] = [
    Fault::BackendKill,
    Fault::Cut,
    Fault::Stall,
    Fault::EngineKill,
    Fault::EngineStop,
    Fault::ClockJump,
];

const POSTGRES_FAULTS: [Fault; 7] = [
    Fault::InstanceKill,
    Fault::ListenerKill,
    Fault::Cut,
    Fault::Stall,
    Fault::EngineKill,
    Fault::EngineStop,
    Fault::ClockJump,
];

impl Fault {
    fn label(self) -> &'static str {
        match self {
            Self::BackendKill => "backend kill -9",
            Self::InstanceKill => "instance kill -9",
            Self::ListenerKill => "listener kill",
            Self::Cut => "cut",
            Self::Stall => "stall",
            Self::EngineKill => "engine kill -9",
            Self::EngineStop => "engine stop/cont",
            Self::ClockJump => "clock jump",
        }
    }
}

#[test]
#[ignore = "long: `make soak` (5 min) or scripts/test (2 min) run it"]
fn fault_soak() {
    let secs: u64 = std::env::var("QUOTABELL_SOAK_SECS")
        .ok()
        .map(|s| s.parse().expect("QUOTABELL_SOAK_SECS is whole seconds"))
        .unwrap_or(DEFAULT_SECS);
    let store = std::env::var("QUOTABELL_SOAK_STORE").unwrap_or_else(|_| "sqlite".into());
    let desktop = Desktop::start();
    let dir = desktop.dir.path().to_owned();
    let args = ["--keepalive-secs", KEEPALIVE_SECS];
    let (deployment, faults_drawn): (_, &[Fault]) = match store.as_str() {
        "sqlite" => (Deployment::sqlite(&dir, &args), &SQLITE_FAULTS),
        "postgres" => (
            Deployment::postgres(&dir, INSTANCES, &args),
            &POSTGRES_FAULTS,
        ),
        other => panic!("QUOTABELL_SOAK_STORE is sqlite or postgres, not {other:?}"),
    };
    let mut backend = Backends {
        deployment,
        down: None,
    };
    let token = backend.deployment.add_user(EMAIL, "free");
    let proxy = Proxy::start(&backend.deployment.addr());
    let engine = Engine::new(&desktop, &dir.join("engine"));
    std::fs::create_dir_all(&engine.data).unwrap();
    engine.login(&proxy.url(), &token);
    // The thresholds the server announces, so that each announced crossing is one the user
    // asked to hear about.
    let (ok, _, err) = engine.run(&["settings", "--thresholds", "80,90,100"], None);
    assert!(ok, "{err}");
    let mut watch = Watch::new(&engine, dir.join("clock-offset"));
    watch.start();

    let stop = Arc::new(AtomicBool::new(false));
    let plugin = {
        let (base, token, db, stop) = (
            backend.deployment.url(),
            token.clone(),
            backend.deployment.db(),
            stop.clone(),
        );
        std::thread::spawn(move || simulate_plugin(&base, &token, &db, &stop))
    };

    println!(
        "soak: {secs} s of faults on {store}; data in {}",
        dir.display()
    );
    let mut rng = rand::rng();
    let mut faults: BTreeMap<Fault, u64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        watch.check_alive();
        backend.restart_when_due();
        let fault = faults_drawn[rng.random_range(0..faults_drawn.len())];
        if inject(fault, &mut rng, &mut backend, &proxy, &mut watch) {
            *faults.entry(fault).or_default() += 1;
        }
        sleep_ms(rng.random_range(200..1000));
    }

    // Quiet: no more faults, the last builds, then the engine must settle by itself.
    proxy.no_cuts();
    proxy.resume();
    watch.resume();
    backend.restart_down();
    stop.store(true, Ordering::SeqCst);
    let plugin = plugin.join().expect("plugin simulation");
    let server = server_events(&backend.deployment.url(), &token);
    settle(&engine, &watch, &server);
    // The last notification's D-Bus call may still be on its way to the daemon.
    sleep_ms(1500);
    watch.check_alive();
    watch.terminate();

    let ledger = Ledger::new(
        &faults,
        &server,
        &engine,
        &desktop,
        &backend.server_integrity(),
    );
    println!(
        "soak: plugin posted {} builds ({} accepted, {} rejected, {} unanswered; {} retries), {} periods",
        plugin.posted,
        plugin.accepted,
        plugin.rejected,
        plugin.unanswered,
        plugin.retries,
        plugin.rolls + 1
    );
    // Every build the plugin sent counted once, however often it was sent again.
    let on_server = |kind: &str| server.iter().filter(|e| e.1 == kind).count() as u64;
    for (kind, answered) in [
        ("build.accepted", plugin.accepted),
        ("build.rejected", plugin.rejected),
    ] {
        let n = on_server(kind);
        assert!(
            (answered..=answered + plugin.unanswered).contains(&n),
            "{n} {kind} events on the server for {answered} such answers to the plugin \
             ({} unanswered at the end, {} retries)",
            plugin.unanswered,
            plugin.retries
        );
    }
    println!("{}", ledger.line());
    for problem in &ledger.problems {
        println!("soak problem: {problem}");
    }
    let wanted = (FAULTS_PER_5_MIN * secs / DEFAULT_SECS).max(1);
    assert!(
        ledger.faults >= wanted,
        "only {} faults in {secs} s (at least {wanted} wanted)",
        ledger.faults
    );
    assert!(
        plugin.rolls >= 2,
        "the plugin simulation rolled the period only {} times: too few crossings to prove anything",
        plugin.rolls
    );
    // A clock jump the engine never noticed was no fault at all (libfaketime not in effect).
    let jumps = faults.get(&Fault::ClockJump).copied().unwrap_or(0);
    let wakes = engine
        .log()
        .matches("clock jump: treating as a wake")
        .count();
    println!(
        "soak: the engine noticed {wakes} of {jumps} clock jumps (it looks at each keepalive; a kill may come first)"
    );
    assert!(
        jumps < 3 || wakes > 0,
        "{jumps} clock jumps and the engine noticed none: is libfaketime working?"
    );
    assert!(
        ledger.problems.is_empty(),
        "soak failed: {}\n{}\nengine log:\n{}",
        ledger.line(),
        ledger.problems.join("\n"),
        engine.log_tail()
    );
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Injects one fault and returns once it is over; `false` when it did not take effect.
fn inject(
    fault: Fault,
    rng: &mut impl Rng,
    backend: &mut Backends,
    proxy: &Proxy,
    watch: &mut Watch<'_>,
) -> bool {
    match fault {
        Fault::BackendKill => {
            let only = &mut backend.deployment.instances[0];
            only.kill9();
            sleep_ms(rng.random_range(0..1500));
            only.restart();
        }
        Fault::InstanceKill => {
            // One down at a time: the balancer always has instances to send to.
            backend.restart_down();
            let i = rng.random_range(0..backend.deployment.instances.len());
            backend.deployment.instances[i].kill9();
            let back_at = Instant::now() + Duration::from_millis(rng.random_range(DOWN_MS));
            backend.down = Some((i, back_at));
        }
        Fault::ListenerKill => {
            let killed = backend.deployment.psql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = 'quotabell listener' AND datname = current_database()",
            );
            return killed.parse::<u64>().is_ok_and(|n| n > 0);
        }
        Fault::Cut => {
            let before = proxy.cuts();
            proxy.cut_after_bytes(rng.random_range(1..=400));
            let until = Instant::now() + Duration::from_secs(3);
            while proxy.cuts() == before && Instant::now() < until {
                sleep_ms(10);
            }
            proxy.no_cuts();
            return proxy.cuts() > before;
        }
        Fault::Stall => {
            proxy.stall();
            sleep_ms(rng.random_range(SILENCE_MS));
            proxy.resume();
        }
        Fault::EngineKill => {
            watch.kill9();
            sleep_ms(rng.random_range(0..1000));
            watch.start();
        }
        Fault::EngineStop => {
            watch.signal(libc::SIGSTOP);
            sleep_ms(rng.random_range(SILENCE_MS));
            watch.signal(libc::SIGCONT);
        }
        Fault::ClockJump => {
            let offsets: Vec<i64> = CLOCK_OFFSETS
                .into_iter()
                .filter(|o| *o != watch.clock_offset)
                .collect();
            watch.set_clock_offset(offsets[rng.random_range(0..offsets.len())]);
        }
    }
    true
}

/// The backend and, on PostgreSQL, the instance a kill left down and when it comes back.
struct Backends {
    deployment: Deployment,
    down: Option<(usize, Instant)>,
}

impl Backends {
    fn restart_when_due(&mut self) {
        if self.down.is_some_and(|(_, at)| Instant::now() >= at) {
            self.restart_down();
        }
    }

    fn restart_down(&mut self) {
        if let Some((i, _)) = self.down.take() {
            self.deployment.instances[i].restart();
        }
    }

    /// `ok` when the server's store is sound: SQLite's `PRAGMA integrity_check`; on PostgreSQL,
    /// the user's event log holds every id up to its counter, once.
    fn server_integrity(&self) -> String {
        if self.deployment.pg.is_none() {
            return integrity_check(&self.deployment.db());
        }
        self.deployment.psql(&format!(
            "SELECT CASE WHEN count(e.id) = u.last_event_id - u.pruned_through
                          AND count(DISTINCT e.id) = count(e.id)
                          AND coalesce(max(e.id), 0) = u.last_event_id
                     THEN 'ok'
                     ELSE format('%s events, %s distinct, newest %s, counter %s, pruned through %s',
                                 count(e.id), count(DISTINCT e.id), max(e.id),
                                 u.last_event_id, u.pruned_through)
                END
             FROM users u LEFT JOIN events e ON e.user_id = u.id AND e.id > u.pruned_through
             WHERE u.email = '{EMAIL}'
             GROUP BY u.id"
        ))
    }
}

/// `quotabell watch` run by the soak itself (so it can carry libfaketime), its log appended
/// across restarts.
struct Watch<'a> {
    engine: &'a Engine<'a>,
    clock: FakeClock,
    clock_offset: i64,
    child: Option<Child>,
    starts: u32,
}

impl<'a> Watch<'a> {
    fn new(engine: &'a Engine<'a>, clock_file: PathBuf) -> Self {
        let mut me = Self {
            engine,
            clock: FakeClock::new(&clock_file).unwrap_or_else(|e| panic!("{e}")),
            clock_offset: 0,
            child: None,
            starts: 0,
        };
        me.set_clock_offset(0);
        me
    }

    fn set_clock_offset(&mut self, secs: i64) {
        self.clock
            .set_offset(secs)
            .unwrap_or_else(|e| panic!("{e}"));
        self.clock_offset = secs;
    }

    fn start(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.engine.data.join("watch.stderr"))
            .unwrap();
        let mut cmd = self
            .engine
            .cmd(&["watch", "--keepalive-secs", KEEPALIVE_SECS]);
        cmd.args(["--max-backoff-secs", "2"])
            .env("RUST_LOG", "info,quotabell_core=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.clock.apply(&mut cmd);
        let child = cmd.spawn().unwrap();
        self.child = Some(child);
        self.starts += 1;
    }

    fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The engine never exits on its own during the soak: no fault is a reason to give up.
    fn check_alive(&mut self) {
        if let Some(c) = &mut self.child
            && let Some(status) = c.try_wait().unwrap()
        {
            panic!(
                "the engine exited by itself ({status}) after start {}:\n{}",
                self.starts,
                self.engine.log_tail()
            );
        }
    }

    /// SIGTERM, as a logout or shutdown would, so the cache is closed cleanly before it is
    /// checked.
    fn terminate(&mut self) {
        self.signal(libc::SIGTERM);
        if let Some(mut c) = self.child.take() {
            let until = Instant::now() + Duration::from_secs(10);
            while c.try_wait().unwrap().is_none() {
                if Instant::now() > until {
                    let _ = c.kill();
                    let _ = c.wait();
                    panic!("the engine ignored SIGTERM for 10 s");
                }
                sleep_ms(20);
            }
        }
    }
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        self.resume();
        self.kill9();
    }
}

#[derive(Default)]
struct PluginStats {
    posted: u64,
    accepted: u64,
    rejected: u64,
    /// Sends again after connection refused or no response (the backend was down or died
    /// mid-request): each under the build's key, so a build stored before the answer was lost
    /// is answered from its first outcome, not counted again.
    retries: u64,
    /// Builds still unanswered when the simulation stopped (at most one): stored or not.
    unanswered: u64,
    rolls: u32,
}

/// A build tool posting builds of two apps until `stop`. After a few rejections (the Free
/// plan blocks builds at its limit) the billing period is rolled by the operator command, so
/// each period crosses 80% and 100% again; rolls are more than a second apart because a
/// period is named by its start second.
fn simulate_plugin(base: &str, token: &str, db: &Path, stop: &AtomicBool) -> PluginStats {
    let mut stats = PluginStats::default();
    let mut rng = rand::rng();
    let mut rejected_in_period = 0;
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let app = if n % 4 == 0 { "docs" } else { "web" };
        stats.posted += 1;
        let key = format!("soak-{n}");
        loop {
            match post_build_keyed(base, token, app, n, &key) {
                Ok(201) => stats.accepted += 1,
                Ok(402) => {
                    stats.rejected += 1;
                    rejected_in_period += 1;
                }
                Ok(_) | Err(_) if stop.load(Ordering::SeqCst) => stats.unanswered += 1,
                Ok(_) | Err(_) => {
                    stats.retries += 1;
                    sleep_ms(100);
                    continue;
                }
            }
            break;
        }
        if rejected_in_period >= REJECTIONS_PER_PERIOD {
            sleep_ms(1100);
            roll_period(db);
            stats.rolls += 1;
            rejected_in_period = 0;
        }
        sleep_ms(rng.random_range(10..40));
    }
    stats
}

/// `quotabell-server period roll`, writing the database directly as an operator would (the
/// backend may be down at that moment; a running one notices the commit and streams it). `db`
/// is the SQLite file or the PostgreSQL URL.
fn roll_period(db: &Path) {
    for _ in 0..50 {
        let ok = Command::new(bin("quotabell-server"))
            .args(["period", "roll", "--user", EMAIL, "--db"])
            .arg(db)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return;
        }
        sleep_ms(100);
    }
    panic!("`quotabell-server period roll` kept failing");
}

/// Waits until the engine has stored every event the server has and no notification is left
/// pending or held (at most two minutes: its backoff is capped at 2 s).
fn settle(engine: &Engine<'_>, watch: &Watch<'_>, server: &[(String, String, Value)]) {
    let want: BTreeSet<&str> = server.iter().map(|e| e.0.as_str()).collect();
    let until = Instant::now() + Duration::from_secs(120);
    while Instant::now() < until {
        let have: BTreeSet<String> = engine.events().into_iter().map(|e| e.0).collect();
        let unsettled = engine.notifications().iter().any(|n| {
            matches!(
                n["state"].as_str(),
                Some("pending" | "held" | "failed" | "sending") | None
            )
        });
        if want.iter().all(|id| have.contains(*id)) && !unsettled {
            return;
        }
        sleep_ms(250);
    }
    // The ledger reports what is missing; the log says why.
    let _ = watch;
    println!(
        "soak: the engine did not settle within 2 minutes:\n{}",
        engine.log_tail()
    );
}

/// The end-of-run accounting, from the server's log, the engine's cache and the daemon.
struct Ledger {
    faults: u64,
    fault_text: String,
    server_events: usize,
    stored_events: usize,
    lost: usize,
    duplicated_events: usize,
    expected: usize,
    crossings: usize,
    rejection_notices: usize,
    /// Early warnings, runaway alerts and refill notices decided and shown (each is in the
    /// daemon's exactly-once count below like every shown notification).
    foresight: [usize; 3],
    notified: usize,
    direct: usize,
    digests: usize,
    at_daemon: usize,
    shown_rows: usize,
    counted_repeats: usize,
    duplicated_notifications: usize,
    missing_at_daemon: usize,
    integrity: String,
    problems: Vec<String>,
}

impl Ledger {
    fn new(
        faults: &BTreeMap<Fault, u64>,
        server: &[(String, String, Value)],
        engine: &Engine<'_>,
        desktop: &Desktop,
        server_integrity: &str,
    ) -> Self {
        let mut problems = Vec::new();

        // Events: every server event stored once, nothing else stored.
        let local = engine.events();
        let server_ids: BTreeSet<&str> = server.iter().map(|e| e.0.as_str()).collect();
        let mut local_count: HashMap<&str, usize> = HashMap::new();
        for e in &local {
            *local_count.entry(e.0.as_str()).or_default() += 1;
        }
        let lost: Vec<&str> = server_ids
            .iter()
            .filter(|id| !local_count.contains_key(*id))
            .copied()
            .collect();
        let duplicated_events: usize = local_count.values().map(|n| n - 1).sum();
        let strays = local_count
            .keys()
            .filter(|id| !server_ids.contains(*id))
            .count();
        if !lost.is_empty() {
            problems.push(format!(
                "{} events lost, first {:?}",
                lost.len(),
                &lost[..lost.len().min(5)]
            ));
        }
        if duplicated_events > 0 {
            problems.push(format!("{duplicated_events} events stored twice"));
        }
        if strays > 0 {
            problems.push(format!("{strays} stored events the server never had"));
        }

        // What deserved a notification, from the server's log alone.
        let (crossings, rejection_notices) = expected_keys(server);
        let refills = possible_refills(server);
        let rows = engine.notifications();
        let by_key: HashMap<&str, &Value> = rows
            .iter()
            .filter_map(|n| Some((n["dedupe_key"].as_str()?, n)))
            .collect();
        let covered = |key: &str| -> bool {
            let state = |k: &str| by_key.get(k).and_then(|n| n["state"].as_str());
            match state(key) {
                Some("shown" | "digested") => true,
                // Two thresholds reached in one step (a resync from /usage): one notification,
                // for the higher one. A crossing first seen after its period ended (the engine
                // was off across the roll) is recorded with that reason, not announced.
                Some("suppressed") => {
                    by_key.get(key).and_then(|n| n["reason"].as_str())
                        == Some("the period it belongs to has ended")
                        || higher_thresholds(key)
                            .iter()
                            .any(|k| matches!(state(k), Some("shown" | "digested")))
                }
                _ => false,
            }
        };
        let expected: BTreeSet<&String> = crossings.iter().chain(&rejection_notices).collect();
        let not_notified: Vec<&&String> = expected.iter().filter(|k| !covered(k)).collect();
        if !not_notified.is_empty() {
            problems.push(format!(
                "{} crossings/rejection notices never notified: {:?}",
                not_notified.len(),
                not_notified.iter().take(5).collect::<Vec<_>>()
            ));
        }
        let unexpected: Vec<&str> = rows
            .iter()
            .filter(|n| {
                matches!(
                    n["kind"].as_str(),
                    Some("quota" | "build_rejected" | "refill")
                )
            })
            .filter(|n| n["state"].as_str() != Some("suppressed"))
            .filter_map(|n| n["dedupe_key"].as_str())
            .filter(|k| !expected.iter().any(|e| e.as_str() == *k) && !refills.contains(*k))
            .collect();
        if !unexpected.is_empty() {
            problems.push(format!(
                "{} notifications for crossings the server never announced: {:?}",
                unexpected.len(),
                &unexpected[..unexpected.len().min(5)]
            ));
        }
        let unsettled: Vec<&str> = rows
            .iter()
            .filter(|n| {
                !matches!(
                    n["state"].as_str(),
                    Some("shown" | "digested" | "suppressed")
                )
            })
            .filter_map(|n| n["dedupe_key"].as_str())
            .collect();
        if !unsettled.is_empty() {
            problems.push(format!(
                "{} notifications never settled (pending, held or failed): {:?}",
                unsettled.len(),
                &unsettled[..unsettled.len().min(5)]
            ));
        }
        let state_count = |s: &str| {
            rows.iter()
                .filter(|n| n["state"].as_str() == Some(s))
                .count()
        };
        let digests = rows
            .iter()
            .filter(|n| {
                n["dedupe_key"]
                    .as_str()
                    .is_some_and(|k| k.starts_with("digest:"))
            })
            .filter(|n| n["state"].as_str() == Some("shown"))
            .count();
        if state_count("digested") > 0 && digests == 0 {
            problems.push("crossings were digested but no digest was shown".into());
        }

        // The daemon: exactly the rows the engine marked shown, each once, give or take the
        // repeats the engine counted (a kill or a timeout during a row's call: the call may
        // have got through before the row was shown again). Any other copy is a duplicate.
        let mut want: HashMap<(String, String), i64> = HashMap::new();
        let mut may_repeat: HashMap<(String, String), i64> = HashMap::new();
        for n in rows.iter().filter(|n| n["state"].as_str() == Some("shown")) {
            let text = |f: &str| n[f].as_str().unwrap_or("").trim().to_owned();
            let key = (text("title"), text("body"));
            *may_repeat.entry(key.clone()).or_default() +=
                n["repeats_possible"].as_i64().expect("repeats_possible");
            *want.entry(key).or_default() += 1;
        }
        let seen = desktop.notifications();
        let mut diff = want.clone();
        for (summary, body) in &seen {
            *diff
                .entry((
                    summary.trim().to_owned(),
                    unescape_markup(body).trim().to_owned(),
                ))
                .or_default() -= 1;
        }
        let beyond = |key: &(String, String), d: i64| {
            (-d - may_repeat.get(key).copied().unwrap_or(0)).max(0)
        };
        let counted_repeats: i64 = diff
            .iter()
            .filter(|(_, d)| **d < 0)
            .map(|(k, d)| -d - beyond(k, *d))
            .sum();
        let duplicated_notifications: i64 = diff.iter().map(|(k, d)| beyond(k, *d)).sum();
        let missing_at_daemon: i64 = diff.values().filter(|d| **d > 0).sum();
        if duplicated_notifications > 0 {
            let samples: Vec<_> = diff
                .iter()
                .filter(|(k, d)| beyond(k, **d) > 0)
                .take(3)
                .collect();
            problems.push(format!(
                "{duplicated_notifications} notifications at the daemon beyond those decided (duplicates): {samples:?}"
            ));
        }
        if missing_at_daemon > 0 {
            let samples: Vec<_> = diff.iter().filter(|(_, d)| **d > 0).take(3).collect();
            problems.push(format!(
                "{missing_at_daemon} notifications marked shown never reached the daemon: {samples:?}"
            ));
        }

        let engine_db = engine.data.join("quotabell.db");
        let integrity = format!(
            "engine {}, server {server_integrity}",
            integrity_check(&engine_db),
        );
        if integrity != "engine ok, server ok" {
            problems.push(format!("PRAGMA integrity_check: {integrity}"));
        }

        let fault_text = faults
            .iter()
            .map(|(f, n)| format!("{} {n}", f.label()))
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            faults: faults.values().sum(),
            fault_text,
            server_events: server.len(),
            stored_events: local.len(),
            lost: lost.len(),
            duplicated_events,
            expected: expected.len(),
            crossings: crossings.len(),
            rejection_notices: rejection_notices.len(),
            foresight: ["pace_warning", "runaway", "refill"].map(|kind| {
                rows.iter()
                    .filter(|n| n["kind"].as_str() == Some(kind))
                    .filter(|n| matches!(n["state"].as_str(), Some("shown" | "digested")))
                    .count()
            }),
            notified: expected.len() - not_notified.len(),
            direct: state_count("shown") - digests,
            digests,
            at_daemon: seen.len(),
            shown_rows: want.values().sum::<i64>() as usize,
            counted_repeats: counted_repeats as usize,
            duplicated_notifications: duplicated_notifications as usize,
            missing_at_daemon: missing_at_daemon as usize,
            integrity,
            problems,
        }
    }

    fn line(&self) -> String {
        format!(
            "soak ledger: faults {} ({}) | events on server {}, stored {}, lost {}, duplicated {} | notifications expected {} ({} crossings, {} rejection notices), notified exactly once {}; foresight shown {} early warnings, {} runaway alerts, {} refills | at the daemon {} (decided shown {}: {} direct, {} digests), repeats counted by the engine {}, duplicated beyond them {}, missing {} | integrity_check {}",
            self.faults,
            self.fault_text,
            self.server_events,
            self.stored_events,
            self.lost,
            self.duplicated_events,
            self.expected,
            self.crossings,
            self.rejection_notices,
            self.notified,
            self.foresight[0],
            self.foresight[1],
            self.foresight[2],
            self.at_daemon,
            self.shown_rows,
            self.direct,
            self.digests,
            self.counted_repeats,
            self.duplicated_notifications,
            self.missing_at_daemon,
            self.integrity,
        )
    }
}

/// The dedupe keys the engine must decide, derived from the server's log alone: one per
/// crossing the server announced (`quota.warning` / `quota.exceeded`), and the rejection
/// notices of each run of rejections (a run ends at an accepted build or a period roll): its
/// first at once, then the first of each later hour, after a day the first of each day.
fn expected_keys(server: &[(String, String, Value)]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut crossings = BTreeSet::new();
    let mut rejections = BTreeSet::new();
    let secs = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .map_or(0, |t| t.unix_timestamp())
    };
    let mut run: Option<(String, u32)> = None;
    for (_, kind, data) in server {
        match kind.as_str() {
            "quota.warning" | "quota.exceeded" => {
                let period = data
                    .pointer("/period/start")
                    .and_then(Value::as_str)
                    .unwrap_or("total");
                crossings.insert(format!(
                    "quota:{}:{period}:{}:{}",
                    data["metric"].as_str().unwrap_or("?"),
                    data["limit"],
                    data["threshold_percent"]
                ));
            }
            "build.accepted" | "quota.reset" => run = None,
            "build.rejected" => {
                let at = data["created_at"].as_str().unwrap_or("").to_owned();
                let (first, count) = run.get_or_insert_with(|| (at.clone(), 0));
                *count += 1;
                let elapsed = secs(&at) - secs(first);
                if *count == 1 {
                    rejections.insert(format!("rejected:{first}"));
                } else if (3600..86_400).contains(&elapsed) {
                    rejections.insert(format!("rejected:{first}:h{}", elapsed / 3600));
                } else if elapsed >= 86_400 {
                    rejections.insert(format!("rejected:{first}:d{}", elapsed / 86_400));
                }
            }
            _ => {}
        }
    }
    (crossings, rejections)
}

/// The refill notices the engine may decide: one per period the server started.
fn possible_refills(server: &[(String, String, Value)]) -> BTreeSet<String> {
    server
        .iter()
        .filter(|(_, kind, _)| kind == "quota.reset")
        .filter_map(|(_, _, data)| data.pointer("/period/start")?.as_str())
        .map(|start| format!("refill:builds:{start}"))
        .collect()
}

/// The keys of the same quota and period at the higher thresholds.
fn higher_thresholds(key: &str) -> Vec<String> {
    let Some((quota, t)) = key.rsplit_once(':') else {
        return Vec::new();
    };
    let t: u32 = t.parse().unwrap_or(u32::MAX);
    [80, 90, 100]
        .into_iter()
        .filter(|h| *h > t)
        .map(|h| format!("{quota}:{h}"))
        .collect()
}

fn integrity_check(db: &Path) -> String {
    match rusqlite::Connection::open(db) {
        Ok(conn) => conn
            .query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
            .unwrap_or_else(|e| e.to_string()),
        Err(e) => e.to_string(),
    }
}
