//! End-to-end tests of `generate`: files, delivery counts, determinism, incidents and labels.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use flate2::read::GzDecoder;
use serde_json::Value;

use super::*;

/// One record as the tests look at it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    account: String,
    region: String,
    event_source: String,
    event_name: String,
    error_code: Option<String>,
    minute: Minute,
    second: i64,
    arn: String,
}

/// Everything read back from a generated directory.
struct Trail {
    /// Relative file path -> file bytes.
    files: BTreeMap<String, Vec<u8>>,
    /// eventID -> (record, delivery minutes of every copy).
    records: BTreeMap<String, (Seen, Vec<Minute>)>,
}

fn minute_of(rfc3339: &str) -> Minute {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp()
        .div_euclid(60)
}

fn options(out: &Path, incidents: bool) -> GenerateOptions {
    let mut opts = GenerateOptions::new(out.to_path_buf(), 1, 42);
    opts.scale = 0.05;
    opts.incidents = incidents;
    opts.incident_after_days = 0;
    opts
}

/// Checks the S3 key layout and returns (account, region, delivery minute).
fn parse_key(rel: &str) -> (String, String, Minute) {
    let parts: Vec<&str> = rel.split('/').collect();
    assert_eq!(parts.len(), 8, "{rel}");
    assert_eq!(parts[0], "AWSLogs");
    let (account, region) = (parts[1], parts[3]);
    assert!(account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(parts[2], "CloudTrail");
    let name = parts[7].strip_suffix(".json.gz").expect(rel);
    let fields: Vec<&str> = name.split('_').collect();
    assert_eq!(fields.len(), 5, "{rel}");
    assert_eq!(fields[0], account);
    assert_eq!(fields[1], "CloudTrail");
    assert_eq!(fields[2], region);
    let stamp = fields[3];
    assert_eq!(stamp.len(), 14, "{rel}");
    assert_eq!(&stamp[0..4], parts[4]);
    assert_eq!(&stamp[4..6], parts[5]);
    assert_eq!(&stamp[6..8], parts[6]);
    assert_eq!(fields[4].len(), 16);
    assert!(fields[4].bytes().all(|b| b.is_ascii_alphanumeric()));
    let rfc = format!(
        "{}-{}-{}T{}:{}:00Z",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13]
    );
    let minute = minute_of(&rfc);
    assert_eq!(minute % 5, 0, "{rel}");
    (account.to_string(), region.to_string(), minute)
}

fn read_trail(dir: &Path) -> Trail {
    let mut files = BTreeMap::new();
    let mut records: BTreeMap<String, (Seen, Vec<Minute>)> = BTreeMap::new();
    for entry in walkdir::WalkDir::new(dir.join("AWSLogs")) {
        let entry = entry.unwrap();
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let (account, region, delivered) = parse_key(&rel);
        let bytes = std::fs::read(entry.path()).unwrap();
        let mut text = String::new();
        GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        let list = doc
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.get("Records"))
            .and_then(Value::as_array)
            .expect("{\"Records\":[...]}");
        assert!(!list.is_empty(), "empty file {rel}");
        for r in list {
            let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap().to_string();
            assert_eq!(s("recipientAccountId"), account);
            assert_eq!(s("awsRegion"), region);
            assert_eq!(s("eventType"), "AwsApiCall");
            assert!(r.get("readOnly").unwrap().is_boolean());
            let time = s("eventTime");
            let seen = Seen {
                account: account.clone(),
                region: region.clone(),
                event_source: s("eventSource"),
                event_name: s("eventName"),
                error_code: r
                    .get("errorCode")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                minute: minute_of(&time),
                second: time[17..19].parse().unwrap(),
                arn: r
                    .pointer("/userIdentity/arn")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            };
            if seen.error_code.is_some() {
                assert!(r.get("errorMessage").is_some());
            }
            // delivered at least 2 minutes after the call
            assert!(
                delivered * 60 >= seen.minute * 60 + seen.second + 120,
                "{rel}"
            );
            let slot = records
                .entry(s("eventID"))
                .or_insert_with(|| (seen.clone(), Vec::new()));
            assert_eq!(slot.0, seen, "same eventID, different record");
            slot.1.push(delivered);
        }
        files.insert(rel, bytes);
    }
    Trail { files, records }
}

