//! Data events (AWS Insights analyses them since November 2025): a profile that lists `data` in
//! `ingest.event_categories` counts write data calls and data calls with an errorCode into series
//! of their own, and writes their Insights with `sourceEventCategory: "Data"`, as AWS does. The
//! default profile (management only) ignores them, as before. CloudTrail's 5-minute data-event
//! summaries (`AwsAggregatedEvent`) and network-activity events are never counted, and the
//! summary says how many there were.

mod common;

use std::path::Path;

use common::{json_lines, trailsight};

const ACCOUNT: &str = "111122223333";
/// 2025-11-24T00:00Z, a Monday, in minutes since the epoch.
const START: i64 = 29_399_040;
const DAYS: i64 = 3;
/// The mass delete: 40 minutes from 12:00 on the last day.
const DELETE_FROM: i64 = START + 2 * 1440 + 12 * 60;
const DELETE_MINUTES: i64 = 40;

fn time(minute: i64, second: i64) -> String {
    chrono::DateTime::from_timestamp(minute * 60 + second, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// An S3 object call, as a data event (the shape of the CloudTrail user guide's example).
fn s3_data(minute: i64, second: i64, name: &str, role: &str, id: &str) -> String {
    format!(
        r#"{{"eventVersion":"1.09","userIdentity":{{"type":"AssumedRole","arn":"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/s","accountId":"{ACCOUNT}","sessionContext":{{"sessionIssuer":{{"type":"Role","arn":"arn:aws:iam::{ACCOUNT}:role/{role}"}}}}}},"eventTime":"{}","eventSource":"s3.amazonaws.com","eventName":"{name}","awsRegion":"us-east-1","userAgent":"[aws-sdk-java/1.12.0]","requestParameters":{{"bucketName":"amzn-s3-demo-bucket","key":"k/{id}"}},"responseElements":null,"eventID":"{id}","readOnly":false,"resources":[{{"type":"AWS::S3::Object","ARN":"arn:aws:s3:::amzn-s3-demo-bucket/k/{id}"}}],"eventType":"AwsApiCall","managementEvent":false,"recipientAccountId":"{ACCOUNT}","eventCategory":"Data"}}"#,
        time(minute, second)
    )
}

/// A write management call.
fn management(minute: i64, id: &str) -> String {
    format!(
        r#"{{"eventVersion":"1.09","userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::{ACCOUNT}:user/ops","accountId":"{ACCOUNT}"}},"eventTime":"{}","eventSource":"ec2.amazonaws.com","eventName":"CreateTags","awsRegion":"us-east-1","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"{ACCOUNT}","eventCategory":"Management","eventID":"{id}"}}"#,
        time(minute, 30)
    )
}

/// An aggregated data-event summary and a network-activity event (never counted).
fn not_calls(minute: i64, id: &str) -> [String; 2] {
    [
        format!(
            r#"{{"eventVersion":"1.11","eventTime":"{}","eventSource":"s3.amazonaws.com","eventName":"DeleteObject","awsRegion":"us-east-1","eventType":"AwsAggregatedEvent","eventCategory":"Data","managementEvent":false,"readOnly":false,"recipientAccountId":"{ACCOUNT}","eventID":"agg-{id}","summary":{{"count":5000}}}}"#,
            time(minute, 0)
        ),
        format!(
            r#"{{"eventVersion":"1.09","userIdentity":{{"type":"AWSAccount","accountId":"444455556666"}},"eventTime":"{}","eventSource":"s3.amazonaws.com","eventName":"DeleteObject","awsRegion":"us-east-1","eventType":"AwsVpceEvent","eventCategory":"NetworkActivity","managementEvent":false,"readOnly":false,"recipientAccountId":"{ACCOUNT}","eventID":"net-{id}","errorCode":"VpceAccessDenied"}}"#,
            time(minute, 1)
        ),
    ]
}

/// Three days of an application writing objects (two PutObject a minute) and an operator
/// tagging (one CreateTags every ten minutes), every five minutes an aggregated summary and a
/// network-activity event, and on the last day a stranger's mass delete: 150 DeleteObject a
/// minute for 40 minutes. One delivery file an hour.
fn archive(dir: &Path) -> usize {
    let mut not_call_records = 0;
    for hour in 0..DAYS * 24 {
        let folder = dir.join(format!(
            "AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2025/11/{}",
            24 + hour / 24
        ));
        std::fs::create_dir_all(&folder).unwrap();
        let mut records = Vec::new();
        for minute in START + hour * 60..START + hour * 60 + 60 {
            for n in 0..2 {
                records.push(s3_data(
                    minute,
                    10 + n * 20,
                    "PutObject",
                    "app",
                    &format!("p-{minute}-{n}"),
                ));
            }
            if minute % 10 == 0 {
                records.push(management(minute, &format!("m-{minute}")));
            }
            if minute % 5 == 0 {
                records.extend(not_calls(minute, &minute.to_string()));
                not_call_records += 2;
            }
            if (DELETE_FROM..DELETE_FROM + DELETE_MINUTES).contains(&minute) {
                for n in 0..150 {
                    records.push(s3_data(
                        minute,
                        n % 60,
                        "DeleteObject",
                        "intruder",
                        &format!("d-{minute}-{n}"),
                    ));
                }
            }
        }
        let delivered = START + hour * 60 + 64;
        let file = folder.join(format!(
            "{ACCOUNT}_CloudTrail_us-east-1_{}_{hour:04}.json",
            chrono::DateTime::from_timestamp(delivered * 60, 0)
                .unwrap()
                .format("%Y%m%dT%H%MZ")
        ));
        std::fs::write(file, format!(r#"{{"Records":[{}]}}"#, records.join(","))).unwrap();
    }
    not_call_records
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn data_events_are_analysed_when_the_profile_says_so_and_written_as_aws_does() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("trail");
    let not_calls = archive(&input);
    let profile = dir.path().join("data.toml");
    std::fs::write(
        &profile,
        "[ingest]\nevent_categories = [\"management\", \"data\"]\n",
    )
    .unwrap();
    let score = |store: &str, extra: &[&str]| {
        let store = dir.path().join(store);
        let mut args = vec!["score", s(&input), "--store", s(&store), "--no-progress"];
        args.extend_from_slice(extra);
        let o = trailsight(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (
            json_lines(&o.stdout),
            String::from_utf8_lossy(&o.stderr).into_owned(),
            store,
        )
    };

    // The default profile: management events only, as AWS's default.
    let (default, said, _) = score("management.db", &[]);
    assert!(
        default
            .iter()
            .all(|r| r["insightDetails"]["sourceEventCategory"] == "Management"),
        "{default:?}"
    );
    assert!(
        !default
            .iter()
            .any(|r| r["insightDetails"]["eventName"] == "DeleteObject"),
        "data events are not analysed by default"
    );
    let management_calls = DAYS * 1440 / 10;
    assert!(
        said.contains(&format!("{management_calls} write calls")),
        "{said}"
    );
    for (n, what) in [
        (
            not_calls / 2,
            "aggregated data-event summary (AwsAggregatedEvent), never counted",
        ),
        (
            not_calls / 2,
            "network-activity event (not an API call), never counted",
        ),
    ] {
        assert!(
            said.contains(&format!("ignored   {n} records: {what}")),
            "{said}"
        );
    }

    // Data events on: the mass delete is a call-rate Insight of the data event series.
    let (both, said, store) = score("data.db", &["--profile", s(&profile)]);
    let deletes: Vec<_> = both
        .iter()
        .filter(|r| r["insightDetails"]["eventName"] == "DeleteObject")
        .collect();
    let states: Vec<_> = deletes
        .iter()
        .map(|r| r["insightDetails"]["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["Start", "End"], "{both:?}");
    let start = deletes[0];
    let details = &start["insightDetails"];
    assert_eq!(details["sourceEventCategory"], "Data");
    assert_eq!(details["insightType"], "ApiCallRateInsight");
    assert_eq!(details["eventSource"], "s3.amazonaws.com");
    assert_eq!(start["eventCategory"], "Insight");
    assert_eq!(start["eventType"], "AwsCloudTrailInsight");
    assert_eq!(start["recipientAccountId"], ACCOUNT);
    assert_eq!(start["sharedEventID"], deletes[1]["sharedEventID"]);
    // Within two minutes of the first delete, and named by its caller.
    let began = common::minute(start["eventTime"].as_str().unwrap());
    assert!((DELETE_FROM..=DELETE_FROM + 2).contains(&began), "{start}");
    let callers = details["insightContext"]["attributions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["attribute"] == "userIdentityArn")
        .unwrap();
    assert_eq!(
        callers["insight"][0]["value"],
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/intruder/s")
    );
    // Every Insight of the application's steady writes' series or of the management series is
    // the same as with the default profile: data series are series of their own.
    let management_only = |records: &[serde_json::Value]| -> Vec<serde_json::Value> {
        records
            .iter()
            .filter(|r| r["insightDetails"]["sourceEventCategory"] == "Management")
            .cloned()
            .collect()
    };
    assert_eq!(management_only(&both), management_only(&default));
    assert!(
        !both
            .iter()
            .any(|r| r["insightDetails"]["eventName"] == "PutObject"),
        "steady writes are no Insight: {both:?}"
    );
    let data_calls = DAYS * 1440 * 2 + DELETE_MINUTES * 150;
    assert!(
        said.contains(&format!("{} write calls", management_calls + data_calls)),
        "{said}"
    );
    // The series list says which series count data events.
    let o = trailsight(&["series", "--store", s(&store)]);
    let listed = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let delete_line = listed
        .lines()
        .find(|l| l.contains("DeleteObject"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(delete_line.split('\t').nth(8), Some("data"), "{listed}");
    assert!(listed.starts_with("insightType\t"), "{listed}");
}

#[test]
fn a_profile_without_event_categories_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("none.toml");
    std::fs::write(&profile, "[ingest]\nevent_categories = []\n").unwrap();
    let o = trailsight(&[
        "score",
        s(dir.path()),
        "--store",
        s(&dir.path().join("db")),
        "--profile",
        s(&profile),
    ]);
    assert!(!o.status.success());
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(said.contains("ingest.event_categories"), "{said}");
    let wrong = dir.path().join("wrong.toml");
    std::fs::write(&wrong, "[ingest]\nevent_categories = [\"insight\"]\n").unwrap();
    let o = trailsight(&[
        "score",
        s(dir.path()),
        "--store",
        s(&dir.path().join("db")),
        "--profile",
        s(&wrong),
    ]);
    assert!(!o.status.success());
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(said.contains("event_categories"), "{said}");
}
