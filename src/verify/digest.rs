//! One CloudTrail digest file: its JSON fields, the SHA-256 of its uncompressed content, and the
//! string CloudTrail signs for it ("Custom implementations of CloudTrail log file integrity
//! validation", step D; the AWS CLI's `validate-logs` builds the same string).

use std::io::Read;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::VerifyError;

/// Largest uncompressed digest file accepted: an hour's listing is a few hundred kilobytes.
pub const MAX_DIGEST_BYTES: u64 = 64 << 20;

/// The fields of a digest file that validation reads (CloudTrail digest file structure).
#[derive(Debug, Clone, Deserialize)]
pub struct DigestFile {
    /// The account the digest was delivered for.
    #[serde(rename = "awsAccountId")]
    pub aws_account_id: String,
    /// Start of the delivery-time range the digest covers (ISO 8601, UTC).
    #[serde(rename = "digestStartTime")]
    pub digest_start_time: String,
    /// End of that range; also the first line of the signing string, as written.
    #[serde(rename = "digestEndTime")]
    pub digest_end_time: String,
    /// The bucket the digest was delivered to.
    #[serde(rename = "digestS3Bucket")]
    pub digest_s3_bucket: String,
    /// The digest's own object key.
    #[serde(rename = "digestS3Object")]
    pub digest_s3_object: String,
    /// Hex MD5 of the DER public key whose private key signed this digest.
    #[serde(rename = "digestPublicKeyFingerprint")]
    pub digest_public_key_fingerprint: String,
    /// `SHA256withRSA`.
    #[serde(rename = "digestSignatureAlgorithm")]
    pub digest_signature_algorithm: String,
    /// The previous digest's bucket (null in a starting digest).
    #[serde(rename = "previousDigestS3Bucket", default)]
    pub previous_digest_s3_bucket: Option<String>,
    /// The previous digest's object key (null in a starting digest).
    #[serde(rename = "previousDigestS3Object", default)]
    pub previous_digest_s3_object: Option<String>,
    /// Hex hash of the previous digest's uncompressed content.
    #[serde(rename = "previousDigestHashValue", default)]
    pub previous_digest_hash_value: Option<String>,
    /// `SHA-256`.
    #[serde(rename = "previousDigestHashAlgorithm", default)]
    pub previous_digest_hash_algorithm: Option<String>,
    /// The previous digest's signature, hex (null in a starting digest).
    #[serde(rename = "previousDigestSignature", default)]
    pub previous_digest_signature: Option<String>,
    /// The log files delivered during the digest's hour.
    #[serde(rename = "logFiles", default)]
    pub log_files: Vec<LogFileEntry>,
}

/// One log file a digest lists.
#[derive(Debug, Clone, Deserialize)]
pub struct LogFileEntry {
    /// The log file's bucket.
    #[serde(rename = "s3Bucket")]
    pub s3_bucket: String,
    /// The log file's object key.
    #[serde(rename = "s3Object")]
    pub s3_object: String,
    /// Hex hash of the log file's uncompressed content.
    #[serde(rename = "hashValue")]
    pub hash_value: String,
    /// `SHA-256`.
    #[serde(rename = "hashAlgorithm")]
    pub hash_algorithm: String,
}

/// A digest file as read from disk.
#[derive(Debug, Clone)]
pub struct LoadedDigest {
    /// Its fields.
    pub file: DigestFile,
    /// Hex SHA-256 of its uncompressed content (what the signing string and the next digest's
    /// `previousDigestHashValue` hold).
    pub content_sha256: String,
}

impl LoadedDigest {
    /// Reads a digest file: gunzips it (a plain JSON file is taken as is), hashes the
    /// uncompressed bytes and parses them.
    pub fn read(path: &std::path::Path, display: &str) -> Result<LoadedDigest, VerifyError> {
        let bytes = std::fs::read(path).map_err(|source| VerifyError::Io {
            path: display.to_owned(),
            source,
        })?;
        let content = inflate(&bytes, MAX_DIGEST_BYTES).map_err(|reason| VerifyError::Format {
            path: display.to_owned(),
            reason,
        })?;
        Self::parse(&content).map_err(|reason| VerifyError::Format {
            path: display.to_owned(),
            reason,
        })
    }

    /// Parses uncompressed digest content.
    pub fn parse(content: &[u8]) -> Result<LoadedDigest, String> {
        let file: DigestFile =
            serde_json::from_slice(content).map_err(|e| format!("not a digest file: {e}"))?;
        Ok(LoadedDigest {
            file,
            content_sha256: hex::encode(Sha256::digest(content)),
        })
    }

    /// The string CloudTrail signs: `digestEndTime` as written, `bucket/object`, the hex SHA-256
    /// of the uncompressed digest, and the previous digest's hex signature (`null` in a starting
    /// digest, as AWS's Java signer writes a null), joined by `\n` with no trailing newline.
    pub fn signing_string(&self) -> String {
        signing_string(
            &self.file.digest_end_time,
            &self.file.digest_s3_bucket,
            &self.file.digest_s3_object,
            &self.content_sha256,
            self.file.previous_digest_signature.as_deref(),
        )
    }
}

/// The data signing string from its parts (see [`LoadedDigest::signing_string`]).
pub fn signing_string(
    end_time: &str,
    bucket: &str,
    object: &str,
    content_sha256_hex: &str,
    previous_signature: Option<&str>,
) -> String {
    format!(
        "{end_time}\n{bucket}/{object}\n{content_sha256_hex}\n{}",
        previous_signature.unwrap_or("null")
    )
}

/// Gzip's first two bytes.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Inflates gzip content (every member) up to `limit` bytes; content without gzip's magic is
/// returned as is.
pub fn inflate(bytes: &[u8], limit: u64) -> Result<Vec<u8>, String> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        if bytes.len() as u64 > limit {
            return Err(format!("larger than {limit} bytes"));
        }
        return Ok(bytes.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("damaged gzip: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!("larger than {limit} bytes uncompressed"));
    }
    Ok(out)
}

/// Hex SHA-256 of a file's uncompressed content, streamed (gzip detected by its magic bytes; a
/// file without it is hashed as stored), refusing more than `limit` uncompressed bytes.
pub fn uncompressed_sha256(path: &std::path::Path, limit: u64) -> Result<String, String> {
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut head = [0u8; 2];
    let mut got = 0;
    while got < head.len() {
        match file.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let rest = std::io::Cursor::new(head[..got].to_vec()).chain(file);
    let reader: Box<dyn Read> = if head[..got] == GZIP_MAGIC {
        Box::new(flate2::read::MultiGzDecoder::new(rest))
    } else {
        Box::new(rest)
    };
    let mut reader = reader.take(limit + 1);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("damaged gzip: {e}")),
        };
        total += n as u64;
        if total > limit {
            return Err(format!("larger than {limit} bytes uncompressed"));
        }
        if let Some(chunk) = buf.get(..n) {
            hasher.update(chunk);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}
