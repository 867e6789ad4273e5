//! `score --aggregates`: the aggregate tables (`docs/scale-out.md`) fed to the same engine as
//! logs. Each delivery day's rows enter the aggregator where its records' calls would have
//! (on-time calls as pending cells with their attributions, late calls as late counts at the
//! point the contract says they arrived), and finality then moves to the day's newest event
//! time less the allowed lateness, as it does after the day's last file. Days are recorded in
//! the store like files, so a later run reads only new days and continues from the state.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{Engine, PipelineError, RunSummary, CHECKPOINT_EVERY};
use crate::insight::InsightSink;
use crate::series::{Attribute, Minute, SeriesKey};
use crate::source::aggregates::{
    self, ActivityRow, AggregateError, DayAggregates, SeriesRow, SeriesTuple, Shard,
};
use crate::store::FileRecord;

/// How aggregates are scored.
#[derive(Debug, Clone, Copy, Default)]
pub struct AggregateOptions {
    /// At the end, treat every minute as final (the aggregates are complete); when false the
    /// last `allowed_lateness` minutes stay pending for the next run.
    pub finalize: bool,
    /// Score only this shard's accounts.
    pub shard: Option<Shard>,
}

/// Late rows of one arrival point: activity and calls.
type LateRows = (Vec<ActivityRow>, Vec<SeriesRow>);

/// Who made a series' on-time calls in a minute: attribute, value, calls.
type Who = Vec<(Attribute, Arc<str>, u64)>;

impl Engine {
    /// Scores the aggregate tables under `root` (their new delivery days), writing Insights to
    /// `sinks` as checkpoints commit them. A day that cannot be read stops the run after the
    /// days before it are saved (the summary says which, the exit status is 2).
    pub fn score_aggregates(
        &mut self,
        root: &str,
        options: &AggregateOptions,
        sinks: &mut [&mut dyn InsightSink],
    ) -> Result<RunSummary, PipelineError> {
        if self.detector.profile.kinds() != crate::series::kind::API_KINDS {
            return Err(AggregateError::PrincipalsNotCarried.into());
        }
        self.redeliver(sinks)?;
        let listing = aggregates::list(root)?;
        let lateness = self.detector.profile.ingest.allowed_lateness_minutes;
        if let Some(written) = listing
            .manifest
            .as_ref()
            .and_then(|m| m.allowed_lateness_minutes)
        {
            if written != lateness {
                return Err(AggregateError::Manifest {
                    path: format!("{root}/{}", aggregates::MANIFEST),
                    problem: format!(
                        "the aggregates decided lateness with allowed_lateness_minutes = \
                         {written}, the profile says {lateness}: run the job again with \
                         --allowed-lateness-minutes {lateness}, or use a profile that says \
                         {written}"
                    ),
                }
                .into());
            }
        }
        let mut todo = Vec::new();
        for day in &listing.days {
            self.summary.files_found += 1;
            match self.store.ingested_file(&day.ingest_key())? {
                None => todo.push(day),
                Some(record) if record.size == day.bytes => {
                    self.summary.files_already_ingested += 1;
                    if let Some(new) = todo.first() {
                        return Err(AggregateError::OutOfOrder {
                            day: new.day.clone(),
                            scored: day.day.clone(),
                        }
                        .into());
                    }
                }
                Some(record) => {
                    return Err(AggregateError::Changed {
                        day: day.day.clone(),
                        was: record.size,
                        now: day.bytes,
                    }
                    .into())
                }
            }
        }
        let now_max = super::now_max_minute();
        let mut stopped = false;
        for files in todo {
            let day = match aggregates::read_day(&listing, files, now_max) {
                Ok(day) => day,
                Err(e) => {
                    self.summary.files_failed += 1;
                    let shown = format!("{root} delivery_day={}", files.day);
                    self.summary.problem(&shown, e.to_string());
                    self.summary.stopped_early = true;
                    stopped = true;
                    break;
                }
            };
            let records = self.absorb_day(day, options.shard);
            self.summary.files_read += 1;
            self.files_since.push((
                files.ingest_key(),
                FileRecord {
                    size: files.bytes,
                    records,
                },
            ));
            if self.checkpoint_due(CHECKPOINT_EVERY) {
                self.commit(sinks)?;
            }
        }
        if options.finalize && !stopped {
            self.finalize();
        }
        self.commit(sinks)?;
        Ok(self.take_summary())
    }

