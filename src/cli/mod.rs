//! The command line: flags are parsed once by clap, checked into a plan (a profile, sinks, a
//! store), and handed to the library. Nothing here knows how detection works; it only turns a
//! user's words into options and the library's results into output and an exit status.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

mod suppress;
mod verify;
mod views;

use crate::detect::Profile;
use crate::generate::{generate, GenerateOptions};
use crate::ingest::ReadLimits;
use crate::insight::Outputs;
use crate::pipeline::{Engine, OnError, RunOptions, RunSummary};

/// Exit status: every input was read and scored.
pub(crate) const EXIT_OK: u8 = 0;
/// Exit status: the run could not be done (bad option, unusable store or profile, I/O failure).
pub const EXIT_FATAL: u8 = 1;
/// Exit status: the run finished, but some input could not be read (unreadable or damaged files,
/// or bad records skipped); the summary on standard error lists them.
pub const EXIT_INPUT_FAILED: u8 = 2;

/// trailsight: CloudTrail Insights, computed by you, over any archive, at any time.
///
/// It counts write management API calls and API errors per API per minute, learns 7-day
/// baselines by hour of day, and writes AWS-format Insights events (Start and End) whenever a
/// rate leaves its statistical bounds.
#[derive(Debug, Parser)]
#[command(name = "trailsight", version, about, long_about = None, after_help = EXIT_HELP)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

const EXIT_HELP: &str = "Example: trailsight generate --out demo --days 9 --seed 7 && trailsight score demo --store demo.db\n\nExit status: 0 all input read; 1 the run could not be done; \
2 the run finished but some input could not be read (see the summary).";

#[derive(Debug, Subcommand)]
enum Command {
    /// Score CloudTrail logs: read them, update the baselines in the store, write Insights.
    ///
    /// Inputs are files, folders (walked recursively, e.g. a trail's S3 archive copied with
    /// `aws s3 sync`), or `-` for standard input. Formats are detected per file: `{"Records":[...]}`
    /// (gzipped or not), JSON arrays, JSON lines, EventBridge envelopes, CloudWatch Logs
    /// subscription payloads, Security Lake's OCSF Parquet. Files already ingested into the store
    /// are skipped, so re-running over a growing archive only reads the new files.
    Score(ScoreArgs),
    /// Follow a live trail: read new log files as they land and write Insights within minutes.
    ///
    /// SOURCE is a local folder in S3 layout that the trail's files land in (synced or mounted;
    /// file-system notifications, polling as fallback), `s3://bucket/prefix` (the bucket itself,
    /// standard AWS credential chain), `sqs://QUEUE_URL` (the bucket's S3 event notifications,
    /// each message deleted once its objects are committed), or `-` for JSON lines on standard
    /// input. State is
    /// committed to the store every few seconds and on SIGINT/SIGTERM; a restarted process
    /// resumes where the last checkpoint left it, without losing or repeating an Insight.
    Watch(WatchArgs),
    /// Write a synthetic trail (S3 layout) with injected incidents and their labels.
    Generate(GenerateArgs),
    /// Measure detection quality: score a labelled archive from an empty temporary store and
    /// compare the Insights with the labels (found, missed, false Insights per 1,000
    /// series-days, delay), per incident kind and in total.
    Eval(EvalArgs),
    /// Print the stored per-minute write-call counts (ApiCallRateInsight series) as CSV:
    /// account,region,eventSource,eventName,minute (Unix minutes, UTC),calls. Used by
    /// benches/e2e.py to check the counts against DuckDB's.
    Counts(CountsArgs),
    /// List the series a store knows (tab-separated), with their calls and Insight episodes in
    /// the range (default: the last 7 days of data).
    Series(views::SeriesArgs),
    /// Draw a series' rate against its baseline's expected rate and bounds, with the Insight
    /// episodes shaded (PNG or SVG); or, with --overview, small multiples of the series with
    /// the most unusual activity.
    Plot(views::PlotArgs),
    /// Write one self-contained HTML page listing the Insights, each with its plot, sortable.
    Report(views::ReportArgs),
    /// Export per-minute counts, baselines (expected value and bounds) or the Insights as a
    /// flat table for notebooks and BI tools: Parquet or CSV by the output's extension.
    Export(views::ExportArgs),
    /// Check CloudTrail log file integrity over a local copy of the bucket, as `aws cloudtrail
    /// validate-logs` does: digest signatures, the digest chain (deleted or changed digests),
    /// and every log file's hash (missing, altered, or listed by no digest). See docs/verify.md.
    Verify(verify::VerifyArgs),
    /// Look after the store: `store check` verifies every value and invariant.
    Store(StoreArgs),
    /// Say an Insight is normal: add a rule matching it (its API, account, region and the
    /// principal that made most of its calls) to a suppression rules file, which `score` and
    /// `watch` read with --suppress. Matching Insights are then stored and reported as
    /// suppressed but sent to no output, and their minutes become baseline.
    Suppress(suppress::SuppressArgs),
}

