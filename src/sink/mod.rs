//! Where Insights go: every writer is one file here behind [`InsightSink`], and [`Outputs`]
//! (one description of what a command asked for) opens them for `score` and `watch` alike.
//!
//! | sink | file | asked for with |
//! | --- | --- | --- |
//! | JSON lines on standard output, or appended to a file without repeating a record | [`json_lines`] | (default), `--out FILE` |
//! | gzip files in CloudTrail's `CloudTrail-Insight/` S3 layout | [`s3_layout`] | `--insights-dir DIR` |
//! | a log line and a metric per record (continuous mode) | [`log`] | `watch` |
//! | nothing: records are counted and dropped | [`null`] | `--to null` |
//! | an HTTP POST per record: the record, a Slack or a Teams message | [`webhook`] | `--to webhook:URL`, `--to slack:URL`, `--to teams:URL` |
//! | an SNS message or an EventBridge event per record | [`aws`] | `--to sns:TOPIC_ARN`, `--to eventbridge:BUS` |
//! | kept in memory | [`memory`] | the library (evaluation runs, tests) |
//!
//! Adding a sink is one file here and one line in [`open_to`] (the `--to KIND[:ARG]` registry).

pub mod aws;
pub mod delivered;
pub mod finding;
pub mod json_lines;
pub mod log;
pub mod memory;
pub mod null;
pub mod ocsf;
pub mod s3_layout;
pub mod securityhub;
pub mod webhook;

use std::io::BufWriter;
use std::path::PathBuf;

pub use json_lines::{AppendJsonLines, JsonLinesSink};
pub use s3_layout::S3LayoutSink;

use crate::insight::InsightRecord;

/// Receives Insights records as the engine emits them.
pub trait InsightSink {
    /// Takes one record. An error concerns this record only: the sink stays usable.
    fn write(&mut self, record: &InsightRecord) -> Result<(), SinkError>;
    /// Makes everything written so far durable (flushes, writes buffered files). May be called
    /// again after more writes.
    fn finish(&mut self) -> Result<(), SinkError>;
}

