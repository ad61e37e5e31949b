//! What this binary is: its version, the git commit it was built from and the build date, as
//! build.rs recorded them. `sluice --version`, `show stats` and `sluice_build_info` say the
//! same. Nothing here is computed at run time.

/// The crate's version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The short git commit, or `unknown` when built outside a checkout.
pub const COMMIT: &str = env!("SLUICE_COMMIT");

/// The build date, `YYYY-MM-DD` UTC (SOURCE_DATE_EPOCH when it was set).
pub const BUILD_DATE: &str = env!("SLUICE_BUILD_DATE");

/// `0.1.0 (commit abc1234, built 2026-01-31)`.
pub const LONG: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SLUICE_COMMIT"),
    ", built ",
    env!("SLUICE_BUILD_DATE"),
    ")"
);