#[derive(Debug, Args)]
struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Verify a store: every value's checksum and decoding, contiguous ids, pending cells after
    /// the final minute, the outbox. Exit status 0 healthy, 2 damaged (the report says what
    /// and how to rebuild), 1 the check could not run (not a store, in use).
    Check {
        /// The store to check (stop any `watch` on it first: sled lets one process open it).
        #[arg(long, default_value = "trailsight.db", value_name = "DIR")]
        store: PathBuf,
    },
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// The labelled archive (files or folders, as for `score`).
    #[arg(value_name = "ARCHIVE", required_unless_present = "nab")]
    inputs: Vec<PathBuf>,
    /// Score the NAB corpus in DIR (`data/`, `labels/`, `config/`, `results/`) with NAB's rules
    /// and its three profiles: trailsight's gauge mode on realAWSCloudwatch beside the
    /// published detectors (see docs/detection-benchmarks.md).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["inputs", "labels"])]
    nab: Option<PathBuf>,
    /// With --nab: the category of `data/` to score (e.g. `realKnownCause`,
    /// `artificialWithAnomaly`). Default: realAWSCloudwatch.
    #[arg(long, value_name = "NAME")]
    nab_category: Option<String>,
    /// The labels (the format `generate` writes; see datasets/README.md). Default:
    /// ARCHIVE/labels.json.
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
    /// Detector profile (TOML); settings it omits keep the built-in values.
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
    /// A Start up to this many minutes before a labelled start still finds it.
    #[arg(long, default_value_t = crate::eval::DEFAULT_TOLERANCE_MINUTES, value_name = "MINUTES")]
    tolerance: i64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = EvalFormat::Table)]
    format: EvalFormat,
    /// Same as --format json.
    #[arg(long)]
    json: bool,
    /// Worker threads for reading files (default: one per core).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

/// How `eval` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum EvalFormat {
    /// A table per kind, then the misses and false Insights.
    Table,
    /// One JSON document.
    Json,
}

