//! [`Ctx`]: what an entity's code gets with `&mut self`: its ID, attributes, client and
//! place, a read-only view of the rest of the world, and [`Act`] to act on it. Everything it
//! does to others is queued as [`Action`]s, after the attribute changes made before it, and
//! run by the engine when the handler returns, in order.
//!
//! Invariants:
//! - Game code gets its own entity and a `Ctx`, never another entity's state: other
//!   entities are read through the [`WorldView`] and acted on only by actions.
//! - Attribute changes are flushed into the queue in one place, [`Act::emit`] on `Ctx`,
//!   before every action, so a client sees them in order with the calls and GiveClientTo that
//!   follow them; what is left is flushed when the handler returns (even by a panic).

use std::any::Any;
use std::time::{Duration, Instant};

use goworld_common::id::{nil_space_id, EntityId, IdGen, WallClock};
use goworld_common::proto::Args;
use goworld_common::rng::Rng;

use super::{
    Act, Action, Attr, AttrType, Entity, EntityType, GameClient, KvdbCallback, KvdbOp,
    KvdbRangeResult, KvdbResult, Placement, StorageCallback, TimerId, Vec3, WorldView,
    MIN_TIMER_INTERVAL, SYNC_NEIGHBOURS, SYNC_OWN,
};
use crate::attr::{AttrError, Attrs, ListAttr, ListMut, MapAttr, MapMut};
use crate::store::StoreError;

/// What game code gets with its entity: its ID, attributes and client, and the way to act
/// on everything else.
pub struct Ctx<'a> {
    pub(crate) id: EntityId,
    pub(crate) ty: &'a dyn EntityType,
    pub(crate) now: Instant,
    pub(crate) clock: WallClock,
    pub(crate) ids: &'a mut IdGen,
    pub(crate) rng: &'a mut Rng,
    /// The entity's attributes; changes reach clients according to their flags.
    pub attrs: &'a mut Attrs,
    pub(crate) client: Option<GameClient>,
    pub(crate) actions: &'a mut Vec<Action>,
    pub(crate) next_timer: &'a mut TimerId,
    pub(crate) place: &'a mut Placement,
    /// The rest of the world (this entity's record is out of it while its code runs).
    pub(crate) view: &'a dyn WorldView,
}

impl Act for Ctx<'_> {
    /// Queues an action after the attribute changes made so far.
    #[allow(private_interfaces)]
    fn emit(&mut self, a: Action) {
        self.flush_attr_changes();
        self.actions.push(a);
    }

    fn new_entity_id(&mut self) -> EntityId {
        self.ids.next(self.clock.secs(self.now))
    }

    fn view(&self) -> &dyn WorldView {
        self.view
    }

    fn now(&self) -> Instant {
        self.now
    }
}

