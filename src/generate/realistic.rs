//! `generate --traffic realistic`: background traffic shaped the way real AWS accounts are, each
//! behaviour from its own process (automation sessions with Pareto sizes, cron jobs at fixed
//! minutes, human sessions on local office hours, a holiday, changes, growth, throttling), and
//! the labels (`behaviours`) that say where each one is.
//!
//! Everything with a time (sessions, storms, changes, cron parameters) is planned from the seed
//! first, on its own random stream; the minute loop then draws only per-call details, so the
//! labels are known before a record is written and incidents leave the background untouched.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, Offset, TimeZone, Timelike, Weekday};
use chrono_tz::Tz;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Binomial, Distribution, Gamma, Pareto};

use crate::generate::catalogue::{
    api, assumed_role, hash_str, logged_in, mix64, ApiSpec, ErrorSpec, Identity, Message, Rhythm,
    Val, Who, ACCOUNT_REGIONS, CATALOGUE, THROTTLING,
};
use crate::generate::delivery::Outbox;
use crate::generate::incidents::{Action, ActiveIncident};
use crate::generate::record::EventTime;
use crate::generate::traffic::{emit, pick_user_agent, sample_poisson, AccountRegion, CallPlan};
use crate::generate::{Behaviour, BehaviourClass, GenerateError, GenerateOptions};
use crate::series::{format_event_time, InsightType, Minute, MINUTES_PER_DAY};

/// First random stream of the account-regions' realistic backgrounds.
pub(crate) const BACKGROUND_STREAM: u64 = 300;
/// First random stream of the account-regions' plans.
const PLAN_STREAM: u64 = 400;

/// Terraform's user agent, as the AWS provider sends it.
pub(crate) const UA_TERRAFORM: &str = "APN/1.0 HashiCorp/1.0 Terraform/1.5.7 (+https://www.terraform.io) terraform-provider-aws/5.31.0 (+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go/1.49.13 (go1.20.12; linux; amd64)";
/// A CloudFormation deploy from a pipeline.
const UA_CFN_DEPLOY: &str = "aws-cli/2.15.17 Python/3.11.6 Linux/6.5.0-1015-azure exe/x86_64.ubuntu.22 prompt/off command/cloudformation.deploy";

/// The weekday office-hours level at night, relative to the weekday peak.
const HUMAN_NIGHT: f64 = 0.03;
/// Weekends and holidays, relative to weekdays.
const HUMAN_WEEKEND: f64 = 0.12;
/// Mean calls of one human working session on one API.
const HUMAN_SESSION_MEAN: f64 = 3.0;
/// Share of the CI traffic of an API that runs between sessions (drift checks, plans).
const CI_BACKGROUND_SHARE: f64 = 0.05;
/// Pareto shape of an automation session's size: most applies touch a few resources, a few
/// touch hundreds.
const SESSION_SHAPE: f64 = 1.2;
/// A session never exceeds this many calls (at scale 1).
const SESSION_CAP: f64 = 800.0;
/// Retry rounds of a throttling storm, in minutes after it starts (exponential backoff).
const STORM_ROUNDS: [i64; 7] = [0, 1, 2, 4, 8, 16, 32];

/// `Client.RequestLimitExceeded`: EC2's throttling error.
const EC2_THROTTLE: ErrorSpec = ErrorSpec {
    code: "Client.RequestLimitExceeded",
    prob: 0.0,
    message: Message::Text("Request limit exceeded."),
};

/// The APIs realistic traffic adds to the catalogue (cron jobs, a new API, IaC writes).
pub(crate) static REALISTIC_APIS: [ApiSpec; 6] = [
    ApiSpec {
        response: Some(&[
            ("snapshotId", Val::Hex("snap-0", 16)),
            ("volumeId", Val::Hex("vol-0", 16)),
            ("status", Val::Str("pending")),
        ]),
        ..api(
            "ec2.amazonaws.com",
            "CreateSnapshot",
            false,
            Rhythm::Flat,
            0.0,
            &[(Who::AutoScalingService, 1)],
            &[
                ("volumeId", Val::Hex("vol-0", 16)),
                ("description", Val::Str("Created by AWS Backup for backup plan nightly-ebs")),
            ],
        )
    },
    ApiSpec {
        response: Some(&[("requestId", Val::Uuid), ("_return", Val::Bool(true))]),
        ..api(
            "ec2.amazonaws.com",
            "DeleteSnapshot",
            false,
            Rhythm::Flat,
            0.0,
            &[(Who::AutoScalingService, 1)],
            &[("snapshotId", Val::Hex("snap-0", 16))],
        )
    },
    ApiSpec {
        response: Some(&[("command", Val::Obj(&[("commandId", Val::Uuid), ("status", Val::Str("Pending"))]))]),
        ..api(
            "ssm.amazonaws.com",
            "SendCommand",
            false,
            Rhythm::Flat,
            0.0,
            &[(Who::SsmAgent, 1)],
            &[
                ("documentName", Val::Pick(&["AWS-GatherSoftwareInventory", "AWS-RunShellScript", "AWS-RunPatchBaseline"])),
                ("instanceIds", Val::Hex("i-0", 16)),
                ("timeoutSeconds", Val::Int(600, 600)),
            ],
        )
    },
    ApiSpec {
        event_version: "1.08",
        ..api(
            "ecs.amazonaws.com",
            "RunTask",
            false,
            Rhythm::Flat,
            0.0,
            &[(Who::EcsServiceRole, 1)],
            &[
                ("cluster", Val::Pick(&["prod-orders", "prod-payments"])),
                ("taskDefinition", Val::Pick(&["cache-warmer:7", "queue-reaper:12"])),
                ("count", Val::Int(1, 1)),
                ("launchType", Val::Str("FARGATE")),
            ],
        )
    },
    ApiSpec {
        response: Some(&[]),
        ..api(
            "ssm.amazonaws.com",
            "PutComplianceItems",
            false,
            Rhythm::Flat,
            0.0,
            &[(Who::SsmAgent, 1)],
            &[
                ("resourceId", Val::Hex("i-0", 16)),
                ("resourceType", Val::Str("ManagedInstance")),
                ("complianceType", Val::Str("Association")),
                ("itemContentHash", Val::Hex("", 64)),
            ],
        )
    },
    ApiSpec {
        global: true,
        ..api(
            "iam.amazonaws.com",
            "PutRolePolicy",
            false,
            Rhythm::Flat,
            0.0,
            &[(Who::GithubDeploy, 1)],
            &[
                ("roleName", Val::Pick(&["order-processor-role", "image-resizer-role", "ecsTaskExecutionRole"])),
                ("policyName", Val::Pick(&["inline-s3", "inline-sqs", "inline-kms"])),
                ("policyDocument", Val::Str("{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"sqs:SendMessage\",\"Resource\":\"*\"}]}")),
            ],
        )
    },
];
const CREATE_SNAPSHOT: usize = 0;
const DELETE_SNAPSHOT: usize = 1;
const SEND_COMMAND: usize = 2;
const RUN_TASK: usize = 3;
const PUT_COMPLIANCE_ITEMS: usize = 4;

