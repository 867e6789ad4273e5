//! Detection: for every series and every final minute, an expected rate and bounds learned from
//! the trailing baseline ([`baseline`]), count distributions for the bounds ([`model`]), and the
//! episode state machine that turns unusual minutes into Start and End findings ([`episode`]).
//! The settings are a [`Profile`].

pub mod baseline;
#[cfg(test)]
mod behaviour_tests;
pub mod bursts;
pub mod decide;
pub mod episode;
#[cfg(test)]
mod error_tests;
pub mod gauge;
#[cfg(test)]
mod habit_tests;
pub mod habits;
pub mod model;
pub mod paging;
pub mod profile;
pub mod proportion;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::aggregate::{LateCount, Pending, Registry};
use crate::insight::{Direction, EpisodeSummary, InsightRecord, InsightState};
use crate::series::{InsightType, Minute, SeriesKey, MINUTES_PER_DAY};
use baseline::Coverage;
use baseline::LAG_HOURS;
pub use decide::Sensitivity;
pub use episode::CallRise;
pub use episode::{Finding, SeriesContext, SeriesDetector};
use habits::Habits;
pub use paging::{PageOut, Slot};
pub use profile::{Profile, ProfileError};
use proportion::ApiCalls;

/// Every series' detector, advanced together minute by minute in event time.
#[derive(Debug, Clone)]
pub struct Detector {
    /// The profile in force.
    pub profile: Profile,
    sensitivity: Sensitivity,
    /// Detector state per series id, in memory or paged out (see [`paging`]).
    series: Vec<Slot>,
    /// Record-count state per account/region id (silence detection).
    pub heartbeats: Vec<SeriesDetector>,
    /// Every minute before this one is final and processed.
    pub final_before: Option<Minute>,
    /// Rises declared before their minutes were final (continuous mode), by series id, until
    /// the final minutes confirm them or their cool-down passes without confirmation.
    pub announced: BTreeMap<u32, Announcement>,
    /// Principals' burst habits across series, rebuilt at each day boundary.
    habits: Habits,
    /// Which series' errors are a share of which call series (see [`ApiIndex`]).
    apis: ApiIndex,
    /// Rules whose episodes are normal (see [`crate::suppress`]): a matching episode's minutes
    /// enter the baseline at its End as normal activity.
    pub suppression: crate::suppress::Rules,
}

/// Error-rate series and the call-rate series of their API, kept as the registry grows: an
/// error series' rises are judged against its API's calls and call rises (no string hashing
/// per series and batch).
#[derive(Debug, Clone, Default)]
struct ApiIndex {
    /// Series of the registry seen so far.
    seen: usize,
    /// Call-rate series by API.
    calls_by_api: HashMap<ApiKey, u32>,
    /// Per series id: the call-rate series of its API, for an error-rate series that has one.
    calls_of: Vec<Option<u32>>,
    /// Per series id: whether it is a call-rate series with at least one error series.
    has_errors: Vec<bool>,
    /// Error-rate series whose API has no call-rate series yet (read APIs stay here).
    unresolved: Vec<u32>,
}

impl ApiIndex {
    fn grow(&mut self, registry: &Registry) {
        if self.seen >= registry.series.len() {
            return;
        }
        let new = self.seen..registry.series.len();
        self.calls_of.resize(registry.series.len(), None);
        self.has_errors.resize(registry.series.len(), false);
        let mut new_calls = false;
        for id in new.clone() {
            let key = &registry.series[id];
            if is_call_rate(key) {
                self.calls_by_api.insert(ApiKey::of(key), id as u32);
                new_calls = true;
            }
        }
        // Without a new call series, only the new error series can find one.
        let mut waiting = if new_calls {
            std::mem::take(&mut self.unresolved)
        } else {
            Vec::new()
        };
        waiting.extend(
            new.filter(|&id| !is_call_rate(&registry.series[id]))
                .map(|id| id as u32),
        );
        for id in waiting {
            match self
                .calls_by_api
                .get(&ApiKey::of(&registry.series[id as usize]))
            {
                Some(&calls) => {
                    self.calls_of[id as usize] = Some(calls);
                    self.has_errors[calls as usize] = true;
                }
                None => self.unresolved.push(id),
            }
        }
        self.seen = registry.series.len();
    }
}

/// A rise whose Start was written before its minutes were final: counts only grow, so the
/// partial counts already broke the upper bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Announcement {
    /// First unusual minute (the episode's start, kept when the rise is confirmed).
    pub start: Minute,
    /// The minute whose partial count made the rise certain.
    pub detected_at: Minute,
    /// The Start as written.
    pub summary: EpisodeSummary,
}

