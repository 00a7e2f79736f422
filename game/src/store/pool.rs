//! The stores' worker pool: entity storage on a pool of worker threads and the KVDB on one,
//! so the reactor never waits for a disk. The game's shell owns it ([`StorePool`]), feeds it
//! the world's [`StoreRequest`]s and hands the [`StoreResult`]s back when the pool wakes the
//! reactor; the world itself holds no thread, channel or waker.
//!
//! # Shape
//!
//! [`StorePool`] routes each request by its store: to the [`StoragePool`] (K worker threads,
//! [`DEFAULT_WORKERS`] = 4 for [`StoragePool::filesystem`]; one for
//! [`StoragePool::with_backend`]), or to the [`KvdbPool`] (one worker thread). Each worker
//! owns its own backend (a [`StorageBackend`] or [`KvdbBackend`]; the filesystem ones share
//! one directory). Only owned bytes and strings cross the thread boundary. Each worker
//! executes its requests one at a time in submit order, pushes `(token, result)` onto its
//! results queue and wakes the reactor through the shared [`mio::Waker`]; the shell's
//! `on_wake` calls [`StorePool::take_results`], which gathers the results of every worker. A
//! request for a store that is not configured fails at once
//! ([`StoreError::Unconfigured`]), with a wake.
//!
//! # Ordering across the storage pool
//!
//! Saves are bound by fsync, and several workers let the disk (and the filesystem's journal)
//! overlap them. What stays ordered:
//!
//! - **Per entity:** `save`, `load` and `exists` go to the worker chosen by a hash of the
//!   entity ID, so all requests naming one entity run, and complete, in submit order: a save
//!   followed by a load of the same entity always sees the saved bytes.
//! - **`list`** is a barrier: the handle holds it until every request submitted before it, on
//!   every worker, has finished (per-worker completion counts reach what was submitted when
//!   the list was), then sends it to the least busy worker. So a listing includes every
//!   earlier save of the type; it may also include saves submitted after it. Held lists are
//!   released whenever the handle is used (`take_results`, which completions trigger through
//!   the waker, `wait_results`, `drain`, any submit) and count in `pending`.
//! - **Results:** requests of different entities may finish in any order, so a later request
//!   may complete in an earlier `take_results` batch. Within one batch, results are sorted
//!   into submit order (after `drain`, one batch holds everything in global submit order).
//! - **The KVDB** runs everything in submit order on its one worker; storage and KVDB
//!   results are not ordered with each other.
//!
//! The pools' `pending`, `spilled`, `spill_len`, `drain`, `wait_results` and `shutdown` cover
//! every worker; the blocking ones wait on one bell rung by all of them.
//!
//! # The reactor never blocks
//!
//! Submitting never waits: each worker's channel is bounded, and when it is full the request
//! goes to that worker's reactor-side spill queue (counted by [`StorePool::spilled`]) that is
//! fed into the channel, oldest first, whenever the handle is used again (every submit and
//! every `take_results`, which the worker's wake triggers as it makes room). Once anything is
//! spilled, later requests for that worker spill behind it, so submit order is kept. The only
//! lock shared with a worker guards its results queue and is held just long enough to push or
//! take (the bell's lock is taken only by the workers and the blocking waits).
//! Only `drain`, `wait_results` and `shutdown` block, by design: they are for the shell's
//! exit (bounded), tests and tools.
//!
//! # Failures
//!
//! A backend error is returned as the request's [`StoreError::Backend`], naming the store and
//! the operation. GoWorld retries saves forever; here the caller decides (the entity layer
//! may resubmit). A panic inside an operation is caught on the worker, reported as that
//! request's [`StoreError::Panicked`] and the worker keeps serving. If a worker thread dies
//! anyway, a guard marks it dead and wakes the reactor; the handle then reports every
//! pending token of that worker (queued, spilled or in flight) as
//! [`StoreError::WorkerGone`] rather than leaving it hanging, and fails later requests routed
//! to it at once. The other workers keep serving their entities, and a held `list` counts
//! the dead worker's failed requests as finished (a list sent to a worker that has died, but
//! not yet been seen dead, fails like any of its requests).

use std::collections::VecDeque;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use goworld_common::config::StoreConfig;
use goworld_common::id::EntityId;
use log::{error, warn};
use mio::Waker;

use super::backend::{run_kvdb, run_storage, KvdbBackend, StorageBackend};
use super::fs_kvdb::FilesystemKvdb;
use super::fs_storage::FilesystemStorage;
use super::msg::{
    KvdbOp, KvdbOutput, StorageOp, StorageOutput, Store, StoreError, StoreOp, StoreOutput,
    StoreRequest, StoreResult, Stores,
};

/// One finished request: the caller's token and the outcome.
pub type Completion<O> = (u64, Result<O, StoreError>);

/// A storage or KVDB call longer than this is logged with what it was.
pub const SLOW_CALL: Duration = Duration::from_secs(1);
/// At most one slow-call line per worker this often (the others are counted into it).
const SLOW_LOG_EVERY: Duration = Duration::from_secs(10);

/// Requests a worker's channel holds before further ones spill on the reactor side: enough
/// for bursts (a save round of many entities) without holding much memory per request.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

// ---------------------------------------------------------------------------------------------
// The worker machinery, shared by storage and the KVDB.
// ---------------------------------------------------------------------------------------------

/// A request the worker can name in error messages.
pub(crate) trait Op: Send + 'static {
    /// A short description such as `save Avatar/ABCDEFGHIJKLMNOP`.
    fn describe(&self) -> String;
}

impl Op for StorageOp {
    fn describe(&self) -> String {
        StorageOp::describe(self)
    }
}

impl Op for KvdbOp {
    fn describe(&self) -> String {
        KvdbOp::describe(self)
    }
}

/// Rung after every completion and whenever a worker exits, for the blocking waits. One bell
/// may serve several workers (a storage pool), so a handle can wait for "any of them".
///
/// Lock order: a waiter takes the bell's lock, then checks the workers' states (taking their
/// locks) and waits; a worker pushes under its state lock, releases it, then rings. So a
/// completion is either seen by the check or rings after the waiter is waiting.
pub(crate) struct Bell {
    rung: Mutex<u64>,
    cond: Condvar,
}

