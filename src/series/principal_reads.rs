//! A principal's read rate: the read-only management calls (List, Describe, Get...) of one
//! principal per minute, every API together, per account/region (`ApiCallRateInsight`, with
//! `insightDetails.seriesKind: "principalReadRate"`). A burst far above the principal's own
//! habit is how enumeration of an account looks (reconnaissance with stolen credentials).

use super::kind::{Facts, SeriesKind};
use super::{Attribute, EventCategory, InsightType, Scope};
use crate::aggregate::AggregateStats;
use std::sync::Arc;

/// Read-only management calls of one principal.
pub struct PrincipalReads;

impl SeriesKind for PrincipalReads {
    fn insight_type(&self) -> InsightType {
        InsightType::ApiCallRateInsight
    }

    fn counts(&self, record: &Facts) -> bool {
        record.category == Some(EventCategory::Management)
            && record.read_only == Some(true)
            && record.has_principal
    }

    fn keyed_by_error_code(&self) -> bool {
        false
    }

    fn scope(&self, principal: &Arc<str>) -> Option<Scope> {
        Some(Scope::PrincipalReads(Arc::clone(principal)))
    }

    fn attributes(&self) -> &'static [Attribute] {
        &[
            Attribute::UserIdentityArn,
            Attribute::UserAgent,
            Attribute::Api,
        ]
    }

    fn tally<'s>(&self, stats: &'s mut AggregateStats) -> &'s mut u64 {
        &mut stats.principal_reads
    }

    fn noun(&self, _: Option<&str>, n: u64) -> String {
        if n == 1 { "read call" } else { "read calls" }.to_string()
    }

    fn axis_unit(&self, _: Option<&str>) -> String {
        "read calls of the principal".to_string()
    }

    fn short_unit(&self) -> &'static str {
        "calls"
    }

    fn rate_name(&self) -> &'static str {
        "principal's read call rate"
    }
}
