//! The log: every record becomes one line, `2026-11-25T13:14:04.057Z INFO  [target]
//! message`, and goes to the sink (`stderr`, `file:PATH`, `syslog`, `syslog:HOST:PORT`).
//!
//! Two modes. *Direct* (the start): the record is written at once by the code that logs,
//! blocking, as it always was. *Buffered* (the event loop opts in with [`set_buffered`]):
//! logging only formats the line into a bounded in-process buffer, and the loop writes the
//! buffer out with [`flush`] once per turn, at most every [`FLUSH_EVERY`], without ever
//! waiting for the sink. When the buffer is full, lines are dropped and counted, and one
//! `log lines dropped lines=N` line stands where they were. Exit, drain and upgrade call
//! [`flush_blocking`], bounded in time.
//!
//! Each write holds whole lines only, at most `PIPE_BUF` bytes on a pipe, a terminal or a
//! stream socket (so the writes of several workers sharing one never interleave), more on a
//! regular file; syslog gets one datagram per line. Lines by level and dropped lines are
//! counted ([`counters`]).
//!
//! The logger passes every record; the level is `log::max_level`, which reload and
//! `set log-level` change at run time. Traced sessions bypass it on purpose.
//!
//! In buffered mode, logging must never do I/O, and nothing here may wait on a sink except
//! direct mode and [`flush_blocking`].

mod line;
mod queue;
mod sink;
mod syslog;
mod target;

pub use line::LINE_BREAK;
pub use sink::Sink;
pub use target::{Facility, Target};

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::{self, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use queue::{Batch, Pending};
use sink::Outcome;

/// Bytes of lines the buffer holds before it drops (about a thousand access lines).
pub const DEFAULT_CAPACITY: usize = 256 * 1024;
/// The shortest time between two writes in buffered mode: lines are batched, one write
/// every few ms at most instead of one per line (also the retry period of a blocked sink).
/// The loop does not wake up for it: it flushes at the end of its turns, and an idle loop
/// at its timer tick, so that the lines never shorten its wait (see `Worker::poll_timeout`).
pub const FLUSH_EVERY: Duration = Duration::from_millis(5);
/// How long a process that exits (after a drain, a stop or an upgrade) waits for the sink
/// to take what is buffered; what it has not taken then is lost.
pub const EXIT_FLUSH: Duration = Duration::from_secs(1);
/// How long [`log::Log::flush`] may wait.
const FLUSH_WAIT: Duration = Duration::from_secs(1);
/// The scratch line is given back when a large record (a hex dump) grew it past this.
const SCRATCH_KEEP: usize = 16 * 1024;

/// Lines logged, by level, and lines that never reached the sink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Lines logged at each level, error … trace (dropped ones included).
    pub lines: [u64; 5],
    /// Lines dropped: the buffer was full, or the sink failed or refused them.
    pub dropped: u64,
}

impl Counters {
    /// Lines logged at `level`.
    pub fn at(&self, level: log::Level) -> u64 {
        self.lines
            .get(level as usize - 1)
            .copied()
            .unwrap_or_default()
    }

    /// Lines logged at any level.
    pub fn total(&self) -> u64 {
        self.lines.iter().sum()
    }
}

/// A logger: the buffer, the sink and the counters. The process has one, installed by
/// [`init`]; tests make their own.
pub struct Logger {
    buffered: AtomicBool,
    /// The buffer's bound, for the flush's "filling up" test without the lock.
    capacity: AtomicUsize,
    /// Bytes in `pending`, read without its lock by the flush's fast path.
    queued: AtomicUsize,
    /// Whether the output's batch holds unwritten records (the same, for the batch).
    in_flight: AtomicBool,
    pending: Mutex<Pending>,
    output: Mutex<Output>,
    lines: [AtomicU64; 5],
    dropped: AtomicU64,
    /// Wakes the loop when another thread logs into an empty buffer.
    waker: Mutex<Option<Arc<mio::Waker>>>,
}

/// The flushing side, under its own lock so that logging never waits for a write.
struct Output {
    /// `None`: stderr as inherited, written by direct mode as it always was.
    sink: Option<Sink>,
    batch: Batch,
    /// No write before this (batching, or a blocked sink's retry).
    next_write: Option<Instant>,
    /// The last write round ended on a sink that took no more.
    blocked: bool,
    /// Lines dropped or lost that no marker line has reported yet.
    unreported: u64,
    marker: Vec<u8>,
}

