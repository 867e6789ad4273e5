//! Flat tables for notebooks and BI tools: per-minute counts, the baseline (expected value and
//! bounds) per series and step, and the Insights, written as Parquet or CSV with polars.
//! Rows are written in batches, so memory stays bounded whatever the store's size. The column
//! names and types are part of trailsight's contract (docs/analyst-views.md, "Exports").

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use polars::prelude::*;

use crate::insight::{AdditionalEventData, Direction, InsightRecord, InsightState};
use crate::series::{Minute, SeriesKey};
use crate::view::{explain, StoreView, ViewError};

/// Rows per written batch (bounds memory; Parquet row groups are at least this big).
const BATCH_ROWS: usize = 262_144;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The output name says neither Parquet nor CSV.
    #[error("{0}: the output must end in .parquet or .csv")]
    Format(String),
    /// Reading the store.
    #[error(transparent)]
    View(#[from] ViewError),
    /// Creating the file.
    #[error("creating {path}: {source}")]
    Create {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// polars failed to build or write a table.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// What polars said.
        source: PolarsError,
    },
}

/// What to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Per-minute counts of every series (minutes without calls omitted).
    Counts,
    /// Count, expected value and bounds per series and step over a range (every step).
    Baselines,
    /// One row per Insights record.
    Insights,
}

/// The file format, from the output's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Apache Parquet (zstd).
    Parquet,
    /// CSV with a header; times in RFC 3339, UTC.
    Csv,
}

impl Format {
    /// The format a path's extension names.
    pub fn of(path: &Path) -> Result<Format, ExportError> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("parquet") => Ok(Format::Parquet),
            Some("csv") => Ok(Format::Csv),
            _ => Err(ExportError::Format(path.display().to_string())),
        }
    }
}

/// Which rows.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Series ids to export (counts and baselines).
    pub series: Vec<u32>,
    /// Range start (counts, baselines; insights by event time).
    pub from: Minute,
    /// Range end, exclusive.
    pub to: Minute,
    /// Minutes per row of the baselines table.
    pub step: i64,
}

enum Writer {
    Parquet(Box<polars::io::parquet::write::BatchedWriter<File>>),
    Csv(polars::io::csv::write::BatchedWriter<File>),
}

/// Writes frames to one file, opening the batched writer with the first frame's schema.
struct Sink<'a> {
    path: &'a Path,
    format: Format,
    writer: Option<Writer>,
    rows: u64,
}

impl<'a> Sink<'a> {
    fn err(&self) -> impl Fn(PolarsError) -> ExportError + '_ {
        move |source| ExportError::Write {
            path: self.path.display().to_string(),
            source,
        }
    }

    fn write(&mut self, df: DataFrame) -> Result<(), ExportError> {
        if self.writer.is_none() {
            let file = File::create(self.path).map_err(|source| ExportError::Create {
                path: self.path.display().to_string(),
                source,
            })?;
            let schema = df.schema().clone();
            let writer = match self.format {
                Format::Parquet => Writer::Parquet(Box::new(
                    ParquetWriter::new(file)
                        .with_compression(ParquetCompression::Zstd(None))
                        .batched(&schema)
                        .map_err(self.err())?,
                )),
                Format::Csv => Writer::Csv(
                    CsvWriter::new(file)
                        .include_header(true)
                        .with_datetime_format(Some("%Y-%m-%dT%H:%M:%SZ".into()))
                        .batched(&schema)
                        .map_err(self.err())?,
                ),
            };
            self.writer = Some(writer);
        }
        self.rows += df.height() as u64;
        let result = match self.writer.as_mut() {
            Some(Writer::Parquet(w)) => w.write_batch(&df),
            Some(Writer::Csv(w)) => w.write_batch(&df),
            None => Ok(()),
        };
        result.map_err(self.err())
    }

    fn finish(mut self) -> Result<u64, ExportError> {
        let result = match self.writer.as_mut() {
            Some(Writer::Parquet(w)) => w.finish().map(|_| ()),
            Some(Writer::Csv(w)) => w.finish(),
            None => Ok(()),
        };
        result.map_err(self.err())?;
        Ok(self.rows)
    }
}

