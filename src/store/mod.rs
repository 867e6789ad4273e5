//! The embedded sled store: per-minute counts (for the baseline window), series and account/region
//! registries, every series' detector state (baselines, attributions, open episodes), the cells of
//! minutes not yet final, which input files were ingested, and the Insights emitted.
//!
//! Everything lives in one sled tree under one-letter key prefixes, so that a checkpoint is a
//! single atomic `apply_batch` followed by a flush: after a crash the store is at the previous
//! checkpoint or the new one, never between them. Every value carries a CRC32 of its key and
//! payload (sled checks its log messages, not what a later read returns from a damaged file),
//! checked on every read; [`check`] walks a whole store.

pub mod check;
pub mod record;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::aggregate::seen::DayFilter;
use crate::aggregate::{AggregateStats, Cell, Pending, Registry};
use crate::detect::{Announcement, PageOut, Profile, SeriesDetector, Slot};
use crate::insight::InsightRecord;
use crate::series::{Minute, SeriesKey};
use record::StateRecord;

/// Version of the store's layout; a store of another version is refused. Version 3 added the
/// CRC32 in front of every value, and the detectors' burst history, epoch and holidays; 4 sparse
/// baselines; 5 a series' first rise, kept after its End (`detect.adoption_minutes`); 6 a
/// detector's position relative to the checkpoint's final minute instead of its next minute
/// (an unchanged series is not written again, and may be paged out).
pub const FORMAT_VERSION: u32 = 6;

/// What every store error about damage says to do (after "run `trailsight store check --store
/// DIR` for a full report").
const REBUILD: &str = "to rebuild, delete the folder and run `trailsight score` again over the archive (then restart `watch` on it)";

/// Free space kept on the store's file system beyond twice a checkpoint's size: sled 0.34 can
/// leave a batch half applied when a write fails for lack of space (seen: "series ids not
/// contiguous" at the next open), so a checkpoint that might not fit is not started.
const SPACE_MARGIN: u64 = 16 << 20;

/// A marker file beside sled's own files: sled recovers a damaged log by truncating it, which
/// can leave an empty database that looks new; the marker tells a new store from a lost one.
const MARKER: &str = "TRAILSIGHT_STORE";
/// The PID of the process that last opened the store.
const PID_FILE: &str = "TRAILSIGHT_PID";
/// The number of the last checkpoint made durable, written after sled's flush: sled recovers a
/// log with a damaged message by silently dropping everything after it, and a database behind
/// this number is such a loss.
const CHECKPOINT_FILE: &str = "TRAILSIGHT_CHECKPOINT";

const KEY_FORMAT: &[u8] = b"m/format";
const KEY_META: &[u8] = b"m/meta";
const KEY_SEEN: &[u8] = b"m/seen";
const KEY_ANNOUNCED: &[u8] = b"m/announced";
const KEY_OUTBOX: &[u8] = b"m/outbox";
const KEY_PROFILE: &[u8] = b"m/profile";
const KEY_COUNTS_FROM: &[u8] = b"m/counts-from";
const KEY_SEQ: &[u8] = b"m/checkpoint";
const KEY_RECORDS: &[u8] = b"m/records";
const P_SERIES: u8 = b's';
const P_REGION: u8 = b'r';
const P_DETECTOR: u8 = b'd';
const P_HEARTBEAT: u8 = b'h';
const P_COUNTS: u8 = b'c';
const P_PENDING_SERIES: u8 = b'p';
const P_PENDING_HEARTBEAT: u8 = b'q';
const P_FILE: u8 = b'f';
const P_INSIGHT: u8 = b'i';
const P_SEEN_DAY: u8 = b'e';
const P_SUPPRESSED: u8 = b'u';

/// Errors of the store; each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled could not open the folder (permissions, another process holds it, damage).
    #[error("cannot open store {path}: {error}. If the disk is full, free space and run again (nothing was lost); if the store is damaged, run `trailsight store check --store {path}`; {REBUILD}")]
    Open {
        /// The store folder.
        path: PathBuf,
        /// What sled said (in the message, not as a separate cause, so it is said once).
        error: sled::Error,
    },
    /// Another process holds the store.
    #[error("store {path} is in use by {holder}: stop it first, or use another --store folder")]
    InUse {
        /// The store folder.
        path: PathBuf,
        /// "PID n" when known, else "another process".
        holder: String,
    },
    /// A write to a store opened for reading (a bug: views never write).
    #[error("store {path} was opened read-only, and {what} was refused (a bug in trailsight; nothing was written)")]
    ReadOnly {
        /// The store folder.
        path: PathBuf,
        /// The write refused.
        what: &'static str,
    },
    /// A checkpoint that does not fit the store it is applied to (a bug): nothing was written.
    #[error("checkpoint refused, nothing written (a bug in trailsight; the store is as it was at the last checkpoint): {0}")]
    BadCheckpoint(String),
    /// A stage's record is stored in a version this build does not read.
    #[error("store {path} holds {kind} records of version {found}, {}: delete the folder and run `trailsight score` again over the archive to rebuild it, or use the trailsight that wrote it", expected.map_or_else(|| "which this trailsight does not know".to_string(), |v| format!("this trailsight reads version {v}")))]
    RecordVersion {
        /// The store folder.
        path: PathBuf,
        /// The record (`detector`, `series key`...).
        kind: String,
        /// The version stored.
        found: u16,
        /// This build's version (None: a record it does not know).
        expected: Option<u16>,
    },
    /// The store was written by another layout version.
    #[error("{}", version_message(path, found, *expected))]
    Version {
        /// The store folder.
        path: PathBuf,
        /// The version found.
        found: String,
        /// The version needed.
        expected: u32,
    },
    /// A value could not be decoded, or its checksum does not match: the store is damaged.
    #[error("store {path} is damaged ({what}): run `trailsight store check --store {path}` for a full report; {REBUILD}")]
    Corrupt {
        /// The store folder.
        path: PathBuf,
        /// Which entry (its key) and why.
        what: String,
    },
    /// The folder holds files but is not a trailsight store: it is not taken over.
    #[error("{path} is not empty and is not a trailsight store (no {MARKER} file, no sled database): refusing to create a store there; give --store a new or empty folder")]
    NotAStore {
        /// The folder.
        path: PathBuf,
    },
    /// The file system is (almost) full: the checkpoint was not started, the store is intact.
    #[error("store {path}: only {available} bytes free, a checkpoint needs about {needed}: nothing was written and the store still holds its last checkpoint; free space and run again (`watch` stops after a few attempts so that a service manager restarts it)")]
    DiskFull {
        /// The store folder.
        path: PathBuf,
        /// Bytes available.
        available: u64,
        /// Bytes wanted (twice the checkpoint, plus a margin).
        needed: u64,
    },
    /// The checkpoint number could not be recorded beside the database (the checkpoint itself
    /// is durable).
    #[error("store {path}: cannot record the checkpoint number in {CHECKPOINT_FILE}: {source}")]
    Sidecar {
        /// The store folder.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// A value could not be encoded (a bug, not damage).
    #[error("store {path}: cannot encode {what}: {error}")]
    Encode {
        /// The store folder.
        path: PathBuf,
        /// What was being encoded.
        what: &'static str,
        /// What the encoder said.
        error: String,
    },
    /// The store was built with a different baseline window than the profile now asks for.
    #[error("store {path} was built with a baseline window of {stored} minutes but the profile asks for {wanted}: use the same profile, or rebuild the store in a new folder")]
    WindowMismatch {
        /// The store folder.
        path: PathBuf,
        /// Window the store was built with.
        stored: i64,
        /// Window of the current profile.
        wanted: i64,
    },
    /// Writing the copy of the store for readers failed (the store itself is unharmed).
    #[error("snapshot of store {path}: {what}: {source}")]
    Snapshot {
        /// The store folder.
        path: PathBuf,
        /// The step that failed.
        what: &'static str,
        /// What the file system said.
        source: std::io::Error,
    },
    /// Reading or writing failed. sled stops writing for good after a failed write (its
    /// "global error"), so the process must be restarted once the cause (a full disk...) is
    /// fixed; it resumes from the last checkpoint.
    #[error("store {path}: {op} failed: {error}. Nothing after the last checkpoint was saved; fix the cause (disk full? permissions?) and run again: it resumes from the last checkpoint. If the error persists, or the next run finds the store damaged, run `trailsight store check --store {path}`; {REBUILD}")]
    Io {
        /// The store folder.
        path: PathBuf,
        /// The operation and key concerned.
        op: String,
        /// What sled said (in the message, not as a separate cause, so it is said once).
        error: sled::Error,
    },
}