thread_local! {
    /// Where a line is formatted before it is copied under the lock.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Set on the thread that flushes (the loop): it needs no wake-up.
    static FLUSHER: Cell<bool> = const { Cell::new(false) };
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Logger {
    /// A logger in direct mode on stderr, with a buffer of `capacity` bytes for buffered
    /// mode.
    pub const fn new(capacity: usize) -> Logger {
        Logger {
            buffered: AtomicBool::new(false),
            capacity: AtomicUsize::new(capacity),
            queued: AtomicUsize::new(0),
            in_flight: AtomicBool::new(false),
            pending: Mutex::new(Pending::new(capacity)),
            output: Mutex::new(Output {
                sink: None,
                batch: Batch::new(),
                next_write: None,
                blocked: false,
                unreported: 0,
                marker: Vec::new(),
            }),
            lines: [const { AtomicU64::new(0) }; 5],
            dropped: AtomicU64::new(0),
            waker: Mutex::new(None),
        }
    }

    /// Logs one record: formats the line and buffers it (buffered mode) or writes it.
    pub fn record(&self, level: log::Level, target: &str, args: fmt::Arguments<'_>) {
        if let Some(n) = self.lines.get(level as usize - 1) {
            n.fetch_add(1, Relaxed);
        }
        let now = SystemTime::now();
        let done = SCRATCH.try_with(|cell| {
            let Ok(mut buf) = cell.try_borrow_mut() else {
                return false; // a Display impl that logs: format apart
            };
            buf.clear();
            line::format(&mut buf, now, level, target, args);
            self.emit(&buf);
            if buf.capacity() > SCRATCH_KEEP {
                *buf = Vec::new();
            }
            true
        });
        if done != Ok(true) {
            let mut buf = Vec::new();
            line::format(&mut buf, now, level, target, args);
            self.emit(&buf);
        }
    }

    fn emit(&self, line: &[u8]) {
        if !self.buffered.load(Relaxed) {
            return self.write_direct(line);
        }
        let (was_empty, kept) = {
            let mut p = lock(&self.pending);
            let was_empty = p.is_empty();
            let kept = p.push(line);
            self.queued.store(p.len(), Relaxed);
            (was_empty, kept)
        };
        if !kept {
            self.dropped.fetch_add(1, Relaxed);
        } else if was_empty && !FLUSHER.try_with(Cell::get).unwrap_or(false) {
            if let Some(w) = lock(&self.waker).as_ref() {
                let _ = w.wake();
            }
        }
    }

    /// Direct mode: the line is written before the call returns, waiting for the sink as
    /// long as it takes (after anything a buffered period left).
    fn write_direct(&self, line: &[u8]) {
        let mut out = lock(&self.output);
        if out.sink.is_none() {
            // One write_all on a locked, unbuffered stderr: one write(2) for lines under
            // PIPE_BUF, as before this module buffered anything.
            let _ = io::stderr().lock().write_all(line);
            return;
        }
        self.drain(&mut out, None); // what a buffered period left goes first
        let kept = {
            let mut p = lock(&self.pending);
            let kept = p.push(line);
            self.queued.store(p.len(), Relaxed);
            kept
        };
        if !kept {
            self.dropped.fetch_add(1, Relaxed);
        }
        self.drain(&mut out, None);
    }

    /// Buffered mode on (`true`: the calling thread flushes from now on) or off (direct
    /// mode again). Turning it on opens stderr for non-blocking writes if no target was
    /// set; on failure the logger stays direct.
    pub fn set_buffered(&self, on: bool) -> io::Result<()> {
        if on {
            let mut out = lock(&self.output);
            if out.sink.is_none() {
                out.sink = Some(Sink::open(&Target::Stderr, Facility::DAEMON)?);
            }
            let capacity = lock(&self.pending).reserve();
            out.batch.reserve(capacity);
        }
        let _ = FLUSHER.try_with(|f| f.set(on));
        self.buffered.store(on, Relaxed);
        Ok(())
    }

    /// Sends lines to `target` from now on. The new sink is opened first (on failure the
    /// old one stays); what the old one does not take at once goes to the new one.
    pub fn set_target(&self, target: &Target, facility: Facility) -> io::Result<()> {
        let sink = Sink::open(target, facility)?;
        self.set_sink(sink);
        Ok(())
    }

    /// Sends lines to `sink` from now on (what the old sink does not take at once included).
    pub fn set_sink(&self, sink: Sink) {
        let mut out = lock(&self.output);
        if out.sink.is_some() {
            self.write_out(&mut out);
        }
        out.batch.skip_partial();
        self.account(&mut out);
        out.sink = Some(sink);
        out.next_write = None;
    }

    /// Reopens the sink (`file:` after rotation; syslog's socket). Lines buffered before
    /// go to the old file if it takes them at once.
    pub fn reopen(&self) -> io::Result<()> {
        let mut out = lock(&self.output);
        if out.sink.is_none() {
            return Ok(());
        }
        self.write_out(&mut out);
        out.batch.skip_partial();
        self.account(&mut out);
        out.next_write = None;
        match out.sink.as_mut() {
            Some(s) => s.reopen(),
            None => Ok(()),
        }
    }

    /// The loop's flush, once per turn: writes buffered lines if the last write was at
    /// least [`FLUSH_EVERY`] ago (or the buffer is filling up), as much as the sink takes
    /// without waiting. Returns how soon to call again, `None` when nothing is left.
    /// Costs two atomic loads when nothing is buffered.
    pub fn flush(&self, now: Instant) -> Option<Duration> {
        let queued = self.queued.load(Relaxed);
        if queued == 0 && !self.in_flight.load(Relaxed) {
            return None;
        }
        let mut out = lock(&self.output);
        // a filling buffer is written at once, unless the sink is what holds it up
        let urgent = queued >= self.capacity.load(Relaxed) / 4 && !out.blocked;
        if let Some(at) = out.next_write {
            if now < at && !urgent {
                return Some(at - now);
            }
        }
        let outcome = self.write_out(&mut out);
        out.blocked = matches!(outcome, Outcome::Blocked);
        out.next_write = Some(now + FLUSH_EVERY);
        let left = self.queued.load(Relaxed) > 0 || !out.batch.is_empty();
        left.then_some(FLUSH_EVERY)
    }

    /// Writes everything buffered, waiting for the sink until `deadline` at most (exit,
    /// drain, upgrade). True when nothing is left.
    pub fn flush_blocking(&self, deadline: Instant) -> bool {
        let mut out = lock(&self.output);
        self.drain(&mut out, Some(deadline))
    }

    fn drain(&self, out: &mut Output, deadline: Option<Instant>) -> bool {
        loop {
            let outcome = self.write_out(out);
            let empty = self.queued.load(Relaxed) == 0 && out.batch.is_empty();
            match outcome {
                Outcome::Done if empty => return true,
                Outcome::Failed(_) => return false, // what it held is counted as dropped
                Outcome::Done | Outcome::Blocked => {}
            }
            let wait = match deadline {
                None => Duration::from_secs(1),
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(w) if !w.is_zero() => w,
                    _ => return false,
                },
            };
            if let (Outcome::Blocked, Some(sink)) = (outcome, out.sink.as_mut()) {
                if sink.wait_writable(wait).is_err() {
                    std::thread::sleep(wait.min(FLUSH_EVERY));
                }
            }
        }
    }

    /// As much as the sink takes now: the batch, then what is pending (at most twice round,
    /// so that a thread logging without pause cannot keep the flush going).
    fn write_out(&self, out: &mut Output) -> Outcome {
        let mut outcome = Outcome::Done;
        for _ in 0..2 {
            if out.batch.is_empty() {
                let dropped = {
                    let mut p = lock(&self.pending);
                    let d = p.take(&mut out.batch);
                    self.queued.store(0, Relaxed);
                    d
                };
                if dropped > 0 {
                    out.marker.clear();
                    line::dropped(&mut out.marker, SystemTime::now(), dropped);
                    out.batch.push_marker(&out.marker, dropped);
                }
            }
            if out.unreported > 0 {
                let n = std::mem::take(&mut out.unreported);
                out.marker.clear();
                line::dropped(&mut out.marker, SystemTime::now(), n);
                out.batch.insert_marker(&out.marker, n);
            }
            if out.batch.is_empty() {
                break;
            }
            outcome = match out.sink.as_mut() {
                Some(sink) => sink.write(&mut out.batch),
                None => Outcome::Failed(io::ErrorKind::NotConnected.into()),
            };
            if let Outcome::Failed(_) = outcome {
                out.batch.skip_all();
            }
            self.account(out);
            if !matches!(outcome, Outcome::Done) {
                break;
            }
        }
        self.in_flight.store(!out.batch.is_empty(), Relaxed);
        outcome
    }

    /// Counts what the batch gave up on, to be reported by the next marker.
    fn account(&self, out: &mut Output) {
        let (lost, unreported) = out.batch.take_lost();
        if lost > 0 {
            self.dropped.fetch_add(lost, Relaxed);
        }
        out.unreported += lost + unreported;
    }

    /// The counters so far.
    pub fn counters(&self) -> Counters {
        let mut c = Counters {
            dropped: self.dropped.load(Relaxed),
            ..Counters::default()
        };
        for (n, a) in c.lines.iter_mut().zip(&self.lines) {
            *n = a.load(Relaxed);
        }
        c
    }

    /// The waker to poke when a thread other than the flusher logs into an empty buffer
    /// (the capture thread): the loop may be asleep with nothing else to wake it.
    pub fn set_waker(&self, waker: Option<Arc<mio::Waker>>) {
        *lock(&self.waker) = waker;
    }

    /// Sets the buffer's bound in bytes (lines already held stay).
    pub fn set_capacity(&self, bytes: usize) {
        lock(&self.pending).set_capacity(bytes);
        self.capacity.store(bytes, Relaxed);
    }
}

