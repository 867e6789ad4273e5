//! Snapshots for readers of a busy store.
//!
//! sled lets one process open a store. A long-running `watch` therefore publishes, every
//! `--snapshot-interval`, a consistent copy of its store in `<store>/snapshot/`: it writes the
//! copy into a fresh folder between two engine steps (nothing changes meanwhile), then swaps it
//! in with renames. A published snapshot is never modified: a reader copies its files into a
//! private temporary folder and opens that copy, so any number of readers can work while
//! `watch` goes on, and a swap in the middle of a copy is noticed and retried.

use std::path::{Path, PathBuf};

use super::ViewError;
use crate::store::{Store, StoreError};

/// The snapshot folder inside a store.
pub const SNAPSHOT_DIR: &str = "snapshot";
/// File in the snapshot naming when it was written.
const WRITTEN_FILE: &str = "WRITTEN";

/// Writes a new snapshot of `store` and publishes it in place of the previous one.
pub fn publish(store: &Store) -> Result<PathBuf, StoreError> {
    let root = store.path();
    let target = root.join(SNAPSHOT_DIR);
    let fresh = root.join(format!("{SNAPSHOT_DIR}.new"));
    let old = root.join(format!("{SNAPSHOT_DIR}.old"));
    let io = |what: &'static str, source: std::io::Error| StoreError::Snapshot {
        path: root.to_path_buf(),
        what,
        source,
    };
    for leftover in [&fresh, &old] {
        if leftover.exists() {
            std::fs::remove_dir_all(leftover).map_err(|e| io("removing a leftover", e))?;
        }
    }
    store.copy_to(&fresh)?;
    std::fs::write(
        fresh.join(WRITTEN_FILE),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
    .map_err(|e| io("writing its time", e))?;
    if target.exists() {
        std::fs::rename(&target, &old).map_err(|e| io("moving the previous one aside", e))?;
    }
    std::fs::rename(&fresh, &target).map_err(|e| io("publishing", e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| io("removing the previous one", e))?;
    }
    Ok(target)
}

/// Copies the published snapshot of the store in `dir` into a private folder and opens it:
/// `None` when no snapshot was published.
pub fn open_copy(dir: &Path) -> Result<Option<(Store, String, tempfile::TempDir)>, ViewError> {
    let source = dir.join(SNAPSHOT_DIR);
    let mut last_error = None;
    let swapping = || {
        dir.join(format!("{SNAPSHOT_DIR}.new")).exists()
            || dir.join(format!("{SNAPSHOT_DIR}.old")).exists()
    };
    for _attempt in 0..5 {
        if !source.exists() && !swapping() {
            return Ok(None);
        }
        if !source.join(WRITTEN_FILE).is_file() {
            // Between the two renames of a swap, or never published.
            std::thread::sleep(std::time::Duration::from_millis(200));
            continue;
        }
        let copy = tempfile::Builder::new()
            .prefix("trailsight-snapshot-")
            .tempdir()
            .map_err(|source| ViewError::Snapshot {
                path: dir.to_path_buf(),
                source,
            })?;
        match copy_tree(&source, copy.path()) {
            Ok(()) => {}
            Err(e) => {
                // Swapped while we copied: try again with the new one.
                last_error = Some(e);
                std::thread::sleep(std::time::Duration::from_millis(200));
                continue;
            }
        }
        let written = std::fs::read_to_string(copy.path().join(WRITTEN_FILE))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let store = Store::open_read_only(copy.path())?;
        return Ok(Some((store, written, copy)));
    }
    match last_error {
        Some(error) => Err(ViewError::Snapshot {
            path: source,
            source: error,
        }),
        None => Ok(None),
    }
}

/// Copies a folder tree (regular files and folders only).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
