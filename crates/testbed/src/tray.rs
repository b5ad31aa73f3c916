//! The test side of the system tray: a StatusNotifierWatcher on the private session bus, and a
//! reader for the items that register with it (their properties, their com.canonical.dbusmenu
//! menu, their icon pixels) plus a way to click their menu entries.
//!
//! Why: on Linux the app's tray is Tauri's `tray-icon` → libayatana-appindicator3, which
//! publishes a StatusNotifierItem (and its menu through libdbusmenu) on the session bus and
//! registers it with whoever owns `org.kde.StatusNotifierWatcher`, normally the desktop panel.
//! No panel runs headless, so the test plays that part itself: it owns the watcher name on the
//! [`Desktop`](crate::Desktop)'s bus, records the registrations, and reads the items
//! back over D-Bus exactly like a panel would.
//!
//! Start the watcher *before* the app. libayatana-appindicator looks for the watcher when the
//! indicator is created; without one it falls back to an XEmbed `GtkStatusIcon`, which nothing
//! on the bus can see. It does watch the name, though: a watcher started later (or restarted)
//! gets the item registered within ~50 ms (measured with libayatana-appindicator3 0.5.92), so
//! a late start costs nothing but a window in which the tray is invisible.
//!
//! Icons: tray-icon writes the RGBA it is given, unscaled, to a PNG
//! (`$XDG_RUNTIME_DIR/tray-icon/tray-icon-<n>-<counter>.png` unless the app sets a temp dir),
//! then sets IconThemePath to that directory and IconName to the file's absolute path; there is
//! no IconPixmap. Each icon change writes a new file and deletes the previous one, so the reader
//! decodes the file while reading the item ([`TrayItem::icon`]). Comparing against a reference
//! PNG is then exact: `icon_pixels(&t) == load_png_rgba("icons/tray/x.png")`.
//!
//! In a test:
//!
//! ```ignore
//! let desktop = Desktop::launch(&Session::default())?;
//! let tray = TrayWatcher::start(&desktop.bus)?; // before the app
//! let app = desktop.command(workspace_bin("quotabell-app")?).spawn()?;
//! let item = tray.wait_for_item(Duration::from_secs(20));
//! let t = tray.wait_for(&item, Duration::from_secs(10), |t| t.entry("Pause 1 h").is_some());
//! assert_eq!(t.menu_labels(), ["Open Quotabell", "Pause 1 h", "Quit"]);
//! tray.click_menu(&item, "Pause 1 h");
//! tray.wait_for(&item, Duration::from_secs(10), |t| t.entry("Resume").is_some());
//! tray.click_menu(&item, "Quit");
//! tray.wait_for_no_items(Duration::from_secs(10));
//! ```
//!
//! The `wait_for*` and `click_menu` calls are a test's assertions: they panic with what they
//! saw. The bench, which times the app, reads [`TrayWatcher::registered_after`] and
//! [`TrayWatcher::new_icons`] (when each registration and icon change arrived) and clicks with
//! [`TrayWatcher::try_click_menu`].
//!
//! Everything here is synchronous, like the rest of the test bed: each call runs its D-Bus work
//! in `zbus::block_on`, and zbus drives the served watcher on a helper thread in between (the
//! bench calls it from inside its Tokio runtime: zbus's own runtime is independent of Tokio's).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, MatchRule, MessageStream, OwnedVariant, Variant, interface};

use crate::{Error, Result};

/// The name and object path the watcher is served at, as in the KDE/freedesktop spec.
pub const WATCHER_NAME: &str = "org.kde.StatusNotifierWatcher";
pub const WATCHER_PATH: &str = "/StatusNotifierWatcher";
const ITEM_IFACE: &str = "org.kde.StatusNotifierItem";
const MENU_IFACE: &str = "com.canonical.dbusmenu";

/// One SNI pixmap: width, height, ARGB32 pixels in network byte order (D-Bus `(iiay)`).
pub type Pixmap = (i32, i32, Vec<u8>);

