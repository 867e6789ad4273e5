//! What a finding says about an Insight, shared by the finding sinks (`securityhub:` writes it as
//! an ASFF finding, `ocsf:` as an OCSF Detection Finding): one finding per episode (keyed by the
//! `sharedEventID`), created by the Start and updated by the End.

use chrono::{DateTime, Duration, SecondsFormat, Utc};

use crate::insight::{InsightRecord, InsightState};
use crate::series::InsightType;

/// How unusual the episode was, by its rate against its baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Under 3 times the baseline.
    Low,
    /// 3 to 10 times the baseline.
    Medium,
    /// 10 times the baseline or more (or no baseline at all).
    High,
}

/// Ratio of the rate to the baseline from which an episode is [`Level::Medium`].
pub const MEDIUM_RATIO: f64 = 3.0;
/// Ratio from which it is [`Level::High`].
pub const HIGH_RATIO: f64 = 10.0;

/// Why a record cannot become a finding.
#[derive(Debug, thiserror::Error)]
#[error("Insight {event_id}: eventTime {event_time:?} is not an RFC 3339 time")]
pub struct BadTime {
    /// The record.
    pub event_id: String,
    /// Its time as written.
    pub event_time: String,
}

/// The facts of one record, as findings carry them.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The finding's identity: the same for an episode's Start and End.
    pub id: String,
    /// The record's own eventID.
    pub event_id: String,
    /// Whether the record is the episode's End.
    pub ended: bool,
    /// First unusual minute.
    pub first_observed: DateTime<Utc>,
    /// Start: the first unusual minute; End: the end of the activity.
    pub last_observed: DateTime<Utc>,
    /// When the record was written (its eventTime): a finding's update time.
    pub updated: DateTime<Utc>,
    /// One line, at most 256 characters.
    pub title: String,
    /// What, where and how unusual, at most 1,024 characters.
    pub description: String,
    /// How unusual.
    pub level: Level,
    /// Rate over baseline (infinite when the baseline is 0).
    pub ratio: f64,
    /// `trailsight/ApiCallRateInsight` or `trailsight/ApiErrorRateInsight`.
    pub generator: String,
    /// The account of the calls.
    pub account: String,
    /// Their region.
    pub region: String,
}

impl Finding {
    /// The finding a record starts or updates.
    pub fn of(record: &InsightRecord) -> Result<Finding, BadTime> {
        let d = &record.insight_details;
        let time = DateTime::parse_from_rfc3339(&record.event_time)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| BadTime {
                event_id: record.event_id.clone(),
                event_time: record.event_time.clone(),
            })?;
        let stats = &d.insight_context.statistics;
        let ended = d.state == InsightState::End;
        let minutes = if stats.insight_duration.is_finite() {
            stats.insight_duration.clamp(0.0, 1e7) as i64
        } else {
            0
        };
        let first_observed = if ended {
            time - Duration::minutes(minutes)
        } else {
            time
        };
        let (rate, baseline) = (stats.insight.average, stats.baseline.average);
        let ratio = if baseline > 0.0 {
            rate / baseline
        } else {
            f64::INFINITY
        };
        let level = if ratio >= HIGH_RATIO {
            Level::High
        } else if ratio >= MEDIUM_RATIO {
            Level::Medium
        } else {
            Level::Low
        };
        let data = d.source_event_category.as_deref() == Some("Data");
        let what = match (&d.insight_type, &d.error_code) {
            (InsightType::ApiErrorRateInsight, Some(code)) => {
                format!("{} errors of {}", code, d.event_name)
            }
            (InsightType::ApiErrorRateInsight, None) => format!("errors of {}", d.event_name),
            _ => format!("{} calls", d.event_name),
        };
        let title = clip(
            &format!(
                "Unusual rate of {what} ({}{})",
                d.event_source,
                if data { ", data events" } else { "" }
            ),
            256,
        );
        let times = if baseline > 0.0 {
            format!("{ratio:.1} times")
        } else {
            "far above".to_owned()
        };
        let happened = if ended {
            format!(
                "ended after {minutes} minutes, averaging {rate:.2} per minute, {times} its baseline of {baseline:.2} per minute"
            )
        } else {
            format!(
                "started at {rate:.2} per minute, {times} its baseline of {baseline:.2} per minute"
            )
        };
        let top = d
            .insight_context
            .attributions
            .iter()
            .find(|a| a.attribute == "userIdentityArn")
            .and_then(|a| a.insight.first())
            .map(|v| format!(" Most calls came from {}.", v.value))
            .unwrap_or_default();
        let description = clip(
            &format!(
                "CloudTrail Insight (trailsight): an unusual rate of {what} in account {} ({}) {happened}.{top}",
                record.recipient_account_id, record.aws_region
            ),
            1024,
        );
        Ok(Finding {
            id: format!("trailsight/insight/{}", record.shared_event_id),
            event_id: record.event_id.clone(),
            ended,
            first_observed,
            last_observed: time,
            updated: time,
            title,
            description,
            level,
            ratio,
            generator: format!("trailsight/{}", d.insight_type.as_str()),
            account: record.recipient_account_id.clone(),
            region: record.aws_region.clone(),
        })
    }
}

/// A time as ASFF and logs write it: `2024-03-12T01:14:00.000Z`.
pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `text` cut to `max` characters (an ellipsis marks the cut), control characters as spaces.
fn clip(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() <= max {
        return clean;
    }
    let mut out: String = clean.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::fixtures::{end_record, record};

    #[test]
    fn a_start_and_its_end_are_one_finding() {
        let start = Finding::of(&record()).unwrap();
        let end = Finding::of(&end_record()).unwrap();
        assert_eq!(start.id, end.id);
        assert_ne!(start.event_id, end.event_id);
        assert!(!start.ended && end.ended);
        // The End's first minute is its eventTime less the episode's duration: the Start's time.
        let s = &record();
        let e = &end_record();
        assert_eq!(
            iso(start.first_observed),
            format!("{}", iso(start.last_observed))
        );
        let duration = e
            .insight_details
            .insight_context
            .statistics
            .insight_duration as i64;
        assert_eq!(
            end.last_observed - end.first_observed,
            Duration::minutes(duration)
        );
        assert!(start.title.contains(&s.insight_details.event_name));
        assert!(start.title.chars().count() <= 256 && start.description.chars().count() <= 1024);
    }

    #[test]
    fn levels_follow_the_ratio_to_the_baseline() {
        let mut r = record();
        let stats = &mut r.insight_details.insight_context.statistics;
        stats.baseline.average = 2.0;
        for (rate, level) in [
            (5.9, Level::Low),
            (6.0, Level::Medium),
            (19.9, Level::Medium),
            (20.0, Level::High),
        ] {
            r.insight_details.insight_context.statistics.insight.average = rate;
            assert_eq!(Finding::of(&r).unwrap().level, level, "{rate}");
        }
        r.insight_details
            .insight_context
            .statistics
            .baseline
            .average = 0.0;
        let f = Finding::of(&r).unwrap();
        assert_eq!(f.level, Level::High);
        assert!(f.description.contains("far above"), "{}", f.description);
    }

    #[test]
    fn a_bad_time_is_an_error_and_long_names_are_cut() {
        let mut r = record();
        r.event_time = "9999-99-99".into();
        assert!(Finding::of(&r)
            .unwrap_err()
            .to_string()
            .contains("9999-99-99"));
        let mut r = record();
        r.insight_details.event_name = "A\n".repeat(400);
        let f = Finding::of(&r).unwrap();
        assert_eq!(f.title.chars().count(), 256);
        assert!(f.title.ends_with('…') && !f.title.contains('\n'));
    }
}
