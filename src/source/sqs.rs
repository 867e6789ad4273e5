//! The SQS source of `trailsight watch sqs://QUEUE_URL`: follows a trail's bucket through the S3
//! event notifications its queue receives, without listing the bucket (the way to follow a busy
//! or organization-wide bucket, as vector's and Splunk's S3 inputs do).
//!
//! A message may be:
//! - an S3 event notification (`{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put",
//!   "s3":{"bucket":{"name":...},"object":{"key":...}}}]}`, keys URL-encoded), also wrapped in an
//!   SNS envelope (`{"Type":"Notification","Message":"..."}`) when S3 publishes to a topic;
//! - an EventBridge "Object Created" event (`{"detail-type":"Object Created","source":"aws.s3",
//!   "detail":{"bucket":{"name":...},"object":{"key":...}}}`, keys as they are);
//! - CloudTrail's own notification of a delivery (`{"s3Bucket":...,"s3ObjectKey":[...]}`);
//! - S3's `s3:TestEvent`, or any other S3 event (removals...), which has nothing to read.
//!
//! Delivery guarantee: a message is deleted only once every log object it names is recorded in
//! the store as ingested (committed); objects already ingested (a redelivered message, a restart)
//! are acknowledged without being read again, and an object handed out but not yet committed is
//! not read twice when its message comes back. A message whose object cannot be fetched is left
//! in the queue (it comes back after its visibility timeout); a message that is not a
//! notification is reported and left for the queue's redrive policy (its dead-letter queue).
//! Objects that are not activity (digests, Insights output, files of other kinds) are
//! acknowledged without being read.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

use aws_config::timeout::TimeoutConfig;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use serde_json::Value;

use super::s3::{
    clipped as shown, fetch_with_retry, sdk_config, FollowOptions, S3Error, S3Location, S3Options,
    S3Source,
};
use super::{Backoff, Ending, Input, Loaded, Pull, Source, SourceError, Stop, Trouble};
use crate::ingest::discover::{delivery_minute_of, has_log_suffix, under_not_activity_dir};
use crate::store::Store;

/// The longest long poll SQS allows.
const MAX_WAIT_SECONDS: i32 = 20;
/// Messages taken in one round before its objects are handed out (sorted by delivery time).
const ROUND_MESSAGES: usize = 100;
/// Objects fetched at once.
const CONCURRENT_FETCHES: usize = 8;
/// At most this many bytes fetched at once (at least one object), bounding memory.
const FETCH_BYTES: u64 = 64 << 20;
/// Attempts to fetch one object (backoff 2 s, 4 s... between them).
const FETCH_ATTEMPTS: u32 = 3;
/// With `--once`, how long to wait for the last objects' commit before deleting their messages.
const ONCE_COMMIT_WAIT: Duration = Duration::from_secs(120);
/// Largest message body examined (SQS allows 1 MiB; anything larger is not a notification).
const MAX_BODY_BYTES: usize = 1 << 20;

/// `sqs://...`: the queue to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueAddress {
    /// The queue URL (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`).
    pub url: String,
    /// The region named by the URL's host, if it names one.
    pub region: Option<String>,
    /// `scheme://host[:port]` of a queue URL outside AWS (moto, LocalStack, ElasticMQ), used as
    /// the endpoint when none is given.
    pub local_endpoint: Option<String>,
}

/// Errors of the SQS source.
#[derive(Debug, thiserror::Error)]
pub enum SqsError {
    /// The `sqs://` address could not be used.
    #[error("{given:?} is not a queue: {why} (expected sqs://https://sqs.REGION.amazonaws.com/ACCOUNT/NAME or sqs://sqs.REGION.amazonaws.com/ACCOUNT/NAME)")]
    BadAddress {
        /// What was given.
        given: String,
        /// What is wrong.
        why: &'static str,
    },
    /// No region, or the runtime's client could not be made.
    #[error("SQS client setup: {0}")]
    Setup(String),
    /// A request to the queue failed.
    #[error("{action} {queue}: {detail}")]
    Request {
        /// What was being done.
        action: &'static str,
        /// The queue URL.
        queue: String,
        /// The service's code and message, or the transport failure.
        detail: String,
        /// Whether trying again can help (throttling, 5xx, timeouts, I/O).
        retryable: bool,
    },
}

impl std::str::FromStr for QueueAddress {
    type Err = SqsError;