/// One registered item: the unique bus name of the process that registered it and the object
/// path it is published at. The unique name, not a well-known one, so that an item stays tied to
/// the process that made it (a restarted app registers a new item).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ItemRef {
    pub service: String,
    pub path: String,
}

/// What the watcher has seen, shared between the served interface and the caller's thread.
#[derive(Default)]
struct Registry {
    /// Every item registered, with when its registration arrived.
    items: Vec<(ItemRef, Instant)>,
    hosts: Vec<String>,
    /// When each `NewIcon` signal arrived, by the unique bus name of its sender.
    new_icons: HashMap<String, Vec<Instant>>,
}

/// A poisoned lock only means a panicking test thread held it; the record is still good.
fn lock(r: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    r.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `org.kde.StatusNotifierWatcher` interface as a panel serves it. appindicator only calls
/// `RegisterStatusNotifierItem`; the properties say what a panel's watcher says (a host is
/// registered: the test is the host), for clients that check before registering.
struct Watcher {
    registry: Arc<Mutex<Registry>>,
}

#[interface(interface = "org.kde.StatusNotifierWatcher")]
impl Watcher {
    /// `service` is either a bus name (the item is then at /StatusNotifierItem on it, per the
    /// spec) or an object path on the caller's connection (what libayatana-appindicator sends:
    /// /org/ayatana/NotificationItem/<id>).
    async fn register_status_notifier_item(
        &self,
        service: &str,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> zbus::fdo::Result<()> {
        let at = Instant::now();
        let sender = header
            .sender()
            .map(|s| s.to_string())
            .ok_or_else(|| zbus::fdo::Error::InvalidArgs("no sender".into()))?;
        let item = if service.starts_with('/') {
            ItemRef {
                service: sender,
                path: service.to_owned(),
            }
        } else if service.starts_with(':') {
            ItemRef {
                service: service.to_owned(),
                path: "/StatusNotifierItem".into(),
            }
        } else {
            // A well-known name: resolve it, so the item is tied to its current owner.
            let owner = name_owner(conn, service)
                .await
                .ok_or_else(|| zbus::fdo::Error::InvalidArgs(format!("{service} has no owner")))?;
            ItemRef {
                service: owner,
                path: "/StatusNotifierItem".into(),
            }
        };
        let full = format!("{}{}", item.service, item.path);
        let added = {
            let mut r = lock(&self.registry);
            if r.items.iter().any(|(i, _)| *i == item) {
                false
            } else {
                r.items.push((item, at));
                true
            }
        };
        if added {
            let _ = Self::status_notifier_item_registered(emitter, &full).await;
        }
        Ok(())
    }

    /// Hosts (panels) register here; recorded so that the property below stays honest.
    async fn register_status_notifier_host(
        &self,
        service: &str,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) {
        lock(&self.registry).hosts.push(service.to_owned());
        let _ = Self::status_notifier_host_registered(emitter).await;
    }

    #[zbus(property)]
    fn registered_status_notifier_items(&self) -> Vec<String> {
        lock(&self.registry)
            .items
            .iter()
            .map(|(i, _)| format!("{}{}", i.service, i.path))
            .collect()
    }

    /// Always true: the caller is the host.
    #[zbus(property)]
    fn is_status_notifier_host_registered(&self) -> bool {
        true
    }

    #[zbus(property)]
    fn protocol_version(&self) -> i32 {
        0
    }

    #[zbus(signal)]
    async fn status_notifier_item_registered(
        emitter: SignalEmitter<'_>,
        service: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn status_notifier_item_unregistered(
        emitter: SignalEmitter<'_>,
        service: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn status_notifier_host_registered(emitter: SignalEmitter<'_>) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn status_notifier_host_unregistered(emitter: SignalEmitter<'_>) -> zbus::Result<()>;
}

async fn name_owner(conn: &Connection, name: &str) -> Option<String> {
    let reply = conn
        .call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus"),
            "GetNameOwner",
            &(name,),
        )
        .await
        .ok()?;
    reply.body().deserialize::<String>().ok()
}

/// A tray host for one private session bus. Dropping it releases the watcher name and stops
/// recording `NewIcon` signals.
pub struct TrayWatcher {
    conn: Connection,
    registry: Arc<Mutex<Registry>>,
    /// Ends the thread that records `NewIcon` signals.
    stop_signals: Option<tokio::sync::oneshot::Sender<()>>,
    signals: Option<std::thread::JoinHandle<()>>,
}

/// An icon as RGBA8 rows, top to bottom, `width * height * 4` bytes: the form the reference
/// PNGs in icons/tray/ decode to with [`load_png_rgba`], so that a test compares like with like.
#[derive(Clone, PartialEq, Eq)]
pub struct IconImage {
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
}

impl std::fmt::Debug for IconImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "IconImage({}x{}, {} bytes)",
            self.width,
            self.height,
            self.rgba.len()
        )
    }
}

