//! Finds the CloudTrail log files behind the command-line inputs: files as given, folders walked
//! (S3 and organization layouts, skipping digests, Insights output and non-log files), or stdin.
//! The result is in delivery order so that processing is deterministic.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::path::{Component, Path, PathBuf};

use chrono::NaiveDate;

use crate::ingest::IngestError;
use crate::series::Minute;

/// Where records come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InputSource {
    /// A file on disk.
    File(PathBuf),
    /// Standard input (given as `-`).
    Stdin,
}

/// One input to read, with what is known about it before reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Where to read it from.
    pub source: InputSource,
    /// What to show the user: the path as given or walked, or `<stdin>`.
    pub display: String,
    /// Identity for "already ingested": the path from its `AWSLogs/` component on (e.g.
    /// `AWSLogs/123/CloudTrail/us-east-1/2023/07/10/x.json.gz`) when it has one, else the canonical
    /// absolute path; `<stdin>` for stdin. Always `/`-separated.
    pub ingest_key: String,
    /// Delivery time from the file name's `_YYYYMMDDTHHmmZ_` part, if it has one; for a
    /// `.parquet` file (Security Lake names its objects by UUID), the minute it was last
    /// modified, i.e. written by Security Lake when a copy keeps modification times.
    pub delivery_minute: Option<Minute>,
    /// Bytes on disk (0 for stdin).
    pub size: u64,
    /// Ingested before with another size (a file appended to): read again, and its records
    /// already counted are dropped as repeated deliveries.
    pub reread: bool,
}

/// What [`discover`] found.
#[derive(Debug, Default)]
pub struct DiscoverReport {
    /// The files to read, sorted by (delivery minute, `None` first; ingest key), each once.
    pub files: Vec<InputFile>,
    /// Files under `CloudTrail-Digest/` or `CloudTrail-Insight/`: not API activity.
    pub skipped_not_activity: u64,
    /// Other files met while walking a folder (README.md, LICENSE...), not read.
    pub ignored_other: u64,
    /// Inputs or folder entries that could not be examined, with the path shown to the user.
    pub problems: Vec<(String, IngestError)>,
}

/// Display name and ingest key of standard input.
pub const STDIN_NAME: &str = "<stdin>";

/// File name endings taken when walking a folder (compared ignoring ASCII case). `.parquet` is
/// Amazon Security Lake's OCSF (`<uuid>.gz.parquet`), read by [`crate::ingest::ocsf`].
pub const LOG_SUFFIXES: [&str; 5] = [".json", ".jsonl", ".ndjson", ".gz", ".parquet"];

/// Folders whose files are not API activity.
const NOT_ACTIVITY_DIRS: [&str; 2] = ["CloudTrail-Digest", "CloudTrail-Insight"];

/// Walks the inputs: a file is always taken whatever its name (unless under a `CloudTrail-Digest`
/// or `CloudTrail-Insight` folder); a folder is walked recursively, taking `.json`, `.jsonl`,
/// `.ndjson` and `.gz` files (gzipped or not) and `.parquet` files (Security Lake's), skipping
/// hidden entries, Digest/Insight folders and never following a symlinked folder; `-` is stdin.
/// Problems (a missing path, an unreadable folder) are reported, never fatal.
pub fn discover(inputs: &[PathBuf]) -> DiscoverReport {
    let mut discovery = Discovery::new(inputs);
    let mut files = Vec::new();
    while let Some(day) = discovery.next_day() {
        files.extend(day);
    }
    let mut report = discovery.into_report();
    sort_files(&mut files);
    report.files = files;
    report
}

/// The order files are read in: delivery minute (`None` first), then ingest key.
fn sort_files(files: &mut [InputFile]) {
    files.sort_by(|a, b| {
        (a.delivery_minute, &a.ingest_key).cmp(&(b.delivery_minute, &b.ingest_key))
    });
}