    /// `sqs://https://HOST/ACCOUNT/NAME`, `sqs://http://HOST:PORT/ACCOUNT/NAME` (a local
    /// server), or `sqs://HOST/ACCOUNT/NAME` (https).
    fn from_str(given: &str) -> Result<Self, SqsError> {
        let bad = |why| SqsError::BadAddress {
            given: given.to_owned(),
            why,
        };
        let rest = given
            .strip_prefix("sqs://")
            .ok_or_else(|| bad("it does not start with sqs://"))?;
        let url = if rest.starts_with("https://") || rest.starts_with("http://") {
            rest.to_owned()
        } else {
            format!("https://{rest}")
        };
        if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad("it has spaces or control characters"));
        }
        let (scheme, after) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let (host, path) = after
            .split_once('/')
            .ok_or_else(|| bad("it names no account and queue"))?;
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        let [account, name] = parts.as_slice() else {
            return Err(bad("the path must be /ACCOUNT/QUEUE_NAME"));
        };
        if account.is_empty() || name.is_empty() || name.len() > 80 {
            return Err(bad("the account or the queue name is empty or too long"));
        }
        let hostname = host.split(':').next().unwrap_or(host);
        let labels: Vec<&str> = hostname.split('.').collect();
        let region = match labels.as_slice() {
            ["sqs", region, "amazonaws", ..] => Some((*region).to_owned()),
            [region, "queue", "amazonaws", ..] => Some((*region).to_owned()),
            _ => None,
        };
        let in_aws =
            hostname.ends_with(".amazonaws.com") || hostname.ends_with(".amazonaws.com.cn");
        Ok(QueueAddress {
            url: url.trim_end_matches('/').to_owned(),
            region,
            local_endpoint: (!in_aws).then(|| format!("{scheme}://{host}")),
        })
    }
}

/// One object a notification names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// The bucket.
    pub bucket: String,
    /// The key, decoded.
    pub key: String,
    /// The bucket's region, when the notification says it.
    pub region: Option<String>,
    /// The object's size, when the notification says it.
    pub size: Option<u64>,
    /// When the object was created, by the notification (orders objects whose names carry no
    /// delivery time, such as Security Lake's).
    pub created: Option<crate::series::Minute>,
}

/// What a message announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Objects created (possibly none that are logs).
    Created(Vec<ObjectRef>),
    /// A test event, or an event with nothing to read (a removal, a restore...).
    NothingToRead,
}

/// Why a message body is not a notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotNotification(pub String);

/// Reads a message body: an S3 notification (direct or inside an SNS envelope), an EventBridge
/// S3 event, or CloudTrail's delivery notification.
pub fn parse_notification(body: &str) -> Result<Notice, NotNotification> {
    if body.len() > MAX_BODY_BYTES {
        return Err(NotNotification(format!(
            "the body is {} bytes, over {MAX_BODY_BYTES}",
            body.len()
        )));
    }
    let value: Value = serde_json::from_str(body)
        .map_err(|e| NotNotification(format!("the body is not JSON: {e}")))?;
    notice_of(&value, true)
}

