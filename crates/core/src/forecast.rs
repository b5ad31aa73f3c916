//! Foresight from the cached history: when a quota will run out at the current pace, and
//! whether builds are arriving many times faster than the account's own usual rate (a loop in
//! CI burning the quota).
//!
//! Both are pure functions of build times and the time passed in: the same cache gives the
//! same answer on every run, offline too, and a test fixes the clock to the second.
//!
//! The pace is a *trimmed* mean over the last days (see `pace_per_day`): the busiest bin of
//! the window is left out, so one burst (a release day, a retried pipeline) does not move the
//! projected date by days, while a lasting change of pace moves it within a day or two.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

pub const MINUTE: i64 = 60;
pub const HOUR: i64 = 3600;
pub const DAY: i64 = 86_400;
pub const WEEK: i64 = 7 * DAY;

/// Fewer builds than this in the period and the forecast says it has too little data.
pub const MIN_BUILDS: usize = 3;
/// Less history than this in the period (since its start) and the forecast says so too.
pub const MIN_HISTORY: i64 = HOUR;
/// How far back the pace looks: a week smooths the weekday rhythm, and a change of habit
/// shows within days.
const LOOKBACK: i64 = WEEK;
/// Bins of a day once the window spans two days (a day has a rhythm of its own); bins of an
/// hour before.
const DAY_BINS_FROM: i64 = 2 * DAY;
/// The busiest bin is dropped only when at least this many remain to average.
const TRIM_FROM_BINS: i64 = 3;

/// The recent window of the runaway check.
pub const RUNAWAY_WINDOW: i64 = 15 * MINUTE;
/// How many weeks back the runaway check looks for the account's usual rate.
pub const BASELINE_WEEKS: i64 = 4;
/// Each past week contributes the builds of an hour around the same time of week.
const BASELINE_SPAN: i64 = HOUR;

/// What the pace says about one metric of the current period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[ts(export)]
pub enum Pace {
    /// The metric has no limit to reach.
    NoLimit,
    /// Too little history to project anything: fewer than `MIN_BUILDS` builds, or less than
    /// `MIN_HISTORY` of the period.
    NotEnoughData {
        builds: u32,
        #[ts(type = "number")]
        history_secs: i64,
    },
    /// The limit is already reached.
    Reached,
    /// At this pace the limit is reached before the period ends, at `limit_at`.
    LimitBeforeEnd {
        per_day: f64,
        #[ts(type = "number")]
        limit_at: i64,
        #[ts(type = "number")]
        at_period_end: i64,
    },
    /// At this pace the period ends under the limit, at `at_period_end`.
    WithinLimit {
        per_day: f64,
        #[ts(type = "number")]
        at_period_end: i64,
    },
}

impl Pace {
    /// The projected use at the period's end, when there is a projection.
    pub fn at_period_end(&self) -> Option<i64> {
        match *self {
            Self::LimitBeforeEnd { at_period_end, .. }
            | Self::WithinLimit { at_period_end, .. } => Some(at_period_end),
            _ => None,
        }
    }
}

/// One metric of the current period as the forecast needs it.
#[derive(Debug, Clone, Copy)]
pub struct Period<'a> {
    pub start: i64,
    pub end: i64,
    pub used: i64,
    pub limit: i64,
    /// Unix seconds of each build counted in this metric, in any order; only those inside
    /// `[start, now]` are read.
    pub counted: &'a [i64],
}

/// The pace of `period` as of `now`.
pub fn pace(period: &Period<'_>, now: i64) -> Pace {
    if period.limit <= 0 {
        return Pace::NoLimit;
    }
    if period.used >= period.limit {
        return Pace::Reached;
    }
    let history_secs = now.saturating_sub(period.start).max(0);
    let in_period: Vec<i64> = period
        .counted
        .iter()
        .copied()
        .filter(|&t| t >= period.start && t <= now)
        .collect();
    if in_period.len() < MIN_BUILDS || history_secs < MIN_HISTORY {
        return Pace::NotEnoughData {
            builds: in_period.len().min(u32::MAX as usize) as u32,
            history_secs,
        };
    }
    let per_day = pace_per_day(&in_period, period.start, now);
    let left = period.end.saturating_sub(now).max(0);
    // Floor: "on pace to use 62" is what the pace gives, not what it rounds up to. (Products
    // and quotients of whole numbers of days and builds stay exact in f64.)
    let more = (per_day * left as f64 / DAY as f64).floor();
    let at_period_end = period.used.saturating_add(more.min(i64::MAX as f64) as i64);
    if per_day <= 0.0 {
        return Pace::WithinLimit {
            per_day,
            at_period_end,
        };
    }
    let to_limit = ((period.limit - period.used) as f64 * DAY as f64 / per_day).ceil();
    let limit_at = now.saturating_add(to_limit.min(i64::MAX as f64) as i64);
    // To the minute: a projection has no meaningful seconds.
    let limit_at = limit_at - limit_at.rem_euclid(MINUTE);
    if limit_at < period.end {
        Pace::LimitBeforeEnd {
            per_day,
            limit_at,
            at_period_end,
        }
    } else {
        Pace::WithinLimit {
            per_day,
            at_period_end,
        }
    }
}

