//! `--to ocsf:FILE`: each record as an OCSF 1.1 Detection Finding (class 2004), one JSON object
//! per line, for SIEMs and lakes that take OCSF (Security Lake custom sources, Splunk, Sentinel).
//!
//! An episode is one finding (`finding_info.uid` is its `sharedEventID`): the Start is its
//! `Create` activity (1), the End its `Close` activity (3: the unusual activity is over; the
//! analyst's `status` stays `New`). The AWS record itself is kept whole in `raw_data`, and the
//! API, its service and the error code in `unmapped`, so nothing of the Insight is lost.
//!
//! Delivery: the file is appended to like `--out`: a torn last line is cut at open, and records
//! whose eventID (`metadata.uid`) the file already holds are not written again.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use serde_json::{json, Value};

use super::finding::{Finding, Level};
use super::{InsightSink, SinkError};
use crate::insight::InsightRecord;

/// The OCSF schema version written.
pub const OCSF_VERSION: &str = "1.1.0";
/// Detection Finding.
pub const CLASS_UID: u32 = 2004;
/// Findings.
pub const CATEGORY_UID: u32 = 2;

/// Why the OCSF file could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("--to ocsf:{path}: {error}")]
pub struct OcsfFileError {
    /// The file.
    pub path: PathBuf,
    /// What the file system said.
    pub error: std::io::Error,
}

/// Appends Detection Findings to a file.
pub struct OcsfSink {
    file: BufWriter<File>,
    present: HashSet<String>,
}

impl OcsfSink {
    /// `--to ocsf:FILE` (created if missing, appended to).
    pub fn open(arg: &str) -> Result<OcsfSink, OcsfFileError> {
        let path = PathBuf::from(arg);
        let fail = |error| OcsfFileError {
            path: path.clone(),
            error,
        };
        if arg.is_empty() {
            return Err(fail(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "expected a file name (--to ocsf:findings.jsonl)",
            )));
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(fail)?;
        let mut content = Vec::new();
        file.read_to_end(&mut content).map_err(fail)?;
        let complete = content
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        if complete < content.len() {
            tracing::warn!(file = %path.display(), "cutting a partial last line left by an interrupted write");
            file.set_len(complete as u64).map_err(fail)?;
        }
        let present = content
            .get(..complete)
            .unwrap_or_default()
            .split(|&b| b == b'\n')
            .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
            .filter_map(|v| v["metadata"]["uid"].as_str().map(str::to_owned))
            .collect();
        file.seek(SeekFrom::End(0)).map_err(fail)?;
        Ok(OcsfSink {
            file: BufWriter::new(file),
            present,
        })
    }
}

/// The Detection Finding of a record.
pub fn detection_finding(record: &InsightRecord) -> Result<Value, SinkError> {
    let f = Finding::of(record).map_err(|e| SinkError::Publish {
        sink: "ocsf".into(),
        why: e.to_string(),
    })?;
    let d = &record.insight_details;
    let (activity_id, activity) = if f.ended { (3, "Close") } else { (1, "Create") };
    let (severity_id, severity) = match f.level {
        Level::Low => (2, "Low"),
        Level::Medium => (3, "Medium"),
        Level::High => (4, "High"),
    };
    let ms = |t: chrono::DateTime<chrono::Utc>| t.timestamp_millis();
    let raw = serde_json::to_string(record).map_err(SinkError::Json)?;
    let mut finding = json!({
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "activity_id": activity_id,
        "activity_name": activity,
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": format!("Detection Finding: {activity}"),
        "time": ms(f.updated),
        "start_time": ms(f.first_observed),
        "severity_id": severity_id,
        "severity": severity,
        "status_id": 1,
        "status": "New",
        "message": f.title,
        "metadata": {
            "version": OCSF_VERSION,
            "uid": record.event_id,
            "correlation_uid": record.shared_event_id,
            "product": {
                "name": "trailsight",
                "vendor_name": "trailsight",
                "version": env!("CARGO_PKG_VERSION"),
            },
        },
        "finding_info": {
            "uid": f.id,
            "title": f.title,
            "desc": f.description,
            "types": [super::securityhub::FINDING_TYPE],
            "created_time": ms(f.first_observed),
            "first_seen_time": ms(f.first_observed),
            "last_seen_time": ms(f.last_observed),
            "modified_time": ms(f.updated),
            "analytic": {
                "name": d.insight_type.as_str(),
                "uid": f.generator,
                "type_id": 3,
                "type": "Statistical",
            },
        },
        "cloud": {
            "provider": "AWS",
            "region": f.region,
            "account": {"uid": f.account, "type_id": 10, "type": "AWS Account"},
        },
        "resources": [{
            "type": "AWS::::Account",
            "uid": f.account,
            "region": f.region,
            "cloud_partition": "aws",
        }],
        "raw_data": raw,
        "unmapped": {
            "insightType": d.insight_type.as_str(),
            "eventSource": d.event_source,
            "eventName": d.event_name,
            "state": d.state.as_str(),
        },
    });
    if f.ended {
        finding["end_time"] = json!(ms(f.last_observed));
    }
    if let Some(code) = &d.error_code {
        finding["unmapped"]["errorCode"] = json!(code);
    }
    if let Some(category) = &d.source_event_category {
        finding["unmapped"]["sourceEventCategory"] = json!(category);
    }
    Ok(finding)
}

impl InsightSink for OcsfSink {
    fn write(&mut self, record: &InsightRecord) -> Result<(), SinkError> {
        if self.present.contains(&record.event_id) {
            return Ok(());
        }
        let mut line = serde_json::to_vec(&detection_finding(record)?).map_err(SinkError::Json)?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(SinkError::Write)?;
        self.present.insert(record.event_id.clone());
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.file.flush().map_err(SinkError::Write)?;
        self.file.get_ref().sync_data().map_err(SinkError::Write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::fixtures::{end_record, record};

    #[test]
    fn a_start_creates_and_its_end_closes_one_finding() {
        let start = detection_finding(&record()).unwrap();
        let end = detection_finding(&end_record()).unwrap();
        assert_eq!(start["type_uid"], 200401);
        assert_eq!(end["type_uid"], 200403);
        assert_eq!(start["finding_info"]["uid"], end["finding_info"]["uid"]);
        assert_eq!(start["metadata"]["uid"], record().event_id);
        // 2020-07-21T20:56:00Z in milliseconds.
        assert_eq!(start["time"], 1_595_364_960_000i64);
        assert_eq!(end["end_time"], 1_595_365_140_000i64);
        assert!(start.get("end_time").is_none());
        let raw: InsightRecord = serde_json::from_str(start["raw_data"].as_str().unwrap()).unwrap();
        assert_eq!(raw, record());
        assert_eq!(start["cloud"]["account"]["uid"], "838185438692");
        assert_eq!(start["severity_id"], 4);
    }

    #[test]
    fn the_file_survives_a_torn_write_and_repeats_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("findings.jsonl");
        let arg = path.to_str().unwrap();
        {
            let mut sink = OcsfSink::open(arg).unwrap();
            sink.write(&record()).unwrap();
            sink.finish().unwrap();
        }
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"class_uid\":2004,\"meta").unwrap();
        drop(f);
        let mut sink = OcsfSink::open(arg).unwrap();
        sink.write(&record()).unwrap();
        sink.write(&end_record()).unwrap();
        sink.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let uids: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["metadata"]["uid"].to_string())
            .collect();
        assert_eq!(
            uids,
            [format!("{:?}", record().event_id), "\"end\"".to_owned()]
        );
        assert!(OcsfSink::open("").is_err());
    }
}
