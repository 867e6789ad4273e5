//! `watch sqs://QUEUE_URL` against a real SQS and S3 API server (moto, on a loopback port): the
//! bucket's own S3 event notifications of an uploaded 9-day archive reach the queue; `watch`
//! killed with SIGKILL in the middle and started again writes exactly what `score` writes on the
//! archive (nothing lost, nothing repeated); every message it handled is deleted, a message that
//! is not a notification is reported and left for the redrive policy, notifications of objects
//! already ingested are acknowledged without a read (their objects are gone), and a notification
//! of a missing object stays in the queue.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{boto, free_port, generated, start_moto, AWS_ENV};

/// Longest a test waits before calling it a hang (a guard, not a timing check).
const HANG_GUARD: Duration = Duration::from_secs(600);
/// The queue's visibility timeout: a message taken by a killed process comes back after it.
const VISIBILITY_SECONDS: u64 = 10;

fn watch(queue_url: &str, dir: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trailsight"));
    c.args(["watch", &format!("sqs://{queue_url}")])
        .arg("--store")
        .arg(dir.join("watch.db"))
        .arg("--out")
        .arg(dir.join("watch.jsonl"))
        .args(["--wait-for-final", "--poll-interval", "1"])
        .args(extra);
    for (k, v) in AWS_ENV {
        c.env(k, v);
    }
    c.env_remove("AWS_ENDPOINT_URL").env_remove("AWS_PROFILE");
    c
}

