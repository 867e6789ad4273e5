//! Count distributions for "how many calls in this window would be normal". Counts per minute are
//! small integers, often zero, so the model is Poisson, or negative binomial when the history is
//! over-dispersed or the rate itself is uncertain (little history): never a normal approximation.

use statrs::distribution::{Discrete, DiscreteCDF, NegativeBinomial, Poisson};

/// Variance above the mean, relative to it, below which the count is treated as Poisson.
const POISSON_TOLERANCE: f64 = 1e-9;

/// The predictive distribution of a count in one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CountModel {
    /// Poisson with this mean.
    Poisson {
        /// Expected count.
        mean: f64,
    },
    /// Negative binomial: `size` successes, mean `mean` (variance `mean + mean^2 / size`).
    NegativeBinomial {
        /// Expected count.
        mean: f64,
        /// The size parameter r (smaller = more dispersed).
        size: f64,
    },
}

impl CountModel {
    /// The distribution with this mean and variance: Poisson when the variance does not exceed
    /// the mean, else the negative binomial with the same two moments.
    pub fn from_moments(mean: f64, variance: f64) -> CountModel {
        let mean = if mean.is_finite() {
            mean.max(1e-12)
        } else {
            1e-12
        };
        let excess = variance - mean;
        if !excess.is_finite() || excess <= mean * POISSON_TOLERANCE {
            CountModel::Poisson { mean }
        } else {
            CountModel::NegativeBinomial {
                mean,
                size: (mean * mean / excess).max(1e-12),
            }
        }
    }

    /// Expected count.
    pub fn mean(&self) -> f64 {
        match *self {
            CountModel::Poisson { mean } | CountModel::NegativeBinomial { mean, .. } => mean,
        }
    }

    /// Variance of the count.
    pub fn variance(&self) -> f64 {
        match *self {
            CountModel::Poisson { mean } => mean,
            CountModel::NegativeBinomial { mean, size } => mean + mean * mean / size,
        }
    }

