#![no_main]
//! See `trailsight::fuzzing::store_values`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| trailsight::fuzzing::store_values(data));
