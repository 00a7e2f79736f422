//! Placeholder AOI (brute force) with the final API; replaced by the grid implementation.

use std::collections::HashSet;

/// A slot handle, reused after leave.
pub type AoiId = u32;

/// Whether an interest began or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AoiEventKind {
    /// The watcher now sees the target.
    Enter,
    /// The watcher no longer sees the target.
    Leave,
}

/// One change of interest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AoiEvent {
    /// Who sees.
    pub watcher: AoiId,
    /// Who is seen.
    pub target: AoiId,
    /// Began or ended.
    pub kind: AoiEventKind,
}

struct Slot<T> {
    payload: T,
    x: f32,
    z: f32,
    r: f32,
    sees: HashSet<AoiId>,
    seen_by: HashSet<AoiId>,
}

/// Interest among entities of one space.
pub struct Aoi<T> {
    slots: Vec<Option<Slot<T>>>,
    free: Vec<AoiId>,
    len: usize,
}

impl<T: Copy> Aoi<T> {
    /// An empty AOI.
    pub fn new(_cell_size: f32) -> Self {
        Aoi {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    fn slot(&self, id: AoiId) -> &Slot<T> {
        self.slots[id as usize].as_ref().expect("live AOI slot")
    }

    fn sees(a: &Slot<T>, b: &Slot<T>) -> bool {
        (b.x - a.x).abs() <= a.r && (b.z - a.z).abs() <= a.r
    }

    fn recompute(&mut self, id: AoiId, out: &mut Vec<AoiEvent>) {
        let me = self.slot(id);
        let mut new_sees = HashSet::new();
        let mut new_seen = HashSet::new();
        for (j, s) in self.slots.iter().enumerate() {
            let j = j as AoiId;
            let Some(s) = s else { continue };
            if j == id {
                continue;
            }
            if Self::sees(me, s) {
                new_sees.insert(j);
            }
            if Self::sees(s, me) {
                new_seen.insert(j);
            }
        }
        let old_sees = me.sees.clone();
        let old_seen = me.seen_by.clone();
        let mut v: Vec<_> = old_sees.difference(&new_sees).copied().collect();
        v.sort();
        for t in v {
            out.push(AoiEvent {
                watcher: id,
                target: t,
                kind: AoiEventKind::Leave,
            });
            self.slots[t as usize].as_mut().unwrap().seen_by.remove(&id);
        }
        let mut v: Vec<_> = new_sees.difference(&old_sees).copied().collect();
        v.sort();
        for t in v {
            out.push(AoiEvent {
                watcher: id,
                target: t,
                kind: AoiEventKind::Enter,
            });
            self.slots[t as usize].as_mut().unwrap().seen_by.insert(id);
        }
        let mut v: Vec<_> = old_seen.difference(&new_seen).copied().collect();
        v.sort();
        for w in v {
            out.push(AoiEvent {
                watcher: w,
                target: id,
                kind: AoiEventKind::Leave,
            });
            self.slots[w as usize].as_mut().unwrap().sees.remove(&id);
        }
        let mut v: Vec<_> = new_seen.difference(&old_seen).copied().collect();
        v.sort();
        for w in v {
            out.push(AoiEvent {
                watcher: w,
                target: id,
                kind: AoiEventKind::Enter,
            });
            self.slots[w as usize].as_mut().unwrap().sees.insert(id);
        }
        let me = self.slots[id as usize].as_mut().unwrap();
        me.sees = new_sees;
        me.seen_by = new_seen;
    }

    /// Inserts an entity.
    pub fn enter(
        &mut self,
        payload: T,
        x: f32,
        z: f32,
        radius: f32,
        out: &mut Vec<AoiEvent>,
    ) -> AoiId {
        let slot = Slot {
            payload,
            x,
            z,
            r: radius,
            sees: HashSet::new(),
            seen_by: HashSet::new(),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(slot);
                id
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as AoiId
            }
        };
        self.len += 1;
        self.recompute(id, out);
        id
    }

    /// Moves an entity.
    pub fn move_to(&mut self, id: AoiId, x: f32, z: f32, out: &mut Vec<AoiEvent>) {
        let s = self.slots[id as usize].as_mut().unwrap();
        s.x = x;
        s.z = z;
        self.recompute(id, out);
    }

    /// Removes an entity.
    pub fn leave(&mut self, id: AoiId, out: &mut Vec<AoiEvent>) -> T {
        {
            let s = self.slots[id as usize].as_mut().unwrap();
            s.x = f32::INFINITY;
            s.r = -1.0;
        }
        self.recompute(id, out);
        let s = self.slots[id as usize].take().unwrap();
        self.free.push(id);
        self.len -= 1;
        s.payload
    }

    /// The payload of `id`.
    pub fn payload(&self, id: AoiId) -> T {
        self.slot(id).payload
    }

    /// Whom `id` sees.
    pub fn interested_in(&self, id: AoiId) -> impl Iterator<Item = AoiId> + '_ {
        self.slot(id).sees.iter().copied()
    }

    /// Who sees `id`.
    pub fn interested_by(&self, id: AoiId) -> impl Iterator<Item = AoiId> + '_ {
        self.slot(id).seen_by.iter().copied()
    }

    /// Number of entities.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
