//! What game code asks of the world, as values: [`Action`]s, emitted by both contexts
//! ([`Ctx`] queues them until its handler returns, [`GameCtx`](super::GameCtx) has them run at
//! once) and run by one runner in the engine.

use std::any::Any;
use std::time::Duration;

use goworld_common::id::EntityId;
use goworld_common::proto::Args;

use super::{Ctx, Vec3};
use crate::attr::AttrChange;
use crate::store::StoreError;

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
        sel: ShardSel,
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

/// A KVDB operation: the store's own request type, so game code's operation travels to the
/// store as it is.
pub use crate::store::KvdbOp;

/// What a KVDB callback gets: the value (for Get and GetOrPut) or an error.
pub type KvdbResult = Result<Option<String>, StoreError>;
/// What a KVDB range callback gets: the pairs, ordered by key, or an error.
pub type KvdbRangeResult = Result<Vec<(String, String)>, StoreError>;
/// A KVDB callback, run with the entity that asked (not run if it is gone).
pub(crate) type KvdbCallback =
    Box<dyn FnOnce(&mut dyn Any, &mut Ctx, Result<crate::store::KvdbOutput, StoreError>)>;
/// A storage callback, run with the entity that asked (not run if it is gone).
pub(crate) type StorageCallback = Box<dyn FnOnce(&mut dyn Any, &mut Ctx, Result<bool, StoreError>)>;

/// Which shard of a service a call goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardSel {
    /// A random shard (GoWorld's `CallServiceAny`).
    Any,
    /// Every shard (`CallServiceAll`).
    All,
    /// Shard `i` (`CallServiceShardIndex`).
    Index(u32),
    /// The shard `HashString(key) % shards` (`CallServiceShardKey`).
    Key(String),
}
