//! The crate's doorway to the operating system beyond `std`, `mio` and `socket2`: the FFI
//! calls (`libc`) and their `unsafe`, each wrapped once in a safe function.

pub mod fd;
pub mod log_sink;
pub mod signals;
