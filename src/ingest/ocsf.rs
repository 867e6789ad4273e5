//! Amazon Security Lake's CloudTrail data: OCSF 1.1 API Activity (`class_uid` 6003, and the
//! Account Change 3001 and Authentication 3002 rows Security Lake writes for some management
//! events) in Parquet, as Security Lake stores CloudTrail management events
//! (`aws/CLOUD_TRAIL_MGMT/2.0/...`) and data events (`aws/S3_DATA/2.0/...`,
//! `aws/LAMBDA_EXECUTION/2.0/...`).
//!
//! Each row is mapped back to the CloudTrail record it was made from, as CloudTrail JSON, and that
//! JSON goes through the same parser as a CloudTrail log file ([`crate::ingest::parse`]): every
//! rule downstream (required fields, lengths, time range, event category, Insights and aggregated
//! events left out) is the JSON path's, word for word. The mapping, field by field, with where
//! each fact comes from, is in `docs/security-lake.md`; in short (OCSF path -> CloudTrail field):
//!
//! | OCSF                                            | CloudTrail                                   |
//! | ----------------------------------------------- | -------------------------------------------- |
//! | `time` (ms since the epoch), else `time_dt`     | `eventTime` (whole seconds, UTC)             |
//! | `api.service.name`                              | `eventSource`                                |
//! | `api.operation`                                 | `eventName`                                  |
//! | `cloud.region`, else the `region=` partition    | `awsRegion`                                  |
//! | `cloud.account.uid`, else `unmapped['recipientAccountId']`, else the `accountId=` partition | `recipientAccountId` |
//! | `api.response.error`                            | `errorCode`                                  |
//! | `api.response.message`                          | `errorMessage`                               |
//! | `unmapped['readOnly']`, else `activity_id` (2 Read: true; 1, 3, 4: false) | `readOnly`         |
//! | `unmapped['managementEvent']`                   | `managementEvent`                            |
//! | `metadata.product.feature.name`                 | `eventCategory` (`Management`, `Data`)       |
//! | `metadata.event_code`, else `unmapped['eventType']` | `eventType`                              |
//! | `metadata.uid`                                  | `eventID`                                    |
//! | `metadata.product.version`                      | `eventVersion`                               |
//! | `api.request.uid`                               | `requestID`                                  |
//! | `src_endpoint.ip`, else `src_endpoint.domain`   | `sourceIPAddress`                            |
//! | `http_request.user_agent`                       | `userAgent`                                  |
//! | `actor.user.type` / `uid` / `uid_alt`           | `userIdentity.type` / `arn` / `principalId`  |
//! | `actor.user.account.uid`                        | `userIdentity.accountId`                     |
//! | `actor.user.credential_uid` / `name`            | `userIdentity.accessKeyId` / `userName`      |
//! | `actor.invoked_by`                              | `userIdentity.invokedBy`                     |
//! | `actor.session.issuer`                          | `userIdentity.sessionContext.sessionIssuer.arn` |
//! | `unmapped['userIdentity.sessionContext.sessionIssuer.type']` | `...sessionIssuer.type`         |
//!
//! Hostile files: a file that is not Parquet to its end (truncated, corrupt footer), whose schema
//! is not OCSF API Activity (no `class_uid`, no `api`, a column of the wrong type), or that
//! declares more uncompressed data than the read limit is refused as a whole with
//! [`OcsfError`]; a row group that cannot be decoded stops the file there, keeping the rows
//! before it. A bad row (null or absurd values, another OCSF class, huge strings) is one bad
//! record, reported with its 0-based row index in the file like a bad record of a JSON file.
//! Memory: the file is already held whole under [`crate::ingest::ReadLimits`]; it is decoded one
//! row group at a time and mapped [`BATCH_ROWS`] rows at a time.

use std::borrow::Cow;
use std::io::Cursor;

use polars::prelude::*;
use serde::Serialize;

use crate::ingest::parse::{
    parse, CallRecord, Format, ParseContext, ParseReport, RecordProblem, SkipReason, MAX_EXAMPLES,
};

/// The first (and last) four bytes of every Parquet file.
pub const PARQUET_MAGIC: &[u8; 4] = b"PAR1";

