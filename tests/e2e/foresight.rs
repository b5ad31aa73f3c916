//! Foresight end to end: a build plugin at a steady pace over simulated days gets one early
//! warning naming the projected date; a burst gets one runaway alert per episode; a period
//! roll after a month that hit the limit gives one refill notice, live or in the digest of an
//! engine that was stopped across it; restarts of the engine and of the backend repeat none.
//!
//! The backend and the engine share a wall clock the test moves (libfaketime, `FakeClock`).
//! Each simulated day the engine is started afresh on the new day (a laptop opened in the
//! morning), and once its start-up catch-up is done, the day's builds are posted and reach it
//! over the stream. Day `d` is at noon plus `d` minutes, so that a day's builds never share a
//! 24-hour bin of the pace with the day before, whatever the few seconds each step takes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quotabell_testbed::FakeClock;
use serde_json::Value;

use crate::support::*;

const DAY: i64 = 86_400;

fn real_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn unix(rfc3339: &str) -> i64 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp()
}

/// "Jan 20", as the engine words a date (the test bed's clock is UTC).
fn day_text(unix: i64) -> String {
    let f = time::macros::format_description!("[month repr:short] [day padding:none]");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&f)
        .unwrap()
}

/// A Free account on a backend and an engine that share `clock`, posting from the first day
/// of the backend's next period on.
struct Days<'d> {
    clock: &'d FakeClock,
    backend: Backend,
    engine: Engine<'d>,
    token: String,
    /// Noon of the next period's first day: day 0.
    first: i64,
    posted: usize,
    /// The clock's offset from real time, as last set.
    offset: i64,
}

impl<'d> Days<'d> {
    fn start(
        desktop: &'d Desktop,
        clock: &'d FakeClock,
        dir: &std::path::Path,
        email: &str,
    ) -> Self {
        // Background jobs often, so that a period ends (rolls) soon after the clock passes it.
        let backend = Backend::start_on(
            dir,
            &[
                "--keepalive-secs",
                "0.5",
                "--retry-ms",
                "100",
                "--jobs-interval-ms",
                "200",
            ],
            clock,
        );
        let token = backend.add_user(email, "free");
        let usage = http_get(&format!("{}/api/v1/usage", backend.url()), &token);
        let first = unix(usage["period"]["end"].as_str().unwrap()) + DAY / 2;
        let engine = Engine::new(desktop, &dir.join("profile"));
        engine.login(&backend.url(), &token);
        Self {
            clock,
            backend,
            engine,
            token,
            first,
            posted: 0,
            offset: 0,
        }
    }

    /// The shared clock's time now.
    fn now(&self) -> i64 {
        real_now() + self.offset
    }

    fn set_clock(&mut self, at: i64) {
        self.offset = at - real_now();
        self.clock.set_offset(self.offset).unwrap();
    }

    fn at(&self, day: i64) -> i64 {
        self.first + day * (DAY + 60)
    }

    /// Moves the clock to `at`, starts the engine afresh and waits for its start-up sync.
    fn wake_at(&mut self, at: i64) {
        self.engine.kill9();
        self.set_clock(at);
        self.engine.start_watch();
        wait_until(
            "the engine's start-up sync",
            Duration::from_secs(30),
            || self.engine.status_json()["last_synced_at"].as_i64() >= Some(at),
        );
    }

    /// Posts `n` builds and waits until the engine has them.
    fn post(&mut self, n: usize) {
        for _ in 0..n {
            let status = post_build(&self.backend.url(), &self.token, "web", self.posted).unwrap();
            assert_eq!(status, 201, "build {} refused", self.posted);
            self.posted += 1;
        }
        // The period's count as the backend has it (a roll starts it over).
        let usage = http_get(&format!("{}/api/v1/usage", self.backend.url()), &self.token);
        let want = usage["quotas"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["metric"] == "builds")
            .unwrap()["used"]
            .as_i64();
        wait_until("the engine has the builds", Duration::from_secs(30), || {
            builds_used(&self.engine) == want
        });
    }

    fn day(&mut self, day: i64, builds: usize) {
        self.wake_at(self.at(day));
        self.post(builds);
    }

    /// The backend's current period (start, end) as `/usage` says.
    fn period(&self) -> (String, String) {
        let usage = http_get(&format!("{}/api/v1/usage", self.backend.url()), &self.token);
        (
            usage["period"]["start"].as_str().unwrap().to_owned(),
            usage["period"]["end"].as_str().unwrap().to_owned(),
        )
    }