/// The store, the profile and the S3-layout output, shared by `score` and `watch` (which
/// continue the same store).
#[derive(Debug, Args)]
struct EngineArgs {
    /// The sled store holding baselines, counts and state between runs.
    #[arg(long, default_value = "trailsight.db", value_name = "DIR")]
    store: PathBuf,
    /// Also write Insights in CloudTrail's S3 layout under this folder
    /// (AWSLogs/<account>/CloudTrail-Insight/<region>/YYYY/MM/DD/*.json.gz).
    #[arg(long, value_name = "DIR")]
    insights_dir: Option<PathBuf>,
    /// Also send Insights to this sink (repeatable): `null` (count and drop), `webhook:URL`
    /// (POST each record), `slack:URL`, `teams:URL` (a message people read), `sns:TOPIC_ARN`,
    /// `eventbridge:BUS`, `securityhub:[ACCOUNT]` (ASFF findings), `ocsf:FILE` (OCSF Detection
    /// Findings). Give a URL as `env:VARIABLE` or `file:PATH` to keep it secret; see
    /// docs/sinks.md.
    #[arg(long = "to", value_name = "KIND[:ARG]")]
    to: Vec<String>,
    /// Detector profile (TOML); settings it omits keep the built-in values (models/default.toml).
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
    /// Days of per-minute counts to keep in the store for plots, exports and reports, or
    /// `all` (never less than the baseline window plus a day, which detection reads back).
    #[arg(long, default_value = "35", value_name = "DAYS|all", value_parser = parse_retain_days)]
    retain_days: RetainDays,
    /// Suppression rules (TOML, `[[rule]]` each; see docs/suppression.md): a matching Insight
    /// is stored and shown in the report as suppressed but sent to no output, and its minutes
    /// become baseline. `trailsight suppress` writes rules from an Insight's eventID.
    #[arg(long, value_name = "FILE")]
    suppress: Option<PathBuf>,
}

/// `--retain-days`: a number of days, or all.
#[derive(Debug, Clone, Copy)]
struct RetainDays(Option<i64>);

impl RetainDays {
    fn minutes(self) -> Option<i64> {
        self.0.map(|d| d * crate::series::MINUTES_PER_DAY)
    }
}

fn parse_retain_days(text: &str) -> Result<RetainDays, String> {
    if text.eq_ignore_ascii_case("all") {
        return Ok(RetainDays(None));
    }
    match text.parse::<i64>() {
        Ok(d) if (1..=36_500).contains(&d) => Ok(RetainDays(Some(d))),
        _ => Err("expected a number of days (1 to 36500) or `all`".into()),
    }
}

impl EngineArgs {
    fn profile(&self) -> Result<Profile> {
        Ok(match &self.profile {
            Some(path) => Profile::load(path)?,
            None => Profile::builtin(),
        })
    }
}