/// OCSF classes Security Lake writes CloudTrail events as, all read alike: API Activity,
/// Account Change (IAM calls such as `CreateUser`) and Authentication (`ConsoleLogin`...).
pub const CLOUDTRAIL_CLASSES: [i64; 3] = [6003, 3001, 3002];

/// Rows mapped to JSON and parsed together (bounds the JSON buffer next to the row group).
pub const BATCH_ROWS: usize = 8192;

/// Longest string copied into a field trailsight does not read (`errorMessage`,
/// `sourceIPAddress`...): longer ones are cut on a character boundary. Fields trailsight reads
/// are passed whole, so that the parser's own limits report them.
pub const MAX_PASSTHROUGH_BYTES: usize = 8 * 1024;

/// Why a Parquet file could not be read as Security Lake CloudTrail data.
#[derive(Debug, thiserror::Error)]
pub enum OcsfError {
    /// Not a Parquet file to its end: truncated, or its footer is damaged.
    #[error("not a readable Parquet file (truncated or damaged?): {0}")]
    Parquet(String),
    /// The schema is not OCSF API Activity as Security Lake writes it.
    #[error("not Security Lake OCSF API Activity (class 6003): {0}")]
    Schema(String),
    /// The footer declares more uncompressed data than the read limit allows.
    #[error(
        "declares {declared} bytes of uncompressed data, more than the limit of {limit} bytes; \
         skipped"
    )]
    TooLarge {
        /// Uncompressed bytes the row groups declare.
        declared: u64,
        /// The limit ([`crate::ingest::ReadLimits::max_decompressed_bytes`]).
        limit: u64,
    },
    /// One row group could not be decoded; the rows before it were read.
    #[error("row group {group} (rows from {first_row}) cannot be decoded: {reason}")]
    RowGroup {
        /// 0-based row group index.
        group: usize,
        /// 0-based index of its first row in the file.
        first_row: u64,
        /// What the decoder said.
        reason: String,
    },
}

/// Whether a buffer is Parquet: it starts with `PAR1` (a truncated file still does; reading it
/// then reports the damage).
pub fn is_parquet(buf: &[u8]) -> bool {
    buf.starts_with(PARQUET_MAGIC)
}

/// Reads a Security Lake Parquet file held in `buf`, calling `on_record` for each good record.
/// The report counts rows as records (indices are 0-based row numbers in the file). `Err` means
/// the file was refused before any row was read; `Ok((report, Some(e)))` that it broke part way,
/// the rows before the damage being delivered.
pub fn parse_parquet(
    buf: &[u8],
    ctx: &ParseContext<'_>,
    max_uncompressed_bytes: u64,
    on_record: &mut dyn FnMut(CallRecord<'_>),
) -> Result<(ParseReport, Option<OcsfError>), OcsfError> {
    let mut report = ParseReport {
        format: Format::SecurityLakeParquet,
        ..ParseReport::default()
    };
    let partition = Partition::of(ctx.display);
    let metadata = guard(|| {
        ParquetReader::new(Cursor::new(buf))
            .get_metadata()
            .map(Arc::clone)
    })
    .map_err(OcsfError::Parquet)?;
    // What decoding will hold: the row groups' declared sizes, and at least the 8 bytes of
    // `time` per row (a footer may claim many rows in few bytes).
    let bytes: u64 = metadata
        .row_groups
        .iter()
        .map(|g| g.total_byte_size() as u64)
        .sum();
    let declared = bytes.max((metadata.num_rows as u64).saturating_mul(8));
    if declared > max_uncompressed_bytes {
        return Err(OcsfError::TooLarge {
            declared,
            limit: max_uncompressed_bytes,
        });
    }
    let schema = guard(|| {
        let mut reader = ParquetReader::new(Cursor::new(buf));
        reader.set_metadata(Arc::clone(&metadata));
        reader.schema()
    })
    .map_err(OcsfError::Parquet)?;
    let projection = check_schema(&schema)?;
    // The columns' types, from a read of no rows: a column of the wrong type refuses the file
    // before any row is delivered.
    let read = |slice: (usize, usize)| {
        guard(|| {
            let mut reader = ParquetReader::new(Cursor::new(buf));
            reader.set_metadata(Arc::clone(&metadata));
            reader
                .with_columns(Some(projection.clone()))
                .with_slice(Some(slice))
                .read_parallel(ParallelStrategy::None)
                .finish()
        })
    };
    let empty = read((0, 0)).map_err(OcsfError::Parquet)?;
    Columns::of(&empty).map_err(|e| OcsfError::Schema(e.to_string()))?;

    let mut first_row = 0u64;
    for (group, row_group) in metadata.row_groups.iter().enumerate() {
        let rows = row_group.num_rows();
        let start = usize::try_from(first_row).unwrap_or(usize::MAX);
        let columns =
            read((start, rows)).and_then(|df| Columns::of(&df).map_err(|e| e.to_string()));
        let columns = match columns {
            Ok(columns) => columns,
            Err(reason) => {
                let error = OcsfError::RowGroup {
                    group,
                    first_row,
                    reason,
                };
                if report.records_seen == 0 {
                    return Err(error);
                }
                return Ok((report, Some(error)));
            }
        };
        let height = columns.height.min(rows);
        let mut start = 0;
        while start < height {
            let end = (start + BATCH_ROWS).min(height);
            map_batch(
                &columns,
                start..end,
                first_row,
                &partition,
                ctx,
                &mut report,
                on_record,
            );
            start = end;
        }
        first_row += rows as u64;
    }
    Ok((report, None))
}

/// Runs a polars call, turning its error or a panic inside the decoder (a hostile file) into a
/// message.
fn guard<T>(f: impl FnOnce() -> PolarsResult<T>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(match panic.downcast_ref::<&str>() {
            Some(s) => format!("the Parquet decoder failed: {s}"),
            None => match panic.downcast_ref::<String>() {
                Some(s) => format!("the Parquet decoder failed: {s}"),
                None => "the Parquet decoder failed".to_owned(),
            },
        }),
    }
}

