//! Background traffic of one account-region, minute by minute: per-API rates with daily and
//! weekly rhythms, Poisson (or gamma-mixed Poisson) counts, random errors and throttling bursts,
//! callers and user agents; each call is drawn, handed to delivery, and forgotten.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma, Poisson};

use crate::generate::catalogue::{
    logged_in, weekday, ApiSpec, ErrorSpec, Identity, Rhythm, Who, CATALOGUE, THROTTLING,
};
use crate::generate::delivery::{Delivery, Outbox};
use crate::generate::incidents::{Action, ActiveIncident};
use crate::generate::record::{Call, EventTime};
use crate::generate::GenerateError;
use crate::series::{format_event_time, minute_of_day, Minute};

/// Night-time level of an office rhythm, relative to the weekday peak.
const NIGHT_LEVEL: f64 = 0.08;
/// Weekend level of an office rhythm, relative to weekdays.
const WEEKEND_LEVEL: f64 = 0.3;
/// Probability that a call is delivered 20-120 minutes late.
pub(crate) const LATE_PROBABILITY: f64 = 0.01;
/// Probability that a record is delivered a second time.
pub(crate) const DUPLICATE_PROBABILITY: f64 = 0.003;
/// Throttling: baseline probability per call, probability in a burst, chance a burst starts.
const THROTTLE_BASE: f64 = 0.001;
const THROTTLE_BURST: f64 = 0.04;
const THROTTLE_BURST_START: f64 = 1.0 / 200.0;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The business-hours curve: 1.0 at a weekday midday, [`NIGHT_LEVEL`] at night, smooth in between.
fn office_day_level(minute_of_day: Minute) -> f64 {
    let hour = (minute_of_day as f64 + 0.5) / 60.0;
    NIGHT_LEVEL + (1.0 - NIGHT_LEVEL) * sigmoid((hour - 8.5) / 0.8) * sigmoid((17.5 - hour) / 0.8)
}

/// Multiplier of an office-rhythm rate at this minute (day curve times weekday/weekend level).
pub(crate) fn office_level(minute: Minute) -> f64 {
    let week = if weekday(minute) >= 5 {
        WEEKEND_LEVEL
    } else {
        1.0
    };
    office_day_level(minute_of_day(minute)) * week
}

/// Expected calls per minute of an API at this minute, with the account-region and scale multipliers.
pub(crate) fn expected_rate(spec: &ApiSpec, multiplier: f64, minute: Minute) -> f64 {
    let base = spec.rate * multiplier;
    match spec.rhythm {
        Rhythm::Flat => base,
        Rhythm::Office => base * office_level(minute),
    }
}

/// One catalogue API as simulated in one account-region.
pub(crate) struct ApiTraffic {
    pub catalogue_index: usize,
    pub spec: &'static ApiSpec,
    /// Account-region multiplier times scale.
    multiplier: f64,
    /// Cached distribution of flat, not over-dispersed APIs.
    flat: Option<Poisson<f64>>,
    gamma: Option<Gamma<f64>>,
    throttle_left: u32,
    caller_total: u32,
}

impl ApiTraffic {
    /// Prepares an API with its rate multiplier (account-region multiplier times scale).
    pub(crate) fn new(catalogue_index: usize, spec: &'static ApiSpec, multiplier: f64) -> Self {
        let base = spec.rate * multiplier;
        let flat = match (spec.rhythm, spec.dispersion) {
            (Rhythm::Flat, None) if base > 0.0 => Poisson::new(base).ok(),
            _ => None,
        };
        let gamma = spec
            .dispersion
            .and_then(|shape| Gamma::new(shape, 1.0 / shape).ok());
        ApiTraffic {
            catalogue_index,
            spec,
            multiplier,
            flat,
            gamma,
            throttle_left: 0,
            caller_total: spec.callers.iter().map(|(_, w)| *w).sum(),
        }
    }

    /// Expected calls at this minute.
    pub(crate) fn rate(&self, minute: Minute) -> f64 {
        expected_rate(self.spec, self.multiplier, minute)
    }

    /// Draws the number of calls in this minute (and advances the throttling state).
    pub(crate) fn sample_count(&mut self, minute: Minute, rng: &mut ChaCha8Rng) -> u32 {
        if self.spec.throttled {
            if self.throttle_left > 0 {
                self.throttle_left -= 1;
            } else if rng.gen_bool(THROTTLE_BURST_START) {
                self.throttle_left = rng.gen_range(1..=4);
            }
        }
        if let Some(poisson) = &self.flat {
            return poisson.sample(rng) as u32;
        }
        let mut rate = self.rate(minute);
        if let Some(gamma) = &self.gamma {
            rate *= gamma.sample(rng);
        }
        sample_poisson(rate, rng)
    }

    /// Draws the caller of one call.
    pub(crate) fn sample_caller(&self, rng: &mut ChaCha8Rng) -> Who {
        pick_caller(self.spec, self.caller_total, rng)
    }

