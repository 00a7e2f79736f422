//! The world's table of live entities: each entity's record (its type, its own struct,
//! attributes, client, timers, placement, an enter in flight), and the [`Snapshot`] an entity
//! travels as when it migrates or is frozen.
//!
//! Invariants:
//! - An entity is in the table from its creation until its destroy finished; while its code
//!   runs, its record is out of the table (so the code's `Ctx` can read every *other* entity
//!   through the world view) and goes back before any queued action runs.
//! - A record's `timers` names exactly its timers in the world's schedule.

use std::any::Any;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use goworld_common::id::{EntityId, FastMap};
use goworld_common::proto::Args;
use goworld_common::timers::TimerId as QueueId;

use super::space::EnterRequest;
use crate::api::{EntityType, GameClient, Placement, StateError, TimerId};
use crate::attr::Attrs;

/// The entity table.
pub(crate) type EntityMap = FastMap<EntityId, Rec>;

/// A live entity.
pub(crate) struct Rec {
    pub(crate) ty: Rc<dyn EntityType>,
    pub(super) obj: Box<dyn Any>,
    pub(super) attrs: Attrs,
    pub(super) client: Option<GameClient>,
    pub(super) destroying: bool,
    /// The entity's live timers: its own IDs to the queue's.
    pub(super) timers: HashMap<TimerId, QueueId>,
    pub(super) next_timer: TimerId,
    /// Its periodic save's timer, if it is persistent and saves periodically. Exactly one
    /// per entity: a save timer left behind by an entity that went (and perhaps came back
    /// by migration) would start a second chain of saves each time.
    pub(super) save_timer: Option<QueueId>,
    /// Its space, position, yaw and sync state.
    pub(crate) place: Placement,
    /// An EnterSpace in progress.
    pub(super) entering: Option<EnterRequest>,
}

impl Rec {
    pub(crate) fn has_client(&self) -> bool {
        self.client.is_some()
    }

    /// Takes every queued timer of the entity out of the record (its own and its periodic
    /// save), for the caller to cancel when the entity leaves this game.
    pub(super) fn take_queue_timers(&mut self) -> impl Iterator<Item = QueueId> + '_ {
        (self.timers.drain().map(|(_, q)| q)).chain(self.save_timer.take())
    }

    pub(super) fn new(
        ty: Rc<dyn EntityType>,
        obj: Box<dyn Any>,
        attrs: Attrs,
        nil: EntityId,
    ) -> Rec {
        Rec {
            ty,
            obj,
            attrs,
            client: None,
            destroying: false,
            timers: HashMap::new(),
            next_timer: 0,
            save_timer: None,
            place: Placement::new(nil),
            entering: None,
        }
    }
}

/// Everything an entity is, as bytes and plain values, for migration and hot swap: its type,
/// all attributes, its own struct (serde), its client and its timers with their remaining time.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The entity's ID.
    pub id: EntityId,
    /// Its registered type.
    pub type_name: String,
    /// Every attribute ([`Attrs::to_bytes`]).
    pub attrs: Vec<u8>,
    /// The entity's own struct, serialized by serde (msgpack with field names).
    pub state: Vec<u8>,
    /// Its client, if it has one.
    pub client: Option<GameClient>,
    /// Its timers: time left until the next call, repeat interval, method and arguments.
    pub timers: Vec<TimerSnapshot>,
    /// The space it is in, or is moving to.
    pub space: EntityId,
    /// Its position (in a migration: the target position).
    pub pos: crate::api::Vec3,
    /// Its yaw.
    pub yaw: f32,
    /// Whether its client's position syncs move it.
    pub syncing_from_client: bool,
    /// Position sync still owed to clients ([`SYNC_OWN`] | [`SYNC_NEIGHBOURS`]).
    pub sync_flags: u8,
}

/// One entity timer in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq)]
pub struct TimerSnapshot {
    /// Time left until it fires.
    pub remaining: Duration,
    /// Its repeat interval, if it repeats.
    pub repeat: Option<Duration>,
    /// The method it calls.
    pub method: String,
    /// The method's arguments.
    pub args: Args,
}

/// Why a snapshot could not be taken, read or brought back.
#[derive(Debug, Clone, PartialEq)]
pub enum SnapshotError {
    /// No entity of that ID lives here.
    NotHere(EntityId),
    /// An entity of that ID lives here already.
    AlreadyHere(EntityId),
    /// The type is not registered in this binary.
    UnknownType(String),
    /// The entity's own struct could not be written or read.
    State(StateError),
    /// Its attributes are not attributes.
    Attrs {
        /// The entity's type.
        type_name: String,
        /// Its ID.
        id: EntityId,
        /// Why.
        err: crate::attr::ValueError,
    },
    /// The bytes are not msgpack.
    Msgpack(String),
    /// A field of the snapshot's map is missing or has the wrong kind.
    Field {
        /// The field (`T`, `A`, `Pos.X`, `TD.R`, ...).
        field: &'static str,
        /// What it should be.
        want: &'static str,
    },
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::NotHere(id) => write!(f, "entity {id} is not here"),
            SnapshotError::AlreadyHere(id) => write!(f, "entity {id} is already here"),
            SnapshotError::UnknownType(t) => {
                write!(f, "entity type {t} is not registered in this binary")
            }
            SnapshotError::State(e) => e.fmt(f),
            SnapshotError::Attrs { type_name, id, err } => {
                write!(f, "{type_name}<{id}>: attributes: {err}")
            }
            SnapshotError::Msgpack(e) => write!(f, "snapshot is not msgpack: {e}"),
            SnapshotError::Field { field, want } => {
                write!(f, "snapshot field {field}: missing or not {want}")
            }
        }
    }
}

impl std::error::Error for SnapshotError {}

impl From<StateError> for SnapshotError {
    fn from(e: StateError) -> SnapshotError {
        SnapshotError::State(e)
    }
}
