//! The command line: `sluice run`, `worker`, `ctl`, `inspect`, `check-config`, `--help`,
//! `--version`. Every command takes `--help`; an argument a command does not know is a usage
//! error (exit 2, with that command's usage), never ignored. `sluice` alone prints the help
//! and exits 2: it is not a way to start the proxy (that is `sluice run`).
//!
//! Returns an exit status; never calls `process::exit` itself so that it stays testable.

use std::ffi::OsString;

use crate::config::{Config, Layers, KEYS};
use crate::preflight::{self, Inherited};
use crate::worker::Worker;

/// The text of `sluice --help`.
pub const HELP: &str = "\
sluice - a TCP proxy for PROXY-protocol + TLS traffic (never terminates TLS)

usage:
  sluice run                      run the proxy: a supervisor and ENVOY_WORKERS workers,
                                  configured by ENVOY_* environment variables
  sluice check-config             print every setting, its effective value and its source;
                                  check the files, directories and addresses they name
  sluice worker                   one event loop in this process, no supervisor (no upgrade,
                                  no respawn): for benchmarks, debugging, other managers
  sluice ctl COMMAND...           send one command to the control socket (ENVOY_CONTROL_SOCKET)
                                  and print the reply; `sluice ctl help` lists the commands
  sluice inspect [--hexdump] FILE...
                                  decode captured client bytes (PROXY header, ClientHello),
                                  one key=value fact a line; --hexdump adds a dump
  sluice COMMAND --help           that command's usage
  sluice --help | --version       (`sluice` alone prints this help and exits 2)

exit status: 0 ok; 1 inspect found a part invalid or truncated (the frame ends inside the
PROXY header, the ClientHello or the HTTP head); 2 usage, I/O or configuration error
";

/// `sluice run --help`.
pub const RUN_HELP: &str = "\
usage: sluice run

Runs the proxy: a supervisor that owns the listening sockets, the control socket and the
metrics address, and ENVOY_WORKERS worker processes (one per CPU by default). Configured by
ENVOY_* environment variables and the file ENVOY_CONFIG_FILE names, never by arguments:
`sluice check-config` lists every key with its value. Before anything is bound, every
value is validated and every file, directory and address a key names is checked; each
problem is printed on its own line (exit 2). ENVOY_* variables that are not keys are
warned about.

exit status: 0 after a drain or a handed-over upgrade; 1 when it cannot start or its loop
fails; 2 on a usage or configuration error
";

/// `sluice worker --help`.
pub const WORKER_HELP: &str = "\
usage: sluice worker

One event loop in this process without a supervisor: it binds its own listener, control
socket and metrics address (no upgrade, no respawn). For benchmarks, debugging, or another
process manager. Configured like `sluice run`.

exit status: 0 after a drain; 1 when it cannot start or its loop fails; 2 on a usage or
configuration error
";

/// `sluice check-config --help`.
pub const CHECK_CONFIG_HELP: &str = "\
usage: sluice check-config

Loads the configuration as `sluice run` would (environment, ENVOY_CONFIG_FILE) and prints
every key as KEY=VALUE (SOURCE); checks the capture directory, the control socket's path,
the metrics address and the pid file without keeping anything. Problems go to stderr, one
a line; what a running sluice holds (its control socket, its metrics address) is a note,
not an error. ENVOY_* variables that are not keys are warned about.

exit status: 0 valid; 2 on an invalid value, an unusable path or address, or a usage error
";

/// `sluice ctl --help`.
pub const CTL_HELP: &str = "\
usage: sluice ctl COMMAND...

Sends COMMAND (its words joined by spaces) to the control socket ENVOY_CONTROL_SOCKET names
and prints the reply. `sluice ctl help` asks the running sluice for its commands, e.g.
`show stats`, `show config`, `set KEY VALUE`, `reload`, `trace NAME`, `drain`, `upgrade`.
`sluice ctl top` is a live view instead, refreshed every second until `q`.

exit status: 0 ok; 1 the reply is an error; 2 usage error or no control socket
";

/// Runs the command named by `args` (without the program name) and returns the exit status.
pub fn main(args: &[OsString]) -> i32 {
    let first = args.first().map(|a| a.to_string_lossy());
    let rest = args.get(1..).unwrap_or(&[]);
    match first.as_deref() {
        Some("--help") | Some("-h") | Some("help") => {
            print!("{HELP}");
            0
        }
        Some("--version") | Some("-V") => {
            println!("sluice {}", crate::version::LONG);
            0
        }
        None => {
            eprint!("{HELP}");
            2
        }
        Some("run") => no_arguments("run", rest, RUN_HELP).unwrap_or_else(run),
        Some("check-config") => {
            no_arguments("check-config", rest, CHECK_CONFIG_HELP).unwrap_or_else(check_config)
        }
        Some("worker") => no_arguments("worker", rest, WORKER_HELP).unwrap_or_else(worker),
        Some("ctl") => ctl(rest),
        Some("inspect") => crate::inspect::run(rest),
        Some(other) => {
            eprintln!(
                "sluice: unknown command \"{}\"\n\n{HELP}",
                crate::hexdump::Escaped(other.as_bytes())
            );
            2
        }
    }
}

