//! `trailsight verify` and `score --verify` end to end: a generated trail is given digest files
//! signed exactly as CloudTrail signs them (SHA256withRSA over the data signing string, with a
//! key generated here), then damaged in the ways an attacker or an accident would, and each
//! damage must be found.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::trailsight;
use rand::SeedableRng;
use rsa::pkcs1::EncodeRsaPublicKey;
use rsa::{Pkcs1v15Sign, PrivateKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const BUCKET: &str = "trail-bucket";
/// The bucket's key prefix, which a local copy synced from `s3://bucket/prefix/` does not keep.
const PREFIX: &str = "org-trail/";
const TRAIL: &str = "main-trail";

/// rand_chacha (rand_core 0.6) behind the rand_core 0.10 traits `rsa` takes: the keys are
/// the same on every run.
struct TestRng(rand_chacha::ChaCha20Rng);

impl rsa::rand_core::TryRng for TestRng {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(rand::RngCore::next_u32(&mut self.0))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(rand::RngCore::next_u64(&mut self.0))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        rand::RngCore::fill_bytes(&mut self.0, dst);
        Ok(())
    }
}

impl rsa::rand_core::TryCryptoRng for TestRng {}

struct Keys {
    aws: PrivateKey,
    attacker: PrivateKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = TestRng(rand_chacha::ChaCha20Rng::seed_from_u64(22));
        Keys {
            aws: PrivateKey::new(&mut rng, 2048).unwrap(),
            attacker: PrivateKey::new(&mut rng, 2048).unwrap(),
        }
    })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn fingerprint(key: &PrivateKey) -> String {
    let der = key.to_public_key().to_pkcs1_der().unwrap();
    hex::encode(md5::Md5::digest(der.as_bytes()))
}

/// Signs a digest's uncompressed content as CloudTrail does; returns the hex signature.
fn sign(key: &PrivateKey, content: &[u8]) -> String {
    let d: Value = serde_json::from_slice(content).unwrap();
    let to_sign = format!(
        "{}\n{}/{}\n{}\n{}",
        d["digestEndTime"].as_str().unwrap(),
        d["digestS3Bucket"].as_str().unwrap(),
        d["digestS3Object"].as_str().unwrap(),
        hex::encode(Sha256::digest(content)),
        d["previousDigestSignature"].as_str().unwrap_or("null"),
    );
    let hashed = Sha256::digest(to_sign.as_bytes());
    hex::encode(key.sign(Pkcs1v15Sign::new::<Sha256>(), &hashed).unwrap())
}

fn slash(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// A signed trail: the archive root, its digest keys (a chain per account and region, oldest
/// first), and the public key file.
struct Signed {
    root: PathBuf,
    digests: Vec<String>,
    chains: Vec<Vec<String>>,
    keys_json: PathBuf,
    _dir: tempfile::TempDir,
}

impl Signed {
    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn verify(&self, extra: &[&str]) -> (i32, Value, String) {
        let mut args = vec![
            "verify",
            self.root.to_str().unwrap(),
            "--json",
            "--public-key",
            self.keys_json.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = trailsight(&args);
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        let report = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&o.stdout)));
        (o.status.code().unwrap(), report, stderr)
    }
}