/// The top-level columns read (those present), after checking the ones required are there.
fn check_schema(schema: &ArrowSchema) -> Result<Vec<String>, OcsfError> {
    const WANTED: [&str; 11] = [
        "class_uid",
        "activity_id",
        "time",
        "time_dt",
        "metadata",
        "api",
        "cloud",
        "actor",
        "http_request",
        "src_endpoint",
        "unmapped",
    ];
    let has = |name: &str| schema.get(name).is_some();
    let mut missing = Vec::new();
    for required in ["class_uid", "api"] {
        if !has(required) {
            missing.push(required);
        }
    }
    if !has("time") && !has("time_dt") {
        missing.push("time");
    }
    if !missing.is_empty() {
        return Err(OcsfError::Schema(format!(
            "no column {}",
            missing.join(", no column ")
        )));
    }
    Ok(WANTED
        .iter()
        .filter(|name| has(name))
        .map(|name| (*name).to_owned())
        .collect())
}

/// The `region=` and `accountId=` folders of Security Lake's layout, from the input's path.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Partition {
    region: Option<String>,
    account: Option<String>,
}

impl Partition {
    fn of(display: &str) -> Partition {
        let mut partition = Partition::default();
        for part in display.split(['/', '\\']) {
            if let Some((key, value)) = part.split_once('=') {
                if value.is_empty() {
                    continue;
                }
                if key.eq_ignore_ascii_case("region") {
                    partition.region = Some(value.to_owned());
                } else if key.eq_ignore_ascii_case("accountid") {
                    partition.account = Some(value.to_owned());
                }
            }
        }
        partition
    }
}

/// A string leaf of a row group (absent when the column or struct field is not in the file, or
/// the whole column is null-typed).
type Text = Option<StringChunked>;

/// The leaves of one decoded row group that the mapping reads.
struct Columns {
    height: usize,
    class_uid: Option<Int64Chunked>,
    activity_id: Option<Int64Chunked>,
    /// Milliseconds since the epoch.
    time_ms: Option<Int64Chunked>,
    event_version: Text,
    event_id: Text,
    event_code: Text,
    feature: Text,
    source: Text,
    operation: Text,
    request_id: Text,
    error: Text,
    message: Text,
    region: Text,
    account: Text,
    user_agent: Text,
    ip: Text,
    domain: Text,
    user_type: Text,
    user_arn: Text,
    principal_id: Text,
    user_account: Text,
    access_key: Text,
    user_name: Text,
    invoked_by: Text,
    issuer: Text,
    unmapped: Option<ListChunked>,
}

