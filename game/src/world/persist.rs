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
//!
//! # Saves are never dropped
//!
//! An entity has at most one save in flight; a newer save waits behind it in `held`,
//! replacing any older one waiting there (the newest wins; "last save" is kept if either
//! was). A save that fails is held again (unless a newer one is) and storage counts as down
//! (an [`Outage`]): every save is then held, one held save at a time is retried (round robin
//! over the entities) after a backoff that doubles from [`RETRY_FIRST`] to [`RETRY_MAX`], and
//! the first success releases them all. The failure is logged once when it starts, then at
//! most once per [`REPORT_EVERY`] with the entity and the reason, and once when storage is
//! back. A stop waits for held saves too and names what it could not write; a freeze waits
//! only for what is in flight and writes the held saves into the freeze file, for the
//! restored game to write (see `freeze.rs`). Loads and `storage_exists` are not retried: their
//! callers get the error.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::time::{Duration, Instant};

use goworld_common::id::EntityId;
use goworld_common::proto::Msg;
use goworld_common::timers::TimerId as QueueId;
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

/// The first wait before a failed save is retried.
pub const RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between retries while storage keeps failing.
pub const RETRY_MAX: Duration = Duration::from_secs(5);
/// How often a storage outage is reported while it lasts.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// A save to write: an entity's persistent attributes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PendingSave {
    pub(crate) type_name: String,
    pub(crate) data: Vec<u8>,
    /// The last save of a destroyed entity: the dispatcher is told once it is written.
    pub(crate) last: bool,
}

/// Storage is failing saves (see the module docs).
struct Outage {
    since: Instant,
    backoff: Duration,
    /// When the next held save is retried.
    retry_at: Instant,
    /// The entity whose save is being retried now.
    probe: Option<EntityId>,
    /// The last entity retried (the next retry takes the one after it).
    cursor: Option<EntityId>,
    failures: u64,
    /// The last failure: what was saved and why it failed.
    last: String,
    next_report: Instant,
}

/// What a storage request was for.
enum StorageJob {
    /// A save (kept until it is written).
    Save { id: EntityId, save: PendingSave },
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
    /// The token of each entity's save in flight.
    saving: HashMap<EntityId, Token>,
    /// Saves waiting: behind the entity's save in flight, or for storage to come back.
    held: BTreeMap<EntityId, PendingSave>,
    /// Storage is failing saves.
    outage: Option<Outage>,
    /// KVDB writes without a callback that failed since the last report, and when the next
    /// report is due (one line per [`REPORT_EVERY`], not one per failure).
    kvdb_failed: u64,
    kvdb_report_at: Option<Instant>,
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
            saving: HashMap::new(),
            held: BTreeMap::new(),
            outage: None,
            kvdb_failed: 0,
            kvdb_report_at: None,
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

    /// A KVDB write nobody waits for failed: logged at once if none was logged in the last
    /// [`REPORT_EVERY`], else counted into the next line.
    fn kvdb_write_failed(&mut self, now: Instant, from: EntityId, e: &StoreError) {
        self.kvdb_failed += 1;
        if self.kvdb_report_at.is_some_and(|t| now < t) {
            return;
        }
        let more = self.kvdb_failed - 1;
        warn!(
            "{from}: KVDB write failed: {e}{}",
            if more > 0 {
                format!(" ({more} more failed since the last report)")
            } else {
                String::new()
            }
        );
        self.kvdb_failed = 0;
        self.kvdb_report_at = Some(now + REPORT_EVERY);
    }

    /// Sends a save to storage now.
    fn submit_save(&mut self, id: EntityId, save: PendingSave) {
        let op = StoreOp::Storage(StorageOp::Save {
            type_name: save.type_name.clone(),
            eid: id,
            data: save.data.clone(),
        });
        let token = self.submit(op);
        self.saving.insert(id, token);
        self.storage_waiting
            .insert(token, StorageJob::Save { id, save });
    }

    /// Writes a save now, or holds it (behind the entity's save in flight, or while storage
    /// is down), replacing an older one held.
    fn queue_save(&mut self, id: EntityId, save: PendingSave) {
        if self.saving.contains_key(&id) || self.outage.is_some() {
            self.hold(id, save);
        } else {
            self.submit_save(id, save);
        }
    }

    /// Holds `save` unless a newer one is held (then that one inherits its `last`).
    fn hold_unless_newer(&mut self, id: EntityId, save: PendingSave) {
        match self.held.get_mut(&id) {
            Some(newer) => newer.last |= save.last,
            None => {
                self.held.insert(id, save);
            }
        }
    }

