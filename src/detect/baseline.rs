//! The trailing baseline of one series: per-hour sums of its minute counts over the baseline
//! window (a ring of hours), and the fit that turns them into an expected rate for a minute —
//! by hour of day, shrunk towards the series' overall rate, with its over-dispersion and the
//! uncertainty of the rate itself — so the bounds are wide where history is thin or bursty.

use chrono::{Offset, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::model::CountModel;
use super::profile::BaselineSettings;
use crate::series::Minute;

/// Sums of one hour's minute counts (after winsorising minutes inside episodes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct HourSlot {
    /// Absolute hour (minute / 60) the sums belong to; a slot holding another hour is empty.
    pub hour: i64,
    /// Sum of counts.
    pub s1: f64,
    /// Sum of squared counts.
    pub s2: f64,
    /// Sums of squared totals of the hour's aligned blocks of [`BLOCK_SCALES`] minutes (5, 15):
    /// with `s2` (1 minute) and `s1²` (60 minutes), the over-dispersion at each window's scale.
    pub sq: [f64; 2],
    /// Running totals of the current 5- and 15-minute blocks (minutes are recorded in order).
    run: [f64; 2],
    /// Last minute recorded, which names the current blocks.
    last: Minute,
}

/// Block lengths (minutes) whose squared totals each hour keeps, besides 1 and 60.
pub const BLOCK_SCALES: [i64; 2] = [5, 15];

impl HourSlot {
    fn empty(hour: i64) -> HourSlot {
        HourSlot {
            hour,
            s1: 0.0,
            s2: 0.0,
            sq: [0.0; 2],
            run: [0.0; 2],
            last: i64::MIN,
        }
    }

    /// Sums of squared block totals at the scales of `SCALES[1..4]` (5, 15 and 60 minutes).
    fn block_squares(&self) -> [f64; 3] {
        [self.squares(5), self.squares(15), self.squares(60)]
    }

    /// Sum of squared block totals at `scale` minutes (1, 5, 15 or 60).
    fn squares(&self, scale: i64) -> f64 {
        match scale {
            1 => self.s2,
            60 => self.s1 * self.s1,
            _ => BLOCK_SCALES
                .iter()
                .position(|&b| b == scale)
                .and_then(|i| self.sq.get(i))
                .copied()
                .unwrap_or(self.s2),
        }
    }
}

/// Scales (minutes) at which over-dispersion is measured: 120 from aligned pairs of hours.
const SCALES: [i64; 5] = [1, 5, 15, 60, 120];

/// The longest window that can be tested (minutes).
pub const MAX_WINDOW_MINUTES: i64 = 120;

/// Hours between the end of the baseline window and the hour it serves: the hours the longest
/// window reaches back into.
pub const LAG_HOURS: i64 = MAX_WINDOW_MINUTES / 60;

/// Per-hour sums over the baseline window: only the hours that had calls, in order, at most
/// `capacity` hours back from the newest (a series that calls once a week holds one hour, not
/// a week of empty ones: memory and the stored state follow activity, not the window).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "UncheckedBaseline")]
pub struct Baseline {
    /// Hours spanned: the window, its lag and one more (see [`Baseline::slots_for`]).
    capacity: u32,
    /// Hours with calls, ascending, all newer than the newest minus `capacity`.
    slots: Vec<HourSlot>,
}

/// A baseline as decoded, before its shape is checked.
#[derive(Deserialize)]
struct UncheckedBaseline {
    capacity: u32,
    slots: Vec<HourSlot>,
}

impl TryFrom<UncheckedBaseline> for Baseline {
    type Error = String;

    fn try_from(b: UncheckedBaseline) -> Result<Baseline, String> {
        let span = b
            .slots
            .first()
            .zip(b.slots.last())
            .map_or(0, |(first, last)| last.hour.saturating_sub(first.hour));
        let ordered = b.slots.windows(2).all(|w| w[0].hour < w[1].hour);
        if b.capacity < 1 + LAG_HOURS as u32 + 1 || !ordered || span >= i64::from(b.capacity) {
            return Err(format!(
                "baseline of {} hours held over {span} hours in order {ordered}, capacity {}",
                b.slots.len(),
                b.capacity
            ));
        }
        Ok(Baseline {
            capacity: b.capacity,
            slots: b.slots,
        })
    }
}

/// Minutes of history an account/region has: every minute from its first record on counts,
/// including the silent ones (no call is information too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    /// First minute the store has any record for the account/region.
    pub first_minute: Minute,
}

impl Coverage {
    /// Minutes of absolute hour `hour` that are history.
    pub fn minutes_in_hour(&self, hour: i64) -> f64 {
        let start = hour * 60;
        let end = start + 60;
        (end - start.max(self.first_minute)).clamp(0, 60) as f64
    }
}

/// The expected per-minute rate for one hour of the day, with its posterior shape
/// (pseudo-count of calls behind the estimate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateEstimate {
    /// Expected calls per minute.
    pub rate: f64,
    /// Gamma shape of the rate's uncertainty: the rate's variance is rate^2 / shape.
    pub shape: f64,
}

/// The expected rates of one absolute hour (the first half of its [`HourFit`]): a quiet series
/// asks no more than these, most hours.
#[derive(Debug, Clone, PartialEq)]
pub struct HourRates {
    /// The absolute hour these rates serve.
    pub hour: i64,
    by_type: [[RateEstimate; 24]; 2],
    days: [[u32; 24]; 2],
    /// Whether the window holds any minute of each (day type, hour of day).
    seen: [[bool; 24]; 2],
    calls: f64,
    minutes: f64,
    /// Rate for the hour of day of `hour`.
    pub current: RateEstimate,
    /// Rate for the hour of day before it.
    pub previous: RateEstimate,
    /// The highest hour-of-day rate: no hour of this window expects more.
    pub max_rate: f64,
}

impl HourRates {
    /// Whether these rates read the slot of absolute hour `hour` (as [`HourFit::reads_hour`]).
    pub fn reads_hour(&self, hour: i64) -> bool {
        hour < self.hour - LAG_HOURS
    }
}

