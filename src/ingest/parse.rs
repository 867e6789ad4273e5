//! Streams CloudTrail records out of a buffer in any of the shapes users have (`{"Records":[...]}`,
//! a JSON array, JSON lines, EventBridge envelopes, a single record), extracting only the fields the
//! engine needs and borrowing strings from the buffer. A bad record is counted and skipped; a JSON
//! syntax error stops the document but every record before it has already been delivered.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::ingest::event_time::parse_event_time;
use crate::series::kind::SeriesKind;
use crate::series::{EventCategory, Minute};

/// One record as the engine needs it. Strings borrow from the parsed buffer unless the JSON
/// escaped them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord<'a> {
    /// `eventID`, when present.
    pub event_id: Option<Cow<'a, str>>,
    /// `eventTime` truncated to its UTC minute.
    pub minute: Minute,
    /// `recipientAccountId`, else `userIdentity.accountId`.
    pub account: Cow<'a, str>,
    /// `awsRegion`.
    pub region: Cow<'a, str>,
    /// `eventSource`, e.g. `ec2.amazonaws.com`.
    pub event_source: Cow<'a, str>,
    /// `eventName`, e.g. `RunInstances`.
    pub event_name: Cow<'a, str>,
    /// `errorCode`; absent, null and `""` are all `None`.
    pub error_code: Option<Cow<'a, str>>,
    /// `userIdentity.arn`, when present and not empty.
    pub user_identity_arn: Option<Cow<'a, str>>,
    /// `userAgent`, truncated to [`MAX_USER_AGENT_BYTES`] on a character boundary.
    pub user_agent: Option<Cow<'a, str>>,
    /// `readOnly`, when present.
    pub read_only: Option<bool>,
    /// The record's event category, when it is an API call that Insights may count: management
    /// (`managementEvent: true`, or `eventCategory: "Management"`), data (`managementEvent:
    /// false` or `eventCategory: "Data"`), and in records before eventVersion 1.06, which say
    /// neither, management unless the call is a known data event (S3 object-level calls,
    /// Lambda `Invoke`). `None` for another category (counted in no series).
    pub category: Option<EventCategory>,
}

impl CallRecord<'_> {
    /// A write management call: what `ApiCallRateInsight` counts.
    pub fn is_write_call(&self) -> bool {
        self.category == Some(EventCategory::Management)
            && crate::series::calls::Calls.counts(&self.facts())
    }

    /// What decides the series kinds the record counts towards.
    pub fn facts(&self) -> crate::series::kind::Facts {
        crate::series::kind::Facts {
            category: self.category,
            read_only: self.read_only,
            has_error: self.error_code.is_some(),
            has_principal: self.user_identity_arn.is_some(),
        }
    }

    /// Copies every borrowed string, so that the record can outlive the buffer.
    pub fn into_owned(self) -> CallRecord<'static> {
        fn own(s: Cow<'_, str>) -> Cow<'static, str> {
            Cow::Owned(s.into_owned())
        }
        CallRecord {
            event_id: self.event_id.map(own),
            minute: self.minute,
            account: own(self.account),
            region: own(self.region),
            event_source: own(self.event_source),
            event_name: own(self.event_name),
            error_code: self.error_code.map(own),
            user_identity_arn: self.user_identity_arn.map(own),
            user_agent: self.user_agent.map(own),
            read_only: self.read_only,
            category: self.category,
        }
    }
}

/// Longest `userAgent` kept, in bytes (CloudTrail's own limit is 1 KB).
pub const MAX_USER_AGENT_BYTES: usize = 1024;
/// Longest `eventSource`, `eventName`, `awsRegion`, account, `errorCode` or `eventID` accepted.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest `userIdentity.arn` accepted.
pub const MAX_ARN_BYTES: usize = 2048;
/// 2013-01-01T00:00Z, before CloudTrail existed: the default earliest credible `eventTime`.
pub const EARLIEST_EVENT_MINUTE: Minute = 22_616_640;
/// How far after its file's delivery time a record may claim to be (clock skew allowance).
pub const MAX_MINUTES_AFTER_DELIVERY: Minute = 60;

/// What the parser knows about the buffer it reads.
#[derive(Debug, Clone, Copy)]
pub struct ParseContext<'p> {
    /// The input as shown to the user.
    pub display: &'p str,
    /// The file's delivery time, if its name has one: records more than
    /// [`MAX_MINUTES_AFTER_DELIVERY`] after it are skipped.
    pub delivery_minute: Option<Minute>,
    /// Records before this minute are skipped as out of range.
    pub min_minute: Minute,
    /// Records after this minute are skipped as out of range.
    pub max_minute: Minute,
}

impl<'p> ParseContext<'p> {
    /// A context accepting records from [`EARLIEST_EVENT_MINUTE`] to one day after now.
    pub fn new(display: &'p str, delivery_minute: Option<Minute>) -> Self {
        let now = chrono::Utc::now().timestamp().div_euclid(60);
        ParseContext {
            display,
            delivery_minute,
            min_minute: EARLIEST_EVENT_MINUTE,
            max_minute: now + crate::series::MINUTES_PER_DAY,
        }
    }
}

/// The shape a buffer was recognised as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Format {
    /// Nothing but whitespace.
    #[default]
    Empty,
    /// `{"Records": [...]}`, as CloudTrail delivers to S3 (several such documents may follow each
    /// other).
    RecordsObject,
    /// A plain JSON array of records.
    JsonArray,
    /// One record (or envelope, or document) per line, or a stream of concatenated records.
    JsonLines,
    /// A single EventBridge envelope with the record under `detail`.
    EventBridge,
    /// CloudWatch Logs subscription messages (`DATA_MESSAGE` with a record in each
    /// `logEvents[].message`, or `{"awslogs":{"data":"<base64 gzip>"}}`), one or several
    /// concatenated as Firehose writes them to S3.
    CloudWatchLogs,
    /// A single record object.
    SingleRecord,
    /// Amazon Security Lake's OCSF API Activity in Parquet (see [`crate::ingest::ocsf`]): each
    /// row is a record.
    SecurityLakeParquet,
    /// Not recognisable: the content is not JSON.
    Unknown,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Empty => "empty",
            Format::RecordsObject => "Records object",
            Format::JsonArray => "JSON array",
            Format::JsonLines => "JSON lines",
            Format::EventBridge => "EventBridge event",
            Format::CloudWatchLogs => "CloudWatch Logs subscription",
            Format::SingleRecord => "single record",
            Format::SecurityLakeParquet => "Security Lake OCSF Parquet",
            Format::Unknown => "not JSON",
        })
    }
}

