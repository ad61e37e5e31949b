#![no_main]
// The properties checked are in src/lib.rs: sluice_fuzz::http_request.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::http_request(data));
