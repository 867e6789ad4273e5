//! The S3 source of `trailsight watch`: lists a trail's bucket for log files it has not returned
//! before (per account, region and day, starting after what it already saw) and fetches them,
//! through the S3 API with the standard AWS credential chain and region settings. A Security
//! Lake source folder (`s3://LAKE_BUCKET/aws/CLOUD_TRAIL_MGMT/2.0/`) is followed the same way,
//! per `region=`, `accountId=` and `eventDay=` folder.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use chrono::NaiveDate;
use tokio::task::JoinSet;

use super::{
    since_day, Backoff, Ending, Following, Input, Loaded, Pull, Source, SourceError, Stop, Trouble,
};
use crate::ingest::discover::delivery_minute_of;
use crate::series::Minute;
use crate::store::Store;

/// Connecting may take this long before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One attempt of one request (until the response starts), then the SDK retries.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);
/// One request, all its attempts and backoff included: a dead endpoint fails a poll within this.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(45);
/// Attempts per request in the SDK's standard retry mode (throttling, 5xx, timeouts, I/O).
const MAX_ATTEMPTS: u32 = 3;
/// An object's body may stall this long between two chunks before the read is abandoned.
const BODY_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Listings run at most this many at once (an organization trail has many account/region folders).
const CONCURRENT_LISTINGS: usize = 8;
/// A listing longer than this many pages is taken as a misbehaving server, not a trail.
const MAX_PAGES: u32 = 100_000;
/// Accounts and regions are listed again this often by default (new ones show up within it).
const DEFAULT_DISCOVERY_INTERVAL: Duration = Duration::from_secs(300);
/// Files of one folder can appear out of name order (two deliveries in the same minute have random
/// suffixes; an upload can finish after a later one): each listing starts this many minutes before
/// the newest delivery seen in the folder and drops the keys it already returned.
const LOOKBACK_MINUTES: Minute = 15;
/// Longest text taken from a server's error message.
const MAX_MESSAGE_CHARS: usize = 400;

/// `s3://bucket/prefix`: where a trail delivers (its files are under `{prefix}AWSLogs/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket's name.
    pub bucket: String,
    /// The trail's S3 key prefix: empty, or ending with `/`.
    pub prefix: String,
}

impl FromStr for S3Location {
    type Err = S3Error;

    /// Parses `s3://bucket`, `s3://bucket/prefix` or `s3://bucket/prefix/AWSLogs/` (the trailing
    /// `AWSLogs/` names the same trail root and is dropped).
    fn from_str(url: &str) -> Result<Self, S3Error> {
        let bad = |reason: &'static str| S3Error::BadLocation {
            url: url.to_owned(),
            reason,
        };
        let rest = url
            .get(..5)
            .filter(|scheme| scheme.eq_ignore_ascii_case("s3://"))
            .and_then(|_| url.get(5..))
            .ok_or_else(|| bad("it does not start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("the bucket name is empty"));
        }
        // Legacy bucket names allow capitals and underscores, and up to 255 characters.
        if bucket.len() > 255
            || !bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return Err(bad("the bucket name has characters S3 does not allow"));
        }
        if prefix.chars().any(char::is_control) {
            return Err(bad("the prefix has control characters"));
        }
        let mut prefix = prefix.to_owned();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        if prefix == "AWSLogs/" {
            prefix.clear();
        } else if let Some(root) = prefix.strip_suffix("/AWSLogs/") {
            prefix = format!("{root}/");
        }
        if prefix.starts_with("AWSLogs/") || prefix.contains("/AWSLogs/") {
            return Err(bad(
                "it points inside AWSLogs/: give the trail's root (the folder that holds AWSLogs/)",
            ));
        }
        Ok(S3Location {
            bucket: bucket.to_owned(),
            prefix,
        })
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, shown(&self.prefix))
    }
}

/// How to reach the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Options {
    /// Endpoint of an S3-compatible store (`http://` or `https://`); path-style addressing is used
    /// when it is set. `None`: AWS's own endpoints (or `AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
    /// Region to sign for; `None`: the standard chain (`AWS_REGION`, the profile, IMDS...).
    pub region: Option<String>,
    /// Objects bigger than this are refused by [`S3Source::fetch`] without being read.
    pub max_object_bytes: u64,
}

/// A log file found by [`S3Source::poll`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Object {
    /// The object's key (e.g. `AWSLogs/123456789012/CloudTrail/us-east-1/2023/07/10/...json.gz`).
    pub key: String,
    /// Size in bytes as listed.
    pub size: u64,
    /// Delivery time: from the file name's `_YYYYMMDDTHHmmZ_` part for CloudTrail's files, from
    /// the object's last-modified time for Security Lake's (named by UUID).
    pub delivery_minute: Option<Minute>,
    /// Security Lake's objects: the last-modified time in milliseconds, which orders them within
    /// a minute (None for CloudTrail's, ordered by name).
    pub modified_ms: Option<i64>,
}

/// What a failed request was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Action {
    /// Listing keys under a prefix.
    Listing,
    /// Reading an object.
    Reading,
}

impl fmt::Display for S3Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            S3Action::Listing => "listing",
            S3Action::Reading => "reading",
        })
    }
}

