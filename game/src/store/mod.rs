//! Entity storage (reference §3.11) and the KVDB (§3.12) as messages.
//!
//! The game's world never holds a store: it emits [`StoreRequest`]s (a token and a
//! [`StoreOp`]) and is handed [`StoreResult`]s (the token and an outcome, a typed
//! [`StoreError`] on failure). Whoever runs the game carries them:
//!
//! - the binary's shell (`run.rs`) owns a [`StorePool`] of worker threads built from the
//!   config ([`pool`]), over the filesystem backends ([`fs_storage`], [`fs_kvdb`]), Redis
//!   ([`redis`]) or MongoDB ([`mongo`]);
//! - the simulation and unit tests answer them at once in memory ([`mem`]), in simulated
//!   time.
//!
//! [`backend`] holds the interfaces an engine implements; [`msg`] the messages.

pub mod backend;
#[cfg(test)]
mod conformance;
pub mod fs_kvdb;
pub mod fs_storage;
pub mod mem;
pub mod mongo;
pub mod msg;
pub mod pool;
pub mod redis;

pub use backend::{KvdbBackend, StorageBackend};
pub use msg::{
    KvdbOp, KvdbOutput, StorageOp, StorageOutput, Store, StoreError, StoreOp, StoreOutput,
    StoreRequest, StoreResult, Stores, Token,
};
pub use pool::{KvdbPool, StoragePool, StorePool};

#[cfg(test)]
pub(crate) mod testutil {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use goworld_common::id::EntityId;

    /// How long a test waits for a pool.
    pub(crate) const T: Duration = Duration::from_secs(10);

    /// The ID spelled `s` (16 bytes).
    pub(crate) fn eid(s: &str) -> EntityId {
        EntityId::parse(s).expect("16 bytes")
    }

    /// A fresh directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> TempDir {
            static N: AtomicU64 = AtomicU64::new(0);
            let p = std::env::temp_dir().join(format!(
                "goworld-rs-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