/// The baseline fitted at the start of one absolute hour, from the window of hours that ends
/// [`LAG_HOURS`] before it.
#[derive(Debug, Clone, PartialEq)]
pub struct HourFit {
    /// The absolute hour this fit serves.
    pub hour: i64,
    /// Rate for the hour of day of `hour`.
    pub current: RateEstimate,
    /// Rate for the hour of day before it (windows reach back into the previous hour).
    pub previous: RateEstimate,
    /// Rate for the hour of day two hours before (the longest windows reach back into it).
    pub earlier: RateEstimate,
    /// Days of the window on which the hour of day of `hour` had calls.
    pub current_days: u32,
    /// The same for the hour before.
    pub previous_days: u32,
    /// The same for the hour two hours before.
    pub earlier_days: u32,
    /// Extra variance per minute relative to Poisson: Var = rate + rate^2 * inverse_size.
    pub inverse_size: f64,
    /// The same for the totals of aligned blocks of 1, 5, 15, 60 and 120 minutes:
    /// Var(block) = mean + mean^2 * block_inverse_size (index 0 is `inverse_size`).
    pub block_inverse_size: [f64; 5],
    /// Variance of a minute's count relative to its mean (at least 1): clumped calls.
    pub variance_ratio: f64,
    /// Calls per minute over the whole window (what AWS reports as `baseline.average`).
    pub average: f64,
    /// Minutes of history in the window (AWS's `baselineDuration`).
    pub minutes: i64,
    /// The highest hour-of-day rate: no hour of this window expects more.
    pub max_rate: f64,
}

impl Baseline {
    /// An empty baseline over `window_minutes` (a whole number of hours).
    pub fn new(window_minutes: i64) -> Baseline {
        Baseline {
            capacity: Baseline::slots_for(window_minutes) as u32,
            slots: Vec::new(),
        }
    }

    /// Hour slots of a baseline over `window_minutes`: one more than the window and its lag, so
    /// the hour being written never overwrites the oldest hour of the window, and a fit
    /// recomputed in the middle of an hour (after a restart) equals the one computed at its start.
    pub fn slots_for(window_minutes: i64) -> usize {
        (window_minutes / 60).max(1) as usize + 1 + LAG_HOURS as usize
    }

    /// Hours spanned.
    pub fn slots(&self) -> usize {
        self.capacity as usize
    }

    /// Hours with calls held (memory accounting).
    pub fn hours_held(&self) -> usize {
        self.slots.len()
    }

    /// Where `hour` is, or would go, in the held hours.
    fn find(&self, hour: i64) -> Result<usize, usize> {
        // Almost every lookup is of the newest hour: try it first.
        match self.slots.last() {
            Some(last) if last.hour == hour => Ok(self.slots.len() - 1),
            Some(last) if last.hour < hour => Err(self.slots.len()),
            _ => self.slots.binary_search_by_key(&hour, |s| s.hour),
        }
    }

    /// The slot of `hour`, created when it is within reach (newer than the newest hour minus
    /// the capacity); older hours are dropped as a newer one arrives.
    fn slot_mut(&mut self, hour: i64) -> Option<&mut HourSlot> {
        let newest = self.slots.last().map_or(hour, |s| s.hour.max(hour));
        let oldest = newest - i64::from(self.capacity) + 1;
        if hour < oldest {
            return None;
        }
        let i = match self.find(hour) {
            Ok(i) => i,
            Err(i) => {
                self.slots.insert(i, HourSlot::empty(hour));
                i
            }
        };
        let gone = self.slots.partition_point(|s| s.hour < oldest);
        self.slots.drain(..gone);
        self.slots.get_mut(i - gone)
    }

    /// Adds one minute's count (already winsorised by the caller when inside an episode).
    pub fn record(&mut self, minute: Minute, count: f64) {
        if count == 0.0 {
            return;
        }
        let hour = minute.div_euclid(60);
        let Some(slot) = self.slot_mut(hour) else {
            return;
        };
        slot.s1 += count;
        slot.s2 += count * count;
        for (k, &b) in BLOCK_SCALES.iter().enumerate() {
            if slot.last.div_euclid(b) != minute.div_euclid(b) {
                slot.run[k] = 0.0;
            }
            let before = slot.run[k];
            slot.sq[k] += (before + count) * (before + count) - before * before;
            slot.run[k] = before + count;
        }
        slot.last = minute;
    }

    /// Puts back the real count of a minute recorded as `before` (a level shift undoing its
    /// winsorising), creating its hour when every minute of it was recorded as zero.
    pub fn restore(&mut self, minute: Minute, before: f64, real: f64) {
        if self.slot_mut(minute.div_euclid(60)).is_some() {
            self.add_late(minute, before, real - before);
        }
    }

    /// Adds late calls to a minute that already had `before` calls, if its hour is still held.
    pub fn add_late(&mut self, minute: Minute, before: f64, added: f64) {
        let hour = minute.div_euclid(60);
        if let Ok(i) = self.find(hour) {
            let slot = &mut self.slots[i];
            slot.s1 += added;
            let grown = (before + added) * (before + added) - before * before;
            slot.s2 += grown;
            // The minute's block total is not kept once the block is past: counted as if the
            // minute were alone in its block (a lower bound of the growth).
            for sq in &mut slot.sq {
                *sq += grown;
            }
        }
    }

    /// Fits the baseline that serves absolute hour `hour`: the window of hours that ends
    /// [`LAG_HOURS`] before it.
    pub fn fit(&self, hour: i64, coverage: Coverage, settings: &BaselineSettings) -> HourFit {
        self.complete(&self.rates(hour, coverage, settings), coverage, settings)
    }