#[derive(Debug, Args)]
struct WatchArgs {
    /// A folder, `s3://bucket/prefix`, `sqs://QUEUE_URL` (S3 event notifications), or `-` (JSON
    /// lines on standard input).
    #[arg(value_name = "SOURCE")]
    source: String,
    #[command(flatten)]
    engine: EngineArgs,
    /// Append Insights as JSON lines to this file (kept across restarts; default: standard
    /// output).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Serve Prometheus metrics on /metrics and a health check on /health.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Log level on standard error.
    #[arg(long, default_value = "info", value_parser = ["error", "warn", "info", "debug", "trace"])]
    log_level: String,
    /// Seconds between looks for new files (S3 default 30; folders are also woken by
    /// file-system notifications, default 10; SQS: the long poll's wait, at most 20).
    #[arg(long, value_name = "SECS")]
    poll_interval: Option<f64>,
    /// Seconds a file must stay unmodified before it is read (a file still being copied is
    /// not read half-written).
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    settle: f64,
    /// Checkpoint at least this often while input flows, in seconds.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    checkpoint_interval: f64,
    /// Publish a consistent copy of the store in STORE/snapshot every this many seconds, for
    /// `plot`, `report`, `export` and `series` while this process holds the store (0: never).
    #[arg(long, default_value_t = 300.0, value_name = "SECS")]
    snapshot_interval: f64,
    /// Read what is there now, commit, and exit (for cron-style use and tests).
    #[arg(long)]
    once: bool,
    /// Write a rise's Start only once its minutes are final (as `score` does), instead of as
    /// soon as the partial counts break the bound.
    #[arg(long)]
    wait_for_final: bool,
    /// S3-compatible endpoint (MinIO, moto, LocalStack...); with sqs://, the endpoint of both
    /// SQS and S3.
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,
    /// AWS region of the bucket (default: the standard chain, e.g. AWS_REGION; with sqs://, the
    /// queue URL's region, then each notification's).
    #[arg(long)]
    region: Option<String>,
    /// Earliest day (YYYY-MM-DD, UTC) of files to read; default: the day before the store's
    /// newest event, or for S3 on a new store the 8 days before today.
    #[arg(long, value_name = "DATE")]
    since: Option<chrono::NaiveDate>,
    /// Largest decompressed size accepted per file, in bytes.
    #[arg(long, default_value_t = 1 << 30, value_name = "BYTES")]
    max_file_size: u64,
    /// Do not print Insights to standard output when no --out is given.
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct CountsArgs {
    /// The sled store written by `score`.
    #[arg(long, default_value = "trailsight.db", value_name = "DIR")]
    store: PathBuf,
}

#[derive(Debug, Args)]
struct ScoreArgs {
    /// Files, folders or `-` (standard input) to read.
    #[arg(required_unless_present = "aggregates", value_name = "INPUT")]
    inputs: Vec<PathBuf>,
    /// Score aggregate tables instead of logs: the folder or `s3://bucket/prefix` that
    /// scale-out/spark/aggregate.py or the Athena queries of scale-out/athena/ wrote (per-minute
    /// counts, attributions and
    /// activity, Parquet, partitioned by delivery day; docs/scale-out.md). New days continue
    /// from the stored state, as new files do.
    #[arg(long, value_name = "PATH", conflicts_with = "inputs")]
    aggregates: Option<String>,
    /// With --aggregates: score only shard I of N (from 0), the accounts whose id hashes to I
    /// (FNV-1a modulo N); run each shard into its own store (docs/scale-out.md, "Sharding").
    #[arg(long, value_name = "I/N", requires = "aggregates")]
    shard: Option<crate::source::aggregates::Shard>,
    #[command(flatten)]
    engine: EngineArgs,
    /// Write Insights as JSON lines to this file (default: standard output). An existing
    /// non-empty file is refused unless --append or --overwrite says what to do with it.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Add to an existing --out file; Insights it already holds (same eventID) are not written
    /// again, so re-running after a crash or over a grown archive completes the file.
    #[arg(long, requires = "out", conflicts_with = "overwrite")]
    append: bool,
    /// Replace an existing --out file (its Insights are lost).
    #[arg(long, requires = "out")]
    overwrite: bool,
    /// What to do when a file cannot be read or parsed.
    #[arg(long, value_enum, default_value_t = OnError::Continue)]
    on_error: OnError,
    /// Worker threads for reading files (default: one per core).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Largest decompressed size accepted per file, in bytes (protects against gzip bombs).
    #[arg(long, default_value_t = 1 << 30, value_name = "BYTES")]
    max_file_size: u64,
    /// Keep the last minutes (the allowed lateness) pending for the next run instead of treating
    /// the input as complete: use this when scoring an archive that is still growing.
    #[arg(long)]
    keep_pending: bool,
    /// Do not draw a progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Do not print Insights to standard output when no --out is given.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    verify: verify::ScoreVerifyArgs,
}

#[derive(Debug, Args)]
struct GenerateArgs {
    /// Folder to write the trail into (created).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Days of traffic.
    #[arg(long, default_value_t = 9)]
    days: u32,
    /// Random seed: the same seed and options give byte-identical output.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Multiplies every background rate (about 1.1 million records for 9 days at scale 4).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Background traffic only, no injected incident.
    #[arg(long)]
    no_incidents: bool,
    /// Incidents start no earlier than this many days into the trail (default: 8, after a full
    /// week of baseline, or the last day of a shorter trail).
    #[arg(long)]
    incident_after_days: Option<u32>,
    /// Inject the scenario suite (every kind the evaluation covers, hard ones included, and
    /// windows that must stay silent) instead of the five demo incidents; needs at least 9
    /// days from a Monday (the default start).
    #[arg(long, conflicts_with = "no_incidents")]
    scenarios: bool,
    /// Background traffic: `default` (Poisson counts on a smooth UTC office curve) or
    /// `realistic` (CI/IaC sessions, cron jobs, local office hours across a DST change, a
    /// holiday, a new API, a step change, growth, throttling; labelled as behaviours). See
    /// datasets/README.md.
    #[arg(long, value_enum, default_value_t = TrafficArg::Default)]
    traffic: TrafficArg,
    /// IANA time zone of the people's office hours (realistic traffic).
    #[arg(long, default_value = crate::generate::DEFAULT_TIMEZONE, value_name = "ZONE")]
    timezone: String,
    /// A local holiday (YYYY-MM-DD), a weekday at weekend level (realistic traffic; repeat for
    /// several). Default: one weekday drawn from the seed.
    #[arg(long = "holiday", value_name = "DATE")]
    holidays: Vec<chrono::NaiveDate>,
    /// First day of the trail (YYYY-MM-DD, UTC midnight). Default 2024-03-04, a Monday: a
    /// 10-day trail crosses the US daylight-saving change of 2024-03-10.
    #[arg(long, value_name = "DATE")]
    start: Option<chrono::NaiveDate>,
}

/// The `--traffic` choices of `generate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TrafficArg {
    /// Poisson counts on a smooth UTC office-hours curve.
    Default,
    /// Automation, cron, local office hours, changes, throttling (see datasets/README.md).
    Realistic,
}