impl Ctx<'_> {
    /// Moves the attribute changes made so far into the action queue.
    /// An undeclared root attribute among them is an error: logged once per type and name
    /// (it stays on the server, sent to no client, saved nowhere) and, in debug builds, a
    /// panic at once.
    pub(crate) fn flush_attr_changes(&mut self) {
        if !self.attrs.has_changes() {
            return;
        }
        let changes = self.attrs.take_changes();
        for c in &changes {
            let key = c.root_key();
            if !self.ty.attr_declared(key) && self.ty.first_undeclared(key) {
                let ty = self.ty.name();
                log::error!(
                    "{ty}<{}> wrote attribute {key:?}, which {ty} never declares: it reaches no client and is not saved; declare it in describe() with an Attr, or fix the name",
                    self.id
                );
                debug_assert!(false, "{ty}: undeclared attribute {key:?}");
            }
        }
        self.actions.push(Action::AttrChanges {
            from: self.id,
            changes,
        });
    }

    /// The value of attribute `a` (its type's default if it is missing or holds another
    /// type).
    pub fn get<V: AttrType>(&self, a: Attr<V>) -> V {
        self.attrs
            .get(a.name())
            .and_then(V::from_attr)
            .unwrap_or_default()
    }

    /// Sets attribute `a` to `v` (clients its flags name see the change).
    pub fn set<V: AttrType>(&mut self, a: Attr<V>, v: impl Into<V>) {
        self.attrs.root().set(a.name(), v.into());
    }

    /// Sets attribute `a` to `v` only if it is missing (the place for defaults, in
    /// `on_attrs_ready`); true if it set.
    pub fn set_default<V: AttrType>(&mut self, a: Attr<V>, v: impl Into<V>) -> bool {
        self.attrs.root().set_default(a.name(), v.into())
    }

    /// Removes attribute `a`; true if it was there.
    pub fn del<V: AttrType>(&mut self, a: Attr<V>) -> bool {
        self.attrs.root().del(a.name()).is_some()
    }

    /// The map attribute `a`, to change in place (created if missing, as GoWorld's
    /// `GetMapAttr` does).
    pub fn map(&mut self, a: Attr<MapAttr>) -> Result<MapMut<'_>, AttrError> {
        self.attrs.map(a.name())
    }

    /// The list attribute `a`, to change in place (created if missing).
    pub fn list(&mut self, a: Attr<ListAttr>) -> Result<ListMut<'_>, AttrError> {
        self.attrs.list(a.name())
    }

    /// This entity's ID.
    pub fn id(&self) -> EntityId {
        self.id
    }

    /// This entity's type name.
    pub fn type_name(&self) -> &str {
        self.ty.name()
    }

    /// This game's nil space.
    pub fn nil_space_id(&self) -> EntityId {
        nil_space_id(self.game_id())
    }

    /// The game's random source (seeded, so tests repeat).
    pub fn rng(&mut self) -> &mut Rng {
        self.rng
    }

    /// This entity's client, if it has one.
    pub fn client(&self) -> Option<GameClient> {
        self.client
    }

    /// The space this entity is in (its game's nil space if none).
    pub fn space_id(&self) -> EntityId {
        self.place.space
    }

    /// The kind of the space this entity is in (0: the nil space).
    pub fn space_kind(&self) -> i64 {
        self.view.space_kind(&self.place.space).unwrap_or(0)
    }

    /// This entity's position.
    pub fn position(&self) -> Vec3 {
        self.place.pos
    }

    /// This entity's yaw.
    pub fn yaw(&self) -> f32 {
        self.place.yaw
    }

    /// Moves this entity (AOI is updated; the position reaches its own client and the
    /// clients that see it at the next position sync). In a space without AOI the position
    /// is still kept (GoWorld drops it there).
    pub fn set_position(&mut self, pos: Vec3) {
        self.place.pos = pos;
        self.place.mark_sync(SYNC_OWN | SYNC_NEIGHBOURS);
        self.emit(Action::Moved { from: self.id });
    }

    /// Turns this entity (synced like the position).
    pub fn set_yaw(&mut self, yaw: f32) {
        self.place.yaw = yaw;
        self.place.mark_sync(SYNC_OWN | SYNC_NEIGHBOURS);
    }

    /// Turns this entity to face `pos` on the XZ plane.
    pub fn face_to_pos(&mut self, pos: Vec3) {
        let d = Vec3::new(pos.x - self.place.pos.x, 0.0, pos.z - self.place.pos.z);
        self.set_yaw(d.dir_to_yaw());
    }

    /// Turns this entity to face entity `other` on this game; false if it is not here.
    pub fn face_to(&mut self, other: EntityId) -> bool {
        match self.position_of(&other) {
            Some(p) => {
                self.face_to_pos(p);
                true
            }
            None => false,
        }
    }

    /// Whether position syncs from this entity's client move it (GoWorld's
    /// `SetClientSyncing`; off by default).
    pub fn set_client_syncing(&mut self, on: bool) {
        self.place.syncing_from_client = on;
    }

    /// Enters space `space` at `pos`: at once if the space is on this game, otherwise by
    /// moving this entity to the space's game (GoWorld's three-step migration). Entering
    /// another game's nil space ([`nil_space_id`]) moves the entity to that game.
    pub fn enter_space(&mut self, space: EntityId, pos: Vec3) {
        self.emit(Action::EnterSpace {
            from: self.id,
            space,
            pos,
        });
    }

    /// The entities this one sees (AOI), whose creates its client got.
    pub fn interested_in(&self) -> Vec<EntityId> {
        self.aoi_set(true)
    }

    /// The entities that see this one: their clients get its AllClients attributes,
    /// [`call_all_clients`](Self::call_all_clients) and position syncs.
    pub fn interested_by(&self) -> Vec<EntityId> {
        self.aoi_set(false)
    }

    fn aoi_set(&self, sees: bool) -> Vec<EntityId> {
        self.view.aoi_neighbours(&self.place.space, &self.id, sees)
    }

    /// True if entity `id` lives on this game (this entity included).
    pub fn is_local(&self, id: &EntityId) -> bool {
        *id == self.id || self.view.exists(id)
    }

    /// The type of entity `id` if it lives on this game.
    pub fn type_of(&self, id: &EntityId) -> Option<&str> {
        if *id == self.id {
            return Some(self.ty.name());
        }
        self.view.type_of(id)
    }

    /// The position of entity `id` if it lives on this game.
    pub fn position_of(&self, id: &EntityId) -> Option<Vec3> {
        if *id == self.id {
            return Some(self.place.pos);
        }
        self.view.position_of(id)
    }

    /// True if entity `id` lives on this game and has a client.
    pub fn has_client(&self, id: &EntityId) -> bool {
        if *id == self.id {
            return self.client.is_some();
        }
        self.view.has_client(id)
    }

    /// Creates an entity of `type_name` on this game inside the local space `space` at
    /// `pos`; returns its ID. If the space is not on this game it stays in the nil space
    /// (with a warning).
    pub fn create_entity_in(&mut self, space: EntityId, type_name: &str, pos: Vec3) -> EntityId {
        let id = self.ids.next(self.clock.secs(self.now));
        self.emit(Action::CreateInSpace {
            type_name: type_name.to_string(),
            id,
            space,
            pos,
        });
        id
    }

    /// Unix time in seconds at the event being handled (serializable, unlike `now`).
    pub fn unix_secs(&self) -> u32 {
        self.clock.secs(self.now)
    }

    /// For a space entity: its kind.
    pub fn kind(&self) -> i64 {
        self.view.space_kind(&self.id).unwrap_or(0)
    }

    /// For a space entity: turns on AOI with `distance` (the default for types that use AOI
    /// without their own distance). Call it before anything enters, at most once (in
    /// `on_space_created`).
    pub fn enable_aoi(&mut self, distance: f32) {
        self.emit(Action::EnableAoi {
            space: self.id,
            distance,
        });
    }

    /// For a space entity: how many entities of `type_name` are in it.
    pub fn count_entities(&self, type_name: &str) -> usize {
        (self.view.space_members(&self.id).iter())
            .filter(|(_, t)| *t == type_name)
            .count()
    }

    /// For a space entity: how many entities are in it.
    pub fn entity_count(&self) -> usize {
        self.view.space_members(&self.id).len()
    }

    /// For a space entity: the entities in it.
    pub fn space_entities(&self) -> Vec<EntityId> {
        (self.view.space_members(&self.id).into_iter())
            .map(|(id, _)| id)
            .collect()
    }

    /// For a space entity: creates an entity of `type_name` on this game, inside this space
    /// at `pos` (GoWorld's `space.CreateEntity`); returns its ID.
    pub fn create_entity_in_space(&mut self, type_name: &str, pos: Vec3) -> EntityId {
        let id = self.ids.next(self.clock.secs(self.now));
        self.emit(Action::CreateInSpace {
            type_name: type_name.to_string(),
            id,
            space: self.id,
            pos,
        });
        id
    }

    /// Calls `method` on this entity's client (nothing if it has none).
    pub fn call_client(&mut self, method: &str, args: Args) {
        self.emit(Action::CallClient {
            from: self.id,
            method: method.to_string(),
            args,
        });
    }

    /// Calls `method` on this entity's client and the clients of entities that see it.
    pub fn call_all_clients(&mut self, method: &str, args: Args) {
        self.emit(Action::CallAllClients {
            from: self.id,
            method: method.to_string(),
            args,
        });
    }

    /// Destroys this entity after the handler returns (idempotent).
    pub fn destroy(&mut self) {
        self.emit(Action::Destroy(self.id));
    }

    /// Gives this entity's client to the local entity `to`.
    pub fn give_client_to(&mut self, to: EntityId) {
        self.emit(Action::GiveClientTo { from: self.id, to });
    }

    /// Calls `method` with `args` on this entity after `delay`, once. The call travels by
    /// name, so it can move with the entity; it ends when the entity is destroyed.
    pub fn add_callback(&mut self, delay: Duration, method: &str, args: Args) -> TimerId {
        self.add(delay, None, method, args)
    }

    /// Calls `method` with `args` on this entity every `interval` (at least 10 ms), until
    /// cancelled or the entity is destroyed.
    pub fn add_timer(&mut self, interval: Duration, method: &str, args: Args) -> TimerId {
        let interval = interval.max(MIN_TIMER_INTERVAL);
        self.add(interval, Some(interval), method, args)
    }

    fn add(
        &mut self,
        delay: Duration,
        repeat: Option<Duration>,
        method: &str,
        args: Args,
    ) -> TimerId {
        *self.next_timer += 1;
        let id = *self.next_timer;
        self.emit(Action::AddTimer {
            from: self.id,
            id,
            delay,
            repeat,
            method: method.to_string(),
            args,
        });
        id
    }

    /// Cancels one of this entity's timers (unknown or fired IDs are ignored).
    pub fn cancel_timer(&mut self, id: TimerId) {
        self.emit(Action::CancelTimer { from: self.id, id });
    }

    /// Sets a filter property on this entity's client (for filtered client calls).
    pub fn set_client_filter_prop(&mut self, key: &str, val: &str) {
        self.emit(Action::SetClientFilterProp {
            from: self.id,
            key: key.to_string(),
            val: val.to_string(),
        });
    }

    fn kvdb<T: Entity>(&mut self, op: KvdbOp, then: Option<fn(&mut T, &mut Ctx, KvdbResult)>) {
        use crate::store::KvdbOutput;
        let then: Option<KvdbCallback> = then.map(|f| {
            Box::new(
                move |obj: &mut dyn Any, ctx: &mut Ctx, r: Result<KvdbOutput, StoreError>| {
                    if let Some(e) = obj.downcast_mut::<T>() {
                        let r = r.map(|out| match out {
                            KvdbOutput::Value(v) => v,
                            _ => None,
                        });
                        f(e, ctx, r)
                    }
                },
            ) as KvdbCallback
        });
        self.emit(Action::Kvdb {
            from: self.id,
            op,
            then,
        });
    }

    /// Reads the KVDB keys in `[begin, end)`, ordered by key bytes (GoWorld's
    /// `GetKVDBRange`); `then` runs with this entity when they arrive.
    pub fn kvdb_get_range<T: Entity>(
        &mut self,
        begin: &str,
        end: &str,
        then: fn(&mut T, &mut Ctx, KvdbRangeResult),
    ) {
        use crate::store::KvdbOutput;
        let cb: KvdbCallback = Box::new(
            move |obj: &mut dyn Any, ctx: &mut Ctx, r: Result<KvdbOutput, StoreError>| {
                if let Some(e) = obj.downcast_mut::<T>() {
                    let r = r.map(|out| match out {
                        KvdbOutput::Range(pairs) => pairs,
                        _ => Vec::new(),
                    });
                    f_range(then, e, ctx, r)
                }
            },
        );
        self.emit(Action::Kvdb {
            from: self.id,
            op: KvdbOp::GetRange {
                begin: begin.to_string(),
                end: end.to_string(),
            },
            then: Some(cb),
        });
    }

    /// Asks storage whether entity `id` of `type_name` was ever saved (GoWorld's `Exists`);
    /// `then` runs with this entity when the answer arrives.
    pub fn storage_exists<T: Entity>(
        &mut self,
        type_name: &str,
        id: EntityId,
        then: fn(&mut T, &mut Ctx, Result<bool, StoreError>),
    ) {
        let cb: StorageCallback = Box::new(
            move |obj: &mut dyn Any, ctx: &mut Ctx, r: Result<bool, StoreError>| {
                if let Some(e) = obj.downcast_mut::<T>() {
                    then(e, ctx, r)
                }
            },
        );
        self.emit(Action::StorageExists {
            from: self.id,
            type_name: type_name.to_string(),
            id,
            then: cb,
        });
    }

    /// Reads `key` from the KVDB; `then` runs with this entity when the value arrives.
    pub fn kvdb_get<T: Entity>(&mut self, key: &str, then: fn(&mut T, &mut Ctx, KvdbResult)) {
        self.kvdb(
            KvdbOp::Get {
                key: key.to_string(),
            },
            Some(then),
        );
    }

    /// Writes `key = val` to the KVDB.
    pub fn kvdb_put<T: Entity>(
        &mut self,
        key: &str,
        val: &str,
        then: Option<fn(&mut T, &mut Ctx, KvdbResult)>,
    ) {
        self.kvdb(
            KvdbOp::Put {
                key: key.to_string(),
                val: val.to_string(),
            },
            then,
        );
    }

    /// Reads `key`, storing `val` if it is missing (atomic across games); `then` gets the old
    /// value (`None` if `val` was stored).
    pub fn kvdb_get_or_put<T: Entity>(
        &mut self,
        key: &str,
        val: &str,
        then: fn(&mut T, &mut Ctx, KvdbResult),
    ) {
        self.kvdb(
            KvdbOp::GetOrPut {
                key: key.to_string(),
                val: val.to_string(),
            },
            Some(then),
        );
    }
}

/// Calls a range callback (a function, so the closure above stays `'static`).
fn f_range<T>(
    f: fn(&mut T, &mut Ctx, KvdbRangeResult),
    e: &mut T,
    ctx: &mut Ctx,
    r: KvdbRangeResult,
) {
    f(e, ctx, r)
}