    /// Moves the clock ten minutes past the current period's end and waits for the backend's
    /// jobs to roll it; returns the new period's end.
    fn roll(&mut self) -> i64 {
        let (start, end) = self.period();
        self.set_clock(unix(&end) + 600);
        wait_until("the period roll", Duration::from_secs(30), || {
            self.period().0 != start
        });
        unix(&self.period().1)
    }

    /// Ends the period while the engine runs, as on a machine that stays awake. The engine
    /// takes any clock jump for a wake from sleep and catches up, and what a catch-up finds goes
    /// into its digest; so the clock jumps to just before the end, the engine's catch-up after
    /// that jump is awaited, and the end then passes in real time.
    fn roll_live(&mut self) -> i64 {
        const LEAD: i64 = 8;
        let (start, end) = self.period();
        let before_end = unix(&end) - LEAD;
        self.set_clock(before_end);
        wait_until(
            "the engine's catch-up after the jump",
            Duration::from_secs(30),
            || self.engine.status_json()["last_synced_at"].as_i64() >= Some(before_end),
        );
        wait_until("the period roll", Duration::from_secs(30), || {
            self.period().0 != start
        });
        unix(&self.period().1)
    }

    fn decided(&self, kind: &str) -> Vec<Value> {
        self.engine
            .notifications()
            .into_iter()
            .filter(|n| n["kind"] == kind)
            .collect()
    }
}

fn builds_used(engine: &Engine<'_>) -> Option<i64> {
    engine.status_json()["meters"]
        .as_array()?
        .iter()
        .find(|m| m["metric"] == "builds")?["used"]
        .as_i64()
}

#[test]
fn a_steady_pace_gets_one_early_warning_naming_the_date() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new(&dir.path().join("clock")).unwrap();
    let desktop = Desktop::start_on(&clock);
    let mut days = Days::start(&desktop, &clock, dir.path(), "pace@example.test");
    // Five builds a day on the Free plan's 100. The warning looks three days ahead: on day 16
    // the 85th build leaves 15, three days at five a day.
    for d in 0..=18 {
        days.day(d, 5);
        if d >= 16 {
            // Shown after the builds are stored (`post` waits for those).
            wait_until("the early warning", Duration::from_secs(30), || {
                desktop.count_mentions("at this pace") >= 1
            });
        }
        let shown = desktop.count_mentions("at this pace");
        assert_eq!(
            shown,
            usize::from(d >= 16),
            "day {d}: {:#?}\n{}",
            desktop.notifications(),
            days.engine.log_tail()
        );
        if d == 2 {
            // The forecast is in `status` too.
            let status = days.engine.status_json();
            let builds = status["meters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["metric"] == "builds")
                .unwrap();
            assert_eq!(builds["pace"]["kind"], "limit_before_end", "{status}");
            assert_eq!(builds["pace"]["per_day"], 5.0, "{status}");
            let line = builds["forecast"].as_str().unwrap();
            assert!(line.starts_with("At this pace: limit on "), "{line}");
        }
    }
    let expected = day_text(days.at(16) + 3 * DAY);
    let warnings = days.decided("pace_warning");
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!(
        warnings[0]["state"], "shown",
        "shown as it came, not in a digest"
    );
    let body = warnings[0]["body"].as_str().unwrap();
    assert!(
        body.contains(&format!("you reach 100 on {expected}")),
        "{body}"
    );
    assert!(
        body.contains("About 1 build a day keeps you under 100"),
        "{body}"
    );
    let (title, daemon_body) = desktop
        .notifications()
        .into_iter()
        .find(|(t, _)| t.contains("at this pace"))
        .unwrap();
    assert_eq!(title, format!("Builds: limit on {expected} at this pace"));
    assert!(
        unescape_markup(&daemon_body).contains(&expected),
        "{daemon_body}"
    );

    // A backend restart (the stream reconnects and catches up) and one more build: still once.
    days.backend.restart();
    days.post(1);
    days.wake_at(days.at(18) + 3600);
    assert_eq!(desktop.count_mentions("at this pace"), 1);
    assert_eq!(days.decided("pace_warning").len(), 1);
}

