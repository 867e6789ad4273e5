//! The analyst's view of a store: which series it knows, their stored per-minute counts, the
//! baseline's expected rate and bounds for any minute (recomputed from the stored counts with
//! the store's own profile), and the Insight episodes. [`crate::plot`], [`crate::report`] and
//! [`crate::export`] are built on it.
//!
//! A store held by a running `watch` cannot be opened by a second process (sled locks it);
//! `watch --snapshot-interval` publishes a consistent copy beside it ([`snapshot`]), and
//! [`StoreView::open`] reads that copy when the store itself is busy.

pub mod explain;
pub mod snapshot;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::aggregate::topk::Attributions;
use crate::aggregate::Registry;
use crate::detect::baseline::{Coverage, HourFit, MAX_WINDOW_MINUTES};
use crate::detect::model::CountModel;
use crate::detect::{Profile, Sensitivity, SeriesContext, SeriesDetector};
use crate::insight::{InsightRecord, InsightState};
use crate::series::{InsightType, Minute, Scope, SeriesKey, MINUTES_PER_DAY};
use crate::store::{Meta, Store, StoreError};

/// Why a store cannot be viewed.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The folder holds no trailsight store (a wrong path must not create an empty one).
    #[error("{0} is not a trailsight store (no TRAILSIGHT_STORE marker): check --store")]
    NotAStore(PathBuf),
    /// The store is held by another process and it has published no snapshot.
    #[error(
        "the store {path} is in use by {holder} and has no snapshot to read; run `watch` with \
         --snapshot-interval (default 300 s) or read it when that process has stopped"
    )]
    Busy {
        /// The store.
        path: PathBuf,
        /// Who holds it.
        holder: String,
    },
    /// The store (or its snapshot) could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Copying the snapshot failed.
    #[error("reading the snapshot {path}: {source}")]
    Snapshot {
        /// The snapshot folder.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// No series matches the selection.
    #[error("no series matches {0}; `trailsight series --store DIR` lists them")]
    NoSeries(String),
    /// Several series match and one was needed.
    #[error(
        "{count} series match {what}; narrow it with --account/--region/--error-code: {examples}"
    )]
    Ambiguous {
        /// The selection.
        what: String,
        /// How many matched.
        count: usize,
        /// Some of them.
        examples: String,
    },
}

/// How long a reader waits for a store held by another process without a snapshot.
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Where the data came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// The store itself.
    Store,
    /// The snapshot a running `watch` published (its time, RFC 3339).
    Snapshot {
        /// When the snapshot was written.
        written: String,
    },
}

/// Which series to look at. Empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct SeriesFilter {
    /// `eventSource` (e.g. `ec2.amazonaws.com`).
    pub event_source: Option<String>,
    /// `eventName` (e.g. `RunInstances`).
    pub event_name: Option<String>,
    /// `Some(code)`: the error-rate series of that code; `None`: the call-rate series (unless
    /// `any_type`).
    pub error_code: Option<String>,
    /// Match both call-rate and error-rate series.
    pub any_type: bool,
    /// Account id.
    pub account: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// A principal (user or role ARN; an assumed role's session ARN stands for its role): that
    /// principal's series, its write calls or (`reads`) its read calls. Without it, a filter
    /// that names an API or an error code matches APIs' series only.
    pub principal: Option<String>,
    /// With `principal`: its read calls rather than its write calls.
    pub reads: bool,
}

impl SeriesFilter {
    /// A filter from `eventSource:eventName`.
    pub fn api(api: &str) -> SeriesFilter {
        let (source, name) = api.split_once(':').unwrap_or(("", api));
        SeriesFilter {
            event_source: (!source.is_empty()).then(|| source.to_string()),
            event_name: Some(name.to_string()),
            ..SeriesFilter::default()
        }
    }

