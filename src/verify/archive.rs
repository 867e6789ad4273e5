//! What a local copy of a trail's bucket holds, by S3 key from `AWSLogs/` on: digest files,
//! their signature sidecars (`<digest>.signature`, hex, since a copy keeps no S3 metadata), and
//! log files. Object keys in digests are matched against these keys, whatever the bucket prefix.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::VerifyError;

/// The suffix of a digest's signature sidecar, appended to the digest's file name.
pub const SIGNATURE_SUFFIX: &str = ".signature";

/// A file of the archive.
#[derive(Debug, Clone)]
pub struct LocalFile {
    /// Where it is.
    pub path: PathBuf,
    /// What to show the user (the path as walked).
    pub display: String,
}

/// The archive's files by key (`AWSLogs/...`, `/`-separated).
#[derive(Debug, Default)]
pub struct Archive {
    /// Files under a `CloudTrail-Digest/` folder named `*.json.gz`.
    pub digests: BTreeMap<String, LocalFile>,
    /// Signature sidecars, by the key of the digest they sign.
    pub signatures: BTreeMap<String, LocalFile>,
    /// Files under a `CloudTrail/` folder named `*.json.gz`.
    pub logs: BTreeMap<String, LocalFile>,
}

impl Archive {
    /// Walks the inputs (folders recursively, never following symlinked folders; files as
    /// given). Files outside an `AWSLogs/` tree are not part of a trail's layout and are left
    /// out; an input that does not exist is an error.
    pub fn walk(inputs: &[PathBuf]) -> Result<Archive, VerifyError> {
        let mut archive = Archive::default();
        for input in inputs {
            let display = input.display().to_string();
            let meta = std::fs::metadata(input).map_err(|source| VerifyError::Io {
                path: display.clone(),
                source,
            })?;
            if !meta.is_dir() {
                archive.take(input, display);
                continue;
            }
            for entry in walkdir::WalkDir::new(input).follow_links(false) {
                let entry = entry.map_err(|e| VerifyError::Io {
                    path: e
                        .path()
                        .map_or_else(|| display.clone(), |p| p.display().to_string()),
                    source: e.into_io_error().unwrap_or_else(|| {
                        std::io::Error::other("a folder loop or an unreadable entry")
                    }),
                })?;
                if entry.file_type().is_file() {
                    archive.take(entry.path(), entry.path().display().to_string());
                }
            }
        }
        Ok(archive)
    }

    fn take(&mut self, path: &Path, display: String) {
        let Some(key) = aws_logs_key(path) else {
            return;
        };
        let file = LocalFile {
            path: path.to_path_buf(),
            display,
        };
        let in_folder = |name: &str| key.split('/').any(|part| part == name);
        if in_folder("CloudTrail-Digest") {
            if let Some(digest) = key.strip_suffix(SIGNATURE_SUFFIX) {
                self.signatures.insert(digest.to_owned(), file);
            } else if key.ends_with(".json.gz") {
                self.digests.insert(key, file);
            }
        } else if in_folder("CloudTrail") && key.ends_with(".json.gz") {
            self.logs.insert(key, file);
        }
    }
}

/// The part of a path or S3 key from its last `AWSLogs` component on, `/`-separated.
pub fn aws_logs_key(path: &Path) -> Option<String> {
    let parts: Vec<String> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    let start = parts.iter().rposition(|p| p == "AWSLogs")?;
    Some(parts.get(start..)?.join("/"))
}

/// An S3 object key from `AWSLogs/` on (the key itself when it has no such component).
pub fn object_key(s3_object: &str) -> String {
    let parts: Vec<&str> = s3_object.split('/').collect();
    match parts.iter().rposition(|p| *p == "AWSLogs") {
        Some(start) => parts.get(start..).unwrap_or_default().join("/"),
        None => s3_object.to_owned(),
    }
}

/// The account and region of a log file key: `AWSLogs/[o-id/]ACCOUNT/CloudTrail/REGION/...`.
pub fn account_region(key: &str) -> Option<(&str, &str)> {
    let parts: Vec<&str> = key.split('/').collect();
    let at = parts
        .iter()
        .position(|p| *p == "CloudTrail" || *p == "CloudTrail-Digest")?;
    Some((*parts.get(at.checked_sub(1)?)?, *parts.get(at + 1)?))
}

/// The trail a digest key belongs to: its key with the `YYYY/MM/DD/` folders and the trailing
/// `_YYYYMMDDTHHmmssZ[_backfill].json.gz` removed.
pub fn chain_of(digest_key: &str) -> String {
    let (folder, name) = digest_key.rsplit_once('/').unwrap_or(("", digest_key));
    let base = folder
        .split('/')
        .take_while(|p| !(p.len() == 4 && p.bytes().all(|b| b.is_ascii_digit())))
        .collect::<Vec<_>>()
        .join("/");
    let stem = name
        .strip_suffix(".json.gz")
        .unwrap_or(name)
        .trim_end_matches("_backfill");
    let trail = stem.rsplit_once('_').map_or(stem, |(t, _)| t);
    format!("{base}/{trail}")
}

/// Whether a digest key names a backfill digest (`..._backfill.json.gz`).
pub fn is_backfill(digest_key: &str) -> bool {
    digest_key.ends_with("_backfill.json.gz")
}

/// The end time in a digest key's name (`_YYYYMMDDTHHmmssZ`), in Unix seconds.
pub fn digest_key_time(digest_key: &str) -> Option<i64> {
    let name = digest_key.rsplit('/').next()?;
    let stem = name.strip_suffix(".json.gz")?.trim_end_matches("_backfill");
    let stamp = stem.rsplit('_').next()?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc().timestamp())
}
