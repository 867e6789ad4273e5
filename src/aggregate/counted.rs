//! Counts made elsewhere entering the aggregator: rows of the aggregate tables
//! (`docs/scale-out.md`), which a distributed engine counted with the rules [`super::Aggregator`]
//! applies to records (deduplicated, late calls marked). Each row lands where a record's call
//! would have: a pending cell with its attributions, or a late count for history.

use std::sync::Arc;

use super::Aggregator;
use crate::series::kind;
use crate::series::{Attribute, Minute, SeriesKey};

impl Aggregator {
    /// Adds `records` records of any kind of an account/region at `minute` (the heartbeat),
    /// late when `late` or when the minute is before `final_before`.
    pub fn add_activity(
        &mut self,
        account: &Arc<str>,
        region: &Arc<str>,
        minute: Minute,
        records: u64,
        late: bool,
        final_before: Option<Minute>,
    ) {
        self.stats.records += records;
        let late = late || final_before.is_some_and(|f| minute < f);
        self.count_heartbeat(account, region, minute, records, late);
    }

    /// Adds `calls` calls of the series `key` at `minute`, with the values that made them
    /// (`who`: attribute, value, calls; the kind's attributes only are kept), late when `late`
    /// or when the minute is before `final_before` (late calls reach history as counts only).
    pub fn add_calls(
        &mut self,
        key: SeriesKey,
        minute: Minute,
        calls: u64,
        who: &[(Attribute, Arc<str>, u64)],
        late: bool,
        final_before: Option<Minute>,
    ) {
        let kind = kind::of(key.insight_type);
        *kind.tally(&mut self.stats) += calls;
        let Some(id) = self.registry.series_id_within(key, self.max_series) else {
            self.refused += calls;
            return;
        };
        let capacity = self.capacity;
        let late = late || final_before.is_some_and(|f| minute < f);
        let Some(cell) = self.cell_for(id, minute, calls, late) else {
            return;
        };
        let by = &mut cell.attributions.by_attribute;
        for (attribute, value, n) in who {
            if !kind.attributes().contains(attribute) {
                continue;
            }
            if let Some(top) = by.get_mut(attribute.index()) {
                top.add(value, *n, capacity);
            }
        }
    }
}
