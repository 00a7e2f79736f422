//! The gate: owns client connections (reference §1.6, §2.6, §2.7).
//!
//! [`GateService`] accepts clients, gives each a client ID and a boot entity ID, and tells the
//! boot entity's dispatcher. From a client it accepts only what GoWorld lets clients send
//! (11 CALL_ENTITY_METHOD_FROM_CLIENT, 12 SYNC_POSITION_YAW_FROM_CLIENT, 2001 heartbeat); any
//! other type, a malformed message or an oversized frame closes that client with one log
//! line. Calls go on with the client ID appended; position syncs are batched per dispatcher
//! every `position_sync_interval_ms`, and only for the client's owner entity: a sync for any
//! other entity is dropped and counted ([`GateService::sync_dropped_not_owner`]). From dispatchers it forwards 1001–1499 to the named
//! client as they are (header and all), keeps filter properties (1010/1011) in a
//! [`FilterIndex`], fans 1501 out verbatim to each matching client once (found by range
//! queries, not a scan), and regroups 1502 per client.
//!
//! Beyond GoWorld, a client silent for `heartbeat_check_interval` (when set) or sending more
//! than its message or byte rate limit is closed with one log line and counted
//! ([`GateService::closed_by_limits`]); the [`limits`] module decides.
//!
//! A pure state machine behind the reactor's [`Handler`]: no sockets, no clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use goworld_common::displink::DispatcherLinks;
use goworld_common::id::{dispatcher_for_entity, ClientId, EntityId, FastMap, IdGen, WallClock};
use goworld_common::peerlog::WindowLog;
use goworld_common::proto::{self, mt, peek, peek_type, ClientMsg, Msg, Route};
use goworld_common::reactor::{CloseReason, ConnId, Handler, Io, Origin};
use goworld_common::{sig, INTERNAL_PROTOCOL_VERSION};
use log::{debug, info, warn};

pub mod filter;
pub mod limits;
pub mod run;

pub use filter::{filter_matches, FilterIndex};
pub use limits::{ClientLimits, ClosedByLimits};
use limits::{Limiter, Verdict};

/// What the gate needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    pub gate_id: u16,
    pub desired_dispatchers: u16,
    /// How often client position syncs are flushed to the dispatchers.
    pub position_sync_interval: Duration,
    /// Wall time at start, for stamping client and boot entity IDs.
    pub clock: WallClock,
    /// Heartbeat check and flood limits per client.
    pub limits: ClientLimits,
}

/// Events the gate reports to its shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateEvent {
    /// Every dispatcher link completed its handshake.
    Ready,
}

#[derive(Debug)]
struct ClientProxy {
    client_id: ClientId,
    /// The entity that owns this client: the boot entity until a player entity takes over.
    owner: EntityId,
    peer: SocketAddr,
    /// The connect notice has been sent (it waits until the gate is ready).
    announced: bool,
    /// A position sync for an entity other than `owner` was dropped (and logged once).
    sent_foreign_sync: bool,
    /// A player entity for this client has arrived (1002 with isPlayer): `owner` is bound
    /// to it on its game. Until then `owner` is the boot entity the game is creating.
    bound: bool,
}

