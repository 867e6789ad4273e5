//! `trailsight store check`: walks every key and value of a store, checks each value's checksum
//! and decoding and the invariants between entries (contiguous ids, pending cells after the
//! final minute, decodable outbox), and reports what is damaged and what to do.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::*;

/// Problems listed one by one in a report (all are counted).
const LISTED: usize = 50;

/// What `store check` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// The store folder.
    pub path: PathBuf,
    /// Entries read, by kind.
    pub entries: BTreeMap<&'static str, u64>,
    /// Problems found (the first [`LISTED`] of them).
    pub problems: Vec<String>,
    /// Problems found in all.
    pub problem_count: u64,
}

impl CheckReport {
    /// Whether nothing is wrong.
    pub fn healthy(&self) -> bool {
        self.problem_count == 0
    }

    fn problem(&mut self, text: String) {
        self.problem_count += 1;
        if self.problems.len() < LISTED {
            self.problems.push(text);
        }
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "store {} (format {FORMAT_VERSION})", self.path.display())?;
        for (kind, n) in &self.entries {
            writeln!(f, "  {n:>10}  {kind}")?;
        }
        if self.healthy() {
            return writeln!(
                f,
                "healthy: every value's checksum matches, every value decodes, the invariants hold"
            );
        }
        writeln!(f, "DAMAGED: {} problems", self.problem_count)?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        if self.problem_count > self.problems.len() as u64 {
            writeln!(
                f,
                "  ... and {} more",
                self.problem_count - self.problems.len() as u64
            )?;
        }
        writeln!(
            f,
            "to rebuild: stop any `watch` on it, delete the folder, run `trailsight score` again over the archive into a new store, then restart `watch` on it (see docs/store.md)"
        )
    }
}

/// Checks the store in `path`. Errors are reasons the check could not run (not a store, in use,
/// an I/O failure); damage found is in the report. A store that cannot be opened because it is
/// damaged, or is of another format, is reported as damaged.
pub fn check(path: &Path) -> Result<CheckReport, StoreError> {
    let mut report = CheckReport {
        path: path.to_path_buf(),
        ..CheckReport::default()
    };
    let store = match Store::open_read_only(path) {
        Ok(store) => store,
        Err(
            e @ (StoreError::Corrupt { .. }
            | StoreError::Version { .. }
            | StoreError::RecordVersion { .. }),
        ) => {
            report.problem(e.to_string());
            return Ok(report);
        }
        Err(StoreError::Open {
            error: error @ sled::Error::Corruption { .. },
            ..
        }) => {
            report.problem(format!("sled refuses to open it: {error}"));
            return Ok(report);
        }
        Err(e) => return Err(e),
    };
    let mut walk = Walk::default();
    for item in store.db.iter() {
        let (k, v) = match item {
            Ok(kv) => kv,
            Err(sled::Error::Corruption { .. }) | Err(sled::Error::Io(_)) => {
                report.problem("sled could not read past a damaged page".into());
                break;
            }
            Err(e) => return Err(store.io("reading every key", e)),
        };
        walk.entry(&store, &k, &v, &mut report);
    }
    walk.invariants(&mut report);
    Ok(report)
}

/// Checks entries as [`check`] checks a store's (the store value decoders' fuzz target): each
/// is a key, a payload and whether to seal the payload with its correct checksum (so that the
/// decoders behind the checksum are reached) or take it as the whole stored value. `store` is
/// where errors say the entries are.
#[doc(hidden)]
pub fn check_entries<'a>(
    store: &Store,
    entries: impl IntoIterator<Item = (&'a [u8], &'a [u8], bool)>,
) -> CheckReport {
    let mut report = CheckReport {
        path: store.path.clone(),
        ..CheckReport::default()
    };
    let mut walk = Walk::default();
    for (k, payload, sealed) in entries {
        let value = if sealed {
            super::seal(k, payload)
        } else {
            payload.to_vec()
        };
        walk.entry(store, k, &value, &mut report);
    }
    walk.invariants(&mut report);
    report
}