/// Why a record was skipped as bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// The record is not a JSON object (a number, a string, an array...).
    NotAnObject,
    /// A JSON-lines line is not valid JSON.
    MalformedJson,
    /// A required field is absent, null or empty.
    MissingField(&'static str),
    /// A field has a JSON type it never has in CloudTrail (e.g. `"readOnly": "false"`).
    WrongType {
        /// The field, e.g. `readOnly` or `userIdentity.arn`.
        field: &'static str,
    },
    /// A field is longer than any real value (see [`MAX_NAME_BYTES`], [`MAX_ARN_BYTES`]).
    FieldTooLong(&'static str),
    /// `awslogs.data` of a CloudWatch Logs payload is not base64 of gzip of a message, or
    /// decompresses to more than [`MAX_AWSLOGS_BYTES`].
    BadAwslogsData,
    /// `eventTime` is not a valid time.
    BadEventTime,
    /// `eventTime` is before [`ParseContext::min_minute`] or after [`ParseContext::max_minute`].
    EventTimeOutOfRange,
    /// `eventTime` is more than [`MAX_MINUTES_AFTER_DELIVERY`] after the file's delivery time.
    EventTimeAfterDelivery,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NotAnObject => f.write_str("record is not a JSON object"),
            SkipReason::MalformedJson => f.write_str("malformed JSON"),
            SkipReason::MissingField(field) => write!(f, "missing {field}"),
            SkipReason::WrongType { field } => write!(f, "{field} has the wrong JSON type"),
            SkipReason::FieldTooLong(field) => write!(f, "{field} too long"),
            SkipReason::BadAwslogsData => f.write_str(
                "awslogs.data is not base64 of a gzipped CloudWatch Logs message of at most 64 MiB",
            ),
            SkipReason::BadEventTime => f.write_str("eventTime is not a valid time"),
            SkipReason::EventTimeOutOfRange => f.write_str("eventTime out of range"),
            SkipReason::EventTimeAfterDelivery => {
                f.write_str("eventTime more than an hour after the file's delivery time")
            }
        }
    }
}

/// Why a well-formed record was left out on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IgnoreReason {
    /// An Insights event (`eventType: AwsCloudTrailInsight` or `eventCategory: Insight`): output of
    /// Insights, never input.
    InsightEvent,
    /// A CloudTrail summary of data events over 5 minutes (`eventType: AwsAggregatedEvent`, since
    /// November 2025): not an API call, never counted.
    AggregatedEvent,
    /// A network-activity event (`eventCategory: NetworkActivity`, `eventType: AwsVpceEvent`): a
    /// call through a VPC endpoint, not an API call of the account's, never counted.
    NetworkActivity,
    /// A CloudWatch Logs `CONTROL_MESSAGE` (a subscription's health check): no records.
    ControlMessage,
}

impl fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IgnoreReason::InsightEvent => f.write_str("Insights event"),
            IgnoreReason::AggregatedEvent => {
                f.write_str("aggregated data-event summary (AwsAggregatedEvent), never counted")
            }
            IgnoreReason::NetworkActivity => {
                f.write_str("network-activity event (not an API call), never counted")
            }
            IgnoreReason::ControlMessage => {
                f.write_str("CloudWatch Logs control message (no records)")
            }
        }
    }
}

/// One bad record, kept as an example for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordProblem {
    /// 0-based record index in the file, or the 1-based line number when `is_line_number`.
    pub index: u64,
    /// True when `index` is a line number (JSON lines).
    pub is_line_number: bool,
    /// What was wrong.
    pub reason: SkipReason,
    /// More detail when there is some (the JSON error of a malformed line).
    pub detail: Option<String>,
}

impl fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_line_number {
            write!(f, "line {}: {}", self.index, self.reason)?;
        } else {
            write!(f, "record {}: {}", self.index, self.reason)?;
        }
        if let Some(detail) = &self.detail {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}

