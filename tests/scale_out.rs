//! Scale-out (docs/scale-out.md): the Spark job's aggregates scored by `score --aggregates` give
//! the Insights `score` gives on the archive, byte for byte; their counts are the engine's, minute
//! by minute; two shards by account give together the Insights of one run; new days continue
//! from the stored state; and bad aggregate files are refused with a clear error, never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{json_lines, trailsight};
use polars::prelude::*;

/// Whether PySpark can be imported; in CI (`CI` set) it must be.
fn pyspark() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import pyspark"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "pyspark is not installed: CI must install it (.ci/run pins it)"
        );
        eprintln!("note: pyspark not installed (pip install pyspark==3.5.7), test skipped");
    }
    ok
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// `score ...` that must end with status 0; standard error.
fn ok(args: &[&str]) -> String {
    let o = trailsight(args);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "trailsight {args:?}: {stderr}");
    stderr
}

/// Sorted lines of a JSON-lines file.
fn sorted_lines(files: &[PathBuf]) -> Vec<String> {
    let mut lines: Vec<String> = files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    lines.sort();
    lines
}

/// Copies the day partitions of an aggregate root up to and including `last_day`.
fn copy_days(from: &Path, to: &Path, last_day: &str) {
    for table in ["series_minutes", "attributions", "activity"] {
        for entry in std::fs::read_dir(from.join(table)).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(day) = name.strip_prefix("delivery_day=") else {
                continue;
            };
            if day > last_day {
                continue;
            }
            let dest = to.join(table).join(&name);
            std::fs::create_dir_all(&dest).unwrap();
            for file in std::fs::read_dir(entry.path()).unwrap().flatten() {
                std::fs::copy(file.path(), dest.join(file.file_name())).unwrap();
            }
        }
    }
    std::fs::copy(
        from.join("_trailsight_aggregates.json"),
        to.join("_trailsight_aggregates.json"),
    )
    .unwrap();
}

#[test]
fn spark_aggregates_score_to_the_same_insights_counts_shards_and_increments() {
    if !pyspark() {
        return;
    }
    let archive = common::generated(7, 0.3, true);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let agg = d.join("agg");
    // One Spark session for the whole test (it is the slow part).
    let job = Path::new(env!("CARGO_MANIFEST_DIR")).join("scale-out/spark/aggregate.py");
    let spark = Command::new("python3")
        .arg(&job)
        .args(["--input", path(&archive), "--output", path(&agg)])
        .output()
        .expect("run the Spark job");
    assert!(
        spark.status.success(),
        "the Spark job failed: {}",
        String::from_utf8_lossy(&spark.stderr)
    );

    // The archive scored from its logs, and from the Spark aggregates.
    let (a_db, a_out) = (d.join("a.db"), d.join("a.jsonl"));
    ok(&[
        "score",
        path(&archive),
        "--store",
        path(&a_db),
        "--out",
        path(&a_out),
    ]);
    let (g_db, g_out) = (d.join("g.db"), d.join("g.jsonl"));
    let summary = ok(&[
        "score",
        "--aggregates",
        path(&agg),
        "--store",
        path(&g_db),
        "--out",
        path(&g_out),
    ]);
    let from_logs = std::fs::read(&a_out).unwrap();
    assert!(
        json_lines(&from_logs).len() >= 4,
        "the archive's incidents give Insights"
    );
    assert_eq!(
        String::from_utf8_lossy(&from_logs),
        String::from_utf8_lossy(&std::fs::read(&g_out).unwrap()),
        "Insights from aggregates differ from Insights from logs ({summary})"
    );

    // The counts the aggregates gave the store are the engine's own, minute by minute.
    // (Rows sorted: the stores number their series in the order each met them.)
    let counts = |db: &Path| {
        let o = trailsight(&["counts", "--store", path(db)]);
        assert!(o.status.success());
        let mut lines: Vec<String> = String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    };
    let engine_counts = counts(&a_db);
    assert!(engine_counts.len() > 1000, "counts were stored");
    let spark_counts = counts(&g_db);
    let differ = engine_counts
        .iter()
        .zip(&spark_counts)
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        engine_counts == spark_counts,
        "per-minute counts from Spark differ from the engine's: {} rows against {}, {differ} differ",
        spark_counts.len(),
        engine_counts.len()
    );

    // Two shards by account, each its own store: together, the Insights of one run.
    let mut shard_outs = Vec::new();
    for i in 0..2 {
        let (db, out) = (d.join(format!("s{i}.db")), d.join(format!("s{i}.jsonl")));
        let shard = format!("{i}/2");
        ok(&[
            "score",
            "--aggregates",
            path(&agg),
            "--store",
            path(&db),
            "--out",
            path(&out),
            "--shard",
            &shard,
        ]);
        shard_outs.push(out);
    }
    assert_eq!(
        sorted_lines(&shard_outs),
        sorted_lines(std::slice::from_ref(&a_out))
    );

    // New day partitions continue from the stored state, as new files do: the first days
    // (keeping the last minutes pending, as for a growing archive), then all of them.
    let grown = d.join("grown");
    copy_days(&agg, &grown, "2024-03-08");
    let (i_db, i_out) = (d.join("i.db"), d.join("i.jsonl"));
    let i_path = path(&i_out);
    let first = [
        "score",
        "--aggregates",
        path(&grown),
        "--store",
        path(&i_db),
        "--out",
        i_path,
        "--keep-pending",
    ];
    ok(&first);
    copy_days(&agg, &grown, "9999-12-31");
    let again = ok(&[
        "score",
        "--aggregates",
        path(&grown),
        "--store",
        path(&i_db),
        "--out",
        i_path,
        "--append",
    ]);
    assert!(again.contains("5 already ingested"), "{again}");
    assert_eq!(
        String::from_utf8_lossy(&std::fs::read(&i_out).unwrap()),
        String::from_utf8_lossy(&from_logs)
    );
}

