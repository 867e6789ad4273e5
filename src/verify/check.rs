//! The checks, in the order AWS describes them: each digest's location, signature and link to
//! the digest before it (hash and signature), then each log file a digest lists (present, same
//! hash), then the log files no digest lists.

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;
use rsa::Pkcs1v15Sign;
use sha2::{Digest as _, Sha256};

use super::archive::{self, Archive};
use super::digest::{uncompressed_sha256, LoadedDigest};
use super::keys::KeyRing;
use super::report::{Problem, ProblemKind, VerifyReport};
use super::VerifyOptions;

/// Log files named this close before the end of the newest digest may be delivered after it
/// (a file's name carries the time it was started, not delivered), so they are not required to
/// be listed yet.
const DELIVERY_SLACK_SECONDS: i64 = 3600;

/// The problems found, each once, in file order, and the notes.
#[derive(Default)]
struct Problems(BTreeSet<Problem>, Vec<String>);

impl Problems {
    fn add(&mut self, file: &str, kind: ProblemKind, detail: String) {
        self.0.insert(Problem {
            file: file.to_owned(),
            kind,
            detail,
        });
    }
}

/// A digest in its trail's chain: end, start, previous digest's key, key (sorts by end).
type ChainEntry<'a> = (i64, i64, Option<&'a str>, &'a str);

/// A digest that was read, with its times.
struct Known {
    digest: LoadedDigest,
    start: i64,
    end: i64,
}

