//! A session's debug lines: at debug level, or at info whatever the level once the session is
//! traced (`trace` on the control socket), so that one session can be followed live without
//! turning the whole worker to debug.
//!
//! Only the macro and its sink; never a decision about what is traced (that is `Core`'s).

use std::fmt;

use log::Level;

/// Logs at debug, or at info whatever the level for a traced session. `$s` is anything with
/// a `traced` field (the session's `Core`).
macro_rules! sdebug {
    ($s:expr, $($arg:tt)+) => {
        if $s.traced {
            crate::worker::session::debug::forced(format_args!($($arg)+));
        } else {
            log::debug!($($arg)+);
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
