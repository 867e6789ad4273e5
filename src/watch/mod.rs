//! Continuous mode: follows a trail as its log files land (a local folder, an S3 bucket, or JSON
//! lines on standard input) and writes Insights within a minute or two, through the same engine,
//! store and records as batch scoring.
//!
//! It is the driver of `score` ([`crate::pipeline::driver`]) run on a following source
//! ([`crate::source`]): tokio runs the I/O around it (listing, fetching, signals, the metrics
//! endpoint), which the source blocks on from the driver's reading thread. State is committed at checkpoints (every few seconds while input
//! flows, after every round of input, and on SIGINT/SIGTERM after the file in hand), and
//! Insights leave only after the checkpoint that holds them is durable, so a process killed at
//! any point resumes without losing or repeating a record.

pub mod metrics;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::NaiveDate;

use crate::detect::Profile;
use crate::ingest::ReadLimits;
use crate::pipeline::driver::{drive, Commits, DriverOptions, Observer};
use crate::pipeline::{Digested, Engine, OnError, PipelineError};
use crate::sink::log::LogSink;
pub use crate::sink::AppendJsonLines;
use crate::sink::{InsightSink, Outputs};
use crate::source::{self, Stop, Trouble};
use metrics::{ErrorKind, Metrics};

/// What `watch` follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    /// A local folder in S3 layout.
    Folder(PathBuf),
    /// `s3://bucket/prefix`.
    S3(String),
    /// `sqs://QUEUE_URL`: the S3 event notifications of a trail's bucket.
    Sqs(String),
    /// JSON lines on standard input (`-`).
    Stdin,
}

impl Followed {
    /// Reads a source as given on the command line.
    pub fn parse(text: &str) -> Followed {
        if text == "-" {
            Followed::Stdin
        } else if text.starts_with("s3://") {
            Followed::S3(text.to_owned())
        } else if text.starts_with("sqs://") {
            Followed::Sqs(text.to_owned())
        } else {
            Followed::Folder(PathBuf::from(text))
        }
    }
}

/// Settings of a `watch` run.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// What to follow.
    pub source: Followed,
    /// The sled store.
    pub store: PathBuf,
    /// Detector profile.
    pub profile: Profile,
    /// Suppression rules ([`crate::suppress`]), read again when the file changes.
    pub suppression: Option<PathBuf>,
    /// Append Insights as JSON lines to this file (None: standard output).
    pub out: Option<PathBuf>,
    /// Also write Insights in CloudTrail's S3 layout under this folder.
    pub insights_dir: Option<PathBuf>,
    /// Further sinks, `KIND[:ARG]` ([`crate::sink::open_to`]).
    pub to: Vec<String>,
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
    if let Some(rules) = &options.suppression {
        engine.set_suppression_file(rules)?;
    }
    let metrics = Metrics::new();
    let triggers = Arc::new(Mutex::new(HashMap::new()));
    let mut sinks = Sinks::open(&options, Arc::clone(&metrics), Arc::clone(&triggers))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let stop = Stop::new();
    runtime.block_on(async {
        spawn_signals(stop.clone())?;
        if let Some(addr) = options.metrics_addr {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on {addr} for metrics"))?;
            tracing::info!("metrics on http://{addr}/metrics, health on http://{addr}/health");
            tokio::spawn(metrics::serve(listener, Arc::clone(&metrics)));
        }
        anyhow::Ok(())
    })?;
    let mut followed = open_source(&options, &engine, &stop, runtime.handle())?;
    let mut observer = Watched {
        metrics,
        triggers,
        snapshot_every: options.snapshot_every,
        last_snapshot: None,
    };
    let driver = DriverOptions {
        limits: options.limits,
        on_error: OnError::Continue,
        threads: None,
        finalize: false,
        checkpoint_every: options.checkpoint_every,
        early_rises: options.early_rises,
        commits: Commits::Retry,
    };
    let ending = drive(
        &mut engine,
        followed.as_mut(),
        &driver,
        &mut sinks.as_dyn(),
        &mut observer,
        &stop,
    )?;
    let summary = engine.take_summary();
    Ok(WatchReport {
        ended: if ending.stopped {
            Ended::Signal
        } else {
            Ended::InputEnded
        },
        input_failed: summary.input_failed(),
        summary,
    })
}