/// What was wrong with a column.
#[derive(Debug, thiserror::Error)]
#[error("{path} {problem}")]
struct ColumnError {
    path: String,
    problem: String,
}

impl Columns {
    fn of(df: &DataFrame) -> Result<Columns, ColumnError> {
        let text = |path: &[&str]| -> Result<Text, ColumnError> {
            match leaf(df, path)? {
                None => Ok(None),
                Some(series) => match series.dtype() {
                    DataType::String => Ok(series.str().ok().cloned()),
                    DataType::Null => Ok(None),
                    other => Err(ColumnError {
                        path: path.join("."),
                        problem: format!("is {other}, not a string"),
                    }),
                },
            }
        };
        let integer = |path: &[&str]| -> Result<Option<Int64Chunked>, ColumnError> {
            match leaf(df, path)? {
                None => Ok(None),
                Some(series) if series.dtype().is_integer() => Ok(series
                    .cast(&DataType::Int64)
                    .ok()
                    .and_then(|s| s.i64().ok().cloned())),
                Some(series) if series.dtype() == &DataType::Null => Ok(None),
                Some(series) => Err(ColumnError {
                    path: path.join("."),
                    problem: format!("is {}, not an integer", series.dtype()),
                }),
            }
        };
        let time_ms = match leaf(df, &["time"])? {
            Some(series) => Some(milliseconds(&series, "time")?),
            None => match leaf(df, &["time_dt"])? {
                Some(series) => Some(milliseconds(&series, "time_dt")?),
                None => None,
            },
        };
        let unmapped = match df.column("unmapped").ok() {
            None => None,
            Some(column) => match column.dtype() {
                DataType::List(inner) if matches!(inner.as_ref(), DataType::Struct(_)) => {
                    column.as_materialized_series().list().ok().cloned()
                }
                DataType::Null => None,
                other => {
                    return Err(ColumnError {
                        path: "unmapped".into(),
                        problem: format!("is {other}, not a map of strings"),
                    })
                }
            },
        };
        Ok(Columns {
            height: df.height(),
            class_uid: integer(&["class_uid"])?,
            activity_id: integer(&["activity_id"])?,
            time_ms,
            event_version: text(&["metadata", "product", "version"])?,
            event_id: text(&["metadata", "uid"])?,
            event_code: text(&["metadata", "event_code"])?,
            feature: text(&["metadata", "product", "feature", "name"])?,
            source: text(&["api", "service", "name"])?,
            operation: text(&["api", "operation"])?,
            request_id: text(&["api", "request", "uid"])?,
            error: text(&["api", "response", "error"])?,
            message: text(&["api", "response", "message"])?,
            region: text(&["cloud", "region"])?,
            account: text(&["cloud", "account", "uid"])?,
            user_agent: text(&["http_request", "user_agent"])?,
            ip: text(&["src_endpoint", "ip"])?,
            domain: text(&["src_endpoint", "domain"])?,
            user_type: text(&["actor", "user", "type"])?,
            user_arn: text(&["actor", "user", "uid"])?,
            principal_id: text(&["actor", "user", "uid_alt"])?,
            user_account: text(&["actor", "user", "account", "uid"])?,
            access_key: text(&["actor", "user", "credential_uid"])?,
            user_name: text(&["actor", "user", "name"])?,
            invoked_by: text(&["actor", "invoked_by"])?,
            issuer: text(&["actor", "session", "issuer"])?,
            unmapped,
        })
    }
}

/// The column at `path` (a top-level column, then struct fields): `None` when a part is absent.
fn leaf(df: &DataFrame, path: &[&str]) -> Result<Option<Series>, ColumnError> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(None);
    };
    let Ok(column) = df.column(first) else {
        return Ok(None);
    };
    let mut series = column.as_materialized_series().clone();
    for (depth, field) in rest.iter().enumerate() {
        match series.dtype() {
            DataType::Struct(_) => {}
            DataType::Null => return Ok(None),
            other => {
                return Err(ColumnError {
                    path: path.get(..=depth).unwrap_or(path).join("."),
                    problem: format!("is {other}, not a struct"),
                })
            }
        }
        let Ok(next) = series.struct_().and_then(|s| s.field_by_name(field)) else {
            return Ok(None);
        };
        series = next;
    }
    Ok(Some(series))
}

