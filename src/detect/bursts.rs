//! A series' own history of bursts the count model does not explain: automation (a CI/CD run, a
//! `terraform apply`, a nightly job) makes bursts of heavy-tailed size that no Poisson or negative
//! binomial fitted to the hourly rates predicts. Each hour of history keeps, per window scale,
//! the largest *surprise* (`-ln` of the model's crossing rate) it reached above a threshold; a
//! new window is unusual only if it is also unusual against the tail of those surprises
//! (peaks over threshold, an exponential tail on the surprise scale, i.e. a Pareto tail on
//! p-values), once that tail is shown to be heavier than the count model's own. A series whose
//! surprises the model explains keeps exactly the count model's decision.

use serde::{Deserialize, Serialize};

use super::baseline::LAG_HOURS;

/// Most window scales a profile may test (see `detect.windows_minutes`).
pub const MAX_SCALES: usize = 8;

/// One hour of history that held at least one unexplained burst.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(super) struct BurstHour {
    /// Absolute hour (minute / 60).
    pub(super) hour: i64,
    /// Largest surprise above the threshold, per window scale (0 = none at that scale).
    pub(super) excess: [f32; MAX_SCALES],
    /// Whether an Insight started in this hour: such a burst may be an attacker's, and is a
    /// habit only once bursts recur (see [`Bursts::tail`]).
    pub(super) insight: bool,
    /// Who made the hour's bursts (see [`principal_id`]; 0 = unknown): a habit is the habit
    /// of whoever has it, a CI role's applies, not an identity never seen bursting.
    pub(super) principals: [u64; 2],
}

/// A stable 64-bit id of a principal (FNV-1a of its ARN; 0 is kept for "unknown"). An assumed
/// role's session name is left out (`arn:aws:sts::1:assumed-role/Deploy/run-4711` is
/// `arn:aws:sts::1:assumed-role/Deploy`): CI systems name a session per run, and the habit is the
/// role's. Identity Center sessions are people and stay apart.
pub fn principal_id(arn: &str) -> u64 {
    let arn = role_of(arn);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in arn.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

/// An assumed-role ARN without its session name; any other ARN as it is. IAM Identity Center
/// roles (`AWSReservedSSO_*`) keep it: there the session name is the person.
fn role_of(arn: &str) -> &str {
    match arn.split_once(":assumed-role/") {
        Some((_, rest)) if rest.starts_with("AWSReservedSSO_") => arn,
        Some((_, rest)) => match rest.find('/') {
            Some(slash) => &arn[..arn.len() - rest.len() + slash],
            None => arn,
        },
        None => arn,
    }
}

impl BurstHour {
    fn empty(hour: i64) -> BurstHour {
        BurstHour {
            hour,
            excess: [0.0; MAX_SCALES],
            insight: false,
            principals: [0; 2],
        }
    }

    /// Whether `principal` made a burst of this hour (an unknown one matches any).
    fn made_by(&self, principal: u64) -> bool {
        principal == 0 || self.principals == [0; 2] || self.principals.contains(&principal)
    }
}

/// Bursts of one series over its baseline window, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Bursts {
    hours: Vec<BurstHour>,
}

/// What the burst tail says of one window: the rate per minute at which the series' own
/// history makes windows at least this surprising.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurstTail {
    /// Hours of the baseline window that held a burst at this scale.
    pub bursts: u32,
    /// Upper confidence bound of the rate of the exponential tail of the surprise excesses
    /// (1 = what a correct count model gives; smaller = heavier bursts than it allows).
    pub decay: f64,
    /// Expected number of hours per hour with a window at least this surprising, divided by
    /// 60: a per-minute rate comparable with the count model's crossing rate.
    pub rate_per_minute: f64,
}

