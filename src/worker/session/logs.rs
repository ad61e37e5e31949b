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
use crate::logfmt::{push_or_dash, push_u64, Buffered, Out};
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
/// `close sid=3 client=127.0.0.1:35200 listener=default sni=example.test host=- name=example.test
/// route=default upstream=127.0.0.1:43629 state=HalfClosed duration_ms=2 bytes_up=725
/// bytes_down=6541 reason=done unique_id=-`
///
/// Paid by every session: its pieces are gathered on the stack (`logfmt::Buffered`) and
/// handed to the logger in one `write_str`, numbers and addresses written without the
/// formatting machinery, names checked for quoting in one pass.
pub struct CloseLine<'a> {
    /// The session id.
    pub sid: u64,
    /// The client: the PROXY header's source, else the peer.
    pub client: SocketAddr,
    /// The listener it arrived on.
    pub listener: &'a str,
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
        let mut out = Buffered::new(f);
        let o = &mut out;
        o.put(b"close sid=")?;
        push_u64(o, self.sid)?;
        o.put(b" client=")?;
        Address(Some(self.client)).push_to(o)?;
        o.put(b" listener=")?;
        push_or_dash(o, self.listener.as_bytes())?;
        o.put(b" sni=")?;
        push_or_dash(o, self.sni)?;
        o.put(b" host=")?;
        push_or_dash(o, self.host)?;
        o.put(b" name=")?;
        push_or_dash(o, self.name)?;
        o.put(b" route=")?;
        push_or_dash(o, self.route.as_bytes())?;
        o.put(b" upstream=")?;
        Address(self.upstream).push_to(o)?;
        o.put(b" state=")?;
        o.push(self.state.as_bytes())?;
        o.put(b" duration_ms=")?;
        push_u64(o, self.duration_ms)?;
        o.put(b" bytes_up=")?;
        push_u64(o, self.bytes_up)?;
        o.put(b" bytes_down=")?;
        push_u64(o, self.bytes_down)?;
        o.put(b" reason=")?;
        o.push(self.reason.as_bytes())?;
        o.put(b" unique_id=")?;
        match &self.unique_id {
            Some(id) => {
                let mut hex = [0u8; 2 * UNIQUE_ID_LEN];
                for (pair, b) in hex.chunks_exact_mut(2).zip(id) {
                    if let [hi, lo] = pair {
                        *hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
                        *lo = HEX.get(usize::from(b & 0xf)).copied().unwrap_or(b'0');
                    }
                }
                o.put(&hex)?;
            }
            None => o.put(b"-")?,
        }
        out.finish()
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
            listener: "default",
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
            "close sid=3 client=127.0.0.1:35200 listener=default sni=example.test host=- name=example.test route=default upstream=127.0.0.1:43629 state=HalfClosed duration_ms=2 bytes_up=725 bytes_down=6541 reason=done unique_id=-"
        );
        l.sni = b"";
        l.host = b"bad host\"\n";
        l.name = b"";
        l.upstream = None;
        l.unique_id = Some([0xab; UNIQUE_ID_LEN]);
        assert_eq!(
            l.to_string(),
            format!(
                "close sid=3 client=127.0.0.1:35200 listener=default sni=- host=\"bad host\\\"\\n\" name=- route=default upstream=- state=HalfClosed duration_ms=2 bytes_up=725 bytes_down=6541 reason=done unique_id={}",
                "ab".repeat(16)
            )
        );
    }
}
