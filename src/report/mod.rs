//! One self-contained HTML page for analysts: every Insight episode in a sortable table (time,
//! API, type, baseline against Insight average, duration, top attributions), the detector's
//! decision in words (window, count, expected count, bound), and an SVG plot of its rate
//! against the baseline band with, under it, the firing window's count against that window's
//! bounds.
//!
//! Everything that comes from logs (API names, ARNs, user agents, error codes) is HTML-escaped;
//! the page also carries a Content-Security-Policy that lets only its own sorting script run
//! (by hash), so even a missed escape could not run a script in the analyst's browser.

use std::fmt::Write as _;

use base64::Engine as _;
use sha2::Digest as _;

use crate::insight::{AdditionalEventData, AttributionRecord, Direction};
use crate::plot::{self, Panel};
use crate::series::{minute_to_datetime, Minute, MINUTES_PER_DAY};
use crate::view::{explain, readable_step, Episode, StoreView, ViewError};

/// Report settings.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Only episodes overlapping [from, to) (None: all).
    pub from: Option<Minute>,
    /// See `from`.
    pub to: Option<Minute>,
    /// At most this many episodes, the most recent first.
    pub limit: usize,
    /// Plot size in pixels (the rate panel).
    pub plot_size: (u32, u32),
    /// Height in pixels added under the rate for the firing window's panel.
    pub window_height: u32,
    /// What the page says the data is ("store X", "snapshot of ...").
    pub source: String,
}

