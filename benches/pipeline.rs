//! Throughput of each stage of trailsight's pipeline, on records made by `trailsight generate`
//! (one day at scale 0.3, written once per run into a temporary folder, then held in memory).
//!
//! Groups (each reports criterion throughput):
//! - `gzip`: inflating every `.json.gz` file of the trail into a reused buffer (compressed bytes
//!   are read once beforehand): `inflate` with zlib-rs' streaming `MultiGzDecoder`, `read_input`
//!   the way `score` reads a file whole (libdeflate); throughput in decompressed bytes.
//! - `parse`: `ingest::parse` over the inflated buffers, counting records; once per record
//!   (`records`) and once per decompressed byte (`bytes`), same work.
//! - `aggregate`: `parse_push` is parsing plus `FileDigest::push` of every record (the worker
//!   side); `absorb` is `Aggregator::absorb` of every file's digest into a fresh aggregator, in
//!   file order (the digests are rebuilt outside the timing: `FileDigest` is not `Clone`).
//!   Throughput in records.
//! - `detect`: `SeriesDetector::advance` over 7 + 1 days of minutes for many series of Poisson
//!   counts (busy 5/min, moderate 0.3/min, sparse 0.002/min), fed one hour at a time as the
//!   engine does, from fresh detectors; throughput in series-minutes.
//! - `insight`: `InsightRecord::from_summary` plus `serde_json::to_vec` of an Insights event with
//!   three attributions of five values each; throughput in records.
//!
//! Run: `cargo bench --bench pipeline` for numbers (`-- detect` to run one group), or
//! `cargo bench --bench pipeline -- --test` to run each benchmark once (CI).
//! `TRAILSIGHT_BENCH_SERIES=10000` scales the `detect` group (default 1,000 series).

use std::borrow::Cow;
use std::hint::black_box;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput};
use flate2::read::MultiGzDecoder;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson};

use trailsight::aggregate::topk::Attributions;
use trailsight::aggregate::{Aggregator, FileDigest, Registry};
use trailsight::detect::baseline::Coverage;
use trailsight::detect::{Profile, Sensitivity, SeriesContext, SeriesDetector};
use trailsight::generate::{generate, GenerateOptions};
use trailsight::ingest::read::read_input;
use trailsight::ingest::{discover, load, parse, ParseContext, ReadLimits};
use trailsight::insight::{
    AttributionSummary, Direction, EpisodeSummary, Explanation, InsightRecord, InsightState,
};
use trailsight::series::{Attribute, InsightType, Minute, SeriesKey, MINUTES_PER_DAY};

/// One generated trail file, held in memory.
struct TrailFile {
    display: String,
    delivery_minute: Option<Minute>,
    compressed: Vec<u8>,
    inflated: Vec<u8>,
}

/// The generated trail: files in the order the engine reads them (delivery time, then key).
struct Trail {
    files: Vec<TrailFile>,
    inflated_bytes: u64,
    records: u64,
}

impl Trail {
    fn generate() -> Trail {
        let dir = tempfile::tempdir().expect("temporary folder");
        let mut opts = GenerateOptions::new(dir.path().to_path_buf(), 1, 42);
        opts.scale = 0.3;
        opts.incidents = false;
        generate(&opts).expect("generate the trail");
        let report = discover(&[dir.path().to_path_buf()]);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let mut files = Vec::new();
        for input in &report.files {
            let trailsight::ingest::InputSource::File(path) = &input.source else {
                continue;
            };
            let compressed = std::fs::read(path).expect("read a trail file");
            let mut inflated = Vec::new();
            load(input, &ReadLimits::default(), &mut inflated).expect("inflate a trail file");
            files.push(TrailFile {
                display: input.display.clone(),
                delivery_minute: input.delivery_minute,
                compressed,
                inflated,
            });
        }
        assert!(!files.is_empty(), "the generator wrote no files");
        let inflated_bytes = files.iter().map(|f| f.inflated.len() as u64).sum();
        let records = files.iter().map(count_records).sum();
        assert!(records > 0, "the trail holds no records");
        Trail {
            files,
            inflated_bytes,
            records,
        }
    }

    fn compressed_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.compressed.len() as u64).sum()
    }
}

fn context(file: &TrailFile) -> ParseContext<'_> {
    ParseContext::new(&file.display, file.delivery_minute)
}

fn count_records(file: &TrailFile) -> u64 {
    let mut records = 0u64;
    let report = parse(&file.inflated, &context(file), &mut |_| records += 1);
    assert!(report.fatal.is_none(), "{:?}", report.fatal);
    records
}

fn digests(trail: &Trail) -> Vec<FileDigest> {
    trail
        .files
        .iter()
        .map(|file| {
            let mut digest = FileDigest::default();
            parse(&file.inflated, &context(file), &mut |r| digest.push(&r));
            digest
        })
        .collect()
}