impl Detector {
    /// A detector resumed from stored state.
    pub fn new(
        profile: Profile,
        series: Vec<Slot>,
        heartbeats: Vec<SeriesDetector>,
        final_before: Option<Minute>,
    ) -> Detector {
        let sensitivity = Sensitivity::of(&profile);
        Detector {
            profile,
            sensitivity,
            series,
            heartbeats,
            final_before,
            announced: BTreeMap::new(),
            habits: Habits::default(),
            apis: ApiIndex::default(),
            suppression: crate::suppress::Rules::default(),
        }
    }

    /// Per-test level of the profile (before any account's budget lowers it).
    pub fn sensitivity(&self) -> Sensitivity {
        self.sensitivity
    }

    fn grow(&mut self, registry: &Registry) {
        while self.series.len() < registry.series.len() {
            self.series
                .push(Slot::Resident(Box::new(SeriesDetector::new(&self.profile))));
        }
        while self.heartbeats.len() < registry.regions.len() {
            self.heartbeats.push(SeriesDetector::new(&self.profile));
        }
        self.apis.grow(registry);
    }

    /// Processes every minute before `upto` with the final cells in `taken` (their attributions
    /// move into the series' detectors); returns the Starts and Ends found, in the order they
    /// were found (by minute, then series id).
    ///
    /// Every series reaches a day boundary before any series enters the next day, and the
    /// principals' habits are rebuilt there from the days before: the findings are the same
    /// however the minutes were batched.
    pub fn advance(
        &mut self,
        upto: Minute,
        mut taken: Pending,
        registry: &Registry,
    ) -> Vec<Finding> {
        self.grow(registry);
        if self.final_before.is_some_and(|f| upto <= f) {
            return Vec::new();
        }
        let mut findings = Vec::new();
        loop {
            let earliest = taken
                .series
                .values()
                .filter_map(|cells| cells.keys().next().copied())
                .chain(
                    taken
                        .heartbeat
                        .values()
                        .filter_map(|cells| cells.keys().next().copied()),
                )
                .min();
            // Days without any cell hold no burst to learn: skip to the first one with cells.
            let from = match (self.final_before, earliest) {
                (Some(f), Some(e)) => f.max(e),
                (Some(f), None) => f,
                (None, Some(e)) => e,
                (None, None) => upto,
            };
            let day = from.div_euclid(MINUTES_PER_DAY);
            if self.habits.day() != Some(day) {
                let keep = self.profile.baseline.window_minutes / 60 + LAG_HOURS + 1;
                self.habits
                    .rebuild(day, &self.series, registry, keep, &self.profile);
            }
            let next_day = (day + 1) * MINUTES_PER_DAY;
            if next_day >= upto {
                findings.extend(self.advance_within_day(upto, taken, registry));
                return findings;
            }
            let chunk = taken.take_before(next_day);
            findings.extend(self.advance_within_day(next_day, chunk, registry));
        }
    }

