//! Webhooks: each Insights record POSTed to a URL as it is committed. `--to webhook:URL` sends
//! the record itself (AWS's JSON); `--to slack:URL` and `--to teams:URL` send a message people
//! read (what, where, how unusual, who, and a link to the report when `TRAILSIGHT_REPORT_URL` is
//! set), in the shape Slack's and Teams' incoming webhooks take.
//!
//! The URL is a secret (a Slack webhook URL is its own credential): give it as `env:VARIABLE` or
//! `file:PATH` rather than on the command line, and it is never logged (errors name its host
//! only). `TRAILSIGHT_WEBHOOK_HEADER="Name: value"` adds a header (a token).
//!
//! Delivery: at least once, with every request carrying `Idempotency-Key: <eventID>`. A
//! connection failure, a timeout (`TRAILSIGHT_WEBHOOK_TIMEOUT_SECS`, default 10), a 408, 429 or
//! 5xx is retried with exponential backoff (0.5 s doubling, `Retry-After` honoured up to 30 s,
//! `TRAILSIGHT_WEBHOOK_ATTEMPTS` attempts, default 5); after the last attempt the record stays in
//! the store's outbox and `watch` tries again at its next checkpoint (`score` stops, and its next
//! run delivers it first). Any other 4xx is the endpoint refusing the record: reported, not
//! retried. Records delivered are remembered by eventID (in the store folder, `sinks/`, synced
//! after each one), so a restart or another sink's failure never sends one twice; only a crash
//! between the endpoint's answer and that note can, and the key lets the receiver tell.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::delivered::Delivered;
use super::{InsightSink, SinkError};
use crate::insight::{InsightRecord, InsightState};

/// What a request's body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Insights record, as AWS writes it.
    Json,
    /// A Slack message (`{"text": ...}`, mrkdwn).
    Slack,
    /// A Microsoft Teams message (an Adaptive Card attachment).
    Teams,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Json => "webhook",
            Format::Slack => "slack",
            Format::Teams => "teams",
        }
    }
}

/// Why a webhook sink could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// `env:VARIABLE` names an unset variable.
    #[error("--to {kind}:env:{variable}: the environment variable is not set")]
    MissingVariable {
        /// The sink kind.
        kind: &'static str,
        /// The variable.
        variable: String,
    },
    /// `file:PATH` could not be read.
    #[error("--to {kind}:file:{path}: {error}")]
    UnreadableFile {
        /// The sink kind.
        kind: &'static str,
        /// The file.
        path: PathBuf,
        /// What the file system said.
        error: std::io::Error,
    },
    /// The URL is not an http(s) URL.
    #[error("--to {kind}: the URL must start with https:// or http:// (given: {shown})")]
    BadUrl {
        /// The sink kind.
        kind: &'static str,
        /// The URL's scheme and host only.
        shown: String,
    },
    /// `TRAILSIGHT_WEBHOOK_HEADER` is not `Name: value`.
    #[error("TRAILSIGHT_WEBHOOK_HEADER must be \"Name: value\"")]
    BadHeader,
    /// A tuning variable is not a number.
    #[error("{variable} must be a positive number")]
    BadSetting {
        /// The variable.
        variable: &'static str,
    },
    /// The file of delivered records could not be opened.
    #[error("{path}: {error}")]
    State {
        /// The file.
        path: PathBuf,
        /// What the file system said.
        error: std::io::Error,
    },
}

/// POSTs each record to one URL.
pub struct WebhookSink {
    format: Format,
    url: String,
    header: Option<(String, String)>,
    agent: ureq::Agent,
    attempts: u32,
    first_wait: Duration,
    report_url: Option<String>,
    /// eventIDs delivered (from earlier runs too, when the store's folder is given).
    delivered: Delivered,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink")
            .field("format", &self.format)
            .field("host", &host_of(&self.url))
            .finish_non_exhaustive()
    }
}

/// The URL's scheme and host, which may be shown (the path and query may hold a secret).
fn host_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or(host);
    format!("{scheme}://{host}")
}