impl Bell {
    pub(crate) fn new() -> Arc<Bell> {
        Arc::new(Bell {
            rung: Mutex::new(0),
            cond: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, u64> {
        self.rung.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ring(&self) {
        *self.lock() += 1;
        self.cond.notify_all();
    }

    /// Waits on a guard from [`Bell::lock`] until rung or `deadline`.
    fn wait_until(&self, guard: MutexGuard<'_, u64>, deadline: Instant) {
        let now = Instant::now();
        if now < deadline {
            let _ = self.cond.wait_timeout(guard, deadline - now);
        }
    }
}

/// What the worker and the handle share.
struct Shared<O> {
    state: Mutex<SharedState<O>>,
    /// Rung after every completion and when the worker exits, for the blocking waits.
    bell: Arc<Bell>,
    /// Requests the worker finished (results pushed, taken or not). Written under the lock,
    /// read without it so `pending()` takes no lock.
    completed: AtomicU64,
}

struct SharedState<O> {
    results: VecDeque<Completion<O>>,
    /// The worker thread has exited (normally or not); it will push nothing more.
    dead: bool,
}

impl<O> Shared<O> {
    fn lock(&self) -> MutexGuard<'_, SharedState<O>> {
        // Nothing panics while holding the lock, but a poisoned queue is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Marks the worker dead when its thread ends for any reason (including a panic outside an
/// operation) and wakes everyone, so pending requests are failed instead of waited for.
struct DeathGuard<O> {
    shared: Arc<Shared<O>>,
    waker: Option<Arc<Waker>>,
    store: Store,
}

impl<O> Drop for DeathGuard<O> {
    fn drop(&mut self) {
        if thread::panicking() {
            error!("{} worker thread died", self.store);
        }
        self.shared.lock().dead = true;
        self.shared.bell.ring();
        if let Some(w) = &self.waker {
            let _ = w.wake();
        }
    }
}

/// Why the handle no longer sends to the worker.
#[derive(Clone, Copy)]
enum Stopped {
    Died,
    ShutDown,
}

/// The reactor-side half of one worker thread: a bounded channel plus a spill queue, the
/// results queue, and the bookkeeping that turns a dead worker into failed results.
pub(crate) struct Worker<R: Op, O> {
    store: Store,
    tx: Option<SyncSender<(u64, R)>>,
    stopped: Option<Stopped>,
    spill: VecDeque<(u64, R)>,
    spilled_total: u64,
    shared: Arc<Shared<O>>,
    waker: Option<Arc<Waker>>,
    /// Tokens sent or spilled whose results have not been collected, in submit order.
    outstanding: VecDeque<u64>,
    /// Results collected from the worker or made here (failures), not yet taken.
    ready: Vec<Completion<O>>,
    submitted: u64,
    /// Requests failed here because the worker died (they will never complete there).
    failed_here: u64,
    thread: Option<JoinHandle<()>>,
}

/// The text of a panic payload, as far as it is text.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-text panic payload".to_string()
    }
}

impl<R: Op, O: Send + 'static> Worker<R, O> {
    /// Starts the worker thread `<store>-worker`; `exec` runs each request on it.
    pub(crate) fn spawn<F>(
        store: Store,
        capacity: usize,
        waker: Option<Arc<Waker>>,
        exec: F,
    ) -> io::Result<Worker<R, O>>
    where
        F: FnMut(&R) -> Result<O, StoreError> + Send + 'static,
    {
        Worker::spawn_with_bell(
            store,
            format!("{store}-worker"),
            capacity,
            waker,
            Bell::new(),
            exec,
        )
    }

    /// Like [`Worker::spawn`], naming the thread `thread_name` and ringing `bell` (which may
    /// be shared with other workers) on every completion and on exit.
    pub(crate) fn spawn_with_bell<F>(
        store: Store,
        thread_name: String,
        capacity: usize,
        waker: Option<Arc<Waker>>,
        bell: Arc<Bell>,
        mut exec: F,
    ) -> io::Result<Worker<R, O>>
    where
        F: FnMut(&R) -> Result<O, StoreError> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel::<(u64, R)>(capacity.max(1));
        let shared = Arc::new(Shared {
            state: Mutex::new(SharedState {
                results: VecDeque::new(),
                dead: false,
            }),
            bell,
            completed: AtomicU64::new(0),
        });
        let guard = DeathGuard {
            shared: Arc::clone(&shared),
            waker: waker.clone(),
            store,
        };
        let thread = thread::Builder::new().name(thread_name).spawn(move || {
            let guard = guard;
            // Slow calls are logged, at most one line per SLOW_LOG_EVERY (with a count).
            let mut slow_logged: Option<Instant> = None;
            let mut slow_unlogged = 0u64;
            while let Ok((token, req)) = rx.recv() {
                let started = Instant::now();
                // The backend is only touched from this thread; after a caught panic it
                // is used again, which is why backends must tolerate an interrupted call
                // (the filesystem one keeps no state across calls).
                let result = match panic::catch_unwind(AssertUnwindSafe(|| exec(&req))) {
                    Ok(r) => r,
                    Err(payload) => {
                        let why = panic_text(&*payload);
                        // Dropping the payload runs outside catch_unwind on purpose: a
                        // payload whose drop panics kills the thread, which the guard
                        // turns into failed results.
                        drop(payload);
                        Err(StoreError::Panicked {
                            store,
                            op: req.describe(),
                            why,
                        })
                    }
                };
                let took = started.elapsed();
                if took >= SLOW_CALL {
                    if slow_logged.is_some_and(|t| t.elapsed() < SLOW_LOG_EVERY) {
                        slow_unlogged += 1;
                    } else {
                        warn!(
                            "slow {store} call: {} took {took:.1?}{}",
                            req.describe(),
                            if slow_unlogged > 0 {
                                format!(" ({slow_unlogged} more slow calls since the last line)")
                            } else {
                                String::new()
                            }
                        );
                        slow_logged = Some(Instant::now());
                        slow_unlogged = 0;
                    }
                }
                let was_empty = {
                    let mut st = guard.shared.lock();
                    let was_empty = st.results.is_empty();
                    st.results.push_back((token, result));
                    guard.shared.completed.fetch_add(1, Ordering::Release);
                    was_empty
                };
                guard.shared.bell.ring();
                // A non-empty queue already has a wake on its way (from the push that
                // made it non-empty), and the reactor takes the whole queue at once.
                if was_empty {
                    if let Some(w) = &guard.waker {
                        if let Err(e) = w.wake() {
                            warn!("{store} worker: waking the reactor failed: {e}");
                        }
                    }
                }
            }
        })?;
        Ok(Worker {
            store,
            tx: Some(tx),
            stopped: None,
            spill: VecDeque::new(),
            spilled_total: 0,
            shared,
            waker,
            outstanding: VecDeque::new(),
            ready: Vec::new(),
            submitted: 0,
            failed_here: 0,
            thread: Some(thread),
        })
    }

    /// Queues a request; never blocks.
    pub(crate) fn submit(&mut self, token: u64, req: R) {
        let Some(tx) = &self.tx else {
            let store = self.store;
            let e = match self.stopped {
                Some(Stopped::ShutDown) => StoreError::ShutDown { store },
                _ => StoreError::WorkerGone { store },
            };
            self.ready.push((token, Err(e)));
            // The caller learns of results on wake; make sure there is one.
            if let Some(w) = &self.waker {
                let _ = w.wake();
            }
            return;
        };
        self.submitted += 1;
        self.outstanding.push_back(token);
        if !self.spill.is_empty() {
            // Keep submit order: nothing overtakes what is already spilled.
            self.push_spill(token, req);
            self.feed();
            return;
        }
        match tx.try_send((token, req)) {
            Ok(()) => {}
            // Disconnected: the worker is dying; its guard will mark it dead and the spilled
            // request is failed with the rest.
            Err(TrySendError::Full((t, r))) | Err(TrySendError::Disconnected((t, r))) => {
                self.push_spill(t, r)
            }
        }
    }

    fn push_spill(&mut self, token: u64, req: R) {
        self.spill.push_back((token, req));
        self.spilled_total += 1;
        if self.spill.len().is_multiple_of(1024) || self.spilled_total == 1 {
            warn!(
                "{} queue full: {} requests spilled on the reactor side",
                self.store,
                self.spill.len()
            );
        }
    }

    /// Moves spilled requests into the channel while it has room.
    fn feed(&mut self) {
        let Some(tx) = &self.tx else { return };
        while let Some(item) = self.spill.pop_front() {
            match tx.try_send(item) {
                Ok(()) => {}
                Err(TrySendError::Full(item)) | Err(TrySendError::Disconnected(item)) => {
                    self.spill.push_front(item);
                    break;
                }
            }
        }
    }

    /// Moves finished results into `ready`; if the worker is dead, fails what it left.
    fn collect(&mut self) {
        let dead = {
            let mut st = self.shared.lock();
            for (token, r) in st.results.drain(..) {
                let expected = self.outstanding.pop_front();
                debug_assert_eq!(expected, Some(token), "results out of submit order");
                self.ready.push((token, r));
            }
            st.dead
        };
        if dead && !self.outstanding.is_empty() {
            let n = self.outstanding.len();
            error!(
                "{}: worker gone with {n} requests pending; reporting them failed",
                self.store
            );
            for token in self.outstanding.drain(..) {
                let store = self.store;
                self.ready
                    .push((token, Err(StoreError::WorkerGone { store })));
            }
            self.failed_here += n as u64;
            self.spill.clear();
        }
        if dead && self.tx.is_some() {
            self.tx = None;
            self.stopped = Some(Stopped::Died);
        }
    }

    /// Every result available now, in submit order; never blocks (beyond the results lock).
    pub(crate) fn take_results(&mut self) -> Vec<Completion<O>> {
        self.collect();
        // The worker made room as it produced these results.
        self.feed();
        std::mem::take(&mut self.ready)
    }

    /// Requests submitted and not yet finished by the worker (spilled ones included).
    pub(crate) fn pending(&self) -> usize {
        self.submitted.saturating_sub(self.done()) as usize
    }

    /// Requests ever sent or spilled to the worker (not those failed at once because it had
    /// stopped).
    pub(crate) fn submitted(&self) -> u64 {
        self.submitted
    }

    /// Of [`Worker::submitted`], how many have finished: done by the worker (results taken
    /// or not) or failed here because it died. Requests finish in submit order, so
    /// `done() >= n` means the first `n` submitted have all finished.
    pub(crate) fn done(&self) -> u64 {
        self.shared.completed.load(Ordering::Acquire) + self.failed_here
    }

    /// Whether the handle has stopped sending to this worker (it died or was shut down).
    pub(crate) fn is_stopped(&self) -> bool {
        self.tx.is_none()
    }

    /// Whether a blocking wait has something to look at: results not yet collected, or the
    /// worker has exited.
    fn has_news(&self) -> bool {
        let st = self.shared.lock();
        !st.results.is_empty() || st.dead
    }

    pub(crate) fn spilled(&self) -> u64 {
        self.spilled_total
    }

    pub(crate) fn spill_len(&self) -> usize {
        self.spill.len()
    }

    /// Blocks until a result is available, nothing is pending, or `timeout` passes.
    pub(crate) fn wait_results(&mut self, timeout: Duration) -> Vec<Completion<O>> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.take_results();
            if !r.is_empty() || self.pending() == 0 {
                return r;
            }
            if Instant::now() >= deadline {
                return Vec::new();
            }
            let bell = self.shared.bell.lock();
            if !self.has_news() {
                self.shared.bell.wait_until(bell, deadline);
            }
        }
    }

    /// Blocks until every submitted request has finished (results stay queued for
    /// `take_results`), or returns how many are still pending at `timeout`.
    pub(crate) fn drain(&mut self, timeout: Duration) -> Result<(), usize> {
        let deadline = Instant::now() + timeout;
        loop {
            self.feed();
            self.collect();
            let pending = self.pending();
            if pending == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(pending);
            }
            // Re-checked under the bell's lock, so a completion between the check and the
            // wait is not missed (the worker rings after releasing its state lock).
            let bell = self.shared.bell.lock();
            if self.pending() != 0 && !self.has_news() {
                self.shared.bell.wait_until(bell, deadline);
            }
        }
    }

    /// Drains, then closes the channel and joins the worker. On timeout nothing is stopped
    /// and the pending count is returned, so the caller may retry or give up.
    pub(crate) fn shutdown(&mut self, timeout: Duration) -> Result<(), usize> {
        self.drain(timeout)?;
        if self.tx.take().is_some() {
            self.stopped = Some(Stopped::ShutDown);
        }
        if let Some(t) = self.thread.take() {
            // The channel is empty and closed: the worker's recv fails and it exits.
            if t.join().is_err() {
                warn!("{} worker ended with a panic", self.store);
            }
        }
        Ok(())
    }
}

