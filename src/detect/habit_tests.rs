//! Principals' habits in the whole detector: a CI role's applies of heavy-tailed size over a
//! dozen APIs (each API sees it only every few days) are its habit once its routine is
//! established, with its larger runs learned after they are reported once; an intruder's bursts,
//! reported each time, never become a habit.

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::error_tests::Trail;
use super::*;

const APIS: [(&str, &str); 12] = [
    ("cloudformation.amazonaws.com", "UpdateStack"),
    ("cloudformation.amazonaws.com", "CreateStack"),
    ("iam.amazonaws.com", "CreateRole"),
    ("iam.amazonaws.com", "PutRolePolicy"),
    ("iam.amazonaws.com", "AttachRolePolicy"),
    ("ec2.amazonaws.com", "AuthorizeSecurityGroupIngress"),
    ("ec2.amazonaws.com", "ModifyInstanceAttribute"),
    ("ecs.amazonaws.com", "RegisterTaskDefinition"),
    ("ecs.amazonaws.com", "UpdateService"),
    ("lambda.amazonaws.com", "UpdateFunctionCode20150331v2"),
    ("s3.amazonaws.com", "PutBucketPolicy"),
    ("ssm.amazonaws.com", "PutParameter"),
];

/// The CI role of these tests (an assumed role: its sessions are one principal).
const CI: &str = "arn:aws:sts::111122223333:assumed-role/Deploy/GitHubActions";

/// A trail with the call-rate series of the twelve APIs, and their ids.
fn twelve_apis() -> (Trail, Vec<u32>) {
    let mut trail = Trail::new();
    let ids = APIS
        .iter()
        .map(|(source, name)| trail.series(source, name, None))
        .collect();
    (trail, ids)
}

/// Ten days of a CI role's applies: three a day at random minutes, each touching one to four of
/// the twelve APIs with a Pareto(1.2)-sized number of calls (1 to 400) spread over 2-5 minutes,
/// and a person's calls now and then on each API. Returns the trail and the series ids.
fn ci_trail(seed: u64) -> (Trail, Vec<u32>) {
    let (mut trail, ids) = twelve_apis();
    let ci: Arc<str> = Arc::from(CI);
    let alice: Arc<str> = Arc::from("arn:aws:iam::111122223333:user/alice");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for day in 0..10 {
        for _ in 0..3 {
            let at = day * MINUTES_PER_DAY + rng.gen_range(0..MINUTES_PER_DAY - 10);
            let apis = rng.gen_range(1..=4);
            for _ in 0..apis {
                let id = ids[rng.gen_range(0..ids.len())];
                let u: f64 = rng.gen_range(f64::EPSILON..1.0);
                let size = (u.powf(-1.0 / 1.2).floor() as u64).clamp(1, 400);
                let minutes = rng.gen_range(2..=5u64);
                for k in 0..minutes {
                    let n = size / minutes + u64::from(k < size % minutes);
                    trail.add(id, at + k as Minute, n, &ci, None);
                }
            }
        }
        for &id in &ids {
            for _ in 0..rng.gen_range(0..3) {
                let at = day * MINUTES_PER_DAY + rng.gen_range(8 * 60..18 * 60);
                trail.add(id, at, 1, &alice, None);
            }
        }
    }
    (trail, ids)
}

/// The profile before 2026-12-05's habit changes: reported runs never learned, no account pool,
/// every sustained rise judged by the count model.
fn before() -> Profile {
    let mut p = Profile::builtin();
    p.detect.habit_min_days = 0;
    p.detect.habit_pool = false;
    p.detect.sustained_needs_others = false;
    p
}

fn rise_starts(findings: &[Finding], from: Minute) -> usize {
    findings
        .iter()
        .filter(|f| {
            f.summary.state == InsightState::Start
                && f.summary.start >= from
                && f.summary.explanation.direction == Direction::Rise
        })
        .count()
}

#[test]
fn a_ci_roles_applies_of_any_size_become_its_habit() {
    // Seeds on which the detector before the change fired on the role's applies (most of what
    // is left are runs of 100-400 calls in a few minutes on an API the role touched once or
    // twice before, two or three days in).
    let (mut now, mut then) = (0, 0);
    for seed in [4, 8, 9, 11] {
        let (trail, _) = ci_trail(seed);
        now += rise_starts(&trail.run(Profile::builtin(), 10), MINUTES_PER_DAY);
        then += rise_starts(&trail.run(before(), 10), MINUTES_PER_DAY);
    }
    // 4 seeds x 12 series x 9 tested days.
    eprintln!("Starts over 432 series-days of applies: {now} now, {then} before");
    assert!(now * 2 <= then, "now {now}, before {then}");
    assert!(now <= 8, "{now}");
}

#[test]
fn an_intruders_bursts_on_three_days_are_three_insights() {
    let (mut trail, ids) = ci_trail(5);
    let intruder: Arc<str> = Arc::from("arn:aws:iam::111122223333:user/svc-backup-legacy");
    // Days 4, 6 and 8 at 03:00: 25 calls in 10 minutes, each time on another API.
    let at = |day: i64| day * MINUTES_PER_DAY + 3 * 60;
    for (day, &id) in [4, 6, 8].iter().zip([ids[2], ids[6], ids[10]].iter()) {
        for k in 0..10 {
            trail.add(id, at(*day) + k, 2 + u64::from(k % 2 == 0), &intruder, None);
        }
    }
    let findings = trail.run(Profile::builtin(), 10);
    for (day, id) in [(4, ids[2]), (6, ids[6]), (8, ids[10])] {
        let found = findings.iter().any(|f| {
            f.series_id == id
                && f.summary.state == InsightState::Start
                && (at(day)..at(day) + 15).contains(&f.summary.start)
        });
        assert!(found, "day {day}: {findings:?}");
    }
}

