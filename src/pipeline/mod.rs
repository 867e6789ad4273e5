//! The engine that runs the pipeline over a store: files are parsed in parallel into digests,
//! absorbed in order, minutes become final as event time advances, the detector turns final
//! minutes into findings, and checkpoints commit everything atomically before any Insight leaves
//! through a sink. Batch scoring (`score`) drives it over an archive; continuous mode feeds it
//! the same way as files land.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::aggregate::{AggregateStats, Aggregator, FileDigest, Pending};
use crate::detect::{Detector, Finding, Profile, SeriesDetector};
use crate::ingest::{self, InputFile, ParseContext, ReadLimits};
use crate::insight::{InsightRecord, InsightSink, InsightState, SinkError};
use crate::series::{Categories, Minute};
use crate::source::archive::Archive;
use crate::source::{Ending, Listed, Stop};
use crate::store::{Checkpoint, FileRecord, Meta, Store, StoreError};

pub mod aggregates;
pub mod driver;
use driver::{drive, Commits, DriverOptions, Observer};

/// What to do when an input file cannot be read or parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
pub enum OnError {
    /// Report it, count it, and go on with the other files (the exit status says so).
    #[default]
    Continue,
    /// Report it and stop after saving the work done on the files before it.
    Stop,
}

/// Errors that stop a run.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A sink failed.
    #[error("cannot write Insights: {0}")]
    Sink(#[from] crate::insight::SinkError),
    /// The thread pool could not be built.
    #[error("cannot start worker threads: {0}")]
    Threads(String),
    /// The source cannot go on.
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    /// Aggregate tables (`score --aggregates`) that cannot be scored.
    #[error(transparent)]
    Aggregates(#[from] crate::source::aggregates::AggregateError),
    /// The store failed, and retrying does not cure it.
    #[error("the store failed; stopping so that a service manager restarts trailsight, which resumes from the last checkpoint: {0}")]
    StoreFailed(Box<PipelineError>),
    /// A stop was asked while the last checkpoint could not be written.
    #[error("the last checkpoint could not be written: {0}")]
    LastCheckpoint(Box<PipelineError>),
    /// The input holds more series than the profile allows.
    #[error("the input holds more than ingest.max_series = {limit} series ({refused} records of further series not counted; nothing since the last checkpoint was written to the store): raise [ingest] max_series in the profile if the machine has the memory (about 20 KB per series at a checkpoint; see docs/bad-input.md, \"Many series\"), or score fewer accounts or regions per store")]
    TooManySeries {
        /// `ingest.max_series`.
        limit: u64,
        /// Records refused.
        refused: u64,
    },
}

/// One problem with one input, as reported to the user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputProblem {
    /// The input as the user knows it.
    pub path: String,
    /// What was wrong, with the record index or byte position where known.
    pub reason: String,
}

/// The account of a run, printed at the end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Input files found.
    pub files_found: u64,
    /// Files read in this run.
    pub files_read: u64,
    /// Files skipped because an earlier run ingested them.
    pub files_already_ingested: u64,
    /// Files an earlier run ingested at another size (appended to since), read again.
    pub files_reread: u64,
    /// Files that could not be read at all.
    pub files_failed: u64,
    /// Files read only in part (damaged gzip, broken JSON): their good records were counted.
    pub files_damaged: u64,
    /// Files under CloudTrail-Digest/ or CloudTrail-Insight/, skipped.
    pub files_not_activity: u64,
    /// Other files met while walking folders (not logs), ignored.
    pub files_ignored: u64,
    /// Records, write calls, errors, duplicates, late calls.
    pub counts: AggregateStats,
    /// Records skipped as bad, by reason.
    pub records_skipped: BTreeMap<String, u64>,
    /// Records not analysed by design (e.g. Insights events), by reason.
    pub records_ignored: BTreeMap<String, u64>,
    /// Invalid characters (bad UTF-8, control characters, lone surrogates) replaced by U+FFFD
    /// so that their records could be kept.
    #[serde(default)]
    pub chars_replaced: u64,
    /// Series known to the store.
    pub series: u64,
    /// Of those, series paged out of memory at the end (dormant: see `detect::paging`).
    pub series_paged_out: u64,
    /// Start records emitted.
    pub insights_start: u64,
    /// End records emitted.
    pub insights_end: u64,
    /// Episodes still open at the end of the run.
    pub open_episodes: u64,
    /// Insights a sink refused to write (unsafe account or region for a path).
    pub insights_refused: u64,
    /// Starts and Ends a suppression rule held back from the sinks (stored, in the report).
    pub insights_suppressed: u64,
    /// The first problems met (all are counted above).
    pub problems: Vec<InputProblem>,
    /// Whether the run stopped early at a bad file (`--on-error stop`).
    pub stopped_early: bool,
}

impl RunSummary {
    /// True when some input could not be read, or some record was skipped as bad.
    pub fn input_failed(&self) -> bool {
        self.files_failed > 0
            || self.files_damaged > 0
            || self.insights_refused > 0
            || self.records_skipped.values().any(|&n| n > 0)
            || self.nothing_read()
    }

