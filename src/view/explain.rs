//! The detector's decision said in words: which sliding window, how many calls (or errors) in
//! it, what was expected and which bound it crossed, from a Start record's
//! `additionalEventData`. The report, the plot's legend and the Insights export share these
//! sentences, so all three say the same numbers as the record.

use crate::insight::{Direction, ExplanationRecord, InsightRecord};
use crate::series::{minute_to_datetime, Minute};

/// The firing window of a Start record: its explanation and the minute the window ended at
/// (inclusive; the minute the detector confirmed the Start). `None` for a record without
/// trailsight's explanation (AWS's own) or with an unreadable time.
pub fn firing_window(start: &InsightRecord) -> Option<(&ExplanationRecord, Minute)> {
    let explanation = start.explanation()?;
    let first = crate::ingest::parse_event_time(&start.event_time)?;
    // A Start's insightDuration runs from the first unusual minute to the confirming one.
    let duration = start
        .insight_details
        .insight_context
        .statistics
        .insight_duration;
    let duration = if duration.is_finite() && duration >= 1.0 {
        duration.round().min(1e9) as i64
    } else {
        1
    };
    Some((explanation, first + duration - 1))
}

/// What the series counts, for a sentence: "calls" or "AccessDenied errors" (one of them:
/// "call", "AccessDenied error").
pub fn counted(record: &InsightRecord, n: u64) -> String {
    let d = &record.insight_details;
    let scope =
        crate::series::Scope::from_record(d.series_kind.as_deref(), d.principal_arn.as_deref())
            .unwrap_or_default();
    crate::series::kind::of_scope(d.insight_type, &scope).noun(d.error_code.as_deref(), n)
}

/// The sentence for an episode, from its Start record: e.g. "Start: 412 calls in the 60
/// minutes from 2024-03-12 13:33 through 14:32 UTC; expected 130, upper bound 260 (negative
/// binomial, p = 3.1e-12 < 2.2e-8)". `None` when the record carries no explanation.
pub fn sentence(start: &InsightRecord) -> Option<String> {
    let (x, last) = firing_window(start)?;
    let window = i64::from(x.window_minutes.max(1));
    let when = if window == 1 {
        format!("in the minute {} UTC", time(last, None))
    } else {
        let first = last - window + 1;
        format!(
            "in the {window} minutes from {} through {} UTC",
            time(first, None),
            time(last, Some(first))
        )
    };
    let bound = match x.direction {
        Direction::Rise => format!("upper bound {}", count(x.upper_bound)),
        Direction::Fall => match x.lower_bound {
            Some(l) => format!("lower bound {}", count(l)),
            None => "no lower bound".to_string(),
        },
    };
    Some(format!(
        "Start: {} {} {when}; expected {}, {bound} ({}, p = {} < {})",
        count(x.observed),
        counted(start, x.observed),
        amount(x.expected),
        model_words(&x.model),
        probability(x.p_value),
        probability(x.p_threshold),
    ))
}

/// A short legend line for a plot: "60-min window through 14:32: 412 calls > bound 260".
pub fn legend(start: &InsightRecord) -> Option<String> {
    let (x, last) = firing_window(start)?;
    let (sign, bound) = match x.direction {
        Direction::Rise => (">", Some(x.upper_bound)),
        Direction::Fall => ("<", x.lower_bound),
    };
    let bound = bound.map_or_else(|| "no bound".to_string(), |b| format!("bound {}", count(b)));
    Some(format!(
        "{}-min window through {}: {} {} {sign} {bound}",
        x.window_minutes,
        time(last, Some(last)),
        count(x.observed),
        counted(start, x.observed),
    ))
}

fn model_words(model: &str) -> String {
    match model {
        "poisson" => "Poisson".to_string(),
        "negative-binomial" => "negative binomial".to_string(),
        other => other.to_string(),
    }
}

/// `YYYY-MM-DD HH:MM`, or `HH:MM` alone when `same_day_as` falls on the same UTC day.
fn time(minute: Minute, same_day_as: Option<Minute>) -> String {
    let Some(t) = minute_to_datetime(minute) else {
        return minute.to_string();
    };
    let same_day = same_day_as.is_some_and(|other| {
        minute.div_euclid(crate::series::MINUTES_PER_DAY)
            == other.div_euclid(crate::series::MINUTES_PER_DAY)
    });
    if same_day {
        t.format("%H:%M").to_string()
    } else {
        t.format("%Y-%m-%d %H:%M").to_string()
    }
}

