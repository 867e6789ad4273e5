//! Hostile and broken input: truncated gzip, broken JSON, wrong types, timestamps in the year
//! 9999, gzip bombs, enormous records, account ids that are paths. Nothing panics, the good
//! records around the bad ones are counted, the user is told which file and record, the exit
//! status says input failed, and nothing is written outside the output folder.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Output;

use common::{json_lines, trailsight};
use flate2::{write::GzEncoder, Compression};

fn record(account: &str, minute: &str, name: &str, read_only: &str) -> String {
    format!(
        r#"{{"eventVersion":"1.08","userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::{account}:user/alice","accountId":"{account}"}},"eventTime":"2024-03-04T{minute}:07Z","eventSource":"ec2.amazonaws.com","eventName":"{name}","awsRegion":"us-east-1","userAgent":"aws-cli/2.15.0","readOnly":{read_only},"eventType":"AwsApiCall","managementEvent":true,"eventCategory":"Management","recipientAccountId":"{account}","eventID":"{}"}}"#,
        uuid_for(account, minute, name)
    )
}

fn uuid_for(a: &str, m: &str, n: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{a}-{m}-{n}-{}", N.fetch_add(1, Ordering::Relaxed))
}

fn records_file(records: &[String]) -> String {
    format!(r#"{{"Records":[{}]}}"#, records.join(","))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn writes(n: usize, minute: &str) -> Vec<String> {
    (0..n)
        .map(|_| record("111122223333", minute, "RunInstances", "false"))
        .collect()
}

/// A folder of broken files around good ones; returns the write calls in the good records.
fn broken_archive(dir: &Path) -> u64 {
    std::fs::write(dir.join("good.json"), records_file(&writes(3, "10:00"))).unwrap();
    // Truncated gzip: 40 records, cut in the middle of the compressed stream.
    let whole = gzip(records_file(&writes(40, "10:01")).as_bytes());
    std::fs::write(dir.join("truncated.json.gz"), &whole[..whole.len() * 2 / 3]).unwrap();
    // Broken JSON in the middle of the Records array, after two good records.
    let mut broken = records_file(&writes(2, "10:02"));
    broken.truncate(broken.len() - 2);
    broken.push_str(r#",{"eventTime": "2024-03-04T10:02:00Z", "eventSource": ]]] garbage"#);
    std::fs::write(dir.join("broken.json"), broken).unwrap();
    // Wrong types and missing fields beside one good record.
    let typed = format!(
        r#"{{"Records":[{},{{"eventTime":5,"eventSource":"a","eventName":"b","awsRegion":"r","recipientAccountId":"1"}},{{"eventTime":"2024-03-04T10:03:00Z","eventSource":"ec2.amazonaws.com","eventName":"RunInstances","awsRegion":"us-east-1","recipientAccountId":"111122223333","readOnly":"false"}},{{"eventSource":"ec2.amazonaws.com"}},"just a string"]}}"#,
        record("111122223333", "10:03", "RunInstances", "false")
    );
    std::fs::write(dir.join("types.json"), typed).unwrap();
    // A timestamp in the year 9999 beside a good record.
    let future = record("111122223333", "10:04", "RunInstances", "false")
        .replace("2024-03-04T10:04:07Z", "9999-12-31T23:59:59Z");
    std::fs::write(
        dir.join("future.json"),
        records_file(&[
            future,
            record("111122223333", "10:04", "RunInstances", "false"),
        ]),
    )
    .unwrap();
    // An enormous (but valid) record: 200 KB of requestParameters.
    let big = record("111122223333", "10:05", "RunInstances", "false").replacen(
        r#""eventVersion":"1.08""#,
        &format!(
            r#""eventVersion":"1.08","requestParameters":{{"blob":"{}"}}"#,
            "x".repeat(200_000)
        ),
        1,
    );
    std::fs::write(dir.join("huge.json"), records_file(&[big])).unwrap();
    // A gzip bomb: 64 MB of spaces, refused above --max-file-size.
    let mut e = GzEncoder::new(Vec::new(), Compression::best());
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..64 {
        e.write_all(&chunk).unwrap();
    }
    std::fs::write(dir.join("bomb.json.gz"), e.finish().unwrap()).unwrap();
    // Good: 3 + (2 in broken) + 1 (types) + 1 (future) + 1 (huge); the truncated file adds
    // whatever was recovered before the cut.
    8
}

fn write_calls(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains("write calls"))
        .expect("a records line");
    let before = line.split(" write calls").next().unwrap();
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn bad_files_are_reported_and_the_good_records_around_them_counted() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let good = broken_archive(&input);
    let store = dir.path().join("db");
    let out = trailsight(&[
        "score",
        "--no-progress",
        "--max-file-size",
        "10000000",
        "--store",
        store.to_str().unwrap(),
        input.to_str().unwrap(),
        dir.path().join("missing.json").to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for name in [
        "truncated.json.gz",
        "broken.json",
        "types.json",
        "future.json",
        "bomb.json.gz",
        "missing.json",
    ] {
        assert!(stderr.contains(name), "{name} not reported:\n{stderr}");
    }
    assert!(
        !stderr.contains("huge.json"),
        "a large valid record is not a problem:\n{stderr}"
    );
    assert!(
        stderr.contains("record 1"),
        "the record index is given:\n{stderr}"
    );
    assert!(stderr.contains("out of range"), "{stderr}");
    let counted = write_calls(&stderr);
    // The good records all count, plus part (not all) of the truncated file.
    assert!(
        counted > good && counted < good + 40,
        "{counted} write calls:\n{stderr}"
    );
}

/// `score INPUT --store STORE --threads THREADS --on-error POLICY`.
fn score_on_error(input: &Path, store: &Path, threads: &str, policy: &str) -> Output {
    trailsight(&[
        "score",
        "--no-progress",
        "--threads",
        threads,
        "--on-error",
        policy,
        "--store",
        store.to_str().unwrap(),
        input.to_str().unwrap(),
    ])
}

#[test]
fn on_error_stop_stops_at_the_first_bad_file_and_keeps_the_work_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("a-good.json"), records_file(&writes(3, "10:00"))).unwrap();
    std::fs::write(input.join("b-bad.json"), "{\"Records\":[{").unwrap();
    std::fs::write(input.join("c-good.json"), records_file(&writes(5, "10:01"))).unwrap();
    let store = dir.path().join("db");
    let args = |policy: &str| score_on_error(&input, &store, "1", policy);
    let out = args("stop");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("stopped at the first bad file"), "{stderr}");
    assert_eq!(write_calls(&stderr), 3, "{stderr}");
    // The next run continues: the files read before are not read again.
    let out = args("continue");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already ingested"), "{stderr}");
    assert_eq!(write_calls(&stderr), 5, "{stderr}");
}

