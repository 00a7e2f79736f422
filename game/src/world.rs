//! The engine: [`World`] coordinates the parts that own a game's state, and runs what
//! crosses them: entity lifecycle in GoWorld's order, RPC dispatch with permission checks,
//! client binding, attribute changes sent to the right clients, and the actions game code
//! emits, run by `World::run_action`, the one runner for both contexts.
//!
//! The parts, each owning its fields: `entities` (the entity table and snapshots),
//! `spaces` (spaces, AOI, position sync; what enter, leave and migration do is in
//! `space`), `service` (the service registry and held service calls), `schedule` (every
//! timer and the crontab), `queue` (local calls, posted work and fences), `refusals`
//! (refused calls), and persistence (saves, loads, the KVDB). `view` is how game code reads
//! the world: a narrow [`WorldView`](crate::api::WorldView) over the parts, never `World`.
//!
//! Game code runs inside [`World::with_entity`], which catches a panic in game code, logs it
//! with the entity and what was running, and finishes the operation; the rest of the world
//! keeps running. Everything sent leaves through [`Net`] (the reactor's `Io` and the
//! dispatcher links); nothing here touches sockets, files or the clock.

use std::any::Any;
use std::collections::{BTreeMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Instant;

use goworld_common::displink::DispatcherLinks;
use goworld_common::id::{ClientId, EntityId, FastMap, IdGen, WallClock};
use goworld_common::proto::{Args, ClientMsg, Msg};
use goworld_common::reactor::Io;
use goworld_common::rng::Rng;
use log::{debug, error, info, warn};

use crate::api::{
    Action, CallError, Ctx, EntityType, Expose, GameClient, GameCtx, GlobalFn, Hook, PostFn,
    Registry,
};
use crate::attr::{AttrChange, Attrs};
use crate::store::Stores;

mod entities;
mod freeze;
mod persist;
mod queue;
mod refusals;
mod schedule;
mod service;
mod space;
mod spaces;
mod view;
pub(crate) use entities::{EntityMap, Rec};
pub use entities::{Snapshot, SnapshotError, TimerSnapshot};
pub use freeze::{FreezeError, Restored, ThawError, FREEZE_FORMAT};
pub use persist::{DrainState, MAX_DRAIN_ROUNDS, REPORT_EVERY, RETRY_FIRST, RETRY_MAX};
use queue::{CallBody, Deferred, Posted, Work};
use schedule::{Schedule, TimerJob};
pub use service::{HELD_CALL_LIMIT, HELD_CALL_TIMEOUT};
pub use space::{
    decode_snapshot, encode_snapshot, ENTER_SPACE_TIMEOUT, FENCE_METHOD, FENCE_TIMEOUT,
};
use spaces::Spaces;
use view::Runner;

/// Refused client calls after which the client is disconnected, unless `refused_calls_limit`
/// in `[game_common]` says otherwise ([`World::set_refused_calls_limit`]).
pub const REFUSED_CALLS_LIMIT: u32 = goworld_common::config::DEFAULT_REFUSED_CALLS_LIMIT;

/// Where the world's output goes: the reactor's `Io` and the links to the dispatchers.
pub struct Net<'a> {
    /// The reactor (or a test's in-memory `Io`).
    pub io: &'a mut dyn Io,
    /// The game's links to every dispatcher.
    pub links: &'a mut DispatcherLinks,
}

impl Net<'_> {
    /// Sends a message for `client`. Everything for one client goes through one dispatcher,
    /// chosen by the client ID, so the client gets it in the order it was sent even when its
    /// owner changes (GoWorld routes by the owner entity, and a GiveClientTo to an entity on
    /// another dispatcher can let the new owner's creates overtake the old owner's calls).
    fn send_client(&mut self, client: GameClient, msg: ClientMsg) {
        let m = Msg::ToClient {
            gate_id: client.gate_id,
            client_id: client.client_id,
            msg,
        };
        self.links
            .send_msg_by_entity(self.io, &client.client_id, &m);
    }

    fn by_entity(&mut self, eid: EntityId, msg: Msg) {
        self.links.send_msg_by_entity(self.io, &eid, &msg);
    }
}

/// Who is calling a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Another entity (any game).
    Server,
    /// A client, by its ID.
    Client(ClientId),
}

/// Every live entity of one game.
pub struct World {
    registry: Registry,
    game_id: u16,
    clock: WallClock,
    ids: IdGen,
    rng: Rng,
    entities: EntityMap,
    /// Calls and posted work run later, in order, and the fences that hold calls.
    work: Work,
    /// Spaces on this game (the nil space included), position sync and held moves.
    spaces: Spaces,
    /// What was asked of storage and the KVDB and waits for the answers.
    persist: persist::Persist,
    /// Every timer of the game, and the crontab.
    timers: Schedule,
    /// Games online, kept up to date by the game service.
    online: std::collections::BTreeSet<u16>,
    game_ready_done: bool,
    services: service::Services,
    /// Refused client calls (per client: a few logged, the rest counted, a limit that
    /// disconnects) and failing server calls (logged once per type and method).
    refusals: refusals::Refusals,
    /// Panics caught in game code (a freeze is abandoned if `on_freeze` panics).
    panics: u64,
}

