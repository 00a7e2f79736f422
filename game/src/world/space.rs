//! Spaces, AOI, position sync and EnterSpace (local and across games), in GoWorld's order
//! (reference §2.7, §3.5, §3.7, §3.8).
//!
//! Every entity has a [`Placement`]: the space it is in (its game's nil space when none),
//! its position and yaw, and the position sync it still owes clients. A space is an entity of
//! type [`SPACE_TYPE`] with a [`SpaceState`]: its kind, its members and, once AOI is enabled,
//! an [`Aoi`] over the members whose type uses AOI. The nil space (kind 0) has a state but no
//! entity record; entering or leaving it does nothing, as in GoWorld.
//!
//! Which set each operation uses (interest is directional, see [`crate::aoi`]):
//! * the creates and destroys an entity's client gets, on enter, leave, move and
//!   `set_client`, are for the entities it **sees** (interested in);
//! * AllClients attribute changes, `call_all_clients` and position syncs of an entity go to
//!   the clients of the entities that **see it** (interested by).
//!
//! Entering a space on another game takes GoWorld's three steps: QUERY_SPACE_GAMEID_FOR_MIGRATE
//! (the space's dispatcher says which game has it), MIGRATE_REQUEST (the entity's dispatcher
//! holds its calls and echoes), REAL_MIGRATE (the entity leaves its space, runs
//! `on_migrate_out`, and travels as a [`Snapshot`]; the dispatcher forwards it and then the
//! held calls). On the target game the entity is rebuilt, runs `on_attrs_ready` and
//! `on_migrate_in`, and enters the space with its client, which stayed connected.
//!
//! Invariants:
//! - Interest is directional: watcher W sees T when T is within W's own AOI distance (its
//!   type's, else the space's) on X and on Z ([`crate::aoi`]). The creates and destroys a
//!   client gets are for the entities its player sees; AllClients attribute changes,
//!   `call_all_clients` and position syncs go to the clients of the entities that see it.
//! - An entity lives on one game at a time. Everything it was (attributes, its serde struct,
//!   client, position, timers with their remaining time, sync flags) travels in REAL_MIGRATE,
//!   nothing else does; a local call queued for it after it left follows it through its
//!   dispatcher, and calls made here to an entity that just arrived wait behind a fence for
//!   the calls sent to it through the dispatcher before ([`FENCE_METHOD`]).

use std::time::{Duration, Instant};

use goworld_common::id::{nil_space_id, EntityId, FastMap};
use goworld_common::msgpack::Value;
use goworld_common::proto::{self, ClientMsg, Msg, SyncRecord};
use log::{debug, error, info, warn};
use serde::{Deserialize, Serialize};

use super::spaces::{Member, SpaceState};
use super::{Net, Rec, Snapshot, SnapshotError, TimerSnapshot, World};
use crate::aoi::{Aoi, AoiEvent, AoiEventKind, AoiId};
use crate::api::{
    Entity, GameClient, Hook, TypeDesc, Vec3, SPACE_KIND, SPACE_TYPE, SYNC_NEIGHBOURS, SYNC_OWN,
};
use crate::attr::{Attrs, MapAttr};

/// How long an EnterSpace may be in flight before another one is accepted (GoWorld's
/// `ENTER_SPACE_REQUEST_TIMEOUT`).
pub const ENTER_SPACE_TIMEOUT: Duration = Duration::from_secs(120);

/// The method name of a fence: a call a game sends an entity that has just migrated in,
/// through the entity's dispatcher, with `[game ID, token]`. It comes back after every call
/// the game sent that entity through the dispatcher before, so calls made on the game in the
/// meantime wait for it instead of overtaking those. Not a valid method name in GoWorld, and
/// never delivered to game code.
pub const FENCE_METHOD: &str = "gw:fence";

/// How long calls made on a game wait for a fence before they run anyway.
pub const FENCE_TIMEOUT: Duration = Duration::from_secs(10);

/// An EnterSpace in flight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EnterRequest {
    space: EntityId,
    pos: Vec3,
    since: Instant,
    /// MIGRATE_REQUEST sent: the entity's dispatcher holds its calls until REAL_MIGRATE or
    /// CANCEL_MIGRATE.
    sent: bool,
}

impl EnterRequest {
    /// The space and position asked for.
    pub(crate) fn target(&self) -> (EntityId, Vec3) {
        (self.space, self.pos)
    }
}

/// The space type used when the game registers none.
#[derive(Default, Serialize, Deserialize)]
pub(crate) struct BasicSpace;

impl Entity for BasicSpace {
    fn describe(_desc: &mut TypeDesc<Self>) {}
}

impl World {
    pub(crate) fn nil_space(&self) -> EntityId {
        nil_space_id(self.game_id)
    }

    /// True for a space on this game other than the nil space.
    pub(crate) fn is_real_space(&self, id: &EntityId) -> bool {
        self.spaces.get(id).is_some_and(|s| s.kind != 0)
    }

