//! Per-minute counts per series. Workers turn each file's records into a compact [`FileDigest`]
//! (in parallel); the [`Aggregator`] then absorbs digests in file order (so results never depend
//! on thread timing), drops duplicate deliveries by `eventID`, and keeps the cells of minutes that
//! are not final yet. Memory is bounded by the number of series and the minutes still pending,
//! never by the size of the archive.

pub mod counted;
pub mod seen;
pub mod topk;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ingest::CallRecord;
use crate::series::kind::{kinds_of, API_KINDS, KINDS, PRINCIPAL_READS, PRINCIPAL_WRITES};
use crate::series::{
    principal_of, Attribute, Categories, EventCategory, Minute, Scope, SeriesKey, ALL_APIS,
    MINUTES_PER_DAY,
};
use topk::Attributions;

/// One series' count in one minute, with who made the calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Calls (or errors) in the minute.
    pub count: u64,
    /// Bounded top values per attribute.
    pub attributions: Attributions,
}

/// Marker for "no string" in a digest row.
const NONE: u32 = u32::MAX;

/// One countable record of a file, with strings replaced by indices into the digest's table.
#[derive(Debug, Clone, Copy)]
struct Row {
    id_hash: u64,
    minute: Minute,
    account: u32,
    region: u32,
    event_source: u32,
    event_name: u32,
    error_code: u32,
    arn: u32,
    user_agent: u32,
    /// The principal the caller stands for ([`principal_of`]), when a per-principal kind counts
    /// the row.
    principal: u32,
    /// `eventSource:eventName`, when a per-principal kind counts the row.
    api: u32,
    /// The series kinds it counts towards (bits over [`KINDS`]).
    kinds: u8,
    /// Its event category.
    category: EventCategory,
}

/// Who made one call: the attribution values it adds to its cell.
#[derive(Clone, Copy)]
struct Who<'s> {
    arn: Option<&'s Arc<str>>,
    user_agent: Option<&'s Arc<str>>,
    /// The `errorCode` attribution (`"null"` for a success), added by the kinds whose
    /// attributes include it.
    error_code: Option<&'s Arc<str>>,
    /// The API (`eventSource:eventName`), added by the per-principal kinds.
    api: Option<&'s Arc<str>>,
}

