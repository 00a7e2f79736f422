//! Storage and KVDB in memory: [`MemStorage`] and [`MemKvdb`] implement the backend traits
//! (so a worker pool can run them), and [`MemStores`] answers a game's requests at once, on
//! the caller's thread, which is how the simulation and the game's unit tests give a game its
//! stores without threads or real time.
//!
//! Clones share their data (like several backends on one database directory), so a pool's
//! workers, or every game of a simulation, see one store, and a game restarted in the
//! simulation finds what it saved. The data sits behind a mutex only because backends must
//! be `Send`; nothing here blocks for long.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use goworld_common::id::EntityId;

use super::backend::{run_kvdb, run_storage, KvdbBackend, StorageBackend};
use super::msg::{Store, StoreError, StoreOp, StoreOutput, StoreRequest, StoreResult};

type Saved = BTreeMap<(String, EntityId), Vec<u8>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Entity storage in memory; clones share it.
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    map: Arc<Mutex<Saved>>,
}

impl MemStorage {
    /// The saved bytes of an entity, if it was saved.
    pub fn saved(&self, type_name: &str, eid: &EntityId) -> Option<Vec<u8>> {
        lock(&self.map).get(&(type_name.to_string(), *eid)).cloned()
    }

    /// IDs of every saved entity of the type, sorted.
    pub fn saved_ids(&self, type_name: &str) -> Vec<EntityId> {
        lock(&self.map)
            .keys()
            .filter(|(t, _)| t == type_name)
            .map(|(_, e)| *e)
            .collect()
    }

    /// Number of saved entities (all types).
    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    /// True if nothing was saved.
    pub fn is_empty(&self) -> bool {
        lock(&self.map).is_empty()
    }
}

impl StorageBackend for MemStorage {
    fn save(&mut self, type_name: &str, eid: &EntityId, data: &[u8]) -> Result<(), String> {
        lock(&self.map).insert((type_name.to_string(), *eid), data.to_vec());
        Ok(())
    }

    fn load(&mut self, type_name: &str, eid: &EntityId) -> Result<Option<Vec<u8>>, String> {
        Ok(self.saved(type_name, eid))
    }

    fn exists(&mut self, type_name: &str, eid: &EntityId) -> Result<bool, String> {
        Ok(lock(&self.map).contains_key(&(type_name.to_string(), *eid)))
    }

    fn list(&mut self, type_name: &str) -> Result<Vec<EntityId>, String> {
        Ok(self.saved_ids(type_name))
    }
}

/// The KVDB in memory; clones share it.
#[derive(Debug, Clone, Default)]
pub struct MemKvdb {
    map: Arc<Mutex<BTreeMap<String, String>>>,
}

impl MemKvdb {
    /// The value of `key`, if it has one.
    pub fn value(&self, key: &str) -> Option<String> {
        lock(&self.map).get(key).cloned()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    /// True if no key was written.
    pub fn is_empty(&self) -> bool {
        lock(&self.map).is_empty()
    }
}

impl KvdbBackend for MemKvdb {
    fn get(&mut self, key: &str) -> Result<Option<String>, String> {
        Ok(self.value(key))
    }

    fn put(&mut self, key: &str, val: &str) -> Result<(), String> {
        lock(&self.map).insert(key.to_string(), val.to_string());
        Ok(())
    }

    fn get_or_put(&mut self, key: &str, val: &str) -> Result<Option<String>, String> {
        let mut map = lock(&self.map);
        if let Some(v) = map.get(key) {
            return Ok(Some(v.clone()));
        }
        map.insert(key.to_string(), val.to_string());
        Ok(None)
    }