struct Fixture {
    _dir: tempfile::TempDir,
    summary: GenerateSummary,
    trail: Trail,
    labels_path: PathBuf,
}

fn fixture(incidents: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(&options(dir.path(), incidents)).unwrap();
    let trail = read_trail(dir.path());
    Fixture {
        labels_path: dir.path().join("labels.json"),
        _dir: dir,
        summary,
        trail,
    }
}

fn with_incidents() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| fixture(true))
}

fn without_incidents() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| fixture(false))
}

#[test]
fn same_options_give_identical_files() {
    let first = with_incidents();
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(&options(dir.path(), true)).unwrap();
    assert_eq!(summary, first.summary);
    let again = read_trail(dir.path());
    assert_eq!(
        again.files.keys().collect::<Vec<_>>(),
        first.trail.files.keys().collect::<Vec<_>>()
    );
    assert!(again.files == first.trail.files, "file bytes differ");
    assert_eq!(
        std::fs::read(dir.path().join("labels.json")).unwrap(),
        std::fs::read(&first.labels_path).unwrap()
    );
    // and a different seed gives a different trail
    let other = tempfile::tempdir().unwrap();
    let mut opts = options(other.path(), true);
    opts.seed = 43;
    opts.scale = 0.01;
    generate(&opts).unwrap();
    assert!(read_trail(other.path()).files != first.trail.files);
}

