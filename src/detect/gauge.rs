//! Gauge mode: the detector for sampled metrics (CloudWatch CPU %, bytes, request counts every
//! few minutes) rather than per-minute call counts. Same machinery as the count detector — a
//! trailing baseline refitted each hour with hour-of-day and weekday/weekend levels shrunk towards
//! the series' level, bounds from the profile's false-alarm budget, episodes with hysteresis and a
//! cool-down — but the bounds come from the tails of the history itself (an exponential tail over
//! a high quantile, as in peaks-over-threshold), because gauges are neither counts nor normal.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::baseline::day_type;
use super::decide::Sensitivity;
use super::profile::Profile;

/// Settings of the gauge mode that the count profile has no word for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GaugeSettings {
    /// History (minutes) a series needs before any detection.
    pub min_history_minutes: i64,
    /// Quantile of the history above (and, mirrored, below) which the tail is modelled.
    pub tail_quantile: f64,
    /// Pseudo-days pulling an hour-of-day level towards the series' level (and a weekday or
    /// weekend hour towards the same hour on any day).
    pub hour_prior_days: f64,
    /// Smallest tail scale, as a fraction of the series' typical magnitude: a flat gauge's
    /// last-digit jitter is not an anomaly.
    pub relative_floor: f64,
}

impl Default for GaugeSettings {
    fn default() -> Self {
        GaugeSettings {
            min_history_minutes: 720,
            tail_quantile: 0.995,
            hour_prior_days: 2.0,
            relative_floor: 0.01,
        }
    }
}

/// The profile the gauge mode runs with by default: the built-in profile with two changes.
/// A gauge is one metric of one resource, not one of thousands of API series of an account, so
/// its false-alarm budget is 2.5 per 1,000 series-days (one false alarm per ~400 days of a
/// metric) instead of 0.25; and a metric's incident wavers for longer than a burst of calls,
/// so an episode ends after 60 quiet minutes instead of 15 (one incident, one Start).
pub fn gauge_profile() -> Profile {
    let mut profile = Profile::builtin();
    profile.detect.false_insights_per_1000_series_days = 2.5;
    profile.detect.cooldown_minutes = 60;
    profile
}

/// The exponential tail of one side of one window's residual means.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tail {
    /// Where the tail starts (a quantile of the history).
    start: f64,
    /// Fraction of the history beyond `start`.
    fraction: f64,
    /// Mean excess beyond `start` (floored).
    scale: f64,
}

impl Tail {
    /// Probability of a value at least `x` beyond the tail's side (x measured outward).
    fn p(&self, x: f64) -> f64 {
        if x <= self.start {
            return self.fraction.max(1e-300);
        }
        (self.fraction * (-(x - self.start) / self.scale).exp()).max(1e-300)
    }

    /// The value whose tail probability is `alpha`: the bound.
    fn bound(&self, alpha: f64) -> f64 {
        self.start + self.scale * (self.fraction / alpha).max(1.0).ln()
    }
}

/// The baseline fitted at the start of one hour from the window of history before it.
#[derive(Debug, Clone, PartialEq)]
struct GaugeFit {
    /// Level per (day type, hour of day).
    level: [[f64; 24]; 2],
    /// Per tested window: (upper tail of residual means, lower tail of their negatives).
    tails: Vec<(Tail, Tail)>,
}

/// What the detector says about one sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GaugeStep {
    /// Evidence of a new episode in [0, 1]: 0.5 at the profile's per-test level, 0 while an
    /// episode is already open (its rows are not news).
    pub score: f64,
    /// True at the sample that opens an episode (the binary detection, like an Insight Start).
    pub start: bool,
    /// True while an episode is open (the opening sample included).
    pub in_episode: bool,
    /// Smallest tail probability over the tested windows and both directions.
    pub p: f64,
    /// The expected value (level) at this sample.
    pub expected: f64,
    /// The upper bound of the one-sample window at the profile's level (NaN before a fit).
    pub upper: f64,
    /// The lower bound of the one-sample window.
    pub lower: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Episode {
    length: i64,
    quiet: i64,
}

