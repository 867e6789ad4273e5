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
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/nab"));
    let report = trailsight::nab::evaluate(&dir, &trailsight::nab::NabOptions::default())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}
