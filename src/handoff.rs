//! What a supervisor hands to its workers and to its successor across exec: the names of
//! the environment variables that carry descriptor numbers and state.

/// `index/count` of a worker.
pub const WORKER: &str = "SLUICE_WORKER";
/// The worker's listening sockets: `ADDR=FD` pairs, comma-separated, ADDR the address its
/// listener is configured with.
pub const LISTEN_FDS: &str = "SLUICE_LISTEN_FDS";
/// The worker's command channel.
pub const CHANNEL_FD: &str = "SLUICE_CHANNEL_FD";
/// The machine's client table (shared memory), for a worker.
pub const CLIENT_TABLE_FD: &str = "SLUICE_CLIENT_TABLE_FD";
/// Upgrade: the client table, handed on to the successor.
pub const INHERIT_CLIENT_TABLE: &str = "SLUICE_INHERIT_CLIENT_TABLE_FD";
/// Upgrade: the client listeners (every listener's, one per worker each), comma-separated.
pub const INHERIT_LISTEN: &str = "SLUICE_INHERIT_LISTEN_FDS";
/// Upgrade: the control socket listener.
pub const INHERIT_CONTROL: &str = "SLUICE_INHERIT_CONTROL_FD";
/// Upgrade: the metrics listener.
pub const INHERIT_METRICS: &str = "SLUICE_INHERIT_METRICS_FD";
/// Upgrade: where the new supervisor writes `ready`.
pub const UPGRADE_FD: &str = "SLUICE_UPGRADE_FD";
/// Upgrade: control commands to replay (runtime `set`s and traces), newline-separated.
pub const REPLAY: &str = "SLUICE_REPLAY";
/// The addresses of the names the configuration needs, as the supervisor resolved them
/// (`config::names::Names`'s line): a worker never resolves.
pub const NAMES: &str = "SLUICE_NAMES";
