//! The game developer's API: entity types, their attributes and RPC methods, and the context
//! game code runs with.
//!
//! A type is defined in one place, [`Entity::describe`]: persistent or not, AOI, attributes
//! with their flags, and methods with who may call them. [`Registry::register`] checks the
//! definition (a duplicate type, a duplicate method, or `Persistent` on a non-persistent type
//! is a start-up error) and erases the type, so the engine stores every entity the same way.
//!
//! Game code gets its own entity (`&mut self`) and a [`Ctx`], never another entity's state:
//! calls, `destroy`, `give_client_to` and the like are queued as [`Action`]s and run by the
//! engine after the handler returns, in order.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use goworld_common::id::{nil_space_id, EntityId, IdGen, WallClock};
use goworld_common::proto::Args;
use goworld_common::rng::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::args::{ArgError, FromArgs};
use crate::attr::{AttrChange, Attrs};
use crate::GameClient;

/// How an attribute is shown to clients and kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttrFlags {
    /// Sent to the entity's own client.
    pub client: bool,
    /// Sent to its own client and the clients of entities that see it (implies `client`).
    pub all_clients: bool,
    /// Saved to storage (persistent types only).
    pub persistent: bool,
}

/// One attribute flag, as GoWorld's `DefineAttr` spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrFlag {
    /// Sent to the entity's own client.
    Client,
    /// Sent to the own client and to the clients of entities that see it.
    AllClients,
    /// Saved to storage.
    Persistent,
}

/// Who may call a method (GoWorld's plain, `_Client` and `_AllClients` methods).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expose {
    /// Servers only (other entities).
    Server,
    /// Servers and the entity's own client.
    OwnClient,
    /// Servers and any client.
    AllClients,
}

/// Lifecycle callbacks the engine runs, in GoWorld's order (reference §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// [`Entity::on_init`].
    Init,
    /// [`Entity::on_attrs_ready`].
    AttrsReady,
    /// [`Entity::on_created`].
    Created,
    /// [`Entity::on_destroy`].
    Destroy,
    /// [`Entity::on_client_connected`].
    ClientConnected,
    /// [`Entity::on_client_disconnected`].
    ClientDisconnected,
    /// [`Entity::on_enter_space`].
    EnterSpace,
    /// [`Entity::on_leave_space`], with the space left.
    LeaveSpace(EntityId),
    /// [`Entity::on_enter_space_failed`], with the space it could not enter.
    EnterSpaceFailed(EntityId),
    /// [`Entity::on_migrate_out`].
    MigrateOut,
    /// [`Entity::on_migrate_in`].
    MigrateIn,
    /// [`Entity::on_freeze`].
    Freeze,
    /// [`Entity::on_restored`].
    Restored,
    /// [`Entity::on_space_init`].
    SpaceInit,
    /// [`Entity::on_space_created`].
    SpaceCreated,
    /// [`Entity::on_space_destroy`].
    SpaceDestroy,
    /// [`Entity::on_entity_enter_space`], with the entity that entered.
    EntityEnterSpace(EntityId),
    /// [`Entity::on_entity_leave_space`], with the entity that left.
    EntityLeaveSpace(EntityId),
}

/// A position in a space. Y is carried and synced to clients but ignored by AOI.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Vec3 {
    /// X (AOI).
    pub x: f32,
    /// Y (height; not used by AOI).
    pub y: f32,
    /// Z (AOI).
    pub z: f32,
}

impl Vec3 {
    /// A position.
    pub fn new(x: f32, y: f32, z: f32) -> Vec3 {
        Vec3 { x, y, z }
    }

    /// The yaw, in degrees, of the direction from the origin to this vector on the XZ plane;
    /// 0 is +Z (GoWorld's `DirToYaw`).
    pub fn dir_to_yaw(&self) -> f32 {
        let d = self.x.atan2(self.z).to_degrees();
        if d < 0.0 {
            d + 360.0
        } else {
            d
        }
    }

    /// Euclidean distance (all three axes).
    pub fn distance_to(&self, o: &Vec3) -> f32 {
        let (dx, dy, dz) = (self.x - o.x, self.y - o.y, self.z - o.z);
        (dx * dx + dy * dy + dz * dz).sqrt()
    }
}

/// The type name of space entities (GoWorld's `__space__`), as clients see it.
pub const SPACE_TYPE: &str = "__space__";
/// The space attribute holding its kind (AllClients, so clients learn it).
pub const SPACE_KIND_ATTR: &str = "_K";
/// The space attribute holding its AOI distance once enabled (server-only).
pub const SPACE_AOI_ATTR: &str = "_EnableAOI";

