//! Continuous mode: follows a trail as its log files land (a local folder, an S3 bucket, or JSON
//! lines on standard input) and writes Insights within a minute or two, through the same engine,
//! store and records as batch scoring.
//!
//! tokio runs the I/O (listing, fetching, signals, the metrics endpoint); reading, parsing,
//! detection and checkpoints run on blocking threads, one step at a time, with the engine handed
//! to each step and back. State is committed at checkpoints (every few seconds while input
//! flows, after every round of input, and on SIGINT/SIGTERM after the file in hand), and
//! Insights leave only after the checkpoint that holds them is durable, so a process killed at
//! any point resumes without losing or repeating a record.

pub mod folder;
pub mod metrics;
pub mod s3;
pub mod stdin;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chrono::NaiveDate;
use rayon::prelude::*;
use tokio::sync::mpsc;

use crate::detect::Profile;
use crate::ingest::{InputFile, ReadLimits};
pub use crate::insight::AppendJsonLines;
use crate::insight::{InsightRecord, InsightSink, InsightState, Outputs, SinkError};
use crate::pipeline::{
    digest_buffer, digest_file, now_max_minute, Digested, Engine, PipelineError, Unit,
};
use crate::series::Minute;
use folder::{Folder, Ingested};
use metrics::{ErrorKind, Metrics};

/// What `watch` follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local folder in S3 layout.
    Folder(PathBuf),
    /// `s3://bucket/prefix`.
    S3(String),
    /// JSON lines on standard input (`-`).
    Stdin,
}

impl Source {
    /// Reads a source as given on the command line.
    pub fn parse(text: &str) -> Source {
        if text == "-" {
            Source::Stdin
        } else if text.starts_with("s3://") {
            Source::S3(text.to_owned())
        } else {
            Source::Folder(PathBuf::from(text))
        }
    }
}

/// Settings of a `watch` run.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// What to follow.
    pub source: Source,
    /// The sled store.
    pub store: PathBuf,
    /// Detector profile.
    pub profile: Profile,
    /// Append Insights as JSON lines to this file (None: standard output).
    pub out: Option<PathBuf>,
    /// Also write Insights in CloudTrail's S3 layout under this folder.
    pub insights_dir: Option<PathBuf>,
    /// Write nothing to standard output when `out` is None.
    pub quiet: bool,
    /// Per-file limits.
    pub limits: ReadLimits,
    /// Checkpoint at least this often while input flows.
    pub checkpoint_every: Duration,
    /// Look for new files this often (a folder with notifications is also woken by them).
    pub poll_every: Duration,
    /// A file is read once it has not been modified for this long.
    pub settle: Duration,
    /// Read what is there now, commit, and exit.
    pub once: bool,
    /// Declare rises before their minutes are final (the default; off: identical to `score`).
    pub early_rises: bool,
    /// Serve Prometheus metrics and a health endpoint here.
    pub metrics_addr: Option<SocketAddr>,
    /// S3-compatible endpoint.
    pub endpoint_url: Option<String>,
    /// AWS region for the S3 client (else the standard chain).
    pub region: Option<String>,
    /// Earliest day to read (S3, folders): default from the store's newest event, or (S3 on a
    /// new store) the baseline window before today.
    pub since: Option<NaiveDate>,
    /// Per-minute counts are kept this long before the final minute (None: forever).
    pub retain_minutes: Option<i64>,
    /// Publish a snapshot of the store for readers this often (None: never).
    pub snapshot_every: Option<Duration>,
}

/// How a `watch` run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// A signal asked it to stop.
    Signal,
    /// The input ended (standard input closed, or `once`).
    InputEnded,
}

/// The result of a run.
#[derive(Debug)]
pub struct WatchReport {
    /// Why it stopped.
    pub ended: Ended,
    /// Whether some input could not be read or was damaged.
    pub input_failed: bool,
    /// The run's summary.
    pub summary: crate::pipeline::RunSummary,
}

