#![no_main]
//! See `trailsight::fuzzing::stdin_chunks`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| trailsight::fuzzing::stdin_chunks(data));
