//! What a game's world and its stores say to each other: plain data, no threads, no handles.
//!
//! The world asks with a [`StoreRequest`] (a token it chose and a [`StoreOp`]) and is
//! answered with a [`StoreResult`] carrying the same token. Whoever owns the stores (the
//! binary's shell with its worker pool, the simulation with its in-memory stores, a unit
//! test) carries requests one way and results the other.

use std::fmt;

use goworld_common::id::EntityId;

/// A caller-chosen number naming one request; its result carries it back.
pub type Token = u64;

/// Which store a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Store {
    /// Entity storage (`[storage]`).
    Storage,
    /// The key-value database (`[kvdb]`).
    Kvdb,
}

impl fmt::Display for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Store::Storage => "storage",
            Store::Kvdb => "kvdb",
        })
    }
}

/// Which stores a game has (what its config enables). Requests for a store it lacks are
/// never made: the world answers game code at once instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stores {
    /// Entity storage is configured.
    pub storage: bool,
    /// The KVDB is configured.
    pub kvdb: bool,
}

impl Stores {
    /// No stores (most unit tests).
    pub const NONE: Stores = Stores {
        storage: false,
        kvdb: false,
    };
    /// Storage and KVDB.
    pub const ALL: Stores = Stores {
        storage: true,
        kvdb: true,
    };

    /// Whether `store` is configured.
    pub fn has(&self, store: Store) -> bool {
        match store {
            Store::Storage => self.storage,
            Store::Kvdb => self.kvdb,
        }
    }
}

/// One request: the caller's token and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRequest {
    /// Comes back in the [`StoreResult`].
    pub token: Token,
    /// The operation.
    pub op: StoreOp,
}

/// A storage or a KVDB operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// Entity storage.
    Storage(StorageOp),
    /// The KVDB.
    Kvdb(KvdbOp),
}

/// An entity storage operation (reference §3.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageOp {
    /// Store `data` as the entity's state; answered [`StorageOutput::Saved`] once durable.
    Save {
        /// The entity's type.
        type_name: String,
        /// The entity.
        eid: EntityId,
        /// Its persistent attributes, encoded.
        data: Vec<u8>,
    },
    /// Read the entity's state; answered [`StorageOutput::Loaded`].
    Load {
        /// The entity's type.
        type_name: String,
        /// The entity.
        eid: EntityId,
    },
    /// Whether the entity was ever saved; answered [`StorageOutput::Exists`].
    Exists {
        /// The entity's type.
        type_name: String,
        /// The entity.
        eid: EntityId,
    },
    /// Every saved entity of a type; answered [`StorageOutput::List`].
    List {
        /// The type.
        type_name: String,
    },
}

/// A KVDB operation (reference §3.12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvdbOp {
    /// The value of `key`; answered [`KvdbOutput::Value`].
    Get {
        /// The key.
        key: String,
    },
    /// Store `val` under `key`; answered [`KvdbOutput::Done`] once durable.
    Put {
        /// The key.
        key: String,
        /// The value.
        val: String,
    },
    /// The stored value, or store `val` if there is none (atomically across processes);
    /// answered [`KvdbOutput::Value`]: the value found, or `None` if `val` was stored.
    GetOrPut {
        /// The key.
        key: String,
        /// The value stored if the key is missing.
        val: String,
    },
    /// Every pair with `begin <= key < end` in key byte order; answered
    /// [`KvdbOutput::Range`].
    GetRange {
        /// First key (included).
        begin: String,
        /// End key (excluded).
        end: String,
    },
}

impl StoreOp {
    /// The store this operation is for.
    pub fn store(&self) -> Store {
        match self {
            StoreOp::Storage(_) => Store::Storage,
            StoreOp::Kvdb(_) => Store::Kvdb,
        }
    }

    /// A short description such as `save Avatar/ABCDEFGHIJKLMNOP`, for error messages.
    pub fn describe(&self) -> String {
        match self {
            StoreOp::Storage(op) => op.describe(),
            StoreOp::Kvdb(op) => op.describe(),
        }
    }
}

impl StorageOp {
    /// The entity the operation names (`None` for a listing).
    pub fn entity(&self) -> Option<&EntityId> {
        match self {
            StorageOp::Save { eid, .. }
            | StorageOp::Load { eid, .. }
            | StorageOp::Exists { eid, .. } => Some(eid),
            StorageOp::List { .. } => None,
        }
    }