/// The write APIs an infrastructure-as-code apply touches.
const IAC_APIS: [(&str, &str); 15] = [
    ("ec2.amazonaws.com", "CreateTags"),
    ("ec2.amazonaws.com", "RunInstances"),
    ("ec2.amazonaws.com", "TerminateInstances"),
    ("ec2.amazonaws.com", "AuthorizeSecurityGroupIngress"),
    ("ec2.amazonaws.com", "ModifyInstanceAttribute"),
    ("iam.amazonaws.com", "AttachRolePolicy"),
    ("iam.amazonaws.com", "CreateRole"),
    ("iam.amazonaws.com", "PutRolePolicy"),
    ("lambda.amazonaws.com", "UpdateFunctionCode20150331v2"),
    (
        "lambda.amazonaws.com",
        "UpdateFunctionConfiguration20150331v2",
    ),
    ("cloudformation.amazonaws.com", "UpdateStack"),
    ("ssm.amazonaws.com", "PutParameter"),
    ("ecs.amazonaws.com", "RegisterTaskDefinition"),
    ("ecs.amazonaws.com", "UpdateService"),
    ("s3.amazonaws.com", "PutBucketPolicy"),
];

/// Write APIs whose errors include throttling, with the error they throttle with.
fn throttle_error(spec: &ApiSpec) -> Option<&'static ErrorSpec> {
    let write_throttled = matches!(
        (spec.source, spec.name),
        ("ec2.amazonaws.com", "CreateTags")
            | ("ec2.amazonaws.com", "RunInstances")
            | ("ec2.amazonaws.com", "CreateSnapshot")
            | ("ssm.amazonaws.com", "PutParameter")
            | ("ssm.amazonaws.com", "UpdateInstanceInformation")
    );
    if !(write_throttled || spec.throttled) {
        None
    } else if spec.source == "ec2.amazonaws.com" {
        Some(&EC2_THROTTLE)
    } else {
        Some(&THROTTLING)
    }
}

fn find_api(source: &str, name: &str) -> Option<&'static ApiSpec> {
    CATALOGUE
        .iter()
        .chain(REALISTIC_APIS.iter())
        .find(|a| a.source == source && a.name == name)
}

/// Who makes a realistic call: a catalogue identity or one of realistic traffic's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Catalogue(Who),
    Backup,
    Scheduler,
    MaintenanceWindow,
}

/// One batch of calls due in a minute.
#[derive(Debug, Clone, Copy)]
struct Pending {
    api: &'static ApiSpec,
    caller: Caller,
    user_agent: Option<&'static str>,
    count: u32,
    /// Calls that fail with the API's throttling error (the first `throttled` of `count`).
    throttled: u32,
}

