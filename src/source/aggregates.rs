//! The aggregate tables of `docs/scale-out.md` (contract version 1) as an input: per-minute
//! counts per series, who made the on-time calls, and records of any kind per account/region,
//! written by the Spark job (`scale-out/spark/aggregate.py`) or Athena (`scale-out/athena/`)
//! as Parquet partitioned by delivery day. Listed one day at a time, in day order; each day
//! read whole and checked row by row: a file that is not the contract's Parquet, or one bad
//! value, refuses the day with an [`AggregateError`] naming the file, the row and the value
//! (never a panic, never a row dropped in silence). [`crate::pipeline`] feeds the rows to the
//! same aggregator, detector, store and sinks as records read from logs.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use polars::prelude::*;

use crate::series::{Attribute, EventCategory, InsightType, Minute};

/// The contract version this reader understands.
pub const CONTRACT_VERSION: u32 = 1;

/// The manifest the Spark job writes at the root of its output.
pub const MANIFEST: &str = "_trailsight_aggregates.json";

/// The three tables, as folders under the root.
pub const SERIES_TABLE: &str = "series_minutes";
/// Who made the on-time calls.
pub const ATTRIBUTION_TABLE: &str = "attributions";
/// Records of any kind per account/region and minute.
pub const ACTIVITY_TABLE: &str = "activity";

/// The partition of rows whose files had no delivery time (read before every dated day).
pub const UNDATED: &str = "undated";

/// Longest account, region, event source, event name or error code accepted (the log parser's
/// own limit, `ingest::parse::MAX_NAME_BYTES`).
const MAX_NAME_BYTES: usize = crate::ingest::parse::MAX_NAME_BYTES;
/// Longest attribution value accepted (the longest `userIdentity.arn` the parser keeps).
const MAX_VALUE_BYTES: usize = crate::ingest::parse::MAX_ARN_BYTES;
/// Largest Parquet file read (a day's table of a very large organization is far smaller).
const MAX_FILE_BYTES: u64 = 4 << 30;

/// Why aggregates could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    /// A folder or file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The root holds none of the three tables.
    #[error("{path} holds no aggregate tables (expected the folders {SERIES_TABLE}/, {ATTRIBUTION_TABLE}/ and {ACTIVITY_TABLE}/ of docs/scale-out.md, as scale-out/spark/aggregate.py writes them)")]
    NotAggregates {
        /// The root given.
        path: String,
    },
    /// The profile counts per-principal series, which the tables do not carry.
    #[error("the profile turns on per-principal series ([principals] write_rates or read_rates), which the aggregate tables (contract version 1, docs/scale-out.md) do not carry: score the aggregates with a profile without them, or score the archive itself")]
    PrincipalsNotCarried,
    /// The manifest is not the contract's, or says another version or lateness.
    #[error("{path}: {problem}")]
    Manifest {
        /// The manifest's path.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// A partition folder's name is not `delivery_day=YYYY-MM-DD` (or `=undated`).
    #[error("{path}: not a delivery_day=YYYY-MM-DD partition")]
    BadPartition {
        /// The folder.
        path: String,
    },
    /// A file is not Parquet to its end, or cannot be decoded.
    #[error("{path}: not a readable Parquet file (truncated or damaged?): {reason}")]
    Parquet {
        /// The file.
        path: String,
        /// What the decoder said.
        reason: String,
    },
    /// A file is larger than the reader accepts.
    #[error("{path}: {size} bytes, more than the {MAX_FILE_BYTES} bytes accepted per file")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
    },
    /// A column is missing or has the wrong type.
    #[error("{path}: column {column} {problem} (see the schema in docs/scale-out.md)")]
    Schema {
        /// The file.
        path: String,
        /// The column.
        column: String,
        /// What is wrong with it.
        problem: String,
    },
    /// One value of one row breaks the contract.
    #[error("{path}: row {row}: {column} {problem}")]
    Row {
        /// The file.
        path: String,
        /// 0-based row index in the file.
        row: usize,
        /// The column.
        column: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// A day already scored was rewritten since.
    #[error("delivery day {day} was scored from aggregates of another size ({was} bytes, now {now}): aggregates cannot be scored twice into one store; score them into a new store")]
    Changed {
        /// The day.
        day: String,
        /// Bytes then.
        was: u64,
        /// Bytes now.
        now: u64,
    },
    /// A new day comes before a day already scored.
    #[error("delivery day {day} is new but comes before day {scored}, already scored: days must be added in order (score them into a new store)")]
    OutOfOrder {
        /// The new day.
        day: String,
        /// The newest day scored.
        scored: String,
    },
    /// S3 could not be listed or read.
    #[error("{url}: {source}")]
    S3 {
        /// What was being read.
        url: String,
        /// The S3 error.
        source: Box<crate::source::s3::S3Error>,
    },
}

