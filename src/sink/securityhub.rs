//! `--to securityhub:[ACCOUNT]`: each episode one AWS Security Hub finding (ASFF, imported with
//! `BatchImportFindings`). The Start creates it (`RecordState: ACTIVE`, workflow `NEW`); the End
//! updates the same finding (same `Id`, later `UpdatedAt`, `LastObservedAt` at the end of the
//! activity) and archives its record (`RecordState: ARCHIVED`: the activity is over; the
//! analyst's workflow status is left as it is).
//!
//! Findings are imported under the account's default product
//! (`arn:aws:securityhub:REGION:ACCOUNT:product/ACCOUNT/default`), where `ACCOUNT` is the
//! argument when given (the account trailsight runs in, e.g. a delegated administrator) and the
//! Insight's account otherwise; `REGION` is the client's (the standard chain). Credentials and
//! region come from the standard AWS chain (`AWS_ENDPOINT_URL` for a local endpoint).
//!
//! Delivery: an import is idempotent (the finding's `Id` is the episode's `sharedEventID`), and
//! the eventIDs imported are kept in the store's folder (`sinks/`), so a restart imports nothing
//! twice; a record Security Hub refuses stays in the outbox and the run reports why.

use std::path::Path;

use aws_sdk_securityhub::types::{
    AwsSecurityFinding, RecordState, Resource, Severity, SeverityLabel, Workflow, WorkflowStatus,
};

use super::aws::{client_config, on_own_thread, AwsSinkError};
use super::delivered::Delivered;
use super::finding::{iso, Finding, Level};
use super::{InsightSink, SinkError};
use crate::insight::InsightRecord;

/// The ASFF schema version Security Hub accepts.
pub const SCHEMA_VERSION: &str = "2018-10-08";
/// The finding type (ASFF's namespace/category/classifier taxonomy).
pub const FINDING_TYPE: &str = "Unusual Behaviors/Application/CloudTrail Insights";

/// Imports each episode as a Security Hub finding.
pub struct SecurityHubSink {
    client: aws_sdk_securityhub::Client,
    runtime: tokio::runtime::Runtime,
    /// The client's region (the product ARN's).
    region: String,
    /// The account whose default product imports (None: each Insight's own account).
    product_account: Option<String>,
    delivered: Delivered,
}

impl SecurityHubSink {
    /// `--to securityhub:` or `--to securityhub:ACCOUNT_ID`.
    pub fn open(arg: &str, state_dir: Option<&Path>) -> Result<SecurityHubSink, AwsSinkError> {
        let product_account = match arg {
            "" => None,
            a if a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()) => Some(a.to_owned()),
            _ => {
                return Err(AwsSinkError::BadArgument {
                    kind: "securityhub",
                    arg: arg.to_owned(),
                    why: "expected nothing or the 12-digit account that imports the findings",
                })
            }
        };
        let (runtime, shared) = client_config("securityhub")?;
        let Some(region) = shared.region().map(|r| r.to_string()) else {
            return Err(AwsSinkError::NoRegion {
                kind: "securityhub",
            });
        };
        let delivered = match state_dir {
            Some(dir) => Delivered::open(dir, "securityhub", &format!("{region}/{arg}"))
                .map_err(|(path, error)| AwsSinkError::State { path, error })?,
            None => Delivered::in_memory(),
        };
        Ok(SecurityHubSink {
            client: aws_sdk_securityhub::Client::new(&shared),
            runtime,
            region,
            product_account,
            delivered,
        })
    }

    fn failed(&self, why: String) -> SinkError {
        SinkError::Publish {
            sink: format!("securityhub {}", self.region),
            why,
        }
    }
}

