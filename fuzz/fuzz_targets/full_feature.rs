#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| scst_fuzz::full_feature::run(data));
