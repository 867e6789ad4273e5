//! The one driver of `score` and `watch`: source -> parallel parse -> absorb in order -> detect
//! -> checkpoint when due -> outbox -> sinks.
//!
//! A reading thread pulls the [`Source`] and has the pool parse each batch of its inputs while
//! the calling thread absorbs the batch before, in order (a bounded queue: at most two parsed
//! batches wait); with one thread, pulling, parsing and absorbing take turns on it. `score` is the
//! driver run to the end of a finite source; `watch` runs it on a following source, with a
//! [`Stop`] its signals set, an [`Observer`] that keeps its metrics, and commits retried with
//! backoff while a sink or the store fails.

use std::collections::HashMap;
use std::time::Duration;

use rayon::prelude::*;

use super::{digest_bytes, digest_file, now_max_minute, Digested, Digesting, Engine, OnError};
use super::{PipelineError, Unit};
use crate::ingest::{InputSource, ReadLimits};
use crate::insight::InsightSink;
use crate::series::Categories;
use crate::source::{Backoff, Ending, Input, Listed, Pull, Source, Stop, Trouble, Unreadable};

/// Files per parallel batch and bytes per batch: bound the memory held by digests.
const BATCH_FILES: usize = 256;
const BATCH_BYTES: u64 = 512 * 1024 * 1024;

/// How the driver runs.
#[derive(Debug, Clone)]
pub struct DriverOptions {
    /// Per-input limits.
    pub limits: ReadLimits,
    /// Bad-input policy.
    pub on_error: OnError,
    /// Worker threads (None: one per core).
    pub threads: Option<usize>,
    /// When the source ends (not stopped), treat every minute as final (the archive is
    /// complete); when false the last `allowed_lateness` minutes stay pending for the next run.
    pub finalize: bool,
    /// Checkpoint at least this often while input flows.
    pub checkpoint_every: Duration,
    /// Declare rises before their minutes are final (continuous mode).
    pub early_rises: bool,
    /// What a failed commit does.
    pub commits: Commits,
}

/// What a failed commit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commits {
    /// Ends the run with the error (`score`: the next run resumes from the last checkpoint).
    Fail,
    /// Retries with backoff while a sink fails, until it succeeds or a stop is asked; a store
    /// failure ends the run at once when sled has failed an I/O operation (it refuses every
    /// later write), else after [`MAX_STORE_FAILURES`] failures in a row (`watch`).
    Retry,
}

/// Failed checkpoints in a row after which a retrying run stops with an error, when the store
/// (not a sink) is what fails: sled refuses every write after a failed one, so only a new
/// process can go on, and a service manager (`Restart=on-failure`) starts one.
pub const MAX_STORE_FAILURES: u32 = 3;

/// What a command watches of a run (metrics, logs, a progress bar). Every method has a default
/// that does nothing.
pub trait Observer {
    /// A listing step (a delivery day of an archive).
    fn listed(&mut self, listed: &Listed) {
        let _ = listed;
    }
    /// A problem the source went on after.
    fn trouble(&mut self, trouble: Trouble) {
        let _ = trouble;
    }
    /// An input was read and is about to be absorbed.
    fn read(&mut self, display: &str, digested: &Digested) {
        let _ = (display, digested);
    }
    /// An input was absorbed; the engine's uncommitted Insights from `found_before` on came
    /// from it.
    fn absorbed(&mut self, display: &str, engine: &Engine, found_before: usize) {
        let _ = (display, engine, found_before);
    }
    /// A commit was attempted.
    fn committed(&mut self, engine: &Engine, result: &Result<(), PipelineError>) {
        let _ = (engine, result);
    }
}

/// An observer that watches nothing.
pub struct Unobserved;
impl Observer for Unobserved {}

/// When a commit is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Commit {
    /// Whatever changed.
    Now,
    /// Only when Insights wait to be written or a checkpoint is due: Insights leave at once,
    /// while plain progress is checkpointed every `checkpoint_every`.
    IfUseful,
}