/// An entity type. Implement it on a struct with your own fields (`Default` builds a new
/// instance); the engine owns the attributes and the client.
///
/// The struct is serialized with serde when the entity moves to another game or the game is
/// hot-swapped, so nothing it keeps is lost silently (GoWorld drops plain struct fields).
/// Mark fields that must not travel with `#[serde(skip)]`; they come back as their
/// `Default`. Closures cannot travel: keep callbacks in attributes or re-create them.
pub trait Entity: Any + Default + Serialize + DeserializeOwned {
    /// Defines the type: attributes, methods, persistence.
    fn describe(desc: &mut TypeDesc<Self>);
    /// Right after the instance is made, before attributes are assigned.
    fn on_init(&mut self, _ctx: &mut Ctx) {}
    /// Attributes are assigned (created, loaded or migrated in): set defaults here.
    fn on_attrs_ready(&mut self, _ctx: &mut Ctx) {}
    /// A new or loaded entity is ready (not called after migration).
    fn on_created(&mut self, _ctx: &mut Ctx) {}
    /// The entity is being destroyed (runs once).
    fn on_destroy(&mut self, _ctx: &mut Ctx) {}
    /// A client was given to this entity.
    fn on_client_connected(&mut self, _ctx: &mut Ctx) {}
    /// The entity's client left or was given away.
    fn on_client_disconnected(&mut self, _ctx: &mut Ctx) {}
    /// The entity entered a space ([`Ctx::space_id`] says which), after the space's
    /// `on_entity_enter_space`. Not called for the nil space.
    fn on_enter_space(&mut self, _ctx: &mut Ctx) {}
    /// The entity left `space` (not called for the nil space).
    fn on_leave_space(&mut self, _ctx: &mut Ctx, _space: EntityId) {}
    /// An [`Ctx::enter_space`] did not happen: `space` is gone (destroyed, or its game died),
    /// so the entity stays where it is. GoWorld only logs this; a game that keeps a list of
    /// spaces (test_game's SpaceService) can forget the dead one and try again.
    fn on_enter_space_failed(&mut self, _ctx: &mut Ctx, _space: EntityId) {}
    /// The entity is leaving this game for another (after it left its space). Attribute
    /// and struct changes made here travel with it.
    fn on_migrate_out(&mut self, _ctx: &mut Ctx) {}
    /// The entity arrived from another game (after `on_attrs_ready`, before it enters its
    /// target space). `on_created` is not called again.
    fn on_migrate_in(&mut self, _ctx: &mut Ctx) {}
    /// The game is freezing for a hot swap: the entity is about to be written down (its
    /// struct and attributes as they are after this). A panic here abandons the freeze; the
    /// game keeps running.
    fn on_freeze(&mut self, _ctx: &mut Ctx) {}
    /// The entity was brought back by a hot swap (`-restore`), after `on_attrs_ready`, in
    /// its space, with its client; `on_created` is not called again.
    fn on_restored(&mut self, _ctx: &mut Ctx) {}
    /// Spaces only: right after the instance is made (GoWorld's `OnSpaceInit`).
    fn on_space_init(&mut self, _ctx: &mut Ctx) {}
    /// Spaces only: the space exists; enable AOI and spawn things here.
    fn on_space_created(&mut self, _ctx: &mut Ctx) {}
    /// Spaces only: the space is being destroyed; the entities in it are destroyed next.
    fn on_space_destroy(&mut self, _ctx: &mut Ctx) {}
    /// Spaces only: `entity` entered this space (before the entity's `on_enter_space`).
    fn on_entity_enter_space(&mut self, _ctx: &mut Ctx, _entity: EntityId) {}
    /// Spaces only: `entity` left this space.
    fn on_entity_leave_space(&mut self, _ctx: &mut Ctx, _entity: EntityId) {}
}

type MethodFn<T> = Box<dyn Fn(&mut T, &mut Ctx, &Args) -> Result<(), ArgError>>;

/// The definition of an entity type, filled in by [`Entity::describe`].
pub struct TypeDesc<T> {
    name: String,
    persistent: bool,
    aoi_distance: Option<f32>,
    attrs: BTreeMap<String, AttrFlags>,
    /// By name; looked up for every call, so with the fast hasher rather than SipHash.
    methods: goworld_common::id::FastMap<String, (Expose, MethodFn<T>)>,
    errors: Vec<String>,
}

impl<T: Entity> TypeDesc<T> {
    fn new(name: &str) -> Self {
        TypeDesc {
            name: name.to_string(),
            persistent: false,
            aoi_distance: None,
            attrs: BTreeMap::new(),
            methods: Default::default(),
            errors: Vec::new(),
        }
    }

    /// Entities of this type are saved to storage (call before defining persistent attributes).
    pub fn persistent(&mut self, yes: bool) -> &mut Self {
        self.persistent = yes;
        self
    }

    /// Entities of this type take part in AOI, seeing others within `distance` on X and Z
    /// (a square). 0 takes the distance of the space they are in. GoWorld stores the
    /// type's distance but uses the space's; here an entity's own distance is honoured, so
    /// interest is directional: a long view sees a small entity that does not see it back.
    pub fn use_aoi(&mut self, distance: f32) -> &mut Self {
        self.aoi_distance = Some(if distance.is_finite() {
            distance.max(0.0)
        } else {
            0.0
        });
        self
    }

    /// Defines an attribute. No flags: server-only (migrated, not saved). `AllClients`
    /// implies `Client`; `Persistent` needs a persistent type.
    pub fn attr(&mut self, name: &str, flags: &[AttrFlag]) -> &mut Self {
        let mut f = AttrFlags::default();
        for flag in flags {
            match flag {
                AttrFlag::Client => f.client = true,
                AttrFlag::AllClients => {
                    f.client = true;
                    f.all_clients = true
                }
                AttrFlag::Persistent => f.persistent = true,
            }
        }
        if f.persistent && !self.persistent {
            self.errors.push(format!(
                "attribute {name} is Persistent but type {} is not persistent (call persistent(true) first)",
                self.name
            ));
        }
        if self.attrs.insert(name.to_string(), f).is_some() {
            self.errors
                .push(format!("attribute {name} is defined twice"));
        }
        self
    }

