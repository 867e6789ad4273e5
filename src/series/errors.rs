//! Error rates: calls (read or write) per minute that carry one `errorCode`, per API and code
//! (`ApiErrorRateInsight`), of management events or (when a profile analyses them) data events.

use super::kind::{Facts, SeriesKind};
use super::{Attribute, InsightType};
use crate::aggregate::AggregateStats;

/// Calls of one API that failed with one error code.
pub struct Errors;

impl SeriesKind for Errors {
    fn insight_type(&self) -> InsightType {
        InsightType::ApiErrorRateInsight
    }

    fn counts(&self, record: &Facts) -> bool {
        record.category.is_some() && record.has_error
    }

    fn keyed_by_error_code(&self) -> bool {
        true
    }

    fn attributes(&self) -> &'static [Attribute] {
        &[Attribute::UserIdentityArn, Attribute::UserAgent]
    }

    fn tally<'s>(&self, stats: &'s mut AggregateStats) -> &'s mut u64 {
        &mut stats.errors
    }

    fn noun(&self, detail: Option<&str>, n: u64) -> String {
        let plural = if n == 1 { "" } else { "s" };
        match detail {
            Some(code) => format!("{code} error{plural}"),
            None => format!("error{plural}"),
        }
    }

    fn axis_unit(&self, detail: Option<&str>) -> String {
        match detail {
            Some(code) => format!("{code} errors"),
            None => "errors".to_string(),
        }
    }

    fn short_unit(&self) -> &'static str {
        "errors"
    }

    fn rate_name(&self) -> &'static str {
        "API error rate"
    }
}