/// A time column: milliseconds since the epoch, typed `Datetime(ms, "UTC")` (built as
/// integers and then typed: a cast would drop the zone without polars' `timezones` feature).
fn datetime(name: &str, minutes: Vec<i64>) -> PolarsResult<Column> {
    let ms: Vec<i64> = minutes
        .into_iter()
        .map(|m| m.saturating_mul(60_000))
        .collect();
    Ok(Int64Chunked::from_vec(name.into(), ms)
        .into_datetime(TimeUnit::Milliseconds, Some(TimeZone::UTC))
        .into_column())
}

/// The ten columns that name a series and a time, shared by counts and baselines.
#[derive(Default)]
struct KeyColumns {
    minute: Vec<i64>,
    insight_type: Vec<&'static str>,
    account: Vec<String>,
    region: Vec<String>,
    event_source: Vec<String>,
    event_name: Vec<String>,
    error_code: Vec<Option<String>>,
    event_category: Vec<&'static str>,
    series_kind: Vec<&'static str>,
    principal: Vec<Option<String>>,
}

impl KeyColumns {
    fn push(&mut self, minute: Minute, key: &SeriesKey) {
        self.minute.push(minute);
        self.insight_type.push(key.insight_type.as_str());
        self.account.push(key.account.to_string());
        self.region.push(key.region.to_string());
        self.event_source.push(key.event_source.to_string());
        self.event_name.push(key.event_name.to_string());
        self.error_code
            .push(key.error_code.as_deref().map(str::to_string));
        self.event_category.push(key.category.as_str());
        self.series_kind
            .push(key.scope.kind_name().unwrap_or(SERIES_KIND_API));
        self.principal
            .push(key.scope.principal().map(|p| p.to_string()));
    }

    fn len(&self) -> usize {
        self.minute.len()
    }

    fn columns(&mut self) -> PolarsResult<Vec<Column>> {
        let k = std::mem::take(self);
        Ok(vec![
            datetime("minute", k.minute)?,
            Column::new("insight_type".into(), k.insight_type),
            Column::new("account".into(), k.account),
            Column::new("region".into(), k.region),
            Column::new("event_source".into(), k.event_source),
            Column::new("event_name".into(), k.event_name),
            Column::new("error_code".into(), k.error_code),
            Column::new("event_category".into(), k.event_category),
            Column::new("series_kind".into(), k.series_kind),
            Column::new("principal".into(), k.principal),
        ])
    }
}

/// `series_kind` of an API's series (a principal's is its `insightDetails.seriesKind`).
const SERIES_KIND_API: &str = "api";

/// Writes `table` to `out` (Parquet or CSV by extension); returns the rows written.
pub fn export(
    view: &StoreView,
    table: Table,
    options: &ExportOptions,
    out: &Path,
) -> Result<u64, ExportError> {
    let mut sink = Sink {
        path: out,
        format: Format::of(out)?,
        writer: None,
        rows: 0,
    };
    match table {
        Table::Counts => counts(view, options, &mut sink)?,
        Table::Baselines => baselines(view, options, &mut sink)?,
        Table::Insights => insights(view, options, &mut sink)?,
    }
    sink.finish()
}

fn counts(view: &StoreView, o: &ExportOptions, sink: &mut Sink<'_>) -> Result<(), ExportError> {
    let mut keys = KeyColumns::default();
    let mut count: Vec<u32> = Vec::new();
    let flush = |keys: &mut KeyColumns, count: &mut Vec<u32>, sink: &mut Sink<'_>| {
        let mut cols = keys.columns().map_err(sink.err())?;
        cols.push(Column::new("count".into(), std::mem::take(count)));
        let df = DataFrame::new_infer_height(cols).map_err(sink.err())?;
        sink.write(df)
    };
    for &id in &o.series {
        let Some(key) = view.series().get(id as usize) else {
            continue;
        };
        for (minute, c) in view.counts(id, o.from, o.to)? {
            keys.push(minute, key);
            count.push(c);
        }
        if keys.len() >= BATCH_ROWS {
            flush(&mut keys, &mut count, sink)?;
        }
    }
    if keys.len() > 0 || sink.rows == 0 {
        flush(&mut keys, &mut count, sink)?;
    }
    Ok(())
}

