//! Pictures of a rate against its baseline: the counts, the expected rate, the bounds as a band,
//! and each Insight episode shaded between its Start and its End; PNG or SVG, one series or an
//! overview of small multiples.
//!
//! Text is drawn with an embedded DejaVu Sans through plotters' pure-Rust rasteriser
//! (`ab_glyph`): no system font or fontconfig is needed.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::series::{minute_to_datetime, InsightType, Minute, SeriesKey, MINUTES_PER_DAY};
use crate::view::{Bucket, Episode, Trace};

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
}

const FONT: &str = "sans-serif";
const COUNT_COLOR: RGBColor = RGBColor(31, 87, 165);
const EXPECTED_COLOR: RGBColor = RGBColor(40, 40, 40);
const BAND_COLOR: RGBColor = RGBColor(120, 170, 120);
const EPISODE_COLOR: RGBColor = RGBColor(214, 69, 65);

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
    match (&key.insight_type, &key.error_code) {
        (InsightType::ApiErrorRateInsight, Some(code)) => format!("{code} errors"),
        (InsightType::ApiErrorRateInsight, None) => "errors".to_string(),
        _ => "write calls".to_string(),
    }
}

/// The series' name for a title.
pub fn title(key: &SeriesKey) -> String {
    format!(
        "{}:{} in {} / {}",
        key.event_source, key.event_name, key.account, key.region
    )
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
            draw_panel(&root, panel, true).map_err(draw_err(&what))?;
            root.present().map_err(draw_err(&what))?;
        }
        Format::Svg => {
            let root = SVGBackend::new(out, size).into_drawing_area();
            draw_panel(&root, panel, true).map_err(draw_err(&what))?;
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
        draw_panel(&root, panel, true).map_err(draw_err("svg"))?;
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
            if trace.key.error_code.is_some() {
                "API error rate"
            } else {
                "API call rate"
            }
        )
    } else {
        format!(
            "{}:{} ({}, {})",
            trace.key.event_source.trim_end_matches(".amazonaws.com"),
            trace.key.event_name,
            trace.key.region,
            trace
                .key
                .error_code
                .as_deref()
                .map_or_else(|| "calls".to_string(), |c| format!("{c} errors"))
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
            drawn.label("baseline bounds").legend(|(x, y)| {
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
