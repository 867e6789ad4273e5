//! Following a local folder that a trail's files land in (S3 layout, synced or mounted): a scan
//! lists the log files that are new, settled (not modified for a moment, so a file still being
//! copied is not read half-written) and not yet taken, in delivery order. File-system
//! notifications only wake the loop early; the scan is what decides, so a missed notification
//! costs latency, never data.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::NaiveDate;

use crate::ingest::{self, InputFile, InputSource};

/// What one scan found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Files to read now, in delivery order.
    pub ready: Vec<InputFile>,
    /// Whether some new file was too fresh to take (scan again soon).
    pub unsettled: bool,
    /// Folders or files that could not be examined.
    pub problems: Vec<String>,
}

/// The state of a followed folder.
#[derive(Debug)]
pub struct Folder {
    root: PathBuf,
    settle: Duration,
    /// Files (as walked) handed out by this process or found already in the store, with their
    /// size then: a walk skips them while that size holds (no key derivation), and lists a file
    /// again once it grew (a JSON-lines file appended to).
    taken: HashMap<PathBuf, u64>,
}

/// What the store knows of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// Never ingested.
    No,
    /// Ingested at this size.
    Yes,
    /// Ingested at another size: read again (its records counted then are repeats).
    AtOtherSize,
}

impl Folder {
    /// Follows `root`; files are taken once unmodified for `settle`.
    pub fn new(root: PathBuf, settle: Duration) -> Folder {
        Folder {
            root,
            settle,
            taken: HashMap::new(),
        }
    }

    /// The followed folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Lists the settled log files not taken yet, skipping day folders (`YYYY/MM/DD`) before
    /// `since` so that following a folder with years of history stays cheap. `ingested` tells
    /// which ingest keys the store already holds.
    ///
    /// A walk is not a snapshot: while it runs, a file can land in a folder already walked and
    /// a later one in a folder not walked yet. So the folder is walked twice, and the second
    /// walk's files are taken only up to the newest (in delivery order) the first walk saw:
    /// everything delivered before that had landed before the second walk began, so files
    /// that land in delivery order are read in delivery order, whatever the timing.
    pub fn scan(
        &mut self,
        since: Option<NaiveDate>,
        mut ingested: impl FnMut(&str, u64) -> Ingested,
    ) -> Scan {
        let first = self.walk(since, &mut ingested);
        let Some(bound) = first.ready.last().map(order_key) else {
            return first;
        };
        let mut second = self.walk(since, &mut ingested);
        let before = second.ready.len();
        second.ready.retain(|f| order_key(f) <= bound);
        second.unsettled |= second.ready.len() < before;
        second
    }

    fn walk(
        &mut self,
        since: Option<NaiveDate>,
        ingested: &mut impl FnMut(&str, u64) -> Ingested,
    ) -> Scan {
        let mut scan = Scan::default();
        let now = SystemTime::now();
        let mut candidates = Vec::new();
        // Beside an `AWSLogs/` folder, only it holds logs (as `score` reads an archive).
        let aws_logs = self.root.join("AWSLogs");
        let top = if aws_logs.is_dir() {
            aws_logs
        } else {
            self.root.clone()
        };
        let walker = walkdir::WalkDir::new(&top)
            .follow_links(false)
            .into_iter()
            .filter_entry(|e| {
                let name = e.file_name().to_string_lossy();
                if e.depth() > 0 && name.starts_with('.') {
                    return false;
                }
                if e.file_type().is_dir() {
                    if name == "CloudTrail-Digest" || name == "CloudTrail-Insight" {
                        return false;
                    }
                    if let (Some(since), Some(day)) = (since, day_of_folder(e.path())) {
                        return day >= since;
                    }
                }
                true
            });
        for entry in walker {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    scan.problems.push(e.to_string());
                    continue;
                }
            };
            if !entry.file_type().is_file() || !is_log_name(&entry.file_name().to_string_lossy()) {
                continue;
            }
            let metadata = entry.metadata().ok();
            let size = metadata.as_ref().map(|m| m.len());
            if let Some(&taken) = self.taken.get(entry.path()) {
                if size.is_none_or(|s| s == taken) {
                    continue;
                }
            }
            let modified = metadata.and_then(|m| m.modified().ok()).unwrap_or(now);
            if now.duration_since(modified).unwrap_or_default() < self.settle {
                scan.unsettled = true;
                continue;
            }
            candidates.push(entry.into_path());
        }
        if candidates.is_empty() {
            return scan;
        }
        let found = ingest::discover(&candidates);
        for (path, e) in found.problems {
            scan.problems.push(format!("{path}: {e}"));
        }
        for mut file in found.files {
            match ingested(&file.ingest_key, file.size) {
                Ingested::Yes => {
                    self.take(&file);
                    continue;
                }
                Ingested::AtOtherSize => file.reread = true,
                Ingested::No => {}
            }
            scan.ready.push(file);
        }
        scan
    }

    /// Marks a file as handed out (it will not be listed again by this process).
    pub fn take(&mut self, file: &InputFile) {
        if let InputSource::File(path) = &file.source {
            self.taken.insert(path.clone(), file.size);
        }
    }

    /// Lists it again at the next scan (its reading failed and will be retried).
    pub fn release(&mut self, file: &InputFile) {
        if let InputSource::File(path) = &file.source {
            self.taken.remove(path);
        }
    }
}