/// The gate's state machine.
pub struct GateService {
    s: Settings,
    links: DispatcherLinks,
    ids: IdGen,
    clients: FastMap<ConnId, ClientProxy>,
    by_id: FastMap<ClientId, ConnId>,
    /// Every client's filter properties (1010/1011), indexed for 1501.
    filters: FilterIndex,
    /// Clients accepted before the gate was ready, in order.
    waiting: Vec<ConnId>,
    /// Position records from clients, per dispatcher (index = dispatcher ID - 1).
    sync_out: Vec<Vec<u8>>,
    next_sync_flush: Option<Instant>,
    /// Position syncs dropped because their entity was not the client's owner.
    sync_dropped_not_owner: u64,
    ready_reported: bool,
    events: Vec<GateEvent>,
    /// Heartbeats and flood limits of the clients.
    limiter: Limiter,
    /// Refused packets from each dispatcher (index = dispatcher ID - 1), a few lines per
    /// window and counted after that.
    dispatcher_logs: Vec<WindowLog>,
    /// Clients closed for what they sent or did not read (a transport refusal, an oversized
    /// frame, output past its limit): a few lines per window in full, the rest counted, so
    /// a flood of bad connections costs a bounded number of lines.
    client_problems: WindowLog,
    /// Clients that left before their boot entity's player create arrived, with that boot
    /// entity, which was told on close: when the create arrives it needs no second notice.
    /// Entries live for the time a create is in flight; at most [`DEPARTED_UNBOUND_MAX`].
    departed_unbound: FastMap<ClientId, EntityId>,
    /// Clients accepted since start.
    served: u64,
    stop: bool,
}

/// Most clients remembered in `departed_unbound`. When it is full it is cleared: a client
/// forgotten there costs only a second disconnect notice, which its dispatcher counts.
const DEPARTED_UNBOUND_MAX: usize = 4096;

/// The window of the per-dispatcher logs of refused packets.
const LOG_WINDOW: Duration = Duration::from_secs(60);

/// Listener tag for client connections.
pub const CLIENT_LISTENER: u32 = 0;

impl GateService {
    /// The summary line of the client problems counted and not logged in a window.
    fn log_client_problems(&self, summary: &str) {
        warn!(
            "gate{}: more clients closed for what they sent in the last {} s: {summary}",
            self.s.gate_id,
            LOG_WINDOW.as_secs()
        );
    }

    /// A gate with no connections yet; `ids` generates client and boot entity IDs.
    pub fn new(s: Settings, ids: IdGen) -> GateService {
        let n = s.desired_dispatchers.max(1);
        let limiter = Limiter::new(s.limits);
        GateService {
            links: DispatcherLinks::new(n, &format!("gate{}", s.gate_id)),
            sync_out: vec![Vec::new(); usize::from(n)],
            s,
            ids,
            clients: FastMap::default(),
            by_id: FastMap::default(),
            filters: FilterIndex::new(),
            waiting: Vec::new(),
            next_sync_flush: None,
            sync_dropped_not_owner: 0,
            ready_reported: false,
            events: Vec::new(),
            limiter,
            dispatcher_logs: vec![WindowLog::new(LOG_WINDOW); usize::from(n)],
            client_problems: WindowLog::new(LOG_WINDOW),
            departed_unbound: FastMap::default(),
            served: 0,
            stop: false,
        }
    }

    /// Number of connected clients.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// True once every dispatcher link completed its handshake.
    pub fn is_ready(&self) -> bool {
        self.links.all_ready()
    }

    /// How many client position syncs were dropped because they named an entity other than the
    /// client's owner (beyond GoWorld: a client moves only its own player entity).
    pub fn sync_dropped_not_owner(&self) -> u64 {
        self.sync_dropped_not_owner
    }

    /// How many clients were closed for silence (`heartbeat_check_interval`) or for going over
    /// `client_msg_rate_limit` or `client_byte_rate_limit` (beyond GoWorld).
    pub fn closed_by_limits(&self) -> ClosedByLimits {
        self.limiter.closed()
    }

    /// Takes the events reported since the last call.
    pub fn take_events(&mut self) -> Vec<GateEvent> {
        std::mem::take(&mut self.events)
    }

    fn announce(&mut self, io: &mut dyn Io, conn: ConnId) {
        let Some(c) = self.clients.get_mut(&conn) else {
            return;
        };
        c.announced = true;
        let p = Msg::NotifyClientConnected {
            client_id: c.client_id,
            boot_eid: c.owner,
            gate_id: None,
        }
        .to_payload();
        let owner = c.owner;
        self.links.send_by_entity(io, &owner, &p);
    }

