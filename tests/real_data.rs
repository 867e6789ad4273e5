//! Real CloudTrail records from `../shared/datasets/real/` (invictus, stratus) go through the
//! whole pipeline without a single skipped record, with the counts the dataset's README states.

mod common;

use common::{shared_datasets, trailsight};
use trailsight::series::InsightType;

#[test]
fn invictus_counts_match_the_dataset() {
    let Some(data) = shared_datasets() else {
        return;
    };
    let (_dir, engine, summary) = common::score_with_library(&[data.join("real/invictus")]);
    assert_eq!(summary.files_read, 55);
    assert_eq!(summary.counts.records, 2900);
    assert_eq!(summary.counts.write_calls, 574);
    assert_eq!(summary.counts.errors, 300);
    assert_eq!(summary.counts.duplicates, 0);
    assert!(
        summary.records_skipped.is_empty(),
        "{:?}",
        summary.records_skipped
    );
    assert!(summary.problems.is_empty(), "{:?}", summary.problems);
    assert!(!summary.input_failed());
    // The busiest minute, read back from the store: 165 write calls at 2023-07-10T12:08.
    let minute = common::minute("2023-07-10T12:08:00Z");
    let mut at_minute = 0;
    let mut all = 0;
    for (id, key) in engine.registry().series.iter().enumerate() {
        if key.insight_type == InsightType::ApiCallRateInsight {
            let counts = engine
                .store()
                .counts(id as u32, minute - 100, minute + 100)
                .unwrap();
            at_minute += counts.get(&minute).copied().unwrap_or(0);
            all += counts.values().sum::<u32>();
        }
    }
    assert_eq!(at_minute, 165);
    assert_eq!(all, 574);
}

#[test]
fn stratus_reads_without_a_skipped_record() {
    let Some(data) = shared_datasets() else {
        return;
    };
    let (_dir, _engine, summary) = common::score_with_library(&[data.join("real/stratus")]);
    assert_eq!(summary.files_read, 35);
    assert_eq!(summary.counts.records, 310);
    assert!(
        summary.records_skipped.is_empty(),
        "{:?}",
        summary.records_skipped
    );
    assert!(summary.problems.is_empty(), "{:?}", summary.problems);
}

#[test]
fn the_binary_scores_both_real_datasets_cleanly() {
    let Some(data) = shared_datasets() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("db");
    let out = trailsight(&[
        "score",
        "--no-progress",
        "--store",
        store.to_str().unwrap(),
        data.join("real/invictus").to_str().unwrap(),
        data.join("real/stratus").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("3210 read, 623 write calls, 352 errors"),
        "{stderr}"
    );
}
