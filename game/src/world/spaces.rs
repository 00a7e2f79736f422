//! The world's part that owns the spaces of one game: each space's kind, members and AOI
//! index, the position-sync state (who moved since the last sync, when the next is due), and
//! the enters and migrations held back by other work. What entering, leaving and migrating
//! do with entities and clients is in `space.rs`, which coordinates this part with the
//! entity table.
//!
//! Invariants:
//! - The nil space of the game is always here (kind 0, no AOI); every other space here has an
//!   entity record of type [`SPACE_TYPE`](crate::api::SPACE_TYPE) on this game.
//! - An entity is a member of at most one space here, the one its `Placement` names; it has
//!   an AOI slot exactly when that space has AOI and its type uses AOI.
//! - An entity is in the sync list at most once per interval (its `Placement::queued`), and a
//!   sync is due exactly while the list is not empty.

use std::rc::Rc;
use std::time::{Duration, Instant};

use goworld_common::id::{EntityId, FastMap};

use crate::aoi::{Aoi, AoiEvent, AoiId};
use crate::api::{EntityType, Vec3};

/// The spaces of a game, by space ID.
pub(crate) type SpaceMap = FastMap<EntityId, SpaceState>;

/// An entity in a space.
pub(crate) struct Member {
    pub(crate) ty: Rc<dyn EntityType>,
    pub(crate) aoi: Option<AoiId>,
}

/// A space on this game.
pub(crate) struct SpaceState {
    pub(crate) kind: i64,
    pub(crate) members: FastMap<EntityId, Member>,
    pub(crate) aoi: Option<Aoi<EntityId>>,
    pub(crate) aoi_distance: f32,
}

impl SpaceState {
    pub(crate) fn new(kind: i64) -> SpaceState {
        SpaceState {
            kind,
            members: FastMap::default(),
            aoi: None,
            aoi_distance: 0.0,
        }
    }
}

/// The entities that entity `id` in `space` sees (`sees`) or that see it; empty unless the
/// space has AOI and `id` takes part in it.
pub(crate) fn aoi_neighbours(
    spaces: &SpaceMap,
    space: &EntityId,
    id: &EntityId,
    sees: bool,
) -> Vec<EntityId> {
    let Some(space) = spaces.get(space) else {
        return Vec::new();
    };
    let (Some(aoi), Some(slot)) = (
        space.aoi.as_ref(),
        space.members.get(id).and_then(|m| m.aoi),
    ) else {
        return Vec::new();
    };
    if sees {
        aoi.interested_in(slot).map(|s| aoi.payload(s)).collect()
    } else {
        aoi.interested_by(slot).map(|s| aoi.payload(s)).collect()
    }
}

/// An enter or a migration that waits for other work to finish first.
pub(crate) type HeldMigration = (EntityId, EntityId, u16);

/// The spaces of one game and their sync state.
pub(crate) struct Spaces {
    by_id: SpaceMap,
    /// Entities whose position or yaw changed since the last position sync.
    sync_dirty: Vec<EntityId>,
    /// When the next position sync to clients is due (while anything is dirty).
    next_sync: Option<Instant>,
    sync_interval: Duration,
    /// Position syncs from clients this game did not apply (entity gone or not syncing).
    syncs_ignored: u64,
    /// Scratch list of AOI events, kept for its allocation.
    aoi_events: Vec<AoiEvent>,
    /// Migrations acknowledged while service calls were held here: an entity leaves only
    /// after the calls waiting on this game (perhaps its own) have gone out ahead of it.
    migrations_waiting: Vec<HeldMigration>,
    /// EnterSpace requests the last freeze cancelled, asked again if the freeze fails.
    freeze_cancelled_enters: Vec<(EntityId, EntityId, Vec3)>,
}

impl Spaces {
    /// The spaces of a game whose nil space is `nil`.
    pub(crate) fn new(nil: EntityId) -> Spaces {
        let mut by_id = SpaceMap::default();
        by_id.insert(nil, SpaceState::new(0));
        Spaces {
            by_id,
            sync_dirty: Vec::new(),
            next_sync: None,
            sync_interval: Duration::from_millis(100),
            syncs_ignored: 0,
            aoi_events: Vec::new(),
            migrations_waiting: Vec::new(),
            freeze_cancelled_enters: Vec::new(),
        }
    }