impl Bursts {
    /// Records that a window of scale `scale` (index into the profile's windows) at `minute`
    /// reached `excess` = surprise minus the threshold (> 0), made mostly by `principal` (0:
    /// unknown). Minutes come in order.
    pub fn record(&mut self, minute: i64, scale: usize, excess: f64, principal: u64) {
        if scale >= MAX_SCALES || excess.is_nan() || excess <= 0.0 {
            return;
        }
        let hour = minute.div_euclid(60);
        let value = excess.min(f64::from(f32::MAX)) as f32;
        let at = match self.hours.last() {
            Some(last) if last.hour == hour => self.hours.len() - 1,
            Some(last) if last.hour > hour => {
                // Out of order (a late restatement): keep the ring sorted.
                let at = self.hours.partition_point(|h| h.hour < hour);
                if self.hours.get(at).is_none_or(|h| h.hour != hour) {
                    self.hours.insert(at, BurstHour::empty(hour));
                }
                at
            }
            _ => {
                self.hours.push(BurstHour::empty(hour));
                self.hours.len() - 1
            }
        };
        if let Some(h) = self.hours.get_mut(at) {
            h.excess[scale] = h.excess[scale].max(value);
            if principal != 0 && !h.principals.contains(&principal) {
                if let Some(free) = h.principals.iter_mut().find(|p| **p == 0) {
                    *free = principal;
                }
            }
        }
    }

    /// Marks the bursts of `minute`'s hour as having started an Insight.
    pub fn mark_insight(&mut self, minute: i64) {
        let hour = minute.div_euclid(60);
        if let Some(h) = self.hours.iter_mut().rev().find(|h| h.hour == hour) {
            h.insight = true;
        }
    }

    /// The hours held, oldest first.
    pub(super) fn hours(&self) -> &[BurstHour] {
        &self.hours
    }

    /// Adds an hour of another series' bursts (a principal's habit gathers them from every
    /// series): the larger excess per scale, and the hour counts as reported when any of its
    /// bursts started an Insight.
    pub(super) fn absorb(&mut self, other: &BurstHour) {
        let at = self.hours.partition_point(|h| h.hour < other.hour);
        match self.hours.get_mut(at) {
            Some(h) if h.hour == other.hour => {
                for (mine, theirs) in h.excess.iter_mut().zip(other.excess) {
                    *mine = mine.max(theirs);
                }
                h.insight |= other.insight;
            }
            _ => self.hours.insert(at, *other),
        }
    }

    /// Forgets hours before `hour` (out of every window still to be fitted).
    pub fn forget_before(&mut self, hour: i64) {
        let keep = self.hours.partition_point(|h| h.hour < hour);
        if keep > 0 {
            self.hours.drain(..keep);
        }
    }

    /// Drops every hour that started an Insight, and the hours beside it: an incident's bursts
    /// (on any series) teach no habit.
    pub(super) fn drop_reported(&mut self) {
        let reported: Vec<i64> = self
            .hours
            .iter()
            .filter(|h| h.insight)
            .map(|h| h.hour)
            .collect();
        self.hours
            .retain(|h| !reported.iter().any(|&r| (h.hour - r).abs() <= 1));
    }

    /// Like [`Bursts::drop_reported`], unless the hours that started no Insight fall on at
    /// least `min_days` distinct days (0: always drop): an identity whose bursts are routine
    /// (a CI role's applies, day after day) has its larger runs reported once each, then
    /// learned, since a habit that kept only the bursts short of an Insight could never reach
    /// beyond the Insight threshold. An intruder, whose every burst was reported, has no
    /// routine to extend. Returns whether the hours make a routine.
    pub(super) fn drop_reported_unless_established(&mut self, min_days: u32) -> bool {
        let mut days: Vec<i64> = self
            .hours
            .iter()
            .filter(|h| !h.insight)
            .map(|h| h.hour.div_euclid(24))
            .collect();
        days.dedup();
        let routine = min_days > 0 && days.len() >= min_days as usize;
        if !routine {
            self.drop_reported();
        }
        routine
    }

    /// Frees the room held beyond the hours kept.
    pub fn shrink(&mut self) {
        self.hours.shrink_to_fit();
    }

    /// Forgets everything (a level shift: the old bursts describe another normal).
    pub fn clear(&mut self) {
        self.hours.clear();
    }

    /// (hour, excess at `scale`, started an Insight) of each hour held, for diagnostics.
    pub fn describe(&self, scale: usize) -> Vec<(i64, f32, bool)> {
        self.hours
            .iter()
            .filter_map(|h| {
                let e = *h.excess.get(scale)?;
                (e > 0.0).then_some((h.hour, e, h.insight))
            })
            .collect()
    }

