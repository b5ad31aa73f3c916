//! The desktop app's headless half (`quotabell_core::companion`) against the real backend:
//! what the window's calls answer and what the tray is told, with a real SQLite file. The
//! keychain and notifier are in-memory here so the test can watch them; the real ones are
//! covered by the engine tests and the desktop app test.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use quotabell_core::clock::SystemClock;
use quotabell_core::companion::Companion;
use quotabell_core::dashboard;
use quotabell_core::engine::EngineConfig;
use quotabell_core::ipc::{
    BuildPage, BuildQuery, Call, Connection, ErrorCode, IpcError, NotificationPage, PageQuery,
    PauseChoice, SettingsForm, SignInForm, Snapshot, TrayState,
};
use quotabell_core::notifier::{Notifier, NotifyError};
use quotabell_core::paths::Paths;
use quotabell_core::secret::{Keychain, SecretError, Token};
use quotabell_core::store::NotificationRow;
use serde::de::DeserializeOwned;

use crate::support::{Backend, post_build};

#[derive(Default)]
struct MemoryKeychain(Mutex<std::collections::HashMap<String, String>>);

impl Keychain for MemoryKeychain {
    fn get(&self, key: &str) -> Result<Option<Token>, SecretError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .get(key)
            .map(|t| Token::new(t).unwrap()))
    }
    fn set(&self, key: &str, token: &Token) -> Result<(), SecretError> {
        self.0
            .lock()
            .unwrap()
            .insert(key.into(), token.expose().into());
        Ok(())
    }
    fn delete(&self, key: &str) -> Result<(), SecretError> {
        self.0.lock().unwrap().remove(key);
        Ok(())
    }
}

#[derive(Default)]
struct Shown(Mutex<Vec<String>>);

impl Notifier for Shown {
    fn show(&self, n: &NotificationRow) -> Result<(), NotifyError> {
        self.0.lock().unwrap().push(n.title.clone());
        Ok(())
    }
}

/// A companion on a profile under `dir`, with the in-memory keychain and notifier it uses.
fn companion(dir: &std::path::Path) -> (Companion, Arc<MemoryKeychain>, Arc<Shown>) {
    let keychain = Arc::new(MemoryKeychain::default());
    let shown = Arc::new(Shown::default());
    let cfg = EngineConfig {
        max_backoff: Duration::from_millis(500),
        ..EngineConfig::default()
    };
    let c = Companion::new(
        Paths::resolve(Some(&dir.join("profile"))),
        keychain.clone(),
        shown.clone(),
        Arc::new(SystemClock),
        cfg,
    );
    (c, keychain, shown)
}

async fn call<T: DeserializeOwned>(c: &Companion, call: Call) -> Result<T, IpcError> {
    c.call(call)
        .await
        .map(|v| serde_json::from_value(v).expect("reply matches its declared type"))
}

/// Waits for a snapshot that satisfies `ok`, pushed by the companion (never polled from it).
async fn pushed(c: &Companion, what: &str, ok: impl Fn(&Snapshot) -> bool) -> Snapshot {
    let mut rx = c.snapshots();
    let got = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            {
                let s = rx.borrow_and_update();
                if ok(&s) {
                    return s.clone();
                }
            }
            rx.changed().await.expect("companion alive");
        }
    })
    .await;
    match got {
        Ok(s) => s,
        Err(_) => panic!("no snapshot with {what}; last: {:#?}", *rx.borrow()),
    }
}