    /// True when the inputs held files but not one record was read from them (a folder of
    /// files not recognised as logs, only digests, empty files): almost surely the wrong input,
    /// so it must not end like a successful run. A re-run finding only ingested files is fine.
    pub fn nothing_read(&self) -> bool {
        let held_files = self.files_found + self.files_ignored + self.files_not_activity > 0;
        held_files
            && self.files_already_ingested == 0
            && self.counts.records == 0
            && self.records_skipped.values().all(|&n| n == 0)
            && self.records_ignored.values().all(|&n| n == 0)
    }

    fn problem(&mut self, path: &str, reason: String) {
        const KEEP: usize = 100;
        if self.problems.len() < KEEP {
            self.problems.push(InputProblem {
                path: path.to_string(),
                reason,
            });
        }
    }
}

/// Settings of a run (the detector profile is the engine's, given to [`Engine::open`]).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Per-file limits.
    pub limits: ReadLimits,
    /// Bad-file policy.
    pub on_error: OnError,
    /// Worker threads (None: one per core).
    pub threads: Option<usize>,
    /// At the end of the input, treat every minute as final (the archive is complete); when
    /// false the last `allowed_lateness` minutes stay pending for the next run.
    pub finalize: bool,
    /// Show a progress bar on standard error (only drawn when it is a terminal).
    pub progress: bool,
}

/// Checkpoints in the middle of a run: at least this often in wall-clock time, and sooner when
/// the work held in memory since the last one grows past these bounds (so that memory follows
/// the number of series, not the length of the archive).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(30);
const CHECKPOINT_COUNT_CHUNKS: usize = 5_000;
/// ... plus this many chunks per series (hours of counts held per series between checkpoints).
const CHECKPOINT_CHUNKS_PER_SERIES: usize = 4;
const CHECKPOINT_FILES: usize = 20_000;
/// ... and when this many series changed since the last one (new, or with calls; checked
/// after every file): a checkpoint's memory peak grows with the states it writes (sled holds a
/// copy of a tree node per insert until the batch ends, ~14 KB a series), while an unchanged
/// series is not written and a dormant one is paged out.
const CHECKPOINT_CHANGED_SERIES: usize = 10_000;

/// The pipeline over one store.
///
/// Finality moves file by file: after each file, every minute more than the allowed lateness
/// before the newest event time is final, and a call for a final minute is late. The detector
/// follows through a queue of steps (advance to a minute, fold late calls into history) that
/// runs in the same order whenever it is drained, so results do not depend on how files were
/// batched, on when the queue was drained, or on restarts between checkpoints.
pub struct Engine {
    store: Store,
    meta: Meta,
    detector: Detector,
    aggregator: Aggregator,
    /// Every minute before this one is final for the aggregator (the detector may lag behind
    /// by the queued steps).
    final_before: Option<Minute>,
    steps: Vec<Step>,
    counts: HashMap<(u32, i64), [u32; 60]>,
    files_since: Vec<(String, FileRecord)>,
    /// Insights found since the last commit: series id, record, and whether a suppression rule
    /// holds it back from the sinks.
    findings_since: Vec<(u32, InsightRecord, bool)>,
    /// The file the suppression rules (the detector's) were read from and its modification time then: read again when it
    /// changes (`trailsight suppress` while `watch` runs).
    suppression_file: Option<(PathBuf, Option<std::time::SystemTime>)>,
    /// Every suppressed episode, by `sharedEventID` (its End is suppressed with its Start).
    suppressed: BTreeMap<String, crate::suppress::Suppressed>,
    /// Episodes suppressed since the last commit.
    suppressed_since: Vec<String>,
    /// Insights committed by an earlier process whose delivery was not confirmed.
    undelivered: Vec<InsightRecord>,
    last_checkpoint: Instant,
    /// Series known at the last checkpoint.
    series_at_checkpoint: usize,
    /// Per series id: whether it took calls since the last checkpoint; and how many did.
    touched: Vec<bool>,
    touched_count: usize,
    summary: RunSummary,
    /// Aggregate counters as of the last commit (the store's totals add the difference).
    committed: AggregateStats,
    /// Per-minute counts are kept this many minutes before the final minute (None: forever).
    retain_minutes: Option<i64>,
}

/// Days of per-minute counts a store keeps by default (plots, exports and the baselines they
/// recompute reach this far back); `--retain-days` changes it.
pub const DEFAULT_RETAIN_DAYS: i64 = 35;

/// What the detector still has to do, in order.
#[derive(Debug)]
enum Step {
    /// Process every minute before this one, with the cells that became final for it (those
    /// of the minutes since the advance before).
    Advance(Minute, Pending),
    /// Fold calls that arrived for already-final minutes into history.
    Late(Vec<crate::aggregate::LateCount>),
}