    /// Every space, for reading (the world view hands it to game code's queries).
    pub(crate) fn map(&self) -> &SpaceMap {
        &self.by_id
    }

    pub(crate) fn get(&self, id: &EntityId) -> Option<&SpaceState> {
        self.by_id.get(id)
    }

    pub(crate) fn get_mut(&mut self, id: &EntityId) -> Option<&mut SpaceState> {
        self.by_id.get_mut(id)
    }

    pub(crate) fn contains_key(&self, id: &EntityId) -> bool {
        self.by_id.contains_key(id)
    }

    pub(crate) fn insert(&mut self, id: EntityId, s: SpaceState) {
        self.by_id.insert(id, s);
    }

    pub(crate) fn remove(&mut self, id: &EntityId) -> Option<SpaceState> {
        self.by_id.remove(id)
    }

    /// The entities `id` in `space` sees (`sees`) or that see it.
    pub(crate) fn neighbours(&self, space: &EntityId, id: &EntityId, sees: bool) -> Vec<EntityId> {
        aoi_neighbours(&self.by_id, space, id, sees)
    }

    // ---- position sync ----

    /// Sets how often position changes are sent to clients (at least every millisecond).
    pub(crate) fn set_sync_interval(&mut self, d: Duration) {
        self.sync_interval = d.max(Duration::from_millis(1));
    }

    /// Position syncs from clients that were not applied.
    pub(crate) fn syncs_ignored(&self) -> u64 {
        self.syncs_ignored
    }

    /// Counts a position sync from a client that was not applied.
    pub(crate) fn ignore_sync(&mut self) {
        self.syncs_ignored += 1;
    }

    /// Entity `id` owes clients its position: it goes out with the next sync, due one
    /// interval after the first entity queued for it.
    pub(crate) fn queue_sync(&mut self, now: Instant, id: EntityId) {
        self.sync_dirty.push(id);
        if self.next_sync.is_none() {
            self.next_sync = Some(now + self.sync_interval);
        }
    }

    /// When the next position sync is due.
    pub(crate) fn sync_deadline(&self) -> Option<Instant> {
        self.next_sync
    }

    /// Takes the entities owed a sync (the sync is no longer due); give the list back with
    /// [`Spaces::sync_done`].
    pub(crate) fn take_sync(&mut self) -> Vec<EntityId> {
        self.next_sync = None;
        std::mem::take(&mut self.sync_dirty)
    }

    /// Gives back the list [`Spaces::take_sync`] took, for its allocation.
    pub(crate) fn sync_done(&mut self, mut dirty: Vec<EntityId>) {
        dirty.clear();
        if self.sync_dirty.is_empty() {
            self.sync_dirty = dirty;
        }
    }

    /// The scratch list for AOI events (empty); give it back with [`Spaces::aoi_done`].
    pub(crate) fn aoi_scratch(&mut self) -> Vec<AoiEvent> {
        let mut ev = std::mem::take(&mut self.aoi_events);
        ev.clear();
        ev
    }

    /// Gives back the scratch list.
    pub(crate) fn aoi_done(&mut self, ev: Vec<AoiEvent>) {
        self.aoi_events = ev;
    }

    // ---- held moves ----

    /// A migration that must wait for the service calls held here.
    pub(crate) fn hold_migration(&mut self, m: HeldMigration) {
        self.migrations_waiting.push(m);
    }

    /// True if migrations wait.
    pub(crate) fn migrations_held(&self) -> bool {
        !self.migrations_waiting.is_empty()
    }

    /// Takes the migrations that waited.
    pub(crate) fn take_held_migrations(&mut self) -> Vec<HeldMigration> {
        std::mem::take(&mut self.migrations_waiting)
    }

    /// A freeze cancelled these enters (asked again if the freeze fails).
    pub(crate) fn set_freeze_cancelled_enters(&mut self, e: Vec<(EntityId, EntityId, Vec3)>) {
        self.migrations_waiting.clear();
        self.freeze_cancelled_enters = e;
    }

    /// Takes the enters the last freeze cancelled.
    pub(crate) fn take_freeze_cancelled_enters(&mut self) -> Vec<(EntityId, EntityId, Vec3)> {
        std::mem::take(&mut self.freeze_cancelled_enters)
    }
}
