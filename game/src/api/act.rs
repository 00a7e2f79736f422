//! [`Act`]: what game code can ask of the world from either context, written once.
//!
//! Both [`Ctx`](super::Ctx) (an entity's handler) and [`GameCtx`](super::GameCtx) (code that
//! belongs to no entity) implement the three required methods; every provided method builds
//! an [`Action`] and hands it to [`Act::emit`]. An entity's context queues it after the
//! attribute changes made so far and the engine runs the queue when the handler returns; the
//! game-wide context has it run at once. Either way one runner in the engine carries it out,
//! so a call, a create or a load means the same thing wherever game code makes it.

use std::collections::BTreeSet;
use std::time::Instant;

use goworld_common::id::EntityId;
use goworld_common::proto::{Args, FilterOp};

use super::{Action, ShardSel, WorldView};

/// What game code can ask of the world. Bring it into scope with
/// `use goworld_game::prelude::*`.
pub trait Act {
    /// Hands an action to the engine (queued by an entity's context, run at once by the
    /// game-wide one). Game code uses the methods below.
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn emit(&mut self, action: Action);

    /// A new entity ID.
    #[doc(hidden)]
    fn new_entity_id(&mut self) -> EntityId;

    /// What this code may read of the world.
    fn view(&self) -> &dyn WorldView;

    /// The time of the event being handled.
    fn now(&self) -> Instant;

    /// The ID of the game this runs on.
    fn game_id(&self) -> u16 {
        self.view().game_id()
    }

    /// Games online, as the dispatchers report them (this one included).
    fn online_games(&self) -> &BTreeSet<u16> {
        self.view().online_games()
    }

    /// Calls `method` on entity `to` with `args` (build them with [`args!`](crate::args!)),
    /// wherever it lives: a local entity runs it after the current handler (an entity's
    /// context) or at once (the game-wide one); another game's through its dispatcher.
    fn call(&mut self, to: EntityId, method: &str, args: Args) {
        self.emit(Action::Call {
            to,
            method: method.to_string(),
            args,
        });
    }

    /// Calls `method` on every entity of `to` with the same `args`, in that order: what a
    /// service does to reach all its subscribers. Like [`Act::call`] once per entity, but the
    /// method and arguments are built and kept once for all of them.
    fn call_many(&mut self, to: Vec<EntityId>, method: &str, args: Args) {
        if to.is_empty() {
            return;
        }
        self.emit(Action::CallMany {
            to,
            method: method.to_string(),
            args,
        });
    }

    /// Destroys entity `id` on this game (GoWorld lets game code destroy any local entity;
    /// one elsewhere is not touched).
    fn destroy_entity(&mut self, id: EntityId) {
        self.emit(Action::Destroy(id));
    }

    /// Creates an entity of `type_name` on this game; returns its new ID.
    fn create_entity_locally(&mut self, type_name: &str) -> EntityId {
        let id = self.new_entity_id();
        self.emit(Action::CreateLocally {
            type_name: type_name.to_string(),
            id,
        });
        id
    }

    /// Creates an entity of `type_name` on any game (the dispatcher places it); returns its ID.
    fn create_entity_anywhere(&mut self, type_name: &str) -> EntityId {
        self.create_entity_on_game(0, type_name)
    }

    /// Creates an entity of `type_name` on game `game` (0: any game); returns its ID.
    fn create_entity_on_game(&mut self, game: u16, type_name: &str) -> EntityId {
        let id = self.new_entity_id();
        self.emit(Action::CreateSomewhere {
            game,
            type_name: type_name.to_string(),
            id,
        });
        id
    }

    /// Creates a space of `kind` on this game; returns its ID. Kind 0 is the nil space, of
    /// which each game has exactly one: asking for it panics (caught and logged).
    fn create_space_locally(&mut self, kind: i64) -> EntityId {
        let game = self.game_id();
        self.create_space_on_game(game, kind)
    }

    /// Creates a space of `kind` on the least loaded game; returns its ID.
    fn create_space_anywhere(&mut self, kind: i64) -> EntityId {
        self.create_space_on_game(0, kind)
    }

