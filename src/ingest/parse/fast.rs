//! A hand-written scanner for the shape nearly every file has, `{"Records":[{...},...]}`: it reads
//! the needed fields and skips the others byte by byte, sixteen at a time inside strings (SSE2 on
//! x86_64, eight with plain integer arithmetic elsewhere), with none of serde's per-token
//! machinery. It accepts only what serde_json would accept the same
//! way; on anything else (an escape in a needed field, a wrong type, broken JSON, a second
//! document...) it gives up ([`Bail`]) and the caller re-reads the buffer with the serde parser,
//! which then reports exactly what it always did.

use std::borrow::Cow;

use super::{Key, Lenient, RecordFields, Sink, UserIdentity};

/// The scanner met something it leaves to the serde parser. The records delivered before it are
/// exactly those the serde parser delivers first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bail;

type Scanned<T> = Result<T, Bail>;

/// A mask of the bytes of `chunk` that end a fast string scan: `"`, `\` or a control character
/// (< 0x20). Bit `i` stands for byte `i`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(unsafe_code)]
fn string_stops(chunk: &[u8; 16]) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of every x86_64 target, so its intrinsics are always available; the
    // load reads `chunk`, 16 readable bytes, and an unaligned load has no alignment requirement.
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32 & 0xffff
    }
}

/// The same mask with plain integer arithmetic, eight bytes at a time: the portable path, and
/// the reference the SIMD path is tested against.
#[cfg_attr(all(target_arch = "x86_64", not(test)), allow(dead_code))]
fn string_stops_swar(chunk: &[u8; 16]) -> u32 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The classic "has zero byte" trick gives exact bits only up to the first true one, so the
    // high bits are then checked byte by byte where the trick may have been wrong.
    fn has_zero(x: u64) -> u64 {
        x.wrapping_sub(ONES) & !x & HIGH
    }
    let mut mask = 0u32;
    for (half, bytes) in chunk.chunks_exact(8).enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(bytes);
        let v = u64::from_le_bytes(word);
        let maybe = has_zero(v ^ (ONES * u64::from(b'"')))
            | has_zero(v ^ (ONES * u64::from(b'\\')))
            | (v.wrapping_sub(ONES * 0x20) & !v & HIGH);
        if maybe != 0 {
            for (i, &b) in bytes.iter().enumerate() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    mask |= 1 << (8 * half + i);
                }
            }
        }
    }
    mask
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn string_stops(chunk: &[u8; 16]) -> u32 {
    string_stops_swar(chunk)
}

/// Reads `{"Records":[...]}` (whitespace allowed anywhere JSON allows it) followed by nothing but
/// whitespace, delivering each record to `sink` as soon as it is read.
pub(super) fn records_object(body: &[u8], sink: &mut Sink<'_>) -> Scanned<()> {
    let mut s = Scanner {
        buf: body,
        // One check of the whole buffer instead of one per needed string and key; a buffer with
        // invalid UTF-8 in a skipped string (which serde accepts) is checked string by string.
        text: simdutf8::basic::from_utf8(body).ok(),
        pos: 0,
        stack: Vec::new(),
    };
    s.expect(b'{')?;
    s.expect(b'"')?;
    if s.key()? != b"Records" {
        return Err(Bail);
    }
    s.expect(b'[')?;
    sink.shape.get_or_insert(super::Format::RecordsObject);
    if s.peek()? == b']' {
        s.pos += 1;
    } else {
        loop {
            s.expect(b'{')?;
            let fields = s.record()?;
            sink.deliver(fields);
            match s.peek()? {
                b',' => s.pos += 1,
                b']' => {
                    s.pos += 1;
                    break;
                }
                _ => return Err(Bail),
            }
        }
    }
    s.expect(b'}')?;
    if s.buf
        .get(s.pos..)
        .unwrap_or_default()
        .iter()
        .all(|b| super::is_json_whitespace(*b))
    {
        Ok(())
    } else {
        Err(Bail)
    }
}

struct Scanner<'a> {
    buf: &'a [u8],
    /// `buf` as text, when it is all valid UTF-8.
    text: Option<&'a str>,
    pos: usize,
    /// Open containers of a skipped value (`{` or `[`), reused between values.
    stack: Vec<u8>,
}

impl<'a> Scanner<'a> {
    /// The next byte that is not whitespace (not consumed).
    #[inline(always)]
    fn peek(&mut self) -> Scanned<u8> {
        loop {
            match self.buf.get(self.pos) {
                Some(b' ' | b'\n' | b'\r' | b'\t') => self.pos += 1,
                Some(&b) => return Ok(b),
                None => return Err(Bail),
            }
        }
    }

    /// Consumes `byte` after optional whitespace.
    #[inline(always)]
    fn expect(&mut self, byte: u8) -> Scanned<()> {
        if self.peek()? == byte {
            self.pos += 1;
            Ok(())
        } else {
            Err(Bail)
        }
    }

