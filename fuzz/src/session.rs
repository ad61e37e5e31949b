//! The session state machine under arbitrary bytes and events: a rig with one real worker
//! loop in this process (no thread), a real upstream listener and real loopback client
//! sockets. An input is a script: open a client, write a chunk or a burst, half-close,
//! close or reset, read; the same on the upstream side; move the worker's clock (timers
//! fire). After every step the loop turns with a zero timeout, so it never waits.
//!
//! After the script every socket is closed and the clock moved past every timeout. Then:
//! the worker holds no session, buffer or pipe; no descriptor is left open; and every byte
//! that crossed is a contiguous window of what the other side sent (after the preamble
//! sluice itself writes upstream), so nothing was altered, lost in the middle, reordered or
//! mixed between sessions. A client may instead have received exactly one TLS alert.
//!
//! Shared by `fuzz_targets/session.rs` and `tests/session_script.rs` (which replays the
//! seeds and the saved regressions in `make test`): it uses std, mio, socket2 and sluice.
//! The descriptor check counts the whole process's descriptors: run one script at a time.

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use sluice::config::Layers;
use sluice::worker::Worker;

/// Clients (and upstream connections) a script may hold at once.
const MAX_PEERS: usize = 4;
/// The longest burst (256 x 1 KiB) and the pattern bursts are cut from.
const MAX_BURST: usize = 256 * 1024;
const PATTERN_LEN: usize = 4 << 20;
/// Turns of the loop after each step.
const TURNS: usize = 4;
/// Timeouts of the rig's workers; warps reach past all of them.
const HEADER_TIMEOUT_MS: u64 = 1_000;
const CONNECT_TIMEOUT_MS: u64 = 1_000;
const IDLE_TIMEOUT_MS: u64 = 3_000;
/// The alert record sluice sends a refused TLS client: type 21, TLS 1.2, length 2, fatal.
const ALERT_PREFIX: [u8; 6] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02];
/// The PROXY v2 signature, to recognise the header sluice writes upstream.
const V2_SIG: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// One end the script drives: a nonblocking socket and what crossed it.
struct Peer {
    sock: Option<TcpStream>,
    sent: Vec<u8>,
    received: Vec<u8>,
}

impl Peer {
    fn new(sock: TcpStream) -> Peer {
        sock.set_nonblocking(true).expect("nonblocking");
        Peer {
            sock: Some(sock),
            sent: Vec::new(),
            received: Vec::new(),
        }
    }

