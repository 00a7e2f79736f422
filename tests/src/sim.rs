//! An in-memory simulation of a whole deployment, for fast, deterministic multi-component
//! tests (modelled on quinn-proto's test `Pair`).
//!
//! Dispatchers, games and gates are pure state machines behind [`Handler`]; [`Sim`] runs
//! several of them in one thread with no sockets and no real time. It owns:
//!
//! * **nodes**: named state machines ("dispatcher1", "game2", "gate1", "client3") in one list
//!   (creation order is the tick order), stored as `Box<dyn SimNode>` (any `Handler + Any`)
//!   rather than typed vectors, so a test can add other handlers (bots) and still borrow any
//!   node back as its concrete type ([`Sim::node`], [`Sim::dispatcher`], [`Sim::game`],
//!   [`Sim::gate`]) or call it with an `Io` ([`Sim::with_node`]);
//! * **a fake clock**: `now` starts at the one `Instant::now()` reading in [`Sim::new`] and
//!   moves only through [`Sim::advance`] and [`Sim::run_until_idle`]; wall time is derived
//!   from it ([`START_UNIX_SECS`] at the start);
//! * **links**: in-memory connections from a *dialer* node to a *listener* node. Each side has
//!   its own [`ConnId`] (a per-node slot plus a generation, as the reactor's slab gives them),
//!   gets `on_open` ([`Origin::Dialed`] with the dial's tag on the dialer side,
//!   [`Origin::Accepted`] with the listener's tag on the other), and receives the frames the
//!   other side sent through its [`Io`], in order, `latency` after they were sent;
//! * **dials**: like `Reactor::add_dial`, a dial keeps its link up. After a close, or a
//!   connect to a node that is down, it redials 50 ms later, doubling to 1 s, and the delay
//!   resets on a successful connect.
//!
//! One [`Sim::step`] is one reactor iteration for every node at once: start due dials,
//! deliver every frame and close that is due (including those produced meanwhile with zero
//! latency), then `on_tick` every live node in creation order. Delivery order is by due time,
//! then by send order, so a run is a pure function of the test's calls.
//!
//! Closing follows the reactor: [`Io::close`] stops the closing side's reads and sends at
//! once, reports `on_close(CloseReason::Local(reason))` to it, delivers the frames it had
//! already sent, then `on_close(CloseReason::PeerClosed)` to the peer. [`Sim::kill`] drops a
//! node as SIGKILL would: frames it already sent still arrive (they were written to the
//! kernel), then its peers see `PeerClosed`; it gets no callbacks. A node whose
//! [`Handler::should_stop`] turns true is stopped the same way.
//!
//! Not simulated: `Io::pending` (always 0, so no backpressure or output limits), frame size
//! limits (a payload is delivered whatever its size), and signals unless a test sends one
//! ([`Sim::signal`]).
//!
//! Storage and KVDB: games get none, unless the sim is built with
//! [`Sim::deployment_with_stores`]: then every game gets storage and a KVDB in memory
//! ([`MemStores`]), one store shared by all games and their restarts (as games sharing one
//! database do: a restarted game finds what it saved). After every callback on a game the
//! sim takes the store requests it made, runs them at once against the shared store, in
//! order, and delivers the results back to that game as an event on the fake clock,
//! [`Sim::set_store_latency`] after the request (zero by default: in the same step, after
//! what was already due). Results for a game that was killed or restarted meanwhile are
//! dropped, as a dead process's would be. So storage costs no real time: nothing sleeps,
//! and [`Sim::run_until_idle`] waits for store results as it waits for frames.
//!
//! [`Sim::deployment`] builds what the binaries build (same `Settings`, every game and gate
//! dialing every dispatcher with the dispatcher ID as tag), and [`Sim::connect_client`] adds
//! recording clients on a gate's client listener.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use goworld_common::config::{
    DEFAULT_ENTITY_HOLD_LIMIT, DEFAULT_FREEZE_HOLD_TIMEOUT_S, DEFAULT_GAME_HOLD_LIMIT,
};
use goworld_common::id::{EntityId, IdGen, WallClock};
use goworld_common::proto::{ClientBound, ClientMsg};
use goworld_common::reactor::{CloseReason, ConnId, Handler, Io, Origin};
use goworld_common::rng::Rng;
use goworld_dispatcher::Dispatcher;
use goworld_game::prelude::*;
use goworld_game::store::mem::MemStores;
use goworld_game::store::{StoreResult, Stores};
use goworld_game::GameService;
use goworld_gate::{GateService, CLIENT_LISTENER};

/// Unix seconds of the wall clock at the sim's start (wall time follows the fake clock).
pub const START_UNIX_SECS: u32 = 1_700_000_000;
/// The dispatcher's listener tag (as `dispatcher/src/main.rs` adds it).
pub const DISPATCHER_LISTENER: u32 = 0;
/// Boot entity type of the games a deployment builds (the sample config's `boot_entity`).
pub const BOOT_ENTITY: &str = "Account";

/// The boot entity [`default_types`] registers as [`BOOT_ENTITY`]: like test_game's Account
/// before login, it has no methods and goes away with its client.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct BootAccount;

impl Entity for BootAccount {
    fn describe(_desc: &mut TypeDesc<Self>) {}
    fn on_client_disconnected(&mut self, ctx: &mut Ctx) {
        ctx.destroy();
    }
}

/// The entity types of a [`Sim::deployment`]'s games: [`BootAccount`] as [`BOOT_ENTITY`].
pub fn default_types() -> Registry {
    let mut types = Registry::new();
    types
        .register::<BootAccount>(BOOT_ENTITY)
        .expect("BootAccount registers");
    types
}
/// First redial delay, as in the reactor; doubles per failure up to [`BACKOFF_MAX`].
pub const BACKOFF_START: Duration = Duration::from_millis(50);
/// Longest redial delay, as in the reactor.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Gates' client → server position batching period (the config default).
const POSITION_SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// Most deliveries in one [`Sim::step`] before the sim declares a livelock.
const MAX_EVENTS_PER_STEP: usize = 1_000_000;
/// Most steps one [`Sim::run_until_idle`] or [`Sim::advance`] may take.
const MAX_STEPS: usize = 100_000;
/// Most steps [`Sim::wait_in_place`] takes with the clock standing still.
const MAX_STEPS_IN_PLACE: usize = 1_000;

