//! What game code may read of the world, and its own entity's place in it.
//!
//! [`WorldView`] is the narrow, read-only view both contexts get: which entities live on this
//! game, their types, positions and clients, spaces and AOI neighbours, services, games
//! online. The engine implements it; the API never sees the engine's tables.

use std::collections::BTreeSet;

use goworld_common::id::EntityId;

use super::Vec3;

/// Sync flag: the entity's own client is owed its position.
pub const SYNC_OWN: u8 = 1;
/// Sync flag: the clients of the entities that see it are owed its position.
pub const SYNC_NEIGHBOURS: u8 = 2;

/// A read-only view of this game's world.
pub trait WorldView {
    /// This game's ID.
    fn game_id(&self) -> u16;
    /// Games online, as the dispatchers report them (this one included).
    fn online_games(&self) -> &BTreeSet<u16>;
    /// True if entity `id` lives on this game.
    fn exists(&self, id: &EntityId) -> bool;
    /// IDs of this game's entities.
    fn entity_ids(&self) -> Vec<EntityId>;
    /// The type of entity `id` if it lives on this game.
    fn type_of(&self, id: &EntityId) -> Option<&str>;
    /// The position of entity `id` if it lives on this game.
    fn position_of(&self, id: &EntityId) -> Option<Vec3>;
    /// True if entity `id` lives on this game and has a client.
    fn has_client(&self, id: &EntityId) -> bool;
    /// The kind of local space `space` (0: the nil space).
    fn space_kind(&self, space: &EntityId) -> Option<i64>;
    /// The entities in local space `space`, with their type names.
    fn space_members(&self, space: &EntityId) -> Vec<(EntityId, &str)>;
    /// The entities that entity `id` in `space` sees (`sees`) or that see it; empty unless
    /// the space has AOI and `id` takes part in it.
    fn aoi_neighbours(&self, space: &EntityId, id: &EntityId, sees: bool) -> Vec<EntityId>;
    /// The entity of shard `shard` of service `name`, if known.
    fn service_entity(&self, name: &str, shard: u32) -> Option<EntityId>;
    /// True when every shard of service `name` has a known entity.
    fn services_ready(&self, name: &str) -> bool;
}

/// Where an entity is and what position sync it owes.
#[derive(Debug, Clone)]
pub(crate) struct Placement {
    pub(crate) space: EntityId,
    pub(crate) pos: Vec3,
    pub(crate) yaw: f32,
    /// [`SYNC_OWN`] | [`SYNC_NEIGHBOURS`] owed.
    pub(crate) sync: u8,
    pub(crate) syncing_from_client: bool,
    /// In the world's dirty list.
    pub(crate) queued: bool,
}

impl Placement {
    pub(crate) fn new(nil: EntityId) -> Placement {
        Placement {
            space: nil,
            pos: Vec3::default(),
            yaw: 0.0,
            sync: 0,
            syncing_from_client: false,
            queued: false,
        }
    }

    pub(crate) fn mark_sync(&mut self, flags: u8) {
        self.sync |= flags;
    }

    /// True the first time sync is owed since the last flush (the world queues it).
    pub(crate) fn take_newly_dirty(&mut self) -> bool {
        if self.sync != 0 && !self.queued {
            self.queued = true;
            true
        } else {
            false
        }
    }
}