#[test]
fn a_folder_holding_another_trail_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path(), false);
    opts.scale = 0.01;
    generate(&opts).unwrap();
    let before = read_trail(dir.path()).files;
    // The same options again rewrite the same trail.
    generate(&opts).unwrap();
    assert!(read_trail(dir.path()).files == before);
    // Another seed would mix two trails: refused, nothing written.
    opts.seed = 43;
    let err = generate(&opts).unwrap_err();
    assert!(
        matches!(err, GenerateError::OtherTrailPresent { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("choose an empty folder"), "{err}");
    assert!(read_trail(dir.path()).files == before);
    // A folder without AWSLogs/ (or with an empty one) is fine.
    let empty = tempfile::tempdir().unwrap();
    std::fs::create_dir(empty.path().join("AWSLogs")).unwrap();
    generate(&options(empty.path(), false)).unwrap();
}

#[test]
fn files_and_delivery_counts_match_the_summary() {
    let f = with_incidents();
    let t = &f.trail;
    assert_eq!(f.summary.files, t.files.len() as u64);
    assert_eq!(f.summary.records, t.records.len() as u64);
    let duplicates: u64 = t.records.values().map(|(_, d)| d.len() as u64 - 1).sum();
    assert_eq!(f.summary.duplicates, duplicates);
    assert!(
        duplicates > 0,
        "no duplicate in {} records",
        t.records.len()
    );
    // a duplicate is the same record in a later file
    let (_, copies) = t.records.values().find(|(_, d)| d.len() == 2).unwrap();
    assert_ne!(copies[0], copies[1]);
    let late = t
        .records
        .values()
        .filter(|(r, d)| {
            let first = d.iter().min().unwrap();
            *first * 60 - (r.minute * 60 + r.second) >= 20 * 60
        })
        .count() as u64;
    assert_eq!(f.summary.late_records, late);
    assert!(late > 0);
    // every account-region has files; IAM only in us-east-1
    let mut regions: Vec<(String, String)> = t
        .records
        .values()
        .map(|(r, _)| (r.account.clone(), r.region.clone()))
        .collect();
    regions.sort();
    regions.dedup();
    assert_eq!(regions.len(), 3);
    assert!(t
        .records
        .values()
        .all(|(r, _)| r.event_source != "iam.amazonaws.com" || r.region == "us-east-1"));
}

fn window(inc: &Incident) -> (Minute, Minute) {
    (minute_of(&inc.start), minute_of(&inc.end))
}

fn matches(inc: &Incident, r: &Seen) -> bool {
    r.account == inc.account
        && r.region == inc.region
        && r.event_source == inc.event_source
        && r.event_name == inc.event_name
        && (inc.error_code.is_none() || r.error_code == inc.error_code)
}

#[test]
fn background_is_identical_without_incidents() {
    let with = &with_incidents().trail.records;
    let without = &without_incidents().trail.records;
    let incidents = &with_incidents().summary.incidents;
    assert!(without_incidents().summary.incidents.is_empty());
    let in_incident = |r: &Seen| {
        incidents.iter().any(|inc| {
            let (s, e) = window(inc);
            (s..e).contains(&r.minute)
                && r.account == inc.account
                && r.region == inc.region
                && r.event_source == inc.event_source
                && r.event_name == inc.event_name
        })
    };
    // every background record is there, except the dropped ones
    let mut dropped = 0;
    for (id, (r, _)) in without {
        match with.get(id) {
            Some((same, _)) => assert_eq!(same, r),
            None => {
                assert!(in_incident(r), "background record {id} lost: {r:?}");
                dropped += 1;
            }
        }
    }
    assert!(dropped > 0, "the api_drop incident dropped nothing");
    // every extra record belongs to an incident
    let extra: Vec<&Seen> = with
        .iter()
        .filter(|(id, _)| !without.contains_key(*id))
        .map(|(_, (r, _))| r)
        .collect();
    assert!(!extra.is_empty());
    assert!(extra.iter().all(|r| in_incident(r)));
    // an API no incident touches has exactly the same count
    let count = |records: &BTreeMap<String, (Seen, Vec<Minute>)>| {
        records
            .values()
            .filter(|(r, _)| r.event_name == "UpdateInstanceInformation")
            .count()
    };
    assert!(count(without) > 0);
    assert_eq!(count(with), count(without));
}

#[test]
fn labels_round_trip_and_each_incident_is_in_the_trail() {
    let f = with_incidents();
    let labels = read_labels(&f.labels_path).unwrap();
    assert_eq!(labels.incidents, f.summary.incidents);
    assert_eq!(labels.generator["seed"], 42);
    let text = std::fs::read_to_string(&f.labels_path).unwrap();
    assert!(text.contains("\"insightType\": \"ApiErrorRateInsight\""));
    assert!(text.contains("\"eventSource\""));

    let kinds: Vec<&str> = labels.incidents.iter().map(|i| i.kind.as_str()).collect();
    for kind in INCIDENT_KINDS {
        assert!(kinds.contains(&kind), "{kind} missing");
    }
    let day_start = f
        .trail
        .records
        .values()
        .map(|(r, _)| r.minute)
        .min()
        .unwrap();
    let day_end = day_start + MINUTES_PER_DAY;
    for inc in &labels.incidents {
        let (start, end) = window(inc);
        assert!(
            start < end && start >= day_start && end <= day_end,
            "{inc:?}"
        );
        assert_eq!(
            inc.error_code.is_some(),
            inc.insight_type == InsightType::ApiErrorRateInsight
        );
        let mut per_minute = vec![0u32; (day_end - day_start) as usize];
        for (r, _) in f.trail.records.values() {
            if matches(inc, r) {
                per_minute[(r.minute - day_start) as usize] += 1;
            }
        }
        let inside: Vec<u32> =
            per_minute[(start - day_start) as usize..(end - day_start) as usize].to_vec();
        let inside_rate = f64::from(inside.iter().sum::<u32>()) / inside.len() as f64;
        let outside_total: u32 = per_minute.iter().sum::<u32>() - inside.iter().sum::<u32>();
        let outside_rate = f64::from(outside_total) / (per_minute.len() - inside.len()) as f64;
        match inc.direction.as_str() {
            "rise" => {
                assert!(
                    inside[0] > 0 && inside[inside.len() - 1] > 0,
                    "{inc:?}: {inside:?}"
                );
                assert!(inside.iter().sum::<u32>() >= 10, "{inc:?}: {inside:?}");
                assert!(
                    inside_rate > 2.5 * outside_rate,
                    "{}: inside {inside_rate} outside {outside_rate}",
                    inc.kind
                );
            }
            "fall" => {
                assert!(inside.iter().all(|&c| c == 0), "{inside:?}");
                assert!(outside_rate > 0.1, "{outside_rate}");
            }
            other => panic!("direction {other}"),
        }
        if inc.kind == "new_api" {
            assert_eq!(outside_total, 0);
        }
        if inc.kind == "error_spike" {
            assert!(inside.iter().all(|&c| (15..=30).contains(&c)), "{inside:?}");
            // one identity
            let arns: std::collections::BTreeSet<&str> = f
                .trail
                .records
                .values()
                .filter(|(r, _)| matches(inc, r) && (start..end).contains(&r.minute))
                .map(|(r, _)| r.arn.as_str())
                .collect();
            assert!(arns.len() <= 2, "{arns:?}");
        }
    }
}

#[test]
fn invalid_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path(), false);
    opts.days = 0;
    assert!(matches!(
        generate(&opts),
        Err(GenerateError::InvalidOptions(_))
    ));
    let mut opts = options(dir.path(), false);
    opts.scale = f64::NAN;
    assert!(matches!(
        generate(&opts),
        Err(GenerateError::InvalidOptions(_))
    ));
    let mut opts = options(dir.path(), false);
    opts.start += 7;
    assert!(matches!(
        generate(&opts),
        Err(GenerateError::InvalidOptions(_))
    ));
    let mut opts = options(dir.path(), true);
    opts.incident_after_days = 1;
    assert!(matches!(
        generate(&opts),
        Err(GenerateError::NoRoomForIncidents { days: 1, after: 1 })
    ));
    assert!(read_labels(&dir.path().join("missing.json")).is_err());
    std::fs::write(dir.path().join("bad.json"), "{\"incidents\": 3}").unwrap();
    assert!(matches!(
        read_labels(&dir.path().join("bad.json")),
        Err(GenerateError::Labels { .. })
    ));
}

