//! Webhook sinks against a real HTTP server on loopback: what reaches the endpoint equals what
//! `--out` holds, each record once, with its Idempotency-Key and the configured header; 500 and
//! 429 are retried, a hanging endpoint times out and leaves the records in the outbox for the
//! next run (which sends each exactly once), a 400 is reported and not retried, and the URL's
//! secret path never appears in what trailsight prints.

mod common;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{generated, json_lines};

/// How the server answers one request.
#[derive(Clone, Copy, Debug)]
enum Reply {
    Status(u16),
    /// 429 with `Retry-After: 0`.
    TooMany,
    /// Reads the request and never answers (until the client gives up).
    Hang,
}

/// A request as the server read it, and how it was answered.
#[derive(Clone, Debug)]
struct Request {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    status: Option<u16>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    default: Arc<Mutex<Reply>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let default = Arc::new(Mutex::new(Reply::Status(200)));
        let (r, s, d) = (requests.clone(), script.clone(), default.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, s, d) = (r.clone(), s.clone(), d.clone());
                std::thread::spawn(move || serve(stream, &r, &s, &d));
            }
        });
        Server {
            port,
            requests,
            script,
            default,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/services/T0/B0/SECRETPATH", self.port)
    }

    fn answered(&self, status: u16) -> Vec<Request> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.status == Some(status))
            .cloned()
            .collect()
    }
}

fn serve(
    stream: TcpStream,
    requests: &Mutex<Vec<Request>>,
    script: &Mutex<VecDeque<Reply>>,
    default: &Mutex<Reply>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_string(), v.trim().to_string()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let reply = script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(*default.lock().unwrap());
        let status = match reply {
            Reply::Status(code) => Some(code),
            Reply::TooMany => Some(429),
            Reply::Hang => None,
        };
        requests.lock().unwrap().push(Request {
            headers,
            body,
            status,
        });
        let mut out = stream.try_clone().unwrap();
        match reply {
            Reply::Hang => {
                std::thread::sleep(Duration::from_secs(30));
                return;
            }
            Reply::TooMany => {
                let _ = out.write_all(
                    b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n",
                );
            }
            Reply::Status(code) => {
                let _ = write!(out, "HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n");
            }
        }
    }
}

