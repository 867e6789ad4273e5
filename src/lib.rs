//! trailsight: AWS CloudTrail Insights, reproduced and replayable.
//!
//! The pipeline, in the order data flows through it:
//!
//! ```text
//! source     archive, folder, S3, stdin        ->  inputs in the order they are absorbed
//!            aggregate tables (Spark, Athena)  ->  counts that skip ingest (`score --aggregates`)
//! ingest     inputs (parsed in parallel)       ->  validated records (borrowed, only needed fields)
//! aggregate  records                           ->  per-minute counts per series, attributions, dedup
//! store      counts, baselines, state          <-> sled (atomic checkpoints)
//! detect     final minutes                     ->  expected rate, bounds, Start/End episodes
//! insight    episodes                          ->  AWS-format Insights records
//! sink       records                           ->  JSON lines, CloudTrail-Insight/ S3 layout, log
//! ```
//!
//! [`pipeline::driver`] is the one feeder of both commands: it pulls a [`source::Source`],
//! parses on a pool, absorbs in order into [`pipeline::Engine`], and commits to the
//! [`sink::InsightSink`]s. What a series is (which records count, its key, its attributions,
//! its Insight type) is one [`series::kind::SeriesKind`] per kind.
//!
//! Analyst views read a store without changing it: [`view`] (series, counts, baselines
//! replayed from the stored counts, episodes, snapshots of a store `watch` holds) feeds
//! [`plot`] (PNG/SVG), [`report`] (one HTML page) and [`export`] (Parquet/CSV).
//!
//! `score` runs the driver to the end of an archive; [`watch`] runs it on a following source
//! (continuous mode); [`cli`] is the command line over it; [`generate`] writes synthetic trails with
//! labelled incidents for demos, tests and benchmarks, and [`eval`] and [`nab`] measure
//! detection quality against labels.
#![warn(missing_docs)]
// The one exception, three calls into libdeflate, is `ingest::inflate`.
#![deny(unsafe_code)]

pub mod series;

// The pipeline stages (their order is in the diagram above) and the engine over them.
pub mod aggregate;
pub mod detect;
pub mod ingest;
pub mod insight;
pub mod pipeline;
pub mod sink;
pub mod source;
pub mod store;
pub mod suppress;
pub mod watch;

// Analyst views over a store.
pub mod export;
pub mod plot;
pub mod report;
pub mod view;

pub mod cli;
pub mod eval;
pub mod generate;
/// NAB (Numenta Anomaly Benchmark): its scorer, and trailsight's gauge mode run on its corpus.
pub mod nab;
/// CloudTrail log file integrity validation (digest signatures, chain, hashes).
pub mod verify;

#[doc(hidden)]
pub mod fuzzing;