impl<R: Op, O> Drop for Worker<R, O> {
    fn drop(&mut self) {
        // Closing the channel lets the worker finish what it holds and exit; dropping must
        // not block the reactor, so the thread is not joined. Spilled requests never reached
        // it: say so (call shutdown first to keep them).
        if !self.spill.is_empty() {
            warn!(
                "{} dropped with {} spilled requests never sent to its worker",
                self.store,
                self.spill.len()
            );
        }
        self.tx = None;
    }
}

// ---------------------------------------------------------------------------------------------
// Storage.
// ---------------------------------------------------------------------------------------------

/// Storage workers in a pool made by [`StoragePool::filesystem`] and [`StoragePool::open`].
pub const DEFAULT_WORKERS: usize = 4;

/// The pool worker that owns `eid`: every request naming the entity goes there, so they run
/// in submit order. FNV-1a over the ID bytes; stable for the life of the pool.
fn worker_for(eid: &EntityId, workers: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in eid.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % workers as u64) as usize
}

/// A `list` held on the handle until every request submitted before it has finished.
struct HeldList {
    seq: u64,
    token: u64,
    type_name: String,
    /// Per worker: how many requests had been submitted to it when the list was.
    after: Vec<u64>,
}

/// The reactor-side handle to entity storage (see the module docs). Submitting never blocks;
/// results come back from [`StoragePool::take_results`], in submit order per entity.
pub struct StoragePool {
    workers: Vec<Worker<StorageOp, StorageOutput>>,
    /// Rung by every worker of the pool, for the blocking waits.
    bell: Arc<Bell>,
    /// Per worker, the submit sequence numbers of its requests whose results have not been
    /// taken, in that worker's submit order (which is the order its results come out in).
    seqs: Vec<VecDeque<u64>>,
    next_seq: u64,
    /// Lists waiting for their barrier, oldest first.
    held: VecDeque<HeldList>,
}

impl StoragePool {
    /// Filesystem storage in `dir` (created if missing), on [`DEFAULT_WORKERS`] workers with
    /// the default queue capacity. `waker` is woken whenever results become available;
    /// `None` for use without a reactor (then poll with [`StoragePool::wait_results`]).
    pub fn filesystem(dir: PathBuf, waker: Option<Arc<Waker>>) -> io::Result<StoragePool> {
        std::fs::create_dir_all(&dir)?;
        StoragePool::with_backend_pool(
            || FilesystemStorage::new(dir.clone()),
            waker,
            DEFAULT_QUEUE_CAPACITY,
            DEFAULT_WORKERS,
        )
    }