    fn advance_within_day(
        &mut self,
        upto: Minute,
        taken: Pending,
        registry: &Registry,
    ) -> Vec<Finding> {
        let empty_heartbeat = Default::default();
        let no_silence = |_: Minute, _: i64| false;
        let mut silent: Vec<Vec<(Minute, u8)>> = vec![Vec::new(); self.heartbeats.len()];
        for (id, heartbeat) in self.heartbeats.iter_mut().enumerate() {
            let Some(&first_minute) = registry.first_minute.get(id) else {
                continue;
            };
            let ctx = SeriesContext {
                key: &PLACEHOLDER_KEY,
                profile: &self.profile,
                sensitivity: self.sensitivity,
                coverage: Coverage { first_minute },
                silent: &no_silence,
                sensitive: false,
                calls_rose: &[],
                announced_start: None,
                habits: &self.habits,
                api_calls: None,
                accepts: &|_| false,
            };
            let cells = taken
                .heartbeat
                .get(&(id as u32))
                .unwrap_or(&empty_heartbeat);
            heartbeat.advance_heartbeat(upto, cells, &ctx, &mut silent[id]);
        }
        let mut findings = Vec::new();
        let mut taken_series = taken.series;
        let budget = AccountBudget::new(&self.profile, self.sensitivity, registry);
        let suppression = &self.suppression;
        let accepts = |summary: &EpisodeSummary| {
            !suppression.is_empty()
                && suppression
                    .find(&InsightRecord::from_summary(summary))
                    .is_some_and(|rule| rule.rebaseline)
        };
        // Rises of each API's calls, so that an error rate that only follows its calls (a
        // throttling error per call) is not an Insight of its own: call rates go first.
        let mut call_rises: HashMap<u32, Vec<CallRise>> = HashMap::new();
        // ... and each API's calls, of which its errors are a share.
        let mut api_calls: HashMap<u32, ApiCalls> = HashMap::new();
        let order = (0..self.series.len())
            .filter(|&id| registry.series.get(id).is_some_and(is_call_rate))
            .chain(
                (0..self.series.len())
                    .filter(|&id| registry.series.get(id).is_some_and(|k| !is_call_rate(k))),
            );
        for id in order {
            let cells = taken_series.remove(&(id as u32)).unwrap_or_default();
            let Some(key) = registry.series.get(id) else {
                continue;
            };
            // A paged-out series is dormant and takes no calls (those that do are read back
            // first): advancing it would only move its next minute.
            let Some(detector) = self.series.get_mut(id).and_then(Slot::resident_mut) else {
                continue;
            };
            let Some(region) = registry.region_of(id as u32) else {
                continue;
            };
            let Some(&first_minute) = registry.first_minute.get(region as usize) else {
                continue;
            };
            let silent_minutes = silent
                .get(region as usize)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let windows = &self.profile.detect.windows_minutes;
            let is_silent = |m: Minute, w: i64| {
                let Some(bit) = windows.iter().position(|&x| i64::from(x) == w) else {
                    return false;
                };
                silent_minutes
                    .binary_search_by_key(&m, |&(minute, _)| minute)
                    .ok()
                    .and_then(|i| silent_minutes.get(i))
                    .is_some_and(|&(_, mask)| mask & (1 << bit) != 0)
            };
            let no_rises = Vec::new();
            let calls_id = self.apis.calls_of.get(id).copied().flatten();
            let calls_rose = calls_id
                .and_then(|c| call_rises.get(&c))
                .unwrap_or(&no_rises);
            let calls_of_api = calls_id.and_then(|c| api_calls.get(&c));
            let ctx = SeriesContext {
                key,
                profile: &self.profile,
                sensitivity: budget.sensitivity(key),
                coverage: Coverage { first_minute },
                silent: &is_silent,
                sensitive: self.profile.is_sensitive(key),
                announced_start: self.announced.get(&(id as u32)).map(|a| a.start),
                habits: &self.habits,
                calls_rose,
                api_calls: calls_of_api,
                accepts: &accepts,
            };
            let before = findings.len();
            let open = detector.open_rise();
            // The calls of a write API over the windows' reach and this chunk, for its errors.
            let has_errors = self.apis.has_errors.get(id).copied().unwrap_or(false);
            let calls_seen = if has_errors {
                calls_around(detector, Some(&cells))
            } else {
                Vec::new()
            };
            detector.advance(
                upto,
                cells
                    .into_iter()
                    .map(|(m, c)| (m, c.count, Cow::Owned(c.attributions))),
                &ctx,
                &mut findings,
            );
            for f in &mut findings[before..] {
                f.series_id = id as u32;
            }
            if is_call_rate(key) {
                let rises = collect_rises(
                    open,
                    &findings[before..],
                    self.profile.detect.cooldown_minutes,
                );
                if !rises.is_empty() {
                    call_rises.insert(id as u32, rises);
                }
                if !calls_seen.is_empty() {
                    api_calls.insert(
                        id as u32,
                        ApiCalls::new(calls_seen, detector.baseline_rate()),
                    );
                }
            }
        }
        let announced: Vec<u32> = self.announced.keys().copied().collect();
        for id in announced {
            self.settle_announcement(id, upto, &mut findings);
        }
        // Stable: within a minute, series keep their id order (and a series its own order).
        findings.sort_by_key(|f| (f.detected_at, f.series_id));
        self.final_before = Some(upto);
        findings
    }