fn notice_of(value: &Value, may_unwrap: bool) -> Result<Notice, NotNotification> {
    let no = |why: &str| Err(NotNotification(why.to_owned()));
    let Some(object) = value.as_object() else {
        return no("the body is not a JSON object");
    };
    // SNS envelope (raw message delivery off): the notification is the `Message` string.
    if may_unwrap && object.get("Type").and_then(Value::as_str) == Some("Notification") {
        let Some(message) = object.get("Message").and_then(Value::as_str) else {
            return no("an SNS notification without a Message string");
        };
        let inner: Value = serde_json::from_str(message).map_err(|e| {
            NotNotification(format!("the SNS notification's Message is not JSON: {e}"))
        })?;
        return notice_of(&inner, false);
    }
    if object.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Notice::NothingToRead);
    }
    if let Some(records) = object.get("Records") {
        let Some(records) = records.as_array().filter(|r| !r.is_empty()) else {
            return no("`Records` is not a non-empty array");
        };
        let mut created = Vec::new();
        for (i, record) in records.iter().enumerate() {
            let field = |path: &[&str]| -> Option<&Value> {
                path.iter().try_fold(record, |v, name| v.get(*name))
            };
            if field(&["eventSource"]).and_then(Value::as_str) != Some("aws:s3") {
                return no(&format!(
                    "record {i} is not an S3 event (eventSource is not aws:s3)"
                ));
            }
            let Some(event) = field(&["eventName"]).and_then(Value::as_str) else {
                return no(&format!("record {i} has no eventName"));
            };
            if !event.starts_with("ObjectCreated:") {
                continue;
            }
            let bucket = field(&["s3", "bucket", "name"]).and_then(Value::as_str);
            let key = field(&["s3", "object", "key"]).and_then(Value::as_str);
            let (Some(bucket), Some(key)) = (bucket, key) else {
                return no(&format!(
                    "record {i} names no s3.bucket.name and s3.object.key"
                ));
            };
            let key = url_decoded(key).ok_or_else(|| {
                NotNotification(format!("record {i}'s key is not URL-encoded UTF-8"))
            })?;
            created.push(ObjectRef {
                bucket: bucket.to_owned(),
                key,
                region: field(&["awsRegion"])
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                size: field(&["s3", "object", "size"]).and_then(Value::as_u64),
                created: field(&["eventTime"])
                    .and_then(Value::as_str)
                    .and_then(notice_minute),
            });
        }
        return Ok(if created.is_empty() {
            Notice::NothingToRead
        } else {
            Notice::Created(created)
        });
    }
    if let Some(detail_type) = object.get("detail-type").and_then(Value::as_str) {
        if object.get("source").and_then(Value::as_str) != Some("aws.s3") {
            return no("an EventBridge event whose source is not aws.s3");
        }
        if detail_type != "Object Created" {
            return Ok(Notice::NothingToRead);
        }
        let detail = object.get("detail");
        let get = |path: &[&str]| -> Option<&str> {
            path.iter()
                .try_fold(detail?, |v, name| v.get(*name))?
                .as_str()
        };
        let (Some(bucket), Some(key)) = (get(&["bucket", "name"]), get(&["object", "key"])) else {
            return no("an Object Created event without detail.bucket.name and detail.object.key");
        };
        return Ok(Notice::Created(vec![ObjectRef {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            region: object
                .get("region")
                .and_then(Value::as_str)
                .map(str::to_owned),
            size: detail
                .and_then(|d| d.get("object"))
                .and_then(|o| o.get("size"))
                .and_then(Value::as_u64),
            created: object
                .get("time")
                .and_then(Value::as_str)
                .and_then(notice_minute),
        }]));
    }
    if let (Some(bucket), Some(keys)) = (
        object.get("s3Bucket").and_then(Value::as_str),
        object.get("s3ObjectKey").and_then(Value::as_array),
    ) {
        let mut created = Vec::new();
        for key in keys {
            let Some(key) = key.as_str() else {
                return no("s3ObjectKey holds a value that is not a string");
            };
            created.push(ObjectRef {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                region: None,
                size: None,
                created: None,
            });
        }
        return Ok(Notice::Created(created));
    }
    no("neither an S3 event notification, an EventBridge S3 event nor a CloudTrail notification")
}

/// A notification's time (`2024-03-04T00:05:00.123Z`) as a minute.
fn notice_minute(text: &str) -> Option<crate::series::Minute> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp().div_euclid(60))
}

/// An S3 notification's key: `+` for spaces and `%XX` escapes, as S3 writes them.
fn url_decoded(key: &str) -> Option<String> {
    let plus = key.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8()
        .ok()
        .map(|k| k.into_owned())
}

/// What to do with an object a notification names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A log file to read.
    Log,
    /// A digest or an Insights file: acknowledged, counted as not activity.
    NotActivity,
    /// Something else (a folder marker, a file of another kind): acknowledged, counted ignored.
    Other,
}

/// As a folder walk sorts files ([`crate::ingest::discover`]): digests and Insights are not
/// activity; names with a log suffix are read, and so are names without a dot (Firehose's
/// objects of CloudWatch Logs payloads, which a walk recognises by content).
fn kind_of(key: &str) -> Kind {
    if under_not_activity_dir(Path::new(key)) {
        return Kind::NotActivity;
    }
    let name = key.rsplit('/').next().unwrap_or(key);
    if name.is_empty() {
        return Kind::Other;
    }
    if !name.contains('.') || has_log_suffix(OsStr::new(name)) {
        Kind::Log
    } else {
        Kind::Other
    }
}

/// A message waiting for its objects' commit.
#[derive(Debug)]
struct Awaiting {
    /// The newest receipt handle (SQS deletes with the latest one only).
    receipt: String,
    /// Ingest keys of its objects not yet committed.
    keys: Vec<String>,
}

/// An object to fetch, with the messages that name it.
#[derive(Debug)]
struct Wanted {
    object: ObjectRef,
    ingest_key: String,
    delivery_minute: Option<crate::series::Minute>,
}

