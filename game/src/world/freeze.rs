//! Hot swap: everything a game runs, written by the old binary to `game<N>_freezed.dat` and
//! brought back by the new one started with `-restore`.
//!
//! The file is one msgpack map: `format` ([`FREEZE_FORMAT`]: the layout of the file, never
//! the game code, so a new binary with changed game code restores it), `game` (the game's
//! ID), `entities`, an array of `[ID, snapshot, enter]` with the spaces first, and
//! `unsaved`, an array of `[ID, type, data, last]`: saves storage had not taken because it
//! was down (see `persist.rs`), which the restored game writes (absent from older files). A
//! snapshot is REAL_MIGRATE's map as bytes (type, every attribute, the serde struct, client,
//! position, yaw, timers with their remaining time, sync state; see `space::encode_snapshot`)
//! for the entity's current space and position; `enter` is nil or the EnterSpace it had in
//! flight (`[space, x, y, z]`), which was cancelled for the freeze and is asked again after
//! the restore. Spaces are rebuilt from their entities' `_K` (kind) and `_EnableAOI` attributes;
//! AOI neighbourhoods are recomputed from the positions, without client messages (the
//! clients kept their view).
//!
//! What is not written: game-wide timers and crontab entries (closures: `on_game_ready`
//! runs again after the restore and sets them up), the service registry (the dispatchers
//! keep it and send it with their handshake ack), and nothing in flight (local calls are
//! run, migrations cancelled, before the freeze; storage and KVDB requests were answered
//! before it began: the game service waits for them in its draining state, see
//! `persist.rs`).
//!
//! Invariant: a hot swap loses nothing. The file is written only after the local work is
//! run, storage and the KVDB have answered everything in flight (the draining state), and
//! EnterSpace requests are cancelled (asked again after the restore); the new process
//! restores it all before it dials, and the dispatchers hold the game's packets in between.

use std::fmt;
use std::time::Instant;

use goworld_common::id::EntityId;
use goworld_common::msgpack::{self, Value};
use log::info;

use super::space::{decode_snapshot, encode_snapshot};
use super::spaces::SpaceState;
use super::{Net, SnapshotError, World};
use crate::aoi::Aoi;
use crate::api::{Hook, Vec3, SPACE_AOI, SPACE_KIND, SPACE_TYPE};

/// The freeze file's layout version.
pub const FREEZE_FORMAT: i64 = 1;

/// What a restore brought back.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Restored {
    /// Spaces, the nil space not counted.
    pub spaces: usize,
    /// Entities, spaces included.
    pub entities: usize,
    /// EnterSpace requests cancelled by the freeze and asked again.
    pub enters: usize,
}

/// Why a freeze was refused (the game runs on).
#[derive(Debug, Clone, PartialEq)]
pub enum FreezeError {
    /// Service calls wait for shards no game has announced yet (they would be lost).
    ServiceCallsHeld(usize),
    /// `on_freeze` panicked this many times (logged where it happened).
    OnFreezePanicked(u64),
    /// An entity could not be written.
    Snapshot(SnapshotError),
}

