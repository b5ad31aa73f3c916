//! Time as the engine sees it. Logic that tests must control takes a `Clock` instead of
//! calling `now()` itself.

use std::time::Instant;

pub trait Clock: Send + Sync {
    /// Wall-clock time, unix seconds.
    fn now_unix(&self) -> i64;
    /// Monotonic time, for measuring intervals.
    fn instant(&self) -> Instant;
    /// Minutes since local midnight at `unix` (quiet hours are in local time).
    fn local_minute(&self, unix: i64) -> u16;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    fn instant(&self) -> Instant {
        Instant::now()
    }

    fn local_minute(&self, unix: i64) -> u16 {
        jiff::Timestamp::from_second(unix)
            .map(|t| t.to_zoned(jiff::tz::TimeZone::system()))
            .map(|z| z.hour() as u16 * 60 + z.minute() as u16)
            .unwrap_or(0)
    }
}