/// What the reading side hands to the absorbing side, in order.
enum Step {
    /// Anything the source said other than inputs.
    Said(Pull),
    /// A batch of inputs (within one delivery hour) and their digests, in order.
    Batch(Vec<(Input, Digested)>),
    /// The source failed.
    Failed(crate::source::SourceError),
}

/// Runs `source` to its end (or a stop) through `engine`, writing Insights to `sinks` as
/// checkpoints commit them. Insights an earlier process committed but may not have delivered go
/// out first. Returns how the source ended.
pub fn drive(
    engine: &mut Engine,
    source: &mut dyn Source,
    options: &DriverOptions,
    sinks: &mut [&mut dyn InsightSink],
    observer: &mut dyn Observer,
    stop: &Stop,
) -> Result<Ending, PipelineError> {
    let redelivered = engine.redeliver(sinks)?;
    if redelivered > 0 {
        tracing::info!("delivered {redelivered} Insights committed before an interruption");
    }
    let pool = {
        let mut b = rayon::ThreadPoolBuilder::new();
        if let Some(n) = options.threads {
            b = b.num_threads(n.max(1));
        }
        b.build()
            .map_err(|e| PipelineError::Threads(e.to_string()))?
    };
    let reading = Reading {
        source,
        // One thread parses on its own: handing each batch to a one-thread pool and waiting
        // for it would cost two thread wake-ups a batch and gain nothing.
        pool: (pool.current_num_threads() > 1).then_some(&pool),
        limits: &options.limits,
        categories: engine.profile().categories(),
        kinds: engine.profile().kinds(),
    };
    let mut absorbing = Absorbing {
        engine,
        options,
        sinks,
        observer,
        stop,
        ending: None,
    };
    if reading.pool.is_none() {
        let mut failure = None;
        reading.run(&mut |step| match absorbing.take(step) {
            Ok(go_on) => go_on,
            Err(e) => {
                failure = Some(e);
                false
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
    } else {
        // Stopping early drops the queue, which ends the reading.
        std::thread::scope(|scope| -> Result<(), PipelineError> {
            let (step_tx, steps) = std::sync::mpsc::sync_channel(1);
            scope.spawn(move || reading.run(&mut |step| step_tx.send(step).is_ok()));
            for step in steps {
                if !absorbing.take(step)? {
                    break;
                }
            }
            Ok(())
        })?;
    }
    absorbing.finish()
}

/// The reading side: pulls the source and parses its inputs.
struct Reading<'a> {
    source: &'a mut dyn Source,
    /// The pool that parses batches; `None` with one thread, which parses them itself.
    pool: Option<&'a rayon::ThreadPool>,
    limits: &'a ReadLimits,
    categories: Categories,
    /// The series kinds counted.
    kinds: u8,
}

impl Reading<'_> {
    /// Hands every step to `take` in order, until the source ends or `take` says stop.
    fn run(self, take: &mut dyn FnMut(Step) -> bool) {
        loop {
            let pull = match self.source.next() {
                Ok(pull) => pull,
                Err(e) => {
                    take(Step::Failed(e));
                    return;
                }
            };
            let inputs = match pull {
                Pull::Inputs(inputs) => inputs,
                Pull::End(ending) => {
                    take(Step::Said(Pull::End(ending)));
                    return;
                }
                other => {
                    if !take(Step::Said(other)) {
                        return;
                    }
                    continue;
                }
            };
            let mut inputs = inputs.into_iter().peekable();
            while inputs.peek().is_some() {
                let batch = take_batch(&mut inputs);
                let digests = self.parse(&batch);
                let mut kept = Vec::with_capacity(batch.len());
                let mut retried = 0;
                for (input, digested) in batch.into_iter().zip(digests) {
                    if digested.report.is_none()
                        && self.source.unreadable(&input) == Unreadable::Retry
                    {
                        retried += 1;
                        continue;
                    }
                    kept.push((input, digested));
                }
                for _ in 0..retried {
                    if !take(Step::Said(Pull::Trouble(Trouble::Read))) {
                        return;
                    }
                }
                if !kept.is_empty() && !take(Step::Batch(kept)) {
                    return;
                }
            }
        }
    }

    fn parse(&self, batch: &[Input]) -> Vec<Digested> {
        let reading = Digesting {
            limits: self.limits,
            categories: self.categories,
            kinds: self.kinds,
        };
        let now_max = now_max_minute();
        let digest = |input: &Input, buf: &mut Vec<u8>| -> Digested {
            let digested = match input {
                Input::File(file) => digest_file(file, reading, buf, now_max),
                Input::Bytes(b) => {
                    let mut d = digest_bytes(
                        &b.display,
                        b.delivery_minute,
                        &b.content,
                        reading,
                        buf,
                        now_max,
                    );
                    if let Some(report) = d.report.as_mut() {
                        report.shift_line_numbers(b.first_line.saturating_sub(1));
                    }
                    d
                }
            };
            buf.clear();
            digested
        };
        let Some(pool) = self.pool else {
            let mut buf = Vec::new();
            return batch.iter().map(|i| digest(i, &mut buf)).collect();
        };
        pool.install(|| {
            batch
                .par_iter()
                .map_init(Vec::new, |buf, i| digest(i, buf))
                .collect()
        })
    }
}

/// The next batch: bounded in inputs and bytes, and within one clock hour of delivery time, so
/// that event time advances batch by batch and a run that resumes at an hour boundary forms the
/// same batches as one that never stopped.
fn take_batch(inputs: &mut std::iter::Peekable<impl Iterator<Item = Input>>) -> Vec<Input> {
    let mut batch: Vec<Input> = Vec::new();
    let mut bytes = 0;
    while batch.len() < BATCH_FILES {
        let Some(next) = inputs.peek() else { break };
        if let Some(first) = batch.first() {
            if bytes + next.size() > BATCH_BYTES {
                break;
            }
            let hour = |i: &Input| i.delivery_minute().map(|m| m.div_euclid(60));
            if let (Some(a), Some(b)) = (hour(first), hour(next)) {
                if a != b {
                    break;
                }
            }
        }
        bytes += next.size();
        batch.extend(inputs.next());
    }
    batch
}

/// The absorbing side: the engine, its sinks and what watches it.
struct Absorbing<'a, 'b> {
    engine: &'a mut Engine,
    options: &'a DriverOptions,
    sinks: &'a mut [&'b mut dyn InsightSink],
    observer: &'a mut dyn Observer,
    stop: &'a Stop,
    /// How the source ended (None: not yet, or the run stopped on its own).
    ending: Option<Ending>,
}