    /// Writes what the socket takes now; an error (the other side is gone) ends nothing.
    fn write(&mut self, bytes: &[u8]) {
        let Some(s) = self.sock.as_mut() else { return };
        let mut off = 0;
        while off < bytes.len() {
            match s.write(&bytes[off..]) {
                Ok(0) => break,
                Ok(n) => {
                    self.sent.extend_from_slice(&bytes[off..off + n]);
                    off += n;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }

    /// Reads everything available now.
    fn read(&mut self) {
        let Some(s) = self.sock.as_mut() else { return };
        let mut buf = [0u8; 65536];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.received.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }

    fn shutdown(&mut self) {
        if let Some(s) = &self.sock {
            let _ = s.shutdown(Shutdown::Write);
        }
    }

    /// Closes; with `reset`, SO_LINGER 0 makes it an RST.
    fn close(&mut self, reset: bool) {
        if let Some(s) = self.sock.take() {
            if reset {
                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            }
        }
    }
}

/// A worker and its upstream listener, built once per thread and reused by every input.
struct Rig {
    worker: Worker,
    upstream: TcpListener,
    events: mio::Events,
    /// A non-repeating pattern, made once; bursts are slices of it.
    pattern: Vec<u8>,
    /// Where the next burst starts in `pattern`, so bursts differ from each other.
    pattern_at: usize,
}

impl Rig {
    fn new(splice: bool) -> Rig {
        let upstream = TcpListener::bind("127.0.0.1:0").expect("upstream listener");
        upstream.set_nonblocking(true).expect("nonblocking");
        let up = upstream.local_addr().expect("address").to_string();
        let routes = format!(
            "sni=example.test alpn=h2 allow mode=connect upstream={up}; \
             sni=example.test allow mode=proxy-v2 crc32c=yes tlvs=0xea upstream={up}; \
             sni=httpbin.org deny alert=access_denied; \
             proto=http allow mode=connect connect_port=8080 upstream={up}"
        );
        let env = [
            ("ENVOY_IP", "127.0.0.1".to_string()),
            ("ENVOY_PORT", "0".to_string()),
            ("ENVOY_UPSTREAM", up.clone()),
            ("ENVOY_ROUTES", routes),
            ("ENVOY_BUFFER_SIZE", "2048".to_string()),
            ("ENVOY_HEADER_TIMEOUT_MS", HEADER_TIMEOUT_MS.to_string()),
            ("ENVOY_CONNECT_TIMEOUT_MS", CONNECT_TIMEOUT_MS.to_string()),
            ("ENVOY_IDLE_TIMEOUT_MS", IDLE_TIMEOUT_MS.to_string()),
            ("ENVOY_MAX_SESSIONS", "64".to_string()),
            (
                "ENVOY_SPLICE",
                if splice { "auto" } else { "off" }.to_string(),
            ),
            ("ENVOY_HEADERS", "X-Region: eu; X-Fuzz: 1".to_string()),
        ];
        let layers = Layers {
            env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            set: Default::default(),
        };
        let cfg = layers.load().expect("rig configuration");
        let worker = Worker::new(layers, cfg).expect("worker");
        Rig {
            worker,
            upstream,
            events: mio::Events::with_capacity(256),
            pattern: (0..(PATTERN_LEN + MAX_BURST) as u64)
                .map(|i| {
                    // splitmix64's finaliser: no short period, no shift-similar stretches
                    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                    (x >> 56) as u8
                })
                .collect(),
            pattern_at: 0,
        }
    }

    /// Turns the loop with a zero timeout and takes the upstream connections it opened.
    fn settle(&mut self, ups: &mut Vec<Peer>) {
        for _ in 0..TURNS {
            self.worker
                .turn(&mut self.events, Some(Duration::ZERO))
                .expect("poll");
            while let Ok((s, _)) = self.upstream.accept() {
                if ups.len() < 64 {
                    ups.push(Peer::new(s));
                }
            }
        }
    }

    /// `len` (≤ MAX_BURST) bytes of the pattern, from where the last burst ended.
    fn burst(&mut self, len: usize) -> Vec<u8> {
        let at = self.pattern_at;
        self.pattern_at = (at + len + 1) % PATTERN_LEN;
        self.pattern[at..at + len.min(MAX_BURST)].to_vec()
    }

    fn run(&mut self, data: &[u8]) {
        let mut input = Input(data);
        let mut clients: Vec<Peer> = Vec::new();
        let mut ups: Vec<Peer> = Vec::new();
        let listen = self.worker.local_addr().expect("listening");
        let fds = open_descriptors();
        while let Some(b) = input.byte() {
            // low nibble: the operation; bits 4-5: which peer; bit 7: reset rather than close
            let who = usize::from((b >> 4) & 3);
            match (b & 0x0f) % 12 {
                0 => {
                    if clients.len() < MAX_PEERS {
                        clients.push(Peer::new(TcpStream::connect(listen).expect("connect")));
                    }
                }
                11 => self.worker.warp(u64::from(input.byte().unwrap_or(0)) * 50),
                // 1-5 act on a client, 6-10 the same on an upstream connection
                op => {
                    let peers = if op <= 5 { &mut clients } else { &mut ups };
                    // arguments are taken even when there is no such peer: scripts stay aligned
                    let bytes = match (op - 1) % 5 {
                        0 => Some(input.chunk().to_vec()),
                        1 => Some(self.burst((usize::from(input.byte().unwrap_or(0)) + 1) * 1024)),
                        _ => None,
                    };
                    if let Some(p) = pick(peers, who) {
                        match (op - 1) % 5 {
                            0 | 1 => p.write(bytes.as_deref().unwrap_or_default()),
                            2 => p.shutdown(),
                            3 => p.close(b & 0x80 != 0),
                            _ => p.read(),
                        }
                    }
                }
            }
            self.settle(&mut ups);
        }
        // Take what is still in flight, then close everything and let every timeout pass.
        for p in clients.iter_mut().chain(ups.iter_mut()) {
            p.read();
        }
        for p in clients.iter_mut().chain(ups.iter_mut()) {
            p.close(false);
        }
        for _ in 0..16 {
            self.settle(&mut ups);
            for u in ups.iter_mut() {
                u.close(false);
            }
            if self.worker.held() == (0, 0, 0) {
                break;
            }
            self.worker.warp(IDLE_TIMEOUT_MS);
        }
        assert_eq!(
            self.worker.held(),
            (0, 0, 0),
            "sessions, buffers and pipes still held after every peer closed"
        );
        check_windows(&clients, &ups);
        assert_eq!(
            open_descriptors(),
            fds,
            "descriptors before and after the script"
        );
    }
}

/// Every byte an upstream received (after sluice's own preamble) is a window of what some
/// client sent; every byte a client received is a window of what some upstream sent, or a
/// single TLS alert.
fn check_windows(clients: &[Peer], ups: &[Peer]) {
    for (i, u) in ups.iter().enumerate() {
        let ok = u.received.is_empty()
            || [strip_preamble(&u.received), &u.received[..]]
                .iter()
                .any(|got| clients.iter().any(|c| is_window(&c.sent, got)));
        assert!(
            ok,
            "upstream {i} received {} bytes that no client sent in that order: {:02x?}",
            u.received.len(),
            &u.received[..u.received.len().min(64)]
        );
    }
    for (i, c) in clients.iter().enumerate() {
        let alert = c.received.len() == 7 && c.received.starts_with(&ALERT_PREFIX);
        let ok =
            c.received.is_empty() || alert || ups.iter().any(|u| is_window(&u.sent, &c.received));
        assert!(
            ok,
            "client {i} received {} bytes that no upstream sent in that order: {:02x?}",
            c.received.len(),
            &c.received[..c.received.len().min(64)]
        );
    }
}

/// `got` equals `sent[k..k + got.len()]` for some k. libc's memmem: megabytes cross in a
/// script, and a loop of ours would be instrumented byte by byte under the fuzzer.
fn is_window(sent: &[u8], got: &[u8]) -> bool {
    if got.is_empty() {
        return true;
    }
    // SAFETY: both pointers and lengths come from live slices; memmem only reads them.
    let at = unsafe {
        libc::memmem(
            sent.as_ptr().cast(),
            sent.len(),
            got.as_ptr().cast(),
            got.len(),
        )
    };
    !at.is_null()
}

/// What follows the PROXY v2 header or the CONNECT request sluice wrote first, if any.
fn strip_preamble(b: &[u8]) -> &[u8] {
    if b.starts_with(&V2_SIG) && b.len() >= 16 {
        let len = 16 + usize::from(u16::from_be_bytes([b[14], b[15]]));
        return b.get(len..).unwrap_or(&[]);
    }
    if b.starts_with(b"CONNECT ") {
        if let Some(end) = b.windows(4).position(|w| w == b"\r\n\r\n") {
            return &b[end + 4..];
        }
    }
    b
}

/// Descriptors this process holds (Linux; elsewhere not checked).
fn open_descriptors() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count())
}

/// The peer `who` among the open ones, if any.
fn pick(peers: &mut [Peer], who: usize) -> Option<&mut Peer> {
    let n = peers.len();
    if n == 0 {
        return None;
    }
    peers.get_mut(who % n)
}

/// The script's bytes: single bytes, and chunks of a length byte then that many bytes.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn chunk(&mut self) -> &'a [u8] {
        let n = usize::from(self.byte().unwrap_or(0)).min(self.0.len());
        let (c, rest) = self.0.split_at(n);
        self.0 = rest;
        c
    }
}

