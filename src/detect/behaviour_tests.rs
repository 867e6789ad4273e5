//! One series at a time through the detector, on the behaviours real trails have and the
//! generator's Poisson traffic does not: automation bursts of heavy-tailed size, cron jobs, an
//! API adopted for good, a step change, office hours in a local time zone across a
//! daylight-saving change, a sensitive API's first call. Each test fails on the detector before
//! the change that handles its behaviour (bursts, level shifts, time zone, sensitive APIs).

use std::borrow::Cow;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson};

use super::baseline::Coverage;
use super::{Finding, Profile, SeriesContext, SeriesDetector};
use crate::aggregate::topk::Attributions;
use crate::insight::{Direction, InsightState};
use crate::series::{InsightType, Minute, SeriesKey};

/// Monday 2024-03-04 00:00 UTC, in minutes since the epoch (the US changes to summer time on
/// Sunday 2024-03-10).
const MONDAY: Minute = 1_709_510_400 / 60;
const DAY: Minute = 1440;

fn key(source: &str, name: &str) -> SeriesKey {
    SeriesKey {
        insight_type: InsightType::ApiCallRateInsight,
        account: Arc::from("111122223333"),
        region: Arc::from("us-east-1"),
        event_source: Arc::from(source),
        event_name: Arc::from(name),
        error_code: None,
        category: crate::series::EventCategory::Management,
        scope: crate::series::Scope::Api,
    }
}

/// Runs one series over `counts` (minute i is MONDAY + i; the account/region's history starts
/// at MONDAY) and returns the Starts.
fn starts(profile: &Profile, key: &SeriesKey, counts: &[u64]) -> Vec<Finding> {
    starts_and_detector(profile, key, counts).0
}

fn starts_and_detector(
    profile: &Profile,
    key: &SeriesKey,
    counts: &[u64],
) -> (Vec<Finding>, SeriesDetector) {
    let never = |_: Minute, _: i64| false;
    let ctx = SeriesContext {
        key,
        profile,
        sensitivity: crate::detect::Sensitivity::of(profile),
        coverage: Coverage {
            first_minute: MONDAY,
        },
        silent: &never,
        sensitive: profile.is_sensitive(key),
        announced_start: None,
        habits: &crate::detect::habits::Habits::default(),
        calls_rose: &[],
        api_calls: None,
        accepts: &|_| false,
    };
    let mut detector = SeriesDetector::new(profile);
    let attributions = Attributions::default();
    let mut findings = Vec::new();
    // Advanced an hour at a time, as the engine does after each batch of files.
    for chunk_start in (0..counts.len()).step_by(60) {
        let end = (chunk_start + 60).min(counts.len());
        let cells = (chunk_start..end).filter(|&i| counts[i] > 0).map(|i| {
            (
                MONDAY + i as Minute,
                counts[i],
                Cow::Borrowed(&attributions),
            )
        });
        detector.advance(MONDAY + end as Minute, cells, &ctx, &mut findings);
    }
    findings.retain(|f| f.summary.state == InsightState::Start);
    (findings, detector)
}

fn poisson(rng: &mut ChaCha8Rng, rate: f64) -> u64 {
    if rate <= 0.0 {
        return 0;
    }
    Poisson::new(rate).map_or(0, |p| p.sample(rng) as u64)
}

/// Background calls at `rate` a minute with `per_day` automation runs a day at random minutes,
/// each of Pareto(shape 1.2, minimum 5) calls spread over 1 to 3 minutes.
fn automation(seed: u64, days: usize, rate: f64, per_day: usize) -> Vec<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut counts: Vec<u64> = (0..days * 1440).map(|_| poisson(&mut rng, rate)).collect();
    for day in 0..days {
        for _ in 0..per_day {
            let at = day * 1440 + rng.gen_range(0..1440 - 3);
            let u: f64 = rng.gen_range(f64::EPSILON..1.0);
            let size = (5.0 * u.powf(-1.0 / 1.2)).min(5_000.0) as u64;
            let spread = rng.gen_range(1..=3usize);
            for k in 0..spread {
                counts[at + k] += size / spread as u64 + u64::from(k == 0) * (size % spread as u64);
            }
        }
    }
    counts
}

