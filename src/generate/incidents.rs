//! Incidents: where and when each named kind of unusual activity happens (planned from the seed
//! alone), and its injection into one account-region's minute loop with its own random stream,
//! so that the background is the same with or without incidents.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Gamma};

use crate::generate::catalogue::{
    catalogue_api, logged_in, weekday, ApiSpec, ErrorSpec, Message, Who, ACCOUNT_REGIONS,
    CATALOGUE, IDENTITIES, NEW_APIS, STOLEN_KEY_SOURCE_IP, STOLEN_KEY_USER_AGENT,
};
use crate::generate::delivery::Outbox;
use crate::generate::record::EventTime;
use crate::generate::traffic::{
    emit, expected_rate, pick_caller, pick_user_agent, sample_poisson, AccountRegion, CallPlan,
};
use crate::generate::{Expect, GenerateError, GenerateOptions, Incident};
use crate::series::{format_event_time, InsightType, Minute, MINUTES_PER_DAY};

/// Random stream of the plan (streams 1..=3 are the account-regions' backgrounds).
const PLAN_STREAM: u64 = 64;
/// First random stream of the incidents' own calls.
const INCIDENT_STREAM: u64 = 128;

/// The names of the incident kinds, in planning order.
pub const INCIDENT_KINDS: [&str; 5] = [
    "rare_api_burst",
    "new_api",
    "sustained_rise",
    "error_spike",
    "api_drop",
];

pub(crate) const ACCESS_DENIED: ErrorSpec = ErrorSpec {
    code: "AccessDenied",
    prob: 1.0,
    message: Message::Denied(""),
};

/// What an incident does to its API.
#[derive(Debug)]
pub(crate) enum Action {
    /// Exactly `per_minute[i]` calls in minute `start + i`, all by one identity and user agent.
    Calls {
        per_minute: Vec<u32>,
        who: Who,
        user_agent: &'static str,
        source_ip: Option<&'static str>,
        error: Option<&'static ErrorSpec>,
    },
    /// Extra calls from the usual callers, so the API runs at `factor` times its background rate.
    Multiply { factor: f64 },
    /// No call of the API is delivered.
    Suppress,
    /// Extra calls from the usual callers, the factor going linearly from `from` (first minute)
    /// to `to` (last minute): a slow ramp.
    Ramp { from: f64, to: f64 },
    /// The background calls of the API fail with this error: the call rate stays the same.
    Fail { error: &'static ErrorSpec },
    /// Extra calls at `level` times the background rate, times a Gamma(`shape`, 1/`shape`)
    /// factor drawn afresh every `block` minutes: a noisy API whose rate wanders (the noise is
    /// in the baseline too; no Insight is expected).
    Wander { level: f64, shape: f64, block: i64 },
    /// No file of the account-region is delivered in the window; what was due in it is
    /// delivered at its end (a delivery gap).
    DelayDelivery,
    /// Nothing is injected: the label only says where no Insight may appear.
    Observe,
}

/// One incident with everything needed to inject it.
#[derive(Debug)]
pub(crate) struct PlannedIncident {
    pub label: Incident,
    /// Index in [`ACCOUNT_REGIONS`].
    pub account_region: usize,
    pub api: &'static ApiSpec,
    pub catalogue_index: Option<usize>,
    pub start: Minute,
    pub end: Minute,
    /// The minutes the action applies to, when not the label's window (`start..end`).
    pub active: Option<(Minute, Minute)>,
    pub action: Action,
    pub stream: u64,
}

impl PlannedIncident {
    /// The minutes the action applies to.
    pub(crate) fn active_window(&self) -> (Minute, Minute) {
        self.active.unwrap_or((self.start, self.end))
    }
}

/// An incident being injected, with its own random stream.
pub(crate) struct ActiveIncident<'a> {
    pub plan: &'a PlannedIncident,
    rng: ChaCha8Rng,
    /// The current block's factor of a [`Action::Wander`].
    wander: f64,
}

impl<'a> ActiveIncident<'a> {
    /// Starts the injection of a planned incident.
    pub(crate) fn new(plan: &'a PlannedIncident, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(plan.stream);
        ActiveIncident {
            plan,
            rng,
            wander: 1.0,
        }
    }