/// `watch sqs://QUEUE_URL`.
pub struct FollowSqs {
    client: aws_sdk_sqs::Client,
    queue: QueueAddress,
    /// The user's settings, the endpoint completed from the queue URL (S3 is reached there too).
    options: FollowOptions,
    store: Store,
    stop: Stop,
    runtime: tokio::runtime::Handle,
    /// One S3 reader per (bucket, region).
    buckets: HashMap<BucketKey, S3Source>,
    /// Messages (by id) waiting for their objects' commit.
    awaiting: HashMap<String, Awaiting>,
    /// Objects handed out in this process and not seen committed yet (not read twice).
    handed: HashSet<String>,
    /// What the last round hands out.
    pending: VecDeque<Pull>,
    backoff: Backoff,
    ending: Ending,
    /// A round handed out objects: `CaughtUp` asks for a commit (so their messages can go).
    received_once: bool,
}

impl FollowSqs {
    /// Makes the clients (no request is sent before the first receive).
    pub fn open(
        address: &str,
        store: Store,
        mut options: FollowOptions,
        stop: Stop,
        runtime: tokio::runtime::Handle,
    ) -> Result<FollowSqs, SourceError> {
        let queue: QueueAddress = address.parse()?;
        if options.s3.endpoint_url.is_none() {
            options.s3.endpoint_url = queue.local_endpoint.clone();
        }
        // The queue is in the region its URL names; each bucket in the one its notification does.
        let region = options.s3.region.clone().or_else(|| queue.region.clone());
        let client = runtime.block_on(sqs_client(
            options.s3.endpoint_url.as_deref(),
            region.as_deref(),
        ))?;
        tracing::info!("following the S3 notifications of {}", queue.url);
        Ok(FollowSqs {
            client,
            queue,
            options,
            store,
            stop,
            runtime,
            buckets: HashMap::new(),
            awaiting: HashMap::new(),
            handed: HashSet::new(),
            pending: VecDeque::new(),
            backoff: Backoff::default(),
            ending: Ending::default(),
            received_once: false,
        })
    }

    /// Deletes the messages whose objects are all committed now.
    fn acknowledge(&mut self) -> Result<(), SourceError> {
        let mut done = Vec::new();
        for (id, waiting) in &mut self.awaiting {
            let mut still = Vec::new();
            for key in waiting.keys.drain(..) {
                if self.store.is_ingested(&key)? {
                    self.handed.remove(&key);
                } else {
                    still.push(key);
                }
            }
            waiting.keys = still;
            if waiting.keys.is_empty() {
                done.push((id.clone(), waiting.receipt.clone()));
            }
        }
        for (id, _) in &done {
            self.awaiting.remove(id);
        }
        self.delete(done);
        Ok(())
    }