    fn get_range(&mut self, begin: &str, end: &str) -> Result<Vec<(String, String)>, String> {
        if begin >= end {
            return Ok(Vec::new());
        }
        let map = lock(&self.map);
        // `str` compares by bytes, which is the order the range is defined in.
        Ok(map
            .range::<str, _>((
                std::ops::Bound::Included(begin),
                std::ops::Bound::Excluded(end),
            ))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

/// Storage and KVDB in memory, answering requests synchronously: each request runs when it
/// is answered, in the order given, so every ordering a pool keeps (per entity, `list` after
/// earlier saves) holds trivially. Clones share the data, and whether they are down.
#[derive(Debug, Clone, Default)]
pub struct MemStores {
    /// The entity storage.
    pub storage: MemStorage,
    /// The KVDB.
    pub kvdb: MemKvdb,
    down: Arc<AtomicBool>,
}

impl MemStores {
    /// While `down`, every request fails as a backend that cannot be reached does.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
    }

    /// Runs one request now and returns its result.
    pub fn answer(&self, req: StoreRequest) -> StoreResult {
        if self.down.load(Ordering::Relaxed) {
            let (store, op) = match &req.op {
                StoreOp::Storage(op) => (Store::Storage, op.describe()),
                StoreOp::Kvdb(op) => (Store::Kvdb, op.describe()),
            };
            return StoreResult {
                token: req.token,
                outcome: Err(StoreError::Backend {
                    store,
                    op,
                    why: "connection refused (the store is down)".into(),
                }),
            };
        }
        let outcome = match &req.op {
            StoreOp::Storage(op) => {
                run_storage(&mut self.storage.clone(), op).map(StoreOutput::Storage)
            }
            StoreOp::Kvdb(op) => run_kvdb(&mut self.kvdb.clone(), op).map(StoreOutput::Kvdb),
        };
        StoreResult {
            token: req.token,
            outcome,
        }
    }

    /// Runs requests now, in order, and returns their results in the same order.
    pub fn answer_all(&self, reqs: Vec<StoreRequest>) -> Vec<StoreResult> {
        reqs.into_iter().map(|r| self.answer(r)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::msg::{KvdbOp, KvdbOutput, StorageOp, StorageOutput};
    use crate::store::testutil::eid;

    fn req(token: u64, op: StoreOp) -> StoreRequest {
        StoreRequest { token, op }
    }

    #[test]
    fn answers_in_order_and_clones_share_the_data() {
        let m = MemStores::default();
        let e = eid("AAAAAAAAAAAAAAAA");
        let s = |op| StoreOp::Storage(op);
        let k = |op| StoreOp::Kvdb(op);
        let r = m.answer_all(vec![
            req(
                1,
                s(StorageOp::Exists {
                    type_name: "A".into(),
                    eid: e,
                }),
            ),
            req(
                2,
                s(StorageOp::Save {
                    type_name: "A".into(),
                    eid: e,
                    data: vec![1],
                }),
            ),
            req(
                3,
                s(StorageOp::Load {
                    type_name: "A".into(),
                    eid: e,
                }),
            ),
            req(
                4,
                s(StorageOp::List {
                    type_name: "A".into(),
                }),
            ),
            req(
                5,
                k(KvdbOp::GetOrPut {
                    key: "b".into(),
                    val: "1".into(),
                }),
            ),
            req(
                6,
                k(KvdbOp::GetOrPut {
                    key: "b".into(),
                    val: "2".into(),
                }),
            ),
            req(
                7,
                k(KvdbOp::Put {
                    key: "a".into(),
                    val: "0".into(),
                }),
            ),
            req(
                8,
                k(KvdbOp::Put {
                    key: "c".into(),
                    val: "3".into(),
                }),
            ),
            req(
                9,
                k(KvdbOp::GetRange {
                    begin: "a".into(),
                    end: "c".into(),
                }),
            ),
            req(
                10,
                k(KvdbOp::GetRange {
                    begin: "c".into(),
                    end: "a".into(),
                }),
            ),
        ]);
        let out: Vec<StoreOutput> = r.into_iter().map(|r| r.outcome.unwrap()).collect();
        use StorageOutput as S;
        use StoreOutput::{Kvdb as K, Storage as St};
        assert_eq!(
            out,
            vec![
                St(S::Exists(false)),
                St(S::Saved),
                St(S::Loaded(Some(vec![1]))),
                St(S::List(vec![e])),
                K(KvdbOutput::Value(None)),
                K(KvdbOutput::Value(Some("1".into()))),
                K(KvdbOutput::Done),
                K(KvdbOutput::Done),
                K(KvdbOutput::Range(vec![
                    ("a".into(), "0".into()),
                    ("b".into(), "1".into())
                ])),
                K(KvdbOutput::Range(vec![])),
            ]
        );
        let other = m.clone();
        assert_eq!(other.storage.saved("A", &e), Some(vec![1]));
        assert_eq!(other.kvdb.value("c").as_deref(), Some("3"));
        assert_eq!((other.storage.len(), other.kvdb.len()), (1, 3));
    }
}
