//! `idle`: open N sessions (connect, frame, answer), hold them idle for `--hold` seconds,
//! then close them all. Prints a first JSON line (`"phase":"holding"`) once every session is
//! open, so that the caller can read the proxy's memory while they are held, and a second
//! one at the end.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use crate::args::Args;
use crate::report::Line;
use crate::setup::open_many;

pub fn run(a: &Args) -> Result<(), String> {
    let target = a.addr("target")?;
    let frame = crate::frame::load(a)?;
    let n: usize = a.req("conns")?;
    let hold = a.secs("hold")?.ok_or("--hold is required")?;
    let source: Option<std::net::IpAddr> = a.opt("source")?;
    let timeout = a.secs("timeout")?.unwrap_or(Duration::from_secs(10));

    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut opened = open_many(&mut poll, target, source, &frame, n, 256, timeout);
    let established = opened.streams.iter().filter(|s| s.is_some()).count();
    let mut line = Line::new("idle");
    line.str("phase", "holding")
        .str("target", &target.to_string())
        .int("conns", n as u64)
        .int("established", established as u64)
        .num("open_s", opened.elapsed.as_secs_f64());
    opened.failures.write(&mut line);
    line.print();
    // The caller reads this line from a file or pipe while we hold.
    let _ = io::Write::flush(&mut io::stdout());

    // Held sessions should stay silent; any that closes or resets is counted.
    let mut events = Events::with_capacity(1024);
    let mut scratch = [0u8; 4096];
    let mut closed_while_held = 0u64;
    let end = Instant::now() + hold;
    while let Some(wait) = end.checked_duration_since(Instant::now()) {
        poll.poll(&mut events, Some(wait))
            .map_err(|e| e.to_string())?;
        for event in events.iter() {
            let i = event.token().0;
            let Some(stream) = opened.streams.get_mut(i).and_then(|s| s.as_mut()) else {
                continue;
            };
            let gone = loop {
                match stream.read(&mut scratch) {
                    Ok(0) => break true,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break true,
                }
            };
            if gone {
                opened.streams[i] = None;
                closed_while_held += 1;
            }
        }
    }
    let still_open = opened.streams.iter().filter(|s| s.is_some()).count();
    drop(opened.streams);

    let mut line = Line::new("idle");
    line.str("phase", "done")
        .str("target", &target.to_string())
        .int("conns", n as u64)
        .int("established", established as u64)
        .int("closed_while_held", closed_while_held)
        .int("held_to_end", still_open as u64)
        .num("hold_s", hold.as_secs_f64());
    opened.failures.write(&mut line);
    line.own_cpu().print();
    Ok(())
}
