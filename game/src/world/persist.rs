//! The world's part that owns persistence: what it asked of storage and the KVDB and what
//! waits for the answers.
//!
//! The world holds no store. It pushes [`StoreRequest`]s into an outbox, which its owner
//! empties ([`World::take_store_requests`]: the binary's shell feeds them to its worker
//! pool, the simulation and unit tests answer them in memory) and is handed the
//! [`StoreResult`]s later ([`World::on_store_results`]). Every token it issued and has not
//! been answered stays in one of two waiting maps, so the world knows at any time how many
//! requests are in flight; a freeze or a graceful stop waits for that count to reach zero
//! while the reactor keeps running ([`World::begin_store_drain`],
//! [`World::store_drain_state`]).
//!
//! What it does with storage: saves persistent entities when they are created, every
//! `save_interval` (the first after a random part of it) and when they are destroyed (the
//! dispatcher is told the entity is gone only once that last save is written); loads for
//! LOAD_ENTITY_SOMEWHERE; answers `storage_exists`. With the KVDB: runs game code's requests
//! and its callbacks with the answers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use goworld_common::id::EntityId;
use goworld_common::proto::Msg;
use log::{info, warn};

use super::{Net, TimerJob, World};
use crate::api::{KvdbCallback, StorageCallback};
use crate::attr::Attrs;
use crate::store::{
    KvdbOp, KvdbOutput, StorageOp, StorageOutput, Store, StoreError, StoreOp, StoreOutput,
    StoreRequest, StoreResult, Stores, Token,
};

/// Rounds of answers that start new requests a freeze waits through before it gives up (a
/// round ends when everything asked before it has been answered).
pub const MAX_DRAIN_ROUNDS: u32 = 10;

/// What a storage request was for.
enum StorageJob {
    /// A save; nothing waits for it.
    Save(EntityId),
    /// The last save of a destroyed entity: the dispatcher is told once it is written.
    FinalSave(EntityId),
    /// An entity asked whether another was saved.
    Exists {
        from: EntityId,
        then: StorageCallback,
    },
    /// A load for LOAD_ENTITY_SOMEWHERE.
    Load { type_name: String, id: EntityId },
}

/// A drain in progress: requests up to `mark` belong to the current round.
struct DrainRounds {
    mark: Token,
    rounds: u32,
}

/// Where a drain stands, after the answers so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainState {
    /// Nothing is in flight.
    Done,
    /// This many requests are in flight.
    Pending(usize),
    /// Answers kept starting new requests for [`MAX_DRAIN_ROUNDS`] rounds.
    Runaway,
}

/// Persistence bookkeeping (see the module docs).
pub(crate) struct Persist {
    /// Which stores this game has; requests are made only to those.
    stores: Stores,
    /// Requests made and not yet taken by the owner.
    outbox: Vec<StoreRequest>,
    /// KVDB requests in flight: who asked, and what runs with the answer.
    kvdb_waiting: BTreeMap<Token, (EntityId, Option<KvdbCallback>)>,
    /// Storage requests in flight, and what each was for.
    storage_waiting: BTreeMap<Token, StorageJob>,
    /// Entities being loaded here, so a second load request waits for the first.
    loading: HashSet<EntityId>,
    /// Destroyed entities whose last save is in flight; `true` once a load asked for them
    /// again, so they are loaded back instead of reported gone.
    final_saving: HashMap<EntityId, (String, bool)>,
    /// How often persistent entities are saved (`save_interval`; zero: only on destroy).
    save_interval: Duration,
    /// The last token issued.
    next_token: Token,
    /// A freeze is waiting for the answers.
    drain: Option<DrainRounds>,
    /// The game is stopping: entities are not loaded any more.
    stopping: bool,
}

impl Persist {
    pub(crate) fn new(stores: Stores) -> Persist {
        Persist {
            stores,
            outbox: Vec::new(),
            kvdb_waiting: BTreeMap::new(),
            storage_waiting: BTreeMap::new(),
            loading: HashSet::new(),
            final_saving: HashMap::new(),
            save_interval: Duration::from_secs(300),
            next_token: 0,
            drain: None,
            stopping: false,
        }
    }

