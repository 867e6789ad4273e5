//! Insights events: turns an episode the detector found into an AWS-format Insights event record
//! (`eventType: AwsCloudTrailInsight`) and reads AWS's own Insights records leniently; the sinks
//! that write records out are in [`crate::sink`] (re-exported here).

mod record;

pub use crate::sink::{
    AppendJsonLines, InsightSink, JsonLinesSink, OutputError, Outputs, S3LayoutSink, SinkError,
    Sinks,
};
pub use record::{
    read_insights, AdditionalEventData, AttributionRecord, AttributionValue, Average, Detector,
    ExplanationRecord, InsightContext, InsightDetails, InsightError, InsightRecord, Statistics,
    EVENT_CATEGORY, EVENT_TYPE, EVENT_VERSION, ID_NAMESPACE, TOP_VALUES,
};

use serde::{Deserialize, Serialize};

use crate::series::{Minute, SeriesKey};

/// Whether a record opens or closes an episode (`insightDetails.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InsightState {
    /// The first record of an episode, written when the detector confirms it.
    Start,
    /// The closing record, written when the rate is back within bounds.
    End,
}

impl InsightState {
    /// The text AWS writes in `insightDetails.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            InsightState::Start => "Start",
            InsightState::End => "End",
        }
    }
}

/// Which side of the bounds the rate left by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Far above the baseline.
    Rise,
    /// Far below the baseline (e.g. an API normally called every minute that stops).
    Fall,
}

/// Why the detector fired — trailsight's addition, so an analyst can check the decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// Whether the count rose above or fell below its bounds.
    pub direction: Direction,
    /// Length of the sliding window whose count crossed the bound.
    pub window_minutes: u32,
    /// Calls (or errors) in that window.
    pub observed: u64,
    /// Expected calls in that window under the baseline.
    pub expected: f64,
    /// Smallest count still within bounds (None: no lower bound at this rate).
    pub lower_bound: Option<u64>,
    /// Largest count still within bounds.
    pub upper_bound: u64,
    /// Tail probability of `observed` under the baseline model.
    pub p_value: f64,
    /// The per-test level it had to beat.
    pub p_threshold: f64,
    /// `"poisson"` or `"negative-binomial"`.
    pub model: String,
    /// Negative binomial size r, when used.
    pub dispersion: Option<f64>,
}

/// Per-value averages of one attribute (`userIdentityArn`, `userAgent`, `errorCode`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributionSummary {
    /// The attribute the values belong to.
    pub attribute: crate::series::Attribute,
    /// (value, average per minute over the insight period), any order, any length.
    pub insight: Vec<(String, f64)>,
    /// Same over the baseline period.
    pub baseline: Vec<(String, f64)>,
}

/// Everything the detector knows about one Start or End of an episode; the input of
/// [`InsightRecord::from_summary`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeSummary {
    /// The series the episode happened on.
    pub series: SeriesKey,
    /// Start or End record.
    pub state: InsightState,
    /// First unusual minute.
    pub start: Minute,
    /// Start: minute the detector confirmed the episode; End: end of the unusual activity (exclusive).
    pub end: Minute,
    /// Per-minute average over the baseline period.
    pub baseline_average: f64,
    /// Start: rate at the start; End: average over the episode.
    pub insight_average: f64,
    /// Minutes.
    pub insight_duration: i64,
    /// Minutes.
    pub baseline_duration: i64,
    /// Per-attribute breakdowns; order and length are normalised by the record.
    pub attributions: Vec<AttributionSummary>,
    /// Why the detector fired.
    pub explanation: Explanation,
}

