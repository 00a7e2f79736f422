//! Services: sharded singleton entities found through the key-value registry (kvreg) that
//! the dispatchers hold (reference §3.9).
//!
//! Keys, as in GoWorld: `Service/<Name>#<shard>` = `"game<id>"` is the claim of a shard (first
//! claim wins, force=false); `Service/<Name>#<shard>/EntityID` = the shard entity's ID
//! (force=true). Once the deployment is ready, and after every registry change (debounced by
//! a random 0–500 ms), each game checks: it creates the entities of the shards it owns and
//! registers their IDs, claims unclaimed shards after a random 0–1000 ms, and destroys a local
//! service entity only when another live game owns its shard.
//!
//! Beyond GoWorld: a shard whose owner game is gone counts as unclaimed (the dispatchers clear
//! the dead game's claims), so it is claimed and re-created on a live game; after a
//! dispatcher restart, games re-register the keys they own before anything else (see
//! [`World::owned_kvreg`]), so no live service entity is destroyed by the claim race. A call
//! to a shard that is not known yet is held until it is; held calls have a limit and a
//! timeout, and what passes them is reported with the service and method.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::time::{Duration, Instant};

use goworld_common::id::{shard_by_key, EntityId};
use goworld_common::proto::{Args, Msg};
use log::{info, warn};

use super::{Net, TimerJob, World};
use crate::api::ShardSel;

/// How many calls may wait for one service's shards.
pub const HELD_CALL_LIMIT: usize = 10_000;
/// How long a call waits for its service shard.
pub const HELD_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How often services are checked besides registry changes (GoWorld: 60 s).
const CHECK_INTERVAL: Duration = Duration::from_secs(60);

struct HeldCall {
    sel: ShardSel,
    method: String,
    args: Args,
    until: Instant,
}

/// The service side of a world.
#[derive(Default)]
pub(crate) struct Services {
    /// Registered services: name → shard count.
    pub(crate) defs: BTreeMap<String, u32>,
    /// The registry as the dispatchers report it: key → (value, dispatcher).
    pub(crate) kvreg: BTreeMap<String, (String, u16)>,
    /// Calls waiting for a shard, per service.
    held: BTreeMap<String, VecDeque<HeldCall>>,
    /// Calls refused past the limit, per (service, method), reported at the next check.
    overflow: BTreeMap<(String, String), u64>,
    /// Shards this game has a claim in flight for.
    claiming: HashSet<(String, u32)>,
    /// Local shard entities created, waiting for their ID to come back from the registry.
    created: BTreeMap<(String, u32), EntityId>,
    /// Shard entities that lived on a game that went down: their `/EntityID` keys stay in the
    /// registry until the new owner registers its own, and must not be called meanwhile.
    dead: HashSet<EntityId>,
    check_armed: bool,
}

fn owner_key(name: &str, shard: u32) -> String {
    format!("Service/{name}#{shard}")
}

fn eid_key(name: &str, shard: u32) -> String {
    format!("Service/{name}#{shard}/EntityID")
}

impl Services {
    /// Services with the given definitions (name → shard count), nothing known yet.
    pub(crate) fn new(defs: BTreeMap<String, u32>) -> Services {
        Services {
            defs,
            ..Default::default()
        }
    }

    /// The value of a registry key ("" when missing).
    fn kv(&self, key: &str) -> &str {
        self.kvreg.get(key).map_or("", |(v, _)| v.as_str())
    }

    /// The live owner of a shard: its claim, if the claiming game is online (or is `me`).
    fn shard_owner(&self, name: &str, shard: u32, online: &BTreeSet<u16>, me: u16) -> Option<u16> {
        let owner = self.kv(&owner_key(name, shard));
        let game: u16 = owner.strip_prefix("game")?.parse().ok()?;
        (online.contains(&game) || game == me).then_some(game)
    }

    /// The entity of a shard, if the shard has a live owner and a registered entity.
    pub(crate) fn entity(
        &self,
        name: &str,
        shard: u32,
        online: &BTreeSet<u16>,
        me: u16,
    ) -> Option<EntityId> {
        self.shard_owner(name, shard, online, me)?;
        EntityId::parse(self.kv(&eid_key(name, shard))).filter(|e| !self.dead.contains(e))
    }

    /// True when every shard of the service has a known entity.
    pub(crate) fn ready(&self, name: &str, online: &BTreeSet<u16>, me: u16) -> bool {
        let n = self.defs.get(name).copied().unwrap_or(0);
        n > 0 && (0..n).all(|i| self.entity(name, i, online, me).is_some())
    }
}

