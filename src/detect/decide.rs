//! Deciding, apart from fitting. A fitted baseline ([`super::baseline::HourFit`], or any other
//! [`WindowFit`]) says what count a window of minutes should hold; the functions here decide,
//! from that and the profile alone, whether a window is a candidate rise or fall, how unusual
//! it is, where its unusual run began and how the decision is explained. They never read how
//! the baseline was fitted, so a new way of fitting (another model, another kind of series)
//! changes no decision rule, and a new rule needs no change to the fitting.
//!
//! What stays in [`super::episode`] are the rules that read the series' own recent minutes
//! (bursts, habits, sustained rises, echoes of calls) and the episode state machine.

use super::model::CountModel;
use super::profile::{DetectSettings, Profile};
use crate::insight::{Direction, Explanation};
use crate::series::Minute;

/// The per-test level: a window is unusual when a normal series reaches its count with less
/// than this probability. It is the profile's budget of false Insights spread over every test
/// of every minute of a day ([`Sensitivity::of`]), lowered for an account with so many series
/// that its budget per account-day would not hold otherwise ([`Sensitivity::scaled`]).
///
/// A type of its own, not a bare `f64`, so that it is never confused with a p-value, a rate or
/// the continuation level `detect.continue_p` it is compared against.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Sensitivity(f64);

impl Sensitivity {
    /// The level of a profile: `detect.false_insights_per_1000_series_days` spread over the 1,440
    /// minutes of a day and, at each minute, both directions of every window (Bonferroni).
    pub fn of(profile: &Profile) -> Sensitivity {
        let tests_per_minute = 2.0 * profile.detect.windows_minutes.len().max(1) as f64;
        Sensitivity::new(
            profile.detect.false_insights_per_1000_series_days
                / (1000.0 * 1440.0 * tests_per_minute),
        )
    }

    /// A level of `p`, kept within (0, 1] (a validated profile never gives one outside it).
    pub fn new(p: f64) -> Sensitivity {
        if p.is_nan() {
            return Sensitivity(f64::MIN_POSITIVE);
        }
        Sensitivity(p.clamp(f64::MIN_POSITIVE, 1.0))
    }

    /// The level as a probability.
    pub fn level(self) -> f64 {
        self.0
    }

    /// Whether a window with tail probability `p` is unusual at this level.
    pub fn is_unusual(self, p: f64) -> bool {
        p < self.0
    }

    /// Whether a window with tail probability `p` is not unusual at this level (a NaN
    /// probability is neither).
    pub fn is_usual(self, p: f64) -> bool {
        p >= self.0
    }

    /// This level times `factor` (an account's share of its budget).
    pub fn scaled(self, factor: f64) -> Sensitivity {
        Sensitivity::new(self.0 * factor)
    }
}

/// What a decision reads of a fitted baseline: the predictive count model of each window, and
/// how much history stands behind it.
pub trait WindowFit {
    /// The predictive distribution of the count in the `window` minutes ending at `t`
    /// (inclusive), the rates' uncertainty included.
    fn window_model(&self, t: Minute, window: i64) -> CountModel;
    /// The same at the rates' point estimates (what bursts are measured against).
    fn point_window_model(&self, t: Minute, window: i64) -> CountModel;
    /// Days of history behind the window of `window` minutes ending at `t`.
    fn days_supporting(&self, t: Minute, window: i64) -> u32;
    /// The expected calls of one minute of the hour served.
    fn expected_minute(&self) -> f64;
    /// Calls per minute over the whole baseline window (AWS's `baseline.average`).
    fn average(&self) -> f64;
    /// Minutes of history in the baseline window (AWS's `baselineDuration`).
    fn minutes(&self) -> i64;
}

/// Whether `observed` calls in a window with this model may be a rise at all: at least
/// `detect.min_calls`, and more than `detect.screen_sd` standard deviations above the mean (a
/// cheap screen before the tail probability, which at the per-test level is far beyond it).
pub fn rise_screened(model: &CountModel, observed: u64, d: &DetectSettings) -> bool {
    let (mean, sd) = (model.mean(), model.variance().sqrt());
    observed >= d.min_calls && observed as f64 > mean + d.screen_sd * sd
}