/// A CI role with ten days of applies (20 to 400 calls over 4 minutes) on the first six APIs,
/// and a second deploy role whose one run before was 5 calls on day 0; on day 2 at 15:00, `who`
/// makes 4 x `per_minute` calls of `PutBucketPolicy`. Returns the Starts of that run.
fn second_role_run(who: &str, per_minute: u64, profile: Profile) -> usize {
    let (mut trail, ids) = twelve_apis();
    let ci: Arc<str> = Arc::from(CI);
    let second: Arc<str> = Arc::from("arn:aws:sts::111122223333:assumed-role/Platform/atlantis");
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for day in 0..10 {
        for _ in 0..4 {
            let at = day * MINUTES_PER_DAY + rng.gen_range(0..MINUTES_PER_DAY - 10);
            let id = ids[rng.gen_range(0..6)];
            let u: f64 = rng.gen_range(f64::EPSILON..1.0);
            let size = ((20.0 * u.powf(-1.0 / 1.2)).floor() as u64).min(400);
            for k in 0..4u64 {
                trail.add(
                    id,
                    at + k as Minute,
                    size / 4 + u64::from(k < size % 4),
                    &ci,
                    None,
                );
            }
        }
    }
    // The second role's one run before: 5 calls of CreateRole on day 0 (untested) at 10:00.
    trail.add(ids[2], 600, 3, &second, None);
    trail.add(ids[2], 601, 2, &second, None);
    let run: Arc<str> = Arc::from(who);
    let at = 2 * MINUTES_PER_DAY + 15 * 60;
    for k in 0..4 {
        trail.add(ids[10], at + k, per_minute, &run, None);
    }
    trail
        .run(profile, 4)
        .iter()
        .filter(|f| {
            f.series_id == ids[10]
                && f.summary.state == InsightState::Start
                && (at - 5..at + 60).contains(&f.summary.start)
        })
        .count()
}

#[test]
fn a_young_habit_reads_how_far_its_accounts_runs_reach_a_strangers_run_does_not() {
    let second = "arn:aws:sts::111122223333:assumed-role/Platform/atlantis-run-17";
    let stranger = "arn:aws:iam::111122223333:user/svc-backup-legacy";
    let mut alone = Profile::builtin();
    alone.detect.habit_pool = false;
    // One small run cannot tell how far the role's runs reach; the account's CI runs can.
    assert_eq!(second_role_run(second, 15, alone), 1);
    assert_eq!(second_role_run(second, 15, Profile::builtin()), 0);
    // An identity that never burst gets nothing from the pool.
    assert_eq!(second_role_run(stranger, 15, Profile::builtin()), 1);
}

/// `UpdateStack`: a CI role's applies (20 to 400 calls over 4 minutes, three a day) and two
/// people's calls at 0.1 a minute each, for nine days; on day 8 from 14:00, `incident` adds its
/// calls. Returns the rise Starts from day 8, 13:30.
fn one_or_all(incident: impl Fn(&mut Trail, u32, &[Arc<str>; 3]), profile: Profile) -> usize {
    let mut trail = Trail::new();
    let id = trail.series("cloudformation.amazonaws.com", "UpdateStack", None);
    let who: [Arc<str>; 3] = [
        Arc::from(CI),
        Arc::from("arn:aws:iam::111122223333:user/alice"),
        Arc::from("arn:aws:iam::111122223333:user/bob"),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    for day in 0..9 {
        for _ in 0..3 {
            let at = day * MINUTES_PER_DAY + rng.gen_range(0..MINUTES_PER_DAY - 10);
            let u: f64 = rng.gen_range(f64::EPSILON..1.0);
            let size = ((20.0 * u.powf(-1.0 / 1.2)).floor() as u64).min(400);
            for k in 0..4u64 {
                let n = size / 4 + u64::from(k < size % 4);
                trail.add(id, at + k as Minute, n, &who[0], None);
            }
        }
    }
    for m in 0..9 * MINUTES_PER_DAY {
        for person in &who[1..] {
            if rng.gen_bool(0.1) {
                trail.add(id, m, 1, person, None);
            }
        }
    }
    incident(&mut trail, id, &who);
    let from = 8 * MINUTES_PER_DAY + 13 * 60 + 30;
    rise_starts(&trail.run(profile, 9), from)
}

const INCIDENT: Minute = 8 * MINUTES_PER_DAY + 14 * 60;

#[test]
fn one_principals_runs_in_an_hour_are_its_habit_everyone_up_is_sustained() {
    // Four runs of the CI role in 50 minutes (40, 30, 40 and 30 calls over 4 minutes each).
    let runs = |trail: &mut Trail, id: u32, who: &[Arc<str>; 3]| {
        for (start, calls) in [(0, 40u64), (16, 30), (32, 40), (48, 30)] {
            for k in 0..4 {
                trail.add(
                    id,
                    INCIDENT + start + k,
                    calls / 4 + u64::from(k < 2),
                    &who[0],
                    None,
                );
            }
        }
    };
    // Every caller up for 40 minutes: the two people at a call a minute each (ten times their
    // rate), the CI role with a call a minute besides its runs.
    let all = |trail: &mut Trail, id: u32, who: &[Arc<str>; 3]| {
        for m in INCIDENT..INCIDENT + 40 {
            trail.add(id, m, 1, &who[1], None);
            trail.add(id, m, 1, &who[2], None);
            trail.add(id, m, 1, &who[0], None);
        }
    };
    let mut every = Profile::builtin();
    every.detect.sustained_needs_others = false;
    assert_eq!(one_or_all(runs, Profile::builtin()), 0);
    assert_eq!(one_or_all(runs, every), 1);
    assert_eq!(one_or_all(all, Profile::builtin()), 1);
}