    /// Name written in explanations.
    pub fn name(&self) -> &'static str {
        match self {
            CountModel::Poisson { .. } => "poisson",
            CountModel::NegativeBinomial { .. } => "negative-binomial",
        }
    }

    /// The negative binomial size, when that is the model.
    pub fn dispersion(&self) -> Option<f64> {
        match *self {
            CountModel::Poisson { .. } => None,
            CountModel::NegativeBinomial { size, .. } => Some(size),
        }
    }

    /// P(X <= x).
    pub fn cdf(&self, x: u64) -> f64 {
        match *self {
            CountModel::Poisson { mean } => match Poisson::new(mean) {
                Ok(d) => d.cdf(x),
                Err(_) => 1.0,
            },
            CountModel::NegativeBinomial { mean, size } => match nb(mean, size) {
                Some(d) => d.cdf(x),
                None => 1.0,
            },
        }
    }

    /// P(X > x), computed directly (not as 1 - cdf) so that tiny tails keep their precision.
    pub fn sf(&self, x: u64) -> f64 {
        match *self {
            CountModel::Poisson { mean } => match Poisson::new(mean) {
                Ok(d) => d.sf(x),
                Err(_) => 0.0,
            },
            CountModel::NegativeBinomial { mean, size } => match nb(mean, size) {
                Some(d) => d.sf(x),
                None => 0.0,
            },
        }
    }

    /// P(X = x).
    pub fn pmf(&self, x: u64) -> f64 {
        match *self {
            CountModel::Poisson { mean } => Poisson::new(mean).map(|d| d.pmf(x)).unwrap_or(0.0),
            CountModel::NegativeBinomial { mean, size } => {
                nb(mean, size).map(|d| d.pmf(x)).unwrap_or(0.0)
            }
        }
    }

    /// p-value of a rise to `observed`: P(X >= observed).
    pub fn p_rise(&self, observed: u64) -> f64 {
        if observed == 0 {
            1.0
        } else {
            self.sf(observed - 1)
        }
    }

    /// p-value of a fall to `observed`: P(X <= observed).
    pub fn p_fall(&self, observed: u64) -> f64 {
        self.cdf(observed)
    }

    /// Expected number of upcrossings, per minute, of a sliding window of `window` minutes to
    /// `observed` calls or more: the rate of false episodes a rise test at that count starts.
    /// Consecutive windows share all but one minute, so a count that exceeds a high level
    /// usually did so a minute before too; an episode starts only at the minute it crosses.
    /// With the rate constant over the window (any mixed Poisson: NB included) and one new
    /// call at a time, the window reaches k from k-1 at rate (k / window) P(X = k); clumped
    /// calls give the same form on the clump scale. Never more than P(X >= k) itself.
    pub fn rise_crossing_rate(&self, observed: u64, window: i64) -> f64 {
        let tail = self.p_rise(observed);
        if observed == 0 || window <= 1 {
            return tail;
        }
        let crossing = observed as f64 / window as f64 * self.pmf(observed);
        tail.min(crossing)
    }

    /// The same for a fall: the expected number of downcrossings, per minute, of the window to
    /// `observed` calls or fewer, (observed + 1) / window P(X = observed + 1) (the oldest call
    /// leaves the window), never more than P(X <= observed).
    pub fn fall_crossing_rate(&self, observed: u64, window: i64) -> f64 {
        let tail = self.p_fall(observed);
        if window <= 1 {
            return tail;
        }
        let above = observed.saturating_add(1);
        let crossing = above as f64 / window as f64 * self.pmf(above);
        tail.min(crossing)
    }

    /// The largest count that is not an unusual rise of a sliding window of `window` minutes
    /// at level `alpha` (see [`CountModel::rise_crossing_rate`]).
    pub fn window_upper_bound(&self, alpha: f64, window: i64) -> u64 {
        let mut u = self.upper_bound(alpha);
        // u + 1 is unusual by the tail alone; the crossing rate only lowers the bound.
        while u > 0 && (u as f64) > self.mean() && self.rise_crossing_rate(u, window) < alpha {
            u -= 1;
        }
        u
    }

    /// The smallest count that is not an unusual fall of a sliding window of `window` minutes
    /// at level `alpha`; `None` when even zero is not unusual.
    pub fn window_lower_bound(&self, alpha: f64, window: i64) -> Option<u64> {
        let mut l = match self.lower_bound(alpha) {
            Some(l) => l,
            None if self.fall_crossing_rate(0, window) < alpha => 0,
            None => return None,
        };
        while (l as f64) < self.mean() && self.fall_crossing_rate(l, window) < alpha {
            l += 1;
        }
        Some(l)
    }

    /// The largest count that is not an unusual rise at level `alpha`: the largest u with
    /// P(X >= u) >= alpha.
    pub fn upper_bound(&self, alpha: f64) -> u64 {
        // Smallest u such that P(X > u) < alpha, found by doubling then bisection.
        let mut hi: u64 = (self.mean().ceil() as u64).max(1);
        while self.sf(hi) >= alpha {
            match hi.checked_mul(2) {
                Some(next) if next < u64::MAX / 4 => hi = next,
                _ => return hi,
            }
        }
        let mut lo: u64 = 0;
        if self.sf(0) < alpha {
            return 0;
        }
        // Invariant: sf(lo) >= alpha, sf(hi) < alpha.
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.sf(mid) < alpha {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    }

    /// The smallest count that is not an unusual fall at level `alpha` (the smallest l with
    /// P(X <= l) >= alpha); `None` when even zero is not unusual.
    pub fn lower_bound(&self, alpha: f64) -> Option<u64> {
        if self.cdf(0) >= alpha {
            return None;
        }
        let mut hi: u64 = (self.mean().ceil() as u64).max(1);
        // cdf(mean) is about one half, so hi satisfies cdf(hi) >= alpha for any sane alpha.
        if self.cdf(hi) < alpha {
            return Some(hi);
        }
        let mut lo: u64 = 0;
        // Invariant: cdf(lo) < alpha <= cdf(hi).
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.cdf(mid) < alpha {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Some(hi)
    }
}

fn nb(mean: f64, size: f64) -> Option<NegativeBinomial> {
    // statrs counts failures before `size` successes with success probability p:
    // mean = size (1 - p) / p, so p = size / (size + mean).
    let p = size / (size + mean);
    NegativeBinomial::new(size, p).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    // Reference values computed independently with SciPy 1.x:
    //   stats.poisson.sf(2, 0.0025), stats.poisson.sf(44, 15), stats.poisson.cdf(0, 40),
    //   stats.poisson.cdf(16, 40), stats.nbinom.sf(9, 0.5, 0.2), stats.nbinom.cdf(0, 0.5, 0.2),
    //   stats.nbinom.sf(29, 3, 3/13), stats.poisson.isf(2.2e-8, 20), stats.nbinom.isf(1e-6, 3, 3/13)
    #[test]
    fn poisson_tails_match_scipy() {
        let m = CountModel::from_moments(0.0025, 0.0025);
        assert!(matches!(m, CountModel::Poisson { .. }));
        assert!(close(m.p_rise(3), 2.599_288_733_590_141_7e-9, 1e-6));
        let m = CountModel::Poisson { mean: 15.0 };
        assert!(close(m.p_rise(45), 3.171_134_738_682_358_7e-10, 1e-6));
        let m = CountModel::Poisson { mean: 40.0 };
        assert!(close(m.p_fall(0), 4.248_354_255_291_595e-18, 1e-6));
        assert!(close(m.p_fall(16), 1.418_487_438_082_183_1e-5, 1e-6));
    }

    #[test]
    fn negative_binomial_tails_match_scipy() {
        // mean 2, size 0.5 (p = 0.2).
        let m = CountModel::from_moments(2.0, 2.0 + 4.0 / 0.5);
        assert!(close(m.dispersion().unwrap(), 0.5, 1e-9));
        assert!(close(m.p_rise(10), 0.036_904_842_934_184_695, 1e-6));
        assert!(close(m.p_fall(0), 0.447_213_595_499_957_9, 1e-6));
        let m = CountModel::NegativeBinomial {
            mean: 10.0,
            size: 3.0,
        };
        assert!(close(m.p_rise(30), 0.012_475_742_321_085_892, 1e-6));
    }

    #[test]
    fn bounds_match_scipy_inverse_survival() {
        // isf(alpha) is the smallest u with P(X > u) <= alpha: our upper bound.
        assert_eq!(CountModel::Poisson { mean: 20.0 }.upper_bound(2.2e-8), 49);
        let nb = CountModel::NegativeBinomial {
            mean: 10.0,
            size: 3.0,
        };
        assert_eq!(nb.upper_bound(1e-6), 71);
        // With mean 40 a count of 16 has P(X <= 16) = 1.4e-5; at alpha 1e-5 the lower bound is 16
        // (P(X <= 15) must then be below 1e-5).
        let p = CountModel::Poisson { mean: 40.0 };
        let l = p.lower_bound(1e-5).unwrap();
        assert!(p.cdf(l) >= 1e-5 && p.cdf(l - 1) < 1e-5);
        assert_eq!(l, 16);
        // A tiny rate has no lower bound: zero calls is its normal state.
        assert_eq!(CountModel::Poisson { mean: 0.3 }.lower_bound(1e-8), None);
    }

    // Reference values computed independently with SciPy 1.x:
    //   16/15 * stats.poisson.pmf(16, 7.5), 70/60 * stats.nbinom.pmf(70, 5, 5/35),
    //   1/60 * stats.poisson.pmf(1, 40); a NumPy simulation of 2e7 minutes of Poisson(0.5) calls
    //   gave 0.00166 upcrossings of 16 per minute by the 15-minute window (the tail P(X >= 16)
    //   is 0.00461: most exceedances continue an earlier one), and of a Gamma(5)-mixed rate held
    //   for a day, 0.00081 upcrossings of 70 by the 60-minute window (tail 0.0142).
    #[test]
    fn crossing_rates_match_scipy_and_bound_simulated_upcrossings() {
        let p = CountModel::Poisson { mean: 7.5 };
        let r = p.rise_crossing_rate(16, 15);
        assert!(close(r, 0.002_826_055_781_418_502_4, 1e-6));
        assert!(r >= 0.001_66 && r < p.p_rise(16));
        let nb = CountModel::NegativeBinomial {
            mean: 30.0,
            size: 5.0,
        };
        let r = nb.rise_crossing_rate(70, 60);
        assert!(close(r, 0.001_644_809_094_795_467_6, 1e-6));
        assert!(r >= 0.000_81);
        // A one-minute window crosses whenever it exceeds: the tail itself.
        assert_eq!(p.rise_crossing_rate(16, 1), p.p_rise(16));
        // A fall to zero from 40 in a 60-minute window: the last call leaves.
        let f = CountModel::Poisson { mean: 40.0 };
        assert!(close(
            f.fall_crossing_rate(0, 60),
            2.832_236_170_194_396e-18,
            1e-6
        ));
        // Bounds: with mean 20 over 60 minutes the crossing rate at 44 calls is 1.0003e-6 and at
        // 45 calls 4.55e-7 (SciPy), so at 1e-6 the largest usual count is 44 (the tail alone: 45).
        let m = CountModel::Poisson { mean: 20.0 };
        assert_eq!(m.upper_bound(1e-6), 45);
        assert_eq!(m.window_upper_bound(1e-6, 60), 44);
        assert_eq!(m.window_upper_bound(1e-6, 1), 45);
        assert_eq!(
            f.window_lower_bound(1e-5, 1),
            f.lower_bound(1e-5),
            "one minute: the tail"
        );
    }

    #[test]
    fn tails_are_consistent_with_the_pmf() {
        let m = CountModel::NegativeBinomial {
            mean: 3.5,
            size: 1.7,
        };
        let summed: f64 = (0..=6).map(|k| m.pmf(k)).sum();
        assert!(close(m.cdf(6), summed, 1e-9));
        assert!(close(m.sf(6) + m.cdf(6), 1.0, 1e-12));
    }
}
