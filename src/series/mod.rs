//! The vocabulary shared by every stage: what a series is (an API, or an API and an error code,
//! in one account and region; each kind of series is one file behind [`kind::SeriesKind`]),
//! which Insight type it feeds, and how time is counted (whole UTC
//! minutes since the Unix epoch, so that arithmetic on minutes is plain integer arithmetic).

pub mod calls;
pub mod errors;
pub mod kind;
pub mod principal_reads;
pub mod principal_writes;

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// A UTC minute, counted from 1970-01-01T00:00Z. Every count, baseline and episode is keyed by it.
pub type Minute = i64;

/// Minutes in a day.
pub const MINUTES_PER_DAY: Minute = 1440;

/// The two kinds of CloudTrail Insights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum InsightType {
    /// Write management API calls per minute, per API.
    ApiCallRateInsight,
    /// Management API calls (read or write) per minute that carry one `errorCode`, per API and code.
    ApiErrorRateInsight,
}

impl InsightType {
    /// The name AWS writes in `insightDetails.insightType`.
    pub fn as_str(self) -> &'static str {
        match self {
            InsightType::ApiCallRateInsight => "ApiCallRateInsight",
            InsightType::ApiErrorRateInsight => "ApiErrorRateInsight",
        }
    }
}

impl fmt::Display for InsightType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An attribute that Insights break activity down by (`insightContext.attributions[].attribute`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Attribute {
    /// `userIdentity.arn` of the caller.
    UserIdentityArn,
    /// `userAgent` of the call.
    UserAgent,
    /// `errorCode` of the call, `"null"` when there was none.
    ErrorCode,
    /// The API called, as `eventSource:eventName` (`ec2.amazonaws.com:RunInstances`): which
    /// APIs made a principal's calls. A trailsight extension, reported only by per-principal
    /// series (AWS's attributes are the three above).
    Api,
}

impl Attribute {
    /// The name AWS writes in `attributions[].attribute`.
    pub fn as_str(self) -> &'static str {
        match self {
            Attribute::UserIdentityArn => "userIdentityArn",
            Attribute::UserAgent => "userAgent",
            Attribute::ErrorCode => "errorCode",
            Attribute::Api => "api",
        }
    }

    /// Slot of this attribute in the fixed-size per-attribute arrays of a cell
    /// ([`crate::aggregate::topk::Attributions`]). [`Attribute::Api`] shares the slot of
    /// [`Attribute::ErrorCode`]: no kind reports both (per-principal series report the APIs,
    /// API series the error codes), and stored cells keep their three slots (a test checks it).
    pub fn index(self) -> usize {
        match self {
            Attribute::UserIdentityArn => 0,
            Attribute::UserAgent => 1,
            Attribute::ErrorCode | Attribute::Api => 2,
        }
    }

    /// All attributes.
    pub const ALL: [Attribute; 4] = [
        Attribute::UserIdentityArn,
        Attribute::UserAgent,
        Attribute::ErrorCode,
        Attribute::Api,
    ];
}

/// What a series counts the calls of: one API (as AWS Insights does), or every API one
/// principal called (a trailsight extension: its Insights carry `insightDetails.seriesKind` and
/// `insightDetails.principalArn`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// One API (`eventSource`, `eventName`).
    #[default]
    Api,
    /// The write calls of one principal, all APIs together.
    PrincipalWrites(Arc<str>),
    /// The read-only management calls of one principal (List/Describe/Get), all APIs together.
    PrincipalReads(Arc<str>),
}

impl Scope {
    /// The principal, for a per-principal series.
    pub fn principal(&self) -> Option<&Arc<str>> {
        match self {
            Scope::Api => None,
            Scope::PrincipalWrites(p) | Scope::PrincipalReads(p) => Some(p),
        }
    }