/// [`discover`] one delivery day at a time, for archives of any size: the walk stops at the day
/// folders of the S3 layout (`AWSLogs/.../YYYY/MM/DD/`) and lists each only when its day comes, so
/// memory holds one day's files, not the archive's. Each [`Discovery::next_day`] is in the order
/// [`discover`] gives, and the days follow each other; files outside day folders join the day
/// their name's delivery time falls on (undated ones come first). A file whose name dates it to
/// another day than its folder's is read with its folder's day when that day has already come.
pub struct Discovery {
    walk: Walk,
    /// Day folders by day number (days since 1970-01-01).
    folders: BTreeMap<i64, Vec<PathBuf>>,
    /// Files found outside day folders, by delivery day (`None`: undated).
    loose: BTreeMap<Option<i64>, Vec<InputFile>>,
}

impl Discovery {
    /// Walks the inputs as [`discover`] does, leaving the S3 layout's day folders for later.
    pub fn new(inputs: &[PathBuf]) -> Discovery {
        let mut walk = Walk {
            defer_day_folders: true,
            ..Walk::default()
        };
        for input in inputs {
            if input.as_os_str() == "-" {
                walk.take_stdin();
                continue;
            }
            let display = input.display().to_string();
            match fs::metadata(input) {
                Err(source) => walk.report.problems.push((
                    display.clone(),
                    IngestError::Io {
                        path: display,
                        source,
                    },
                )),
                Ok(meta) if meta.is_dir() => walk.folder(input),
                Ok(meta) if meta.is_file() => walk.file(input, meta.len()),
                // Opening a FIFO waits for a writer, possibly forever; a device never ends.
                Ok(meta) => walk.report.problems.push((
                    display.clone(),
                    IngestError::NotRegular {
                        path: display,
                        kind: file_kind(&meta.file_type()),
                    },
                )),
            }
        }
        let mut loose: BTreeMap<Option<i64>, Vec<InputFile>> = BTreeMap::new();
        for file in std::mem::take(&mut walk.report.files) {
            loose.entry(day_of(&file)).or_default().push(file);
        }
        // Loose files stay known for good (few, and held in `loose` anyway); each day's listing
        // is de-duplicated against them and against itself, then forgotten.
        walk.held = std::mem::take(&mut walk.seen);
        Discovery {
            folders: std::mem::take(&mut walk.day_folders),
            walk,
            loose,
        }
    }

    /// Day folders still to be listed (a progress measure).
    pub fn days_left(&self) -> usize {
        self.folders.len()
    }

    /// The files of the next delivery day, in reading order (`None` when every day was given).
    /// Problems and skipped files met while listing it are added to the report.
    pub fn next_day(&mut self) -> Option<Vec<InputFile>> {
        let next_loose = self.loose.keys().next().copied();
        let next_folder = self.folders.keys().next().copied().map(Some);
        let day = match (next_loose, next_folder) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        let mut files = self.loose.remove(&day).unwrap_or_default();
        if let Some(day) = day {
            let folders = self.folders.remove(&day).unwrap_or_default();
            for folder in &folders {
                self.walk.folder(folder);
            }
            for file in std::mem::take(&mut self.walk.report.files) {
                match day_of(&file) {
                    // Misfiled in an earlier day's folder: it waits for its own day.
                    Some(later) if later > day => {
                        if let InputSource::File(path) = &file.source {
                            if let Ok(canonical) = fs::canonicalize(path) {
                                self.walk.held.insert(canonical);
                            }
                        }
                        self.loose.entry(Some(later)).or_default().push(file);
                    }
                    _ => files.push(file),
                }
            }
        }
        self.walk.seen.clear();
        sort_files(&mut files);
        Some(files)
    }

    /// What was skipped, ignored or could not be examined so far (`files` is empty).
    pub fn report(&self) -> &DiscoverReport {
        &self.walk.report
    }

    fn into_report(self) -> DiscoverReport {
        self.walk.report
    }
}

/// A file's delivery day (days since 1970-01-01), from its name.
fn day_of(file: &InputFile) -> Option<i64> {
    file.delivery_minute
        .map(|m| m.div_euclid(crate::series::MINUTES_PER_DAY))
}

