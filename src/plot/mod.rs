//! Pictures of a rate against its baseline: the counts, the expected rate, the bounds as a band,
//! and each Insight episode shaded between its Start and its End; PNG or SVG, one series or an
//! overview of small multiples. Under a series with Insights, a panel per firing window scale
//! draws the sliding window's count against that window's bounds, so the crossing that made
//! each Start is visible with the numbers of its record.
//!
//! Text is drawn with an embedded DejaVu Sans through plotters' pure-Rust rasteriser
//! (`ab_glyph`): no system font or fontconfig is needed.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::insight::Direction;
use crate::series::{kind, minute_to_datetime, Minute, SeriesKey, MINUTES_PER_DAY};
use crate::view::{explain, Bucket, Episode, Trace};

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The output name says neither PNG nor SVG.
    #[error("{0}: the output must end in .png or .svg")]
    Format(String),
    /// Drawing or writing failed.
    #[error("drawing {what}: {message}")]
    Draw {
        /// The image.
        what: String,
        /// What plotters said.
        message: String,
    },
    /// Nothing to draw.
    #[error("nothing to draw: {0}")]
    Empty(String),
}

/// The image format, from the output file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A PNG bitmap.
    Png,
    /// SVG text.
    Svg,
}

impl Format {
    /// The format a path's extension names.
    pub fn of(path: &Path) -> Result<Format, PlotError> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("png") => Ok(Format::Png),
            Some("svg") => Ok(Format::Svg),
            _ => Err(PlotError::Format(path.display().to_string())),
        }
    }
}

/// One panel: a series' trace at a step, and its episodes.
pub struct Panel<'a> {
    /// Counts and baseline.
    pub trace: &'a Trace,
    /// Episodes of the series (any overlapping the trace are drawn).
    pub episodes: Vec<&'a Episode>,
    /// Minutes per point.
    pub step: i64,
    /// Sliding-window scales (minutes) drawn in panels under the rate, one each: the windows the
    /// Insights in range fired on ([`firing_windows`]), or one the user asked for. Empty: the
    /// rate alone.
    pub windows: Vec<i64>,
}

/// Most window panels under one series.
pub const MAX_WINDOW_PANELS: usize = 3;

/// The windows (minutes) the episodes overlapping [from, to) fired on, each once, in order of
/// the episodes' starts, at most [`MAX_WINDOW_PANELS`].
pub fn firing_windows(episodes: &[&Episode], from: Minute, to: Minute) -> Vec<i64> {
    let mut out = Vec::new();
    for e in episodes {
        if e.start >= to || e.end_or(to) <= from {
            continue;
        }
        if let Some((w, _)) = e.firing_window() {
            if !out.contains(&w) && out.len() < MAX_WINDOW_PANELS {
                out.push(w);
            }
        }
    }
    out
}

/// The window that made one Start, as a window panel marks it.
#[derive(Debug, Clone, PartialEq)]
pub struct Crossing {
    /// The episode's first unusual minute.
    pub start: Minute,
    /// The last minute of the window that fired (the confirming minute).
    pub last: Minute,
    /// Calls (or errors) in that window, from the record.
    pub observed: u64,
    /// The bound it crossed, from the record (None: a fall with no lower bound).
    pub bound: Option<u64>,
    /// Rise or fall.
    pub direction: Direction,
    /// The legend line ("60-min window through 14:32: 412 calls > bound 260").
    pub label: String,
}

/// What a window panel draws: the sliding window's count and bounds, and the Starts it made.
#[derive(Debug, Clone)]
pub struct WindowView {
    /// The window's length in minutes.
    pub window: i64,
    /// One bucket per minute drawn: the window ending at that minute (see
    /// [`Trace::sliding`]). Minutes far from any Start are left out of very long ranges.
    pub points: Vec<Bucket>,
    /// The Starts that fired on this window, with their confirming minute in the range.
    pub crossings: Vec<Crossing>,
    /// Windows other episodes in the range fired on (drawn in their own panels, if any).
    pub other_windows: Vec<i64>,
}

/// Ranges up to this long get the sliding window at every minute; longer ones only within a
/// day of each Start (the bounds are computed minute by minute).
const FULL_SLIDING_MINUTES: i64 = 14 * MINUTES_PER_DAY;

