//! The engine's side of the API: [`EntityView`] answers game code's reads ([`WorldView`])
//! from the world's tables, and [`Runner`] is what a [`GameCtx`](crate::api::GameCtx) drives
//! ([`Engine`]): its actions go through [`World::run_action`], the runner an entity's queued
//! actions go through too.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use goworld_common::id::EntityId;

use super::service::Services;
use super::spaces::{self, SpaceMap};
use super::{EntityMap, Net, TimerJob, World};
use crate::api::{Action, Engine, GlobalFn, GlobalTimerId, PostFn, Vec3, WorldView};
use crate::crontab::{CronId, CronSpec};

/// The world as game code may read it. While an entity's code runs its record is out of
/// `entities`; its [`Ctx`](crate::api::Ctx) answers for itself.
pub(crate) struct EntityView<'a> {
    pub(crate) game_id: u16,
    pub(crate) online: &'a BTreeSet<u16>,
    pub(crate) entities: &'a EntityMap,
    pub(crate) spaces: &'a SpaceMap,
    pub(crate) services: &'a Services,
}

impl WorldView for EntityView<'_> {
    fn game_id(&self) -> u16 {
        self.game_id
    }

    fn online_games(&self) -> &BTreeSet<u16> {
        self.online
    }

    fn exists(&self, id: &EntityId) -> bool {
        self.entities.contains_key(id)
    }

    fn entity_ids(&self) -> Vec<EntityId> {
        self.entities.keys().copied().collect()
    }

    fn type_of(&self, id: &EntityId) -> Option<&str> {
        self.entities.get(id).map(|r| r.ty.name())
    }

    fn position_of(&self, id: &EntityId) -> Option<Vec3> {
        self.entities.get(id).map(|r| r.place.pos)
    }

    fn has_client(&self, id: &EntityId) -> bool {
        self.entities.get(id).is_some_and(|r| r.has_client())
    }

    fn space_kind(&self, space: &EntityId) -> Option<i64> {
        self.spaces.get(space).map(|s| s.kind)
    }

    fn space_members(&self, space: &EntityId) -> Vec<(EntityId, &str)> {
        self.spaces.get(space).map_or_else(Vec::new, |s| {
            (s.members.iter())
                .map(|(id, m)| (*id, m.ty.name()))
                .collect()
        })
    }

    fn aoi_neighbours(&self, space: &EntityId, id: &EntityId, sees: bool) -> Vec<EntityId> {
        spaces::aoi_neighbours(self.spaces, space, id, sees)
    }

    fn service_entity(&self, name: &str, shard: u32) -> Option<EntityId> {
        self.services.entity(name, shard, self.online, self.game_id)
    }

    fn services_ready(&self, name: &str) -> bool {
        self.services.ready(name, self.online, self.game_id)
    }
}

impl World {
    /// The world as game-wide code reads it.
    pub(crate) fn view(&self) -> EntityView<'_> {
        EntityView {
            game_id: self.game_id,
            online: &self.online,
            entities: &self.entities,
            spaces: self.spaces.map(),
            services: &self.services,
        }
    }
}

/// The world, its output and the time: what a game-wide context acts on.
pub(crate) struct Runner<'w, 'n, 'a> {
    pub(crate) world: &'w mut World,
    pub(crate) net: &'n mut Net<'a>,
    pub(crate) now: Instant,
}

impl WorldView for Runner<'_, '_, '_> {
    fn game_id(&self) -> u16 {
        self.world.game_id
    }

    fn online_games(&self) -> &BTreeSet<u16> {
        &self.world.online
    }

    fn exists(&self, id: &EntityId) -> bool {
        self.world.entities.contains_key(id)
    }

    fn entity_ids(&self) -> Vec<EntityId> {
        self.world.entities.keys().copied().collect()
    }

    fn type_of(&self, id: &EntityId) -> Option<&str> {
        self.world.entities.get(id).map(|r| r.ty.name())
    }

    fn position_of(&self, id: &EntityId) -> Option<Vec3> {
        self.world.view().position_of(id)
    }

    fn has_client(&self, id: &EntityId) -> bool {
        self.world.view().has_client(id)
    }

    fn space_kind(&self, space: &EntityId) -> Option<i64> {
        self.world.view().space_kind(space)
    }

    fn space_members(&self, space: &EntityId) -> Vec<(EntityId, &str)> {
        self.world.spaces.get(space).map_or_else(Vec::new, |s| {
            (s.members.iter())
                .map(|(id, m)| (*id, m.ty.name()))
                .collect()
        })
    }

    fn aoi_neighbours(&self, space: &EntityId, id: &EntityId, sees: bool) -> Vec<EntityId> {
        self.world.view().aoi_neighbours(space, id, sees)
    }

    fn service_entity(&self, name: &str, shard: u32) -> Option<EntityId> {
        self.world.service_entity(name, shard)
    }

    fn services_ready(&self, name: &str) -> bool {
        self.world.services_ready(name)
    }
}

impl Engine for Runner<'_, '_, '_> {
    fn run(&mut self, action: Action) {
        self.world.run_action(self.net, self.now, action, true);
        self.world.run_local_calls(self.net, self.now);
    }

    fn new_entity_id(&mut self) -> EntityId {
        self.world.gen_id(self.now)
    }

    fn now(&self) -> Instant {
        self.now
    }

    fn add_global_timer(
        &mut self,
        delay: Duration,
        repeat: Option<Duration>,
        f: GlobalFn,
    ) -> GlobalTimerId {
        let at = self.now + delay;
        GlobalTimerId(self.world.timers.add(at, TimerJob::Global { f, repeat }))
    }

    fn cancel_global_timer(&mut self, id: GlobalTimerId) {
        self.world.timers.cancel(id.0);
    }

    fn post(&mut self, f: PostFn) {
        self.world.post(f);
    }

    fn register_crontab(&mut self, spec: CronSpec, f: GlobalFn) -> CronId {
        self.world.register_crontab(self.now, spec, f)
    }

    fn unregister_crontab(&mut self, id: CronId) -> bool {
        self.world.unregister_crontab(id)
    }

    fn as_view(&self) -> &dyn WorldView {
        self
    }
}
