//! Which notifications to raise: a pure function of events, usage, settings and time.
//!
//! Every decision carries a dedupe key; the store records it in the same transaction as the
//! events that caused it, under a UNIQUE constraint, so a key is decided once per account,
//! ever: a restart, a replay or a reconnect can never raise it again.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::ipc::RefillNotice;
use crate::ipc::{NotificationKind, NotificationState};
use crate::protocol::{
    QuotaObservation, Usage, kind, limit_effect, limit_effect_sentence, metric_label, unix_seconds,
};

/// User settings that shape notifications (stored in the store's settings table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Percentages of a limit that raise a notification when reached.
    pub thresholds: Vec<u8>,
    /// Local-time minutes of the day, `[start, end)`, wrapping past midnight when start > end.
    pub quiet_hours: Option<(u16, u16)>,
    /// Urgent notifications ("new builds are refused") are shown during quiet hours and pause.
    pub urgent_through_quiet: bool,
    pub notify_rejected_builds: bool,
    /// Unix seconds until which notifications are paused.
    pub paused_until: Option<i64>,
    /// Warn when the pace reaches a limit within this many days (`None`: never).
    pub early_warning_days: Option<u8>,
    /// ...and at least this many hours before the period ends (about the end is no news).
    pub early_warning_margin_hours: u16,
    /// Alert when the last quarter hour's builds are this many times the usual (`None`: never).
    pub runaway_factor: Option<u8>,
    /// ...and at least this many (a quiet account's second build is no runaway).
    pub runaway_min_builds: u16,
    /// When a new period's refilled quota is announced.
    pub refill_notice: RefillNotice,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            thresholds: vec![80, 100],
            quiet_hours: None,
            urgent_through_quiet: true,
            notify_rejected_builds: true,
            paused_until: None,
            early_warning_days: Some(3),
            early_warning_margin_hours: 24,
            runaway_factor: Some(5),
            runaway_min_builds: 10,
            refill_notice: RefillNotice::AfterTopThreshold,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub dedupe_key: String,
    pub kind: NotificationKind,
    pub title: String,
    pub body: String,
    pub urgent: bool,
    /// `Pending`, `Held` or `Suppressed`: what becomes of it.
    pub state: NotificationState,
    pub reason: Option<String>,
}

/// Everything a decision may depend on besides the event.
pub struct Context<'a> {
    pub settings: &'a Settings,
    pub now_unix: i64,
    /// Minutes since local midnight at `now_unix` (from the clock, so tests can set it).
    pub local_minute: u16,
    /// Decisions made during catch-up are held for one digest instead of shown one by one.
    pub catching_up: bool,
    /// The account's plan has a hard limit (rejects builds at the limit).
    pub hard_limit: bool,
    pub plan_name: &'a str,
}

impl Context<'_> {
    fn quiet(&self) -> Option<&'static str> {
        if self
            .settings
            .paused_until
            .is_some_and(|until| self.now_unix < until)
        {
            return Some("paused");
        }
        let (start, end) = self.settings.quiet_hours?;
        let m = self.local_minute;
        let inside = if start <= end {
            (start..end).contains(&m)
        } else {
            m >= start || m < end
        };
        inside.then_some("quiet hours")
    }

    pub(crate) fn finish(&self, mut d: Decision) -> Decision {
        if d.state == NotificationState::Suppressed {
            return d;
        }
        if let Some(reason) = self
            .quiet()
            .filter(|_| !(d.urgent && self.settings.urgent_through_quiet))
        {
            d.state = NotificationState::Suppressed;
            d.reason = Some(reason.into());
            return d;
        }
        if self.catching_up {
            d.state = NotificationState::Held;
        }
        d
    }
}

/// An event as the policy sees it.
pub struct Observed<'a> {
    pub epoch: &'a str,
    pub id: &'a str,
    pub kind: &'a str,
    /// `None` when the payload was not valid JSON (recorded as a parse failure, never notified).
    pub data: Option<&'a Value>,
    /// The event happened before the user signed in on this machine: it is history to store,
    /// not news to announce.
    pub before_sign_in: bool,
    /// For a `build.rejected`: the run of rejections it belongs to, this one counted.
    pub rejections: Option<&'a RejectionRun>,
}

/// Rejected builds since the last accepted build or period roll.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectionRun {
    /// The server's time of the run's first rejection.
    pub first_at: String,
    pub count: u32,
}