    /// A short description such as `save Avatar/ABCDEFGHIJKLMNOP`.
    pub fn describe(&self) -> String {
        match self {
            StorageOp::Save { type_name, eid, .. } => format!("save {type_name}/{eid}"),
            StorageOp::Load { type_name, eid } => format!("load {type_name}/{eid}"),
            StorageOp::Exists { type_name, eid } => format!("exists {type_name}/{eid}"),
            StorageOp::List { type_name } => format!("list {type_name}"),
        }
    }
}

impl KvdbOp {
    /// A short description such as `get "key"`.
    pub fn describe(&self) -> String {
        match self {
            KvdbOp::Get { key } => format!("get {key:?}"),
            KvdbOp::Put { key, .. } => format!("put {key:?}"),
            KvdbOp::GetOrPut { key, .. } => format!("get_or_put {key:?}"),
            KvdbOp::GetRange { begin, end } => format!("get_range [{begin:?}, {end:?})"),
        }
    }
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreResult {
    /// The request's token.
    pub token: Token,
    /// What came of it.
    pub outcome: Result<StoreOutput, StoreError>,
}

/// A successful storage or KVDB answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOutput {
    /// Entity storage.
    Storage(StorageOutput),
    /// The KVDB.
    Kvdb(KvdbOutput),
}

/// The result of one storage operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageOutput {
    /// `save` finished: the data is durable.
    Saved,
    /// `load`: the saved bytes, or `None` if the entity was never saved.
    Loaded(Option<Vec<u8>>),
    /// `exists`: whether the entity has been saved.
    Exists(bool),
    /// `list`: IDs of every saved entity of the type, sorted.
    List(Vec<EntityId>),
}

/// The smallest key greater than `key` (GoWorld's `NextLargerKey`): `key` followed by NUL.
/// Useful as the exclusive end of a range that must include `key`.
pub fn next_larger_key(key: &str) -> String {
    let mut k = String::with_capacity(key.len() + 1);
    k.push_str(key);
    k.push('\0');
    k
}

/// The result of one KVDB operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvdbOutput {
    /// `get`: the value, or `None` if the key is missing. `get_or_put`: the value that was
    /// already stored, or `None` if this request stored its value.
    Value(Option<String>),
    /// `put` finished: the value is durable.
    Done,
    /// `get_range`: the pairs with `begin <= key < end`, ordered by key bytes.
    Range(Vec<(String, String)>),
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The backend reported an error: `op` describes the request (`save Avatar/…`), `why`
    /// is the backend's message.
    Backend {
        /// The store.
        store: Store,
        /// The request, described.
        op: String,
        /// The backend's message.
        why: String,
    },
    /// The backend panicked while running the request (the worker caught it and goes on).
    Panicked {
        /// The store.
        store: Store,
        /// The request, described.
        op: String,
        /// The panic's message.
        why: String,
    },
    /// The worker thread that had the request died before answering it, or had died when
    /// it was submitted.
    WorkerGone {
        /// The store.
        store: Store,
    },
    /// The store was shut down before the request was submitted.
    ShutDown {
        /// The store.
        store: Store,
    },
    /// The store is not configured.
    Unconfigured {
        /// The store.
        store: Store,
    },
    /// The answer was for the other store (an engine bug, reported rather than trusted).
    WrongAnswer {
        /// The store asked.
        store: Store,
    },
}

impl StoreError {
    /// The store the failed request was for.
    pub fn store(&self) -> Store {
        match self {
            StoreError::Backend { store, .. }
            | StoreError::Panicked { store, .. }
            | StoreError::WorkerGone { store }
            | StoreError::ShutDown { store }
            | StoreError::Unconfigured { store }
            | StoreError::WrongAnswer { store } => *store,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Backend { store, op, why } => write!(f, "{store} {op}: {why}"),
            StoreError::Panicked { store, op, why } => write!(f, "{store} {op} panicked: {why}"),
            StoreError::WorkerGone { store } => {
                write!(
                    f,
                    "{store}: its worker thread is dead (the request may not have run)"
                )
            }
            StoreError::ShutDown { store } => write!(f, "{store} is shut down"),
            StoreError::Unconfigured {
                store: Store::Storage,
            } => f.write_str("storage is disabled"),
            StoreError::Unconfigured { store: Store::Kvdb } => {
                f.write_str("KVDB is disabled ([kvdb] type is empty)")
            }
            StoreError::WrongAnswer { store } => {
                write!(f, "a {store} request was answered by the other store")
            }
        }
    }
}

impl std::error::Error for StoreError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_larger_key_appends_nul() {
        assert_eq!(next_larger_key("ab"), "ab\0");
        assert!(next_larger_key("ab").as_str() > "ab");
        assert!(next_larger_key("ab").as_str() < "ab\u{1}");
    }
}