/// An automation session: a pipeline or an IaC apply.
#[derive(Debug, Clone)]
struct Session {
    start: Minute,
    minutes: i64,
    user_agent: &'static str,
    calls: Vec<(&'static ApiSpec, u32)>,
}

/// A retry storm: a client throttled on `api` retries with exponential backoff.
#[derive(Debug, Clone)]
struct Storm {
    api: &'static ApiSpec,
    /// (minute, calls, throttled) of each retry round.
    rounds: Vec<(Minute, u32, u32)>,
}

/// One account-region's mix of behaviours.
#[derive(Debug, Clone, Default)]
struct Mix {
    sessions: Vec<Session>,
    storms: Vec<Storm>,
    /// (minute of day UTC, calls at scale 1) of the nightly snapshot job.
    nightly: Option<(Minute, f64)>,
    /// Calls at scale 1 of the hourly job at :00.
    hourly: Option<f64>,
    /// (offset in the quarter hour, calls at scale 1) of the job every 15 minutes.
    quarter: Option<(Minute, f64)>,
    /// (first minute, calls per minute at scale 1) of the API adopted for good.
    adopted: Option<(Minute, f64)>,
    /// (API, first minute, factor) of the step change.
    step: Option<(&'static ApiSpec, Minute, f64)>,
    /// (API, growth per day) of the growing APIs.
    growth: Vec<(&'static ApiSpec, f64)>,
    /// Throttling probability of one call of a throttled API.
    throttle_p: f64,
}

/// The planned realistic world of a trail: the time zone, each account-region's mix, and the
/// behaviour labels.
pub(crate) struct World {
    tz: Tz,
    start: Minute,
    minutes: i64,
    holidays: Vec<NaiveDate>,
    mixes: Vec<Mix>,
    /// Per trail day (UTC), a Gamma factor of the people's activity (busy and quiet days).
    day_factor: Vec<f64>,
    /// Every behaviour, ordered by id.
    pub behaviours: Vec<Behaviour>,
}

fn local(tz: &Tz, minute: Minute) -> Option<chrono::NaiveDateTime> {
    chrono::DateTime::from_timestamp(minute * 60, 0).map(|t| t.with_timezone(tz).naive_local())
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The people's activity at this minute, relative to a weekday peak: office hours in local
/// time with a lunch dip; weekends and holidays at [`HUMAN_WEEKEND`].
pub(crate) fn human_level(tz: &Tz, holidays: &[NaiveDate], minute: Minute) -> f64 {
    let Some(t) = local(tz, minute) else {
        return 0.0;
    };
    let hour = f64::from(t.hour()) + (f64::from(t.minute()) + 0.5) / 60.0;
    let weekend =
        matches!(t.weekday(), Weekday::Sat | Weekday::Sun) || holidays.contains(&t.date());
    if weekend {
        return HUMAN_WEEKEND
            * (HUMAN_NIGHT
                + (1.0 - HUMAN_NIGHT)
                    * sigmoid((hour - 10.5) / 1.0)
                    * sigmoid((16.0 - hour) / 1.0));
    }
    let day = sigmoid((hour - 8.75) / 0.5) * sigmoid((17.75 - hour) / 0.6);
    let lunch = 1.0 - 0.3 * (-((hour - 12.5) / 0.6).powi(2)).exp();
    HUMAN_NIGHT + (1.0 - HUMAN_NIGHT) * day * lunch
}

/// Whether this minute is in weekday office hours (local), for the sessions' arrival rate.
fn office_hours(tz: &Tz, holidays: &[NaiveDate], minute: Minute) -> bool {
    local(tz, minute).is_some_and(|t| {
        !matches!(t.weekday(), Weekday::Sat | Weekday::Sun)
            && !holidays.contains(&t.date())
            && (9..18).contains(&t.hour())
    })
}

/// The share of an API's catalogue callers that is the CI role.
fn ci_share(spec: &ApiSpec) -> f64 {
    let total: u32 = spec.callers.iter().map(|(_, w)| *w).sum();
    let ci: u32 = spec
        .callers
        .iter()
        .filter(|(w, _)| *w == Who::GithubDeploy)
        .map(|(_, w)| *w)
        .sum();
    if total == 0 {
        0.0
    } else {
        f64::from(ci) / f64::from(total)
    }
}

/// Minutes (UTC) where the offset of `tz` changes inside `[start, end)`.
fn offset_changes(tz: &Tz, start: Minute, end: Minute) -> Vec<Minute> {
    let offset = |m: Minute| {
        chrono::DateTime::from_timestamp(m * 60, 0).map(|t| {
            tz.offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc()
        })
    };
    let mut out = Vec::new();
    let mut prev = offset(start);
    let mut hour = start;
    while hour + 60 <= end {
        let next = offset(hour + 60);
        if next != prev {
            // the change is on a quarter hour at the latest; find its minute
            let mut m = hour + 1;
            while m <= hour + 60 && offset(m) == prev {
                m += 1;
            }
            out.push(m);
            prev = next;
        }
        hour += 60;
    }
    out
}

/// Labels under construction for one account-region.
struct LabelSink<'a> {
    account: &'a str,
    region: &'a str,
    out: &'a mut Vec<Behaviour>,
}

impl LabelSink<'_> {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        kind: &str,
        class: BehaviourClass,
        spec: &ApiSpec,
        error: Option<&str>,
        start: Minute,
        end: Minute,
        description: String,
    ) {
        self.out.push(Behaviour {
            id: String::new(),
            kind: kind.to_string(),
            class,
            insight_type: if error.is_some() {
                InsightType::ApiErrorRateInsight
            } else {
                InsightType::ApiCallRateInsight
            },
            account: self.account.to_string(),
            region: self.region.to_string(),
            event_source: spec.source.to_string(),
            event_name: spec.name.to_string(),
            error_code: error.map(str::to_string),
            start: format_event_time(start),
            end: format_event_time(end),
            description,
        });
    }
}

/// Plans the realistic world of a trail from the seed and options alone.
pub(crate) fn plan(opts: &GenerateOptions) -> Result<World, GenerateError> {
    let tz: Tz = opts.timezone.parse().map_err(|_| {
        GenerateError::InvalidOptions(format!("unknown IANA time zone {:?}", opts.timezone))
    })?;
    let start = opts.start;
    let minutes = i64::from(opts.days) * MINUTES_PER_DAY;
    let end = start + minutes;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    rng.set_stream(PLAN_STREAM);
    let holidays = if opts.holidays.is_empty() {
        // one local weekday, not the first two days (the detector's minimum history) and
        // preferably before the scenario suite's incident days (7 and 8)
        let weekdays: Vec<NaiveDate> = (2..i64::from(opts.days).min(5))
            .filter_map(|d| local(&tz, start + d * MINUTES_PER_DAY + 720).map(|t| t.date()))
            .filter(|d| !matches!(d.weekday(), Weekday::Sat | Weekday::Sun))
            .collect();
        weekdays.choose(&mut rng).copied().into_iter().collect()
    } else {
        opts.holidays.clone()
    };
    let day_factor: Vec<f64> = {
        let g = Gamma::new(10.0, 0.1).map_err(|e| GenerateError::InvalidOptions(e.to_string()))?;
        (0..=opts.days).map(|_| g.sample(&mut rng)).collect()
    };
    let dst = offset_changes(&tz, start, end);
    let mut behaviours = Vec::new();
    let mut mixes = Vec::new();
    for (index, (account, region, multiplier)) in ACCOUNT_REGIONS.iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
        rng.set_stream(PLAN_STREAM + 1 + index as u64);
        let mut labels = LabelSink {
            account,
            region,
            out: &mut behaviours,
        };
        let mut mix = Mix {
            throttle_p: rng.gen_range(0.004..0.02),
            ..Mix::default()
        };
        let here = |spec: &ApiSpec| logged_in(spec, region);
        let trail = |labels: &mut LabelSink<'_>,
                     kind: &str,
                     spec: &ApiSpec,
                     error: Option<&str>,
                     d: String| {
            labels.add(kind, BehaviourClass::Background, spec, error, start, end, d)
        };

        // The steady catalogue: heartbeats and rare writes (flat), office hours, errors.
        for spec in CATALOGUE.iter().filter(|s| here(s)) {
            if !spec.read_only {
                match spec.rhythm {
                    Rhythm::Flat if spec.rate >= 0.1 => {
                        trail(&mut labels, "heartbeat", spec, None, "machine calls at a steady rate".into())
                    }
                    Rhythm::Flat => trail(&mut labels, "rare_write", spec, None, "a rare write".into()),
                    Rhythm::Office if ci_share(spec) < 1.0 => trail(
                        &mut labels,
                        "office_hours",
                        spec,
                        None,
                        format!("people's sessions on {} office hours; weekends and holidays at {HUMAN_WEEKEND}x", opts.timezone),
                    ),
                    Rhythm::Office => trail(
                        &mut labels,
                        "automation_background",
                        spec,
                        None,
                        "the CI role's calls between sessions".into(),
                    ),
                }
                if spec.rhythm == Rhythm::Office && ci_share(spec) < 1.0 {
                    for &change in &dst {
                        labels.add(
                            "dst_shift",
                            BehaviourClass::AllowedChange,
                            spec,
                            None,
                            change,
                            end,
                            format!(
                                "office hours move by one hour in UTC: {} changes its offset",
                                opts.timezone
                            ),
                        );
                    }
                    for day in &holidays {
                        let from = tz
                            .from_local_datetime(&day.and_hms_opt(0, 0, 0).unwrap_or_default())
                            .earliest()
                            .map(|t| t.timestamp().div_euclid(60));
                        let to = day.succ_opt().and_then(|next| {
                            tz.from_local_datetime(&next.and_hms_opt(0, 0, 0).unwrap_or_default())
                                .earliest()
                                .map(|t| t.timestamp().div_euclid(60))
                        });
                        if let (Some(from), Some(to)) = (from, to) {
                            if from < end && to > start {
                                labels.add(
                                    "holiday",
                                    BehaviourClass::AllowedChange,
                                    spec,
                                    None,
                                    from.max(start),
                                    to.min(end),
                                    format!("{day} is a holiday: a weekday at weekend level"),
                                );
                            }
                        }
                    }
                }
            }
            for error in spec.errors {
                trail(
                    &mut labels,
                    "error_noise",
                    spec,
                    Some(error.code),
                    format!("{} on {:.1}% of calls", error.code, error.prob * 100.0),
                );
            }
        }

        // Automation sessions: a few a day, more in weekday office hours, some at night.
        let iac: Vec<&'static ApiSpec> = IAC_APIS
            .iter()
            .filter_map(|(s, n)| find_api(s, n))
            .filter(|s| here(s))
            .collect();
        let busy = rng.gen_range(0.3..0.7); // sessions per office hour
        let quiet = rng.gen_range(0.03..0.08); // sessions per hour otherwise
        let pareto = Pareto::new(3.0, SESSION_SHAPE)
            .map_err(|e| GenerateError::InvalidOptions(e.to_string()))?;
        for hour in 0..minutes / 60 {
            let h0 = start + hour * 60;
            let rate = if office_hours(&tz, &holidays, h0 + 30) {
                busy
            } else {
                quiet
            };
            let n = sample_poisson(rate, &mut rng);
            for _ in 0..n {
                let s0 = h0 + rng.gen_range(0..60);
                let size = (pareto.sample(&mut rng).min(SESSION_CAP) * multiplier * opts.scale)
                    .ceil()
                    .max(1.0);
                let k = rng.gen_range(1..=4usize).min(iac.len());
                let apis: Vec<&'static ApiSpec> =
                    iac.choose_multiple(&mut rng, k).copied().collect();
                // the first API takes the largest share (tagging or instances usually dominate)
                let mut weights: Vec<f64> = (0..apis.len())
                    .map(|i| 1.0 / (1.0 + i as f64) * rng.gen_range(0.5..1.5))
                    .collect();
                let total: f64 = weights.iter().sum();
                weights.iter_mut().for_each(|w| *w /= total);
                let calls: Vec<(&'static ApiSpec, u32)> = apis
                    .iter()
                    .zip(&weights)
                    .map(|(a, w)| (*a, (size * w).round().max(1.0) as u32))
                    .collect();
                let total_calls: u32 = calls.iter().map(|c| c.1).sum();
                let len = (2 + i64::from(total_calls) / 40 + rng.gen_range(0..4)).min(30);
                let user_agent = if rng.gen_bool(0.8) {
                    UA_TERRAFORM
                } else {
                    UA_CFN_DEPLOY
                };
                let s_end = (s0 + len).min(end);
                if s0 >= end {
                    continue;
                }
                for (a, c) in &calls {
                    labels.add(
                        "automation_session",
                        BehaviourClass::Background,
                        a,
                        None,
                        s0,
                        s_end,
                        format!("{} calls of {} in a {len}-minute {} session by GitHubActionsDeployRole",
                            c, a.name, if user_agent == UA_TERRAFORM { "Terraform apply" } else { "CloudFormation deploy" }),
                    );
                }
                mix.sessions.push(Session {
                    start: s0,
                    minutes: s_end - s0,
                    user_agent,
                    calls,
                });
            }
        }

        // Cron jobs: each account-region has its own.
        let snap = &REALISTIC_APIS[CREATE_SNAPSHOT];
        if index != 1 {
            let at = if index == 0 {
                120
            } else {
                210 + 5 * rng.gen_range(0..4)
            };
            let calls = rng.gen_range(200.0..500.0);
            mix.nightly = Some((at, calls));
            let d = format!("AWS Backup snapshots every volume at {:02}:{:02} UTC: ~{:.0} calls in one minute, retention deletes 3 minutes later", at / 60, at % 60, calls * multiplier * opts.scale);
            trail(&mut labels, "cron_nightly", snap, None, d.clone());
            trail(
                &mut labels,
                "cron_nightly",
                &REALISTIC_APIS[DELETE_SNAPSHOT],
                None,
                d,
            );
        }
        if index != 2 {
            let calls = rng.gen_range(20.0..60.0);
            mix.hourly = Some(calls);
            trail(
                &mut labels,
                "cron_hourly",
                &REALISTIC_APIS[SEND_COMMAND],
                None,
                format!(
                    "a maintenance window sends ~{:.0} SSM commands at :00 every hour",
                    calls * multiplier * opts.scale
                ),
            );
        }
        if index != 0 {
            let offset = rng.gen_range(0..15);
            let calls = rng.gen_range(4.0..10.0);
            mix.quarter = Some((offset, calls));
            trail(
                &mut labels,
                "cron_15min",
                &REALISTIC_APIS[RUN_TASK],
                None,
                format!(
                    "an EventBridge schedule runs ECS tasks every 15 minutes (~{:.0} RunTask)",
                    calls * multiplier * opts.scale
                ),
            );
        }

        // Throttling tracks the calls of every throttled API.
        for spec in CATALOGUE
            .iter()
            .chain(REALISTIC_APIS.iter())
            .filter(|s| here(s))
        {
            let used = !std::ptr::eq(spec, snap) || mix.nightly.is_some();
            if let (Some(error), true) = (throttle_error(spec), used) {
                trail(
                    &mut labels,
                    "throttling",
                    spec,
                    Some(error.code),
                    format!(
                        "{:.3}% of calls throttled: the errors follow the calls",
                        mix.throttle_p * 100.0
                    ),
                );
            }
        }

        // Changes happen from day 3 on (after the minimum history and a few days of baseline),
        // at least a day before the end when the trail is long enough.
        let last_change_day = (i64::from(opts.days) - 2).max(3);
        // A new API adopted for good.
        if index != 0 {
            let day = rng.gen_range(3..=last_change_day);
            let at = start + day * MINUTES_PER_DAY + rng.gen_range(0..MINUTES_PER_DAY);
            if at < end {
                let rate = rng.gen_range(0.5..1.5);
                mix.adopted = Some((at, rate));
                labels.add(
                    "new_api_adopted",
                    BehaviourClass::AllowedChange,
                    &REALISTIC_APIS[PUT_COMPLIANCE_ITEMS],
                    None,
                    at,
                    end,
                    format!("SSM State Manager association deployed: PutComplianceItems at ~{:.2}/min from then on", rate * multiplier * opts.scale),
                );
            }
        }

        // A step change: a service deployed, an API's rate up 2-3x for good.
        if index != 1 {
            let candidates: Vec<&'static ApiSpec> = [
                "SubmitContainerStateChange",
                "CreateLogStream",
                "CreateTags",
                "UpdateInstanceInformation",
            ]
            .iter()
            .filter_map(|n| CATALOGUE.iter().find(|s| s.name == *n))
            .filter(|s| here(s))
            .collect();
            if let Some(&spec) = candidates.choose(&mut rng) {
                let day = rng.gen_range(3..=last_change_day);
                let at = start + day * MINUTES_PER_DAY + rng.gen_range(0..MINUTES_PER_DAY);
                let factor = rng.gen_range(2.0..3.0);
                if at < end {
                    mix.step = Some((spec, at, factor));
                    labels.add(
                        "step_change",
                        BehaviourClass::AllowedChange,
                        spec,
                        None,
                        at,
                        end,
                        format!("a service deployed: {} at {factor:.2}x for good", spec.name),
                    );
                }
            }
        }

        // Steady growth on one or two machine APIs.
        let growers: Vec<&'static ApiSpec> = CATALOGUE
            .iter()
            .filter(|s| here(s) && !s.read_only && s.rhythm == Rhythm::Flat && s.rate >= 0.5)
            .filter(|s| mix.step.is_none_or(|(st, ..)| !std::ptr::eq(*s, st)))
            .collect();
        let n = rng.gen_range(1..=2usize);
        for spec in growers.choose_multiple(&mut rng, n) {
            let g = rng.gen_range(0.02..0.06);
            mix.growth.push((spec, g));
            trail(
                &mut labels,
                "growth",
                spec,
                None,
                format!("{} grows {:.1}% a day", spec.name, g * 100.0),
            );
        }

        // Throttling storms: a client throttled retries with exponential backoff.
        let stormy: Vec<&'static ApiSpec> = CATALOGUE
            .iter()
            .filter(|s| here(s) && !s.read_only && throttle_error(s).is_some())
            .collect();
        let storms = rng.gen_range(1..=3);
        for _ in 0..storms {
            let Some(&spec) = stormy.choose(&mut rng) else {
                break;
            };
            let Some(error) = throttle_error(spec) else {
                continue;
            };
            let t0 = start + rng.gen_range(MINUTES_PER_DAY..minutes.max(MINUTES_PER_DAY + 1));
            let mut left = (rng.gen_range(30.0..150.0) * multiplier * opts.scale)
                .ceil()
                .max(10.0) as u64;
            let mut rounds = Vec::new();
            let success = rng.gen_range(0.3..0.6);
            for off in STORM_ROUNDS {
                if left == 0 {
                    break;
                }
                let ok = Binomial::new(left, success)
                    .map(|b| b.sample(&mut rng))
                    .unwrap_or(left);
                let ok = if off == STORM_ROUNDS[STORM_ROUNDS.len() - 1] {
                    left
                } else {
                    ok
                };
                rounds.push((t0 + off, left as u32, (left - ok) as u32));
                left -= ok;
            }
            let last = rounds.last().map_or(t0, |r| r.0) + 1;
            if last > end {
                continue;
            }
            let first = rounds.first().map_or(0, |r| r.1);
            let d = format!(
                "a client throttled on {} retries {first} requests with exponential backoff",
                spec.name
            );
            labels.add(
                "throttle_storm",
                BehaviourClass::Background,
                spec,
                Some(error.code),
                t0,
                last,
                d.clone(),
            );
            labels.add(
                "throttle_storm",
                BehaviourClass::Background,
                spec,
                None,
                t0,
                last,
                d,
            );
            mix.storms.push(Storm { api: spec, rounds });
        }
        mixes.push(mix);
    }
    for (i, b) in behaviours.iter_mut().enumerate() {
        b.id = format!("beh-{:04}", i + 1);
    }
    Ok(World {
        tz,
        start,
        minutes,
        holidays,
        mixes,
        day_factor,
        behaviours,
    })
}