#[test]
fn on_error_stop_stops_with_several_threads_though_later_days_were_read_ahead() {
    // An S3-layout archive over several delivery hours and days: with two threads the reading
    // side parses later batches while the bad one is absorbed; none of them may count.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let file = |day: &str, stamp: &str, id: &str| {
        let folder = input.join(format!(
            "AWSLogs/111122223333/CloudTrail/us-east-1/2024/03/{day}"
        ));
        std::fs::create_dir_all(&folder).unwrap();
        folder.join(format!(
            "111122223333_CloudTrail_us-east-1_202403{day}T{stamp}Z_{id}.json"
        ))
    };
    std::fs::write(file("04", "1005", "a"), records_file(&writes(3, "10:00"))).unwrap();
    std::fs::write(file("04", "1105", "b"), "{\"Records\":[{").unwrap();
    std::fs::write(file("04", "1205", "c"), records_file(&writes(5, "12:01"))).unwrap();
    std::fs::write(file("05", "0005", "d"), records_file(&writes(2, "12:02"))).unwrap();
    let store = dir.path().join("db");
    for threads in ["2", "1"] {
        let _ = std::fs::remove_dir_all(&store);
        let args = |policy: &str| score_on_error(&input, &store, threads, policy);
        let out = args("stop");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "threads {threads}: {stderr}");
        assert!(stderr.contains("stopped at the first bad file"), "{stderr}");
        assert_eq!(write_calls(&stderr), 3, "threads {threads}: {stderr}");
        let out = args("continue");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("2 already ingested"),
            "threads {threads}: {stderr}"
        );
        assert_eq!(write_calls(&stderr), 7, "threads {threads}: {stderr}");
    }
}