impl Step {
    /// The series whose detectors the step changes.
    fn series(&self) -> Vec<u32> {
        match self {
            Step::Advance(_, taken) => taken.series.keys().copied().collect(),
            Step::Late(late) => late.iter().filter(|l| !l.heartbeat).map(|l| l.id).collect(),
        }
    }
}

/// One input as the engine accounts for it.
#[derive(Debug, Clone, Copy)]
pub struct Unit<'a> {
    /// What to show the user.
    pub display: &'a str,
    /// Identity recorded as ingested (None: not recorded, e.g. standard input).
    pub ingest_key: Option<&'a str>,
    /// Bytes as stored.
    pub size: u64,
    /// Read before with another size: records behind what the dedup filters still know are
    /// dropped, since they cannot be told from the ones counted then.
    pub reread: bool,
}

/// A digest with what reading and parsing reported.
pub struct Digested {
    /// The counts read.
    pub digest: FileDigest,
    /// What parsing found (None when nothing could be read).
    pub report: Option<ingest::ParseReport>,
    /// Why reading failed or stopped early.
    pub error: Option<ingest::IngestError>,
}

/// Parses content already in memory (an S3 object, a chunk of standard input) into a digest.
pub fn digest_buffer(
    display: &str,
    delivery_minute: Option<Minute>,
    content: &[u8],
    reading: Digesting<'_>,
    buf: &mut Vec<u8>,
) -> Digested {
    digest_bytes(
        display,
        delivery_minute,
        content,
        reading,
        buf,
        now_max_minute(),
    )
}

/// How inputs are read and digested: the limits that keep a hostile file from costing
/// unbounded memory, and the event categories whose calls are counted.
#[derive(Debug, Clone, Copy)]
pub struct Digesting<'a> {
    /// Size limits.
    pub limits: &'a ReadLimits,
    /// The event categories analysed (`ingest.event_categories`).
    pub categories: Categories,
    /// The series kinds counted (bits over [`crate::series::kind::KINDS`]; see
    /// [`crate::detect::Profile::kinds`]).
    pub kinds: u8,
}

/// [`digest_buffer`] with the latest eventTime accepted given.
fn digest_bytes(
    display: &str,
    delivery_minute: Option<Minute>,
    content: &[u8],
    reading: Digesting<'_>,
    buf: &mut Vec<u8>,
    now_max: Minute,
) -> Digested {
    let loaded = ingest::read::read_input(
        content,
        Some(content.len() as u64),
        display,
        reading.limits,
        buf,
    );
    parse_loaded(display, delivery_minute, loaded, buf, now_max, reading)
}

/// Latest eventTime accepted: one day past the clock (read once per run, batch or chunk; for
/// the "eventTime in the future" check only).
pub fn now_max_minute() -> Minute {
    chrono::Utc::now().timestamp().div_euclid(60) + 1440
}

/// Reads and parses one file into a digest; the error (if any) is returned beside what was read.
pub fn digest_file(
    file: &InputFile,
    reading: Digesting<'_>,
    buf: &mut Vec<u8>,
    now_max: Minute,
) -> Digested {
    let loaded = ingest::load(file, reading.limits, buf);
    parse_loaded(
        &file.display,
        file.delivery_minute,
        loaded,
        buf,
        now_max,
        reading,
    )
}

/// Parses what reading left in `buf`: nothing when reading failed outright, the records before
/// the damage when it failed part way (the error is kept beside them). A Parquet file is read
/// as Security Lake's OCSF ([`ingest::ocsf`]), decoding at most `reading.limits` of data.
fn parse_loaded(
    display: &str,
    delivery_minute: Option<Minute>,
    loaded: Result<(), ingest::IngestError>,
    buf: &[u8],
    now_max: Minute,
    reading: Digesting<'_>,
) -> Digested {
    let Digesting {
        limits,
        categories,
        kinds,
    } = reading;
    let mut digest = FileDigest::counting(categories, kinds);
    let error = loaded.err();
    if error.as_ref().is_some_and(|e| !e.has_partial_content()) {
        return Digested {
            digest,
            report: None,
            error,
        };
    }
    let ctx = ParseContext {
        display,
        delivery_minute,
        min_minute: ingest::parse::EARLIEST_EVENT_MINUTE,
        max_minute: now_max,
    };
    if error.is_none() && ingest::ocsf::is_parquet(buf) {
        // Security Lake's OCSF Parquet (recognised by its magic bytes, whatever its name): its
        // rows become CloudTrail records for the same parser.
        let parsed =
            ingest::ocsf::parse_parquet(buf, &ctx, limits.max_decompressed_bytes, &mut |r| {
                digest.push(&r)
            });
        let parquet_error = |source| ingest::IngestError::Parquet {
            path: display.to_owned(),
            source,
        };
        return match parsed {
            Ok((report, damage)) => Digested {
                digest,
                report: Some(report),
                error: damage.map(parquet_error),
            },
            Err(source) => Digested {
                digest,
                report: None,
                error: Some(parquet_error(source)),
            },
        };
    }
    let report = ingest::parse(buf, &ctx, &mut |r| digest.push(&r));
    Digested {
        digest,
        report: Some(report),
        error,
    }
}

