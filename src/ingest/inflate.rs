//! Whole-buffer gzip inflation with libdeflate, the fast path for delivery files read whole: about
//! 1.4x zlib-rs here (`benches/pipeline.rs`, "inflate"). It accepts only a clean sequence of
//! complete gzip members; anything else (damage, trailing bytes, a size over the limit) is left to
//! the streaming decoder, which reports it and keeps what it inflated before the damage.
//!
//! This is the crate's only `unsafe` code: three calls into libdeflate's C API (allocate, free,
//! inflate one member), each with the contract it relies on written beside it.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ffi::c_void;
use std::ptr::NonNull;

use libdeflate_sys::{
    libdeflate_alloc_decompressor, libdeflate_decompressor, libdeflate_free_decompressor,
    libdeflate_gzip_decompress_ex, libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE,
    libdeflate_result_LIBDEFLATE_SUCCESS,
};

/// One libdeflate decompressor (about 10 KB of tables, reused from file to file).
struct Decompressor(NonNull<libdeflate_decompressor>);

impl Decompressor {
    fn new() -> Option<Decompressor> {
        // SAFETY: no preconditions; returns NULL when out of memory.
        NonNull::new(unsafe { libdeflate_alloc_decompressor() }).map(Decompressor)
    }

    /// Inflates the gzip member at the start of `input` into the spare capacity of `out`,
    /// appending it without letting `out` pass `max_len` bytes: `Ok(bytes read)`, or the
    /// libdeflate result code (`out` unchanged).
    fn member(&mut self, input: &[u8], out: &mut Vec<u8>, max_len: usize) -> Result<usize, u32> {
        let room = max_len.saturating_sub(out.len());
        let spare = out.spare_capacity_mut();
        let spare_len = spare.len().min(room);
        let mut read = 0usize;
        let mut written = 0usize;
        // SAFETY: the decompressor is live (freed only in Drop) and used by one thread at a time
        // (`&mut self`); libdeflate reads at most `input.len()` bytes from `input` and writes at
        // most `spare_len` (<= `spare.len()`) bytes to `spare` (reading back only bytes it wrote
        // there, so uninitialised memory is fine), both valid for the call's duration, and writes
        // the two counts through pointers to live locals.
        let result = unsafe {
            libdeflate_gzip_decompress_ex(
                self.0.as_ptr(),
                input.as_ptr().cast::<c_void>(),
                input.len(),
                spare.as_mut_ptr().cast::<c_void>(),
                spare_len,
                &mut read,
                &mut written,
            )
        };
        if result != libdeflate_result_LIBDEFLATE_SUCCESS || written > spare_len {
            return Err(result);
        }
        // SAFETY: on success libdeflate initialised the first `written` bytes of the spare
        // capacity (checked above to fit in it), so they may join the vector's contents.
        unsafe { out.set_len(out.len() + written) };
        Ok(read)
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: allocated by libdeflate_alloc_decompressor and freed exactly once, here.
        unsafe { libdeflate_free_decompressor(self.0.as_ptr()) }
    }
}

thread_local! {
    /// One decompressor per thread: allocating it for every file would cost more than small files.
    static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
}

/// Inflates `compressed`, one or more complete gzip members and nothing after them, into `buf`
/// (cleared first; never grown past `limit` bytes). `first_size` is the first buffer size (the
/// trailer's ISIZE); the buffer doubles when a member needs more. Returns false, with `buf` in an
/// unspecified state, for anything else: damaged or truncated data, bytes after the last member,
/// output over `limit`; the caller then reads the file with the streaming decoder.
pub(crate) fn gunzip(
    compressed: &[u8],
    first_size: usize,
    limit: usize,
    buf: &mut Vec<u8>,
) -> bool {
    DECOMPRESSOR.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return false;
        };
        if slot.is_none() {
            *slot = Decompressor::new();
        }
        let Some(decompressor) = slot.as_mut() else {
            return false;
        };
        gunzip_with(decompressor, compressed, first_size, limit, buf)
    })
}

fn gunzip_with(
    decompressor: &mut Decompressor,
    compressed: &[u8],
    first_size: usize,
    limit: usize,
    buf: &mut Vec<u8>,
) -> bool {
    buf.clear();
    // The buffer is filled without being zeroed first (libdeflate writes into its spare
    // capacity): zeroing ~1.4 KB per record cost 5 % of a run's instructions.
    let mut capacity = first_size.clamp(1, limit.max(1));
    if buf.try_reserve_exact(capacity).is_err() {
        return false;
    }
    let mut read = 0usize;
    while read < compressed.len() {
        let Some(input) = compressed.get(read..) else {
            return false;
        };
        match decompressor.member(input, buf, capacity) {
            Ok(member_in) if member_in > 0 => read += member_in,
            Err(code) if code == libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE => {
                // The member needs more room (a later member, or a trailer that understates):
                // double, up to the limit, and inflate the member again.
                if capacity >= limit {
                    return false;
                }
                capacity = capacity.saturating_mul(2).min(limit);
                if buf.try_reserve_exact(capacity - buf.len()).is_err() {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn text(n: usize, salt: u8) -> Vec<u8> {
        (0..n)
            .map(|i| b"{\"Records\":[]} abcdefgh"[(i * 7 + usize::from(salt)) % 23])
            .collect()
    }

    #[test]
    fn one_member_with_an_exact_or_understated_size() {
        let data = text(100_000, 1);
        let gz = gzip(&data);
        let mut buf = Vec::new();
        assert!(gunzip(&gz, data.len(), 1 << 30, &mut buf));
        assert_eq!(buf, data);
        // A first size far too small: the buffer doubles until the member fits.
        assert!(gunzip(&gz, 10, 1 << 30, &mut buf));
        assert_eq!(buf, data);
    }

    #[test]
    fn every_member_is_inflated_in_order() {
        let (a, b, c) = (text(5_000, 1), text(70_000, 2), text(3, 3));
        let mut gz = gzip(&a);
        gz.extend(gzip(&b));
        gz.extend(gzip(&c));
        let mut buf = Vec::new();
        // The trailer announces only the last member's 3 bytes.
        assert!(gunzip(&gz, c.len(), 1 << 30, &mut buf));
        assert_eq!(buf, [a, b, c].concat());
    }

    #[test]
    fn damage_trailing_bytes_and_the_limit_are_refused() {
        let data = text(50_000, 4);
        let gz = gzip(&data);
        let mut buf = Vec::new();
        // Truncated: the member never ends.
        assert!(!gunzip(&gz[..gz.len() / 2], data.len(), 1 << 30, &mut buf));
        // A flipped byte in the compressed data or the CRC.
        for at in [gz.len() / 2, gz.len() - 6] {
            let mut bad = gz.clone();
            bad[at] ^= 0x55;
            assert!(!gunzip(&bad, data.len(), 1 << 30, &mut buf), "flip at {at}");
        }
        // Bytes after the last member.
        let mut trailing = gz.clone();
        trailing.extend_from_slice(b"junk");
        assert!(!gunzip(&trailing, data.len(), 1 << 30, &mut buf));
        // Over the limit, whatever the first size says.
        let mut fresh = Vec::new();
        assert!(!gunzip(&gz, 10, data.len() - 1, &mut fresh));
        assert!(fresh.capacity() < data.len());
        // A reused buffer with room to spare is still held to the limit.
        let mut roomy = Vec::with_capacity(4 * data.len());
        assert!(!gunzip(&gz, data.len(), data.len() - 1, &mut roomy));
        // Exactly at the limit is fine.
        assert!(gunzip(&gz, 10, data.len(), &mut buf));
        assert_eq!(buf, data);
    }
}
