//! The shuffle: once the upstream leg is open, bytes move both ways, each direction through
//! its own [`Flow`], until both have ended. Also the readiness a session remembers between
//! edge-triggered events ([`Ready`]), which the earlier phases use too.
//!
//! Readiness is edge-triggered: every read and write loops until `WouldBlock` (or a short
//! read or write, which says the same), within [`READ_BUDGET`] reads per direction per
//! wakeup. A direction holds a pool buffer only while it has bytes in flight, or a splice
//! pipe once it moves bulk. Nothing here parses, routes or knows what a session is; nothing
//! here interprets `io::ErrorKind` (see `net::Io`); no `unsafe` (splice is behind
//! `worker::splice`).

use std::net::Shutdown;
use std::os::fd::AsRawFd;

use mio::net::TcpStream;

use crate::net::{self, Io};
use crate::worker::buffer::{Buffer, Pool};
use crate::worker::splice::{Pipe, PipePool, PIPE_CAP};
use crate::worker::stats::{CloseReason, Stats};

/// Reads per direction per wakeup before a session yields to others.
pub const READ_BUDGET: usize = 16;

/// Readiness remembered between edge-triggered events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// A read may find bytes (or the end).
    pub readable: bool,
    /// A write may be taken.
    pub writable: bool,
    /// The peer's FIN (or an error) was reported: read on until a read says so, since no
    /// further edge will come.
    pub hup: bool,
}

/// What one readiness event said about a socket (the bits of a `mio` event).
#[derive(Debug, Default, Clone, Copy)]
pub struct Reported {
    /// Bytes arrived.
    pub readable: bool,
    /// Room to write.
    pub writable: bool,
    /// The peer sent FIN.
    pub read_closed: bool,
    /// The peer will read nothing more.
    pub write_closed: bool,
    /// An error is pending on the socket.
    pub error: bool,
}

impl Ready {
    /// Both ways ready: what is assumed of a socket just accepted or just connecting, so that
    /// the first read or write is tried at once instead of waiting for an event.
    pub const OPTIMISTIC: Ready = Ready {
        readable: true,
        writable: true,
        hup: false,
    };

    /// Adds what an event reported. A closed side or an error counts as ready: the next read
    /// or write is what finds out, and reports it the one way the session understands.
    #[inline]
    pub fn record(&mut self, e: Reported) {
        self.readable |= e.readable || e.read_closed || e.error;
        self.writable |= e.writable || e.write_closed || e.error;
        self.hup |= e.read_closed || e.error;
    }

    /// After a read of `n` bytes into `room`: a short read drained the socket (as haproxy
    /// concludes too), so the EAGAIN read that would prove it is skipped; the next arrival
    /// brings a new edge. Not once FIN or an error was reported: that read must be made.
    pub fn after_read(&mut self, n: usize, room: usize) {
        if n < room && !self.hup {
            self.readable = false;
        }
    }
}

/// One direction of the shuffle.
#[derive(Default)]
pub struct Flow {
    /// Bytes read and not yet written; `None` while idle.
    buf: Option<Buffer>,
    /// Bytes written to the destination.
    bytes: u64,
    /// The source sent FIN.
    eof: bool,
    /// FIN was passed on to the destination (or left to the close, see [`Fin`]).
    shut: bool,
    /// A read filled the whole buffer: bulk; splice when the buffer is next empty.
    bulk: bool,
    /// The splice pipe holding this direction's bytes in flight, instead of `buf`.
    pipe: Option<Pipe>,
    /// Of `bytes`, those moved through the pipe.
    spliced: u64,
}

impl Flow {
    /// A direction that starts with what an earlier phase read (and whether its source
    /// already ended).
    pub fn carrying(buf: Option<Buffer>, eof: bool) -> Flow {
        Flow {
            buf,
            eof,
            ..Flow::default()
        }
    }

    /// Bytes written to the destination so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The source ended and its FIN went on: nothing more will move this way.
    pub fn done(&self) -> bool {
        self.eof && self.shut
    }

