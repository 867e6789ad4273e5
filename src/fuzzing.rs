//! The checks behind the fuzz targets of `fuzz/` (cargo-fuzz, libFuzzer, nightly), kept in the
//! library so that `tests/fuzz_corpus.rs` replays every target's corpus on stable: each
//! function takes outside bytes, must not panic, hang or allocate without bound, and asserts
//! what must hold of its result.

use std::path::Path;

use crate::ingest::parse::{parse, parse_reference, ParseContext};
use crate::ingest::read::{read_input, ReadLimits};

/// Largest decompressed input a target reads (libFuzzer's inputs are small; a gzip bomb must
/// be refused at this limit, not inflated).
const LIMIT: u64 = 4 << 20;

fn context() -> ParseContext<'static> {
    ParseContext::new("<fuzz>", None)
}

/// A log file's bytes (gzip or not) through the reader and the parser, as `score` reads them:
/// every record kept has an event time in range, and the counts add up.
pub fn log_file(data: &[u8]) {
    let limits = ReadLimits {
        max_decompressed_bytes: LIMIT,
    };
    let mut buf = Vec::new();
    if read_input(data, Some(data.len() as u64), "<fuzz>", &limits, &mut buf).is_err() {
        return;
    }
    assert!(buf.len() as u64 <= LIMIT, "read past the limit");
    let ctx = context();
    let mut kept = 0u64;
    let report = parse(&buf, &ctx, &mut |r| {
        assert!(r.minute >= ctx.min_minute && r.minute <= ctx.max_minute);
        kept += 1;
    });
    assert_eq!(report.records_ok, kept);
    assert!(report.records_ok <= report.records_seen);
}

/// The fast scanner against serde_json on the same bytes: same records, same report.
pub fn scanner_against_serde(data: &[u8]) {
    let ctx = context();
    let mut fast = Vec::new();
    let fast_report = parse(data, &ctx, &mut |r| fast.push(r.into_owned()));
    let mut reference = Vec::new();
    let reference_report = parse_reference(data, &ctx, &mut |r| reference.push(r.into_owned()));
    assert_eq!(fast, reference, "records differ");
    assert_eq!(fast_report, reference_report, "reports differ");
}

/// A detector profile's TOML: parsed or refused with an error, and a profile that parses is
/// valid and survives a round trip through TOML.
pub fn profile_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(profile) = crate::detect::Profile::from_toml(text, "<fuzz>") else {
        return;
    };
    let again = toml::to_string(&profile).expect("a parsed profile serialises");
    let back = crate::detect::Profile::from_toml(&again, "<fuzz round trip>")
        .expect("a serialised profile parses");
    assert_eq!(profile, back);
}

/// A labels file (`eval --labels`): parsed or refused with an error.
pub fn labels_json(data: &[u8]) {
    let _ = crate::eval::parse_labels(data, Path::new("<fuzz>"));
}

/// An Insights events file (`--baseline-from`, `verify`-adjacent readers): parsed or refused,
/// gzip bombs included.
pub fn insights_file(data: &[u8]) {
    if let Ok(records) = crate::insight::read_insights(data) {
        for r in records {
            let _ = serde_json::to_string(&r).expect("a record read serialises");
        }
    }
}

/// Standard input cut into chunks (`watch -`): every kept line fits the limit and ends its
/// chunk's content with a newline, chunks hold at most their line count, line numbers only grow,
/// and no more lines are kept or skipped than were read.
pub fn stdin_chunks(data: &[u8]) {
    use crate::watch::stdin::{read_chunks, ChunkLimits};
    let limits = ChunkLimits {
        max_line: 64,
        max_lines: 3,
        max_wait: std::time::Duration::from_secs(3600),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
    let input = std::io::Cursor::new(data.to_vec());
    let (chunks, read) = runtime.block_on(async move {
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let reader = tokio::spawn(read_chunks(input, limits, tx));
        let mut chunks = Vec::new();
        while let Some(c) = rx.recv().await {
            chunks.push(c);
        }
        (chunks, reader.await)
    });
    let read = read
        .expect("the reader task does not panic")
        .expect("reading memory does not fail");
    let mut last_first = 0;
    let mut accounted = 0u64;
    for c in &chunks {
        assert!(c.first_line > last_first || c.first_line == 1, "{chunks:?}");
        last_first = c.first_line;
        assert!(c.lines <= limits.max_lines, "{c:?}");
        assert!(c.content.is_empty() || c.content.ends_with(b"\n"), "{c:?}");
        for line in c.content.split_inclusive(|&b| b == b'\n') {
            assert!(line.len() <= limits.max_line + 1, "{c:?}");
        }
        for &(_, bytes) in &c.oversized {
            assert!(bytes > limits.max_line as u64, "{c:?}");
        }
        accounted += c.lines + c.oversized.len() as u64;
    }
    assert!(
        accounted <= read,
        "{accounted} lines kept or skipped of {read} read"
    );
}

/// A target's check.
pub type Check = fn(&[u8]);

/// Every target by name, for the corpus replay.
pub const TARGETS: [(&str, Check); 6] = [
    ("log_file", log_file),
    ("scanner_against_serde", scanner_against_serde),
    ("profile_toml", profile_toml),
    ("labels_json", labels_json),
    ("insights_file", insights_file),
    ("stdin_chunks", stdin_chunks),
];
