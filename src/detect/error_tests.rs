//! Error-rate series in the whole detector, where call-rate series advance first: errors in
//! proportion to bursts of their API's calls, a rising share of failing calls, a principal's
//! retry storms (which must not make its other errors a habit), and a storm whose first round
//! is less than half throttled.

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::aggregate::Cell;
use crate::series::Attribute;

/// One account/region with history from minute 0 (Thursday 1970-01-01), its series and the
/// cells not yet handed to the detector.
pub(super) struct Trail {
    registry: Registry,
    region: u32,
    pending: Pending,
}

impl Trail {
    pub(super) fn new() -> Trail {
        let mut registry = Registry::default();
        let region = registry.region_id(&Arc::from("111122223333"), &Arc::from("us-east-1"), 0);
        Trail {
            registry,
            region,
            pending: Pending::default(),
        }
    }

    pub(super) fn series(&mut self, source: &str, name: &str, error: Option<&str>) -> u32 {
        self.registry.series_id(SeriesKey {
            insight_type: if error.is_some() {
                InsightType::ApiErrorRateInsight
            } else {
                InsightType::ApiCallRateInsight
            },
            account: Arc::from("111122223333"),
            region: Arc::from("us-east-1"),
            event_source: Arc::from(source),
            event_name: Arc::from(name),
            error_code: error.map(Arc::from),
            category: crate::series::EventCategory::Management,
            scope: crate::series::Scope::Api,
        })
    }

    /// The call-rate series of a write API and its error-rate series for `code`.
    fn api(&mut self, source: &str, name: &str, code: &str) -> (u32, u32) {
        (
            self.series(source, name, None),
            self.series(source, name, Some(code)),
        )
    }

    /// A client's retry storm on `api` from minute `at`: `first` requests, then rounds of
    /// exponential backoff (+1, +2, +4, ... +32 minutes), each retrying the `throttled_tenths`
    /// tenths of the round before that were throttled.
    #[allow(clippy::too_many_arguments)]
    fn storm(
        &mut self,
        api: (u32, u32),
        at: Minute,
        first: u64,
        throttled_tenths: u64,
        who: &Arc<str>,
        code: &Arc<str>,
    ) {
        let mut left = first;
        for off in [0, 1, 2, 4, 8, 16, 32] {
            let failed = left * throttled_tenths / 10;
            self.calls(api, at + off, left, failed, who, code);
            left = failed;
        }
    }

    /// `n` counts of series `id` in minute `m` by `who`, attributed to error `code` if given
    /// (the call series' attribution of a failed call).
    pub(super) fn add(
        &mut self,
        id: u32,
        m: Minute,
        n: u64,
        who: &Arc<str>,
        code: Option<&Arc<str>>,
    ) {
        if n == 0 {
            return;
        }
        let cell = self
            .pending
            .series
            .entry(id)
            .or_default()
            .entry(m)
            .or_insert_with(|| Cell {
                count: 0,
                attributions: Default::default(),
            });
        cell.count += n;
        cell.attributions.by_attribute[Attribute::UserIdentityArn.index()].add(who, n, 16);
        if let Some(code) = code {
            cell.attributions.by_attribute[Attribute::ErrorCode.index()].add(code, n, 16);
        }
        *self
            .pending
            .heartbeat
            .entry(self.region)
            .or_default()
            .entry(m)
            .or_insert(0) += n;
    }

    /// `calls` calls of a write API in minute `m`, `failed` of them with `code`: the call series
    /// counts them all, the error series the failed ones.
    #[allow(clippy::too_many_arguments)]
    fn calls(
        &mut self,
        (calls_id, errors_id): (u32, u32),
        m: Minute,
        calls: u64,
        failed: u64,
        who: &Arc<str>,
        code: &Arc<str>,
    ) {
        self.add(calls_id, m, calls - failed, who, None);
        self.add(calls_id, m, failed, who, Some(code));
        self.add(errors_id, m, failed, who, None);
    }