/// A time column as milliseconds since the epoch: OCSF's `timestamp_t` (an integer of
/// milliseconds, `time`) or a Parquet timestamp (`time_dt`).
fn milliseconds(series: &Series, name: &str) -> Result<Int64Chunked, ColumnError> {
    let wrong = |dtype: &DataType| ColumnError {
        path: name.to_owned(),
        problem: format!("is {dtype}, not milliseconds or a timestamp"),
    };
    let per_ms: i64 = match series.dtype() {
        dtype if dtype.is_integer() => 1,
        DataType::Datetime(TimeUnit::Milliseconds, _) => 1,
        DataType::Datetime(TimeUnit::Microseconds, _) => 1_000,
        DataType::Datetime(TimeUnit::Nanoseconds, _) => 1_000_000,
        other => return Err(wrong(other)),
    };
    let raw = series
        .to_physical_repr()
        .cast(&DataType::Int64)
        .map_err(|_| wrong(series.dtype()))?;
    let raw = raw.i64().map_err(|_| wrong(series.dtype()))?;
    Ok(if per_ms == 1 {
        raw.clone()
    } else {
        raw.apply_values(|v| v.div_euclid(per_ms))
    })
}

/// `userIdentity.sessionContext` as rebuilt from the row.
#[derive(Serialize)]
struct SessionContext<'a> {
    #[serde(rename = "sessionIssuer")]
    session_issuer: SessionIssuer<'a>,
}

#[derive(Serialize)]
struct SessionIssuer<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arn: Option<Cow<'a, str>>,
}

/// `userIdentity` as rebuilt from `actor`.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct UserIdentity<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    principal_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arn: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_key_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_name: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invoked_by: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_context: Option<SessionContext<'a>>,
}

impl UserIdentity<'_> {
    fn is_empty(&self) -> bool {
        self.kind.is_none()
            && self.principal_id.is_none()
            && self.arn.is_none()
            && self.account_id.is_none()
            && self.access_key_id.is_none()
            && self.user_name.is_none()
            && self.invoked_by.is_none()
            && self.session_context.is_none()
    }
}

/// A CloudTrail flag (`readOnly`, `managementEvent`): a boolean, or the text found when it is
/// neither `true` nor `false` (the parser then reports the wrong type).
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(untagged)]
enum Flag<'a> {
    Bool(bool),
    Text(&'a str),
}

impl<'a> Flag<'a> {
    fn of(text: &'a str) -> Flag<'a> {
        match text {
            "true" => Flag::Bool(true),
            "false" => Flag::Bool(false),
            other => Flag::Text(other),
        }
    }
}

/// One CloudTrail record rebuilt from a row (only what is present is written).
#[derive(Serialize, Default)]
struct Record<'a> {
    #[serde(rename = "eventVersion", skip_serializing_if = "Option::is_none")]
    event_version: Option<Cow<'a, str>>,
    #[serde(
        rename = "userIdentity",
        skip_serializing_if = "UserIdentity::is_empty"
    )]
    user_identity: UserIdentity<'a>,
    #[serde(rename = "eventTime", skip_serializing_if = "Option::is_none")]
    event_time: Option<String>,
    #[serde(rename = "eventSource", skip_serializing_if = "Option::is_none")]
    event_source: Option<&'a str>,
    #[serde(rename = "eventName", skip_serializing_if = "Option::is_none")]
    event_name: Option<&'a str>,
    #[serde(rename = "awsRegion", skip_serializing_if = "Option::is_none")]
    aws_region: Option<&'a str>,
    #[serde(rename = "sourceIPAddress", skip_serializing_if = "Option::is_none")]
    source_ip_address: Option<Cow<'a, str>>,
    #[serde(rename = "userAgent", skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    #[serde(rename = "errorCode", skip_serializing_if = "Option::is_none")]
    error_code: Option<&'a str>,
    #[serde(rename = "errorMessage", skip_serializing_if = "Option::is_none")]
    error_message: Option<Cow<'a, str>>,
    #[serde(rename = "requestID", skip_serializing_if = "Option::is_none")]
    request_id: Option<Cow<'a, str>>,
    #[serde(rename = "eventID", skip_serializing_if = "Option::is_none")]
    event_id: Option<&'a str>,
    #[serde(rename = "readOnly", skip_serializing_if = "Option::is_none")]
    read_only: Option<Flag<'a>>,
    #[serde(rename = "eventType", skip_serializing_if = "Option::is_none")]
    event_type: Option<&'a str>,
    #[serde(rename = "managementEvent", skip_serializing_if = "Option::is_none")]
    management_event: Option<Flag<'a>>,
    #[serde(rename = "recipientAccountId", skip_serializing_if = "Option::is_none")]
    recipient_account_id: Option<&'a str>,
    #[serde(rename = "eventCategory", skip_serializing_if = "Option::is_none")]
    event_category: Option<&'a str>,
}

