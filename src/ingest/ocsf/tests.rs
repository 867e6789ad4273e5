use super::*;
use crate::ingest::parse::{IgnoreReason, SkipReason};

/// 2024-03-04T12:34:56Z in milliseconds.
const T: i64 = 1_709_555_696_000;
/// Its minute.
const T_MINUTE: i64 = T / 60_000;

fn text(name: &str, values: &[Option<&str>]) -> Series {
    Series::new(name.into(), values)
}

fn structure(name: &str, fields: &[Series]) -> Series {
    let len = fields.first().map_or(0, |s| s.len());
    StructChunked::from_series(name.into(), len, fields.iter())
        .unwrap()
        .into_series()
}

/// `unmapped` as Security Lake writes it: a map of strings (a list of key/value structs once
/// read), one list per row.
fn unmapped(rows: &[&[(&str, &str)]]) -> Series {
    let lists: Vec<Series> = rows
        .iter()
        .map(|entries| {
            let keys: Vec<&str> = entries.iter().map(|(k, _)| *k).collect();
            let values: Vec<&str> = entries.iter().map(|(_, v)| *v).collect();
            structure(
                "",
                &[
                    Series::new("key".into(), keys),
                    Series::new("value".into(), values),
                ],
            )
        })
        .collect();
    Series::new("unmapped".into(), lists)
}

/// The columns of `n` API Activity rows; `row` gives each row's values (see [`Row`]).
#[derive(Clone)]
struct Row {
    class_uid: Option<i32>,
    time: Option<i64>,
    operation: Option<&'static str>,
    service: Option<&'static str>,
    region: Option<&'static str>,
    account: Option<&'static str>,
    error: Option<&'static str>,
    unmapped: &'static [(&'static str, &'static str)],
    activity_id: Option<i32>,
}

impl Default for Row {
    fn default() -> Self {
        Row {
            class_uid: Some(6003),
            time: Some(T),
            operation: Some("RunInstances"),
            service: Some("ec2.amazonaws.com"),
            region: Some("us-east-1"),
            account: Some("111122223333"),
            error: None,
            unmapped: &[("readOnly", "false"), ("managementEvent", "true")],
            activity_id: Some(1),
        }
    }
}

fn frame(rows: &[Row]) -> DataFrame {
    let col = |f: &dyn Fn(&Row) -> Option<&'static str>| rows.iter().map(f).collect::<Vec<_>>();
    let n = rows.len();
    let many = |s: &'static str| vec![Some(s); n];
    let metadata = structure(
        "metadata",
        &[
            structure(
                "product",
                &[
                    text("version", &many("1.09")),
                    structure("feature", &[text("name", &many("Management"))]),
                    text("name", &many("CloudTrail")),
                ],
            ),
            text(
                "uid",
                &col(&|_| Some("6f3a6a0b-0000-4000-8000-000000000001")),
            ),
            text("event_code", &many("AwsApiCall")),
            text("version", &many("1.1.0")),
        ],
    );
    let api = structure(
        "api",
        &[
            text("operation", &col(&|r| r.operation)),
            structure("service", &[text("name", &col(&|r| r.service))]),
            structure("request", &[text("uid", &many("req-1"))]),
            structure(
                "response",
                &[
                    text("error", &col(&|r| r.error)),
                    text(
                        "message",
                        &col(&|r| r.error.map(|_| "You are not authorized")),
                    ),
                ],
            ),
        ],
    );
    let cloud = structure(
        "cloud",
        &[
            text("region", &col(&|r| r.region)),
            text("provider", &many("AWS")),
            structure("account", &[text("uid", &col(&|r| r.account))]),
        ],
    );
    let actor = structure(
        "actor",
        &[
            structure(
                "user",
                &[
                    text("type", &many("AssumedRole")),
                    text(
                        "uid",
                        &many("arn:aws:sts::111122223333:assumed-role/Deployer/ci"),
                    ),
                    text("uid_alt", &many("AROAEXAMPLE:ci")),
                    structure("account", &[text("uid", &many("111122223333"))]),
                    text("credential_uid", &many("ASIAEXAMPLE")),
                    text("name", &many("ci")),
                ],
            ),
            text("invoked_by", &vec![None; n]),
            structure(
                "session",
                &[text(
                    "issuer",
                    &many("arn:aws:iam::111122223333:role/Deployer"),
                )],
            ),
        ],
    );
    let class: Vec<Option<i32>> = rows.iter().map(|r| r.class_uid).collect();
    let activity: Vec<Option<i32>> = rows.iter().map(|r| r.activity_id).collect();
    let time: Vec<Option<i64>> = rows.iter().map(|r| r.time).collect();
    let unmapped = unmapped(&rows.iter().map(|r| r.unmapped).collect::<Vec<_>>());
    DataFrame::new_infer_height(vec![
        Series::new("class_uid".into(), class).into(),
        Series::new("activity_id".into(), activity).into(),
        Series::new("time".into(), time).into(),
        metadata.into(),
        api.into(),
        cloud.into(),
        actor.into(),
        structure(
            "http_request",
            &[text("user_agent", &many("aws-cli/2.15.0"))],
        )
        .into(),
        structure("src_endpoint", &[text("ip", &many("198.51.100.7"))]).into(),
        unmapped.into(),
    ])
    .unwrap()
}

