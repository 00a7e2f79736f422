//! Entity storage (reference §3.11): saves, loads, existence checks and listings of persistent
//! entities, run on a pool of worker threads so the reactor never waits for a disk.
//!
//! # Shape
//!
//! [`Storage`] is the reactor-side handle. Each request (`save`, `load`, `exists`, `list`)
//! carries a caller-chosen `u64` token and goes to one of K worker threads
//! ([`DEFAULT_WORKERS`] = 4 for [`Storage::filesystem`] and [`Storage::open`]; one for
//! [`Storage::with_backend`]), each owning its own backend (a [`StorageBackend`]; the
//! built-in one is [`FilesystemStorage`], and all its instances share one directory). Only
//! owned bytes and strings cross the thread boundary. Each worker executes its requests one
//! at a time in submit order, pushes `(token, result)` onto its results queue and wakes the
//! reactor through the shared [`mio::Waker`]; the reactor's `on_wake` calls
//! [`Storage::take_results`], which gathers the results of every worker.
//!
//! # Ordering across the pool
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
//!
//! The pool's `pending`, `spilled`, `spill_len`, `drain`, `wait_results` and `shutdown` cover
//! every worker; the blocking ones wait on one bell rung by all of them.
//!
//! # The reactor never blocks
//!
//! Submitting never waits: each worker's channel is bounded, and when it is full the request
//! goes to that worker's reactor-side spill queue (counted by [`Storage::spilled`]) that is
//! fed into the channel, oldest first, whenever the handle is used again (every submit and
//! every `take_results`, which the worker's wake triggers as it makes room). Once anything is
//! spilled, later requests for that worker spill behind it, so submit order is kept. The only
//! lock shared with a worker guards its results queue and is held just long enough to push or
//! take (the bell's lock is taken only by the workers and the blocking waits).
//! Only [`Storage::drain`], [`Storage::wait_results`] and [`Storage::shutdown`] block, by
//! design: they are for freeze, graceful stop and tests.
//!
//! # Failures
//!
//! A backend error is returned as the request's `Err`, prefixed with the operation. GoWorld
//! retries saves forever; here the caller decides (the entity layer may resubmit). A panic
//! inside an operation is caught on the worker, reported as that request's error (naming the
//! operation) and the worker keeps serving. If a worker thread dies anyway, a guard marks it
//! dead and wakes the reactor; the handle then reports every pending token of that worker
//! (queued, spilled or in flight) as failed rather than leaving it hanging, and fails later
//! requests routed to it at once. The other workers keep serving their entities, and a held
//! `list` counts the dead worker's failed requests as finished (a list sent to a worker that
//! has died, but not yet been seen dead, fails like any of its requests).
//!
//! # Filesystem layout and atomicity
//!
//! `[storage] type = filesystem`: one file per entity at `<directory>/<TypeName>/<EntityID>`,
//! holding exactly the bytes given to `save`. Several game processes on one host may share the
//! directory. A save writes a temporary file in the same directory (`.tmp-<pid>-<seq>`, never
//! 16 bytes long, so never mistaken for an entity), fsyncs it, renames it over the target and
//! fsyncs the directory: `rename` replaces the name atomically, so a concurrent reader in any
//! process sees either the old or the new contents, never a torn file, and a crash leaves at
//! worst a stray temporary file (ignored by `list`). `Saved` means durable: the type
//! directory's own name is fsynced into the storage directory by each worker before its
//! first save there, even when another worker or process created it. Saves are not grouped:
//! each pays its two fsyncs (batching renames under one directory fsync measured no better
//! on one worker here, see BENCHMARKS.md). Type names and IDs become path components,
//! so they are checked: no empty names, no `.` or `..`, no `/`, no NUL.
//!
//! The worker machinery here ([`Completion`] and the crate-private `Worker`) is shared with
//! [`crate::kvdb`].

use std::collections::{HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use goworld_common::config::StoreConfig;
use goworld_common::id::{EntityId, ID_LEN};
use log::{error, warn};
use mio::Waker;

/// One finished request: the caller's token and the outcome (an error is a readable message
/// naming the operation).
pub type Completion<O> = (u64, Result<O, String>);

/// Requests the handle queues before spilling: enough for bursts (a save round of many
/// entities) without holding much memory per queued request.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

// ---------------------------------------------------------------------------------------------
// The worker machinery, shared with the KVDB.
// ---------------------------------------------------------------------------------------------

/// A request the worker can name in error messages.
pub(crate) trait Op: Send + 'static {
    /// A short description such as `save Avatar/ABCDEFGHIJKLMNOP`.
    fn describe(&self) -> String;
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
    what: &'static str,
}

