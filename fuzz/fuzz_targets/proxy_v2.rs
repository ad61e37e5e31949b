#![no_main]
// The properties checked are in src/lib.rs: sluice_fuzz::proxy_v2.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::proxy_v2(data));