/// Why a sink could not take or store a record.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Writing to the output stream failed.
    #[error("cannot write Insights records: {0}")]
    Write(#[source] std::io::Error),
    /// A file-system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A record could not be serialised.
    #[error("cannot serialise Insights record: {0}")]
    Json(#[source] serde_json::Error),
    /// An account or region that would not be a single safe path component.
    #[error("refusing {field} {value:?} as a path component")]
    UnsafePathComponent {
        /// `recipientAccountId` or `awsRegion`.
        field: &'static str,
        /// The value refused (cut to 128 characters).
        value: String,
    },
    /// An `eventTime` that is not an RFC 3339 UTC time.
    #[error("eventTime {0:?} is not a UTC time")]
    BadEventTime(String),
    /// An endpoint refused a record for good (a 4xx other than 408 and 429): not retried.
    #[error("{sink} refused the record {event_id} with HTTP {status}")]
    Rejected {
        /// The sink and its host.
        sink: String,
        /// The HTTP status.
        status: u16,
        /// The record's eventID.
        event_id: String,
    },
    /// An AWS service did not take a record (after the SDK's own retries).
    #[error("{sink} did not take the record: {why}; it stays in the outbox and is sent again")]
    Publish {
        /// The sink and its topic or bus.
        sink: String,
        /// What the service or the SDK said.
        why: String,
    },
    /// An endpoint could not be reached, or kept failing, through every attempt.
    #[error("{sink} did not take the record after {attempts} attempts (timeouts, refused connections, 408, 429 or 5xx); it stays in the outbox and is sent again")]
    Unreachable {
        /// The sink and its host.
        sink: String,
        /// Attempts made.
        attempts: u32,
    },
}

/// Opens the sink a `--to KIND[:ARG]` names; `state_dir` (the store's folder) keeps what a
/// sink must remember across runs.
pub fn open_to(
    spec: &str,
    state_dir: Option<&std::path::Path>,
) -> Result<Box<dyn InsightSink + Send>, OutputError> {
    let (kind, arg) = spec.split_once(':').unwrap_or((spec, ""));
    let webhook = |format| -> Result<Box<dyn InsightSink + Send>, OutputError> {
        Ok(Box::new(webhook::WebhookSink::open(
            format, arg, state_dir,
        )?))
    };
    Ok(match kind {
        "null" => Box::new(null::NullSink::default()),
        "webhook" => webhook(webhook::Format::Json)?,
        "slack" => webhook(webhook::Format::Slack)?,
        "teams" => webhook(webhook::Format::Teams)?,
        "sns" => Box::new(aws::AwsSink::sns(arg, state_dir)?),
        "eventbridge" => Box::new(aws::AwsSink::eventbridge(arg, state_dir)?),
        "securityhub" => Box::new(securityhub::SecurityHubSink::open(arg, state_dir)?),
        "ocsf" => Box::new(ocsf::OcsfSink::open(arg)?),
        _ => {
            return Err(OutputError::UnknownSink {
                spec: spec.to_owned(),
            })
        }
    })
}

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
    /// Further sinks, as `--to KIND[:ARG]` names them ([`open_to`]).
    pub to: Vec<String>,
    /// Where sinks keep what they must remember across runs (the store's folder).
    pub state_dir: Option<PathBuf>,
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
    /// A webhook sink could not be set up.
    #[error(transparent)]
    Webhook(#[from] webhook::WebhookError),
    /// An SNS, EventBridge or Security Hub sink could not be set up.
    #[error(transparent)]
    Aws(#[from] aws::AwsSinkError),
    /// The OCSF file could not be opened.
    #[error(transparent)]
    Ocsf(#[from] ocsf::OcsfFileError),
    /// `--to` names no sink this build knows.
    #[error("--to {spec:?}: unknown sink (known: null, webhook:URL, slack:URL, teams:URL, sns:TOPIC_ARN, eventbridge:BUS, securityhub:[ACCOUNT], ocsf:FILE)")]
    UnknownSink {
        /// What was given.
        spec: String,
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
        for spec in &self.to {
            sinks.push(open_to(spec, self.state_dir.as_deref())?);
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

#[cfg(test)]
pub(crate) mod fixtures {
    use crate::insight::{InsightRecord, InsightState};

    /// AWS's call-rate example, shortened: account 838185438692, us-east-1, 2020-07-21T20:56Z.
    const RECORD: &str = r#"{"eventVersion":"1.07","eventTime":"2020-07-21T20:56:00Z","awsRegion":"us-east-1",
     "eventID":"abcd00b0-ccfe-422d-961c-98a2198a408x","eventType":"AwsCloudTrailInsight",
     "recipientAccountId":"838185438692","sharedEventID":"7bb000gg-22b3-4c03-94af-c74tj0c8m7c0",
     "insightDetails":{"state":"Start","eventSource":"autoscaling.amazonaws.com","eventName":"CompleteLifecycleAction",
      "insightType":"ApiCallRateInsight",
      "insightContext":{"statistics":{"baseline":{"average":0.0000882145},"insight":{"average":0.6},"insightDuration":5,"baselineDuration":11336}}},
     "eventCategory":"Insight"}"#;

    pub fn record() -> InsightRecord {
        serde_json::from_str(RECORD).unwrap()
    }

    pub fn end_record() -> InsightRecord {
        let mut r = record();
        r.insight_details.state = InsightState::End;
        r.event_time = "2020-07-21T20:59:00Z".into();
        r.event_id = "end".into();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_opens_the_registered_sink_and_refuses_an_unknown_one() {
        let outputs = Outputs {
            quiet: true,
            to: vec!["null".into()],
            ..Outputs::default()
        };
        let mut sinks = outputs.open().unwrap();
        let mut all = sinks.as_dyn();
        assert_eq!(all.len(), 2);
        for sink in all.iter_mut() {
            sink.write(&fixtures::record()).unwrap();
            sink.finish().unwrap();
        }
        let err = open_to("pager:duty", None).err().unwrap();
        assert!(err.to_string().contains("unknown sink"), "{err}");
        let err = Outputs {
            to: vec!["nope".into()],
            ..Outputs::default()
        }
        .open()
        .err()
        .unwrap();
        assert!(err.to_string().contains("\"nope\""), "{err}");
    }
}