impl Engine {
    /// Opens the store and resumes its state.
    pub fn open(store_path: &Path, profile: Profile) -> Result<Engine, PipelineError> {
        let store = Store::open(store_path)?;
        // Every state is read from the store: the dormant ones need not stay in memory.
        let state = store.load(&profile)?;
        let capacity = profile.attribution.capacity;
        let dedup = profile.ingest.dedup_window_minutes;
        let mut aggregator = Aggregator::new(state.registry, capacity, dedup)
            .with_day_filters(
                profile.ingest.dedup_days,
                profile.ingest.dedup_false_positive,
            )
            .with_max_series(profile.ingest.max_series)
            .with_max_principal_series(profile.principals.max_series);
        aggregator.pending = state.pending;
        aggregator.restore_seen_ids(state.seen_ids);
        aggregator.restore_day_filters(state.seen_days);
        aggregator.stats.max_minute = state.meta.totals.max_minute;
        let detector = Detector::new(
            profile,
            state.series,
            state.heartbeats,
            state.meta.final_before,
        );
        let mut detector = detector;
        detector.announced = state.announced;
        let committed = aggregator.stats.clone();
        let series_at_checkpoint = aggregator.registry.series.len();
        let suppressed = store.suppressed()?;
        Ok(Engine {
            suppression_file: None,
            suppressed,
            suppressed_since: Vec::new(),
            committed,
            store,
            final_before: state.meta.final_before,
            meta: state.meta,
            detector,
            aggregator,
            steps: Vec::new(),
            counts: HashMap::new(),
            files_since: Vec::new(),
            findings_since: Vec::new(),
            undelivered: state.outbox,
            last_checkpoint: Instant::now(),
            series_at_checkpoint,
            touched: Vec::new(),
            touched_count: 0,
            summary: RunSummary::default(),
            retain_minutes: Some(DEFAULT_RETAIN_DAYS * crate::series::MINUTES_PER_DAY),
        })
    }

    /// Suppression rules (see [`crate::suppress`]): a matching Start, and its End, are stored
    /// but not handed to the sinks, and the episode's minutes re-baseline the series when the
    /// rule says so.
    pub fn set_suppression(&mut self, rules: crate::suppress::Rules) {
        self.detector.suppression = rules;
    }

    /// Reads suppression rules from `path`, and reads them again at a commit after the file
    /// changed (a file that no longer parses is reported and the rules before it kept).
    pub fn set_suppression_file(
        &mut self,
        path: &Path,
    ) -> Result<(), crate::suppress::SuppressError> {
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        self.set_suppression(crate::suppress::Rules::load(path)?);
        self.suppression_file = Some((path.to_path_buf(), modified));
        Ok(())
    }

    /// Reads the suppression rules again if their file changed since they were read.
    fn refresh_suppression(&mut self) {
        let Some((path, seen)) = &self.suppression_file else {
            return;
        };
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if modified == *seen {
            return;
        }
        let path = path.clone();
        match crate::suppress::Rules::load(&path) {
            Ok(rules) => {
                tracing::info!(
                    "suppression rules {} read again: {} rules",
                    path.display(),
                    rules.rules().len()
                );
                self.set_suppression(rules);
            }
            Err(e) => tracing::warn!("{e}; the rules read before stay in force"),
        }
        self.suppression_file = Some((path, modified));
    }

    /// How long per-minute counts are kept before the final minute (`None`: forever). Never
    /// less than the baseline window plus a day, which detection itself reads back.
    pub fn set_retention(&mut self, minutes: Option<i64>) {
        let floor = self.detector.profile.baseline.window_minutes + crate::series::MINUTES_PER_DAY;
        self.retain_minutes = minutes.map(|m| m.max(floor));
    }

    /// Delivers the Insights an earlier process committed but may not have delivered (it
    /// stopped between its checkpoint and its sinks), in the same groups as before, so that
    /// idempotent sinks end with each record exactly once. Call before any new input.
    pub fn redeliver(
        &mut self,
        sinks: &mut [&mut dyn InsightSink],
    ) -> Result<usize, PipelineError> {
        let records = std::mem::take(&mut self.undelivered);
        if records.is_empty() {
            return Ok(0);
        }
        if let Err(e) = self.deliver(&records, sinks) {
            self.undelivered = records;
            return Err(e);
        }
        self.store.clear_outbox()?;
        Ok(records.len())
    }

    /// The profile in force.
    pub fn profile(&self) -> &Profile {
        &self.detector.profile
    }

    /// Every minute before this one is final.
    pub fn final_before(&self) -> Option<Minute> {
        self.final_before
    }

    /// Newest event minute seen.
    pub fn max_minute(&self) -> Option<Minute> {
        self.aggregator.stats.max_minute
    }

