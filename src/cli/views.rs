//! The analyst's commands: `series`, `plot` and `report` (and `export`, in its own module),
//! all reading a store (or the snapshot a running `watch` publishes) without changing it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use super::EXIT_OK;
use crate::detect::Profile;
use crate::plot::{self, Panel};
use crate::series::{Minute, MINUTES_PER_DAY};
use crate::view::{self, readable_step, SeriesFilter, StoreView};

/// Where the data is, and which part of it.
#[derive(Debug, Args)]
pub struct ViewArgs {
    /// The store `score` or `watch` wrote (while `watch` runs, its published snapshot is read).
    #[arg(long, default_value = "trailsight.db", value_name = "DIR")]
    pub store: PathBuf,
    /// Detector profile to recompute baselines with (default: the one recorded in the store).
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Start of the range (RFC 3339, `YYYY-MM-DDTHH:MM` or `YYYY-MM-DD`, UTC).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// End of the range, exclusive (same formats).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
}

impl ViewArgs {
    /// Opens the store (or its snapshot), telling the user which one is read.
    pub fn open(&self) -> Result<StoreView> {
        let profile = match &self.profile {
            Some(p) => Some(Profile::load(p)?),
            None => None,
        };
        let view = StoreView::open(&self.store, profile)
            .with_context(|| format!("reading the store {}", self.store.display()))?;
        if let view::Origin::Snapshot { .. } = view.origin() {
            eprintln!(
                "trailsight: reading the {}",
                view::describe_origin(&self.store, view.origin())
            );
        }
        Ok(view)
    }

    /// `--from` and `--to` as given (either may be absent).
    pub fn times(&self) -> Result<(Option<Minute>, Option<Minute>)> {
        let parse = |flag: &str, text: &Option<String>| -> Result<Option<Minute>> {
            match text {
                None => Ok(None),
                Some(t) => view::parse_time(t).map(Some).with_context(|| {
                    format!(
                        "--{flag} {t:?}: expected RFC 3339, YYYY-MM-DDTHH:MM or YYYY-MM-DD (UTC)"
                    )
                }),
            }
        };
        Ok((parse("from", &self.from)?, parse("to", &self.to)?))
    }

    /// The range asked for, or `default_days` ending at the newest data.
    pub fn range(&self, view: &StoreView, default_days: i64) -> Result<(Minute, Minute)> {
        let (from, to) = self.times()?;
        let Some(end) = view.end_minute() else {
            bail!("the store {} holds no data yet", self.store.display());
        };
        let to = to.unwrap_or(end);
        let from = from.unwrap_or_else(|| {
            let start = view.start_minute().unwrap_or(to - 1);
            (to - default_days * MINUTES_PER_DAY).max(start).min(to - 1)
        });
        if from >= to {
            bail!("--from must be before --to");
        }
        if to - from > 400 * MINUTES_PER_DAY {
            bail!("the range is longer than 400 days; choose --from/--to");
        }
        Ok((from, to))
    }
}

/// Which series.
#[derive(Debug, Args)]
pub struct SelectArgs {
    /// The API, as eventSource:eventName (e.g. ec2.amazonaws.com:RunInstances).
    #[arg(long, value_name = "SOURCE:NAME")]
    pub api: Option<String>,
    /// The error-rate series of this errorCode (e.g. AccessDenied) instead of the call rate.
    #[arg(long, value_name = "CODE")]
    pub error_code: Option<String>,
    /// Account id.
    #[arg(long, value_name = "ID")]
    pub account: Option<String>,
    /// Region.
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// A principal's series instead of an API's: its write calls, every API together (with a
    /// profile that counts them, `[principals]`). A user or role ARN; an assumed role's
    /// session ARN stands for its role.
    #[arg(long, value_name = "ARN", conflicts_with_all = ["api", "error_code"])]
    pub principal: Option<String>,
    /// With --principal: its read-only calls (List/Describe/Get) instead of its write calls.
    #[arg(long, requires = "principal")]
    pub reads: bool,
}

impl SelectArgs {
    fn filter(&self, any_type: bool) -> SeriesFilter {
        let mut f = self
            .api
            .as_deref()
            .map(SeriesFilter::api)
            .unwrap_or_default();
        f.error_code = self.error_code.clone();
        f.account = self.account.clone();
        f.region = self.region.clone();
        f.principal = self.principal.clone();
        f.reads = self.reads;
        f.any_type = any_type && self.error_code.is_none();
        f
    }
}

