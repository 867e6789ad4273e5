//! CloudTrail delivered through CloudWatch Logs: a trail's archive rewritten as CloudWatch Logs
//! subscription messages, each gzipped and concatenated as Firehose writes them to S3 (files
//! without a suffix, with control messages among them), scores to the same Insights as the
//! archive itself; the same messages as `{"awslogs":{"data":...}}` lines on standard input too.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use common::{generated, json_lines, trailsight};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// The delivery files of an archive, in the order `score` reads them (by the delivery time in
/// their names, then by path).
fn delivery_files(archive: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(archive.join("AWSLogs"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().to_path_buf())
        .filter(|p| {
            p.to_string_lossy().ends_with(".json.gz")
                && p.to_string_lossy().contains("/CloudTrail/")
        })
        .collect();
    let delivered = |p: &PathBuf| {
        p.file_name()
            .unwrap()
            .to_string_lossy()
            .split('_')
            .find(|part| part.len() == 14 && part.ends_with('Z') && part.as_bytes()[8] == b'T')
            .unwrap_or("")
            .to_string()
    };
    files.sort_by_key(|p| (delivered(p), p.clone()));
    files
}

fn records_of(file: &Path) -> Vec<serde_json::Value> {
    let mut text = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(file).unwrap())
        .read_to_end(&mut text)
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&text).unwrap();
    doc["Records"].as_array().cloned().unwrap_or_default()
}

fn message(records: &[serde_json::Value]) -> String {
    serde_json::json!({
        "messageType": "DATA_MESSAGE",
        "owner": "418295730164",
        "logGroup": "aws-cloudtrail-logs",
        "logStream": "418295730164_CloudTrail_us-east-1",
        "subscriptionFilters": ["to-firehose"],
        "logEvents": records.iter().enumerate().map(|(i, r)| serde_json::json!({
            "id": i.to_string(),
            "timestamp": 0,
            "message": r.to_string(),
        })).collect::<Vec<_>>(),
    })
    .to_string()
}

const CONTROL: &str = r#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1,"message":"CWL CONTROL MESSAGE: Checking health of destination Firehose."}]}"#;

#[test]
fn firehose_files_of_cloudwatch_logs_messages_score_as_the_archive_does() {
    let archive = generated(7, 0.5, true);
    let dir = tempfile::tempdir().unwrap();
    let o = trailsight(&[
        "score",
        archive.to_str().unwrap(),
        "--store",
        dir.path().join("a.db").to_str().unwrap(),
        "--no-progress",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let expected = json_lines(&o.stdout);
    assert!(!expected.is_empty());

    // One Firehose object per delivery file: a gzip member per message of at most 100 events,
    // a control message in every tenth object, no suffix, in a YYYY/MM/DD/HH layout.
    let firehose = dir.path().join("firehose");
    let mut records_total = 0;
    for (n, file) in delivery_files(&archive).iter().enumerate() {
        let records = records_of(file);
        records_total += records.len();
        let mut object = Vec::new();
        if n % 10 == 0 {
            object.extend(gzip(CONTROL.as_bytes()));
        }
        for chunk in records.chunks(100) {
            object.extend(gzip(message(chunk).as_bytes()));
        }
        let folder = firehose.join("2024/03/01/00");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(format!("trail-to-s3-1-{n:08}-7d2f")), object).unwrap();
    }
    let o = trailsight(&[
        "score",
        firehose.to_str().unwrap(),
        "--store",
        dir.path().join("b.db").to_str().unwrap(),
        "--no-progress",
    ]);
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{said}");
    assert_eq!(json_lines(&o.stdout), expected);
    assert!(said.contains(&format!("{records_total} read")), "{said}");
    assert!(said.contains("CloudWatch Logs control message"), "{said}");
}

#[test]
fn awslogs_payloads_on_standard_input_are_read() {
    use base64::Engine as _;
    let archive = generated(7, 0.5, true);
    let files = delivery_files(&archive);
    // The first hundred delivery files' records as payloads, one per line.
    let mut lines = String::new();
    let mut total = 0;
    for file in files.iter().take(100) {
        let records = records_of(file);
        total += records.len();
        let data =
            base64::engine::general_purpose::STANDARD.encode(gzip(message(&records).as_bytes()));
        lines.push_str(&format!("{{\"awslogs\":{{\"data\":\"{data}\"}}}}\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("payloads.jsonl");
    std::fs::write(&input, &lines).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_trailsight"))
        .args([
            "score",
            "-",
            "--store",
            dir.path().join("db").to_str().unwrap(),
            "--no-progress",
        ])
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{said}");
    assert!(said.contains(&format!("{total} read")), "{said}");
}