#[test]
fn a_burst_gets_one_runaway_alert_per_episode() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new(&dir.path().join("clock")).unwrap();
    let desktop = Desktop::start_on(&clock);
    let mut days = Days::start(&desktop, &clock, dir.path(), "runaway@example.test");
    for d in 0..3 {
        days.day(d, 5);
    }
    assert_eq!(
        desktop.count_mentions("unusually fast"),
        0,
        "five a day is the usual"
    );
    // Day 3: the usual five, then a loop posts twelve more, then five more in the same
    // quarter hour: one episode, one alert.
    days.day(3, 5);
    days.post(12);
    wait_until("the runaway alert", Duration::from_secs(30), || {
        desktop.count_mentions("unusually fast") >= 1
    });
    days.post(5);
    assert_eq!(
        desktop.count_mentions("unusually fast"),
        1,
        "{:#?}\n{}",
        desktop.notifications(),
        days.engine.log_tail()
    );
    // Two hours later the engine starts again (the episode has ended: nothing in the last
    // quarter hour); one build is no runaway, a second loop is a new episode.
    days.wake_at(days.at(3) + 2 * 3600);
    days.post(1);
    assert_eq!(desktop.count_mentions("unusually fast"), 1);
    days.post(12);
    wait_until("the second runaway alert", Duration::from_secs(30), || {
        desktop.count_mentions("unusually fast") >= 2
    });
    assert_eq!(desktop.count_mentions("unusually fast"), 2);
    // A restart in the middle of it repeats nothing.
    days.wake_at(days.at(3) + 2 * 3600 + 60);
    assert_eq!(desktop.count_mentions("unusually fast"), 2);
    let alerts = days.decided("runaway");
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    assert!(
        alerts.iter().all(|a| a["state"] == "shown"
            && a["body"]
                .as_str()
                .unwrap()
                .contains("in the last 15 minutes")),
        "{alerts:#?}"
    );
    assert_eq!(
        days.decided("pace_warning").len(),
        0,
        "the pace stays five a day"
    );
}

#[test]
fn a_full_period_gets_one_refill_notice_live_and_after_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let clock = FakeClock::new(&dir.path().join("clock")).unwrap();
    let desktop = Desktop::start_on(&clock);
    let mut days = Days::start(&desktop, &clock, dir.path(), "refill@example.test");
    // A hundred builds in a day would be a runaway: not what this test is about.
    let (ok, _, err) = days
        .engine
        .run(&["settings", "--runaway-factor", "off"], None);
    assert!(ok, "{err}");
    // A month that reaches the limit, the engine running when it ends: one notice, live.
    days.day(0, 100);
    let end = days.roll_live();
    wait_until("the refill notice", Duration::from_secs(30), || {
        desktop.count_mentions("quota refilled") >= 1
    });
    let title = format!("Builds quota refilled: 0 of 100 until {}", day_text(end));
    let shown: Vec<_> = desktop
        .notifications()
        .into_iter()
        .filter(|(t, _)| t.contains("quota refilled"))
        .collect();
    assert_eq!(shown.len(), 1, "{shown:#?}");
    assert_eq!(days.decided("refill")[0]["state"], "shown");
    assert_eq!(shown[0].0, title);
    assert!(
        shown[0].1.contains("Last period you used 100 of 100"),
        "{shown:?}"
    );

    // The next month reaches the limit too, but the engine is stopped when it ends: the notice
    // comes in the digest of the catch-up, never on its own.
    days.wake_at(unix(&days.period().0) + DAY / 2);
    days.post(100);
    days.engine.kill9();
    let end = days.roll();
    let digests_before = days.decided("digest").len();
    days.wake_at(days.now());
    wait_until("the digest", Duration::from_secs(30), || {
        days.decided("digest").len() > digests_before
    });
    let refills = days.decided("refill");
    assert_eq!(refills.len(), 2, "{refills:#?}");
    assert_eq!(refills[1]["state"], "digested", "{refills:#?}");
    let title = format!("Builds quota refilled: 0 of 100 until {}", day_text(end));
    assert_eq!(refills[1]["title"], title.as_str());
    assert_eq!(
        desktop.count_mentions("quota refilled"),
        2,
        "one live notice, one digest naming it: {:#?}",
        desktop.notifications()
    );

    // Restarts repeat none of it.
    days.wake_at(days.now() + 60);
    days.backend.restart();
    days.post(1);
    assert_eq!(days.decided("refill").len(), 2);
    assert_eq!(desktop.count_mentions("quota refilled"), 2);
}
