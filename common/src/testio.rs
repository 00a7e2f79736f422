//! An in-memory [`Io`] for component tests: records every frame sent and every close, so
//! dispatcher, gate and game logic can be driven without sockets or a clock.

use crate::reactor::{ConnId, Io};

/// Records what component logic asked the reactor to do.
#[derive(Debug, Default)]
pub struct MemIo {
    /// Every payload sent, in order, with its connection.
    pub sent: Vec<(ConnId, Vec<u8>)>,
    /// Every close, in order, with its reason.
    pub closed: Vec<(ConnId, String)>,
}

impl MemIo {
    /// An empty recorder.
    pub fn new() -> MemIo {
        MemIo::default()
    }

    /// Takes the payloads sent so far, leaving the record empty.
    pub fn take(&mut self) -> Vec<(ConnId, Vec<u8>)> {
        std::mem::take(&mut self.sent)
    }

    /// Payloads sent to `conn`, in order.
    pub fn sent_to(&self, conn: ConnId) -> Vec<&[u8]> {
        self.sent
            .iter()
            .filter(|(c, _)| *c == conn)
            .map(|(_, p)| p.as_slice())
            .collect()
    }
}

impl Io for MemIo {
    fn send(&mut self, conn: ConnId, payload: &[u8]) {
        self.sent.push((conn, payload.to_vec()));
    }

    fn send2(&mut self, conn: ConnId, head: &[u8], tail: &[u8]) {
        let mut p = Vec::with_capacity(head.len() + tail.len());
        p.extend_from_slice(head);
        p.extend_from_slice(tail);
        self.sent.push((conn, p));
    }

    fn close(&mut self, conn: ConnId, reason: &str) {
        self.closed.push((conn, reason.to_string()));
    }

    fn pending(&self, _conn: ConnId) -> usize {
        0
    }
}
