//! The dispatcher: routes packets between games and gates (reference §1.3–1.7).
//!
//! [`Dispatcher`] is a pure state machine behind the reactor's [`Handler`] trait: it knows
//! which game holds each entity hashed to this dispatcher, holds an entity's packets while it
//! loads or migrates (keeping only its newest position sync) and a game's packets while it is
//! frozen, keeps the service registry (kvreg), places boot entities round-robin and
//! "anywhere" entities on the least loaded game, and decides deployment readiness. It reads the type and the routing key of each packet and
//! forwards the original bytes; it decodes fully only the handshakes it answers.
//!
//! It never touches sockets or the clock: time comes in as arguments, output goes out
//! through [`Io`]. The binary (`main.rs`) only parses flags, loads config, binds and runs.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use goworld_common::config::DispatcherConfig;
use goworld_common::id::{EntityId, FastMap, FastSet};
use goworld_common::peerlog::{KindCounts, WindowLog};
use goworld_common::proto::{self, mt, peek, peek_type, Msg, Route};
use goworld_common::reactor::{CloseReason, ConnId, Handler, Io, Origin};
use goworld_common::{sig, INTERNAL_PROTOCOL_VERSION};
use log::{debug, info, warn};

/// How long an entity's calls are held while it loads (GoWorld: 1 min).
const LOAD_HOLD: Duration = Duration::from_secs(60);
/// How long an entity's calls are held while it migrates (GoWorld: 1 min).
const MIGRATE_HOLD: Duration = Duration::from_secs(60);
/// How long a fresh dispatcher holds packets for unknown entities while games re-announce.
const STARTUP_HOLD: Duration = Duration::from_secs(30);
/// How long packets for an entity this dispatcher does not know wait for it to be announced.
/// A call can overtake the entity's NOTIFY_CREATE_ENTITY: the creating game sends that here,
/// and tells other entities about the new one through other dispatchers (a service call
/// answered by another game, say), whose calls back may arrive first. GoWorld drops them.
pub const UNKNOWN_ENTITY_GRACE: Duration = Duration::from_secs(5);
/// At most this many unknown entities wait at once; packets for more are reported and not
/// delivered (a peer sending to random IDs cannot grow the dispatcher without bound).
pub const UNKNOWN_ENTITY_GRACE_MAX: usize = 100_000;
/// How often expired holds are swept when no traffic releases them.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// The window of [`WindowLog`]s: a peer (or the entity table) gets a few lines in full per
/// window, and one summary of the rest.
const LOG_WINDOW: Duration = Duration::from_secs(60);

/// What the dispatcher needs to know about its deployment and limits.
#[derive(Debug, Clone)]
pub struct Settings {
    pub disp_id: u16,
    pub desired_games: u16,
    pub desired_gates: u16,
    pub entity_hold_limit: usize,
    pub game_hold_limit: usize,
    pub freeze_hold_timeout: Duration,
}

impl Settings {
    /// Settings for dispatcher `disp_id` from its config section and `[deployment]`.
    pub fn from_config(
        disp_id: u16,
        cfg: &DispatcherConfig,
        desired_games: u16,
        desired_gates: u16,
    ) -> Settings {
        Settings {
            disp_id,
            desired_games,
            desired_gates,
            entity_hold_limit: cfg.entity_hold_limit,
            game_hold_limit: cfg.game_hold_limit,
            freeze_hold_timeout: Duration::from_secs(cfg.freeze_hold_timeout_s),
        }
    }
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    /// Connected, no SET_GAME_ID / SET_GATE_ID yet.
    Unknown,
    Game(u16),
    Gate(u16),
}

/// Packets held for one entity or one game, with a limit that is reported, never silent.
#[derive(Debug, Default)]
struct Held {
    queue: VecDeque<Vec<u8>>,
    /// Packets refused because the queue was full, reported in one line when the hold ends.
    /// Boxed: almost no hold ever reaches its limit.
    over: Option<Box<OverLimit>>,
}

/// What a hold refused past its limit: a count per message kind (type, and method for
/// calls).
#[derive(Debug)]
struct OverLimit {
    limit: usize,
    kinds: KindCounts,
}

impl Held {
    /// Holds `payload`, or counts it past `limit`; false when it was refused.
    fn push(&mut self, limit: usize, payload: &[u8]) -> bool {
        if self.queue.len() < limit {
            self.queue.push_back(payload.to_vec());
            return true;
        }
        let over = self.over.get_or_insert_with(|| {
            Box::new(OverLimit {
                limit,
                kinds: KindCounts::default(),
            })
        });
        over.kinds.add(&describe(payload));
        false
    }

    /// Packets held and refused.
    fn total(&self) -> u64 {
        self.queue.len() as u64 + self.over.as_ref().map_or(0, |o| o.kinds.total())
    }

    /// The refused packets, for the hold's one report line: `None` if nothing was refused.
    fn over_limit_report(&self) -> Option<String> {
        let o = self.over.as_ref()?;
        Some(format!(
            "{} packets over the hold limit of {} were not delivered ({})",
            o.kinds.total(),
            o.limit,
            o.kinds
        ))
    }
}

/// Packets for an entity this dispatcher does not know (yet).
#[derive(Debug)]
struct Waiting {
    /// Reported and dropped at this time; `None` until start-up ends.
    until: Option<Instant>,
    held: Held,
    /// The game that died while the entity was migrating away from it: if the entity does not
    /// turn up elsewhere before `until`, the gates hear that its game is gone (1503) then.
    gone_with: Option<u16>,
}

/// A REAL_MIGRATE on its way to its target game.
#[derive(Debug)]
struct InTransit {
    source: u16,
    target: u16,
    payload: Vec<u8>,
}

/// One position record as the gate sends it: entity ID, x, y, z, yaw.
type SyncRecord = [u8; proto::SYNC_RECORD_LEN];

/// An entity's hold while it loads or migrates.
#[derive(Debug)]
struct EntityHold {
    /// Released at this time at the latest.
    until: Instant,
    /// The calls, delivered in order when the hold ends.
    held: Held,
    /// The newest position sync that arrived during the hold. Positions are state, not
    /// events: a newer record replaces an older one, and the survivor goes to the entity's
    /// (possibly new) game after the held calls.
    sync: Option<SyncRecord>,
    /// The game a migrating entity is going to (MIGRATE_REQUEST's space game): that game may
    /// claim it (a restored game that took it before it froze) although the table still
    /// names the game it left.
    migrating_to: Option<u16>,
}

#[derive(Debug)]
struct EntityInfo {
    game: u16,
    /// Set while the entity loads or migrates.
    /// Boxed: most entities are never held, and the table stays small (24 bytes an entry).
    hold: Option<Box<EntityHold>>,
}

#[derive(Debug)]
struct GameInfo {
    conn: Option<ConnId>,
    ban_boot: bool,
    /// Frozen (hot swap) until this time: packets are held, the game is not declared dead.
    frozen_until: Option<Instant>,
    held: Held,
    /// Last reported CPU load, plus what placements added since (GoWorld's LBC heap).
    load: f64,
}

impl GameInfo {
    /// Declared dead (its link was lost, not for a hot swap) since it last connected: its
    /// entities here left the routing table, its players' clients were closed and its
    /// registry claims released, so what it announces when it connects again is refused.
    /// (`handle_game_gone` is the only place a known game loses its connection without
    /// being frozen.)
    fn declared_dead(&self) -> bool {
        self.conn.is_none() && self.frozen_until.is_none()
    }
}