fn setting(variable: &'static str) -> Result<Option<f64>, WebhookError> {
    match std::env::var(variable) {
        Err(_) => Ok(None),
        Ok(text) => match text.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 => Ok(Some(v)),
            _ => Err(WebhookError::BadSetting { variable }),
        },
    }
}

impl WebhookSink {
    /// The sink `--to KIND:ARG` asks for: ARG is the URL, `env:VARIABLE` or `file:PATH`.
    /// `state_dir` keeps the eventIDs delivered across runs (the store's folder).
    pub fn open(
        format: Format,
        arg: &str,
        state_dir: Option<&Path>,
    ) -> Result<WebhookSink, WebhookError> {
        let kind = format.name();
        let url = if let Some(variable) = arg.strip_prefix("env:") {
            std::env::var(variable).map_err(|_| WebhookError::MissingVariable {
                kind,
                variable: variable.to_owned(),
            })?
        } else if let Some(path) = arg.strip_prefix("file:") {
            std::fs::read_to_string(path).map_err(|error| WebhookError::UnreadableFile {
                kind,
                path: PathBuf::from(path),
                error,
            })?
        } else {
            arg.to_owned()
        };
        let url = url.trim().to_owned();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(WebhookError::BadUrl {
                kind,
                shown: host_of(&url),
            });
        }
        let header = match std::env::var("TRAILSIGHT_WEBHOOK_HEADER") {
            Err(_) => None,
            Ok(text) => {
                let (name, value) = text.split_once(':').ok_or(WebhookError::BadHeader)?;
                let name = name.trim();
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(WebhookError::BadHeader);
                }
                Some((name.to_owned(), value.trim().to_owned()))
            }
        };
        let timeout = setting("TRAILSIGHT_WEBHOOK_TIMEOUT_SECS")?.unwrap_or(10.0);
        let attempts = setting("TRAILSIGHT_WEBHOOK_ATTEMPTS")?.map_or(5, |n| n.max(1.0) as u32);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs_f64(timeout)))
            .http_status_as_error(false)
            .user_agent(concat!("trailsight/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let mut sink = WebhookSink {
            format,
            url,
            header,
            agent,
            attempts,
            first_wait: Duration::from_millis(500),
            report_url: std::env::var("TRAILSIGHT_REPORT_URL").ok(),
            delivered: Delivered::in_memory(),
        };
        if let Some(dir) = state_dir {
            sink.delivered = Delivered::open(dir, format.name(), &sink.url)
                .map_err(|(path, error)| WebhookError::State { path, error })?;
        }
        Ok(sink)
    }

    fn body(&self, record: &InsightRecord) -> Result<Vec<u8>, SinkError> {
        let value = match self.format {
            Format::Json => return serde_json::to_vec(record).map_err(SinkError::Json),
            Format::Slack => {
                serde_json::json!({ "text": message(record, self.report_url.as_deref(), true) })
            }
            Format::Teams => serde_json::json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "content": {
                        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                        "type": "AdaptiveCard",
                        "version": "1.4",
                        "body": [{
                            "type": "TextBlock",
                            "wrap": true,
                            "text": message(record, self.report_url.as_deref(), false),
                        }],
                    },
                }],
            }),
        };
        serde_json::to_vec(&value).map_err(SinkError::Json)
    }

    /// One POST; `Ok(None)` delivered, `Ok(Some(wait))` worth retrying after at least `wait`.
    fn post(&self, body: &[u8], event_id: &str) -> Result<Option<Duration>, SinkError> {
        let mut request = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", event_id);
        if let Some((name, value)) = &self.header {
            request = request.header(name, value);
        }
        match request.send(body) {
            Ok(response) => {
                let status = response.status().as_u16();
                match status {
                    200..=299 => Ok(None),
                    408 | 429 | 500..=599 => Ok(Some(
                        response
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .map_or(Duration::ZERO, |s| Duration::from_secs(s.min(30))),
                    )),
                    _ => Err(SinkError::Rejected {
                        sink: format!("{} {}", self.format.name(), host_of(&self.url)),
                        status,
                        event_id: event_id.to_owned(),
                    }),
                }
            }
            // Connection refused or reset, a timeout, DNS: worth another attempt.
            Err(_) => Ok(Some(Duration::ZERO)),
        }
    }
}

