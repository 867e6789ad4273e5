//! `--to sns:TOPIC_ARN` and `--to eventbridge:BUS` against a real AWS API server (moto, on a
//! loopback port): an SQS queue subscribed to the topic, and a rule on the bus that targets a
//! queue, receive exactly the records `--out` holds, once each, with the message attributes and
//! the `detail-type` AWS's own Insights events carry; a second run publishes nothing again; a
//! topic that does not exist is an error that leaves the records in the outbox.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{boto, generated, json_lines, start_moto, AWS_ENV};

/// Every message on a queue (long enough to drain it), as JSON bodies.
fn drain(endpoint: &str, queue_url: &str) -> Vec<serde_json::Value> {
    let out = boto(
        endpoint,
        &format!(
            "out = []\n\
             while True:\n\
             \x20   r = sqs.receive_message(QueueUrl={queue_url:?}, MaxNumberOfMessages=10, WaitTimeSeconds=1)\n\
             \x20   m = r.get('Messages', [])\n\
             \x20   if not m: break\n\
             \x20   for x in m:\n\
             \x20       out.append(json.loads(x['Body']))\n\
             \x20       sqs.delete_message(QueueUrl={queue_url:?}, ReceiptHandle=x['ReceiptHandle'])\n\
             print(json.dumps(out))"
        ),
    );
    serde_json::from_str(&out).unwrap()
}

fn score(archive: &Path, store: &Path, out: &Path, to: &[String], endpoint: &str) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trailsight"));
    c.args([
        "score",
        archive.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--append",
        "--no-progress",
    ]);
    for t in to {
        c.args(["--to", t]);
    }
    for (k, v) in AWS_ENV {
        c.env(k, v);
    }
    c.env("AWS_ENDPOINT_URL", endpoint);
    c.output().unwrap()
}

/// Every finding Security Hub holds (at most 100).
fn security_hub_findings(endpoint: &str) -> Vec<serde_json::Value> {
    serde_json::from_str(&boto(
        endpoint,
        "print(json.dumps(securityhub.get_findings(MaxResults=100)['Findings'], default=str))",
    ))
    .unwrap()
}

/// `BatchImportFindings` requests the server has logged so far.
fn imports_seen(moto: &common::MotoServer) -> usize {
    std::fs::read_to_string(moto.log())
        .unwrap_or_default()
        .matches("/findings/import")
        .count()
}

