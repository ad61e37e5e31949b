//! The crate's doorway to the operating system beyond `std`, `mio` and `socket2`: the FFI
//! calls (`libc`) and their `unsafe`, each wrapped once in a safe function. No file outside
//! this folder holds `unsafe`; nothing here knows about sessions, workers or configuration.

pub mod account;
pub mod clock;
pub mod cpu;
pub mod credentials;
pub mod fd;
pub mod fdpass;
pub mod log_sink;
pub mod process;
pub mod random;
pub mod rlimit;
pub mod shm;
pub mod signals;
#[cfg(target_os = "linux")]
pub mod splice;
pub mod terminal;
