//! `quotabell doctor`: what stands between the user and a working desktop companion, each
//! line ok / warn / fail with a one-line fix. A tray app fails in ways the user cannot see (no
//! tray host, no Secret Service, no notification daemon, a revoked token): this says which.
//!
//! The desktop checks talk to the session bus (`desktop_bus`, Linux and the BSDs); the others
//! read the cache, the lock file, the keychain and the server.

use std::sync::Arc;

use serde::Serialize;
use ts_rs::TS;

use crate::client::{ApiClient, ApiError};
use crate::lock;
use crate::paths::Paths;
use crate::secret::{Keychain, SecretError};
use crate::server_url::ServerUrl;
use crate::store::{AccountRow, Store};

/// The name of the Secret Service check (the account check waits for it).
pub const SECRET_SERVICE: &str = "secret service";

/// A server clock further off than this makes the "ago" and period times of the app wrong.
pub const MAX_SKEW_SECS: i64 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "FAIL",
        }
    }
}

/// One check's answer; also what the window's Diagnostics view shows.
#[derive(Debug, Clone, Serialize, TS)]
#[ts(export)]
pub struct Finding {
    pub check: String,
    pub verdict: Verdict,
    pub detail: String,
    /// What to do about it, when not ok.
    pub fix: Option<String>,
}

impl Finding {
    pub fn ok(check: &str, detail: impl Into<String>) -> Self {
        Self {
            check: check.to_owned(),
            verdict: Verdict::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn warn(check: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Warn,
            fix: Some(fix.into()),
            ..Self::ok(check, detail)
        }
    }

    pub fn fail(check: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Fail,
            fix: Some(fix.into()),
            ..Self::ok(check, detail)
        }
    }

    /// "FAIL  notifications   no notification daemon on the session bus" and the fix under it.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{:<5} {:<15} {}",
            self.verdict.label(),
            self.check,
            self.detail
        );
        if let Some(fix) = &self.fix {
            line.push_str("\n      fix: ");
            line.push_str(fix);
        }
        line
    }
}

/// Every check, in the order a user would fix them.
pub async fn examine(paths: &Paths, keychain: Arc<dyn Keychain>, now_unix: i64) -> Vec<Finding> {
    let mut out = Vec::new();
    #[cfg(all(
        unix,
        not(any(target_os = "macos", target_os = "ios", target_os = "android"))
    ))]
    out.extend(desktop_bus::examine().await);
    out.push(cache(paths));
    out.push(engine(paths));
    // A locked or missing keychain would make reading the token prompt or fail: say so once.
    let keychain_down = out
        .iter()
        .any(|f| f.check == SECRET_SERVICE && f.verdict == Verdict::Fail);
    if keychain_down {
        out.push(Finding::warn(
            "account",
            "not checked: the token is in the keychain, which is not available",
            "fix the secret service line first",
        ));
    } else {
        out.extend(account(paths, keychain, now_unix).await);
    }
    out
}

/// The tray check alone, when it does not pass: the desktop app asks at start-up and, with no
/// tray host to show its icon, opens its window on the diagnosis instead of vanishing. Only
/// Linux and the BSDs can lack one (macOS and Windows always have a menu bar / notification
/// area).
pub async fn tray_missing() -> Option<Finding> {
    #[cfg(all(
        unix,
        not(any(target_os = "macos", target_os = "ios", target_os = "android"))
    ))]
    {
        let finding = desktop_bus::tray().await;
        (finding.verdict != Verdict::Ok).then_some(finding)
    }
    #[cfg(not(all(
        unix,
        not(any(target_os = "macos", target_os = "ios", target_os = "android"))
    )))]
    None
}

/// Whether any finding fails (the exit status).
pub fn failed(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.verdict == Verdict::Fail)
}

