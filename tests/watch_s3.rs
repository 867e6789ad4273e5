//! The S3 source of `watch` against a real S3-API server (moto, started here on a loopback port):
//! which keys a poll returns and in what order, no repeats, new files, days and regions, exact
//! bytes, the size limit, and clear errors for a missing bucket, a closed port and a dead endpoint.

use std::io::Write;
use std::net::TcpListener;
use std::process::Command;
use std::sync::Once;
use std::time::{Duration, Instant};

mod common;

use common::{free_port, start_moto};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use chrono::NaiveDate;
use flate2::write::GzEncoder;
use trailsight::source::s3::{S3Error, S3Location, S3Options, S3Source};

/// Longest a test waits for a result before calling it a hang (a guard, not a timing check).
const HANG_GUARD: Duration = Duration::from_secs(300);

/// Credentials and region for the SDK's standard chain, the same in every test (set once, before
/// any test reads the environment).
fn test_environment() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (name, value) in [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/nonexistent/trailsight-test-aws-config"),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/trailsight-test-aws-credentials",
            ),
        ] {
            std::env::set_var(name, value);
        }
        for name in ["AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"] {
            std::env::remove_var(name);
        }
    });
}

/// A plain SDK client for putting the test's files in place (independent of `S3Source`).
fn uploader(endpoint: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

async fn put(client: &aws_sdk_s3::Client, bucket: &str, key: &str, body: Vec<u8>) {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
}

/// A small gzip log file whose content names its key (so every file's bytes differ).
fn log_file(key: &str) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    write!(
        gz,
        r#"{{"Records":[{{"eventVersion":"1.08","eventID":"{key}"}}]}}"#
    )
    .unwrap();
    gz.finish().unwrap()
}

/// `{root}{account}/CloudTrail/{region}/YYYY/MM/DD/{account}_CloudTrail_{region}_{stamp}_{unique}.json.gz`
/// with the date taken from `stamp` (`YYYYMMDDTHHmmZ`).
fn log_key(root: &str, account: &str, region: &str, stamp: &str, unique: &str) -> String {
    let (y, m, d) = (&stamp[0..4], &stamp[4..6], &stamp[6..8]);
    format!(
        "{root}{account}/CloudTrail/{region}/{y}/{m}/{d}/{account}_CloudTrail_{region}_{stamp}_{unique}.json.gz"
    )
}

/// Minutes since the epoch of a `YYYYMMDDTHHmmZ` stamp, computed independently of the crate.
fn stamp_minute(stamp: &str) -> i64 {
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%MZ")
        .unwrap()
        .and_utc()
        .timestamp()
        / 60
}

fn options(endpoint: &str, max_object_bytes: u64) -> S3Options {
    S3Options {
        endpoint_url: Some(endpoint.to_owned()),
        region: Some("us-east-1".to_owned()),
        max_object_bytes,
    }
}

/// (key, size, delivery minute) of what a poll returned, in its order.
type Seen = Vec<(String, u64, Option<i64>)>;

async fn poll(source: &mut S3Source, since: NaiveDate, today: NaiveDate) -> Seen {
    tokio::time::timeout(HANG_GUARD, source.poll(since, today))
        .await
        .expect("poll hung")
        .unwrap_or_else(|e| panic!("poll: {e}"))
        .into_iter()
        .map(|o| (o.key, o.size, o.delivery_minute))
        .collect()
}

/// Connects to `location` on `endpoint` and returns the error of its first poll (which must
/// fail, and not hang).
async fn first_poll_error(
    location: S3Location,
    endpoint: &str,
    since: NaiveDate,
    today: NaiveDate,
) -> S3Error {
    let mut source = S3Source::connect(location, options(endpoint, 4096))
        .await
        .unwrap();
    tokio::time::timeout(HANG_GUARD, source.poll(since, today))
        .await
        .expect("poll hung")
        .expect_err("the poll must fail")
}