    /// The name written in `insightDetails.seriesKind` (None: an API's series, written as AWS
    /// writes it).
    pub fn kind_name(&self) -> Option<&'static str> {
        match self {
            Scope::Api => None,
            Scope::PrincipalWrites(_) => Some(PRINCIPAL_WRITES),
            Scope::PrincipalReads(_) => Some(PRINCIPAL_READS),
        }
    }

    /// The scope a record's `insightDetails.seriesKind` and `principalArn` name (`None` for
    /// a kind this version does not know, or a per-principal kind without its principal).
    pub fn from_record(kind: Option<&str>, principal: Option<&str>) -> Option<Scope> {
        match (kind, principal) {
            (None, _) => Some(Scope::Api),
            (Some(PRINCIPAL_WRITES), Some(p)) => Some(Scope::PrincipalWrites(Arc::from(p))),
            (Some(PRINCIPAL_READS), Some(p)) => Some(Scope::PrincipalReads(Arc::from(p))),
            _ => None,
        }
    }
}

/// `insightDetails.seriesKind` of a principal's write-rate Insight.
pub const PRINCIPAL_WRITES: &str = "principalWriteRate";
/// `insightDetails.seriesKind` of a principal's read-rate (reconnaissance) Insight.
pub const PRINCIPAL_READS: &str = "principalReadRate";
/// `eventSource` and `eventName` of a per-principal series (and its Insights): all APIs.
pub const ALL_APIS: &str = "*";

/// The principal a caller's ARN stands for: an assumed role's session
/// (`arn:aws:sts::111122223333:assumed-role/Deployer/ci-4411`) is its role
/// (`arn:aws:iam::111122223333:role/Deployer`), so that session names do not split a role into
/// many principals; any other ARN is itself. CloudTrail's assumed-role ARN carries the role's
/// name but not its path: a role created under a path (`role/service-role/X`) is written
/// without it. IAM Identity Center's roles (`AWSReservedSSO_*`) are the exception: there the
/// session name is the person signed in (`.../AWSReservedSSO_Admin_0a1b/alice@example.com`), and
/// every person of a permission set is not one principal, so the session ARN is kept (as the
/// detector's burst habits do, [`crate::detect::bursts`]).
pub fn principal_of(arn: &str) -> std::borrow::Cow<'_, str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if let [prefix, partition, "sts", "", account, resource] = parts[..] {
        if let Some(rest) = resource.strip_prefix("assumed-role/") {
            if let Some((role, _session)) = rest.split_once('/') {
                if prefix == "arn" && !role.is_empty() && !role.starts_with("AWSReservedSSO_") {
                    return format!("arn:{partition}:iam::{account}:role/{role}").into();
                }
            }
        }
    }
    arn.into()
}

/// Which CloudTrail events a series counts (`eventCategory`): management events, as AWS
/// Insights always did, or data events (S3 object calls, Lambda invocations...), which AWS
/// analyses since November 2025. Written as `insightDetails.sourceEventCategory`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum EventCategory {
    /// `eventCategory: "Management"`.
    #[default]
    Management,
    /// `eventCategory: "Data"`.
    Data,
}

impl EventCategory {
    /// The name CloudTrail writes: `"Management"`, `"Data"`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventCategory::Management => "Management",
            EventCategory::Data => "Data",
        }
    }

    /// The name a profile gives it (`ingest.event_categories`): `"management"`, `"data"`.
    pub fn setting(self) -> &'static str {
        match self {
            EventCategory::Management => "management",
            EventCategory::Data => "data",
        }
    }

    /// Every category.
    pub const ALL: [EventCategory; 2] = [EventCategory::Management, EventCategory::Data];
}

/// The event categories a run analyses (`ingest.event_categories`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Categories(u8);

impl Categories {
    /// Management events only: AWS's default, and trailsight's.
    pub const MANAGEMENT: Categories = Categories(1);

    /// The set of `categories`.
    pub fn of(categories: &[EventCategory]) -> Categories {
        Categories(categories.iter().fold(0, |set, &c| set | 1 << c as u8))
    }

    /// Whether `category` is analysed.
    pub fn contains(self, category: EventCategory) -> bool {
        self.0 & (1 << category as u8) != 0
    }
}

impl Default for Categories {
    fn default() -> Self {
        Categories::MANAGEMENT
    }
}