    fn pending(&self) -> usize {
        self.buf.as_ref().map_or(0, Buffer::len) + self.pipe.as_ref().map_or(0, |p| p.len)
    }

    /// The bytes waiting to go out, if any (the connect probe writes them).
    pub fn waiting(&mut self) -> Option<&mut Buffer> {
        self.buf.as_mut().filter(|b| !b.is_empty())
    }

    /// `n` bytes of [`Flow::waiting`] were written.
    pub fn wrote(&mut self, n: usize) {
        if let Some(b) = self.buf.as_mut() {
            b.consume(n);
        }
        self.bytes += n as u64;
    }

    fn release_buf(&mut self, pool: &mut Pool) {
        if let Some(b) = self.buf.take() {
            pool.give(b);
        }
    }

    fn release_pipe(&mut self, pipes: &mut PipePool) {
        if let Some(p) = self.pipe.take() {
            pipes.give(p);
        }
    }

    /// Gives the buffer and the pipe back.
    #[inline]
    pub fn release(&mut self, pool: &mut Pool, pipes: &mut PipePool) {
        self.release_buf(pool);
        self.release_pipe(pipes);
    }
}

/// What happens to a direction's FIN after a pump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fin {
    /// Not now: the source has not ended, bytes are still in flight, or it went on already.
    NotYet,
    /// shutdown(Write) on the destination now: the other direction still flows.
    PassOn,
    /// The other direction is over too: the session closes at once and the close sends the
    /// FIN, so no shutdown call (both sockets were read to EOF: a FIN, not a RST).
    LeftToClose,
}

impl Fin {
    /// The FIN decision for a direction whose source `eof`, whose FIN is `shut` already, with
    /// `pending` bytes in flight, when the other direction is `other_done`.
    pub fn decide(eof: bool, shut: bool, pending: usize, other_done: bool) -> Fin {
        if !eof || shut || pending > 0 {
            Fin::NotYet
        } else if other_done {
            Fin::LeftToClose
        } else {
            Fin::PassOn
        }
    }
}

/// What a round of the shuffle came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shuffled {
    /// Wait for readiness.
    Wait,
    /// A read budget ran out with the source still readable: shuffle again next turn.
    Again,
    /// The session is over: both directions done ([`CloseReason::Done`]) or a leg failed.
    Over(CloseReason),
}

/// The shuffling phase: the upstream socket and both flows. The client socket is the
/// session's, lent to each round.
pub struct Shuffling {
    upstream: TcpStream,
    upstream_ready: Ready,
    /// What is left of the PROXY v2 header; nothing of the client's may overtake it.
    preamble: Option<Buffer>,
    /// Client to upstream.
    up: Flow,
    /// Upstream to client.
    down: Flow,
    /// When bytes last moved (for the idle timeout).
    last_active_ms: u64,
    /// One direction ended before the other (sticky: the label stays once both are done).
    half_closed: bool,
}

impl Shuffling {
    /// The shuffle, starting from what the connecting phase hands on.
    pub fn new(
        upstream: TcpStream,
        upstream_ready: Ready,
        preamble: Option<Buffer>,
        (up, down): (Flow, Flow),
        now_ms: u64,
    ) -> Shuffling {
        Shuffling {
            upstream,
            upstream_ready,
            preamble,
            up,
            down,
            last_active_ms: now_ms,
            half_closed: false,
        }
    }

    /// The upstream socket's readiness, for events.
    pub fn upstream_ready(&mut self) -> &mut Ready {
        &mut self.upstream_ready
    }

    /// Bytes written to the upstream and to the client so far.
    pub fn bytes(&self) -> (u64, u64) {
        (self.up.bytes, self.down.bytes)
    }

    /// When bytes last moved.
    pub fn last_active_ms(&self) -> u64 {
        self.last_active_ms
    }

    /// One direction has ended and the other still flows (or did until the close).
    pub fn half_closed(&self) -> bool {
        self.half_closed
    }

    /// Gives every buffer and pipe back.
    pub fn release(&mut self, pool: &mut Pool, pipes: &mut PipePool) {
        self.up.release(pool, pipes);
        self.down.release(pool, pipes);
        if let Some(b) = self.preamble.take() {
            pool.give(b);
        }
    }