#[test]
fn an_account_id_that_is_a_path_never_escapes_the_insights_folder() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let evil = "../../../../escaped";
    // Three hours of history (one read call), then a burst of 30 calls of a new API.
    let mut records = vec![record(evil, "07:00", "DescribeInstances", "true")];
    records.extend((0..30).map(|_| record(evil, "10:00", "RunInstances", "false")));
    std::fs::write(input.join("evil.json"), records_file(&records)).unwrap();
    let profile = dir.path().join("profile.toml");
    std::fs::write(&profile, "[baseline]\nmin_history_minutes = 60\n").unwrap();
    let insights = dir.path().join("out/insights");
    let out = trailsight(&[
        "score",
        "--no-progress",
        "--profile",
        profile.to_str().unwrap(),
        "--insights-dir",
        insights.to_str().unwrap(),
        "--store",
        dir.path().join("db").to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The Insight fires (its Start is in the JSON lines, as data; the episode is still open at
    // the end of the input), but the S3 layout refuses it.
    let records = json_lines(&out.stdout);
    assert_eq!(records.len(), 1, "{stderr}");
    assert_eq!(records[0]["insightDetails"]["state"], "Start");
    assert_eq!(records[0]["recipientAccountId"], evil);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("refused"), "{stderr}");
    // Nothing was created outside the output folder, anywhere in the temp dir.
    let mut all = Vec::new();
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            }
            all.push(e.path());
        }
    }
    assert!(
        all.iter().all(|p| !p.to_string_lossy().contains("escaped")),
        "{all:?}"
    );
    assert!(!dir.path().join("escaped").exists());
    assert!(!Path::new("/escaped").exists());
}

#[test]
fn a_store_of_another_version_is_refused_with_a_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("db");
    {
        let db = sled::open(&store).unwrap();
        db.insert("m/format", &99u32.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let input = dir.path().join("good.json");
    std::fs::write(&input, records_file(&writes(1, "10:00"))).unwrap();
    let out = trailsight(&[
        "score",
        "--store",
        store.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("format version 99"), "{stderr}");
    assert!(stderr.contains("rebuild"), "{stderr}");
}

#[test]
fn a_damaged_store_is_refused_not_silently_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("db");
    let input = dir.path().join("good.json");
    std::fs::write(&input, records_file(&writes(3, "10:00"))).unwrap();
    let run = || {
        trailsight(&[
            "score",
            "--no-progress",
            "--store",
            store.to_str().unwrap(),
            input.to_str().unwrap(),
        ])
    };
    assert_eq!(run().status.code(), Some(0));
    // Overwrite the start of sled's log: sled recovers by truncating it to nothing.
    let db = store.join("db");
    let mut bytes = std::fs::read(&db).unwrap();
    for b in bytes.iter_mut().skip(64).take(8192) {
        *b = 0xff;
    }
    std::fs::write(&db, bytes).unwrap();
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("rebuild"), "{stderr}");
}