#[tokio::test]
async fn follows_a_trail_bucket_on_a_real_s3_api_server() {
    test_environment();
    let Some(server) = start_moto() else { return };
    let bucket = "trail-bucket";
    let s3 = uploader(&server.endpoint);
    s3.create_bucket().bucket(bucket).send().await.unwrap();

    let root = "logs/AWSLogs/";
    let org_root = "logs/AWSLogs/o-abcdefghij/";
    let (acct, member) = ("111111111111", "222222222222");
    let mut sizes = std::collections::HashMap::new();
    let expect = |key: &str, stamp: &str, sizes: &std::collections::HashMap<String, u64>| {
        (key.to_owned(), sizes[key], Some(stamp_minute(stamp)))
    };

    // Logs, out of upload order; an organization trail's member; and files that are not logs.
    let a = log_key(root, acct, "us-east-1", "20231110T1150Z", "bbbb");
    let b = log_key(root, acct, "us-east-1", "20231110T1145Z", "zzzz");
    let c = log_key(org_root, member, "eu-west-1", "20231110T1147Z", "aaaa");
    let big = log_key(root, acct, "us-east-1", "20231110T1155Z", "big");
    let not_logs = [
        format!("{root}{acct}/CloudTrail-Digest/us-east-1/2023/11/10/{acct}_CloudTrail-Digest_us-east-1_trail_us-east-1_20231110T1200Z.json.gz"),
        format!("{root}{acct}/CloudTrail-Insight/us-east-1/2023/11/10/{acct}_CloudTrail-Insight_us-east-1_20231110T1150Z_x.json.gz"),
        format!("{root}{acct}/CloudTrail/us-east-1/2023/11/10/README.txt"),
        format!("{root}{acct}/CloudTrail/us-east-1/2023/11/10/sub/{acct}_CloudTrail_us-east-1_20231110T1150Z_c.json.gz"),
        // Outside the trail's prefix, and a day before `since`.
        log_key("AWSLogs/", acct, "us-east-1", "20231110T1146Z", "out"),
        log_key(root, acct, "us-east-1", "20231109T2350Z", "old"),
    ];
    for key in [&a, &b, &c].into_iter().chain(&not_logs) {
        let body = log_file(key);
        sizes.insert(key.clone(), body.len() as u64);
        put(&s3, bucket, key, body).await;
    }
    // Incompressible, bigger than the limit below.
    let big_body: Vec<u8> = (0..10_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    sizes.insert(big.clone(), big_body.len() as u64);
    put(&s3, bucket, &big, big_body).await;

    let location: S3Location = format!("s3://{bucket}/logs").parse().unwrap();
    let mut source = S3Source::connect(location, options(&server.endpoint, 4096))
        .await
        .unwrap();
    source.set_discovery_interval(Duration::ZERO);
    let since = NaiveDate::from_ymd_opt(2023, 11, 10).unwrap();
    let today = NaiveDate::from_ymd_opt(2023, 11, 11).unwrap();

    let first = poll(&mut source, since, today).await;
    assert_eq!(
        first,
        vec![
            expect(&b, "20231110T1145Z", &sizes),
            expect(&c, "20231110T1147Z", &sizes),
            expect(&a, "20231110T1150Z", &sizes),
            expect(&big, "20231110T1155Z", &sizes),
        ]
    );
    assert_eq!(
        poll(&mut source, since, today).await,
        vec![],
        "a second poll repeats nothing"
    );

    // Same minute as `a` but sorting before it (random suffix), a new day, a new region, and a
    // new file of the organization member.
    let d = log_key(root, acct, "us-east-1", "20231110T1150Z", "aaaa");
    let e = log_key(root, acct, "us-east-1", "20231111T0005Z", "eeee");
    let f = log_key(root, acct, "ap-south-1", "20231111T0003Z", "ffff");
    let g = log_key(org_root, member, "eu-west-1", "20231110T1210Z", "gggg");
    for key in [&d, &e, &f, &g] {
        let body = log_file(key);
        sizes.insert(key.clone(), body.len() as u64);
        put(&s3, bucket, key, body).await;
    }
    let third = poll(&mut source, since, today).await;
    assert_eq!(
        third,
        vec![
            expect(&d, "20231110T1150Z", &sizes),
            expect(&g, "20231110T1210Z", &sizes),
            expect(&f, "20231111T0003Z", &sizes),
            expect(&e, "20231111T0005Z", &sizes),
        ]
    );
    assert_eq!(poll(&mut source, since, today).await, vec![]);

    // Moving `since` forward forgets the old day; the new day's files are not returned again.
    let next_day = NaiveDate::from_ymd_opt(2023, 11, 11).unwrap();
    assert_eq!(poll(&mut source, next_day, next_day).await, vec![]);

    for key in [&a, &c, &e] {
        assert_eq!(source.fetch(key).await.unwrap(), log_file(key), "{key}");
    }
    match source.fetch(&big).await {
        Err(S3Error::TooLarge {
            target,
            size,
            limit,
        }) => {
            assert_eq!((size, limit), (10_000, 4096));
            assert_eq!(target, format!("s3://{bucket}/{big}"));
        }
        other => panic!("over-limit object: {other:?}"),
    }
    let missing = format!("{root}{acct}/CloudTrail/us-east-1/2023/11/10/missing.json.gz");
    let err = source.fetch(&missing).await.unwrap_err();
    assert_eq!(err.code(), Some("NoSuchKey"), "{err}");
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().contains(&missing), "{err}");

    // A bucket that does not exist: a clear error that retrying cannot fix.
    let location: S3Location = "s3://no-such-trail-bucket/logs".parse().unwrap();
    let err = first_poll_error(location, &server.endpoint, since, today).await;
    assert_eq!(err.code(), Some("NoSuchBucket"), "{err}");
    assert!(!err.is_retryable(), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("s3://no-such-trail-bucket/logs/AWSLogs/")
            && message.contains("NoSuchBucket"),
        "{message}"
    );
}