impl World {
    fn me(&self) -> String {
        format!("game{}", self.game_id)
    }

    /// The value of a registry key ("" when missing).
    fn kv(&self, key: &str) -> &str {
        self.services.kv(key)
    }

    /// The live owner of a shard: its claim, if the claiming game is online.
    fn shard_owner(&self, name: &str, shard: u32) -> Option<u16> {
        (self.services).shard_owner(name, shard, &self.online, self.game_id)
    }

    /// The entity of a shard, if the shard has a live owner and a registered entity.
    pub fn service_entity(&self, name: &str, shard: u32) -> Option<EntityId> {
        (self.services).entity(name, shard, &self.online, self.game_id)
    }

    /// Game `game` went down (told before its claims are released): the shard entities it
    /// owned are dead, so calls to those shards wait for their new entities instead of going
    /// to the dead ones (between a new claim and its `/EntityID`, the old ID is still listed).
    pub fn service_game_down(&mut self, game: u16) {
        let owner = format!("game{game}");
        let mut dead = Vec::new();
        for (name, &n) in &self.services.defs {
            for i in 0..n {
                if self.kv(&owner_key(name, i)) == owner {
                    if let Some(e) = EntityId::parse(self.kv(&eid_key(name, i))) {
                        dead.push(e);
                    }
                }
            }
        }
        self.services.dead.extend(dead);
    }

    /// Number of shards of a service (0 if it is not registered here).
    pub fn service_shards(&self, name: &str) -> u32 {
        self.services.defs.get(name).copied().unwrap_or(0)
    }

    /// True when every shard of the service has a known entity (GoWorld's
    /// `CheckServiceEntitiesReady`).
    pub fn services_ready(&self, name: &str) -> bool {
        (self.services).ready(name, &self.online, self.game_id)
    }

    /// A registry entry arrived from dispatcher `disp`. Calls held for a shard that is known
    /// now go out at once, before any later call to it.
    pub fn kvreg_set(&mut self, net: &mut Net, now: Instant, key: String, val: String, disp: u16) {
        let service_key = key.starts_with("Service/");
        self.services.kvreg.insert(key, (val, disp));
        if service_key {
            self.arm_service_check(now);
            self.flush_held_service_calls(net, now);
        }
    }

    /// Dispatcher `disp` acknowledged this game with its whole registry.
    pub fn kvreg_reset(
        &mut self,
        net: &mut Net,
        now: Instant,
        disp: u16,
        entries: Vec<(String, String)>,
    ) {
        self.services.kvreg.retain(|_, (_, d)| *d != disp);
        for (k, v) in entries {
            self.services.kvreg.insert(k, (v, disp));
        }
        self.arm_service_check(now);
        self.flush_held_service_calls(net, now);
    }

    /// The registry, as `(key, value)` pairs.
    pub fn kvreg(&self) -> impl Iterator<Item = (&str, &str)> {
        self.services
            .kvreg
            .iter()
            .map(|(k, (v, _))| (k.as_str(), v.as_str()))
    }

    /// The registry keys this game owns, with their values: re-registered (force) first thing
    /// after a dispatcher restart, so its empty registry cannot give a live shard away.
    pub fn owned_kvreg(&self) -> Vec<(String, String)> {
        let me = self.me();
        let mut out = Vec::new();
        for (name, &n) in &self.services.defs {
            for i in 0..n {
                if self.kv(&owner_key(name, i)) != me {
                    continue;
                }
                out.push((owner_key(name, i), me.clone()));
                let local = EntityId::parse(self.kv(&eid_key(name, i)))
                    .filter(|e| self.entities.contains_key(e))
                    .or_else(|| self.services.created.get(&(name.clone(), i)).copied());
                if let Some(e) = local {
                    out.push((eid_key(name, i), e.to_text()));
                }
            }
        }
        out
    }

    fn arm_service_check(&mut self, now: Instant) {
        if !self.game_ready_done || self.services.defs.is_empty() || self.services.check_armed {
            return;
        }
        self.services.check_armed = true;
        let delay = Duration::from_millis(self.rng.below(500));
        self.timers.add(now + delay, TimerJob::CheckServices);
    }

    /// Starts the service checks (the deployment is ready): now, then every minute.
    pub(crate) fn start_services(&mut self, now: Instant) {
        if self.services.defs.is_empty() {
            return;
        }
        self.timers.add(now, TimerJob::CheckServices);
        self.timers.add(now + CHECK_INTERVAL, TimerJob::ServiceTick);
    }

