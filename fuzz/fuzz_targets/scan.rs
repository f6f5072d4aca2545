//! See fuzz/README.md and `berth_hosting::fuzz_checks::scan` for the property checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| berth_hosting::fuzz_checks::scan(data));
