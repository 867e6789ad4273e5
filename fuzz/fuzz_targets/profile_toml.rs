#![no_main]
//! See `trailsight::fuzzing::profile_toml`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| trailsight::fuzzing::profile_toml(data));
