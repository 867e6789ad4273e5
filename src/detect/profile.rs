//! The detector's settings, read from a TOML profile under `models/`. `models/default.toml` is
//! compiled into the binary; a user profile may give any subset of it and is validated here, so
//! a bad setting is refused with a sentence that says which one and why.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::series::{Categories, EventCategory};

/// The profile compiled into the binary.
pub const DEFAULT_PROFILE_TOML: &str = include_str!("../../models/default.toml");

/// Errors reading or validating a profile.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The profile file could not be read.
    #[error("cannot read profile {path}: {error}")]
    Read {
        /// The profile's path.
        path: String,
        /// The I/O error (in the message, said once).
        error: std::io::Error,
    },
    /// The TOML is malformed or has an unknown or mistyped setting.
    #[error("invalid profile {origin}: {message}")]
    Parse {
        /// Where the profile came from.
        origin: String,
        /// What the TOML parser said.
        message: String,
    },
    /// A setting is out of its range.
    #[error("invalid profile setting {setting}: {reason}")]
    Invalid {
        /// The setting, e.g. `detect.windows_minutes`.
        setting: &'static str,
        /// Why it is refused.
        reason: String,
    },
}

/// How the baseline is learned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineSettings {
    /// Minutes of history the baseline covers (AWS: 10,080).
    pub window_minutes: i64,
    /// Minutes of history an account/region needs before any Insight.
    pub min_history_minutes: i64,
    /// Weight of the neighbouring hours of the day in the time-of-day rate.
    pub neighbour_hour_weight: f64,
    /// Pseudo-calls pulling each hour-of-day rate towards the series' overall rate.
    pub hour_prior_calls: f64,
    /// Prior calls per baseline window (so a never-seen API has a small, non-zero rate).
    pub prior_calls: f64,
    /// Pseudo-calls pulling a weekday or weekend hour towards the same hour on any day.
    pub day_type_prior_calls: f64,
    /// IANA time zone in which hours of the day and weekends are learned (`UTC` by default):
    /// office hours keep their local time across daylight-saving changes.
    pub timezone: chrono_tz::Tz,
    /// Dates (in `timezone`, ascending) learned and expected as weekend days.
    pub holidays: Vec<Holiday>,
}

/// A date, as days since 1970-01-01; written `"YYYY-MM-DD"` in a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Holiday(pub i64);

impl Serialize for Holiday {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let date = chrono::DateTime::from_timestamp(self.0.saturating_mul(86_400), 0)
            .map(|d| d.date_naive().format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        serializer.serialize_str(&date)
    }
}

impl<'de> Deserialize<'de> for Holiday {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let date = chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d").map_err(|e| {
            serde::de::Error::custom(format!("holiday {text:?} is not a YYYY-MM-DD date: {e}"))
        })?;
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)
            .ok_or_else(|| serde::de::Error::custom("no epoch date"))?;
        Ok(Holiday((date - epoch).num_days()))
    }
}