    /// Whether a series matches.
    pub fn matches(&self, key: &SeriesKey) -> bool {
        fn eq(want: &Option<String>, have: &str) -> bool {
            want.as_deref().is_none_or(|w| w == have)
        }
        match (&self.principal, &key.scope) {
            (Some(want), Scope::PrincipalWrites(have)) if !self.reads => {
                if *crate::series::principal_of(want) != **have {
                    return false;
                }
            }
            (Some(want), Scope::PrincipalReads(have)) if self.reads => {
                if *crate::series::principal_of(want) != **have {
                    return false;
                }
            }
            (Some(_), _) => return false,
            (None, Scope::Api) => {}
            (None, _) => {
                if !self.any_type || self.event_name.is_some() || self.error_code.is_some() {
                    return false;
                }
            }
        }
        let type_ok = match (&self.error_code, &key.error_code) {
            (Some(want), Some(have)) => want == &**have,
            (Some(_), None) => false,
            (None, _) if self.any_type => true,
            (None, code) => code.is_none(),
        };
        type_ok
            && eq(&self.event_source, &key.event_source)
            && eq(&self.event_name, &key.event_name)
            && eq(&self.account, &key.account)
            && eq(&self.region, &key.region)
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        let api = format!(
            "{}:{}",
            self.event_source.as_deref().unwrap_or("*"),
            self.event_name.as_deref().unwrap_or("*")
        );
        match &self.principal {
            Some(p) if self.reads => parts.push(format!("read calls of {p}")),
            Some(p) => parts.push(format!("write calls of {p}")),
            None => parts.push(api),
        }
        if let Some(c) = &self.error_code {
            parts.push(format!("errorCode={c}"));
        }
        if let Some(a) = &self.account {
            parts.push(format!("account={a}"));
        }
        if let Some(r) = &self.region {
            parts.push(format!("region={r}"));
        }
        parts.join(" ")
    }
}

/// One Insight episode: its Start and (once written) its End.
#[derive(Debug, Clone)]
pub struct Episode {
    /// The series id.
    pub series: u32,
    /// `sharedEventID` of the pair.
    pub shared_event_id: String,
    /// First unusual minute.
    pub start: Minute,
    /// End of the unusual activity (exclusive), when the End was written.
    pub end: Option<Minute>,
    /// The Start record.
    pub start_record: InsightRecord,
    /// The End record.
    pub end_record: Option<InsightRecord>,
    /// Why a suppression rule held it back from the outputs (`None`: it was sent).
    pub suppressed: Option<String>,
}

impl Episode {
    /// The end, or `open_until` for an episode still open.
    pub fn end_or(&self, open_until: Minute) -> Minute {
        self.end.unwrap_or(open_until).max(self.start + 1)
    }

    /// The record that describes the whole episode best: the End when written (its averages
    /// cover the episode), else the Start.
    pub fn summary_record(&self) -> &InsightRecord {
        self.end_record.as_ref().unwrap_or(&self.start_record)
    }

    /// The sliding window that made the Start: its length in minutes and the minute it ended
    /// at (inclusive), from the Start record's explanation; `None` without one.
    pub fn firing_window(&self) -> Option<(i64, Minute)> {
        explain::firing_window(&self.start_record)
            .map(|(x, last)| (i64::from(x.window_minutes.max(1)), last))
    }
}

/// An open store (or snapshot), read-only in spirit: nothing here writes to it.
pub struct StoreView {
    store: Store,
    registry: Registry,
    profile: Profile,
    meta: Meta,
    counts_from: Option<Minute>,
    episodes: Vec<Episode>,
    /// Suppressed episodes' reasons, by `sharedEventID`.
    suppressed: BTreeMap<String, crate::suppress::Suppressed>,
    origin: Origin,
    /// The private copy of a snapshot (removed when the view is dropped).
    _copy: Option<tempfile::TempDir>,
}

