//! `sessions`: whole sessions (connect, frame, 64-byte answer, close), one after another.
//!
//! Closed loop (`--concurrency N`): N sessions always in flight, a new one as soon as one
//! ends. Open loop (`--rate R`): a session starts every 1/R s whatever happens to the others
//! (at most `--max-inflight`; past that a start is counted as dropped). Latency is from
//! connect() to the whole answer. Stops after `--duration` or `--count` sessions, then waits
//! for those in flight (at most `--timeout`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use slab::Slab;

use crate::args::Args;
use crate::pacer::Pacer;
use crate::report::{nanos, Line};
use crate::setup::{Failures, Opening, Step, SCAN_EVERY};

enum Load {
    Concurrency(usize),
    Rate(f64),
}

struct Plan {
    target: SocketAddr,
    frame: Vec<u8>,
    load: Load,
    duration: Option<Duration>,
    count: Option<u64>,
    timeout: Duration,
    max_inflight: usize,
}

impl Plan {
    fn from_args(a: &Args) -> Result<Plan, String> {
        let load = match (a.opt("concurrency")?, a.opt::<f64>("rate")?) {
            (Some(n), None) if n > 0 => Load::Concurrency(n),
            (None, Some(r)) if r > 0.0 && r.is_finite() => Load::Rate(r),
            _ => return Err("give one of --concurrency N (> 0) or --rate R (> 0)".into()),
        };
        let duration = a.secs("duration")?;
        let count = a.opt("count")?;
        if duration.is_none() && count.is_none() {
            return Err("give --duration S or --count N".into());
        }
        Ok(Plan {
            target: a.addr("target")?,
            frame: crate::frame::load(a)?,
            load,
            duration,
            count,
            timeout: a.secs("timeout")?.unwrap_or(Duration::from_secs(5)),
            max_inflight: a.opt("max-inflight")?.unwrap_or(8000),
        })
    }
}

pub fn run(a: &Args) -> Result<(), String> {
    let plan = Plan::from_args(a)?;
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut events = Events::with_capacity(1024);
    let mut scratch = [0u8; 4096];
    let mut live: Slab<Opening> = Slab::with_capacity(1024);
    let mut latencies: Vec<u64> = Vec::with_capacity(1 << 16);
    let mut failures = Failures::default();
    let (mut started, mut dropped, mut max_lag) = (0u64, 0u64, Duration::ZERO);

    let start = Instant::now();
    let deadline = plan.duration.map(|d| start + d);
    let interval = match plan.load {
        Load::Rate(r) => Duration::from_secs_f64(1.0 / r),
        Load::Concurrency(_) => Duration::ZERO,
    };
    let mut next_due = start;
    let mut stopped_at: Option<Instant> = None;
    let mut last_scan = start;
    let pacer_token = Token(usize::MAX);
    let pacer = Pacer::new(&poll, pacer_token).map_err(|e| e.to_string())?;

    loop {
        let now = Instant::now();
        if stopped_at.is_none()
            && (deadline.is_some_and(|d| now >= d) || plan.count.is_some_and(|c| started >= c))
        {
            stopped_at = Some(now);
        }
        if stopped_at.is_none() {
            let open = |live: &mut Slab<Opening>, failures: &mut Failures| {
                let entry = live.vacant_entry();
                match Opening::start(&poll, plan.target, Token(entry.key())) {
                    Ok(o) => {
                        entry.insert(o);
                    }
                    Err(f) => failures.count(f),
                }
            };
            match plan.load {
                Load::Concurrency(n) => {
                    while live.len() < n && plan.count.is_none_or(|c| started < c) {
                        open(&mut live, &mut failures);
                        started += 1;
                    }
                }
                Load::Rate(_) => {
                    while next_due <= now && plan.count.is_none_or(|c| started < c) {
                        max_lag = max_lag.max(now - next_due);
                        if live.len() < plan.max_inflight {
                            open(&mut live, &mut failures);
                        } else {
                            dropped += 1;
                        }
                        started += 1;
                        next_due += interval;
                    }
                }
            }
        }
        if let Some(stop) = stopped_at {
            if live.is_empty() || now.duration_since(stop) > plan.timeout {
                break;
            }
        }

        if let (Load::Rate(_), None) = (&plan.load, stopped_at) {
            pacer.arm(next_due.saturating_duration_since(Instant::now()));
        }
        poll.poll(&mut events, Some(SCAN_EVERY))
            .map_err(|e| e.to_string())?;
        for event in events.iter() {
            if event.token() == pacer_token {
                pacer.clear();
                continue;
            }
            let key = event.token().0;
            let Some(o) = live.get_mut(key) else { continue };
            match o.advance(&plan.frame, &mut scratch) {
                Step::Pending => continue,
                Step::Answered => latencies.push(nanos(o.started.elapsed())),
                Step::Failed(f) => failures.count(f),
            }
            // Closing without deregistering: epoll forgets a descriptor when it is closed.
            live.remove(key);
        }

        let now = Instant::now();
        if now.duration_since(last_scan) >= SCAN_EVERY {
            last_scan = now;
            live.retain(|_, o| {
                let alive = now.duration_since(o.started) <= plan.timeout;
                if !alive {
                    failures.count(crate::setup::Failure::Timeout);
                }
                alive
            });
        }
    }

    let elapsed = start.elapsed();
    let unfinished = live.len() as u64;
    drop(live);
    let mut line = Line::new("sessions");
    line.str("target", &plan.target.to_string())
        .int("frame_bytes", plan.frame.len() as u64);
    match plan.load {
        Load::Concurrency(n) => line.int("concurrency", n as u64),
        Load::Rate(r) => line.num("offered_rate", r),
    };
    line.num("elapsed_s", elapsed.as_secs_f64())
        .int("started", started)
        .int("completed", latencies.len() as u64)
        .num(
            "sessions_per_s",
            latencies.len() as f64 / elapsed.as_secs_f64(),
        )
        .int("dropped", dropped)
        .int("unfinished", unfinished)
        .num("max_start_lag_us", max_lag.as_secs_f64() * 1e6);
    failures.write(&mut line);
    line.percentiles(&mut latencies).own_cpu().print();
    Ok(())
}
