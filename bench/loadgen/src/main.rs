//! `loadgen`: the load generator and the benchmark upstream of sluice's harness (bench/run).
//!
//! One single-threaded `mio` loop per command, never a thread per connection, so that the
//! generator's own cost stays small and visible (it reports its CPU time). Every command
//! prints one JSON line on stdout; `idle` prints a second one when all its sessions are held.
//!
//! ```text
//! loadgen serve    --listen ADDR [--echo]
//! loadgen sessions --target ADDR --frame FILE (--concurrency N | --rate R)
//!                  (--duration S | --count N) [--strip-proxy] [--timeout S]
//! loadgen latency  --target ADDR --frame FILE --conns N --rate R --duration S [--strip-proxy]
//! loadgen idle     --target ADDR --frame FILE --conns N --hold S [--strip-proxy] [--source IP]
//! ```

#![deny(unsafe_op_in_unsafe_fn)]

mod args;
mod frame;
mod idle;
mod latency;
mod pacer;
mod report;
mod serve;
mod sessions;
mod setup;

use std::process::ExitCode;

const USAGE: &str = "\
usage:
  loadgen serve    --listen ADDR [--echo]
  loadgen sessions --target ADDR --frame FILE (--concurrency N | --rate R)
                   (--duration S | --count N) [--strip-proxy] [--timeout S]
  loadgen latency  --target ADDR --frame FILE --conns N --rate R --duration S [--strip-proxy]
  loadgen idle     --target ADDR --frame FILE --conns N --hold S [--strip-proxy] [--source IP]
";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = argv.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = args::Args::parse(rest).and_then(|a| match command.as_str() {
        "serve" => serve::run(&a),
        "sessions" => sessions::run(&a),
        "latency" => latency::run(&a),
        "idle" => idle::run(&a),
        other => Err(format!("unknown command {other:?}")),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen {command}: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