    /// Moves bytes both ways as far as readiness and the budget allow, and passes FIN on.
    pub fn shuffle(
        &mut self,
        client: &mut TcpStream,
        client_ready: &mut Ready,
        (pool, pipes): (&mut Pool, &mut PipePool),
        stats: &mut Stats,
        now_ms: u64,
    ) -> Shuffled {
        let upstream = &mut self.upstream;
        let before = (self.up.bytes, self.down.bytes);
        let spliced_before = self.up.spliced + self.down.spliced;
        let flushed = match flush_preamble(
            &mut self.preamble,
            upstream,
            &mut self.upstream_ready.writable,
            pool,
        ) {
            Ok(f) => f,
            Err(reason) => return Shuffled::Over(reason),
        };
        // Until the preamble is out, nothing of the client's may overtake it.
        let mut no_write = false;
        let up_writable = if flushed {
            &mut self.upstream_ready.writable
        } else {
            &mut no_write
        };
        let a = pump(
            client,
            client_ready,
            upstream,
            up_writable,
            &mut self.up,
            (pool, pipes),
            (CloseReason::ClientReset, CloseReason::UpstreamReset),
        );
        if a.is_ok() {
            pass_fin(upstream, &mut self.up, self.down.done());
        }
        let b = pump(
            upstream,
            &mut self.upstream_ready,
            client,
            &mut client_ready.writable,
            &mut self.down,
            (pool, pipes),
            (CloseReason::UpstreamReset, CloseReason::ClientReset),
        );
        if b.is_ok() {
            pass_fin(client, &mut self.down, self.up.done());
        }
        stats.bytes_up += self.up.bytes - before.0;
        stats.bytes_down += self.down.bytes - before.1;
        stats.bytes_spliced += self.up.spliced + self.down.spliced - spliced_before;
        if (self.up.bytes, self.down.bytes) != before {
            self.last_active_ms = now_ms;
        }
        for r in [a, b] {
            if let Err(reason) = r {
                return Shuffled::Over(reason);
            }
        }
        match (self.up.done(), self.down.done()) {
            (true, true) => return Shuffled::Over(CloseReason::Done),
            (true, false) | (false, true) => self.half_closed = true,
            (false, false) => {}
        }
        if a == Ok(true) || b == Ok(true) {
            Shuffled::Again
        } else {
            Shuffled::Wait
        }
    }
}

/// Writes what is left of the preamble. `Ok(true)` once nothing of it is left.
fn flush_preamble(
    pre: &mut Option<Buffer>,
    dst: &mut TcpStream,
    dst_writable: &mut bool,
    pool: &mut Pool,
) -> Result<bool, CloseReason> {
    let Some(buf) = pre.as_mut() else {
        return Ok(true);
    };
    while !buf.is_empty() && *dst_writable {
        match net::write(dst, buf.data()) {
            Io::Done(n) => buf.consume(n),
            Io::WouldBlock => *dst_writable = false,
            Io::Closed | Io::Error(_) => return Err(CloseReason::UpstreamReset),
        }
    }
    if buf.is_empty() {
        if let Some(b) = pre.take() {
            pool.give(b);
        }
        return Ok(true);
    }
    Ok(false)
}

