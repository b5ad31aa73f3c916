//! Self-tests of the test bed's tray watcher (crates/testbed, `TrayWatcher`): against fake
//! items and menus served on a bare private bus, and (ignored by default) against a real
//! libayatana-appindicator3 driven from Python, the library tray-icon uses.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quotabell_testbed::{
    Pixmap, TrayWatcher, WATCHER_NAME, WATCHER_PATH, icon_pixels, load_png_rgba, strip_mnemonic,
};
use zbus::{Connection, OwnedVariant, Variant, interface};

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
    let watcher = TrayWatcher::start(&desktop.bus).unwrap();
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
    let watcher = TrayWatcher::start(&bus.address).unwrap();
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
    let _again = TrayWatcher::start(&bus.address).unwrap();
}

#[test]
fn strips_gtk_mnemonics() {
    assert_eq!(strip_mnemonic("Open _Quotabell"), "Open Quotabell");
    assert_eq!(strip_mnemonic("snake__case_x"), "snake_casex");
    assert_eq!(strip_mnemonic("Pause 1 h"), "Pause 1 h");
}