fn parquet(df: &mut DataFrame, row_group: Option<usize>) -> Vec<u8> {
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes)
        .with_row_group_size(row_group)
        .finish(df)
        .unwrap();
    bytes
}

fn ctx(display: &str) -> ParseContext<'_> {
    ParseContext::new(display, None)
}

/// Parses `bytes`: the records' (minute, account, region, name, error, read_only) and the report.
fn read(
    bytes: &[u8],
    display: &str,
) -> Result<(Vec<CallRecord<'static>>, ParseReport, Option<OcsfError>), OcsfError> {
    let mut records = Vec::new();
    let (report, damage) = parse_parquet(bytes, &ctx(display), 1 << 30, &mut |r| {
        records.push(r.into_owned())
    })?;
    Ok((records, report, damage))
}

#[test]
fn one_row_written_by_hand_maps_to_its_cloudtrail_record() {
    let row = Row {
        error: Some("AccessDenied"),
        ..Row::default()
    };
    let df = frame(&[row]);
    let columns = Columns::of(&df).unwrap();
    let unmapped = Unmapped::of(columns.unmapped.as_ref(), 0);
    let partition = Partition::default();
    let json = serde_json::to_value(record(&columns, 0, &unmapped, &partition)).unwrap();
    let expected = serde_json::json!({
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": "AROAEXAMPLE:ci",
            "arn": "arn:aws:sts::111122223333:assumed-role/Deployer/ci",
            "accountId": "111122223333",
            "accessKeyId": "ASIAEXAMPLE",
            "userName": "ci",
            "sessionContext": {"sessionIssuer": {"arn": "arn:aws:iam::111122223333:role/Deployer"}}
        },
        "eventTime": "2024-03-04T12:34:56Z",
        "eventSource": "ec2.amazonaws.com",
        "eventName": "RunInstances",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "198.51.100.7",
        "userAgent": "aws-cli/2.15.0",
        "errorCode": "AccessDenied",
        "errorMessage": "You are not authorized",
        "requestID": "req-1",
        "eventID": "6f3a6a0b-0000-4000-8000-000000000001",
        "readOnly": false,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": "111122223333",
        "eventCategory": "Management"
    });
    assert_eq!(json, expected);

    // Through Parquet and the parser: the record trailsight counts.
    let bytes = parquet(
        &mut frame(&[Row {
            error: Some("AccessDenied"),
            ..Row::default()
        }]),
        None,
    );
    assert!(is_parquet(&bytes));
    let (records, report, damage) = read(&bytes, "x.gz.parquet").unwrap();
    assert!(damage.is_none());
    assert_eq!(report.format, Format::SecurityLakeParquet);
    assert_eq!((report.records_seen, report.records_ok), (1, 1));
    let r = &records[0];
    assert_eq!(r.minute, T_MINUTE);
    assert_eq!(r.account, "111122223333");
    assert_eq!(r.region, "us-east-1");
    assert_eq!(r.event_source, "ec2.amazonaws.com");
    assert_eq!(r.event_name, "RunInstances");
    assert_eq!(r.error_code.as_deref(), Some("AccessDenied"));
    assert_eq!(r.read_only, Some(false));
    assert_eq!(
        r.user_identity_arn.as_deref(),
        Some("arn:aws:sts::111122223333:assumed-role/Deployer/ci")
    );
    assert_eq!(r.user_agent.as_deref(), Some("aws-cli/2.15.0"));
    assert_eq!(
        r.event_id.as_deref(),
        Some("6f3a6a0b-0000-4000-8000-000000000001")
    );
    assert_eq!(r.category, Some(crate::series::EventCategory::Management));
    assert!(r.is_write_call());
}

