//! Detection quality: scores a labelled archive from an empty temporary store with the library's
//! [`Engine`] and compares the Insights with the labels — incidents found and missed per kind,
//! false Insights per 1,000 series-days, and how late each Start came (`trailsight eval`).
//!
//! # Rules
//! - An incident (`expect: "insight"`, the default) is **found** when a Start opens on its series
//!   (same `insightType`, account, region, `eventSource`, `eventName`, and `errorCode`: exactly,
//!   `null` meaning none) in the direction labelled (`rise`/`fall`; `any` or absent: either),
//!   with its `eventTime` at most `tolerance` minutes before the labelled `start` and before the
//!   labelled `end`.
//! - A window where nothing may fire (`expect: "none"`) is **found** (passed) when no Start of a
//!   matching series opens inside it; `"*"`, `null` or an absent field match any value.
//! - A **false Insight** is a Start that no `expect: "insight"` label explains (outside every
//!   such window or on another series). Starts inside an `expect: "none"` window are false too.
//! - **Delay** of a found incident: the Start's `eventTime` (the first unusual minute the
//!   detector reports) minus the labelled `start`; **confirmed after**: the minute the detector
//!   confirmed it (`eventTime + insightDuration - 1` of the Start) minus the labelled start, i.e.
//!   how long after the incident began the Start could be written.
//! - **Series-days**: the denominator of the false-alarm rate is, summed over every series the
//!   store knows after the run, the days from the end of its account-region's minimum history
//!   (`min_history_minutes` after its first record) to the end of the archive (its last event
//!   minute): the series-days on which the detector could have fired.
//!
//! # Behaviours (realistic traffic)
//! When the labels carry `behaviours` (normal traffic of `generate --traffic realistic`), every
//! false Start is **attributed** to at most one of them: among the behaviours on the Start's
//! series (matched as an `expect: "insight"` label: exact `errorCode`, `null` = call rate,
//! `"*"` any) whose window, widened to `[start - tolerance, end + 1 day)`, holds the Start's
//! `eventTime`, the one with the shortest window (the most specific), then the latest start,
//! then the first in the file. A Start attributed to an `allowed_change` is **allowed** if it is
//! the first one attributed to that behaviour (one episode per new normal), false beyond;
//! every Start attributed to a `background` behaviour is false. A false Start attributed to
//! none is **unexplained**. Per kind, **series-days** sum, over the distinct series of the
//! kind's behaviours, the span from the first behaviour's start to the last one's end plus
//! the day after (the attribution window), cut at the archive's end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::detect::Profile;
use crate::generate::{BehaviourClass, Expect};
use crate::ingest::ReadLimits;
use crate::insight::{AdditionalEventData, Direction, InsightRecord, InsightState};
use crate::pipeline::{Engine, OnError, PipelineError, RunOptions, RunSummary};
use crate::series::MINUTES_PER_DAY;

/// Default tolerance: a Start up to this many minutes before the labelled start still counts
/// (the scan that dates a Start may reach back into the background just before an incident).
pub const DEFAULT_TOLERANCE_MINUTES: i64 = 5;

/// Errors of the evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The labels file is not valid.
    #[error("{path}: invalid labels: {source}")]
    Labels {
        /// The labels file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A label's time is not RFC 3339.
    #[error("label {id}: {field} {value:?} is not an RFC 3339 time")]
    LabelTime {
        /// The label's id.
        id: String,
        /// `start` or `end`.
        field: &'static str,
        /// The text found.
        value: String,
    },
    /// Scoring failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

/// One label as the evaluator reads it: the shape `trailsight generate` writes, with every
/// series field optional (`"*"`, `null` or absent match any value in `expect: "none"` labels).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Label {
    /// Identifier, for reports.
    #[serde(default)]
    pub id: String,
    /// Kind of incident (rows of the report).
    pub kind: String,
    /// `ApiCallRateInsight` or `ApiErrorRateInsight`.
    #[serde(default)]
    pub insight_type: Option<String>,
    /// `recipientAccountId`.
    #[serde(default)]
    pub account: Option<String>,
    /// `awsRegion`.
    #[serde(default)]
    pub region: Option<String>,
    /// `eventSource`.
    #[serde(default)]
    pub event_source: Option<String>,
    /// `eventName`.
    #[serde(default)]
    pub event_name: Option<String>,
    /// `errorCode`: the error series, `null` for a call-rate series.
    #[serde(default)]
    pub error_code: Option<String>,
    /// `rise`, `fall` or `any`.
    #[serde(default)]
    pub direction: Option<String>,
    /// `insight` (default) or `none`.
    #[serde(default)]
    pub expect: Expect,
    /// First minute of the incident (RFC 3339 UTC).
    pub start: String,
    /// The minute after its last (exclusive).
    pub end: String,
}

