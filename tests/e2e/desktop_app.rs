//! The real desktop app (`quotabell-app`) driven over WebDriver: its window in the window
//! process (tauri-driver → WebKitWebDriver, see `webdriver.rs` for how the session reaches that
//! child process), its tray read back over D-Bus by [`TrayWatcher`], its notifications at dunst,
//! against the real backend on an ephemeral port and a real SQLite cache.
//!
//! Screenshots of each view land in `target/e2e-screenshots/` (the README's come from there).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::support::*;
use crate::support::{cmdline, descendants};
use crate::webdriver::{Session, TauriDriver};
use quotabell_testbed::{FakeClock, IconImage, ItemRef, TrayItem, TrayWatcher, X, load_png_rgba};

const WAIT: Duration = Duration::from_secs(30);

/// The first rejection of a run at the builds limit.
const REJECTED: &str = "Build rejected — new builds are refused";
const XSS: &str = "<img src=x onerror=alert(1)>";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The reference tray icon of a state (icons/tray/<name>.png), as the tray reader decodes it.
fn icon(name: &str) -> IconImage {
    load_png_rgba(&repo().join("icons/tray").join(format!("{name}.png"))).unwrap()
}

/// `target/e2e-screenshots/`, next to the binaries `bin()` finds.
fn screenshot_dir() -> PathBuf {
    let bin_dir = bin("quotabell-app").parent().unwrap().to_owned();
    let dir = bin_dir.parent().unwrap().join("e2e-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn save_screenshot(s: &Session, name: &str) {
    let png = s.screenshot();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot {name} is not a PNG"
    );
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

fn testid(id: &str) -> String {
    format!("[data-testid=\"{id}\"]")
}

/// tauri-driver for the app on `profile`, its log in `dir`.
fn driver_for(desktop: &Desktop, profile: &Path, dir: &Path) -> TauriDriver {
    TauriDriver::start(
        desktop,
        &[
            ("QUOTABELL_DATA_DIR", profile.as_os_str()),
            ("RUST_LOG", OsStr::new("info")),
        ],
        &dir.join("app.log"),
    )
}

/// Everything one test needs. Fields drop in order: the app (through its driver) first, the
/// desktop session last.
struct Harness {
    driver: TauriDriver,
    tray: TrayWatcher,
    backend: Backend,
    /// The backend's wall clock (the app keeps real time).
    clock: FakeClock,
    desktop: Desktop,
    dir: tempfile::TempDir,
}

impl Harness {
    fn start() -> Self {
        let desktop = Desktop::start();
        // Before the app: appindicator registers with whoever owns the watcher name then.
        let tray = TrayWatcher::start(&desktop.bus).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let clock = FakeClock::new(&dir.path().join("clock")).unwrap();
        let backend = Backend::start_on(
            dir.path(),
            &["--keepalive-secs", "1", "--retry-ms", "100"],
            &clock,
        );
        let profile = dir.path().join("profile");
        let driver = driver_for(&desktop, &profile, dir.path());
        Self {
            driver,
            tray,
            backend,
            clock,
            desktop,
            dir,
        }
    }

    fn profile(&self) -> PathBuf {
        self.dir.path().join("profile")
    }

    /// Starts the app (the tray process, which opens the window) and a session on its window.
    fn open_app(&self) -> (Session, ItemRef) {
        let session = self.driver.session(&bin("quotabell-app"), &[]);
        let item = self.tray.wait_for_item(WAIT);
        (session, item)
    }

    /// Waits until the tray shows the icon of `state` and a menu line satisfying `line`.
    fn tray_shows(&self, item: &ItemRef, state: &str, line: impl Fn(&str) -> bool) -> TrayItem {
        let want = icon(state);
        self.tray.wait_for(item, WAIT, |t| {
            t.icon.as_ref() == Some(&want) && t.menu_labels().iter().any(|l| line(l))
        })
    }

    fn wait_notification(&self, what: &str) {
        wait_until(&format!("the notification {what:?} at dunst"), WAIT, || {
            self.desktop.count_mentions(what) >= 1
        });
    }

    fn post(&self, token: &str, app: &str, n: usize) -> u16 {
        post_build(&self.backend.url(), token, app, n).expect("POST /builds")
    }
}

fn wait_text(s: &Session, css: &str, want: &str) {
    let mut last = None;
    let start = std::time::Instant::now();
    loop {
        last = s.text_of(css).or(last);
        if last.as_deref() == Some(want) {
            return;
        }
        assert!(
            start.elapsed() < WAIT,
            "{css} still says {last:?}, not {want:?}; the page says:\n{}",
            s.page_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Switches views through the nav and waits for `ready` in the new view.
fn show(s: &Session, view: &str, ready: &str) {
    let nav = s.wait_for(&testid(&format!("nav-{view}")), WAIT);
    s.click(&nav);
    s.wait_for(ready, WAIT);
}

/// Sign in through the UI; the limit reached live (window, tray, dunst); the backend gone
/// (offline banner over cached data, offline tray) and back (resynced); a screenshot of each
/// view along the way.
#[test]
fn desktop_app_signs_in_follows_the_limit_live_and_resyncs_after_the_backend_returns() {
    let _app_slot = crate::support::one_app_at_a_time();
    let mut h = Harness::start();
    let email = "desk@example.com";
    // History from before the sign-in (the backend's clock set back, within this period): 70
    // of the Free plan's 100 builds, of two apps (it allows three), half up to two days ago and
    // half since.
    let token = h.backend.add_user(email, "free");
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let period_start = {
        let usage = http_get(&format!("{}/api/v1/usage", h.backend.url()), &token);
        let start = usage["period"]["start"].as_str().unwrap().to_owned();
        time::OffsetDateTime::parse(&start, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp()
    };
    let first = (now() - 2 * 86_400 - 3600)
        .max(period_start + 60)
        .min(now());
    let second = (first + now()) / 2;
    for n in 0..70 {
        let at = if n < 35 { first } else { second };
        h.clock.set_offset(at - now()).unwrap();
        assert_eq!(h.post(&token, ["web", "api"][n % 2], n), 201);
    }
    h.clock.set_offset(0).unwrap();
    // In the first hour of a month there is too little of the period for a pace (within two
    // hours of its start either answer may come, by a few seconds).
    let young = now() - period_start < 2 * 3600;

    let (s, item) = h.open_app();
    let server = s.wait_for(&testid("signin-server"), WAIT);
    h.tray_shows(&item, "signed-out", |l| l == "Signed out");
    save_screenshot(&s, "sign-in");

    // 1. Sign in through the UI → Usage with the meters.
    s.send_keys(&server, &h.backend.url());
    s.send_keys(&s.wait_for(&testid("signin-token"), WAIT), &token);
    s.click(&s.wait_for(&testid("signin-submit"), WAIT));
    wait_text(&s, &testid("meter-builds-text"), "70 / 100");
    h.tray_shows(&item, "ok", |l| l == "Builds 70 / 100");
    assert!(
        s.text_of(&testid("account"))
            .is_some_and(|t| t.contains(email)),
        "the account line names the user: {}",
        s.page_text()
    );
    // The Usage view says where this pace leads (the limit's date, or the use at the period's
    // end, as the day of the month has it), with the projection dashed to the period's end.
    wait_until("the forecast under the builds meter", WAIT, || {
        s.text_of(&testid("meter-builds-forecast"))
            .is_some_and(|t| {
                let projected =
                    t.starts_with("At this pace: limit on ") || t.starts_with("On pace to use ");
                projected || (young && t == "Not enough history yet for a forecast")
            })
    });
    if !young {
        // A projection: its line on the chart, and the tray says it too.
        s.wait_for(&testid("chart-projection-builds"), WAIT);
        h.tray_shows(&item, "ok", |l| {
            let l = l.trim_start();
            l.starts_with("At this pace: limit on ") || l.starts_with("On pace to use ")
        });
    }
    save_screenshot(&s, "usage");
    // Proof that what follows is live: a full reload would drop this.
    s.execute("window.__e2eNoReload = 'same page';", json!([]));

    // 2. Past 80 % and up to the hard limit, while the window is open.
    for n in 70..80 {
        assert_eq!(h.post(&token, "web", n), 201);
    }
    wait_text(&s, &testid("meter-builds-text"), "80 / 100");
    h.tray_shows(&item, "warning", |l| l == "Builds 80 / 100");
    h.wait_notification(BUILDS_80);
    for n in 80..100 {
        assert_eq!(h.post(&token, "web", n), 201);
    }
    assert_eq!(
        h.post(&token, "web", 100),
        402,
        "the Free plan's hard limit"
    );
    wait_text(&s, &testid("meter-builds-text"), "100 / 100");
    s.wait_for(
        &format!("{}[data-level=\"over\"]", testid("meter-builds")),
        WAIT,
    );
    let t = h.tray_shows(&item, "over", |l| {
        l == "Builds 100 / 100 — at limit: new builds are refused"
    });
    assert_eq!(
        t.menu_labels().first().map(String::as_str),
        Some("Open Quotabell"),
        "{:?}",
        t.menu_labels()
    );
    h.wait_notification(BUILDS_100);
    h.wait_notification(REJECTED);
    assert_eq!(
        s.execute("return window.__e2eNoReload ?? null;", json!([])),
        json!("same page"),
        "the window updated in place, without a reload"
    );

    // The other views, with this account's data.
    show(&s, "builds", &testid("build-row"));
    wait_until("the builds total", WAIT, || {
        s.text_of(&testid("builds-total"))
            .is_some_and(|t| t.contains("101"))
    });
    save_screenshot(&s, "builds");
    show(&s, "notifications", &testid("notification-row"));
    wait_until("the limit in the notification log", WAIT, || {
        s.texts_of(&testid("notification-row"))
            .iter()
            .any(|r| r.contains(BUILDS_100))
    });
    // Each decision says what became of it; the server's 90 % is not one of the user's
    // thresholds, and the filter of what was not shown says so.
    assert!(
        s.texts_of(&testid("notification-why"))
            .iter()
            .any(|w| w == "Shown as it came."),
        "{}",
        s.page_text()
    );
    s.execute(
        "const f = document.querySelector('[data-testid=notifications-filter]'); \
         f.value = 'not_shown'; f.dispatchEvent(new Event('change'));",
        json!([]),
    );
    wait_until("the decisions not shown, with why", WAIT, || {
        s.texts_of(&testid("notification-row")).iter().any(|r| {
            r.contains("Builds at 90%")
                && r.contains("Not shown: 90% is not one of your thresholds (80%, 100%).")
        })
    });
    save_screenshot(&s, "notifications");
    show(&s, "settings", &testid("settings-save"));
    save_screenshot(&s, "settings");
    show(&s, "usage", &testid("meter-builds-text"));

    // 3. The backend goes away: the banner over the cached numbers, the tray offline.
    h.backend.kill9();
    wait_until("the offline banner", WAIT, || {
        s.visible(&testid("offline-banner"))
    });
    assert!(
        s.text_of(&testid("offline-banner"))
            .is_some_and(|t| t.starts_with("Offline")),
        "{}",
        s.page_text()
    );
    assert_eq!(
        s.text_of(&testid("meter-builds-text")).as_deref(),
        Some("100 / 100"),
        "cached data stays visible offline"
    );
    h.tray_shows(&item, "offline", |l| l.starts_with("Offline — "));
    save_screenshot(&s, "offline");

    // Meanwhile the operator moves the user to Pro (10 000 builds, no hard limit): the resync
    // has to fetch it.
    h.backend
        .cli(&["plan", "set", "--user", email, "--plan", "pro"]);
    h.backend.restart();
    wait_text(&s, &testid("meter-builds-text"), "100 / 10,000");
    wait_until("the banner to go", WAIT, || {
        !s.visible(&testid("offline-banner"))
    });
    let t = h.tray_shows(&item, "ok", |l| l == "Builds 100 / 10000");
    assert!(
        !t.menu_labels().iter().any(|l| l.starts_with("Offline")),
        "{:?}",
        t.menu_labels()
    );
    // And live again.
    assert_eq!(h.post(&token, "web", 101), 201);
    wait_text(&s, &testid("meter-builds-text"), "101 / 10,000");
    h.tray_shows(&item, "ok", |l| l == "Builds 101 / 10000");
    assert_eq!(
        s.execute("return window.__e2eNoReload ?? null;", json!([])),
        json!("same page")
    );
    s.delete().unwrap();
}

/// Server text is shown as text: a build's app name and a notice made of markup render
/// literally in every view (no element is created from them), and reach the notification
/// daemon literally (the summary is plain text; the body is escaped for markup).
#[test]
fn desktop_app_shows_hostile_server_text_literally_in_every_view_and_notification() {
    let _app_slot = crate::support::one_app_at_a_time();
    const REFUSED_APP: &str = "<img src=y onerror=alert(2)>";
    const NOTICE_BODY: &str = "<b>not bold</b> & <i>not italic</i>";
    let h = Harness::start();
    let email = "xss@example.com";
    let token = h.backend.add_user(email, "free");
    // Signed in from the CLI this time: the same profile directory and keychain as the app's.
    Engine::new(&h.desktop, &h.profile()).login(&h.backend.url(), &token);

    let (s, item) = h.open_app();
    wait_text(&s, &testid("meter-builds-text"), "0 / 100");
    // If anything ever ran, it would say so here (the CSP should stop inline handlers anyway).
    s.execute(
        "window.__alerts = []; window.alert = m => window.__alerts.push(String(m));",
        json!([]),
    );
    assert_eq!(h.post(&token, XSS, 0), 201);
    assert_eq!(h.post(&token, "web", 1), 201);
    assert_eq!(h.post(&token, "<b>bold</b>", 2), 201);
    // A fourth app on the Free plan (three apps): refused, and announced with its name.
    assert_eq!(h.post(&token, REFUSED_APP, 3), 402);
    h.backend.cli(&[
        "notice",
        "--user",
        email,
        "--title",
        XSS,
        "--body",
        NOTICE_BODY,
    ]);
    wait_text(&s, &testid("meter-builds-text"), "3 / 100");
    // Only builds of new applications are refused: the line says so.
    h.tray_shows(&item, "over", |l| {
        l == "Applications 3 / 3 — at limit: builds of new applications are refused"
    });
    let rejected_app = format!("Build rejected — {REFUSED_APP} would be a new application");
    // Shown means stored: the engine writes the notification in the transaction that stores
    // the event (and the refused build), so the views below read all of it when they open.
    // (An open Builds or Notifications view would also refresh, on the snapshot's `revision`;
    // waiting here keeps this test about rendering, not about timing.)
    wait_until("the notice and the refusal at dunst", WAIT, || {
        let n = h.desktop.notifications();
        n.iter().any(|(s, _)| s == XSS) && n.iter().any(|(s, _)| *s == rejected_app)
    });

    let no_elements = |view: &str| {
        assert_eq!(
            s.execute(
                "return document.querySelectorAll('img, b, i, script:not([src])').length;",
                json!([])
            ),
            json!(0),
            "elements made from server text in the {view} view:\n{}",
            s.page_text()
        );
    };
    no_elements("usage");

    show(&s, "builds", &testid("build-row"));
    wait_until("all four builds listed", WAIT, || {
        s.texts_of(&format!("{} .c-app", testid("build-row"))).len() == 4
    });
    let apps = s.texts_of(&format!("{} .c-app", testid("build-row")));
    for app in [XSS, "<b>bold</b>", REFUSED_APP] {
        assert!(
            apps.iter().any(|a| a == app),
            "{app:?} shown literally in the builds list: {apps:?}"
        );
    }
    no_elements("builds");

    show(&s, "notifications", &testid("notification-row"));
    wait_until("the notice and the refusal in the log", WAIT, || {
        let rows = s.texts_of(&testid("notification-row"));
        rows.iter()
            .any(|r| r.contains(XSS) && r.contains(NOTICE_BODY))
            && rows
                .iter()
                .any(|r| r.contains(&rejected_app) && r.contains(REFUSED_APP))
    });
    no_elements("notifications");

    show(&s, "settings", &testid("settings-save"));
    no_elements("settings");
    assert_eq!(
        s.execute("return window.__alerts;", json!([])),
        json!([]),
        "no script ran"
    );

    // At the daemon: the summary is plain text (the literal title); the body is markup, so it
    // must arrive escaped — no tag left, and unescaped it is the literal text.
    for (summary, body) in h.desktop.notifications() {
        assert!(
            !body.contains('<'),
            "a notification body with live markup: {summary:?} / {body:?}"
        );
        let shown = unescape_markup(&body);
        if summary == XSS {
            assert_eq!(shown, NOTICE_BODY, "the notice's body as displayed");
        }
        if summary == rejected_app {
            assert!(
                shown.contains(REFUSED_APP),
                "the refusal names the app: {shown:?}"
            );
        }
    }
    s.delete().unwrap();
}

/// The app's processes below the driver: (tray process, window process if any).
fn app_processes(h: &Harness) -> (Option<u32>, Option<u32>) {
    let mut tray = None;
    let mut window = None;
    for pid in descendants(h.driver.pid()) {
        let argv = cmdline(pid);
        if !argv.first().is_some_and(|a| a.ends_with("quotabell-app")) {
            continue;
        }
        if argv.iter().any(|a| a == "--window") {
            window = Some(pid);
        } else {
            tray = Some(pid);
        }
    }
    (tray, window)
}

fn is_webkit(pid: u32) -> bool {
    cmdline(pid)
        .first()
        .is_some_and(|a| a.ends_with("WebKitWebProcess") || a.ends_with("WebKitNetworkProcess"))
}

/// Whether a process still runs (a zombie has ended; only its exit status is left).
fn alive(pid: u32) -> bool {
    crate::support::parent_of(pid).is_some()
}

/// Closing the window ends the window process and every WebKit process with it, while the tray
/// process stays; the tray's "Open Quotabell" starts a new window process.
#[test]
fn desktop_app_window_closes_without_leftovers_and_reopens_from_the_tray() {
    let _app_slot = crate::support::one_app_at_a_time();
    let h = Harness::start();
    let (s, item) = h.open_app();
    s.wait_for(&testid("signin-server"), WAIT);
    let (tray_pid, window_pid) = app_processes(&h);
    let (tray_pid, window_pid) = (
        tray_pid.expect("tray process"),
        window_pid.expect("window process"),
    );
    assert_eq!(
        crate::support::parent_of(window_pid),
        Some(tray_pid),
        "the tray process starts the window process"
    );
    let webkit: Vec<u32> = descendants(window_pid)
        .into_iter()
        .filter(|&p| is_webkit(p))
        .collect();
    assert!(
        webkit
            .iter()
            .any(|&p| cmdline(p)[0].ends_with("WebKitWebProcess")),
        "the window process hosts WebKit's processes: {:?}",
        descendants(window_pid)
            .into_iter()
            .map(cmdline)
            .collect::<Vec<_>>()
    );
    assert!(
        descendants(tray_pid)
            .into_iter()
            .filter(|&p| is_webkit(p))
            .all(|p| webkit.contains(&p)),
        "no WebKit process belongs to the tray process itself"
    );

    // Close it as a window manager's close button would.
    let x = X::open().unwrap();
    let windows: Vec<_> = x
        .windows_of(window_pid)
        .into_iter()
        .filter(|w| w.name == "Quotabell")
        .collect();
    assert!(!windows.is_empty(), "no X window titled Quotabell");
    for w in &windows {
        x.close(w.id);
    }
    wait_until("the window process to exit", WAIT, || !alive(window_pid));
    wait_until("WebKit's processes to exit", WAIT, || {
        !webkit.iter().any(|&p| alive(p))
    });
    assert!(alive(tray_pid), "the tray process stays");
    // The tray process notices a moment later (tens of ms, when its pipe reads EOF). A click on
    // "Open Quotabell" before that goes to the dying window's inbox and is lost (window_host.rs
    // `show` only restarts a window whose inbox is closed), so wait for its word first.
    wait_until("the tray process to see the window go", WAIT, || {
        std::fs::read_to_string(&h.driver.log).is_ok_and(|l| l.contains("window process exited"))
    });
    assert!(
        !descendants(tray_pid).into_iter().any(is_webkit),
        "no WebKit process left under the tray process"
    );
    assert_eq!(h.tray.items(), vec![item.clone()], "the tray icon stays");

    // Reopen from the tray: a new window process, a new window.
    h.tray.click_menu(&item, "Open Quotabell");
    let mut reopened = None;
    wait_until("a new window process", WAIT, || {
        reopened = app_processes(&h).1.filter(|&p| p != window_pid);
        reopened.is_some()
    });
    let reopened = reopened.unwrap();
    wait_until("the reopened window on screen", WAIT, || {
        x.windows_of(reopened).iter().any(|w| w.name == "Quotabell")
    });
    wait_until("its WebKit web process", WAIT, || {
        descendants(reopened).into_iter().any(|p| {
            cmdline(p)
                .first()
                .is_some_and(|a| a.ends_with("WebKitWebProcess"))
        })
    });

    let webkit: Vec<u32> = descendants(reopened)
        .into_iter()
        .filter(|&p| is_webkit(p))
        .collect();

    // Quit from the tray ends everything: tray, window and WebKit.
    h.tray.click_menu(&item, "Quit Quotabell");
    h.tray.wait_for_no_items(WAIT);
    wait_until("every app process to exit", WAIT, || {
        !alive(tray_pid) && !alive(reopened) && !webkit.iter().any(|&p| alive(p))
    });
}

/// On a desktop with no StatusNotifierItem host the tray icon cannot show: the app, started
/// hidden as at login, opens its window on the diagnosis instead of running unseen.
#[test]
fn desktop_app_without_a_tray_host_opens_its_window_on_the_diagnosis() {
    let _app_slot = crate::support::one_app_at_a_time();
    // No TrayWatcher on this bus: nobody hosts tray items.
    let desktop = Desktop::start();
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile");
    let driver = driver_for(&desktop, &profile, dir.path());
    let s = driver.session(&bin("quotabell-app"), &["--hidden"]);
    let tray = s.wait_for(&testid("finding-tray"), WAIT);
    let text = s.text(&tray);
    assert!(
        text.starts_with("Failed") && text.contains("no StatusNotifierItem host"),
        "{text}"
    );
    assert!(
        text.contains("AppIndicator"),
        "the fix for GNOME is named: {text}"
    );
    let summary = s.wait_for(&testid("diagnostics-summary"), WAIT);
    assert!(s.text(&summary).contains("fail"), "{}", s.page_text());
    // The other checks are there too, and pass on this desktop.
    for check in ["secret-service", "notifications"] {
        let f = s.wait_for(&testid(&format!("finding-{check}")), WAIT);
        assert!(s.text(&f).starts_with("OK"), "{}", s.text(&f));
    }
    save_screenshot(&s, "diagnostics");
}