    /// Deletes messages (id, receipt handle), ten per request. A failure is logged: the message
    /// comes back after its visibility timeout and is acknowledged then without a read.
    fn delete(&self, messages: Vec<(String, String)>) {
        for chunk in messages.chunks(10) {
            let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, (_, receipt))| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .build()
                        .ok()
                })
                .collect();
            let request = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue.url)
                .set_entries(Some(entries))
                .send();
            match self.runtime.block_on(request) {
                Ok(out) => {
                    for failed in out.failed() {
                        let id = failed
                            .id()
                            .parse::<usize>()
                            .ok()
                            .and_then(|i| chunk.get(i))
                            .map_or("?", |(id, _)| id.as_str());
                        tracing::warn!(
                            "deleting message {id} from {}: {} {}; it comes back and is acknowledged then",
                            self.queue.url,
                            failed.code(),
                            shown(failed.message().unwrap_or_default())
                        );
                    }
                }
                Err(e) => tracing::warn!(
                    "deleting {} messages from {}: {}; they come back and are acknowledged then",
                    chunk.len(),
                    self.queue.url,
                    shown(&DisplayErrorContext(&e).to_string())
                ),
            }
        }
    }

    /// One round: receives up to [`ROUND_MESSAGES`] messages, sorts out what they name, fetches
    /// the objects to read. Returns whether any message came.
    fn round(&mut self) -> Result<bool, SourceError> {
        let wait = i32::try_from(self.options.following.poll_every.as_secs())
            .unwrap_or(MAX_WAIT_SECONDS)
            .clamp(1, MAX_WAIT_SECONDS);
        let mut messages = Vec::new();
        while messages.len() < ROUND_MESSAGES {
            // The first receive long-polls; the next ones take what is already there.
            let this_wait = if messages.is_empty() { wait } else { 0 };
            let request = self
                .client
                .receive_message()
                .queue_url(&self.queue.url)
                .max_number_of_messages(10)
                .wait_time_seconds(this_wait)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .send();
            let stop = self.stop.clone();
            let received = self.runtime.block_on(async move {
                tokio::select! {
                    _ = stop.stopped() => None,
                    r = request => Some(r),
                }
            });
            let Some(received) = received else {
                return Ok(!messages.is_empty());
            };
            match received {
                Ok(out) => {
                    self.backoff.reset();
                    self.received_once = true;
                    let got = out.messages.unwrap_or_default();
                    let n = got.len();
                    messages.extend(got);
                    if n == 0 {
                        break;
                    }
                }
                Err(e) => {
                    let retryable = is_retryable(&e);
                    let detail = shown(&DisplayErrorContext(&e).to_string());
                    if !self.received_once && !retryable {
                        return Err(SqsError::Request {
                            action: "receiving from",
                            queue: self.queue.url.clone(),
                            detail,
                            retryable,
                        }
                        .into());
                    }
                    let wait = self.backoff.next_wait();
                    tracing::error!(
                        "receiving from {}: {detail}; retrying in {}s",
                        self.queue.url,
                        wait.as_secs()
                    );
                    self.pending.push_back(Pull::Trouble(Trouble::Source));
                    if self.stop.wait(wait) {
                        return Ok(false);
                    }
                    break;
                }
            }
        }
        let any = !messages.is_empty();
        let mut wanted: Vec<Wanted> = Vec::new();
        let mut wanted_keys: HashSet<String> = HashSet::new();
        let mut acknowledged = Vec::new();
        for message in messages {
            let (Some(id), Some(receipt)) = (message.message_id, message.receipt_handle) else {
                continue;
            };
            let body = message.body.unwrap_or_default();
            let notice = match parse_notification(&body) {
                Ok(notice) => notice,
                Err(why) => {
                    let received = message
                        .attributes
                        .as_ref()
                        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                        .map_or_else(|| "?".to_owned(), String::clone);
                    tracing::error!(
                        "message {} of {} is not an S3 notification ({why}); left in the queue for its redrive policy (received {received} times): {}",
                        shown(&id),
                        self.queue.url,
                        shown(&body)
                    );
                    self.pending.push_back(Pull::Trouble(Trouble::Source));
                    continue;
                }
            };
            let objects = match notice {
                Notice::NothingToRead => Vec::new(),
                Notice::Created(objects) => objects,
            };
            let mut keys = Vec::new();
            for object in objects {
                match kind_of(&object.key) {
                    Kind::NotActivity => {
                        self.ending.not_activity += 1;
                        continue;
                    }
                    Kind::Other => {
                        self.ending.ignored += 1;
                        continue;
                    }
                    Kind::Log => {}
                }
                let ingest_key = super::s3::object_ingest_key(&object.bucket, &object.key);
                if self.store.is_ingested(&ingest_key)? {
                    continue;
                }
                keys.push(ingest_key.clone());
                if self.handed.contains(&ingest_key) || !wanted_keys.insert(ingest_key.clone()) {
                    continue;
                }
                let name = object.key.rsplit('/').next().unwrap_or(&object.key);
                wanted.push(Wanted {
                    delivery_minute: delivery_minute_of(name).or(object.created),
                    object,
                    ingest_key,
                });
            }
            if keys.is_empty() {
                self.awaiting.remove(&id);
                acknowledged.push((id, receipt));
            } else {
                self.awaiting.insert(id, Awaiting { receipt, keys });
            }
        }
        self.delete(acknowledged);
        wanted.sort_by(|a, b| {
            (a.delivery_minute, &a.ingest_key).cmp(&(b.delivery_minute, &b.ingest_key))
        });
        self.fetch(wanted);
        Ok(any)
    }

    /// Fetches the objects in order, a few at once; each becomes an input. An object that cannot
    /// be fetched leaves its messages in the queue (they come back after their visibility
    /// timeout and it is tried again).
    fn fetch(&mut self, wanted: Vec<Wanted>) {
        let mut inputs = Vec::new();
        let mut queue: VecDeque<Wanted> = wanted.into();
        while !queue.is_empty() {
            // As many as CONCURRENT_FETCHES and FETCH_BYTES allow (at least one); an object of
            // unknown size is fetched alone.
            let mut batch: Vec<Wanted> = Vec::new();
            let mut announced = 0u64;
            while batch.len() < CONCURRENT_FETCHES {
                let Some(next) = queue.front() else { break };
                let size = next.object.size.unwrap_or(FETCH_BYTES);
                if !batch.is_empty() && announced.saturating_add(size) > FETCH_BYTES {
                    break;
                }
                announced = announced.saturating_add(size);
                batch.extend(queue.pop_front());
            }
            let keys: Vec<BucketKey> = batch.iter().map(|w| self.bucket_key(&w.object)).collect();
            for (w, key) in batch.iter().zip(&keys) {
                if self.buckets.contains_key(key) {
                    continue;
                }
                match self.connect(&w.object, key) {
                    Ok(source) => {
                        self.buckets.insert(key.clone(), source);
                    }
                    Err(e) => tracing::error!(
                        "s3://{}/{}: {e}; its message is left in the queue",
                        shown(&w.object.bucket),
                        shown(&w.object.key)
                    ),
                }
            }
            let (buckets, stop) = (&self.buckets, &self.stop);
            let fetched =
                self.runtime
                    .block_on(futures_util::future::join_all(batch.iter().zip(&keys).map(
                        |(w, key)| async move {
                            let source = buckets.get(key)?;
                            fetch_with_retry(
                                source,
                                &w.object.key,
                                stop,
                                FETCH_ATTEMPTS,
                                "its message is left in the queue",
                            )
                            .await
                        },
                    )));
            let mut bytes = 0u64;
            for ((w, key), content) in batch.into_iter().zip(&keys).zip(fetched) {
                let (Some(source), Some(content)) = (self.buckets.get(key), content) else {
                    // Its messages are not deleted: they come back and it is fetched again.
                    self.awaiting.retain(|_, a| !a.keys.contains(&w.ingest_key));
                    self.pending.push_back(Pull::Trouble(Trouble::Read));
                    continue;
                };
                bytes += content.len() as u64;
                self.handed.insert(w.ingest_key.clone());
                inputs.push(Input::Bytes(Loaded {
                    display: source.display(&w.object.key),
                    ingest_key: Some(w.ingest_key),
                    delivery_minute: w.delivery_minute,
                    content,
                    first_line: 1,
                }));
            }
            if bytes >= FETCH_BYTES || self.stop.is_set() {
                // Hand out what is in memory before fetching more.
                self.pending
                    .push_back(Pull::Inputs(std::mem::take(&mut inputs)));
            }
        }
        if !inputs.is_empty() {
            self.pending.push_back(Pull::Inputs(inputs));
        }
    }

    /// The reader an object is fetched with: its bucket, in its region.
    fn bucket_key(&self, object: &ObjectRef) -> BucketKey {
        let region = self
            .options
            .s3
            .region
            .clone()
            .or_else(|| object.region.clone());
        (object.bucket.clone(), region)
    }

    /// A reader of an object's bucket.
    fn connect(&self, object: &ObjectRef, key: &BucketKey) -> Result<S3Source, S3Error> {
        let location: S3Location = format!("s3://{}", object.bucket).parse()?;
        let options = S3Options {
            region: key.1.clone(),
            ..self.options.s3.clone()
        };
        self.runtime.block_on(S3Source::connect(location, options))
    }
}

