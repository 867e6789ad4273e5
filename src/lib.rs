//! trailsight: AWS CloudTrail Insights, reproduced and replayable.
//!
//! The pipeline, in the order data flows through it:
//!
//! ```text
//! ingest     files, folders, S3 layout, stdin  ->  validated records (borrowed, only needed fields)
//! aggregate  records                           ->  per-minute counts per series, attributions, dedup
//! store      counts, baselines, state          <-> sled (atomic checkpoints)
//! detect     final minutes                     ->  expected rate, bounds, Start/End episodes
//! insight    episodes                          ->  AWS-format Insights records
//! sinks      records                           ->  JSON lines, CloudTrail-Insight/ S3 layout
//! ```
//!
//! [`pipeline::Engine`] wires them together; [`cli`] is the command line over it, and
//! [`generate`] writes synthetic trails with labelled incidents for demos, tests and benchmarks.
#![warn(missing_docs)]

pub mod series;

pub mod aggregate;
pub mod detect;
pub mod ingest;
pub mod insight;
pub mod store;

pub mod cli;
pub mod generate;
pub mod pipeline;
pub mod watch;