fn cache(paths: &Paths) -> Finding {
    const CHECK: &str = "cache";
    let db = paths.db();
    if !db.exists() {
        return Finding::warn(
            CHECK,
            format!("no cache yet at {}", db.display()),
            "sign in: `quotabell login --server URL`",
        );
    }
    let store = match Store::open(&db) {
        Ok(s) => s,
        Err(e) => {
            return Finding::fail(
                CHECK,
                format!("cannot open {}: {e}", db.display()),
                "move the file away; the app rebuilds the cache from the server",
            );
        }
    };
    match store
        .conn()
        .query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
    {
        Ok(s) if s == "ok" => Finding::ok(
            CHECK,
            format!("{} passes its integrity check", db.display()),
        ),
        Ok(s) => Finding::fail(
            CHECK,
            format!("integrity check: {s}"),
            "move the file away; the app rebuilds the cache from the server",
        ),
        Err(e) => Finding::fail(
            CHECK,
            format!("integrity check failed: {e}"),
            "move the file away",
        ),
    }
}

fn engine(paths: &Paths) -> Finding {
    const CHECK: &str = "engine";
    let path = paths.lock();
    match lock::holder_running(&path) {
        Some(true) => Finding::ok(
            CHECK,
            std::fs::read_to_string(&path)
                .map(|s| format!("running: {}", s.trim()))
                .unwrap_or_else(|_| "running".into()),
        ),
        _ => Finding::warn(
            CHECK,
            "no engine is running: nothing follows the server now",
            "start the desktop app (quotabell-app) or `quotabell watch`",
        ),
    }
}

async fn account(paths: &Paths, keychain: Arc<dyn Keychain>, now_unix: i64) -> Vec<Finding> {
    const CHECK: &str = "account";
    // Looking must not create a cache.
    let store = match paths.db().exists().then(|| Store::open(&paths.db())) {
        Some(Ok(store)) => store,
        Some(Err(_)) => return Vec::new(), // the cache line says why
        None => {
            return vec![Finding::warn(
                CHECK,
                "not signed in",
                "`quotabell login --server URL`, or sign in from the window",
            )];
        }
    };
    let accounts = match store.accounts() {
        Ok(a) if a.is_empty() => {
            return vec![Finding::warn(
                CHECK,
                "not signed in",
                "`quotabell login --server URL`, or sign in from the window",
            )];
        }
        Ok(a) => a,
        Err(e) => {
            return vec![Finding::fail(
                CHECK,
                format!("cannot read the accounts: {e}"),
                "see the cache line",
            )];
        }
    };
    let mut out = Vec::new();
    for a in accounts {
        out.extend(one_account(a, keychain.clone(), now_unix).await);
    }
    out
}

/// One account: its token in the keychain, its server, the token accepted, the clock.
async fn one_account(
    account: AccountRow,
    keychain: Arc<dyn Keychain>,
    now_unix: i64,
) -> Vec<Finding> {
    const CHECK: &str = "account";
    // The keychain blocks on D-Bus: off the async thread.
    let key = account.keychain_key();
    let read = tokio::task::spawn_blocking(move || keychain.get(&key))
        .await
        .unwrap_or_else(|e| Err(SecretError::Backend(format!("keychain task failed: {e}"))));
    let token = match read {
        Ok(Some(t)) => t,
        Ok(None) => {
            return vec![Finding::fail(
                CHECK,
                format!("no token in the keychain for {}", account.name),
                format!(
                    "sign in again: `quotabell login --server {}`",
                    account.origin
                ),
            )];
        }
        Err(e) => {
            return vec![Finding::fail(
                CHECK,
                format!("the keychain refused: {e}"),
                "see the secret service line",
            )];
        }
    };
    let server = match ServerUrl::parse(&account.server_url) {
        Ok(s) => s,
        Err(e) => {
            return vec![Finding::fail(
                CHECK,
                e.to_string(),
                "sign in again with a valid URL",
            )];
        }
    };
    let origin = server.origin();
    let api = match ApiClient::new(server, token) {
        Ok(a) => a,
        Err(e) => return vec![Finding::fail(CHECK, e.to_string(), "report this")],
    };
    match api.probe().await {
        Ok((acct, date)) => {
            let mut out = vec![Finding::ok(
                CHECK,
                format!(
                    "{}: {} on {origin} reachable, token accepted ({} plan)",
                    account.name, acct.email, acct.plan.name
                ),
            )];
            out.push(match date {
                Some(date) if (date - now_unix).abs() > MAX_SKEW_SECS => Finding::warn(
                    "clock",
                    format!(
                        "this machine's clock is {} s off {origin}'s",
                        now_unix - date
                    ),
                    "turn on time synchronisation (e.g. `timedatectl set-ntp true`)",
                ),
                Some(date) => Finding::ok(
                    "clock",
                    format!("within {} s of {origin}'s", (now_unix - date).abs()),
                ),
                None => Finding::warn(
                    "clock",
                    "the server sent no Date header",
                    "nothing to do here; the server should send one",
                ),
            });
            out
        }
        Err(e) if e.is_auth() => vec![Finding::fail(
            CHECK,
            format!("{origin} refused the token of {}: {e}", account.name),
            "the token was revoked or replaced: sign in again with a new one (`quotabell login`)",
        )],
        Err(e @ ApiError::Transport(_)) => vec![Finding::fail(
            CHECK,
            format!("{}: {origin} is unreachable: {e}", account.name),
            "check that the server is up and the address is right; the app works offline meanwhile",
        )],
        Err(e) => vec![Finding::fail(
            CHECK,
            format!("{origin}: {e}"),
            "see the server's status",
        )],
    }
}