/// Runs the command line and returns the process exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("trailsight: error: {e:#}");
            ExitCode::from(EXIT_FATAL)
        }
    }
}

fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Score(args) => score(args),
        Command::Watch(args) => watch(args),
        Command::Eval(args) => eval(args),
        Command::Counts(args) => counts(args),
        Command::Series(args) => views::series(args),
        Command::Plot(args) => views::plot(args),
        Command::Report(args) => views::report(args),
        Command::Export(args) => views::export(args),
        Command::Verify(args) => verify::verify(args),
        Command::Suppress(args) => suppress::suppress(args),
        Command::Store(StoreArgs {
            command: StoreCommand::Check { store },
        }) => store_check(&store),
        Command::Generate(args) => {
            if args.days == 0 {
                bail!("--days must be at least 1");
            }
            if !(args.scale.is_finite() && args.scale > 0.0) {
                bail!("--scale must be a positive number");
            }
            let mut opts = GenerateOptions::new(args.out.clone(), args.days, args.seed);
            opts.scale = args.scale;
            opts.incidents = !args.no_incidents;
            opts.scenarios = args.scenarios;
            opts.traffic = match args.traffic {
                TrafficArg::Default => crate::generate::Traffic::Default,
                TrafficArg::Realistic => crate::generate::Traffic::Realistic,
            };
            opts.timezone = args.timezone.clone();
            opts.holidays = args.holidays.clone();
            if let Some(day) = args.start {
                opts.start = day
                    .and_hms_opt(0, 0, 0)
                    .map(|t| t.and_utc().timestamp().div_euclid(60))
                    .context("--start is not a valid date")?;
            }
            opts.incident_after_days = args
                .incident_after_days
                .unwrap_or_else(|| 8.min(args.days.saturating_sub(1)));
            let summary = generate(&opts)
                .with_context(|| format!("generating a trail into {}", args.out.display()))?;
            eprintln!(
                "wrote {} files, {} records ({} duplicates, {} late), {} incidents; labels in {}",
                summary.files,
                summary.records,
                summary.duplicates,
                summary.late_records,
                summary.incidents.len(),
                args.out.join("labels.json").display()
            );
            Ok(EXIT_OK)
        }
    }
}