    /// Forgets a held save of `id` (an entity dropped as stale: see `World::drop_fenced`).
    pub(super) fn forget_held(&mut self, id: &EntityId) {
        self.held.remove(id);
    }

    /// Holds `save`, the newest: it replaces one held (keeping its `last`).
    fn hold(&mut self, id: EntityId, mut save: PendingSave) {
        if let Some(old) = self.held.remove(&id) {
            save.last |= old.last;
        }
        self.held.insert(id, save);
    }

    /// A save failed: storage is down (or still is).
    fn save_failed(&mut self, now: Instant, id: EntityId, type_name: &str, e: &StoreError) {
        let what = format!("saving {type_name}<{id}>: {e}");
        let held = self.held.len();
        match &mut self.outage {
            None => {
                warn!(
                    "storage is failing ({what}); holding saves (the newest of each entity) and retrying until it answers"
                );
                self.outage = Some(Outage {
                    since: now,
                    backoff: RETRY_FIRST,
                    retry_at: now + RETRY_FIRST,
                    probe: None,
                    cursor: None,
                    failures: 1,
                    last: what,
                    next_report: now + REPORT_EVERY,
                });
            }
            Some(o) => {
                o.failures += 1;
                o.last = what;
                // Only a retry's failure backs off: saves sent before the outage began fail
                // together.
                if o.probe == Some(id) {
                    o.probe = None;
                    o.backoff = (o.backoff * 2).min(RETRY_MAX);
                    o.retry_at = now + o.backoff;
                }
                if now >= o.next_report {
                    o.next_report = now + REPORT_EVERY;
                    warn!(
                        "storage still failing after {:.0?}: {held} saves held, {} attempts failed; last: {}",
                        now.saturating_duration_since(o.since),
                        o.failures,
                        o.last
                    );
                }
            }
        }
    }

    /// A save was written: if storage was down, it is back, and every held save is sent.
    fn save_written(&mut self, now: Instant, id: EntityId) {
        if let Some(o) = self.outage.take() {
            info!(
                "storage is back after {:.0?} ({} attempts failed); writing {} held saves",
                now.saturating_duration_since(o.since),
                o.failures,
                self.held.len()
            );
            let ready: Vec<EntityId> = (self.held.keys())
                .filter(|e| !self.saving.contains_key(e))
                .copied()
                .collect();
            for e in ready {
                if let Some(save) = self.held.remove(&e) {
                    self.submit_save(e, save);
                }
            }
        } else if let Some(next) = self.held.remove(&id) {
            self.submit_save(id, next);
        }
    }

    /// While storage is down: the next held save (round robin) is retried once the
    /// backoff is over and no retry is in flight.
    fn retry(&mut self, now: Instant) {
        let Some(o) = &self.outage else {
            return;
        };
        if o.probe.is_some() || now < o.retry_at {
            return;
        }
        let after = |from: Bound<&EntityId>| {
            (self.held.range((from, Bound::Unbounded)))
                .map(|(e, _)| *e)
                .find(|e| !self.saving.contains_key(e))
        };
        let next = match o.cursor {
            Some(c) => after(Bound::Excluded(&c)).or_else(|| after(Bound::Unbounded)),
            None => after(Bound::Unbounded),
        };
        let Some(id) = next else {
            return;
        };
        if let Some(o) = &mut self.outage {
            o.probe = Some(id);
            o.cursor = Some(id);
        }
        if let Some(save) = self.held.remove(&id) {
            self.submit_save(id, save);
        }
    }

