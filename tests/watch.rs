//! Continuous mode end to end: `watch` following a folder as a generated archive lands in it
//! file by file, killed with SIGKILL at random points and restarted; stopped with SIGTERM;
//! metrics and health; standard input; a second process on the same store.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, generated, http_get, json_lines, metric, score_keep_pending};
use rand::{Rng, SeedableRng};

fn watch_command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trailsight"));
    c.arg("watch").args(args);
    c
}

/// The archive's log files in the order they were delivered (the order a trail writes them).
fn delivery_order(archive: &Path) -> Vec<PathBuf> {
    let found = trailsight::ingest::discover(&[archive.to_path_buf()]);
    found
        .files
        .into_iter()
        .map(|f| match f.source {
            trailsight::ingest::InputSource::File(p) => p,
            other => panic!("unexpected source {other:?}"),
        })
        .collect()
}

/// Copies one archive file into the followed folder the way a sync tool should: written under
/// a hidden name, then renamed into place.
fn land(archive: &Path, file: &Path, folder: &Path) {
    let rel = file.strip_prefix(archive).unwrap();
    let target = folder.join(rel);
    let dir = target.parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let tmp = dir.join(format!(
        ".{}.part",
        rel.file_name().unwrap().to_string_lossy()
    ));
    std::fs::copy(file, &tmp).unwrap();
    std::fs::rename(&tmp, &target).unwrap();
}