/// One gauge series' detector, fed sample by sample in time order (online: a sample is judged
/// only against the samples before it).
#[derive(Debug, Clone)]
pub struct GaugeDetector {
    settings: GaugeSettings,
    window_seconds: i64,
    windows: Vec<usize>,
    sensitivity: Sensitivity,
    continue_p: f64,
    cooldown_samples: i64,
    max_episode_samples: i64,
    history: VecDeque<(i64, f64)>,
    first: Option<i64>,
    fit: Option<(i64, GaugeFit)>,
    episode: Option<Episode>,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let (a, b) = (
        sorted.get(lo).copied().unwrap_or(0.0),
        sorted.get(hi).copied().unwrap_or(0.0),
    );
    a + (b - a) * (pos - lo as f64)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    quantile(values, 0.5)
}

impl GaugeDetector {
    /// A detector for a series sampled every `step_seconds`, with the count profile's baseline
    /// window, windows, false-alarm budget and episode settings translated to samples.
    pub fn new(profile: &Profile, settings: &GaugeSettings, step_seconds: i64) -> GaugeDetector {
        let step = step_seconds.max(1);
        let mut windows: Vec<usize> = profile
            .detect
            .windows_minutes
            .iter()
            .map(|&w| ((i64::from(w) * 60 + step - 1) / step).max(1) as usize)
            .collect();
        windows.sort_unstable();
        windows.dedup();
        // The budget per series-day, spread over every test of every sample of a day.
        let samples_per_day = (86_400.0 / step as f64).max(1.0);
        let tests = 2.0 * windows.len() as f64;
        let sensitivity = Sensitivity::new(
            profile.detect.false_insights_per_1000_series_days / (1000.0 * samples_per_day * tests),
        );
        let minutes_to_samples = |m: i64| ((m * 60 + step - 1) / step).max(1);
        GaugeDetector {
            settings: settings.clone(),
            window_seconds: profile.baseline.window_minutes * 60,
            windows,
            sensitivity,
            continue_p: profile.detect.continue_p.max(sensitivity.level()),
            cooldown_samples: minutes_to_samples(profile.detect.cooldown_minutes),
            max_episode_samples: minutes_to_samples(profile.detect.max_episode_minutes),
            history: VecDeque::new(),
            first: None,
            fit: None,
            episode: None,
        }
    }

    /// The per-test level in force.
    pub fn sensitivity(&self) -> Sensitivity {
        self.sensitivity
    }

    /// The tested windows, in samples.
    pub fn windows(&self) -> &[usize] {
        &self.windows
    }