/// FxHash (rustc's hasher): the digest's tables are keyed by short strings and small integers
/// that live for one file, where SipHash's protection is not needed and its cost shows. The
/// `eventID` hashes that are stored keep their own fixed SipHash.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ rest.len() as u64);
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_i64(&mut self, i: i64) {
        self.add(i as u64);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// The countable content of one file: write calls and errors as compact rows, and the number of
/// records of any kind per account/region and minute (the trail's heartbeat).
#[derive(Debug, Default)]
pub struct FileDigest {
    strings: Vec<Arc<str>>,
    index: FastMap<Arc<str>, u32>,
    /// The index each field of the record before had, by [`Field`]: a file's records mostly
    /// repeat their account, region and much else from one record to the next, and comparing
    /// with the last value costs less than hashing.
    last: [Option<u32>; FIELDS],
    rows: Vec<Row>,
    heartbeat: FastMap<(u32, u32, Minute), u64>,
    /// Records of the heartbeat key of the record before, not yet added to `heartbeat`.
    heartbeat_run: Option<((u32, u32, Minute), u64)>,
    /// Records passed to [`FileDigest::push`].
    pub records: u64,
    /// The event categories analysed: a record of another counts in the heartbeat only.
    categories: Categories,
    /// The per-principal kinds counted besides AWS's (bits over [`KINDS`]; AWS's kinds,
    /// [`API_KINDS`], are always counted, so that a default digest counts what AWS does).
    principal_kinds: u8,
    /// Reused to build a row's `eventSource:eventName`.
    scratch: String,
}

/// The interned fields of a record, as indices into [`FileDigest`]'s last values.
#[derive(Clone, Copy)]
enum Field {
    Account,
    Region,
    EventSource,
    EventName,
    ErrorCode,
    Arn,
    UserAgent,
    Principal,
    Api,
}

const FIELDS: usize = 9;

impl FileDigest {
    /// An empty digest that counts calls of the `categories` analysed into AWS's kinds of series
    /// (call and error rates per API).
    pub fn analysing(categories: Categories) -> FileDigest {
        FileDigest::counting(categories, API_KINDS)
    }

    /// An empty digest that counts calls of the `categories` analysed into the series `kinds`
    /// (bits over [`KINDS`]).
    pub fn counting(categories: Categories, kinds: u8) -> FileDigest {
        FileDigest {
            categories,
            principal_kinds: kinds & !API_KINDS,
            ..FileDigest::default()
        }
    }

    fn intern(&mut self, field: Field, s: &str) -> u32 {
        let last = &mut self.last[field as usize];
        if let Some(i) = *last {
            if self.strings.get(i as usize).is_some_and(|v| **v == *s) {
                return i;
            }
        }
        let i = match self.index.get(s) {
            Some(&i) => i,
            None => {
                let i = self.strings.len() as u32;
                let arc: Arc<str> = Arc::from(s);
                self.strings.push(Arc::clone(&arc));
                self.index.insert(arc, i);
                i
            }
        };
        *last = Some(i);
        i
    }

    fn intern_opt(&mut self, field: Field, s: Option<&str>) -> u32 {
        match s {
            Some(s) => self.intern(field, s),
            None => NONE,
        }
    }

    /// Adds one validated record.
    pub fn push(&mut self, r: &CallRecord<'_>) {
        self.records += 1;
        let account = self.intern(Field::Account, &r.account);
        let region = self.intern(Field::Region, &r.region);
        // Consecutive records mostly share their minute too: they are counted as a run.
        let key = (account, region, r.minute);
        match &mut self.heartbeat_run {
            Some((run_key, n)) if *run_key == key => *n += 1,
            run => {
                if let Some((done, n)) = run.replace((key, 1)) {
                    *self.heartbeat.entry(done).or_insert(0) += n;
                }
            }
        }
        let Some(category) = r.category.filter(|&c| self.categories.contains(c)) else {
            return;
        };
        let kinds = kinds_of(&r.facts()) & (API_KINDS | self.principal_kinds);
        if kinds == 0 {
            return;
        }
        let (principal, api) = if kinds & (PRINCIPAL_WRITES | PRINCIPAL_READS) != 0 {
            let principal = match r.user_identity_arn.as_deref() {
                Some(arn) => self.intern(Field::Principal, &principal_of(arn)),
                None => NONE,
            };
            let mut api = std::mem::take(&mut self.scratch);
            api.clear();
            api.push_str(&r.event_source);
            api.push(':');
            api.push_str(&r.event_name);
            let i = self.intern(Field::Api, &api);
            self.scratch = api;
            (principal, i)
        } else {
            (NONE, NONE)
        };
        let id_hash = match &r.event_id {
            Some(id) => {
                // Fixed keys: the same eventID hashes the same in every run and on every machine.
                let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(&**id);
                h.max(1)
            }
            None => 0,
        };
        let row = Row {
            id_hash,
            minute: r.minute,
            account,
            region,
            event_source: self.intern(Field::EventSource, &r.event_source),
            event_name: self.intern(Field::EventName, &r.event_name),
            error_code: self.intern_opt(Field::ErrorCode, r.error_code.as_deref()),
            arn: self.intern_opt(Field::Arn, r.user_identity_arn.as_deref()),
            user_agent: self.intern_opt(Field::UserAgent, r.user_agent.as_deref()),
            principal,
            api,
            kinds,
            category,
        };
        self.rows.push(row);
    }

    /// Records of any kind per account/region (string indices) and minute.
    fn heartbeat(&mut self) -> FastMap<(u32, u32, Minute), u64> {
        let mut heartbeat = std::mem::take(&mut self.heartbeat);
        if let Some((key, n)) = self.heartbeat_run.take() {
            *heartbeat.entry(key).or_insert(0) += n;
        }
        heartbeat
    }
}

/// The series and account/regions known so far, with stable numeric ids (persisted in the store).
#[derive(Debug, Default, Clone)]
pub struct Registry {
    series_ids: HashMap<SeriesKey, u32>,
    /// Series by id.
    pub series: Vec<SeriesKey>,
    region_ids: HashMap<(Arc<str>, Arc<str>), u32>,
    /// (account, region) by id.
    pub regions: Vec<(Arc<str>, Arc<str>)>,
    /// First minute with any record, per account/region id.
    pub first_minute: Vec<Minute>,
    strings: HashSet<Arc<str>>,
    /// Account/region id per series id, when it was known as the series was registered (the
    /// detector asks for every series as it advances: no hashing of two strings each time).
    series_region: Vec<Option<u32>>,
}

/// A row's series by its interned fields (account, region, source, name, error code or none,
/// kind index).
type SeriesCacheKey = (u32, u32, u32, u32, u32, u8);

impl Registry {
    fn intern(&mut self, s: &Arc<str>) -> Arc<str> {
        if let Some(existing) = self.strings.get(s) {
            return Arc::clone(existing);
        }
        self.strings.insert(Arc::clone(s));
        Arc::clone(s)
    }

    /// Id of a series, registering it when new and fewer than `max` are registered.
    pub fn series_id_within(&mut self, key: SeriesKey, max: u64) -> Option<u32> {
        if let Some(&id) = self.series_ids.get(&key) {
            return Some(id);
        }
        ((self.series.len() as u64) < max).then(|| self.series_id(key))
    }

    /// Whether a series is registered.
    pub fn knows(&self, key: &SeriesKey) -> bool {
        self.series_ids.contains_key(key)
    }

    /// Id of a series, registering it when new.
    pub fn series_id(&mut self, key: SeriesKey) -> u32 {
        if let Some(&id) = self.series_ids.get(&key) {
            return id;
        }
        let key = SeriesKey {
            account: self.intern(&key.account),
            region: self.intern(&key.region),
            event_source: self.intern(&key.event_source),
            event_name: self.intern(&key.event_name),
            error_code: key.error_code.as_ref().map(|c| self.intern(c)),
            insight_type: key.insight_type,
            category: key.category,
            scope: match &key.scope {
                Scope::Api => Scope::Api,
                Scope::PrincipalWrites(p) => Scope::PrincipalWrites(self.intern(p)),
                Scope::PrincipalReads(p) => Scope::PrincipalReads(self.intern(p)),
            },
        };
        let id = self.series.len() as u32;
        let region = self
            .region_ids
            .get(&(Arc::clone(&key.account), Arc::clone(&key.region)))
            .copied();
        self.series_region.push(region);
        self.series.push(key.clone());
        self.series_ids.insert(key, id);
        id
    }

    /// Id of an account/region, registering it (with its first minute) when new.
    pub fn region_id(&mut self, account: &Arc<str>, region: &Arc<str>, minute: Minute) -> u32 {
        let key = (Arc::clone(account), Arc::clone(region));
        if let Some(&id) = self.region_ids.get(&key) {
            return id;
        }
        let key = (self.intern(account), self.intern(region));
        let id = self.regions.len() as u32;
        self.regions.push(key.clone());
        self.first_minute.push(minute);
        self.region_ids.insert(key, id);
        id
    }

    /// The account/region id of a series.
    pub fn region_of(&self, series_id: u32) -> Option<u32> {
        if let Some(&Some(region)) = self.series_region.get(series_id as usize) {
            return Some(region);
        }
        let key = self.series.get(series_id as usize)?;
        self.region_ids
            .get(&(Arc::clone(&key.account), Arc::clone(&key.region)))
            .copied()
    }

    /// The first minute of history of a series' account/region (its baselines read nothing
    /// before it).
    pub fn first_minute_of(&self, series_id: u32) -> Option<Minute> {
        let region = self.region_of(series_id)?;
        self.first_minute.get(region as usize).copied()
    }

    /// Rebuilds a registry from stored series and account/regions (ids are positions).
    pub fn restore(series: Vec<SeriesKey>, regions: Vec<(Arc<str>, Arc<str>, Minute)>) -> Registry {
        let mut r = Registry::default();
        for (account, region, first) in regions {
            r.region_id(&account, &region, first);
        }
        for key in series {
            r.series_id(key);
        }
        r
    }
}

/// What finding a row's series found.
enum Found {
    /// The series' id.
    Series(u32),
    /// A new series past `ingest.max_series`: the run must stop.
    PastMaxSeries,
    /// A new principal's series past `principals.max_series`: counted in its APIs' only.
    PastMaxPrincipals,
}

/// A count for a minute that was already final when it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LateCount {
    /// Series id, or account/region id when `heartbeat`.
    pub id: u32,
    /// Whether this is a heartbeat (all records) count.
    pub heartbeat: bool,
    /// The minute.
    pub minute: Minute,
    /// Calls that arrived late.
    pub count: u64,
}