/// The dispatcher's state machine.
pub struct Dispatcher {
    s: Settings,
    peers: FastMap<ConnId, Peer>,
    games: BTreeMap<u16, GameInfo>,
    gates: BTreeMap<u16, ConnId>,
    entities: FastMap<EntityId, EntityInfo>,
    /// Entities with a hold, so sweeping and `next_deadline` never scan the whole table.
    held_entities: FastSet<EntityId>,
    kvreg: BTreeMap<String, String>,
    deployment_ready: bool,
    boot_rr: usize,
    /// Client-connected notices waiting for a game that takes boot entities.
    boot_waiting: VecDeque<(Vec<u8>, u16)>,
    /// Position syncs from gates regrouped per game, flushed every tick.
    sync_to_games: BTreeMap<u16, Vec<u8>>,
    /// Position sync records dropped because their entity is not in the routing table.
    sync_dropped_unknown_entity: u64,
    /// Packets refused by a full hold (each hold reports its own in one line when it ends).
    over_hold_limit: u64,
    /// Set until every desired game has announced its entities (or this time passes).
    startup_until: Option<Instant>,
    /// Packets for entities not announced yet, waiting for their NOTIFY_CREATE_ENTITY (or a
    /// SET_GAME_ID listing them): until start-up ends (`None`), or until the time given
    /// ([`UNKNOWN_ENTITY_GRACE`] after the first packet); then reported, not delivered.
    unknown: FastMap<EntityId, Waiting>,
    /// REAL_MIGRATEs this dispatcher relayed that their target has not confirmed yet
    /// (MT_MIGRATE_ARRIVED): if the target dies first, the entity goes back to the game it
    /// left, rebuilt from the same bytes.
    in_transit: FastMap<EntityId, InTransit>,
    /// Packets not delivered because [`UNKNOWN_ENTITY_GRACE_MAX`] entities were waiting.
    unknown_refused: u64,
    /// NOTIFY_CLIENT_DISCONNECTED notices whose entity never turned up (it was destroyed
    /// before the notice arrived): expected, not delivered, counted.
    disconnects_for_gone_entities: u64,
    /// Packets for entities that never turned up, or whose hold expired, reported a few per
    /// window: clients calling made-up IDs must not cost a line each.
    entity_log: WindowLog,
    /// Refused (not fatal) packets per game or gate connection, a few lines per window.
    peer_logs: FastMap<ConnId, WindowLog>,
    started: bool,
    games_seen: HashSet<u16>,
    next_sweep: Option<Instant>,
    stop: bool,
}

/// A short description of a packet for log lines: its type name and, for calls, the method.
fn describe(payload: &[u8]) -> String {
    let t = peek_type(payload).unwrap_or(0);
    let name = proto::msg_name(t);
    if matches!(
        t,
        mt::CALL_ENTITY_METHOD | mt::CALL_ENTITY_METHOD_FROM_CLIENT
    ) {
        if let Ok(
            Msg::CallEntityMethod { method, .. } | Msg::CallEntityMethodFromClient { method, .. },
        ) = Msg::decode(payload)
        {
            return format!("{name} {method}");
        }
    }
    name.to_string()
}

/// Ends connection `conn`'s log window if it is over, with its summary line.
fn roll_peer_log(conn: ConnId, log: &mut WindowLog, now: Instant) {
    if let Some(summary) = log.roll(now) {
        warn!(
            "connection {conn}: refused packets in the last {} s: {summary}",
            LOG_WINDOW.as_secs()
        );
    }
}

/// Removes `eid`'s records from the pending sync batch for `game`; returns the newest.
fn take_batched_sync(
    batches: &mut BTreeMap<u16, Vec<u8>>,
    game: u16,
    eid: &EntityId,
) -> Option<SyncRecord> {
    let batch = batches.get_mut(&game)?;
    let newest: SyncRecord = *peek::sync_records(batch)
        .expect("a batch holds whole records")
        .rfind(|r| r.entity_id() == *eid)?
        .as_bytes();
    let left = peek::retain_sync_records(batch, |r| r.entity_id() != *eid)
        .expect("a batch holds whole records");
    if left == 0 {
        batches.remove(&game);
    }
    Some(newest)
}

/// Checks a handshake's process ID and internal protocol version; a wrong one closes the
/// connection with one log line naming both.
fn accept_handshake(
    io: &mut dyn Io,
    conn: ConnId,
    kind: &str,
    id: u16,
    version: Option<u16>,
) -> bool {
    let problem = if version != Some(INTERNAL_PROTOCOL_VERSION) {
        format!("speaks internal protocol version {version:?}, this dispatcher speaks {INTERNAL_PROTOCOL_VERSION}")
    } else if id == 0 {
        "has ID 0".to_string()
    } else {
        return true;
    };
    warn!("connection {conn}: {kind}{id} {problem}; closing");
    io.close(conn, &format!("{kind}{id} {problem}"));
    false
}

/// Why a server peer's packet is refused (its connection is closed, with this reason).
#[derive(Debug)]
enum BadPacket {
    /// Shorter than its message type.
    NoType,
    /// Shorter than its type's fields.
    TooShort(u16),
    /// Sync records whose length is not a whole number of records.
    PartialRecords { msgtype: u16, len: usize },
    /// Anything before the peer's SET_GAME_ID or SET_GATE_ID.
    BeforeHandshake(u16),
    /// A message the dispatcher decodes (a handshake, KVREG_REGISTER, ...) that does not.
    Decode(proto::DecodeError),
}

impl std::fmt::Display for BadPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadPacket::NoType => write!(f, "payload shorter than its type"),
            BadPacket::TooShort(t) => write!(f, "{} too short", proto::msg_name(*t)),
            BadPacket::PartialRecords { msgtype, len } => write!(
                f,
                "{} length {len} is not a whole number of records",
                proto::msg_name(*msgtype)
            ),
            BadPacket::BeforeHandshake(t) => write!(
                f,
                "{} before SET_GAME_ID or SET_GATE_ID",
                proto::msg_name(*t)
            ),
            BadPacket::Decode(e) => e.fmt(f),
        }
    }
}

impl Dispatcher {
    /// A dispatcher with no connections yet.
    pub fn new(s: Settings) -> Dispatcher {
        Dispatcher {
            s,
            peers: FastMap::default(),
            games: BTreeMap::new(),
            gates: BTreeMap::new(),
            entities: FastMap::default(),
            held_entities: FastSet::default(),
            kvreg: BTreeMap::new(),
            deployment_ready: false,
            boot_rr: 0,
            boot_waiting: VecDeque::new(),
            sync_to_games: BTreeMap::new(),
            sync_dropped_unknown_entity: 0,
            over_hold_limit: 0,
            startup_until: None,
            started: false,
            games_seen: HashSet::new(),
            disconnects_for_gone_entities: 0,
            entity_log: WindowLog::new(LOG_WINDOW),
            peer_logs: FastMap::default(),
            next_sweep: None,
            unknown: FastMap::default(),
            in_transit: FastMap::default(),
            unknown_refused: 0,
            stop: false,
        }
    }

    /// True once every desired game and gate has connected (sticky, as in GoWorld).
    pub fn is_deployment_ready(&self) -> bool {
        self.deployment_ready
    }

    /// The game an entity is on, as this dispatcher knows it.
    pub fn entity_game(&self, eid: &EntityId) -> Option<u16> {
        self.entities.get(eid).map(|e| e.game)
    }

