//! The three stages together: discover, load and parse, on fixture trees and on real data.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;

use super::*;
use crate::series::Minute;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn rec(n: u32) -> String {
    format!(
        r#"{{"eventVersion":"1.08","eventTime":"2023-07-10T11:{:02}:00Z","eventSource":"iam.amazonaws.com","eventName":"Call{n}","awsRegion":"us-east-1","recipientAccountId":"111122223333","readOnly":false,"managementEvent":true,"eventCategory":"Management","requestParameters":{{"pad":"{}"}}}}"#,
        n % 60,
        "p".repeat(200)
    )
}

fn records_object(range: std::ops::Range<u32>) -> String {
    let records: Vec<String> = range.map(rec).collect();
    format!(r#"{{"Records":[{}]}}"#, records.join(","))
}

/// Everything one input gave: records (as event names), the load error and the parse report.
struct Outcome {
    names: Vec<String>,
    load_error: Option<IngestError>,
    report: ParseReport,
}

fn ingest(file: &InputFile) -> Outcome {
    let mut buf = Vec::new();
    let load_error = load(file, &ReadLimits::default(), &mut buf).err();
    let ctx = ParseContext::new(&file.display, file.delivery_minute);
    let mut names = Vec::new();
    let report = parse(&buf, &ctx, &mut |r| names.push(r.event_name.into_owned()));
    Outcome {
        names,
        load_error,
        report,
    }
}

fn write(root: &Path, rel: &str, content: &[u8]) -> PathBuf {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn every_format_plain_and_gzipped() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let lines = format!("{}\n{}\n", rec(1), rec(2));
    let array = format!("[{},{}]", rec(1), rec(2));
    let cases: [(&str, String, Format); 3] = [
        ("records", records_object(1..3), Format::RecordsObject),
        ("lines", lines, Format::JsonLines),
        ("array", array, Format::JsonArray),
    ];
    for (name, content, format) in cases {
        // The names lie on purpose: gzip is detected from the content.
        let plain = write(root, &format!("{name}.json.gz"), content.as_bytes());
        let zipped = write(root, &format!("{name}.json"), &gzip(content.as_bytes()));
        for path in [plain, zipped] {
            let report = discover(std::slice::from_ref(&path));
            let outcome = ingest(&report.files[0]);
            assert!(outcome.load_error.is_none(), "{path:?}");
            assert_eq!(outcome.names, ["Call1", "Call2"], "{path:?}");
            assert_eq!(outcome.report.format, format, "{path:?}");
        }
    }
}

#[test]
fn multi_member_gzip_delivers_every_record() {
    let dir = tempfile::tempdir().unwrap();
    // A Records file compressed in two members (as pigz or a split upload may produce)...
    let text = records_object(0..10);
    let (head, tail) = text.split_at(text.len() / 2);
    let mut two_members = gzip(head.as_bytes());
    two_members.extend(gzip(tail.as_bytes()));
    let path = write(dir.path(), "split.json.gz", &two_members);
    let outcome = ingest(&discover(&[path]).files[0]);
    assert!(outcome.load_error.is_none());
    assert_eq!(outcome.names.len(), 10);
    // ...and two gzipped files concatenated (`cat a.gz b.gz`).
    let mut joined = gzip(records_object(0..3).as_bytes());
    joined.extend(gzip(records_object(3..5).as_bytes()));
    let path = write(dir.path(), "joined.json.gz", &joined);
    let outcome = ingest(&discover(&[path]).files[0]);
    assert_eq!(outcome.names, ["Call0", "Call1", "Call2", "Call3", "Call4"]);
    assert!(outcome.report.fatal.is_none());
}

#[test]
fn truncated_gzip_delivers_records_before_the_cut_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = records_object(0..2000);
    let compressed = gzip(text.as_bytes());
    let path = write(
        dir.path(),
        "cut.json.gz",
        &compressed[..compressed.len() / 2],
    );
    let outcome = ingest(&discover(&[path]).files[0]);
    let err = outcome.load_error.expect("a gzip error");
    assert!(matches!(err, IngestError::Gzip { .. }), "{err}");
    assert!(err.has_partial_content());
    // Most records before the cut are there, in order, and the file is reported damaged.
    assert!(outcome.names.len() > 100, "{}", outcome.names.len());
    assert!(outcome.names.len() < 2000);
    let expected: Vec<String> = (0..outcome.names.len() as u32)
        .map(|n| format!("Call{n}"))
        .collect();
    assert_eq!(outcome.names, expected);
    assert!(outcome.report.fatal.is_some());
    assert_eq!(outcome.report.records_skipped(), 0);
}

fn real_data() -> Option<PathBuf> {
    let candidates = [
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/datasets/real"
        )),
        PathBuf::from("/work/shared/datasets/real"),
    ];
    let found = candidates.into_iter().find(|p| p.is_dir());
    if found.is_none() {
        println!("note: shared/datasets/real not found; real-data test skipped");
    }
    found
}

#[test]
fn real_invictus_and_stratus_parse_cleanly() {
    let Some(real) = real_data() else {
        return;
    };
    let report = discover(&[real.join("invictus"), real.join("stratus")]);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.files.len(), 55 + 35);
    assert_eq!(
        report.ignored_other, 4,
        "README.md, LICENSE, NOTICE, LICENSE"
    );
    // Delivery-dated invictus files come after the undated stratus ones, in delivery order.
    let dated: Vec<Option<Minute>> = report.files.iter().map(|f| f.delivery_minute).collect();
    assert!(dated[..35].iter().all(Option::is_none));
    assert!(dated[35..]
        .windows(2)
        .all(|w| w[0].is_some() && w[0] <= w[1]));

    let target = chrono::DateTime::parse_from_rfc3339("2023-07-10T12:08:00Z")
        .unwrap()
        .timestamp()
        / 60;
    let mut totals: HashMap<&str, [u64; 4]> = HashMap::new();
    let mut buf = Vec::new();
    for file in &report.files {
        load(file, &ReadLimits::default(), &mut buf).unwrap();
        let ctx = ParseContext::new(&file.display, file.delivery_minute);
        let set = if file.display.contains("invictus") {
            "invictus"
        } else {
            "stratus"
        };
        let t = totals.entry(set).or_default();
        let parsed = parse(&buf, &ctx, &mut |r| {
            t[0] += 1;
            t[1] += u64::from(r.is_write_call());
            t[2] += u64::from(r.error_code.is_some());
            t[3] += u64::from(r.is_write_call() && r.minute == target);
        });
        assert!(
            parsed.fatal.is_none(),
            "{}: {:?}",
            file.display,
            parsed.fatal
        );
        assert_eq!(
            parsed.records_skipped(),
            0,
            "{}: {:?}",
            file.display,
            parsed.examples
        );
        assert_eq!(parsed.records_seen, parsed.records_ok, "{}", file.display);
        let expected = if set == "invictus" {
            Format::RecordsObject
        } else {
            Format::JsonArray
        };
        assert_eq!(parsed.format, expected, "{}", file.display);
    }
    assert_eq!(totals["invictus"], [2900, 574, 300, 165]);
    assert_eq!(totals["stratus"][0], 310);
}
