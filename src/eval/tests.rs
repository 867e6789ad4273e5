//! The comparison rules, on hand-made Insights and labels.

use super::*;
use crate::insight::{EpisodeSummary, Explanation};
use crate::series::{InsightType, SeriesKey};
use std::sync::Arc;

fn key(name: &str, error: Option<&str>) -> SeriesKey {
    SeriesKey {
        insight_type: if error.is_some() {
            InsightType::ApiErrorRateInsight
        } else {
            InsightType::ApiCallRateInsight
        },
        account: Arc::from("111122223333"),
        region: Arc::from("us-east-1"),
        event_source: Arc::from("ec2.amazonaws.com"),
        event_name: Arc::from(name),
        error_code: error.map(Arc::from),
    }
}

/// 2024-03-11T00:00Z in minutes.
const DAY: i64 = 1_710_115_200 / 60;

fn start(
    name: &str,
    error: Option<&str>,
    minute: i64,
    confirmed: i64,
    rise: bool,
) -> InsightRecord {
    InsightRecord::from_summary(&EpisodeSummary {
        series: key(name, error),
        state: InsightState::Start,
        start: minute,
        end: confirmed,
        baseline_average: 0.1,
        insight_average: 3.0,
        insight_duration: confirmed - minute + 1,
        baseline_duration: 10080,
        attributions: Vec::new(),
        explanation: Explanation {
            direction: if rise {
                Direction::Rise
            } else {
                Direction::Fall
            },
            window_minutes: 5,
            observed: 9,
            expected: 0.5,
            lower_bound: None,
            upper_bound: 3,
            p_value: 1e-10,
            p_threshold: 2e-8,
            model: "poisson".into(),
            dispersion: None,
        },
    })
}

fn label(kind: &str, name: &str, error: Option<&str>, from: i64, to: i64, expect: Expect) -> Label {
    Label {
        id: kind.into(),
        kind: kind.into(),
        insight_type: Some(
            if error.is_some() {
                "ApiErrorRateInsight"
            } else {
                "ApiCallRateInsight"
            }
            .into(),
        ),
        account: Some("111122223333".into()),
        region: Some("us-east-1".into()),
        event_source: Some("ec2.amazonaws.com".into()),
        event_name: Some(name.into()),
        error_code: error.map(str::to_string),
        direction: Some("rise".into()),
        expect,
        start: crate::series::format_event_time(from),
        end: crate::series::format_event_time(to),
    }
}

fn scored(insights: Vec<InsightRecord>) -> ScoredArchive {
    ScoredArchive {
        insights,
        series: 100,
        series_days: 2000.0,
        summary: RunSummary::default(),
    }
}