    fn register_kv(&mut self, net: &mut Net, key: &str, val: &str, force: bool) {
        let p = Msg::KvregRegister {
            key: key.to_string(),
            val: val.to_string(),
            force,
        }
        .to_payload();
        net.links.send_by_service(net.io, key, &p);
    }

    /// One check of every service (GoWorld's `checkServices`, with the differences above).
    pub(crate) fn check_services(&mut self, net: &mut Net, now: Instant) {
        self.services.check_armed = false;
        let me = self.me();
        let defs: Vec<(String, u32)> = self
            .services
            .defs
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for (name, n) in &defs {
            for i in 0..*n {
                let key = (name.clone(), i);
                match self.shard_owner(name, i) {
                    Some(g) if g == self.game_id => {
                        self.services.claiming.remove(&key);
                        let registered = EntityId::parse(self.kv(&eid_key(name, i)));
                        let local = registered
                            .filter(|e| self.entities.contains_key(e))
                            .or_else(|| {
                                self.services
                                    .created
                                    .get(&key)
                                    .copied()
                                    .filter(|e| self.entities.contains_key(e))
                            });
                        match local {
                            Some(e) if registered == Some(e) => {
                                self.services.created.remove(&key);
                            }
                            Some(e) => self.register_kv(net, &eid_key(name, i), &e.to_text(), true),
                            None => {
                                let id = self.gen_id(now);
                                info!("{me}: creating service {name}#{i} as {id}");
                                if self.create(net, now, name, id, None) {
                                    self.services.created.insert(key, id);
                                    self.register_kv(net, &eid_key(name, i), &id.to_text(), true);
                                }
                            }
                        }
                    }
                    Some(other) => {
                        // Another live game owns the shard: a local copy is stale.
                        self.services.claiming.remove(&key);
                        let stale = self.services.created.remove(&key);
                        let stale_ids: Vec<EntityId> = self
                            .entities
                            .iter()
                            .filter(|(id, r)| {
                                r.ty.name() == name
                                    && (stale == Some(**id)
                                        || self.services_shard_of(name, id) == Some(i))
                            })
                            .map(|(id, _)| *id)
                            .collect();
                        for id in stale_ids {
                            info!("{me}: service {name}#{i} belongs to game{other}; destroying the copy {id} here");
                            self.destroy(net, now, id);
                        }
                    }
                    None => {
                        if self.services.claiming.insert(key) {
                            let delay = Duration::from_millis(self.rng.below(1000));
                            self.timers.add(
                                now + delay,
                                TimerJob::ClaimShard {
                                    name: name.clone(),
                                    shard: i,
                                },
                            );
                        }
                    }
                }
            }
        }
        self.flush_held_service_calls(net, now);
    }

    /// The shard an entity was registered for, if any.
    fn services_shard_of(&self, name: &str, id: &EntityId) -> Option<u32> {
        let text = id.to_text();
        (0..self.service_shards(name)).find(|&i| self.kv(&eid_key(name, i)) == text)
    }

    /// A claim's random delay is over: claim the shard if it is still unclaimed.
    pub(crate) fn claim_shard(&mut self, net: &mut Net, name: &str, shard: u32) {
        if self.shard_owner(name, shard).is_some()
            || !self.services.claiming.contains(&(name.to_string(), shard))
        {
            return;
        }
        let me = self.me();
        self.register_kv(net, &owner_key(name, shard), &me, false);
        // If the claim loses, the registry change re-runs the check; if the answer never
        // comes (a dispatcher restart), the periodic check claims again.
        self.services.claiming.remove(&(name.to_string(), shard));
    }

    /// Calls a service shard (or all of them), holding the call while a shard is unknown.
    pub fn call_service(
        &mut self,
        net: &mut Net,
        now: Instant,
        name: &str,
        sel: ShardSel,
        method: &str,
        args: Args,
    ) {
        if self.service_shards(name) == 0 {
            warn!("call {name}.{method}: {name} is not a registered service; dropped");
            return;
        }
        // Calls to a service keep their order: while earlier calls wait for its shards, a new
        // one waits behind them, even if its own shard is known.
        if self.services.held.contains_key(name) {
            self.hold_service_call(now, name, sel, method, args);
            return;
        }
        self.dispatch_service_call(net, now, name, sel, method, args);
    }

