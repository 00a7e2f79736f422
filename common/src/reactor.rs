//! The single-threaded mio reactor: the only code in goworld-rs that owns sockets.
//!
//! One `mio::Poll` per process. Listeners and the waker have fixed tokens; connections live
//! in a slab and are named by [`ConnId`], a slot plus a generation, so a reused slot is never
//! mistaken for the connection that had it before.
//!
//! One loop iteration, in this order:
//! 1. poll, with a timeout from the handler's [`Handler::next_deadline`] (no busy ticking);
//! 2. handle events: accept, connect, read every complete frame into [`Handler::on_frame`]
//!    (reads drain until `WouldBlock`, or the connection is re-queued on a ready list served
//!    before the next blocking poll), signals, the waker;
//! 3. [`Handler::on_tick`]: the component fires its due timers (by deadline, then insertion
//!    order), runs posted callbacks until none are left, and does periodic work that is due;
//! 4. flush: one `write` per connection with pending output. WRITABLE interest is registered
//!    only while a write would block; buffers that grew in a burst are released once drained.
//!    A client link is written at most once per [`ReactorConfig::client_flush_interval`]
//!    (output for a client not written to for that long goes at once), and that interval
//!    follows [`ReactorConfig::client_write_budget`] under load.
//!
//! Component logic sees the reactor only through [`Io`], so it can run against an in-memory
//! `Io` in tests with a fake clock.
//!
//! The ready list is taken before an iteration's events are handled, so a connection whose
//! read budget (see [`ReactorConfig::read_budget`]) ran out in this iteration is read again in
//! the next one, after everyone else had a turn; while it is non-empty the poll does not block.
//!
//! Backpressure: a [`LinkKind::Client`] link whose pending output passes its limit is closed.
//! A [`LinkKind::Server`] link is never closed for size; once its pending output passes the
//! high watermark it is *congested* until a flush brings it below the low watermark, and while
//! any server link is congested the reactor reads from no other connection: by default it
//! goes on reading only the congested links themselves. Each process says more precisely
//! which reads pause with [`ReactorConfig::pause_rule`], by link group: a game reads nothing
//! (everything it reads feeds its one link); a dispatcher reads a congested link only while
//! everything congested is of its kind (game frames feed gates and gate frames feed games);
//! a gate stops reading clients, but goes on reading dispatchers unless its client output is
//! over budget, so no two processes wait for each other. A pause takes effect between two
//! frames: frames already read wait in the decoder. All client links together over
//! [`ReactorConfig::client_output_budget`] count as one more congestion, of
//! [`CLIENT_OUTPUT_GROUP`]. Connections that became readable meanwhile are remembered (their data stays in
//! the kernel, which in turn slows their senders) and are put back on the ready list when the
//! last congestion clears.
//!
//! Observability: [`Reactor::add_http`] serves `GET /metrics` and `GET /status` on a
//! listener of their own (one request per connection, answered within the loop from the
//! loop's counters and [`Handler::metrics`] / [`Handler::status`]; bodies are built by
//! [`crate::http`]). The loop times every frame and tick handler call, counts frames and
//! bytes by message type, and logs a call over [`SLOW_HANDLER`].
//!
//! Heartbeats: a link opened with [`LinkOpts::heartbeat`] (the dispatcher links) gets an
//! empty frame (a zero length, no payload) queued every timeout / [`HEARTBEATS_PER_TIMEOUT`]
//! and is closed with [`CloseReason::Silent`] once nothing at all arrived on it for the
//! timeout; the empty frames the peer sends are consumed here, never shown to the handler. A
//! link whose reads are paused counts as heard from (its peer's bytes wait in our buffers).
//!
//! Closing: [`Io::close`], io errors, EOF, oversized frames and output limits only *mark* a
//! connection; the one teardown routine flushes what it can, deregisters, removes the slot and
//! reports [`Handler::on_close`] exactly once (or schedules the redial for a failed connect).

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

mod kcp;

use crate::frame::{write_frame2, FrameDecoder, FrameError};
use crate::http::{self, Histogram, Metrics, Parse, Status};
use crate::transport::snappy::SnappyLayer;
use crate::transport::stack::{Stack, StackSpec};
use crate::transport::tls::Tls;
use crate::transport::ws::{self, WsServer};
use crate::transport::StreamLayer;
use kcp::{KcpDial, KcpListener, Sock};
pub use kcp::{KCP_IDLE, KCP_MAX_SESSIONS};

/// A connection: slab slot plus generation. Copyable; stale IDs are ignored by [`Io`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub slot: u32,
    pub gen: u32,
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}.{}", self.slot, self.gen)
    }
}

/// How a link is treated: limits, and what happens when its output backs up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// A game client on a gate. Closed with a logged reason when pending output passes
    /// `output_limit`.
    Client { output_limit: usize },
    /// A link between servers. Never closed for size: above the reactor's high watermark the
    /// reactor stops reading from every other connection until it drains, and counts it.
    Server,
}

/// Per-link settings, given with a listener or a dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkOpts {
    pub kind: LinkKind,
    /// Largest payload accepted from the peer; a bigger length header closes the connection.
    pub max_frame: u32,
    /// The link's group for [`ReactorConfig::pause_rule`] (below [`CLIENT_OUTPUT_GROUP`]);
    /// [`Io::set_group`] changes it once the peer is known.
    pub group: u8,
    /// Heartbeats (server links): `Some(timeout)` makes the reactor send an empty frame
    /// (a length header of 0) every `timeout / HEARTBEATS_PER_TIMEOUT`, consume the empty
    /// frames the peer sends, and close the link with [`CloseReason::Silent`] when nothing at
    /// all arrived for `timeout`. Both ends of a link must agree on it. `None`: off.
    pub heartbeat: Option<Duration>,
}

/// Heartbeats sent per heartbeat timeout (see [`LinkOpts::heartbeat`]): a link misses this
/// many before it is declared silent.
pub const HEARTBEATS_PER_TIMEOUT: u32 = 5;

/// Where a connection came from, as told to [`Handler::on_open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Accepted on the listener added with this tag.
    Accepted { listener: u32 },
    /// Dialed for the dial added with this tag (a reconnect reports the same tag).
    Dialed { dial: u32 },
}

/// Why a connection closed, as told to [`Handler::on_close`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed its side (EOF).
    PeerClosed,
    /// An io error, named by kind ("connection reset by peer"), never by its os-error text.
    Io(String),
    /// A frame length above the link's `max_frame`.
    FrameTooLarge { len: u32, max: u32 },
    /// A client link whose pending output passed its limit.
    OutputLimit { pending: usize, limit: usize },
    /// Closed by the handler through [`Io::close`], with its reason.
    Local(String),
    /// A dial that failed before connecting (the reactor retries with backoff).
    ConnectFailed(String),
    /// A link with heartbeats on which nothing arrived for this long (its timeout).
    Silent(Duration),
    /// A transport layer (TLS, WebSocket, snappy) refused the peer's bytes, or the peer
    /// ended the layer's session; the text says which and why.
    Transport(String),
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::PeerClosed => f.write_str("peer closed the connection"),
            CloseReason::Io(kind) => f.write_str(kind),
            CloseReason::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max}")
            }
            CloseReason::OutputLimit { pending, limit } => {
                write!(
                    f,
                    "{pending} bytes of output pending, over the limit of {limit}"
                )
            }
            CloseReason::Local(reason) => f.write_str(reason),
            CloseReason::ConnectFailed(kind) => write!(f, "connect failed: {kind}"),
            CloseReason::Silent(t) => write!(
                f,
                "nothing received for {:.1} s (heartbeat timeout)",
                t.as_secs_f64()
            ),
            CloseReason::Transport(why) => write!(f, "transport: {why}"),
        }
    }
}

/// What component logic may do to connections. The reactor implements it by appending frames
/// to per-connection buffers (flushed once per loop iteration); tests implement it in memory.
pub trait Io {
    /// Queues one frame whose payload is `payload`. Unknown or closed connections are ignored.
    fn send(&mut self, conn: ConnId, payload: &[u8]);
    /// Queues one frame whose payload is `head` followed by `tail` (appending a field without
    /// copying the message first).
    fn send2(&mut self, conn: ConnId, head: &[u8], tail: &[u8]);
    /// Closes a connection after flushing what is queued for it; `reason` is logged by the
    /// caller and reported back through [`Handler::on_close`] as [`CloseReason::Local`].
    fn close(&mut self, conn: ConnId, reason: &str);
    /// Bytes queued and not yet written for `conn` (0 for unknown connections).
    fn pending(&self, conn: ConnId) -> usize;
    /// Puts `conn` in `group` (see [`ReactorConfig::pause_rule`]); a peer's kind is often
    /// known only after its handshake.
    fn set_group(&mut self, _conn: ConnId, _group: u8) {}
}

/// A handler with a hook run after each of its ticks: the binaries use it to print what the
/// component reports (a ready line) without the component touching stdout.
pub struct AfterTick<H, F> {
    pub inner: H,
    pub after_tick: F,
}

impl<H: Handler, F: FnMut(&mut H)> Handler for AfterTick<H, F> {
    fn on_open(
        &mut self,
        io: &mut dyn Io,
        now: Instant,
        conn: ConnId,
        origin: Origin,
        peer: SocketAddr,
    ) {
        self.inner.on_open(io, now, conn, origin, peer)
    }
    fn on_frame(&mut self, io: &mut dyn Io, now: Instant, conn: ConnId, payload: &[u8]) {
        self.inner.on_frame(io, now, conn, payload)
    }
    fn on_close(&mut self, io: &mut dyn Io, now: Instant, conn: ConnId, reason: &CloseReason) {
        self.inner.on_close(io, now, conn, reason)
    }
    fn on_tick(&mut self, io: &mut dyn Io, now: Instant, wall: SystemTime) {
        self.inner.on_tick(io, now, wall);
        (self.after_tick)(&mut self.inner)
    }
    fn next_deadline(&self) -> Option<Instant> {
        self.inner.next_deadline()
    }
    fn on_signal(&mut self, io: &mut dyn Io, now: Instant, signal: i32) {
        self.inner.on_signal(io, now, signal)
    }
    fn on_wake(&mut self, io: &mut dyn Io, now: Instant) {
        self.inner.on_wake(io, now)
    }
    fn should_stop(&self) -> bool {
        self.inner.should_stop()
    }
    fn metrics(&self, m: &mut Metrics) {
        self.inner.metrics(m)
    }
    fn status(&self, s: &mut Status) {
        self.inner.status(s)
    }
}

/// A component (dispatcher, gate, game, bot) driven by the reactor. Every method gets the
/// time as arguments; none may read the clock, sockets, files or the environment itself.
pub trait Handler {
    /// A connection was accepted or a dial connected.
    fn on_open(
        &mut self,
        io: &mut dyn Io,
        now: Instant,
        conn: ConnId,
        origin: Origin,
        peer: SocketAddr,
    );
    /// One complete frame's payload arrived on `conn`.
    fn on_frame(&mut self, io: &mut dyn Io, now: Instant, conn: ConnId, payload: &[u8]);
    /// `conn` is gone; it will not be reported again. Not called for failed dials.
    fn on_close(&mut self, io: &mut dyn Io, now: Instant, conn: ConnId, reason: &CloseReason);
    /// Called once per loop iteration after events: fire due timers, run posted work.
    fn on_tick(&mut self, io: &mut dyn Io, now: Instant, wall: SystemTime);
    /// The earliest time `on_tick` has something to do; `None` sleeps until the next event.
    fn next_deadline(&self) -> Option<Instant>;
    /// SIGINT, SIGTERM, SIGHUP, SIGUSR1 or SIGUSR2 arrived (the number is libc's).
    fn on_signal(&mut self, io: &mut dyn Io, now: Instant, signal: i32);
    /// A worker thread called [`mio::Waker::wake`] on the reactor's waker.
    fn on_wake(&mut self, _io: &mut dyn Io, _now: Instant) {}
    /// True once the component wants the loop to end (after the current flush).
    fn should_stop(&self) -> bool;
    /// The process's own figures for `GET /metrics`, after the loop's (see
    /// [`Reactor::add_http`]).
    fn metrics(&self, _m: &mut Metrics) {}
    /// The process's own fields for `GET /status`, after the loop's.
    fn status(&self, _s: &mut Status) {}
}

/// The waker's fixed token.
const WAKER_TOKEN: Token = Token(usize::MAX);
/// The signal pipe's fixed token.
const SIGNAL_TOKEN: Token = Token(usize::MAX - 1);
/// Listener `i` has token `LISTENER_BASE + i`; connections use their slab slot, below it.
const LISTENER_BASE: usize = usize::MAX / 2;
/// KCP listener `i` (a UDP socket) has token `KCP_BASE + i`, above the TCP listeners.
const KCP_BASE: usize = LISTENER_BASE + usize::MAX / 8;
/// The observability endpoint's listener.
const HTTP_LISTENER: Token = Token(usize::MAX - 2);
/// HTTP connection `k` has token `HTTP_BASE + k` (below the listeners, above every slot).
const HTTP_BASE: usize = usize::MAX / 4;
/// HTTP connections open at once; more are closed as they are accepted.
const HTTP_MAX_CONNS: usize = 16;
/// The same while WebSocket clients connect through the endpoint (each holds an HTTP slot
/// only until its upgrade request is in, or [`HTTP_DEADLINE`]).
const WS_HTTP_MAX_CONNS: usize = 4096;
/// How long one HTTP request and its answer may take before the connection is closed.
const HTTP_DEADLINE: Duration = Duration::from_secs(5);
/// A handler call (a frame, a tick) longer than this is logged with what it was.
pub const SLOW_HANDLER: Duration = Duration::from_millis(100);
/// Message types counted one by one in the traffic metrics; higher ones share one counter.
const COUNTED_TYPES: usize = 2048;

/// The default [`ReactorConfig::handshake_timeout`]: a client that connects and never
/// finishes its TLS or WebSocket handshake costs its connection only this long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// One read from a connection with transport layers takes at most this many bytes.
const LAYER_READ: usize = 64 * 1024;
/// Buffers above this capacity are released once drained.
const BUF_KEEP: usize = 64 * 1024;
/// First redial delay; doubles per failure up to [`BACKOFF_MAX`].
const BACKOFF_START: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long accepting stops when the process is out of file descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// A dial that has neither connected nor failed by then counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound on the flush after the handler asked to stop.
const FINAL_FLUSH: Duration = Duration::from_secs(1);

/// Reactor tuning. [`Default`] gives the production values, with signals off.
#[derive(Debug, Clone)]
pub struct ReactorConfig {
    /// A connection with transport layers whose handshakes (TLS, WebSocket) are not over
    /// by then is closed ([`HANDSHAKE_TIMEOUT`] by default).
    pub handshake_timeout: Duration,
    /// KCP sessions one KCP endpoint keeps at once ([`KCP_MAX_SESSIONS`] by default): a
    /// datagram that would open one more is dropped and counted, so a flood from many
    /// addresses costs at most this many sessions.
    pub kcp_max_sessions: usize,
    /// Pending output of a server link above which reads from other connections stop.
    pub high_watermark: usize,
    /// Pending output every congested server link must drop below before reads resume.
    pub low_watermark: usize,
    /// Bytes read from one connection per loop iteration before others get their turn.
    pub read_budget: usize,
    /// Which reads pause while something is congested: called with the group of the link
    /// that would be read, whether that link is congested itself, and the group of a
    /// congested link (or [`CLIENT_OUTPUT_GROUP`] while client output is over its budget);
    /// `true` pauses. The default, [`pause_unless_congested_itself`], pauses every read but
    /// those of the congested links themselves. See the module docs for why each process
    /// has its own rule; groups are given with [`LinkOpts::group`] or [`Io::set_group`].
    pub pause_rule: PauseRule,
    /// Total pending output of all client links above which the reactor counts as congested
    /// (reads pause as for a congested server link) until it falls below half of it, so a
    /// gate whose clients cannot keep up holds back its dispatchers instead of buffering
    /// without bound (each client is also closed past its own `output_limit`). Zero: none.
    pub client_output_budget: usize,
    /// Deliver SIGINT, SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 to [`Handler::on_signal`]. Off by
    /// default so tests and embedded uses do not take over process-wide signals; the server
    /// binaries turn it on.
    pub signals: bool,
    /// The shortest time between two writes to one client link (zero: every loop iteration
    /// that queued output writes it). Output for a client that was not written to for this
    /// long goes out in the same iteration, so a quiet client waits for nothing; a busy one
    /// gets everything queued in the meantime in one `write` once the interval has passed.
    /// A gate that fans chat out to thousands of clients otherwise pays one `write` (and the
    /// loopback receive path behind it) per client per message. Output over
    /// [`CLIENT_FLUSH_BYTES`] goes at once.
    pub client_flush_interval: Duration,
    /// Writes per second to all client links together that the reactor aims to stay under
    /// (zero: none). Once a second, if the last second's writes were over it, the interval
    /// between two writes to one client grows (at most doubling, up to
    /// [`MAX_CLIENT_FLUSH_INTERVAL`]) so that busy clients are written to less often; when
    /// they fall back under it, the interval shrinks back towards `client_flush_interval`.
    /// Each `write` to a client costs the gate (and on loopback the receiving side too) a
    /// few microseconds whatever its size, so with world chat to thousands of clients this
    /// keeps the gate's cost bounded by trading latency for it.
    pub client_write_budget: u64,
}