impl StoreError {
    /// Whether the store's data was found damaged (as opposed to an I/O failure, a lock, a
    /// version or a setting).
    pub fn is_damage(&self) -> bool {
        matches!(self, StoreError::Corrupt { .. })
    }
}

/// Run-level state kept across runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// Every minute before this one is final and processed.
    pub final_before: Option<Minute>,
    /// Baseline window the detector states were built with.
    pub window_minutes: i64,
    /// Totals over every run on this store.
    pub totals: AggregateStats,
}

/// One ingested input file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Size in bytes when ingested.
    pub size: u64,
    /// Records read from it.
    pub records: u64,
}

/// Everything a run resumes from.
pub struct EngineState {
    /// Run-level state.
    pub meta: Meta,
    /// Known series and account/regions.
    pub registry: Registry,
    /// Detector state per series id (missing entries are new series), dormant ones paged out.
    pub series: Vec<Slot>,
    /// Heartbeat state per account/region id.
    pub heartbeats: Vec<SeriesDetector>,
    /// Cells of minutes not final yet.
    pub pending: Pending,
    /// Hashed eventIDs inside the dedup window, by minute.
    pub seen_ids: BTreeMap<Minute, Vec<u64>>,
    /// Filters of the eventIDs older than the dedup window, by UTC day.
    pub seen_days: BTreeMap<i64, DayFilter>,
    /// Rises declared before their minutes were final, not yet confirmed or closed.
    pub announced: BTreeMap<u32, Announcement>,
    /// Insights committed whose delivery to the sinks was not confirmed (a crash came between):
    /// they are delivered again, in the same groups, before anything new.
    pub outbox: Vec<InsightRecord>,
}

/// What a checkpoint writes, atomically.
#[derive(Default)]
pub struct Checkpoint<'a> {
    /// Run-level state.
    pub meta: Option<&'a Meta>,
    /// The registry (new series and account/regions are written).
    pub registry: Option<&'a Registry>,
    /// Detector states to write, by series id.
    pub series: Vec<(u32, &'a SeriesDetector)>,
    /// Heartbeat states to write, by account/region id.
    pub heartbeats: Vec<(u32, &'a SeriesDetector)>,
    /// The complete set of pending cells (replaces the stored set).
    pub pending: Option<&'a Pending>,
    /// Count chunks: (series id, absolute hour) -> 60 minute counts.
    pub counts: Vec<((u32, i64), &'a [u32; 60])>,
    /// Files ingested since the last checkpoint.
    pub files: Vec<(&'a str, FileRecord)>,
    /// Insights emitted since the last checkpoint.
    pub insights: Vec<(u32, &'a InsightRecord)>,
    /// Hashed eventIDs inside the dedup window (replaces the stored set).
    pub seen_ids: Option<&'a BTreeMap<Minute, Vec<u64>>>,
    /// Day filters of eventIDs that changed (see [`crate::aggregate::seen`]).
    pub seen_days: Vec<(i64, &'a DayFilter)>,
    /// Day filters of days before this are deleted.
    pub prune_seen_days_before: Option<i64>,
    /// Count chunks of hours before this are deleted (retention).
    pub prune_counts_before_hour: Option<i64>,
    /// Episodes suppressed since the last checkpoint, by `sharedEventID`.
    pub suppressed: Vec<(&'a str, &'a crate::suppress::Suppressed)>,
    /// Rises announced and still open (replaces the stored set).
    pub announced: Option<&'a BTreeMap<u32, Announcement>>,
    /// Insights to deliver to the sinks once this checkpoint is durable (replaces the stored
    /// outbox; cleared by [`Store::clear_outbox`] once the sinks have them).
    pub outbox: Vec<&'a InsightRecord>,
    /// The detector profile in force (recorded so that plots and exports recompute baselines
    /// with the settings that produced the Insights).
    pub profile: Option<&'a Profile>,
}

impl Checkpoint<'_> {
    /// Checks that the checkpoint fits the store it is applied to, before anything is written:
    /// every series and account/region it names is registered (in it or already stored), the
    /// final minute never moves back, and no pending cell is of a final minute. `stored_final`
    /// is the stored run state's final minute, `stored_series` the series already stored.
    fn check(&self, stored_final: Option<Minute>, stored_series: usize) -> Result<(), String> {
        let series = self
            .registry
            .map_or(stored_series, |r| r.series.len().max(stored_series));
        let regions = self.registry.map(|r| r.regions.len());
        let final_before = self.meta.and_then(|m| m.final_before);
        if let (Some(before), Some(now)) = (stored_final, final_before) {
            if now < before {
                return Err(format!(
                    "the final minute moves back from {before} to {now}"
                ));
            }
        }
        let series_ids = self
            .series
            .iter()
            .map(|(id, _)| *id)
            .chain(self.counts.iter().map(|((id, _), _)| *id))
            .chain(self.insights.iter().map(|(id, _)| *id))
            .chain(self.pending.iter().flat_map(|p| p.series.keys().copied()))
            .chain(self.announced.iter().flat_map(|a| a.keys().copied()));
        for id in series_ids {
            if id as usize >= series {
                return Err(format!(
                    "series {id} is named but only {series} are registered"
                ));
            }
        }
        if let Some(regions) = regions {
            let region_ids = self.heartbeats.iter().map(|(id, _)| *id).chain(
                self.pending
                    .iter()
                    .flat_map(|p| p.heartbeat.keys().copied()),
            );
            for id in region_ids {
                if id as usize >= regions {
                    return Err(format!(
                        "account/region {id} is named but only {regions} are registered"
                    ));
                }
            }
        }
        if let (Some(pending), Some(f)) = (self.pending, final_before) {
            let first = pending
                .series
                .values()
                .filter_map(|cells| cells.keys().next())
                .chain(
                    pending
                        .heartbeat
                        .values()
                        .filter_map(|cells| cells.keys().next()),
                )
                .min();
            if let Some(&m) = first.filter(|&&m| m < f) {
                return Err(format!(
                    "a pending cell of minute {m} is before the final minute {f}"
                ));
            }
        }
        Ok(())
    }
}

/// An open store (a clone is another handle on the same database).
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    path: PathBuf,
    /// Set once sled failed an I/O operation (see the `Drop` impl).
    failed: Arc<AtomicBool>,
    /// Number of the last checkpoint written.
    seq: Arc<AtomicU64>,
    /// Bytes of the checkpoint being built.
    batch_bytes: Arc<AtomicU64>,
    /// What the database holds of the values a checkpoint may leave as they are.
    written: Arc<Mutex<Written>>,
    /// Opened by a reader ([`Store::open_read_only`]): every write is refused.
    read_only: bool,
    /// The record version of the series keys stored (older ones are read, and rewritten when a
    /// writer opens the store).
    series_key_version: u16,
}

/// What the database holds of the values most checkpoints would write again unchanged: a hash
/// of each detector's stored payload, the registry entries written and the last retention cut.
#[derive(Debug, Default, Clone)]
struct Written {
    detectors: Vec<u64>,
    heartbeats: Vec<u64>,
    series_keys: usize,
    pruned_before: Option<i64>,
}

/// Where a stored detector stands: at the final minute of the checkpoint that holds it (every
/// series advanced to it, so a series that only moved on with the others encodes as it did and
/// is not written again), or at its own next minute (`None`: not started).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
enum Position {
    Final,
    At(Option<Minute>),
}

/// A detector as stored: its position, then its state.
type StoredDetector = (Position, SeriesDetector);

fn payload_hash(payload: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    payload.hash(&mut h);
    // 0 is "nothing written yet"
    h.finish() | 1
}

/// Slot `id` of a hash list, grown as needed.
fn hash_slot(list: &mut Vec<u64>, id: u32) -> &mut u64 {
    let id = id as usize;
    if list.len() <= id {
        list.resize(id + 1, 0);
    }
    &mut list[id]
}

impl Drop for Store {
    fn drop(&mut self) {
        // After a failed write, sled's own drop flushes its log again and calls
        // `sync_all().unwrap()`: on a disk that is still full it can hang (seen in `score`) or
        // panic, and it writes to a log that recovery then has to make sense of. Nothing since
        // the last checkpoint is wanted (the next run resumes from it), so the handle is leaked
        // and the process exits without touching the files again.
        if self.failed.load(Ordering::Relaxed) {
            std::mem::forget(self.db.clone());
        }
    }
}

/// How a value's payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Postcard,
    Json,
}

fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// Big-endian, sign-flipped, so that byte order is numeric order for negative minutes too.
fn ordered(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

fn unordered(b: &[u8]) -> Option<i64> {
    let arr: [u8; 8] = b.try_into().ok()?;
    Some((u64::from_be_bytes(arr) ^ (1 << 63)) as i64)
}

fn id_from(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.try_into().ok()?))
}

/// CRC32 of a key and a payload: a value moved to another key fails too.
fn checksum(k: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&(k.len() as u32).to_le_bytes());
    h.update(k);
    h.update(payload);
    h.finalize()
}

