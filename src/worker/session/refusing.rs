//! The refusing phase: a session refused once its first bytes were read (a route's denial,
//! a name mismatch, ECH refused) has written its TLS alert, if any. Its write side is shut
//! here, so that a FIN follows the alert; then what the client still sends is read and
//! dropped until its own FIN. A socket closed with bytes unread sends a reset instead of a
//! FIN, and a reset can make the client's kernel throw the alert away unread: today's
//! client with more than a buffer's worth in flight (early data, a pipelined upload) would
//! see "connection reset" instead of `unrecognized_name`.
//!
//! Bounded, never blocking the loop: at most [`LINGER_BYTES`] are dropped and
//! [`LINGER_MS`] waited (the session's one timer), then the close comes whatever is left.
//! Never writes to the client (the alert was written before), never touches an upstream.

use crate::net::{self, Io};
use crate::worker::pipe::READ_BUDGET;
use crate::worker::session::core::Core;
use crate::worker::session::ctx::Next;
use crate::worker::stats::CloseReason;

/// The most bytes a refused client may still send before it is closed regardless.
pub const LINGER_BYTES: u64 = 256 * 1024;

/// How long a refused client has to read its alert and close, at most.
pub const LINGER_MS: u64 = 1000;

/// The refusing phase's data.
pub struct Refusing {
    /// Why the session is refused: the close reason, whenever the close comes.
    reason: CloseReason,
    /// Bytes read and dropped so far.
    dropped: u64,
}

impl Refusing {
    /// Shuts the write side (the FIN goes out after the alert already written) and starts
    /// dropping what comes.
    pub fn new(reason: CloseReason, core: &mut Core) -> Refusing {
        net::shutdown_write(&core.client);
        Refusing { reason, dropped: 0 }
    }

    /// The close reason.
    pub fn reason(&self) -> CloseReason {
        self.reason
    }

    /// Reads and drops what the client sent, within the budget; the close comes at its FIN,
    /// an error, or past [`LINGER_BYTES`].
    pub fn drain(&mut self, core: &mut Core, scratch: &mut [u8]) -> Next {
        if !core.client_ready.readable {
            return Next::Wait;
        }
        for _ in 0..READ_BUDGET {
            let room = scratch.len();
            match net::read(&mut core.client, scratch) {
                Io::Done(n) => {
                    self.dropped = self.dropped.saturating_add(n as u64);
                    if self.dropped > LINGER_BYTES {
                        return Next::Close(self.reason);
                    }
                    core.client_ready.after_read(n, room);
                    if !core.client_ready.readable {
                        return Next::Wait;
                    }
                }
                Io::WouldBlock => {
                    core.client_ready.readable = false;
                    return Next::Wait;
                }
                Io::Closed | Io::Error(_) => return Next::Close(self.reason),
            }
        }
        Next::Again
    }
}