    /// Queues a request in the outbox; returns its token.
    fn submit(&mut self, op: StoreOp) -> Token {
        debug_assert!(self.stores.has(op.store()), "a request to a store it lacks");
        self.next_token += 1;
        let token = self.next_token;
        self.outbox.push(StoreRequest { token, op });
        token
    }

    /// Requests made and not answered yet (those still in the outbox included).
    fn in_flight(&self) -> usize {
        self.kvdb_waiting.len() + self.storage_waiting.len()
    }

    /// The oldest token not answered yet.
    fn oldest(&self) -> Option<Token> {
        let k = self.kvdb_waiting.keys().next();
        let s = self.storage_waiting.keys().next();
        k.into_iter().chain(s).min().copied()
    }
}

/// A KVDB answer as game code's callback takes it.
fn kvdb_outcome(outcome: Result<StoreOutput, StoreError>) -> Result<KvdbOutput, StoreError> {
    match outcome {
        Ok(StoreOutput::Kvdb(out)) => Ok(out),
        Ok(_) => Err(StoreError::WrongAnswer { store: Store::Kvdb }),
        Err(e) => Err(e),
    }
}

/// A storage answer, with the error as game code and the log take it.
fn storage_outcome(outcome: Result<StoreOutput, StoreError>) -> Result<StorageOutput, StoreError> {
    match outcome {
        Ok(StoreOutput::Storage(out)) => Ok(out),
        Ok(_) => Err(StoreError::WrongAnswer {
            store: Store::Storage,
        }),
        Err(e) => Err(e),
    }
}

impl World {
    /// Which stores this game has.
    pub fn stores(&self) -> Stores {
        self.persist.stores
    }

    /// Takes the storage and KVDB requests made since the last call, in the order they were
    /// made. Their owner runs them and hands the answers to [`World::on_store_results`].
    pub fn take_store_requests(&mut self) -> Vec<StoreRequest> {
        std::mem::take(&mut self.persist.outbox)
    }

    /// Storage and KVDB requests made and not answered yet (taken or not).
    pub fn store_requests_in_flight(&self) -> usize {
        self.persist.in_flight()
    }

    /// Sets how often persistent entities are saved (`save_interval`; zero: only on destroy).
    pub fn set_save_interval(&mut self, d: Duration) {
        self.persist.save_interval = d;
    }

    /// A freeze starts waiting for the answers to everything in flight (see
    /// [`World::store_drain_state`]).
    pub(crate) fn begin_store_drain(&mut self) {
        self.persist.drain = Some(DrainRounds {
            mark: self.persist.next_token,
            rounds: 0,
        });
    }

    /// Where the drain stands. Called after each batch of answers: once everything asked
    /// before a round has been answered while newer requests are in flight (answers started
    /// them), a new round begins; after [`MAX_DRAIN_ROUNDS`] the drain is a runaway.
    pub(crate) fn store_drain_state(&mut self) -> DrainState {
        let p = &mut self.persist;
        let n = p.in_flight();
        if n == 0 {
            p.drain = None;
            return DrainState::Done;
        }
        let (oldest, next) = (p.oldest(), p.next_token);
        if let Some(d) = &mut p.drain {
            if oldest.is_some_and(|t| t > d.mark) {
                d.rounds += 1;
                d.mark = next;
                if d.rounds >= MAX_DRAIN_ROUNDS {
                    p.drain = None;
                    return DrainState::Runaway;
                }
            }
        }
        DrainState::Pending(n)
    }

    /// The drain ended (the freeze finished or failed).
    pub(crate) fn end_store_drain(&mut self) {
        self.persist.drain = None;
    }

    /// The game stops: every entity is destroyed, which saves the persistent ones. The
    /// caller waits for [`World::store_requests_in_flight`] to reach zero before it exits;
    /// meanwhile nothing is loaded any more.
    pub fn destroy_all(&mut self, net: &mut Net, now: Instant) {
        let ids: Vec<EntityId> = self.entities.keys().copied().collect();
        for id in ids {
            self.destroy(net, now, id);
        }
        self.persist.stopping = true;
    }