#[test]
fn automation_bursts_of_heavy_tailed_size_are_a_habit_not_insights() {
    // The review's case: two applies a day of Pareto(1.2) sizes over 0.05 calls a minute. Count
    // models alone gave ~330 false Starts per 1,000 series-days.
    let profile = Profile::default();
    let k = key("ec2.amazonaws.com", "CreateTags");
    let mut total = 0;
    let mut seen = Vec::new();
    for seed in 0..10 {
        let counts = automation(seed, 10, 0.05, 2);
        let (found, detector) = starts_and_detector(&profile, &k, &counts);
        if !found.is_empty() {
            let bursts: Vec<String> = detector
                .bursts()
                .describe(0)
                .iter()
                .map(|(h, e, i)| {
                    format!(
                        "d{}h{}:{e:.0}{}",
                        (h - MONDAY / 60) / 24,
                        (h - MONDAY / 60) % 24,
                        if *i { "*" } else { "" }
                    )
                })
                .collect();
            seen.push(format!(
                "seed {seed} bursts at scale 1 at the end: {}",
                bursts.join(" ")
            ));
        }
        for f in found {
            total += 1;
            let e = &f.summary.explanation;
            let at = (f.summary.start - MONDAY) as usize;
            seen.push(format!(
                "seed {seed} day {} {:02}:{:02} w{} {} vs {:.2} p {:.1e}; day calls {:?}",
                at / 1440,
                at % 1440 / 60,
                at % 60,
                e.window_minutes,
                e.observed,
                e.expected,
                e.p_value,
                counts[at / 1440 * 1440..at]
                    .iter()
                    .enumerate()
                    .filter(|(_, &c)| c > 3)
                    .map(|(i, c)| (i / 60, *c))
                    .collect::<Vec<_>>()
            ));
        }
    }
    // The same series judged by the count model alone (no window is ever a burst).
    let mut model_only = Profile::default();
    model_only.detect.burst_p = 1e-300;
    let before: usize = (0..10)
        .map(|seed| starts(&model_only, &k, &automation(seed, 10, 0.05, 2)).len())
        .sum();
    eprintln!(
        "automation: {total} false Starts over 100 series-days (count model alone: {before})"
    );
    // 100 series-days. What is left is mostly the first day after the minimum history (little
    // to learn from yet) and runs far beyond the series' own history (a Pareto tail has them).
    assert!(
        total <= 10 && before >= 2 * total,
        "{total} false Starts over 100 series-days (count model alone: {before}):\n{}",
        seen.join("\n")
    );
}

#[test]
fn a_large_burst_on_a_series_that_never_bursts_is_still_found() {
    let profile = Profile::default();
    let k = key("ec2.amazonaws.com", "CreateTags");
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut counts: Vec<u64> = (0..9 * 1440).map(|_| poisson(&mut rng, 0.05)).collect();
    let at = 8 * 1440 + 3 * 60;
    counts[at] += 40;
    let found = starts(&profile, &k, &counts);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].summary.start, MONDAY + at as Minute);
}

#[test]
fn a_nightly_cron_burst_is_learned_on_the_first_night() {
    // A backup job at 02:00 UTC making 300 snapshots in one minute, every night, and an hourly
    // job at :00 with 30 calls, over a quiet background.
    let profile = Profile::default();
    let k = key("ec2.amazonaws.com", "CreateSnapshot");
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut counts: Vec<u64> = (0..10 * 1440).map(|_| poisson(&mut rng, 0.02)).collect();
    for day in 0..10 {
        counts[day * 1440 + 120] += 280 + rng.gen_range(0..40);
        for hour in 0..24 {
            counts[day * 1440 + hour * 60] += 25 + rng.gen_range(0..10);
        }
    }
    let found = starts(&profile, &k, &counts);
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn an_api_adopted_for_good_is_one_episode() {
    // Never called for four days, then about once a minute from Friday 10:00 on.
    let profile = Profile::default();
    let k = key("lambda.amazonaws.com", "UpdateFunctionConfiguration");
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let from = 4 * 1440 + 600;
    let counts: Vec<u64> = (0..10 * 1440)
        .map(|i| if i < from { 0 } else { poisson(&mut rng, 1.0) })
        .collect();
    let found = starts(&profile, &k, &counts);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].summary.explanation.direction, Direction::Rise);
}