    /// Storage as configured by `[storage]`: `filesystem`, `redis` or `mongodb` (on
    /// [`DEFAULT_WORKERS`] workers; a Redis connection each, one MongoDB pool). Other types are
    /// rejected by the config parser already and give `Unsupported` here.
    pub fn open(cfg: &StoreConfig, waker: Option<Arc<Waker>>) -> io::Result<StoragePool> {
        match cfg.kind.as_str() {
            "filesystem" => StoragePool::filesystem(cfg.directory.clone(), waker),
            "redis" => {
                let db = super::redis::parse_db(&cfg.db).map_err(io::Error::other)?;
                StoragePool::with_backend_pool(
                    || super::redis::RedisStorage::new(&cfg.url, db).map_err(io::Error::other),
                    waker,
                    DEFAULT_QUEUE_CAPACITY,
                    DEFAULT_WORKERS,
                )
            }
            "mongodb" => {
                // One driver client (a connection pool) for every worker.
                let client = super::mongo::client(&cfg.url).map_err(io::Error::other)?;
                StoragePool::with_backend_pool(
                    || Ok(super::mongo::MongoStorage::new(&client, &cfg.db)),
                    waker,
                    DEFAULT_QUEUE_CAPACITY,
                    DEFAULT_WORKERS,
                )
            }
            other => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("storage type '{other}' is not built"),
            )),
        }
    }

    /// Storage over one backend on one worker; at most `queue_capacity` requests wait in the
    /// channel before further ones spill on the reactor side. One worker runs everything in
    /// global submit order.
    pub fn with_backend<B: StorageBackend>(
        backend: B,
        waker: Option<Arc<Waker>>,
        queue_capacity: usize,
    ) -> io::Result<StoragePool> {
        let mut backend = Some(backend);
        StoragePool::with_backend_pool(
            || Ok(backend.take().expect("called once for one worker")),
            waker,
            queue_capacity,
            1,
        )
    }

    /// Storage on `workers` worker threads (at least 1), each with its own backend from
    /// `make_backend` (called here, once per worker, in worker order) and its own channel of
    /// `queue_capacity`. Requests are sharded by entity ID; see the module docs for what that
    /// keeps. Backends of one pool must serve the same store (or disjoint shards of it: a
    /// worker only lists entities it was saving, see [`StoragePool::list`]).
    pub fn with_backend_pool<B, F>(
        mut make_backend: F,
        waker: Option<Arc<Waker>>,
        queue_capacity: usize,
        workers: usize,
    ) -> io::Result<StoragePool>
    where
        B: StorageBackend,
        F: FnMut() -> io::Result<B>,
    {
        let n = workers.max(1);
        let bell = Bell::new();
        let mut ws = Vec::with_capacity(n);
        for i in 0..n {
            let mut backend = make_backend()?;
            let name = if n == 1 {
                "storage-worker".to_string()
            } else {
                format!("storage-worker-{i}")
            };
            ws.push(Worker::spawn_with_bell(
                Store::Storage,
                name,
                queue_capacity,
                waker.clone(),
                Arc::clone(&bell),
                move |req| run_storage(&mut backend, req),
            )?);
        }
        Ok(StoragePool {
            workers: ws,
            bell,
            seqs: vec![VecDeque::new(); n],
            next_seq: 0,
            held: VecDeque::new(),
        })
    }

    /// Worker threads in the pool.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    fn submit_to(&mut self, i: usize, seq: u64, token: u64, req: StorageOp) {
        self.seqs[i].push_back(seq);
        self.workers[i].submit(token, req);
    }

    /// Submits one operation; never blocks. `save`, `load` and `exists` go to the worker
    /// that owns the entity; `list` waits for every request submitted before it (see the
    /// module docs). The result comes back from [`StoragePool::take_results`] with `token`.
    pub fn submit(&mut self, token: u64, op: StorageOp) {
        let seq = self.next_seq;
        self.next_seq += 1;
        match op.entity() {
            Some(eid) => {
                let i = worker_for(eid, self.workers.len());
                self.submit_to(i, seq, token, op);
            }
            None => {
                let StorageOp::List { type_name } = op else {
                    unreachable!("only a listing names no entity")
                };
                let after = self.workers.iter().map(|w| w.submitted()).collect();
                self.held.push_back(HeldList {
                    seq,
                    token,
                    type_name,
                    after,
                });
                self.release_lists();
            }
        }
    }

    /// Saves `data` as the entity's state; completes with [`StorageOutput::Saved`] once the
    /// data is durable.
    pub fn save(&mut self, token: u64, type_name: &str, eid: EntityId, data: Vec<u8>) {
        let type_name = type_name.to_string();
        self.submit(
            token,
            StorageOp::Save {
                type_name,
                eid,
                data,
            },
        );
    }

    /// Loads the entity's state; completes with [`StorageOutput::Loaded`].
    pub fn load(&mut self, token: u64, type_name: &str, eid: EntityId) {
        let type_name = type_name.to_string();
        self.submit(token, StorageOp::Load { type_name, eid });
    }

    /// Checks whether the entity was saved; completes with [`StorageOutput::Exists`].
    pub fn exists(&mut self, token: u64, type_name: &str, eid: EntityId) {
        let type_name = type_name.to_string();
        self.submit(token, StorageOp::Exists { type_name, eid });
    }

    /// Lists saved entities of a type; completes with [`StorageOutput::List`]. The listing
    /// includes every save submitted before it (it is held until all of them, on every
    /// worker, have finished) and may include later ones.
    pub fn list(&mut self, token: u64, type_name: &str) {
        let type_name = type_name.to_string();
        self.submit(token, StorageOp::List { type_name });
    }

    /// Sends held lists whose barrier has passed to the least busy live worker. Returns
    /// whether any was sent.
    fn release_lists(&mut self) -> bool {
        let mut released = false;
        // Barriers only grow in submit order, so once the oldest is not passed, none is.
        while let Some(h) = self.held.front() {
            let passed = self
                .workers
                .iter()
                .zip(&h.after)
                .all(|(w, &after)| w.done() >= after);
            if !passed {
                break;
            }
            let h = self.held.pop_front().expect("front exists");
            let i = (0..self.workers.len())
                .min_by_key(|&i| (self.workers[i].is_stopped(), self.workers[i].pending()))
                .expect("at least one worker");
            let req = StorageOp::List {
                type_name: h.type_name,
            };
            self.submit_to(i, h.seq, h.token, req);
            released = true;
        }
        released
    }

    /// Every result available now, in submit order within the batch (and per entity across
    /// batches). Call it from `Handler::on_wake`.
    pub fn take_results(&mut self) -> Vec<Completion<StorageOutput>> {
        let mut out: Vec<(u64, Completion<StorageOutput>)> = Vec::new();
        loop {
            for (w, seqs) in self.workers.iter_mut().zip(self.seqs.iter_mut()) {
                for c in w.take_results() {
                    let seq = seqs.pop_front().expect("a sequence number per request");
                    out.push((seq, c));
                }
            }
            // A list released now may fail at once (a stopped worker); pick that up too.
            if !self.release_lists() {
                break;
            }
        }
        out.sort_unstable_by_key(|(seq, _)| *seq);
        out.into_iter().map(|(_, c)| c).collect()
    }

    /// Whether a blocking wait has something to look at (call under the bell's lock).
    fn has_news(&self) -> bool {
        self.workers.iter().any(|w| w.has_news())
    }

    /// Blocks up to `timeout` for at least one result (returns at once, empty, if nothing is
    /// pending). For tests and tools without a reactor.
    pub fn wait_results(&mut self, timeout: Duration) -> Vec<Completion<StorageOutput>> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.take_results();
            if !r.is_empty() || self.pending() == 0 {
                return r;
            }
            if Instant::now() >= deadline {
                return Vec::new();
            }
            // A held list waits for completions on some worker, which ring the bell too.
            let bell = Arc::clone(&self.bell);
            let guard = bell.lock();
            if !self.has_news() {
                bell.wait_until(guard, deadline);
            }
        }
    }

    /// Requests submitted and not yet finished (spilled and held ones included), over all
    /// workers.
    pub fn pending(&self) -> usize {
        self.workers.iter().map(|w| w.pending()).sum::<usize>() + self.held.len()
    }

    /// Requests that ever spilled into a reactor-side queue because a channel was full.
    pub fn spilled(&self) -> u64 {
        self.workers.iter().map(|w| w.spilled()).sum()
    }

    /// Requests in the reactor-side spill queues now.
    pub fn spill_len(&self) -> usize {
        self.workers.iter().map(|w| w.spill_len()).sum()
    }

    /// Blocks until every submitted request has finished on every worker (results stay for
    /// `take_results`); on timeout returns how many are still pending. For freeze and
    /// graceful stop.
    pub fn drain(&mut self, timeout: Duration) -> Result<(), usize> {
        let deadline = Instant::now() + timeout;
        loop {
            self.release_lists();
            for w in &mut self.workers {
                let left = deadline.saturating_duration_since(Instant::now());
                if w.drain(left).is_err() {
                    return Err(self.pending());
                }
            }
            // Every worker is idle, so every held list's barrier has passed: release them
            // and go round once more.
            if self.held.is_empty() && self.pending() == 0 {
                return Ok(());
            }
        }
    }

    /// Drains (up to `timeout`), then stops and joins every worker; later requests fail at
    /// once. On timeout nothing is stopped and the pending count is returned.
    pub fn shutdown(&mut self, timeout: Duration) -> Result<(), usize> {
        let deadline = Instant::now() + timeout;
        self.drain(timeout)?;
        for w in &mut self.workers {
            let left = deadline.saturating_duration_since(Instant::now());
            w.shutdown(left)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The KVDB.
// ---------------------------------------------------------------------------------------------

/// The reactor-side handle to the KVDB: one worker thread owns the backend and runs requests
/// in submit order; results come back from [`KvdbPool::take_results`] in submit order.
pub struct KvdbPool {
    w: Worker<KvdbOp, KvdbOutput>,
}

impl KvdbPool {
    /// Filesystem KVDB in `dir` (created if missing), with the default queue capacity.
    /// `waker` is woken whenever results become available; `None` for use without a reactor
    /// (then poll with [`KvdbPool::wait_results`]).
    pub fn filesystem(dir: PathBuf, waker: Option<Arc<Waker>>) -> io::Result<KvdbPool> {
        KvdbPool::with_backend(FilesystemKvdb::new(dir)?, waker, DEFAULT_QUEUE_CAPACITY)
    }

    /// The KVDB as configured by `[kvdb]`: `Ok(None)` when `type` is empty (disabled, as in
    /// GoWorld). `filesystem`, `redis`, `redis_cluster` and `mongodb` are built; other types give
    /// `Unsupported`.
    pub fn open(cfg: &StoreConfig, waker: Option<Arc<Waker>>) -> io::Result<Option<KvdbPool>> {
        match cfg.kind.as_str() {
            "" => Ok(None),
            "filesystem" => KvdbPool::filesystem(cfg.directory.clone(), waker).map(Some),
            "redis" => {
                let db = super::redis::parse_db(&cfg.db).map_err(io::Error::other)?;
                let kvdb = super::redis::RedisKvdb::new(&cfg.url, db).map_err(io::Error::other)?;
                KvdbPool::with_backend(kvdb, waker, DEFAULT_QUEUE_CAPACITY).map(Some)
            }
            "redis_cluster" => {
                let kvdb = super::redis::RedisClusterKvdb::new(&cfg.start_nodes)
                    .map_err(io::Error::other)?;
                KvdbPool::with_backend(kvdb, waker, DEFAULT_QUEUE_CAPACITY).map(Some)
            }
            "mongodb" => {
                let client = super::mongo::client(&cfg.url).map_err(io::Error::other)?;
                let kvdb = super::mongo::MongoKvdb::new(&client, &cfg.db, &cfg.collection)
                    .map_err(io::Error::other)?;
                KvdbPool::with_backend(kvdb, waker, DEFAULT_QUEUE_CAPACITY).map(Some)
            }
            other => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("kvdb type '{other}' is not built"),
            )),
        }
    }

    /// A KVDB over any backend; at most `queue_capacity` requests wait in the channel before
    /// further ones spill on the reactor side.
    pub fn with_backend<B: KvdbBackend>(
        mut backend: B,
        waker: Option<Arc<Waker>>,
        queue_capacity: usize,
    ) -> io::Result<KvdbPool> {
        let w = Worker::spawn(Store::Kvdb, queue_capacity, waker, move |req| {
            run_kvdb(&mut backend, req)
        })?;
        Ok(KvdbPool { w })
    }

    /// Submits one operation; never blocks.
    pub fn submit(&mut self, token: u64, op: KvdbOp) {
        self.w.submit(token, op);
    }

    /// Reads `key`; completes with [`KvdbOutput::Value`].
    pub fn get(&mut self, token: u64, key: &str) {
        let key = key.to_string();
        self.w.submit(token, KvdbOp::Get { key });
    }

    /// Stores `val` under `key`; completes with [`KvdbOutput::Done`].
    pub fn put(&mut self, token: u64, key: &str, val: &str) {
        let (key, val) = (key.to_string(), val.to_string());
        self.w.submit(token, KvdbOp::Put { key, val });
    }

    /// Stores `val` under `key` unless it has a value, atomically across processes; completes
    /// with [`KvdbOutput::Value`]: the existing value, or `None` if `val` was stored.
    pub fn get_or_put(&mut self, token: u64, key: &str, val: &str) {
        let (key, val) = (key.to_string(), val.to_string());
        self.w.submit(token, KvdbOp::GetOrPut { key, val });
    }

    /// Reads every pair with `begin <= key < end`; completes with [`KvdbOutput::Range`].
    pub fn get_range(&mut self, token: u64, begin: &str, end: &str) {
        let (begin, end) = (begin.to_string(), end.to_string());
        self.w.submit(token, KvdbOp::GetRange { begin, end });
    }

    /// Every result available now, in submit order. Call it from `Handler::on_wake`.
    pub fn take_results(&mut self) -> Vec<Completion<KvdbOutput>> {
        self.w.take_results()
    }

    /// Blocks up to `timeout` for at least one result (returns at once, empty, if nothing is
    /// pending). For tests and tools without a reactor.
    pub fn wait_results(&mut self, timeout: Duration) -> Vec<Completion<KvdbOutput>> {
        self.w.wait_results(timeout)
    }

    /// Requests submitted and not yet finished (spilled ones included).
    pub fn pending(&self) -> usize {
        self.w.pending()
    }

    /// Requests that ever spilled into the reactor-side queue because the channel was full.
    pub fn spilled(&self) -> u64 {
        self.w.spilled()
    }

    /// Requests in the reactor-side spill queue now.
    pub fn spill_len(&self) -> usize {
        self.w.spill_len()
    }

    /// Blocks until every submitted request has finished (results stay for `take_results`);
    /// on timeout returns how many are still pending. For freeze and graceful stop.
    pub fn drain(&mut self, timeout: Duration) -> Result<(), usize> {
        self.w.drain(timeout)
    }

    /// Drains (up to `timeout`), then stops and joins the worker; later requests fail at once.
    /// On timeout nothing is stopped and the pending count is returned.
    pub fn shutdown(&mut self, timeout: Duration) -> Result<(), usize> {
        self.w.shutdown(timeout)
    }
}

