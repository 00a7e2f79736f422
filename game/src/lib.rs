//! The game process: runs entities and their logic (reference §1.3, §3).
//!
//! [`GameService`] holds the game's side of the cluster: its links to every dispatcher and
//! their handshakes (SET_GAME_ID / ACK), the online-games view (deduplicated across
//! dispatchers), the service registry it learns, deployment readiness, the freeze and the
//! stop as draining states, and the [`World`] of entities. Game code is written against
//! [`api`] (with [`attr`] its attributes and [`args`] its typed RPC parameters); [`store`]
//! holds the storage and KVDB messages, the worker pool [`run`] owns, and the engines.
//!
//! [`GameService`] is a pure state machine behind the reactor's [`Handler`]: time comes in as
//! arguments and output leaves through [`Io`]; no sockets, no clock, no globals.

#![warn(missing_docs)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use goworld_common::displink::DispatcherLinks;
use goworld_common::id::{nil_space_id, EntityId, IdGen, WallClock};
use goworld_common::peerlog::WindowLog;
use goworld_common::proto::{self, Msg};
use goworld_common::reactor::{CloseReason, ConnId, Handler, Io, Origin};
use goworld_common::rng::Rng;
use goworld_common::{sig, INTERNAL_PROTOCOL_VERSION};
use log::{debug, info, warn};

// The README's Rust example compiles (as a doctest), so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme {}

pub mod aoi;
pub mod api;
pub mod args;
pub mod attr;
pub mod crontab;
pub mod run;
pub mod store;
pub mod world;

use api::Registry;
pub use api::{prelude, GameClient};
use store::{StoreRequest, StoreResult, Stores};
use world::{Caller, DrainState, Net, World};

/// How often a game reports its load to the dispatchers (GoWorld: every second).
pub const LOAD_REPORT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// What the game needs to know about itself and its deployment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This game's ID (`-gid`).
    pub game_id: u16,
    /// `[deployment] desired_dispatchers`: the game dials dispatchers 1..=N.
    pub desired_dispatchers: u16,
    /// Take no boot entities (clients' first entities go to other games).
    pub ban_boot_entity: bool,
    /// Type name of the entity created for each new client (`boot_entity`).
    pub boot_entity: String,
    /// Started with `-restore` (hot swap; restoring state comes with the hot swap work).
    pub restore: bool,
    /// Wall time at start, for stamping entity IDs.
    pub clock: WallClock,
}

/// Events a running game reports to its shell (the binary), for the ready line and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GameEvent {
    /// Every dispatcher acknowledged this game.
    Ready,
    /// A dispatcher reported the deployment ready (once per process).
    DeploymentReady,
    /// The game froze for a hot swap: the shell writes these bytes to the freeze file, then
    /// calls [`GameService::freeze_written`] (the game stops) or
    /// [`GameService::freeze_write_failed`] (it resumes).
    Frozen(Vec<u8>),
}

/// The window of the per-dispatcher logs of skipped packets.
const DISPATCHER_LOG_WINDOW: Duration = Duration::from_secs(60);

/// How long a freezing game waits for every dispatcher to hold its packets.
pub const FREEZE_ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a freezing game waits for storage and the KVDB to answer what is in flight.
pub const FREEZE_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping game (SIGTERM, SIGINT) waits for its last saves to be written.
pub const STOP_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a game is in a hot swap's freeze.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Freeze {
    /// Not freezing.
    Running,
    /// START_FREEZE_GAME sent to every dispatcher; these have acknowledged.
    WaitingAcks { acks: BTreeSet<u16>, until: Instant },
    /// Every dispatcher holds this game's packets; waiting (until `until`) for storage and
    /// the KVDB to answer everything in flight. Timers do not fire meanwhile.
    Draining { until: Instant },
    /// The state went to the shell as [`GameEvent::Frozen`]; waiting for it to be written.
    Writing,
    /// The write failed (at `at`): resume on the next tick, with this reason.
    Failed { why: String, at: Instant },
}