/// A count with thousands separators: 1,200.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// An expected count as a reader wants it: whole above 100 (1,200), one decimal from 1 (2.5),
/// two significant digits below (0.00052).
pub fn amount(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x >= 99.5 {
        return count(x.round() as u64);
    }
    if x >= 0.995 {
        return trim(format!("{x:.1}"));
    }
    if x <= 0.0 {
        return "0".to_string();
    }
    let decimals = (1 - x.log10().floor() as i32).clamp(1, 12) as usize;
    trim(format!("{x:.decimals$}"))
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A probability with two significant digits: 3.1e-12 (0.25 written as such).
pub fn probability(p: f64) -> String {
    if p == 0.0 {
        return "0".to_string();
    }
    if p >= 0.001 {
        return trim(format!("{p:.3}"));
    }
    let s = format!("{p:.1e}");
    // "3.0e-12" reads better as "3e-12".
    s.replace(".0e", "e")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insight::{read_insights, AdditionalEventData};

    const RECORD: &str = r#"{"eventVersion":"1.09","eventTime":"2024-03-12T13:20:00Z","awsRegion":"us-east-1","eventID":"63a0c41d-6ede-54ed-a5f0-d440b24eb0ea","eventType":"AwsCloudTrailInsight","recipientAccountId":"418295730164","sharedEventID":"5c943057-24f6-58a7-85a8-cd77f27702a9","insightDetails":{"state":"Start","eventSource":"ec2.amazonaws.com","eventName":"TerminateInstances","insightType":"ApiCallRateInsight","sourceEventCategory":"Management","insightContext":{"statistics":{"baseline":{"average":2.1},"insight":{"average":5},"insightDuration":73,"baselineDuration":10080},"attributions":[]}},"eventCategory":"Insight","additionalEventData":{"detector":"trailsight","direction":"rise","windowMinutes":60,"observed":412,"expected":130.2,"lowerBound":70,"upperBound":260,"pValue":3.14e-12,"pThreshold":2.170138889e-8,"model":"negative-binomial","dispersion":12.5}}"#;

    fn record(text: &str) -> InsightRecord {
        read_insights(text.as_bytes())
            .expect("a record")
            .pop()
            .expect("one")
    }

    #[test]
    fn a_rise_names_its_window_count_expectation_and_bound() {
        let r = record(RECORD);
        // 13:20 + 73 - 1 minutes = 14:32, the confirming minute; the window is 13:33..=14:32.
        assert_eq!(
            sentence(&r).unwrap(),
            "Start: 412 calls in the 60 minutes from 2024-03-12 13:33 through 14:32 UTC; \
             expected 130, upper bound 260 (negative binomial, p = 3.1e-12 < 2.2e-8)"
        );
        assert_eq!(
            legend(&r).unwrap(),
            "60-min window through 14:32: 412 calls > bound 260"
        );
    }

    #[test]
    fn a_fall_of_errors_says_errors_and_its_lower_bound() {
        let text = RECORD
            .replace("\"rise\"", "\"fall\"")
            .replace("\"observed\":412", "\"observed\":3")
            .replace("\"expected\":130.2", "\"expected\":1200")
            .replace("\"lowerBound\":70", "\"lowerBound\":1050")
            .replace("\"model\":\"negative-binomial\"", "\"model\":\"poisson\"")
            .replace(
                "\"insightType\":\"ApiCallRateInsight\"",
                "\"insightType\":\"ApiErrorRateInsight\",\"errorCode\":\"AccessDenied\"",
            )
            .replace("\"insightDuration\":73", "\"insightDuration\":1")
            .replace("\"windowMinutes\":60", "\"windowMinutes\":1");
        let r = record(&text);
        assert_eq!(
            sentence(&r).unwrap(),
            "Start: 3 AccessDenied errors in the minute 2024-03-12 13:20 UTC; expected 1,200, \
             lower bound 1,050 (Poisson, p = 3.1e-12 < 2.2e-8)"
        );
        assert_eq!(
            legend(&r).unwrap(),
            "1-min window through 13:20: 3 AccessDenied errors < bound 1,050"
        );
    }

    #[test]
    fn a_window_across_midnight_dates_both_ends_and_aws_records_have_no_sentence() {
        let text = RECORD
            .replace("2024-03-12T13:20:00Z", "2024-03-11T23:50:00Z")
            .replace("\"insightDuration\":73", "\"insightDuration\":20");
        // Confirmed at 2024-03-12 00:09; the 60 minutes start 2024-03-11 23:10.
        assert!(sentence(&record(&text))
            .unwrap()
            .contains("in the 60 minutes from 2024-03-11 23:10 through 2024-03-12 00:09 UTC"));
        let mut aws = record(RECORD);
        aws.additional_event_data = Some(AdditionalEventData::Other(serde_json::json!({})));
        assert_eq!(sentence(&aws), None);
        assert_eq!(legend(&aws), None);
    }

    #[test]
    fn numbers_read_as_written() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_200), "1,200");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(amount(130.2), "130");
        assert_eq!(amount(1199.6), "1,200");
        assert_eq!(amount(2.54), "2.5");
        assert_eq!(amount(3.0), "3");
        assert_eq!(amount(0.0005246589717), "0.00052");
        assert_eq!(amount(0.5), "0.5");
        assert_eq!(probability(1.441942428e-10), "1.4e-10");
        assert_eq!(probability(3e-12), "3e-12");
        assert_eq!(probability(0.25), "0.25");
    }
}