    /// Absorbs one delivery day of aggregates; returns the records it counted.
    fn absorb_day(&mut self, day: DayAggregates, shard: Option<Shard>) -> u64 {
        let DayAggregates {
            series,
            attributions,
            activity,
        } = day;
        // Finality follows the newest event time of every account, sharded or not: each shard
        // then decides lateness and finality exactly as one run does.
        let newest = activity.iter().map(|r| r.minute).max();
        let ours = |account: &str| shard.is_none_or(|s| s.holds(account));
        let categories = self.detector.profile.categories();
        let mut who: HashMap<(Minute, SeriesTuple), Who> = HashMap::new();
        for a in attributions {
            if ours(&a.series.1) {
                who.entry((a.minute, a.series))
                    .or_default()
                    .push((a.attribute, a.value, a.count));
            }
        }
        // The heaviest values first: the bounded counters then keep the true top values.
        for values in who.values_mut() {
            values.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.1.cmp(&b.1)));
        }
        let mut late: BTreeMap<Minute, LateRows> = BTreeMap::new();
        let mut on_time_activity = Vec::new();
        for row in activity.into_iter().filter(|r| ours(&r.account)) {
            match row.late_at {
                Some(at) => late.entry(at).or_default().0.push(row),
                None => on_time_activity.push(row),
            }
        }
        let mut on_time_series = Vec::new();
        for row in series
            .into_iter()
            .filter(|r| ours(&r.account) && categories.contains(r.category))
        {
            match row.late_at {
                Some(at) => late.entry(at).or_default().1.push(row),
                None => on_time_series.push(row),
            }
        }
        // New series and account/regions are registered in event-time order.
        on_time_activity.sort_by(|a, b| {
            (a.minute, &a.account, &a.region).cmp(&(b.minute, &b.account, &b.region))
        });
        on_time_series.sort_by_key(|r| (r.minute, r.series()));
        let final_before = self.final_before;
        let mut records = 0;
        for row in &on_time_activity {
            records += row.records;
            self.aggregator.add_activity(
                &row.account,
                &row.region,
                row.minute,
                row.records,
                false,
                final_before,
            );
        }
        for row in on_time_series {
            let values = who.remove(&(row.minute, row.series())).unwrap_or_default();
            let minute = row.minute;
            let calls = row.calls;
            self.aggregator
                .add_calls(key_of(row), minute, calls, &values, false, final_before);
        }
        // Late calls come in where the engine met them: once every minute before their
        // arrival point was final, before finality moved on.
        for (at, (activity, series)) in late {
            self.advance_to(at);
            for row in activity {
                records += row.records;
                self.aggregator.add_activity(
                    &row.account,
                    &row.region,
                    row.minute,
                    row.records,
                    true,
                    None,
                );
            }
            for mut row in series {
                row.late_at = None;
                let (minute, calls) = (row.minute, row.calls);
                self.aggregator
                    .add_calls(key_of(row), minute, calls, &[], true, None);
            }
            self.queue_late();
        }
        if let Some(newest) = newest {
            let max = self
                .aggregator
                .stats
                .max_minute
                .map_or(newest, |m| m.max(newest));
            self.aggregator.stats.max_minute = Some(max);
            let lateness = self.detector.profile.ingest.allowed_lateness_minutes;
            self.advance_to(max + 1 - lateness);
        }
        records
    }
}

fn key_of(row: SeriesRow) -> SeriesKey {
    SeriesKey {
        insight_type: row.insight_type,
        account: row.account,
        region: row.region,
        event_source: row.event_source,
        event_name: row.event_name,
        error_code: row.error_code,
        category: row.category,
        scope: crate::series::Scope::Api,
    }
}
