//! The little of a desktop panel the app benches need, on the private session bus: an
//! `org.kde.StatusNotifierWatcher` that timestamps every `RegisterStatusNotifierItem` call
//! (how the app's tray, libayatana-appindicator3, announces itself), the time of every
//! `NewIcon` signal of an item, and a click on a menu entry through com.canonical.dbusmenu.
//!
//! The end-to-end tests have a fuller reader (tests/e2e/tray.rs: properties, icon pixels, the
//! whole menu); this is the minimum, kept here so the bench does not depend on the tests.
//!
//! Own the watcher name before the app starts: without a watcher appindicator falls back to
//! an XEmbed icon that nothing on the bus sees.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::StreamExt;
use zbus::message::Header;
use zbus::{Connection, MatchRule, MessageStream, OwnedVariant, Variant, interface};

use crate::BoxError;

const WATCHER_NAME: &str = "org.kde.StatusNotifierWatcher";
const WATCHER_PATH: &str = "/StatusNotifierWatcher";
const ITEM_IFACE: &str = "org.kde.StatusNotifierItem";
const MENU_IFACE: &str = "com.canonical.dbusmenu";

/// One registration: the caller's unique bus name, the item's object path, and when the call
/// arrived.
#[derive(Clone, Debug)]
pub struct Registration {
    pub sender: String,
    pub path: String,
    pub at: Instant,
}

#[derive(Default)]
struct Seen {
    registrations: Vec<Registration>,
    /// `NewIcon` signals by sender, in arrival order.
    new_icons: HashMap<String, Vec<Instant>>,
}

struct Watcher(Arc<Mutex<Seen>>);

#[interface(interface = "org.kde.StatusNotifierWatcher")]
impl Watcher {
    /// libayatana-appindicator passes its object path (/org/ayatana/NotificationItem/<id>);
    /// other implementations a bus name (the item is then at /StatusNotifierItem).
    async fn register_status_notifier_item(
        &self,
        service: &str,
        #[zbus(header)] header: Header<'_>,
    ) -> zbus::fdo::Result<()> {
        let at = Instant::now();
        let sender = header
            .sender()
            .map(|s| s.to_string())
            .ok_or_else(|| zbus::fdo::Error::InvalidArgs("no sender".into()))?;
        let path = if service.starts_with('/') {
            service.to_owned()
        } else {
            "/StatusNotifierItem".to_owned()
        };
        lock(&self.0)
            .registrations
            .push(Registration { sender, path, at });
        Ok(())
    }

    async fn register_status_notifier_host(&self, _service: &str) {}

    #[zbus(property)]
    fn registered_status_notifier_items(&self) -> Vec<String> {
        lock(&self.0)
            .registrations
            .iter()
            .map(|r| format!("{}{}", r.sender, r.path))
            .collect()
    }

    /// The bench plays the panel (the host).
    #[zbus(property)]
    fn is_status_notifier_host_registered(&self) -> bool {
        true
    }

    #[zbus(property)]
    fn protocol_version(&self) -> i32 {
        0
    }
}

fn lock(m: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct TrayWatcher {
    conn: Connection,
    seen: Arc<Mutex<Seen>>,
    signals: tokio::task::JoinHandle<()>,
}

impl TrayWatcher {
    /// Owns the watcher name on `bus` and starts recording `NewIcon` signals.
    pub async fn start(bus: &str) -> Result<Self, BoxError> {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let conn = zbus::connection::Builder::address(bus)
            .serve_at(WATCHER_PATH, Watcher(seen.clone()))
            .name(WATCHER_NAME)
            .build()
            .await?;
        let rule = MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .interface(ITEM_IFACE)
            .member("NewIcon")
            .build()?;
        let mut stream = MessageStream::for_match_rule(rule, &conn, None).await?;
        let recorder = seen.clone();
        let signals = tokio::spawn(async move {
            while let Some(msg) = stream.next().await {
                let at = Instant::now();
                let Ok(msg) = msg else { continue };
                if let Some(sender) = msg.header().sender() {
                    lock(&recorder)
                        .new_icons
                        .entry(sender.to_string())
                        .or_default()
                        .push(at);
                }
            }
        });
        Ok(Self {
            conn,
            seen,
            signals,
        })
    }

    /// The first registration that arrived after `since`.
    pub fn registered_after(&self, since: Instant) -> Option<Registration> {
        lock(&self.seen)
            .registrations
            .iter()
            .find(|r| r.at >= since)
            .cloned()
    }

    /// The times of the `NewIcon` signals of `sender` so far.
    pub fn new_icons(&self, sender: &str) -> Vec<Instant> {
        lock(&self.seen)
            .new_icons
            .get(sender)
            .cloned()
            .unwrap_or_default()
    }

    /// Clicks the top-level menu entry labelled `label` as a panel does: dbusmenu
    /// `Event(id, "clicked", int32 0, timestamp)` on the menu the item's `Menu` property names.
    pub async fn click(&self, item: &Registration, label: &str) -> Result<(), BoxError> {
        let reply = self
            .conn
            .call_method(
                Some(item.sender.as_str()),
                item.path.as_str(),
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &(ITEM_IFACE, "Menu"),
            )
            .await?;
        let menu: OwnedVariant = reply.body().deserialize()?;
        let menu = match unwrap_v(&menu) {
            Variant::ObjectPath(p) => p.as_str().to_owned(),
            Variant::Str(s) => s.as_str().to_owned(),
            v => return Err(format!("the tray item's Menu is {v:?}").into()),
        };
        let reply = self
            .conn
            .call_method(
                Some(item.sender.as_str()),
                menu.as_str(),
                Some(MENU_IFACE),
                "GetLayout",
                &(0i32, 1i32, Vec::<String>::new()),
            )
            .await?;
        type Node = (i32, HashMap<String, OwnedVariant>, Vec<OwnedVariant>);
        let (_revision, root): (u32, Node) = reply.body().deserialize()?;
        let mut labels = Vec::new();
        let mut found = None;
        for child in &root.2 {
            let Variant::Structure(s) = unwrap_v(child) else {
                continue;
            };
            let [id, props, _] = s.fields() else { continue };
            let Variant::I32(id) = unwrap_v(id) else {
                continue;
            };
            let Variant::Dict(props) = unwrap_v(props) else {
                continue;
            };
            let shown = props
                .iter()
                .find_map(|(k, v)| match (unwrap_v(k), unwrap_v(v)) {
                    (Variant::Str(k), Variant::Str(v)) if k.as_str() == "label" => {
                        Some(v.as_str().replace('_', ""))
                    }
                    _ => None,
                });
            if let Some(l) = shown {
                if l == label {
                    found = Some(*id);
                }
                labels.push(l);
            }
        }
        let id = found.ok_or_else(|| format!("no menu entry {label:?} in {labels:?}"))?;
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0);
        self.conn
            .call_method(
                Some(item.sender.as_str()),
                menu.as_str(),
                Some(MENU_IFACE),
                "Event",
                &(id, "clicked", Variant::I32(0), timestamp),
            )
            .await?;
        Ok(())
    }

    /// Releases the watcher name (closing the connection alone is asynchronous).
    pub async fn stop(self) {
        self.signals.abort();
        let _ = self.conn.release_name(WATCHER_NAME).await;
    }
}

/// A D-Bus value with any levels of variant-in-variant removed.
fn unwrap_v<'a, 'b>(v: &'b Variant<'a>) -> &'b Variant<'a> {
    match v {
        Variant::Variant(inner) => unwrap_v(inner),
        v => v,
    }
}
