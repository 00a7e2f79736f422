//! The layer game code is written against. It depends on attributes ([`crate::attr`]),
//! arguments ([`crate::args`]) and IDs, and reads the world only through [`WorldView`]; the
//! engine ([`crate::world`]) depends on it, never the other way round.
//!
//! - [`entity`]: the [`Entity`] trait and its lifecycle [`Hook`]s, [`Vec3`].
//! - [`desc`]: a type's definition ([`TypeDesc`]) and the game's [`Registry`]; [`key`]: typed
//!   attribute keys ([`Attr`]).
//! - [`act`]: [`Act`], everything game code can ask of the world, written once for both
//!   contexts; [`action`]: the [`Action`]s it emits.
//! - [`ctx`]: [`Ctx`], an entity's context (actions queued until its handler returns).
//! - [`game_ctx`]: [`GameCtx`], game-wide code's context (actions run at once).
//! - [`view`]: [`WorldView`], the read-only view, and an entity's [`Placement`].

pub mod act;
pub mod action;
pub mod ctx;
pub mod desc;
pub mod entity;
pub mod game_ctx;
pub mod key;
pub mod view;

/// The exclusive end of a KVDB range that must include a key (GoWorld's `NextLargerKey`).
pub use crate::store::msg::next_larger_key;
pub use act::Act;
pub(crate) use action::{Action, KvdbCallback, StorageCallback};
pub use action::{KvdbOp, KvdbRangeResult, KvdbResult, ShardSel, TimerId, MIN_TIMER_INTERVAL};
pub use ctx::Ctx;
pub(crate) use desc::EntityType;
pub use desc::{CallError, Expose, RegisterError, Registry, StateError, TypeDesc};
pub use entity::{Entity, Hook, Vec3, SPACE_AOI, SPACE_KIND, SPACE_TYPE};
pub(crate) use game_ctx::Engine;
pub use game_ctx::{
    nil_space_method, GameCtx, GlobalFn, GlobalTimerId, NilSpaceFn, PostFn, ReadyFn,
};
pub use key::{Attr, AttrFlags, AttrType};
pub(crate) use view::Placement;
pub use view::{WorldView, SYNC_NEIGHBOURS, SYNC_OWN};

/// A client bound to an entity on this game.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GameClient {
    /// The client's ID, made by its gate.
    pub client_id: goworld_common::id::ClientId,
    /// The gate the client is connected to.
    pub gate_id: u16,
}

/// Everything a game's code usually needs: `use goworld_game::prelude::*;`.
pub mod prelude {
    pub use super::{
        nil_space_method, Act, Attr, Ctx, Entity, Expose, GameCtx, KvdbRangeResult, KvdbResult,
        RegisterError, Registry, TimerId, TypeDesc, Vec3,
    };
    pub use crate::args;
    pub use crate::attr::{ListAttr, MapAttr};
    pub use crate::store::StoreError;
}
