//! The embedded sled store: per-minute counts (for the baseline window), series and account/region
//! registries, every series' detector state (baselines, attributions, open episodes), the cells of
//! minutes not yet final, which input files were ingested, and the Insights emitted.
//!
//! Everything lives in one sled tree under one-letter key prefixes, so that a checkpoint is a
//! single atomic `apply_batch` followed by a flush: after a crash the store is at the previous
//! checkpoint or the new one, never between them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::aggregate::{AggregateStats, Cell, Pending, Registry};
use crate::detect::{Announcement, Profile, SeriesDetector};
use crate::insight::InsightRecord;
use crate::series::{Minute, SeriesKey};

/// Version of the store's layout; a store of another version is refused.
pub const FORMAT_VERSION: u32 = 2;

/// A marker file beside sled's own files: sled recovers a damaged log by truncating it, which
/// can leave an empty database that looks new; the marker tells a new store from a lost one.
const MARKER: &str = "TRAILSIGHT_STORE";
/// The PID of the process that last opened the store.
const PID_FILE: &str = "TRAILSIGHT_PID";

const KEY_FORMAT: &[u8] = b"m/format";
const KEY_META: &[u8] = b"m/meta";
const KEY_SEEN: &[u8] = b"m/seen";
const KEY_ANNOUNCED: &[u8] = b"m/announced";
const KEY_OUTBOX: &[u8] = b"m/outbox";
const KEY_PROFILE: &[u8] = b"m/profile";
const KEY_COUNTS_FROM: &[u8] = b"m/counts-from";
const P_SERIES: u8 = b's';
const P_REGION: u8 = b'r';
const P_DETECTOR: u8 = b'd';
const P_HEARTBEAT: u8 = b'h';
const P_COUNTS: u8 = b'c';
const P_PENDING_SERIES: u8 = b'p';
const P_PENDING_HEARTBEAT: u8 = b'q';
const P_FILE: u8 = b'f';
const P_INSIGHT: u8 = b'i';

/// Errors of the store; each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled could not open the folder (permissions, another process holds it, damage).
    #[error("cannot open store {path}: {error}. If the store is damaged, delete the folder and run `trailsight score` again over the archive to rebuild it")]
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
    /// The store was written by another layout version.
    #[error("store {path} has format version {found}, this trailsight needs {expected}: delete the folder and run `trailsight score` again over the archive to rebuild it")]
    Version {
        /// The store folder.
        path: PathBuf,
        /// The version found.
        found: String,
        /// The version needed.
        expected: u32,
    },
    /// A value could not be decoded: the store is damaged.
    #[error("store {path} is corrupt ({what}): delete the folder and run `trailsight score` again over the archive to rebuild it")]
    Corrupt {
        /// The store folder.
        path: PathBuf,
        /// Which entry and why.
        what: String,
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
    /// Reading or writing failed.
    #[error("store {path}: {error}")]
    Io {
        /// The store folder.
        path: PathBuf,
        /// What sled said (in the message, not as a separate cause, so it is said once).
        error: sled::Error,
    },
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
    /// Detector state per series id (missing entries are new series).
    pub series: Vec<SeriesDetector>,
    /// Heartbeat state per account/region id.
    pub heartbeats: Vec<SeriesDetector>,
    /// Cells of minutes not final yet.
    pub pending: Pending,
    /// Hashed eventIDs inside the dedup window, by minute.
    pub seen_ids: BTreeMap<Minute, Vec<u64>>,
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
    /// Count chunks of hours before this are deleted (retention).
    pub prune_counts_before_hour: Option<i64>,
    /// Rises announced and still open (replaces the stored set).
    pub announced: Option<&'a BTreeMap<u32, Announcement>>,
    /// Insights to deliver to the sinks once this checkpoint is durable (replaces the stored
    /// outbox; cleared by [`Store::clear_outbox`] once the sinks have them).
    pub outbox: Vec<&'a InsightRecord>,
    /// The detector profile in force (recorded so that plots and exports recompute baselines
    /// with the settings that produced the Insights).
    pub profile: Option<&'a Profile>,
}

/// An open store (a clone is another handle on the same database).
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    path: PathBuf,
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

/// Whether `dir` holds a trailsight store (readers must not create one at a mistyped path).
pub fn is_store(dir: &Path) -> bool {
    dir.join(MARKER).is_file()
}

