//! `trailsight generate`: writes a realistic synthetic CloudTrail trail in S3 layout, with
//! injected incidents of named kinds and their labels, fully determined by the seed and options.
//! It feeds the demo, the end-to-end tests and the throughput benchmarks.
//!
//! # What is written
//! - `DIR/AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/<account>_CloudTrail_<region>_<YYYYMMDDTHHmmZ>_<16 chars>.json.gz`:
//!   gzip `{"Records":[...]}` files, one or more per account-region and 5-minute delivery slot
//!   that has records (the time in the name is the delivery time). Records are shuffled within
//!   a file; most are delivered 2-10 minutes after `eventTime`, ~1% 20-120 minutes late (with an
//!   `addendum` of reason `DELIVERY_DELAY`), ~0.3% a second time in a later file (same `eventID`).
//! - `DIR/labels.json`: what was generated and the incidents injected (empty list without them).
//!
//! Three account-regions (`418295730164` in `us-east-1` and `eu-west-1`, `730514962288` in
//! `us-east-1`), each with a catalogue of ~50 management APIs: machine reads and writes at flat
//! rates, human/CI writes following business hours and weekdays, rare writes, random errors and
//! short throttling bursts. At scale 1 a 9-day trail holds about 1 million records (~110,000 a
//! day; the rate scales linearly with `scale`).
//!
//! # `labels.json`
//! ```json
//! {
//!   "generator": {"name": "trailsight generate", "version": "0.1.0", "seed": 42, "days": 9,
//!                 "start": "2024-03-04T00:00:00Z", "scale": 1.0, "incidents": true,
//!                 "incidentAfterDays": 8, "accountRegions": [{"account": "418295730164", "region": "us-east-1"}, ...]},
//!   "incidents": [
//!     {"id": "inc-01", "kind": "rare_api_burst", "insightType": "ApiCallRateInsight",
//!      "account": "418295730164", "region": "us-east-1",
//!      "eventSource": "iam.amazonaws.com", "eventName": "CreateAccessKey", "errorCode": null,
//!      "direction": "rise", "start": "2024-03-12T02:10:00Z", "end": "2024-03-12T02:20:00Z",
//!      "description": "..."}
//!   ]
//! }
//! ```
//! `start` is the first minute of injected activity (or of the drop), `end` the minute after the
//! last (exclusive), both RFC 3339 UTC. `insightType` and `errorCode` name the series an Insight
//! should open on (`errorCode` is set exactly for `ApiErrorRateInsight`); `direction` is `rise`
//! or `fall`. Kinds:
//! - `rare_api_burst`: 20-40 calls in ~10 minutes at night of a normally rare IAM write
//!   (`CreateAccessKey` or `CreateUser`) by an identity and user agent never seen before.
//! - `new_api`: 10-20 calls in 5-10 minutes of a write API absent from the background
//!   (`StopLogging`, `PutUserPolicy` or `ModifySnapshotAttribute`).
//! - `sustained_rise`: `RunInstances` or `TerminateInstances` at 3x its rate for 60-90 minutes
//!   in business hours, on a weekday when the incident days include one.
//! - `error_spike`: 15-30 `AccessDenied` per minute for 15 minutes on a read API
//!   (`ListBuckets` or `GetSecretValue`) from one stolen key (error-rate Insight).
//! - `api_drop`: `ecs SubmitTaskStateChange` (flat, ~8/min at scale 1) stops for 45 minutes.
//!
//! `--traffic realistic` replaces the background with one drawn the way real accounts behave
//! (see `realistic.rs` and datasets/README.md) and adds `behaviours` to `labels.json`.
//!
//! The background does not depend on the incidents: with the same seed and options, a trail
//! without incidents holds exactly the same background records (same `eventID`s).

mod catalogue;
mod delivery;
mod incidents;
mod realistic;
mod record;
mod scenarios;
mod traffic;

use std::fs;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::generate::catalogue::{identities, mix64, ACCOUNT_REGIONS};
use crate::generate::delivery::{DeliveryCounts, Outbox};
use crate::generate::incidents::ActiveIncident;
use crate::generate::traffic::AccountRegion;
use crate::series::{format_event_time, InsightType, Minute, MINUTES_PER_DAY};

pub use crate::generate::incidents::INCIDENT_KINDS;
pub use crate::generate::scenarios::SCENARIO_KINDS;

/// 2024-03-04T00:00Z, a Monday: the default first minute of a trail.
pub const DEFAULT_START: Minute = 1_709_510_400 / 60;

