//! End to end, through the built binary: a generated archive with injected incidents gives each
//! incident as a Start/End pair on the right series near its true start; the same archive without
//! incidents gives no Insight; re-runs are byte-identical and never count a file twice.

mod common;

use std::path::{Path, PathBuf};

use common::{generated, json_lines, minute, trailsight};
use serde_json::Value;

const SEED: u64 = 7;
const SCALE: f64 = 0.5;

fn score(inputs: &[&Path], store: &Path, extra: &[&str]) -> (Vec<u8>, String, i32) {
    let mut args: Vec<String> = vec!["score".into(), "--no-progress".into()];
    args.push("--store".into());
    args.push(store.display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = trailsight(&argv);
    (
        out.stdout,
        String::from_utf8_lossy(&out.stderr).to_string(),
        out.status.code().unwrap_or(-1),
    )
}

fn details(r: &Value) -> &Value {
    &r["insightDetails"]
}

#[test]
fn every_injected_incident_is_found_as_a_start_end_pair_and_nothing_else() {
    let archive = generated(SEED, SCALE, true);
    let store = tempfile::tempdir().unwrap();
    let (stdout, stderr, code) = score(&[&archive], &store.path().join("db"), &[]);
    assert_eq!(code, 0, "{stderr}");
    let records = json_lines(&stdout);
    let labels: Value =
        serde_json::from_slice(&std::fs::read(archive.join("labels.json")).unwrap()).unwrap();
    let incidents = labels["incidents"].as_array().unwrap();
    assert!(incidents.len() >= 5);
    for inc in incidents {
        let same_series = |r: &&Value| {
            r["recipientAccountId"] == inc["account"]
                && r["awsRegion"] == inc["region"]
                && details(r)["eventSource"] == inc["eventSource"]
                && details(r)["eventName"] == inc["eventName"]
                && details(r)["insightType"] == inc["insightType"]
                && details(r).get("errorCode").unwrap_or(&Value::Null) == &inc["errorCode"]
        };
        let ours: Vec<&Value> = records.iter().filter(same_series).collect();
        let start = ours
            .iter()
            .find(|r| details(r)["state"] == "Start")
            .unwrap_or_else(|| panic!("no Start for {inc}"));
        let end = ours
            .iter()
            .find(|r| details(r)["state"] == "End")
            .unwrap_or_else(|| panic!("no End for {inc}"));
        let true_start = minute(inc["start"].as_str().unwrap());
        let found = minute(start["eventTime"].as_str().unwrap());
        assert!(
            (-2..=10).contains(&(found - true_start)),
            "{}: Start at {} for a true start at {}",
            inc["kind"],
            start["eventTime"],
            inc["start"]
        );
        assert_eq!(start["sharedEventID"], end["sharedEventID"]);
        assert_ne!(start["eventID"], end["eventID"]);
        assert!(minute(end["eventTime"].as_str().unwrap()) > found);
        let direction = &start["additionalEventData"]["direction"];
        assert_eq!(direction, &inc["direction"], "{}", inc["kind"]);
    }
    // Nothing fired outside the incidents.
    assert_eq!(records.len(), 2 * incidents.len(), "{records:#?}");
}

#[test]
fn the_same_archive_without_incidents_gives_no_insight() {
    let archive = generated(SEED, SCALE, false);
    let store = tempfile::tempdir().unwrap();
    let (stdout, stderr, code) = score(&[&archive], &store.path().join("db"), &[]);
    assert_eq!(code, 0, "{stderr}");
    let records = json_lines(&stdout);
    assert!(records.is_empty(), "false Insights: {records:#?}");
    assert!(stderr.contains("0 Start, 0 End"), "{stderr}");
}

#[test]
fn reruns_are_byte_identical_and_never_count_a_file_twice() {
    let archive = generated(SEED, SCALE, true);
    let dir = tempfile::tempdir().unwrap();
    let (first, _, _) = score(&[&archive], &dir.path().join("a"), &[]);
    let (second, _, _) = score(&[&archive], &dir.path().join("b"), &[]);
    assert!(!first.is_empty());
    assert_eq!(first, second, "two stores, same archive, different output");
    // Again on the first store: every file is already ingested, nothing is emitted again.
    let (again, stderr, code) = score(&[&archive], &dir.path().join("a"), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        again.is_empty(),
        "emitted again: {}",
        String::from_utf8_lossy(&again)
    );
    assert!(stderr.contains(" 0 read,"), "{stderr}");
    assert!(stderr.contains("already ingested"), "{stderr}");
}

/// Day folders (YYYY/MM/DD) of every account/region, split at `last_day` (inclusive).
fn day_folders(archive: &Path, last_day: &str) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut early = Vec::new();
    let mut late = Vec::new();
    for entry in walk_dirs(&archive.join("AWSLogs")) {
        let rel = entry
            .strip_prefix(archive)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let parts: Vec<&str> = rel.split('/').collect();
        // AWSLogs/<acct>/CloudTrail/<region>/YYYY/MM/DD
        if parts.len() == 7 {
            let day = format!("{}-{}-{}", parts[4], parts[5], parts[6]);
            if day.as_str() <= last_day {
                early.push(entry);
            } else {
                late.push(entry);
            }
        }
    }
    (early, late)
}

