use super::*;
use chrono::{TimeZone, Utc};

fn minute(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> Minute {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .unwrap()
        .timestamp()
        / 60
}

fn ctx() -> ParseContext<'static> {
    ParseContext {
        display: "test",
        delivery_minute: None,
        min_minute: EARLIEST_EVENT_MINUTE,
        max_minute: minute(2030, 1, 1, 0, 0),
    }
}

fn run_with(buf: &[u8], ctx: &ParseContext<'_>) -> (Vec<CallRecord<'static>>, ParseReport) {
    let mut records = Vec::new();
    let report = parse(buf, ctx, &mut |r| records.push(r.into_owned()));
    assert_eq!(report.records_ok, records.len() as u64);
    assert_eq!(
        report.records_seen,
        report.records_ok + report.records_skipped() + report.records_ignored(),
        "{report:?}"
    );
    (records, report)
}

fn run(buf: &[u8]) -> (Vec<CallRecord<'static>>, ParseReport) {
    run_with(buf, &ctx())
}

/// A minimal valid record; `n` goes into eventName and eventID.
fn rec(n: u32) -> String {
    format!(
        r#"{{"eventVersion":"1.08","userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/alice","accountId":"111122223333"}},"eventTime":"2023-07-10T12:08:{:02}Z","eventSource":"ec2.amazonaws.com","eventName":"Call{n}","awsRegion":"us-east-1","requestParameters":{{"a":[1,2,{{"b":null}}]}},"eventID":"id-{n}","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}}"#,
        n % 60
    )
}