/// One analysed series: an API (`eventSource` + `eventName`) in one account and region, and for
/// error-rate Insights one `errorCode`; management events or data events.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeriesKey {
    /// Which Insight type the series feeds.
    pub insight_type: InsightType,
    /// `recipientAccountId` (or `userIdentity.accountId`).
    pub account: Arc<str>,
    /// `awsRegion`.
    pub region: Arc<str>,
    /// `eventSource`, e.g. `ec2.amazonaws.com`.
    pub event_source: Arc<str>,
    /// `eventName`, e.g. `RunInstances`.
    pub event_name: Arc<str>,
    /// `errorCode`, present exactly for [`InsightType::ApiErrorRateInsight`].
    pub error_code: Option<Arc<str>>,
    /// The events it counts.
    pub category: EventCategory,
    /// One API's calls, or one principal's (then `event_source` and `event_name` are
    /// [`ALL_APIS`]).
    pub scope: Scope,
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            Scope::Api => write!(
                f,
                "{}/{} {}:{}",
                self.account, self.region, self.event_source, self.event_name
            )?,
            Scope::PrincipalWrites(p) => write!(f, "{}/{} {p} writes", self.account, self.region)?,
            Scope::PrincipalReads(p) => write!(f, "{}/{} {p} reads", self.account, self.region)?,
        }
        if let Some(code) = &self.error_code {
            write!(f, " errorCode={code}")?;
        }
        if self.category != EventCategory::Management {
            write!(f, " ({} events)", self.category.setting())?;
        }
        Ok(())
    }
}

/// Converts a UTC minute to a date-time; `None` only for minutes outside chrono's range.
pub fn minute_to_datetime(minute: Minute) -> Option<DateTime<Utc>> {
    minute
        .checked_mul(60)
        .and_then(|secs| Utc.timestamp_opt(secs, 0).single())
}

/// Formats a minute the way CloudTrail writes `eventTime`: `YYYY-MM-DDTHH:MM:00Z`.
pub fn format_event_time(minute: Minute) -> String {
    match minute_to_datetime(minute) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => format!("minute {minute}"),
    }
}

/// Minute of the day (0..1440) of a UTC minute.
pub fn minute_of_day(minute: Minute) -> Minute {
    minute.rem_euclid(MINUTES_PER_DAY)
}

/// Hour of the day (0..24) of a UTC minute.
pub fn hour_of_day(minute: Minute) -> usize {
    (minute_of_day(minute) / 60) as usize
}

impl crate::store::record::StateRecord for SeriesKey {
    const KIND: &'static str = "series key";
    /// 2: the event category; 3: the scope (an API's or a principal's series).
    const VERSION: u16 = 3;
    const READS_FROM: u16 = 1;
}