    /// IDs of the games connected now.
    pub fn connected_games(&self) -> Vec<u16> {
        self.games
            .iter()
            .filter(|(_, g)| g.conn.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// IDs of the gates connected now.
    pub fn connected_gates(&self) -> Vec<u16> {
        self.gates.keys().copied().collect()
    }

    /// The service registry.
    pub fn kvreg(&self) -> &BTreeMap<String, String> {
        &self.kvreg
    }

    /// How many position sync records from gates were dropped because this dispatcher does
    /// not know their entity (not announced, destroyed, or its game is down).
    pub fn sync_dropped_unknown_entity(&self) -> u64 {
        self.sync_dropped_unknown_entity
    }

    /// REAL_MIGRATEs relayed by this dispatcher that their target has not confirmed yet.
    pub fn migrations_in_transit(&self) -> usize {
        self.in_transit.len()
    }

    /// True while entity `eid`'s calls are held (it is loading or migrating).
    pub fn is_held(&self, eid: &EntityId) -> bool {
        self.held_entities.contains(eid)
    }

    /// How many packets holds refused because they were full (each hold reports its own,
    /// by kind, in one log line when it ends).
    pub fn over_hold_limit(&self) -> u64 {
        self.over_hold_limit
    }

    /// How many NOTIFY_CLIENT_DISCONNECTED notices were not delivered because their entity
    /// never turned up: it was destroyed before the notice arrived (a client that left while
    /// its player entity changed gets one notice for the old owner and one for the new).
    pub fn disconnects_for_gone_entities(&self) -> u64 {
        self.disconnects_for_gone_entities
    }

    /// Entities this dispatcher holds packets for while it waits for their announcement.
    pub fn unknown_entities_waiting(&self) -> usize {
        self.unknown.len()
    }

    /// Logs (at `level`) a packet this dispatcher did not deliver to an entity, in full a few
    /// times per [`LOG_WINDOW`] and counted by `kind` after that: clients calling made-up IDs,
    /// or a game asking for holds it never ends, must not cost a line per packet.
    fn entity_problem(
        &mut self,
        now: Instant,
        level: log::Level,
        kind: &str,
        line: impl FnOnce() -> String,
    ) {
        self.roll_entity_log(now);
        if self.entity_log.note(now, kind) {
            log::log!(level, "{}", line());
        }
    }

    fn roll_entity_log(&mut self, now: Instant) {
        if let Some(summary) = self.entity_log.roll(now) {
            warn!(
                "packets for unknown or held entities not delivered in the last {} s: {summary}",
                LOG_WINDOW.as_secs()
            );
        }
    }

    /// Logs a packet a game or gate sent that was refused without closing the connection,
    /// a few lines per connection and [`LOG_WINDOW`], counted by `kind` after that.
    fn peer_problem(
        &mut self,
        now: Instant,
        conn: ConnId,
        kind: &str,
        line: impl FnOnce() -> String,
    ) {
        let log = (self.peer_logs)
            .entry(conn)
            .or_insert_with(|| WindowLog::new(LOG_WINDOW));
        roll_peer_log(conn, log, now);
        if log.note(now, kind) {
            warn!("{}", line());
        }
    }

    /// Summarises the windows of the entity and peer logs that are over.
    fn roll_logs(&mut self, now: Instant) {
        self.roll_entity_log(now);
        for (conn, log) in self.peer_logs.iter_mut() {
            roll_peer_log(*conn, log, now);
        }
    }

    /// The earliest time a log window owes its summary.
    fn log_summary_due(&self) -> Option<Instant> {
        let peers = self.peer_logs.values().filter_map(WindowLog::summary_due);
        peers.chain(self.entity_log.summary_due()).min()
    }

    fn ensure_started(&mut self, now: Instant) {
        if !self.started {
            self.started = true;
            self.startup_until = Some(now + STARTUP_HOLD);
        }
    }

    // ---- sending -------------------------------------------------------------------------

    /// Sends (or holds) a packet for game `game_id`; `tail` is appended to `payload`.
    fn send_game(
        &mut self,
        io: &mut dyn Io,
        now: Instant,
        game_id: u16,
        payload: &[u8],
        tail: &[u8],
    ) {
        let limit = self.s.game_hold_limit;
        let Some(g) = self.games.get_mut(&game_id) else {
            self.entity_problem(now, log::Level::Warn, "game unknown", || {
                format!(
                    "game{game_id} is unknown; {} not delivered",
                    describe(payload)
                )
            });
            return;
        };
        let frozen = g.frozen_until.is_some_and(|t| now < t);
        match g.conn {
            Some(conn) if !frozen => io.send2(conn, payload, tail),
            _ => {
                let held = if tail.is_empty() {
                    g.held.push(limit, payload)
                } else {
                    let mut p = payload.to_vec();
                    p.extend_from_slice(tail);
                    g.held.push(limit, &p)
                };
                if !held {
                    self.over_hold_limit += 1;
                }
            }
        }
    }

    /// Sends what was held for game `game_id` (frozen or away) on `conn`, in order, with one
    /// line for what its hold refused.
    fn flush_game_held(&mut self, io: &mut dyn Io, game_id: u16, conn: ConnId) {
        let g = self.games.get_mut(&game_id).expect("known game");
        let held = std::mem::take(&mut g.held);
        if let Some(report) = held.over_limit_report() {
            warn!("game{game_id}: hold ended; {report}");
        }
        for p in held.queue {
            io.send(conn, &p);
        }
    }

    fn send_gate(&mut self, io: &mut dyn Io, gate_id: u16, payload: &[u8]) {
        match self.gates.get(&gate_id) {
            Some(&conn) => io.send(conn, payload),
            None => debug!(
                "gate{gate_id} is not connected; {} for its client not delivered",
                describe(payload)
            ),
        }
    }

    fn broadcast_games(&mut self, io: &mut dyn Io, now: Instant, except: u16, payload: &[u8]) {
        let ids: Vec<u16> = self
            .games
            .keys()
            .copied()
            .filter(|&g| g != except)
            .collect();
        for g in ids {
            self.send_game(io, now, g, payload, &[]);
        }
    }

    /// Routes a packet to the game of entity `eid`, holding it while the entity is held or
    /// while the dispatcher does not know the entity yet after a restart.
    fn send_entity(&mut self, io: &mut dyn Io, now: Instant, eid: EntityId, payload: &[u8]) {
        let limit = self.s.entity_hold_limit;
        match self.entities.get_mut(&eid) {
            Some(info) => {
                if let Some(hold) = &mut info.hold {
                    if now < hold.until {
                        if !hold.held.push(limit, payload) {
                            self.over_hold_limit += 1;
                        }
                        return;
                    }
                    self.release_entity(io, now, eid);
                    let game = self.entities[&eid].game;
                    self.send_game(io, now, game, payload, &[]);
                    return;
                }
                // The hot path: one lookup, then out.
                let game = info.game;
                self.send_game(io, now, game, payload, &[]);
            }
            None => {
                if let Some(w) = self.unknown.get_mut(&eid) {
                    if !w.held.push(limit, payload) {
                        self.over_hold_limit += 1;
                    }
                    return;
                }
                // During start-up every entity of a restarted dispatcher may be unknown, so
                // only later waits are capped.
                let starting = self.startup_until.is_some_and(|t| now < t);
                if !starting && self.unknown.len() >= UNKNOWN_ENTITY_GRACE_MAX {
                    self.unknown_refused += 1;
                    if self.unknown_refused.is_power_of_two() {
                        warn!(
                            "entity {eid} is unknown and {UNKNOWN_ENTITY_GRACE_MAX} unknown entities are already waiting; {} not delivered ({} such packets so far)",
                            describe(payload),
                            self.unknown_refused
                        );
                    }
                    return;
                }
                let mut held = Held::default();
                held.push(limit, payload);
                let until = (!starting).then(|| now + UNKNOWN_ENTITY_GRACE);
                self.unknown.insert(
                    eid,
                    Waiting {
                        until,
                        held,
                        gone_with: None,
                    },
                );
                self.next_sweep.get_or_insert(now + SWEEP_INTERVAL);
            }
        }
    }

    /// Ends an entity's hold: its held packets go to its game, in order, and then its newest
    /// position sync joins this tick's sync batch for that game.
    fn release_entity(&mut self, io: &mut dyn Io, now: Instant, eid: EntityId) {
        let Some(info) = self.entities.get_mut(&eid) else {
            return;
        };
        let Some(hold) = info.hold.take() else {
            return;
        };
        self.held_entities.remove(&eid);
        let EntityHold { held, sync, .. } = *hold;
        let game = info.game;
        if let Some(report) = held.over_limit_report() {
            warn!("entity {eid}: hold ended; {report}");
        }
        for p in held.queue {
            self.send_game(io, now, game, &p, &[]);
        }
        if let Some(rec) = sync {
            // Flushed on the tick, so after the packets just sent (or held for the game).
            self.batch_sync(eid, game, &rec);
        }
    }

    /// Adds one position record of `eid` to the batch for `game`; game 0 (an entity held
    /// before any game announced it) counts as unknown.
    fn batch_sync(&mut self, eid: EntityId, game: u16, rec: &SyncRecord) {
        if game == 0 {
            self.count_unknown_sync(eid);
            return;
        }
        self.sync_to_games
            .entry(game)
            .or_insert_with(|| peek::SYNC_FROM_CLIENT_HEAD.to_vec())
            .extend_from_slice(rec);
    }

    fn count_unknown_sync(&mut self, eid: EntityId) {
        self.sync_dropped_unknown_entity += 1;
        let n = self.sync_dropped_unknown_entity;
        if n.is_power_of_two() {
            debug!("position sync for unknown entity {eid} dropped ({n} so far)");
        }
    }

    fn hold_entity(&mut self, eid: EntityId, until: Instant, migrating_to: Option<u16>) {
        let info = self.entities.entry(eid).or_insert(EntityInfo {
            game: 0,
            hold: None,
        });
        match &mut info.hold {
            Some(hold) => {
                hold.until = hold.until.max(until);
                hold.migrating_to = migrating_to.or(hold.migrating_to);
            }
            None => {
                // A sync still in this tick's batch would reach the game after what started the
                // hold (a migrating entity is leaving by then): it is kept for the hold instead.
                let sync = take_batched_sync(&mut self.sync_to_games, info.game, &eid);
                info.hold = Some(Box::new(EntityHold {
                    until,
                    held: Held::default(),
                    sync,
                    migrating_to,
                }));
                self.held_entities.insert(eid);
            }
        }
    }

    /// Records that `eid` lives on `game` and flushes anything held for it.
    fn set_entity_game(&mut self, io: &mut dyn Io, now: Instant, eid: EntityId, game: u16) {
        self.entities
            .entry(eid)
            .or_insert(EntityInfo { game, hold: None })
            .game = game;
        self.release_entity(io, now, eid);
        if let Some(w) = self.unknown.remove(&eid) {
            if let Some(report) = w.held.over_limit_report() {
                warn!("entity {eid}: announced after a wait; {report}");
            }
            for p in w.held.queue {
                self.send_entity(io, now, eid, &p);
            }
        }
    }

    // ---- placement -----------------------------------------------------------------------

    /// The least loaded connected game (GoWorld's LBC heap, without its dead entries).
    fn choose_game(&mut self) -> Option<u16> {
        let (&id, g) = self
            .games
            .iter_mut()
            .filter(|(_, g)| g.conn.is_some() || g.frozen_until.is_some())
            .min_by(|a, b| a.1.load.total_cmp(&b.1.load))?;
        g.load += 0.1;
        Some(id)
    }

    fn boot_games(&self) -> Vec<u16> {
        self.games
            .iter()
            .filter(|(_, g)| !g.ban_boot && (g.conn.is_some() || g.frozen_until.is_some()))
            .map(|(id, _)| *id)
            .collect()
    }

    fn choose_boot_game(&mut self) -> Option<u16> {
        let boot = self.boot_games();
        if boot.is_empty() {
            return None;
        }
        let g = boot[self.boot_rr % boot.len()];
        self.boot_rr += 1;
        Some(g)
    }

    fn flush_boot_waiting(&mut self, io: &mut dyn Io, now: Instant) {
        let held = self.boot_waiting.len();
        while !self.boot_waiting.is_empty() {
            let Some(game) = self.choose_boot_game() else {
                return;
            };
            let (p, gate) = self.boot_waiting.pop_front().expect("not empty");
            self.send_boot(io, now, game, &p, gate);
        }
        if held > 0 {
            info!("{held} held client-connected notices delivered");
        }
    }

    /// Sends a client-connected notice (checked to be whole) to `game`, which creates the
    /// boot entity. The entity is routed to that game from now on, before the game announces
    /// it: the client's calls and its disconnect notice then follow the notice on the same
    /// link, instead of waiting for the announcement (or, for a client that left at once,
    /// for an entity already destroyed).
    fn send_boot(&mut self, io: &mut dyn Io, now: Instant, game: u16, p: &[u8], gate: u16) {
        let boot = peek::boot_entity_id(p).expect("NOTIFY_CLIENT_CONNECTED length checked");
        self.entities
            .entry(boot)
            .or_insert(EntityInfo { game, hold: None });
        self.send_game(io, now, game, p, &peek::appended_gate_id(gate));
    }

    // ---- handshakes ----------------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    fn handle_set_game_id(
        &mut self,
        io: &mut dyn Io,
        now: Instant,
        conn: ConnId,
        game_id: u16,
        is_reconnect: bool,
        is_restore: bool,
        ban_boot: bool,
        entities: Vec<EntityId>,
        version: Option<u16>,
    ) {
        if !accept_handshake(io, conn, "game", game_id, version) {
            return;
        }
        info!(
            "game{game_id} connected on {conn}: reconnect={is_reconnect} restore={is_restore} ban_boot_entity={ban_boot} entities={}",
            entities.len()
        );
        self.peers.insert(conn, Peer::Game(game_id));
        let declared_dead = self
            .games
            .get(&game_id)
            .is_some_and(GameInfo::declared_dead);
        let old = self.games.get(&game_id).and_then(|g| g.conn);
        if let Some(old) = old {
            warn!("game{game_id}: connection {old} replaced by {conn}");
            self.peers.remove(&old);
            io.close(old, "replaced by a new connection of the same game");
        }
        let g = self.games.entry(game_id).or_insert(GameInfo {
            conn: None,
            ban_boot,
            frozen_until: None,
            held: Held::default(),
            load: 0.0,
        });
        g.conn = Some(conn);
        g.ban_boot = ban_boot;
        g.frozen_until = None;
        self.games_seen.insert(game_id);

        let mut rejected = Vec::new();
        let mut accepted = Vec::new();
        let nil = goworld_common::id::nil_space_id(game_id);
        let entities = if declared_dead && entities.iter().any(|e| *e != nil) {
            // Beyond GoWorld (which treats a lost game link as a pause): its players were
            // disconnected and its service shards handed on when it was declared dead, so its
            // copies of them are stale: the game drops them. Its nil space is its own.
            let (keep, stale): (Vec<EntityId>, Vec<EntityId>) =
                entities.into_iter().partition(|e| *e == nil);
            warn!(
                "game{game_id} was declared dead and is back with {} entities in this dispatcher's shard: refusing them (the game drops them)",
                stale.len()
            );
            rejected = stale;
            keep
        } else {
            entities
        };
        for eid in entities {
            let claimed_elsewhere = self.entities.get(&eid).is_some_and(|e| {
                let to = e.hold.as_ref().and_then(|h| h.migrating_to);
                e.game != 0 && e.game != game_id && to != Some(game_id)
            });
            if claimed_elsewhere {
                rejected.push(eid);
            } else {
                accepted.push(eid);
            }
        }
        let ack = Msg::SetGameIdAck {
            disp_id: self.s.disp_id,
            deployment_ready: self.deployment_ready,
            games: self.connected_games(),
            rejected,
            kvreg: self
                .kvreg
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            declared_dead,
        };
        io.send(conn, &ack.to_payload());

        // Everything held for the game while it was away goes out after the ack, in order,
        // then what was held for the entities it announces.
        self.flush_game_held(io, game_id, conn);
        for eid in accepted {
            self.set_entity_game(io, now, eid, game_id);
        }

        let notice = Msg::NotifyGameConnected { game_id }.to_payload();
        self.broadcast_games(io, now, game_id, &notice);
        self.end_startup_hold_if_complete(now);
        self.flush_boot_waiting(io, now);
        self.check_deployment_ready(io, now);
    }

    fn handle_set_gate_id(
        &mut self,
        io: &mut dyn Io,
        now: Instant,
        conn: ConnId,
        gate_id: u16,
        version: Option<u16>,
    ) {
        if !accept_handshake(io, conn, "gate", gate_id, version) {
            return;
        }
        info!("gate{gate_id} connected on {conn}");
        self.peers.insert(conn, Peer::Gate(gate_id));
        if let Some(old) = self.gates.insert(gate_id, conn) {
            warn!("gate{gate_id}: connection {old} replaced by {conn}");
            self.peers.remove(&old);
            io.close(old, "replaced by a new connection of the same gate");
        }
        // On each game's link this comes after any earlier NOTIFY_GATE_DISCONNECTED and
        // before anything about the new instance's clients.
        let p = Msg::NotifyGateConnected { gate_id }.to_payload();
        self.broadcast_games(io, now, 0, &p);
        self.check_deployment_ready(io, now);
    }

    fn check_deployment_ready(&mut self, io: &mut dyn Io, now: Instant) {
        if self.deployment_ready {
            return;
        }
        let gates = self.gates.len();
        let games = self
            .games
            .values()
            .filter(|g| g.conn.is_some() || g.frozen_until.is_some())
            .count();
        if gates < usize::from(self.s.desired_gates) || games < usize::from(self.s.desired_games) {
            info!(
                "deployment: {games}/{} games, {gates}/{} gates",
                self.s.desired_games, self.s.desired_gates
            );
            return;
        }
        self.deployment_ready = true;
        info!("deployment ready: {games} games, {gates} gates");
        let p = Msg::NotifyDeploymentReady.to_payload();
        self.broadcast_games(io, now, 0, &p);
    }

    fn end_startup_hold_if_complete(&mut self, now: Instant) {
        let all_seen = (1..=self.s.desired_games).all(|g| self.games_seen.contains(&g));
        let expired = self.startup_until.is_some_and(|t| now >= t);
        if !(all_seen || expired) || self.startup_until.take().is_none() {
            return;
        }
        let waited: Vec<EntityId> = (self.unknown.iter())
            .filter(|(_, w)| w.until.is_none())
            .map(|(id, _)| *id)
            .collect();
        for eid in waited {
            // Entities announced since were flushed by set_entity_game; these stayed unknown.
            let held = self.unknown.remove(&eid).expect("listed").held;
            self.unknown_expired(now, eid, held, "after every game announced its entities");
        }
    }

    /// The packets held for `eid`, which never turned up, are not delivered. Disconnect
    /// notices alone are expected (the entity was destroyed before its notice arrived): they
    /// are counted and logged at debug. Anything else is reported, a few lines per window.
    fn unknown_expired(&mut self, now: Instant, eid: EntityId, held: Held, when: &str) {
        let Some(first) = held.queue.front() else {
            return;
        };
        let notices_only = held.over.is_none()
            && (held.queue.iter()).all(|p| peek_type(p) == Some(mt::NOTIFY_CLIENT_DISCONNECTED));
        if notices_only {
            self.disconnects_for_gone_entities += held.total();
            debug!("entity {eid} is gone ({when}): its client's disconnect notice was for an entity already destroyed");
            return;
        }
        let kind = format!("unknown entity: {}", describe(first));
        self.entity_problem(now, log::Level::Warn, &kind, || {
            format!(
                "entity {eid} is unknown ({when}); {} packets not delivered (first: {})",
                held.total(),
                describe(first)
            )
        });
    }

    // ---- disconnects ---------------------------------------------------------------------

    /// Every gate closes the clients whose player is one of `owners` (they lived on
    /// `game_id`, which is gone).
    fn tell_gates_owners_gone(&mut self, io: &mut dyn Io, game_id: u16, owners: Vec<EntityId>) {
        let p = Msg::ClientOwnersGone { game_id, owners }.to_payload();
        for &c in self.gates.values() {
            io.send(c, &p);
        }
    }

    /// Game `target` died: the entities this dispatcher sent it that it had not confirmed go
    /// back to the games they left (rebuilt there from the same bytes), or are reported lost
    /// when those are gone too.
    fn return_in_transit_to(&mut self, io: &mut dyn Io, now: Instant, target: u16) {
        let back: Vec<EntityId> = (self.in_transit.iter())
            .filter(|(_, t)| t.target == target)
            .map(|(id, _)| *id)
            .collect();
        for eid in back {
            let mut t = self.in_transit.remove(&eid).expect("listed");
            if !self.game_is_up(now, t.source) {
                warn!(
                    "entity {eid} is lost: game{target} died before taking it and game{}, which it left, is down too",
                    t.source
                );
                continue;
            }
            warn!(
                "game{target} died before taking entity {eid}: sent back to game{}",
                t.source
            );
            peek::set_real_migrate_target_game(&mut t.payload, t.source)
                .expect("a REAL_MIGRATE in transit was read whole");
            t.target = t.source;
            self.send_game(io, now, t.source, &t.payload, &[]);
            self.in_transit.insert(eid, t);
        }
    }

    /// True while game `id` is connected, or frozen and not yet timed out.
    fn game_is_up(&self, now: Instant, id: u16) -> bool {
        self.games
            .get(&id)
            .is_some_and(|g| g.conn.is_some() || g.frozen_until.is_some_and(|t| now < t))
    }

    fn handle_game_gone(&mut self, io: &mut dyn Io, now: Instant, game_id: u16) {
        let Some(g) = self.games.get_mut(&game_id) else {
            return;
        };
        g.conn = None;
        if g.frozen_until.is_some_and(|t| now < t) {
            info!(
                "game{game_id} disconnected while frozen; holding its packets until it is restored"
            );
            return;
        }
        let held = std::mem::take(&mut g.held);
        g.frozen_until = None;
        let before = self.entities.len();
        let held_entities = &mut self.held_entities;
        let mut gone_ids = Vec::new();
        // Its entities that were migrating away (or loading there) wait like unknown
        // entities, with the calls held for them: one whose REAL_MIGRATE left before the game
        // died turns up on its new game and gets them; for the others the gates hear that
        // they are gone when the wait ends.
        let mut orphaned = Vec::new();
        self.entities.retain(|id, e| {
            let keep = e.game != game_id;
            if !keep {
                if let Some(h) = e.hold.take() {
                    held_entities.remove(id);
                    orphaned.push((*id, h.held));
                } else {
                    gone_ids.push(*id);
                }
            }
            keep
        });
        let held_for_entities: u64 = orphaned.iter().map(|(_, h)| h.total()).sum();
        let migrating = orphaned.len();
        for (id, held) in orphaned {
            let w = Waiting {
                until: Some(now + UNKNOWN_ENTITY_GRACE),
                held,
                gone_with: Some(game_id),
            };
            self.unknown.insert(id, w);
        }
        if migrating > 0 {
            self.next_sweep.get_or_insert(now + SWEEP_INTERVAL);
        }
        self.return_in_transit_to(io, now, game_id);
        // Every gate closes the clients whose player lived there (the gate knows owners;
        // each dispatcher lists the entities of its shard).
        if !gone_ids.is_empty() {
            gone_ids.sort();
            self.tell_gates_owners_gone(io, game_id, gone_ids);
        }
        if migrating > 0 {
            warn!(
                "game{game_id} is down: {} entities removed from the routing table; {migrating} of them were migrating or loading, and they and the {held_for_entities} calls held for them wait {} s in case they arrived elsewhere",
                before - self.entities.len(),
                UNKNOWN_ENTITY_GRACE.as_secs()
            );
        } else {
            info!(
                "game{game_id} is down: {} entities removed from the routing table",
                before - self.entities.len()
            );
        }
        if held.total() > 0 {
            warn!(
                "game{game_id} is down with {} held packets; they are not delivered",
                held.total()
            );
        }
        let p = Msg::NotifyGameDisconnected { game_id }.to_payload();
        self.broadcast_games(io, now, game_id, &p);
        // Beyond GoWorld: the dead game's registry claims (its service shards) are released,
        // so a live game claims and re-creates them. An empty value is "unclaimed".
        let dead = format!("game{game_id}");
        let released: Vec<String> = self
            .kvreg
            .iter()
            .filter(|(_, v)| **v == dead)
            .map(|(k, _)| k.clone())
            .collect();
        for key in released {
            info!("kvreg {key}: released, its owner game{game_id} is down");
            self.kvreg.insert(key.clone(), String::new());
            let p = Msg::KvregRegister {
                key,
                val: String::new(),
                force: true,
            }
            .to_payload();
            self.broadcast_games(io, now, game_id, &p);
        }
    }

    // ---- packet handling -----------------------------------------------------------------

    fn log_unknown_type(&mut self, now: Instant, conn: ConnId, t: u16) {
        self.peer_problem(now, conn, "unknown message type", || {
            format!("connection {conn}: unknown message type {t} skipped")
        });
    }

    /// Handles one packet from a game.
    fn handle_game_packet(
        &mut self,
        io: &mut dyn Io,
        now: Instant,
        conn: ConnId,
        game_id: u16,
        p: &[u8],
    ) -> Result<(), BadPacket> {
        let t = peek_type(p).ok_or(BadPacket::NoType)?;
        let short = || BadPacket::TooShort(t);
        match t {
            mt::NOTIFY_CREATE_ENTITY => {
                let eid = peek::entity_id(p).ok_or_else(short)?;
                self.set_entity_game(io, now, eid, game_id);
            }
            mt::NOTIFY_DESTROY_ENTITY => {
                let eid = peek::entity_id(p).ok_or_else(short)?;
                if let Some(e) = self.entities.get_mut(&eid).filter(|e| e.game == game_id) {
                    // Its calls still go to the game (which reports them); a position does not.
                    if let Some(hold) = &mut e.hold {
                        hold.sync = None;
                    }
                    self.release_entity(io, now, eid);
                    self.entities.remove(&eid);
                }
            }
            mt::KVREG_REGISTER => {
                let Msg::KvregRegister { key, val, force } =
                    Msg::decode(p).map_err(BadPacket::Decode)?
                else {
                    unreachable!("decoded by type")
                };
                let current = self.kvreg.get(&key).map(String::as_str).unwrap_or("");
                if force || current.is_empty() {
                    info!("kvreg {key} = {val} (force {force}) registered by game{game_id}");
                    self.kvreg.insert(key, val);
                    self.broadcast_games(io, now, 0, p);
                } else {
                    info!("kvreg {key} = {val} from game{game_id} refused: already {current}");
                }
            }
            mt::CALL_ENTITY_METHOD => {
                let eid = peek::entity_id(p).ok_or_else(short)?;
                self.send_entity(io, now, eid, p);
            }
            mt::CREATE_ENTITY_SOMEWHERE | mt::LOAD_ENTITY_SOMEWHERE => {
                let want = peek::somewhere_game_id(p).ok_or_else(short)?;
                let eid = peek::somewhere_entity_id(p).ok_or_else(short)?;
                if t == mt::LOAD_ENTITY_SOMEWHERE {
                    let known = self.entities.get(&eid).filter(|e| e.game != 0);
                    if let Some(info) = known {
                        let cur = info.game;
                        if want != 0 && want != cur {
                            self.peer_problem(now, conn, "load refused", || {
                                format!("load of entity {eid} on game{want} refused: it is already on game{cur}")
                            });
                            return Ok(());
                        }
                        if info.hold.is_some() {
                            // Already loading: the calls behind this load wait with the rest.
                            return Ok(());
                        }
                        // The entity may be live on its game, or being destroyed there with
                        // its last save in flight (GoWorld drops this load and loses the calls
                        // behind it). Its game answers: a live entity is announced again, a
                        // dying one is loaded back once its save is written.
                        self.hold_entity(eid, now + LOAD_HOLD, None);
                        self.send_game(io, now, cur, p, &[]);
                        return Ok(());
                    }
                }
                let target = if want == 0 {
                    self.choose_game()
                } else {
                    Some(want)
                };
                let Some(target) = target.filter(|g| self.games.contains_key(g)) else {
                    self.peer_problem(now, conn, "no game to place an entity on", || {
                        format!(
                            "{} of entity {eid}: no game to place it on (asked for game{want})",
                            proto::msg_name(t)
                        )
                    });
                    return Ok(());
                };
                self.entities
                    .entry(eid)
                    .or_insert(EntityInfo {
                        game: target,
                        hold: None,
                    })
                    .game = target;
                if t == mt::LOAD_ENTITY_SOMEWHERE {
                    self.hold_entity(eid, now + LOAD_HOLD, None);
                }
                self.send_game(io, now, target, p, &[]);
            }
            mt::MIGRATE_REQUEST => {
                let eid = peek::entity_id(p).ok_or_else(short)?;
                let to = peek::migrate_request_space_game(p).ok_or_else(short)?;
                self.hold_entity(eid, now + MIGRATE_HOLD, Some(to));
                io.send(conn, p);
            }
            mt::REAL_MIGRATE => {
                let eid = peek::entity_id(p).ok_or_else(short)?;
                let mut target = peek::real_migrate_target_game(p).ok_or_else(short)?;
                let mut payload = p.to_vec();
                if !self.game_is_up(now, target) {
                    // The target died after it was chosen: the entity goes back to the game
                    // it left (which rebuilds it from the same bytes), rather than into the
                    // queue of a game that may never return.
                    warn!(
                        "REAL_MIGRATE of entity {eid} to game{target}, which is down: sent back to game{game_id}"
                    );
                    target = game_id;
                    peek::set_real_migrate_target_game(&mut payload, target)
                        .expect("targetGame was read from this payload");
                }
                // An entity with a client migrates through its client's dispatcher, so the
                // client messages its old game sent before it are forwarded before anything its
                // new game sends the client. Either way the new game announces the entity to
                // its own dispatcher, which then releases its held calls there, and confirms
                // to this one; until then a copy is kept in case the new game dies.
                self.send_game(io, now, target, &payload, &[]);
                self.in_transit.insert(
                    eid,
                    InTransit {
                        source: game_id,
                        target,
                        payload,
                    },
                );
            }
            mt::MIGRATE_ARRIVED => {
                let eid = peek::entity_id(p).ok_or_else(short)?;
                if self
                    .in_transit
                    .get(&eid)
                    .is_some_and(|t| t.target == game_id)
                {
                    self.in_transit.remove(&eid);
                }
            }
            mt::CANCEL_MIGRATE => {
                let eid = peek::entity_id(p).ok_or_else(short)?;
                self.release_entity(io, now, eid);
            }
            mt::QUERY_SPACE_GAMEID_FOR_MIGRATE => {
                let space = peek::space_id(p).ok_or_else(short)?;
                let game = self.entities.get(&space).map(|e| e.game).unwrap_or(0);
                io.send2(conn, p, &peek::appended_game_id(game));
            }
            mt::CALL_NIL_SPACES => {
                let except = peek::except_game_id(p).ok_or_else(short)?;
                self.broadcast_games(io, now, except, p);
            }
            mt::FREEZE_CANCELLED => {
                // The game is still connected (it sent this): what was held goes out now, in
                // order, and it is not held any more.
                let g = self.games.get_mut(&game_id).expect("peer is a known game");
                g.frozen_until = None;
                warn!(
                    "game{game_id} cancelled its freeze: delivering the {} packets held for it",
                    g.held.total()
                );
                self.flush_game_held(io, game_id, conn);
            }
            mt::START_FREEZE_GAME => {
                let g = self.games.get_mut(&game_id).expect("peer is a known game");
                g.frozen_until = Some(now + self.s.freeze_hold_timeout);
                info!("game{game_id} is freezing: holding its packets");
                let ack = Msg::StartFreezeGameAck {
                    disp_id: self.s.disp_id,
                }
                .to_payload();
                io.send(conn, &ack);
            }
            mt::GAME_LBC_INFO => {
                if let Ok(Msg::GameLbcInfo { data }) = Msg::decode(p) {
                    let cp = goworld_common::msgpack::decode_exact(&data)
                        .ok()
                        .and_then(|v| v.map_get("cp").and_then(|c| c.as_f64()))
                        .unwrap_or(0.0);
                    if let Some(g) = self.games.get_mut(&game_id) {
                        g.load = cp;
                    }
                }
            }
            mt::CALL_FILTERED_CLIENTS => {
                let gates: Vec<ConnId> = self.gates.values().copied().collect();
                for c in gates {
                    io.send(c, p);
                }
            }
            mt::SYNC_POSITION_YAW_ON_CLIENTS => {
                let gate = peek::gate_id(p).ok_or_else(short)?;
                self.send_gate(io, gate, p);
            }
            _ if proto::route(t) == Route::ToClient => {
                let gate = peek::gate_id(p).ok_or_else(short)?;
                self.send_gate(io, gate, p);
            }
            _ => self.log_unknown_type(now, conn, t),
        }
        Ok(())
    }

    /// Handles one packet from a gate.
    fn handle_gate_packet(
        &mut self,
        io: &mut dyn Io,
        now: Instant,
        conn: ConnId,
        gate_id: u16,
        p: &[u8],
    ) -> Result<(), BadPacket> {
        let t = peek_type(p).ok_or(BadPacket::NoType)?;
        let short = || BadPacket::TooShort(t);
        match t {
            mt::NOTIFY_CLIENT_CONNECTED => {
                if p.len() != peek::NOTIFY_CLIENT_CONNECTED_FROM_GATE_LEN {
                    return Err(short());
                }
                match self.choose_boot_game() {
                    Some(game) => self.send_boot(io, now, game, p, gate_id),
                    None => {
                        if self.boot_waiting.is_empty() {
                            info!("no game takes boot entities yet; holding client-connected notices until one does");
                        }
                        self.boot_waiting.push_back((p.to_vec(), gate_id));
                    }
                }
            }
            mt::NOTIFY_CLIENT_DISCONNECTED | mt::CALL_ENTITY_METHOD_FROM_CLIENT => {
                let eid = peek::entity_id(p).ok_or_else(short)?;
                self.send_entity(io, now, eid, p);
            }
            mt::SYNC_POSITION_YAW_FROM_CLIENT => {
                let records = (peek::sync_records(p)).ok_or(BadPacket::PartialRecords {
                    msgtype: t,
                    len: p.len(),
                })?;
                for rec in records {
                    let eid = rec.entity_id();
                    let rec = rec.as_bytes();
                    let Some(e) = self.entities.get_mut(&eid) else {
                        self.count_unknown_sync(eid);
                        continue;
                    };
                    match &mut e.hold {
                        // Loading or migrating: keep only the newest.
                        Some(hold) if now < hold.until => {
                            hold.sync = Some(*rec);
                        }
                        Some(_) => {
                            self.release_entity(io, now, eid);
                            let game = self.entities[&eid].game;
                            self.batch_sync(eid, game, rec);
                        }
                        None => {
                            let game = e.game;
                            self.batch_sync(eid, game, rec);
                        }
                    }
                }
            }
            _ => self.log_unknown_type(now, conn, t),
        }
        Ok(())
    }

    fn flush_syncs(&mut self, io: &mut dyn Io, now: Instant) {
        if self.sync_to_games.is_empty() {
            return;
        }
        for (game, p) in std::mem::take(&mut self.sync_to_games) {
            self.send_game(io, now, game, &p, &[]);
        }
    }

    fn sweep(&mut self, io: &mut dyn Io, now: Instant) {
        let expired: Vec<EntityId> = self
            .held_entities
            .iter()
            .filter(|id| {
                self.entities
                    .get(*id)
                    .and_then(|e| e.hold.as_ref())
                    .is_some_and(|h| now >= h.until)
            })
            .copied()
            .collect();
        for eid in expired {
            self.entity_problem(now, log::Level::Info, "hold expired", || {
                format!("entity {eid}: hold expired; releasing its held calls")
            });
            self.release_entity(io, now, eid);
        }
        let dead: Vec<u16> = self
            .games
            .iter()
            .filter(|(_, g)| g.conn.is_none() && g.frozen_until.is_some_and(|t| now >= t))
            .map(|(id, _)| *id)
            .collect();
        for game_id in dead {
            let g = self.games.get_mut(&game_id).expect("listed");
            warn!(
                "game{game_id} did not come back within the freeze hold timeout; declaring it dead with {} held packets",
                g.held.total()
            );
            g.frozen_until = None;
            self.handle_game_gone(io, now, game_id);
        }
        self.roll_logs(now);
        self.end_startup_hold_if_complete(now);
        let gone: Vec<EntityId> = (self.unknown.iter())
            .filter(|(_, w)| w.until.is_some_and(|t| now >= t))
            .map(|(id, _)| *id)
            .collect();
        for eid in gone {
            let Waiting {
                held, gone_with, ..
            } = self.unknown.remove(&eid).expect("listed");
            let when = format!(
                "{} s after its first packet",
                UNKNOWN_ENTITY_GRACE.as_secs()
            );
            self.unknown_expired(now, eid, held, &when);
            if let Some(game_id) = gone_with {
                info!("entity {eid} did not turn up after game{game_id} died while it was migrating; it is gone");
                self.tell_gates_owners_gone(io, game_id, vec![eid]);
            }
        }
    }
}

/// The reactor group of game links (see [`pause_rule`]).
pub const GAME_LINKS: u8 = 1;
/// The reactor group of gate links.
pub const GATE_LINKS: u8 = 2;

/// The dispatcher's [`PauseRule`](goworld_common::reactor::PauseRule): while a link is
/// backed up, read only the backed-up links themselves, and only while everything backed up
/// is of their own kind. A game's frames feed the gates and a gate's frames feed the games,
/// so reading games while a gate is backed up (or gates while a game is) would only move the
/// backlog into this process; and a backed-up game or gate that waits for the dispatcher to
/// read it is read as soon as the other kind has drained. Gates always go on reading their
/// dispatchers (unless their clients are backed up), which is what lets the other kind drain.
pub fn pause_rule(reader: u8, reader_congested: bool, congested: u8) -> bool {
    !(reader_congested && reader == congested)
}

impl Handler for Dispatcher {
    fn on_open(
        &mut self,
        _io: &mut dyn Io,
        now: Instant,
        conn: ConnId,
        _origin: Origin,
        peer: SocketAddr,
    ) {
        self.ensure_started(now);
        debug!("connection {conn} from {peer}");
        self.peers.insert(conn, Peer::Unknown);
    }