    /// Every day's cells handed over at the day's end, as `score` does with a day of files.
    pub(super) fn run(&self, profile: Profile, days: i64) -> Vec<Finding> {
        let mut pending = self.pending.clone();
        // A steady background of other records: no minute of the account/region is silent.
        for m in 0..days * MINUTES_PER_DAY {
            *pending
                .heartbeat
                .entry(self.region)
                .or_default()
                .entry(m)
                .or_insert(0) += 5;
        }
        let mut detector = Detector::new(profile, Vec::new(), Vec::new(), None);
        let mut findings = Vec::new();
        for day in 1..=days {
            let taken = pending.take_before(day * MINUTES_PER_DAY);
            findings.extend(detector.advance(day * MINUTES_PER_DAY, taken, &self.registry));
        }
        findings
    }
}

fn starts_of(findings: &[Finding], id: u32, during: std::ops::Range<Minute>) -> usize {
    findings
        .iter()
        .filter(|f| {
            f.series_id == id
                && f.summary.state == InsightState::Start
                && during.contains(&f.summary.start)
        })
        .count()
}

/// UpdateStack called once a minute by a service, and two applies a day of 100-200 calls a minute
/// for three minutes by a CI role, of which one call in a few thousand fails with
/// ValidationError: three in one minute of an apply on day 6. On day 8 from 14:00,
/// for 30 minutes, the service's calls fail: the rate of calls is unchanged, the share of
/// failures is not.
fn applies_with_failures() -> (Trail, u32, Minute) {
    let mut trail = Trail::new();
    let (calls, errors) = trail.api(
        "cloudformation.amazonaws.com",
        "UpdateStack",
        "ValidationError",
    );
    let ci: Arc<str> = Arc::from("arn:aws:sts::111122223333:assumed-role/Deploy/run-1");
    let service: Arc<str> = Arc::from("arn:aws:iam::111122223333:role/stack-reconciler");
    let code: Arc<str> = Arc::from("ValidationError");
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let days = 9;
    let incident = 8 * MINUTES_PER_DAY + 14 * 60;
    for m in 0..days * MINUTES_PER_DAY {
        let failed = u64::from((incident..incident + 30).contains(&m));
        trail.calls((calls, errors), m, 1, failed, &service, &code);
    }
    // One of a day's applies sometimes has a failed call; on day 6, three in one minute.
    let failures = [0, 1, 0, 1, 0, 0, 3, 1, 0];
    for (day, &failed) in failures.iter().enumerate() {
        for apply in 0..2 {
            let at = day as Minute * MINUTES_PER_DAY + rng.gen_range(0..MINUTES_PER_DAY - 3);
            let per_minute: u64 = rng.gen_range(100..200);
            for k in 0..3 {
                let failed = if apply == 0 && k == 1 { failed } else { 0 };
                trail.calls((calls, errors), at + k, per_minute, failed, &ci, &code);
            }
        }
    }
    (trail, errors, incident)
}

#[test]
fn errors_in_proportion_to_bursts_of_calls_are_not_insights_but_a_rising_share_is() {
    let (trail, errors, incident) = applies_with_failures();
    let before_incident = MINUTES_PER_DAY..incident;
    // The applies' calls are Insights of their own here (nothing taught the detector the CI
    // role's habit), and errors during them would be their echoes: the echo rule is off, so
    // that the share alone is what is tested.
    let mut profile = Profile::builtin();
    profile.detect.echo_ratio = 0.0;
    let found = trail.run(profile.clone(), 9);
    let mut counts_alone = profile;
    counts_alone.detect.error_share = false;
    let without = trail.run(counts_alone, 9);
    eprintln!(
        "error Starts before the incident: {} (error counts alone: {})",
        starts_of(&found, errors, before_incident.clone()),
        starts_of(&without, errors, before_incident.clone())
    );
    assert_eq!(starts_of(&found, errors, before_incident.clone()), 0);
    assert!(starts_of(&without, errors, before_incident) >= 1);
    assert_eq!(
        starts_of(&found, errors, incident - 5..incident + 30),
        1,
        "{found:?}"
    );
}