/// One entry of the item's menu, flattened depth-first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MenuEntry {
    /// The dbusmenu id, what `Event` takes.
    pub id: i32,
    /// Nesting level: 1 for the entries of the menu itself, 2 inside a submenu, ...
    pub depth: usize,
    /// The label as exported, with GTK's mnemonic underscores ("Open _Quotabell").
    pub raw_label: String,
    /// The label as shown: mnemonic underscores removed ("Open Quotabell").
    pub label: String,
    /// "standard" or "separator" (dbusmenu's "type"; absent means "standard").
    pub kind: String,
    pub enabled: bool,
    pub visible: bool,
    /// "checkmark", "radio" or "" (not a toggle).
    pub toggle_type: String,
    /// 1 checked, 0 unchecked, -1 indeterminate/not a toggle.
    pub toggle_state: i32,
    /// Has children (a submenu).
    pub submenu: bool,
}

/// Everything a panel would show of one item, read in one go.
#[derive(Clone, Debug)]
pub struct TrayItem {
    pub item: ItemRef,
    /// appindicator: the id it was created with (tray-icon: "tray-icon tray app").
    pub id: String,
    pub category: String,
    /// appindicator exports its title; tray-icon never sets it (empty unless the app does).
    pub title: String,
    /// "Active", "Passive" (tray-icon's set_visible(false)) or "NeedsAttention".
    pub status: String,
    /// appindicator + tray-icon: the absolute path of the PNG tray-icon wrote.
    pub icon_name: String,
    pub icon_theme_path: String,
    /// appindicator's IconAccessibleDesc (tray-icon: "icon" at creation, "tray icon" after
    /// set_icon).
    pub icon_accessible_desc: String,
    pub attention_icon_name: String,
    /// ARGB32 pixmaps (width, height, bytes in network order); appindicator sends none.
    pub icon_pixmap: Vec<Pixmap>,
    /// (title, description) of the ToolTip property, if the item has one. appindicator has none;
    /// tray-icon's set_tooltip is a no-op on Linux anyway.
    pub tooltip: Option<(String, String)>,
    /// appindicator's label next to the icon (tray-icon's set_title), "" if none.
    pub label: String,
    /// The object path of the com.canonical.dbusmenu menu.
    pub menu_path: Option<String>,
    /// The dbusmenu layout revision the menu below was read at.
    pub menu_revision: u32,
    pub menu_items: Vec<MenuEntry>,
    /// The icon's pixels, read when the item was read: tray-icon deletes the previous PNG as soon
    /// as the icon changes, so reading it later could find it gone.
    pub icon: Option<IconImage>,
}

impl TrayItem {
    /// The labels a user sees when opening the menu, in order: visible non-separator entries,
    /// submenus flattened depth-first, mnemonics removed.
    pub fn menu_labels(&self) -> Vec<String> {
        self.menu_items
            .iter()
            .filter(|e| e.visible && e.kind != "separator")
            .map(|e| e.label.clone())
            .collect()
    }

    /// The visible entry with this label (shown form, mnemonics removed), if any.
    pub fn entry(&self, label: &str) -> Option<&MenuEntry> {
        self.menu_items
            .iter()
            .find(|e| e.visible && e.kind != "separator" && e.label == label)
    }
}

