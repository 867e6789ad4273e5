//! Replays every fuzz target's corpus on stable (`fuzz/corpus/<target>/`, the seeds committed
//! and any input a fuzzing run added or found), plus the public CloudTrail records of
//! `../shared/datasets/real` and the profiles of `models/` where they apply. The targets
//! themselves run under libFuzzer on nightly (`fuzz/README.md`); their checks live in
//! `trailsight::fuzzing`, so a crash found there fails here once its input is in the corpus.

use std::path::{Path, PathBuf};

use trailsight::fuzzing::TARGETS;

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn corpus(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    files_under(&root.join("fuzz/corpus").join(target), &mut files);
    files_under(&root.join("fuzz/artifacts").join(target), &mut files);
    match target {
        "log_file" | "scanner_against_serde" => {
            files_under(&root.join("../shared/datasets/real"), &mut files);
        }
        "profile_toml" => files_under(&root.join("models"), &mut files),
        _ => {}
    }
    files.sort();
    files
}

#[test]
fn every_fuzz_target_holds_on_its_corpus() {
    for (name, check) in TARGETS {
        let files = corpus(name);
        assert!(
            files
                .iter()
                .any(|f| f.starts_with(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz"))),
            "{name}: no committed seed"
        );
        for file in &files {
            // Real datasets can be large; the targets are meant for inputs of a few MB at most.
            let Ok(meta) = std::fs::metadata(file) else {
                continue;
            };
            if meta.len() > 8 << 20 {
                continue;
            }
            let data = std::fs::read(file).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{name} fails on {}", file.display());
        }
        eprintln!("{name}: {} inputs", files.len());
    }
}

/// Writes the `store_values` seeds from a store the demo archive builds:
/// `cargo test --release --test fuzz_corpus -- --ignored write_store_values_seeds`.
#[test]
#[ignore = "writes fuzz/corpus/store_values; run by hand when the store format changes"]
fn write_store_values_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_trailsight");
    let archive = dir.path().join("archive");
    let store = dir.path().join("store");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "generate",
        "--out",
        archive.to_str().unwrap(),
        "--days",
        "9",
        "--seed",
        "3",
    ]);
    run(&[
        "score",
        "--no-progress",
        "--quiet",
        "--store",
        store.to_str().unwrap(),
        "--out",
        dir.path().join("insights.jsonl").to_str().unwrap(),
        archive.to_str().unwrap(),
    ]);
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/store_values");
    std::fs::create_dir_all(&out).unwrap();
    for (kind, seed) in trailsight::fuzzing::store_values_seeds(&store).unwrap() {
        std::fs::write(out.join(format!("seed-{kind}")), seed).unwrap();
    }
}
