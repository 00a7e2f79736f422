//! Game-wide code that belongs to no entity: start-up work when the deployment is ready,
//! global timers and callbacks, posted work, and methods called on every game's nil space.
//!
//! [`GameCtx`] is what such code gets. Unlike an entity's [`Ctx`](crate::entity::Ctx) it
//! borrows no entity, so it acts at once: it can create and call entities, look them up, and
//! schedule more global work. Global timers and posted callbacks are closures: they cannot
//! travel with a hot swap, so start-up code (the game-ready hook) must create them again
//! after a restore.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use goworld_common::id::{nil_space_id, EntityId};
use goworld_common::proto::{Args, Msg};

use crate::args::{ArgError, FromArgs};
use crate::world::{Caller, Net, World};

/// A global timer or callback.
pub type GlobalFn = Box<dyn FnMut(&mut GameCtx)>;
/// Posted work: runs once, after the current event, in the same loop iteration.
pub type PostFn = Box<dyn FnOnce(&mut GameCtx)>;
/// The game-ready hook.
pub type ReadyFn = Box<dyn FnMut(&mut GameCtx)>;
/// A nil-space method: called on every game by [`GameCtx::call_nil_spaces`].
pub type NilSpaceFn = Box<dyn Fn(&mut GameCtx, &Args) -> Result<(), ArgError>>;

/// Identifies a global timer, for [`GameCtx::cancel_timer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GlobalTimerId(pub(crate) goworld_common::timers::TimerId);

/// The game-wide context: the world, its links, the time, the games online.
pub struct GameCtx<'w, 'n, 'a> {
    pub(crate) world: &'w mut World,
    pub(crate) net: &'n mut Net<'a>,
    pub(crate) now: Instant,
}

