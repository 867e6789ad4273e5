//! A principal's write rate: the write calls of one principal (an IAM user, or a role whatever
//! its session) per minute, every API together, per account/region (`ApiCallRateInsight`, with
//! `insightDetails.seriesKind: "principalWriteRate"`). A role that suddenly does far more than
//! it ever does, even spread thinly over APIs that are each busy, rises here.

use super::kind::{Facts, SeriesKind};
use super::{Attribute, InsightType, Scope};
use crate::aggregate::AggregateStats;
use std::sync::Arc;

/// Write calls of one principal.
pub struct PrincipalWrites;

impl SeriesKind for PrincipalWrites {
    fn insight_type(&self) -> InsightType {
        InsightType::ApiCallRateInsight
    }

    fn counts(&self, record: &Facts) -> bool {
        record.category.is_some() && record.read_only == Some(false) && record.has_principal
    }

    fn keyed_by_error_code(&self) -> bool {
        false
    }

    fn scope(&self, principal: &Arc<str>) -> Option<Scope> {
        Some(Scope::PrincipalWrites(Arc::clone(principal)))
    }

    fn attributes(&self) -> &'static [Attribute] {
        &[
            Attribute::UserIdentityArn,
            Attribute::UserAgent,
            Attribute::Api,
        ]
    }

    fn tally<'s>(&self, stats: &'s mut AggregateStats) -> &'s mut u64 {
        &mut stats.principal_writes
    }

    fn noun(&self, _: Option<&str>, n: u64) -> String {
        if n == 1 { "write call" } else { "write calls" }.to_string()
    }

    fn axis_unit(&self, _: Option<&str>) -> String {
        "write calls of the principal".to_string()
    }

    fn short_unit(&self) -> &'static str {
        "calls"
    }

    fn rate_name(&self) -> &'static str {
        "principal's write call rate"
    }
}