#[test]
fn a_rate_doubled_for_good_is_one_episode() {
    let profile = Profile::default();
    let k = key("ecs.amazonaws.com", "RegisterTaskDefinition");
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let from = 4 * 1440 + 13 * 60;
    let counts: Vec<u64> = (0..10 * 1440)
        .map(|i| poisson(&mut rng, if i < from { 2.0 } else { 5.0 }))
        .collect();
    let found = starts(&profile, &k, &counts);
    assert!(found.len() <= 1, "{found:?}");
}

/// Office hours 09:00-17:00 in New York on weekdays (4 calls a minute), 0.1 a minute otherwise,
/// two weeks from Monday 2024-03-04: summer time starts on the first Sunday, and office hours
/// move an hour earlier in UTC.
fn office_hours_new_york(seed: u64) -> Vec<u64> {
    let tz: chrono_tz::Tz = chrono_tz::America::New_York;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..14 * 1440)
        .map(|i| {
            let minute = MONDAY + i as Minute;
            let (hod, day_type) = super::baseline::local_hour(minute.div_euclid(60), tz);
            let busy = day_type == 0 && (9..17).contains(&hod);
            poisson(&mut rng, if busy { 4.0 } else { 0.1 })
        })
        .collect()
}

#[test]
fn office_hours_in_the_profiles_time_zone_survive_daylight_saving() {
    let k = key("ssm.amazonaws.com", "PutParameter");
    let utc = Profile::default();
    let mut local = Profile::default();
    local.baseline.timezone = chrono_tz::America::New_York;
    let (mut in_utc, mut in_local) = (0, 0);
    for seed in 0..3 {
        let counts = office_hours_new_york(seed);
        in_utc += starts(&utc, &k, &counts).len();
        in_local += starts(&local, &k, &counts).len();
    }
    // Learned in UTC, the hour that office hours moved into rises every weekday of the week
    // after the change (until the baseline catches up).
    assert!(in_utc >= 3, "learned in UTC: {in_utc} Starts");
    assert_eq!(in_local, 0, "learned in New York time: {in_local} Starts");
}

#[test]
fn a_sensitive_apis_single_call_is_an_insight_and_the_list_is_configurable() {
    let mut counts = vec![0u64; 3 * 1440];
    let at = 2 * 1440 + 200;
    counts[at] = 1;
    let profile = Profile::default();
    let stop = key("cloudtrail.amazonaws.com", "StopLogging");
    let found = starts(&profile, &stop, &counts);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].summary.start, MONDAY + at as Minute);
    assert_eq!(found[0].detected_at, MONDAY + at as Minute);
    assert_eq!(found[0].summary.explanation.model, "sensitive-api");
    // An API not on the list: one call is never an Insight (min_calls).
    let other = key("ec2.amazonaws.com", "CreateTags");
    assert!(starts(&profile, &other, &counts).is_empty());
    // The list is the profile's.
    let mut without = Profile::default();
    without.sensitive.apis.clear();
    assert!(starts(&without, &stop, &counts).is_empty());
    // An API called in its baseline window (a routine caller) is not flagged by one call.
    let mut routine = counts.clone();
    routine[100] = 1;
    assert!(starts(&profile, &stop, &routine).is_empty());
}