    /// Creates a space of `kind` on game `game` (0: the least loaded game); returns its ID.
    fn create_space_on_game(&mut self, game: u16, kind: i64) -> EntityId {
        assert!(kind != 0, "cannot create a space of kind 0 (the nil space)");
        let id = self.new_entity_id();
        self.emit(Action::CreateSpace { game, kind, id });
        id
    }

    /// Loads entity `id` of `type_name` from storage on any game (or finds it where it lives).
    fn load_entity_anywhere(&mut self, type_name: &str, id: EntityId) {
        self.load_entity_on_game(0, type_name, id);
    }

    /// Loads entity `id` of `type_name` on this game (unless it already lives elsewhere).
    fn load_entity_locally(&mut self, type_name: &str, id: EntityId) {
        let game = self.game_id();
        self.load_entity_on_game(game, type_name, id);
    }

    /// Loads entity `id` of `type_name` on game `game` (0: any game). The load goes through
    /// the entity's dispatcher, which holds calls to it until it is loaded; one live instance
    /// per ID across the cluster.
    fn load_entity_on_game(&mut self, game: u16, type_name: &str, id: EntityId) {
        self.emit(Action::Load {
            game,
            type_name: type_name.to_string(),
            id,
        });
    }

    /// Calls nil-space method `method` on every game (GoWorld's `CallNilSpaces`): this one
    /// after the current work, the others through one dispatcher that fans it out, so each
    /// game runs it once.
    fn call_nil_spaces(&mut self, method: &str, args: Args) {
        self.emit(Action::CallNilSpaces {
            method: method.to_string(),
            args,
        });
    }

    /// Calls `method` on the player entity of every client, on every gate, whose filter
    /// property `key` compares to `val` by `op` (bytewise); an empty key reaches every client
    /// (GoWorld's `CallFilteredClients`). One dispatcher fans it out, so each client gets it
    /// once however many dispatchers there are.
    fn call_filtered_clients(
        &mut self,
        key: &str,
        op: FilterOp,
        val: &str,
        method: &str,
        args: Args,
    ) {
        self.emit(Action::CallFilteredClients {
            op,
            key: key.to_string(),
            val: val.to_string(),
            method: method.to_string(),
            args,
        });
    }

    /// Calls `method` on a random shard of service `name` (GoWorld's `CallServiceAny`). Calls
    /// to shards not known yet wait until they are.
    fn call_service_any(&mut self, name: &str, method: &str, args: Args) {
        self.call_service(name, ShardSel::Any, method, args);
    }

    /// Calls `method` on every shard of service `name` (`CallServiceAll`).
    fn call_service_all(&mut self, name: &str, method: &str, args: Args) {
        self.call_service(name, ShardSel::All, method, args);
    }

    /// Calls `method` on shard `shard` of service `name` (`CallServiceShardIndex`).
    fn call_service_shard_index(&mut self, name: &str, shard: u32, method: &str, args: Args) {
        self.call_service(name, ShardSel::Index(shard), method, args);
    }

    /// Calls `method` on the shard of service `name` that `key` hashes to
    /// (`CallServiceShardKey`: GoWorld's `HashString(key) % shards`).
    fn call_service_shard_key(&mut self, name: &str, key: &str, method: &str, args: Args) {
        self.call_service(name, ShardSel::Key(key.to_string()), method, args);
    }

    /// Calls `method` on the shard(s) of service `name` that `sel` picks.
    fn call_service(&mut self, name: &str, sel: ShardSel, method: &str, args: Args) {
        self.emit(Action::CallService {
            name: name.to_string(),
            sel,
            method: method.to_string(),
            args,
        });
    }

    /// The entity of shard `shard` of service `name`, if known (`GetServiceEntityID`).
    fn service_entity(&self, name: &str, shard: u32) -> Option<EntityId> {
        self.view().service_entity(name, shard)
    }

    /// True when every shard of service `name` has a known entity
    /// (`CheckServiceEntitiesReady`).
    fn services_ready(&self, name: &str) -> bool {
        self.view().services_ready(name)
    }
}