/// What absorbing digests found, summed over the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateStats {
    /// Records seen (of any kind).
    pub records: u64,
    /// Write management calls counted.
    pub write_calls: u64,
    /// Management calls with an errorCode counted.
    pub errors: u64,
    /// Write calls counted into principals' series (this run's; not kept in the store's
    /// totals, whose stored shape predates them).
    #[serde(skip)]
    pub principal_writes: u64,
    /// Read calls counted into principals' series (this run's, as `principal_writes`).
    #[serde(skip)]
    pub principal_reads: u64,
    /// Calls of principals past `principals.max_series`, counted in their APIs' series only.
    #[serde(skip)]
    pub principal_untracked: u64,
    /// Rows dropped as a repeated delivery of the same eventID.
    pub duplicates: u64,
    /// Calls counted for minutes that were already final.
    pub late: u64,
    /// Newest minute seen.
    pub max_minute: Option<Minute>,
}

/// Cells of minutes not yet final, per series and per account/region heartbeat.
#[derive(Debug, Default, Clone)]
pub struct Pending {
    /// Series id -> minute -> cell.
    pub series: BTreeMap<u32, BTreeMap<Minute, Cell>>,
    /// Account/region id -> minute -> records of any kind.
    pub heartbeat: BTreeMap<u32, BTreeMap<Minute, u64>>,
}

impl Pending {
    /// Removes and returns every cell before `upto`.
    pub fn take_before(&mut self, upto: Minute) -> Pending {
        fn split<V>(
            map: &mut BTreeMap<u32, BTreeMap<Minute, V>>,
            upto: Minute,
        ) -> BTreeMap<u32, BTreeMap<Minute, V>> {
            let mut taken = BTreeMap::new();
            map.retain(|&id, cells| {
                let Some((&first, _)) = cells.first_key_value() else {
                    return false;
                };
                // Called after every file: most series have nothing this old, so they are left
                // alone, and a series with nothing newer is taken whole (no split).
                if first >= upto {
                    return true;
                }
                let earlier = if cells.last_key_value().is_some_and(|(&last, _)| last < upto) {
                    std::mem::take(cells)
                } else {
                    let later = cells.split_off(&upto);
                    std::mem::replace(cells, later)
                };
                taken.insert(id, earlier);
                !cells.is_empty()
            });
            taken
        }
        Pending {
            series: split(&mut self.series, upto),
            heartbeat: split(&mut self.heartbeat, upto),
        }
    }