impl World {
    /// A world with the registered types, asking `stores` for storage and the KVDB (see
    /// [`World::take_store_requests`]).
    pub fn new(
        mut registry: Registry,
        game_id: u16,
        clock: WallClock,
        ids: IdGen,
        rng: Rng,
        stores: Stores,
    ) -> World {
        let defs_for_services = registry.services.clone();
        if !registry.has(crate::api::SPACE_TYPE) {
            registry
                .register_space::<space::BasicSpace>()
                .expect("the built-in space type registers");
        }
        World {
            spaces: Spaces::new(goworld_common::id::nil_space_id(game_id)),
            registry,
            game_id,
            clock,
            ids,
            rng,
            entities: FastMap::default(),
            persist: persist::Persist::new(stores),
            timers: Schedule::new(),
            work: Work::default(),
            online: std::collections::BTreeSet::new(),
            game_ready_done: false,
            services: service::Services::new(defs_for_services),
            refusals: refusals::Refusals::new(REFUSED_CALLS_LIMIT),
            panics: 0,
        }
    }

    /// Number of live entities.
    pub fn len(&self) -> usize {
        self.entities.len()
    }

    /// Live entities by type name, sorted by name.
    pub fn counts_by_type(&self) -> Vec<(String, u64)> {
        let mut by: BTreeMap<&str, u64> = BTreeMap::new();
        for rec in self.entities.values() {
            *by.entry(rec.ty.name()).or_default() += 1;
        }
        by.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// Timers queued: entity timers, periodic saves (one per persistent entity) and the
    /// game's own. Steady while the entities are (a count that grows with the traffic is a
    /// leak).
    pub fn timers_pending(&self) -> usize {
        self.timers.len()
    }

    /// True when no entity lives here.
    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    /// True if entity `id` lives on this game.
    pub fn exists(&self, id: &EntityId) -> bool {
        self.entities.contains_key(id)
    }

    /// IDs of the live entities.
    pub fn ids(&self) -> impl Iterator<Item = &EntityId> {
        self.entities.keys()
    }

    /// Type name of entity `id`.
    pub fn type_of(&self, id: &EntityId) -> Option<&str> {
        self.entities.get(id).map(|r| r.ty.name())
    }

    /// The client of entity `id`.
    pub fn client_of(&self, id: &EntityId) -> Option<GameClient> {
        self.entities.get(id).and_then(|r| r.client)
    }

    /// Read access to an entity's attributes.
    pub fn attrs(&self, id: &EntityId) -> Option<&Attrs> {
        self.entities.get(id).map(|r| &r.attrs)
    }

    /// Generates a new entity ID.
    pub fn gen_id(&mut self, now: Instant) -> EntityId {
        self.ids.next(self.clock.secs(now))
    }

    /// Runs `f` (game code) with entity `id` and a context, then sends its attribute changes
    /// and runs the actions it queued. False if the entity is not here.
    fn with_entity(
        &mut self,
        net: &mut Net,
        now: Instant,
        id: EntityId,
        what: &str,
        f: impl FnOnce(&dyn EntityType, &mut dyn Any, &mut Ctx),
    ) -> bool {
        // Action lists are reused: a call that queues one action costs no allocation for it.
        let mut actions = self.work.action_list();
        // The record is taken out while game code runs, so its Ctx can read every other
        // entity (is_local, type_of, position_of) from the same map; it goes back after.
        let Some(mut rec) = self.entities.remove(&id) else {
            return false;
        };
        {
            let World {
                entities,
                ids,
                rng,
                game_id,
                clock,
                online,
                spaces,
                services,
                ..
            } = self;
            let rec = &mut rec;
            let ty = rec.ty.clone();
            let view = view::EntityView {
                game_id: *game_id,
                online,
                entities,
                spaces: spaces.map(),
                services,
            };
            let mut ctx = Ctx {
                id,
                ty: &*ty,
                now,
                clock: *clock,
                ids,
                rng,
                attrs: &mut rec.attrs,
                client: rec.client,
                actions: &mut actions,
                next_timer: &mut rec.next_timer,
                place: &mut rec.place,
                view: &view,
            };
            let obj = &mut *rec.obj;
            let run = |ctx: &mut Ctx| {
                f(&*ty, obj, ctx);
                ctx.flush_attr_changes();
            };
            if catch_unwind(AssertUnwindSafe(|| run(&mut ctx))).is_err() {
                self.panics += 1;
                // The panic hook has logged the message and location.
                error!(
                    "game code panicked in {}<{id}> {what}; the entity keeps running",
                    ty.name()
                );
                // Changes made before the panic still reach the clients.
                ctx.flush_attr_changes();
            }
        }
        let dirty = rec.place.take_newly_dirty();
        self.entities.insert(id, rec);
        if dirty {
            self.queue_sync(now, id);
        }
        self.run_actions(net, now, &mut actions);
        self.work.return_action_list(actions);
        true
    }

    fn hook(&mut self, net: &mut Net, now: Instant, id: EntityId, hook: Hook) {
        self.with_entity(net, now, id, &format!("{hook:?}"), |ty, obj, ctx| {
            ty.hook(obj, ctx, hook)
        });
    }

    /// Sends an entity's attribute changes to the clients their flags name: Client ones to
    /// its own client, AllClients ones also to the clients of the entities that see it.
    fn send_attr_changes(&mut self, net: &mut Net, id: EntityId, changes: Vec<AttrChange>) {
        let Some(rec) = self.entities.get(&id) else {
            return;
        };
        let mut watchers: Option<Vec<GameClient>> = None;
        for change in changes {
            let flags = rec.ty.attr_flags(change.root_key());
            if !(flags.client || flags.all_clients) {
                continue;
            }
            let msg = change.to_client_msg(id);
            if flags.all_clients {
                let w = watchers.get_or_insert_with(|| self.watcher_clients(&id));
                for c in w.iter() {
                    net.send_client(*c, msg.clone());
                }
            }
            if let Some(client) = rec.client {
                net.send_client(client, msg);
            }
        }
    }

    fn run_actions(&mut self, net: &mut Net, now: Instant, actions: &mut Vec<Action>) {
        for a in actions.drain(..) {
            self.run_action(net, now, a, false);
        }
    }

    /// Carries out one action of game code: the one runner for both contexts. A call to a
    /// local entity runs `at_once` (game-wide code, which borrows no entity) or is queued
    /// behind the current handler (an entity's code, whose record is out while it runs).
    pub(crate) fn run_action(&mut self, net: &mut Net, now: Instant, a: Action, at_once: bool) {
        {
            match a {
                Action::AttrChanges { from, changes } => self.send_attr_changes(net, from, changes),
                Action::CallMany { to, method, args } => {
                    let shared = Rc::new((method, args));
                    for id in to {
                        if at_once && self.entities.contains_key(&id) {
                            let body = CallBody::Shared(shared.clone());
                            self.call_body(net, now, id, body, Caller::Server);
                        } else if self.entities.contains_key(&id) {
                            (self.work).push_call(id, CallBody::Shared(shared.clone()));
                        } else {
                            net.by_entity(
                                id,
                                Msg::CallEntityMethod {
                                    eid: id,
                                    method: shared.0.clone(),
                                    args: shared.1.clone(),
                                },
                            );
                        }
                    }
                }
                Action::Call { to, method, args } => {
                    if at_once && self.entities.contains_key(&to) {
                        self.call(net, now, to, &method, args, Caller::Server);
                    } else if self.entities.contains_key(&to) {
                        self.work.push_call(to, CallBody::Own(method, args));
                    } else {
                        net.by_entity(
                            to,
                            Msg::CallEntityMethod {
                                eid: to,
                                method,
                                args,
                            },
                        );
                    }
                }
                Action::CallAllClients { from, method, args } => {
                    let msg = ClientMsg::CallEntityMethodOnClient {
                        eid: from,
                        method,
                        args,
                    };
                    for c in self.watcher_clients(&from) {
                        net.send_client(c, msg.clone());
                    }
                    if let Some(client) = self.client_of(&from) {
                        net.send_client(client, msg);
                    }
                }
                Action::CallClient { from, method, args } => {
                    if let Some(client) = self.client_of(&from) {
                        net.send_client(
                            client,
                            ClientMsg::CallEntityMethodOnClient {
                                eid: from,
                                method,
                                args,
                            },
                        );
                    }
                }
                Action::Destroy(id) => self.destroy(net, now, id),
                Action::GiveClientTo { from, to } => self.give_client(net, now, from, to),
                Action::CreateLocally { type_name, id } => {
                    self.create(net, now, &type_name, id, None);
                }
                Action::EnterSpace { from, space, pos } => {
                    self.enter_space(net, now, from, space, pos)
                }
                Action::Moved { from } => self.moved(net, from),
                Action::EnableAoi { space, distance } => self.enable_aoi(space, distance),
                Action::CreateInSpace {
                    type_name,
                    id,
                    space,
                    pos,
                } => {
                    self.create_in(net, now, &type_name, id, None, Some((space, pos)));
                }
                Action::CreateSpace { game, kind, id } => {
                    self.create_space(net, now, game, kind, id)
                }
                Action::Load {
                    game,
                    type_name,
                    id,
                } => {
                    if !self.entities.contains_key(&id) {
                        self.note_load_requested(&id);
                        net.by_entity(
                            id,
                            Msg::LoadEntitySomewhere {
                                game_id: game,
                                eid: id,
                                type_name,
                            },
                        );
                    }
                }
                Action::SetClientFilterProp { from, key, val } => {
                    if let Some(client) = self.client_of(&from) {
                        net.send_client(client, ClientMsg::SetClientProxyFilterProp { key, val });
                    }
                }
                Action::Kvdb { from, op, then } => self.kvdb_request(net, now, from, op, then),
                Action::CallNilSpaces { method, args } => self.call_nil_spaces(net, method, args),
                Action::CallFilteredClients {
                    op,
                    key,
                    val,
                    method,
                    args,
                } => {
                    let m = Msg::CallFilteredClients {
                        op,
                        key,
                        val,
                        method,
                        args,
                    };
                    net.links.send_fanout(net.io, &m.to_payload());
                }
                Action::CallService {
                    name,
                    sel,
                    method,
                    args,
                } => self.call_service(net, now, &name, sel, &method, args),
                Action::StorageExists {
                    from,
                    type_name,
                    id,
                    then,
                } => self.storage_exists(net, now, from, type_name, id, then),
                Action::AddTimer {
                    from,
                    id,
                    delay,
                    repeat,
                    method,
                    args,
                } => {
                    if let Some(rec) = self.entities.get_mut(&from) {
                        let job = TimerJob::Call {
                            eid: from,
                            id,
                            repeat,
                            method,
                            args,
                        };
                        let q = self.timers.add(now + delay, job);
                        rec.timers.insert(id, q);
                    }
                }
                Action::CancelTimer { from, id } => {
                    if let Some(q) = self
                        .entities
                        .get_mut(&from)
                        .and_then(|r| r.timers.remove(&id))
                    {
                        self.timers.cancel(q);
                    }
                }
                Action::CreateSomewhere {
                    game,
                    type_name,
                    id,
                } => {
                    if game == self.game_id {
                        self.create(net, now, &type_name, id, None);
                    } else {
                        let attrs = vec![0xc0];
                        net.by_entity(
                            id,
                            Msg::CreateEntitySomewhere {
                                game_id: game,
                                eid: id,
                                type_name,
                                attrs,
                            },
                        );
                    }
                }
            }
        }
    }

    /// Creates entity `id` of `type_name` here, with saved attributes if `data` is given, in
    /// GoWorld's order: OnInit, attributes, NOTIFY_CREATE_ENTITY, OnAttrsReady, OnCreated.
    pub fn create(
        &mut self,
        net: &mut Net,
        now: Instant,
        type_name: &str,
        id: EntityId,
        data: Option<Attrs>,
    ) -> bool {
        self.create_in(net, now, type_name, id, data, None)
    }

    /// [`create`](Self::create), then enter the local space `enter` at its position (GoWorld's
    /// `space.CreateEntity`). A space entity runs OnSpaceInit after OnInit and
    /// OnSpaceCreated instead of OnCreated.
    pub(crate) fn create_in(
        &mut self,
        net: &mut Net,
        now: Instant,
        type_name: &str,
        id: EntityId,
        data: Option<Attrs>,
        enter: Option<(EntityId, crate::api::Vec3)>,
    ) -> bool {
        let Some(ty) = self.registry.get(type_name) else {
            warn!("cannot create {type_name}<{id}>: the type is not registered");
            return false;
        };
        if self.entities.contains_key(&id) {
            warn!("cannot create {type_name}<{id}>: an entity with that ID is already here");
            return false;
        }
        let obj = ty.new_instance();
        let is_space = type_name == crate::api::SPACE_TYPE;
        let nil = self.nil_space();
        self.entities
            .insert(id, Rec::new(ty.clone(), obj, Attrs::new(), nil));
        self.hook(net, now, id, Hook::Init);
        if is_space {
            self.hook(net, now, id, Hook::SpaceInit);
        }
        let fresh = data.is_none();
        if let Some(mut data) = data {
            let (floats, ints) = ty.number_attrs();
            data.numbers_as_declared(floats, ints);
            if let Some(rec) = self.entities.get_mut(&id) {
                rec.attrs = data;
                rec.attrs.take_changes();
            }
        }
        net.by_entity(id, Msg::NotifyCreateEntity { eid: id });
        self.hook(net, now, id, Hook::AttrsReady);
        if fresh {
            // GoWorld saves a new persistent entity at once (after its defaults are set).
            self.save(id, false);
        }
        self.schedule_save(now, id);
        if is_space {
            self.space_created(net, now, id);
        } else {
            self.hook(net, now, id, Hook::Created);
        }
        if let Some((space, pos)) = enter {
            if self.entities.contains_key(&id) {
                if self.spaces.contains_key(&space) {
                    self.space_enter(net, now, id, space, pos);
                } else {
                    warn!("{type_name}<{id}> was created to enter space {space}, which is not on this game; it stays in the nil space");
                }
            }
        }
        self.run_local_calls(net, now);
        true
    }

    /// The earliest time a timer or the position sync is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.timers.next_deadline(), self.spaces.sync_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires every timer due at `now`, by deadline then insertion order.
    pub fn fire_timers(&mut self, net: &mut Net, now: Instant) {
        if self.spaces.sync_deadline().is_some_and(|t| now >= t) {
            self.flush_syncs(net);
        }
        while let Some((q, job)) = self.timers.pop_due(now) {
            match job {
                TimerJob::CheckServices => self.check_services(net, now),
                TimerJob::Cron { at } => self.run_crontab(net, now, at),
                TimerJob::ServiceTick => self.service_tick(net, now),
                TimerJob::ClaimShard { name, shard } => self.claim_shard(net, &name, shard),
                TimerJob::Global { mut f, repeat } => {
                    self.run_global(net, now, "a global timer", |ctx| f(ctx));
                    if let Some(every) = repeat {
                        self.timers.add(now + every, TimerJob::Global { f, repeat });
                    }
                }
                TimerJob::FenceTimeout { id, token } => self.fence_timeout(net, now, id, token),
                TimerJob::RefusalSweep => self.sweep_refusals(now),
                TimerJob::Save(id) => self.periodic_save(now, q, id),
                TimerJob::Call {
                    eid,
                    id,
                    repeat,
                    method,
                    args,
                } => {
                    let Some(rec) = self.entities.get_mut(&eid) else {
                        continue;
                    };
                    match repeat {
                        Some(every) => {
                            let next = TimerJob::Call {
                                eid,
                                id,
                                repeat,
                                method: method.clone(),
                                args: args.clone(),
                            };
                            let q = self.timers.add(now + every, next);
                            rec.timers.insert(id, q);
                        }
                        None => {
                            rec.timers.remove(&id);
                        }
                    }
                    self.run_call(net, now, eid, &method, &args, Caller::Server);
                }
            }
        }
    }

    /// Calls nil-space method `method` on every game (GoWorld's `CallNilSpaces`): this one
    /// after the current work, the others through one dispatcher that fans it out, so each
    /// game runs it once.
    pub(crate) fn call_nil_spaces(&mut self, net: &mut Net, method: String, args: Args) {
        let m = Msg::CallNilSpaces {
            except_game_id: self.game_id,
            method: method.clone(),
            args: args.clone(),
        };
        net.links.send_fanout(net.io, &m.to_payload());
        self.work.post(Posted::NilSpaceCall { method, args });
    }

    /// Destroys entity `id` in GoWorld's order; a second call while it runs does nothing.
    pub fn destroy(&mut self, net: &mut Net, now: Instant, id: EntityId) {
        match self.entities.get_mut(&id) {
            Some(rec) if !rec.destroying => rec.destroying = true,
            _ => return,
        }
        self.cancel_enter(net, id);
        if self.spaces.contains_key(&id) {
            self.space_destroyed(net, now, id);
        } else {
            self.space_leave(net, now, id);
            self.hook(net, now, id, Hook::Destroy);
        }
        if let Some(rec) = self.entities.get_mut(&id) {
            for q in rec.take_queue_timers() {
                self.timers.cancel(q);
            }
        }
        if let Some(client) = self.client_of(&id) {
            self.set_client(net, now, id, None);
            self.refusals.client_gone(client.client_id);
        }
        let saving = self.save(id, true);
        self.entities.remove(&id);
        self.unfence(id);
        if !saving {
            net.by_entity(id, Msg::NotifyDestroyEntity { eid: id });
        }
    }

    /// Drops entities a dispatcher refused because it declared this game dead while their
    /// link was down: their players were disconnected and may be loaded on another game by
    /// now, and their service shards re-created elsewhere, so these copies are stale. They go
    /// without OnDestroy, without a save (which could overwrite the newer copy's) and without
    /// a destroy notice (which could unroute it); spaces last, their remaining members moved
    /// to the nil space first. Returns how many were here.
    pub fn drop_fenced(&mut self, net: &mut Net, now: Instant, ids: &[EntityId]) -> usize {
        let (spaces, others): (Vec<EntityId>, Vec<EntityId>) = (ids.iter().copied())
            .filter(|id| self.entities.contains_key(id))
            .partition(|id| self.spaces.contains_key(id));
        for &id in &others {
            if let Some(rec) = self.entities.get_mut(&id) {
                rec.destroying = true;
                rec.entering = None;
            }
            self.space_leave(net, now, id);
            self.forget_fenced(id);
        }
        for &id in &spaces {
            for m in self.space_members(&id) {
                self.space_leave(net, now, m);
            }
            self.spaces.remove(&id);
            self.forget_fenced(id);
        }
        spaces.len() + others.len()
    }

    /// The bookkeeping half of [`World::drop_fenced`] for one entity.
    fn forget_fenced(&mut self, id: EntityId) {
        let Some(mut rec) = self.entities.remove(&id) else {
            return;
        };
        for q in rec.take_queue_timers() {
            self.timers.cancel(q);
        }
        if let Some(client) = rec.client.take() {
            self.refusals.client_gone(client.client_id);
        }
        self.persist.forget_held(&id);
        self.unfence(id);
    }

    /// Binds `client` to entity `id` (or unbinds with `None`), with GoWorld's client messages:
    /// the old client loses the entity, the new one gets it as its player.
    fn set_client(
        &mut self,
        net: &mut Net,
        now: Instant,
        id: EntityId,
        client: Option<GameClient>,
    ) {
        let Some(rec) = self.entities.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut rec.client, client);
        if old == client {
            return;
        }
        let type_name = rec.ty.name().to_string();
        let space = rec.place.space;
        // What its client is shown of the space: the entities it sees (its AOI creates went
        // to its client), not those that see it; with per-type distances they differ.
        let seen = self.sees(&id);
        if let Some(old) = old {
            net.send_client(old, ClientMsg::ClearClientProxyFilterProps);
            for n in &seen {
                if let Some(m) = self.destroy_msg(n) {
                    net.send_client(old, m);
                }
            }
            if self.is_real_space(&space) {
                if let Some(m) = self.destroy_msg(&space) {
                    net.send_client(old, m);
                }
            }
            net.send_client(
                old,
                ClientMsg::DestroyEntityOnClient {
                    type_name: type_name.clone(),
                    eid: id,
                },
            );
        }
        if let Some(new) = client {
            net.send_client(new, ClientMsg::ClearClientProxyFilterProps);
            if let Some(m) = self.create_msg(&id, true) {
                net.send_client(new, m);
            }
            if self.is_real_space(&space) {
                if let Some(m) = self.create_msg(&space, false) {
                    net.send_client(new, m);
                }
            }
            for n in &seen {
                if let Some(m) = self.create_msg(n, false) {
                    net.send_client(new, m);
                }
            }
        }
        if client.is_some() {
            self.hook(net, now, id, Hook::ClientConnected);
        } else if old.is_some() {
            self.hook(net, now, id, Hook::ClientDisconnected);
        }
    }

