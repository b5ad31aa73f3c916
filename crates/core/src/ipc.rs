//! The desktop app's IPC, declared once: every type the window's TypeScript sends or receives.
//!
//! `ts-rs` writes the TypeScript twins into `ui/src/bindings/` when `cargo test -p
//! quotabell-core` runs (the `export_bindings_*` tests); `scripts/test` fails when the committed
//! files differ from what the Rust declares. Times are unix seconds (JSON numbers).

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// A view of the window. Also the payload of the `navigate` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum View {
    SignIn,
    Usage,
    Builds,
    Notifications,
    Settings,
    /// Every account at a glance (with several signed in).
    Accounts,
    /// `quotabell doctor`'s checks; the window opens here when the tray icon cannot show.
    Diagnostics,
}

/// The connection to the server as the engine last recorded it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum Connection {
    Connecting,
    /// Live over the stream.
    Connected,
    /// The stream fails; polling `/events` instead (still up to date).
    Polling,
    /// Also what an account's cache holds before its engine has said anything.
    #[default]
    Offline,
    SignedOut,
    /// The server asked clients to stop streaming (HTTP 204).
    StreamStopped,
}

impl Connection {
    /// The name stored in the cache and sent to the window (serde's name for the variant).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Polling => "polling",
            Self::Offline => "offline",
            Self::SignedOut => "signed_out",
            Self::StreamStopped => "stream_stopped",
        }
    }

    /// Whether what is shown is current: anything else gets the "offline" banner.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Connected | Self::Polling)
    }
}

/// How close a meter is to its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum Level {
    Ok,
    /// At or above 80% of the limit.
    Warning,
    /// At or above the limit.
    Over,
}

/// The tray icon's state, in order of precedence (the first that applies wins; over several
/// accounts, the least in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum TrayState {
    SignedOut,
    Offline,
    Paused,
    Over,
    Warning,
    Ok,
}

impl TrayState {
    /// The icon's file stem in `icons/tray/`.
    pub fn icon_name(self) -> &'static str {
        match self {
            Self::SignedOut => "signed-out",
            Self::Offline => "offline",
            Self::Paused => "paused",
            Self::Over => "over",
            Self::Warning => "warning",
            Self::Ok => "ok",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct AccountInfo {
    /// The local id (`--account ID`, the window's switcher).
    #[ts(type = "number")]
    pub id: i64,
    /// What the user calls the account; unique in the profile.
    pub name: String,
    pub email: String,
    /// scheme://host:port
    pub server: String,
    pub plan: String,
    /// Builds past a limit are refused (true) or billed as overage (false).
    pub hard_limit: bool,
}

/// One quota of the current period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Meter {
    /// The server's metric name (`builds`, `applications`).
    pub metric: String,
    /// Human label ("Builds").
    pub label: String,
    #[ts(type = "number")]
    pub used: i64,
    #[ts(type = "number")]
    pub limit: i64,
    /// used / limit × 100, rounded down; 0 when the limit is 0.
    pub percent: u32,
    pub level: Level,
    /// "at limit" / "over limit", when one applies.
    pub note: Option<String>,
    /// What the limit does to builds while it is reached ("new builds are refused",
    /// "builds of new applications are refused", "overage is charged").
    pub effect: Option<String>,
    /// Where the current pace leads by the period's end (per-period metrics only).
    pub pace: Option<crate::forecast::Pace>,
    /// `pace` in words ("At this pace: limit on Nov 27, in about 4 days"), as the tray and
    /// `quotabell status` say it.
    pub forecast: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct BillingPeriod {
    /// RFC 3339, from the server.
    pub start: String,
    pub end: String,
}

/// What the tray shows; the shell only renders it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct TrayModel {
    pub state: TrayState,
    /// Plain text, one line per item of `lines`, after a "Quotabell" title line.
    pub tooltip: String,
    /// Menu lines under the main action: usage per metric, then sync and pause state.
    pub lines: Vec<String>,
    pub paused: bool,
}

/// Everything the tray and the Usage view show, as of `now`. Pushed as the `snapshot` event
/// whenever the engine stores something.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Snapshot {
    /// `None` when signed out.
    pub account: Option<AccountInfo>,
    pub meters: Vec<Meter>,
    pub period: Option<BillingPeriod>,
    pub connection: Connection,
    /// Why the connection is as it is (the last error), when the engine said.
    pub connection_detail: Option<String>,
    #[ts(type = "number | null")]
    pub connection_since: Option<i64>,
    #[ts(type = "number | null")]
    pub last_synced_at: Option<i64>,
    /// `last_synced_at` relative to `now` ("2 min ago"), worded as the tray and `quotabell
    /// status` word it, so the window does not word it again.
    pub synced_ago: Option<String>,
    #[ts(type = "number | null")]
    pub paused_until: Option<i64>,
    /// History the cache is known to miss (resyncs), for a note in the Builds view.
    pub history_gaps: u32,
    /// Changes whenever the engine commits anything to the cache (a build, a refused build, a
    /// notice, a notification shown): open list views reload their visible page on a change.
    #[ts(type = "number")]
    pub revision: i64,
    /// Every account signed in, the one above included, in the order they were added: the
    /// window's switcher and its "All accounts" overview.
    pub accounts: Vec<AccountSummary>,
    /// Over all accounts.
    pub tray: TrayModel,
    #[ts(type = "number")]
    pub now: i64,
}

