//! What an entity is to game code: the [`Entity`] trait with its lifecycle callbacks (in
//! GoWorld's order, reference §3.5), the [`Hook`]s that name them for the engine, positions
//! ([`Vec3`]) and the names of the built-in space type and its attributes.

use std::any::Any;

use goworld_common::id::EntityId;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Attr, Ctx, TypeDesc};
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
pub const SPACE_KIND: Attr<i64> = Attr::all_clients("_K");
/// The space attribute holding its AOI distance once enabled (server-only).
pub const SPACE_AOI: Attr<f64> = Attr::server("_EnableAOI");

/// An entity type. Implement it on a struct with your own fields (`Default` builds a new
/// instance); the engine owns the attributes and the client.
///
/// The struct is serialized with serde when the entity moves to another game or the game is
/// hot-swapped, so nothing it keeps is lost silently (GoWorld drops plain struct fields).
/// Mark fields that must not travel with `#[serde(skip)]`; they come back as their
/// `Default`. Put `#[serde(default)]` on the struct, so state written by a binary whose
/// struct had fewer fields can be read (registration checks it). Closures cannot travel: keep callbacks in attributes or re-create them.
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