/// Moves bytes from `src` to `dst` through `flow`: through its splice pipe when it has one
/// (or can get one, once the direction is bulk and its buffer is empty), else through its
/// buffer. Stops when both sides would block, the buffer or pipe is full and `dst` cannot
/// take more (backpressure), the source ended, or the read budget is spent; the caller
/// passes FIN on ([`pass_fin`]). `Ok(true)`: budget spent with the source still readable.
/// Errors carry the close reason for (src, dst) failures.
fn pump(
    src: &mut TcpStream,
    src_ready: &mut Ready,
    dst: &mut TcpStream,
    dst_writable: &mut bool,
    flow: &mut Flow,
    (pool, pipes): (&mut Pool, &mut PipePool),
    fails: (CloseReason, CloseReason),
) -> Result<bool, CloseReason> {
    if flow.pipe.is_none() && flow.bulk && flow.pending() == 0 && !flow.eof {
        flow.bulk = false;
        flow.pipe = pipes.take();
        if flow.pipe.is_some() {
            flow.release_buf(pool);
        }
    }
    if flow.pipe.is_some() {
        let readable = &mut src_ready.readable;
        return pump_spliced(src, readable, dst, dst_writable, flow, pipes, fails);
    }
    let (src_fail, dst_fail) = fails;
    let mut reads = 0;
    let mut more = false;
    loop {
        if let Some(buf) = flow.buf.as_mut() {
            if !buf.is_empty() && *dst_writable {
                match net::write(dst, buf.data()) {
                    Io::Done(n) => {
                        // A short write filled the socket: the EAGAIN write is skipped.
                        *dst_writable = n == buf.len();
                        buf.consume(n);
                        flow.bytes += n as u64;
                        continue;
                    }
                    Io::WouldBlock => *dst_writable = false,
                    Io::Closed | Io::Error(_) => return Err(dst_fail),
                }
            }
        }
        if flow.eof || !src_ready.readable || flow.buf.as_ref().is_some_and(Buffer::is_full) {
            break;
        }
        if reads == READ_BUDGET {
            more = true;
            break;
        }
        if flow.buf.is_none() {
            flow.buf = Some(pool.take().ok_or(CloseReason::NoBuffer)?);
        }
        let Some(buf) = flow.buf.as_mut() else { break };
        reads += 1;
        let room = buf.space().len();
        match net::read(src, buf.space()) {
            Io::Done(n) => {
                flow.bulk |= n == buf.capacity();
                buf.filled(n);
                src_ready.after_read(n, room);
            }
            Io::WouldBlock => src_ready.readable = false,
            Io::Closed => flow.eof = true,
            Io::Error(_) => return Err(src_fail),
        }
    }
    if flow.pending() == 0 {
        flow.release_buf(pool);
    }
    Ok(more)
}

/// `pump` for a direction holding a splice pipe.
fn pump_spliced(
    src: &mut TcpStream,
    src_readable: &mut bool,
    dst: &mut TcpStream,
    dst_writable: &mut bool,
    flow: &mut Flow,
    pipes: &mut PipePool,
    (src_fail, dst_fail): (CloseReason, CloseReason),
) -> Result<bool, CloseReason> {
    let Some(pipe) = flow.pipe.as_mut() else {
        return Ok(false);
    };
    let mut reads = 0;
    let mut more = false;
    loop {
        if pipe.len > 0 && *dst_writable {
            match pipe.drain_to(dst.as_raw_fd()) {
                Io::Done(n) => {
                    flow.bytes += n as u64;
                    flow.spliced += n as u64;
                    continue;
                }
                Io::WouldBlock => *dst_writable = false,
                Io::Closed | Io::Error(_) => return Err(dst_fail),
            }
        }
        if flow.eof || !*src_readable || pipe.len >= PIPE_CAP {
            break;
        }
        if reads == READ_BUDGET {
            more = true;
            break;
        }
        reads += 1;
        match pipe.fill_from(src.as_raw_fd(), PIPE_CAP - pipe.len) {
            Io::Done(_) => {}
            // EAGAIN means "socket empty" or "pipe full" (its capacity counts pages, not
            // bytes): only an empty pipe proves the socket is drained; otherwise drain first.
            Io::WouldBlock if pipe.len == 0 => *src_readable = false,
            Io::WouldBlock if !*dst_writable => break,
            Io::WouldBlock => {}
            Io::Closed => flow.eof = true,
            Io::Error(_) => return Err(src_fail),
        }
    }
    if pipe.len == 0 && flow.eof {
        flow.release_pipe(pipes); // this direction is over: the descriptors go back
    }
    Ok(more)
}