/// The desktop's services on the session bus.
#[cfg(all(
    unix,
    not(any(target_os = "macos", target_os = "ios", target_os = "android"))
))]
mod desktop_bus {
    use zbus::Connection;
    use zbus::OwnedObjectPath;
    use zbus::fdo::{DBusProxy, PropertiesProxy};
    use zbus::names::{BusName, InterfaceName};

    use super::{Finding, SECRET_SERVICE};

    const SECRETS: &str = "org.freedesktop.secrets";
    const NOTIFICATIONS: &str = "org.freedesktop.Notifications";
    const WATCHER: &str = "org.kde.StatusNotifierWatcher";

    pub async fn examine() -> Vec<Finding> {
        let conn = match Connection::session().await {
            Ok(c) => c,
            Err(e) => {
                return vec![Finding::fail(
                    "session bus",
                    format!("no D-Bus session bus: {e}"),
                    "run Quotabell inside a desktop session (DBUS_SESSION_BUS_ADDRESS unset?)",
                )];
            }
        };
        vec![
            secret_service(&conn).await,
            notifications(&conn).await,
            tray_host(&conn).await,
        ]
    }

    pub async fn tray() -> Finding {
        match Connection::session().await {
            Ok(conn) => tray_host(&conn).await,
            Err(e) => Finding::fail(
                "tray",
                format!("no D-Bus session bus: {e}"),
                "run Quotabell inside a desktop session",
            ),
        }
    }

    /// Running now, or started by the bus on the first call.
    async fn present(conn: &Connection, name: &'static str) -> zbus::Result<bool> {
        let dbus = DBusProxy::new(conn).await?;
        let bus_name = BusName::try_from(name)?;
        if dbus.name_has_owner(bus_name).await? {
            return Ok(true);
        }
        Ok(dbus
            .list_activatable_names()
            .await?
            .iter()
            .any(|n| n.as_str() == name))
    }

    /// A boolean property of `destination`'s object at `path`.
    async fn bool_property(
        conn: &Connection,
        destination: &'static str,
        path: &str,
        interface: &'static str,
        name: &str,
    ) -> zbus::Result<bool> {
        let props = PropertiesProxy::builder(conn)
            .destination(destination)
            .path(path)
            .build()
            .await?;
        let value = props.get(InterfaceName::try_from(interface)?, name).await?;
        bool::try_from(value)
    }

