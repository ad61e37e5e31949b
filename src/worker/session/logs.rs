//! How a session logs: every line under one target ([`TARGET`], whichever file of the
//! session writes it), and debug lines that a trace raises to info whatever the level
//! (`trace` on the control socket), so that one session can be followed live without
//! turning the whole worker to debug.
//!
//! Only the target, the macro and its sink; never a decision about what is traced (that is
//! `Core`'s).

use std::fmt;

use log::Level;

/// The target of every session line: the name it had before the session became a folder
/// (and the one the README shows), so that log filters keep working across the reshape.
pub const TARGET: &str = "sluice::session";

/// Logs at debug, or at info whatever the level for a traced session. `$s` is anything with
/// a `traced` field (the session's `Core`).
macro_rules! sdebug {
    ($s:expr, $($arg:tt)+) => {
        if $s.traced {
            crate::worker::session::logs::forced(format_args!($($arg)+));
        } else {
            log::debug!(target: crate::worker::session::logs::TARGET, $($arg)+);
        }
    };
}
pub(crate) use sdebug;

/// Emits a line past the level filter (tracing shows at any level).
pub fn forced(args: fmt::Arguments<'_>) {
    log::logger().log(
        &log::Record::builder()
            .level(Level::Info)
            .target("sluice::trace")
            .args(args)
            .build(),
    );
}