#[test]
fn account_change_and_authentication_rows_are_read_like_api_activity() {
    let rows = [
        Row {
            class_uid: Some(3001),
            operation: Some("CreateUser"),
            service: Some("iam.amazonaws.com"),
            ..Row::default()
        },
        Row {
            class_uid: Some(3002),
            operation: Some("ConsoleLogin"),
            service: Some("signin.amazonaws.com"),
            ..Row::default()
        },
    ];
    let (records, report, _) = read(&parquet(&mut frame(&rows), None), "f.parquet").unwrap();
    assert_eq!(report.records_ok, 2, "{report:?}");
    assert_eq!(records[0].event_name, "CreateUser");
    assert_eq!(records[1].event_name, "ConsoleLogin");
}

#[test]
fn bad_rows_are_bad_records_with_their_row_index_and_good_rows_around_them_are_kept() {
    let huge: &'static str = Box::leak("s".repeat(300).into_boxed_str());
    let rows = [
        Row::default(),
        Row {
            operation: None,
            ..Row::default()
        },
        // 9999-12-31T23:59:59Z: after tomorrow.
        Row {
            time: Some(253_402_300_799_000),
            ..Row::default()
        },
        Row {
            class_uid: Some(4001),
            ..Row::default()
        },
        Row {
            service: Some(huge),
            ..Row::default()
        },
        // No calendar holds it.
        Row {
            time: Some(i64::MAX),
            ..Row::default()
        },
        Row {
            time: None,
            ..Row::default()
        },
        Row {
            class_uid: None,
            ..Row::default()
        },
        Row {
            unmapped: &[("readOnly", "maybe")],
            ..Row::default()
        },
        Row::default(),
    ];
    // Row groups of three rows: indices are the file's, not the group's or the batch's.
    let bytes = parquet(&mut frame(&rows), Some(3));
    let (records, report, damage) = read(&bytes, "f.parquet").unwrap();
    assert!(damage.is_none());
    assert_eq!(records.len(), 2);
    assert_eq!(report.records_seen, 10);
    assert_eq!(report.records_ok, 2);
    let examples: Vec<(u64, SkipReason)> = report
        .examples
        .iter()
        .map(|e| (e.index, e.reason))
        .collect();
    assert_eq!(
        examples,
        [
            (1, SkipReason::MissingField("eventName")),
            (2, SkipReason::EventTimeOutOfRange),
            (3, SkipReason::WrongType { field: "class_uid" }),
            (4, SkipReason::FieldTooLong("eventSource")),
            (5, SkipReason::BadEventTime),
            (6, SkipReason::MissingField("eventTime")),
            (7, SkipReason::MissingField("class_uid")),
            (8, SkipReason::WrongType { field: "readOnly" }),
        ]
    );
    let text = report.examples[2].to_string();
    assert!(text.contains("record 3") && text.contains("4001"), "{text}");
}

#[test]
fn region_and_account_fall_back_on_the_partition_folders_and_read_only_on_the_activity() {
    let rows = [
        Row {
            region: None,
            account: None,
            unmapped: &[],
            activity_id: Some(2),
            ..Row::default()
        },
        Row {
            region: None,
            account: None,
            unmapped: &[("recipientAccountId", "444455556666")],
            activity_id: Some(3),
            ..Row::default()
        },
        Row {
            unmapped: &[],
            activity_id: Some(99),
            ..Row::default()
        },
    ];
    let display = "lake/aws/CLOUD_TRAIL_MGMT/2.0/region=eu-west-1/accountId=999988887777/\
                   eventDay=20240304/0b7e.gz.parquet";
    let (records, report, _) = read(&parquet(&mut frame(&rows), None), display).unwrap();
    assert_eq!(report.records_ok, 3);
    assert_eq!(records[0].region, "eu-west-1");
    assert_eq!(records[0].account, "999988887777");
    assert_eq!(records[0].read_only, Some(true));
    assert_eq!(records[1].account, "444455556666");
    assert_eq!(records[1].read_only, Some(false));
    assert_eq!(records[2].region, "us-east-1");
    assert_eq!(records[2].read_only, None, "Other: not known to be a write");
}