    /// Hours of the window of a fit (see [`Baseline::fit`]) and the absolute hour it ends before.
    fn window(&self, hour: i64, settings: &BaselineSettings) -> (i64, i64) {
        // A ring saved before the lag existed holds LAG_HOURS fewer hours: its window is that
        // much shorter, rather than counting hours it no longer holds as silent.
        let hours = (settings.window_minutes / 60)
            .max(1)
            .min(i64::from(self.capacity) - 1 - LAG_HOURS);
        // The windows tested in `hour` reach back into the two hours before it: those hours are
        // what is being judged, so they are no part of the baseline that judges them (else an
        // incident raises its own expected rate and over-dispersion while it is tested).
        (hours, hour - LAG_HOURS)
    }

    /// The first half of [`Baseline::fit`]: the expected rates by day type and hour of day, all
    /// that a quiet series needs to know whether its silence could matter.
    pub fn rates(&self, hour: i64, coverage: Coverage, settings: &BaselineSettings) -> HourRates {
        let (hours, end) = self.window(hour, settings);
        // Sums by hour of day, and by (day type, hour of day).
        let mut days = [[0u32; 24]; 2];
        let mut calls_hod = [0.0f64; 24];
        let mut minutes_hod = [0.0f64; 24];
        let mut calls_type = [[0.0f64; 24]; 2];
        let mut minutes_type = [[0.0f64; 24]; 2];
        let mut calls = 0.0;
        let mut minutes = 0.0;
        for h in self.hours(end - hours, end, settings) {
            let n = coverage.minutes_in_hour(h.hour);
            if n == 0.0 {
                continue;
            }
            let (hod, dt) = (h.hod, h.day_type);
            minutes_hod[hod] += n;
            minutes_type[dt][hod] += n;
            minutes += n;
            if let Some(slot) = h.slot {
                calls_hod[hod] += slot.s1;
                calls_type[dt][hod] += slot.s1;
                calls += slot.s1;
                if slot.s1 > 0.0 {
                    days[dt][hod] += 1;
                }
            }
        }
        let overall = (calls + settings.prior_calls) / (minutes + 1.0);
        let w = settings.neighbour_hour_weight;
        // Each hour's rate has a Gamma prior with mean `overall` worth `a` calls: it weighs
        // a / overall pseudo-minutes, so a busy series' hours speak for themselves while a sparse
        // series (a few calls a week) borrows from its other hours.
        let a = settings.hour_prior_calls;
        let mut by_hod = [RateEstimate {
            rate: overall,
            shape: a,
        }; 24];
        for (hod, estimate) in by_hod.iter_mut().enumerate() {
            let (before, after) = ((hod + 23) % 24, (hod + 1) % 24);
            let c = calls_hod[hod] + w * (calls_hod[before] + calls_hod[after]);
            let n = minutes_hod[hod] + w * (minutes_hod[before] + minutes_hod[after]);
            let shape = c + a;
            *estimate = RateEstimate {
                rate: shape / (n + a / overall),
                shape,
            };
        }
        // Weekday or weekend, pulled the same way towards the hour of day: before any weekend
        // is in the window, a weekend hour is expected like any other day's.
        let b = settings.day_type_prior_calls;
        let mut by_type = [by_hod; 2];
        for dt in 0..2 {
            for hod in 0..24 {
                let base = by_hod[hod];
                // No hour of this day type in the window yet (the first weekend after weekdays
                // only): the hour of day is all there is to know, with its own certainty. A
                // one-call prior here would be a Gamma of shape 1, bounds of 20 times the rate.
                if minutes_type[dt][hod] == 0.0 {
                    continue;
                }
                let shape = calls_type[dt][hod] + b;
                by_type[dt][hod] = RateEstimate {
                    rate: shape / (minutes_type[dt][hod] + b / base.rate),
                    shape,
                };
            }
        }
        let ((hod, dt), (phod, pdt)) = (settings.local_hour(hour), settings.local_hour(hour - 1));
        HourRates {
            hour,
            by_type,
            days,
            seen: minutes_type.map(|t| t.map(|m| m > 0.0)),
            calls,
            minutes,
            current: by_type[dt][hod],
            previous: by_type[pdt][phod],
            max_rate: by_type
                .iter()
                .flat_map(|t| t.iter())
                .map(|r| r.rate)
                .fold(0.0, f64::max),
        }
    }