    /// The space entity `id` is in.
    pub fn space_of(&self, id: &EntityId) -> Option<EntityId> {
        self.entities.get(id).map(|r| r.place.space)
    }

    /// The position and yaw of entity `id`.
    pub fn position_of(&self, id: &EntityId) -> Option<(Vec3, f32)> {
        self.entities.get(id).map(|r| (r.place.pos, r.place.yaw))
    }

    /// The kind of local space `id`.
    pub fn space_kind(&self, id: &EntityId) -> Option<i64> {
        self.spaces.get(id).map(|s| s.kind)
    }

    /// The entities in local space `id`.
    pub fn space_members(&self, id: &EntityId) -> Vec<EntityId> {
        self.spaces
            .get(id)
            .map_or_else(Vec::new, |s| s.members.keys().copied().collect())
    }

    /// The entities `id` sees (its client got their creates).
    pub fn sees(&self, id: &EntityId) -> Vec<EntityId> {
        self.aoi_set(id, true)
    }

    /// The entities that see `id`.
    pub fn seen_by(&self, id: &EntityId) -> Vec<EntityId> {
        self.aoi_set(id, false)
    }

    fn aoi_set(&self, id: &EntityId, sees: bool) -> Vec<EntityId> {
        let Some(rec) = self.entities.get(id) else {
            return Vec::new();
        };
        self.spaces.neighbours(&rec.place.space, id, sees)
    }

    /// The clients of the entities that see `id`.
    pub(crate) fn watcher_clients(&self, id: &EntityId) -> Vec<GameClient> {
        self.seen_by(id)
            .iter()
            .filter_map(|w| self.entities.get(w).and_then(|r| r.client))
            .collect()
    }

    /// The 1002 that shows entity `id` to a client: as its player (Client and AllClients
    /// attributes) or as something it sees (AllClients attributes).
    pub(crate) fn create_msg(&self, id: &EntityId, is_player: bool) -> Option<ClientMsg> {
        let rec = self.entities.get(id)?;
        let ty = rec.ty.clone();
        let client_data = if is_player {
            rec.attrs.client_data(|k| ty.attr_flags(k).client)
        } else {
            rec.attrs.client_data(|k| ty.attr_flags(k).all_clients)
        };
        Some(ClientMsg::CreateEntityOnClient {
            is_player,
            eid: *id,
            type_name: ty.name().to_string(),
            x: rec.place.pos.x,
            y: rec.place.pos.y,
            z: rec.place.pos.z,
            yaw: rec.place.yaw,
            client_data,
        })
    }

    pub(crate) fn destroy_msg(&self, id: &EntityId) -> Option<ClientMsg> {
        let rec = self.entities.get(id)?;
        Some(ClientMsg::DestroyEntityOnClient {
            type_name: rec.ty.name().to_string(),
            eid: *id,
        })
    }

    // ---- position sync ----

    /// Sets how often position changes are sent to clients (`position_sync_interval_ms`).
    pub fn set_sync_interval(&mut self, d: Duration) {
        self.spaces.set_sync_interval(d);
    }

    /// Position syncs from clients that were not applied (entity not here, or its client
    /// syncing is off), counted rather than logged.
    pub fn syncs_ignored(&self) -> u64 {
        self.spaces.syncs_ignored()
    }

    pub(crate) fn queue_sync(&mut self, now: Instant, id: EntityId) {
        self.spaces.queue_sync(now, id);
    }

    pub(crate) fn mark_sync(&mut self, now: Instant, id: EntityId, flags: u8) {
        let Some(rec) = self.entities.get_mut(&id) else {
            return;
        };
        rec.place.mark_sync(flags);
        if rec.place.take_newly_dirty() {
            self.queue_sync(now, id);
        }
    }

    /// Sends the positions owed to clients: one 1502 per gate, through the gate's
    /// dispatcher, records `[clientid, eid, x, y, z, yaw]`.
    pub fn flush_syncs(&mut self, net: &mut Net) {
        let dirty = self.spaces.take_sync();
        let mut per_gate: FastMap<u16, Vec<u8>> = FastMap::default();
        let mut add = |c: GameClient, rec: &SyncRecord| {
            let p = per_gate.entry(c.gate_id).or_insert_with(|| {
                let mut p = Vec::with_capacity(256);
                proto::start_sync_on_clients(&mut p, c.gate_id);
                p
            });
            proto::push_sync_on_clients(p, &c.client_id, rec);
        };
        for id in &dirty {
            let Some(rec) = self.entities.get_mut(id) else {
                continue;
            };
            rec.place.queued = false;
            let flags = std::mem::take(&mut rec.place.sync);
            if flags == 0 {
                continue;
            }
            let p = rec.place.pos;
            let r = SyncRecord {
                eid: *id,
                x: p.x,
                y: p.y,
                z: p.z,
                yaw: rec.place.yaw,
            };
            let own = rec.client;
            if flags & SYNC_OWN != 0 {
                if let Some(c) = own {
                    add(c, &r);
                }
            }
            if flags & SYNC_NEIGHBOURS != 0 {
                for c in self.watcher_clients(id) {
                    add(c, &r);
                }
            }
        }
        // Keep the list's allocation for the next interval.
        self.spaces.sync_done(dirty);
        for (gate, p) in per_gate {
            net.links.send_by_gate(net.io, gate, &p);
        }
    }