    async fn secret_service(conn: &Connection) -> Finding {
        const CHECK: &str = SECRET_SERVICE;
        const START: &str = "start a Secret Service in your session (gnome-keyring-daemon, or \
            KeePassXC with its Secret Service integration)";
        match present(conn, SECRETS).await {
            Ok(true) => {}
            Ok(false) => {
                return Finding::fail(CHECK, "no Secret Service on the session bus", START);
            }
            Err(e) => return Finding::fail(CHECK, format!("cannot ask the bus: {e}"), START),
        }
        let collection: zbus::Result<OwnedObjectPath> = async {
            let reply = conn
                .call_method(
                    Some(SECRETS),
                    "/org/freedesktop/secrets",
                    Some("org.freedesktop.Secret.Service"),
                    "ReadAlias",
                    &("default",),
                )
                .await?;
            reply.body().deserialize()
        }
        .await;
        let collection = match collection {
            Ok(p) if p.as_str() != "/" => p,
            Ok(_) => {
                return Finding::warn(
                    CHECK,
                    "no default keyring yet",
                    "the first sign-in creates it (your keyring may ask for a password)",
                );
            }
            Err(e) => {
                return Finding::fail(
                    CHECK,
                    format!("the Secret Service does not answer: {e}"),
                    START,
                );
            }
        };
        let locked = bool_property(
            conn,
            SECRETS,
            collection.as_str(),
            "org.freedesktop.Secret.Collection",
            "Locked",
        )
        .await;
        match locked {
            Ok(false) => Finding::ok(CHECK, "reachable, default keyring unlocked"),
            Ok(true) => Finding::fail(
                CHECK,
                "the default keyring is locked: the token cannot be read",
                "unlock it (log in again, or open Passwords and Keys / seahorse and unlock \"Login\")",
            ),
            Err(e) => Finding::fail(
                CHECK,
                format!("cannot read the keyring's state: {e}"),
                START,
            ),
        }
    }

    async fn notifications(conn: &Connection) -> Finding {
        const CHECK: &str = "notifications";
        const START: &str = "start a notification daemon (your desktop's, or dunst / mako)";
        match present(conn, NOTIFICATIONS).await {
            Ok(true) => {}
            Ok(false) => {
                return Finding::fail(CHECK, "no notification daemon on the session bus", START);
            }
            Err(e) => return Finding::fail(CHECK, format!("cannot ask the bus: {e}"), START),
        }
        let call = |method: &'static str| async move {
            conn.call_method(
                Some(NOTIFICATIONS),
                "/org/freedesktop/Notifications",
                Some(NOTIFICATIONS),
                method,
                &(),
            )
            .await
        };
        let info: zbus::Result<(String, String, String, String)> =
            async { call("GetServerInformation").await?.body().deserialize() }.await;
        let caps: zbus::Result<Vec<String>> =
            async { call("GetCapabilities").await?.body().deserialize() }.await;
        match (info, caps) {
            (Ok((name, _, version, _)), Ok(caps)) => {
                let has = |c: &str| caps.iter().any(|x| x == c);
                let detail = format!(
                    "{name} {version}; actions {}, body markup {}",
                    if has("actions") { "yes" } else { "no" },
                    if has("body-markup") { "yes" } else { "no" }
                );
                if has("body") {
                    Finding::ok(CHECK, detail)
                } else {
                    Finding::warn(
                        CHECK,
                        format!("{detail}; it shows no notification bodies"),
                        "use a daemon that shows bodies to see the details",
                    )
                }
            }
            (Err(e), _) | (_, Err(e)) => Finding::fail(
                CHECK,
                format!("the notification daemon does not answer: {e}"),
                START,
            ),
        }
    }

    async fn tray_host(conn: &Connection) -> Finding {
        const CHECK: &str = "tray";
        const FIX: &str = "use a desktop with a system tray (KDE, XFCE, Cinnamon…); on GNOME \
            install and enable the \"AppIndicator and KStatusNotifierItem Support\" extension";
        match present(conn, WATCHER).await {
            Ok(true) => {}
            Ok(false) => {
                return Finding::fail(
                    CHECK,
                    "no StatusNotifierItem host: the tray icon cannot show",
                    FIX,
                );
            }
            Err(e) => return Finding::fail(CHECK, format!("cannot ask the bus: {e}"), FIX),
        }
        let registered = bool_property(
            conn,
            WATCHER,
            "/StatusNotifierWatcher",
            WATCHER,
            "IsStatusNotifierHostRegistered",
        )
        .await;
        match registered {
            Ok(true) => Finding::ok(CHECK, "a StatusNotifierItem host is registered"),
            Ok(false) => Finding::fail(
                CHECK,
                "a StatusNotifierWatcher runs but no host shows the items",
                FIX,
            ),
            Err(e) => Finding::warn(CHECK, format!("the tray watcher does not say: {e}"), FIX),
        }
    }
}