/// Where and why a file could not be parsed to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    /// 1-based line of the error.
    pub line: u64,
    /// 1-based byte column of the error (0 right after a newline).
    pub column: u64,
    /// Byte offset of the error in the buffer, when it could be located.
    pub offset: Option<u64>,
    /// What was wrong, e.g. "EOF while parsing a list".
    pub reason: String,
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)?;
        if let Some(offset) = self.offset {
            write!(f, " (byte {offset})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// What [`parse`] found in one buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseReport {
    /// The shape recognised.
    pub format: Format,
    /// Every record encountered, good, ignored or bad.
    pub records_seen: u64,
    /// Records passed to the callback.
    pub records_ok: u64,
    /// Records left out on purpose (not API activity), by reason.
    pub ignored: BTreeMap<IgnoreReason, u64>,
    /// Bad records, by reason.
    pub skipped: BTreeMap<SkipReason, u64>,
    /// The first [`MAX_EXAMPLES`] bad records.
    pub examples: Vec<RecordProblem>,
    /// Set when the buffer could not be parsed to its end; the records before the problem were
    /// still delivered.
    pub fatal: Option<FileProblem>,
    /// Invalid UTF-8 sequences, raw control characters in strings and lone surrogate escapes
    /// replaced by U+FFFD so that their records (and the records after them) could be read.
    pub chars_replaced: u64,
}

impl ParseReport {
    /// Bad records, all reasons together.
    pub fn records_skipped(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// Records left out on purpose, all reasons together.
    pub fn records_ignored(&self) -> u64 {
        self.ignored.values().sum()
    }

    /// Adds `lines` to every line number reported, for a buffer that starts at line
    /// `lines + 1` of its input (a chunk of standard input).
    pub fn shift_line_numbers(&mut self, lines: u64) {
        for example in &mut self.examples {
            if example.is_line_number {
                example.index = example.index.saturating_add(lines);
            }
        }
        if let Some(fatal) = &mut self.fatal {
            fatal.line = fatal.line.saturating_add(lines);
        }
    }
}

/// How many bad records a report keeps as examples.
pub const MAX_EXAMPLES: usize = 20;

/// Parses one buffer (already inflated), calling `on_record` for each good record as soon as it is
/// read. Never panics on any input; see [`ParseReport`] for what is reported.
///
/// The shape is detected from the content: JSON lines when the first non-empty line is a complete
/// JSON object on its own and more content follows (each line is then parsed alone, so a broken line
/// costs only that line); otherwise one JSON document (or several, one after another).
pub fn parse(
    buf: &[u8],
    ctx: &ParseContext<'_>,
    on_record: &mut dyn FnMut(CallRecord<'_>),
) -> ParseReport {
    parse_with(buf, ctx, on_record, Scanner::Fast)
}

/// [`parse`] with serde_json alone, the fast scanner's reference: the differential fuzz target
/// and tests check that both give the same records and report on any input.
#[doc(hidden)]
pub fn parse_reference(
    buf: &[u8],
    ctx: &ParseContext<'_>,
    on_record: &mut dyn FnMut(CallRecord<'_>),
) -> ParseReport {
    parse_with(buf, ctx, on_record, Scanner::Serde)
}

/// Which reader a Records object goes through first (tests compare the two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scanner {
    /// The hand-written scanner, handing over to serde on anything unusual.
    Fast,
    /// serde_json only.
    Serde,
}

fn parse_with(
    buf: &[u8],
    ctx: &ParseContext<'_>,
    on_record: &mut dyn FnMut(CallRecord<'_>),
    scanner: Scanner,
) -> ParseReport {
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    let (bom_len, body) = match buf.strip_prefix(BOM) {
        Some(rest) => (BOM.len(), rest),
        None => (0, buf),
    };
    let mut sink = Sink {
        ctx,
        on_record,
        report: ParseReport::default(),
        next_index: 0,
        line: None,
        shape: None,
        replay: 0,
        awslogs_depth: 0,
    };
    let Some(start) = body.iter().position(|b| !is_json_whitespace(*b)) else {
        return sink.report;
    };
    if is_json_lines(body.get(start..).unwrap_or_default()) {
        parse_lines(body, &mut sink);
        return sink.report;
    }
    parse_document_body(body, bom_len, &mut sink, scanner);
    if sink.report.fatal.is_some() {
        // Invalid UTF-8, a raw control character or a lone surrogate in one string must not
        // cost the records after it: read the file again with the damage replaced by U+FFFD,
        // passing over the records already delivered (the repair only touches bytes where the
        // first reading stopped or could not look).
        if let Some((repaired, replaced)) = repair::repair(body) {
            sink.report.fatal = None;
            sink.report.chars_replaced += replaced;
            sink.replay = sink.report.records_seen;
            sink.next_index = 0;
            sink.shape = None;
            parse_document_body(&repaired, bom_len, &mut sink, scanner);
            sink.replay = 0;
        }
    }
    sink.report
}

/// Reads one or more JSON documents, with the fast scanner first when asked.
fn parse_document_body(body: &[u8], bom_len: usize, sink: &mut Sink<'_>, scanner: Scanner) {
    if scanner == Scanner::Fast && fast::records_object(body, sink).is_ok() {
        sink.report.format = Format::RecordsObject;
        return;
    }
    // The serde parser starts over; the records the scanner delivered are passed over
    // silently (they are the serde parser's first records, read the same way).
    sink.replay = sink.report.records_seen;
    sink.next_index = 0;
    sink.shape = None;
    parse_documents(body, bom_len, sink);
}

fn is_json_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

fn trim_json_whitespace(mut s: &[u8]) -> &[u8] {
    while let Some((first, rest)) = s.split_first() {
        if !is_json_whitespace(*first) {
            break;
        }
        s = rest;
    }
    while let Some((last, rest)) = s.split_last() {
        if !is_json_whitespace(*last) {
            break;
        }
        s = rest;
    }
    s
}

/// `text` starts at the first non-whitespace byte.
fn is_json_lines(text: &[u8]) -> bool {
    if text.first() != Some(&b'{') {
        return false;
    }
    // A Records object is a document; checking its first key avoids scanning a minified
    // multi-megabyte first line for a newline.
    if trim_json_whitespace(text.get(1..).unwrap_or_default()).starts_with(b"\"Records\"") {
        return false;
    }
    let Some(newline) = text.iter().position(|&b| b == b'\n') else {
        return false;
    };
    let (first, rest) = text.split_at(newline);
    if rest.iter().all(|b| is_json_whitespace(*b)) {
        return false;
    }
    if serde_json::from_slice::<IgnoredAny>(first).is_ok() {
        return true;
    }
    // A damaged first line of a JSON-lines file still looks like a whole object: `{ ... }`. The
    // first line of a pretty-printed document ends with `{`, `[` or `,` instead.
    let first = trim_json_whitespace(first);
    first.len() >= 2 && first.last() == Some(&b'}')
}

fn parse_lines(body: &[u8], sink: &mut Sink<'_>) {
    sink.report.format = Format::JsonLines;
    for (line_index, line) in body.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(|b| is_json_whitespace(*b)) {
            continue;
        }
        let line_number = line_index as u64 + 1;
        sink.line = Some(line_number);
        let seen_before = sink.report.records_seen;
        let mut parsed = parse_line(line, sink);
        if parsed.is_err() {
            // Damaged text in a string: read the line again with it replaced by U+FFFD, passing
            // over the records of the line already delivered.
            if let Some((repaired, replaced)) = repair::repair(line) {
                sink.replay = sink.report.records_seen - seen_before;
                parsed = parse_line(&repaired, sink);
                sink.replay = 0;
                if parsed.is_ok() {
                    sink.report.chars_replaced += replaced;
                }
            }
        }
        // A broken line counts as one bad record, even if it was a Records object or an array
        // whose first records were delivered before the damage.
        if let Err(e) = parsed {
            sink.report.records_seen += 1;
            let detail = format!("{} at column {}", error_message(&e), e.column());
            sink.note_skip(line_number, SkipReason::MalformedJson, Some(detail));
        }
    }
}

/// One JSON-lines line as a whole document.
fn parse_line(line: &[u8], sink: &mut Sink<'_>) -> Result<(), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(line);
    DocumentSeed { sink: &mut *sink }
        .deserialize(&mut de)
        .and_then(|_| de.end())
}

fn parse_documents(body: &[u8], bom_len: usize, sink: &mut Sink<'_>) {
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut first_kind = None;
    let mut documents = 0u64;
    loop {
        match (DocumentSeed { sink: &mut *sink }).deserialize(&mut de) {
            Ok(kind) => {
                documents += 1;
                first_kind.get_or_insert(kind);
            }
            Err(e) => {
                sink.report.fatal = Some(file_problem(body, bom_len, &e));
                break;
            }
        }
        // Anything after a document is either another document or garbage that the next round
        // reports with its position.
        if de.end().is_ok() {
            break;
        }
    }
    sink.report.format = match (first_kind, sink.shape) {
        (Some(DocumentKind::SingleRecord | DocumentKind::EventBridge), _) if documents > 1 => {
            Format::JsonLines
        }
        (Some(DocumentKind::RecordsObject), _) => Format::RecordsObject,
        (Some(DocumentKind::Array), _) => Format::JsonArray,
        (Some(DocumentKind::EventBridge), _) => Format::EventBridge,
        (Some(DocumentKind::SingleRecord), _) => Format::SingleRecord,
        (Some(DocumentKind::CloudWatchLogs), _) => Format::CloudWatchLogs,
        (None, Some(shape)) => shape,
        (None, None) => Format::Unknown,
    };
}

fn file_problem(body: &[u8], bom_len: usize, e: &serde_json::Error) -> FileProblem {
    let line = e.line() as u64;
    let column = e.column() as u64;
    let line_start = if line <= 1 {
        Some(0)
    } else {
        body.iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(e.line().saturating_sub(2))
            .map(|(i, _)| i + 1)
    };
    let offset = line_start.map(|start| {
        let at = start.saturating_add(e.column().saturating_sub(1));
        (at.min(body.len()) + bom_len) as u64
    });
    FileProblem {
        line,
        column,
        offset,
        reason: error_message(e),
    }
}

/// serde_json's message without its " at line L column C" suffix (the position is kept apart).
fn error_message(e: &serde_json::Error) -> String {
    let mut message = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    if message.ends_with(&suffix) {
        message.truncate(message.len() - suffix.len());
    }
    message
}

/// Where delivered and rejected records go while the deserializer runs.
struct Sink<'c> {
    ctx: &'c ParseContext<'c>,
    on_record: &'c mut dyn FnMut(CallRecord<'_>),
    report: ParseReport,
    next_index: u64,
    /// The current line number in JSON-lines mode: it identifies the records of that line.
    line: Option<u64>,
    /// The shape of the first document, as soon as it is known (for files that break early).
    shape: Option<Format>,
    /// Records already delivered by the fast scanner before it handed over to the serde parser:
    /// the serde parser passes over this many records without delivering them again.
    replay: u64,
    /// How many `awslogs.data` payloads are being unpacked (at most one).
    awslogs_depth: u8,
}

impl Sink<'_> {
    fn next_index(&mut self) -> u64 {
        match self.line {
            Some(line) => line,
            None => {
                let index = self.next_index;
                self.next_index += 1;
                index
            }
        }
    }

    /// True (once per record) while replaying records the fast scanner already delivered.
    fn replayed(&mut self) -> bool {
        if self.replay == 0 {
            return false;
        }
        self.replay -= 1;
        self.next_index();
        true
    }

    fn deliver(&mut self, fields: RecordFields<'_>) {
        if self.replayed() {
            return;
        }
        let index = self.next_index();
        self.report.records_seen += 1;
        match validate(fields, self.ctx) {
            Ok(record) => {
                self.report.records_ok += 1;
                (self.on_record)(record);
            }
            Err(Verdict::Ignore(reason)) => *self.report.ignored.entry(reason).or_insert(0) += 1,
            Err(Verdict::Skip(reason)) => self.note_skip(index, reason, None),
        }
    }

    /// A record that is bad before its fields are even looked at.
    fn ignore(&mut self, reason: IgnoreReason) {
        if self.replayed() {
            return;
        }
        self.next_index();
        self.report.records_seen += 1;
        *self.report.ignored.entry(reason).or_insert(0) += 1;
    }

    fn reject(&mut self, reason: SkipReason) {
        if self.replayed() {
            return;
        }
        let index = self.next_index();
        self.report.records_seen += 1;
        self.note_skip(index, reason, None);
    }

    /// One `logEvents[].message` of a CloudWatch Logs message: a record as JSON text.
    fn deliver_embedded(&mut self, message: Option<&str>) {
        let Some(text) = message else {
            self.reject(SkipReason::WrongType {
                field: "logEvents[].message",
            });
            return;
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let before = self.report.records_seen;
        let read = (RecordSeed { sink: &mut *self })
            .deserialize(&mut de)
            .and_then(|()| de.end());
        if let Err(e) = read {
            if self.report.records_seen == before && !self.replayed() {
                let index = self.next_index();
                self.report.records_seen += 1;
                let detail = format!("logEvents[].message: {}", error_message(&e));
                self.note_skip(index, SkipReason::MalformedJson, Some(detail));
            }
        }
    }

    /// `awslogs.data`: base64 of a gzipped CloudWatch Logs message, read as such (once: a
    /// message inside it that holds `awslogs` again is not unpacked further).
    fn deliver_awslogs(&mut self, data: Option<&str>) {
        let decoded = data.and_then(|d| unpack_awslogs(d, self.awslogs_depth));
        let Some(message) = decoded else {
            self.reject(SkipReason::BadAwslogsData);
            return;
        };
        self.awslogs_depth += 1;
        let mut de = serde_json::Deserializer::from_slice(&message);
        let before = self.report.records_seen;
        let read = (DocumentSeed { sink: &mut *self })
            .deserialize(&mut de)
            .and_then(|_| de.end());
        self.awslogs_depth -= 1;
        if read.is_err() && self.report.records_seen == before {
            self.reject(SkipReason::BadAwslogsData);
        }
    }

    fn note_skip(&mut self, index: u64, reason: SkipReason, detail: Option<String>) {
        *self.report.skipped.entry(reason).or_insert(0) += 1;
        if self.report.examples.len() < MAX_EXAMPLES {
            self.report.examples.push(RecordProblem {
                index,
                is_line_number: self.line.is_some(),
                reason,
                detail,
            });
        }
    }
}

/// A field read leniently: any JSON value is accepted, so a wrong type marks the record rather
/// than aborting the document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum Lenient<T> {
    /// Absent or `null`.
    #[default]
    Absent,
    Value(T),
    WrongType,
}