/// Read pauses after the first are logged at most once per this.
const PAUSE_LOG_WINDOW: Duration = Duration::from_secs(60);

/// The longest the interval between two writes to one client grows to under load.
pub const MAX_CLIENT_FLUSH_INTERVAL: Duration = Duration::from_millis(500);

/// Decides whether reads from a link pause: `(reader group, reader congested itself, congested
/// group) -> pause`. See [`ReactorConfig::pause_rule`].
pub type PauseRule = fn(u8, bool, u8) -> bool;

/// Links are in groups 0..[`GROUPS`] (0 unless said otherwise).
pub const GROUPS: u8 = 8;

/// The group that stands for all client output over [`ReactorConfig::client_output_budget`].
pub const CLIENT_OUTPUT_GROUP: u8 = GROUPS - 1;

/// The default [`PauseRule`]: while anything is congested, read only the congested links
/// themselves (so a peer that waits for us to read it is always read).
pub fn pause_unless_congested_itself(_reader: u8, reader_congested: bool, _congested: u8) -> bool {
    !reader_congested
}

/// A [`PauseRule`] for a process whose every input feeds its every output (a game): while
/// anything is congested, read nothing, not even a frame already read.
pub fn pause_all(_reader: u8, _reader_congested: bool, _congested: u8) -> bool {
    true
}

/// Pending client output at which a client link is written at once, whatever its interval.
pub const CLIENT_FLUSH_BYTES: usize = 16 << 10;

impl Default for ReactorConfig {
    fn default() -> ReactorConfig {
        ReactorConfig {
            high_watermark: 16 << 20,
            low_watermark: 4 << 20,
            read_budget: 256 << 10,
            pause_rule: pause_unless_congested_itself,
            client_output_budget: 0,
            signals: false,
            client_flush_interval: Duration::ZERO,
            client_write_budget: 0,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            kcp_max_sessions: KCP_MAX_SESSIONS,
        }
    }
}

/// Counters since the reactor was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReactorStats {
    /// Connections accepted on listeners.
    pub accepted: u64,
    /// Open connections (accepted or dialed) that closed, for any reason.
    pub closed: u64,
    /// Frames delivered to [`Handler::on_frame`].
    pub frames_in: u64,
    /// Bytes read from sockets.
    pub bytes_in: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
    /// Successful `write` calls.
    pub writes: u64,
    /// Times reads were paused because a server link passed the high watermark.
    pub read_pauses: u64,
    /// Times accepting was paused because file descriptors ran out.
    pub emfile_backoffs: u64,
    /// Writes to client links.
    pub client_writes: u64,
    /// Heartbeats (empty frames) sent and received on links with [`LinkOpts::heartbeat`].
    pub heartbeats_out: u64,
    pub heartbeats_in: u64,
}

/// One connection's state. Input and output live side by side, but the decoder is taken out
/// of the slot while its frames are dispatched, so the handler may queue output anywhere.
struct Conn {
    gen: u32,
    stream: Sock,
    peer: SocketAddr,
    opts: LinkOpts,
    origin: Origin,
    /// A dial whose connect has not completed; invisible to the handler.
    connecting: bool,
    /// Index into `Reactor::dials` for dialed connections.
    dial: Option<usize>,
    /// `None` only while its frames are being dispatched.
    decoder: Option<FrameDecoder>,
    /// Framed output; bytes before `out_pos` are already written.
    out: Vec<u8>,
    out_pos: usize,
    /// WRITABLE is registered (only while a write would block).
    writable_interest: bool,
    /// Listed in `Conns::flush`: written this iteration.
    queued_flush: bool,
    /// A client link waiting for its flush interval: written at this time (listed in
    /// `Conns::delayed` with it).
    flush_by: Option<Instant>,
    /// When output was last written (client links with a flush interval).
    last_write: Option<Instant>,
    /// Listed in `Reactor::ready` (read budget ran out with data left).
    queued_ready: bool,
    /// Listed in `Reactor::deferred` (readable while reads were paused).
    deferred: bool,
    /// A server link counted in `Conns::congested`.
    congested: bool,
    /// Marked for teardown, with the reason reported to the handler.
    closing: Option<CloseReason>,
    /// When bytes last arrived (or the connection opened), for [`LinkOpts::heartbeat`].
    last_recv: Instant,
    /// The transport layers (TLS, WebSocket, snappy) between the socket and the frames,
    /// if any: `out` then holds the frames not yet passed down, and `wire` what the
    /// layers made of them (and their own answers), not yet written.
    stack: Option<Box<Stack>>,
    wire: Vec<u8>,
    wire_pos: usize,
}

impl Conn {
    fn pending(&self) -> usize {
        self.out.len() - self.out_pos + self.wire.len() - self.wire_pos
    }
}

/// The connection table; this is the [`Io`] handed to the handler.
struct Conns {
    slab: Slab<Conn>,
    /// Connections with output to write this iteration.
    flush: Vec<ConnId>,
    /// Client links waiting for their flush interval, by time; an entry whose connection's
    /// `flush_by` no longer matches is stale and skipped.
    delayed: std::collections::BinaryHeap<std::cmp::Reverse<(Instant, ConnId)>>,
    /// Connections marked for teardown.
    closing: Vec<ConnId>,
    /// Server links above the high watermark (until they drain below the low one), per group
    /// of the link, and in [`CLIENT_OUTPUT_GROUP`] one while all client links together are
    /// over the client output budget.
    congested_groups: [usize; GROUPS as usize],
    /// When a pause was last logged, and the pause count then.
    pause_log: Option<(Instant, u64)>,
    /// Pending output of all client links, and the budget over which that counts as
    /// congestion (see [`ReactorConfig::client_output_budget`]).
    client_pending: usize,
    client_budget: usize,
    high_watermark: usize,
    stats: ReactorStats,
    /// The reactor's current time, for client flush intervals.
    now: Instant,
    /// The interval between two writes to one client now, and what it comes back to.
    client_flush_interval: Duration,
    base_client_flush_interval: Duration,
    client_write_budget: u64,
    /// Client writes counted since `budget_window` began.
    window_writes: u64,
    budget_window: Instant,
    /// Frames and bytes in and out by message type (`[frames in, bytes in, frames out,
    /// bytes out]`, the last entry for every type from [`COUNTED_TYPES`] up).
    traffic: Vec<[u64; 4]>,
}

/// What the loop measured, for `/metrics`.
#[derive(Default)]
struct LoopStats {
    started: Option<Instant>,
    /// Each frame handler call.
    frame: Histogram,
    /// Each tick handler call.
    tick: Histogram,
    /// Closes by kind of reason.
    closed: [u64; 8],
    http_served: u64,
    /// WebSocket upgrades accepted on the HTTP endpoint.
    ws_upgrades: u64,
    http_refused: u64,
    slow_logged: u64,
}

/// The label of a close reason's kind.
const CLOSE_KINDS: [&str; 8] = [
    "peer_closed",
    "io_error",
    "frame_too_large",
    "output_limit",
    "closed_by_process",
    "connect_failed",
    "heartbeat_timeout",
    "transport_error",
];

fn close_kind(r: &CloseReason) -> usize {
    match r {
        CloseReason::PeerClosed => 0,
        CloseReason::Io(_) => 1,
        CloseReason::FrameTooLarge { .. } => 2,
        CloseReason::OutputLimit { .. } => 3,
        CloseReason::Local(_) => 4,
        CloseReason::ConnectFailed(_) => 5,
        CloseReason::Silent(_) => 6,
        CloseReason::Transport(_) => 7,
    }
}

/// Counts one frame of `len` payload bytes starting with `head` (its type is the first two
/// bytes) at `col` (0: in, 2: out).
fn count_traffic(traffic: &mut [[u64; 4]], head: &[u8], len: usize, col: usize) {
    let t = crate::proto::peek_type(head).map_or(COUNTED_TYPES, usize::from);
    let row = &mut traffic[t.min(COUNTED_TYPES)];
    row[col] += 1;
    row[col + 1] += len as u64;
}

/// The answer to `GET path` from the static files under `root` (see [`Reactor::serve_files`]).
fn web_file(root: &std::path::Path, path: &str, head: bool) -> Vec<u8> {
    let not_found = |why: &str| {
        log::debug!("http: {path}: 404 ({why})");
        http::response(404, "text/plain", b"not found\n", head)
    };
    let (rel, content_type) = match crate::webroot::lookup(path) {
        Ok(found) => found,
        Err(why) => return not_found(why),
    };
    // Symbolic links are followed, but only to files that are under the root after all.
    let (Ok(root), Ok(file)) = (root.canonicalize(), root.join(&rel).canonicalize()) else {
        return not_found("no such file");
    };
    if !file.starts_with(&root) {
        return not_found("outside the web root");
    }
    let mut f = match std::fs::File::open(&file) {
        Ok(f) => f,
        Err(e) => return not_found(&crate::logging::io_kind(&e)),
    };
    match f.metadata() {
        Ok(m) if !m.is_file() => return not_found("not a regular file"),
        Ok(m) if m.len() > crate::webroot::MAX_FILE => {
            return not_found("larger than the largest file served")
        }
        Ok(_) => {}
        Err(e) => return not_found(&crate::logging::io_kind(&e)),
    }
    // Read at most one byte past the limit: a file that grew since is refused too.
    let mut body = Vec::new();
    if let Err(e) = (&mut f)
        .take(crate::webroot::MAX_FILE + 1)
        .read_to_end(&mut body)
    {
        return not_found(&crate::logging::io_kind(&e));
    }
    if body.len() as u64 > crate::webroot::MAX_FILE {
        return not_found("larger than the largest file served");
    }
    http::response_with(
        200,
        content_type,
        &[
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
        ],
        &body,
        head,
    )
}

/// How often a link with heartbeat timeout `timeout` sends one.
fn heartbeat_interval(timeout: Duration) -> Duration {
    (timeout / HEARTBEATS_PER_TIMEOUT).max(Duration::from_millis(10))
}

/// One HTTP connection of the observability endpoint.
struct HttpConn {
    stream: TcpStream,
    /// The request as read (decrypted, with TLS).
    input: Vec<u8>,
    /// Bytes for the socket (encrypted, with TLS): handshake records, then the answer.
    wire: Vec<u8>,
    written: usize,
    /// The answer is in `wire`: the connection closes once it is written.
    answered: bool,
    /// TLS, when the endpoint serves `wss://` (and so `https://`).
    tls: Option<Box<Tls>>,
    deadline: Instant,
}

/// WebSocket clients on the observability endpoint (see [`Reactor::serve_ws`]).
struct WsRoute {
    tag: u32,
    opts: LinkOpts,
    snappy: bool,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Conns {
    fn get(&self, id: ConnId) -> Option<&Conn> {
        self.slab.get(id.slot as usize).filter(|c| c.gen == id.gen)
    }

    fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.slab
            .get_mut(id.slot as usize)
            .filter(|c| c.gen == id.gen)
    }

    /// Counts a read pause and logs it: the first in full, then at most one line a minute
    /// saying how many there were (a sustained overload pauses several times a second).
    fn note_pause(&mut self, what: &str) {
        self.stats.read_pauses += 1;
        let now = self.now;
        match self.pause_log {
            Some((since, _)) if now < since + PAUSE_LOG_WINDOW => {
                self.pause_log = Some((since, self.stats.read_pauses));
            }
            Some((since, logged_at)) => {
                log::info!(
                    "{what}; reads paused {} times in the last {} s (backpressure)",
                    self.stats.read_pauses - logged_at,
                    (now - since).as_secs()
                );
                self.pause_log = Some((now, self.stats.read_pauses));
            }
            None => {
                log::info!("{what}; pausing reads until it drains (backpressure)");
                self.pause_log = Some((now, self.stats.read_pauses));
            }
        }
    }

    /// Once a second, moves the client flush interval towards what keeps client writes under
    /// their budget (see [`ReactorConfig::client_write_budget`]).
    fn adapt_client_interval(&mut self, now: Instant) {
        if self.client_write_budget == 0 {
            return;
        }
        let elapsed = now.saturating_duration_since(self.budget_window);
        if elapsed < Duration::from_secs(1) {
            return;
        }
        let writes = self.stats.client_writes - self.window_writes;
        self.window_writes = self.stats.client_writes;
        self.budget_window = now;
        let rate = writes as f64 / elapsed.as_secs_f64();
        let budget = self.client_write_budget as f64;
        // Busy clients are written once per interval, so writes scale with 1 / interval: over
        // the budget, grow the interval to fit; well under it (a band, so it does not swing
        // back and forth at the budget), shrink it so that writes would reach 3/4 of it.
        let current = self.client_flush_interval.max(Duration::from_millis(1));
        let wanted = if rate > budget {
            current.mul_f64(rate / budget)
        } else if rate < budget * 0.6 {
            current.mul_f64(rate / (budget * 0.75))
        } else {
            current
        };
        let mut next = wanted.clamp(current / 2, current * 2);
        if next < Duration::from_millis(1) {
            next = Duration::ZERO;
        }
        let next = next.clamp(self.base_client_flush_interval, MAX_CLIENT_FLUSH_INTERVAL);
        if next != self.client_flush_interval {
            log::debug!(
                "{rate:.0} client writes/s against a budget of {}: client flush interval {:?} -> {next:?}",
                self.client_write_budget,
                self.client_flush_interval
            );
            self.client_flush_interval = next;
        }
    }

    /// True while any link (or client output as a whole) is congested.
    fn any_congested(&self) -> bool {
        self.congested_groups.iter().any(|&n| n > 0)
    }

    /// True while all client output together is over its budget.
    fn clients_congested(&self) -> bool {
        self.congested_groups[usize::from(CLIENT_OUTPUT_GROUP)] > 0
    }

    /// Ends the client output congestion once pending client output is below half the budget.
    fn clients_drained(&mut self) {
        if self.clients_congested() && self.client_pending < self.client_budget / 2 {
            self.congested_groups[usize::from(CLIENT_OUTPUT_GROUP)] = 0;
        }
    }

