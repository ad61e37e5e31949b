#![no_main]
// The properties checked are in src/lib.rs: sluice_fuzz::connect_reply.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::connect_reply(data));