    /// Adds this minute's calls of the incident (nothing outside its window).
    pub(crate) fn inject(
        &mut self,
        ar: &AccountRegion<'_>,
        multiplier: f64,
        minute: Minute,
        minute_time: EventTime,
        outbox: &mut Outbox,
    ) -> Result<(), GenerateError> {
        self.inject_over(ar, multiplier, minute, minute_time, outbox, None)
    }

    /// [`Self::inject`], with the API's background rate at this minute given by the caller
    /// (realistic traffic has its own rates); `None`: the catalogue's rate.
    pub(crate) fn inject_over(
        &mut self,
        ar: &AccountRegion<'_>,
        multiplier: f64,
        minute: Minute,
        minute_time: EventTime,
        outbox: &mut Outbox,
        background_rate: Option<f64>,
    ) -> Result<(), GenerateError> {
        let plan = self.plan;
        let (from, to) = plan.active_window();
        if minute < from || minute >= to {
            return Ok(());
        }
        let offset = (minute - plan.start) as usize;
        let progress = if plan.end - plan.start > 1 {
            (minute - plan.start) as f64 / (plan.end - plan.start - 1) as f64
        } else {
            1.0
        };
        let extra = match &plan.action {
            Action::Suppress | Action::Fail { .. } | Action::DelayDelivery | Action::Observe => {
                return Ok(())
            }
            Action::Multiply { factor } => factor - 1.0,
            Action::Ramp { from, to } => from + (to - from) * progress - 1.0,
            Action::Wander {
                level,
                shape,
                block,
            } => {
                if (minute - from).rem_euclid((*block).max(1)) == 0 {
                    self.wander = Gamma::new(*shape, 1.0 / shape)
                        .map(|g| g.sample(&mut self.rng))
                        .unwrap_or(1.0);
                }
                level * self.wander
            }
            Action::Calls { .. } => 0.0,
        };
        match &plan.action {
            Action::Calls {
                per_minute,
                who,
                user_agent,
                source_ip,
                error,
            } => {
                let Some(identity) = ar.identity(*who) else {
                    return Ok(());
                };
                let calls = per_minute.get(offset).copied().unwrap_or(0);
                let call = CallPlan {
                    api: plan.api,
                    identity,
                    user_agent,
                    source_ip: source_ip.unwrap_or(identity.source_ip),
                    error: *error,
                };
                for _ in 0..calls {
                    emit(ar, &call, minute, minute_time, false, &mut self.rng, outbox)?;
                }
                Ok(())
            }
            _ => {
                let rate =
                    background_rate.unwrap_or_else(|| expected_rate(plan.api, multiplier, minute));
                let mut calls = sample_poisson(extra * rate, &mut self.rng);
                let edge = minute == plan.start || minute == plan.end - 1;
                if edge && !matches!(plan.action, Action::Wander { .. }) {
                    // the label's window must start and end with injected activity
                    calls = calls.max(1);
                }
                let total = plan.api.callers.iter().map(|(_, w)| *w).sum();
                for _ in 0..calls {
                    let who = pick_caller(plan.api, total, &mut self.rng);
                    let Some(identity) = ar.identity(who) else {
                        continue;
                    };
                    let call = CallPlan {
                        api: plan.api,
                        identity,
                        user_agent: pick_user_agent(identity, &mut self.rng),
                        source_ip: identity.source_ip,
                        error: None,
                    };
                    emit(ar, &call, minute, minute_time, false, &mut self.rng, outbox)?;
                }
                Ok(())
            }
        }
    }
}

/// `n` calls over `minutes` minutes, the first and the last minute each having at least one.
pub(crate) fn spread(n: u32, minutes: usize, rng: &mut ChaCha8Rng) -> Vec<u32> {
    let minutes = minutes.max(1);
    let mut out = vec![0u32; minutes];
    let mut left = n;
    for i in [0, minutes - 1] {
        if left > 0 {
            if let Some(slot) = out.get_mut(i) {
                *slot += 1;
                left -= 1;
            }
        }
    }
    for _ in 0..left {
        if let Some(slot) = out.get_mut(rng.gen_range(0..minutes)) {
            *slot += 1;
        }
    }
    out
}