    /// Position syncs from clients (through gate and dispatcher): applied to entities whose
    /// client syncing is on; the rest are counted.
    pub fn sync_from_client(&mut self, net: &mut Net, now: Instant, records: &[SyncRecord]) {
        for r in records {
            let applies = self
                .entities
                .get(&r.eid)
                .is_some_and(|rec| rec.place.syncing_from_client);
            if !applies {
                self.spaces.ignore_sync();
                continue;
            }
            let rec = self.entities.get_mut(&r.eid).expect("checked");
            rec.place.pos = Vec3::new(r.x, r.y, r.z);
            rec.place.yaw = r.yaw;
            // No echo to the client that sent it.
            self.mark_sync(now, r.eid, SYNC_NEIGHBOURS);
            self.moved(net, r.eid);
        }
    }

    // ---- AOI ----

    /// Entity `id` moved: update its space's AOI and tell the clients concerned.
    pub(crate) fn moved(&mut self, net: &mut Net, id: EntityId) {
        let Some(rec) = self.entities.get(&id) else {
            return;
        };
        let (space_id, pos) = (rec.place.space, rec.place.pos);
        let mut ev = self.spaces.aoi_scratch();
        let Some(space) = self.spaces.get_mut(&space_id) else {
            return;
        };
        let (Some(aoi), Some(slot)) = (
            space.aoi.as_mut(),
            space.members.get(&id).and_then(|m| m.aoi),
        ) else {
            self.spaces.aoi_done(ev);
            return;
        };
        aoi.move_to(slot, pos.x, pos.z, &mut ev);
        self.apply_aoi_events(net, space_id, &ev, None);
        self.spaces.aoi_done(ev);
    }

    /// Sends the creates and destroys that interest changes cause. `gone` names the slot of
    /// an entity that just left the AOI (its slot is free already).
    fn apply_aoi_events(
        &mut self,
        net: &mut Net,
        space: EntityId,
        ev: &[AoiEvent],
        gone: Option<(AoiId, EntityId)>,
    ) {
        if ev.is_empty() {
            return;
        }
        let Some(aoi) = self.spaces.get(&space).and_then(|s| s.aoi.as_ref()) else {
            return;
        };
        let eid = |slot: AoiId| match gone {
            Some((s, id)) if s == slot => id,
            _ => aoi.payload(slot),
        };
        let pairs: Vec<(EntityId, EntityId, AoiEventKind)> = ev
            .iter()
            .map(|e| (eid(e.watcher), eid(e.target), e.kind))
            .collect();
        for (w, t, kind) in pairs {
            let Some(client) = self.entities.get(&w).and_then(|r| r.client) else {
                continue;
            };
            let msg = match kind {
                AoiEventKind::Enter => self.create_msg(&t, false),
                AoiEventKind::Leave => self.destroy_msg(&t),
            };
            if let Some(m) = msg {
                net.send_client(client, m);
            }
        }
    }

    pub(crate) fn enable_aoi(&mut self, space: EntityId, distance: f32) {
        let Some(s) = self.spaces.get_mut(&space) else {
            warn!("enable_aoi on {space}, which is not a space on this game; ignored");
            return;
        };
        if s.kind == 0 {
            warn!("enable_aoi on the nil space; ignored");
        } else if s.aoi.is_some() {
            warn!("space {space}: AOI is already enabled; ignored");
        } else if !s.members.is_empty() {
            warn!(
                "space {space}: enable_aoi after {} entities entered; ignored (enable it in on_space_created)",
                s.members.len()
            );
        } else if !(distance.is_finite() && distance > 0.0) {
            warn!("space {space}: AOI distance {distance} must be positive; ignored");
        } else {
            s.aoi = Some(Aoi::new(distance));
            s.aoi_distance = distance;
            if let Some(rec) = self.entities.get_mut(&space) {
                rec.attrs
                    .root()
                    .set(crate::api::SPACE_AOI.name(), f64::from(distance));
                rec.attrs.take_changes();
            }
        }
    }

    // ---- spaces ----

    /// Creates a space of `kind` here (`game` is this game) or on `game` (0: any).
    pub(crate) fn create_space(
        &mut self,
        net: &mut Net,
        now: Instant,
        game: u16,
        kind: i64,
        id: EntityId,
    ) {
        if kind == 0 {
            warn!("cannot create a space of kind 0 (each game has one nil space)");
            return;
        }
        let attrs = Attrs::from_map(MapAttr::new().with(SPACE_KIND.name(), kind));
        if game == self.game_id {
            self.create(net, now, SPACE_TYPE, id, Some(attrs));
        } else {
            net.by_entity(
                id,
                Msg::CreateEntitySomewhere {
                    game_id: game,
                    eid: id,
                    type_name: SPACE_TYPE.to_string(),
                    attrs: attrs.to_bytes(),
                },
            );
        }
    }

