//! The forecast turned into words and decisions: the pace line of the tray, the Usage view and
//! `quotabell status`; the early warning before a limit; the runaway alert.
//!
//! Each alert is once per episode. The early warning's key names the period and an arm count,
//! the runaway's names the episode's start; `Watch` keeps those between checks and the store
//! writes it in the transaction that records the decisions, so a restart, a replay or a
//! reconnect finds the same state and decides nothing twice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::forecast::{self, DAY, HOUR, MINUTE, Pace, RunawayRule};
use crate::ipc::{NotificationKind, NotificationState};
use crate::policy::{Context, Decision, RefillNotice};
use crate::protocol::metric_label;

/// How long the pace must stay out of danger before a later danger warns again.
pub const REARM_AFTER: i64 = DAY;

/// What foresight remembers between checks, per account.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Watch {
    /// The period the early warning's state belongs to (its start, as the server wrote it).
    pub period: String,
    /// Early warnings armed this period before the current one (the key's last part).
    pub arm: u32,
    /// Since when the pace has been out of danger after a warning, while it is.
    pub safe_since: Option<i64>,
    /// When the current runaway episode began, while one lasts.
    pub runaway_since: Option<i64>,
    /// Each metric's pace as of the last new data (`period`'s): what the views show, so a
    /// snapshot reads one row instead of the period's builds.
    pub paces: BTreeMap<String, Pace>,
}

impl Watch {
    /// The stored pace of `metric`, if it belongs to the period starting at `period_start`.
    pub fn pace(&self, metric: &str, period_start: &str) -> Option<&Pace> {
        (self.period == period_start)
            .then(|| self.paces.get(metric))
            .flatten()
    }
}

/// One per-period metric as foresight reads it from the cache.
pub struct Metric<'a> {
    pub name: &'a str,
    pub used: i64,
    pub limit: i64,
    /// The period's bounds as the server wrote them and as unix seconds.
    pub period_start_text: &'a str,
    pub period_start: i64,
    pub period_end: i64,
    /// Times of the builds that counted, from at least `forecast::BASELINE_WEEKS` weeks and
    /// an hour before now (or since the oldest build the cache knows).
    pub counted: &'a [i64],
    /// The oldest build the cache knows (before it, an empty week is no history).
    pub known_since: i64,
    /// The highest use the cache saw in the period `Watch::period` names, when that is an
    /// earlier one (the period rolled since the last check).
    pub previous: Option<Peak>,
}

/// The highest use of a metric seen in a period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    pub used: i64,
    pub limit: i64,
}

impl Metric<'_> {
    pub fn pace(&self, now: i64) -> Pace {
        forecast::pace(
            &forecast::Period {
                start: self.period_start,
                end: self.period_end,
                used: self.used,
                limit: self.limit,
                counted: self.counted,
            },
            now,
        )
    }
}

/// The pace in one line, or `None` when there is nothing to say (no limit; the limit is
/// reached, which the meter says already).
pub fn pace_line(
    pace: &Pace,
    limit: i64,
    period_end: i64,
    now: i64,
    clock: &dyn Clock,
) -> Option<String> {
    match *pace {
        Pace::NoLimit | Pace::Reached => None,
        Pace::NotEnoughData { .. } => Some("Not enough history yet for a forecast".into()),
        Pace::LimitBeforeEnd { limit_at, .. } => Some(format!(
            "At this pace: limit on {}, {}",
            day(clock, limit_at),
            from_now(limit_at - now)
        )),
        Pace::WithinLimit { at_period_end, .. } => Some(format!(
            "On pace to use {at_period_end} of {limit} by {}",
            day(clock, period_end)
        )),
    }
}

/// When `pace_line` next reads differently with nothing else changing: only a limit ahead
/// counts down ("in about 5 hours"); `None` when the words stay.
pub fn pace_line_changes_at(pace: &Pace, now: i64) -> Option<i64> {
    match *pace {
        Pace::LimitBeforeEnd { limit_at, .. } => {
            from_now_changes_in(limit_at - now).map(|before| limit_at - before)
        }
        _ => None,
    }
}

