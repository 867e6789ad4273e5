//! Prints the NAB realAWSCloudwatch table: trailsight's gauge mode beside the published
//! detectors. `cargo run --release --example nab [-- NAB_DIR [--json]]`; the corpus defaults to
//! `../shared/datasets/nab` beside the project.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let dir = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/nab")
        });
    let mut options = trailsight::nab::NabOptions::default();
    // Experiment knobs (not part of the reported run): TS_BUDGET, TS_Q, TS_COOLDOWN, TS_MAXEP.
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<f64>().ok());
    if let Some(v) = env("TS_BUDGET") {
        options.profile.detect.false_insights_per_1000_series_days = v;
    }
    if let Some(v) = env("TS_Q") {
        options.gauge.tail_quantile = v;
    }
    if let Some(v) = env("TS_COOLDOWN") {
        options.profile.detect.cooldown_minutes = v as i64;
    }
    if let Some(v) = env("TS_MAXEP") {
        options.profile.detect.max_episode_minutes = v as i64;
    }
    if let Some(v) = env("TS_CONT") {
        options.profile.detect.continue_p = v;
    }
    if let Some(v) = env("TS_FLOOR") {
        options.gauge.relative_floor = v;
    }
    if let Some(v) = env("TS_PRIOR") {
        options.gauge.hour_prior_days = v;
    }
    if let Some(v) = env("TS_MINHIST") {
        options.gauge.min_history_minutes = v as i64;
    }
    let report = trailsight::nab::evaluate(&dir, &options)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}