impl<O> Drop for DeathGuard<O> {
    fn drop(&mut self) {
        if thread::panicking() {
            error!("{} worker thread died", self.what);
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
    what: &'static str,
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
    /// Starts the worker thread `<what>-worker`; `exec` runs each request on it.
    pub(crate) fn spawn<F>(
        what: &'static str,
        capacity: usize,
        waker: Option<Arc<Waker>>,
        exec: F,
    ) -> io::Result<Worker<R, O>>
    where
        F: FnMut(&R) -> Result<O, String> + Send + 'static,
    {
        Worker::spawn_with_bell(
            what,
            format!("{what}-worker"),
            capacity,
            waker,
            Bell::new(),
            exec,
        )
    }

    /// Like [`Worker::spawn`], naming the thread `thread_name` and ringing `bell` (which may
    /// be shared with other workers) on every completion and on exit.
    pub(crate) fn spawn_with_bell<F>(
        what: &'static str,
        thread_name: String,
        capacity: usize,
        waker: Option<Arc<Waker>>,
        bell: Arc<Bell>,
        mut exec: F,
    ) -> io::Result<Worker<R, O>>
    where
        F: FnMut(&R) -> Result<O, String> + Send + 'static,
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
            what,
        };
        let thread = thread::Builder::new().name(thread_name).spawn(move || {
            let guard = guard;
            while let Ok((token, req)) = rx.recv() {
                // The backend is only touched from this thread; after a caught panic it
                // is used again, which is why backends must tolerate an interrupted call
                // (the filesystem one keeps no state across calls).
                let result = match panic::catch_unwind(AssertUnwindSafe(|| exec(&req))) {
                    Ok(Ok(o)) => Ok(o),
                    Ok(Err(e)) => Err(format!("{what} {}: {e}", req.describe())),
                    Err(payload) => {
                        let msg = panic_text(&*payload);
                        // Dropping the payload runs outside catch_unwind on purpose: a
                        // payload whose drop panics kills the thread, which the guard
                        // turns into failed results.
                        drop(payload);
                        Err(format!("{what} {} panicked: {msg}", req.describe()))
                    }
                };
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
                            warn!("{what} worker: waking the reactor failed: {e}");
                        }
                    }
                }
            }
        })?;
        Ok(Worker {
            what,
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
            let why = match self.stopped {
                Some(Stopped::ShutDown) => "is shut down",
                _ => "worker thread is dead",
            };
            self.ready.push((
                token,
                Err(format!(
                    "{} {}: {} {why}",
                    self.what,
                    req.describe(),
                    self.what
                )),
            ));
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
                self.what,
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
                self.what
            );
            for token in self.outstanding.drain(..) {
                self.ready.push((
                    token,
                    Err(format!(
                        "{}: worker thread died before completing the request",
                        self.what
                    )),
                ));
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
                warn!("{} worker ended with a panic", self.what);
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
                self.what,
                self.spill.len()
            );
        }
        self.tx = None;
    }
}

// ---------------------------------------------------------------------------------------------
// Atomic files, shared with the KVDB.
// ---------------------------------------------------------------------------------------------

/// Temporary file names are unique per process (pid) and per write (a counter), and always
/// 36 bytes long with `-`, so they never look like an entity ID or a KVDB key file.
fn temp_name() -> OsString {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    OsString::from(format!(".tmp-{:010}-{seq:020}", std::process::id()))
}

/// True for names `temp_name` makes.
pub(crate) fn is_temp_name(name: &[u8]) -> bool {
    name.starts_with(b".tmp-")
}

/// Flushes a directory's entries (a created, renamed or linked name) to disk.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `data` to a new temporary file in `dir` and fsyncs it; returns its path. The caller
/// renames or links it into place (and removes it on failure).
pub(crate) fn write_temp(dir: &Path, data: &[u8]) -> io::Result<PathBuf> {
    let path = dir.join(temp_name());
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        f.write_all(data)?;
        f.sync_all()
    };
    match write() {
        Ok(()) => Ok(path),
        Err(e) => {
            let _ = fs::remove_file(&path);
            Err(e)
        }
    }
}

