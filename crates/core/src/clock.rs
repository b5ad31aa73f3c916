//! Time as the engine sees it. Logic that tests must control takes a `Clock` instead of
//! calling `now()` itself.

use std::time::Instant;

pub trait Clock: Send + Sync {
    /// Wall-clock time, unix seconds.
    fn now_unix(&self) -> i64;
    /// Monotonic time, for measuring intervals.
    fn instant(&self) -> Instant;
    /// Seconds east of UTC of the local time zone at `unix`.
    fn utc_offset(&self, unix: i64) -> i32;

    /// Minutes since local midnight at `unix` (quiet hours are in local time).
    fn local_minute(&self, unix: i64) -> u16 {
        let local = unix.saturating_add(i64::from(self.utc_offset(unix)));
        (local.rem_euclid(86_400) / 60) as u16
    }

    /// The local date and time at `unix`, for dates shown to the user ("Nov 27").
    fn local_time(&self, unix: i64) -> jiff::civil::DateTime {
        let local = unix.saturating_add(i64::from(self.utc_offset(unix)));
        jiff::Timestamp::from_second(local)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .to_zoned(jiff::tz::TimeZone::UTC)
            .datetime()
    }
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    fn instant(&self) -> Instant {
        Instant::now()
    }

    fn utc_offset(&self, unix: i64) -> i32 {
        jiff::Timestamp::from_second(unix)
            .map(|t| jiff::tz::TimeZone::system().to_offset(t).seconds())
            .unwrap_or(0)
    }
}