/// The Starts in the panel's range that fired on `window`, and the other windows Starts there
/// fired on.
fn crossings_of(panel: &Panel<'_>, window: i64) -> (Vec<Crossing>, Vec<i64>) {
    let trace = panel.trace;
    let (from, to) = (trace.from, trace.to);
    let mut crossings = Vec::new();
    let mut other_windows = Vec::new();
    for e in &panel.episodes {
        if e.start >= to || e.end_or(to) <= from {
            continue;
        }
        let Some((w, last)) = e.firing_window() else {
            continue;
        };
        if w != window {
            if !other_windows.contains(&w) {
                other_windows.push(w);
            }
            continue;
        }
        let (Some(x), Some(label)) = (
            e.start_record.explanation(),
            explain::legend(&e.start_record),
        ) else {
            continue;
        };
        if !(from..to).contains(&last) {
            continue;
        }
        crossings.push(Crossing {
            start: e.start,
            last,
            observed: x.observed,
            bound: match x.direction {
                Direction::Rise => Some(x.upper_bound),
                Direction::Fall => x.lower_bound,
            },
            direction: x.direction,
            label,
        });
    }
    (crossings, other_windows)
}

/// The data of the window panel of `window` minutes under `panel`.
pub fn window_view(panel: &Panel<'_>, window: i64) -> WindowView {
    let trace = panel.trace;
    let (from, to) = (trace.from, trace.to);
    let (crossings, other_windows) = crossings_of(panel, window);
    let spans: Vec<(Minute, Minute)> = if to - from <= FULL_SLIDING_MINUTES {
        vec![(from, to)]
    } else {
        let mut spans: Vec<(Minute, Minute)> = Vec::new();
        let mut total = 0;
        for c in &crossings {
            let (s, t) = (
                (c.last - MINUTES_PER_DAY).max(from),
                (c.last + MINUTES_PER_DAY).min(to),
            );
            match spans.last_mut() {
                Some(prev) if s <= prev.1 => {
                    total += t.max(prev.1) - prev.1;
                    prev.1 = prev.1.max(t);
                }
                _ => {
                    total += t - s;
                    spans.push((s, t));
                }
            }
            if total >= FULL_SLIDING_MINUTES {
                break;
            }
        }
        spans
    };
    let points = spans
        .iter()
        .flat_map(|&(s, t)| trace.sliding(window, s, t))
        .collect();
    WindowView {
        window,
        points,
        crossings,
        other_windows,
    }
}

const FONT: &str = "sans-serif";
const COUNT_COLOR: RGBColor = RGBColor(31, 87, 165);
const EXPECTED_COLOR: RGBColor = RGBColor(40, 40, 40);
const BAND_COLOR: RGBColor = RGBColor(120, 170, 120);
const EPISODE_COLOR: RGBColor = RGBColor(214, 69, 65);
const WINDOW_COLOR: RGBColor = RGBColor(230, 150, 20);
const CROSSING_COLOR: RGBColor = RGBColor(150, 20, 30);

fn fonts() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The font is compiled in; registering it cannot fail for valid bytes.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

/// What the series counts, for an axis: "write calls" or "AccessDenied errors".
pub fn unit(key: &SeriesKey) -> String {
    kind::of_key(key).axis_unit(key.error_code.as_deref())
}

/// The series' name for a title.
pub fn title(key: &SeriesKey) -> String {
    match key.scope.principal() {
        Some(principal) => format!("{principal} in {} / {}", key.account, key.region),
        None => format!(
            "{}:{} in {} / {}",
            key.event_source, key.event_name, key.account, key.region
        ),
    }
}

/// The step, said in words for a caption ("per minute", "averaged over 15-minute steps").
pub fn step_words(step: i64) -> String {
    match step {
        1 => "per minute".to_string(),
        s if s % MINUTES_PER_DAY == 0 => format!(
            "per minute, averaged over {}-day steps",
            s / MINUTES_PER_DAY
        ),
        s if s % 60 == 0 => format!("per minute, averaged over {}-hour steps", s / 60),
        s => format!("per minute, averaged over {s}-minute steps"),
    }
}

/// Tick positions at round UTC times (every 5 minutes up to every 30 days), about `most` of
/// them over [from, to].
fn ticks(from: Minute, to: Minute, most: i64) -> (Vec<Minute>, i64) {
    const STEPS: [i64; 13] = [
        5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080, 43200,
    ];
    let span = (to - from).max(1);
    let step = STEPS
        .iter()
        .copied()
        .find(|s| span / s <= most)
        .unwrap_or(43200);
    let first = from.div_euclid(step) * step + if from.rem_euclid(step) == 0 { 0 } else { step };
    let mut out = Vec::new();
    let mut t = first;
    // No tick in the last 3 % of the axis: its label would be cut off at the image's edge.
    while t < to - span * 3 / 100 && out.len() < 64 {
        out.push(t);
        t += step;
    }
    (out, step)
}