    /// Moves `from`'s client to the local entity `to`.
    fn give_client(&mut self, net: &mut Net, now: Instant, from: EntityId, to: EntityId) {
        let Some(client) = self.client_of(&from) else {
            debug!("{from} gives no client to {to}: it has none");
            return;
        };
        if !self.entities.contains_key(&to) {
            warn!("{from} cannot give its client to {to}: that entity is not on this game");
            return;
        }
        // Messages for a client all take the client's own dispatcher, so the old owner's
        // destroys and calls stay in order with the new owner's creates.
        self.set_client(net, now, from, None);
        self.set_client(net, now, to, Some(client));
    }

    /// A client connected: create its boot entity and give it the client.
    pub fn client_connected(
        &mut self,
        net: &mut Net,
        now: Instant,
        boot_type: &str,
        boot: EntityId,
        client: GameClient,
    ) {
        if self.create(net, now, boot_type, boot, None) {
            self.set_client(net, now, boot, Some(client));
        } else if !self.entities.contains_key(&boot) {
            // Its dispatcher routes the boot entity here since it sent the notice: tell it
            // there is none, so it does not keep routing there.
            net.by_entity(boot, Msg::NotifyDestroyEntity { eid: boot });
        }
        self.run_local_calls(net, now);
    }

    /// A client left: its owner loses it (no messages to the departed client).
    pub fn client_disconnected(
        &mut self,
        net: &mut Net,
        now: Instant,
        owner: EntityId,
        client_id: ClientId,
    ) {
        let Some(rec) = self.entities.get_mut(&owner) else {
            debug!("client {client_id} left; its owner {owner} is not here");
            return;
        };
        if rec.client.map(|c| c.client_id) != Some(client_id) {
            debug!("client {client_id} left, but {owner} no longer owns it");
            return;
        }
        rec.client = None;
        self.refusals.client_gone(client_id);
        self.hook(net, now, owner, Hook::ClientDisconnected);
        self.run_local_calls(net, now);
    }

