//! Gzip files in the key layout CloudTrail uses for `CloudTrail-Insight/` in S3, so tools that
//! read AWS's Insights read ours.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Timelike, Utc};
use flate2::write::GzEncoder;
use flate2::Compression;
use uuid::Uuid;

use super::{InsightSink, SinkError};
use crate::insight::InsightRecord;

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
    use crate::insight::read_insights;
    use crate::sink::fixtures::{end_record, record};

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