/// The day of an S3-layout day folder: `.../AWSLogs/.../YYYY/MM/DD` (a real date).
fn day_folder(path: &Path) -> Option<i64> {
    let mut names = path.components().rev().map_while(|c| match c {
        Component::Normal(name) => name.to_str(),
        _ => None,
    });
    let number = |text: &str, len: usize| -> Option<u32> {
        (text.len() == len && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
    };
    let day = number(names.next()?, 2)?;
    let month = number(names.next()?, 2)?;
    let year = i32::try_from(number(names.next()?, 4)?).ok()?;
    if !names.any(|name| name == "AWSLogs") {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(year, month, day)?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    Some(date.signed_duration_since(epoch).num_days())
}

#[derive(Default)]
struct Walk {
    report: DiscoverReport,
    /// Canonical paths taken in this walk (or this day's listing).
    seen: HashSet<PathBuf>,
    /// Canonical paths of files held for a later day: never taken again.
    held: HashSet<PathBuf>,
    stdin_taken: bool,
    /// Leave S3-layout day folders (below the walked root) to [`Discovery::next_day`].
    defer_day_folders: bool,
    day_folders: BTreeMap<i64, Vec<PathBuf>>,
}

impl Walk {
    fn take_stdin(&mut self) {
        if std::mem::replace(&mut self.stdin_taken, true) {
            return;
        }
        self.report.files.push(InputFile {
            source: InputSource::Stdin,
            display: STDIN_NAME.to_owned(),
            ingest_key: STDIN_NAME.to_owned(),
            delivery_minute: None,
            size: 0,
            reread: false,
        });
    }

    fn folder(&mut self, root: &Path) {
        // A folder that holds a trail archive (`AWSLogs/` at its top) may keep other things
        // beside it at the top (labels, notes, a summary): those files are not logs.
        let beside_archive = root.join("AWSLogs").is_dir();
        let mut entries = walkdir::WalkDir::new(root)
            .follow_links(false)
            .into_iter()
            // The root itself may be `.` or a hidden folder the user named on purpose.
            .filter_entry(|e| e.depth() == 0 || !is_hidden(e.file_name()));
        while let Some(entry) = entries.next() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(source) => {
                    let path = source.path().unwrap_or(root).display().to_string();
                    self.report
                        .problems
                        .push((path.clone(), IngestError::Walk { path, source }));
                    continue;
                }
            };
            let path = entry.path();
            let file_type = entry.file_type();
            if self.defer_day_folders && file_type.is_dir() && entry.depth() > 0 {
                if let Some(day) = day_folder(path).filter(|_| !under_not_activity_dir(path)) {
                    self.day_folders
                        .entry(day)
                        .or_default()
                        .push(path.to_path_buf());
                    entries.skip_current_dir();
                    continue;
                }
            }
            let size = if file_type.is_file() {
                entry.metadata().map(|m| m.len()).unwrap_or(0)
            } else if file_type.is_symlink() {
                // A symlinked file is read; a symlinked folder is not followed.
                match fs::metadata(path) {
                    Ok(meta) if meta.is_file() => meta.len(),
                    _ => {
                        self.report.ignored_other += 1;
                        continue;
                    }
                }
            } else {
                continue;
            };
            if beside_archive && entry.depth() == 1 {
                self.report.ignored_other += 1;
            } else if under_not_activity_dir(path) {
                self.report.skipped_not_activity += 1;
            } else if has_log_suffix(entry.file_name()) || looks_like_log(path) {
                self.take(path, size);
            } else {
                self.report.ignored_other += 1;
            }
        }
    }

    fn file(&mut self, path: &Path, size: u64) {
        if under_not_activity_dir(path) {
            self.report.skipped_not_activity += 1;
        } else {
            self.take(path, size);
        }
    }

    fn take(&mut self, path: &Path, size: u64) {
        let display = path.display().to_string();
        let canonical = match fs::canonicalize(path) {
            Ok(canonical) => canonical,
            Err(source) => {
                self.report.problems.push((
                    display.clone(),
                    IngestError::Io {
                        path: display,
                        source,
                    },
                ));
                return;
            }
        };
        if self.held.contains(&canonical) || !self.seen.insert(canonical.clone()) {
            return;
        }
        let ingest_key = aws_logs_key(path)
            .or_else(|| aws_logs_key(&canonical))
            .unwrap_or_else(|| slash_path(&canonical));
        let name = path.file_name().and_then(OsStr::to_str);
        let delivery_minute = name.and_then(delivery_minute_of).or_else(|| {
            name.filter(|n| has_suffix(n.as_ref(), ".parquet"))
                .and_then(|_| modified_minute(path))
        });
        self.report.files.push(InputFile {
            source: InputSource::File(path.to_path_buf()),
            display,
            ingest_key,
            delivery_minute,
            size,
            reread: false,
        });
    }
}