impl fmt::Display for FreezeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FreezeError::ServiceCallsHeld(n) => write!(
                f,
                "{n} service calls are waiting for their shards; try again once they are known"
            ),
            FreezeError::OnFreezePanicked(n) => {
                write!(f, "on_freeze panicked {n} times (logged above)")
            }
            FreezeError::Snapshot(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for FreezeError {}

impl From<SnapshotError> for FreezeError {
    fn from(e: SnapshotError) -> FreezeError {
        FreezeError::Snapshot(e)
    }
}

/// Why a freeze file could not be restored (nothing was restored).
#[derive(Debug, Clone, PartialEq)]
pub enum ThawError {
    /// Not msgpack.
    NotAFreezeFile(String),
    /// Another layout than [`FREEZE_FORMAT`] (or none).
    Format(Option<i64>),
    /// Another game's file.
    OtherGame {
        /// The file's game.
        file: i64,
        /// This game.
        this: u16,
    },
    /// Not laid out as a freeze file.
    Malformed(&'static str),
    /// An entity's snapshot cannot be read or built.
    Entity {
        /// The entity.
        id: EntityId,
        /// Why.
        err: SnapshotError,
    },
    /// An entity of a type this binary does not register.
    UnknownType {
        /// The entity.
        id: EntityId,
        /// Its type.
        type_name: String,
    },
    /// A timer calling a method this binary's type does not define.
    UnknownTimerMethod {
        /// The entity.
        id: EntityId,
        /// Its type.
        type_name: String,
        /// The timer's method.
        method: String,
    },
}

impl fmt::Display for ThawError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThawError::NotAFreezeFile(e) => write!(f, "not a freeze file: {e}"),
            ThawError::Format(other) => write!(
                f,
                "freeze file format {other:?}, this binary reads {FREEZE_FORMAT}"
            ),
            ThawError::OtherGame { file, this } => {
                write!(f, "the freeze file is game{file}'s, this is game{this}")
            }
            ThawError::Malformed(why) => write!(f, "bad freeze file: {why}"),
            ThawError::Entity { id, err } => write!(f, "{id}: {err}"),
            ThawError::UnknownType { id, type_name } => write!(
                f,
                "entity {id} is of type {type_name}, which this binary does not register"
            ),
            ThawError::UnknownTimerMethod {
                id,
                type_name,
                method,
            } => write!(
                f,
                "entity {id} ({type_name}) has a timer calling {method}, which this binary's {type_name} does not define"
            ),
        }
    }
}

impl std::error::Error for ThawError {}