#[test]
fn a_holiday_in_the_calendar_is_a_weekend_day_not_a_fall() {
    // Office hours (09:00-17:00 UTC, 5 calls a minute) on weekdays only; Wednesday 2024-03-13
    // is a holiday at weekend level.
    let k = key("ssm.amazonaws.com", "SendCommand");
    let holiday = 9;
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let counts: Vec<u64> = (0..11 * 1440)
        .map(|i| {
            let (day, hour) = (i / 1440, i % 1440 / 60);
            let workday = day % 7 < 5 && day != holiday;
            poisson(
                &mut rng,
                if workday && (9..17).contains(&hour) {
                    5.0
                } else {
                    0.0
                },
            )
        })
        .collect();
    let plain = Profile::default();
    let falls = starts(&plain, &k, &counts);
    assert!(
        falls
            .iter()
            .any(|f| f.summary.explanation.direction == Direction::Fall),
        "without the calendar the holiday is a fall: {falls:?}"
    );
    let mut with_calendar = Profile::default();
    with_calendar.baseline.holidays =
        vec![super::profile::Holiday((MONDAY / DAY) + holiday as i64)];
    let found = starts(&with_calendar, &k, &counts);
    assert!(found.is_empty(), "{found:?}");
    // The calendar reads from a profile as dates.
    let parsed = Profile::from_toml("[baseline]\nholidays = [\"2024-03-13\"]\n", "t").unwrap();
    assert_eq!(parsed.baseline.holidays, with_calendar.baseline.holidays);
    assert!(Profile::from_toml("[baseline]\nholidays = [\"2024-13-01\"]\n", "t").is_err());
}

#[test]
fn continuous_mode_announces_a_sensitive_apis_single_call_from_its_pending_minute() {
    use super::Detector;
    use crate::aggregate::{Cell, Pending, Registry};
    // An account/region with two days of history; one StopLogging call lands in a minute that
    // is not final yet. `watch` announces rises from pending minutes: this one must not wait for
    // the minute to become final, nor for min_calls.
    let region_first = MONDAY;
    let at = MONDAY + 2 * DAY + 200;
    for (name, announced) in [("StopLogging", 1), ("CreateTrail", 0)] {
        let k = key("cloudtrail.amazonaws.com", name);
        let registry = Registry::restore(
            vec![k.clone()],
            vec![(k.account.clone(), k.region.clone(), region_first)],
        );
        let mut detector = Detector::new(Profile::default(), Vec::new(), Vec::new(), None);
        let mut pending = Pending::default();
        pending.series.entry(0).or_default().insert(
            at,
            Cell {
                count: 1,
                attributions: Attributions::default(),
            },
        );
        let found = detector.announce_rises(&pending, [0u32], &registry);
        assert_eq!(found.len(), announced, "{name}: {found:?}");
        if let Some(f) = found.first() {
            assert_eq!(f.summary.start, at);
            assert_eq!(f.summary.explanation.model, "sensitive-api");
        }
    }
}

/// Runs one series whose minute i holds `counts[i]` calls by `who[i]` and returns the Starts.
fn starts_by(
    profile: &Profile,
    key: &SeriesKey,
    counts: &[u64],
    who: &[&Arc<str>],
) -> Vec<Finding> {
    let never = |_: Minute, _: i64| false;
    let ctx = SeriesContext {
        key,
        profile,
        sensitivity: crate::detect::Sensitivity::of(profile),
        coverage: Coverage {
            first_minute: MONDAY,
        },
        silent: &never,
        sensitive: false,
        announced_start: None,
        habits: &crate::detect::habits::Habits::default(),
        calls_rose: &[],
        api_calls: None,
        accepts: &|_| false,
    };
    let mut detector = SeriesDetector::new(profile);
    let mut findings = Vec::new();
    let cells: Vec<(Minute, u64, Attributions)> = (0..counts.len())
        .filter(|&i| counts[i] > 0)
        .map(|i| {
            let mut a = Attributions::default();
            a.by_attribute[crate::series::Attribute::UserIdentityArn.index()].add(
                who[i],
                counts[i],
                profile.attribution.capacity,
            );
            (MONDAY + i as Minute, counts[i], a)
        })
        .collect();
    for chunk_start in (0..counts.len()).step_by(60) {
        let end = MONDAY + ((chunk_start + 60).min(counts.len())) as Minute;
        let from = MONDAY + chunk_start as Minute;
        let chunk = cells
            .iter()
            .filter(|(m, _, _)| *m >= from && *m < end)
            .map(|(m, c, a)| (*m, *c, Cow::Borrowed(a)));
        detector.advance(end, chunk, &ctx, &mut findings);
    }
    findings.retain(|f| f.summary.state == InsightState::Start);
    findings
}

