//! The store's model test (vector's disk-buffer pattern, with proptest): random sequences of
//! absorbs (new files, bursts, late files, files delivered again), checkpoints, sink failures
//! and crashes (the engine dropped without a checkpoint, sometimes with the output's last line
//! torn), each crash followed by a reopen and redelivery, checked against a model that keeps
//! what a checkpoint acknowledged: nothing acknowledged is lost, no Insight is written twice or
//! left unwritten, the counts equal the model's.
//!
//! The profile is small (a two-hour baseline, one hour of history) so that bursts become
//! Insights within a case, and the sink paths are exercised: the test fails when too few cases
//! produced any. `TRAILSIGHT_MODEL_CASES` sets the number of cases (default 48);
//! `PROPTEST_RNG_SEED` another sequence of cases.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use trailsight::detect::Profile;
use trailsight::insight::{AppendJsonLines, InsightRecord, InsightSink, SinkError};
use trailsight::pipeline::{digest_buffer, Digesting, Engine, PipelineError, Unit};

/// What happens next.
#[derive(Debug, Clone)]
enum Op {
    /// A new file of `span` minutes with `calls` calls a minute; `late` puts it an hour back
    /// (minutes already final); `burst` adds a minute of 150 calls at its end.
    New {
        span: i64,
        calls: usize,
        gap: i64,
        late: bool,
        burst: bool,
    },
    /// One of the files made so far delivered again.
    Again(prop::sample::Index),
    /// The sink starts or stops failing.
    ToggleSink,
    /// The process dies; `torn` leaves half a line at the end of the output.
    Crash { torn: bool },
    /// A checkpoint, then delivery of what it made.
    Commit,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1i64..12, 1usize..4, 0i64..8, prop::bool::weighted(0.15), prop::bool::weighted(0.2))
            .prop_map(|(span, calls, gap, late, burst)| Op::New { span, calls, gap, late, burst }),
        1 => any::<prop::sample::Index>().prop_map(Op::Again),
        1 => Just(Op::ToggleSink),
        1 => any::<bool>().prop_map(|torn| Op::Crash { torn }),
        3 => Just(Op::Commit),
    ]
}

/// A sink that writes through `AppendJsonLines` and fails on demand (a full disk, a dead pipe).
struct Flaky {
    inner: AppendJsonLines,
    failing: bool,
}

impl InsightSink for Flaky {
    fn write(&mut self, r: &InsightRecord) -> Result<(), SinkError> {
        if self.failing {
            return Err(SinkError::Write(std::io::Error::other("injected")));
        }
        self.inner.write(r)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        if self.failing {
            return Err(SinkError::Write(std::io::Error::other("injected")));
        }
        self.inner.finish()
    }
}

fn profile() -> Profile {
    let mut p = Profile::builtin();
    p.baseline.window_minutes = 120;
    p.baseline.min_history_minutes = 60;
    p
}

fn record(minute: i64, id: &str) -> String {
    format!(
        r#"{{"eventVersion":"1.08","userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/alice","accountId":"111122223333"}},"eventTime":"2024-03-04T{:02}:{:02}:07Z","eventSource":"ec2.amazonaws.com","eventName":"RunInstances","awsRegion":"us-east-1","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"eventCategory":"Management","recipientAccountId":"111122223333","eventID":"{id}"}}"#,
        minute / 60,
        minute % 60
    )
}

type File = (String, Vec<(i64, String)>);