/// Errors of the S3 source. Each says what failed and where; [`S3Error::is_retryable`] tells
/// whether waiting and trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The `s3://` URL could not be used.
    #[error(
        "{url:?} is not a trail location: {reason} (expected s3://bucket or s3://bucket/prefix)"
    )]
    BadLocation {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The options or the environment cannot make a client (bad endpoint URL, no region).
    #[error("S3 client setup: {0}")]
    Setup(String),
    /// A request failed: refused by the service, or it could not reach it.
    #[error("{action} {target}: {detail}")]
    Request {
        /// What was being done.
        action: S3Action,
        /// `s3://bucket/prefix-or-key`.
        target: String,
        /// The service's error code (`AccessDenied`, `NoSuchBucket`, `SlowDown`...), if it answered.
        code: Option<String>,
        /// The HTTP status, if a response came back.
        status: Option<u16>,
        /// The code and message, or the transport failure.
        detail: String,
        /// Whether waiting and trying again can help.
        retryable: bool,
    },
    /// An object is over [`S3Options::max_object_bytes`]: not read.
    #[error("{target} is {size} bytes or more, over the limit of {limit} bytes: not read")]
    TooLarge {
        /// `s3://bucket/key`.
        target: String,
        /// Its size as announced by the service, or the bytes received before stopping.
        size: u64,
        /// The limit in force.
        limit: u64,
    },
    /// The service answered something that cannot be used (e.g. a listing that never ends).
    #[error("{action} {target}: unusable response: {detail}")]
    BadResponse {
        /// What was being done.
        action: S3Action,
        /// `s3://bucket/prefix-or-key`.
        target: String,
        /// What is wrong with the response.
        detail: String,
    },
    /// A listing task stopped before finishing (a bug, not the service).
    #[error("S3 listing task failed: {0}")]
    Task(String),
}

impl S3Error {
    /// Worth retrying with backoff: throttling, 5xx, timeouts, connection errors.
    pub fn is_retryable(&self) -> bool {
        match self {
            S3Error::Request { retryable, .. } => *retryable,
            // A truncated or garbled answer may come out right next time.
            S3Error::BadResponse { .. } => true,
            S3Error::BadLocation { .. }
            | S3Error::Setup(_)
            | S3Error::TooLarge { .. }
            | S3Error::Task(_) => false,
        }
    }

    /// The service's error code (`AccessDenied`, `NoSuchBucket`, `SlowDown`...), if it answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            S3Error::Request { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// Attempts at fetching one object (retryable errors only) before it is left for a restart.
const FETCH_ATTEMPTS: u32 = 4;
/// Objects fetched at once when several wait (a backlog, a first start on a bucket), so that
/// catching up is not one round trip per object...
const CONCURRENT_FETCHES: usize = 8;
/// ... and at most this many listed bytes at once (at least one object), bounding memory.
const FETCH_BYTES: u64 = 64 << 20;

/// How a followed bucket is polled (`watch s3://`), or reached through its notifications
/// (`watch sqs://`, which long-polls for `following.poll_every`).
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// Client settings.
    pub s3: S3Options,
    /// Listings, the earliest day (on a new store: the 8 days before today), once.
    pub following: Following,
}

/// `watch s3://bucket/prefix`: a trail's bucket, listed every `poll_every`, its new objects
/// fetched one at a time (the store's record of ingested keys drops repeats across restarts).
pub struct FollowS3 {
    source: S3Source,
    url: String,
    store: Store,
    options: FollowOptions,
    stop: Stop,
    runtime: tokio::runtime::Handle,
    /// Objects of the last listing not fetched yet, with their ingest keys.
    todo: VecDeque<(S3Object, String)>,
    /// What the last fetch hands out.
    fetched: VecDeque<Pull>,
    /// A listing's objects are being handed out (`CaughtUp` follows the last).
    in_round: bool,
    /// The last listing's objects were handed out: wait before the next.
    round_done: bool,
    listed_once: bool,
    backoff: Backoff,
    /// Wait this long before listing again (a listing failed).
    retry_in: Option<Duration>,
}

impl FollowS3 {
    /// Connects to the bucket of `url` (no request is sent before the first listing).
    pub fn open(
        url: &str,
        store: Store,
        options: FollowOptions,
        stop: Stop,
        runtime: tokio::runtime::Handle,
    ) -> Result<FollowS3, SourceError> {
        let location: S3Location = url.parse()?;
        let source = runtime.block_on(S3Source::connect(location, options.s3.clone()))?;
        tracing::info!("following {url}");
        Ok(FollowS3 {
            source,
            url: url.to_owned(),
            store,
            options,
            stop,
            runtime,
            todo: VecDeque::new(),
            fetched: VecDeque::new(),
            in_round: false,
            round_done: false,
            listed_once: false,
            backoff: Backoff::default(),
            retry_in: None,
        })
    }

    /// Lists the bucket; the objects not ingested yet join `todo`. A failure is returned as
    /// the trouble to report (the listing is tried again after a backoff), or as an error when
    /// the very first listing fails in a way retrying does not cure.
    fn list(&mut self) -> Result<Option<Trouble>, SourceError> {
        let newest = self.store.meta()?.totals.max_minute;
        let today = chrono::Utc::now().date_naive();
        let since =
            since_day(self.options.following.since, newest).unwrap_or(today - chrono::Days::new(8));
        match self.runtime.block_on(self.source.poll(since, today)) {
            Ok(objects) => {
                self.backoff.reset();
                self.listed_once = true;
                for o in objects {
                    let key = object_ingest_key(&self.source.location().bucket, &o.key);
                    if !self.store.is_ingested(&key)? {
                        self.todo.push_back((o, key));
                    }
                }
                if !self.todo.is_empty() {
                    tracing::debug!("{} new objects", self.todo.len());
                }
                self.in_round = true;
                Ok(None)
            }
            Err(e) => {
                if !self.listed_once && !e.is_retryable() {
                    return Err(SourceError::S3Context {
                        context: format!("listing {}", self.url),
                        source: e,
                    });
                }
                let wait = self.backoff.next_wait();
                tracing::error!(
                    "listing {} failed: {e}; retrying in {}s",
                    self.url,
                    wait.as_secs()
                );
                self.retry_in = Some(wait);
                Ok(Some(Trouble::Source))
            }
        }
    }