/// What the walk over the keys remembers for the invariants.
#[derive(Default)]
struct Walk {
    series: Vec<u32>,
    regions: Vec<u32>,
    detectors: Vec<u32>,
    heartbeats: Vec<u32>,
    counts: Vec<u32>,
    pending: Vec<(u32, Minute, bool)>,
    /// Hour and day slots of each detector state decoded, checked against the stored window.
    shapes: Vec<(String, (usize, usize))>,
    final_before: Option<Minute>,
    window_minutes: Option<i64>,
    meta_seen: bool,
}

impl Walk {
    fn entry(&mut self, store: &Store, k: &[u8], v: &[u8], report: &mut CheckReport) {
        let name = show_key(k);
        let rest = k.get(1..).unwrap_or_default();
        let mut count = |kind: &'static str| *report.entries.entry(kind).or_insert(0) += 1;
        // Each arm decodes the value as the engine would; `Err` is the problem found.
        let outcome: Result<(), String> = match (k.first(), k) {
            (_, KEY_FORMAT) => {
                count("format version");
                Ok(())
            }
            (_, KEY_RECORDS) => {
                count("record versions");
                serde_json::from_slice::<BTreeMap<String, u16>>(v)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            (_, KEY_META) => {
                count("run state");
                store
                    .decode::<Meta>(k, v, Codec::Postcard)
                    .map(|m| {
                        self.meta_seen = true;
                        self.final_before = m.final_before;
                        self.window_minutes = Some(m.window_minutes);
                    })
                    .map_err(short)
            }
            (_, KEY_SEEN) => {
                count("dedup window");
                decoded::<BTreeMap<Minute, Vec<u64>>>(store, k, v, Codec::Postcard)
            }
            (_, KEY_ANNOUNCED) => {
                count("announced rises");
                decoded::<BTreeMap<u32, Announcement>>(store, k, v, Codec::Postcard)
            }
            (_, KEY_OUTBOX) => {
                count("outbox");
                decoded::<Vec<InsightRecord>>(store, k, v, Codec::Json)
            }
            (_, KEY_PROFILE) => {
                count("profile");
                decoded::<Profile>(store, k, v, Codec::Json)
            }
            (_, KEY_SEQ) => {
                count("checkpoint number");
                decoded::<u64>(store, k, v, Codec::Postcard)
            }
            (_, KEY_COUNTS_FROM) => {
                count("retention mark");
                decoded::<Minute>(store, k, v, Codec::Postcard)
            }
            (Some(&P_SERIES), _) => {
                count("series");
                with_id(rest, &name, &mut self.series)
                    .and_then(|()| store.decode_series_key(k, v).map(|_| ()).map_err(short))
            }
            (Some(&P_REGION), _) => {
                count("account/regions");
                with_id(rest, &name, &mut self.regions).and_then(|()| {
                    decoded::<(String, String, Minute)>(store, k, v, Codec::Postcard)
                })
            }
            (Some(&P_DETECTOR), _) => {
                count("detector states");
                with_id(rest, &name, &mut self.detectors)
                    .and_then(|()| self.detector(store, &name, k, v))
            }
            (Some(&P_HEARTBEAT), _) => {
                count("heartbeat states");
                with_id(rest, &name, &mut self.heartbeats)
                    .and_then(|()| self.detector(store, &name, k, v))
            }
            (Some(&P_COUNTS), _) => {
                count("count hours");
                match (rest.len(), id_from(rest.get(..4).unwrap_or_default())) {
                    (12, Some(id)) => {
                        self.counts.push(id);
                        store
                            .decode::<Vec<u32>>(k, v, Codec::Postcard)
                            .and_then(|c| store.chunk(k, c))
                            .map(|_| ())
                            .map_err(short)
                    }
                    _ => Err(format!("{name}: bad key length")),
                }
            }
            (Some(&p @ (P_PENDING_SERIES | P_PENDING_HEARTBEAT)), _) => {
                count("pending cells");
                match store.id_minute(rest, "pending key") {
                    Ok((id, minute)) if rest.len() == 12 => {
                        let heartbeat = p == P_PENDING_HEARTBEAT;
                        self.pending.push((id, minute, heartbeat));
                        if heartbeat {
                            decoded::<u64>(store, k, v, Codec::Postcard)
                        } else {
                            decoded::<Cell>(store, k, v, Codec::Postcard)
                        }
                    }
                    _ => Err(format!("{name}: bad key length")),
                }
            }
            (Some(&P_FILE), _) => {
                count("ingested files");
                decoded::<FileRecord>(store, k, v, Codec::Postcard)
            }
            (Some(&P_INSIGHT), _) => {
                count("Insights");
                decoded::<InsightRecord>(store, k, v, Codec::Json)
            }
            (Some(&P_SUPPRESSED), _) => {
                count("suppressed episodes");
                decoded::<crate::suppress::Suppressed>(store, k, v, Codec::Postcard)
            }
            (Some(&P_SEEN_DAY), _) => {
                count("eventID filters");
                if rest.len() == 8 {
                    decoded::<crate::aggregate::seen::DayFilter>(store, k, v, Codec::Postcard)
                } else {
                    Err(format!("{name}: bad key length"))
                }
            }
            _ => {
                count("unknown keys");
                Err(format!("{name}: not a key trailsight writes"))
            }
        };
        if let Err(e) = outcome {
            report.problem(e);
        }
    }

    /// Decodes a detector state and keeps its shape for the invariants.
    fn detector(&mut self, store: &Store, name: &str, k: &[u8], v: &[u8]) -> Result<(), String> {
        let (_, d) = store
            .decode::<super::StoredDetector>(k, v, Codec::Postcard)
            .map_err(short)?;
        self.shapes.push((name.to_owned(), d.shape()));
        Ok(())
    }

    fn invariants(&self, report: &mut CheckReport) {
        if let Some(window) = self.window_minutes.filter(|w| *w > 0) {
            for (name, has) in &self.shapes {
                if let Some(problem) = SeriesDetector::shape_mismatch(*has, window) {
                    report.problem(format!("{name}: {problem}"));
                }
            }
        }
        if !self.meta_seen && !self.series.is_empty() {
            report.problem("the run state (m/meta) is missing while series are stored".into());
        }
        for (ids, what) in [(&self.series, "series"), (&self.regions, "account/region")] {
            // Keys come in byte order, which is id order: a gap is a lost entry.
            if let Some(missing) = ids.iter().enumerate().find(|&(i, &id)| i as u32 != id) {
                report.problem(format!(
                    "{what} ids not contiguous: {what} {} is missing",
                    missing.0
                ));
            }
        }
        let n_series = self.series.len() as u32;
        let n_regions = self.regions.len() as u32;
        let beyond = |ids: &[u32], n: u32| ids.iter().filter(|&&i| i >= n).count();
        for (ids, n, what) in [
            (
                &self.detectors,
                n_series,
                "detector states of unregistered series",
            ),
            (&self.counts, n_series, "count hours of unregistered series"),
            (
                &self.heartbeats,
                n_regions,
                "heartbeat states of unregistered account/regions",
            ),
        ] {
            let k = beyond(ids, n);
            if k > 0 {
                report.problem(format!("{k} {what}"));
            }
        }
        let mut early = 0;
        let mut orphans = 0;
        for &(id, minute, heartbeat) in &self.pending {
            if self.final_before.is_some_and(|f| minute < f) {
                early += 1;
            }
            if id >= if heartbeat { n_regions } else { n_series } {
                orphans += 1;
            }
        }
        if early > 0 {
            report.problem(format!(
                "{early} pending cells are for minutes before the final minute {} (they should have been processed)",
                self.final_before.unwrap_or_default()
            ));
        }
        if orphans > 0 {
            report.problem(format!(
                "{orphans} pending cells of unregistered series or account/regions"
            ));
        }
    }
}

fn decoded<T: DeserializeOwned>(
    store: &Store,
    k: &[u8],
    v: &[u8],
    codec: Codec,
) -> Result<(), String> {
    store.decode::<T>(k, v, codec).map(|_| ()).map_err(short)
}

/// What a decoding error says about the entry (without the advice, said once at the end).
fn short(e: StoreError) -> String {
    match e {
        StoreError::Corrupt { what, .. } => what,
        other => other.to_string(),
    }
}

fn with_id(rest: &[u8], name: &str, ids: &mut Vec<u32>) -> Result<(), String> {
    let id = id_from(rest).ok_or_else(|| format!("{name}: bad key length"))?;
    ids.push(id);
    Ok(())
}