fn records_object(n: u32) -> String {
    let records: Vec<String> = (0..n).map(rec).collect();
    format!(r#"{{"Records":[{}]}}"#, records.join(","))
}

fn names(records: &[CallRecord<'_>]) -> Vec<String> {
    records.iter().map(|r| r.event_name.to_string()).collect()
}

#[test]
fn records_object_minified() {
    let (records, report) = run(records_object(3).as_bytes());
    assert_eq!(report.format, Format::RecordsObject);
    assert_eq!(names(&records), ["Call0", "Call1", "Call2"]);
    assert_eq!(report.records_seen, 3);
    assert!(report.fatal.is_none());
    let r = &records[1];
    assert_eq!(r.event_id.as_deref(), Some("id-1"));
    assert_eq!(r.minute, minute(2023, 7, 10, 12, 8));
    assert_eq!(r.account, "111122223333");
    assert_eq!(r.region, "us-east-1");
    assert_eq!(r.event_source, "ec2.amazonaws.com");
    assert_eq!(
        r.user_identity_arn.as_deref(),
        Some("arn:aws:iam::111122223333:user/alice")
    );
    assert_eq!(r.read_only, Some(false));
    assert_eq!(r.category, Some(EventCategory::Management));
    assert!(r.is_write_call());
    assert_eq!(r.error_code, None);
    assert_eq!(r.user_agent, None);
}

#[test]
fn records_object_pretty_printed_with_records_not_first() {
    let text = format!(
        "{{\n  \"note\": {{\"Records\": 5}},\n  \"Records\": [\n    {},\n    {}\n  ],\n  \"after\": [1, 2]\n}}\n",
        rec(1),
        rec(2)
    );
    let (records, report) = run(text.as_bytes());
    assert_eq!(report.format, Format::RecordsObject);
    assert_eq!(names(&records), ["Call1", "Call2"]);
    assert!(report.fatal.is_none() && report.skipped.is_empty());
}

#[test]
fn records_object_with_one_record_per_line_is_not_json_lines() {
    let text = format!("{{\"Records\":[\n{}\n]}}\n", rec(7));
    let (records, report) = run(text.as_bytes());
    assert_eq!(report.format, Format::RecordsObject);
    assert_eq!(names(&records), ["Call7"]);
}

#[test]
fn json_array() {
    let text = format!("[\n{},\n{}\n]", rec(1), rec(2));
    let (records, report) = run(text.as_bytes());
    assert_eq!(report.format, Format::JsonArray);
    assert_eq!(names(&records), ["Call1", "Call2"]);
}

fn envelope(n: u32) -> String {
    format!(
        r#"{{"version":"0","id":"e-{n}","detail-type":"AWS API Call via CloudTrail","source":"aws.ec2","account":"111122223333","time":"2023-07-10T12:08:00Z","region":"us-east-1","resources":[],"detail":{}}}"#,
        rec(n)
    )
}

#[test]
fn json_lines_with_envelopes_blank_lines_and_crlf() {
    let text = format!("{}\r\n\r\n{}\n  \n{}\r\n", rec(1), envelope(2), rec(3));
    let (records, report) = run(text.as_bytes());
    assert_eq!(report.format, Format::JsonLines);
    assert_eq!(names(&records), ["Call1", "Call2", "Call3"]);
    assert!(report.fatal.is_none() && report.skipped.is_empty());
}

#[test]
fn single_eventbridge_envelope() {
    let (records, report) = run(envelope(4).as_bytes());
    assert_eq!(report.format, Format::EventBridge);
    assert_eq!(names(&records), ["Call4"]);
    // The envelope's own "region"/"account" are not the record's fields.
    assert_eq!(records[0].event_source, "ec2.amazonaws.com");
}

#[test]
fn single_record_object() {
    let (records, report) = run(format!("\n{}\n", rec(5)).as_bytes());
    assert_eq!(report.format, Format::SingleRecord);
    assert_eq!(names(&records), ["Call5"]);
}

#[test]
fn concatenated_pretty_records_are_a_stream() {
    let pretty = |n| {
        let value: serde_json::Value = serde_json::from_str(&rec(n)).unwrap();
        serde_json::to_string_pretty(&value).unwrap()
    };
    let text = format!("{}\n{}\n", pretty(1), pretty(2));
    let (records, report) = run(text.as_bytes());
    assert_eq!(report.format, Format::JsonLines);
    assert_eq!(names(&records), ["Call1", "Call2"]);
    // Two minified Records documents back to back (concatenated files).
    let text = format!("{}{}", records_object(2), records_object(1));
    let (records, report) = run(text.as_bytes());
    assert_eq!(report.format, Format::RecordsObject);
    assert_eq!(names(&records), ["Call0", "Call1", "Call0"]);
    assert!(report.fatal.is_none());
}

#[test]
fn empty_and_whitespace_buffers() {
    for buf in [&b""[..], b"   \n\t\r\n", b"\xEF\xBB\xBF"] {
        let (records, report) = run(buf);
        assert!(records.is_empty());
        assert_eq!(report.format, Format::Empty);
        assert!(report.fatal.is_none());
    }
    let (records, report) = run(br#"{"Records":[]}"#);
    assert!(records.is_empty());
    assert_eq!(report.format, Format::RecordsObject);
    let (_, report) = run(br#"{"Records":null}"#);
    assert_eq!((report.records_seen, report.fatal), (0, None));
}

#[test]
fn byte_order_mark_is_skipped() {
    let text = format!("\u{feff}{}", records_object(2));
    let (records, report) = run(text.as_bytes());
    assert_eq!(records.len(), 2);
    assert_eq!(report.format, Format::RecordsObject);
}

#[test]
fn unescaped_strings_are_borrowed_and_escaped_ones_owned() {
    let text = rec(1).replace(
        r#""awsRegion":"us-east-1""#,
        r#""awsRegion":"us-east-1","userAgent":"aws-cli\/2.0 \u00e9""#,
    );
    let buf = text.as_bytes();
    let mut seen = 0;
    parse(buf, &ctx(), &mut |r| {
        seen += 1;
        assert!(matches!(r.event_name, Cow::Borrowed(_)));
        assert!(matches!(r.account, Cow::Borrowed(_)));
        assert!(matches!(r.user_agent, Some(Cow::Owned(_))));
        assert_eq!(r.user_agent.as_deref(), Some("aws-cli/2.0 é"));
    });
    assert_eq!(seen, 1);
}

#[test]
fn broken_json_in_the_middle_of_records_keeps_earlier_records() {
    let good = records_object(5);
    // Cut inside the fourth record and add garbage.
    let cut = good.find("\"Call3\"").unwrap();
    let text = format!("{}!!garbage", &good[..cut]);
    let (records, report) = run(text.as_bytes());
    assert_eq!(names(&records), ["Call0", "Call1", "Call2"]);
    assert_eq!(report.format, Format::RecordsObject);
    let fatal = report.fatal.expect("a fatal problem");
    assert_eq!(fatal.line, 1);
    assert_eq!(fatal.offset, Some(fatal.column - 1));
    assert!(fatal.column as usize >= cut, "{fatal}");
    assert!(!fatal.reason.contains(" at line "), "{}", fatal.reason);
}

#[test]
fn fatal_offset_points_into_the_right_line() {
    let text = format!("[\n{},\n{},\n{{\"eventTime\": tru}}\n]", rec(1), rec(2));
    let (records, report) = run(text.as_bytes());
    assert_eq!(records.len(), 2);
    assert_eq!(report.format, Format::JsonArray);
    let fatal = report.fatal.unwrap();
    assert_eq!(fatal.line, 4);
    let offset = fatal.offset.unwrap() as usize;
    let line_start = text.rfind("{\"eventTime\": tru}").unwrap();
    assert!(
        offset >= line_start && offset <= line_start + 20,
        "{fatal} {line_start}"
    );
    assert_eq!(offset - line_start + 1, fatal.column as usize);
}

#[test]
fn truncated_document_keeps_earlier_records() {
    let good = records_object(4);
    let text = &good[..good.len() - 30];
    let (records, report) = run(text.as_bytes());
    assert_eq!(names(&records), ["Call0", "Call1", "Call2"]);
    assert!(report.fatal.unwrap().reason.contains("EOF"));
}

#[test]
fn garbage_is_not_json() {
    let (records, report) = run(b"\x1f\x8b\x08\x00garbage");
    assert!(records.is_empty());
    assert_eq!(report.format, Format::Unknown);
    assert!(report.fatal.is_some());
    let (_, report) = run(b"hello");
    assert_eq!(report.format, Format::Unknown);
    assert!(report.fatal.is_some());
}

#[test]
fn broken_line_in_json_lines_costs_only_that_line() {
    let text = format!(
        "{}\n{{\"eventTime\": \"2023-07-10T12:08:00Z\", broken}}\n{}\n{}\nnot json\n{}\n",
        rec(1),
        rec(3),
        &rec(4)[..40],
        rec(6)
    );
    let (records, report) = run(text.as_bytes());
    assert_eq!(report.format, Format::JsonLines);
    assert_eq!(names(&records), ["Call1", "Call3", "Call6"]);
    assert_eq!(report.skipped.get(&SkipReason::MalformedJson), Some(&3));
    let lines: Vec<u64> = report.examples.iter().map(|p| p.index).collect();
    assert_eq!(lines, [2, 4, 5]);
    assert!(report.examples.iter().all(|p| p.is_line_number));
    let detail = report.examples[0].detail.as_deref().unwrap();
    assert!(
        detail.contains("at column") && !detail.contains("line"),
        "{detail}"
    );
    assert!(report.fatal.is_none());
    assert!(report.examples[0]
        .to_string()
        .starts_with("line 2: malformed JSON"));
}

#[test]
fn broken_first_line_still_detected_as_json_lines() {
    let text = format!("{{\"eventTime\": oops}}\n{}\n{}\n", rec(1), rec(2));
    let (records, report) = run(text.as_bytes());
    assert_eq!(report.format, Format::JsonLines);
    assert_eq!(names(&records), ["Call1", "Call2"]);
    assert_eq!(report.examples[0].index, 1);
}

#[test]
fn wrong_types_skip_the_record_not_the_file() {
    let cases = [
        (r#""readOnly":false"#, r#""readOnly":"false""#, "readOnly"),
        (
            r#""eventTime":"2023-07-10T12:08:02Z""#,
            r#""eventTime":5"#,
            "eventTime",
        ),
        (
            r#""userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/alice","accountId":"111122223333"}"#,
            r#""userIdentity":"x""#,
            "userIdentity",
        ),
        (
            r#""arn":"arn:aws:iam::111122223333:user/alice""#,
            r#""arn":["a"]"#,
            "userIdentity.arn",
        ),
        (
            r#""managementEvent":true"#,
            r#""managementEvent":{"x":[{}]}"#,
            "managementEvent",
        ),
        (r#""eventName":"Call2""#, r#""eventName":true"#, "eventName"),
    ];
    for (from, to, field) in cases {
        let bad = rec(2);
        assert!(bad.contains(from), "{from}");
        let bad = bad.replace(from, to);
        let text = format!(r#"{{"Records":[{},{},{}]}}"#, rec(1), bad, rec(3));
        let (records, report) = run(text.as_bytes());
        assert_eq!(names(&records), ["Call1", "Call3"], "{field}");
        assert_eq!(
            report.skipped.get(&SkipReason::WrongType { field }),
            Some(&1),
            "{field}: {report:?}"
        );
        assert_eq!(report.examples[0].index, 1);
        assert!(report.fatal.is_none());
    }
}

#[test]
fn null_counts_as_absent() {
    let text = rec(1)
        .replace(r#""readOnly":false"#, r#""readOnly":null,"errorCode":null"#)
        .replace(
            r#""userIdentity":{"#,
            r#""userAgent":null,"userIdentity":{"#,
        );
    let (records, report) = run(text.as_bytes());
    assert_eq!(report.records_ok, 1);
    assert_eq!(records[0].read_only, None);
    assert_eq!(records[0].error_code, None);
    assert_eq!(records[0].user_agent, None);
    assert!(!records[0].is_write_call());
}

#[test]
fn missing_fields_are_reported_by_name() {
    let cases = [
        (r#""eventTime":"2023-07-10T12:08:02Z","#, "eventTime"),
        (r#""eventSource":"ec2.amazonaws.com","#, "eventSource"),
        (r#""eventName":"Call2","#, "eventName"),
        (r#""awsRegion":"us-east-1","#, "awsRegion"),
    ];
    for (remove, field) in cases {
        let bad = rec(2).replace(remove, "");
        assert_ne!(bad, rec(2));
        let (records, report) = run(format!("[{bad},{}]", rec(3)).as_bytes());
        assert_eq!(names(&records), ["Call3"]);
        assert_eq!(
            report.skipped.get(&SkipReason::MissingField(field)),
            Some(&1)
        );
        assert_eq!(
            report.examples[0].to_string(),
            format!("record 0: missing {field}")
        );
    }
    // An empty string is as good as missing.
    let bad = rec(2).replace(r#""awsRegion":"us-east-1""#, r#""awsRegion":"""#);
    let (_, report) = run(bad.as_bytes());
    assert_eq!(
        report.skipped.get(&SkipReason::MissingField("awsRegion")),
        Some(&1)
    );
}

#[test]
fn account_falls_back_to_user_identity() {
    let text = rec(1).replace(r#","recipientAccountId":"111122223333""#, "");
    let (records, _) = run(text.as_bytes());
    assert_eq!(records[0].account, "111122223333");
    let text = text.replace(
        r#""accountId":"111122223333""#,
        r#""accountId":"444455556666""#,
    );
    let (records, _) = run(text.as_bytes());
    assert_eq!(records[0].account, "444455556666");
    let text = text.replace(r#","accountId":"444455556666""#, "");
    let (records, report) = run(text.as_bytes());
    assert!(records.is_empty());
    assert_eq!(
        report
            .skipped
            .get(&SkipReason::MissingField("recipientAccountId")),
        Some(&1)
    );
    // eventID is optional.
    let text = rec(1).replace(r#""eventID":"id-1","#, "");
    let (records, _) = run(text.as_bytes());
    assert_eq!(records[0].event_id, None);
}

#[test]
fn event_time_checks() {
    let with_time = |t: &str| rec(1).replace("2023-07-10T12:08:01Z", t);
    let now = Utc::now().timestamp() / 60;
    let strict = ParseContext {
        max_minute: now,
        ..ctx()
    };
    let (records, report) = run_with(with_time("9999-12-31T23:59:59Z").as_bytes(), &strict);
    assert!(records.is_empty());
    assert_eq!(
        report.skipped.get(&SkipReason::EventTimeOutOfRange),
        Some(&1)
    );
    assert_eq!(
        SkipReason::EventTimeOutOfRange.to_string(),
        "eventTime out of range"
    );

    let (_, report) = run(with_time("2010-01-01T00:00:00Z").as_bytes());
    assert_eq!(
        report.skipped.get(&SkipReason::EventTimeOutOfRange),
        Some(&1)
    );

    for bad in [
        "2023-13-10T12:08:01Z",
        "yesterday",
        "",
        "99999999999-01-01T00:00:00Z",
    ] {
        let (records, report) = run(with_time(bad).as_bytes());
        assert!(records.is_empty(), "{bad}");
        let reason = if bad.is_empty() {
            SkipReason::MissingField("eventTime")
        } else {
            SkipReason::BadEventTime
        };
        assert_eq!(report.skipped.get(&reason), Some(&1), "{bad}");
    }

    let delivered = ParseContext {
        delivery_minute: Some(minute(2023, 7, 10, 11, 0)),
        ..ctx()
    };
    // 12:00 is exactly 60 minutes after delivery: accepted; 12:01 is not.
    let (records, _) = run_with(with_time("2023-07-10T12:00:59Z").as_bytes(), &delivered);
    assert_eq!(records.len(), 1);
    let (records, report) = run_with(with_time("2023-07-10T12:01:00Z").as_bytes(), &delivered);
    assert!(records.is_empty());
    assert_eq!(
        report.skipped.get(&SkipReason::EventTimeAfterDelivery),
        Some(&1)
    );
}

#[test]
fn long_fields_are_refused_and_user_agent_truncated() {
    let long_name = "N".repeat(MAX_NAME_BYTES + 1);
    let text = rec(1).replace("Call1", &long_name);
    let (_, report) = run(text.as_bytes());
    assert_eq!(
        report.skipped.get(&SkipReason::FieldTooLong("eventName")),
        Some(&1)
    );
    let text = rec(1).replace("Call1", &"N".repeat(MAX_NAME_BYTES));
    assert_eq!(run(text.as_bytes()).0.len(), 1);

    let long_arn = format!("arn:aws:iam::1:user/{}", "a".repeat(MAX_ARN_BYTES));
    let text = rec(1).replace("arn:aws:iam::111122223333:user/alice", &long_arn);
    let (_, report) = run(text.as_bytes());
    assert_eq!(
        report
            .skipped
            .get(&SkipReason::FieldTooLong("userIdentity.arn")),
        Some(&1)
    );

    // 1023 ASCII bytes then 'é' (2 bytes): the cut at 1024 would split it.
    let agent = format!("{}é and more", "a".repeat(MAX_USER_AGENT_BYTES - 1));
    for escaped in [false, true] {
        let json_agent = if escaped {
            agent.replace('é', "\\u00e9")
        } else {
            agent.clone()
        };
        let text = rec(1).replace(
            r#""awsRegion""#,
            &format!(r#""userAgent":"{json_agent}","awsRegion""#),
        );
        let (records, _) = run(text.as_bytes());
        let ua = records[0].user_agent.as_deref().unwrap();
        assert_eq!(ua.len(), MAX_USER_AGENT_BYTES - 1, "escaped={escaped}");
        assert!(agent.starts_with(ua));
    }
}

#[test]
fn error_code_empty_is_none() {
    let with =
        |code: &str| rec(1).replace(r#""eventID""#, &format!(r#""errorCode":{code},"eventID""#));
    assert_eq!(run(with(r#""""#).as_bytes()).0[0].error_code, None);
    assert_eq!(
        run(with(r#""AccessDenied""#).as_bytes()).0[0]
            .error_code
            .as_deref(),
        Some("AccessDenied")
    );
}

#[test]
fn management_rule() {
    let base = rec(1)
        .replace(r#","managementEvent":true"#, "")
        .replace(r#","eventCategory":"Management""#, "");
    let with = |extra: &str| base.replace(r#""eventID""#, &format!(r#"{extra}"eventID""#));
    let category = |text: String| run(text.as_bytes()).0[0].category;
    let (management, data) = (Some(EventCategory::Management), Some(EventCategory::Data));

    assert_eq!(category(with(r#""managementEvent":true,"#)), management);
    assert_eq!(
        category(with(
            r#""managementEvent":false,"eventCategory":"Management","#
        )),
        None
    );
    assert_eq!(
        category(with(r#""eventCategory":"Management","#)),
        management
    );
    assert_eq!(category(with(r#""eventCategory":"Data","#)), data);
    assert_eq!(
        category(with(r#""managementEvent":false,"eventCategory":"Data","#)),
        data
    );
    assert_eq!(category(with(r#""managementEvent":false,"#)), data, "1.06");
    assert_eq!(category(with(r#""eventCategory":"Other","#)), None);
    // Old records: management unless a known data event.
    assert_eq!(category(base.clone()), management);
    let s3 = base
        .replace("ec2.amazonaws.com", "s3.amazonaws.com")
        .replace("Call1", "PutObject");
    let record = &run(s3.as_bytes()).0[0];
    assert_eq!(record.category, data);
    assert!(
        !record.is_write_call(),
        "a data event is not a write management call"
    );
    let lambda = base
        .replace("ec2.amazonaws.com", "lambda.amazonaws.com")
        .replace("Call1", "Invoke");
    assert_eq!(category(lambda), data);
    let bucket = base
        .replace("ec2.amazonaws.com", "s3.amazonaws.com")
        .replace("Call1", "CreateBucket");
    assert_eq!(category(bucket), management);
}

/// A data event as AWS documents it (the S3 `PutObject` example of the CloudTrail user guide,
/// "CloudTrail record contents for data events"), with an `errorCode` added.
const S3_DATA_EVENT: &str = r#"{"eventVersion":"1.09","userIdentity":{"type":"AssumedRole","principalId":"AROAEXAMPLE:session","arn":"arn:aws:sts::111122223333:assumed-role/app/session","accountId":"111122223333","accessKeyId":"ASIAEXAMPLE","sessionContext":{"sessionIssuer":{"type":"Role","principalId":"AROAEXAMPLE","arn":"arn:aws:iam::111122223333:role/app","accountId":"111122223333","userName":"app"},"attributes":{"creationDate":"2025-11-20T10:00:00Z","mfaAuthenticated":"false"}}},"eventTime":"2025-11-20T10:15:23Z","eventSource":"s3.amazonaws.com","eventName":"PutObject","awsRegion":"us-east-1","sourceIPAddress":"192.0.2.0","userAgent":"[aws-sdk-java/1.12.0]","errorCode":"AccessDenied","requestParameters":{"bucketName":"amzn-s3-demo-bucket","Host":"amzn-s3-demo-bucket.s3.us-east-1.amazonaws.com","key":"reports/2025/11/20.csv"},"responseElements":null,"additionalEventData":{"SignatureVersion":"SigV4","CipherSuite":"TLS_AES_128_GCM_SHA256","bytesTransferredIn":3054,"AuthenticationMethod":"AuthHeader","x-amz-id-2":"example","bytesTransferredOut":0},"requestID":"EXAMPLE123","eventID":"ad42ce8e-0a2c-4c5d-9a4e-0d3e0c8f0a11","readOnly":false,"resources":[{"type":"AWS::S3::Object","ARN":"arn:aws:s3:::amzn-s3-demo-bucket/reports/2025/11/20.csv"},{"accountId":"111122223333","type":"AWS::S3::Bucket","ARN":"arn:aws:s3:::amzn-s3-demo-bucket"}],"eventType":"AwsApiCall","managementEvent":false,"recipientAccountId":"111122223333","eventCategory":"Data","tlsDetails":{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"amzn-s3-demo-bucket.s3.us-east-1.amazonaws.com"}}"#;

#[test]
fn a_data_event_is_read_as_one_and_aggregated_summaries_and_network_activity_never_count() {
    // An aggregated data-event summary (eventType AwsAggregatedEvent, since November 2025) and
    // a network-activity event (VPC endpoint), in the shapes AWS documents.
    let aggregated = r#"{"eventVersion":"1.11","eventTime":"2025-11-20T10:20:00Z","eventSource":"s3.amazonaws.com","eventName":"PutObject","awsRegion":"us-east-1","eventType":"AwsAggregatedEvent","eventCategory":"Data","managementEvent":false,"readOnly":false,"recipientAccountId":"111122223333","eventID":"agg-1","summary":{"count":1200,"windowStart":"2025-11-20T10:15:00Z","windowEnd":"2025-11-20T10:20:00Z"}}"#;
    let network = r#"{"eventVersion":"1.09","userIdentity":{"type":"AWSAccount","principalId":"","accountId":"444455556666"},"eventTime":"2025-11-20T10:16:00Z","eventSource":"kms.amazonaws.com","eventName":"ListKeys","awsRegion":"us-east-1","eventType":"AwsVpceEvent","eventCategory":"NetworkActivity","managementEvent":false,"readOnly":true,"recipientAccountId":"111122223333","eventID":"net-1","errorCode":"VpceAccessDenied","vpcEndpointId":"vpce-example"}"#;
    let text = format!(
        r#"{{"Records":[{S3_DATA_EVENT},{aggregated},{network},{}]}}"#,
        rec(1)
    );
    let (records, report) = run(text.as_bytes());
    assert_eq!(names(&records), ["PutObject", "Call1"]);
    let data = &records[0];
    assert_eq!(data.category, Some(EventCategory::Data));
    assert_eq!(data.read_only, Some(false));
    assert_eq!(data.error_code.as_deref(), Some("AccessDenied"));
    assert_eq!(
        data.user_identity_arn.as_deref(),
        Some("arn:aws:sts::111122223333:assumed-role/app/session")
    );
    assert_eq!(
        crate::series::kind::kinds_of(&data.facts()),
        0b0111,
        "a failed data write: a call, an error and its principal's write"
    );
    assert!(!data.is_write_call());
    assert_eq!(report.ignored.get(&IgnoreReason::AggregatedEvent), Some(&1));
    assert_eq!(report.ignored.get(&IgnoreReason::NetworkActivity), Some(&1));
    assert!(report.skipped.is_empty());
    assert_eq!(report.records_seen, 4);
}

#[test]
fn insight_events_are_ignored_not_skipped() {
    let insight = r#"{"eventVersion":"1.07","eventTime":"2020-07-21T20:56:00Z","awsRegion":"us-east-1","eventID":"x","eventType":"AwsCloudTrailInsight","recipientAccountId":"838185438692","sharedEventID":"y","insightDetails":{"state":"Start"},"eventCategory":"Insight"}"#;
    let by_category = insight.replace("AwsCloudTrailInsight", "AwsApiCall");
    let text = format!(r#"{{"Records":[{insight},{},{by_category}]}}"#, rec(1));
    let (records, report) = run(text.as_bytes());
    assert_eq!(names(&records), ["Call1"]);
    assert_eq!(report.ignored.get(&IgnoreReason::InsightEvent), Some(&2));
    assert!(report.skipped.is_empty());
    assert_eq!(report.records_seen, 3);
}

#[test]
fn non_objects_in_records_are_skipped() {
    let text = format!(r#"{{"Records":[1,"x",null,[{}],{},true]}}"#, rec(1), rec(2));
    let (records, report) = run(text.as_bytes());
    assert_eq!(names(&records), ["Call2"]);
    assert_eq!(report.skipped.get(&SkipReason::NotAnObject), Some(&5));
    let indexes: Vec<u64> = report.examples.iter().map(|p| p.index).collect();
    assert_eq!(indexes, [0, 1, 2, 3, 5]);
    let (_, report) = run(br#"{"Records":{"a":1}}"#);
    assert_eq!(
        report
            .skipped
            .get(&SkipReason::WrongType { field: "Records" }),
        Some(&1)
    );
    let (_, report) = run(b"42");
    assert_eq!(report.skipped.get(&SkipReason::NotAnObject), Some(&1));
}

#[test]
fn examples_are_capped() {
    let records: Vec<String> = (0..50).map(|_| "1".to_string()).collect();
    let (_, report) = run(format!("[{}]", records.join(",")).as_bytes());
    assert_eq!(report.records_seen, 50);
    assert_eq!(report.examples.len(), MAX_EXAMPLES);
    assert_eq!(report.skipped.get(&SkipReason::NotAnObject), Some(&50));
}

#[test]
fn huge_request_parameters_are_skipped() {
    let big = format!(
        r#"{{"blob":"{}","list":[{}]}}"#,
        "x".repeat(200_000),
        vec!["{\"k\":\"v\\n\"}"; 2000].join(",")
    );
    let text = rec(1).replace(r#"{"a":[1,2,{"b":null}]}"#, &big);
    assert!(text.len() > 200_000);
    let (records, report) = run(format!("[{text},{}]", rec(2)).as_bytes());
    assert_eq!(names(&records), ["Call1", "Call2"]);
    assert!(report.fatal.is_none());
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = "[".repeat(100_000);
    let (records, report) = run(deep.as_bytes());
    assert!(records.is_empty());
    assert!(report.fatal.is_some());

    let deep_object = "{\"a\":".repeat(100_000);
    let (_, report) = run(deep_object.as_bytes());
    assert!(report.fatal.is_some());

    // Deep requestParameters are skipped without recursion (serde_json skips iteratively):
    // nothing is lost.
    let nested = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep = rec(2).replace(r#"{"a":[1,2,{"b":null}]}"#, &nested);
    let (records, report) = run(format!(r#"{{"Records":[{},{deep}]}}"#, rec(1)).as_bytes());
    assert_eq!(names(&records), ["Call1", "Call2"]);
    assert!(report.fatal.is_none());
    // Deep nesting where a needed field should be: a wrong type, not a crash.
    let deep_time = rec(2).replace(r#""2023-07-10T12:08:02Z""#, &nested);
    let (records, report) = run(format!("[{},{deep_time}]", rec(1)).as_bytes());
    assert_eq!(names(&records), ["Call1"]);
    assert_eq!(
        report
            .skipped
            .get(&SkipReason::WrongType { field: "eventTime" }),
        Some(&1)
    );
    // Unclosed deep nesting in a record: the file is damaged from there on.
    let bad = rec(2).replace(r#"{"a":[1,2,{"b":null}]}"#, &"[".repeat(100_000));
    let (records, report) = run(format!(r#"{{"Records":[{},{bad}]}}"#, rec(1)).as_bytes());
    assert_eq!(names(&records), ["Call1"]);
    assert!(report.fatal.is_some());

    // The same as JSON lines: only that line is lost.
    let (records, report) = run(format!("{}\n{bad}\n{}\n", rec(1), rec(3)).as_bytes());
    assert_eq!(names(&records), ["Call1", "Call3"]);
    assert_eq!(report.skipped.get(&SkipReason::MalformedJson), Some(&1));
}

#[test]
fn invalid_utf8_is_an_error_not_a_panic() {
    let good = rec(2);
    let mut bad = good.clone().into_bytes();
    let at = good.find("Call2").unwrap();
    bad[at] = 0xff;
    bad[at + 1] = 0xfe;
    // In a needed field, in a document.
    let mut doc = format!("[{},", rec(1)).into_bytes();
    doc.extend_from_slice(&bad);
    doc.extend_from_slice(format!(",{}]", rec(3)).as_bytes());
    // Each bad byte is replaced by U+FFFD and the record is kept, with every record after it.
    let (records, report) = run(&doc);
    assert_eq!(names(&records), ["Call1", "\u{fffd}\u{fffd}ll2", "Call3"]);
    assert!(report.fatal.is_none(), "{report:?}");
    assert_eq!(report.chars_replaced, 2);
    // In JSON lines.
    let mut lines = format!("{}\n", rec(1)).into_bytes();
    lines.extend_from_slice(&bad);
    lines.extend_from_slice(format!("\n{}\n", rec(3)).as_bytes());
    let (records, report) = run(&lines);
    assert_eq!(names(&records), ["Call1", "\u{fffd}\u{fffd}ll2", "Call3"]);
    assert_eq!(report.records_skipped(), 0);
    assert_eq!(report.chars_replaced, 2);
    // In a skipped field: either accepted or reported, never a panic.
    let mut skipped_field = rec(4).into_bytes();
    let at = rec(4).find("IAMUser").unwrap();
    skipped_field[at] = 0xc3;
    skipped_field[at + 1] = 0x28;
    let (records, report) = run(&skipped_field);
    assert_eq!(records.len() as u64 + u64::from(report.fatal.is_some()), 1);
}

/// A Records object of `n` records whose record `bad` has `field` replaced by raw `value`.
fn records_with_damage(n: u32, bad: u32, field: &str, value: &[u8]) -> Vec<u8> {
    let mut out = b"{\"Records\":[".to_vec();
    for i in 0..n {
        if i > 0 {
            out.push(b',');
        }
        let record = rec(i);
        if i == bad {
            let (head, tail) = record.split_once(r#""awsRegion""#).unwrap();
            out.extend_from_slice(head.as_bytes());
            out.extend_from_slice(format!("\"{field}\":\"").as_bytes());
            out.extend_from_slice(value);
            out.extend_from_slice(b"\",\"awsRegion\"");
            out.extend_from_slice(tail.as_bytes());
        } else {
            out.extend_from_slice(record.as_bytes());
        }
    }
    out.extend_from_slice(b"]}");
    out
}

#[test]
fn damaged_text_in_one_record_does_not_cost_the_records_after_it() {
    // Regression: one invalid UTF-8 byte, raw NUL or lone surrogate in a needed string of a
    // Records object stopped the document there (500 of 1,000 records kept).
    let cases: [(&str, &[u8], &str); 5] = [
        ("userAgent", b"aws-cli/2 \xff bad", "aws-cli/2 \u{fffd} bad"),
        ("userAgent", b"nul\x00here", "nul\u{fffd}here"),
        ("userAgent", b"half \\ud800 pair", "half \u{fffd} pair"),
        ("userAgent", b"low \\udc00", "low \u{fffd}"),
        ("userAgent", b"cut \xe2\x82", "cut \u{fffd}"),
    ];
    for (field, value, expected) in cases {
        let buf = records_with_damage(1000, 500, field, value);
        for scanner in [Scanner::Fast, Scanner::Serde] {
            let (records, report) = run_scanner(&buf, scanner);
            assert_eq!(records.len(), 1000, "{scanner:?} {value:?}: {report:?}");
            assert!(report.fatal.is_none());
            assert_eq!(report.chars_replaced, 1, "{value:?}");
            assert_eq!(records[500].user_agent.as_deref(), Some(expected));
            assert_eq!(records[999].event_name, "Call999");
        }
        assert_same_as_serde(&buf);
    }
    // A lone surrogate in eventName: the record is kept under the repaired name.
    let buf = records_object(3).replace("Call1", "Ca\\ud800ll1");
    let (records, report) = run(buf.as_bytes());
    assert_eq!(names(&records), ["Call0", "Ca\u{fffd}ll1", "Call2"]);
    assert_eq!(report.chars_replaced, 1);
    assert_same_as_serde(buf.as_bytes());
    // In JSON lines, the damaged line is kept too.
    let lines: Vec<u8> = [
        rec(0).into_bytes(),
        rec(1).replace("Call1", "Ca\u{0}ll1").into_bytes(),
        rec(2).into_bytes(),
    ]
    .join(&b'\n');
    let (records, report) = run(&lines);
    assert_eq!(names(&records), ["Call0", "Ca\u{fffd}ll1", "Call2"]);
    assert_eq!(report.chars_replaced, 1);
    assert_eq!(report.records_skipped(), 0);
}

#[test]
fn a_ten_megabyte_user_agent_is_cut_not_fatal() {
    let agent = "x".repeat(10 << 20);
    let buf = records_with_damage(3, 1, "userAgent", agent.as_bytes());
    for scanner in [Scanner::Fast, Scanner::Serde] {
        let (records, report) = run_scanner(&buf, scanner);
        assert_eq!(records.len(), 3, "{report:?}");
        assert_eq!(
            records[1].user_agent.as_deref().map(str::len),
            Some(MAX_USER_AGENT_BYTES)
        );
    }
    // With a bad byte at its very end, after the cut.
    let mut damaged = agent.into_bytes();
    damaged.push(0xff);
    let buf = records_with_damage(3, 1, "userAgent", &damaged);
    let (records, report) = run(&buf);
    assert_eq!(records.len(), 3, "{report:?}");
    assert_eq!(report.chars_replaced, 1);
}

#[test]
fn skip_reasons_read_well() {
    assert_eq!(
        SkipReason::MissingField("eventTime").to_string(),
        "missing eventTime"
    );
    assert_eq!(
        SkipReason::WrongType { field: "readOnly" }.to_string(),
        "readOnly has the wrong JSON type"
    );
    assert_eq!(
        SkipReason::FieldTooLong("eventName").to_string(),
        "eventName too long"
    );
    let mut reasons = [
        SkipReason::EventTimeOutOfRange,
        SkipReason::MissingField("b"),
        SkipReason::MissingField("a"),
        SkipReason::NotAnObject,
    ];
    reasons.sort();
    assert_eq!(reasons[0], SkipReason::NotAnObject);
    assert_eq!(reasons[1], SkipReason::MissingField("a"));
}

#[test]
fn earliest_event_minute_is_2013() {
    assert_eq!(EARLIEST_EVENT_MINUTE, minute(2013, 1, 1, 0, 0));
}

/// Parses with one reader, keeping owned records and the report.
fn run_scanner(buf: &[u8], scanner: Scanner) -> (Vec<CallRecord<'static>>, ParseReport) {
    let mut records = Vec::new();
    let report = parse_with(buf, &ctx(), &mut |r| records.push(r.into_owned()), scanner);
    (records, report)
}

/// The fast scanner and the serde parser must agree on every input: same records (values and
/// borrowed/owned does not matter), same report, same fatal position.
fn assert_same_as_serde(buf: &[u8]) {
    let fast = run_scanner(buf, Scanner::Fast);
    let serde = run_scanner(buf, Scanner::Serde);
    assert_eq!(
        fast,
        serde,
        "readers disagree on {:?}",
        String::from_utf8_lossy(buf)
    );
}

/// Records with everything the fast scanner meets in real files: escapes in skipped and needed
/// strings, numbers of every form, nested values, nulls, empty containers, whitespace.
fn varied_records_object() -> String {
    let fancy = rec(7)
        .replace(
            r#""awsRegion":"us-east-1""#,
            r#""awsRegion" : "us-east-1" ,
 "userAgent":"aws-cli\/2.0 \u00e9 \"q\"","errorCode":null,"x":[-0,1.5e+3,2E-2,-12.0,0,[],{}],
 "policy":"{\"Version\":\"2012-10-17\"}\t","resources":[{"ARN":"arn:aws:s3:::b","type":null}]"#,
        )
        .replace(
            r#""accountId":"111122223333""#,
            r#""accountId":"111122223333","sessionContext":{"attributes":{"mfa":"false"}},"arn":"arn:aws:iam::111122223333:user/bob""#,
        );
    format!(
        "\u{feff}{{ \"Records\" : [ {} ,\n{fancy},{}, {{}} ] }}\n",
        rec(1),
        rec(2).replace(
            r#""readOnly":false"#,
            r#""readOnly":true,"errorCode":"AccessDenied""#
        )
    )
}

/// Whether the fast scanner reads `buf` to its end by itself (no hand-over to serde).
fn fast_scanner_reads_alone(buf: &[u8]) -> bool {
    let ctx = ctx();
    let mut on_record = |_: CallRecord<'_>| {};
    let mut sink = Sink {
        ctx: &ctx,
        on_record: &mut on_record,
        report: ParseReport::default(),
        next_index: 0,
        line: None,
        shape: None,
        replay: 0,
        awslogs_depth: 0,
    };
    let body = buf.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(buf);
    fast::records_object(body, &mut sink).is_ok()
}

#[test]
fn fast_scanner_agrees_with_serde_on_good_files() {
    // The scanner must really read these (a scanner that always hands over would agree too).
    assert!(fast_scanner_reads_alone(records_object(5).as_bytes()));
    assert!(fast_scanner_reads_alone(varied_records_object().as_bytes()));
    assert!(!fast_scanner_reads_alone(b"{\"Records\":[1]}"));
    assert_same_as_serde(records_object(0).as_bytes());
    assert_same_as_serde(records_object(5).as_bytes());
    let varied = varied_records_object();
    assert_same_as_serde(varied.as_bytes());
    let (records, report) = run_scanner(varied.as_bytes(), Scanner::Fast);
    assert_eq!(report.format, Format::RecordsObject);
    assert!(report.fatal.is_none(), "{report:?}");
    assert_eq!(records.len(), 3, "{report:?}");
    assert_eq!(
        records[1].user_agent.as_deref(),
        Some("aws-cli/2.0 é \"q\"")
    );
    assert_eq!(
        records[1].user_identity_arn.as_deref(),
        Some("arn:aws:iam::111122223333:user/bob")
    );
    assert_eq!(records[2].error_code.as_deref(), Some("AccessDenied"));
}

#[test]
fn fast_scanner_agrees_with_serde_on_damaged_files() {
    use rand::{Rng, SeedableRng};
    let base = varied_records_object().into_bytes();
    // Hostile values in needed and skipped places.
    let hostile = [
        r#""readOnly":"false""#,
        r#""readOnly":0"#,
        r#""eventTime":1e400"#,
        r#""eventTime":["x"]"#,
        r#""userIdentity":"me""#,
        r#""userIdentity":{"arn":7}"#,
        r#""eventName":"a\ud800b""#,
        r#""eventName":"a\x""#,
        r#""ev\u0065ntName":"Renamed""#,
        r#""x":01"#,
        r#""x":1."#,
        r#""x":-"#,
        r#""x":[1,]"#,
        r#""x":{"a":1,}"#,
        r#""x":nul"#,
        r#""x":"tab	inside""#,
        r#""x":{"a" 1}"#,
        r#""x":{1:2}"#,
        "\"userAgent\":\"a\u{0}b\"",
        r#""userAgent":"a\udfffb""#,
        r#""x":"a\ud800""#,
        "\"eventName\":\"tab\tin name\"",
    ];
    let anchor = r#""eventType":"AwsApiCall""#;
    let text = String::from_utf8(base.clone()).unwrap();
    for h in hostile {
        let at = text.rfind(anchor).unwrap();
        let changed = format!("{}{h},{}", &text[..at], &text[at..]);
        assert_same_as_serde(changed.as_bytes());
    }
    // Trailing content, a second document, records that are not objects, a null Records.
    for tail in ["x", "{\"Records\":[]}", "  \n\t"] {
        assert_same_as_serde(format!("{}{tail}", records_object(2)).as_bytes());
    }
    assert_same_as_serde(b"{\"Records\":[1,{\"a\":2}]}");
    assert_same_as_serde(b"{\"Records\":null}");
    assert_same_as_serde(b"{\"Records\":[],\"eventTime\":\"x\"}");
    // Random damage: cut, flipped, inserted and deleted bytes, thousands of times.
    let specials = b"{}[]\",:\\ \n\x00\x1f\xff0e-.tnu";
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
    for _ in 0..4000 {
        let mut bytes = base.clone();
        for _ in 0..rng.gen_range(1..4) {
            let at = rng.gen_range(0..bytes.len());
            match rng.gen_range(0..4) {
                0 => bytes.truncate(at),
                1 => bytes[at] = specials[rng.gen_range(0..specials.len())],
                2 => bytes.insert(at, specials[rng.gen_range(0..specials.len())]),
                _ => {
                    bytes.remove(at);
                }
            }
            if bytes.is_empty() {
                break;
            }
        }
        assert_same_as_serde(&bytes);
    }
}

#[test]
fn fast_scanner_agrees_with_serde_on_every_stop_byte_at_every_offset() {
    // The scanner passes over string bodies 16 bytes at a time; a quote, backslash, control
    // character or non-ASCII byte must be seen wherever it sits in the chunk (or in the tail of
    // the buffer), in a skipped string, a needed one and a key.
    let long = "arn:aws:iam::111122223333:role/a-rather-long-role-name-for-testing";
    let stops: [&[u8]; 7] = [
        b"\"",
        b"\\",
        b"\\n",
        b"\\u00e9",
        b"\x01",
        b"\x1f",
        b"\xc3\xa9",
    ];
    for place in ["\"x\":\"", "\"userAgent\":\"", "\"k"] {
        for offset in 0..40 {
            for stop in stops {
                let mut value = long.as_bytes().to_vec();
                value.splice(offset..offset, stop.iter().copied());
                let end: &[u8] = if place == "\"k" { b"\":1," } else { b"\"," };
                let mut field = place.as_bytes().to_vec();
                field.extend_from_slice(&value);
                field.extend_from_slice(end);
                let record = rec(1).replacen("\"eventTime\"", "\u{0}\"eventTime\"", 1);
                let (head, tail) = record.split_once('\u{0}').unwrap();
                let mut buf = b"{\"Records\":[".to_vec();
                buf.extend_from_slice(head.as_bytes());
                buf.extend_from_slice(&field);
                buf.extend_from_slice(tail.as_bytes());
                buf.extend_from_slice(b"]}");
                assert_same_as_serde(&buf);
                // The same record cut short just after the stop byte.
                let cut =
                    buf.len() - tail.len() - end.len() - 2 - (value.len() - offset - stop.len());
                assert_same_as_serde(&buf[..cut]);
            }
        }
    }
    // A plain long string is still read by the scanner alone.
    let plain = records_object(3).replace("user/alice", long);
    assert!(fast_scanner_reads_alone(plain.as_bytes()));
}

/// A CloudWatch Logs subscription message carrying `records` (each a record's JSON text).
fn cwl_message(message_type: &str, records: &[String]) -> String {
    let events: Vec<String> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            format!(
                r#"{{"id":"3772{i}","timestamp":1688990880000,"message":{}}}"#,
                serde_json::to_string(r).unwrap()
            )
        })
        .collect();
    format!(
        r#"{{"messageType":"{message_type}","owner":"111122223333","logGroup":"aws-cloudtrail-logs-111122223333","logStream":"111122223333_CloudTrail_us-east-1","subscriptionFilters":["to-firehose"],"logEvents":[{}]}}"#,
        events.join(",")
    )
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn cloudwatch_logs_messages_deliver_the_records_in_their_log_events() {
    let message = cwl_message("DATA_MESSAGE", &[rec(1), "not a record".into(), rec(2)]);
    let (records, report) = run(message.as_bytes());
    assert_eq!(names(&records), ["Call1", "Call2"]);
    assert_eq!(report.format, Format::CloudWatchLogs);
    assert_eq!(report.records_seen, 3);
    assert_eq!(report.skipped.get(&SkipReason::MalformedJson), Some(&1));
    // A control message (a subscription's health check) holds no record.
    let control = cwl_message(
        "CONTROL_MESSAGE",
        &["CWL CONTROL MESSAGE: Checking health of destination Firehose.".into()],
    );
    let (records, report) = run(control.as_bytes());
    assert!(records.is_empty());
    assert!(report.skipped.is_empty());
    assert_eq!(report.ignored.get(&IgnoreReason::ControlMessage), Some(&1));
    // Firehose writes the messages it receives one after the other, without separators.
    let firehose = format!(
        "{}{}{}",
        cwl_message("DATA_MESSAGE", &[rec(1)]),
        control,
        cwl_message("DATA_MESSAGE", &[rec(2), rec(3)])
    );
    let (records, report) = run(firehose.as_bytes());
    assert_eq!(names(&records), ["Call1", "Call2", "Call3"]);
    assert!(report.fatal.is_none(), "{:?}", report.fatal);
    assert_eq!(report.ignored.get(&IgnoreReason::ControlMessage), Some(&1));
}

#[test]
fn an_awslogs_payload_is_unpacked_once_and_a_bad_one_is_reported() {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let message = cwl_message("DATA_MESSAGE", &[rec(1), rec(2)]);
    let payload = format!(
        r#"{{"awslogs":{{"data":"{}"}}}}"#,
        b64(&gzip(message.as_bytes()))
    );
    let (records, report) = run(payload.as_bytes());
    assert_eq!(names(&records), ["Call1", "Call2"]);
    assert_eq!(report.format, Format::CloudWatchLogs);
    // One payload per line, as a Lambda or a queue consumer would save them.
    let lines = format!("{payload}\n{payload}\n");
    let (records, _) = run(lines.as_bytes());
    assert_eq!(names(&records), ["Call1", "Call2", "Call1", "Call2"]);
    // Not base64, base64 of something that is not gzip, gzip of something that is not JSON,
    // a payload wrapped in another: each one bad record, the good records around it kept.
    let nested = format!(
        r#"{{"awslogs":{{"data":"{}"}}}}"#,
        b64(&gzip(payload.as_bytes()))
    );
    for bad in [
        r#"{"awslogs":{"data":"%%% not base64"}}"#.to_string(),
        format!(r#"{{"awslogs":{{"data":"{}"}}}}"#, b64(b"plain text")),
        format!(r#"{{"awslogs":{{"data":"{}"}}}}"#, b64(&gzip(b"{ broken"))),
        r#"{"awslogs":{"data":42}}"#.to_string(),
        nested,
    ] {
        let text = format!("{}\n{bad}\n{}\n", rec(1), rec(2));
        let (records, report) = run(text.as_bytes());
        assert_eq!(names(&records), ["Call1", "Call2"], "{bad}");
        assert_eq!(
            report.skipped.get(&SkipReason::BadAwslogsData),
            Some(&1),
            "{bad}"
        );
    }
}