/// The source `options` name, following from where the store left off.
fn open_source(
    options: &WatchOptions,
    engine: &Engine,
    stop: &Stop,
    runtime: &tokio::runtime::Handle,
) -> Result<Box<dyn source::Source>> {
    let store = engine.store().clone();
    let following = source::Following {
        poll_every: options.poll_every,
        since: options.since,
        once: options.once,
    };
    // S3 (listed, or named by notifications) is reached the same way.
    let bucket = || source::s3::FollowOptions {
        s3: source::s3::S3Options {
            endpoint_url: options.endpoint_url.clone(),
            region: options.region.clone(),
            max_object_bytes: options.limits.max_decompressed_bytes,
        },
        following: following.clone(),
    };
    Ok(match &options.source {
        Followed::Folder(root) => Box::new(source::folder::FollowFolder::open(
            root.clone(),
            store,
            source::folder::FollowOptions {
                settle: options.settle,
                following: following.clone(),
            },
            stop.clone(),
            runtime.clone(),
        )?),
        Followed::S3(url) => Box::new(source::s3::FollowS3::open(
            url,
            store,
            bucket(),
            stop.clone(),
            runtime.clone(),
        )?),
        Followed::Sqs(address) => Box::new(source::sqs::FollowSqs::open(
            address,
            store,
            bucket(),
            stop.clone(),
            runtime.clone(),
        )?),
        Followed::Stdin => Box::new(source::stdin::FollowStdin::open(
            usize::try_from(options.limits.max_decompressed_bytes.min(64 << 20))
                .unwrap_or(64 << 20),
            stop.clone(),
            runtime.clone(),
        )),
    })
}

/// What `watch` keeps of a run: metrics, the log, which input triggered each Insight, and
/// snapshots for readers.
struct Watched {
    metrics: Arc<Metrics>,
    /// Shared with the [`LogSink`], which names the trigger in each Insight's log line.
    triggers: Arc<Mutex<HashMap<String, String>>>,
    /// Publish a snapshot for readers this often, and when the last one was published.
    snapshot_every: Option<Duration>,
    last_snapshot: Option<Instant>,
}

impl Observer for Watched {
    fn trouble(&mut self, trouble: Trouble) {
        self.metrics.error(match trouble {
            Trouble::Source => ErrorKind::Source,
            Trouble::Read => ErrorKind::Read,
            Trouble::Damaged => ErrorKind::Damaged,
        });
    }

    fn read(&mut self, display: &str, digested: &Digested) {
        log_problems(display, digested, &self.metrics);
        self.metrics.files.fetch_add(1, Ordering::Relaxed);
        self.metrics.add_records(digested.digest.records);
    }

    fn absorbed(&mut self, display: &str, engine: &Engine, found_before: usize) {
        if let Ok(mut triggers) = self.triggers.lock() {
            for r in engine.uncommitted_insights().skip(found_before) {
                triggers.insert(r.event_id.clone(), display.to_owned());
            }
        }
        let m = &self.metrics;
        m.late.store(engine.stats().late, Ordering::Relaxed);
        if let Some(max) = engine.max_minute() {
            m.newest_event_minute.store(max, Ordering::Relaxed);
        }
        if let Some(f) = engine.final_before() {
            m.final_before_minute.store(f, Ordering::Relaxed);
        }
    }

    fn committed(&mut self, engine: &Engine, result: &Result<(), PipelineError>) {
        let m = &self.metrics;
        match result {
            Ok(()) => {
                m.checkpoints.fetch_add(1, Ordering::Relaxed);
                m.last_checkpoint_unix
                    .store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
                m.store_failing.store(false, Ordering::Relaxed);
                m.sink_failing.store(false, Ordering::Relaxed);
                m.open_episodes
                    .store(engine.open_episodes(), Ordering::Relaxed);
                tracing::debug!("checkpoint committed");
                self.snapshot_if_due(engine);
            }
            Err(PipelineError::Sink(_)) => {
                m.error(ErrorKind::Sink);
                m.sink_failing.store(true, Ordering::Relaxed);
            }
            Err(_) => {
                m.error(ErrorKind::Store);
                m.store_failing.store(true, Ordering::Relaxed);
            }
        }
    }
}

impl Watched {
    /// Publishes a snapshot of the store for readers when one is due (right after a
    /// checkpoint, so it holds exactly what is committed). A failure is logged, not fatal.
    fn snapshot_if_due(&mut self, engine: &Engine) {
        let Some(every) = self.snapshot_every else {
            return;
        };
        if self.last_snapshot.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        let started = Instant::now();
        match crate::view::snapshot::publish(engine.store()) {
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
    fn open(
        options: &WatchOptions,
        metrics: Arc<Metrics>,
        triggers: Arc<Mutex<HashMap<String, String>>>,
    ) -> Result<Sinks> {
        let outputs = Outputs {
            out: options.out.clone(),
            overwrite: false,
            quiet: options.quiet,
            insights_dir: options.insights_dir.clone(),
            unbuffered_stdout: true,
            to: options.to.clone(),
            state_dir: Some(options.store.clone()),
        };
        Ok(Sinks {
            outputs: outputs.open()?,
            log: LogSink { metrics, triggers },
        })
    }

    fn as_dyn(&mut self) -> Vec<&mut dyn InsightSink> {
        self.outputs.as_dyn_with(&mut self.log)
    }
}

/// Sets the stop on SIGINT or SIGTERM.
fn spawn_signals(stop: Stop) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: finishing the file in hand, then stopping"),
            _ = int.recv() => tracing::info!("SIGINT: finishing the file in hand, then stopping"),
        }
        stop.set();
    });
    Ok(())
}