/// The ASFF finding of a record, imported under `product_account`'s default product in `region`.
pub fn asff(
    record: &InsightRecord,
    region: &str,
    product_account: Option<&str>,
) -> Result<AwsSecurityFinding, SinkError> {
    let f = Finding::of(record).map_err(|e| SinkError::Publish {
        sink: "securityhub".into(),
        why: e.to_string(),
    })?;
    let partition = if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    };
    let product = product_account.unwrap_or(&f.account);
    let d = &record.insight_details;
    let stats = &d.insight_context.statistics;
    let mut fields = vec![
        ("trailsight/eventID", record.event_id.clone()),
        ("trailsight/sharedEventID", record.shared_event_id.clone()),
        ("trailsight/state", d.state.as_str().to_owned()),
        (
            "aws/cloudtrail/insightType",
            d.insight_type.as_str().to_owned(),
        ),
        ("aws/cloudtrail/eventSource", d.event_source.clone()),
        ("aws/cloudtrail/eventName", d.event_name.clone()),
        (
            "trailsight/insightAverage",
            format!("{}", stats.insight.average),
        ),
        (
            "trailsight/baselineAverage",
            format!("{}", stats.baseline.average),
        ),
    ];
    if let Some(code) = &d.error_code {
        fields.push(("aws/cloudtrail/errorCode", code.clone()));
    }
    if let Some(category) = &d.source_event_category {
        fields.push(("aws/cloudtrail/sourceEventCategory", category.clone()));
    }
    let mut finding = AwsSecurityFinding::builder()
        .schema_version(SCHEMA_VERSION)
        .id(&f.id)
        .product_arn(format!(
            "arn:{partition}:securityhub:{region}:{product}:product/{product}/default"
        ))
        .product_name("trailsight")
        .company_name("trailsight")
        .generator_id(&f.generator)
        .aws_account_id(&f.account)
        .region(&f.region)
        .types(FINDING_TYPE)
        .first_observed_at(iso(f.first_observed))
        .last_observed_at(iso(f.last_observed))
        .created_at(iso(f.first_observed))
        .updated_at(iso(f.updated))
        .severity(
            Severity::builder()
                .label(match f.level {
                    Level::Low => SeverityLabel::Low,
                    Level::Medium => SeverityLabel::Medium,
                    Level::High => SeverityLabel::High,
                })
                .original(if f.ratio.is_finite() {
                    format!("{:.1}x baseline", f.ratio)
                } else {
                    "no baseline".to_owned()
                })
                .build(),
        )
        .title(&f.title)
        .description(&f.description)
        .resources(
            Resource::builder()
                .r#type("AwsAccount")
                .id(format!("AWS::::Account:{}", f.account))
                .partition(partition.into())
                .region(&f.region)
                .build(),
        )
        .record_state(if f.ended {
            RecordState::Archived
        } else {
            RecordState::Active
        });
    if !f.ended {
        finding = finding.workflow(Workflow::builder().status(WorkflowStatus::New).build());
    }
    for (name, value) in fields {
        // ASFF: at most 2,048 characters a value.
        finding = finding.product_fields(name, value.chars().take(2048).collect::<String>());
    }
    Ok(finding.build())
}

impl InsightSink for SecurityHubSink {
    fn write(&mut self, record: &InsightRecord) -> Result<(), SinkError> {
        if self.delivered.contains(&record.event_id) {
            return Ok(());
        }
        let finding = asff(record, &self.region, self.product_account.as_deref())?;
        let out = on_own_thread(
            &self.runtime,
            self.client.batch_import_findings().findings(finding).send(),
        )
        .map_err(|e| self.failed(aws_sdk_securityhub::error::DisplayErrorContext(e).to_string()))?;
        if out.failed_count().unwrap_or(0) > 0 {
            let why = out
                .failed_findings()
                .iter()
                .map(|f| {
                    format!(
                        "{}: {}",
                        f.error_code().unwrap_or("?"),
                        f.error_message().unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(self.failed(format!("the finding was not imported: {why}")));
        }
        self.delivered.record(&record.event_id)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::fixtures::{end_record, record};

    #[test]
    fn a_start_creates_an_active_finding_and_its_end_archives_it() {
        let start = asff(&record(), "eu-west-1", None).unwrap();
        let end = asff(&end_record(), "eu-west-1", Some("111122223333")).unwrap();
        assert_eq!(start.id(), end.id());
        assert_eq!(start.schema_version(), Some(SCHEMA_VERSION));
        assert_eq!(
            start.product_arn(),
            Some("arn:aws:securityhub:eu-west-1:838185438692:product/838185438692/default")
        );
        assert_eq!(
            end.product_arn(),
            Some("arn:aws:securityhub:eu-west-1:111122223333:product/111122223333/default")
        );
        assert_eq!(start.aws_account_id(), Some("838185438692"));
        assert_eq!(start.record_state(), Some(&RecordState::Active));
        assert_eq!(end.record_state(), Some(&RecordState::Archived));
        assert_eq!(
            start.workflow().and_then(|w| w.status()),
            Some(&WorkflowStatus::New)
        );
        assert!(
            end.workflow().is_none(),
            "the analyst's workflow is left alone"
        );
        assert_eq!(start.created_at(), Some("2020-07-21T20:56:00.000Z"));
        // The End's first minute: its eventTime less the episode's 5 minutes.
        assert_eq!(end.created_at(), Some("2020-07-21T20:54:00.000Z"));
        assert_eq!(start.updated_at(), Some("2020-07-21T20:56:00.000Z"));
        assert_eq!(end.updated_at(), Some("2020-07-21T20:59:00.000Z"));
        assert_eq!(end.last_observed_at(), Some("2020-07-21T20:59:00.000Z"));
        // 0.6 per minute against 0.0000882: far over 10 times.
        assert_eq!(
            start.severity().and_then(|s| s.label()),
            Some(&SeverityLabel::High)
        );
        assert_eq!(
            start.resources()[0].id(),
            Some("AWS::::Account:838185438692")
        );
        assert_eq!(start.types(), [FINDING_TYPE]);
        let fields = start.product_fields().unwrap();
        assert_eq!(fields["trailsight/eventID"], record().event_id);
        assert_eq!(
            fields["aws/cloudtrail/eventName"],
            "CompleteLifecycleAction"
        );
        let china = asff(&record(), "cn-north-1", None).unwrap();
        assert!(china.product_arn().unwrap().starts_with("arn:aws-cn:"));
    }

    #[test]
    fn the_argument_is_checked_before_any_request() {
        let e = SecurityHubSink::open("not-an-account", None).err().unwrap();
        assert!(e.to_string().contains("12-digit"), "{e}");
    }
}