    /// Number of hours held (for tests and memory accounting).
    pub fn len(&self) -> usize {
        self.hours.len()
    }

    /// Whether no burst is held.
    pub fn is_empty(&self) -> bool {
        self.hours.is_empty()
    }

    /// The burst tail at `scale` for a window at `excess` above the threshold, tested in
    /// absolute hour `hour`: from the hours of the baseline window (`window_hours` ending
    /// [`LAG_HOURS`] before `hour`, of which `covered_hours` are history). `None` when every
    /// burst (made by `principal`, or anyone when 0) started an Insight and fewer than `min_bursts`
    /// hours burst: the count model alone
    /// decides. A reported burst (an attacker's, say) is no habit until bursts recur; one that
    /// was not reported (automation on the first day, which nothing tests, or a burst the tail
    /// already explained) is.
    ///
    /// The excesses of the past bursts over the threshold are taken as exponential with rate
    /// λ. A correct count model gives λ = 1 (its surprises are `-ln` of p-values, and the
    /// excess of an exponential over a threshold is exponential); the tail is used only when
    /// the upper `confidence` bound of λ (n excesses summing to S: the Gamma(n, 1) quantile
    /// over S) is below 1, i.e. when the series' bursts are shown to be heavier than the model
    /// allows, and then with that bound: the expected number of bursting hours per hour at
    /// least as surprising as this window is `(bursts / covered_hours) * exp(-decay * excess)`.
    #[allow(clippy::too_many_arguments)]
    pub fn tail(
        &self,
        hour: i64,
        scale: usize,
        excess: f64,
        window_hours: i64,
        covered_hours: f64,
        min_bursts: u32,
        confidence: f64,
        principal: u64,
    ) -> Option<BurstTail> {
        if scale >= MAX_SCALES || covered_hours <= 0.0 {
            return None;
        }
        let (bursts, habitual, sum, _) = self.gather(hour, scale, window_hours, principal, 1.0);
        if bursts == 0 || (habitual == 0 && bursts < min_bursts) {
            return None;
        }
        let decay = tail_decay_bound(bursts, sum, confidence)?;
        if decay >= 1.0 {
            return None;
        }
        let per_hour =
            (f64::from(bursts) / covered_hours).min(1.0) * (-decay * excess.max(0.0)).exp();
        Some(BurstTail {
            bursts,
            decay,
            rate_per_minute: per_hour / 60.0,
        })
    }

    /// Like [`Bursts::tail`], with a power-law (Pareto) tail on the surprise scale: bursts
    /// pooled over many series (a principal's habit) mix series whose surprises for one size of
    /// burst differ, and sizes of heavy-tailed automation (Pareto sizes) give surprises whose tail
    /// is a power law, far heavier than any exponential. With `threshold` the surprise at
    /// which bursts are recorded (`-ln burst_p`) and S = threshold + excess, the Hill estimator's
    /// upper `confidence` bound of the tail index (n over the sum of `ln(S / threshold)`, a
    /// Gamma(n, 1) quantile as for the exponential) gives the rate `(bursts / covered_hours) *
    /// (S / threshold)^-index`. Used only when the exponential tail is shown heavier than the
    /// count model's (as in [`Bursts::tail`]).
    #[allow(clippy::too_many_arguments)]
    pub fn power_tail(
        &self,
        hour: i64,
        scale: usize,
        excess: f64,
        window_hours: i64,
        covered_hours: f64,
        confidence: f64,
        min_bursts: u32,
        threshold: f64,
        frequency: Option<u32>,
    ) -> Option<BurstTail> {
        if scale >= MAX_SCALES || covered_hours <= 0.0 || threshold.is_nan() || threshold <= 0.0 {
            return None;
        }
        let (bursts, habitual, sum, log_sum) = self.gather(hour, scale, window_hours, 0, threshold);
        if bursts == 0 || habitual == 0 || bursts < min_bursts {
            return None;
        }
        if tail_decay_bound(bursts, sum, confidence)? >= 1.0 {
            return None;
        }
        let index = tail_decay_bound(bursts, log_sum, confidence)?;
        let per_hour = (f64::from(frequency.unwrap_or(bursts)) / covered_hours).min(1.0)
            * (1.0 + excess.max(0.0) / threshold).powf(-index);
        Some(BurstTail {
            bursts,
            decay: index,
            rate_per_minute: per_hour / 60.0,
        })
    }