/// Why the report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Reading the store.
    #[error(transparent)]
    View(#[from] ViewError),
    /// Drawing a plot.
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn utc(minute: Minute) -> String {
    minute_to_datetime(minute).map_or_else(
        || minute.to_string(),
        |t| t.format("%Y-%m-%d %H:%M").to_string(),
    )
}

fn duration_words(minutes: i64) -> String {
    if minutes < 60 {
        format!("{minutes} min")
    } else if minutes < MINUTES_PER_DAY {
        format!("{} h {} min", minutes / 60, minutes % 60)
    } else {
        format!(
            "{} d {} h",
            minutes / MINUTES_PER_DAY,
            (minutes % MINUTES_PER_DAY) / 60
        )
    }
}

/// The sorting script: a click on a header sorts the rows by that column's `data-v` values
/// (numbers when they parse, else text); a second click reverses.
const SCRIPT: &str = r#"
document.querySelectorAll('th[data-col]').forEach(function (th) {
  th.addEventListener('click', function () {
    var table = th.closest('table');
    var col = Number(th.dataset.col);
    var dir = th.dataset.dir === 'asc' ? 'desc' : 'asc';
    table.querySelectorAll('th[data-col]').forEach(function (h) { h.removeAttribute('data-dir'); });
    th.dataset.dir = dir;
    var groups = Array.prototype.slice.call(table.querySelectorAll('tbody.insight'));
    groups.sort(function (a, b) {
      var x = a.rows[0].cells[col].dataset.v, y = b.rows[0].cells[col].dataset.v;
      var nx = Number(x), ny = Number(y);
      var c = (x !== '' && y !== '' && !isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
      return dir === 'asc' ? c : -c;
    });
    groups.forEach(function (g) { table.appendChild(g); });
  });
});
"#;

const STYLE: &str = r#"
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; margin: 0 0 4px 0; }
p.meta { color: #555; margin: 0 0 16px 0; font-size: 14px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; table-layout: fixed; }
th, td { padding: 6px 8px; text-align: left; vertical-align: top; overflow-wrap: anywhere; }
tbody.insight { border-bottom: 2px solid #ccc; }
th { background: #f3f4f6; cursor: pointer; user-select: none; position: sticky; top: 0; }
th[data-dir="asc"]::after { content: " \25B2"; }
th[data-dir="desc"]::after { content: " \25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.plot { padding: 0 8px 12px 8px; }
td.why { padding: 2px 8px 6px 8px; font-size: 14px; }
td.suppressed { padding: 2px 8px; font-size: 14px; color: #6b4e00; background: #fff4d6; }
td.plot svg { width: 100%; height: auto; max-width: 1100px; display: block; }
.rise { color: #b42318; font-weight: 600; }
.fall { color: #175cd3; font-weight: 600; }
.open { color: #b54708; }
ul.attr { margin: 0; padding-left: 16px; }
ul.attr li { margin-bottom: 2px; }
code { font-size: 12px; }
"#;

fn attribution_list(attrs: &[AttributionRecord]) -> String {
    let mut out = String::new();
    for a in attrs {
        let Some(top) = a.insight.first() else {
            continue;
        };
        let baseline = a
            .baseline
            .iter()
            .find(|b| b.value == top.value)
            .map_or(0.0, |b| b.average);
        let _ = write!(
            out,
            "<li><b>{}</b>: <code>{}</code> {:.2}/min (baseline {:.2})</li>",
            escape(&a.attribute),
            escape(&top.value),
            top.average,
            baseline
        );
    }
    if out.is_empty() {
        "<span>none</span>".to_string()
    } else {
        format!("<ul class=\"attr\">{out}</ul>")
    }
}

/// The report as one HTML page.
pub fn render(view: &StoreView, options: &ReportOptions) -> Result<String, ReportError> {
    let end = view.end_minute().unwrap_or(0);
    let start = view.start_minute().unwrap_or(end);
    let mut episodes: Vec<&Episode> = view
        .episodes()
        .iter()
        .filter(|e| {
            options.from.is_none_or(|f| e.end_or(end) > f) && options.to.is_none_or(|t| e.start < t)
        })
        .collect();
    episodes.sort_by(|a, b| b.start.cmp(&a.start).then(a.series.cmp(&b.series)));
    let total = episodes.len();
    episodes.truncate(options.limit);

    let mut rows = String::new();
    for e in &episodes {
        let Some(key) = view.series().get(e.series as usize) else {
            continue;
        };
        let record = e.summary_record();
        let details = &record.insight_details;
        let stats = &details.insight_context.statistics;
        let direction = match &e.start_record.additional_event_data {
            Some(AdditionalEventData::Trailsight(x)) => x.direction,
            _ if stats.insight.average < stats.baseline.average => Direction::Fall,
            _ => Direction::Rise,
        };
        let direction = match direction {
            Direction::Rise => "rise",
            Direction::Fall => "fall",
        };
        let episode_end = e.end_or(end);
        let duration = episode_end - e.start;
        // The plot: a day before the Start to six hours after the End, within the data.
        let from = (e.start - MINUTES_PER_DAY).max(start.min(e.start));
        let to = (episode_end + 360).min(end.max(episode_end));
        let trace = view.trace(e.series, from, to)?;
        let step = readable_step(to - from, 480);
        // Under the rate: the sliding window this Insight fired on, against its bounds.
        let windows: Vec<i64> = e.firing_window().map(|(w, _)| w).into_iter().collect();
        let size = (
            options.plot_size.0,
            options.plot_size.1 + options.window_height * windows.len() as u32,
        );
        let panel = Panel {
            trace: &trace,
            episodes: view.episodes_of(e.series).collect(),
            step,
            windows,
        };
        // A viewBox lets the page scale the drawing to the table's width.
        let svg = plot::series_svg(&panel, size)?.replacen(
            "<svg ",
            &format!("<svg viewBox=\"0 0 {} {}\" ", size.0, size.1),
            1,
        );
        let why = match explain::sentence(&e.start_record) {
            Some(text) => format!(
                "<tr><td class=\"why\" colspan=\"7\">{}</td></tr>",
                escape(&text)
            ),
            None => String::new(),
        };
        let why = match &e.suppressed {
            Some(reason) => format!(
                "<tr><td class=\"suppressed\" colspan=\"7\">Suppressed (not sent to any output): {}</td></tr>{why}",
                escape(reason)
            ),
            None => why,
        };
        let kind = match (&details.error_code, &details.principal_arn) {
            (Some(code), _) => format!("ApiErrorRateInsight<br><code>{}</code>", escape(code)),
            (None, Some(principal)) => format!(
                "{}<br><code>{}</code>",
                escape(details.series_kind.as_deref().unwrap_or("")),
                escape(principal)
            ),
            (None, None) => "ApiCallRateInsight".to_string(),
        };
        let ratio = if stats.baseline.average > 0.0 {
            stats.insight.average / stats.baseline.average
        } else {
            f64::INFINITY
        };
        let ratio_text = if ratio.is_finite() && ratio < 1000.0 {
            format!("{ratio:.1}×")
        } else {
            "new".to_string()
        };
        let (end_text, end_class) = match e.end {
            Some(m) => (utc(m), ""),
            None => ("still open".to_string(), " class=\"open\""),
        };
        let _ = write!(
            rows,
            "<tbody class=\"insight\"><tr>\
<td data-v=\"{start_v}\">{start_text}<br><span{end_class}>to {end_text}</span></td>\
<td data-v=\"{api}\"><b>{source}</b>:<b>{name}</b><br>{account} / {region}</td>\
<td data-v=\"{kind_v}\">{kind}<br><span class=\"{direction}\">{direction}</span></td>\
<td class=\"num\" data-v=\"{base:.6}\">{base:.2}/min</td>\
<td class=\"num\" data-v=\"{ins:.6}\">{ins:.2}/min<br>{ratio_text}</td>\
<td class=\"num\" data-v=\"{duration}\">{duration_text}</td>\
<td data-v=\"\">{attrs}</td></tr>{why}\
<tr><td class=\"plot\" colspan=\"7\">{svg}</td></tr></tbody>",
            start_v = e.start,
            start_text = escape(&utc(e.start)),
            api = escape(&format!("{}:{}", details.event_source, details.event_name)),
            source = escape(&details.event_source),
            name = escape(&details.event_name),
            account = escape(&key.account),
            region = escape(&key.region),
            kind_v = escape(&format!(
                "{} {}",
                details.insight_type.as_str(),
                details.error_code.as_deref().unwrap_or("")
            )),
            base = stats.baseline.average,
            ins = stats.insight.average,
            duration_text = duration_words(duration),
            attrs = attribution_list(&details.insight_context.attributions),
        );
        rows.push('\n');
    }

    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(SCRIPT));
    let shown = if total > episodes.len() {
        format!("the {} most recent of {total}", episodes.len())
    } else {
        total.to_string()
    };
    let mut page = String::with_capacity(rows.len() + 4096);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{hash}'\">\n\
<title>trailsight Insights report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
<h1>trailsight Insights report</h1>\n\
<p class=\"meta\">{shown} Insight episodes from the {source}; data {data_from} to {data_to} UTC; \
series known: {series}. Click a column header to sort. Under each Insight, the detector's decision in words: the \
sliding window that fired, the calls (or errors) in it, the count expected and the bound it \
crossed. Plots: rate per minute (blue), the baseline's expected rate (black) and bounds (green \
band), the episode shaded red; under it, the calls in the sliding window that fired, against \
the bounds of a window of that length, the window that made the Start in orange.</p>\n\
<table id=\"insights\">\n<colgroup><col style=\"width:11%\"><col style=\"width:20%\">\
<col style=\"width:12%\"><col style=\"width:9%\"><col style=\"width:9%\"><col style=\"width:8%\">\
<col style=\"width:31%\"></colgroup>\n<thead><tr>\
<th data-col=\"0\">Time (UTC)</th><th data-col=\"1\">API</th><th data-col=\"2\">Type</th>\
<th data-col=\"3\">Baseline average</th><th data-col=\"4\">Insight average</th>\
<th data-col=\"5\">Duration</th><th>Top attributions (Insight period)</th>\
</tr></thead>\n{rows}</table>\n\
<script>{SCRIPT}</script>\n</body>\n</html>\n",
        source = escape(&options.source),
        data_from = utc(start),
        data_to = utc(end),
        series = view.series().len(),
    );
    Ok(page)
}