    /// Marks `id` for teardown; the first reason wins.
    fn mark_close(&mut self, id: ConnId, reason: CloseReason) {
        if let Some(c) = self
            .slab
            .get_mut(id.slot as usize)
            .filter(|c| c.gen == id.gen)
        {
            if c.closing.is_none() {
                c.closing = Some(reason);
                self.closing.push(id);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The observability endpoint: HTTP on its own listener and connections, served by the loop.
// ---------------------------------------------------------------------------------------------

impl Reactor {
    fn http_accept(&mut self, now: Instant) {
        loop {
            let Some(l) = self.http.as_ref() else {
                return;
            };
            match l.accept() {
                Ok((mut stream, _)) => {
                    let max = if self.ws.is_some() {
                        WS_HTTP_MAX_CONNS
                    } else {
                        HTTP_MAX_CONNS
                    };
                    if self.http_conns.len() >= max {
                        self.loop_stats.http_refused += 1;
                        continue; // dropped: closed at once
                    }
                    let tls = match self.ws.as_ref().and_then(|w| w.tls.clone()) {
                        None => None,
                        Some(cfg) => match Tls::server(cfg) {
                            Ok(t) => Some(Box::new(t)),
                            Err(e) => {
                                log::warn!("http: {e}");
                                continue;
                            }
                        },
                    };
                    let entry = self.http_conns.vacant_entry();
                    let token = Token(HTTP_BASE + entry.key());
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, Interest::READABLE)
                        .is_ok()
                    {
                        entry.insert(HttpConn {
                            stream,
                            input: Vec::new(),
                            wire: Vec::new(),
                            written: 0,
                            answered: false,
                            tls,
                            deadline: now + HTTP_DEADLINE,
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("http accept: {e}");
                    return;
                }
            }
        }
    }

    fn http_event(&mut self, key: usize, handler: &mut dyn Handler, now: Instant) {
        let Some(h) = self.http_conns.get_mut(key) else {
            return;
        };
        if !h.answered {
            let mut buf = [0u8; 4096];
            loop {
                match h.stream.read(&mut buf) {
                    Ok(0) => {
                        self.http_close(key);
                        return;
                    }
                    Ok(n) => {
                        let fed = match h.tls.as_mut() {
                            Some(t) => t.read(&buf[..n], &mut h.input, &mut h.wire),
                            None => {
                                h.input.extend_from_slice(&buf[..n]);
                                Ok(())
                            }
                        };
                        if fed.is_err() {
                            // A TLS alert may be in `wire`: one try to send it.
                            let _ = h.stream.write(&h.wire[h.written..]);
                            self.loop_stats.http_refused += 1;
                            self.http_close(key);
                            return;
                        }
                        if h.input.len() > http::MAX_REQUEST {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        self.http_close(key);
                        return;
                    }
                }
            }
            let answer = match http::parse(&h.input) {
                Parse::Incomplete => None,
                Parse::Get { path, .. } if path == ws::WS_PATH && self.ws.is_some() => {
                    match ws::parse_upgrade_request(&h.input) {
                        Ok(ws::Upgrade::Done { consumed, request }) => {
                            self.http_to_ws(key, consumed, request, handler, now);
                            return;
                        }
                        Ok(ws::Upgrade::Incomplete) => None,
                        Err(refusal) => {
                            self.loop_stats.http_refused += 1;
                            log::debug!("http: websocket upgrade refused: {}", refusal.why);
                            Some(refusal.response())
                        }
                    }
                }
                Parse::Get { path, head } => Some(match path.as_str() {
                    "/metrics" => {
                        let body = self.render_metrics(handler);
                        http::response(200, http::METRICS_TYPE, body.as_bytes(), head)
                    }
                    "/status" => {
                        let body = self.render_status(handler);
                        http::response(200, http::STATUS_TYPE, body.as_bytes(), head)
                    }
                    _ => match &self.web_root {
                        Some(root) => web_file(root, &path, head),
                        None => {
                            http::response(404, "text/plain", b"try /metrics or /status\n", head)
                        }
                    },
                }),
                Parse::Refuse { status, why } => {
                    self.loop_stats.http_refused += 1;
                    Some(http::response(
                        status,
                        "text/plain",
                        format!("{why}\n").as_bytes(),
                        false,
                    ))
                }
            };
            let Some(h) = self.http_conns.get_mut(key) else {
                return;
            };
            if let Some(answer) = answer {
                self.loop_stats.http_served += 1;
                h.answered = true;
                let sent = match h.tls.as_mut() {
                    Some(t) => t.write(&answer, &mut h.wire),
                    None => {
                        h.wire.extend_from_slice(&answer);
                        Ok(())
                    }
                };
                if sent.is_err() {
                    self.http_close(key);
                    return;
                }
            }
        }
        let Some(h) = self.http_conns.get_mut(key) else {
            return;
        };
        while h.written < h.wire.len() {
            match h.stream.write(&h.wire[h.written..]) {
                Ok(0) => break,
                Ok(n) => h.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let token = Token(HTTP_BASE + key);
                    let _ = self.poll.registry().reregister(
                        &mut h.stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    );
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.http_close(key);
                    return;
                }
            }
        }
        if h.answered {
            self.http_close(key);
        }
    }

    /// An HTTP connection whose WebSocket upgrade request is in becomes a client connection
    /// of the WebSocket route: its TLS session (if any) goes with it, the 101 answer and
    /// whatever followed the request go through its new layers, and the handler hears of it
    /// as of an accepted connection.
    fn http_to_ws(
        &mut self,
        key: usize,
        consumed: usize,
        request: ws::UpgradeRequest,
        handler: &mut dyn Handler,
        now: Instant,
    ) {
        let mut h = self.http_conns.remove(key);
        let _ = self.poll.registry().deregister(&mut h.stream);
        let Some(route) = self.ws.as_ref() else {
            return;
        };
        let (tag, opts, snappy) = (route.tag, route.opts, route.snappy);
        let peer = match h.stream.peer_addr() {
            Ok(p) => p,
            Err(_) => return,
        };
        let mut layers: Vec<Box<dyn StreamLayer>> = Vec::new();
        if let Some(t) = h.tls.take() {
            layers.push(t);
        }
        let ws_layer = layers.len();
        let response = ws::upgrade_response(&request);
        layers.push(Box::new(WsServer::accepted(request)));
        if snappy {
            layers.push(Box::new(SnappyLayer::new()));
        }
        let mut stack = Stack::new(layers);
        // Handshake bytes not written yet, then the 101 (through TLS), then what the client
        // sent after its request.
        let mut wire = h.wire.split_off(h.written.min(h.wire.len()));
        let mut plain = Vec::new();
        let started = stack
            .write_below(ws_layer, &response, &mut wire)
            .and_then(|()| stack.read_from(ws_layer, &h.input[consumed..], &mut plain, &mut wire));
        let origin = Origin::Accepted { listener: tag };
        let id = match self.insert_conn(Sock::Tcp(h.stream), peer, opts, origin, None, Some(stack))
        {
            Ok(id) => id,
            Err(e) => {
                log::warn!("dropping websocket client {peer}: {}", kind_text(&e));
                return;
            }
        };
        self.conns.stats.accepted += 1;
        self.loop_stats.ws_upgrades += 1;
        let c = &mut self.conns.slab[id.slot as usize];
        c.wire = wire;
        if let Some(dec) = c.decoder.as_mut() {
            dec.extend(&plain);
        }
        c.queued_flush = true;
        self.conns.flush.push(id);
        log::debug!("websocket client {peer} upgraded as {id}");
        handler.on_open(&mut self.conns, now, id, origin, peer);
        if let Err(e) = started {
            self.conns
                .mark_close(id, CloseReason::Transport(e.to_string()));
            return;
        }
        // Frames that came with the request, then whatever the socket has.
        self.read_conn(id, handler, now);
    }

    fn http_close(&mut self, key: usize) {
        if self.http_conns.contains(key) {
            let mut h = self.http_conns.remove(key);
            let _ = self.poll.registry().deregister(&mut h.stream);
        }
    }

    /// Closes HTTP connections past their deadline (a slow or silent client).
    fn http_expire(&mut self, now: Instant) {
        let late: Vec<usize> = (self.http_conns.iter())
            .filter(|(_, h)| now >= h.deadline)
            .map(|(k, _)| k)
            .collect();
        for k in late {
            self.loop_stats.http_refused += 1;
            self.http_close(k);
        }
    }

    fn render_metrics(&self, handler: &dyn Handler) -> String {
        let mut m = Metrics::new();
        let st = &self.conns.stats;
        let ls = &self.loop_stats;
        let uptime = ls.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        m.gauge("uptime_seconds", "Seconds since the loop started.", uptime);
        m.counter_f(
            "process_cpu_seconds",
            "CPU seconds this process used (user and system).",
            crate::process::cpu_seconds(),
        );
        m.gauge(
            "process_resident_memory_bytes",
            "Resident memory of this process.",
            crate::process::rss_bytes() as f64,
        );
        let (mut clients, mut servers) = (0.0, 0.0);
        for (_, c) in self.conns.slab.iter() {
            if c.connecting {
                continue;
            }
            match c.opts.kind {
                LinkKind::Client { .. } => clients += 1.0,
                LinkKind::Server => servers += 1.0,
            }
        }
        m.gauges(
            "connections",
            "Open connections, by kind of link.",
            &[
                (&[("link", "client")], clients),
                (&[("link", "server")], servers),
            ],
        );
        m.counter("accepted", "Connections accepted.", st.accepted);
        let closed: Vec<(&str, u64)> = CLOSE_KINDS.iter().copied().zip(ls.closed).collect();
        m.counters_by(
            "closed",
            "Connections closed, by kind of reason.",
            "reason",
            &closed,
        );
        m.counter("bytes_read", "Bytes read from sockets.", st.bytes_in);
        m.counter("bytes_written", "Bytes written to sockets.", st.bytes_out);
        m.counter("writes", "Successful write calls.", st.writes);
        m.counters_by(
            "heartbeats",
            "Heartbeats (empty frames) on server links, by direction.",
            "direction",
            &[("in", st.heartbeats_in), ("out", st.heartbeats_out)],
        );
        m.counter(
            "read_pauses",
            "Times reads paused because a server link backed up.",
            st.read_pauses,
        );
        m.gauge(
            "client_output_pending_bytes",
            "Output queued for all client links.",
            self.conns.client_pending as f64,
        );
        let rows: Vec<(String, [u64; 4])> = (self.conns.traffic.iter().enumerate())
            .filter(|(_, r)| r.iter().any(|n| *n > 0))
            .map(|(t, r)| {
                let name = if t == COUNTED_TYPES {
                    "other".to_string()
                } else {
                    t.to_string()
                };
                (name, *r)
            })
            .collect();
        for (name, col, help) in [
            ("messages_in", 0, "Frames received, by message type."),
            (
                "message_bytes_in",
                1,
                "Payload bytes received, by message type.",
            ),
            ("messages_out", 2, "Frames queued to send, by message type."),
            (
                "message_bytes_out",
                3,
                "Payload bytes queued to send, by message type.",
            ),
        ] {
            let samples: Vec<(&str, u64)> =
                rows.iter().map(|(t, r)| (t.as_str(), r[col])).collect();
            m.counters_by(name, help, "msgtype", &samples);
        }
        m.histogram(
            "frame_handler_seconds",
            "Time the process took for each frame it received.",
            &ls.frame,
        );
        m.histogram(
            "tick_seconds",
            "Time the process took for each tick (timers, posted work, periodic work).",
            &ls.tick,
        );
        m.counter(
            "slow_handlers",
            "Frame or tick handler calls longer than 100 ms (each logged).",
            ls.slow_logged,
        );
        m.counters(
            "http_requests",
            "Observability requests, by outcome.",
            &[
                (&[("outcome", "served")], ls.http_served),
                (&[("outcome", "refused")], ls.http_refused),
            ],
        );
        if self.ws.is_some() {
            m.counter(
                "websocket_upgrades",
                "WebSocket upgrades accepted at /ws (each a client connection from then on).",
                ls.ws_upgrades,
            );
        }
        if !self.kcp_listeners.is_empty() {
            let (dropped, refused, sessions) = self.kcp_counts();
            m.gauge("kcp_sessions", "Open KCP sessions.", sessions as f64);
            m.counters(
                "kcp_datagrams_ignored",
                "Datagrams on the KCP endpoint that no session took, by why: no session and not one that opens one, or over the session limit (dropped); malformed or not for the session (refused).",
                &[
                    (&[("why", "dropped")], dropped),
                    (&[("why", "refused")], refused),
                ],
            );
        }
        handler.metrics(&mut m);
        m.finish()
    }

    fn render_status(&self, handler: &dyn Handler) -> String {
        let mut s = Status::new();
        s.num("pid", f64::from(std::process::id()));
        let uptime = (self.loop_stats.started).map_or(0.0, |t| t.elapsed().as_secs_f64());
        s.num("uptime_seconds", (uptime * 1000.0).round() / 1000.0);
        let open = self
            .conns
            .slab
            .iter()
            .filter(|(_, c)| !c.connecting)
            .count();
        s.num("connections", open as f64);
        handler.status(&mut s);
        s.finish()
    }
}

impl Io for Conns {
    fn send(&mut self, conn: ConnId, payload: &[u8]) {
        self.send2(conn, payload, &[]);
    }

    fn send2(&mut self, conn: ConnId, head: &[u8], tail: &[u8]) {
        let Some(c) = self
            .slab
            .get_mut(conn.slot as usize)
            .filter(|c| c.gen == conn.gen)
        else {
            return;
        };
        if c.closing.is_some() || c.connecting {
            return;
        }
        write_frame2(&mut c.out, head, tail);
        count_traffic(&mut self.traffic, head, head.len() + tail.len(), 2);
        let pending = c.pending();
        // A pause that starts here, logged once the connection is no longer borrowed.
        let mut paused: Option<String> = None;
        if let LinkKind::Client { .. } = c.opts.kind {
            self.client_pending += 4 + head.len() + tail.len();
            // (`c` borrows the slab: the congestion is read from its field, not a method.)
            let groups = &mut self.congested_groups;
            let clients = usize::from(CLIENT_OUTPUT_GROUP);
            if self.client_budget > 0
                && groups[clients] == 0
                && self.client_pending > self.client_budget
            {
                if groups.iter().all(|&n| n == 0) {
                    paused = Some(format!(
                        "{} bytes pending for clients, over the budget of {}",
                        self.client_pending, self.client_budget
                    ));
                }
                groups[clients] = 1;
            }
        }
        if !c.queued_flush && c.flush_by.is_none() {
            // A client link written to less than an interval ago waits for the rest of it.
            let due = match c.opts.kind {
                LinkKind::Client { .. } if !self.client_flush_interval.is_zero() => c
                    .last_write
                    .map(|t| t + self.client_flush_interval)
                    .filter(|t| *t > self.now),
                _ => None,
            };
            match due {
                Some(t) => {
                    c.flush_by = Some(t);
                    self.delayed.push(std::cmp::Reverse((t, conn)));
                }
                None => {
                    c.queued_flush = true;
                    self.flush.push(conn);
                }
            }
        }
        if c.flush_by.is_some() && pending >= CLIENT_FLUSH_BYTES {
            c.flush_by = None;
            c.queued_flush = true;
            self.flush.push(conn);
        }
        match c.opts.kind {
            LinkKind::Client { output_limit } if pending > output_limit => {
                c.closing = Some(CloseReason::OutputLimit {
                    pending,
                    limit: output_limit,
                });
                self.closing.push(conn);
            }
            LinkKind::Server if pending > self.high_watermark && !c.congested => {
                c.congested = true;
                if self.congested_groups.iter().all(|&n| n == 0) {
                    paused = Some(format!(
                        "server link {conn} to {} has {pending} bytes pending",
                        c.peer
                    ));
                }
                self.congested_groups[usize::from(c.opts.group)] += 1;
            }
            _ => {}
        }
        if let Some(what) = paused {
            self.note_pause(&what);
        }
    }

    fn close(&mut self, conn: ConnId, reason: &str) {
        if self.get(conn).is_some_and(|c| !c.connecting) {
            self.mark_close(conn, CloseReason::Local(reason.to_string()));
        }
    }

    fn pending(&self, conn: ConnId) -> usize {
        self.get(conn).map_or(0, Conn::pending)
    }

    fn set_group(&mut self, conn: ConnId, group: u8) {
        let group = group.min(CLIENT_OUTPUT_GROUP - 1);
        let Some(c) = self
            .slab
            .get_mut(conn.slot as usize)
            .filter(|c| c.gen == conn.gen)
        else {
            return;
        };
        if c.congested {
            self.congested_groups[usize::from(c.opts.group)] -= 1;
            self.congested_groups[usize::from(group)] += 1;
        }
        c.opts.group = group;
    }
}

struct Listener {
    sock: TcpListener,
    tag: u32,
    opts: LinkOpts,
    /// The transport layers of its connections.
    spec: StackSpec,
    addr: SocketAddr,
    /// Not yet accepted until `WouldBlock` (edge-triggered: no new event will say so).
    readable: bool,
    /// Accepting stopped until then (out of file descriptors).
    paused_until: Option<Instant>,
    /// The descriptor shortage was logged; reset once an accept succeeds.
    shortage_logged: bool,
}

enum DialState {
    /// Next attempt at this time.
    Waiting(Instant),
    /// Connect in progress.
    Connecting { conn: ConnId, deadline: Instant },
    /// Connected; the handler knows `ConnId`.
    Open,
}

struct Dial {
    addr: SocketAddr,
    tag: u32,
    opts: LinkOpts,
    /// The transport layers of its connections.
    spec: StackSpec,
    /// Over KCP (a UDP socket per connection) instead of TCP.
    kcp: Option<KcpDial>,
    state: DialState,
    backoff: Duration,
    /// A failure of the current streak was logged.
    failure_logged: bool,
}

/// The event loop. See the module documentation for the order of one iteration.
pub struct Reactor {
    poll: Poll,
    cfg: ReactorConfig,
    conns: Conns,
    listeners: Vec<Listener>,
    dials: Vec<Dial>,
    waker: Arc<Waker>,
    signals: Option<Signals>,
    /// Connections whose read budget ran out with data left; served next iteration.
    ready: Vec<ConnId>,
    /// Connections that became readable while reads were paused.
    deferred: Vec<ConnId>,
    next_gen: u32,
    /// The observability endpoint (`http_addr`), if any, and its connections.
    http: Option<TcpListener>,
    http_conns: Slab<HttpConn>,
    /// WebSocket clients on the HTTP endpoint, if served.
    ws: Option<WsRoute>,
    /// Static files on the HTTP endpoint (the gate's `web_root`), if served.
    web_root: Option<std::path::PathBuf>,
    /// KCP endpoints (UDP sockets), and every open KCP connection (stale IDs dropped
    /// lazily), and KCP dials opened but not yet told to the handler.
    kcp_listeners: Vec<KcpListener>,
    kcp_conns: Vec<ConnId>,
    kcp_opening: Vec<ConnId>,
    /// Connections with transport layers whose handshakes are not over, with their
    /// deadlines, oldest first.
    handshaking: std::collections::VecDeque<(ConnId, Instant)>,
    /// When the loop began: the KCP sessions' millisecond clock counts from it.
    epoch: Instant,
    loop_stats: LoopStats,
    /// Open or connecting links with [`LinkOpts::heartbeat`] (stale IDs are dropped lazily).
    heartbeat_links: Vec<ConnId>,
    /// When heartbeats are next sent and silences checked (`None`: no such link).
    next_heartbeat: Option<Instant>,
    /// Scratch for connections with transport layers: what the socket gave, and the stream
    /// the layers made of it.
    layer_in: Box<[u8]>,
    layer_plain: Vec<u8>,
}

impl Reactor {
    /// A reactor with its poll, waker and (if configured) signal pipe, and no sockets yet.
    pub fn new(cfg: ReactorConfig) -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER_TOKEN)?);
        let signals = if cfg.signals {
            use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
            let mut s = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2])?;
            poll.registry()
                .register(&mut s, SIGNAL_TOKEN, Interest::READABLE)?;
            Some(s)
        } else {
            None
        };
        Ok(Reactor {
            poll,
            conns: Conns {
                slab: Slab::new(),
                flush: Vec::new(),
                closing: Vec::new(),
                congested_groups: [0; GROUPS as usize],
                pause_log: None,
                client_pending: 0,
                client_budget: cfg.client_output_budget,
                high_watermark: cfg.high_watermark,
                stats: ReactorStats::default(),
                now: Instant::now(),
                client_flush_interval: cfg.client_flush_interval,
                base_client_flush_interval: cfg.client_flush_interval,
                client_write_budget: cfg.client_write_budget,
                window_writes: 0,
                budget_window: Instant::now(),
                delayed: std::collections::BinaryHeap::new(),
                traffic: vec![[0; 4]; COUNTED_TYPES + 1],
            },
            http: None,
            http_conns: Slab::new(),
            ws: None,
            web_root: None,
            kcp_listeners: Vec::new(),
            kcp_conns: Vec::new(),
            kcp_opening: Vec::new(),
            handshaking: std::collections::VecDeque::new(),
            epoch: Instant::now(),
            loop_stats: LoopStats {
                started: Some(Instant::now()),
                ..LoopStats::default()
            },
            cfg,
            listeners: Vec::new(),
            dials: Vec::new(),
            waker,
            signals,
            ready: Vec::new(),
            deferred: Vec::new(),
            next_gen: 1,
            heartbeat_links: Vec::new(),
            next_heartbeat: None,
            layer_in: vec![0; LAYER_READ].into_boxed_slice(),
            layer_plain: Vec::new(),
        })
    }

    /// Starts accepting on `l` (made non-blocking here); accepted connections are reported
    /// with [`Origin::Accepted`] carrying `tag`. Returns the listener's local address.
    pub fn add_listener(
        &mut self,
        l: std::net::TcpListener,
        tag: u32,
        opts: LinkOpts,
    ) -> io::Result<SocketAddr> {
        self.add_listener_with(l, tag, opts, StackSpec::default())
    }

    /// [`Reactor::add_listener`] whose connections pass through the transport layers of
    /// `spec` (a gate's TLS and snappy).
    pub fn add_listener_with(
        &mut self,
        l: std::net::TcpListener,
        tag: u32,
        opts: LinkOpts,
        spec: StackSpec,
    ) -> io::Result<SocketAddr> {
        l.set_nonblocking(true)?;
        let addr = l.local_addr()?;
        let mut sock = TcpListener::from_std(l);
        let token = Token(LISTENER_BASE + self.listeners.len());
        self.poll
            .registry()
            .register(&mut sock, token, Interest::READABLE)?;
        // Connections may already be queued; the first iteration accepts them.
        self.listeners.push(Listener {
            sock,
            tag,
            opts,
            spec,
            addr,
            readable: true,
            paused_until: None,
            shortage_logged: false,
        });
        Ok(addr)
    }

    /// Connects to `addr` now and keeps it connected: after a failed connect or a close the
    /// reactor redials, waiting 50 ms doubling to 1 s (reset by a successful connect). Each
    /// connection is reported with [`Origin::Dialed`] carrying `tag`; failed attempts are not
    /// reported to the handler.
    pub fn add_dial(&mut self, addr: SocketAddr, tag: u32, opts: LinkOpts) {
        self.add_dial_with(addr, tag, opts, StackSpec::default())
    }

    /// [`Reactor::add_dial`] whose connections pass through the transport layers of `spec`
    /// (a bot's TLS, WebSocket and snappy).
    pub fn add_dial_with(&mut self, addr: SocketAddr, tag: u32, opts: LinkOpts, spec: StackSpec) {
        let now = Instant::now();
        self.dials.push(Dial {
            addr,
            tag,
            opts,
            spec,
            kcp: None,
            state: DialState::Waiting(now),
            backoff: BACKOFF_START,
            failure_logged: false,
        });
        self.start_dial(self.dials.len() - 1, now);
    }

    /// Serves the observability endpoint on `l` (made non-blocking here): `GET /metrics`
    /// (Prometheus text: the loop's own figures, then [`Handler::metrics`]) and
    /// `GET /status` (JSON: the loop's, then [`Handler::status`]). One request per
    /// connection; a malformed request gets its error status, a slow one is closed after
    /// [`HTTP_DEADLINE`], and at most [`HTTP_MAX_CONNS`] are open at once. Returns the
    /// listener's address.
    pub fn add_http(&mut self, l: std::net::TcpListener) -> io::Result<SocketAddr> {
        l.set_nonblocking(true)?;
        let addr = l.local_addr()?;
        let mut sock = TcpListener::from_std(l);
        self.poll
            .registry()
            .register(&mut sock, HTTP_LISTENER, Interest::READABLE)?;
        self.http = Some(sock);
        Ok(addr)
    }

    /// Serves WebSocket clients at `/ws` on the endpoint of [`Reactor::add_http`], as
    /// GoWorld's gate does on its `http_addr`: a valid upgrade request becomes a connection
    /// like those of listener `tag`, with `opts`, its byte stream carried by the WebSocket's
    /// binary (or text) messages, then the snappy framing when `snappy` is set. With `tls`,
    /// the whole endpoint speaks TLS (`wss://`, and `https://` for /metrics and /status).
    /// An upgrade request must arrive within the endpoint's deadline, as any request.
    pub fn serve_ws(
        &mut self,
        tag: u32,
        opts: LinkOpts,
        snappy: bool,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) {
        self.ws = Some(WsRoute {
            tag,
            opts,
            snappy,
            tls,
        });
    }

    /// Serves the files under `root` on the endpoint of [`Reactor::add_http`] (over TLS too
    /// when [`Reactor::serve_ws`] has it): `GET /` is `root/index.html`, `GET /<path>` the file
    /// at that path, as [`crate::webroot::lookup`] maps it (no `..`, dot-files or
    /// node_modules), and only when it resolves (symbolic links followed) to a regular file
    /// under `root` of at most [`crate::webroot::MAX_FILE`] bytes; anything else is a 404.
    /// `/metrics`, `/status` and `/ws` keep their meaning. The file is read when asked for, a
    /// small blocking read in the loop: this is for a page's few small files, not a CDN.
    pub fn serve_files(&mut self, root: std::path::PathBuf) {
        self.web_root = Some(root);
    }

    /// The waker: [`mio::Waker::wake`] from any thread makes the loop call
    /// [`Handler::on_wake`].
    pub fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    /// Counters since creation.
    pub fn stats(&self) -> ReactorStats {
        self.conns.stats
    }

    /// Allocated (input, output) buffer bytes of a connection, for memory tests.
    #[doc(hidden)]
    pub fn debug_conn_capacity(&self, conn: ConnId) -> Option<(usize, usize)> {
        let c = self.conns.get(conn)?;
        Some((
            c.decoder.as_ref().map_or(0, FrameDecoder::capacity),
            c.out.capacity(),
        ))
    }

    /// Runs the loop until [`Handler::should_stop`], then flushes pending output for at most
    /// about a second. Connections stay open (they close when the reactor is dropped).
    pub fn run(&mut self, handler: &mut dyn Handler) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        while !handler.should_stop() {
            let timeout = self.poll_timeout(handler, Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }

            // Events.
            let now = Instant::now();
            self.conns.now = now;
            // Taken first, so connections re-queued now wait for the next iteration.
            let ready = std::mem::take(&mut self.ready);
            let mut woke = false;
            for ev in events.iter() {
                match ev.token() {
                    WAKER_TOKEN => woke = true,
                    SIGNAL_TOKEN => self.deliver_signals(handler, now),
                    HTTP_LISTENER => self.http_accept(now),
                    Token(t) if (HTTP_BASE..LISTENER_BASE).contains(&t) => {
                        self.http_event(t - HTTP_BASE, handler, now)
                    }
                    Token(t) if t >= KCP_BASE && t < KCP_BASE + self.kcp_listeners.len() => {
                        self.kcp_listener_event(t - KCP_BASE, handler, now)
                    }
                    Token(t) if t >= LISTENER_BASE => {
                        if let Some(l) = self.listeners.get_mut(t - LISTENER_BASE) {
                            l.readable = true;
                            self.accept_all(t - LISTENER_BASE, handler, now);
                        }
                    }
                    Token(slot) => self.conn_event(slot, ev, handler, now),
                }
            }
            if woke {
                handler.on_wake(&mut self.conns, now);
            }
            for id in ready {
                if let Some(c) = self.conns.get_mut(id) {
                    c.queued_ready = false;
                    self.read_conn(id, handler, now);
                }
            }
            if !self.conns.any_congested() && !self.deferred.is_empty() {
                log::debug!("server links drained; resuming reads");
                for id in std::mem::take(&mut self.deferred) {
                    if let Some(c) = self.conns.get_mut(id) {
                        c.deferred = false;
                        self.read_conn(id, handler, now);
                    }
                }
            }
            // Listeners not drained yet (an accept pause ran out); `accept_all` checks the pause.
            for idx in 0..self.listeners.len() {
                if self.listeners[idx].readable {
                    self.accept_all(idx, handler, now);
                }
            }
            self.service_dials(now);
            self.open_kcp_dials(handler, now);
            self.service_heartbeats(now);
            self.service_handshakes(now);
            self.process_closes(handler, now);

            // Tick.
            let now = Instant::now();
            self.conns.now = now;
            handler.on_tick(&mut self.conns, now, SystemTime::now());
            let took = now.elapsed();
            self.loop_stats.tick.observe(took.as_secs_f64());
            if took >= SLOW_HANDLER {
                self.loop_stats.slow_logged += 1;
                log::warn!(
                    "slow handler: {took:.0?} for a tick (timers, posted work, periodic work)"
                );
            }
            self.process_closes(handler, now);
            self.http_expire(Instant::now());

            // Flush: frames into sockets and KCP sessions, then the sessions' due datagrams.
            self.flush_all(Instant::now());
            self.service_kcp(Instant::now());
            self.process_closes(handler, now);
        }
        self.final_flush(handler);
        Ok(())
    }

