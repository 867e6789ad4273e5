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
    use crate::source::stdin::{read_chunks, ChunkLimits};
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

/// Keys of every kind the store writes, for `store_values` to pick from (an id or a minute
/// follows a prefix; the fuzzer writes those bytes).
const STORE_KEYS: [&[u8]; 18] = [
    b"m/format",
    b"m/meta",
    b"m/seen",
    b"m/announced",
    b"m/outbox",
    b"m/profile",
    b"m/counts-from",
    b"m/checkpoint",
    b"s",
    b"r",
    b"d",
    b"h",
    b"c",
    b"p",
    b"q",
    b"f",
    b"i",
    b"e",
];

/// Store values, as `store check` and a resuming run decode them (a damaged store is input
/// too). The bytes are entries of `[flags][key length][value length, 2 bytes LE][key][value]`:
/// flag bit 0 seals the value with its correct checksum (reaching the decoders behind it), bit 1
/// puts a known key kind (bits 2.. pick it) before the key bytes. Nothing may panic, and an
/// eventID filter that decodes must keep what is inserted into it.
pub fn store_values(data: &[u8]) {
    use std::cell::RefCell;
    thread_local! {
        static STORE: RefCell<Option<(tempfile::TempDir, crate::store::Store)>> =
            const { RefCell::new(None) };
    }
    let mut entries = Vec::new();
    let mut rest = data;
    while let [flags, klen, l0, l1, tail @ ..] = rest {
        let (klen, vlen) = (
            usize::from(*klen),
            usize::from(u16::from_le_bytes([*l0, *l1])),
        );
        let Some((key, tail)) = tail.split_at_checked(klen.min(tail.len())) else {
            break;
        };
        let (value, tail) = tail.split_at(vlen.min(tail.len()));
        let mut k = Vec::new();
        if flags & 2 != 0 {
            k.extend_from_slice(STORE_KEYS[usize::from(flags >> 2) % STORE_KEYS.len()]);
        }
        k.extend_from_slice(key);
        entries.push((k, value.to_vec(), flags & 1 != 0));
        rest = tail;
    }
    STORE.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (_, store) = cell.get_or_insert_with(|| {
            let dir = tempfile::tempdir().expect("a temporary folder");
            let store = crate::store::Store::open(&dir.path().join("store")).expect("a new store");
            (dir, store)
        });
        let report = crate::store::check::check_entries(
            store,
            entries
                .iter()
                .map(|(k, v, s)| (k.as_slice(), v.as_slice(), *s)),
        );
        let _ = report.to_string();
    });
    for (k, v, sealed) in &entries {
        if *sealed && k.first() == Some(&b'e') {
            if let Ok(mut filter) = postcard::from_bytes::<crate::aggregate::seen::DayFilter>(v) {
                let before = filter.len();
                for id in [0, 1, u64::MAX, 0x9e37_79b9_7f4a_7c15] {
                    filter.insert(id);
                    assert!(filter.contains(id), "an inserted id is found");
                }
                assert!(filter.len() >= before);
            }
        }
    }
}

/// Appends one `store_values` entry, flagged to be sealed; false (nothing appended) when the key
/// or payload is longer than an entry holds.
fn sealed_entry(seed: &mut Vec<u8>, key: &[u8], payload: &[u8]) -> bool {
    let (Ok(klen), Ok(vlen)) = (u8::try_from(key.len()), u16::try_from(payload.len())) else {
        return false;
    };
    seed.extend_from_slice(&[1, klen]);
    seed.extend_from_slice(&vlen.to_le_bytes());
    seed.extend_from_slice(key);
    seed.extend_from_slice(payload);
    true
}

/// Seeds for `store_values` from a real store (closed, not in use): one input per key kind,
/// each entry's payload without its checksum and flagged to be sealed again.
#[doc(hidden)]
pub fn store_values_seeds(store: &Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    let db = sled::Config::new()
        .path(store)
        .open()
        .map_err(|e| format!("{}: {e}", store.display()))?;
    let mut seeds: std::collections::BTreeMap<String, (usize, Vec<u8>)> = Default::default();
    for item in db.iter() {
        let (k, v) = item.map_err(|e| e.to_string())?;
        let kind = match k.first() {
            Some(b'm') => String::from_utf8_lossy(&k).replace('/', "-"),
            Some(&b) => char::from(b).to_string(),
            None => continue,
        };
        let payload = v.get(4..).unwrap_or_default();
        let (entries, seed) = seeds.entry(kind).or_default();
        if *entries >= 3 {
            continue;
        }
        if sealed_entry(seed, &k, payload) {
            *entries += 1;
        }
    }
    // A real day's filter and dedup window are larger than an entry holds: small ones instead.
    let mut filter = crate::aggregate::seen::DayFilter::new(1e-6);
    for id in [3, 5, 7] {
        filter.insert(id);
    }
    let window: std::collections::BTreeMap<i64, Vec<u64>> = [(29_000_000, vec![3, 5])].into();
    for (kind, key, payload) in [
        (
            "e",
            [b"e".as_slice(), &20_000i64.to_be_bytes()].concat(),
            postcard::to_allocvec(&filter),
        ),
        ("m-seen", b"m/seen".to_vec(), postcard::to_allocvec(&window)),
    ] {
        let payload = payload.map_err(|e| e.to_string())?;
        let mut seed = Vec::new();
        if !sealed_entry(&mut seed, &key, &payload) {
            return Err(format!("{kind}: seed too large"));
        }
        seeds.insert(kind.to_owned(), (1, seed));
    }
    Ok(seeds.into_iter().map(|(k, (_, s))| (k, s)).collect())
}

/// A target's check.
pub type Check = fn(&[u8]);

/// Every target by name, for the corpus replay.
pub const TARGETS: [(&str, Check); 7] = [
    ("log_file", log_file),
    ("scanner_against_serde", scanner_against_serde),
    ("profile_toml", profile_toml),
    ("labels_json", labels_json),
    ("insights_file", insights_file),
    ("stdin_chunks", stdin_chunks),
    ("store_values", store_values),
];
