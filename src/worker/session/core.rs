//! What a session keeps from accept to close whatever its phase ([`Core`]): its id and trace
//! flag, the config it started with, the client socket and its readiness, what the first
//! bytes said, the route taken, and its one timer. Also the steps that work on that alone:
//! taking in what the parsers learned, deciding the name and the route (or refusing), and
//! building the upstream preamble.
//!
//! Never reads from the client (the handshake does), never connects (connect does), never
//! shuffles (the pipe does).

use std::net::SocketAddr;
use std::rc::Rc;

use log::{info, log_enabled, warn, Level};
use mio::net::TcpStream;

use crate::admin::trace::TraceRule;
use crate::config::route::{self, Alert, AlpnTlv, Limited, Mode, Route};
use crate::config::Config;
use crate::hexdump::{Address, DumpRows, Hex};
use crate::inspect::HeaderSummary;
use crate::limits::policy::Client;
use crate::limits::table::{Admission, Refusal, Ticket};
use crate::logfmt::{OrDash, Shown};
use crate::net;
use crate::wire::{proxy, tls, Parsed};
use crate::worker::buffer::Buffer;
use crate::worker::pipe::Ready;
use crate::worker::session::ctx::Ctx;
use crate::worker::session::decide::{self, NameChoice, Source};
use crate::worker::session::facts::{Facts, HeaderFacts, Hello};
use crate::worker::session::logs::{sdebug, TARGET};
use crate::worker::session::preamble::{self, Origin};
use crate::worker::stats::CloseReason;
use crate::worker::timer::{Entry, Wheel};
use crate::worker::upstreams::pick::Cursor;

/// Bytes of a PROXY header, ClientHello or preamble dumped at debug level.
pub const DEBUG_DUMP_LIMIT: usize = 2048;

/// `<32 hex digits>` when there is one, else `-`: the UNIQUE_ID a session sent upstream, on
/// the lines that name it (logs keep the short `sid` everywhere).
pub struct UniqueIdField(pub Option<[u8; preamble::UNIQUE_ID_LEN]>);

impl std::fmt::Display for UniqueIdField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(id) => write!(f, "{}", Hex(id)),
            None => f.write_str("-"),
        }
    }
}

/// A client's key as log lines show it: its block, e.g. `192.0.2.0/24`.
struct BlockLabel(Option<crate::cidr::Cidr>);

impl std::fmt::Display for BlockLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(b) => write!(f, "{b}"),
            None => f.write_str("-"),
        }
    }
}

/// The ALPN list `hello` offers, in its wire form; `None` when it offers none or is no
/// ClientHello. `scratch` is where a hello spanning several records is put together.
fn offered_alpn<'a>(hello: &'a [u8], scratch: &'a mut [u8]) -> Option<&'a [u8]> {
    match tls::parse_client_hello(hello, scratch) {
        Parsed::Complete(h, _) => h.alpn.map(|l| l.as_bytes()).filter(|l| !l.is_empty()),
        _ => None,
    }
}

/// What a session keeps through every phase.
pub struct Core {
    /// The id that every log line of this session carries.
    pub id: u64,
    /// Transitions and hex dumps are logged whatever the level.
    pub traced: bool,
    /// The slab key (the timer entries and the tokens carry it).
    pub key: usize,
    /// The config the session started with (a reload does not change it).
    pub cfg: Rc<Config>,
    /// The accepted connection.
    pub client: TcpStream,
    /// Its readiness.
    pub client_ready: Ready,
    /// The socket peer (the load balancer, or the client itself).
    pub peer: SocketAddr,
    /// What the first bytes said.
    pub facts: Facts,
    /// Index of the route taken in `cfg.routes`; `None`: the default route.
    route: Option<usize>,
    /// The route's slot in the worker's per-route counters, once a route was chosen.
    pub route_slot: Option<usize>,
    /// The upstream address connected to (or being tried, or the last one tried).
    pub upstream_addr: Option<SocketAddr>,
    /// Where the session stands in its route's pool.
    pub pick: Cursor,
    /// When the session was accepted.
    pub started_ms: u64,
    /// The timer's deadline, and its generation (older wheel entries are stale).
    deadline_ms: u64,
    timer_gen: u32,
    /// A PROXY v2 preamble carrying this session's UNIQUE_ID was built (the close line then
    /// names it).
    pub sent_unique_id: bool,
    /// Counted in the machine's client table: given back at the close.
    pub ticket: Option<Ticket>,
}

