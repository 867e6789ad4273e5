//! CloudTrail log file integrity validation over a local copy of a trail's bucket, as `aws
//! cloudtrail validate-logs` does it online: digest signatures (SHA256withRSA), the chain of
//! digests, and the SHA-256 of every log file. The algorithm, and what is and is not checked,
//! are in docs/verify.md.

pub mod archive;
mod check;
pub mod digest;
pub mod keys;
pub mod report;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use archive::Archive;
pub use keys::KeyRing;
pub use report::{Problem, ProblemKind, VerifyReport};

use crate::series::Minute;

/// Why a verification could not run, or a file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A file or folder could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path as given or walked.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A digest file that is not gzip-compressed digest JSON.
    #[error("{path}: invalid format: {reason}")]
    Format {
        /// The path as walked.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A public key file that could not be used.
    #[error("public key {path}: {reason}")]
    Key {
        /// The key file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// What to verify and how.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Only digests whose time overlaps `[from, to)` are checked, and only log files named in
    /// that range must be listed (Unix seconds; `None`: unbounded).
    pub from: Option<i64>,
    /// The end of the range, exclusive.
    pub to: Option<i64>,
    /// Largest uncompressed log file hashed, in bytes.
    pub max_file_size: u64,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            from: None,
            to: None,
            max_file_size: 1 << 30,
        }
    }
}

impl VerifyOptions {
    /// Options for a range given in minutes (the form `--from`/`--to` parse to).
    pub fn with_minutes(from: Option<Minute>, to: Option<Minute>) -> VerifyOptions {
        VerifyOptions {
            from: from.map(|m| m * 60),
            to: to.map(|m| m * 60),
            ..VerifyOptions::default()
        }
    }
}

/// Verifies the archive under `inputs`. With `keys`, digest signatures are checked; without,
/// only hashes and the chain (the report says so).
pub fn verify(
    inputs: &[PathBuf],
    options: &VerifyOptions,
    keys: Option<&KeyRing>,
) -> Result<VerifyReport, VerifyError> {
    let archive = Archive::walk(inputs)?;
    let mut report = check::run(&archive, options, keys);
    let time = |s: i64| {
        chrono::DateTime::from_timestamp(s, 0).map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
    };
    report.from = options.from.and_then(time);
    report.to = options.to.and_then(time);
    Ok(report)
}