/// Runs `watch` until a signal, the end of the input, or (with `once`) the end of what is
/// there now.
pub fn run(options: WatchOptions) -> Result<WatchReport> {
    let mut engine = Engine::open(&options.store, options.profile.clone())
        .with_context(|| format!("opening the store {}", options.store.display()))?;
    engine.set_retention(options.retain_minutes);
    let metrics = Metrics::new();
    let sinks = Sinks::open(&options, Arc::clone(&metrics))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let core = Core {
        engine,
        sinks,
        metrics,
        limits: options.limits,
        early_rises: options.early_rises,
        checkpoint_every: options.checkpoint_every,
        failures: HashMap::new(),
        buf: Vec::new(),
        snapshot_every: options.snapshot_every,
        last_snapshot: None,
    };
    runtime.block_on(follow(options, core))
}

/// The engine with what it writes to, handed to blocking steps and back.
struct Core {
    engine: Engine,
    sinks: Sinks,
    metrics: Arc<Metrics>,
    limits: ReadLimits,
    early_rises: bool,
    checkpoint_every: Duration,
    /// Read failures per ingest key (retried a few times, then given up).
    failures: HashMap<String, u32>,
    buf: Vec<u8>,
    /// Publish a snapshot for readers this often, and when the last one was published.
    snapshot_every: Option<Duration>,
    last_snapshot: Option<Instant>,
}

/// Attempts at reading a file that cannot be read before it is given up.
const MAX_READ_ATTEMPTS: u32 = 5;
/// Files read in parallel per step.
const PARALLEL_FILES: usize = 16;