impl Core {
    /// A session just accepted at slab `key`.
    #[inline]
    pub fn new(
        id: u64,
        key: usize,
        client: TcpStream,
        peer: SocketAddr,
        cfg: Rc<Config>,
        ctx: &Ctx<'_>,
    ) -> Core {
        Core {
            id,
            traced: ctx
                .traces
                .iter()
                .any(|t| t.selects(id, b"", Some(peer.ip()))),
            key,
            cfg,
            client,
            // Optimistic: the caller drives the session at once, and a load balancer's
            // first bytes have usually arrived with the handshake.
            client_ready: Ready::OPTIMISTIC,
            peer,
            facts: Facts {
                src: Some(peer),
                ..Facts::default()
            },
            route: None,
            route_slot: None,
            upstream_addr: None,
            pick: Cursor::default(),
            started_ms: ctx.now_ms,
            deadline_ms: 0,
            timer_gen: 0,
            sent_unique_id: false,
            ticket: None,
        }
    }

    /// Arms the session's single timer for `deadline_ms`; older entries become stale.
    pub fn arm(&mut self, wheel: &mut Wheel, deadline_ms: u64) {
        // `now_ms` is truncated to the millisecond and taken when the loop woke: one more
        // millisecond keeps every timeout from firing early in real time.
        let deadline_ms = deadline_ms + 1;
        self.deadline_ms = deadline_ms;
        self.timer_gen = self.timer_gen.wrapping_add(1);
        wheel.insert(
            deadline_ms,
            Entry {
                key: self.key,
                gen: self.timer_gen,
            },
        );
    }

    /// Makes every armed entry stale: no timer for this session.
    pub fn disarm(&mut self) {
        self.timer_gen = self.timer_gen.wrapping_add(1);
    }

    /// The generation of the live timer entry.
    pub fn timer_gen(&self) -> u32 {
        self.timer_gen
    }