#[test]
fn data_events_keep_their_category_and_aggregated_events_are_ignored() {
    let mut df = frame(&[
        Row {
            operation: Some("PutObject"),
            service: Some("s3.amazonaws.com"),
            unmapped: &[("readOnly", "false"), ("managementEvent", "false")],
            ..Row::default()
        },
        Row::default(),
    ]);
    // Row 1 is an aggregated summary; row 0 a data event.
    let metadata = structure(
        "metadata",
        &[
            structure(
                "product",
                &[structure(
                    "feature",
                    &[text("name", &[Some("Data"), Some("Data")])],
                )],
            ),
            text(
                "event_code",
                &[Some("AwsApiCall"), Some("AwsAggregatedEvent")],
            ),
        ],
    );
    df.with_column(metadata.into()).unwrap();
    let (records, report, _) = read(&parquet(&mut df, None), "d.parquet").unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].category,
        Some(crate::series::EventCategory::Data)
    );
    assert_eq!(report.ignored.get(&IgnoreReason::AggregatedEvent), Some(&1));
}

#[test]
fn a_file_of_another_schema_is_refused_naming_what_is_wrong() {
    // Not OCSF at all: a table of counts (trailsight's own export, say).
    let mut counts = DataFrame::new_infer_height(vec![
        Series::new("minute".into(), [1i64, 2]).into(),
        Series::new("count".into(), [3i64, 4]).into(),
    ])
    .unwrap();
    let e = read(&parquet(&mut counts, None), "counts.parquet").unwrap_err();
    assert!(matches!(e, OcsfError::Schema(_)), "{e}");
    let message = e.to_string();
    assert!(
        message.contains("class_uid") && message.contains("api") && message.contains("time"),
        "{message}"
    );

    // OCSF-shaped, but `api.operation` is a number.
    let mut df = frame(&[Row::default()]);
    let api = structure(
        "api",
        &[
            Series::new("operation".into(), [7i64]),
            structure("service", &[text("name", &[Some("ec2.amazonaws.com")])]),
        ],
    );
    df.with_column(api.into()).unwrap();
    let e = read(&parquet(&mut df, None), "typed.parquet").unwrap_err();
    assert!(
        matches!(&e, OcsfError::Schema(m) if m.contains("api.operation") && m.contains("not a string")),
        "{e}"
    );

    // `time` as text.
    let mut df = frame(&[Row::default()]);
    df.with_column(text("time", &[Some("2024-03-04T12:34:56Z")]).into())
        .unwrap();
    let e = read(&parquet(&mut df, None), "time.parquet").unwrap_err();
    assert!(
        matches!(&e, OcsfError::Schema(m) if m.contains("time")),
        "{e}"
    );
}

#[test]
fn truncated_or_damaged_files_are_errors_not_panics() {
    let rows: Vec<Row> = (0..200).map(|_| Row::default()).collect();
    let bytes = parquet(&mut frame(&rows), Some(50));
    for cut_at in [4, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        let head = &bytes[..cut_at];
        assert!(is_parquet(head));
        let e = read(head, "cut.parquet").unwrap_err();
        assert!(matches!(e, OcsfError::Parquet(_)), "{cut_at}: {e}");
    }
    // Bytes overwritten anywhere: an error or fewer records, never a panic out of the reader.
    let step = (bytes.len() / 97).max(1);
    for at in (4..bytes.len() - 8).step_by(step) {
        let mut damaged = bytes.clone();
        for b in damaged.iter_mut().skip(at).take(8) {
            *b ^= 0x5a;
        }
        if let Ok((records, report, _)) = read(&damaged, "damaged.parquet") {
            assert!(records.len() as u64 <= report.records_seen);
        }
    }
}

#[test]
fn declared_sizes_over_the_limit_are_refused_before_decoding() {
    let rows: Vec<Row> = (0..100).map(|_| Row::default()).collect();
    let bytes = parquet(&mut frame(&rows), None);
    let e = parse_parquet(&bytes, &ctx("big.parquet"), 1000, &mut |_| {}).unwrap_err();
    assert!(matches!(e, OcsfError::TooLarge { limit: 1000, .. }), "{e}");
}

#[test]
fn partitions_are_read_from_security_lake_paths() {
    let p = Partition::of(
        "s3://bucket/aws/S3_DATA/2.0/region=ap-south-1/accountId=123456789012/eventDay=20240101/a.gz.parquet",
    );
    assert_eq!(p.region.as_deref(), Some("ap-south-1"));
    assert_eq!(p.account.as_deref(), Some("123456789012"));
    assert_eq!(Partition::of("plain/file.parquet"), Partition::default());
}