/// Replaces `dir/name` with `data` atomically: temp file, fsync, rename, fsync the directory.
pub(crate) fn write_atomic(dir: &Path, name: &OsStr, data: &[u8]) -> io::Result<()> {
    let tmp = write_temp(dir, data)?;
    if let Err(e) = fs::rename(&tmp, dir.join(name)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

// ---------------------------------------------------------------------------------------------
// Storage.
// ---------------------------------------------------------------------------------------------

/// The result of one storage request.
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

/// A storage engine. Runs on the worker thread only; errors are messages for the caller
/// (the worker prefixes them with the operation).
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

enum StorageReq {
    Save {
        type_name: String,
        eid: EntityId,
        data: Vec<u8>,
    },
    Load {
        type_name: String,
        eid: EntityId,
    },
    Exists {
        type_name: String,
        eid: EntityId,
    },
    List {
        type_name: String,
    },
}

impl Op for StorageReq {
    fn describe(&self) -> String {
        match self {
            StorageReq::Save { type_name, eid, .. } => format!("save {type_name}/{eid}"),
            StorageReq::Load { type_name, eid } => format!("load {type_name}/{eid}"),
            StorageReq::Exists { type_name, eid } => format!("exists {type_name}/{eid}"),
            StorageReq::List { type_name } => format!("list {type_name}"),
        }
    }
}

fn exec_storage<B: StorageBackend>(b: &mut B, req: &StorageReq) -> Result<StorageOutput, String> {
    match req {
        StorageReq::Save {
            type_name,
            eid,
            data,
        } => b.save(type_name, eid, data).map(|()| StorageOutput::Saved),
        StorageReq::Load { type_name, eid } => b.load(type_name, eid).map(StorageOutput::Loaded),
        StorageReq::Exists { type_name, eid } => {
            b.exists(type_name, eid).map(StorageOutput::Exists)
        }
        StorageReq::List { type_name } => b.list(type_name).map(StorageOutput::List),
    }
}

/// Storage workers in a pool made by [`Storage::filesystem`] and [`Storage::open`].
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
/// results come back from [`Storage::take_results`], in submit order per entity.
pub struct Storage {
    workers: Vec<Worker<StorageReq, StorageOutput>>,
    /// Rung by every worker of the pool, for the blocking waits.
    bell: Arc<Bell>,
    /// Per worker, the submit sequence numbers of its requests whose results have not been
    /// taken, in that worker's submit order (which is the order its results come out in).
    seqs: Vec<VecDeque<u64>>,
    next_seq: u64,
    /// Lists waiting for their barrier, oldest first.
    held: VecDeque<HeldList>,
}

impl Storage {
    /// Filesystem storage in `dir` (created if missing), on [`DEFAULT_WORKERS`] workers with
    /// the default queue capacity. `waker` is woken whenever results become available;
    /// `None` for use without a reactor (then poll with [`Storage::wait_results`]).
    pub fn filesystem(dir: PathBuf, waker: Option<Arc<Waker>>) -> io::Result<Storage> {
        fs::create_dir_all(&dir)?;
        Storage::with_backend_pool(
            || FilesystemStorage::new(dir.clone()),
            waker,
            DEFAULT_QUEUE_CAPACITY,
            DEFAULT_WORKERS,
        )
    }

    /// Storage as configured by `[storage]`. Only `filesystem` is built; other types are
    /// rejected by the config parser already and give `Unsupported` here.
    pub fn open(cfg: &StoreConfig, waker: Option<Arc<Waker>>) -> io::Result<Storage> {
        match cfg.kind.as_str() {
            "filesystem" => Storage::filesystem(cfg.directory.clone(), waker),
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
    ) -> io::Result<Storage> {
        let mut backend = Some(backend);
        Storage::with_backend_pool(
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
    /// worker only lists entities it was saving, see [`Storage::list`]).
    pub fn with_backend_pool<B, F>(
        mut make_backend: F,
        waker: Option<Arc<Waker>>,
        queue_capacity: usize,
        workers: usize,
    ) -> io::Result<Storage>
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
                "storage",
                name,
                queue_capacity,
                waker.clone(),
                Arc::clone(&bell),
                move |req| exec_storage(&mut backend, req),
            )?);
        }
        Ok(Storage {
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

    fn submit_to(&mut self, i: usize, seq: u64, token: u64, req: StorageReq) {
        self.seqs[i].push_back(seq);
        self.workers[i].submit(token, req);
    }

    fn submit_entity(&mut self, token: u64, eid: EntityId, req: StorageReq) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let i = worker_for(&eid, self.workers.len());
        self.submit_to(i, seq, token, req);
    }

    /// Saves `data` as the entity's state; completes with [`StorageOutput::Saved`] once the
    /// data is durable.
    pub fn save(&mut self, token: u64, type_name: &str, eid: EntityId, data: Vec<u8>) {
        let type_name = type_name.to_string();
        self.submit_entity(
            token,
            eid,
            StorageReq::Save {
                type_name,
                eid,
                data,
            },
        );
    }

    /// Loads the entity's state; completes with [`StorageOutput::Loaded`].
    pub fn load(&mut self, token: u64, type_name: &str, eid: EntityId) {
        let type_name = type_name.to_string();
        self.submit_entity(token, eid, StorageReq::Load { type_name, eid });
    }

    /// Checks whether the entity was saved; completes with [`StorageOutput::Exists`].
    pub fn exists(&mut self, token: u64, type_name: &str, eid: EntityId) {
        let type_name = type_name.to_string();
        self.submit_entity(token, eid, StorageReq::Exists { type_name, eid });
    }

    /// Lists saved entities of a type; completes with [`StorageOutput::List`]. The listing
    /// includes every save submitted before it (it is held until all of them, on every
    /// worker, have finished) and may include later ones.
    pub fn list(&mut self, token: u64, type_name: &str) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let after = self.workers.iter().map(|w| w.submitted()).collect();
        self.held.push_back(HeldList {
            seq,
            token,
            type_name: type_name.to_string(),
            after,
        });
        self.release_lists();
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
            let req = StorageReq::List {
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

/// `[storage] type = filesystem`: `<dir>/<TypeName>/<EntityID>` files written atomically
/// (see the module docs). Safe to share between processes.
pub struct FilesystemStorage {
    dir: PathBuf,
    /// Type directories known to exist, so saves skip the check.
    known_dirs: HashSet<String>,
}

/// Checks a name used as one path component.
fn check_component(what: &str, name: &[u8]) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("invalid {what}: empty"));
    }
    if name == b"." || name == b".." {
        return Err(format!(
            "invalid {what} '{}'",
            String::from_utf8_lossy(name)
        ));
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(format!(
            "invalid {what} {:?}: contains '/' or NUL",
            String::from_utf8_lossy(name)
        ));
    }
    if name.len() > 255 {
        return Err(format!("invalid {what}: {} bytes is too long", name.len()));
    }
    Ok(())
}

impl FilesystemStorage {
    /// Storage rooted at `dir`, which is created (with parents) if missing.
    pub fn new(dir: PathBuf) -> io::Result<FilesystemStorage> {
        fs::create_dir_all(&dir)?;
        Ok(FilesystemStorage {
            dir,
            known_dirs: HashSet::new(),
        })
    }

    fn type_dir(&self, type_name: &str) -> Result<PathBuf, String> {
        check_component("type name", type_name.as_bytes())?;
        Ok(self.dir.join(type_name))
    }

    fn entity_path(&self, type_name: &str, eid: &EntityId) -> Result<PathBuf, String> {
        let dir = self.type_dir(type_name)?;
        check_component("entity ID", eid.as_bytes())?;
        Ok(dir.join(OsStr::from_bytes(eid.as_bytes())))
    }

    /// Creates the type directory on first use and makes its name durable.
    fn ensure_type_dir(&mut self, type_name: &str) -> io::Result<PathBuf> {
        let dir = self.dir.join(type_name);
        if !self.known_dirs.contains(type_name) {
            match fs::create_dir(&dir) {
                // Made earlier, or just now by another worker or process, which may not have
                // made its name durable yet: a save reported durable must not sit in a
                // directory a crash could lose, so sync the parent either way (once per type
                // per worker).
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            sync_dir(&self.dir)?;
            self.known_dirs.insert(type_name.to_string());
        }
        Ok(dir)
    }
}

impl StorageBackend for FilesystemStorage {
    fn save(&mut self, type_name: &str, eid: &EntityId, data: &[u8]) -> Result<(), String> {
        self.entity_path(type_name, eid)?;
        let name = OsStr::from_bytes(eid.as_bytes());
        let dir = self.ensure_type_dir(type_name).map_err(|e| e.to_string())?;
        match write_atomic(&dir, name, data) {
            // The directory was removed behind our back (an operator cleaning up): make it
            // again rather than failing every later save of the type.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.known_dirs.remove(type_name);
                let dir = self.ensure_type_dir(type_name).map_err(|e| e.to_string())?;
                write_atomic(&dir, name, data).map_err(|e| e.to_string())
            }
            r => r.map_err(|e| e.to_string()),
        }
    }

    fn load(&mut self, type_name: &str, eid: &EntityId) -> Result<Option<Vec<u8>>, String> {
        match fs::read(self.entity_path(type_name, eid)?) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    fn exists(&mut self, type_name: &str, eid: &EntityId) -> Result<bool, String> {
        match fs::metadata(self.entity_path(type_name, eid)?) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    fn list(&mut self, type_name: &str) -> Result<Vec<EntityId>, String> {
        let dir = self.type_dir(type_name)?;
        let entries = match fs::read_dir(&dir) {
            Ok(it) => it,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.to_string()),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| e.to_string())?;
            let name = entry.file_name().into_vec();
            // Entity files are exactly ID_LEN bytes; temporary files are longer.
            if name.len() != ID_LEN || is_temp_name(&name) {
                continue;
            }
            if let Some(eid) = EntityId::from_slice(&name) {
                ids.push(eid);
            }
        }
        ids.sort();
        Ok(ids)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

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
            let _ = fs::remove_dir_all(&p);
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const T: Duration = Duration::from_secs(10);

    fn eid(s: &str) -> EntityId {
        EntityId::parse(s).expect("16 bytes")
    }

    /// Drains and returns every result.
    fn all(s: &mut Storage) -> Vec<Completion<StorageOutput>> {
        s.drain(T).expect("drained");
        s.take_results()
    }

    #[test]
    fn round_trip() {
        let d = TempDir::new("store-rt");
        let mut s = Storage::filesystem(d.0.clone(), None).unwrap();
        let a = eid("AAAAAAAAAAAAAAAA");
        let b = eid("BBBBBBBBBBBBBBB.");
        s.save(1, "Avatar", a, b"alpha".to_vec());
        s.save(2, "Avatar", b, Vec::new());
        s.load(3, "Avatar", a);
        s.load(4, "Avatar", b);
        s.exists(5, "Avatar", a);
        s.list(6, "Avatar");
        s.load(7, "Avatar", eid("CCCCCCCCCCCCCCCC"));
        s.exists(8, "Avatar", eid("CCCCCCCCCCCCCCCC"));
        s.load(9, "Monster", a);
        s.list(10, "Monster");
        let r = all(&mut s);
        assert_eq!(
            r,
            vec![
                (1, Ok(StorageOutput::Saved)),
                (2, Ok(StorageOutput::Saved)),
                (3, Ok(StorageOutput::Loaded(Some(b"alpha".to_vec())))),
                (4, Ok(StorageOutput::Loaded(Some(Vec::new())))),
                (5, Ok(StorageOutput::Exists(true))),
                (6, Ok(StorageOutput::List(vec![a, b]))),
                (7, Ok(StorageOutput::Loaded(None))),
                (8, Ok(StorageOutput::Exists(false))),
                (9, Ok(StorageOutput::Loaded(None))),
                (10, Ok(StorageOutput::List(vec![]))),
            ]
        );
        assert_eq!(s.pending(), 0);
        // Atomic writes leave no temporary files behind.
        let names: Vec<_> = fs::read_dir(d.0.join("Avatar"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.iter().all(|n| !is_temp_name(n.as_bytes())));
        s.shutdown(T).unwrap();
    }

    #[test]
    fn restart_finds_everything() {
        let d = TempDir::new("store-restart");
        let ids: Vec<EntityId> = (0..20).map(|i| eid(&format!("Entity{i:010}"))).collect();
        {
            let mut s = Storage::filesystem(d.0.clone(), None).unwrap();
            for (i, e) in ids.iter().enumerate() {
                s.save(i as u64, "Player", *e, format!("data{i}").into_bytes());
            }
            // Overwrite one: the later save wins.
            s.save(99, "Player", ids[3], b"newer".to_vec());
            s.shutdown(T).unwrap();
            assert!(s.take_results().iter().all(|(_, r)| r.is_ok()));
        }
        let mut s = Storage::filesystem(d.0.clone(), None).unwrap();
        s.list(0, "Player");
        for (i, e) in ids.iter().enumerate() {
            s.load(i as u64 + 1, "Player", *e);
        }
        let r = all(&mut s);
        assert_eq!(r[0], (0, Ok(StorageOutput::List(ids.clone()))));
        for (i, (tok, out)) in r[1..].iter().enumerate() {
            assert_eq!(*tok, i as u64 + 1);
            let want = if i == 3 {
                b"newer".to_vec()
            } else {
                format!("data{i}").into_bytes()
            };
            assert_eq!(*out, Ok(StorageOutput::Loaded(Some(want))));
        }
    }

    #[test]
    fn submit_order_and_save_then_load() {
        let d = TempDir::new("store-order");
        // A tiny channel forces spilling, which must keep the order too.
        let fs_b = FilesystemStorage::new(d.0.clone()).unwrap();
        let mut s = Storage::with_backend(fs_b, None, 2).unwrap();
        let e = eid("OrderedEntity123");
        let mut want = Vec::new();
        for i in 0..200u64 {
            let data = format!("v{i}").into_bytes();
            s.save(2 * i, "Thing", e, data.clone());
            s.load(2 * i + 1, "Thing", e);
            want.push((2 * i, Ok(StorageOutput::Saved)));
            want.push((2 * i + 1, Ok(StorageOutput::Loaded(Some(data)))));
        }
        assert!(s.spilled() > 0, "the small channel should have spilled");
        let mut got = Vec::new();
        while got.len() < want.len() {
            let r = s.wait_results(T);
            assert!(!r.is_empty(), "timed out");
            got.extend(r);
        }
        assert_eq!(got, want);
        assert_eq!(s.pending(), 0);
        assert_eq!(s.spill_len(), 0);
    }

    #[test]
    fn type_dir_removed_behind_our_back_is_recreated() {
        let d = TempDir::new("store-rmdir");
        let mut s = Storage::filesystem(d.0.clone(), None).unwrap();
        let e = eid("AAAAAAAAAAAAAAAA");
        s.save(1, "Avatar", e, vec![1]);
        s.drain(T).unwrap();
        fs::remove_dir_all(d.0.join("Avatar")).unwrap();
        s.save(2, "Avatar", e, vec![2]);
        s.load(3, "Avatar", e);
        let r = all(&mut s);
        assert_eq!(r[1], (2, Ok(StorageOutput::Saved)));
        assert_eq!(r[2], (3, Ok(StorageOutput::Loaded(Some(vec![2])))));
    }

    #[test]
    fn invalid_names_are_errors() {
        let d = TempDir::new("store-invalid");
        let mut s = Storage::filesystem(d.0.clone(), None).unwrap();
        let ok = eid("AAAAAAAAAAAAAAAA");
        s.save(1, "", ok, vec![1]);
        s.save(2, "..", ok, vec![1]);
        s.save(3, "a/b", ok, vec![1]);
        s.save(4, "a\0b", ok, vec![1]);
        s.save(5, "Avatar", eid("AAAAAAA/AAAAAAAA"), vec![1]);
        s.save(6, "Avatar", EntityId::NONE, vec![1]);
        s.list(7, "..");
        let r = all(&mut s);
        assert_eq!(r.len(), 7);
        for (t, out) in &r {
            let e = out.as_ref().expect_err("must fail");
            assert!(e.contains("invalid"), "{t}: {e}");
        }
        assert!(r[0].1.as_ref().unwrap_err().starts_with("storage save /"));
        // Nothing escaped the directory.
        assert!(!d.0.parent().unwrap().join("AAAAAAAAAAAAAAAA").exists());
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
        let mut s = Storage::with_backend(Faulty, None, 4).unwrap();
        let e = eid("PanickyEntity123");
        s.save(1, "Avatar", e, vec![]);
        s.load(2, "Avatar", e);
        s.exists(3, "Avatar", e);
        s.list(4, "Avatar");
        let r = all(&mut s);
        assert_eq!(r[0], (1, Ok(StorageOutput::Saved)));
        assert_eq!(r[1].0, 2);
        let msg = r[1].1.as_ref().unwrap_err();
        assert!(
            msg.contains("load Avatar/PanickyEntity123") && msg.contains("disk on fire"),
            "{msg}"
        );
        assert_eq!(
            r[2],
            (
                3,
                Err("storage exists Avatar/PanickyEntity123: no such thing".to_string())
            )
        );
        assert_eq!(r[3], (4, Ok(StorageOutput::List(vec![]))));
    }

    #[test]
    fn dead_worker_fails_pending_requests() {
        let mut s = Storage::with_backend(Faulty, None, 1).unwrap();
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
        for (t, out) in &r[1..] {
            assert!(out.is_err(), "token {t} should have failed");
        }
        assert_eq!(s.pending(), 0);
        // Later requests fail at once.
        s.load(10, "Avatar", e);
        let r = s.take_results();
        assert_eq!(r.len(), 1);
        assert!(r[0].1.as_ref().unwrap_err().contains("dead"));
    }

    #[test]
    fn waker_is_woken_with_results() {
        let d = TempDir::new("store-wake");
        let mut poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(7)).unwrap());
        let mut s = Storage::filesystem(d.0.clone(), Some(waker)).unwrap();
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
        let mut s = Storage::filesystem(d.0.clone(), None).unwrap();
        s.save(1, "Avatar", eid("AAAAAAAAAAAAAAAA"), vec![7]);
        s.shutdown(T).unwrap();
        s.load(2, "Avatar", eid("AAAAAAAAAAAAAAAA"));
        let r = s.take_results();
        assert_eq!(r[0], (1, Ok(StorageOutput::Saved)));
        assert_eq!(r[1].0, 2);
        assert!(r[1].1.as_ref().unwrap_err().contains("shut down"));
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

    fn slow_pool(delay: Duration, capacity: usize) -> (Slow, Storage) {
        let slow = Slow {
            delay,
            ..Slow::default()
        };
        let b = slow.clone();
        let s = Storage::with_backend_pool(move || Ok(b.clone()), None, capacity, 4).unwrap();
        (slow, s)
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
            Storage::with_backend_pool(|| FilesystemStorage::new(dir.clone()), None, 2, 4).unwrap();
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
        assert!(r[0].1.as_ref().unwrap_err().contains("dead"), "{r:?}");
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

    /// Saves per second through `Storage::filesystem`: 2000 distinct Avatars of 300 bytes,
    /// submitted at once, timed until every result is back. Run with
    /// `cargo test --release -p goworld-game storage -- --ignored --nocapture`;
    /// `STORAGE_BENCH_WORKERS=1` measures a single worker.
    #[test]
    #[ignore]
    fn bench_storage_saves() {
        const N: u64 = 2000;
        let workers = std::env::var("STORAGE_BENCH_WORKERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_WORKERS);
        let d = TempDir::new("store-bench");
        let dir = d.0.clone();
        let mut s = Storage::with_backend_pool(
            || FilesystemStorage::new(dir.clone()),
            None,
            DEFAULT_QUEUE_CAPACITY,
            workers,
        )
        .unwrap();
        let data = vec![0x5a_u8; 300];
        let start = Instant::now();
        for i in 0..N {
            s.save(i, "Avatar", eid(&format!("Bench{i:011}")), data.clone());
        }
        let mut done = 0u64;
        while done < N {
            let r = s.wait_results(Duration::from_secs(120));
            assert!(!r.is_empty(), "timed out");
            assert!(r.iter().all(|(_, o)| *o == Ok(StorageOutput::Saved)));
            done += r.len() as u64;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "storage bench: {workers} workers, {N} saves of 300 B in {secs:.2} s = {:.0} saves/s",
            N as f64 / secs
        );
        s.shutdown(T).unwrap();
    }
}