impl log::Log for Logger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        self.record(record.level(), record.target(), *record.args());
    }

    fn flush(&self) {
        self.flush_blocking(Instant::now() + FLUSH_WAIT);
    }
}

static LOGGER: Logger = Logger::new(DEFAULT_CAPACITY);

/// Installs the logger (once) with `level` as the run-time filter, in direct mode on stderr.
pub fn init(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// The process's logger.
pub fn global() -> &'static Logger {
    &LOGGER
}

/// [`Logger::set_buffered`] on the process's logger.
pub fn set_buffered(on: bool) -> io::Result<()> {
    LOGGER.set_buffered(on)
}

/// [`Logger::set_target`] on the process's logger.
pub fn set_target(target: &Target, facility: Facility) -> io::Result<()> {
    LOGGER.set_target(target, facility)
}

/// [`Logger::reopen`] on the process's logger.
pub fn reopen() -> io::Result<()> {
    LOGGER.reopen()
}

/// [`Logger::flush`] on the process's logger.
pub fn flush(now: Instant) -> Option<Duration> {
    LOGGER.flush(now)
}

/// [`Logger::flush_blocking`] on the process's logger.
pub fn flush_blocking(deadline: Instant) -> bool {
    LOGGER.flush_blocking(deadline)
}

/// [`Logger::counters`] of the process's logger.
pub fn counters() -> Counters {
    LOGGER.counters()
}