impl Core {
    /// Absorbs one input, logs its problems, updates the metrics, and (continuous mode)
    /// declares the rises its calls already make certain.
    fn absorb(&mut self, unit: Unit<'_>, digested: Digested) -> Result<bool, PipelineError> {
        log_problems(unit.display, &digested, &self.metrics);
        let records = digested.digest.records;
        let before: HashMap<u32, u64> = if self.early_rises {
            self.engine.pending_calls().into_iter().collect()
        } else {
            HashMap::new()
        };
        let found_before = self.engine.uncommitted_insights().count();
        let failed = self.engine.absorb(unit, digested);
        if self.early_rises {
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
        if let Ok(mut triggers) = self.sinks.log.triggers.lock() {
            for r in self.engine.uncommitted_insights().skip(found_before) {
                triggers.insert(r.event_id.clone(), unit.display.to_owned());
            }
        }
        let m = &self.metrics;
        m.files.fetch_add(1, Ordering::Relaxed);
        m.add_records(records);
        m.late.store(self.engine.stats().late, Ordering::Relaxed);
        if let Some(max) = self.engine.max_minute() {
            m.newest_event_minute.store(max, Ordering::Relaxed);
        }
        if let Some(f) = self.engine.final_before() {
            m.final_before_minute.store(f, Ordering::Relaxed);
        }
        Ok(failed)
    }

    /// Reads files in delivery order (in parallel, absorbed in order), stopping between files
    /// when `stop` is set. Returns the files that could not be read and should be listed
    /// again.
    fn ingest_files(
        &mut self,
        files: &[InputFile],
        stop: &AtomicBool,
    ) -> Result<Vec<InputFile>, PipelineError> {
        let mut retry = Vec::new();
        let limits = self.limits;
        let now_max = now_max_minute();
        for chunk in files.chunks(PARALLEL_FILES) {
            let digests: Vec<Digested> = chunk
                .par_iter()
                .map_init(Vec::new, |buf, file| {
                    digest_file(file, &limits, buf, now_max)
                })
                .collect();
            for (file, digested) in chunk.iter().zip(digests) {
                if stop.load(Ordering::Relaxed) {
                    return Ok(retry);
                }
                let unreadable = digested.report.is_none();
                if unreadable {
                    let attempts = self.failures.entry(file.ingest_key.clone()).or_insert(0);
                    *attempts += 1;
                    if *attempts < MAX_READ_ATTEMPTS {
                        tracing::warn!(
                            file = %file.display,
                            attempt = *attempts,
                            "cannot read the file yet; it will be tried again"
                        );
                        self.metrics.error(ErrorKind::Read);
                        retry.push(file.clone());
                        continue;
                    }
                    tracing::error!(file = %file.display, "giving up on the file after {MAX_READ_ATTEMPTS} attempts");
                }
                let unit = Unit {
                    display: &file.display,
                    ingest_key: Some(&file.ingest_key),
                    size: file.size,
                    reread: file.reread,
                };
                self.absorb(unit, digested)?;
                if self.engine.checkpoint_due(self.checkpoint_every) {
                    self.commit()?;
                }
            }
        }
        Ok(retry)
    }

    /// Absorbs content already in memory (an S3 object or a chunk of standard input).
    /// `first_line` is the input line number of the content's first line (1 for a whole file):
    /// problems are reported with the input's line numbers.
    fn ingest_buffer(
        &mut self,
        display: &str,
        ingest_key: Option<&str>,
        delivery_minute: Option<Minute>,
        content: &[u8],
        first_line: u64,
    ) -> Result<(), PipelineError> {
        let mut buf = std::mem::take(&mut self.buf);
        let mut digested = digest_buffer(display, delivery_minute, content, &self.limits, &mut buf);
        if let Some(report) = digested.report.as_mut() {
            report.shift_line_numbers(first_line.saturating_sub(1));
        }
        let unit = Unit {
            display,
            ingest_key,
            size: content.len() as u64,
            reread: false,
        };
        let absorbed = self.absorb(unit, digested);
        buf.clear();
        self.buf = buf;
        absorbed?;
        if self.engine.checkpoint_due(self.checkpoint_every) {
            self.commit()?;
        }
        Ok(())
    }

    /// Commits when Insights wait to be written or a checkpoint is due.
    fn commit_if_useful(&mut self) -> Result<(), PipelineError> {
        if self.engine.uncommitted_insights().next().is_some()
            || self.engine.has_undelivered()
            || self.engine.checkpoint_due(self.checkpoint_every)
        {
            self.commit()
        } else {
            Ok(())
        }
    }

    /// Commits (when anything changed or Insights wait for delivery) and updates the metrics.
    fn commit(&mut self) -> Result<(), PipelineError> {
        if !self.engine.dirty() && !self.engine.has_undelivered() {
            return Ok(());
        }
        let mut sinks = self.sinks.as_dyn();
        let result = self.engine.commit(&mut sinks);
        let m = &self.metrics;
        match &result {
            Ok(()) => {
                m.checkpoints.fetch_add(1, Ordering::Relaxed);
                m.last_checkpoint_unix
                    .store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
                m.store_failing.store(false, Ordering::Relaxed);
                m.open_episodes
                    .store(self.engine.open_episodes(), Ordering::Relaxed);
                tracing::debug!("checkpoint committed");
                self.snapshot_if_due();
            }
            Err(PipelineError::Sink(_)) => m.error(ErrorKind::Sink),
            Err(_) => {
                m.error(ErrorKind::Store);
                m.store_failing.store(true, Ordering::Relaxed);
            }
        }
        result
    }
}

impl Core {
    /// Publishes a snapshot of the store for readers when one is due (right after a
    /// checkpoint, so it holds exactly what is committed). A failure is logged, not fatal.
    fn snapshot_if_due(&mut self) {
        let Some(every) = self.snapshot_every else {
            return;
        };
        if self.last_snapshot.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        let started = Instant::now();
        match crate::view::snapshot::publish(self.engine.store()) {
            Ok(path) => tracing::info!(
                path = %path.display(),
                millis = started.elapsed().as_millis() as u64,
                "snapshot published for readers"
            ),
            Err(e) => tracing::warn!("snapshot not published: {e}"),
        }
        self.last_snapshot = Some(Instant::now());
    }
}

/// Logs what went wrong with one input (the run goes on) and counts it.
fn log_problems(input: &str, digested: &Digested, metrics: &Metrics) {
    if let Some(e) = &digested.error {
        tracing::warn!(file = %input, "{e}");
        if digested.report.is_some() {
            metrics.error(ErrorKind::Damaged);
        }
    }
    if let Some(report) = &digested.report {
        if let Some(fatal) = &report.fatal {
            tracing::warn!(file = %input, "{fatal}; {} records before it were counted", report.records_ok);
            metrics.error(ErrorKind::Damaged);
        }
        for example in &report.examples {
            tracing::warn!(file = %input, "{example}");
        }
        let skipped = report.records_skipped();
        if skipped > 0 {
            tracing::warn!(file = %input, "{skipped} bad records skipped");
        }
    }
}

/// Where Insights go: the outputs asked for, and the log.
struct Sinks {
    outputs: crate::insight::Sinks,
    log: LogSink,
}

impl Sinks {
    fn open(options: &WatchOptions, metrics: Arc<Metrics>) -> Result<Sinks> {
        let outputs = Outputs {
            out: options.out.clone(),
            overwrite: false,
            quiet: options.quiet,
            insights_dir: options.insights_dir.clone(),
            unbuffered_stdout: true,
        };
        Ok(Sinks {
            outputs: outputs.open()?,
            log: LogSink {
                metrics,
                triggers: std::sync::Mutex::new(HashMap::new()),
            },
        })
    }