/// The game's state machine.
pub struct GameService {
    s: Settings,
    links: DispatcherLinks,
    /// Games each dispatcher reports online (index = dispatcher ID - 1); a game is online
    /// while any dispatcher reports it.
    online_by_disp: Vec<BTreeSet<u16>>,
    online: BTreeSet<u16>,
    /// Gates each dispatcher reported gone and not back since (index = dispatcher ID - 1). A
    /// migration carries its client through the client's dispatcher, so a client on a gate
    /// that dispatcher reported gone belongs to a dead gate instance.
    gates_down_by_disp: Vec<BTreeSet<u16>>,
    /// Every entity on this game but the nil space.
    world: World,
    /// This process's CPU use in percent of one core, as the shell last measured it.
    cpu_percent: f64,
    /// When the next load report (GAME_LBC_INFO) is due: every second once ready, if the
    /// shell measures the load (tests usually do not).
    next_load_report: Option<Instant>,
    load_reports: bool,
    deployment_ready: bool,
    ready_reported: bool,
    events: Vec<GameEvent>,
    /// Packets from each dispatcher that were skipped (index = dispatcher ID - 1): a few
    /// lines per window, counted after that.
    dispatcher_logs: Vec<WindowLog>,
    freeze: Freeze,
    /// Stopping (SIGTERM, SIGINT): every entity was destroyed and the game waits, until
    /// this deadline, for its last saves to be answered. Frames are not handled meanwhile and
    /// timers do not fire.
    stopping: Option<Instant>,
    /// Frames that arrived while stopping, not handled.
    frames_while_stopping: u64,
    stop: bool,
}

impl GameService {
    /// A game with its nil space created and no connections yet. `ids` generates the IDs of
    /// entities this game creates (give each game in one process its own).
    pub fn new(s: Settings, ids: IdGen, types: Registry, stores: Stores, rng: Rng) -> GameService {
        let n = s.desired_dispatchers;
        GameService {
            links: DispatcherLinks::new(n, &format!("game{}", s.game_id)),
            online_by_disp: vec![BTreeSet::new(); usize::from(n.max(1))],
            gates_down_by_disp: vec![BTreeSet::new(); usize::from(n.max(1))],
            cpu_percent: 0.0,
            next_load_report: None,
            load_reports: false,
            world: World::new(types, s.game_id, s.clock, ids, rng, stores),
            s,
            online: BTreeSet::new(),
            deployment_ready: false,
            ready_reported: false,
            events: Vec::new(),
            dispatcher_logs: vec![WindowLog::new(DISPATCHER_LOG_WINDOW); usize::from(n.max(1))],
            freeze: Freeze::Running,
            stopping: None,
            frames_while_stopping: 0,
            stop: false,
        }
    }

    /// The entities of this game.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// A snapshot of entity `id` (for moving it to another game or a hot swap).
    pub fn snapshot(
        &self,
        now: Instant,
        id: &EntityId,
    ) -> Result<world::Snapshot, world::SnapshotError> {
        self.world.snapshot(now, id)
    }

    /// Brings an entity back from a snapshot taken on this or another game.
    pub fn restore(
        &mut self,
        io: &mut dyn Io,
        now: Instant,
        snap: world::Snapshot,
    ) -> Result<(), world::SnapshotError> {
        let mut net = Net {
            io,
            links: &mut self.links,
        };
        self.world.restore(&mut net, now, snap)
    }

    /// Everything this game runs, as the freeze file's bytes (see `world::freeze`); the work
    /// in hand is finished and in-flight EnterSpace requests cancelled first.
    pub fn freeze(&mut self, io: &mut dyn Io, now: Instant) -> Result<Vec<u8>, world::FreezeError> {
        let mut net = Net {
            io,
            links: &mut self.links,
        };
        self.world.freeze(&mut net, now)
    }

    /// Brings back what [`GameService::freeze`] wrote (a hot swap's `-restore`).
    pub fn thaw(
        &mut self,
        io: &mut dyn Io,
        now: Instant,
        bytes: &[u8],
    ) -> Result<world::Restored, world::ThawError> {
        let mut net = Net {
            io,
            links: &mut self.links,
        };
        self.world.thaw(&mut net, now, bytes)
    }

    /// Runs game-wide code (startup work, tests) with a [`api::GameCtx`].
    pub fn with_game_ctx(
        &mut self,
        io: &mut dyn Io,
        now: Instant,
        f: impl FnOnce(&mut api::GameCtx),
    ) {
        let mut net = Net {
            io,
            links: &mut self.links,
        };
        self.world.with_game_ctx(&mut net, now, f);
    }

    /// Reports the load ([`set_cpu_percent`](Self::set_cpu_percent)) to every dispatcher
    /// once a second from readiness on. The binary's shell turns it on; it measures the load.
    pub fn enable_load_reports(&mut self) {
        self.load_reports = true;
    }

    /// The shell's latest measure of this process's CPU use (percent of one core), sent to
    /// every dispatcher once a second for load-based placement. Logic never reads /proc.
    pub fn set_cpu_percent(&mut self, cpu: f64) {
        self.cpu_percent = cpu;
    }

    /// Sets how often position changes are sent to clients (`[game]
    /// position_sync_interval_ms`; default 100 ms).
    pub fn set_position_sync_interval(&mut self, d: std::time::Duration) {
        self.world.set_sync_interval(d);
    }

