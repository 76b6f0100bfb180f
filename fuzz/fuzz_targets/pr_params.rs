#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| scst_fuzz::pr_params::run(data));