/// Runs every check over the archive.
pub fn run(archive: &Archive, options: &VerifyOptions, keys: Option<&KeyRing>) -> VerifyReport {
    let mut report = VerifyReport {
        signatures_checked: keys.is_some(),
        public_keys: keys.map_or(0, KeyRing::len),
        ..VerifyReport::default()
    };
    let mut problems = Problems::default();
    let in_range = |start: i64, end: i64| {
        options.from.is_none_or(|f| end >= f) && options.to.is_none_or(|t| start < t)
    };

    // Every digest is read: those outside the range still carry the signatures and hashes of
    // their neighbours, and list log files.
    let loaded: Vec<(String, Result<Known, String>)> = archive
        .digests
        .par_iter()
        .map(|(key, file)| {
            let known = LoadedDigest::read(&file.path, &file.display)
                .map_err(|e| e.to_string())
                .and_then(|digest| {
                    let start = parse_time(&digest.file.digest_start_time)?;
                    let end = parse_time(&digest.file.digest_end_time)?;
                    Ok(Known { digest, start, end })
                });
            (key.clone(), known)
        })
        .collect();
    let mut digests: BTreeMap<&str, &Known> = BTreeMap::new();
    let mut checked_digests: BTreeSet<String> = BTreeSet::new();
    for (key, known) in &loaded {
        match known {
            Ok(k) => {
                digests.insert(key.as_str(), k);
            }
            Err(reason) => {
                // Its times are unknown: judge it by the time in its name.
                let t = archive::digest_key_time(key);
                if t.is_none_or(|t| in_range(t - 3600, t)) {
                    checked_digests.insert(key.clone());
                    problems.add(key, ProblemKind::DigestUnreadable, reason.clone());
                }
            }
        }
    }

    // Signatures that later digests hold for the digests before them.
    let mut carried: BTreeMap<String, Vec<(&str, String)>> = BTreeMap::new();
    for (&key, k) in &digests {
        if archive::is_backfill(key) {
            continue;
        }
        if let (Some(prev), Some(sig)) = (
            &k.digest.file.previous_digest_s3_object,
            &k.digest.file.previous_digest_signature,
        ) {
            carried
                .entry(archive::object_key(prev))
                .or_default()
                .push((key, sig.trim().to_ascii_lowercase()));
        }
    }
    // The end of each trail's earliest digest: a missing previous digest with an older one in
    // the archive is a gap, not the archive's beginning.
    let mut earliest_end: BTreeMap<String, i64> = BTreeMap::new();
    for (&key, k) in &digests {
        if !archive::is_backfill(key) {
            let end = earliest_end.entry(archive::chain_of(key)).or_insert(k.end);
            *end = (*end).min(k.end);
        }
    }
    let mut valid_digests = BTreeSet::new();
    for (&key, k) in &digests {
        if !in_range(k.start, k.end) {
            continue;
        }
        checked_digests.insert(key.to_owned());
        let file = &k.digest.file;
        if archive::object_key(&file.digest_s3_object) != key {
            problems.add(
                key,
                ProblemKind::DigestMoved,
                format!(
                    "has been moved from its original location {}",
                    file.digest_s3_object
                ),
            );
        }
        // Where its signature comes from: its sidecar, and every later digest that names it.
        let mut signatures: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if let Some(sidecar) = archive.signatures.get(key) {
            match std::fs::read_to_string(&sidecar.path) {
                Ok(text) => signatures
                    .entry(text.trim().to_ascii_lowercase())
                    .or_default()
                    .push(format!("its sidecar {}", sidecar.display)),
                Err(e) => problems.add(
                    key,
                    ProblemKind::DigestUnsigned,
                    format!("its signature file {} cannot be read: {e}", sidecar.display),
                ),
            }
        }
        for (next, sig) in carried.get(key).into_iter().flatten() {
            signatures
                .entry(sig.clone())
                .or_default()
                .push(format!("the next digest {next}"));
        }
        if signatures.len() > 1 {
            let sources: Vec<String> = signatures.values().flatten().cloned().collect();
            problems.add(
                key,
                ProblemKind::DigestSignatureConflict,
                format!("its signature differs between {}", sources.join(" and ")),
            );
        }
        if let Some(keys) = keys {
            if !file
                .digest_signature_algorithm
                .eq_ignore_ascii_case("SHA256withRSA")
            {
                problems.add(
                    key,
                    ProblemKind::UnsupportedAlgorithm,
                    format!(
                        "signature algorithm {} (only SHA256withRSA is known)",
                        file.digest_signature_algorithm
                    ),
                );
            } else if signatures.is_empty() {
                problems.add(
                    key,
                    ProblemKind::DigestUnsigned,
                    format!(
                        "no signature: the newest digest's signature is only in its S3 metadata; save \
                         it as {key}{} (see docs/verify.md)",
                        archive::SIGNATURE_SUFFIX
                    ),
                );
            } else {
                match keys.get(&file.digest_public_key_fingerprint) {
                    None => problems.add(
                        key,
                        ProblemKind::DigestKeyNotFound,
                        format!(
                            "public key not found for fingerprint {}",
                            file.digest_public_key_fingerprint
                        ),
                    ),
                    Some(public) => {
                        let hashed = Sha256::digest(k.digest.signing_string().as_bytes());
                        let verified = signatures.keys().any(|sig| {
                            hex::decode(sig).is_ok_and(|bytes| {
                                public
                                    .verify(Pkcs1v15Sign::new::<Sha256>(), &hashed, &bytes)
                                    .is_ok()
                            })
                        });
                        if !verified {
                            problems.add(
                                key,
                                ProblemKind::DigestSignatureInvalid,
                                "signature verification failed".into(),
                            );
                        }
                    }
                }
            }
        }
        check_link(
            archive,
            &digests,
            &earliest_end,
            key,
            k,
            options,
            &mut problems,
        );
        valid_digests.insert(key);
    }

    // Log files listed by the digests in the range, each checked once.
    let mut listed: BTreeMap<String, Vec<(&str, &str, &str)>> = BTreeMap::new();
    let mut listed_anywhere = BTreeSet::new();
    for (&key, k) in &digests {
        let checked = checked_digests.contains(key);
        for log in &k.digest.file.log_files {
            let log_key = archive::object_key(&log.s3_object);
            listed_anywhere.insert(log_key.clone());
            if checked {
                listed.entry(log_key).or_default().push((
                    key,
                    log.hash_value.as_str(),
                    log.hash_algorithm.as_str(),
                ));
            }
        }
    }
    let hashed: Vec<(&String, Result<String, String>)> = listed
        .par_iter()
        .map(|(log_key, _)| {
            let result = match archive.logs.get(log_key) {
                None => Err(String::new()),
                Some(file) => uncompressed_sha256(&file.path, options.max_file_size),
            };
            (log_key, result)
        })
        .collect();

    // Problems so far decide which digests are valid.
    let mut invalid_digests: BTreeSet<String> = BTreeSet::new();
    for p in &problems.0 {
        invalid_digests.insert(p.file.clone());
    }
    valid_digests.retain(|k| !invalid_digests.contains(*k));
    report.digest_files.checked = (checked_digests.len()
        + invalid_digests
            .iter()
            .filter(|k| !checked_digests.contains(*k))
            .count()) as u64;
    report.digest_files.invalid = invalid_digests.len() as u64;
    report.digest_files.valid = report.digest_files.checked - report.digest_files.invalid;

    for (log_key, result) in hashed {
        report.log_files.listed += 1;
        let Some(entries) = listed.get(log_key) else {
            continue;
        };
        let mut ok = true;
        match result {
            Err(reason) if archive.logs.contains_key(log_key) => {
                ok = false;
                problems.add(log_key, ProblemKind::LogUnreadable, reason);
            }
            Err(_) => {
                ok = false;
                let by = entries.first().map_or("", |e| e.0);
                problems.add(
                    log_key,
                    ProblemKind::LogMissing,
                    format!("not found (listed by {by})"),
                );
            }
            Ok(actual) => {
                for (digest, expected, algorithm) in entries {
                    if !algorithm.eq_ignore_ascii_case("SHA-256") {
                        ok = false;
                        problems.add(
                            log_key,
                            ProblemKind::UnsupportedAlgorithm,
                            format!("hash algorithm {algorithm} in {digest}"),
                        );
                    } else if !expected.eq_ignore_ascii_case(&actual) {
                        ok = false;
                        problems.add(
                            log_key,
                            ProblemKind::LogAltered,
                            format!("hash value doesn't match the one {digest} lists"),
                        );
                    }
                }
            }
        }
        if ok {
            report.log_files.valid += 1;
            if entries.iter().any(|e| valid_digests.contains(e.0)) {
                report.verified_logs.insert(log_key.clone());
            } else {
                report.log_files.in_invalid_digests += 1;
            }
        } else {
            report.log_files.invalid += 1;
        }
    }

    // Log files that no digest lists: a problem when delivered while digests were written.
    let mut covered: BTreeMap<(String, String), Vec<(i64, i64)>> = BTreeMap::new();
    let mut chains: BTreeMap<String, Vec<ChainEntry<'_>>> = BTreeMap::new();
    for (&key, k) in &digests {
        let previous = k.digest.file.previous_digest_s3_object.as_deref();
        chains
            .entry(archive::chain_of(key))
            .or_default()
            .push((k.end, k.start, previous, key));
    }
    for chain in chains.values_mut() {
        chain.sort_unstable();
        let mut older_end: Option<i64> = None;
        for &(end, start, previous, key) in chain.iter() {
            // A digest that names a previous one claims delivery was covered since the chain's
            // last digest, so a deleted digest leaves no hole for its log files to hide in.
            let from = match previous {
                Some(p) if !archive::is_backfill(key) => older_end
                    .or_else(|| archive::digest_key_time(p).map(|t| t - 3600))
                    .map_or(start, |t| t.min(start)),
                _ => start,
            };
            if !archive::is_backfill(key) {
                older_end = Some(end);
            }
            if let Some((account, region)) = archive::account_region(key) {
                covered
                    .entry((account.to_owned(), region.to_owned()))
                    .or_default()
                    .push((from, end));
            }
        }
    }
    for spans in covered.values_mut() {
        *spans = merge(std::mem::take(spans));
    }
    report.notes = std::mem::take(&mut problems.1);
    let mut outside_examples = Vec::new();
    for log_key in archive.logs.keys() {
        if listed_anywhere.contains(log_key) {
            continue;
        }
        let name = log_key.rsplit('/').next().unwrap_or(log_key);
        let named = crate::ingest::discover::delivery_minute_of(name).map(|m| m * 60);
        if let Some(t) = named {
            if !in_range(t, t) {
                continue;
            }
        } else if options.from.is_some() || options.to.is_some() {
            continue;
        }
        let inside = named
            .zip(archive::account_region(log_key))
            .is_some_and(|(t, (a, r))| {
                covered
                    .get(&(a.to_owned(), r.to_owned()))
                    .is_some_and(|spans| {
                        spans
                            .iter()
                            .any(|&(s, e)| t >= s && t + DELIVERY_SLACK_SECONDS <= e)
                    })
            });
        if inside {
            report.log_files.not_covered += 1;
            problems.add(
                log_key,
                ProblemKind::LogNotCovered,
                "not covered by any digest (delivered while digests were written)".into(),
            );
        } else {
            report.log_files.outside_digests += 1;
            if outside_examples.len() < 3 {
                outside_examples.push(log_key.clone());
            }
        }
    }
    if !outside_examples.is_empty() {
        report.notes.push(format!(
            "{} log files are outside the time the digests cover and cannot be verified, e.g. {}",
            report.log_files.outside_digests,
            outside_examples.join(", ")
        ));
    }
    report.problems = problems.0.into_iter().collect();
    report
}

