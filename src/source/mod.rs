//! Where input comes from. A [`Source`] hands out the next inputs (files to read, or content
//! already in memory) in the order they must be absorbed; the driver
//! ([`crate::pipeline::driver`]) parses them in parallel and absorbs them in that order, for
//! `score` and `watch` alike.
//!
//! A source's resumable position is the store's record of ingested inputs (by ingest key, with
//! their size) plus what the source itself handed out in this process: a restarted source lists
//! again and leaves out what the store holds, so nothing is read twice or skipped.
//!
//! | source | file | used by |
//! | --- | --- | --- |
//! | an archive (files, folders, `-`), listed day by day | [`archive`] | `score` |
//! | a folder a trail's files land in | [`folder`] | `watch DIR` |
//! | an S3 bucket listed per account/region/day | [`s3`] | `watch s3://...` |
//! | S3 event notifications received from an SQS queue | [`sqs`] | `watch sqs://...` |
//! | JSON lines on standard input, cut into chunks | [`stdin`] | `watch -` |
//!
//! Adding a source is one file here with an implementation of [`Source`], and one line where the
//! command line picks it (`crate::watch::open_source` or `crate::cli`).

pub mod aggregates;
pub mod archive;
pub mod folder;
pub mod s3;
pub mod sqs;
pub mod stdin;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::ingest::InputFile;
use crate::series::Minute;
use crate::store::StoreError;

/// One input to read.
#[derive(Debug, Clone)]
pub enum Input {
    /// A file (or standard input, for `score -`) to load and parse.
    File(InputFile),
    /// Content already in memory: an S3 object, a chunk of standard input.
    Bytes(Loaded),
}

/// Content a source already holds.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// What to show the user.
    pub display: String,
    /// Identity recorded as ingested (None: not recorded, e.g. standard input).
    pub ingest_key: Option<String>,
    /// Delivery time, when the name tells it.
    pub delivery_minute: Option<Minute>,
    /// The bytes as stored (gzip or plain).
    pub content: Vec<u8>,
    /// The input line number of the content's first line (1 for a whole file): problems are
    /// reported with the input's line numbers.
    pub first_line: u64,
}

impl Input {
    /// What to show the user.
    pub fn display(&self) -> &str {
        match self {
            Input::File(f) => &f.display,
            Input::Bytes(b) => &b.display,
        }
    }

    /// Bytes as stored.
    pub fn size(&self) -> u64 {
        match self {
            Input::File(f) => f.size,
            Input::Bytes(b) => b.content.len() as u64,
        }
    }

    /// Delivery time, when known.
    pub fn delivery_minute(&self) -> Option<Minute> {
        match self {
            Input::File(f) => f.delivery_minute,
            Input::Bytes(b) => b.delivery_minute,
        }
    }
}

/// What a source hands out next.
#[derive(Debug)]
pub enum Pull {
    /// Inputs to read, in the order they must be absorbed.
    Inputs(Vec<Input>),
    /// A listing step was accounted for (`score`'s summary: a delivery day listed).
    Listed(Listed),
    /// Something went wrong that the run goes on after (it was logged); counted in metrics.
    Trouble(Trouble),
    /// Everything there is now has been handed out. `must_commit`: what was absorbed cannot
    /// be read again (standard input) and is committed now; otherwise a commit is made only when
    /// Insights wait or a checkpoint is due.
    CaughtUp {
        /// Commit whatever changed.
        must_commit: bool,
    },
    /// The source ended (its input is complete, or a stop was asked).
    End(Ending),
}

/// A listing step, as `score` accounts for it.
#[derive(Debug, Default)]
pub struct Listed {
    /// Files found.
    pub found: u64,
    /// Of them, files a previous run ingested (not read again).
    pub already_ingested: u64,
    /// Entries that could not be examined: (path, problem).
    pub problems: Vec<(String, String)>,
}

/// How a source ended.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ending {
    /// Files skipped as not API activity (digests, Insights).
    pub not_activity: u64,
    /// Other entries ignored.
    pub ignored: u64,
    /// Whether a stop was asked (rather than the input ending).
    pub stopped: bool,
}

/// A problem a source met and went on after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trouble {
    /// Listing or fetching failed (it is tried again).
    Source,
    /// An input could not be read (it is tried again or left for a restart).
    Read,
    /// Part of an input was skipped (a line over the limit).
    Damaged,
}

/// What to do with an input that could not be read at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Absorb it as failed (it is recorded, reported in the summary).
    GiveUp,
    /// Leave it out now: the source hands it out again later.
    Retry,
}

