#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| scst_fuzz::isns_message::run(data));
