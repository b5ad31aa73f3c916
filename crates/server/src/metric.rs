//! The metrics a plan limits, and one metric's usage as the quota events report it.
//!
//! A metric's wire name (in JSON and in the `crossings` table) is declared once, beside its
//! variant (`wire_enum!`); `Metric::ALL` lists them in the order `/usage` and the account events
//! do.

use serde_json::{Value, json};

use crate::period;
use crate::wire::wire_enum;

wire_enum! {
    /// A quota a plan limits.
    pub enum Metric("metric") {
        /// Builds recorded in the current billing period.
        Builds = "builds",
        /// Distinct applications that ever sent a build (not per period).
        Applications = "applications",
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
    use super::*;
    use crate::wire::tests::check_names;

    #[test]
    fn metric_names_read_back_and_unknown_ones_are_errors() {
        check_names(&Metric::ALL, "seats");
    }
}
