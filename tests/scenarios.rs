//! The scenario suite: `generate --scenarios` archives (seeds 1-3, scale 0.5) scored from an
//! empty store and compared with their labels by the evaluation harness. Fails when recall or
//! the false-alarm rate regress past the values the README states (its "Detection quality"
//! section quotes the same numbers; a test checks that it still does).

use std::path::{Path, PathBuf};

use trailsight::detect::Profile;
use trailsight::eval::{evaluate, read_labels, Report, DEFAULT_TOLERANCE_MINUTES};
use trailsight::generate::{generate, GenerateOptions, SCENARIO_KINDS};

const SEEDS: [u64; 3] = [1, 2, 3];
const SCALE: f64 = 0.5;
/// Labels found (incidents found, silent windows silent) over the three seeds, at least.
const MIN_FOUND: u64 = 44;
/// False Insights per 1,000 series-days over the three seeds together, at most.
const MAX_FALSE_PER_1000: f64 = 0.5;

fn scenario_archive(seed: u64) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("scenarios-{seed}-{SCALE}"));
    if !dir.join("labels.json").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let mut opts = GenerateOptions::new(dir.clone(), 9, seed);
        opts.scale = SCALE;
        opts.scenarios = true;
        generate(&opts).unwrap();
    }
    dir
}

fn run(seed: u64) -> Report {
    let dir = scenario_archive(seed);
    let labels = read_labels(&dir.join("labels.json")).unwrap();
    evaluate(
        &[dir],
        &labels,
        Profile::builtin(),
        None,
        DEFAULT_TOLERANCE_MINUTES,
    )
    .unwrap()
}

#[test]
fn the_scenario_suite_holds_its_stated_recall_and_false_alarm_rate() {
    let mut found = 0;
    let mut labels = 0;
    let mut false_insights = 0;
    let mut series_days = 0.0;
    for seed in SEEDS {
        let report = run(seed);
        eprintln!("seed {seed}:\n{}", report.to_table());
        // every kind of the suite is labelled once per archive
        let kinds: Vec<&str> = report.labels.iter().map(|l| l.kind.as_str()).collect();
        for (kind, _) in SCENARIO_KINDS {
            assert_eq!(
                kinds.iter().filter(|k| **k == kind).count(),
                1,
                "seed {seed}: {kind}"
            );
        }
        let total = report.kinds.last().unwrap();
        assert_eq!(total.kind, "total");
        found += total.found;
        labels += total.labels;
        false_insights += report.false_insights.len();
        series_days += report.series_days;
    }
    assert_eq!(labels, (SEEDS.len() * SCENARIO_KINDS.len()) as u64);
    let rate = false_insights as f64 * 1000.0 / series_days;
    assert!(
        found >= MIN_FOUND,
        "{found} of {labels} labels found, the README states at least {MIN_FOUND}"
    );
    assert!(
        rate <= MAX_FALSE_PER_1000,
        "{rate:.3} false Insights per 1,000 series-days, the README states at most {MAX_FALSE_PER_1000}"
    );
}

#[test]
fn the_readme_states_the_thresholds_the_tests_hold() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let stated = format!(
        "at least {MIN_FOUND} of {} labels found and at most {MAX_FALSE_PER_1000} false Insights per 1,000 series-days",
        SEEDS.len() * SCENARIO_KINDS.len()
    );
    assert!(readme.contains(&stated), "README must say: {stated}");
}