    /// Episodes open now (including rises announced before their minutes were final).
    pub fn open_episodes(&self) -> u64 {
        // Paged-out series are dormant: none has an episode open.
        let open = self
            .detector
            .resident()
            .filter(|(_, d)| d.has_open_episode())
            .count();
        let announced_only = self
            .detector
            .announced
            .keys()
            .filter(|&&id| {
                !self
                    .detector
                    .series(id)
                    .is_some_and(SeriesDetector::has_open_episode)
            })
            .count();
        (open + announced_only) as u64
    }

    /// The account of the work done since the engine was opened (or since the last take).
    pub fn summary(&self) -> &RunSummary {
        &self.summary
    }

    /// Aggregate counters since the engine was opened.
    pub fn stats(&self) -> &AggregateStats {
        &self.aggregator.stats
    }

    /// Whether the store already ingested this key.
    pub fn is_ingested(&self, ingest_key: &str) -> Result<bool, PipelineError> {
        Ok(self.store.is_ingested(ingest_key)?)
    }

    /// Absorbs one read input: accounts for it in the summary, aggregates its records, and
    /// moves finality to the newest event time minus the allowed lateness. Returns true when
    /// the input failed or was damaged.
    pub fn absorb(&mut self, unit: Unit<'_>, digested: Digested) -> bool {
        let Digested {
            digest,
            report,
            error,
        } = digested;
        let failed = self.account_file(unit.display, &digest, report.as_ref(), error.as_ref());
        if report.is_some() {
            let records = digest.records;
            if unit.reread {
                self.summary.files_reread += 1;
                self.aggregator.absorb_again(digest, self.final_before);
            } else {
                self.aggregator.absorb(digest, self.final_before);
            }
            if let Some(key) = unit.ingest_key {
                self.files_since.push((
                    key.to_owned(),
                    FileRecord {
                        size: unit.size,
                        records,
                    },
                ));
            }
        }
        self.queue_late();
        if let Some(max) = self.aggregator.stats.max_minute {
            let lateness = self.detector.profile.ingest.allowed_lateness_minutes;
            self.advance_to(max + 1 - lateness);
        }
        failed
    }

    /// Continuous mode: declares the rises that the not-yet-final minutes of `series` already
    /// show (see [`Detector::announce_rises`]); they are written at the next commit.
    pub fn announce_rises(&mut self, series: &[u32]) -> Result<(), PipelineError> {
        self.drain()?;
        self.page_in(series.iter().copied())?;
        let found = self.detector.announce_rises(
            &self.aggregator.pending,
            series.iter().copied(),
            &self.aggregator.registry,
        );
        self.emit(found);
        Ok(())
    }

    /// Series ids with calls in minutes that are not final yet, with their pending calls.
    pub fn pending_calls(&self) -> Vec<(u32, u64)> {
        self.aggregator
            .pending
            .series
            .iter()
            .map(|(&id, cells)| (id, cells.values().map(|c| c.count).sum()))
            .collect()
    }

    /// Whether a checkpoint is due: `every` passed since the last one, or the work held in
    /// memory grew past its bounds.
    pub fn checkpoint_due(&self, every: Duration) -> bool {
        self.last_checkpoint.elapsed() >= every
            || self.counts.len()
                >= CHECKPOINT_COUNT_CHUNKS
                    + CHECKPOINT_CHUNKS_PER_SERIES * self.aggregator.registry.series.len()
            || self.files_since.len() >= CHECKPOINT_FILES
            || self.many_changed_series()
    }

    /// Whether the series changed since the last checkpoint (new ones, those that took calls,
    /// and at most those the queued steps will give calls) reach [`CHECKPOINT_CHANGED_SERIES`].
    fn many_changed_series(&self) -> bool {
        let new = self.aggregator.registry.series.len() - self.series_at_checkpoint;
        let queued: usize = self
            .steps
            .iter()
            .map(|s| match s {
                Step::Advance(_, taken) => taken.series.len(),
                Step::Late(late) => late.len(),
            })
            .sum();
        new + queued + self.touched_count >= CHECKPOINT_CHANGED_SERIES
    }