    /// Moves past the body of a string whose opening quote was consumed, validating escapes as
    /// serde_json does when it skips a string (no UTF-8 check there). Returns the body's range
    /// and whether it holds an escape.
    #[inline(always)]
    fn string(&mut self) -> Scanned<(usize, usize, bool)> {
        let start = self.pos;
        let mut escaped = false;
        loop {
            while let Some(chunk) = self
                .buf
                .get(self.pos..self.pos + 16)
                .and_then(|c| <&[u8; 16]>::try_from(c).ok())
            {
                let stops = string_stops(chunk);
                if stops != 0 {
                    self.pos += stops.trailing_zeros() as usize;
                    break;
                }
                self.pos += 16;
            }
            match self.buf.get(self.pos) {
                Some(b'"') => {
                    let end = self.pos;
                    self.pos += 1;
                    return Ok((start, end, escaped));
                }
                Some(b'\\') => {
                    escaped = true;
                    self.escape()?;
                }
                Some(&b) if b < 0x20 => return Err(Bail),
                Some(_) => self.pos += 1,
                None => return Err(Bail),
            }
        }
    }

    /// An escape sequence at `pos` (the backslash): one of `"\/bfnrt`, or `u` and four hex digits.
    fn escape(&mut self) -> Scanned<()> {
        match self.buf.get(self.pos + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 2;
                Ok(())
            }
            Some(b'u') => {
                let hex = self.buf.get(self.pos + 2..self.pos + 6).ok_or(Bail)?;
                if hex.iter().all(u8::is_ascii_hexdigit) {
                    self.pos += 6;
                    Ok(())
                } else {
                    Err(Bail)
                }
            }
            _ => Err(Bail),
        }
    }

    /// An object key whose opening quote was consumed, then its colon. serde decodes keys and
    /// checks their UTF-8; keys with an escape are left to it.
    #[inline(always)]
    fn key(&mut self) -> Scanned<&'a [u8]> {
        let (start, end, escaped) = self.string()?;
        let key = self.buf.get(start..end).ok_or(Bail)?;
        if escaped || (self.text.is_none() && std::str::from_utf8(key).is_err()) {
            return Err(Bail);
        }
        self.expect(b':')?;
        Ok(key)
    }

    /// A needed string value: a string (borrowed; with an escape, decoded by serde_json exactly as
    /// the serde parser would) or `null`. Other types are left to the serde parser.
    fn string_value(&mut self) -> Scanned<Lenient<Cow<'a, str>>> {
        match self.peek()? {
            b'"' => {
                self.pos += 1;
                let (start, end, escaped) = self.string()?;
                if escaped {
                    let quoted = self
                        .buf
                        .get(start.checked_sub(1).ok_or(Bail)?..end + 1)
                        .ok_or(Bail)?;
                    let owned: String = serde_json::from_slice(quoted).map_err(|_| Bail)?;
                    return Ok(Lenient::Value(Cow::Owned(owned)));
                }
                let text = match self.text {
                    // The quotes around the body are ASCII, so it starts and ends on character
                    // boundaries.
                    Some(text) => text.get(start..end).ok_or(Bail)?,
                    None => {
                        let bytes = self.buf.get(start..end).ok_or(Bail)?;
                        std::str::from_utf8(bytes).map_err(|_| Bail)?
                    }
                };
                Ok(Lenient::Value(Cow::Borrowed(text)))
            }
            b'n' => {
                self.literal(b"null")?;
                Ok(Lenient::Absent)
            }
            _ => Err(Bail),
        }
    }

    /// A needed boolean value: `true`, `false` or `null`.
    fn bool_value(&mut self) -> Scanned<Lenient<bool>> {
        match self.peek()? {
            b't' => self.literal(b"true").map(|()| Lenient::Value(true)),
            b'f' => self.literal(b"false").map(|()| Lenient::Value(false)),
            b'n' => self.literal(b"null").map(|()| Lenient::Absent),
            _ => Err(Bail),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Scanned<()> {
        if self.buf.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Bail)
        }
    }

    /// `userIdentity`: an object (its `arn` and `accountId`) or `null`.
    fn identity(&mut self) -> Scanned<Lenient<UserIdentity<'a>>> {
        match self.peek()? {
            b'{' => self.pos += 1,
            b'n' => return self.literal(b"null").map(|()| Lenient::Absent),
            _ => return Err(Bail),
        }
        let mut identity = UserIdentity::default();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok(Lenient::Value(identity));
        }
        loop {
            self.expect(b'"')?;
            match self.key()? {
                b"arn" => identity.arn = self.string_value()?,
                b"accountId" => identity.account_id = self.string_value()?,
                _ => self.skip_value()?,
            }
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Ok(Lenient::Value(identity));
                }
                _ => return Err(Bail),
            }
        }
    }

    /// The fields of a record whose `{` was consumed, up to and including its `}`.
    fn record(&mut self) -> Scanned<RecordFields<'a>> {
        let mut f = RecordFields::default();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok(f);
        }
        loop {
            self.expect(b'"')?;
            let key = self.key()?;
            match record_key(key) {
                Key::EventTime => f.event_time = self.string_value()?,
                Key::EventSource => f.event_source = self.string_value()?,
                Key::EventName => f.event_name = self.string_value()?,
                Key::AwsRegion => f.aws_region = self.string_value()?,
                Key::RecipientAccountId => f.recipient_account_id = self.string_value()?,
                Key::EventCategory => f.event_category = self.string_value()?,
                Key::EventType => f.event_type = self.string_value()?,
                Key::ErrorCode => f.error_code = self.string_value()?,
                Key::EventId => f.event_id = self.string_value()?,
                Key::UserAgent => f.user_agent = self.string_value()?,
                Key::UserIdentity => f.user_identity = self.identity()?,
                Key::ReadOnly => f.read_only = self.bool_value()?,
                Key::ManagementEvent => f.management_event = self.bool_value()?,
                Key::Records
                | Key::Detail
                | Key::DetailType
                | Key::MessageType
                | Key::LogEvents
                | Key::Awslogs
                | Key::Other => self.skip_value()?,
            }
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Ok(f);
                }
                _ => return Err(Bail),
            }
        }
    }

    /// Skips one value as serde_json's `IgnoredAny` does: iteratively (no depth limit), checking
    /// the JSON grammar, escapes and control characters, but not the UTF-8 of skipped strings.
    fn skip_value(&mut self) -> Scanned<()> {
        self.stack.clear();
        'value: loop {
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    self.string()?;
                }
                b'{' => {
                    self.pos += 1;
                    if self.peek()? == b'}' {
                        self.pos += 1;
                    } else {
                        self.stack.push(b'{');
                        self.expect(b'"')?;
                        self.string()?;
                        self.expect(b':')?;
                        continue 'value;
                    }
                }
                b'[' => {
                    self.pos += 1;
                    if self.peek()? == b']' {
                        self.pos += 1;
                    } else {
                        self.stack.push(b'[');
                        continue 'value;
                    }
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b'-' => {
                    self.pos += 1;
                    self.number()?;
                }
                b'0'..=b'9' => self.number()?,
                _ => return Err(Bail),
            }
            // After a complete value: close containers until one continues with a comma.
            loop {
                let Some(&open) = self.stack.last() else {
                    return Ok(());
                };
                match (self.peek()?, open) {
                    (b',', b'{') => {
                        self.pos += 1;
                        self.expect(b'"')?;
                        self.string()?;
                        self.expect(b':')?;
                        continue 'value;
                    }
                    (b',', _) => {
                        self.pos += 1;
                        continue 'value;
                    }
                    (b'}', b'{') | (b']', b'[') => {
                        self.pos += 1;
                        self.stack.pop();
                    }
                    _ => return Err(Bail),
                }
            }
        }
    }

    /// A number without its sign: `0` or `[1-9][0-9]*`, then `.[0-9]+`, then `[eE][+-]?[0-9]+`.
    fn number(&mut self) -> Scanned<()> {
        match self.buf.get(self.pos) {
            Some(b'0') => {
                self.pos += 1;
                if self.buf.get(self.pos).is_some_and(u8::is_ascii_digit) {
                    return Err(Bail);
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(Bail),
        }
        if self.buf.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(Bail);
            }
        }
        if matches!(self.buf.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.buf.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(Bail);
            }
        }
        Ok(())
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.buf.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        self.pos - start
    }
}