impl StoreView {
    /// Opens the store in `dir`, or its published snapshot when another process holds it.
    /// `profile` overrides the profile recorded in the store.
    pub fn open(dir: &Path, profile: Option<Profile>) -> Result<StoreView, ViewError> {
        if !crate::store::is_store(dir) {
            return Err(ViewError::NotAStore(dir.to_path_buf()));
        }
        // A store in use: its snapshot when `watch` publishes one; otherwise the holder is
        // likely another reader (plot, export, report), which is quick: wait for it a little.
        let waited = std::time::Instant::now();
        let (store, origin, copy) = loop {
            match Store::open_read_only(dir) {
                Ok(store) => break (store, Origin::Store, None),
                Err(StoreError::InUse { path, holder }) => match snapshot::open_copy(dir)? {
                    Some((store, written, copy)) => {
                        break (store, Origin::Snapshot { written }, Some(copy))
                    }
                    None if waited.elapsed() < BUSY_WAIT => {
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                    None => return Err(ViewError::Busy { path, holder }),
                },
                Err(e) => return Err(e.into()),
            }
        };
        let registry = store.registry()?;
        let profile = match profile {
            Some(p) => p,
            None => match store.profile()? {
                Some(p) => p,
                // Every checkpoint records the profile: only a store never checkpointed has none.
                None if registry.series.is_empty() => Profile::builtin(),
                None => {
                    return Err(StoreError::Corrupt {
                        path: dir.to_path_buf(),
                        what: "the detector profile (m/profile) is missing while series are stored (pass --profile to read it with a profile)".into(),
                    }
                    .into())
                }
            },
        };
        let meta = store.meta()?;
        let counts_from = store.counts_from()?;
        let mut episodes = pair_episodes(&registry, store.insights()?);
        let suppressed = store.suppressed()?;
        for e in &mut episodes {
            e.suppressed = suppressed.get(&e.shared_event_id).map(|s| s.reason.clone());
        }
        Ok(StoreView {
            store,
            registry,
            profile,
            meta,
            counts_from,
            episodes,
            suppressed,
            origin,
            _copy: copy,
        })
    }

    /// Where the data came from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The profile baselines are recomputed with.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Every known series, by id.
    pub fn series(&self) -> &[SeriesKey] {
        &self.registry.series
    }

    /// Every Insight episode, in order of start.
    pub fn episodes(&self) -> &[Episode] {
        &self.episodes
    }

    /// The stored Insight records, in the store's order.
    pub fn insight_records(&self) -> Result<Vec<InsightRecord>, ViewError> {
        Ok(self.store.insights()?)
    }

    /// Why the episode with this `sharedEventID` was suppressed, when it was.
    pub fn suppressed_reason(&self, shared_event_id: &str) -> Option<&str> {
        self.suppressed
            .get(shared_event_id)
            .map(|s| s.reason.as_str())
    }

    /// Episodes of one series.
    pub fn episodes_of(&self, series: u32) -> impl Iterator<Item = &Episode> {
        self.episodes.iter().filter(move |e| e.series == series)
    }

    /// The newest minute with data (exclusive end of any range), if any.
    pub fn end_minute(&self) -> Option<Minute> {
        self.meta
            .totals
            .max_minute
            .map(|m| m + 1)
            .or(self.meta.final_before)
    }

    /// Every minute before this one is final.
    pub fn final_before(&self) -> Option<Minute> {
        self.meta.final_before
    }

    /// The first minute whose counts are kept (earlier ones were pruned by retention), if the
    /// store has pruned anything.
    pub fn counts_from(&self) -> Option<Minute> {
        self.counts_from
    }

    /// The first minute of the store's data (its earliest account/region record, or the
    /// retention cut, whichever is later).
    pub fn start_minute(&self) -> Option<Minute> {
        let first = self.registry.first_minute.iter().copied().min()?;
        Some(self.counts_from.map_or(first, |c| c.max(first)))
    }

    /// Ids of the series the filter selects.
    pub fn select(&self, filter: &SeriesFilter) -> Vec<u32> {
        self.registry
            .series
            .iter()
            .enumerate()
            .filter(|(_, k)| filter.matches(k))
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// The one series the filter selects.
    pub fn select_one(&self, filter: &SeriesFilter) -> Result<u32, ViewError> {
        let ids = self.select(filter);
        match ids.as_slice() {
            [] => Err(ViewError::NoSeries(filter.describe())),
            [one] => Ok(*one),
            many => Err(ViewError::Ambiguous {
                what: filter.describe(),
                count: many.len(),
                examples: many
                    .iter()
                    .take(4)
                    .filter_map(|&i| self.registry.series.get(i as usize))
                    .map(|k| k.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
        }
    }

    /// Stored per-minute counts of a series in [from, to) (minutes without calls omitted).
    pub fn counts(
        &self,
        series: u32,
        from: Minute,
        to: Minute,
    ) -> Result<BTreeMap<Minute, u32>, ViewError> {
        Ok(self.store.counts(series, from, to)?)
    }

    /// The series' counts in [from, to) with the baseline behind each minute, recomputed by
    /// replaying the detector over the stored counts from the first minute of history (the
    /// account/region's first record, or the retention cut when older counts were pruned).
    pub fn trace(&self, series: u32, from: Minute, to: Minute) -> Result<Trace, ViewError> {
        let key = self
            .registry
            .series
            .get(series as usize)
            .cloned()
            .ok_or_else(|| ViewError::NoSeries(format!("series id {series}")))?;
        let to = to.max(from + 1);
        let region_first = self
            .registry
            .region_of(series)
            .and_then(|r| self.registry.first_minute.get(r as usize).copied())
            .unwrap_or(from);
        // History before the retention cut is gone: the replay starts there, as if the
        // account/region began then, rather than reading the pruned minutes as silence.
        let history_from = self
            .counts_from
            .map_or(region_first, |c| c.max(region_first));
        let window = self.profile.baseline.window_minutes;
        // From the first minute of history, as the detector ran: starting later would test
        // (and winsorise) minutes against a baseline still filling up, and shift every fit.
        let replay_from = history_from.min(from);
        let counts = self.store.counts(series, replay_from, to)?;
        let coverage = Coverage {
            first_minute: history_from,
        };
        let profile = &self.profile;
        // The level the detector tested this series at (its account's budget included).
        let sensitivity = crate::detect::sensitivity_for(profile, &self.registry, &key);
        let no_silence = |_: Minute, _: i64| false;
        let ctx = SeriesContext {
            key: &key,
            profile,
            sensitivity,
            coverage,
            silent: &no_silence,
            sensitive: profile.is_sensitive(&key),
            calls_rose: &[],
            announced_start: None,
            habits: &crate::detect::habits::Habits::default(),
            api_calls: None,
            accepts: &|_| false,
        };
        let empty = Attributions::default();
        let mut detector = SeriesDetector::new(profile);
        let mut findings = Vec::new();
        let mut fits = BTreeMap::new();
        let mut fed = replay_from;
        for hour in replay_from.div_euclid(60)..=(to - 1).div_euclid(60) {
            let start = hour * 60;
            if start > fed {
                let cells = counts
                    .range(fed..start)
                    .map(|(&m, &c)| (m, u64::from(c), Cow::Borrowed(&empty)));
                detector.advance(start, cells, &ctx, &mut findings);
                fed = start;
            }
            if start + 60 > from {
                let fit = detector.fit_for(start.max(from), coverage, profile).clone();
                fits.insert(hour, fit);
            }
        }
        let mut minutes = vec![0u32; (to - from) as usize];
        for (&m, &c) in counts.range(from..to) {
            if let Some(slot) = minutes.get_mut((m - from) as usize) {
                *slot = c;
            }
        }
        // The minutes before `from` that a sliding window ending in the range reaches back to.
        let lead_from = from - MAX_WINDOW_MINUTES;
        let mut lead = vec![0u32; MAX_WINDOW_MINUTES as usize];
        for (&m, &c) in counts.range(lead_from..from) {
            if let Some(slot) = lead.get_mut((m - lead_from) as usize) {
                *slot = c;
            }
        }
        Ok(Trace {
            series,
            key,
            from,
            to,
            counts: minutes,
            lead,
            fits,
            sensitivity,
            tested_from: history_from + profile.baseline.min_history_minutes,
            full_history_from: history_from + window,
        })
    }

    /// Up to `n` of the series `filter` selects with the most unusual activity in [from, to):
    /// those with Insight episodes there first (longest and largest first), then those whose
    /// busiest hour stands furthest above their typical hour.
    pub fn most_unusual(
        &self,
        from: Minute,
        to: Minute,
        n: usize,
        filter: &SeriesFilter,
    ) -> Result<Vec<u32>, ViewError> {
        let selected = |id: u32| {
            self.registry
                .series
                .get(id as usize)
                .is_some_and(|k| filter.matches(k))
        };
        let mut scores: HashMap<u32, f64> = HashMap::new();
        for e in &self.episodes {
            let end = e.end_or(to);
            if e.start >= to || end <= from || !selected(e.series) {
                continue;
            }
            let r = e.summary_record();
            let stats = &r.insight_details.insight_context.statistics;
            let ratio = (stats.insight.average + 0.1) / (stats.baseline.average + 0.1);
            let weight = 1_000.0 + ratio.ln().abs() * ((end - e.start) as f64).sqrt();
            *scores.entry(e.series).or_default() += weight;
        }
        let mut ranked: Vec<(u32, f64)> = scores.into_iter().collect();
        if ranked.len() < n {
            let mut rest = Vec::new();
            for id in 0..self.registry.series.len() as u32 {
                if !selected(id) || ranked.iter().any(|(s, _)| *s == id) {
                    continue;
                }
                let counts = self.store.counts(id, from, to)?;
                if counts.is_empty() {
                    continue;
                }
                let mut hours: BTreeMap<i64, u64> = BTreeMap::new();
                for (m, c) in counts {
                    *hours.entry(m.div_euclid(60)).or_default() += u64::from(c);
                }
                let span_hours = ((to - from) as f64 / 60.0).max(1.0);
                let total: u64 = hours.values().sum();
                let mean = total as f64 / span_hours;
                let peak = hours.values().copied().max().unwrap_or(0) as f64;
                // Peak over the mean, in Poisson standard deviations of the mean hour.
                rest.push((id, (peak - mean) / (mean + 1.0).sqrt()));
            }
            ranked.extend(rest);
        }
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(ranked.into_iter().take(n).map(|(id, _)| id).collect())
    }
}

/// What identifies a series in an Insights record: type, account, region, source, name, code,
/// event category, series kind and principal (`None` for an API's series).
type SeriesFields<'a> = (
    InsightType,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    Option<&'a str>,
    &'a str,
    Option<(&'a str, &'a str)>,
);

/// Pairs Start and End records by `sharedEventID` and finds their series.
fn pair_episodes(registry: &Registry, records: Vec<InsightRecord>) -> Vec<Episode> {
    let ids: HashMap<SeriesFields<'_>, u32> = registry
        .series
        .iter()
        .enumerate()
        .map(|(i, k)| {
            (
                (
                    k.insight_type,
                    &*k.account,
                    &*k.region,
                    &*k.event_source,
                    &*k.event_name,
                    k.error_code.as_deref(),
                    k.category.as_str(),
                    k.scope.kind_name().zip(k.scope.principal().map(|p| &**p)),
                ),
                i as u32,
            )
        })
        .collect();
    let mut episodes: Vec<Episode> = Vec::new();
    let mut open: HashMap<String, usize> = HashMap::new();
    for r in records {
        let d = &r.insight_details;
        let Some(&series) = ids.get(&(
            d.insight_type,
            r.recipient_account_id.as_str(),
            r.aws_region.as_str(),
            d.event_source.as_str(),
            d.event_name.as_str(),
            d.error_code.as_deref(),
            d.source_event_category.as_deref().unwrap_or("Management"),
            d.series_kind.as_deref().zip(d.principal_arn.as_deref()),
        )) else {
            continue;
        };
        let Some(minute) = crate::ingest::parse_event_time(&r.event_time) else {
            continue;
        };
        match d.state {
            InsightState::Start => {
                open.insert(r.shared_event_id.clone(), episodes.len());
                episodes.push(Episode {
                    series,
                    shared_event_id: r.shared_event_id.clone(),
                    start: minute,
                    end: None,
                    start_record: r,
                    end_record: None,
                    suppressed: None,
                });
            }
            InsightState::End => {
                if let Some(e) = open
                    .remove(&r.shared_event_id)
                    .and_then(|i| episodes.get_mut(i))
                {
                    e.end = Some(minute);
                    e.end_record = Some(r);
                }
            }
        }
    }
    episodes.sort_by(|a, b| a.start.cmp(&b.start).then(a.series.cmp(&b.series)));
    episodes
}

/// A series' counts over [from, to) with the baseline fitted for every hour of it.
#[derive(Debug, Clone)]
pub struct Trace {
    /// Series id.
    pub series: u32,
    /// The series.
    pub key: SeriesKey,
    /// First minute.
    pub from: Minute,
    /// End (exclusive).
    pub to: Minute,
    /// Count per minute from `from`.
    pub counts: Vec<u32>,
    /// Count per minute of the [`MAX_WINDOW_MINUTES`] before `from`.
    lead: Vec<u32>,
    fits: BTreeMap<i64, HourFit>,
    sensitivity: Sensitivity,
    /// Minutes before this one are not tested (the minimum history was not there yet).
    pub tested_from: Minute,
    /// From this minute on, the baseline had a whole window of stored history behind it.
    pub full_history_from: Minute,
}

/// Counts and baseline over one step of a plot or export, or over one sliding window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// First minute.
    pub start: Minute,
    /// Length in minutes.
    pub minutes: i64,
    /// Calls (or errors) in the bucket.
    pub count: u64,
    /// Expected count under the baseline (None before the minimum history).
    pub expected: Option<f64>,
    /// Smallest count within bounds (None: no lower bound at this rate, or untested).
    pub lower: Option<f64>,
    /// Largest count within bounds (None before the minimum history).
    pub upper: Option<f64>,
}

impl Trace {
    fn fit(&self, minute: Minute) -> Option<&HourFit> {
        self.fits.get(&minute.div_euclid(60))
    }

    /// The predictive model of the count in the `minutes` ending at `last` (inclusive).
    fn model(&self, last: Minute, minutes: i64) -> Option<CountModel> {
        if minutes <= MAX_WINDOW_MINUTES {
            return Some(self.fit(last)?.window_model(last, minutes));
        }
        // Longer steps: independent hour blocks, moments added.
        let (mut mean, mut variance) = (0.0, 0.0);
        let first = last - minutes + 1;
        let mut end = last;
        while end >= first {
            let block = (end - first + 1).min(end.rem_euclid(60) + 1);
            let m = self.fit(end)?.window_model(end, block);
            mean += m.mean();
            variance += m.variance();
            end -= block;
        }
        Some(CountModel::from_moments(mean, variance))
    }

    /// Expected count, lower and upper bound of the `minutes` ending at `last` (inclusive): those
    /// the detector applies to a window of that length.
    fn bounds(&self, last: Minute, minutes: i64) -> (Option<f64>, Option<f64>, Option<f64>) {
        match self.model(last, minutes) {
            Some(m) if minutes <= MAX_WINDOW_MINUTES => (
                Some(m.mean()),
                m.window_lower_bound(self.sensitivity.level(), minutes)
                    .map(|l| l as f64),
                Some(m.window_upper_bound(self.sensitivity.level(), minutes) as f64),
            ),
            Some(m) => (
                Some(m.mean()),
                m.lower_bound(self.sensitivity.level()).map(|l| l as f64),
                Some(m.upper_bound(self.sensitivity.level()) as f64),
            ),
            None => (None, None, None),
        }
    }

    /// Count in the minute `m` (0 outside the trace and its lead).
    fn count_at(&self, m: Minute) -> u32 {
        if m >= self.from {
            self.counts
                .get((m - self.from) as usize)
                .copied()
                .unwrap_or(0)
        } else {
            let lead_from = self.from - MAX_WINDOW_MINUTES;
            usize::try_from(m - lead_from)
                .ok()
                .and_then(|i| self.lead.get(i))
                .copied()
                .unwrap_or(0)
        }
    }

    /// The sliding window of `window` minutes (1 to [`MAX_WINDOW_MINUTES`]) ending at every
    /// minute of [from, to) within the trace: one bucket per minute, starting `window - 1`
    /// minutes before it, with the count the detector tested there and the bounds it tested
    /// it against. This is the scale an Insight fired on (its `windowMinutes`).
    pub fn sliding(&self, window: i64, from: Minute, to: Minute) -> Vec<Bucket> {
        let window = window.clamp(1, MAX_WINDOW_MINUTES);
        let (from, to) = (from.max(self.from), to.min(self.to));
        let mut out = Vec::with_capacity((to - from).max(0) as usize);
        let Some(first) = (from < to).then_some(from) else {
            return out;
        };
        let mut count: u64 = (first - window + 1..=first)
            .map(|m| u64::from(self.count_at(m)))
            .sum();
        for last in first..to {
            if last > first {
                count += u64::from(self.count_at(last));
                count -= u64::from(self.count_at(last - window));
            }
            let (expected, lower, upper) = if last >= self.tested_from {
                self.bounds(last, window)
            } else {
                (None, None, None)
            };
            out.push(Bucket {
                start: last - window + 1,
                minutes: window,
                count,
                expected,
                lower,
                upper,
            });
        }
        out
    }

    /// Counts and bounds in aligned steps of `step` minutes over the trace (the last step may
    /// be shorter). The bounds are those the detector applies to a window of that length.
    pub fn buckets(&self, step: i64) -> Vec<Bucket> {
        let step = step.max(1);
        let mut out = Vec::with_capacity(((self.to - self.from) / step + 1) as usize);
        let mut start = self.from;
        while start < self.to {
            let end = (start + step).min(self.to);
            let minutes = end - start;
            let count: u64 = self
                .counts
                .get((start - self.from) as usize..(end - self.from) as usize)
                .map_or(0, |c| c.iter().map(|&x| u64::from(x)).sum());
            let tested = start >= self.tested_from;
            let (expected, lower, upper) = if tested {
                self.bounds(end - 1, minutes)
            } else {
                (None, None, None)
            };
            out.push(Bucket {
                start,
                minutes,
                count,
                expected,
                lower,
                upper,
            });
            start = end;
        }
        out
    }
}

/// A readable step for a range: about `points` points at most, rounded up to 1, 5, 15 or 60
/// minutes, or whole multiples of an hour, or of a day beyond that.
pub fn readable_step(minutes: i64, points: i64) -> i64 {
    let raw = (minutes + points - 1) / points.max(1);
    for s in [1, 5, 15, 60, 120, 180, 360, 720, MINUTES_PER_DAY] {
        if raw <= s {
            return s;
        }
    }
    (raw + MINUTES_PER_DAY - 1) / MINUTES_PER_DAY * MINUTES_PER_DAY
}

/// Parses a user's time: RFC 3339, `YYYY-MM-DDTHH:MM` (UTC), or `YYYY-MM-DD` (midnight UTC).
pub fn parse_time(text: &str) -> Option<Minute> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp().div_euclid(60));
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp().div_euclid(60));
        }
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp().div_euclid(60))
}

/// The store path of a view's data (for messages).
pub fn describe_origin(store: &Path, origin: &Origin) -> String {
    match origin {
        Origin::Store => format!("store {}", store.display()),
        Origin::Snapshot { written } => format!(
            "snapshot of the store {} written {written} (the store is in use)",
            store.display()
        ),
    }
}