    /// Defines an RPC method taking the parameters `A` (a tuple of
    /// [`FromArg`](crate::args::FromArg) types, or `()`).
    pub fn method<A: FromArgs + 'static>(
        &mut self,
        name: &str,
        expose: Expose,
        f: fn(&mut T, &mut Ctx, A),
    ) -> &mut Self {
        let call: MethodFn<T> = Box::new(move |e, ctx, args| {
            f(e, ctx, A::from_args(args)?);
            Ok(())
        });
        if self
            .methods
            .insert(name.to_string(), (expose, call))
            .is_some()
        {
            self.errors.push(format!("method {name} is defined twice"));
        }
        self
    }
}

/// Why a call did not run.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The type has no method of that name.
    NoMethod,
    /// The caller may not call this method.
    Forbidden,
    /// The arguments do not fit the method's parameters.
    BadArgs(ArgError),
}

/// A registered type, with its type erased.
pub(crate) trait EntityType {
    fn name(&self) -> &str;
    fn is_persistent(&self) -> bool;
    /// `Some(d)` if the type uses AOI (`d` = 0: the space's distance).
    fn aoi_distance(&self) -> Option<f32>;
    fn attr_flags(&self, key: &str) -> AttrFlags;
    fn new_instance(&self) -> Box<dyn Any>;
    fn encode_state(&self, obj: &dyn Any) -> Result<Vec<u8>, String>;
    fn decode_state(&self, bytes: &[u8]) -> Result<Box<dyn Any>, String>;
    fn expose(&self, method: &str) -> Option<Expose>;
    fn call(
        &self,
        obj: &mut dyn Any,
        ctx: &mut Ctx,
        method: &str,
        args: &Args,
    ) -> Result<(), CallError>;
    fn hook(&self, obj: &mut dyn Any, ctx: &mut Ctx, hook: Hook);
}

struct TypeImpl<T: Entity>(TypeDesc<T>);

impl<T: Entity> EntityType for TypeImpl<T> {
    fn name(&self) -> &str {
        &self.0.name
    }
    fn is_persistent(&self) -> bool {
        self.0.persistent
    }
    fn aoi_distance(&self) -> Option<f32> {
        self.0.aoi_distance
    }
    fn attr_flags(&self, key: &str) -> AttrFlags {
        self.0.attrs.get(key).copied().unwrap_or_default()
    }
    fn new_instance(&self) -> Box<dyn Any> {
        Box::new(T::default())
    }
    fn encode_state(&self, obj: &dyn Any) -> Result<Vec<u8>, String> {
        let e = obj.downcast_ref::<T>().expect("instance of its own type");
        // Named fields, so a new binary with added or removed fields can still read it.
        rmp_serde::to_vec_named(e).map_err(|e| format!("{}: cannot serialize: {e}", self.0.name))
    }
    fn decode_state(&self, bytes: &[u8]) -> Result<Box<dyn Any>, String> {
        let err = match rmp_serde::from_slice::<T>(bytes) {
            Ok(e) => return Ok(Box::new(e)),
            Err(e) => e,
        };
        // Written by a binary whose struct lacked fields this one has (a hot swap to new
        // code): the missing fields take their values from `Default`, then it is read again.
        let with_defaults = rmp_serde::to_vec_named(&T::default())
            .ok()
            .and_then(|d| fill_missing_fields(bytes, &d));
        match with_defaults.map(|b| rmp_serde::from_slice::<T>(&b)) {
            Some(Ok(e)) => Ok(Box::new(e)),
            _ => Err(format!("{}: cannot deserialize: {err}", self.0.name)),
        }
    }
    fn expose(&self, method: &str) -> Option<Expose> {
        self.0.methods.get(method).map(|(e, _)| *e)
    }
    fn call(
        &self,
        obj: &mut dyn Any,
        ctx: &mut Ctx,
        method: &str,
        args: &Args,
    ) -> Result<(), CallError> {
        let (_, f) = self.0.methods.get(method).ok_or(CallError::NoMethod)?;
        let e = obj.downcast_mut::<T>().expect("instance of its own type");
        f(e, ctx, args).map_err(CallError::BadArgs)
    }
    fn hook(&self, obj: &mut dyn Any, ctx: &mut Ctx, hook: Hook) {
        let e = obj.downcast_mut::<T>().expect("instance of its own type");
        match hook {
            Hook::Init => e.on_init(ctx),
            Hook::AttrsReady => e.on_attrs_ready(ctx),
            Hook::Created => e.on_created(ctx),
            Hook::Destroy => e.on_destroy(ctx),
            Hook::ClientConnected => e.on_client_connected(ctx),
            Hook::ClientDisconnected => e.on_client_disconnected(ctx),
            Hook::EnterSpace => e.on_enter_space(ctx),
            Hook::LeaveSpace(space) => e.on_leave_space(ctx, space),
            Hook::EnterSpaceFailed(space) => e.on_enter_space_failed(ctx, space),
            Hook::MigrateOut => e.on_migrate_out(ctx),
            Hook::MigrateIn => e.on_migrate_in(ctx),
            Hook::Freeze => e.on_freeze(ctx),
            Hook::Restored => e.on_restored(ctx),
            Hook::SpaceInit => e.on_space_init(ctx),
            Hook::SpaceCreated => e.on_space_created(ctx),
            Hook::SpaceDestroy => e.on_space_destroy(ctx),
            Hook::EntityEnterSpace(id) => e.on_entity_enter_space(ctx, id),
            Hook::EntityLeaveSpace(id) => e.on_entity_leave_space(ctx, id),
        }
    }
}