/// Passes FIN on to `dst` once `flow`'s source ended and nothing is left in flight (see
/// [`Fin`]); `other_done`: the other direction is over.
fn pass_fin(dst: &mut TcpStream, flow: &mut Flow, other_done: bool) {
    match Fin::decide(flow.eof, flow.shut, flow.pending(), other_done) {
        Fin::NotYet => {}
        Fin::PassOn => {
            // Not an error if the peer is already gone: the other direction will tell.
            let _ = dst.shutdown(Shutdown::Write);
            flow.shut = true;
        }
        Fin::LeftToClose => flow.shut = true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_read_drains_unless_fin_or_an_error_was_reported() {
        // (n, room, hup) -> still readable
        let cases = [
            (10, 100, false, false), // short: drained, the EAGAIN read is skipped
            (100, 100, false, true), // filled the room: there may be more
            (0, 100, false, false),  // nothing at all: drained
            (10, 100, true, true),   // FIN reported: read on until the read says so
            (100, 100, true, true),
        ];
        for (n, room, hup, readable) in cases {
            let mut r = Ready {
                readable: true,
                writable: false,
                hup,
            };
            r.after_read(n, room);
            assert_eq!(r.readable, readable, "n={n} room={room} hup={hup}");
            assert!(!r.writable, "a read says nothing of writes");
        }
    }

    #[test]
    fn events_add_readiness_and_never_take_it_away() {
        let none = Reported::default();
        let cases = [
            // (reported, expected) starting from nothing
            (none, Ready::default()),
            (
                Reported {
                    readable: true,
                    ..none
                },
                Ready {
                    readable: true,
                    ..Ready::default()
                },
            ),
            (
                Reported {
                    writable: true,
                    ..none
                },
                Ready {
                    writable: true,
                    ..Ready::default()
                },
            ),
            (
                Reported {
                    read_closed: true,
                    ..none
                },
                Ready {
                    readable: true,
                    hup: true,
                    ..Ready::default()
                },
            ),
            (
                Reported {
                    write_closed: true,
                    ..none
                },
                Ready {
                    writable: true,
                    ..Ready::default()
                },
            ),
            (
                Reported {
                    error: true,
                    ..none
                },
                Ready {
                    readable: true,
                    writable: true,
                    hup: true,
                },
            ),
        ];
        for (reported, expected) in cases {
            let mut r = Ready::default();
            r.record(reported);
            assert_eq!(r, expected, "{reported:?}");
            let mut all = Ready {
                readable: true,
                writable: true,
                hup: true,
            };
            all.record(reported);
            assert!(all.readable && all.writable && all.hup, "never taken away");
        }
    }

    #[test]
    fn fin_goes_on_once_the_source_ended_and_nothing_is_in_flight() {
        use Fin::*;
        // (eof, shut, pending, other_done) -> decision
        let cases = [
            (false, false, 0, false, NotYet),    // source still open
            (false, false, 0, true, NotYet),     // even when the other way is over
            (true, false, 5, false, NotYet),     // bytes in flight go first
            (true, false, 5, true, NotYet),      //
            (true, true, 0, false, NotYet),      // passed on already
            (true, true, 0, true, NotYet),       //
            (true, false, 0, false, PassOn),     // half close: shutdown(Write) now
            (true, false, 0, true, LeftToClose), // the last direction: the close sends it
        ];
        for (eof, shut, pending, other, expected) in cases {
            assert_eq!(
                Fin::decide(eof, shut, pending, other),
                expected,
                "eof={eof} shut={shut} pending={pending} other_done={other}"
            );
        }
    }

    #[test]
    fn a_flow_carried_from_the_handshake_keeps_its_bytes_and_fin() {
        let mut pool = Pool::new(64, 4, 4);
        let mut pipes = PipePool::new(0, 0);
        let mut b = pool.take().unwrap();
        b.space()[..5].copy_from_slice(b"hello");
        b.filled(5);
        let mut f = Flow::carrying(Some(b), true);
        assert_eq!(
            f.waiting().map(|b| b.data().to_vec()),
            Some(b"hello".to_vec())
        );
        f.wrote(2);
        assert_eq!(f.bytes(), 2);
        assert_eq!(
            f.waiting().map(|b| b.data().to_vec()),
            Some(b"llo".to_vec())
        );
        assert!(!f.done(), "FIN not passed on yet");
        f.wrote(3);
        assert!(f.waiting().is_none(), "an empty buffer has nothing waiting");
        f.release(&mut pool, &mut pipes);
        assert_eq!(pool.lent(), 0);
    }

    /// A loopback connection: the far end (blocking, for the test) and ours (non-blocking).
    fn connection() -> (std::net::TcpStream, TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let far = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (ours, _) = l.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        far.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        (far, TcpStream::from_std(ours))
    }

    /// Shuffles (as if every socket had just reported readiness) until `done` says so.
    fn shuffle_until(
        s: &mut Shuffling,
        client: &mut TcpStream,
        (pool, pipes, stats): (&mut Pool, &mut PipePool, &mut Stats),
        mut done: impl FnMut(&Shuffling, Shuffled) -> bool,
    ) -> Shuffled {
        for _ in 0..500 {
            let mut client_ready = Ready {
                readable: true,
                writable: true,
                hup: true,
            };
            *s.upstream_ready() = client_ready;
            let r = s.shuffle(client, &mut client_ready, (pool, pipes), stats, 7);
            if done(s, r) {
                return r;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the shuffle never got there");
    }

    #[test]
    fn the_shuffle_moves_bytes_both_ways_and_leaves_the_last_fin_to_the_close() {
        use std::io::{Read, Write};
        let (mut far_client, mut client) = connection();
        let (mut far_upstream, upstream) = connection();
        let (mut pool, mut pipes, mut stats) =
            (Pool::new(64, 8, 8), PipePool::new(0, 0), Stats::default());
        let mut pre = pool.take().unwrap();
        pre.space()[..3].copy_from_slice(b"PRE");
        pre.filled(3);
        let mut s = Shuffling::new(
            upstream,
            Ready::default(),
            Some(pre),
            (Flow::default(), Flow::default()),
            0,
        );
        // The client says ping and half-closes: the upstream gets the preamble first, then
        // ping, then FIN (a shutdown, since the other way still flows).
        far_client.write_all(b"ping").unwrap();
        far_client.shutdown(Shutdown::Write).unwrap();
        let pools = (&mut pool, &mut pipes, &mut stats);
        let r = shuffle_until(&mut s, &mut client, pools, |s, _| s.half_closed());
        assert_eq!(r, Shuffled::Wait);
        let mut got = Vec::new();
        assert!(s.half_closed(), "the client's FIN went on");
        far_upstream.read_to_end(&mut got).unwrap();
        assert_eq!(
            got, b"PREping",
            "preamble first, then the client's bytes, then FIN"
        );
        assert_eq!(s.bytes(), (4, 0), "the preamble is not the client's");
        // The upstream answers and closes too: the session is over; no shutdown is called on
        // the client (the close sends that FIN), so the far client sees pong and no EOF yet.
        far_upstream.write_all(b"pong").unwrap();
        far_upstream.shutdown(Shutdown::Write).unwrap();
        let pools = (&mut pool, &mut pipes, &mut stats);
        let r = shuffle_until(&mut s, &mut client, pools, |_, r| r != Shuffled::Wait);
        assert_eq!(r, Shuffled::Over(CloseReason::Done));
        assert_eq!(s.bytes(), (4, 4));
        assert_eq!((stats.bytes_up, stats.bytes_down), (4, 4));
        let mut pong = [0u8; 4];
        far_client.read_exact(&mut pong).unwrap();
        assert_eq!(&pong, b"pong");
        far_client
            .set_read_timeout(Some(std::time::Duration::from_millis(50)))
            .unwrap();
        let mut more = [0u8; 1];
        assert!(
            far_client.read(&mut more).is_err(),
            "no FIN before the close: the last direction's FIN is left to it"
        );
        s.release(&mut pool, &mut pipes);
        assert_eq!(pool.lent(), 0, "every buffer back");
        drop((s, client));
        assert_eq!(
            far_client.read(&mut more).unwrap(),
            0,
            "the close sends FIN"
        );
    }
}
