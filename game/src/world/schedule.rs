//! The world's part that owns time-driven work: one timer queue for everything that runs at
//! a time (entity timers, periodic saves, service checks, shard claims, global timers, fence
//! timeouts, refusal sweeps, the crontab's minute) and the crontab's entries.
//!
//! Invariant: every deadline of the game is in this one queue (plus the position-sync
//! deadline the spaces part keeps), so [`World::next_deadline`](super::World::next_deadline)
//! is the reactor's only timeout and timers of equal deadline fire in the order they were
//! added. The schedule only stores jobs; what a job does is the world's business.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use goworld_common::id::EntityId;
use goworld_common::proto::Args;
use goworld_common::timers::{TimerId as QueueId, Timers};

use crate::api::{GlobalFn, TimerId};
use crate::crontab::{self, CronId, CronSpec, Crontab};

/// What a timer does when it fires.
pub(crate) enum TimerJob {
    /// An entity timer: call `method` on `eid`, and re-arm if it repeats.
    Call {
        eid: EntityId,
        id: TimerId,
        repeat: Option<Duration>,
        method: String,
        args: Args,
    },
    /// The periodic save of a persistent entity.
    Save(EntityId),
    /// Check every service now (a registry change, debounced, or the deployment got ready).
    CheckServices,
    /// The minute's service check; re-arms itself.
    ServiceTick,
    /// A shard claim's random delay is over.
    ClaimShard { name: String, shard: u32 },
    /// The minute's crontab check, at unix second `at`.
    Cron { at: i64 },
    /// Summarise and drop the refusal records of clients not bound here; re-arms itself
    /// while records remain.
    RefusalSweep,
    /// A global timer or callback.
    Global {
        f: GlobalFn,
        repeat: Option<Duration>,
    },
    /// A fence sent to an entity that migrated in has not come back in time (a dispatcher
    /// lost it): the calls waiting for it run anyway.
    FenceTimeout { id: EntityId, token: u64 },
}

/// A crontab entry's code, shared so that an entry can run while the crontab is borrowed.
pub(crate) type CronFn = Rc<RefCell<GlobalFn>>;

/// The timer queue and the crontab.
pub(crate) struct Schedule {
    queue: Timers<TimerJob>,
    crontab: Crontab<CronFn>,
    /// A [`TimerJob::Cron`] is in the queue (exactly while the crontab has entries).
    cron_armed: bool,
}

impl Schedule {
    pub(crate) fn new() -> Schedule {
        Schedule {
            queue: Timers::new(),
            crontab: Crontab::new(),
            cron_armed: false,
        }
    }

    /// Queues `job` to run at `at`.
    pub(crate) fn add(&mut self, at: Instant, job: TimerJob) -> QueueId {
        self.queue.add(at, job)
    }

    /// Takes a queued job out; `None` if it already ran or was cancelled.
    pub(crate) fn cancel(&mut self, q: QueueId) -> Option<TimerJob> {
        self.queue.cancel(q)
    }

    /// A queued job and its deadline.
    pub(crate) fn get(&self, q: QueueId) -> Option<(Instant, &TimerJob)> {
        self.queue.get(q)
    }

    /// Number of queued jobs.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// The earliest deadline queued.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.queue.next_deadline()
    }

    /// The next job due at `now`, by deadline then insertion order.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(QueueId, TimerJob)> {
        self.queue.pop_due(now)
    }

    /// Registers a crontab entry, checked once a minute at second 2 (local time); `unix` is
    /// the wall clock at `now`.
    pub(crate) fn register_cron(
        &mut self,
        now: Instant,
        unix: i64,
        spec: CronSpec,
        f: GlobalFn,
    ) -> CronId {
        let id = self.crontab.register(spec, Rc::new(RefCell::new(f)));
        if !std::mem::replace(&mut self.cron_armed, true) {
            self.arm_cron(now, unix);
        }
        id
    }

    /// Removes a crontab entry; false if there was none.
    pub(crate) fn unregister_cron(&mut self, id: CronId) -> bool {
        self.crontab.unregister(id)
    }

    /// The entries due at the minute check of unix second `at`.
    pub(crate) fn cron_due(&mut self, at: i64) -> Vec<CronId> {
        self.crontab.due_ids(&crontab::local_time(at))
    }

    /// Entry `id`'s code, if it is still registered (an earlier entry of the same minute may
    /// have removed it).
    pub(crate) fn cron_entry(&self, id: CronId) -> Option<CronFn> {
        self.crontab.get(id).cloned()
    }

    /// After the check of `at`: arms the next one, or disarms if no entry is left.
    pub(crate) fn cron_checked(&mut self, now: Instant, at: i64) {
        if self.crontab.is_empty() {
            self.cron_armed = false;
        } else {
            self.arm_cron(now, at);
        }
    }

    fn arm_cron(&mut self, now: Instant, unix: i64) {
        let at = crontab::next_check(unix);
        let wait = Duration::from_secs((at - unix).max(0) as u64);
        self.queue.add(now + wait, TimerJob::Cron { at });
    }
}