    /// The second half of [`Baseline::fit`]: the over-dispersion around `rates` (from
    /// [`Baseline::rates`] for the same hour, coverage and settings), and the fit they make.
    pub fn complete(
        &self,
        rates: &HourRates,
        coverage: Coverage,
        settings: &BaselineSettings,
    ) -> HourFit {
        let HourRates {
            hour,
            ref by_type,
            ref days,
            ref seen,
            calls,
            minutes,
            max_rate,
            ..
        } = *rates;
        let (hours, end) = self.window(hour, settings);
        // Over-dispersion by the method of moments, pooled over the window, in two forms:
        // the squared deviations beyond what Poisson explains relative to the squared rates
        // (negative binomial with a fixed size: a busy API's rate wanders), and relative to the
        // rates (variance a fixed multiple of the mean: calls that come in clumps, like a burst
        // of throttling errors, however rare the clumps).
        let mut excess = 0.0;
        let mut scale = 0.0;
        let mut squared_deviations = 0.0;
        let mut expected_calls = 0.0;
        // The same moment estimate for the totals of aligned blocks of 5, 15 and 60 minutes: a
        // rate that wanders for minutes at a time makes a window's count vary far more than
        // independent minutes would (Var of a b-minute block = mean + mean^2 * block_inverse_size).
        let mut block_excess = [0.0f64; SCALES.len()];
        let mut block_scale = [0.0f64; SCALES.len()];
        // The walk starts one hour before the window: the 120-minute scale pairs each odd hour
        // with the hour before it, whose minutes, calls and rate are carried to it.
        let mut before: Option<(f64, f64, f64)> = None;
        for h in self.hours(end - hours - 1, end, settings) {
            let g = h.hour;
            let n = coverage.minutes_in_hour(g);
            let rate = by_type[h.day_type][h.hod].rate;
            let slot = h.slot;
            let (s1, s2) = slot.map_or((0.0, 0.0), |s| (s.s1, s.s2));
            let Some((first_minutes, first_calls, first)) = before.replace((n, s1, rate)) else {
                continue;
            };
            if n == 0.0 {
                continue;
            }
            let deviations = s2 - 2.0 * rate * s1 + n * rate * rate;
            excess += deviations - s1;
            scale += n * rate * rate;
            squared_deviations += deviations;
            expected_calls += n * rate;
            // Aligned pairs of hours (the second one odd), both in history: the 120-minute scale.
            if g.rem_euclid(2) == 1 && first_minutes == 60.0 && n == 60.0 {
                let total = first_calls + s1;
                let mean = 60.0 * (first + rate);
                let k = SCALES.len() - 1;
                block_excess[k] += (total - mean) * (total - mean) - total;
                block_scale[k] += mean * mean;
            }
            let squares = slot.map_or([0.0; 3], HourSlot::block_squares);
            for (k, (&b, q)) in (1..).zip(SCALES[1..4].iter().zip(squares)) {
                let blocks = n / b as f64;
                let mean = b as f64 * rate;
                block_excess[k] += q - 2.0 * mean * s1 + blocks * mean * mean - s1;
                block_scale[k] += blocks * mean * mean;
            }
        }
        let mut block_inverse_size = [0.0f64; SCALES.len()];
        for k in 1..SCALES.len() {
            if block_scale[k] > 0.0 && block_excess[k] > 0.0 {
                block_inverse_size[k] = block_excess[k] / block_scale[k];
            }
        }
        let variance_ratio = if expected_calls > 0.0 {
            (squared_deviations / expected_calls).max(1.0)
        } else {
            1.0
        };
        let inverse_size = if scale > 0.0 && excess > 0.0 {
            excess / scale
        } else {
            0.0
        };
        let (hod, dt) = settings.local_hour(hour);
        let (phod, pdt) = settings.local_hour(hour - 1);
        let (ehod, edt) = settings.local_hour(hour - 2);
        block_inverse_size[0] = inverse_size;
        HourFit {
            hour,
            current: by_type[dt][hod],
            previous: by_type[pdt][phod],
            earlier: by_type[edt][ehod],
            // Days on which the hour had calls, of either day type, but none before the window
            // holds that hour on its own day type: the first weekend after weekdays only is
            // expected like a weekday for rises, and is never a fall (it may rightly be quiet).
            current_days: u32::from(seen[dt][hod]) * (days[0][hod] + days[1][hod]),
            previous_days: u32::from(seen[pdt][phod]) * (days[0][phod] + days[1][phod]),
            earlier_days: u32::from(seen[edt][ehod]) * (days[0][ehod] + days[1][ehod]),
            inverse_size,
            block_inverse_size,
            variance_ratio,
            average: if minutes > 0.0 { calls / minutes } else { 0.0 },
            minutes: minutes as i64,
            max_rate,
        }
    }

    #[cfg(test)]
    fn slot(&self, hour: i64) -> Option<&HourSlot> {
        self.find(hour).ok().map(|i| &self.slots[i])
    }

    /// The hours `from..to` in order with what the fit reads of each (see [`WindowHours`]).
    fn hours<'b>(&'b self, from: i64, to: i64, settings: &'b BaselineSettings) -> WindowHours<'b> {
        WindowHours {
            settings: (settings.timezone != Tz::UTC || !settings.holidays.is_empty())
                .then_some(settings),
            slots: &self.slots,
            hour: from,
            to,
            index: self.slots.partition_point(|s| s.hour < from),
            hod: from.rem_euclid(24) as usize,
            weekday: (from.div_euclid(24) + 3).rem_euclid(7),
        }
    }
}

/// One hour of a fit's window: its hour of day, day type and slot (when the ring still holds it).
struct WindowHour<'b> {
    hour: i64,
    hod: usize,
    day_type: usize,
    slot: Option<&'b HourSlot>,
}

/// The hours of a window in order. A fit walks every hour of its window, every hour, for every
/// series: the ring index, hour of day and weekday step along instead of being divided out anew.
struct WindowHours<'b> {
    /// The profile's settings when they name a time zone other than UTC or holidays: each
    /// hour's local hour of day and day type are then looked up (daylight-saving time moves
    /// them), not stepped.
    settings: Option<&'b BaselineSettings>,
    slots: &'b [HourSlot],
    hour: i64,
    to: i64,
    index: usize,
    hod: usize,
    /// Monday = 0, as in [`day_type`].
    weekday: i64,
}

impl<'b> Iterator for WindowHours<'b> {
    type Item = WindowHour<'b>;

    fn next(&mut self) -> Option<WindowHour<'b>> {
        if self.hour >= self.to {
            return None;
        }
        let hour = self.hour;
        let (hod, day_type) = match self.settings {
            None => (self.hod, usize::from(self.weekday >= 5)),
            Some(settings) => settings.local_hour(hour),
        };
        let slot = self.slots.get(self.index).filter(|s| s.hour == hour);
        if slot.is_some() {
            self.index += 1;
        }
        let item = WindowHour {
            hour,
            hod,
            day_type,
            slot,
        };
        self.hour += 1;
        self.hod += 1;
        if self.hod == 24 {
            self.hod = 0;
            self.weekday = (self.weekday + 1) % 7;
        }
        Some(item)
    }
}

/// Hour of day and day type (as [`day_type`]) of absolute UTC hour `hour` in `timezone`:
/// office hours follow local time across daylight-saving changes.
pub fn local_hour(hour: i64, timezone: Tz) -> (usize, usize) {
    let local = local_hour_number(hour, timezone);
    (local.rem_euclid(24) as usize, day_type(local))
}

impl BaselineSettings {
    /// Hour of day and day type of absolute UTC hour `hour` in the profile's time zone, a
    /// holiday counting as a weekend day.
    pub fn local_hour(&self, hour: i64) -> (usize, usize) {
        if self.holidays.is_empty() {
            return local_hour(hour, self.timezone);
        }
        let local = local_hour_number(hour, self.timezone);
        let holiday = self
            .holidays
            .binary_search(&super::profile::Holiday(local.div_euclid(24)))
            .is_ok();
        (
            local.rem_euclid(24) as usize,
            if holiday { 1 } else { day_type(local) },
        )
    }
}