    /// The hours of the baseline window of `hour`: `window_hours` ending [`LAG_HOURS`] before it.
    fn in_window(&self, hour: i64, window_hours: i64) -> impl Iterator<Item = &BurstHour> {
        let end = hour - LAG_HOURS;
        let from = self.hours.partition_point(|h| h.hour < end - window_hours);
        self.hours[from..].iter().take_while(move |h| h.hour < end)
    }

    /// Hours of the baseline window of `hour` with a burst at any scale.
    pub(super) fn bursting_hours(&self, hour: i64, window_hours: i64) -> u32 {
        self.in_window(hour, window_hours)
            .filter(|h| h.excess.iter().any(|&e| e > 0.0))
            .count() as u32
    }

    /// Over the baseline window of `hour` (`window_hours` ending [`LAG_HOURS`] before it), the
    /// hours with a burst at `scale` made by `principal` (0: anyone): their number, how many
    /// started no Insight, the sum of their excesses and the sum of `ln(1 + excess / threshold)`.
    fn gather(
        &self,
        hour: i64,
        scale: usize,
        window_hours: i64,
        principal: u64,
        threshold: f64,
    ) -> (u32, u32, f64, f64) {
        let mut bursts = 0u32;
        let mut habitual = 0u32;
        let mut sum = 0.0f64;
        let mut log_sum = 0.0f64;
        for h in self.in_window(hour, window_hours) {
            let e = h.excess.get(scale).map_or(0.0, |&e| f64::from(e));
            if e > 0.0 && h.made_by(principal) {
                bursts += 1;
                habitual += u32::from(!h.insight);
                sum += e;
                log_sum += (e / threshold).ln_1p();
            }
        }
        (bursts, habitual, sum, log_sum)
    }
}