    /// Gate `gate_id` is gone: every entity with a client there loses it.
    pub fn gate_disconnected(&mut self, net: &mut Net, now: Instant, gate_id: u16) {
        let owners: Vec<(EntityId, ClientId)> = self
            .entities
            .iter()
            .filter_map(|(id, r)| {
                r.client
                    .filter(|c| c.gate_id == gate_id)
                    .map(|c| (*id, c.client_id))
            })
            .collect();
        info!("gate{gate_id} disconnected: {} clients gone", owners.len());
        for (owner, client) in owners {
            self.client_disconnected(net, now, owner, client);
        }
    }

    /// A call made on this game (game code, local calls) to entity `to`. A server call to an
    /// entity that has just arrived by migration waits until the calls this game sent it
    /// through its dispatcher before it arrived are delivered, so it cannot overtake them.
    pub fn call(
        &mut self,
        net: &mut Net,
        now: Instant,
        to: EntityId,
        method: &str,
        args: Args,
        caller: Caller,
    ) {
        self.call_body(
            net,
            now,
            to,
            CallBody::Own(method.to_string(), args),
            caller,
        );
    }

    /// [`World::call`] with the method and arguments as queued.
    fn call_body(
        &mut self,
        net: &mut Net,
        now: Instant,
        to: EntityId,
        body: CallBody,
        caller: Caller,
    ) {
        // Calls made on this game wait behind a fence; a client's came through a dispatcher.
        let body = match caller {
            Caller::Server => match self.work.hold_if_fenced(to, body) {
                Some(body) => body,
                None => return,
            },
            Caller::Client(_) => body,
        };
        self.run_call(net, now, to, body.method(), body.args(), caller);
    }

