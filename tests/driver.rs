//! The seam of "one engine, one feeder": a source written here, outside the crate, feeds the
//! same driver as `score` and `watch`, and the crate's in-memory sink takes its Insights. The source
//! hands out every file of a generated archive as bytes already in memory, a few at a time (as
//! a queue consumer would); its Insights and stored counts must equal `score`'s on the files.

mod common;

use std::collections::VecDeque;

use trailsight::ingest::InputSource;
use trailsight::pipeline::driver::{drive, Commits, DriverOptions, Unobserved};
use trailsight::pipeline::{Engine, OnError};
use trailsight::sink::memory::Memory;
use trailsight::source::{Ending, Input, Loaded, Pull, Source, SourceError, Stop};

/// Files handed out as bytes, three at a time, then the end.
struct InMemory {
    queue: VecDeque<Loaded>,
}

impl Source for InMemory {
    fn next(&mut self) -> Result<Pull, SourceError> {
        if self.queue.is_empty() {
            return Ok(Pull::End(Ending::default()));
        }
        let n = self.queue.len().min(3);
        Ok(Pull::Inputs(
            self.queue.drain(..n).map(Input::Bytes).collect(),
        ))
    }
}

fn counts(engine: &Engine) -> Vec<(u32, i64, u32)> {
    let store = engine.store();
    let mut all = Vec::new();
    for id in 0..engine.registry().series.len() as u32 {
        for (minute, n) in store.counts(id, i64::MIN, i64::MAX).unwrap() {
            all.push((id, minute, n));
        }
    }
    all
}

#[test]
fn a_source_written_outside_the_crate_drives_the_same_engine_as_score() {
    let archive = common::generated(3, 0.3, true);
    let dir = tempfile::tempdir().unwrap();

    let mut by_score = Memory::default();
    let mut scored = Engine::open(
        &dir.path().join("a"),
        trailsight::detect::Profile::builtin(),
    )
    .unwrap();
    scored
        .score(
            std::slice::from_ref(&archive),
            &common::batch_options(),
            &mut [&mut by_score],
        )
        .unwrap();

    let files = trailsight::ingest::discover(std::slice::from_ref(&archive)).files;
    assert!(files.len() > 100, "{}", files.len());
    let queue = files
        .iter()
        .map(|f| {
            let InputSource::File(path) = &f.source else {
                panic!("{} is not a file", f.display)
            };
            Loaded {
                display: f.display.clone(),
                ingest_key: Some(f.ingest_key.clone()),
                delivery_minute: f.delivery_minute,
                content: std::fs::read(path).unwrap(),
                first_line: 1,
            }
        })
        .collect();
    let mut source = InMemory { queue };
    let mut by_driver = Memory::default();
    let mut driven = Engine::open(
        &dir.path().join("b"),
        trailsight::detect::Profile::builtin(),
    )
    .unwrap();
    let options = DriverOptions {
        limits: trailsight::ingest::ReadLimits::default(),
        on_error: OnError::Continue,
        threads: Some(2),
        finalize: true,
        checkpoint_every: std::time::Duration::from_secs(30),
        early_rises: false,
        commits: Commits::Fail,
    };
    let ending = drive(
        &mut driven,
        &mut source,
        &options,
        &mut [&mut by_driver],
        &mut Unobserved,
        &Stop::new(),
    )
    .unwrap();
    assert!(!ending.stopped);

    assert!(by_score.0.len() >= 4, "{}", by_score.0.len());
    assert_eq!(by_driver.0, by_score.0);
    let c = counts(&scored);
    assert!(!c.is_empty());
    assert_eq!(counts(&driven), c);
    // Every file was recorded as ingested, under the same keys as score's.
    for f in &files {
        assert!(
            driven.is_ingested(&f.ingest_key).unwrap(),
            "{}",
            f.ingest_key
        );
    }
}