    fn refit(&self, hour: i64) -> GaugeFit {
        let since = hour * 3600 - self.window_seconds;
        let history: Vec<(i64, f64)> = self
            .history
            .iter()
            .copied()
            .filter(|&(t, _)| t >= since)
            .collect();
        let mut all: Vec<f64> = history.iter().map(|&(_, v)| v).collect();
        let overall = median(&mut all);
        // Hour-of-day levels (any day), then weekday/weekend levels, each shrunk by pseudo-days.
        let mut by_hour: Vec<Vec<f64>> = vec![Vec::new(); 24];
        let mut by_type: Vec<Vec<f64>> = vec![Vec::new(); 48];
        let mut days_hour = vec![std::collections::BTreeSet::new(); 24];
        let mut days_type = vec![std::collections::BTreeSet::new(); 48];
        for &(t, v) in &history {
            let h = t.div_euclid(3600);
            let hod = h.rem_euclid(24) as usize;
            let slot = day_type(h) * 24 + hod;
            if let (Some(a), Some(b), Some(c), Some(d)) = (
                by_hour.get_mut(hod),
                by_type.get_mut(slot),
                days_hour.get_mut(hod),
                days_type.get_mut(slot),
            ) {
                a.push(v);
                b.push(v);
                c.insert(t.div_euclid(86_400));
                d.insert(t.div_euclid(86_400));
            }
        }
        let prior = self.settings.hour_prior_days;
        let shrink = |values: &mut Vec<f64>, days: usize, towards: f64| {
            if values.is_empty() {
                return towards;
            }
            let d = days as f64;
            (d * median(values) + prior * towards) / (d + prior)
        };
        let mut hour_level = [overall; 24];
        for (hod, level) in hour_level.iter_mut().enumerate() {
            if let (Some(values), Some(days)) = (by_hour.get_mut(hod), days_hour.get(hod)) {
                *level = shrink(values, days.len(), overall);
            }
        }
        let mut level = [hour_level; 2];
        for (dt, row) in level.iter_mut().enumerate() {
            for (hod, cell) in row.iter_mut().enumerate() {
                let slot = dt * 24 + hod;
                if let (Some(values), Some(days)) = (by_type.get_mut(slot), days_type.get(slot)) {
                    *cell = shrink(values, days.len(), hour_level[hod]);
                }
            }
        }
        let residuals: Vec<f64> = history
            .iter()
            .map(|&(t, v)| v - level_at(&level, t))
            .collect();
        let mut deviations: Vec<f64> = residuals.iter().map(|r| r.abs()).collect();
        let spread = 1.4826 * median(&mut deviations);
        let floor = (self.settings.relative_floor * overall.abs().max(spread)).max(1e-9);
        let q = self.settings.tail_quantile;
        let tail_of = |sorted: &[f64]| -> Tail {
            let start = quantile(sorted, q);
            let beyond: Vec<f64> = sorted
                .iter()
                .filter(|&&x| x > start)
                .map(|x| x - start)
                .collect();
            let fraction = (beyond.len().max(1) as f64 / sorted.len().max(1) as f64).min(1.0);
            let mean_excess = if beyond.is_empty() {
                0.0
            } else {
                beyond.iter().sum::<f64>() / beyond.len() as f64
            };
            Tail {
                start,
                fraction,
                scale: mean_excess.max(floor),
            }
        };
        let tails = self
            .windows
            .iter()
            .map(|&k| {
                let mut means: Vec<f64> = residuals
                    .windows(k.min(residuals.len()).max(1))
                    .map(|w| w.iter().sum::<f64>() / w.len() as f64)
                    .collect();
                means.sort_by(f64::total_cmp);
                let upper = tail_of(&means);
                let mut negated: Vec<f64> = means.iter().rev().map(|m| -m).collect();
                negated.sort_by(f64::total_cmp);
                (upper, tail_of(&negated))
            })
            .collect();
        GaugeFit { level, tails }
    }

    /// Judges the sample at `timestamp` (seconds, not before any earlier one) against the history
    /// before it, then adds it to the history.
    pub fn observe(&mut self, timestamp: i64, value: f64) -> GaugeStep {
        let first = *self.first.get_or_insert(timestamp);
        let hour = timestamp.div_euclid(3600);
        if self.fit.as_ref().is_none_or(|(h, _)| *h != hour) && !self.history.is_empty() {
            self.fit = Some((hour, self.refit(hour)));
        }
        let ready = timestamp - first >= self.settings.min_history_minutes * 60;
        let mut step = GaugeStep {
            score: 0.0,
            start: false,
            in_episode: false,
            p: 1.0,
            expected: value,
            upper: f64::NAN,
            lower: f64::NAN,
        };
        if let (true, Some((_, fit))) = (ready, &self.fit) {
            step.expected = level_at(&fit.level, timestamp);
            let residual = value - step.expected;
            let mut p_min: f64 = 1.0;
            for (&k, (upper, lower)) in self.windows.iter().zip(&fit.tails) {
                // The window's mean residual: this sample and the k - 1 before it.
                let mut sum = residual;
                let mut n = 1usize;
                for &(t, v) in self.history.iter().rev().take(k - 1) {
                    sum += v - level_at(&fit.level, t);
                    n += 1;
                }
                let mean = sum / n as f64;
                p_min = p_min.min(upper.p(mean)).min(lower.p(-mean));
                if k == 1 {
                    step.upper = step.expected + upper.bound(self.sensitivity.level());
                    step.lower = step.expected - lower.bound(self.sensitivity.level());
                }
            }
            step.p = p_min;
            step = self.advance_episode(step);
        }
        self.history.push_back((timestamp, value));
        while self
            .history
            .front()
            .is_some_and(|&(t, _)| t < timestamp - self.window_seconds)
        {
            self.history.pop_front();
        }
        step
    }

