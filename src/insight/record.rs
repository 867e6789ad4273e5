//! The Insights event record in AWS's JSON shape: built from an [`EpisodeSummary`] when writing,
//! parsed leniently when reading AWS's own records (missing optional blocks, numbers written as
//! integers, decimals or with exponents, IDs that are not valid UUIDs, unknown fields).

use std::io::Read;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use uuid::Uuid;

use super::{Direction, EpisodeSummary, InsightState};
use crate::series::{format_event_time, InsightType};

/// `eventVersion` trailsight writes.
pub const EVENT_VERSION: &str = "1.09";
/// `eventType` of every Insights event.
pub const EVENT_TYPE: &str = "AwsCloudTrailInsight";
/// `eventCategory` of every Insights event.
pub const EVENT_CATEGORY: &str = "Insight";
/// How many values each attribution list keeps, as AWS does.
pub const TOP_VALUES: usize = 5;
/// Significant digits kept in every number written, so output does not depend on the last bits
/// of floating-point sums.
const SIGNIFICANT_DIGITS: usize = 10;

/// UUID v5 namespace of every ID trailsight writes, itself
/// `uuid_v5(NAMESPACE_URL, "https://github.com/trailsight/trailsight#insight-event-id")`.
/// Fixed forever: changing it changes every `eventID` and `sharedEventID` ever written.
pub const ID_NAMESPACE: Uuid = Uuid::from_u128(0x033f67a2_1500_5025_9867_60567c8beacf);

/// The `detail-type` EventBridge gives Insights events.
const EVENTBRIDGE_DETAIL_TYPE: &str = "AWS Insight via CloudTrail";

/// One CloudTrail Insights event, in AWS's field names and (when written) AWS's field order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InsightRecord {
    /// `"1.09"` when trailsight writes; AWS's records say 1.07 or later.
    pub event_version: String,
    /// UTC on the minute: first unusual minute (Start) or end of the activity (End).
    pub event_time: String,
    /// Region of the analysed calls.
    pub aws_region: String,
    /// Unique per record. A string, not a UUID: AWS's own examples hold invalid GUIDs.
    #[serde(rename = "eventID")]
    pub event_id: String,
    /// Always `"AwsCloudTrailInsight"`.
    pub event_type: String,
    /// Account of the analysed calls.
    pub recipient_account_id: String,
    /// Shared by the Start and End records of one episode.
    #[serde(rename = "sharedEventID")]
    pub shared_event_id: String,
    /// What was unusual, and by how much.
    pub insight_details: InsightDetails,
    /// Always `"Insight"`.
    pub event_category: String,
    /// trailsight's explanation of the decision; absent from AWS's records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_event_data: Option<AdditionalEventData>,
}

/// `insightDetails`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InsightDetails {
    /// Start or End.
    pub state: InsightState,
    /// The API's service, e.g. `ec2.amazonaws.com`.
    pub event_source: String,
    /// The API's name, e.g. `RunInstances`.
    pub event_name: String,
    /// Call-rate or error-rate.
    pub insight_type: InsightType,
    /// The error code counted, on error-rate Insights only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// `"Management"` (or `"Data"`); missing from older AWS records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_event_category: Option<String>,
    /// trailsight's extension: the kind of a series that is not one API's
    /// (`"principalWriteRate"`, `"principalReadRate"`; `eventSource` and `eventName` are then
    /// `"*"`). Absent on an API's Insight, as on AWS's records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_kind: Option<String>,
    /// trailsight's extension: the principal (IAM user or role ARN) whose calls a
    /// per-principal series counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_arn: Option<String>,
    /// Statistics and attributions.
    pub insight_context: InsightContext,
}

/// `insightDetails.insightContext`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InsightContext {
    /// Baseline and insight averages and durations.
    pub statistics: Statistics,
    /// Top values per attribute; empty when an AWS record has none.
    #[serde(default)]
    pub attributions: Vec<AttributionRecord>,
}

/// `insightContext.statistics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Statistics {
    /// Per-minute average over the baseline period.
    pub baseline: Average,
    /// Start: rate at the start; End: average over the episode.
    pub insight: Average,
    /// Minutes from start to end of the unusual activity (integral when trailsight writes it).
    #[serde(serialize_with = "write_number", deserialize_with = "read_number")]
    pub insight_duration: f64,
    /// Minutes of baseline ending at the start of the episode; missing from some AWS records.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "write_optional_number",
        deserialize_with = "read_optional_number"
    )]
    pub baseline_duration: Option<f64>,
}

/// `{"average": n}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Average {
    /// Calls or errors per minute.
    #[serde(serialize_with = "write_number", deserialize_with = "read_number")]
    pub average: f64,
}

/// One `attributions[]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributionRecord {
    /// `userIdentityArn`, `userAgent` or `errorCode` (kept as text: AWS may add others).
    pub attribute: String,
    /// Top values during the unusual activity, by average descending.
    #[serde(default)]
    pub insight: Vec<AttributionValue>,
    /// Top values during the baseline, by average descending.
    #[serde(default)]
    pub baseline: Vec<AttributionValue>,
}

impl AttributionRecord {
    /// The attribute as trailsight's type, `None` for a name trailsight does not know.
    pub fn attribute_kind(&self) -> Option<crate::series::Attribute> {
        crate::series::Attribute::ALL
            .into_iter()
            .find(|a| a.as_str() == self.attribute)
    }
}

