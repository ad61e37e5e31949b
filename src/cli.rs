//! The command line: `sluice [run]`, `sluice inspect`, `sluice check-config`, `--help`, `--version`.
//!
//! Returns an exit status; never calls `process::exit` itself so that it stays testable.

use std::ffi::OsString;

/// The text of `sluice --help`.
pub const HELP: &str = "\
sluice - a TCP proxy for PROXY-protocol + TLS traffic (never terminates TLS)

usage:
  sluice [run]                    run the proxy, configured by ENVOY_* environment variables
  sluice check-config             print every setting, its effective value and its source
  sluice inspect [--hexdump] FILE...
                                  decode captured client bytes: PROXY header and ClientHello
  sluice --help | --version

exit status: 0 ok; 1 inspect found invalid bytes; 2 usage, I/O or configuration error
";

/// Runs the command named by `args` (without the program name) and returns the exit status.
pub fn main(args: &[OsString]) -> i32 {
    let first = args.first().and_then(|a| a.to_str());
    match first {
        Some("--help") | Some("-h") | Some("help") => {
            print!("{HELP}");
            0
        }
        Some("--version") | Some("-V") => {
            println!("sluice {}", env!("CARGO_PKG_VERSION"));
            0
        }
        other => {
            eprintln!("sluice: unknown command {other:?}\n\n{HELP}");
            2
        }
    }
}