/// [`Logger::set_waker`] on the process's logger.
pub fn set_waker(waker: Option<Arc<mio::Waker>>) {
    LOGGER.set_waker(waker)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::Read as _;
    use std::os::fd::AsFd as _;

    fn info(l: &Logger, msg: &str) {
        l.record(log::Level::Info, "test", format_args!("{msg}"));
    }

    /// A logger writing into a pipe, and the pipe's read end (non-blocking).
    fn on_pipe(capacity: usize) -> (Logger, File) {
        let (r, w) = crate::sys::fd::pipe().unwrap();
        crate::sys::fd::set_nonblocking(std::os::fd::AsRawFd::as_raw_fd(&r)).unwrap();
        let l = Logger::new(capacity);
        l.set_sink(Sink::shared(w.as_fd()).unwrap());
        (l, File::from(r))
    }

    fn read_all(r: &mut File) -> String {
        let mut out = Vec::new();
        let mut buf = [0; 65536];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn direct_mode_writes_before_returning() {
        let (l, mut r) = on_pipe(1024);
        info(&l, "one");
        assert!(read_all(&mut r).ends_with(" INFO  [test] one\n"));
    }

    #[test]
    fn buffered_mode_writes_only_when_flushed_and_batches() {
        let (l, mut r) = on_pipe(1 << 20);
        l.set_buffered(true).unwrap();
        let t0 = Instant::now();
        assert_eq!(l.flush(t0), None, "nothing buffered");
        info(&l, "one");
        assert_eq!(read_all(&mut r), "", "logging does no I/O");
        assert_eq!(l.flush(t0), None, "written, nothing left");
        assert!(read_all(&mut r).ends_with("[test] one\n"));
        info(&l, "two");
        // within FLUSH_EVERY of the last write: kept for the next batch
        let again = l.flush(t0 + FLUSH_EVERY / 2).unwrap();
        assert_eq!(again, FLUSH_EVERY / 2);
        assert_eq!(read_all(&mut r), "");
        assert_eq!(l.flush(t0 + FLUSH_EVERY), None);
        assert!(read_all(&mut r).ends_with("[test] two\n"));
    }

    #[test]
    fn a_full_buffer_drops_counts_and_marks_the_gap() {
        let (l, mut r) = on_pipe(4096);
        l.set_buffered(true).unwrap();
        let line = "x".repeat(100);
        for _ in 0..100 {
            info(&l, &line); // about 140 bytes a line: 29 fit
        }
        let c = l.counters();
        assert_eq!(c.at(log::Level::Info), 100);
        assert_eq!(c.dropped, 100 - 4096 / 140);
        assert_eq!(l.flush(Instant::now()), None);
        info(&l, "after");
        l.flush_blocking(Instant::now() + Duration::from_secs(10));
        let text = read_all(&mut r);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 29 + 2);
        assert!(lines[29].ends_with(&format!(
            "WARN  [sluice::logger] log lines dropped lines={}",
            c.dropped
        )));
        assert!(lines[30].ends_with("[test] after"));
    }

    #[test]
    fn counters_by_level() {
        let (l, _r) = on_pipe(1 << 16);
        l.set_buffered(true).unwrap();
        for level in [
            log::Level::Error,
            log::Level::Warn,
            log::Level::Warn,
            log::Level::Debug,
            log::Level::Trace,
        ] {
            l.record(level, "t", format_args!("m"));
        }
        let c = l.counters();
        assert_eq!(c.lines, [1, 2, 0, 1, 1]);
        assert_eq!((c.total(), c.dropped), (5, 0));
    }

    #[test]
    fn another_thread_logging_wakes_the_loop() {
        let (l, _r) = on_pipe(1 << 16);
        l.set_buffered(true).unwrap();
        let mut poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(7)).unwrap());
        l.set_waker(Some(waker));
        let mut events = mio::Events::with_capacity(4);
        info(&l, "from the loop: no wake-up");
        poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
        assert!(events.is_empty());
        l.flush(Instant::now());
        std::thread::scope(|s| {
            s.spawn(|| info(&l, "from the capture thread"));
        });
        poll.poll(&mut events, Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(events.iter().next().map(|e| e.token()), Some(mio::Token(7)));
    }

    #[test]
    fn a_display_that_logs_does_not_deadlock() {
        struct Loud<'a>(&'a Logger);
        impl fmt::Display for Loud<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                info(self.0, "inner");
                f.write_str("outer")
            }
        }
        let (l, mut r) = on_pipe(1 << 16);
        l.set_buffered(true).unwrap();
        l.record(log::Level::Info, "test", format_args!("{}", Loud(&l)));
        l.flush(Instant::now());
        let text = read_all(&mut r);
        assert!(
            text.contains("[test] inner\n") && text.contains("[test] outer\n"),
            "{text}"
        );
    }

    #[test]
    fn a_broken_pipe_drops_and_counts() {
        let (l, r) = on_pipe(1 << 16);
        l.set_buffered(true).unwrap();
        drop(r);
        info(&l, "nobody reads");
        info(&l, "this either");
        assert_eq!(l.flush(Instant::now()), None);
        assert_eq!(l.counters().dropped, 2);
        assert!(!l.flush_blocking(Instant::now() + Duration::from_secs(10)));
        assert_eq!(l.counters().dropped, 2, "the marker is not a line");
    }
}