    /// Sets how often persistent entities are saved (`save_interval`; default 300 s).
    pub fn set_save_interval(&mut self, d: std::time::Duration) {
        self.world.set_save_interval(d);
    }

    /// Sets how many refused calls disconnect a client (`refused_calls_limit`; default 20;
    /// 0: never).
    pub fn set_refused_calls_limit(&mut self, limit: u32) {
        self.world.set_refused_calls_limit(limit);
    }

    /// The game's ID.
    pub fn game_id(&self) -> u16 {
        self.s.game_id
    }

    /// Games online as far as this game knows (itself included once acknowledged).
    pub fn online_games(&self) -> &BTreeSet<u16> {
        &self.online
    }

    /// True once any dispatcher said the deployment is ready.
    pub fn is_deployment_ready(&self) -> bool {
        self.deployment_ready
    }

    /// True once every dispatcher acknowledged this game.
    pub fn is_ready(&self) -> bool {
        self.links.all_ready()
    }

    /// The service registry as learnt from the dispatchers.
    pub fn kvreg(&self) -> impl Iterator<Item = (&str, &str)> {
        self.world.kvreg()
    }

    /// Number of entities on this game, the nil space included.
    pub fn entity_count(&self) -> usize {
        self.world.len() + 1
    }

    /// Takes the events reported since the last call.
    pub fn take_events(&mut self) -> Vec<GameEvent> {
        std::mem::take(&mut self.events)
    }

    /// Takes the storage and KVDB requests made since the last call, in order. The owner
    /// (the binary's shell, the simulation, a test) runs them and hands the answers to
    /// [`GameService::on_store_results`]; call it after every handler call.
    pub fn take_store_requests(&mut self) -> Vec<StoreRequest> {
        self.world.take_store_requests()
    }

    /// Answers to earlier store requests: their callbacks and what they were for run now. A
    /// freeze or a stop waiting for the answers finishes once none is in flight.
    pub fn on_store_results(&mut self, io: &mut dyn Io, now: Instant, results: Vec<StoreResult>) {
        if !results.is_empty() {
            let mut net = Net {
                io,
                links: &mut self.links,
            };
            self.world.on_store_results(&mut net, now, results);
        }
        self.check_drains(io, now);
    }

    /// Storage and KVDB requests made and not answered yet.
    pub fn store_requests_in_flight(&self) -> usize {
        self.world.store_requests_in_flight()
    }

    /// Which stores this game was given.
    pub fn stores(&self) -> Stores {
        self.world.stores()
    }

    /// True from a SIGTERM (or SIGINT) until the game stops.
    pub fn is_stopping(&self) -> bool {
        self.stopping.is_some()
    }

    /// A freeze or a stop waiting for store answers finishes if none is in flight (or the
    /// freeze fails if answers keep starting new requests).
    fn check_drains(&mut self, io: &mut dyn Io, now: Instant) {
        if self.stopping.is_some() {
            if !self.stop && self.world.store_requests_in_flight() == 0 {
                info!("game{}: every save is written; stopping", self.s.game_id);
                self.stopped();
            }
            return;
        }
        if matches!(self.freeze, Freeze::Draining { .. }) {
            match self.world.store_drain_state() {
                DrainState::Done => self.finish_freeze(io, now),
                DrainState::Pending(_) => {}
                DrainState::Runaway => self.freeze_failed(
                    io,
                    now,
                    "storage and KVDB answers keep starting new requests",
                ),
            }
        }
    }

    /// Registers `key = val` in the service registry through its dispatcher.
    pub fn kvreg_register(&mut self, io: &mut dyn Io, key: &str, val: &str, force: bool) {
        let p = Msg::KvregRegister {
            key: key.to_string(),
            val: val.to_string(),
            force,
        }
        .to_payload();
        self.links.send_by_service(io, key, &p);
    }

    fn recompute_online(&mut self) {
        let now: BTreeSet<u16> = self.online_by_disp.iter().flatten().copied().collect();
        for g in now.difference(&self.online) {
            info!("game{g} is online");
        }
        for g in self.online.difference(&now) {
            info!("game{g} is offline");
        }
        self.online = now;
        self.world.set_online_games(self.online.clone());
    }