fn walk_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                out.push(e.path());
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn scoring_a_growing_archive_in_two_runs_equals_one_run() {
    let archive = generated(SEED, SCALE, true);
    let dir = tempfile::tempdir().unwrap();
    let (whole, _, _) = score(&[&archive], &dir.path().join("whole"), &[]);
    let (early, _) = day_folders(&archive, "2024-03-11");
    assert!(!early.is_empty());
    let store = dir.path().join("split");
    let early_refs: Vec<&Path> = early.iter().map(PathBuf::as_path).collect();
    let (first, stderr, code) = score(&early_refs, &store, &["--keep-pending"]);
    assert_eq!(code, 0, "{stderr}");
    let (rest, stderr, code) = score(&[&archive], &store, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("already ingested"), "{stderr}");
    let mut joined = first;
    joined.extend(rest);
    assert_eq!(
        String::from_utf8_lossy(&joined),
        String::from_utf8_lossy(&whole),
        "continuing from the store must give what one run gives"
    );
}

#[test]
fn insights_dir_holds_the_same_records_in_cloudtrail_layout() {
    let archive = generated(SEED, SCALE, true);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("insights");
    let (stdout, stderr, code) = score(
        &[&archive],
        &dir.path().join("db"),
        &["--insights-dir", out.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{stderr}");
    let expected = json_lines(&stdout);
    let mut read_back = Vec::new();
    for d in walk_dirs(&out) {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_file() {
                let rel = p.strip_prefix(&out).unwrap().to_string_lossy().to_string();
                let parts: Vec<&str> = rel.split('/').collect();
                assert_eq!(parts.len(), 8, "{rel}");
                assert_eq!(parts[0], "AWSLogs");
                assert_eq!(parts[2], "CloudTrail-Insight");
                assert!(
                    parts[7].contains("_CloudTrail-Insight_") && parts[7].ends_with(".json.gz")
                );
                let records =
                    trailsight::insight::read_insights(&std::fs::read(&p).unwrap()).unwrap();
                for r in records {
                    read_back.push(serde_json::to_value(&r).unwrap());
                }
            }
        }
    }
    let key = |v: &Value| v["eventID"].as_str().unwrap().to_string();
    let mut a: Vec<_> = expected.iter().map(key).collect();
    let mut b: Vec<_> = read_back.iter().map(key).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert_eq!(expected.len(), read_back.len());
}

#[test]
fn counts_older_than_the_retention_are_pruned() {
    let archive = generated(SEED, SCALE, true);
    let dir = tempfile::tempdir().unwrap();
    let mut engine = trailsight::pipeline::Engine::open(
        &dir.path().join("db"),
        trailsight::detect::Profile::builtin(),
    )
    .unwrap();
    // Asked for less than the floor (the 7-day window plus a day): the floor is kept.
    engine.set_retention(Some(2 * 1440));
    engine
        .score(&[archive], &common::batch_options(), &mut [])
        .unwrap();
    let start = minute("2024-03-04T00:00:00Z");
    let end = start + 9 * 1440;
    // The steady ECS heartbeat API has calls every minute of every day.
    let (id, _) = engine
        .registry()
        .series
        .iter()
        .enumerate()
        .find(|(_, k)| &*k.event_name == "SubmitTaskStateChange" && k.error_code.is_none())
        .unwrap();
    let store = engine.store();
    // Kept: the 7-day window plus a day before the last final minute.
    assert!(!store
        .counts(id as u32, end - 8 * 1440, end)
        .unwrap()
        .is_empty());
    // Pruned: the first day.
    let first_day = store.counts(id as u32, start, start + 1380).unwrap();
    assert!(
        first_day.is_empty(),
        "{} minutes of day 0 still stored",
        first_day.len()
    );
}