/// The tail probability of a fall to `observed` in the window of `window` minutes ending at
/// `t`, when the window may be a fall at all: an expected count of at least
/// `detect.fall_min_expected`, `observed` at most `detect.fall_max_fraction` of it and more than
/// `detect.screen_sd` standard deviations below it, and the rate seen on at least
/// `detect.fall_min_days` days of history (a rate seen once is no habit whose absence matters).
pub fn fall_tail(
    fit: &impl WindowFit,
    model: &CountModel,
    t: Minute,
    window: i64,
    observed: u64,
    d: &DetectSettings,
) -> Option<f64> {
    let (mean, sd) = (model.mean(), model.variance().sqrt());
    let obs = observed as f64;
    (mean >= d.fall_min_expected
        && obs <= d.fall_max_fraction * mean
        && fit.days_supporting(t, window) >= d.fall_min_days
        && obs < mean - d.screen_sd * sd)
        .then(|| model.fall_crossing_rate(observed, window))
}

/// The first unusual minute of a window that fired: the start of the most significant run
/// ending at `t` (a scan statistic over the suffixes of the window). `sum(len)` is the count of
/// the `len` minutes ending at `t`.
pub fn run_start(
    fit: &impl WindowFit,
    direction: Direction,
    t: Minute,
    window: i64,
    sum: impl Fn(i64) -> u64,
) -> Minute {
    let mut start = t;
    let mut best_p = f64::INFINITY;
    for len in 1..=window {
        let m = fit.window_model(t, len);
        let s = sum(len);
        let p = match direction {
            Direction::Rise => m.p_rise(s),
            Direction::Fall => m.p_fall(s),
        };
        if p < best_p {
            best_p = p;
            start = t - len + 1;
        }
    }
    start
}

/// Whether an open episode's window is still unusual enough to keep it open (`detect.continue_p`,
/// looser than the level that opened it).
pub fn continues(
    model: &CountModel,
    direction: Direction,
    observed: u64,
    d: &DetectSettings,
) -> bool {
    let p = match direction {
        Direction::Rise => model.p_rise(observed),
        Direction::Fall => model.p_fall(observed),
    };
    p < d.continue_p
}

