#![no_main]
// The rig and its checks are in src/session.rs: sluice_fuzz::session::session.
libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::session::session(data));
