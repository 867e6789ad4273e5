//! The explanations match the decision: for an Insight that fired on its 60-minute window, the
//! plot draws the 60-minute window's count and bound (not the band of its step), its legend
//! and the report say the record's window, count, expected count and bound in words, and the
//! Insights export carries the same sentence. On the generated demo trail plus one steady
//! series whose sustained mild rise only a 60-minute window sees, scored with enough allowed
//! lateness that no call is late (so the replayed baseline is the detector's own).

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use polars::prelude::*;

use common::{fmt_minute, minute, trailsight};
use trailsight::plot::{self, Panel};
use trailsight::view::{SeriesFilter, StoreView};

struct Scored {
    store: PathBuf,
    insights: Vec<serde_json::Value>,
    dir: tempfile::TempDir,
}

const STEADY_ACCOUNT: &str = "555566667777";
const STEADY_REGION: &str = "ap-south-1";

/// Exactly 10 SetQueueAttributes calls a minute from 2024-03-09 to 2024-03-12 06:00, and 13 a
/// minute from 02:00 to 03:30 on the 12th: 30 % more, which no 1-, 5- or 15-minute window can
/// tell from chance (15 minutes: 195 calls against 150 expected, p about 1e-4) but 60 minutes
/// can (780 against 600).
fn steady_series(dir: &Path) {
    let first_hour = minute("2024-03-09T00:00:00Z") / 60;
    let rise = minute("2024-03-12T02:00:00Z")..minute("2024-03-12T03:30:00Z");
    for hour in first_hour..first_hour + 3 * 24 + 6 {
        let day = chrono::DateTime::from_timestamp(hour * 3600, 0).unwrap();
        let folder = dir.join(format!(
            "AWSLogs/{STEADY_ACCOUNT}/CloudTrail/{STEADY_REGION}/{}",
            day.format("%Y/%m/%d")
        ));
        std::fs::create_dir_all(&folder).unwrap();
        let mut records = Vec::new();
        for m in hour * 60..hour * 60 + 60 {
            let calls = if rise.contains(&m) { 13 } else { 10 };
            for i in 0..calls {
                let t = chrono::DateTime::from_timestamp(m * 60 + i * 4, 0).unwrap();
                records.push(serde_json::json!({
                    "eventVersion": "1.09",
                    "userIdentity": {"type": "AssumedRole", "accountId": STEADY_ACCOUNT,
                        "arn": format!("arn:aws:sts::{STEADY_ACCOUNT}:assumed-role/queue-admin/job")},
                    "eventTime": t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    "eventSource": "sqs.amazonaws.com",
                    "eventName": "SetQueueAttributes",
                    "awsRegion": STEADY_REGION,
                    "sourceIPAddress": "198.51.100.7",
                    "userAgent": "queue-admin/1.0",
                    "readOnly": false,
                    "eventType": "AwsApiCall",
                    "managementEvent": true,
                    "eventCategory": "Management",
                    "recipientAccountId": STEADY_ACCOUNT,
                    "eventID": format!("00000000-0000-4000-8000-{:06}{i:06}", m % 1_000_000),
                }));
            }
        }
        let delivered = chrono::DateTime::from_timestamp((hour + 1) * 3600, 0).unwrap();
        std::fs::write(
            folder.join(format!(
                "{STEADY_ACCOUNT}_CloudTrail_{STEADY_REGION}_{}_steady.json",
                delivered.format("%Y%m%dT%H%MZ")
            )),
            serde_json::to_vec(&serde_json::json!({ "Records": records })).unwrap(),
        )
        .unwrap();
    }
}

/// The tests read one shared store, and sled lets one process open it at a time: a reader waits
/// for another up to 20 s, which a report of every Insight can outlast on a loaded machine. The
/// tests take turns.
fn one_reader_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn scored() -> &'static Scored {
    static SCORED: OnceLock<Scored> = OnceLock::new();
    SCORED.get_or_init(|| {
        let archive = common::generated(7, 0.5, true);
        let dir = tempfile::tempdir().unwrap();
        let steady = dir.path().join("steady");
        steady_series(&steady);
        let store = dir.path().join("store");
        let out = dir.path().join("insights.jsonl");
        let profile = dir.path().join("profile.toml");
        std::fs::write(&profile, "[ingest]\nallowed_lateness_minutes = 720\n").unwrap();
        let insights = common::score_ok(
            &archive,
            &store,
            &out,
            &[
                "--profile",
                profile.to_str().unwrap(),
                steady.to_str().unwrap(),
            ],
        );
        Scored {
            store,
            insights,
            dir,
        }
    })
}

/// The demo's Starts that fired on a window of `w` minutes.
fn starts_on(s: &Scored, w: u64) -> Vec<&serde_json::Value> {
    s.insights
        .iter()
        .filter(|r| {
            r["insightDetails"]["state"] == "Start"
                && r["additionalEventData"]["windowMinutes"].as_u64() == Some(w)
        })
        .collect()
}