/// Upper `confidence` bound of an exponential rate from `n` > 0 excesses summing to `sum`: the
/// sum of n exponentials of rate λ is Gamma(n, λ), so λ ≤ Gamma(n, 1).quantile(confidence) / sum
/// with that confidence. `None` for no excess, or a confidence outside (0, 1).
pub fn tail_decay_bound(n: u32, sum: f64, confidence: f64) -> Option<f64> {
    use statrs::distribution::{ContinuousCDF, Gamma};
    if n == 0 || !(confidence > 0.0 && confidence < 1.0) || sum.is_nan() || sum <= 0.0 {
        return None;
    }
    let gamma = Gamma::new(f64::from(n), 1.0).ok()?;
    Some(gamma.inverse_cdf(confidence) / sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_without_bursts_has_no_tail() {
        let b = Bursts::default();
        assert!(b.tail(200, 0, 5.0, 168, 168.0, 2, 0.95, 0).is_none());
    }

    #[test]
    fn one_reported_burst_is_not_a_habit_but_an_unreported_one_is() {
        let mut b = Bursts::default();
        b.record(10 * 60 + 5, 0, 20.0, 0);
        assert!(b.tail(100, 0, 5.0, 168, 100.0, 2, 0.95, 0).is_some());
        b.mark_insight(10 * 60 + 30);
        assert!(b.tail(100, 0, 5.0, 168, 100.0, 2, 0.95, 0).is_none());
        assert!(b.tail(100, 0, 5.0, 168, 100.0, 1, 0.95, 0).is_some());
        // The reported burst recurs: now a habit.
        b.record(50 * 60, 0, 20.0, 0);
        b.mark_insight(50 * 60);
        assert_eq!(
            b.tail(100, 0, 5.0, 168, 100.0, 2, 0.95, 0).unwrap().bursts,
            2
        );
    }

    #[test]
    fn surprises_the_count_model_explains_leave_it_alone() {
        // Excesses of about 1 (a correct model's): the rate's upper bound is above 1.
        let mut b = Bursts::default();
        for h in 0..10 {
            b.record(60 * (10 + h), 0, 1.0, 0);
        }
        assert!(b.tail(100, 0, 20.0, 168, 100.0, 2, 0.95, 0).is_none());
        // Far heavier ones (an automation habit): the tail holds.
        for h in 0..10 {
            b.record(60 * (30 + h), 0, 100.0, 0);
        }
        assert!(b.tail(100, 0, 20.0, 168, 100.0, 2, 0.95, 0).is_some());
    }

    #[test]
    fn the_tail_by_hand() {
        // Two bursting hours at excesses 10 and 30 (the hour's largest per scale counts).
        let mut b = Bursts::default();
        b.record(60 * 10 + 1, 0, 4.0, 0);
        b.record(60 * 10 + 7, 0, 10.0, 0);
        b.record(60 * 20, 0, 30.0, 0);
        b.record(60 * 20, 1, 2.0, 0);
        let t = b.tail(30, 0, 15.0, 168, 24.0, 2, 0.95, 0).unwrap();
        assert_eq!(t.bursts, 2);
        // decay = Gamma(2).ppf(0.95) / 40; per hour = 2/24 * exp(-decay * 15); per minute / 60.
        let decay: f64 = 4.743_864_518_390_577 / 40.0;
        assert!((t.decay / decay - 1.0).abs() < 1e-6, "{}", t.decay);
        let expected = 2.0 / 24.0 * (-t.decay * 15.0).exp() / 60.0;
        assert!((t.rate_per_minute - expected).abs() < 1e-15);
        // Scale 1 had one burst only (excess 2), which started no Insight: a habit, but one
        // the count model explains (Gamma(1).ppf(0.95) / 2 = 1.5 > 1).
        assert!(b.tail(30, 1, 1.0, 168, 24.0, 2, 0.95, 0).is_none());
    }

    #[test]
    fn a_bursts_tail_matches_scipy() {
        // Reference values computed independently with SciPy 1.17:
        //   poisson.sf(11, 0.05)                      = 4.867001563730425e-25
        //   excess = log(1e-3 / p)                    = 49.07439399372527
        //   gamma.ppf(0.95, 2)                        = 4.743864518390577
        //   decay = gamma.ppf(0.95, 2) / (10 + 30)    = 0.11859661295976442
        //   2 / 168 * exp(-decay * excess) / 60       = 5.887770359274478e-07
        let model = crate::detect::model::CountModel::Poisson { mean: 0.05 };
        let p = model.rise_crossing_rate(12, 1);
        assert!((p / 4.867_001_563_730_425e-25 - 1.0).abs() < 1e-9, "{p}");
        let excess = (1e-3 / p).ln();
        assert!((excess - 49.074_393_993_725_27).abs() < 1e-9);
        let mut b = Bursts::default();
        b.record(60 * 1100 + 3, 0, 10.0, 0);
        b.record(60 * 1150 + 40, 0, 30.0, 0);
        let t = b.tail(1200, 0, excess, 168, 168.0, 2, 0.95, 0).unwrap();
        assert!(
            (t.decay / 0.118_596_612_959_764_42 - 1.0).abs() < 1e-6,
            "{}",
            t.decay
        );
        assert!((t.rate_per_minute / 5.887_770_359_274_478e-7 - 1.0).abs() < 1e-4);
    }

    #[test]
    fn the_power_tail_by_hand() {
        // Excesses 10 and 30 over a threshold of ln(1000) (burst_p = 1e-3):
        //   index = gamma.ppf(0.95, 2) / (ln(1 + 10/u) + ln(1 + 30/u))   (SciPy 1.17 for ppf)
        //   rate  = 2/24 * (1 + 15/u)^-index / 60
        let u = 1000f64.ln();
        let mut b = Bursts::default();
        b.record(60 * 10, 0, 10.0, 0);
        b.record(60 * 20, 0, 30.0, 0);
        let t = b
            .power_tail(30, 0, 15.0, 168, 24.0, 0.95, 1, u, None)
            .unwrap();
        let index = 4.743_864_518_390_577 / ((1.0 + 10.0 / u).ln() + (1.0 + 30.0 / u).ln());
        assert!((t.decay / index - 1.0).abs() < 1e-6, "{} {index}", t.decay);
        let expected = 2.0 / 24.0 * (1.0 + 15.0 / u).powf(-index) / 60.0;
        assert!((t.rate_per_minute / expected - 1.0).abs() < 1e-6);
        // Heavier than the exponential tail at a large excess: a burst ten times as surprising
        // stays within the habit.
        let exp = b.tail(30, 0, 300.0, 168, 24.0, 2, 0.95, 0).unwrap();
        let pow = b
            .power_tail(30, 0, 300.0, 168, 24.0, 0.95, 1, u, None)
            .unwrap();
        assert!(pow.rate_per_minute > 1e6 * exp.rate_per_minute);
        // Only reported bursts: no habit.
        let mut r = Bursts::default();
        r.record(60 * 10, 0, 10.0, 0);
        r.mark_insight(60 * 10);
        assert!(r
            .power_tail(30, 0, 15.0, 168, 24.0, 0.95, 1, u, None)
            .is_none());
    }

    #[test]
    fn the_power_tail_at_the_median_by_hand() {
        // The same bursts at burst_confidence = 0.5 (the posterior median of the index):
        //   index = gamma.ppf(0.5, 2) / (ln(1 + 10/u) + ln(1 + 30/u))   (SciPy 1.17.1:
        //   gamma.ppf(0.5, 2) = 1.6783469900166612), lighter tails than the 0.95 bound's.
        let u = 1000f64.ln();
        let mut b = Bursts::default();
        b.record(60 * 10, 0, 10.0, 0);
        b.record(60 * 20, 0, 30.0, 0);
        let t = b
            .power_tail(30, 0, 15.0, 168, 24.0, 0.5, 1, u, None)
            .unwrap();
        let index = 1.678_346_990_016_661_2 / ((1.0 + 10.0 / u).ln() + (1.0 + 30.0 / u).ln());
        assert!((t.decay / index - 1.0).abs() < 1e-6, "{} {index}", t.decay);
        let bound = b
            .power_tail(30, 0, 15.0, 168, 24.0, 0.95, 1, u, None)
            .unwrap();
        assert!(t.rate_per_minute > bound.rate_per_minute);
        // Two bursts are not enough where three are asked for.
        assert!(b
            .power_tail(30, 0, 15.0, 168, 24.0, 0.5, 3, u, None)
            .is_none());
        // Another frequency (a pooled tail read at one principal's bursting hours): the rate
        // scales with it, the index is the bursts'.
        let f = b
            .power_tail(30, 0, 15.0, 168, 24.0, 0.5, 1, u, Some(1))
            .unwrap();
        assert!((f.rate_per_minute / t.rate_per_minute - 0.5).abs() < 1e-9);
        assert_eq!(b.bursting_hours(30, 168), 2);
    }

    #[test]
    fn a_routine_principals_reported_runs_join_its_habit_an_intruders_never() {
        let day = |d: i64, h: i64| (d * 24 + h) * 60;
        // Unreported bursts on days 1 and 2, a reported one on day 3: routine.
        let mut routine = Bursts::default();
        routine.record(day(1, 10), 0, 2.0, 7);
        routine.record(day(2, 10), 0, 2.0, 7);
        routine.record(day(3, 10), 0, 40.0, 7);
        routine.mark_insight(day(3, 10));
        let mut kept = routine.clone();
        assert!(kept.drop_reported_unless_established(2));
        assert_eq!(kept.len(), 3);
        // The rule off (0), or a routine of one day only: the reported hour goes.
        let mut off = routine.clone();
        off.drop_reported_unless_established(0);
        assert_eq!(off.len(), 2);
        let mut one_day = Bursts::default();
        one_day.record(day(1, 10), 0, 2.0, 7);
        one_day.record(day(1, 14), 0, 2.0, 7);
        one_day.record(day(3, 10), 0, 40.0, 7);
        one_day.mark_insight(day(3, 10));
        assert!(!one_day.drop_reported_unless_established(2));
        assert_eq!(one_day.len(), 2);
        // An intruder whose bursts on three days were each reported has no habit.
        let mut intruder = Bursts::default();
        for d in [2, 4, 6] {
            intruder.record(day(d, 3), 0, 30.0, 9);
            intruder.mark_insight(day(d, 3));
        }
        assert!(!intruder.drop_reported_unless_established(2));
        assert!(intruder.is_empty());
    }

    #[test]
    fn only_the_window_before_the_lag_counts() {
        let mut b = Bursts::default();
        b.record(60 * 10, 0, 5.0, 0);
        b.record(60 * 11, 0, 5.0, 0);
        // Tested in hour 12: the window ends at hour 10 (LAG_HOURS = 2), so neither counts.
        assert!(b.tail(12, 0, 1.0, 168, 10.0, 1, 0.95, 0).is_none());
        // In hour 13 the window ends at 11: the burst of hour 10 counts.
        assert_eq!(b.tail(13, 0, 1.0, 168, 10.0, 1, 0.95, 0).unwrap().bursts, 1);
        // A window of 2 hours ending at hour 13 (tested in hour 15) still holds hours 11 and 12.
        assert_eq!(b.tail(15, 0, 1.0, 2, 10.0, 1, 0.95, 0).unwrap().bursts, 1);
        b.forget_before(11);
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn a_habit_is_its_principals() {
        let ci = principal_id("arn:aws:sts::1:assumed-role/Deploy/GitHubActions");
        let stranger = principal_id("arn:aws:iam::1:user/never-seen");
        let mut b = Bursts::default();
        b.record(60 * 10, 0, 50.0, ci);
        b.record(60 * 20, 0, 80.0, ci);
        assert!(b.tail(100, 0, 20.0, 168, 100.0, 2, 0.95, ci).is_some());
        assert!(b.tail(100, 0, 20.0, 168, 100.0, 2, 0.95, 0).is_some());
        assert!(b
            .tail(100, 0, 20.0, 168, 100.0, 2, 0.95, stranger)
            .is_none());
    }

    #[test]
    fn an_assumed_roles_sessions_are_one_principal() {
        assert_eq!(
            role_of("arn:aws:sts::123:assumed-role/Deploy/run-4711"),
            "arn:aws:sts::123:assumed-role/Deploy"
        );
        assert_eq!(
            principal_id("arn:aws:sts::123:assumed-role/Deploy/run-1"),
            principal_id("arn:aws:sts::123:assumed-role/Deploy/run-2")
        );
        assert_ne!(
            principal_id("arn:aws:sts::123:assumed-role/Deploy/run-1"),
            principal_id("arn:aws:sts::123:assumed-role/Other/run-1")
        );
        assert_eq!(
            role_of("arn:aws:iam::123:user/alice"),
            "arn:aws:iam::123:user/alice"
        );
        let sso = "arn:aws:sts::123:assumed-role/AWSReservedSSO_Admin_5f2e/carol@example.com";
        assert_eq!(role_of(sso), sso);
        assert_eq!(
            role_of("arn:aws:sts::123:assumed-role/x"),
            "arn:aws:sts::123:assumed-role/x"
        );
    }

    #[test]
    fn absorbed_hours_merge_by_hour() {
        let mut a = Bursts::default();
        a.record(60 * 10, 0, 5.0, 7);
        let mut b = Bursts::default();
        b.record(60 * 10 + 3, 0, 9.0, 7);
        b.record(60 * 5, 1, 2.0, 7);
        b.mark_insight(60 * 10);
        let mut habit = Bursts::default();
        for h in a.hours().iter().chain(b.hours()) {
            habit.absorb(h);
        }
        assert_eq!(habit.describe(0), vec![(10, 9.0, true)]);
        assert_eq!(habit.describe(1), vec![(5, 2.0, false)]);
    }

    #[test]
    fn out_of_order_records_stay_sorted() {
        let mut b = Bursts::default();
        b.record(60 * 20, 0, 1.0, 0);
        b.record(60 * 10, 0, 2.0, 0);
        b.record(60 * 10 + 5, 0, 3.0, 0);
        assert_eq!(
            b.hours.iter().map(|h| h.hour).collect::<Vec<_>>(),
            vec![10, 20]
        );
        assert_eq!(b.hours[0].excess[0], 3.0);
    }
}
