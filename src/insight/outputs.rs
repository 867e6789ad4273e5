//! Where a run's Insights go, described once for `score` and `watch`: the JSON-lines output
//! (standard output, nothing, or a file appended to without repeating a record) and the
//! CloudTrail `CloudTrail-Insight/` layout. A command opens its [`Outputs`] into [`Sinks`] and
//! hands them to the engine; a new kind of output is one sink type and one line in
//! [`Outputs::open`].

use std::io::BufWriter;
use std::path::PathBuf;

use super::sink::{AppendJsonLines, InsightSink, JsonLinesSink, S3LayoutSink, SinkError};

/// The outputs a command was asked for.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// JSON lines to this file (appended to; records already in it are not written again);
    /// `None`: standard output.
    pub out: Option<PathBuf>,
    /// Empty `out` before the run (`score --overwrite`).
    pub overwrite: bool,
    /// No JSON lines on standard output when no `out` is given.
    pub quiet: bool,
    /// Also write gzip files in CloudTrail's `CloudTrail-Insight/` layout under this folder.
    pub insights_dir: Option<PathBuf>,
    /// Write each record to standard output as it comes (continuous mode) rather than through a
    /// buffer flushed when the run commits.
    pub unbuffered_stdout: bool,
}

/// Why an output could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The JSON-lines file could not be opened or emptied.
    #[error("opening {path}: {error}")]
    Out {
        /// The file.
        path: PathBuf,
        /// What the file system said (in the message, not as a separate cause: said once).
        error: std::io::Error,
    },
    /// The `--insights-dir` folder could not be prepared.
    #[error("preparing {path}: {error}")]
    InsightsDir {
        /// The folder.
        path: PathBuf,
        /// Why (in the message, said once).
        error: SinkError,
    },
}

/// The sinks of a run, in the order records are written to them.
pub struct Sinks {
    sinks: Vec<Box<dyn InsightSink + Send>>,
}

impl Outputs {
    /// Opens every output asked for.
    pub fn open(&self) -> Result<Sinks, OutputError> {
        let mut sinks: Vec<Box<dyn InsightSink + Send>> = Vec::new();
        sinks.push(match &self.out {
            Some(path) => {
                let out = |error| OutputError::Out {
                    path: path.clone(),
                    error,
                };
                if self.overwrite && std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
                    std::fs::File::create(path).map_err(out)?;
                }
                Box::new(AppendJsonLines::open(path).map_err(out)?)
            }
            None if self.quiet => Box::new(JsonLinesSink::new(std::io::sink())),
            None if self.unbuffered_stdout => Box::new(JsonLinesSink::new(std::io::stdout())),
            None => Box::new(JsonLinesSink::new(BufWriter::new(std::io::stdout()))),
        });
        if let Some(dir) = &self.insights_dir {
            let sink = S3LayoutSink::new(dir).map_err(|error| OutputError::InsightsDir {
                path: dir.clone(),
                error,
            })?;
            sinks.push(Box::new(sink));
        }
        Ok(Sinks { sinks })
    }
}

impl Sinks {
    /// The sinks, as the engine takes them.
    pub fn as_dyn(&mut self) -> Vec<&mut dyn InsightSink> {
        self.sinks
            .iter_mut()
            .map(|s| s.as_mut() as &mut dyn InsightSink)
            .collect()
    }

    /// The sinks with `also` right after the JSON lines (continuous mode's log line, written
    /// once the record is in the output and before the layout's files).
    pub fn as_dyn_with<'a>(
        &'a mut self,
        also: &'a mut dyn InsightSink,
    ) -> Vec<&'a mut dyn InsightSink> {
        let mut sinks = self.as_dyn();
        sinks.insert(sinks.len().min(1), also);
        sinks
    }
}
