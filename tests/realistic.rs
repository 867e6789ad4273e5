//! Realistic traffic (`generate --traffic realistic`, no incidents) scored from an empty store
//! and evaluated per behaviour, on tuning seed 1 at the suite's scale (the held-out
//! measurements are in docs/detection-quality.md). Each test fails on the detector before the
//! mechanism it names: the level shift (the detector before gave 5.67 episodes per adopted API
//! on the tuning seeds), and the echo of a call rise (turned off in the
//! profile here). The time zone and the burst habit are tested on single series in
//! `src/detect/behaviour_tests.rs`: on this archive neither changes the count (see the docs).

use std::path::{Path, PathBuf};

use trailsight::detect::Profile;
use trailsight::eval::{
    compare_with_behaviours, read_behaviours, read_labels, score_archive, BehaviourKindReport,
    DEFAULT_TOLERANCE_MINUTES,
};
use trailsight::generate::{generate, GenerateOptions, Traffic};

const SEED: u64 = 1;
const SCALE: f64 = 0.5;
const DAYS: u32 = 10;
/// Named in the cached archive's directory: raised whenever the generator's realistic plan
/// changes.
const PLAN: u32 = 1;

fn archive() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("realistic-v{PLAN}-{SEED}-{SCALE}-{DAYS}"));
    if !dir.join("labels.json").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let mut opts = GenerateOptions::new(dir.clone(), DAYS, SEED);
        opts.scale = SCALE;
        opts.incidents = false;
        opts.traffic = Traffic::Realistic;
        generate(&opts).unwrap();
    }
    dir
}

/// Per behaviour kind: (false Starts, Starts per allowed change).
fn by_kind(profile: Profile) -> Vec<BehaviourKindReport> {
    let dir = archive();
    let labels_path = dir.join("labels.json");
    let labels = read_labels(&labels_path).unwrap();
    let behaviours = read_behaviours(&labels_path).unwrap();
    let scored = score_archive(&[dir], profile, None).unwrap();
    let report =
        compare_with_behaviours(&labels, &behaviours, &scored, DEFAULT_TOLERANCE_MINUTES).unwrap();
    report.behaviours.unwrap().kinds
}

fn kind<'r>(kinds: &'r [BehaviourKindReport], name: &str) -> &'r BehaviourKindReport {
    kinds
        .iter()
        .find(|k| k.kind == name)
        .unwrap_or_else(|| panic!("no behaviour {name} in the archive"))
}

fn episodes(kinds: &[BehaviourKindReport], name: &str) -> f64 {
    kind(kinds, name).episodes_per_change.unwrap_or(0.0)
}

#[test]
fn an_api_adopted_for_good_and_a_step_change_are_one_episode_each() {
    let kinds = by_kind(Profile::builtin());
    for name in ["new_api_adopted", "step_change"] {
        let n = episodes(&kinds, name);
        eprintln!("{name}: {n:.2} episodes per change");
        assert!(n <= 1.0, "{name}: {n:.2} episodes per change");
    }
}

#[test]
fn error_rises_that_echo_their_apis_call_rise_are_not_insights_of_their_own() {
    // The throttling rule (below) silences these storms too: off in both, to see the echo's.
    // The habits of 2026-12-05 (a routine's runs, one principal's sustained rise) hold most
    // storms' call rises too, leaving no call-rate Insight for an error rise to echo: off as well.
    let mut with = Profile::builtin();
    with.detect.throttling_codes.clear();
    with.detect.sustained_needs_others = false;
    with.detect.habit_min_days = 0;
    with.detect.habit_pool = false;
    let mut without = with.clone();
    without.detect.echo_ratio = 0.0;
    let with = by_kind(with);
    let without = by_kind(without);
    let storms = |kinds: &[BehaviourKindReport]| kind(kinds, "throttle_storm").false_insights;
    eprintln!(
        "retry storms: {} false Starts ({} without the echo rule)",
        storms(&with),
        storms(&without)
    );
    assert!(storms(&with) < storms(&without));
}

#[test]
fn a_retry_storm_of_a_few_minutes_is_not_an_insight() {
    let with = by_kind(Profile::builtin());
    let mut without = Profile::builtin();
    without.detect.throttling_codes.clear();
    let without = by_kind(without);
    let storms = |kinds: &[BehaviourKindReport]| kind(kinds, "throttle_storm").false_insights;
    eprintln!(
        "retry storms: {} false Starts ({} without throttling codes)",
        storms(&with),
        storms(&without)
    );
    assert!(2 * storms(&with) <= storms(&without));
}

#[test]
fn a_ci_roles_applies_across_apis_are_its_habit() {
    let sessions = |kinds: &[BehaviourKindReport]| kind(kinds, "automation_session").false_insights;
    let with = by_kind(Profile::builtin());
    // No burst is ever recorded, so neither a series nor a principal has a habit.
    let mut without = Profile::builtin();
    without.detect.burst_p = 1e-300;
    let without = by_kind(without);
    eprintln!(
        "automation sessions: {} false Starts ({} without habits)",
        sessions(&with),
        sessions(&without)
    );
    assert!(2 * sessions(&with) <= sessions(&without));
}
