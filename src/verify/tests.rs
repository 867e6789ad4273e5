//! Unit tests against AWS's published examples: the data signing string and key fingerprints.

use super::digest::{signing_string, LoadedDigest};
use super::keys::{md5_hex, KeyRing};
use base64::Engine as _;

/// The example `Data_To_Sign_String` in "Custom implementations of CloudTrail log file integrity
/// validation" (step D), rebuilt from its parts. The page wraps the previous signature over
/// several lines; its first 103 characters stand for it here.
#[test]
fn signing_string_matches_the_aws_example() {
    let previous = "6e8540b83c3ac86a0312d971a225361d28ed0af20d70c211a2d405e32abf529a8145c2966e3bb47362383a52441545ed091fb81";
    let s = signing_string(
        "2015-08-12T04:01:31Z",
        "S3-bucket-name",
        "AWSLogs/111122223333/CloudTrail-Digest/us-east-2/2015/08/12/111122223333_us-east-2_CloudTrail-Digest_us-east-2_20150812T040131Z.json.gz",
        "4ff08d7c6ecd6eb313257e839645d20363ee3784a2328a7d76b99b53cc9bcacd",
        Some(previous),
    );
    let expected = format!(
        "2015-08-12T04:01:31Z\n\
         S3-bucket-name/AWSLogs/111122223333/CloudTrail-Digest/us-east-2/2015/08/12/111122223333_us-east-2_CloudTrail-Digest_us-east-2_20150812T040131Z.json.gz\n\
         4ff08d7c6ecd6eb313257e839645d20363ee3784a2328a7d76b99b53cc9bcacd\n\
         {previous}"
    );
    assert_eq!(s, expected);
}

/// A starting digest has a null previous signature, which the signer writes as `null` (the AWS
/// CLI's validator says so: "The value must be 'null' to match the Java implementation").
#[test]
fn starting_digest_signs_null() {
    let content = br#"{"awsAccountId":"111122223333","digestStartTime":"2015-08-17T14:01:31Z","digestEndTime":"2015-08-17T15:01:31Z","digestS3Bucket":"b","digestS3Object":"AWSLogs/x.json.gz","digestPublicKeyFingerprint":"31e8b5433410dfb61a9dc45cc65b22ff","digestSignatureAlgorithm":"SHA256withRSA","previousDigestS3Bucket":null,"previousDigestS3Object":null,"previousDigestHashValue":null,"previousDigestHashAlgorithm":null,"previousDigestSignature":null,"logFiles":[]}"#;
    let d = LoadedDigest::parse(content).unwrap();
    // SHA-256 of the bytes above, computed independently (Python hashlib).
    let sha = "e632f69d353d8565ba6f37605a8b4e38db88498b2fabbd9a60412bc3d3fe2e08";
    assert_eq!(d.content_sha256, sha);
    assert_eq!(
        d.signing_string(),
        format!("2015-08-17T15:01:31Z\nb/AWSLogs/x.json.gz\n{sha}\nnull")
    );
}

