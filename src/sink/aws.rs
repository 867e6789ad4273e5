//! Sinks that publish to AWS services: `--to sns:TOPIC_ARN` (one message per record, with
//! message attributes for subscription filter policies) and `--to eventbridge:BUS` (PutEvents,
//! `detail-type: "AWS Insight via CloudTrail"` and the record as `detail`, so rules written for
//! AWS's own Insights match; the source is `trailsight`, as AWS reserves `aws.*`).
//!
//! Credentials, region and endpoint come from the standard AWS chain (`AWS_REGION`,
//! `AWS_PROFILE`, instance roles; `AWS_ENDPOINT_URL` for a local endpoint). The SDK retries
//! throttling and server errors itself (standard mode, 5 attempts); a record still not taken
//! stays in the store's outbox (as for [`super::webhook`]), and the eventIDs taken are kept in
//! the store's folder (`sinks/`) so that none is published twice across restarts.
//!
//! The SDK is asynchronous and a sink is not: each sink owns a small runtime and calls it from a
//! thread of its own, which is safe whether or not the caller runs inside another runtime.

use std::path::{Path, PathBuf};

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

use super::delivered::Delivered;
use super::{InsightSink, SinkError};
use crate::insight::InsightRecord;

/// `detail-type` of the events put on a bus: what AWS's own Insights events carry.
pub const DETAIL_TYPE: &str = "AWS Insight via CloudTrail";
/// `source` of the events put on a bus (AWS reserves `aws.*` for its own).
pub const SOURCE: &str = "trailsight";

/// Where records are published.
#[derive(Debug, Clone)]
enum Target {
    Sns { topic_arn: String },
    EventBridge { bus: String },
}

/// Why an AWS sink could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AwsSinkError {
    /// The argument is missing or malformed.
    #[error("--to {kind}:{arg}: {why}")]
    BadArgument {
        /// The sink kind.
        kind: &'static str,
        /// What was given.
        arg: String,
        /// What is wrong.
        why: &'static str,
    },
    /// No region could be found.
    #[error("--to {kind}: no AWS region: set AWS_REGION (or a region in the AWS profile)")]
    NoRegion {
        /// The sink kind.
        kind: &'static str,
    },
    /// The async runtime could not start.
    #[error("starting the AWS client: {0}")]
    Runtime(std::io::Error),
    /// The file of delivered records could not be opened.
    #[error("{path}: {error}")]
    State {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        error: std::io::Error,
    },
}

enum Client {
    Sns(aws_sdk_sns::Client),
    EventBridge(aws_sdk_eventbridge::Client),
}

/// Publishes each record to SNS or EventBridge.
pub struct AwsSink {
    target: Target,
    client: Client,
    runtime: tokio::runtime::Runtime,
    delivered: Delivered,
}

impl AwsSink {
    /// `--to sns:TOPIC_ARN`.
    pub fn sns(arg: &str, state_dir: Option<&Path>) -> Result<AwsSink, AwsSinkError> {
        if !arg.starts_with("arn:") || !arg.contains(":sns:") {
            return Err(AwsSinkError::BadArgument {
                kind: "sns",
                arg: arg.to_owned(),
                why: "expected a topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)",
            });
        }
        AwsSink::open(
            Target::Sns {
                topic_arn: arg.to_owned(),
            },
            state_dir,
        )
    }

    /// `--to eventbridge:BUS` (a bus name or ARN; `default` for the default bus).
    pub fn eventbridge(arg: &str, state_dir: Option<&Path>) -> Result<AwsSink, AwsSinkError> {
        if arg.is_empty() {
            return Err(AwsSinkError::BadArgument {
                kind: "eventbridge",
                arg: arg.to_owned(),
                why: "expected an event bus name or ARN (`default` for the default bus)",
            });
        }
        AwsSink::open(
            Target::EventBridge {
                bus: arg.to_owned(),
            },
            state_dir,
        )
    }