/// Builds a role identity of realistic traffic's own (AWS Backup, EventBridge, SSM).
fn service_role(
    account: &str,
    role: &'static str,
    path: &str,
    session: &str,
    service: &'static str,
) -> Identity {
    let salt = hash_str(account, mix64(hash_str(role, 7)));
    Identity {
        invoked_by: Some(service),
        source_ip: service,
        ..assumed_role(account, role, path, session, salt)
    }
}

impl World {
    /// The people's activity at a minute (see [`human_level`]), times the day's factor.
    fn human(&self, minute: Minute) -> f64 {
        let day = ((minute - self.start).div_euclid(MINUTES_PER_DAY)).max(0) as usize;
        human_level(&self.tz, &self.holidays, minute)
            * self.day_factor.get(day).copied().unwrap_or(1.0)
    }

    /// Expected background calls per minute of a catalogue API (without sessions and cron).
    fn rate(&self, mix: &Mix, spec: &ApiSpec, multiplier: f64, minute: Minute) -> f64 {
        self.rate_at_level(mix, spec, multiplier, minute, self.human(minute))
    }

    /// The rate a rate incident multiplies: the catalogue rate (the weekday peak of people and
    /// CI together), with growth and step change.
    fn incident_rate(&self, mix: &Mix, spec: &ApiSpec, multiplier: f64, minute: Minute) -> f64 {
        let mut rate = spec.rate * multiplier;
        for (g, per_day) in &mix.growth {
            if std::ptr::eq(*g, spec) {
                rate *= (1.0 + per_day).powf((minute - self.start) as f64 / MINUTES_PER_DAY as f64);
            }
        }
        if let Some((s, at, factor)) = mix.step {
            if std::ptr::eq(s, spec) && minute >= at {
                rate *= factor;
            }
        }
        rate
    }