impl World {
    /// Writes everything this game runs as the freeze file's bytes. First every entity's
    /// `on_freeze` runs (a panic there abandons the freeze, changing nothing else), then the
    /// work in hand is finished: local calls run, calls waiting behind migration fences are
    /// released and run, and every EnterSpace in flight is cancelled (its dispatcher releases
    /// the calls it held; they reach the restored game) and written down to be asked again
    /// (or asked again at once by [`World::unfreeze`] if the freeze fails later).
    pub fn freeze(&mut self, net: &mut Net, now: Instant) -> Result<Vec<u8>, FreezeError> {
        // Calls waiting for a service shard no game has announced yet are not written down:
        // rather than lose them, the freeze is refused until they have gone out.
        let held = self.held_service_calls();
        if held > 0 {
            return Err(FreezeError::ServiceCallsHeld(held));
        }
        let panics = self.panics;
        let all: Vec<EntityId> = self.entities.keys().copied().collect();
        for id in all {
            self.hook(net, now, id, Hook::Freeze);
        }
        if self.panics != panics {
            return Err(FreezeError::OnFreezePanicked(self.panics - panics));
        }
        self.run_posted(net, now);
        let fenced = self.work.fenced();
        for id in fenced {
            self.unfence(id);
        }
        self.run_local_calls(net, now);
        let mut enters: Vec<(EntityId, EntityId, Vec3)> = Vec::new();
        let entering: Vec<EntityId> = (self.entities.iter())
            .filter(|(_, r)| r.entering.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in entering {
            if let Some(r) = self.entities.get(&id).and_then(|r| r.entering) {
                let (space, pos) = r.target();
                enters.push((id, space, pos));
            }
            self.cancel_enter(net, id);
        }
        self.spaces.set_freeze_cancelled_enters(enters.clone());

        let mut ids: Vec<(bool, EntityId)> = (self.entities.iter())
            .map(|(id, r)| (r.ty.name() != SPACE_TYPE, *id))
            .collect();
        ids.sort();
        // Written as it goes (no value tree): each entry is [ID, snapshot bytes, E or nil].
        let mut out = Vec::with_capacity(64 + ids.len() * 256);
        msgpack::write_map_len(&mut out, 4);
        msgpack::write_str(&mut out, "format");
        msgpack::write_int(&mut out, FREEZE_FORMAT);
        msgpack::write_str(&mut out, "game");
        msgpack::write_int(&mut out, i64::from(self.game_id));
        msgpack::write_str(&mut out, "entities");
        msgpack::write_array_len(&mut out, ids.len() as u32);
        let enters: std::collections::HashMap<EntityId, (EntityId, Vec3)> = enters
            .into_iter()
            .map(|(id, space, pos)| (id, (space, pos)))
            .collect();
        for (_, id) in ids {
            let snap = self.snapshot(now, &id)?;
            msgpack::write_array_len(&mut out, 3);
            msgpack::write_str(&mut out, &id.to_text());
            msgpack::write_bin(&mut out, &encode_snapshot(&snap));
            match enters.get(&id) {
                Some((space, pos)) => {
                    msgpack::write_array_len(&mut out, 4);
                    msgpack::write_str(&mut out, &space.to_text());
                    for x in [pos.x, pos.y, pos.z] {
                        msgpack::write_float(&mut out, f64::from(x));
                    }
                }
                None => msgpack::write_nil(&mut out),
            }
        }
        // Saves storage has not taken (it is down): the restored game writes them.
        let held = self.held_save_list();
        if !held.is_empty() {
            info!(
                "game{}: storage is failing; {} unwritten saves go into the freeze file",
                self.game_id,
                held.len()
            );
        }
        msgpack::write_str(&mut out, "unsaved");
        msgpack::write_array_len(&mut out, held.len() as u32);
        for (id, save) in held {
            msgpack::write_array_len(&mut out, 4);
            msgpack::write_str(&mut out, &id.to_text());
            msgpack::write_str(&mut out, &save.type_name);
            msgpack::write_bin(&mut out, &save.data);
            msgpack::write_bool(&mut out, save.last);
        }
        Ok(out)
    }

    /// The freeze failed after [`World::freeze`]: the EnterSpace requests it cancelled are
    /// asked again.
    pub fn unfreeze(&mut self, net: &mut Net, now: Instant) {
        for (id, space, pos) in self.spaces.take_freeze_cancelled_enters() {
            self.enter_space(net, now, id, space, pos);
        }
        self.run_local_calls(net, now);
    }

    /// Brings back a frozen game from the freeze file's bytes, before the game connects:
    /// spaces, entities (struct, attributes, client bound quietly, timers at their remaining
    /// time), space membership and AOI; then `on_attrs_ready` and `on_restored` for each
    /// (spaces first), and the cancelled EnterSpace requests are asked again. Nothing is
    /// changed if the file cannot be read or names a type this binary lacks.
    pub fn thaw(
        &mut self,
        net: &mut Net,
        now: Instant,
        bytes: &[u8],
    ) -> Result<Restored, ThawError> {
        let file =
            msgpack::decode_exact(bytes).map_err(|e| ThawError::NotAFreezeFile(e.to_string()))?;
        match file.map_get("format").and_then(Value::as_i64) {
            Some(FREEZE_FORMAT) => {}
            other => return Err(ThawError::Format(other)),
        }
        let game = file.map_get("game").and_then(Value::as_i64);
        if game != Some(i64::from(self.game_id)) {
            return Err(ThawError::OtherGame {
                file: game.unwrap_or(0),
                this: self.game_id,
            });
        }
        let list = file
            .map_get("entities")
            .and_then(Value::as_array)
            .ok_or(ThawError::Malformed("no entities list"))?;
        let mut snaps = Vec::with_capacity(list.len());
        let mut enters = Vec::new();
        for item in list {
            let entry = item
                .as_array()
                .filter(|p| p.len() == 3)
                .ok_or(ThawError::Malformed(
                    "an entry is not [ID, snapshot, enter]",
                ))?;
            let id = entry[0]
                .as_str()
                .and_then(EntityId::parse)
                .ok_or(ThawError::Malformed("an entry's entity ID is not one"))?;
            let Value::Bin(bytes) = &entry[1] else {
                return Err(ThawError::Malformed("a snapshot is not bytes"));
            };
            let snap = decode_snapshot(id, bytes).map_err(|err| ThawError::Entity { id, err })?;
            let Some(ty) = self.registry.get(&snap.type_name) else {
                return Err(ThawError::UnknownType {
                    id,
                    type_name: snap.type_name,
                });
            };
            if let Some(t) = snap.timers.iter().find(|t| ty.expose(&t.method).is_none()) {
                return Err(ThawError::UnknownTimerMethod {
                    id,
                    method: t.method.clone(),
                    type_name: snap.type_name,
                });
            }
            if let Some(e) = entry[2].as_array() {
                let num = |i: usize| e.get(i).and_then(Value::as_f64).unwrap_or(0.0) as f32;
                if let Some(space) = e.first().and_then(Value::as_str).and_then(EntityId::parse) {
                    enters.push((id, space, Vec3::new(num(1), num(2), num(3))));
                }
            }
            snaps.push(snap);
        }
        // Saves the old process could not write (absent from older files).
        let mut unsaved = Vec::new();
        for item in file
            .map_get("unsaved")
            .and_then(Value::as_array)
            .unwrap_or(&[])
        {
            let bad = ThawError::Malformed("an unsaved entry is not [ID, type, data, last]");
            let e = item
                .as_array()
                .filter(|e| e.len() == 4)
                .ok_or(bad.clone())?;
            let (Some(id), Some(type_name), Value::Bin(data), Some(last)) = (
                e[0].as_str().and_then(EntityId::parse),
                e[1].as_str(),
                &e[2],
                e[3].as_bool(),
            ) else {
                return Err(bad);
            };
            unsaved.push((
                id,
                super::persist::PendingSave {
                    type_name: type_name.to_string(),
                    data: data.clone(),
                    last,
                },
            ));
        }
        let nil = self.nil_space();
        let mut restored = Restored {
            enters: enters.len(),
            ..Restored::default()
        };
        let mut placed = Vec::new();
        let mut order = Vec::with_capacity(snaps.len());
        for snap in snaps {
            let (id, space, pos) = (snap.id, snap.space, snap.pos);
            let is_space = snap.type_name == SPACE_TYPE;
            if let Err(e) = self.insert_snapshot(now, snap) {
                // Nothing half-restored: what was built goes again.
                for done in &order {
                    self.remove_quietly(done);
                    self.spaces.remove(done);
                }
                return Err(ThawError::Entity { id, err: e });
            }
            if is_space {
                let rec = &self.entities[&id];
                let attrs = rec.attrs.as_map();
                let mut st = SpaceState::new(attrs.get_int(SPACE_KIND.name()));
                let d = attrs.get_float(SPACE_AOI.name()) as f32;
                if d > 0.0 {
                    st.aoi = Some(Aoi::new(d));
                    st.aoi_distance = d;
                }
                self.spaces.insert(id, st);
                restored.spaces += 1;
            } else if space != nil {
                placed.push((id, space, pos));
            }
            order.push(id);
        }
        for (id, space, pos) in placed {
            self.place_quietly(id, space, pos);
        }
        restored.entities = order.len();
        for id in order {
            self.hook(net, now, id, Hook::AttrsReady);
            self.hook(net, now, id, Hook::Restored);
        }
        for (id, space, pos) in enters {
            self.enter_space(net, now, id, space, pos);
        }
        self.restore_held_saves(unsaved);
        self.run_local_calls(net, now);
        info!(
            "game{}: restored {} entities ({} spaces); {} EnterSpace requests asked again",
            self.game_id, restored.entities, restored.spaces, restored.enters
        );
        Ok(restored)
    }
}