#[test]
fn a_strangers_burst_is_not_hidden_by_the_usual_callers_bursts() {
    // RunInstances in a region a CI role deploys to: its applies (3 to 60 calls in 3 minutes,
    // every 3 hours) make the series over-dispersed; a person calls now and then.
    let profile = Profile::builtin();
    let k = key("ec2.amazonaws.com", "RunInstances");
    let ci: Arc<str> = Arc::from("arn:aws:sts::111122223333:assumed-role/Deploy/run-7");
    let alice: Arc<str> = Arc::from("arn:aws:iam::111122223333:user/alice");
    let intruder: Arc<str> = Arc::from("arn:aws:iam::111122223333:user/svc-backup-legacy");
    let sizes = [5u64, 12, 40, 8, 25, 60, 3, 15];
    let days = 9;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut counts = vec![0u64; (days * DAY) as usize];
    let mut who: Vec<&Arc<str>> = vec![&alice; counts.len()];
    for c in counts.iter_mut() {
        *c = poisson(&mut rng, 0.03);
    }
    for (n, start) in (0..counts.len()).step_by(180).enumerate() {
        let size = sizes[n % sizes.len()];
        for m in start + 37..start + 40 {
            counts[m] += size / 3 + 1;
            who[m] = &ci;
        }
    }
    // Day 8, 21:00: 2-3 calls a minute for 15 minutes.
    let at = (8 * DAY + 21 * 60) as usize;
    for (m, c) in counts.iter_mut().enumerate().skip(at).take(15) {
        *c = 2 + (m % 2) as u64;
    }
    let (mut stranger_who, mut ci_who) = (who.clone(), who);
    for m in at..at + 15 {
        stranger_who[m] = &intruder;
        ci_who[m] = &ci;
    }
    let window = MONDAY + at as Minute..MONDAY + at as Minute + 30;
    let inside = |f: &Vec<Finding>| {
        f.iter()
            .filter(|s| {
                window.contains(&s.detected_at)
                    && s.summary.explanation.direction == Direction::Rise
            })
            .count()
    };
    let stranger = starts_by(&profile, &k, &counts, &stranger_who);
    let usual = starts_by(&profile, &k, &counts, &ci_who);
    eprintln!(
        "stranger: {}, usual caller: {}",
        inside(&stranger),
        inside(&usual)
    );
    assert_eq!(inside(&stranger), 1, "{stranger:?}");
    assert_eq!(inside(&usual), 0, "{usual:?}");
}

#[test]
fn a_retry_storm_is_not_an_insight_but_throttling_that_lasts_is() {
    // A throttling error of a busy API: 1 a minute in the background over 8 days.
    let profile = Profile::builtin();
    let mut k = key("ssm.amazonaws.com", "PutParameter");
    k.insight_type = InsightType::ApiErrorRateInsight;
    k.error_code = Some(Arc::from("ThrottlingException"));
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let background: Vec<u64> = (0..8 * DAY).map(|_| poisson(&mut rng, 0.01)).collect();
    let at = (7 * DAY + 14 * 60) as usize;
    let in_hour = |f: &Vec<Finding>| {
        f.iter()
            .filter(|s| s.detected_at >= MONDAY + at as Minute)
            .count()
    };
    // A storm: 60 throttled at once, then retries at +1, +2, +4, +8, +16, +32 minutes, each
    // round half the one before.
    let mut storm = background.clone();
    let mut left = 60u64;
    for off in [0usize, 1, 2, 4, 8, 16, 32] {
        storm[at + off] += left;
        left /= 2;
    }
    // Throttling that lasts: 3 a minute for 90 minutes.
    let mut lasting = background.clone();
    for c in lasting.iter_mut().skip(at).take(90) {
        *c += 3;
    }
    let mut off = profile.clone();
    off.detect.throttling_codes.clear();
    assert_eq!(in_hour(&starts(&profile, &k, &storm)), 0);
    assert_eq!(
        in_hour(&starts(&off, &k, &storm)),
        1,
        "without the rule the storm is a Start"
    );
    let found = starts(&profile, &k, &lasting);
    assert_eq!(in_hour(&found), 1, "{found:?}");
    let delay = found[0].detected_at - (MONDAY + at as Minute);
    assert!((30..=60).contains(&delay), "found after {delay} minutes");
}