/// An instance role whose PutParameter calls are throttled in retry storms three times a day,
/// and which calls PutSecretValue twice a minute. On day 8 from 14:00, for 15 minutes, its
/// PutSecretValue calls fail with AccessDenied (a changed policy, or its credentials used
/// elsewhere): its storms must not have taught the detector that its errors come in bursts.
#[test]
fn a_principals_retry_storms_do_not_hide_its_access_denied_spike() {
    let mut trail = Trail::new();
    let parameter = trail.api("ssm.amazonaws.com", "PutParameter", "ThrottlingException");
    let secret = trail.api(
        "secretsmanager.amazonaws.com",
        "PutSecretValue",
        "AccessDeniedException",
    );
    let app: Arc<str> = Arc::from("arn:aws:sts::111122223333:assumed-role/app-instance/i-0abc");
    let throttled: Arc<str> = Arc::from("ThrottlingException");
    let denied: Arc<str> = Arc::from("AccessDeniedException");
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let days = 9;
    let incident = 8 * MINUTES_PER_DAY + 14 * 60;
    for m in 0..days * MINUTES_PER_DAY {
        let failed = if (incident..incident + 15).contains(&m) {
            2
        } else {
            0
        };
        trail.calls(secret, m, 2, failed, &app, &denied);
        if rng.gen_bool(0.05) {
            trail.calls(parameter, m, 1, 0, &app, &throttled);
        }
    }
    for day in 0..days {
        for _ in 0..3 {
            let at = day * MINUTES_PER_DAY + rng.gen_range(0..MINUTES_PER_DAY - 40);
            let first = rng.gen_range(60..150);
            trail.storm(parameter, at, first, 6, &app, &throttled);
        }
    }
    let found = trail.run(Profile::builtin(), days);
    let storms =
        starts_of(&found, parameter.1, 0..incident) + starts_of(&found, parameter.0, 0..incident);
    assert_eq!(storms, 0, "retry storms are not Insights: {found:?}");
    assert_eq!(
        starts_of(&found, secret.1, incident - 5..incident + 15),
        1,
        "{found:?}"
    );
}

/// A retry storm on a busy API whose first round is only 40 % throttled: the rise over the
/// usual calls is what is throttled, so it is a storm, not a burst.
#[test]
fn a_storm_whose_calls_are_less_than_half_throttled_is_still_a_storm() {
    let mut trail = Trail::new();
    let tags = trail.api(
        "ec2.amazonaws.com",
        "CreateTags",
        "Client.RequestLimitExceeded",
    );
    let who: Arc<str> = Arc::from("arn:aws:sts::111122223333:assumed-role/tagger/i-0def");
    let code: Arc<str> = Arc::from("Client.RequestLimitExceeded");
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let days = 8;
    for m in 0..days * MINUTES_PER_DAY {
        let n = u64::from(rng.gen_bool(0.3));
        trail.calls(tags, m, n, 0, &who, &code);
    }
    // Day 7, 02:00: 80 requests, 40 % throttled in each round of the backoff.
    let at = 7 * MINUTES_PER_DAY + 120;
    trail.storm(tags, at, 80, 4, &who, &code);
    let found = trail.run(Profile::builtin(), days);
    assert_eq!(starts_of(&found, tags.0, at - 5..at + 60), 0, "{found:?}");
    assert_eq!(starts_of(&found, tags.1, at - 5..at + 60), 0, "{found:?}");
    // Without the throttling rule the same storm is an Insight.
    let mut off = Profile::builtin();
    off.detect.throttling_codes.clear();
    let without = trail.run(off, days);
    assert!(
        starts_of(&without, tags.0, at - 5..at + 60) >= 1,
        "{without:?}"
    );
}

#[test]
fn an_error_series_finds_its_api_s_call_series_whichever_comes_first() {
    let mut trail = Trail::new();
    // A read API's errors (no call series ever), then a write API's errors before its calls.
    let read = trail.series("s3.amazonaws.com", "GetObject", Some("AccessDenied"));
    let errors = trail.series(
        "ssm.amazonaws.com",
        "PutParameter",
        Some("ParameterAlreadyExists"),
    );
    let mut index = ApiIndex::default();
    index.grow(&trail.registry);
    assert_eq!(index.calls_of[errors as usize], None);
    let calls = trail.series("ssm.amazonaws.com", "PutParameter", None);
    let throttled = trail.series(
        "ssm.amazonaws.com",
        "PutParameter",
        Some("ThrottlingException"),
    );
    index.grow(&trail.registry);
    assert_eq!(index.calls_of[errors as usize], Some(calls));
    assert_eq!(index.calls_of[throttled as usize], Some(calls));
    assert_eq!(index.calls_of[read as usize], None);
    assert_eq!(index.calls_of[calls as usize], None);
    assert!(index.has_errors[calls as usize]);
    assert_eq!(index.unresolved, vec![read]);
}
