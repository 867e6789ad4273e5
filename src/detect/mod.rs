//! Detection: for every series and every final minute, an expected rate and bounds learned from
//! the trailing baseline ([`baseline`]), count distributions for the bounds ([`model`]), and the
//! episode state machine that turns unusual minutes into Start and End findings ([`episode`]).
//! The settings are a [`Profile`].

pub mod baseline;
pub mod episode;
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
        let no_silence = |_: Minute| false;
        let mut silent: Vec<Vec<Minute>> = vec![Vec::new(); self.heartbeats.len()];
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
            let is_silent = |m: Minute| silent_minutes.binary_search(&m).is_ok();
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