    fn send_set_game_id(&mut self, io: &mut dyn Io, disp: u16, is_reconnect: bool) {
        let n = self.links.count();
        let nil = nil_space_id(self.s.game_id);
        let mut entities: Vec<EntityId> = std::iter::once(&nil)
            .chain(self.world.ids())
            .filter(|e| goworld_common::id::dispatcher_for_entity(e, n) == disp)
            .copied()
            .collect();
        entities.sort();
        let p = Msg::SetGameId {
            game_id: self.s.game_id,
            is_reconnect,
            is_restore: self.s.restore,
            is_ban_boot_entity: self.s.ban_boot_entity,
            entities,
            version: Some(INTERNAL_PROTOCOL_VERSION),
        }
        .to_payload();
        self.links.send_handshake(io, disp, &p);
    }

    #[allow(clippy::too_many_arguments)]
    fn handle_ack(
        &mut self,
        io: &mut dyn Io,
        now: Instant,
        disp: u16,
        disp_id: u16,
        deployment_ready: bool,
        games: Vec<u16>,
        rejected: Vec<EntityId>,
        kvreg: Vec<(String, String)>,
        declared_dead: bool,
    ) {
        if disp_id != disp {
            warn!("dispatcher{disp} acknowledged as dispatcher{disp_id}; check advertise_addr in the config");
        }
        info!(
            "game{}: dispatcher{disp} acknowledged: {} games online, {} registry keys, deployment ready={deployment_ready}",
            self.s.game_id,
            games.len(),
            kvreg.len()
        );
        self.online_by_disp[usize::from(disp - 1)] = games.into_iter().collect();
        self.recompute_online();
        let mut net = Net {
            io,
            links: &mut self.links,
        };
        if declared_dead {
            let dropped = self.world.drop_fenced(&mut net, now, &rejected);
            warn!(
                "game{}: dispatcher{disp} declared this game dead while their link was down (its players there were disconnected and may be back on another game, its service shards handed on): dropping its {dropped} entities in that dispatcher's shard without saving them (a save could overwrite a newer copy; their last saves stand), and giving up its registry keys there",
                self.s.game_id,
            );
        } else {
            for eid in rejected {
                // The dispatcher knows this entity on another game: ours is the stale copy.
                warn!("entity {eid} is already on another game; destroying the copy here");
                self.world.destroy(&mut net, now, eid);
            }
        }
        // A restarted dispatcher has an empty registry: the keys this game owns go back first,
        // before the queue is flushed and before any other game's claim can take them.
        let n = self.links.count();
        for (key, val) in self.world.owned_kvreg() {
            if !declared_dead
                && goworld_common::id::dispatcher_for_service(&key, n) == disp
                && !kvreg.iter().any(|(k, v)| *k == key && *v == val)
            {
                let p = Msg::KvregRegister {
                    key,
                    val,
                    force: true,
                }
                .to_payload();
                self.links.send_handshake(io, disp, &p);
            }
        }
        let mut net = Net {
            io,
            links: &mut self.links,
        };
        self.world.kvreg_reset(&mut net, now, disp, kvreg);
        self.links.ready(io, disp);
        if self.links.all_ready() && !self.ready_reported {
            self.ready_reported = true;
            self.events.push(GameEvent::Ready);
            if self.load_reports {
                self.next_load_report = Some(now);
            }
        }
        if deployment_ready {
            self.set_deployment_ready(io, now);
        }
    }

    fn set_deployment_ready(&mut self, io: &mut dyn Io, now: Instant) {
        if !self.deployment_ready {
            self.deployment_ready = true;
            info!("game{}: deployment ready", self.s.game_id);
            self.events.push(GameEvent::DeploymentReady);
            let mut net = Net {
                io,
                links: &mut self.links,
            };
            self.world.game_ready(&mut net, now);
        }
    }

    /// Logs a packet from dispatcher `disp` that was skipped (a misbehaving peer, or an
    /// engine bug): a few lines per dispatcher and window, counted after that (on_tick sums
    /// them up when the window ends).
    fn dispatcher_problem(&mut self, now: Instant, disp: u16, line: impl FnOnce() -> String) {
        let log = &mut self.dispatcher_logs[usize::from(disp - 1)];
        if log.note(now, "skipped packet") {
            warn!("{}", line());
        }
    }