/// The fields of a msgpack map with string keys, each with its value's bytes.
fn map_fields(buf: &[u8]) -> Option<Vec<(String, &[u8])>> {
    let (n, mut pos) = match *buf.first()? {
        b @ 0x80..=0x8f => (usize::from(b & 0x0f), 1),
        0xde => (
            usize::from(u16::from_be_bytes([*buf.get(1)?, *buf.get(2)?])),
            3,
        ),
        0xdf => (
            u32::from_be_bytes(buf.get(1..5)?.try_into().ok()?) as usize,
            5,
        ),
        _ => return None,
    };
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (k, used) = goworld_common::msgpack::decode(buf.get(pos..)?).ok()?;
        pos += used;
        let (_, used) = goworld_common::msgpack::decode(buf.get(pos..)?).ok()?;
        out.push((k.as_str()?.to_string(), buf.get(pos..pos + used)?));
        pos += used;
    }
    (pos == buf.len()).then_some(out)
}

/// `stored` (a struct written as a map) with every field of `defaults` it lacks added.
fn fill_missing_fields(stored: &[u8], defaults: &[u8]) -> Option<Vec<u8>> {
    let have = map_fields(stored)?;
    let mut all = have.clone();
    for (k, v) in map_fields(defaults)? {
        if !have.iter().any(|(h, _)| *h == k) {
            all.push((k, v));
        }
    }
    let mut out = Vec::with_capacity(stored.len() + defaults.len());
    goworld_common::msgpack::write_map_len(&mut out, all.len() as u32);
    for (k, v) in all {
        goworld_common::msgpack::write_str(&mut out, &k);
        out.extend_from_slice(v);
    }
    Some(out)
}

/// The entity types of a game.
#[derive(Default)]
pub struct Registry {
    types: HashMap<String, Rc<dyn EntityType>>,
    pub(crate) ready_hooks: Vec<crate::global::ReadyFn>,
    pub(crate) services: BTreeMap<String, u32>,
    /// Shared, so a method runs while it stays registered (a call to it from inside it finds it).
    pub(crate) nil_methods: HashMap<String, Rc<crate::global::NilSpaceFn>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers type `T` under `name`. A duplicate name or a bad definition is an error
    /// naming it; the game should refuse to start.
    pub fn register<T: Entity>(&mut self, name: &str) -> Result<(), String> {
        if name == SPACE_TYPE {
            return Err(format!(
                "{SPACE_TYPE} is the space type: use register_space"
            ));
        }
        if self.types.contains_key(name) {
            return Err(format!("entity type {name} is registered twice"));
        }
        let mut desc = TypeDesc::<T>::new(name);
        T::describe(&mut desc);
        if !desc.errors.is_empty() {
            return Err(format!("entity type {name}: {}", desc.errors.join("; ")));
        }
        self.types.insert(name.to_string(), Rc::new(TypeImpl(desc)));
        Ok(())
    }

    /// Registers `T` as the game's space type ([`SPACE_TYPE`]; one per game, as in GoWorld,
    /// where spaces differ by kind). Its `_K` (kind, AllClients) and `_EnableAOI` attributes
    /// are added. Without this, spaces are of a built-in type with no logic.
    pub fn register_space<T: Entity>(&mut self) -> Result<(), String> {
        if self.types.contains_key(SPACE_TYPE) {
            return Err("a space type is registered twice".to_string());
        }
        let mut desc = TypeDesc::<T>::new(SPACE_TYPE);
        T::describe(&mut desc);
        if desc.persistent {
            return Err("the space type cannot be persistent".to_string());
        }
        if desc.aoi_distance.is_some() {
            return Err("the space type cannot use AOI itself".to_string());
        }
        if !desc.attrs.contains_key(SPACE_KIND_ATTR) {
            desc.attr(SPACE_KIND_ATTR, &[AttrFlag::AllClients]);
        }
        if !desc.attrs.contains_key(SPACE_AOI_ATTR) {
            desc.attr(SPACE_AOI_ATTR, &[]);
        }
        if !desc.errors.is_empty() {
            return Err(format!("space type: {}", desc.errors.join("; ")));
        }
        self.types
            .insert(SPACE_TYPE.to_string(), Rc::new(TypeImpl(desc)));
        Ok(())
    }

    /// Registers service type `T` under `name` with `shards` shards (1..=8192; the name must
    /// not contain `#`). Every game registers the same services; the games share out the
    /// shards through the dispatchers' registry.
    pub fn register_service<T: Entity>(&mut self, name: &str, shards: u32) -> Result<(), String> {
        if name.contains('#') || name.contains('/') {
            return Err(format!("service name {name} must not contain '#' or '/'"));
        }
        if !(1..=8192).contains(&shards) {
            return Err(format!("service {name}: {shards} shards, must be 1..=8192"));
        }
        self.register::<T>(name)?;
        if self.types.get(name).is_some_and(|t| t.is_persistent()) {
            self.types.remove(name);
            return Err(format!("service {name} cannot be persistent"));
        }
        self.services.insert(name.to_string(), shards);
        Ok(())
    }