    /// A space entity was created: it becomes a space, then OnSpaceCreated runs.
    pub(crate) fn space_created(&mut self, net: &mut Net, now: Instant, id: EntityId) {
        let kind = self
            .entities
            .get(&id)
            .and_then(|r| {
                r.attrs
                    .as_map()
                    .get(SPACE_KIND.name())
                    .and_then(|v| v.as_int())
            })
            .unwrap_or(0);
        if kind == 0 {
            warn!("space {id} was created without a kind; it holds entities but sends nothing to clients");
        }
        self.spaces.insert(id, SpaceState::new(kind));
        self.hook(net, now, id, Hook::SpaceCreated);
    }

    /// A space is destroyed: OnSpaceDestroy, then everything in it is destroyed.
    pub(crate) fn space_destroyed(&mut self, net: &mut Net, now: Instant, id: EntityId) {
        self.hook(net, now, id, Hook::SpaceDestroy);
        let members = self.space_members(&id);
        for m in members {
            self.destroy(net, now, m);
        }
        self.spaces.remove(&id);
    }

    /// Puts entity `id` (in its game's nil space) into local space `space_id` at `pos`, in
    /// GoWorld's order: the space entity to its client, AOI (creates both ways),
    /// OnEntityEnterSpace, OnEnterSpace. Entering the nil space does nothing.
    pub(crate) fn space_enter(
        &mut self,
        net: &mut Net,
        now: Instant,
        id: EntityId,
        space_id: EntityId,
        pos: Vec3,
    ) {
        let Some(space) = self.spaces.get(&space_id) else {
            return;
        };
        let (kind, aoi_on, dist) = (space.kind, space.aoi.is_some(), space.aoi_distance);
        let Some(rec) = self.entities.get_mut(&id) else {
            return;
        };
        rec.place.space = space_id;
        if kind == 0 {
            return;
        }
        rec.place.pos = pos;
        let (ty, client) = (rec.ty.clone(), rec.client);
        self.mark_sync(now, id, SYNC_OWN | SYNC_NEIGHBOURS);
        let radius = ty.aoi_distance().map(|d| if d > 0.0 { d } else { dist });
        self.spaces
            .get_mut(&space_id)
            .expect("checked")
            .members
            .insert(id, Member { ty, aoi: None });
        if let Some(c) = client {
            if let Some(m) = self.create_msg(&space_id, false) {
                net.send_client(c, m);
            }
        }
        if let (true, Some(r)) = (aoi_on, radius) {
            let mut ev = self.spaces.aoi_scratch();
            let space = self.spaces.get_mut(&space_id).expect("checked");
            let aoi = space.aoi.as_mut().expect("checked");
            let slot = aoi.enter(id, pos.x, pos.z, r, &mut ev);
            space.members.get_mut(&id).expect("inserted").aoi = Some(slot);
            self.apply_aoi_events(net, space_id, &ev, None);
            self.spaces.aoi_done(ev);
        }
        self.hook(net, now, space_id, Hook::EntityEnterSpace(id));
        self.hook(net, now, id, Hook::EnterSpace);
    }

    /// Puts entity `id` (just restored by a hot swap) into `space_id` at `pos` with no
    /// callbacks and no client messages: the clients kept their view. Its AOI neighbourhood
    /// is recomputed from the positions.
    pub(crate) fn place_quietly(&mut self, id: EntityId, space_id: EntityId, pos: Vec3) {
        let Some(space) = self.spaces.get(&space_id) else {
            warn!("{id}: its space {space_id} was not restored; it stays in the nil space");
            return;
        };
        let (aoi_on, dist) = (space.aoi.is_some(), space.aoi_distance);
        let Some(rec) = self.entities.get_mut(&id) else {
            return;
        };
        rec.place.space = space_id;
        rec.place.pos = pos;
        let ty = rec.ty.clone();
        let radius = ty.aoi_distance().map(|d| if d > 0.0 { d } else { dist });
        let mut ev = self.spaces.aoi_scratch();
        let space = self.spaces.get_mut(&space_id).expect("checked");
        space.members.insert(id, Member { ty, aoi: None });
        if let (true, Some(r)) = (aoi_on, radius) {
            let aoi = space.aoi.as_mut().expect("checked");
            let slot = aoi.enter(id, pos.x, pos.z, r, &mut ev);
            space.members.get_mut(&id).expect("inserted").aoi = Some(slot);
        }
        self.spaces.aoi_done(ev);
    }