    fn handle(&mut self, io: &mut dyn Io, now: Instant, disp: u16, conn: ConnId, msg: Msg) {
        match msg {
            Msg::SetGameIdAck {
                disp_id,
                deployment_ready,
                games,
                rejected,
                kvreg,
                declared_dead,
            } => self.handle_ack(
                io,
                now,
                disp,
                disp_id,
                deployment_ready,
                games,
                rejected,
                kvreg,
                declared_dead,
            ),
            Msg::NotifyGameConnected { game_id } => {
                self.online_by_disp[usize::from(disp - 1)].insert(game_id);
                self.recompute_online();
            }
            Msg::NotifyGameDisconnected { game_id } => {
                self.world.service_game_down(game_id);
                self.online_by_disp[usize::from(disp - 1)].remove(&game_id);
                self.recompute_online();
            }
            Msg::NotifyDeploymentReady => self.set_deployment_ready(io, now),
            Msg::KvregRegister { key, val, .. } => {
                let mut net = Net {
                    io,
                    links: &mut self.links,
                };
                self.world.kvreg_set(&mut net, now, key, val, disp)
            }
            Msg::NotifyClientConnected {
                client_id,
                boot_eid,
                gate_id: Some(gate_id),
            } => {
                let client = GameClient { client_id, gate_id };
                let mut net = Net {
                    io,
                    links: &mut self.links,
                };
                self.world
                    .client_connected(&mut net, now, &self.s.boot_entity, boot_eid, client);
            }
            Msg::NotifyClientDisconnected {
                owner_eid,
                client_id,
            } => {
                let mut net = Net {
                    io,
                    links: &mut self.links,
                };
                self.world
                    .client_disconnected(&mut net, now, owner_eid, client_id);
            }
            Msg::NotifyGateDisconnected { gate_id } => {
                self.gates_down_by_disp[usize::from(disp - 1)].insert(gate_id);
                let mut net = Net {
                    io,
                    links: &mut self.links,
                };
                self.world.gate_disconnected(&mut net, now, gate_id);
            }
            Msg::NotifyGateConnected { gate_id } => {
                self.gates_down_by_disp[usize::from(disp - 1)].remove(&gate_id);
            }
            Msg::CallEntityMethod { eid, method, args } => {
                let mut net = Net {
                    io,
                    links: &mut self.links,
                };
                self.world
                    .call_from_dispatcher(&mut net, now, eid, &method, args, Caller::Server);
            }
            Msg::CallEntityMethodFromClient {
                eid,
                method,
                args,
                client_id: Some(cid),
            } => {
                let mut net = Net {
                    io,
                    links: &mut self.links,
                };
                self.world.call_from_dispatcher(
                    &mut net,
                    now,
                    eid,
                    &method,
                    args,
                    Caller::Client(cid),
                );
            }
            Msg::CreateEntitySomewhere {
                eid,
                type_name,
                attrs,
                ..
            } => {
                let data = if attrs.is_empty() || attrs == [0xc0] {
                    None
                } else {
                    match attr::Attrs::from_bytes(&attrs) {
                        Ok(a) => Some(a),
                        Err(e) => {
                            self.dispatcher_problem(now, disp, || {
                                format!("create {type_name}<{eid}>: bad attributes ({e}); created without them")
                            });
                            None
                        }
                    }
                };
                let mut net = Net {
                    io,
                    links: &mut self.links,
                };
                self.world.create(&mut net, now, &type_name, eid, data);
            }
            Msg::LoadEntitySomewhere { eid, type_name, .. } => {
                let mut net = Net {
                    io,
                    links: &mut self.links,
                };
                self.world.load(&mut net, &type_name, eid);
            }
            Msg::CallNilSpaces { method, args, .. } => {
                let mut net = Net {
                    io,
                    links: &mut self.links,
                };
                self.world.call_nil_space(&mut net, now, &method, &args);
            }
            Msg::SyncPositionYawFromClient { records } => {
                let mut net = Net {
                    io,
                    links: &mut self.links,
                };
                self.world.sync_from_client(&mut net, now, &records);
            }
            Msg::QuerySpaceGameIdForMigrate {
                space_id,
                eid,
                game_id: Some(game),
            } => {
                let mut net = Net {
                    io,
                    links: &mut self.links,
                };
                self.world
                    .on_query_space_ack(&mut net, now, space_id, eid, game);
            }
            Msg::MigrateRequest {
                eid,
                space_id,
                space_game_id,
            } => {
                let mut net = Net {
                    io,
                    links: &mut self.links,
                };
                self.world
                    .on_migrate_ack(&mut net, now, eid, space_id, space_game_id);
            }
            Msg::StartFreezeGameAck { .. } => self.on_freeze_ack(io, now, disp),
            Msg::RealMigrate { eid, data, .. } => {
                let mut net = Net {
                    io,
                    links: &mut self.links,
                };
                let gates_down = &self.gates_down_by_disp[usize::from(disp - 1)];
                self.world
                    .on_real_migrate(&mut net, now, eid, &data, gates_down);
                // The dispatcher that relayed it keeps a copy until told it was taken.
                let taken = Msg::MigrateArrived { eid }.to_payload();
                self.links.send(io, disp, &taken);
            }
            other => {
                let t = other.msg_type();
                self.dispatcher_problem(now, disp, || {
                    format!(
                        "connection {conn}: {} is not handled by a game; skipped",
                        proto::msg_name(t)
                    )
                });
            }
        }
    }
}