/// `{"value": "...", "average": n}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributionValue {
    /// The ARN, user agent or error code (`"null"` meaning no error).
    pub value: String,
    /// Calls or errors per minute with this value.
    #[serde(serialize_with = "write_number", deserialize_with = "read_number")]
    pub average: f64,
}

/// `additionalEventData`: trailsight's explanation, or whatever another producer put there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AdditionalEventData {
    /// Written by trailsight (`"detector": "trailsight"`).
    Trailsight(ExplanationRecord),
    /// Any other content, kept as it was read.
    Other(Value),
}

/// Marks an `additionalEventData` block as trailsight's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Detector {
    /// `"trailsight"`.
    #[serde(rename = "trailsight")]
    Trailsight,
}

/// The detector's [`super::Explanation`] as written in `additionalEventData`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExplanationRecord {
    /// Always `"trailsight"`.
    pub detector: Detector,
    /// `"rise"` or `"fall"`.
    pub direction: Direction,
    /// Length of the sliding window whose count crossed the bound.
    pub window_minutes: u32,
    /// Calls (or errors) in that window.
    pub observed: u64,
    /// Expected calls in that window under the baseline.
    #[serde(serialize_with = "write_number", deserialize_with = "read_number")]
    pub expected: f64,
    /// Smallest count still within bounds (`null`: no lower bound at this rate).
    #[serde(default)]
    pub lower_bound: Option<u64>,
    /// Largest count still within bounds.
    pub upper_bound: u64,
    /// Tail probability of `observed` under the baseline model.
    #[serde(serialize_with = "write_number", deserialize_with = "read_number")]
    pub p_value: f64,
    /// The per-test level it had to beat.
    #[serde(serialize_with = "write_number", deserialize_with = "read_number")]
    pub p_threshold: f64,
    /// `"poisson"` or `"negative-binomial"`.
    pub model: String,
    /// Negative binomial size r, when used.
    #[serde(
        default,
        serialize_with = "write_optional_number",
        deserialize_with = "read_optional_number"
    )]
    pub dispersion: Option<f64>,
}

impl InsightRecord {
    /// Builds the record for one Start or End of an episode.
    ///
    /// Deterministic: the same summary gives byte-identical JSON. Attributions follow AWS's
    /// order for the insight type (one entry per attribute, empty lists when the summary has
    /// none), each list sorted by average descending then value ascending and cut to
    /// [`TOP_VALUES`]; every number is rounded to 10 significant digits and a non-finite one is
    /// written as 0 (JSON has no NaN).
    pub fn from_summary(s: &EpisodeSummary) -> InsightRecord {
        let key = &s.series;
        let shared_event_id = shared_event_id(key, s.start);
        let event_id = event_id(&shared_event_id, s.state);
        let event_time = match s.state {
            InsightState::Start => format_event_time(s.start),
            InsightState::End => format_event_time(s.end),
        };
        let attributions = crate::series::kind::of_key(key)
            .attributes()
            .iter()
            .map(|&attribute| {
                let found = s.attributions.iter().find(|a| a.attribute == attribute);
                AttributionRecord {
                    attribute: attribute.as_str().to_owned(),
                    insight: top_values(found.map_or(&[][..], |a| &a.insight[..])),
                    baseline: top_values(found.map_or(&[][..], |a| &a.baseline[..])),
                }
            })
            .collect();
        let e = &s.explanation;
        InsightRecord {
            event_version: EVENT_VERSION.to_owned(),
            event_time,
            aws_region: key.region.to_string(),
            event_id: event_id.to_string(),
            event_type: EVENT_TYPE.to_owned(),
            recipient_account_id: key.account.to_string(),
            shared_event_id: shared_event_id.to_string(),
            insight_details: InsightDetails {
                state: s.state,
                event_source: key.event_source.to_string(),
                event_name: key.event_name.to_string(),
                insight_type: key.insight_type,
                error_code: match key.insight_type {
                    InsightType::ApiErrorRateInsight => {
                        key.error_code.as_deref().map(str::to_owned)
                    }
                    InsightType::ApiCallRateInsight => None,
                },
                source_event_category: Some(key.category.as_str().to_owned()),
                series_kind: key.scope.kind_name().map(str::to_owned),
                principal_arn: key.scope.principal().map(|p| p.to_string()),
                insight_context: InsightContext {
                    statistics: Statistics {
                        baseline: Average {
                            average: stable(s.baseline_average),
                        },
                        insight: Average {
                            average: stable(s.insight_average),
                        },
                        insight_duration: s.insight_duration as f64,
                        baseline_duration: Some(s.baseline_duration as f64),
                    },
                    attributions,
                },
            },
            event_category: EVENT_CATEGORY.to_owned(),
            additional_event_data: Some(AdditionalEventData::Trailsight(ExplanationRecord {
                detector: Detector::Trailsight,
                direction: e.direction,
                window_minutes: e.window_minutes,
                observed: e.observed,
                expected: stable(e.expected),
                lower_bound: e.lower_bound,
                upper_bound: e.upper_bound,
                p_value: stable(e.p_value),
                p_threshold: stable(e.p_threshold),
                model: e.model.clone(),
                dispersion: e.dispersion.map(stable),
            })),
        }
    }

