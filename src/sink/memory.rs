//! A sink that keeps records in memory (evaluation runs, tests, embedding trailsight as a
//! library).

use super::{InsightSink, SinkError};
use crate::insight::InsightRecord;

/// The records it was given, in order.
#[derive(Debug, Default)]
pub struct Memory(pub Vec<InsightRecord>);

impl InsightSink for Memory {
    fn write(&mut self, record: &InsightRecord) -> Result<(), SinkError> {
        self.0.push(record.clone());
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