/// `trailsight plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    #[command(flatten)]
    view: ViewArgs,
    #[command(flatten)]
    select: SelectArgs,
    /// Small multiples of the series with the most unusual activity in the range (with --api
    /// and the other filters, only among the series they select).
    #[arg(long)]
    overview: bool,
    /// Series in the overview.
    #[arg(long, default_value_t = 9, value_name = "N")]
    top: usize,
    /// Overview panels per row.
    #[arg(long, default_value_t = 3, value_name = "N")]
    columns: usize,
    /// Minutes per plotted point (default: a readable step for the range, said in the axis
    /// title).
    #[arg(long, value_name = "MINUTES")]
    step: Option<i64>,
    /// Draw, under the rate, the sliding window of this many minutes (1 to 120) against its
    /// bounds. Default: the windows the Insights in the range fired on (their windowMinutes);
    /// none when the range has no Insight.
    #[arg(long, value_name = "MINUTES")]
    window: Option<i64>,
    /// Image width in pixels.
    #[arg(long, default_value_t = 1400, value_name = "PX")]
    width: u32,
    /// Image height in pixels (the overview: per row; default 560, plus 340 per window panel).
    #[arg(long, value_name = "PX")]
    height: Option<u32>,
    /// Output image: .png or .svg.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// `trailsight report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    view: ViewArgs,
    /// At most this many episodes, the most recent first.
    #[arg(long, default_value_t = 200, value_name = "N")]
    limit: usize,
    /// Output HTML file.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Which table `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportWhat {
    /// Per-minute counts per series (minutes without calls omitted).
    Counts,
    /// Count, expected value and bounds per series and step (every step of the range).
    Baselines,
    /// The Insights, one row per record.
    Insights,
}

/// `trailsight export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    view: ViewArgs,
    #[command(flatten)]
    select: SelectArgs,
    /// The table (columns in docs/analyst-views.md, "Exports").
    #[arg(long, value_enum)]
    what: ExportWhat,
    /// Minutes per row of the baselines table.
    #[arg(long, default_value_t = 1, value_name = "MINUTES")]
    step: i64,
    /// Output file: .parquet or .csv.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// `trailsight series`.
#[derive(Debug, Args)]
pub struct SeriesArgs {
    #[command(flatten)]
    view: ViewArgs,
    #[command(flatten)]
    select: SelectArgs,
}

fn check_size(width: u32, height: u32) -> Result<()> {
    if !(200..=8000).contains(&width) || !(150..=8000).contains(&height) {
        bail!("image size {width}x{height}: width must be 200-8000 and height 150-8000 pixels");
    }
    Ok(())
}

fn check_window(window: Option<i64>) -> Result<()> {
    let most = crate::detect::baseline::MAX_WINDOW_MINUTES;
    if let Some(w) = window {
        if !(1..=most).contains(&w) {
            bail!("--window must be 1 to {most} minutes (the longest window the detector tests)");
        }
    }
    Ok(())
}

fn check_step(step: Option<i64>) -> Result<()> {
    if let Some(s) = step {
        if !(1..=7 * MINUTES_PER_DAY).contains(&s) {
            bail!("--step must be 1 to 10080 minutes");
        }
    }
    Ok(())
}

/// Writes next to `out` then renames, so a failed plot leaves no half-written file behind.
fn write_atomically(out: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = out
        .file_name()
        .with_context(|| format!("{}: not a file name", out.display()))?;
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("");
    let tmp = out.with_file_name(format!(".{}.partial.{ext}", name.to_string_lossy()));
    match write(&tmp) {
        Ok(()) => std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display())),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// `trailsight plot`.
pub fn plot(args: PlotArgs) -> Result<u8> {
    plot::Format::of(&args.out)?;
    check_step(args.step)?;
    check_window(args.window)?;
    if args.overview && args.window.is_some() {
        bail!("--window draws a panel under one series: it does not apply to --overview");
    }
    let view = args.view.open()?;
    let (from, to) = args.view.range(&view, 7)?;
    let step = args
        .step
        .unwrap_or_else(|| readable_step(to - from, if args.overview { 300 } else { 900 }));
    if args.overview {
        let height = args.height.unwrap_or(300);
        check_size(args.width, height)?;
        let filter = args.select.filter(true);
        let ids = view.most_unusual(from, to, args.top.clamp(1, 60), &filter)?;
        let traces = ids
            .iter()
            .map(|&id| view.trace(id, from, to))
            .collect::<Result<Vec<_>, _>>()?;
        let panels: Vec<Panel<'_>> = traces
            .iter()
            .map(|t| Panel {
                trace: t,
                episodes: view.episodes_of(t.series).collect(),
                step,
                windows: Vec::new(),
            })
            .collect();
        write_atomically(&args.out, |tmp| {
            Ok(plot::overview_to_file(
                &panels,
                args.columns,
                tmp,
                args.width,
                height,
            )?)
        })?;
        eprintln!(
            "trailsight: wrote {} ({} series, {})",
            args.out.display(),
            panels.len(),
            plot::step_words(step)
        );
    } else {
        if args.select.api.is_none() && args.select.principal.is_none() {
            bail!("plot needs --api SOURCE:NAME or --principal ARN (or --overview)");
        }
        let id = view.select_one(&args.select.filter(false))?;
        let trace = view.trace(id, from, to)?;
        let episodes: Vec<_> = view.episodes_of(id).collect();
        let mut windows = match args.window {
            Some(w) => vec![w],
            None => plot::firing_windows(&episodes, from, to),
        };
        windows.retain(|&w| !plot::repeats_rate_panel(w, step));
        let height = args.height.unwrap_or(560 + 340 * windows.len() as u32);
        check_size(args.width, height)?;
        let panel = Panel {
            trace: &trace,
            episodes,
            step,
            windows,
        };
        write_atomically(&args.out, |tmp| {
            Ok(plot::series_to_file(&panel, tmp, (args.width, height))?)
        })?;
        if trace.full_history_from > from {
            eprintln!(
                "trailsight: note: before {} the baseline had less than its full window of stored history",
                crate::series::format_event_time(trace.full_history_from)
            );
        }
        let windows: Vec<String> = panel
            .windows
            .iter()
            .map(|w| format!("; the sliding {w}-minute window below"))
            .collect();
        eprintln!(
            "trailsight: wrote {} ({}, {} episodes, {}{})",
            args.out.display(),
            trace.key,
            panel.episodes.len(),
            plot::step_words(step),
            windows.concat()
        );
    }
    Ok(EXIT_OK)
}

