//! What a series kind is, in one place: which records count towards it, what its key holds
//! beside the API, which attributes its Insights break calls down by, and which Insight type it
//! produces. The aggregator counts every kind through this trait; adding a kind (data events,
//! per-principal rates, read calls) is one file beside [`calls`](super::calls) and
//! [`errors`](super::errors) and one line in [`KINDS`].

use super::{Attribute, EventCategory, InsightType};
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
}

/// A kind of series.
pub trait SeriesKind: Sync {
    /// The Insight type its Insights are written as.
    fn insight_type(&self) -> InsightType;
    /// Whether a record counts towards it.
    fn counts(&self, record: &Facts) -> bool;
    /// Whether its key holds the record's `errorCode` beside the API (one series per code).
    fn keyed_by_error_code(&self) -> bool;
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
pub static KINDS: [&dyn SeriesKind; 2] = [&super::calls::Calls, &super::errors::Errors];

/// The kinds a record counts towards, as a bit set over [`KINDS`].
pub fn kinds_of(record: &Facts) -> u8 {
    KINDS
        .iter()
        .enumerate()
        .filter(|(_, k)| k.counts(record))
        .fold(0, |set, (i, _)| set | 1 << i)
}

/// The kind that produces an Insight type.
pub fn of(insight_type: InsightType) -> &'static dyn SeriesKind {
    match insight_type {
        InsightType::ApiCallRateInsight => &super::calls::Calls,
        InsightType::ApiErrorRateInsight => &super::errors::Errors,
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
        };
        assert_eq!(kinds_of(&facts(true, Some(false), true)), 0b11);
        assert_eq!(kinds_of(&facts(true, Some(false), false)), 0b01);
        assert_eq!(kinds_of(&facts(true, Some(true), true)), 0b10);
        assert_eq!(kinds_of(&facts(true, Some(true), false)), 0);
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
        };
        assert_eq!(kinds_of(&data), 0b11, "a failed data write");
        for (i, kind) in KINDS.iter().enumerate() {
            assert_eq!(of(kind.insight_type()).insight_type(), kind.insight_type());
            assert_eq!(i == 1, kind.keyed_by_error_code());
        }
    }
}
