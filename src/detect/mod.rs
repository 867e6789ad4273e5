//! Detection: for every series and every final minute, an expected rate and bounds learned from
//! the trailing baseline ([`baseline`]), count distributions for the bounds ([`model`]), and the
//! episode state machine that turns unusual minutes into Start and End findings ([`episode`]).
//! The settings are a [`Profile`].

pub mod baseline;
pub mod episode;
pub mod gauge;
pub mod model;
pub mod profile;

use crate::aggregate::{LateCount, Pending, Registry};
use crate::series::Minute;
use baseline::Coverage;
pub use episode::{Finding, SeriesContext, SeriesDetector};
pub use profile::{Profile, ProfileError};

/// Every series' detector, advanced together minute by minute in event time.
#[derive(Debug, Clone)]
pub struct Detector {
    /// The profile in force.
    pub profile: Profile,
    alpha: f64,
    /// Detector state per series id.
    pub series: Vec<SeriesDetector>,
    /// Record-count state per account/region id (silence detection).
    pub heartbeats: Vec<SeriesDetector>,
    /// Every minute before this one is final and processed.
    pub final_before: Option<Minute>,
}

impl Detector {
    /// A detector resumed from stored state.
    pub fn new(
        profile: Profile,
        series: Vec<SeriesDetector>,
        heartbeats: Vec<SeriesDetector>,
        final_before: Option<Minute>,
    ) -> Detector {
        let alpha = profile.p_threshold();
        Detector {
            profile,
            alpha,
            series,
            heartbeats,
            final_before,
        }
    }

    /// Per-test significance level.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    fn grow(&mut self, registry: &Registry) {
        while self.series.len() < registry.series.len() {
            self.series.push(SeriesDetector::new(&self.profile));
        }
        while self.heartbeats.len() < registry.regions.len() {
            self.heartbeats.push(SeriesDetector::new(&self.profile));
        }
    }

    /// Processes every minute before `upto` with the final cells in `taken`; returns the Starts
    /// and Ends found, in the order they were found (by minute, then series id).
    pub fn advance(&mut self, upto: Minute, taken: &Pending, registry: &Registry) -> Vec<Finding> {
        self.grow(registry);
        if self.final_before.is_some_and(|f| upto <= f) {
            return Vec::new();
        }
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
                alpha: self.alpha,
                coverage: Coverage { first_minute },
                silent: &no_silence,
            };
            let cells = taken
                .heartbeat
                .get(&(id as u32))
                .unwrap_or(&empty_heartbeat);
            heartbeat.advance_heartbeat(upto, cells, &ctx, &mut silent[id]);
        }
        let mut findings = Vec::new();
        let empty = Default::default();
        for (id, detector) in self.series.iter_mut().enumerate() {
            let Some(key) = registry.series.get(id) else {
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
            let ctx = SeriesContext {
                key,
                profile: &self.profile,
                alpha: self.alpha,
                coverage: Coverage { first_minute },
                silent: &is_silent,
            };
            let cells = taken.series.get(&(id as u32)).unwrap_or(&empty);
            let before = findings.len();
            detector.advance(
                upto,
                cells.iter().map(|(&m, c)| (m, c.count, &c.attributions)),
                &ctx,
                &mut findings,
            );
            for f in &mut findings[before..] {
                f.series_id = id as u32;
            }
        }
        // Stable: within a minute, series keep their id order.
        findings.sort_by_key(|f| f.detected_at);
        self.final_before = Some(upto);
        findings
    }

    /// Folds counts that arrived after their minute was final into the history. `before`
    /// gives the count the minute had already (for the squared sums).
    pub fn apply_late(&mut self, late: &[LateCount], mut before: impl FnMut(&LateCount) -> u64) {
        for l in late {
            let target = if l.heartbeat {
                self.heartbeats.get_mut(l.id as usize)
            } else {
                self.series.get_mut(l.id as usize)
            };
            if let Some(d) = target {
                let b = before(l);
                d.add_late(l.minute, b, l.count);
            }
        }
    }
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
    });

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::Cell;
    use crate::series::{InsightType, SeriesKey};
    use std::sync::Arc;

    /// 9 days of a steady API (8 calls a minute) in an account/region with 30 records a minute
    /// in all; on day 8 at 10:00, for 45 minutes, `api_gap` silences the API and `all_gap`
    /// silences every record (a delivery gap).
    fn run(api_gap: bool, all_gap: bool) -> Vec<Finding> {
        let account: Arc<str> = Arc::from("111122223333");
        let region: Arc<str> = Arc::from("us-east-1");
        let mut registry = Registry::default();
        let rid = registry.region_id(&account, &region, 0);
        let sid = registry.series_id(SeriesKey {
            insight_type: InsightType::ApiCallRateInsight,
            account: Arc::clone(&account),
            region: Arc::clone(&region),
            event_source: Arc::from("ecs.amazonaws.com"),
            event_name: Arc::from("SubmitTaskStateChange"),
            error_code: None,
        });
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
            findings.extend(detector.advance(day * 1440, &taken, &registry));
        }
        findings
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