/// What a file that is not a regular file is, for the user.
fn file_kind(file_type: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "FIFO";
        }
        if file_type.is_socket() {
            return "socket";
        }
        if file_type.is_block_device() || file_type.is_char_device() {
            return "device";
        }
    }
    if file_type.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

/// Bytes of a file's start examined to recognise a log whose name has no log suffix.
const SNIFF_BYTES: u64 = 4096;

/// Whether a file met in a walked folder, whose name has no log suffix (`*.json.cloudtrail`, no
/// suffix at all), holds CloudTrail records: gzip (inflated as far as its first bytes allow) or
/// plain text that starts as JSON and names a CloudTrail field early on.
fn looks_like_log(path: &Path) -> bool {
    use std::io::Read;
    let Ok(file) = fs::File::open(path) else {
        return false;
    };
    let mut head = Vec::new();
    if file.take(SNIFF_BYTES).read_to_end(&mut head).is_err() {
        return false;
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        let mut text = Vec::new();
        // The head is cut short: the decoder's error at its end is expected, and what it
        // inflated before is kept in `text`.
        let _ = flate2::read::MultiGzDecoder::new(head.as_slice())
            .take(SNIFF_BYTES)
            .read_to_end(&mut text);
        return looks_like_records(&text);
    }
    looks_like_records(&head)
}

/// The start of a Records object, a JSON array of records, JSON lines of records, or
/// CloudWatch Logs subscription messages (Firehose's output files in S3 have no suffix).
fn looks_like_records(text: &[u8]) -> bool {
    const MARKERS: [&[u8]; 8] = [
        b"\"Records\"",
        b"\"eventVersion\"",
        b"\"eventSource\"",
        b"\"eventName\"",
        b"\"eventTime\"",
        b"\"logEvents\"",
        b"\"messageType\"",
        b"\"awslogs\"",
    ];
    let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
    let first = text
        .iter()
        .find(|b| !matches!(b, b' ' | b'\n' | b'\r' | b'\t'));
    matches!(first, Some(b'{' | b'['))
        && MARKERS
            .iter()
            .any(|marker| text.windows(marker.len()).any(|w| w == *marker))
}

fn is_hidden(name: &OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

/// Whether a file name ends with one of [`LOG_SUFFIXES`] (ignoring ASCII case).
pub(crate) fn has_log_suffix(name: &OsStr) -> bool {
    LOG_SUFFIXES.iter().any(|suffix| has_suffix(name, suffix))
}

/// Whether `name` is longer than `suffix` and ends with it, ignoring ASCII case.
fn has_suffix(name: &OsStr, suffix: &str) -> bool {
    let name = name.as_encoded_bytes();
    name.len() > suffix.len()
        && name
            .get(name.len() - suffix.len()..)
            .is_some_and(|end| end.eq_ignore_ascii_case(suffix.as_bytes()))
}

/// The UTC minute a file was last modified: when Security Lake wrote a `.parquet` object (its
/// name has no time). Security Lake's files are read in that order, as CloudTrail's are in
/// delivery order, so that calls delivered late stay late.
fn modified_minute(path: &Path) -> Option<Minute> {
    let modified = fs::metadata(path).ok()?.modified().ok()?;
    let since_epoch = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since_epoch.as_secs() / 60).ok()
}