fn tick_label(minute: Minute, step: i64) -> String {
    let Some(t) = minute_to_datetime(minute) else {
        return minute.to_string();
    };
    if step < MINUTES_PER_DAY {
        t.format("%m-%d %H:%M").to_string()
    } else {
        t.format("%Y-%m-%d").to_string()
    }
}

fn draw_err<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> PlotError + '_ {
    move |e| PlotError::Draw {
        what: what.to_string(),
        message: e.to_string(),
    }
}

/// Draws one series, large, to `out` (PNG or SVG by extension).
pub fn series_to_file(panel: &Panel<'_>, out: &Path, size: (u32, u32)) -> Result<(), PlotError> {
    fonts();
    let what = out.display().to_string();
    match Format::of(out)? {
        Format::Png => {
            let root = BitMapBackend::new(out, size).into_drawing_area();
            draw_figure(&root, panel).map_err(draw_err(&what))?;
            root.present().map_err(draw_err(&what))?;
        }
        Format::Svg => {
            let root = SVGBackend::new(out, size).into_drawing_area();
            draw_figure(&root, panel).map_err(draw_err(&what))?;
            root.present().map_err(draw_err(&what))?;
        }
    }
    Ok(())
}

/// Draws one series as SVG text (for the HTML report).
pub fn series_svg(panel: &Panel<'_>, size: (u32, u32)) -> Result<String, PlotError> {
    fonts();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw_figure(&root, panel).map_err(draw_err("svg"))?;
        root.present().map_err(draw_err("svg"))?;
    }
    Ok(svg)
}

/// Draws small multiples of several series, `columns` to a row, to `out`.
pub fn overview_to_file(
    panels: &[Panel<'_>],
    columns: usize,
    out: &Path,
    width: u32,
    row_height: u32,
) -> Result<(), PlotError> {
    if panels.is_empty() {
        return Err(PlotError::Empty("no series has data in the range".into()));
    }
    fonts();
    let columns = columns.clamp(1, panels.len());
    let rows = panels.len().div_ceil(columns);
    let size = (width, 50 + row_height * rows as u32);
    let what = out.display().to_string();
    match Format::of(out)? {
        Format::Png => {
            let root = BitMapBackend::new(out, size).into_drawing_area();
            draw_overview(&root, panels, rows, columns).map_err(draw_err(&what))?;
            root.present().map_err(draw_err(&what))?;
        }
        Format::Svg => {
            let root = SVGBackend::new(out, size).into_drawing_area();
            draw_overview(&root, panels, rows, columns).map_err(draw_err(&what))?;
            root.present().map_err(draw_err(&what))?;
        }
    }
    Ok(())
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn draw_overview<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panels: &[Panel<'_>],
    rows: usize,
    columns: usize,
) -> DrawResult<DB> {
    root.fill(&WHITE)?;
    let first = panels.first().map(|p| p.trace.from).unwrap_or_default();
    let last = panels.first().map(|p| p.trace.to).unwrap_or_default();
    let heading = format!(
        "The {} series with the most unusual activity, {} to {} UTC (shaded: Insight episodes; band: bounds)",
        panels.len(),
        tick_label(first, 60),
        tick_label(last, 60)
    );
    let (top, body) = root.split_vertically(50);
    top.draw(&Text::new(
        heading,
        (12, 14),
        (FONT, 18).into_font().style(FontStyle::Bold),
    ))?;
    let cells = body.split_evenly((rows, columns));
    for (cell, panel) in cells.iter().zip(panels) {
        draw_panel(cell, panel, false)?;
    }
    Ok(())
}

/// One series: the rate, and under it a panel per window scale in `panel.windows`.
fn draw_figure<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panel: &Panel<'_>,
) -> DrawResult<DB> {
    let windows: Vec<i64> = panel
        .windows
        .iter()
        .copied()
        .filter(|&w| !repeats_rate_panel(w, panel.step))
        .collect();
    if windows.is_empty() {
        return draw_panel(root, panel, true);
    }
    root.fill(&WHITE)?;
    let (_, height) = root.dim_in_pixel();
    let n = windows.len() as f64;
    let top = (f64::from(height) * 1.4 / (1.4 + n)).round() as u32;
    let (upper, rest) = root.split_vertically(top);
    draw_panel(&upper, panel, true)?;
    let areas = rest.split_evenly((windows.len(), 1));
    for (area, &w) in areas.iter().zip(&windows) {
        draw_window_panel(area, panel, &window_view(panel, w))?;
    }
    Ok(())
}

/// Runs of consecutive minutes (points whose windows end one minute apart).
fn minute_runs(points: &[Bucket], banded: bool) -> Vec<&[Bucket]> {
    let mut runs = Vec::new();
    let mut begin = 0;
    for i in 0..=points.len() {
        let breaks = match (points.get(i.wrapping_sub(1)), points.get(i)) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(b)) => {
                b.start != a.start + 1 || (banded && (a.upper.is_some() != b.upper.is_some()))
            }
        };
        if breaks && i > begin {
            let run = &points[begin..i];
            if !banded || run.first().is_some_and(|b| b.upper.is_some()) {
                runs.push(run);
            }
            begin = i;
        } else if breaks {
            begin = i;
        }
    }
    runs
}