    /// Dispatcher `d` went away after its handshake: what it held for the clients it carries
    /// (every message to a client takes the client's dispatcher) may be lost, which would
    /// leave those clients with a wrong view of the world (an entity never created, a
    /// destroy never seen). They are closed, with one line, so they log in again to a
    /// consistent state; the other clients are not affected.
    fn close_clients_of_dispatcher(&mut self, io: &mut dyn Io, d: u16) {
        let n = self.links.count();
        let what = format!(
            "the clients dispatcher{d} carried: messages to them may have been lost with it"
        );
        let reason = format!("dispatcher{d}, which carried this client's messages, went down");
        self.close_clients_where(io, &what, &reason, |c| {
            dispatcher_for_entity(&c.client_id, n) == d
        });
    }

    /// Closes every client `doomed` picks, with one warn line (`what`) if there are any, and
    /// `reason` as each connection's close reason.
    fn close_clients_where(
        &mut self,
        io: &mut dyn Io,
        what: &str,
        reason: &str,
        doomed: impl Fn(&ClientProxy) -> bool,
    ) {
        let conns: Vec<ConnId> = (self.clients.iter())
            .filter(|(_, c)| doomed(c))
            .map(|(conn, _)| *conn)
            .collect();
        if conns.is_empty() {
            return;
        }
        warn!("gate{}: closing {} {what}", self.s.gate_id, conns.len());
        for conn in conns {
            io.close(conn, reason);
        }
    }

    fn close_client(&mut self, io: &mut dyn Io, conn: ConnId, reason: &str) {
        if let Some(c) = self.clients.get(&conn) {
            warn!(
                "gate{}: client {} ({}) closed: {reason}",
                self.s.gate_id, c.client_id, c.peer
            );
        }
        io.close(conn, reason);
    }

    /// Handles one frame from a client. Errors close the client.
    fn handle_client_packet(
        &mut self,
        io: &mut dyn Io,
        now: Instant,
        conn: ConnId,
        p: &[u8],
    ) -> Result<(), String> {
        let t = peek_type(p)
            .ok_or_else(|| format!("frame of {} bytes has no message type", p.len()))?;
        if !proto::client_may_send(t) {
            return Err(format!(
                "message type {t} ({}) may not be sent by a client",
                proto::msg_name(t)
            ));
        }
        let (client_id, owner) = self
            .clients
            .get(&conn)
            .map(|c| (c.client_id, c.owner))
            .ok_or("unknown client")?;
        match t {
            mt::CALL_ENTITY_METHOD_FROM_CLIENT => match Msg::decode(p) {
                Ok(Msg::CallEntityMethodFromClient {
                    eid,
                    client_id: None,
                    ..
                }) => {
                    let d = dispatcher_for_entity(&eid, self.links.count());
                    self.links
                        .send2(io, d, p, peek::appended_client_id(&client_id));
                }
                Ok(_) => return Err("CALL_ENTITY_METHOD_FROM_CLIENT with trailing bytes".into()),
                Err(e) => return Err(e.to_string()),
            },
            mt::SYNC_POSITION_YAW_FROM_CLIENT => {
                let Some(rec) = peek::client_sync_record(p) else {
                    return Err(format!(
                        "SYNC_POSITION_YAW_FROM_CLIENT of {} bytes, expected {}",
                        p.len(),
                        peek::SYNC_FROM_ONE_CLIENT_LEN
                    ));
                };
                let eid = rec.entity_id();
                if eid != owner {
                    // Beyond GoWorld: a client moves only the entity that owns it. Not an error:
                    // syncs sent just before an owner change arrive after it.
                    self.sync_dropped_not_owner += 1;
                    let c = self.clients.get_mut(&conn).expect("looked up above");
                    if !c.sent_foreign_sync {
                        c.sent_foreign_sync = true;
                        debug!(
                            "gate{}: client {client_id} sent a position sync for {eid}, not its owner {owner}; dropped (counted, logged once per client)",
                            self.s.gate_id
                        );
                    }
                    return Ok(());
                }
                let d = usize::from(dispatcher_for_entity(&eid, self.links.count()) - 1);
                self.sync_out[d].extend_from_slice(rec.as_bytes());
                if self.next_sync_flush.is_none() {
                    self.next_sync_flush = Some(now + self.s.position_sync_interval);
                }
            }
            _ => {
                if peek::body_len(p) != 0 {
                    return Err(format!("heartbeat with {} extra bytes", peek::body_len(p)));
                }
            }
        }
        Ok(())
    }