/// A stored value: the checksum (4 bytes, little-endian), then the payload.
fn seal(k: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + payload.len());
    v.extend_from_slice(&checksum(k, payload).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

/// The payload of a stored value whose checksum matches.
fn unseal<'a>(k: &[u8], v: &'a [u8]) -> Result<&'a [u8], String> {
    let (Some(stored), Some(payload)) = (v.get(..4), v.get(4..)) else {
        return Err(format!(
            "value of {} bytes, too short for its checksum",
            v.len()
        ));
    };
    let stored = u32::from_le_bytes(stored.try_into().map_err(|_| "checksum".to_string())?);
    let actual = checksum(k, payload);
    if stored != actual {
        return Err(format!(
            "checksum mismatch (stored {stored:08x}, computed {actual:08x})"
        ));
    }
    Ok(payload)
}

/// A key as a person reads it: its prefix and decoded parts (ids, minutes, names).
pub fn show_key(k: &[u8]) -> String {
    let rest = k.get(1..).unwrap_or_default();
    let id = |b: &[u8]| id_from(b.get(..4).unwrap_or_default());
    let time = |b: &[u8]| unordered(b.get(4..12).unwrap_or_default());
    let described = match k.first() {
        Some(b'm') => Some(String::from_utf8_lossy(k).into_owned()),
        Some(&p @ (P_SERIES | P_REGION | P_DETECTOR | P_HEARTBEAT)) if rest.len() == 4 => {
            let what = match p {
                P_SERIES => "series",
                P_REGION => "account/region",
                P_DETECTOR => "detector of series",
                _ => "heartbeat of account/region",
            };
            id(rest).map(|i| format!("{what} {i}"))
        }
        Some(&p @ (P_COUNTS | P_PENDING_SERIES | P_PENDING_HEARTBEAT)) if rest.len() == 12 => {
            match (id(rest), time(rest)) {
                (Some(i), Some(t)) if p == P_COUNTS => {
                    Some(format!("counts of series {i}, hour {t}"))
                }
                (Some(i), Some(t)) if p == P_PENDING_SERIES => {
                    Some(format!("pending cell of series {i}, minute {t}"))
                }
                (Some(i), Some(t)) => Some(format!(
                    "pending heartbeat of account/region {i}, minute {t}"
                )),
                _ => None,
            }
        }
        Some(&P_FILE) => Some(format!("ingested file {:?}", String::from_utf8_lossy(rest))),
        Some(&P_SEEN_DAY) => unordered(rest).map(|day| format!("eventID filter of day {day}")),
        Some(&P_SUPPRESSED) => Some(format!(
            "suppressed episode {:?}",
            String::from_utf8_lossy(rest)
        )),
        Some(&P_INSIGHT) if rest.len() >= 12 => {
            match (unordered(&rest[..8]), id_from(&rest[8..12])) {
                (Some(t), Some(i)) => Some(format!(
                    "Insight of series {i} at minute {t} ({})",
                    String::from_utf8_lossy(&rest[12..])
                )),
                _ => None,
            }
        }
        _ => None,
    };
    described.unwrap_or_else(|| {
        let hex: String = k.iter().take(32).map(|b| format!("{b:02x}")).collect();
        format!("key 0x{hex}{}", if k.len() > 32 { "..." } else { "" })
    })
}

/// Whether `dir` holds a trailsight store (readers must not create one at a mistyped path).
pub fn is_store(dir: &Path) -> bool {
    dir.join(MARKER).is_file()
}

/// Whether a folder without the marker may become a store: it is missing or empty, or it holds
/// only what sled itself writes (a store whose first open stopped before the marker was
/// written, or a bare sled database, which the format check then judges).
fn may_create_in(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return true;
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.retain(|n| n != PID_FILE);
    names.is_empty() || (names.iter().any(|n| n == "conf") && names.iter().any(|n| n == "db"))
}