    /// A call that came through a dispatcher (from another game, a client, or this game by
    /// way of the dispatcher): it runs now; a fence this game sent comes back this way.
    pub fn call_from_dispatcher(
        &mut self,
        net: &mut Net,
        now: Instant,
        to: EntityId,
        method: &str,
        args: Args,
        caller: Caller,
    ) {
        if method == space::FENCE_METHOD && matches!(caller, Caller::Server) {
            self.fence_returned(net, now, to, &args);
            return;
        }
        self.run_call(net, now, to, method, &args, caller);
    }

    /// Runs a call to entity `to`, with GoWorld's permission rules.
    fn run_call(
        &mut self,
        net: &mut Net,
        now: Instant,
        to: EntityId,
        method: &str,
        args: &Args,
        caller: Caller,
    ) {
        let Some(rec) = self.entities.get(&to) else {
            match caller {
                // It was here a moment ago (its dispatcher routed the call here): not counted
                // against the client.
                Caller::Client(cid) => {
                    self.refusals.client(cid, "entity not here", false, || {
                        format!("client {cid} called {method} on entity {to}, which is not on this game; dropped")
                    });
                    self.arm_refusal_sweep(now);
                }
                Caller::Server => {
                    if self
                        .refusals
                        .server_once(format!("{method} to an entity not here"))
                    {
                        warn!("call {method} to entity {to}, which is not on this game (dropped; reported once per method)");
                    }
                }
            }
            return;
        };
        let ty = rec.ty.clone();
        if let Caller::Client(cid) = caller {
            let why = match ty.expose(method) {
                Some(Expose::AllClients) => None,
                Some(Expose::OwnClient) if rec.client.map(|c| c.client_id) == Some(cid) => None,
                Some(Expose::OwnClient) => Some("another client's method"),
                Some(Expose::Server) => Some("a server-only method"),
                None => Some("no such method"),
            };
            if let Some(why) = why {
                self.refuse_client(net, now, cid, why, || {
                    format!(
                        "client {cid} may not call {}.{method} on {to} ({why}); dropped",
                        ty.name()
                    )
                });
                return;
            }
        }
        let mut outcome = Ok(());
        self.with_entity(net, now, to, method, |ty, obj, ctx| {
            outcome = ty.call(obj, ctx, method, args)
        });
        match outcome {
            Ok(()) => {}
            Err(CallError::NoMethod) => {
                if self
                    .refusals
                    .server_once(format!("{}.{method}: no method", ty.name()))
                {
                    warn!(
                        "{}<{to}> has no method {method} (dropped; reported once)",
                        ty.name()
                    );
                }
            }
            Err(CallError::Forbidden) => {}
            Err(CallError::BadArgs(e)) => match caller {
                Caller::Client(cid) => self.refuse_client(net, now, cid, "bad arguments", || {
                    format!(
                        "client {cid}: {}<{to}>.{method}: {e}; call dropped",
                        ty.name()
                    )
                }),
                Caller::Server => {
                    if self
                        .refusals
                        .server_once(format!("{}.{method}: bad arguments", ty.name()))
                    {
                        warn!("{}<{to}>.{method}: {e}; call dropped (reported once per type and method)", ty.name());
                    }
                }
            },
        }
        self.run_local_calls(net, now);
    }

