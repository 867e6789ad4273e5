//! Errors as a proportion of their API's calls. A failing call is a call: when a pipeline's
//! apply makes fifty `UpdateStack` calls and three fail with `ValidationError`, the error series
//! sees 3 errors against an expected 0.001 a minute, a one-in-a-billion count for a count model
//! of errors alone, and yet no larger share of the calls failed than usual. An error rise is an
//! Insight only when the count model finds it unusual *and* the share of the API's calls that
//! failed with that code rose: P(X >= errors) for X ~ Binomial(calls in the window, baseline
//! share) below the same level. Only write APIs have a call-rate series; an error rise of a read
//! API is judged by the count model alone.

use statrs::distribution::{Binomial, DiscreteCDF};

use crate::series::Minute;

/// An API's write calls around the minutes being judged, and its baseline rate: what its
/// error-rate series' rises are a proportion of.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiCalls {
    /// Calls per minute, ascending, only minutes with calls; at least the windows' reach
    /// before the first minute judged.
    minutes: Vec<(Minute, u64)>,
    /// The calls of the call series' baseline window (its average times its minutes); `None`
    /// while it has no baseline.
    baseline_calls: Option<f64>,
}

impl ApiCalls {
    /// From minutes with their calls in any order (a minute given twice counts twice) and the
    /// call series' baseline: calls per minute over how many minutes.
    pub fn new(mut minutes: Vec<(Minute, u64)>, baseline: Option<(f64, i64)>) -> ApiCalls {
        minutes.sort_unstable_by_key(|&(m, _)| m);
        let mut merged: Vec<(Minute, u64)> = Vec::with_capacity(minutes.len());
        for (m, c) in minutes {
            match merged.last_mut() {
                Some(last) if last.0 == m => last.1 += c,
                _ => merged.push((m, c)),
            }
        }
        ApiCalls {
            minutes: merged,
            baseline_calls: baseline.map(|(average, minutes)| average * minutes.max(0) as f64),
        }
    }

    /// Calls in the `window` minutes ending at `t`.
    pub fn window_sum(&self, t: Minute, window: i64) -> u64 {
        let from = self.minutes.partition_point(|&(m, _)| m <= t - window);
        let to = self.minutes.partition_point(|&(m, _)| m <= t);
        self.minutes[from..to].iter().map(|&(_, c)| c).sum()
    }

    /// The probability of at least `errors` failures among the calls of the window of `window`
    /// minutes ending at `t`, each failing with the baseline's share: `baseline_errors` errors
    /// of the error series' baseline window (its average times its minutes) over the call
    /// series' calls of its own, with half an error and one call added (a Jeffreys-like prior:
    /// a code never seen is not impossible). `None` when the call series has no baseline.
    pub fn p_errors(
        &self,
        t: Minute,
        window: i64,
        errors: u64,
        baseline_errors: f64,
    ) -> Option<f64> {
        let calls = self.baseline_calls?;
        let share = ((baseline_errors.max(0.0) + 0.5) / (calls.max(0.0) + 1.0)).min(1.0);
        // Errors are calls of the API; a window whose calls are fewer (a record at the edge
        // of a chunk) is taken at its errors.
        let n = self.window_sum(t, window).max(errors);
        Some(binomial_sf(errors, n, share))
    }
}

/// P(X >= k) for X ~ Binomial(n, p).
pub fn binomial_sf(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    match Binomial::new(p.clamp(0.0, 1.0), n) {
        Ok(b) => b.sf(k - 1),
        // Unreachable for p in [0, 1]; an error is not a reason to call a rise explained.
        Err(_) => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs()
    }

    // Golden values from SciPy 1.17.1 (scipy.stats.binom.sf(k - 1, n, p)):
    //   binom.sf(2, 50, 0.005), binom.sf(29, 35, 0.001), binom.sf(2, 10, 0.005),
    //   binom.sf(0, 1, 0.3), binom.sf(9, 200, 0.02)
    #[test]
    fn binomial_tails_match_scipy() {
        assert!(close(binomial_sf(3, 50, 0.005), GOLDEN[0], 1e-6));
        assert!(close(binomial_sf(30, 35, 0.001), GOLDEN[1], 1e-4));
        assert!(close(binomial_sf(3, 10, 0.005), GOLDEN[2], 1e-6));
        assert!(close(binomial_sf(1, 1, 0.3), 0.3, 1e-12));
        assert!(close(binomial_sf(10, 200, 0.02), GOLDEN[4], 1e-6));
        assert_eq!(binomial_sf(0, 5, 0.1), 1.0);
        assert_eq!(binomial_sf(6, 5, 0.1), 0.0);
    }

    const GOLDEN: [f64; 5] = [
        0.002_055_544_109_558_606_4,
        3.230_642_404_752_322e-85,
        1.461_094_232_775_640_5e-5,
        0.3,
        0.007_479_287_865_361_496,
    ];

    #[test]
    fn windows_sum_the_minutes_they_cover() {
        let calls = ApiCalls::new(vec![(10, 2), (5, 1), (10, 3), (20, 4)], Some((0.5, 100)));
        assert_eq!(calls.window_sum(10, 1), 5);
        assert_eq!(calls.window_sum(10, 6), 6);
        assert_eq!(calls.window_sum(10, 5), 5);
        assert_eq!(calls.window_sum(25, 60), 10);
        assert_eq!(calls.window_sum(4, 60), 0);
    }

    #[test]
    fn errors_in_proportion_to_a_burst_of_calls_are_not_unusual_but_a_rising_share_is() {
        // Baseline: 50 calls and 0.5 errors (a share of 1/51 with the prior).
        let calls = ApiCalls::new(vec![(100, 50)], Some((0.5, 100)));
        let p_burst = calls.p_errors(100, 1, 3, 0.5).unwrap();
        assert!(close(p_burst, binomial_sf(3, 50, 1.0 / 51.0), 1e-12));
        assert!(p_burst > 0.05, "{p_burst}");
        // The same 3 errors out of 3 calls: every call failed.
        let few = ApiCalls::new(vec![(100, 3)], Some((0.5, 100)));
        assert!(few.p_errors(100, 1, 3, 0.5).unwrap() < 1e-4);
        // No baseline: no judgement.
        assert_eq!(
            ApiCalls::new(vec![(100, 3)], None).p_errors(100, 1, 3, 0.5),
            None
        );
    }
}