    fn flush_syncs(&mut self, io: &mut dyn Io) {
        self.next_sync_flush = None;
        for d in 0..self.sync_out.len() {
            if self.sync_out[d].is_empty() {
                continue;
            }
            let records = std::mem::take(&mut self.sync_out[d]);
            self.links
                .send2(io, d as u16 + 1, &peek::SYNC_FROM_CLIENT_HEAD, &records);
        }
    }

    /// Handles one frame from a dispatcher.
    fn handle_dispatcher_packet(
        &mut self,
        io: &mut dyn Io,
        disp: u16,
        p: &[u8],
    ) -> Result<(), String> {
        let t = peek_type(p).ok_or("payload shorter than its type")?;
        match proto::route(t) {
            Route::ToClient => {
                let (gate_id, client_id) = peek::client_header(p)
                    .ok_or_else(|| format!("{} too short", proto::msg_name(t)))?;
                if gate_id != self.s.gate_id {
                    return Err(format!(
                        "{} for gate{gate_id} arrived at gate{}",
                        proto::msg_name(t),
                        self.s.gate_id
                    ));
                }
                let conn = self.by_id.get(&client_id).copied();
                match t {
                    mt::KICK_CLIENT => {
                        let reason = match Msg::decode(p).map_err(|e| e.to_string())? {
                            Msg::ToClient {
                                msg: ClientMsg::KickClient { reason },
                                ..
                            } => reason,
                            _ => unreachable!("decoded by type"),
                        };
                        if let Some(c) = conn {
                            self.close_client(io, c, &format!("closed by its game: {reason}"));
                        }
                    }
                    mt::SET_CLIENTPROXY_FILTER_PROP | mt::CLEAR_CLIENTPROXY_FILTER_PROPS => {
                        let msg = Msg::decode(p).map_err(|e| e.to_string())?;
                        let Some(c) = conn.filter(|c| self.clients.contains_key(c)) else {
                            return Ok(());
                        };
                        match msg {
                            Msg::ToClient {
                                msg: ClientMsg::SetClientProxyFilterProp { key, val },
                                ..
                            } => self.filters.set(c, key, val),
                            _ => self.filters.clear(c),
                        }
                    }
                    _ => {
                        if t == mt::CREATE_ENTITY_ON_CLIENT
                            && peek::created_is_player(p) == Some(true)
                        {
                            let eid = peek::created_entity_id(p)
                                .ok_or("CREATE_ENTITY_ON_CLIENT too short")?;
                            match conn.and_then(|c| self.clients.get_mut(&c)) {
                                Some(c) => {
                                    c.owner = eid;
                                    c.bound = true;
                                }
                                None if self.departed_unbound.get(&client_id) == Some(&eid) => {
                                    // The boot entity of a client that left at once: it was
                                    // told when the client left.
                                    self.departed_unbound.remove(&client_id);
                                }
                                None => {
                                    // The client left before its player arrived: tell the new owner.
                                    self.departed_unbound.remove(&client_id);
                                    let n = Msg::NotifyClientDisconnected {
                                        owner_eid: eid,
                                        client_id,
                                    }
                                    .to_payload();
                                    self.links.send_by_entity(io, &eid, &n);
                                }
                            }
                        }
                        match conn {
                            Some(c) => io.send(c, p),
                            None => debug!(
                                "{} for departed client {client_id} dropped",
                                proto::msg_name(t)
                            ),
                        }
                    }
                }
            }
            Route::FilteredClients => {
                let Msg::CallFilteredClients { op, key, val, .. } =
                    Msg::decode(p).map_err(|e| e.to_string())?
                else {
                    unreachable!("decoded by type")
                };
                if !key.is_empty() && !self.filters.has_key(&key) {
                    debug!("CALL_FILTERED_CLIENTS: no client has filter key {key:?}");
                }
                // Each client holds one value per key, so each match comes once.
                for conn in self.filters.query(op, &key, &val) {
                    io.send(conn, p);
                }
            }
            Route::SyncOnClients => {
                // The dispatcher routed it here by its gateid; only its presence matters now.
                peek::gate_id(p).ok_or("SYNC_POSITION_YAW_ON_CLIENTS too short")?;
                let records = peek::sync_on_clients_records(p)
                    .ok_or("SYNC_POSITION_YAW_ON_CLIENTS is not a whole number of records")?;
                let mut per_client: FastMap<ConnId, Vec<u8>> = FastMap::default();
                for rec in records {
                    if let Some(&conn) = self.by_id.get(&rec.client_id()) {
                        per_client
                            .entry(conn)
                            .or_insert_with(|| peek::SYNC_TO_CLIENT_HEAD.to_vec())
                            .extend_from_slice(rec.record().as_bytes());
                    }
                }
                for (conn, out) in per_client {
                    io.send(conn, &out);
                }
            }
            Route::GateService if t == mt::CLIENT_OWNERS_GONE => {
                let Msg::ClientOwnersGone { game_id, owners } =
                    Msg::decode(p).map_err(|e| e.to_string())?
                else {
                    unreachable!("decoded by type")
                };
                let gone: std::collections::HashSet<EntityId> = owners.into_iter().collect();
                let what = format!(
                    "clients whose player lived on game{game_id}, which went down (dispatcher{disp}'s share)"
                );
                let reason = format!("its player's game{game_id} went down");
                self.close_clients_where(io, &what, &reason, |c| gone.contains(&c.owner));
            }
            _ => {
                return Err(format!(
                    "message type {t} ({}) is not for a gate",
                    proto::msg_name(t)
                ))
            }
        }
        Ok(())
    }
}

