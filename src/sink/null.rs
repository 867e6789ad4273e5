//! A sink that keeps nothing: records are counted and dropped (`--to null`: a dry run that still
//! commits, or a benchmark of everything but the writing).

use super::{InsightSink, SinkError};
use crate::insight::InsightRecord;

/// Counts the records it is given.
#[derive(Debug, Default)]
pub struct NullSink {
    /// Records taken.
    pub records: u64,
}

impl InsightSink for NullSink {
    fn write(&mut self, _: &InsightRecord) -> Result<(), SinkError> {
        self.records += 1;
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}