    /// The next objects of `todo`: as many as [`CONCURRENT_FETCHES`] and [`FETCH_BYTES`]
    /// allow (at least one), fetched at once, in order. Objects that could not be fetched are
    /// left for a restart (not recorded as ingested) and reported as troubles.
    fn fetch_next(&mut self) -> Vec<Pull> {
        let mut bytes = 0;
        let mut n = 0;
        while n < CONCURRENT_FETCHES {
            let Some((object, _)) = self.todo.get(n) else {
                break;
            };
            if n > 0 && bytes + object.size > FETCH_BYTES {
                break;
            }
            bytes += object.size;
            n += 1;
        }
        let batch: Vec<(S3Object, String)> = self.todo.drain(..n).collect();
        let (source, stop) = (&self.source, &self.stop);
        let fetched = self
            .runtime
            .block_on(futures_util::future::join_all(batch.iter().map(
                |(object, _)| {
                    fetch_with_retry(
                        source,
                        &object.key,
                        stop,
                        FETCH_ATTEMPTS,
                        "the object is left for the next start of watch (not recorded as ingested)",
                    )
                },
            )));
        let mut inputs = Vec::new();
        let mut pulls = Vec::new();
        for ((object, ingest_key), content) in batch.into_iter().zip(fetched) {
            match content {
                Some(content) => inputs.push(Input::Bytes(Loaded {
                    display: self.source.display(&object.key),
                    ingest_key: Some(ingest_key),
                    delivery_minute: object.delivery_minute,
                    content,
                    first_line: 1,
                })),
                None => pulls.push(Pull::Trouble(Trouble::Read)),
            }
        }
        if !inputs.is_empty() {
            pulls.insert(0, Pull::Inputs(inputs));
        }
        pulls
    }
}

/// Fetches one object, retrying what can be retried, up to `attempts` times; None when it is given
/// up (logged, saying where it is `left`) or a stop was asked.
pub(crate) async fn fetch_with_retry(
    source: &S3Source,
    key: &str,
    stop: &Stop,
    attempts: u32,
    left: &str,
) -> Option<Vec<u8>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match source.fetch(key).await {
            Ok(bytes) => return Some(bytes),
            Err(e) if e.is_retryable() && attempt < attempts => {
                let wait = Duration::from_secs(1 << attempt);
                tracing::warn!("{e}; retrying in {}s", wait.as_secs());
                tokio::select! {
                    _ = stop.stopped() => return None,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Err(e) => {
                tracing::error!("{e}; {left}");
                return None;
            }
        }
    }
}

impl Source for FollowS3 {
    fn next(&mut self) -> Result<Pull, SourceError> {
        let stopped = Pull::End(Ending {
            stopped: true,
            ..Ending::default()
        });
        loop {
            if self.stop.is_set() {
                return Ok(stopped);
            }
            if let Some(wait) = self.retry_in.take() {
                if self.stop.wait(wait) {
                    return Ok(stopped);
                }
            }
            if let Some(pull) = self.fetched.pop_front() {
                return Ok(pull);
            }
            if !self.todo.is_empty() {
                let pulls = self.fetch_next();
                if self.stop.is_set() {
                    // What was fetched is not absorbed: it is not recorded, and read next time.
                    return Ok(stopped);
                }
                self.fetched.extend(pulls);
                continue;
            }
            if self.in_round {
                self.in_round = false;
                self.round_done = true;
                return Ok(Pull::CaughtUp { must_commit: false });
            }
            if self.round_done {
                self.round_done = false;
                if self.options.following.once {
                    return Ok(Pull::End(Ending::default()));
                }
                if self.stop.wait(self.options.following.poll_every) {
                    return Ok(stopped);
                }
            }
            if let Some(trouble) = self.list()? {
                return Ok(Pull::Trouble(trouble));
            }
        }
    }
}

/// The identity an object is recorded under: its key from `AWSLogs/` on, as for a file of a
/// synced copy (so a store built by `score` over `aws s3 sync` output continues on the bucket).
pub(crate) fn object_ingest_key(bucket: &str, key: &str) -> String {
    match key.find("AWSLogs/") {
        Some(i) if i == 0 || key[..i].ends_with('/') => key[i..].to_owned(),
        _ => format!("s3://{bucket}/{key}"),
    }
}

/// A trail's bucket, followed by listing.
#[derive(Debug)]
pub struct S3Source {
    client: Client,
    location: S3Location,
    max_object_bytes: u64,
    discovery_interval: Duration,
    /// When accounts and regions were last listed.
    discovered_at: Option<Instant>,
    /// `{prefix}AWSLogs/[o-xxx/]{account}/CloudTrail/{region}/` of every region found.
    trails: Vec<TrailFolder>,
    /// Per day folder: where the next listing starts and what it already returned.
    cursors: BTreeMap<String, DayCursor>,
}

