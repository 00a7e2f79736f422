//! Calls that are refused or fail, logged so that no peer can flood the log.
//!
//! A client's refused calls (a method it may not call, one that does not exist, arguments
//! that do not fit) are abuse or a broken client: each client gets its first few logged in
//! full ([`PeerLog`]), the rest counted by kind and summarised in one line when the client
//! goes from this game (it left, was kicked, or its owner was destroyed or migrated away).
//! The refusals that count toward the limit disconnect it there. Varying the method name or
//! the arguments changes nothing: the budget is per client, not per method. Records of
//! clients whose player lives on another game (they call entities here but never leave
//! here) are summarised and dropped by a periodic sweep, so churn does not leak.
//!
//! A server's failing call (another entity's) is an engine or game-code bug, not abuse: it
//! is logged once per type and method (and kind of failure), so a bug in a hot path cannot
//! flood the log either; the set of reported keys is bounded too.

use std::collections::HashSet;
use std::time::Duration;

use goworld_common::id::{ClientId, FastMap};
use goworld_common::peerlog::PeerLog;
use log::warn;

/// How often the records of clients not bound to an entity here are summarised and dropped.
pub(crate) const REFUSAL_SWEEP: Duration = Duration::from_secs(60);
/// Most server call problems reported by key; later new keys are only counted.
const SERVER_KEYS_MAX: usize = 4096;

/// One client's refused calls.
#[derive(Debug, Default)]
struct ClientRecord {
    /// Refusals that count toward the limit.
    refused: u32,
    log: PeerLog,
}

/// The game's record of refused client calls and failing server calls.
#[derive(Debug)]
pub(crate) struct Refusals {
    /// Counting refusals after which a client is disconnected (0: never).
    pub(crate) limit: u32,
    clients: FastMap<ClientId, ClientRecord>,
    /// A sweep timer is armed (while any client record exists).
    pub(crate) sweep_armed: bool,
    /// Server call problems already reported, by key.
    server_logged: HashSet<String>,
    /// Server call problems not reported: repeats of a reported key, or new keys past
    /// [`SERVER_KEYS_MAX`].
    server_unlogged: u64,
}

impl Refusals {
    pub(crate) fn new(limit: u32) -> Refusals {
        Refusals {
            limit,
            clients: FastMap::default(),
            sweep_armed: false,
            server_logged: HashSet::new(),
            server_unlogged: 0,
        }
    }

    /// A call from client `cid` was refused or dropped, for reason `kind`; `counts` if it
    /// counts toward the limit. `line` is logged while the client's budget lasts. True when
    /// this refusal reaches the limit (the client is to be disconnected, once).
    pub(crate) fn client(
        &mut self,
        cid: ClientId,
        kind: &str,
        counts: bool,
        line: impl FnOnce() -> String,
    ) -> bool {
        let rec = self.clients.entry(cid).or_default();
        if counts {
            rec.refused = rec.refused.saturating_add(1);
        }
        if rec.log.note(kind) {
            warn!("{}", line());
        }
        counts && self.limit > 0 && rec.refused == self.limit
    }

    /// Client `cid` is gone from this game: one line for what was counted and not logged,
    /// and its record goes.
    pub(crate) fn client_gone(&mut self, cid: ClientId) {
        let Some(mut rec) = self.clients.remove(&cid) else {
            return;
        };
        if let Some(summary) = rec.log.take_summary() {
            warn!("client {cid} is gone; of its refused calls, {summary}");
        }
    }

    /// True while any client record is kept.
    pub(crate) fn has_clients(&self) -> bool {
        !self.clients.is_empty()
    }

    /// Summarises and drops the records of clients not in `bound` (no entity here has them:
    /// their player lives on another game, or they left unnoticed). True if records remain.
    pub(crate) fn sweep(&mut self, bound: &HashSet<ClientId>) -> bool {
        let gone: Vec<ClientId> = (self.clients.keys())
            .filter(|c| !bound.contains(c))
            .copied()
            .collect();
        for cid in gone {
            self.client_gone(cid);
        }
        self.has_clients()
    }

    /// A call from a server failed (`key` names the type, method and failure): true the first
    /// time, so the caller logs it once; after that, and past [`SERVER_KEYS_MAX`] keys, it is
    /// only counted.
    pub(crate) fn server_once(&mut self, key: String) -> bool {
        if self.server_logged.len() < SERVER_KEYS_MAX && self.server_logged.insert(key) {
            return true;
        }
        self.server_unlogged += 1;
        false
    }

    /// Server call problems counted and not logged.
    pub(crate) fn server_unlogged(&self) -> u64 {
        self.server_unlogged
    }
}