/// Implements the visitor methods for the JSON types a visitor does not accept: each gives
/// `self.wrong_type()`, draining arrays and objects so that parsing goes on after them.
macro_rules! reject_json_types {
    (scalars) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(self.wrong_type())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(self.wrong_type())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(self.wrong_type())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(self.wrong_type())
        }
    };
    (strings) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(self.wrong_type())
        }
    };
    (null) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(self.wrong_type())
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(self.wrong_type())
        }
    };
    (arrays) => {
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            IgnoredAny.visit_seq(seq)?;
            Ok(self.wrong_type())
        }
    };
    (objects) => {
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            IgnoredAny.visit_map(map)?;
            Ok(self.wrong_type())
        }
    };
    ($($kind:ident),+) => {
        $(reject_json_types!($kind);)+
    };
}

/// Implements `visit_unit`/`visit_none` as "absent".
macro_rules! null_is_absent {
    () => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Lenient::Absent)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Lenient::Absent)
        }
    };
}

/// A string field.
struct LenientStr<'de>(Lenient<Cow<'de, str>>);

struct StrVisitor;

impl StrVisitor {
    fn wrong_type<'de>(self) -> Lenient<Cow<'de, str>> {
        Lenient::WrongType
    }
}

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Lenient<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Lenient::Value(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Lenient::Value(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Lenient::Value(Cow::Owned(v)))
    }

    null_is_absent!();
    reject_json_types!(scalars, arrays, objects);
}

