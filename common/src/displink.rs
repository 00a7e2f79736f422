//! The game's and the gate's links to every dispatcher.
//!
//! Every game and gate dials every dispatcher (reference §1.2). A link is *ready* once its
//! handshake is acknowledged (a game: SET_GAME_ID_ACK; a gate: right after SET_GATE_ID, which
//! GoWorld does not acknowledge). What the component sends to a dispatcher that is not ready
//! (down, reconnecting, or mid-handshake) is queued, bounded and counted, and goes out after
//! the new handshake, never before it. Pure logic: the reactor's [`Io`] does the sending.

use std::collections::VecDeque;

use log::{info, warn};

use crate::id::{dispatcher_for_entity, dispatcher_for_gate, dispatcher_for_service, EntityId};
use crate::reactor::{ConnId, Io};

/// Most packets queued for one dispatcher while it is unreachable.
pub const QUEUE_LIMIT: usize = 1_000_000;

#[derive(Debug, Default)]
struct Link {
    conn: Option<ConnId>,
    ready: bool,
    /// Has this link ever completed a handshake (GoWorld's `isReconnect`).
    was_ready: bool,
    queue: VecDeque<Vec<u8>>,
    dropped: u64,
}

/// Links to dispatchers 1..=N, indexed by dispatcher ID.
#[derive(Debug)]
pub struct DispatcherLinks {
    links: Vec<Link>,
    owner: String,
    /// Where [`DispatcherLinks::send_msg_by_entity`] encodes, reused so a message costs no
    /// allocation of its own.
    scratch: Vec<u8>,
}

/// A scratch buffer that grew past this (one huge message) is not kept.
const SCRATCH_KEEP: usize = 64 << 10;

impl DispatcherLinks {
    /// Links to `n` dispatchers for the component named `owner` (for log lines).
    pub fn new(n: u16, owner: &str) -> DispatcherLinks {
        DispatcherLinks {
            links: (0..n.max(1)).map(|_| Link::default()).collect(),
            owner: owner.to_string(),
            scratch: Vec::new(),
        }
    }

    /// Number of dispatchers.
    pub fn count(&self) -> u16 {
        self.links.len() as u16
    }

    /// The dispatcher ID whose link is `conn`, if any.
    pub fn dispatcher_of(&self, conn: ConnId) -> Option<u16> {
        self.links
            .iter()
            .position(|l| l.conn == Some(conn))
            .map(|i| i as u16 + 1)
    }

    /// Dispatcher `disp_id` connected on `conn`; the caller sends its handshake next.
    /// Returns whether this is a reconnect (a handshake completed on an earlier connection).
    pub fn opened(&mut self, disp_id: u16, conn: ConnId) -> bool {
        let l = &mut self.links[usize::from(disp_id - 1)];
        l.conn = Some(conn);
        l.ready = false;
        l.was_ready
    }

    /// The handshake on dispatcher `disp_id` completed: flush what was queued, in order.
    pub fn ready(&mut self, io: &mut dyn Io, disp_id: u16) {
        let owner = &self.owner;
        let l = &mut self.links[usize::from(disp_id - 1)];
        let Some(conn) = l.conn else { return };
        l.ready = true;
        l.was_ready = true;
        if !l.queue.is_empty() {
            info!(
                "{owner}: dispatcher{disp_id} ready; sending {} queued packets",
                l.queue.len()
            );
        }
        for p in l.queue.drain(..) {
            io.send(conn, &p);
        }
        if l.dropped > 0 {
            warn!(
                "{owner}: {} packets for dispatcher{disp_id} were over the queue limit of {QUEUE_LIMIT} while it was down and were not sent",
                l.dropped
            );
            l.dropped = 0;
        }
    }

    /// The link `conn` closed. Returns the dispatcher ID it belonged to.
    pub fn closed(&mut self, conn: ConnId) -> Option<u16> {
        let d = self.dispatcher_of(conn)?;
        let l = &mut self.links[usize::from(d - 1)];
        l.conn = None;
        l.ready = false;
        Some(d)
    }

    /// True when dispatcher `disp_id`'s handshake is complete on its current connection.
    pub fn is_ready(&self, disp_id: u16) -> bool {
        self.links[usize::from(disp_id - 1)].ready
    }

    /// True when every dispatcher's handshake is complete.
    pub fn all_ready(&self) -> bool {
        self.links.iter().all(|l| l.ready)
    }

    /// Packets waiting for dispatcher `disp_id`.
    pub fn queued(&self, disp_id: u16) -> usize {
        self.links[usize::from(disp_id - 1)].queue.len()
    }

    /// Sends to dispatcher `disp_id` now if it is ready, else queues.
    pub fn send(&mut self, io: &mut dyn Io, disp_id: u16, payload: &[u8]) {
        self.send2(io, disp_id, payload, &[]);
    }

