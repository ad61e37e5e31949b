//! `latency`: N long-lived sessions, then 64-byte requests at a fixed total rate, spread
//! round-robin over the sessions, each timed until its 64-byte echo is back.
//!
//! Open loop: a request's latency runs from the moment it was due, not from when it could be
//! written, so a stall anywhere (proxy, upstream, or this generator) shows in the tail
//! instead of silently lowering the rate. Requests on one session may be pipelined; the
//! upstream (`serve --echo`) echoes in order, so the n-th 64 bytes back answer the n-th.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll};

use crate::args::Args;
use crate::pacer::Pacer;
use crate::report::{nanos, Line};
use crate::setup::{open_many, ANSWER_LEN};

const REQUEST: [u8; 64] = [b'x'; 64];

struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
    due: VecDeque<Instant>,
    partial: usize,
}

impl Conn {
    /// Writes what is pending; false if the connection is broken.
    fn flush(&mut self) -> bool {
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Reads echoes, recording each completed request's latency; false if broken or closed.
    fn receive(&mut self, scratch: &mut [u8], latencies: &mut Vec<u64>) -> bool {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => return false,
                Ok(n) => {
                    self.partial += n;
                    let now = Instant::now();
                    while self.partial >= REQUEST.len() {
                        self.partial -= REQUEST.len();
                        if let Some(due) = self.due.pop_front() {
                            latencies.push(nanos(now.duration_since(due)));
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }
}

pub fn run(a: &Args) -> Result<(), String> {
    let target = a.addr("target")?;
    let frame = crate::frame::load(a)?;
    let n: usize = a.req("conns")?;
    let rate: f64 = a.req("rate")?;
    let duration = a.secs("duration")?.ok_or("--duration is required")?;
    let timeout = a.secs("timeout")?.unwrap_or(Duration::from_secs(5));
    if n == 0 || !(rate > 0.0 && rate.is_finite()) {
        return Err("--conns and --rate must be > 0".into());
    }

    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let opened = open_many(&mut poll, target, None, &frame, n, 256, timeout);
    let mut conns: Vec<Option<Conn>> = opened
        .streams
        .into_iter()
        .map(|s| {
            s.map(|stream| Conn {
                stream,
                out: Vec::with_capacity(256),
                due: VecDeque::new(),
                partial: 0,
            })
        })
        .collect();
    let established = conns.iter().filter(|c| c.is_some()).count();
    if established == 0 {
        return Err(format!("no session could be opened to {target}"));
    }
    // Opening registered every stream readable + writable; from now on the edges matter.
    for (i, c) in conns.iter_mut().enumerate() {
        if let Some(c) = c {
            let _ = poll.registry().reregister(
                &mut c.stream,
                mio::Token(i),
                Interest::READABLE | Interest::WRITABLE,
            );
        }
    }

    let mut events = Events::with_capacity(1024);
    let mut scratch = [0u8; 16 * 1024];
    let mut latencies: Vec<u64> = Vec::with_capacity((rate * duration.as_secs_f64()) as usize + 16);
    let (mut sent, mut broken, mut lost) = (0u64, 0u64, 0u64);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let deadline = start + duration;
    let mut next_due = start;
    let mut rr = 0usize;
    let pacer_token = mio::Token(usize::MAX);
    let pacer = Pacer::new(&poll, pacer_token).map_err(|e| e.to_string())?;

    loop {
        let now = Instant::now();
        while next_due <= now && next_due < deadline {
            // The next live session, round-robin.
            for _ in 0..conns.len() {
                rr = (rr + 1) % conns.len();
                if let Some(c) = conns[rr].as_mut() {
                    c.out.extend_from_slice(&REQUEST);
                    c.due.push_back(next_due);
                    sent += 1;
                    if !c.flush() {
                        lost += c.due.len() as u64;
                        conns[rr] = None;
                        broken += 1;
                    }
                    break;
                }
            }
            next_due += interval;
        }
        let outstanding: usize = conns.iter().flatten().map(|c| c.due.len()).sum();
        if now >= deadline && (outstanding == 0 || now > deadline + timeout) {
            lost += outstanding as u64;
            break;
        }
        if conns.iter().all(|c| c.is_none()) {
            break;
        }
        if now < deadline {
            pacer.arm(next_due.saturating_duration_since(Instant::now()));
        }
        poll.poll(&mut events, Some(Duration::from_millis(10)))
            .map_err(|e| e.to_string())?;
        for event in events.iter() {
            if event.token() == pacer_token {
                pacer.clear();
                continue;
            }
            let i = event.token().0;
            let Some(c) = conns.get_mut(i).and_then(|c| c.as_mut()) else {
                continue;
            };
            if !(c.flush() && c.receive(&mut scratch, &mut latencies)) {
                lost += c.due.len() as u64;
                conns[i] = None;
                broken += 1;
            }
        }
    }

    let elapsed = start.elapsed();
    let mut line = Line::new("latency");
    line.str("target", &target.to_string())
        .int("conns", n as u64)
        .int("established", established as u64)
        .int("open_errors", opened.failures.total())
        .num("offered_rate", rate)
        .num("elapsed_s", elapsed.as_secs_f64())
        .int("sent", sent)
        .int("answered", latencies.len() as u64)
        .int("lost", lost)
        .int("broken", broken)
        .int("request_bytes", REQUEST.len() as u64)
        .int("answer_bytes", ANSWER_LEN as u64);
    line.percentiles(&mut latencies).own_cpu().print();
    Ok(())
}