#[test]
fn records_on_standard_input_are_read() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = writes(4, "10:00");
    let mut child = Command::new(env!("CARGO_BIN_EXE_trailsight"))
        .args([
            "score",
            "--no-progress",
            "--store",
            dir.path().join("db").to_str().unwrap(),
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.join("\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(write_calls(&stderr), 4, "{stderr}");
}

fn score_dir(input: &Path, store: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "score",
        "--no-progress",
        "--quiet",
        "--store",
        store.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(input.to_str().unwrap());
    trailsight(&args)
}

#[test]
fn one_bad_byte_in_a_user_agent_keeps_every_later_record() {
    // Regression: an invalid UTF-8 byte in record 500's userAgent dropped records 500-999.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let mut records = writes(1000, "10:00");
    records[500] = records[500].replace("aws-cli/2.15.0", "aws-cli/\u{0}2.15.0");
    let mut bytes = records_file(&records).into_bytes();
    let at = bytes.windows(4).position(|w| w == b"\x002.1").unwrap();
    bytes[at] = 0xff;
    std::fs::write(input.join("bad-utf8.json"), &bytes).unwrap();
    // The same damage in a gzip file cut short after it: the records before the cut are kept,
    // the damaged one among them.
    let mut cut = writes(40, "10:01");
    cut[3] = cut[3].replace("aws-cli/2.15.0", "\\ud800 lone surrogate");
    cut[4] = cut[4].replace("aws-cli/2.15.0", "nul \u{0} raw");
    let whole = gzip(records_file(&cut).as_bytes());
    std::fs::write(input.join("cut.json.gz"), &whole[..whole.len() * 2 / 3]).unwrap();
    let out = score_dir(&input, &dir.path().join("db"), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "the cut file is damaged: {stderr}"
    );
    let calls = write_calls(&stderr);
    assert!((1004..1040).contains(&calls), "{stderr}");
    assert!(stderr.contains("replaced by U+FFFD"), "{stderr}");
    assert!(
        stderr.contains("cut.json.gz is a damaged gzip file"),
        "{stderr}"
    );
}

#[test]
fn a_folder_of_logs_with_unusual_names_is_read_and_a_folder_without_logs_fails() {
    // Regression: `*.json.cloudtrail` files were ignored ("other files ignored") and the run
    // ended with exit 0, having read nothing.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for i in 0..3 {
        std::fs::write(
            input.join(format!("part{i}.json.cloudtrail")),
            records_file(&writes(2, "10:00")),
        )
        .unwrap();
    }
    std::fs::write(
        input.join("export"),
        gzip(writes(4, "10:01").join("\n").as_bytes()),
    )
    .unwrap();
    let out = score_dir(&input, &dir.path().join("db"), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(write_calls(&stderr), 10, "{stderr}");

    let empty = dir.path().join("notes");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("README"), "a folder of notes\n").unwrap();
    std::fs::write(empty.join("data.csv"), "a,b\n1,2\n").unwrap();
    let out = score_dir(&empty, &dir.path().join("db2"), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no CloudTrail record was read"), "{stderr}");
    // An empty folder holds nothing to read: not a failure.
    let nothing = dir.path().join("nothing");
    std::fs::create_dir(&nothing).unwrap();
    let out = score_dir(&nothing, &dir.path().join("db3"), &[]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn gzip_bombs_on_four_threads_are_all_refused() {
    // Four ~1 MB bombs of 1.1 GB of zeros each (many 1 MiB members), read on four threads: each
    // is refused under the default 1 GiB limit, and the good file beside them is counted.
    // (Memory is asserted in the reader's unit tests; the README's measurement is by hand.)
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let bomb = gzip(&vec![0u8; 1 << 20]).repeat(1100);
    for i in 0..4 {
        std::fs::write(input.join(format!("bomb{i}.json.gz")), &bomb).unwrap();
    }
    std::fs::write(input.join("good.json"), records_file(&writes(3, "10:00"))).unwrap();
    let out = score_dir(&input, &dir.path().join("db"), &["--threads", "4"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.matches("is larger than the limit").count(),
        4,
        "{stderr}"
    );
    assert_eq!(write_calls(&stderr), 3, "{stderr}");
}

#[cfg(unix)]
#[test]
fn a_fifo_on_the_command_line_is_refused_not_waited_on() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("skipped: mkfifo is not available");
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_trailsight"))
        .args([
            "score",
            "--no-progress",
            "--quiet",
            "--store",
            dir.path().join("db").to_str().unwrap(),
            fifo.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Before the fix the run waited for a writer forever: give it a minute, then open the FIFO
    // for writing ourselves so that the test ends either way.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let blocked = child.try_wait().unwrap().is_none();
    if blocked {
        let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!blocked, "the run waited on the FIFO: {stderr}");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not a regular file"), "{stderr}");
}

#[test]
fn a_file_that_grew_after_it_was_read_is_read_again_and_counts_only_its_new_records() {
    // Regression: a JSON-lines file a shipper appends to was "already ingested" on the next run,
    // its new records never counted and nothing said (exit 0); then it was reported and not
    // read (exit 2). Now it is read again, the records counted before dropped by eventID.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("trail.jsonl");
    let store = dir.path().join("db");
    std::fs::write(&input, writes(3, "10:00").join("\n") + "\n").unwrap();
    let out = score_dir(&input, &store, &[]);
    assert_eq!(out.status.code(), Some(0));
    let out = score_dir(&input, &store, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "unchanged: {stderr}");
    assert!(stderr.contains("1 already ingested"), "{stderr}");
    let mut grown = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap();
    grown
        .write_all((writes(2, "10:01").join("\n") + "\n").as_bytes())
        .unwrap();
    drop(grown);
    let out = score_dir(&input, &store, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("1 read, 0 already ingested, 0 failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 changed since an earlier run"),
        "{stderr}"
    );
    assert!(stderr.contains("5 read, 2 write calls"), "{stderr}");
    assert!(stderr.contains("3 repeated deliveries"), "{stderr}");
    // Read again unchanged: already ingested at its new size.
    let out = score_dir(&input, &store, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 already ingested"), "{stderr}");
}

#[test]
fn watch_reads_again_a_file_that_grew_and_counts_only_its_new_records() {
    // Regression: `watch` took a file once and never looked at it again, so a JSON-lines file
    // a shipper appends to lost every line written after the first read.
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("in");
    std::fs::create_dir(&folder).unwrap();
    let input = folder.join("trail.jsonl");
    let store = dir.path().join("db");
    let out = dir.path().join("insights.jsonl");
    let watch = || {
        trailsight(&[
            "watch",
            folder.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--once",
            "--settle",
            "0",
        ])
    };
    std::fs::write(&input, writes(3, "10:00").join("\n") + "\n").unwrap();
    let first = watch();
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("files=1 files_reread=0 records=3 write_calls=3 duplicates=0"),
        "{stderr}"
    );
    let mut grown = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap();
    grown
        .write_all((writes(2, "10:01").join("\n") + "\n").as_bytes())
        .unwrap();
    drop(grown);
    let second = watch();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(0), "{stderr}");
    // Read again whole: its 3 earlier records are repeats, the 2 new ones counted.
    assert!(
        stderr.contains("files=1 files_reread=1 records=5 write_calls=2 duplicates=3"),
        "{stderr}"
    );
    let third = watch();
    let stderr = String::from_utf8_lossy(&third.stderr);
    assert_eq!(third.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("files=0 files_reread=0 records=0"),
        "unchanged, not read: {stderr}"
    );
}

#[test]
fn more_series_than_the_profile_allows_stop_the_run_with_an_error_not_an_out_of_memory() {
    // Regression: every distinct eventName became a series held in memory and written at each
    // checkpoint, until the process was killed for memory (100,000 names: 17 GB, then OOM).
    // Now `[ingest] max_series` bounds them: past it the run stops, saying so, and the store
    // keeps only what earlier runs committed.
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("small.toml");
    std::fs::write(&profile, "[ingest]\nmax_series = 5\n").unwrap();
    let store = dir.path().join("db");
    let first = dir.path().join("first.json");
    let names: Vec<String> = (0..4)
        .map(|i| record("111122223333", "10:00", &format!("Api{i}"), "false"))
        .collect();
    std::fs::write(&first, records_file(&names)).unwrap();
    let p = profile.to_str().unwrap();
    let out = score_dir(&first, &store, &["--profile", p]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let many = dir.path().join("many.json");
    let names: Vec<String> = (0..10)
        .map(|i| record("111122223333", "10:01", &format!("Other{i}"), "false"))
        .collect();
    std::fs::write(&many, records_file(&names)).unwrap();
    let out = score_dir(&many, &store, &["--profile", p]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("ingest.max_series = 5"), "{stderr}");
    assert!(stderr.contains("9 records of further series"), "{stderr}");
    // The store holds the first run's four series and none of the refused run's.
    let check = trailsight(&["store", "check", "--store", store.to_str().unwrap()]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "{report}");
    assert!(report.contains("4  series"), "{report}");
    // The file was not recorded as ingested: with a larger cap it is read in full.
    std::fs::write(&profile, "[ingest]\nmax_series = 50\n").unwrap();
    let out = score_dir(&many, &store, &["--profile", p]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let check = trailsight(&["store", "check", "--store", store.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&check.stdout).contains("14  series"));
}

#[test]
fn idle_series_leave_memory_and_come_back_with_their_history() {
    // Regression (defect 1, "cold series paged out"): every series stayed in memory, ~7 KB
    // each when idle, and was written again at every checkpoint. Now a dormant series (nothing
    // open, too quiet for silence to be a fall) is paged out once it is in the store, and read
    // back with its history when calls come in.
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("db");
    let mut day1: Vec<String> = (0..200)
        .map(|i| {
            let minute = format!("{:02}:{:02}", i / 60, i % 60);
            record("111122223333", &minute, &format!("Idle{i}"), "false")
        })
        .collect();
    // A busy API (5 calls a minute all day) could fall silent: it stays in memory.
    for t in 0..1440 {
        day1.extend(writes(5, &format!("{:02}:{:02}", t / 60, t % 60)));
    }
    let first = dir.path().join("day1.json");
    std::fs::write(&first, records_file(&day1)).unwrap();
    let out = score_dir(&first, &store, &[]);
    let summary = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{summary}");
    assert!(
        summary.contains("201 in store") && summary.contains("(200 dormant, paged out of memory)"),
        "{summary}"
    );
    // The next day one of them is called twelve times in a minute: read back from the store,
    // its baseline still holds its one call of the day before (1 call in 1,920 minutes). The
    // caller is another user: alice's 200 first calls of day 1 are bursts of her own (each the
    // first call of a series), and since 2026-12-05 her habit, at its median, holds 12 calls.
    let day2: Vec<String> = (0..12)
        .map(|_| {
            record("111122223333", "10:00", "Idle7", "false")
                .replace("2024-03-04T", "2024-03-05T")
                .replace("user/alice", "user/mallory")
        })
        .collect();
    let second = dir.path().join("day2.json");
    std::fs::write(&second, records_file(&day2)).unwrap();
    let insights = dir.path().join("insights.jsonl");
    let out = score_dir(&second, &store, &["--out", insights.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let written = std::fs::read_to_string(&insights).unwrap();
    let starts: Vec<serde_json::Value> = written
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(starts.len(), 1, "{written}{stderr}");
    let details = &starts[0]["insightDetails"];
    assert_eq!(details["eventName"], "Idle7");
    let baseline = details["insightContext"]["statistics"]["baseline"]["average"]
        .as_f64()
        .unwrap();
    assert!((baseline - 1.0 / 1920.0).abs() < 1e-9, "{baseline}");
}

#[test]
fn counts_reads_a_store_of_any_baseline_window_without_taking_it_over() {
    // `counts` opened the writer engine with the built-in profile: a store scored with another
    // baseline window was refused ("window mismatch"). It now reads the store's view.
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("day.toml");
    std::fs::write(&profile, "[baseline]\nwindow_minutes = 1440\n").unwrap();
    let store = dir.path().join("db");
    let input = dir.path().join("calls.json");
    std::fs::write(&input, records_file(&writes(3, "10:00"))).unwrap();
    let out = score_dir(&input, &store, &["--profile", profile.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = trailsight(&["counts", "--store", store.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 2024-03-04T10:00 is Unix minute 28,492,440.
    assert!(
        stdout.contains("111122223333,us-east-1,ec2.amazonaws.com,RunInstances,28492440,3"),
        "{stdout}"
    );
}
