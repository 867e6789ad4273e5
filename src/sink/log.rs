//! Continuous mode's log: one log line and one metric per Insight written, naming the input
//! whose reading produced it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::{InsightSink, SinkError};
use crate::insight::{InsightRecord, InsightState};
use crate::watch::metrics::Metrics;

/// One log line and one metric per Insight written.
pub struct LogSink {
    /// Counts Start and End records written.
    pub metrics: Arc<Metrics>,
    /// The input whose reading produced each Insight not yet written (by eventID): the log
    /// names it, so an operator (or the latency benchmark) can tell what triggered an Insight.
    pub triggers: Arc<Mutex<HashMap<String, String>>>,
}

impl InsightSink for LogSink {
    fn write(&mut self, r: &InsightRecord) -> Result<(), SinkError> {
        let d = &r.insight_details;
        match d.state {
            InsightState::Start => self.metrics.insights_start.fetch_add(1, Ordering::Relaxed),
            InsightState::End => self.metrics.insights_end.fetch_add(1, Ordering::Relaxed),
        };
        let trigger = self
            .triggers
            .lock()
            .ok()
            .and_then(|mut t| t.remove(&r.event_id))
            .unwrap_or_else(|| "-".to_owned());
        tracing::info!(
            state = d.state.as_str(),
            insight_type = d.insight_type.as_str(),
            event_source = %d.event_source,
            event_name = %d.event_name,
            error_code = d.error_code.as_deref().unwrap_or("-"),
            account = %r.recipient_account_id,
            region = %r.aws_region,
            event_time = %r.event_time,
            baseline = d.insight_context.statistics.baseline.average,
            insight = d.insight_context.statistics.insight.average,
            trigger = %trigger,
            "Insight"
        );
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
