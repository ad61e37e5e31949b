//! The session's bargain with the event loop: what the loop lends a session while it is
//! driven ([`Ctx`]) and what the session asks of it afterwards ([`Next`]).
//!
//! Only the two types: no logic, nothing the loop or the session must do.

use mio::Registry;

use crate::admin::capture::Capture;
use crate::admin::trace::TraceRule;
use crate::limits::ClientTable;
use crate::worker::buffer::Pool;
use crate::worker::splice::PipePool;
use crate::worker::stats::{CloseReason, Stats};
use crate::worker::timer::Wheel;

/// What the loop should do after driving a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait for the next readiness event or timer.
    Wait,
    /// The budget ran out with work left: drive again on the next loop turn.
    Again,
    /// Close the session for this reason.
    Close(CloseReason),
}

/// What the loop lends a session while it is driven.
pub struct Ctx<'a> {
    /// To register the upstream socket.
    pub registry: &'a Registry,
    /// Buffers for the directions.
    pub pool: &'a mut Pool,
    /// Splice pipes for bulk directions (Linux).
    pub pipes: &'a mut PipePool,
    /// Deadlines.
    pub wheel: &'a mut Wheel,
    /// Counters.
    pub stats: &'a mut Stats,
    /// Where a ClientHello spanning several records is reassembled.
    pub scratch: &'a mut [u8],
    /// Milliseconds since the loop started.
    pub now_ms: u64,
    /// Which sessions are traced.
    pub traces: &'a [TraceRule],
    /// Where failed and traced sessions' first bytes go, if anywhere.
    pub capture: Option<&'a mut Capture>,
    /// This process's random half of the UNIQUE_ID sent upstream (the session id is the
    /// other), drawn once at start.
    pub unique_prefix: u64,
    /// The machine's per-client counters (shared with every worker).
    pub clients: &'a ClientTable,
}