    /// Records a refused client call (`line` is logged while the client's budget lasts, see
    /// [`refusals`]); the refusal that reaches the limit has the client disconnected by its
    /// gate (if one of this game's entities owns it, so its gate is known).
    fn refuse_client(
        &mut self,
        net: &mut Net,
        now: Instant,
        cid: ClientId,
        kind: &str,
        line: impl FnOnce() -> String,
    ) {
        let at_limit = self.refusals.client(cid, kind, true, line);
        self.arm_refusal_sweep(now);
        if !at_limit {
            return;
        }
        let limit = self.refusals.limit;
        let bound = self
            .entities
            .values()
            .find_map(|r| r.client.filter(|c| c.client_id == cid));
        match bound {
            Some(client) => {
                warn!("client {cid} made {limit} calls it may not make; disconnecting it");
                let reason = format!("{limit} calls it may not make");
                net.send_client(client, ClientMsg::KickClient { reason });
            }
            None => warn!(
                "client {cid} made {limit} calls it may not make; its gate is not known here, so it stays connected"
            ),
        }
    }

    /// Arms the sweep of refusal records of clients not bound here, if it is not armed.
    fn arm_refusal_sweep(&mut self, now: Instant) {
        if !std::mem::replace(&mut self.refusals.sweep_armed, true) {
            self.timers
                .add(now + refusals::REFUSAL_SWEEP, TimerJob::RefusalSweep);
        }
    }