/// The reactor group of client links (see [`pause_rule`]).
pub const CLIENT_LINKS: u8 = 1;
/// The reactor group of dispatcher links.
pub const DISPATCHER_LINKS: u8 = 2;

/// The gate's [`PauseRule`](goworld_common::reactor::PauseRule). Clients are not read while
/// anything is backed up: their calls feed the dispatcher links, and while client output is
/// over its budget their answers would add to it. Dispatchers are read unless client output
/// is over its budget (their frames feed the clients, and clients drain on their own): in
/// particular a backed-up dispatcher link does not stop the gate reading that dispatcher, so
/// the two never wait for each other, and what the gate reads from a dispatcher adds next to
/// nothing to its output to dispatchers.
pub fn pause_rule(reader: u8, _reader_congested: bool, congested: u8) -> bool {
    reader != DISPATCHER_LINKS || congested == goworld_common::reactor::CLIENT_OUTPUT_GROUP
}

impl Handler for GateService {
    fn on_open(
        &mut self,
        io: &mut dyn Io,
        now: Instant,
        conn: ConnId,
        origin: Origin,
        peer: SocketAddr,
    ) {
        match origin {
            Origin::Dialed { dial } => {
                let disp = dial as u16;
                info!(
                    "gate{}: connected to dispatcher{disp} at {peer}",
                    self.s.gate_id
                );
                self.links.opened(disp, conn);
                let p = Msg::SetGateId {
                    gate_id: self.s.gate_id,
                    version: Some(INTERNAL_PROTOCOL_VERSION),
                }
                .to_payload();
                self.links.send_handshake(io, disp, &p);
                // GoWorld does not acknowledge SET_GATE_ID: TCP order makes it first.
                self.links.ready(io, disp);
                if self.links.all_ready() {
                    if !self.ready_reported {
                        self.ready_reported = true;
                        self.events.push(GateEvent::Ready);
                    }
                    for c in std::mem::take(&mut self.waiting) {
                        self.announce(io, c);
                    }
                }
            }
            Origin::Accepted { .. } => {
                let now_secs = self.s.clock.secs(now);
                let client_id = self.ids.next(now_secs);
                let owner = self.ids.next(now_secs);
                debug!(
                    "gate{}: client {client_id} connected from {peer}",
                    self.s.gate_id
                );
                self.clients.insert(
                    conn,
                    ClientProxy {
                        client_id,
                        owner,
                        peer,
                        announced: false,
                        sent_foreign_sync: false,
                        bound: false,
                    },
                );
                self.served += 1;
                self.by_id.insert(client_id, conn);
                self.filters.add_client(conn);
                self.limiter.opened(conn, now);
                if self.links.all_ready() {
                    self.announce(io, conn);
                } else {
                    self.waiting.push(conn);
                }
            }
        }
    }