/// `trailsight report`.
pub fn report(args: ReportArgs) -> Result<u8> {
    let (from, to) = args.view.times()?;
    let view = args.view.open()?;
    let options = crate::report::ReportOptions {
        from,
        to,
        limit: args.limit.max(1),
        plot_size: (1100, 320),
        window_height: 260,
        source: view::describe_origin(&args.view.store, view.origin()),
    };
    let page = crate::report::render(&view, &options)?;
    write_atomically(&args.out, |tmp| {
        std::fs::write(tmp, page.as_bytes()).with_context(|| format!("writing {}", tmp.display()))
    })?;
    eprintln!(
        "trailsight: wrote {} ({} episodes)",
        args.out.display(),
        view.episodes().len().min(options.limit)
    );
    Ok(EXIT_OK)
}

/// `trailsight export`.
pub fn export(args: ExportArgs) -> Result<u8> {
    use crate::export::{ExportOptions, Table};
    crate::export::Format::of(&args.out)?;
    check_step(Some(args.step))?;
    let view = args.view.open()?;
    let table = match args.what {
        ExportWhat::Counts => Table::Counts,
        ExportWhat::Baselines => Table::Baselines,
        ExportWhat::Insights => Table::Insights,
    };
    // Counts and Insights: everything kept unless a range is given; baselines: the last 7 days
    // (a dense table, one row per series and step).
    let default_days = if table == Table::Baselines { 7 } else { 36_500 };
    let (from, to) = match view.end_minute() {
        Some(_) => args.view.range(&view, default_days)?,
        None => (0, 1),
    };
    let filter = args.select.filter(true);
    let mut series = view.select(&filter);
    if table == Table::Baselines && args.select.api.is_none() {
        // Only series with calls in the range: a dense table of silent series says nothing.
        let mut active = Vec::with_capacity(series.len());
        for id in series {
            if !view.counts(id, from, to)?.is_empty() {
                active.push(id);
            }
        }
        series = active;
    }
    let options = ExportOptions {
        series,
        from,
        to,
        step: args.step,
    };
    let mut rows = 0;
    write_atomically(&args.out, |tmp| {
        rows = crate::export::export(&view, table, &options, tmp)?;
        Ok(())
    })?;
    eprintln!("trailsight: wrote {} ({rows} rows)", args.out.display());
    Ok(EXIT_OK)
}

/// `trailsight series`: the series a store knows, with their calls and Insights in the range.
pub fn series(args: SeriesArgs) -> Result<u8> {
    let view = args.view.open()?;
    let (from, to) = args.view.range(&view, 7)?;
    let filter = args.select.filter(true);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(
        out,
        "insightType\taccount\tregion\teventSource\teventName\terrorCode\tcalls\tepisodes\tcategory\tseriesKind\tprincipal"
    )?;
    for id in view.select(&filter) {
        let Some(k) = view.series().get(id as usize) else {
            continue;
        };
        let calls: u64 = view
            .counts(id, from, to)?
            .values()
            .map(|&c| u64::from(c))
            .sum();
        let episodes = view
            .episodes_of(id)
            .filter(|e| e.start < to && e.end_or(to) > from)
            .count();
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{calls}\t{episodes}\t{}\t{}\t{}",
            k.insight_type.as_str(),
            clean(&k.account),
            clean(&k.region),
            clean(&k.event_source),
            clean(&k.event_name),
            clean(k.error_code.as_deref().unwrap_or("-")),
            k.category.setting(),
            k.scope.kind_name().unwrap_or("api"),
            clean(k.scope.principal().map_or("-", |p| &**p)),
        )?;
    }
    out.flush()?;
    Ok(EXIT_OK)
}

/// A value from logs made safe for one tab-separated field on a terminal.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}