fn bench_gzip(c: &mut Criterion, trail: &Trail) {
    let mut group = c.benchmark_group("gzip");
    group.throughput(Throughput::Bytes(trail.inflated_bytes));
    let mut buf = Vec::new();
    group.bench_function("inflate", |b| {
        b.iter(|| {
            let mut total = 0usize;
            for file in &trail.files {
                buf.clear();
                MultiGzDecoder::new(&file.compressed[..])
                    .read_to_end(&mut buf)
                    .expect("inflate");
                total += buf.len();
            }
            black_box(total)
        })
    });
    // What `score` does with a delivery file read whole: libdeflate, sized by the gzip trailer.
    group.bench_function("read_input", |b| {
        let limits = ReadLimits::default();
        b.iter(|| {
            let mut total = 0usize;
            for file in &trail.files {
                let size = Some(file.compressed.len() as u64);
                read_input(&file.compressed[..], size, "bench", &limits, &mut buf)
                    .expect("inflate");
                total += buf.len();
            }
            black_box(total)
        })
    });
    group.finish();
}

fn parse_all(trail: &Trail) -> u64 {
    let mut records = 0u64;
    for file in &trail.files {
        parse(&file.inflated, &context(file), &mut |r| {
            black_box(&r);
            records += 1;
        });
    }
    records
}

fn bench_parse(c: &mut Criterion, trail: &Trail) {
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(trail.records));
    group.bench_function("records", |b| b.iter(|| black_box(parse_all(trail))));
    group.throughput(Throughput::Bytes(trail.inflated_bytes));
    group.bench_function("bytes", |b| b.iter(|| black_box(parse_all(trail))));
    group.finish();
}