    /// Adds every cell of `later`, whose minutes all come after this set's (the cells of the
    /// next minutes to become final).
    pub fn append(&mut self, later: Pending) {
        for (id, cells) in later.series {
            self.series.entry(id).or_default().extend(cells);
        }
        for (id, cells) in later.heartbeat {
            self.heartbeat.entry(id).or_default().extend(cells);
        }
    }

    /// Number of pending cells.
    pub fn len(&self) -> usize {
        self.series.values().map(BTreeMap::len).sum::<usize>()
            + self.heartbeat.values().map(BTreeMap::len).sum::<usize>()
    }

    /// True when nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty() && self.heartbeat.is_empty()
    }
}

/// Absorbs digests: deduplication, series registration, pending cells and late counts.
#[derive(Debug)]
pub struct Aggregator {
    /// Known series and account/regions.
    pub registry: Registry,
    /// Cells of minutes not final yet.
    pub pending: Pending,
    /// Counts for minutes already final, to be applied to history by the caller.
    pub late: Vec<LateCount>,
    /// Totals.
    pub stats: AggregateStats,
    seen_ids: HashSet<u64>,
    seen_by_minute: BTreeMap<Minute, Vec<u64>>,
    /// EventIDs older than the dedup window, per UTC day of their event time.
    day_filters: BTreeMap<i64, seen::DayFilter>,
    /// Days whose filter changed since the last checkpoint.
    dirty_days: BTreeSet<i64>,
    /// Days of filters kept (0: none, re-deliveries older than the window are counted).
    dedup_days: i64,
    /// False-positive rate of each day's first filter stage.
    false_positive: f64,
    /// Most series the registry may hold.
    max_series: u64,
    /// Most per-principal series the registry may hold, and how many it holds.
    max_principal_series: u64,
    principal_series: u64,
    /// Records whose series would have gone past `max_series` (not counted: the run must stop).
    pub refused: u64,
    /// Absorbing a file read before (see [`Aggregator::absorb_again`]).
    rereading: bool,
    capacity: usize,
    dedup_window: Minute,
    null_error: Arc<str>,
    /// [`ALL_APIS`], the API of every per-principal series.
    all_apis: Arc<str>,
}

impl Aggregator {
    /// An aggregator over a known registry.
    pub fn new(registry: Registry, capacity: usize, dedup_window: Minute) -> Aggregator {
        Aggregator {
            registry,
            pending: Pending::default(),
            late: Vec::new(),
            stats: AggregateStats::default(),
            seen_ids: HashSet::new(),
            seen_by_minute: BTreeMap::new(),
            day_filters: BTreeMap::new(),
            dirty_days: BTreeSet::new(),
            dedup_days: 0,
            false_positive: 1e-6,
            max_series: u64::MAX,
            max_principal_series: u64::MAX,
            principal_series: 0,
            refused: 0,
            rereading: false,
            capacity,
            dedup_window,
            null_error: Arc::from("null"),
            all_apis: Arc::from(ALL_APIS),
        }
    }

    /// Recognises re-deliveries older than the dedup window for `days` days of event time, with
    /// one filter per day at false-positive rate below `2 * false_positive` (see [`seen`]).
    pub fn with_day_filters(mut self, days: i64, false_positive: f64) -> Aggregator {
        self.dedup_days = days.max(0);
        self.false_positive = false_positive;
        self
    }

    /// Registers at most `max` series; records of series past it are refused (see
    /// [`Aggregator::refused`]).
    pub fn with_max_series(mut self, max: u64) -> Aggregator {
        self.max_series = max;
        self
    }

    /// Registers at most `max` per-principal series: calls of principals past it count in
    /// their APIs' series only ([`AggregateStats::principal_untracked`]).
    pub fn with_max_principal_series(mut self, max: u64) -> Aggregator {
        self.max_principal_series = max;
        self.principal_series = self
            .registry
            .series
            .iter()
            .filter(|k| k.scope != Scope::Api)
            .count() as u64;
        self
    }

    /// The first day whose filter is kept, given the newest minute seen.
    fn first_kept_day(&self) -> Option<i64> {
        let max = self.stats.max_minute?;
        (self.dedup_days > 0).then(|| max.div_euclid(MINUTES_PER_DAY) - self.dedup_days)
    }