/// Builds a day over the window `[max(start, now - LOOKBACK), now]`, cut into bins ending at
/// `now` (a day, or an hour while the window is shorter than two days; the oldest bin is what
/// is left, so the period's first builds count too); with three bins or more the busiest (by
/// rate) is left out, its time with it. `times` are inside `[start, now]`.
fn pace_per_day(times: &[i64], start: i64, now: i64) -> f64 {
    let span = (now - start).clamp(1, LOOKBACK);
    let bin = if span >= DAY_BINS_FROM { DAY } else { HOUR };
    let bins = (span + bin - 1) / bin;
    let from = now - span;
    let mut counts = vec![0u64; bins as usize];
    for &t in times {
        if t < from || t > now {
            continue;
        }
        // The newest bin is closed at `now` (a build at exactly `now` counts).
        let i = ((now - t) / bin).min(bins - 1) as usize;
        counts[i] += 1;
    }
    let len = |i: usize| {
        if i as i64 == bins - 1 {
            span - (bins - 1) * bin
        } else {
            bin
        }
    };
    let total: u64 = counts.iter().sum();
    let (builds, secs) = if bins >= TRIM_FROM_BINS {
        // The busiest bin by rate (a short oldest bin is compared fairly); of equals, the
        // newest. Counts times lengths compare the rates exactly, in whole numbers.
        let k = (1..counts.len()).fold(0, |best, i| {
            let here = u128::from(counts[i]) * len(best) as u128;
            let there = u128::from(counts[best]) * len(i) as u128;
            if here > there { i } else { best }
        });
        (total - counts[k], span - len(k))
    } else {
        (total, span)
    };
    builds as f64 * DAY as f64 / secs.max(1) as f64
}

/// What the runaway check found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Runaway {
    /// Builds in the last `RUNAWAY_WINDOW`.
    pub recent: u32,
    /// The account's usual count in such a window at this time of week.
    pub usual: f64,
    /// Whether `recent` is at least the minimum and `factor` times `usual` (never without an
    /// hour of history before the window to say what is usual).
    pub alarming: bool,
}

/// The thresholds of the runaway check (the user's settings).
#[derive(Debug, Clone, Copy)]
pub struct RunawayRule {
    pub factor: f64,
    /// Fewer builds than this in the window never alarm (a quiet account's second build is
    /// "infinitely" faster than its usual nothing).
    pub min_builds: u32,
}

