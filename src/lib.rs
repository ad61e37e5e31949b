//! sluice: a TCP proxy that reads the PROXY protocol header and the TLS ClientHello of each
//! client (never terminating TLS), routes the session, opens the upstream leg, replays what
//! it read, then shuffles bytes both ways. One single-threaded `mio` loop per process.
//!
//! Module map (a line each; the folders are the architecture):
//!
//! * `cli` — the command line: `run`, `worker`, `ctl`, `inspect`, `check-config`.
//! * `config` — every `ENVOY_*` key, loaded and validated whole; `config::route` the routes.
//! * `wire` — pure parsers and emitters of what crosses the wire (PROXY v1/v2, TLS
//!   ClientHello, HTTP heads, CRC32C); no I/O.
//!   * `wire::proxy`, `wire::proxy_v1`, `wire::proxy_v2` — PROXY headers: detection, both versions.
//!   * `wire::tls` — the ClientHello; `wire::http` — request heads, CONNECT request and reply.
//!   * `wire::name` — the host-name rule; `wire::crc32c`; `wire::reader` / `wire::writer` —
//!     bounded cursors.
//! * `worker` — one process's event loop: listener, sessions, timers, admin connections.
//!   * `worker::session` — one proxied connection's state machine; `worker::session::preamble`
//!     what sluice writes first upstream (PROXY v2 header, CONNECT request).
//!   * `worker::buffer` — fixed buffers and their pool; `worker::splice` — zero-copy pipes.
//!   * `worker::timer` — the deadline wheel; `worker::stats` — the worker's counters.
//!   * `worker::ops` — signals, reload and control commands executed on the loop.
//!   * `worker::role` — how a worker was started (alone or supervised) and its CPU pinning.
//! * `admin` — the admin plane: `admin::command` (control line protocol), `admin::trace`
//!   (trace rules), `admin::conn` (admin connections), `admin::metrics` (Prometheus text),
//!   `admin::capture` (first bytes of failed and traced sessions to disk).
//! * `supervisor` — one worker per core, respawn, signals; `supervisor::spawn` starts a
//!   worker, `supervisor::fanout` answers admin clients for all workers,
//!   `supervisor::upgrade` hands over to a new binary, `supervisor::notify` tells systemd.
//! * `handoff` — the environment variables a supervisor hands its workers and successor.
//! * `sys` — the FFI (`libc`) behind safe functions; `sys::signals` the signal self-pipe;
//!   `sys::log_sink` how a log descriptor is written without waiting.
//! * `net` — socket set-up and the one place I/O results are interpreted.
//! * `logger` — log lines: a bounded buffer the loop flushes without waiting, to stderr, a
//!   file or syslog (`logger::line` the format, `logger::queue` the buffer, `logger::sink`
//!   the sinks, `logger::syslog` RFC 5424, `logger::target` the targets' names);
//!   `hexdump` — how wire bytes are shown to people;
//!   `cidr` — address blocks; `inspect` — `sluice inspect`, decoding captures.
//!
//! Lints are declared once, in Cargo.toml `[lints]`; the modules that are exempt from part
//! of them are named below, at their declaration, with the reason. One item-level exception
//! lives beside its code: `wire::crc32c::build_table`, a `const fn` indexing a table at
//! compile time (an index out of range is a build error there, never a panic).

pub mod admin;
pub mod cidr;
pub mod cli;
pub mod config;
pub mod handoff;
pub mod hexdump;
pub mod inspect;
pub mod logger;
pub mod net;
// Exempt from indexing_slicing until its worker table is reshaped (issue 13, in progress).
#[allow(clippy::indexing_slicing)]
pub mod supervisor;
pub mod sys;
pub mod wire;
pub mod worker;