    /// trailsight's explanation, when this record carries one.
    pub fn explanation(&self) -> Option<&ExplanationRecord> {
        match &self.additional_event_data {
            Some(AdditionalEventData::Trailsight(e)) => Some(e),
            _ => None,
        }
    }
}

/// `sharedEventID` of an episode: `uuid_v5(ID_NAMESPACE, series_canonical + "|" + start minute)`,
/// the start minute written as a decimal count of minutes since the epoch.
fn shared_event_id(key: &crate::series::SeriesKey, start: crate::series::Minute) -> Uuid {
    let name = format!("{}|{}", super::series_canonical(key), start);
    Uuid::new_v5(&ID_NAMESPACE, name.as_bytes())
}

/// `eventID` of one record: `uuid_v5(ID_NAMESPACE, sharedEventID + "|Start" or "|End")`.
fn event_id(shared: &Uuid, state: InsightState) -> Uuid {
    let name = format!("{}|{}", shared, state.as_str());
    Uuid::new_v5(&ID_NAMESPACE, name.as_bytes())
}

/// Sorts by average descending then value ascending, keeps the top [`TOP_VALUES`].
fn top_values(values: &[(String, f64)]) -> Vec<AttributionValue> {
    let mut out: Vec<AttributionValue> = values
        .iter()
        .map(|(value, average)| AttributionValue {
            value: value.clone(),
            average: stable(*average),
        })
        .collect();
    // Rounded before sorting, so values that print the same tie and fall back to value order.
    out.sort_by(|a, b| {
        b.average
            .total_cmp(&a.average)
            .then_with(|| a.value.cmp(&b.value))
    });
    out.truncate(TOP_VALUES);
    out
}

/// Rounds to [`SIGNIFICANT_DIGITS`] significant digits; non-finite becomes 0.
fn stable(x: f64) -> f64 {
    if !x.is_finite() {
        return 0.0;
    }
    if x == 0.0 {
        // Also folds -0.0, which would otherwise print as "-0".
        return 0.0;
    }
    // Decimal formatting rounds correctly, which arithmetic with powers of ten does not.
    format!("{:.*e}", SIGNIFICANT_DIGITS - 1, x)
        .parse()
        .unwrap_or(x)
}

/// Largest magnitude at which every integer is exactly representable in an f64.
const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0;

/// Writes integral numbers as JSON integers (`5`, not `5.0`), as AWS does.
fn write_number<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    if x.fract() == 0.0 && x.abs() <= EXACT_INTEGER_LIMIT {
        s.serialize_i64(*x as i64)
    } else {
        s.serialize_f64(*x)
    }
}

fn write_optional_number<S: Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match x {
        Some(x) => write_number(x, s),
        None => s.serialize_none(),
    }
}

/// Reads a number as written: serde_json's default float parsing may miss the nearest f64 by
/// one unit in the last place for large exponents (a p-value of 3.641031701e-49 read back as
/// 3.6410317010000006e-49), so a record would not survive a write and re-read (the store's
/// outbox); rounding again to the written digits restores the value written.
fn read_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    f64::deserialize(d).map(stable)
}

fn read_optional_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Option::<f64>::deserialize(d).map(|x| x.map(stable))
}

