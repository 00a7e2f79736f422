//! A timer queue ordered by deadline, then by insertion order. Component logic owns one and
//! reports its earliest deadline to the reactor, which sleeps until then; nothing here reads
//! the clock: `now` is always an argument.

use std::collections::BTreeMap;
use std::time::Instant;

/// Identifies a scheduled timer; never reused within one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(u64);

/// Timers carrying a payload `T` (what to do when it fires).
#[derive(Debug)]
pub struct Timers<T> {
    queue: BTreeMap<(Instant, u64), T>,
    deadlines: std::collections::HashMap<u64, Instant>,
    seq: u64,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers {
            queue: BTreeMap::new(),
            deadlines: Default::default(),
            seq: 0,
        }
    }
}

impl<T> Timers<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Schedules `payload` to fire at `deadline`.
    pub fn add(&mut self, deadline: Instant, payload: T) -> TimerId {
        self.seq += 1;
        self.queue.insert((deadline, self.seq), payload);
        self.deadlines.insert(self.seq, deadline);
        TimerId(self.seq)
    }

    /// Cancels a timer; returns its payload if it had not fired yet.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let deadline = self.deadlines.remove(&id.0)?;
        self.queue.remove(&(deadline, id.0))
    }

    /// A pending timer's deadline and payload.
    pub fn get(&self, id: TimerId) -> Option<(Instant, &T)> {
        let deadline = *self.deadlines.get(&id.0)?;
        self.queue.get(&(deadline, id.0)).map(|p| (deadline, p))
    }

    /// The earliest deadline, if any timer is pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue.keys().next().map(|(d, _)| *d)
    }

    /// Removes and returns the first timer due at `now` (deadline, then insertion order).
    /// Call it in a loop, so a handler may add timers that are due at once.
    pub fn pop_due(&mut self, now: Instant) -> Option<(TimerId, T)> {
        let (&(deadline, seq), _) = self.queue.iter().next()?;
        if deadline > now {
            return None;
        }
        self.deadlines.remove(&seq);
        let payload = self.queue.remove(&(deadline, seq))?;
        Some((TimerId(seq), payload))
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_by_deadline_then_insertion_order() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        t.add(t0 + Duration::from_millis(20), "c");
        t.add(t0 + Duration::from_millis(10), "a");
        t.add(t0 + Duration::from_millis(10), "b");
        let gone = t.add(t0 + Duration::from_millis(5), "cancelled");
        assert_eq!(t.cancel(gone), Some("cancelled"));
        assert_eq!(t.cancel(gone), None);
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_millis(10)));
        assert!(t.pop_due(t0).is_none());
        let now = t0 + Duration::from_millis(15);
        let fired: Vec<_> = std::iter::from_fn(|| t.pop_due(now).map(|(_, p)| p)).collect();
        assert_eq!(fired, ["a", "b"]);
        assert_eq!(t.len(), 1);
    }
}
