//! `trailsight suppress`: writes a suppression rule from an Insight in the store.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::insight::InsightState;
use crate::suppress::{Rule, Rules};
use crate::view::StoreView;

/// `trailsight suppress`.
#[derive(Debug, Args)]
pub struct SuppressArgs {
    /// The Insight: its `eventID` (Start or End) or its `sharedEventID`.
    #[arg(value_name = "EVENT_ID")]
    event_id: String,
    /// The store that holds it (read only; its snapshot while `watch` holds it).
    #[arg(long, default_value = "trailsight.db", value_name = "DIR")]
    store: PathBuf,
    /// The rules file to add the rule to (created when missing; pass it to `score` and `watch`
    /// with --suppress).
    #[arg(long, value_name = "FILE")]
    rules: PathBuf,
    /// Why this is normal (shown in the report).
    #[arg(long, value_name = "TEXT")]
    reason: String,
    /// Match the API in the account and region whoever calls it, not only the principal that
    /// made most of this Insight's calls.
    #[arg(long)]
    any_principal: bool,
    /// The last day the rule applies (YYYY-MM-DD, UTC); by default it never expires.
    #[arg(long, value_name = "DATE")]
    until: Option<chrono::NaiveDate>,
    /// Only keep matching Insights from the outputs: their minutes stay out of the baseline
    /// (by default a suppressed episode becomes baseline: "this is normal now").
    #[arg(long)]
    no_rebaseline: bool,
}

/// Finds the Insight, writes the rule, and prints it.
pub fn suppress(args: SuppressArgs) -> Result<u8> {
    let view = StoreView::open(&args.store, None)?;
    let records = view.insight_records()?;
    let Some(found) = records
        .iter()
        .find(|r| r.event_id == args.event_id || r.shared_event_id == args.event_id)
    else {
        bail!(
            "no Insight with eventID or sharedEventID {:?} in the store {} (`trailsight export --what insights` lists them)",
            args.event_id,
            args.store.display()
        );
    };
    // The rule is made from the episode's Start (the principal that set it off).
    let start = records
        .iter()
        .find(|r| {
            r.shared_event_id == found.shared_event_id
                && r.insight_details.state == InsightState::Start
        })
        .unwrap_or(found);
    let mut rule = Rule::for_record(start, &args.reason, !args.any_principal);
    rule.rebaseline = !args.no_rebaseline;
    rule.expires = args
        .until
        .and_then(|day| day.succ_opt())
        .map(|day| day.format("%Y-%m-%d").to_string());
    let text = rule
        .to_toml()
        .map_err(|e| anyhow::anyhow!("writing the rule: {e}"))?;
    // The file with the rule added must still read: nothing is written otherwise.
    let before = match std::fs::read_to_string(&args.rules) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", args.rules.display())),
    };
    let after = format!("{before}{text}");
    let rules = Rules::parse(&after, &args.rules)?;
    if rules.find(start).is_none_or(|r| *r != rule) {
        if let Some(earlier) = rules.find(start) {
            eprintln!(
                "trailsight: note: an earlier rule already matches this Insight ({:?}); the new one is added after it",
                earlier.reason
            );
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.rules)
        .with_context(|| format!("opening {}", args.rules.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", args.rules.display()))?;
    print!("{text}");
    eprintln!(
        "trailsight: rule added to {} (score and watch read it with --suppress {}; a running watch reads it again at its next checkpoint)",
        args.rules.display(),
        args.rules.display()
    );
    Ok(0)
}
