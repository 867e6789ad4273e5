#![no_main]
//! See `trailsight::fuzzing::scanner_against_serde`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| trailsight::fuzzing::scanner_against_serde(data));