#[test]
fn sns_and_eventbridge_receive_every_record_once() {
    let Some(moto) = start_moto() else {
        return;
    };
    let e = &moto.endpoint;
    let setup = boto(
        e,
        "t = sns.create_topic(Name='insights')['TopicArn']\n\
         q1 = sqs.create_queue(QueueName='from-sns')['QueueUrl']\n\
         a1 = sqs.get_queue_attributes(QueueUrl=q1, AttributeNames=['QueueArn'])['Attributes']['QueueArn']\n\
         sns.subscribe(TopicArn=t, Protocol='sqs', Endpoint=a1)\n\
         events.create_event_bus(Name='security')\n\
         q2 = sqs.create_queue(QueueName='from-bus')['QueueUrl']\n\
         a2 = sqs.get_queue_attributes(QueueUrl=q2, AttributeNames=['QueueArn'])['Attributes']['QueueArn']\n\
         events.put_rule(Name='insights', EventBusName='security', EventPattern=json.dumps({'detail-type': ['AWS Insight via CloudTrail']}))\n\
         events.put_targets(Rule='insights', EventBusName='security', Targets=[{'Id': 'q', 'Arn': a2}])\n\
         print(json.dumps([t, q1, q2]))",
    );
    let names: Vec<String> = serde_json::from_str(&setup).unwrap();
    let (topic, from_sns, from_bus) = (&names[0], &names[1], &names[2]);

    let archive = generated(7, 0.5, true);
    let dir = tempfile::tempdir().unwrap();
    let (store, out) = (dir.path().join("db"), dir.path().join("out.jsonl"));
    let to = [format!("sns:{topic}"), "eventbridge:security".to_string()];
    let o = score(&archive, &store, &out, &to, e);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let written = json_lines(&std::fs::read(&out).unwrap());
    assert!(!written.is_empty());

    // SNS: the queue gets SNS's envelope, the record as its Message, with the attributes.
    let sns: Vec<serde_json::Value> = drain(e, from_sns);
    // A standard queue keeps no order: compared by eventID.
    let by_id = |v: &serde_json::Value| v["eventID"].as_str().unwrap().to_string();
    let mut written = written;
    written.sort_by_key(by_id);
    let mut sns = sns;
    sns.sort_by_key(|m| {
        let record: serde_json::Value =
            serde_json::from_str(m["Message"].as_str().unwrap()).unwrap();
        by_id(&record)
    });
    let messages: Vec<serde_json::Value> = sns
        .iter()
        .map(|m| serde_json::from_str(m["Message"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(messages, written);
    for (m, record) in sns.iter().zip(&written) {
        let attrs = &m["MessageAttributes"];
        assert_eq!(attrs["state"]["Value"], record["insightDetails"]["state"]);
        assert_eq!(
            attrs["eventName"]["Value"],
            record["insightDetails"]["eventName"]
        );
        assert_eq!(
            attrs["recipientAccountId"]["Value"],
            record["recipientAccountId"]
        );
        assert!(m["Subject"]
            .as_str()
            .unwrap()
            .starts_with("trailsight Insight"));
    }
    // EventBridge: the rule written for AWS's detail-type matched every event.
    let mut events = drain(e, from_bus);
    events.sort_by_key(|event| by_id(&event["detail"]));
    assert_eq!(events.len(), written.len());
    for (event, record) in events.iter().zip(&written) {
        assert_eq!(event["detail-type"], "AWS Insight via CloudTrail");
        assert_eq!(event["source"], "trailsight");
        assert_eq!(&event["detail"], record);
    }

    // Nothing new, nothing published again.
    let o = score(&archive, &store, &out, &to, e);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(drain(e, from_sns).is_empty());
    assert!(drain(e, from_bus).is_empty());
}

#[test]
fn a_missing_topic_leaves_the_records_in_the_outbox() {
    let Some(moto) = start_moto() else {
        return;
    };
    let e = &moto.endpoint;
    let archive = generated(7, 0.5, true);
    let dir = tempfile::tempdir().unwrap();
    let (store, out) = (dir.path().join("db"), dir.path().join("out.jsonl"));
    let missing = "arn:aws:sns:us-east-1:123456789012:not-there".to_string();
    let o = score(&archive, &store, &out, &[format!("sns:{missing}")], e);
    assert!(!o.status.success());
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(said.contains("did not take the record"), "{said}");
    // The topic now exists: the next run publishes what was committed.
    let setup = boto(
        e,
        "t = sns.create_topic(Name='not-there')['TopicArn']\n\
         q = sqs.create_queue(QueueName='late')['QueueUrl']\n\
         a = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=['QueueArn'])['Attributes']['QueueArn']\n\
         sns.subscribe(TopicArn=t, Protocol='sqs', Endpoint=a)\n\
         print(q)",
    );
    let o = score(&archive, &store, &out, &[format!("sns:{missing}")], e);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let by_id = |v: &serde_json::Value| v["eventID"].as_str().unwrap().to_string();
    let mut written = json_lines(&std::fs::read(&out).unwrap());
    written.sort_by_key(by_id);
    let mut got: Vec<serde_json::Value> = drain(e, &setup)
        .iter()
        .map(|m| serde_json::from_str(m["Message"].as_str().unwrap()).unwrap())
        .collect();
    got.sort_by_key(by_id);
    assert_eq!(got, written);
}

#[test]
fn security_hub_and_ocsf_hold_one_finding_per_episode() {
    let Some(moto) = start_moto() else {
        return;
    };
    let e = &moto.endpoint;
    let archive = generated(7, 0.5, true);
    let dir = tempfile::tempdir().unwrap();
    let (store, out) = (dir.path().join("db"), dir.path().join("out.jsonl"));
    let ocsf = dir.path().join("findings.ocsf.jsonl");
    let to = [
        "securityhub:".to_string(),
        format!("ocsf:{}", ocsf.display()),
    ];
    let o = score(&archive, &store, &out, &to, e);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let written = json_lines(&std::fs::read(&out).unwrap());
    let starts: Vec<&serde_json::Value> = written
        .iter()
        .filter(|r| r["insightDetails"]["state"] == "Start")
        .collect();
    assert!(
        starts.len() >= 5 && starts.len() * 2 == written.len(),
        "every episode ended"
    );

    // Security Hub: one finding per episode, created by its Start, archived by its End.
    let findings = security_hub_findings(e);
    assert_eq!(findings.len(), starts.len());
    for start in &starts {
        let shared = start["sharedEventID"].as_str().unwrap();
        let end = written
            .iter()
            .find(|r| r["sharedEventID"] == shared && r["insightDetails"]["state"] == "End")
            .unwrap();
        let f = findings
            .iter()
            .find(|f| f["Id"] == format!("trailsight/insight/{shared}"))
            .unwrap_or_else(|| panic!("no finding for {shared}"));
        assert_eq!(f["RecordState"], "ARCHIVED", "{f}");
        assert_eq!(f["Workflow"]["Status"], "NEW", "{f}");
        assert_eq!(f["AwsAccountId"], start["recipientAccountId"]);
        assert_eq!(f["Region"], start["awsRegion"]);
        assert_eq!(f["ProductFields"]["trailsight/eventID"], end["eventID"]);
        assert_eq!(
            f["ProductFields"]["aws/cloudtrail/eventName"],
            start["insightDetails"]["eventName"]
        );
        assert_eq!(
            f["GeneratorId"],
            format!(
                "trailsight/{}",
                start["insightDetails"]["insightType"].as_str().unwrap()
            )
        );
        assert_eq!(f["SchemaVersion"], "2018-10-08");
        assert!(f["ProductArn"].as_str().unwrap().ends_with(&format!(
            "product/{}/default",
            start["recipientAccountId"].as_str().unwrap()
        )));
    }

    // OCSF: one Detection Finding per record, the AWS record whole in raw_data.
    let lines = json_lines(&std::fs::read(&ocsf).unwrap());
    assert_eq!(lines.len(), written.len());
    for (line, record) in lines.iter().zip(&written) {
        assert_eq!(line["class_uid"], 2004);
        assert_eq!(line["metadata"]["uid"], record["eventID"]);
        let raw: serde_json::Value =
            serde_json::from_str(line["raw_data"].as_str().unwrap()).unwrap();
        assert_eq!(&raw, record);
        let start = record["insightDetails"]["state"] == "Start";
        assert_eq!(line["type_uid"], if start { 200401 } else { 200403 });
        assert_eq!(
            line["finding_info"]["uid"],
            format!(
                "trailsight/insight/{}",
                record["sharedEventID"].as_str().unwrap()
            )
        );
    }

    // A second run imports and writes nothing again.
    let imports = || imports_seen(&moto);
    let before = imports();
    assert_eq!(before, written.len(), "one import per record");
    let o = score(&archive, &store, &out, &to, e);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(imports(), before);
    assert_eq!(
        json_lines(&std::fs::read(&ocsf).unwrap()).len(),
        written.len()
    );
}

#[test]
fn watch_killed_while_importing_findings_leaves_one_finding_per_episode() {
    let Some(moto) = start_moto() else {
        return;
    };
    let e = &moto.endpoint;
    let archive = generated(7, 0.5, true);
    let first_day = common::first_day(&archive);
    let dir = tempfile::tempdir().unwrap();
    let (store, out) = (dir.path().join("db"), dir.path().join("out.jsonl"));
    let watch = |once: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_trailsight"));
        c.args(["watch", archive.to_str().unwrap(), "--store"])
            .arg(&store)
            .arg("--out")
            .arg(&out)
            .args([
                "--since",
                &first_day,
                "--wait-for-final",
                "--log-level",
                "warn",
            ])
            .args(["--to", "securityhub:"])
            // The archive was just written: every file is taken at the first look (a file
            // taken seconds after newer ones would be late, its calls history only).
            .args(["--settle", "0"]);
        if once {
            c.arg("--once");
        }
        for (k, v) in AWS_ENV {
            c.env(k, v);
        }
        c.env("AWS_ENDPOINT_URL", e);
        c
    };
    let imports = || imports_seen(&moto);
    let log = dir.path().join("watch.log");
    let mut child = watch(false)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while imports() < 2 {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("watch exited early: {status}");
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(600),
            "watch never imported: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    common::sigkill(&mut child);
    let at_kill = imports();

    let o = watch(true).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let written = json_lines(&std::fs::read(&out).unwrap());
    // The kill came in the middle: the Insights were spread over the archive's last days.
    assert!(
        at_kill < written.len(),
        "{at_kill} of {} imported before the kill",
        written.len()
    );
    let mut ids: Vec<&str> = written
        .iter()
        .map(|r| r["eventID"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), written.len(), "no record written twice");
    let starts = written
        .iter()
        .filter(|r| r["insightDetails"]["state"] == "Start")
        .count();
    let findings = security_hub_findings(e);
    assert_eq!(findings.len(), starts, "one finding per episode");
    for f in &findings {
        assert_eq!(f["RecordState"], "ARCHIVED", "every episode ended: {f}");
    }
    // Every record was imported; one in flight at the kill may have been imported twice (the
    // same finding, updated again), no more.
    assert!((written.len()..=written.len() + 1).contains(&imports()));
}