    /// When the live timer is due (one millisecond past the deadline asked for).
    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms
    }

    /// The route this session took (the default route until one is chosen).
    pub fn route(&self) -> &Route {
        self.route
            .and_then(|i| self.cfg.routes.get(i))
            .unwrap_or(&self.cfg.default_route)
    }

    /// The route's pool and where the session stands in it, apart (to move on in it).
    pub fn pool_and_pick(&mut self) -> (&crate::config::pool::Pool, &mut Cursor) {
        let route = self
            .route
            .and_then(|i| self.cfg.routes.get(i))
            .unwrap_or(&self.cfg.default_route);
        (&route.pool, &mut self.pick)
    }

    /// The route's connect timeout, else ENVOY_CONNECT_TIMEOUT_MS.
    pub fn connect_timeout_ms(&self) -> u64 {
        self.route()
            .connect_timeout_ms
            .unwrap_or(self.cfg.connect_timeout_ms)
    }

    /// The route's idle timeout, else ENVOY_IDLE_TIMEOUT_MS (0: none).
    pub fn idle_timeout_ms(&self) -> u64 {
        self.route()
            .idle_timeout_ms
            .unwrap_or(self.cfg.idle_timeout_ms)
    }

    /// The client as log lines show it: the PROXY source, else the peer.
    pub fn client_label(&self) -> Address {
        Address(Some(self.facts.src.unwrap_or(self.peer)))
    }

    /// The upstream address as log lines show it, or `-`.
    pub fn upstream_label(&self) -> Address {
        Address(self.upstream_addr)
    }

    /// The client: the PROXY source, else the peer.
    pub fn client(&self) -> SocketAddr {
        self.facts.src.unwrap_or(self.peer)
    }

    /// The upstream address connected to (or being tried), if any.
    pub fn upstream_addr(&self) -> Option<SocketAddr> {
        self.upstream_addr
    }

    /// True when `rule` selects this session.
    pub fn selected_by(&self, rule: &TraceRule) -> bool {
        rule.selects(
            self.id,
            self.facts.name().as_bytes(),
            self.facts.src.map(|a| a.ip()),
        )
    }

    fn check_traced(&mut self, traces: &[TraceRule]) {
        if !self.traced && traces.iter().any(|t| self.selected_by(t)) {
            self.traced = true;
            sdebug!(
                self,
                "traced from here on sid={} listener={}",
                self.id,
                crate::logfmt::Value::str(self.cfg.listener_name())
            );
        }
    }

    /// Takes in what the PROXY header said (`None`: there was none), and dumps it at debug
    /// (or when traced: a trace on the client's address selects the session only now that
    /// the header named the client), decoded beside its bytes.
    pub fn learn_header(&mut self, header: Option<&HeaderFacts<'_>>, traces: &[TraceRule]) {
        let Some(h) = header else { return };
        self.facts.learn_header(h);
        self.check_traced(traces);
        if self.traced || log_enabled!(Level::Debug) {
            if let Parsed::Complete(parsed, _) = proxy::parse(h.bytes) {
                sdebug!(
                    self,
                    "PROXY header sid={} listener={} bytes={}{}{}",
                    self.id,
                    crate::logfmt::Value::str(self.cfg.listener_name()),
                    h.bytes.len(),
                    HeaderSummary(&parsed),
                    DumpRows::new(self.id, "proxy_header", h.bytes, DEBUG_DUMP_LIMIT)
                );
            }
        }
    }

    /// Takes in what the ClientHello or request head said.
    pub fn learn_hello(&mut self, hello: &Hello<'_>, traces: &[TraceRule]) {
        self.facts.learn_hello(hello);
        let Hello::Tls { records, bytes, .. } = *hello else {
            return;
        };
        // Provisional until `decide` weighs AUTHORITY: lets a name trace see the hello.
        self.facts.routed_on = Some(Source::Hello);
        let src = self.facts.src.map(|a| a.ip());
        if traces
            .iter()
            .any(|t| t.selects(self.id, self.facts.name().as_bytes(), src))
        {
            self.traced = true;
        }
        if self.traced || log_enabled!(Level::Debug) {
            sdebug!(
                self,
                "ClientHello sid={} listener={} bytes={} records={} sni={} alpn={} ech={}{}",
                self.id,
                crate::logfmt::Value::str(self.cfg.listener_name()),
                bytes.len(),
                records,
                OrDash(self.facts.sni.as_bytes()),
                OrDash(self.facts.alpn.as_bytes()),
                self.facts.ech,
                DumpRows::new(self.id, "client_hello", bytes, DEBUG_DUMP_LIMIT)
            );
        }
    }

    /// Chooses the name and the route, or refuses (with a TLS alert where one is due).
    /// `received` is every byte read so far (captured when the session is traced).
    pub fn decide(&mut self, received: &[u8], ctx: &mut Ctx<'_>) -> Result<(), CloseReason> {
        let source = match decide::choose_name(
            self.facts.asked_name().as_bytes(),
            self.facts.authority.as_bytes(),
            self.cfg.name_mismatch,
        ) {
            NameChoice::Agreed(s) => s,
            NameChoice::Mismatched(s) => {
                ctx.stats.name_mismatches += 1;
                s
            }
            NameChoice::Refused => {
                ctx.stats.name_mismatches += 1;
                warn!(
                    target: TARGET,
                    "SNI differs from PROXY AUTHORITY sid={} client={} listener={} sni={} host={} authority={}",
                    self.id,
                    self.client_label(),
                    crate::logfmt::Value::str(self.cfg.listener_name()),
                    OrDash(self.facts.sni.as_bytes()),
                    OrDash(self.facts.host.as_bytes()),
                    OrDash(self.facts.authority.as_bytes())
                );
                return Err(self.refuse(CloseReason::NameMismatch, Alert::UnrecognizedName));
            }
        };
        self.facts.routed_on = Some(source);
        self.check_traced(ctx.traces);
        if self.traced {
            if let Some(c) = ctx.capture.as_deref_mut() {
                c.save(self.id, "traced", received);
            }
        }
        if self.facts.ech && !self.cfg.allow_ech {
            info!(
                target: TARGET,
                "ECH refused sid={} client={} listener={} ech={}",
                self.id,
                self.client_label(),
                crate::logfmt::Value::str(self.cfg.listener_name()),
                self.cfg.shown("ENVOY_ECH")
            );
            return Err(self.refuse(CloseReason::EchRefused, Alert::HandshakeFailure));
        }
        let name = self.facts.name();
        let req = route::Request {
            name: (!name.is_empty()).then(|| name.as_bytes()),
            dst_port: self.facts.dst.map(|d| d.port()),
            client: self.facts.src.map(|s| s.ip()),
            alpn: self.facts.alpn.as_bytes(),
            proto: self.facts.proto,
            listener: self.cfg.listener,
        };
        let (index, denied, limited) = {
            let route = self.cfg.route(&req);
            (
                self.cfg.routes.iter().position(|r| std::ptr::eq(r, route)),
                decide::denial(route.action, route.matches_on_client()),
                route.limited.is_some(),
            )
        };
        self.route = index;
        let slot = self.route().metrics_slot;
        self.route_slot = Some(slot);
        if let Some(r) = ctx.stats.routes.get_mut(slot) {
            r.sessions += 1;
        }
        if let Some((reason, alert)) = denied {
            info!(
                target: TARGET,
                "denied by route sid={} client={} listener={} name={} route={} alert={}",
                self.id,
                self.client_label(),
                crate::logfmt::Value::str(self.cfg.listener_name()),
                OrDash(name.as_bytes()),
                self.route().name,
                alert.as_str()
            );
            return Err(self.refuse(reason, alert));
        }
        // Limits off: this one branch is all they cost.
        if limited {
            if let Some(l) = self.route().limited {
                return self.hold_to_limits(&l, ctx);
            }
        }
        Ok(())
    }

    /// Counts the session against its client's limits in the machine's table, before any
    /// upstream is opened; refuses it (with the route's alert) when the client is over one.
    /// A client on the allow list is neither limited nor counted. Refusals are logged once
    /// per client every `table::LOG_INTERVAL_S` with their count since the last line.
    // Out of line: inlined, it would make `decide` dearer with every limit off too.
    #[inline(never)]
    fn hold_to_limits(&mut self, l: &Limited, ctx: &mut Ctx<'_>) -> Result<(), CloseReason> {
        let ip = self.facts.src.unwrap_or(self.peer).ip();
        let settings = &self.cfg.clients;
        if !settings.allow.is_empty() && settings.allows(ip) {
            return Ok(());
        }
        let client = Client::of(ip, settings.prefixes, l.limit.scope);
        match ctx.clients.admit(&client, &l.limit, ctx.now_ms) {
            Admission::Admitted(t) => {
                self.ticket = Some(t);
                Ok(())
            }
            other => self.not_counted(other, &client, l, ctx),
        }
    }

    /// A session the table did not count: refused (logged at most once per client per
    /// interval), or admitted without a limit for want of room (counted, logged likewise).
    #[cold]
    #[inline(never)]
    fn not_counted(
        &mut self,
        a: Admission,
        client: &Client,
        l: &Limited,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), CloseReason> {
        let (why, log) = match a {
            Admission::Refused { why, log } => (why, log),
            Admission::Admitted(t) => {
                self.ticket = Some(t); // not here: `hold_to_limits` keeps the ticket itself
                return Ok(());
            }
            Admission::Unlimited { log } => {
                ctx.stats.client_table_full += 1;
                if let Some(n) = log {
                    warn!(
                        target: TARGET,
                        "client table full, session admitted without a limit sid={} client={} listener={} key={} table_size={} admitted={}",
                        self.id,
                        self.client_label(),
                        crate::logfmt::Value::str(self.cfg.listener_name()),
                        BlockLabel(client.block()),
                        ctx.clients.capacity(),
                        n
                    );
                }
                return Ok(());
            }
        };
        let reason = match why {
            Refusal::Sessions => CloseReason::ClientLimit,
            Refusal::Rate => CloseReason::ClientRate,
        };
        // Per-route refusal series (issue 16) count here: `self.route()` is known.
        if let Some(n) = log {
            let limit = match (why, l.limit.pace) {
                (Refusal::Rate, Some(p)) => format!("rate={} burst={}", p.rate, p.burst),
                _ => format!("limit={}", l.limit.max_sessions),
            };
            info!(
                target: TARGET,
                "client limited sid={} client={} listener={} key={} route={} {} reason={} refused={}",
                self.id,
                self.client_label(),
                crate::logfmt::Value::str(self.cfg.listener_name()),
                BlockLabel(client.block()),
                self.route(),
                limit,
                reason.as_str(),
                n
            );
        }
        Err(self.refuse(reason, l.alert))
    }

    /// Sends a TLS alert (to TLS clients, when there is one) and gives the close reason.
    fn refuse(&mut self, reason: CloseReason, alert: Alert) -> CloseReason {
        if let Some(code) = decide::alert_code(self.facts.proto, alert) {
            // Seven bytes into an empty socket buffer: cannot block; a failure changes nothing.
            let _ = net::write(&mut self.client, &preamble::alert_record(code));
        }
        reason
    }

    /// The route's PROXY v2 header or CONNECT request, in a pool buffer; `None` for direct.
    /// `header` is the PROXY header as received (its TLVs may be passed on); `hello` what
    /// followed it (read again only for a route that sends the offered ALPN list).
    pub fn preamble(
        &mut self,
        header: &[u8],
        hello: &[u8],
        ctx: &mut Ctx<'_>,
    ) -> Result<Option<Buffer>, CloseReason> {
        let route = self.route();
        if route.mode == Mode::Direct {
            return Ok(None);
        }
        let local = self.client.local_addr().unwrap_or(self.peer);
        let unique_id = preamble::unique_id(ctx.unique_prefix, self.id);
        let offered_alpn = match (route.mode, route.alpn_tlv) {
            (Mode::ProxyV2, AlpnTlv::Offered) => offered_alpn(hello, ctx.scratch),
            _ => None,
        };
        let origin = Origin {
            src: self.facts.src.unwrap_or(self.peer),
            dst: self.facts.dst.unwrap_or(local),
            dst_from_header: self.facts.dst.is_some(),
            name: (!self.facts.name().is_empty()).then(|| self.facts.name().as_bytes()),
            offered_alpn,
            unique_id: &unique_id,
            header,
        };
        let mut pre = ctx.pool.take().ok_or(CloseReason::NoBuffer)?;
        match preamble::preamble(route, &self.cfg, &origin, pre.space()) {
            Ok(n) => {
                pre.filled(n);
                let proxy_v2 = route.mode == Mode::ProxyV2;
                if self.traced || log_enabled!(Level::Debug) {
                    sdebug!(
                        self,
                        "preamble sid={} listener={} mode={} bytes={} unique_id={}{}",
                        self.id,
                        crate::logfmt::Value::str(self.cfg.listener_name()),
                        route.mode.as_str(),
                        n,
                        UniqueIdField(proxy_v2.then_some(unique_id)),
                        DumpRows::new(self.id, "preamble", pre.data(), DEBUG_DUMP_LIMIT)
                    );
                }
                self.sent_unique_id = proxy_v2;
                Ok(Some(pre))
            }
            Err(e) => {
                ctx.pool.give(pre);
                warn!(
                    target: TARGET,
                    "preamble failed sid={} client={} listener={} route={} error={}",
                    self.id,
                    self.client_label(),
                    crate::logfmt::Value::str(self.cfg.listener_name()),
                    route.name,
                    Shown(e)
                );
                Err(CloseReason::PreambleFailed)
            }
        }
    }
}