impl SeriesKey {
    /// Decodes a stored key of record version `version` (postcard): version 1, written before
    /// data events were analysed, had no category and was a management series; version 2,
    /// written before per-principal series, had no scope and was an API's series.
    pub fn decode_stored(payload: &[u8], version: u16) -> Result<SeriesKey, String> {
        /// The fields every version stores first; version 1 stored only these.
        #[derive(Deserialize)]
        struct SeriesKeyV1 {
            insight_type: InsightType,
            account: Arc<str>,
            region: Arc<str>,
            event_source: Arc<str>,
            event_name: Arc<str>,
            error_code: Option<Arc<str>>,
        }
        let api_series = |(k, category): (SeriesKeyV1, EventCategory)| SeriesKey {
            insight_type: k.insight_type,
            account: k.account,
            region: k.region,
            event_source: k.event_source,
            event_name: k.event_name,
            error_code: k.error_code,
            category,
            scope: Scope::Api,
        };
        match version {
            1 => postcard::from_bytes::<SeriesKeyV1>(payload)
                .map(|k| api_series((k, EventCategory::Management)))
                .map_err(|e| e.to_string()),
            // Version 2 is version 1 and the category.
            2 => postcard::from_bytes::<(SeriesKeyV1, EventCategory)>(payload)
                .map(api_series)
                .map_err(|e| e.to_string()),
            _ => postcard::from_bytes(payload).map_err(|e| e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_time_is_written_on_the_minute() {
        // 2023-07-10T12:08:00Z is 1688990880 seconds after the epoch.
        assert_eq!(
            format_event_time(1_688_990_880 / 60),
            "2023-07-10T12:08:00Z"
        );
        assert_eq!(hour_of_day(1_688_990_880 / 60), 12);
        assert_eq!(minute_of_day(-1), 1439);
    }

    #[test]
    fn an_assumed_role_session_is_its_role_and_other_arns_are_themselves() {
        let cases = [
            (
                "arn:aws:sts::111122223333:assumed-role/Deployer/ci-4411",
                "arn:aws:iam::111122223333:role/Deployer",
            ),
            (
                "arn:aws-us-gov:sts::111122223333:assumed-role/ci-deploy/run-77",
                "arn:aws-us-gov:iam::111122223333:role/ci-deploy",
            ),
            // Identity Center: the session is the person.
            (
                "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Admin_0a1b/alice@example.com",
                "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Admin_0a1b/alice@example.com",
            ),
            (
                "arn:aws:iam::111122223333:user/alice",
                "arn:aws:iam::111122223333:user/alice",
            ),
            (
                "arn:aws:sts::111122223333:federated-user/bob",
                "arn:aws:sts::111122223333:federated-user/bob",
            ),
            // Not an assumed role's session: kept as it is, whatever it holds.
            (
                "arn:aws:sts::111122223333:assumed-role/NoSession",
                "arn:aws:sts::111122223333:assumed-role/NoSession",
            ),
            (
                "arn:aws:sts::111122223333:assumed-role//s",
                "arn:aws:sts::111122223333:assumed-role//s",
            ),
            ("../../etc/passwd", "../../etc/passwd"),
            ("", ""),
        ];
        for (arn, principal) in cases {
            assert_eq!(principal_of(arn), principal, "{arn}");
        }
    }

    #[test]
    fn a_key_stored_before_categories_reads_as_a_management_series() {
        #[derive(Serialize)]
        struct V1<'a>(
            InsightType,
            &'a str,
            &'a str,
            &'a str,
            &'a str,
            Option<&'a str>,
        );
        let old = postcard::to_allocvec(&V1(
            InsightType::ApiErrorRateInsight,
            "111122223333",
            "us-east-1",
            "s3.amazonaws.com",
            "DeleteBucket",
            Some("AccessDenied"),
        ))
        .unwrap();
        let key = SeriesKey::decode_stored(&old, 1).unwrap();
        assert_eq!(key.category, EventCategory::Management);
        assert_eq!(key.error_code.as_deref(), Some("AccessDenied"));
        assert_eq!(&*key.event_name, "DeleteBucket");
        let data = SeriesKey {
            category: EventCategory::Data,
            ..key
        };
        let now = postcard::to_allocvec(&data).unwrap();
        assert_eq!(SeriesKey::decode_stored(&now, 3).unwrap(), data);
        assert!(SeriesKey::decode_stored(&now[..now.len() - 1], 3).is_err());
        // Version 2 is version 3 without the scope (its last field, Api written as one byte).
        assert_eq!(
            SeriesKey::decode_stored(&now[..now.len() - 1], 2).unwrap(),
            data
        );
        let principal = SeriesKey {
            scope: Scope::PrincipalReads(Arc::from("arn:aws:iam::111122223333:user/eve")),
            ..data.clone()
        };
        let bytes = postcard::to_allocvec(&principal).unwrap();
        assert_eq!(SeriesKey::decode_stored(&bytes, 3).unwrap(), principal);
        assert!(
            principal.to_string().contains("user/eve reads"),
            "{principal}"
        );
        assert!(data.to_string().ends_with("(data events)"), "{data}");
        let set = Categories::of(&[EventCategory::Data]);
        assert!(set.contains(EventCategory::Data) && !set.contains(EventCategory::Management));
        assert!(Categories::default().contains(EventCategory::Management));
    }
}