/// How unusual minutes are found and grouped into episodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectSettings {
    /// Expected false Insights per 1,000 series-days on normal traffic.
    pub false_insights_per_1000_series_days: f64,
    /// Sliding windows tested, in minutes, each in 1..=120.
    pub windows_minutes: Vec<u32>,
    /// Minimum calls in the firing window for a rise.
    pub min_calls: u64,
    /// Minimum expected calls in a window for a fall to be tested.
    pub fall_min_expected: f64,
    /// Minimum days of the window on which the hour had calls for a fall to be tested.
    pub fall_min_days: u32,
    /// A fall is a drop to at most this fraction of the expected count ("to near zero").
    pub fall_max_fraction: f64,
    /// A window's count is tested only when it is more than this many standard deviations of
    /// its count model from the expected count (a cheap screen before the exact tail; it never
    /// decides alone).
    pub screen_sd: f64,
    /// Level at which an open episode's window still counts as unusual.
    pub continue_p: f64,
    /// Minutes back within bounds before an episode ends.
    pub cooldown_minutes: i64,
    /// Longest episode before it is closed.
    pub max_episode_minutes: i64,
    /// Fraction of expected account/region traffic under which the trail counts as silent.
    pub silence_ratio: f64,
    /// A window whose crossing rate under the count model is below this is a burst the model
    /// does not explain; each hour's largest burst per window scale is remembered.
    pub burst_p: f64,
    /// Hours with such bursts a series needs in its baseline window before its own burst tail
    /// may overrule the count model (one burst is not a habit).
    pub burst_min_hours: u32,
    /// A principal's bursts that started Insights join its habit only once its unreported
    /// bursts span this many days: an established bursting identity's larger runs are learned
    /// after they are reported, an intruder's (no unreported burst) never. 0: never.
    pub habit_min_days: u32,
    /// Quantile of the posterior of a burst tail's decay (a habit's index) at which the bursts
    /// must be heavier than the count model's own tail before that tail is used, and at which
    /// it is then used (0.95: the conservative upper bound; 0.5, the median, reaches far further
    /// from a young habit).
    pub burst_confidence: f64,
    /// A principal's habit also reads how far the bursts of all its account's principals reach
    /// (at its own frequency of bursting hours): a habit of a few bursts cannot tell how far a
    /// principal's runs go, and its account's automation can. False: its own bursts only.
    pub habit_pool: bool,
    /// An error-rate rise during a rise of its API's call rate, at most this many times as
    /// steep (observed over expected), is the calls' echo, not an Insight.
    pub echo_ratio: f64,
    /// An error-rate rise of a write API is an Insight only when the share of the API's calls
    /// that failed with its code rose too (binomial test at the same level): errors in
    /// proportion to a burst of calls are not. False judges error counts alone.
    pub error_share: bool,
    /// Error codes that are throttling (the service pushing back on a caller's rate): a rise of
    /// such errors, or of calls whose throttled ones make up a quarter of the rise (a client's
    /// retries), is an Insight only when it is sustained, not for a short retry storm.
    pub throttling_codes: Vec<String>,
    /// Expected false Insights per account and day: where an account has so many series that
    /// the per-series budget would exceed it, its series are tested at a lower level. 0: off.
    pub false_insights_per_account_day: f64,
    /// An episode open this long is a level shift (a service deployed, an API adopted for
    /// good): it ends, and the series' baseline restarts from the episode's start with its
    /// real counts, so the new level is normal from then on.
    pub level_shift_minutes: i64,
    /// A rise of a series that had no call in its baseline, ended, and a rise again within this
    /// many minutes of its End: an API adopted at a sparse rate, one change (the second rise is
    /// no Start; the first's minutes become the new normal). 0: off.
    pub adoption_minutes: i64,
    /// A rise is sustained (judged by the count model alone, not by burst habits) only when it
    /// is still unusual without its busiest disjoint stretches of these lengths (minutes): two
    /// automation runs may land in one hour, and a sustained rise spreads over the window.
    pub sustained_without_minutes: Vec<u32>,
    /// A sustained rise is judged by the count model alone only when the callers other than
    /// the window's top principal rose too; one principal's runs (a CI role's third apply in an
    /// hour) are held against its habit like any burst. False: every sustained rise.
    pub sustained_needs_others: bool,
    /// The longest stretch (minutes) that counts as one burst: an apply, a pipeline run. A
    /// burst's principal is the top caller of its last this many minutes; a window no longer
    /// than this is never a sustained rise; a retry storm is judged without its busiest such
    /// stretch.
    pub burst_minutes: i64,
    /// Calls whose throttling errors make up at least this share of the rise (observed minus
    /// expected) are a client's retries: a retry storm, not a rise of its own.
    pub retry_share: f64,
    /// Throttling that lasts holds each of the last `storm_hold_stretches` burst-length
    /// stretches of the window at this share of the busiest one or more; a storm whose backoff
    /// rounds die down does not.
    pub storm_hold_share: f64,
    /// How many burst-length stretches back throttling must hold to last.
    pub storm_hold_stretches: u32,
    /// An account/region's silence (a delivery gap) is tested in a window only when at least
    /// this many records are expected in it: fewer missing records say nothing.
    pub silence_min_expected: f64,
}

/// Bounded attribution counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttributionSettings {
    /// Values kept per attribute per counter.
    pub capacity: usize,
}