fn absorb(engine: &mut Engine, (name, records): &File, buf: &mut Vec<u8>) {
    let lines: Vec<String> = records.iter().map(|(m, id)| record(*m, id)).collect();
    let content = format!(r#"{{"Records":[{}]}}"#, lines.join(","));
    let digested = digest_buffer(
        name,
        None,
        content.as_bytes(),
        Digesting {
            limits: &trailsight::ingest::ReadLimits::default(),
            categories: trailsight::series::Categories::MANAGEMENT,
            kinds: trailsight::series::kind::API_KINDS,
        },
        buf,
    );
    engine.absorb(
        Unit {
            display: name,
            ingest_key: Some(name),
            size: content.len() as u64,
            reread: false,
        },
        digested,
    );
}

/// sled's flusher thread can hold a dropped database's lock a moment longer (a new process
/// after a crash does not meet this): wait for it.
fn open(store: &Path) -> Result<Engine, TestCaseError> {
    for _ in 0..500 {
        match Engine::open(store, profile()) {
            Err(PipelineError::Store(trailsight::store::StoreError::InUse { .. })) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Ok(engine) => return Ok(engine),
            Err(e) => return Err(TestCaseError::fail(format!("reopening: {e}"))),
        }
    }
    Err(TestCaseError::fail("the store stayed locked"))
}

/// Runs one sequence; returns how many Insights the store held at the end.
fn run(ops: &[Op]) -> Result<usize, TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let store = dir.path().join("db");
    let out = dir.path().join("out.jsonl");
    let sink = |failing| -> Result<Flaky, TestCaseError> {
        Ok(Flaky {
            inner: AppendJsonLines::open(&out).map_err(|e| TestCaseError::fail(e.to_string()))?,
            failing,
        })
    };
    let mut engine = open(&store)?;
    let mut flaky = sink(false)?;
    let mut files: Vec<File> = Vec::new();
    let mut absorbed: Vec<usize> = Vec::new();
    let mut committed: BTreeSet<usize> = BTreeSet::new();
    let mut next_minute = 600;
    let mut buf = Vec::new();
    for op in ops {
        match op {
            Op::New {
                span,
                calls,
                gap,
                late,
                burst,
            } => {
                let i = files.len();
                let late = *late && next_minute > 680;
                let start = if late { next_minute - 60 } else { next_minute };
                let mut records = Vec::new();
                for m in start..start + span {
                    for n in 0..*calls {
                        records.push((m, format!("f{i}-{m}-{n}")));
                    }
                }
                if *burst {
                    let m = start + span - 1;
                    records.extend((0..150).map(|n| (m, format!("f{i}-{m}-b{n}"))));
                }
                if !late {
                    next_minute += span + gap;
                }
                files.push((format!("file{i}"), records));
                absorb(&mut engine, &files[i], &mut buf);
                absorbed.push(i);
            }
            Op::Again(index) => {
                if !files.is_empty() {
                    let i = index.index(files.len());
                    absorb(&mut engine, &files[i], &mut buf);
                    absorbed.push(i);
                }
            }
            Op::ToggleSink => flaky.failing = !flaky.failing,
            Op::Crash { torn } => {
                drop(engine);
                drop(flaky);
                absorbed.clear();
                if *torn {
                    use std::io::Write;
                    let mut f = std::fs::OpenOptions::new()
                        .append(true)
                        .create(true)
                        .open(&out)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    f.write_all(br#"{"eventVersion":"1.08","eventTime":"2024-03-04T1"#)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
                engine = open(&store)?;
                flaky = sink(false)?;
                // A redelivery may fail like any delivery; what it could not write stays due.
                let _ = engine.redeliver(&mut [&mut flaky]);
                for (i, (name, _)) in files.iter().enumerate() {
                    let ingested = engine
                        .is_ingested(name)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(ingested, committed.contains(&i), "{} after a crash", name);
                }
            }
            Op::Commit => {
                // A sink failure comes after the checkpoint: the state is durable either way.
                match engine.commit(&mut [&mut flaky]) {
                    Ok(()) | Err(PipelineError::Sink(_)) => {}
                    Err(e) => return Err(TestCaseError::fail(format!("commit: {e}"))),
                }
                committed.extend(absorbed.drain(..));
            }
        }
    }
    // The end: everything final, committed with a working sink.
    flaky.failing = false;
    engine.finalize();
    engine
        .commit(&mut [&mut flaky])
        .map_err(|e| TestCaseError::fail(format!("last commit: {e}")))?;
    committed.extend(absorbed.drain(..));
    drop(flaky);

    let mut model: BTreeMap<i64, u32> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for &i in &committed {
        for (m, id) in &files[i].1 {
            if ids.insert(id.clone()) {
                *model.entry(*m).or_default() += 1;
            }
        }
    }
    let day = common::minute("2024-03-04T00:00:00Z");
    let model: BTreeMap<i64, u32> = model.into_iter().map(|(m, c)| (day + m, c)).collect();
    let stored = if engine.registry().series.is_empty() {
        BTreeMap::new()
    } else {
        engine
            .store()
            .counts(0, -(1 << 40), 1 << 40)
            .map_err(|e| TestCaseError::fail(e.to_string()))?
    };
    prop_assert_eq!(stored, model, "counts");

    // Every Insight the store holds is in the output exactly once, and nothing else is; a
    // torn line was cut when the output was opened again.
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let mut written = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| TestCaseError::fail(format!("a broken output line {line:?}: {e}")))?;
        written.push(value["eventID"].as_str().unwrap_or_default().to_owned());
    }
    let unique: BTreeSet<String> = written.iter().cloned().collect();
    prop_assert_eq!(unique.len(), written.len(), "an Insight written twice");
    let held: BTreeSet<String> = engine
        .store()
        .insights()
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .iter()
        .map(|r| r.event_id.clone())
        .collect();
    prop_assert_eq!(&unique, &held, "output and store differ");
    Ok(held.len())
}

#[test]
fn the_store_keeps_what_was_acknowledged_across_crashes_torn_writes_and_sink_failures() {
    let cases: u32 = std::env::var("TRAILSIGHT_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let with_insights = std::cell::Cell::new(0u32);
    let start = Instant::now();
    let result = runner.run(&prop::collection::vec(op(), 5..60), |ops| {
        if run(&ops)? > 0 {
            with_insights.set(with_insights.get() + 1);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!(
        "{cases} model cases in {:.1}s, {} with Insights",
        start.elapsed().as_secs_f64(),
        with_insights.get()
    );
    assert!(
        with_insights.get() * 4 >= cases,
        "only {} of {cases} cases made an Insight: the sink paths went untested",
        with_insights.get()
    );
}