impl InsightSink for WebhookSink {
    fn write(&mut self, record: &InsightRecord) -> Result<(), SinkError> {
        if self.delivered.contains(&record.event_id) {
            return Ok(());
        }
        let body = self.body(record)?;
        let mut wait = self.first_wait;
        for attempt in 1..=self.attempts {
            match self.post(&body, &record.event_id)? {
                None => return self.delivered.record(&record.event_id),
                Some(asked) if attempt < self.attempts => {
                    std::thread::sleep(wait.max(asked));
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
                Some(_) => {}
            }
        }
        Err(SinkError::Unreachable {
            sink: format!("{} {}", self.format.name(), host_of(&self.url)),
            attempts: self.attempts,
        })
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// What people read: the Insight in one or two lines.
fn message(record: &InsightRecord, report_url: Option<&str>, mrkdwn: bool) -> String {
    let d = &record.insight_details;
    let code = |s: &str| {
        if mrkdwn {
            format!("`{s}`")
        } else {
            s.to_owned()
        }
    };
    let stats = &d.insight_context.statistics;
    let what = match &d.error_code {
        Some(code_) => format!("{} errors of", code(code_)),
        None => "calls of".to_owned(),
    };
    let state = match d.state {
        InsightState::Start => "started",
        InsightState::End => "ended",
    };
    let mut text = format!(
        "trailsight Insight {state}: {what} {} in {} / {}, {:.3}/min against a baseline of {:.3}/min ({})",
        code(&format!("{}:{}", d.event_source, d.event_name)),
        record.recipient_account_id,
        record.aws_region,
        stats.insight.average,
        stats.baseline.average,
        record.event_time,
    );
    if let Some(who) = d
        .insight_context
        .attributions
        .iter()
        .find(|a| a.attribute == "userIdentityArn")
        .and_then(|a| a.insight.first())
    {
        text.push_str(&format!(", mostly {}", code(&who.value)));
    }
    if d.state == InsightState::Start {
        if let Some(why) = crate::view::explain::sentence(record) {
            text.push_str(". ");
            text.push_str(&why);
        }
    }
    if let Some(url) = report_url {
        text.push_str(&format!(" Report: {url}"));
    }
    text.push_str(&format!(" (sharedEventID {})", record.shared_event_id));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_scheme_and_host_of_a_url_are_ever_shown() {
        assert_eq!(
            host_of("https://hooks.slack.com/services/T000/B000/XXXXSECRET"),
            "https://hooks.slack.com"
        );
        assert_eq!(
            host_of("https://user:pw@example.com:8443/a?token=x"),
            "https://example.com:8443"
        );
        let e = WebhookSink::open(Format::Slack, "hooks.slack.com/services/SECRET", None)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("SECRET"), "{e}");
        let e = WebhookSink::open(Format::Json, "env:TRAILSIGHT_TEST_UNSET_VARIABLE", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("TRAILSIGHT_TEST_UNSET_VARIABLE"), "{e}");
    }

    #[test]
    fn slack_and_teams_messages_say_what_where_and_who() {
        let record = crate::sink::fixtures::record();
        let text = message(&record, Some("https://reports.example/x.html"), true);
        assert!(
            text.contains("`autoscaling.amazonaws.com:CompleteLifecycleAction`"),
            "{text}"
        );
        assert!(text.contains("838185438692 / us-east-1"), "{text}");
        assert!(
            text.contains("0.600/min against a baseline of 0.000/min"),
            "{text}"
        );
        assert!(
            text.contains("Report: https://reports.example/x.html"),
            "{text}"
        );
        assert!(text.contains(&record.shared_event_id), "{text}");
        let plain = message(&record, None, false);
        assert!(
            !plain.contains('`') && !plain.contains("Report:"),
            "{plain}"
        );
    }
}