/// APIs whose single call is an Insight when the series never called them in its baseline
/// window (turning off logging or detection, deleting trails...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensitiveSettings {
    /// `eventSource:eventName` of each sensitive write API.
    pub apis: Vec<String>,
}

impl SensitiveSettings {
    /// Whether the API `event_source:event_name` is listed.
    pub fn contains(&self, event_source: &str, event_name: &str) -> bool {
        self.apis.iter().any(|api| {
            api.split_once(':')
                .is_some_and(|(s, n)| s == event_source && n == event_name)
        })
    }
}

impl Default for SensitiveSettings {
    fn default() -> Self {
        SensitiveSettings {
            apis: DEFAULT_SENSITIVE_APIS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

/// `[principals]`: per-principal series (a trailsight extension; AWS Insights has none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrincipalSettings {
    /// Count each principal's write calls, every API together, per account/region.
    pub write_rates: bool,
    /// Count each principal's read-only management calls, every API together, per
    /// account/region (reconnaissance bursts).
    pub read_rates: bool,
    /// Most per-principal series a store may hold: calls of principals past it are counted in
    /// their APIs' series only (the run says how many), so memory stays bounded whatever the
    /// number of identities an account has or an attacker makes up.
    pub max_series: u64,
    /// Minutes of account/region history before a principal's series may have an Insight (at
    /// least `baseline.min_history_minutes`).
    pub min_history_minutes: i64,
}

impl Default for PrincipalSettings {
    fn default() -> Self {
        PrincipalSettings {
            write_rates: false,
            read_rates: false,
            max_series: 20_000,
            min_history_minutes: 4320,
        }
    }
}

/// The built-in list of sensitive APIs (equal to `[sensitive] apis` in `models/default.toml`).
pub const DEFAULT_SENSITIVE_APIS: &[&str] = &[
    "cloudtrail.amazonaws.com:StopLogging",
    "cloudtrail.amazonaws.com:DeleteTrail",
    "cloudtrail.amazonaws.com:PutEventSelectors",
    "cloudtrail.amazonaws.com:PutInsightSelectors",
    "guardduty.amazonaws.com:DeleteDetector",
    "guardduty.amazonaws.com:DisassociateFromMasterAccount",
    "securityhub.amazonaws.com:DisableSecurityHub",
    "config.amazonaws.com:StopConfigurationRecorder",
    "config.amazonaws.com:DeleteConfigurationRecorder",
    "config.amazonaws.com:DeleteDeliveryChannel",
    "access-analyzer.amazonaws.com:DeleteAnalyzer",
    "macie2.amazonaws.com:DisableMacie",
    "inspector2.amazonaws.com:Disable",
    "detective.amazonaws.com:DeleteGraph",
    "organizations.amazonaws.com:LeaveOrganization",
    "ec2.amazonaws.com:DeleteFlowLogs",
    "kms.amazonaws.com:DisableKey",
    "iam.amazonaws.com:DeleteAccountPasswordPolicy",
    "iam.amazonaws.com:UpdateAccountPasswordPolicy",
    "s3.amazonaws.com:DeleteBucketPolicy",
];

/// Event-time bookkeeping of the input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// Minutes a record may lag behind the newest event time before its minute is final.
    pub allowed_lateness_minutes: i64,
    /// Minutes of event time within which duplicate eventIDs are recognised exactly.
    pub dedup_window_minutes: i64,
    /// Days of event time, before the exact window, within which duplicates are still
    /// recognised, by one Bloom filter per day (0: not recognised, counted again).
    pub dedup_days: i64,
    /// False-positive rate of a day filter's first stage: a record first seen behind the exact
    /// window is taken for a duplicate with probability below twice this.
    pub dedup_false_positive: f64,
    /// Most series (API call rates and error rates, per account and region) a store may hold:
    /// memory grows with them (see docs/bad-input.md, "Many series"); a run that would go past
    /// it stops with an error that says so, before its state is written.
    pub max_series: u64,
    /// The event categories whose calls are counted: management events (AWS's default, and
    /// the only kind Insights analysed before November 2025), data events, or both. A record
    /// of another category counts only towards its account/region's heartbeat.
    pub event_categories: Vec<EventCategory>,
}

/// A detector profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Profile {
    /// `[baseline]`
    pub baseline: BaselineSettings,
    /// `[detect]`
    pub detect: DetectSettings,
    /// `[attribution]`
    pub attribution: AttributionSettings,
    /// `[ingest]`
    pub ingest: IngestSettings,
    /// `[sensitive]`
    pub sensitive: SensitiveSettings,
    /// `[principals]`
    pub principals: PrincipalSettings,
}