#[tokio::test]
async fn a_closed_port_is_a_retryable_error() {
    test_environment();
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let day = NaiveDate::from_ymd_opt(2023, 11, 10).unwrap();
    let err = first_poll_error("s3://trail-bucket".parse().unwrap(), &endpoint, day, day).await;
    assert!(err.is_retryable(), "{err}");
    assert_eq!(err.code(), None, "{err}");
    assert!(
        err.to_string().contains("s3://trail-bucket/AWSLogs/"),
        "{err}"
    );
}

#[tokio::test]
async fn an_endpoint_that_never_answers_is_a_retryable_error() {
    test_environment();
    // Accepts connections and never answers; stops accepting by itself after a while.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut held = Vec::new();
        while started.elapsed() < Duration::from_secs(240) {
            match listener.accept() {
                Ok((stream, _)) => held.push(stream),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    });
    let day = NaiveDate::from_ymd_opt(2023, 11, 10).unwrap();
    let err = first_poll_error("s3://trail-bucket".parse().unwrap(), &endpoint, day, day).await;
    assert!(err.is_retryable(), "{err}");
}

#[tokio::test]
async fn bad_endpoints_are_setup_errors() {
    test_environment();
    for endpoint in ["127.0.0.1:9000", "ftp://host", "http://"] {
        let err = S3Source::connect("s3://b".parse().unwrap(), options(endpoint, 1))
            .await
            .unwrap_err();
        assert!(matches!(err, S3Error::Setup(_)), "{endpoint}: {err}");
        assert!(!err.is_retryable());
    }
}