// ---------------------------------------------------------------------------------------------
// Both, as the shell owns them.
// ---------------------------------------------------------------------------------------------

/// A store could not be opened.
#[derive(Debug)]
pub struct OpenError {
    /// The store.
    pub store: Store,
    /// What went wrong.
    pub error: io::Error,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.store, self.error)
    }
}

impl std::error::Error for OpenError {}

/// Entity storage and the KVDB behind one door: the game's shell submits the world's
/// requests here and takes the results when the waker fires (see the module docs).
pub struct StorePool {
    storage: Option<StoragePool>,
    kvdb: Option<KvdbPool>,
    /// Requests for a store that is not configured, failed at once, not yet taken.
    failed: Vec<StoreResult>,
    waker: Option<Arc<Waker>>,
}

impl StorePool {
    /// A pool of the given stores (either may be missing). `waker` is woken when a request
    /// for a missing store fails; give the pools the same waker.
    pub fn new(
        storage: Option<StoragePool>,
        kvdb: Option<KvdbPool>,
        waker: Option<Arc<Waker>>,
    ) -> StorePool {
        StorePool {
            storage,
            kvdb,
            failed: Vec::new(),
            waker,
        }
    }

    /// The stores as configured by `[storage]` and `[kvdb]` (see [`StoragePool::open`] and
    /// [`KvdbPool::open`]); every worker wakes `waker` when results are ready.
    pub fn open(
        storage: &StoreConfig,
        kvdb: &StoreConfig,
        waker: Option<Arc<Waker>>,
    ) -> Result<StorePool, OpenError> {
        let s = StoragePool::open(storage, waker.clone()).map_err(|error| OpenError {
            store: Store::Storage,
            error,
        })?;
        let k = KvdbPool::open(kvdb, waker.clone()).map_err(|error| OpenError {
            store: Store::Kvdb,
            error,
        })?;
        Ok(StorePool::new(Some(s), k, waker))
    }

    /// Which stores the pool has (what the game's world may ask for).
    pub fn stores(&self) -> Stores {
        Stores {
            storage: self.storage.is_some(),
            kvdb: self.kvdb.is_some(),
        }
    }