/// The three keys of the sample `list-public-keys` response in AWS's guide, with the
/// fingerprints printed beside them: the fingerprint is the MD5 of the DER bytes, PKCS#1 for the
/// first two and SubjectPublicKeyInfo for the third, and a key ring files each under it.
#[test]
fn fingerprints_match_the_aws_sample_keys() {
    let samples = [
        ("8eba5db5bea9b640d1c96a77256fe7f2", "MIIBCgKCAQEAn11L2YZ9h7onug2ILi1MWyHiMRsTQjfWE+pHVRLk1QjfWhirG+lpOa8NrwQ/r7Ah5bNL6HepznOU9XTDSfmmnP97mqyc7z/upfZdS/AHhYcGaz7n6Wc/RRBU6VmiPCrAUojuSk6/GjvA8iOPFsYDuBtviXarvuLPlrT9kAd4Lb+rFfR5peEgBEkhlzc5HuWO7S0y+KunqxX6jQBnXGMtxmPBPP0FylgWGNdFtks/4YSKcgqwH0YDcawP9GGGDAeCIqPWIXDLG1jOjRRzWfCmD0iJUkz8vTsn4hq/5ZxRFE7UBAUiVcGbdnDdvVfhF9C3dQiDq3k7adQIziLT0cShgQIDAQAB"),
        ("8933b39ddc64d26d8e14ffbf6566fee4", "MIIBCgKCAQEApfYL2FiZhpN74LNWVUzhR+VheYhwhYm8w0n5Gf6i95ylW5kBAWKVEmnAQG7BvS5g9SMqFDQx52fW7NWV44IvfJ2xGXT+wT+DgR6ZQ+6yxskQNqV5YcXj4Aa5Zz4jJfsYjDuO2MDTZNIzNvBNzaBJ+r2WIWAJ/Xq54kyF63B6WE38vKuDE7nSd1FqQuEoNBFLPInvgggYe2Ym1Refe2z71wNcJ2kY+q0h1BSHrSM8RWuJIw7MXwF9iQncg9jYzUlNJomozQzAG5wSRfbplcCYNY40xvGd/aAmO0m+Y+XFMrKwtLCwseHPvj843qVno6x4BJN9bpWnoPo9sdsbGoiK3QIDAQAB"),
        ("31e8b5433410dfb61a9dc45cc65b22ff", "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAqlzPJbvZJ42UdcmLfPUqXYNfOs6I8lCfao/tOs8CmzPOEdtLWugB9xoIUz78qVHdKIqxbaG4jWHfJBiOSSFBM0lt8cdVo4TnRa7oG9io5pysS6DJhBBAeXsicufsiFJR+wrUNh8RSLxL4k6G1+BhLX20tJkZ/erT97tDGBujAelqseGg3vPZbTx9SMfOLN65PdLFudLP7Gat0Z9p5jw/rjpclKfo9Bfc3heeBxWGKwBBOKnFAaN9V57pOaosCvPKmHd9bg7jsQkI9Xp22IzGLsTFJZYVA3KiTAElDMu80iFXPHEq9hKNbt9e4URFam+1utKVEiLkR2disdCmPTK0VQIDAQAB"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let json = serde_json::json!({
        "PublicKeyList": samples.iter().map(|(fp, v)| serde_json::json!({
            "ValidityStartTime": "2015-07-08T01:04:01Z", "Value": v, "Fingerprint": fp
        })).collect::<Vec<_>>()
    });
    let path = dir.path().join("keys.json");
    std::fs::write(&path, json.to_string()).unwrap();
    let ring = KeyRing::load(&[path]).unwrap();
    assert_eq!(ring.len(), 3);
    for (fp, value) in samples {
        let der = base64::engine::general_purpose::STANDARD
            .decode(value)
            .unwrap();
        assert_eq!(md5_hex(&der), fp);
        assert!(ring.get(fp).is_some(), "{fp}");
        assert!(ring.get(&fp.to_ascii_uppercase()).is_some());
    }
    assert!(ring.get("00000000000000000000000000000000").is_none());
}

#[test]
fn a_wrong_stated_fingerprint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    std::fs::write(&path, r#"{"PublicKeyList":[{"Value":"MIIBCgKCAQEAn11L2YZ9h7onug2ILi1MWyHiMRsTQjfWE+pHVRLk1QjfWhirG+lpOa8NrwQ/r7Ah5bNL6HepznOU9XTDSfmmnP97mqyc7z/upfZdS/AHhYcGaz7n6Wc/RRBU6VmiPCrAUojuSk6/GjvA8iOPFsYDuBtviXarvuLPlrT9kAd4Lb+rFfR5peEgBEkhlzc5HuWO7S0y+KunqxX6jQBnXGMtxmPBPP0FylgWGNdFtks/4YSKcgqwH0YDcawP9GGGDAeCIqPWIXDLG1jOjRRzWfCmD0iJUkz8vTsn4hq/5ZxRFE7UBAUiVcGbdnDdvVfhF9C3dQiDq3k7adQIziLT0cShgQIDAQAB","Fingerprint":"8933b39ddc64d26d8e14ffbf6566fee4"}]}"#).unwrap();
    let err = KeyRing::load(&[path]).unwrap_err().to_string();
    assert!(err.contains("not the MD5"), "{err}");
}

#[test]
fn keys_and_chains_of_digest_names() {
    use super::archive::{account_region, chain_of, digest_key_time, object_key};
    let a = "AWSLogs/111122223333/CloudTrail-Digest/us-east-2/2015/08/17/111122223333_CloudTrail-Digest_us-east-2_trail_us-east-2_20150817T150131Z.json.gz";
    let b = "AWSLogs/111122223333/CloudTrail-Digest/us-east-2/2015/08/18/111122223333_CloudTrail-Digest_us-east-2_trail_us-east-2_20150818T000131Z_backfill.json.gz";
    assert_eq!(chain_of(a), chain_of(b));
    assert_eq!(
        chain_of(a),
        "AWSLogs/111122223333/CloudTrail-Digest/us-east-2/111122223333_CloudTrail-Digest_us-east-2_trail_us-east-2"
    );
    assert_eq!(digest_key_time(a), Some(1_439_823_691));
    assert_eq!(digest_key_time(b), Some(1_439_856_091));
    assert_eq!(object_key(&format!("my/prefix/{a}")), a);
    assert_eq!(account_region(a), Some(("111122223333", "us-east-2")));
    assert_eq!(
        account_region("AWSLogs/o-abc/222233334444/CloudTrail/eu-west-1/2024/01/01/x.json.gz"),
        Some(("222233334444", "eu-west-1"))
    );
}
