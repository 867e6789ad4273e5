#![no_main]
//! See `trailsight::fuzzing::labels_json`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| trailsight::fuzzing::labels_json(data));