    fn on_frame(&mut self, io: &mut dyn Io, now: Instant, conn: ConnId, payload: &[u8]) {
        if let Some(disp) = self.links.dispatcher_of(conn) {
            if let Err(reason) = self.handle_dispatcher_packet(io, disp, payload) {
                // A few in full per window; on_tick sums up the rest when the window ends.
                let log = &mut self.dispatcher_logs[usize::from(disp - 1)];
                if log.note(now, "bad packet") {
                    warn!(
                        "gate{}: bad packet from dispatcher{disp} skipped: {reason}",
                        self.s.gate_id
                    );
                }
            }
            return;
        }
        match self.limiter.frame(conn, now, payload.len()) {
            Verdict::Pass => {}
            Verdict::Closing => return,
            Verdict::Close(reason) => return self.close_client(io, conn, &reason),
        }
        if let Err(reason) = self.handle_client_packet(io, now, conn, payload) {
            self.close_client(io, conn, &reason);
        }
    }

    fn on_close(&mut self, io: &mut dyn Io, now: Instant, conn: ConnId, reason: &CloseReason) {
        let was_ready = self
            .links
            .dispatcher_of(conn)
            .is_some_and(|d| self.links.is_ready(d));
        if let Some(d) = self.links.closed(conn) {
            warn!(
                "gate{}: lost dispatcher{d} ({reason}); reconnecting",
                self.s.gate_id
            );
            if let Some(summary) = self.dispatcher_logs[usize::from(d - 1)].take_summary() {
                warn!(
                    "gate{}: bad packets from dispatcher{d} skipped since the last report: {summary}",
                    self.s.gate_id
                );
            }
            if was_ready {
                self.close_clients_of_dispatcher(io, d);
            }
            return;
        }
        let Some(c) = self.clients.remove(&conn) else {
            return;
        };
        self.by_id.remove(&c.client_id);
        self.filters.remove_client(conn);
        self.limiter.closed_conn(conn);
        self.waiting.retain(|w| *w != conn);
        let problem = match reason {
            CloseReason::FrameTooLarge { .. } => Some("frame too large"),
            CloseReason::OutputLimit { .. } => Some("output limit"),
            CloseReason::Transport(_) => Some("transport"),
            _ => None,
        };
        match problem {
            Some(kind) => {
                if let Some(summary) = self.client_problems.roll(now) {
                    self.log_client_problems(&summary);
                }
                if self.client_problems.note(now, kind) {
                    warn!(
                        "gate{}: client {} ({}) closed: {reason}",
                        self.s.gate_id, c.client_id, c.peer
                    )
                }
            }
            // Closes the gate asked for were logged with their reason when asked. A client
            // leaving is ordinary (and one that connects and leaves at a high rate must not
            // cost a line each): debug.
            None => debug!(
                "gate{}: client {} ({}) left: {reason}",
                self.s.gate_id, c.client_id, c.peer
            ),
        }
        if c.announced {
            let p = Msg::NotifyClientDisconnected {
                owner_eid: c.owner,
                client_id: c.client_id,
            }
            .to_payload();
            self.links.send_by_entity(io, &c.owner, &p);
            if !c.bound {
                // Its boot entity's create is still on the way here, and would otherwise be
                // taken for a new owner to tell (see handle_dispatcher_packet).
                if self.departed_unbound.len() >= DEPARTED_UNBOUND_MAX {
                    debug!(
                        "gate{}: forgetting {} clients that left before their boot entity arrived",
                        self.s.gate_id,
                        self.departed_unbound.len()
                    );
                    self.departed_unbound.clear();
                }
                self.departed_unbound.insert(c.client_id, c.owner);
            }
        }
    }