pub(crate) fn catalogue(
    source: &str,
    name: &str,
) -> Result<(usize, &'static ApiSpec), GenerateError> {
    catalogue_api(source, name)
        .and_then(|i| CATALOGUE.get(i).map(|spec| (i, spec)))
        .ok_or_else(|| GenerateError::InvalidOptions(format!("{source} {name} not in catalogue")))
}

/// Account-regions where `spec` is logged and whose rate multiplier is at least `min_multiplier`.
pub(crate) fn regions_for(spec: &ApiSpec, min_multiplier: f64) -> Vec<usize> {
    ACCOUNT_REGIONS
        .iter()
        .enumerate()
        .filter(|(_, (_, region, mult))| logged_in(spec, region) && *mult >= min_multiplier)
        .map(|(i, _)| i)
        .collect()
}

pub(crate) fn multiplier_of(account_region: usize) -> f64 {
    ACCOUNT_REGIONS
        .get(account_region)
        .map(|ar| ar.2)
        .unwrap_or(1.0)
}

pub(crate) fn choose<T: Copy>(items: &[T], rng: &mut ChaCha8Rng) -> Result<T, GenerateError> {
    items
        .choose(rng)
        .copied()
        .ok_or_else(|| GenerateError::InvalidOptions("no account-region fits an incident".into()))
}

pub(crate) fn user_name(who: Who) -> &'static str {
    match IDENTITIES.get(who as usize).map(|spec| spec.principal) {
        Some(crate::generate::catalogue::Principal::User { name, .. }) => name,
        _ => "?",
    }
}

pub(crate) fn first_user_agent(who: Who) -> &'static str {
    IDENTITIES
        .get(who as usize)
        .and_then(|spec| spec.user_agents.first().copied())
        .unwrap_or("")
}