    /// Sends a service call to its shard(s), or holds it while a shard is unknown.
    fn dispatch_service_call(
        &mut self,
        net: &mut Net,
        now: Instant,
        name: &str,
        sel: ShardSel,
        method: &str,
        args: Args,
    ) {
        let n = self.service_shards(name);
        let targets: Option<Vec<EntityId>> = match &sel {
            ShardSel::Any => {
                let known: Vec<EntityId> = (0..n)
                    .filter_map(|i| self.service_entity(name, i))
                    .collect();
                (!known.is_empty())
                    .then(|| vec![known[self.rng.below(known.len() as u64) as usize]])
            }
            ShardSel::All => (0..n).map(|i| self.service_entity(name, i)).collect(),
            ShardSel::Index(i) if *i >= n => {
                warn!("call {name}.{method}: shard {i} of a service with {n} shards; dropped");
                return;
            }
            ShardSel::Index(i) => self.service_entity(name, *i).map(|e| vec![e]),
            ShardSel::Key(k) => self
                .service_entity(name, shard_by_key(k, n))
                .map(|e| vec![e]),
        };
        match targets {
            Some(ids) => {
                let shared = std::rc::Rc::new((method.to_string(), args.clone()));
                for id in ids {
                    if self.entities.contains_key(&id) {
                        (self.work).push_call(id, super::CallBody::Shared(shared.clone()));
                    } else {
                        let m = Msg::CallEntityMethod {
                            eid: id,
                            method: method.to_string(),
                            args: args.clone(),
                        };
                        net.links.send_by_entity(net.io, &id, &m.to_payload());
                    }
                }
                self.run_local_calls(net, now);
            }
            None => self.hold_service_call(now, name, sel, method, args),
        }
    }

    fn hold_service_call(
        &mut self,
        now: Instant,
        name: &str,
        sel: ShardSel,
        method: &str,
        args: Args,
    ) {
        let q = self.services.held.entry(name.to_string()).or_default();
        if q.len() >= HELD_CALL_LIMIT {
            *self
                .services
                .overflow
                .entry((name.to_string(), method.to_string()))
                .or_insert(0) += 1;
            return;
        }
        q.push_back(HeldCall {
            sel,
            method: method.to_string(),
            args,
            until: now + HELD_CALL_TIMEOUT,
        });
    }

    fn held_call_ready(&self, name: &str, sel: &ShardSel) -> bool {
        let n = self.service_shards(name);
        match sel {
            ShardSel::Any => (0..n).any(|i| self.service_entity(name, i).is_some()),
            ShardSel::All => self.services_ready(name),
            ShardSel::Index(i) => self.service_entity(name, *i).is_some(),
            ShardSel::Key(k) => self.service_entity(name, shard_by_key(k, n)).is_some(),
        }
    }

    /// Delivers held calls, oldest first, up to the first whose shard is still unknown (the
    /// rest keep waiting behind it, so calls to a service keep their order); reports expired
    /// and refused ones.
    fn flush_held_service_calls(&mut self, net: &mut Net, now: Instant) {
        for ((name, method), count) in std::mem::take(&mut self.services.overflow) {
            warn!("{count} calls to {name}.{method} were refused: {HELD_CALL_LIMIT} calls were already waiting for its shards");
        }
        let names: Vec<String> = self.services.held.keys().cloned().collect();
        for name in names {
            let mut expired: BTreeMap<String, u64> = BTreeMap::new();
            while let Some(front) = self.services.held.get(&name).and_then(|q| q.front()) {
                if !self.held_call_ready(&name, &front.sel) {
                    if now < front.until {
                        break;
                    }
                    let c = self
                        .services
                        .held
                        .get_mut(&name)
                        .and_then(VecDeque::pop_front)
                        .expect("front");
                    *expired.entry(c.method).or_insert(0) += 1;
                    continue;
                }
                let c = self
                    .services
                    .held
                    .get_mut(&name)
                    .and_then(VecDeque::pop_front)
                    .expect("front");
                if self
                    .services
                    .held
                    .get(&name)
                    .is_some_and(VecDeque::is_empty)
                {
                    self.services.held.remove(&name);
                }
                // Its shard is known: send it, ahead of the calls still waiting behind it.
                self.dispatch_service_call(net, now, &name, c.sel, &c.method, c.args);
            }
            for (method, count) in expired {
                warn!("{count} calls to {name}.{method} waited {HELD_CALL_TIMEOUT:?} for the service's shards and were dropped");
            }
        }
        self.resume_waiting_migrations(net, now);
    }

    /// The periodic service check (every minute) also expires held calls.
    pub(crate) fn service_tick(&mut self, net: &mut Net, now: Instant) {
        self.check_services(net, now);
        self.timers.add(now + CHECK_INTERVAL, TimerJob::ServiceTick);
    }

    /// Calls held for services, in all.
    pub fn held_service_calls(&self) -> usize {
        self.services.held.values().map(VecDeque::len).sum()
    }
}