    /// Whether the eventID `id` of a record at `minute` was seen before (and remembers it).
    fn is_repeat(&mut self, id: u64, minute: Minute) -> bool {
        let horizon = self.stats.max_minute.map(|m| m - self.dedup_window);
        if horizon.is_some_and(|h| minute < h) {
            // Behind the exact window: the day's filter, while the day is kept.
            let day = minute.div_euclid(MINUTES_PER_DAY);
            if self.first_kept_day().is_some_and(|first| day >= first) {
                let fp = self.false_positive;
                let fresh = self
                    .day_filters
                    .entry(day)
                    .or_insert_with(|| seen::DayFilter::new(fp))
                    .insert(id);
                if fresh {
                    self.dirty_days.insert(day);
                }
                return !fresh;
            }
            // Older than any filter: a file read before may hold it, so it is not counted again.
            return self.rereading;
        }
        // Inside the window (where the horizon only moves on, so a record's id never was in
        // a filter): the exact set.
        if !self.seen_ids.insert(id) {
            return true;
        }
        self.seen_by_minute.entry(minute).or_default().push(id);
        false
    }

    /// Absorbs the digest of a file absorbed before at another size (appended to): its records
    /// already counted are dropped by eventID, and so are those older than the day filters
    /// reach, which cannot be told from them.
    pub fn absorb_again(&mut self, digest: FileDigest, final_before: Option<Minute>) {
        self.rereading = true;
        self.absorb(digest, final_before);
        self.rereading = false;
    }

    /// Absorbs one file's digest. Minutes before `final_before` are final: their calls go to
    /// [`Aggregator::late`] instead of the pending cells.
    pub fn absorb(&mut self, mut digest: FileDigest, final_before: Option<Minute>) {
        let heartbeat = digest.heartbeat();
        let FileDigest {
            strings,
            rows,
            records,
            ..
        } = digest;
        self.stats.records += records;
        let s = |i: u32| -> Option<&Arc<str>> { strings.get(i as usize) };
        let mut heartbeat: Vec<_> = heartbeat.into_iter().collect();
        heartbeat.sort_unstable_by_key(|&((a, r, m), _)| (m, a, r));
        for ((account, region, minute), count) in heartbeat {
            let (Some(account), Some(region)) = (s(account), s(region)) else {
                continue;
            };
            let late = final_before.is_some_and(|f| minute < f);
            self.count_heartbeat(account, region, minute, count, late);
        }
        let mut series_cache: FastMap<SeriesCacheKey, u32> = FastMap::default();
        let null_error = Arc::clone(&self.null_error);
        for row in rows {
            if row.id_hash != 0 && self.is_repeat(row.id_hash, row.minute) {
                self.stats.duplicates += 1;
                continue;
            }
            let (Some(account), Some(region), Some(source), Some(name)) = (
                s(row.account),
                s(row.region),
                s(row.event_source),
                s(row.event_name),
            ) else {
                continue;
            };
            let error = s(row.error_code);
            let who = Who {
                arn: s(row.arn),
                user_agent: s(row.user_agent),
                error_code: Some(error.unwrap_or(&null_error)),
                api: s(row.api),
            };
            let principal = s(row.principal);
            for (i, kind) in KINDS.iter().enumerate() {
                if row.kinds & (1 << i) == 0 {
                    continue;
                }
                let scope = principal.and_then(|p| kind.scope(p));
                if scope.is_none() && (1 << i) & (PRINCIPAL_WRITES | PRINCIPAL_READS) != 0 {
                    continue;
                }
                let detail = if kind.keyed_by_error_code() {
                    match error {
                        Some(code) => Some((row.error_code, code)),
                        None => continue,
                    }
                } else {
                    None
                };
                let kind_bits = i as u8 | (row.category as u8) << 4;
                let found = match scope {
                    // A principal's series: every API together, within the principals' cap.
                    Some(scope) => {
                        let cache_key = (
                            row.account,
                            row.region,
                            row.principal,
                            NONE,
                            NONE,
                            kind_bits,
                        );
                        let all = Arc::clone(&self.all_apis);
                        self.series_in(&mut series_cache, cache_key, true, || SeriesKey {
                            insight_type: kind.insight_type(),
                            account: Arc::clone(account),
                            region: Arc::clone(region),
                            event_source: Arc::clone(&all),
                            event_name: all,
                            error_code: None,
                            category: row.category,
                            scope,
                        })
                    }
                    None => {
                        let cache_key = (
                            row.account,
                            row.region,
                            row.event_source,
                            row.event_name,
                            detail.map_or(NONE, |(i, _)| i),
                            kind_bits,
                        );
                        self.series_in(&mut series_cache, cache_key, false, || SeriesKey {
                            insight_type: kind.insight_type(),
                            account: Arc::clone(account),
                            region: Arc::clone(region),
                            event_source: Arc::clone(source),
                            event_name: Arc::clone(name),
                            error_code: detail.map(|(_, code)| Arc::clone(code)),
                            category: row.category,
                            scope: Scope::Api,
                        })
                    }
                };
                match found {
                    Found::Series(id) => {
                        *kind.tally(&mut self.stats) += 1;
                        self.count(id, row.minute, kind.attributes(), &who, final_before)
                    }
                    Found::PastMaxSeries => self.refused += 1,
                    Found::PastMaxPrincipals => self.stats.principal_untracked += 1,
                }
            }
        }
        self.prune_seen();
    }