/// One account at a glance, for the switcher and the overview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct AccountSummary {
    pub account: AccountInfo,
    pub meters: Vec<Meter>,
    pub connection: Connection,
    /// The account's own tray state (the tray shows the worst of all).
    pub state: TrayState,
    pub synced_ago: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct UsagePoint {
    #[ts(type = "number")]
    pub at: i64,
    #[ts(type = "number")]
    pub used: i64,
}

/// One metric's cached snapshots in the current period, oldest first, for the chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct UsageSeries {
    pub metric: String,
    pub label: String,
    #[ts(type = "number")]
    pub limit: i64,
    pub points: Vec<UsagePoint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum BuildStatus {
    Accepted,
    /// Accepted past a soft limit (billed).
    Overage,
    Rejected,
}

impl BuildStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Overage => "overage",
            Self::Rejected => "rejected",
        }
    }
}

/// A page of the Builds view. Dates are `YYYY-MM-DD` (UTC), `until` inclusive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
#[serde(default)]
#[ts(export)]
pub struct BuildQuery {
    /// Matches app, version or commit (substring, case-insensitive for ASCII).
    pub search: Option<String>,
    pub app: Option<String>,
    pub status: Option<BuildStatus>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub offset: u32,
    /// At most 500.
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct BuildEntry {
    /// Stable row key (`b:ID` or `r:EPOCH:EVENT`).
    pub key: String,
    #[ts(type = "number | null")]
    pub build_id: Option<i64>,
    pub app: String,
    pub version: String,
    pub commit: String,
    pub status: BuildStatus,
    pub reason: Option<String>,
    /// RFC 3339, from the server.
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct BuildPage {
    /// Rows matching the query in all.
    pub total: u32,
    pub offset: u32,
    pub rows: Vec<BuildEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
#[serde(default)]
#[ts(export)]
pub struct PageQuery {
    pub offset: u32,
    /// At most 500.
    pub limit: u32,
    /// Which decisions to list.
    pub filter: NotificationFilter,
}

/// The Notifications view's filter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum NotificationFilter {
    #[default]
    All,
    /// Decisions that did not become a notification of their own (suppressed, held or put in
    /// a digest, failed): the ones whose reason answers "why did it not notify?".
    NotShown,
}

/// What became of a decided notification (ARCHITECTURE.md, "Decided once, ever").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum NotificationState {
    /// To be shown now.
    Pending,
    /// The call to the notification server is in flight: recorded before the call, so a row
    /// found so at start-up may have been shown already (it is shown again, counted as a
    /// possible repeat).
    Sending,
    /// Part of a catch-up: shown in the digest at the end of it.
    Held,
    Shown,
    /// Logged, never shown (quiet hours, pause, a higher threshold reached at once, coalesced).
    Suppressed,
    /// Shown as part of a digest.
    Digested,
    /// The notification server refused or did not answer; retried at the next start.
    Failed,
}

impl NotificationState {
    /// The name stored in the cache and sent to the window (serde's name for the variant).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::Held => "held",
            Self::Shown => "shown",
            Self::Suppressed => "suppressed",
            Self::Digested => "digested",
            Self::Failed => "failed",
        }
    }
}

/// What a decided notification is about: the policy's rule that raised it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum NotificationKind {
    /// A quota crossed one of the user's thresholds.
    Quota,
    BuildRejected,
    /// An operator's notice.
    Notice,
    PlanChanged,
    /// The one summary at the end of a catch-up.
    Digest,
    /// At the current pace a limit is reached before the period ends.
    PaceWarning,
    /// Builds arrive many times faster than the account's usual rate.
    Runaway,
    /// A new period began: the quota is full again.
    Refill,
}

impl NotificationKind {
    /// The name stored in the cache and sent to the window (serde's name for the variant).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quota => "quota",
            Self::BuildRejected => "build_rejected",
            Self::Notice => "notice",
            Self::PlanChanged => "plan_changed",
            Self::Digest => "digest",
            Self::PaceWarning => "pace_warning",
            Self::Runaway => "runaway",
            Self::Refill => "refill",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct NotificationEntry {
    #[ts(type = "number")]
    pub id: i64,
    #[ts(type = "number")]
    pub at: i64,
    /// `at` relative to when the page was read ("2 min ago").
    pub ago: String,
    pub kind: NotificationKind,
    pub title: String,
    pub body: String,
    pub urgent: bool,
    pub state: NotificationState,
    /// Why it was suppressed, digested or failed.
    pub reason: Option<String>,
    /// What became of it and why, in a sentence ("Not shown: quiet hours.").
    pub why: String,
}

/// Newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct NotificationPage {
    pub total: u32,
    pub offset: u32,
    pub rows: Vec<NotificationEntry>,
}

