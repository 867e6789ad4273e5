//! Where Insights records go: a JSON-lines stream, or gzip files in the key layout CloudTrail
//! uses for `CloudTrail-Insight/` in S3 (so tools that read AWS's Insights read ours). Batch and
//! continuous mode push records through the same [`InsightSink`] trait.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Timelike, Utc};
use flate2::write::GzEncoder;
use flate2::Compression;
use uuid::Uuid;

use super::InsightRecord;

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
}

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

/// One output file: account, region, and the UTC hour (in minutes since the epoch) of eventTime.
type FileKey = (String, String, i64);

/// Writes gzip files `{"Records":[...]}` under
/// `root/AWSLogs/<account>/CloudTrail-Insight/<region>/YYYY/MM/DD/`, one per account, region and
/// UTC hour of `eventTime`, named
/// `<account>_CloudTrail-Insight_<region>_<YYYYMMDDTHH00Z>_<16 chars>.json.gz` where the 16
/// characters are derived from the file's content: the same records give the same name, other
/// records for the same hour give a new file rather than overwrite one.
#[derive(Debug)]
pub struct S3LayoutSink {
    root: PathBuf,
    /// Serialised records per file, in the order written.
    pending: BTreeMap<FileKey, Vec<Vec<u8>>>,
    written: Vec<PathBuf>,
}

impl S3LayoutSink {
    /// A sink writing under `root`, which is created if missing.
    pub fn new(root: &Path) -> Result<Self, SinkError> {
        fs::create_dir_all(root).map_err(|source| SinkError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        Ok(S3LayoutSink {
            root: root.to_path_buf(),
            pending: BTreeMap::new(),
            written: Vec::new(),
        })
    }

    /// Every file written so far by [`InsightSink::finish`], in order.
    pub fn written_files(&self) -> &[PathBuf] {
        &self.written
    }

    fn write_file(&self, key: &FileKey, records: &[Vec<u8>]) -> Result<PathBuf, SinkError> {
        let (account, region, hour) = key;
        let content = records_document(records);
        let time = crate::series::minute_to_datetime(*hour)
            .ok_or_else(|| SinkError::BadEventTime(format!("minute {hour}")))?;
        let dir = self
            .root
            .join("AWSLogs")
            .join(account)
            .join("CloudTrail-Insight")
            .join(region)
            .join(time.format("%Y").to_string())
            .join(time.format("%m").to_string())
            .join(time.format("%d").to_string());
        let name = format!(
            "{account}_CloudTrail-Insight_{region}_{}_{}.json.gz",
            time.format("%Y%m%dT%H00Z"),
            content_tag(&content)
        );
        fs::create_dir_all(&dir).map_err(|source| SinkError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        let compressed = gz
            .write_all(&content)
            .and_then(|()| gz.finish())
            .map_err(SinkError::Write)?;
        let path = dir.join(&name);
        let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SinkError::Io { path, source }
        };
        // A leftover from a crashed run (or a planted symlink) is removed, never followed.
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&tmp)(e)),
            _ => {}
        }
        let result = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .and_then(|mut file| {
                file.write_all(&compressed)?;
                file.sync_all()
            })
            .map_err(io_err(&tmp))
            .and_then(|()| fs::rename(&tmp, &path).map_err(io_err(&path)));
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map(|()| path)
    }
}