/// Why a buffer could not be read as Insights events.
#[derive(Debug, thiserror::Error)]
pub enum InsightError {
    /// The buffer is not valid JSON (or JSON lines).
    #[error("not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// The buffer starts like gzip but does not decompress.
    #[error("gzip data does not decompress: {0}")]
    Gzip(#[source] std::io::Error),
    /// The gzip data decompresses to more than [`MAX_INSIGHTS_BYTES`] (a gzip bomb).
    #[error("gzip data decompresses to more than {MAX_INSIGHTS_BYTES} bytes; not read")]
    TooLarge,
    /// A value that should be an Insights event does not have its shape.
    #[error("record {index} is not an Insights event: {source}")]
    Record {
        /// Position of the value among all records, array items, lines and envelopes found
        /// (skipped ones included), from 0.
        index: usize,
        /// What serde found wrong.
        #[source]
        source: serde_json::Error,
    },
}

/// Largest decompressed Insights file read: a day of Insights of a large organization is a few
/// megabytes; a gzip bomb is refused before it is inflated in memory past this.
pub const MAX_INSIGHTS_BYTES: u64 = 256 << 20;

/// Reads Insights events from a buffer holding `{"Records":[...]}` (as delivered to S3), a JSON
/// array, JSON lines (or any whitespace-separated JSON values), or EventBridge envelopes with
/// `detail-type: "AWS Insight via CloudTrail"` (record under `detail`). Gzip input is
/// decompressed first.
///
/// Values that are plainly not Insights events are skipped: EventBridge envelopes of another
/// `detail-type`, and records whose `eventType` is present and not `AwsCloudTrailInsight`.
/// Anything else that does not parse is an error.
pub fn read_insights(buf: &[u8]) -> Result<Vec<InsightRecord>, InsightError> {
    read_insights_within(buf, MAX_INSIGHTS_BYTES)
}

fn read_insights_within(buf: &[u8], limit: u64) -> Result<Vec<InsightRecord>, InsightError> {
    if buf.starts_with(&[0x1f, 0x8b]) {
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(buf)
            .take(limit + 1)
            .read_to_end(&mut plain)
            .map_err(InsightError::Gzip)?;
        if plain.len() as u64 > limit {
            return Err(InsightError::TooLarge);
        }
        return read_plain(&plain);
    }
    read_plain(buf)
}

fn read_plain(buf: &[u8]) -> Result<Vec<InsightRecord>, InsightError> {
    let buf = buf.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(buf);
    let mut candidates = Vec::new();
    for value in serde_json::Deserializer::from_slice(buf).into_iter::<Value>() {
        match value.map_err(InsightError::Json)? {
            Value::Array(items) => candidates.extend(items),
            Value::Object(mut map) => match map.remove("Records") {
                Some(Value::Array(items)) => candidates.extend(items),
                Some(other) => {
                    // Not a delivery file after all: a record with an odd field; keep it whole.
                    map.insert("Records".to_owned(), other);
                    candidates.push(Value::Object(map));
                }
                None => candidates.push(Value::Object(map)),
            },
            other => candidates.push(other),
        }
    }
    let mut records = Vec::with_capacity(candidates.len());
    for (index, candidate) in candidates.into_iter().enumerate() {
        let Some(candidate) = unwrap_envelope(candidate) else {
            continue;
        };
        if candidate
            .get("eventType")
            .and_then(Value::as_str)
            .is_some_and(|t| t != EVENT_TYPE)
        {
            continue;
        }
        let record = serde_json::from_value(candidate)
            .map_err(|source| InsightError::Record { index, source })?;
        records.push(record);
    }
    Ok(records)
}

/// Takes the record out of an EventBridge envelope; `None` for an envelope of another kind.
fn unwrap_envelope(value: Value) -> Option<Value> {
    let Value::Object(mut map) = value else {
        return Some(value);
    };
    let detail_type = match map.get("detail-type") {
        Some(Value::String(t)) => t.as_str() == EVENTBRIDGE_DETAIL_TYPE,
        _ => return Some(Value::Object(map)),
    };
    if !detail_type {
        return None;
    }
    map.remove("detail")
}

impl crate::store::record::StateRecord for InsightRecord {
    const KIND: &'static str = "Insight";
    const VERSION: u16 = 1;
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_gzip_bomb_of_insights_is_refused_at_the_limit() {
        // 8 MiB of zeros compress to a few KB; read with a 1 MiB limit, they are refused
        // without being inflated past it (the reader once inflated everything).
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut e, &vec![0u8; 8 << 20]).unwrap();
        let bomb = e.finish().unwrap();
        assert!(bomb.len() < 64 << 10);
        assert!(matches!(
            super::read_insights_within(&bomb, 1 << 20),
            Err(super::InsightError::TooLarge)
        ));
    }

    use super::*;
    use crate::insight::{AttributionSummary, Explanation};
    use crate::series::{Attribute, SeriesKey};
    use std::sync::Arc;

