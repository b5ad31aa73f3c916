//! Protocol v1 as the client reads it (docs/protocol.md). Unknown fields are ignored so that a
//! newer server does not break an older app.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Plan {
    pub id: String,
    pub name: String,
    pub hard_limit: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub plan: Plan,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Period {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Quota {
    pub metric: String,
    pub used: i64,
    pub limit: i64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Usage {
    pub period: Period,
    pub plan: Plan,
    pub quotas: Vec<Quota>,
    pub last_event_id: String,
    pub stream_epoch: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Build {
    pub id: i64,
    pub app: String,
    pub version: String,
    pub commit: String,
    pub overage: bool,
    pub created_at: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BuildsPage {
    pub builds: Vec<Build>,
    pub has_more: bool,
}

/// An event as `/events` returns it. On the stream the same event arrives as SSE fields.
/// `data` stays the server's text (checked to be JSON, not built into a tree): the store
/// keeps that text and parses it once, as it does the stream's `data:` lines.
#[derive(Debug, Clone, Deserialize)]
pub struct WireEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: Box<serde_json::value::RawValue>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventsPage {
    pub events: Vec<WireEvent>,
    pub has_more: bool,
    pub last_event_id: String,
    pub stream_epoch: String,
}

pub mod kind {
    pub const BUILD_ACCEPTED: &str = "build.accepted";
    pub const BUILD_REJECTED: &str = "build.rejected";
    pub const QUOTA_UPDATED: &str = "quota.updated";
    pub const QUOTA_WARNING: &str = "quota.warning";
    pub const QUOTA_EXCEEDED: &str = "quota.exceeded";
    pub const QUOTA_RESET: &str = "quota.reset";
    pub const PLAN_CHANGED: &str = "plan.changed";
    pub const NOTICE: &str = "notice";
    pub const SYNC_RESET: &str = "sync.reset";
}

/// What an event tells about a quota, if anything: used/limit of a metric in a period.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaObservation {
    pub metric: String,
    pub used: i64,
    pub limit: i64,
    /// Period start for per-period metrics, `None` for totals (applications).
    pub period_start: Option<String>,
    pub period_end: Option<String>,
}

impl QuotaObservation {
    /// Reads the quota fields that `quota.updated`, `quota.warning` and `quota.exceeded` carry.
    pub fn from_event(kind: &str, data: &Value) -> Option<Self> {
        if !matches!(
            kind,
            kind::QUOTA_UPDATED | kind::QUOTA_WARNING | kind::QUOTA_EXCEEDED
        ) {
            return None;
        }
        Some(Self {
            metric: data.get("metric")?.as_str()?.to_owned(),
            used: data.get("used")?.as_i64()?,
            limit: data.get("limit")?.as_i64()?,
            period_start: data
                .pointer("/period/start")
                .and_then(Value::as_str)
                .map(str::to_owned),
            period_end: data
                .pointer("/period/end")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }
}

/// A metric's label wherever it is shown (meters, tray lines, notification titles): "builds" →
/// "Builds", "build_minutes" → "Build minutes"; the server's names are lowercase words.
pub fn metric_label(metric: &str) -> String {
    let mut c = metric.chars();
    match c.next() {
        Some(f) => f
            .to_uppercase()
            .chain(c)
            .collect::<String>()
            .replace('_', " "),
        None => String::new(),
    }
}

/// Unix seconds of a server timestamp (RFC 3339), or `None` when it is not one.
pub fn unix_seconds(rfc3339: &str) -> Option<i64> {
    rfc3339
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second())
}

/// What a metric at its limit does to builds on a plan, in the few words of a meter and a tray
/// line: on a hard plan only what the metric counts is refused (a full applications quota
/// refuses builds of *new* applications; builds of known ones go on), on a soft plan nothing
/// is refused and the overage is charged.
pub fn limit_effect(metric: &str, hard_limit: bool) -> &'static str {
    match (metric, hard_limit) {
        (_, false) => "overage is charged",
        ("applications", true) => "builds of new applications are refused",
        (_, true) => "new builds are refused",
    }
}

/// The same as a notification's sentence, with what still works.
pub fn limit_effect_sentence(metric: &str, hard_limit: bool, until: &str) -> String {
    match (metric, hard_limit) {
        (_, false) => "Further builds are accepted and charged as overage.".into(),
        ("applications", true) => "Builds of new applications are refused; builds of the \
            applications you have go on."
            .into(),
        (_, true) if until.is_empty() => {
            "New builds are refused until the period ends or you upgrade.".into()
        }
        (_, true) => format!("New builds are refused{until} or until you upgrade."),
    }
}

/// Property tests ("fuzzing" on stable Rust; see `strategies.rs`).
#[cfg(test)]
mod props;
