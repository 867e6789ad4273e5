//! Suppression end to end: `trailsight suppress` writes a rule from an Insight in the store;
//! `score` and `watch` with `--suppress` then keep that episode (Start and End) from every
//! output while storing it, the report and the Insights export show it as suppressed, and every
//! other series' Insights are unchanged. A rules file that does not read stops the run before
//! the store is touched.

mod common;

use std::path::Path;

use common::{generated, json_lines, trailsight};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The Insights of a series other than the suppressed one's, as (sharedEventID, state) text.
fn others(records: &[serde_json::Value], api: &str) -> Vec<String> {
    records
        .iter()
        .filter(|r| {
            format!(
                "{}:{}",
                r["insightDetails"]["eventSource"].as_str().unwrap(),
                r["insightDetails"]["eventName"].as_str().unwrap()
            ) != api
        })
        .map(|r| r.to_string())
        .collect()
}

#[test]
fn a_suppressed_insight_is_stored_and_reported_but_sent_nowhere_by_score_and_watch() {
    let archive = generated(7, 0.5, true);
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.db");
    let o = trailsight(&["score", s(&archive), "--store", s(&first), "--no-progress"]);
    ok(&o);
    let all = json_lines(&o.stdout);
    let start = all
        .iter()
        .find(|r| r["insightDetails"]["state"] == "Start")
        .expect("the demo archive has Insights")
        .clone();
    let shared = start["sharedEventID"].as_str().unwrap();
    let api = format!(
        "{}:{}",
        start["insightDetails"]["eventSource"].as_str().unwrap(),
        start["insightDetails"]["eventName"].as_str().unwrap()
    );
    let pair: Vec<_> = all
        .iter()
        .filter(|r| r["sharedEventID"] == shared)
        .collect();
    assert_eq!(pair.len(), 2, "a Start and its End");

    // The analyst says it is normal: a rule from the Start's eventID.
    let rules = dir.path().join("rules.toml");
    let o = trailsight(&[
        "suppress",
        start["eventID"].as_str().unwrap(),
        "--store",
        s(&first),
        "--rules",
        s(&rules),
        "--reason",
        "the platform team's deploy",
    ]);
    ok(&o);
    let written = std::fs::read_to_string(&rules).unwrap();
    assert!(written.contains("[[rule]]"), "{written}");
    assert!(written.contains(&format!("api = \"{api}\"")), "{written}");
    assert!(written.contains("the platform team's deploy"), "{written}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        written,
        "printed as written"
    );

    // score with the rule, into a new store: the episode is held back, the rest unchanged.
    let second = dir.path().join("second.db");
    let o = trailsight(&[
        "score",
        s(&archive),
        "--store",
        s(&second),
        "--no-progress",
        "--suppress",
        s(&rules),
    ]);
    let said = ok(&o);
    let kept = json_lines(&o.stdout);
    assert!(
        !kept.iter().any(|r| r["sharedEventID"] == shared),
        "the suppressed episode reached the output"
    );
    assert_eq!(others(&kept, &api), others(&all, &api));
    assert!(said.contains("suppressed 2 Starts and Ends"), "{said}");
    // ... but it is in the store: the export and the report say it was suppressed.
    let export = dir.path().join("insights.csv");
    ok(&trailsight(&[
        "export",
        "--store",
        s(&second),
        "--what",
        "insights",
        "--out",
        s(&export),
    ]));
    let csv = std::fs::read_to_string(&export).unwrap();
    let suppressed_rows: Vec<&str> = csv
        .lines()
        .filter(|l| l.contains("the platform team's deploy"))
        .collect();
    assert_eq!(suppressed_rows.len(), 2, "{csv}");
    assert!(suppressed_rows.iter().all(|l| l.contains(shared)));
    let report = dir.path().join("report.html");
    ok(&trailsight(&[
        "report",
        "--store",
        s(&second),
        "--out",
        s(&report),
    ]));
    let html = std::fs::read_to_string(&report).unwrap();
    assert_eq!(
        html.matches("Suppressed (not sent to any output): the platform team&#39;s deploy")
            .count()
            + html
                .matches("Suppressed (not sent to any output): the platform team&#x27;s deploy")
                .count()
            + html
                .matches("Suppressed (not sent to any output): the platform team's deploy")
                .count(),
        1,
        "one suppressed episode in the report"
    );

    // watch with the rule on the same archive as a folder: the same outputs as score.
    let watched = dir.path().join("watch.jsonl");
    let store = dir.path().join("watch.db");
    let watch = || {
        trailsight(&[
            "watch",
            s(&archive),
            "--store",
            s(&store),
            "--out",
            s(&watched),
            "--once",
            "--settle",
            "0",
            "--log-level",
            "warn",
            "--suppress",
            s(&rules),
        ])
    };
    ok(&watch());
    let out = json_lines(&std::fs::read(&watched).unwrap());
    assert!(!out.iter().any(|r| r["sharedEventID"] == shared));
    assert!(!out.is_empty());
    // A restart repeats nothing and still holds the episode back.
    ok(&watch());
    assert_eq!(json_lines(&std::fs::read(&watched).unwrap()), out);

    // A rules file that does not read: the run stops before creating the store.
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[[rule]]\nreason = \"everything\"\n").unwrap();
    let never = dir.path().join("never.db");
    let o = trailsight(&[
        "score",
        s(&archive),
        "--store",
        s(&never),
        "--suppress",
        s(&broken),
    ]);
    assert!(!o.status.success());
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(
        said.contains("broken.toml, rule 1: names nothing"),
        "{said}"
    );
    assert!(!never.exists());
    // An eventID the store does not hold: said, and the rules file is left as it was.
    let o = trailsight(&[
        "suppress",
        "no-such-id",
        "--store",
        s(&first),
        "--rules",
        s(&rules),
        "--reason",
        "x",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-id"));
    assert_eq!(std::fs::read_to_string(&rules).unwrap(), written);
}