/// Checks a digest's link to the one before it: present (or else why it may be absent), and
/// hashing to the value this digest records.
fn check_link(
    archive: &Archive,
    digests: &BTreeMap<&str, &Known>,
    earliest_end: &BTreeMap<String, i64>,
    key: &str,
    k: &Known,
    options: &VerifyOptions,
    problems: &mut Problems,
) {
    if archive::is_backfill(key) {
        return;
    }
    let file = &k.digest.file;
    let older_exists = earliest_end
        .get(&archive::chain_of(key))
        .is_some_and(|&end| end < k.start);
    let Some(prev) = &file.previous_digest_s3_object else {
        if older_exists {
            problems.1.push(format!(
                "a new digest chain starts at {key}: no digests before {} (validation or logging was off)",
                file.digest_start_time
            ));
        }
        return;
    };
    let prev_key = archive::object_key(prev);
    match digests.get(prev_key.as_str()) {
        Some(p) => {
            let algorithm = file.previous_digest_hash_algorithm.as_deref().unwrap_or("");
            let expected = file.previous_digest_hash_value.as_deref().unwrap_or("");
            if !algorithm.eq_ignore_ascii_case("SHA-256") {
                problems.add(
                    key,
                    ProblemKind::UnsupportedAlgorithm,
                    format!("previous digest hash algorithm {algorithm:?}"),
                );
            } else if !expected.eq_ignore_ascii_case(&p.digest.content_sha256) {
                problems.add(
                    &prev_key,
                    ProblemKind::DigestAltered,
                    format!("its content does not hash to the value the next digest {key} records"),
                );
            }
        }
        None if archive.digests.contains_key(&prev_key) => {} // unreadable: reported already
        None => {
            let prev_time = archive::digest_key_time(&prev_key);
            let required = older_exists
                || options
                    .from
                    .zip(prev_time)
                    .is_some_and(|(from, t)| t > from);
            if required {
                problems.add(
                    &prev_key,
                    ProblemKind::DigestMissing,
                    format!("not found: the next digest {key} names it as its previous digest"),
                );
            } else {
                problems.1.push(format!(
                    "the archive's digests start at {key}; its previous digest {prev_key} is not in \
                     the archive (give --from to require it)"
                ));
            }
        }
    }
}

/// A digest time (`2015-08-17T14:01:31Z`) in Unix seconds.
fn parse_time(text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp())
        .map_err(|e| format!("bad time {text:?}: {e}"))
}

/// Overlapping or touching spans merged (a chain's hourly digests make one span).
fn merge(mut spans: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    spans.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(spans.len());
    for (s, e) in spans {
        match out.last_mut() {
            Some(last) if s <= last.1 + 1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}