/// A state machine the sim can run and hand back as its concrete type. Implemented for every
/// `Handler + Any`; tests never implement it by hand.
pub trait SimNode: Handler + Any {
    /// The node as `Any`, for [`Sim::node`].
    fn as_any(&self) -> &dyn Any;
    /// The node as `Any`, for [`Sim::node_mut`] and [`Sim::with_node`].
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Handler + Any> SimNode for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A client connected with [`Sim::connect_client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientHandle(usize);

/// One frame delivered by the sim, recorded while tracing is on ([`Sim::set_tracing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Fake time of delivery.
    pub at: Instant,
    /// Name of the sending node.
    pub from: String,
    /// Name of the receiving node.
    pub to: String,
    /// The frame's payload.
    pub payload: Vec<u8>,
}

/// The recording client behind a [`ClientHandle`]: a node that keeps what it receives.
#[derive(Debug, Default)]
struct SimClient {
    conn: Option<ConnId>,
    frames: Vec<Vec<u8>>,
    closed: Option<CloseReason>,
}

impl Handler for SimClient {
    fn on_open(&mut self, _: &mut dyn Io, _: Instant, conn: ConnId, _: Origin, _: SocketAddr) {
        self.conn = Some(conn);
    }
    fn on_frame(&mut self, _: &mut dyn Io, _: Instant, _: ConnId, payload: &[u8]) {
        self.frames.push(payload.to_vec());
    }
    fn on_close(&mut self, _: &mut dyn Io, _: Instant, _: ConnId, reason: &CloseReason) {
        self.closed = Some(reason.clone());
    }
    fn on_tick(&mut self, _: &mut dyn Io, _: Instant, _: SystemTime) {}
    fn next_deadline(&self) -> Option<Instant> {
        None
    }
    fn on_signal(&mut self, _: &mut dyn Io, _: Instant, _: i32) {}
    fn should_stop(&self) -> bool {
        false
    }
}

/// What a node asked of its [`Io`] during one callback, in order.
enum Op {
    Send(ConnId, Vec<u8>),
    Close(ConnId, String),
}

/// The per-callback [`Io`] handed to a node: records, and the sim applies it afterwards.
#[derive(Default)]
struct SimIo {
    ops: Vec<Op>,
}

impl Io for SimIo {
    fn send(&mut self, conn: ConnId, payload: &[u8]) {
        self.ops.push(Op::Send(conn, payload.to_vec()));
    }
    fn send2(&mut self, conn: ConnId, head: &[u8], tail: &[u8]) {
        let mut p = Vec::with_capacity(head.len() + tail.len());
        p.extend_from_slice(head);
        p.extend_from_slice(tail);
        self.ops.push(Op::Send(conn, p));
    }
    fn close(&mut self, conn: ConnId, reason: &str) {
        self.ops.push(Op::Close(conn, reason.to_string()));
    }
    fn pending(&self, _conn: ConnId) -> usize {
        0
    }
}

/// Which role a deployment node has, for the pid of restarted games and gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Dispatcher,
    Game,
    Gate,
    Client,
    Other,
}

struct Node {
    name: String,
    role: Role,
    /// Listening address reported to dialers as their peer.
    addr: SocketAddr,
    /// `None` while killed.
    handler: Option<Box<dyn SimNode>>,
    /// Open connections: conn → (link, side).
    conns: BTreeMap<ConnId, (usize, usize)>,
    free_slots: BTreeSet<u32>,
    next_slot: u32,
    next_gen: u32,
    /// Starts of this node so far (1 after creation).
    incarnation: u32,
}

impl Node {
    fn alloc_conn(&mut self) -> ConnId {
        let slot = self.free_slots.pop_first().unwrap_or_else(|| {
            self.next_slot += 1;
            self.next_slot - 1
        });
        let gen = self.next_gen;
        self.next_gen += 1;
        ConnId { slot, gen }
    }

    fn free_conn(&mut self, conn: ConnId) {
        if self.conns.remove(&conn).is_some() {
            self.free_slots.insert(conn.slot);
        }
    }