impl Default for BaselineSettings {
    fn default() -> Self {
        BaselineSettings {
            window_minutes: 10080,
            min_history_minutes: 1440,
            neighbour_hour_weight: 0.0,
            hour_prior_calls: 1.0,
            prior_calls: 0.5,
            day_type_prior_calls: 1.0,
            timezone: chrono_tz::Tz::UTC,
            holidays: Vec::new(),
        }
    }
}

impl Default for DetectSettings {
    fn default() -> Self {
        DetectSettings {
            false_insights_per_1000_series_days: 0.25,
            windows_minutes: vec![1, 5, 15, 60],
            min_calls: 3,
            fall_min_expected: 20.0,
            fall_min_days: 3,
            fall_max_fraction: 0.1,
            screen_sd: 2.5,
            continue_p: 0.001,
            cooldown_minutes: 15,
            max_episode_minutes: 1440,
            silence_ratio: 0.2,
            burst_p: 1e-3,
            burst_min_hours: 2,
            habit_min_days: 2,
            habit_pool: true,
            sustained_needs_others: true,
            burst_confidence: 0.95,
            level_shift_minutes: 240,
            adoption_minutes: 1440,
            sustained_without_minutes: vec![15, 5],
            echo_ratio: 2.0,
            error_share: true,
            throttling_codes: [
                "ThrottlingException",
                "Throttling",
                "ThrottledException",
                "RequestLimitExceeded",
                "Client.RequestLimitExceeded",
                "TooManyRequestsException",
                "RequestThrottled",
                "RequestThrottledException",
                "SlowDown",
                "ProvisionedThroughputExceededException",
            ]
            .map(String::from)
            .to_vec(),
            false_insights_per_account_day: 0.1,
            burst_minutes: 15,
            retry_share: 0.25,
            storm_hold_share: 0.25,
            storm_hold_stretches: 3,
            silence_min_expected: 5.0,
        }
    }
}

impl Default for AttributionSettings {
    fn default() -> Self {
        AttributionSettings { capacity: 16 }
    }
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            allowed_lateness_minutes: 15,
            dedup_window_minutes: 1440,
            dedup_days: 35,
            dedup_false_positive: 1e-6,
            max_series: 500_000,
            event_categories: vec![EventCategory::Management],
        }
    }
}

impl Default for Profile {
    /// The built-in profile; equal to `models/default.toml` (a test checks it).
    fn default() -> Self {
        Profile {
            baseline: BaselineSettings::default(),
            detect: DetectSettings::default(),
            attribution: AttributionSettings::default(),
            ingest: IngestSettings::default(),
            sensitive: SensitiveSettings::default(),
            principals: PrincipalSettings::default(),
        }
    }
}

