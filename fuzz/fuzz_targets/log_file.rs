#![no_main]
//! See `trailsight::fuzzing::log_file`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| trailsight::fuzzing::log_file(data));
