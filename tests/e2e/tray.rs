//! The test side of the system tray: a StatusNotifierWatcher on the private session bus, and a
//! reader for the items that register with it (their properties, their com.canonical.dbusmenu
//! menu, their icon pixels) plus a way to click their menu entries.
//!
//! Why: on Linux the app's tray is Tauri's `tray-icon` → libayatana-appindicator3, which
//! publishes a StatusNotifierItem (and its menu through libdbusmenu) on the session bus and
//! registers it with whoever owns `org.kde.StatusNotifierWatcher`, normally the desktop panel.
//! No panel runs headless, so the test plays that part itself: it owns the watcher name on the
//! [`Desktop`](super::support::Desktop)'s bus, records the registrations, and reads the items
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
//! let desktop = Desktop::start();
//! let tray = TrayWatcher::start(&desktop.bus); // before the app
//! let app = desktop.command(bin("quotabell-app")).spawn().unwrap();
//! let item = tray.wait_for_item(Duration::from_secs(20));
//! let t = tray.wait_for(&item, Duration::from_secs(10), |t| t.entry("Pause 1 h").is_some());
//! assert_eq!(t.menu_labels(), ["Open Quotabell", "Pause 1 h", "Quit"]);
//! tray.click_menu(&item, "Pause 1 h");
//! tray.wait_for(&item, Duration::from_secs(10), |t| t.entry("Resume").is_some());
//! tray.click_menu(&item, "Quit");
//! tray.wait_for_no_items(Duration::from_secs(10));
//! ```
//!
//! Everything here is synchronous, like the rest of the end-to-end tests: each call runs its D-Bus
//! work in `zbus::block_on`, and zbus drives the served watcher on a helper thread in between.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, OwnedVariant, Variant, interface};

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

/// What the watcher has seen, shared between the served interface and the test thread.
#[derive(Default)]
struct Registry {
    items: Vec<ItemRef>,
    hosts: Vec<String>,
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
            let mut r = self.registry.lock().unwrap();
            if r.items.contains(&item) {
                false
            } else {
                r.items.push(item);
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
        self.registry.lock().unwrap().hosts.push(service.to_owned());
        let _ = Self::status_notifier_host_registered(emitter).await;
    }

    #[zbus(property)]
    fn registered_status_notifier_items(&self) -> Vec<String> {
        let r = self.registry.lock().unwrap();
        r.items
            .iter()
            .map(|i| format!("{}{}", i.service, i.path))
            .collect()
    }

    /// Always true: the test is the host.
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

/// A tray host for one private session bus. Dropping it closes the connection, which releases
/// the watcher name.
pub struct TrayWatcher {
    conn: Connection,
    registry: Arc<Mutex<Registry>>,
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
    /// Connects to `bus_address`, serves the watcher at /StatusNotifierWatcher and owns
    /// `org.kde.StatusNotifierWatcher`. Panics if the name is already owned (another watcher on
    /// that bus would steal the registrations). Start it before the app: see the module docs.
    pub fn start(bus_address: &str) -> TrayWatcher {
        let registry = Arc::new(Mutex::new(Registry::default()));
        let watcher = Watcher {
            registry: registry.clone(),
        };
        let conn = zbus::block_on(async {
            zbus::connection::Builder::address(bus_address)
                .serve_at(WATCHER_PATH, watcher)
                .name(WATCHER_NAME)
                .build()
                .await
        })
        .unwrap_or_else(|e| panic!("tray watcher on {bus_address}: {e}"));
        TrayWatcher { conn, registry }
    }