fn bench_aggregate(c: &mut Criterion, trail: &Trail) {
    let profile = Profile::builtin();
    let capacity = profile.attribution.capacity;
    let dedup = profile.ingest.dedup_window_minutes;
    let mut group = c.benchmark_group("aggregate");
    group.throughput(Throughput::Elements(trail.records));
    group.bench_function("parse_push", |b| b.iter(|| black_box(digests(trail))));
    group.bench_function("absorb", |b| {
        b.iter_batched(
            || digests(trail),
            |digests| {
                let mut aggregator = Aggregator::new(Registry::default(), capacity, dedup);
                for digest in digests {
                    aggregator.absorb(digest, None);
                }
                aggregator
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// Series in the `detect` group. Set `TRAILSIGHT_BENCH_SERIES=10000` for an account-sized run:
/// the time per iteration grows linearly (about 10x), so raise `--measurement-time` with it.
fn detect_series() -> usize {
    std::env::var("TRAILSIGHT_BENCH_SERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1_000)
}

/// Minutes fed to each series: a 7-day baseline, then a day that is tested against it.
const DETECT_MINUTES: Minute = 8 * MINUTES_PER_DAY;

/// One series' synthetic counts: its key and the minutes with calls (attribution variant index).
struct SyntheticSeries {
    key: SeriesKey,
    cells: Vec<(Minute, u64, u8)>,
}

fn attribution_variants(capacity: usize) -> Vec<Attributions> {
    let arns: Vec<Arc<str>> = (0..3)
        .map(|i| {
            Arc::from(format!(
                "arn:aws:sts::418295730164:assumed-role/deploy-{i}/ci"
            ))
        })
        .collect();
    let agent: Arc<str> = Arc::from("aws-sdk-go-v2/1.30.3 os/linux lang/go#1.22.5");
    let null: Arc<str> = Arc::from("null");
    (0..4)
        .map(|v| {
            let mut a = Attributions::default();
            a.by_attribute[Attribute::UserIdentityArn.index()].add(&arns[v % 3], 1, capacity);
            if v == 3 {
                a.by_attribute[Attribute::UserIdentityArn.index()].add(&arns[0], 1, capacity);
            }
            a.by_attribute[Attribute::UserAgent.index()].add(&agent, 1, capacity);
            a.by_attribute[Attribute::ErrorCode.index()].add(&null, 1, capacity);
            a
        })
        .collect()
}

fn synthetic_series(count: usize) -> Vec<SyntheticSeries> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    (0..count)
        .map(|i| {
            // 10% busy, 30% moderate, 60% sparse: most APIs of an account are rarely called.
            let rate = match i % 10 {
                0 => 5.0,
                1..=3 => 0.3,
                _ => 0.002,
            };
            let poisson = Poisson::new(rate).expect("positive rate");
            let cells = (0..DETECT_MINUTES)
                .filter_map(|m| {
                    let n = poisson.sample(&mut rng) as u64;
                    (n > 0).then_some((m, n, (m % 4) as u8))
                })
                .collect();
            let key = SeriesKey {
                insight_type: InsightType::ApiCallRateInsight,
                account: Arc::from("418295730164"),
                region: Arc::from("us-east-1"),
                event_source: Arc::from("ec2.amazonaws.com"),
                event_name: Arc::from(format!("Api{i:05}")),
                error_code: None,
                category: trailsight::series::EventCategory::Management,
                scope: trailsight::series::Scope::Api,
            };
            SyntheticSeries { key, cells }
        })
        .collect()
}

fn bench_detect(c: &mut Criterion) {
    let profile = Profile::builtin();
    let sensitivity = Sensitivity::of(&profile);
    let variants = attribution_variants(profile.attribution.capacity);
    let series = synthetic_series(detect_series());
    let fresh = SeriesDetector::new(&profile);
    let silent = |_: Minute, _: i64| false;
    let mut group = c.benchmark_group("detect");
    group.throughput(Throughput::Elements(
        series.len() as u64 * DETECT_MINUTES as u64,
    ));
    group.bench_function(format!("{}_series_8_days", series.len()), |b| {
        b.iter_batched(
            || vec![fresh.clone(); series.len()],
            |mut detectors| {
                let mut findings = Vec::new();
                // Hour by hour across all series, as the engine advances batch by batch.
                for hour_end in (60..=DETECT_MINUTES).step_by(60) {
                    for (detector, s) in detectors.iter_mut().zip(&series) {
                        let ctx = SeriesContext {
                            key: &s.key,
                            profile: &profile,
                            sensitivity,
                            coverage: Coverage { first_minute: 0 },
                            silent: &silent,
                            sensitive: false,
                            calls_rose: &[],
                            announced_start: None,
                            habits: &trailsight::detect::habits::Habits::default(),
                            api_calls: None,
                            accepts: &|_| false,
                        };
                        let from = s.cells.partition_point(|&(m, _, _)| m < hour_end - 60);
                        let to = s.cells.partition_point(|&(m, _, _)| m < hour_end);
                        let cells = s.cells[from..to]
                            .iter()
                            .map(|&(m, n, v)| (m, n, Cow::Borrowed(&variants[usize::from(v)])));
                        detector.advance(hour_end, cells, &ctx, &mut findings);
                    }
                }
                (detectors, findings)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn episode_summary() -> EpisodeSummary {
    let values = |prefix: &str, scale: f64| -> Vec<(String, f64)> {
        (0..5)
            .map(|i| (format!("{prefix}{i}"), scale / f64::from(i + 1)))
            .collect()
    };
    let start: Minute = trailsight::generate::DEFAULT_START + 8 * MINUTES_PER_DAY + 130;
    EpisodeSummary {
        series: SeriesKey {
            insight_type: InsightType::ApiCallRateInsight,
            account: Arc::from("418295730164"),
            region: Arc::from("us-east-1"),
            event_source: Arc::from("iam.amazonaws.com"),
            event_name: Arc::from("CreateAccessKey"),
            error_code: None,
            category: trailsight::series::EventCategory::Management,
            scope: trailsight::series::Scope::Api,
        },
        state: InsightState::Start,
        start,
        end: start + 5,
        baseline_average: 0.0123456789,
        insight_average: 3.4,
        insight_duration: 5,
        baseline_duration: 10_080,
        attributions: vec![
            AttributionSummary {
                attribute: Attribute::UserIdentityArn,
                insight: values("arn:aws:iam::418295730164:user/intruder-", 2.8),
                baseline: values("arn:aws:sts::418295730164:assumed-role/admin/user-", 0.01),
            },
            AttributionSummary {
                attribute: Attribute::UserAgent,
                insight: values("python-requests/2.31.", 2.8),
                baseline: values("aws-cli/2.15.", 0.01),
            },
            AttributionSummary {
                attribute: Attribute::ErrorCode,
                insight: values("AccessDenied", 0.6),
                baseline: values("null", 0.012),
            },
        ],
        explanation: Explanation {
            direction: Direction::Rise,
            window_minutes: 5,
            observed: 17,
            expected: 0.0617,
            lower_bound: None,
            upper_bound: 2,
            p_value: 1.2e-31,
            p_threshold: 4.3e-11,
            model: "poisson".to_owned(),
            dispersion: None,
        },
    }
}

fn bench_insight(c: &mut Criterion) {
    let summary = episode_summary();
    let mut group = c.benchmark_group("insight");
    group.throughput(Throughput::Elements(1));
    group.bench_function("from_summary_to_json", |b| {
        b.iter(|| {
            let record = InsightRecord::from_summary(black_box(&summary));
            serde_json::to_vec(&record).expect("serialise")
        })
    });
    group.finish();
}

fn main() {
    let trail = Trail::generate();
    eprintln!(
        "trail: {} files, {} records, {} bytes compressed, {} bytes inflated",
        trail.files.len(),
        trail.records,
        trail.compressed_bytes(),
        trail.inflated_bytes
    );
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench_gzip(&mut c, &trail);
    bench_parse(&mut c, &trail);
    bench_aggregate(&mut c, &trail);
    bench_detect(&mut c);
    bench_insight(&mut c);
    c.final_summary();
}
