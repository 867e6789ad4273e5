//! Analyst views end to end: `plot` (PNG, SVG, overview), `report` (escaping, and a real
//! headless browser when one is installed), `series`, and reading a store while `watch` holds
//! it, all on the generated demo trail with its labelled incidents.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{fmt_minute, minute, trailsight};

/// The demo trail plus one hostile file, scored once: (archive, store, Insights JSON lines).
struct Scored {
    archive: PathBuf,
    store: PathBuf,
    insights: Vec<serde_json::Value>,
    _dir: tempfile::TempDir,
}

/// The hostile user agent and error code written into the extra file.
const HOSTILE_AGENT: &str =
    "<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\">";
const HOSTILE_CODE: &str = "<svg onload=\"window.__pwned=3\">";
const HOSTILE_ACCOUNT: &str = "418295730164";
const HOSTILE_REGION: &str = "eu-west-1";

/// A burst of 300 DeleteTrail calls in two minutes at night, all with a hostile user agent and
/// half of them failing with a hostile error code.
fn hostile_file(archive: &Path) {
    let dir = archive.join(format!(
        "AWSLogs/{HOSTILE_ACCOUNT}/CloudTrail/{HOSTILE_REGION}/2024/03/12"
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut records = Vec::new();
    for i in 0..300 {
        let mut r = serde_json::json!({
            "eventVersion": "1.09",
            "userIdentity": {"type": "IAMUser", "accountId": HOSTILE_ACCOUNT,
                "arn": format!("arn:aws:iam::{HOSTILE_ACCOUNT}:user/<b>mallory</b>")},
            "eventTime": format!("2024-03-12T03:{:02}:{:02}Z", 10 + i / 150, i % 60),
            "eventSource": "cloudtrail.amazonaws.com",
            "eventName": "DeleteTrail",
            "awsRegion": HOSTILE_REGION,
            "sourceIPAddress": "203.0.113.9",
            "userAgent": HOSTILE_AGENT,
            "readOnly": false,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "eventCategory": "Management",
            "recipientAccountId": HOSTILE_ACCOUNT,
            "eventID": format!("00000000-0000-4000-8000-{i:012}"),
        });
        if i % 2 == 0 {
            r["errorCode"] = serde_json::Value::String(HOSTILE_CODE.into());
        }
        records.push(r);
    }
    let body = serde_json::json!({ "Records": records });
    std::fs::write(
        dir.join(format!(
            "{HOSTILE_ACCOUNT}_CloudTrail_{HOSTILE_REGION}_20240312T0315Z_hostile.json"
        )),
        serde_json::to_vec(&body).unwrap(),
    )
    .unwrap();
}

fn scored() -> &'static Scored {
    static SCORED: OnceLock<Scored> = OnceLock::new();
    SCORED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("archive");
        let source = common::generated(7, 0.5, true);
        copy_tree(&source, &archive);
        hostile_file(&archive);
        let store = dir.path().join("store");
        let out = dir.path().join("insights.jsonl");
        let insights = common::score_ok(&archive, &store, &out, &[]);
        Scored {
            archive,
            store,
            insights,
            _dir: dir,
        }
    })
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn labels(archive: &Path) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(archive.join("labels.json")).unwrap()).unwrap();
    v["incidents"].as_array().unwrap().clone()
}

/// Starts written for a series (by account, region, source, name, error code).
fn starts_of(scored: &Scored, label: &serde_json::Value) -> Vec<i64> {
    scored
        .insights
        .iter()
        .filter(|r| {
            let d = &r["insightDetails"];
            d["state"] == "Start"
                && r["recipientAccountId"] == label["account"]
                && r["awsRegion"] == label["region"]
                && d["eventSource"] == label["eventSource"]
                && d["eventName"] == label["eventName"]
                && d.get("errorCode").unwrap_or(&serde_json::Value::Null) == &label["errorCode"]
        })
        .map(|r| minute(r["eventTime"].as_str().unwrap()))
        .collect()
}

fn plot_args<'a>(store: &'a str, label: &'a serde_json::Value, api: &'a str) -> Vec<&'a str> {
    let mut args = vec![
        "plot",
        "--store",
        store,
        "--api",
        api,
        "--account",
        label["account"].as_str().unwrap(),
        "--region",
        label["region"].as_str().unwrap(),
    ];
    if let Some(code) = label["errorCode"].as_str() {
        args.extend(["--error-code", code]);
    }
    args
}

