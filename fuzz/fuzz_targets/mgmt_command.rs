#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| scst_fuzz::mgmt_command::run(data));