    /// Takes entity `id` out of its space (back to the nil space), in GoWorld's order: AOI
    /// (destroys both ways), the space entity destroyed on its client, OnEntityLeaveSpace,
    /// OnLeaveSpace. Leaving the nil space does nothing.
    pub(crate) fn space_leave(&mut self, net: &mut Net, now: Instant, id: EntityId) {
        let nil = self.nil_space();
        let Some(rec) = self.entities.get_mut(&id) else {
            return;
        };
        let space_id = rec.place.space;
        if space_id == nil {
            return;
        }
        rec.place.space = nil;
        let client = rec.client;
        let mut ev = self.spaces.aoi_scratch();
        let Some(space) = self.spaces.get_mut(&space_id) else {
            return;
        };
        if space.kind == 0 {
            return;
        }
        let member = space.members.remove(&id);
        if let (Some(aoi), Some(slot)) = (space.aoi.as_mut(), member.and_then(|m| m.aoi)) {
            aoi.leave(slot, &mut ev);
            self.apply_aoi_events(net, space_id, &ev, Some((slot, id)));
        }
        self.spaces.aoi_done(ev);
        if let Some(c) = client {
            if let Some(m) = self.destroy_msg(&space_id) {
                net.send_client(c, m);
            }
        }
        self.hook(net, now, space_id, Hook::EntityLeaveSpace(id));
        self.hook(net, now, id, Hook::LeaveSpace(space_id));
    }

    // ---- EnterSpace and migration ----

    /// Game code asked entity `id` to enter `space` at `pos`.
    pub(crate) fn enter_space(
        &mut self,
        net: &mut Net,
        now: Instant,
        id: EntityId,
        space: EntityId,
        pos: Vec3,
    ) {
        let local = self.spaces.contains_key(&space);
        let Some(rec) = self.entities.get_mut(&id) else {
            return;
        };
        if let Some(r) = rec.entering {
            if now < r.since + ENTER_SPACE_TIMEOUT {
                // GoWorld logs an error and still calls OnEnterSpace; we only say why.
                warn!(
                    "{}<{id}> is entering space {}; enter_space({space}) ignored",
                    rec.ty.name(),
                    r.space
                );
                return;
            }
        }
        if local && rec.place.space == space {
            warn!("{}<{id}> is already in space {space}", rec.ty.name());
            return;
        }
        rec.entering = Some(EnterRequest {
            space,
            pos,
            since: now,
            sent: false,
        });
        if local {
            self.work.push_enter(id, space, pos);
        } else {
            net.by_entity(
                space,
                Msg::QuerySpaceGameIdForMigrate {
                    space_id: space,
                    eid: id,
                    game_id: None,
                },
            );
        }
    }

    /// A local enter, run after the handler that asked for it.
    pub(crate) fn enter_local(
        &mut self,
        net: &mut Net,
        now: Instant,
        id: EntityId,
        space: EntityId,
        pos: Vec3,
    ) {
        let Some(rec) = self.entities.get_mut(&id) else {
            return;
        };
        match rec.entering {
            Some(r) if r.space == space && !r.sent => rec.entering = None,
            _ => return,
        }
        if !self.spaces.contains_key(&space) {
            warn!("{id}: space {space} was destroyed; enter cancelled");
            self.hook(net, now, id, Hook::EnterSpaceFailed(space));
            return;
        }
        if rec.place.space == space {
            return;
        }
        self.space_leave(net, now, id);
        if self.entities.contains_key(&id) {
            self.space_enter(net, now, id, space, pos);
        }
    }

    /// Forgets an EnterSpace in flight; if the migrate request was sent, the entity's
    /// dispatcher is told to release its held calls.
    pub(crate) fn cancel_enter(&mut self, net: &mut Net, id: EntityId) {
        let Some(r) = self.entities.get_mut(&id).and_then(|r| r.entering.take()) else {
            return;
        };
        if r.sent {
            net.by_entity(id, Msg::CancelMigrate { eid: id });
        }
    }

    /// Step 1 answered: `game` has `space` (0: no game has it).
    pub fn on_query_space_ack(
        &mut self,
        net: &mut Net,
        now: Instant,
        space: EntityId,
        eid: EntityId,
        game: u16,
    ) {
        let local = self.spaces.contains_key(&space);
        let Some(rec) = self.entities.get_mut(&eid) else {
            debug!("space query for {eid}, which is no longer here");
            return;
        };
        let Some(r) = rec
            .entering
            .as_mut()
            .filter(|r| r.space == space && !r.sent)
        else {
            warn!("{eid}: stale answer to its query for space {space}; ignored");
            return;
        };
        if game == 0 {
            warn!(
                "{}<{eid}> cannot enter space {space}: no game has it; it stays where it is",
                rec.ty.name()
            );
            rec.entering = None;
            self.hook(net, now, eid, Hook::EnterSpaceFailed(space));
            self.run_local_calls(net, now);
            return;
        }
        if game == self.game_id {
            // The space was created here after the query left.
            if local {
                let pos = r.pos;
                self.work.push_enter(eid, space, pos);
                self.run_local_calls(net, now);
            } else {
                warn!("{eid}: space {space} is said to be here but is not; enter cancelled");
                rec.entering = None;
            }
            return;
        }
        r.sent = true;
        net.by_entity(
            eid,
            Msg::MigrateRequest {
                eid,
                space_id: space,
                space_game_id: game,
            },
        );
    }

