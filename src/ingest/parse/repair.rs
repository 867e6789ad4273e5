//! Repairs the text damage that makes serde_json stop at a record: invalid UTF-8, raw control
//! characters inside strings and lone UTF-16 surrogate escapes (`\ud800`). Each is replaced by
//! U+FFFD, lossily, so that the damaged record and every record after it can still be read.
//! Only called after a parse failed, so clean files never pay for it.

/// U+FFFD as UTF-8, for raw bytes.
const REPLACEMENT: &[u8] = "\u{fffd}".as_bytes();
/// U+FFFD as a JSON escape, for a lone surrogate escape (the same six bytes long).
const ESCAPED_REPLACEMENT: &[u8] = b"\\ufffd";

/// A copy of `text` with the damage replaced, and how many replacements were made; `None` when
/// there is nothing to repair (the failure has another cause).
///
/// Strings are tracked by their quotes; a newline ends a string (no valid JSON string holds a raw
/// newline, and in JSON lines the next line must start clean). Invalid UTF-8 is replaced wherever
/// it is, each maximal invalid sequence by one U+FFFD, as `String::from_utf8_lossy` does.
pub(super) fn repair(text: &[u8]) -> Option<(Vec<u8>, u64)> {
    let mut fix = Fixer {
        text,
        out: None,
        copied: 0,
        replaced: 0,
    };
    let mut in_string = false;
    let mut i = 0usize;
    while let Some(&b) = text.get(i) {
        if b >= 0x80 {
            let window = text.get(i..(i + 4).min(text.len())).unwrap_or_default();
            match std::str::from_utf8(window) {
                Err(e) if e.valid_up_to() == 0 => {
                    let bad = e.error_len().unwrap_or(window.len()).max(1);
                    fix.replace(i, i + bad, REPLACEMENT);
                    i += bad;
                }
                // The character at `i` is valid; its length comes from its first byte.
                _ => i += utf8_width(b),
            }
            continue;
        }
        if !in_string {
            in_string = b == b'"';
            i += 1;
            continue;
        }
        match b {
            b'"' => {
                in_string = false;
                i += 1;
            }
            b'\n' => {
                in_string = false;
                i += 1;
            }
            b'\\' => i += fix.escape(i),
            0..=0x1f => {
                fix.replace(i, i + 1, REPLACEMENT);
                i += 1;
            }
            _ => i += 1,
        }
    }
    let Fixer {
        out,
        copied,
        replaced,
        ..
    } = fix;
    let mut out = out?;
    out.extend_from_slice(text.get(copied..).unwrap_or_default());
    Some((out, replaced))
}

/// The repaired copy, built lazily at the first replacement.
struct Fixer<'a> {
    text: &'a [u8],
    out: Option<Vec<u8>>,
    /// Bytes of `text` already accounted for in `out`.
    copied: usize,
    replaced: u64,
}

impl Fixer<'_> {
    /// Replaces `text[from..to]` by `with`.
    fn replace(&mut self, from: usize, to: usize, with: &[u8]) {
        let text = self.text;
        let out = self
            .out
            .get_or_insert_with(|| Vec::with_capacity(text.len() + 64));
        out.extend_from_slice(text.get(self.copied..from).unwrap_or_default());
        out.extend_from_slice(with);
        self.copied = to;
        self.replaced += 1;
    }

    /// Handles the escape at `at` (a backslash inside a string); returns the bytes it spans.
    /// A lone surrogate `\uXXXX` becomes `\ufffd`; a valid pair is kept whole.
    fn escape(&mut self, at: usize) -> usize {
        match self.text.get(at + 1) {
            Some(b'u') => {}
            // A newline or a non-ASCII byte is left to the main loop (a string end, UTF-8).
            Some(&next) if next != b'\n' && next < 0x80 => return 2,
            _ => return 1,
        }
        let Some(unit) = hex_unit(self.text, at) else {
            return 2;
        };
        match unit {
            0xD800..=0xDBFF => {
                if hex_unit(self.text, at + 6).is_some_and(|low| (0xDC00..=0xDFFF).contains(&low)) {
                    12
                } else {
                    self.replace(at, at + 6, ESCAPED_REPLACEMENT);
                    6
                }
            }
            0xDC00..=0xDFFF => {
                self.replace(at, at + 6, ESCAPED_REPLACEMENT);
                6
            }
            _ => 6,
        }
    }
}

/// The code unit of a `\uXXXX` escape starting at `at`, if there is one.
fn hex_unit(text: &[u8], at: usize) -> Option<u32> {
    let escape = text.get(at..at + 6)?;
    if escape.get(..2)? != b"\\u" {
        return None;
    }
    escape.get(2..)?.iter().try_fold(0u32, |acc, &c| {
        let digit = char::from(c).to_digit(16)?;
        Some(acc * 16 + digit)
    })
}

/// Length of a valid UTF-8 character from its first byte.
fn utf8_width(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::repair;

    fn fixed(text: &[u8]) -> Option<(String, u64)> {
        repair(text).map(|(out, n)| (String::from_utf8(out).unwrap(), n))
    }

    #[test]
    fn clean_text_needs_no_repair() {
        let clean = r#"{"a":"b\"c\\","d":"\ud83d\ude00 é","e":"\t"}"#;
        assert_eq!(fixed(clean.as_bytes()), None);
        assert_eq!(fixed(b"{\"a\":1}\n\t{\"b\":2}"), None);
    }

    #[test]
    fn each_kind_of_damage_is_replaced() {
        // Invalid UTF-8: a lone continuation byte, a truncated sequence, a bad lead byte.
        assert_eq!(
            fixed(b"{\"a\":\"x\xffy\xe2\x82z\xc0\"}"),
            Some(("{\"a\":\"x\u{fffd}y\u{fffd}z\u{fffd}\"}".into(), 3))
        );
        // Raw control characters inside strings, not outside them.
        assert_eq!(
            fixed(b"{\"a\":\"x\x00y\ty\"}"),
            Some(("{\"a\":\"x\u{fffd}y\u{fffd}y\"}".into(), 2))
        );
        // Lone surrogates, high or low, at the end or before another escape.
        assert_eq!(
            fixed(br#"{"a":"\ud800","b":"\udc00x","c":"\uD800\u0041","d":"\ud83d\ude00"}"#),
            Some((
                r#"{"a":"\ufffd","b":"\ufffdx","c":"\ufffd\u0041","d":"\ud83d\ude00"}"#.into(),
                3
            ))
        );
        // A newline ends a string: the next line is read from a clean state.
        assert_eq!(
            fixed(b"{\"a\":\"open\n{\"b\":\"\x01\"}"),
            Some(("{\"a\":\"open\n{\"b\":\"\u{fffd}\"}".into(), 1))
        );
        // Truncated at the end.
        assert_eq!(fixed(b"\"ab\xe2"), Some(("\"ab\u{fffd}".into(), 1)));
    }
}