impl Profile {
    /// Parses and validates a profile from TOML text.
    pub fn from_toml(text: &str, origin: &str) -> Result<Profile, ProfileError> {
        let profile: Profile = toml::from_str(text).map_err(|e| ProfileError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        profile.validate()?;
        Ok(profile)
    }

    /// Reads, parses and validates a profile file.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|error| ProfileError::Read {
            path: path.display().to_string(),
            error,
        })?;
        Profile::from_toml(&text, &path.display().to_string())
    }

    /// The built-in default profile (parsed from `models/default.toml`).
    pub fn builtin() -> Profile {
        Profile::from_toml(DEFAULT_PROFILE_TOML, "models/default.toml").unwrap_or_default()
    }

    /// The per-test significance level: the false-alarm budget spread over every test of every
    /// minute of a day (Bonferroni over windows and both directions).
    /// See [`super::Sensitivity::of`].
    pub fn p_threshold(&self) -> f64 {
        super::Sensitivity::of(self).level()
    }

    /// Checks every setting's range.
    pub fn validate(&self) -> Result<(), ProfileError> {
        fn bad(setting: &'static str, reason: &str) -> Result<(), ProfileError> {
            Err(ProfileError::Invalid {
                setting,
                reason: reason.to_string(),
            })
        }
        let b = &self.baseline;
        let d = &self.detect;
        if b.window_minutes < 60 || b.window_minutes % 60 != 0 || b.window_minutes > 60 * 24 * 90 {
            return bad(
                "baseline.window_minutes",
                "must be a whole number of hours between 60 and 129600 (90 days)",
            );
        }
        if b.min_history_minutes < 0 {
            return bad("baseline.min_history_minutes", "must be >= 0");
        }
        if !(0.0..=1.0).contains(&b.neighbour_hour_weight) {
            return bad("baseline.neighbour_hour_weight", "must be in [0, 1]");
        }
        if !(b.hour_prior_calls.is_finite() && b.hour_prior_calls > 0.0) {
            return bad("baseline.hour_prior_calls", "must be > 0");
        }
        if !(b.prior_calls.is_finite() && b.prior_calls > 0.0) {
            return bad("baseline.prior_calls", "must be > 0");
        }
        let budget = d.false_insights_per_1000_series_days;
        if !(budget.is_finite() && budget > 0.0 && budget <= 1000.0) {
            return bad(
                "detect.false_insights_per_1000_series_days",
                "must be in (0, 1000]",
            );
        }
        if d.windows_minutes.is_empty()
            || d.windows_minutes.len() > 8
            || d.windows_minutes.iter().any(|w| !(1..=120).contains(w))
        {
            return bad(
                "detect.windows_minutes",
                "must list one to eight windows, each between 1 and 120 minutes",
            );
        }
        if !(d.screen_sd >= 0.0 && d.screen_sd <= 10.0) {
            return bad("detect.screen_sd", "must be between 0 and 10");
        }
        if !(d.continue_p > 0.0 && d.continue_p < 0.5) {
            return bad("detect.continue_p", "must be in (0, 0.5)");
        }
        if d.continue_p < self.p_threshold() {
            return bad(
                "detect.continue_p",
                "must be at least the per-test level implied by the false-alarm budget",
            );
        }
        if d.cooldown_minutes < 1 {
            return bad("detect.cooldown_minutes", "must be >= 1");
        }
        if d.max_episode_minutes < d.cooldown_minutes {
            return bad("detect.max_episode_minutes", "must be >= cooldown_minutes");
        }
        if !(d.fall_min_expected.is_finite() && d.fall_min_expected >= 1.0) {
            return bad("detect.fall_min_expected", "must be >= 1");
        }
        if !(0.0..1.0).contains(&d.fall_max_fraction) {
            return bad("detect.fall_max_fraction", "must be in [0, 1)");
        }
        if !(b.day_type_prior_calls.is_finite() && b.day_type_prior_calls > 0.0) {
            return bad("baseline.day_type_prior_calls", "must be > 0");
        }
        if !(0.0..1.0).contains(&d.silence_ratio) {
            return bad("detect.silence_ratio", "must be in [0, 1)");
        }
        if !(d.burst_p > 0.0 && d.burst_p < 0.5) {
            return bad("detect.burst_p", "must be in (0, 0.5)");
        }
        if b.holidays.windows(2).any(|w| w[0] >= w[1]) {
            return bad(
                "baseline.holidays",
                "must list dates in ascending order, each once",
            );
        }
        if !(d.echo_ratio.is_finite() && d.echo_ratio >= 0.0) {
            return bad(
                "detect.echo_ratio",
                "must be >= 0 (0: no echo is recognised)",
            );
        }
        let per_account = d.false_insights_per_account_day;
        if !(per_account.is_finite() && per_account >= 0.0) {
            return bad(
                "detect.false_insights_per_account_day",
                "must be >= 0 (0: off)",
            );
        }
        if !(d.burst_confidence > 0.0 && d.burst_confidence < 1.0) {
            return bad("detect.burst_confidence", "must be in (0, 1)");
        }
        if d.sustained_without_minutes.is_empty()
            || d.sustained_without_minutes.len() > 4
            || d.sustained_without_minutes
                .iter()
                .any(|&m| !(1..=60).contains(&m))
        {
            return bad(
                "detect.sustained_without_minutes",
                "must list 1 to 4 stretches of 1 to 60 minutes (e.g. [15]: only the busiest quarter hour is left out)",
            );
        }
        if !(1..=120).contains(&d.burst_minutes) {
            return bad("detect.burst_minutes", "must be between 1 and 120");
        }
        if !(d.retry_share > 0.0 && d.retry_share <= 1.0) {
            return bad("detect.retry_share", "must be in (0, 1]");
        }
        if !(d.storm_hold_share > 0.0 && d.storm_hold_share <= 1.0) {
            return bad("detect.storm_hold_share", "must be in (0, 1]");
        }
        if !(1..=8).contains(&d.storm_hold_stretches) {
            return bad("detect.storm_hold_stretches", "must be between 1 and 8");
        }
        if !(d.silence_min_expected.is_finite() && d.silence_min_expected >= 0.0) {
            return bad("detect.silence_min_expected", "must be >= 0");
        }
        if d.adoption_minutes < 0 {
            return bad("detect.adoption_minutes", "must be >= 0 (0: off)");
        }
        if d.level_shift_minutes < d.cooldown_minutes
            || d.level_shift_minutes > d.max_episode_minutes
        {
            return bad(
                "detect.level_shift_minutes",
                "must be between cooldown_minutes and max_episode_minutes",
            );
        }
        if let Some(api) = self.sensitive.apis.iter().find(|a| {
            a.split_once(':')
                .is_none_or(|(s, n)| s.is_empty() || n.is_empty())
        }) {
            return Err(ProfileError::Invalid {
                setting: "sensitive.apis",
                reason: format!("{api:?} is not eventSource:eventName"),
            });
        }
        if !(1..=1024).contains(&self.attribution.capacity) {
            return bad("attribution.capacity", "must be between 1 and 1024");
        }
        if self.ingest.allowed_lateness_minutes < 0 || self.ingest.dedup_window_minutes < 0 {
            return bad("ingest", "minutes must be >= 0");
        }
        if self.ingest.dedup_days < 0 {
            return bad(
                "ingest.dedup_days",
                "must be >= 0 (0: no filter behind the window)",
            );
        }
        if self.ingest.event_categories.is_empty() {
            return bad(
                "ingest.event_categories",
                "must list \"management\", \"data\" or both",
            );
        }
        if self.ingest.max_series == 0 || self.ingest.max_series > u64::from(u32::MAX) {
            return bad("ingest.max_series", "must be between 1 and 4294967295");
        }
        if !(0..=60 * 24 * 90).contains(&self.principals.min_history_minutes) {
            return bad(
                "principals.min_history_minutes",
                "must be between 0 and 129600 (90 days)",
            );
        }
        let fp = self.ingest.dedup_false_positive;
        if !(fp > 0.0 && fp < 0.01) {
            return bad(
                "ingest.dedup_false_positive",
                "must be in (0, 0.01): the share of first-seen late records taken for duplicates",
            );
        }
        Ok(())
    }

    /// Minutes of account/region history before the series `key` may have an Insight.
    pub fn min_history(&self, key: &crate::series::SeriesKey) -> i64 {
        match key.scope {
            crate::series::Scope::Api => self.baseline.min_history_minutes,
            _ => self
                .baseline
                .min_history_minutes
                .max(self.principals.min_history_minutes),
        }
    }

    /// Whether `key` is the call rate of an API listed in `[sensitive] apis`.
    pub fn is_sensitive(&self, key: &crate::series::SeriesKey) -> bool {
        key.insight_type == crate::series::InsightType::ApiCallRateInsight
            && key.scope == crate::series::Scope::Api
            && self.sensitive.contains(&key.event_source, &key.event_name)
    }

    /// Whether `code` is a throttling error (`detect.throttling_codes`).
    pub fn is_throttling(&self, code: &str) -> bool {
        self.detect.throttling_codes.iter().any(|c| c == code)
    }

    /// The event categories whose calls are counted.
    pub fn categories(&self) -> Categories {
        Categories::of(&self.ingest.event_categories)
    }

    /// The series kinds counted, as bits over [`crate::series::kind::KINDS`]: AWS's (call and
    /// error rates per API) always, the per-principal ones when `[principals]` turns them on.
    pub fn kinds(&self) -> u8 {
        use crate::series::kind::{API_KINDS, PRINCIPAL_READS, PRINCIPAL_WRITES};
        let p = &self.principals;
        API_KINDS
            | if p.write_rates { PRINCIPAL_WRITES } else { 0 }
            | if p.read_rates { PRINCIPAL_READS } else { 0 }
    }

    /// The largest window tested.
    pub fn max_window(&self) -> i64 {
        self.detect
            .windows_minutes
            .iter()
            .copied()
            .max()
            .unwrap_or(1) as i64
    }
}