#[test]
fn found_missed_false_and_delays_follow_the_rules() {
    let t = DAY + 120;
    let labels = vec![
        // found 2 minutes late, confirmed 4 minutes after the true start
        label("burst", "RunInstances", None, t, t + 10, Expect::Insight),
        // found 3 minutes early: within the tolerance of 5
        label(
            "burst",
            "CreateTags",
            None,
            t + 100,
            t + 110,
            Expect::Insight,
        ),
        // a Start 6 minutes early is outside the tolerance: missed, and false
        label(
            "early",
            "StopInstances",
            None,
            t + 200,
            t + 210,
            Expect::Insight,
        ),
        // the error series, not the call-rate one: a call-rate Start does not find it
        label(
            "errors",
            "DescribeInstances",
            Some("AccessDenied"),
            t + 300,
            t + 315,
            Expect::Insight,
        ),
        // must stay silent, and does
        label(
            "quiet",
            "CreateLogStream",
            None,
            DAY,
            DAY + 1440,
            Expect::None,
        ),
        // must stay silent, but fires once
        label("noisy", "UpdateStack", None, DAY, DAY + 1440, Expect::None),
    ];
    let insights = vec![
        start("RunInstances", None, t + 2, t + 4, true),
        start("CreateTags", None, t + 97, t + 99, true),
        start("StopInstances", None, t + 194, t + 196, true),
        start("DescribeInstances", None, t + 301, t + 302, true),
        start("UpdateStack", None, t + 500, t + 501, true),
        // a second Start of the same incident inside its window: explained, not false
        start("RunInstances", None, t + 8, t + 8, true),
    ];
    let r = compare(&labels, &scored(insights), 5).unwrap();
    let kind = |k: &str| r.kinds.iter().find(|x| x.kind == k).unwrap();
    assert_eq!((kind("burst").found, kind("burst").missed), (2, 0));
    // delays -3 and 2: median -0.5, worst 2; confirmed after 4 and -1
    assert_eq!(kind("burst").delay_median, Some(-0.5));
    assert_eq!(kind("burst").delay_worst, Some(2));
    assert_eq!(kind("burst").confirmed_worst, Some(4));
    assert_eq!((kind("early").found, kind("early").missed), (0, 1));
    assert_eq!(kind("errors").missed, 1);
    assert_eq!((kind("quiet").found, kind("noisy").found), (1, 0));
    let total = kind("total");
    assert_eq!((total.labels, total.found, total.missed), (6, 3, 3));
    // false: the early StopInstances, the call-rate DescribeInstances, the noisy UpdateStack
    assert_eq!(r.false_insights.len(), 3, "{:?}", r.false_insights);
    assert_eq!(r.starts, 6);
    assert!((r.false_per_1000_series_days - 1.5).abs() < 1e-12);
    let in_noisy: Vec<_> = r
        .false_insights
        .iter()
        .filter_map(|f| f.in_window_of.as_deref())
        .collect();
    assert_eq!(in_noisy, ["noisy"]);
}

#[test]
fn wildcards_and_direction() {
    let t = DAY + 600;
    let mut gap = label("delivery_gap", "*", None, t, t + 50, Expect::None);
    gap.event_source = Some("*".into());
    gap.direction = Some("any".into());
    let mut drop = label(
        "api_drop",
        "SubmitTaskStateChange",
        None,
        t + 100,
        t + 145,
        Expect::Insight,
    );
    drop.direction = Some("fall".into());
    let insights = vec![
        start("DescribeVolumes", None, t + 20, t + 21, false),
        // a rise does not find a labelled fall
        start("SubmitTaskStateChange", None, t + 101, t + 102, true),
    ];
    let r = compare(&[gap, drop], &scored(insights), 5).unwrap();
    assert!(!r.labels[0].found && r.labels[0].fired.len() == 1);
    assert!(!r.labels[1].found);
    assert_eq!(r.false_insights.len(), 2);
}

#[test]
fn labels_written_by_generate_are_read() {
    let dir = std::env::temp_dir().join(format!("trailsight-eval-labels-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("labels.json");
    std::fs::write(
        &path,
        r#"{"generator": {}, "incidents": [{"id": "inc-01", "kind": "new_api",
            "insightType": "ApiCallRateInsight", "account": "1", "region": "r",
            "eventSource": "s", "eventName": "n", "errorCode": null, "direction": "rise",
            "start": "2024-03-12T02:10:00Z", "end": "2024-03-12T02:20:00Z", "description": "x"},
            {"kind": "weekly_rhythm", "expect": "none", "account": "1",
            "start": "2024-03-09T00:00:00Z", "end": "2024-03-11T10:00:00Z"}]}"#,
    )
    .unwrap();
    let labels = read_labels(&path).unwrap();
    assert_eq!(labels.len(), 2);
    assert_eq!(labels[0].expect, Expect::Insight);
    assert_eq!(labels[1].expect, Expect::None);
    assert_eq!(labels[1].event_name, None);
    std::fs::write(&path, "{\"incidents\": [{\"kind\": 3}]}").unwrap();
    assert!(matches!(read_labels(&path), Err(EvalError::Labels { .. })));
    let _ = std::fs::remove_dir_all(&dir);
}
