//! The store and its errors: damaged stores are detected (checksums, `store check`), a folder
//! that is not a store is not taken over, `score --out` never erases earlier Insights, a store
//! read that fails stops the run instead of counting from zero, and a full disk ends `score` and
//! `watch` with an error from which a run on the freed disk continues.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{json_lines, trailsight};

fn record(account: &str, day_minute: i64, name: &str, n: usize) -> String {
    format!(
        r#"{{"eventVersion":"1.08","userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::{account}:user/alice","accountId":"{account}"}},"eventTime":"2024-03-04T{:02}:{:02}:07Z","eventSource":"ec2.amazonaws.com","eventName":"{name}","awsRegion":"us-east-1","userAgent":"aws-cli/2.15.0","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"eventCategory":"Management","recipientAccountId":"{account}","eventID":"{account}-{day_minute}-{name}-{n}"}}"#,
        day_minute / 60,
        day_minute % 60
    )
}

/// Writes one CloudTrail file per hour in `hours` into `dir` (S3 layout), with calls to
/// `names` distinct APIs every minute; returns the folder.
fn archive(dir: &Path, hours: std::ops::Range<i64>, names: usize) -> PathBuf {
    let account = "111122223333";
    let day = dir.join(format!("AWSLogs/{account}/CloudTrail/us-east-1/2024/03/04"));
    std::fs::create_dir_all(&day).unwrap();
    for hour in hours {
        let mut records = Vec::new();
        for minute in hour * 60..hour * 60 + 60 {
            for name in 0..names {
                for n in 0..1 + (minute as usize + name) % 3 {
                    records.push(record(account, minute, &format!("Api{name}"), n));
                }
            }
        }
        let delivered = hour * 60 + 59;
        let file = day.join(format!(
            "{account}_CloudTrail_us-east-1_20240304T{:02}{:02}Z_{hour:016}.json",
            delivered / 60,
            delivered % 60
        ));
        std::fs::write(file, format!(r#"{{"Records":[{}]}}"#, records.join(","))).unwrap();
    }
    dir.to_path_buf()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `trailsight counts` of a store (the stored per-minute counts as CSV).
fn counts(store: &Path) -> Output {
    trailsight(&["counts", "--store", s(store)])
}

#[test]
fn a_second_score_with_the_same_out_keeps_the_first_runs_insights() {
    let archive = common::generated(1, 0.5, true);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("db");
    let out = dir.path().join("insights.jsonl");
    let first = common::score_ok(&archive, &store, &out, &["--no-progress"]);
    assert!(!first.is_empty(), "the archive has incidents");
    let before = std::fs::read(&out).unwrap();
    // The same command again (a re-run after a crash, or over a grown archive): refused, the
    // file is untouched.
    let run = |extra: &[&str]| {
        let mut args = vec![
            "score",
            s(&archive),
            "--store",
            s(&store),
            "--out",
            s(&out),
            "--no-progress",
        ];
        args.extend_from_slice(extra);
        trailsight(&args)
    };
    let refused = run(&[]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("--append"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(std::fs::read(&out).unwrap(), before);
    // --append keeps every line and writes none twice.
    let appended = run(&["--append"]);
    assert!(appended.status.success(), "{}", stderr(&appended));
    assert_eq!(std::fs::read(&out).unwrap(), before);
    // The store forgotten (a rebuild into a new store): the same Insights come again, and the
    // file still holds each once.
    let rebuilt = trailsight(&[
        "score",
        s(&archive),
        "--store",
        s(&dir.path().join("db2")),
        "--out",
        s(&out),
        "--no-progress",
        "--append",
    ]);
    assert!(rebuilt.status.success(), "{}", stderr(&rebuilt));
    assert_eq!(json_lines(&std::fs::read(&out).unwrap()), first);
    // --overwrite replaces it.
    let overwritten = trailsight(&[
        "score",
        s(&archive),
        "--store",
        s(&dir.path().join("db3")),
        "--out",
        s(&out),
        "--no-progress",
        "--overwrite",
    ]);
    assert!(overwritten.status.success(), "{}", stderr(&overwritten));
    assert_eq!(json_lines(&std::fs::read(&out).unwrap()), first);
}

#[test]
fn a_non_empty_folder_that_is_not_a_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = archive(&dir.path().join("in"), 10..11, 1);
    let folder = dir.path().join("my-documents");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("thesis.txt"), "irreplaceable").unwrap();
    let o = trailsight(&["score", s(&input), "--store", s(&folder), "--no-progress"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not a trailsight store"),
        "{}",
        stderr(&o)
    );
    let names: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["thesis.txt"]);
    // An empty folder is fine, and so is the store it becomes, the next time.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for _ in 0..2 {
        let o = trailsight(&["score", s(&input), "--store", s(&empty), "--no-progress"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
}

#[test]
fn store_check_says_healthy_for_a_healthy_store() {
    let dir = tempfile::tempdir().unwrap();
    let input = archive(&dir.path().join("in"), 10..13, 3);
    let store = dir.path().join("db");
    let o = trailsight(&[
        "score",
        s(&input),
        "--store",
        s(&store),
        "--no-progress",
        "--keep-pending",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let c = trailsight(&["store", "check", "--store", s(&store)]);
    let text = String::from_utf8_lossy(&c.stdout);
    assert_eq!(c.status.code(), Some(0), "{text}{}", stderr(&c));
    assert!(text.contains("healthy"), "{text}");
    assert!(text.contains("series"), "{text}");
    // Not a store: the check cannot run (status 1), and creates nothing.
    let c = trailsight(&["store", "check", "--store", s(&dir.path().join("nothing"))]);
    assert_eq!(c.status.code(), Some(1), "{}", stderr(&c));
    assert!(!dir.path().join("nothing").exists());
}

/// Flips one byte of `file` at `at`.
fn flip(file: &Path, at: usize, mask: u8) {
    let mut bytes = std::fs::read(file).unwrap();
    bytes[at] ^= mask;
    std::fs::write(file, bytes).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Byte flips in the written part of sled's file, half of them in a store whose sled snapshot
/// is gone (a crash): each is either caught (`store check` says damaged, or the store is
/// refused) or harmless (the counts read back are the original ones). Nothing panics. Before
/// the checkpoint number, every flip without a snapshot changed the counts with exit status 0.
#[test]
fn byte_flips_in_a_store_are_caught_or_harmless() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let input = archive(&dir.path().join("in"), 8..14, 4);
    let store = dir.path().join("db");
    let o = trailsight(&["score", s(&input), "--store", s(&store), "--no-progress"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let original = counts(&store);
    assert!(original.status.success());
    let db = std::fs::read(store.join("db")).unwrap();
    // Flips land where something was written (sled's file has long runs of zeros).
    let written: Vec<usize> = (0..db.len()).filter(|&i| db[i] != 0).collect();
    assert!(written.len() > 1000, "{} bytes written", written.len());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(22);
    let (mut caught, mut harmless) = (0, 0);
    for trial in 0..50 {
        let copy = dir.path().join(format!("flip{trial}"));
        copy_dir(&store, &copy);
        if trial % 2 == 0 {
            // As after a crash before sled wrote its snapshot: the log is replayed at open,
            // and sled takes a damaged message for a torn write, silently dropping the rest.
            for e in std::fs::read_dir(&copy).unwrap().flatten() {
                if e.file_name().to_string_lossy().starts_with("snap.") {
                    std::fs::remove_file(e.path()).unwrap();
                }
            }
        }
        let at = written[rng.gen_range(0..written.len())];
        flip(&copy.join("db"), at, 1 << rng.gen_range(0..8));
        let check = trailsight(&["store", "check", "--store", s(&copy)]);
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&check.stdout),
            stderr(&check)
        );
        assert!(
            matches!(check.status.code(), Some(0..=2)),
            "flip at {at}: {report}"
        );
        if check.status.code() == Some(0) {
            // Not caught: then it must not have changed what the store holds.
            let read = counts(&copy);
            assert!(read.status.success(), "flip at {at}: {}", stderr(&read));
            assert_eq!(
                read.stdout, original.stdout,
                "flip at {at} changed the counts undetected"
            );
            harmless += 1;
        } else {
            assert!(report.contains("rebuild"), "flip at {at}: {report}");
            caught += 1;
        }
        std::fs::remove_dir_all(&copy).unwrap();
    }
    eprintln!("50 flips: {caught} caught, {harmless} harmless");
}

/// A count hour that cannot be read stops the run with the key named, instead of being counted
/// from zero (and written back as zeros at the next checkpoint).
#[test]
fn an_unreadable_count_hour_stops_the_run_instead_of_counting_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let first = archive(&dir.path().join("a"), 10..11, 1);
    let store = dir.path().join("db");
    let o = trailsight(&[
        "score",
        s(&first),
        "--store",
        s(&store),
        "--no-progress",
        "--keep-pending",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    {
        let db = sled::open(&store).unwrap();
        let mut damaged = 0;
        for item in db.scan_prefix(b"c") {
            let (k, _) = item.unwrap();
            db.insert(k, &[0xff, 0xff, 0xff][..]).unwrap();
            damaged += 1;
        }
        assert!(damaged > 0);
        db.flush().unwrap();
    }
    // The next hour makes the pending minutes of hour 10 final: their counts go into the
    // stored hour, which must be read first.
    let second = archive(&dir.path().join("b"), 11..12, 1);
    let o = trailsight(&["score", s(&second), "--store", s(&store), "--no-progress"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("counts of series 0"), "{}", stderr(&o));
    assert!(stderr(&o).contains("store check"), "{}", stderr(&o));
}

/// Runs a command with a time limit: a hang fails the test instead of blocking it.
fn run_bounded(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trailsight"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!("{args:?} hung for {limit:?}: {}", stderr(&o));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system; returns the filler.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path().join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0x5au8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A full disk: `score` and `watch` end with an error (no hang, no endless retry), and a run
/// on the freed disk continues from the last checkpoint to the same store as a run that never
/// met a full disk. `watch` meets the full disk at a checkpoint, after it opened the store.
#[test]
fn a_full_disk_ends_the_run_and_a_run_on_the_freed_disk_continues() {
    let Some(fs) = Tmpfs::mount("64m") else {
        eprintln!("note: cannot mount a tmpfs here (not root?); full-disk test skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = archive(&dir.path().join("a"), 0..6, 40);
    let b = archive(&dir.path().join("b"), 6..12, 40);
    let limit = Duration::from_secs(300);
    let bounded = |args: &[&str]| run_bounded(args, limit);
    for command in ["score", "watch"] {
        let second = |store: &Path, input: &Path| -> Vec<String> {
            let mut args = vec![
                command.to_string(),
                s(input).into(),
                "--store".into(),
                s(store).into(),
                "--quiet".into(),
            ];
            if command == "score" {
                args.push("--no-progress".into());
            } else {
                args.extend(["--once".into(), "--settle".into(), "0".into()]);
            }
            args
        };
        // The reference: the same two runs on a disk with room.
        let reference = dir.path().join(format!("ref-{command}"));
        let o = trailsight(&[
            "score",
            s(&a),
            "--store",
            s(&reference),
            "--no-progress",
            "--keep-pending",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let args = second(&reference, &b);
        let o = bounded(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", stderr(&o));
        let expected = counts(&reference);
        assert!(expected.status.success());

        let store = fs.path().join(format!("db-{command}"));
        let o = trailsight(&[
            "score",
            s(&a),
            "--store",
            s(&store),
            "--no-progress",
            "--keep-pending",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let live = dir.path().join(format!("live-{command}"));
        std::fs::create_dir_all(&live).unwrap();
        let full = if command == "score" {
            let filler = fs.fill();
            let args = second(&store, &b);
            let o = bounded(&args.iter().map(String::as_str).collect::<Vec<_>>());
            (o, filler)
        } else {
            // A running `watch`: the disk fills, then files land.
            let mut child = Command::new(env!("CARGO_BIN_EXE_trailsight"))
                .args([
                    "watch",
                    s(&live),
                    "--store",
                    s(&store),
                    "--quiet",
                    "--settle",
                    "0",
                ])
                .args(["--poll-interval", "0.2", "--checkpoint-interval", "0.2"])
                .args(["--snapshot-interval", "0"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_secs(2));
            let filler = fs.fill();
            copy_dir(&b, &live);
            let start = Instant::now();
            while child.try_wait().unwrap().is_none() && start.elapsed() < limit {
                std::thread::sleep(Duration::from_millis(100));
            }
            if child.try_wait().unwrap().is_none() {
                let _ = child.kill();
                let o = child.wait_with_output().unwrap();
                panic!("watch kept running on a full disk: {}", stderr(&o));
            }
            (child.wait_with_output().unwrap(), filler)
        };
        let (full, filler) = full;
        assert_eq!(
            full.status.code(),
            Some(1),
            "{command} on a full disk: {}",
            stderr(&full)
        );
        let said = stderr(&full);
        assert!(
            said.contains("No space left") || said.contains("bytes free"),
            "{said}"
        );
        std::fs::remove_file(filler).unwrap();
        let input = if command == "score" { &b } else { &live };
        let args = second(&store, input);
        let again = bounded(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            again.status.success(),
            "{command} on the freed disk: {}",
            stderr(&again)
        );
        let check = trailsight(&["store", "check", "--store", s(&store)]);
        assert_eq!(
            check.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&check.stdout)
        );
        let got = counts(&store);
        assert!(got.status.success(), "{}", stderr(&got));
        assert!(
            got.stdout == expected.stdout,
            "{command}: the counts differ from the reference"
        );
        std::fs::remove_dir_all(&store).unwrap();
    }
}

#[test]
fn a_store_of_another_format_or_without_its_run_state_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let input = archive(&dir.path().join("a"), 10..11, 1);
    let store = dir.path().join("db");
    let score = || trailsight(&["score", s(&input), "--store", s(&store), "--no-progress"]);
    let o = score();
    assert!(o.status.success(), "{}", stderr(&o));
    let current = trailsight::store::FORMAT_VERSION;
    let set = |key: &[u8], value: Option<Vec<u8>>| {
        let db = sled::open(&store).unwrap();
        match value {
            Some(v) => db.insert(key, v).unwrap(),
            None => db.remove(key).unwrap(),
        };
        db.flush().unwrap();
    };
    for (version, says) in [
        (current - 1, "this trailsight needs"),
        (current + 1, "written by a newer trailsight"),
    ] {
        set(b"m/format", Some(version.to_be_bytes().to_vec()));
        for o in [score(), trailsight(&["series", "--store", s(&store)])] {
            assert!(!o.status.success());
            let said = stderr(&o);
            assert!(said.contains(says), "{said}");
            assert!(said.contains("trailsight score"), "{said}");
        }
    }
    set(b"m/format", Some(current.to_be_bytes().to_vec()));
    assert!(score().status.success());
    // One stage's record in another version: refused, naming the record.
    let records: std::collections::BTreeMap<String, u16> = serde_json::from_slice(
        &sled::open(&store)
            .unwrap()
            .get(b"m/records")
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert!(records.contains_key("detector"), "{records:?}");
    let mut newer = records.clone();
    newer.insert("detector".into(), 99);
    set(b"m/records", Some(serde_json::to_vec(&newer).unwrap()));
    for o in [
        score(),
        trailsight(&["store", "check", "--store", s(&store)]),
    ] {
        let said = format!("{}{}", stderr(&o), String::from_utf8_lossy(&o.stdout));
        assert!(said.contains("detector records of version 99"), "{said}");
    }
    // A store written before records had versions holds them all at version 1: read.
    set(b"m/records", None);
    assert!(score().status.success(), "{}", stderr(&score()));
    // The run state lost while series are stored: damage, said, not a fresh start.
    set(b"m/meta", None);
    let o = score();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("m/meta"), "{}", stderr(&o));
}