    /// Draws the error of one call, if any.
    pub(crate) fn sample_error(&self, rng: &mut ChaCha8Rng) -> Option<&'static ErrorSpec> {
        let mut u: f64 = rng.gen();
        if self.spec.throttled {
            let p = if self.throttle_left > 0 {
                THROTTLE_BURST
            } else {
                THROTTLE_BASE
            };
            if u < p {
                return Some(&THROTTLING);
            }
            u -= p;
        }
        for error in self.spec.errors {
            if u < error.prob {
                return Some(error);
            }
            u -= error.prob;
        }
        None
    }
}

/// A Poisson draw that tolerates a zero or invalid rate.
pub(crate) fn sample_poisson(rate: f64, rng: &mut ChaCha8Rng) -> u32 {
    if rate > 0.0 && rate.is_finite() {
        match Poisson::new(rate) {
            Ok(p) => p.sample(rng) as u32,
            Err(_) => 0,
        }
    } else {
        0
    }
}

/// Draws a caller of `spec` by weight.
pub(crate) fn pick_caller(spec: &ApiSpec, total: u32, rng: &mut ChaCha8Rng) -> Who {
    let fallback = spec.callers.first().map(|(w, _)| *w).unwrap_or(Who::Alice);
    if total == 0 {
        return fallback;
    }
    let mut r = rng.gen_range(0..total);
    for (who, weight) in spec.callers {
        if r < *weight {
            return *who;
        }
        r -= weight;
    }
    fallback
}

/// Draws one of an identity's user agents.
pub(crate) fn pick_user_agent(identity: &Identity, rng: &mut ChaCha8Rng) -> &'static str {
    match identity.user_agents.len() {
        0 => "aws-cli/2.15.30",
        1 => identity.user_agents.first().copied().unwrap_or(""),
        n => identity
            .user_agents
            .get(rng.gen_range(0..n))
            .copied()
            .unwrap_or(""),
    }
}

/// Where one account-region's calls go and who makes them.
pub(crate) struct AccountRegion<'a> {
    pub account: &'a str,
    pub region: &'a str,
    pub identities: &'a [Identity],
}

impl AccountRegion<'_> {
    pub(crate) fn identity(&self, who: Who) -> Option<&Identity> {
        self.identities.get(who as usize)
    }
}

/// Who, with what, when: the parts of a call its caller chose; the rest is drawn by [`emit`].
pub(crate) struct CallPlan<'a> {
    pub api: &'a ApiSpec,
    pub identity: &'a Identity,
    pub user_agent: &'a str,
    pub source_ip: &'a str,
    pub error: Option<&'a ErrorSpec>,
}

/// Draws the remaining random parts of a call (second, ids, delivery) and, unless `suppressed`,
/// hands it to delivery. The draws happen either way so that suppressing calls leaves the rest
/// of the stream untouched.
pub(crate) fn emit(
    ar: &AccountRegion<'_>,
    plan: &CallPlan<'_>,
    minute: Minute,
    minute_time: EventTime,
    suppressed: bool,
    rng: &mut ChaCha8Rng,
    outbox: &mut Outbox,
) -> Result<(), GenerateError> {
    let second: u8 = rng.gen_range(0..60);
    let request_id: u128 = rng.gen();
    let event_id: [u8; 16] = rng.gen();
    let param_seed: u64 = rng.gen();
    let late = rng.gen_bool(LATE_PROBABILITY);
    let delay_seconds: i64 = if late {
        rng.gen_range(1200..=7200)
    } else {
        rng.gen_range(120..=600)
    };
    let duplicate = rng.gen_bool(DUPLICATE_PROBABILITY);
    let duplicate_after: i64 = if duplicate {
        5 * rng.gen_range(1..=12)
    } else {
        0
    };
    if suppressed {
        return Ok(());
    }
    let event_second = minute * 60 + i64::from(second);
    let file_minute = (event_second + delay_seconds + 299).div_euclid(300) * 5;
    let call = Call {
        api: plan.api,
        identity: plan.identity,
        user_agent: plan.user_agent,
        source_ip: plan.source_ip,
        account: ar.account,
        region: ar.region,
        time: minute_time.at_second(second),
        error: plan.error,
        request_id,
        event_id,
        param_seed,
        late,
    };
    outbox.push(
        &call,
        Delivery {
            file_minute,
            duplicate_minute: duplicate.then_some(file_minute + duplicate_after),
            late,
        },
    )
}

