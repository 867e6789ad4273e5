//! Reads one input (a file or stdin) into a caller-owned buffer, inflating gzip when the content
//! starts with gzip's magic bytes. The output is capped: neither a gzip bomb nor a huge plain file
//! can make it allocate past the limit, and a damaged gzip keeps what was inflated before the damage.

use std::fs::File;
use std::io::{self, Read};

use crate::ingest::discover::{InputFile, InputSource};
use crate::ingest::IngestError;

/// Caps on what [`load`] will hold in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest content accepted, after decompression, in bytes.
    pub max_decompressed_bytes: u64,
}

impl Default for ReadLimits {
    /// 1 GiB: far above any CloudTrail delivery file, small enough to refuse a gzip bomb.
    fn default() -> Self {
        ReadLimits {
            max_decompressed_bytes: 1 << 30,
        }
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The first growth step of the buffer; later steps double it.
const FIRST_CHUNK: usize = 64 * 1024;

/// Reads the whole input into `buf` (cleared first, its capacity reused), inflating gzip (detected
/// by its magic bytes, not by name; multi-member streams are read to their end).
///
/// On [`IngestError::Gzip`] `buf` holds the bytes inflated before the damage: parse them, and
/// report the file as damaged. On [`IngestError::TooLarge`] `buf` is left empty; its capacity never
/// exceeds the limit plus one byte.
pub fn load(file: &InputFile, limits: &ReadLimits, buf: &mut Vec<u8>) -> Result<(), IngestError> {
    buf.clear();
    match &file.source {
        InputSource::File(path) => {
            let io_error = |source| IngestError::Io {
                path: file.display.clone(),
                source,
            };
            let handle = File::open(path).map_err(io_error)?;
            let size_hint = handle.metadata().map(|m| m.len()).ok();
            read_input(handle, size_hint, &file.display, limits, buf)
        }
        InputSource::Stdin => read_input(io::stdin().lock(), None, &file.display, limits, buf),
    }
}

/// Reads any byte stream the way [`load`] reads a file (gzip detection, limit, partial recovery).
pub fn read_input<R: Read>(
    mut input: R,
    size_hint: Option<u64>,
    display: &str,
    limits: &ReadLimits,
    buf: &mut Vec<u8>,
) -> Result<(), IngestError> {
    buf.clear();
    let limit = limits.max_decompressed_bytes;
    let io_error = |source| IngestError::Io {
        path: display.to_owned(),
        source,
    };
    let mut head = [0u8; 2];
    let head_len = read_head(&mut input, &mut head).map_err(io_error)?;
    let head = head.get(..head_len).unwrap_or_default();
    let too_large = || IngestError::TooLarge {
        path: display.to_owned(),
        limit,
    };

    if head == GZIP_MAGIC {
        // The compressed bytes are held whole (a bomb is small by definition; a real file
        // costs its compressed size beside its content), so that the output can be measured
        // before any of it is kept.
        let cap = compressed_cap(limit);
        let first = size_hint.map_or(FIRST_CHUNK as u64, |s| s.min(cap));
        let mut compressed = Vec::new();
        compressed
            .try_reserve_exact(usize::try_from(first).unwrap_or(0).saturating_add(1))
            .map_err(|e| io_error(io::Error::new(io::ErrorKind::OutOfMemory, e)))?;
        compressed.extend_from_slice(head);
        (&mut input)
            .take(cap.saturating_add(1).saturating_sub(head.len() as u64))
            .read_to_end(&mut compressed)
            .map_err(io_error)?;
        if compressed.len() as u64 > cap {
            return Err(too_large());
        }
        inflate_capped(&compressed, display, limit, buf)
    } else {
        if size_hint.is_some_and(|size| size > limit) {
            return Err(too_large());
        }
        match read_capped(&mut head.chain(input), limit, size_hint, buf) {
            Ok(Capped::Complete) => Ok(()),
            Ok(Capped::OverLimit) => {
                buf.clear();
                Err(too_large())
            }
            Err(source) => Err(io_error(source)),
        }
    }
}

/// The largest gzip input held for inflating: a compressed stream much larger than the limit
/// cannot inflate to less than it (deflate expands incompressible data by well under 1 %).
fn compressed_cap(limit: u64) -> u64 {
    limit.saturating_add(limit / 8).saturating_add(1 << 16)
}

/// Largest output inflated in one go into a buffer sized by the gzip trailer. The trailer is only
/// a hint (a file may lie, or hold several members), so a wrong one costs at most this much
/// before the file is measured without being held.
const TRUSTED_HINT_MAX: u64 = 64 * 1024 * 1024;

/// Deflate's largest possible ratio is about 1032:1: a trailer claiming more is a lie.
const MAX_DEFLATE_RATIO: u64 = 1032;

/// The inflated size a gzip file announces in its trailer (ISIZE, the last member's size modulo
/// 2^32), when it is plausible for the compressed size and small enough to be tried at once.
fn gzip_trailer_size(compressed: &[u8]) -> Option<u64> {
    let start = compressed.len().checked_sub(4)?;
    let trailer: [u8; 4] = compressed.get(start..)?.try_into().ok()?;
    let size = u64::from(u32::from_le_bytes(trailer));
    let plausible = (compressed.len() as u64).saturating_mul(MAX_DEFLATE_RATIO);
    (size <= TRUSTED_HINT_MAX && size <= plausible).then_some(size)
}

/// Inflates `compressed` into `buf` without ever holding more than `limit` bytes of output, and
/// without growing `buf` past what the stream really inflates to:
///
/// 1. a delivery file (one member whose trailer gives its size) is inflated in one call into a
///    buffer of exactly that size (libdeflate, the fast path);
/// 2. anything else (several members, damage, a trailer that lies, a large file) is first
///    inflated into a small scratch buffer only to measure it: a bomb is refused there, having
///    cost 64 KB. A stream within the limit is then inflated again into a buffer of its
///    measured size; a damaged one keeps the bytes before the damage.
fn inflate_capped(
    compressed: &[u8],
    display: &str,
    limit: u64,
    buf: &mut Vec<u8>,
) -> Result<(), IngestError> {
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    if let Some(hint) = gzip_trailer_size(compressed).filter(|&h| h <= limit) {
        let hint = usize::try_from(hint).unwrap_or(cap);
        // A multi-member file may need a little more than its last member's size.
        let fast_cap = hint.max(FIRST_CHUNK).min(cap);
        if super::inflate::gunzip(compressed, hint, fast_cap, buf) {
            return Ok(());
        }
        buf.clear();
        if buf.capacity() > fast_cap.saturating_mul(2) {
            // Do not keep a failed attempt's buffer through the measuring pass.
            *buf = Vec::new();
        }
    }
    let (inflated, outcome) = measure_gzip(compressed, limit);
    let outcome = match outcome {
        Ok(Capped::OverLimit) => Ok(Capped::OverLimit),
        other => {
            let size = usize::try_from(inflated).unwrap_or(usize::MAX);
            buf.clear();
            if let Err(e) = buf.try_reserve_exact(size) {
                Err(io::Error::new(io::ErrorKind::OutOfMemory, e))
            } else {
                let mut decoder = flate2::bufread::MultiGzDecoder::new(compressed);
                // The same bytes again, up to where the measuring pass ended (a damaged stream
                // fails at the same place: its error is the measuring pass's).
                match (&mut decoder).take(inflated).read_to_end(buf) {
                    Ok(_) => other,
                    Err(e) => Err(e),
                }
            }
        }
    };
    gzip_outcome(outcome, buf, display, limit)
}

/// Inflates `compressed` into a scratch buffer, counting: the output size (at most `limit + 1`)
/// and whether the stream ended cleanly, went over the limit, or broke.
fn measure_gzip(compressed: &[u8], limit: u64) -> (u64, io::Result<Capped>) {
    let mut decoder = flate2::bufread::MultiGzDecoder::new(compressed);
    let mut scratch = vec![0u8; FIRST_CHUNK];
    let mut total = 0u64;
    loop {
        match decoder.read(&mut scratch) {
            Ok(0) => return (total, Ok(Capped::Complete)),
            Ok(n) => {
                total += n as u64;
                if total > limit {
                    return (total, Ok(Capped::OverLimit));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (total, Err(e)),
        }
    }
}

/// Maps the outcome of inflating into `buf` the way [`read_input`] reports it.
fn gzip_outcome(
    outcome: io::Result<Capped>,
    buf: &mut Vec<u8>,
    display: &str,
    limit: u64,
) -> Result<(), IngestError> {
    match outcome {
        Ok(Capped::Complete) => Ok(()),
        Ok(Capped::OverLimit) => {
            buf.clear();
            Err(IngestError::TooLarge {
                path: display.to_owned(),
                limit,
            })
        }
        Err(source) => Err(IngestError::Gzip {
            path: display.to_owned(),
            recovered: buf.len() as u64,
            source,
        }),
    }
}

/// Fills `head` as far as the input allows; returns how many bytes were read.
fn read_head<R: Read>(input: &mut R, head: &mut [u8; 2]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < head.len() {
        let Some(rest) = head.get_mut(filled..) else {
            break;
        };
        match input.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

enum Capped {
    Complete,
    OverLimit,
}

/// Reads to the end into `buf`, growing it by doubling but never past `limit + 1` bytes, so that an
/// over-long input is detected without holding it. On an error `buf` keeps what was read.
fn read_capped<R: Read>(
    input: &mut R,
    limit: u64,
    size_hint: Option<u64>,
    buf: &mut Vec<u8>,
) -> io::Result<Capped> {
    let hard_cap = usize::try_from(limit.saturating_add(1)).unwrap_or(usize::MAX);
    // `buf` is zero-filled ahead of the reads (no unsafe); `filled` is the real content length.
    // Growing by doubling keeps the zero-filling linear in the output size.
    let mut filled = 0usize;
    let first_len = size_hint
        .and_then(|size| usize::try_from(size.saturating_add(1)).ok())
        .unwrap_or(FIRST_CHUNK)
        .clamp(1, hard_cap);
    let outcome = loop {
        if filled == buf.len() {
            if filled >= hard_cap {
                break Ok(Capped::OverLimit);
            }
            let new_len = if filled == 0 {
                first_len
            } else {
                filled.saturating_mul(2).max(FIRST_CHUNK).min(hard_cap)
            };
            if let Err(e) = buf.try_reserve_exact(new_len - buf.len()) {
                break Err(io::Error::new(io::ErrorKind::OutOfMemory, e));
            }
            buf.resize(new_len, 0);
        }
        let Some(spare) = buf.get_mut(filled..) else {
            break Ok(Capped::OverLimit);
        };
        match input.read(spare) {
            Ok(0) => break Ok(Capped::Complete),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    buf.truncate(filled);
    if matches!(outcome, Ok(Capped::Complete)) && filled as u64 > limit {
        return Ok(Capped::OverLimit);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn read_bytes(bytes: &[u8], limit: u64, buf: &mut Vec<u8>) -> Result<(), IngestError> {
        let limits = ReadLimits {
            max_decompressed_bytes: limit,
        };
        read_input(bytes, Some(bytes.len() as u64), "test", &limits, buf)
    }

    #[test]
    fn plain_content_is_read_as_is() {
        let mut buf = b"old content".to_vec();
        read_bytes(b"{\"Records\":[]}", 1000, &mut buf).unwrap();
        assert_eq!(buf, b"{\"Records\":[]}");
        read_bytes(b"", 1000, &mut buf).unwrap();
        assert!(buf.is_empty());
        read_bytes(b"x", 1000, &mut buf).unwrap();
        assert_eq!(buf, b"x");
    }

    #[test]
    fn gzip_is_detected_by_magic_not_name() {
        let content = b"{\"Records\":[{\"a\":1}]}".repeat(1000);
        let mut buf = Vec::new();
        read_bytes(&gzip(&content), 1 << 20, &mut buf).unwrap();
        assert_eq!(buf, content);
    }

    #[test]
    fn multi_member_gzip_is_read_to_its_end() {
        let mut joined = gzip(b"first member\n");
        joined.extend(gzip(b"second member\n"));
        joined.extend(gzip(b"third member\n"));
        let mut buf = Vec::new();
        read_bytes(&joined, 1 << 20, &mut buf).unwrap();
        assert_eq!(buf, b"first member\nsecond member\nthird member\n");
    }

    #[test]
    fn gzip_bomb_is_refused_without_holding_it() {
        // 50 MB of zeros: one 1 MB member repeated (compressing 50 MB is slow in debug builds;
        // the decoder reads a multi-member stream as one).
        let member = gzip(&vec![0u8; 1 << 20]);
        let bomb = member.repeat(50);
        assert!(bomb.len() < 1 << 20, "the bomb itself is small");
        let mut buf = Vec::new();
        let limit = 1 << 20;
        let err = read_bytes(&bomb, limit, &mut buf).unwrap_err();
        assert!(
            matches!(err, IngestError::TooLarge { limit: l, .. } if l == limit),
            "{err}"
        );
        assert!(buf.is_empty());
        assert!(buf.capacity() as u64 <= limit + 1, "{}", buf.capacity());
    }

    #[test]
    fn refusing_a_bomb_under_the_default_limit_costs_little_memory() {
        // Regression: a bomb was inflated up to the 1 GiB limit before being refused (libdeflate
        // doubling its buffer, then the streaming decoder growing another one), so four reading
        // threads peaked at 4.2 GB. 1.1 GB of zeros from 1,100 members of 1 MiB, about 1 MB
        // compressed; the trailer honestly announces the last member's 1 MiB.
        let bomb = gzip(&vec![0u8; 1 << 20]).repeat(1100);
        let limits = ReadLimits::default();
        for size_hint in [Some(bomb.len() as u64), None] {
            let mut buf = Vec::new();
            let err = read_input(&bomb[..], size_hint, "bomb", &limits, &mut buf).unwrap_err();
            assert!(matches!(err, IngestError::TooLarge { .. }), "{err}");
            assert!(buf.is_empty());
            // The only buffer the reader grows for output is `buf`: refusing never grew it.
            assert!(buf.capacity() <= 2 << 20, "{} bytes held", buf.capacity());
        }
        // A trailer claiming a size no deflate stream of this length can reach is not trusted.
        let mut liar = gzip(&vec![0u8; 4 << 20]);
        let n = liar.len();
        liar[n - 4..].copy_from_slice(&(60u32 << 20).to_le_bytes());
        assert_eq!(gzip_trailer_size(&liar), None);
        let mut buf = Vec::new();
        let err = read_input(&liar[..], Some(n as u64), "liar", &limits, &mut buf).unwrap_err();
        assert!(matches!(err, IngestError::Gzip { recovered, .. } if recovered == 4 << 20));
        assert_eq!(buf.len(), 4 << 20);
        assert!(buf.capacity() < 5 << 20, "grown only to the real output");
    }

    #[test]
    fn limit_is_exact() {
        let content = vec![b'x'; 1000];
        let mut buf = Vec::new();
        read_bytes(&content, 1000, &mut buf).unwrap();
        assert_eq!(buf.len(), 1000);
        let err = read_bytes(&content, 999, &mut buf).unwrap_err();
        assert!(matches!(err, IngestError::TooLarge { .. }));
        // Without a size hint the plain reader must find out by reading.
        let limits = ReadLimits {
            max_decompressed_bytes: 999,
        };
        let mut fresh = Vec::new();
        let err = read_input(&content[..], None, "stdin", &limits, &mut fresh).unwrap_err();
        assert!(matches!(err, IngestError::TooLarge { .. }));
        assert!(fresh.capacity() <= 1000, "{}", fresh.capacity());
        read_bytes(&gzip(&content), 1000, &mut buf).unwrap();
        assert_eq!(buf, content);
        let err = read_bytes(&gzip(&content), 999, &mut buf).unwrap_err();
        assert!(matches!(err, IngestError::TooLarge { .. }));
    }

    #[test]
    fn truncated_gzip_keeps_the_prefix_and_says_so() {
        let content: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let compressed = gzip(&content);
        let cut = &compressed[..compressed.len() / 2];
        let mut buf = Vec::new();
        let err = read_bytes(cut, 1 << 30, &mut buf).unwrap_err();
        match &err {
            IngestError::Gzip { recovered, .. } => {
                assert_eq!(*recovered, buf.len() as u64);
                assert!(*recovered > 0);
            }
            other => panic!("expected a gzip error, got {other}"),
        }
        assert!(err.has_partial_content());
        assert!(buf.len() < content.len());
        assert_eq!(buf[..], content[..buf.len()], "the prefix is intact");
        assert!(err.to_string().contains("recovered"), "{err}");
    }

    #[test]
    fn corrupt_gzip_is_an_error_not_a_panic() {
        let mut compressed = gzip(&b"hello world ".repeat(10_000));
        let len = compressed.len();
        for b in &mut compressed[20..len - 10] {
            *b = 0xff;
        }
        let mut buf = Vec::new();
        let err = read_bytes(&compressed, 1 << 30, &mut buf).unwrap_err();
        assert!(matches!(err, IngestError::Gzip { .. }), "{err}");
        // Only the two magic bytes: a header that ends at once.
        let err = read_bytes(&GZIP_MAGIC, 1 << 30, &mut buf).unwrap_err();
        assert!(
            matches!(err, IngestError::Gzip { recovered: 0, .. }),
            "{err}"
        );
        assert!(!err.has_partial_content());
    }

    #[test]
    fn whole_file_and_streamed_gzip_read_the_same() {
        let content: Vec<u8> = (0..100_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let one = gzip(&content);
        let mut two = gzip(b"first member\n");
        two.extend(gzip(&content));
        let mut lying = gzip(&content);
        let n = lying.len();
        lying[n - 4..].copy_from_slice(&7u32.to_le_bytes());
        let bomb = gzip(&vec![0u8; 1 << 20]).repeat(5);
        let inputs = [
            one.clone(),
            one[..one.len() / 2].to_vec(),
            one[..one.len() - 3].to_vec(),
            two,
            lying,
            bomb,
            GZIP_MAGIC.to_vec(),
        ];
        let limits = ReadLimits {
            max_decompressed_bytes: 2 << 20,
        };
        let summary = |r: Result<(), IngestError>| match r {
            Ok(()) => "ok".to_string(),
            Err(IngestError::Gzip { recovered, .. }) => format!("gzip {recovered}"),
            Err(IngestError::TooLarge { .. }) => "too large".to_string(),
            Err(e) => format!("other {e}"),
        };
        let mut outcomes = Vec::new();
        for input in &inputs {
            let mut whole = Vec::new();
            let mut streamed = Vec::new();
            let a = read_input(
                &input[..],
                Some(input.len() as u64),
                "t",
                &limits,
                &mut whole,
            );
            let b = read_input(&input[..], None, "t", &limits, &mut streamed);
            let (a, b) = (summary(a), summary(b));
            assert_eq!(a, b);
            assert_eq!(whole, streamed);
            outcomes.push(a);
        }
        // The inputs cover every outcome, and the lying trailer does not cut the content.
        assert_eq!(outcomes[0], "ok");
        assert!(outcomes[1].starts_with("gzip ") && outcomes[2].starts_with("gzip "));
        assert_eq!(outcomes[3], "ok");
        assert_eq!(
            outcomes[4],
            format!("gzip {}", content.len()),
            "a bad trailer: all content kept, the file reported damaged"
        );
        assert_eq!(outcomes[5], "too large");
        assert_eq!(outcomes[6], "gzip 0");
    }

    #[test]
    fn load_reads_files_and_reports_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json.gz");
        std::fs::write(&path, gzip(b"{\"Records\":[]}")).unwrap();
        let file = InputFile {
            source: InputSource::File(path.clone()),
            display: path.display().to_string(),
            ingest_key: path.display().to_string(),
            delivery_minute: None,
            size: 0,
            reread: false,
        };
        let mut buf = Vec::new();
        load(&file, &ReadLimits::default(), &mut buf).unwrap();
        assert_eq!(buf, b"{\"Records\":[]}");

        let missing = InputFile {
            source: InputSource::File(dir.path().join("nope.json")),
            display: "nope.json".into(),
            ingest_key: "nope.json".into(),
            delivery_minute: None,
            size: 0,
            reread: false,
        };
        let err = load(&missing, &ReadLimits::default(), &mut buf).unwrap_err();
        assert!(matches!(err, IngestError::Io { ref path, .. } if path == "nope.json"));

        // A plain file above the limit is refused from its size, before reading it.
        std::fs::write(&path, vec![b' '; 5000]).unwrap();
        let limits = ReadLimits {
            max_decompressed_bytes: 4096,
        };
        let err = load(&file, &limits, &mut buf).unwrap_err();
        assert!(matches!(err, IngestError::TooLarge { limit: 4096, .. }));
    }
}