/// The panel of one sliding window: at each minute, the calls in the `window` minutes up to
/// it (inclusive, drawn over that minute) against the bounds of a window of that length, with
/// each Start's firing window and count marked.
fn draw_window_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel<'_>,
    view: &WindowView,
) -> DrawResult<DB> {
    let trace = panel.trace;
    let w = view.window;
    let (from, to) = (trace.from, trace.to);
    let span = to - from;
    // Scaled to the counts, the expected counts and the crossed bounds, not to the band: the
    // bounds of a baseline with little history can be far above anything observed, and would
    // flatten the crossing this panel is for (the band is cut at the top instead).
    let y_max = view
        .points
        .iter()
        .map(|b| (b.count as f64).max(b.expected.unwrap_or(0.0)))
        .chain(
            view.crossings
                .iter()
                .map(|c| (c.observed.max(c.bound.unwrap_or(0))) as f64),
        )
        .fold(0.0, f64::max);
    let y_max = if y_max <= 0.0 { 1.0 } else { y_max * 1.3 };
    let what = unit(&trace.key);
    let mut caption = format!(
        "{} in the sliding {w}-minute window (the scale the detector tested), against its bounds",
        capitalised(&what)
    );
    if view.crossings.is_empty() && !view.other_windows.is_empty() {
        let others: Vec<String> = view.other_windows.iter().map(|o| format!("{o}")).collect();
        caption = format!(
            "{} in the sliding {w}-minute window (the Insights here fired on the {}-minute window)",
            capitalised(&what),
            others.join("- and ")
        );
    }
    let (tick_points, tick_step) = ticks(from, to, 9);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 17).into_font().style(FontStyle::Bold))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(78)
        .build_cartesian_2d((from..to).with_key_points(tick_points), 0.0..y_max)?;
    let x_fmt = move |m: &Minute| tick_label(*m, tick_step);
    // Counts: whole numbers once the axis is tall enough for whole ticks.
    let y_fmt = move |v: &f64| {
        if y_max >= 6.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    };
    // Short: the panel is low, and the caption says what is counted.
    let y_desc = format!("{} in {w} min", kind::of_key(&trace.key).short_unit());
    let x_desc = if w == 1 {
        "time (UTC); each point: that minute".to_string()
    } else {
        format!("time (UTC); each point: the {w} minutes up to and including it")
    };
    chart
        .configure_mesh()
        .x_labels(64)
        .y_labels(6)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style((FONT, 15))
        .light_line_style(RGBColor(235, 235, 235))
        .x_desc(x_desc.as_str())
        .y_desc(y_desc.as_str())
        .axis_desc_style((FONT, 16))
        .draw()?;

    // Episodes, lightly (the rate panel above carries their legend).
    for e in &panel.episodes {
        let (s, t) = (e.start.max(from), e.end_or(to).min(to));
        if s >= t {
            continue;
        }
        chart.draw_series(std::iter::once(Rectangle::new(
            [(s, 0.0), (t.max(s + span / 400), y_max)],
            EPISODE_COLOR.mix(0.08).filled(),
        )))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(s, 0.0), (s, y_max)],
            EPISODE_COLOR.stroke_width(2),
        )))?;
    }
    // Each Start's firing window, under the curves.
    for (i, c) in view.crossings.iter().enumerate() {
        let (s, t) = ((c.last - w + 1).max(from), (c.last + 1).min(to));
        let drawn = chart.draw_series(std::iter::once(Rectangle::new(
            [(s, 0.0), (t.max(s + span / 400), y_max)],
            WINDOW_COLOR.mix(0.22).filled(),
        )))?;
        if i == 0 {
            let text = if w == 1 {
                "the minute that made the Start".to_string()
            } else {
                format!("the {w} minutes that made the Start")
            };
            drawn.label(text).legend(|(x, y)| {
                Rectangle::new(
                    [(x, y - 5), (x + 18, y + 5)],
                    WINDOW_COLOR.mix(0.4).filled(),
                )
            });
        }
    }
    // The window's bounds as a band, and its expected count.
    let band = minute_runs(&view.points, true);
    for (i, run) in band.iter().enumerate() {
        let mut points: Vec<(Minute, f64)> = Vec::with_capacity(run.len() * 4);
        for b in run.iter() {
            let last = b.start + b.minutes - 1;
            let u = b.upper.unwrap_or(0.0).min(y_max);
            points.push((last, u));
            points.push((last + 1, u));
        }
        for b in run.iter().rev() {
            let last = b.start + b.minutes - 1;
            let l = b.lower.unwrap_or(0.0).min(y_max);
            points.push((last + 1, l));
            points.push((last, l));
        }
        let drawn = chart.draw_series(std::iter::once(Polygon::new(
            points,
            BAND_COLOR.mix(0.35).filled(),
        )))?;
        if i == 0 {
            drawn
                .label(format!("bounds of a {w}-min window"))
                .legend(|(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 18, y + 5)], BAND_COLOR.mix(0.5).filled())
                });
        }
    }
    for (i, run) in band.iter().enumerate() {
        let drawn = chart.draw_series(LineSeries::new(
            run.iter().flat_map(|b| {
                let last = b.start + b.minutes - 1;
                let e = b.expected.unwrap_or(0.0);
                [(last, e), (last + 1, e)]
            }),
            EXPECTED_COLOR.stroke_width(1),
        ))?;
        if i == 0 {
            drawn
                .label(format!("expected in {w} min"))
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], EXPECTED_COLOR.stroke_width(2))
                });
        }
    }
    for (i, run) in minute_runs(&view.points, false).iter().enumerate() {
        let drawn = chart.draw_series(LineSeries::new(
            run.iter().flat_map(|b| {
                let last = b.start + b.minutes - 1;
                let v = b.count as f64;
                [(last, v), (last + 1, v)]
            }),
            COUNT_COLOR.stroke_width(2),
        ))?;
        if i == 0 {
            drawn
                .label(format!("{what} in the {w} min up to each minute"))
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], COUNT_COLOR.stroke_width(2))
                });
        }
    }
    draw_crossings(&mut chart, &view.crossings, w, (from, to))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(190, 190, 190))
        .draw()?;
    Ok(())
}