/// Options of `trailsight generate`.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Output directory (created if missing).
    pub out: PathBuf,
    /// Days of trail, at least 1.
    pub days: u32,
    /// Seed of every random choice.
    pub seed: u64,
    /// First minute of the trail; must be a UTC midnight. Default [`DEFAULT_START`].
    pub start: Minute,
    /// Multiplies every background rate (default 1.0: about 1 million records in 9 days).
    pub scale: f64,
    /// Whether to inject incidents; without them the background is identical.
    pub incidents: bool,
    /// Incidents start no earlier than this many days after `start` (default 8).
    pub incident_after_days: u32,
    /// Plan the scenario suite ([`SCENARIO_KINDS`], fixed days; needs 9 days from a Monday)
    /// instead of one incident of each of the five [`INCIDENT_KINDS`].
    pub scenarios: bool,
    /// The background traffic: the default model, or `realistic` (automation, cron, local
    /// office hours, changes; see [`Traffic`]).
    pub traffic: Traffic,
    /// IANA time zone of the people's office hours (realistic traffic only).
    pub timezone: String,
    /// Holidays (local dates, realistic traffic only): weekdays at weekend level. Empty: one
    /// weekday is drawn from the seed.
    pub holidays: Vec<chrono::NaiveDate>,
}

/// The background traffic model of `generate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Traffic {
    /// Poisson (or Gamma-mixed Poisson) counts on a smooth UTC office-hours curve.
    #[default]
    Default,
    /// Traffic shaped the way real accounts are: CI/CD and infrastructure-as-code sessions with
    /// heavy-tailed sizes, cron jobs at fixed minutes, office hours in a local time zone across a
    /// daylight-saving change, a holiday, a new API adopted, a step change, growth, throttling
    /// that tracks calls and retry storms; labelled as `behaviours` in `labels.json`.
    Realistic,
}

/// The default time zone of the people in realistic traffic: crosses the US daylight-saving
/// change of 2024-03-10 in a 10-day trail from the default start.
pub const DEFAULT_TIMEZONE: &str = "America/New_York";

impl GenerateOptions {
    /// Options with defaults: start 2024-03-04T00:00Z, scale 1, incidents after day 8.
    pub fn new(out: PathBuf, days: u32, seed: u64) -> Self {
        GenerateOptions {
            out,
            days,
            seed,
            start: DEFAULT_START,
            scale: 1.0,
            incidents: true,
            incident_after_days: 8,
            scenarios: false,
            traffic: Traffic::Default,
            timezone: DEFAULT_TIMEZONE.to_string(),
            holidays: Vec::new(),
        }
    }
}

/// What `generate` wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenerateSummary {
    /// `.json.gz` trail files written.
    pub files: u64,
    /// Distinct records (calls), each counted once however many times it is delivered.
    pub records: u64,
    /// Extra deliveries of records already delivered (same `eventID` in a later file).
    pub duplicates: u64,
    /// Records delivered 20 minutes or more after their `eventTime`.
    pub late_records: u64,
    /// The incidents injected, as in `labels.json`.
    pub incidents: Vec<Incident>,
}

/// The content of `labels.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Labels {
    /// The options used (seed, days, start, scale...), the generator's name and version.
    pub generator: serde_json::Value,
    /// The incidents injected, ordered by start.
    pub incidents: Vec<Incident>,
    /// The normal behaviours of realistic traffic (absent in the default traffic and in older
    /// files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub behaviours: Vec<Behaviour>,
}

/// How an Insight on a behaviour is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BehaviourClass {
    /// A new normal (new API adopted, step change, daylight-saving shift, holiday): one Insight
    /// episode on it is acceptable, more are false.
    AllowedChange,
    /// Normal traffic (bursts, cron, growth, throttling echoes): any Insight on it is false.
    Background,
}

/// One normal behaviour of realistic traffic on one series, and when it happens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Behaviour {
    /// `beh-0001`, ... in order of the list.
    pub id: String,
    /// What it is (`automation_session`, `cron_nightly`, `step_change`...).
    pub kind: String,
    /// `allowed_change` or `background`.
    pub class: BehaviourClass,
    /// The Insight type of the series.
    pub insight_type: InsightType,
    /// `recipientAccountId`.
    pub account: String,
    /// `awsRegion`.
    pub region: String,
    /// `eventSource` of the API.
    pub event_source: String,
    /// `eventName` of the API.
    pub event_name: String,
    /// The error code, exactly for `ApiErrorRateInsight`.
    pub error_code: Option<String>,
    /// First minute, RFC 3339 UTC.
    pub start: String,
    /// The minute after the last (exclusive), RFC 3339 UTC.
    pub end: String,
    /// What happens, for people.
    pub description: String,
}