    fn advance_episode(&mut self, mut step: GaugeStep) -> GaugeStep {
        let surprise = -step.p.max(1e-300).ln();
        let at_alpha = -self.sensitivity.level().ln();
        match &mut self.episode {
            Some(ep) => {
                ep.length += 1;
                if step.p < self.continue_p {
                    ep.quiet = 0;
                } else {
                    ep.quiet += 1;
                }
                step.in_episode = true;
                if ep.quiet >= self.cooldown_samples || ep.length >= self.max_episode_samples {
                    self.episode = None;
                }
            }
            None => {
                step.score = surprise / (surprise + at_alpha);
                if self.sensitivity.is_unusual(step.p) {
                    step.start = true;
                    step.in_episode = true;
                    self.episode = Some(Episode {
                        length: 1,
                        quiet: 0,
                    });
                } else {
                    // Below the level, the score stays below one half.
                    step.score = step.score.min(0.499_999);
                }
            }
        }
        step
    }
}

fn level_at(level: &[[f64; 24]; 2], timestamp: i64) -> f64 {
    let h = timestamp.div_euclid(3600);
    let hod = h.rem_euclid(24) as usize;
    level
        .get(day_type(h))
        .and_then(|row| row.get(hod))
        .copied()
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_tail_bound_has_the_stated_probability() {
        let tail = Tail {
            start: 2.0,
            fraction: 0.02,
            scale: 0.5,
        };
        let b = tail.bound(1e-6);
        // 2 + 0.5 ln(0.02 / 1e-6) by hand.
        assert!((b - (2.0 + 0.5 * (20_000f64).ln())).abs() < 1e-12);
        assert!((tail.p(b) - 1e-6).abs() < 1e-15);
    }

    #[test]
    fn a_step_change_opens_one_episode_and_flat_noise_none() {
        let profile = Profile::default();
        let mut d = GaugeDetector::new(&profile, &GaugeSettings::default(), 300);
        let mut starts = Vec::new();
        // Three days of a jittery level around 40 (a deterministic pattern), then a jump to 90.
        for i in 0..1200i64 {
            let jitter = ((i * 7919) % 13) as f64 * 0.3;
            let v = if i < 900 {
                40.0 + jitter
            } else {
                90.0 + jitter
            };
            let s = d.observe(1_400_000_000 + i * 300, v);
            if s.start {
                starts.push(i);
            }
            assert!((0.0..=1.0).contains(&s.score));
        }
        assert_eq!(starts, vec![900]);
    }

    #[test]
    fn the_level_follows_the_hour_of_day() {
        let profile = gauge_profile();
        let mut d = GaugeDetector::new(&profile, &GaugeSettings::default(), 300);
        // Busy (80) from 09:00 to 17:00 UTC, quiet (10) otherwise, for four weekdays
        // (2014-04-07 was a Monday), with a small deterministic jitter.
        let monday = 1_396_828_800;
        let mut starts = 0;
        for i in 0..(4 * 288) {
            let t = monday + i * 300;
            let hod = (t / 3600) % 24;
            let base = if (9..17).contains(&hod) { 80.0 } else { 10.0 };
            let s = d.observe(t, base + ((i * 7919) % 11) as f64 * 0.2);
            if i >= 3 * 288 && base > 50.0 {
                // Day four, busy hours: three days of the hour (median about 81) shrunk towards
                // the series' median (about 11, a third of the day is busy) by 2 pseudo-days,
                // then the weekday hour (the same three days) shrunk towards that.
                let any_day = (3.0 * 81.0 + 2.0 * 11.0) / 5.0;
                let want = (3.0 * 81.0 + 2.0 * any_day) / 5.0;
                assert!(
                    (s.expected - want).abs() < 1.0,
                    "{i}: {} vs {want}",
                    s.expected
                );
            }
            starts += usize::from(s.start && i >= 2 * 288);
        }
        // The daily rise and fall are expected once learned: no Start on days three and four.
        assert_eq!(starts, 0);
    }
}