    /// Forgets every connection, as a new process would start.
    fn reset_conns(&mut self) {
        self.conns.clear();
        self.free_slots.clear();
        self.next_slot = 0;
        self.next_gen = 1;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DialState {
    /// Connects once the clock reaches this time (if the dialer is up).
    Waiting(Instant),
    /// Connected on this link.
    Open(usize),
    /// The dialer is down; resumes when it is restarted.
    Suspended,
    /// A one-shot dial (a client) that connected and closed, or failed.
    Done,
}

struct Dial {
    dialer: usize,
    target: usize,
    dial_tag: u32,
    listener_tag: u32,
    state: DialState,
    backoff: Duration,
    redial: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndState {
    Open,
    /// Closed by its own node; its `on_close` is on the way.
    Closing,
    Closed,
}

#[derive(Debug, Clone, Copy)]
struct End {
    node: usize,
    conn: ConnId,
    state: EndState,
}

/// Side 0 is the dialer, side 1 the listener.
const DIALER: usize = 0;

struct Link {
    ends: [End; 2],
    dial: usize,
    latency: Duration,
    /// Latest delivery time scheduled towards each side, so frames never overtake.
    last_at: [Instant; 2],
}

enum EventKind {
    Frame(Vec<u8>),
    Close(CloseReason),
}

struct Event {
    link: usize,
    /// The receiving side.
    to: usize,
    kind: EventKind,
}

/// Store results on their way back to a game.
struct StoreDelivery {
    node: usize,
    /// The run of the game that made the requests; another run does not get them.
    incarnation: u32,
    results: Vec<StoreResult>,
}

/// Something the sim delivers at a time: a frame or close on a link, or store results.
enum Due {
    Link(Event),
    Store(StoreDelivery),
}

/// The games' shared stores ([`Sim::deployment_with_stores`]).
struct SimStores {
    mem: MemStores,
    /// Time from a request to its result's delivery.
    latency: Duration,
}

/// The simulation: nodes, fake clock, links and dials. See the module documentation.
pub struct Sim {
    start: Instant,
    now: Instant,
    nodes: Vec<Node>,
    by_name: BTreeMap<String, usize>,
    dials: Vec<Dial>,
    links: Vec<Link>,
    events: BTreeMap<(Instant, u64), Due>,
    seq: u64,
    default_latency: Duration,
    latency: BTreeMap<(usize, usize), Duration>,
    /// `(dispatchers, games, gates)` when built by [`Sim::deployment`].
    deployment: (u16, u16, u16),
    /// Entity types of every game the sim builds.
    types: fn() -> Registry,
    /// The games' shared storage and KVDB ([`Sim::deployment_with_stores`]).
    stores: Option<SimStores>,
    /// `(entity_hold_limit, game_hold_limit)` of the dispatchers the sim builds.
    hold_limits: (usize, usize),
    next_client: usize,
    tracing: bool,
    trace: Vec<Delivery>,
}

impl Default for Sim {
    fn default() -> Sim {
        Sim::new()
    }
}

impl Sim {
    /// An empty sim; its clock starts at the one real `Instant::now()` reading.
    pub fn new() -> Sim {
        let start = Instant::now();
        Sim {
            start,
            now: start,
            nodes: Vec::new(),
            by_name: BTreeMap::new(),
            dials: Vec::new(),
            links: Vec::new(),
            events: BTreeMap::new(),
            seq: 0,
            default_latency: Duration::ZERO,
            latency: BTreeMap::new(),
            deployment: (0, 0, 0),
            types: default_types,
            stores: None,
            hold_limits: (DEFAULT_ENTITY_HOLD_LIMIT, DEFAULT_GAME_HOLD_LIMIT),
            next_client: 1,
            tracing: false,
            trace: Vec::new(),
        }
    }

    /// A deployment as the binaries build it: dispatchers `dispatcher1..`, games `game1..`
    /// and gates `gate1..` with the settings from the sample config's defaults (desired counts
    /// as given, boot entity [`BOOT_ENTITY`]), game `g` generating IDs with pid `100 + g` and
    /// gate `t` with pid `200 + t`, and every game and gate dialing every dispatcher with the
    /// dispatcher ID as the dial tag. Nothing has connected yet: call
    /// [`Sim::run_until_idle`]. Games have the entity types of [`default_types`], no storage
    /// and no KVDB, and a random source seeded with their pid.
    pub fn deployment(dispatchers: u16, games: u16, gates: u16) -> Sim {
        Sim::deployment_with_types(dispatchers, games, gates, default_types)
    }

    /// [`Sim::deployment`] with games whose entity types come from `types` (called for each
    /// game, restarts included; it must register [`BOOT_ENTITY`]).
    pub fn deployment_with_types(
        dispatchers: u16,
        games: u16,
        gates: u16,
        types: fn() -> Registry,
    ) -> Sim {
        Sim::build_deployment(dispatchers, games, gates, types, None)
    }

    /// [`Sim::deployment_with_types`] with storage and KVDB: every game (restarts included)
    /// has both, in memory, one store shared by all games ([`Sim::stores`]); results come
    /// back on the fake clock (see the module documentation).
    pub fn deployment_with_stores(
        dispatchers: u16,
        games: u16,
        gates: u16,
        types: fn() -> Registry,
    ) -> Sim {
        let stores = SimStores {
            mem: MemStores::default(),
            latency: Duration::ZERO,
        };
        Sim::build_deployment(dispatchers, games, gates, types, Some(stores))
    }

    fn build_deployment(
        dispatchers: u16,
        games: u16,
        gates: u16,
        types: fn() -> Registry,
        stores: Option<SimStores>,
    ) -> Sim {
        let mut sim = Sim::new();
        sim.deployment = (dispatchers, games, gates);
        sim.types = types;
        sim.stores = stores;
        for d in 1..=dispatchers {
            let h = sim.make_dispatcher(d);
            sim.add(&format!("dispatcher{d}"), Role::Dispatcher, h);
        }
        for g in 1..=games {
            let h = sim.make_game(g, 1);
            sim.add(&format!("game{g}"), Role::Game, h);
        }
        for t in 1..=gates {
            let h = sim.make_gate(t, 1);
            sim.add(&format!("gate{t}"), Role::Gate, h);
        }
        for name in (1..=games)
            .map(|g| format!("game{g}"))
            .chain((1..=gates).map(|t| format!("gate{t}")))
        {
            for d in 1..=dispatchers {
                sim.dial(
                    &name,
                    &format!("dispatcher{d}"),
                    u32::from(d),
                    DISPATCHER_LISTENER,
                );
            }
        }
        sim
    }

    /// Gives every dispatcher these hold limits (the config's `entity_hold_limit` and
    /// `game_hold_limit`), restarts included. Only before the first step: the dispatchers
    /// built so far are replaced by fresh ones.
    pub fn set_hold_limits(&mut self, entity: usize, game: usize) {
        assert_eq!(self.now, self.start, "set_hold_limits before the sim runs");
        self.hold_limits = (entity, game);
        for d in 1..=self.deployment.0 {
            let fresh = self.make_dispatcher(d);
            *self.node_mut::<Dispatcher>(&format!("dispatcher{d}")) = fresh;
        }
    }

    /// A fresh dispatcher `id` with this deployment's settings.
    pub fn make_dispatcher(&self, id: u16) -> Dispatcher {
        let (_, games, gates) = self.deployment;
        Dispatcher::new(goworld_dispatcher::Settings {
            disp_id: id,
            desired_games: games,
            desired_gates: gates,
            entity_hold_limit: self.hold_limits.0,
            game_hold_limit: self.hold_limits.1,
            freeze_hold_timeout: Duration::from_secs(DEFAULT_FREEZE_HOLD_TIMEOUT_S),
        })
    }

    /// The wall clock a process started now would read.
    fn wall_clock(&self) -> WallClock {
        WallClock {
            at: self.now,
            unix_secs: START_UNIX_SECS + self.elapsed().as_secs() as u32,
        }
    }

    /// A fresh game `id` in its `incarnation`-th run (pid `100 + id + 1000 * (incarnation -
    /// 1)`, so a restarted game never reuses its earlier entity IDs).
    fn make_game(&self, id: u16, incarnation: u32) -> GameService {
        self.make_game_with(id, incarnation, false)
    }

    /// [`Sim::make_game`] for a process started with `-restore` or not.
    fn make_game_with(&self, id: u16, incarnation: u32, restore: bool) -> GameService {
        let s = goworld_game::Settings {
            game_id: id,
            desired_dispatchers: self.deployment.0,
            ban_boot_entity: false,
            boot_entity: BOOT_ENTITY.to_string(),
            restore,
            clock: self.wall_clock(),
        };
        let pid = 100 + id + 1000 * (incarnation as u16 - 1);
        let stores = match &self.stores {
            None => Stores::NONE,
            Some(_) => Stores::ALL,
        };
        GameService::new(
            s,
            IdGen::new([1, 2, 3], pid),
            (self.types)(),
            stores,
            Rng::new(u64::from(pid)),
        )
    }

    /// A fresh gate `id` in its `incarnation`-th run (pid `200 + id + 1000 * (incarnation -
    /// 1)`).
    fn make_gate(&self, id: u16, incarnation: u32) -> GateService {
        let s = goworld_gate::Settings {
            gate_id: id,
            desired_dispatchers: self.deployment.0,
            position_sync_interval: POSITION_SYNC_INTERVAL,
            clock: self.wall_clock(),
            limits: goworld_gate::ClientLimits::default(),
        };
        let pid = 200 + id + 1000 * (incarnation as u16 - 1);
        GateService::new(s, IdGen::new([1, 2, 3], pid))
    }

    fn add(&mut self, name: &str, role: Role, handler: impl SimNode) -> usize {
        assert!(
            !self.by_name.contains_key(name),
            "sim: a node named {name} exists already"
        );
        let idx = self.nodes.len();
        let port = 20000 + idx as u16;
        self.nodes.push(Node {
            name: name.to_string(),
            role,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            handler: Some(Box::new(handler)),
            conns: BTreeMap::new(),
            free_slots: BTreeSet::new(),
            next_slot: 0,
            next_gen: 1,
            incarnation: 1,
        });
        self.by_name.insert(name.to_string(), idx);
        idx
    }

    /// Adds any state machine as a node named `name` (unique).
    pub fn add_node(&mut self, name: &str, handler: impl SimNode) {
        self.add(name, Role::Other, handler);
    }

    /// Like `Reactor::add_dial`: `dialer` keeps a link to `listener` up, reported with
    /// `Origin::Dialed { dial: dial_tag }` to the dialer and `Origin::Accepted { listener:
    /// listener_tag }` to the listener. The first connect happens in the next step.
    pub fn dial(&mut self, dialer: &str, listener: &str, dial_tag: u32, listener_tag: u32) {
        let (dialer, target) = (self.idx(dialer), self.idx(listener));
        self.dials.push(Dial {
            dialer,
            target,
            dial_tag,
            listener_tag,
            state: DialState::Waiting(self.now),
            backoff: BACKOFF_START,
            redial: true,
        });
    }

    fn idx(&self, name: &str) -> usize {
        *self
            .by_name
            .get(name)
            .unwrap_or_else(|| panic!("sim: no node named {name}"))
    }

    // ---- the clock -------------------------------------------------------------------------

    /// The fake clock.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Time since the sim started.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Wall time matching [`Sim::now`] ([`START_UNIX_SECS`] at the start).
    pub fn wall(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(u64::from(START_UNIX_SECS)) + self.elapsed()
    }

    // ---- stores ------------------------------------------------------------------------------

    /// The games' shared storage and KVDB, to look into (built by
    /// [`Sim::deployment_with_stores`]; panics otherwise).
    pub fn stores(&self) -> &MemStores {
        &self
            .stores
            .as_ref()
            .expect("sim: the games have no stores (use Sim::deployment_with_stores)")
            .mem
    }

    /// Delivers the result of every store request made from now on `latency` after the
    /// request (zero by default). The request itself runs when it is made.
    pub fn set_store_latency(&mut self, latency: Duration) {
        self.stores
            .as_mut()
            .expect("sim: the games have no stores (use Sim::deployment_with_stores)")
            .latency = latency;
    }

    // ---- latency and tracing -----------------------------------------------------------------

    /// Latency of links created from now on, unless [`Sim::set_latency`] says otherwise.
    pub fn set_default_latency(&mut self, latency: Duration) {
        self.default_latency = latency;
    }

    /// Latency between nodes `a` and `b` (either direction), for their current and future
    /// links. Frames on one link never overtake each other, even when the latency drops.
    pub fn set_latency(&mut self, a: &str, b: &str, latency: Duration) {
        let (a, b) = (self.idx(a), self.idx(b));
        self.latency.insert((a.min(b), a.max(b)), latency);
        for l in &mut self.links {
            let (x, y) = (l.ends[0].node, l.ends[1].node);
            if (x, y) == (a, b) || (x, y) == (b, a) {
                l.latency = latency;
            }
        }
    }

    fn latency_between(&self, a: usize, b: usize) -> Duration {
        self.latency
            .get(&(a.min(b), a.max(b)))
            .copied()
            .unwrap_or(self.default_latency)
    }

    /// Starts or stops recording every delivered frame.
    pub fn set_tracing(&mut self, on: bool) {
        self.tracing = on;
    }

    /// Takes the frames delivered since tracing started or since the last call.
    pub fn take_trace(&mut self) -> Vec<Delivery> {
        std::mem::take(&mut self.trace)
    }

    /// The frames delivered since tracing started or since the last [`Sim::take_trace`].
    pub fn trace(&self) -> &[Delivery] {
        &self.trace
    }

    // ---- borrowing nodes -------------------------------------------------------------------

    fn handler_ref(&self, name: &str) -> &dyn SimNode {
        let n = &self.nodes[self.idx(name)];
        n.handler
            .as_deref()
            .unwrap_or_else(|| panic!("sim: {name} is not running"))
    }

    /// Node `name` as its concrete type. Panics if it is missing, killed or another type.
    pub fn node<T: Any>(&self, name: &str) -> &T {
        self.handler_ref(name)
            .as_any()
            .downcast_ref::<T>()
            .unwrap_or_else(|| panic!("sim: {name} is not a {}", std::any::type_name::<T>()))
    }

    /// Node `name` as its concrete type, mutably (for calls that need no [`Io`]).
    pub fn node_mut<T: Any>(&mut self, name: &str) -> &mut T {
        let i = self.idx(name);
        self.nodes[i]
            .handler
            .as_deref_mut()
            .unwrap_or_else(|| panic!("sim: {name} is not running"))
            .as_any_mut()
            .downcast_mut::<T>()
            .unwrap_or_else(|| panic!("sim: {name} is not a {}", std::any::type_name::<T>()))
    }

    /// Runs `f` on node `name` as its concrete type with an [`Io`] and the time; what it sends
    /// or closes is applied as if a callback had done it.
    pub fn with_node<T: Any, R>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut T, &mut dyn Io, Instant) -> R,
    ) -> R {
        let i = self.idx(name);
        let now = self.now;
        let mut io = SimIo::default();
        let r = {
            let t = self.node_mut::<T>(name);
            f(t, &mut io, now)
        };
        self.absorb(i, io);
        r
    }

    /// True if a node named `name` was added (running or not).
    pub fn has_node(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// `(dispatchers, games, gates)` of a [`Sim::deployment`] (zeros otherwise).
    pub fn deployment_size(&self) -> (u16, u16, u16) {
        self.deployment
    }

    /// True unless node `name` was killed (or stopped itself) and not restarted.
    pub fn is_running(&self, name: &str) -> bool {
        self.nodes[self.idx(name)].handler.is_some()
    }

    /// Dispatcher `id` of a [`Sim::deployment`].
    pub fn dispatcher(&self, id: u16) -> &Dispatcher {
        self.node(&format!("dispatcher{id}"))
    }

    /// Game `id` of a [`Sim::deployment`].
    pub fn game(&self, id: u16) -> &GameService {
        self.node(&format!("game{id}"))
    }

    /// Gate `id` of a [`Sim::deployment`].
    pub fn gate(&self, id: u16) -> &GateService {
        self.node(&format!("gate{id}"))
    }

    // ---- calling nodes ---------------------------------------------------------------------

    /// Runs one callback on node `n` (if it is running) and applies its output.
    fn call(&mut self, n: usize, f: impl FnOnce(&mut dyn SimNode, &mut SimIo, Instant)) {
        let now = self.now;
        let mut io = SimIo::default();
        let Some(h) = self.nodes[n].handler.as_deref_mut() else {
            return;
        };
        f(h, &mut io, now);
        self.absorb(n, io);
    }

    /// Applies what node `n` asked of its Io and serves the store requests it made; stops
    /// the node if it wants to stop.
    fn absorb(&mut self, n: usize, io: SimIo) {
        for op in io.ops {
            let conn = match &op {
                Op::Send(c, _) | Op::Close(c, _) => *c,
            };
            let Some(&(l, side)) = self.nodes[n].conns.get(&conn) else {
                continue; // unknown or closed connection: ignored, as by the reactor
            };
            if self.links[l].ends[side].state != EndState::Open {
                continue;
            }
            match op {
                Op::Send(_, payload) => self.schedule(l, 1 - side, EventKind::Frame(payload)),
                Op::Close(_, reason) => {
                    self.links[l].ends[side].state = EndState::Closing;
                    self.push_event(
                        self.now,
                        Event {
                            link: l,
                            to: side,
                            kind: EventKind::Close(CloseReason::Local(reason)),
                        },
                    );
                    self.schedule(l, 1 - side, EventKind::Close(CloseReason::PeerClosed));
                }
            }
        }
        // Requests made before a stop still run, as the shell's pool finishes them at exit.
        self.serve_stores(n);
        if self.nodes[n]
            .handler
            .as_ref()
            .is_some_and(|h| h.should_stop())
        {
            self.kill_idx(n);
        }
    }

    fn push_event(&mut self, at: Instant, ev: Event) {
        self.push_due(at, Due::Link(ev));
    }

    fn push_due(&mut self, at: Instant, due: Due) {
        self.seq += 1;
        self.events.insert((at, self.seq), due);
    }

    /// Runs the store requests game node `n` made (if it is a game with stores) against the
    /// shared store, now and in order, and schedules their results for it.
    fn serve_stores(&mut self, n: usize) {
        let Some(stores) = &self.stores else {
            return;
        };
        let Some(game) = self.nodes[n]
            .handler
            .as_deref_mut()
            .and_then(|h| h.as_any_mut().downcast_mut::<GameService>())
        else {
            return;
        };
        let reqs = game.take_store_requests();
        if reqs.is_empty() {
            return;
        }
        let results = stores.mem.answer_all(reqs);
        let at = self.now + stores.latency;
        let incarnation = self.nodes[n].incarnation;
        self.push_due(
            at,
            Due::Store(StoreDelivery {
                node: n,
                incarnation,
                results,
            }),
        );
    }

    /// Queues `kind` towards side `to` of link `l`, after everything already queued there.
    fn schedule(&mut self, l: usize, to: usize, kind: EventKind) {
        let link = &mut self.links[l];
        let at = (self.now + link.latency).max(link.last_at[to]);
        link.last_at[to] = at;
        self.push_event(at, Event { link: l, to, kind });
    }

    fn deliver(&mut self, due: Due) {
        let ev = match due {
            Due::Link(ev) => ev,
            Due::Store(d) => {
                if self.nodes[d.node].incarnation == d.incarnation {
                    self.call(d.node, |h, io, now| {
                        if let Some(g) = h.as_any_mut().downcast_mut::<GameService>() {
                            g.on_store_results(io, now, d.results);
                        }
                    });
                }
                return;
            }
        };
        let end = self.links[ev.link].ends[ev.to];
        match ev.kind {
            EventKind::Frame(payload) => {
                if end.state != EndState::Open || self.nodes[end.node].handler.is_none() {
                    return;
                }
                if self.tracing {
                    let from = self.links[ev.link].ends[1 - ev.to].node;
                    self.trace.push(Delivery {
                        at: self.now,
                        from: self.nodes[from].name.clone(),
                        to: self.nodes[end.node].name.clone(),
                        payload: payload.clone(),
                    });
                }
                self.call(end.node, |h, io, now| {
                    h.on_frame(io, now, end.conn, &payload)
                });
            }
            EventKind::Close(reason) => {
                if end.state == EndState::Closed {
                    return;
                }
                self.links[ev.link].ends[ev.to].state = EndState::Closed;
                self.nodes[end.node].free_conn(end.conn);
                self.call(end.node, |h, io, now| {
                    h.on_close(io, now, end.conn, &reason)
                });
                if ev.to == DIALER {
                    self.dial_closed(self.links[ev.link].dial, ev.link);
                }
            }
        }
    }

    // ---- dials -------------------------------------------------------------------------------

    /// The dialer side of dial `d`'s link `l` closed: redial after the backoff.
    fn dial_closed(&mut self, d: usize, l: usize) {
        let now = self.now;
        let dial = &mut self.dials[d];
        if dial.state != DialState::Open(l) {
            return;
        }
        if dial.redial {
            dial.state = DialState::Waiting(now + dial.backoff);
            dial.backoff = (dial.backoff * 2).min(BACKOFF_MAX);
        } else {
            dial.state = DialState::Done;
        }
    }

    /// Connects dial `d` now, or schedules its retry if the listener is down.
    fn start_dial(&mut self, d: usize) {
        let now = self.now;
        let (dialer, target) = (self.dials[d].dialer, self.dials[d].target);
        if self.nodes[target].handler.is_none() {
            let dial = &mut self.dials[d];
            if dial.redial {
                dial.state = DialState::Waiting(now + dial.backoff);
                dial.backoff = (dial.backoff * 2).min(BACKOFF_MAX);
            } else {
                // A failed connect is not reported to the handler; the client records it.
                dial.state = DialState::Done;
                if let Some(c) = self.nodes[dialer]
                    .handler
                    .as_deref_mut()
                    .and_then(|h| h.as_any_mut().downcast_mut::<SimClient>())
                {
                    c.closed = Some(CloseReason::ConnectFailed("connection refused".into()));
                }
            }
            return;
        }
        let l = self.links.len();
        let a = self.nodes[dialer].alloc_conn();
        let b = self.nodes[target].alloc_conn();
        self.nodes[dialer].conns.insert(a, (l, 0));
        self.nodes[target].conns.insert(b, (l, 1));
        self.links.push(Link {
            ends: [
                End {
                    node: dialer,
                    conn: a,
                    state: EndState::Open,
                },
                End {
                    node: target,
                    conn: b,
                    state: EndState::Open,
                },
            ],
            dial: d,
            latency: self.latency_between(dialer, target),
            last_at: [now, now],
        });
        let dial = &mut self.dials[d];
        dial.state = DialState::Open(l);
        dial.backoff = BACKOFF_START;
        let (dial_tag, listener_tag) = (dial.dial_tag, dial.listener_tag);
        let target_addr = self.nodes[target].addr;
        let dialer_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 40000 + (l % 20000) as u16));
        self.call(dialer, |h, io, now| {
            h.on_open(io, now, a, Origin::Dialed { dial: dial_tag }, target_addr)
        });
        self.call(target, |h, io, now| {
            h.on_open(
                io,
                now,
                b,
                Origin::Accepted {
                    listener: listener_tag,
                },
                dialer_addr,
            )
        });
    }