    /// Runs `f` once per process when the deployment is ready (GoWorld's `OnGameReady`):
    /// the place for start-up work such as creating services and global timers.
    pub fn on_game_ready(&mut self, f: impl FnMut(&mut crate::global::GameCtx) + 'static) {
        self.ready_hooks.push(Box::new(f));
    }

    /// Defines a nil-space method, run on every game that
    /// [`GameCtx::call_nil_spaces`](crate::global::GameCtx::call_nil_spaces) reaches.
    /// Build `f` with [`global::nil_space_method`](crate::global::nil_space_method).
    pub fn nil_space_method(
        &mut self,
        name: &str,
        f: crate::global::NilSpaceFn,
    ) -> Result<(), String> {
        if self
            .nil_methods
            .insert(name.to_string(), Rc::new(f))
            .is_some()
        {
            return Err(format!("nil-space method {name} is defined twice"));
        }
        Ok(())
    }

    /// True if `name` is registered.
    pub fn has(&self, name: &str) -> bool {
        self.types.contains_key(name)
    }

    pub(crate) fn get(&self, name: &str) -> Option<Rc<dyn EntityType>> {
        self.types.get(name).cloned()
    }
}

/// Something game code asked for, run by the engine after the handler returns.
pub(crate) enum Action {
    /// Attribute changes made before the next action, sent in place so clients see changes
    /// and calls in the order game code made them.
    AttrChanges {
        from: EntityId,
        changes: Vec<AttrChange>,
    },
    /// Call `method` on entity `to` (local: later in this tick; remote: through its dispatcher).
    Call {
        to: EntityId,
        method: String,
        args: Args,
    },
    /// Call `method` on each entity of `to`, with the same arguments (built once).
    CallMany {
        to: Vec<EntityId>,
        method: String,
        args: Args,
    },
    /// Call a method on the client of entity `from`.
    CallClient {
        from: EntityId,
        method: String,
        args: Args,
    },
    /// Call a method on the client of `from` and the clients of entities that see it.
    CallAllClients {
        from: EntityId,
        method: String,
        args: Args,
    },
    /// Destroy entity `id`.
    Destroy(EntityId),
    /// Move `from`'s client to the local entity `to`.
    GiveClientTo { from: EntityId, to: EntityId },
    /// Create an entity of `type_name` with ID `id` on this game.
    CreateLocally { type_name: String, id: EntityId },
    /// Load entity `id` of `type_name` on any game (placement by the dispatcher).
    Load {
        game: u16,
        type_name: String,
        id: EntityId,
    },
    /// Set a filter property on `from`'s client at its gate.
    SetClientFilterProp {
        from: EntityId,
        key: String,
        val: String,
    },
    /// A KVDB request; the callback runs with the entity when the result arrives.
    Kvdb {
        from: EntityId,
        op: KvdbOp,
        then: Option<KvdbCallback>,
    },
    /// Call `method` on `from` after `delay`, then every `repeat` if given.
    AddTimer {
        from: EntityId,
        id: TimerId,
        delay: Duration,
        repeat: Option<Duration>,
        method: String,
        args: Args,
    },
    /// Cancel one of `from`'s timers.
    CancelTimer { from: EntityId, id: TimerId },
    /// Call a nil-space method on every game.
    CallNilSpaces { method: String, args: Args },
    /// Call a method on every client whose filter property matches, on every gate.
    CallFilteredClients {
        op: goworld_common::proto::FilterOp,
        key: String,
        val: String,
        method: String,
        args: Args,
    },
    /// Call a service shard (or all of them).
    CallService {
        name: String,
        sel: crate::world::ShardSel,
        method: String,
        args: Args,
    },
    /// Ask storage whether an entity was saved.
    StorageExists {
        from: EntityId,
        type_name: String,
        id: EntityId,
        then: StorageCallback,
    },
    /// Create an entity on game `game` (0: any game, placed by the dispatcher).
    CreateSomewhere {
        game: u16,
        type_name: String,
        id: EntityId,
    },
    /// Enter space `space` at `pos` (local or by migration).
    EnterSpace {
        from: EntityId,
        space: EntityId,
        pos: Vec3,
    },
    /// `from`'s position changed: update AOI.
    Moved { from: EntityId },
    /// Turn on AOI in space `space`.
    EnableAoi { space: EntityId, distance: f32 },
    /// Create an entity on this game inside the local space `space`.
    CreateInSpace {
        type_name: String,
        id: EntityId,
        space: EntityId,
        pos: Vec3,
    },
    /// Create a space of `kind` on game `game` (0: any game).
    CreateSpace { game: u16, kind: i64, id: EntityId },
}

/// An entity's timer, as [`Ctx::add_timer`] and [`Ctx::add_callback`] return it. Counts up
/// per entity, like GoWorld's `EntityTimerID`.
pub type TimerId = u32;

/// The shortest repeat interval of an entity timer (GoWorld's minimum).
pub const MIN_TIMER_INTERVAL: Duration = Duration::from_millis(10);

/// A KVDB operation.
#[derive(Debug, Clone, PartialEq)]
pub enum KvdbOp {
    /// Read a key.
    Get(String),
    /// Write a key.
    Put(String, String),
    /// Read a key, writing the value if it is missing.
    GetOrPut(String, String),
    /// Read the keys in `[begin, end)`.
    GetRange(String, String),
}