    /// After the series advanced to `upto`: the first rise Start of an announced series
    /// confirms the announcement and is dropped (its Start was written already); an
    /// announcement whose cool-down passed in final minutes without confirmation is closed with
    /// an End, so that every Start written gets its End.
    fn settle_announcement(&mut self, id: u32, upto: Minute, findings: &mut Vec<Finding>) {
        let Some(announcement) = self.announced.get(&id) else {
            return;
        };
        let confirming = findings.iter().position(|f| {
            f.series_id == id
                && f.summary.state == InsightState::Start
                && f.summary.explanation.direction == Direction::Rise
        });
        if let Some(i) = confirming {
            findings.remove(i);
            self.announced.remove(&id);
            return;
        }
        let open = self
            .series(id)
            .is_some_and(SeriesDetector::has_open_episode);
        let cooldown = self.profile.detect.cooldown_minutes;
        if !open && upto > announcement.detected_at + cooldown {
            let end = announcement.detected_at + 1;
            let summary = EpisodeSummary {
                state: InsightState::End,
                end,
                insight_duration: (end - announcement.start).max(1),
                ..announcement.summary.clone()
            };
            findings.push(Finding {
                series_id: id,
                detected_at: upto - 1,
                summary,
            });
            self.announced.remove(&id);
        }
    }

    /// Continuous mode: tests the not-yet-final minutes of the series `ids` as if they were
    /// final, and declares the rises they already show (a count only grows as late records
    /// arrive, so a bound broken now stays broken). Falls wait for the minutes to be final.
    /// Returns the Starts declared; each is remembered in [`Detector::announced`].
    pub fn announce_rises(
        &mut self,
        pending: &Pending,
        ids: impl IntoIterator<Item = u32>,
        registry: &Registry,
    ) -> Vec<Finding> {
        self.grow(registry);
        let never = |_: Minute, _: i64| false;
        let budget = AccountBudget::new(&self.profile, self.sensitivity, registry);
        let no_rises = Vec::new();
        let mut out = Vec::new();
        for id in ids {
            if self.announced.contains_key(&id) {
                continue;
            }
            let (Some(detector), Some(cells), Some(key)) = (
                self.series(id),
                pending.series.get(&id),
                registry.series.get(id as usize),
            ) else {
                continue;
            };
            let min_calls = if self.profile.is_sensitive(key) {
                1
            } else {
                self.profile.detect.min_calls
            };
            if detector.has_open_episode()
                || cells.values().map(|c| c.count).sum::<u64>() < min_calls
            {
                continue;
            }
            let Some(first_minute) = registry.first_minute_of(id) else {
                continue;
            };
            let Some(&last) = cells.keys().next_back() else {
                continue;
            };
            // An error rise is judged as a share of its API's calls, pending ones included.
            let probe_calls = self
                .apis
                .calls_of
                .get(id as usize)
                .copied()
                .flatten()
                .and_then(|calls_id| {
                    let calls = self.series(calls_id)?;
                    let minutes = calls_around(calls, pending.series.get(&calls_id));
                    Some(ApiCalls::new(minutes, calls.baseline_rate()))
                });
            let ctx = SeriesContext {
                key,
                profile: &self.profile,
                sensitivity: budget.sensitivity(key),
                coverage: Coverage { first_minute },
                silent: &never,
                sensitive: self.profile.is_sensitive(key),
                announced_start: None,
                habits: &self.habits,
                calls_rose: &no_rises,
                api_calls: probe_calls.as_ref(),
                accepts: &|_| false,
            };
            let mut probe = detector.clone();
            let mut found = Vec::new();
            probe.advance(
                last + 1,
                cells
                    .iter()
                    .map(|(&m, c)| (m, c.count, Cow::Borrowed(&c.attributions))),
                &ctx,
                &mut found,
            );
            let rise = found.into_iter().find(|f| {
                f.summary.state == InsightState::Start
                    && f.summary.explanation.direction == Direction::Rise
            });
            if let Some(mut f) = rise {
                f.series_id = id;
                self.announced.insert(
                    id,
                    Announcement {
                        start: f.summary.start,
                        detected_at: f.detected_at,
                        summary: f.summary.clone(),
                    },
                );
                out.push(f);
            }
        }
        out
    }

    /// Folds counts that arrived after their minute was final into the history. `before`
    /// gives the count the minute had already (for the squared sums).
    pub fn apply_late(&mut self, late: &[LateCount], mut before: impl FnMut(&LateCount) -> u64) {
        for l in late {
            let target = if l.heartbeat {
                self.heartbeats.get_mut(l.id as usize)
            } else {
                self.series
                    .get_mut(l.id as usize)
                    .and_then(Slot::resident_mut)
            };
            if let Some(d) = target {
                let b = before(l);
                d.add_late(l.minute, b, l.count);
            }
        }
    }
}

/// A call series' minutes with calls: those it still holds (the windows' reach) and `cells`,
/// the ones it is about to take, for its API's errors (see [`ApiCalls`]).
fn calls_around(
    calls: &SeriesDetector,
    cells: Option<&BTreeMap<Minute, crate::aggregate::Cell>>,
) -> Vec<(Minute, u64)> {
    calls
        .recent_counts()
        .chain(cells.into_iter().flatten().map(|(&m, c)| (m, c.count)))
        .collect()
}