/// The settings the tables were written with (from the manifest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// `contract_version`.
    pub version: u32,
    /// The allowed lateness that decided which calls are late.
    pub allowed_lateness_minutes: Option<i64>,
}

/// One delivery day's files.
#[derive(Debug, Clone)]
pub struct DayFiles {
    /// `YYYY-MM-DD`, or [`UNDATED`].
    pub day: String,
    /// The Parquet files of each table (paths, or keys in S3; any may be empty).
    pub series: Vec<String>,
    /// Attribution files.
    pub attributions: Vec<String>,
    /// Activity files.
    pub activity: Vec<String>,
    /// Bytes of every file (the day's identity in the store: a rewritten day is refused).
    pub bytes: u64,
}

impl DayFiles {
    /// The key a store records the day under, as it records a log file's.
    pub fn ingest_key(&self) -> String {
        format!("trailsight-aggregates/delivery_day={}", self.day)
    }
}

/// The tables under one root, listed.
pub struct Listing {
    /// The manifest, when the root has one.
    pub manifest: Option<Manifest>,
    /// Days in the order they are scored: undated first, then by date.
    pub days: Vec<DayFiles>,
    /// Where the files are read from.
    reader: Reader,
}

/// Where a root's files are read from.
enum Reader {
    /// Paths on disk.
    Local,
    /// Keys in a bucket.
    S3(Box<S3Reader>),
}

/// A bucket's client and the runtime its requests run on.
struct S3Reader {
    source: crate::source::s3::S3Source,
    runtime: tokio::runtime::Runtime,
}

impl Reader {
    fn read(&self, file: &str) -> Result<Vec<u8>, AggregateError> {
        match self {
            Reader::Local => {
                let io = |source| AggregateError::Io {
                    path: file.to_owned(),
                    source,
                };
                let size = std::fs::metadata(file).map_err(io)?.len();
                if size > MAX_FILE_BYTES {
                    return Err(AggregateError::TooLarge {
                        path: file.to_owned(),
                        size,
                    });
                }
                std::fs::read(file).map_err(io)
            }
            Reader::S3(s3) => {
                s3.runtime
                    .block_on(s3.source.fetch(file))
                    .map_err(|e| AggregateError::S3 {
                        url: s3.source.display(file),
                        source: Box::new(e),
                    })
            }
        }
    }
}

impl std::fmt::Debug for Listing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listing")
            .field("manifest", &self.manifest)
            .field("days", &self.days)
            .finish()
    }
}

/// Lists the tables under `root`: a folder, or `s3://bucket/prefix` (the standard AWS
/// credential chain and region; `AWS_ENDPOINT_URL` for an S3-compatible store).
pub fn list(root: &str) -> Result<Listing, AggregateError> {
    if let Some(rest) = root.strip_prefix("s3a://") {
        return list_s3(&format!("s3://{rest}"));
    }
    if root
        .get(..5)
        .is_some_and(|s| s.eq_ignore_ascii_case("s3://"))
    {
        return list_s3(root);
    }
    let root = Path::new(root);
    let manifest = read_manifest(root)?;
    let mut days: BTreeMap<(bool, String), DayFiles> = BTreeMap::new();
    let mut tables = 0;
    for table in [SERIES_TABLE, ATTRIBUTION_TABLE, ACTIVITY_TABLE] {
        let dir = root.join(table);
        if !dir.is_dir() {
            continue;
        }
        tables += 1;
        for entry in read_dir(&dir)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(['.', '_']) {
                continue;
            }
            let path = entry.path();
            let Some(day) = name.strip_prefix("delivery_day=").filter(|d| valid_day(d)) else {
                return Err(AggregateError::BadPartition {
                    path: path.display().to_string(),
                });
            };
            let files = days
                .entry((day != UNDATED, day.to_owned()))
                .or_insert_with(|| DayFiles {
                    day: day.to_owned(),
                    series: Vec::new(),
                    attributions: Vec::new(),
                    activity: Vec::new(),
                    bytes: 0,
                });
            let mut parquet = Vec::new();
            for file in read_dir(&path)? {
                let file_name = file.file_name().to_string_lossy().into_owned();
                if file_name.starts_with(['.', '_']) || file_name.ends_with(".crc") {
                    continue;
                }
                let size = file
                    .metadata()
                    .map_err(|source| AggregateError::Io {
                        path: file.path().display().to_string(),
                        source,
                    })?
                    .len();
                files.bytes += size;
                parquet.push(file.path().display().to_string());
            }
            parquet.sort();
            match table {
                SERIES_TABLE => files.series = parquet,
                ATTRIBUTION_TABLE => files.attributions = parquet,
                _ => files.activity = parquet,
            }
        }
    }
    if tables == 0 {
        return Err(AggregateError::NotAggregates {
            path: root.display().to_string(),
        });
    }
    Ok(Listing {
        manifest,
        days: days.into_values().collect(),
        reader: Reader::Local,
    })
}