    fn on_frame(&mut self, io: &mut dyn Io, now: Instant, conn: ConnId, payload: &[u8]) {
        self.ensure_started(now);
        let Some(&peer) = self.peers.get(&conn) else {
            return;
        };
        let result = match peer {
            Peer::Unknown => match Msg::decode(payload) {
                Ok(Msg::SetGameId {
                    game_id,
                    is_reconnect,
                    is_restore,
                    is_ban_boot_entity,
                    entities,
                    version,
                }) => {
                    io.set_group(conn, GAME_LINKS);
                    self.handle_set_game_id(
                        io,
                        now,
                        conn,
                        game_id,
                        is_reconnect,
                        is_restore,
                        is_ban_boot_entity,
                        entities,
                        version,
                    );
                    Ok(())
                }
                Ok(Msg::SetGateId { gate_id, version }) => {
                    io.set_group(conn, GATE_LINKS);
                    self.handle_set_gate_id(io, now, conn, gate_id, version);
                    Ok(())
                }
                Ok(other) => Err(BadPacket::BeforeHandshake(other.msg_type())),
                Err(e) => Err(BadPacket::Decode(e)),
            },
            Peer::Game(g) => self.handle_game_packet(io, now, conn, g, payload),
            Peer::Gate(g) => self.handle_gate_packet(io, now, conn, g, payload),
        };
        if let Err(reason) = result {
            warn!("connection {conn} ({peer:?}): bad packet: {reason}; closing it");
            io.close(conn, &format!("bad packet: {reason}"));
        }
    }

