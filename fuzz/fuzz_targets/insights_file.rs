#![no_main]
//! See `trailsight::fuzzing::insights_file`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| trailsight::fuzzing::insights_file(data));
