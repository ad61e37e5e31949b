#![cfg(test)]
//! The logger against real sinks, in-process: a pipe nobody reads, a packet-mode pipe that
//! shows each write, a stream socket (journald's stdout), a file rotated under it, syslog on
//! a local datagram socket and over UDP. The loop's part is played by the test: it logs,
//! then calls `flush` with a clock it advances itself (no sleeping, no timing assertions).
//!
//! The same through the real binary (a stalled stderr under 1,500 sessions, two workers
//! sharing one pipe, rotation, live changes): tests/logging.rs.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sluice::logger::{Facility, Logger, Sink, Target, FLUSH_EVERY};

const LONG: Duration = Duration::from_secs(60);

/// Runs `f` on its own thread; fails if it has not returned within a minute (it blocked).
fn never_blocks<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(LONG)
        .unwrap_or_else(|_| panic!("{what}: the writer blocked"))
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sluice-log-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn nonblocking_pipe() -> (File, OwnedFd) {
    let (r, w) = sluice::sys::fd::pipe().unwrap();
    sluice::sys::fd::set_nonblocking(r.as_raw_fd()).unwrap();
    (File::from(r), w)
}

/// Everything readable now.
fn read_now(r: &mut impl Read, out: &mut Vec<u8>) {
    let mut buf = vec![0; 1 << 16];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => panic!("{e}"),
        }
    }
}

/// A line as the logger writes it, or the marker; returns the message part.
fn message(line: &str) -> &str {
    assert!(line.len() > 31, "short line {line:?}");
    assert_eq!(&line[4..5], "-", "{line:?}");
    assert_eq!(&line[23..25], "Z ", "{line:?}");
    line[31..].split_once("] ").unwrap().1
}

/// Checks the text holds whole lines: `seq=N` lines in order with gaps only where a marker
/// reports them (a marker after the last line reports lines nothing followed), and returns
/// (lines seen, lines the markers reported).
fn check_sequence(text: &str) -> (u64, u64) {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "a cut line at the end"
    );
    let (mut seen, mut reported, mut next) = (0, 0, 0u64);
    let mut gap = 0;
    for line in text.lines() {
        let m = message(line);
        if let Some(n) = m.strip_prefix("log lines dropped lines=") {
            let n: u64 = n.parse().unwrap();
            reported += n;
            gap += n;
            continue;
        }
        let seq: u64 = m
            .strip_prefix("seq=")
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(seq >= next, "out of order: {seq} after {next}");
        assert_eq!(
            seq - next,
            gap,
            "a gap of {} not reported as {gap} before seq={seq}",
            seq - next
        );
        gap = 0;
        next = seq + 1;
        seen += 1;
    }
    (seen, reported)
}

fn seq(l: &Logger, i: u64, pad: usize) {
    l.record(
        log::Level::Info,
        "sluice::session",
        format_args!("seq={i} {}", "p".repeat(pad)),
    );
}

#[test]
fn a_pipe_nobody_reads_never_blocks_and_counts_what_it_drops() {
    let (mut r, w) = nonblocking_pipe();
    let (logged, after_stall) = (4000u64, 200u64);
    let t0 = Instant::now();
    let l: &'static Logger = Box::leak(Box::new(Logger::new(64 * 1024)));
    l.set_sink(Sink::shared(w.as_fd()).unwrap());
    l.set_buffered(true).unwrap();
    // nobody reads: 4000 lines of ~200 bytes (800 KB) against a 64 KiB pipe
    let dropped = never_blocks("stalled pipe", move || {
        let mut now = t0;
        for i in 0..logged {
            seq(l, i, 150);
            if i % 10 == 0 {
                now += FLUSH_EVERY;
                l.flush(now);
            }
        }
        l.counters().dropped
    });
    assert!(dropped > 0, "nothing dropped");
    assert_eq!(l.counters().at(log::Level::Info), logged);
    // the reader resumes: lines flow again, the marker first
    let mut text = Vec::new();
    let mut now = t0 + LONG;
    for i in logged..logged + after_stall {
        seq(l, i, 150);
        now += FLUSH_EVERY;
        l.flush(now);
        read_now(&mut r, &mut text);
    }
    let deadline = Instant::now() + LONG;
    loop {
        now += FLUSH_EVERY;
        let more = l.flush(now).is_some();
        read_now(&mut r, &mut text);
        if !more {
            break;
        }
        assert!(Instant::now() < deadline, "lines stopped flowing");
    }
    read_now(&mut r, &mut text);
    let text = String::from_utf8(text).unwrap();
    let (seen, reported) = check_sequence(&text);
    let c = l.counters();
    assert_eq!(
        seen + c.dropped,
        logged + after_stall,
        "every line written or counted"
    );
    assert_eq!(reported, c.dropped, "every drop reported in a marker line");
    assert!(text.contains("] log lines dropped lines="));
    assert!(
        text.trim_end().ends_with(&format!(
            "seq={} {}",
            logged + after_stall - 1,
            "p".repeat(150)
        )),
        "the last line arrived"
    );
    // the descriptor the other processes share was left blocking
    #[cfg(target_os = "linux")]
    assert_eq!(
        sluice::sys::log_sink::status_flags(w.as_fd()).unwrap() & libc::O_NONBLOCK,
        0
    );
}