fn baselines(view: &StoreView, o: &ExportOptions, sink: &mut Sink<'_>) -> Result<(), ExportError> {
    #[derive(Default)]
    struct Rows {
        keys: KeyColumns,
        minutes: Vec<i64>,
        count: Vec<u64>,
        expected: Vec<Option<f64>>,
        lower: Vec<Option<f64>>,
        upper: Vec<Option<f64>>,
        in_insight: Vec<bool>,
    }
    let flush = |rows: &mut Rows, sink: &mut Sink<'_>| {
        let mut r = std::mem::take(rows);
        let mut cols = r.keys.columns().map_err(sink.err())?;
        cols.extend([
            Column::new("minutes".into(), r.minutes),
            Column::new("count".into(), r.count),
            Column::new("expected".into(), r.expected),
            Column::new("lower".into(), r.lower),
            Column::new("upper".into(), r.upper),
            Column::new("in_insight".into(), r.in_insight),
        ]);
        let df = DataFrame::new_infer_height(cols).map_err(sink.err())?;
        sink.write(df)
    };
    let mut rows = Rows::default();
    let end = view.end_minute().unwrap_or(o.to);
    for &id in &o.series {
        let Some(key) = view.series().get(id as usize).cloned() else {
            continue;
        };
        let episodes: Vec<(Minute, Minute)> = view
            .episodes_of(id)
            .map(|e| (e.start, e.end_or(end)))
            .collect();
        let trace = view.trace(id, o.from, o.to)?;
        for b in trace.buckets(o.step) {
            rows.keys.push(b.start, &key);
            rows.minutes.push(b.minutes);
            rows.count.push(b.count);
            rows.expected.push(b.expected);
            rows.lower.push(b.lower);
            rows.upper.push(b.upper);
            rows.in_insight.push(
                episodes
                    .iter()
                    .any(|&(s, t)| s < b.start + b.minutes && t > b.start),
            );
        }
        if rows.keys.len() >= BATCH_ROWS {
            flush(&mut rows, sink)?;
        }
    }
    if rows.keys.len() > 0 || sink.rows == 0 {
        flush(&mut rows, sink)?;
    }
    Ok(())
}