    /// Step 2 answered: the entity's dispatcher holds its calls; move it to `game`.
    pub fn on_migrate_ack(
        &mut self,
        net: &mut Net,
        now: Instant,
        eid: EntityId,
        space: EntityId,
        game: u16,
    ) {
        if self.held_service_calls() > 0 {
            // Service calls made here wait for their shards; some may be this entity's, and a
            // call it makes from its next game must not overtake them. It leaves after them.
            debug!("{eid}: migration waits for the service calls held here");
            self.spaces.hold_migration((eid, space, game));
            return;
        }
        let Some(rec) = self.entities.get_mut(&eid) else {
            debug!("migrate ack for {eid}, which is no longer here");
            return;
        };
        let pos = match rec.entering {
            Some(r) if r.space == space && r.sent => r.pos,
            _ => {
                warn!("{eid}: stale migrate ack for space {space}; releasing its calls");
                net.by_entity(eid, Msg::CancelMigrate { eid });
                return;
            }
        };
        rec.entering = None;
        self.space_leave(net, now, eid);
        self.hook(net, now, eid, Hook::MigrateOut);
        let snap = match self.snapshot(now, &eid) {
            Ok(mut s) => {
                s.space = space;
                s.pos = pos;
                s
            }
            Err(e) => {
                warn!("{eid} cannot migrate ({e}); it stays here");
                net.by_entity(eid, Msg::CancelMigrate { eid });
                return;
            }
        };
        self.remove_quietly(&eid);
        // With a client it travels through the client's dispatcher, behind the messages this
        // game sent that client; that dispatcher relays it, and the new game announces the
        // entity to the entity's own dispatcher, which then releases its held calls.
        let route = snap.client.map_or(eid, |c| c.client_id);
        net.by_entity(
            route,
            Msg::RealMigrate {
                eid,
                target_game: game,
                data: encode_snapshot(&snap),
            },
        );
        // What the callbacks queued runs now, as GoWorld's post queue runs after each
        // packet; calls to the entity follow it through its dispatcher, after REAL_MIGRATE.
        self.run_local_calls(net, now);
    }

    /// Runs the migrations that waited for held service calls, once none are held.
    pub(crate) fn resume_waiting_migrations(&mut self, net: &mut Net, now: Instant) {
        if self.held_service_calls() > 0 || !self.spaces.migrations_held() {
            return;
        }
        for (eid, space, game) in self.spaces.take_held_migrations() {
            self.on_migrate_ack(net, now, eid, space, game);
        }
    }

    /// Step 3 arrived here: rebuild the entity, OnAttrsReady, OnMigrateIn, enter its space.
    /// `gates_down` are the gates the dispatcher that brought it reported gone: a client
    /// there died while the entity travelled, so it arrives without one and its
    /// client-disconnected callback runs last.
    pub fn on_real_migrate(
        &mut self,
        net: &mut Net,
        now: Instant,
        eid: EntityId,
        data: &[u8],
        gates_down: &std::collections::BTreeSet<u16>,
    ) {
        let mut snap = match decode_snapshot(eid, data) {
            Ok(s) => s,
            Err(e) => {
                error!("REAL_MIGRATE of {eid} is unreadable ({e}); the entity is lost");
                return;
            }
        };
        let (space, pos, type_name) = (snap.space, snap.pos, snap.type_name.clone());
        let lost_client = snap.client.filter(|c| gates_down.contains(&c.gate_id));
        if let Some(c) = lost_client {
            info!(
                "{type_name}<{eid}> arrives without its client {}: gate{} died while it migrated",
                c.client_id, c.gate_id
            );
            snap.client = None;
        }
        if let Err(e) = self.insert_snapshot(now, snap) {
            error!("REAL_MIGRATE of {type_name}<{eid}>: {e}; the entity is lost");
            return;
        }
        // Its own dispatcher learns it is here (needed when it came through its client's
        // dispatcher; harmless otherwise), then the fence follows on the same link.
        net.by_entity(eid, Msg::NotifyCreateEntity { eid });
        self.fence(net, now, eid);
        self.hook(net, now, eid, Hook::AttrsReady);
        self.hook(net, now, eid, Hook::MigrateIn);
        if self.entities.contains_key(&eid) && space != self.nil_space() {
            if self.spaces.contains_key(&space) {
                self.space_enter(net, now, eid, space, pos);
            } else {
                // The space was destroyed meanwhile, or its game died and the entity was sent
                // back here: game code learns the enter did not happen.
                warn!("{type_name}<{eid}> arrived for space {space}, which is not here; it stays in the nil space");
                self.hook(net, now, eid, Hook::EnterSpaceFailed(space));
            }
        }
        if lost_client.is_some() && self.entities.contains_key(&eid) {
            self.hook(net, now, eid, Hook::ClientDisconnected);
        }
        self.run_local_calls(net, now);
    }