/// Whether a path runs through a `CloudTrail-Digest` or `CloudTrail-Insight` folder.
pub(crate) fn under_not_activity_dir(path: &Path) -> bool {
    path.components().any(|c| match c {
        Component::Normal(name) => NOT_ACTIVITY_DIRS.iter().any(|dir| name == *dir),
        _ => false,
    })
}

/// The path from its last `AWSLogs` component on, `/`-separated.
fn aws_logs_key(path: &Path) -> Option<String> {
    let components: Vec<Component<'_>> = path.components().collect();
    let start = components
        .iter()
        .rposition(|c| matches!(c, Component::Normal(name) if *name == "AWSLogs"))?;
    let mut key = String::new();
    for component in components.get(start..)? {
        if let Component::Normal(name) = component {
            if !key.is_empty() {
                key.push('/');
            }
            key.push_str(&name.to_string_lossy());
        }
    }
    Some(key)
}

fn slash_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    if std::path::MAIN_SEPARATOR == '/' {
        text.into_owned()
    } else {
        text.replace(std::path::MAIN_SEPARATOR, "/")
    }
}

/// The delivery time in a CloudTrail file name: the first `_YYYYMMDDTHHmmZ_` part.
pub fn delivery_minute_of(file_name: &str) -> Option<Minute> {
    const STAMP: usize = 13; // YYYYMMDDTHHmm, then Z
    let bytes = file_name.as_bytes();
    bytes.windows(STAMP + 3).find_map(|w| {
        let (open, rest) = w.split_first()?;
        let (close, rest) = rest.split_last()?;
        let (zulu, stamp) = rest.split_last()?;
        if *open != b'_' || *close != b'_' || *zulu != b'Z' || stamp.get(8) != Some(&b'T') {
            return None;
        }
        let number = |range: std::ops::Range<usize>| -> Option<u32> {
            stamp.get(range)?.iter().try_fold(0u32, |acc, &c| {
                c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
            })
        };
        let year = i32::try_from(number(0..4)?).ok()?;
        let date = NaiveDate::from_ymd_opt(year, number(4..6)?, number(6..8)?)?;
        let time = date.and_hms_opt(number(9..11)?, number(11..13)?, 0)?;
        Some(time.and_utc().timestamp().div_euclid(60))
    })
}

#[cfg(test)]
mod trail_folder_tests {
    use super::*;