#[test]
fn records_look_like_cloudtrail() {
    let f = with_incidents();
    let (path, bytes) = f.trail.files.iter().next().unwrap();
    let mut text = String::new();
    GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    for r in doc["Records"].as_array().unwrap() {
        for key in [
            "eventVersion",
            "userIdentity",
            "eventTime",
            "eventSource",
            "eventName",
            "awsRegion",
            "sourceIPAddress",
            "userAgent",
            "requestParameters",
            "responseElements",
            "eventID",
            "readOnly",
            "eventType",
            "managementEvent",
            "recipientAccountId",
            "eventCategory",
        ] {
            assert!(r.get(key).is_some(), "{key} missing in {path}: {r}");
        }
        let id = r["eventID"].as_str().unwrap();
        assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
        assert!(r["userIdentity"]["type"].is_string());
        assert_eq!(r["eventCategory"], "Management");
        assert_eq!(r["managementEvent"], true);
    }
}

/// `--traffic realistic`: each behaviour is in the records, on a 10-day trail that crosses the
/// US daylight-saving change (2024-03-10) with a holiday on Wednesday 2024-03-06.
mod realistic {
    use super::*;
    use chrono::Datelike;

    const HOLIDAY: (i32, u32, u32) = (2024, 3, 6);

    fn realistic_options(out: &Path, days: u32, scale: f64) -> GenerateOptions {
        let mut opts = GenerateOptions::new(out.to_path_buf(), days, 5);
        opts.scale = scale;
        opts.incidents = false;
        opts.traffic = Traffic::Realistic;
        opts.holidays =
            vec![chrono::NaiveDate::from_ymd_opt(HOLIDAY.0, HOLIDAY.1, HOLIDAY.2).unwrap()];
        opts
    }

    struct Realistic {
        _dir: tempfile::TempDir,
        records: Vec<Seen>,
        labels: Labels,
    }