impl crate::store::record::StateRecord for Profile {
    const KIND: &'static str = "profile";
    const VERSION: u16 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_toml_equals_the_coded_defaults() {
        let parsed = Profile::from_toml(DEFAULT_PROFILE_TOML, "default").unwrap();
        assert_eq!(parsed, Profile::default());
    }

    #[test]
    fn the_security_profile_turns_every_kind_on_and_keeps_the_rest() {
        let security = Profile::from_toml(
            include_str!("../../models/security.toml"),
            "models/security.toml",
        )
        .unwrap();
        use crate::series::kind::{API_KINDS, PRINCIPAL_READS, PRINCIPAL_WRITES};
        assert_eq!(
            security.kinds(),
            API_KINDS | PRINCIPAL_WRITES | PRINCIPAL_READS
        );
        assert!(security.categories().contains(EventCategory::Data));
        assert!(security.categories().contains(EventCategory::Management));
        let builtin = Profile::builtin();
        assert_eq!(builtin.kinds(), API_KINDS, "the default stays AWS's");
        assert_eq!(security.detect, builtin.detect);
        assert_eq!(security.baseline, builtin.baseline);
        assert_eq!(security.sensitive, builtin.sensitive);
        // A principal's series waits for its own warm-up; an API's does not.
        let key = |scope| crate::series::SeriesKey {
            insight_type: crate::series::InsightType::ApiCallRateInsight,
            account: "1".into(),
            region: "r".into(),
            event_source: "*".into(),
            event_name: "*".into(),
            error_code: None,
            category: EventCategory::Management,
            scope,
        };
        assert_eq!(security.min_history(&key(crate::series::Scope::Api)), 1440);
        assert_eq!(
            security.min_history(&key(crate::series::Scope::PrincipalWrites("p".into()))),
            4320
        );
        let bad = Profile::from_toml("[principals]\nmin_history_minutes = -1\n", "test");
        assert!(bad.is_err_and(|e| e.to_string().contains("principals.min_history_minutes")));
    }

