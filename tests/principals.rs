//! Per-principal series end to end (`[principals]` in a profile, `models/security.toml`): the
//! Insights of a principal's write and read rates are AWS Insights records with trailsight's
//! documented extension fields; turning them on leaves every API's Insight unchanged; a role's
//! sessions are one principal; the demo's intruders are found by their principals' rates; a
//! suppression rule written from a principal's Insight holds it back in `score` and `watch`;
//! and `principals.max_series` bounds the series an attacker's made-up identities can add.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::{generated, json_lines, minute, trailsight};
use serde_json::Value;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn profile(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("principals.toml");
    std::fs::write(
        &path,
        format!("[principals]\nwrite_rates = true\nread_rates = true\n{extra}"),
    )
    .unwrap();
    path
}

fn score(archive: &Path, store: &Path, args: &[&str]) -> (Vec<Value>, String) {
    let mut all = vec!["score", s(archive), "--store", s(store), "--no-progress"];
    all.extend_from_slice(args);
    let o = trailsight(&all);
    let said = ok(&o);
    (json_lines(&o.stdout), said)
}

/// `trailsight series` of the whole demo range (tab-separated, a header line first).
fn series(store: &Path) -> String {
    let o = trailsight(&[
        "series",
        "--store",
        s(store),
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-20",
    ]);
    ok(&o);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn is_principals(r: &Value) -> bool {
    r["insightDetails"].get("seriesKind").is_some()
}

#[test]
fn principals_rates_are_aws_records_that_find_the_intruders_and_leave_api_insights_alone() {
    let archive = generated(7, 0.5, true);
    let dir = tempfile::tempdir().unwrap();
    let (plain, _) = score(&archive, &dir.path().join("plain.db"), &[]);
    let store = dir.path().join("principals.db");
    let profile = profile(dir.path(), "");
    let (all, said) = score(&archive, &store, &["--profile", s(&profile)]);

    // The APIs' Insights are byte for byte those of the default profile.
    let apis: Vec<&Value> = all.iter().filter(|r| !is_principals(r)).collect();
    assert_eq!(apis, plain.iter().collect::<Vec<_>>());
    let principals: Vec<&Value> = all.iter().filter(|r| is_principals(r)).collect();
    assert!(!principals.is_empty(), "no principal's Insight");
    assert!(said.contains("counted into principals' series"), "{said}");

    // Each is an AWS Insights record: the API fields AWS documents, a call-rate type, the
    // extension fields, AWS's attributions plus the APIs, and a Start/End pair per episode.
    let mut pairs: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in &principals {
        let d = &r["insightDetails"];
        assert_eq!(r["eventType"], "AwsCloudTrailInsight");
        assert_eq!(r["eventCategory"], "Insight");
        assert_eq!(d["insightType"], "ApiCallRateInsight", "{r}");
        assert_eq!(
            (&d["eventSource"], &d["eventName"]),
            (&"*".into(), &"*".into())
        );
        assert!(["principalWriteRate", "principalReadRate"]
            .contains(&d["seriesKind"].as_str().unwrap()));
        let principal = d["principalArn"].as_str().unwrap();
        assert!(principal.starts_with("arn:aws:iam::"), "{principal}");
        assert_eq!(d["sourceEventCategory"], "Management");
        assert!(d.get("errorCode").is_none());
        let attributes: Vec<&str> = d["insightContext"]["attributions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["attribute"].as_str().unwrap())
            .collect();
        assert_eq!(attributes, ["userIdentityArn", "userAgent", "api"]);
        let apis = &d["insightContext"]["attributions"][2]["insight"];
        assert!(apis.as_array().is_some_and(|a| !a.is_empty()), "{r}");
        for v in apis.as_array().unwrap() {
            let (source, name) = v["value"].as_str().unwrap().split_once(':').unwrap();
            assert!(
                source.ends_with(".amazonaws.com") && !name.is_empty(),
                "{v}"
            );
        }
        pairs
            .entry(r["sharedEventID"].as_str().unwrap())
            .or_default()
            .push(d["state"].as_str().unwrap());
    }
    assert!(pairs.values().all(|p| p == &["Start", "End"]), "{pairs:?}");

    // The labelled intruders (a rare API burst by one user, StopLogging by a contractor) rise
    // in their own principal's write rate within five minutes of their first call.
    let labels: Value =
        serde_json::from_slice(&std::fs::read(archive.join("labels.json")).unwrap()).unwrap();
    for id in ["inc-01", "inc-02"] {
        let label = labels["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"] == id)
            .unwrap();
        let user = label["description"]
            .as_str()
            .unwrap()
            .split("IAM user ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap();
        let start = minute(label["start"].as_str().unwrap());
        let found = principals.iter().find(|r| {
            r["insightDetails"]["state"] == "Start"
                && r["insightDetails"]["seriesKind"] == "principalWriteRate"
                && r["insightDetails"]["principalArn"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!(":user/{user}"))
        });
        let found = found.unwrap_or_else(|| panic!("{id}: no write-rate Insight of {user}"));
        let at = minute(found["eventTime"].as_str().unwrap());
        assert!((start..=start + 5).contains(&at), "{id}: {at} vs {start}");
    }

    // A role's sessions are one principal: no series is an STS session, roles are there.
    let listing = series(&store);
    let kinds: BTreeSet<&str> = listing
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').nth(9))
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["api", "principalReadRate", "principalWriteRate"])
    );
    let principal_column: Vec<&str> = listing
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').nth(10))
        .filter(|p| *p != "-")
        .collect();
    // (Identity Center's sessions are people: they stay apart.)
    assert!(
        principal_column
            .iter()
            .all(|p| !p.contains(":sts:") || p.contains(":assumed-role/AWSReservedSSO_")),
        "{listing}"
    );
    assert!(
        principal_column.iter().any(|p| p.contains(":role/")),
        "{listing}"
    );

    // Its plot draws the principal's own baseline.
    let principal = principals[0]["insightDetails"]["principalArn"]
        .as_str()
        .unwrap();
    let png = dir.path().join("principal.png");
    let region = principals[0]["awsRegion"].as_str().unwrap();
    let mut plot = vec![
        "plot",
        "--store",
        s(&store),
        "--principal",
        principal,
        "--region",
        region,
        "--out",
        s(&png),
    ];
    if principals[0]["insightDetails"]["seriesKind"] == "principalReadRate" {
        plot.push("--reads");
    }
    let said = ok(&trailsight(&plot));
    assert!(said.contains(principal), "{said}");
    // ... with its episode marked (the view finds a principal's Insights by its principal).
    assert!(said.contains(", 1 episodes,"), "{said}");
    assert!(std::fs::metadata(&png).unwrap().len() > 10_000);
}