/// The chart type of both panels: minutes across, a value up.
type Chart<'a, DB> = ChartContext<
    'a,
    DB,
    Cartesian2d<
        plotters::coord::combinators::WithKeyPoints<plotters::coord::types::RangedCoordi64>,
        plotters::coord::types::RangedCoordf64,
    >,
>;

/// The record's count (a dot at the confirming minute) and the bound it crossed (a line over
/// the firing window), labelled in words in the legend.
fn draw_crossings<DB: DrawingBackend>(
    chart: &mut Chart<'_, DB>,
    crossings: &[Crossing],
    w: i64,
    (from, to): (Minute, Minute),
) -> DrawResult<DB> {
    const LABELLED: usize = 4;
    for (i, c) in crossings.iter().enumerate() {
        // Over the firing window, and at least 1/80 of the width, so that it shows on a long range.
        let reach = (to - from) / 160;
        let (s, t) = (
            (c.last - w + 1).min(c.last - reach).max(from),
            (c.last + 1).max(c.last + reach).min(to),
        );
        if let Some(bound) = c.bound {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(s, bound as f64), (t, bound as f64)],
                CROSSING_COLOR.stroke_width(2),
            )))?;
        }
        let x = c.last.clamp(from, to);
        let drawn = chart.draw_series(std::iter::once(Circle::new(
            (x, c.observed as f64),
            5,
            CROSSING_COLOR.filled(),
        )))?;
        let label = match i {
            i if i < LABELLED => Some(c.label.clone()),
            i if i == LABELLED => Some(format!(
                "... and {} more Starts on this window",
                crossings.len() - LABELLED
            )),
            _ => None,
        };
        if let Some(label) = label {
            drawn
                .label(label)
                .legend(|(x, y)| Circle::new((x + 9, y), 5, CROSSING_COLOR.filled()));
        }
    }
    Ok(())
}

