//! Operating metrics of `watch`, served as Prometheus text on `/metrics`, with a `/health`
//! endpoint. The counters are atomics updated by the watch loop; the HTTP side is a minimal,
//! bounded HTTP/1.1 responder (two fixed GET routes), so a scraper can never stall the engine.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Kinds of errors counted (label `kind` of `trailsight_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A file or object could not be read at all.
    Read,
    /// A file was read only in part (damaged gzip, broken JSON) or had bad records.
    Damaged,
    /// The store could not be written (a checkpoint failed).
    Store,
    /// A sink could not take Insights.
    Sink,
    /// Listing or fetching from the source failed (S3 error, folder unreadable).
    Source,
}

impl ErrorKind {
    const ALL: [ErrorKind; 5] = [
        ErrorKind::Read,
        ErrorKind::Damaged,
        ErrorKind::Store,
        ErrorKind::Sink,
        ErrorKind::Source,
    ];

    fn label(self) -> &'static str {
        match self {
            ErrorKind::Read => "read",
            ErrorKind::Damaged => "damaged",
            ErrorKind::Store => "store",
            ErrorKind::Sink => "sink",
            ErrorKind::Source => "source",
        }
    }
}

/// Everything `/metrics` reports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Files, objects or stdin chunks ingested.
    pub files: AtomicU64,
    /// Records read.
    pub records: AtomicU64,
    /// Calls counted for minutes already final.
    pub late: AtomicU64,
    /// Start records written.
    pub insights_start: AtomicU64,
    /// End records written.
    pub insights_end: AtomicU64,
    /// Episodes open now.
    pub open_episodes: AtomicU64,
    /// Newest event time seen, in minutes since the epoch (i64::MIN: none yet).
    pub newest_event_minute: AtomicI64,
    /// Every minute before this is final (i64::MIN: none yet).
    pub final_before_minute: AtomicI64,
    /// Checkpoints committed.
    pub checkpoints: AtomicU64,
    /// Unix time of the last successful checkpoint (0: none yet).
    pub last_checkpoint_unix: AtomicI64,
    /// Indexed by `ErrorKind as usize` (the array has one slot per kind).
    errors: [AtomicU64; ErrorKind::ALL.len()],
    /// Whether the last checkpoint failed (unhealthy until one succeeds).
    pub store_failing: std::sync::atomic::AtomicBool,
    /// Whether the last delivery to the sinks failed: committed Insights wait in the outbox
    /// (unhealthy until a delivery succeeds).
    pub sink_failing: std::sync::atomic::AtomicBool,
    rate: Mutex<VecDeque<(Instant, u64)>>,
}

/// Window over which records per second are computed.
const RATE_WINDOW: Duration = Duration::from_secs(60);

impl Metrics {
    /// Fresh metrics (no event time yet).
    pub fn new() -> Arc<Metrics> {
        let m = Metrics::default();
        m.newest_event_minute.store(i64::MIN, Ordering::Relaxed);
        m.final_before_minute.store(i64::MIN, Ordering::Relaxed);
        Arc::new(m)
    }