impl Absorbing<'_, '_> {
    /// Takes one step; false when the run ends (the source ended, a stop was asked, or
    /// `--on-error stop` met a bad input).
    fn take(&mut self, step: Step) -> Result<bool, PipelineError> {
        match step {
            Step::Said(Pull::Listed(listed)) => {
                self.engine.account_listed(&listed);
                self.observer.listed(&listed);
            }
            Step::Said(Pull::Trouble(trouble)) => self.observer.trouble(trouble),
            Step::Said(Pull::CaughtUp { must_commit }) => {
                let when = if must_commit {
                    Commit::Now
                } else {
                    Commit::IfUseful
                };
                self.commit(when)?;
            }
            Step::Said(Pull::End(ending)) => {
                self.engine.account_ending(&ending);
                self.ending = Some(ending);
                return Ok(false);
            }
            Step::Said(Pull::Inputs(_)) => {}
            Step::Batch(batch) => return self.absorb_batch(batch),
            Step::Failed(e) => return Err(e.into()),
        }
        Ok(true)
    }

    /// Absorbs a parsed batch in order, then drains the detector and commits when a
    /// checkpoint is due.
    fn absorb_batch(&mut self, batch: Vec<(Input, Digested)>) -> Result<bool, PipelineError> {
        for (input, digested) in batch {
            if self.stop.is_set() {
                // The inputs not absorbed are not recorded: they are read again next time.
                return Ok(false);
            }
            let unit = match &input {
                Input::File(file) => Unit {
                    display: &file.display,
                    // Only files on disk are recorded as ingested (standard input is not).
                    ingest_key: matches!(file.source, InputSource::File(_))
                        .then_some(file.ingest_key.as_str()),
                    size: file.size,
                    reread: file.reread,
                },
                Input::Bytes(b) => Unit {
                    display: &b.display,
                    ingest_key: b.ingest_key.as_deref(),
                    size: b.content.len() as u64,
                    reread: false,
                },
            };
            self.observer.read(unit.display, &digested);
            let before: HashMap<u32, u64> = if self.options.early_rises {
                self.engine.pending_calls().into_iter().collect()
            } else {
                HashMap::new()
            };
            let found_before = self.engine.uncommitted_insights().count();
            let failed = self.engine.absorb(unit, digested);
            if self.options.early_rises {
                let touched: Vec<u32> = self
                    .engine
                    .pending_calls()
                    .into_iter()
                    .filter(|(id, n)| before.get(id) != Some(n))
                    .map(|(id, _)| id)
                    .collect();
                if !touched.is_empty() {
                    self.engine.announce_rises(&touched)?;
                }
            }
            self.observer
                .absorbed(unit.display, self.engine, found_before);
            if failed && self.options.on_error == OnError::Stop {
                self.engine.stop_early();
                return Ok(false);
            }
            if self.engine.checkpoint_due(self.options.checkpoint_every) {
                self.commit(Commit::Now)?;
            }
        }
        self.engine.drain()?;
        if self.engine.checkpoint_due(self.options.checkpoint_every) {
            self.commit(Commit::Now)?;
        }
        Ok(true)
    }