/// One injected incident: the series that should show an Insight, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Incident {
    /// `inc-01`, `inc-02`... in order of start.
    pub id: String,
    /// One of [`INCIDENT_KINDS`].
    pub kind: String,
    /// The Insight type that should fire.
    pub insight_type: InsightType,
    /// `recipientAccountId` of the incident's calls.
    pub account: String,
    /// `awsRegion` of the incident's calls.
    pub region: String,
    /// `eventSource` of the API.
    pub event_source: String,
    /// `eventName` of the API.
    pub event_name: String,
    /// The error code, exactly for `ApiErrorRateInsight`.
    pub error_code: Option<String>,
    /// `rise` or `fall` (`any` for a window where no Insight is expected).
    pub direction: String,
    /// Whether an Insight is expected in the window (`insight`, the default) or none (`none`:
    /// normal traffic that must not fire, e.g. a noisy API or a delivery gap).
    #[serde(default)]
    pub expect: Expect,
    /// First minute of the unusual activity, RFC 3339 UTC (`2024-03-12T02:10:00Z`).
    pub start: String,
    /// The minute after the last one (exclusive), RFC 3339 UTC.
    pub end: String,
    /// What happened, for people.
    pub description: String,
}

/// What a label expects in its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// An Insight (a Start) on the labelled series, in the window or just before it.
    #[default]
    Insight,
    /// No Insight on the labelled series (`*` fields match any) in the window.
    None,
}

