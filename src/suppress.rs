//! Suppression: what an analyst says is known and normal. A rules file (TOML, one `[[rule]]`
//! each) names what an Insight must match to be suppressed: its kind, API, principal, account,
//! region, error code or event category, each optional (`*` matches any run of characters), with
//! a reason and an optional expiry. A suppressed Insight is still found, stored and shown in the
//! report as suppressed, but never handed to the sinks; its End follows its Start. A rule also
//! re-baselines the series by default (`rebaseline = true`): the suppressed episode's minutes
//! enter the baseline with their real counts, as normal activity does, instead of being clipped
//! as an incident's are.
//!
//! `trailsight suppress` writes a rule from an Insight in the store (see [`Rule::for_record`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::insight::InsightRecord;
use crate::series::{
    EventCategory, InsightType, Minute, MINUTES_PER_DAY, PRINCIPAL_READS, PRINCIPAL_WRITES,
};

/// Errors reading or writing a rules file.
#[derive(Debug, thiserror::Error)]
pub enum SuppressError {
    /// The file could not be read or written.
    #[error("suppression rules {path}: {error}")]
    Io {
        /// The rules file.
        path: PathBuf,
        /// What the file system said.
        error: std::io::Error,
    },
    /// The TOML is malformed or has an unknown or mistyped key.
    #[error("suppression rules {path}: {message}")]
    Parse {
        /// The rules file.
        path: PathBuf,
        /// What the TOML parser said.
        message: String,
    },
    /// A rule is not usable.
    #[error("suppression rules {path}, rule {index}: {reason}")]
    Invalid {
        /// The rules file.
        path: PathBuf,
        /// 1-based position of the rule in the file.
        index: usize,
        /// Why it is refused.
        reason: String,
    },
}

/// One rule: every field given must match (an absent field matches anything).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Why this is normal (shown in the report; required).
    pub reason: String,
    /// `ApiCallRateInsight` or `ApiErrorRateInsight`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insight_type: Option<InsightType>,
    /// The series kind: `api` (an API's series, as AWS's), `principalWriteRate` or
    /// `principalReadRate` (a principal's, `insightDetails.seriesKind`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `eventSource:eventName`, e.g. `ec2.amazonaws.com:CreateTags` (`*` allowed on either side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// The principal of a principal's series (`insightDetails.principalArn`), else the one
    /// that made most of the Insight's calls (its first `userIdentityArn` attribution), e.g.
    /// `arn:aws:sts::123456789012:assumed-role/terraform/*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// `recipientAccountId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `awsRegion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The error-rate series' `errorCode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// `management` or `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<EventCategory>,
    /// `YYYY-MM-DD` (UTC): the rule applies to Insights whose eventTime is before this day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Whether the suppressed episodes' minutes enter the baseline as normal activity.
    #[serde(default = "yes")]
    pub rebaseline: bool,
}

fn yes() -> bool {
    true
}

/// What the store keeps of a suppressed episode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppressed {
    /// The matching rule's reason.
    pub reason: String,
}

impl crate::store::record::StateRecord for Suppressed {
    const KIND: &'static str = "suppressed episode";
    const VERSION: u16 = 1;
}

/// The rules file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    rule: Vec<Rule>,
}

/// The rules in force.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    rules: Vec<Rule>,
    /// The first minute each rule no longer applies at (`None`: never expires).
    expires: Vec<Option<Minute>>,
}