    /// [`Self::rate`] with the people's activity at `human` (1: a weekday peak).
    fn rate_at_level(
        &self,
        mix: &Mix,
        spec: &ApiSpec,
        multiplier: f64,
        minute: Minute,
        human: f64,
    ) -> f64 {
        let base = spec.rate * multiplier;
        let mut rate = match spec.rhythm {
            Rhythm::Flat => base,
            Rhythm::Office => {
                let ci = ci_share(spec);
                base * ((1.0 - ci) * human + ci * CI_BACKGROUND_SHARE)
            }
        };
        for (g, per_day) in &mix.growth {
            if std::ptr::eq(*g, spec) {
                rate *= (1.0 + per_day).powf((minute - self.start) as f64 / MINUTES_PER_DAY as f64);
            }
        }
        if let Some((s, at, factor)) = mix.step {
            if std::ptr::eq(s, spec) && minute >= at {
                rate *= factor;
            }
        }
        rate
    }

    /// Simulates account-region `index` with its incidents into `outbox`.
    pub(crate) fn simulate(
        &self,
        index: usize,
        ar: &AccountRegion<'_>,
        multiplier: f64,
        rng: &mut ChaCha8Rng,
        incidents: &mut [ActiveIncident<'_>],
        outbox: &mut Outbox,
    ) -> Result<(), GenerateError> {
        let Some(mix) = self.mixes.get(index) else {
            return Ok(());
        };
        let own = [
            service_role(
                ar.account,
                "AWSBackupDefaultServiceRole",
                "service-role/",
                "AWSBackup-AWSBackupDefaultServiceRole",
                "backup.amazonaws.com",
            ),
            service_role(
                ar.account,
                "ecsEventsRole",
                "",
                "8c2f9a4e1b7d",
                "events.amazonaws.com",
            ),
            service_role(
                ar.account,
                "ssm-maintenance-window-role",
                "",
                "patch-and-inventory",
                "ssm.amazonaws.com",
            ),
        ];
        let identity = |c: Caller| -> Option<&Identity> {
            match c {
                Caller::Catalogue(who) => ar.identity(who),
                Caller::Backup => own.first(),
                Caller::Scheduler => own.get(1),
                Caller::MaintenanceWindow => own.get(2),
            }
        };
        let apis: Vec<&'static ApiSpec> = CATALOGUE
            .iter()
            .filter(|s| logged_in(s, ar.region))
            .collect();
        let gamma: Vec<Option<Gamma<f64>>> = apis
            .iter()
            .map(|s| s.dispersion.and_then(|k| Gamma::new(k, 1.0 / k).ok()))
            .collect();
        let mut pending: BTreeMap<Minute, Vec<Pending>> = BTreeMap::new();
        let ci = Caller::Catalogue(Who::GithubDeploy);
        for s in &mix.sessions {
            for &(api, calls) in &s.calls {
                // the session's calls, spread evenly with jitter over its minutes
                for (i, per) in spread_even(calls, s.minutes.max(1), rng)
                    .into_iter()
                    .enumerate()
                {
                    if per > 0 {
                        pending
                            .entry(s.start + i as i64)
                            .or_default()
                            .push(Pending {
                                api,
                                caller: ci,
                                user_agent: Some(s.user_agent),
                                count: per,
                                throttled: 0,
                            });
                    }
                }
            }
        }
        for storm in &mix.storms {
            let caller = storm
                .api
                .callers
                .first()
                .map_or(ci, |(w, _)| Caller::Catalogue(*w));
            for &(m, calls, throttled) in &storm.rounds {
                pending.entry(m).or_default().push(Pending {
                    api: storm.api,
                    caller,
                    user_agent: None,
                    count: calls,
                    throttled,
                });
            }
        }
        let suppressions: Vec<(&ApiSpec, Minute, Minute)> = incidents
            .iter()
            .filter(|inc| matches!(inc.plan.action, Action::Suppress))
            .map(|inc| (inc.plan.api, inc.plan.start, inc.plan.end))
            .collect();
        let failures: Vec<(&ApiSpec, Minute, Minute, &'static ErrorSpec)> = incidents
            .iter()
            .filter_map(|inc| match inc.plan.action {
                Action::Fail { error } => Some((inc.plan.api, inc.plan.start, inc.plan.end, error)),
                _ => None,
            })
            .collect();

        for minute in self.start..self.start + self.minutes {
            let minute_time = EventTime::of_minute(&format_event_time(minute));
            let mut now: Vec<Pending> = pending.remove(&minute).unwrap_or_default();
            for (i, spec) in apis.iter().enumerate() {
                let mut rate = self.rate(mix, spec, multiplier, minute);
                match spec.rhythm {
                    Rhythm::Flat => {
                        if let Some(Some(g)) = gamma.get(i) {
                            rate *= g.sample(rng);
                        }
                        let count = sample_poisson(rate, rng);
                        if count > 0 {
                            // machines around the clock; people only make the rare writes
                            let who = if spec.rate >= 0.1 {
                                pick_who(spec, Callers::Machines, rng)
                            } else {
                                pick_who(spec, Callers::Any, rng)
                            };
                            now.push(Pending {
                                api: spec,
                                caller: Caller::Catalogue(who),
                                user_agent: None,
                                count,
                                throttled: 0,
                            });
                        }
                    }
                    Rhythm::Office => {
                        let share = ci_share(spec);
                        // the CI role's calls between sessions
                        let count = sample_poisson(
                            spec.rate * multiplier * share * CI_BACKGROUND_SHARE,
                            rng,
                        );
                        if count > 0 {
                            now.push(Pending {
                                api: spec,
                                caller: ci,
                                user_agent: None,
                                count,
                                throttled: 0,
                            });
                        }
                        // people work in sessions of a few calls over a few minutes
                        let people = spec.rate * multiplier * (1.0 - share) * self.human(minute);
                        for _ in 0..sample_poisson(people / HUMAN_SESSION_MEAN, rng) {
                            let who = pick_who(spec, Callers::People, rng);
                            let calls = 1 + geometric(HUMAN_SESSION_MEAN - 1.0, rng);
                            let len = rng.gen_range(1..=8i64);
                            for (k, per) in spread_even(calls, len, rng).into_iter().enumerate() {
                                if per == 0 {
                                    continue;
                                }
                                let p = Pending {
                                    api: spec,
                                    caller: Caller::Catalogue(who),
                                    user_agent: None,
                                    count: per,
                                    throttled: 0,
                                };
                                if k == 0 {
                                    now.push(p);
                                } else {
                                    pending.entry(minute + k as i64).or_default().push(p);
                                }
                            }
                        }
                    }
                }
            }
            if let Some((at, rate)) = mix.adopted {
                if minute >= at {
                    let count = sample_poisson(rate * multiplier, rng);
                    if count > 0 {
                        now.push(Pending {
                            api: &REALISTIC_APIS[PUT_COMPLIANCE_ITEMS],
                            caller: Caller::Catalogue(Who::SsmAgent),
                            user_agent: None,
                            count,
                            throttled: 0,
                        });
                    }
                }
            }
            let of_day = minute.rem_euclid(MINUTES_PER_DAY);
            if let Some((at, calls)) = mix.nightly {
                let n = (calls * multiplier * rng.gen_range(0.97..1.03)).round() as u32;
                if of_day == at && n > 0 {
                    now.push(Pending {
                        api: &REALISTIC_APIS[CREATE_SNAPSHOT],
                        caller: Caller::Backup,
                        user_agent: None,
                        count: n,
                        throttled: 0,
                    });
                }
                if of_day == at + 3 && n > 0 {
                    now.push(Pending {
                        api: &REALISTIC_APIS[DELETE_SNAPSHOT],
                        caller: Caller::Backup,
                        user_agent: None,
                        count: n,
                        throttled: 0,
                    });
                }
            }
            if let Some(calls) = mix.hourly {
                if minute.rem_euclid(60) == 0 {
                    let n = (calls * multiplier).round().max(1.0) as u32;
                    now.push(Pending {
                        api: &REALISTIC_APIS[SEND_COMMAND],
                        caller: Caller::MaintenanceWindow,
                        user_agent: None,
                        count: n,
                        throttled: 0,
                    });
                }
            }
            if let Some((offset, calls)) = mix.quarter {
                if minute.rem_euclid(15) == offset {
                    let n = (calls * multiplier).round().max(1.0) as u32;
                    now.push(Pending {
                        api: &REALISTIC_APIS[RUN_TASK],
                        caller: Caller::Scheduler,
                        user_agent: None,
                        count: n,
                        throttled: 0,
                    });
                }
            }
            for p in &now {
                let Some(id) = identity(p.caller) else {
                    continue;
                };
                let suppressed = suppressions
                    .iter()
                    .any(|&(a, s, e)| std::ptr::eq(a, p.api) && (s..e).contains(&minute));
                let failure = failures
                    .iter()
                    .find(|&&(a, s, e, _)| std::ptr::eq(a, p.api) && (s..e).contains(&minute))
                    .map(|f| f.3);
                let throttle = throttle_error(p.api);
                for k in 0..p.count {
                    let user_agent = match p.user_agent {
                        Some(ua) => ua,
                        None if matches!(p.caller, Caller::Catalogue(_)) => {
                            pick_user_agent(id, rng)
                        }
                        None => id.source_ip,
                    };
                    let error = if k < p.throttled {
                        throttle
                    } else {
                        sample_error(p.api, throttle, mix.throttle_p, rng)
                    };
                    let plan = CallPlan {
                        api: p.api,
                        identity: id,
                        user_agent,
                        source_ip: id.source_ip,
                        error: failure.or(error),
                    };
                    emit(ar, &plan, minute, minute_time, suppressed, rng, outbox)?;
                }
            }
            for incident in incidents.iter_mut() {
                // Rate incidents scale the API's catalogue rate (its weekday peak, people and CI
                // together), as on the default traffic: they add the same calls on both
                // traffics, whatever local office hours make of the UTC minutes the scenario
                // planned them in.
                let rate = self.incident_rate(mix, incident.plan.api, multiplier, minute);
                incident.inject_over(ar, multiplier, minute, minute_time, outbox, Some(rate))?;
            }
            outbox.flush_through(minute)?;
        }
        outbox.finish()
    }
}

/// Which of an API's catalogue callers may make a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Callers {
    Any,
    /// Not the CI role.
    People,
    /// Not a person (a user or the SSO administrator).
    Machines,
}

/// Draws a caller among the API's catalogue callers of this sort (any of them if none is).
fn pick_who(spec: &ApiSpec, sort: Callers, rng: &mut ChaCha8Rng) -> Who {
    let person = |w: Who| matches!(w, Who::Alice | Who::Bob | Who::SsoAdmin);
    let callers: Vec<(Who, u32)> = spec
        .callers
        .iter()
        .copied()
        .filter(|(w, _)| match sort {
            Callers::Any => true,
            Callers::People => *w != Who::GithubDeploy,
            Callers::Machines => !person(*w),
        })
        .collect();
    let total: u32 = callers.iter().map(|(_, w)| *w).sum();
    if total == 0 {
        return spec.callers.first().map_or(Who::Alice, |c| c.0);
    }
    let mut r = rng.gen_range(0..total);
    for (who, weight) in &callers {
        if r < *weight {
            return *who;
        }
        r -= weight;
    }
    callers.first().map_or(Who::Alice, |c| c.0)
}

/// A geometric count with this mean (failures before a success).
fn geometric(mean: f64, rng: &mut ChaCha8Rng) -> u32 {
    let p = 1.0 / (1.0 + mean.max(0.0));
    let mut n = 0;
    while n < 1000 && !rng.gen_bool(p) {
        n += 1;
    }
    n
}

/// `n` calls over `minutes` minutes, each call in a uniformly drawn minute.
fn spread_even(n: u32, minutes: i64, rng: &mut ChaCha8Rng) -> Vec<u32> {
    let mut out = vec![0u32; minutes.max(1) as usize];
    let len = out.len();
    for _ in 0..n {
        if let Some(slot) = out.get_mut(rng.gen_range(0..len)) {
            *slot += 1;
        }
    }
    out
}

/// The error of one ordinary call: throttled with probability `throttle_p` (throttled APIs),
/// else one of the API's own errors.
fn sample_error(
    spec: &'static ApiSpec,
    throttle: Option<&'static ErrorSpec>,
    throttle_p: f64,
    rng: &mut ChaCha8Rng,
) -> Option<&'static ErrorSpec> {
    let mut u: f64 = rng.gen();
    if let Some(t) = throttle {
        if u < throttle_p {
            return Some(t);
        }
        u -= throttle_p;
    }
    for error in spec.errors {
        if u < error.prob {
            return Some(error);
        }
        u -= error.prob;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_york_changes_offset_on_2024_03_10_at_0700_utc() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let start = crate::generate::DEFAULT_START;
        let changes = offset_changes(&tz, start, start + 10 * MINUTES_PER_DAY);
        // 2024-03-10T02:00 EST = 07:00 UTC
        assert_eq!(changes, vec![1_710_054_000 / 60]);
        let paris: Tz = "Europe/Paris".parse().unwrap();
        assert!(offset_changes(&paris, start, start + 10 * MINUTES_PER_DAY).is_empty());
    }

    #[test]
    fn office_hours_follow_local_time() {
        let tz: Tz = "America/New_York".parse().unwrap();
        // Monday 2024-03-04 14:00 UTC is 09:00 EST; Monday 2024-03-11 14:00 UTC is 10:00 EDT
        let monday = crate::generate::DEFAULT_START;
        let at =
            |day: i64, h: i64| human_level(&tz, &[], monday + day * MINUTES_PER_DAY + h * 60 + 30);
        // 13:30 UTC: 08:30 EST (before the office opens) but 09:30 EDT (open)
        assert!(at(0, 13) < 0.5, "{}", at(0, 13));
        assert!(at(7, 13) > 0.8, "{}", at(7, 13));
        // weekends and holidays are at weekend level
        assert!(at(5, 17) < 0.15);
        let holiday = NaiveDate::from_ymd_opt(2024, 3, 6).unwrap();
        assert!(human_level(&tz, &[holiday], monday + 2 * MINUTES_PER_DAY + 17 * 60) < 0.15);
        assert!(human_level(&tz, &[], monday + 2 * MINUTES_PER_DAY + 17 * 60) > 0.6);
    }
}
