//! `trailsight verify` and `score --verify`: the command line over [`crate::verify`]. The
//! checks live there; this turns flags into options, prints the report, and, for `score`, keeps
//! only the log files the report proves intact.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::verify::{KeyRing, VerifyOptions, VerifyReport};

use super::{EXIT_INPUT_FAILED, EXIT_OK};

#[derive(Debug, Args)]
pub(super) struct VerifyArgs {
    /// The local copy of the trail's bucket (folders in S3 layout, e.g. from `aws s3 sync`).
    #[arg(required = true, value_name = "ARCHIVE")]
    inputs: Vec<PathBuf>,
    /// CloudTrail public keys: the JSON `aws cloudtrail list-public-keys` prints, PEM, base64
    /// or DER. Repeat for several files.
    #[arg(
        long = "public-key",
        value_name = "FILE",
        required_unless_present = "hashes_only"
    )]
    public_keys: Vec<PathBuf>,
    /// Check hashes and the digest chain only, without signatures (the report says so).
    #[arg(long, conflicts_with = "public_keys")]
    hashes_only: bool,
    /// Check digests from this time on (RFC 3339, `YYYY-MM-DDTHH:MM` or `YYYY-MM-DD`, UTC).
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// Check digests before this time (same formats).
    #[arg(long, value_name = "TIME")]
    to: Option<String>,
    /// Print the report as one JSON document.
    #[arg(long)]
    json: bool,
    /// Largest uncompressed log file hashed, in bytes.
    #[arg(long, default_value_t = 1 << 30, value_name = "BYTES")]
    max_file_size: u64,
}

/// `score --verify`: which log files `score` may read.
#[derive(Debug, Args)]
pub(super) struct ScoreVerifyArgs {
    /// Read only log files that the trail's digest files prove intact (signature, chain and
    /// hash, as `verify` checks them; see docs/verify.md). Other files are refused and listed,
    /// and the run exits with status 2.
    #[arg(long)]
    verify: bool,
    /// CloudTrail public keys for --verify (as for `verify --public-key`).
    #[arg(long = "public-key", value_name = "FILE", requires = "verify")]
    public_keys: Vec<PathBuf>,
    /// With --verify, read unverified files too, listing them as unverified.
    #[arg(long, requires = "verify")]
    allow_unverified: bool,
}

/// `trailsight verify`.
pub(super) fn verify(args: VerifyArgs) -> Result<u8> {
    let parse = |flag: &str, text: &Option<String>| -> Result<Option<i64>> {
        text.as_deref()
            .map(|t| {
                crate::view::parse_time(t).with_context(|| {
                    format!(
                        "--{flag} {t:?}: expected RFC 3339, YYYY-MM-DDTHH:MM or YYYY-MM-DD (UTC)"
                    )
                })
            })
            .transpose()
    };
    let (from, to) = (parse("from", &args.from)?, parse("to", &args.to)?);
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            bail!("--from must be before --to");
        }
    }
    let keys = if args.hashes_only {
        None
    } else {
        Some(KeyRing::load(&args.public_keys)?)
    };
    let mut options = VerifyOptions::with_minutes(from, to);
    options.max_file_size = args.max_file_size;
    let report = crate::verify::verify(&args.inputs, &options, keys.as_ref())?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", report.to_text())?;
    }
    out.flush()?;
    Ok(if report.all_valid() {
        EXIT_OK
    } else {
        EXIT_INPUT_FAILED
    })
}

/// What `score --verify` decided.
pub(super) struct Screened {
    /// The inputs `score` reads: the verified files, or everything with --allow-unverified.
    pub inputs: Vec<PathBuf>,
    /// Files not verified (refused, or read anyway with --allow-unverified).
    pub unverified: u64,
    /// Whether they were refused.
    pub refused: bool,
}

/// `score --verify`: verifies the archive, then keeps the log files the report proves intact.
/// Files without an `AWSLogs/` key (and standard input) cannot be verified.
pub(super) fn screen(inputs: &[PathBuf], args: &ScoreVerifyArgs) -> Result<Option<Screened>> {
    if !args.verify {
        return Ok(None);
    }
    if args.public_keys.is_empty() {
        bail!("--verify needs --public-key FILE (from `aws cloudtrail list-public-keys`)");
    }
    if inputs.iter().any(|i| i.as_os_str() == "-") {
        bail!("--verify cannot check standard input: give the archive's folder");
    }
    let keys = KeyRing::load(&args.public_keys)?;
    let report = crate::verify::verify(inputs, &VerifyOptions::default(), Some(&keys))?;
    let files = crate::ingest::discover(inputs).files;
    let (verified, unverified): (Vec<_>, Vec<_>) = files
        .into_iter()
        .partition(|f| report.verified_logs.contains(&f.ingest_key));
    print_screen(&report, &unverified, args.allow_unverified)?;
    let inputs = if args.allow_unverified {
        inputs.to_vec()
    } else {
        let mut seen = BTreeSet::new();
        verified
            .into_iter()
            .filter_map(|f| match f.source {
                crate::ingest::InputSource::File(path) => seen.insert(path.clone()).then_some(path),
                crate::ingest::InputSource::Stdin => None,
            })
            .collect()
    };
    Ok(Some(Screened {
        inputs,
        unverified: unverified.len() as u64,
        refused: !args.allow_unverified,
    }))
}

fn print_screen(
    report: &VerifyReport,
    unverified: &[crate::ingest::InputFile],
    allowed: bool,
) -> Result<()> {
    let mut e = std::io::stderr().lock();
    let what = if allowed {
        "read anyway (--allow-unverified)"
    } else {
        "refused"
    };
    writeln!(
        e,
        "trailsight score --verify: {} log files verified, {} not verified ({what}); {} problems in the archive",
        report.verified_logs.len(),
        unverified.len(),
        report.problems.len()
    )?;
    for p in report.problems.iter().take(20) {
        writeln!(e, "  problem   {}: {}", p.file, p.detail)?;
    }
    for f in unverified.iter().take(20) {
        writeln!(e, "  unverified {}", f.display)?;
    }
    if unverified.len() > 20 {
        writeln!(
            e,
            "  ... and {} more unverified files",
            unverified.len() - 20
        )?;
    }
    Ok(())
}