/// What a KVDB callback gets: the value (for Get and GetOrPut) or an error.
pub type KvdbResult = Result<Option<String>, String>;
/// What a KVDB range callback gets: the pairs, ordered by key, or an error.
pub type KvdbRangeResult = Result<Vec<(String, String)>, String>;
/// A KVDB callback, run with the entity that asked (not run if it is gone).
pub(crate) type KvdbCallback =
    Box<dyn FnOnce(&mut dyn Any, &mut Ctx, Result<crate::kvdb::KvdbOutput, String>)>;
/// A storage callback, run with the entity that asked (not run if it is gone).
pub(crate) type StorageCallback = Box<dyn FnOnce(&mut dyn Any, &mut Ctx, Result<bool, String>)>;

/// What game code gets with its entity: its ID, attributes and client, and the way to act
/// on everything else.
pub struct Ctx<'a> {
    pub(crate) id: EntityId,
    pub(crate) type_name: &'a str,
    pub(crate) game_id: u16,
    pub(crate) now: Instant,
    pub(crate) clock: WallClock,
    pub(crate) ids: &'a mut IdGen,
    pub(crate) rng: &'a mut Rng,
    /// The entity's attributes; changes reach clients according to their flags.
    pub attrs: &'a mut Attrs,
    pub(crate) client: Option<GameClient>,
    pub(crate) actions: &'a mut Vec<Action>,
    pub(crate) next_timer: &'a mut TimerId,
    pub(crate) online: &'a std::collections::BTreeSet<u16>,
    pub(crate) place: &'a mut crate::world::Placement,
    pub(crate) others: &'a crate::world::EntityMap,
    pub(crate) spaces: &'a crate::world::SpaceMap,
}