impl Handler for GameService {
    fn on_open(
        &mut self,
        io: &mut dyn Io,
        _now: Instant,
        conn: ConnId,
        origin: Origin,
        peer: SocketAddr,
    ) {
        let Origin::Dialed { dial } = origin else {
            io.close(conn, "games accept no connections");
            return;
        };
        let disp = dial as u16;
        info!(
            "game{}: connected to dispatcher{disp} at {peer}",
            self.s.game_id
        );
        let reconnect = self.links.opened(disp, conn);
        self.send_set_game_id(io, disp, reconnect);
    }

    fn on_frame(&mut self, io: &mut dyn Io, now: Instant, conn: ConnId, payload: &[u8]) {
        let Some(disp) = self.links.dispatcher_of(conn) else {
            return;
        };
        if self.stopping.is_some() {
            // The process is going: what arrives now would have been left unread before.
            self.frames_while_stopping += 1;
            return;
        }
        match Msg::decode(payload) {
            Ok(msg) => self.handle(io, now, disp, conn, msg),
            Err(e) => {
                let t = proto::peek_type(payload).unwrap_or(0);
                self.dispatcher_problem(now, disp, || {
                    if proto::route(t) == proto::Route::Unknown {
                        format!("dispatcher{disp}: unknown message type {t} skipped")
                    } else {
                        format!("dispatcher{disp}: malformed packet skipped: {e}")
                    }
                });
            }
        }
    }

    fn on_close(&mut self, _io: &mut dyn Io, _now: Instant, conn: ConnId, reason: &CloseReason) {
        if let Some(d) = self.links.closed(conn) {
            warn!(
                "game{}: lost dispatcher{d} ({reason}); reconnecting",
                self.s.game_id
            );
            if let Some(summary) = self.dispatcher_logs[usize::from(d - 1)].take_summary() {
                warn!("dispatcher{d}: packets skipped since the last report: {summary}");
            }
            self.online_by_disp[usize::from(d - 1)].clear();
            self.recompute_online();
        }
    }

    fn on_tick(&mut self, io: &mut dyn Io, now: Instant, _wall: SystemTime) {
        for (i, log) in self.dispatcher_logs.iter_mut().enumerate() {
            if let Some(summary) = log.roll(now) {
                warn!(
                    "dispatcher{}: packets skipped in the last {} s: {summary}",
                    i + 1,
                    DISPATCHER_LOG_WINDOW.as_secs()
                );
            }
        }
        match &self.freeze {
            Freeze::WaitingAcks { acks, until } if now >= *until => {
                let why = format!(
                    "only {} of {} dispatchers acknowledged within {FREEZE_ACK_TIMEOUT:?}",
                    acks.len(),
                    self.links.count()
                );
                self.freeze_failed(io, now, &why);
            }
            Freeze::Failed { why, .. } => {
                let why = why.clone();
                self.freeze_failed(io, now, &why);
            }
            Freeze::Draining { until } if now >= *until => {
                let why = format!(
                    "storage and KVDB still busy after {FREEZE_DRAIN_TIMEOUT:?}: {}",
                    self.world.unwritten_saves(now, 20)
                );
                self.freeze_failed(io, now, &why);
            }
            _ => {}
        }
        let draining = self.is_draining();
        if self.stopping.is_some_and(|until| now >= until) && !self.stop {
            warn!(
                "game{}: stopping anyway after {STOP_DRAIN_TIMEOUT:?}: {}",
                self.s.game_id,
                self.world.unwritten_saves(now, 50)
            );
            self.stopped();
        }
        // Held saves are retried while storage is down, also while a stop waits for them (a
        // freeze carries them in its file instead).
        if !matches!(self.freeze, Freeze::Draining { .. }) {
            self.world.retry_saves(now);
        }
        let mut net = Net {
            io,
            links: &mut self.links,
        };
        if self.next_load_report.is_some_and(|t| now >= t) {
            self.next_load_report = Some(now + LOAD_REPORT_INTERVAL);
            let mut data = Vec::new();
            goworld_common::msgpack::write_map_len(&mut data, 1);
            goworld_common::msgpack::write_str(&mut data, "cp");
            goworld_common::msgpack::write_float(&mut data, self.cpu_percent);
            net.links
                .broadcast(net.io, &Msg::GameLbcInfo { data }.to_payload());
        }
        // While a freeze or a stop waits for store answers, nothing new starts: the world
        // is written (or the process goes) as it stands once they are in.
        if !draining {
            self.world.fire_timers(&mut net, now);
        }
        self.world.run_posted(&mut net, now);
        self.world.run_local_calls(&mut net, now);
    }