/// Plans the incidents of a trail: one of each kind in [`INCIDENT_KINDS`], on days from
/// `incident_after_days` on, in disjoint times of day (so never overlapping), ordered by start.
pub(crate) fn plan(opts: &GenerateOptions) -> Result<Vec<PlannedIncident>, GenerateError> {
    if opts.incident_after_days >= opts.days {
        return Err(GenerateError::NoRoomForIncidents {
            days: opts.days,
            after: opts.incident_after_days,
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    rng.set_stream(PLAN_STREAM);
    let days: Vec<u32> = (opts.incident_after_days..opts.days).collect();
    let weekdays: Vec<u32> = days
        .iter()
        .copied()
        .filter(|d| weekday(opts.start + i64::from(*d) * MINUTES_PER_DAY) < 5)
        .collect();
    let mut planned = Vec::with_capacity(INCIDENT_KINDS.len());

    for kind in INCIDENT_KINDS {
        let day_pool = if kind == "sustained_rise" && !weekdays.is_empty() {
            &weekdays
        } else {
            &days
        };
        let day = choose(day_pool, &mut rng)?;
        let midnight = opts.start + i64::from(day) * MINUTES_PER_DAY;
        let incident = match kind {
            "rare_api_burst" => {
                let name = *["CreateAccessKey", "CreateUser"]
                    .choose(&mut rng)
                    .unwrap_or(&"CreateAccessKey");
                let (index, api) = catalogue("iam.amazonaws.com", name)?;
                let account_region = choose(&regions_for(api, 0.0), &mut rng)?;
                let start = midnight + rng.gen_range(60..=210);
                let minutes = rng.gen_range(8..=12usize);
                let calls = rng.gen_range(20..=40u32);
                let who = Who::Intruder;
                let user_agent = first_user_agent(who);
                let description = format!(
                    "{calls} {name} calls in {minutes} minutes at night by IAM user {} ({user_agent}); \
                     background rate {:.4} per minute",
                    user_name(who),
                    api.rate * multiplier_of(account_region) * opts.scale
                );
                PlannedIncident {
                    label: label(
                        kind,
                        InsightType::ApiCallRateInsight,
                        api,
                        None,
                        "rise",
                        description,
                    ),
                    account_region,
                    api,
                    catalogue_index: Some(index),
                    start,
                    end: start + minutes as i64,
                    active: None,
                    action: Action::Calls {
                        per_minute: spread(calls, minutes, &mut rng),
                        who,
                        user_agent,
                        source_ip: None,
                        error: None,
                    },
                    stream: 0,
                }
            }
            "new_api" => {
                let api = choose(&NEW_APIS.iter().collect::<Vec<_>>(), &mut rng)?;
                let account_region = choose(&regions_for(api, 0.0), &mut rng)?;
                let start = midnight + rng.gen_range(300..=390);
                let minutes = rng.gen_range(5..=10usize);
                let calls = rng.gen_range(10..=20u32);
                let who = Who::Contractor;
                let user_agent = first_user_agent(who);
                let description = format!(
                    "{calls} {} calls in {minutes} minutes by IAM user {} ({user_agent}); \
                     the API never appears in the background",
                    api.name,
                    user_name(who)
                );
                PlannedIncident {
                    label: label(
                        kind,
                        InsightType::ApiCallRateInsight,
                        api,
                        None,
                        "rise",
                        description,
                    ),
                    account_region,
                    api,
                    catalogue_index: None,
                    start,
                    end: start + minutes as i64,
                    active: None,
                    action: Action::Calls {
                        per_minute: spread(calls, minutes, &mut rng),
                        who,
                        user_agent,
                        source_ip: None,
                        error: None,
                    },
                    stream: 0,
                }
            }
            "sustained_rise" => {
                let name = *["RunInstances", "TerminateInstances"]
                    .choose(&mut rng)
                    .unwrap_or(&"RunInstances");
                let (index, api) = catalogue("ec2.amazonaws.com", name)?;
                // busy enough (>= 1 call per minute at midday at scale 1) to make 3x meaningful
                let account_region = choose(&regions_for(api, 1.0 / api.rate), &mut rng)?;
                let start = midnight + rng.gen_range(600..=690);
                let minutes = rng.gen_range(60..=90i64);
                let description = format!(
                    "{name} at 3x its business-hours rate for {minutes} minutes, from its usual callers"
                );
                PlannedIncident {
                    label: label(
                        kind,
                        InsightType::ApiCallRateInsight,
                        api,
                        None,
                        "rise",
                        description,
                    ),
                    account_region,
                    api,
                    catalogue_index: Some(index),
                    start,
                    end: start + minutes,
                    active: None,
                    action: Action::Multiply { factor: 3.0 },
                    stream: 0,
                }
            }
            "error_spike" => {
                let (source, name) = *[
                    ("s3.amazonaws.com", "ListBuckets"),
                    ("secretsmanager.amazonaws.com", "GetSecretValue"),
                ]
                .choose(&mut rng)
                .unwrap_or(&("s3.amazonaws.com", "ListBuckets"));
                let (index, api) = catalogue(source, name)?;
                let account_region = choose(&regions_for(api, 0.0), &mut rng)?;
                let start = midnight + rng.gen_range(870..=960);
                let minutes = 15usize;
                let per_minute: Vec<u32> = (0..minutes).map(|_| rng.gen_range(15..=30)).collect();
                let total: u32 = per_minute.iter().sum();
                let description = format!(
                    "{total} AccessDenied errors on {name} in {minutes} minutes: alice's access key \
                     used from {STOLEN_KEY_SOURCE_IP} with {STOLEN_KEY_USER_AGENT} (reconnaissance)"
                );
                PlannedIncident {
                    label: label(
                        kind,
                        InsightType::ApiErrorRateInsight,
                        api,
                        Some(ACCESS_DENIED.code),
                        "rise",
                        description,
                    ),
                    account_region,
                    api,
                    catalogue_index: Some(index),
                    start,
                    end: start + minutes as i64,
                    active: None,
                    action: Action::Calls {
                        per_minute,
                        who: Who::Alice,
                        user_agent: STOLEN_KEY_USER_AGENT,
                        source_ip: Some(STOLEN_KEY_SOURCE_IP),
                        error: Some(&ACCESS_DENIED),
                    },
                    stream: 0,
                }
            }
            _ => {
                let (index, api) = catalogue("ecs.amazonaws.com", "SubmitTaskStateChange")?;
                let account_region = choose(&regions_for(api, 0.0), &mut rng)?;
                let start = midnight + rng.gen_range(1140..=1260);
                let minutes = 45i64;
                let description = format!(
                    "SubmitTaskStateChange (normally about {:.1} per minute here) stops for {minutes} minutes: \
                     the ECS agents are down",
                    api.rate * multiplier_of(account_region) * opts.scale
                );
                PlannedIncident {
                    label: label(
                        kind,
                        InsightType::ApiCallRateInsight,
                        api,
                        None,
                        "fall",
                        description,
                    ),
                    account_region,
                    api,
                    catalogue_index: Some(index),
                    start,
                    end: start + minutes,
                    active: None,
                    action: Action::Suppress,
                    stream: 0,
                }
            }
        };
        planned.push(incident);
    }

    finish(&mut planned);
    Ok(planned)
}

/// Orders planned incidents by start and gives each its id, window, place and random stream.
pub(crate) fn finish(planned: &mut [PlannedIncident]) {
    planned.sort_by_key(|p| (p.start, p.label.kind.clone()));
    for (i, p) in planned.iter_mut().enumerate() {
        p.stream = INCIDENT_STREAM + i as u64;
        p.label.id = format!("inc-{:02}", i + 1);
        p.label.start = format_event_time(p.start);
        p.label.end = format_event_time(p.end);
        if let Some((account, region, _)) = ACCOUNT_REGIONS.get(p.account_region) {
            p.label.account = (*account).to_string();
            p.label.region = (*region).to_string();
        }
    }
}

pub(crate) fn label(
    kind: &str,
    insight_type: InsightType,
    api: &ApiSpec,
    error_code: Option<&str>,
    direction: &str,
    description: String,
) -> Incident {
    Incident {
        id: String::new(),
        kind: kind.to_string(),
        insight_type,
        account: String::new(),
        region: String::new(),
        event_source: api.source.to_string(),
        event_name: api.name.to_string(),
        error_code: error_code.map(str::to_string),
        direction: direction.to_string(),
        expect: Expect::Insight,
        start: String::new(),
        end: String::new(),
        description,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn plan_places_every_kind_without_overlap_after_the_baseline() {
        for seed in 0..20 {
            let opts = GenerateOptions::new(PathBuf::from("/nonexistent"), 10, seed);
            let planned = plan(&opts).unwrap();
            assert_eq!(planned.len(), INCIDENT_KINDS.len());
            for kind in INCIDENT_KINDS {
                assert!(planned.iter().any(|p| p.label.kind == kind));
            }
            let earliest = opts.start + 8 * MINUTES_PER_DAY;
            let latest = opts.start + 10 * MINUTES_PER_DAY;
            for (i, p) in planned.iter().enumerate() {
                assert!(p.start >= earliest && p.end <= latest && p.start < p.end);
                assert_eq!(p.label.id, format!("inc-{:02}", i + 1));
                if let Some(next) = planned.get(i + 1) {
                    assert!(p.end <= next.start, "overlap at seed {seed}");
                }
                // the API is logged where the incident happens
                let (_, region, _) = ACCOUNT_REGIONS[p.account_region];
                assert!(logged_in(p.api, region));
                if p.label.kind == "sustained_rise" {
                    assert!(weekday(p.start) < 5);
                }
            }
        }
        let short = GenerateOptions::new(PathBuf::from("/nonexistent"), 8, 1);
        assert!(matches!(
            plan(&short),
            Err(GenerateError::NoRoomForIncidents { .. })
        ));
    }

    #[test]
    fn spread_keeps_the_total_and_both_ends() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let xs = spread(27, 10, &mut rng);
        assert_eq!(xs.iter().sum::<u32>(), 27);
        assert!(xs[0] >= 1 && xs[9] >= 1);
    }
}