impl GameCtx<'_, '_, '_> {
    /// This game's ID.
    pub fn game_id(&self) -> u16 {
        self.world.game_id()
    }

    /// The nil space of game `game`.
    pub fn nil_space_id(&self, game: u16) -> EntityId {
        nil_space_id(game)
    }

    /// The time of the event being handled.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Games online, as the dispatchers report them (this one included).
    pub fn online_games(&self) -> &BTreeSet<u16> {
        self.world.online_games()
    }

    /// True if entity `id` lives on this game.
    pub fn exists(&self, id: &EntityId) -> bool {
        self.world.exists(id)
    }

    /// IDs of this game's entities.
    pub fn entity_ids(&self) -> Vec<EntityId> {
        self.world.ids().copied().collect()
    }

    /// The type of entity `id` on this game.
    pub fn type_of(&self, id: &EntityId) -> Option<&str> {
        self.world.type_of(id)
    }

    /// Calls `method` on entity `to`, wherever it lives.
    pub fn call(&mut self, to: EntityId, method: &str, args: Args) {
        if self.world.exists(&to) {
            self.world
                .call(self.net, self.now, to, method, args, Caller::Server);
        } else {
            let m = Msg::CallEntityMethod {
                eid: to,
                method: method.to_string(),
                args,
            };
            self.net
                .links
                .send_by_entity(self.net.io, &to, &m.to_payload());
        }
    }

    /// Creates an entity of `type_name` on this game; returns its ID.
    pub fn create_entity_locally(&mut self, type_name: &str) -> EntityId {
        let id = self.world.gen_id(self.now);
        self.world.create(self.net, self.now, type_name, id, None);
        id
    }

    /// Creates an entity of `type_name` on game `game` (0: any game); returns its ID.
    pub fn create_entity_on_game(&mut self, game: u16, type_name: &str) -> EntityId {
        if game == self.game_id() {
            return self.create_entity_locally(type_name);
        }
        let id = self.world.gen_id(self.now);
        let m = Msg::CreateEntitySomewhere {
            game_id: game,
            eid: id,
            type_name: type_name.to_string(),
            attrs: vec![0xc0],
        };
        self.net
            .links
            .send_by_entity(self.net.io, &id, &m.to_payload());
        id
    }

    /// Loads entity `id` of `type_name` on game `game` (0: any game), through its dispatcher.
    pub fn load_entity_on_game(&mut self, game: u16, type_name: &str, id: EntityId) {
        if self.world.exists(&id) {
            return;
        }
        self.world.note_load_requested(&id);
        let m = Msg::LoadEntitySomewhere {
            game_id: game,
            eid: id,
            type_name: type_name.to_string(),
        };
        self.net
            .links
            .send_by_entity(self.net.io, &id, &m.to_payload());
    }

    /// Creates a space of `kind` (not 0) on game `game` (this game: at once; 0: the least
    /// loaded game); returns its ID.
    pub fn create_space_on_game(&mut self, game: u16, kind: i64) -> EntityId {
        let id = self.world.gen_id(self.now);
        self.world.create_space(self.net, self.now, game, kind, id);
        self.world.run_local_calls(self.net, self.now);
        id
    }

    /// Creates a space of `kind` on this game; returns its ID.
    pub fn create_space_locally(&mut self, kind: i64) -> EntityId {
        let game = self.game_id();
        self.create_space_on_game(game, kind)
    }

    /// Creates a space of `kind` on the least loaded game; returns its ID.
    pub fn create_space_anywhere(&mut self, kind: i64) -> EntityId {
        self.create_space_on_game(0, kind)
    }

    /// Calls nil-space method `method` on every game (GoWorld's `CallNilSpaces`): this one
    /// after the current work, the others through one dispatcher that fans it out, so each
    /// game runs it once.
    pub fn call_nil_spaces(&mut self, method: &str, args: Args) {
        self.world
            .call_nil_spaces(self.net, method.to_string(), args);
    }

    /// Calls `method` on every client whose filter property `key` compares to `val` by
    /// `op`, on every gate; see [`Ctx::call_filtered_clients`](crate::entity::Ctx::call_filtered_clients).
    pub fn call_filtered_clients(
        &mut self,
        key: &str,
        op: goworld_common::proto::FilterOp,
        val: &str,
        method: &str,
        args: Args,
    ) {
        let m = Msg::CallFilteredClients {
            op,
            key: key.to_string(),
            val: val.to_string(),
            method: method.to_string(),
            args,
        };
        self.net.links.send_fanout(self.net.io, &m.to_payload());
    }

    /// Calls `method` on a random shard of service `name`; see
    /// [`Ctx::call_service_any`](crate::entity::Ctx::call_service_any).
    pub fn call_service_any(&mut self, name: &str, method: &str, args: Args) {
        self.world.call_service(
            self.net,
            self.now,
            name,
            crate::world::ShardSel::Any,
            method,
            args,
        );
    }

    /// Calls `method` on every shard of service `name`.
    pub fn call_service_all(&mut self, name: &str, method: &str, args: Args) {
        self.world.call_service(
            self.net,
            self.now,
            name,
            crate::world::ShardSel::All,
            method,
            args,
        );
    }

    /// Calls `method` on shard `shard` of service `name`.
    pub fn call_service_shard_index(&mut self, name: &str, shard: u32, method: &str, args: Args) {
        let sel = crate::world::ShardSel::Index(shard);
        self.world
            .call_service(self.net, self.now, name, sel, method, args);
    }

    /// Calls `method` on the shard of service `name` that `key` hashes to.
    pub fn call_service_shard_key(&mut self, name: &str, key: &str, method: &str, args: Args) {
        let sel = crate::world::ShardSel::Key(key.to_string());
        self.world
            .call_service(self.net, self.now, name, sel, method, args);
    }

    /// The entity of shard `shard` of service `name`, if known (`GetServiceEntityID`).
    pub fn service_entity(&self, name: &str, shard: u32) -> Option<EntityId> {
        self.world.service_entity(name, shard)
    }

    /// True when every shard of service `name` has a known entity
    /// (`CheckServiceEntitiesReady`).
    pub fn services_ready(&self, name: &str) -> bool {
        self.world.services_ready(name)
    }

    /// Runs `f` when the local time matches (GoWorld's `RegisterCrontab`: minute, hour, day,
    /// month, day of week; `-1` is any, `-n` is "divisible by n"); checked once a minute.
    /// Returns an ID for [`GameCtx::unregister_crontab`], or an error naming a bad field.
    pub fn register_crontab(
        &mut self,
        minute: i32,
        hour: i32,
        day: i32,
        month: i32,
        dayofweek: i32,
        f: impl FnMut(&mut GameCtx) + 'static,
    ) -> Result<crate::crontab::CronId, String> {
        let spec = crate::crontab::CronSpec::new(minute, hour, day, month, dayofweek)?;
        Ok(self.world.register_crontab(self.now, spec, Box::new(f)))
    }

    /// Removes a crontab entry (from the next check on).
    pub fn unregister_crontab(&mut self, id: crate::crontab::CronId) -> bool {
        self.world.unregister_crontab(id)
    }

    /// Runs `f` every `interval` (at least 10 ms) until cancelled.
    pub fn add_timer(
        &mut self,
        interval: Duration,
        f: impl FnMut(&mut GameCtx) + 'static,
    ) -> GlobalTimerId {
        let interval = interval.max(crate::entity::MIN_TIMER_INTERVAL);
        self.world
            .add_global_timer(self.now + interval, Some(interval), Box::new(f))
    }

    /// Runs `f` once after `delay`.
    pub fn add_callback(
        &mut self,
        delay: Duration,
        f: impl FnOnce(&mut GameCtx) + 'static,
    ) -> GlobalTimerId {
        let mut f = Some(f);
        let once: GlobalFn = Box::new(move |ctx| {
            if let Some(f) = f.take() {
                f(ctx)
            }
        });
        self.world.add_global_timer(self.now + delay, None, once)
    }

    /// Cancels a global timer (a fired callback or an unknown ID is ignored).
    pub fn cancel_timer(&mut self, id: GlobalTimerId) {
        self.world.cancel_global_timer(id);
    }

    /// Runs `f` after the current event, in this loop iteration (GoWorld's `Post`).
    pub fn post(&mut self, f: impl FnOnce(&mut GameCtx) + 'static) {
        self.world.post(Box::new(f));
    }
}

/// Registers a typed nil-space method: `f` gets the decoded arguments `A`.
pub fn nil_space_method<A: FromArgs + 'static>(f: fn(&mut GameCtx, A)) -> NilSpaceFn {
    Box::new(move |ctx, args| {
        f(ctx, A::from_args(args)?);
        Ok(())
    })
}