/// Why a window fired: its count, the model's expectation and bounds at this level, the tail
/// probability. A sensitive API's first call (`by_sensitive`) has every call beyond its bound.
pub fn explain(
    direction: Direction,
    window: i64,
    observed: u64,
    model: &CountModel,
    p_value: f64,
    sensitivity: Sensitivity,
    by_sensitive: bool,
) -> Explanation {
    Explanation {
        direction,
        window_minutes: window as u32,
        observed,
        expected: model.mean(),
        lower_bound: model.window_lower_bound(sensitivity.level(), window),
        upper_bound: if by_sensitive {
            0
        } else {
            model.window_upper_bound(sensitivity.level(), window)
        },
        p_value,
        p_threshold: sensitivity.level(),
        model: if by_sensitive {
            "sensitive-api".to_string()
        } else {
            model.name().to_string()
        },
        dispersion: model.dispersion(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fit with one constant rate and no over-dispersion: every window is Poisson.
    struct Flat {
        rate: f64,
        days: u32,
    }

    impl WindowFit for Flat {
        fn window_model(&self, _t: Minute, window: i64) -> CountModel {
            CountModel::Poisson {
                mean: self.rate * window as f64,
            }
        }
        fn point_window_model(&self, t: Minute, window: i64) -> CountModel {
            self.window_model(t, window)
        }
        fn days_supporting(&self, _t: Minute, _window: i64) -> u32 {
            self.days
        }
        fn expected_minute(&self) -> f64 {
            self.rate
        }
        fn average(&self) -> f64 {
            self.rate
        }
        fn minutes(&self) -> i64 {
            7 * 1440
        }
    }

    #[test]
    fn the_default_sensitivity_spreads_the_budget_over_every_test() {
        // 0.25 false Insights per 1,000 series-days, 1,440 minutes, 2 directions x 4 windows.
        let s = Sensitivity::of(&Profile::default());
        let by_hand = 0.25 / (1000.0 * 1440.0 * 8.0);
        assert!((s.level() - by_hand).abs() < 1e-20, "{}", s.level());
        assert_eq!(s.level(), Profile::default().p_threshold());
        assert!(s.is_unusual(by_hand / 2.0));
        assert!(!s.is_unusual(by_hand));
        assert_eq!(s.scaled(0.5).level(), by_hand / 2.0);
        assert_eq!(Sensitivity::new(f64::NAN).level(), f64::MIN_POSITIVE);
        assert_eq!(Sensitivity::new(3.0).level(), 1.0);
    }

    #[test]
    fn a_rise_must_pass_the_screen_and_a_fall_needs_history() {
        let d = Profile::default().detect;
        // Poisson(10): sd 3.16, so the screen at 2.5 sd is above 17.9.
        let model = CountModel::Poisson { mean: 10.0 };
        assert!(!rise_screened(&model, 17, &d));
        assert!(rise_screened(&model, 18, &d));
        let quiet = CountModel::Poisson { mean: 0.1 };
        assert!(!rise_screened(&quiet, d.min_calls - 1, &d));
        // A drop to zero of 40 expected calls over 15 minutes, seen on enough days: a fall; the
        // same rate seen on fewer days than `fall_min_days` is not.
        let fit = Flat {
            rate: 40.0 / 15.0,
            days: d.fall_min_days,
        };
        let model = fit.window_model(0, 15);
        let p = fall_tail(&fit, &model, 0, 15, 0, &d).expect("a fall");
        assert_eq!(p, model.fall_crossing_rate(0, 15));
        let young = Flat {
            days: d.fall_min_days - 1,
            ..fit
        };
        assert_eq!(fall_tail(&young, &model, 0, 15, 0, &d), None);
        // Half the expected count is not low enough to be considered (`fall_max_fraction`).
        assert_eq!(fall_tail(&fit, &model, 0, 15, 20, &d), None);
    }

    #[test]
    fn the_run_starts_at_the_most_significant_suffix() {
        // One call a minute expected; the last three minutes of the window held 8 calls each,
        // the twelve before them their usual one: the run is the last three minutes (by hand,
        // ln P(X >= 24 | 3) = -31, against -27 for the last four minutes, -22 for two).
        let fit = Flat { rate: 1.0, days: 7 };
        let minutes = [1u64, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 8, 8, 8];
        let sum = |len: i64| minutes.iter().rev().take(len as usize).sum::<u64>();
        assert_eq!(run_start(&fit, Direction::Rise, 100, 15, sum), 98);
    }

    #[test]
    fn an_explanation_carries_the_bounds_at_the_level_in_force() {
        let s = Sensitivity::new(1e-6);
        let model = CountModel::Poisson { mean: 5.0 };
        let e = explain(Direction::Rise, 5, 40, &model, 1e-12, s, false);
        assert_eq!(e.upper_bound, model.window_upper_bound(1e-6, 5));
        assert_eq!(e.lower_bound, model.window_lower_bound(1e-6, 5));
        assert_eq!(e.p_threshold, 1e-6);
        assert_eq!(e.model, "poisson");
        let first = explain(Direction::Rise, 1, 1, &model, 0.5, s, true);
        assert_eq!(
            (first.upper_bound, first.model.as_str()),
            (0, "sensitive-api")
        );
    }

    #[test]
    fn an_episode_continues_while_its_window_stays_beyond_continue_p() {
        let d = Profile::default().detect;
        let model = CountModel::Poisson { mean: 10.0 };
        assert!(continues(&model, Direction::Rise, 40, &d));
        assert!(!continues(&model, Direction::Rise, 11, &d));
        assert!(continues(&model, Direction::Fall, 0, &d));
    }
}