/// The local hour number (hours since 1970-01-01 00:00 local time) of absolute UTC hour `hour`.
fn local_hour_number(hour: i64, timezone: Tz) -> i64 {
    if timezone == Tz::UTC {
        return hour;
    }
    let seconds = hour.saturating_mul(3600);
    let offset = chrono::DateTime::from_timestamp(seconds, 0).map_or(0, |utc| {
        i64::from(
            timezone
                .offset_from_utc_datetime(&utc.naive_utc())
                .fix()
                .local_minus_utc(),
        )
    });
    (seconds + offset).div_euclid(3600)
}

/// 0 for Monday to Friday, 1 for Saturday and Sunday (UTC) of an absolute hour.
pub fn day_type(hour: i64) -> usize {
    // 1970-01-01 was a Thursday: day 0 has weekday index 3 (Monday = 0).
    let weekday = (hour.div_euclid(24) + 3).rem_euclid(7);
    usize::from(weekday >= 5)
}

impl HourFit {
    /// Whether this fit read the slot of absolute hour `hour` (every hour it reads lies before
    /// its window's end, [`LAG_HOURS`] before the hour it serves): calls added to any later
    /// hour leave it as it is.
    pub fn reads_hour(&self, hour: i64) -> bool {
        hour < self.hour - LAG_HOURS
    }

    /// The predictive distribution of the count in the `window` minutes ending at `minute`
    /// (inclusive), which must lie in this fit's hour. Windows reach at most
    /// [`MAX_WINDOW_MINUTES`] back, so into the two previous hours at most.
    pub fn window_model(&self, minute: Minute, window: i64) -> CountModel {
        self.window_model_with(minute, window, true)
    }

    /// The same at the rates' point estimates, without their uncertainty: what the series'
    /// bursts are measured against, so that a burst in its first hours of history (when the
    /// rates are still uncertain) is a burst all the same.
    pub fn point_window_model(&self, minute: Minute, window: i64) -> CountModel {
        self.window_model_with(minute, window, false)
    }

    fn window_model_with(&self, minute: Minute, window: i64, uncertain: bool) -> CountModel {
        let window = window.clamp(1, MAX_WINDOW_MINUTES);
        let parts = self.window_parts(minute, window);
        let mean: f64 = parts.iter().map(|(n, r)| n * r.rate).sum();
        // The hours' rates are independent Gamma posteriors: the uncertainty of the window's
        // expected count is the sum of each part's.
        let uncertainty: f64 = parts
            .iter()
            .filter(|(_, r)| uncertain && r.shape > 0.0)
            .map(|(n, r)| (n * r.rate) * (n * r.rate) / r.shape)
            .sum();
        // Extra variance of the window's count: as independent blocks of b minutes, each with the
        // over-dispersion measured at that scale (b = 1: independent minutes), for every scale
        // that fits in the window; the largest wins (a rate that wanders for minutes at a time
        // shows at the block scale, not minute by minute).
        let squared_rate =
            parts.iter().map(|(n, r)| n * r.rate * r.rate).sum::<f64>() / (window as f64);
        let dispersion = SCALES
            .iter()
            .zip(self.block_inverse_size)
            .filter(|(&b, _)| b <= window)
            .map(|(&b, kappa)| window as f64 * b as f64 * squared_rate * kappa)
            .fold(0.0, f64::max);
        let variance = (mean + dispersion).max(mean * self.variance_ratio);
        CountModel::from_moments(mean, variance + uncertainty)
    }

    /// Minutes of the window in this fit's hour and in each of the two hours before, with
    /// their rates.
    fn window_parts(&self, minute: Minute, window: i64) -> [(f64, RateEstimate); 3] {
        let in_current = (minute.rem_euclid(60) + 1).min(window);
        let in_previous = (window - in_current).clamp(0, 60);
        let in_earlier = (window - in_current - in_previous).max(0);
        [
            (in_current as f64, self.current),
            (in_previous as f64, self.previous),
            (in_earlier as f64, self.earlier),
        ]
    }
}

impl super::decide::WindowFit for HourFit {
    fn window_model(&self, t: Minute, window: i64) -> CountModel {
        HourFit::window_model(self, t, window)
    }
    fn point_window_model(&self, t: Minute, window: i64) -> CountModel {
        HourFit::point_window_model(self, t, window)
    }
    fn days_supporting(&self, t: Minute, window: i64) -> u32 {
        HourFit::days_supporting(self, t, window)
    }
    fn expected_minute(&self) -> f64 {
        self.current.rate
    }
    fn average(&self) -> f64 {
        self.average
    }
    fn minutes(&self) -> i64 {
        self.minutes
    }
}