    fn trail() -> &'static Realistic {
        static F: OnceLock<Realistic> = OnceLock::new();
        F.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            generate(&realistic_options(dir.path(), 10, 0.3)).unwrap();
            let records = read_trail(dir.path())
                .records
                .into_values()
                .map(|(seen, _)| seen)
                .collect();
            let labels = read_labels(&dir.path().join("labels.json")).unwrap();
            Realistic {
                _dir: dir,
                records,
                labels,
            }
        })
    }

    fn is_person(r: &Seen) -> bool {
        r.arn.ends_with("user/alice")
            || r.arn.ends_with("user/bob")
            || r.arn.contains("AWSReservedSSO")
    }

    fn behaviours<'a>(t: &'a Realistic, kind: &str) -> Vec<&'a Behaviour> {
        t.labels
            .behaviours
            .iter()
            .filter(|b| b.kind == kind)
            .collect()
    }

    #[test]
    fn the_nightly_cron_minute_holds_the_whole_burst() {
        let t = trail();
        let snapshots: Vec<&Seen> = t
            .records
            .iter()
            .filter(|r| {
                r.event_name == "CreateSnapshot"
                    && r.account == "418295730164"
                    && r.region == "us-east-1"
            })
            .collect();
        let mut per_minute: BTreeMap<Minute, u32> = BTreeMap::new();
        for r in &snapshots {
            *per_minute.entry(r.minute).or_default() += 1;
        }
        // one minute a night, at 02:00 UTC, with 200-500 calls at scale 1
        assert_eq!(per_minute.len(), 10, "{per_minute:?}");
        for (&m, &n) in &per_minute {
            assert_eq!(m.rem_euclid(1440), 120, "{}", format_event_time(m));
            assert!((55..=160).contains(&n), "{n} at {}", format_event_time(m));
        }
        assert_eq!(behaviours(t, "cron_nightly").len(), 4);
        // the hourly job fires at :00 only
        let hourly: Vec<&Seen> = t
            .records
            .iter()
            .filter(|r| r.event_name == "SendCommand")
            .collect();
        assert!(hourly.len() > 240);
        assert!(hourly.iter().all(|r| r.minute.rem_euclid(60) == 0));
    }

    #[test]
    fn the_holiday_is_at_weekend_level() {
        let t = trail();
        let tz: chrono_tz::Tz = DEFAULT_TIMEZONE.parse().unwrap();
        let mut per_day: BTreeMap<chrono::NaiveDate, u32> = BTreeMap::new();
        for r in t.records.iter().filter(|r| is_person(r)) {
            let local = chrono::DateTime::from_timestamp(r.minute * 60, 0)
                .unwrap()
                .with_timezone(&tz)
                .date_naive();
            *per_day.entry(local).or_default() += 1;
        }
        let day =
            |d: u32| f64::from(per_day[&chrono::NaiveDate::from_ymd_opt(2024, 3, d).unwrap()]);
        let (tuesday, holiday, thursday, saturday) = (day(5), day(6), day(7), day(9));
        assert!(
            holiday < 0.3 * tuesday && holiday < 0.3 * thursday,
            "{per_day:?}"
        );
        assert!(
            holiday < 3.0 * saturday && saturday < 3.0 * holiday,
            "{per_day:?}"
        );
        let labels = behaviours(t, "holiday");
        assert!(!labels.is_empty());
        // the holiday's local midnight (EST) is 05:00 UTC
        assert!(labels.iter().all(|b| b.start == "2024-03-06T05:00:00Z"
            && b.end == "2024-03-07T05:00:00Z"
            && b.class == BehaviourClass::AllowedChange));
    }

    /// Median UTC minute of the day of the people's calls on these days.
    fn median_minute(t: &Realistic, days: &[u32]) -> f64 {
        let mut xs: Vec<i64> = t
            .records
            .iter()
            .filter(|r| is_person(r))
            .filter(|r| {
                let d = chrono::DateTime::from_timestamp(r.minute * 60, 0).unwrap();
                days.contains(&d.day())
            })
            .map(|r| r.minute.rem_euclid(1440))
            .collect();
        xs.sort_unstable();
        xs[xs.len() / 2] as f64
    }

    #[test]
    fn office_hours_move_by_an_hour_in_utc_across_the_dst_change() {
        let t = trail();
        // weekdays before (EST, UTC-5; not the holiday) and after (EDT, UTC-4) 2024-03-10
        let before = median_minute(t, &[4, 5, 7, 8]);
        let after = median_minute(t, &[11, 12, 13]);
        let shift = before - after;
        assert!(
            (40.0..=80.0).contains(&shift),
            "before {before} after {after}"
        );
        // and local noon-ish: 17:xx UTC in winter time
        assert!((16.0 * 60.0..18.5 * 60.0).contains(&before), "{before}");
        let dst = behaviours(t, "dst_shift");
        assert!(!dst.is_empty());
        assert!(dst.iter().all(|b| b.start == "2024-03-10T07:00:00Z"));
    }

    #[test]
    fn the_step_change_at_least_doubles_the_rate() {
        let t = trail();
        let steps = behaviours(t, "step_change");
        assert_eq!(steps.len(), 2);
        for b in steps {
            let at = minute_of(&b.start);
            let end = minute_of(&b.end);
            let span = (end - at)
                .min(at - minute_of("2024-03-04T00:00:00Z"))
                .min(1440);
            assert!(span >= 360, "{b:?}");
            let count = |from: Minute, to: Minute| {
                t.records
                    .iter()
                    .filter(|r| {
                        r.account == b.account
                            && r.region == b.region
                            && r.event_name == b.event_name
                            && !r.arn.contains("GitHubActionsDeployRole")
                            && (from..to).contains(&r.minute)
                    })
                    .count() as f64
            };
            let (before, after) = (count(at - span, at), count(at, at + span));
            assert!(before > 30.0, "{before}");
            assert!(
                after > 1.7 * before && after < 3.5 * before,
                "{b:?}: {before} -> {after}"
            );
        }
    }

    #[test]
    fn throttling_errors_track_the_calls() {
        let t = trail();
        // the throttling probability of the account-region, as its labels state it
        let p: f64 = behaviours(t, "throttling")
            .iter()
            .find(|b| b.account == "418295730164" && b.region == "us-east-1")
            .and_then(|b| b.description.split('%').next())
            .and_then(|x| x.parse::<f64>().ok())
            .unwrap()
            / 100.0;
        let storms: Vec<(Minute, Minute, String)> = behaviours(t, "throttle_storm")
            .iter()
            .map(|b| (minute_of(&b.start), minute_of(&b.end), b.event_name.clone()))
            .collect();
        let throttled: Vec<(String, String)> = behaviours(t, "throttling")
            .iter()
            .filter(|b| b.account == "418295730164" && b.region == "us-east-1")
            .map(|b| (b.event_name.clone(), b.error_code.clone().unwrap()))
            .collect();
        // (api, minute) -> (calls, throttled)
        let mut cells: BTreeMap<(String, Minute), (u64, u64)> = BTreeMap::new();
        for r in t
            .records
            .iter()
            .filter(|r| r.account == "418295730164" && r.region == "us-east-1")
        {
            let Some((_, code)) = throttled.iter().find(|(n, _)| *n == r.event_name) else {
                continue;
            };
            if storms
                .iter()
                .any(|(s, e, n)| *n == r.event_name && (*s..*e).contains(&r.minute))
            {
                continue;
            }
            let c = cells.entry((r.event_name.clone(), r.minute)).or_default();
            c.0 += 1;
            if r.error_code.as_deref() == Some(code) {
                c.1 += 1;
            }
        }
        // busy minutes (the nightly burst, big applies) fail in the same proportion as quiet
        // ones: the errors follow the calls, they are not a rate of their own
        let (mut busy, mut quiet) = ((0u64, 0u64), (0u64, 0u64));
        for (calls, errors) in cells.values() {
            let side = if *calls >= 20 { &mut busy } else { &mut quiet };
            side.0 += calls;
            side.1 += errors;
        }
        assert!(busy.0 >= 500, "{busy:?}");
        for (calls, errors) in [busy, quiet] {
            let n = calls as f64;
            let sd = (p * (1.0 - p) / n).sqrt();
            let ratio = errors as f64 / n;
            assert!(
                (ratio - p).abs() < 4.0 * sd + 1e-4,
                "{errors}/{calls} vs p {p}"
            );
        }
        // a storm clumps its errors in its retry rounds
        for b in behaviours(t, "throttle_storm")
            .iter()
            .filter(|b| b.error_code.is_some())
        {
            let (s, e) = (minute_of(&b.start), minute_of(&b.end));
            let errors = t
                .records
                .iter()
                .filter(|r| {
                    r.account == b.account
                        && r.region == b.region
                        && r.event_name == b.event_name
                        && r.error_code == b.error_code
                        && (s..e).contains(&r.minute)
                })
                .count();
            assert!(errors >= 3, "{b:?}");
        }
    }

    #[test]
    fn automation_sessions_and_the_new_api_are_in_the_records() {
        let t = trail();
        let sessions = behaviours(t, "automation_session");
        assert!(sessions.len() > 50);
        // every session's API has CI calls in its window
        for b in sessions.iter().take(40) {
            let (s, e) = (minute_of(&b.start), minute_of(&b.end));
            assert!(
                t.records.iter().any(|r| r.account == b.account
                    && r.region == b.region
                    && r.event_name == b.event_name
                    && r.arn.contains("GitHubActionsDeployRole")
                    && (s..e).contains(&r.minute)),
                "{b:?}"
            );
        }
        for b in behaviours(t, "new_api_adopted") {
            let at = minute_of(&b.start);
            let calls: Vec<Minute> = t
                .records
                .iter()
                .filter(|r| {
                    r.account == b.account && r.region == b.region && r.event_name == b.event_name
                })
                .map(|r| r.minute)
                .collect();
            assert!(calls.iter().all(|&m| m >= at), "{b:?}");
            assert!(
                calls.len() as f64 > 0.04 * (minute_of(&b.end) - at) as f64,
                "{b:?}"
            );
        }
    }

    #[test]
    fn same_seed_same_bytes_and_incidents_sit_on_top_of_the_background() {
        let small = |dir: &Path, incidents: bool| {
            let mut opts = realistic_options(dir, 9, 0.02);
            opts.incidents = incidents;
            opts.scenarios = incidents;
            opts
        };
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        generate(&small(a.path(), true)).unwrap();
        generate(&small(b.path(), true)).unwrap();
        let (ta, tb) = (read_trail(a.path()), read_trail(b.path()));
        assert!(ta.files == tb.files, "file bytes differ");
        let la = std::fs::read(a.path().join("labels.json")).unwrap();
        assert_eq!(la, std::fs::read(b.path().join("labels.json")).unwrap());
        // another time zone is another trail, and the folder refuses it
        let mut other = small(a.path(), true);
        other.timezone = "Europe/Paris".into();
        assert!(matches!(
            generate(&other).unwrap_err(),
            GenerateError::OtherTrailPresent { .. }
        ));
        other.timezone = "Mars/Olympus".into();
        assert!(matches!(
            generate(&other).unwrap_err(),
            GenerateError::InvalidOptions(_)
        ));
        // without incidents: the same background, minus what the incidents suppress
        let c = tempfile::tempdir().unwrap();
        generate(&small(c.path(), false)).unwrap();
        let clean = read_trail(c.path());
        let labels = read_labels(&a.path().join("labels.json")).unwrap();
        assert!(labels.incidents.len() >= 10);
        assert_eq!(
            labels.behaviours,
            read_labels(&c.path().join("labels.json"))
                .unwrap()
                .behaviours
        );
        let drop = labels
            .incidents
            .iter()
            .find(|i| i.kind == "api_drop")
            .unwrap();
        for (id, (seen, _)) in &clean.records {
            if !ta.records.contains_key(id) {
                assert!(
                    matches(drop, seen) && (window(drop).0..window(drop).1).contains(&seen.minute),
                    "{seen:?}"
                );
            }
        }
        // each burst incident's calls are in the trail
        for inc in labels
            .incidents
            .iter()
            .filter(|i| i.kind == "rare_api_burst" || i.kind == "stop_logging")
        {
            assert!(ta.records.values().any(|(r, _)| matches(inc, r)), "{inc:?}");
        }
    }
}