/// Whether `key` is an API's call rate (whose errors are a share of its calls): a principal's
/// series, every API together, is no API's.
fn is_call_rate(key: &SeriesKey) -> bool {
    key.insight_type == InsightType::ApiCallRateInsight && key.scope == crate::series::Scope::Api
}

/// An API of an account/region: what an error-rate series and its call-rate series share.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ApiKey([Arc<str>; 4]);

impl ApiKey {
    fn of(key: &SeriesKey) -> ApiKey {
        ApiKey([
            Arc::clone(&key.account),
            Arc::clone(&key.region),
            Arc::clone(&key.event_source),
            Arc::clone(&key.event_name),
        ])
    }
}

/// The rises of a call-rate series while it advanced: the one open before (start, ratio), and
/// each Start found, each until its End plus the cool-down (errors trail their calls).
fn collect_rises(open: Option<(Minute, f64)>, found: &[Finding], cooldown: i64) -> Vec<CallRise> {
    let mut rises: Vec<CallRise> = open
        .map(|(start, ratio)| CallRise {
            start,
            end: Minute::MAX,
            ratio,
        })
        .into_iter()
        .collect();
    for f in found {
        if f.summary.explanation.direction != Direction::Rise {
            continue;
        }
        match f.summary.state {
            InsightState::Start => rises.push(CallRise {
                start: f.summary.start,
                end: Minute::MAX,
                ratio: episode::rise_ratio(&f.summary.explanation),
            }),
            InsightState::End => {
                if let Some(r) = rises
                    .iter_mut()
                    .rev()
                    .find(|r| r.start == f.summary.start && r.end == Minute::MAX)
                {
                    r.end = f.summary.end.saturating_add(cooldown);
                }
            }
        }
    }
    rises
}

/// The per-test level of each account's series: the profile's, or lower where an account has
/// so many series that its budget of false Insights per account-day would not hold.
struct AccountBudget<'r> {
    sensitivity: Sensitivity,
    per_account: HashMap<&'r str, Sensitivity>,
}

impl<'r> AccountBudget<'r> {
    fn new(
        profile: &Profile,
        sensitivity: Sensitivity,
        registry: &'r Registry,
    ) -> AccountBudget<'r> {
        let mut counts: HashMap<&'r str, usize> = HashMap::new();
        for key in &registry.series {
            *counts.entry(&*key.account).or_default() += 1;
        }
        let per_day = profile.detect.false_insights_per_account_day;
        // The level is the series budget per 1,000 series-days spread over a day's tests: an
        // account of n series expects n * budget / 1000 false Insights a day at that level.
        let series_budget = profile.detect.false_insights_per_1000_series_days / 1000.0;
        let per_account = counts
            .into_iter()
            .filter_map(|(account, n)| {
                let expected = n as f64 * series_budget;
                (per_day > 0.0 && expected > per_day).then(|| {
                    (
                        account,
                        Sensitivity::new(sensitivity.level() * per_day / expected),
                    )
                })
            })
            .collect();
        AccountBudget {
            sensitivity,
            per_account,
        }
    }

    fn sensitivity(&self, key: &SeriesKey) -> Sensitivity {
        if self.per_account.is_empty() {
            return self.sensitivity;
        }
        self.per_account
            .get(&*key.account)
            .copied()
            .unwrap_or(self.sensitivity)
    }
}

/// The per-test level the detector applies to `key`'s series: the profile's, lowered for an
/// account with so many series in `registry` that its budget per account-day would not hold
/// (views draw the bounds the detector used with it).
pub fn sensitivity_for(profile: &Profile, registry: &Registry, key: &SeriesKey) -> Sensitivity {
    AccountBudget::new(profile, Sensitivity::of(profile), registry).sensitivity(key)
}

/// Heartbeats have no series of their own; their context never builds a summary.
static PLACEHOLDER_KEY: std::sync::LazyLock<crate::series::SeriesKey> =
    std::sync::LazyLock::new(|| crate::series::SeriesKey {
        insight_type: crate::series::InsightType::ApiCallRateInsight,
        account: std::sync::Arc::from(""),
        region: std::sync::Arc::from(""),
        event_source: std::sync::Arc::from(""),
        event_name: std::sync::Arc::from(""),
        error_code: None,
        category: crate::series::EventCategory::Management,
        scope: crate::series::Scope::Api,
    });

