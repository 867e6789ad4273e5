//! The scenario suite (`trailsight generate --scenarios`): one trail holding every kind of
//! incident the detector must find, the hard ones included, and windows of normal but awkward
//! traffic where it must stay silent. Kinds sit on fixed days and in disjoint hours; the seed
//! picks the API, the account-region and the exact minutes within each slot.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::generate::catalogue::{weekday, ApiSpec, ErrorSpec, Message, Who, NEW_APIS};
use crate::generate::incidents::{
    catalogue, choose, finish, first_user_agent, label, multiplier_of, regions_for, spread, Action,
    PlannedIncident, ACCESS_DENIED,
};
use crate::generate::{Expect, GenerateError, GenerateOptions, Incident};
use crate::series::{InsightType, Minute, MINUTES_PER_DAY};

/// Random stream of the scenario plan.
const SCENARIO_STREAM: u64 = 65;

/// Account-region indexes (see `ACCOUNT_REGIONS`): the busy one, its second region, the other
/// account.
const BUSY: usize = 0;
const SECOND_REGION: usize = 1;
const OTHER_ACCOUNT: usize = 2;

/// The scenario kinds, with what each one is.
pub const SCENARIO_KINDS: [(&str, &str); 16] = [
    ("after_min_history", "KMS ScheduleKeyDeletion burst on day 1, right after the 1-day minimum history"),
    ("night_run_instances", "RunInstances burst at night (20-40 calls in 10-15 min) by a new identity"),
    ("stop_logging", "4-6 StopLogging calls in 5 min: an API never called before"),
    ("rare_api_burst", "20-40 CreateAccessKey/CreateUser calls in ~10 min at night"),
    ("new_api", "10-20 calls in 5-10 min of a write API never seen (PutUserPolicy, ...)"),
    ("sustained_rise", "RunInstances/TerminateInstances at 3x for 60-90 min in business hours"),
    ("sustained_rise_2x", "RunInstances/TerminateInstances at 2-2.5x for 90-120 min in business hours, in the busy account-region"),
    ("peak_incident", "UpdateStack at 4x for 30-45 min, starting at the daily peak (12:30-13:30) of the busy account-region"),
    ("error_spike", "15-30 AccessDenied per minute for 15 min on a read API from one stolen key"),
    ("error_rate_only", "UpdateInstanceInformation fails with AccessDeniedException for 30 min; call rate unchanged"),
    ("slow_ramp", "CreateTags ramping from 1x to 4x over 3 hours"),
    ("region_incident", "RunInstances at 2-3 per minute for 15-20 min in eu-west-1 while us-east-1 is normal"),
    ("api_drop", "ecs SubmitTaskStateChange (a steady heartbeat) stops for 45 min"),
    ("noisy_api", "CreateLogStream with a rate that wanders in 10-minute blocks (must not fire)"),
    ("weekly_rhythm", "the quiet weekend and the Monday-morning rise of every call rate in the busy account-region (must not fire)"),
    ("delivery_gap", "no file delivered for 20 minutes in one account-region, then all at once (must not fire)"),
];

const SSM_DENIED: ErrorSpec = ErrorSpec {
    code: "AccessDeniedException",
    prob: 1.0,
    message: Message::Denied(""),
};