/// A minute as Parquet timestamps (microseconds, UTC), as Spark writes them.
fn timestamps(name: &str, minutes: &[Option<i64>]) -> Column {
    let micros: Vec<Option<i64>> = minutes.iter().map(|m| m.map(|m| m * 60_000_000)).collect();
    Int64Chunked::from_iter_options(name.into(), micros.into_iter())
        .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
        .into_column()
}

fn text(name: &str, values: &[Option<&str>]) -> Column {
    Column::new(name.into(), values.to_vec())
}

fn write(df: &mut DataFrame, file: &Path) {
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let f = std::fs::File::create(file).unwrap();
    ParquetWriter::new(f).finish(df).unwrap();
}

/// 2024-03-04T00:00Z.
const DAY0: i64 = 28_496_160;

/// One delivery day of valid tables: `calls` write calls of one API per minute for an hour,
/// with the activity rows for them.
fn good_day(root: &Path, day: &str, first_minute: i64) {
    let minutes: Vec<Option<i64>> = (0..60).map(|m| Some(first_minute + m)).collect();
    let n = minutes.len();
    let same = |v: &'static str| vec![Some(v); n];
    let mut activity = DataFrame::new_infer_height(vec![
        timestamps("minute", &minutes),
        text("account", &same("111122223333")),
        text("region", &same("us-east-1")),
        timestamps("late_at", &vec![None; n]),
        Column::new("records".into(), vec![3i64; n]),
    ])
    .unwrap();
    write(
        &mut activity,
        &root.join(format!("activity/delivery_day={day}/part-0.parquet")),
    );
    let mut series = DataFrame::new_infer_height(vec![
        timestamps("minute", &minutes),
        text("account", &same("111122223333")),
        text("region", &same("us-east-1")),
        text("event_source", &same("ec2.amazonaws.com")),
        text("event_name", &same("RunInstances")),
        text("error_code", &vec![None; n]),
        text("category", &same("Management")),
        text("insight_type", &same("ApiCallRateInsight")),
        timestamps("late_at", &vec![None; n]),
        Column::new("calls".into(), vec![2i64; n]),
    ])
    .unwrap();
    write(
        &mut series,
        &root.join(format!("series_minutes/delivery_day={day}/part-0.parquet")),
    );
}

/// A second day whose `series_minutes` file holds one bad value: (column, value) replaced in
/// row 7 of otherwise good rows.
fn bad_day(root: &Path, column: &str, bad: Option<&str>) {
    good_day(root, "2024-03-05", DAY0 + 1440);
    let file = root.join("series_minutes/delivery_day=2024-03-05/part-0.parquet");
    let mut df = ParquetReader::new(std::fs::File::open(&file).unwrap())
        .finish()
        .unwrap();
    if column == "minute" {
        // 9999-12-31T23:59Z.
        let mut minutes: Vec<Option<i64>> = (0..60).map(|m| Some(DAY0 + 1440 + m)).collect();
        minutes[7] = Some(4_102_444_800 / 60 * 2 + 2_000_000_000);
        df.replace("minute", timestamps("minute", &minutes))
            .unwrap();
    } else {
        let mut values: Vec<Option<String>> = df
            .column(column)
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|v| v.map(str::to_owned))
            .collect();
        values[7] = bad.map(str::to_owned);
        df.replace(column, Column::new(column.into(), values))
            .unwrap();
    }
    write(&mut df, &file);
}