/// When a period roll is worth a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum RefillNotice {
    Never,
    /// Only after a period that reached the top threshold (otherwise a refill is no news).
    AfterTopThreshold,
    Always,
}

/// The Settings view's form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct SettingsForm {
    /// Percentages (1–100) of a limit that raise a notification.
    pub thresholds: Vec<u8>,
    /// Local time `HH:MM`, both or neither; the range wraps past midnight when start > end.
    pub quiet_start: Option<String>,
    pub quiet_end: Option<String>,
    pub urgent_through_quiet: bool,
    pub notify_rejected_builds: bool,
    pub start_at_login: bool,
    /// Warn when the pace reaches a limit within this many days (1–30); `null`: never.
    pub early_warning_days: Option<u8>,
    /// ...and at least this many hours before the period ends (0–240).
    pub early_warning_margin_hours: u16,
    /// Alert when builds come this many times faster than usual (2–100); `null`: never.
    pub runaway_factor: Option<u8>,
    /// ...and at least this many in a quarter hour (2–1000).
    pub runaway_min_builds: u16,
    pub refill_notice: RefillNotice,
}

#[derive(Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct SignInForm {
    pub server: String,
    pub token: String,
    /// What to call the account (unique in the profile); empty or absent: its email.
    #[serde(default)]
    pub name: Option<String>,
}

/// The token never reaches a log through `{:?}`.
impl std::fmt::Debug for SignInForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInForm")
            .field("server", &self.server)
            .field("name", &self.name)
            .field("token", &"[redacted]")
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum PauseChoice {
    OneHour,
    UntilTomorrow,
    Resume,
}

/// What a failed call returns. The UI branches on `code`, shows `message`, and puts it next to
/// `field` when there is one; it never parses `message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS, thiserror::Error)]
#[error("{message}")]
#[ts(export)]
pub struct IpcError {
    pub code: ErrorCode,
    pub message: String,
    /// The form field at fault (`server`, `token`, `thresholds`, `quiet_start`, …).
    pub field: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum ErrorCode {
    /// A field is not valid; see `field`.
    Invalid,
    /// The server refused the token.
    Unauthorized,
    /// The server could not be reached or failed.
    Unreachable,
    /// The OS keychain refused or is missing.
    Keychain,
    /// The local cache could not be read or written.
    Storage,
    NotSignedIn,
    /// Another Quotabell runs the engine of this profile.
    Busy,
    Internal,
}

impl IpcError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::Invalid,
            message: message.into(),
            field: Some(field.to_owned()),
        }
    }
}

/// A call from the window to the process that runs the engine: the window's one command
/// (`call`) takes one, its process relays it as a JSON line (see ARCHITECTURE.md, "Two
/// processes") and the companion answers it. The tag is what the UI's reply map
/// (`ui/src/ipc.ts`, `Replies`) is keyed by, so a call without a reply type there fails the
/// UI's type check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "call", content = "args", rename_all = "snake_case")]
#[ts(export)]
pub enum Call {
    Snapshot,
    UsageHistory,
    Builds(BuildQuery),
    BuildApps,
    Notifications(PageQuery),
    Settings,
    SaveSettings(SettingsForm),
    /// Adds an account (or replaces the token of one already signed in).
    SignIn(SignInForm),
    SignOut {
        #[ts(type = "number")]
        account: i64,
    },
    Pause(PauseChoice),
    /// Which account the views show.
    SelectAccount {
        #[ts(type = "number")]
        account: i64,
    },
    /// `quotabell doctor`'s checks, for Settings → Diagnostics.
    Diagnose,
}

impl Call {
    /// The call's tag (`builds`), as serde writes it, for traces: read from the serialized
    /// form so it cannot drift from the wire name, and without the arguments (a token).
    pub fn name(&self) -> String {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut o)) => match o.remove("call") {
                Some(serde_json::Value::String(tag)) => tag,
                _ => String::new(),
            },
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_named_by_its_wire_tag() {
        assert_eq!(Call::UsageHistory.name(), "usage_history");
        assert_eq!(Call::Builds(BuildQuery::default()).name(), "builds");
        let sign_in = Call::SignIn(SignInForm {
            server: "http://127.0.0.1:1".into(),
            token: "qb_secret".into(),
            name: None,
        });
        assert_eq!(sign_in.name(), "sign_in");
        assert!(!format!("{sign_in:?}").contains("qb_secret"));
    }
}