    /// Zero while work is queued; otherwise until the earliest handler, dial or accept-pause
    /// deadline; `None` (sleep until an event) when there is none.
    fn poll_timeout(&self, handler: &dyn Handler, now: Instant) -> Option<Duration> {
        let delayed = self.conns.delayed.peek().map(|e| e.0 .0);
        let busy = !self.ready.is_empty()
            || !self.conns.flush.is_empty()
            || !self.conns.closing.is_empty()
            || (!self.conns.any_congested() && !self.deferred.is_empty());
        if busy {
            return Some(Duration::ZERO);
        }
        let mut next = handler.next_deadline();
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(t) = delayed {
            consider(t);
        }
        for d in &self.dials {
            match d.state {
                DialState::Waiting(t) => consider(t),
                DialState::Connecting { deadline, .. } => consider(deadline),
                DialState::Open => {}
            }
        }
        for l in &self.listeners {
            if l.readable {
                consider(l.paused_until.unwrap_or(now));
            }
        }
        for (_, h) in self.http_conns.iter() {
            consider(h.deadline);
        }
        if let Some(t) = self.next_heartbeat {
            consider(t);
        }
        if let Some(t) = self.kcp_deadline(now) {
            consider(t);
        }
        if let Some(&(_, t)) = self.handshaking.front() {
            consider(t);
        }
        next.map(|t| t.saturating_duration_since(now))
    }

    /// Links with [`LinkOpts::heartbeat`]: once per interval, queues an empty frame on each
    /// open one and closes those on which nothing arrived for their timeout. A link whose
    /// reads are paused or waiting for their turn (its peer's bytes are in our socket buffer)
    /// counts as heard from.
    fn service_heartbeats(&mut self, now: Instant) {
        match self.next_heartbeat {
            Some(t) if now >= t => {}
            _ => return,
        }
        let mut next: Option<Instant> = None;
        let mut silent = Vec::new();
        let conns = &mut self.conns;
        self.heartbeat_links.retain(|&id| {
            let Some(c) = conns
                .slab
                .get_mut(id.slot as usize)
                .filter(|c| c.gen == id.gen)
            else {
                return false;
            };
            let Some(timeout) = c.opts.heartbeat else {
                return false;
            };
            let interval = heartbeat_interval(timeout);
            next = Some(next.map_or(now + interval, |n| n.min(now + interval)));
            if c.connecting || c.closing.is_some() {
                return true;
            }
            if c.deferred || c.queued_ready {
                c.last_recv = now;
            }
            if now.saturating_duration_since(c.last_recv) >= timeout {
                silent.push((id, timeout));
                return true;
            }
            c.out.extend_from_slice(&[0; 4]);
            conns.stats.heartbeats_out += 1;
            if !c.queued_flush {
                c.queued_flush = true;
                conns.flush.push(id);
            }
            true
        });
        for (id, timeout) in silent {
            self.conns.mark_close(id, CloseReason::Silent(timeout));
        }
        self.next_heartbeat = next;
    }

    /// Forgets connections whose layers are ready (or that are gone) and closes those past
    /// [`HANDSHAKE_TIMEOUT`].
    fn service_handshakes(&mut self, now: Instant) {
        let Reactor {
            conns,
            handshaking,
            cfg,
            ..
        } = self;
        let limit = cfg.handshake_timeout;
        handshaking.retain(|&(id, deadline)| {
            let Some(c) = conns.get(id) else {
                return false;
            };
            if c.closing.is_some() || c.stack.as_ref().is_none_or(|s| s.is_ready()) {
                return false;
            }
            if now < deadline {
                return true;
            }
            conns.mark_close(
                id,
                CloseReason::Transport(format!(
                    "handshake not finished within {:.1} s",
                    limit.as_secs_f64()
                )),
            );
            false
        });
    }

    fn deliver_signals(&mut self, handler: &mut dyn Handler, now: Instant) {
        let Some(s) = self.signals.as_mut() else {
            return;
        };
        let sigs: Vec<i32> = s.pending().collect();
        for sig in sigs {
            handler.on_signal(&mut self.conns, now, sig);
        }
    }