impl crate::store::record::StateRecord for Announcement {
    const KIND: &'static str = "announced rise";
    const VERSION: u16 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Cell;
    use crate::series::{InsightType, SeriesKey};
    use std::sync::Arc;

    /// A registry with one account/region (history from minute 0) and one call-rate series in
    /// it: (registry, account/region id, series id).
    fn one_series(event_source: &str, event_name: &str) -> (Registry, u32, u32) {
        let account: Arc<str> = Arc::from("111122223333");
        let region: Arc<str> = Arc::from("us-east-1");
        let mut registry = Registry::default();
        let rid = registry.region_id(&account, &region, 0);
        let sid = registry.series_id(SeriesKey {
            insight_type: InsightType::ApiCallRateInsight,
            account,
            region,
            event_source: Arc::from(event_source),
            event_name: Arc::from(event_name),
            error_code: None,
            category: crate::series::EventCategory::Management,
            scope: crate::series::Scope::Api,
        });
        (registry, rid, sid)
    }

    /// 9 days of a steady API (8 calls a minute) in an account/region with 30 records a minute
    /// in all; on day 8 at 10:00, for 45 minutes, `api_gap` silences the API and `all_gap`
    /// silences every record (a delivery gap).
    fn run(api_gap: bool, all_gap: bool) -> Vec<Finding> {
        let (registry, rid, sid) = one_series("ecs.amazonaws.com", "SubmitTaskStateChange");
        let gap = (8 * 1440 + 600)..(8 * 1440 + 645);
        let mut pending = Pending::default();
        for m in 0..9 * 1440 {
            let in_gap = gap.contains(&m);
            let api = if in_gap && (api_gap || all_gap) { 0 } else { 8 };
            let all = if in_gap && all_gap { 0 } else { 22 + api };
            if api > 0 {
                pending.series.entry(sid).or_default().insert(
                    m,
                    Cell {
                        count: api,
                        attributions: Default::default(),
                    },
                );
            }
            if all > 0 {
                pending.heartbeat.entry(rid).or_default().insert(m, all);
            }
        }
        let profile = Profile::default();
        let mut detector = Detector::new(profile, Vec::new(), Vec::new(), None);
        let mut findings = Vec::new();
        for day in 1..=9 {
            let taken = pending.take_before(day * 1440);
            findings.extend(detector.advance(day * 1440, taken, &registry));
        }
        findings
    }

    /// 8 days of one call a minute on one API, final up to `at`; returns the detector, the
    /// registry, the series id.
    fn steady_until(at: Minute) -> (Detector, Registry, u32) {
        let (registry, rid, sid) = one_series("ec2.amazonaws.com", "RunInstances");
        let mut pending = Pending::default();
        for m in 0..at {
            pending.series.entry(sid).or_default().insert(
                m,
                Cell {
                    count: 1,
                    attributions: Default::default(),
                },
            );
            pending.heartbeat.entry(rid).or_default().insert(m, 5);
        }
        let mut detector = Detector::new(Profile::default(), Vec::new(), Vec::new(), None);
        let taken = pending.take_before(at);
        assert!(detector.advance(at, taken, &registry).is_empty());
        (detector, registry, sid)
    }

    fn one_call_a_minute(p: &mut Pending, sid: u32, minutes: std::ops::Range<Minute>) {
        for m in minutes {
            p.series.entry(sid).or_default().insert(
                m,
                Cell {
                    count: 1,
                    attributions: Default::default(),
                },
            );
        }
    }

    fn burst(sid: u32, at: Minute, count: u64) -> Pending {
        let mut p = Pending::default();
        p.series.entry(sid).or_default().insert(
            at,
            Cell {
                count,
                attributions: Default::default(),
            },
        );
        p
    }

