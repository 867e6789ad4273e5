//! What `verify` found: each problem with the file it concerns, the counts `validate-logs`
//! prints, and the set of log files proven intact (what `score --verify` reads). Printed as a
//! summary for people or as one JSON document.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::Serialize;

/// Kinds of problem, each one a reason a file is not verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A digest file that cannot be read, inflated or parsed, or has unusable fields.
    DigestUnreadable,
    /// A digest whose `digestS3Object` is not where it was found.
    DigestMoved,
    /// A digest with no signature to check: no sidecar and no later digest naming it.
    DigestUnsigned,
    /// No public key given has the digest's `digestPublicKeyFingerprint`.
    DigestKeyNotFound,
    /// The signature does not verify: the digest was changed or signed by someone else.
    DigestSignatureInvalid,
    /// Its sidecar and the next digest's `previousDigestSignature` disagree.
    DigestSignatureConflict,
    /// A digest the next digest names as its previous one is not in the archive (deleted).
    DigestMissing,
    /// A digest whose content does not hash to the next digest's `previousDigestHashValue`.
    DigestAltered,
    /// A signature or hash algorithm other than SHA256withRSA / SHA-256.
    UnsupportedAlgorithm,
    /// A log file a digest lists is not in the archive.
    LogMissing,
    /// A log file whose uncompressed content does not hash to the value its digest lists.
    LogAltered,
    /// A log file that could not be read or inflated.
    LogUnreadable,
    /// A log file delivered while digests were being written that no digest lists.
    LogNotCovered,
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Problem {
    /// The file it concerns, by key (`AWSLogs/...`).
    pub file: String,
    /// What is wrong.
    pub kind: ProblemKind,
    /// The detail, in words.
    pub detail: String,
}

/// Counts of digest files.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DigestCounts {
    /// Digests in the range (present, or named by a later digest and missing).
    pub checked: u64,
    /// Those that passed every check.
    pub valid: u64,
    /// Those with a problem.
    pub invalid: u64,
}

/// Counts of log files.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogCounts {
    /// Log files listed by the digests in the range.
    pub listed: u64,
    /// Listed, present, and hashing to the listed value.
    pub valid: u64,
    /// Listed but missing, altered or unreadable.
    pub invalid: u64,
    /// Valid by hash, but listed only by digests that are not themselves valid.
    pub in_invalid_digests: u64,
    /// In the archive, delivered while digests were written, listed by none (a problem).
    pub not_covered: u64,
    /// In the archive, outside the time the digests cover (before the first, after the last, or
    /// while validation was off): not verifiable, not counted as a problem.
    pub outside_digests: u64,
}

/// The result of a verification.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// The range asked for (RFC 3339), if any.
    pub from: Option<String>,
    /// The end of the range, exclusive.
    pub to: Option<String>,
    /// Whether signatures were checked (false with `--hashes-only`).
    pub signatures_checked: bool,
    /// Public keys loaded.
    pub public_keys: usize,
    /// Digest counts.
    pub digest_files: DigestCounts,
    /// Log counts.
    pub log_files: LogCounts,
    /// Every problem, sorted by file.
    pub problems: Vec<Problem>,
    /// Things worth knowing that are not problems (where chains start, gaps in delivery).
    pub notes: Vec<String>,
    /// Log files (keys from `AWSLogs/` on) proven intact: listed in a valid digest, with a
    /// matching hash.
    #[serde(skip)]
    pub verified_logs: BTreeSet<String>,
}

impl VerifyReport {
    /// Whether everything checked was valid.
    pub fn all_valid(&self) -> bool {
        self.problems.is_empty()
    }

    /// The summary printed for people: one line per problem, like `aws cloudtrail
    /// validate-logs`, then the counts.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let range = match (&self.from, &self.to) {
            (None, None) => "the whole archive".to_owned(),
            (f, t) => format!(
                "{} to {}",
                f.as_deref().unwrap_or("the start"),
                t.as_deref().unwrap_or("the end")
            ),
        };
        let _ = writeln!(s, "Validating CloudTrail digest and log files: {range}");
        if self.signatures_checked {
            let _ = writeln!(
                s,
                "Signatures checked with {} public key(s).\n",
                self.public_keys
            );
        } else {
            let _ = writeln!(
                s,
                "Hashes and the digest chain checked; signatures NOT checked (--hashes-only).\n"
            );
        }
        for p in &self.problems {
            let what = if p.file.contains("CloudTrail-Digest/") {
                "Digest file"
            } else {
                "Log file"
            };
            let _ = writeln!(s, "{what}\t{}\tINVALID: {}", p.file, p.detail);
        }
        if !self.problems.is_empty() {
            s.push('\n');
        }
        for note in &self.notes {
            let _ = writeln!(s, "Note: {note}");
        }
        if !self.notes.is_empty() {
            s.push('\n');
        }
        let ratio = |s: &mut String, valid: u64, invalid: u64, name: &str| {
            let total = valid + invalid;
            let _ = write!(s, "{valid}/{total} {name} files valid");
            if invalid > 0 {
                let _ = write!(s, ", {invalid}/{total} {name} files INVALID");
            }
            s.push('\n');
        };
        let d = &self.digest_files;
        let l = &self.log_files;
        if d.checked == 0 {
            let _ = writeln!(s, "No digests found in range");
        } else {
            ratio(&mut s, d.valid, d.invalid, "digest");
        }
        ratio(&mut s, l.valid, l.invalid, "log");
        if l.in_invalid_digests > 0 {
            let _ = writeln!(
                s,
                "{} log files match their hash but are listed only by invalid digests (not verified)",
                l.in_invalid_digests
            );
        }
        if l.not_covered > 0 {
            let _ = writeln!(
                s,
                "{} log files INVALID: not covered by any digest",
                l.not_covered
            );
        }
        if l.outside_digests > 0 {
            let _ = writeln!(
                s,
                "{} log files outside the time the digests cover (not verifiable)",
                l.outside_digests
            );
        }
        let _ = writeln!(
            s,
            "{}",
            if self.all_valid() {
                "Result: all checked files valid"
            } else {
                "Result: PROBLEMS FOUND"
            }
        );
        s
    }
}