/// [`list`] of `s3://bucket/prefix`.
fn list_s3(url: &str) -> Result<Listing, AggregateError> {
    use crate::source::s3::{S3Location, S3Options, S3Source};
    let s3 = |e| AggregateError::S3 {
        url: url.to_owned(),
        source: Box::new(e),
    };
    let location: S3Location = url.parse().map_err(s3)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| AggregateError::Io {
            path: url.to_owned(),
            source,
        })?;
    let options = S3Options {
        endpoint_url: std::env::var("AWS_ENDPOINT_URL").ok(),
        region: None,
        max_object_bytes: MAX_FILE_BYTES,
    };
    let source = runtime
        .block_on(S3Source::connect(location.clone(), options))
        .map_err(s3)?;
    let objects = runtime.block_on(source.list_keys()).map_err(s3)?;
    let reader = Reader::S3(Box::new(S3Reader { source, runtime }));
    let mut manifest = None;
    let mut days: BTreeMap<(bool, String), DayFiles> = BTreeMap::new();
    let mut tables = 0;
    let mut seen_tables = std::collections::BTreeSet::new();
    for (key, size) in objects {
        let Some(relative) = key.strip_prefix(&location.prefix) else {
            continue;
        };
        if relative == MANIFEST {
            let bytes = reader.read(&key)?;
            manifest = parse_manifest(&String::from_utf8_lossy(&bytes), &key)?;
            continue;
        }
        let parts: Vec<&str> = relative.split('/').collect();
        let [table, partition, file] = parts[..] else {
            continue;
        };
        if ![SERIES_TABLE, ATTRIBUTION_TABLE, ACTIVITY_TABLE].contains(&table)
            || file.starts_with(['.', '_'])
            || partition.starts_with(['.', '_'])
            || file.is_empty()
        {
            continue;
        }
        if seen_tables.insert(table.to_owned()) {
            tables += 1;
        }
        let Some(day) = partition
            .strip_prefix("delivery_day=")
            .filter(|d| valid_day(d))
        else {
            return Err(AggregateError::BadPartition {
                path: format!("s3://{}/{}", location.bucket, key),
            });
        };
        let files = days
            .entry((day != UNDATED, day.to_owned()))
            .or_insert_with(|| DayFiles {
                day: day.to_owned(),
                series: Vec::new(),
                attributions: Vec::new(),
                activity: Vec::new(),
                bytes: 0,
            });
        files.bytes += size;
        let list = match table {
            SERIES_TABLE => &mut files.series,
            ATTRIBUTION_TABLE => &mut files.attributions,
            _ => &mut files.activity,
        };
        list.push(key.clone());
    }
    if tables == 0 {
        return Err(AggregateError::NotAggregates {
            path: url.to_owned(),
        });
    }
    Ok(Listing {
        manifest,
        days: days.into_values().collect(),
        reader,
    })
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, AggregateError> {
    let io = |source| AggregateError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        entries.push(entry.map_err(io)?);
    }
    entries.sort_by_key(std::fs::DirEntry::file_name);
    Ok(entries)
}

fn valid_day(day: &str) -> bool {
    day == UNDATED || chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").is_ok()
}