    /// A row's series through the absorb's cache, registering it when new and the registry
    /// has room, and for a principal's series (`principal`) when the principals' cap has room.
    fn series_in(
        &mut self,
        cache: &mut FastMap<SeriesCacheKey, u32>,
        cache_key: SeriesCacheKey,
        principal: bool,
        key: impl FnOnce() -> SeriesKey,
    ) -> Found {
        if let Some(&id) = cache.get(&cache_key) {
            return Found::Series(id);
        }
        let key = key();
        let new_principal = principal && !self.registry.knows(&key);
        if new_principal && self.principal_series >= self.max_principal_series {
            return Found::PastMaxPrincipals;
        }
        let Some(id) = self.registry.series_id_within(key, self.max_series) else {
            return Found::PastMaxSeries;
        };
        self.principal_series += u64::from(new_principal);
        cache.insert(cache_key, id);
        Found::Series(id)
    }

    /// Adds `count` records of any kind of an account/region at `minute` to its heartbeat:
    /// pending, or a late count for history when `late`.
    fn count_heartbeat(
        &mut self,
        account: &Arc<str>,
        region: &Arc<str>,
        minute: Minute,
        count: u64,
        late: bool,
    ) {
        let id = self.registry.region_id(account, region, minute);
        self.stats.max_minute = Some(self.stats.max_minute.map_or(minute, |m| m.max(minute)));
        if late {
            self.late.push(LateCount {
                id,
                heartbeat: true,
                minute,
                count,
            });
        } else {
            *self
                .pending
                .heartbeat
                .entry(id)
                .or_default()
                .entry(minute)
                .or_insert(0) += count;
        }
    }

    /// The pending cell of series `id` at `minute` for `calls` more calls, which it counts; or,
    /// when `late`, `None` and the calls counted late, for history only.
    fn cell_for(&mut self, id: u32, minute: Minute, calls: u64, late: bool) -> Option<&mut Cell> {
        if late {
            self.stats.late += calls;
            self.late.push(LateCount {
                id,
                heartbeat: false,
                minute,
                count: calls,
            });
            return None;
        }
        let cell = self
            .pending
            .series
            .entry(id)
            .or_default()
            .entry(minute)
            .or_default();
        cell.count += calls;
        Some(cell)
    }

    fn count(
        &mut self,
        id: u32,
        minute: Minute,
        attributes: &[Attribute],
        who: &Who<'_>,
        final_before: Option<Minute>,
    ) {
        let capacity = self.capacity;
        let late = final_before.is_some_and(|f| minute < f);
        let Some(cell) = self.cell_for(id, minute, 1, late) else {
            return;
        };
        // One call adds one to each attribute's value, straight into the cell (no temporary
        // counters to build and merge).
        let by = &mut cell.attributions.by_attribute;
        for &attribute in attributes {
            let value = match attribute {
                Attribute::UserIdentityArn => who.arn,
                Attribute::UserAgent => who.user_agent,
                Attribute::ErrorCode => who.error_code,
                Attribute::Api => who.api,
            };
            if let (Some(value), Some(top)) = (value, by.get_mut(attribute.index())) {
                top.add(value, 1, capacity);
            }
        }
    }

    /// The eventIDs (hashed) still inside the dedup window, by minute: saved with each
    /// checkpoint so that a later run still recognises a re-delivery of a record it has counted.
    pub fn seen_ids(&self) -> &BTreeMap<Minute, Vec<u64>> {
        &self.seen_by_minute
    }

    /// Restores the eventIDs saved by [`Aggregator::seen_ids`].
    pub fn restore_seen_ids(&mut self, seen: BTreeMap<Minute, Vec<u64>>) {
        for ids in seen.values() {
            self.seen_ids.extend(ids.iter().copied());
        }
        self.seen_by_minute = seen;
    }

    /// Forgets eventIDs older than the dedup window behind the newest minute seen.
    fn prune_seen(&mut self) {
        let Some(max) = self.stats.max_minute else {
            return;
        };
        let horizon = max - self.dedup_window;
        let keep = self.seen_by_minute.split_off(&horizon);
        let old = std::mem::replace(&mut self.seen_by_minute, keep);
        let first_kept = self.first_kept_day();
        for (minute, ids) in old {
            let day = minute.div_euclid(MINUTES_PER_DAY);
            let kept = first_kept.is_some_and(|first| day >= first);
            for id in ids {
                self.seen_ids.remove(&id);
                if kept {
                    let fp = self.false_positive;
                    self.day_filters
                        .entry(day)
                        .or_insert_with(|| seen::DayFilter::new(fp))
                        .insert(id);
                    self.dirty_days.insert(day);
                }
            }
        }
        if let Some(first) = first_kept {
            self.day_filters = self.day_filters.split_off(&first);
            self.dirty_days = self.dirty_days.split_off(&first);
        }
    }