    /// A KVDB request of game code (entity `from`), with the callback to run on the answer.
    pub(super) fn kvdb_request(
        &mut self,
        net: &mut Net,
        now: Instant,
        from: EntityId,
        op: KvdbOp,
        then: Option<KvdbCallback>,
    ) {
        if !self.persist.stores.kvdb {
            warn!("{from}: KVDB {op:?} but the KVDB is disabled ([kvdb] type is empty)");
            if let Some(cb) = then {
                let e = StoreError::Unconfigured { store: Store::Kvdb };
                self.with_entity(net, now, from, "KVDB callback", |_, obj, ctx| {
                    cb(obj, ctx, Err(e))
                });
            }
            return;
        }
        let token = self.persist.submit(StoreOp::Kvdb(op));
        self.persist.kvdb_waiting.insert(token, (from, then));
    }

    /// Game code (entity `from`) asks whether entity `id` of `type_name` was ever saved.
    pub(super) fn storage_exists(
        &mut self,
        net: &mut Net,
        now: Instant,
        from: EntityId,
        type_name: String,
        id: EntityId,
        then: StorageCallback,
    ) {
        if !self.persist.stores.storage {
            let e = StoreError::Unconfigured {
                store: Store::Storage,
            };
            self.with_entity(net, now, from, "storage callback", |_, obj, ctx| {
                then(obj, ctx, Err(e))
            });
            return;
        }
        let op = StoreOp::Storage(StorageOp::Exists { type_name, eid: id });
        let token = self.persist.submit(op);
        self.persist
            .storage_waiting
            .insert(token, StorageJob::Exists { from, then });
    }

    /// Arms a persistent entity's periodic save. The first comes after a random part of the
    /// interval, so entities loaded together do not all save in one tick.
    pub(super) fn schedule_save(&mut self, now: Instant, id: EntityId) {
        let persistent = self.entities.get(&id).is_some_and(|r| r.ty.is_persistent());
        let interval = self.persist.save_interval;
        if !persistent || interval.is_zero() || !self.persist.stores.storage {
            return;
        }
        let first = interval.mul_f64(0.5 + 0.5 * self.rng.unit());
        self.timers.add(now + first, TimerJob::Save(id));
    }

    /// A persistent entity's periodic save is due: save it and arm the next one.
    pub(super) fn periodic_save(&mut self, now: Instant, id: EntityId) {
        if self.save(id, false) {
            let next = now + self.persist.save_interval;
            self.timers.add(next, TimerJob::Save(id));
        }
    }

    /// Saves a persistent entity's Persistent attributes. With `last`, the dispatcher is told
    /// the entity is gone only once the save is written, so a quick re-login never reads a
    /// stale file. False if nothing was saved (not here, not persistent, no storage).
    pub(super) fn save(&mut self, id: EntityId, last: bool) -> bool {
        let Some(rec) = self.entities.get(&id) else {
            return false;
        };
        if !rec.ty.is_persistent() || !self.persist.stores.storage {
            return false;
        }
        let ty = rec.ty.clone();
        let mut data = Vec::new();
        rec.attrs
            .filtered_value(|k| ty.attr_flags(k).persistent)
            .encode(&mut data);
        let type_name = ty.name().to_string();
        let job = if last {
            self.persist
                .final_saving
                .insert(id, (type_name.clone(), false));
            StorageJob::FinalSave(id)
        } else {
            StorageJob::Save(id)
        };
        let op = StoreOp::Storage(StorageOp::Save {
            type_name,
            eid: id,
            data,
        });
        let token = self.persist.submit(op);
        self.persist.storage_waiting.insert(token, job);
        true
    }

    /// This game asks its dispatcher to load entity `id`. If `id` was destroyed here and its
    /// last save is still being written, the dispatcher has not been told it is gone, so it
    /// will send the load back here: load it again once the save is written, instead of
    /// telling the dispatcher it is gone. (Telling it would end its hold, and the calls held
    /// for the load would arrive before the entity.)
    pub(crate) fn note_load_requested(&mut self, id: &EntityId) {
        if let Some((_, reload)) = self.persist.final_saving.get_mut(id) {
            *reload = true;
        }
    }