    fn kind(target: &Target) -> &'static str {
        match target {
            Target::Sns { .. } => "sns",
            Target::EventBridge { .. } => "eventbridge",
        }
    }

    fn open(target: Target, state_dir: Option<&Path>) -> Result<AwsSink, AwsSinkError> {
        let kind = AwsSink::kind(&target);
        let (runtime, shared) = client_config(kind)?;
        let client = match &target {
            Target::Sns { .. } => Client::Sns(aws_sdk_sns::Client::new(&shared)),
            Target::EventBridge { .. } => {
                Client::EventBridge(aws_sdk_eventbridge::Client::new(&shared))
            }
        };
        let delivered = match state_dir {
            Some(dir) => {
                let destination = match &target {
                    Target::Sns { topic_arn } => topic_arn.as_str(),
                    Target::EventBridge { bus } => bus.as_str(),
                };
                Delivered::open(dir, kind, destination)
                    .map_err(|(path, error)| AwsSinkError::State { path, error })?
            }
            None => Delivered::in_memory(),
        };
        Ok(AwsSink {
            target,
            client,
            runtime,
            delivered,
        })
    }

    fn unreachable(&self, why: String) -> SinkError {
        SinkError::Publish {
            sink: match &self.target {
                Target::Sns { topic_arn } => format!("sns {topic_arn}"),
                Target::EventBridge { bus } => format!("eventbridge {bus}"),
            },
            why,
        }
    }

    fn publish(&self, record: &InsightRecord) -> Result<(), SinkError> {
        let body = serde_json::to_string(record).map_err(SinkError::Json)?;
        let d = &record.insight_details;
        match (&self.client, &self.target) {
            (Client::Sns(client), Target::Sns { topic_arn }) => {
                use aws_sdk_sns::types::MessageAttributeValue;
                let attribute = |value: &str| {
                    MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value(value)
                        .build()
                };
                let mut request = client
                    .publish()
                    .topic_arn(topic_arn)
                    .message(body)
                    .subject(subject(record));
                for (name, value) in [
                    ("state", d.state.as_str().to_string()),
                    ("insightType", d.insight_type.as_str().to_string()),
                    ("eventSource", d.event_source.clone()),
                    ("eventName", d.event_name.clone()),
                    ("recipientAccountId", record.recipient_account_id.clone()),
                    ("awsRegion", record.aws_region.clone()),
                ] {
                    let value = attribute(&value).map_err(|e| self.unreachable(e.to_string()))?;
                    request = request.message_attributes(name, value);
                }
                on_own_thread(&self.runtime, request.send())
                    .map(|_| ())
                    .map_err(|e| {
                        self.unreachable(aws_sdk_sns::error::DisplayErrorContext(e).to_string())
                    })
            }
            (Client::EventBridge(client), Target::EventBridge { bus }) => {
                use aws_sdk_eventbridge::types::PutEventsRequestEntry;
                let entry = PutEventsRequestEntry::builder()
                    .event_bus_name(bus)
                    .source(SOURCE)
                    .detail_type(DETAIL_TYPE)
                    .detail(body)
                    .build();
                let out = on_own_thread(&self.runtime, client.put_events().entries(entry).send())
                    .map_err(|e| {
                    self.unreachable(aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string())
                })?;
                if out.failed_entry_count() > 0 {
                    let why = out
                        .entries()
                        .iter()
                        .filter_map(|e| e.error_message())
                        .collect::<Vec<_>>()
                        .join("; ");
                    return Err(self.unreachable(format!("the event was not put: {why}")));
                }
                Ok(())
            }
            _ => Err(self.unreachable("client and target disagree (a bug)".into())),
        }
    }
}

/// A sink's own runtime and the standard chain's client settings (credentials, region,
/// `AWS_ENDPOINT_URL`), with rustls over ring and the SDK's standard retries (5 attempts).
pub(crate) fn client_config(
    kind: &'static str,
) -> Result<(tokio::runtime::Runtime, aws_config::SdkConfig), AwsSinkError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AwsSinkError::Runtime)?;
    let shared = on_own_thread(&runtime, async {
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client)
            .retry_config(RetryConfig::standard().with_max_attempts(5))
            .load()
            .await
    });
    if shared.region().is_none() {
        return Err(AwsSinkError::NoRegion { kind });
    }
    Ok((runtime, shared))
}

/// Runs `future` to its end on `runtime`, from a thread of its own (a runtime cannot be
/// blocked on from inside another one, and the caller may be).
pub(crate) fn on_own_thread<F>(runtime: &tokio::runtime::Runtime, future: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| runtime.block_on(future))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// An SNS subject (at most 100 characters): what, where.
fn subject(record: &InsightRecord) -> String {
    let d = &record.insight_details;
    let mut text = format!(
        "trailsight Insight {}: {}:{} in {}",
        d.state.as_str(),
        d.event_source,
        d.event_name,
        record.aws_region
    );
    if text.chars().count() > 100 {
        text = text.chars().take(97).collect::<String>() + "...";
    }
    // SNS subjects are ASCII text without line breaks.
    text.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

impl InsightSink for AwsSink {
    fn write(&mut self, record: &InsightRecord) -> Result<(), SinkError> {
        if self.delivered.contains(&record.event_id) {
            return Ok(());
        }
        self.publish(record)?;
        self.delivered.record(&record.event_id)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_short_ascii_lines() {
        let mut record = crate::sink::fixtures::record();
        assert_eq!(
            subject(&record),
            "trailsight Insight Start: autoscaling.amazonaws.com:CompleteLifecycleAction in us-east-1"
        );
        record.insight_details.event_name = "É\n".repeat(80);
        let s = subject(&record);
        assert!(
            s.chars().count() <= 100 && s.is_ascii() && !s.contains('\n'),
            "{s}"
        );
    }

    #[test]
    fn arguments_are_checked_before_any_request() {
        let e = AwsSink::sns("my-topic", None).err().unwrap().to_string();
        assert!(e.contains("topic ARN"), "{e}");
        let e = AwsSink::eventbridge("", None).err().unwrap().to_string();
        assert!(e.contains("event bus"), "{e}");
    }
}