impl<'de> Deserialize<'de> for LenientStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrVisitor).map(LenientStr)
    }
}

/// A boolean field.
struct LenientBool(Lenient<bool>);

struct BoolVisitor;

impl BoolVisitor {
    fn wrong_type(self) -> Lenient<bool> {
        Lenient::WrongType
    }
}

impl<'de> Visitor<'de> for BoolVisitor {
    type Value = Lenient<bool>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a boolean")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Lenient::Value(v))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(self.wrong_type())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(self.wrong_type())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(self.wrong_type())
    }

    null_is_absent!();
    reject_json_types!(strings, arrays, objects);
}

impl<'de> Deserialize<'de> for LenientBool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(BoolVisitor).map(LenientBool)
    }
}

/// The part of `userIdentity` the engine reads.
#[derive(Debug, Default)]
struct UserIdentity<'de> {
    arn: Lenient<Cow<'de, str>>,
    account_id: Lenient<Cow<'de, str>>,
}

struct LenientIdentity<'de>(Lenient<UserIdentity<'de>>);

struct IdentityVisitor;

impl IdentityVisitor {
    fn wrong_type<'de>(self) -> Lenient<UserIdentity<'de>> {
        Lenient::WrongType
    }
}

impl<'de> Visitor<'de> for IdentityVisitor {
    type Value = Lenient<UserIdentity<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a userIdentity object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut identity = UserIdentity::default();
        while let Some(key) = map.next_key::<IdentityKey>()? {
            match key {
                IdentityKey::Arn => identity.arn = map.next_value::<LenientStr<'de>>()?.0,
                IdentityKey::AccountId => {
                    identity.account_id = map.next_value::<LenientStr<'de>>()?.0
                }
                IdentityKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Lenient::Value(identity))
    }

    null_is_absent!();
    reject_json_types!(scalars, strings, arrays);
}

impl<'de> Deserialize<'de> for LenientIdentity<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IdentityVisitor).map(LenientIdentity)
    }
}

enum IdentityKey {
    Arn,
    AccountId,
    Other,
}

