//! Call rates: write calls per minute, per API (`ApiCallRateInsight`), of management events or
//! (when a profile analyses them) data events.

use super::kind::{Facts, SeriesKind};
use super::{Attribute, InsightType};
use crate::aggregate::AggregateStats;

/// Write calls of one API.
pub struct Calls;

impl SeriesKind for Calls {
    fn insight_type(&self) -> InsightType {
        InsightType::ApiCallRateInsight
    }

    fn counts(&self, record: &Facts) -> bool {
        record.category.is_some() && record.read_only == Some(false)
    }

    fn keyed_by_error_code(&self) -> bool {
        false
    }

    fn attributes(&self) -> &'static [Attribute] {
        &[
            Attribute::UserIdentityArn,
            Attribute::UserAgent,
            Attribute::ErrorCode,
        ]
    }

    fn tally<'s>(&self, stats: &'s mut AggregateStats) -> &'s mut u64 {
        &mut stats.write_calls
    }

    fn noun(&self, _: Option<&str>, n: u64) -> String {
        if n == 1 { "call" } else { "calls" }.to_string()
    }

    fn axis_unit(&self, _: Option<&str>) -> String {
        "write calls".to_string()
    }

    fn short_unit(&self) -> &'static str {
        "calls"
    }

    fn rate_name(&self) -> &'static str {
        "API call rate"
    }
}