/// Problems of the report as (kind, file) pairs.
fn problems(report: &Value) -> Vec<(String, String)> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().unwrap().to_owned(),
                p["file"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Log files (key, path) by delivery hour (Unix hours).
type LogsByHour = BTreeMap<i64, Vec<(String, PathBuf)>>;

/// A one-day generated trail with hourly digests over its log files, signed with the "AWS" key;
/// the newest digest of each chain gets its signature sidecar, as `head-object` would give it.
fn signed_trail() -> Signed {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    let mut opts = trailsight::generate::GenerateOptions::new(root.clone(), 1, 5);
    opts.scale = 0.02;
    opts.incidents = false;
    trailsight::generate::generate(&opts).unwrap();
    let key = &keys().aws;
    let print = fingerprint(key);

    // Log files by (account, region) and delivery hour.
    let mut hours: BTreeMap<(String, String), LogsByHour> = BTreeMap::new();
    for entry in walkdir::WalkDir::new(&root) {
        let entry = entry.unwrap();
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = slash(entry.path().strip_prefix(&root).unwrap());
        if !rel.ends_with(".json.gz") || !rel.contains("/CloudTrail/") {
            continue;
        }
        let parts: Vec<&str> = rel.split('/').collect();
        let name = parts.last().unwrap();
        let minute = trailsight::ingest::discover::delivery_minute_of(name).unwrap();
        hours
            .entry((parts[1].to_owned(), parts[3].to_owned()))
            .or_default()
            .entry(minute.div_euclid(60))
            .or_default()
            .push((rel.clone(), entry.path().to_path_buf()));
    }
    assert!(!hours.is_empty());
    let mut chains = Vec::new();
    for ((account, region), by_hour) in &hours {
        let mut digests = Vec::new();
        let first = *by_hour.keys().next().unwrap();
        let last = *by_hour.keys().last().unwrap();
        let mut previous: Option<(String, String, String)> = None; // key, sha, signature
        for hour in first..=last {
            let start = chrono::DateTime::from_timestamp(hour * 3600, 0).unwrap();
            let end = chrono::DateTime::from_timestamp((hour + 1) * 3600, 0).unwrap();
            let key_rel = format!(
                "AWSLogs/{account}/CloudTrail-Digest/{region}/{}/{account}_CloudTrail-Digest_{region}_{TRAIL}_{region}_{}.json.gz",
                end.format("%Y/%m/%d"),
                end.format("%Y%m%dT%H%M%SZ")
            );
            let logs: Vec<Value> = by_hour
                .get(&hour)
                .into_iter()
                .flatten()
                .map(|(rel, path)| {
                    json!({
                        "s3Bucket": BUCKET,
                        "s3Object": format!("{PREFIX}{rel}"),
                        "hashValue": hex::encode(Sha256::digest(gunzip(&std::fs::read(path).unwrap()))),
                        "hashAlgorithm": "SHA-256",
                        "newestEventTime": end.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                        "oldestEventTime": start.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    })
                })
                .collect();
            let (pb, po, ph, pa, ps) = match &previous {
                Some((k, sha, sig)) => (
                    json!(BUCKET),
                    json!(format!("{PREFIX}{k}")),
                    json!(sha),
                    json!("SHA-256"),
                    json!(sig),
                ),
                None => (
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                ),
            };
            let digest = json!({
                "awsAccountId": account,
                "digestStartTime": start.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "digestEndTime": end.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "digestS3Bucket": BUCKET,
                "digestS3Object": format!("{PREFIX}{key_rel}"),
                "digestPublicKeyFingerprint": print,
                "digestSignatureAlgorithm": "SHA256withRSA",
                "newestEventTime": Value::Null,
                "oldestEventTime": Value::Null,
                "previousDigestS3Bucket": pb,
                "previousDigestS3Object": po,
                "previousDigestHashValue": ph,
                "previousDigestHashAlgorithm": pa,
                "previousDigestSignature": ps,
                "logFiles": logs,
            });
            let content = serde_json::to_vec(&digest).unwrap();
            let signature = sign(key, &content);
            let path = root.join(&key_rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, gzip(&content)).unwrap();
            previous = Some((
                key_rel.clone(),
                hex::encode(Sha256::digest(&content)),
                signature,
            ));
            digests.push(key_rel);
        }
        let (newest, _, signature) = previous.unwrap();
        std::fs::write(root.join(format!("{newest}.signature")), signature).unwrap();
        assert!(digests.len() >= 5, "a day of hourly digests");
        chains.push(digests);
    }
    // The keys as `aws cloudtrail list-public-keys` prints them.
    let der = key.to_public_key().to_pkcs1_der().unwrap();
    use base64::Engine as _;
    let keys_json = dir.path().join("public-keys.json");
    std::fs::write(
        &keys_json,
        json!({"PublicKeyList": [{
            "Value": base64::engine::general_purpose::STANDARD.encode(der.as_bytes()),
            "ValidityStartTime": "2024-01-01T00:00:00Z",
            "ValidityEndTime": "2030-01-01T00:00:00Z",
            "Fingerprint": print,
        }]})
        .to_string(),
    )
    .unwrap();
    Signed {
        root,
        digests: chains.concat(),
        chains,
        keys_json,
        _dir: dir,
    }
}

/// The log files a digest lists, by local key.
fn listed(t: &Signed, digest: &str) -> Vec<String> {
    let d: Value =
        serde_json::from_slice(&gunzip(&std::fs::read(t.path(digest)).unwrap())).unwrap();
    d["logFiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l["s3Object"]
                .as_str()
                .unwrap()
                .trim_start_matches(PREFIX)
                .to_owned()
        })
        .collect()
}

