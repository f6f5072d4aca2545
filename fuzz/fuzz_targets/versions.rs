//! See fuzz/README.md and `berth_fuzz_checks::versions` for the property checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| berth_fuzz_checks::versions(data));