fn read_manifest(root: &Path) -> Result<Option<Manifest>, AggregateError> {
    let path = root.join(MANIFEST);
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(AggregateError::Io {
                path: shown,
                source,
            })
        }
    };
    parse_manifest(&text, &shown)
}

fn parse_manifest(text: &str, shown: &str) -> Result<Option<Manifest>, AggregateError> {
    let problem = |problem: String| AggregateError::Manifest {
        path: shown.to_owned(),
        problem,
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| problem(format!("not JSON: {e}")))?;
    if value.get("contract").and_then(|c| c.as_str()) != Some("trailsight-aggregates") {
        return Err(problem(
            "not a trailsight aggregates manifest (\"contract\": \"trailsight-aggregates\")".into(),
        ));
    }
    let version = value
        .get("contract_version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| problem("no contract_version".into()))?;
    if version != u64::from(CONTRACT_VERSION) {
        return Err(problem(format!(
            "contract version {version}; this trailsight reads version {CONTRACT_VERSION}"
        )));
    }
    Ok(Some(Manifest {
        version: CONTRACT_VERSION,
        allowed_lateness_minutes: value
            .get("allowed_lateness_minutes")
            .and_then(serde_json::Value::as_i64),
    }))
}

/// One series' calls in one minute (a row of `series_minutes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesRow {
    /// The minute.
    pub minute: Minute,
    /// The series' Insight type.
    pub insight_type: InsightType,
    /// `recipientAccountId`.
    pub account: Arc<str>,
    /// `awsRegion`.
    pub region: Arc<str>,
    /// `eventSource`.
    pub event_source: Arc<str>,
    /// `eventName`.
    pub event_name: Arc<str>,
    /// The error code of an error-rate series.
    pub error_code: Option<Arc<str>>,
    /// Management or data events.
    pub category: EventCategory,
    /// For late calls, the minute before which every minute was final when they came.
    pub late_at: Option<Minute>,
    /// Calls (or errors).
    pub calls: u64,
}

/// The series a row belongs to, as a sortable tuple (insight type, account, region, source,
/// name, error code, category).
pub type SeriesTuple = (
    InsightType,
    Arc<str>,
    Arc<str>,
    Arc<str>,
    Arc<str>,
    Option<Arc<str>>,
    EventCategory,
);

impl SeriesRow {
    /// Its series, as a tuple.
    pub fn series(&self) -> SeriesTuple {
        (
            self.insight_type,
            Arc::clone(&self.account),
            Arc::clone(&self.region),
            Arc::clone(&self.event_source),
            Arc::clone(&self.event_name),
            self.error_code.clone(),
            self.category,
        )
    }
}

/// How many on-time calls of one series in one minute one value made (a row of `attributions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributionRow {
    /// The minute.
    pub minute: Minute,
    /// The series.
    pub series: SeriesTuple,
    /// The attribute.
    pub attribute: Attribute,
    /// Its value.
    pub value: Arc<str>,
    /// Calls.
    pub count: u64,
}

/// Records of any kind of one account/region in one minute (a row of `activity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityRow {
    /// The minute.
    pub minute: Minute,
    /// `recipientAccountId`.
    pub account: Arc<str>,
    /// `awsRegion`.
    pub region: Arc<str>,
    /// For late records, the minute before which every minute was final when they came.
    pub late_at: Option<Minute>,
    /// Records.
    pub records: u64,
}

/// One delivery day of the three tables, read and checked.
#[derive(Debug, Default)]
pub struct DayAggregates {
    /// `series_minutes` rows.
    pub series: Vec<SeriesRow>,
    /// `attributions` rows.
    pub attributions: Vec<AttributionRow>,
    /// `activity` rows.
    pub activity: Vec<ActivityRow>,
}