    /// Counts one error of `kind`.
    pub fn error(&self, kind: ErrorKind) {
        self.errors[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Errors counted of `kind`.
    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors[kind as usize].load(Ordering::Relaxed)
    }

    /// Adds records read now (for the records-per-second gauge).
    pub fn add_records(&self, n: u64) {
        let total = self.records.fetch_add(n, Ordering::Relaxed) + n;
        if let Ok(mut samples) = self.rate.lock() {
            let now = Instant::now();
            samples.push_back((now, total));
            while samples
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
                && samples.len() > 2
            {
                samples.pop_front();
            }
        }
    }

    /// Records per second over the last minute (0 before two samples).
    pub fn records_per_second(&self) -> f64 {
        let Ok(samples) = self.rate.lock() else {
            return 0.0;
        };
        let (Some(&(t0, n0)), Some(&(_, n1))) = (samples.front(), samples.back()) else {
            return 0.0;
        };
        let elapsed = t0.elapsed().as_secs_f64();
        if elapsed <= 0.0 {
            0.0
        } else {
            (n1 - n0) as f64 / elapsed
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let now_unix = chrono::Utc::now().timestamp();
        let mut out = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            sample(&mut out, name, kind, help, &value)
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        metric(
            "trailsight_files_ingested_total",
            "counter",
            "Log files, S3 objects or stdin chunks ingested.",
            load(&self.files),
        );
        metric(
            "trailsight_records_ingested_total",
            "counter",
            "CloudTrail records read.",
            load(&self.records),
        );
        metric(
            "trailsight_records_per_second",
            "gauge",
            "Records read per second over the last minute.",
            format!("{:.3}", self.records_per_second()),
        );
        metric(
            "trailsight_late_records_total",
            "counter",
            "Calls that arrived after their minute was final (history only, not tested).",
            load(&self.late),
        );
        let newest = self.newest_event_minute.load(Ordering::Relaxed);
        let lag = if newest == i64::MIN {
            0
        } else {
            (now_unix - newest * 60).max(0)
        };
        metric(
            "trailsight_watermark_lag_seconds",
            "gauge",
            "Wall-clock time minus the newest event time seen.",
            lag.to_string(),
        );
        let final_before = self.final_before_minute.load(Ordering::Relaxed);
        metric(
            "trailsight_final_before_timestamp_seconds",
            "gauge",
            "Every minute before this time is final (0: none yet).",
            if final_before == i64::MIN {
                "0".into()
            } else {
                (final_before * 60).to_string()
            },
        );
        metric(
            "trailsight_open_episodes",
            "gauge",
            "Insight episodes open now.",
            load(&self.open_episodes),
        );
        let _ = writeln!(
            out,
            "# HELP trailsight_insights_emitted_total Insights records written, by state."
        );
        let _ = writeln!(out, "# TYPE trailsight_insights_emitted_total counter");
        let _ = writeln!(
            out,
            "trailsight_insights_emitted_total{{state=\"Start\"}} {}",
            load(&self.insights_start)
        );
        let _ = writeln!(
            out,
            "trailsight_insights_emitted_total{{state=\"End\"}} {}",
            load(&self.insights_end)
        );
        let _ = writeln!(
            out,
            "# HELP trailsight_errors_total Errors met, by kind (read, damaged, store, sink, source)."
        );
        let _ = writeln!(out, "# TYPE trailsight_errors_total counter");
        for kind in ErrorKind::ALL {
            let _ = writeln!(
                out,
                "trailsight_errors_total{{kind=\"{}\"}} {}",
                kind.label(),
                self.errors(kind)
            );
        }
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            sample(&mut out, name, kind, help, &value)
        };
        metric(
            "trailsight_checkpoints_total",
            "counter",
            "Checkpoints committed to the store.",
            load(&self.checkpoints),
        );
        metric(
            "trailsight_last_checkpoint_timestamp_seconds",
            "gauge",
            "Unix time of the last committed checkpoint.",
            self.last_checkpoint_unix
                .load(Ordering::Relaxed)
                .to_string(),
        );
        out
    }

    /// Healthy unless the store or a sink is failing.
    pub fn healthy(&self) -> bool {
        self.unhealthy().is_none()
    }

    /// Why it is not healthy, when it is not.
    pub fn unhealthy(&self) -> Option<&'static str> {
        if self.store_failing.load(Ordering::Relaxed) {
            Some("store failing: checkpoints are being retried\n")
        } else if self.sink_failing.load(Ordering::Relaxed) {
            Some("sink failing: committed Insights wait in the outbox and are sent again at each checkpoint\n")
        } else {
            None
        }
    }
}

/// Writes one metric with a single sample, with its HELP and TYPE lines.
fn sample(out: &mut String, name: &str, kind: &str, help: &str, value: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

/// Serves `/metrics` and `/health` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), respond(stream, &metrics)).await;
        });
    }
}

/// Largest request head read; anything longer is answered 431 and closed.
const MAX_REQUEST: usize = 8 * 1024;

async fn respond(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if head.len() > MAX_REQUEST {
            return reply(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            )
            .await;
        }
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default();
    let path = path.split(|&b| b == b'?').next().unwrap_or_default();
    match (method, path) {
        (b"GET", b"/metrics") => {
            let body = metrics.render();
            reply(
                &mut stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
            )
            .await
        }
        (b"GET", b"/health") | (b"GET", b"/healthz") => match metrics.unhealthy() {
            None => reply(&mut stream, "200 OK", "text/plain", "ok\n").await,
            Some(why) => reply(&mut stream, "503 Service Unavailable", "text/plain", why).await,
        },
        (b"GET", _) => reply(&mut stream, "404 Not Found", "text/plain", "not found\n").await,
        _ => reply(&mut stream, "405 Method Not Allowed", "text/plain", "").await,
    }
}

async fn reply(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_says_which_of_the_store_or_a_sink_is_failing() {
        let m = Metrics::new();
        assert_eq!(m.unhealthy(), None);
        m.sink_failing.store(true, Ordering::Relaxed);
        assert!(m.unhealthy().is_some_and(|w| w.starts_with("sink failing")));
        m.store_failing.store(true, Ordering::Relaxed);
        assert!(m
            .unhealthy()
            .is_some_and(|w| w.starts_with("store failing")));
        m.store_failing.store(false, Ordering::Relaxed);
        m.sink_failing.store(false, Ordering::Relaxed);
        assert!(m.healthy());
    }

    #[test]
    fn text_exposition_names_every_required_metric() {
        let m = Metrics::new();
        m.add_records(10);
        m.late.fetch_add(3, Ordering::Relaxed);
        m.error(ErrorKind::Store);
        m.insights_start.fetch_add(2, Ordering::Relaxed);
        let text = m.render();
        for needle in [
            "trailsight_files_ingested_total 0",
            "trailsight_records_ingested_total 10",
            "trailsight_late_records_total 3",
            "trailsight_records_per_second ",
            "trailsight_watermark_lag_seconds 0",
            "trailsight_open_episodes 0",
            "trailsight_insights_emitted_total{state=\"Start\"} 2",
            "trailsight_errors_total{kind=\"store\"} 1",
            "trailsight_errors_total{kind=\"read\"} 0",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        // Every sample line is `name value` or `name{labels} value` with a number.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