/// Simulates one account-region from `start` for `minutes`, with its incidents, into `outbox`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn simulate(
    ar: &AccountRegion<'_>,
    multiplier: f64,
    start: Minute,
    minutes: i64,
    rng: &mut ChaCha8Rng,
    incidents: &mut [ActiveIncident<'_>],
    outbox: &mut Outbox,
) -> Result<(), GenerateError> {
    let mut apis: Vec<ApiTraffic> = CATALOGUE
        .iter()
        .enumerate()
        .filter(|(_, spec)| logged_in(spec, ar.region))
        .map(|(i, spec)| ApiTraffic::new(i, spec, multiplier))
        .collect();
    // (catalogue index, start, end) of every drop incident here.
    let suppressions: Vec<(usize, Minute, Minute)> = incidents
        .iter()
        .filter(|inc| matches!(inc.plan.action, Action::Suppress))
        .filter_map(|inc| {
            inc.plan
                .catalogue_index
                .map(|i| (i, inc.plan.start, inc.plan.end))
        })
        .collect();
    // (catalogue index, start, end, error) of every incident that makes calls fail.
    let failures: Vec<(usize, Minute, Minute, &'static ErrorSpec)> = incidents
        .iter()
        .filter_map(|inc| match inc.plan.action {
            Action::Fail { error } => inc
                .plan
                .catalogue_index
                .map(|i| (i, inc.plan.start, inc.plan.end, error)),
            _ => None,
        })
        .collect();
    for minute in start..start + minutes {
        let minute_time = EventTime::of_minute(&format_event_time(minute));
        for api in apis.iter_mut() {
            let count = api.sample_count(minute, rng);
            if count == 0 {
                continue;
            }
            let suppressed = suppressions
                .iter()
                .any(|&(i, s, e)| i == api.catalogue_index && (s..e).contains(&minute));
            for _ in 0..count {
                let who = api.sample_caller(rng);
                let Some(identity) = ar.identity(who) else {
                    continue;
                };
                let user_agent = pick_user_agent(identity, rng);
                let mut error = api.sample_error(rng);
                if let Some(&(.., failure)) = failures
                    .iter()
                    .find(|&&(i, s, e, _)| i == api.catalogue_index && (s..e).contains(&minute))
                {
                    error = Some(failure);
                }
                let plan = CallPlan {
                    api: api.spec,
                    identity,
                    user_agent,
                    source_ip: identity.source_ip,
                    error,
                };
                emit(ar, &plan, minute, minute_time, suppressed, rng, outbox)?;
            }
        }
        for incident in incidents.iter_mut() {
            incident.inject(ar, multiplier, minute, minute_time, outbox)?;
        }
        outbox.flush_through(minute)?;
    }
    outbox.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::catalogue::catalogue_api;
    use rand::SeedableRng;

    fn counts(name: (&str, &str), start: Minute, minutes: i64, seed: u64) -> Vec<u32> {
        let idx = catalogue_api(name.0, name.1).unwrap();
        let mut api = ApiTraffic::new(idx, &CATALOGUE[idx], 1.0);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (start..start + minutes)
            .map(|m| api.sample_count(m, &mut rng))
            .collect()
    }

    fn mean_var(xs: &[u32]) -> (f64, f64) {
        let n = xs.len() as f64;
        let mean = xs.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = xs
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0);
        (mean, var)
    }

    const MONDAY: Minute = 1_709_510_400 / 60; // 2024-03-04T00:00Z

    #[test]
    fn flat_automation_api_keeps_its_rate() {
        let xs = counts(
            ("ecs.amazonaws.com", "SubmitTaskStateChange"),
            MONDAY,
            1440,
            7,
        );
        let (mean, var) = mean_var(&xs);
        assert!((mean - 8.0).abs() < 0.4, "mean {mean}");
        // plain Poisson: variance close to the mean
        assert!(
            var / mean < 1.3 && var / mean > 0.7,
            "var/mean {}",
            var / mean
        );
    }

    #[test]
    fn office_api_follows_day_and_week() {
        let api = ("ec2.amazonaws.com", "RunInstances");
        let monday = counts(api, MONDAY, 1440, 1);
        let saturday = counts(api, MONDAY + 5 * 1440, 1440, 1);
        let weekday: u32 = monday.iter().sum();
        let weekend: u32 = saturday.iter().sum();
        assert!(
            f64::from(weekend) < 0.45 * f64::from(weekday),
            "{weekend} vs {weekday}"
        );
        let night: u32 = monday[60..240].iter().sum();
        let day: u32 = monday[720..900].iter().sum();
        assert!(day > 5 * night, "day {day} night {night}");
        // the curve is smooth: no jump of more than 20% of the peak between adjacent minutes
        for m in 0..1439 {
            let a = office_day_level(m);
            let b = office_day_level(m + 1);
            assert!((a - b).abs() < 0.2);
        }
    }

    #[test]
    fn noisy_api_is_over_dispersed() {
        let xs = counts(("ec2.amazonaws.com", "DescribeInstances"), MONDAY, 1440, 3);
        let (mean, var) = mean_var(&xs);
        assert!((mean - 3.0).abs() < 0.4, "mean {mean}");
        assert!(var / mean > 1.5, "var/mean {}", var / mean);
    }
}