    /// Submits one request; never blocks. A request for a store the pool lacks fails with
    /// [`StoreError::Unconfigured`] (taken with the next results; the waker is woken).
    pub fn submit(&mut self, req: StoreRequest) {
        let StoreRequest { token, op } = req;
        match (op, &mut self.storage, &mut self.kvdb) {
            (StoreOp::Storage(op), Some(s), _) => s.submit(token, op),
            (StoreOp::Kvdb(op), _, Some(k)) => k.submit(token, op),
            (op, _, _) => {
                let store = op.store();
                self.failed.push(StoreResult {
                    token,
                    outcome: Err(StoreError::Unconfigured { store }),
                });
                if let Some(w) = &self.waker {
                    let _ = w.wake();
                }
            }
        }
    }

    /// Submits requests in order.
    pub fn submit_all(&mut self, reqs: impl IntoIterator<Item = StoreRequest>) {
        for r in reqs {
            self.submit(r);
        }
    }

    /// Every result available now: storage's (in submit order within the batch), then the
    /// KVDB's (in submit order), then requests failed at once. Call it on the reactor's wake.
    pub fn take_results(&mut self) -> Vec<StoreResult> {
        let mut out = std::mem::take(&mut self.failed);
        if let Some(s) = &mut self.storage {
            out.extend(s.take_results().into_iter().map(|(token, r)| StoreResult {
                token,
                outcome: r.map(StoreOutput::Storage),
            }));
        }
        if let Some(k) = &mut self.kvdb {
            out.extend(k.take_results().into_iter().map(|(token, r)| StoreResult {
                token,
                outcome: r.map(StoreOutput::Kvdb),
            }));
        }
        out
    }

    /// Requests submitted and not yet finished, over both stores.
    pub fn pending(&self) -> usize {
        self.storage.as_ref().map_or(0, |s| s.pending())
            + self.kvdb.as_ref().map_or(0, |k| k.pending())
    }

    /// Requests that ever spilled into a reactor-side queue because a channel was full.
    pub fn spilled(&self) -> u64 {
        self.storage.as_ref().map_or(0, |s| s.spilled())
            + self.kvdb.as_ref().map_or(0, |k| k.spilled())
    }

    /// Blocks until every submitted request has finished (results stay for
    /// `take_results`); on timeout returns how many are still pending.
    pub fn drain(&mut self, timeout: Duration) -> Result<(), usize> {
        self.both(timeout, StoragePool::drain, KvdbPool::drain)
    }

    /// Drains (up to `timeout` in all), then stops and joins every worker; later requests
    /// fail at once. On timeout the pending count is returned and the workers are left to
    /// finish on their own (dropping the pool does not wait for them).
    pub fn shutdown(&mut self, timeout: Duration) -> Result<(), usize> {
        self.both(timeout, StoragePool::shutdown, KvdbPool::shutdown)
    }

    /// Runs a blocking step on the storage pool, then on the KVDB pool with what is left of
    /// `timeout`; the requests still pending in both.
    fn both(
        &mut self,
        timeout: Duration,
        storage: fn(&mut StoragePool, Duration) -> Result<(), usize>,
        kvdb: fn(&mut KvdbPool, Duration) -> Result<(), usize>,
    ) -> Result<(), usize> {
        let deadline = Instant::now() + timeout;
        let mut left = 0;
        if let Some(s) = &mut self.storage {
            left += storage(s, timeout).err().unwrap_or(0);
        }
        if let Some(k) = &mut self.kvdb {
            let rest = deadline.saturating_duration_since(Instant::now());
            left += kvdb(k, rest).err().unwrap_or(0);
        }
        if left == 0 {
            Ok(())
        } else {
            Err(left)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testutil::{eid, TempDir, T};

    /// Drains and returns every result.
    fn all(s: &mut StoragePool) -> Vec<Completion<StorageOutput>> {
        s.drain(T).expect("drained");
        s.take_results()
    }

    /// Panics on every load; a panic payload that panics when dropped kills the thread.
    struct Faulty;

    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("bomb payload dropped");
        }
    }

    impl StorageBackend for Faulty {
        fn save(&mut self, type_name: &str, _: &EntityId, _: &[u8]) -> Result<(), String> {
            if type_name == "Bomb" {
                std::panic::panic_any(Bomb);
            }
            Ok(())
        }
        fn load(&mut self, _: &str, _: &EntityId) -> Result<Option<Vec<u8>>, String> {
            panic!("disk on fire");
        }
        fn exists(&mut self, _: &str, _: &EntityId) -> Result<bool, String> {
            Err("no such thing".to_string())
        }
        fn list(&mut self, _: &str) -> Result<Vec<EntityId>, String> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn panic_is_an_error_result_and_worker_keeps_serving() {
        let mut s = StoragePool::with_backend(Faulty, None, 4).unwrap();
        let e = eid("PanickyEntity123");
        s.save(1, "Avatar", e, vec![]);
        s.load(2, "Avatar", e);
        s.exists(3, "Avatar", e);
        s.list(4, "Avatar");
        let r = all(&mut s);
        assert_eq!(r[0], (1, Ok(StorageOutput::Saved)));
        assert_eq!(r[1].0, 2);
        assert_eq!(
            r[1].1,
            Err(StoreError::Panicked {
                store: Store::Storage,
                op: "load Avatar/PanickyEntity123".into(),
                why: "disk on fire".into()
            })
        );
        let err = StoreError::Backend {
            store: Store::Storage,
            op: "exists Avatar/PanickyEntity123".into(),
            why: "no such thing".into(),
        };
        assert_eq!(
            err.to_string(),
            "storage exists Avatar/PanickyEntity123: no such thing"
        );
        assert_eq!(r[2], (3, Err(err)));
        assert_eq!(r[3], (4, Ok(StorageOutput::List(vec![]))));
    }