#[test]
fn two_applies_in_one_hour_are_two_bursts_not_a_sustained_rise() {
    // RunInstances: a CI role's daily apply (10 to 40 calls in 3 minutes at a random time) over
    // a person's 0.03 calls a minute. Day 8: two applies of 60 calls, at 21:00 and 21:35.
    let k = key("ec2.amazonaws.com", "RunInstances");
    let ci: Arc<str> = Arc::from("arn:aws:sts::111122223333:assumed-role/Deploy/run-7");
    let alice: Arc<str> = Arc::from("arn:aws:iam::111122223333:user/alice");
    let days = 9;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut counts = vec![0u64; (days * DAY) as usize];
    let mut who: Vec<&Arc<str>> = vec![&alice; counts.len()];
    for c in counts.iter_mut() {
        *c = poisson(&mut rng, 0.03);
    }
    let mut applies: Vec<(usize, u64)> = (0..8)
        .map(|day| {
            (
                (day * DAY) as usize + rng.gen_range(0..1400),
                rng.gen_range(10..40),
            )
        })
        .collect();
    let at = (8 * DAY + 21 * 60) as usize;
    applies.extend([(at, 60), (at + 35, 60)]);
    for (first, size) in applies {
        for m in first..first + 3 {
            counts[m] += size / 3;
            who[m] = &ci;
        }
    }
    let window = MONDAY + at as Minute..MONDAY + at as Minute + 60;
    let inside = |f: &Vec<Finding>| f.iter().filter(|s| window.contains(&s.detected_at)).count();
    let profile = Profile::builtin();
    let mut one_stretch = profile.clone();
    one_stretch.detect.sustained_without_minutes = vec![15];
    // (and every sustained rise judged by the count model, as before this session's rule that
    // one principal's runs are its habit: that rule alone would also hold these two applies)
    one_stretch.detect.sustained_needs_others = false;
    let found = starts_by(&profile, &k, &counts, &who);
    let before = starts_by(&one_stretch, &k, &counts, &who);
    eprintln!(
        "two applies: {} Starts (without the busiest 15 minutes only: {})",
        inside(&found),
        inside(&before)
    );
    assert_eq!(inside(&found), 0, "{found:?}");
    assert_eq!(inside(&before), 1, "{before:?}");
    // A rise that lasts is still one: 4 calls a minute for the whole hour.
    let mut lasting = counts.clone();
    for c in lasting.iter_mut().skip(at).take(60) {
        *c = 4;
    }
    let lasted = starts_by(&profile, &k, &lasting, &who);
    assert_eq!(inside(&lasted), 1, "{lasted:?}");
}

#[test]
fn an_api_adopted_at_a_sparse_rate_is_one_episode() {
    // Never called for four days; from Friday 10:00 on, a job calls it 4 times in two minutes
    // every 2 hours (what the realistic generator's sparse PutComplianceItems adoption does).
    let k = key("ssm.amazonaws.com", "PutComplianceItems");
    let from = 4 * 1440 + 600;
    let counts: Vec<u64> = (0..10 * 1440)
        .map(|i| {
            let since = i as i64 - from;
            u64::from(since >= 0 && since % 120 < 2) * 2
        })
        .collect();
    let profile = Profile::builtin();
    let mut off = profile.clone();
    off.detect.adoption_minutes = 0;
    let found = starts(&profile, &k, &counts);
    let before = starts(&off, &k, &counts);
    eprintln!(
        "sparse adoption: {} Starts ({} without the adoption rule)",
        found.len(),
        before.len()
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(before.len() >= 2, "{before:?}");
}
