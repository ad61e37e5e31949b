//! sluice: a TCP proxy that reads the PROXY protocol header and the TLS ClientHello of each
//! client (never terminating TLS), routes the session, opens the upstream leg, replays what
//! it read, then shuffles bytes both ways. One single-threaded `mio` loop per process.
//!
//! Module map: `wire` holds the pure parsers and emitters; `hexdump` shows wire bytes to
//! people; `inspect` is the offline `sluice inspect` command; `cli` parses the command line.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(rust_2018_idioms)]

pub mod cli;
pub mod hexdump;
pub mod wire;