/// A feeder thread landing `files` one by one, spread over about `span`.
fn feed(
    archive: PathBuf,
    files: Vec<PathBuf>,
    folder: PathBuf,
    span: Duration,
) -> (
    std::thread::JoinHandle<()>,
    Arc<AtomicBool>,
    Arc<AtomicUsize>,
) {
    let done = Arc::new(AtomicBool::new(false));
    let landed = Arc::new(AtomicUsize::new(0));
    let (d, l) = (Arc::clone(&done), Arc::clone(&landed));
    let handle = std::thread::spawn(move || {
        let per_file = span / files.len().max(1) as u32;
        let start = Instant::now();
        for (i, f) in files.iter().enumerate() {
            land(&archive, f, &folder);
            l.store(i + 1, Ordering::Relaxed);
            let due = per_file * (i as u32 + 1);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        d.store(true, Ordering::Relaxed);
    });
    (handle, done, landed)
}

/// `watch --once` over a whole folder into a new store: the uninterrupted reference.
fn watch_once(folder: &Path, store: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        folder.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--once",
        "--settle",
        "0",
    ];
    if !extra.contains(&"--log-level") {
        args.extend_from_slice(&["--log-level", "warn"]);
    }
    args.extend_from_slice(extra);
    let output = watch_command(&args).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn a_live_folder_fed_file_by_file_gives_exactly_what_score_gives() {
    let archive = generated(1, 0.5, true);
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("trail");
    std::fs::create_dir_all(&folder).unwrap();
    let files = delivery_order(&archive);

    // `score` on the whole archive, keeping the last minutes pending as a live trail would.
    let expected = score_keep_pending(&archive, dir.path());
    assert_eq!(
        json_lines(&expected).len(),
        10,
        "5 incidents, Start and End each"
    );

    // `watch --wait-for-final` following the folder while the files land one by one.
    let watch_out = dir.path().join("watch.jsonl");
    let port = free_port();
    let mut child = watch_command(&[
        folder.to_str().unwrap(),
        "--store",
        dir.path().join("watch.db").to_str().unwrap(),
        "--out",
        watch_out.to_str().unwrap(),
        "--wait-for-final",
        "--settle",
        "0",
        "--poll-interval",
        "0.2",
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
        "--log-level",
        "warn",
    ])
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let total = files.len();
    let (feeder, _, _) = feed(
        archive.clone(),
        files,
        folder.clone(),
        Duration::from_secs(15),
    );
    feeder.join().unwrap();
    // Caught up: every file read and every Insight written (the metrics say so).
    let deadline = Instant::now() + Duration::from_secs(300);
    let metrics = loop {
        let body = http_get(port, "/metrics").map(|(_, body)| body);
        let value = |name: &str| body.as_deref().and_then(|b| metric(b, name));
        if value("trailsight_files_ingested_total") == Some(total as f64)
            && value("trailsight_insights_emitted_total{state=\"End\"}") == Some(5.0)
        {
            break body.unwrap_or_default();
        }
        assert!(
            Instant::now() < deadline,
            "watch did not catch up: {body:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let (status, body) = http_get(port, "/health").unwrap();
    assert!(status.contains("200"), "{status} {body}");
    assert_eq!(
        metric(
            &metrics,
            "trailsight_insights_emitted_total{state=\"Start\"}"
        ),
        Some(5.0),
        "{metrics}"
    );
    assert!(metric(&metrics, "trailsight_late_records_total").unwrap() > 0.0);
    assert_eq!(metric(&metrics, "trailsight_open_episodes"), Some(0.0));
    // SIGTERM: the file in hand is finished, state flushed, exit 0.
    common::signal(&child, "-TERM");
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert_eq!(
        String::from_utf8_lossy(&std::fs::read(&watch_out).unwrap()),
        String::from_utf8_lossy(&expected),
        "watch must write exactly what score writes"
    );
    // Everything was committed: a new run reads no file again and writes nothing new.
    let again = watch_once(
        &folder,
        &dir.path().join("watch.db"),
        &watch_out,
        &["--wait-for-final", "--log-level", "info"],
    );
    let log = String::from_utf8_lossy(&again.stderr);
    assert!(log.contains("files=0"), "{log}");
    assert!(std::fs::read(&watch_out).unwrap() == expected);
}

#[test]
fn early_rises_keep_the_episodes_of_score_and_only_start_sooner() {
    let archive = generated(1, 0.5, true);
    let dir = tempfile::tempdir().unwrap();
    let score = json_lines(&score_keep_pending(&archive, dir.path()));
    let early_out = dir.path().join("early.jsonl");
    watch_once(&archive, &dir.path().join("early.db"), &early_out, &[]);
    let early = json_lines(&std::fs::read(&early_out).unwrap());
    assert_eq!(score.len(), early.len());
    let mut earlier_statistics = 0;
    for (s, e) in score.iter().zip(&early) {
        // Same episode, same IDs, same times: only a Start's statistics may differ (they were
        // computed from the counts known when it was declared, which can only be smaller).
        for field in ["eventID", "sharedEventID", "eventTime"] {
            assert_eq!(s[field], e[field], "{field}");
        }
        let state = s["insightDetails"]["state"].as_str().unwrap();
        if state == "End" {
            assert_eq!(s, e, "an End is the same whenever its Start was written");
        } else {
            let avg = |r: &serde_json::Value| {
                r["insightDetails"]["insightContext"]["statistics"]["insight"]["average"]
                    .as_f64()
                    .unwrap()
            };
            assert!(avg(e) <= avg(s) + 1e-9);
            if avg(e) < avg(s) {
                earlier_statistics += 1;
            }
        }
    }
    assert!(
        earlier_statistics > 0,
        "at least one rise was declared before its minute was complete"
    );
}

#[test]
fn killed_at_random_points_it_ends_with_exactly_the_insights_of_one_uninterrupted_run() {
    let archive = generated(1, 0.5, true);
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference.jsonl");
    watch_once(&archive, &dir.path().join("reference.db"), &reference, &[]);
    let expected = std::fs::read(&reference).unwrap();
    assert_eq!(json_lines(&expected).len(), 10);

    let folder = dir.path().join("trail");
    std::fs::create_dir_all(&folder).unwrap();
    let store = dir.path().join("killed.db");
    let out = dir.path().join("killed.jsonl");
    let files = delivery_order(&archive);
    let (feeder, done, landed) = feed(
        archive.clone(),
        files,
        folder.clone(),
        Duration::from_secs(40),
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20261122);
    let mut kills = 0;
    while !done.load(Ordering::Relaxed) {
        let mut child = watch_command(&[
            folder.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--settle",
            "0",
            "--poll-interval",
            "0.1",
            "--checkpoint-interval",
            "0.3",
            "--log-level",
            "error",
        ])
        .spawn()
        .unwrap();
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..1500)));
        common::signal(&child, "-KILL");
        let status = child.wait().unwrap();
        assert!(
            status.code().is_none(),
            "killed by the signal, not exited: {status:?}"
        );
        kills += 1;
    }
    feeder.join().unwrap();
    assert!(landed.load(Ordering::Relaxed) > 7000);
    assert!(kills >= 24, "only {kills} kills");
    // The last run reads what the killed ones did not commit.
    watch_once(&folder, &store, &out, &[]);
    let got = std::fs::read(&out).unwrap();
    let got_lines = json_lines(&got);
    let ids: std::collections::HashSet<_> =
        got_lines.iter().map(|r| r["eventID"].to_string()).collect();
    assert_eq!(ids.len(), got_lines.len(), "a record was written twice");
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&expected),
        "after {kills} kills the Insights differ from one uninterrupted run"
    );
}