/// A bucket and the region it is read in.
type BucketKey = (String, Option<String>);

impl Source for FollowSqs {
    fn next(&mut self) -> Result<Pull, SourceError> {
        let stopped = || {
            Pull::End(Ending {
                stopped: true,
                ..Ending::default()
            })
        };
        loop {
            if let Some(pull) = self.pending.pop_front() {
                return Ok(pull);
            }
            if self.stop.is_set() {
                return Ok(stopped());
            }
            self.acknowledge()?;
            let handed_before = self.handed.len();
            let any = self.round()?;
            if self.stop.is_set() {
                // What was fetched and not absorbed is not recorded; its messages come back.
                return Ok(stopped());
            }
            if self.handed.len() > handed_before {
                // Commit now, so that the messages of what was handed out can be deleted.
                self.pending.push_back(Pull::CaughtUp { must_commit: true });
                continue;
            }
            if !any && self.pending.is_empty() {
                if self.options.following.once {
                    return Ok(self.finish_once());
                }
                return Ok(Pull::CaughtUp { must_commit: false });
            }
        }
    }
}

impl FollowSqs {
    /// `--once`: waits for the commit of what was handed out, deletes its messages, and ends.
    fn finish_once(&mut self) -> Pull {
        let started = Instant::now();
        loop {
            if let Err(e) = self.acknowledge() {
                tracing::error!("{e}");
                break;
            }
            if self.awaiting.is_empty() || started.elapsed() > ONCE_COMMIT_WAIT {
                break;
            }
            if self.stop.wait(Duration::from_millis(50)) {
                break;
            }
        }
        if !self.awaiting.is_empty() {
            tracing::warn!(
                "{} messages wait for their objects' commit: they come back and are acknowledged by the next run",
                self.awaiting.len()
            );
        }
        Pull::End(std::mem::take(&mut self.ending))
    }
}