    /// Entity `id` just arrived here: calls made here wait until the calls this game sent it
    /// through its dispatcher while it was elsewhere are delivered (they may be on the way
    /// still, and would be overtaken by a direct call).
    fn fence(&mut self, net: &mut Net, now: Instant, id: EntityId) {
        let timers = &mut self.timers;
        let token = self.work.fence(id, |token| {
            timers.add(
                now + FENCE_TIMEOUT,
                super::TimerJob::FenceTimeout { id, token },
            )
        });
        net.by_entity(
            id,
            Msg::CallEntityMethod {
                eid: id,
                method: FENCE_METHOD.to_string(),
                args: crate::args![self.game_id, token as i64],
            },
        );
    }

    /// A fence came back through entity `id`'s dispatcher: the calls that waited for it run.
    pub(crate) fn fence_returned(
        &mut self,
        net: &mut Net,
        now: Instant,
        id: EntityId,
        args: &[Vec<u8>],
    ) {
        let Ok((game, token)) = <(u16, i64) as crate::args::FromArgs>::from_args(args) else {
            warn!("{id}: malformed fence ignored");
            return;
        };
        if game != self.game_id || self.work.fence_token(&id).map(|t| t as i64) != Some(token) {
            debug!("{id}: fence {game}/{token} is not this game's latest; ignored");
            return;
        }
        self.unfence(id);
        self.run_local_calls(net, now);
    }

    /// The fence with `token` did not come back within [`FENCE_TIMEOUT`].
    pub(crate) fn fence_timeout(&mut self, net: &mut Net, now: Instant, id: EntityId, token: u64) {
        if self.work.fence_token(&id) != Some(token) {
            return;
        }
        warn!("{id}: its fence did not come back in {FENCE_TIMEOUT:?}; the calls made here meanwhile run now");
        self.unfence(id);
        self.run_local_calls(net, now);
    }

    /// Entity `id` is no longer fenced (its fence came back, or it left this game): the calls
    /// that waited run next, in order (or follow it, if it left).
    pub(crate) fn unfence(&mut self, id: EntityId) {
        if let Some(timeout) = self.work.lift_fence(&id) {
            self.timers.cancel(timeout);
        }
    }

    /// Builds an entity from a snapshot (struct, attributes, client bound quietly,
    /// placement, timers at their remaining time) in the nil space. No callbacks.
    pub(crate) fn insert_snapshot(
        &mut self,
        now: Instant,
        snap: Snapshot,
    ) -> Result<(), SnapshotError> {
        let ty = (self.registry.get(&snap.type_name))
            .ok_or_else(|| SnapshotError::UnknownType(snap.type_name.clone()))?;
        if self.entities.contains_key(&snap.id) {
            return Err(SnapshotError::AlreadyHere(snap.id));
        }
        let obj = ty.decode_state(&snap.state)?;
        let attrs = Attrs::from_bytes(&snap.attrs).map_err(|err| SnapshotError::Attrs {
            type_name: snap.type_name.clone(),
            id: snap.id,
            err,
        })?;
        let mut rec = Rec::new(ty, obj, attrs, self.nil_space());
        rec.client = snap.client;
        rec.place.pos = snap.pos;
        rec.place.yaw = snap.yaw;
        rec.place.syncing_from_client = snap.syncing_from_client;
        for t in snap.timers {
            rec.next_timer += 1;
            let job = super::TimerJob::Call {
                eid: snap.id,
                id: rec.next_timer,
                repeat: t.repeat,
                method: t.method,
                args: t.args,
            };
            let q = self.timers.add(now + t.remaining, job);
            rec.timers.insert(rec.next_timer, q);
        }
        self.entities.insert(snap.id, rec);
        self.schedule_save(now, snap.id);
        if snap.sync_flags != 0 {
            self.mark_sync(now, snap.id, snap.sync_flags);
        }
        Ok(())
    }
}