/// Compares the last `RUNAWAY_WINDOW` with the same time of week in up to `BASELINE_WEEKS`
/// earlier weeks (an hour around it, scaled to the window). Weeks before `known_since` (the
/// oldest build the cache knows) are not history and are skipped; with no such week, the
/// account's average rate since `known_since` stands in. `times` need not be sorted.
pub fn runaway(times: &[i64], known_since: i64, now: i64, rule: RunawayRule) -> Runaway {
    let count = |from: i64, to: i64| times.iter().filter(|&&t| t > from && t <= to).count();
    let recent = count(now - RUNAWAY_WINDOW, now).min(u32::MAX as usize) as u32;
    let scale = RUNAWAY_WINDOW as f64 / BASELINE_SPAN as f64;
    let mut weeks = 0u32;
    let mut builds = 0usize;
    for k in 1..=BASELINE_WEEKS {
        let centre = now - k * WEEK;
        let from = centre - BASELINE_SPAN / 2;
        if from < known_since {
            break;
        }
        weeks += 1;
        builds += count(from, from + BASELINE_SPAN);
    }
    let usual = if weeks > 0 {
        Some(builds as f64 * scale / f64::from(weeks))
    } else {
        let span = now - RUNAWAY_WINDOW - known_since;
        // Less than an hour of history before the window is no baseline: a new account's
        // first busy quarter hour is not "unusual" for it.
        (span >= HOUR).then(|| {
            count(known_since - 1, now - RUNAWAY_WINDOW) as f64 * RUNAWAY_WINDOW as f64
                / span as f64
        })
    };
    Runaway {
        recent,
        usual: usual.unwrap_or(0.0),
        alarming: usual.is_some_and(|usual| {
            recent >= rule.min_builds && f64::from(recent) >= rule.factor * usual
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-01T00:00:00Z, the start of a 30-day period.
    const NOV_1: i64 = 1_793_491_200;
    const DEC_1: i64 = NOV_1 + 30 * DAY;

    fn at(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_second()
    }

    /// `per_day` builds a day from `from` to `to`, spread evenly through each day.
    fn steady(from: i64, to: i64, per_day: i64) -> Vec<i64> {
        let step = DAY / per_day;
        (0..)
            .map(|i| from + step / 2 + i * step)
            .take_while(|&t| t < to)
            .collect()
    }

    fn period(counted: &[i64], used: i64, limit: i64) -> Period<'_> {
        Period {
            start: NOV_1,
            end: DEC_1,
            used,
            limit,
            counted,
        }
    }

    #[test]
    fn the_constants_are_the_dates_they_name() {
        assert_eq!(NOV_1, at("2026-11-01T00:00:00Z"));
        assert_eq!(DEC_1, at("2026-12-01T00:00:00Z"));
    }

    #[test]
    fn a_steady_pace_projects_the_limit_to_the_minute() {
        // 5 builds a day for 10 days: 50 of 100 used on Nov 11 at 00:00.
        let now = at("2026-11-11T00:00:00Z");
        let builds = steady(NOV_1, now, 5);
        assert_eq!(builds.len(), 50);
        let p = pace(&period(&builds, 50, 100), now);
        // 50 more at 5 a day: 10 days, Nov 21 00:00.
        assert_eq!(
            p,
            Pace::LimitBeforeEnd {
                per_day: 5.0,
                limit_at: at("2026-11-21T00:00:00Z"),
                at_period_end: 150,
            }
        );
    }

    #[test]
    fn a_steady_pace_under_the_limit_projects_the_period_end() {
        let now = at("2026-11-11T00:00:00Z");
        let builds = steady(NOV_1, now, 2);
        let p = pace(&period(&builds, 20, 100), now);
        assert_eq!(
            p,
            Pace::WithinLimit {
                per_day: 2.0,
                at_period_end: 60,
            }
        );
    }

    #[test]
    fn a_burst_does_not_move_the_projection() {
        // The steady case plus 60 builds within ten minutes on Nov 8: the busiest day is left
        // out, so the pace stays 5 a day and only the used count moves.
        let now = at("2026-11-11T00:00:00Z");
        let mut builds = steady(NOV_1, now, 5);
        let burst = at("2026-11-08T14:00:00Z");
        builds.extend((0..60).map(|i| burst + i * 10));
        let p = pace(&period(&builds, 90, 200), now);
        // 90 used, 110 left at 5 a day: 22 days → Dec 3, after the period ends.
        assert_eq!(
            p,
            Pace::WithinLimit {
                per_day: 5.0,
                at_period_end: 90 + 100,
            }
        );
        // With a limit of 150: 60 left at 5 a day, 12 days (untrimmed, 95 in the week would
        // have said about 13.6 a day and Nov 15).
        let p = pace(&period(&builds, 90, 150), now);
        let Pace::LimitBeforeEnd { limit_at, .. } = p else {
            panic!("{p:?}")
        };
        assert_eq!(limit_at, at("2026-11-23T00:00:00Z"));
    }

    #[test]
    fn a_pause_of_days_slows_the_pace() {
        // 10 a day for the first 5 days, then nothing for 5 days: the last week (Nov 4–11)
        // holds days 4 and 5 with 10 each and five empty days; the busiest (10) is left out.
        let now = at("2026-11-11T00:00:00Z");
        let builds = steady(NOV_1, at("2026-11-06T00:00:00Z"), 10);
        let p = pace(&period(&builds, 50, 100), now);
        // 10 builds over 6 days: 5/3 a day; 50 left → 30 days → after the period.
        let Pace::WithinLimit {
            per_day,
            at_period_end,
        } = p
        else {
            panic!("{p:?}")
        };
        assert!((per_day - 10.0 / 6.0).abs() < 1e-9, "{per_day}");
        // 20 days left at 10/6 a day: 33.3 more.
        assert_eq!(at_period_end, 83);
    }

    #[test]
    fn a_plan_change_mid_period_projects_against_the_new_limit() {
        let now = at("2026-11-11T00:00:00Z");
        let builds = steady(NOV_1, now, 5);
        // The limit went from 100 to 500 (an upgrade); the pace is the same.
        let p = pace(&period(&builds, 50, 500), now);
        assert_eq!(
            p,
            Pace::WithinLimit {
                per_day: 5.0,
                at_period_end: 150,
            }
        );
        // ...and down to 60 (a downgrade): 10 left at 5 a day, two days.
        let p = pace(&period(&builds, 50, 60), now);
        let Pace::LimitBeforeEnd { limit_at, .. } = p else {
            panic!("{p:?}")
        };
        assert_eq!(limit_at, at("2026-11-13T00:00:00Z"));
    }

    #[test]
    fn too_little_data_says_so() {
        let now = at("2026-11-11T00:00:00Z");
        // A period with no builds at all.
        assert_eq!(
            pace(&period(&[], 0, 100), now),
            Pace::NotEnoughData {
                builds: 0,
                history_secs: 10 * DAY
            }
        );
        // Two builds.
        let two = [now - HOUR, now - MINUTE];
        assert!(matches!(
            pace(&period(&two, 2, 100), now),
            Pace::NotEnoughData { builds: 2, .. }
        ));
        // Builds of the previous period do not count in this one.
        let before = [NOV_1 - 3, NOV_1 - 2, NOV_1 - 1];
        assert!(matches!(
            pace(&period(&before, 0, 100), now),
            Pace::NotEnoughData { builds: 0, .. }
        ));
        // Half an hour into the period, ten builds: still too little history.
        let early = NOV_1 + 30 * MINUTE;
        let ten: Vec<i64> = (0..10).map(|i| NOV_1 + i * 60).collect();
        assert_eq!(
            pace(&period(&ten, 10, 100), early),
            Pace::NotEnoughData {
                builds: 10,
                history_secs: 30 * MINUTE
            }
        );
    }

    #[test]
    fn a_reached_limit_and_no_limit_are_not_projected() {
        let now = at("2026-11-11T00:00:00Z");
        let builds = steady(NOV_1, now, 5);
        assert_eq!(pace(&period(&builds, 100, 100), now), Pace::Reached);
        assert_eq!(pace(&period(&builds, 50, 0), now), Pace::NoLimit);
    }

    #[test]
    fn hourly_bins_in_the_first_days() {
        // Three hours into the period, 4 builds an hour: hourly bins, the busiest left out.
        let now = NOV_1 + 3 * HOUR;
        let builds: Vec<i64> = (0..12).map(|i| NOV_1 + 450 + i * 900).collect();
        let p = pace(&period(&builds, 12, 100), now);
        // 4 an hour is 96 a day: 88 left → 22 hours → Nov 2 01:00.
        let Pace::LimitBeforeEnd {
            per_day, limit_at, ..
        } = p
        else {
            panic!("{p:?}")
        };
        assert_eq!(per_day, 96.0);
        assert_eq!(limit_at, at("2026-11-02T01:00:00Z"));
    }

    #[test]
    fn a_leap_february_counts_its_29th_day() {
        // 2028-02-01 .. 2028-03-01 is 29 days. 3 builds a day for 14 days: 42 of 100.
        let start = at("2028-02-01T00:00:00Z");
        let end = at("2028-03-01T00:00:00Z");
        assert_eq!(end - start, 29 * DAY);
        let now = at("2028-02-15T00:00:00Z");
        let builds = steady(start, now, 3);
        let p = pace(
            &Period {
                start,
                end,
                used: 42,
                limit: 100,
                counted: &builds,
            },
            now,
        );
        // 58 left at 3 a day: 19 days 8 hours → Mar 5 08:00, after the period: within limit,
        // 42 + 3 × 15 = 87 by Mar 1.
        assert_eq!(
            p,
            Pace::WithinLimit {
                per_day: 3.0,
                at_period_end: 87
            }
        );
        // With a limit of 80: 38 left → 12 days 16 hours → Feb 27 16:00; the 29th exists.
        let p = pace(
            &Period {
                start,
                end,
                used: 42,
                limit: 80,
                counted: &builds,
            },
            now,
        );
        let Pace::LimitBeforeEnd { limit_at, .. } = p else {
            panic!("{p:?}")
        };
        assert_eq!(limit_at, at("2028-02-27T16:00:00Z"));
        let p = pace(
            &Period {
                start,
                end,
                used: 42,
                limit: 86,
                counted: &builds,
            },
            now,
        );
        let Pace::LimitBeforeEnd { limit_at, .. } = p else {
            panic!("{p:?}")
        };
        assert_eq!(limit_at, at("2028-02-29T16:00:00Z"));
    }

    const RULE: RunawayRule = RunawayRule {
        factor: 5.0,
        min_builds: 10,
    };

    #[test]
    fn a_burst_far_above_the_usual_rate_is_a_runaway() {
        // Four weeks of 2 builds an hour around the clock, then 30 in the last 15 minutes.
        let now = at("2026-11-29T12:00:00Z");
        let since = now - 4 * WEEK - HOUR;
        let mut builds: Vec<i64> = (0..)
            .map(|i| since + i * 1800)
            .take_while(|&t| t < now - RUNAWAY_WINDOW)
            .collect();
        let calm = runaway(&builds, since, now, RULE);
        assert_eq!(calm.usual, 0.5, "2 an hour is 0.5 a quarter");
        assert!(!calm.alarming);
        builds.extend((0..30).map(|i| now - 14 * MINUTE + i * 20));
        let r = runaway(&builds, since, now, RULE);
        assert_eq!((r.recent, r.usual, r.alarming), (30, 0.5, true));
    }

    #[test]
    fn the_usual_rate_is_that_of_the_same_time_of_week() {
        // Every Monday 09:00–10:00 the account builds 60 times (a weekly release train); the
        // rest of the week nothing. 15 builds in a Monday 09:30 quarter are its usual, not a
        // runaway; the same 15 on a Sunday are.
        let monday = at("2026-11-30T09:45:00Z");
        let since = monday - 5 * WEEK;
        let mut builds = Vec::new();
        for k in 1..=4 {
            let start = monday - k * WEEK - 45 * MINUTE;
            builds.extend((0..60).map(|i| start + i * 60));
        }
        let mut usual_day = builds.clone();
        usual_day.extend((0..15).map(|i| monday - 14 * MINUTE + i * 60));
        let r = runaway(&usual_day, since, monday, RULE);
        assert_eq!(r.recent, 15);
        assert!(!r.alarming, "{r:?}");
        let sunday = monday - DAY;
        let mut odd_day = builds;
        odd_day.extend((0..15).map(|i| sunday - 14 * MINUTE + i * 60));
        let r = runaway(&odd_day, since, sunday, RULE);
        assert_eq!((r.recent, r.usual), (15, 0.0));
        assert!(r.alarming);
    }

    #[test]
    fn a_quiet_account_needs_the_minimum_count() {
        let now = at("2026-11-29T12:00:00Z");
        let nine: Vec<i64> = (0..9).map(|i| now - i * 60).collect();
        let r = runaway(&nine, now - 60 * DAY, now, RULE);
        assert_eq!((r.recent, r.alarming), (9, false));
    }

    #[test]
    fn a_new_account_compares_with_its_average_so_far() {
        // Two days old, 4 builds an hour all along: 1 a quarter is its usual.
        let now = at("2026-11-29T12:00:00Z");
        let since = now - 2 * DAY;
        let mut builds: Vec<i64> = (0..192).map(|i| since + i * 900).collect();
        let r = runaway(&builds, since, now, RULE);
        assert!((r.usual - 1.0).abs() < 0.02, "{r:?}");
        assert!(!r.alarming);
        builds.extend((0..12).map(|i| now - 10 * MINUTE + i * 30));
        let r = runaway(&builds, since, now, RULE);
        assert!(r.alarming, "{r:?}");
    }

    #[test]
    fn a_new_accounts_first_busy_quarter_hour_is_no_runaway() {
        let now = NOV_1 + 10 * DAY;
        // Thirty builds in the last ten minutes, and nothing before: no baseline yet.
        let times: Vec<i64> = (0..30).map(|i| now - 10 * MINUTE + i * 20).collect();
        let r = runaway(&times, times[0], now, RULE);
        assert_eq!(r.recent, 30);
        assert!(!r.alarming, "{r:?}");
    }

    #[test]
    fn a_short_first_bin_is_trimmed_by_its_rate() {
        // Five builds at noon on each of the first three days; two and a half days in, the
        // oldest bin is half a day long and holds five: the busiest by rate, left out.
        let times: Vec<i64> = (0..3)
            .flat_map(|d| (0..5).map(move |i| NOV_1 + 12 * HOUR + d * DAY + i))
            .collect();
        let now = NOV_1 + 60 * HOUR + 5 * MINUTE;
        let p = pace(&period(&times, 15, 100), now);
        let (Pace::LimitBeforeEnd { per_day, .. } | Pace::WithinLimit { per_day, .. }) = p else {
            panic!("{p:?}")
        };
        assert!((per_day - 5.0).abs() < 0.01, "{per_day}");
    }
}