/// After the first rejection of a run, summaries come at most this often for a day...
const REJECTION_SUMMARY_EVERY: i64 = 3600;
/// ...and then at most daily.
const REJECTION_SUMMARY_DAILY_AFTER: i64 = 86_400;

/// The dedupe key of the notice a rejection may raise in its run, by the time since the run's
/// first (returned with the key): the first at once, then the first of each later hour, after
/// a day of each day. `None` within the hour a notice already covers.
fn rejection_slot(run: &RejectionRun, at: &str) -> Option<(String, i64)> {
    if run.count <= 1 {
        return Some((format!("rejected:{}", run.first_at), 0));
    }
    let elapsed = unix_seconds(at)?.saturating_sub(unix_seconds(&run.first_at)?);
    if elapsed < REJECTION_SUMMARY_EVERY {
        None
    } else if elapsed < REJECTION_SUMMARY_DAILY_AFTER {
        Some((
            format!(
                "rejected:{}:h{}",
                run.first_at,
                elapsed / REJECTION_SUMMARY_EVERY
            ),
            elapsed,
        ))
    } else {
        Some((
            format!(
                "rejected:{}:d{}",
                run.first_at,
                elapsed / REJECTION_SUMMARY_DAILY_AFTER
            ),
            elapsed,
        ))
    }
}