impl<'de> Deserialize<'de> for IdentityKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = IdentityKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IdentityKey, E> {
                Ok(match v {
                    "arn" => IdentityKey::Arn,
                    "accountId" => IdentityKey::AccountId,
                    _ => IdentityKey::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

/// The keys the parser reacts to, at the top of a document or of a record.
#[derive(Debug, Clone, Copy)]
enum Key {
    EventTime,
    EventSource,
    EventName,
    AwsRegion,
    RecipientAccountId,
    UserIdentity,
    ReadOnly,
    ManagementEvent,
    EventCategory,
    EventType,
    ErrorCode,
    EventId,
    UserAgent,
    /// `Records` of a CloudTrail file.
    Records,
    /// `detail` of an EventBridge envelope.
    Detail,
    /// `detail-type` of an EventBridge envelope.
    DetailType,
    /// `messageType` of a CloudWatch Logs subscription message.
    MessageType,
    /// `logEvents` of a CloudWatch Logs subscription message.
    LogEvents,
    /// `awslogs` of a CloudWatch Logs subscription payload as Lambda receives it.
    Awslogs,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "eventTime" => Key::EventTime,
                    "eventSource" => Key::EventSource,
                    "eventName" => Key::EventName,
                    "awsRegion" => Key::AwsRegion,
                    "recipientAccountId" => Key::RecipientAccountId,
                    "userIdentity" => Key::UserIdentity,
                    "readOnly" => Key::ReadOnly,
                    "managementEvent" => Key::ManagementEvent,
                    "eventCategory" => Key::EventCategory,
                    "eventType" => Key::EventType,
                    "errorCode" => Key::ErrorCode,
                    "eventID" => Key::EventId,
                    "userAgent" => Key::UserAgent,
                    "Records" => Key::Records,
                    "detail" => Key::Detail,
                    "detail-type" => Key::DetailType,
                    "messageType" => Key::MessageType,
                    "logEvents" => Key::LogEvents,
                    "awslogs" => Key::Awslogs,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

/// The fields of one record, as read (not yet validated).
#[derive(Debug, Default)]
struct RecordFields<'de> {
    event_time: Lenient<Cow<'de, str>>,
    event_source: Lenient<Cow<'de, str>>,
    event_name: Lenient<Cow<'de, str>>,
    aws_region: Lenient<Cow<'de, str>>,
    recipient_account_id: Lenient<Cow<'de, str>>,
    user_identity: Lenient<UserIdentity<'de>>,
    read_only: Lenient<bool>,
    management_event: Lenient<bool>,
    event_category: Lenient<Cow<'de, str>>,
    event_type: Lenient<Cow<'de, str>>,
    error_code: Lenient<Cow<'de, str>>,
    event_id: Lenient<Cow<'de, str>>,
    user_agent: Lenient<Cow<'de, str>>,
}

impl<'de> RecordFields<'de> {
    /// Reads the value of `key` if the engine needs it, else skips it without allocating.
    fn read<A: MapAccess<'de>>(&mut self, key: Key, map: &mut A) -> Result<(), A::Error> {
        let slot = match key {
            Key::EventTime => &mut self.event_time,
            Key::EventSource => &mut self.event_source,
            Key::EventName => &mut self.event_name,
            Key::AwsRegion => &mut self.aws_region,
            Key::RecipientAccountId => &mut self.recipient_account_id,
            Key::EventCategory => &mut self.event_category,
            Key::EventType => &mut self.event_type,
            Key::ErrorCode => &mut self.error_code,
            Key::EventId => &mut self.event_id,
            Key::UserAgent => &mut self.user_agent,
            Key::UserIdentity => {
                self.user_identity = map.next_value::<LenientIdentity<'de>>()?.0;
                return Ok(());
            }
            Key::ReadOnly => {
                self.read_only = map.next_value::<LenientBool>()?.0;
                return Ok(());
            }
            Key::ManagementEvent => {
                self.management_event = map.next_value::<LenientBool>()?.0;
                return Ok(());
            }
            Key::Records
            | Key::Detail
            | Key::DetailType
            | Key::MessageType
            | Key::LogEvents
            | Key::Awslogs
            | Key::Other => {
                map.next_value::<IgnoredAny>()?;
                return Ok(());
            }
        };
        *slot = map.next_value::<LenientStr<'de>>()?.0;
        Ok(())
    }

    fn read_all<A: MapAccess<'de>>(map: &mut A) -> Result<Self, A::Error> {
        let mut fields = RecordFields::default();
        while let Some(key) = map.next_key::<Key>()? {
            fields.read(key, map)?;
        }
        Ok(fields)
    }
}

enum Verdict {
    Ignore(IgnoreReason),
    Skip(SkipReason),
}

/// A value of the expected type, or `None` when absent; a wrong type rejects the record.
fn typed<T>(field: Lenient<T>, name: &'static str) -> Result<Option<T>, Verdict> {
    match field {
        Lenient::Absent => Ok(None),
        Lenient::Value(v) => Ok(Some(v)),
        Lenient::WrongType => Err(Verdict::Skip(SkipReason::WrongType { field: name })),
    }
}

fn non_empty(s: Option<Cow<'_, str>>) -> Option<Cow<'_, str>> {
    s.filter(|s| !s.is_empty())
}

fn required<'de>(s: Option<Cow<'de, str>>, name: &'static str) -> Result<Cow<'de, str>, Verdict> {
    non_empty(s).ok_or(Verdict::Skip(SkipReason::MissingField(name)))
}

fn at_most(s: &str, max: usize, name: &'static str) -> Result<(), Verdict> {
    if s.len() > max {
        Err(Verdict::Skip(SkipReason::FieldTooLong(name)))
    } else {
        Ok(())
    }
}

fn truncate_on_char_boundary(s: Cow<'_, str>, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(b.get(..end).unwrap_or_default()),
        Cow::Owned(mut o) => {
            o.truncate(end);
            Cow::Owned(o)
        }
    }
}

/// Calls that are data events, for records older than eventVersion 1.06 that say neither
/// `managementEvent` nor `eventCategory`.
fn is_known_data_event(event_source: &str, event_name: &str) -> bool {
    match event_source {
        "s3.amazonaws.com" => matches!(
            event_name,
            "AbortMultipartUpload"
                | "CompleteMultipartUpload"
                | "CopyObject"
                | "CreateMultipartUpload"
                | "DeleteObject"
                | "DeleteObjects"
                | "GetObject"
                | "GetObjectAcl"
                | "GetObjectAttributes"
                | "GetObjectLegalHold"
                | "GetObjectRetention"
                | "GetObjectTagging"
                | "GetObjectTorrent"
                | "HeadObject"
                | "ListMultipartUploads"
                | "ListObjects"
                | "ListObjectsV2"
                | "ListObjectVersions"
                | "ListParts"
                | "PutObject"
                | "PutObjectAcl"
                | "PutObjectLegalHold"
                | "PutObjectRetention"
                | "PutObjectTagging"
                | "DeleteObjectTagging"
                | "RestoreObject"
                | "SelectObjectContent"
                | "UploadPart"
                | "UploadPartCopy"
        ),
        "lambda.amazonaws.com" => event_name == "Invoke",
        _ => false,
    }
}

fn validate<'de>(f: RecordFields<'de>, ctx: &ParseContext<'_>) -> Result<CallRecord<'de>, Verdict> {
    let event_time = typed(f.event_time, "eventTime")?;
    let event_source = typed(f.event_source, "eventSource")?;
    let event_name = typed(f.event_name, "eventName")?;
    let aws_region = typed(f.aws_region, "awsRegion")?;
    let recipient_account_id = typed(f.recipient_account_id, "recipientAccountId")?;
    let (arn, identity_account_id) = match typed(f.user_identity, "userIdentity")? {
        Some(identity) => (
            typed(identity.arn, "userIdentity.arn")?,
            typed(identity.account_id, "userIdentity.accountId")?,
        ),
        None => (None, None),
    };
    let read_only = typed(f.read_only, "readOnly")?;
    let management_event = typed(f.management_event, "managementEvent")?;
    let event_category = typed(f.event_category, "eventCategory")?;
    let event_type = typed(f.event_type, "eventType")?;
    let error_code = typed(f.error_code, "errorCode")?;
    let event_id = typed(f.event_id, "eventID")?;
    let user_agent = typed(f.user_agent, "userAgent")?;

    if event_type.as_deref() == Some("AwsCloudTrailInsight")
        || event_category.as_deref() == Some("Insight")
    {
        return Err(Verdict::Ignore(IgnoreReason::InsightEvent));
    }
    if event_type.as_deref() == Some("AwsAggregatedEvent") {
        return Err(Verdict::Ignore(IgnoreReason::AggregatedEvent));
    }
    if event_type.as_deref() == Some("AwsVpceEvent")
        || event_category.as_deref() == Some("NetworkActivity")
    {
        return Err(Verdict::Ignore(IgnoreReason::NetworkActivity));
    }

    let event_time = required(event_time, "eventTime")?;
    let event_source = required(event_source, "eventSource")?;
    let event_name = required(event_name, "eventName")?;
    let region = required(aws_region, "awsRegion")?;
    let account = required(
        non_empty(recipient_account_id).or(identity_account_id),
        "recipientAccountId",
    )?;
    let error_code = non_empty(error_code);
    let user_identity_arn = non_empty(arn);
    let event_id = non_empty(event_id);

    at_most(&event_source, MAX_NAME_BYTES, "eventSource")?;
    at_most(&event_name, MAX_NAME_BYTES, "eventName")?;
    at_most(&region, MAX_NAME_BYTES, "awsRegion")?;
    at_most(&account, MAX_NAME_BYTES, "recipientAccountId")?;
    if let Some(code) = &error_code {
        at_most(code, MAX_NAME_BYTES, "errorCode")?;
    }
    if let Some(id) = &event_id {
        at_most(id, MAX_NAME_BYTES, "eventID")?;
    }
    if let Some(arn) = &user_identity_arn {
        at_most(arn, MAX_ARN_BYTES, "userIdentity.arn")?;
    }

    let minute = parse_event_time(&event_time).ok_or(Verdict::Skip(SkipReason::BadEventTime))?;
    if minute < ctx.min_minute || minute > ctx.max_minute {
        return Err(Verdict::Skip(SkipReason::EventTimeOutOfRange));
    }
    if let Some(delivery) = ctx.delivery_minute {
        if minute > delivery.saturating_add(MAX_MINUTES_AFTER_DELIVERY) {
            return Err(Verdict::Skip(SkipReason::EventTimeAfterDelivery));
        }
    }

    let category = match (management_event, event_category.as_deref()) {
        (Some(true), _) | (None, Some("Management")) => Some(EventCategory::Management),
        (Some(false), Some("Data") | None) | (None, Some("Data")) => Some(EventCategory::Data),
        (_, Some(_)) => None,
        (None, None) if is_known_data_event(&event_source, &event_name) => {
            Some(EventCategory::Data)
        }
        (None, None) => Some(EventCategory::Management),
    };

    Ok(CallRecord {
        event_id,
        minute,
        account,
        region,
        event_source,
        event_name,
        error_code,
        user_identity_arn,
        user_agent: user_agent.map(|ua| truncate_on_char_boundary(ua, MAX_USER_AGENT_BYTES)),
        read_only,
        category,
    })
}

/// What a top-level document turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DocumentKind {
    RecordsObject,
    Array,
    EventBridge,
    SingleRecord,
    CloudWatchLogs,
}