thread_local! {
    static RIGS: RefCell<Option<[Rig; 2]>> = const { RefCell::new(None) };
}

/// Runs one script. Its first byte picks the worker: copying, or splicing once connected.
pub fn session(data: &[u8]) {
    let Some((&which, script)) = data.split_first() else {
        return;
    };
    RIGS.with(|r| {
        let mut rigs = r.borrow_mut();
        let rigs = rigs.get_or_insert_with(|| {
            // As in the sluice binary (Rust's runtime does it there): a write to a closed
            // peer is an error, not a signal.
            // SAFETY: setting a signal disposition to SIG_IGN has no preconditions.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
            [Rig::new(false), Rig::new(true)]
        });
        rigs[usize::from(which & 1)].run(script);
    });
}

/// A seed script from a capture: open a client, send the capture in chunks of at most 255
/// bytes, let the upstream answer and both sides close.
pub fn seed_from_capture(capture: &[u8], splice: bool) -> Vec<u8> {
    let mut s = vec![u8::from(splice), 0];
    for piece in capture.chunks(255) {
        s.push(1);
        s.push(piece.len() as u8);
        s.extend_from_slice(piece);
    }
    // The upstream reads and answers (a CONNECT reply, then 64 bytes), both sides read,
    // the client half-closes, then the upstream.
    let answer = [
        &b"HTTP/1.1 200 Connection established\r\n\r\n"[..],
        &[b'a'; 64],
    ]
    .concat();
    s.extend_from_slice(&[10, 6, answer.len() as u8]);
    s.extend_from_slice(&answer);
    s.extend_from_slice(&[10, 5, 3, 10, 8, 5]);
    s
}