impl TrayWatcher {
    /// Connects to `bus_address`, serves the watcher at /StatusNotifierWatcher, owns
    /// `org.kde.StatusNotifierWatcher` and starts recording the items' `NewIcon` signals. Fails
    /// if the name is already owned (another watcher on that bus would steal the
    /// registrations). Start it before the app: see the module docs.
    pub fn start(bus_address: &str) -> Result<TrayWatcher> {
        let registry = Arc::new(Mutex::new(Registry::default()));
        let watcher = Watcher {
            registry: registry.clone(),
        };
        let (conn, stream) = zbus::block_on(async {
            let conn = zbus::connection::Builder::address(bus_address)
                .serve_at(WATCHER_PATH, watcher)
                .name(WATCHER_NAME)
                .build()
                .await?;
            let rule = MatchRule::builder()
                .msg_type(zbus::message::Type::Signal)
                .interface(ITEM_IFACE)
                .member("NewIcon")
                .build()?;
            let stream = MessageStream::for_match_rule(rule, &conn, None).await?;
            Ok::<_, zbus::Error>((conn, stream))
        })?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let recorder = registry.clone();
        // The arrival time is taken as the message comes off the bus, which is what the bench
        // reports ("tray icon settled").
        let signals = std::thread::Builder::new()
            .name("tray-new-icons".into())
            .spawn(move || {
                zbus::block_on(async move {
                    let mut stream = stream.take_until(stop_rx);
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
                })
            })
            .map_err(Error::io("starting the NewIcon recorder"))?;
        Ok(TrayWatcher {
            conn,
            registry,
            stop_signals: Some(stop_tx),
            signals: Some(signals),
        })
    }

    /// The connection, for tests that need raw D-Bus access on the same bus.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The registered items whose process is still on the bus, oldest first. An item whose
    /// process quit disappears from here (how a test sees "Quit" work).
    pub fn items(&self) -> Vec<ItemRef> {
        let all = self.all_registrations();
        zbus::block_on(async {
            let mut live = Vec::new();
            for i in all {
                if name_owner(&self.conn, &i.service).await.is_some() {
                    live.push(i);
                }
            }
            live
        })
    }

    /// Every registration ever made, including items of processes that have gone.
    pub fn all_registrations(&self) -> Vec<ItemRef> {
        lock(&self.registry)
            .items
            .iter()
            .map(|(i, _)| i.clone())
            .collect()
    }

    /// The first registration that arrived at or after `since`, and when it arrived.
    pub fn registered_after(&self, since: Instant) -> Option<(ItemRef, Instant)> {
        lock(&self.registry)
            .items
            .iter()
            .find(|(_, at)| *at >= since)
            .cloned()
    }