async fn sqs_client(
    endpoint_url: Option<&str>,
    region: Option<&str>,
) -> Result<aws_sdk_sqs::Client, SqsError> {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        // A long poll holds the request for up to 20 s.
        .operation_attempt_timeout(Duration::from_secs(40))
        .operation_timeout(Duration::from_secs(90))
        .build();
    let shared = sdk_config(endpoint_url, region, timeouts)
        .await
        .map_err(SqsError::Setup)?;
    if shared.region().is_none() {
        return Err(SqsError::Setup(
            "no AWS region: set AWS_REGION, give --region, or use a queue URL that names one"
                .into(),
        ));
    }
    let mut config = aws_sdk_sqs::config::Builder::from(&shared);
    if let Some(url) = endpoint_url {
        config = config.endpoint_url(url);
    }
    Ok(aws_sdk_sqs::Client::from_conf(config.build()))
}

fn is_retryable<E: ProvideErrorMetadata>(
    e: &aws_sdk_sqs::error::SdkError<E, HttpResponse>,
) -> bool {
    use aws_sdk_sqs::error::SdkError;
    match e {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) | SdkError::DispatchFailure(_) => {
            true
        }
        SdkError::ServiceError(_) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            status.is_some_and(|s| s >= 500 || s == 429)
                || e.code().is_some_and(|c| {
                    c.contains("Throttl") || c == "RequestThrottled" || c.contains("Unavailable")
                })
        }
        _ => false,
    }
}

type HttpResponse = aws_sdk_sqs::config::http::HttpResponse;

#[cfg(test)]
mod tests {
    use super::*;

    fn created(bucket: &str, key: &str, region: Option<&str>, size: Option<u64>) -> ObjectRef {
        ObjectRef {
            bucket: bucket.into(),
            key: key.into(),
            region: region.map(str::to_owned),
            size,
            created: None,
        }
    }

