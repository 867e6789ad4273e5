//! Following a local folder that a trail's files land in (S3 layout, synced or mounted): a scan
//! lists the log files that are new, settled (not modified for a moment, so a file still being
//! copied is not read half-written) and not yet taken, in delivery order. File-system
//! notifications only wake the loop early; the scan is what decides, so a missed notification
//! costs latency, never data.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::NaiveDate;

use super::{Ending, Following, Input, Pull, Source, SourceError, Stop, Unreadable};
use crate::ingest::{self, InputFile, InputSource};
use crate::store::Store;

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

/// Attempts at reading a file that cannot be read before it is given up.
const MAX_READ_ATTEMPTS: u32 = 5;

/// How a followed folder is scanned and waited on.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// A file is read once it has not been modified for this long.
    pub settle: Duration,
    /// Scans (file-system notifications also wake one), the earliest day folder, once.
    pub following: Following,
}

/// Where the follower is between scans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Scan next.
    Scan,
    /// A scan's files were handed out; `unsettled`: some file was too fresh to take.
    Scanned { unsettled: bool },
}

/// `watch DIR`: a folder followed by scans, woken early by file-system notifications.
pub struct FollowFolder {
    folder: Folder,
    store: Store,
    options: FollowOptions,
    stop: Stop,
    runtime: tokio::runtime::Handle,
    wake: Option<(notify::RecommendedWatcher, tokio::sync::mpsc::Receiver<()>)>,
    phase: Phase,
    queue: VecDeque<Pull>,
    /// Read failures per ingest key (retried a few times, then given up).
    failures: HashMap<String, u32>,
}

impl FollowFolder {
    /// Follows `root` (which must be a folder); `store` tells what was ingested.
    pub fn open(
        root: PathBuf,
        store: Store,
        options: FollowOptions,
        stop: Stop,
        runtime: tokio::runtime::Handle,
    ) -> Result<FollowFolder, SourceError> {
        if !root.is_dir() {
            return Err(SourceError::Setup(format!(
                "{} is not a folder",
                root.display()
            )));
        }
        let (wake_tx, wake_rx) = tokio::sync::mpsc::channel::<()>(1);
        let watcher = {
            use notify::Watcher;
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok() {
                    let _ = wake_tx.try_send(());
                }
            })
            .and_then(|mut w| w.watch(&root, notify::RecursiveMode::Recursive).map(|()| w))
        };
        let wake = match watcher {
            Ok(w) => Some((w, wake_rx)),
            Err(e) => {
                tracing::warn!(
                    "file-system notifications unavailable for {} ({e}); polling every {}s",
                    root.display(),
                    options.following.poll_every.as_secs_f64()
                );
                None
            }
        };
        tracing::info!("following {}", root.display());
        Ok(FollowFolder {
            folder: Folder::new(root, options.settle),
            store,
            options,
            stop,
            runtime,
            wake,
            phase: Phase::Scan,
            queue: VecDeque::new(),
            failures: HashMap::new(),
        })
    }

    /// Scans once: the settled files not taken yet, then `CaughtUp`.
    fn scan(&mut self) -> Result<(), SourceError> {
        let newest = self.store.meta()?.totals.max_minute;
        let since = super::since_day(self.options.following.since, newest);
        // A key the store cannot answer for is passed over (not read twice), and the failure
        // stops the run.
        let mut failure = None;
        let store = &self.store;
        let scan = self
            .folder
            .scan(since, |key, size| match store.ingested_file(key) {
                Ok(None) => Ingested::No,
                Ok(Some(r)) if r.size == size => Ingested::Yes,
                Ok(Some(_)) => Ingested::AtOtherSize,
                Err(e) => {
                    failure.get_or_insert(e);
                    Ingested::Yes
                }
            });
        if let Some(e) = failure {
            return Err(e.into());
        }
        for p in &scan.problems {
            tracing::warn!("{p}");
        }
        if !scan.ready.is_empty() {
            tracing::debug!("{} new files", scan.ready.len());
            for file in &scan.ready {
                self.folder.take(file);
            }
            self.queue.push_back(Pull::Inputs(
                scan.ready.into_iter().map(Input::File).collect(),
            ));
        }
        self.queue.push_back(Pull::CaughtUp { must_commit: false });
        self.phase = Phase::Scanned {
            unsettled: scan.unsettled,
        };
        Ok(())
    }

    /// Waits for the next scan: a notification, the poll interval (or the settle time when a
    /// file was too fresh), or a stop. True when a stop was asked.
    fn wait(&mut self, unsettled: bool) -> bool {
        let wait = if unsettled {
            self.options.settle.max(Duration::from_millis(200))
        } else {
            self.options.following.poll_every
        };
        let stop = self.stop.clone();
        let wake = self.wake.as_mut().map(|(_, rx)| rx);
        self.runtime.block_on(async move {
            let woken = async {
                match wake {
                    Some(rx) => {
                        rx.recv().await;
                        // Let a burst of events (a sync writing many files) gather into one scan.
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = stop.stopped() => {}
                _ = woken => {}
                _ = tokio::time::sleep(wait) => {}
            }
        });
        self.stop.is_set()
    }
}

impl Source for FollowFolder {
    fn next(&mut self) -> Result<Pull, SourceError> {
        loop {
            if let Some(pull) = self.queue.pop_front() {
                return Ok(pull);
            }
            if let Phase::Scanned { unsettled } = self.phase {
                let done = self.options.following.once && !unsettled;
                let stopped = self.stop.is_set() || (!done && self.wait(unsettled));
                if stopped || done {
                    return Ok(Pull::End(Ending {
                        stopped,
                        ..Ending::default()
                    }));
                }
            }
            self.scan()?;
        }
    }

    fn unreadable(&mut self, input: &Input) -> Unreadable {
        let Input::File(file) = input else {
            return Unreadable::GiveUp;
        };
        let attempts = self.failures.entry(file.ingest_key.clone()).or_insert(0);
        *attempts += 1;
        if *attempts < MAX_READ_ATTEMPTS {
            tracing::warn!(
                file = %file.display,
                attempt = *attempts,
                "cannot read the file yet; it will be tried again"
            );
            self.folder.release(file);
            return Unreadable::Retry;
        }
        tracing::error!(file = %file.display, "giving up on the file after {MAX_READ_ATTEMPTS} attempts");
        Unreadable::GiveUp
    }
}

/// Delivery order, as [`ingest::discover`] sorts.
fn order_key(f: &InputFile) -> (Option<crate::series::Minute>, String) {
    (f.delivery_minute, f.ingest_key.clone())
}

/// `.json`, `.jsonl`, `.ndjson`, `.gz` or `.parquet` (ASCII case ignored), as `score` takes
/// when walking.
fn is_log_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    ingest::discover::LOG_SUFFIXES
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