    /// LOAD_ENTITY_SOMEWHERE chose this game: load the entity from storage and create it.
    pub fn load(&mut self, net: &mut Net, type_name: &str, id: EntityId) {
        if self.entities.contains_key(&id) {
            // The dispatcher holds calls until it hears the entity is here: say so again.
            net.by_entity(id, Msg::NotifyCreateEntity { eid: id });
            return;
        }
        if let Some((_, reload)) = self.persist.final_saving.get_mut(&id) {
            // Destroyed a moment ago; load it back once its last save is written.
            *reload = true;
            return;
        }
        if !self.persist.stores.storage || self.persist.stopping {
            if self.persist.stopping {
                info!("not loading {type_name}<{id}>: this game is stopping");
            } else {
                warn!("cannot load {type_name}<{id}>: storage is disabled");
            }
            net.by_entity(id, Msg::NotifyDestroyEntity { eid: id });
            return;
        }
        if !self.persist.loading.insert(id) {
            return;
        }
        let op = StoreOp::Storage(StorageOp::Load {
            type_name: type_name.to_string(),
            eid: id,
        });
        let token = self.persist.submit(op);
        let job = StorageJob::Load {
            type_name: type_name.to_string(),
            id,
        };
        self.persist.storage_waiting.insert(token, job);
    }

    /// Answers to storage and KVDB requests arrived: finishes what each was for (callbacks
    /// run with their entities, loaded entities are created, the dispatcher hears of
    /// entities whose last save is written), then the local calls that started. Answers to
    /// tokens this world is not waiting for are ignored.
    pub fn on_store_results(&mut self, net: &mut Net, now: Instant, results: Vec<StoreResult>) {
        for StoreResult { token, outcome } in results {
            if let Some((from, then)) = self.persist.kvdb_waiting.remove(&token) {
                let result = kvdb_outcome(outcome);
                match then {
                    Some(cb) => {
                        self.with_entity(net, now, from, "KVDB callback", |_, obj, ctx| {
                            cb(obj, ctx, result)
                        });
                    }
                    None => {
                        if let Err(e) = result {
                            warn!("{from}: KVDB write failed: {e}");
                        }
                    }
                }
            } else if let Some(job) = self.persist.storage_waiting.remove(&token) {
                self.storage_answered(net, now, job, storage_outcome(outcome));
            }
        }
        self.run_local_calls(net, now);
    }

    fn storage_answered(
        &mut self,
        net: &mut Net,
        now: Instant,
        job: StorageJob,
        r: Result<StorageOutput, StoreError>,
    ) {
        match (job, r) {
            (StorageJob::Save(id), Err(e)) => warn!("saving {id} failed: {e}"),
            (StorageJob::Save(_), Ok(_)) => {}
            (StorageJob::FinalSave(id), r) => {
                if let Err(e) = r {
                    warn!("the last save of {id} failed: {e}");
                }
                match self.persist.final_saving.remove(&id) {
                    Some((type_name, true)) => self.load(net, &type_name, id),
                    _ => net.by_entity(id, Msg::NotifyDestroyEntity { eid: id }),
                }
            }
            (StorageJob::Exists { from, then }, r) => {
                let r = r.map(|out| matches!(out, StorageOutput::Exists(true)));
                self.with_entity(net, now, from, "storage callback", |_, obj, ctx| {
                    then(obj, ctx, r)
                });
            }
            (StorageJob::Load { type_name, id }, r) => {
                self.persist.loading.remove(&id);
                let data = match r {
                    Ok(StorageOutput::Loaded(Some(bytes))) => match Attrs::from_bytes(&bytes) {
                        Ok(a) => Some(a),
                        Err(e) => {
                            warn!("{type_name}<{id}> in storage is unreadable: {e}");
                            None
                        }
                    },
                    Ok(_) => {
                        warn!("{type_name}<{id}> is not in storage");
                        None
                    }
                    Err(e) => {
                        warn!("loading {type_name}<{id}> failed: {e}");
                        None
                    }
                };
                match data {
                    Some(a) => {
                        self.create(net, now, &type_name, id, Some(a));
                    }
                    // The dispatcher assigned the entity here: tell it there is none.
                    None => net.by_entity(id, Msg::NotifyDestroyEntity { eid: id }),
                }
            }
        }
    }
}
