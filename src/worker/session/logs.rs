//! How a session logs: every line under one target ([`TARGET`], whichever file of the
//! session writes it), and debug lines that a trace raises to info whatever the level
//! (`trace` on the control socket), so that one session can be followed live without
//! turning the whole worker to debug; and the close line ([`CloseLine`]), the access log.
//!
//! Every line is logfmt (`crate::logfmt`): what happened in words, then `sid=` and the
//! other pairs, values through `logfmt`'s rule. Only the target, the macro, its sink and the
//! close line's form; never a decision about what is traced (that is `Core`'s).

use std::fmt;
use std::net::SocketAddr;

use log::Level;

use crate::hexdump::Address;
use crate::logfmt::OrDash;
use crate::worker::session::preamble::UNIQUE_ID_LEN;

/// The target of every session line: the name it had before the session became a folder
/// (and the one the README shows), so that log filters keep working across the reshape.
pub const TARGET: &str = "sluice::session";

/// Logs at debug, or at info whatever the level for a traced session. `$s` is anything with
/// a `traced` field (the session's `Core`).
macro_rules! sdebug {
    ($s:expr, $($arg:tt)+) => {
        if $s.traced {
            crate::worker::session::logs::forced(format_args!($($arg)+));
        } else {
            log::debug!(target: crate::worker::session::logs::TARGET, $($arg)+);
        }
    };
}
pub(crate) use sdebug;

/// Emits a line past the level filter (tracing shows at any level).
pub fn forced(args: fmt::Arguments<'_>) {
    log::logger().log(
        &log::Record::builder()
            .level(Level::Info)
            .target("sluice::trace")
            .args(args)
            .build(),
    );
}

/// The close line's message, one per session at info: always the same keys in the same
/// order, `-` for what the session never learned:
///
/// `close sid=3 client=127.0.0.1:35200 sni=example.test host=- name=example.test
/// route=default upstream=127.0.0.1:43629 state=HalfClosed duration_ms=2 bytes_up=725
/// bytes_down=6541 reason=done unique_id=-`
///
/// Paid by every session: names are written bare in one `write_str` when they can be (one
/// pass to check), addresses without a `String`, the unique id through a stack buffer.
pub struct CloseLine<'a> {
    /// The session id.
    pub sid: u64,
    /// The client: the PROXY header's source, else the peer.
    pub client: SocketAddr,
    /// The ClientHello's SNI (empty: none).
    pub sni: &'a [u8],
    /// A plain HTTP request's Host (empty: none).
    pub host: &'a [u8],
    /// The name routed on (empty: none).
    pub name: &'a [u8],
    /// The route's name (`Route::name`).
    pub route: &'a str,
    /// The upstream connected to, if any.
    pub upstream: Option<SocketAddr>,
    /// Where the session stood when it closed.
    pub state: &'static str,
    /// Its life, in ms.
    pub duration_ms: u64,
    /// Bytes client → upstream.
    pub bytes_up: u64,
    /// Bytes upstream → client.
    pub bytes_down: u64,
    /// The close reason's label.
    pub reason: &'static str,
    /// The UNIQUE_ID of the PROXY v2 header sent upstream, if one was.
    pub unique_id: Option<[u8; UNIQUE_ID_LEN]>,
}

impl fmt::Display for CloseLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "close sid={} client={} sni={} host={} name={} route={} upstream={} state={} duration_ms={} bytes_up={} bytes_down={} reason={} unique_id=",
            self.sid,
            Address(Some(self.client)),
            OrDash(self.sni),
            OrDash(self.host),
            OrDash(self.name),
            OrDash(self.route.as_bytes()),
            Address(self.upstream),
            self.state,
            self.duration_ms,
            self.bytes_up,
            self.bytes_down,
            self.reason,
        )?;
        match &self.unique_id {
            Some(id) => {
                let mut hex = [0u8; 2 * UNIQUE_ID_LEN];
                for (pair, b) in hex.chunks_exact_mut(2).zip(id) {
                    if let [hi, lo] = pair {
                        *hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
                        *lo = HEX.get(usize::from(b & 0xf)).copied().unwrap_or(b'0');
                    }
                }
                f.write_str(std::str::from_utf8(&hex).unwrap_or("-"))
            }
            None => f.write_str("-"),
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_close_line_has_every_key_every_time() {
        let mut l = CloseLine {
            sid: 3,
            client: "127.0.0.1:35200".parse().unwrap(),
            sni: b"example.test",
            host: b"",
            name: b"example.test",
            route: "default",
            upstream: Some("127.0.0.1:43629".parse().unwrap()),
            state: "HalfClosed",
            duration_ms: 2,
            bytes_up: 725,
            bytes_down: 6541,
            reason: "done",
            unique_id: None,
        };
        assert_eq!(
            l.to_string(),
            "close sid=3 client=127.0.0.1:35200 sni=example.test host=- name=example.test route=default upstream=127.0.0.1:43629 state=HalfClosed duration_ms=2 bytes_up=725 bytes_down=6541 reason=done unique_id=-"
        );
        l.sni = b"";
        l.host = b"bad host\"\n";
        l.name = b"";
        l.upstream = None;
        l.unique_id = Some([0xab; UNIQUE_ID_LEN]);
        assert_eq!(
            l.to_string(),
            format!(
                "close sid=3 client=127.0.0.1:35200 sni=- host=\"bad host\\\"\\n\" name=- route=default upstream=- state=HalfClosed duration_ms=2 bytes_up=725 bytes_down=6541 reason=done unique_id={}",
                "ab".repeat(16)
            )
        );
    }
}
