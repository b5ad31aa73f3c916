//! Renders the core's [`TrayModel`] into the system tray: the icon of the state and a menu
//! whose first item is the main action (a left click does nothing on Linux appindicator).

use quotabell_core::ipc::{TrayModel, TrayState};
use tauri::AppHandle;
use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem, Submenu};
use tauri::tray::{TrayIcon, TrayIconBuilder};

pub const OPEN: &str = "open";
pub const PAUSE_HOUR: &str = "pause-hour";
pub const PAUSE_TOMORROW: &str = "pause-tomorrow";
pub const RESUME: &str = "resume";
pub const QUIT: &str = "quit";

/// The state icons, compiled in: no path to resolve at run time, no file to go missing.
fn icon(state: TrayState) -> Image<'static> {
    let bytes: &'static [u8] = match state {
        TrayState::Ok => include_bytes!("../../icons/tray/ok.png"),
        TrayState::Warning => include_bytes!("../../icons/tray/warning.png"),
        TrayState::Over => include_bytes!("../../icons/tray/over.png"),
        TrayState::Offline => include_bytes!("../../icons/tray/offline.png"),
        TrayState::SignedOut => include_bytes!("../../icons/tray/signed-out.png"),
        TrayState::Paused => include_bytes!("../../icons/tray/paused.png"),
    };
    Image::from_bytes(bytes).expect("the tray icons are valid PNGs (compiled in)")
}

pub struct Tray {
    icon: TrayIcon,
    shown: Option<TrayModel>,
}

impl Tray {
    pub fn create(
        app: &AppHandle,
        on_menu: impl Fn(&AppHandle, &str) + Send + Sync + 'static,
    ) -> tauri::Result<Self> {
        let model = TrayModel {
            state: TrayState::SignedOut,
            tooltip: "Quotabell".into(),
            lines: Vec::new(),
            paused: false,
        };
        let icon = TrayIconBuilder::with_id("quotabell")
            .icon(icon(model.state))
            .tooltip(&model.tooltip)
            .menu(&menu(app, &model)?)
            .show_menu_on_left_click(true)
            .on_menu_event(move |app, event| on_menu(app, event.id.as_ref()))
            .build(app)?;
        Ok(Self { icon, shown: None })
    }

    /// Updates what changed since the last render.
    pub fn render(&mut self, app: &AppHandle, model: &TrayModel) -> tauri::Result<()> {
        let old = self.shown.as_ref();
        if old.map(|o| o.state) != Some(model.state) {
            self.icon.set_icon(Some(icon(model.state)))?;
        }
        if old.map(|o| (&o.lines, o.paused)) != Some((&model.lines, model.paused)) {
            self.icon.set_menu(Some(menu(app, model)?))?;
        }
        if old.map(|o| &o.tooltip) != Some(&model.tooltip) {
            // Not shown by Linux appindicator (it has no tooltips); the menu carries the same.
            self.icon.set_tooltip(Some(&model.tooltip))?;
        }
        self.shown = Some(model.clone());
        Ok(())
    }
}

fn menu(app: &AppHandle, model: &TrayModel) -> tauri::Result<Menu<tauri::Wry>> {
    let menu = Menu::new(app)?;
    menu.append(&MenuItem::with_id(
        app,
        OPEN,
        "Open Quotabell",
        true,
        None::<&str>,
    )?)?;
    menu.append(&PredefinedMenuItem::separator(app)?)?;
    for (i, line) in model.lines.iter().enumerate() {
        // Information, not actions: disabled items render as plain text.
        menu.append(&MenuItem::with_id(
            app,
            format!("line-{i}"),
            line,
            false,
            None::<&str>,
        )?)?;
    }
    menu.append(&PredefinedMenuItem::separator(app)?)?;
    let pause = Submenu::with_items(
        app,
        "Pause notifications",
        true,
        &[
            &MenuItem::with_id(app, PAUSE_HOUR, "For 1 hour", true, None::<&str>)?,
            &MenuItem::with_id(app, PAUSE_TOMORROW, "Until tomorrow", true, None::<&str>)?,
            &MenuItem::with_id(app, RESUME, "Resume", model.paused, None::<&str>)?,
        ],
    )?;
    menu.append(&pause)?;
    menu.append(&PredefinedMenuItem::separator(app)?)?;
    menu.append(&MenuItem::with_id(
        app,
        QUIT,
        "Quit Quotabell",
        true,
        None::<&str>,
    )?)?;
    Ok(menu)
}
