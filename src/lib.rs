//! sluice: a TCP proxy that reads the PROXY protocol header and the TLS ClientHello of each
//! client (never terminating TLS), routes the session, opens the upstream leg, replays what
//! it read, then shuffles bytes both ways. One single-threaded `mio` loop per process.
//!
//! Module map (a line each; the folders are the architecture):
//!
//! * `cli` — the command line: `run`, `worker`, `ctl`, `inspect`, `check-config`.
//! * `config` — every `ENVOY_*` key (one table), loaded and validated whole; `config::route`
//!   the routes; `config::pool` a route's upstreams, balancing and check options;
//!   `config::upstream` a configured `host:port` and its addresses, and how a load resolves;
//!   `config::names` resolved names handed to a load (never resolving itself);
//!   `config::listener` the listeners (ENVOY_LISTEN) and their policies;
//!   `config::file` the KEY=VALUE file's syntax; `config::spelling` the nearest key to a typo;
//!   `config::clients` the per-client limits' keys and how they settle onto the routes;
//!   `config::connect` the CONNECT header keys' rules; `config::error` a refused value;
//!   `config::keys` the key table; `config::model` the `Config` values; `config::setting` one
//!   key's value as a layer gave it.
//! * `wire` — pure parsers and emitters of what crosses the wire (PROXY v1/v2, TLS
//!   ClientHello, HTTP heads, CRC32C); no I/O.
//!   * `wire::proxy` — PROXY headers: detection; `wire::proxy::v1`, `wire::proxy::v2` the two
//!     versions; `header` and `tlv` inside it what both parse into.
//!   * `wire::tls` — the ClientHello; `wire::http` — request heads, CONNECT request and reply.
//!   * `wire::name` — the host-name rule; `wire::crc32c`; `wire::reader` / `wire::writer` —
//!     bounded cursors.
//! * `first_bytes` — what a connection's first bytes come to (header, hello, refusal, a
//!   health check): the one decision the session's handshake and `sluice inspect` share.
//! * `worker` — one process's event loop: listeners, sessions, timers, admin connections.
//!   * `worker::listeners` — serving the listeners: the sockets it holds (handed by the
//!     supervisor, or bound alone), accepting, `show listeners`; `worker::sockets` what it
//!     holds.
//!   * `worker::session` — one proxied connection: phases that carry their data (LIFECYCLE.md).
//!     * `worker::session::handshake` — reads and parses the client's first bytes.
//!     * `worker::session::core` — what every phase shares; learns, decides, builds the preamble.
//!     * `worker::session::connect` — opens the upstream leg (and awaits a CONNECT reply).
//!     * `worker::session::decide` — the pure decisions: routed name, denials, alerts.
//!     * `worker::session::refusing` — a refused session: alert out, FIN, drop until the
//!       client's FIN (bounded).
//!     * `worker::session::facts` — what the first bytes said, as values.
//!     * `worker::session::preamble` — what sluice writes first upstream (PROXY v2, CONNECT).
//!     * `worker::session::ctx` — what the loop lends a session and what it asks back.
//!     * `worker::session::logs` — one log target, debug lines at any level when traced.
//!   * `worker::pipe` — the shuffle: both flows, pumps, splice, FIN passing; readiness.
//!   * `worker::token` — a session's slab key and leg packed into a `mio::Token`.
//!   * `worker::buffer` — fixed buffers and their pool; `worker::splice` — zero-copy pipes.
//!   * `worker::timer` — the deadline wheel; `worker::stats` — the worker's counters.
//!   * `worker::ops` — signals, reload and control commands executed on the loop.
//!   * `worker::upstreams` — the worker's view of every configured upstream: state, health,
//!     ejection, counters; `worker::upstreams::pick` — which pool member a session tries.
//!   * `worker::role` — how a worker was started (alone or supervised) and its CPU pinning.
//! * `admin` — the admin plane, one for a worker's loop and the supervisor's:
//!   * `admin::plane` — the control socket and metrics listener, bound or adopted, and their
//!     connections; `admin::conn` — one connection and its framing (lines, HTTP).
//!   * `admin::command` — the control line protocol; `admin::trace` — trace rules.
//!   * `admin::reply` — a command's typed answer, rendered and merged over workers.
//!   * `admin::report` — a report's values, merged over workers (`show stats` and `/metrics`
//!     both come from it); `admin::report::table` every metric named once with its merge
//!     rule, `admin::report::family` the words a table entry is made of; `admin::metrics` — the Prometheus text of a report.
//!   * `admin::status` — the status page (`status.html`, compiled in) and its JSON, made
//!     from sampled reports.
//!   * `admin::channel` — the line format workers answer the supervisor in.
//!   * `admin::capture` — first bytes of failed and traced sessions to disk.
//!   * `admin::upstreams` — `show upstreams`, rendered from a report.
//! * `limits` — per-client abuse limits held across every worker of a machine:
//!   `limits::policy` what a client is and may do, `limits::table` the counters in memory
//!   shared by every process (lock-free), ledgers that give back what a dead worker held.
//! * `supervisor` — one worker per core, respawn, signals; `supervisor::spawn` starts a
//!   worker and holds the supervisor's end of its channel, `supervisor::fanout` collects and
//!   merges the workers' replies to admin requests, `supervisor::listeners` binds every
//!   listener's sockets and hands a live change to the running workers,
//!   `supervisor::upgrade` hands over to a new binary, `supervisor::notify` tells systemd,
//!   `supervisor::health` runs the machine's active health checks, `supervisor::resolve`
//!   resolves names in a helper thread, `supervisor::client_table` adopts or makes the
//!   machine's client table, `supervisor::start` takes up the replayed `set`s and the admin
//!   plane.
//! * `handoff` — the environment variables a supervisor hands its workers and successor.
//! * `sys` — every FFI call (`libc`) behind a safe function, the crate's only `unsafe`:
//!   `sys::fd` (pipes, descriptor flags, adoption, umask), `sys::fdpass` (descriptors over a
//!   UNIX socket, SCM_RIGHTS), `sys::process` (spawning with
//!   inherited descriptors, kill, liveness), `sys::shm` (memory shared between processes),
//!   `sys::clock` (the machine's monotonic clock), `sys::rlimit` (resource limits), `sys::account` (the
//!   user and group databases, our ids), `sys::credentials` (changing ids, root directory,
//!   capabilities, no_new_privs), `sys::cpu` (pinning),
//!   `sys::signals` (the signal self-pipe), `sys::splice` (Linux splice(2)), `sys::random`
//!   (kernel random bytes, read once at start), `sys::log_sink` (writing a log descriptor
//!   without waiting), `sys::terminal` (raw mode, size and key waits for `ctl top`).
//! * `net` — socket set-up and the one place I/O results are interpreted.
//! * `preflight` — what the keys name (capture directory, control socket, metrics address,
//!   pid file, the account and chroot) checked before anything binds; the rule that only a
//!   stale socket is replaced.
//! * `privilege` — who the processes run as once bound (`ENVOY_USER`, `ENVOY_CHROOT`; the
//!   worker's drop, the supervisor's switch on Linux), the control socket's owner, the
//!   open-file limit.
//! * `top` — `sluice ctl top`: a live terminal view from the control socket (plain ANSI).
//! * `version` — the version, git commit and build date build.rs recorded.
//! * `logger` — log lines: a bounded buffer the loops flush without waiting, to stderr, a
//!   file or syslog (`logger::line` the format, `logger::queue` the buffer, `logger::sink`
//!   the sinks, `logger::syslog` the datagrams (RFC 5424, BSD), `logger::target` the
//!   targets' names); `logfmt` — how a line's message is written (free words, then
//!   `key=value` pairs; the one quoting rule for values); `hexdump` — how wire bytes are
//!   shown to people (xxd, and as log records);
//!   `cidr` — address blocks; `inspect` — `sluice inspect`, decoding captures.
//!
//! Lints are declared once, in Cargo.toml `[lints]`; no module is exempt from them. One
//! item-level exception
//! lives beside its code: `wire::crc32c::build_table`, a `const fn` indexing a table at
//! compile time (an index out of range is a build error there, never a panic).

pub mod admin;
pub mod cidr;
pub mod cli;
pub mod config;
pub mod first_bytes;
pub mod handoff;
pub mod hexdump;
pub mod inspect;
pub mod limits;
pub mod logfmt;
pub mod logger;
pub mod net;
pub mod preflight;
pub mod privilege;
pub mod supervisor;
pub mod sys;
pub mod top;
pub mod version;
pub mod wire;
pub mod worker;
