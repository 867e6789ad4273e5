//! Helpers shared by the end-to-end tests: the built binary, the shared reference data, and
//! generated archives (made once per test binary).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs the built `trailsight` binary.
pub fn trailsight(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trailsight"))
        .args(args)
        .output()
        .expect("run trailsight")
}

/// `../shared/datasets` beside the project. In CI it must exist; elsewhere tests that need it
/// are skipped with a note when it does not.
pub fn shared_datasets() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{} is missing: CI must run with ../shared beside the clone",
            dir.display()
        );
    }
    eprintln!("note: {} not found, test skipped", dir.display());
    None
}

/// Parses the JSON lines a run wrote.
pub fn json_lines(bytes: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// `score ARCHIVE --store STORE --out OUT EXTRA...`, which must succeed; the Insights it wrote.
pub fn score_ok(
    archive: &Path,
    store: &Path,
    out: &Path,
    extra: &[&str],
) -> Vec<serde_json::Value> {
    let mut args = vec![
        "score",
        archive.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = trailsight(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    json_lines(&std::fs::read(out).unwrap())
}

/// Minutes since the epoch of an RFC 3339 UTC time.
pub fn minute(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .expect("RFC 3339")
        .timestamp()
        / 60
}

/// A Unix minute as `YYYY-MM-DDTHH:MM` (UTC), the form `--from`/`--to` take.
pub fn fmt_minute(m: i64) -> String {
    chrono::DateTime::from_timestamp(m * 60, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M")
        .to_string()
}

/// A generated archive, made once per (seed, scale, incidents) in this test binary's temp dir.
pub fn generated(seed: u64, scale: f64, incidents: bool) -> PathBuf {
    use std::sync::Mutex;
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let prefix = format!("archive-{}-", std::process::id());
    // Archives of earlier test processes are stale: remove them (they are large).
    if let Ok(entries) = std::fs::read_dir(base) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("archive-") && !name.starts_with(&prefix) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let root = base.join(format!("{prefix}{seed}-{scale}-{incidents}"));
    if !root.join("labels.json").exists() {
        let mut opts = trailsight::generate::GenerateOptions::new(root.clone(), 9, seed);
        opts.scale = scale;
        opts.incidents = incidents;
        trailsight::generate::generate(&opts).expect("generate");
    }
    root
}

/// Options of a plain batch run through the library (input taken as complete).
pub fn batch_options() -> trailsight::pipeline::RunOptions {
    trailsight::pipeline::RunOptions {
        limits: trailsight::ingest::ReadLimits::default(),
        on_error: trailsight::pipeline::OnError::Continue,
        threads: None,
        finalize: true,
        progress: false,
    }
}

/// Scores `inputs` through the library into a new store; the temp dir keeps the store alive.
pub fn score_with_library(
    inputs: &[PathBuf],
) -> (
    tempfile::TempDir,
    trailsight::pipeline::Engine,
    trailsight::pipeline::RunSummary,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = trailsight::pipeline::Engine::open(
        &dir.path().join("db"),
        trailsight::detect::Profile::builtin(),
    )
    .unwrap();
    let summary = engine.score(inputs, &batch_options(), &mut []).unwrap();
    (dir, engine, summary)
}

/// A loopback port nothing listens on (at the time of asking).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET over plain HTTP/1.1 on loopback; (status line, body).
pub fn http_get(port: u16, path: &str) -> Option<(String, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

/// The value of a sample in Prometheus text (`name` with its labels, as written).
pub fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `score --keep-pending` of `archive` into `dir/score.db`: the JSON lines it wrote.
pub fn score_keep_pending(archive: &Path, dir: &Path) -> Vec<u8> {
    let out = dir.join("score.jsonl");
    let run = trailsight(&[
        "score",
        archive.to_str().unwrap(),
        "--store",
        dir.join("score.db").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--keep-pending",
        "--no-progress",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    std::fs::read(out).unwrap()
}

/// A moto server on a loopback port, killed when dropped (also when a test panics).
pub struct MotoServer {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    log: PathBuf,
}

impl MotoServer {
    /// The server's request log.
    pub fn log(&self) -> &Path {
        &self.log
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server cannot be had: a failure in CI, a skip elsewhere.
fn unavailable(why: String) -> Option<MotoServer> {
    if std::env::var_os("CI").is_some() {
        panic!("the moto server is needed in CI: {why}");
    }
    eprintln!(
        "note: test skipped: {why} (install moto with `python3 -m pip install 'moto[server]'`)"
    );
    None
}

/// Whether an HTTP server answers 200 on `port`.
fn answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// Starts `python3 -m moto.server` on a free loopback port and waits until it answers.
pub fn start_moto() -> Option<MotoServer> {
    let port = free_port();
    let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("moto-{port}.log"));
    let log_file = std::fs::File::create(&log).unwrap();
    let child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) => return unavailable(format!("cannot run python3: {e}")),
    };
    let mut server = MotoServer {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        log: log.clone(),
    };
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if let Ok(Some(status)) = server.child.try_wait() {
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            return unavailable(format!("moto server exited ({status}): {output}"));
        }
        if answers(port) {
            return Some(server);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    unavailable(format!(
        "moto server did not answer on port {port} within 60 s"
    ))
}

/// Credentials, region and no shared config: what every process talking to moto is given
/// (trailsight's AWS clients and the tests' boto3 alike).
pub const AWS_ENV: [(&str, &str); 7] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_DEFAULT_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_CONFIG_FILE", "/nonexistent/trailsight-test-aws-config"),
    (
        "AWS_SHARED_CREDENTIALS_FILE",
        "/nonexistent/trailsight-test-aws-credentials",
    ),
];

/// Runs a boto3 script against moto at `endpoint` (the test's own client, independent of
/// trailsight's), with `sns`, `sqs`, `events`, `s3` and `securityhub` clients bound, and returns
/// what it printed.
pub fn boto(endpoint: &str, script: &str) -> String {
    let mut c = Command::new("python3");
    c.arg("-c").arg(format!(
        "import boto3, json, sys\nE = {endpoint:?}\n\
         sns = boto3.client('sns', endpoint_url=E)\n\
         sqs = boto3.client('sqs', endpoint_url=E)\n\
         events = boto3.client('events', endpoint_url=E)\n\
         s3 = boto3.client('s3', endpoint_url=E)\n\
         securityhub = boto3.client('securityhub', endpoint_url=E)\n{script}"
    ));
    for (k, v) in AWS_ENV {
        c.env(k, v);
    }
    c.env_remove("AWS_PROFILE").env_remove("AWS_ENDPOINT_URL");
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// `from`'s records rewritten under `to` as one file per account, region and `hours` hours of
/// delivery, named like CloudTrail's files with the period's last delivery minute.
pub fn regrouped(from: &Path, to: &Path, hours: u32) -> std::path::PathBuf {
    use std::collections::BTreeMap;
    use std::io::{Read, Write};
    // (folder, `ACCOUNT_CloudTrail_REGION_YYYYMMDDT`, period) -> (last delivery `HHmm`, records)
    let mut groups: BTreeMap<(String, String, u32), (String, Vec<serde_json::Value>)> =
        BTreeMap::new();
    for f in trailsight::ingest::discover(&[from.to_path_buf()]).files {
        let trailsight::ingest::InputSource::File(path) = &f.source else {
            panic!("not a file")
        };
        let (folder, name) = f.ingest_key.rsplit_once('/').unwrap();
        let parts: Vec<&str> = name.split('_').collect();
        let stamp = parts[3]; // YYYYMMDDTHHmmZ
        let head = format!("{}_{}_{}_{}", parts[0], parts[1], parts[2], &stamp[..9]);
        let period = stamp[9..11].parse::<u32>().unwrap() / hours;
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let entry = groups.entry((folder.to_owned(), head, period)).or_default();
        entry.0 = entry.0.clone().max(stamp[9..13].to_owned());
        entry
            .1
            .extend(doc["Records"].as_array().unwrap().iter().cloned());
    }
    for ((folder, head, _), (minute, records)) in groups {
        let dir = to.join(&folder);
        std::fs::create_dir_all(&dir).unwrap();
        let file =
            std::fs::File::create(dir.join(format!("{head}{minute}Z_regrouped.json.gz"))).unwrap();
        let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        gz.write_all(
            serde_json::json!({ "Records": records })
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        gz.finish().unwrap();
    }
    to.to_path_buf()
}

/// Sends `signal` (`-TERM`, `-INT`, `-KILL`...) to a child process with `kill`.
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Kills a child with SIGKILL and reaps it.
pub fn sigkill(child: &mut Child) {
    signal(child, "-KILL");
    let _ = child.wait();
}

/// The day (YYYY-MM-DD) of the first delivery of an archive in S3 layout, for `watch --since`.
pub fn first_day(archive: &Path) -> String {
    let files = trailsight::ingest::discover(&[archive.to_path_buf()]).files;
    let parts: Vec<&str> = files[0].ingest_key.split('/').collect();
    format!("{}-{}-{}", parts[4], parts[5], parts[6])
}
