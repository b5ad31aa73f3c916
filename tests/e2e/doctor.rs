//! `quotabell doctor` under the test desktop: all ok, then each way a desktop breaks (a revoked
//! token, a stopped backend, no tray host, a locked keyring, no notification daemon) reported as
//! its own failure with its fix, exit status 1, no panic.

use std::process::Command;
use std::time::Duration;

use quotabell_testbed::TrayWatcher;

use crate::support::*;

/// `doctor`'s exit success and its lines.
fn doctor(engine: &Engine<'_>) -> (bool, String) {
    let (ok, out, err) = engine.run(&["doctor"], None);
    assert!(!err.contains("panicked"), "{err}");
    (ok, out)
}

/// The finding of `check` (its line and the fix under it).
fn finding(out: &str, check: &str) -> String {
    let mut lines = out.lines();
    while let Some(l) = lines.next() {
        if l.get(6..).is_some_and(|rest| rest.starts_with(check)) {
            let fix = lines
                .clone()
                .next()
                .filter(|f| f.starts_with("      fix: "));
            return format!("{l}\n{}", fix.unwrap_or(""));
        }
    }
    panic!("no {check:?} line in:\n{out}")
}

fn expect_fail(engine: &Engine<'_>, check: &str, detail: &str, fix: &str) {
    let (ok, out) = doctor(engine);
    assert!(!ok, "doctor exited 0:\n{out}");
    let f = finding(&out, check);
    assert!(f.starts_with("FAIL "), "{f}\n---\n{out}");
    assert!(f.contains(detail), "{f}");
    assert!(f.contains(&format!("fix: {fix}")), "{f}");
}

#[test]
fn doctor_names_each_broken_part_with_its_fix() {
    // No D-Bus activation: a daemon stopped here stays stopped, as on a desktop without one.
    let desktop = Desktop::start_without_activation();
    let tray = TrayWatcher::start(&desktop.bus).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut backend = Backend::start(
        dir.path(),
        &["--keepalive-secs", "0.5", "--retry-ms", "100"],
    );
    let email = "doctor@example.test";
    let token = backend.add_user(email, "free");
    let mut engine = Engine::new(&desktop, &dir.path().join("profile"));
    engine.login(&backend.url(), &token);
    engine.start_watch();
    wait_until("the engine connected", Duration::from_secs(30), || {
        engine.connection().0 == "connected"
    });

    let (ok, out) = doctor(&engine);
    assert!(ok, "{out}");
    for check in [
        "secret service",
        "notifications",
        "tray",
        "cache",
        "engine",
        "account",
        "clock",
    ] {
        assert!(finding(&out, check).starts_with("ok "), "{check}:\n{out}");
    }
    assert!(finding(&out, "notifications").contains("dunst"), "{out}");

    // The operator replaces the token (the backend restarted, so no cache keeps the old one).
    backend.cli(&["user", "token", "--email", email]);
    backend.restart();
    expect_fail(
        &engine,
        "account",
        "refused the token",
        "the token was revoked",
    );

    backend.kill9();
    expect_fail(
        &engine,
        "account",
        "is unreachable",
        "check that the server is up",
    );

    drop(tray);
    expect_fail(
        &engine,
        "tray",
        "no StatusNotifierItem host",
        "use a desktop with a system tray",
    );
    assert!(finding(&doctor(&engine).1, "tray").contains("GNOME"));

    // Lock the default keyring, as a screen lock or a timeout would.
    let locked = Command::new("dbus-send")
        .args([
            &format!("--bus={}", desktop.bus),
            "--print-reply",
            "--dest=org.freedesktop.secrets",
            "/org/freedesktop/secrets",
            "org.freedesktop.Secret.Service.Lock",
            "array:objpath:/org/freedesktop/secrets/collection/login",
        ])
        .output()
        .unwrap();
    assert!(locked.status.success(), "{locked:?}");
    expect_fail(&engine, "secret service", "locked", "unlock it");
    let (_, out) = doctor(&engine);
    assert!(finding(&out, "account").starts_with("warn "), "{out}");

    let dunst = desktop.dunst();
    unsafe { libc::kill(dunst as i32, libc::SIGKILL) };
    expect_fail(
        &engine,
        "notifications",
        "no notification daemon",
        "start a notification daemon",
    );
}
