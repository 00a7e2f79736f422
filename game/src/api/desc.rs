//! An entity type's definition and the registry of a game's types: attributes with their
//! flags, methods with who may call them, persistence and AOI ([`TypeDesc`], filled in by
//! [`Entity::describe`]); [`Registry`] checks each definition and erases its type, so the
//! engine keeps every entity the same way ([`EntityType`]).

use std::any::Any;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::rc::Rc;

use goworld_common::proto::Args;

use super::key::{Attr, AttrFlags, AttrType};
use super::{Ctx, Entity, GameCtx, Hook, NilSpaceFn, ReadyFn, SPACE_AOI, SPACE_KIND, SPACE_TYPE};
use crate::args::{ArgError, FromArgs};

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
    /// The attributes declared `f64`, and `i64`.
    floats: Vec<String>,
    ints: Vec<String>,
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
            floats: Vec::new(),
            ints: Vec::new(),
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

    /// Declares an attribute (see [`Attr`]): its name, value type and flags. Writing a
    /// root attribute that was never declared is an error.
    pub fn attr<V: AttrType>(&mut self, a: Attr<V>) -> &mut Self {
        if V::FLOAT {
            self.floats.push(a.name().to_string());
        }
        if V::INT {
            self.ints.push(a.name().to_string());
        }
        self.declare(a.name(), a.flags())
    }

    fn declare(&mut self, name: &str, f: AttrFlags) -> &mut Self {
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
    /// The flags of attribute `key` (none for an undeclared one).
    fn attr_flags(&self, key: &str) -> AttrFlags;
    /// True if attribute `key` was declared.
    fn attr_declared(&self, key: &str) -> bool;
    /// The root attributes declared `f64`, and those declared `i64`.
    fn number_attrs(&self) -> (&[String], &[String]);
    /// True the first time undeclared attribute `key` is reported (then it is logged once).
    fn first_undeclared(&self, key: &str) -> bool;
    fn new_instance(&self) -> Box<dyn Any>;
    fn encode_state(&self, obj: &dyn Any) -> Result<Vec<u8>, StateError>;
    fn decode_state(&self, bytes: &[u8]) -> Result<Box<dyn Any>, StateError>;
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

struct TypeImpl<T: Entity>(TypeDesc<T>, RefCell<BTreeSet<String>>);

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
    fn attr_declared(&self, key: &str) -> bool {
        self.0.attrs.contains_key(key)
    }
    fn number_attrs(&self) -> (&[String], &[String]) {
        (&self.0.floats, &self.0.ints)
    }
    fn first_undeclared(&self, key: &str) -> bool {
        self.1.borrow_mut().insert(key.to_string())
    }
    fn new_instance(&self) -> Box<dyn Any> {
        Box::new(T::default())
    }
    fn encode_state(&self, obj: &dyn Any) -> Result<Vec<u8>, StateError> {
        let e = obj.downcast_ref::<T>().expect("instance of its own type");
        // Named fields, so a new binary with added or removed fields can still read it.
        rmp_serde::to_vec_named(e).map_err(|e| StateError {
            type_name: self.0.name.clone(),
            reading: false,
            why: e.to_string(),
        })
    }
    fn decode_state(&self, bytes: &[u8]) -> Result<Box<dyn Any>, StateError> {
        // Written by a binary whose struct lacked fields this one has (a hot swap to new
        // code): `#[serde(default)]`, checked at registration, fills them from `Default`.
        // A struct with no fields (a unit struct) is written as an empty array, one with fields as a
        // map; a new binary may have gained or lost all of them.
        match rmp_serde::from_slice::<T>(bytes) {
            Ok(e) => Ok(Box::new(e)),
            Err(_) if bytes == [EMPTY_ARRAY] => self.decode_state(&[EMPTY_MAP]),
            Err(_) if is_fieldless::<T>() && bytes.first().is_some_and(|b| b & 0xf0 == 0x80) => {
                Ok(Box::new(T::default()))
            }
            Err(err) => Err(StateError {
                type_name: self.0.name.clone(),
                reading: true,
                why: err.to_string(),
            }),
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
    pub fn register<T: Entity>(&mut self, name: &str) -> Result<(), RegisterError> {
        let bad = |why: String| RegisterError::Type {
            name: name.to_string(),
            why,
        };
        if name == SPACE_TYPE {
            return Err(bad(format!(
                "{SPACE_TYPE} is the space type: use register_space"
            )));
        }
        if self.types.contains_key(name) {
            return Err(bad("registered twice".to_string()));
        }
        let mut desc = TypeDesc::<T>::new(name);
        T::describe(&mut desc);
        check_state_defaults::<T>(&mut desc);
        if !desc.errors.is_empty() {
            return Err(bad(desc.errors.join("; ")));
        }
        self.types.insert(
            name.to_string(),
            Rc::new(TypeImpl(desc, RefCell::default())),
        );
        Ok(())
    }

    /// Registers `T` as the game's space type ([`SPACE_TYPE`]; one per game, as in GoWorld,
    /// where spaces differ by kind). Its `_K` (kind, AllClients) and `_EnableAOI` attributes
    /// are added. Without this, spaces are of a built-in type with no logic.
    pub fn register_space<T: Entity>(&mut self) -> Result<(), RegisterError> {
        let bad = |why: &str| RegisterError::SpaceType(why.to_string());
        if self.types.contains_key(SPACE_TYPE) {
            return Err(bad("registered twice"));
        }
        let mut desc = TypeDesc::<T>::new(SPACE_TYPE);
        T::describe(&mut desc);
        check_state_defaults::<T>(&mut desc);
        if desc.persistent {
            return Err(bad("it cannot be persistent"));
        }
        if desc.aoi_distance.is_some() {
            return Err(bad("it cannot use AOI itself"));
        }
        if !desc.attrs.contains_key(SPACE_KIND.name()) {
            desc.attr(SPACE_KIND);
        }
        if !desc.attrs.contains_key(SPACE_AOI.name()) {
            desc.attr(SPACE_AOI);
        }
        if !desc.errors.is_empty() {
            return Err(RegisterError::SpaceType(desc.errors.join("; ")));
        }
        self.types.insert(
            SPACE_TYPE.to_string(),
            Rc::new(TypeImpl(desc, RefCell::default())),
        );
        Ok(())
    }

    /// Registers service type `T` under `name` with `shards` shards (1..=8192; the name must
    /// not contain `#`). Every game registers the same services; the games share out the
    /// shards through the dispatchers' registry.
    pub fn register_service<T: Entity>(
        &mut self,
        name: &str,
        shards: u32,
    ) -> Result<(), RegisterError> {
        let bad = |why: String| RegisterError::Service {
            name: name.to_string(),
            why,
        };
        if name.contains('#') || name.contains('/') {
            return Err(bad("the name must not contain '#' or '/'".to_string()));
        }
        if !(1..=8192).contains(&shards) {
            return Err(bad(format!("{shards} shards, must be 1..=8192")));
        }
        self.register::<T>(name)?;
        if self.types.get(name).is_some_and(|t| t.is_persistent()) {
            self.types.remove(name);
            return Err(bad("a service cannot be persistent".to_string()));
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
    pub fn nil_space_method(&mut self, name: &str, f: NilSpaceFn) -> Result<(), RegisterError> {
        if self
            .nil_methods
            .insert(name.to_string(), Rc::new(f))
            .is_some()
        {
            return Err(RegisterError::NilSpaceMethod(name.to_string()));
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

/// An entity's own struct could not be written or read (a hot swap or migration to a binary
/// whose struct cannot read what the other wrote).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateError {
    /// The entity's type.
    pub type_name: String,
    /// True when reading failed, false when writing did.
    pub reading: bool,
    /// serde's reason.
    pub why: String,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.reading {
            "deserialize"
        } else {
            "serialize"
        };
        write!(f, "{}: cannot {what}: {}", self.type_name, self.why)
    }
}

impl std::error::Error for StateError {}

/// Why a type, service or nil-space method could not be registered (the game should refuse
/// to start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// Entity type `name` is defined wrongly (each problem named) or registered twice.
    Type {
        /// The type's name.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// The space type is defined wrongly or registered twice.
    SpaceType(String),
    /// Service `name` is defined wrongly.
    Service {
        /// The service's name.
        name: String,
        /// What is wrong with it.
        why: String,
    },
    /// A nil-space method of this name is defined twice.
    NilSpaceMethod(String),
}

impl std::fmt::Display for RegisterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegisterError::Type { name, why } => write!(f, "entity type {name}: {why}"),
            RegisterError::SpaceType(why) => write!(f, "space type: {why}"),
            RegisterError::Service { name, why } => write!(f, "service {name}: {why}"),
            RegisterError::NilSpaceMethod(name) => {
                write!(f, "nil-space method {name} is defined twice")
            }
        }
    }
}

impl std::error::Error for RegisterError {}

const EMPTY_ARRAY: u8 = 0x90;
const EMPTY_MAP: u8 = 0x80;

/// Whether `T`'s state has no fields (a unit struct, written as an empty array).
fn is_fieldless<T: Entity>() -> bool {
    rmp_serde::to_vec_named(&T::default()).is_ok_and(|b| b == [EMPTY_ARRAY])
}

/// A type's struct must read state written by a binary whose struct lacked some fields (a hot
/// swap to new code, a migration between versions): `#[serde(default)]` on the struct gives
/// missing fields their `Default`. Checked by reading an empty map.
fn check_state_defaults<T: Entity>(desc: &mut TypeDesc<T>) {
    if !is_fieldless::<T>() && rmp_serde::from_slice::<T>(&[EMPTY_MAP]).is_err() {
        desc.errors.push(format!(
            "its struct cannot be read from state that lacks its fields: put #[serde(default)] on {}",
            std::any::type_name::<T>()
        ));
    }
}
