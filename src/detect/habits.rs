//! Principals' habits: the bursts each identity makes across every series it touches. A CI
//! role's `terraform apply` hits one to four of a dozen write APIs, so most API series see it
//! only every few days and their own burst history ([`super::bursts`]) never learns it; the
//! role's habit, gathered over all series, does. A rise made mostly by a principal whose bursts
//! are shown heavier than the count model allows is judged against that principal's tail of
//! surprises, the way a series' own tail is used; an identity never seen bursting has no habit.
//!
//! The habits are recomputed once a day (as AWS recomputes its baselines), from the hours
//! before that day only, and the detector advances every series to a day boundary before any
//! series enters the next day: a decision never depends on the order of series or on how the
//! input was batched.

use std::collections::HashMap;

use super::bursts::{principal_id, BurstTail, Bursts};
use super::paging::Slot;
use super::Profile;
use crate::aggregate::Registry;
use crate::series::{InsightType, MINUTES_PER_DAY};

/// Bursting hours per principal and Insight type, from every series, before a day. A
/// principal's bursts of calls say nothing of its bursts of errors (a stolen key's
/// `AccessDenied` spike), so the two are habits apart.
#[derive(Debug, Clone, Default)]
pub struct Habits {
    /// The day (minute / 1,440) the habits hold the history before; `None` until built.
    day: Option<i64>,
    by_principal: HashMap<(u64, InsightType), Habit>,
    /// The habits of an account's principals together, per Insight type (keyed by
    /// [`principal_id`] of the account id): how far bursts reach in that account, for
    /// principals whose own habit is too thin to tell (see `detect.habit_pool`).
    by_account: HashMap<(u64, InsightType), Bursts>,
}

/// One principal's habit for one Insight type.
#[derive(Debug, Clone, Default)]
struct Habit {
    /// [`principal_id`] of the account of the first series it burst in.
    account: u64,
    /// Whether its bursts that started no Insight fall on `habit_min_days` days or more: a
    /// routine, whose runs may come several to an hour (see `detect.sustained_needs_others`).
    routine: bool,
    bursts: Bursts,
}

impl Habits {
    /// The day whose decisions these habits serve.
    pub fn day(&self) -> Option<i64> {
        self.day
    }

    /// Gathers the bursting hours of the `keep_hours` before `day` from every series, by the
    /// principals that made them. An hour in which any of a principal's bursts started an
    /// Insight, and the hours beside it, are left out: an intruder's first burst, reported,
    /// must not make the next one a habit (a series' own tail lets reported bursts count once
    /// they recur; across series one incident would recur at once). Throttling errors' series
    /// are left out too: a client's retry storms are the throttling rule's (see
    /// `detect.throttling_codes`) and say nothing of the same principal's `AccessDenied` spike.
    pub fn rebuild(
        &mut self,
        day: i64,
        series: &[Slot],
        registry: &Registry,
        keep_hours: i64,
        profile: &Profile,
    ) {
        let before = day * MINUTES_PER_DAY / 60;
        let since = before - keep_hours;
        self.by_principal.clear();
        self.by_account.clear();
        for (s, key) in series.iter().zip(&registry.series) {
            if key
                .error_code
                .as_deref()
                .is_some_and(|code| profile.is_throttling(code))
            {
                continue;
            }
            for h in s.bursts().hours() {
                if h.hour < since || h.hour >= before {
                    continue;
                }
                for &p in h.principals.iter().filter(|&&p| p != 0) {
                    self.by_principal
                        .entry((p, key.insight_type))
                        .or_insert_with(|| Habit {
                            account: principal_id(&key.account),
                            ..Habit::default()
                        })
                        .bursts
                        .absorb(h);
                }
            }
        }
        for habit in self.by_principal.values_mut() {
            habit.routine = habit
                .bursts
                .drop_reported_unless_established(profile.detect.habit_min_days);
        }
        self.by_principal
            .retain(|_, habit| !habit.bursts.is_empty());
        if profile.detect.habit_pool {
            for (&(_, insight_type), habit) in &self.by_principal {
                let pool = self
                    .by_account
                    .entry((habit.account, insight_type))
                    .or_default();
                for h in habit.bursts.hours() {
                    pool.absorb(h);
                }
            }
        }
        self.day = Some(day);
    }

    /// Whether `principal`'s bursts are a routine: those that started no Insight fall on
    /// `detect.habit_min_days` days or more of the baseline window before the habits' day.
    pub fn is_routine(&self, principal: u64, insight_type: InsightType) -> bool {
        self.by_principal
            .get(&(principal, insight_type))
            .is_some_and(|habit| habit.routine)
    }

    /// Number of principals with at least one bursting hour.
    pub fn principals(&self) -> usize {
        self.by_principal.len()
    }

    /// The tail of `principal`'s bursts at `scale` for a window `excess` above the threshold
    /// surprise `threshold` in absolute hour `hour`: a power-law tail (see
    /// [`Bursts::power_tail`]); `None` for an unknown principal (0) or one without a habit.
    /// With `detect.habit_pool`, the larger of that and the account's pooled tail at the
    /// principal's own frequency of bursting hours: how far bursts reach in the account, how
    /// often this principal bursts. A principal that never burst gets nothing from the pool.
    #[allow(clippy::too_many_arguments)]
    pub fn tail(
        &self,
        principal: u64,
        account: &str,
        insight_type: InsightType,
        hour: i64,
        scale: usize,
        excess: f64,
        window_hours: i64,
        covered_hours: f64,
        profile: &Profile,
    ) -> Option<BurstTail> {
        if principal == 0 {
            return None;
        }
        let d = &profile.detect;
        let threshold = (1.0 / d.burst_p).ln();
        let own = &self.by_principal.get(&(principal, insight_type))?.bursts;
        let tail_of = |bursts: &Bursts, frequency: Option<u32>| {
            bursts.power_tail(
                hour,
                scale,
                excess,
                window_hours,
                covered_hours,
                d.burst_confidence,
                d.burst_min_hours,
                threshold,
                frequency,
            )
        };
        let tail = tail_of(own, None);
        let pooled = self
            .by_account
            .get(&(principal_id(account), insight_type))
            .and_then(|pool| tail_of(pool, Some(own.bursting_hours(hour, window_hours))));
        match (tail, pooled) {
            (Some(a), Some(b)) if b.rate_per_minute > a.rate_per_minute => Some(b),
            (a, b) => a.or(b),
        }
    }
}