/// The stable text identity of a series, used to derive `sharedEventID`/`eventID`.
///
/// Format: `<insightType>|<account>|<region>|<eventSource>|<eventName>` followed by
/// `|<errorCode>` when the series has one, each component with `\` written `\\` and `|` written
/// `\|` so that distinct series never share a text. A data-event series writes its insight type
/// as `<insightType>/Data` (a first component no management series has); a principal's series
/// adds `/<seriesKind>` to it and its principal as a last component
/// (`ApiCallRateInsight/principalReadRate|...|*|*|arn:...`). This format is part of trailsight's output
/// contract (it fixes the IDs of every Insights event written) and must not change across versions.
pub fn series_canonical(key: &SeriesKey) -> String {
    let mut out = String::with_capacity(
        24 + key.account.len()
            + key.region.len()
            + key.event_source.len()
            + key.event_name.len()
            + key.error_code.as_deref().map_or(0, str::len),
    );
    out.push_str(key.insight_type.as_str());
    if key.category != crate::series::EventCategory::Management {
        out.push('/');
        out.push_str(key.category.as_str());
    }
    if let Some(kind) = key.scope.kind_name() {
        out.push('/');
        out.push_str(kind);
    }
    let mut components = [
        Some(&*key.account),
        Some(&*key.region),
        Some(&*key.event_source),
        Some(&*key.event_name),
        key.error_code.as_deref(),
        key.scope.principal().map(|p| &**p),
    ]
    .into_iter()
    .flatten();
    for component in &mut components {
        out.push('|');
        for c in component.chars() {
            if c == '|' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::InsightType;
    use std::sync::Arc;

    fn key(t: InsightType, name: &str, code: Option<&str>) -> SeriesKey {
        SeriesKey {
            insight_type: t,
            account: Arc::from("123456789012"),
            region: Arc::from("us-east-1"),
            event_source: Arc::from("ec2.amazonaws.com"),
            event_name: Arc::from(name),
            error_code: code.map(Arc::from),
            category: crate::series::EventCategory::Management,
            scope: crate::series::Scope::Api,
        }
    }

    #[test]
    fn canonical_text_is_pinned() {
        assert_eq!(
            series_canonical(&key(InsightType::ApiCallRateInsight, "RunInstances", None)),
            "ApiCallRateInsight|123456789012|us-east-1|ec2.amazonaws.com|RunInstances"
        );
        assert_eq!(
            series_canonical(&key(
                InsightType::ApiErrorRateInsight,
                "RunInstances",
                Some("AccessDenied")
            )),
            "ApiErrorRateInsight|123456789012|us-east-1|ec2.amazonaws.com|RunInstances|AccessDenied"
        );
    }

    #[test]
    fn separators_inside_components_cannot_collide() {
        let a = key(InsightType::ApiErrorRateInsight, "A|B", Some("C"));
        let b = key(InsightType::ApiErrorRateInsight, "A", Some("B|C"));
        assert_ne!(series_canonical(&a), series_canonical(&b));
        let c = key(InsightType::ApiErrorRateInsight, "A\\", Some("C"));
        assert_eq!(
            series_canonical(&c),
            "ApiErrorRateInsight|123456789012|us-east-1|ec2.amazonaws.com|A\\\\|C"
        );
        let empty_code = key(InsightType::ApiErrorRateInsight, "A", Some(""));
        let no_code = key(InsightType::ApiErrorRateInsight, "A", None);
        assert_ne!(series_canonical(&empty_code), series_canonical(&no_code));
        // The same API as a data event is another series, with other IDs.
        let data = SeriesKey {
            category: crate::series::EventCategory::Data,
            ..key(InsightType::ApiErrorRateInsight, "A", Some("C"))
        };
        assert_eq!(
            series_canonical(&data),
            "ApiErrorRateInsight/Data|123456789012|us-east-1|ec2.amazonaws.com|A|C"
        );
        let reads = SeriesKey {
            event_source: Arc::from("*"),
            event_name: Arc::from("*"),
            scope: crate::series::Scope::PrincipalReads(Arc::from("arn:aws:iam::1:user/a|b")),
            ..key(InsightType::ApiCallRateInsight, "", None)
        };
        assert_eq!(
            series_canonical(&reads),
            "ApiCallRateInsight/principalReadRate|123456789012|us-east-1|*|*|arn:aws:iam::1:user/a\\|b"
        );
    }

    #[test]
    fn direction_is_lowercase() {
        assert_eq!(serde_json::to_string(&Direction::Fall).unwrap(), "\"fall\"");
        assert_eq!(
            serde_json::to_string(&InsightState::End).unwrap(),
            "\"End\""
        );
    }
}