    /// Registers a new connection in a free slot.
    fn insert_conn(
        &mut self,
        mut stream: Sock,
        peer: SocketAddr,
        opts: LinkOpts,
        origin: Origin,
        dial: Option<usize>,
        stack: Option<Stack>,
    ) -> io::Result<ConnId> {
        let entry = self.conns.slab.vacant_entry();
        let slot = entry.key();
        if slot >= LISTENER_BASE {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "connection table full",
            ));
        }
        let connecting = dial.is_some();
        // A connect completes with WRITABLE; an open connection needs READABLE only.
        let interest = if connecting {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        stream.register(self.poll.registry(), Token(slot), interest)?;
        let has_stack = stack.is_some();
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1).max(1);
        entry.insert(Conn {
            gen,
            stream,
            peer,
            opts,
            origin,
            connecting,
            dial,
            decoder: Some(FrameDecoder::new(opts.max_frame)),
            out: Vec::new(),
            out_pos: 0,
            writable_interest: connecting,
            queued_flush: false,
            flush_by: None,
            last_write: None,
            queued_ready: false,
            deferred: false,
            congested: false,
            closing: None,
            last_recv: self.conns.now,
            stack: stack.map(Box::new),
            wire: Vec::new(),
            wire_pos: 0,
        });
        let id = ConnId {
            slot: slot as u32,
            gen,
        };
        if has_stack {
            self.handshaking
                .push_back((id, self.conns.now + self.cfg.handshake_timeout));
        }
        if let Some(timeout) = opts.heartbeat {
            self.heartbeat_links.push(id);
            let first = self.conns.now + heartbeat_interval(timeout);
            self.next_heartbeat = Some(self.next_heartbeat.map_or(first, |t| t.min(first)));
        }
        Ok(id)
    }

    /// Accepts until `WouldBlock`, or pauses accepting when descriptors run out.
    fn accept_all(&mut self, idx: usize, handler: &mut dyn Handler, now: Instant) {
        loop {
            let l = &mut self.listeners[idx];
            if let Some(t) = l.paused_until {
                if now < t {
                    return;
                }
                l.paused_until = None;
            }
            match l.sock.accept() {
                Ok((stream, peer)) => {
                    l.shortage_logged = false;
                    let (tag, opts) = (l.tag, l.opts);
                    let stack = match l.spec.build(self.next_gen.into()) {
                        Ok(s) => s,
                        Err(e) => {
                            log::warn!("dropping connection from {peer}: {e}");
                            continue;
                        }
                    };
                    if let Err(e) = stream.set_nodelay(true) {
                        log::debug!("could not set TCP_NODELAY for {peer}: {}", kind_text(&e));
                    }
                    let origin = Origin::Accepted { listener: tag };
                    match self.insert_conn(Sock::Tcp(stream), peer, opts, origin, None, stack) {
                        Ok(id) => {
                            self.conns.stats.accepted += 1;
                            log::debug!("accepted {peer} as {id} on listener {tag}");
                            handler.on_open(&mut self.conns, now, id, origin, peer);
                        }
                        Err(e) => log::warn!("dropping connection from {peer}: {}", kind_text(&e)),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    l.readable = false;
                    return;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // Out of descriptors (EMFILE, ENFILE) or anything else: stop for a moment
                    // rather than spin; the listener stays readable and is retried after.
                    if is_fd_shortage(&e) {
                        self.conns.stats.emfile_backoffs += 1;
                        if !l.shortage_logged {
                            l.shortage_logged = true;
                            log::warn!(
                                "out of file descriptors accepting on {}; pausing accepts for {} ms",
                                l.addr,
                                ACCEPT_PAUSE.as_millis()
                            );
                        }
                    } else {
                        log::warn!(
                            "accept on {} failed: {}; pausing accepts",
                            l.addr,
                            kind_text(&e)
                        );
                    }
                    l.paused_until = Some(now + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }

    /// Starts a nonblocking connect for dial `idx`.
    fn start_dial(&mut self, idx: usize, now: Instant) {
        if self.dials[idx].kcp.is_some() {
            match self.start_kcp_dial(idx, now) {
                Ok(conn) => {
                    self.dials[idx].state = DialState::Connecting {
                        conn,
                        deadline: now + CONNECT_TIMEOUT,
                    };
                }
                Err(e) => self.dial_failed(idx, now, &kind_text(&e)),
            }
            return;
        }
        let d = &self.dials[idx];
        let (addr, tag, opts) = (d.addr, d.tag, d.opts);
        let stack = match d
            .spec
            .build(u64::from(self.next_gen) << 32 | u64::from(tag))
        {
            Ok(s) => s,
            Err(e) => {
                self.dial_failed(idx, now, &e.to_string());
                return;
            }
        };
        let result = TcpStream::connect(addr).and_then(|s| {
            let origin = Origin::Dialed { dial: tag };
            self.insert_conn(Sock::Tcp(s), addr, opts, origin, Some(idx), stack)
        });
        match result {
            Ok(conn) => {
                self.dials[idx].state = DialState::Connecting {
                    conn,
                    deadline: now + CONNECT_TIMEOUT,
                };
            }
            Err(e) => self.dial_failed(idx, now, &kind_text(&e)),
        }
    }

    /// Schedules the next attempt of a dial that did not connect.
    fn dial_failed(&mut self, idx: usize, now: Instant, why: &str) {
        let d = &mut self.dials[idx];
        if !d.failure_logged {
            d.failure_logged = true;
            log::info!(
                "dial {} to {} not connected ({why}); retrying until it is",
                d.tag,
                d.addr
            );
        }
        d.state = DialState::Waiting(now + d.backoff);
        d.backoff = (d.backoff * 2).min(BACKOFF_MAX);
    }

    /// Starts due redials and gives up on connects that take too long.
    fn service_dials(&mut self, now: Instant) {
        for idx in 0..self.dials.len() {
            match self.dials[idx].state {
                DialState::Waiting(t) if t <= now => self.start_dial(idx, now),
                DialState::Connecting { conn, deadline } if deadline <= now => {
                    self.conns
                        .mark_close(conn, CloseReason::ConnectFailed("timed out".into()));
                }
                _ => {}
            }
        }
    }

    /// One readiness event on a connection slot.
    fn conn_event(&mut self, slot: usize, ev: &Event, handler: &mut dyn Handler, now: Instant) {
        let Some(c) = self.conns.slab.get_mut(slot) else {
            return;
        };
        let id = ConnId {
            slot: slot as u32,
            gen: c.gen,
        };
        if c.closing.is_some() {
            return;
        }
        if let Sock::Kcp(_) = c.stream {
            // A dial's own UDP socket: datagrams for its session.
            self.kcp_dial_event(id, handler, now);
            return;
        }
        if c.connecting {
            self.finish_connect(id, handler, now);
            return;
        }
        if ev.is_writable() && c.pending() > 0 && !c.queued_flush {
            c.queued_flush = true;
            self.conns.flush.push(id);
        }
        // Errors and hang-ups surface from `read` with their kind (or as EOF).
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() || ev.is_write_closed() {
            self.read_conn(id, handler, now);
        }
    }

    /// Completes (or fails) a pending dial after an event on its socket.
    fn finish_connect(&mut self, id: ConnId, handler: &mut dyn Handler, now: Instant) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        let Some(tcp) = c.stream.tcp() else {
            return;
        };
        let outcome = match tcp.take_error() {
            Ok(Some(e)) | Err(e) => Err(kind_text(&e)),
            Ok(None) => match tcp.peer_addr() {
                Ok(peer) => Ok(peer),
                // Spurious wake-up: still connecting.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => Err(kind_text(&e)),
            },
        };
        let peer = match outcome {
            Ok(peer) => peer,
            Err(why) => {
                self.conns.mark_close(id, CloseReason::ConnectFailed(why));
                return;
            }
        };
        c.connecting = false;
        c.peer = peer;
        c.last_recv = now;
        if let Some(Err(e)) = c.stream.tcp().map(|s| s.set_nodelay(true)) {
            log::debug!("could not set TCP_NODELAY for {peer}: {}", kind_text(&e));
        }
        let token = Token(id.slot as usize);
        if let Err(e) = c
            .stream
            .reregister(self.poll.registry(), token, Interest::READABLE)
        {
            self.conns.mark_close(id, CloseReason::Io(kind_text(&e)));
            return;
        }
        c.writable_interest = false;
        let origin = c.origin;
        if let Some(idx) = c.dial {
            let d = &mut self.dials[idx];
            d.state = DialState::Open;
            d.backoff = BACKOFF_START;
            if std::mem::take(&mut d.failure_logged) {
                log::info!("dial {} connected to {peer} as {id}", d.tag);
            } else {
                log::debug!("dial {} connected to {peer} as {id}", d.tag);
            }
        }
        if let Some(stack) = c.stack.as_mut() {
            // The layers' first words (a TLS ClientHello, a WebSocket upgrade request).
            match stack.write(&[], &mut c.wire) {
                Ok(()) if c.wire.len() > c.wire_pos && !c.queued_flush => {
                    c.queued_flush = true;
                    self.conns.flush.push(id);
                }
                Ok(()) => {}
                Err(e) => {
                    self.conns
                        .mark_close(id, CloseReason::Transport(e.to_string()));
                    return;
                }
            }
        }
        handler.on_open(&mut self.conns, now, id, origin, peer);
        // Data may have arrived with the connect; its edge is already consumed.
        self.read_conn(id, handler, now);
    }

    /// True if reads from connection `slot` must wait for congestion to clear, as the
    /// [`ReactorConfig::pause_rule`] says for each group with a congested link.
    fn must_pause(&self, slot: usize) -> bool {
        if !self.conns.any_congested() {
            return false;
        }
        let c = &self.conns.slab[slot];
        (0..GROUPS).any(|g| {
            self.conns.congested_groups[usize::from(g)] > 0
                && (self.cfg.pause_rule)(c.opts.group, c.congested, g)
        })
    }

    /// Dispatches the frames already read, then reads and dispatches until `WouldBlock`, the
    /// read budget, a pause or a close. A pause stops between two frames: the rest stay in
    /// the decoder and are dispatched first when the connection is read again.
    fn read_conn(&mut self, id: ConnId, handler: &mut dyn Handler, now: Instant) {
        let slot = id.slot as usize;
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if c.closing.is_some() || c.connecting {
            return;
        }
        if self.must_pause(slot) {
            let c = &mut self.conns.slab[slot];
            if !c.deferred {
                c.deferred = true;
                self.deferred.push(id);
            }
            return;
        }
        let c = &mut self.conns.slab[slot];
        let Some(mut dec) = c.decoder.take() else {
            return;
        };
        let mut budget = self.cfg.read_budget.max(1);
        let (mut requeue, mut defer) = (false, false);
        let heartbeats = c.opts.heartbeat.is_some();
        'read: loop {
            loop {
                match dec.next_frame() {
                    Ok(Some([])) if heartbeats => self.conns.stats.heartbeats_in += 1,
                    Ok(Some(payload)) => {
                        self.conns.stats.frames_in += 1;
                        count_traffic(&mut self.conns.traffic, payload, payload.len(), 0);
                        let t0 = Instant::now();
                        handler.on_frame(&mut self.conns, now, id, payload);
                        let took = t0.elapsed();
                        self.loop_stats.frame.observe(took.as_secs_f64());
                        if took >= SLOW_HANDLER {
                            self.loop_stats.slow_logged += 1;
                            log::warn!(
                                "slow handler: {:.0?} for a frame of type {} ({} bytes) from {id}",
                                took,
                                crate::proto::peek_type(payload).unwrap_or(0),
                                payload.len()
                            );
                        }
                        if self.conns.slab[slot].closing.is_some() {
                            break 'read;
                        }
                        if self.must_pause(slot) {
                            defer = true;
                            break 'read;
                        }
                    }
                    Ok(None) => break,
                    Err(FrameError::TooLarge { len, max }) => {
                        self.conns
                            .mark_close(id, CloseReason::FrameTooLarge { len, max });
                        break 'read;
                    }
                }
            }
            if budget == 0 {
                requeue = true;
                break;
            }
            let c = &mut self.conns.slab[slot];
            let got = match c.stack.as_mut() {
                None => dec.read_from(&mut c.stream),
                Some(stack) => match c.stream.read(&mut self.layer_in) {
                    Ok(n) if n > 0 => {
                        let answered = c.wire.len();
                        self.layer_plain.clear();
                        let r = stack.read(&self.layer_in[..n], &mut self.layer_plain, &mut c.wire);
                        dec.extend(&self.layer_plain);
                        if c.wire.len() > answered && !c.queued_flush {
                            c.queued_flush = true;
                            self.conns.flush.push(id);
                        }
                        if let Err(e) = r {
                            // Frames that came before the bad bytes are not dispatched.
                            self.conns.stats.bytes_in += n as u64;
                            self.conns
                                .mark_close(id, CloseReason::Transport(e.to_string()));
                            break;
                        }
                        Ok(n)
                    }
                    other => other,
                },
            };
            let c = &mut self.conns.slab[slot];
            match got {
                // Every frame before EOF has been dispatched (the loop above ran first).
                Ok(0) => {
                    self.conns.mark_close(id, CloseReason::PeerClosed);
                    break;
                }
                Ok(n) => {
                    self.conns.stats.bytes_in += n as u64;
                    budget = budget.saturating_sub(n);
                    c.last_recv = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.conns.mark_close(id, CloseReason::Io(kind_text(&e)));
                    break;
                }
            }
        }
        dec.shrink_if_idle();
        // Teardown only runs between stages, so the slot is still this connection's.
        let c = &mut self.conns.slab[slot];
        c.decoder = Some(dec);
        if c.closing.is_some() {
            return;
        }
        if requeue && !c.queued_ready {
            c.queued_ready = true;
            self.ready.push(id);
        }
        if defer && !c.deferred {
            c.deferred = true;
            self.deferred.push(id);
        }
    }

    /// Writes the output queued this iteration (and after writable events), and the client
    /// links whose flush interval has passed.
    fn flush_all(&mut self, now: Instant) {
        while let Some(&std::cmp::Reverse((t, id))) = self.conns.delayed.peek() {
            // Over the client output budget, reads wait for the clients to drain: then every
            // client is written as soon as it can take it, or the interval alone would cap
            // what the gate can send (with the budget spread over 8 000 clients, a 500 ms
            // interval let through 128 MB/s, less than their world chat, and the
            // deployment stalled half idle).
            if t > now && !self.conns.clients_congested() {
                break;
            }
            self.conns.delayed.pop();
            if let Some(c) = self.conns.get_mut(id).filter(|c| c.flush_by == Some(t)) {
                c.flush_by = None;
                if !c.queued_flush {
                    c.queued_flush = true;
                    self.conns.flush.push(id);
                }
            }
        }
        for id in std::mem::take(&mut self.conns.flush) {
            let Some(c) = self.conns.get_mut(id) else {
                continue;
            };
            c.queued_flush = false;
            c.flush_by = None;
            // Closing connections are flushed by teardown.
            if c.closing.is_none() && !c.connecting {
                c.last_write = Some(now);
                self.flush_conn(id);
            }
        }
        self.conns.adapt_client_interval(now);
    }

    /// Writes until drained or `WouldBlock`, and keeps WRITABLE interest and congestion in
    /// step with what is left.
    fn flush_conn(&mut self, id: ConnId) {
        let Conns {
            slab,
            stats,
            congested_groups,
            closing,
            client_pending,
            ..
        } = &mut self.conns;
        let Some(c) = slab.get_mut(id.slot as usize).filter(|c| c.gen == id.gen) else {
            return;
        };
        let token = Token(id.slot as usize);
        let registry = self.poll.registry();
        let before = c.pending();
        let written = write_out(c, stats);
        if let LinkKind::Client { .. } = c.opts.kind {
            // Layers change the size (TLS adds, snappy takes off): what left is counted.
            *client_pending = (*client_pending + c.pending()).saturating_sub(before);
            stats.client_writes += 1;
        }
        let result = match written {
            Ok(true) if c.writable_interest => {
                c.writable_interest = false;
                c.stream.reregister(registry, token, Interest::READABLE)
            }
            Ok(false) => {
                // Keep the written prefix from growing without bound on a slow link; moving
                // less than half the buffer keeps this amortised.
                if c.out_pos > c.out.len() / 2 {
                    c.out.drain(..c.out_pos);
                    c.out_pos = 0;
                }
                if c.writable_interest {
                    Ok(())
                } else {
                    c.writable_interest = true;
                    c.stream
                        .reregister(registry, token, Interest::READABLE | Interest::WRITABLE)
                }
            }
            other => other.map(|_| ()),
        };
        if let Err(e) = result {
            if c.closing.is_none() {
                c.closing = Some(close_reason_of(&e));
                closing.push(id);
            }
        }
        if c.congested && c.pending() < self.cfg.low_watermark {
            c.congested = false;
            congested_groups[usize::from(c.opts.group)] -= 1;
        }
        self.conns.clients_drained();
    }

    /// Tears down every marked connection, including ones marked by `on_close` handlers.
    fn process_closes(&mut self, handler: &mut dyn Handler, now: Instant) {
        while !self.conns.closing.is_empty() {
            for id in std::mem::take(&mut self.conns.closing) {
                self.teardown(id, handler, now);
            }
        }
    }

    /// The one place a connection ends: best-effort flush, deregister, remove, report.
    fn teardown(&mut self, id: ConnId, handler: &mut dyn Handler, now: Instant) {
        if self.conns.get(id).is_none() {
            return;
        }
        let mut c = self.conns.slab.remove(id.slot as usize);
        let reason = c
            .closing
            .take()
            .unwrap_or_else(|| CloseReason::Local("closed".into()));
        if c.congested {
            self.conns.congested_groups[usize::from(c.opts.group)] -= 1;
        }
        if let LinkKind::Client { .. } = c.opts.kind {
            // Whatever the last write below manages, this output is no longer pending here.
            self.conns.client_pending = self.conns.client_pending.saturating_sub(c.pending());
            self.conns.clients_drained();
        }
        // Output for a peer that stopped reading, or on a broken socket, is not worth a try.
        // A transport refusal (an HTTP error, a TLS alert, a WebSocket close) is sent too.
        let flush = matches!(
            reason,
            CloseReason::Local(_)
                | CloseReason::PeerClosed
                | CloseReason::FrameTooLarge { .. }
                | CloseReason::Transport(_)
        );
        if flush && !c.connecting && c.pending() > 0 {
            let _ = write_out(&mut c, &mut self.conns.stats);
        }
        let _ = c.stream.deregister(self.poll.registry());
        if let Sock::Kcp(link) = &c.stream {
            self.kcp_closed(link, id);
        }
        let (peer, connecting, dial) = (c.peer, c.connecting, c.dial);
        drop(c);

        if connecting {
            if let (Some(idx), CloseReason::ConnectFailed(why)) = (dial, &reason) {
                self.dial_failed(idx, now, why);
            } else if let Some(idx) = dial {
                self.dial_failed(idx, now, &reason.to_string());
            }
            return;
        }
        self.conns.stats.closed += 1;
        self.loop_stats.closed[close_kind(&reason)] += 1;
        // The component logs the close with what it knows of the peer (a client ID, a game);
        // a second line here would only repeat it.
        log::debug!("connection {id} with {peer} closed: {reason}");
        handler.on_close(&mut self.conns, now, id, &reason);
        if let Some(idx) = dial {
            let d = &mut self.dials[idx];
            d.state = DialState::Waiting(now + d.backoff);
            d.backoff = (d.backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// After stop: keep writing pending output for up to [`FINAL_FLUSH`].
    fn final_flush(&mut self, handler: &mut dyn Handler) {
        let deadline = Instant::now() + FINAL_FLUSH;
        let mut events = Events::with_capacity(256);
        loop {
            let now = Instant::now();
            self.process_closes(handler, now);
            let Conns { slab, flush, .. } = &mut self.conns;
            for (slot, c) in slab.iter_mut() {
                // Stopping: nothing waits for more output any more.
                c.flush_by = None;
                if c.pending() > 0 && !c.queued_flush && !c.connecting {
                    c.queued_flush = true;
                    flush.push(ConnId {
                        slot: slot as u32,
                        gen: c.gen,
                    });
                }
            }
            self.flush_all(now);
            self.process_closes(handler, now);
            let left = self
                .conns
                .slab
                .iter()
                .any(|(_, c)| c.pending() > 0 && !c.connecting);
            if !left || now >= deadline {
                if left {
                    log::warn!(
                        "stopping with output still pending after {} ms",
                        FINAL_FLUSH.as_millis()
                    );
                }
                return;
            }
            // Only waiting for writability here; reads are over.
            let _ = self.poll.poll(
                &mut events,
                Some((deadline - now).min(Duration::from_millis(10))),
            );
        }
    }
}

/// Writes `c.out` until drained (`Ok(true)`, buffer reset and released if it grew) or
/// `WouldBlock` (`Ok(false)`).
fn write_out(c: &mut Conn, stats: &mut ReactorStats) -> io::Result<bool> {
    if c.stack.is_some() {
        return write_layered(c, stats);
    }
    while c.out_pos < c.out.len() {
        match c.stream.write(&c.out[c.out_pos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                c.out_pos += n;
                stats.bytes_out += n as u64;
                stats.writes += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    c.out.clear();
    c.out_pos = 0;
    if c.out.capacity() > BUF_KEEP {
        // Memory returns after a burst.
        c.out = Vec::new();
    }
    Ok(true)
}

/// [`write_out`] for a connection with transport layers: the frames go down through them
/// into `wire`, then `wire` is written. A layer's error comes back as an io error wrapping
/// the [`LayerError`](crate::transport::LayerError) (see [`close_reason_of`]).
fn write_layered(c: &mut Conn, stats: &mut ReactorStats) -> io::Result<bool> {
    let Some(stack) = c.stack.as_mut() else {
        return Ok(true);
    };
    if c.out_pos < c.out.len() {
        stack
            .write(&c.out[c.out_pos..], &mut c.wire)
            .map_err(io::Error::other)?;
        c.out.clear();
        c.out_pos = 0;
        if c.out.capacity() > BUF_KEEP {
            c.out = Vec::new();
        }
    }
    while c.wire_pos < c.wire.len() {
        match c.stream.write(&c.wire[c.wire_pos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                c.wire_pos += n;
                stats.bytes_out += n as u64;
                stats.writes += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if c.wire_pos > c.wire.len() / 2 {
                    c.wire.drain(..c.wire_pos);
                    c.wire_pos = 0;
                }
                return Ok(false);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    c.wire.clear();
    c.wire_pos = 0;
    if c.wire.capacity() > BUF_KEEP {
        c.wire = Vec::new();
    }
    Ok(true)
}

/// The close reason of a failed write: a transport layer's refusal, or the io error's kind.
fn close_reason_of(e: &io::Error) -> CloseReason {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<crate::transport::LayerError>())
    {
        Some(layer) => CloseReason::Transport(layer.to_string()),
        None => CloseReason::Io(kind_text(e)),
    }
}

/// EMFILE or ENFILE (same numbers on Linux and the BSDs).
fn is_fd_shortage(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24))
}

/// A lowercase description of an io error's kind, never its os text ("os error N"), and
/// never containing the word "error" (log scanners treat that as a failure).
fn kind_text(e: &io::Error) -> String {
    crate::logging::io_kind(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::write_frame;
    use std::io::Read;
    use std::net::{Shutdown, TcpStream as StdStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, MutexGuard};
    use std::thread::JoinHandle;

    const WAIT: Duration = Duration::from_secs(4);

    /// What the test handler saw.
    #[derive(Default)]
    struct Seen {
        opens: Vec<(ConnId, Origin)>,
        closes: Vec<(ConnId, CloseReason)>,
        /// Frames recorded by behaviours that want them.
        frames: Vec<(ConnId, Vec<u8>)>,
        frame_count: usize,
        signals: Vec<i32>,
        wakes: usize,
        max_pending: usize,
        notes: Vec<String>,
    }

    type Behaviour = Box<dyn FnMut(&mut dyn Io, ConnId, &[u8], &mut Seen) + Send>;

    struct TestHandler {
        seen: Arc<Mutex<Seen>>,
        stop: Arc<AtomicBool>,
        behaviour: Behaviour,
    }

    fn lock(m: &Mutex<Seen>) -> MutexGuard<'_, Seen> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    impl Handler for TestHandler {
        fn on_open(
            &mut self,
            _io: &mut dyn Io,
            _now: Instant,
            conn: ConnId,
            origin: Origin,
            _peer: SocketAddr,
        ) {
            lock(&self.seen).opens.push((conn, origin));
        }
        fn on_frame(&mut self, io: &mut dyn Io, _now: Instant, conn: ConnId, payload: &[u8]) {
            let mut seen = lock(&self.seen);
            seen.frame_count += 1;
            (self.behaviour)(io, conn, payload, &mut seen);
        }
        fn on_close(&mut self, io: &mut dyn Io, _now: Instant, conn: ConnId, reason: &CloseReason) {
            // A closed connection is gone: sending to it must be ignored.
            io.send(conn, b"late");
            assert_eq!(io.pending(conn), 0);
            lock(&self.seen).closes.push((conn, reason.clone()));
        }
        fn on_tick(&mut self, _io: &mut dyn Io, _now: Instant, _wall: SystemTime) {}
        fn next_deadline(&self) -> Option<Instant> {
            None
        }
        fn on_signal(&mut self, _io: &mut dyn Io, _now: Instant, signal: i32) {
            lock(&self.seen).signals.push(signal);
        }
        fn on_wake(&mut self, _io: &mut dyn Io, _now: Instant) {
            lock(&self.seen).wakes += 1;
        }
        fn should_stop(&self) -> bool {
            self.stop.load(Ordering::SeqCst)
        }
    }

    /// A reactor running in its own thread.
    struct Running {
        seen: Arc<Mutex<Seen>>,
        stop: Arc<AtomicBool>,
        waker: Arc<Waker>,
        thread: JoinHandle<Reactor>,
    }

    impl Running {
        fn start(mut reactor: Reactor, behaviour: Behaviour) -> Running {
            let seen = Arc::new(Mutex::new(Seen::default()));
            let stop = Arc::new(AtomicBool::new(false));
            let waker = reactor.waker();
            let mut handler = TestHandler {
                seen: seen.clone(),
                stop: stop.clone(),
                behaviour,
            };
            let thread = std::thread::spawn(move || {
                reactor.run(&mut handler).unwrap();
                reactor
            });
            Running {
                seen,
                stop,
                waker,
                thread,
            }
        }

        fn seen(&self) -> MutexGuard<'_, Seen> {
            lock(&self.seen)
        }

        fn wait_for(&self, what: &str, f: impl Fn(&Seen) -> bool) {
            let deadline = Instant::now() + WAIT;
            while !f(&self.seen()) {
                assert!(Instant::now() < deadline, "timed out waiting for {what}");
                std::thread::sleep(Duration::from_millis(1));
            }
        }

        fn stop(self) -> Reactor {
            self.stop.store(true, Ordering::SeqCst);
            self.waker.wake().unwrap();
            self.thread.join().unwrap()
        }
    }

    fn echo() -> Behaviour {
        Box::new(|io, conn, p, _| io.send(conn, p))
    }

    fn client_opts(limit: usize) -> LinkOpts {
        LinkOpts {
            kind: LinkKind::Client {
                output_limit: limit,
            },
            max_frame: 4 << 20,
            group: 0,
            heartbeat: None,
        }
    }

    fn listen(r: &mut Reactor, tag: u32, opts: LinkOpts) -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        r.add_listener(l, tag, opts).unwrap()
    }

    fn connect(addr: SocketAddr) -> StdStream {
        let s = StdStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_write_timeout(Some(WAIT)).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    fn send_frame(s: &mut StdStream, payload: &[u8]) -> io::Result<()> {
        let mut b = Vec::new();
        write_frame(&mut b, payload);
        s.write_all(&b)
    }

    fn read_frame(s: &mut StdStream) -> io::Result<Vec<u8>> {
        let mut h = [0u8; 4];
        s.read_exact(&mut h)?;
        let mut p = vec![0u8; u32::from_le_bytes(h) as usize];
        s.read_exact(&mut p)?;
        Ok(p)
    }

    /// Reads until EOF or a reset; panics on a timeout or unexpected data.
    fn expect_eof(s: &mut StdStream) {
        let mut b = [0u8; 64];
        match s.read(&mut b) {
            Ok(0) => {}
            Ok(n) => panic!("unexpected {n} bytes"),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
        }
    }

    /// Payload `i` of a numbered stream: the index, then filler derived from it.
    fn numbered(i: u32, len: usize) -> Vec<u8> {
        let mut p = vec![(i % 251) as u8; len];
        p[..4].copy_from_slice(&i.to_le_bytes());
        p
    }

    #[test]
    fn frames_round_trip_and_local_close_flushes() {
        let mut r = Reactor::new(ReactorConfig::default()).unwrap();
        let addr = listen(&mut r, 3, client_opts(1 << 20));
        let run = Running::start(
            r,
            Box::new(|io, conn, p, _| match p {
                [b't', b'w', b'o', b':', rest @ ..] => io.send2(conn, b"head-", rest),
                b"bye" => {
                    io.send(conn, b"farewell");
                    io.close(conn, "kicked");
                    io.send(conn, b"ignored after close");
                }
                _ => io.send(conn, p),
            }),
        );
        let mut c = connect(addr);
        let big = numbered(9, 100_000);
        let payloads: Vec<&[u8]> = vec![b"a", b"", &big, b"two:xyz"];
        for p in &payloads {
            send_frame(&mut c, p).unwrap();
        }
        for p in &payloads[..3] {
            assert_eq!(read_frame(&mut c).unwrap(), *p);
        }
        assert_eq!(read_frame(&mut c).unwrap(), b"head-xyz");
        send_frame(&mut c, b"bye").unwrap();
        assert_eq!(read_frame(&mut c).unwrap(), b"farewell");
        expect_eof(&mut c);
        run.wait_for("close", |s| !s.closes.is_empty());
        {
            let seen = run.seen();
            assert_eq!(seen.opens.len(), 1);
            assert_eq!(seen.opens[0].1, Origin::Accepted { listener: 3 });
            assert_eq!(
                seen.closes,
                vec![(seen.opens[0].0, CloseReason::Local("kicked".into()))]
            );
        }
        let r = run.stop();
        let st = r.stats();
        assert_eq!((st.accepted, st.closed, st.frames_in), (1, 1, 5));
        assert!(st.bytes_out > 100_000 && st.bytes_in > 100_000);
    }

    #[test]
    fn large_output_to_slow_reader_arrives_intact_and_memory_returns() {
        const FRAMES: u32 = 320;
        const LEN: usize = 64 << 10; // 20 MiB in all
        let mut r = Reactor::new(ReactorConfig::default()).unwrap();
        let addr = listen(&mut r, 1, client_opts(64 << 20));
        let run = Running::start(
            r,
            Box::new(|io, conn, p, seen| {
                if p == b"go" {
                    for i in 0..FRAMES {
                        io.send(conn, &numbered(i, LEN));
                    }
                } else {
                    seen.notes.push(format!("{}", p.len()));
                }
            }),
        );
        let mut c = connect(addr);
        // A burst of input first: one 1 MiB frame grows the input buffer.
        send_frame(&mut c, &vec![5u8; 1 << 20]).unwrap();
        send_frame(&mut c, b"go").unwrap();
        for i in 0..FRAMES {
            if i % 32 == 0 {
                // Slow reader: the reactor meets WouldBlock and must keep the rest queued.
                std::thread::sleep(Duration::from_millis(5));
            }
            let p = read_frame(&mut c).unwrap();
            assert_eq!(p.len(), LEN);
            assert!(p == numbered(i, LEN), "frame {i} differs");
        }
        run.wait_for("input", |s| s.notes == ["1048576"]);
        let conn = run.seen().opens[0].0;
        let r = run.stop();
        let (input, output) = r.debug_conn_capacity(conn).unwrap();
        assert!(input <= 64 << 10, "input capacity {input}");
        assert!(output <= 64 << 10, "output capacity {output}");
        let st = r.stats();
        assert!(st.bytes_out >= u64::from(FRAMES) * LEN as u64);
        assert!(st.writes > 1, "{st:?}");
    }

    #[test]
    fn half_close_delivers_frames_then_peer_closed() {
        let mut r = Reactor::new(ReactorConfig::default()).unwrap();
        let addr = listen(&mut r, 1, client_opts(1 << 20));
        let run = Running::start(
            r,
            Box::new(|io, conn, p, seen| {
                seen.frames.push((conn, p.to_vec()));
                io.send(conn, p);
            }),
        );
        let mut c = connect(addr);
        for p in [&b"one"[..], b"two", b"three"] {
            send_frame(&mut c, p).unwrap();
        }
        c.shutdown(Shutdown::Write).unwrap();
        run.wait_for("close", |s| !s.closes.is_empty());
        {
            let seen = run.seen();
            let conn = seen.opens[0].0;
            let got: Vec<&[u8]> = seen.frames.iter().map(|(_, p)| p.as_slice()).collect();
            assert_eq!(got, [&b"one"[..], b"two", b"three"]);
            assert_eq!(seen.closes, vec![(conn, CloseReason::PeerClosed)]);
        }
        // Replies queued before the EOF still reach the half-closed peer.
        for p in [&b"one"[..], b"two", b"three"] {
            assert_eq!(read_frame(&mut c).unwrap(), p);
        }
        expect_eof(&mut c);
        run.stop();
    }

    fn server_opts(heartbeat: Option<Duration>) -> LinkOpts {
        LinkOpts {
            kind: LinkKind::Server,
            max_frame: 4 << 20,
            group: 0,
            heartbeat,
        }
    }

    #[test]
    fn a_silent_peer_is_closed_after_the_heartbeat_timeout_and_heartbeats_keep_one_open() {
        let timeout = Duration::from_millis(300);
        let mut r = Reactor::new(ReactorConfig::default()).unwrap();
        let addr = listen(&mut r, 1, server_opts(Some(timeout)));
        let run = Running::start(
            r,
            Box::new(|io, conn, p, seen| {
                seen.frames.push((conn, p.to_vec()));
                io.send(conn, p);
            }),
        );
        // A peer that sends only heartbeats (empty frames), for four timeouts.
        let mut alive = connect(addr);
        let mut silent = connect(addr);
        let opened = Instant::now();
        run.wait_for("two opens", |s| s.opens.len() == 2);
        let (alive_id, silent_id) = {
            let seen = run.seen();
            (seen.opens[0].0, seen.opens[1].0)
        };
        while opened.elapsed() < timeout * 4 {
            alive.write_all(&[0; 4]).unwrap();
            std::thread::sleep(timeout / 6);
        }
        send_frame(&mut alive, b"data").unwrap();
        run.wait_for("the data frame", |s| !s.frames.is_empty());
        {
            let seen = run.seen();
            // The silent one was closed within its timeout plus one heartbeat interval; the
            // heartbeats never reached the handler.
            assert_eq!(seen.closes, vec![(silent_id, CloseReason::Silent(timeout))]);
            assert_eq!(seen.frames, vec![(alive_id, b"data".to_vec())]);
        }
        // The silent peer got heartbeats (empty frames) and then the close.
        let mut heartbeats = 0;
        silent
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        loop {
            match read_frame(&mut silent) {
                Ok(p) if p.is_empty() => heartbeats += 1,
                Ok(p) => panic!("unexpected frame {p:?}"),
                Err(_) => break,
            }
        }
        assert!(
            (2..=HEARTBEATS_PER_TIMEOUT + 1).contains(&heartbeats),
            "{heartbeats} heartbeats"
        );
        // The live one got heartbeats too, then its echo.
        loop {
            let p = read_frame(&mut alive).unwrap();
            if !p.is_empty() {
                assert_eq!(p, b"data");
                break;
            }
        }
        let r = run.stop();
        let st = r.stats();
        assert!(st.heartbeats_in >= 15, "{} heartbeats in", st.heartbeats_in);
        assert!(
            st.heartbeats_out >= 10,
            "{} heartbeats out",
            st.heartbeats_out
        );
        assert_eq!(r.loop_stats.closed[6], 1);
    }

    #[test]
    fn without_heartbeats_an_empty_frame_reaches_the_handler_and_silence_is_kept() {
        let mut r = Reactor::new(ReactorConfig::default()).unwrap();
        let addr = listen(&mut r, 1, server_opts(None));
        let run = Running::start(
            r,
            Box::new(|_io, conn, p, seen| seen.frames.push((conn, p.to_vec()))),
        );
        let mut c = connect(addr);
        c.write_all(&[0; 4]).unwrap();
        run.wait_for("the empty frame", |s| !s.frames.is_empty());
        std::thread::sleep(Duration::from_millis(300));
        c.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut b = [0u8; 4];
        assert!(
            c.read(&mut b).is_err(),
            "nothing is sent on a link without heartbeats"
        );
        assert!(run.seen().closes.is_empty());
        run.stop();
    }

    #[test]
    fn client_over_output_limit_is_closed_others_untouched() {
        const LIMIT: usize = 1 << 20;
        let mut r = Reactor::new(ReactorConfig::default()).unwrap();
        let addr = listen(&mut r, 1, client_opts(LIMIT));
        let run = Running::start(
            r,
            Box::new(|io, conn, p, _| {
                if p == b"more" {
                    for i in 0..4 {
                        io.send(conn, &numbered(i, 64 << 10));
                    }
                }
            }),
        );
        let mut a = connect(addr);
        run.wait_for("open a", |s| s.opens.len() == 1);
        let mut b = connect(addr);
        run.wait_for("open b", |s| s.opens.len() == 2);
        let (ida, idb) = {
            let s = run.seen();
            (s.opens[0].0, s.opens[1].0)
        };
        // A asks for more and more without ever reading.
        let deadline = Instant::now() + WAIT;
        while run.seen().closes.is_empty() {
            assert!(Instant::now() < deadline, "a was never closed");
            if send_frame(&mut a, b"more").is_err() {
                break;
            }
        }
        run.wait_for("close a", |s| !s.closes.is_empty());
        match &run.seen().closes[..] {
            [(id, CloseReason::OutputLimit { pending, limit })] => {
                assert_eq!(*id, ida);
                assert_eq!(*limit, LIMIT);
                assert!(*pending > LIMIT);
            }
            other => panic!("unexpected closes {other:?}"),
        }
        // B reads what it asks for and stays open.
        for _ in 0..10 {
            send_frame(&mut b, b"more").unwrap();
            for i in 0..4 {
                assert!(read_frame(&mut b).unwrap() == numbered(i, 64 << 10));
            }
        }
        assert_eq!(run.seen().closes.len(), 1);
        let r = run.stop();
        assert!(r.debug_conn_capacity(idb).is_some());
        assert!(r.debug_conn_capacity(ida).is_none());
    }

    #[test]
    fn congested_server_link_pauses_reads_until_drained() {
        const FRAMES: u32 = 32;
        const LEN: usize = 256 << 10; // 8 MiB in, 32 MiB out (each frame forwarded 4 times)
        let cfg = ReactorConfig {
            high_watermark: 1 << 20,
            low_watermark: 256 << 10,
            ..ReactorConfig::default()
        };
        let mut r = Reactor::new(cfg).unwrap();
        let opts = LinkOpts {
            kind: LinkKind::Server,
            max_frame: 1 << 20,
            group: 0,
            heartbeat: None,
        };
        let addr = listen(&mut r, 1, opts);
        let run = Running::start(
            r,
            Box::new(|io, conn, p, seen| {
                let slow = seen.opens[0].0;
                if conn != slow {
                    for _ in 0..4 {
                        io.send(slow, p);
                    }
                    seen.max_pending = seen.max_pending.max(io.pending(slow));
                }
            }),
        );
        let mut slow = connect(addr);
        run.wait_for("open slow", |s| s.opens.len() == 1);
        let mut producer = connect(addr);
        let writer = std::thread::spawn(move || {
            for i in 0..FRAMES {
                send_frame(&mut producer, &numbered(i, LEN)).unwrap();
            }
            producer
        });
        run.wait_for("congestion", |s| s.max_pending > 1 << 20);
        // The kernel absorbs the first megabytes; once it is full, the reactor stops reading
        // from the producer (whose writes then block) although it has more to send.
        let deadline = Instant::now() + WAIT;
        let mut before = run.seen().frame_count;
        loop {
            std::thread::sleep(Duration::from_millis(40));
            let now_count = run.seen().frame_count;
            if now_count == before {
                break;
            }
            assert!(Instant::now() < deadline, "reads never paused");
            before = now_count;
        }
        assert!(before < FRAMES as usize, "everything was read: {before}");
        for i in 0..FRAMES {
            for _ in 0..4 {
                assert!(
                    read_frame(&mut slow).unwrap() == numbered(i, LEN),
                    "frame {i}"
                );
            }
        }
        let _producer = writer.join().unwrap();
        run.wait_for("all frames", |s| s.frame_count == FRAMES as usize);
        let r = run.stop();
        let st = r.stats();
        assert!(st.read_pauses >= 1, "{st:?}");
        assert_eq!(st.closed, 0);
    }

    /// A peer that sends `frames` frames of `len` bytes and reads nothing until they are all
    /// sent, against a reactor that answers each frame with four copies (to `target`: the
    /// same connection, or the first one opened). Returns the most output the reactor had
    /// pending for the target, after reading all the answers in order from `reader`.
    fn pending_peak(cfg: ReactorConfig, opts: LinkOpts, to_self: bool) -> (usize, ReactorStats) {
        const FRAMES: u32 = 32;
        const LEN: usize = 256 << 10;
        let mut r = Reactor::new(cfg).unwrap();
        let addr = listen(&mut r, 1, opts);
        let run = Running::start(
            r,
            Box::new(move |io, conn, p, seen| {
                let target = if to_self { conn } else { seen.opens[0].0 };
                if to_self || conn != target {
                    for _ in 0..4 {
                        io.send(target, p);
                    }
                    seen.max_pending = seen.max_pending.max(io.pending(target));
                }
            }),
        );
        let mut reader = connect(addr);
        run.wait_for("open reader", |s| s.opens.len() == 1);
        let mut producer = if to_self {
            reader.try_clone().unwrap()
        } else {
            connect(addr)
        };
        let writer = std::thread::spawn(move || {
            for i in 0..FRAMES {
                send_frame(&mut producer, &numbered(i, LEN)).unwrap();
            }
            producer
        });
        // Give the reactor time to read whatever it will read while nobody reads its output.
        std::thread::sleep(Duration::from_millis(300));
        for i in 0..FRAMES {
            for _ in 0..4 {
                assert!(
                    read_frame(&mut reader).unwrap() == numbered(i, LEN),
                    "frame {i}"
                );
            }
        }
        let _producer = writer.join().unwrap();
        let peak = run.seen().max_pending;
        let r = run.stop();
        (peak, r.stats())
    }

    #[test]
    fn a_leaf_stops_dispatching_from_its_own_congested_link_until_it_drains() {
        let cfg = |read_while_congested| ReactorConfig {
            high_watermark: 1 << 20,
            low_watermark: 256 << 10,
            pause_rule: if read_while_congested {
                pause_unless_congested_itself
            } else {
                pause_all
            },
            ..ReactorConfig::default()
        };
        let opts = LinkOpts {
            kind: LinkKind::Server,
            max_frame: 1 << 20,
            group: 0,
            heartbeat: None,
        };
        // A leaf: at most the watermark plus one frame's answers, however much it was sent.
        let (peak, st) = pending_peak(cfg(false), opts, true);
        assert!(
            peak <= (1 << 20) + 4 * ((256 << 10) + 4),
            "pending reached {peak}"
        );
        assert!(st.read_pauses >= 1, "{st:?}");
        // A hub keeps reading the link it is congested on, so the answers pile up.
        let (peak, _) = pending_peak(cfg(true), opts, true);
        assert!(peak > 4 << 20, "a hub's pending output only reached {peak}");
    }

    #[test]
    fn client_output_over_the_budget_pauses_reads_until_it_drains() {
        let cfg = |budget| ReactorConfig {
            client_output_budget: budget,
            ..ReactorConfig::default()
        };
        let (peak, st) = pending_peak(cfg(1 << 20), client_opts(64 << 20), false);
        assert!(
            peak <= (1 << 20) + 4 * ((256 << 10) + 4),
            "pending reached {peak}"
        );
        assert!(st.read_pauses >= 1, "{st:?}");
        assert_eq!(st.closed, 0);
        let (peak, _) = pending_peak(cfg(0), client_opts(64 << 20), false);
        assert!(
            peak > 4 << 20,
            "without a budget pending output only reached {peak}"
        );
    }

    #[test]
    fn stale_conn_id_in_reused_slot_is_ignored() {
        let mut r = Reactor::new(ReactorConfig::default()).unwrap();
        let addr = listen(&mut r, 1, client_opts(1 << 20));
        let run = Running::start(
            r,
            Box::new(|io, conn, p, seen| {
                if p == b"poke" {
                    let stale = seen.opens[0].0;
                    io.send(stale, b"stale");
                    io.send2(stale, b"st", b"ale");
                    io.close(stale, "stale close");
                    seen.notes.push(format!("pending {}", io.pending(stale)));
                    io.send(conn, b"ok");
                } else {
                    io.send(conn, p);
                }
            }),
        );
        let a = connect(addr);
        run.wait_for("open a", |s| s.opens.len() == 1);
        drop(a);
        run.wait_for("close a", |s| s.closes.len() == 1);
        let mut b = connect(addr);
        run.wait_for("open b", |s| s.opens.len() == 2);
        {
            let s = run.seen();
            let (ida, idb) = (s.opens[0].0, s.opens[1].0);
            assert_eq!(ida.slot, idb.slot, "slot not reused");
            assert_ne!(ida.gen, idb.gen);
            assert_eq!(s.closes, vec![(ida, CloseReason::PeerClosed)]);
        }
        send_frame(&mut b, b"poke").unwrap();
        send_frame(&mut b, b"ping").unwrap();
        assert_eq!(read_frame(&mut b).unwrap(), b"ok");
        assert_eq!(read_frame(&mut b).unwrap(), b"ping");
        {
            let s = run.seen();
            assert_eq!(s.notes, ["pending 0"]);
            assert_eq!(s.closes.len(), 1);
        }
        run.stop();
    }

    /// Accepts one connection within the test timeout.
    fn accept_within(l: &std::net::TcpListener) -> StdStream {
        l.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            match l.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(WAIT)).unwrap();
                    return s;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no dial arrived");
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    #[test]
    fn dial_reconnects_with_same_tag() {
        // A free port, with nothing listening yet.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut r = Reactor::new(ReactorConfig::default()).unwrap();
        r.add_dial(
            addr,
            7,
            LinkOpts {
                kind: LinkKind::Server,
                max_frame: 1024,
                group: 0,
                heartbeat: None,
            },
        );
        let run = Running::start(r, echo());
        std::thread::sleep(Duration::from_millis(120));
        assert!(run.seen().opens.is_empty());
        let l = std::net::TcpListener::bind(addr).unwrap();
        let mut s1 = accept_within(&l);
        send_frame(&mut s1, b"hi").unwrap();
        assert_eq!(read_frame(&mut s1).unwrap(), b"hi");
        drop(s1);
        run.wait_for("close", |s| s.closes.len() == 1);
        let mut s2 = accept_within(&l);
        send_frame(&mut s2, b"again").unwrap();
        assert_eq!(read_frame(&mut s2).unwrap(), b"again");
        {
            let s = run.seen();
            assert_eq!(s.opens.len(), 2);
            assert!(s
                .opens
                .iter()
                .all(|(_, o)| *o == Origin::Dialed { dial: 7 }));
            // Failed attempts never reach the handler.
            assert_eq!(s.closes, vec![(s.opens[0].0, CloseReason::PeerClosed)]);
        }
        let r = run.stop();
        assert_eq!(r.stats().accepted, 0);
    }

    #[test]
    fn oversized_frame_closes_only_that_connection() {
        let mut r = Reactor::new(ReactorConfig::default()).unwrap();
        let addr = listen(
            &mut r,
            1,
            LinkOpts {
                kind: LinkKind::Client {
                    output_limit: 1 << 20,
                },
                max_frame: 1024,
                group: 0,
                heartbeat: None,
            },
        );
        let run = Running::start(r, echo());
        let mut x = connect(addr);
        run.wait_for("open x", |s| s.opens.len() == 1);
        let mut y = connect(addr);
        send_frame(&mut y, b"before").unwrap();
        assert_eq!(read_frame(&mut y).unwrap(), b"before");
        send_frame(&mut x, &[1u8; 1024]).unwrap();
        assert_eq!(read_frame(&mut x).unwrap(), [1u8; 1024]);
        let mut bad = 1_000_000u32.to_le_bytes().to_vec();
        bad.extend_from_slice(&[0u8; 100]);
        x.write_all(&bad).unwrap();
        run.wait_for("close x", |s| !s.closes.is_empty());
        expect_eof(&mut x);
        let idx = run.seen().opens[0].0;
        assert_eq!(
            run.seen().closes,
            vec![(
                idx,
                CloseReason::FrameTooLarge {
                    len: 1_000_000,
                    max: 1024
                }
            )]
        );
        send_frame(&mut y, b"after").unwrap();
        assert_eq!(read_frame(&mut y).unwrap(), b"after");
        assert_eq!(run.seen().closes.len(), 1);
        run.stop();
    }

    #[test]
    fn signals_and_waker_reach_the_handler() {
        use signal_hook::consts::signal::SIGUSR2;
        let r = Reactor::new(ReactorConfig {
            signals: true,
            ..ReactorConfig::default()
        })
        .unwrap();
        let run = Running::start(r, echo());
        run.waker.wake().unwrap();
        run.wait_for("wake", |s| s.wakes >= 1);
        signal_hook::low_level::raise(SIGUSR2).unwrap();
        run.wait_for("signal", |s| s.signals == [SIGUSR2]);
        run.stop();
    }

    #[test]
    fn io_kinds_are_worded_without_os_text() {
        let reset = io::Error::from_raw_os_error(104);
        assert_eq!(kind_text(&reset), "connection reset by peer");
        assert_eq!(
            kind_text(&io::Error::from(io::ErrorKind::BrokenPipe)),
            "broken pipe"
        );
        let other = io::Error::other("boom");
        assert!(!kind_text(&other).contains("error"));
        let odd = io::Error::from_raw_os_error(71); // EPROTO
        assert!(!kind_text(&odd).contains("os error"), "{}", kind_text(&odd));
    }

    #[test]
    fn the_client_flush_interval_follows_the_write_budget() {
        let base = Duration::from_millis(50);
        let mut r = Reactor::new(ReactorConfig {
            client_flush_interval: base,
            client_write_budget: 1000,
            ..ReactorConfig::default()
        })
        .unwrap();
        let c = &mut r.conns;
        let t0 = c.budget_window;
        let mut t = t0;
        // One second at `rate` writes: the interval after it.
        let mut second = |c: &mut Conns, rate: u64| {
            t += Duration::from_secs(1);
            c.stats.client_writes += rate;
            c.adapt_client_interval(t);
            c.client_flush_interval.as_millis() as u64
        };
        // 5 000 clients written every 50 ms would be 100 000 writes/s: the interval doubles
        // each second until their writes fit (5 000 clients / 1 000 writes/s = 5 s, capped).
        assert_eq!(second(c, 100_000), 100);
        assert_eq!(second(c, 50_000), 200);
        assert_eq!(second(c, 25_000), 400);
        assert_eq!(
            second(c, 12_500),
            MAX_CLIENT_FLUSH_INTERVAL.as_millis() as u64
        );
        assert_eq!(
            second(c, 10_000),
            MAX_CLIENT_FLUSH_INTERVAL.as_millis() as u64
        );
        // 200 busy clients: 400 writes/s at 500 ms, under the band: it shrinks to fit.
        assert_eq!(second(c, 400), 266);
        // Near the budget it stays put.
        assert_eq!(second(c, 700), 266);
        // Quiet: back to the configured interval, never below it.
        assert_eq!(second(c, 0), 133);
        assert_eq!(second(c, 0), 66);
        assert_eq!(second(c, 0), 50);
        assert_eq!(second(c, 0), 50);
        // Less than a second since the last look: nothing changes.
        c.stats.client_writes += 1_000_000;
        c.adapt_client_interval(t + Duration::from_millis(500));
        assert_eq!(c.client_flush_interval, base);
    }

    #[test]
    fn client_output_waits_for_the_flush_interval_only_after_a_write() {
        let interval = Duration::from_millis(40);
        let mut r = Reactor::new(ReactorConfig {
            client_flush_interval: interval,
            ..ReactorConfig::default()
        })
        .unwrap();
        let addr = listen(&mut r, 1, client_opts(1 << 20));
        // Each frame in is answered with three frames out.
        let run = Running::start(
            r,
            Box::new(|io, conn, p, _| {
                for _ in 0..3 {
                    io.send(conn, p)
                }
            }),
        );
        let mut c = connect(addr);
        // Nothing was written to this client yet: the answer goes at once.
        let sent = Instant::now();
        send_frame(&mut c, b"ping").unwrap();
        for _ in 0..3 {
            assert_eq!(read_frame(&mut c).unwrap(), b"ping");
        }
        let first = Instant::now();
        assert!(
            first - sent < Duration::from_millis(30),
            "a quiet client waited {:?}",
            first - sent
        );
        // Written to just now: the next answers wait for the rest of the interval, together,
        // and arrive without more traffic (the poll wakes for them).
        send_frame(&mut c, b"pong").unwrap();
        send_frame(&mut c, b"pang").unwrap();
        let mut got = Vec::new();
        for _ in 0..6 {
            got.push(read_frame(&mut c).unwrap());
        }
        assert_eq!(got[0], b"pong");
        assert_eq!(got[5], b"pang");
        let waited = first.elapsed();
        assert!(
            waited >= Duration::from_millis(30),
            "written {waited:?} after the last write, inside the interval"
        );
        assert!(
            waited < Duration::from_secs(2),
            "written only after {waited:?}"
        );
        let r = run.stop();
        assert_eq!(r.stats().writes, 2, "nine frames, two writes");
    }
}

#[cfg(test)]
mod layered_tests {
    //! Connections with transport layers through the real reactor: a TLS + snappy listener
    //! and blocking clients that stack the same layers over a std socket.
    use super::*;
    use crate::frame::write_frame;
    use crate::transport::tls;
    use std::io::Read;
    use std::net::TcpStream as StdStream;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    const CERT: &[u8] = include_bytes!("../../conf/rsa.crt");
    const KEY: &[u8] = include_bytes!("../../conf/rsa.key");

    /// Echoes every frame; records closes.
    struct Echo {
        closes: Arc<Mutex<Vec<CloseReason>>>,
        stop: Arc<AtomicBool>,
    }

    impl Handler for Echo {
        fn on_open(&mut self, _: &mut dyn Io, _: Instant, _: ConnId, _: Origin, _: SocketAddr) {}
        fn on_frame(&mut self, io: &mut dyn Io, _: Instant, conn: ConnId, payload: &[u8]) {
            io.send(conn, payload);
        }
        fn on_close(&mut self, _: &mut dyn Io, _: Instant, _: ConnId, reason: &CloseReason) {
            self.closes.lock().unwrap().push(reason.clone());
        }
        fn on_tick(&mut self, _: &mut dyn Io, _: Instant, _: SystemTime) {}
        fn next_deadline(&self) -> Option<Instant> {
            Some(Instant::now() + Duration::from_millis(20))
        }
        fn on_signal(&mut self, _: &mut dyn Io, _: Instant, _: i32) {}
        fn should_stop(&self) -> bool {
            self.stop.load(Ordering::SeqCst)
        }
    }

    /// A blocking client with the same layers.
    struct Client {
        s: StdStream,
        stack: Stack,
        plain: Vec<u8>,
    }

    impl Client {
        fn connect(addr: SocketAddr, spec: &StackSpec) -> Client {
            let s = StdStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut c = Client {
                s,
                stack: spec.build(1).unwrap().unwrap(),
                plain: Vec::new(),
            };
            c.send_raw(&[]);
            c
        }

        fn send_raw(&mut self, plain: &[u8]) {
            let mut wire = Vec::new();
            self.stack.write(plain, &mut wire).unwrap();
            self.s.write_all(&wire).unwrap();
        }

        fn send_frame(&mut self, payload: &[u8]) {
            let mut f = Vec::new();
            write_frame(&mut f, payload);
            self.send_raw(&f);
        }

        fn read_frame(&mut self) -> Vec<u8> {
            let mut buf = vec![0; 65536];
            loop {
                if self.plain.len() >= 4 {
                    let len = u32::from_le_bytes(self.plain[..4].try_into().unwrap()) as usize;
                    if self.plain.len() >= 4 + len {
                        let f = self.plain[4..4 + len].to_vec();
                        self.plain.drain(..4 + len);
                        return f;
                    }
                }
                let n = self.s.read(&mut buf).unwrap();
                assert!(n > 0, "closed while waiting for a frame");
                let mut answer = Vec::new();
                self.stack
                    .read(&buf[..n], &mut self.plain, &mut answer)
                    .unwrap();
                self.s.write_all(&answer).unwrap();
            }
        }
    }

    fn specs() -> (StackSpec, StackSpec) {
        let server = StackSpec {
            tls_server: Some(tls::server_config(CERT, KEY).unwrap()),
            snappy: true,
            ..StackSpec::default()
        };
        let client = StackSpec {
            tls_client: Some((tls::client_config(CERT).unwrap(), "localhost".into())),
            snappy: true,
            ..StackSpec::default()
        };
        (client, server)
    }

    #[test]
    fn tls_and_snappy_clients_round_trip_and_a_plain_one_is_refused_alone() {
        let (client_spec, server_spec) = specs();
        let mut r = Reactor::new(ReactorConfig::default()).unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let opts = LinkOpts {
            kind: LinkKind::Client {
                output_limit: 16 << 20,
            },
            max_frame: 8 << 20,
            group: 0,
            heartbeat: None,
        };
        let addr = r.add_listener_with(l, 1, opts, server_spec).unwrap();
        let closes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut h = Echo {
            closes: closes.clone(),
            stop: stop.clone(),
        };
        let t = std::thread::spawn(move || {
            r.run(&mut h).unwrap();
            r
        });
        let mut a = Client::connect(addr, &client_spec);
        let mut b = Client::connect(addr, &client_spec);
        // A plain client speaking frames where TLS is expected.
        let mut plain = StdStream::connect(addr).unwrap();
        plain
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut f = Vec::new();
        write_frame(&mut f, b"\x01\x00hello");
        plain.write_all(&f).unwrap();
        let big: Vec<u8> = (0..1_000_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
            .collect();
        for p in [&b"hi"[..], &[], &big] {
            a.send_frame(p);
            b.send_frame(p);
            assert_eq!(a.read_frame(), p);
            assert_eq!(b.read_frame(), p);
        }
        // The plain client got a TLS alert, then the end; the others were not disturbed.
        let mut rest = Vec::new();
        let _ = plain.read_to_end(&mut rest);
        assert!(
            !rest.is_empty() && rest[0] == 0x15,
            "an alert record: {rest:?}"
        );
        a.send_frame(b"still here");
        assert_eq!(a.read_frame(), b"still here");
        let deadline = Instant::now() + Duration::from_secs(5);
        while closes.lock().unwrap().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::SeqCst);
        let r = t.join().unwrap();
        let closes = closes.lock().unwrap();
        assert_eq!(closes.len(), 1, "{closes:?}");
        assert!(
            matches!(&closes[0], CloseReason::Transport(why) if why.starts_with("tls")),
            "{closes:?}"
        );
        let st = r.stats();
        assert!(st.bytes_in > 0 && st.bytes_out > 0);
        // Snappy took the compressible megabyte down on the wire both ways.
        assert!(st.bytes_out < 2 * 1_000_000, "{} bytes out", st.bytes_out);
    }

    /// A running reactor serving WebSocket clients on its HTTP endpoint: its address, the
    /// flag that stops it, the closes its handler saw, and its thread.
    type WsReactor = (
        SocketAddr,
        Arc<AtomicBool>,
        Arc<Mutex<Vec<CloseReason>>>,
        std::thread::JoinHandle<Reactor>,
    );

    /// A reactor with an echo handler and a WebSocket route on its HTTP endpoint.
    fn ws_reactor(tls: bool, snappy: bool) -> WsReactor {
        ws_reactor_with(tls, snappy, None)
    }

    /// [`ws_reactor`], serving the files under `web_root` too.
    fn ws_reactor_with(tls: bool, snappy: bool, web_root: Option<std::path::PathBuf>) -> WsReactor {
        let mut r = Reactor::new(ReactorConfig::default()).unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = r.add_http(l).unwrap();
        let opts = LinkOpts {
            kind: LinkKind::Client {
                output_limit: 16 << 20,
            },
            max_frame: 8 << 20,
            group: 0,
            heartbeat: None,
        };
        let cfg = tls.then(|| tls::server_config(CERT, KEY).unwrap());
        r.serve_ws(1, opts, snappy, cfg);
        if let Some(root) = web_root {
            r.serve_files(root);
        }
        let closes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut h = Echo {
            closes: closes.clone(),
            stop: stop.clone(),
        };
        let t = std::thread::spawn(move || {
            r.run(&mut h).unwrap();
            r
        });
        (addr, stop, closes, t)
    }

    fn ws_spec(addr: SocketAddr, tls: bool, snappy: bool) -> StackSpec {
        StackSpec {
            tls_client: tls.then(|| (tls::client_config(CERT).unwrap(), "127.0.0.1".to_string())),
            ws_client: Some((addr.to_string(), Some(format!("http://{addr}/")))),
            snappy,
            ..StackSpec::default()
        }
    }

    #[test]
    fn a_client_that_never_finishes_its_tls_handshake_is_closed_after_the_timeout() {
        let (_, server_spec) = specs();
        let mut r = Reactor::new(ReactorConfig {
            handshake_timeout: Duration::from_millis(300),
            ..ReactorConfig::default()
        })
        .unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let opts = LinkOpts {
            kind: LinkKind::Client {
                output_limit: 1 << 20,
            },
            max_frame: 1 << 20,
            group: 0,
            heartbeat: None,
        };
        let addr = r.add_listener_with(l, 1, opts, server_spec).unwrap();
        let closes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut h = Echo {
            closes: closes.clone(),
            stop: stop.clone(),
        };
        let t = std::thread::spawn(move || {
            r.run(&mut h).unwrap();
            r
        });
        // Half a ClientHello, then silence; and a well-behaved client beside it.
        let mut stuck = StdStream::connect(addr).unwrap();
        stuck
            .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            .unwrap();
        let (client_spec, _) = specs();
        let mut good = Client::connect(addr, &client_spec);
        good.send_frame(b"ok");
        assert_eq!(good.read_frame(), b"ok");
        stuck
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let started = Instant::now();
        let mut rest = Vec::new();
        let _ = stuck.read_to_end(&mut rest);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "closed by the timeout"
        );
        good.send_frame(b"still");
        assert_eq!(good.read_frame(), b"still", "the other client is untouched");
        stop.store(true, Ordering::SeqCst);
        t.join().unwrap();
        let closes = closes.lock().unwrap();
        assert_eq!(closes.len(), 1, "{closes:?}");
        assert!(
            matches!(&closes[0], CloseReason::Transport(w) if w.contains("handshake not finished")),
            "{closes:?}"
        );
    }

    #[test]
    fn websocket_clients_on_the_http_endpoint_with_and_without_tls_and_snappy() {
        for (tls, snappy) in [(false, false), (false, true), (true, false), (true, true)] {
            let (addr, stop, closes, t) = ws_reactor(tls, snappy);
            let spec = ws_spec(addr, tls, snappy);
            let mut a = Client::connect(addr, &spec);
            let mut b = Client::connect(addr, &spec);
            let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
            for p in [&b"hello"[..], &[], &big] {
                a.send_frame(p);
                b.send_frame(p);
                assert_eq!(a.read_frame(), p, "tls {tls} snappy {snappy}");
                assert_eq!(b.read_frame(), p, "tls {tls} snappy {snappy}");
            }
            if !tls {
                // The endpoint still answers its own requests, and refuses a bad upgrade.
                let mut m = StdStream::connect(addr).unwrap();
                m.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                let mut body = String::new();
                m.read_to_string(&mut body).unwrap();
                assert!(body.starts_with("HTTP/1.1 200"), "{body}");
                let mut bad = StdStream::connect(addr).unwrap();
                bad.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n")
                    .unwrap();
                let mut answer = String::new();
                bad.read_to_string(&mut answer).unwrap();
                assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
            }
            stop.store(true, Ordering::SeqCst);
            let r = t.join().unwrap();
            assert_eq!(r.stats().accepted, 2);
            assert!(
                closes.lock().unwrap().is_empty(),
                "{:?}",
                closes.lock().unwrap()
            );
        }
    }

    /// One request to the HTTP endpoint at `addr` (over TLS with `tls`): the whole answer.
    fn http_get(addr: SocketAddr, tls: bool, request: &str) -> Vec<u8> {
        let mut sock = StdStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut answer = Vec::new();
        if tls {
            let cfg = tls::client_config(CERT).unwrap();
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let conn = rustls::ClientConnection::new(cfg, name).unwrap();
            let mut s = rustls::StreamOwned::new(conn, sock);
            s.write_all(request.as_bytes()).unwrap();
            // The server closes after its answer (without close_notify, which is fine here).
            let _ = s.read_to_end(&mut answer);
        } else {
            sock.write_all(request.as_bytes()).unwrap();
            sock.read_to_end(&mut answer).unwrap();
        }
        answer
    }

    #[test]
    fn static_files_are_served_under_the_web_root_only_with_and_without_tls() {
        let dir = std::env::temp_dir().join(format!("goworld-rs-webroot-{}", std::process::id()));
        let root = dir.join("web");
        std::fs::create_dir_all(root.join("client/dist")).unwrap();
        std::fs::create_dir_all(root.join("client/node_modules/x")).unwrap();
        std::fs::write(root.join("index.html"), "<h1>world</h1>").unwrap();
        std::fs::write(root.join("client/dist/index.js"), "export {};").unwrap();
        std::fs::write(root.join("client/node_modules/x/a.js"), "x").unwrap();
        std::fs::write(root.join(".env"), "secret").unwrap();
        std::fs::write(dir.join("secret.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(dir.join("secret.txt"), root.join("leak.txt")).unwrap();
        let big = vec![b'a'; crate::webroot::MAX_FILE as usize + 1];
        std::fs::write(root.join("big.js"), big).unwrap();
        for tls in [false, true] {
            let (addr, stop, _, t) = ws_reactor_with(tls, false, Some(root.clone()));
            let get = |path: &str| {
                let a = http_get(
                    addr,
                    tls,
                    &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"),
                );
                String::from_utf8_lossy(&a).into_owned()
            };
            let page = get("/");
            assert!(page.starts_with("HTTP/1.1 200"), "tls {tls}: {page}");
            assert!(
                page.contains("Content-Type: text/html; charset=utf-8\r\n"),
                "{page}"
            );
            assert!(page.contains("Cache-Control: no-cache\r\n"), "{page}");
            assert!(page.ends_with("\r\n\r\n<h1>world</h1>"), "{page}");
            let js = get("/client/dist/index.js?v=1");
            assert!(js.starts_with("HTTP/1.1 200"), "{js}");
            assert!(js.contains("Content-Type: text/javascript"), "{js}");
            assert!(js.ends_with("export {};"), "{js}");
            let head = http_get(addr, tls, "HEAD /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
            let head = String::from_utf8_lossy(&head).into_owned();
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(head.contains("Content-Length: 14\r\n"), "{head}");
            assert!(head.ends_with("\r\n\r\n"), "{head}");
            for path in [
                "/nope.html",
                "/client",
                "/client/node_modules/x/a.js",
                "/.env",
                "/../secret.txt",
                "/%2e%2e/secret.txt",
                "/leak.txt",
                "/big.js",
            ] {
                let a = get(path);
                assert!(a.starts_with("HTTP/1.1 404"), "tls {tls} {path}: {a}");
            }
            // The endpoint's own paths keep their meaning, and WebSocket clients still come in.
            assert!(get("/status").starts_with("HTTP/1.1 200"));
            assert!(get("/metrics").contains("goworld_uptime_seconds"));
            let mut c = Client::connect(addr, &ws_spec(addr, tls, false));
            c.send_frame(b"hi");
            assert_eq!(c.read_frame(), b"hi");
            stop.store(true, Ordering::SeqCst);
            t.join().unwrap();
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
