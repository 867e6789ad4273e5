//! Turns command-line inputs into validated CloudTrail records: find the log files ([`discover`]),
//! read and inflate them under a size limit ([`load`]), and stream the records the engine needs out
//! of whatever shape they come in ([`parse`]; Security Lake's OCSF Parquet through [`ocsf`]),
//! reporting every bad file and record without losing the good records around it.

pub mod discover;
pub mod event_time;
mod inflate;
pub mod ocsf;
pub mod parse;
pub mod read;

use std::io;

pub use discover::{discover, DiscoverReport, Discovery, InputFile, InputSource};
pub use event_time::parse_event_time;
pub use parse::{
    parse, CallRecord, FileProblem, Format, IgnoreReason, ParseContext, ParseReport, RecordProblem,
    SkipReason,
};
pub use read::{load, ReadLimits};

/// Why an input could not be found, read or inflated. `path` is what the user sees (the path as
/// given or walked, or `<stdin>`).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file or folder could not be opened, listed or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The input as shown to the user.
        path: String,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// A folder could not be walked (permission denied, symlink loop...).
    #[error("cannot walk {path}: {source}")]
    Walk {
        /// The entry that failed, or the folder given.
        path: String,
        /// What walkdir said.
        #[source]
        source: walkdir::Error,
    },
    /// The (decompressed) content is larger than [`ReadLimits::max_decompressed_bytes`]: a gzip bomb
    /// or a file too large to hold in memory.
    #[error("{path} is larger than the limit of {limit} bytes (after decompression); skipped")]
    TooLarge {
        /// The input as shown to the user.
        path: String,
        /// The limit that was exceeded, in bytes.
        limit: u64,
    },
    /// A named input is neither a regular file nor a folder (a FIFO, a device, a socket):
    /// opening or reading it could block forever.
    #[error(
        "{path} is not a regular file or folder (it is a {kind}); give files, folders, or - for \
         standard input"
    )]
    NotRegular {
        /// The input as shown to the user.
        path: String,
        /// What it is instead, e.g. "FIFO".
        kind: &'static str,
    },
    /// The gzip stream is truncated or corrupt. The bytes inflated before the damage were kept.
    #[error(
        "{path} is a damaged gzip file ({source}); {recovered} decompressed bytes were recovered"
    )]
    Gzip {
        /// The input as shown to the user.
        path: String,
        /// Decompressed bytes recovered before the damage (they are left in the caller's buffer).
        recovered: u64,
        /// What the decoder said.
        #[source]
        source: io::Error,
    },
    /// A Parquet file that is not Security Lake's OCSF API Activity, or cannot be read to its
    /// end (see [`ocsf::OcsfError`]).
    #[error("{path}: {source}")]
    Parquet {
        /// The input as shown to the user.
        path: String,
        /// What was wrong.
        #[source]
        source: ocsf::OcsfError,
    },
}

impl IngestError {
    /// The input the error is about, as shown to the user.
    pub fn path(&self) -> &str {
        match self {
            IngestError::Io { path, .. }
            | IngestError::Walk { path, .. }
            | IngestError::TooLarge { path, .. }
            | IngestError::NotRegular { path, .. }
            | IngestError::Gzip { path, .. }
            | IngestError::Parquet { path, .. } => path,
        }
    }

    /// True when the caller's buffer still holds usable content (the prefix of a damaged gzip
    /// file): parse it, and report the file as damaged.
    pub fn has_partial_content(&self) -> bool {
        matches!(self, IngestError::Gzip { recovered, .. } if *recovered > 0)
    }
}

#[cfg(test)]
mod tests;