    fn on_tick(&mut self, io: &mut dyn Io, now: Instant, _wall: SystemTime) {
        if self.next_sync_flush.is_some_and(|t| now >= t) {
            self.flush_syncs(io);
        }
        if self.limiter.next_deadline().is_some_and(|t| now >= t) {
            for (conn, reason) in self.limiter.silent(now) {
                if let Some(c) = self.clients.get(&conn) {
                    // An ordinary event (a dead mobile link), not a misbehaving client.
                    info!(
                        "gate{}: client {} ({}) closed: {reason}",
                        self.s.gate_id, c.client_id, c.peer
                    );
                }
                io.close(conn, &reason);
            }
        }
        for (i, log) in self.dispatcher_logs.iter_mut().enumerate() {
            if let Some(summary) = log.roll(now) {
                warn!(
                    "gate{}: bad packets from dispatcher{} skipped in the last {} s: {summary}",
                    self.s.gate_id,
                    i + 1,
                    LOG_WINDOW.as_secs()
                );
            }
        }
        if let Some(summary) = self.client_problems.roll(now) {
            self.log_client_problems(&summary);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let logs = (self.dispatcher_logs.iter())
            .chain([&self.client_problems])
            .filter_map(WindowLog::summary_due);
        logs.chain(self.next_sync_flush)
            .chain(self.limiter.next_deadline())
            .min()
    }

    fn on_signal(&mut self, io: &mut dyn Io, _now: Instant, signal: i32) {
        match signal {
            sig::SIGINT | sig::SIGTERM => {
                info!(
                    "gate{}: signal {signal}, closing {} clients and stopping ({} clients served since start)",
                    self.s.gate_id,
                    self.clients.len(),
                    self.served
                );
                let conns: Vec<ConnId> = self.clients.keys().copied().collect();
                for c in conns {
                    io.close(c, "gate stopping");
                }
                self.stop = true;
            }
            _ => info!(
                "gate{}: signal {signal} ignored (hot swap signals belong to games)",
                self.s.gate_id
            ),
        }
    }

    fn should_stop(&self) -> bool {
        self.stop
    }

    fn metrics(&self, m: &mut goworld_common::http::Metrics) {
        m.gauge("clients", "Clients connected.", self.clients.len() as f64);
        let c = self.limiter.closed();
        m.counters(
            "clients_closed_by_limit",
            "Clients closed for a limit, by limit.",
            &[
                (&[("limit", "heartbeat")], c.heartbeat),
                (&[("limit", "msg_rate")], c.msg_rate),
                (&[("limit", "byte_rate")], c.byte_rate),
            ],
        );
        m.counters(
            "dropped",
            "Packets not delivered, by reason.",
            &[(&[("reason", "sync_not_owner")], self.sync_dropped_not_owner)],
        );
    }

    fn status(&self, s: &mut goworld_common::http::Status) {
        s.str("kind", "gate")
            .num("id", f64::from(self.s.gate_id))
            .str(
                "state",
                if self.links.all_ready() {
                    "ready"
                } else {
                    "waiting"
                },
            )
            .num("clients", self.clients.len() as f64);
    }
}

#[cfg(test)]
mod tests;