/// Delivery order, as [`ingest::discover`] sorts.
fn order_key(f: &InputFile) -> (Option<crate::series::Minute>, String) {
    (f.delivery_minute, f.ingest_key.clone())
}

/// `.json`, `.jsonl`, `.ndjson` or `.gz` (ASCII case ignored), as `score` takes when walking.
fn is_log_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".json", ".jsonl", ".ndjson", ".gz"]
        .iter()
        .any(|s| lower.ends_with(s))
}

/// The date of a `.../YYYY/MM/DD` folder (None for any other folder, including `YYYY` and
/// `YYYY/MM`, which are always walked).
fn day_of_folder(path: &Path) -> Option<NaiveDate> {
    let mut parts = path.components().rev().map(|c| c.as_os_str().to_str());
    let day = parts.next()??;
    let month = parts.next()??;
    let year = parts.next()??;
    if day.len() != 2 || month.len() != 2 || year.len() != 4 {
        return None;
    }
    NaiveDate::from_ymd_opt(year.parse().ok()?, month.parse().ok()?, day.parse().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_folders_are_recognised_and_others_are_not() {
        let d = |s: &str| day_of_folder(Path::new(s));
        assert_eq!(
            d("/x/AWSLogs/1/CloudTrail/us-east-1/2024/02/29"),
            NaiveDate::from_ymd_opt(2024, 2, 29)
        );
        assert_eq!(d("/x/AWSLogs/1/CloudTrail/us-east-1/2024/02"), None);
        assert_eq!(d("/x/2023/02/30"), None, "no such day");
        assert_eq!(d("/x/abcd/02/03"), None);
    }

    #[test]
    fn fresh_files_wait_and_taken_files_are_not_listed_again() {
        let dir = tempfile::tempdir().unwrap();
        let day = dir
            .path()
            .join("AWSLogs/111122223333/CloudTrail/us-east-1/2024/03/01");
        std::fs::create_dir_all(&day).unwrap();
        let old_day = dir
            .path()
            .join("AWSLogs/111122223333/CloudTrail/us-east-1/2024/02/01");
        std::fs::create_dir_all(&old_day).unwrap();
        let name = "111122223333_CloudTrail_us-east-1_20240301T0005Z_a.json";
        std::fs::write(day.join(name), "{\"Records\":[]}").unwrap();
        std::fs::write(
            old_day.join("111122223333_CloudTrail_us-east-1_20240201T0005Z_b.json"),
            "{\"Records\":[]}",
        )
        .unwrap();
        std::fs::write(day.join("README.txt"), "not a log").unwrap();
        std::fs::write(dir.path().join("labels.json"), "{}").unwrap();

        let mut slow = Folder::new(dir.path().to_path_buf(), Duration::from_secs(3600));
        let scan = slow.scan(None, |_, _| Ingested::No);
        assert!(scan.ready.is_empty() && scan.unsettled);

        let mut folder = Folder::new(dir.path().to_path_buf(), Duration::ZERO);
        let since = NaiveDate::from_ymd_opt(2024, 3, 1);
        let scan = folder.scan(since, |_, _| Ingested::No);
        assert_eq!(scan.ready.len(), 1, "{:?}", scan.ready);
        assert!(scan.ready[0].ingest_key.ends_with(name));
        folder.take(&scan.ready[0].clone());
        assert!(folder.scan(since, |_, _| Ingested::No).ready.is_empty());
        // Without the date floor the older day is listed; a key the store holds is not.
        let all = folder.scan(None, |_, _| Ingested::No);
        assert_eq!(all.ready.len(), 1);
        assert!(all.ready[0].ingest_key.contains("20240201"));
        let mut again = Folder::new(dir.path().to_path_buf(), Duration::ZERO);
        assert!(again.scan(None, |_, _| Ingested::Yes).ready.is_empty());
    }
    #[test]
    fn a_taken_file_that_grew_is_listed_again_to_be_reread() {
        let dir = tempfile::tempdir().unwrap();
        let day = dir
            .path()
            .join("AWSLogs/111122223333/CloudTrail/us-east-1/2024/03/01");
        std::fs::create_dir_all(&day).unwrap();
        let path = day.join("111122223333_CloudTrail_us-east-1_20240301T0005Z_a.json");
        std::fs::write(&path, "{\"Records\":[]}").unwrap();
        let mut folder = Folder::new(dir.path().to_path_buf(), Duration::ZERO);
        let first = folder.scan(None, |_, _| Ingested::No);
        assert_eq!(first.ready.len(), 1);
        assert!(!first.ready[0].reread);
        folder.take(&first.ready[0]);
        assert!(folder.scan(None, |_, _| Ingested::No).ready.is_empty());

        std::fs::write(&path, "{\"Records\":[ ]}").unwrap();
        // The store says it holds the file at its earlier size: listed, to be read again.
        let old = first.ready[0].size;
        let grown = folder.scan(None, |_, size| {
            if size == old {
                Ingested::Yes
            } else {
                Ingested::AtOtherSize
            }
        });
        assert_eq!(grown.ready.len(), 1);
        assert!(grown.ready[0].reread);
        assert_eq!(grown.ready[0].size, old + 1);
        // A process that starts afresh finds it in the store at the size it has now: skipped.
        let mut fresh = Folder::new(dir.path().to_path_buf(), Duration::ZERO);
        assert!(fresh.scan(None, |_, _| Ingested::Yes).ready.is_empty());
    }
}