/// For a command that takes no argument but `--help`: `None` to go on, else the exit status
/// (0 after printing its usage, 2 after refusing an argument).
fn no_arguments(command: &str, args: &[OsString], usage: &str) -> Option<i32> {
    let first = args.first()?;
    if args.len() == 1 && matches!(first.to_str(), Some("--help" | "-h")) {
        print!("{usage}");
        return Some(0);
    }
    eprintln!(
        "sluice {command}: unknown argument \"{}\" (settings are ENVOY_* variables)\n\n{usage}",
        crate::hexdump::Escaped(first.as_encoded_bytes())
    );
    Some(2)
}

/// Loads the configuration, or prints every reason why not (exit status 2, nothing bound).
fn load_config(layers: &Layers) -> Result<Config, i32> {
    layers.load().map_err(|errors| {
        for e in errors.iter() {
            eprintln!("sluice: {e}");
        }
        2
    })
}

/// Loads and checks what `sluice run` and a standalone `sluice worker` need before they bind
/// anything; every problem is printed (exit status 2). Warnings are logged once logging is
/// on, or printed with the errors when it never will be.
fn prepare(layers: &Layers) -> Result<Config, i32> {
    let warnings = layers.unknown_variable_warnings();
    let loaded = layers.load();
    let problems = match &loaded {
        Ok(cfg) => preflight::check(cfg, Inherited::from_process_env()),
        Err(_) => Vec::new(),
    };
    match loaded {
        Ok(mut cfg) if problems.is_empty() => {
            // Before anything counts descriptors: ENVOY_MAX_SESSIONS=auto is computed again
            // from the limit set here, and the workers inherit it.
            let limit = crate::privilege::set_open_files(&cfg).map_err(|e| {
                eprintln!("sluice: {e}");
                2
            })?;
            cfg.recount_auto_max_sessions();
            init_logging(&cfg)?;
            for (name, nearest) in layers.unknown_variables_nearest() {
                log::warn!(
                    "variable ignored, not a key variable={} nearest={}",
                    crate::logfmt::Value::str(name),
                    nearest.unwrap_or("-")
                );
            }
            log::info!("open-file limit set {limit}");
            Ok(cfg)
        }
        loaded => {
            // A misspelt name first: it often explains what follows.
            for w in &warnings {
                eprintln!("sluice: warning: {w}");
            }
            for e in loaded.err().iter().flat_map(|e| e.iter()) {
                eprintln!("sluice: {e}");
            }
            for p in &problems {
                eprintln!("sluice: {}", p.error);
            }
            Err(2)
        }
    }
}