    fn next_deadline(&self) -> Option<Instant> {
        let freeze = match &self.freeze {
            Freeze::WaitingAcks { until, .. } | Freeze::Draining { until } => Some(*until),
            Freeze::Failed { at, .. } => Some(*at),
            _ => None,
        };
        let logs = self
            .dispatcher_logs
            .iter()
            .filter_map(WindowLog::summary_due);
        // Timers wait while draining, so their deadlines do not count (a due one would spin).
        let world = (!self.is_draining())
            .then(|| self.world.next_deadline())
            .flatten();
        let stopping = self.stopping.filter(|_| !self.stop);
        let retry = (!matches!(self.freeze, Freeze::Draining { .. }))
            .then(|| self.world.retry_deadline())
            .flatten();
        [world, self.next_load_report, freeze, stopping, retry]
            .into_iter()
            .flatten()
            .chain(logs)
            .min()
    }

    fn on_signal(&mut self, io: &mut dyn Io, now: Instant, signal: i32) {
        match signal {
            sig::SIGINT | sig::SIGTERM => self.start_stop(io, now, signal),
            sig::SIGUSR1 | sig::SIGHUP => self.start_freeze(io, now, signal),
            _ => debug!("signal {signal} ignored"),
        }
    }

    fn should_stop(&self) -> bool {
        self.stop
    }

    fn metrics(&self, m: &mut goworld_common::http::Metrics) {
        let counts = self.world.counts_by_type();
        let samples: Vec<(&str, f64)> = counts
            .iter()
            .map(|(t, n)| (t.as_str(), *n as f64))
            .collect();
        m.gauges_by(
            "entities",
            "Entities on this game, by type.",
            "type",
            &samples,
        );
        m.gauge(
            "store_requests_in_flight",
            "Storage and KVDB requests not answered yet, and saves held.",
            self.world.store_requests_in_flight() as f64,
        );
        m.gauge(
            "timers_pending",
            "Timers queued: entity timers, periodic saves and the game's own.",
            self.world.timers_pending() as f64,
        );
        m.gauge(
            "saves_held",
            "Saves waiting for storage (behind a save in flight, or while storage is down).",
            self.world.held_saves() as f64,
        );
        m.gauge(
            "cpu_percent",
            "CPU of this process, as last measured.",
            self.cpu_percent,
        );
        m.counter(
            "client_syncs_ignored",
            "Position syncs (12) from clients not applied: the entity is not here or its \
             client syncing is off.",
            self.world.syncs_ignored(),
        );
    }

    fn status(&self, s: &mut goworld_common::http::Status) {
        let state = if self.stopping.is_some() {
            "stopping"
        } else if self.freeze != Freeze::Running {
            "freezing"
        } else if self.links.all_ready() {
            "ready"
        } else {
            "waiting"
        };
        s.str("kind", "game")
            .num("id", f64::from(self.s.game_id))
            .str("state", state)
            .num("entities", self.world.len() as f64)
            .counts("entities_by_type", &self.world.counts_by_type())
            .num(
                "store_requests_in_flight",
                self.world.store_requests_in_flight() as f64,
            );
    }
}

impl GameService {
    /// SIGTERM or SIGINT: every entity is destroyed (persistent ones saved), and the game
    /// stops once storage has answered everything in flight, or after
    /// [`STOP_DRAIN_TIMEOUT`]. A freeze in progress is abandoned (the dispatchers see the game
    /// go).
    fn start_stop(&mut self, io: &mut dyn Io, now: Instant, signal: i32) {
        let id = self.s.game_id;
        if self.stopping.is_some() {
            info!("game{id}: signal {signal}: already stopping");
            return;
        }
        info!("game{id}: signal {signal}, stopping");
        if self.freeze != Freeze::Running {
            warn!("game{id}: the freeze in progress is abandoned");
            self.freeze = Freeze::Running;
            self.world.end_store_drain();
        }
        let mut net = Net {
            io,
            links: &mut self.links,
        };
        self.world.destroy_all(&mut net, now);
        let pending = self.world.store_requests_in_flight();
        if pending > 0 {
            info!("game{id}: waiting for {pending} saves before stopping");
        }
        self.stopping = Some(now + STOP_DRAIN_TIMEOUT);
        self.check_drains(io, now);
    }

    /// The stop is over: the reactor ends the loop after this iteration's flush.
    fn stopped(&mut self) {
        if self.frames_while_stopping > 0 {
            info!(
                "game{}: {} frames arrived while stopping and were not handled",
                self.s.game_id, self.frames_while_stopping
            );
        }
        self.stop = true;
    }