/// The same mapping as the serde parser's `Key`, on raw key bytes.
#[inline(always)]
fn record_key(key: &[u8]) -> Key {
    match key {
        b"eventTime" => Key::EventTime,
        b"eventSource" => Key::EventSource,
        b"eventName" => Key::EventName,
        b"awsRegion" => Key::AwsRegion,
        b"recipientAccountId" => Key::RecipientAccountId,
        b"userIdentity" => Key::UserIdentity,
        b"readOnly" => Key::ReadOnly,
        b"managementEvent" => Key::ManagementEvent,
        b"eventCategory" => Key::EventCategory,
        b"eventType" => Key::EventType,
        b"errorCode" => Key::ErrorCode,
        b"eventID" => Key::EventId,
        b"userAgent" => Key::UserAgent,
        _ => Key::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_stops_equal_the_portable_ones_and_the_definition() {
        let mut chunk = [0u8; 16];
        for start in (0..256).step_by(16) {
            for (i, b) in chunk.iter_mut().enumerate() {
                *b = (start + i) as u8;
            }
            let by_definition = chunk
                .iter()
                .enumerate()
                .filter(|(_, &b)| b == b'"' || b == b'\\' || b < 0x20)
                .fold(0u32, |m, (i, _)| m | 1 << i);
            assert_eq!(string_stops(&chunk), by_definition, "bytes from {start}");
            assert_eq!(
                string_stops_swar(&chunk),
                by_definition,
                "bytes from {start}"
            );
        }
        // Stops after bytes that fool the "has zero byte" trick (0x21 after a quote, 0x80..).
        let tricky = *b"\"!\x80a\\\x1f\x20\x7f\"zzzzzzz";
        let want = 0b0000_0001_0011_0001;
        assert_eq!(string_stops(&tricky), want);
        assert_eq!(string_stops_swar(&tricky), want);
    }
}
