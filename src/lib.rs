//! sluice: a TCP proxy that reads the PROXY protocol header and the TLS ClientHello of each
//! client (never terminating TLS), routes the session, opens the upstream leg, replays what
//! it read, then shuffles bytes both ways. One single-threaded `mio` loop per process.
//!
//! Module map: `wire` holds the pure parsers and emitters (no I/O); `config` the ENVOY_*
//! settings; `event_loop` the poll loop of one worker; `session` the per-connection state
//! machine and shuffle; `buffer` the fixed buffers and their pool; `timer` the deadline
//! wheel; `net` socket set-up and I/O results; `stats` the counters; `cidr` address blocks;
//! `hexdump` how wire bytes are shown to people; `cli` the command line.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(rust_2018_idioms)]

pub mod buffer;
pub mod capture;
pub mod cidr;
pub mod cli;
pub mod config;
pub mod control;
pub mod event_loop;
pub mod hexdump;
pub mod inspect;
pub mod logger;
pub mod metrics;
pub mod net;
pub mod operate;
pub mod route;
pub mod session;
pub mod signals;
pub mod splice;
pub mod stats;
pub mod supervisor;
pub mod timer;
pub mod upstream;
pub mod wire;