/// The minute the firing window ended at: a Start's insightDuration runs from its eventTime
/// to the confirming minute, inclusive.
fn confirming_minute(r: &serde_json::Value) -> i64 {
    let start = minute(r["eventTime"].as_str().unwrap());
    let duration = r["insightDetails"]["insightContext"]["statistics"]["insightDuration"]
        .as_f64()
        .unwrap() as i64;
    start + duration - 1
}

/// Thousands separators, written out here independently of the library.
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn hhmm(m: i64) -> String {
    chrono::DateTime::from_timestamp(m * 60, 0)
        .unwrap()
        .format("%H:%M")
        .to_string()
}

fn day_hhmm(m: i64) -> String {
    chrono::DateTime::from_timestamp(m * 60, 0)
        .unwrap()
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

fn series_args(r: &serde_json::Value) -> Vec<String> {
    let d = &r["insightDetails"];
    let mut args = vec![
        "--api".to_string(),
        format!(
            "{}:{}",
            d["eventSource"].as_str().unwrap(),
            d["eventName"].as_str().unwrap()
        ),
        "--account".into(),
        r["recipientAccountId"].as_str().unwrap().into(),
        "--region".into(),
        r["awsRegion"].as_str().unwrap().into(),
    ];
    if let Some(code) = d["errorCode"].as_str() {
        args.extend(["--error-code".into(), code.into()]);
    }
    args
}

#[test]
fn a_sixty_minute_insight_is_drawn_against_the_sixty_minute_bound() {
    let _turn = one_reader_at_a_time();
    let s = scored();
    let starts = starts_on(s, 60);
    assert!(
        !starts.is_empty(),
        "the steady series' mild rise fired on its 60-minute window"
    );
    let view = StoreView::open(&s.store, None).unwrap();
    for r in starts {
        let x = &r["additionalEventData"];
        let last = confirming_minute(r);
        let start = minute(r["eventTime"].as_str().unwrap());
        let d = &r["insightDetails"];
        let filter = SeriesFilter {
            event_source: d["eventSource"].as_str().map(str::to_string),
            event_name: d["eventName"].as_str().map(str::to_string),
            error_code: d["errorCode"].as_str().map(str::to_string),
            account: r["recipientAccountId"].as_str().map(str::to_string),
            region: r["awsRegion"].as_str().map(str::to_string),
            any_type: false,
            principal: None,
            reads: false,
        };
        let id = view.select_one(&filter).unwrap();
        // The CLI's range: a day around the Start.
        let (from, to) = (start - 720, start + 720);
        let trace = view.trace(id, from, to).unwrap();
        let episodes: Vec<_> = view.episodes_of(id).collect();
        let windows = plot::firing_windows(&episodes, from, to);
        assert_eq!(windows, vec![60], "the plot chooses the window that fired");
        let panel = Panel {
            trace: &trace,
            episodes,
            step: 5,
            windows,
        };
        let drawn = plot::window_view(&panel, 60);
        let at = drawn
            .points
            .iter()
            .find(|b| b.start + b.minutes - 1 == last)
            .expect("the confirming minute is drawn");
        assert_eq!(at.minutes, 60);
        assert_eq!(
            at.count,
            x["observed"].as_u64().unwrap(),
            "the drawn count is the 60 minutes the detector counted"
        );
        assert_eq!(
            at.upper,
            x["upperBound"].as_f64(),
            "the drawn band is the 60-minute bound the Start crossed"
        );
        let expected = x["expected"].as_f64().unwrap();
        assert!((at.expected.unwrap() - expected).abs() < 1e-6 * expected.max(1.0));
        assert!(
            at.count as f64 > at.upper.unwrap(),
            "the crossing is visible"
        );
        // The band of the 5-minute step the rate panel draws is another bound entirely: the
        // defect this panel fixes.
        let step = trace
            .buckets(5)
            .into_iter()
            .find(|b| (b.start..b.start + b.minutes).contains(&last))
            .unwrap();
        assert_ne!(step.upper, at.upper);
        assert_eq!(drawn.crossings.len(), 1);
        assert_eq!(drawn.crossings[0].last, last);
    }
}

#[test]
fn the_plot_legend_and_the_report_say_the_records_numbers_in_words() {
    let _turn = one_reader_at_a_time();
    let s = scored();
    let r = starts_on(s, 60)[0];
    let x = &r["additionalEventData"];
    let last = confirming_minute(r);
    let start = minute(r["eventTime"].as_str().unwrap());
    let observed = x["observed"].as_u64().unwrap();
    let upper = x["upperBound"].as_u64().unwrap();
    let expected = x["expected"].as_f64().unwrap();
    assert!(expected >= 100.0, "a busy API: the expected count is whole");
    let legend = format!(
        "60-min window through {}: {} calls &gt; bound {}",
        hhmm(last),
        grouped(observed),
        grouped(upper)
    );
    let p = |v: &serde_json::Value| format!("{:.1e}", v.as_f64().unwrap()).replace(".0e", "e");
    let model = match x["model"].as_str().unwrap() {
        "poisson" => "Poisson",
        _ => "negative binomial",
    };
    let first = last - 59;
    let until = if first / 1440 == last / 1440 {
        hhmm(last)
    } else {
        day_hhmm(last)
    };
    let sentence = format!(
        "Start: {} calls in the 60 minutes from {} through {until} UTC; expected {}, upper bound {} ({model}, p = {} &lt; {})",
        grouped(observed),
        day_hhmm(first),
        grouped(expected.round() as u64),
        grouped(upper),
        p(&x["pValue"]),
        p(&x["pThreshold"]),
    );

    // plot: the SVG's legend names the window, the count and the bound.
    let svg = s.dir.path().join("sixty.svg");
    let (f, t) = (fmt_minute(start - 720), fmt_minute(start + 720));
    let mut args: Vec<String> = vec![
        "plot".into(),
        "--store".into(),
        s.store.to_str().unwrap().into(),
    ];
    args.extend(series_args(r));
    args.extend([
        "--from".into(),
        f,
        "--to".into(),
        t,
        "--out".into(),
        svg.to_str().unwrap().into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = trailsight(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("sliding 60-minute window"));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains(&legend), "legend {legend:?} in the SVG");
    assert!(text.contains("bounds of a 60-min window"));

    // report: the sentence, escaped, once for this Insight.
    let html = s.dir.path().join("report.html");
    let o = trailsight(&[
        "report",
        "--store",
        s.store.to_str().unwrap(),
        "--out",
        html.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(
        page.matches(&sentence).count(),
        1,
        "{sentence:?} in the report"
    );
    // Every Start of the store has its sentence, and every plot its window panel.
    let starts = s
        .insights
        .iter()
        .filter(|r| r["insightDetails"]["state"] == "Start")
        .count();
    assert_eq!(page.matches("<td class=\"why\"").count(), starts);
    assert_eq!(
        page.matches("-minute window (the scale the detector tested)")
            .count(),
        starts
    );

    // export: the same sentence (unescaped) in the explanation column, on Start and End rows.
    let out = s.dir.path().join("insights.parquet");
    let o = trailsight(&[
        "export",
        "--store",
        s.store.to_str().unwrap(),
        "--what",
        "insights",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let df = read_parquet(&out);
    let shared = df.column("shared_event_id").unwrap().str().unwrap().clone();
    let explanation = df.column("explanation").unwrap().str().unwrap().clone();
    let plain = sentence.replace("&lt;", "<");
    let rows: Vec<Option<&str>> = (0..df.height())
        .filter(|&i| shared.get(i) == r["sharedEventID"].as_str())
        .map(|i| explanation.get(i))
        .collect();
    assert_eq!(rows, vec![Some(plain.as_str()); 2], "Start and End rows");
    assert_eq!(
        explanation.null_count(),
        0,
        "every trailsight record is explained"
    );
}

#[test]
fn window_forces_a_scale_and_a_range_without_insights_keeps_the_plain_plot() {
    let _turn = one_reader_at_a_time();
    let s = scored();
    let r = starts_on(s, 60)[0];
    let start = minute(r["eventTime"].as_str().unwrap());
    let svg = s.dir.path().join("forced.svg");
    let run = |from: i64, to: i64, extra: &[&str]| {
        let mut args: Vec<String> = vec![
            "plot".into(),
            "--store".into(),
            s.store.to_str().unwrap().into(),
        ];
        args.extend(series_args(r));
        args.extend([
            "--from".into(),
            fmt_minute(from),
            "--to".into(),
            fmt_minute(to),
            "--out".into(),
            svg.to_str().unwrap().into(),
        ]);
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        trailsight(&args)
    };
    let o = run(start - 720, start + 720, &["--window", "15"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("bounds of a 15-min window"));
    assert!(
        text.contains("the Insights here fired on the 60-minute window"),
        "a forced scale says which window the Insight fired on"
    );
    // Two days before the first Insight: no Insight in range, no window panel.
    let o = run(start - 3 * 1440, start - 2 * 1440, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("sliding"));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(!text.contains("-min window"));
    // A window the detector never tests is refused, and nothing is written.
    let _ = std::fs::remove_file(&svg);
    let o = run(start - 720, start + 720, &["--window", "500"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--window must be 1 to 120"));
    assert!(!svg.exists());
}

fn read_parquet(path: &Path) -> DataFrame {
    ParquetReader::new(std::fs::File::open(path).unwrap())
        .finish()
        .unwrap()
}