/// Errors of `generate` and `read_labels`.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The options cannot be honoured.
    #[error("invalid generate options: {0}")]
    InvalidOptions(String),
    /// Incidents were asked for but the trail ends before they may start.
    #[error(
        "no room for incidents: the trail has {days} days and incidents start after day {after}"
    )]
    NoRoomForIncidents {
        /// `days` of the options.
        days: u32,
        /// `incident_after_days` of the options.
        after: u32,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The output folder already holds a trail generated with other options: new files would
    /// mix with the old ones, and the mix would score as one archive.
    #[error(
        "{path} already holds a trail generated with other options (AWSLogs/ and labels.json); \
         the new files would mix with it: choose an empty folder or remove {path}/AWSLogs"
    )]
    OtherTrailPresent {
        /// The output folder.
        path: PathBuf,
    },
    /// A record or the labels could not be serialised.
    #[error("cannot serialise: {0}")]
    Serialize(#[source] serde_json::Error),
    /// `labels.json` is not valid.
    #[error("{path}: invalid labels: {source}")]
    Labels {
        /// The labels file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

fn validate(opts: &GenerateOptions) -> Result<(), GenerateError> {
    if opts.days == 0 {
        return Err(GenerateError::InvalidOptions(
            "days must be at least 1".into(),
        ));
    }
    if !(opts.scale.is_finite() && opts.scale >= 0.0) {
        return Err(GenerateError::InvalidOptions(format!(
            "scale must be a finite number >= 0, not {}",
            opts.scale
        )));
    }
    if opts.start.rem_euclid(MINUTES_PER_DAY) != 0 {
        return Err(GenerateError::InvalidOptions(format!(
            "start must be a UTC midnight, not {}",
            format_event_time(opts.start)
        )));
    }
    if opts.traffic == Traffic::Realistic && opts.timezone.parse::<chrono_tz::Tz>().is_err() {
        return Err(GenerateError::InvalidOptions(format!(
            "unknown IANA time zone {:?} (e.g. America/New_York, Europe/Paris)",
            opts.timezone
        )));
    }
    if crate::series::minute_to_datetime(opts.start + i64::from(opts.days) * MINUTES_PER_DAY + 1440)
        .is_none()
    {
        return Err(GenerateError::InvalidOptions(
            "start is out of range".into(),
        ));
    }
    Ok(())
}

fn generator_value(opts: &GenerateOptions) -> serde_json::Value {
    let mut value = serde_json::json!({
        "name": "trailsight generate",
        "version": env!("CARGO_PKG_VERSION"),
        "seed": opts.seed,
        "days": opts.days,
        "start": format_event_time(opts.start),
        "scale": opts.scale,
        "incidents": opts.incidents,
        "incidentAfterDays": opts.incident_after_days,
        "scenarios": opts.scenarios,
        "accountRegions": ACCOUNT_REGIONS
            .iter()
            .map(|(account, region, _)| serde_json::json!({"account": account, "region": region}))
            .collect::<Vec<_>>(),
    });
    // The default traffic's labels stay as they were; realistic traffic adds its options.
    if let (Traffic::Realistic, Some(map)) = (opts.traffic, value.as_object_mut()) {
        map.insert("traffic".into(), "realistic".into());
        map.insert("timezone".into(), opts.timezone.clone().into());
        map.insert(
            "holidays".into(),
            opts.holidays
                .iter()
                .map(|d| serde_json::Value::from(d.to_string()))
                .collect(),
        );
    }
    value
}

/// Writing into a folder that holds a trail is fine only when it is the same trail (the same
/// options rewrite the same bytes); anything else would leave a mix of two trails.
fn refuse_other_trail(opts: &GenerateOptions) -> Result<(), GenerateError> {
    let aws_logs = opts.out.join("AWSLogs");
    let holds_files = match fs::read_dir(&aws_logs) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(source) => {
            return Err(GenerateError::Io {
                path: aws_logs,
                source,
            })
        }
    };
    if !holds_files {
        return Ok(());
    }
    let previous = fs::read(opts.out.join("labels.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|labels| labels.get("generator").cloned());
    if previous == Some(generator_value(opts)) {
        Ok(())
    } else {
        Err(GenerateError::OtherTrailPresent {
            path: opts.out.clone(),
        })
    }
}

/// Generates the trail and `labels.json` into `opts.out`.
pub fn generate(opts: &GenerateOptions) -> Result<GenerateSummary, GenerateError> {
    validate(opts)?;
    let planned = if opts.incidents && opts.scenarios {
        scenarios::plan(opts)?
    } else if opts.incidents {
        incidents::plan(opts)?
    } else {
        Vec::new()
    };
    let world = match opts.traffic {
        Traffic::Default => None,
        Traffic::Realistic => Some(realistic::plan(opts)?),
    };
    refuse_other_trail(opts)?;
    fs::create_dir_all(&opts.out).map_err(|source| GenerateError::Io {
        path: opts.out.clone(),
        source,
    })?;
    let minutes = i64::from(opts.days) * MINUTES_PER_DAY;

    let counts: Vec<DeliveryCounts> = ACCOUNT_REGIONS
        .par_iter()
        .enumerate()
        .map(|(index, (account, region, multiplier))| {
            let ids = identities(account);
            let ar = AccountRegion {
                account,
                region,
                identities: &ids,
            };
            let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
            rng.set_stream(index as u64 + 1);
            let mut active: Vec<ActiveIncident<'_>> = planned
                .iter()
                .filter(|p| p.account_region == index)
                .map(|p| ActiveIncident::new(p, opts.seed))
                .collect();
            let name_seed = mix64(opts.seed ^ mix64(0xF11E ^ index as u64));
            let mut outbox = Outbox::new(&opts.out, account, region, name_seed);
            for p in planned.iter().filter(|p| p.account_region == index) {
                if matches!(p.action, incidents::Action::DelayDelivery) {
                    let (from, to) = p.active_window();
                    outbox.delay_delivery(from, to);
                }
            }
            match &world {
                None => traffic::simulate(
                    &ar,
                    multiplier * opts.scale,
                    opts.start,
                    minutes,
                    &mut rng,
                    &mut active,
                    &mut outbox,
                )?,
                Some(world) => {
                    rng.set_stream(realistic::BACKGROUND_STREAM + index as u64);
                    world.simulate(
                        index,
                        &ar,
                        multiplier * opts.scale,
                        &mut rng,
                        &mut active,
                        &mut outbox,
                    )?
                }
            }
            Ok(outbox.counts)
        })
        .collect::<Result<_, GenerateError>>()?;

    let labels = Labels {
        generator: generator_value(opts),
        incidents: planned.iter().map(|p| p.label.clone()).collect(),
        behaviours: world.map(|w| w.behaviours).unwrap_or_default(),
    };
    let labels_path = opts.out.join("labels.json");
    let text = serde_json::to_string_pretty(&labels).map_err(GenerateError::Serialize)?;
    fs::write(&labels_path, text + "\n").map_err(|source| GenerateError::Io {
        path: labels_path,
        source,
    })?;

    let mut summary = GenerateSummary {
        files: 0,
        records: 0,
        duplicates: 0,
        late_records: 0,
        incidents: labels.incidents,
    };
    for c in counts {
        summary.files += c.files;
        summary.records += c.records;
        summary.duplicates += c.duplicates;
        summary.late_records += c.late_records;
    }
    Ok(summary)
}

/// Reads a `labels.json` written by [`generate`].
pub fn read_labels(path: &Path) -> Result<Labels, GenerateError> {
    let text = fs::read_to_string(path).map_err(|source| GenerateError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| GenerateError::Labels {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests;