    /// The end of the run: every minute final when the source ended complete, the last commit,
    /// and the sinks finished.
    fn finish(mut self) -> Result<Ending, PipelineError> {
        let ending = self.ending.take().unwrap_or(Ending {
            stopped: true,
            ..Ending::default()
        });
        if self.options.finalize && !ending.stopped && !self.engine.summary().stopped_early {
            self.engine.finalize();
        }
        self.commit(Commit::Now)?;
        for sink in self.sinks.iter_mut() {
            sink.finish()?;
        }
        Ok(ending)
    }

    /// Commits when `when` asks for it, as the options say to treat failures.
    fn commit(&mut self, when: Commit) -> Result<(), PipelineError> {
        let mut backoff = Backoff::default();
        let mut store_failures = 0;
        loop {
            let wanted = match when {
                Commit::Now => self.engine.dirty() || self.engine.has_undelivered(),
                Commit::IfUseful => {
                    self.engine.uncommitted_insights().next().is_some()
                        || self.engine.has_undelivered()
                        || self.engine.checkpoint_due(self.options.checkpoint_every)
                }
            };
            if !wanted {
                return Ok(());
            }
            let result = self.engine.commit(self.sinks);
            self.observer.committed(self.engine, &result);
            let e = match result {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if self.options.commits == Commits::Fail {
                return Err(e);
            }
            let wait = backoff.next_wait();
            if matches!(e, PipelineError::Store(_)) {
                store_failures += 1;
                if self.engine.store().has_failed() || store_failures >= MAX_STORE_FAILURES {
                    tracing::error!("checkpoint failed: {e}");
                    return Err(PipelineError::StoreFailed(Box::new(e)));
                }
                tracing::error!(
                    "checkpoint failed: {e}; retrying in {}s ({store_failures} of {MAX_STORE_FAILURES} attempts)",
                    wait.as_secs()
                );
            } else {
                tracing::error!(
                    "checkpoint failed: {e}; retrying in {}s (nothing is lost: the work since the last checkpoint is kept in memory)",
                    wait.as_secs()
                );
            }
            if self.stop.is_set() {
                return Err(PipelineError::LastCheckpoint(Box::new(e)));
            }
            self.stop.wait(wait);
        }
    }
}