/// One normal behaviour as the evaluator reads it (`behaviours` of `labels.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BehaviourLabel {
    /// Identifier, for reports.
    #[serde(default)]
    pub id: String,
    /// Kind of behaviour (rows of the report).
    pub kind: String,
    /// `allowed_change` (one episode acceptable) or `background` (none).
    pub class: BehaviourClass,
    /// `ApiCallRateInsight` or `ApiErrorRateInsight`.
    #[serde(default)]
    pub insight_type: Option<String>,
    /// `recipientAccountId`.
    #[serde(default)]
    pub account: Option<String>,
    /// `awsRegion`.
    #[serde(default)]
    pub region: Option<String>,
    /// `eventSource`.
    #[serde(default)]
    pub event_source: Option<String>,
    /// `eventName`.
    #[serde(default)]
    pub event_name: Option<String>,
    /// `errorCode`: the error series, `null` for a call-rate series.
    #[serde(default)]
    pub error_code: Option<String>,
    /// First minute (RFC 3339 UTC).
    pub start: String,
    /// The minute after the last (exclusive).
    pub end: String,
}

/// How long after a behaviour ends a Start on its series is still attributed to it, minutes.
pub const ATTRIBUTION_AFTER_MINUTES: i64 = MINUTES_PER_DAY;

#[derive(Deserialize)]
struct LabelFile {
    incidents: Vec<Label>,
    #[serde(default)]
    behaviours: Vec<BehaviourLabel>,
}

