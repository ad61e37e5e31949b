#![no_main]
// The property checked is in src/lib.rs: sluice_fuzz::first_bytes.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::first_bytes(data));