    fn on_close(&mut self, io: &mut dyn Io, now: Instant, conn: ConnId, reason: &CloseReason) {
        if let Some(summary) = self
            .peer_logs
            .remove(&conn)
            .and_then(|mut l| l.take_summary())
        {
            warn!("connection {conn}: refused packets since the last report: {summary}");
        }
        match self.peers.remove(&conn) {
            Some(Peer::Game(g)) => {
                info!("game{g} disconnected ({conn}): {reason}");
                if self.games.get(&g).and_then(|i| i.conn) == Some(conn) {
                    self.handle_game_gone(io, now, g);
                }
            }
            Some(Peer::Gate(g)) => {
                info!("gate{g} disconnected ({conn}): {reason}");
                if self.gates.get(&g) == Some(&conn) {
                    self.gates.remove(&g);
                    let p = Msg::NotifyGateDisconnected { gate_id: g }.to_payload();
                    self.broadcast_games(io, now, 0, &p);
                }
            }
            Some(Peer::Unknown) => {
                debug!("connection {conn} closed before its handshake: {reason}")
            }
            None => {}
        }
    }

    fn on_tick(&mut self, io: &mut dyn Io, now: Instant, _wall: SystemTime) {
        self.flush_syncs(io, now);
        let due = self.next_sweep.is_none_or(|t| now >= t);
        if due && self.started {
            self.sweep(io, now);
            self.next_sweep = Some(now + SWEEP_INTERVAL);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        // Sweeping matters only while something is held or waiting.
        let holding = self.startup_until.is_some()
            || !self.unknown.is_empty()
            || self.games.values().any(|g| g.frozen_until.is_some())
            || !self.held_entities.is_empty()
            || self.log_summary_due().is_some();
        if holding {
            self.next_sweep
        } else {
            None
        }
    }

    fn on_signal(&mut self, _io: &mut dyn Io, _now: Instant, signal: i32) {
        match signal {
            sig::SIGINT | sig::SIGTERM => {
                info!("signal {signal}: dispatcher stopping");
                self.stop = true;
            }
            _ => info!("signal {signal} ignored (hot swap signals belong to games)"),
        }
    }

    fn should_stop(&self) -> bool {
        self.stop
    }

    fn metrics(&self, m: &mut goworld_common::http::Metrics) {
        m.gauge(
            "entities",
            "Entities this dispatcher routes to a game.",
            self.entities.len() as f64,
        );
        m.gauge(
            "games_connected",
            "Games connected.",
            self.connected_games().len() as f64,
        );
        m.gauge(
            "gates_connected",
            "Gates connected.",
            self.gates.len() as f64,
        );
        m.gauge(
            "held_entities",
            "Entities whose packets are held (loading or migrating).",
            self.held_entities.len() as f64,
        );
        m.gauge(
            "unknown_entities_waiting",
            "Entities with packets waiting for their announcement.",
            self.unknown.len() as f64,
        );
        m.gauge(
            "migrations_in_transit",
            "Migrations relayed and not confirmed yet.",
            self.in_transit.len() as f64,
        );
        m.counters(
            "dropped",
            "Packets not delivered, by reason (each kind is also logged, bounded).",
            &[
                (&[("reason", "hold_full")], self.over_hold_limit),
                (
                    &[("reason", "sync_unknown_entity")],
                    self.sync_dropped_unknown_entity,
                ),
                (
                    &[("reason", "disconnect_gone_entity")],
                    self.disconnects_for_gone_entities,
                ),
            ],
        );
    }

    fn status(&self, s: &mut goworld_common::http::Status) {
        s.str("kind", "dispatcher")
            .num("id", f64::from(self.s.disp_id))
            .str(
                "state",
                if self.deployment_ready {
                    "ready"
                } else {
                    "waiting"
                },
            )
            .num("entities", self.entities.len() as f64)
            .num("games", self.connected_games().len() as f64)
            .num("gates", self.gates.len() as f64);
    }
}

#[cfg(test)]
mod tests;