impl InsightSink for S3LayoutSink {
    fn write(&mut self, record: &InsightRecord) -> Result<(), SinkError> {
        check_component(
            "recipientAccountId",
            &record.recipient_account_id,
            64,
            |c| c.is_ascii_alphanumeric() || c == b'-',
        )?;
        check_component("awsRegion", &record.aws_region, 32, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'
        })?;
        let hour = event_hour(&record.event_time)?;
        let json = serde_json::to_vec(record).map_err(SinkError::Json)?;
        self.pending
            .entry((
                record.recipient_account_id.clone(),
                record.aws_region.clone(),
                hour,
            ))
            .or_default()
            .push(json);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        while let Some((key, records)) = self.pending.pop_first() {
            match self.write_file(&key, &records) {
                Ok(path) => self.written.push(path),
                Err(e) => {
                    // Kept for a retry by a later finish().
                    self.pending.insert(key, records);
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

/// Refuses anything but 1..=max bytes all accepted by `allowed` (which must refuse `.`, `/`,
/// `\` and NUL), so the value is one path component that cannot climb out of the root.
fn check_component(
    field: &'static str,
    value: &str,
    max: usize,
    allowed: impl Fn(u8) -> bool,
) -> Result<(), SinkError> {
    if !value.is_empty() && value.len() <= max && value.bytes().all(allowed) {
        Ok(())
    } else {
        Err(SinkError::UnsafePathComponent {
            field,
            value: value.chars().take(128).collect(),
        })
    }
}

/// The UTC hour of an `eventTime`, as the minute the hour starts.
fn event_hour(event_time: &str) -> Result<i64, SinkError> {
    let time = DateTime::parse_from_rfc3339(event_time)
        .map_err(|_| SinkError::BadEventTime(event_time.chars().take(64).collect()))?
        .with_timezone(&Utc);
    Ok(time.timestamp().div_euclid(60) - i64::from(time.minute()))
}

/// `{"Records":[r1,r2,...]}` from already serialised records.
fn records_document(records: &[Vec<u8>]) -> Vec<u8> {
    let len = records.iter().map(|r| r.len() + 1).sum::<usize>() + 14;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(b"{\"Records\":[");
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(record);
    }
    out.extend_from_slice(b"]}");
    out
}

/// 16 characters of [0-9A-Za-z] from the SHA-1 (via UUID v5) of the content: stable across
/// versions and platforms, unlike std's hasher.
fn content_tag(content: &[u8]) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut n = Uuid::new_v5(&Uuid::NAMESPACE_OID, content).as_u128();
    let mut tag = String::with_capacity(16);
    for _ in 0..16 {
        tag.push(char::from(ALPHABET[(n % 62) as usize]));
        n /= 62;
    }
    tag
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insight::{read_insights, InsightState};

    /// AWS's call-rate example, shortened: account 838185438692, us-east-1, 2020-07-21T20:56Z.
    const RECORD: &str = r#"{"eventVersion":"1.07","eventTime":"2020-07-21T20:56:00Z","awsRegion":"us-east-1",
     "eventID":"abcd00b0-ccfe-422d-961c-98a2198a408x","eventType":"AwsCloudTrailInsight",
     "recipientAccountId":"838185438692","sharedEventID":"7bb000gg-22b3-4c03-94af-c74tj0c8m7c0",
     "insightDetails":{"state":"Start","eventSource":"autoscaling.amazonaws.com","eventName":"CompleteLifecycleAction",
      "insightType":"ApiCallRateInsight",
      "insightContext":{"statistics":{"baseline":{"average":0.0000882145},"insight":{"average":0.6},"insightDuration":5,"baselineDuration":11336}}},
     "eventCategory":"Insight"}"#;

    fn record() -> InsightRecord {
        serde_json::from_str(RECORD).unwrap()
    }

    fn end_record() -> InsightRecord {
        let mut r = record();
        r.insight_details.state = InsightState::End;
        r.event_time = "2020-07-21T20:59:00Z".into();
        r.event_id = "end".into();
        r
    }

    /// Every file under `dir`, relative to it, sorted.
    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = walkdir::WalkDir::new(dir)
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| !e.file_type().is_dir())
            .map(|e| e.path().strip_prefix(dir).unwrap().to_path_buf())
            .collect();
        out.sort();
        out
    }

    const HOUR_DIR: &str = "AWSLogs/838185438692/CloudTrail-Insight/us-east-1/2020/07/21";
    const NAME_PREFIX: &str = "838185438692_CloudTrail-Insight_us-east-1_20200721T2000Z_";

    fn assert_layout_name(relative: &Path) {
        assert_eq!(relative.parent().unwrap(), Path::new(HOUR_DIR));
        let name = relative.file_name().unwrap().to_str().unwrap();
        let tag = name
            .strip_prefix(NAME_PREFIX)
            .and_then(|rest| rest.strip_suffix(".json.gz"))
            .unwrap_or_else(|| panic!("unexpected name {name}"));
        assert_eq!(tag.len(), 16);
        assert!(tag.bytes().all(|c| c.is_ascii_alphanumeric()), "{tag}");
    }

    #[test]
    fn records_of_one_hour_land_in_one_file_at_the_layout_path() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = S3LayoutSink::new(dir.path()).unwrap();
        let mut next_hour = record();
        next_hour.event_time = "2020-07-21T21:00:00Z".into();
        sink.write(&record()).unwrap();
        sink.write(&next_hour).unwrap();
        sink.write(&end_record()).unwrap();
        sink.finish().unwrap();

        let files = files_under(dir.path());
        assert_eq!(files.len(), 2, "{files:?}");
        assert_layout_name(&files[0]);
        assert!(files[1].starts_with(HOUR_DIR));
        assert!(files[1]
            .to_str()
            .unwrap()
            .contains("_us-east-1_20200721T2100Z_"));
        assert_eq!(sink.written_files().len(), 2);

        let bytes = fs::read(dir.path().join(&files[0])).unwrap();
        assert_eq!(bytes[..2], [0x1f, 0x8b]);
        assert_eq!(read_insights(&bytes).unwrap(), [record(), end_record()]);
        let mut plain = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut plain)
            .unwrap();
        assert!(
            plain.starts_with("{\"Records\":[{\"eventVersion\""),
            "{plain}"
        );
        let next = fs::read(dir.path().join(&files[1])).unwrap();
        assert_eq!(read_insights(&next).unwrap(), [next_hour]);
    }

    #[test]
    fn names_depend_on_content_only() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for root in [a.path(), b.path()] {
            let mut sink = S3LayoutSink::new(root).unwrap();
            sink.write(&record()).unwrap();
            sink.finish().unwrap();
        }
        assert_eq!(files_under(a.path()), files_under(b.path()));

        // A later run with other records for the same hour adds a file, keeps the first.
        let mut sink = S3LayoutSink::new(a.path()).unwrap();
        sink.write(&end_record()).unwrap();
        sink.finish().unwrap();
        let files = files_under(a.path());
        assert_eq!(files.len(), 2, "{files:?}");
        for f in &files {
            assert_layout_name(f);
        }
        // finish() drained the buffer: calling it again writes nothing new.
        sink.finish().unwrap();
        assert_eq!(files_under(a.path()).len(), 2);
    }

    #[test]
    fn refuses_path_components_that_could_escape_the_root() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        let mut sink = S3LayoutSink::new(&root).unwrap();
        let bad_accounts = [
            "../../etc",
            "..",
            "",
            "a.b",
            "a/b",
            "a\\b",
            "a\0b",
            &"1".repeat(65),
        ];
        for account in bad_accounts {
            let mut r = record();
            r.recipient_account_id = account.to_string();
            match sink.write(&r) {
                Err(SinkError::UnsafePathComponent { field, .. }) => {
                    assert_eq!(field, "recipientAccountId")
                }
                other => panic!("{account:?} accepted: {other:?}"),
            }
        }
        let bad_regions = [
            "us-east-1/../../x",
            "US-EAST-1",
            "..",
            "",
            "us east",
            &"a".repeat(33),
        ];
        for region in bad_regions {
            let mut r = record();
            r.aws_region = region.to_string();
            match sink.write(&r) {
                Err(SinkError::UnsafePathComponent { field, value }) => {
                    assert_eq!(field, "awsRegion");
                    assert_eq!(value, region);
                }
                other => panic!("{region:?} accepted: {other:?}"),
            }
        }
        let mut r = record();
        r.event_time = "not a time".into();
        assert!(matches!(sink.write(&r), Err(SinkError::BadEventTime(_))));

        // Still usable for good records, and nothing was created anywhere but the one file.
        sink.write(&record()).unwrap();
        sink.finish().unwrap();
        let files = files_under(outer.path());
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].starts_with(Path::new("root").join(HOUR_DIR)));
        let entries: Vec<_> = fs::read_dir(outer.path()).unwrap().collect();
        assert_eq!(entries.len(), 1);
    }

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

    #[test]
    fn content_tag_is_sixteen_alphanumerics_and_depends_on_content() {
        let a = content_tag(b"{\"Records\":[]}");
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(a, content_tag(b"{\"Records\":[]}"));
        assert_ne!(a, content_tag(b"{\"Records\":[1]}"));
    }

    #[test]
    fn hour_of_event_time() {
        // 2023-07-10T12:08:00Z -> 12:00.
        assert_eq!(
            event_hour("2023-07-10T12:08:00Z").unwrap(),
            1_688_990_880 / 60 - 8
        );
        assert!(event_hour("yesterday").is_err());
    }
}