    #[test]
    fn dead_worker_fails_pending_requests() {
        let mut s = StoragePool::with_backend(Faulty, None, 1).unwrap();
        let e = eid("DoomedEntity1234");
        s.save(1, "Avatar", e, vec![]);
        s.save(2, "Bomb", e, vec![]); // kills the thread
        for t in 3..10 {
            s.save(t, "Avatar", e, vec![]);
        }
        // drain returns: the dead worker's requests count as finished (failed).
        s.drain(T).expect("drain must not hang on a dead worker");
        let r = s.take_results();
        let tokens: Vec<u64> = r.iter().map(|(t, _)| *t).collect();
        assert_eq!(tokens, (1..10).collect::<Vec<_>>());
        assert_eq!(r[0].1, Ok(StorageOutput::Saved));
        let gone = Err(StoreError::WorkerGone {
            store: Store::Storage,
        });
        for (t, out) in &r[1..] {
            assert_eq!(*out, gone, "token {t} should have failed");
        }
        assert_eq!(s.pending(), 0);
        // Later requests fail at once.
        s.load(10, "Avatar", e);
        let r = s.take_results();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].1, gone);
        assert!(r[0].1.as_ref().unwrap_err().to_string().contains("dead"));
    }

    #[test]
    fn waker_is_woken_with_results() {
        let d = TempDir::new("store-wake");
        let mut poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(7)).unwrap());
        let mut s = StoragePool::filesystem(d.0.clone(), Some(waker)).unwrap();
        s.exists(42, "Avatar", eid("AAAAAAAAAAAAAAAA"));
        let mut events = mio::Events::with_capacity(4);
        let deadline = Instant::now() + T;
        let mut got = Vec::new();
        while got.is_empty() && Instant::now() < deadline {
            poll.poll(&mut events, Some(Duration::from_millis(100)))
                .unwrap();
            if events.iter().any(|ev| ev.token() == mio::Token(7)) {
                got = s.take_results();
            }
        }
        assert_eq!(got, vec![(42, Ok(StorageOutput::Exists(false)))]);
    }

    #[test]
    fn shutdown_then_requests_fail() {
        let d = TempDir::new("store-shutdown");
        let mut s = StoragePool::filesystem(d.0.clone(), None).unwrap();
        s.save(1, "Avatar", eid("AAAAAAAAAAAAAAAA"), vec![7]);
        s.shutdown(T).unwrap();
        s.load(2, "Avatar", eid("AAAAAAAAAAAAAAAA"));
        let r = s.take_results();
        assert_eq!(r[0], (1, Ok(StorageOutput::Saved)));
        assert_eq!(r[1].0, 2);
        assert_eq!(
            r[1].1,
            Err(StoreError::ShutDown {
                store: Store::Storage
            })
        );
        assert!(r[1]
            .1
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("shut down"));
    }

    type SlowMap = std::collections::BTreeMap<(String, EntityId), Vec<u8>>;

    /// An in-memory store shared by every backend of a pool, whose saves take a while, so
    /// workers really overlap.
    #[derive(Clone, Default)]
    struct Slow {
        map: Arc<Mutex<SlowMap>>,
        delay: Duration,
    }

    impl StorageBackend for Slow {
        fn save(&mut self, type_name: &str, eid: &EntityId, data: &[u8]) -> Result<(), String> {
            thread::sleep(self.delay);
            if type_name == "Bomb" {
                std::panic::panic_any(Bomb);
            }
            let key = (type_name.to_string(), *eid);
            self.map.lock().unwrap().insert(key, data.to_vec());
            Ok(())
        }
        fn load(&mut self, type_name: &str, eid: &EntityId) -> Result<Option<Vec<u8>>, String> {
            let key = (type_name.to_string(), *eid);
            Ok(self.map.lock().unwrap().get(&key).cloned())
        }
        fn exists(&mut self, type_name: &str, eid: &EntityId) -> Result<bool, String> {
            Ok(self.load(type_name, eid)?.is_some())
        }
        fn list(&mut self, type_name: &str) -> Result<Vec<EntityId>, String> {
            let map = self.map.lock().unwrap();
            Ok(map
                .keys()
                .filter(|(t, _)| t == type_name)
                .map(|(_, e)| *e)
                .collect())
        }
    }

    fn slow_pool(delay: Duration, capacity: usize) -> (Slow, StoragePool) {
        let slow = Slow {
            delay,
            ..Slow::default()
        };
        let b = slow.clone();
        let s = StoragePool::with_backend_pool(move || Ok(b.clone()), None, capacity, 4).unwrap();
        (slow, s)
    }

    /// A call over SLOW_CALL is logged with what it was; more on the same worker within
    /// SLOW_LOG_EVERY are counted into the next line, not logged one by one.
    #[test]
    fn slow_calls_are_logged_a_line_per_interval() {
        goworld_common::testlog::capture();
        let (_, mut pool) = slow_pool(SLOW_CALL + Duration::from_millis(20), 16);
        let e = eid("SlowSlowSlowSlow");
        for t in 0..3 {
            pool.save(t, "Avatar", e, vec![1]);
        }
        pool.drain(T * 2).unwrap();
        let lines: Vec<String> =
            goworld_common::testlog::take_matching(log::Level::Warn, "SlowSlowSlowSlow");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains("slow storage call: save Avatar/SlowSlowSlowSlow took"),
            "{lines:?}"
        );
    }

    /// `n` entity IDs, at least one owned by each of the pool's `workers`.
    fn spread_ids(n: usize, workers: usize) -> Vec<EntityId> {
        let ids: Vec<EntityId> = (0..n).map(|i| eid(&format!("Spread{i:010}"))).collect();
        for w in 0..workers {
            assert!(
                ids.iter().any(|e| worker_for(e, workers) == w),
                "worker {w}"
            );
        }
        ids
    }

    #[test]
    fn pool_keeps_per_entity_order() {
        let d = TempDir::new("store-pool-order");
        let dir = d.0.clone();
        // A tiny channel per worker forces spilling, which must keep the order too.
        let mut s =
            StoragePool::with_backend_pool(|| FilesystemStorage::new(dir.clone()), None, 2, 4)
                .unwrap();
        assert_eq!(s.workers(), 4);
        let ids = spread_ids(8, 4);
        let mut want: Vec<Vec<Completion<StorageOutput>>> = vec![Vec::new(); ids.len()];
        let mut token = 0u64;
        for round in 0..30 {
            for (k, e) in ids.iter().enumerate() {
                let data = format!("{k}-{round}").into_bytes();
                s.save(token, "Thing", *e, data.clone());
                want[k].push((token, Ok(StorageOutput::Saved)));
                s.load(token + 1, "Thing", *e);
                want[k].push((token + 1, Ok(StorageOutput::Loaded(Some(data)))));
                token += 2;
            }
        }
        assert!(s.spilled() > 0, "the small channels should have spilled");
        let mut got: Vec<Vec<Completion<StorageOutput>>> = vec![Vec::new(); ids.len()];
        let mut n = 0;
        while n < token {
            let r = s.wait_results(T);
            assert!(!r.is_empty(), "timed out");
            for (t, out) in r {
                got[((t / 2) % ids.len() as u64) as usize].push((t, out));
                n += 1;
            }
        }
        assert_eq!(got, want);
        assert_eq!(s.pending(), 0);
        assert_eq!(s.spill_len(), 0);
        s.shutdown(T).unwrap();
    }

    #[test]
    fn list_sees_earlier_saves_on_every_worker() {
        let (_, mut s) = slow_pool(Duration::from_millis(5), 4);
        let ids = spread_ids(24, 4);
        for (token, e) in ids.iter().enumerate() {
            s.save(token as u64, "Avatar", *e, vec![1]);
        }
        // Not drained: the saves are still running (or spilled) on all four workers.
        s.list(1000, "Avatar");
        assert!(s.pending() > 1);
        let later = eid("LaterEntity12345");
        s.save(1001, "Other", later, vec![2]);
        s.list(1002, "Other");
        let r = all(&mut s);
        assert_eq!(r.len(), ids.len() + 3);
        let mut sorted = ids.clone();
        sorted.sort();
        let list = r.iter().find(|(t, _)| *t == 1000).expect("list result");
        assert_eq!(list.1, Ok(StorageOutput::List(sorted)));
        let other = r.iter().find(|(t, _)| *t == 1002).expect("list result");
        assert_eq!(other.1, Ok(StorageOutput::List(vec![later])));
        // One batch comes back in submit order.
        let tokens: Vec<u64> = r.iter().map(|(t, _)| *t).collect();
        let mut want: Vec<u64> = (0..ids.len() as u64).collect();
        want.extend([1000, 1001, 1002]);
        assert_eq!(tokens, want);
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn list_waits_without_drain() {
        // The barrier is released by take_results/wait_results as the workers finish.
        let (_, mut s) = slow_pool(Duration::from_millis(2), 1024);
        let ids = spread_ids(16, 4);
        for (i, e) in ids.iter().enumerate() {
            s.save(i as u64, "Avatar", *e, vec![]);
        }
        s.list(99, "Avatar");
        let mut list = None;
        let deadline = Instant::now() + T;
        while list.is_none() && Instant::now() < deadline {
            for (t, out) in s.wait_results(T) {
                if t == 99 {
                    list = Some(out);
                }
            }
        }
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(list, Some(Ok(StorageOutput::List(sorted))));
    }

    #[test]
    fn dead_worker_fails_its_tokens_only() {
        let (slow, mut s) = slow_pool(Duration::from_millis(1), 2);
        let ids = spread_ids(16, 4);
        let victim = ids[0];
        let dead = worker_for(&victim, 4);
        for (token, e) in ids.iter().enumerate() {
            s.save(token as u64, "Avatar", *e, vec![1]);
        }
        s.save(100, "Bomb", victim, vec![]); // kills the victim's worker
        for (i, e) in ids.iter().enumerate() {
            s.save(200 + i as u64, "Avatar", *e, vec![2]);
        }
        s.list(300, "Avatar");
        s.drain(T).expect("drain must not hang on a dead worker");
        let r = s.take_results();
        assert_eq!(r.len(), 2 * ids.len() + 2);
        assert_eq!(s.pending(), 0);
        for (t, out) in &r {
            let on_dead = match t {
                100 => true,
                300 => continue, // the list ran on a live worker
                t if *t >= 200 => worker_for(&ids[(t - 200) as usize], 4) == dead,
                _ => false,
            };
            assert_eq!(out.is_err(), on_dead, "token {t}: {out:?}");
        }
        // The live workers saved the second round.
        let map = slow.map.lock().unwrap();
        for e in &ids {
            let want = if worker_for(e, 4) == dead { 1 } else { 2 };
            assert_eq!(map[&("Avatar".to_string(), *e)], vec![want]);
        }
        drop(map);
        // Later requests for the dead worker fail at once; the others still work.
        let alive = *ids.iter().find(|e| worker_for(e, 4) != dead).unwrap();
        s.load(400, "Avatar", victim);
        s.load(401, "Avatar", alive);
        let r = all(&mut s);
        assert!(
            matches!(r[0].1, Err(StoreError::WorkerGone { .. })),
            "{r:?}"
        );
        assert_eq!(r[1], (401, Ok(StorageOutput::Loaded(Some(vec![2])))));
    }

    #[test]
    fn drain_waits_for_every_worker() {
        let (slow, mut s) = slow_pool(Duration::from_millis(3), 1024);
        let ids = spread_ids(40, 4);
        for (i, e) in ids.iter().enumerate() {
            s.save(i as u64, "Avatar", *e, vec![i as u8]);
        }
        s.list(1000, "Avatar");
        assert_eq!(s.pending(), ids.len() + 1);
        s.drain(T).unwrap();
        assert_eq!(s.pending(), 0);
        assert_eq!(slow.map.lock().unwrap().len(), ids.len());
        let r = s.take_results();
        assert_eq!(r.len(), ids.len() + 1);
        assert!(r.iter().all(|(_, out)| out.is_ok()));
        // Shutdown covers every worker: afterwards everything fails at once.
        s.shutdown(T).unwrap();
        for (i, e) in ids.iter().enumerate() {
            s.exists(i as u64, "Avatar", *e);
        }
        let r = s.take_results();
        assert_eq!(r.len(), ids.len());
        assert!(r.iter().all(|(_, out)| out.is_err()));
    }

    #[test]
    fn drain_times_out_with_the_pending_count() {
        let (_, mut s) = slow_pool(Duration::from_millis(50), 1024);
        for (i, e) in spread_ids(8, 4).iter().enumerate() {
            s.save(i as u64, "Avatar", *e, vec![]);
        }
        s.list(99, "Avatar");
        let left = s.drain(Duration::from_millis(10)).unwrap_err();
        assert!(left > 0 && left <= 9, "{left}");
        s.drain(T).unwrap();
        assert_eq!(s.take_results().len(), 9);
    }

    struct FaultyKvdb;

    impl KvdbBackend for FaultyKvdb {
        fn get(&mut self, key: &str) -> Result<Option<String>, String> {
            if key == "boom" {
                panic!("backend exploded");
            }
            Ok(None)
        }
        fn put(&mut self, _: &str, _: &str) -> Result<(), String> {
            Ok(())
        }
        fn get_or_put(&mut self, _: &str, _: &str) -> Result<Option<String>, String> {
            Err("unsupported".to_string())
        }
        fn get_range(&mut self, _: &str, _: &str) -> Result<Vec<(String, String)>, String> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn kvdb_panic_is_an_error_result() {
        let mut k = KvdbPool::with_backend(FaultyKvdb, None, 8).unwrap();
        k.get(1, "boom");
        k.get(2, "fine");
        k.get_or_put(3, "x", "y");
        k.drain(T).unwrap();
        let r = k.take_results();
        assert_eq!(
            r[0].1,
            Err(StoreError::Panicked {
                store: Store::Kvdb,
                op: "get \"boom\"".into(),
                why: "backend exploded".into()
            })
        );
        assert_eq!(r[1], (2, Ok(KvdbOutput::Value(None))));
        let err = r[2].1.clone().unwrap_err();
        assert_eq!(err.to_string(), "kvdb get_or_put \"x\": unsupported");
    }

    #[test]
    fn the_store_pool_routes_by_store_and_fails_what_is_not_configured() {
        let mem = crate::store::mem::MemStores::default();
        let m = mem.storage.clone();
        let storage = StoragePool::with_backend_pool(move || Ok(m.clone()), None, 8, 2).unwrap();
        let mut pool = StorePool::new(Some(storage), None, None);
        assert_eq!(
            pool.stores(),
            Stores {
                storage: true,
                kvdb: false
            }
        );
        let e = eid("AAAAAAAAAAAAAAAA");
        pool.submit_all([
            StoreRequest {
                token: 1,
                op: StoreOp::Storage(StorageOp::Save {
                    type_name: "Avatar".into(),
                    eid: e,
                    data: vec![7],
                }),
            },
            StoreRequest {
                token: 2,
                op: StoreOp::Kvdb(KvdbOp::Get { key: "k".into() }),
            },
            StoreRequest {
                token: 3,
                op: StoreOp::Storage(StorageOp::Load {
                    type_name: "Avatar".into(),
                    eid: e,
                }),
            },
        ]);
        pool.drain(T).unwrap();
        assert_eq!(pool.pending(), 0);
        let mut r = pool.take_results();
        r.sort_by_key(|r| r.token);
        assert_eq!(
            r,
            vec![
                StoreResult {
                    token: 1,
                    outcome: Ok(StoreOutput::Storage(StorageOutput::Saved))
                },
                StoreResult {
                    token: 2,
                    outcome: Err(StoreError::Unconfigured { store: Store::Kvdb })
                },
                StoreResult {
                    token: 3,
                    outcome: Ok(StoreOutput::Storage(StorageOutput::Loaded(Some(vec![7]))))
                },
            ]
        );
        assert_eq!(mem.storage.saved("Avatar", &e), Some(vec![7]));
        pool.shutdown(T).unwrap();
    }

    #[test]
    fn the_store_pool_opens_what_the_config_names() {
        let d = TempDir::new("store-pool-open");
        let cfg = |dir: &str, kind: &str| StoreConfig {
            kind: kind.into(),
            directory: d.0.join(dir),
            url: String::new(),
            db: String::new(),
            collection: String::new(),
            start_nodes: Vec::new(),
        };
        let mut pool =
            StorePool::open(&cfg("s", "filesystem"), &cfg("k", "filesystem"), None).unwrap();
        assert_eq!(pool.stores(), Stores::ALL);
        pool.submit(StoreRequest {
            token: 1,
            op: StoreOp::Kvdb(KvdbOp::Put {
                key: "a".into(),
                val: "b".into(),
            }),
        });
        pool.submit(StoreRequest {
            token: 2,
            op: StoreOp::Storage(StorageOp::List {
                type_name: "Avatar".into(),
            }),
        });
        pool.shutdown(T).unwrap();
        let mut r = pool.take_results();
        r.sort_by_key(|r| r.token);
        assert_eq!(r[0].outcome, Ok(StoreOutput::Kvdb(KvdbOutput::Done)));
        assert_eq!(
            r[1].outcome,
            Ok(StoreOutput::Storage(StorageOutput::List(vec![])))
        );
        // Without a KVDB type the KVDB is disabled; an unknown storage type is an error.
        let pool = StorePool::open(&cfg("s", "filesystem"), &cfg("k", ""), None).unwrap();
        assert_eq!(
            pool.stores(),
            Stores {
                storage: true,
                kvdb: false
            }
        );
        let err = StorePool::open(&cfg("s", "mongodb"), &cfg("k", ""), None)
            .err()
            .unwrap();
        assert_eq!(err.store, Store::Storage);
        assert!(err.to_string().starts_with("storage: "), "{err}");
    }
}