    fn as_dyn(&mut self) -> Vec<&mut dyn InsightSink> {
        self.outputs.as_dyn_with(&mut self.log)
    }
}

/// One log line and one metric per Insight written.
struct LogSink {
    metrics: Arc<Metrics>,
    /// The input whose reading produced each Insight not yet written (by eventID): the log
    /// names it, so an operator (or the latency benchmark) can tell what triggered an Insight.
    triggers: std::sync::Mutex<HashMap<String, String>>,
}

impl InsightSink for LogSink {
    fn write(&mut self, r: &InsightRecord) -> Result<(), SinkError> {
        let d = &r.insight_details;
        match d.state {
            InsightState::Start => self.metrics.insights_start.fetch_add(1, Ordering::Relaxed),
            InsightState::End => self.metrics.insights_end.fetch_add(1, Ordering::Relaxed),
        };
        let trigger = self
            .triggers
            .lock()
            .ok()
            .and_then(|mut t| t.remove(&r.event_id))
            .unwrap_or_else(|| "-".to_owned());
        tracing::info!(
            state = d.state.as_str(),
            insight_type = d.insight_type.as_str(),
            event_source = %d.event_source,
            event_name = %d.event_name,
            error_code = d.error_code.as_deref().unwrap_or("-"),
            account = %r.recipient_account_id,
            region = %r.aws_region,
            event_time = %r.event_time,
            baseline = d.insight_context.statistics.baseline.average,
            insight = d.insight_context.statistics.insight.average,
            trigger = %trigger,
            "Insight"
        );
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Exponential backoff: 1 s, 2 s, 4 s... up to a minute.
#[derive(Debug, Default)]
struct Backoff {
    attempt: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let secs = 1u64 << self.attempt.min(6);
        self.attempt += 1;
        Duration::from_secs(secs.min(60))
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// When a commit is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Commit {
    /// Whatever changed (at the end of a run).
    Now,
    /// Only when Insights wait to be written or a checkpoint is due: Insights leave at once,
    /// while plain progress is checkpointed every `--checkpoint-interval`.
    IfUseful,
}

/// Runs a step on a blocking thread with the core, and puts the core back.
async fn on_core<R, F>(slot: &mut Option<Core>, f: F) -> Result<R>
where
    R: Send + 'static,
    F: FnOnce(&mut Core) -> R + Send + 'static,
{
    let mut core = slot
        .take()
        .ok_or_else(|| anyhow!("the engine was lost after an earlier failure"))?;
    let (core, result) = tokio::task::spawn_blocking(move || {
        let r = f(&mut core);
        (core, r)
    })
    .await
    .map_err(|e| anyhow!("the engine thread failed: {e}"))?;
    *slot = Some(core);
    Ok(result)
}

/// Failed checkpoints in a row after which `watch` stops with an error, when the store (not a
/// sink) is what fails: sled refuses every write after a failed one, so only a new process can
/// go on, and a service manager (`Restart=on-failure`) starts one.
const MAX_STORE_FAILURES: u32 = 3;

/// The error `watch` stops with when its store fails.
fn store_failure(e: PipelineError) -> anyhow::Error {
    anyhow!(e).context(
        "the store failed; stopping so that a service manager restarts trailsight, which resumes from the last checkpoint",
    )
}

/// Commits, retrying with backoff while a sink fails, until it succeeds or a stop is asked
/// (then the last error is returned: the store still holds the previous checkpoint, and the
/// files since are read again next time). A store failure ends the run at once when sled has
/// failed an I/O operation (it will refuse every later write), else after
/// [`MAX_STORE_FAILURES`] failures in a row.
async fn commit_with_retry(
    slot: &mut Option<Core>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    when: Commit,
) -> Result<()> {
    let mut backoff = Backoff::default();
    let mut store_failures = 0;
    loop {
        let (result, sled_failed) = on_core(slot, move |c| {
            let result = match when {
                Commit::Now => c.commit(),
                Commit::IfUseful => c.commit_if_useful(),
            };
            (result, c.engine.store().has_failed())
        })
        .await?;
        match result {
            Ok(()) => return Ok(()),
            Err(e @ PipelineError::Store(_)) => {
                store_failures += 1;
                if sled_failed || store_failures >= MAX_STORE_FAILURES {
                    tracing::error!("checkpoint failed: {e}");
                    return Err(store_failure(e));
                }
                let wait = backoff.next();
                tracing::error!(
                    "checkpoint failed: {e}; retrying in {}s ({store_failures} of {MAX_STORE_FAILURES} attempts)",
                    wait.as_secs()
                );
                if *stop.borrow() {
                    return Err(anyhow!(e).context("the last checkpoint could not be written"));
                }
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Err(e) => {
                let wait = backoff.next();
                tracing::error!(
                    "checkpoint failed: {e}; retrying in {}s (nothing is lost: the work since the last checkpoint is kept in memory)",
                    wait.as_secs()
                );
                if *stop.borrow() {
                    return Err(anyhow!(e).context("the last checkpoint could not be written"));
                }
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Sets the stop flags on SIGINT or SIGTERM.
fn spawn_signals(stop_flag: Arc<AtomicBool>, tx: tokio::sync::watch::Sender<bool>) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: finishing the file in hand, then stopping"),
            _ = int.recv() => tracing::info!("SIGINT: finishing the file in hand, then stopping"),
        }
        stop_flag.store(true, Ordering::Relaxed);
        let _ = tx.send(true);
    });
    Ok(())
}

async fn follow(options: WatchOptions, core: Core) -> Result<WatchReport> {
    let stop_flag = Arc::new(AtomicBool::new(false));
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    spawn_signals(Arc::clone(&stop_flag), stop_tx)?;
    let metrics = Arc::clone(&core.metrics);
    if let Some(addr) = options.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr} for metrics"))?;
        tracing::info!("metrics on http://{addr}/metrics, health on http://{addr}/health");
        tokio::spawn(metrics::serve(listener, Arc::clone(&metrics)));
    }
    let mut slot = Some(core);
    // Insights an earlier process committed but may not have delivered go out first.
    let redelivered = on_core(&mut slot, |c| {
        let mut sinks = c.sinks.as_dyn();
        c.engine.redeliver(&mut sinks)
    })
    .await??;
    if redelivered > 0 {
        tracing::info!("delivered {redelivered} Insights committed before an interruption");
    }
    let ended = match &options.source {
        Source::Folder(root) => {
            follow_folder(&options, root, &mut slot, &stop_flag, &mut stop_rx).await?
        }
        Source::Stdin => follow_stdin(&options, &mut slot, &mut stop_rx).await?,
        Source::S3(url) => follow_s3(&options, url, &mut slot, &mut stop_rx).await?,
    };
    commit_with_retry(&mut slot, &mut stop_rx, Commit::Now).await?;
    let mut core = slot.ok_or_else(|| anyhow!("the engine was lost"))?;
    let summary = core.engine.take_summary();
    Ok(WatchReport {
        ended,
        input_failed: summary.input_failed(),
        summary,
    })
}

/// The day to start listing from: `--since`, else the day before the store's newest event.
fn since_day(since: Option<NaiveDate>, newest: Option<Minute>) -> Option<NaiveDate> {
    since.or_else(|| {
        newest
            .and_then(crate::series::minute_to_datetime)
            .map(|t| t.date_naive() - chrono::Days::new(1))
    })
}

async fn follow_folder(
    options: &WatchOptions,
    root: &Path,
    slot: &mut Option<Core>,
    stop_flag: &Arc<AtomicBool>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<Ended> {
    if !root.is_dir() {
        bail!("{} is not a folder", root.display());
    }
    let (wake_tx, mut wake_rx) = mpsc::channel::<()>(1);
    let watcher = {
        use notify::Watcher;
        let tx = wake_tx.clone();
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok() {
                let _ = tx.try_send(());
            }
        })
        .and_then(|mut w| w.watch(root, notify::RecursiveMode::Recursive).map(|()| w))
    };
    let _watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(
                "file-system notifications unavailable for {} ({e}); polling every {}s",
                root.display(),
                options.poll_every.as_secs_f64()
            );
            None
        }
    };
    drop(wake_tx);
    let mut folder = Some(Folder::new(root.to_path_buf(), options.settle));
    tracing::info!("following {}", root.display());
    let mut backoff = Backoff::default();
    loop {
        let mut f = folder.take().ok_or_else(|| anyhow!("folder state lost"))?;
        let floor = options.since;
        let (mut f, scan, failure) = on_core(slot, move |c| {
            let since = since_day(floor, c.engine.max_minute());
            // A key the store cannot answer for is passed over (not read twice), and the
            // failure stops the run below.
            let mut failure = None;
            let scan = f.scan(since, |key, size| match c.engine.ingested_size(key) {
                Ok(None) => Ingested::No,
                Ok(Some(s)) if s == size => Ingested::Yes,
                Ok(Some(_)) => Ingested::AtOtherSize,
                Err(e) => {
                    failure.get_or_insert(e);
                    Ingested::Yes
                }
            });
            (f, scan, failure)
        })
        .await?;
        if let Some(e) = failure {
            return Err(store_failure(e));
        }
        for p in &scan.problems {
            tracing::warn!("{p}");
        }
        let unsettled = scan.unsettled;
        if !scan.ready.is_empty() {
            tracing::debug!("{} new files", scan.ready.len());
            for file in &scan.ready {
                f.take(file);
            }
            let stop_flag = Arc::clone(stop_flag);
            let files = scan.ready;
            let result = on_core(slot, move |c| c.ingest_files(&files, &stop_flag)).await?;
            match result {
                Ok(retry) => {
                    for file in &retry {
                        f.release(file);
                    }
                    backoff.reset();
                }
                Err(e) => {
                    tracing::error!("{e}");
                }
            }
        }
        folder = Some(f);
        commit_with_retry(slot, stop, Commit::IfUseful).await?;
        if *stop.borrow() {
            return Ok(Ended::Signal);
        }
        if options.once && !unsettled {
            return Ok(Ended::InputEnded);
        }
        let wait = if unsettled {
            options.settle.max(Duration::from_millis(200))
        } else {
            options.poll_every
        };
        tokio::select! {
            _ = stop.changed() => return Ok(Ended::Signal),
            _ = wake_rx.recv(), if _watcher.is_some() => {
                // Let a burst of events (a sync writing many files) gather into one scan.
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The identity an object is recorded under: its key from `AWSLogs/` on, as for a file of a
/// synced copy (so a store built by `score` over `aws s3 sync` output continues on the bucket).
fn object_ingest_key(bucket: &str, key: &str) -> String {
    match key.find("AWSLogs/") {
        Some(i) if i == 0 || key[..i].ends_with('/') => key[i..].to_owned(),
        _ => format!("s3://{bucket}/{key}"),
    }
}

/// Attempts at fetching one object (retryable errors only) before it is left for a restart.
const FETCH_ATTEMPTS: u32 = 4;

async fn follow_s3(
    options: &WatchOptions,
    url: &str,
    slot: &mut Option<Core>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<Ended> {
    let location: s3::S3Location = url.parse()?;
    let bucket = location.bucket.clone();
    let mut source = s3::S3Source::connect(
        location,
        s3::S3Options {
            endpoint_url: options.endpoint_url.clone(),
            region: options.region.clone(),
            max_object_bytes: options.limits.max_decompressed_bytes,
        },
    )
    .await?;
    let metrics = slot
        .as_ref()
        .map(|c| Arc::clone(&c.metrics))
        .ok_or_else(|| anyhow!("the engine was lost"))?;
    tracing::info!("following {url}");
    let mut backoff = Backoff::default();
    let mut listed_once = false;
    loop {
        let newest = on_core(slot, |c| c.engine.max_minute()).await?;
        let today = chrono::Utc::now().date_naive();
        let since = since_day(options.since, newest).unwrap_or(today - chrono::Days::new(8));
        let objects = match source.poll(since, today).await {
            Ok(objects) => {
                backoff.reset();
                listed_once = true;
                objects
            }
            Err(e) => {
                metrics.error(ErrorKind::Source);
                if !listed_once && !e.is_retryable() {
                    return Err(anyhow!(e).context(format!("listing {url}")));
                }
                let wait = backoff.next();
                tracing::error!("listing {url} failed: {e}; retrying in {}s", wait.as_secs());
                tokio::select! {
                    _ = stop.changed() => return Ok(Ended::Signal),
                    _ = tokio::time::sleep(wait) => continue,
                }
            }
        };
        let todo = on_core(slot, {
            let bucket = bucket.clone();
            move |c| -> Result<Vec<(s3::S3Object, String)>, PipelineError> {
                let mut todo = Vec::new();
                for o in objects {
                    let key = object_ingest_key(&bucket, &o.key);
                    if !c.engine.is_ingested(&key)? {
                        todo.push((o, key));
                    }
                }
                Ok(todo)
            }
        })
        .await?;
        let todo = match todo {
            Ok(todo) => todo,
            Err(e) => return Err(store_failure(e)),
        };
        if !todo.is_empty() {
            tracing::debug!("{} new objects", todo.len());
        }
        for (object, ingest_key) in todo {
            if *stop.borrow() {
                break;
            }
            let display = source.display(&object.key);
            let mut attempt = 0;
            let content = loop {
                attempt += 1;
                match source.fetch(&object.key).await {
                    Ok(bytes) => break Some(bytes),
                    Err(e) if e.is_retryable() && attempt < FETCH_ATTEMPTS => {
                        let wait = Duration::from_secs(1 << attempt);
                        tracing::warn!("{e}; retrying in {}s", wait.as_secs());
                        tokio::time::sleep(wait).await;
                    }
                    Err(e) => {
                        metrics.error(ErrorKind::Read);
                        tracing::error!(
                            "{e}; the object is left for the next start of watch (not recorded as ingested)"
                        );
                        break None;
                    }
                }
            };
            let Some(content) = content else { continue };
            let delivery = object.delivery_minute;
            let result = on_core(slot, move |c| {
                c.ingest_buffer(&display, Some(&ingest_key), delivery, &content, 1)
            })
            .await?;
            if let Err(e) = result {
                tracing::error!("{e}");
            }
        }
        commit_with_retry(slot, stop, Commit::IfUseful).await?;
        if *stop.borrow() {
            return Ok(Ended::Signal);
        }
        if options.once {
            return Ok(Ended::InputEnded);
        }
        tokio::select! {
            _ = stop.changed() => return Ok(Ended::Signal),
            _ = tokio::time::sleep(options.poll_every) => {}
        }
    }
}

async fn follow_stdin(
    options: &WatchOptions,
    slot: &mut Option<Core>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<Ended> {
    let limits = stdin::ChunkLimits {
        max_line: usize::try_from(options.limits.max_decompressed_bytes.min(64 << 20))
            .unwrap_or(64 << 20),
        max_lines: 5_000,
        max_wait: Duration::from_secs(1),
    };
    let (tx, mut rx) = mpsc::channel(4);
    let reader = tokio::spawn(stdin::read_chunks(tokio::io::stdin(), limits, tx));
    tracing::info!("reading JSON lines from standard input");
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(Ended::Signal),
            chunk = rx.recv() => {
                let Some(chunk) = chunk else { break };
                // The content holds one line per input line from its first on (skipped lines
                // left empty); oversized lines before it are not in it.
                let content_lines = chunk.content.iter().filter(|&&b| b == b'\n').count() as u64;
                let last = chunk.first_line + content_lines.max(1) - 1;
                let last = chunk.oversized.iter().map(|&(line, _)| line).fold(last, u64::max);
                let display = format!("<stdin> lines {}-{}", chunk.first_line, last);
                for (line, bytes) in &chunk.oversized {
                    tracing::warn!(input = "<stdin>", line, bytes, "line longer than the limit; skipped");
                }
                let result = on_core(slot, move |c| {
                    for _ in &chunk.oversized {
                        c.metrics.error(ErrorKind::Damaged);
                    }
                    if chunk.content.is_empty() {
                        return Ok(());
                    }
                    c.ingest_buffer(&display, None, None, &chunk.content, chunk.first_line)
                })
                .await?;
                if let Err(e) = result {
                    tracing::error!("{e}");
                }
                // Standard input cannot be read again: what was absorbed is committed as soon
                // as no more input is waiting.
                if rx.is_empty() {
                    commit_with_retry(slot, stop, Commit::Now).await?;
                }
            }
        }
    }
    match reader.await {
        Ok(Ok(lines)) => tracing::info!("standard input ended after {lines} lines"),
        Ok(Err(e)) => tracing::error!("reading standard input failed: {e}"),
        Err(e) => tracing::error!("the standard input reader failed: {e}"),
    }
    Ok(Ended::InputEnded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Write;

    fn record(id: &str) -> InsightRecord {
        let line = format!(
            "{{\"eventVersion\":\"1.07\",\"eventTime\":\"2024-03-12T01:14:00Z\",\"awsRegion\":\"us-east-1\",\"eventID\":\"{id}\",\"eventType\":\"AwsCloudTrailInsight\",\"recipientAccountId\":\"111122223333\",\"sharedEventID\":\"s-{id}\",\"insightDetails\":{{\"state\":\"Start\",\"eventSource\":\"iam.amazonaws.com\",\"eventName\":\"CreateAccessKey\",\"insightType\":\"ApiCallRateInsight\",\"insightContext\":{{\"statistics\":{{\"baseline\":{{\"average\":0.1}},\"insight\":{{\"average\":8}},\"insightDuration\":1}},\"attributions\":[]}}}},\"eventCategory\":\"Insight\"}}"
        );
        serde_json::from_str(&line).unwrap()
    }

    #[test]
    fn appended_lines_survive_a_torn_write_and_are_never_repeated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("insights.jsonl");
        {
            let mut sink = AppendJsonLines::open(&path).unwrap();
            sink.write(&record("a")).unwrap();
            sink.write(&record("b")).unwrap();
            sink.finish().unwrap();
        }
        // A crash in the middle of writing "c".
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"eventVersion\":\"1.07\",\"eventTi")
            .unwrap();
        drop(f);
        let mut sink = AppendJsonLines::open(&path).unwrap();
        // Redelivery of the outbox: a and b are there already, c is not.
        for id in ["a", "b", "c"] {
            sink.write(&record(id)).unwrap();
        }
        sink.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let ids: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["eventID"].to_string())
            .collect();
        assert_eq!(ids, ["\"a\"", "\"b\"", "\"c\""]);
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..9).map(|_| b.next().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        b.reset();
        assert_eq!(b.next().as_secs(), 1);
    }
}
