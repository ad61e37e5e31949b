//! Parse micro-benchmark: for every fixture that holds a complete ClientHello, the work the
//! event loop does before routing a session (the PROXY header, if any, then the ClientHello),
//! timed in batches. `make bench-parse`; `make bench-parse-instructions` for instruction
//! counts under callgrind. Results and how they were taken: bench/PARSE.md.
//!
//! Environment: `PARSE_BENCH_ITERS` parses per batch (default 20000), `PARSE_BENCH_ONLY` one
//! fixture by name (with or without `.bin`). Every run does [`BATCHES`] batches.
//! Uses nothing but `std`: `Instant` for the clock, `black_box` to keep the work in.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;
use std::{env, fs, process};

use sluice::wire::proxy::{self, ProxyError};
use sluice::wire::tls::{self, MAX_HELLO_LEN};
use sluice::wire::Parsed;

/// Batches per fixture; the median is reported.
const BATCHES: usize = 5;
const DEFAULT_ITERS: u64 = 20_000;

/// What one parse found, so the loop's result depends on all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parse {
    header_len: usize,
    hello_len: usize,
    records: usize,
    sni_len: usize,
}

/// The PROXY header (if the bytes start with one) then the ClientHello, as the event loop
/// runs them. `None` when either is not complete and valid.
fn parse(buf: &[u8], scratch: &mut [u8]) -> Option<Parse> {
    let header_len = match proxy::parse(buf) {
        Parsed::Complete(h, n) => {
            black_box(&h);
            n
        }
        Parsed::Invalid(ProxyError::NotProxy) => 0,
        Parsed::NeedMore | Parsed::Invalid(_) => return None,
    };
    let hello = buf.get(header_len..)?;
    match tls::parse_client_hello(hello, scratch) {
        Parsed::Complete(h, n) => Some(Parse {
            header_len,
            hello_len: n,
            records: h.records,
            sni_len: h.sni.map_or(0, str::len),
        }),
        Parsed::NeedMore | Parsed::Invalid(_) => None,
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("{name}={v:?} is not a valid value");
            process::exit(2)
        }),
        Err(_) => default,
    }
}

fn main() {
    let iters: u64 = env_or("PARSE_BENCH_ITERS", DEFAULT_ITERS).max(1);
    let only = env::var("PARSE_BENCH_ONLY").ok();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{}: {e}", dir.display());
            process::exit(2);
        }
    };
    let mut fixtures: Vec<(String, Vec<u8>)> = entries
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_name()?.to_str()?.strip_suffix(".bin")?.to_owned();
            Some((name, fs::read(&path).ok()?))
        })
        .filter(|(name, _)| {
            only.as_deref()
                .is_none_or(|o| o == name || o.strip_suffix(".bin") == Some(name))
        })
        .collect();
    fixtures.sort();
    if fixtures.is_empty() {
        eprintln!("no fixture matches PARSE_BENCH_ONLY={only:?}");
        process::exit(2);
    }

    let mut scratch = vec![0u8; MAX_HELLO_LEN];
    println!(
        "{:<48} {:>5} {:>4} {:>5} {:>4} {:>9} {:>9} {:>9}",
        "fixture", "bytes", "hdr", "hello", "recs", "ns/parse", "min", "max"
    );
    for (name, bytes) in &fixtures {
        let Some(once) = parse(bytes, &mut scratch) else {
            eprintln!("{name}: skipped (no complete PROXY header + ClientHello)");
            continue;
        };
        let mut per_parse = [0f64; BATCHES];
        for slot in per_parse.iter_mut() {
            let start = Instant::now();
            for _ in 0..iters {
                let got = parse(black_box(bytes), black_box(&mut scratch));
                black_box(got);
            }
            *slot = start.elapsed().as_nanos() as f64 / iters as f64;
        }
        per_parse.sort_by(f64::total_cmp);
        println!(
            "{:<48} {:>5} {:>4} {:>5} {:>4} {:>9.1} {:>9.1} {:>9.1}",
            name,
            once.header_len + once.hello_len,
            once.header_len,
            once.hello_len,
            once.records,
            per_parse[BATCHES / 2],
            per_parse[0],
            per_parse[BATCHES - 1],
        );
        debug_assert!(once.sni_len <= 253);
    }
}
