//! Amazon Security Lake's CloudTrail data (OCSF 1.1 API Activity in Parquet, Security Lake's
//! folder layout): a CloudTrail archive converted by `datasets/to_security_lake.py` scores to the
//! same Insights as the archive itself, for management events and for data events, and a
//! Parquet file that is not Security Lake's (another schema, truncated) is reported by name
//! without changing the Insights of the good files beside it.
//!
//! The converter needs python3 with duckdb (CI installs duckdb==1.5.6): without it the tests are
//! skipped with a note, except in CI where they fail.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{json_lines, trailsight};

/// The converter, run on `archive` into `out`; false (with a note) when python3 or duckdb is
/// missing outside CI.
fn to_security_lake(archive: &Path, out: &Path) -> bool {
    let has_duckdb = Command::new("python3")
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_duckdb {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have python3 with duckdb (pip install duckdb==1.5.6)"
        );
        eprintln!("note: python3 with duckdb not found, test skipped");
        return false;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/to_security_lake.py");
    let o = Command::new("python3")
        .arg(script)
        .arg(archive)
        .arg(out)
        .output()
        .expect("run python3");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    true
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `score INPUT` into a new store: (exit code, Insights, standard error).
fn score(input: &Path, store: &Path, extra: &[&str]) -> (i32, Vec<serde_json::Value>, String) {
    let mut args = vec!["score", s(input), "--store", s(store), "--no-progress"];
    args.extend_from_slice(extra);
    let o = trailsight(&args);
    (
        o.status.code().unwrap_or(-1),
        json_lines(&o.stdout),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Every `.parquet` file under `dir`.
fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(".parquet") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The line of the summary that starts with `label`.
fn summary_line<'a>(stderr: &'a str, label: &str) -> &'a str {
    stderr
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} line in {stderr}"))
}

#[test]
fn a_generated_archive_and_its_security_lake_parquet_give_the_same_insights() {
    // The demo's archive (README: `generate --days 9 --seed 7 --scale 0.5`), with its incidents.
    let archive = common::generated(7, 0.5, true);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    if !to_security_lake(&archive, &lake) {
        return;
    }
    let files = parquet_files(&lake);
    assert!(!files.is_empty());
    assert!(
        files.iter().all(|f| {
            let f = f.to_string_lossy();
            f.contains("/aws/CLOUD_TRAIL_MGMT/2.0/region=")
                && f.contains("/accountId=")
                && f.contains("/eventDay=")
                && f.ends_with(".gz.parquet")
        }),
        "Security Lake's layout: {:?}",
        &files[..3.min(files.len())]
    );

    let (json_code, from_json, json_said) = score(&archive, &dir.path().join("json.db"), &[]);
    let (lake_code, from_lake, lake_said) = score(&lake, &dir.path().join("lake.db"), &[]);
    assert_eq!(json_code, 0, "{json_said}");
    assert_eq!(lake_code, 0, "{lake_said}");
    assert!(
        from_json.len() >= 10,
        "the demo's incidents give Insights: {json_said}"
    );
    // Same records counted, same Insights, in the same order.
    assert_eq!(
        summary_line(&json_said, "records"),
        summary_line(&lake_said, "records"),
        "{json_said}\n{lake_said}"
    );
    assert_eq!(from_json, from_lake);
}

const ACCOUNT: &str = "111122223333";
/// 2025-11-24T00:00Z, a Monday, in minutes since the epoch.
const START: i64 = 29_399_040;
const DAYS: i64 = 3;
/// A mass delete of objects: 40 minutes from 12:00 on the last day.
const DELETE_FROM: i64 = START + 2 * 1440 + 12 * 60;

