//! JSON lines: one compact record per line, to any writer (standard output), or appended to a
//! file that survives restarts without repeating a record.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::{InsightSink, SinkError};
use crate::insight::InsightRecord;

/// Writes one compact JSON record per line.
#[derive(Debug)]
pub struct JsonLinesSink<W: Write> {
    writer: W,
    line: Vec<u8>,
}

impl<W: Write> JsonLinesSink<W> {
    /// Writes to `writer`; each record is handed over in a single `write_all`, so an unbuffered
    /// file works, though a `BufWriter` saves system calls.
    pub fn new(writer: W) -> Self {
        JsonLinesSink {
            writer,
            line: Vec::with_capacity(2048),
        }
    }

    /// Gives the writer back (call [`InsightSink::finish`] first to flush it).
    pub fn into_inner(self) -> W {
        self.writer
    }
}

impl<W: Write> InsightSink for JsonLinesSink<W> {
    fn write(&mut self, record: &InsightRecord) -> Result<(), SinkError> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, record).map_err(SinkError::Json)?;
        self.line.push(b'\n');
        self.writer.write_all(&self.line).map_err(SinkError::Write)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.writer.flush().map_err(SinkError::Write)
    }
}

/// JSON lines appended to a file that survives restarts: at open, a partial last line (a crash
/// in the middle of a write) is cut, and the eventIDs already in the file are remembered so
/// that Insights delivered again after a crash are not written twice.
pub struct AppendJsonLines {
    file: BufWriter<File>,
    present: HashSet<String>,
    line: Vec<u8>,
}

impl AppendJsonLines {
    /// Opens (creating) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<AppendJsonLines> {
        // A FIFO or a device (`/dev/stdout`, `/dev/full`) is written to, never read back: reading
        // one could block or never end.
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
            let file = OpenOptions::new().append(true).open(path)?;
            return Ok(AppendJsonLines {
                file: BufWriter::new(file),
                present: HashSet::new(),
                line: Vec::with_capacity(2048),
            });
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut content = Vec::new();
        file.read_to_end(&mut content)?;
        let complete = content
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        if complete < content.len() {
            tracing::warn!(
                file = %path.display(),
                bytes = content.len() - complete,
                "cutting a partial last line left by an interrupted write"
            );
            file.set_len(complete as u64)?;
        }
        let mut present = HashSet::new();
        for line in content
            .get(..complete)
            .unwrap_or_default()
            .split(|&b| b == b'\n')
        {
            if line.is_empty() {
                continue;
            }
            #[derive(serde::Deserialize)]
            struct Id {
                #[serde(rename = "eventID")]
                event_id: String,
            }
            if let Ok(id) = serde_json::from_slice::<Id>(line) {
                present.insert(id.event_id);
            }
        }
        file.seek(SeekFrom::End(0))?;
        Ok(AppendJsonLines {
            file: BufWriter::new(file),
            present,
            line: Vec::with_capacity(2048),
        })
    }
}

impl InsightSink for AppendJsonLines {
    fn write(&mut self, record: &InsightRecord) -> Result<(), SinkError> {
        if self.present.contains(&record.event_id) {
            return Ok(());
        }
        self.line.clear();
        serde_json::to_writer(&mut self.line, record).map_err(SinkError::Json)?;
        self.line.push(b'\n');
        self.file.write_all(&self.line).map_err(SinkError::Write)?;
        self.present.insert(record.event_id.clone());
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.file.flush().map_err(SinkError::Write)?;
        match self.file.get_ref().sync_data() {
            // Devices and pipes cannot be synced; what matters is that the write went through.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
            other => other.map_err(SinkError::Write),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insight::read_insights;
    use crate::sink::fixtures::{end_record, record};

    #[test]
    fn json_lines_sink_writes_one_record_per_line() {
        let mut sink = JsonLinesSink::new(Vec::new());
        sink.write(&record()).unwrap();
        sink.write(&end_record()).unwrap();
        sink.finish().unwrap();
        let out = sink.into_inner();
        let text = std::str::from_utf8(&out).unwrap();
        let lines: Vec<&str> = text.split_terminator('\n').collect();
        assert_eq!(lines.len(), 2);
        assert!(text.ends_with('\n'));
        assert_eq!(lines[0], serde_json::to_string(&record()).unwrap());
        assert_eq!(read_insights(&out).unwrap(), [record(), end_record()]);
    }

    fn record_with_id(id: &str) -> InsightRecord {
        let line = format!(
            "{{\"eventVersion\":\"1.07\",\"eventTime\":\"2024-03-12T01:14:00Z\",\"awsRegion\":\"us-east-1\",\"eventID\":\"{id}\",\"eventType\":\"AwsCloudTrailInsight\",\"recipientAccountId\":\"111122223333\",\"sharedEventID\":\"s-{id}\",\"insightDetails\":{{\"state\":\"Start\",\"eventSource\":\"iam.amazonaws.com\",\"eventName\":\"CreateAccessKey\",\"insightType\":\"ApiCallRateInsight\",\"insightContext\":{{\"statistics\":{{\"baseline\":{{\"average\":0.1}},\"insight\":{{\"average\":8}},\"insightDuration\":1}},\"attributions\":[]}}}},\"eventCategory\":\"Insight\"}}"
        );
        serde_json::from_str(&line).unwrap()
    }

    #[test]
    fn appended_lines_survive_a_torn_write_and_are_never_repeated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("insights.jsonl");
        {
            let mut sink = AppendJsonLines::open(&path).unwrap();
            sink.write(&record_with_id("a")).unwrap();
            sink.write(&record_with_id("b")).unwrap();
            sink.finish().unwrap();
        }
        // A crash in the middle of writing "c".
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"eventVersion\":\"1.07\",\"eventTi")
            .unwrap();
        drop(f);
        let mut sink = AppendJsonLines::open(&path).unwrap();
        // Redelivery of the outbox: a and b are there already, c is not.
        for id in ["a", "b", "c"] {
            sink.write(&record_with_id(id)).unwrap();
        }
        sink.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let ids: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["eventID"].to_string())
            .collect();
        assert_eq!(ids, ["\"a\"", "\"b\"", "\"c\""]);
    }
}