    /// The connection, for tests that need raw D-Bus access on the same bus.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The registered items whose process is still on the bus, oldest first. An item whose
    /// process quit disappears from here (how a test sees "Quit" work).
    pub fn items(&self) -> Vec<ItemRef> {
        let all = self.registry.lock().unwrap().items.clone();
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
        self.registry.lock().unwrap().items.clone()
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
        let t = self
            .read_item(item)
            .unwrap_or_else(|e| panic!("reading tray item {item:?}: {e}"));
        let entry = t.entry(label).unwrap_or_else(|| {
            panic!(
                "no visible menu entry {label:?} in the tray menu: {:?}",
                t.menu_labels()
            )
        });
        assert!(entry.enabled, "menu entry {label:?} is disabled");
        let menu = t.menu_path.clone().expect("the item has no menu");
        self.click_id(item, &menu, entry.id)
            .unwrap_or_else(|e| panic!("clicking {label:?} (id {}): {e}", entry.id));
        entry.id
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

/// Writes an RGBA8 PNG the way tray-icon does (png crate, 8-bit RGBA, no resizing).
pub fn write_png_rgba(path: &Path, width: u32, height: u32, rgba: &[u8]) {
    let file = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header().unwrap().write_image_data(rgba).unwrap();
}

#[cfg(test)]
fn pattern(width: u32, height: u32, seed: u8) -> Vec<u8> {
    (0..width * height)
        .flat_map(|i| {
            let (x, y) = ((i % width) as u8, (i / width) as u8);
            [
                x.wrapping_mul(7) ^ seed,
                y.wrapping_mul(5),
                seed,
                (x ^ y) | 0x0f,
            ]
        })
        .collect()
}

/// What tray-icon's gtk backend does with libayatana-appindicator3, driven from Python
/// (AppIndicator::new("tray-icon tray app", ""), set_icon_theme_path(dir) +
/// set_icon_full(abs png), set_label, a GtkMenu; commands on stdin change it live).
const PY_INDICATOR: &str = r#"
import os, sys, gi
gi.require_version('Gtk', '3.0')
gi.require_version('AyatanaAppIndicator3', '0.1')
from gi.repository import Gtk, GLib, AyatanaAppIndicator3 as AI
icon = sys.argv[1]
ind = AI.Indicator.new("tray-icon tray app", "", AI.IndicatorCategory.APPLICATION_STATUS)
ind.set_status(AI.IndicatorStatus.ACTIVE)
ind.set_icon_theme_path(os.path.dirname(icon))
ind.set_icon_full(icon, "icon")
menu = Gtk.Menu()
a = Gtk.MenuItem.new_with_mnemonic("Open _Quotabell")
b = Gtk.MenuItem.new_with_label("Pause 1 h")
sep = Gtk.SeparatorMenuItem()
hidden = Gtk.MenuItem.new_with_label("Hidden")
q = Gtk.MenuItem.new_with_label("Quit")
for i in (a, b, sep, hidden, q):
    menu.append(i)
for i in (a, b, sep, q):
    i.show()
def clicked(w):
    print("clicked", w.get_label(), flush=True)
    if w is q:
        Gtk.main_quit()
for i in (a, b, q):
    i.connect("activate", clicked)
ind.set_menu(menu)
ind.set_label("3 left", "")
def on_line(src, cond):
    line = sys.stdin.readline()
    if not line:
        Gtk.main_quit()
        return False
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "icon":
        ind.set_icon_theme_path(os.path.dirname(arg))
        ind.set_icon_full(arg, "tray icon")
    elif cmd == "label":
        ind.set_label(arg, "")
    elif cmd == "item1":
        b.set_label(arg)
    elif cmd == "disable":
        b.set_sensitive(False)
    elif cmd == "title":
        ind.set_title(arg)
    print("done", cmd, flush=True)
    return True
GLib.io_add_watch(sys.stdin, GLib.IO_IN, on_line)
print("ready", flush=True)
Gtk.main()
"#;

/// Needs python3-gi (beyond scripts/test's packages; gir1.2-ayatanaappindicator3-0.1 and
/// gir1.2-gtk-3.0 come with libayatana-appindicator3-dev and libgtk-3-dev) and an X display.
#[test]
#[ignore = "needs python3-gi and a real libayatana-appindicator3; run with --ignored"]
fn real_appindicator_registers_and_is_readable() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let desktop = super::support::Desktop::start();
    let watcher = TrayWatcher::start(&desktop.bus);
    let dir = desktop.dir.path();
    let red = pattern(32, 32, 200);
    let blue = pattern(32, 32, 17);
    write_png_rgba(&dir.join("red.png"), 32, 32, &red);
    write_png_rgba(&dir.join("blue.png"), 32, 32, &blue);
    let mut child = desktop
        .command("/usr/bin/python3")
        .arg("-c")
        .arg(PY_INDICATOR)
        .arg(dir.join("red.png"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for l in out.lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let expect = |what: &str| {
        let l = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(l, what);
    };
    expect("ready");

    let item = watcher.wait_for_item(Duration::from_secs(10));
    let t = watcher.wait_for(&item, Duration::from_secs(10), |t| {
        t.menu_labels().len() == 3
    });
    eprintln!("{t:#?}");
    assert_eq!(t.menu_labels(), ["Open Quotabell", "Pause 1 h", "Quit"]);
    assert_eq!(t.label, "3 left");
    assert_eq!(icon_pixels(&t), Some((32, 32, red.clone())));

    watcher.click_menu(&item, "Pause 1 h");
    expect("clicked Pause 1 h");

    writeln!(stdin, "icon {}", dir.join("blue.png").display()).unwrap();
    expect("done icon");
    writeln!(stdin, "item1 Resume").unwrap();
    expect("done item1");
    writeln!(stdin, "title Quotabell").unwrap();
    expect("done title");
    let t = watcher.wait_for(&item, Duration::from_secs(10), |t| {
        t.entry("Resume").is_some() && icon_pixels(t).map(|i| i.2) == Some(blue.clone())
    });
    eprintln!("{t:#?}");
    writeln!(stdin, "disable").unwrap();
    expect("done disable");
    watcher.wait_for(&item, Duration::from_secs(10), |t| {
        !t.entry("Resume").unwrap().enabled
    });

    watcher.click_menu(&item, "Quit");
    expect("clicked Quit");
    watcher.wait_for_no_items(Duration::from_secs(10));
    let _ = child.wait();
}

/// A bare private session bus (no X, no keyring, no notification daemon) for the self-tests.
#[cfg(test)]
struct PrivateBus {
    dir: tempfile::TempDir,
    address: String,
    daemon: std::process::Child,
}

#[cfg(test)]
impl PrivateBus {
    fn start() -> Self {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let mut daemon = std::process::Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .arg(format!(
                "--address=unix:path={}",
                dir.path().join("bus").display()
            ))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("dbus-daemon");
        let mut line = String::new();
        std::io::BufReader::new(daemon.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        PrivateBus {
            dir,
            address: line.trim().to_owned(),
            daemon,
        }
    }
}

#[cfg(test)]
impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// The state of a fake item, shared with the test that changes it.
#[cfg(test)]
#[derive(Default)]
struct FakeState {
    icon_name: String,
    icon_theme_path: String,
    icon_pixmap: Vec<Pixmap>,
    pause_label: String,
    clicks: Vec<(i32, String)>,
}

/// org.kde.StatusNotifierItem as libayatana-appindicator exports it (same property set), plus a
/// ToolTip and an optional IconPixmap as other SNI implementations have.
#[cfg(test)]
struct FakeItem(Arc<Mutex<FakeState>>);

#[cfg(test)]
#[interface(interface = "org.kde.StatusNotifierItem")]
impl FakeItem {
    #[zbus(property)]
    fn id(&self) -> String {
        "tray-icon tray app".into()
    }
    #[zbus(property)]
    fn category(&self) -> String {
        "ApplicationStatus".into()
    }
    #[zbus(property)]
    fn title(&self) -> String {
        "Quotabell".into()
    }
    #[zbus(property)]
    fn status(&self) -> String {
        "Active".into()
    }
    #[zbus(property)]
    fn icon_name(&self) -> String {
        self.0.lock().unwrap().icon_name.clone()
    }
    #[zbus(property)]
    fn icon_theme_path(&self) -> String {
        self.0.lock().unwrap().icon_theme_path.clone()
    }
    #[zbus(property)]
    fn icon_pixmap(&self) -> Vec<Pixmap> {
        self.0.lock().unwrap().icon_pixmap.clone()
    }
    #[zbus(property)]
    fn tool_tip(&self) -> (String, Vec<Pixmap>, String, String) {
        (
            String::new(),
            Vec::new(),
            "Quotabell".into(),
            "3 left".into(),
        )
    }
    #[zbus(property, name = "XAyatanaLabel")]
    fn x_ayatana_label(&self) -> String {
        "3 left".into()
    }
    #[zbus(property)]
    fn menu(&self) -> zbus::OwnedObjectPath {
        zbus::OwnedObjectPath::try_from("/Fake/Menu").unwrap()
    }
}

/// com.canonical.dbusmenu serving a fixed tree (with a live label), recording Events.
#[cfg(test)]
struct FakeMenu(Arc<Mutex<FakeState>>);

#[cfg(test)]
fn fake_node(
    id: i32,
    props: &[(&str, Variant<'static>)],
    children: Vec<Variant<'static>>,
) -> Variant<'static> {
    let props: HashMap<String, Variant<'static>> = props
        .iter()
        .map(|(k, v)| (k.to_string(), v.try_clone().unwrap()))
        .collect();
    Variant::Structure(
        zbus::wire::Structure::builder()
            .add_field(id)
            .add_field(props)
            .add_field(children)
            .build()
            .unwrap(),
    )
}

#[cfg(test)]
#[interface(interface = "com.canonical.dbusmenu")]
impl FakeMenu {
    fn get_layout(
        &self,
        _parent_id: i32,
        _recursion_depth: i32,
        _property_names: Vec<String>,
    ) -> (u32, LayoutRoot) {
        let label = |s: &str| ("label", Variant::from(s.to_owned()));
        let pause = self.0.lock().unwrap().pause_label.clone();
        let children = vec![
            fake_node(1, &[label("Open _Quotabell")], vec![]),
            fake_node(2, &[label(&pause)], vec![]),
            fake_node(
                3,
                &[("type", Variant::from("separator".to_owned()))],
                vec![],
            ),
            fake_node(
                4,
                &[label("Hidden"), ("visible", Variant::Bool(false))],
                vec![],
            ),
            fake_node(
                5,
                &[label("Dis_abled"), ("enabled", Variant::Bool(false))],
                vec![],
            ),
            fake_node(
                6,
                &[
                    label("More"),
                    ("children-display", Variant::from("submenu".to_owned())),
                ],
                vec![fake_node(
                    7,
                    &[
                        label("Snake__case"),
                        ("toggle-type", Variant::from("checkmark".to_owned())),
                        ("toggle-state", Variant::I32(1)),
                    ],
                    vec![],
                )],
            ),
            fake_node(8, &[label("Quit")], vec![]),
        ];
        let children = children
            .into_iter()
            .map(|c| OwnedVariant::try_from(c).unwrap())
            .collect();
        (7, (0, HashMap::new(), children))
    }

    fn event(&self, id: i32, event_id: &str, _data: OwnedVariant, _timestamp: u32) {
        self.0
            .lock()
            .unwrap()
            .clicks
            .push((id, event_id.to_owned()));
    }
}

/// Serves a fake item and menu on a new connection to `bus` and registers it with the watcher
/// the way appindicator does (object path) or the spec's other way (a well-known bus name).
#[cfg(test)]
fn fake_item(bus: &str, state: &Arc<Mutex<FakeState>>, by_name: Option<&str>) -> Connection {
    let path = if by_name.is_some() {
        "/StatusNotifierItem"
    } else {
        "/org/ayatana/NotificationItem/tray_icon_tray_app"
    };
    zbus::block_on(async {
        let mut b = zbus::connection::Builder::address(bus)
            .serve_at(path, FakeItem(state.clone()))
            .serve_at("/Fake/Menu", FakeMenu(state.clone()));
        if let Some(name) = by_name {
            b = b.name(name);
        }
        let conn = b.build().await.unwrap();
        conn.call_method(
            Some(WATCHER_NAME),
            WATCHER_PATH,
            Some(WATCHER_NAME),
            "RegisterStatusNotifierItem",
            &(by_name.unwrap_or(path),),
        )
        .await
        .unwrap();
        conn
    })
}

#[test]
fn watcher_reads_items_menus_and_icons_and_clicks() {
    let bus = PrivateBus::start();
    let watcher = TrayWatcher::start(&bus.address);
    let dir = bus.dir.path();
    let red = pattern(32, 32, 200);
    let blue = pattern(32, 32, 17);
    write_png_rgba(&dir.join("red.png"), 32, 32, &red);
    write_png_rgba(&dir.join("blue.png"), 32, 32, &blue);

    // An appindicator-like item: IconName is an absolute PNG path, no pixmap.
    let state = Arc::new(Mutex::new(FakeState {
        icon_name: dir.join("red.png").display().to_string(),
        icon_theme_path: dir.display().to_string(),
        pause_label: "Pause 1 h".into(),
        ..Default::default()
    }));
    let conn = fake_item(&bus.address, &state, None);
    let item = watcher.wait_for_item(Duration::from_secs(5));
    assert_eq!(item.service, conn.unique_name().unwrap().to_string());
    assert_eq!(
        item.path,
        "/org/ayatana/NotificationItem/tray_icon_tray_app"
    );
    let t = watcher.read_item(&item).unwrap();
    assert_eq!(
        t.menu_labels(),
        [
            "Open Quotabell",
            "Pause 1 h",
            "Disabled",
            "More",
            "Snake_case",
            "Quit"
        ]
    );
    assert_eq!(t.id, "tray-icon tray app");
    assert_eq!(t.title, "Quotabell");
    assert_eq!(t.status, "Active");
    assert_eq!(t.label, "3 left");
    assert_eq!(t.tooltip, Some(("Quotabell".into(), "3 left".into())));
    assert_eq!(t.menu_path.as_deref(), Some("/Fake/Menu"));
    assert_eq!(t.menu_revision, 7);
    let e = |l: &str| t.menu_items.iter().find(|e| e.label == l).unwrap().clone();
    assert_eq!(e("Open Quotabell").raw_label, "Open _Quotabell");
    assert!(!e("Hidden").visible);
    assert!(!e("Disabled").enabled);
    assert!(e("More").submenu);
    assert_eq!(
        (
            e("Snake_case").depth,
            e("Snake_case").toggle_type.as_str(),
            e("Snake_case").toggle_state
        ),
        (2, "checkmark", 1)
    );
    assert_eq!(
        t.menu_items
            .iter()
            .filter(|e| e.kind == "separator")
            .count(),
        1
    );
    assert_eq!(icon_pixels(&t), Some((32, 32, red.clone())));
    assert_eq!(load_png_rgba(&dir.join("red.png")).unwrap().rgba, red);

    assert_eq!(watcher.click_menu(&item, "Pause 1 h"), 2);
    assert_eq!(watcher.click_menu(&item, "Snake_case"), 7);
    assert_eq!(
        state.lock().unwrap().clicks,
        [(2, "clicked".to_owned()), (7, "clicked".to_owned())]
    );

    // Live changes: wait_for re-reads until the new label and icon show.
    {
        let mut s = state.lock().unwrap();
        s.pause_label = "Resume".into();
        s.icon_name = dir.join("blue.png").display().to_string();
    }
    let t = watcher.wait_for(&item, Duration::from_secs(5), |t| {
        t.entry("Resume").is_some()
    });
    assert_eq!(icon_pixels(&t).unwrap().2, blue);

    // An item registered by bus name, with an ARGB32 IconPixmap and no IconName.
    let argb: Vec<u8> = blue
        .chunks_exact(4)
        .flat_map(|p| [p[3], p[0], p[1], p[2]])
        .collect();
    let state2 = Arc::new(Mutex::new(FakeState {
        icon_pixmap: vec![(16, 16, vec![0; 16 * 16 * 4]), (32, 32, argb)],
        pause_label: "Pause 1 h".into(),
        ..Default::default()
    }));
    let name = format!("org.kde.StatusNotifierItem-{}-2", std::process::id());
    let conn2 = fake_item(&bus.address, &state2, Some(&name));
    let items = watcher.items();
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[1].service, conn2.unique_name().unwrap().to_string());
    assert_eq!(items[1].path, "/StatusNotifierItem");
    let t2 = watcher.read_item(&items[1]).unwrap();
    assert_eq!(icon_pixels(&t2), Some((32, 32, blue.clone())));

    // A process that leaves the bus leaves the list.
    zbus::block_on(conn.close()).unwrap();
    assert_eq!(watcher.items(), [items[1].clone()]);
    zbus::block_on(conn2.close()).unwrap();
    watcher.wait_for_no_items(Duration::from_secs(5));
    assert_eq!(watcher.all_registrations().len(), 2);

    // The name is released on drop: a new watcher can take over at once.
    drop(watcher);
    let _again = TrayWatcher::start(&bus.address);
}

#[test]
fn strips_gtk_mnemonics() {
    assert_eq!(strip_mnemonic("Open _Quotabell"), "Open Quotabell");
    assert_eq!(strip_mnemonic("snake__case_x"), "snake_casex");
    assert_eq!(strip_mnemonic("Pause 1 h"), "Pause 1 h");
}
