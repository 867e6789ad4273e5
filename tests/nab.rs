//! NAB: the scorer reproduces NAB's published per-file scores from the published per-timestep
//! outputs, the normalisation's two ends are what NAB's rules give, bad corpus files are refused
//! with the file and line, and trailsight's row is reproducible.

mod common;

use std::path::{Path, PathBuf};

use trailsight::nab::{self, NabError, NabOptions};

fn nab_dir() -> Option<PathBuf> {
    common::shared_datasets().map(|d| d.join("nab"))
}

fn check_published(detector: &str) {
    let Some(dir) = nab_dir() else { return };
    let checks = nab::score_published(&dir, "realAWSCloudwatch", detector).unwrap();
    assert_eq!(checks.len(), 17 * 3, "17 files × 3 profiles");
    for c in &checks {
        let (o, p) = (&c.ours, &c.published);
        assert!(
            (o.score - p.score).abs() < 1e-6,
            "{detector} {} {}: ours {} published {}",
            c.profile,
            c.file,
            o.score,
            p.score
        );
        assert_eq!(
            (o.tp, o.tn, o.fp, o.fn_, o.total),
            (p.tp, p.tn, p.fp, p.fn_, p.total),
            "{detector} {} {}: TP/TN/FP/FN/total",
            c.profile,
            c.file
        );
        assert!((c.threshold - p.threshold).abs() < 1e-9);
    }
}

#[test]
fn scorer_reproduces_numenta_published_scores() {
    check_published("numenta");
}

#[test]
fn scorer_reproduces_windowed_gaussian_published_scores() {
    check_published("windowedGaussian");
}

#[test]
fn scorer_reproduces_skyline_published_scores() {
    check_published("skyline");
}

#[test]
fn normalisation_ends_and_published_rows_of_the_report() {
    let Some(dir) = nab_dir() else { return };
    let options = NabOptions {
        sweep: false,
        ..NabOptions::default()
    };
    let report = nab::evaluate(&dir, &options).unwrap();
    assert_eq!(report.files.len(), 17);
    assert_eq!(report.windows, 30);
    // No window of realAWSCloudwatch starts in a probationary period, so the null detector
    // scores -fnWeight per window and the perfect one +tpWeight per window.
    let n = &report.normalisation;
    assert!((n["standard"].s_null + 30.0).abs() < 1e-9);
    assert!((n["reward_low_FP_rate"].s_null + 30.0).abs() < 1e-9);
    assert!((n["reward_low_FN_rate"].s_null + 60.0).abs() < 1e-9);
    for profile in nab::NAB_PROFILES {
        assert!((n[profile].s_perfect - 30.0).abs() < 1e-9, "{profile}");
    }
    // The published detectors' raw totals are the sums of NAB's published per-file scores.
    let numenta = &report.detectors[0];
    assert_eq!(numenta.detector, "numenta");
    let published = nab::corpus::read_published_scores(&dir, "numenta", "standard").unwrap();
    let sum: f64 = report.files.iter().map(|f| published[f].score).sum();
    assert!((numenta.profiles[0].raw - sum).abs() < 0.05);
    let expect = 100.0 * (sum + 30.0) / 60.0;
    assert!((numenta.profiles[0].normalised - expect).abs() < 0.1);
    let trailsight = report.detectors.last().unwrap();
    assert_eq!(trailsight.detector, "trailsight");
    // The row of docs/detection-benchmarks.md (59.0 standard): a regression below 55, or below skyline or
    // windowedGaussian on the standard profile, fails.
    let standard = |d: &nab::DetectorResult| d.profiles[0].normalised;
    assert!(standard(trailsight) >= 55.0, "{}", standard(trailsight));
    for d in &report.detectors[1..3] {
        assert!(standard(trailsight) > standard(d), "{}", d.detector);
    }
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["detectors"][3]["detector"], "trailsight");
    assert!(json["detectors"][3]["profiles"][0]["files"][0]["score"].is_number());
    assert!(report.to_string().contains("| trailsight |"));
}

#[test]
fn trailsight_detections_are_episode_starts() {
    let Some(dir) = nab_dir() else { return };
    let options = NabOptions::default();
    for name in nab::corpus::series_names(&dir, Some("realAWSCloudwatch")).unwrap() {
        let series = nab::corpus::read_series(&dir, &name).unwrap();
        let scores = nab::trailsight_scores(&series, &options.profile, &options.gauge);
        // An episode's rows after its Start score 0: never two detections in a row.
        for pair in scores.windows(2) {
            assert!(
                !(pair[0] >= nab::TRAILSIGHT_THRESHOLD && pair[1] >= nab::TRAILSIGHT_THRESHOLD),
                "{name}: two detections in a row"
            );
        }
    }
}