impl Rules {
    /// Reads a rules file; a missing file is an error (a typo must not silently suppress
    /// nothing).
    pub fn load(path: &Path) -> Result<Rules, SuppressError> {
        let text = std::fs::read_to_string(path).map_err(|error| SuppressError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        Rules::parse(&text, path)
    }

    /// Parses a rules file's text (`path` is for messages).
    pub fn parse(text: &str, path: &Path) -> Result<Rules, SuppressError> {
        let file: File = toml::from_str(text).map_err(|e| SuppressError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        let mut expires = Vec::with_capacity(file.rule.len());
        for (i, rule) in file.rule.iter().enumerate() {
            let invalid = |reason: String| SuppressError::Invalid {
                path: path.to_path_buf(),
                index: i + 1,
                reason,
            };
            rule.check().map_err(invalid)?;
            expires.push(rule.expiry_minute().map_err(invalid)?);
        }
        Ok(Rules {
            rules: file.rule,
            expires,
        })
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether there is no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule that matches `record` and has not expired at its eventTime.
    pub fn find(&self, record: &InsightRecord) -> Option<&Rule> {
        let minute = crate::ingest::parse_event_time(&record.event_time)?;
        self.rules
            .iter()
            .zip(&self.expires)
            .find(|(rule, expires)| expires.is_none_or(|e| minute < e) && rule.matches(record))
            .map(|(rule, _)| rule)
    }
}

impl Rule {
    /// A rule matching the series of `record` (its kind, API, account, region, error code and
    /// event category) and, when `with_principal`, the principal that made most of its calls.
    pub fn for_record(record: &InsightRecord, reason: &str, with_principal: bool) -> Rule {
        let d = &record.insight_details;
        Rule {
            reason: reason.to_owned(),
            insight_type: Some(d.insight_type),
            kind: d.series_kind.clone(),
            api: Some(format!(
                "{}:{}",
                escape(&d.event_source),
                escape(&d.event_name)
            )),
            principal: if with_principal || d.principal_arn.is_some() {
                top_principal(record).map(escape)
            } else {
                None
            },
            account: Some(escape(&record.recipient_account_id)),
            region: Some(escape(&record.aws_region)),
            error_code: d.error_code.as_deref().map(escape),
            category: Some(category_of(record)),
            expires: None,
            rebaseline: true,
        }
    }

    /// The rule as a `[[rule]]` table to append to a rules file.
    pub fn to_toml(&self) -> Result<String, String> {
        #[derive(Serialize)]
        struct One<'a> {
            rule: [&'a Rule; 1],
        }
        let text = toml::to_string(&One { rule: [self] }).map_err(|e| e.to_string())?;
        let mut out = String::new();
        let _ = writeln!(out);
        out.push_str(&text);
        Ok(out)
    }

    /// Whether the rule may be used: a reason, at least one field to match, patterns that are
    /// not empty.
    fn check(&self) -> Result<(), String> {
        if self.reason.trim().is_empty() {
            return Err("`reason` must say why this is normal".into());
        }
        let patterns = [
            ("api", &self.api),
            ("principal", &self.principal),
            ("account", &self.account),
            ("region", &self.region),
            ("error_code", &self.error_code),
        ];
        if let Some((name, _)) = patterns
            .iter()
            .find(|(_, p)| p.as_deref().is_some_and(|p| p.trim().is_empty()))
        {
            return Err(format!(
                "`{name}` is empty (leave it out to match anything)"
            ));
        }
        if let Some(api) = &self.api {
            if !api.contains(':') {
                return Err(format!(
                    "`api` {api:?} is not eventSource:eventName (e.g. \"ec2.amazonaws.com:CreateTags\")"
                ));
            }
        }
        if let Some(kind) = &self.kind {
            if ![API_KIND, PRINCIPAL_WRITES, PRINCIPAL_READS].contains(&kind.as_str()) {
                return Err(format!(
                    "`kind` {kind:?} is not one of \"{API_KIND}\", \"{PRINCIPAL_WRITES}\", \"{PRINCIPAL_READS}\""
                ));
            }
        }
        let names_something = patterns.iter().any(|(_, p)| p.is_some())
            || self.insight_type.is_some()
            || self.kind.is_some()
            || self.category.is_some();
        if !names_something {
            return Err(
                "names nothing to match: it would suppress every Insight (give api, principal, account, region, error_code, insight_type or category)"
                    .into(),
            );
        }
        Ok(())
    }

    fn expiry_minute(&self) -> Result<Option<Minute>, String> {
        let Some(text) = &self.expires else {
            return Ok(None);
        };
        let day = NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|e| format!("`expires` {text:?} is not a date YYYY-MM-DD: {e}"))?;
        let days = day.signed_duration_since(NaiveDate::default()).num_days();
        Ok(Some(days * MINUTES_PER_DAY))
    }

    fn matches(&self, record: &InsightRecord) -> bool {
        let d = &record.insight_details;
        let field = |pattern: &Option<String>, value: Option<&str>| match pattern {
            None => true,
            Some(p) => value.is_some_and(|v| glob(p, v)),
        };
        self.insight_type.is_none_or(|t| t == d.insight_type)
            && self.kind.as_deref().is_none_or(|k| k == kind_of(record))
            && self.category.is_none_or(|c| c == category_of(record))
            && field(&self.account, Some(&record.recipient_account_id))
            && field(&self.region, Some(&record.aws_region))
            && field(&self.error_code, d.error_code.as_deref())
            && self.api.as_deref().is_none_or(|api| {
                let (source, name) = api.split_once(':').unwrap_or((api, "*"));
                glob(source, &d.event_source) && glob(name, &d.event_name)
            })
            && field(&self.principal, top_principal(record))
    }
}

/// The name rules give an API's series (whose records have no `insightDetails.seriesKind`).
const API_KIND: &str = "api";

/// A record's series kind, as rules name it.
fn kind_of(record: &InsightRecord) -> &str {
    record
        .insight_details
        .series_kind
        .as_deref()
        .unwrap_or(API_KIND)
}

/// The event category a record's `sourceEventCategory` says (management when absent).
fn category_of(record: &InsightRecord) -> EventCategory {
    match record.insight_details.source_event_category.as_deref() {
        Some("Data") => EventCategory::Data,
        _ => EventCategory::Management,
    }
}

/// The principal of a principal's series, else the one that made most of the Insight's calls:
/// its first `userIdentityArn` value.
fn top_principal(record: &InsightRecord) -> Option<&str> {
    if let Some(principal) = &record.insight_details.principal_arn {
        return Some(principal);
    }
    record
        .insight_details
        .insight_context
        .attributions
        .iter()
        .find(|a| a.attribute == "userIdentityArn")
        .and_then(|a| a.insight.first())
        .map(|v| v.value.as_str())
}

/// `*` written `\*` and `\` written `\\`, so that a value read from the logs matches itself
/// only.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c == '*' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Whether `value` matches `pattern`, where `*` is any run of characters and `\` takes the next
/// character literally. Linear in practice (no backtracking beyond the last `*`).
fn glob(pattern: &str, value: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Token {
        Any,
        Char(char),
    }
    let mut tokens = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '*' => Token::Any,
            '\\' => Token::Char(chars.next().unwrap_or('\\')),
            c => Token::Char(c),
        });
    }
    let value: Vec<char> = value.chars().collect();
    let (mut t, mut v) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while v < value.len() {
        match tokens.get(t) {
            Some(Token::Char(c)) if *c == value[v] => {
                t += 1;
                v += 1;
            }
            Some(Token::Any) => {
                star = Some((t, v));
                t += 1;
            }
            _ => match star {
                Some((st, sv)) => {
                    t = st + 1;
                    v = sv + 1;
                    star = Some((st, sv + 1));
                }
                None => return false,
            },
        }
    }
    tokens[t..].iter().all(|&tok| tok == Token::Any)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> InsightRecord {
        // A Start of CreateTags by a Terraform role, on 2024-03-12.
        serde_json::from_str(r#"{"eventVersion":"1.09","eventTime":"2024-03-12T13:20:00Z","awsRegion":"us-east-1","eventID":"63a0c41d-6ede-54ed-a5f0-d440b24eb0ea","eventType":"AwsCloudTrailInsight","recipientAccountId":"418295730164","sharedEventID":"5c943057-24f6-58a7-85a8-cd77f27702a9","insightDetails":{"state":"Start","eventSource":"ec2.amazonaws.com","eventName":"CreateTags","insightType":"ApiCallRateInsight","sourceEventCategory":"Management","insightContext":{"statistics":{"baseline":{"average":2.1},"insight":{"average":5},"insightDuration":73,"baselineDuration":10080},"attributions":[{"attribute":"userIdentityArn","insight":[{"value":"arn:aws:sts::418295730164:assumed-role/terraform/ci-1234","average":4},{"value":"arn:aws:iam::418295730164:user/alice","average":1}],"baseline":[]}]}},"eventCategory":"Insight"}"#).unwrap()
    }

    fn rules(text: &str) -> Result<Rules, SuppressError> {
        Rules::parse(text, Path::new("rules.toml"))
    }

    #[test]
    fn globs_match_runs_of_characters_and_escapes_match_themselves() {
        assert!(glob(
            "arn:aws:sts::1:assumed-role/terraform/*",
            "arn:aws:sts::1:assumed-role/terraform/ci-1"
        ));
        assert!(!glob(
            "arn:aws:sts::1:assumed-role/terraform/*",
            "arn:aws:sts::1:assumed-role/terraform2/x"
        ));
        assert!(glob("*Tags", "CreateTags") && glob("Create*", "CreateTags") && glob("*", ""));
        assert!(glob("a*b*c", "aXXbYYc") && !glob("a*b*c", "aXXbYY"));
        assert!(
            glob("ec2.amazonaws.com", "ec2.amazonaws.com") && !glob("ec2", "ec2.amazonaws.com")
        );
        assert!(glob(r"a\*", "a*") && !glob(r"a\*", "ab"));
        assert_eq!(escape("role/*x\\"), r"role/\*x\\");
        assert!(glob(&escape("role/*x\\"), "role/*x\\"));
        assert!(!glob(&escape("role/*"), "role/anything"));
    }

    #[test]
    fn a_rule_matches_on_every_field_it_gives_until_it_expires() {
        let r = record();
        let found = |text: &str| {
            rules(text)
                .unwrap()
                .find(&r)
                .map(|rule| rule.reason.clone())
        };
        assert_eq!(
            found(
                r#"[[rule]]
reason = "terraform"
api = "ec2.amazonaws.com:CreateTags"
principal = "arn:aws:sts::418295730164:assumed-role/terraform/*""#
            ),
            Some("terraform".into())
        );
        assert_eq!(
            found("[[rule]]\nreason = \"x\"\napi = \"ec2.amazonaws.com:Run*\""),
            None
        );
        assert_eq!(
            found("[[rule]]\nreason = \"x\"\nprincipal = \"*alice\""),
            None,
            "alice is not the top principal"
        );
        assert_eq!(
            found("[[rule]]\nreason = \"x\"\naccount = \"418295730164\"\nregion = \"eu-*\""),
            None
        );
        assert_eq!(
            found("[[rule]]\nreason = \"x\"\ninsight_type = \"ApiErrorRateInsight\""),
            None
        );
        assert_eq!(found("[[rule]]\nreason = \"x\"\ncategory = \"data\""), None);
        assert_eq!(
            found("[[rule]]\nreason = \"x\"\nerror_code = \"*\""),
            None,
            "a call rate has no code"
        );
        assert_eq!(
            found("[[rule]]\nreason = \"mgmt\"\ncategory = \"management\"\nregion = \"us-east-1\""),
            Some("mgmt".into())
        );
        // Expiry: the Insight is on 2024-03-12, so a rule expiring that day no longer applies,
        // one expiring the next day does.
        let expiring = |day: &str| {
            found(&format!(
                "[[rule]]\nreason = \"until {day}\"\napi = \"*:CreateTags\"\nexpires = \"{day}\""
            ))
        };
        assert_eq!(expiring("2024-03-12"), None);
        assert_eq!(expiring("2024-03-13"), Some("until 2024-03-13".into()));
        // The first matching rule wins.
        assert_eq!(
            found("[[rule]]\nreason = \"a\"\napi = \"*:Run*\"\n[[rule]]\nreason = \"b\"\napi = \"*:Create*\"\n[[rule]]\nreason = \"c\"\napi = \"*:*\"\n"),
            Some("b".into())
        );
    }

    #[test]
    fn unusable_rules_are_refused_with_where_and_why() {
        let refused = |text: &str| rules(text).unwrap_err().to_string();
        assert!(refused("[[rule]]\nreason = \"all\"\n").contains("rule 1: names nothing"));
        assert!(refused("[[rule]]\nreason = \"\"\napi = \"a:b\"").contains("`reason`"));
        assert!(refused("[[rule]]\nreason = \"x\"\napi = \"CreateTags\"")
            .contains("eventSource:eventName"));
        assert!(
            refused("[[rule]]\nreason = \"x\"\napi = \"a:b\"\nexpires = \"next week\"")
                .contains("`expires`")
        );
        assert!(refused(
            "[[rule]]\nreason = \"x\"\napi = \"a:b\"\n[[rule]]\nreason = \"y\"\nprincipal = \" \""
        )
        .contains("rule 2: `principal` is empty"));
        assert!(
            refused("[[rule]]\nreason = \"x\"\napi = \"a:b\"\nwho = \"me\"")
                .contains("unknown field")
        );
        assert!(refused("[[rule]]\nreason = \"x\"\ncategory = \"insight\"").contains("rules.toml"));
        assert!(refused("[[rule]\n").contains("rules.toml"));
        assert!(rules("").unwrap().is_empty());
        let missing = Rules::load(Path::new("/nonexistent/rules.toml")).unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/rules.toml"),
            "{missing}"
        );
    }

    #[test]
    fn a_rule_written_for_a_record_reads_back_and_matches_it_only() {
        let r = record();
        let rule = Rule::for_record(&r, "nightly terraform", true);
        let text = rule.to_toml().unwrap();
        let back = rules(&text).unwrap();
        assert_eq!(back.rules(), std::slice::from_ref(&rule));
        assert_eq!(
            back.find(&r).map(|x| x.reason.as_str()),
            Some("nightly terraform")
        );
        assert_eq!(
            rule.principal.as_deref(),
            Some("arn:aws:sts::418295730164:assumed-role/terraform/ci-1234")
        );
        let mut other = r.clone();
        other.insight_details.event_name = "CreateTagsX".into();
        assert!(back.find(&other).is_none());
        let without = Rule::for_record(&r, "any caller", false);
        assert_eq!(without.principal, None);
        assert!(without.rebaseline);
    }
}