    /// The sweep: records of clients no entity here is bound to are summarised and dropped.
    fn sweep_refusals(&mut self, now: Instant) {
        let bound: HashSet<ClientId> = (self.entities.values())
            .filter_map(|r| r.client.map(|c| c.client_id))
            .collect();
        self.refusals.sweep_armed = false;
        if self.refusals.sweep(&bound) {
            self.arm_refusal_sweep(now);
        }
    }

    /// Sets how many refused calls disconnect a client (`refused_calls_limit`; 0: never).
    pub fn set_refused_calls_limit(&mut self, limit: u32) {
        self.refusals.limit = limit;
    }

    /// Calls from servers that failed (no such method, bad arguments, entity not here) and
    /// were not logged, because the same type and method was reported already.
    pub fn server_call_problems_unlogged(&self) -> u64 {
        self.refusals.server_unlogged()
    }

    /// Runs queued local calls until none are left (calls made by calls run too), in order.
    ///
    /// One loop drains the queue: a call that ends in `run_local_calls` again (every call
    /// does) returns at once and leaves the queue to the loop below it, so thousands of queued
    /// calls cost one stack frame, not one each.
    pub fn run_local_calls(&mut self, net: &mut Net, now: Instant) {
        if !self.work.start_local() {
            return;
        }
        while let Some(d) = self.work.next_local() {
            match d {
                Deferred::Call(c) => {
                    if self.entities.contains_key(&c.to) {
                        self.call_body(net, now, c.to, c.body, Caller::Server);
                    } else {
                        // It left this game (migrated) after the call was queued: the call
                        // follows it through its dispatcher instead of being dropped.
                        let (method, args) = c.body.into_parts();
                        net.by_entity(
                            c.to,
                            Msg::CallEntityMethod {
                                eid: c.to,
                                method,
                                args,
                            },
                        );
                    }
                }
                Deferred::Enter { id, space, pos } => self.enter_local(net, now, id, space, pos),
            }
        }
    }

    /// Runs game-wide code with a [`GameCtx`], catching a panic in it.
    pub fn with_game_ctx(&mut self, net: &mut Net, now: Instant, f: impl FnOnce(&mut GameCtx)) {
        self.run_global(net, now, "game-wide code", f);
    }

    /// Runs global (entity-less) code with a [`GameCtx`], catching a panic in it.
    fn run_global(
        &mut self,
        net: &mut Net,
        now: Instant,
        what: &str,
        f: impl FnOnce(&mut GameCtx),
    ) {
        let mut runner = Runner {
            world: self,
            net,
            now,
        };
        let mut ctx = GameCtx { eng: &mut runner };
        if catch_unwind(AssertUnwindSafe(|| f(&mut ctx))).is_err() {
            error!("game code panicked in {what}; the game keeps running");
        }
        self.run_posted(net, now);
        self.run_local_calls(net, now);
    }

    /// Registers a crontab entry (checked once a minute, at second 2, in local time).
    pub(crate) fn register_crontab(
        &mut self,
        now: Instant,
        spec: crate::crontab::CronSpec,
        f: GlobalFn,
    ) -> crate::crontab::CronId {
        let unix = i64::from(self.clock.secs(now));
        self.timers.register_cron(now, unix, spec, f)
    }

    pub(crate) fn unregister_crontab(&mut self, id: crate::crontab::CronId) -> bool {
        self.timers.unregister_cron(id)
    }

    fn run_crontab(&mut self, net: &mut Net, now: Instant, at: i64) {
        for id in self.timers.cron_due(at) {
            let Some(f) = self.timers.cron_entry(id) else {
                continue;
            };
            self.run_global(net, now, "a crontab entry", |ctx| (f.borrow_mut())(ctx));
        }
        self.timers.cron_checked(now, at);
    }

    pub(crate) fn post(&mut self, f: PostFn) {
        self.work.post(Posted::Game(f));
    }