fn builds_used(s: &Snapshot) -> Option<i64> {
    s.meters
        .iter()
        .find(|m| m.metric == "builds")
        .map(|m| m.used)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn companion_serves_the_window_and_the_tray_from_the_real_backend() {
    let dir = tempfile::tempdir().unwrap();
    let mut backend = Backend::start(dir.path(), &[]);
    let token = backend.add_user("dana@example.com", "free");
    let (c, keychain, shown) = companion(dir.path());
    c.start().await;
    let s = pushed(&c, "signed out", |s| s.account.is_none()).await;
    assert_eq!(s.tray.state, TrayState::SignedOut);

    // Sign-in errors name the field to mark, by code; nothing is stored.
    let sign_in = |server: &str, token: &str| {
        Call::SignIn(SignInForm {
            server: server.into(),
            token: token.into(),
            name: None,
        })
    };
    let e = call::<Snapshot>(&c, sign_in(&backend.url(), "qb_wrong"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.field.as_deref()),
        (ErrorCode::Unauthorized, Some("token"))
    );
    let e = call::<Snapshot>(&c, sign_in("http://example.com", &token))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.field.as_deref()),
        (ErrorCode::Invalid, Some("server"))
    );
    let e = call::<Snapshot>(&c, sign_in("http://127.0.0.1:1", &token))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.field.as_deref()),
        (ErrorCode::Unreachable, Some("server"))
    );
    let e = call::<Snapshot>(&c, sign_in(&backend.url(), "  "))
        .await
        .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("token"));
    assert!(keychain.0.lock().unwrap().is_empty());

    let s: Snapshot = call(&c, sign_in(&backend.url(), &token)).await.unwrap();
    assert_eq!(s.account.unwrap().email, "dana@example.com");
    assert_eq!(keychain.0.lock().unwrap().len(), 1);
    pushed(&c, "connected", |s| s.connection == Connection::Connected).await;

    // Usage crosses 80%, then the limit: the tray follows, one notification per crossing.
    let base = backend.url();
    for n in 0..85 {
        assert_eq!(post_build(&base, &token, "web", n).unwrap(), 201);
    }
    let s = pushed(&c, "85 builds", |s| builds_used(s) == Some(85)).await;
    assert_eq!(s.tray.state, TrayState::Warning);
    assert!(
        s.tray.lines.contains(&"Builds 85 / 100".to_owned()),
        "{s:#?}"
    );
    for n in 85..100 {
        assert_eq!(post_build(&base, &token, "api<b>", n).unwrap(), 201);
    }
    let s = pushed(&c, "100 builds", |s| builds_used(s) == Some(100)).await;
    assert_eq!(s.tray.state, TrayState::Over);
    assert!(
        s.tray
            .lines
            .contains(&"Builds 100 / 100 — at limit: new builds are refused".to_owned())
    );
    // Live, the tray says so rather than an age that would need redrawing every minute; the
    // window says when it last synced.
    assert!(
        s.tray.lines.contains(&dashboard::UP_TO_DATE.to_owned()),
        "{:?}",
        s.tray.lines
    );
    assert!(s.synced_ago.is_some());

    // The views' pages come from the cache.
    let page: BuildPage = call(
        &c,
        Call::Builds(BuildQuery {
            offset: 95,
            limit: 10,
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    assert_eq!((page.total, page.rows.len()), (100, 5));
    let page: BuildPage = call(
        &c,
        Call::Builds(BuildQuery {
            search: Some("API<".into()),
            limit: 500,
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    assert_eq!(page.total, 15, "search is a case-insensitive substring");
    assert!(page.rows.iter().all(|b| b.app == "api<b>"));
    let e = call::<BuildPage>(
        &c,
        Call::Builds(BuildQuery {
            since: Some("yesterday".into()),
            ..Default::default()
        }),
    )
    .await
    .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("since"));
    let apps: Vec<String> = call(&c, Call::BuildApps).await.unwrap();
    assert_eq!(apps, ["api<b>", "web"]);
    let log: NotificationPage = call(
        &c,
        Call::Notifications(PageQuery {
            offset: 0,
            limit: 50,
            ..PageQuery::default()
        }),
    )
    .await
    .unwrap();
    let shown_titles = shown.0.lock().unwrap().clone();
    assert_eq!(log.total as usize, log.rows.len());
    assert!(
        log.rows.windows(2).all(|w| w[0].id > w[1].id),
        "newest first"
    );
    assert_eq!(
        shown_titles.len(),
        2,
        "80% and 100%, once each: {shown_titles:?}"
    );

    // Settings: a bad field is named, a good form is kept.
    let mut form: SettingsForm = call(&c, Call::Settings).await.unwrap();
    form.quiet_start = Some("25:00".into());
    form.quiet_end = Some("07:00".into());
    let e = call::<SettingsForm>(&c, Call::SaveSettings(form.clone()))
        .await
        .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("quiet_start"));
    form.quiet_start = Some("22:00".into());
    form.thresholds = vec![90, 50];
    let saved: SettingsForm = call(&c, Call::SaveSettings(form)).await.unwrap();
    assert_eq!(saved.thresholds, [50, 90]);
    let again: SettingsForm = call(&c, Call::Settings).await.unwrap();
    assert_eq!(again.quiet_start.as_deref(), Some("22:00"));

    // Pause and resume, as the tray menu does.
    let s: Snapshot = call(&c, Call::Pause(PauseChoice::OneHour)).await.unwrap();
    assert_eq!(s.tray.state, TrayState::Paused);
    assert!(s.paused_until.unwrap() > s.now + 3500);
    let s: Snapshot = call(&c, Call::Pause(PauseChoice::Resume)).await.unwrap();
    assert_eq!((s.tray.state, s.paused_until), (TrayState::Over, None));

    // The backend goes away: the cache still answers, the tray says offline; then it is back.
    backend.kill9();
    let s = pushed(&c, "offline", |s| !s.connection.is_live()).await;
    assert_eq!(s.tray.state, TrayState::Offline);
    assert_eq!(builds_used(&s), Some(100), "cached usage still shown");
    let page: BuildPage = call(
        &c,
        Call::Builds(BuildQuery {
            limit: 1,
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    assert_eq!(page.total, 100);
    backend.restart();
    let s = pushed(&c, "connected again", |s| {
        s.connection == Connection::Connected
    })
    .await;
    assert_eq!(s.tray.state, TrayState::Over);

    let account = s.account.as_ref().unwrap().id;
    let s: Snapshot = call(&c, Call::SignOut { account }).await.unwrap();
    assert!(s.account.is_none());
    assert_eq!(s.tray.state, TrayState::SignedOut);
    assert!(keychain.0.lock().unwrap().is_empty(), "the token is gone");
    let e = call::<BuildPage>(&c, Call::Builds(BuildQuery::default()))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotSignedIn);
    c.shutdown().await;
}

/// Two accounts in the app's companion: one engine each, the tray over both, the window's
/// selection, a backend down for one only, and signing one out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn companion_follows_two_accounts_apart() {
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let mut work = Backend::start(&a_dir, &[]);
    let mut home = Backend::start(&b_dir, &[]);
    let work_token = work.add_user("dev@work.example", "free");
    let home_token = home.add_user("me@home.example", "free");
    let (c, keychain, shown) = companion(dir.path());
    c.start().await;
    for (backend, token, name) in [(&work, &work_token, "work"), (&home, &home_token, "home")] {
        let s: Snapshot = call(
            &c,
            Call::SignIn(SignInForm {
                server: backend.url(),
                token: token.clone(),
                name: Some(name.into()),
            }),
        )
        .await
        .unwrap();
        assert_eq!(
            s.account.as_ref().unwrap().name,
            name,
            "a new account is shown"
        );
    }
    let s = pushed(&c, "both connected", |s| {
        s.accounts.len() == 2
            && s.accounts
                .iter()
                .all(|a| a.connection == Connection::Connected)
    })
    .await;
    assert_eq!(keychain.0.lock().unwrap().len(), 2, "a keychain entry each");
    assert_eq!(s.tray.lines.first().map(String::as_str), Some("work"));
    assert!(
        s.tray.lines.iter().any(|l| l == "home"),
        "{:?}",
        s.tray.lines
    );

    // A crossing on home only: the tray warns (the worst of the two), work stays ok.
    for n in 0..80 {
        assert_eq!(post_build(&home.url(), &home_token, "web", n).unwrap(), 201);
    }
    let s = pushed(&c, "home at 80%", |s| s.tray.state == TrayState::Warning).await;
    let state_of = |s: &Snapshot, name: &str| {
        s.accounts
            .iter()
            .find(|a| a.account.name == name)
            .map(|a| a.state)
    };
    assert_eq!(state_of(&s, "work"), Some(TrayState::Ok));
    assert_eq!(state_of(&s, "home"), Some(TrayState::Warning));
    // The notification says whose it is.
    tokio::time::timeout(Duration::from_secs(20), async {
        while !shown
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|t| t.starts_with("Builds at 80%"))
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the 80% notification");
    let titles = shown.0.lock().unwrap().clone();
    assert!(titles.iter().all(|t| t.ends_with(" · home")), "{titles:?}");

    // The window shows one account at a time, and its pages are that account's.
    let work_id = s.accounts[0].account.id;
    let s: Snapshot = call(&c, Call::SelectAccount { account: work_id })
        .await
        .unwrap();
    assert_eq!(s.account.as_ref().unwrap().name, "work");
    let page: BuildPage = call(&c, Call::Builds(BuildQuery::default())).await.unwrap();
    assert_eq!(page.total, 0, "work has no builds");

    // home's server goes away: home offline (and the tray with it), work still connected.
    home.kill9();
    let s = pushed(&c, "home offline", |s| {
        s.accounts
            .iter()
            .any(|a| a.account.name == "home" && a.connection != Connection::Connected)
    })
    .await;
    assert_eq!(s.tray.state, TrayState::Offline);
    assert_eq!(s.connection, Connection::Connected, "work, shown, is live");
    for n in 0..3 {
        assert_eq!(post_build(&work.url(), &work_token, "web", n).unwrap(), 201);
    }
    pushed(&c, "work's builds", |s| builds_used(s) == Some(3)).await;

    // Signing home out: its token goes, work's engine and data stay.
    let home_id = s
        .accounts
        .iter()
        .find(|a| a.account.name == "home")
        .unwrap()
        .account
        .id;
    let s: Snapshot = call(&c, Call::SignOut { account: home_id }).await.unwrap();
    assert_eq!(s.accounts.len(), 1);
    assert_eq!(s.account.as_ref().unwrap().name, "work");
    assert_eq!(keychain.0.lock().unwrap().len(), 1);
    assert!(
        keychain
            .0
            .lock()
            .unwrap()
            .values()
            .any(|t| *t == work_token)
    );
    let page: BuildPage = call(&c, Call::Builds(BuildQuery::default())).await.unwrap();
    assert_eq!(page.total, 3);

    // The operator replaces work's token: the server signs the account out, and signing in
    // again with the new token follows it again.
    let new_token = work
        .cli(&["user", "token", "--email", "dev@work.example"])
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap()
        .to_owned();
    work.restart();
    let s = pushed(&c, "work signed out", |s| {
        s.connection == Connection::SignedOut
    })
    .await;
    assert_eq!(s.tray.state, TrayState::SignedOut);
    let _: Snapshot = call(
        &c,
        Call::SignIn(SignInForm {
            server: work.url(),
            token: new_token,
            name: None,
        }),
    )
    .await
    .unwrap();
    let s = pushed(&c, "work connected again", |s| {
        s.connection == Connection::Connected
    })
    .await;
    assert_eq!(s.account.as_ref().unwrap().name, "work", "the name is kept");
    c.shutdown().await;
}