    /// AWS documentation's error-rate Start example, exactly as in the spec.
    const AWS_ERROR_RATE_START: &str = r#"{"eventVersion":"1.09","eventTime":"2024-12-11T16:52:00Z","awsRegion":"us-east-1",
 "eventID":"18378b1e-3653-433d-ba1e-aa11a5958f0c","eventType":"AwsCloudTrailInsight",
 "recipientAccountId":"888888888888","sharedEventID":"fccb064f-dd07-4822-97c0-11115d8b91d4",
 "insightDetails":{"state":"Start","eventSource":"cloudtrail.amazonaws.com","eventName":"DescribeQuery",
  "insightType":"ApiErrorRateInsight","errorCode":"QueryIdNotFoundException","sourceEventCategory":"Management",
  "insightContext":{"statistics":{"baseline":{"average":0},"insight":{"average":1.2},"insightDuration":5,"baselineDuration":11092},
   "attributions":[
    {"attribute":"userIdentityArn","insight":[{"value":"arn:aws:sts::888888888888:assumed-role/Admin","average":1.2}],"baseline":[]},
    {"attribute":"userAgent","insight":[{"value":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)","average":1.2}],"baseline":[]}]}},
 "eventCategory":"Insight"}"#;

    /// AWS documentation's call-rate Start example, exactly as in the spec.
    const AWS_CALL_RATE_START: &str = r#"{"eventVersion":"1.07","eventTime":"2020-07-21T20:56:00Z","awsRegion":"us-east-1",
 "eventID":"abcd00b0-ccfe-422d-961c-98a2198a408x","eventType":"AwsCloudTrailInsight",
 "recipientAccountId":"838185438692","sharedEventID":"7bb000gg-22b3-4c03-94af-c74tj0c8m7c0",
 "insightDetails":{"state":"Start","eventSource":"autoscaling.amazonaws.com","eventName":"CompleteLifecycleAction",
  "insightType":"ApiCallRateInsight",
  "insightContext":{"statistics":{"baseline":{"average":0.0000882145},"insight":{"average":0.6},"insightDuration":5,"baselineDuration":11336},
   "attributions":[
    {"attribute":"userIdentityArn",
     "insight":[{"value":"arn:aws:sts::012345678901:assumed-role/CodeDeployRole1","average":0.2},
                {"value":"arn:aws:sts::012345678901:assumed-role/CodeDeployRole2","average":0.2},
                {"value":"arn:aws:sts::012345678901:assumed-role/CodeDeployRole3","average":0.2}],
     "baseline":[{"value":"arn:aws:sts::012345678901:assumed-role/CodeDeployRole1","average":0.0000882145}]},
    {"attribute":"userAgent","insight":[{"value":"codedeploy.amazonaws.com","average":0.6}],
     "baseline":[{"value":"codedeploy.amazonaws.com","average":0.0000882145}]},
    {"attribute":"errorCode","insight":[{"value":"null","average":0.6}],
     "baseline":[{"value":"null","average":0.0000882145}]}]}},
 "eventCategory":"Insight"}"#;

    fn series(insight_type: InsightType) -> SeriesKey {
        SeriesKey {
            insight_type,
            account: Arc::from("123456789012"),
            region: Arc::from("us-east-1"),
            event_source: Arc::from("iam.amazonaws.com"),
            event_name: Arc::from("CreateAccessKey"),
            error_code: match insight_type {
                InsightType::ApiErrorRateInsight => Some(Arc::from("AccessDenied")),
                InsightType::ApiCallRateInsight => None,
            },
            category: crate::series::EventCategory::Management,
            scope: crate::series::Scope::Api,
        }
    }

    // 2023-07-10T12:08:00Z
    const START: i64 = 1_688_990_880 / 60;

    fn summary(state: InsightState) -> EpisodeSummary {
        EpisodeSummary {
            series: series(InsightType::ApiCallRateInsight),
            state,
            start: START,
            end: match state {
                InsightState::Start => START + 3,
                InsightState::End => START + 17,
            },
            baseline_average: 0.1 + 0.2,
            insight_average: match state {
                InsightState::Start => 12.0,
                InsightState::End => 7.0 / 3.0,
            },
            insight_duration: 17,
            baseline_duration: 10080,
            attributions: vec![
                AttributionSummary {
                    attribute: Attribute::ErrorCode,
                    insight: vec![("null".into(), 12.0)],
                    baseline: vec![("null".into(), 0.3), ("AccessDenied".into(), 0.0000882145)],
                },
                AttributionSummary {
                    attribute: Attribute::UserIdentityArn,
                    insight: vec![
                        ("arn:aws:iam::123456789012:user/b".into(), 4.0),
                        ("arn:aws:iam::123456789012:user/a".into(), 4.0),
                        ("arn:aws:iam::123456789012:user/c".into(), 8.0),
                    ],
                    baseline: vec![],
                },
            ],
            explanation: Explanation {
                direction: Direction::Rise,
                window_minutes: 5,
                observed: 60,
                expected: 1.5,
                lower_bound: None,
                upper_bound: 7,
                p_value: 1.234_567_890_123e-40,
                p_threshold: 1e-7,
                model: "poisson".into(),
                dispersion: None,
            },
        }
    }

    #[test]
    fn namespace_is_derived_as_documented() {
        assert_eq!(
            ID_NAMESPACE,
            Uuid::new_v5(
                &Uuid::NAMESPACE_URL,
                b"https://github.com/trailsight/trailsight#insight-event-id"
            )
        );
    }

    #[test]
    fn reads_aws_error_rate_example() {
        let records = read_insights(AWS_ERROR_RATE_START.as_bytes()).unwrap();
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(r.event_id, "18378b1e-3653-433d-ba1e-aa11a5958f0c");
        assert_eq!(r.insight_details.state, InsightState::Start);
        assert_eq!(
            r.insight_details.insight_type,
            InsightType::ApiErrorRateInsight
        );
        assert_eq!(
            r.insight_details.error_code.as_deref(),
            Some("QueryIdNotFoundException")
        );
        assert_eq!(
            r.insight_details.source_event_category.as_deref(),
            Some("Management")
        );
        let stats = &r.insight_details.insight_context.statistics;
        assert_eq!(stats.baseline.average, 0.0);
        assert_eq!(stats.insight.average, 1.2);
        assert_eq!(stats.insight_duration, 5.0);
        assert_eq!(stats.baseline_duration, Some(11092.0));
        let attributions = &r.insight_details.insight_context.attributions;
        assert_eq!(attributions.len(), 2);
        assert_eq!(attributions[1].attribute_kind(), Some(Attribute::UserAgent));
        assert!(attributions[0].baseline.is_empty());
        assert_eq!(r.additional_event_data, None);
        assert!(r.explanation().is_none());
    }

    #[test]
    fn reads_aws_call_rate_example_with_invalid_guids() {
        let r: InsightRecord = serde_json::from_str(AWS_CALL_RATE_START).unwrap();
        assert_eq!(r.event_version, "1.07");
        assert_eq!(r.event_id, "abcd00b0-ccfe-422d-961c-98a2198a408x");
        assert_eq!(r.shared_event_id, "7bb000gg-22b3-4c03-94af-c74tj0c8m7c0");
        assert_eq!(r.recipient_account_id, "838185438692");
        assert_eq!(r.insight_details.error_code, None);
        assert_eq!(r.insight_details.source_event_category, None);
        let context = &r.insight_details.insight_context;
        assert_eq!(context.statistics.baseline.average, 0.0000882145);
        assert_eq!(context.statistics.baseline_duration, Some(11336.0));
        let arns: Vec<&str> = context.attributions[0]
            .insight
            .iter()
            .map(|v| v.value.as_str())
            .collect();
        assert_eq!(
            arns,
            [
                "arn:aws:sts::012345678901:assumed-role/CodeDeployRole1",
                "arn:aws:sts::012345678901:assumed-role/CodeDeployRole2",
                "arn:aws:sts::012345678901:assumed-role/CodeDeployRole3",
            ]
        );
        assert_eq!(context.attributions[2].attribute, "errorCode");
        assert_eq!(context.attributions[2].insight[0].value, "null");
        assert_eq!(context.attributions[2].insight[0].average, 0.6);
    }

    #[test]
    fn reads_lenient_numbers_and_missing_blocks() {
        let text = r#"{"eventVersion":"1.08","eventTime":"2021-01-01T00:00:00Z","awsRegion":"eu-west-1",
          "eventID":"x","eventType":"AwsCloudTrailInsight","recipientAccountId":"1","sharedEventID":"y",
          "insightDetails":{"state":"End","eventSource":"s3.amazonaws.com","eventName":"PutObject",
            "insightType":"ApiCallRateInsight","someNewField":{"a":[1,2]},
            "insightContext":{"statistics":{"baseline":{"average":9.82222E-5},"insight":{"average":3},
              "insightDuration":5.0}}},
          "eventCategory":"Insight","tlsDetails":{"tlsVersion":"TLSv1.2"}}"#;
        let r: InsightRecord = serde_json::from_str(text).unwrap();
        let stats = &r.insight_details.insight_context.statistics;
        assert_eq!(stats.baseline.average, 9.82222e-5);
        assert_eq!(stats.insight.average, 3.0);
        assert_eq!(stats.insight_duration, 5.0);
        assert_eq!(stats.baseline_duration, None);
        assert!(r.insight_details.insight_context.attributions.is_empty());
        assert_eq!(r.insight_details.state, InsightState::End);
        // Re-written, the integral float duration becomes an integer.
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""insightDuration":5}"#), "{json}");
        assert!(!json.contains("baselineDuration"), "{json}");
    }

    #[test]
    fn foreign_additional_event_data_is_kept_not_rejected() {
        let mut value: Value = serde_json::from_str(AWS_ERROR_RATE_START).unwrap();
        value["additionalEventData"] = serde_json::json!({"detector": "other", "x": 1});
        let r: InsightRecord = serde_json::from_value(value).unwrap();
        assert!(r.explanation().is_none());
        assert_eq!(
            r.additional_event_data,
            Some(AdditionalEventData::Other(
                serde_json::json!({"detector": "other", "x": 1})
            ))
        );
    }

    /// The exact text trailsight writes for `summary(Start)`.
    const PINNED_START: &str = r#"{"eventVersion":"1.09","eventTime":"2023-07-10T12:08:00Z","awsRegion":"us-east-1","eventID":"8479bc54-9b6d-571f-93a8-c69dcc4530fe","eventType":"AwsCloudTrailInsight","recipientAccountId":"123456789012","sharedEventID":"fbed9f40-e34e-517d-b5d8-bf480830b73b","insightDetails":{"state":"Start","eventSource":"iam.amazonaws.com","eventName":"CreateAccessKey","insightType":"ApiCallRateInsight","sourceEventCategory":"Management","insightContext":{"statistics":{"baseline":{"average":0.3},"insight":{"average":12},"insightDuration":17,"baselineDuration":10080},"attributions":[{"attribute":"userIdentityArn","insight":[{"value":"arn:aws:iam::123456789012:user/c","average":8},{"value":"arn:aws:iam::123456789012:user/a","average":4},{"value":"arn:aws:iam::123456789012:user/b","average":4}],"baseline":[]},{"attribute":"userAgent","insight":[],"baseline":[]},{"attribute":"errorCode","insight":[{"value":"null","average":12}],"baseline":[{"value":"null","average":0.3},{"value":"AccessDenied","average":0.0000882145}]}]}},"eventCategory":"Insight","additionalEventData":{"detector":"trailsight","direction":"rise","windowMinutes":5,"observed":60,"expected":1.5,"lowerBound":null,"upperBound":7,"pValue":1.23456789e-40,"pThreshold":1e-7,"model":"poisson","dispersion":null}}"#;

    /// The exact text trailsight writes for the End of the same episode, negative binomial model.
    const PINNED_END: &str = r#"{"eventVersion":"1.09","eventTime":"2023-07-10T12:25:00Z","awsRegion":"us-east-1","eventID":"6e20d89c-9a33-5154-b0e3-644be1a28ca8","eventType":"AwsCloudTrailInsight","recipientAccountId":"123456789012","sharedEventID":"fbed9f40-e34e-517d-b5d8-bf480830b73b","insightDetails":{"state":"End","eventSource":"iam.amazonaws.com","eventName":"CreateAccessKey","insightType":"ApiCallRateInsight","sourceEventCategory":"Management","insightContext":{"statistics":{"baseline":{"average":0.3},"insight":{"average":2.333333333},"insightDuration":17,"baselineDuration":10080},"attributions":[{"attribute":"userIdentityArn","insight":[{"value":"arn:aws:iam::123456789012:user/c","average":8},{"value":"arn:aws:iam::123456789012:user/a","average":4},{"value":"arn:aws:iam::123456789012:user/b","average":4}],"baseline":[]},{"attribute":"userAgent","insight":[],"baseline":[]},{"attribute":"errorCode","insight":[{"value":"null","average":12}],"baseline":[{"value":"null","average":0.3},{"value":"AccessDenied","average":0.0000882145}]}]}},"eventCategory":"Insight","additionalEventData":{"detector":"trailsight","direction":"rise","windowMinutes":5,"observed":60,"expected":1.5,"lowerBound":0,"upperBound":7,"pValue":1.23456789e-40,"pThreshold":1e-7,"model":"negative-binomial","dispersion":0.6666666667}}"#;

    fn end_summary() -> EpisodeSummary {
        let mut s = summary(InsightState::End);
        s.explanation.model = "negative-binomial".into();
        s.explanation.dispersion = Some(2.0 / 3.0);
        s.explanation.lower_bound = Some(0);
        s
    }

    #[test]
    fn writes_pinned_json() {
        let start =
            serde_json::to_string(&InsightRecord::from_summary(&summary(InsightState::Start)));
        assert_eq!(start.unwrap(), PINNED_START);
        let end = serde_json::to_string(&InsightRecord::from_summary(&end_summary()));
        assert_eq!(end.unwrap(), PINNED_END);
    }

    #[test]
    fn written_records_round_trip() {
        for summary in [summary(InsightState::Start), end_summary()] {
            let record = InsightRecord::from_summary(&summary);
            let json = serde_json::to_string(&record).unwrap();
            let back: InsightRecord = serde_json::from_str(&json).unwrap();
            assert_eq!(back, record);
            assert_eq!(serde_json::to_string(&back).unwrap(), json);
            let explanation = back.explanation().unwrap();
            assert_eq!(explanation.detector, Detector::Trailsight);
            assert_eq!(explanation.observed, 60);
        }
        // AWS's records survive a write and re-read unchanged too.
        for text in [AWS_ERROR_RATE_START, AWS_CALL_RATE_START] {
            let record: InsightRecord = serde_json::from_str(text).unwrap();
            let json = serde_json::to_string(&record).unwrap();
            assert_eq!(
                serde_json::from_str::<InsightRecord>(&json).unwrap(),
                record
            );
        }
    }

    #[test]
    fn ids_are_deterministic_and_tied_to_the_episode() {
        let start = InsightRecord::from_summary(&summary(InsightState::Start));
        let again = InsightRecord::from_summary(&summary(InsightState::Start));
        assert_eq!(
            serde_json::to_vec(&start).unwrap(),
            serde_json::to_vec(&again).unwrap()
        );
        let end = InsightRecord::from_summary(&summary(InsightState::End));
        assert_eq!(start.shared_event_id, end.shared_event_id);
        assert_ne!(start.event_id, end.event_id);
        assert_ne!(start.event_id, start.shared_event_id);

        let mut later = summary(InsightState::Start);
        later.start += 1;
        let later = InsightRecord::from_summary(&later);
        assert_ne!(later.shared_event_id, start.shared_event_id);
        assert_ne!(later.event_id, start.event_id);

        let mut other_series = summary(InsightState::Start);
        other_series.series.event_name = Arc::from("DeleteAccessKey");
        let other_series = InsightRecord::from_summary(&other_series);
        assert_ne!(other_series.shared_event_id, start.shared_event_id);

        // Documented derivation.
        let shared = Uuid::new_v5(
            &ID_NAMESPACE,
            format!(
                "ApiCallRateInsight|123456789012|us-east-1|iam.amazonaws.com|CreateAccessKey|{START}"
            )
            .as_bytes(),
        );
        assert_eq!(start.shared_event_id, shared.to_string());
        let event = Uuid::new_v5(&ID_NAMESPACE, format!("{shared}|Start").as_bytes());
        assert_eq!(start.event_id, event.to_string());
    }

    #[test]
    fn attributions_are_ordered_and_cut_to_top_five() {
        let mut s = summary(InsightState::Start);
        s.attributions = vec![AttributionSummary {
            attribute: Attribute::UserAgent,
            insight: vec![
                ("f".into(), 1.0),
                ("a".into(), 0.5),
                ("e".into(), 2.0),
                ("d".into(), 2.0),
                ("c".into(), 3.0),
                ("b".into(), 0.25),
                ("g".into(), 1.0),
            ],
            // Differ only beyond the 10th significant digit: they print alike, so tie on value.
            baseline: vec![
                ("y".into(), 0.123_456_789_04),
                ("x".into(), 0.123_456_789_01),
            ],
        }];
        let r = InsightRecord::from_summary(&s);
        let attributions = &r.insight_details.insight_context.attributions;
        let names: Vec<&str> = attributions.iter().map(|a| a.attribute.as_str()).collect();
        assert_eq!(names, ["userIdentityArn", "userAgent", "errorCode"]);
        assert!(attributions[0].insight.is_empty() && attributions[2].baseline.is_empty());
        let agents: Vec<(&str, f64)> = attributions[1]
            .insight
            .iter()
            .map(|v| (v.value.as_str(), v.average))
            .collect();
        assert_eq!(
            agents,
            [("c", 3.0), ("d", 2.0), ("e", 2.0), ("f", 1.0), ("g", 1.0)]
        );
        let baseline: Vec<(&str, f64)> = attributions[1]
            .baseline
            .iter()
            .map(|v| (v.value.as_str(), v.average))
            .collect();
        assert_eq!(baseline, [("x", 0.123_456_789), ("y", 0.123_456_789)]);
    }

    #[test]
    fn error_rate_record_names_its_code_and_drops_error_code_attribution() {
        let mut s = summary(InsightState::Start);
        s.series = series(InsightType::ApiErrorRateInsight);
        let r = InsightRecord::from_summary(&s);
        assert_eq!(
            r.insight_details.error_code.as_deref(),
            Some("AccessDenied")
        );
        let names: Vec<&str> = r
            .insight_details
            .insight_context
            .attributions
            .iter()
            .map(|a| a.attribute.as_str())
            .collect();
        assert_eq!(names, ["userIdentityArn", "userAgent"]);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(
            r#""insightType":"ApiErrorRateInsight","errorCode":"AccessDenied","sourceEventCategory":"Management""#
        ));
        // A call-rate record never carries errorCode.
        let call =
            serde_json::to_string(&InsightRecord::from_summary(&summary(InsightState::Start)));
        assert!(!call.unwrap().contains(r#""errorCode":"#));
    }

    #[test]
    fn numbers_are_rounded_and_never_non_finite() {
        assert_eq!(stable(0.1 + 0.2), 0.3);
        assert_eq!(stable(123_456_789_012.0), 123_456_789_000.0);
        assert_eq!(stable(-0.0).to_bits(), 0.0_f64.to_bits());
        // Read back, a tiny p-value is the number written (serde_json alone gave
        // 3.6410317010000006e-49 for this one).
        let a: Average = serde_json::from_str(r#"{"average":3.641031701e-49}"#).unwrap();
        assert_eq!(a.average, 3.641031701e-49);
        assert_eq!(stable(f64::NAN), 0.0);
        let mut s = summary(InsightState::Start);
        s.baseline_average = f64::NAN;
        s.explanation.p_value = f64::INFINITY;
        let json = serde_json::to_string(&InsightRecord::from_summary(&s)).unwrap();
        // JSON has no NaN: serde would write null, which would not read back as a number.
        assert!(
            serde_json::from_str::<InsightRecord>(&json).is_ok(),
            "{json}"
        );
        assert!(json.contains(r#""baseline":{"average":0}"#), "{json}");
        assert!(json.contains(r#""pValue":0,"#), "{json}");
    }

    #[test]
    fn reads_every_container_shape() {
        let ours = InsightRecord::from_summary(&summary(InsightState::Start));
        let ours_json = serde_json::to_string(&ours).unwrap();
        let aws: InsightRecord = serde_json::from_str(AWS_CALL_RATE_START).unwrap();
        let both = [ours.clone(), aws.clone()];

        let delivery = format!(r#"{{"Records":[{ours_json},{AWS_CALL_RATE_START}]}}"#);
        assert_eq!(read_insights(delivery.as_bytes()).unwrap(), both);

        let array = format!("[{ours_json},\n{AWS_CALL_RATE_START}]");
        assert_eq!(read_insights(array.as_bytes()).unwrap(), both);

        let aws_line = serde_json::to_string(&aws).unwrap();
        let lines = format!("{ours_json}\n{aws_line}\n\n");
        assert_eq!(read_insights(lines.as_bytes()).unwrap(), both);

        let api_call =
            r#"{"eventVersion":"1.08","eventType":"AwsApiCall","eventName":"ListUsers"}"#;
        let envelopes = format!(
            r#"{{"version":"0","detail-type":"AWS Insight via CloudTrail","source":"aws.cloudtrail","detail":{ours_json}}}
{{"version":"0","detail-type":"AWS API Call via CloudTrail","detail":{api_call}}}
{api_call}
{{"detail-type":"AWS Insight via CloudTrail","detail":{AWS_CALL_RATE_START}}}"#
        );
        assert_eq!(read_insights(envelopes.as_bytes()).unwrap(), both);

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, delivery.as_bytes()).unwrap();
        assert_eq!(read_insights(&gz.finish().unwrap()).unwrap(), both);

        assert!(read_insights(b"").unwrap().is_empty());
        assert!(read_insights(b" {\"Records\":[]} ").unwrap().is_empty());
    }

    #[test]
    fn reports_what_does_not_parse() {
        assert!(matches!(
            read_insights(b"{\"Records\":["),
            Err(InsightError::Json(_))
        ));
        let broken = AWS_CALL_RATE_START.replace(r#""state":"Start""#, r#""state":"Middle""#);
        let api_call = r#"{"eventType":"AwsApiCall"}"#;
        let text = format!("[{AWS_ERROR_RATE_START},{api_call},{broken}]");
        match read_insights(text.as_bytes()) {
            Err(InsightError::Record { index, .. }) => assert_eq!(index, 2),
            other => panic!("expected a record error, got {other:?}"),
        }
        assert!(matches!(
            read_insights(&[0x1f, 0x8b, 1, 2, 3]),
            Err(InsightError::Gzip(_))
        ));
    }
}