/// Reads one day's files of `listing`; `max_minute` is the latest minute accepted (one day
/// past the clock).
pub fn read_day(
    listing: &Listing,
    files: &DayFiles,
    max_minute: Minute,
) -> Result<DayAggregates, AggregateError> {
    let mut day = DayAggregates::default();
    let table = |file: &String| Table::read(file, listing.reader.read(file)?, max_minute);
    for path in &files.series {
        let table = table(path)?;
        for row in 0..table.height {
            day.series.push(SeriesRow {
                minute: table.minute("minute", row)?,
                insight_type: table.insight_type(row)?,
                account: table.name("account", row)?,
                region: table.name("region", row)?,
                event_source: table.name("event_source", row)?,
                event_name: table.name("event_name", row)?,
                error_code: table.optional_name("error_code", row)?,
                category: table.category(row)?,
                late_at: table.late_at(row)?,
                calls: table.count("calls", row)?,
            });
            let last = day
                .series
                .last()
                .map(|r| (r.insight_type, r.error_code.is_some()));
            if let Some((kind, has_code)) = last {
                if crate::series::kind::of(kind).keyed_by_error_code() != has_code {
                    return Err(table.bad(
                        row,
                        "error_code",
                        format!(
                            "must be {} for {kind}",
                            if has_code { "null" } else { "set" }
                        ),
                    ));
                }
            }
        }
    }
    for path in &files.attributions {
        let table = table(path)?;
        for row in 0..table.height {
            let insight_type = table.insight_type(row)?;
            let attribute = table.attribute(row)?;
            if !crate::series::kind::of(insight_type)
                .attributes()
                .contains(&attribute)
            {
                return Err(table.bad(
                    row,
                    "attribute",
                    format!(
                        "{} is not an attribute of {insight_type}",
                        attribute.as_str()
                    ),
                ));
            }
            day.attributions.push(AttributionRow {
                minute: table.minute("minute", row)?,
                series: (
                    insight_type,
                    table.name("account", row)?,
                    table.name("region", row)?,
                    table.name("event_source", row)?,
                    table.name("event_name", row)?,
                    table.optional_name("error_code", row)?,
                    table.category(row)?,
                ),
                attribute,
                value: table.value(row)?,
                count: table.count("count", row)?,
            });
        }
    }
    for path in &files.activity {
        let table = table(path)?;
        for row in 0..table.height {
            day.activity.push(ActivityRow {
                minute: table.minute("minute", row)?,
                account: table.name("account", row)?,
                region: table.name("region", row)?,
                late_at: table.late_at(row)?,
                records: table.count("records", row)?,
            });
        }
    }
    Ok(day)
}

/// One Parquet file of a table, decoded, with its columns by name.
struct Table {
    path: String,
    height: usize,
    columns: BTreeMap<&'static str, Series>,
    max_minute: Minute,
}

/// Every column any table has.
const COLUMNS: [&str; 14] = [
    "records",
    "minute",
    "account",
    "region",
    "event_source",
    "event_name",
    "error_code",
    "category",
    "insight_type",
    "late_at",
    "calls",
    "attribute",
    "value",
    "count",
];

impl Table {
    fn read(shown: &str, bytes: Vec<u8>, max_minute: Minute) -> Result<Table, AggregateError> {
        let shown = shown.to_owned();
        let parquet = |reason: String| AggregateError::Parquet {
            path: shown.clone(),
            reason,
        };
        if !crate::ingest::ocsf::is_parquet(&bytes) || !bytes.ends_with(b"PAR1") {
            return Err(parquet(
                "no Parquet magic bytes at its start and end".into(),
            ));
        }
        let df = guard(|| ParquetReader::new(Cursor::new(&bytes)).finish()).map_err(parquet)?;
        let mut columns = BTreeMap::new();
        for name in COLUMNS {
            if let Ok(column) = df.column(name) {
                columns.insert(name, column.as_materialized_series().clone());
            }
        }
        Ok(Table {
            path: shown,
            height: df.height(),
            columns,
            max_minute,
        })
    }

    fn bad(&self, row: usize, column: &'static str, problem: String) -> AggregateError {
        AggregateError::Row {
            path: self.path.clone(),
            row,
            column,
            problem,
        }
    }

    fn column(&self, name: &'static str) -> Result<&Series, AggregateError> {
        self.columns
            .get(name)
            .ok_or_else(|| AggregateError::Schema {
                path: self.path.clone(),
                column: name.to_owned(),
                problem: "is missing".into(),
            })
    }

    fn wrong_type(&self, name: &'static str, wanted: &str) -> AggregateError {
        let found = self
            .columns
            .get(name)
            .map(|s| s.dtype().to_string())
            .unwrap_or_default();
        AggregateError::Schema {
            path: self.path.clone(),
            column: name.to_owned(),
            problem: format!("is {found}, not {wanted}"),
        }
    }