/// Whether the window panel of `w` minutes would repeat the rate panel: at one-minute steps the
/// rate panel's band already is the one-minute window's (its Starts are marked there).
pub fn repeats_rate_panel(w: i64, step: i64) -> bool {
    w == 1 && step <= 1
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Contiguous runs of buckets that have a band.
fn band_runs(buckets: &[Bucket]) -> Vec<Vec<&Bucket>> {
    let mut runs: Vec<Vec<&Bucket>> = Vec::new();
    let mut current = Vec::new();
    for b in buckets {
        if b.upper.is_some() {
            current.push(b);
        } else if !current.is_empty() {
            runs.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel<'_>,
    large: bool,
) -> DrawResult<DB> {
    let trace = panel.trace;
    let step = panel.step.max(1);
    let buckets = trace.buckets(step);
    let per = |v: f64, b: &Bucket| v / b.minutes.max(1) as f64;
    let y_max = buckets
        .iter()
        .map(|b| {
            per(b.count as f64, b)
                .max(b.upper.map_or(0.0, |u| per(u, b)))
                .max(b.expected.map_or(0.0, |e| per(e, b)))
        })
        .fold(0.0, f64::max);
    let y_max = if y_max <= 0.0 { 1.0 } else { y_max * 1.12 };
    let (from, to) = (trace.from, trace.to);
    let span = to - from;
    area.fill(&WHITE)?;
    let (title_size, label_size) = if large { (22, 15) } else { (14, 11) };
    let caption = if large {
        format!(
            "{} — {}",
            title(&trace.key),
            kind::of_key(&trace.key).rate_name()
        )
    } else if let Some(principal) = trace.key.scope.principal() {
        // The ARN's last part (user/alice, role/Deployer) is what tells principals apart.
        let name = principal.split(':').next_back().unwrap_or(principal);
        format!(
            "{name} ({}, {})",
            trace.key.region,
            kind::of_key(&trace.key).axis_unit(None)
        )
    } else {
        format!(
            "{}:{} ({}, {})",
            trace.key.event_source.trim_end_matches(".amazonaws.com"),
            trace.key.event_name,
            trace.key.region,
            match trace.key.error_code.as_deref() {
                Some(code) => format!("{code} errors"),
                None => kind::of_key(&trace.key).short_unit().to_string(),
            }
        )
    };
    let y_desc = format!("{} per minute", unit(&trace.key));
    let x_desc = match step {
        1 => "time (UTC)".to_string(),
        _ => format!(
            "time (UTC); {}",
            step_words(step).trim_start_matches("per minute, ")
        ),
    };
    let (tick_points, tick_step) = ticks(from, to, if large { 9 } else { 4 });
    let mut chart = ChartBuilder::on(area)
        .caption(
            caption,
            (FONT, title_size).into_font().style(FontStyle::Bold),
        )
        .margin(if large { 14 } else { 6 })
        .x_label_area_size(if large { 48 } else { 26 })
        .y_label_area_size(if large { 78 } else { 46 })
        .build_cartesian_2d((from..to).with_key_points(tick_points), 0.0..y_max)?;
    let x_fmt = move |m: &Minute| tick_label(*m, tick_step);
    let mut mesh = chart.configure_mesh();
    mesh.x_labels(64)
        .y_labels(if large { 8 } else { 4 })
        .x_label_formatter(&x_fmt)
        .label_style((FONT, label_size))
        .light_line_style(RGBColor(235, 235, 235));
    if large {
        mesh.x_desc(x_desc.as_str())
            .y_desc(y_desc.as_str())
            .axis_desc_style((FONT, label_size + 1));
    }
    mesh.draw()?;

    // Insight episodes, under everything else: one shaded rectangle each, Start and End lines.
    let shaded: Vec<(Minute, Minute)> = panel
        .episodes
        .iter()
        .map(|e| (e.start.max(from), e.end_or(to).min(to)))
        .filter(|(s, t)| s < t)
        // Kept at least 1/400 of the width wide, so a short episode on a long range shows.
        .map(|(s, t)| (s, t.max(s + span / 400)))
        .collect();
    if !shaded.is_empty() {
        chart
            .draw_series(shaded.iter().map(|&(s, t)| {
                Rectangle::new([(s, 0.0), (t, y_max)], EPISODE_COLOR.mix(0.16).filled())
            }))?
            .label("Insight episode (Start to End)")
            .legend(|(x, y)| {
                Rectangle::new(
                    [(x, y - 5), (x + 18, y + 5)],
                    EPISODE_COLOR.mix(0.3).filled(),
                )
            });
    }
    for e in &panel.episodes {
        let lines = [Some(e.start), e.end];
        for m in lines
            .into_iter()
            .flatten()
            .filter(|m| (from..=to).contains(m))
        {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(m, 0.0), (m, y_max)],
                EPISODE_COLOR.stroke_width(if large { 2 } else { 1 }),
            )))?;
        }
        if !large || !(from..to).contains(&e.start) {
            continue;
        }
        // "Start" right of the Start line, "End" left of the End line; a narrow episode
        // (under about 90 pixels) gets one "Insight" label instead.
        let font = (FONT, 13).into_font().color(&EPISODE_COLOR);
        let wide = (e.end_or(to) - e.start) * 1300 / span.max(1) >= 90;
        let left = font.clone().pos(Pos::new(HPos::Left, VPos::Top));
        let first = if wide && e.end.is_some() {
            " Start"
        } else {
            " Insight"
        };
        chart.draw_series(std::iter::once(Text::new(
            first.to_string(),
            (e.start, y_max),
            left,
        )))?;
        if let (true, Some(end)) = (wide, e.end.filter(|m| *m <= to)) {
            let right = font.pos(Pos::new(HPos::Right, VPos::Top));
            chart.draw_series(std::iter::once(Text::new(
                "End ".to_string(),
                (end, y_max),
                right,
            )))?;
        }
    }

    // The bounds as a band, broken where the baseline is not established.
    let runs = band_runs(&buckets);
    for (i, run) in runs.iter().enumerate() {
        let mut points: Vec<(Minute, f64)> = Vec::with_capacity(run.len() * 4);
        for b in run {
            let u = per(b.upper.unwrap_or(0.0), b);
            points.push((b.start, u));
            points.push((b.start + b.minutes, u));
        }
        for b in run.iter().rev() {
            let l = per(b.lower.unwrap_or(0.0), b);
            points.push((b.start + b.minutes, l));
            points.push((b.start, l));
        }
        let drawn = chart.draw_series(std::iter::once(Polygon::new(
            points,
            BAND_COLOR.mix(0.35).filled(),
        )))?;
        if i == 0 {
            let text = match step {
                1 => "bounds of one minute".to_string(),
                s => format!("bounds of one {s}-min step"),
            };
            drawn.label(text).legend(|(x, y)| {
                Rectangle::new([(x, y - 5), (x + 18, y + 5)], BAND_COLOR.mix(0.5).filled())
            });
        }
    }
    // Expected rate.
    for (i, run) in runs.iter().enumerate() {
        let drawn = chart.draw_series(LineSeries::new(
            run.iter().flat_map(|b| {
                let e = per(b.expected.unwrap_or(0.0), b);
                [(b.start, e), (b.start + b.minutes, e)]
            }),
            EXPECTED_COLOR.stroke_width(1),
        ))?;
        if i == 0 {
            drawn.label("baseline expected rate").legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], EXPECTED_COLOR.stroke_width(2))
            });
        }
    }
    // At one-minute steps the band is the one-minute window's: mark the Starts it made.
    if repeats_rate_panel(1, step) && large {
        let crossings = crossings_of(panel, 1).0;
        draw_crossings(&mut chart, &crossings, 1, (from, to))?;
    }
    // The observed rate, on top.
    chart
        .draw_series(LineSeries::new(
            buckets.iter().flat_map(|b| {
                let v = per(b.count as f64, b);
                [(b.start, v), (b.start + b.minutes, v)]
            }),
            COUNT_COLOR.stroke_width(if large { 2 } else { 1 }),
        ))?
        .label(format!("observed {}", unit(&trace.key)))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], COUNT_COLOR.stroke_width(2)));
    if large {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(190, 190, 190))
            .draw()?;
    }
    Ok(())
}
