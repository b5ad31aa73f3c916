//! Native notifications (notify-rust over D-Bus on Linux). Server strings are escaped for the
//! body markup that notification servers interpret, so a build named `<b>x</b>` shows as typed.

use crate::store::NotificationRow;

#[derive(Debug, thiserror::Error)]
#[error("cannot show the notification: {0}")]
pub struct NotifyError(pub String);

pub trait Notifier: Send + Sync {
    fn show(&self, n: &NotificationRow) -> Result<(), NotifyError>;
}

/// Escapes text for the notification body markup (a subset of HTML).
pub fn escape_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub const APP_NAME: &str = "Quotabell";
pub const ACTION_OPEN_USAGE: &str = "open-usage";

/// The desktop's notification server. Calls block on D-Bus: run them off async threads.
/// What to do when the user picks a notification's action (or clicks it), given the account
/// the notification is about: the desktop shell opens its window on that account's usage.
pub type OnAction = std::sync::Arc<dyn Fn(i64) + Send + Sync>;

pub struct DesktopNotifier {
    icon: String,
    on_action: Option<OnAction>,
}

impl DesktopNotifier {
    pub fn new(icon: impl Into<String>) -> Self {
        Self {
            icon: icon.into(),
            on_action: None,
        }
    }

    /// Offers "Open usage" on each notification and calls `on_action` when it is picked.
    pub fn with_action(mut self, on_action: OnAction) -> Self {
        self.on_action = Some(on_action);
        self
    }
}

impl Default for DesktopNotifier {
    fn default() -> Self {
        Self::new("dialog-information")
    }
}

impl Notifier for DesktopNotifier {
    fn show(&self, n: &NotificationRow) -> Result<(), NotifyError> {
        let mut note = notify_rust::Notification::new();
        note.appname(APP_NAME)
            .summary(&n.title)
            .body(&body_for_server(&n.body))
            .icon(&self.icon);
        #[cfg(all(unix, not(target_os = "macos")))]
        {
            note.urgency(if n.urgent {
                notify_rust::Urgency::Critical
            } else {
                notify_rust::Urgency::Normal
            });
            if capabilities().iter().any(|c| c == "actions") {
                note.action(ACTION_OPEN_USAGE, "Open usage");
                // "default" is what servers send for a click on the notification itself.
                if self.on_action.is_some() {
                    note.action("default", "Open usage");
                }
            }
        }
        let handle = note.show().map_err(|e| NotifyError(e.to_string()))?;
        #[cfg(all(unix, not(target_os = "macos")))]
        if let Some(cb) = self.on_action.clone() {
            let account = n.account_id;
            // Waiting for the answer blocks until the notification closes: one short-lived
            // thread per shown notification (the policy keeps those few).
            std::thread::Builder::new()
                .name("notification-action".into())
                .spawn(move || {
                    handle.wait_for_action(|action| {
                        if action == ACTION_OPEN_USAGE || action == "default" {
                            cb(account)
                        }
                    })
                })
                .map_err(|e| NotifyError(e.to_string()))?;
        }
        #[cfg(not(all(unix, not(target_os = "macos"))))]
        drop(handle);
        Ok(())
    }
}

/// Asked once per process: a D-Bus round trip per notification would add to its latency.
#[cfg(all(unix, not(target_os = "macos")))]
fn capabilities() -> &'static [String] {
    static CAPS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    CAPS.get_or_init(|| notify_rust::get_capabilities().unwrap_or_default())
}

/// The summary is plain text by the specification; the body may be markup, so it is escaped.
fn body_for_server(body: &str) -> String {
    escape_markup(body)
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup() {
        assert_eq!(
            super::escape_markup("<img src=x onerror=alert(1)> & \"q\""),
            "&lt;img src=x onerror=alert(1)&gt; &amp; &quot;q&quot;"
        );
    }
}