/// The `unmapped` entries the mapping reads, for one row.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Unmapped {
    read_only: Option<String>,
    management_event: Option<String>,
    recipient_account_id: Option<String>,
    event_type: Option<String>,
    issuer_type: Option<String>,
}

impl Unmapped {
    /// The entries of row `row` of a `map<string,string>` column (a list of key/value structs).
    fn of(column: Option<&ListChunked>, row: usize) -> Unmapped {
        let mut found = Unmapped::default();
        let Some(entries) = column.and_then(|c| c.get_as_series(row)) else {
            return found;
        };
        let Ok(entries) = entries.struct_() else {
            return found;
        };
        let (Ok(keys), Ok(values)) = (entries.field_by_name("key"), entries.field_by_name("value"))
        else {
            return found;
        };
        let (Ok(keys), Ok(values)) = (keys.str(), values.str()) else {
            return found;
        };
        for i in 0..keys.len().min(values.len()) {
            let (Some(key), Some(value)) = (keys.get(i), values.get(i)) else {
                continue;
            };
            let slot = match key {
                "readOnly" => &mut found.read_only,
                "managementEvent" => &mut found.management_event,
                "recipientAccountId" => &mut found.recipient_account_id,
                "eventType" => &mut found.event_type,
                "userIdentity.sessionContext.sessionIssuer.type" => &mut found.issuer_type,
                _ => continue,
            };
            *slot = Some(value.to_owned());
        }
        found
    }
}