fn time(minute: i64, second: i64) -> String {
    chrono::DateTime::from_timestamp(minute * 60 + second, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// An S3 object call (a data event) or an EC2 tag call (a management event).
fn record(minute: i64, second: i64, name: &str, role: &str, id: &str) -> String {
    let (source, management, category) = if name == "CreateTags" {
        ("ec2.amazonaws.com", true, "Management")
    } else {
        ("s3.amazonaws.com", false, "Data")
    };
    format!(
        r#"{{"eventVersion":"1.09","userIdentity":{{"type":"AssumedRole","principalId":"AROAEXAMPLE:{role}","arn":"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/s","accountId":"{ACCOUNT}","sessionContext":{{"sessionIssuer":{{"type":"Role","arn":"arn:aws:iam::{ACCOUNT}:role/{role}"}}}}}},"eventTime":"{}","eventSource":"{source}","eventName":"{name}","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","userAgent":"[aws-sdk-java/1.12.0]","requestParameters":{{"bucketName":"amzn-s3-demo-bucket","key":"k/{id}"}},"responseElements":null,"requestID":"R{id}","eventID":"{id}","readOnly":false,"resources":[{{"type":"AWS::S3::Object","ARN":"arn:aws:s3:::amzn-s3-demo-bucket/k/{id}"}}],"eventType":"AwsApiCall","managementEvent":{management},"recipientAccountId":"{ACCOUNT}","eventCategory":"{category}"}}"#,
        time(minute, second)
    )
}

/// Three days of an application writing objects (two PutObject a minute) and an operator
/// tagging instances (every ten minutes), then on the last day a stranger's mass delete (150
/// DeleteObject a minute for 40 minutes); CloudTrail's S3 layout, one file per 5 minutes.
fn data_archive(dir: &Path) {
    for slot in 0..DAYS * 24 * 12 {
        let first = START + slot * 5;
        let day = (first - START) / 1440;
        let folder = dir.join(format!(
            "AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2025/11/{}",
            24 + day
        ));
        std::fs::create_dir_all(&folder).unwrap();
        let mut records = Vec::new();
        for minute in first..first + 5 {
            for n in 0..2 {
                let id = format!("p-{minute}-{n}");
                records.push(record(minute, 10 + n * 20, "PutObject", "app", &id));
            }
            if minute % 10 == 0 {
                let id = format!("m-{minute}");
                records.push(record(minute, 30, "CreateTags", "ops", &id));
            }
            if (DELETE_FROM..DELETE_FROM + 40).contains(&minute) {
                for n in 0..150 {
                    let id = format!("d-{minute}-{n}");
                    records.push(record(minute, n % 60, "DeleteObject", "intruder", &id));
                }
            }
        }
        let delivered = first + 7;
        let file = folder.join(format!(
            "{ACCOUNT}_CloudTrail_us-east-1_{}_{slot:05}.json",
            chrono::DateTime::from_timestamp(delivered * 60, 0)
                .unwrap()
                .format("%Y%m%dT%H%MZ")
        ));
        std::fs::write(file, format!(r#"{{"Records":[{}]}}"#, records.join(","))).unwrap();
    }
}

#[test]
fn management_and_data_events_in_security_lake_give_the_same_insights_as_cloudtrail() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("trail");
    data_archive(&archive);
    let lake = dir.path().join("lake");
    if !to_security_lake(&archive, &lake) {
        return;
    }
    let files = parquet_files(&lake);
    let under = |source: &str| {
        files
            .iter()
            .filter(|f| f.to_string_lossy().contains(&format!("/aws/{source}/2.0/")))
            .count()
    };
    assert!(
        under("CLOUD_TRAIL_MGMT") > 0 && under("S3_DATA") > 0,
        "{files:?}"
    );

    let profile = dir.path().join("data.toml");
    std::fs::write(
        &profile,
        "[ingest]\nevent_categories = [\"management\", \"data\"]\n",
    )
    .unwrap();
    let with_data = ["--profile", s(&profile)];
    let (json_code, from_json, json_said) =
        score(&archive, &dir.path().join("json.db"), &with_data);
    let (lake_code, from_lake, lake_said) = score(&lake, &dir.path().join("lake.db"), &with_data);
    assert_eq!((json_code, lake_code), (0, 0), "{json_said}\n{lake_said}");
    assert!(
        from_json
            .iter()
            .any(|r| r["insightDetails"]["sourceEventCategory"] == "Data"
                && r["insightDetails"]["state"] == "Start"),
        "the mass delete is a data-event Insight: {from_json:?}"
    );
    assert_eq!(
        summary_line(&json_said, "records"),
        summary_line(&lake_said, "records")
    );
    assert_eq!(from_json, from_lake);

    // The default profile (management only) ignores the S3 data events in both forms.
    let (_, default_json, _) = score(&archive, &dir.path().join("json-mgmt.db"), &[]);
    let (_, default_lake, _) = score(&lake, &dir.path().join("lake-mgmt.db"), &[]);
    assert_eq!(default_json, default_lake);
    assert!(default_lake
        .iter()
        .all(|r| r["insightDetails"]["sourceEventCategory"] == "Management"));
}

#[test]
fn a_parquet_file_of_another_schema_or_truncated_is_reported_and_the_good_files_still_count() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("trail");
    data_archive(&archive);
    let lake = dir.path().join("lake");
    if !to_security_lake(&archive, &lake) {
        return;
    }
    let profile = dir.path().join("data.toml");
    std::fs::write(
        &profile,
        "[ingest]\nevent_categories = [\"management\", \"data\"]\n",
    )
    .unwrap();
    let with_data = ["--profile", s(&profile)];
    let (code, good, _) = score(&lake, &dir.path().join("good.db"), &with_data);
    assert_eq!(code, 0);
    assert!(!good.is_empty());

    // Beside the good files: a table of another schema, in a Security Lake folder, and a
    // Parquet file cut in half (its magic bytes say Parquet, whatever its name).
    let day = lake.join(format!(
        "aws/CLOUD_TRAIL_MGMT/2.0/region=us-east-1/accountId={ACCOUNT}/eventDay=20251125"
    ));
    let wrong = day.join("0f0e0d0c-wrong-schema.gz.parquet");
    let whole = dir.path().join("whole.parquet");
    let o = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import duckdb\n\
             duckdb.sql(\"COPY (SELECT 1 AS minute, 'x' AS name) TO '{}' (FORMAT PARQUET)\")\n\
             duckdb.sql(\"COPY (SELECT range AS n, 'v' || range AS s FROM range(5000)) TO '{}' (FORMAT PARQUET)\")",
            s(&wrong),
            s(&whole)
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&whole).unwrap();
    let truncated = day.join("truncated-object");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();

    let inputs_store = dir.path().join("bad.db");
    let o = trailsight(&[
        "score",
        s(&lake),
        s(&truncated),
        "--store",
        s(&inputs_store),
        "--no-progress",
        "--profile",
        s(&profile),
    ]);
    let said = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "input failed: {said}");
    assert!(
        said.contains("0f0e0d0c-wrong-schema.gz.parquet")
            && said.contains("not Security Lake OCSF API Activity")
            && said.contains("no column class_uid"),
        "{said}"
    );
    assert!(
        said.contains("truncated-object") && said.contains("not a readable Parquet file"),
        "{said}"
    );
    assert_eq!(json_lines(&o.stdout), good, "the good files' Insights");
}

#[test]
fn watch_lists_a_security_lake_bucket_and_writes_what_score_writes_on_its_copy() {
    let Some(server) = common::start_moto() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Two days, the incidents on the second, delivered every 6 hours (few objects, so that each
    // is put in a second of its own: S3's last-modified times, which order a lake's objects,
    // have whole seconds).
    let generated = dir.path().join("generated");
    let mut opts = trailsight::generate::GenerateOptions::new(generated.clone(), 2, 11);
    opts.scale = 0.5;
    opts.incident_after_days = 1;
    trailsight::generate::generate(&opts).unwrap();
    let archive = common::regrouped(&generated, &dir.path().join("archive"), 6);
    let lake = dir.path().join("lake");
    if !to_security_lake(&archive, &lake) {
        return;
    }
    // What `score` writes on the copy (files ordered by their modification times).
    let (code, expected, said) = score(&lake, &dir.path().join("score.db"), &["--keep-pending"]);
    assert_eq!(code, 0, "{said}");
    assert!(expected.len() >= 2, "the incidents give Insights: {said}");

    // The lake's bucket, its objects put in the order Security Lake wrote them.
    let mut files = parquet_files(&lake);
    files.sort_by_key(|f| std::fs::metadata(f).unwrap().modified().unwrap());
    let list = dir.path().join("upload.txt");
    let lines: Vec<String> = files
        .iter()
        .map(|f| {
            format!(
                "{}\t{}",
                f.display(),
                f.strip_prefix(&lake).unwrap().display()
            )
        })
        .collect();
    std::fs::write(&list, lines.join("\n")).unwrap();
    common::boto(
        &server.endpoint,
        &format!(
            "import time\n\
             s3.create_bucket(Bucket='aws-security-data-lake-us-east-1-abc')\n\
             for line in open({list:?}):\n\
             \x20   time.sleep(1.02 - time.time() % 1.0)\n\
             \x20   path, key = line.rstrip('\\n').split('\\t')\n\
             \x20   s3.put_object(Bucket='aws-security-data-lake-us-east-1-abc', Key=key, Body=open(path, 'rb').read())"
        ),
    );
    let first_day = files[0]
        .to_string_lossy()
        .split("eventDay=")
        .nth(1)
        .map(|d| format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..8]))
        .unwrap();
    let out = dir.path().join("watch.jsonl");
    let mut c = Command::new(env!("CARGO_BIN_EXE_trailsight"));
    c.args([
        "watch",
        "s3://aws-security-data-lake-us-east-1-abc/aws/CLOUD_TRAIL_MGMT/2.0/",
        "--endpoint-url",
        &server.endpoint,
        "--once",
        "--wait-for-final",
        "--since",
        &first_day,
        "--store",
    ])
    .arg(dir.path().join("watch.db"))
    .arg("--out")
    .arg(&out);
    for (k, v) in common::AWS_ENV {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json_lines(&std::fs::read(&out).unwrap()), expected);
}