fn run_once(queue_url: &str, dir: &Path) -> Output {
    let o = watch(queue_url, dir, &["--once"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

/// Messages in the queue, visible or not.
fn queued(endpoint: &str, queue_url: &str) -> u64 {
    boto(
        endpoint,
        &format!(
            "a = sqs.get_queue_attributes(QueueUrl={queue_url:?}, AttributeNames=['All'])['Attributes']\n\
             print(int(a['ApproximateNumberOfMessages']) + int(a['ApproximateNumberOfMessagesNotVisible']))"
        ),
    )
    .parse()
    .unwrap()
}

/// The bodies of the messages visible now (taken and put back at once).
fn visible_bodies(endpoint: &str, queue_url: &str) -> Vec<String> {
    let out = boto(
        endpoint,
        &format!(
            "out = []\n\
             r = sqs.receive_message(QueueUrl={queue_url:?}, MaxNumberOfMessages=10, WaitTimeSeconds=1)\n\
             for m in r.get('Messages', []):\n\
             \x20   out.append(m['Body'])\n\
             \x20   sqs.change_message_visibility(QueueUrl={queue_url:?}, ReceiptHandle=m['ReceiptHandle'], VisibilityTimeout=0)\n\
             print(json.dumps(out))"
        ),
    );
    serde_json::from_str(&out).unwrap()
}

#[test]
fn watch_sqs_follows_the_notifications_of_an_uploaded_archive_through_a_kill() {
    let Some(server) = start_moto() else { return };
    let endpoint = &server.endpoint;
    let dir = tempfile::tempdir().unwrap();
    // The demo's 9 days, its incidents on the last days, delivered hourly (one file per account,
    // region and hour: a tenth of the files, for moto's sake).
    let archive = common::regrouped(&generated(7, 0.5, true), &dir.path().join("archive"), 1);
    let files = trailsight::ingest::discover(std::slice::from_ref(&archive)).files;
    assert!(files.len() > 500, "{}", files.len());

    // What `score` writes for the same files on disk.
    let score_out = dir.path().join("score.jsonl");
    let o = Command::new(env!("CARGO_BIN_EXE_trailsight"))
        .args(["score", archive.to_str().unwrap(), "--store"])
        .arg(dir.path().join("score.db"))
        .arg("--out")
        .arg(&score_out)
        .args(["--keep-pending", "--no-progress"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let expected = std::fs::read_to_string(&score_out).unwrap();
    assert!(expected.lines().count() >= 4, "{expected}");

    // A queue the bucket notifies, then the archive uploaded in delivery order (moto sends S3's
    // own notification of every put), a digest beside it, a test event and a poison message.
    let manifest = dir.path().join("manifest.tsv");
    let mut lines = String::new();
    for f in &files {
        let trailsight::ingest::InputSource::File(path) = &f.source else {
            panic!("not a file")
        };
        lines.push_str(&format!("{}\t{}\n", path.display(), f.ingest_key));
    }
    std::fs::write(&manifest, lines).unwrap();
    let queue_url = boto(
        endpoint,
        &format!(
            "q = sqs.create_queue(QueueName='trail-notes', Attributes={{'VisibilityTimeout': '{VISIBILITY_SECONDS}'}})['QueueUrl']\n\
             s3.create_bucket(Bucket='trail-bucket')\n\
             s3.put_bucket_notification_configuration(Bucket='trail-bucket', NotificationConfiguration={{\n\
             \x20   'QueueConfigurations': [{{'QueueArn': 'arn:aws:sqs:us-east-1:123456789012:trail-notes', 'Events': ['s3:ObjectCreated:*']}}]}})\n\
             for line in open({manifest:?}):\n\
             \x20   path, key = line.rstrip('\\n').split('\\t')\n\
             \x20   s3.put_object(Bucket='trail-bucket', Key=key, Body=open(path, 'rb').read())\n\
             s3.put_object(Bucket='trail-bucket', Key='AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2024/01/01/d.json.gz', Body=b'digest')\n\
             sqs.send_message(QueueUrl=q, MessageBody=json.dumps({{'Service': 'Amazon S3', 'Event': 's3:TestEvent', 'Bucket': 'trail-bucket'}}))\n\
             sqs.send_message(QueueUrl=q, MessageBody='this is not a notification')\n\
             print(q)"
        ),
    );
    assert_eq!(
        queued(endpoint, &queue_url),
        files.len() as u64 + 4,
        "one notification per object (the digest's too), S3's test event when the notification \
         was configured, ours and the poison message"
    );

    // watch, killed once it has committed part of the archive.
    let port = free_port();
    let mut child = watch(
        &queue_url,
        dir.path(),
        &[
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--log-level",
            "warn",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let started = Instant::now();
    loop {
        let body = common::http_get(port, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default();
        let ingested = common::metric(&body, "trailsight_files_ingested_total").unwrap_or(0.0);
        if ingested >= (files.len() / 3) as f64 {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("watch exited early: {status}");
        }
        assert!(
            started.elapsed() < HANG_GUARD,
            "watch does not read: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    common::sigkill(&mut child);
    let partial = std::fs::read_to_string(dir.path().join("watch.jsonl")).unwrap_or_default();
    assert!(
        expected.starts_with(&partial),
        "what was written before the kill is the start of score's output"
    );
    // Messages the killed process held come back after their visibility timeout.
    std::thread::sleep(Duration::from_secs(VISIBILITY_SECONDS + 1));

    let o = run_once(&queue_url, dir.path());
    let stderr = String::from_utf8_lossy(&o.stderr);
    let written = std::fs::read_to_string(dir.path().join("watch.jsonl")).unwrap();
    assert!(written == expected, "watch wrote other Insights than score");
    assert!(
        stderr.contains("is not an S3 notification") && stderr.contains("redrive policy"),
        "{stderr}"
    );
    // Only the poison message is left (the test event, the digest and every log's
    // notification were deleted).
    assert_eq!(queued(endpoint, &queue_url), 1, "{stderr}");
    std::thread::sleep(Duration::from_secs(VISIBILITY_SECONDS + 1));
    assert_eq!(
        visible_bodies(endpoint, &queue_url),
        ["this is not a notification"]
    );

    // Notifications of objects already ingested (an S3 one, URL-encoded as S3 writes keys, and
    // an EventBridge one), whose objects are deleted first: acknowledged without a read. A
    // notification of an object that does not exist stays in the queue.
    let (a, b) = (&files[0].ingest_key, &files[1].ingest_key);
    boto(
        endpoint,
        &format!(
            "from urllib.parse import quote_plus\n\
             q = {queue_url:?}\n\
             for k in [{a:?}, {b:?}]:\n\
             \x20   s3.delete_object(Bucket='trail-bucket', Key=k)\n\
             sqs.send_message(QueueUrl=q, MessageBody=json.dumps({{'Records': [{{'eventVersion': '2.1', 'eventSource': 'aws:s3', 'awsRegion': 'us-east-1', 'eventName': 'ObjectCreated:Put',\n\
             \x20   's3': {{'bucket': {{'name': 'trail-bucket'}}, 'object': {{'key': quote_plus({a:?}), 'size': 1}}}}}}]}}))\n\
             sqs.send_message(QueueUrl=q, MessageBody=json.dumps({{'version': '0', 'detail-type': 'Object Created', 'source': 'aws.s3', 'region': 'us-east-1',\n\
             \x20   'detail': {{'bucket': {{'name': 'trail-bucket'}}, 'object': {{'key': {b:?}}}}}}}))\n\
             sqs.send_message(QueueUrl=q, MessageBody=json.dumps({{'Records': [{{'eventVersion': '2.1', 'eventSource': 'aws:s3', 'awsRegion': 'us-east-1', 'eventName': 'ObjectCreated:Put',\n\
             \x20   's3': {{'bucket': {{'name': 'trail-bucket'}}, 'object': {{'key': 'AWSLogs/123456789012/CloudTrail/us-east-1/2031/01/01/123456789012_CloudTrail_us-east-1_20310101T0000Z_missing.json.gz'}}}}}}]}}))"
        ),
    );
    let o = run_once(&queue_url, dir.path());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("watch.jsonl")).unwrap(),
        expected,
        "nothing read again"
    );
    assert!(
        stderr.contains("missing.json.gz") && stderr.contains("left in the queue"),
        "{stderr}"
    );
    assert_eq!(
        queued(endpoint, &queue_url),
        2,
        "the poison message and the missing object's notification stay: {stderr}"
    );
}
