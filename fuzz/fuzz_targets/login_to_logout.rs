#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| scst_fuzz::login_to_logout::run(data));