impl Store {
    /// Opens (creating when missing) the store in folder `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let marker = path.join(MARKER);
        let was_store = marker.is_file();
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(64 * 1024 * 1024)
            .open()
            .map_err(|error| Store::open_error(path, error))?;
        // sled's file lock is what keeps a second process out; the PID beside it only names
        // the holder in the error the second process gets.
        let _ = std::fs::write(path.join(PID_FILE), format!("{}\n", std::process::id()));
        let store = Store {
            db,
            path: path.to_path_buf(),
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
                    .map_err(|source| store.io(source))?;
                store.db.flush().map_err(|source| store.io(source))?;
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
        Ok(store)
    }

    /// The store's folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, error: sled::Error) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
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

    fn corrupt(&self, what: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what,
        }
    }

    fn get_raw(&self, k: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        self.db.get(k).map_err(|source| self.io(source))
    }

    fn decode<T: DeserializeOwned>(&self, what: &str, bytes: &[u8]) -> Result<T, StoreError> {
        postcard::from_bytes(bytes).map_err(|e| self.corrupt(format!("{what}: {e}")))
    }

    fn encode<T: Serialize>(&self, what: &str, value: &T) -> Result<Vec<u8>, StoreError> {
        postcard::to_allocvec(value).map_err(|e| self.corrupt(format!("encoding {what}: {e}")))
    }

    /// Iterates one prefix, decoding (id suffix, value).
    fn scan<T: DeserializeOwned>(
        &self,
        prefix: u8,
        what: &str,
    ) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix([prefix]) {
            let (k, v) = item.map_err(|source| self.io(source))?;
            out.push((k[1..].to_vec(), self.decode(what, &v)?));
        }
        Ok(out)
    }

    /// Run-level state (default on a new store).
    pub fn meta(&self) -> Result<Meta, StoreError> {
        match self.get_raw(KEY_META)? {
            Some(v) => self.decode("meta", &v),
            None => Ok(Meta::default()),
        }
    }

    /// Loads everything a run resumes from. `new_detector` builds the state of a series whose
    /// stored state is missing.
    pub fn load(
        &self,
        window_minutes: i64,
        new_detector: impl Fn() -> SeriesDetector,
    ) -> Result<EngineState, StoreError> {
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
        let mut series: Vec<SeriesDetector> =
            (0..registry.series.len()).map(|_| new_detector()).collect();
        for (k, d) in self.scan::<SeriesDetector>(P_DETECTOR, "series detector")? {
            let id = id_from(&k).ok_or_else(|| self.corrupt("detector id".into()))?;
            if let Some(slot) = series.get_mut(id as usize) {
                *slot = d;
            }
        }
        let mut heartbeats: Vec<SeriesDetector> = (0..registry.regions.len())
            .map(|_| new_detector())
            .collect();
        for (k, d) in self.scan::<SeriesDetector>(P_HEARTBEAT, "heartbeat")? {
            let id = id_from(&k).ok_or_else(|| self.corrupt("heartbeat id".into()))?;
            if let Some(slot) = heartbeats.get_mut(id as usize) {
                *slot = d;
            }
        }
        let mut pending = Pending::default();
        for (k, cell) in self.scan::<Cell>(P_PENDING_SERIES, "pending cell")? {
            let (Some(id), Some(minute)) = (
                id_from(k.get(..4).unwrap_or(&[])),
                unordered(k.get(4..).unwrap_or(&[])),
            ) else {
                return Err(self.corrupt("pending cell key".into()));
            };
            pending.series.entry(id).or_default().insert(minute, cell);
        }
        for (k, count) in self.scan::<u64>(P_PENDING_HEARTBEAT, "pending heartbeat")? {
            let (Some(id), Some(minute)) = (
                id_from(k.get(..4).unwrap_or(&[])),
                unordered(k.get(4..).unwrap_or(&[])),
            ) else {
                return Err(self.corrupt("pending heartbeat key".into()));
            };
            pending
                .heartbeat
                .entry(id)
                .or_default()
                .insert(minute, count);
        }
        let seen_ids = match self.get_raw(KEY_SEEN)? {
            Some(v) => self.decode("seen eventIDs", &v)?,
            None => BTreeMap::new(),
        };
        let announced = match self.get_raw(KEY_ANNOUNCED)? {
            Some(v) => self.decode("announced rises", &v)?,
            None => BTreeMap::new(),
        };
        let outbox = match self.get_raw(KEY_OUTBOX)? {
            Some(v) => serde_json::from_slice(&v)
                .map_err(|e| self.corrupt(format!("insights outbox: {e}")))?,
            None => Vec::new(),
        };
        Ok(EngineState {
            meta,
            registry,
            series,
            heartbeats,
            pending,
            seen_ids,
            announced,
            outbox,
        })
    }

    /// The known series and account/regions (what [`Store::load`] restores, without the
    /// detector states): enough to read counts and Insights.
    pub fn registry(&self) -> Result<Registry, StoreError> {
        let mut series_keys: Vec<SeriesKey> = Vec::new();
        for (k, key) in self.scan::<SeriesKey>(P_SERIES, "series")? {
            let id = id_from(&k).ok_or_else(|| self.corrupt("series id".into()))?;
            if id as usize != series_keys.len() {
                return Err(self.corrupt(format!("series ids not contiguous at {id}")));
            }
            series_keys.push(key);
        }
        let mut regions = Vec::new();
        for (k, (account, region, first)) in
            self.scan::<(String, String, Minute)>(P_REGION, "account/region")?
        {
            let id = id_from(&k).ok_or_else(|| self.corrupt("account/region id".into()))?;
            if id as usize != regions.len() {
                return Err(self.corrupt(format!("account/region ids not contiguous at {id}")));
            }
            regions.push((Arc::<str>::from(account), Arc::<str>::from(region), first));
        }
        Ok(Registry::restore(series_keys, regions))
    }

    /// The detector profile the store was last written with (`None` for stores written before
    /// it was recorded).
    pub fn profile(&self) -> Result<Option<Profile>, StoreError> {
        match self.get_raw(KEY_PROFILE)? {
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| self.corrupt(format!("profile: {e}"))),
            None => Ok(None),
        }
    }

    /// The first minute whose counts are kept, once retention has pruned older ones.
    pub fn counts_from(&self) -> Result<Option<Minute>, StoreError> {
        Ok(self.get_raw(KEY_COUNTS_FROM)?.and_then(|v| unordered(&v)))
    }

    /// The first hour with stored counts for a series (earlier hours were pruned or had no
    /// calls).
    pub fn first_count_hour(&self, series: u32) -> Result<Option<i64>, StoreError> {
        match self
            .db
            .scan_prefix(key(P_COUNTS, &[&series.to_be_bytes()]))
            .next()
        {
            Some(item) => {
                let (k, _) = item.map_err(|source| self.io(source))?;
                Ok(unordered(k.get(5..13).unwrap_or(&[])))
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
        self.db
            .contains_key(key(P_FILE, &[ingest_key.as_bytes()]))
            .map_err(|source| self.io(source))
    }

    /// What was recorded of an ingested input file (by ingest key), if it was ingested.
    pub fn ingested_file(&self, ingest_key: &str) -> Result<Option<FileRecord>, StoreError> {
        let found = self
            .db
            .get(key(P_FILE, &[ingest_key.as_bytes()]))
            .map_err(|source| self.io(source))?;
        found.map(|bytes| self.decode("file", &bytes)).transpose()
    }

    /// Number of ingested files recorded.
    pub fn ingested_files(&self) -> usize {
        self.db.scan_prefix([P_FILE]).count()
    }

    /// The stored counts of one hour of a series (zeros when none).
    pub fn count_chunk(&self, series: u32, hour: i64) -> Result<[u32; 60], StoreError> {
        match self.get_raw(&key(P_COUNTS, &[&series.to_be_bytes(), &ordered(hour)]))? {
            Some(v) => {
                let counts: Vec<u32> = self.decode("counts", &v)?;
                let mut out = [0u32; 60];
                for (o, c) in out.iter_mut().zip(counts) {
                    *o = c;
                }
                Ok(out)
            }
            None => Ok([0; 60]),
        }
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
            let (k, v) = item.map_err(|source| self.io(source))?;
            let hour = unordered(k.get(5..13).unwrap_or(&[]))
                .ok_or_else(|| self.corrupt("counts key".into()))?;
            let counts: Vec<u32> = self.decode("counts", &v)?;
            for (i, c) in counts.into_iter().enumerate() {
                let m = hour * 60 + i as i64;
                if c > 0 && m >= from && m < to {
                    out.insert(m, c);
                }
            }
        }
        Ok(out)
    }

    /// Every Insight emitted so far, in (eventTime, series, state) order.
    pub fn insights(&self) -> Result<Vec<InsightRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix([P_INSIGHT]) {
            let (_, v) = item.map_err(|source| self.io(source))?;
            let record: InsightRecord =
                serde_json::from_slice(&v).map_err(|e| self.corrupt(format!("insight: {e}")))?;
            out.push(record);
        }
        Ok(out)
    }

    /// Writes a checkpoint atomically and flushes it to disk.
    pub fn checkpoint(&self, cp: &Checkpoint<'_>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        if let Some(meta) = cp.meta {
            batch.insert(KEY_META, self.encode("meta", meta)?);
        }
        if let Some(profile) = cp.profile {
            let value = serde_json::to_vec(profile)
                .map_err(|e| self.corrupt(format!("encoding profile: {e}")))?;
            batch.insert(KEY_PROFILE, value);
        }
        if let Some(registry) = cp.registry {
            for (id, k) in registry.series.iter().enumerate() {
                batch.insert(
                    key(P_SERIES, &[&(id as u32).to_be_bytes()]),
                    self.encode("series", k)?,
                );
            }
            for (id, (account, region)) in registry.regions.iter().enumerate() {
                let first = registry.first_minute.get(id).copied().unwrap_or_default();
                let value = (account.to_string(), region.to_string(), first);
                batch.insert(
                    key(P_REGION, &[&(id as u32).to_be_bytes()]),
                    self.encode("account/region", &value)?,
                );
            }
        }
        for (id, d) in &cp.series {
            batch.insert(
                key(P_DETECTOR, &[&id.to_be_bytes()]),
                self.encode("detector", *d)?,
            );
        }
        for (id, d) in &cp.heartbeats {
            batch.insert(
                key(P_HEARTBEAT, &[&id.to_be_bytes()]),
                self.encode("heartbeat", *d)?,
            );
        }
        if let Some(pending) = cp.pending {
            for prefix in [P_PENDING_SERIES, P_PENDING_HEARTBEAT] {
                for item in self.db.scan_prefix([prefix]).keys() {
                    batch.remove(item.map_err(|source| self.io(source))?);
                }
            }
            for (id, cells) in &pending.series {
                for (minute, cell) in cells {
                    batch.insert(
                        key(P_PENDING_SERIES, &[&id.to_be_bytes(), &ordered(*minute)]),
                        self.encode("cell", cell)?,
                    );
                }
            }
            for (id, cells) in &pending.heartbeat {
                for (minute, count) in cells {
                    batch.insert(
                        key(P_PENDING_HEARTBEAT, &[&id.to_be_bytes(), &ordered(*minute)]),
                        self.encode("heartbeat cell", count)?,
                    );
                }
            }
        }
        if let Some(seen) = cp.seen_ids {
            batch.insert(KEY_SEEN, self.encode("seen eventIDs", seen)?);
        }
        for ((id, hour), counts) in &cp.counts {
            batch.insert(
                key(P_COUNTS, &[&id.to_be_bytes(), &ordered(*hour)]),
                self.encode("counts", &counts.to_vec())?,
            );
        }
        for (ingest_key, record) in &cp.files {
            batch.insert(
                key(P_FILE, &[ingest_key.as_bytes()]),
                self.encode("file", record)?,
            );
        }
        for (id, record) in &cp.insights {
            let minute = crate::ingest::parse_event_time(&record.event_time).unwrap_or_default();
            let state = record.insight_details.state.as_str().as_bytes();
            let value = serde_json::to_vec(record)
                .map_err(|e| self.corrupt(format!("encoding insight: {e}")))?;
            batch.insert(
                key(P_INSIGHT, &[&ordered(minute), &id.to_be_bytes(), state]),
                value,
            );
        }
        if let Some(announced) = cp.announced {
            batch.insert(KEY_ANNOUNCED, self.encode("announced rises", announced)?);
        }
        if cp.outbox.is_empty() {
            batch.remove(KEY_OUTBOX);
        } else {
            let value = serde_json::to_vec(&cp.outbox)
                .map_err(|e| self.corrupt(format!("encoding insights outbox: {e}")))?;
            batch.insert(KEY_OUTBOX, value);
        }
        if let Some(before) = cp.prune_counts_before_hour {
            batch.insert(KEY_COUNTS_FROM, &ordered(before * 60));
            // Per series, only the range of keys before the cut: a checkpoint does not walk
            // every stored hour.
            let series = cp.registry.map_or(0, |r| r.series.len());
            for id in 0..series as u32 {
                let lo = key(P_COUNTS, &[&id.to_be_bytes()]);
                let hi = key(P_COUNTS, &[&id.to_be_bytes(), &ordered(before)]);
                for item in self.db.range(lo..hi).keys() {
                    batch.remove(item.map_err(|source| self.io(source))?);
                }
            }
        }
        self.db
            .apply_batch(batch)
            .map_err(|source| self.io(source))?;
        self.db.flush().map_err(|source| self.io(source))?;
        Ok(())
    }
}

impl Store {
    /// Forgets the outbox once the sinks have every record in it (durably).
    pub fn clear_outbox(&self) -> Result<(), StoreError> {
        self.db
            .remove(KEY_OUTBOX)
            .map_err(|source| self.io(source))?;
        self.db.flush().map_err(|source| self.io(source))?;
        Ok(())
    }
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
}