/// The largest `secs' < secs` at which `from_now(secs')` differs from `from_now(secs)`.
fn from_now_changes_in(secs: i64) -> Option<i64> {
    if secs < HOUR {
        None
    } else if secs < 36 * HOUR {
        let h = (secs + HOUR / 2) / HOUR;
        Some((h * HOUR - HOUR / 2 - 1).max(HOUR - 1))
    } else {
        let d = (secs + DAY / 2) / DAY;
        Some((d * DAY - DAY / 2 - 1).max(36 * HOUR - 1))
    }
}

/// "Nov 27" in local time.
pub fn day(clock: &dyn Clock, unix: i64) -> String {
    clock.local_time(unix).strftime("%b %-d").to_string()
}

/// "in about 4 days", "in about 5 hours", "within the hour".
fn from_now(secs: i64) -> String {
    if secs < HOUR {
        "within the hour".into()
    } else if secs < 36 * HOUR {
        let h = (secs + HOUR / 2) / HOUR;
        format!("in about {h} hour{}", plural(h))
    } else {
        let d = (secs + DAY / 2) / DAY;
        format!("in about {d} day{}", plural(d))
    }
}

/// "1 build", "4 builds" (units are plural words: the server's metric names).
fn count(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("1 {}", unit.strip_suffix('s').unwrap_or(unit))
    } else {
        format!("{n} {unit}")
    }
}