    /// When [`Persist::retry`] has something to do.
    fn retry_deadline(&self) -> Option<Instant> {
        let o = self.outage.as_ref()?;
        (o.probe.is_none() && !self.held.is_empty()).then_some(o.retry_at)
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

    /// Storage and KVDB requests made and not answered yet (taken or not), and saves held
    /// (waiting for storage to come back, or behind the entity's save in flight).
    pub fn store_requests_in_flight(&self) -> usize {
        self.persist.in_flight() + self.persist.held.len()
    }

    /// Saves held, not sent to storage yet.
    pub fn held_saves(&self) -> usize {
        self.persist.held.len()
    }

    /// While storage is down, retries a held save when the backoff is over. Runs every
    /// tick, draining or not (a stop waits for held saves).
    pub fn retry_saves(&mut self, now: Instant) {
        self.persist.retry(now);
    }

    /// When [`World::retry_saves`] has something to do.
    pub fn retry_deadline(&self) -> Option<Instant> {
        self.persist.retry_deadline()
    }

    /// What was not written: held saves and saves in flight (type and ID, the first
    /// `max`), their number, and, if storage is down, since when and its last failure.
    pub fn unwritten_saves(&self, now: Instant, max: usize) -> String {
        let p = &self.persist;
        let mut ids: Vec<String> = Vec::new();
        let mut n = 0usize;
        for (id, save) in &p.held {
            n += 1;
            if ids.len() < max {
                ids.push(format!("{}<{id}>", save.type_name));
            }
        }
        for job in p.storage_waiting.values() {
            if let StorageJob::Save { id, save } = job {
                if !p.held.contains_key(id) {
                    n += 1;
                    if ids.len() < max {
                        ids.push(format!("{}<{id}>", save.type_name));
                    }
                }
            }
        }
        let mut out = format!("{n} saves not written");
        if let Some(o) = &p.outage {
            out += &format!(
                " (storage failing for {:.0?}; last: {})",
                now.saturating_duration_since(o.since),
                o.last
            );
        }
        if n > 0 {
            out += ": ";
            out += &ids.join(", ");
            if n > ids.len() {
                out += &format!(" and {} more", n - ids.len());
            }
        }
        let kv = p.kvdb_waiting.len();
        if kv > 0 {
            out += &format!("; {kv} KVDB requests unanswered");
        }
        out
    }

    /// The held saves (a freeze writes them into its file; they stay held here in case
    /// the freeze fails).
    pub(crate) fn held_save_list(&self) -> Vec<(EntityId, &PendingSave)> {
        self.persist.held.iter().map(|(id, s)| (*id, s)).collect()
    }

    /// Saves a freeze file carried: written (or held) as if just made.
    pub(crate) fn restore_held_saves(&mut self, saves: Vec<(EntityId, PendingSave)>) {
        for (id, save) in saves {
            if save.last {
                self.persist
                    .final_saving
                    .insert(id, (save.type_name.clone(), false));
            }
            self.persist.queue_save(id, save);
        }
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
        // Held saves do not count: the freeze file carries them.
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

    /// Arms a persistent entity's periodic save (replacing one it had). The first comes
    /// after a random part of the interval, so entities loaded together do not all save in
    /// one tick.
    pub(super) fn schedule_save(&mut self, now: Instant, id: EntityId) {
        let interval = self.persist.save_interval;
        let Some(rec) = self.entities.get_mut(&id) else {
            return;
        };
        if !rec.ty.is_persistent() || interval.is_zero() || !self.persist.stores.storage {
            return;
        }
        let first = interval.mul_f64(0.5 + 0.5 * self.rng.unit());
        let q = self.timers.add(now + first, TimerJob::Save(id));
        if let Some(old) = rec.save_timer.replace(q) {
            self.timers.cancel(old);
        }
    }

    /// Timer `q`, a periodic save of `id`, is due: save it and arm the next one. A timer that
    /// is not the entity's current save timer does nothing (none should fire: they are
    /// cancelled when the entity leaves or is re-armed).
    pub(super) fn periodic_save(&mut self, now: Instant, q: QueueId, id: EntityId) {
        let current = self.entities.get(&id).and_then(|r| r.save_timer);
        if current != Some(q) {
            debug_assert!(false, "a stale save timer of {id} fired");
            return;
        }
        if self.save(id, false) {
            let next = self
                .timers
                .add(now + self.persist.save_interval, TimerJob::Save(id));
            if let Some(rec) = self.entities.get_mut(&id) {
                rec.save_timer = Some(next);
            }
        } else if let Some(rec) = self.entities.get_mut(&id) {
            rec.save_timer = None;
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
        if last {
            self.persist
                .final_saving
                .insert(id, (type_name.clone(), false));
        }
        self.persist.queue_save(
            id,
            PendingSave {
                type_name,
                data,
                last,
            },
        );
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
                            self.persist.kvdb_write_failed(now, from, &e);
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
            (StorageJob::Save { id, save }, Err(e)) => {
                self.persist.saving.remove(&id);
                let type_name = save.type_name.clone();
                self.persist.hold_unless_newer(id, save);
                self.persist.save_failed(now, id, &type_name, &e);
            }
            (StorageJob::Save { id, save }, Ok(_)) => {
                self.persist.saving.remove(&id);
                self.persist.save_written(now, id);
                if save.last {
                    match self.persist.final_saving.remove(&id) {
                        Some((type_name, true)) => self.load(net, &type_name, id),
                        _ => net.by_entity(id, Msg::NotifyDestroyEntity { eid: id }),
                    }
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
