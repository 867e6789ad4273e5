//! What a series kind is, in one place: which records count towards it, what its key holds
//! beside the API, which attributes its Insights break calls down by, and which Insight type it
//! produces. The aggregator counts every kind through this trait; adding a kind is one file
//! beside [`calls`](super::calls), [`errors`](super::errors),
//! [`principal_writes`](super::principal_writes) and [`principal_reads`](super::principal_reads),
//! and one line in [`KINDS`].

use std::sync::Arc;

use super::{Attribute, EventCategory, InsightType, Scope, SeriesKey};
use crate::aggregate::AggregateStats;

/// What a record says that decides the kinds it counts towards.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    /// The record's event category, when it is one whose calls are counted (management or
    /// data); which categories a run analyses is decided before (`ingest.event_categories`).
    pub category: Option<EventCategory>,
    /// `readOnly`, when the record has it.
    pub read_only: Option<bool>,
    /// Whether the record carries an `errorCode`.
    pub has_error: bool,
    /// Whether the record names its caller (`userIdentity.arn`): per-principal kinds count
    /// only such records (an AWS service's own calls have none).
    pub has_principal: bool,
}

/// A kind of series.
pub trait SeriesKind: Sync {
    /// The Insight type its Insights are written as.
    fn insight_type(&self) -> InsightType;
    /// Whether a record counts towards it.
    fn counts(&self, record: &Facts) -> bool;
    /// Whether its key holds the record's `errorCode` beside the API (one series per code).
    fn keyed_by_error_code(&self) -> bool;
    /// For a per-principal kind, the scope of the series of `principal` (the caller's ARN as
    /// [`super::principal_of`] gives it); `None` for a kind whose series are one API's.
    fn scope(&self, _principal: &Arc<str>) -> Option<Scope> {
        None
    }
    /// The attributes its Insights report, in AWS's order (each counted call adds one value to
    /// each; `errorCode` is `"null"` for a call without one).
    fn attributes(&self) -> &'static [Attribute];
    /// Its counter in a run's totals.
    fn tally<'s>(&self, stats: &'s mut AggregateStats) -> &'s mut u64;

    /// What one of its series counts, for a sentence: "call(s)", "AccessDenied error(s)";
    /// `detail` is the key's error code.
    fn noun(&self, detail: Option<&str>, n: u64) -> String;
    /// What its series count, for an axis: "write calls", "AccessDenied errors".
    fn axis_unit(&self, detail: Option<&str>) -> String;
    /// What it counts, in a word: "calls", "errors".
    fn short_unit(&self) -> &'static str;
    /// What its Insights are about: "API call rate", "API error rate".
    fn rate_name(&self) -> &'static str;
}

/// Every kind, in the order a record's calls are counted (and series ids given).
pub static KINDS: [&dyn SeriesKind; 4] = [
    &super::calls::Calls,
    &super::errors::Errors,
    &super::principal_writes::PrincipalWrites,
    &super::principal_reads::PrincipalReads,
];

/// The kinds AWS Insights has (call rates and error rates per API), as a bit set over
/// [`KINDS`]: what a run counts unless its profile turns on the per-principal kinds.
pub const API_KINDS: u8 = 0b0011;
/// A principal's write calls ([`super::principal_writes`]), as a bit over [`KINDS`].
pub const PRINCIPAL_WRITES: u8 = 0b0100;
/// A principal's read calls ([`super::principal_reads`]), as a bit over [`KINDS`].
pub const PRINCIPAL_READS: u8 = 0b1000;

/// The kinds a record counts towards, as a bit set over [`KINDS`].
pub fn kinds_of(record: &Facts) -> u8 {
    KINDS
        .iter()
        .enumerate()
        .filter(|(_, k)| k.counts(record))
        .fold(0, |set, (i, _)| set | 1 << i)
}

/// The kind that produces an Insight type for one API's series.
pub fn of(insight_type: InsightType) -> &'static dyn SeriesKind {
    match insight_type {
        InsightType::ApiCallRateInsight => &super::calls::Calls,
        InsightType::ApiErrorRateInsight => &super::errors::Errors,
    }
}

/// The kind of a series.
pub fn of_key(key: &SeriesKey) -> &'static dyn SeriesKind {
    of_scope(key.insight_type, &key.scope)
}

/// The kind of the series of an Insight type and scope.
pub fn of_scope(insight_type: InsightType, scope: &Scope) -> &'static dyn SeriesKind {
    match scope {
        Scope::Api => of(insight_type),
        Scope::PrincipalWrites(_) => &super::principal_writes::PrincipalWrites,
        Scope::PrincipalReads(_) => &super::principal_reads::PrincipalReads,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_counts_as_a_call_and_as_an_error_and_a_read_only_as_neither() {
        let facts = |management: bool, read_only, has_error| Facts {
            category: management.then_some(EventCategory::Management),
            read_only,
            has_error,
            has_principal: false,
        };
        assert_eq!(kinds_of(&facts(true, Some(false), true)), 0b11);
        assert_eq!(kinds_of(&facts(true, Some(false), false)), 0b01);
        assert_eq!(kinds_of(&facts(true, Some(true), true)), 0b10);
        assert_eq!(kinds_of(&facts(true, Some(true), false)), 0);
        let by = |f: Facts| Facts {
            has_principal: true,
            ..f
        };
        assert_eq!(
            kinds_of(&by(facts(true, Some(false), false))),
            0b0101,
            "a principal's write"
        );
        assert_eq!(
            kinds_of(&by(facts(true, Some(true), true))),
            0b1010,
            "a principal's failed read"
        );
        assert_eq!(kinds_of(&facts(true, None, false)), 0, "readOnly unknown");
        assert_eq!(
            kinds_of(&facts(false, Some(false), true)),
            0,
            "another category"
        );
        let data = Facts {
            category: Some(EventCategory::Data),
            read_only: Some(false),
            has_error: true,
            has_principal: true,
        };
        assert_eq!(kinds_of(&data), 0b0111, "a failed data write");
        let read = Facts {
            read_only: Some(true),
            ..data
        };
        assert_eq!(
            kinds_of(&read),
            0b0010,
            "a data read counts in no principal's reads"
        );
        let who: Arc<str> = Arc::from("arn:aws:iam::111122223333:user/eve");
        for (i, kind) in KINDS.iter().enumerate() {
            assert_eq!(i == 1, kind.keyed_by_error_code());
            let scope = kind.scope(&who).unwrap_or_default();
            assert_eq!(
                of_scope(kind.insight_type(), &scope).rate_name(),
                kind.rate_name()
            );
            assert_eq!(i >= 2, scope.principal().is_some());
        }
    }

    #[test]
    fn no_kind_reports_two_attributes_of_one_slot() {
        for kind in KINDS {
            let mut slots: Vec<usize> = kind.attributes().iter().map(|a| a.index()).collect();
            slots.sort_unstable();
            slots.dedup();
            assert_eq!(slots.len(), kind.attributes().len(), "{}", kind.rate_name());
        }
    }
}