fn plural(n: i64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// "5.2" below ten, whole numbers above.
fn per_day_text(per_day: f64) -> String {
    if per_day < 10.0 {
        format!("{:.1}", (per_day * 10.0).round() / 10.0)
    } else {
        format!("{}", per_day.round() as i64)
    }
}

/// The early warning and the runaway alert for `metric` as of `ctx.now_unix`; `watch` is
/// updated to go with them.
pub fn decide(
    ctx: &Context<'_>,
    clock: &dyn Clock,
    metric: &Metric<'_>,
    watch: &mut Watch,
    known: &mut dyn FnMut(&str) -> bool,
) -> Vec<Decision> {
    let mut out = Vec::new();
    if watch.period != metric.period_start_text {
        // A first check has no earlier period; a later one saw the period roll.
        if !watch.period.is_empty() {
            out.extend(refill(ctx, clock, metric, known));
        }
        *watch = Watch {
            period: metric.period_start_text.to_owned(),
            runaway_since: watch.runaway_since,
            ..Watch::default()
        };
    }
    let pace = metric.pace(ctx.now_unix);
    watch.paces.insert(metric.name.to_owned(), pace.clone());
    out.extend(early_warning(ctx, clock, metric, &pace, watch, known));
    out.extend(runaway(ctx, metric, watch, known));
    out
}

/// The notice that a new period refilled the quota, once per period; by default only after a
/// period that reached the top threshold (a refill nobody was waiting for is noise).
fn refill(
    ctx: &Context<'_>,
    clock: &dyn Clock,
    metric: &Metric<'_>,
    known: &mut dyn FnMut(&str) -> bool,
) -> Option<Decision> {
    let top = ctx.settings.thresholds.iter().copied().max().unwrap_or(100);
    let reached_top = metric.previous.is_some_and(|p| {
        p.limit > 0 && i128::from(p.used) * 100 >= i128::from(top) * i128::from(p.limit)
    });
    match ctx.settings.refill_notice {
        RefillNotice::Never => return None,
        RefillNotice::AfterTopThreshold if !reached_top => return None,
        _ => {}
    }
    if metric.limit <= 0 {
        return None;
    }
    let key = format!("refill:{}:{}", metric.name, metric.period_start_text);
    if known(&key) {
        return None;
    }
    let body = match metric.previous {
        Some(p) => format!(
            "A new period began on {}. Last period you used {} of {}.",
            day(clock, metric.period_start),
            p.used,
            p.limit
        ),
        None => format!("A new period began on {}.", day(clock, metric.period_start)),
    };
    Some(ctx.finish(Decision {
        dedupe_key: key,
        kind: NotificationKind::Refill,
        title: format!(
            "{} quota refilled: {} of {} until {}",
            metric_label(metric.name),
            metric.used,
            metric.limit,
            day(clock, metric.period_end)
        ),
        body,
        urgent: false,
        state: NotificationState::Pending,
        reason: None,
    }))
}

fn early_warning(
    ctx: &Context<'_>,
    clock: &dyn Clock,
    metric: &Metric<'_>,
    pace: &Pace,
    watch: &mut Watch,
    known: &mut dyn FnMut(&str) -> bool,
) -> Option<Decision> {
    let now = ctx.now_unix;
    let days = ctx.settings.early_warning_days?;
    let margin = i64::from(ctx.settings.early_warning_margin_hours) * HOUR;
    let danger = match *pace {
        Pace::LimitBeforeEnd { limit_at, .. } => {
            limit_at < metric.period_end - margin && limit_at - now <= i64::from(days) * DAY
        }
        _ => false,
    };
    let key = |arm: u32| format!("pace:{}:{}:{arm}", metric.name, watch.period);
    if !danger {
        if watch.safe_since.is_none() && known(&key(watch.arm)) {
            watch.safe_since = Some(now);
        }
        return None;
    }
    if known(&key(watch.arm)) {
        // Warned already: again only after a sustained stretch out of danger.
        match watch.safe_since {
            Some(since) if now - since >= REARM_AFTER => watch.arm += 1,
            _ => {
                watch.safe_since = None;
                return None;
            }
        }
    }
    watch.safe_since = None;
    let key = key(watch.arm);
    if known(&key) {
        return None;
    }
    let Pace::LimitBeforeEnd {
        per_day, limit_at, ..
    } = *pace
    else {
        return None;
    };
    let label = metric_label(metric.name);
    let left = metric.limit - metric.used;
    let days_left = (metric.period_end - now) as f64 / DAY as f64;
    let allowance = left as f64 / days_left.max(1.0 / 24.0);
    let unit = metric_label(metric.name).to_lowercase();
    let keeps = if allowance >= 1.0 {
        count(allowance.floor() as i64, &unit) + " a day"
    } else {
        count((allowance * 7.0).floor() as i64, &unit) + " a week"
    };
    let decision = Decision {
        dedupe_key: key,
        kind: NotificationKind::PaceWarning,
        title: format!("{label}: limit on {} at this pace", day(clock, limit_at)),
        body: format!(
            "At {} {unit} a day you reach {} on {} ({}), before the period ends on {}. \
             About {keeps} keeps you under {}.",
            per_day_text(per_day),
            metric.limit,
            day(clock, limit_at),
            from_now(limit_at - now),
            day(clock, metric.period_end),
            metric.limit,
        ),
        urgent: false,
        state: NotificationState::Pending,
        reason: None,
    };
    Some(ctx.finish(decision))
}

fn runaway(
    ctx: &Context<'_>,
    metric: &Metric<'_>,
    watch: &mut Watch,
    known: &mut dyn FnMut(&str) -> bool,
) -> Option<Decision> {
    let now = ctx.now_unix;
    let Some(factor) = ctx.settings.runaway_factor else {
        watch.runaway_since = None;
        return None;
    };
    let r = forecast::runaway(
        metric.counted,
        metric.known_since,
        now,
        RunawayRule {
            factor: f64::from(factor),
            min_builds: u32::from(ctx.settings.runaway_min_builds),
        },
    );
    if !r.alarming {
        watch.runaway_since = None;
        return None;
    }
    if watch.runaway_since.is_some() {
        return None;
    }
    watch.runaway_since = Some(now);
    let key = format!("runaway:{}:{now}", metric.name);
    if known(&key) {
        return None;
    }
    let label = metric_label(metric.name);
    let usual = if r.usual < 0.05 {
        "almost none usually at this time of week".to_owned()
    } else {
        format!(
            "about {} usually at this time of week",
            per_day_text(r.usual)
        )
    };
    let decision = Decision {
        dedupe_key: key,
        kind: NotificationKind::Runaway,
        title: format!("{label} are coming in unusually fast"),
        body: format!(
            "{} {} in the last {} minutes, {usual}: is something in CI looping? {} of {} used.",
            r.recent,
            metric.name,
            forecast::RUNAWAY_WINDOW / MINUTE,
            metric.used,
            metric.limit,
        ),
        urgent: false,
        state: NotificationState::Pending,
        reason: None,
    };
    Some(ctx.finish(decision))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Instant;

    use super::*;
    use crate::forecast::WEEK;
    use crate::policy::Settings;

    struct Utc;
    impl Clock for Utc {
        fn now_unix(&self) -> i64 {
            unreachable!("foresight takes its time from the context")
        }
        fn instant(&self) -> Instant {
            Instant::now()
        }
        fn utc_offset(&self, _: i64) -> i32 {
            0
        }
    }

    const NOV_1: i64 = 1_793_491_200;
    const DEC_1: i64 = NOV_1 + 30 * DAY;

    fn ctx(settings: &Settings, now: i64) -> Context<'_> {
        Context {
            settings,
            now_unix: now,
            local_minute: 12 * 60,
            catching_up: false,
            hard_limit: true,
            plan_name: "Free",
        }
    }

    fn metric(counted: &[i64], used: i64) -> Metric<'_> {
        Metric {
            name: "builds",
            used,
            limit: 100,
            period_start_text: "2026-11-01T00:00:00Z",
            period_start: NOV_1,
            period_end: DEC_1,
            counted,
            known_since: NOV_1 - 8 * WEEK,
            previous: None,
        }
    }

    /// `per_day` builds a day from Nov 1 to `to`.
    fn steady(to: i64, per_day: i64) -> Vec<i64> {
        let step = DAY / per_day;
        (0..)
            .map(|i| NOV_1 + step / 2 + i * step)
            .take_while(|&t| t < to)
            .collect()
    }

    fn check(
        settings: &Settings,
        now: i64,
        m: &Metric<'_>,
        watch: &mut Watch,
        seen: &mut HashSet<String>,
    ) -> Vec<Decision> {
        let out = decide(&ctx(settings, now), &Utc, m, watch, &mut |k| {
            seen.contains(k)
        });
        for d in &out {
            seen.insert(d.dedupe_key.clone());
        }
        out
    }

    /// The refresh time is exact: the line holds until just before it and changes at it; a
    /// line that no longer counts down names none.
    #[test]
    fn the_pace_line_names_when_it_next_changes() {
        let limit_at = NOV_1 + 20 * DAY;
        let pace = Pace::LimitBeforeEnd {
            per_day: 5.0,
            limit_at,
            at_period_end: 130,
        };
        let line = |now| pace_line(&pace, 100, DEC_1, now, &Utc);
        for now in (limit_at - 5 * DAY..limit_at + HOUR).step_by(61) {
            match pace_line_changes_at(&pace, now) {
                Some(at) => {
                    assert!(at > now, "{now}");
                    assert_eq!(line(at - 1), line(now), "held until {at}, from {now}");
                    assert_ne!(line(at), line(now), "changed at {at}, from {now}");
                }
                None => {
                    assert!(limit_at - now < HOUR, "{now}");
                    assert_eq!(line(limit_at + DAY), line(now));
                }
            }
        }
        let within = Pace::WithinLimit {
            per_day: 2.0,
            at_period_end: 62,
        };
        assert_eq!(pace_line_changes_at(&within, NOV_1), None);
    }

    #[test]
    fn the_pace_line_says_the_date_or_the_projection() {
        let now = NOV_1 + 23 * DAY;
        let line = |p: Pace| pace_line(&p, 100, DEC_1, now, &Utc);
        assert_eq!(
            line(Pace::LimitBeforeEnd {
                per_day: 5.0,
                limit_at: NOV_1 + 26 * DAY + 10 * HOUR,
                at_period_end: 130
            })
            .as_deref(),
            Some("At this pace: limit on Nov 27, in about 3 days")
        );
        assert_eq!(
            line(Pace::WithinLimit {
                per_day: 2.0,
                at_period_end: 62
            })
            .as_deref(),
            Some("On pace to use 62 of 100 by Dec 1")
        );
        assert_eq!(
            line(Pace::NotEnoughData {
                builds: 1,
                history_secs: 10
            })
            .as_deref(),
            Some("Not enough history yet for a forecast")
        );
        assert_eq!(line(Pace::Reached), None);
        assert_eq!(from_now(5 * HOUR + 10 * MINUTE), "in about 5 hours");
        assert_eq!(from_now(20 * MINUTE), "within the hour");
    }

    #[test]
    fn the_early_warning_comes_once_with_the_date_and_the_allowance() {
        let s = Settings::default();
        let mut watch = Watch::default();
        let mut seen = HashSet::new();
        // 4 a day for 20 days: 80 used on Nov 21, 20 left at 4 a day → Nov 26 00:00, five
        // days off: no warning yet (the default looks 3 days ahead).
        let now = NOV_1 + 20 * DAY;
        let b = steady(now, 4);
        assert!(check(&s, now, &metric(&b, 80), &mut watch, &mut seen).is_empty());
        // Two days later: 88 used, the limit on Nov 26, three days off.
        let now = NOV_1 + 22 * DAY;
        let b = steady(now, 4);
        let d = check(&s, now, &metric(&b, 88), &mut watch, &mut seen);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].kind, NotificationKind::PaceWarning);
        assert_eq!(d[0].dedupe_key, "pace:builds:2026-11-01T00:00:00Z:0");
        assert_eq!(d[0].title, "Builds: limit on Nov 26 at this pace");
        assert_eq!(
            d[0].body,
            "At 4.0 builds a day you reach 100 on Nov 26 (in about 3 days), before the period \
             ends on Dec 1. About 1 build a day keeps you under 100."
        );
        // The next checks, and a restart with the same state, decide nothing more.
        for h in 1..30 {
            let now = NOV_1 + 22 * DAY + h * HOUR;
            let b = steady(now, 4);
            let used = b.len() as i64;
            assert!(check(&s, now, &metric(&b, used), &mut watch, &mut seen).is_empty());
        }
    }

    #[test]
    fn the_early_warning_rearms_only_after_a_day_out_of_danger() {
        let s = Settings::default();
        let mut watch = Watch::default();
        let mut seen = HashSet::new();
        let now = NOV_1 + 22 * DAY;
        let b = steady(now, 4);
        assert_eq!(
            check(&s, now, &metric(&b, 88), &mut watch, &mut seen).len(),
            1
        );
        // The plan's limit rises (out of danger) for 6 hours, then falls back: no new warning.
        let mut big = metric(&b, 88);
        big.limit = 1000;
        assert!(check(&s, now + HOUR, &big, &mut watch, &mut seen).is_empty());
        assert!(watch.safe_since.is_some());
        assert!(check(&s, now + 7 * HOUR, &metric(&b, 88), &mut watch, &mut seen).is_empty());
        // Out of danger for a whole day, then in danger again: the second warning.
        assert!(check(&s, now + 8 * HOUR, &big, &mut watch, &mut seen).is_empty());
        let later = now + 8 * HOUR + REARM_AFTER;
        let b2 = steady(later, 4);
        let d = check(&s, later, &metric(&b2, 92), &mut watch, &mut seen);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].dedupe_key, "pace:builds:2026-11-01T00:00:00Z:1");
    }

    #[test]
    fn the_early_warning_can_be_turned_off_and_its_horizon_set() {
        let now = NOV_1 + 20 * DAY;
        let b = steady(now, 4);
        let off = Settings {
            early_warning_days: None,
            ..Settings::default()
        };
        assert!(
            check(
                &off,
                now,
                &metric(&b, 80),
                &mut Watch::default(),
                &mut HashSet::new()
            )
            .is_empty()
        );
        let week = Settings {
            early_warning_days: Some(7),
            ..Settings::default()
        };
        let d = check(
            &week,
            now,
            &metric(&b, 80),
            &mut Watch::default(),
            &mut HashSet::new(),
        );
        assert_eq!(d.len(), 1);
        // A limit projected within the margin before the period's end is no warning: the
        // period ends about when it would be reached.
        let late = Settings {
            early_warning_days: Some(30),
            early_warning_margin_hours: 24 * 6,
            ..Settings::default()
        };
        assert!(
            check(
                &late,
                now,
                &metric(&b, 80),
                &mut Watch::default(),
                &mut HashSet::new()
            )
            .is_empty()
        );
    }

    #[test]
    fn a_runaway_alerts_once_per_episode() {
        let s = Settings::default();
        let mut watch = Watch::default();
        let mut seen = HashSet::new();
        let now = NOV_1 + 10 * DAY;
        let mut b = steady(now - HOUR, 2);
        let burst: Vec<i64> = (0..20).map(|i| now - 10 * MINUTE + i * 30).collect();
        b.extend(&burst);
        let used = b.len() as i64;
        let d = check(&s, now, &metric(&b, used), &mut watch, &mut seen);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].kind, NotificationKind::Runaway);
        assert!(
            d[0].body.starts_with("20 builds in the last 15 minutes"),
            "{}",
            d[0].body
        );
        // The burst goes on: the same episode.
        b.extend((0..20).map(|i| now + i * 30));
        let used = b.len() as i64;
        assert!(
            check(
                &s,
                now + 10 * MINUTE,
                &metric(&b, used),
                &mut watch,
                &mut seen
            )
            .is_empty()
        );
        // It stops; a quiet check ends the episode; a new burst is a new one.
        assert!(check(&s, now + HOUR, &metric(&b, used), &mut watch, &mut seen).is_empty());
        assert_eq!(watch.runaway_since, None);
        let again = now + 2 * HOUR;
        b.extend((0..20).map(|i| again - 10 * MINUTE + i * 30));
        let used = b.len() as i64;
        let d = check(&s, again, &metric(&b, used), &mut watch, &mut seen);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_ne!(d[0].dedupe_key, format!("runaway:builds:{now}"));
    }

    #[test]
    fn a_roll_after_a_full_period_gives_one_refill_notice() {
        let s = Settings::default();
        let mut watch = Watch::default();
        let mut seen = HashSet::new();
        let b = steady(NOV_1 + 20 * DAY, 5);
        assert!(
            check(
                &s,
                NOV_1 + 20 * DAY,
                &metric(&b, 100),
                &mut watch,
                &mut seen
            )
            .is_empty()
        );
        // December: the cache saw November reach 100 of 100.
        let december = |previous| Metric {
            period_start_text: "2026-12-01T00:00:00Z",
            period_start: DEC_1,
            period_end: DEC_1 + 31 * DAY,
            previous,
            ..metric(&b, 0)
        };
        let full = Some(Peak {
            used: 100,
            limit: 100,
        });
        let d = check(&s, DEC_1 + HOUR, &december(full), &mut watch, &mut seen);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].kind, NotificationKind::Refill);
        assert_eq!(d[0].dedupe_key, "refill:builds:2026-12-01T00:00:00Z");
        assert_eq!(d[0].title, "Builds quota refilled: 0 of 100 until Jan 1");
        assert_eq!(
            d[0].body,
            "A new period began on Dec 1. Last period you used 100 of 100."
        );
        // Once: the next check is in the same period.
        assert!(check(&s, DEC_1 + 2 * HOUR, &december(full), &mut watch, &mut seen).is_empty());
        // The same roll decided again from an older state (a restart) is known already.
        let mut old = Watch {
            period: "2026-11-01T00:00:00Z".into(),
            ..Watch::default()
        };
        assert!(check(&s, DEC_1 + 3 * HOUR, &december(full), &mut old, &mut seen).is_empty());
    }

    #[test]
    fn a_roll_after_a_quiet_period_is_no_news_by_default() {
        let b = steady(NOV_1 + 20 * DAY, 3);
        let december = Metric {
            period_start_text: "2026-12-01T00:00:00Z",
            period_start: DEC_1,
            period_end: DEC_1 + 31 * DAY,
            previous: Some(Peak {
                used: 60,
                limit: 100,
            }),
            ..metric(&b, 0)
        };
        let november = || Watch {
            period: "2026-11-01T00:00:00Z".into(),
            ..Watch::default()
        };
        let kinds = |s: &Settings| {
            check(
                s,
                DEC_1 + HOUR,
                &december,
                &mut november(),
                &mut HashSet::new(),
            )
            .into_iter()
            .map(|d| d.kind)
            .collect::<Vec<_>>()
        };
        assert!(kinds(&Settings::default()).is_empty());
        let always = Settings {
            refill_notice: RefillNotice::Always,
            ..Settings::default()
        };
        assert_eq!(kinds(&always), vec![NotificationKind::Refill]);
        // A lower top threshold counts as the top.
        let low = Settings {
            thresholds: vec![50],
            ..Settings::default()
        };
        assert_eq!(kinds(&low), vec![NotificationKind::Refill]);
        let never = Settings {
            refill_notice: RefillNotice::Never,
            thresholds: vec![50],
            ..Settings::default()
        };
        assert!(kinds(&never).is_empty());
        // A first check ever has no period before it.
        assert!(
            check(
                &always,
                DEC_1 + HOUR,
                &december,
                &mut Watch::default(),
                &mut HashSet::new()
            )
            .is_empty()
        );
    }
}