    #[test]
    fn queue_addresses() {
        let q: QueueAddress = "sqs://https://sqs.eu-west-1.amazonaws.com/123456789012/trail"
            .parse()
            .unwrap();
        assert_eq!(
            q.url,
            "https://sqs.eu-west-1.amazonaws.com/123456789012/trail"
        );
        assert_eq!(q.region.as_deref(), Some("eu-west-1"));
        assert_eq!(q.local_endpoint, None);
        let q: QueueAddress = "sqs://sqs.us-east-2.amazonaws.com/123456789012/trail/"
            .parse()
            .unwrap();
        assert_eq!(
            q.url,
            "https://sqs.us-east-2.amazonaws.com/123456789012/trail"
        );
        assert_eq!(q.region.as_deref(), Some("us-east-2"));
        let q: QueueAddress = "sqs://http://127.0.0.1:5000/123456789012/q"
            .parse()
            .unwrap();
        assert_eq!(q.local_endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(q.region, None);
        for bad in [
            "s3://bucket",
            "sqs://",
            "sqs://host",
            "sqs://host/only-account",
            "sqs://host/a/b/c",
            "sqs://host/a/q name",
        ] {
            assert!(bad.parse::<QueueAddress>().is_err(), "{bad}");
        }
    }

    #[test]
    fn s3_notifications_name_their_decoded_keys() {
        // As S3 writes it (keys form-URL-encoded), one record created and one removed.
        let body = r#"{"Records":[
          {"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventName":"ObjectCreated:Put",
           "s3":{"bucket":{"name":"trail-bucket"},"object":{"key":"AWSLogs/123456789012/CloudTrail/us-east-1/2024/03/04/a+b%2Bc%3A.json.gz","size":10}}},
          {"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventName":"ObjectRemoved:Delete",
           "s3":{"bucket":{"name":"trail-bucket"},"object":{"key":"gone.json.gz"}}}]}"#;
        assert_eq!(
            parse_notification(body).unwrap(),
            Notice::Created(vec![created(
                "trail-bucket",
                "AWSLogs/123456789012/CloudTrail/us-east-1/2024/03/04/a b+c:.json.gz",
                Some("us-east-1"),
                Some(10)
            )])
        );
        // The same inside an SNS envelope.
        let envelope =
            serde_json::json!({"Type": "Notification", "MessageId": "m", "Message": body});
        assert_eq!(
            parse_notification(&envelope.to_string()).unwrap(),
            parse_notification(body).unwrap()
        );
        let test_event = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2024-03-04T00:00:00.000Z","Bucket":"trail-bucket"}"#;
        assert_eq!(
            parse_notification(test_event).unwrap(),
            Notice::NothingToRead
        );
    }

    #[test]
    fn eventbridge_and_cloudtrail_notifications() {
        let body = r#"{"version":"0","id":"x","detail-type":"Object Created","source":"aws.s3","account":"123456789012",
          "time":"2024-03-04T00:05:00Z","region":"eu-west-1","resources":["arn:aws:s3:::b"],
          "detail":{"version":"0","bucket":{"name":"b"},"object":{"key":"AWSLogs/1/CloudTrail/eu-west-1/2024/03/04/x:y.json.gz","size":5},"reason":"PutObject"}}"#;
        assert_eq!(
            parse_notification(body).unwrap(),
            Notice::Created(vec![ObjectRef {
                // 2024-03-04T00:05Z: 19,786 days after 1970-01-01, and 5 minutes.
                created: Some(19_786 * 1440 + 5),
                ..created(
                    "b",
                    "AWSLogs/1/CloudTrail/eu-west-1/2024/03/04/x:y.json.gz",
                    Some("eu-west-1"),
                    Some(5)
                )
            }])
        );
        let deleted = body.replace("Object Created", "Object Deleted");
        assert_eq!(parse_notification(&deleted).unwrap(), Notice::NothingToRead);
        let cloudtrail = r#"{"s3Bucket":"b","s3ObjectKey":["AWSLogs/1/CloudTrail/us-east-1/2024/03/04/f.json.gz"]}"#;
        assert_eq!(
            parse_notification(cloudtrail).unwrap(),
            Notice::Created(vec![created(
                "b",
                "AWSLogs/1/CloudTrail/us-east-1/2024/03/04/f.json.gz",
                None,
                None
            )])
        );
    }

    #[test]
    fn what_is_not_a_notification_says_why() {
        for (body, why) in [
            ("not json", "not JSON"),
            ("[1,2]", "not a JSON object"),
            (r#"{"Records":[]}"#, "non-empty array"),
            (
                r#"{"Records":[{"eventSource":"aws:sqs"}]}"#,
                "not an S3 event",
            ),
            (
                r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{}}]}"#,
                "names no s3.bucket.name",
            ),
            (
                r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"%FF"}}}]}"#,
                "not URL-encoded UTF-8",
            ),
            (
                r#"{"detail-type":"Object Created","source":"aws.ec2"}"#,
                "not aws.s3",
            ),
            (
                r#"{"Type":"Notification","Message":"{oops"}"#,
                "Message is not JSON",
            ),
            (r#"{"hello":"world"}"#, "neither"),
        ] {
            let err = parse_notification(body).unwrap_err();
            assert!(err.0.contains(why), "{body}: {err}");
        }
        let huge = format!("{{\"x\":\"{}\"}}", "a".repeat(MAX_BODY_BYTES));
        assert!(parse_notification(&huge).unwrap_err().0.contains("bytes"));
    }

    #[test]
    fn which_objects_are_read() {
        let day = "AWSLogs/123456789012/CloudTrail/us-east-1/2024/03/04/";
        assert_eq!(
            kind_of(&format!(
                "{day}x_CloudTrail_us-east-1_20240304T0005Z_a.json.gz"
            )),
            Kind::Log
        );
        assert_eq!(
            kind_of("firehose/2024/03/04/00/stream-1-2024-03-04-00-00-00-uuid"),
            Kind::Log
        );
        assert_eq!(kind_of("lake/region=us-east-1/x.gz.parquet"), Kind::Log);
        assert_eq!(
            kind_of("AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2024/03/04/d.json.gz"),
            Kind::NotActivity
        );
        assert_eq!(
            kind_of("AWSLogs/123456789012/CloudTrail-Insight/us-east-1/2024/03/04/i.json.gz"),
            Kind::NotActivity
        );
        assert_eq!(kind_of("README.md"), Kind::Other);
        assert_eq!(kind_of("folder/"), Kind::Other);
    }
}
