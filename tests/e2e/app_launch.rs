//! How the real app starts and is reached: a notification's action opens the window on Usage;
//! a second launch hands over to the running one. The real app, tray-only as at
//! login, a real notification daemon (dunst) performing the notification's default action.

use std::time::Duration;

use crate::support::{
    Backend, Desktop, Engine, bin, cmdline, descendants, parent_of, post_build, wait_until,
};

/// The children of `pid` whose command line contains `needle`: (pid, arguments).
fn children_with(pid: u32, needle: &str) -> Vec<(u32, Vec<String>)> {
    descendants(pid)
        .into_iter()
        .filter(|&c| parent_of(c) == Some(pid))
        .map(|c| (c, cmdline(c)))
        .filter(|(_, args)| args.iter().any(|a| a == needle))
        .collect()
}

#[test]
fn the_notification_action_opens_the_window_on_usage() {
    let _app_slot = crate::support::one_app_at_a_time();
    let desktop = Desktop::start_lingering();
    // A tray host, as on a desktop with a tray (without one the app opens its window).
    let _tray = quotabell_testbed::TrayWatcher::start(&desktop.bus).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::start(dir.path(), &[]);
    let token = backend.add_user("ana@example.com", "free");
    let engine = Engine::new(&desktop, &dir.path().join("profile"));
    engine.login(&backend.url(), &token);
    let mut app = desktop
        .command(bin("quotabell-app"))
        .arg("--hidden")
        .env("QUOTABELL_DATA_DIR", &engine.data)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("app.stderr")).unwrap())
        .spawn()
        .unwrap();
    let pid = app.id();
    wait_until(
        "the app's engine to connect",
        Duration::from_secs(30),
        || engine.status_json()["connection"] == "connected",
    );
    assert!(
        children_with(pid, "--window").is_empty(),
        "--hidden opens no window"
    );

    for n in 0..80 {
        assert_eq!(post_build(&backend.url(), &token, "web", n).unwrap(), 201);
    }
    wait_until(
        "the 80% notification on screen",
        Duration::from_secs(20),
        || {
            let out = desktop
                .command("dunstctl")
                .args(["count", "displayed"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim() == "1"
        },
    );
    // What a click on the notification does: dunst invokes its default action.
    let out = desktop
        .command("dunstctl")
        .args(["action", "0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut window = None;
    wait_until("a window process on Usage", Duration::from_secs(20), || {
        window = children_with(pid, "--window")
            .into_iter()
            .find(|(_, args)| args.windows(2).any(|w| w[0] == "--view" && w[1] == "usage"))
            .map(|(child, _)| child);
        window.is_some()
    });
    let _ = app.kill();
    let _ = app.wait();
    // Its window process sees its stdin close and exits with it.
    let proc_dir = format!("/proc/{}", window.unwrap());
    wait_until(
        "the window process to exit",
        Duration::from_secs(20),
        || {
            std::fs::read_to_string(format!("{proc_dir}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true)
        },
    );
}

#[test]
fn a_second_launch_opens_the_running_apps_window_and_exits() {
    let _app_slot = crate::support::one_app_at_a_time();
    let desktop = Desktop::start();
    let _tray = quotabell_testbed::TrayWatcher::start(&desktop.bus).unwrap();
    let data = desktop.dir.path().join("profile");
    let launch = |hidden: bool| {
        let mut c = desktop.command(bin("quotabell-app"));
        if hidden {
            c.arg("--hidden");
        }
        c.env("QUOTABELL_DATA_DIR", &data)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    };
    let mut first = launch(true).spawn().unwrap();
    let pid = first.id();
    // Signed out and tray-only: wait until it serves its single-instance name on the bus.
    wait_until(
        "the first instance's bus name",
        Duration::from_secs(30),
        || {
            let out = desktop
                .command("dbus-send")
                .args([
                    "--session",
                    "--print-reply",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.ListNames",
                ])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).contains("SingleInstance")
        },
    );
    assert!(children_with(pid, "--window").is_empty());
    let second = launch(false).status().unwrap();
    assert!(
        second.success(),
        "the second launch hands over and exits: {second:?}"
    );
    wait_until(
        "the first instance's window",
        Duration::from_secs(20),
        || !children_with(pid, "--window").is_empty(),
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first instance still runs"
    );
    let _ = first.kill();
    let _ = first.wait();
}