/// One top-level JSON value (or one JSON line): a Records object, an array of records, an
/// EventBridge envelope or a single record. Records are delivered while it is read.
struct DocumentSeed<'s, 'c> {
    sink: &'s mut Sink<'c>,
}

impl DocumentSeed<'_, '_> {
    fn wrong_type(self) -> DocumentKind {
        self.sink.reject(SkipReason::NotAnObject);
        DocumentKind::SingleRecord
    }
}

impl<'de> DeserializeSeed<'de> for DocumentSeed<'_, '_> {
    type Value = DocumentKind;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<DocumentKind, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DocumentSeed<'_, '_> {
    type Value = DocumentKind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CloudTrail records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DocumentKind, A::Error> {
        self.sink.shape.get_or_insert(Format::JsonArray);
        while seq
            .next_element_seed(RecordSeed {
                sink: &mut *self.sink,
            })?
            .is_some()
        {}
        Ok(DocumentKind::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DocumentKind, A::Error> {
        let mut fields = RecordFields::default();
        let mut has_records = false;
        let mut detail = Lenient::Absent;
        let mut has_detail_type = false;
        let mut message_type: Option<String> = None;
        let mut log_events: Option<Vec<Option<String>>> = None;
        let mut awslogs: Option<Option<String>> = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::MessageType => {
                    message_type = match map.next_value::<serde_json::Value>()? {
                        serde_json::Value::String(s) => Some(s),
                        _ => None,
                    };
                }
                Key::LogEvents => log_events = Some(map.next_value::<LogEvents>()?.0),
                Key::Awslogs => {
                    awslogs = Some(match map.next_value::<serde_json::Value>()? {
                        serde_json::Value::Object(mut o) => match o.remove("data") {
                            Some(serde_json::Value::String(data)) => Some(data),
                            _ => None,
                        },
                        _ => None,
                    });
                }
                Key::Records => {
                    has_records = true;
                    self.sink.shape.get_or_insert(Format::RecordsObject);
                    map.next_value_seed(RecordsSeed {
                        sink: &mut *self.sink,
                    })?;
                }
                Key::Detail => detail = map.next_value::<DetailValue<'de>>()?.0,
                Key::DetailType => {
                    has_detail_type = true;
                    map.next_value::<IgnoredAny>()?;
                }
                other => fields.read(other, &mut map)?,
            }
        }
        if has_records {
            return Ok(DocumentKind::RecordsObject);
        }
        if let Some(data) = awslogs {
            self.sink.shape.get_or_insert(Format::CloudWatchLogs);
            self.sink.deliver_awslogs(data.as_deref());
            return Ok(DocumentKind::CloudWatchLogs);
        }
        if let Some(events) = log_events {
            self.sink.shape.get_or_insert(Format::CloudWatchLogs);
            if message_type.as_deref() == Some("CONTROL_MESSAGE") {
                self.sink.ignore(IgnoreReason::ControlMessage);
            } else {
                for message in events {
                    self.sink.deliver_embedded(message.as_deref());
                }
            }
            return Ok(DocumentKind::CloudWatchLogs);
        }
        if has_detail_type {
            match detail {
                Lenient::Value(record) => {
                    self.sink.deliver(record);
                    return Ok(DocumentKind::EventBridge);
                }
                Lenient::WrongType => {
                    self.sink.reject(SkipReason::NotAnObject);
                    return Ok(DocumentKind::EventBridge);
                }
                Lenient::Absent => {}
            }
        }
        self.sink.deliver(fields);
        Ok(DocumentKind::SingleRecord)
    }

    reject_json_types!(scalars, strings, null);
}

/// The value of `Records`: an array streamed record by record.
struct RecordsSeed<'s, 'c> {
    sink: &'s mut Sink<'c>,
}

impl RecordsSeed<'_, '_> {
    fn wrong_type(self) {
        self.sink.reject(SkipReason::WrongType { field: "Records" });
    }
}

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(RecordSeed {
                sink: &mut *self.sink,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    reject_json_types!(scalars, strings, objects);
}

/// One element of a record array: read and delivered (or rejected) at once.
struct RecordSeed<'s, 'c> {
    sink: &'s mut Sink<'c>,
}

impl RecordSeed<'_, '_> {
    fn wrong_type(self) {
        self.sink.reject(SkipReason::NotAnObject);
    }
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let fields = RecordFields::read_all(&mut map)?;
        self.sink.deliver(fields);
        Ok(())
    }

    reject_json_types!(scalars, strings, null, arrays);
}

/// The most a CloudWatch Logs payload's `awslogs.data` may decompress to (CloudWatch Logs
/// sends at most 1 MB of events in one message).
pub const MAX_AWSLOGS_BYTES: u64 = 64 << 20;

/// Decodes `awslogs.data` (base64 of gzip) to the message's JSON, within [`MAX_AWSLOGS_BYTES`];
/// `None` when it is not that, or inside another payload.
fn unpack_awslogs(data: &str, depth: u8) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use std::io::Read as _;
    if depth > 0 {
        return None;
    }
    let gzipped = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .ok()?;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&gzipped[..])
        .take(MAX_AWSLOGS_BYTES + 1)
        .read_to_end(&mut out)
        .ok()?;
    (out.len() as u64 <= MAX_AWSLOGS_BYTES).then_some(out)
}