fn counts(args: CountsArgs) -> Result<u8> {
    // Read-only: the store's view (its snapshot while `watch` holds it), not the writer.
    let view = crate::view::StoreView::open(&args.store, None)
        .with_context(|| format!("opening the store {}", args.store.display()))?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    writeln!(out, "account,region,eventSource,eventName,minute,calls")?;
    for (id, key) in view.series().iter().enumerate() {
        // APIs' call rates (a principal's series counts every API: not a row of this table).
        if key.insight_type != crate::series::InsightType::ApiCallRateInsight
            || key.scope != crate::series::Scope::Api
        {
            continue;
        }
        let id = u32::try_from(id).context("series id")?;
        // Minutes are bounded well inside i64 so that hour arithmetic cannot overflow.
        let counts = view.counts(id, -(1 << 40), 1 << 40)?;
        for (minute, calls) in counts {
            writeln!(
                out,
                "{},{},{},{},{minute},{calls}",
                csv_field(&key.account),
                csv_field(&key.region),
                csv_field(&key.event_source),
                csv_field(&key.event_name)
            )?;
        }
    }
    out.flush()?;
    Ok(EXIT_OK)
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (names come from logs).
fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

fn score(args: ScoreArgs) -> Result<u8> {
    let profile = args.engine.profile()?;
    if args.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    if let Some(out) = &args.out {
        if args.inputs.iter().any(|i| i == out) {
            bail!("--out {} is also an input", out.display());
        }
        // Checked before anything is done: a re-run after a crash must not erase the Insights
        // the first run wrote.
        let held = std::fs::metadata(out).is_ok_and(|m| m.is_file() && m.len() > 0);
        if held && !args.append && !args.overwrite {
            bail!(
                "--out {} already holds Insights: pass --append to add to it (Insights already in it are not written again) or --overwrite to replace it",
                out.display()
            );
        }
    }
    let screened = verify::screen(&args.inputs, &args.verify)?;
    let inputs = screened.as_ref().map_or(&args.inputs, |s| &s.inputs);
    if let Some(rules) = &args.engine.suppress {
        // Refused before the store is opened: a broken rules file changes nothing.
        crate::suppress::Rules::load(rules)?;
    }
    let mut engine = Engine::open(&args.engine.store, profile)
        .with_context(|| format!("opening the store {}", args.engine.store.display()))?;
    engine.set_retention(args.engine.retain_days.minutes());
    if let Some(rules) = &args.engine.suppress {
        engine.set_suppression_file(rules)?;
    }
    let outputs = Outputs {
        out: args.out.clone(),
        overwrite: args.overwrite,
        quiet: args.quiet,
        insights_dir: args.engine.insights_dir.clone(),
        unbuffered_stdout: false,
        to: args.engine.to.clone(),
        state_dir: Some(args.engine.store.clone()),
    };
    let mut sinks = outputs.open()?;
    let options = RunOptions {
        limits: ReadLimits {
            max_decompressed_bytes: args.max_file_size,
        },
        on_error: args.on_error,
        threads: args.threads,
        finalize: !args.keep_pending,
        progress: !args.no_progress,
    };
    let summary = match &args.aggregates {
        Some(root) => {
            let aggregates = crate::pipeline::aggregates::AggregateOptions {
                finalize: !args.keep_pending,
                shard: args.shard,
            };
            engine.score_aggregates(root, &aggregates, &mut sinks.as_dyn())?
        }
        None => engine.score(inputs, &options, &mut sinks.as_dyn())?,
    };
    print_summary(&summary, &args.engine.store)?;
    let refused = screened.is_some_and(|s| s.refused && s.unverified > 0);
    Ok(if summary.input_failed() || refused {
        EXIT_INPUT_FAILED
    } else {
        EXIT_OK
    })
}

fn watch(args: WatchArgs) -> Result<u8> {
    let level = match args.log_level.as_str() {
        "error" => tracing::Level::ERROR,
        "warn" => tracing::Level::WARN,
        "debug" => tracing::Level::DEBUG,
        "trace" => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    // A second initialisation (tests calling in-process) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let profile = args.engine.profile()?;
    let seconds = |name: &str, v: f64| -> Result<std::time::Duration> {
        if !(v.is_finite() && (0.0..=86_400.0).contains(&v)) {
            bail!("--{name} must be between 0 and 86400 seconds");
        }
        Ok(std::time::Duration::from_secs_f64(v))
    };
    let source = crate::watch::Followed::parse(&args.source);
    let default_poll = match source {
        crate::watch::Followed::S3(_) => 30.0,
        // The longest long poll SQS allows: a message is taken as soon as it arrives.
        crate::watch::Followed::Sqs(_) => 20.0,
        _ => 10.0,
    };
    let poll = seconds("poll-interval", args.poll_interval.unwrap_or(default_poll))?
        .max(std::time::Duration::from_millis(100));
    let options = crate::watch::WatchOptions {
        source,
        suppression: args.engine.suppress,
        store: args.engine.store,
        profile,
        out: args.out,
        insights_dir: args.engine.insights_dir,
        to: args.engine.to,
        quiet: args.quiet,
        limits: ReadLimits {
            max_decompressed_bytes: args.max_file_size,
        },
        checkpoint_every: seconds("checkpoint-interval", args.checkpoint_interval)?,
        poll_every: poll,
        settle: seconds("settle", args.settle)?,
        once: args.once,
        early_rises: !args.wait_for_final,
        metrics_addr: args.metrics_addr,
        endpoint_url: args.endpoint_url,
        region: args.region,
        since: args.since,
        retain_minutes: args.engine.retain_days.minutes(),
        snapshot_every: if args.snapshot_interval > 0.0 {
            Some(seconds("snapshot-interval", args.snapshot_interval)?)
        } else {
            None
        },
    };
    let report = crate::watch::run(options)?;
    let s = &report.summary;
    tracing::info!(
        files = s.files_read,
        files_reread = s.files_reread,
        records = s.counts.records,
        write_calls = s.counts.write_calls,
        duplicates = s.counts.duplicates,
        late = s.counts.late,
        starts = s.insights_start,
        ends = s.insights_end,
        open_episodes = s.open_episodes,
        "stopped ({:?})",
        report.ended
    );
    Ok(
        if report.input_failed && report.ended == crate::watch::Ended::InputEnded {
            EXIT_INPUT_FAILED
        } else {
            EXIT_OK
        },
    )
}

fn store_check(store: &std::path::Path) -> Result<u8> {
    let report = crate::store::check::check(store)
        .with_context(|| format!("checking the store {}", store.display()))?;
    print!("{report}");
    Ok(if report.healthy() {
        EXIT_OK
    } else {
        EXIT_INPUT_FAILED
    })
}

fn eval(args: EvalArgs) -> Result<u8> {
    if args.nab.is_none() && args.nab_category.is_some() {
        bail!("--nab-category chooses a category of the NAB corpus given by --nab DIR");
    }
    if let Some(dir) = &args.nab {
        let mut options = crate::nab::NabOptions {
            ..crate::nab::NabOptions::default()
        };
        if let Some(category) = &args.nab_category {
            options.category = Some(category.clone());
        }
        if let Some(path) = &args.profile {
            options.profile = Profile::load(path)?;
        }
        let report = crate::nab::evaluate(dir, &options)
            .with_context(|| format!("scoring the NAB corpus in {}", dir.display()))?;
        let mut out = std::io::stdout().lock();
        if args.json || args.format == EvalFormat::Json {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        } else {
            write!(out, "{report}")?;
        }
        return Ok(EXIT_OK);
    }
    let profile = match &args.profile {
        Some(path) => Profile::load(path)?,
        None => Profile::builtin(),
    };
    if args.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    if args.tolerance < 0 {
        bail!("--tolerance must be at least 0");
    }
    let Some(first) = args.inputs.first() else {
        bail!("give the labelled ARCHIVE to evaluate");
    };
    let labels_path = args
        .labels
        .clone()
        .unwrap_or_else(|| first.join("labels.json"));
    let labels = crate::eval::read_labels(&labels_path)?;
    let scored = crate::eval::score_archive(&args.inputs, profile, args.threads)?;
    let behaviours = crate::eval::read_behaviours(&labels_path)?;
    let report =
        crate::eval::compare_with_behaviours(&labels, &behaviours, &scored, args.tolerance)?;
    let mut out = std::io::stdout().lock();
    if args.json || args.format == EvalFormat::Json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", report.to_table())?;
    }
    Ok(if scored.summary.input_failed() {
        EXIT_INPUT_FAILED
    } else {
        EXIT_OK
    })
}

fn print_summary(s: &RunSummary, store: &std::path::Path) -> Result<()> {
    let mut e = std::io::stderr().lock();
    let c = &s.counts;
    writeln!(e, "trailsight score: summary")?;
    writeln!(
        e,
        "  files     {} found: {} read, {} already ingested, {} failed, {} damaged (good records kept)",
        s.files_found, s.files_read, s.files_already_ingested, s.files_failed, s.files_damaged
    )?;
    if s.files_reread > 0 {
        writeln!(
            e,
            "            {} changed since an earlier run ingested them (appended to): read again, \
             the records counted then dropped as repeated deliveries",
            s.files_reread
        )?;
    }
    writeln!(
        e,
        "            {} digest/insight files skipped, {} other files ignored",
        s.files_not_activity, s.files_ignored
    )?;
    writeln!(
        e,
        "  records   {} read, {} write calls, {} errors",
        c.records, c.write_calls, c.errors
    )?;
    writeln!(
        e,
        "            {} repeated deliveries of counted calls dropped, {} late calls (history only)",
        c.duplicates, c.late
    )?;
    if c.principal_writes + c.principal_reads + c.principal_untracked > 0 {
        writeln!(
            e,
            "            {} write calls and {} read calls counted into principals' series",
            c.principal_writes, c.principal_reads
        )?;
    }
    if c.principal_untracked > 0 {
        writeln!(
            e,
            "            {} calls of principals past principals.max_series counted in their APIs' series only",
            c.principal_untracked
        )?;
    }
    writeln!(
        e,
        "  series    {} in store {} ({} dormant, paged out of memory)",
        s.series,
        store.display(),
        s.series_paged_out
    )?;
    writeln!(
        e,
        "  insights  {} Start, {} End, {} episodes still open",
        s.insights_start, s.insights_end, s.open_episodes
    )?;
    if s.insights_suppressed > 0 {
        writeln!(
            e,
            "  suppressed {} Starts and Ends held back by --suppress rules (stored, in the report)",
            s.insights_suppressed
        )?;
    }
    if s.insights_refused > 0 {
        writeln!(
            e,
            "  refused   {} Insights not written to --insights-dir (unsafe account or region)",
            s.insights_refused
        )?;
    }
    for (reason, n) in &s.records_skipped {
        writeln!(e, "  skipped   {n} records: {reason}")?;
    }
    for (reason, n) in &s.records_ignored {
        writeln!(e, "  ignored   {n} records: {reason}")?;
    }
    if s.chars_replaced > 0 {
        writeln!(
            e,
            "  repaired  {} invalid characters replaced by U+FFFD (records kept)",
            s.chars_replaced
        )?;
    }
    for p in &s.problems {
        writeln!(e, "  problem   {}: {}", p.path, p.reason)?;
    }
    if s.nothing_read() {
        writeln!(
            e,
            "  nothing   no CloudTrail record was read from the inputs ({} files read, {} \
             digest/insight files skipped, {} other files ignored): check the paths given",
            s.files_read, s.files_not_activity, s.files_ignored
        )?;
    }
    if s.stopped_early {
        writeln!(
            e,
            "  stopped at the first bad file (--on-error stop); work before it was saved"
        )?;
    }
    Ok(())
}