fn score(archive: &Path, store: &Path, out: &Path, to: &str, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_trailsight"));
    c.args([
        "score",
        archive.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--append",
        "--no-progress",
        "--to",
        to,
    ]);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn said(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn every_record_reaches_the_endpoint_once_through_retries_with_its_key_and_header() {
    let archive = generated(7, 0.5, true);
    let server = Server::start();
    // The first request fails with a 500, the second is throttled: both are retried.
    server
        .script
        .lock()
        .unwrap()
        .extend([Reply::Status(500), Reply::TooMany]);
    let dir = tempfile::tempdir().unwrap();
    let (store, out) = (dir.path().join("db"), dir.path().join("out.jsonl"));
    let url = server.url();
    let o = score(
        &archive,
        &store,
        &out,
        "webhook:env:HOOK_URL",
        &[
            ("HOOK_URL", &url),
            ("TRAILSIGHT_WEBHOOK_HEADER", "Authorization: Bearer t0ken"),
        ],
    );
    assert!(o.status.success(), "{}", said(&o));
    let written = json_lines(&std::fs::read(&out).unwrap());
    assert!(written.len() >= 2);
    let delivered = server.answered(200);
    let bodies: Vec<serde_json::Value> = delivered
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(bodies, written, "the endpoint got exactly what --out holds");
    for (r, record) in delivered.iter().zip(&written) {
        assert_eq!(r.header("Idempotency-Key"), record["eventID"].as_str());
        assert_eq!(r.header("Authorization"), Some("Bearer t0ken"));
        assert_eq!(r.header("Content-Type"), Some("application/json"));
    }
    // The first record took three attempts.
    let all = server.requests.lock().unwrap().clone();
    assert_eq!(all.len(), written.len() + 2);
    assert_eq!(all[0].body, all[2].body);
    // A second run has nothing new and sends nothing again.
    let o = score(
        &archive,
        &store,
        &out,
        "webhook:env:HOOK_URL",
        &[("HOOK_URL", &url)],
    );
    assert!(o.status.success(), "{}", said(&o));
    assert_eq!(server.requests.lock().unwrap().len(), all.len());
}

#[test]
fn a_hanging_endpoint_leaves_the_records_in_the_outbox_for_the_next_run() {
    let archive = generated(7, 0.5, true);
    let server = Server::start();
    *server.default.lock().unwrap() = Reply::Hang;
    let dir = tempfile::tempdir().unwrap();
    let (store, out) = (dir.path().join("db"), dir.path().join("out.jsonl"));
    let url_file = dir.path().join("url");
    std::fs::write(&url_file, format!("{}\n", server.url())).unwrap();
    let to = format!("slack:file:{}", url_file.display());
    let quick = [
        ("TRAILSIGHT_WEBHOOK_TIMEOUT_SECS", "1"),
        ("TRAILSIGHT_WEBHOOK_ATTEMPTS", "2"),
    ];
    let o = score(&archive, &store, &out, &to, &quick);
    assert!(!o.status.success());
    let text = said(&o);
    assert!(
        text.contains("did not take the record after 2 attempts"),
        "{text}"
    );
    assert!(text.contains("slack http://127.0.0.1"), "{text}");
    assert!(
        !text.contains("SECRETPATH"),
        "the URL's path is a secret: {text}"
    );
    assert!(server.answered(200).is_empty());

    // The endpoint is back: the next run delivers every committed record, once.
    *server.default.lock().unwrap() = Reply::Status(200);
    let o = score(&archive, &store, &out, &to, &quick);
    assert!(o.status.success(), "{}", said(&o));
    let written = json_lines(&std::fs::read(&out).unwrap());
    let delivered = server.answered(200);
    assert_eq!(delivered.len(), written.len());
    for (r, record) in delivered.iter().zip(&written) {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let text = body["text"].as_str().unwrap();
        let api = format!(
            "`{}:{}`",
            record["insightDetails"]["eventSource"].as_str().unwrap(),
            record["insightDetails"]["eventName"].as_str().unwrap()
        );
        assert!(text.contains(&api), "{text}");
        assert!(
            text.contains(record["sharedEventID"].as_str().unwrap()),
            "{text}"
        );
        assert_eq!(r.header("Idempotency-Key"), record["eventID"].as_str());
    }
}

#[test]
fn a_refused_record_is_reported_and_not_retried() {
    let archive = generated(7, 0.5, true);
    let server = Server::start();
    *server.default.lock().unwrap() = Reply::Status(400);
    let dir = tempfile::tempdir().unwrap();
    let (store, out) = (dir.path().join("db"), dir.path().join("out.jsonl"));
    let to = format!("teams:{}", server.url());
    let o = score(&archive, &store, &out, &to, &[]);
    let text = said(&o);
    let written = json_lines(&std::fs::read(&out).unwrap());
    assert_eq!(
        server.requests.lock().unwrap().len(),
        written.len(),
        "one request per record"
    );
    assert!(text.contains("refused the record"), "{text}");
    assert!(text.contains("HTTP 400"), "{text}");
    assert!(!text.contains("SECRETPATH"), "{text}");
    let first: serde_json::Value =
        serde_json::from_slice(&server.requests.lock().unwrap()[0].body).unwrap();
    assert_eq!(first["type"], "message");
    assert_eq!(
        first["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
}

#[test]
fn watch_killed_in_the_middle_of_a_delivery_sends_each_record_once_after_its_restart() {
    let archive = generated(7, 0.5, true);
    let first_day = common::first_day(&archive);
    let server = Server::start();
    // Two records are taken; the third delivery hangs, and watch is killed in the middle of it.
    server
        .script
        .lock()
        .unwrap()
        .extend([Reply::Status(200), Reply::Status(200), Reply::Hang]);
    let dir = tempfile::tempdir().unwrap();
    let (store, out) = (dir.path().join("db"), dir.path().join("out.jsonl"));
    let watch = |once: bool| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_trailsight"));
        c.args(["watch", archive.to_str().unwrap(), "--store"])
            .arg(&store)
            .arg("--out")
            .arg(&out)
            .args([
                "--since",
                &first_day,
                "--wait-for-final",
                "--log-level",
                "warn",
            ])
            .args(["--to", "webhook:env:HOOK_URL"])
            // The archive was just written: every file is taken at the first look (a file
            // taken seconds after newer ones would be late, its calls history only).
            .args(["--settle", "0"])
            .env("HOOK_URL", server.url())
            .env("TRAILSIGHT_WEBHOOK_TIMEOUT_SECS", "600");
        if once {
            c.arg("--once");
        }
        c
    };
    let mut child = watch(false)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while server.requests.lock().unwrap().len() < 3 {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("watch exited early: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "watch never delivered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    common::sigkill(&mut child);

    let o = watch(true).output().unwrap();
    assert!(o.status.success(), "{}", said(&o));
    let written = json_lines(&std::fs::read(&out).unwrap());
    assert!(written.len() >= 4);
    // Every record was answered 200 exactly once, and they are what --out holds.
    let mut taken: Vec<serde_json::Value> = server
        .answered(200)
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let id = |v: &serde_json::Value| v["eventID"].as_str().unwrap().to_owned();
    taken.sort_by_key(id);
    let mut expected = written.clone();
    expected.sort_by_key(id);
    assert_eq!(taken, expected);
    // The delivery cut off by the kill was sent again after the restart.
    let all = server.requests.lock().unwrap().clone();
    assert_eq!(all[2].status, None);
    assert_eq!(all.len(), written.len() + 1);
}
