//! An archive to score: files, folders (a trail's S3 layout, synced) and `-`, listed one delivery
//! day at a time (memory holds one day's listing), leaving out files a previous run ingested.

use std::collections::VecDeque;
use std::path::PathBuf;

use super::{Ending, Input, Listed, Pull, Source, SourceError};
use crate::ingest::{self, InputSource};
use crate::store::Store;

/// A finite archive, in delivery order.
pub struct Archive {
    discovery: ingest::Discovery,
    /// A handle on the store, to ask what was ingested (read only).
    store: Store,
    /// Discovery problems already handed out.
    problems_seen: usize,
    /// What the day listed last still has to hand out.
    queue: VecDeque<Pull>,
    ended: bool,
}

impl Archive {
    /// Lists `inputs` (files, folders, `-`); `store` tells which files were ingested before.
    pub fn new(inputs: &[PathBuf], store: Store) -> Archive {
        Archive {
            discovery: ingest::Discovery::new(inputs),
            store,
            problems_seen: 0,
            queue: VecDeque::new(),
            ended: false,
        }
    }

    /// Delivery days still to list (for a progress bar).
    pub fn days_left(&self) -> usize {
        self.discovery.days_left()
    }

    /// Discovery problems not handed out yet.
    fn new_problems(&mut self) -> Vec<(String, String)> {
        let report = self.discovery.report();
        let problems = report
            .problems
            .iter()
            .skip(self.problems_seen)
            .map(|(path, e)| (path.clone(), e.to_string()))
            .collect();
        self.problems_seen = report.problems.len();
        problems
    }

    /// Lists the next day into the queue; false when every day was listed.
    fn list_day(&mut self) -> Result<bool, SourceError> {
        let Some(day) = self.discovery.next_day() else {
            return Ok(false);
        };
        let problems = self.new_problems();
        let found = day.len() as u64;
        let mut todo = Vec::with_capacity(day.len());
        for file in day {
            // Only files on disk are recorded as ingested (standard input is not).
            if !matches!(file.source, InputSource::File(_)) {
                todo.push(Input::File(file));
                continue;
            }
            match self.store.ingested_file(&file.ingest_key)? {
                // A file whose size changed since it was read (a JSON-lines file a shipper
                // appends to, a file rewritten) is read again: the records counted then are
                // repeated deliveries (by eventID), the new ones are counted.
                Some(record) if record.size != file.size => {
                    let mut file = file;
                    file.reread = true;
                    todo.push(Input::File(file));
                }
                Some(_) => {}
                None => todo.push(Input::File(file)),
            }
        }
        self.queue.push_back(Pull::Listed(Listed {
            found,
            already_ingested: found - todo.len() as u64,
            problems,
        }));
        if !todo.is_empty() {
            self.queue.push_back(Pull::Inputs(todo));
        }
        Ok(true)
    }
}

impl Source for Archive {
    fn next(&mut self) -> Result<Pull, SourceError> {
        if let Some(pull) = self.queue.pop_front() {
            return Ok(pull);
        }
        if !self.ended && self.list_day()? {
            return self.next();
        }
        if !self.ended {
            self.ended = true;
            // Problems met after the last day's listing, or with no day at all (every input
            // missing, or not a file: a FIFO), are reported too.
            let problems = self.new_problems();
            if !problems.is_empty() {
                self.queue.push_back(Pull::Listed(Listed {
                    problems,
                    ..Listed::default()
                }));
            }
            let report = self.discovery.report();
            self.queue.push_back(Pull::End(Ending {
                not_activity: report.skipped_not_activity,
                ignored: report.ignored_other,
                stopped: false,
            }));
            return self.next();
        }
        Ok(Pull::End(Ending::default()))
    }
}