    /// The day filters changed since [`Aggregator::saved_day_filters`] was last called, to be
    /// written with the next checkpoint, and the first day kept (older ones are deleted).
    pub fn changed_day_filters(&self) -> (Vec<(i64, &seen::DayFilter)>, Option<i64>) {
        let changed = self
            .dirty_days
            .iter()
            .filter_map(|d| self.day_filters.get(d).map(|f| (*d, f)))
            .collect();
        (changed, self.first_kept_day())
    }

    /// The changed day filters are durable.
    pub fn saved_day_filters(&mut self) {
        self.dirty_days.clear();
    }

    /// Restores the day filters saved by checkpoints.
    pub fn restore_day_filters(&mut self, filters: BTreeMap<i64, seen::DayFilter>) {
        self.day_filters = filters;
    }
}

impl crate::store::record::StateRecord for Cell {
    const KIND: &'static str = "pending cell";
    const VERSION: u16 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::InsightType;

    fn cell(count: u64) -> Cell {
        Cell {
            count,
            attributions: Attributions::default(),
        }
    }

    #[test]
    fn take_before_takes_every_cell_before_the_minute_and_keeps_the_rest() {
        let mut p = Pending::default();
        // Series 1: minutes 5..15; series 2: only old minutes; series 3: only new ones.
        for m in 5..15 {
            p.series.entry(1).or_default().insert(m, cell(m as u64));
        }
        p.series.entry(2).or_default().insert(3, cell(1));
        p.series.entry(3).or_default().insert(20, cell(2));
        p.heartbeat.entry(7).or_default().insert(9, 4);
        p.heartbeat.entry(7).or_default().insert(10, 5);
        let taken = p.take_before(10);
        let minutes = |m: &BTreeMap<u32, BTreeMap<Minute, Cell>>, id| -> Vec<Minute> {
            m.get(&id)
                .map(|c| c.keys().copied().collect())
                .unwrap_or_default()
        };
        assert_eq!(minutes(&taken.series, 1), (5..10).collect::<Vec<_>>());
        assert_eq!(minutes(&taken.series, 2), vec![3]);
        assert!(!taken.series.contains_key(&3));
        assert_eq!(minutes(&p.series, 1), (10..15).collect::<Vec<_>>());
        assert!(
            !p.series.contains_key(&2),
            "emptied series leave the pending set"
        );
        assert_eq!(minutes(&p.series, 3), vec![20]);
        assert_eq!(taken.heartbeat[&7], BTreeMap::from([(9, 4)]));
        assert_eq!(p.heartbeat[&7], BTreeMap::from([(10, 5)]));
        assert_eq!(taken.series[&1][&7].count, 7);
        // Nothing before the minute: nothing taken, nothing lost.
        assert!(p.take_before(10).is_empty());
        assert_eq!(p.len(), 7);
    }

