//! Steady traffic through a running sluice for the observing tests (status page, Prometheus,
//! `ctl top`): three routes, one of them denying, sessions opened and closed in a loop by a
//! few threads until the traffic is dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::{fixture, listener, Sluice, TempDir};

/// The routes: curl's h2 hello is denied by `no-h2`, its HTTP/1.1 hello goes through `web`,
/// a hello without SNI takes the default route.
pub const ROUTES: &str = "alpn=h2 deny name=no-h2; sni=* allow name=web";

/// An upstream that echoes whatever it reads.
pub fn echo_upstream() -> SocketAddr {
    let (l, addr) = listener();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(k) = s.read(&mut buf) {
                    if k == 0 || s.write_all(&buf[..k]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// `sluice run` with two workers, the routes above, a control socket (`ctl.sock` in `dir`)
/// and a metrics address; the address it serves metrics on.
pub fn start_observed(dir: &TempDir, extra: &[(&str, &str)]) -> (Sluice, SocketAddr) {
    let upstream = echo_upstream();
    let sock = dir.path("ctl.sock");
    let mut env = vec![
        ("ENVOY_UPSTREAM", upstream.to_string()),
        (
            "ENVOY_ROUTES",
            format!("{ROUTES}; sni=* allow name=unused upstream={upstream}"),
        ),
        ("ENVOY_CONTROL_SOCKET", sock.to_str().unwrap().to_string()),
        ("ENVOY_METRICS_ADDR", "127.0.0.1:0".to_string()),
        ("ENVOY_WORKERS", "2".to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut s = Sluice::start(&env);
    s.wait_for_count("listening addr=", 2, Duration::from_secs(10));
    let line = s.wait_for_log("metrics listening url=http://", Duration::from_secs(5));
    let url = super::fields(&line)["url"].clone();
    let addr = url
        .strip_prefix("http://")
        .and_then(|u| u.strip_suffix("/metrics"))
        .unwrap()
        .parse()
        .unwrap();
    (s, addr)
}

/// Sessions in a loop until dropped.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    /// Sessions run so far.
    pub sessions: Arc<AtomicU64>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Traffic {
    /// Starts `threads` loops against `addr`, each cycling through the three kinds of
    /// session; each passing session sends `payload` bytes and reads them back.
    pub fn start(addr: SocketAddr, threads: usize, payload: usize) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let sessions = Arc::new(AtomicU64::new(0));
        let hellos = [
            fixture("client-curl-7.88.1-http1.1.bin"),
            fixture("client-openssl-3.0.19-s_client-noservername.bin"),
            fixture("client-curl-7.88.1-h2.bin"),
        ];
        let threads = (0..threads)
            .map(|t| {
                let (stop, sessions, hellos) = (stop.clone(), sessions.clone(), hellos.clone());
                thread::spawn(move || {
                    let mut i = t;
                    let body = vec![b'x'; payload];
                    while !stop.load(Ordering::Relaxed) {
                        let hello = &hellos[i % hellos.len()];
                        i += 1;
                        let _ = one_session(addr, hello, &body);
                        sessions.fetch_add(1, Ordering::Relaxed);
                        thread::sleep(Duration::from_millis(20));
                    }
                })
            })
            .collect();
        Traffic {
            stop,
            sessions,
            threads,
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn one_session(addr: SocketAddr, hello: &[u8], body: &[u8]) -> std::io::Result<()> {
    let mut c = TcpStream::connect(addr)?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    c.write_all(hello)?;
    c.write_all(body)?;
    let mut want = hello.len() + body.len();
    let mut buf = [0u8; 65536];
    while want > 0 {
        match c.read(&mut buf)? {
            0 => break, // denied: closed after its alert
            n => want = want.saturating_sub(n),
        }
    }
    Ok(())
}

/// `GET path` on `addr`: (status line, content type, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let mut c = TcpStream::connect(addr).expect("connect to the metrics address");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(c, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut reply = String::new();
    c.read_to_string(&mut reply).expect("read the reply");
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
    let status = head.lines().next().unwrap_or("").to_string();
    let kind = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .unwrap_or("")
        .to_string();
    (status, kind, body.to_string())
}