    #[test]
    fn partial_profile_keeps_defaults_and_unknown_keys_are_refused() {
        let p = Profile::from_toml("[detect]\nmin_calls = 7\n", "t").unwrap();
        assert_eq!(p.detect.min_calls, 7);
        assert_eq!(p.baseline.window_minutes, 10080);
        assert!(Profile::from_toml("[detect]\nmin_cals = 7\n", "t").is_err());
        assert!(Profile::from_toml("[detect]\nwindows_minutes = [0]\n", "t").is_err());
        assert!(Profile::from_toml("[detect]\nwindows_minutes = [121]\n", "t").is_err());
        assert!(Profile::from_toml("[detect]\nscreen_sd = -1.0\n", "t").is_err());
        assert!(Profile::from_toml("[detect]\nscreen_sd = nan\n", "t").is_err());
        let screen = Profile::from_toml("[detect]\nscreen_sd = 3.0\n", "t").unwrap();
        assert_eq!(screen.detect.screen_sd, 3.0);
    }

    #[test]
    fn threshold_spreads_the_budget_over_every_test() {
        let p = Profile::default();
        // 0.25 / (1000 * 1440 * 2 * 4) by hand.
        assert!((p.p_threshold() - 2.170_138_888_9e-8).abs() < 1e-16);
    }
}