/// Reads the `behaviours` of a labels file (empty when it has none, as older files).
pub fn read_behaviours(path: &Path) -> Result<Vec<BehaviourLabel>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file: LabelFile = serde_json::from_str(&text).map_err(|source| EvalError::Labels {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(file.behaviours)
}

/// Reads the `incidents` of a labels file (as written by `trailsight generate`).
pub fn read_labels(path: &Path) -> Result<Vec<Label>, EvalError> {
    let bytes = std::fs::read(path).map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_labels(&bytes, path)
}

/// The `incidents` of a labels file's bytes (`path` names it in errors).
pub fn parse_labels(bytes: &[u8], path: &Path) -> Result<Vec<Label>, EvalError> {
    let file: LabelFile = serde_json::from_slice(bytes).map_err(|source| EvalError::Labels {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(file.incidents)
}

/// What scoring an archive gave: its Insights and the series-days they are judged over.
#[derive(Debug, Clone)]
pub struct ScoredArchive {
    /// Every Start and End, in the order written.
    pub insights: Vec<InsightRecord>,
    /// Series known after the run.
    pub series: u64,
    /// Series-days on which an Insight could fire (see the module doc).
    pub series_days: f64,
    /// The run's summary.
    pub summary: RunSummary,
}

/// A store directory removed when dropped.
struct TempStore(PathBuf);

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Scores `inputs` as one complete archive from an empty temporary store with `profile`.
pub fn score_archive(
    inputs: &[PathBuf],
    profile: Profile,
    threads: Option<usize>,
) -> Result<ScoredArchive, EvalError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = TempStore(
        std::env::temp_dir().join(format!("trailsight-eval-{}-{nanos}", std::process::id())),
    );
    let min_history = profile.baseline.min_history_minutes;
    let mut engine = Engine::open(&dir.0.join("db"), profile)?;
    let options = RunOptions {
        limits: ReadLimits::default(),
        on_error: OnError::Continue,
        threads,
        finalize: true,
        progress: false,
    };
    let mut collect = crate::sink::memory::Memory::default();
    let summary = engine.score(inputs, &options, &mut [&mut collect])?;
    let registry = engine.registry();
    let end = summary.counts.max_minute.map_or(0, |m| m + 1);
    let mut minutes = 0i64;
    for id in 0..registry.series.len() {
        let first = registry
            .region_of(id as u32)
            .and_then(|r| registry.first_minute.get(r as usize));
        if let Some(&first) = first {
            minutes += (end - (first + min_history)).max(0);
        }
    }
    Ok(ScoredArchive {
        insights: collect.0,
        series: registry.series.len() as u64,
        series_days: minutes as f64 / MINUTES_PER_DAY as f64,
        summary,
    })
}

/// One label's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelOutcome {
    /// The label's id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// `insight` or `none`.
    pub expect: Expect,
    /// Found (an Insight where expected; nothing where none was expected).
    pub found: bool,
    /// Start minus labelled start, minutes (found incidents only).
    pub delay_minutes: Option<i64>,
    /// Confirming minute minus labelled start, minutes (found incidents only).
    pub confirmed_after_minutes: Option<i64>,
    /// Starts that opened in an `expect: "none"` window (their `eventID`s).
    pub fired: Vec<String>,
}

/// One row of the report: a kind, or the total.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KindReport {
    /// The kind (`total` for the last row).
    pub kind: String,
    /// `insight`, `none`, or `mixed` (total).
    pub expect: String,
    /// Labels of this kind.
    pub labels: u64,
    /// Found (or, for `none`, stayed silent).
    pub found: u64,
    /// Missed (or, for `none`, fired).
    pub missed: u64,
    /// Median delay (Start minus true start) of found incidents, minutes.
    pub delay_median: Option<f64>,
    /// Worst (largest) delay, minutes.
    pub delay_worst: Option<i64>,
    /// Median confirmation delay, minutes.
    pub confirmed_median: Option<f64>,
    /// Worst confirmation delay, minutes.
    pub confirmed_worst: Option<i64>,
}

/// A Start no `expect: "insight"` label explains.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FalseInsight {
    /// `eventTime` of the Start.
    pub event_time: String,
    /// Series, as `insightType account region eventSource eventName [errorCode]`.
    pub series: String,
    /// `rise` or `fall` (when trailsight wrote it).
    pub direction: Option<Direction>,
    /// Observed and expected counts in the firing window, and its length.
    pub observed: Option<u64>,
    /// Expected count in the firing window.
    pub expected: Option<f64>,
    /// Firing window, minutes.
    pub window_minutes: Option<u32>,
    /// Kind of the `expect: "none"` window it opened in, if any.
    pub in_window_of: Option<String>,
    /// The behaviour it is attributed to (`id`), when the labels have behaviours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behaviour: Option<String>,
    /// That behaviour's kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behaviour_kind: Option<String>,
}

/// False Insights per behaviour kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BehaviourKindReport {
    /// The kind.
    pub kind: String,
    /// `allowed_change` or `background`.
    pub class: BehaviourClass,
    /// Behaviour labels of this kind.
    pub behaviours: u64,
    /// Distinct series they are on.
    pub series: u64,
    /// Series-days of the kind (see the module doc).
    pub series_days: f64,
    /// False Starts attributed to the kind.
    pub false_insights: u64,
    /// Allowed Starts (the first episode of an allowed change).
    pub allowed_insights: u64,
    /// False Starts per 1,000 series-days.
    pub false_per_1000_series_days: f64,
    /// Starts (allowed and false) per behaviour, for allowed changes.
    pub episodes_per_change: Option<f64>,
}

/// False Insights of one account.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountReport {
    /// `recipientAccountId`.
    pub account: String,
    /// False Starts on its series (attributed or not).
    pub false_insights: u64,
    /// Allowed Starts on its series.
    pub allowed_insights: u64,
}