/// Plans the scenario suite. The trail must start on a Monday and last at least 9 days: day 1
/// holds the incident right after the minimum history, days 5-6 are the weekend watched by
/// `weekly_rhythm`, days 7 (Monday) and 8 hold the other incidents.
pub(crate) fn plan(opts: &GenerateOptions) -> Result<Vec<PlannedIncident>, GenerateError> {
    if opts.days < 9 || weekday(opts.start) != 0 {
        return Err(GenerateError::InvalidOptions(
            "--scenarios needs a trail of at least 9 days starting on a Monday".into(),
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    rng.set_stream(SCENARIO_STREAM);
    let day = |d: i64| opts.start + d * MINUTES_PER_DAY;
    let trail_end = day(i64::from(opts.days));
    let mut planned = Vec::new();
    let call_rate = InsightType::ApiCallRateInsight;

    // Day 1, right after the minimum history (1 day): a burst of a rare KMS write.
    {
        let api = catalogue("kms.amazonaws.com", "ScheduleKeyDeletion")?;
        let ar = choose(&[BUSY, SECOND_REGION, OTHER_ACCOUNT], &mut rng)?;
        let start = day(1) + rng.gen_range(30..=90);
        let minutes = rng.gen_range(5..=10usize);
        let calls = rng.gen_range(10..=15u32);
        let d = format!("{calls} ScheduleKeyDeletion calls in {minutes} minutes on the first day that may fire (1 day of history)");
        let l = label("after_min_history", call_rate, api.1, None, "rise", d);
        let action = burst(calls, minutes, Who::Intruder, &mut rng);
        planned.push(at(ar, start, start + minutes as i64, api, l, action));
    }
    // Day 7 (Monday), at night, in the other account: RunInstances by a new identity.
    {
        let api = catalogue("ec2.amazonaws.com", "RunInstances")?;
        let start = day(7) + rng.gen_range(120..=180);
        let minutes = rng.gen_range(10..=15usize);
        let calls = rng.gen_range(20..=40u32);
        let d = format!("{calls} RunInstances calls in {minutes} minutes at night by IAM user svc-backup-legacy; background {:.3} per minute at night",
            api.1.rate * 0.08 * multiplier_of(OTHER_ACCOUNT) * opts.scale);
        let l = label("night_run_instances", call_rate, api.1, None, "rise", d);
        let action = burst(calls, minutes, Who::Intruder, &mut rng);
        planned.push(at(
            OTHER_ACCOUNT,
            start,
            start + minutes as i64,
            api,
            l,
            action,
        ));
    }
    // Day 7, 04:00-05:00: StopLogging, a handful of calls.
    {
        let spec = NEW_APIS
            .iter()
            .find(|a| a.name == "StopLogging")
            .ok_or_else(|| GenerateError::InvalidOptions("StopLogging missing".into()))?;
        let ar = choose(&[SECOND_REGION, OTHER_ACCOUNT], &mut rng)?;
        let start = day(7) + rng.gen_range(240..=300);
        // At least 4: with 3, one call delivered late (1 % are) leaves 2 in real time, and
        // 2 calls are never an Insight (min_calls = 3).
        let calls = rng.gen_range(4..=6u32);
        let d = format!("{calls} StopLogging calls in 5 minutes: the API was never called");
        let l = label("stop_logging", call_rate, spec, None, "rise", d);
        let action = burst(calls, 5, Who::Contractor, &mut rng);
        planned.push(PlannedIncident {
            label: l,
            account_region: ar,
            api: spec,
            catalogue_index: None,
            start,
            end: start + 5,
            active: None,
            action,
            stream: 0,
        });
    }
    // Day 7 and 8, business hours: sustained rises of a busy API, at 3x then 2-2.5x.
    for (kind, d, factor, minutes) in [
        ("sustained_rise", 7, 3.0, rng.gen_range(60..=90i64)),
        (
            "sustained_rise_2x",
            8,
            rng.gen_range(2.0..=2.5f64),
            rng.gen_range(90..=120i64),
        ),
    ] {
        let name = *["RunInstances", "TerminateInstances"]
            .choose(&mut rng)
            .unwrap_or(&"RunInstances");
        let api = catalogue("ec2.amazonaws.com", name)?;
        // The issue asks for "a sustained 2-3x rise of a busy API": in the other account (0.6x
        // the rates) at scale 0.5 these APIs run at 0.3-0.4 calls a minute, where a 2x rise
        // over two hours is beyond what any detector can tell from noise at the false-alarm
        // budget (README, "Detection quality"); the 2x rise runs in the busy account-region.
        // The draw is kept so that every other scenario keeps its minutes.
        let drawn = choose(&[BUSY, OTHER_ACCOUNT], &mut rng)?;
        let ar = if kind == "sustained_rise_2x" {
            BUSY
        } else {
            drawn
        };
        let start = day(d) + rng.gen_range(600..=660);
        let text = format!(
            "{name} at {factor:.2}x its business-hours rate for {minutes} minutes, from its usual callers"
        );
        let l = label(kind, call_rate, api.1, None, "rise", text);
        planned.push(at(
            ar,
            start,
            start + minutes,
            api,
            l,
            Action::Multiply { factor },
        ));
    }
    // Day 7, at the daily peak: UpdateStack at 4x.
    {
        let api = catalogue("cloudformation.amazonaws.com", "UpdateStack")?;
        // The daily peak of the busy account-region: elsewhere UpdateStack runs at 0.13-0.15
        // calls a minute, too sparse for a peak (and for a 4x rise of half an hour to be told
        // from noise at the false-alarm budget). The draw is kept (other scenarios' minutes).
        let _ = choose(&[BUSY, SECOND_REGION, OTHER_ACCOUNT], &mut rng)?;
        let ar = BUSY;
        let start = day(7) + rng.gen_range(750..=810);
        let minutes = rng.gen_range(30..=45i64);
        let d = format!("UpdateStack at 4x for {minutes} minutes from the daily peak");
        let l = label("peak_incident", call_rate, api.1, None, "rise", d);
        planned.push(at(
            ar,
            start,
            start + minutes,
            api,
            l,
            Action::Multiply { factor: 4.0 },
        ));
    }
    // Day 7, afternoon: AccessDenied spike on a read API from a stolen key.
    {
        let (source, name) = *[
            ("s3.amazonaws.com", "ListBuckets"),
            ("secretsmanager.amazonaws.com", "GetSecretValue"),
        ]
        .choose(&mut rng)
        .unwrap_or(&("s3.amazonaws.com", "ListBuckets"));
        let api = catalogue(source, name)?;
        let ar = choose(&regions_for(api.1, 0.0), &mut rng)?;
        let start = day(7) + rng.gen_range(870..=930);
        let per_minute: Vec<u32> = (0..15).map(|_| rng.gen_range(15..=30)).collect();
        let total: u32 = per_minute.iter().sum();
        let d = format!("{total} AccessDenied errors on {name} in 15 minutes from one stolen key");
        let l = label(
            "error_spike",
            InsightType::ApiErrorRateInsight,
            api.1,
            Some(ACCESS_DENIED.code),
            "rise",
            d,
        );
        let action = Action::Calls {
            per_minute,
            who: Who::Alice,
            user_agent: crate::generate::catalogue::STOLEN_KEY_USER_AGENT,
            source_ip: Some(crate::generate::catalogue::STOLEN_KEY_SOURCE_IP),
            error: Some(&ACCESS_DENIED),
        };
        planned.push(at(ar, start, start + 15, api, l, action));
    }
    // Day 7, late afternoon: a slow ramp of CreateTags in the busy account-region.
    {
        let api = catalogue("ec2.amazonaws.com", "CreateTags")?;
        let start = day(7) + rng.gen_range(990..=1020);
        let d = "CreateTags ramping linearly from 1x to 4x its rate over 3 hours".to_string();
        let l = label("slow_ramp", call_rate, api.1, None, "rise", d);
        let action = Action::Ramp { from: 1.0, to: 4.0 };
        planned.push(at(BUSY, start, start + 180, api, l, action));
    }
    // Day 7, evening: RunInstances in eu-west-1 only.
    {
        let api = catalogue("ec2.amazonaws.com", "RunInstances")?;
        let start = day(7) + rng.gen_range(1230..=1290);
        let minutes = rng.gen_range(15..=20usize);
        let per_minute: Vec<u32> = (0..minutes).map(|_| rng.gen_range(2..=3)).collect();
        let d = format!(
            "{} RunInstances calls in {minutes} minutes in eu-west-1; us-east-1 of the same account is normal",
            per_minute.iter().sum::<u32>()
        );
        let l = label("region_incident", call_rate, api.1, None, "rise", d);
        let action = Action::Calls {
            per_minute,
            who: Who::Intruder,
            user_agent: first_user_agent(Who::Intruder),
            source_ip: None,
            error: None,
        };
        planned.push(at(
            SECOND_REGION,
            start,
            start + minutes as i64,
            api,
            l,
            action,
        ));
    }
    // Day 8, night: a rare IAM write (global: us-east-1 regions only).
    {
        let name = *["CreateAccessKey", "CreateUser"]
            .choose(&mut rng)
            .unwrap_or(&"CreateAccessKey");
        let api = catalogue("iam.amazonaws.com", name)?;
        let ar = choose(&regions_for(api.1, 0.0), &mut rng)?;
        let start = day(8) + rng.gen_range(60..=180);
        let minutes = rng.gen_range(8..=12usize);
        let calls = rng.gen_range(20..=40u32);
        let d = format!("{calls} {name} calls in {minutes} minutes at night by a new identity");
        let l = label("rare_api_burst", call_rate, api.1, None, "rise", d);
        let action = burst(calls, minutes, Who::Intruder, &mut rng);
        planned.push(at(ar, start, start + minutes as i64, api, l, action));
    }
    // Day 8, early morning: a write API never seen before.
    {
        let spec = *NEW_APIS
            .iter()
            .filter(|a| a.name != "StopLogging")
            .collect::<Vec<_>>()
            .choose(&mut rng)
            .ok_or_else(|| GenerateError::InvalidOptions("no new API".into()))?;
        let ar = choose(&regions_for(spec, 0.0), &mut rng)?;
        let start = day(8) + rng.gen_range(300..=360);
        let minutes = rng.gen_range(5..=10usize);
        let calls = rng.gen_range(10..=20u32);
        let d = format!(
            "{calls} {} calls in {minutes} minutes: the API never appears in the background",
            spec.name
        );
        let l = label("new_api", call_rate, spec, None, "rise", d);
        let action = burst(calls, minutes, Who::Contractor, &mut rng);
        planned.push(PlannedIncident {
            label: l,
            account_region: ar,
            api: spec,
            catalogue_index: None,
            start,
            end: start + minutes as i64,
            active: None,
            action,
            stream: 0,
        });
    }
    // Day 8, morning: the SSM agent's calls fail (AccessDeniedException), at the same rate.
    {
        let api = catalogue("ssm.amazonaws.com", "UpdateInstanceInformation")?;
        let ar = choose(&[BUSY, SECOND_REGION, OTHER_ACCOUNT], &mut rng)?;
        let start = day(8) + rng.gen_range(480..=540);
        let d = "UpdateInstanceInformation calls fail with AccessDeniedException for 30 minutes \
                 (a policy change); the call rate is unchanged"
            .to_string();
        let l = label(
            "error_rate_only",
            InsightType::ApiErrorRateInsight,
            api.1,
            Some(SSM_DENIED.code),
            "rise",
            d,
        );
        planned.push(at(
            ar,
            start,
            start + 30,
            api,
            l,
            Action::Fail { error: &SSM_DENIED },
        ));
    }
    // Day 8, evening: a steady heartbeat API stops.
    {
        let api = catalogue("ecs.amazonaws.com", "SubmitTaskStateChange")?;
        let ar = choose(&[BUSY, SECOND_REGION, OTHER_ACCOUNT], &mut rng)?;
        let start = day(8) + rng.gen_range(1140..=1200);
        let d = "SubmitTaskStateChange stops for 45 minutes: the ECS agents are down".to_string();
        let l = label("api_drop", call_rate, api.1, None, "fall", d);
        planned.push(at(ar, start, start + 45, api, l, Action::Suppress));
    }
    // Day 8, late evening: no file for 20 minutes in one account-region.
    {
        let api = catalogue("ec2.amazonaws.com", "CreateTags")?;
        let ar = choose(&[BUSY, SECOND_REGION, OTHER_ACCOUNT], &mut rng)?;
        let gap = day(8) + 5 * rng.gen_range(270..=276);
        let d =
            "no file delivered for 20 minutes, then everything at once: not a drop of every API"
                .to_string();
        let mut l = label("delivery_gap", call_rate, api.1, None, "any", d);
        none_anywhere(&mut l);
        let end = (gap + 50).min(trail_end);
        planned.push(PlannedIncident {
            label: l,
            account_region: ar,
            api: api.1,
            catalogue_index: None,
            start: gap,
            end,
            active: Some((gap, gap + 20)),
            action: Action::DelayDelivery,
            stream: 0,
        });
    }
    // The whole trail: a noisy API in the other account (watched from day 1).
    {
        let api = catalogue("logs.amazonaws.com", "CreateLogStream")?;
        let d = "CreateLogStream at twice its rate on average, the extra wandering by a \
                 Gamma(0.5) factor every 10 minutes, all along the trail: must not fire"
            .to_string();
        let mut l = label("noisy_api", call_rate, api.1, None, "any", d);
        l.expect = Expect::None;
        planned.push(PlannedIncident {
            label: l,
            account_region: OTHER_ACCOUNT,
            api: api.1,
            catalogue_index: Some(api.0),
            start: day(1),
            end: trail_end,
            active: Some((opts.start, trail_end)),
            action: Action::Wander {
                level: 1.0,
                shape: 0.5,
                block: 10,
            },
            stream: 0,
        });
    }
    // The weekend and Monday morning in the busy account-region: nothing may fire.
    {
        let api = catalogue("ec2.amazonaws.com", "RunInstances")?;
        let d = "Saturday 00:00 to Monday 10:00: weekend lull and Monday-morning rise of every \
                 call rate; must not fire"
            .to_string();
        let mut l = label("weekly_rhythm", call_rate, api.1, None, "any", d);
        none_anywhere(&mut l);
        planned.push(PlannedIncident {
            label: l,
            account_region: BUSY,
            api: api.1,
            catalogue_index: None,
            start: day(5),
            end: day(7) + 600,
            active: None,
            action: Action::Observe,
            stream: 0,
        });
    }
    finish(&mut planned);
    Ok(planned)
}

/// A planned incident on a catalogue API, active over its label's window.
fn at(
    account_region: usize,
    start: Minute,
    end: Minute,
    api: (usize, &'static ApiSpec),
    label: Incident,
    action: Action,
) -> PlannedIncident {
    PlannedIncident {
        label,
        account_region,
        api: api.1,
        catalogue_index: Some(api.0),
        start,
        end,
        active: None,
        action,
        stream: 0,
    }
}

/// `calls` calls spread over `minutes` minutes by one identity with its first user agent.
fn burst(calls: u32, minutes: usize, who: Who, rng: &mut ChaCha8Rng) -> Action {
    Action::Calls {
        per_minute: spread(calls, minutes, rng),
        who,
        user_agent: first_user_agent(who),
        source_ip: None,
        error: None,
    }
}

/// A label for "no Insight on any call-rate series of the account-region".
fn none_anywhere(l: &mut Incident) {
    l.expect = Expect::None;
    l.event_source = "*".into();
    l.event_name = "*".into();
}