/// Why a source cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The store could not say what was ingested.
    #[error("the store could not say what was ingested: {0}")]
    Store(#[from] StoreError),
    /// The S3 source failed in a way retrying does not cure.
    #[error(transparent)]
    S3(#[from] s3::S3Error),
    /// The same, with what was being done.
    #[error("{context}: {source}")]
    S3Context {
        /// What was being done (`listing s3://...`).
        context: String,
        /// The failure.
        source: s3::S3Error,
    },
    /// The SQS source failed in a way retrying does not cure (a bad address, no region, a
    /// queue that refuses the first receive).
    #[error(transparent)]
    Sqs(#[from] sqs::SqsError),
    /// The source cannot be set up.
    #[error("{0}")]
    Setup(String),
}

/// A source of inputs, pulled by the driver (from its reading thread) until it ends.
pub trait Source: Send {
    /// The next thing to hand out. A following source waits here (for new input, its poll
    /// interval, or a stop) and ends once a stop was asked.
    fn next(&mut self) -> Result<Pull, SourceError>;

    /// An input it handed out could not be read at all: retry it later, or give up on it.
    fn unreadable(&mut self, input: &Input) -> Unreadable {
        let _ = input;
        Unreadable::GiveUp
    }
}

/// How a following source paces itself.
#[derive(Debug, Clone)]
pub struct Following {
    /// Look for new input this often (a folder with notifications is also woken by them).
    pub poll_every: Duration,
    /// Earliest day to list (default: the day before the store's newest event).
    pub since: Option<chrono::NaiveDate>,
    /// Hand out what is there now, then end.
    pub once: bool,
}

/// A stop asked by a signal: seen by the driver between inputs and by waiting sources at once.
#[derive(Clone, Default)]
pub struct Stop {
    inner: Arc<StopInner>,
}

#[derive(Default)]
struct StopInner {
    flag: AtomicBool,
    lock: Mutex<()>,
    cond: Condvar,
    notify: tokio::sync::Notify,
}

impl Stop {
    /// A stop nobody has asked for yet.
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Asks every holder to stop.
    pub fn set(&self) {
        self.inner.flag.store(true, Ordering::SeqCst);
        let _guard = self.inner.lock.lock();
        self.inner.cond.notify_all();
        self.inner.notify.notify_waiters();
    }

    /// Whether a stop was asked.
    pub fn is_set(&self) -> bool {
        self.inner.flag.load(Ordering::SeqCst)
    }

    /// Waits up to `d`; true when a stop was asked (at once if it already was).
    pub fn wait(&self, d: Duration) -> bool {
        let Ok(guard) = self.inner.lock.lock() else {
            return self.is_set();
        };
        let _ = self
            .inner
            .cond
            .wait_timeout_while(guard, d, |_| !self.is_set());
        self.is_set()
    }

    /// Resolves once a stop is asked (for `select!` in async sources).
    pub async fn stopped(&self) {
        loop {
            let notified = self.inner.notify.notified();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

/// Exponential backoff: 1 s, 2 s, 4 s... up to a minute.
#[derive(Debug, Default)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// The next wait.
    pub fn next_wait(&mut self) -> Duration {
        let secs = 1u64 << self.attempt.min(6);
        self.attempt += 1;
        Duration::from_secs(secs.min(60))
    }

    /// Starts again from a second.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// The day to start listing from: `since`, else the day before the newest event the store
/// holds (what was committed: a lag costs one more day listed, never an input).
pub fn since_day(
    since: Option<chrono::NaiveDate>,
    newest: Option<Minute>,
) -> Option<chrono::NaiveDate> {
    since.or_else(|| {
        newest
            .and_then(crate::series::minute_to_datetime)
            .map(|t| t.date_naive() - chrono::Days::new(1))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..9).map(|_| b.next_wait().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        b.reset();
        assert_eq!(b.next_wait().as_secs(), 1);
    }

    #[test]
    fn a_stop_wakes_a_waiter_at_once() {
        let stop = Stop::new();
        let other = stop.clone();
        // Not woken, the waiter would sit for an hour (the test would hang, not pass).
        let waiter = std::thread::spawn(move || other.wait(Duration::from_secs(3600)));
        std::thread::sleep(Duration::from_millis(50));
        stop.set();
        assert!(waiter.join().unwrap());
        assert!(!Stop::new().wait(Duration::from_millis(1)));
    }
}