/// The evaluation per behaviour (labels with `behaviours`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BehaviourReport {
    /// Per kind, in order of first appearance in the labels.
    pub kinds: Vec<BehaviourKindReport>,
    /// False Starts attributed to no behaviour.
    pub unexplained: u64,
    /// Unexplained false Starts per 1,000 series-days of the whole archive.
    pub unexplained_per_1000_series_days: f64,
    /// Per account, in order.
    pub accounts: Vec<AccountReport>,
    /// Allowed Starts: `eventTime`, series, behaviour id.
    pub allowed: Vec<(String, String, String)>,
    /// Minutes after a behaviour's end during which Starts are still attributed to it.
    pub after_minutes: i64,
}

/// The evaluation of one archive.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Per kind, in order of first appearance in the labels, then `total`.
    pub kinds: Vec<KindReport>,
    /// Per label.
    pub labels: Vec<LabelOutcome>,
    /// Every false Insight.
    pub false_insights: Vec<FalseInsight>,
    /// Starts in the run.
    pub starts: u64,
    /// Series known after the run.
    pub series: u64,
    /// Series-days the false-alarm rate is judged over.
    pub series_days: f64,
    /// False Insights per 1,000 series-days.
    pub false_per_1000_series_days: f64,
    /// Tolerance used (minutes before the labelled start).
    pub tolerance_minutes: i64,
    /// The evaluation per behaviour, when the labels have behaviours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behaviours: Option<BehaviourReport>,
}

fn minute_of(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp().div_euclid(60))
}

fn field_matches(label: &Option<String>, value: &str) -> bool {
    match label.as_deref() {
        None | Some("*") => true,
        Some(v) => v == value,
    }
}

/// The series a label or a behaviour names; `None` or `"*"` in a field matches any value.
struct SeriesFields<'a> {
    insight_type: &'a Option<String>,
    account: &'a Option<String>,
    region: &'a Option<String>,
    event_source: &'a Option<String>,
    event_name: &'a Option<String>,
    /// `null` = a call-rate series, unless `null_code_is_any`.
    error_code: &'a Option<String>,
    /// Whether a `null` error code matches any (labels that expect no Insight).
    null_code_is_any: bool,
}

impl SeriesFields<'_> {
    /// Whether a record is on this series.
    fn matches(&self, r: &InsightRecord) -> bool {
        let d = &r.insight_details;
        let error_ok = match self.error_code.as_deref() {
            Some("*") => true,
            None if self.null_code_is_any => true,
            code => code == d.error_code.as_deref(),
        };
        field_matches(self.insight_type, d.insight_type.as_str())
            && field_matches(self.account, &r.recipient_account_id)
            && field_matches(self.region, &r.aws_region)
            && field_matches(self.event_source, &d.event_source)
            && field_matches(self.event_name, &d.event_name)
            && error_ok
    }
}

impl Label {
    /// The label's series. For `expect: "insight"` the error code must be equal (`null` = a
    /// call-rate series); for `none` a `null` error code matches any.
    fn series(&self) -> SeriesFields<'_> {
        SeriesFields {
            insight_type: &self.insight_type,
            account: &self.account,
            region: &self.region,
            event_source: &self.event_source,
            event_name: &self.event_name,
            error_code: &self.error_code,
            null_code_is_any: self.expect == Expect::None,
        }
    }
}

impl BehaviourLabel {
    /// The behaviour's series (the error code must be equal; `null` = a call-rate series).
    fn series(&self) -> SeriesFields<'_> {
        SeriesFields {
            insight_type: &self.insight_type,
            account: &self.account,
            region: &self.region,
            event_source: &self.event_source,
            event_name: &self.event_name,
            error_code: &self.error_code,
            null_code_is_any: false,
        }
    }
}

fn direction_of(r: &InsightRecord) -> Option<Direction> {
    match &r.additional_event_data {
        Some(AdditionalEventData::Trailsight(x)) => Some(x.direction),
        _ => None,
    }
}

fn direction_ok(label: &Label, r: &InsightRecord) -> bool {
    let wanted = match label.direction.as_deref() {
        Some("rise") => Direction::Rise,
        Some("fall") => Direction::Fall,
        _ => return true,
    };
    direction_of(r).is_none_or(|d| d == wanted)
}