fn insights(view: &StoreView, o: &ExportOptions, sink: &mut Sink<'_>) -> Result<(), ExportError> {
    let all = view.insight_records()?;
    // The decision in words, by episode: an End row repeats its Start's sentence (the Start
    // may lie before the exported range).
    let sentences: HashMap<String, String> = all
        .iter()
        .filter(|r| r.insight_details.state == InsightState::Start)
        .filter_map(|r| Some((r.shared_event_id.clone(), explain::sentence(r)?)))
        .collect();
    let records: Vec<(Minute, InsightRecord)> = all
        .into_iter()
        .filter_map(|r| crate::ingest::parse_event_time(&r.event_time).map(|m| (m, r)))
        .filter(|(m, _)| (o.from..o.to).contains(m))
        .collect();
    let n = records.len();
    let mut event_time = Vec::with_capacity(n);
    let mut text: [Vec<Option<String>>; 18] = Default::default();
    let mut floats: [Vec<Option<f64>>; 6] = Default::default();
    let mut window = Vec::with_capacity(n);
    let mut ints: [Vec<Option<u64>>; 3] = Default::default();
    let mut sentence: Vec<Option<String>> = Vec::with_capacity(n);
    for (minute, r) in &records {
        sentence.push(sentences.get(&r.shared_event_id).cloned());
        let d = &r.insight_details;
        let stats = &d.insight_context.statistics;
        let explanation = match &r.additional_event_data {
            Some(AdditionalEventData::Trailsight(x)) => Some(x),
            _ => None,
        };
        let top = |attribute: &str| {
            d.insight_context
                .attributions
                .iter()
                .find(|a| a.attribute == attribute)
                .and_then(|a| a.insight.first())
                .map(|v| v.value.clone())
        };
        event_time.push(*minute);
        let values = [
            Some(r.event_id.clone()),
            Some(r.shared_event_id.clone()),
            Some(d.state.as_str().to_string()),
            Some(d.insight_type.as_str().to_string()),
            Some(d.event_source.clone()),
            Some(d.event_name.clone()),
            d.error_code.clone(),
            d.source_event_category.clone(),
            Some(r.recipient_account_id.clone()),
            Some(r.aws_region.clone()),
            explanation.map(|x| {
                match x.direction {
                    Direction::Rise => "rise",
                    Direction::Fall => "fall",
                }
                .to_string()
            }),
            top("userIdentityArn"),
            top("userAgent"),
            top("errorCode"),
            serde_json::to_string(&d.insight_context.attributions).ok(),
            view.suppressed_reason(&r.shared_event_id)
                .map(str::to_string),
            Some(
                d.series_kind
                    .clone()
                    .unwrap_or_else(|| SERIES_KIND_API.to_owned()),
            ),
            d.principal_arn.clone(),
        ];
        for (col, v) in text.iter_mut().zip(values) {
            col.push(v);
        }
        let f = [
            Some(stats.baseline.average),
            Some(stats.insight.average),
            stats.baseline_duration,
            Some(stats.insight_duration),
            explanation.map(|x| x.expected),
            explanation.map(|x| x.p_value),
        ];
        for (col, v) in floats.iter_mut().zip(f) {
            col.push(v);
        }
        window.push(explanation.map(|x| x.window_minutes));
        let i = [
            explanation.map(|x| x.observed),
            explanation.map(|x| x.upper_bound),
            explanation.and_then(|x| x.lower_bound),
        ];
        for (col, v) in ints.iter_mut().zip(i) {
            col.push(v);
        }
    }
    let [event_id, shared_event_id, state, insight_type, event_source, event_name, error_code, event_category, account, region, direction, top_arn, top_agent, top_code, attributions, suppressed, series_kind, principal] =
        text;
    let [baseline_average, insight_average, baseline_duration, insight_duration, expected, p_value] =
        floats;
    let [observed, upper_bound, lower_bound] = ints;
    let cols = vec![
        Column::new("event_id".into(), event_id),
        Column::new("shared_event_id".into(), shared_event_id),
        datetime("event_time", event_time).map_err(sink.err())?,
        Column::new("state".into(), state),
        Column::new("insight_type".into(), insight_type),
        Column::new("event_source".into(), event_source),
        Column::new("event_name".into(), event_name),
        Column::new("error_code".into(), error_code),
        Column::new("event_category".into(), event_category),
        Column::new("account".into(), account),
        Column::new("region".into(), region),
        Column::new("baseline_average".into(), baseline_average),
        Column::new("insight_average".into(), insight_average),
        Column::new("baseline_duration".into(), baseline_duration),
        Column::new("insight_duration".into(), insight_duration),
        Column::new("direction".into(), direction),
        Column::new("window_minutes".into(), window),
        Column::new("observed".into(), observed),
        Column::new("expected".into(), expected),
        Column::new("upper_bound".into(), upper_bound),
        Column::new("lower_bound".into(), lower_bound),
        Column::new("p_value".into(), p_value),
        Column::new("top_user_identity_arn".into(), top_arn),
        Column::new("top_user_agent".into(), top_agent),
        Column::new("top_error_code".into(), top_code),
        Column::new("attributions_json".into(), attributions),
        Column::new("explanation".into(), sentence),
        Column::new("suppressed".into(), suppressed),
        Column::new("series_kind".into(), series_kind),
        Column::new("principal".into(), principal),
    ];
    let df = DataFrame::new_infer_height(cols).map_err(sink.err())?;
    sink.write(df)
}