/// Rows `rows` of a row group whose first row is `first_row` in the file: mapped to one Records
/// object, parsed, and the parser's report folded into `report` with row indices.
fn map_batch(
    columns: &Columns,
    rows: std::ops::Range<usize>,
    first_row: u64,
    partition: &Partition,
    ctx: &ParseContext<'_>,
    report: &mut ParseReport,
    on_record: &mut dyn FnMut(CallRecord<'_>),
) {
    let mut json = Vec::with_capacity(rows.len() * 512 + 16);
    json.extend_from_slice(b"{\"Records\":[");
    // The file's row index of each record written, in order.
    let mut row_of = Vec::with_capacity(rows.len());
    // Rows refused before parsing; their examples join the parser's in row order.
    let mut early = Vec::new();
    for row in rows {
        let index = first_row + row as u64;
        let class = columns.class_uid.as_ref().and_then(|c| c.get(row));
        match class {
            None => {
                skip(
                    report,
                    &mut early,
                    index,
                    SkipReason::MissingField("class_uid"),
                    None,
                );
                continue;
            }
            Some(class) if !CLOUDTRAIL_CLASSES.contains(&class) => {
                skip(
                    report,
                    &mut early,
                    index,
                    SkipReason::WrongType { field: "class_uid" },
                    Some(format!(
                        "class {class} is not a CloudTrail event class (6003, 3001, 3002)"
                    )),
                );
                continue;
            }
            Some(_) => {}
        }
        let unmapped = Unmapped::of(columns.unmapped.as_ref(), row);
        let record = record(columns, row, &unmapped, partition);
        if !row_of.is_empty() {
            json.push(b',');
        }
        if serde_json::to_writer(&mut json, &record).is_err() {
            // Serialising strings and booleans into memory cannot fail; if it ever did, the
            // row is reported rather than lost silently.
            skip(report, &mut early, index, SkipReason::NotAnObject, None);
            continue;
        }
        row_of.push(index);
    }
    json.extend_from_slice(b"]}");
    let batch = if row_of.is_empty() {
        ParseReport::default()
    } else {
        parse(&json, ctx, on_record)
    };
    report.records_seen += batch.records_seen;
    report.records_ok += batch.records_ok;
    report.chars_replaced += batch.chars_replaced;
    for (reason, n) in batch.ignored {
        *report.ignored.entry(reason).or_insert(0) += n;
    }
    for (reason, n) in batch.skipped {
        *report.skipped.entry(reason).or_insert(0) += n;
    }
    let mut examples = early;
    for mut example in batch.examples {
        let position = usize::try_from(example.index).unwrap_or(usize::MAX);
        example.index = row_of.get(position).copied().unwrap_or(example.index);
        example.is_line_number = false;
        examples.push(example);
    }
    examples.sort_by_key(|e| e.index);
    let room = MAX_EXAMPLES.saturating_sub(report.examples.len());
    report.examples.extend(examples.into_iter().take(room));
}

/// Counts a row rejected before parsing, as the parser counts a bad record; its example waits in
/// `early` (at most [`MAX_EXAMPLES`] are kept).
fn skip(
    report: &mut ParseReport,
    early: &mut Vec<RecordProblem>,
    index: u64,
    reason: SkipReason,
    detail: Option<String>,
) {
    report.records_seen += 1;
    *report.skipped.entry(reason).or_insert(0) += 1;
    if early.len() < MAX_EXAMPLES {
        early.push(RecordProblem {
            index,
            is_line_number: false,
            reason,
            detail,
        });
    }
}

/// The CloudTrail record of row `row` (see the module's table).
fn record<'a>(
    columns: &'a Columns,
    row: usize,
    unmapped: &'a Unmapped,
    partition: &'a Partition,
) -> Record<'a> {
    let get = |column: &'a Text| column.as_ref().and_then(|c| c.get(row));
    let pass = |column: &'a Text| get(column).map(|s| cut(s, MAX_PASSTHROUGH_BYTES));
    let read_only = match unmapped.read_only.as_deref() {
        Some(text) => Some(Flag::of(text)),
        None => match columns.activity_id.as_ref().and_then(|c| c.get(row)) {
            Some(2) => Some(Flag::Bool(true)),
            Some(1 | 3 | 4) => Some(Flag::Bool(false)),
            _ => None,
        },
    };
    let issuer_arn = pass(&columns.issuer);
    let issuer_type = unmapped
        .issuer_type
        .as_deref()
        .map(|s| cut(s, MAX_PASSTHROUGH_BYTES));
    let session_context =
        (issuer_arn.is_some() || issuer_type.is_some()).then_some(SessionContext {
            session_issuer: SessionIssuer {
                kind: issuer_type,
                arn: issuer_arn,
            },
        });
    Record {
        event_version: pass(&columns.event_version),
        user_identity: UserIdentity {
            kind: pass(&columns.user_type),
            principal_id: pass(&columns.principal_id),
            arn: get(&columns.user_arn),
            account_id: get(&columns.user_account),
            access_key_id: pass(&columns.access_key),
            user_name: pass(&columns.user_name),
            invoked_by: pass(&columns.invoked_by),
            session_context,
        },
        event_time: columns
            .time_ms
            .as_ref()
            .and_then(|c| c.get(row))
            .map(event_time),
        event_source: get(&columns.source),
        event_name: get(&columns.operation),
        aws_region: get(&columns.region).or(partition.region.as_deref()),
        source_ip_address: pass(&columns.ip).or_else(|| pass(&columns.domain)),
        user_agent: get(&columns.user_agent),
        error_code: get(&columns.error),
        error_message: pass(&columns.message),
        request_id: pass(&columns.request_id),
        event_id: get(&columns.event_id),
        read_only,
        event_type: get(&columns.event_code).or(unmapped.event_type.as_deref()),
        management_event: unmapped.management_event.as_deref().map(Flag::of),
        recipient_account_id: get(&columns.account)
            .or(unmapped.recipient_account_id.as_deref())
            .or(partition.account.as_deref()),
        event_category: get(&columns.feature),
    }
}

/// `eventTime` of OCSF's `time`: `YYYY-MM-DDTHH:MM:SSZ` (CloudTrail's form, whole seconds). A
/// value no calendar can hold is written as the number itself, which the parser reports as
/// "eventTime is not a valid time".
fn event_time(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => ms.to_string(),
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
fn cut(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Borrowed(s.get(..end).unwrap_or_default())
}

#[cfg(test)]
mod tests;