#[test]
fn a_suppressed_principal_insight_is_held_back_by_score_and_watch() {
    let archive = generated(7, 0.5, true);
    let dir = tempfile::tempdir().unwrap();
    let profile = profile(dir.path(), "");
    let first = dir.path().join("first.db");
    let (all, _) = score(&archive, &first, &["--profile", s(&profile)]);
    let start = all
        .iter()
        .find(|r| is_principals(r) && r["insightDetails"]["state"] == "Start")
        .expect("a principal's Insight")
        .clone();
    let shared = start["sharedEventID"].as_str().unwrap();
    let principal = start["insightDetails"]["principalArn"].as_str().unwrap();
    let rules = dir.path().join("rules.toml");
    ok(&trailsight(&[
        "suppress",
        start["eventID"].as_str().unwrap(),
        "--store",
        s(&first),
        "--rules",
        s(&rules),
        "--reason",
        "the nightly job's new schedule",
    ]));
    let written = std::fs::read_to_string(&rules).unwrap();
    let kind = start["insightDetails"]["seriesKind"].as_str().unwrap();
    assert!(written.contains(&format!("kind = \"{kind}\"")), "{written}");
    assert!(
        written.contains(&format!("principal = \"{principal}\"")),
        "{written}"
    );

    let others = |records: &[Value]| -> Vec<String> {
        records
            .iter()
            .filter(|r| r["sharedEventID"] != shared)
            .map(|r| r.to_string())
            .collect()
    };
    let (kept, said) = score(
        &archive,
        &dir.path().join("second.db"),
        &["--profile", s(&profile), "--suppress", s(&rules)],
    );
    assert!(!kept.iter().any(|r| r["sharedEventID"] == shared));
    assert!(said.contains("suppressed 2 Starts and Ends"), "{said}");
    // Every other Insight, the APIs' and the other principals', is unchanged.
    let apis = |records: &[Value]| -> Vec<String> {
        records
            .iter()
            .filter(|r| !is_principals(r))
            .map(|r| r.to_string())
            .collect()
    };
    assert_eq!(apis(&kept), apis(&all));
    assert_eq!(
        others(&kept),
        others(&all),
        "only the suppressed pair is missing"
    );

    let watched = dir.path().join("watch.jsonl");
    ok(&trailsight(&[
        "watch",
        s(&archive),
        "--store",
        s(&dir.path().join("watch.db")),
        "--out",
        s(&watched),
        "--once",
        "--settle",
        "0",
        "--log-level",
        "warn",
        "--profile",
        s(&profile),
        "--suppress",
        s(&rules),
    ]));
    let out = json_lines(&std::fs::read(&watched).unwrap());
    assert!(!out.iter().any(|r| r["sharedEventID"] == shared));
    assert!(out.iter().any(is_principals), "watch counts principals too");
}

#[test]
fn principals_past_max_series_are_counted_in_their_apis_only_and_said() {
    let archive = generated(7, 0.5, true);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("capped.db");
    let profile = profile(dir.path(), "max_series = 3\n");
    let (all, said) = score(&archive, &store, &["--profile", s(&profile)]);
    assert!(
        said.contains(
            "calls of principals past principals.max_series counted in their APIs' series only"
        ),
        "{said}"
    );
    let listing = series(&store);
    let principal_series = listing
        .lines()
        .skip(1)
        .filter(|l| l.split('\t').nth(10).is_some_and(|p| p != "-"))
        .count();
    assert_eq!(principal_series, 3, "{listing}");
    // The APIs' series are all there: their Insights are the default profile's.
    let (plain, _) = score(&archive, &dir.path().join("plain.db"), &[]);
    let apis: Vec<&Value> = all.iter().filter(|r| !is_principals(r)).collect();
    assert_eq!(apis, plain.iter().collect::<Vec<_>>());

    // A setting out of range is refused with its name.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[principals]\nmin_history_minutes = -60\n").unwrap();
    let o = trailsight(&[
        "score",
        s(&archive),
        "--store",
        s(&dir.path().join("never.db")),
        "--profile",
        s(&bad),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("principals.min_history_minutes"));
}