    /// When the `NewIcon` signals of `item`'s process arrived, oldest first.
    pub fn new_icons(&self, item: &ItemRef) -> Vec<Instant> {
        lock(&self.registry)
            .new_icons
            .get(&item.service)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits for the first live item to register (appindicator registers a moment after the
    /// app's GTK main loop starts).
    pub fn wait_for_item(&self, timeout: Duration) -> ItemRef {
        let start = Instant::now();
        loop {
            if let Some(i) = self.items().into_iter().next() {
                return i;
            }
            assert!(
                start.elapsed() < timeout,
                "no tray item registered with the watcher within {timeout:?} \
                 (was the watcher started before the app? registrations so far: {:?})",
                self.all_registrations()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until no live item is left (the app quit or dropped its tray icon).
    pub fn wait_for_no_items(&self, timeout: Duration) {
        let start = Instant::now();
        while !self.items().is_empty() {
            assert!(
                start.elapsed() < timeout,
                "tray items still registered after {timeout:?}: {:?}",
                self.items()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Reads an item's properties, its whole menu (dbusmenu GetLayout(0, -1, [])) and its icon.
    pub fn read_item(&self, item: &ItemRef) -> zbus::Result<TrayItem> {
        zbus::block_on(read_item(&self.conn, item))
    }

    /// Re-reads the item until `ok` holds and returns that reading; the app updates its menu
    /// and icon asynchronously, so a test waits for the state rather than reading once. Read
    /// errors (the item is being re-exported, the icon file is being replaced) count as "not
    /// yet". Panics after `timeout` with the last reading.
    pub fn wait_for(
        &self,
        item: &ItemRef,
        timeout: Duration,
        mut ok: impl FnMut(&TrayItem) -> bool,
    ) -> TrayItem {
        let start = Instant::now();
        loop {
            let last = self.read_item(item);
            if let Ok(t) = &last
                && ok(t)
            {
                return last.unwrap();
            }
            assert!(
                start.elapsed() < timeout,
                "tray item {item:?} did not reach the expected state within {timeout:?}; \
                 last reading: {last:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks the visible, enabled menu entry labelled `label` (shown form, see
    /// [`TrayItem::entry`]) the way a panel does: dbusmenu `Event(id, "clicked", 0, time)`.
    /// Returns the entry's id. Panics if there is no such entry or it is disabled.
    pub fn click_menu(&self, item: &ItemRef, label: &str) -> i32 {
        self.try_click_menu(item, label)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`TrayWatcher::click_menu`] that reports instead of panicking.
    pub fn try_click_menu(&self, item: &ItemRef, label: &str) -> Result<i32> {
        let t = self.read_item(item)?;
        let entry = t.entry(label).ok_or_else(|| {
            Error::Failed(format!(
                "no visible menu entry {label:?} in the tray menu: {:?}",
                t.menu_labels()
            ))
        })?;
        if !entry.enabled {
            return Err(Error::Failed(format!("menu entry {label:?} is disabled")));
        }
        let menu = t
            .menu_path
            .clone()
            .ok_or_else(|| Error::Failed(format!("the tray item {item:?} has no menu")))?;
        self.click_id(item, &menu, entry.id)?;
        Ok(entry.id)
    }

    /// Sends dbusmenu `Event(id, "clicked", int32 0, timestamp)` to the menu at `menu_path`.
    pub fn click_id(&self, item: &ItemRef, menu_path: &str, id: i32) -> zbus::Result<()> {
        // A panel sends the X server time of the click; libdbusmenu only passes it on.
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(0);
        zbus::block_on(async {
            self.conn
                .call_method(
                    Some(item.service.as_str()),
                    menu_path,
                    Some(MENU_IFACE),
                    "Event",
                    &(id, "clicked", Variant::I32(0), timestamp),
                )
                .await
                .map(|_| ())
        })
    }
}

impl Drop for TrayWatcher {
    /// Releases the watcher name before the connection goes, so that a watcher started right
    /// after on the same bus finds the name free (closing the connection alone is asynchronous).
    fn drop(&mut self) {
        let _ = zbus::block_on(self.conn.release_name(WATCHER_NAME));
        if let Some(stop) = self.stop_signals.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.signals.take() {
            let _ = t.join();
        }
    }
}

/// The icon pixels of a reading: the decoded PNG that IconName points at (appindicator, via
/// tray-icon), or the largest IconPixmap (other SNI implementations), as RGBA8.
pub fn icon_pixels(item: &TrayItem) -> Option<(u32, u32, Vec<u8>)> {
    item.icon
        .as_ref()
        .map(|i| (i.width, i.height, i.rgba.clone()))
}

/// Decodes a PNG file to RGBA8 (expanding palette, grey and 16-bit images), e.g. a reference
/// icon from icons/tray/.
pub fn load_png_rgba(path: &Path) -> Result<IconImage, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder
        .read_info()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| format!("{}: image too large", path.display()))?;
    let mut buf = vec![0; size];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    buf.truncate(info.buffer_size());
    let (w, h) = (info.width, info.height);
    let rgba = match info.color_type {
        png::ColorType::Rgba => buf,
        png::ColorType::Rgb => buf
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        png::ColorType::GrayscaleAlpha => buf
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0], p[1]])
            .collect(),
        png::ColorType::Grayscale => buf.iter().flat_map(|&g| [g, g, g, 255]).collect(),
        png::ColorType::Indexed => return Err(format!("{}: palette not expanded", path.display())),
    };
    Ok(IconImage {
        width: w,
        height: h,
        rgba,
    })
}

/// Where a themed icon name resolves to: an absolute path as is (what tray-icon sets), else
/// `<IconThemePath>/<name>.png` (or the name with its extension).
pub fn icon_file(icon_name: &str, icon_theme_path: &str) -> Option<PathBuf> {
    if icon_name.is_empty() {
        return None;
    }
    let p = Path::new(icon_name);
    if p.is_absolute() {
        return Some(p.to_owned());
    }
    if icon_theme_path.is_empty() {
        return None;
    }
    let dir = Path::new(icon_theme_path);
    [format!("{icon_name}.png"), icon_name.to_owned()]
        .into_iter()
        .map(|f| dir.join(f))
        .find(|f| f.is_file())
}

/// The largest ARGB32 (network byte order) pixmap as RGBA8.
fn pixmap_rgba(pixmaps: &[Pixmap]) -> Option<IconImage> {
    let (w, h, argb) = pixmaps.iter().max_by_key(|(w, h, _)| w * h)?;
    if *w <= 0 || *h <= 0 || argb.len() != (*w as usize) * (*h as usize) * 4 {
        return None;
    }
    let rgba = argb
        .chunks_exact(4)
        .flat_map(|p| [p[1], p[2], p[3], p[0]])
        .collect();
    Some(IconImage {
        width: *w as u32,
        height: *h as u32,
        rgba,
    })
}

/// Strips GTK mnemonics: "_" marks the access key, "__" is a literal underscore.
pub fn strip_mnemonic(label: &str) -> String {
    let mut out = String::with_capacity(label.len());
    let mut chars = label.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '_' {
            if chars.peek() == Some(&'_') {
                chars.next();
                out.push('_');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A D-Bus variant with any levels of variant-in-variant removed.
fn unwrap_v<'a, 'b>(v: &'b Variant<'a>) -> &'b Variant<'a> {
    match v {
        Variant::Variant(inner) => unwrap_v(inner),
        v => v,
    }
}

fn v_str(v: &Variant<'_>) -> Option<String> {
    match unwrap_v(v) {
        Variant::Str(s) => Some(s.as_str().to_owned()),
        Variant::ObjectPath(p) => Some(p.as_str().to_owned()),
        _ => None,
    }
}

fn v_i32(v: &Variant<'_>) -> Option<i32> {
    match unwrap_v(v) {
        Variant::I32(i) => Some(*i),
        Variant::U32(u) => Some(*u as i32),
        _ => None,
    }
}

fn v_bool(v: &Variant<'_>) -> Option<bool> {
    match unwrap_v(v) {
        Variant::Bool(b) => Some(*b),
        _ => None,
    }
}

fn v_bytes(v: &Variant<'_>) -> Option<Vec<u8>> {
    match unwrap_v(v) {
        Variant::Array(a) => a
            .inner()
            .iter()
            .map(|b| match b {
                Variant::U8(b) => Some(*b),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// a(iiay)
fn v_pixmaps(v: &Variant<'_>) -> Vec<Pixmap> {
    let Variant::Array(a) = unwrap_v(v) else {
        return Vec::new();
    };
    a.inner()
        .iter()
        .filter_map(|p| match unwrap_v(p) {
            Variant::Structure(s) => match s.fields() {
                [w, h, data] => Some((v_i32(w)?, v_i32(h)?, v_bytes(data)?)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// (sa(iiay)ss): icon name, icon pixmaps, title, description.
fn v_tooltip(v: &Variant<'_>) -> Option<(String, String)> {
    match unwrap_v(v) {
        Variant::Structure(s) => match s.fields() {
            [_, _, title, desc] => Some((v_str(title)?, v_str(desc)?)),
            _ => None,
        },
        _ => None,
    }
}

/// One dbusmenu layout node (ia{sv}av) and its children, appended depth-first.
fn flatten_layout(node: &Variant<'_>, depth: usize, out: &mut Vec<MenuEntry>) {
    let Variant::Structure(s) = unwrap_v(node) else {
        return;
    };
    let [id, props, children] = s.fields() else {
        return;
    };
    let id = v_i32(id).unwrap_or(-1);
    let mut p: HashMap<String, &Variant<'_>> = HashMap::new();
    if let Variant::Dict(d) = unwrap_v(props) {
        for (k, v) in d.iter() {
            if let Some(k) = v_str(k) {
                p.insert(k, v);
            }
        }
    }
    let children: &[Variant<'_>] = match unwrap_v(children) {
        Variant::Array(a) => a.inner(),
        _ => &[],
    };
    out.push(entry_from_props(id, depth, &p, !children.is_empty()));
    for c in children {
        flatten_layout(c, depth + 1, out);
    }
}

/// dbusmenu omits properties at their defaults: enabled/visible true, type "standard".
fn entry_from_props(
    id: i32,
    depth: usize,
    p: &HashMap<String, &Variant<'_>>,
    has_children: bool,
) -> MenuEntry {
    let s = |k: &str| p.get(k).and_then(|v| v_str(v));
    let raw_label = s("label").unwrap_or_default();
    MenuEntry {
        id,
        depth,
        label: strip_mnemonic(&raw_label),
        raw_label,
        kind: s("type").unwrap_or_else(|| "standard".into()),
        enabled: p.get("enabled").and_then(|v| v_bool(v)).unwrap_or(true),
        visible: p.get("visible").and_then(|v| v_bool(v)).unwrap_or(true),
        toggle_type: s("toggle-type").unwrap_or_default(),
        toggle_state: p.get("toggle-state").and_then(|v| v_i32(v)).unwrap_or(-1),
        submenu: has_children || s("children-display").as_deref() == Some("submenu"),
    }
}

async fn read_item(conn: &Connection, item: &ItemRef) -> zbus::Result<TrayItem> {
    let reply = conn
        .call_method(
            Some(item.service.as_str()),
            item.path.as_str(),
            Some("org.freedesktop.DBus.Properties"),
            "GetAll",
            &(ITEM_IFACE,),
        )
        .await?;
    let props: HashMap<String, OwnedVariant> = reply.body().deserialize()?;
    let s = |k: &str| props.get(k).and_then(|v| v_str(v)).unwrap_or_default();
    let menu_path = props
        .get("Menu")
        .and_then(|v| v_str(v))
        .filter(|p| p != "/" && !p.is_empty());

    let mut menu_items = Vec::new();
    let mut menu_revision = 0;
    if let Some(menu) = &menu_path {
        let reply = conn
            .call_method(
                Some(item.service.as_str()),
                menu.as_str(),
                Some(MENU_IFACE),
                "GetLayout",
                &(0i32, -1i32, Vec::<String>::new()),
            )
            .await?;
        let (revision, layout): (u32, LayoutRoot) = reply.body().deserialize()?;
        menu_revision = revision;
        // The root (id 0) is the menu itself, not an entry: its children are depth 1.
        for child in &layout.2 {
            flatten_layout(child, 1, &mut menu_items);
        }
    }

    let icon_pixmap = props
        .get("IconPixmap")
        .map(|v| v_pixmaps(v))
        .unwrap_or_default();
    let icon_name = s("IconName");
    let icon_theme_path = s("IconThemePath");
    let icon = match icon_file(&icon_name, &icon_theme_path) {
        Some(f) => load_png_rgba(&f).ok(),
        None => pixmap_rgba(&icon_pixmap),
    };
    Ok(TrayItem {
        item: item.clone(),
        id: s("Id"),
        category: s("Category"),
        title: s("Title"),
        status: s("Status"),
        icon_name,
        icon_theme_path,
        icon_accessible_desc: s("IconAccessibleDesc"),
        attention_icon_name: s("AttentionIconName"),
        icon_pixmap,
        tooltip: props.get("ToolTip").and_then(|v| v_tooltip(v)),
        label: s("XAyatanaLabel"),
        menu_path,
        menu_revision,
        menu_items,
        icon,
    })
}

/// The root node of a GetLayout reply, (ia{sv}av).
type LayoutRoot = (i32, HashMap<String, OwnedVariant>, Vec<OwnedVariant>);