    /// Like [`send`](Self::send) with `tail` appended to the payload.
    pub fn send2(&mut self, io: &mut dyn Io, disp_id: u16, payload: &[u8], tail: &[u8]) {
        let l = &mut self.links[usize::from(disp_id - 1)];
        match l.conn {
            Some(conn) if l.ready => io.send2(conn, payload, tail),
            _ if l.queue.len() < QUEUE_LIMIT => {
                let mut p = Vec::with_capacity(payload.len() + tail.len());
                p.extend_from_slice(payload);
                p.extend_from_slice(tail);
                l.queue.push_back(p);
            }
            _ => l.dropped += 1,
        }
    }

    /// Sends a handshake on dispatcher `disp_id`'s connection, bypassing the queue.
    pub fn send_handshake(&mut self, io: &mut dyn Io, disp_id: u16, payload: &[u8]) {
        if let Some(conn) = self.links[usize::from(disp_id - 1)].conn {
            io.send(conn, payload);
        }
    }

    /// Sends to the dispatcher that carries entity `eid`.
    pub fn send_by_entity(&mut self, io: &mut dyn Io, eid: &EntityId, payload: &[u8]) {
        let d = dispatcher_for_entity(eid, self.count());
        self.send(io, d, payload);
    }

    /// Encodes `msg` and sends it to the dispatcher that carries entity `eid`.
    pub fn send_msg_by_entity(&mut self, io: &mut dyn Io, eid: &EntityId, msg: &crate::proto::Msg) {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        msg.encode(&mut buf);
        self.send_by_entity(io, eid, &buf);
        if buf.capacity() <= SCRATCH_KEEP {
            self.scratch = buf;
        }
    }

    /// Sends to the dispatcher that carries gate `gate_id`'s position syncs.
    pub fn send_by_gate(&mut self, io: &mut dyn Io, gate_id: u16, payload: &[u8]) {
        let d = dispatcher_for_gate(gate_id, self.count());
        self.send(io, d, payload);
    }

    /// Sends to the dispatcher that holds service key `key`.
    pub fn send_by_service(&mut self, io: &mut dyn Io, key: &str, payload: &[u8]) {
        let d = dispatcher_for_service(key, self.count());
        self.send(io, d, payload);
    }

    /// Sends to every dispatcher.
    pub fn broadcast(&mut self, io: &mut dyn Io, payload: &[u8]) {
        for d in 1..=self.count() {
            self.send(io, d, payload);
        }
    }

    /// Sends to one dispatcher that fans the packet out (CALL_NIL_SPACES,
    /// CALL_FILTERED_CLIENTS), so each recipient gets it once: the first ready one, else
    /// dispatcher 1's queue.
    pub fn send_fanout(&mut self, io: &mut dyn Io, payload: &[u8]) {
        let d = (1..=self.count()).find(|&d| self.is_ready(d)).unwrap_or(1);
        self.send(io, d, payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testio::MemIo;

    fn conn(slot: u32) -> ConnId {
        ConnId { slot, gen: 1 }
    }

    #[test]
    fn queues_until_handshake_then_flushes_in_order() {
        let mut io = MemIo::new();
        let mut links = DispatcherLinks::new(2, "test");
        links.send(&mut io, 1, b"a");
        assert!(io.sent.is_empty());
        assert!(!links.opened(1, conn(1)));
        links.send_handshake(&mut io, 1, b"hello");
        links.send(&mut io, 1, b"b");
        assert_eq!(io.sent_to(conn(1)), vec![&b"hello"[..]]);
        links.ready(&mut io, 1);
        links.send(&mut io, 1, b"c");
        assert_eq!(
            io.sent_to(conn(1)),
            vec![&b"hello"[..], &b"a"[..], &b"b"[..], &b"c"[..]]
        );
        assert!(!links.all_ready());
        // A reconnect is reported as one, and queues again until its handshake.
        assert_eq!(links.closed(conn(1)), Some(1));
        links.send(&mut io, 1, b"d");
        assert!(links.opened(1, conn(3)));
        assert!(io.sent_to(conn(3)).is_empty());
        links.ready(&mut io, 1);
        assert_eq!(io.sent_to(conn(3)), vec![&b"d"[..]]);
    }

    #[test]
    fn fanout_uses_one_ready_dispatcher() {
        let mut io = MemIo::new();
        let mut links = DispatcherLinks::new(3, "test");
        links.opened(2, conn(2));
        links.ready(&mut io, 2);
        links.send_fanout(&mut io, b"x");
        assert_eq!(io.sent, vec![(conn(2), b"x".to_vec())]);
    }
}