    /// A freeze or a stop is waiting for store answers.
    fn is_draining(&self) -> bool {
        self.stopping.is_some() || matches!(self.freeze, Freeze::Draining { .. })
    }
}

impl GameService {
    /// SIGUSR1 or SIGHUP: every dispatcher is asked to hold this game's packets; once all
    /// have acknowledged, the game freezes (see [`GameService::freeze`]).
    fn start_freeze(&mut self, io: &mut dyn Io, now: Instant, signal: i32) {
        let id = self.s.game_id;
        if self.freeze != Freeze::Running {
            info!("game{id}: signal {signal}: already freezing");
            return;
        }
        if self.stopping.is_some() {
            info!("game{id}: signal {signal}: stopping, not freezing");
            return;
        }
        if !self.links.all_ready() {
            warn!("game{id}: signal {signal}: cannot freeze before every dispatcher has accepted this game; still running");
            return;
        }
        info!(
            "game{id}: signal {signal}: freezing; asking {} dispatchers to hold this game's packets",
            self.links.count()
        );
        self.freeze = Freeze::WaitingAcks {
            acks: BTreeSet::new(),
            until: now + FREEZE_ACK_TIMEOUT,
        };
        self.links.broadcast(io, &Msg::StartFreezeGame.to_payload());
    }

    /// A dispatcher holds this game's packets now; when every one does, the game waits for
    /// storage and the KVDB to answer what is in flight (the reactor keeps running; see
    /// [`GameService::on_store_results`]), then freezes.
    fn on_freeze_ack(&mut self, io: &mut dyn Io, now: Instant, disp: u16) {
        let Freeze::WaitingAcks { acks, .. } = &mut self.freeze else {
            debug!("dispatcher{disp}: freeze acknowledged, but this game is not freezing");
            return;
        };
        acks.insert(disp);
        if acks.len() < usize::from(self.links.count()) {
            return;
        }
        let pending = self.world.store_requests_in_flight();
        if pending > 0 {
            info!(
                "game{}: every dispatcher holds this game's packets; waiting for {pending} storage and KVDB answers",
                self.s.game_id
            );
        }
        self.world.begin_store_drain();
        self.freeze = Freeze::Draining {
            until: now + FREEZE_DRAIN_TIMEOUT,
        };
        self.check_drains(io, now);
    }

    /// Storage and the KVDB have answered everything: the state goes to the shell as
    /// [`GameEvent::Frozen`].
    fn finish_freeze(&mut self, io: &mut dyn Io, now: Instant) {
        let mut net = Net {
            io,
            links: &mut self.links,
        };
        match self.world.freeze(&mut net, now) {
            Ok(bytes) => {
                info!(
                    "game{}: frozen: {} entities, {} bytes",
                    self.s.game_id,
                    self.world.len(),
                    bytes.len()
                );
                self.freeze = Freeze::Writing;
                self.events.push(GameEvent::Frozen(bytes));
            }
            Err(why) => self.freeze_failed(io, now, &why.to_string()),
        }
    }

    /// The shell wrote the freeze file: the game stops (its output is flushed first).
    pub fn freeze_written(&mut self) {
        if self.freeze == Freeze::Writing {
            self.stop = true;
        }
    }

    /// The shell could not write the freeze file (at `now`): the game resumes on its next
    /// tick, which is due at once.
    pub fn freeze_write_failed(&mut self, now: Instant, why: String) {
        if self.freeze == Freeze::Writing {
            self.freeze = Freeze::Failed { why, at: now };
        }
    }

    /// The freeze failed: the game keeps running, the dispatchers deliver what they held,
    /// and the EnterSpace requests the freeze cancelled are asked again.
    fn freeze_failed(&mut self, io: &mut dyn Io, now: Instant, why: &str) {
        warn!(
            "game{}: freeze failed ({why}); still running, and the dispatchers deliver what they held",
            self.s.game_id
        );
        self.freeze = Freeze::Running;
        self.world.end_store_drain();
        self.links.broadcast(io, &Msg::FreezeCancelled.to_payload());
        let mut net = Net {
            io,
            links: &mut self.links,
        };
        self.world.unfreeze(&mut net, now);
    }

    /// True while a freeze is in progress (from the signal until the game stops or resumes).
    pub fn is_freezing(&self) -> bool {
        self.freeze != Freeze::Running
    }
}

impl GameService {
    /// Generates a new entity ID stamped with the time `now`.
    pub fn gen_entity_id(&mut self, now: Instant) -> EntityId {
        self.world.gen_id(now)
    }
}

#[cfg(test)]
mod space_tests;
#[cfg(test)]
mod tests;