    /// Six APIs of one account/region over eight days: a person's call every ~40 minutes on
    /// each, and a CI role's applies (15-40 calls in a few minutes on one or two APIs, at
    /// irregular hours, several a day).
    fn ci_account() -> (Registry, Pending) {
        let account: Arc<str> = Arc::from("111122223333");
        let region: Arc<str> = Arc::from("us-east-1");
        let mut registry = Registry::default();
        let rid = registry.region_id(&account, &region, 0);
        let ids: Vec<u32> = [
            "CreateTags",
            "RunInstances",
            "UpdateService",
            "PutRolePolicy",
            "UpdateStack",
            "PutBucketPolicy",
        ]
        .iter()
        .map(|name| {
            registry.series_id(SeriesKey {
                insight_type: InsightType::ApiCallRateInsight,
                account: account.clone(),
                region: region.clone(),
                event_source: Arc::from("ec2.amazonaws.com"),
                event_name: Arc::from(*name),
                error_code: None,
                category: crate::series::EventCategory::Management,
                scope: crate::series::Scope::Api,
            })
        })
        .collect();
        let person: Arc<str> = Arc::from("arn:aws:iam::111122223333:user/alice");
        let ci: Arc<str> = Arc::from("arn:aws:sts::111122223333:assumed-role/Deploy/run-1");
        let cell = |who: &Arc<str>, count: u64| {
            let mut attributions = crate::aggregate::topk::Attributions::default();
            attributions.by_attribute[crate::series::Attribute::UserIdentityArn.index()]
                .add(who, count, 8);
            Cell {
                count,
                attributions,
            }
        };
        let mut pending = Pending::default();
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for m in 0..8 * 1440 {
            for &sid in &ids {
                if next(40) == 0 {
                    pending
                        .series
                        .entry(sid)
                        .or_default()
                        .insert(m, cell(&person, 1));
                }
            }
            pending.heartbeat.entry(rid).or_default().insert(m, 20);
            if next(240) == 0 {
                let size = 15 + next(26);
                let first = ids[next(ids.len() as u64) as usize];
                let second = ids[next(ids.len() as u64) as usize];
                for k in 0..4 {
                    for sid in [first, second] {
                        let cells = pending.series.entry(sid).or_default();
                        let add = cell(&ci, size / 4);
                        match cells.get_mut(&(m + k)) {
                            Some(c) => {
                                c.count += add.count;
                                c.attributions.merge(&add.attributions, 8);
                            }
                            None => {
                                cells.insert(m + k, add);
                            }
                        }
                    }
                }
            }
        }
        (registry, pending)
    }

    fn starts(findings: &[Finding]) -> Vec<(Minute, u32, InsightState, Minute)> {
        findings
            .iter()
            .map(|f| (f.detected_at, f.series_id, f.summary.state, f.summary.start))
            .collect()
    }

    #[test]
    fn an_account_with_many_series_is_tested_at_a_lower_level() {
        let profile = Profile::default();
        let mut registry = Registry::default();
        let key = |account: &str, n: usize| SeriesKey {
            insight_type: InsightType::ApiCallRateInsight,
            account: Arc::from(account),
            region: Arc::from("us-east-1"),
            event_source: Arc::from("ec2.amazonaws.com"),
            event_name: Arc::from(format!("Api{n}").as_str()),
            error_code: None,
            category: crate::series::EventCategory::Management,
            scope: crate::series::Scope::Api,
        };
        for n in 0..800 {
            registry.series_id(key("111111111111", n));
        }
        registry.series_id(key("222222222222", 0));
        let level = Sensitivity::of(&profile).level();
        // 800 series at 0.25 per 1,000 series-days expect 0.2 a day, twice the account budget
        // of 0.1: half the level. The small account keeps the profile's.
        let big = sensitivity_for(&profile, &registry, &key("111111111111", 0)).level();
        assert!(
            (big - level * 0.1 / 0.2).abs() < level * 1e-12,
            "{big} vs {level}"
        );
        let small = sensitivity_for(&profile, &registry, &key("222222222222", 0)).level();
        assert_eq!(small, level);
    }

    #[test]
    fn findings_do_not_depend_on_how_minutes_are_batched() {
        let (registry, pending) = ci_account();
        let end = 8 * 1440;
        let mut whole = Detector::new(Profile::default(), Vec::new(), Vec::new(), None);
        let at_once = whole.advance(end, pending.clone(), &registry);
        let mut pieces = Detector::new(Profile::default(), Vec::new(), Vec::new(), None);
        let mut rest = pending.clone();
        let mut batched = Vec::new();
        let mut upto = 0;
        while upto < end {
            upto = (upto + 17).min(end);
            batched.extend(pieces.advance(upto, rest.take_before(upto), &registry));
        }
        assert_eq!(starts(&at_once), starts(&batched));
        // The CI role's applies are its habit: without habits (no burst recorded) there are
        // more Starts.
        let mut profile = Profile::default();
        profile.detect.burst_p = 1e-300;
        let mut bare = Detector::new(profile, Vec::new(), Vec::new(), None);
        let without = bare.advance(end, pending, &registry);
        let count = |f: &[Finding]| {
            f.iter()
                .filter(|f| f.summary.state == InsightState::Start)
                .count()
        };
        eprintln!(
            "Starts: {} with habits, {} without",
            count(&at_once),
            count(&without)
        );
        assert!(count(&at_once) < count(&without));
    }

