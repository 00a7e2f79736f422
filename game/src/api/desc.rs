//! An entity type's definition and the registry of a game's types: attributes with their
//! flags, methods with who may call them, persistence and AOI ([`TypeDesc`], filled in by
//! [`Entity::describe`]); [`Registry`] checks each definition and erases its type, so the
//! engine keeps every entity the same way ([`EntityType`]).

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use goworld_common::proto::Args;

use super::{
    Ctx, Entity, GameCtx, Hook, NilSpaceFn, ReadyFn, SPACE_AOI_ATTR, SPACE_KIND_ATTR, SPACE_TYPE,
};
use crate::args::{ArgError, FromArgs};

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
    pub(crate) ready_hooks: Vec<ReadyFn>,
    pub(crate) services: BTreeMap<String, u32>,
    /// Shared, so a method runs while it stays registered (a call to it from inside it finds it).
    pub(crate) nil_methods: HashMap<String, Rc<NilSpaceFn>>,
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
    pub fn on_game_ready(&mut self, f: impl FnMut(&mut GameCtx) + 'static) {
        self.ready_hooks.push(Box::new(f));
    }

    /// Defines a nil-space method, run on every game that
    /// [`GameCtx::call_nil_spaces`](GameCtx::call_nil_spaces) reaches.
    /// Build `f` with [`nil_space_method`](super::nil_space_method).
    pub fn nil_space_method(&mut self, name: &str, f: NilSpaceFn) -> Result<(), String> {
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
