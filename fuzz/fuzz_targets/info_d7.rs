//! See fuzz/README.md and `berth_fuzz_checks::info_d7` for the property checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| berth_fuzz_checks::info_d7(data));