    #[test]
    fn security_lake_parquet_files_are_walked_in_the_order_they_were_written() {
        let dir = tempfile::tempdir().unwrap();
        let day = dir.path().join(
            "aws/CLOUD_TRAIL_MGMT/2.0/region=us-east-1/accountId=111122223333/eventDay=20240304",
        );
        fs::create_dir_all(&day).unwrap();
        // UUID names sort the other way round from the times Security Lake wrote them.
        let written = [
            ("ffff.gz.parquet", 1_709_555_700),
            ("0000.gz.PARQUET", 1_709_555_999),
        ];
        for (name, seconds) in written {
            let path = day.join(name);
            fs::write(&path, b"PAR1").unwrap();
            let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
            fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(time)
                .unwrap();
        }
        fs::write(day.join("notes.txt"), "not a log").unwrap();
        let report = discover(&[dir.path().to_path_buf()]);
        let names: Vec<&str> = report
            .files
            .iter()
            .map(|f| f.display.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(names, ["ffff.gz.parquet", "0000.gz.PARQUET"]);
        assert_eq!(report.files[0].delivery_minute, Some(1_709_555_700 / 60));
        assert_eq!(report.ignored_other, 1);
    }

    #[test]
    fn beside_an_archive_only_the_archive_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let day = dir
            .path()
            .join("AWSLogs/111122223333/CloudTrail/us-east-1/2024/03/04");
        fs::create_dir_all(&day).unwrap();
        fs::write(
            day.join("111122223333_CloudTrail_us-east-1_20240304T0005Z_abcdefghijklmnop.json"),
            "{}",
        )
        .unwrap();
        fs::write(dir.path().join("labels.json"), "{}").unwrap();
        let report = discover(&[dir.path().to_path_buf()]);
        assert_eq!(report.files.len(), 1);
        assert!(report.files[0].ingest_key.starts_with("AWSLogs/"));
        assert_eq!(report.ignored_other, 1);
        // Named explicitly, the file is read.
        let report = discover(&[dir.path().join("labels.json")]);
        assert_eq!(report.files.len(), 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn minute(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Minute {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .unwrap()
            .timestamp()
            / 60
    }

    fn touch(root: &Path, rel: &str) -> PathBuf {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, b"{\"Records\":[]}").unwrap();
        path
    }

    #[test]
    fn delivery_minute_comes_from_the_file_name() {
        assert_eq!(
            delivery_minute_of(
                "111122223333_CloudTrail_us-east-1_20230710T1145Z_7xgocspSowgK0Gto.json.gz"
            ),
            Some(minute(2023, 7, 10, 11, 45))
        );
        assert_eq!(delivery_minute_of("records.json"), None);
        assert_eq!(
            delivery_minute_of("x_20231310T1145Z_y.json"),
            None,
            "month 13"
        );
        assert_eq!(delivery_minute_of("x_20230710T2460Z_y.json"), None);
        assert_eq!(delivery_minute_of("x_20230710T1145_y.json"), None);
        assert_eq!(delivery_minute_of("x_2023é710T1145Z_y.json"), None);
    }

    #[test]
    fn day_by_day_discovery_lists_each_day_folder_when_its_day_comes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("bucket");
        let file = |region: &str, day: u32, hhmm: &str, id: &str| {
            format!(
                "AWSLogs/111122223333/CloudTrail/{region}/2024/03/{day:02}/\
                 111122223333_CloudTrail_{region}_202403{day:02}T{hhmm}Z_{id}.json.gz"
            )
        };
        let a = touch(&root, &file("us-east-1", 4, "2355", "a"));
        touch(&root, &file("eu-west-1", 4, "0005", "b"));
        touch(&root, &file("us-east-1", 5, "0000", "c"));
        // Misfiled: dated the 6th, in the 4th's folder; it waits for the 6th.
        touch(
            &root,
            "AWSLogs/111122223333/CloudTrail/eu-west-1/2024/03/04/\
             111122223333_CloudTrail_eu-west-1_20240306T1200Z_d.json.gz",
        );
        // A loose file (named on the command line) joins its delivery day; an undated one
        // comes first.
        let loose = touch(dir.path(), "loose_20240305T0100Z_e.json");
        let undated = touch(dir.path(), "undated.json");
        // `a` is also named on its own: it is read once.
        let inputs = [root.clone(), loose, undated, a];

        let mut discovery = Discovery::new(&inputs);
        assert_eq!(
            discovery.days_left(),
            2,
            "two day numbers, three day folders"
        );
        // The 6th's folder is made after the walk: it is still read, when its day comes.
        touch(&root, &file("us-east-1", 6, "0010", "f"));
        touch(&root, &file("us-east-1", 5, "2359", "g"));
        let names = |files: Vec<InputFile>| -> Vec<String> {
            files
                .iter()
                .map(|f| {
                    let name = f.display.rsplit('/').next().unwrap();
                    name.rsplit('_').next().unwrap().replace(".json.gz", "")
                })
                .collect()
        };
        let mut days = Vec::new();
        while let Some(day) = discovery.next_day() {
            days.push(names(day));
        }
        assert_eq!(
            days,
            vec![
                vec!["undated.json"],
                vec!["b", "a"],
                vec!["c", "e.json", "g"],
                vec!["d"],
            ],
            "the 6th's folder did not exist at the walk, so only the misfiled file is on the 6th"
        );
        // `discover` gives the same files in the same order as the days of a fresh walk.
        let mut again = Discovery::new(&inputs);
        let mut fresh = Vec::new();
        while let Some(day) = again.next_day() {
            fresh.extend(names(day));
        }
        assert_eq!(
            fresh,
            ["undated.json", "b", "a", "c", "e.json", "g", "f", "d"]
        );
        assert_eq!(names(discover(&inputs).files), fresh);
    }

    #[test]
    fn s3_and_organization_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("bucket");
        let s3 = "AWSLogs/111122223333/CloudTrail/us-east-1/2023/07/10/\
                  111122223333_CloudTrail_us-east-1_20230710T1150Z_aaaaaaaaaaaaaaaa.json.gz";
        let org = "prefix/AWSLogs/o-abc123/111122223333/CloudTrail/eu-west-1/2023/07/10/\
                   111122223333_CloudTrail_eu-west-1_20230710T1145Z_bbbbbbbbbbbbbbbb.json.gz";
        touch(&root, s3);
        touch(&root, org);
        touch(&root, "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2023/07/10/111122223333_CloudTrail-Digest_us-east-1_x_20230710T1200Z.json.gz");
        touch(&root, "AWSLogs/111122223333/CloudTrail-Insight/us-east-1/2023/07/10/111122223333_CloudTrail-Insight_us-east-1_20230710T1200Z_cccccccccccccccc.json.gz");
        touch(
            &root,
            "AWSLogs/111122223333/CloudTrail-Insight/us-east-1/2023/07/10/second.json.gz",
        );
        touch(&root, "README.md");
        // Without a log suffix, a file is read only if its content is a log.
        fs::write(touch(&root, "AWSLogs/LICENSE"), "MIT License\n").unwrap();
        touch(&root, ".hidden.json");
        touch(&root, ".git/objects/x.json");
        touch(&root, "extra/records.ndjson");
        touch(&root, "extra/more.JSONL");

        let report = discover(std::slice::from_ref(&root));
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.skipped_not_activity, 3);
        assert_eq!(report.ignored_other, 2);
        let keys: Vec<&str> = report.files.iter().map(|f| f.ingest_key.as_str()).collect();
        let extra = |name: &str| {
            fs::canonicalize(root.join("extra").join(name))
                .unwrap()
                .to_string_lossy()
                .into_owned()
        };
        // No delivery time first (by key), then by delivery time: 11:45 before 11:50.
        let mut undated = [extra("more.JSONL"), extra("records.ndjson")];
        undated.sort();
        assert_eq!(keys[..2], [undated[0].as_str(), undated[1].as_str()]);
        assert_eq!(keys[2], org.strip_prefix("prefix/").unwrap());
        assert_eq!(keys[3], s3);
        assert_eq!(keys.len(), 4);
        assert_eq!(
            report.files[2].delivery_minute,
            Some(minute(2023, 7, 10, 11, 45))
        );
        assert_eq!(
            report.files[3].delivery_minute,
            Some(minute(2023, 7, 10, 11, 50))
        );
        assert!(report.files[3].display.ends_with(".json.gz"));
        assert_eq!(report.files[3].size, 14);
        assert!(matches!(report.files[3].source, InputSource::File(ref p) if p.is_file()));
    }

    #[test]
    fn files_are_taken_whatever_their_name_and_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let odd = touch(dir.path(), "logs.txt");
        let digest = touch(dir.path(), "CloudTrail-Digest/d.json.gz");
        let report = discover(&[
            odd.clone(),
            odd.clone(),
            dir.path().join(".").join("logs.txt"),
            digest,
            dir.path().to_path_buf(),
            PathBuf::from("-"),
            PathBuf::from("-"),
        ]);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        // logs.txt once (it is also met, and ignored, by name when walking the folder).
        // Neither has a delivery time: ordered by key, and "/..." sorts before "<stdin>".
        assert_eq!(report.files.len(), 2);
        assert_eq!(report.files[0].source, InputSource::File(odd.clone()));
        assert_eq!(
            report.files[0].ingest_key,
            fs::canonicalize(&odd).unwrap().to_string_lossy()
        );
        assert_eq!(report.files[1].source, InputSource::Stdin);
        assert_eq!(report.files[1].ingest_key, STDIN_NAME);
        assert_eq!(report.skipped_not_activity, 2, "given once, walked once");
        assert_eq!(
            report.ignored_other, 0,
            "logs.txt, met again in the walk, is recognised by its content and taken once"
        );
    }

    #[test]
    fn walked_files_without_a_log_suffix_are_recognised_by_content() {
        // Regression: a folder of `*.json.cloudtrail` files was read as 0 files ("585 other
        // files ignored") and the run ended with exit 0.
        use flate2::write::GzEncoder;
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let record = r#"{"eventVersion":"1.08","eventTime":"2024-03-04T00:01:00Z","eventSource":"ec2.amazonaws.com"}"#;
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(format!(r#"{{"Records":[{record}]}}"#).as_bytes())
            .unwrap();
        let gz = gz.finish().unwrap();
        let write = |rel: &str, bytes: &[u8]| {
            let path = root.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, bytes).unwrap();
        };
        write(
            "a/x.json.cloudtrail",
            format!(r#"{{"Records":[{record}]}}"#).as_bytes(),
        );
        write("a/nosuffix", &gz);
        write("a/lines", format!("{record}\n{record}\n").as_bytes());
        write("a/array.log", format!("\u{feff} [{record}]").as_bytes());
        // Not logs: text, other JSON, another gzip, an empty file, digests and Insights.
        write("a/README", b"# notes about this trail, eventName etc.");
        write("a/config", br#"{"name": "trail"}"#);
        let mut other = GzEncoder::new(Vec::new(), flate2::Compression::default());
        other.write_all(b"plain text inside").unwrap();
        write("a/other.bin", &other.finish().unwrap());
        write("a/empty", b"");
        write(
            "CloudTrail-Digest/d",
            format!(r#"{{"Records":[{record}]}}"#).as_bytes(),
        );
        write("CloudTrail-Insight/i", &gz);
        let report = discover(&[root.to_path_buf()]);
        let mut names: Vec<String> = report
            .files
            .iter()
            .map(|f| f.display.rsplit('/').next().unwrap().to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["array.log", "lines", "nosuffix", "x.json.cloudtrail"]
        );
        assert_eq!(report.ignored_other, 4);
        assert_eq!(report.skipped_not_activity, 2);
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_named_on_the_command_line_is_refused_not_opened() {
        // Regression: opening a FIFO waits for a writer, so the run blocked forever.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("skipped: mkfifo is not available");
            return;
        }
        let report = discover(std::slice::from_ref(&fifo));
        assert!(report.files.is_empty());
        assert_eq!(report.problems.len(), 1);
        let message = report.problems[0].1.to_string();
        assert!(
            message.contains("is not a regular file") && message.contains("FIFO"),
            "{message}"
        );
        // Met in a walked folder, it is passed over, not opened.
        let report = discover(&[dir.path().to_path_buf()]);
        assert!(report.files.is_empty() && report.problems.is_empty());
    }

    #[test]
    fn missing_inputs_are_problems() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let report = discover(std::slice::from_ref(&missing));
        assert!(report.files.is_empty());
        assert_eq!(report.problems.len(), 1);
        assert_eq!(report.problems[0].0, missing.display().to_string());
        assert!(matches!(report.problems[0].1, IngestError::Io { .. }));
    }

    #[cfg(unix)]
    #[test]
    fn symlinked_folders_are_not_followed_but_symlinked_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        touch(&outside, "secret.json");
        let tree = dir.path().join("tree");
        let real = touch(&tree, "real.json");
        std::os::unix::fs::symlink(&outside, tree.join("link-dir")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret.json"), tree.join("link.json")).unwrap();
        std::os::unix::fs::symlink(&real, tree.join("same.json")).unwrap();
        let report = discover(&[tree]);
        let names: Vec<String> = report
            .files
            .iter()
            .map(|f| match &f.source {
                InputSource::File(p) => p.file_name().unwrap().to_string_lossy().into_owned(),
                InputSource::Stdin => "-".into(),
            })
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.contains(&"link.json".to_string()), "{names:?}");
        assert_eq!(report.ignored_other, 1, "the symlinked folder");
    }
}