/// A packet-mode pipe (Linux `O_DIRECT`) hands the reader one write per read: each must be
/// whole lines, at most PIPE_BUF bytes.
#[cfg(target_os = "linux")]
#[test]
fn each_write_to_a_pipe_is_whole_lines_within_pipe_buf() {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into the array.
    assert_eq!(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_DIRECT | libc::O_CLOEXEC) },
        0
    );
    use std::os::fd::FromRawFd;
    // SAFETY: just created, owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    sluice::sys::fd::set_nonblocking(r.as_raw_fd()).unwrap();
    let mut r = File::from(r);
    let l = Logger::new(4 << 20); // holds all 2.3 MB: nothing dropped
    l.set_sink(Sink::shared(w.as_fd()).unwrap());
    l.set_buffered(true).unwrap();
    let n = 3000u64;
    for i in 0..n {
        // 40 to 1500 bytes, so that writes pack several lines up to the limit
        seq(&l, i, (i as usize * 7919) % 1460);
    }
    let mut now = Instant::now();
    let (mut text, mut writes, mut largest) = (String::new(), 0, 0);
    let mut buf = vec![0; 1 << 16];
    loop {
        now += FLUSH_EVERY;
        let more = l.flush(now).is_some();
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => {
                    let packet = std::str::from_utf8(&buf[..k]).unwrap();
                    assert!(k <= libc::PIPE_BUF, "a write of {k} bytes");
                    assert!(packet.ends_with('\n'), "a write ending mid-line");
                    message(packet.lines().next().unwrap()); // starts on a line
                    writes += 1;
                    largest = largest.max(k);
                    text.push_str(packet);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        if !more {
            break;
        }
    }
    assert_eq!(check_sequence(&text), (n, 0));
    assert!(
        writes < n,
        "lines are batched: {writes} writes for {n} lines"
    );
    assert!(
        largest > libc::PIPE_BUF - 1500,
        "writes fill up to the limit: {largest}"
    );
}