/// `logEvents` of a CloudWatch Logs message: each event's `message`, in order (`None` for one
/// that is not a string).
struct LogEvents(Vec<Option<String>>);

impl<'de> Deserialize<'de> for LogEvents {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde_json::Value;
        // An event without a string `message`, or `logEvents` that is no array, is one bad
        // record (reported as such), not a message skipped.
        Ok(LogEvents(match Value::deserialize(d)? {
            Value::Array(events) => events
                .into_iter()
                .map(
                    |mut event| match event.get_mut("message").map(Value::take) {
                        Some(Value::String(message)) => Some(message),
                        _ => None,
                    },
                )
                .collect(),
            _ => vec![None],
        }))
    }
}

/// The `detail` of an EventBridge envelope: a record, kept until the envelope is known to be one.
struct DetailValue<'de>(Lenient<RecordFields<'de>>);

struct DetailVisitor;

impl DetailVisitor {
    fn wrong_type<'de>(self) -> Lenient<RecordFields<'de>> {
        Lenient::WrongType
    }
}

impl<'de> Visitor<'de> for DetailVisitor {
    type Value = Lenient<RecordFields<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        RecordFields::read_all(&mut map).map(Lenient::Value)
    }

    null_is_absent!();
    reject_json_types!(scalars, strings, arrays);
}

impl<'de> Deserialize<'de> for DetailValue<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DetailVisitor).map(DetailValue)
    }
}

mod fast;
mod repair;

#[cfg(test)]
mod tests;