fn series_text(r: &InsightRecord) -> String {
    let d = &r.insight_details;
    let mut s = format!(
        "{} {} {} {} {}",
        d.insight_type.as_str(),
        r.recipient_account_id,
        r.aws_region,
        d.event_source,
        d.event_name
    );
    if let Some(code) = &d.error_code {
        s.push(' ');
        s.push_str(code);
    }
    s
}

fn median(xs: &mut [i64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_unstable();
    let n = xs.len();
    let mid = n / 2;
    Some(if n % 2 == 1 {
        xs[mid] as f64
    } else {
        (xs[mid - 1] + xs[mid]) as f64 / 2.0
    })
}

/// Compares the Insights of a scored archive with its labels.
pub fn compare(
    labels: &[Label],
    scored: &ScoredArchive,
    tolerance_minutes: i64,
) -> Result<Report, EvalError> {
    compare_with_behaviours(labels, &[], scored, tolerance_minutes)
}

fn behaviour_series(b: &BehaviourLabel) -> String {
    let f = |x: &Option<String>| x.clone().unwrap_or_else(|| "*".into());
    format!(
        "{} {} {} {} {} {}",
        f(&b.insight_type),
        f(&b.account),
        f(&b.region),
        f(&b.event_source),
        f(&b.event_name),
        b.error_code.as_deref().unwrap_or("-")
    )
}

/// [`compare`], and the false Starts attributed to the labels' normal `behaviours` (see the
/// module doc); with no behaviour it is exactly [`compare`].
pub fn compare_with_behaviours(
    labels: &[Label],
    behaviours: &[BehaviourLabel],
    scored: &ScoredArchive,
    tolerance_minutes: i64,
) -> Result<Report, EvalError> {
    let starts: Vec<(&InsightRecord, i64)> = scored
        .insights
        .iter()
        .filter(|r| r.insight_details.state == InsightState::Start)
        .filter_map(|r| minute_of(&r.event_time).map(|m| (r, m)))
        .collect();
    let window = |l: &Label| -> Result<(i64, i64), EvalError> {
        let time = |field: &'static str, value: &str| {
            minute_of(value).ok_or_else(|| EvalError::LabelTime {
                id: l.id.clone(),
                field,
                value: value.to_string(),
            })
        };
        Ok((time("start", &l.start)?, time("end", &l.end)?))
    };
    let mut explained = vec![false; starts.len()];
    let mut in_none: Vec<Option<String>> = vec![None; starts.len()];
    let mut outcomes = Vec::with_capacity(labels.len());
    for l in labels {
        let (start, end) = window(l)?;
        let mut outcome = LabelOutcome {
            id: l.id.clone(),
            kind: l.kind.clone(),
            expect: l.expect,
            found: false,
            delay_minutes: None,
            confirmed_after_minutes: None,
            fired: Vec::new(),
        };
        match l.expect {
            Expect::Insight => {
                let mut first: Option<(i64, i64)> = None;
                for (i, (r, m)) in starts.iter().enumerate() {
                    if l.series().matches(r)
                        && direction_ok(l, r)
                        && *m >= start - tolerance_minutes
                        && *m < end
                    {
                        explained[i] = true;
                        let duration = r
                            .insight_details
                            .insight_context
                            .statistics
                            .insight_duration;
                        let confirmed = m + (duration.round() as i64 - 1).max(0);
                        if first.is_none_or(|(f, _)| *m < f) {
                            first = Some((*m, confirmed));
                        }
                    }
                }
                if let Some((m, confirmed)) = first {
                    outcome.found = true;
                    outcome.delay_minutes = Some(m - start);
                    outcome.confirmed_after_minutes = Some(confirmed - start);
                }
            }
            Expect::None => {
                for (i, (r, m)) in starts.iter().enumerate() {
                    if l.series().matches(r) && *m >= start && *m < end {
                        outcome.fired.push(r.event_id.clone());
                        in_none[i].get_or_insert_with(|| l.kind.clone());
                    }
                }
                outcome.found = outcome.fired.is_empty();
            }
        }
        outcomes.push(outcome);
    }

    // Attribution of the unexplained Starts to behaviours.
    let mut windows = Vec::with_capacity(behaviours.len());
    for b in behaviours {
        let time = |field: &'static str, value: &str| {
            minute_of(value).ok_or_else(|| EvalError::LabelTime {
                id: b.id.clone(),
                field,
                value: value.to_string(),
            })
        };
        windows.push((time("start", &b.start)?, time("end", &b.end)?));
    }
    let mut attributed: Vec<Option<usize>> = vec![None; starts.len()];
    for (i, (r, m)) in starts.iter().enumerate() {
        if explained[i] {
            continue;
        }
        attributed[i] = behaviours
            .iter()
            .zip(&windows)
            .enumerate()
            .filter(|(_, (b, &(s, e)))| {
                *m >= s - tolerance_minutes
                    && *m < e + ATTRIBUTION_AFTER_MINUTES
                    && b.series().matches(r)
            })
            .min_by_key(|(j, (_, &(s, e)))| (e - s, -s, *j))
            .map(|(j, _)| j);
    }
    // The first Start (in time) on an allowed change is allowed.
    let mut allowed = vec![false; starts.len()];
    let mut order: Vec<usize> = (0..starts.len()).collect();
    order.sort_by_key(|&i| (starts[i].1, i));
    let mut used = vec![false; behaviours.len()];
    for &i in &order {
        if let Some(j) = attributed[i] {
            if behaviours[j].class == BehaviourClass::AllowedChange && !used[j] {
                used[j] = true;
                allowed[i] = true;
            }
        }
    }

    let false_insights: Vec<FalseInsight> = starts
        .iter()
        .zip(explained.iter().zip(&in_none))
        .enumerate()
        .filter(|(i, (_, (explained, _)))| !**explained && !allowed[*i])
        .map(|(i, ((r, _), (_, in_window)))| {
            let x = match &r.additional_event_data {
                Some(AdditionalEventData::Trailsight(x)) => Some(x),
                _ => None,
            };
            FalseInsight {
                event_time: r.event_time.clone(),
                series: series_text(r),
                direction: x.map(|x| x.direction),
                observed: x.map(|x| x.observed),
                expected: x.map(|x| x.expected),
                window_minutes: x.map(|x| x.window_minutes),
                in_window_of: in_window.clone(),
                behaviour: attributed[i].map(|j| behaviours[j].id.clone()),
                behaviour_kind: attributed[i].map(|j| behaviours[j].kind.clone()),
            }
        })
        .collect();
    let behaviour_report = (!behaviours.is_empty()).then(|| {
        let end = scored.summary.counts.max_minute.map_or(i64::MAX, |m| m + 1);
        let mut kinds: Vec<BehaviourKindReport> = Vec::new();
        // (kind, series) -> (first start, last end)
        let mut spans: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
        for (b, &(s, e)) in behaviours.iter().zip(&windows) {
            if !kinds.iter().any(|k| k.kind == b.kind) {
                kinds.push(BehaviourKindReport {
                    kind: b.kind.clone(),
                    class: b.class,
                    behaviours: 0,
                    series: 0,
                    series_days: 0.0,
                    false_insights: 0,
                    allowed_insights: 0,
                    false_per_1000_series_days: 0.0,
                    episodes_per_change: None,
                });
            }
            if let Some(k) = kinds.iter_mut().find(|k| k.kind == b.kind) {
                k.behaviours += 1;
            }
            let span = spans
                .entry((b.kind.clone(), behaviour_series(b)))
                .or_insert((s, e));
            span.0 = span.0.min(s);
            span.1 = span.1.max(e);
        }
        for ((kind, _), (s, e)) in &spans {
            if let Some(k) = kinds.iter_mut().find(|k| &k.kind == kind) {
                k.series += 1;
                let to = (e + ATTRIBUTION_AFTER_MINUTES).min(end.max(*e));
                k.series_days += (to - s).max(0) as f64 / MINUTES_PER_DAY as f64;
            }
        }
        let mut accounts: BTreeMap<String, AccountReport> = BTreeMap::new();
        let mut unexplained = 0u64;
        let mut allowed_list = Vec::new();
        for (i, (r, _)) in starts.iter().enumerate() {
            if explained[i] {
                continue;
            }
            let account = accounts
                .entry(r.recipient_account_id.clone())
                .or_insert_with(|| AccountReport {
                    account: r.recipient_account_id.clone(),
                    false_insights: 0,
                    allowed_insights: 0,
                });
            if allowed[i] {
                account.allowed_insights += 1;
            } else {
                account.false_insights += 1;
            }
            match attributed[i] {
                None => unexplained += 1,
                Some(j) => {
                    let b = &behaviours[j];
                    if allowed[i] {
                        allowed_list.push((r.event_time.clone(), series_text(r), b.id.clone()));
                    }
                    if let Some(k) = kinds.iter_mut().find(|k| k.kind == b.kind) {
                        if allowed[i] {
                            k.allowed_insights += 1;
                        } else {
                            k.false_insights += 1;
                        }
                    }
                }
            }
        }
        for k in &mut kinds {
            if k.series_days > 0.0 {
                k.false_per_1000_series_days = k.false_insights as f64 * 1000.0 / k.series_days;
            }
            if k.class == BehaviourClass::AllowedChange && k.behaviours > 0 {
                k.episodes_per_change =
                    Some((k.false_insights + k.allowed_insights) as f64 / k.behaviours as f64);
            }
        }
        BehaviourReport {
            kinds,
            unexplained,
            unexplained_per_1000_series_days: if scored.series_days > 0.0 {
                unexplained as f64 * 1000.0 / scored.series_days
            } else {
                0.0
            },
            accounts: accounts.into_values().collect(),
            allowed: allowed_list,
            after_minutes: ATTRIBUTION_AFTER_MINUTES,
        }
    });

    let mut order: Vec<String> = Vec::new();
    let mut by_kind: BTreeMap<String, Vec<&LabelOutcome>> = BTreeMap::new();
    for o in &outcomes {
        if !by_kind.contains_key(&o.kind) {
            order.push(o.kind.clone());
        }
        by_kind.entry(o.kind.clone()).or_default().push(o);
    }
    let row = |kind: &str, group: &[&LabelOutcome]| {
        let expects: Vec<Expect> = group.iter().map(|o| o.expect).collect();
        let expect = if expects.iter().all(|e| *e == Expect::Insight) {
            "insight"
        } else if expects.iter().all(|e| *e == Expect::None) {
            "none"
        } else {
            "mixed"
        };
        let mut delays: Vec<i64> = group.iter().filter_map(|o| o.delay_minutes).collect();
        let mut confirmed: Vec<i64> = group
            .iter()
            .filter_map(|o| o.confirmed_after_minutes)
            .collect();
        let found = group.iter().filter(|o| o.found).count() as u64;
        KindReport {
            kind: kind.to_string(),
            expect: expect.to_string(),
            labels: group.len() as u64,
            found,
            missed: group.len() as u64 - found,
            delay_worst: delays.iter().copied().max(),
            delay_median: median(&mut delays),
            confirmed_worst: confirmed.iter().copied().max(),
            confirmed_median: median(&mut confirmed),
        }
    };
    let mut kinds: Vec<KindReport> = order
        .iter()
        .map(|k| row(k, by_kind.get(k).map(Vec::as_slice).unwrap_or(&[])))
        .collect();
    let all: Vec<&LabelOutcome> = outcomes.iter().collect();
    kinds.push(row("total", &all));
    let false_per_1000 = if scored.series_days > 0.0 {
        false_insights.len() as f64 * 1000.0 / scored.series_days
    } else {
        0.0
    };
    Ok(Report {
        kinds,
        labels: outcomes,
        false_insights,
        starts: starts.len() as u64,
        series: scored.series,
        series_days: scored.series_days,
        false_per_1000_series_days: false_per_1000,
        tolerance_minutes,
        behaviours: behaviour_report,
    })
}