impl Store {
    /// Opens (creating when missing) the store in folder `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, true)
    }

    /// Opens the store in folder `path`, which must already be one, to write to it.
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, false)
    }

    /// Opens the store in folder `path`, which must already be one, for reading: nothing is
    /// written to the folder (not even the PID file), and a checkpoint or any other write is
    /// refused with [`StoreError::ReadOnly`]. sled has no read-only mode: its file lock is still
    /// taken while the view is open (`watch` publishes snapshots for readers meanwhile).
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        Store::open_mode(path, false, true)
    }

    fn open_with(path: &Path, create: bool) -> Result<Store, StoreError> {
        Store::open_mode(path, create, false)
    }

    fn open_mode(path: &Path, create: bool, read_only: bool) -> Result<Store, StoreError> {
        let marker = path.join(MARKER);
        let was_store = marker.is_file();
        if !was_store && (!create || !may_create_in(path)) {
            return Err(StoreError::NotAStore {
                path: path.to_path_buf(),
            });
        }
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(64 * 1024 * 1024)
            .open()
            .map_err(|error| Store::open_error(path, error))?;
        // sled's file lock is what keeps a second process out; the PID beside it only names
        // the holder in the error the second process gets (best effort: it is not needed).
        // A reader writes nothing.
        if !read_only {
            let _ = std::fs::write(path.join(PID_FILE), format!("{}\n", std::process::id()));
        }
        let mut store = Store {
            db,
            path: path.to_path_buf(),
            failed: Arc::new(AtomicBool::new(false)),
            seq: Arc::new(AtomicU64::new(0)),
            batch_bytes: Arc::new(AtomicU64::new(0)),
            written: Arc::default(),
            read_only,
            series_key_version: <SeriesKey as StateRecord>::VERSION,
        };
        match store.get_raw(KEY_FORMAT)? {
            None => {
                if was_store {
                    return Err(store.corrupt(
                        "the folder was a trailsight store but its database is empty: its data was lost or damaged".into(),
                    ));
                }
                if !store.db.is_empty() {
                    return Err(StoreError::Version {
                        path: store.path.clone(),
                        found: "none".into(),
                        expected: FORMAT_VERSION,
                    });
                }
                store
                    .db
                    .insert(KEY_FORMAT, &FORMAT_VERSION.to_be_bytes())
                    .map_err(|source| store.io("writing the format version", source))?;
                let records = serde_json::to_vec(&record::versions())
                    .map_err(|e| store.corrupt(format!("encoding the record versions: {e}")))?;
                store
                    .db
                    .insert(KEY_RECORDS, records)
                    .map_err(|source| store.io("writing the record versions", source))?;
                store
                    .db
                    .flush()
                    .map_err(|source| store.io("flushing", source))?;
                std::fs::write(
                    &marker,
                    format!("trailsight store, format {FORMAT_VERSION}\n"),
                )
                .map_err(|e| store.corrupt(format!("cannot write {}: {e}", marker.display())))?;
            }
            Some(v) => {
                let found = <[u8; 4]>::try_from(&v[..]).ok().map(u32::from_be_bytes);
                if found != Some(FORMAT_VERSION) {
                    return Err(StoreError::Version {
                        path: store.path.clone(),
                        found: found.map_or_else(|| format!("{:?}", &v[..]), |n| n.to_string()),
                        expected: FORMAT_VERSION,
                    });
                }
            }
        }
        let stored_records = match store.get_raw(KEY_RECORDS)? {
            None => record::unversioned(),
            Some(v) => {
                serde_json::from_slice(&v).map_err(|e| store.corrupt(format!("m/records: {e}")))?
            }
        };
        if let Some((kind, found, expected)) = record::mismatch(&stored_records) {
            return Err(StoreError::RecordVersion {
                path: store.path.clone(),
                kind,
                found,
                expected,
            });
        }
        if let Some(&v) = stored_records.get(<SeriesKey as StateRecord>::KIND) {
            store.series_key_version = v;
        }
        if !read_only && !record::older(&stored_records).is_empty() {
            store.upgrade_records()?;
        }
        let seq = store.get::<u64>(KEY_SEQ, Codec::Postcard)?.unwrap_or(0);
        if let Some(done) = store.durable_checkpoint() {
            if done > seq {
                return Err(store.corrupt(format!(
                    "checkpoint {done} was completed but the database holds only checkpoint {seq}: sled dropped the end of its log (damaged file)"
                )));
            }
        }
        store.seq.store(seq, Ordering::Relaxed);
        Ok(store)
    }

    /// The checkpoint number recorded beside the database, if any (a file that cannot be read
    /// or parsed counts as none: it only ever adds a check).
    fn durable_checkpoint(&self) -> Option<u64> {
        std::fs::read_to_string(self.path.join(CHECKPOINT_FILE))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// The store's folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Decodes a stored series key, of the version the store holds.
    fn decode_series_key(&self, k: &[u8], v: &[u8]) -> Result<SeriesKey, StoreError> {
        let payload = unseal(k, v).map_err(|e| self.corrupt(format!("{}: {e}", show_key(k))))?;
        SeriesKey::decode_stored(payload, self.series_key_version)
            .map_err(|e| self.corrupt(format!("{}: cannot decode: {e}", show_key(k))))
    }

    /// Rewrites every record stored in an older version than this build writes (only series
    /// keys have one: version 1, before event categories), and the record versions, in one
    /// atomic batch: a crash leaves the store as it was, read again the same way.
    fn upgrade_records(&mut self) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for item in self.db.scan_prefix([P_SERIES]) {
            let (k, v) = item.map_err(|source| self.io("reading the series", source))?;
            let key = self.decode_series_key(&k, &v)?;
            self.put(&mut batch, k.to_vec(), "series", &key, Codec::Postcard)?;
        }
        let records = serde_json::to_vec(&record::versions())
            .map_err(|e| self.corrupt(format!("encoding the record versions: {e}")))?;
        batch.insert(KEY_RECORDS, records);
        self.db
            .apply_batch(batch)
            .map_err(|source| self.io("upgrading the stored records", source))?;
        self.db
            .flush()
            .map_err(|source| self.io("flushing the upgraded records", source))?;
        self.series_key_version = <SeriesKey as StateRecord>::VERSION;
        Ok(())
    }

    /// Refuses `what` on a store opened read-only.
    fn writable(&self, what: &'static str) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly {
                path: self.path.clone(),
                what,
            });
        }
        Ok(())
    }

    /// What the database holds of the values a checkpoint may leave as they are (a lock
    /// poisoned by a panic elsewhere still holds what the last completed checkpoint wrote).
    fn written(&self) -> Written {
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether sled failed an I/O operation on this store: it refuses every write from then on
    /// (its "global error"), so the process must stop and be restarted.
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    fn io(&self, op: impl Into<String>, error: sled::Error) -> StoreError {
        self.failed.store(true, Ordering::Relaxed);
        StoreError::Io {
            path: self.path.clone(),
            op: op.into(),
            error,
        }
    }

    fn open_error(path: &Path, error: sled::Error) -> StoreError {
        // sled reports its file lock being held as an I/O error that wraps WouldBlock.
        let locked = matches!(&error, sled::Error::Io(e)
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.to_string().contains("could not acquire lock"));
        if locked {
            let holder = std::fs::read_to_string(path.join(PID_FILE))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .map_or_else(|| "another process".to_string(), |pid| format!("PID {pid}"));
            return StoreError::InUse {
                path: path.to_path_buf(),
                holder,
            };
        }
        StoreError::Open {
            path: path.to_path_buf(),
            error,
        }
    }

    /// Whether any series is registered.
    fn has_series(&self) -> Result<bool, StoreError> {
        match self.db.scan_prefix([P_SERIES]).next() {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(source)) => Err(self.io("reading the series", source)),
        }
    }

    fn corrupt(&self, what: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what,
        }
    }

    fn get_raw(&self, k: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        self.db
            .get(k)
            .map_err(|source| self.io(format!("reading {}", show_key(k)), source))
    }

    /// Checks a stored value's checksum and decodes its payload.
    fn decode<T: DeserializeOwned>(
        &self,
        k: &[u8],
        v: &[u8],
        codec: Codec,
    ) -> Result<T, StoreError> {
        let payload = unseal(k, v).map_err(|e| self.corrupt(format!("{}: {e}", show_key(k))))?;
        let decoded = match codec {
            Codec::Postcard => postcard::from_bytes(payload).map_err(|e| e.to_string()),
            Codec::Json => serde_json::from_slice(payload).map_err(|e| e.to_string()),
        };
        decoded.map_err(|e| self.corrupt(format!("{}: cannot decode: {e}", show_key(k))))
    }

    /// Encodes a value and seals it with its checksum.
    fn encode<T: Serialize + ?Sized>(
        &self,
        what: &'static str,
        k: &[u8],
        value: &T,
        codec: Codec,
    ) -> Result<Vec<u8>, StoreError> {
        let payload = match codec {
            Codec::Postcard => postcard::to_allocvec(value).map_err(|e| e.to_string()),
            Codec::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
        }
        .map_err(|error| StoreError::Encode {
            path: self.path.clone(),
            what,
            error,
        })?;
        Ok(seal(k, &payload))
    }

    /// Reads and decodes one value.
    fn get<T: DeserializeOwned>(&self, k: &[u8], codec: Codec) -> Result<Option<T>, StoreError> {
        match self.get_raw(k)? {
            Some(v) => self.decode(k, &v, codec).map(Some),
            None => Ok(None),
        }
    }

    /// Iterates one prefix, decoding (key after the prefix, value).
    fn scan<T: DeserializeOwned>(
        &self,
        prefix: u8,
        codec: Codec,
    ) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix([prefix]) {
            let (k, v) = item.map_err(|source| {
                self.io(
                    format!("reading the keys under {:?}", prefix as char),
                    source,
                )
            })?;
            let value = self.decode(&k, &v, codec)?;
            out.push((k[1..].to_vec(), value));
        }
        Ok(out)
    }

    /// Run-level state (default on a store no checkpoint has written yet; a store that holds
    /// series but no run state is damaged, and says so).
    pub fn meta(&self) -> Result<Meta, StoreError> {
        match self.get(KEY_META, Codec::Postcard)? {
            Some(meta) => Ok(meta),
            None if !self.has_series()? => Ok(Meta::default()),
            None => {
                Err(self
                    .corrupt("the run state (m/meta) is missing while series are stored".into()))
            }
        }
    }

    /// Loads everything a run resumes from, for the detector `profile`: a series whose stored
    /// state is missing starts anew, and one that [`PageOut`] allows to leave memory is paged
    /// out as it is read (only its bursts stay).
    pub fn load(&self, profile: &Profile) -> Result<EngineState, StoreError> {
        let window_minutes = profile.baseline.window_minutes;
        let new_detector = || SeriesDetector::new(profile);
        let mut meta = self.meta()?;
        if meta.window_minutes != 0 && meta.window_minutes != window_minutes {
            return Err(StoreError::WindowMismatch {
                path: self.path.clone(),
                stored: meta.window_minutes,
                wanted: window_minutes,
            });
        }
        meta.window_minutes = window_minutes;
        let registry = self.registry()?;
        let mut pending = Pending::default();
        for (k, cell) in self.scan::<Cell>(P_PENDING_SERIES, Codec::Postcard)? {
            let (id, minute) = self.id_minute(&k, "pending cell key")?;
            pending.series.entry(id).or_default().insert(minute, cell);
        }
        for (k, count) in self.scan::<u64>(P_PENDING_HEARTBEAT, Codec::Postcard)? {
            let (id, minute) = self.id_minute(&k, "pending heartbeat key")?;
            pending
                .heartbeat
                .entry(id)
                .or_default()
                .insert(minute, count);
        }
        let announced: BTreeMap<u32, Announcement> = self
            .get(KEY_ANNOUNCED, Codec::Postcard)?
            .unwrap_or_default();
        let mut written = Written {
            series_keys: registry.series.len(),
            ..Written::default()
        };
        let rule = PageOut {
            profile,
            registry: &registry,
            final_before: meta.final_before,
            pending: &pending,
            announced: &announced,
        };
        let mut series: Vec<Option<Slot>> = (0..registry.series.len()).map(|_| None).collect();
        for item in self.db.scan_prefix([P_DETECTOR]) {
            let (k, v) = item.map_err(|source| self.io("reading the detector states", source))?;
            let id = id_from(&k[1..]).ok_or_else(|| self.corrupt("detector id".into()))?;
            let slot = series.get_mut(id as usize).ok_or_else(|| {
                self.corrupt(format!("detector of series {id}, which is not registered"))
            })?;
            let (mut d, hash) = self.decode_detector(&k, &v, meta.final_before, window_minutes)?;
            *hash_slot(&mut written.detectors, id) = hash;
            *slot = Some(if rule.allows(id, &mut d) {
                Slot::paged(&d)
            } else {
                Slot::Resident(Box::new(d))
            });
        }
        let series: Vec<Slot> = series
            .into_iter()
            .map(|slot| slot.unwrap_or_else(|| Slot::Resident(Box::new(new_detector()))))
            .collect();
        let mut heartbeats: Vec<SeriesDetector> = (0..registry.regions.len())
            .map(|_| new_detector())
            .collect();
        for item in self.db.scan_prefix([P_HEARTBEAT]) {
            let (k, v) = item.map_err(|source| self.io("reading the heartbeat states", source))?;
            let id = id_from(&k[1..]).ok_or_else(|| self.corrupt("heartbeat id".into()))?;
            let slot = heartbeats.get_mut(id as usize).ok_or_else(|| {
                self.corrupt(format!(
                    "heartbeat of account/region {id}, which is not registered"
                ))
            })?;
            let (d, hash) = self.decode_detector(&k, &v, meta.final_before, window_minutes)?;
            *hash_slot(&mut written.heartbeats, id) = hash;
            *slot = d;
        }
        {
            let mut w = self
                .written
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *w = written;
        }
        let seen_ids = self.get(KEY_SEEN, Codec::Postcard)?.unwrap_or_default();
        let mut seen_days = BTreeMap::new();
        for (k, filter) in self.scan::<DayFilter>(P_SEEN_DAY, Codec::Postcard)? {
            let day = unordered(&k).ok_or_else(|| StoreError::Corrupt {
                path: self.path.clone(),
                what: "an eventID filter's key is not a day".to_string(),
            })?;
            seen_days.insert(day, filter);
        }
        let outbox = self.get(KEY_OUTBOX, Codec::Json)?.unwrap_or_default();
        Ok(EngineState {
            meta,
            registry,
            series,
            heartbeats,
            pending,
            seen_ids,
            seen_days,
            announced,
            outbox,
        })
    }

    /// Decodes a stored detector (key `k`, sealed value `v`) standing at `final_before` when it
    /// was stored at its checkpoint's final minute, with the hash of its payload.
    fn decode_detector(
        &self,
        k: &[u8],
        v: &[u8],
        final_before: Option<Minute>,
        window_minutes: i64,
    ) -> Result<(SeriesDetector, u64), StoreError> {
        let payload = unseal(k, v).map_err(|e| self.corrupt(format!("{}: {e}", show_key(k))))?;
        let (position, mut d): StoredDetector = postcard::from_bytes(payload)
            .map_err(|e| self.corrupt(format!("{}: cannot decode: {e}", show_key(k))))?;
        if let Some(problem) = d.shape_problem(window_minutes) {
            return Err(self.corrupt(format!("{}: {problem}", show_key(k))));
        }
        d.set_next_minute(match position {
            Position::Final => final_before,
            Position::At(next) => next,
        });
        Ok((d, payload_hash(payload)))
    }

    /// The stored detector of series `id`, standing at `final_before` (the final minute now: a
    /// series paged out since its state was stored would have skipped every minute since).
    pub fn detector(
        &self,
        id: u32,
        final_before: Option<Minute>,
        window_minutes: i64,
    ) -> Result<SeriesDetector, StoreError> {
        let k = key(P_DETECTOR, &[&id.to_be_bytes()]);
        let v = self.get_raw(&k)?.ok_or_else(|| {
            self.corrupt(format!(
                "series {id} was paged out, but the store holds no detector state for it"
            ))
        })?;
        Ok(self
            .decode_detector(&k, &v, final_before, window_minutes)?
            .0)
    }

    /// (id, minute) of a key's rest after its prefix.
    fn id_minute(&self, rest: &[u8], what: &str) -> Result<(u32, Minute), StoreError> {
        match (
            id_from(rest.get(..4).unwrap_or_default()),
            unordered(rest.get(4..).unwrap_or_default()),
        ) {
            (Some(id), Some(minute)) => Ok((id, minute)),
            _ => Err(self.corrupt(format!("{what} of {} bytes", rest.len() + 1))),
        }
    }

    /// The known series and account/regions (what [`Store::load`] restores, without the
    /// detector states): enough to read counts and Insights.
    pub fn registry(&self) -> Result<Registry, StoreError> {
        let mut series_keys: Vec<SeriesKey> = Vec::new();
        for item in self.db.scan_prefix([P_SERIES]) {
            let (k, v) = item.map_err(|source| self.io("reading the series", source))?;
            let key = self.decode_series_key(&k, &v)?;
            let id = id_from(&k[1..]).ok_or_else(|| self.corrupt("series id".into()))?;
            if id as usize != series_keys.len() {
                return Err(self.corrupt(format!(
                    "series ids not contiguous: series {} is missing",
                    series_keys.len()
                )));
            }
            series_keys.push(key);
        }
        let mut regions = Vec::new();
        for (k, (account, region, first)) in
            self.scan::<(String, String, Minute)>(P_REGION, Codec::Postcard)?
        {
            let id = id_from(&k).ok_or_else(|| self.corrupt("account/region id".into()))?;
            if id as usize != regions.len() {
                return Err(self.corrupt(format!(
                    "account/region ids not contiguous: account/region {} is missing",
                    regions.len()
                )));
            }
            regions.push((Arc::<str>::from(account), Arc::<str>::from(region), first));
        }
        Ok(Registry::restore(series_keys, regions))
    }

    /// The detector profile the store was last written with (`None` for stores written before
    /// it was recorded).
    pub fn profile(&self) -> Result<Option<Profile>, StoreError> {
        self.get(KEY_PROFILE, Codec::Json)
    }

    /// The first minute whose counts are kept, once retention has pruned older ones.
    pub fn counts_from(&self) -> Result<Option<Minute>, StoreError> {
        self.get(KEY_COUNTS_FROM, Codec::Postcard)
    }

    /// The first hour with stored counts for a series (earlier hours were pruned or had no
    /// calls).
    pub fn first_count_hour(&self, series: u32) -> Result<Option<i64>, StoreError> {
        let prefix = key(P_COUNTS, &[&series.to_be_bytes()]);
        match self.db.scan_prefix(&prefix).next() {
            Some(item) => {
                let (k, _) = item.map_err(|source| self.io(show_key(&prefix), source))?;
                unordered(k.get(5..13).unwrap_or_default())
                    .map(Some)
                    .ok_or_else(|| self.corrupt(format!("{}: bad key length", show_key(&k))))
            }
            None => Ok(None),
        }
    }

    /// Writes a consistent copy of the whole store into the new folder `dir` (which must not
    /// exist), for readers while a long-running process holds this store. The caller must not
    /// write to the store meanwhile (the engine thread calls it between steps).
    pub fn copy_to(&self, dir: &Path) -> Result<(), StoreError> {
        let copy = sled::Config::new()
            .path(dir)
            .cache_capacity(8 * 1024 * 1024)
            .create_new(true)
            .open()
            .map_err(|error| Store::open_error(dir, error))?;
        copy.import(self.db.export());
        copy.flush().map_err(|error| StoreError::Io {
            path: dir.to_path_buf(),
            op: "flushing the snapshot".into(),
            error,
        })?;
        drop(copy);
        std::fs::write(
            dir.join(MARKER),
            format!("trailsight store, format {FORMAT_VERSION}\n"),
        )
        .map_err(|source| StoreError::Snapshot {
            path: self.path.clone(),
            what: "writing its marker",
            source,
        })?;
        Ok(())
    }

    /// Whether an input file (by ingest key) was already ingested.
    pub fn is_ingested(&self, ingest_key: &str) -> Result<bool, StoreError> {
        let k = key(P_FILE, &[ingest_key.as_bytes()]);
        Ok(self.get::<FileRecord>(&k, Codec::Postcard)?.is_some())
    }

    /// What was recorded of an ingested input file (by ingest key), if it was ingested.
    pub fn ingested_file(&self, ingest_key: &str) -> Result<Option<FileRecord>, StoreError> {
        let k = key(P_FILE, &[ingest_key.as_bytes()]);
        self.get::<FileRecord>(&k, Codec::Postcard)
    }

    /// Number of ingested files recorded.
    pub fn ingested_files(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.db.scan_prefix([P_FILE]).keys() {
            item.map_err(|source| self.io("listing the ingested files", source))?;
            n += 1;
        }
        Ok(n)
    }

    /// The stored counts of one hour of a series (zeros when none).
    pub fn count_chunk(&self, series: u32, hour: i64) -> Result<[u32; 60], StoreError> {
        let k = key(P_COUNTS, &[&series.to_be_bytes(), &ordered(hour)]);
        match self.get::<Vec<u32>>(&k, Codec::Postcard)? {
            Some(counts) => self.chunk(&k, counts),
            None => Ok([0; 60]),
        }
    }

    /// An hour's counts as stored (at most 60 minutes).
    fn chunk(&self, k: &[u8], counts: Vec<u32>) -> Result<[u32; 60], StoreError> {
        if counts.len() > 60 {
            return Err(self.corrupt(format!(
                "{}: {} minutes in an hour",
                show_key(k),
                counts.len()
            )));
        }
        let mut out = [0u32; 60];
        for (o, c) in out.iter_mut().zip(counts) {
            *o = c;
        }
        Ok(out)
    }

    /// Per-minute counts of a series in [from, to), minutes with no calls omitted.
    pub fn counts(
        &self,
        series: u32,
        from: Minute,
        to: Minute,
    ) -> Result<BTreeMap<Minute, u32>, StoreError> {
        let mut out = BTreeMap::new();
        let lo = key(
            P_COUNTS,
            &[&series.to_be_bytes(), &ordered(from.div_euclid(60))],
        );
        let hi = key(
            P_COUNTS,
            &[&series.to_be_bytes(), &ordered(to.div_euclid(60) + 1)],
        );
        for item in self.db.range(lo..hi) {
            let (k, v) = item.map_err(|source| {
                self.io(format!("reading the counts of series {series}"), source)
            })?;
            let hour = unordered(k.get(5..13).unwrap_or_default())
                .ok_or_else(|| self.corrupt(format!("{}: bad key length", show_key(&k))))?;
            let counts = self.chunk(&k, self.decode(&k, &v, Codec::Postcard)?)?;
            for (i, c) in counts.into_iter().enumerate() {
                let m = hour * 60 + i as i64;
                if c > 0 && m >= from && m < to {
                    out.insert(m, c);
                }
            }
        }
        Ok(out)
    }

    /// The episodes suppressed by a rule, by `sharedEventID`.
    pub fn suppressed(&self) -> Result<BTreeMap<String, crate::suppress::Suppressed>, StoreError> {
        self.scan::<crate::suppress::Suppressed>(P_SUPPRESSED, Codec::Postcard)?
            .into_iter()
            .map(|(k, v)| {
                String::from_utf8(k)
                    .map(|id| (id, v))
                    .map_err(|_| self.corrupt("a suppressed episode's id is not UTF-8".into()))
            })
            .collect()
    }

    /// Every Insight emitted so far, in (eventTime, series, state) order.
    pub fn insights(&self) -> Result<Vec<InsightRecord>, StoreError> {
        Ok(self
            .scan::<InsightRecord>(P_INSIGHT, Codec::Json)?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// Refuses to start a checkpoint that might not fit on the disk (see [`SPACE_MARGIN`]). The
    /// bytes of the batch are those encoded since the last checkpoint; a file system that
    /// cannot say how much is free is not checked.
    fn ensure_space(&self) -> Result<(), StoreError> {
        let batch = self.batch_bytes.swap(0, Ordering::Relaxed);
        let needed = 2 * batch + SPACE_MARGIN;
        match fs2::available_space(&self.path) {
            Ok(available) if available < needed => Err(StoreError::DiskFull {
                path: self.path.clone(),
                available,
                needed,
            }),
            _ => Ok(()),
        }
    }

    /// Encodes a value into the batch under key `k`.
    fn put<T: Serialize + ?Sized>(
        &self,
        batch: &mut sled::Batch,
        k: Vec<u8>,
        what: &'static str,
        value: &T,
        codec: Codec,
    ) -> Result<(), StoreError> {
        let v = self.encode(what, &k, value, codec)?;
        self.batch_bytes
            .fetch_add((k.len() + v.len()) as u64, Ordering::Relaxed);
        batch.insert(k, v);
        Ok(())
    }

    /// Encodes a detector under `prefix` and `id` into the batch, unless the database already
    /// holds exactly that payload (`hash`, updated).
    fn put_detector(
        &self,
        batch: &mut sled::Batch,
        prefix: u8,
        id: u32,
        d: &SeriesDetector,
        final_before: Option<Minute>,
        hash: &mut u64,
    ) -> Result<(), StoreError> {
        let position = match d.next_minute() {
            next if next.is_some() && next == final_before => Position::Final,
            next => Position::At(next),
        };
        let payload = postcard::to_allocvec(&(position, d)).map_err(|e| StoreError::Encode {
            path: self.path.clone(),
            what: "detector",
            error: e.to_string(),
        })?;
        let new = payload_hash(&payload);
        if new == *hash {
            return Ok(());
        }
        *hash = new;
        let k = key(prefix, &[&id.to_be_bytes()]);
        let v = seal(&k, &payload);
        self.batch_bytes
            .fetch_add((k.len() + v.len()) as u64, Ordering::Relaxed);
        batch.insert(k, v);
        Ok(())
    }

    /// Writes a checkpoint atomically and flushes it to disk.
    pub fn checkpoint(&self, cp: &Checkpoint<'_>) -> Result<(), StoreError> {
        self.writable("a checkpoint")?;
        let stored: Option<Meta> = self.get(KEY_META, Codec::Postcard)?;
        let known = self.written().series_keys;
        cp.check(stored.and_then(|m| m.final_before), known)
            .map_err(StoreError::BadCheckpoint)?;
        let mut batch = sled::Batch::default();
        let b = &mut batch;
        self.batch_bytes.store(0, Ordering::Relaxed);
        // What the database will hold once this checkpoint is durable (kept apart until then:
        // a checkpoint that fails leaves the database, and so this, as they were).
        let mut written = self.written();
        let final_before = cp.meta.and_then(|m| m.final_before);
        let seq = self.seq.load(Ordering::Relaxed) + 1;
        self.put(
            b,
            KEY_SEQ.to_vec(),
            "checkpoint number",
            &seq,
            Codec::Postcard,
        )?;
        if let Some(meta) = cp.meta {
            self.put(b, KEY_META.to_vec(), "meta", meta, Codec::Postcard)?;
        }
        if let Some(profile) = cp.profile {
            self.put(b, KEY_PROFILE.to_vec(), "profile", profile, Codec::Json)?;
        }
        if let Some(registry) = cp.registry {
            // Series keys never change: only the new ones are written.
            for (id, k) in registry.series.iter().enumerate().skip(written.series_keys) {
                let sk = key(P_SERIES, &[&(id as u32).to_be_bytes()]);
                self.put(b, sk, "series", k, Codec::Postcard)?;
            }
            written.series_keys = registry.series.len();
            for (id, (account, region)) in registry.regions.iter().enumerate() {
                let first = registry.first_minute.get(id).copied().unwrap_or_default();
                let value = (account.to_string(), region.to_string(), first);
                let rk = key(P_REGION, &[&(id as u32).to_be_bytes()]);
                self.put(b, rk, "account/region", &value, Codec::Postcard)?;
            }
        }
        for (id, d) in &cp.series {
            let hash = hash_slot(&mut written.detectors, *id);
            self.put_detector(b, P_DETECTOR, *id, d, final_before, hash)?;
        }
        for (id, d) in &cp.heartbeats {
            let hash = hash_slot(&mut written.heartbeats, *id);
            self.put_detector(b, P_HEARTBEAT, *id, d, final_before, hash)?;
        }
        if let Some(pending) = cp.pending {
            for prefix in [P_PENDING_SERIES, P_PENDING_HEARTBEAT] {
                for item in self.db.scan_prefix([prefix]).keys() {
                    b.remove(item.map_err(|source| self.io("listing the pending cells", source))?);
                }
            }
            for (id, cells) in &pending.series {
                for (minute, cell) in cells {
                    let pk = key(P_PENDING_SERIES, &[&id.to_be_bytes(), &ordered(*minute)]);
                    self.put(b, pk, "cell", cell, Codec::Postcard)?;
                }
            }
            for (id, cells) in &pending.heartbeat {
                for (minute, count) in cells {
                    let pk = key(P_PENDING_HEARTBEAT, &[&id.to_be_bytes(), &ordered(*minute)]);
                    self.put(b, pk, "heartbeat cell", count, Codec::Postcard)?;
                }
            }
        }
        if let Some(seen) = cp.seen_ids {
            self.put(b, KEY_SEEN.to_vec(), "seen eventIDs", seen, Codec::Postcard)?;
        }
        for (day, filter) in &cp.seen_days {
            let k = key(P_SEEN_DAY, &[&ordered(*day)]);
            self.put(b, k, "eventID filter", *filter, Codec::Postcard)?;
        }
        if let Some(before) = cp.prune_seen_days_before {
            let hi = key(P_SEEN_DAY, &[&ordered(before)]);
            for item in self.db.range(vec![P_SEEN_DAY]..hi).keys() {
                b.remove(item.map_err(|source| {
                    self.io("listing the old eventID filters".to_string(), source)
                })?);
            }
        }
        for ((id, hour), counts) in &cp.counts {
            let ck = key(P_COUNTS, &[&id.to_be_bytes(), &ordered(*hour)]);
            self.put(b, ck, "counts", &counts[..], Codec::Postcard)?;
        }
        for (ingest_key, record) in &cp.files {
            let fk = key(P_FILE, &[ingest_key.as_bytes()]);
            self.put(b, fk, "file", record, Codec::Postcard)?;
        }
        for (id, record) in &cp.insights {
            let minute = crate::ingest::parse_event_time(&record.event_time).ok_or_else(|| {
                StoreError::BadCheckpoint(format!(
                    "an Insight of series {id} has the eventTime {:?}",
                    record.event_time
                ))
            })?;
            let state = record.insight_details.state.as_str().as_bytes();
            let ik = key(P_INSIGHT, &[&ordered(minute), &id.to_be_bytes(), state]);
            self.put(b, ik, "insight", *record, Codec::Json)?;
        }
        for (shared_id, suppressed) in &cp.suppressed {
            let k = key(P_SUPPRESSED, &[shared_id.as_bytes()]);
            self.put(b, k, "suppressed episode", *suppressed, Codec::Postcard)?;
        }
        if let Some(announced) = cp.announced {
            let k = KEY_ANNOUNCED.to_vec();
            self.put(b, k, "announced rises", announced, Codec::Postcard)?;
        }
        if cp.outbox.is_empty() {
            b.remove(KEY_OUTBOX);
        } else {
            let k = KEY_OUTBOX.to_vec();
            self.put(b, k, "insights outbox", &cp.outbox, Codec::Json)?;
        }
        if let Some(before) = cp
            .prune_counts_before_hour
            .filter(|&b| written.pruned_before != Some(b))
        {
            written.pruned_before = Some(before);
            let k = KEY_COUNTS_FROM.to_vec();
            self.put(b, k, "counts-from", &(before * 60), Codec::Postcard)?;
            // Per series, only the range of keys before the cut: a checkpoint does not walk
            // every stored hour.
            let series = cp.registry.map_or(0, |r| r.series.len());
            for id in 0..series as u32 {
                let lo = key(P_COUNTS, &[&id.to_be_bytes()]);
                let hi = key(P_COUNTS, &[&id.to_be_bytes(), &ordered(before)]);
                for item in self.db.range(lo..hi).keys() {
                    b.remove(item.map_err(|source| {
                        self.io(format!("listing the old counts of series {id}"), source)
                    })?);
                }
            }
        }
        self.ensure_space()?;
        self.db
            .apply_batch(batch)
            .map_err(|source| self.io("writing the checkpoint", source))?;
        self.db
            .flush()
            .map_err(|source| self.io("flushing the checkpoint", source))?;
        self.seq.store(seq, Ordering::Relaxed);
        {
            let mut w = self
                .written
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *w = written;
        }
        // After sled's flush (which syncs), so the number is never ahead of the database.
        let tmp = self.path.join(format!("{CHECKPOINT_FILE}.new"));
        std::fs::write(&tmp, format!("{seq}\n"))
            .and_then(|()| std::fs::rename(&tmp, self.path.join(CHECKPOINT_FILE)))
            .map_err(|source| StoreError::Sidecar {
                path: self.path.clone(),
                source,
            })?;
        Ok(())
    }
}

impl Store {
    /// Forgets the outbox once the sinks have every record in it (durably).
    pub fn clear_outbox(&self) -> Result<(), StoreError> {
        self.writable("clearing the outbox")?;
        self.db
            .remove(KEY_OUTBOX)
            .map_err(|source| self.io("clearing the outbox", source))?;
        self.db
            .flush()
            .map_err(|source| self.io("flushing the outbox", source))?;
        Ok(())
    }
}

/// What a store of another format version is told: an older one is rebuilt from the archive, a
/// newer one is read by the trailsight that wrote it.
fn version_message(path: &Path, found: &str, expected: u32) -> String {
    let shown = path.display();
    match found.parse::<u32>() {
        Ok(n) if n > expected => format!(
            "store {shown} has format version {n}, written by a newer trailsight (this one reads {expected}): use that release or a newer one, or delete the folder and run `trailsight score` again over the archive to rebuild it"
        ),
        _ => format!(
            "store {shown} has format version {found}, this trailsight needs {expected}: delete the folder and run `trailsight score` again over the archive to rebuild it"
        ),
    }
}

impl crate::store::record::StateRecord for Meta {
    const KIND: &'static str = "run state";
    const VERSION: u16 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_opener_is_told_who_holds_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let _first = Store::open(&path).unwrap();
        match Store::open(&path) {
            Err(StoreError::InUse { holder, .. }) => {
                assert_eq!(holder, format!("PID {}", std::process::id()));
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("opened twice"),
        }
    }

    #[test]
    fn keys_sort_numerically_for_negative_minutes_too() {
        let mut v: Vec<i64> = vec![5, -3, 0, i64::MIN / 2, 1 << 40, -1];
        let mut bytes: Vec<[u8; 8]> = v.iter().map(|&m| ordered(m)).collect();
        bytes.sort();
        v.sort();
        let back: Vec<i64> = bytes.iter().map(|b| unordered(b).unwrap()).collect();
        assert_eq!(back, v);
    }

    /// Garbage under every key the store reads, with and without a valid checksum: every read
    /// is a typed error naming the entry, nothing panics, and `check` lists the damage.
    /// `store check`, retried for up to five seconds: sled's flusher thread may hold the
    /// database's lock a moment after the drop (seen under load).
    fn check_when_released(path: &Path) -> check::CheckReport {
        (0..50)
            .find_map(|_| match check::check(path) {
                Ok(r) => Some(r),
                Err(_) => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    None
                }
            })
            .unwrap_or_else(|| panic!("{:?}", check::check(path).err()))
    }

    #[test]
    fn every_decoder_returns_an_error_on_garbage() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let keys: Vec<Vec<u8>> = vec![
            KEY_META.to_vec(),
            KEY_SEEN.to_vec(),
            KEY_ANNOUNCED.to_vec(),
            KEY_OUTBOX.to_vec(),
            KEY_PROFILE.to_vec(),
            KEY_COUNTS_FROM.to_vec(),
            KEY_SEQ.to_vec(),
            key(P_SERIES, &[&0u32.to_be_bytes()]),
            key(P_REGION, &[&0u32.to_be_bytes()]),
            key(P_DETECTOR, &[&0u32.to_be_bytes()]),
            key(P_HEARTBEAT, &[&0u32.to_be_bytes()]),
            key(P_COUNTS, &[&0u32.to_be_bytes(), &ordered(7)]),
            key(P_PENDING_SERIES, &[&0u32.to_be_bytes(), &ordered(7)]),
            key(P_PENDING_HEARTBEAT, &[&0u32.to_be_bytes(), &ordered(7)]),
            key(P_FILE, &[b"AWSLogs/x.json.gz"]),
            key(P_INSIGHT, &[&ordered(7), &0u32.to_be_bytes(), b"Start"]),
            key(P_SEEN_DAY, &[&ordered(19_800)]),
        ];
        for round in 0..200 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("db");
            let store = Store::open(&path).unwrap();
            let k = &keys[round % keys.len()];
            let len = rng.gen_range(0..64);
            let garbage: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            // Half the time the checksum is right, so the decoder itself meets the garbage.
            let value = if round % 2 == 0 {
                seal(k, &garbage)
            } else {
                garbage.clone()
            };
            store.db.insert(k.clone(), value).unwrap();
            let results = [
                store.meta().err(),
                store.registry().err(),
                store.load(&Profile::builtin()).err(),
                store.profile().err(),
                store.counts_from().err(),
                store.count_chunk(0, 7).err(),
                store.counts(0, 0, 1_000).err(),
                store.insights().err(),
                store.is_ingested("AWSLogs/x.json.gz").err(),
                // Read when a store opens.
                store.get::<u64>(KEY_SEQ, Codec::Postcard).err(),
            ];
            let errors: Vec<StoreError> = results.into_iter().flatten().collect();
            // Postcard may read a few garbage bytes as a valid small value (a u64, an empty
            // map); then nothing fails, which is fine: no panic is the point there.
            let sealed_ok = round % 2 == 0;
            if !sealed_ok {
                assert!(
                    !errors.is_empty(),
                    "{} with a bad checksum was read",
                    show_key(k)
                );
            }
            for e in &errors {
                assert!(matches!(e, StoreError::Corrupt { .. }), "{e}");
                assert!(e.to_string().contains("store check"), "{e}");
            }
            drop(store);
            let report = check_when_released(&path);
            if !sealed_ok {
                assert!(!report.healthy(), "{}: {report}", show_key(k));
            }
        }
    }

    #[test]
    fn a_database_behind_its_checkpoint_number_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = Store::open(&path).unwrap();
        store.checkpoint(&Checkpoint::default()).unwrap();
        store.checkpoint(&Checkpoint::default()).unwrap();
        drop(store);
        assert_eq!(
            std::fs::read_to_string(path.join(CHECKPOINT_FILE)).unwrap(),
            "2\n"
        );
        // As if sled had dropped the end of its log: the file says a later checkpoint was done.
        std::fs::write(path.join(CHECKPOINT_FILE), "3\n").unwrap();
        match Store::open(&path) {
            Err(e @ StoreError::Corrupt { .. }) => {
                assert!(e.to_string().contains("checkpoint 3"), "{e}")
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a rolled-back store was opened"),
        }
    }

    #[test]
    fn a_value_moved_to_another_key_fails_its_checksum() {
        let k1 = key(P_COUNTS, &[&1u32.to_be_bytes(), &ordered(5)]);
        let k2 = key(P_COUNTS, &[&2u32.to_be_bytes(), &ordered(5)]);
        let v = seal(&k1, b"payload");
        assert_eq!(unseal(&k1, &v).unwrap(), b"payload");
        assert!(unseal(&k2, &v).is_err());
        assert!(unseal(&k1, &v[..3]).is_err());
        assert_eq!(show_key(&k1), "counts of series 1, hour 5");
    }

    /// The call-rate series of one API, for tests that register a series by hand.
    fn run_instances() -> SeriesKey {
        SeriesKey {
            insight_type: crate::series::InsightType::ApiCallRateInsight,
            account: "111122223333".into(),
            region: "us-east-1".into(),
            event_source: "ec2.amazonaws.com".into(),
            event_name: "RunInstances".into(),
            error_code: None,
            category: crate::series::EventCategory::Management,
            scope: crate::series::Scope::Api,
        }
    }

    #[test]
    fn a_detector_state_that_does_not_fit_the_window_is_refused_not_indexed() {
        // Regression (found by the store_values fuzz target's reasoning): a detector state whose
        // rings have another length than the window gives, decoded behind a valid checksum, was
        // loaded and indexed modulo its length (a panic at zero, wrong slots otherwise).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = Store::open(&path).unwrap();
        let series = run_instances();
        let sk = key(P_SERIES, &[&0u32.to_be_bytes()]);
        let payload = postcard::to_allocvec(&series).unwrap();
        store.db.insert(sk.clone(), seal(&sk, &payload)).unwrap();
        // Every checkpoint writes the run state beside the series.
        let mk = KEY_META.to_vec();
        let payload = postcard::to_allocvec(&Meta::default()).unwrap();
        store.db.insert(mk.clone(), seal(&mk, &payload)).unwrap();
        let mut day = Profile::builtin();
        day.baseline.window_minutes = 1440;
        let dk = key(P_DETECTOR, &[&0u32.to_be_bytes()]);
        let stored: StoredDetector = (Position::At(None), SeriesDetector::new(&day));
        let payload = postcard::to_allocvec(&stored).unwrap();
        store.db.insert(dk.clone(), seal(&dk, &payload)).unwrap();
        match store.load(&Profile::builtin()) {
            Err(e @ StoreError::Corrupt { .. }) => {
                assert!(e.to_string().contains("hour slots"), "{e}")
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a detector of a one-day window was loaded for a week"),
        }
        // The same state loads for the window it was built with.
        assert!(store.load(&day).is_ok());
        let mut meta = store.meta().unwrap();
        meta.window_minutes = 10_080;
        let payload = postcard::to_allocvec(&meta).unwrap();
        store.db.insert(mk.clone(), seal(&mk, &payload)).unwrap();
        store.db.flush().unwrap();
        drop(store);
        let report = check_when_released(&path);
        assert!(!report.healthy(), "{report}");
        assert!(report.to_string().contains("hour slots"), "{report}");
    }

    #[test]
    fn a_checkpoint_that_does_not_fit_the_store_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let mut registry = Registry::default();
        registry.series_id_within(run_instances(), 10);
        let meta = |f: Minute| Meta {
            final_before: Some(f),
            ..Meta::default()
        };
        let chunk = [0u32; 60];
        let at_100 = meta(100);
        let good = Checkpoint {
            meta: Some(&at_100),
            registry: Some(&registry),
            counts: vec![((0, 1), &chunk)],
            ..Checkpoint::default()
        };
        store.checkpoint(&good).unwrap();
        let seq = store.seq.load(Ordering::Relaxed);
        // A series nobody registered.
        let unknown = Checkpoint {
            counts: vec![((3, 1), &chunk)],
            ..Checkpoint::default()
        };
        // The final minute moving back.
        let at_50 = meta(50);
        let back = Checkpoint {
            meta: Some(&at_50),
            ..Checkpoint::default()
        };
        // A pending cell of a final minute.
        let mut pending = Pending::default();
        pending
            .series
            .entry(0)
            .or_default()
            .insert(99, Cell::default());
        let stale = Checkpoint {
            meta: Some(&at_100),
            pending: Some(&pending),
            ..Checkpoint::default()
        };
        for (cp, says) in [
            (unknown, "series 3"),
            (back, "moves back"),
            (stale, "minute 99"),
        ] {
            match store.checkpoint(&cp) {
                Err(e @ StoreError::BadCheckpoint(_)) => {
                    assert!(e.to_string().contains(says), "{e}")
                }
                other => panic!("{says}: {other:?}"),
            }
        }
        assert_eq!(store.seq.load(Ordering::Relaxed), seq, "nothing written");
        assert_eq!(store.meta().unwrap().final_before, Some(100));
    }

    #[test]
    fn a_store_opened_read_only_refuses_every_write_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let at_100 = Meta {
            final_before: Some(100),
            ..Meta::default()
        };
        let cp = Checkpoint {
            meta: Some(&at_100),
            ..Checkpoint::default()
        };
        Store::open(&path).unwrap().checkpoint(&cp).unwrap();
        std::fs::write(path.join(PID_FILE), "the writer\n").unwrap();
        let reader = Store::open_read_only(&path).unwrap();
        assert_eq!(reader.meta().unwrap().final_before, Some(100));
        let later = Meta {
            final_before: Some(200),
            ..Meta::default()
        };
        let cp = Checkpoint {
            meta: Some(&later),
            ..Checkpoint::default()
        };
        for (refused, what) in [
            (reader.checkpoint(&cp), "a checkpoint"),
            (reader.clear_outbox(), "clearing the outbox"),
        ] {
            match refused {
                Err(e @ StoreError::ReadOnly { .. }) => {
                    assert!(e.to_string().contains(what), "{e}")
                }
                other => panic!("{what}: {other:?}"),
            }
        }
        assert_eq!(reader.meta().unwrap().final_before, Some(100));
        assert_eq!(
            std::fs::read_to_string(path.join(PID_FILE)).unwrap(),
            "the writer\n",
            "a reader does not name itself the holder"
        );
        drop(reader);
        // A reader never makes a store of a folder that is not one.
        let missing = dir.path().join("typo");
        assert!(matches!(
            Store::open_read_only(&missing),
            Err(StoreError::NotAStore { .. })
        ));
        assert!(!missing.exists());
    }

    #[test]
    fn series_keys_of_version_1_are_read_by_readers_and_upgraded_by_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut registry = Registry::default();
        registry.series_id_within(run_instances(), 10);
        let at_100 = Meta {
            final_before: Some(100),
            ..Meta::default()
        };
        let cp = Checkpoint {
            meta: Some(&at_100),
            registry: Some(&registry),
            ..Checkpoint::default()
        };
        {
            let store = Store::open(&path).unwrap();
            store.checkpoint(&cp).unwrap();
            // What a store written before event categories holds: the key without its
            // category, and no record versions (every record at version 1).
            let k = key(P_SERIES, &[&0u32.to_be_bytes()]);
            let old = run_instances();
            let v1 = postcard::to_allocvec(&(
                old.insight_type,
                &*old.account,
                &*old.region,
                &*old.event_source,
                &*old.event_name,
                None::<&str>,
            ))
            .unwrap();
            store.db.insert(&k, seal(&k, &v1)).unwrap();
            store.db.remove(KEY_RECORDS).unwrap();
            store.db.flush().unwrap();
        }
        let stored_records = |store: &Store| -> BTreeMap<String, u16> {
            store
                .get_raw(KEY_RECORDS)
                .unwrap()
                .map(|v| serde_json::from_slice(&v).unwrap())
                .unwrap_or_default()
        };
        let reader = Store::open_read_only(&path).unwrap();
        assert_eq!(reader.registry().unwrap().series, vec![run_instances()]);
        assert!(
            stored_records(&reader).is_empty(),
            "a reader changes nothing"
        );
        drop(reader);
        let report = check_when_released(&path);
        assert!(report.healthy(), "{report}");
        let writer = Store::open(&path).unwrap();
        assert_eq!(stored_records(&writer), record::versions());
        assert_eq!(writer.registry().unwrap().series, vec![run_instances()]);
        drop(writer);
        let reader = Store::open_read_only(&path).unwrap();
        assert_eq!(reader.series_key_version, 3);
        assert_eq!(reader.registry().unwrap().series, vec![run_instances()]);
    }
}
