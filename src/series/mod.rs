//! The vocabulary shared by every stage: what a series is (an API, or an API and an error code,
//! in one account and region; each kind of series is one file behind [`kind::SeriesKind`]),
//! which Insight type it feeds, and how time is counted (whole UTC
//! minutes since the Unix epoch, so that arithmetic on minutes is plain integer arithmetic).

pub mod calls;
pub mod errors;
pub mod kind;

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

    /// The attributes AWS reports for this type, in AWS's order (its kind's, [`kind::of`]).
    pub fn attributes(self) -> &'static [Attribute] {
        kind::of(self).attributes()
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
}

impl Attribute {
    /// The name AWS writes in `attributions[].attribute`.
    pub fn as_str(self) -> &'static str {
        match self {
            Attribute::UserIdentityArn => "userIdentityArn",
            Attribute::UserAgent => "userAgent",
            Attribute::ErrorCode => "errorCode",
        }
    }

    /// Index of this attribute in fixed-size per-attribute arrays.
    pub fn index(self) -> usize {
        match self {
            Attribute::UserIdentityArn => 0,
            Attribute::UserAgent => 1,
            Attribute::ErrorCode => 2,
        }
    }

    /// All attributes, in index order.
    pub const ALL: [Attribute; 3] = [
        Attribute::UserIdentityArn,
        Attribute::UserAgent,
        Attribute::ErrorCode,
    ];
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
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} {}:{}",
            self.account, self.region, self.event_source, self.event_name
        )?;
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
    /// 2: the event category.
    const VERSION: u16 = 2;
    const READS_FROM: u16 = 1;
}

impl SeriesKey {
    /// Decodes a stored key of record version `version` (postcard): version 1, written before
    /// data events were analysed, had no category and was a management series.
    pub fn decode_stored(payload: &[u8], version: u16) -> Result<SeriesKey, String> {
        /// The key as version 1 stored it.
        #[derive(Deserialize)]
        struct SeriesKeyV1 {
            insight_type: InsightType,
            account: Arc<str>,
            region: Arc<str>,
            event_source: Arc<str>,
            event_name: Arc<str>,
            error_code: Option<Arc<str>>,
        }
        match version {
            1 => postcard::from_bytes::<SeriesKeyV1>(payload)
                .map(|k| SeriesKey {
                    insight_type: k.insight_type,
                    account: k.account,
                    region: k.region,
                    event_source: k.event_source,
                    event_name: k.event_name,
                    error_code: k.error_code,
                    category: EventCategory::Management,
                })
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
        assert_eq!(SeriesKey::decode_stored(&now, 2).unwrap(), data);
        assert!(SeriesKey::decode_stored(&now[..now.len() - 1], 2).is_err());
        assert!(data.to_string().ends_with("(data events)"), "{data}");
        let set = Categories::of(&[EventCategory::Data]);
        assert!(set.contains(EventCategory::Data) && !set.contains(EventCategory::Management));
        assert!(Categories::default().contains(EventCategory::Management));
    }
}