impl Ctx<'_> {
    /// Queues an action after the attribute changes made so far.
    fn push(&mut self, a: Action) {
        self.flush_attr_changes();
        self.actions.push(a);
    }

    /// Moves the attribute changes made so far into the action queue.
    pub(crate) fn flush_attr_changes(&mut self) {
        if self.attrs.has_changes() {
            let changes = self.attrs.take_changes();
            self.actions.push(Action::AttrChanges {
                from: self.id,
                changes,
            });
        }
    }

    /// This entity's ID.
    pub fn id(&self) -> EntityId {
        self.id
    }

    /// This entity's type name.
    pub fn type_name(&self) -> &str {
        self.type_name
    }

    /// The ID of the game this runs on.
    pub fn game_id(&self) -> u16 {
        self.game_id
    }

    /// Games online, as the dispatchers report them (this one included).
    pub fn online_games(&self) -> &std::collections::BTreeSet<u16> {
        self.online
    }

    /// This game's nil space.
    pub fn nil_space_id(&self) -> EntityId {
        nil_space_id(self.game_id)
    }

    /// The time of the event being handled.
    pub fn now(&self) -> Instant {
        self.now
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
        self.spaces.get(&self.place.space).map_or(0, |s| s.kind)
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
        self.place
            .mark_sync(crate::world::SYNC_OWN | crate::world::SYNC_NEIGHBOURS);
        self.push(Action::Moved { from: self.id });
    }

    /// Turns this entity (synced like the position).
    pub fn set_yaw(&mut self, yaw: f32) {
        self.place.yaw = yaw;
        self.place
            .mark_sync(crate::world::SYNC_OWN | crate::world::SYNC_NEIGHBOURS);
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
        self.push(Action::EnterSpace {
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
        crate::world::aoi_neighbours(self.spaces, &self.place.space, &self.id, sees)
    }

    /// True if entity `id` lives on this game (this entity included).
    pub fn is_local(&self, id: &EntityId) -> bool {
        *id == self.id || self.others.contains_key(id)
    }

    /// The type of entity `id` if it lives on this game.
    pub fn type_of(&self, id: &EntityId) -> Option<&str> {
        if *id == self.id {
            return Some(self.type_name);
        }
        self.others.get(id).map(|r| r.ty.name())
    }

    /// The position of entity `id` if it lives on this game.
    pub fn position_of(&self, id: &EntityId) -> Option<Vec3> {
        if *id == self.id {
            return Some(self.place.pos);
        }
        self.others.get(id).map(|r| r.place.pos)
    }

    /// True if entity `id` lives on this game and has a client.
    pub fn has_client(&self, id: &EntityId) -> bool {
        if *id == self.id {
            return self.client.is_some();
        }
        self.others.get(id).is_some_and(|r| r.has_client())
    }

    /// Destroys entity `id` on this game after the handler returns (GoWorld lets game code
    /// destroy any local entity; one elsewhere is not touched).
    pub fn destroy_entity(&mut self, id: EntityId) {
        self.push(Action::Destroy(id));
    }

    /// Creates an entity of `type_name` on this game inside the local space `space` at
    /// `pos`; returns its ID. If the space is not on this game it stays in the nil space
    /// (with a warning).
    pub fn create_entity_in(&mut self, space: EntityId, type_name: &str, pos: Vec3) -> EntityId {
        let id = self.ids.next(self.clock.secs(self.now));
        self.push(Action::CreateInSpace {
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
        self.spaces.get(&self.id).map_or(0, |s| s.kind)
    }

    /// For a space entity: turns on AOI with `distance` (the default for types that use AOI
    /// without their own distance). Call it before anything enters, at most once (in
    /// `on_space_created`).
    pub fn enable_aoi(&mut self, distance: f32) {
        self.push(Action::EnableAoi {
            space: self.id,
            distance,
        });
    }

    /// For a space entity: how many entities of `type_name` are in it.
    pub fn count_entities(&self, type_name: &str) -> usize {
        self.spaces.get(&self.id).map_or(0, |s| {
            s.members
                .values()
                .filter(|m| m.ty.name() == type_name)
                .count()
        })
    }

    /// For a space entity: how many entities are in it.
    pub fn entity_count(&self) -> usize {
        self.spaces.get(&self.id).map_or(0, |s| s.members.len())
    }

    /// For a space entity: the entities in it.
    pub fn space_entities(&self) -> Vec<EntityId> {
        self.spaces
            .get(&self.id)
            .map_or_else(Vec::new, |s| s.members.keys().copied().collect())
    }

    /// For a space entity: creates an entity of `type_name` on this game, inside this space
    /// at `pos` (GoWorld's `space.CreateEntity`); returns its ID.
    pub fn create_entity_in_space(&mut self, type_name: &str, pos: Vec3) -> EntityId {
        let id = self.ids.next(self.clock.secs(self.now));
        self.push(Action::CreateInSpace {
            type_name: type_name.to_string(),
            id,
            space: self.id,
            pos,
        });
        id
    }

    /// Creates a space of `kind` on this game; returns its ID. Kind 0 is the nil space, of
    /// which each game has exactly one: asking for it panics (caught and logged).
    pub fn create_space_locally(&mut self, kind: i64) -> EntityId {
        let game = self.game_id;
        self.create_space_on_game(game, kind)
    }

    /// Creates a space of `kind` on the least loaded game; returns its ID.
    pub fn create_space_anywhere(&mut self, kind: i64) -> EntityId {
        self.create_space_on_game(0, kind)
    }

    /// Creates a space of `kind` on game `game` (0: any game); returns its ID.
    pub fn create_space_on_game(&mut self, game: u16, kind: i64) -> EntityId {
        assert!(kind != 0, "cannot create a space of kind 0 (the nil space)");
        let id = self.ids.next(self.clock.secs(self.now));
        self.push(Action::CreateSpace { game, kind, id });
        id
    }

    /// Calls `method` on entity `to` with `args` (build them with [`args!`](crate::args!)).
    pub fn call(&mut self, to: EntityId, method: &str, args: Args) {
        self.push(Action::Call {
            to,
            method: method.to_string(),
            args,
        });
    }

    /// Calls `method` on every entity of `to` with the same `args`, in that order: what a
    /// service does to reach all its subscribers. Like [`Ctx::call`] once per entity, but the
    /// method and arguments are built and kept once for all of them.
    pub fn call_many(&mut self, to: Vec<EntityId>, method: &str, args: Args) {
        if to.is_empty() {
            return;
        }
        self.push(Action::CallMany {
            to,
            method: method.to_string(),
            args,
        });
    }

    /// Calls `method` on this entity's client (nothing if it has none).
    pub fn call_client(&mut self, method: &str, args: Args) {
        self.push(Action::CallClient {
            from: self.id,
            method: method.to_string(),
            args,
        });
    }

    /// Calls `method` on this entity's client and the clients of entities that see it.
    pub fn call_all_clients(&mut self, method: &str, args: Args) {
        self.push(Action::CallAllClients {
            from: self.id,
            method: method.to_string(),
            args,
        });
    }

    /// Destroys this entity after the handler returns (idempotent).
    pub fn destroy(&mut self) {
        self.push(Action::Destroy(self.id));
    }

    /// Gives this entity's client to the local entity `to`.
    pub fn give_client_to(&mut self, to: EntityId) {
        self.actions
            .push(Action::GiveClientTo { from: self.id, to });
    }

    /// Creates an entity of `type_name` on this game; returns its new ID.
    pub fn create_entity_locally(&mut self, type_name: &str) -> EntityId {
        let id = self.ids.next(self.clock.secs(self.now));
        self.push(Action::CreateLocally {
            type_name: type_name.to_string(),
            id,
        });
        id
    }

    /// Creates an entity of `type_name` on any game (the dispatcher places it); returns its ID.
    pub fn create_entity_anywhere(&mut self, type_name: &str) -> EntityId {
        self.create_entity_on_game(0, type_name)
    }

    /// Creates an entity of `type_name` on game `game` (0: any game); returns its ID.
    pub fn create_entity_on_game(&mut self, game: u16, type_name: &str) -> EntityId {
        let id = self.ids.next(self.clock.secs(self.now));
        self.push(Action::CreateSomewhere {
            game,
            type_name: type_name.to_string(),
            id,
        });
        id
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
        self.push(Action::AddTimer {
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
        self.push(Action::CancelTimer { from: self.id, id });
    }

    /// Loads entity `id` of `type_name` from storage on any game (or finds it where it lives).
    pub fn load_entity_anywhere(&mut self, type_name: &str, id: EntityId) {
        self.load_entity_on_game(0, type_name, id);
    }

    /// Loads entity `id` of `type_name` on this game (unless it already lives elsewhere).
    pub fn load_entity_locally(&mut self, type_name: &str, id: EntityId) {
        self.load_entity_on_game(self.game_id, type_name, id);
    }

    /// Loads entity `id` of `type_name` on game `game` (0: any game). The load goes through
    /// the entity's dispatcher, which holds calls to it until it is loaded; one live instance
    /// per ID across the cluster.
    pub fn load_entity_on_game(&mut self, game: u16, type_name: &str, id: EntityId) {
        self.push(Action::Load {
            game,
            type_name: type_name.to_string(),
            id,
        });
    }

    /// Sets a filter property on this entity's client (for filtered client calls).
    pub fn set_client_filter_prop(&mut self, key: &str, val: &str) {
        self.push(Action::SetClientFilterProp {
            from: self.id,
            key: key.to_string(),
            val: val.to_string(),
        });
    }

    fn kvdb<T: Entity>(&mut self, op: KvdbOp, then: Option<fn(&mut T, &mut Ctx, KvdbResult)>) {
        use crate::kvdb::KvdbOutput;
        let then: Option<KvdbCallback> = then.map(|f| {
            Box::new(
                move |obj: &mut dyn Any, ctx: &mut Ctx, r: Result<KvdbOutput, String>| {
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
        self.push(Action::Kvdb {
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
        use crate::kvdb::KvdbOutput;
        let cb: KvdbCallback = Box::new(
            move |obj: &mut dyn Any, ctx: &mut Ctx, r: Result<KvdbOutput, String>| {
                if let Some(e) = obj.downcast_mut::<T>() {
                    let r = r.map(|out| match out {
                        KvdbOutput::Range(pairs) => pairs,
                        _ => Vec::new(),
                    });
                    f_range(then, e, ctx, r)
                }
            },
        );
        self.push(Action::Kvdb {
            from: self.id,
            op: KvdbOp::GetRange(begin.to_string(), end.to_string()),
            then: Some(cb),
        });
    }

    /// Calls nil-space method `method` on every game, this one included (GoWorld's
    /// `CallNilSpaces`, which game code may call anywhere); see
    /// [`GameCtx::call_nil_spaces`](crate::global::GameCtx::call_nil_spaces).
    pub fn call_nil_spaces(&mut self, method: &str, args: Args) {
        self.push(Action::CallNilSpaces {
            method: method.to_string(),
            args,
        });
    }

    /// Calls `method` on the player entity of every client, on every gate, whose filter
    /// property `key` compares to `val` by `op` (bytewise); an empty key reaches every client
    /// (GoWorld's `CallFilteredClients`). One dispatcher fans it out, so each client gets it
    /// once however many dispatchers there are.
    pub fn call_filtered_clients(
        &mut self,
        key: &str,
        op: goworld_common::proto::FilterOp,
        val: &str,
        method: &str,
        args: Args,
    ) {
        self.push(Action::CallFilteredClients {
            op,
            key: key.to_string(),
            val: val.to_string(),
            method: method.to_string(),
            args,
        });
    }

    /// Calls `method` on a random shard of service `name` (GoWorld's `CallServiceAny`). Calls
    /// to shards not known yet wait until they are.
    pub fn call_service_any(&mut self, name: &str, method: &str, args: Args) {
        self.call_service(name, crate::world::ShardSel::Any, method, args);
    }

    /// Calls `method` on every shard of service `name` (`CallServiceAll`).
    pub fn call_service_all(&mut self, name: &str, method: &str, args: Args) {
        self.call_service(name, crate::world::ShardSel::All, method, args);
    }

    /// Calls `method` on shard `shard` of service `name` (`CallServiceShardIndex`).
    pub fn call_service_shard_index(&mut self, name: &str, shard: u32, method: &str, args: Args) {
        self.call_service(name, crate::world::ShardSel::Index(shard), method, args);
    }

    /// Calls `method` on the shard of service `name` that `key` hashes to
    /// (`CallServiceShardKey`: GoWorld's `HashString(key) % shards`).
    pub fn call_service_shard_key(&mut self, name: &str, key: &str, method: &str, args: Args) {
        self.call_service(
            name,
            crate::world::ShardSel::Key(key.to_string()),
            method,
            args,
        );
    }

    fn call_service(&mut self, name: &str, sel: crate::world::ShardSel, method: &str, args: Args) {
        self.push(Action::CallService {
            name: name.to_string(),
            sel,
            method: method.to_string(),
            args,
        });
    }

    /// Asks storage whether entity `id` of `type_name` was ever saved (GoWorld's `Exists`);
    /// `then` runs with this entity when the answer arrives.
    pub fn storage_exists<T: Entity>(
        &mut self,
        type_name: &str,
        id: EntityId,
        then: fn(&mut T, &mut Ctx, Result<bool, String>),
    ) {
        let cb: StorageCallback = Box::new(
            move |obj: &mut dyn Any, ctx: &mut Ctx, r: Result<bool, String>| {
                if let Some(e) = obj.downcast_mut::<T>() {
                    then(e, ctx, r)
                }
            },
        );
        self.push(Action::StorageExists {
            from: self.id,
            type_name: type_name.to_string(),
            id,
            then: cb,
        });
    }

    /// Reads `key` from the KVDB; `then` runs with this entity when the value arrives.
    pub fn kvdb_get<T: Entity>(&mut self, key: &str, then: fn(&mut T, &mut Ctx, KvdbResult)) {
        self.kvdb(KvdbOp::Get(key.to_string()), Some(then));
    }

    /// Writes `key = val` to the KVDB.
    pub fn kvdb_put<T: Entity>(
        &mut self,
        key: &str,
        val: &str,
        then: Option<fn(&mut T, &mut Ctx, KvdbResult)>,
    ) {
        self.kvdb(KvdbOp::Put(key.to_string(), val.to_string()), then);
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
            KvdbOp::GetOrPut(key.to_string(), val.to_string()),
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
