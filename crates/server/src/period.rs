//! Billing periods: calendar months in UTC, as unix seconds.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// The same day-of-month and time one month later, clamped to the month's last day
/// (31 January → 28/29 February), so a period is always one calendar month long.
pub fn add_month(at: i64) -> i64 {
    let Ok(t) = OffsetDateTime::from_unix_timestamp(at) else {
        return at.saturating_add(31 * 86_400);
    };
    let (year, month) = match t.month() {
        Month::December => (t.year() + 1, Month::January),
        m => (t.year(), m.next()),
    };
    let day = t.day().min(time::util::days_in_month(month, year));
    let Ok(date) = Date::from_calendar_date(year, month, day) else {
        return at.saturating_add(31 * 86_400);
    };
    PrimitiveDateTime::new(date, t.time())
        .assume_utc()
        .unix_timestamp()
}

/// The calendar month containing `now`: `[first of month, first of next month)`.
pub fn month_containing(now: i64) -> (i64, i64) {
    let t = OffsetDateTime::from_unix_timestamp(now).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let start = Date::from_calendar_date(t.year(), t.month(), 1)
        .map(|d| {
            PrimitiveDateTime::new(d, Time::MIDNIGHT)
                .assume_utc()
                .unix_timestamp()
        })
        .unwrap_or(now);
    (start, add_month(start))
}

/// Advances `[start, end)` period by period until it contains `now`.
pub fn advance_to(mut start: i64, mut end: i64, now: i64) -> (i64, i64) {
    while now >= end && end > start {
        start = end;
        end = add_month(end);
    }
    (start, end)
}

/// RFC 3339 text for unix seconds, as the API shows times.
pub fn rfc3339(at: i64) -> String {
    OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A period `[start, end)` as the API shows it: `{"start", "end"}` in RFC 3339.
pub fn json(start: i64, end: i64) -> serde_json::Value {
    serde_json::json!({ "start": rfc3339(start), "end": rfc3339(end) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn ts(t: OffsetDateTime) -> i64 {
        t.unix_timestamp()
    }

    #[test]
    fn month_end_clamps() {
        assert_eq!(
            add_month(ts(datetime!(2026-01-31 10:00 UTC))),
            ts(datetime!(2026-02-28 10:00 UTC))
        );
        assert_eq!(
            add_month(ts(datetime!(2026-12-15 00:00 UTC))),
            ts(datetime!(2027-01-15 00:00 UTC))
        );
    }

    #[test]
    fn containing_month_and_advance() {
        let (s, e) = month_containing(ts(datetime!(2026-11-23 12:00 UTC)));
        assert_eq!(s, ts(datetime!(2026-11-01 00:00 UTC)));
        assert_eq!(e, ts(datetime!(2026-12-01 00:00 UTC)));
        let (s2, e2) = advance_to(s, e, ts(datetime!(2027-02-03 00:00 UTC)));
        assert_eq!(s2, ts(datetime!(2027-02-01 00:00 UTC)));
        assert_eq!(e2, ts(datetime!(2027-03-01 00:00 UTC)));
        assert_eq!(rfc3339(s), "2026-11-01T00:00:00Z");
    }
}