    /// Runs posted work until none is left, in order; like [`World::run_local_calls`], one
    /// loop drains it and a nested call returns at once.
    pub fn run_posted(&mut self, net: &mut Net, now: Instant) {
        if !self.work.start_posted() {
            return;
        }
        while let Some(p) = self.work.next_posted() {
            match p {
                Posted::Game(f) => {
                    let mut runner = Runner {
                        world: self,
                        net,
                        now,
                    };
                    let mut ctx = GameCtx { eng: &mut runner };
                    if catch_unwind(AssertUnwindSafe(|| f(&mut ctx))).is_err() {
                        error!("game code panicked in posted work; the game keeps running");
                    }
                }
                Posted::NilSpaceCall { method, args } => {
                    self.call_nil_space(net, now, &method, &args)
                }
            }
        }
    }

    /// Games online, as the game service last saw them.
    pub fn online_games(&self) -> &std::collections::BTreeSet<u16> {
        &self.online
    }

    /// The game service tells the world which games are online.
    pub fn set_online_games(&mut self, online: std::collections::BTreeSet<u16>) {
        self.online = online;
    }

    /// The deployment is ready: runs the game-ready hooks, once per process.
    pub fn game_ready(&mut self, net: &mut Net, now: Instant) {
        if std::mem::replace(&mut self.game_ready_done, true) {
            return;
        }
        self.start_services(now);
        let mut hooks = std::mem::take(&mut self.registry.ready_hooks);
        for h in &mut hooks {
            self.run_global(net, now, "the game-ready hook", |ctx| h(ctx));
        }
        self.registry.ready_hooks = hooks;
    }

    /// CALL_NIL_SPACES arrived: runs the nil-space method here.
    pub fn call_nil_space(&mut self, net: &mut Net, now: Instant, method: &str, args: &Args) {
        let Some(f) = self.registry.nil_methods.get(method).cloned() else {
            if self
                .refusals
                .server_once(format!("nil space.{method}: no method"))
            {
                warn!("the nil space has no method {method} (dropped; reported once)");
            }
            return;
        };
        let mut outcome = Ok(());
        self.run_global(net, now, method, |ctx| outcome = f(ctx, args));
        if let Err(e) = outcome {
            if self
                .refusals
                .server_once(format!("nil space.{method}: bad arguments"))
            {
                warn!("nil space.{method}: {e}; call dropped (reported once per method)");
            }
        }
    }

    /// Takes a snapshot of entity `id` at time `now` (the entity stays here).
    pub fn snapshot(&self, now: Instant, id: &EntityId) -> Result<Snapshot, SnapshotError> {
        let rec = (self.entities.get(id)).ok_or(SnapshotError::NotHere(*id))?;
        let state = rec.ty.encode_state(&*rec.obj)?;
        let mut timers = Vec::new();
        for q in rec.timers.values() {
            if let Some((
                deadline,
                TimerJob::Call {
                    repeat,
                    method,
                    args,
                    ..
                },
            )) = self.timers.get(*q)
            {
                timers.push(TimerSnapshot {
                    remaining: deadline.saturating_duration_since(now),
                    repeat: *repeat,
                    method: method.clone(),
                    args: args.clone(),
                });
            }
        }
        timers.sort_by_key(|t| t.remaining);
        Ok(Snapshot {
            id: *id,
            type_name: rec.ty.name().to_string(),
            attrs: rec.attrs.to_bytes(),
            state,
            client: rec.client,
            timers,
            space: rec.place.space,
            pos: rec.place.pos,
            yaw: rec.place.yaw,
            syncing_from_client: rec.place.syncing_from_client,
            sync_flags: rec.place.sync,
        })
    }

    /// Brings an entity back from a snapshot: its struct, attributes, client (bound quietly,
    /// no client messages) and timers re-armed at their remaining time. Runs no callbacks:
    /// migration and hot swap run theirs (OnMigrateIn, OnRestored) around this. A type the
    /// binary lacks, or state it cannot read, is an error naming it.
    pub fn restore(
        &mut self,
        net: &mut Net,
        now: Instant,
        snap: Snapshot,
    ) -> Result<(), SnapshotError> {
        let id = snap.id;
        let space = snap.space;
        let pos = snap.pos;
        self.insert_snapshot(now, snap)?;
        net.by_entity(id, Msg::NotifyCreateEntity { eid: id });
        if space != self.nil_space() && self.spaces.contains_key(&space) {
            self.space_enter(net, now, id, space, pos);
        }
        Ok(())
    }

    /// Removes entity `id` without callbacks, saves or client messages (it lives on
    /// elsewhere, from a snapshot). Its timers are cancelled.
    pub fn remove_quietly(&mut self, id: &EntityId) -> bool {
        let Some(mut rec) = self.entities.remove(id) else {
            return false;
        };
        if let Some(client) = rec.client {
            self.refusals.client_gone(client.client_id);
        }
        self.unfence(*id);
        for q in rec.take_queue_timers() {
            self.timers.cancel(q);
        }
        if let Some(space) = self.spaces.get_mut(&rec.place.space) {
            if let Some(m) = space.members.remove(id) {
                if let (Some(aoi), Some(slot)) = (space.aoi.as_mut(), m.aoi) {
                    let mut ev = Vec::new();
                    aoi.leave(slot, &mut ev);
                }
            }
        }
        true
    }

    /// The game's ID.
    pub fn game_id(&self) -> u16 {
        self.game_id
    }

    /// True if the type is registered.
    pub fn has_type(&self, name: &str) -> bool {
        self.registry.has(name)
    }
}
