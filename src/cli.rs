//! The command line: `sluice [run]`, `sluice inspect`, `sluice check-config`, `--help`, `--version`.
//!
//! Returns an exit status; never calls `process::exit` itself so that it stays testable.

use std::ffi::OsString;

use crate::config::{Config, Layers, KEYS};
use crate::worker::Worker;

/// The text of `sluice --help`.
pub const HELP: &str = "\
sluice - a TCP proxy for PROXY-protocol + TLS traffic (never terminates TLS)

usage:
  sluice [run]                    run the proxy: a supervisor and ENVOY_WORKERS workers,
                                  configured by ENVOY_* environment variables
  sluice check-config             print every setting, its effective value and its source
  sluice worker                   one event loop in this process, no supervisor (no upgrade,
                                  no respawn): for benchmarks, debugging, other managers
  sluice ctl COMMAND...           send one command to the control socket (ENVOY_CONTROL_SOCKET)
                                  and print the reply; `sluice ctl help` lists the commands
  sluice inspect [--hexdump] FILE...
                                  decode captured client bytes (PROXY header, ClientHello),
                                  one key=value fact a line; --hexdump adds a dump
  sluice --help | --version

exit status: 0 ok; 1 inspect found invalid or truncated bytes; 2 usage, I/O or
configuration error
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
        None | Some("run") => run(),
        Some("check-config") => check_config(),
        Some("ctl") => ctl(args.get(1..).unwrap_or(&[])),
        Some("worker") => worker(),
        Some("inspect") => crate::inspect::run(args.get(1..).unwrap_or(&[])),
        Some(other) => {
            eprintln!("sluice: unknown command {other:?}\n\n{HELP}");
            2
        }
    }
}

/// Loads the configuration, or prints why not (exit status 2, nothing bound).
fn load_config() -> Result<Config, i32> {
    Layers::from_process_env().load().map_err(|e| {
        eprintln!("sluice: {e}");
        2
    })
}

fn check_config() -> i32 {
    let cfg = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    for (key, value, source) in &cfg.entries {
        println!("{key}={value} ({source})");
    }
    println!(
        "# effective: upstream {} -> {:?}",
        cfg.upstream.name, cfg.upstream.addrs
    );
    println!(
        "# effective: max_sessions={} workers={}",
        cfg.max_sessions, cfg.workers
    );
    debug_assert_eq!(cfg.entries.len(), KEYS.len());
    0
}

/// Starts logging at the configured level, to the configured target (or says why not:
/// exit status 2). The logger itself lets everything through so that the level can change
/// at run time with `log::set_max_level`.
pub fn init_logging(cfg: &Config) -> Result<(), i32> {
    crate::logger::init(cfg.log_level);
    if cfg.log_target == crate::logger::Target::Stderr {
        return Ok(());
    }
    crate::logger::set_target(&cfg.log_target, cfg.log_facility).map_err(|e| {
        eprintln!("sluice: ENVOY_LOG_TARGET={}: {e}", cfg.log_target);
        2
    })
}

fn run() -> i32 {
    let cfg = match load_config() {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(code) = init_logging(&cfg) {
        return code;
    }
    let addr = cfg.listen_addr();
    let mut sup = match crate::supervisor::Supervisor::start(cfg) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot start on {addr}: {e}");
            return 1;
        }
    };
    match sup.run() {
        Ok(()) => 0,
        Err(e) => {
            log::error!("supervisor: {e}");
            1
        }
    }
}

/// A worker started by the supervisor: inherited listener and command channel.
fn worker() -> i32 {
    let layers = Layers::from_process_env();
    let cfg = match layers.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice worker: {e}");
            return 2;
        }
    };
    if let Err(code) = init_logging(&cfg) {
        return code;
    }
    // Started by a supervisor: inherited sockets. By hand: one standalone event loop that
    // binds its own listener, control socket and metrics (for benchmarks, debugging, or
    // another process manager).
    let role = if std::env::var_os(crate::handoff::WORKER).is_some() {
        match crate::worker::role::worker_role() {
            Ok(r) => r,
            Err(e) => {
                log::error!("sluice worker: {e}");
                return 2;
            }
        }
    } else {
        crate::worker::Role::default()
    };
    let mut worker = match Worker::with_role(layers, cfg, role) {
        Ok(w) => w,
        Err(e) => {
            log::error!("worker: {e}");
            return 1;
        }
    };
    match worker.run() {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// `sluice ctl COMMAND...`: one command over the control socket, the reply on stdout.
fn ctl(args: &[OsString]) -> i32 {
    use std::io::{BufRead, BufReader, Write};
    let words: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if words.is_empty() {
        eprintln!("usage: sluice ctl COMMAND... (try: sluice ctl help)");
        return 2;
    }
    let path = std::env::var("ENVOY_CONTROL_SOCKET").unwrap_or_default();
    if path.is_empty() {
        eprintln!("sluice ctl: ENVOY_CONTROL_SOCKET is not set");
        return 2;
    }
    let mut s = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sluice ctl: {path}: {e}");
            return 2;
        }
    };
    if let Err(e) = writeln!(s, "{}", words.join(" ")) {
        eprintln!("sluice ctl: {e}");
        return 2;
    }
    let mut failed = false;
    for line in BufReader::new(s).lines() {
        let Ok(line) = line else { return 2 };
        if line.is_empty() {
            break;
        }
        failed |= line.starts_with("error:");
        println!("{line}");
    }
    i32::from(failed)
}