#[test]
fn svg_and_png_show_each_labelled_incident_where_the_labels_say() {
    let s = scored();
    let store = s.store.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for label in labels(&s.archive) {
        let start = minute(label["start"].as_str().unwrap());
        let starts = starts_of(s, &label);
        assert!(
            !starts.is_empty(),
            "the demo's incident {} has a Start",
            label["id"]
        );
        let api = format!(
            "{}:{}",
            label["eventSource"].as_str().unwrap(),
            label["eventName"].as_str().unwrap()
        );
        // Twelve hours either side of the labelled start: the episode sits mid-plot.
        let (from, to) = (fmt_minute(start - 720), fmt_minute(start + 720));
        let svg = dir
            .path()
            .join(format!("{}.svg", label["id"].as_str().unwrap()));
        let mut args = plot_args(store, &label, &api);
        args.extend(["--from", &from, "--to", &to, "--out", svg.to_str().unwrap()]);
        let o = trailsight(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(
            text.contains(label["eventName"].as_str().unwrap()),
            "the title names the API"
        );
        assert!(text.contains(label["account"].as_str().unwrap()));
        assert!(text.contains("time (UTC)"));
        let unit = match label["errorCode"].as_str() {
            Some(code) => format!("{code} errors per minute"),
            None => "write calls per minute".to_string(),
        };
        assert!(text.contains(&unit), "axis unit {unit:?}");
        // One shaded rectangle per episode in range, its left edge near the middle.
        let shaded: Vec<f64> = shaded_rects(&text);
        let in_range = starts
            .iter()
            .filter(|&&m| m >= start - 720 && m < start + 720)
            .count();
        assert_eq!(shaded.len(), in_range, "{}: {text:.300}", label["id"]);
        let width = 1400.0;
        assert!(
            shaded
                .iter()
                .any(|&x| (0.45 * width..0.62 * width).contains(&x)),
            "{}: an episode starts mid-plot, got x = {shaded:?}",
            label["id"]
        );
    }
    // The same series as PNG, at a requested size: it decodes and has that size.
    let label = &labels(&s.archive)[0];
    let api = format!(
        "{}:{}",
        label["eventSource"].as_str().unwrap(),
        label["eventName"].as_str().unwrap()
    );
    let png = dir.path().join("incident.png");
    let start = minute(label["start"].as_str().unwrap());
    let (from, to) = (fmt_minute(start - 60), fmt_minute(start + 60));
    let mut args = plot_args(store, label, &api);
    args.extend(["--from", &from, "--to", &to]);
    args.extend([
        "--width",
        "1000",
        "--height",
        "420",
        "--out",
        png.to_str().unwrap(),
    ]);
    let o = trailsight(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (w, h, pixels) = decode_png(&png);
    assert_eq!((w, h), (1000, 420));
    // Not blank: the episode's red tint and the band's green are both drawn.
    // Red at 16 % over white is about (248, 225, 225); green at 35 % about (208, 225, 208).
    let tint = |p: &&[u8; 3]| p[0] >= 240 && (215..=232).contains(&p[1]) && p[0] - p[2] >= 12;
    assert!(pixels.iter().filter(tint).count() > 500, "episode tint");
    assert!(
        pixels
            .iter()
            .filter(|p| p[1] >= p[0] + 12 && p[1] >= p[2] + 12)
            .count()
            > 500,
        "green band"
    );
}

/// x of every shaded episode rectangle (fill-opacity 0.16) in an SVG from plotters.
fn shaded_rects(svg: &str) -> Vec<f64> {
    svg.split("<rect")
        .skip(1)
        .filter(|r| {
            let tag = r.split('>').next().unwrap_or("");
            tag.contains("#D64541") && tag.contains("opacity=\"0.16")
        })
        .filter_map(|r| {
            let x = r.split("x=\"").nth(1)?.split('"').next()?;
            x.parse().ok()
        })
        .collect()
}

fn decode_png(path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let pixels = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    (info.width, info.height, pixels)
}

#[test]
fn the_overview_draws_the_most_unusual_series_at_the_requested_size() {
    let s = scored();
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("overview.png");
    let o = trailsight(&[
        "plot",
        "--store",
        s.store.to_str().unwrap(),
        "--overview",
        "--top",
        "6",
        "--columns",
        "3",
        "--width",
        "1200",
        "--height",
        "250",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("6 series"));
    let (w, h, _) = decode_png(&png);
    assert_eq!((w, h), (1200, 50 + 2 * 250));
    // As SVG: the series with episodes come first, so the labelled APIs are drawn.
    let svg = dir.path().join("overview.svg");
    let o = trailsight(&[
        "plot",
        "--store",
        s.store.to_str().unwrap(),
        "--overview",
        "--top",
        "9",
        "--out",
        svg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&svg).unwrap();
    for label in labels(&s.archive) {
        assert!(
            text.contains(label["eventName"].as_str().unwrap()),
            "overview shows {}",
            label["eventName"]
        );
    }
}

#[test]
fn wrong_selections_and_paths_get_clear_errors_and_create_nothing() {
    let s = scored();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-store");
    let out = dir.path().join("x.png");
    let o = trailsight(&[
        "plot",
        "--store",
        missing.to_str().unwrap(),
        "--api",
        "ec2.amazonaws.com:RunInstances",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not a trailsight store"));
    assert!(!missing.exists(), "no store is created at a mistyped path");
    // RunInstances exists in several account/regions: the user is asked to narrow it.
    let o = trailsight(&[
        "plot",
        "--store",
        s.store.to_str().unwrap(),
        "--api",
        "ec2.amazonaws.com:RunInstances",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("series match") && err.contains("--account"),
        "{err}"
    );
    let o = trailsight(&[
        "plot",
        "--store",
        s.store.to_str().unwrap(),
        "--api",
        "nope.amazonaws.com:Nothing",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no series matches"));
    let o = trailsight(&[
        "plot",
        "--store",
        s.store.to_str().unwrap(),
        "--overview",
        "--out",
        dir.path().join("x.jpg").to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains(".png or .svg"));
    assert!(!out.exists(), "no image is left behind by a failed plot");
}

#[test]
fn the_report_lists_every_episode_escapes_log_values_and_plots_each() {
    let s = scored();
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let o = trailsight(&[
        "report",
        "--store",
        s.store.to_str().unwrap(),
        "--out",
        html.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = std::fs::read_to_string(&html).unwrap();
    let episodes = s
        .insights
        .iter()
        .filter(|r| r["insightDetails"]["state"] == "Start")
        .count();
    assert_eq!(page.matches("<tbody class=\"insight\">").count(), episodes);
    assert_eq!(
        page.matches("<svg").count(),
        episodes,
        "one plot per episode"
    );
    // The hostile burst made Insights, and its values are shown as text, never as markup.
    assert!(page.contains("DeleteTrail"));
    assert!(page.contains("&lt;script&gt;window.__pwned=1&lt;/script&gt;"));
    assert!(page.contains("&lt;svg onload=&quot;window.__pwned=3&quot;&gt;"));
    assert!(!page.contains(HOSTILE_AGENT));
    assert!(!page.contains(HOSTILE_CODE));
    assert!(!page.contains("<b>mallory</b>"));
    // Exactly one script element: the page's own sorting script, allowed by hash.
    assert_eq!(page.matches("<script").count(), 1);
    assert!(page.contains("script-src 'sha256-"));
    browser_check(&html, episodes, dir.path());
}

/// Loads the report in headless Chromium (through playwright-core): no console errors, no
/// script from the logs ran, the table sorts, and a screenshot is taken.
fn browser_check(html: &Path, rows: usize, dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/check_report.cjs");
    let modules = std::env::var("TRAILSIGHT_NODE_MODULES").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/trailsight/node/node_modules")
    });
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let ready =
        Path::new(&modules).join("playwright-core").is_dir() && Path::new(&chromium).exists();
    if !ready {
        if std::env::var_os("CI").is_some() {
            panic!("CI must install chromium and playwright-core ({modules}); see .ci/run");
        }
        eprintln!("note: skipping the browser check: chromium or playwright-core not installed");
        return;
    }
    let shot = dir.join("report.png");
    let o = Command::new("node")
        .arg(&script)
        .arg(html)
        .arg(&shot)
        .env("NODE_PATH", &modules)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run node");
    assert!(
        o.status.success(),
        "browser check failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(
        o.stdout
            .split(|&b| b == b'\n')
            .rfind(|l| l.starts_with(b"{"))
            .expect("a JSON result line"),
    )
    .unwrap();
    assert_eq!(
        result["errors"],
        serde_json::json!([]),
        "console errors: {result}"
    );
    assert_eq!(
        result["pwned"],
        serde_json::Value::Null,
        "a script from the logs ran"
    );
    assert_eq!(result["rows"], rows);
    assert_eq!(result["plots"], rows);
    assert_eq!(
        result["shownAgent"], true,
        "the hostile user agent is shown as text"
    );
    let asc: Vec<f64> = serde_json::from_value(result["ascending"].clone()).unwrap();
    let desc: Vec<f64> = serde_json::from_value(result["descending"].clone()).unwrap();
    assert!(asc.windows(2).all(|w| w[0] <= w[1]), "{asc:?}");
    assert!(desc.windows(2).all(|w| w[0] >= w[1]), "{desc:?}");
    assert!(
        asc.first() < asc.last(),
        "durations differ, so sorting is visible"
    );
    let (w, h, pixels) = decode_png(&shot);
    assert!(w >= 1000 && h >= 600);
    assert!(
        pixels.iter().filter(|p| p[0] < 100).count() > 1000,
        "the screenshot shows text"
    );
    if let Ok(keep) = std::env::var("TRAILSIGHT_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}

#[test]
fn series_lists_the_store_with_calls_and_episodes() {
    let s = scored();
    let o = trailsight(&[
        "series",
        "--store",
        s.store.to_str().unwrap(),
        "--api",
        "cloudtrail.amazonaws.com:DeleteTrail",
        "--from",
        "2024-03-12",
        "--to",
        "2024-03-13",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect())
        .collect();
    let calls = rows
        .iter()
        .find(|r| r[0] == "ApiCallRateInsight" && r[2] == HOSTILE_REGION)
        .expect("the DeleteTrail call series");
    assert!(calls[6].parse::<u64>().unwrap() >= 300, "{calls:?}");
    assert!(calls[7].parse::<u64>().unwrap() >= 1, "{calls:?}");
    assert_eq!(calls[8], "management", "{calls:?}");
    let errors = rows
        .iter()
        .find(|r| r[0] == "ApiErrorRateInsight" && r[2] == HOSTILE_REGION)
        .expect("the error series");
    assert_eq!(errors[5], HOSTILE_CODE);
    assert_eq!(errors[6], "150");
}

#[test]
fn plots_read_the_snapshot_while_watch_holds_the_store() {
    let s = scored();
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    std::fs::create_dir_all(&live).unwrap();
    let store = dir.path().join("store");
    // A store only `score` wrote, continued by `watch` on an (empty) live folder.
    common::score_ok(&s.archive, &store, &dir.path().join("score.jsonl"), &[]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_trailsight"))
        .args([
            "watch",
            live.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
            "--snapshot-interval",
            "1",
            "--poll-interval",
            "0.5",
            "--quiet",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // A file lands so that watch commits (and publishes a snapshot after the checkpoint).
    let src = s.archive.join(format!(
        "AWSLogs/{HOSTILE_ACCOUNT}/CloudTrail/{HOSTILE_REGION}/2024/03/12"
    ));
    let target = live.join(format!(
        "AWSLogs/{HOSTILE_ACCOUNT}/CloudTrail/{HOSTILE_REGION}/2024/03/13"
    ));
    std::fs::create_dir_all(&target).unwrap();
    let mut record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            std::fs::read_dir(&src)
                .unwrap()
                .flatten()
                .find(|e| e.file_name().to_string_lossy().contains("hostile"))
                .unwrap()
                .path(),
        )
        .unwrap(),
    )
    .unwrap();
    record["Records"] = serde_json::json!([{
        "eventVersion": "1.09", "eventTime": "2024-03-13T00:30:00Z",
        "eventSource": "ec2.amazonaws.com", "eventName": "RunInstances",
        "awsRegion": HOSTILE_REGION, "recipientAccountId": HOSTILE_ACCOUNT,
        "readOnly": false, "managementEvent": true, "eventType": "AwsApiCall",
        "eventID": "11111111-0000-4000-8000-000000000001"
    }]);
    std::fs::write(
        target.join("late.json"),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();
    let snapshot = store.join("snapshot/WRITTEN");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !snapshot.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(snapshot.exists(), "watch published a snapshot");
    let out = dir.path().join("while-watching.svg");
    let o = trailsight(&[
        "plot",
        "--store",
        store.to_str().unwrap(),
        "--api",
        "cloudtrail.amazonaws.com:DeleteTrail",
        "--region",
        HOSTILE_REGION,
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    // Stop watch before asserting, so a failure does not leave it running.
    unsafe_kill(&child);
    let _ = child.wait();
    assert!(o.status.success(), "{err}");
    assert!(err.contains("snapshot of the store"), "{err}");
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .contains("DeleteTrail"));
    // The store itself is unharmed: watch's state is still readable after it stopped.
    let o = trailsight(&[
        "series",
        "--store",
        store.to_str().unwrap(),
        "--api",
        "ec2.amazonaws.com:RunInstances",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn unsafe_kill(child: &std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}