    fn record<'a>(
        account: &'a str,
        minute: Minute,
        name: &'a str,
        agent: &'a str,
    ) -> CallRecord<'a> {
        CallRecord {
            event_id: None,
            minute,
            account: account.into(),
            region: "us-east-1".into(),
            event_source: "ec2.amazonaws.com".into(),
            event_name: name.into(),
            error_code: None,
            user_identity_arn: None,
            user_agent: Some(agent.into()),
            read_only: Some(false),
            category: Some(EventCategory::Management),
        }
    }

    fn with_ids(ids: &[(&'static str, Minute)]) -> FileDigest {
        let mut d = FileDigest::default();
        for &(id, minute) in ids {
            let mut r = record("111", minute, "RunInstances", "cli");
            r.event_id = Some(id.into());
            d.push(&r);
        }
        d
    }

    #[test]
    fn a_redelivery_days_behind_the_window_is_not_counted_again() {
        for days in [35, 0] {
            let mut agg =
                Aggregator::new(Registry::default(), 8, 1440).with_day_filters(days, 1e-6);
            agg.absorb(with_ids(&[("a", 10), ("b", 20)]), None);
            // Five days on, the exact window has moved past the first file's minutes.
            agg.absorb(with_ids(&[("c", 5 * 1440)]), None);
            assert!(agg.seen_ids().keys().all(|&m| m >= 4 * 1440));
            // The first file again (a copy of the trail replayed), and one new record of that
            // day.
            agg.absorb(with_ids(&[("a", 10), ("b", 20), ("d", 30)]), None);
            let expected = if days > 0 { 2 } else { 0 };
            assert_eq!(agg.stats.duplicates, expected, "dedup_days = {days}");
            assert_eq!(agg.stats.write_calls, 6 - expected);
        }
    }

    #[test]
    fn day_filters_survive_a_restart_and_old_days_are_let_go() {
        let mut agg = Aggregator::new(Registry::default(), 8, 1440).with_day_filters(3, 1e-6);
        agg.absorb(with_ids(&[("a", 10)]), None);
        agg.absorb(with_ids(&[("c", 2 * 1440)]), None);
        let (changed, first_kept) = agg.changed_day_filters();
        assert_eq!(changed.iter().map(|c| c.0).collect::<Vec<_>>(), vec![0]);
        assert_eq!(first_kept, Some(-1));
        let saved: BTreeMap<i64, seen::DayFilter> =
            changed.into_iter().map(|(d, f)| (d, f.clone())).collect();
        agg.saved_day_filters();
        assert!(agg.changed_day_filters().0.is_empty());
        // A new process: the exact window restored empty (as after losing it), the filters
        // from the store.
        let mut again = Aggregator::new(Registry::default(), 8, 1440).with_day_filters(3, 1e-6);
        again.restore_day_filters(saved);
        again.stats.max_minute = Some(2 * 1440);
        again.absorb(with_ids(&[("a", 10)]), None);
        assert_eq!(again.stats.duplicates, 1);
        // Day 0 falls out of the 3 days kept once the newest minute is on day 4: a copy then is
        // counted (the documented limit).
        again.absorb(with_ids(&[("e", 4 * 1440)]), None);
        assert_eq!(again.changed_day_filters().1, Some(1));
        again.absorb(with_ids(&[("a", 10)]), None);
        assert_eq!(again.stats.duplicates, 1);
    }

    #[test]
    fn a_digest_interns_each_value_once_and_counts_every_record_of_a_minute() {
        let mut d = FileDigest::default();
        // Values that repeat, alternate and come back, over minutes that interleave.
        let records = [
            ("111", 1, "RunInstances", "cli"),
            ("111", 1, "RunInstances", "cli"),
            ("222", 1, "StopInstances", "cli"),
            ("111", 2, "RunInstances", "sdk"),
            ("111", 1, "StopInstances", "cli"),
            ("222", 1, "RunInstances", "sdk"),
            ("222", 1, "RunInstances", "sdk"),
        ];
        for (account, minute, name, agent) in records {
            d.push(&record(account, minute, name, agent));
        }
        let mut values: Vec<&str> = d.strings.iter().map(|v| &**v).collect();
        values.sort_unstable();
        let mut expected = vec![
            "111",
            "222",
            "us-east-1",
            "ec2.amazonaws.com",
            "RunInstances",
        ];
        expected.extend(["StopInstances", "cli", "sdk"]);
        expected.sort_unstable();
        assert_eq!(values, expected, "each value once");
        let strings = d.strings.clone();
        let s = |i: u32| strings[i as usize].to_string();
        let rows: Vec<_> = d
            .rows
            .iter()
            .map(|r| (s(r.account), r.minute, s(r.event_name), s(r.user_agent)))
            .collect();
        let wanted: Vec<_> = records
            .iter()
            .map(|&(a, m, n, u)| (a.to_string(), m, n.to_string(), u.to_string()))
            .collect();
        assert_eq!(rows, wanted);
        let counted = d.heartbeat();
        let heartbeat: BTreeMap<(String, String, Minute), u64> = counted
            .into_iter()
            .map(|((a, r, m), n)| ((s(a), s(r), m), n))
            .collect();
        let east = || "us-east-1".to_string();
        let expected = BTreeMap::from([
            (("111".to_string(), east(), 1), 3),
            (("111".to_string(), east(), 2), 1),
            (("222".to_string(), east(), 1), 3),
        ]);
        assert_eq!(heartbeat, expected);
    }

    fn key(account: &str, region: &str, name: &str) -> SeriesKey {
        SeriesKey {
            insight_type: InsightType::ApiCallRateInsight,
            account: Arc::from(account),
            region: Arc::from(region),
            event_source: Arc::from("ec2.amazonaws.com"),
            event_name: Arc::from(name),
            error_code: None,
            category: crate::series::EventCategory::Management,
            scope: crate::series::Scope::Api,
        }
    }

    #[test]
    fn a_series_knows_its_account_region_whichever_was_registered_first() {
        let mut r = Registry::default();
        let (a, east, west) = (
            Arc::from("111122223333"),
            Arc::from("us-east-1"),
            Arc::from("eu-west-1"),
        );
        let east_id = r.region_id(&a, &east, 0);
        let run = r.series_id(key("111122223333", "us-east-1", "RunInstances"));
        // A series registered before its account/region (not the order absorbing uses).
        let early = r.series_id(key("111122223333", "eu-west-1", "RunInstances"));
        assert_eq!(r.region_of(early), None);
        let west_id = r.region_id(&a, &west, 5);
        assert_eq!(r.region_of(run), Some(east_id));
        assert_eq!(r.region_of(early), Some(west_id));
        assert_eq!(r.region_of(99), None);
        let restored = Registry::restore(
            r.series.clone(),
            vec![(Arc::clone(&a), east, 0), (a, west, 5)],
        );
        assert_eq!(restored.region_of(run), Some(east_id));
        assert_eq!(restored.region_of(early), Some(west_id));
    }
}
