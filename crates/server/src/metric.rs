//! The metrics a plan limits, and one metric's usage as the quota events report it.
//!
//! A metric's wire name (in JSON and in the `crossings` table) is declared once, in
//! `Metric::as_str`; serialising, parsing and the SQLite conversions all go through it.

use std::fmt;
use std::str::FromStr;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Serialize, Serializer};
use serde_json::{Value, json};

use crate::period;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Builds recorded in the current billing period.
    Builds,
    /// Distinct applications that ever sent a build (not per period).
    Applications,
}

/// A metric name that is none of `Metric`'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown metric {0:?}")]
pub struct UnknownMetric(pub String);

impl Metric {
    /// Every metric, in the order `/usage` and the account events list them.
    pub const ALL: [Self; 2] = [Self::Builds, Self::Applications];

    /// The name on the wire and in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Builds => "builds",
            Self::Applications => "applications",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Metric {
    type Err = UnknownMetric;

    fn from_str(name: &str) -> Result<Self, UnknownMetric> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == name)
            .ok_or_else(|| UnknownMetric(name.to_owned()))
    }
}

impl Serialize for Metric {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl ToSql for Metric {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

/// A stored name that is not a metric is an error, never a guess.
impl FromSql for Metric {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// One metric of one account: what the quota events and `/usage` report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub metric: Metric,
    pub used: i64,
    pub limit: i64,
    /// The billing period `[start, end)` the count belongs to; `None` for a metric that is not
    /// counted per period.
    pub period: Option<(i64, i64)>,
}

impl Usage {
    /// `{"metric", "used", "limit"}`, as in a list of quotas.
    pub fn quota_json(&self) -> Value {
        json!({ "metric": self.metric, "used": self.used, "limit": self.limit })
    }

    /// The quota plus, for a metric counted per period, the period: the data of the events
    /// about one metric (`quota.updated`, `quota.warning`, `quota.exceeded`).
    pub fn event_json(&self) -> Value {
        let mut data = self.quota_json();
        if let Some((start, end)) = self.period {
            data["period"] = period::json(start, end);
        }
        data
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;

    #[test]
    fn names_read_back_and_unknown_names_are_errors() {
        for m in Metric::ALL {
            assert_eq!(m.as_str().parse::<Metric>(), Ok(m));
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
        }
        assert_eq!(
            "build".parse::<Metric>(),
            Err(UnknownMetric("build".to_owned()))
        );
    }

    #[test]
    fn stored_names_round_trip_and_unknown_ones_fail() {
        let conn = Connection::open_in_memory().unwrap();
        for m in Metric::ALL {
            let back: Metric = conn.query_row("SELECT ?1", [m], |r| r.get(0)).unwrap();
            assert_eq!(back, m);
        }
        let err = conn
            .query_row("SELECT 'seats'", [], |r| r.get::<_, Metric>(0))
            .unwrap_err();
        assert!(
            err.to_string().contains("unknown metric \"seats\""),
            "{err}"
        );
    }
}