/// journald gives a service a stream socket as stdout and stderr.
#[test]
fn a_stream_socket_takes_whole_lines_without_blocking() {
    let (a, mut b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let l: &'static Logger = Box::leak(Box::new(Logger::new(64 * 1024)));
    l.set_sink(Sink::shared(a.as_fd()).unwrap());
    l.set_buffered(true).unwrap();
    let logged = 5000;
    let t0 = Instant::now();
    never_blocks("stalled socket", move || {
        let mut now = t0;
        for i in 0..logged {
            seq(l, i, 100);
            now += FLUSH_EVERY;
            l.flush(now);
        }
    });
    assert!(l.counters().dropped > 0);
    let mut text = Vec::new();
    let mut now = t0 + LONG;
    loop {
        now += FLUSH_EVERY;
        let more = l.flush(now).is_some();
        read_now(&mut b, &mut text);
        if !more {
            break;
        }
    }
    read_now(&mut b, &mut text);
    let (seen, reported) = check_sequence(&String::from_utf8(text).unwrap());
    assert_eq!(seen + l.counters().dropped, logged);
    assert_eq!(reported, l.counters().dropped);
    drop(a);
}

/// logrotate's way: rename the file, then ask for a reopen; new lines go to a new file.
#[test]
fn a_file_reopened_after_rename_writes_to_the_new_file() {
    let dir = temp_dir("rotate");
    let path = dir.join("sluice.log");
    let target = Target::parse(&format!("file:{}", path.display())).unwrap();
    let l = Logger::new(1 << 16);
    l.set_target(&target, Facility::default()).unwrap();
    l.set_buffered(true).unwrap();
    let now = Instant::now();
    seq(&l, 0, 0);
    l.flush(now);
    std::fs::rename(&path, dir.join("sluice.log.1")).unwrap();
    seq(&l, 1, 0); // buffered before the reopen: belongs to the old file
    l.reopen().unwrap();
    seq(&l, 2, 0);
    assert!(l.flush_blocking(Instant::now() + LONG));
    let old = std::fs::read_to_string(dir.join("sluice.log.1")).unwrap();
    let new = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        old.lines().map(message).collect::<Vec<_>>(),
        ["seq=0 ", "seq=1 "]
    );
    assert_eq!(new.lines().map(message).collect::<Vec<_>>(), ["seq=2 "]);
    // appended to, never truncated: a second logger adds to the same file
    let l2 = Logger::new(1 << 16);
    l2.set_target(&target, Facility::default()).unwrap();
    seq(&l2, 3, 0);
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A syslog datagram as RFC 5424 lays it out, split into its fields.
fn rfc5424(d: &[u8]) -> Vec<String> {
    let s = std::str::from_utf8(d).unwrap();
    s.splitn(8, ' ').map(str::to_string).collect()
}

/// A datagram to the local socket: (the `<PRI>` part, the MSG). Linux's `/dev/log` readers
/// parse the BSD layout, `<PRI>Mmm dd hh:mm:ss sluice[PID]: MSG`; FreeBSD's RFC 5424.
fn local(d: &[u8]) -> (String, String) {
    if cfg!(target_os = "freebsd") {
        let f = rfc5424(d);
        return (f[0].trim_end_matches('1').to_string(), f[7].clone());
    }
    let s = std::str::from_utf8(d).unwrap();
    let (pri, rest) = s.split_at(s.find('>').unwrap() + 1);
    let (stamp, rest) = rest.split_at(15);
    let b = stamp.as_bytes();
    assert!(
        b[0].is_ascii_uppercase() && b[3] == b' ' && b[6] == b' ',
        "{s}"
    );
    assert!(b[9] == b':' && b[12] == b':', "{s}");
    let tag = format!(" sluice[{}]: ", std::process::id());
    let msg = rest.strip_prefix(&tag).unwrap_or_else(|| panic!("{s}"));
    (pri.to_string(), msg.to_string())
}

#[test]
fn syslog_on_a_local_socket_gets_the_platforms_local_layout() {
    let dir = temp_dir("syslog");
    let sock = dir.join("log");
    let rx = UnixDatagram::bind(&sock).unwrap();
    rx.set_nonblocking(true).unwrap();
    let target = Target::parse(&format!("syslog:{}", sock.display())).unwrap();
    let l: &'static Logger = Box::leak(Box::new(Logger::new(64 * 1024)));
    l.set_target(&target, Facility::parse("local3").unwrap())
        .unwrap();
    l.set_buffered(true).unwrap();
    l.record(
        log::Level::Info,
        "sluice::session",
        format_args!("close sid=1"),
    );
    l.record(
        log::Level::Error,
        "sluice",
        format_args!("bad thing sid=2\ndump sid=2 offset=0000"),
    );
    assert!(l.flush_blocking(Instant::now() + LONG));
    let mut buf = vec![0; 1 << 16];
    let n = rx.recv(&mut buf).unwrap();
    let (pri, msg) = local(&buf[..n]);
    assert_eq!(pri, format!("<{}>", 19 * 8 + 6)); // local3.info
    assert_eq!(msg, "[sluice::session] close sid=1");
    // a record of two lines (a dump's rows): one datagram a line, each with its prefix
    for line in ["bad thing sid=2", "dump sid=2 offset=0000"] {
        let n = rx.recv(&mut buf).unwrap();
        let (pri, msg) = local(&buf[..n]);
        assert_eq!(pri, format!("<{}>", 19 * 8 + 3)); // local3.err
        assert_eq!(msg, format!("[sluice] {line}"), "one datagram per line");
    }

    // a syslogd that stops reading: nothing blocks, datagrams are dropped and counted
    never_blocks("stalled syslogd", move || {
        let mut now = Instant::now();
        for i in 0..20_000 {
            seq(l, i, 100);
            now += FLUSH_EVERY;
            l.flush(now);
        }
    });
    let dropped = l.counters().dropped;
    assert!(dropped > 0);
    // it reads again: everything written or counted, the gap reported
    let mut text = String::new();
    let mut now = Instant::now() + LONG;
    loop {
        now += FLUSH_EVERY;
        let more = l.flush(now).is_some();
        while let Ok(n) = rx.recv(&mut buf) {
            text.push_str(&local(&buf[..n]).1);
            text.push('\n');
        }
        if !more {
            break;
        }
    }
    // messages lost their timestamp; put a fake one back for check_sequence
    let lines: String = text
        .lines()
        .map(|m| format!("2026-11-25T13:14:04.057Z INFO  {m}\n"))
        .collect();
    let (seen, reported) = check_sequence(&lines);
    assert_eq!(seen + dropped, 20_000);
    assert_eq!(reported, dropped);

    // syslogd restarts (a new socket at the same path): the sink connects again
    drop(rx);
    std::fs::remove_file(&sock).unwrap();
    seq(l, 20_000, 0);
    l.flush(now + LONG); // refused: kept
    let rx = UnixDatagram::bind(&sock).unwrap();
    assert!(l.flush_blocking(Instant::now() + LONG));
    let n = rx.recv(&mut buf).unwrap();
    assert_eq!(local(&buf[..n]).1, "[sluice::session] seq=20000 ");
    assert_eq!(l.counters().dropped, dropped);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn syslog_over_udp() {
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = rx.local_addr().unwrap().port();
    let target = Target::parse(&format!("syslog:127.0.0.1:{port}")).unwrap();
    let l = Logger::new(1 << 16);
    l.set_target(&target, Facility::default()).unwrap();
    l.set_buffered(true).unwrap();
    l.record(log::Level::Warn, "sluice", format_args!("over udp"));
    assert!(l.flush_blocking(Instant::now() + LONG));
    let mut buf = [0; 4096];
    rx.set_read_timeout(Some(LONG)).unwrap();
    let n = rx.recv(&mut buf).unwrap();
    let f = rfc5424(&buf[..n]);
    assert_eq!(f[0], "<28>1"); // daemon.warning
    assert_eq!(
        &f[3..],
        [
            "sluice",
            &std::process::id().to_string(),
            "-",
            "-",
            "[sluice] over udp"
        ]
    );
}