#[tokio::test]
async fn watch_follows_a_bucket_and_writes_exactly_what_score_writes_on_a_copy() {
    test_environment();
    let Some(server) = start_moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Two days of trail with the incidents on the second (after the minimum history).
    let archive = dir.path().join("archive");
    let mut opts = trailsight::generate::GenerateOptions::new(archive.clone(), 2, 11);
    opts.scale = 0.5;
    opts.incident_after_days = 1;
    trailsight::generate::generate(&opts).unwrap();
    let files = trailsight::ingest::discover(std::slice::from_ref(&archive)).files;
    let first_day = common::first_day(&archive);

    // What `score` writes for the same files on disk.
    let score_out = dir.path().join("score.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_trailsight"))
        .args(["score", archive.to_str().unwrap(), "--store"])
        .arg(dir.path().join("score.db"))
        .arg("--out")
        .arg(&score_out)
        .args(["--keep-pending", "--no-progress"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = std::fs::read_to_string(&score_out).unwrap();
    assert!(
        expected.lines().count() >= 4,
        "the incidents give Insights: {expected}"
    );

    // The bucket holds the first half when watch starts; the rest lands while it follows.
    let s3 = uploader(&server.endpoint);
    s3.create_bucket().bucket("org-trail").send().await.unwrap();
    let upload = |range: std::ops::Range<usize>| {
        let s3 = s3.clone();
        let files = files[range].to_vec();
        async move {
            for f in files {
                let trailsight::ingest::InputSource::File(path) = &f.source else {
                    panic!("not a file")
                };
                let key = format!("cloudtrail/{}", f.ingest_key);
                put(&s3, "org-trail", &key, std::fs::read(path).unwrap()).await;
            }
        }
    };
    let half = files.len() / 2;
    upload(0..half).await;
    let port = free_port();
    let watch_out = dir.path().join("watch.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_trailsight"))
        .args([
            "watch",
            "s3://org-trail/cloudtrail",
            "--endpoint-url",
            &server.endpoint,
        ])
        .arg("--store")
        .arg(dir.path().join("watch.db"))
        .arg("--out")
        .arg(&watch_out)
        .args([
            "--since",
            &first_day,
            "--wait-for-final",
            "--poll-interval",
            "0.5",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--log-level",
            "warn",
        ])
        .spawn()
        .unwrap();
    upload(half..files.len()).await;
    let started = Instant::now();
    loop {
        let body = common::http_get(port, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default();
        if common::metric(&body, "trailsight_files_ingested_total") == Some(files.len() as f64)
            && std::fs::read_to_string(&watch_out).unwrap_or_default() == expected
        {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("watch exited early: {status}");
        }
        assert!(
            started.elapsed() < HANG_GUARD,
            "watch did not catch up: {body}\n{}",
            std::fs::read_to_string(&watch_out).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let body = common::http_get(port, "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default();
    assert_eq!(
        common::metric(&body, "trailsight_errors_total{kind=\"source\"}"),
        Some(0.0)
    );
    common::signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
    assert_eq!(std::fs::read_to_string(&watch_out).unwrap(), expected);
}

#[tokio::test]
async fn a_backlog_is_fetched_in_batches_and_an_object_that_cannot_be_read_is_left_for_a_restart() {
    test_environment();
    let Some(server) = start_moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let s3 = uploader(&server.endpoint);
    s3.create_bucket().bucket("backlog").send().await.unwrap();
    let stamps = [
        "20231110T0005Z",
        "20231110T0010Z",
        "20231110T0015Z",
        "20231110T0020Z",
    ];
    let keys: Vec<String> = stamps
        .iter()
        .map(|stamp| log_key("AWSLogs/", "111122223333", "us-east-1", stamp, "a"))
        .collect();
    for (i, key) in keys.iter().enumerate() {
        let body = if i == 1 {
            // Over the limit below: refused without being read (not retryable).
            let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::none());
            gz.write_all(&vec![b' '; 20_000]).unwrap();
            gz.finish().unwrap()
        } else {
            log_file(key)
        };
        put(&s3, "backlog", key, body).await;
    }
    let store = dir.path().join("db");
    let watch = |limit: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_trailsight"))
            .args(["watch", "s3://backlog", "--endpoint-url", &server.endpoint])
            .arg("--store")
            .arg(&store)
            .args([
                "--once",
                "--quiet",
                "--since",
                "2023-11-10",
                "--max-file-size",
                limit,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let log = watch("5000");
    assert!(log.contains("left for the next start"), "{log}");
    let ingested = |key: &str| {
        trailsight::pipeline::Engine::open(&store, trailsight::detect::Profile::builtin())
            .unwrap()
            .is_ingested(key)
            .unwrap()
    };
    assert_eq!(
        keys.iter().map(|k| ingested(k)).collect::<Vec<_>>(),
        [true, false, true, true],
        "{log}"
    );
    // A restart with room for it reads the object left behind, and only it.
    let log = watch("100000");
    assert!(keys.iter().all(|k| ingested(k)), "{log}");
    assert!(log.contains("files=1 "), "{log}");
}
