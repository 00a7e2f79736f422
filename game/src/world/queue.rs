//! The world's part that owns work run later, in order: calls between local entities and
//! local space enters (GoWorld's `post` queue), game code's posted work, the fences that hold
//! calls to an entity that just migrated in, and the reusable action lists.
//!
//! Invariants:
//! - Calls made on this game to one entity run in the order they were made: queued calls run
//!   first in, first out; calls held by a fence go back to the front of the queue, in order,
//!   when it lifts.
//! - One loop drains each queue ([`Work::start_local`] / [`Work::start_posted`]): work that
//!   ends in another drain returns at once and leaves the rest to the loop below it, so the
//!   stack does not grow with the queue.

use std::collections::VecDeque;
use std::rc::Rc;

use goworld_common::id::{EntityId, FastMap};
use goworld_common::proto::Args;
use goworld_common::timers::TimerId as QueueId;

use crate::api::{Action, PostFn, Vec3};

/// An action list that grew past this many entries is freed instead of kept for reuse. Game
/// code that calls every subscriber of a service (thousands) in one method fills one this
/// big; growing it anew each time (copying it at every doubling, then freeing a block big
/// enough to make the allocator consolidate) was a tenth of a busy game's time. Lists are
/// kept one per level of nesting in use, so this bounds what stays allocated to a few MB.
const ACTION_LIST_KEEP: usize = 16 << 10;

/// A call to a local entity, run after the current handler.
pub(crate) struct LocalCall {
    pub(crate) to: EntityId,
    pub(crate) body: CallBody,
}

/// A queued call's method and arguments: its own, or shared by every target of one call to
/// many entities (a service publishing to thousands of subscribers builds them once).
pub(crate) enum CallBody {
    Own(String, Args),
    Shared(Rc<(String, Args)>),
}

impl CallBody {
    pub(crate) fn method(&self) -> &str {
        match self {
            CallBody::Own(m, _) => m,
            CallBody::Shared(s) => &s.0,
        }
    }

    pub(crate) fn args(&self) -> &Args {
        match self {
            CallBody::Own(_, a) => a,
            CallBody::Shared(s) => &s.1,
        }
    }

    /// The method and arguments as a message needs them (copied if shared).
    pub(crate) fn into_parts(self) -> (String, Args) {
        match self {
            CallBody::Own(m, a) => (m, a),
            CallBody::Shared(s) => Rc::unwrap_or_clone(s),
        }
    }
}

/// Work run after the current handler, in order (GoWorld's `post` queue): local calls and
/// local space enters.
pub(crate) enum Deferred {
    Call(LocalCall),
    Enter {
        id: EntityId,
        space: EntityId,
        pos: Vec3,
    },
}

/// Work run after the current event, in order: game code's posts, and this game's share of
/// a call to every nil space.
pub(crate) enum Posted {
    Game(PostFn),
    NilSpaceCall { method: String, args: Args },
}

/// A fence: its token, the calls made here that wait for it, and its timeout's timer.
struct Fence {
    token: u64,
    waiting: VecDeque<LocalCall>,
    timeout: QueueId,
}

/// The queues of work run later.
#[derive(Default)]
pub(crate) struct Work {
    local: VecDeque<Deferred>,
    posted: VecDeque<Posted>,
    draining_local: bool,
    draining_posted: bool,
    /// Empty action lists to reuse (one per level of nesting in use at most).
    action_lists: Vec<Vec<Action>>,
    /// Entities that arrived by migration while calls this game sent them through their
    /// dispatcher may still be on the way: calls made here wait, in order, until the fence
    /// (token) sent after those comes back (see `space::FENCE_METHOD`).
    fenced: FastMap<EntityId, Fence>,
    next_fence: u64,
}

impl Work {
    /// Queues a call to local entity `to`.
    pub(crate) fn push_call(&mut self, to: EntityId, body: CallBody) {
        self.local.push_back(Deferred::Call(LocalCall { to, body }));
    }

    /// Queues a local space enter.
    pub(crate) fn push_enter(&mut self, id: EntityId, space: EntityId, pos: Vec3) {
        self.local.push_back(Deferred::Enter { id, space, pos });
    }

    /// Queues posted work.
    pub(crate) fn post(&mut self, p: Posted) {
        self.posted.push_back(p);
    }

    /// Starts draining the local queue: false if a loop below is draining it already.
    pub(crate) fn start_local(&mut self) -> bool {
        !std::mem::replace(&mut self.draining_local, true)
    }

    /// The next local work, or `None` (and the drain is over).
    pub(crate) fn next_local(&mut self) -> Option<Deferred> {
        let d = self.local.pop_front();
        if d.is_none() {
            self.draining_local = false;
        }
        d
    }

    /// Starts draining posted work: false if a loop below is draining it already.
    pub(crate) fn start_posted(&mut self) -> bool {
        !std::mem::replace(&mut self.draining_posted, true)
    }

    /// The next posted work, or `None` (and the drain is over).
    pub(crate) fn next_posted(&mut self) -> Option<Posted> {
        let p = self.posted.pop_front();
        if p.is_none() {
            self.draining_posted = false;
        }
        p
    }

    /// An empty action list (reused: a handler that queues one action allocates nothing).
    pub(crate) fn action_list(&mut self) -> Vec<Action> {
        self.action_lists.pop().unwrap_or_default()
    }

    /// Gives back an emptied action list for reuse.
    pub(crate) fn return_action_list(&mut self, list: Vec<Action>) {
        debug_assert!(list.is_empty());
        if list.capacity() <= ACTION_LIST_KEEP {
            self.action_lists.push(list);
        }
    }

    /// Fences `id`: calls made here wait until [`Work::lift_fence`] with the returned token.
    /// `timeout` is the timer that lifts it anyway.
    pub(crate) fn fence(&mut self, id: EntityId, timeout: impl FnOnce(u64) -> QueueId) -> u64 {
        self.next_fence += 1;
        let token = self.next_fence;
        let fence = Fence {
            token,
            waiting: VecDeque::new(),
            timeout: timeout(token),
        };
        self.fenced.insert(id, fence);
        token
    }

    /// The token of `id`'s fence, if it is fenced.
    pub(crate) fn fence_token(&self, id: &EntityId) -> Option<u64> {
        self.fenced.get(id).map(|f| f.token)
    }

    /// The fenced entities.
    pub(crate) fn fenced(&self) -> Vec<EntityId> {
        self.fenced.keys().copied().collect()
    }

    /// Holds a call to `to` if `to` is fenced; gives it back otherwise.
    pub(crate) fn hold_if_fenced(&mut self, to: EntityId, body: CallBody) -> Option<CallBody> {
        match self.fenced.get_mut(&to) {
            Some(f) => {
                f.waiting.push_back(LocalCall { to, body });
                None
            }
            None => Some(body),
        }
    }

    /// Lifts `id`'s fence: the calls that waited go to the front of the queue, in order.
    /// Returns the fence's timeout timer to cancel, if it was fenced.
    pub(crate) fn lift_fence(&mut self, id: &EntityId) -> Option<QueueId> {
        let f = self.fenced.remove(id)?;
        for (i, c) in f.waiting.into_iter().enumerate() {
            self.local.insert(i, Deferred::Call(c));
        }
        Some(f.timeout)
    }
}