    /// Treats every minute seen as final (the input is complete).
    pub fn finalize(&mut self) {
        if let Some(max) = self.aggregator.stats.max_minute {
            self.advance_to(max + 1);
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Series and account/regions known so far.
    pub fn registry(&self) -> &crate::aggregate::Registry {
        &self.aggregator.registry
    }

    /// Runs the batch pipeline over `inputs` (the driver on an [`Archive`] to its end),
    /// writing Insights to `sinks` as checkpoints commit them. Returns the run's summary.
    pub fn score(
        &mut self,
        inputs: &[PathBuf],
        options: &RunOptions,
        sinks: &mut [&mut dyn InsightSink],
    ) -> Result<RunSummary, PipelineError> {
        let mut archive = Archive::new(inputs, self.store.clone());
        let mut progress = Progress(progress_bar(options.progress, archive.days_left() as u64));
        let driver = DriverOptions {
            limits: options.limits,
            on_error: options.on_error,
            threads: options.threads,
            finalize: options.finalize,
            checkpoint_every: CHECKPOINT_EVERY,
            early_rises: false,
            commits: Commits::Fail,
        };
        drive(
            self,
            &mut archive,
            &driver,
            sinks,
            &mut progress,
            &Stop::new(),
        )?;
        progress.0.finish_and_clear();
        Ok(self.take_summary())
    }

    /// The account of the run (since the engine was opened or the last take), with the
    /// store's series and open episodes as they stand: what `score` and `watch` print.
    pub fn take_summary(&mut self) -> RunSummary {
        let mut summary = std::mem::take(&mut self.summary);
        summary.counts = std::mem::take(&mut self.aggregator.stats);
        summary.counts.max_minute = self.meta.totals.max_minute;
        summary.series = self.aggregator.registry.series.len() as u64;
        summary.series_paged_out = self.detector.paged_out() as u64;
        summary.open_episodes = self.open_episodes();
        summary
    }

    /// Accounts for a listing step in the summary.
    pub fn account_listed(&mut self, listed: &Listed) {
        self.summary.files_found += listed.found;
        self.summary.files_already_ingested += listed.already_ingested;
        for (path, problem) in &listed.problems {
            self.summary.files_failed += 1;
            self.summary.problem(path, problem.clone());
        }
    }

    /// Accounts for how the source ended in the summary.
    pub fn account_ending(&mut self, ending: &Ending) {
        self.summary.files_not_activity += ending.not_activity;
        self.summary.files_ignored += ending.ignored;
    }

    /// Records that the run stopped at a bad input (`--on-error stop`).
    pub fn stop_early(&mut self) {
        self.summary.stopped_early = true;
    }

    /// Records a file's outcome in the summary; true when the file failed or was damaged.
    fn account_file(
        &mut self,
        display: &str,
        digest: &FileDigest,
        report: Option<&ingest::ParseReport>,
        error: Option<&ingest::IngestError>,
    ) -> bool {
        let mut failed = false;
        match (report, error) {
            (None, Some(e)) => {
                self.summary.files_failed += 1;
                self.summary.problem(display, e.to_string());
                return true;
            }
            (Some(_), Some(e)) => {
                self.summary.files_damaged += 1;
                self.summary.problem(
                    display,
                    format!(
                        "{e}; {} records before the damage were counted",
                        digest.records
                    ),
                );
                failed = true;
            }
            _ => {}
        }
        let Some(report) = report else { return failed };
        self.summary.files_read += 1;
        if let Some(fatal) = &report.fatal {
            if error.is_none() {
                self.summary.files_damaged += 1;
            }
            self.summary.problem(
                display,
                format!(
                    "{fatal}; {} records before it were counted",
                    report.records_ok
                ),
            );
            failed = true;
        }
        for (reason, n) in &report.skipped {
            *self
                .summary
                .records_skipped
                .entry(reason.to_string())
                .or_insert(0) += n;
        }
        for (reason, n) in &report.ignored {
            *self
                .summary
                .records_ignored
                .entry(reason.to_string())
                .or_insert(0) += n;
        }
        for example in &report.examples {
            self.summary.problem(display, example.to_string());
        }
        if report.chars_replaced > 0 {
            self.summary.chars_replaced += report.chars_replaced;
            self.summary.problem(
                display,
                format!(
                    "{} invalid characters (bad UTF-8, control characters, lone surrogates) \
                     replaced by U+FFFD; their records were kept",
                    report.chars_replaced
                ),
            );
        }
        failed
    }

    /// Queues the calls the last absorbed file brought for already-final minutes.
    fn queue_late(&mut self) {
        let late = std::mem::take(&mut self.aggregator.late);
        if !late.is_empty() {
            self.steps.push(Step::Late(late));
        }
    }

    /// Makes every minute before `upto` final: its cells leave the pending set and the detector
    /// is queued to process them.
    pub fn advance_to(&mut self, upto: Minute) {
        if self.final_before.is_some_and(|f| upto <= f) {
            return;
        }
        let taken = self.aggregator.pending.take_before(upto);
        // Consecutive advances merge: the detector's results do not depend on how its minutes
        // are chunked, only on where late calls come in between.
        if let Some(Step::Advance(last, cells)) = self.steps.last_mut() {
            *last = upto;
            cells.append(taken);
        } else {
            self.steps.push(Step::Advance(upto, taken));
        }
        self.final_before = Some(upto);
    }

    /// Runs the queued detector steps: final cells into the stored counts and the detector,
    /// late calls into history. The stored count hours they touch are read first, so a store
    /// that cannot be read stops the run (the steps stay queued) instead of counting from zero.
    pub fn drain(&mut self) -> Result<(), PipelineError> {
        let steps = std::mem::take(&mut self.steps);
        let changed: Vec<u32> = steps.iter().flat_map(Step::series).collect();
        if let Err(e) = self
            .load_chunks(&steps)
            .and_then(|()| self.page_in(changed.iter().copied()))
        {
            self.steps = steps;
            return Err(e.into());
        }
        for id in changed {
            let id = id as usize;
            if self.touched.len() <= id {
                self.touched.resize(id + 1, false);
            }
            if !std::mem::replace(&mut self.touched[id], true) {
                self.touched_count += 1;
            }
        }
        for step in steps {
            match step {
                Step::Advance(upto, taken) => {
                    for (&id, cells) in &taken.series {
                        for (&minute, cell) in cells {
                            add_count(&mut self.counts, id, minute, cell.count);
                        }
                    }
                    let findings = self
                        .detector
                        .advance(upto, taken, &self.aggregator.registry);
                    self.emit(findings);
                }
                Step::Late(late) => {
                    let counts = &mut self.counts;
                    self.detector.apply_late(&late, |l| {
                        if l.heartbeat {
                            return 0;
                        }
                        add_count(counts, l.id, l.minute, l.count)
                    });
                }
            }
        }
        Ok(())
    }

    /// Reads back from the store the paged-out series among `ids` and those their advance
    /// reads (see [`Detector::paged_among`]).
    fn page_in(&mut self, ids: impl IntoIterator<Item = u32>) -> Result<(), StoreError> {
        let registry = &self.aggregator.registry;
        let window = self.detector.profile.baseline.window_minutes;
        for id in self.detector.paged_among(ids, registry) {
            let state = self
                .store
                .detector(id, self.detector.final_before, window)?;
            self.detector.page_in(id, state);
        }
        Ok(())
    }

    /// Reads into memory the stored count hours that `steps` add to.
    fn load_chunks(&mut self, steps: &[Step]) -> Result<(), StoreError> {
        let mut wanted = Vec::new();
        for step in steps {
            match step {
                Step::Advance(_, taken) => {
                    for (&id, cells) in &taken.series {
                        wanted.extend(cells.keys().map(|m| (id, m.div_euclid(60))));
                    }
                }
                Step::Late(late) => wanted.extend(
                    late.iter()
                        .filter(|l| !l.heartbeat)
                        .map(|l| (l.id, l.minute.div_euclid(60))),
                ),
            }
        }
        for (id, hour) in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.counts.entry((id, hour)) {
                slot.insert(self.store.count_chunk(id, hour)?);
            }
        }
        Ok(())
    }

    fn emit(&mut self, findings: Vec<Finding>) {
        for f in findings {
            let record = InsightRecord::from_summary(&f.summary);
            match f.summary.state {
                InsightState::Start => self.summary.insights_start += 1,
                InsightState::End => self.summary.insights_end += 1,
            }
            let shared = &record.shared_event_id;
            let suppressed = match f.summary.state {
                InsightState::Start if !self.suppressed.contains_key(shared) => {
                    match self.detector.suppression.find(&record) {
                        Some(rule) => {
                            let kept = crate::suppress::Suppressed {
                                reason: rule.reason.clone(),
                            };
                            self.suppressed.insert(shared.clone(), kept);
                            self.suppressed_since.push(shared.clone());
                            true
                        }
                        None => false,
                    }
                }
                _ => self.suppressed.contains_key(shared),
            };
            if suppressed {
                self.summary.insights_suppressed += 1;
            }
            self.findings_since.push((f.series_id, record, suppressed));
        }
    }

    /// Commits the state atomically, then hands the Insights found since the last commit to
    /// the sinks (so an Insight is never written by a run whose state was not saved).
    pub fn commit(&mut self, sinks: &mut [&mut dyn InsightSink]) -> Result<(), PipelineError> {
        self.refresh_suppression();
        if self.aggregator.refused > 0 {
            return Err(PipelineError::TooManySeries {
                limit: self.detector.profile.ingest.max_series,
                refused: self.aggregator.refused,
            });
        }
        self.drain()?;
        self.meta.final_before = self.detector.final_before;
        let now = self.aggregator.stats.clone();
        let before = &self.committed;
        let totals = &mut self.meta.totals;
        totals.records += now.records - before.records;
        totals.write_calls += now.write_calls - before.write_calls;
        totals.errors += now.errors - before.errors;
        totals.duplicates += now.duplicates - before.duplicates;
        totals.late += now.late - before.late;
        totals.max_minute = now.max_minute;
        self.committed = now;
        let prune = self
            .meta
            .final_before
            .zip(self.retain_minutes)
            .map(|(f, keep)| (f - keep).div_euclid(60));
        let counts: Vec<_> = self.counts.iter().map(|(k, v)| (*k, v)).collect();
        let (seen_days, prune_seen_days_before) = self.aggregator.changed_day_filters();
        let cp = Checkpoint {
            meta: Some(&self.meta),
            registry: Some(&self.aggregator.registry),
            // Paged-out series are in the store as they are.
            series: self.detector.resident().collect(),
            heartbeats: self
                .detector
                .heartbeats
                .iter()
                .enumerate()
                .map(|(i, d)| (i as u32, d))
                .collect(),
            pending: Some(&self.aggregator.pending),
            counts,
            files: self
                .files_since
                .iter()
                .map(|(k, r)| (k.as_str(), r.clone()))
                .collect(),
            insights: self
                .findings_since
                .iter()
                .map(|(id, r, _)| (*id, r))
                .collect(),
            suppressed: self
                .suppressed_since
                .iter()
                .filter_map(|id| Some((id.as_str(), self.suppressed.get(id)?)))
                .collect(),
            seen_ids: Some(self.aggregator.seen_ids()),
            seen_days,
            prune_seen_days_before,
            prune_counts_before_hour: prune,
            announced: Some(&self.detector.announced),
            outbox: self
                .undelivered
                .iter()
                .chain(
                    self.findings_since
                        .iter()
                        .filter(|(_, _, suppressed)| !suppressed)
                        .map(|(_, r, _)| r),
                )
                .collect(),
            profile: Some(&self.detector.profile),
        };
        self.store.checkpoint(&cp)?;
        self.aggregator.saved_day_filters();
        // Every series in memory is now in the store as it is: the dormant ones leave memory.
        self.detector
            .page_out_dormant(&self.aggregator.registry, &self.aggregator.pending);
        // Keep only the chunks of the current hour in memory: older hours are final.
        let keep_from = self
            .detector
            .final_before
            .map(|f| f.div_euclid(60))
            .unwrap_or(i64::MIN);
        self.counts.retain(|(_, hour), _| *hour >= keep_from);
        self.files_since.clear();
        self.suppressed_since.clear();
        let mut records = std::mem::take(&mut self.undelivered);
        records.extend(
            std::mem::take(&mut self.findings_since)
                .into_iter()
                .filter(|(_, _, suppressed)| !suppressed)
                .map(|(_, r, _)| r),
        );
        self.last_checkpoint = Instant::now();
        self.series_at_checkpoint = self.aggregator.registry.series.len();
        self.touched.iter_mut().for_each(|t| *t = false);
        self.touched_count = 0;
        if !records.is_empty() {
            // The records are in the store's outbox: if a sink fails they are kept and
            // delivered again (by the next commit or `redeliver`), never lost.
            if let Err(e) = self.deliver(&records, sinks) {
                self.undelivered = records;
                return Err(e);
            }
            self.store.clear_outbox()?;
        }
        Ok(())
    }

    /// Insights found since the last commit, in order (they leave at the next commit).
    pub fn uncommitted_insights(&self) -> impl Iterator<Item = &InsightRecord> {
        self.findings_since.iter().map(|(_, r, _)| r)
    }

    /// Whether committed Insights wait for a sink that failed.
    pub fn has_undelivered(&self) -> bool {
        !self.undelivered.is_empty()
    }

    /// Whether anything happened since the last commit (files, findings, queued steps).
    pub fn dirty(&self) -> bool {
        !self.files_since.is_empty()
            || !self.findings_since.is_empty()
            || !self.steps.is_empty()
            || self.committed != self.aggregator.stats
    }

    /// Hands records to every sink and makes them durable there.
    fn deliver(
        &mut self,
        records: &[InsightRecord],
        sinks: &mut [&mut dyn InsightSink],
    ) -> Result<(), PipelineError> {
        for record in records {
            for sink in sinks.iter_mut() {
                match sink.write(record) {
                    Ok(()) => {}
                    // A value from the logs that would make an unsafe path: that record is
                    // refused by that sink, the others go on.
                    // An endpoint that refuses a record for good (HTTP 4xx): reported, the
                    // others go on.
                    Err(e @ SinkError::Rejected { .. }) => {
                        self.summary.insights_refused += 1;
                        self.summary.problem("sink", e.to_string());
                    }
                    Err(e @ SinkError::UnsafePathComponent { .. }) => {
                        self.summary.insights_refused += 1;
                        self.summary
                            .problem(&record.recipient_account_id, e.to_string());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        for sink in sinks.iter_mut() {
            sink.finish()?;
        }
        Ok(())
    }
}

/// Adds `added` calls to a series' stored count for `minute` (through the in-memory chunk of
/// its hour, which [`Engine::load_chunks`] read from the store); returns the count the minute
/// had before.
fn add_count(
    counts: &mut HashMap<(u32, i64), [u32; 60]>,
    id: u32,
    minute: Minute,
    added: u64,
) -> u64 {
    let hour = minute.div_euclid(60);
    // `load_chunks` put every hour the queued steps touch in memory; the zeros are never used.
    let chunk = counts.entry((id, hour)).or_insert([0; 60]);
    let slot = &mut chunk[minute.rem_euclid(60) as usize];
    let before = u64::from(*slot);
    *slot = slot.saturating_add(u32::try_from(added).unwrap_or(u32::MAX));
    before
}

/// `score`'s progress bar: one step per delivery day listed.
struct Progress(indicatif::ProgressBar);

impl Observer for Progress {
    fn listed(&mut self, _: &Listed) {
        self.0.inc(1);
    }
}

fn progress_bar(wanted: bool, days: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !wanted || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(days);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} delivery days (eta {eta})",
    ) {
        bar.set_style(style);
    }
    bar
}