fn check_config() -> i32 {
    let layers = Layers::from_process_env();
    for w in layers.unknown_variable_warnings() {
        eprintln!("sluice: warning: {w}");
    }
    let mut cfg = match load_config(&layers) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // As `run` would: its effective max_sessions counts on the open-file limit it sets.
    if crate::privilege::set_open_files(&cfg).is_ok() {
        cfg.recount_auto_max_sessions();
    }
    for (key, value, source) in &cfg.entries {
        println!("{key}={value} ({source})");
    }
    println!(
        "# effective: upstream {} -> {:?}",
        cfg.upstream_names(),
        cfg.upstream_addrs()
    );
    println!(
        "# effective: max_sessions={} workers={}",
        cfg.max_sessions, cfg.workers
    );
    debug_assert_eq!(cfg.entries.len(), KEYS.len());
    let mut status = 0;
    for p in preflight::check(&cfg, Inherited::default()) {
        if p.busy {
            let e = &p.error;
            eprintln!(
                "sluice: note: {}={}: {} (a start would fail unless that process hands over)",
                e.key, e.value, e.reason
            );
        } else {
            eprintln!("sluice: {}", p.error);
            status = 2;
        }
    }
    status
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
    let cfg = match prepare(&Layers::from_process_env()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut sup = match crate::supervisor::Supervisor::bind(cfg) {
        Ok(s) => s,
        Err(e) => {
            log::error!("not started error={}", crate::logfmt::Shown(&e));
            return 1;
        }
    };
    // Every socket is bound: from here on the supervisor needs no more than an upgrade's
    // bind, and its workers start from what it keeps.
    if let Err(e) = crate::privilege::switch_supervisor(sup.config()) {
        log::error!("supervisor: {e}");
        return 2;
    }
    if let Err(e) = sup.start_workers() {
        log::error!("{e}");
        return 1;
    }
    match sup.run() {
        Ok(()) => 0,
        Err(e) => {
            log::error!("supervisor failed error={}", crate::logfmt::Shown(&e));
            1
        }
    }
}

/// A worker started by the supervisor: inherited listener and command channel.
fn worker() -> i32 {
    let layers = Layers::from_process_env();
    let supervised = std::env::var_os(crate::handoff::WORKER).is_some();
    // Started by a supervisor, which checked and warned already: inherited sockets. By
    // hand: one standalone event loop that binds its own listener, control socket and
    // metrics (for benchmarks, debugging, or another process manager).
    // The supervisor resolved the configuration's names and handed them over: a worker
    // never resolves (a name it was not given is asked here, before the loop runs).
    let names = std::env::var(crate::handoff::NAMES)
        .ok()
        .and_then(|l| crate::config::names::Names::decode(&l).ok())
        .unwrap_or_default();
    std::env::remove_var(crate::handoff::NAMES);
    let known = crate::config::names::Known {
        names: &names,
        fallback: &crate::config::upstream::SystemResolver,
    };
    let cfg = if supervised {
        match layers.load_with(&known) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("sluice worker: {e}");
                return 2;
            }
        }
    } else {
        match prepare(&layers) {
            Ok(c) => c,
            Err(code) => return code,
        }
    };
    if supervised {
        // A standalone worker's logging started in `prepare`.
        if let Err(code) = init_logging(&cfg) {
            return code;
        }
    }
    let role = if supervised {
        match crate::worker::role::worker_role() {
            Ok(r) => r,
            Err(e) => {
                log::error!("worker role refused error={}", crate::logfmt::Shown(&e));
                return 2;
            }
        }
    } else {
        crate::worker::Role::default()
    };
    // A lone worker resolved its names in `prepare`, before any loop; its reloads use those
    // answers and never resolve on the loop (a name it has not seen is refused).
    let names = if supervised { names } else { names_in(&cfg) };
    let parent = crate::sys::process::parent_pid();
    let mut worker = match Worker::bound(layers, cfg, role) {
        Ok(w) => w.with_names(names),
        Err(e) => {
            log::error!("worker not started error={}", crate::logfmt::Shown(&e));
            return 1;
        }
    };
    // Its sockets held, the worker becomes ENVOY_USER before it reads a byte (and before
    // the capture writer's thread exists, so that it starts as unprivileged as the loop).
    if let Err(e) = crate::privilege::drop_worker(worker.config()) {
        log::error!("worker: {e}");
        return 2;
    }
    if supervised {
        // Linux forgets the parent-death signal when the ids change: armed again, and a
        // supervisor that died meanwhile is noticed.
        let _ = crate::sys::process::die_with_parent(libc::SIGTERM);
        if crate::sys::process::parent_pid() != parent {
            log::error!("worker: the supervisor is gone");
            return 1;
        }
    }
    if let Err(e) = worker.start_capture_writer() {
        log::error!("worker: {e}");
        return 1;
    }
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
    match words.first().map(String::as_str) {
        None => {
            eprint!("{CTL_HELP}");
            return 2;
        }
        Some("--help" | "-h") if words.len() == 1 => {
            print!("{CTL_HELP}");
            return 0;
        }
        // No command starts with a dash: an option here is a mistake, not a command.
        Some(w) if w.starts_with('-') => {
            eprintln!(
                "sluice ctl: unknown option \"{}\"\n\n{CTL_HELP}",
                crate::hexdump::Escaped(w.as_bytes())
            );
            return 2;
        }
        Some(_) => {}
    }
    let path = std::env::var("ENVOY_CONTROL_SOCKET").unwrap_or_default();
    if path.is_empty() {
        eprintln!("sluice ctl: ENVOY_CONTROL_SOCKET is not set");
        return 2;
    }
    if words == ["top"] {
        return crate::top::run(&path);
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

/// The addresses every name of `cfg` resolved to at its load: the upstreams of its routes,
/// default route and listeners, and a syslog collector's.
fn names_in(cfg: &Config) -> crate::config::names::Names {
    let mut names = crate::config::names::Names::default();
    let listeners = cfg
        .listeners
        .iter()
        .filter_map(|l| l.overrides.upstreams.as_ref());
    let members = cfg
        .routes
        .iter()
        .chain(std::iter::once(&cfg.default_route))
        .flat_map(|r| r.pool.members.iter())
        .chain(cfg.upstream.iter())
        .chain(listeners.flatten());
    for u in members {
        names.set(&u.name, u.addrs.clone());
    }
    if let crate::logger::Target::SyslogUdp {
        host,
        port,
        addr: Some(a),
    } = &cfg.log_target
    {
        names.set(&format!("{host}:{port}"), vec![*a]);
    }
    names
}