#[test]
fn trailsight_scores_are_online_and_in_range() {
    let Some(dir) = nab_dir() else { return };
    let name = "realAWSCloudwatch/ec2_cpu_utilization_ac20cd.csv";
    let series = nab::corpus::read_series(&dir, name).unwrap();
    let options = NabOptions::default();
    let full = nab::trailsight_scores(&series, &options.profile, &options.gauge);
    assert_eq!(full.len(), series.values.len());
    assert!(full.iter().all(|s| (0.0..=1.0).contains(s)));
    // Online: the scores of a prefix do not depend on the rows after it.
    let mut prefix = series.clone();
    prefix.timestamps.truncate(2000);
    prefix.values.truncate(2000);
    let part = nab::trailsight_scores(&prefix, &options.profile, &options.gauge);
    assert_eq!(&full[..2000], &part[..]);
    // The jump to 100% at 2014-04-14 08:xx (the labelled anomaly) is detected inside its window.
    let windows = nab::corpus::read_windows(&dir).unwrap();
    let w = windows[name][0];
    let starts: Vec<i64> = series
        .timestamps
        .iter()
        .zip(&full)
        .filter(|(_, s)| **s >= nab::TRAILSIGHT_THRESHOLD)
        .map(|(t, _)| *t)
        .collect();
    assert!(
        starts.iter().any(|t| (w.start..=w.end).contains(t)),
        "no Start in the window; Starts at {starts:?}"
    );
}

fn corpus_with(dir: &Path, series_csv: &str, windows_json: &str) {
    std::fs::create_dir_all(dir.join("data/cat")).unwrap();
    std::fs::create_dir_all(dir.join("labels")).unwrap();
    std::fs::create_dir_all(dir.join("config")).unwrap();
    std::fs::write(dir.join("data/cat/s.csv"), series_csv).unwrap();
    std::fs::write(dir.join("labels/combined_windows.json"), windows_json).unwrap();
    std::fs::write(
        dir.join("config/profiles.json"),
        r#"{"standard":{"CostMatrix":{"tpWeight":1.0,"fnWeight":1.0,"fpWeight":0.11}},
            "reward_low_FP_rate":{"CostMatrix":{"tpWeight":1.0,"fnWeight":1.0,"fpWeight":0.22}},
            "reward_low_FN_rate":{"CostMatrix":{"tpWeight":1.0,"fnWeight":2.0,"fpWeight":0.11}}}"#,
    )
    .unwrap();
}

#[test]
fn bad_input_is_refused_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let options = NabOptions {
        category: None,
        published: vec![],
        sweep: false,
        ..NabOptions::default()
    };
    // A value that is not a number, on line 3.
    let dir = tmp.path().join("a");
    corpus_with(
        &dir,
        "timestamp,value\n2014-01-01 00:00:00,1\n2014-01-01 00:05:00,abc\n",
        "{}",
    );
    let err = nab::evaluate(&dir, &options).unwrap_err();
    assert!(matches!(err, NabError::Line { line: 3, .. }), "{err}");
    assert!(err.to_string().contains("s.csv, line 3"), "{err}");
    // A bad timestamp, on line 2.
    let dir = tmp.path().join("b");
    corpus_with(&dir, "timestamp,value\n2014-13-01 00:00:00,1\n", "{}");
    let err = nab::evaluate(&dir, &options).unwrap_err();
    assert!(matches!(err, NabError::Line { line: 2, .. }), "{err}");
    // A window whose edge is not a row.
    let dir = tmp.path().join("d");
    corpus_with(
        &dir,
        "timestamp,value\n2014-01-01 00:00:00,1\n2014-01-01 00:05:00,2\n",
        r#"{"cat/s.csv": [["2014-01-01 00:01:00.000000", "2014-01-01 00:05:00.000000"]]}"#,
    );
    assert!(matches!(
        nab::evaluate(&dir, &options).unwrap_err(),
        NabError::WindowOffRows { .. }
    ));
    // Malformed JSON.
    let dir = tmp.path().join("e");
    corpus_with(
        &dir,
        "timestamp,value\n2014-01-01 00:00:00,1\n",
        "{\"cat/s.csv\": [[1]]}",
    );
    assert!(matches!(
        nab::evaluate(&dir, &options).unwrap_err(),
        NabError::Json { .. }
    ));
    // A missing header column.
    let dir = tmp.path().join("f");
    corpus_with(&dir, "time,value\n", "{}");
    assert!(matches!(
        nab::evaluate(&dir, &options).unwrap_err(),
        NabError::Line { line: 1, .. }
    ));
}