/// Encodes a snapshot as REAL_MIGRATE's msgpack map, keyed like GoWorld's
/// `entityMigrateData` (`T`, `A`, `C`, `Pos`, `Yaw`, `SP`, `TD`, `SFC`, `SIF`) plus `S`,
/// the entity's own struct (GoWorld drops plain struct fields).
pub fn encode_snapshot(s: &Snapshot) -> Vec<u8> {
    let key = |k: &str| Value::Str(k.to_string());
    let f = |v: f32| Value::Float(f64::from(v));
    let attrs = goworld_common::msgpack::decode_exact(&s.attrs).unwrap_or(Value::Map(Vec::new()));
    let client = match s.client {
        Some(c) => Value::Map(vec![
            (key("ClientID"), Value::Str(c.client_id.to_text())),
            (key("GateID"), Value::Int(i64::from(c.gate_id))),
        ]),
        None => Value::Nil,
    };
    let timers = Value::Array(
        s.timers
            .iter()
            .map(|t| {
                Value::Map(vec![
                    (key("R"), Value::Int(t.remaining.as_nanos() as i64)),
                    (
                        key("I"),
                        t.repeat
                            .map_or(Value::Nil, |d| Value::Int(d.as_nanos() as i64)),
                    ),
                    (key("M"), Value::Str(t.method.clone())),
                    (
                        key("A"),
                        Value::Array(t.args.iter().map(|a| Value::Bin(a.clone())).collect()),
                    ),
                ])
            })
            .collect(),
    );
    let v = Value::Map(vec![
        (key("T"), Value::Str(s.type_name.clone())),
        (key("A"), attrs),
        (key("S"), Value::Bin(s.state.clone())),
        (key("C"), client),
        (
            key("Pos"),
            Value::Map(vec![
                (key("X"), f(s.pos.x)),
                (key("Y"), f(s.pos.y)),
                (key("Z"), f(s.pos.z)),
            ]),
        ),
        (key("Yaw"), f(s.yaw)),
        (key("SP"), Value::Str(s.space.to_text())),
        (key("TD"), timers),
        (key("SFC"), Value::Bool(s.syncing_from_client)),
        (key("SIF"), Value::Int(i64::from(s.sync_flags))),
    ]);
    v.to_bytes()
}

/// Decodes [`encode_snapshot`]'s bytes for entity `id`.
pub fn decode_snapshot(id: EntityId, b: &[u8]) -> Result<Snapshot, SnapshotError> {
    let v = goworld_common::msgpack::decode_exact(b)
        .map_err(|e| SnapshotError::Msgpack(e.to_string()))?;
    let bad = |field: &'static str, want: &'static str| SnapshotError::Field { field, want };
    let get = |k: &'static str| v.map_get(k).ok_or(bad(k, "present"));
    let float = |v: &Value, k: &'static str| {
        v.map_get(k)
            .and_then(|x| x.as_f64())
            .map(|x| x as f32)
            .ok_or(bad(k, "a number"))
    };
    let id_of = |v: &Value, k: &'static str| {
        v.as_str()
            .and_then(EntityId::parse)
            .ok_or(bad(k, "an entity ID"))
    };
    let type_name = get("T")?.as_str().ok_or(bad("T", "a string"))?.to_string();
    // Kept as bytes; the attribute values are checked when the entity is built from them.
    let attrs = match get("A")? {
        a @ Value::Map(_) => a.to_bytes(),
        _ => return Err(bad("A", "a map")),
    };
    let state = match get("S")? {
        Value::Bin(b) => b.clone(),
        _ => return Err(bad("S", "bytes")),
    };
    let client = match get("C")? {
        Value::Nil => None,
        c => Some(GameClient {
            client_id: id_of(
                c.map_get("ClientID").ok_or(bad("C.ClientID", "present"))?,
                "C.ClientID",
            )?,
            gate_id: c
                .map_get("GateID")
                .and_then(|g| g.as_i64())
                .and_then(|g| u16::try_from(g).ok())
                .ok_or(bad("C.GateID", "a gate ID"))?,
        }),
    };
    let pos_v = get("Pos")?;
    let pos = Vec3::new(float(pos_v, "X")?, float(pos_v, "Y")?, float(pos_v, "Z")?);
    let mut timers = Vec::new();
    for t in get("TD")?.as_array().ok_or(bad("TD", "a list"))? {
        let ns = |k: &str| {
            t.map_get(k)
                .and_then(|x| x.as_i64())
                .map(|n| Duration::from_nanos(n.max(0) as u64))
        };
        timers.push(TimerSnapshot {
            remaining: ns("R").ok_or(bad("TD.R", "a duration"))?,
            repeat: ns("I"),
            method: t
                .map_get("M")
                .and_then(|m| m.as_str())
                .ok_or(bad("TD.M", "a string"))?
                .to_string(),
            args: t
                .map_get("A")
                .and_then(|a| a.as_array())
                .ok_or(bad("TD.A", "a list"))?
                .iter()
                .map(|a| match a {
                    Value::Bin(b) => Ok(b.clone()),
                    _ => Err(bad("TD.A", "a list of bytes")),
                })
                .collect::<Result<_, _>>()?,
        });
    }
    Ok(Snapshot {
        id,
        type_name,
        attrs,
        state,
        client,
        timers,
        space: id_of(get("SP")?, "SP")?,
        pos,
        yaw: v
            .map_get("Yaw")
            .and_then(|x| x.as_f64())
            .ok_or(bad("Yaw", "a number"))? as f32,
        syncing_from_client: get("SFC")?.as_bool().ok_or(bad("SFC", "a bool"))?,
        sync_flags: get("SIF")?
            .as_i64()
            .and_then(|x| u8::try_from(x).ok())
            .ok_or(bad("SIF", "sync flags"))?,
    })
}