    // ---- driving -----------------------------------------------------------------------------

    /// One iteration for every node: start due dials, deliver every frame, close and store
    /// result due at `now` (and those that fall due meanwhile), then `on_tick(now, wall)`
    /// every running node.
    pub fn step(&mut self) {
        for d in 0..self.dials.len() {
            if let DialState::Waiting(t) = self.dials[d].state {
                if t <= self.now && self.nodes[self.dials[d].dialer].handler.is_some() {
                    self.start_dial(d);
                }
            }
        }
        let mut delivered = 0;
        while let Some(entry) = self.events.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let ev = entry.remove();
            self.deliver(ev);
            delivered += 1;
            assert!(
                delivered <= MAX_EVENTS_PER_STEP,
                "sim: more than {MAX_EVENTS_PER_STEP} deliveries at +{:?}; nodes keep answering each other",
                self.elapsed()
            );
        }
        let wall = self.wall();
        for n in 0..self.nodes.len() {
            self.call(n, |h, io, now| h.on_tick(io, now, wall));
        }
    }

    /// True if a frame, close or store result is in flight, or a dial of a running node is
    /// due now.
    fn busy(&self) -> bool {
        !self.events.is_empty()
            || self.dials.iter().any(|d| {
                matches!(d.state, DialState::Waiting(t) if t <= self.now)
                    && self.nodes[d.dialer].handler.is_some()
            })
    }

    /// Steps (moving the clock to each delivery, as [`Sim::run_until_idle`] does) until
    /// `cond` holds, checking it after every step. Returns at the first step after which
    /// `cond` holds, so frames and store results still in flight stay in flight. Panics,
    /// naming `what`, if `cond` is still false when nothing is in flight any more (a step
    /// with nothing due changes nothing), or after `MAX_STEPS` steps.
    pub fn run_until(&mut self, what: &str, mut cond: impl FnMut(&Sim) -> bool) {
        let mut steps = 0;
        let mut idle_steps = 0;
        loop {
            if cond(self) {
                return;
            }
            if self.busy() {
                idle_steps = 0;
                if let Some(t) = self.next_time() {
                    self.now = self.now.max(t);
                }
            } else {
                // One more tick at `now` may still run posted work; after that, nothing can
                // change without the clock moving.
                idle_steps += 1;
                assert!(
                    idle_steps <= 1,
                    "sim: run_until({what}): still false with nothing in flight (at +{:?})",
                    self.elapsed()
                );
            }
            steps += 1;
            assert!(
                steps <= MAX_STEPS,
                "sim: run_until({what}): not settled after {MAX_STEPS} steps (at +{:?}): {}",
                self.elapsed(),
                self.in_flight()
            );
            self.step();
        }
    }

    /// Steps with the fake clock standing still until `cond` holds: each step delivers only
    /// what is due now (with latency, frames in flight stay in flight). With no store
    /// latency, store results are due at once, so this models storage answering faster than
    /// any link: the hardest case for ordering across dispatchers. Panics, naming `what`,
    /// after `MAX_STEPS_IN_PLACE` steps.
    pub fn wait_in_place(&mut self, what: &str, mut cond: impl FnMut(&Sim) -> bool) {
        for _ in 0..MAX_STEPS_IN_PLACE {
            self.step();
            if cond(self) {
                return;
            }
        }
        panic!(
            "sim: wait_in_place({what}): still false after {MAX_STEPS_IN_PLACE} steps (at +{:?}): {}",
            self.elapsed(),
            self.in_flight()
        );
    }

    /// [`Sim::run_until_idle`]: store results are deliveries like frames, so once nothing is
    /// in flight every request made so far has been answered and its consequences
    /// delivered. (It used to wait for store worker threads in real time.)
    pub fn settle(&mut self) {
        self.run_until_idle();
    }

    /// The earliest time something is due: a frame or close in flight, a dial, or a running
    /// node's deadline after `now` (deadlines at or before `now` had their tick).
    fn next_time(&self) -> Option<Instant> {
        let events = self.events.keys().next().map(|k| k.0);
        let dials = self
            .dials
            .iter()
            .filter(|d| self.nodes[d.dialer].handler.is_some())
            .filter_map(|d| match d.state {
                DialState::Waiting(t) => Some(t),
                _ => None,
            })
            .min();
        let deadlines = self
            .nodes
            .iter()
            .filter_map(|n| n.handler.as_ref()?.next_deadline())
            .filter(|t| *t > self.now)
            .min();
        [events, dials, deadlines].into_iter().flatten().min()
    }

    /// Steps until nothing is in flight: frames and closes are delivered (moving the clock to
    /// their delivery time when links have latency, firing timers and dials on the way), and
    /// it returns once no frame or close is left. Timers and redials that are not needed for
    /// that are left for [`Sim::advance`]. Panics if it does not settle.
    pub fn run_until_idle(&mut self) {
        for _ in 0..MAX_STEPS {
            self.step();
            let dial_due = self.dials.iter().any(|d| {
                matches!(d.state, DialState::Waiting(t) if t <= self.now)
                    && self.nodes[d.dialer].handler.is_some()
            });
            if self.events.is_empty() && !dial_due {
                return;
            }
            if let Some(t) = self.next_time() {
                self.now = self.now.max(t);
            }
        }
        panic!(
            "sim: not idle after {MAX_STEPS} steps (at +{:?}): {}",
            self.elapsed(),
            self.in_flight()
        );
    }

    /// Moves the clock forward by `d`, stopping at every frame delivery, dial and node
    /// deadline on the way (in time order) for a step, and ending with a step at `now + d`.
    pub fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        for _ in 0..MAX_STEPS {
            self.step();
            match self.next_time() {
                Some(t) if t <= self.now => {}
                Some(t) if t <= target => self.now = t,
                _ if self.now < target => self.now = target,
                _ => return,
            }
        }
        panic!(
            "sim: advance({d:?}) did not reach its end within {MAX_STEPS} steps (at +{:?}): {}",
            self.elapsed(),
            self.in_flight()
        );
    }

    /// What is in flight, for panic messages.
    fn in_flight(&self) -> String {
        let mut per_link: BTreeMap<(String, String), usize> = BTreeMap::new();
        for due in self.events.values() {
            let (from, to) = match due {
                Due::Link(ev) => {
                    let link = &self.links[ev.link];
                    let from = &self.nodes[link.ends[1 - ev.to].node].name;
                    (from.clone(), self.nodes[link.ends[ev.to].node].name.clone())
                }
                Due::Store(d) => ("stores".to_string(), self.nodes[d.node].name.clone()),
            };
            *per_link.entry((from, to)).or_default() += 1;
        }
        let list: Vec<String> = per_link
            .iter()
            .map(|((f, t), n)| format!("{f}→{t}: {n}"))
            .collect();
        format!(
            "{} events in flight [{}]",
            self.events.len(),
            list.join(", ")
        )
    }

    // ---- failures ------------------------------------------------------------------------------

    /// Kills node `name` as SIGKILL would: it gets no callbacks, frames it already sent still
    /// arrive, then every peer sees `on_close(PeerClosed)`; its dials stop until it restarts,
    /// and dials to it retry with backoff.
    pub fn kill(&mut self, name: &str) {
        let n = self.idx(name);
        assert!(
            self.nodes[n].handler.is_some(),
            "sim: kill({name}): not running"
        );
        self.kill_idx(n);
    }

    fn kill_idx(&mut self, n: usize) {
        self.nodes[n].handler = None;
        let conns = std::mem::take(&mut self.nodes[n].conns);
        for (_, (l, side)) in conns {
            if self.links[l].ends[side].state == EndState::Closed {
                continue;
            }
            let was_open = self.links[l].ends[side].state == EndState::Open;
            self.links[l].ends[side].state = EndState::Closed;
            if was_open {
                self.schedule(l, 1 - side, EventKind::Close(CloseReason::PeerClosed));
            }
        }
        self.nodes[n].reset_conns();
        for d in &mut self.dials {
            if d.dialer == n {
                d.state = DialState::Suspended;
            }
        }
    }

    /// Brings node `name` back (after [`Sim::kill`]) with a new state machine, as a new
    /// process: fresh connection IDs, and its dials start again now, as the reactor's would.
    pub fn restart(&mut self, name: &str, handler: impl SimNode) {
        let n = self.idx(name);
        assert!(
            self.nodes[n].handler.is_none(),
            "sim: restart({name}): still running; kill it first"
        );
        let node = &mut self.nodes[n];
        node.handler = Some(Box::new(handler));
        node.incarnation += 1;
        node.reset_conns();
        let now = self.now;
        for d in &mut self.dials {
            if d.dialer == n && d.state == DialState::Suspended {
                d.backoff = BACKOFF_START;
                d.state = if d.redial {
                    DialState::Waiting(now)
                } else {
                    DialState::Done
                };
            }
        }
    }

    /// Restarts deployment node `name` ("dispatcherN", "gameN" or "gateN") with a fresh state
    /// machine built as [`Sim::deployment`] builds it (a restarted game or gate gets a new
    /// pid for its IDs, and reads the wall clock now).
    pub fn restart_fresh(&mut self, name: &str) {
        let n = self.idx(name);
        let incarnation = self.nodes[n].incarnation + 1;
        let role = self.nodes[n].role;
        let id: u16 = name
            .trim_start_matches(|c: char| c.is_ascii_alphabetic())
            .parse()
            .unwrap_or_else(|_| panic!("sim: restart_fresh({name}): not a deployment node"));
        match role {
            Role::Dispatcher => {
                let h = self.make_dispatcher(id);
                self.restart(name, h)
            }
            Role::Game => {
                let h = self.make_game(id, incarnation);
                self.restart(name, h)
            }
            Role::Gate => {
                let h = self.make_gate(id, incarnation);
                self.restart(name, h)
            }
            Role::Client | Role::Other => {
                panic!("sim: restart_fresh({name}): not a deployment node")
            }
        }
    }

    /// Cuts the link between nodes `a` and `b` (the first open one, either direction) as a
    /// network failure would: frames in flight are lost and both sides get
    /// `on_close(CloseReason::Io("connection reset by peer"))`; a dial on it retries with
    /// backoff. Returns whether there was such a link.
    pub fn close_link(&mut self, a: &str, b: &str) -> bool {
        let (a, b) = (self.idx(a), self.idx(b));
        let found = self.links.iter().position(|l| {
            let (x, y) = (l.ends[0].node, l.ends[1].node);
            ((x, y) == (a, b) || (x, y) == (b, a))
                && l.ends.iter().all(|e| e.state == EndState::Open)
        });
        let Some(l) = found else {
            return false;
        };
        for side in 0..2 {
            self.links[l].ends[side].state = EndState::Closing;
            self.push_event(
                self.now,
                Event {
                    link: l,
                    to: side,
                    kind: EventKind::Close(CloseReason::Io("connection reset by peer".into())),
                },
            );
        }
        true
    }

    /// The first half of a hot swap of game `g`, as its binary does it: SIGUSR1, then the
    /// sim runs until the game hands over its frozen state (as the shell would write it to
    /// the freeze file) and stops. Returns the freeze file's bytes. With `fail_write`, the
    /// write is reported failed instead and the game keeps running (returns the bytes that
    /// were not written).
    pub fn freeze_game(&mut self, g: u16, fail_write: bool) -> Vec<u8> {
        let name = format!("game{g}");
        self.signal(&name, goworld_common::sig::SIGUSR1);
        let mut frozen = None;
        let deadline = self.now + Duration::from_secs(30);
        while frozen.is_none() {
            assert!(
                self.now < deadline,
                "sim: {name} did not freeze within 30 s"
            );
            let events = self.node_mut::<GameService>(&name).take_events();
            frozen = events.into_iter().find_map(|e| match e {
                goworld_game::GameEvent::Frozen(b) => Some(b),
                _ => None,
            });
            if frozen.is_none() {
                self.advance(Duration::from_millis(1));
            }
        }
        let now = self.now;
        let game = self.node_mut::<GameService>(&name);
        if fail_write {
            game.freeze_write_failed(now, "the sim's disk is full".into());
        } else {
            game.freeze_written();
            // It stops at its next callback, as the reactor stops after the tick.
            let n = self.idx(&name);
            self.kill_idx(n);
        }
        frozen.unwrap()
    }

    /// The second half of a hot swap: a new process of game `g` (started with `-restore`)
    /// thaws `frozen` before it connects, then dials every dispatcher.
    pub fn restore_game(&mut self, g: u16, frozen: &[u8]) {
        let name = format!("game{g}");
        let n = self.idx(&name);
        let incarnation = self.nodes[n].incarnation + 1;
        let mut game = self.make_game_with(g, incarnation, true);
        let mut io = goworld_common::testio::MemIo::new();
        game.thaw(&mut io, self.now, frozen)
            .unwrap_or_else(|e| panic!("sim: restore of {name}: {e}"));
        assert!(io.sent.is_empty(), "sim: {name} sent before connecting");
        self.restart(&name, game);
        // What restored game code asked of storage goes out now, as the shell's would.
        self.serve_stores(n);
    }

    /// Delivers `signal` (libc's number, see `goworld_common::sig`) to node `name`.
    pub fn signal(&mut self, name: &str, signal: i32) {
        let n = self.idx(name);
        self.call(n, |h, io, now| h.on_signal(io, now, signal));
    }

    // ---- clients ---------------------------------------------------------------------------------

    /// Connects a new recording client to gate `gate`'s client listener
    /// ([`CLIENT_LISTENER`]) now. A client never redials; if the gate is down it is closed at
    /// once.
    pub fn connect_client(&mut self, gate: u16) -> ClientHandle {
        let name = format!("client{}", self.next_client);
        self.next_client += 1;
        let n = self.add(&name, Role::Client, SimClient::default());
        let target = self.idx(&format!("gate{gate}"));
        self.dials.push(Dial {
            dialer: n,
            target,
            dial_tag: 0,
            listener_tag: CLIENT_LISTENER,
            state: DialState::Waiting(self.now),
            backoff: BACKOFF_START,
            redial: false,
        });
        self.start_dial(self.dials.len() - 1);
        ClientHandle(n)
    }

    fn client(&self, h: ClientHandle) -> &SimClient {
        self.nodes[h.0]
            .handler
            .as_deref()
            .and_then(|c| c.as_any().downcast_ref::<SimClient>())
            .expect("a client handle names a client")
    }

    /// The node name of client `h` (for [`Sim::set_latency`] and traces).
    pub fn client_name(&self, h: ClientHandle) -> &str {
        &self.nodes[h.0].name
    }

    /// Sends one frame from client `h` (ignored once it is closed).
    pub fn client_send(&mut self, h: ClientHandle, payload: &[u8]) {
        let Some(conn) = self.client(h).conn else {
            return;
        };
        let mut io = SimIo::default();
        io.send(conn, payload);
        self.absorb(h.0, io);
    }

    /// Closes client `h`'s connection (the gate sees `PeerClosed`).
    pub fn client_close(&mut self, h: ClientHandle) {
        let Some(conn) = self.client(h).conn else {
            return;
        };
        let mut io = SimIo::default();
        io.close(conn, "client closed");
        self.absorb(h.0, io);
    }

    /// Payloads client `h` received so far, in order (decode with [`ClientBound::decode`]).
    pub fn client_frames(&self, h: ClientHandle) -> Vec<Vec<u8>> {
        self.client(h).frames.clone()
    }

    /// What client `h` received so far, decoded, in order: the client's ordered trace.
    /// Panics on a frame a client could not decode (the gate must never send one).
    pub fn client_messages(&self, h: ClientHandle) -> Vec<ClientBound> {
        self.client(h)
            .frames
            .iter()
            .enumerate()
            .map(|(i, p)| {
                ClientBound::decode(p).unwrap_or_else(|e| {
                    panic!(
                        "sim: {} got an undecodable frame #{i} ({e}): {p:02x?}",
                        self.client_name(h)
                    )
                })
            })
            .collect()
    }

    /// Number of frames client `h` received so far.
    pub fn client_frame_count(&self, h: ClientHandle) -> usize {
        self.client(h).frames.len()
    }

    /// True once client `h`'s connection closed (either side) or failed to connect.
    pub fn client_closed(&self, h: ClientHandle) -> bool {
        self.client(h).closed.is_some()
    }

    /// Why client `h`'s connection closed, if it did.
    pub fn client_close_reason(&self, h: ClientHandle) -> Option<CloseReason> {
        self.client(h).closed.clone()
    }

    /// The player entity client `h` was shown (ID and type), from the first
    /// CREATE_ENTITY_ON_CLIENT with `is_player` it received.
    pub fn client_player(&self, h: ClientHandle) -> Option<(EntityId, String)> {
        self.client(h)
            .frames
            .iter()
            .find_map(|p| match ClientBound::decode(p) {
                Ok(ClientBound::Entity {
                    msg:
                        ClientMsg::CreateEntityOnClient {
                            is_player: true,
                            eid,
                            type_name,
                            ..
                        },
                    ..
                }) => Some((eid, type_name)),
                _ => None,
            })
    }
}
