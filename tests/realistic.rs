//! Realistic traffic (`generate --traffic realistic`, no incidents) scored from an empty store
//! and evaluated per behaviour: each mechanism of the detector for real traffic against the same
//! archive with that mechanism turned off in the profile. Each test fails on the detector before
//! the mechanism (it is what "turned off" gives). One tuning seed; the held-out measurements are
//! in docs/detection-quality.md.

use std::path::{Path, PathBuf};

use trailsight::detect::Profile;
use trailsight::eval::{
    compare_with_behaviours, read_behaviours, read_labels, score_archive, BehaviourKindReport,
    DEFAULT_TOLERANCE_MINUTES,
};
use trailsight::generate::{generate, GenerateOptions, Traffic};

const SEED: u64 = 1;
const SCALE: f64 = 0.3;
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
    let with = by_kind(Profile::builtin());
    let mut without = Profile::builtin();
    // No level shift: an episode runs to max_episode_minutes and the baseline learns the new
    // level only through its winsorised minutes.
    without.detect.level_shift_minutes = without.detect.max_episode_minutes;
    let without = by_kind(without);
    for name in ["new_api_adopted", "step_change"] {
        let (after, before) = (episodes(&with, name), episodes(&without, name));
        eprintln!("{name}: {after:.2} episodes per change (without level shifts: {before:.2})");
        assert!(after <= 1.0, "{name}: {after:.2} episodes per change");
    }
    assert!(
        episodes(&without, "new_api_adopted") > 1.0,
        "the test must fail without level shifts"
    );
}

#[test]
fn retry_storms_and_bursts_learned_as_habits_give_fewer_false_insights() {
    let with = by_kind(Profile::builtin());
    let mut without = Profile::builtin();
    // No window is ever a burst: the count model alone.
    without.detect.burst_p = 1e-300;
    let without = by_kind(without);
    let total = |kinds: &[BehaviourKindReport]| -> u64 {
        ["throttle_storm", "automation_session"]
            .iter()
            .map(|n| kind(kinds, n).false_insights)
            .sum()
    };
    let (after, before) = (total(&with), total(&without));
    eprintln!("storms and automation sessions: {after} false Starts (count model alone: {before})");
    assert!(
        after < before,
        "{after} false Starts, {before} without the burst tail"
    );
}

#[test]
fn office_hours_in_the_trails_time_zone_are_learned_across_daylight_saving() {
    let utc = by_kind(Profile::builtin());
    let labels: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(archive().join("labels.json")).unwrap())
            .unwrap();
    let tz = labels["generator"]["timezone"]
        .as_str()
        .unwrap()
        .to_string();
    let local =
        by_kind(Profile::from_toml(&format!("[baseline]\ntimezone = {tz:?}\n"), "test").unwrap());
    let false_of = |kinds: &[BehaviourKindReport]| {
        kind(kinds, "office_hours").false_insights + kind(kinds, "dst_shift").false_insights
    };
    eprintln!(
        "office hours and the DST shift: {} false Starts in {tz}, {} in UTC",
        false_of(&local),
        false_of(&utc)
    );
    assert!(false_of(&local) <= false_of(&utc));
}