/// "3 hours", "2 days".
fn elapsed_text(secs: i64) -> String {
    let (n, unit) = if secs < REJECTION_SUMMARY_DAILY_AFTER {
        (secs / REJECTION_SUMMARY_EVERY, "hour")
    } else {
        (secs / REJECTION_SUMMARY_DAILY_AFTER, "day")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// Decisions for one event. `known` answers whether a dedupe key was decided before; keys
/// decided here are fed back to it by the caller.
pub fn decide_event(
    ctx: &Context<'_>,
    ev: &Observed<'_>,
    known: &mut dyn FnMut(&str) -> bool,
) -> Vec<Decision> {
    let Some(data) = ev.data else {
        return Vec::new();
    };
    if ev.before_sign_in {
        return Vec::new();
    }
    if let Some(obs) = QuotaObservation::from_event(ev.kind, data) {
        let hard = data
            .get("hard_limit")
            .and_then(Value::as_bool)
            .unwrap_or(ctx.hard_limit);
        // A crossing the server announced: if it raises nothing, the log says why.
        let announced = data
            .get("threshold_percent")
            .and_then(Value::as_u64)
            .and_then(|t| u8::try_from(t).ok())
            .filter(|t| (1..=100).contains(t));
        let mut out = decide_quota(ctx, &obs, hard, known);
        if let Some(t) = announced {
            out.extend(unannounced(ctx, &obs, t, known));
        }
        return out;
    }
    let text = |k: &str| data.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let decision = match ev.kind {
        kind::BUILD_REJECTED if ctx.settings.notify_rejected_builds => {
            // The first rejection of a run notifies at once; while the plugin keeps trying,
            // one summary an hour, after a day one a day (keys by the server's timestamps, so
            // they are the same after a restart).
            let at = text("created_at");
            let first = RejectionRun {
                first_at: at.clone(),
                count: 1,
            };
            let run = ev.rejections.unwrap_or(&first);
            let Some((key, elapsed)) = rejection_slot(run, &at) else {
                return Vec::new();
            };
            if known(&key) {
                return Vec::new();
            }
            let metric = text("metric");
            let used = data.get("used").and_then(Value::as_i64).unwrap_or(0);
            let limit = data.get("limit").and_then(Value::as_i64).unwrap_or(0);
            let effect = limit_effect_sentence(&metric, true, "");
            if run.count <= 1 {
                Decision {
                    dedupe_key: key,
                    kind: NotificationKind::BuildRejected,
                    title: if metric == "applications" {
                        format!(
                            "Build rejected — {} would be a new application",
                            text("app")
                        )
                    } else {
                        "Build rejected — new builds are refused".into()
                    },
                    body: format!(
                        "{} {} was rejected: {metric} {used}/{limit} on the {} plan. {effect}",
                        text("app"),
                        text("version"),
                        ctx.plan_name,
                    ),
                    urgent: true,
                    state: NotificationState::Pending,
                    reason: None,
                }
            } else {
                let more = run.count - 1;
                Decision {
                    dedupe_key: key,
                    kind: NotificationKind::BuildRejected,
                    title: format!(
                        "{more} more build{} rejected in {} — {metric} {used}/{limit}",
                        if more == 1 { "" } else { "s" },
                        elapsed_text(elapsed),
                    ),
                    body: format!(
                        "The latest: {} {}. {effect} A successful build or a new period \
                         starts the count again.",
                        text("app"),
                        text("version"),
                    ),
                    urgent: false,
                    state: NotificationState::Pending,
                    reason: None,
                }
            }
        }
        kind::NOTICE => {
            let key = format!("notice:{}:{}", ev.epoch, ev.id);
            if known(&key) {
                return Vec::new();
            }
            let mut body = text("body");
            let url = text("url");
            if !url.is_empty() {
                body = format!("{body}\n{url}");
            }
            Decision {
                dedupe_key: key,
                kind: NotificationKind::Notice,
                title: text("title"),
                body,
                urgent: text("severity") == "critical",
                state: NotificationState::Pending,
                reason: None,
            }
        }
        kind::PLAN_CHANGED => {
            let key = format!("plan:{}:{}", ev.epoch, ev.id);
            if known(&key) {
                return Vec::new();
            }
            let name = data
                .pointer("/plan/name")
                .and_then(Value::as_str)
                .unwrap_or("?");
            Decision {
                dedupe_key: key,
                kind: NotificationKind::PlanChanged,
                title: format!("Plan changed to {name}"),
                body: "Your quotas follow the new plan from now on.".into(),
                urgent: false,
                state: NotificationState::Pending,
                reason: None,
            }
        }
        _ => return Vec::new(),
    };
    vec![ctx.finish(decision)]
}

/// Decisions for the quotas of a usage snapshot (a launch or a resync may find a limit
/// already crossed; the keys are the same as for the events, so nothing is raised twice).
pub fn decide_usage(
    ctx: &Context<'_>,
    usage: &Usage,
    known: &mut dyn FnMut(&str) -> bool,
) -> Vec<Decision> {
    usage
        .quotas
        .iter()
        .flat_map(|q| {
            let per_period = q.metric == "builds";
            let obs = QuotaObservation {
                metric: q.metric.clone(),
                used: q.used,
                limit: q.limit,
                period_start: per_period.then(|| usage.period.start.clone()),
                period_end: per_period.then(|| usage.period.end.clone()),
            };
            decide_quota(ctx, &obs, usage.plan.hard_limit, known)
        })
        .collect()
}

/// Why a crossing of a period that has ended is not shown.
pub const PERIOD_ENDED: &str = "the period it belongs to has ended";

/// The dedupe key of a crossing of `threshold` percent.
fn quota_key(obs: &QuotaObservation, threshold: u8) -> String {
    let period = obs.period_start.as_deref().unwrap_or("total");
    format!("quota:{}:{period}:{}:{threshold}", obs.metric, obs.limit)
}

/// The record of a crossing the server announced at a threshold the user does not have: it
/// raises nothing, and the log says why (once, suppressed).
fn unannounced(
    ctx: &Context<'_>,
    obs: &QuotaObservation,
    threshold: u8,
    known: &mut dyn FnMut(&str) -> bool,
) -> Option<Decision> {
    let label = metric_label(&obs.metric);
    if ctx.settings.thresholds.contains(&threshold) {
        return None;
    }
    let list: Vec<String> = ctx
        .settings
        .thresholds
        .iter()
        .map(|t| format!("{t}%"))
        .collect();
    let key = format!("skipped:{}", quota_key(obs, threshold));
    let reason = format!(
        "{threshold}% is not one of your thresholds ({})",
        list.join(", ")
    );
    if known(&key) {
        return None;
    }
    Some(Decision {
        dedupe_key: key,
        kind: NotificationKind::Quota,
        title: format!("{label} at {threshold}%"),
        body: format!("{} of {} {} used.", obs.used, obs.limit, obs.metric),
        urgent: false,
        state: NotificationState::Suppressed,
        reason: Some(reason),
    })
}

/// The highest configured threshold newly reached raises one notification; lower ones reached
/// in the same step are recorded as suppressed, so a jump from 70% to 130% is one message.
fn decide_quota(
    ctx: &Context<'_>,
    obs: &QuotaObservation,
    hard_limit: bool,
    known: &mut dyn FnMut(&str) -> bool,
) -> Vec<Decision> {
    if obs.limit <= 0 {
        return Vec::new();
    }
    let mut thresholds = ctx.settings.thresholds.clone();
    thresholds.sort_unstable();
    thresholds.dedup();
    let mut fresh: Vec<(u8, String)> = thresholds
        .into_iter()
        // In i128: server numbers near i64::MAX must not overflow (a panic in debug builds).
        .filter(|t| i128::from(obs.used) * 100 >= i128::from(*t) * i128::from(obs.limit))
        .map(|t| (t, quota_key(obs, t)))
        .filter(|(_, key)| !known(key))
        .collect();
    let Some((top, top_key)) = fresh.pop() else {
        return Vec::new();
    };
    let mut out: Vec<Decision> = fresh
        .into_iter()
        .map(|(t, key)| Decision {
            dedupe_key: key,
            kind: NotificationKind::Quota,
            title: format!("{} at {t}%", metric_label(&obs.metric)),
            body: String::new(),
            urgent: false,
            state: NotificationState::Suppressed,
            reason: Some("a higher threshold was reached at the same time".into()),
        })
        .collect();
    let decision = quota_decision(ctx, obs, top, top_key, hard_limit);
    // Old news: a crossing of a period that has ended (seen late, by a catch-up after the app
    // was off across the roll) is recorded, not announced.
    let ended = obs
        .period_end
        .as_deref()
        .and_then(unix_seconds)
        .is_some_and(|end| end <= ctx.now_unix);
    out.push(if ended {
        Decision {
            state: NotificationState::Suppressed,
            reason: Some(PERIOD_ENDED.into()),
            ..decision
        }
    } else {
        ctx.finish(decision)
    });
    out
}

fn quota_decision(
    ctx: &Context<'_>,
    obs: &QuotaObservation,
    threshold: u8,
    key: String,
    hard_limit: bool,
) -> Decision {
    let what = metric_label(&obs.metric);
    let until = obs
        .period_end
        .as_deref()
        .map(|e| format!(" until {}", e.get(..10).unwrap_or(e)))
        .unwrap_or_default();
    let usage = format!("{} of {} {} used", obs.used, obs.limit, obs.metric);
    let effect = limit_effect_sentence(&obs.metric, hard_limit, &until);
    let (title, body, urgent) = if threshold < 100 {
        (
            format!("{what} at {threshold}% of your {} plan", ctx.plan_name),
            format!(
                "{usage}{}.",
                if until.is_empty() {
                    String::new()
                } else {
                    format!(" this period ({})", until.trim())
                }
            ),
            false,
        )
    } else if hard_limit {
        (
            format!(
                "{what} limit reached — {}",
                limit_effect(&obs.metric, hard_limit)
            ),
            format!("{usage} on the {} plan. {effect}", ctx.plan_name),
            true,
        )
    } else {
        (
            format!(
                "{what} over the {} plan limit — overage is charged",
                ctx.plan_name
            ),
            format!("{usage}. {effect}"),
            false,
        )
    };
    Decision {
        dedupe_key: key,
        kind: NotificationKind::Quota,
        title,
        body,
        urgent,
        state: NotificationState::Pending,
        reason: None,
    }
}

/// A held notification, as the digest needs it.
#[derive(Debug, Clone)]
pub struct Held {
    pub title: String,
    pub urgent: bool,
}

/// One notification for everything held during a catch-up.
pub fn digest(
    held: &[Held],
    builds_while_away: u64,
    usage: Option<&Usage>,
    first_key: &str,
) -> Decision {
    let mut parts = Vec::new();
    if builds_while_away > 0 {
        parts.push(format!(
            "{builds_while_away} build{}",
            if builds_while_away == 1 { "" } else { "s" }
        ));
    }
    if let Some(u) = usage {
        for q in &u.quotas {
            let state = if q.limit > 0 && q.used > q.limit {
                " — over limit"
            } else if q.limit > 0 && q.used >= q.limit {
                " — at limit"
            } else {
                ""
            };
            parts.push(format!("{} {}/{}{state}", q.metric, q.used, q.limit));
        }
    }
    let mut body = format!("While you were away: {}", parts.join("; "));
    // With one update its title is the summary; with several each is listed once.
    // Each distinct title once, at most eight lines: a long absence must not make a wall of
    // text (thirty minutes of rejections are one line, not thirty).
    if held.len() > 1 {
        let mut titles: Vec<&str> = Vec::new();
        for h in held {
            if !titles.contains(&h.title.as_str()) {
                titles.push(&h.title);
            }
        }
        for t in titles.iter().take(8) {
            body.push_str("\n• ");
            body.push_str(t);
        }
        if titles.len() > 8 {
            body.push_str(&format!("\n• and {} more", titles.len() - 8));
        }
    }
    Decision {
        dedupe_key: format!("digest:{first_key}"),
        kind: NotificationKind::Digest,
        title: if held.len() == 1 {
            held[0].title.clone()
        } else {
            format!("{} updates while you were away", held.len())
        },
        body,
        urgent: held.iter().any(|h| h.urgent),
        state: NotificationState::Pending,
        reason: None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::json;

    use super::*;

    fn ctx(settings: &Settings) -> Context<'_> {
        Context {
            settings,
            now_unix: 1_000_000,
            local_minute: 12 * 60,
            catching_up: false,
            hard_limit: true,
            plan_name: "Free",
        }
    }

    fn run(
        ctx: &Context<'_>,
        seen: &mut HashSet<String>,
        id: &str,
        kind: &str,
        data: Value,
    ) -> Vec<Decision> {
        let ev = Observed {
            epoch: "e",
            id,
            kind,
            data: Some(&data),
            before_sign_in: false,
            rejections: None,
        };
        let out = decide_event(ctx, &ev, &mut |k| seen.contains(k));
        for d in &out {
            seen.insert(d.dedupe_key.clone());
        }
        out
    }

    fn quota(used: i64) -> Value {
        json!({"metric": "builds", "used": used, "limit": 100, "period": {"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}})
    }

    #[test]
    fn each_threshold_once() {
        let s = Settings::default();
        let c = ctx(&s);
        let mut seen = HashSet::new();
        assert!(run(&c, &mut seen, "1", kind::QUOTA_UPDATED, quota(79)).is_empty());
        let d = run(&c, &mut seen, "2", kind::QUOTA_UPDATED, quota(80));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].state, NotificationState::Pending);
        assert!(d[0].title.contains("80%"), "{}", d[0].title);
        assert!(
            run(&c, &mut seen, "3", kind::QUOTA_WARNING, quota(80)).is_empty(),
            "same crossing"
        );
        assert!(
            run(&c, &mut seen, "4", kind::QUOTA_UPDATED, quota(90)).is_empty(),
            "90 not configured"
        );
        let d = run(&c, &mut seen, "5", kind::QUOTA_EXCEEDED, quota(100));
        assert!(d[0].urgent && d[0].title == "Builds limit reached — new builds are refused");
        assert!(run(&c, &mut seen, "6", kind::QUOTA_UPDATED, quota(100)).is_empty());
    }

    #[test]
    fn a_notification_names_the_metric_as_the_meter_does() {
        let s = Settings::default();
        let mut seen = HashSet::new();
        let data = json!({"metric": "build_minutes", "used": 80, "limit": 100});
        let d = run(&ctx(&s), &mut seen, "1", kind::QUOTA_UPDATED, data);
        assert_eq!(d.len(), 1);
        let label = crate::dashboard::meter("build_minutes", 80, 100, true).label;
        assert_eq!(label, "Build minutes");
        assert!(
            d[0].title.starts_with(&format!("{label} at 80%")),
            "{}",
            d[0].title
        );
    }

    #[test]
    fn a_jump_raises_only_the_highest() {
        let s = Settings::default();
        let mut seen = HashSet::new();
        let d = run(&ctx(&s), &mut seen, "1", kind::QUOTA_UPDATED, quota(130));
        let states: Vec<_> = d.iter().map(|d| d.state).collect();
        assert_eq!(
            states,
            [NotificationState::Suppressed, NotificationState::Pending]
        );
    }

    #[test]
    fn quiet_hours_pause_and_urgent() {
        let s = Settings {
            quiet_hours: Some((22 * 60, 7 * 60)),
            ..Settings::default()
        };
        let mut c = ctx(&s);
        c.local_minute = 23 * 60;
        let mut seen = HashSet::new();
        let d = run(&c, &mut seen, "1", kind::QUOTA_UPDATED, quota(80));
        assert_eq!(
            (d[0].state, d[0].reason.as_deref()),
            (NotificationState::Suppressed, Some("quiet hours"))
        );
        let d = run(&c, &mut seen, "2", kind::QUOTA_UPDATED, quota(100));
        assert_eq!(
            d[0].state,
            NotificationState::Pending,
            "urgent passes quiet hours by default"
        );
        c.local_minute = 7 * 60;
        let d = run(
            &c,
            &mut seen,
            "3",
            kind::NOTICE,
            json!({"title": "t", "body": "b", "severity": "info"}),
        );
        assert_eq!(
            d[0].state,
            NotificationState::Pending,
            "quiet hours are over at 07:00"
        );

        let s = Settings {
            paused_until: Some(2_000_000),
            urgent_through_quiet: false,
            ..Settings::default()
        };
        let c = ctx(&s);
        let d = run(
            &c,
            &mut HashSet::new(),
            "1",
            kind::QUOTA_UPDATED,
            quota(100),
        );
        let last = d.last().unwrap();
        assert_eq!(
            (last.state, last.reason.as_deref()),
            (NotificationState::Suppressed, Some("paused"))
        );
    }

    /// A rejection at `at`, the `count`th of a run that began at `first`.
    fn rejected(
        ctx: &Context<'_>,
        seen: &mut HashSet<String>,
        metric: &str,
        first: &str,
        count: u32,
        at: &str,
    ) -> Vec<Decision> {
        let data = json!({"app": "web", "version": "1", "metric": metric, "used": 3, "limit": 3, "created_at": at});
        let run = RejectionRun {
            first_at: first.into(),
            count,
        };
        let ev = Observed {
            epoch: "e",
            id: "1",
            kind: kind::BUILD_REJECTED,
            data: Some(&data),
            before_sign_in: false,
            rejections: Some(&run),
        };
        let out = decide_event(ctx, &ev, &mut |k| seen.contains(k));
        for d in &out {
            seen.insert(d.dedupe_key.clone());
        }
        out
    }

    #[test]
    fn an_announced_threshold_the_user_lacks_says_why_once() {
        let s = Settings::default();
        let c = ctx(&s);
        let mut seen = HashSet::new();
        let announced = |t: u8, used: i64| {
            let mut q = quota(used);
            q["threshold_percent"] = json!(t);
            q
        };
        // The server's 90% is not one of the user's thresholds (80, 100).
        let d = run(&c, &mut seen, "1", kind::QUOTA_WARNING, announced(90, 90));
        let skipped = d
            .iter()
            .find(|d| d.dedupe_key.starts_with("skipped:"))
            .unwrap();
        assert_eq!(skipped.state, NotificationState::Suppressed);
        assert_eq!(
            skipped.reason.as_deref(),
            Some("90% is not one of your thresholds (80%, 100%)")
        );
        assert_eq!(skipped.title, "Builds at 90%");
        // The 80% announced: one of the user's; a second 90% announcement: recorded already.
        let d = run(&c, &mut seen, "2", kind::QUOTA_WARNING, announced(80, 90));
        assert!(d.is_empty(), "{d:?}");
        assert!(run(&c, &mut seen, "4", kind::QUOTA_WARNING, announced(90, 90)).is_empty());
    }

    #[test]
    fn a_crossing_of_an_ended_period_is_recorded_not_shown() {
        let s = Settings::default();
        let mut c = ctx(&s);
        // After the period's end (2026-12-01).
        c.now_unix = 1_796_083_200 + 60;
        let d = run(
            &c,
            &mut HashSet::new(),
            "1",
            kind::QUOTA_UPDATED,
            quota(100),
        );
        let top = d.last().unwrap();
        assert_eq!(top.state, NotificationState::Suppressed);
        assert_eq!(top.reason.as_deref(), Some(PERIOD_ENDED));
    }

    #[test]
    fn rejections_back_off_to_hourly_then_daily_summaries() {
        let s = Settings::default();
        let mut c = ctx(&s);
        let mut seen = HashSet::new();
        let first = "2026-11-23T10:02:00Z";
        let d = rejected(&c, &mut seen, "applications", first, 1, first);
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0].title,
            "Build rejected — web would be a new application"
        );
        assert!(d[0].urgent);
        assert!(
            d[0].body.ends_with(
                "Builds of new applications are refused; builds of the applications you have go on."
            ),
            "{}",
            d[0].body
        );
        // A rejection a minute for the rest of the hour: nothing.
        for m in 1..60 {
            let at = format!("2026-11-23T10:{:02}:00Z", (2 + m) % 60);
            let at = if 2 + m >= 60 {
                at.replace("T10", "T11")
            } else {
                at
            };
            assert!(
                rejected(&c, &mut seen, "applications", first, 1 + m, &at).is_empty(),
                "{at}"
            );
        }
        // The first of the next hour: one summary; the rest of that hour nothing.
        let d = rejected(
            &c,
            &mut seen,
            "applications",
            first,
            61,
            "2026-11-23T11:02:00Z",
        );
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0].title,
            "60 more builds rejected in 1 hour — applications 3/3"
        );
        assert!(!d[0].urgent);
        assert!(
            rejected(
                &c,
                &mut seen,
                "applications",
                first,
                62,
                "2026-11-23T11:30:00Z"
            )
            .is_empty()
        );
        // After a day, one a day.
        let d = rejected(&c, &mut seen, "builds", first, 2000, "2026-11-24T10:03:00Z");
        assert_eq!(d[0].dedupe_key, format!("rejected:{first}:d1"));
        assert_eq!(
            d[0].title,
            "1999 more builds rejected in 1 day — builds 3/3"
        );
        assert!(rejected(&c, &mut seen, "builds", first, 2001, "2026-11-24T22:00:00Z").is_empty());
        // A new run (after an accepted build) notifies at once, about builds this time;
        // during a catch-up it is held for the digest.
        c.catching_up = true;
        let again = "2026-11-25T09:00:00Z";
        let d = rejected(&c, &mut seen, "builds", again, 1, again);
        assert_eq!(d[0].title, "Build rejected — new builds are refused");
        assert_eq!(d[0].state, NotificationState::Held);
        let none = Observed {
            epoch: "e",
            id: "4",
            kind: kind::NOTICE,
            data: None,
            before_sign_in: false,
            rejections: None,
        };
        assert!(
            decide_event(&c, &none, &mut |_| false).is_empty(),
            "unparsable payloads raise nothing"
        );
    }

    #[test]
    fn huge_numbers_from_the_server_do_not_overflow() {
        let s = Settings::default();
        let mut seen = HashSet::new();
        let data = json!({"metric": "builds", "used": i64::MAX, "limit": i64::MAX - 1});
        let d = run(&ctx(&s), &mut seen, "1", kind::QUOTA_UPDATED, data);
        assert_eq!(d.last().map(|d| d.state), Some(NotificationState::Pending));
        let data = json!({"metric": "builds", "used": 1, "limit": i64::MAX});
        assert!(run(&ctx(&s), &mut seen, "2", kind::QUOTA_UPDATED, data).is_empty());
    }

    #[test]
    fn history_before_sign_in_is_not_announced() {
        let s = Settings::default();
        let data = quota(100);
        let ev = Observed {
            epoch: "e",
            id: "1",
            kind: kind::QUOTA_EXCEEDED,
            data: Some(&data),
            before_sign_in: true,
            rejections: None,
        };
        assert!(decide_event(&ctx(&s), &ev, &mut |_| false).is_empty());
    }

    #[test]
    fn digest_summarises() {
        let held = [
            Held {
                title: "Builds at 80%".into(),
                urgent: false,
            },
            Held {
                title: "Builds limit reached".into(),
                urgent: true,
            },
        ];
        let usage: Usage = serde_json::from_value(json!({
            "period": {"start": "a", "end": "b"}, "plan": {"id": "free", "name": "Free", "hard_limit": true},
            "quotas": [{"metric": "builds", "used": 130, "limit": 100}], "last_event_id": "9", "stream_epoch": "x"
        })).unwrap();
        let d = digest(&held, 12, Some(&usage), "e:1");
        assert!(
            d.body
                .starts_with("While you were away: 12 builds; builds 130/100 — over limit"),
            "{}",
            d.body
        );
        assert!(d.urgent);

        let many: Vec<Held> = (0..30)
            .map(|i| Held {
                title: if i % 2 == 0 {
                    "Build rejected".into()
                } else {
                    format!("notice {i}")
                },
                urgent: false,
            })
            .collect();
        let d = digest(&many, 0, None, "e:2");
        assert_eq!(d.body.matches("Build rejected").count(), 1, "{}", d.body);
        assert!(d.body.ends_with("• and 8 more"), "{}", d.body);
    }
}

/// Property tests ("fuzzing" on stable Rust; see `strategies.rs`).
#[cfg(test)]
mod props;