#[test]
#[ignore = "prints the NAB table of docs/detection-benchmarks.md; run with --ignored --nocapture"]
fn print_nab_table() {
    let Some(dir) = nab_dir() else { return };
    let report = nab::evaluate(&dir, &NabOptions::default()).unwrap();
    print!("{report}");
}

#[test]
fn eval_nab_on_the_command_line_reports_trailsight_beside_the_published_detectors() {
    let Some(dir) = nab_dir() else { return };
    let out = common::trailsight(&["eval", "--nab", dir.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = report.to_string();
    for name in ["numenta", "windowedGaussian", "skyline", "trailsight"] {
        assert!(text.contains(name), "{name} missing from {text}");
    }
    // A labelled archive and --nab are one or the other.
    let both = common::trailsight(&["eval", "x", "--nab", dir.to_str().unwrap()]);
    assert_eq!(both.status.code(), Some(2), "clap refuses the mix");
}

/// A small series: `n` rows five minutes apart from 2014-01-01, value 1 (10 at row `spike`).
fn small_series(n: usize, spike: usize) -> Vec<(String, f64)> {
    (0..n)
        .map(|i| {
            let t = chrono::DateTime::from_timestamp(1_388_534_400 + 300 * i as i64, 0)
                .unwrap()
                .format("%Y-%m-%d %H:%M:%S")
                .to_string();
            (t, if i == spike { 10.0 } else { 1.0 })
        })
        .collect()
}

fn csv(rows: &[(String, f64)]) -> String {
    let mut out = String::from("timestamp,value\n");
    for (t, v) in rows {
        out.push_str(&format!("{t},{v}\n"));
    }
    out
}

#[test]
fn a_row_out_of_order_is_kept_in_file_order_and_reported() {
    // Regression: one row out of order (NAB's own realKnownCause/machine_temperature_system_
    // failure.csv, line 10151) made `eval --nab` refuse the whole corpus. NAB reads files in
    // file order without sorting; so does the reader now, and it says so.
    let tmp = tempfile::tempdir().unwrap();
    let mut rows = small_series(400, 300);
    rows.swap(150, 151);
    let windows = format!(
        r#"{{"cat/s.csv": [["{}.000000", "{}.000000"]]}}"#,
        rows[290].0, rows[310].0
    );
    corpus_with(tmp.path(), &csv(&rows), &windows);
    let options = NabOptions {
        category: None,
        published: vec![],
        sweep: false,
        ..NabOptions::default()
    };
    let report = nab::evaluate(tmp.path(), &options).unwrap();
    assert_eq!(report.files, ["cat/s.csv"]);
    assert_eq!(report.windows, 1);
    // Line 1 is the header: row 151 (0-based) is line 153.
    assert_eq!(report.notes.len(), 1, "{:?}", report.notes);
    assert!(report.notes[0].contains("cat/s.csv") && report.notes[0].contains("line 153"));
    assert!(report.to_string().contains("kept in file order"));
    let series = nab::corpus::read_series(tmp.path(), "cat/s.csv").unwrap();
    assert_eq!(series.timestamps.len(), 400, "no row dropped");
    assert_eq!(series.out_of_order, [153]);
    assert!(
        series.timestamps[151] < series.timestamps[150],
        "file order kept"
    );
}

#[test]
fn nab_category_chooses_the_corpus_scored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    corpus_with(dir, &csv(&small_series(300, 250)), "{}");
    std::fs::create_dir_all(dir.join("data/realKnownCause")).unwrap();
    std::fs::write(
        dir.join("data/realKnownCause/t.csv"),
        csv(&small_series(300, 200)),
    )
    .unwrap();
    let run = |category: &str| {
        let out = common::trailsight(&[
            "eval",
            "--nab",
            dir.to_str().unwrap(),
            "--nab-category",
            category,
            "--json",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        (out.status.code(), out.stdout, stderr)
    };
    let (code, stdout, stderr) = run("realKnownCause");
    assert_eq!(code, Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(report["files"], serde_json::json!(["realKnownCause/t.csv"]));
    let (code, stdout, stderr) = run("cat");
    assert_eq!(code, Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(report["files"], serde_json::json!(["cat/s.csv"]));
    // The default is realAWSCloudwatch, absent here: refused with the data folder named.
    let out = common::trailsight(&["eval", "--nab", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    // The option needs --nab.
    let out = common::trailsight(&["eval", "x", "--nab-category", "cat"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--nab DIR"));
}