#[test]
fn bad_aggregates_are_refused_with_the_file_row_and_value_and_good_days_are_kept() {
    let huge = "x".repeat(100_000);
    let cases: [(&str, Option<&str>, &str); 6] = [
        ("account", None, "account is null"),
        ("account", Some("../../etc"), "would make a path"),
        ("event_name", Some(&huge), "more than 256"),
        ("category", Some("Insight"), "not Management or Data"),
        ("minute", None, "out of range"),
        ("truncated", None, "not a readable Parquet file"),
    ];
    for (column, value, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("agg");
        good_day(&root, "2024-03-04", DAY0);
        if column == "truncated" {
            good_day(&root, "2024-03-05", DAY0 + 1440);
            let file = root.join("series_minutes/delivery_day=2024-03-05/part-0.parquet");
            let bytes = std::fs::read(&file).unwrap();
            std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
        } else {
            bad_day(&root, column, value);
        }
        let store = dir.path().join("db");
        let o = trailsight(&[
            "score",
            "--aggregates",
            path(&root),
            "--store",
            path(&store),
            "--quiet",
        ]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{column}: {stderr}");
        assert!(stderr.contains(expected), "{column}: {stderr}");
        assert!(stderr.contains("delivery_day=2024-03-05"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        // The good day before the bad one was scored and saved.
        assert!(
            stderr.contains("180 read, 120 write calls"),
            "{column}: {stderr}"
        );
    }

    // Wrong schema: a table without its count column.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("agg");
    good_day(&root, "2024-03-04", DAY0);
    let mut df = DataFrame::new_infer_height(vec![timestamps("minute", &[Some(DAY0)])]).unwrap();
    write(
        &mut df,
        &root.join("activity/delivery_day=2024-03-04/part-0.parquet"),
    );
    let o = trailsight(&[
        "score",
        "--aggregates",
        path(&root),
        "--store",
        path(&dir.path().join("db")),
        "--quiet",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("column account is missing"), "{stderr}");

    // A profile that counts principals' series, which the tables do not carry: refused, rather
    // than scoring none of the principals' series without a word.
    let root = dir.path().join("good");
    good_day(&root, "2024-03-04", DAY0);
    let never = dir.path().join("never.db");
    let o = trailsight(&[
        "score",
        "--aggregates",
        path(&root),
        "--store",
        path(&never),
        "--profile",
        concat!(env!("CARGO_MANIFEST_DIR"), "/models/security.toml"),
        "--quiet",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(stderr.contains("per-principal series"), "{stderr}");
    assert!(o.stdout.is_empty());
}

#[test]
fn aggregates_in_s3_score_as_the_same_folder_does() {
    let Some(moto) = common::start_moto() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("agg");
    good_day(&root, "2024-03-04", DAY0);
    good_day(&root, "2024-03-05", DAY0 + 1440);
    common::boto(
        &moto.endpoint,
        &format!(
            "import os\ns3.create_bucket(Bucket='analytics')\nroot = {:?}\n\
             for d, _, fs in os.walk(root):\n    for f in fs:\n        p = os.path.join(d, f)\n        \
             s3.upload_file(p, 'analytics', 'agg/' + os.path.relpath(p, root))",
            path(&root)
        ),
    );
    let run = |source: &str, store: &Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_trailsight"));
        c.args([
            "score",
            "--aggregates",
            source,
            "--store",
            path(store),
            "--quiet",
        ]);
        for (k, v) in common::AWS_ENV {
            c.env(k, v);
        }
        c.env_remove("AWS_PROFILE")
            .env("AWS_ENDPOINT_URL", &moto.endpoint);
        let o = c.output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{source}: {stderr}");
        stderr
    };
    let s3_store = dir.path().join("s3.db");
    let from_s3 = run("s3://analytics/agg/", &s3_store);
    assert!(from_s3.contains("360 read, 240 write calls"), "{from_s3}");
    let local_store = dir.path().join("local.db");
    run(path(&root), &local_store);
    let counts = |db: &Path| trailsight(&["counts", "--store", path(db)]).stdout;
    assert_eq!(counts(&s3_store), counts(&local_store));
    // Run again: every day is already scored.
    let again = run("s3://analytics/agg/", &s3_store);
    assert!(again.contains("2 already ingested"), "{again}");
}