impl HourFit {
    /// Days of history behind the window of `window` minutes ending at `minute`: the fewer of
    /// the two hours it spans.
    pub fn days_supporting(&self, minute: Minute, window: i64) -> u32 {
        let reach = window - (minute.rem_euclid(60) + 1);
        if reach <= 0 {
            self.current_days
        } else if reach <= 60 {
            self.current_days.min(self.previous_days)
        } else {
            self.current_days
                .min(self.previous_days)
                .min(self.earlier_days)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BaselineSettings {
        BaselineSettings::default()
    }

    #[test]
    fn a_two_hour_window_spans_three_hours_of_day() {
        // 2 calls every minute for 170 hours (7 days and 2 hours).
        let mut b = Baseline::new(10080);
        for m in 0..170 * 60 {
            b.record(m, 2.0);
        }
        let fit = b.fit(170, Coverage { first_minute: 0 }, &settings());
        for r in [fit.current, fit.previous, fit.earlier] {
            assert!((r.rate - 2.0).abs() < 1e-5, "{r:?}");
        }
        // A 120-minute window ending 10 minutes into hour 170 spans 10 + 60 + 50 minutes of three
        // hours of day; the baseline window (hours 0..168, ending 2 hours before hour 170:
        // Thursday 1970-01-01 00:00 to Thursday the 8th 00:00) saw each of them on 5 weekdays: 600 calls, shape 601 (1 pseudo-call). Mean 240;
        // variance: Poisson 240 plus the independent rates' uncertainty
        // (20^2 + 120^2 + 100^2) / 601 = 41.265 (by hand).
        let m = fit.window_model(170 * 60 + 9, 120);
        assert!((m.mean() - 240.0).abs() < 1e-3, "{m:?}");
        let uncertainty = 24_800.0 / 601.0;
        assert!(
            (m.variance() - (240.0 + uncertainty)).abs() < 1e-2,
            "{m:?} {fit:?}"
        );
        assert_eq!(fit.block_inverse_size, [0.0; 5]);
    }

    #[test]
    fn flat_poisson_history_gives_its_rate_and_no_overdispersion() {
        // 7 days of exactly 2 calls every minute: rate 2, s2 = 4 per minute, so the moment
        // estimate of extra variance is sum(4 - 2*2*2 + 4 - 2) = -2 per minute: none.
        let mut b = Baseline::new(10080);
        for m in 0..10080 {
            b.record(m, 2.0);
        }
        // Hour 170 is served by hours 0..168 (the window ends 2 hours before it).
        let fit = b.fit(170, Coverage { first_minute: 0 }, &settings());
        assert_eq!(fit.minutes, 10080);
        assert!((fit.average - 2.0).abs() < 1e-12);
        // Hour 170 falls on a Thursday (1970-01-08). By hand: hour-of-day rate
        // (840 + 1) / (420 + 1 / overall), weekday rate (600 + 1) / (300 + 1 / hod).
        let overall = (20160.0 + 0.5) / 10081.0;
        let hod = (840.0 + 1.0) / (420.0 + 1.0 / overall);
        let expected = (600.0 + 1.0) / (300.0 + 1.0 / hod);
        assert!((fit.current.rate - expected).abs() < 1e-12);
        assert_eq!(fit.inverse_size, 0.0);
        assert_eq!(fit.variance_ratio, 1.0);
    }

    #[test]
    fn time_of_day_is_learned() {
        // Busy (10/min) from 12:00 to 13:00, silent otherwise, for 7 days.
        let mut b = Baseline::new(10080);
        for day in 0..7 {
            for m in 0..60 {
                b.record(day * 1440 + 12 * 60 + m, 10.0);
            }
        }
        let cov = Coverage { first_minute: 0 };
        let noon = b.fit(7 * 24 + 12, cov, &settings());
        let night = b.fit(7 * 24 + 3, cov, &settings());
        assert!(noon.current.rate > 4.0, "noon rate {}", noon.current.rate);
        assert!(
            night.current.rate < 0.5,
            "night rate {}",
            night.current.rate
        );
        // The same count is unremarkable at noon and wildly unusual at night.
        let at_noon = noon.window_model(7 * 1440 + 12 * 60 + 30, 5).p_rise(50);
        let at_night = night.window_model(7 * 1440 + 3 * 60 + 30, 5).p_rise(50);
        assert!(at_noon > 1e-3, "{at_noon}");
        assert!(at_night < 1e-12, "{at_night}");
    }

    #[test]
    fn a_never_seen_api_has_a_small_nonzero_rate() {
        let b = Baseline::new(10080);
        let fit = b.fit(170, Coverage { first_minute: 0 }, &settings());
        // overall = 0.5 / 10081; hour rate 1 / (420 + 1 / overall); weekday rate
        // 1 / (300 + 1 / hod).
        let overall = 0.5 / 10081.0;
        let hod = 1.0 / (420.0 + 1.0 / overall);
        assert!((fit.current.rate - 1.0 / (300.0 + 1.0 / hod)).abs() < 1e-15);
        let one_minute = fit.window_model(170 * 60, 1);
        // One call is not unusual at the default level; three calls are.
        assert!(one_minute.p_rise(1) > 2.2e-8);
        assert!(fit.window_model(170 * 60 + 4, 5).p_rise(3) < 2.2e-8);
    }

    #[test]
    fn clumped_history_is_overdispersed() {
        // A clump of 20 calls in one minute each day: far from Poisson.
        let mut b = Baseline::new(10080);
        for day in 0..7 {
            b.record(day * 1440 + 600, 20.0);
        }
        let fit = b.fit(7 * 24 + 10, Coverage { first_minute: 0 }, &settings());
        // Computed independently (Python, by the formulas in the module doc): days 0-1 and 4-6
        // are weekdays, 2-3 the weekend (1970-01-01 was a Thursday); hour-of-day rate
        // (140 + 1) / (420 + 1 / overall), day-type rates (100 + 1) / (300 + 1 / hod) and
        // (40 + 1) / (120 + 1 / hod); moment estimate of 1/size = 56.23384399834289.
        assert!(
            (fit.inverse_size - 56.233_843_998_342_89).abs() < 1e-9,
            "{}",
            fit.inverse_size
        );
        assert_eq!(fit.current_days, 7);
        // Another clump of 20 at the usual hour is then not an Insight.
        assert!(fit.window_model(7 * 1440 + 600, 1).p_rise(20) > 1e-6);
    }

    #[test]
    fn weekends_are_learned_apart() {
        // Two weeks from Monday 1970-01-05 (day 4): 10 calls a minute at 10:00 on weekdays,
        // 1 on weekends.
        let mut b = Baseline::new(10080);
        let monday = 4 * 1440;
        for day in 0..14 {
            let rate = if day % 7 >= 5 { 1.0 } else { 10.0 };
            for m in 0..60 {
                b.record(monday + day * 1440 + 600 + m, rate);
            }
        }
        let cov = Coverage {
            first_minute: monday,
        };
        assert_eq!(day_type((monday + 5 * 1440) / 60), 1);
        assert_eq!(day_type(monday / 60), 0);
        let saturday = b.fit((monday + 12 * 1440 + 600) / 60, cov, &settings());
        let monday_fit = b.fit((monday + 14 * 1440 + 600) / 60, cov, &settings());
        // Saturday 10:00: (2 * 60 * 1 + 60 * hod) / (120 + 60) with hod = 1680/425-ish = 3.95.
        assert!(saturday.current.rate < 2.5, "{}", saturday.current.rate);
        assert!(monday_fit.current.rate > 8.5, "{}", monday_fit.current.rate);
    }

    #[test]
    fn rare_clumps_widen_the_bounds_of_a_quiet_hour() {
        // A clump of 4 errors once a day at varying hours: rare, but always in clumps.
        let mut b = Baseline::new(10080);
        for day in 0..7 {
            b.record(day * 1440 + 200 + day * 97, 4.0);
        }
        let fit = b.fit(7 * 24 + 9, Coverage { first_minute: 0 }, &settings());
        // Each clump adds about 16 to the squared deviations and 4 to the expected calls.
        assert!(
            fit.variance_ratio > 3.5 && fit.variance_ratio < 4.5,
            "{}",
            fit.variance_ratio
        );
        // Another clump of 4 in one minute is then no Insight at the default level...
        assert!(fit.window_model(7 * 1440 + 9 * 60 + 30, 1).p_rise(4) > 2.2e-8);
        // ...while 20 a minute for 5 minutes still is.
        assert!(fit.window_model(7 * 1440 + 9 * 60 + 30, 5).p_rise(100) < 2.2e-8);
    }

    #[test]
    fn over_dispersion_is_measured_at_each_block_scale() {
        // 7 days of one 5-minute burst (6 calls a minute) at the start of every hour: 30 calls
        // an hour, as steady hour by hour as can be, but wildly clumped within the hour.
        let mut b = Baseline::new(10080);
        for hour in 0..168 {
            for m in 0..5 {
                b.record(hour * 60 + m, 6.0);
            }
        }
        let fit = b.fit(168, Coverage { first_minute: 0 }, &settings());
        // By hand, with every hour's rate r = 0.5 a minute (the prior moves it by < 1e-4):
        // 1 minute: (5 * 5.5^2 + 55 * 0.5^2 - 30) / (60 * 0.25) = 9;
        // 5 minutes (mean 2.5): (27.5^2 + 11 * 2.5^2 - 30) / (12 * 6.25) = 10.6;
        // 15 minutes (mean 7.5): (22.5^2 + 3 * 7.5^2 - 30) / (4 * 56.25) = 2.8667;
        // 60 minutes (mean 30): (0 - 30) < 0, so none.
        let k = fit.block_inverse_size;
        assert!((k[0] - 9.0).abs() < 1e-2, "{k:?}");
        assert!((k[1] - 10.6).abs() < 1e-2, "{k:?}");
        assert!((k[2] - 2.866_67).abs() < 1e-2, "{k:?}");
        assert_eq!(k[3], 0.0);
        assert_eq!(k[0], fit.inverse_size);
        // A 5-minute window's variance comes from the 5-minute scale: mean 2.5, extra
        // 5 * 5 * 0.25 * 10.6 = 66.25 (independent minutes would give 5 * 0.25 * 9 = 11.25).
        let five = fit.window_model(168 * 60 + 4, 5);
        let uncertainty = five.mean() * five.mean() / fit.current.shape;
        assert!(
            (five.variance() - (2.5 + 66.25 + uncertainty)).abs() < 0.1,
            "{}",
            five.variance()
        );
        // ...so another burst of 30 in 5 minutes is what this API does, not an Insight.
        assert!(five.p_rise(30) > 2.2e-8, "{}", five.p_rise(30));
    }

    #[test]
    fn late_calls_grow_every_scale() {
        let mut b = Baseline::new(10080);
        b.record(600, 2.0);
        b.add_late(600, 2.0, 3.0);
        let slot = b.slot(10).unwrap();
        assert_eq!((slot.s1, slot.s2), (5.0, 25.0));
        assert_eq!(slot.sq, [25.0, 25.0]);
        assert_eq!(slot.squares(60), 25.0);
    }

    #[test]
    fn the_hours_a_window_reaches_into_are_no_part_of_its_baseline() {
        // 8 days of 1 call a minute; then, in the two hours before hour 200 (Friday
        // 1970-01-09 08:00), 3 calls a minute: an incident the windows of hour 200 reach into.
        let mut flat = Baseline::new(10080);
        let mut incident = Baseline::new(10080);
        for m in 0..200 * 60 {
            flat.record(m, 1.0);
            incident.record(m, if m >= 198 * 60 { 3.0 } else { 1.0 });
        }
        let cov = Coverage { first_minute: 0 };
        let (a, b) = (
            flat.fit(200, cov, &settings()),
            incident.fit(200, cov, &settings()),
        );
        assert_eq!(a, b, "the incident's own hours judge it");
        // 120 minutes ending at 08:59 expect 120 calls, not more: by hand, every hour of day
        // was seen on 5 weekdays at 1 a minute (shape 301), the rates
        // (300 + 1) / (300 + 1 / hod) with hod = (420 + 1) / (420 + 1 / overall) ~ 1.
        let m = b.window_model(200 * 60 + 59, 120);
        assert!((m.mean() - 120.0).abs() < 0.01, "{}", m.mean());
        // Two hours later they are history like any other: 240 calls more than the flat
        // series in the window.
        let (c, d) = (
            flat.fit(202, cov, &settings()),
            incident.fit(202, cov, &settings()),
        );
        let extra = (d.average - c.average) * d.minutes as f64;
        assert!((extra - 240.0).abs() < 1e-6, "{extra}");
    }

    #[test]
    fn a_ring_saved_without_the_lag_serves_a_shorter_window_not_silent_hours() {
        // A baseline from a store written before the lag: 169 slots for a 168-hour window.
        let mut b = Baseline {
            capacity: 169,
            slots: Vec::new(),
        };
        for m in 0..200 * 60 {
            b.record(m, 1.0);
        }
        let fit = b.fit(200, Coverage { first_minute: 0 }, &settings());
        // 166 hours (hours 32..198), each minute with one call: no hour counted as silent.
        assert_eq!(fit.minutes, 166 * 60);
        assert!((fit.average - 1.0).abs() < 1e-12, "{}", fit.average);
    }

    #[test]
    fn late_calls_change_a_fit_exactly_when_it_reads_their_hour() {
        // 8 days of 2 calls a minute, with a few busier minutes, fitted for hour 200.
        let mut b = Baseline::new(10080);
        for m in 0..200 * 60 + 30 {
            b.record(m, if m % 97 == 0 { 7.0 } else { 2.0 });
        }
        let cov = Coverage { first_minute: 0 };
        let fit = b.fit(200, cov, &settings());
        for hour in [195, 196, 197, 198, 199, 200] {
            let mut late = b.clone();
            late.add_late(hour * 60 + 10, 2.0, 5.0);
            let refit = late.fit(200, cov, &settings());
            assert_eq!(refit != fit, fit.reads_hour(hour), "hour {hour}");
        }
        assert!(fit.reads_hour(197) && !fit.reads_hour(198));
    }

    #[test]
    fn the_rates_half_of_a_fit_is_the_fit_s_own() {
        // A week of weekday mornings at 3 a minute, with a clump now and then.
        let mut b = Baseline::new(10080);
        for m in 0..9 * 1440 {
            let busy = (m % 1440) / 60 >= 8 && (m % 1440) / 60 < 12 && (m / 1440) % 7 != 2;
            b.record(
                m,
                if busy {
                    3.0
                } else if m % 401 == 0 {
                    9.0
                } else {
                    0.0
                },
            );
        }
        let cov = Coverage { first_minute: 0 };
        for hour in [8 * 24 + 3, 8 * 24 + 9, 8 * 24 + 13] {
            let rates = b.rates(hour, cov, &settings());
            let fit = b.fit(hour, cov, &settings());
            assert_eq!(
                (rates.hour, rates.current, rates.previous, rates.max_rate),
                (fit.hour, fit.current, fit.previous, fit.max_rate)
            );
            assert_eq!(b.complete(&rates, cov, &settings()), fit);
        }
    }

    #[test]
    fn window_hours_step_like_the_divisions_they_replace() {
        let mut b = Baseline::new(10080);
        for m in (0..400 * 60).step_by(7) {
            b.record(m, 1.0);
        }
        // Across the ring's wrap, midnights and week boundaries.
        let settings = settings();
        let walked: Vec<_> = b.hours(150, 400, &settings).collect();
        assert_eq!(walked.len(), 250);
        for (h, g) in walked.iter().zip(150..400) {
            assert_eq!(h.hour, g);
            assert_eq!(h.hod, g.rem_euclid(24) as usize);
            assert_eq!(h.day_type, day_type(g));
            assert_eq!(h.slot.map(|s| s.hour), b.slot(g).map(|s| s.hour));
        }
        assert!(walked.iter().any(|h| h.slot.is_none()) && walked.iter().any(|h| h.slot.is_some()));
    }

    #[test]
    fn coverage_counts_only_minutes_after_the_first_record() {
        let c = Coverage { first_minute: 90 };
        assert_eq!(c.minutes_in_hour(0), 0.0);
        assert_eq!(c.minutes_in_hour(1), 30.0);
        assert_eq!(c.minutes_in_hour(2), 60.0);
    }

    #[test]
    fn only_hours_with_calls_are_held_and_hours_out_of_reach_are_dropped() {
        let mut b = Baseline::new(10080);
        assert_eq!(b.slots(), 171);
        // One call a day for three weeks: 21 hours with calls, of which the last 171 hours
        // (7 days and 3 hours) hold 8 (days 13..=20 at 05:00, the oldest 7 days 3 hours back).
        for day in 0..21 {
            b.record(day * 1440 + 5 * 60 + 7, 1.0);
        }
        assert_eq!(b.hours_held(), 8);
        let newest = 20 * 24 + 5;
        assert!(b.slot(newest).is_some());
        assert!(
            b.slot(newest - 7 * 24).is_some(),
            "168 hours back is within 171"
        );
        assert!(b.slot(newest - 8 * 24).is_none());
        // A late call to an hour out of reach changes nothing; to a held hour, it counts.
        b.add_late(newest * 60 - 8 * 1440, 0.0, 5.0);
        assert_eq!(b.hours_held(), 8);
        b.add_late(newest * 60 + 7, 1.0, 2.0);
        assert_eq!(b.slot(newest).map(|s| s.s1), Some(3.0));
        // Restoring a minute of a silent hour within reach creates it, in order.
        b.restore((newest - 2) * 60, 0.0, 4.0);
        assert_eq!(b.hours_held(), 9);
        assert!(b.slots.windows(2).all(|w| w[0].hour < w[1].hour));
        // Stored, an idle baseline is small, and decodes to itself.
        let bytes = postcard::to_allocvec(&b).unwrap();
        assert!(bytes.len() < 9 * 80, "{} bytes", bytes.len());
        assert_eq!(postcard::from_bytes::<Baseline>(&bytes).unwrap(), b);
    }

    #[test]
    fn a_decoded_baseline_out_of_order_or_wider_than_its_capacity_is_refused() {
        let slot = |hour| HourSlot::empty(hour);
        for (capacity, hours) in [
            (171, vec![5, 4]),
            (171, vec![0, 171]),
            (2, vec![]),
            (171, vec![3, 3]),
        ] {
            let b = Baseline {
                capacity,
                slots: hours.into_iter().map(slot).collect(),
            };
            let bytes = postcard::to_allocvec(&b).unwrap();
            assert!(postcard::from_bytes::<Baseline>(&bytes).is_err(), "{b:?}");
        }
    }
}