/// Scores an archive and compares it with its labels in one call.
pub fn evaluate(
    inputs: &[PathBuf],
    labels: &[Label],
    profile: Profile,
    threads: Option<usize>,
    tolerance_minutes: i64,
) -> Result<Report, EvalError> {
    let scored = score_archive(inputs, profile, threads)?;
    compare(labels, &scored, tolerance_minutes)
}

impl Report {
    /// The report as a plain-text table, then the false Insights one per line.
    pub fn to_table(&self) -> String {
        use std::fmt::Write;
        let opt = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v}"));
        let opti = |x: Option<i64>| x.map_or("-".to_string(), |v| format!("{v}"));
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<20} {:<7} {:>6} {:>5} {:>6} {:>12} {:>11} {:>16} {:>15}",
            "kind",
            "expect",
            "labels",
            "found",
            "missed",
            "delay median",
            "delay worst",
            "confirmed median",
            "confirmed worst"
        );
        for k in &self.kinds {
            let _ = writeln!(
                out,
                "{:<20} {:<7} {:>6} {:>5} {:>6} {:>12} {:>11} {:>16} {:>15}",
                k.kind,
                k.expect,
                k.labels,
                k.found,
                k.missed,
                opt(k.delay_median),
                opti(k.delay_worst),
                opt(k.confirmed_median),
                opti(k.confirmed_worst)
            );
        }
        let _ = writeln!(
            out,
            "false Insights: {} of {} Starts, over {:.1} series-days ({} series) = {:.3} per 1,000 series-days",
            self.false_insights.len(),
            self.starts,
            self.series_days,
            self.series,
            self.false_per_1000_series_days
        );
        if let Some(b) = &self.behaviours {
            let _ = writeln!(
                out,
                "{:<22} {:<14} {:>10} {:>7} {:>11} {:>6} {:>8} {:>14} {:>9}",
                "behaviour",
                "class",
                "behaviours",
                "series",
                "series-days",
                "false",
                "allowed",
                "false/1000 s-d",
                "episodes"
            );
            for k in &b.kinds {
                let _ = writeln!(
                    out,
                    "{:<22} {:<14} {:>10} {:>7} {:>11.1} {:>6} {:>8} {:>14.2} {:>9}",
                    k.kind,
                    match k.class {
                        BehaviourClass::AllowedChange => "allowed_change",
                        BehaviourClass::Background => "background",
                    },
                    k.behaviours,
                    k.series,
                    k.series_days,
                    k.false_insights,
                    k.allowed_insights,
                    k.false_per_1000_series_days,
                    k.episodes_per_change
                        .map_or("-".to_string(), |e| format!("{e:.2}"))
                );
            }
            let _ = writeln!(
                out,
                "unexplained false Insights: {} ({:.3} per 1,000 series-days)",
                b.unexplained, b.unexplained_per_1000_series_days
            );
            for a in &b.accounts {
                let _ = writeln!(
                    out,
                    "account {}: {} false, {} allowed",
                    a.account, a.false_insights, a.allowed_insights
                );
            }
        }
        for o in self.labels.iter().filter(|o| !o.found) {
            let what = match o.expect {
                Expect::Insight => "MISSED".to_string(),
                Expect::None => format!("FIRED {} times", o.fired.len()),
            };
            let _ = writeln!(out, "  {} {} {}", o.id, o.kind, what);
        }
        for f in &self.false_insights {
            let _ = writeln!(
                out,
                "  FALSE {} {} {} observed {} expected {} in {} min{}",
                f.event_time,
                f.series,
                f.direction.map_or("?", |d| match d {
                    Direction::Rise => "rise",
                    Direction::Fall => "fall",
                }),
                f.observed.map_or("?".into(), |v| v.to_string()),
                f.expected.map_or("?".into(), |v| format!("{v:.4}")),
                f.window_minutes.map_or("?".into(), |v| v.to_string()),
                f.in_window_of
                    .as_ref()
                    .map_or(String::new(), |k| format!(" (in the {k} window)"))
                    + &f.behaviour_kind
                        .as_ref()
                        .map_or(String::new(), |k| format!(" [{k}]"))
            );
        }
        out
    }
}

#[cfg(test)]
mod tests;
