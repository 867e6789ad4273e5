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
        category: crate::series::EventCategory::Management,
        scope: crate::series::Scope::Api,
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

fn behaviour(
    id: &str,
    kind: &str,
    class: BehaviourClass,
    name: &str,
    error: Option<&str>,
    from: i64,
    to: i64,
) -> BehaviourLabel {
    BehaviourLabel {
        id: id.into(),
        kind: kind.into(),
        class,
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
        start: crate::series::format_event_time(from),
        end: crate::series::format_event_time(to),
    }
}

#[test]
fn false_starts_are_attributed_to_the_most_specific_behaviour_and_one_episode_is_allowed() {
    use BehaviourClass::{AllowedChange, Background};
    let noon = DAY + 720;
    let end = DAY + 3 * 1440;
    let behaviours = vec![
        // cron on RunInstances over the whole trail
        behaviour("b1", "cron", Background, "RunInstances", None, DAY, end),
        // a step change on RunInstances from noon on day 1: narrower, so it wins after noon
        behaviour("b2", "step", AllowedChange, "RunInstances", None, noon, end),
        // a 10-minute session on CreateTags on day 1 at 10:00
        behaviour(
            "b3",
            "session",
            Background,
            "CreateTags",
            None,
            DAY + 600,
            DAY + 610,
        ),
        // throttling on the error series of CreateTags
        behaviour(
            "b4",
            "throttling",
            Background,
            "CreateTags",
            Some("Client.RequestLimitExceeded"),
            DAY,
            end,
        ),
    ];
    let insights = vec![
        // 09:00, before the step: the cron's (false)
        start("RunInstances", None, DAY + 540, DAY + 545, true),
        // 13:00 and 15:00: the step's first episode (allowed), then a second one (false)
        start("RunInstances", None, noon + 60, noon + 65, true),
        start("RunInstances", None, noon + 180, noon + 185, true),
        // 3 minutes before the session (within the tolerance): the session's
        start("CreateTags", None, DAY + 597, DAY + 600, true),
        // 20 hours after the session: still the session's (within a day after)
        start("CreateTags", None, DAY + 610 + 1200, DAY + 610 + 1201, true),
        // 25 hours after it: no behaviour on the call rate of CreateTags any more
        start("CreateTags", None, DAY + 610 + 1500, DAY + 610 + 1501, true),
        // the error series has its own behaviour; the call-rate ones do not cover it
        start(
            "CreateTags",
            Some("Client.RequestLimitExceeded"),
            DAY + 700,
            DAY + 701,
            true,
        ),
        // an error series no behaviour covers
        start(
            "RunInstances",
            Some("AccessDenied"),
            DAY + 800,
            DAY + 801,
            true,
        ),
        // the incident: explained, neither false nor allowed
        start("StopInstances", None, DAY + 900, DAY + 902, true),
    ];
    let labels = vec![label(
        "burst",
        "StopInstances",
        None,
        DAY + 899,
        DAY + 910,
        Expect::Insight,
    )];
    let report =
        compare_with_behaviours(&labels, &behaviours, &scored(insights.clone()), 5).unwrap();
    let b = report.behaviours.as_ref().unwrap();
    let kind = |k: &str| b.kinds.iter().find(|x| x.kind == k).unwrap();
    assert_eq!(
        (kind("cron").false_insights, kind("cron").allowed_insights),
        (1, 0)
    );
    assert_eq!(
        (kind("step").false_insights, kind("step").allowed_insights),
        (1, 1)
    );
    assert_eq!(kind("step").episodes_per_change, Some(2.0));
    assert_eq!(kind("session").false_insights, 2);
    assert_eq!(kind("throttling").false_insights, 1);
    assert_eq!(b.unexplained, 2);
    // the allowed Start is not a false Insight; the incident's is neither
    assert_eq!(report.false_insights.len(), 7);
    assert_eq!(b.allowed.len(), 1);
    assert_eq!(b.allowed[0].2, "b2");
    assert_eq!(
        b.accounts,
        vec![AccountReport {
            account: "111122223333".into(),
            false_insights: 7,
            allowed_insights: 1,
        }]
    );
    let attributed: Vec<Option<&str>> = report
        .false_insights
        .iter()
        .map(|f| f.behaviour.as_deref())
        .collect();
    assert_eq!(
        attributed.iter().filter(|x| **x == Some("b2")).count(),
        1,
        "{attributed:?}"
    );
    // series-days: cron 3 days (cut at the trail's end: max_minute unknown here, so the day
    // after counts), the session one series from its start to a day after its end
    assert!((kind("cron").series_days - 4.0).abs() < 1e-9);
    assert!((kind("session").series_days - (10.0 + 1440.0) / 1440.0).abs() < 1e-9);
    assert!((kind("cron").false_per_1000_series_days - 250.0).abs() < 1e-9);
    // without behaviours the report is the old one: every unexplained Start is false
    let plain = compare(&labels, &scored(insights), 5).unwrap();
    assert_eq!(plain.false_insights.len(), 8);
    assert!(plain.behaviours.is_none());
}

#[test]
fn old_labels_without_behaviours_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels.json");
    std::fs::write(
        &path,
        r#"{"incidents":[{"kind":"x","start":"2024-03-11T00:00:00Z","end":"2024-03-11T00:10:00Z"}]}"#,
    )
    .unwrap();
    assert_eq!(read_labels(&path).unwrap().len(), 1);
    assert!(read_behaviours(&path).unwrap().is_empty());
}