/// A digest in the middle of the first chain that lists at least one log file.
fn middle_digest(t: &Signed) -> String {
    let chain = &t.chains[0];
    let inner = &chain[1..chain.len() - 1];
    let (before, after) = inner.split_at(inner.len() / 2);
    after
        .iter()
        .chain(before.iter().rev())
        .find(|d| !listed(t, d).is_empty())
        .expect("a digest with log files")
        .clone()
}

#[test]
fn an_intact_trail_verifies() {
    let t = signed_trail();
    let (code, report, stderr) = t.verify(&[]);
    assert_eq!(problems(&report), vec![], "{stderr}");
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["signaturesChecked"], true);
    let d = &report["digestFiles"];
    assert_eq!(d["checked"].as_u64().unwrap(), t.digests.len() as u64);
    assert_eq!(d["valid"], d["checked"]);
    let logs = &report["logFiles"];
    assert!(logs["valid"].as_u64().unwrap() > 20, "{report}");
    assert_eq!(logs["valid"], logs["listed"]);
    assert_eq!(logs["notCovered"], 0);

    // The text summary, like validate-logs'.
    let o = trailsight(&[
        "verify",
        t.root.to_str().unwrap(),
        "--public-key",
        t.keys_json.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    assert!(
        text.contains(&format!("{0}/{0} digest files valid", t.digests.len())),
        "{text}"
    );
    assert!(text.contains("Result: all checked files valid"), "{text}");
}

#[test]
fn a_changed_byte_in_a_log_file_is_found() {
    let t = signed_trail();
    let digest = middle_digest(&t);
    let log = listed(&t, &digest).remove(0);
    let mut content = gunzip(&std::fs::read(t.path(&log)).unwrap());
    let at = content.len() / 2;
    content[at] ^= 0x01;
    std::fs::write(t.path(&log), gzip(&content)).unwrap();
    let (code, report, _) = t.verify(&[]);
    assert_eq!(code, 2);
    assert_eq!(problems(&report), vec![("log_altered".to_owned(), log)]);
    assert_eq!(report["logFiles"]["invalid"], 1);
    assert_eq!(report["digestFiles"]["invalid"], 0);
}

#[test]
fn a_deleted_log_file_is_found() {
    let t = signed_trail();
    let digest = middle_digest(&t);
    let log = listed(&t, &digest).remove(0);
    std::fs::remove_file(t.path(&log)).unwrap();
    let (code, report, _) = t.verify(&[]);
    assert_eq!(code, 2);
    assert_eq!(problems(&report), vec![("log_missing".to_owned(), log)]);
}

#[test]
fn a_deleted_digest_in_the_chain_is_found() {
    let t = signed_trail();
    let digest = middle_digest(&t);
    let chain = &t.chains[0];
    let before = chain[chain.iter().position(|d| *d == digest).unwrap() - 1].clone();
    let logs = listed(&t, &digest);
    std::fs::remove_file(t.path(&digest)).unwrap();
    let (code, report, _) = t.verify(&[]);
    assert_eq!(code, 2);
    // The gap; the log files the deleted digest listed, now listed by none; and the digest
    // before it, whose signature only the deleted one held.
    let mut expected: Vec<(String, String)> = logs
        .into_iter()
        .map(|log| ("log_not_covered".to_owned(), log))
        .collect();
    expected.push(("digest_missing".to_owned(), digest.clone()));
    expected.push(("digest_unsigned".to_owned(), before));
    expected.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(problems(&report), expected);

    // The summary names each, as validate-logs does.
    let o = trailsight(&[
        "verify",
        t.root.to_str().unwrap(),
        "--public-key",
        t.keys_json.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    println!("{text}");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text.contains(&format!("Digest file\t{digest}\tINVALID: not found")),
        "{text}"
    );
    assert!(text.contains("digest files INVALID"), "{text}");
    assert!(text.contains("not covered by any digest"), "{text}");
    assert!(text.contains("Result: PROBLEMS FOUND"), "{text}");
}

#[test]
fn a_digest_changed_without_re_signing_is_found() {
    // The attacker alters a log file and writes its new hash into the digest, but cannot sign.
    let t = signed_trail();
    let digest = middle_digest(&t);
    let log = listed(&t, &digest).remove(0);
    let mut content = gunzip(&std::fs::read(t.path(&log)).unwrap());
    content.extend_from_slice(b"\n");
    std::fs::write(t.path(&log), gzip(&content)).unwrap();
    let mut d: Value =
        serde_json::from_slice(&gunzip(&std::fs::read(t.path(&digest)).unwrap())).unwrap();
    d["logFiles"][0]["hashValue"] = json!(hex::encode(Sha256::digest(&content)));
    std::fs::write(t.path(&digest), gzip(&serde_json::to_vec(&d).unwrap())).unwrap();
    let (code, report, _) = t.verify(&[]);
    assert_eq!(code, 2);
    let found = problems(&report);
    assert!(
        found.contains(&("digest_signature_invalid".to_owned(), digest.clone())),
        "{found:?}"
    );
    assert!(
        found.contains(&("digest_altered".to_owned(), digest.clone())),
        "{found:?}"
    );
    // The log matches the forged digest, so its hash passes, but neither it nor any other file
    // the forged digest lists is verified.
    assert_eq!(
        report["logFiles"]["inInvalidDigests"].as_u64().unwrap(),
        listed(&t, &digest).len() as u64,
        "{report}"
    );
    assert_eq!(report["logFiles"]["invalid"], 0);

    // Without signatures, the next digest's hash of it still gives it away.
    let o = trailsight(&[
        "verify",
        t.root.to_str().unwrap(),
        "--hashes-only",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let hashes_only: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(hashes_only["signaturesChecked"], false);
    assert_eq!(
        problems(&hashes_only),
        vec![("digest_altered".to_owned(), digest)]
    );
}

#[test]
fn a_digest_re_signed_with_another_key_is_found() {
    // The newest digest is rewritten to drop a log file and re-signed with the attacker's key;
    // its sidecar holds the attacker's signature.
    let t = signed_trail();
    let newest = t.chains[0].last().unwrap().clone();
    let mut d: Value =
        serde_json::from_slice(&gunzip(&std::fs::read(t.path(&newest)).unwrap())).unwrap();
    d["logFiles"] = json!([]);
    let content = serde_json::to_vec(&d).unwrap();
    std::fs::write(t.path(&newest), gzip(&content)).unwrap();
    std::fs::write(
        t.path(&format!("{newest}.signature")),
        sign(&keys().attacker, &content),
    )
    .unwrap();
    let (code, report, _) = t.verify(&[]);
    assert_eq!(code, 2);
    let found = problems(&report);
    assert!(
        found.contains(&("digest_signature_invalid".to_owned(), newest.clone())),
        "{found:?}"
    );

    // Naming the attacker's key in the digest does not help: that key is not AWS's.
    d["digestPublicKeyFingerprint"] = json!(fingerprint(&keys().attacker));
    let content = serde_json::to_vec(&d).unwrap();
    std::fs::write(t.path(&newest), gzip(&content)).unwrap();
    std::fs::write(
        t.path(&format!("{newest}.signature")),
        sign(&keys().attacker, &content),
    )
    .unwrap();
    let (code, report, _) = t.verify(&[]);
    assert_eq!(code, 2);
    assert!(
        problems(&report).contains(&("digest_key_not_found".to_owned(), newest)),
        "{report}"
    );
}

#[test]
fn an_unsigned_newest_digest_is_reported() {
    let t = signed_trail();
    let newest = t.chains[0].last().unwrap().clone();
    std::fs::remove_file(t.path(&format!("{newest}.signature"))).unwrap();
    let (code, report, _) = t.verify(&[]);
    assert_eq!(code, 2);
    assert_eq!(
        problems(&report),
        vec![("digest_unsigned".to_owned(), newest.clone())]
    );
    // The range can leave it out: the digests before it are signed by their successors.
    let end = std::path::Path::new(&newest)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let stamp = end.trim_end_matches(".json.gz").rsplit('_').next().unwrap();
    let end = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ").unwrap();
    let to = (end - chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let (code, report, _) = t.verify(&["--to", &to]);
    assert_eq!(problems(&report), vec![], "{report}");
    assert_eq!(code, 0);
}

#[test]
fn a_log_file_added_inside_the_digests_time_is_not_covered() {
    let t = signed_trail();
    let digest = middle_digest(&t);
    let log = listed(&t, &digest).remove(0);
    let extra = log.replace(".json.gz", "x.json.gz");
    std::fs::copy(t.path(&log), t.path(&extra)).unwrap();
    let (code, report, _) = t.verify(&[]);
    assert_eq!(code, 2);
    assert_eq!(
        problems(&report),
        vec![("log_not_covered".to_owned(), extra)]
    );
}

#[test]
fn verify_needs_a_key_or_hashes_only() {
    let t = signed_trail();
    let o = trailsight(&["verify", t.root.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "clap's usage error");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--public-key"));
    let missing = t.root.join("nope.pem");
    let o = trailsight(&[
        "verify",
        t.root.to_str().unwrap(),
        "--public-key",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope.pem"));
}

#[test]
fn score_verify_reads_only_verified_files() {
    let t = signed_trail();
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, extra: &[&str]| {
        let store = dir.path().join(format!("{name}.db"));
        let mut args = vec![
            "score",
            t.root.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
            "--quiet",
            "--no-progress",
        ];
        args.extend_from_slice(extra);
        let o = trailsight(&args);
        (
            o.status.code().unwrap(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let key = t.keys_json.to_str().unwrap();
    let (code, plain) = run("plain", &[]);
    assert_eq!(code, 0, "{plain}");
    let (code, verified) = run("verified", &["--verify", "--public-key", key]);
    assert_eq!(code, 0, "{verified}");
    assert!(verified.contains(" 0 not verified"), "{verified}");
    let files_line = |s: &str| {
        s.lines()
            .find(|l| l.trim_start().starts_with("files "))
            .unwrap()
            .to_owned()
    };
    assert_eq!(files_line(&plain), files_line(&verified));

    // One altered file: refused, the rest read, exit status 2.
    let log = listed(&t, &middle_digest(&t)).remove(0);
    let mut content = gunzip(&std::fs::read(t.path(&log)).unwrap());
    content.push(b' ');
    std::fs::write(t.path(&log), gzip(&content)).unwrap();
    let (code, refused) = run("refused", &["--verify", "--public-key", key]);
    assert_eq!(code, 2, "{refused}");
    assert!(refused.contains(" 1 not verified (refused)"), "{refused}");
    assert!(refused.contains(&log), "{refused}");
    let found = |s: &str| -> u64 {
        let line = files_line(s);
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    assert_eq!(found(&refused) + 1, found(&plain), "{refused}");

    // --allow-unverified reads it, still listing it.
    let (code, allowed) = run(
        "allowed",
        &["--verify", "--public-key", key, "--allow-unverified"],
    );
    assert_eq!(code, 0, "{allowed}");
    assert!(allowed.contains("read anyway"), "{allowed}");
    assert_eq!(found(&allowed), found(&plain));
}