#[test]
fn a_second_process_on_the_same_store_is_told_who_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("empty");
    std::fs::create_dir_all(&folder).unwrap();
    let store = dir.path().join("db");
    let port = free_port();
    let mut first = watch_command(&[
        folder.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--quiet",
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
    ])
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(port, "/health").is_none() {
        assert!(Instant::now() < deadline, "the first watch did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let second = watch_command(&[
        folder.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--once",
    ])
    .output()
    .unwrap();
    common::signal(&first, "-INT");
    let first_status = first.wait().unwrap();
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains(&format!("in use by PID {}", first.id())),
        "{err}"
    );
    assert!(
        first_status.success(),
        "SIGINT stops cleanly: {first_status:?}"
    );
}

#[test]
fn standard_input_keeps_good_records_around_bad_lines_and_names_the_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("db");
    let record = |i: u32| {
        format!(
            "{{\"eventVersion\":\"1.08\",\"eventTime\":\"2024-03-01T10:{:02}:00Z\",\"eventSource\":\"ec2.amazonaws.com\",\"eventName\":\"RunInstances\",\"awsRegion\":\"us-east-1\",\"recipientAccountId\":\"111122223333\",\"eventID\":\"id-{i}\",\"readOnly\":false,\"managementEvent\":true,\"eventType\":\"AwsApiCall\",\"eventCategory\":\"Management\",\"userAgent\":\"../../etc/passwd\"}}\n",
            i % 60
        )
    };
    let mut input = String::new();
    for i in 0..50 {
        input.push_str(&record(i));
    }
    input.push_str("{\"eventTime\": broken json\n");
    input.push_str(&format!("{{\"pad\":\"{}\"}}\n", "x".repeat(3 << 20)));
    for i in 50..100 {
        input.push_str(&record(i));
    }
    input.push_str(&record(7)); // a repeated delivery: counted once
    let mut child = watch_command(&[
        "-",
        "--store",
        store.to_str().unwrap(),
        "--quiet",
        "--max-file-size",
        "1048576",
    ])
    .stdin(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "bad input is reported: {log}");
    assert!(
        log.contains("line=52") && log.contains("longer than the limit"),
        "{log}"
    );
    assert!(log.contains("<stdin> lines 1-"), "{log}");
    assert!(log.contains("write_calls=100"), "{log}");
    assert!(log.contains("duplicates=1"), "{log}");
    // The store kept them: the history holds 100 distinct calls.
    let engine =
        trailsight::pipeline::Engine::open(&store, trailsight::detect::Profile::builtin()).unwrap();
    assert_eq!(engine.registry().series.len(), 1);
}

/// A sink that fails (disk full) until it is told to work, and keeps what it got.
#[derive(Default)]
struct FlakySink {
    working: bool,
    got: Vec<trailsight::insight::InsightRecord>,
}

impl trailsight::insight::InsightSink for FlakySink {
    fn write(
        &mut self,
        record: &trailsight::insight::InsightRecord,
    ) -> Result<(), trailsight::insight::SinkError> {
        if !self.working {
            return Err(trailsight::insight::SinkError::Write(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "No space left on device",
            )));
        }
        self.got.push(record.clone());
        Ok(())
    }

    fn finish(&mut self) -> Result<(), trailsight::insight::SinkError> {
        Ok(())
    }
}

#[test]
fn a_failing_sink_stops_nothing_from_being_delivered_after_a_restart() {
    let archive = generated(1, 0.5, true);
    let reference = {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = trailsight::pipeline::Engine::open(
            &dir.path().join("db"),
            trailsight::detect::Profile::builtin(),
        )
        .unwrap();
        let mut sink = FlakySink {
            working: true,
            ..Default::default()
        };
        engine
            .score(
                std::slice::from_ref(&archive),
                &common::batch_options(),
                &mut [&mut sink],
            )
            .unwrap();
        sink.got
    };
    assert_eq!(reference.len(), 10);

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("db");
    let mut sink = FlakySink::default();
    {
        let mut engine =
            trailsight::pipeline::Engine::open(&store, trailsight::detect::Profile::builtin())
                .unwrap();
        let err = engine
            .score(
                std::slice::from_ref(&archive),
                &common::batch_options(),
                &mut [&mut sink],
            )
            .expect_err("the disk is full");
        assert!(err.to_string().contains("No space left"), "{err}");
    }
    // The process is gone; the disk has room again. The Insights committed before the failure
    // come out first, then the run continues where its checkpoint left it.
    sink.working = true;
    let mut engine =
        trailsight::pipeline::Engine::open(&store, trailsight::detect::Profile::builtin()).unwrap();
    let redelivered = engine.redeliver(&mut [&mut sink]).unwrap();
    assert!(
        redelivered > 0,
        "the failed delivery was kept in the outbox"
    );
    let summary = engine
        .score(&[archive], &common::batch_options(), &mut [&mut sink])
        .unwrap();
    assert!(summary.files_already_ingested > 0, "{summary:?}");
    assert_eq!(sink.got, reference, "nothing lost, nothing repeated");
}