    fn text(&self, name: &'static str, row: usize) -> Result<Option<&str>, AggregateError> {
        let column = self.column(name)?;
        match column.dtype() {
            DataType::String => {}
            DataType::Null => return Ok(None),
            _ => return Err(self.wrong_type(name, "a string")),
        }
        let strings = column
            .str()
            .map_err(|_| self.wrong_type(name, "a string"))?;
        Ok(strings.get(row))
    }

    fn required_text(&self, name: &'static str, row: usize) -> Result<&str, AggregateError> {
        match self.text(name, row)? {
            Some(s) if !s.is_empty() => Ok(s),
            Some(_) => Err(self.bad(row, name, "is empty".into())),
            None => Err(self.bad(row, name, "is null".into())),
        }
    }

    /// A name that keys a series: bounded, and safe wherever it becomes a path or a line.
    fn checked_name(
        &self,
        name: &'static str,
        row: usize,
        s: &str,
    ) -> Result<Arc<str>, AggregateError> {
        if s.len() > MAX_NAME_BYTES {
            return Err(self.bad(
                row,
                name,
                format!("is {} bytes long, more than {MAX_NAME_BYTES}", s.len()),
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(self.bad(row, name, "holds a control character".into()));
        }
        if matches!(name, "account" | "region")
            && (s.contains(['/', '\\']) || s == "." || s == "..")
        {
            return Err(self.bad(
                row,
                name,
                format!("{s:?} is not an account or region (it would make a path)"),
            ));
        }
        Ok(Arc::from(s))
    }

    fn name(&self, name: &'static str, row: usize) -> Result<Arc<str>, AggregateError> {
        let s = self.required_text(name, row)?;
        self.checked_name(name, row, s)
    }

    fn optional_name(
        &self,
        name: &'static str,
        row: usize,
    ) -> Result<Option<Arc<str>>, AggregateError> {
        match self.text(name, row)? {
            None => Ok(None),
            Some("") => Err(self.bad(row, name, "is empty (null means none)".into())),
            Some(s) => self.checked_name(name, row, s).map(Some),
        }
    }

    fn value(&self, row: usize) -> Result<Arc<str>, AggregateError> {
        let s = match self.text("value", row)? {
            Some(s) => s,
            None => return Err(self.bad(row, "value", "is null".into())),
        };
        if s.len() > MAX_VALUE_BYTES {
            return Err(self.bad(
                row,
                "value",
                format!("is {} bytes long, more than {MAX_VALUE_BYTES}", s.len()),
            ));
        }
        Ok(Arc::from(s))
    }

    fn insight_type(&self, row: usize) -> Result<InsightType, AggregateError> {
        match self.required_text("insight_type", row)? {
            "ApiCallRateInsight" => Ok(InsightType::ApiCallRateInsight),
            "ApiErrorRateInsight" => Ok(InsightType::ApiErrorRateInsight),
            other => Err(self.bad(
                row,
                "insight_type",
                format!(
                    "{:?} is not ApiCallRateInsight or ApiErrorRateInsight",
                    cut(other)
                ),
            )),
        }
    }

    fn category(&self, row: usize) -> Result<EventCategory, AggregateError> {
        let text = self.required_text("category", row)?;
        EventCategory::ALL
            .into_iter()
            .find(|c| c.as_str() == text)
            .ok_or_else(|| {
                self.bad(
                    row,
                    "category",
                    format!("{:?} is not Management or Data", cut(text)),
                )
            })
    }

    fn attribute(&self, row: usize) -> Result<Attribute, AggregateError> {
        let text = self.required_text("attribute", row)?;
        Attribute::ALL
            .into_iter()
            .find(|a| a.as_str() == text)
            .ok_or_else(|| {
                self.bad(
                    row,
                    "attribute",
                    format!(
                        "{:?} is not userIdentityArn, userAgent or errorCode",
                        cut(text)
                    ),
                )
            })
    }

    /// A timestamp column as a UTC minute (null allowed).
    fn optional_minute(
        &self,
        name: &'static str,
        row: usize,
    ) -> Result<Option<Minute>, AggregateError> {
        let column = self.column(name)?;
        let per_minute: i64 = match column.dtype() {
            DataType::Datetime(TimeUnit::Milliseconds, _) => 60_000,
            DataType::Datetime(TimeUnit::Microseconds, _) => 60_000_000,
            DataType::Datetime(TimeUnit::Nanoseconds, _) => 60_000_000_000,
            DataType::Null => return Ok(None),
            _ => return Err(self.wrong_type(name, "a timestamp")),
        };
        let physical = column.to_physical_repr();
        let raw = physical
            .i64()
            .map_err(|_| self.wrong_type(name, "a timestamp"))?;
        let Some(value) = raw.get(row) else {
            return Ok(None);
        };
        if value.rem_euclid(per_minute) != 0 {
            return Err(self.bad(row, name, "is not on a whole minute".into()));
        }
        let minute = value.div_euclid(per_minute);
        if !(crate::ingest::parse::EARLIEST_EVENT_MINUTE..=self.max_minute).contains(&minute) {
            return Err(self.bad(
                row,
                name,
                format!(
                    "{} is out of range (2013-01-01 to a day past the clock)",
                    crate::series::format_event_time(minute)
                ),
            ));
        }
        Ok(Some(minute))
    }

    fn minute(&self, name: &'static str, row: usize) -> Result<Minute, AggregateError> {
        self.optional_minute(name, row)?
            .ok_or_else(|| self.bad(row, name, "is null".into()))
    }

    fn late_at(&self, row: usize) -> Result<Option<Minute>, AggregateError> {
        if !self.columns.contains_key("late_at") {
            return Ok(None);
        }
        let late_at = self.optional_minute("late_at", row)?;
        let minute = self.minute("minute", row)?;
        if late_at.is_some_and(|l| l <= minute) {
            return Err(self.bad(
                row,
                "late_at",
                "must come after the minute (a late call's minute was already final)".into(),
            ));
        }
        Ok(late_at)
    }

    fn count(&self, name: &'static str, row: usize) -> Result<u64, AggregateError> {
        let column = self.column(name)?;
        if !column.dtype().is_integer() {
            return Err(self.wrong_type(name, "an integer"));
        }
        let cast = column
            .cast(&DataType::Int64)
            .map_err(|_| self.wrong_type(name, "an integer"))?;
        let values = cast
            .i64()
            .map_err(|_| self.wrong_type(name, "an integer"))?;
        match values.get(row) {
            None => Err(self.bad(row, name, "is null".into())),
            Some(n) if n < 1 => Err(self.bad(row, name, format!("is {n}, not a positive count"))),
            Some(n) => Ok(n as u64),
        }
    }
}

/// A value cut short for an error message.
fn cut(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Runs a polars call, turning its error or a panic inside the decoder into a message.
fn guard<T>(f: impl FnOnce() -> PolarsResult<T>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the Parquet decoder failed".to_owned()),
    }
}

/// Which accounts one process scores when detection is sharded (`--shard I/N`): those whose
/// account id hashes (64-bit FNV-1a of its bytes) to `I` modulo `N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, from 0.
    pub index: u32,
    /// Shards in all.
    pub count: u32,
}

impl Shard {
    /// Whether `account` is this shard's.
    pub fn holds(&self, account: &str) -> bool {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in account.as_bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash % u64::from(self.count.max(1)) == u64::from(self.index)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Shard, String> {
        let wrong = || format!("{text:?}: expected I/N, the shard I (from 0) of N, e.g. 0/4");
        let (i, n) = text.split_once('/').ok_or_else(wrong)?;
        let index: u32 = i.trim().parse().map_err(|_| wrong())?;
        let count: u32 = n.trim().parse().map_err(|_| wrong())?;
        if count == 0 || index >= count {
            return Err(format!(
                "{text:?}: the shard I must be below the count N (0/2, 1/2)"
            ));
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_accounts_and_parse_strictly() {
        let two: [Shard; 2] = ["0/2".parse().unwrap(), "1/2".parse().unwrap()];
        for account in ["111122223333", "418295730164", "x"] {
            assert_eq!(two.iter().filter(|s| s.holds(account)).count(), 1);
        }
        assert!("2/2".parse::<Shard>().is_err());
        assert!("1/0".parse::<Shard>().is_err());
        assert!("a/b".parse::<Shard>().is_err());
        assert!("1".parse::<Shard>().is_err());
    }

    #[test]
    fn a_folder_without_tables_and_a_bad_partition_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap().to_owned();
        assert!(matches!(
            list(&root),
            Err(AggregateError::NotAggregates { .. })
        ));
        std::fs::create_dir_all(dir.path().join("activity/day=2024-01-01")).unwrap();
        assert!(matches!(
            list(&root),
            Err(AggregateError::BadPartition { .. })
        ));
    }
}