    #[test]
    fn series_paged_out_while_dormant_and_read_back_give_the_same_findings() {
        let (registry, pending) = ci_account();
        let end = 8 * 1440;
        // Without habits the applies make Insights (episodes open, and close, on paged series).
        let mut profile = Profile::default();
        profile.detect.burst_p = 1e-300;
        let mut whole = Detector::new(profile.clone(), Vec::new(), Vec::new(), None);
        let at_once = whole.advance(end, pending.clone(), &registry);
        // A store as the engine keeps one: every state in memory is written after each
        // advance, then the dormant ones leave memory and are read back when they take calls.
        let mut stored: HashMap<u32, SeriesDetector> = HashMap::new();
        let mut paging = Detector::new(profile, Vec::new(), Vec::new(), None);
        let mut rest = pending;
        let mut found = Vec::new();
        let (mut upto, mut paged_out, mut paged_in) = (0, 0, 0);
        while upto < end {
            upto = (upto + 23).min(end);
            let chunk = rest.take_before(upto);
            for id in paging.paged_among(chunk.series.keys().copied(), &registry) {
                let mut state = stored[&id].clone();
                state.set_next_minute(paging.final_before);
                paging.page_in(id, state);
                paged_in += 1;
            }
            found.extend(paging.advance(upto, chunk, &registry));
            stored.extend(paging.resident().map(|(id, d)| (id, d.clone())));
            // (no minute is pending: the rest is still to come, not waiting to be final)
            paged_out += paging.page_out_dormant(&registry, &Pending::default());
        }
        assert!(
            paged_out > 100 && paged_in > 100,
            "{paged_out} out, {paged_in} in"
        );
        assert!(at_once.len() >= 4, "{}", at_once.len());
        assert_eq!(starts(&at_once), starts(&found));
    }

    #[test]
    fn an_announced_rise_keeps_its_start_when_confirmed_and_is_written_once() {
        let t = 8 * 1440 + 600;
        let (mut detector, registry, sid) = steady_until(t);
        // 30 calls already in a minute that is not final: the rise is certain.
        let announced = detector.announce_rises(&burst(sid, t, 30), [sid], &registry);
        assert_eq!(announced.len(), 1, "{announced:?}");
        let start = &announced[0].summary;
        assert_eq!(
            (start.state, start.start, start.explanation.direction),
            (InsightState::Start, t, Direction::Rise)
        );
        assert_eq!(start.explanation.observed, 30);
        // A second look at the same minute declares nothing new.
        assert!(detector
            .announce_rises(&burst(sid, t, 35), [sid], &registry)
            .is_empty());
        // The minute becomes final with more calls: no second Start; the End pairs with it.
        let mut final_cells = burst(sid, t, 40);
        one_call_a_minute(&mut final_cells, sid, t + 1..t + 60);
        let findings = detector.advance(t + 60, final_cells, &registry);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].summary.state, InsightState::End);
        assert_eq!(
            findings[0].summary.start, t,
            "same episode, same sharedEventID"
        );
        assert!(detector.announced.is_empty());
    }

    #[test]
    fn an_announced_rise_that_final_counts_do_not_confirm_still_gets_its_end() {
        let t = 8 * 1440 + 600;
        let (mut detector, registry, sid) = steady_until(t);
        assert_eq!(
            detector
                .announce_rises(&burst(sid, t, 30), [sid], &registry)
                .len(),
            1
        );
        // (Counts only grow, so this cannot happen with real input; a baseline moved by late
        // history could do the same.) The final minute holds one call: nothing unusual.
        let mut final_cells = Pending::default();
        one_call_a_minute(&mut final_cells, sid, t..t + 60);
        let findings = detector.advance(t + 60, final_cells, &registry);
        assert_eq!(findings.len(), 1, "{findings:?}");
        let end = &findings[0].summary;
        assert_eq!(
            (end.state, end.start, end.end),
            (InsightState::End, t, t + 1)
        );
        assert!(detector.announced.is_empty());
    }

    #[test]
    fn a_drop_of_one_api_is_a_fall_but_a_delivery_gap_is_not() {
        assert!(run(false, false).is_empty(), "steady traffic fires nothing");
        let api_only = run(true, false);
        assert_eq!(api_only.len(), 2, "{api_only:?}");
        assert_eq!(api_only[0].summary.start, 8 * 1440 + 600);
        let gap = run(false, true);
        assert!(gap.is_empty(), "a delivery gap is not a fall: {gap:?}");
    }
}