/// One account/region folder of the trail.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct TrailFolder {
    /// `{prefix}AWSLogs/[o-xxx/]{account}/CloudTrail/{region}/`, or for a Security Lake source
    /// `{prefix}region={region}/accountId={account}/`.
    prefix: String,
    /// Start of every log file name in it: `{account}_CloudTrail_{region}_` (empty in a lake).
    name_head: String,
    /// A Security Lake source's folder: day folders `eventDay=YYYYMMDD/` of Parquet files named
    /// by UUID (listed whole, ordered by last-modified time).
    lake: bool,
}

/// Listing state of one `.../CloudTrail/{region}/YYYY/MM/DD/` folder.
#[derive(Debug)]
struct DayCursor {
    day: NaiveDate,
    /// Newest delivery minute returned from this folder.
    newest: Option<Minute>,
    /// Keys returned with a delivery minute inside the lookback window, with that minute.
    recent: HashMap<String, Minute>,
}

impl S3Source {
    /// Builds a client with the standard AWS credential chain and region settings. Sends no
    /// request: a missing bucket or missing permissions show in the first [`S3Source::poll`].
    pub async fn connect(location: S3Location, options: S3Options) -> Result<S3Source, S3Error> {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT)
            .build();
        let shared = sdk_config(
            options.endpoint_url.as_deref(),
            options.region.as_deref(),
            timeouts,
        )
        .await
        .map_err(S3Error::Setup)?;
        if shared.region().is_none() {
            return Err(S3Error::Setup(
                "no AWS region: set AWS_REGION (or a region in the AWS profile, or give one)"
                    .into(),
            ));
        }
        let mut config = aws_sdk_s3::config::Builder::from(&shared);
        if let Some(url) = &options.endpoint_url {
            config = config.endpoint_url(url).force_path_style(true);
        }
        Ok(S3Source {
            client: Client::from_conf(config.build()),
            location,
            max_object_bytes: options.max_object_bytes,
            discovery_interval: DEFAULT_DISCOVERY_INTERVAL,
            discovered_at: None,
            trails: Vec::new(),
            cursors: BTreeMap::new(),
        })
    }

    /// How often accounts and regions are listed again (default 5 minutes): a new account or
    /// region is followed within this. `Duration::ZERO` lists them on every poll.
    pub fn set_discovery_interval(&mut self, interval: Duration) {
        self.discovery_interval = interval;
    }

    /// Log objects not returned before, in (delivery_minute, key) order, for UTC days
    /// `since..=today`, across every account/region under `{prefix}AWSLogs/` (also organization
    /// trails, `AWSLogs/o-xxxx/{account}/...`). Only keys named like CloudTrail's log files
    /// (`{account}_CloudTrail_{region}_YYYYMMDDTHHmmZ_*.json.gz` or `.json`) directly in a day
    /// folder count: digests, Insights and anything else are skipped.
    ///
    /// Each day folder is listed from a little before the newest delivery it returned (see
    /// [`LOOKBACK_MINUTES`]), so a poll lists only recent keys. A file that appears more than that
    /// many minutes of delivery time after a newer one in its folder is not seen. On error nothing
    /// is marked as returned: the next poll lists the same keys again. A new `S3Source` returns
    /// everything since `since` again: the caller's record of ingested keys drops repeats.
    ///
    /// A Security Lake source under the prefix (`region=*/accountId=*/eventDay=YYYYMMDD/`, Parquet
    /// files named by UUID) is listed too: its day folders that exist from `since` on, each whole
    /// at every poll, its objects ordered by last-modified time (whole seconds; ties by key).
    pub async fn poll(
        &mut self,
        since: NaiveDate,
        today: NaiveDate,
    ) -> Result<Vec<S3Object>, S3Error> {
        let due = self
            .discovered_at
            .is_none_or(|at| at.elapsed() >= self.discovery_interval);
        if due {
            self.trails = self.discover().await?;
            self.discovered_at = Some(Instant::now());
        }
        self.cursors.retain(|_, cursor| cursor.day >= since);

        let mut folders = Vec::new();
        for (day, prefix, trail) in self.day_folders(since, today).await? {
            let trail = &self.trails[trail];
            // A lake's folder is listed whole (its names carry no time); a trail's from a little
            // before the newest file it returned.
            let start_after = if trail.lake {
                None
            } else {
                self.cursors
                    .get(&prefix)
                    .and_then(|cursor| cursor.start_after(&prefix, &trail.name_head))
            };
            folders.push((
                day,
                prefix,
                trail.name_head.clone(),
                trail.lake,
                start_after,
            ));
        }
        let listings =
            self.list_all(folders.iter().map(|(_, prefix, _, lake, start_after)| {
                (prefix.clone(), start_after.clone(), *lake)
            }));
        let listings = listings.await?;

        let mut found = Vec::new();
        for ((day, prefix, name_head, lake, _), listing) in folders.into_iter().zip(listings) {
            let cursor = self.cursors.entry(prefix.clone()).or_insert(DayCursor {
                day,
                newest: None,
                recent: HashMap::new(),
            });
            for (key, size, modified_ms) in listing.objects {
                let (minute, modified_ms) = if lake {
                    match (lake_file(&key, &prefix), modified_ms) {
                        (true, Some(ms)) => (ms.div_euclid(60_000), Some(ms)),
                        _ => continue,
                    }
                } else {
                    match log_file_minute(&key, &prefix, &name_head) {
                        Some(minute) => (minute, None),
                        None => continue,
                    }
                };
                if cursor.recent.contains_key(&key) {
                    continue;
                }
                cursor.recent.insert(key.clone(), minute);
                cursor.newest = cursor.newest.max(Some(minute));
                found.push(S3Object {
                    key,
                    size,
                    delivery_minute: Some(minute),
                    modified_ms,
                });
            }
            if let Some(newest) = cursor.newest.filter(|_| !lake) {
                cursor
                    .recent
                    .retain(|_, minute| *minute >= newest - LOOKBACK_MINUTES);
            }
        }
        found.sort_by(|a, b| {
            (a.delivery_minute, a.modified_ms, &a.key).cmp(&(
                b.delivery_minute,
                b.modified_ms,
                &b.key,
            ))
        });
        Ok(found)
    }

    /// Every key under the location's prefix with its size (the aggregate tables of
    /// `score --aggregates s3://...`, which are not a trail's layout).
    pub async fn list_keys(&self) -> Result<Vec<(String, u64)>, S3Error> {
        let listing = list(
            self.client.clone(),
            self.location.bucket.clone(),
            self.location.prefix.clone(),
            None,
            false,
        )
        .await?;
        Ok(listing
            .objects
            .into_iter()
            .map(|(key, size, _)| (key, size))
            .collect())
    }

    /// The object's bytes as stored (gzip), refusing objects over `max_object_bytes` without
    /// reading them.
    pub async fn fetch(&self, key: &str) -> Result<Vec<u8>, S3Error> {
        let target = self.display(key);
        let limit = self.max_object_bytes;
        let response = self
            .client
            .get_object()
            .bucket(&self.location.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| request_error(S3Action::Reading, &target, e))?;
        let announced = response
            .content_length()
            .and_then(|n| u64::try_from(n).ok());
        if let Some(size) = announced.filter(|size| *size > limit) {
            // Dropping the response closes the connection before the body is read.
            return Err(S3Error::TooLarge {
                target,
                size,
                limit,
            });
        }
        let capacity = announced.and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
        let mut bytes = Vec::with_capacity(capacity);
        let mut body = response.body;
        loop {
            let chunk = tokio::time::timeout(BODY_STALL_TIMEOUT, body.try_next())
                .await
                .map_err(|_| S3Error::Request {
                    action: S3Action::Reading,
                    target: target.clone(),
                    code: None,
                    status: None,
                    detail: format!(
                        "the body stalled for {}s after {} bytes",
                        BODY_STALL_TIMEOUT.as_secs(),
                        bytes.len()
                    ),
                    retryable: true,
                })?
                .map_err(|e| S3Error::Request {
                    action: S3Action::Reading,
                    target: target.clone(),
                    code: None,
                    status: None,
                    detail: format!(
                        "the body broke off after {} bytes: {}",
                        bytes.len(),
                        clipped(&DisplayErrorContext(&e).to_string())
                    ),
                    retryable: true,
                })?;
            let Some(chunk) = chunk else { break };
            let total = bytes.len() as u64 + chunk.len() as u64;
            if total > limit {
                return Err(S3Error::TooLarge {
                    target,
                    size: total,
                    limit,
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    /// `s3://bucket/key` for messages (control characters escaped).
    pub fn display(&self, key: &str) -> String {
        format!("s3://{}/{}", self.location.bucket, shown(key))
    }

    /// The bucket and prefix followed.
    pub fn location(&self) -> &S3Location {
        &self.location
    }

    /// Lists accounts (also inside organizations) and their regions under `{prefix}AWSLogs/`.
    async fn discover(&self) -> Result<Vec<TrailFolder>, S3Error> {
        let root = format!("{}AWSLogs/", self.location.prefix);
        let top = self
            .list_all([(root.clone(), None, true)])
            .await?
            .pop()
            .unwrap_or_default();
        let mut accounts = Vec::new();
        let mut organizations = Vec::new();
        for folder in &top.folders {
            match child_name(&root, folder) {
                Some(name) if is_account_id(name) => {
                    accounts.push((folder.clone(), name.to_owned()))
                }
                Some(name) if is_organization_id(name) => organizations.push(folder.clone()),
                _ => {}
            }
        }
        let members = self
            .list_all(organizations.into_iter().map(|org| (org, None, true)))
            .await?;
        for listing in &members {
            for folder in &listing.folders {
                if let Some(name) = child_name(&listing.prefix, folder).filter(|n| is_account_id(n))
                {
                    accounts.push((folder.clone(), name.to_owned()));
                }
            }
        }
        let regions = self
            .list_all(
                accounts
                    .iter()
                    .map(|(folder, _)| (format!("{folder}CloudTrail/"), None, true)),
            )
            .await?;
        let mut trails = Vec::new();
        for ((_, account), listing) in accounts.iter().zip(&regions) {
            for folder in &listing.folders {
                if let Some(region) = child_name(&listing.prefix, folder).filter(|n| is_region(n)) {
                    trails.push(TrailFolder {
                        prefix: folder.clone(),
                        name_head: format!("{account}_CloudTrail_{region}_"),
                        lake: false,
                    });
                }
            }
        }
        trails.extend(self.discover_lake().await?);
        trails.sort();
        trails.dedup();
        Ok(trails)
    }

    /// A Security Lake source under the prefix (`s3://LAKE_BUCKET/aws/CLOUD_TRAIL_MGMT/2.0/`):
    /// its `region=*/accountId=*/` folders.
    async fn discover_lake(&self) -> Result<Vec<TrailFolder>, S3Error> {
        let root = self.location.prefix.clone();
        let top = self
            .list_all([(root.clone(), None, true)])
            .await?
            .pop()
            .unwrap_or_default();
        let regions: Vec<String> = top
            .folders
            .iter()
            .filter(|f| {
                child_name(&root, f)
                    .and_then(|n| n.strip_prefix("region="))
                    .is_some_and(is_region)
            })
            .cloned()
            .collect();
        let accounts = self
            .list_all(regions.into_iter().map(|r| (r, None, true)))
            .await?;
        let mut trails = Vec::new();
        for listing in &accounts {
            for folder in &listing.folders {
                let account =
                    child_name(&listing.prefix, folder).and_then(|n| n.strip_prefix("accountId="));
                if account.is_some_and(is_account_id) {
                    trails.push(TrailFolder {
                        prefix: folder.clone(),
                        name_head: String::new(),
                        lake: true,
                    });
                }
            }
        }
        Ok(trails)
    }

    /// The day folders to list, `since..=today`: named by date in a trail, found by listing in a
    /// lake (`eventDay=YYYYMMDD/`, those that exist).
    async fn day_folders(
        &self,
        since: NaiveDate,
        today: NaiveDate,
    ) -> Result<Vec<(NaiveDate, String, usize)>, S3Error> {
        let mut folders = Vec::new();
        for day in since.iter_days().take_while(|day| *day <= today) {
            for (i, trail) in self.trails.iter().enumerate().filter(|(_, t)| !t.lake) {
                folders.push((
                    day,
                    format!("{}{}/", trail.prefix, day.format("%Y/%m/%d")),
                    i,
                ));
            }
        }
        let lakes: Vec<(usize, &TrailFolder)> = self
            .trails
            .iter()
            .enumerate()
            .filter(|(_, t)| t.lake)
            .collect();
        let listings = self
            .list_all(lakes.iter().map(|(_, t)| (t.prefix.clone(), None, true)))
            .await?;
        for ((i, _), listing) in lakes.iter().zip(listings) {
            for folder in &listing.folders {
                let day = child_name(&listing.prefix, folder)
                    .and_then(|n| n.strip_prefix("eventDay="))
                    .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok());
                if let Some(day) = day.filter(|d| (since..=today).contains(d)) {
                    folders.push((day, folder.clone(), *i));
                }
            }
        }
        Ok(folders)
    }

    /// Runs the listings `(prefix, start_after, with_delimiter)`, a few at once, and returns them in
    /// the order given; the first error stops the others.
    async fn list_all(
        &self,
        requests: impl IntoIterator<Item = (String, Option<String>, bool)>,
    ) -> Result<Vec<Listing>, S3Error> {
        let tasks = requests
            .into_iter()
            .map(|(prefix, start_after, delimiter)| {
                list(
                    self.client.clone(),
                    self.location.bucket.clone(),
                    prefix,
                    start_after,
                    delimiter,
                )
            })
            .collect();
        run_bounded(tasks).await
    }
}

impl DayCursor {
    /// Where the folder's next listing starts: the name of a file delivered `LOOKBACK_MINUTES`
    /// before the newest one returned, without its unique part (names sort by delivery time).
    fn start_after(&self, prefix: &str, name_head: &str) -> Option<String> {
        let from = self.newest?.checked_sub(LOOKBACK_MINUTES)?;
        let time = chrono::DateTime::from_timestamp(from.checked_mul(60)?, 0)?;
        Some(format!(
            "{prefix}{name_head}{}Z",
            time.format("%Y%m%dT%H%M")
        ))
    }
}

/// One listing's result.
#[derive(Debug, Default)]
struct Listing {
    /// The prefix listed.
    prefix: String,
    /// Keys, sizes and last-modified times (milliseconds) under it (directly under it when
    /// listed with a delimiter).
    objects: Vec<(String, u64, Option<i64>)>,
    /// Sub-folders (common prefixes), when listed with a delimiter.
    folders: Vec<String>,
}

/// Lists every key under `prefix` after `start_after`, page by page.
async fn list(
    client: Client,
    bucket: String,
    prefix: String,
    start_after: Option<String>,
    delimiter: bool,
) -> Result<Listing, S3Error> {
    let target = format!("s3://{bucket}/{}", shown(&prefix));
    let mut listing = Listing {
        prefix,
        ..Listing::default()
    };
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut request = client
            .list_objects_v2()
            .bucket(&bucket)
            .prefix(&listing.prefix);
        if delimiter {
            request = request.delimiter("/");
        }
        if let Some(start_after) = &start_after {
            request = request.start_after(start_after);
        }
        if let Some(token) = &token {
            request = request.continuation_token(token);
        }
        let page = request
            .send()
            .await
            .map_err(|e| request_error(S3Action::Listing, &target, e))?;
        for object in page.contents() {
            // A server could answer keys outside the prefix: they are not ours to take.
            let Some(key) = object.key().filter(|k| k.starts_with(&listing.prefix)) else {
                continue;
            };
            let size = object
                .size()
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(0);
            let modified = object.last_modified().and_then(|t| t.to_millis().ok());
            listing.objects.push((key.to_owned(), size, modified));
        }
        for folder in page.common_prefixes() {
            if let Some(p) = folder.prefix().filter(|p| p.starts_with(&listing.prefix)) {
                listing.folders.push(p.to_owned());
            }
        }
        match (page.is_truncated(), page.next_continuation_token()) {
            (Some(true), Some(next)) if token.as_deref() == Some(next) => {
                return Err(S3Error::BadResponse {
                    action: S3Action::Listing,
                    target,
                    detail: "the same continuation token twice".into(),
                });
            }
            (Some(true), Some(next)) => token = Some(next.to_owned()),
            _ => return Ok(listing),
        }
    }
    Err(S3Error::BadResponse {
        action: S3Action::Listing,
        target,
        detail: format!("more than {MAX_PAGES} pages"),
    })
}

/// The standard chain's settings for a source's AWS client (S3 here, SQS in [`super::sqs`]):
/// rustls over ring, the SDK's standard retries ([`MAX_ATTEMPTS`]), `timeouts`, and `region`
/// when given. An endpoint URL that is not `http(s)://` and a host is refused; whether the chain
/// found a region is the caller's to check (its message says where a region can come from).
pub(crate) async fn sdk_config(
    endpoint_url: Option<&str>,
    region: Option<&str>,
    timeouts: TimeoutConfig,
) -> Result<aws_config::SdkConfig, String> {
    if let Some(url) = endpoint_url {
        let scheme_ok = ["http://", "https://"].iter().any(|scheme| {
            url.get(..scheme.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
        });
        if !scheme_ok || url.len() <= "https://".len() {
            return Err(format!(
                "endpoint URL {url:?} must start with http:// or https:// and name a host"
            ));
        }
    }
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .timeout_config(timeouts);
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    Ok(loader.load().await)
}

/// Runs `tasks` with at most `CONCURRENT_LISTINGS` at once; results in the order given.
async fn run_bounded<T, F>(tasks: Vec<F>) -> Result<Vec<T>, S3Error>
where
    T: Send + 'static,
    F: Future<Output = Result<T, S3Error>> + Send + 'static,
{
    let count = tasks.len();
    let mut pending = tasks.into_iter().enumerate();
    let mut running = JoinSet::new();
    let mut results: Vec<Option<T>> = std::iter::repeat_with(|| None).take(count).collect();
    for (index, task) in pending.by_ref().take(CONCURRENT_LISTINGS) {
        running.spawn(async move { (index, task.await) });
    }
    // Returning early drops `running`, which aborts the listings still in flight.
    while let Some(joined) = running.join_next().await {
        let (index, result) = joined.map_err(|e| S3Error::Task(e.to_string()))?;
        if let Some(slot) = results.get_mut(index) {
            *slot = Some(result?);
        }
        if let Some((index, task)) = pending.next() {
            running.spawn(async move { (index, task.await) });
        }
    }
    results
        .into_iter()
        .map(|r| r.ok_or_else(|| S3Error::Task("a listing never finished".into())))
        .collect()
}

/// The delivery minute of `key` if it is a CloudTrail log file directly in the day folder
/// `prefix`: `{name_head}YYYYMMDDTHHmmZ_{unique}.json.gz` (or `.json`).
fn log_file_minute(key: &str, prefix: &str, name_head: &str) -> Option<Minute> {
    let name = key.strip_prefix(prefix)?;
    if name.contains('/') {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    if !(lower.ends_with(".json.gz") || lower.ends_with(".json")) {
        return None;
    }
    let stamp_at = name_head.len().checked_sub(1)?;
    if !name.starts_with(name_head) {
        return None;
    }
    // `_YYYYMMDDTHHmmZ_` right after the head (whose last character is the opening `_`).
    delivery_minute_of(name.get(stamp_at..stamp_at + 16)?)
}

/// Whether `key` is a Parquet file directly in a lake's day folder `prefix`.
fn lake_file(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix).is_some_and(|name| {
        !name.contains('/')
            && name.len() > ".parquet".len()
            && name.to_ascii_lowercase().ends_with(".parquet")
    })
}

/// The last path component of `folder` (`{parent}{name}/`), if it is directly under `parent`.
fn child_name<'a>(parent: &str, folder: &'a str) -> Option<&'a str> {
    let name = folder.strip_prefix(parent)?.strip_suffix('/')?;
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

/// A 12-digit AWS account ID.
fn is_account_id(name: &str) -> bool {
    name.len() == 12 && name.bytes().all(|b| b.is_ascii_digit())
}

/// An AWS Organizations ID: `o-` and 10 to 32 lowercase letters or digits.
fn is_organization_id(name: &str) -> bool {
    name.strip_prefix("o-").is_some_and(|id| {
        (10..=32).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// A region name such as `us-east-1` or `us-gov-west-1`.
fn is_region(name: &str) -> bool {
    (1..=40).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Maps an SDK failure to an error that says what, where, the service's code, and whether a retry
/// can help.
fn request_error<E>(action: S3Action, target: &str, err: SdkError<E>) -> S3Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(clipped);
    let retryable = match &err {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(failure) => {
            failure.is_io()
                || failure.is_timeout()
                || failure.as_other().is_some_and(|kind| {
                    !matches!(kind, aws_smithy_types::retry::ErrorKind::ClientError)
                })
        }
        SdkError::ServiceError(_) => {
            status.is_some_and(|s| s >= 500 || s == 429 || s == 408)
                || code.as_deref().is_some_and(|c| {
                    matches!(
                        c,
                        "SlowDown"
                            | "Throttling"
                            | "ThrottlingException"
                            | "TooManyRequests"
                            | "RequestLimitExceeded"
                            | "RequestTimeout"
                            | "RequestTimeoutException"
                            | "InternalError"
                            | "ServiceUnavailable"
                    )
                })
        }
        _ => false,
    };
    let detail = match (&err, &code) {
        (SdkError::ServiceError(_), Some(code)) => {
            let message = err.message().map(clipped).unwrap_or_default();
            let status = status.map(|s| format!(" (HTTP {s})")).unwrap_or_default();
            if message.is_empty() {
                format!("{code}{status}")
            } else {
                format!("{code}: {message}{status}")
            }
        }
        (SdkError::ServiceError(_), None) => match status {
            Some(404) => "not found (HTTP 404)".to_owned(),
            Some(403) => "access denied (HTTP 403)".to_owned(),
            Some(s) => format!("HTTP {s}"),
            None => clipped(&DisplayErrorContext(&err).to_string()),
        },
        _ => clipped(&DisplayErrorContext(&err).to_string()),
    };
    S3Error::Request {
        action,
        target: target.to_owned(),
        code,
        status,
        detail,
        retryable,
    }
}

/// Text from keys or servers, safe to print on one line: control characters escaped.
fn shown(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// [`shown`], cut to `MAX_MESSAGE_CHARS` characters.
pub(crate) fn clipped(text: &str) -> String {
    let mut out = shown(text);
    if let Some((cut, _)) = out.char_indices().nth(MAX_MESSAGE_CHARS) {
        out.truncate(cut);
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_normalise() {
        let loc: S3Location = "s3://my-trail".parse().unwrap();
        assert_eq!((loc.bucket.as_str(), loc.prefix.as_str()), ("my-trail", ""));
        let loc: S3Location = "s3://my-trail/".parse().unwrap();
        assert_eq!(loc.prefix, "");
        let loc: S3Location = "S3://b.x/logs/prod".parse().unwrap();
        assert_eq!(
            (loc.bucket.as_str(), loc.prefix.as_str()),
            ("b.x", "logs/prod/")
        );
        let loc: S3Location = "s3://b/logs/AWSLogs".parse().unwrap();
        assert_eq!(loc.prefix, "logs/");
        let loc: S3Location = "s3://b/AWSLogs/".parse().unwrap();
        assert_eq!(loc.prefix, "");
        for bad in [
            "",
            "b/prefix",
            "https://b/prefix",
            "s3://",
            "s3:///prefix",
            "s3://b b/",
            "s3://b/AWSLogs/123456789012/",
            "s3://b/p\n/",
        ] {
            let err = bad.parse::<S3Location>().unwrap_err();
            assert!(matches!(err, S3Error::BadLocation { .. }), "{bad:?}: {err}");
            assert!(!err.is_retryable());
        }
    }

    #[test]
    fn only_parquet_files_directly_in_a_lake_day_folder_count() {
        let day =
            "aws/CLOUD_TRAIL_MGMT/2.0/region=us-east-1/accountId=111122223333/eventDay=20240304/";
        assert!(lake_file(&format!("{day}5f2c1e0a-1b2c.gz.parquet"), day));
        assert!(lake_file(&format!("{day}X.PARQUET"), day));
        assert!(!lake_file(&format!("{day}.parquet"), day));
        assert!(!lake_file(&format!("{day}sub/x.parquet"), day));
        assert!(!lake_file(&format!("{day}x.json.gz"), day));
        assert!(!lake_file("elsewhere/x.parquet", day));
    }

    #[test]
    fn only_cloudtrail_log_names_in_the_day_folder_count() {
        let prefix = "AWSLogs/123456789012/CloudTrail/us-east-1/2023/07/10/";
        let head = "123456789012_CloudTrail_us-east-1_";
        let key = |name: &str| format!("{prefix}{name}");
        let minute = log_file_minute(
            &key("123456789012_CloudTrail_us-east-1_20230710T1145Z_abc.json.gz"),
            prefix,
            head,
        );
        let expected = NaiveDate::from_ymd_opt(2023, 7, 10)
            .unwrap()
            .and_hms_opt(11, 45, 0)
            .unwrap()
            .and_utc()
            .timestamp()
            / 60;
        assert_eq!(minute, Some(expected));
        for name in [
            "123456789012_CloudTrail_us-east-1_20230710T1145Z_abc.txt",
            "123456789012_CloudTrail_us-west-2_20230710T1145Z_abc.json.gz",
            "123456789012_CloudTrail_us-east-1_20230710T1145_abc.json.gz",
            "sub/123456789012_CloudTrail_us-east-1_20230710T1145Z_abc.json.gz",
            "README.json",
            "",
        ] {
            assert_eq!(log_file_minute(&key(name), prefix, head), None, "{name}");
        }
    }

    #[test]
    fn a_cursor_starts_lookback_minutes_before_its_newest_file() {
        let newest = NaiveDate::from_ymd_opt(2023, 7, 10)
            .unwrap()
            .and_hms_opt(0, 5, 0)
            .unwrap()
            .and_utc()
            .timestamp()
            / 60;
        let cursor = DayCursor {
            day: NaiveDate::from_ymd_opt(2023, 7, 10).unwrap(),
            newest: Some(newest),
            recent: HashMap::new(),
        };
        // 00:05 minus 15 minutes is the day before: names still sort by their stamp.
        assert_eq!(
            cursor.start_after("p/", "1_CloudTrail_r_").as_deref(),
            Some("p/1_CloudTrail_r_20230709T2350Z")
        );
    }

    #[test]
    fn ids_and_text_from_servers() {
        assert!(is_account_id("123456789012") && !is_account_id("12345678901a"));
        assert!(is_organization_id("o-a1b2c3d4e5") && !is_organization_id("o-short"));
        assert!(is_region("us-gov-west-1") && !is_region("US_EAST"));
        assert_eq!(shown("a\nb\u{1b}"), "a\\nb\\u{1b}");
        assert_eq!(
            clipped(&"x".repeat(500)).chars().count(),
            MAX_MESSAGE_CHARS + 1
        );
    }
}
