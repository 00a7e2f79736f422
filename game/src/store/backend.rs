//! The interfaces a store engine implements: [`StorageBackend`] for entity storage and
//! [`KvdbBackend`] for the KVDB. The built-in ones are the filesystem backends
//! ([`super::fs_storage`], [`super::fs_kvdb`]) and the in-memory ones ([`super::mem`]).
//!
//! Backends are synchronous and owned by one worker each: a pool makes one instance per
//! worker thread (so they are `Send`), and only that thread calls it, one request at a time.
//! After a caught panic the same instance is used again, so a backend must tolerate an
//! interrupted call. Errors are the backend's own words; the pool wraps them in a
//! [`StoreError`] naming the store and the operation.

use goworld_common::id::EntityId;

use super::msg::{KvdbOp, KvdbOutput, StorageOp, StorageOutput, Store, StoreError};

/// An entity storage engine.
pub trait StorageBackend: Send + 'static {
    /// Stores `data` for the entity, replacing any earlier save atomically.
    fn save(&mut self, type_name: &str, eid: &EntityId, data: &[u8]) -> Result<(), String>;
    /// The entity's saved bytes; `Ok(None)` if it was never saved.
    fn load(&mut self, type_name: &str, eid: &EntityId) -> Result<Option<Vec<u8>>, String>;
    /// Whether the entity has been saved.
    fn exists(&mut self, type_name: &str, eid: &EntityId) -> Result<bool, String>;
    /// IDs of every saved entity of the type (GoWorld's `ListEntityIDs`), sorted.
    fn list(&mut self, type_name: &str) -> Result<Vec<EntityId>, String>;
}

/// A KVDB engine.
pub trait KvdbBackend: Send + 'static {
    /// The value of `key`, or `None` if it is missing.
    fn get(&mut self, key: &str) -> Result<Option<String>, String>;
    /// Stores `val` under `key`, replacing any value atomically.
    fn put(&mut self, key: &str, val: &str) -> Result<(), String>;
    /// Returns the stored value of `key` if there is one; otherwise stores `val` and returns
    /// `None`. Must be atomic with respect to every other user of the same database.
    fn get_or_put(&mut self, key: &str, val: &str) -> Result<Option<String>, String>;
    /// Every pair with `begin <= key < end` (byte order), ordered by key.
    fn get_range(&mut self, begin: &str, end: &str) -> Result<Vec<(String, String)>, String>;
}

/// Runs one storage operation on `b`; an error names the store and the operation.
pub fn run_storage<B: StorageBackend + ?Sized>(
    b: &mut B,
    op: &StorageOp,
) -> Result<StorageOutput, StoreError> {
    let r = match op {
        StorageOp::Save {
            type_name,
            eid,
            data,
        } => b.save(type_name, eid, data).map(|()| StorageOutput::Saved),
        StorageOp::Load { type_name, eid } => b.load(type_name, eid).map(StorageOutput::Loaded),
        StorageOp::Exists { type_name, eid } => b.exists(type_name, eid).map(StorageOutput::Exists),
        StorageOp::List { type_name } => b.list(type_name).map(StorageOutput::List),
    };
    r.map_err(|why| StoreError::Backend {
        store: Store::Storage,
        op: op.describe(),
        why,
    })
}

/// Runs one KVDB operation on `b`; an error names the store and the operation.
pub fn run_kvdb<B: KvdbBackend + ?Sized>(b: &mut B, op: &KvdbOp) -> Result<KvdbOutput, StoreError> {
    let r = match op {
        KvdbOp::Get { key } => b.get(key).map(KvdbOutput::Value),
        KvdbOp::Put { key, val } => b.put(key, val).map(|()| KvdbOutput::Done),
        KvdbOp::GetOrPut { key, val } => b.get_or_put(key, val).map(KvdbOutput::Value),
        KvdbOp::GetRange { begin, end } => b.get_range(begin, end).map(KvdbOutput::Range),
    };
    r.map_err(|why| StoreError::Backend {
        store: Store::Kvdb,
        op: op.describe(),
        why,
    })
}
