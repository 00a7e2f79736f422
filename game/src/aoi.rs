//! Area of interest (AOI): which entities of one space see which others, and the changes
//! ("W now sees T", "W no longer sees T") as entities enter, move and leave.
//!
//! This module is only the algorithm: it knows positions, radii and an opaque payload per
//! entity (the game stores an `EntityId` there), and it reports changes as [`AoiEvent`]s
//! appended to a caller's `Vec`. It sends nothing and calls no game code.
//!
//! # The relation
//!
//! Entities live in the X/Z plane (Y is not modelled). Entity `W` with radius `r_W` *sees*
//! entity `T` iff `W != T`, `|T.x - W.x| <= r_W` and `|T.z - W.z| <= r_W`: a square around `W`
//! (Chebyshev distance), inclusive on its border, computed in `f32` exactly as written. The
//! relation is directional: a watcher with a large radius may see an entity with a small
//! one that does not see it back. When all radii are equal it is GoWorld's symmetric
//! neighbour rule.
//!
//! Only *placed* entities take part: an entity whose `x` or `z` is NaN or infinite sees
//! nobody and is seen by nobody until it moves to a finite position; its position is still
//! stored and returned by [`Aoi::position`]. A radius that is NaN, negative or `-0.0` is
//! stored as `0.0` (a zero radius still sees entities at exactly the same X and Z); an
//! infinite radius sees every placed entity.
//!
//! # Events and their order
//!
//! Every change of the relation produces exactly one event and nothing else does. The
//! order depends only on the sequence of operations (IDs are reused deterministically,
//! see [`Aoi::enter`]); `E` is the entity the operation is about:
//!
//! * [`enter`](Aoi::enter): `(E, T, Enter)` for each `T` that `E` sees, by ascending `T`;
//!   then `(W, E, Enter)` for each `W` that sees `E`, by ascending `W`.
//! * [`move_to`](Aoi::move_to): the *watcher group* (`E` is the watcher: first its Leave
//!   events, then its Enter events, each by ascending target), then the *target group*
//!   (`E` is the target: Leave events, then Enter events, each by ascending watcher).
//!   Enter is the same rule with no Leave events.
//! * [`leave`](Aoi::leave): the reverse nesting: `(W, E, Leave)` for each `W` that saw `E`,
//!   by ascending `W`; then `(E, T, Leave)` for each `T` that `E` saw, by ascending `T`.
//!
//! # Invariants
//!
//! * `slots[w].sees` contains `t` iff `slots[t].seen_by` contains `w` iff `w` sees `t` by
//!   the rule above, evaluated on the stored positions and radii.
//! * Every placed live entity has exactly one [`Entry`] in the cell of its position (the
//!   entry repeats its position and radius; `slots[id].cell`/`at` say where it is);
//!   unplaced and free slots have none. A cell with no entries is not in the cell map.
//! * `narrow_max` is the largest radius of a *narrow* live entity (radius at most
//!   `WIDE_CELLS` cells; `narrow_radii` counts them per radius), and every *wide* live entity
//!   is in `wide`.
//!
//! # Algorithm
//!
//! A uniform grid: a hash map from cell coordinates `(floor(x / cell), floor(z / cell))` to a
//! vector of entries, so only occupied cells cost memory and positions may be anywhere
//! (huge coordinates saturate into the outermost cells, which only costs speed). Each entity
//! keeps two hash sets: whom it sees and who sees it.
//!
//! The relation is a function of positions, so an operation on `E` can change only pairs
//! that involve `E`, and only where the rule gives a different answer before and after. An
//! operation therefore visits the candidates that could satisfy the rule before *or* after:
//!
//! * as watcher, every entity within `r_E` of the old or the new position;
//! * as target, every narrow entity within `narrow_max` of either position (any narrow `W`
//!   that sees `E` is that close), plus the few wide entities, checked one by one.
//!
//! It scans the cells of the bounding box of both squares (two separate boxes when the
//! entity jumped far) and evaluates the rule for the old and the new position on each
//! candidate; only where they differ does it emit an event and touch the hash sets. A move
//! inside one cell is diffed the same way. When a box covers more cells than are occupied,
//! the occupied cells are scanned instead, so a huge radius costs O(entities), never
//! O(area). Cell bounds are padded by a relative 1e-6 so that `f32` rounding in the rule can
//! never put a satisfying candidate outside the scanned cells. Leaving needs no scan: the
//! two hash sets list every pair involving the entity.
//!
//! Wide watchers (radius above `WIDE_CELLS` cells) are kept out of `narrow_max`, so one
//! entity with a long view does not make every other move scan its whole square.
//!
//! Cost: a move costs the entries in the scanned cells (about `(2·max(r_E, narrow_max) +
//! cell)² × density`) plus the number of wide entities plus O(1) per event; an enter the
//! same; a leave O(its relations). Scratch buffers, emptied cells and hash-set capacity are
//! kept and reused, so steady-state moves do not allocate.

use std::collections::BTreeMap;

use goworld_common::id::{FastMap, FastSet};

/// An entity's handle in one [`Aoi`]: a slot number, reused after [`Aoi::leave`].
pub type AoiId = u32;

/// Whether a watcher started or stopped seeing a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AoiEventKind {
    /// The watcher sees the target now and did not before.
    Enter,
    /// The watcher saw the target before and does not now (or one of them left).
    Leave,
}

/// One change of the relation: `watcher` started or stopped seeing `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AoiEvent {
    /// The entity whose view changed.
    pub watcher: AoiId,
    /// The entity that came into or went out of the watcher's view.
    pub target: AoiId,
    /// Which way it changed.
    pub kind: AoiEventKind,
}

/// Radii above this many cells make an entity *wide* (checked one by one as a watcher
/// instead of widening every target scan).
const WIDE_CELLS: f32 = 4.0;

/// Relative padding of the scanned cell range, far above `f32` rounding (2^-23).
const PAD: f64 = 1e-6;

/// `Slot::cell` of an entity that is in no cell (unplaced, or a free slot).
const NO_CELL: u32 = u32::MAX;

/// `Slot::wide_at` of a narrow entity.
const NOT_WIDE: u32 = u32::MAX;

/// An entity as stored in its cell: what a scan needs, without touching the slot.
#[derive(Debug, Clone, Copy)]
struct Entry {
    x: f32,
    z: f32,
    r: f32,
    id: AoiId,
}

/// One entity (or a free slot when `payload` is `None`).
#[derive(Debug)]
struct Slot<T> {
    payload: Option<T>,
    x: f32,
    z: f32,
    r: f32,
    /// Index of its cell in `Aoi::cells`, or `NO_CELL`.
    cell: u32,
    /// Index of its entry in that cell.
    at: u32,
    /// Index in `Aoi::wide`, or `NOT_WIDE`.
    wide_at: u32,
    /// Whom it sees.
    sees: FastSet<AoiId>,
    /// Who sees it.
    seen_by: FastSet<AoiId>,
}

/// An inclusive rectangle of cell coordinates.
#[derive(Debug, Clone, Copy)]
struct CellBox {
    x0: i64,
    x1: i64,
    z0: i64,
    z1: i64,
}

impl CellBox {
    fn cells(&self) -> u128 {
        (self.x1 - self.x0 + 1) as u128 * (self.z1 - self.z0 + 1) as u128
    }

    fn disjoint(&self, o: &CellBox) -> bool {
        self.x1 < o.x0 || o.x1 < self.x0 || self.z1 < o.z0 || o.z1 < self.z0
    }

    fn union(&self, o: &CellBox) -> CellBox {
        CellBox {
            x0: self.x0.min(o.x0),
            x1: self.x1.max(o.x1),
            z0: self.z0.min(o.z0),
            z1: self.z1.max(o.z1),
        }
    }
}

/// The AOI of one space: entities with a position, a radius and a payload, and who sees whom.
/// See the [module documentation](self) for the rule, the event order and the costs.
///
/// Methods that take an [`AoiId`] panic if it is not live (never returned by
/// [`enter`](Aoi::enter), or already passed to [`leave`](Aoi::leave)): that is a caller bug.
#[derive(Debug)]
pub struct Aoi<T> {
    inv_cell: f64,
    /// Radii above this are wide.
    wide_limit: f32,
    slots: Vec<Slot<T>>,
    /// Free slots; the last one freed is reused first.
    free: Vec<AoiId>,
    live: usize,
    /// Occupied cells: packed cell coordinates to an index in `cells`.
    cell_index: FastMap<u64, u32>,
    /// Cell contents; the free ones (listed in `free_cells`) are empty and keep their capacity.
    cells: Vec<Vec<Entry>>,
    /// The packed coordinates of each index of `cells`.
    cell_keys: Vec<u64>,
    free_cells: Vec<u32>,
    /// Live narrow entities per radius (by `f32` bits: radii are `>= +0.0`, so bits order
    /// like values).
    narrow_radii: BTreeMap<u32, u32>,
    narrow_max: f32,
    /// Live wide entities.
    wide: Vec<AoiId>,
    /// Scratch: the events of the current operation where its entity is the watcher, and
    /// where it is the target.
    as_watcher: Vec<AoiEvent>,
    as_target: Vec<AoiEvent>,
}

fn placed(x: f32, z: f32) -> bool {
    x.is_finite() && z.is_finite()
}

/// The rule: a watcher at `(wx, wz)` with radius `wr` sees a target at `(tx, tz)`.
#[inline]
fn sees(wx: f32, wz: f32, wr: f32, tx: f32, tz: f32) -> bool {
    (tx - wx).abs() <= wr && (tz - wz).abs() <= wr
}

fn pack(cx: i64, cz: i64) -> u64 {
    (u64::from(cx as i32 as u32) << 32) | u64::from(cz as i32 as u32)
}

fn sanitize_radius(r: f32) -> f32 {
    if r > 0.0 {
        r
    } else {
        0.0
    }
}

impl<T: Copy> Aoi<T> {
    /// An empty AOI with square cells of side `cell_size`. Use the space's usual AOI
    /// distance: moves then scan about 3 × 3 cells.
    ///
    /// # Panics
    /// If `cell_size` is not a finite number above zero.
    pub fn new(cell_size: f32) -> Self {
        assert!(
            cell_size.is_finite() && cell_size > 0.0,
            "aoi: the cell size must be finite and above 0, not {cell_size}"
        );
        Aoi {
            inv_cell: 1.0 / f64::from(cell_size),
            wide_limit: WIDE_CELLS * cell_size,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            cell_index: FastMap::default(),
            cells: Vec::new(),
            cell_keys: Vec::new(),
            free_cells: Vec::new(),
            narrow_radii: BTreeMap::new(),
            narrow_max: 0.0,
            wide: Vec::new(),
            as_watcher: Vec::new(),
            as_target: Vec::new(),
        }
    }

    /// Adds an entity at `(x, z)` with view radius `radius` and returns its ID, appending to
    /// `out` the Enter events it causes (first those where it is the watcher, by ascending
    /// target, then those where it is the target, by ascending watcher).
    ///
    /// The ID is the most recently freed slot if there is one, else the next new slot. A
    /// NaN or infinite coordinate leaves the entity unplaced (no relations); a NaN or
    /// negative radius is stored as 0.
    pub fn enter(
        &mut self,
        payload: T,
        x: f32,
        z: f32,
        radius: f32,
        out: &mut Vec<AoiEvent>,
    ) -> AoiId {
        let r = sanitize_radius(radius);
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.slots.push(Slot {
                    payload: None,
                    x: 0.0,
                    z: 0.0,
                    r: 0.0,
                    cell: NO_CELL,
                    at: 0,
                    wide_at: NOT_WIDE,
                    sees: FastSet::default(),
                    seen_by: FastSet::default(),
                });
                AoiId::try_from(self.slots.len() - 1).expect("aoi: more than 2^32 slots")
            }
        };
        let s = &mut self.slots[id as usize];
        s.payload = Some(payload);
        s.x = x;
        s.z = z;
        s.r = r;
        self.live += 1;
        if r > self.wide_limit {
            s.wide_at = self.wide.len() as u32;
            self.wide.push(id);
        } else {
            *self.narrow_radii.entry(r.to_bits()).or_insert(0) += 1;
            self.narrow_max = self.narrow_max.max(r);
        }
        let new = placed(x, z).then_some((x, z));
        self.diff(id, None, new, out);
        self.place(id);
        id
    }

    /// Moves entity `id` to `(x, z)`, appending to `out` the events the move causes: where
    /// `id` is the watcher (Leave then Enter, each by ascending target), then where it is the
    /// target (Leave then Enter, each by ascending watcher). Moving to a NaN or infinite
    /// coordinate ends all its relations; moving to the same position does nothing.
    ///
    /// # Panics
    /// If `id` is not live.
    pub fn move_to(&mut self, id: AoiId, x: f32, z: f32, out: &mut Vec<AoiEvent>) {
        let s = self.slot(id);
        let (ox, oz) = (s.x, s.z);
        if ox.to_bits() == x.to_bits() && oz.to_bits() == z.to_bits() {
            return;
        }
        let old = placed(ox, oz).then_some((ox, oz));
        let new = placed(x, z).then_some((x, z));
        self.diff(id, old, new, out);
        let s = &mut self.slots[id as usize];
        s.x = x;
        s.z = z;
        if s.cell != NO_CELL && new.is_some() {
            let key = pack(self.cell_coord(x), self.cell_coord(z));
            let s = &self.slots[id as usize];
            if self.cell_keys[s.cell as usize] == key {
                let e = &mut self.cells[s.cell as usize][s.at as usize];
                e.x = x;
                e.z = z;
                return;
            }
        }
        self.unplace(id);
        self.place(id);
    }

    /// Removes entity `id` and returns its payload, appending to `out` a Leave event for
    /// every relation it had: first those where it was the target (by ascending watcher),
    /// then those where it was the watcher (by ascending target). Its ID may be returned
    /// by the next [`enter`](Aoi::enter).
    ///
    /// # Panics
    /// If `id` is not live.
    pub fn leave(&mut self, id: AoiId, out: &mut Vec<AoiEvent>) -> T {
        let payload = self.payload(id);
        let mut as_watcher = std::mem::take(&mut self.as_watcher);
        let mut as_target = std::mem::take(&mut self.as_target);
        let s = &mut self.slots[id as usize];
        as_target.extend(s.seen_by.iter().map(|&w| AoiEvent {
            watcher: w,
            target: id,
            kind: AoiEventKind::Leave,
        }));
        as_watcher.extend(s.sees.iter().map(|&t| AoiEvent {
            watcher: id,
            target: t,
            kind: AoiEventKind::Leave,
        }));
        s.seen_by.clear();
        s.sees.clear();
        as_target.sort_unstable_by_key(|e| e.watcher);
        as_watcher.sort_unstable_by_key(|e| e.target);
        for e in &as_target {
            self.slots[e.watcher as usize].sees.remove(&id);
        }
        for e in &as_watcher {
            self.slots[e.target as usize].seen_by.remove(&id);
        }
        out.append(&mut as_target);
        out.append(&mut as_watcher);
        self.as_watcher = as_watcher;
        self.as_target = as_target;

        self.unplace(id);
        let s = &mut self.slots[id as usize];
        let r = s.r;
        s.payload = None;
        if s.wide_at != NOT_WIDE {
            let at = s.wide_at as usize;
            s.wide_at = NOT_WIDE;
            self.wide.swap_remove(at);
            if let Some(&moved) = self.wide.get(at) {
                self.slots[moved as usize].wide_at = at as u32;
            }
        } else {
            let n = self
                .narrow_radii
                .get_mut(&r.to_bits())
                .expect("counted radius");
            *n -= 1;
            if *n == 0 {
                self.narrow_radii.remove(&r.to_bits());
                self.narrow_max = self
                    .narrow_radii
                    .last_key_value()
                    .map_or(0.0, |(&bits, _)| f32::from_bits(bits));
            }
        }
        self.free.push(id);
        self.live -= 1;
        payload
    }

    /// The payload given to [`enter`](Aoi::enter).
    ///
    /// # Panics
    /// If `id` is not live.
    pub fn payload(&self, id: AoiId) -> T {
        self.slot(id).payload.expect("live slot")
    }

    /// The stored position `(x, z)`, NaN or infinite coordinates included.
    ///
    /// # Panics
    /// If `id` is not live.
    pub fn position(&self, id: AoiId) -> (f32, f32) {
        let s = self.slot(id);
        (s.x, s.z)
    }

    /// The view radius, as stored (NaN and negative radii are stored as 0).
    ///
    /// # Panics
    /// If `id` is not live.
    pub fn radius(&self, id: AoiId) -> f32 {
        self.slot(id).r
    }

    /// The entities `id` sees, in no particular (but deterministic) order.
    ///
    /// # Panics
    /// If `id` is not live.
    pub fn interested_in(&self, id: AoiId) -> impl Iterator<Item = AoiId> + '_ {
        self.slot(id).sees.iter().copied()
    }

    /// The entities that see `id`, in no particular (but deterministic) order.
    ///
    /// # Panics
    /// If `id` is not live.
    pub fn interested_by(&self, id: AoiId) -> impl Iterator<Item = AoiId> + '_ {
        self.slot(id).seen_by.iter().copied()
    }

    /// How many entities `id` sees.
    ///
    /// # Panics
    /// If `id` is not live.
    pub fn interested_in_len(&self, id: AoiId) -> usize {
        self.slot(id).sees.len()
    }

    /// How many entities see `id`.
    ///
    /// # Panics
    /// If `id` is not live.
    pub fn interested_by_len(&self, id: AoiId) -> usize {
        self.slot(id).seen_by.len()
    }

    /// The number of live entities, unplaced ones included.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when no entity is live.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    fn slot(&self, id: AoiId) -> &Slot<T> {
        match self.slots.get(id as usize) {
            Some(s) if s.payload.is_some() => s,
            _ => panic!("aoi: {id} is not a live AOI id"),
        }
    }

    fn cell_coord(&self, v: f32) -> i64 {
        self.cell_coord64(f64::from(v))
    }

    /// The cell coordinate of `v`: monotonic in `v`, saturating at the `i32` range.
    fn cell_coord64(&self, v: f64) -> i64 {
        i64::from((v * self.inv_cell).floor() as i32)
    }

    /// The cells that hold every entity within `reach` of `(x, z)` by the rule.
    fn cell_box(&self, x: f32, z: f32, reach: f32) -> CellBox {
        let (x, z, reach) = (f64::from(x), f64::from(z), f64::from(reach));
        let px = (x.abs() + reach) * PAD;
        let pz = (z.abs() + reach) * PAD;
        CellBox {
            x0: self.cell_coord64(x - reach - px),
            x1: self.cell_coord64(x + reach + px),
            z0: self.cell_coord64(z - reach - pz),
            z1: self.cell_coord64(z + reach + pz),
        }
    }

    /// Appends to `out` the events of `id` going from `old` to `new` (a placed position or
    /// `None`), in the documented order, and updates the hash sets. `id` must not be in
    /// a cell at a position other than `old` (scans skip it by ID).
    fn diff(
        &mut self,
        id: AoiId,
        old: Option<(f32, f32)>,
        new: Option<(f32, f32)>,
        out: &mut Vec<AoiEvent>,
    ) {
        let r = self.slots[id as usize].r;
        let reach = r.max(self.narrow_max);
        let boxes = match (old, new) {
            (None, None) => return,
            (Some((x, z)), None) | (None, Some((x, z))) => [Some(self.cell_box(x, z, reach)), None],
            (Some((ox, oz)), Some((nx, nz))) => {
                let a = self.cell_box(ox, oz, reach);
                let b = self.cell_box(nx, nz, reach);
                if a.disjoint(&b) {
                    [Some(a), Some(b)]
                } else {
                    [Some(a.union(&b)), None]
                }
            }
        };
        let mut as_watcher = std::mem::take(&mut self.as_watcher);
        let mut as_target = std::mem::take(&mut self.as_target);
        let wide_limit = self.wide_limit;
        let kind = |now: bool| {
            if now {
                AoiEventKind::Enter
            } else {
                AoiEventKind::Leave
            }
        };
        let visit = |e: &Entry| {
            if e.id == id {
                return;
            }
            let was = old.is_some_and(|(x, z)| sees(x, z, r, e.x, e.z));
            let now = new.is_some_and(|(x, z)| sees(x, z, r, e.x, e.z));
            if was != now {
                as_watcher.push(AoiEvent {
                    watcher: id,
                    target: e.id,
                    kind: kind(now),
                });
            }
            if e.r <= wide_limit {
                let was = old.is_some_and(|(x, z)| sees(e.x, e.z, e.r, x, z));
                let now = new.is_some_and(|(x, z)| sees(e.x, e.z, e.r, x, z));
                if was != now {
                    as_target.push(AoiEvent {
                        watcher: e.id,
                        target: id,
                        kind: kind(now),
                    });
                }
            }
        };
        self.scan(&boxes, visit);
        for &w in &self.wide {
            let s = &self.slots[w as usize];
            if w == id || !placed(s.x, s.z) {
                continue;
            }
            let was = old.is_some_and(|(x, z)| sees(s.x, s.z, s.r, x, z));
            let now = new.is_some_and(|(x, z)| sees(s.x, s.z, s.r, x, z));
            if was != now {
                as_target.push(AoiEvent {
                    watcher: w,
                    target: id,
                    kind: kind(now),
                });
            }
        }
        // Leave before Enter, then by the other party's ID.
        as_watcher.sort_unstable_by_key(|e| (e.kind == AoiEventKind::Enter, e.target));
        as_target.sort_unstable_by_key(|e| (e.kind == AoiEventKind::Enter, e.watcher));
        for e in as_watcher.iter().chain(&as_target) {
            let (w, t) = (e.watcher as usize, e.target);
            match e.kind {
                AoiEventKind::Enter => {
                    self.slots[w].sees.insert(t);
                    self.slots[t as usize].seen_by.insert(e.watcher);
                }
                AoiEventKind::Leave => {
                    self.slots[w].sees.remove(&t);
                    self.slots[t as usize].seen_by.remove(&e.watcher);
                }
            }
        }
        out.append(&mut as_watcher);
        out.append(&mut as_target);
        self.as_watcher = as_watcher;
        self.as_target = as_target;
    }

    /// Calls `f` on every entry in the given (disjoint) boxes, or on every entry when the
    /// boxes cover more cells than are occupied; each entry at most once.
    fn scan(&self, boxes: &[Option<CellBox>; 2], mut f: impl FnMut(&Entry)) {
        let area: u128 = boxes.iter().flatten().map(CellBox::cells).sum();
        if area > self.cell_index.len() as u128 {
            for cell in &self.cells {
                cell.iter().for_each(&mut f);
            }
            return;
        }
        for b in boxes.iter().flatten() {
            for cx in b.x0..=b.x1 {
                for cz in b.z0..=b.z1 {
                    if let Some(&ci) = self.cell_index.get(&pack(cx, cz)) {
                        self.cells[ci as usize].iter().for_each(&mut f);
                    }
                }
            }
        }
    }

    /// Puts a live entity into the cell of its position, if it is placed.
    fn place(&mut self, id: AoiId) {
        let s = &self.slots[id as usize];
        debug_assert_eq!(s.cell, NO_CELL);
        if !placed(s.x, s.z) {
            return;
        }
        let entry = Entry {
            x: s.x,
            z: s.z,
            r: s.r,
            id,
        };
        let key = pack(self.cell_coord(s.x), self.cell_coord(s.z));
        let ci = match self.cell_index.get(&key) {
            Some(&ci) => ci,
            None => {
                let ci = self.free_cells.pop().unwrap_or_else(|| {
                    self.cells.push(Vec::new());
                    self.cell_keys.push(0);
                    (self.cells.len() - 1) as u32
                });
                self.cell_keys[ci as usize] = key;
                self.cell_index.insert(key, ci);
                ci
            }
        };
        let cell = &mut self.cells[ci as usize];
        let s = &mut self.slots[id as usize];
        s.cell = ci;
        s.at = cell.len() as u32;
        cell.push(entry);
    }

    /// Takes an entity out of its cell, if it is in one.
    fn unplace(&mut self, id: AoiId) {
        let s = &mut self.slots[id as usize];
        let (ci, at) = (s.cell as usize, s.at as usize);
        if s.cell == NO_CELL {
            return;
        }
        s.cell = NO_CELL;
        let cell = &mut self.cells[ci];
        cell.swap_remove(at);
        if let Some(moved) = cell.get(at) {
            self.slots[moved.id as usize].at = at as u32;
        }
        if cell.is_empty() {
            self.cell_index.remove(&self.cell_keys[ci]);
            self.free_cells.push(ci as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use goworld_common::rng::Rng;
    use std::collections::{BTreeMap, BTreeSet};
    use AoiEventKind::{Enter, Leave};

    /// Position and radius of an entity in the model.
    type Spec = (f32, f32, f32);

    /// The brute-force reference: entities by ID and the relation, whose pairs involving an
    /// entity are recomputed against every other entity after each operation on it.
    #[derive(Default)]
    struct Model {
        ents: BTreeMap<AoiId, Spec>,
        rel: BTreeSet<(AoiId, AoiId)>,
    }

    /// The rule, written independently of the module.
    fn model_sees(w: Spec, t: Spec) -> bool {
        w.0.is_finite()
            && w.1.is_finite()
            && t.0.is_finite()
            && t.1.is_finite()
            && (t.0 - w.0).abs() <= w.2
            && (t.1 - w.1).abs() <= w.2
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Op {
        Enter,
        Move,
        Leave,
    }

    impl Model {
        fn pairs_of(&self, id: AoiId) -> BTreeSet<(AoiId, AoiId)> {
            let mut p = BTreeSet::new();
            if let Some(&e) = self.ents.get(&id) {
                for (&o, &oe) in &self.ents {
                    if o != id && model_sees(e, oe) {
                        p.insert((id, o));
                    }
                    if o != id && model_sees(oe, e) {
                        p.insert((o, id));
                    }
                }
            }
            p
        }

        fn full(&self) -> BTreeSet<(AoiId, AoiId)> {
            let mut p = BTreeSet::new();
            for (&w, &we) in &self.ents {
                for (&t, &te) in &self.ents {
                    if w != t && model_sees(we, te) {
                        p.insert((w, t));
                    }
                }
            }
            p
        }

        /// Applies an operation (`spec` None = leave) and returns the events the documented
        /// order prescribes.
        fn apply(&mut self, op: Op, id: AoiId, spec: Option<Spec>) -> Vec<AoiEvent> {
            let before = self.pairs_of(id);
            match spec {
                Some(s) => {
                    self.ents.insert(id, s);
                }
                None => {
                    self.ents.remove(&id);
                }
            }
            let after = self.pairs_of(id);
            for p in &before {
                self.rel.remove(p);
            }
            self.rel.extend(after.iter().copied());
            let ev = |&(w, t): &(AoiId, AoiId), kind| AoiEvent {
                watcher: w,
                target: t,
                kind,
            };
            // BTreeSet order is by watcher then target: filtering on one side leaves the
            // other ascending.
            let group = |watcher_side: bool| {
                let mine = |p: &&(AoiId, AoiId)| (if watcher_side { p.0 } else { p.1 }) == id;
                let mut v: Vec<AoiEvent> = before
                    .difference(&after)
                    .filter(mine)
                    .map(|p| ev(p, Leave))
                    .collect();
                v.extend(after.difference(&before).filter(mine).map(|p| ev(p, Enter)));
                v
            };
            let (w, t) = (group(true), group(false));
            if op == Op::Leave {
                [t, w].concat()
            } else {
                [w, t].concat()
            }
        }
    }

    /// Compares every live entity's sets with the relation recomputed from scratch.
    fn check_all(aoi: &Aoi<u64>, m: &Model) {
        let full = m.full();
        assert_eq!(full, m.rel, "model drifted");
        assert_eq!(aoi.len(), m.ents.len());
        assert_eq!(aoi.is_empty(), m.ents.is_empty());
        let mut want_sees: BTreeMap<AoiId, BTreeSet<AoiId>> = BTreeMap::new();
        let mut want_seen: BTreeMap<AoiId, BTreeSet<AoiId>> = BTreeMap::new();
        for &(w, t) in &full {
            want_sees.entry(w).or_default().insert(t);
            want_seen.entry(t).or_default().insert(w);
        }
        let none = BTreeSet::new();
        for (&id, &(x, z, r)) in &m.ents {
            let sees: BTreeSet<AoiId> = aoi.interested_in(id).collect();
            let seen: BTreeSet<AoiId> = aoi.interested_by(id).collect();
            let want_sees = want_sees.get(&id).unwrap_or(&none);
            let want_seen = want_seen.get(&id).unwrap_or(&none);
            assert_eq!(&sees, want_sees, "interested_in({id})");
            assert_eq!(&seen, want_seen, "interested_by({id})");
            assert_eq!(aoi.interested_in_len(id), want_sees.len());
            assert_eq!(aoi.interested_by_len(id), want_seen.len());
            let (px, pz) = aoi.position(id);
            assert!(px.to_bits() == x.to_bits() && pz.to_bits() == z.to_bits());
            assert_eq!(aoi.radius(id), r);
            assert_eq!(aoi.payload(id), u64::from(id) * 1000 + 7);
        }
    }

    struct Scenario {
        seed: u64,
        cell: f32,
        /// Radii drawn for new entities (0 and above 4 cells included where it matters).
        radii: &'static [f32],
        /// Coordinates are multiples of 0.5 in [-span, span].
        span: f32,
        max_live: usize,
        ops: usize,
        /// Sometimes use NaN, infinite and huge coordinates.
        weird: bool,
    }

    fn lattice(rng: &mut Rng, span: f32) -> f32 {
        rng.below((4.0 * span) as u64 + 1) as f32 * 0.5 - span
    }

    fn coord(rng: &mut Rng, s: &Scenario) -> f32 {
        if s.weird && rng.below(40) == 0 {
            const ODD: [f32; 7] = [
                f32::NAN,
                f32::INFINITY,
                f32::NEG_INFINITY,
                1e7,
                -1e7,
                1e30,
                -0.0,
            ];
            let v = ODD[rng.below(ODD.len() as u64) as usize];
            if v.abs() == 1e7 {
                return v + lattice(rng, 4.0);
            }
            return v;
        }
        lattice(rng, s.span)
    }

    /// Random enters, moves (steps, jumps, to odd coordinates) and leaves, each checked
    /// against the model; the whole relation is checked every few operations.
    fn run(s: &Scenario) {
        let mut rng = Rng::new(s.seed);
        let mut aoi = Aoi::new(s.cell);
        let mut m = Model::default();
        let mut live: Vec<AoiId> = Vec::new();
        let mut out = Vec::new();
        let symmetric = s.radii.len() == 1;
        for step in 0..s.ops {
            out.clear();
            let roll = rng.below(100);
            let (want, id) = if live.is_empty() || (live.len() < s.max_live && roll < 30) {
                let (x, z) = (coord(&mut rng, s), coord(&mut rng, s));
                let r = s.radii[rng.below(s.radii.len() as u64) as usize];
                let next = aoi.free.last().copied();
                let id = aoi.enter(0, x, z, r, &mut out);
                if let Some(n) = next {
                    assert_eq!(id, n, "the last freed slot is reused first");
                }
                // The payload names the slot so that reuse is visible.
                aoi.slots[id as usize].payload = Some(u64::from(id) * 1000 + 7);
                live.push(id);
                (m.apply(Op::Enter, id, Some((x, z, sanitize_radius(r)))), id)
            } else if roll < 40 {
                let i = rng.below(live.len() as u64) as usize;
                let id = live.swap_remove(i);
                assert_eq!(aoi.leave(id, &mut out), u64::from(id) * 1000 + 7);
                (m.apply(Op::Leave, id, None), id)
            } else {
                let id = live[rng.below(live.len() as u64) as usize];
                let (ox, oz, r) = m.ents[&id];
                let (x, z) = if rng.below(4) == 0 || !placed(ox, oz) {
                    (coord(&mut rng, s), coord(&mut rng, s))
                } else {
                    let d = |rng: &mut Rng| rng.below(9) as f32 * 0.5 - 2.0;
                    (ox + d(&mut rng), oz + d(&mut rng))
                };
                aoi.move_to(id, x, z, &mut out);
                (m.apply(Op::Move, id, Some((x, z, r))), id)
            };
            assert_eq!(out, want, "seed {} step {step}, entity {id}", s.seed);
            if symmetric {
                for e in &out {
                    let mirror = AoiEvent {
                        watcher: e.target,
                        target: e.watcher,
                        kind: e.kind,
                    };
                    assert!(out.contains(&mirror), "equal radii are symmetric: {e:?}");
                }
            }
            if step % 16 == 0 {
                check_all(&aoi, &m);
            }
        }
        check_all(&aoi, &m);
        for id in live {
            out.clear();
            aoi.leave(id, &mut out);
            assert_eq!(out, m.apply(Op::Leave, id, None));
        }
        assert!(aoi.is_empty() && aoi.cell_index.is_empty() && aoi.wide.is_empty());
        assert!(aoi.narrow_radii.is_empty() && aoi.narrow_max == 0.0);
    }

    #[test]
    fn random_mixed_radii_match_the_brute_force_model() {
        for seed in 1..=4 {
            run(&Scenario {
                seed,
                cell: 4.0,
                radii: &[0.0, 1.0, 2.5, 4.0, 6.0, 10.0, 30.0],
                span: 20.0,
                max_live: 250,
                ops: 3000,
                weird: false,
            });
        }
    }

    #[test]
    fn random_equal_radii_are_symmetric_and_match_the_model() {
        for (seed, cell) in [(11, 5.0), (12, 1.0), (13, 40.0)] {
            run(&Scenario {
                seed,
                cell,
                radii: &[5.0],
                span: 25.0,
                max_live: 300,
                ops: 3000,
                weird: false,
            });
        }
    }

    #[test]
    fn random_odd_coordinates_and_radii_match_the_model() {
        for seed in 21..=23 {
            run(&Scenario {
                seed,
                cell: 3.0,
                radii: &[0.0, 2.0, 3.0, 7.5, 100.0, f32::INFINITY, f32::NAN, -1.0],
                span: 12.0,
                max_live: 150,
                ops: 3000,
                weird: true,
            });
        }
    }

    fn ev(watcher: AoiId, target: AoiId, kind: AoiEventKind) -> AoiEvent {
        AoiEvent {
            watcher,
            target,
            kind,
        }
    }

    #[test]
    fn the_square_is_inclusive() {
        let mut aoi = Aoi::new(10.0);
        let mut out = Vec::new();
        let w = aoi.enter('w', 0.0, 0.0, 10.0, &mut out);
        let t = aoi.enter('t', 10.0, -10.0, 0.0, &mut out);
        assert_eq!(out, [ev(w, t, Enter)]);
        out.clear();
        aoi.move_to(t, 10.001, -10.0, &mut out);
        assert_eq!(out, [ev(w, t, Leave)]);
        out.clear();
        aoi.move_to(t, -10.0, 10.0, &mut out);
        assert_eq!(out, [ev(w, t, Enter)]);
        // A zero radius sees only the exact same spot.
        out.clear();
        aoi.move_to(w, -10.0, 10.0, &mut out);
        assert_eq!(out, [ev(t, w, Enter)]);
    }

    #[test]
    fn a_long_view_sees_a_short_one_that_does_not_see_back() {
        let mut aoi = Aoi::new(10.0);
        let mut out = Vec::new();
        let big = aoi.enter(1, 0.0, 0.0, 50.0, &mut out);
        let small = aoi.enter(2, 20.0, 0.0, 5.0, &mut out);
        assert_eq!(out, [ev(big, small, Enter)]);
        assert_eq!(aoi.interested_in(big).collect::<Vec<_>>(), [small]);
        assert_eq!(aoi.interested_by_len(big), 0);
        assert_eq!(aoi.interested_in_len(small), 0);
        out.clear();
        aoi.move_to(small, 4.0, 0.0, &mut out);
        assert_eq!(out, [ev(small, big, Enter)]);
        out.clear();
        // The small one goes out of its own view of big first in the event order: watcher
        // group, then target group.
        aoi.move_to(big, 60.0, 0.0, &mut out);
        assert_eq!(out, [ev(big, small, Leave), ev(small, big, Leave)]);
    }

    #[test]
    fn a_wide_watcher_is_found_from_far_away() {
        let mut aoi = Aoi::new(1.0);
        let mut out = Vec::new();
        let wide = aoi.enter((), 0.0, 0.0, 1000.0, &mut out);
        let a = aoi.enter((), 999.0, -1000.0, 1.0, &mut out);
        assert_eq!(out, [ev(wide, a, Enter)]);
        out.clear();
        aoi.move_to(a, 1000.5, 0.0, &mut out);
        assert_eq!(out, [ev(wide, a, Leave)]);
        out.clear();
        aoi.leave(wide, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn a_freed_slot_is_reused_without_old_relations() {
        let mut aoi = Aoi::new(10.0);
        let mut out = Vec::new();
        let a = aoi.enter("a", 0.0, 0.0, 5.0, &mut out);
        let b = aoi.enter("b", 1.0, 1.0, 5.0, &mut out);
        assert_eq!(aoi.leave(a, &mut out), "a");
        out.clear();
        let c = aoi.enter("c", 100.0, 100.0, 5.0, &mut out);
        assert_eq!(c, a);
        assert!(out.is_empty());
        assert_eq!(aoi.payload(c), "c");
        assert_eq!(aoi.interested_in_len(b), 0);
        assert_eq!(aoi.interested_by_len(c), 0);
        assert_eq!(aoi.len(), 2);
    }

    #[test]
    fn leave_ends_both_directions_targets_first() {
        let mut aoi = Aoi::new(10.0);
        let mut out = Vec::new();
        let a = aoi.enter(0, 0.0, 0.0, 5.0, &mut out);
        let b = aoi.enter(0, 1.0, 0.0, 5.0, &mut out);
        let c = aoi.enter(0, 2.0, 0.0, 0.5, &mut out);
        assert_eq!(
            out,
            [
                ev(b, a, Enter),
                ev(a, b, Enter),
                ev(a, c, Enter),
                ev(b, c, Enter)
            ]
        );
        out.clear();
        aoi.leave(a, &mut out);
        assert_eq!(out, [ev(b, a, Leave), ev(a, b, Leave), ev(a, c, Leave)]);
        assert_eq!(aoi.interested_by(c).collect::<Vec<_>>(), [b]);
    }

    #[test]
    #[should_panic(expected = "not a live AOI id")]
    fn a_stale_id_panics() {
        let mut aoi = Aoi::new(10.0);
        let mut out = Vec::new();
        let a = aoi.enter(0, 0.0, 0.0, 5.0, &mut out);
        aoi.leave(a, &mut out);
        aoi.move_to(a, 1.0, 1.0, &mut out);
    }

    #[test]
    fn a_move_inside_one_cell_is_diffed() {
        let mut aoi = Aoi::new(100.0);
        let mut out = Vec::new();
        let w = aoi.enter(0, 5.0, 5.0, 10.0, &mut out);
        let t = aoi.enter(0, 15.0, 5.0, 10.0, &mut out);
        out.clear();
        aoi.move_to(w, 4.5, 5.0, &mut out);
        assert_eq!(out, [ev(w, t, Leave), ev(t, w, Leave)]);
        out.clear();
        aoi.move_to(w, 4.5, 5.0, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn many_entities_in_one_spot() {
        const N: u32 = 2000;
        let mut aoi = Aoi::new(100.0);
        let mut out = Vec::new();
        for i in 0..N {
            aoi.enter(i, 0.0, 0.0, 100.0, &mut out);
        }
        assert_eq!(out.len(), (N * (N - 1)) as usize);
        out.clear();
        for i in 0..N {
            aoi.move_to(i, 1.0, -1.0, &mut out);
        }
        assert!(out.is_empty());
        aoi.move_to(7, 500.0, 0.0, &mut out);
        assert_eq!(out.len(), 2 * (N - 1) as usize);
        assert!(out[..(N - 1) as usize].iter().all(|e| e.watcher == 7));
        assert_eq!(aoi.interested_in_len(0), (N - 2) as usize);
        out.clear();
        for i in 0..N {
            aoi.leave(i, &mut out);
        }
        assert_eq!(out.len(), ((N - 1) * (N - 2)) as usize);
        assert!(aoi.is_empty());
    }

    #[test]
    fn odd_coordinates_never_corrupt() {
        let mut aoi = Aoi::new(100.0);
        let mut out = Vec::new();
        let a = aoi.enter(0, f32::NAN, 0.0, 100.0, &mut out);
        let b = aoi.enter(1, 0.0, 0.0, f32::NAN, &mut out);
        assert!(out.is_empty());
        assert_eq!(aoi.radius(b), 0.0);
        aoi.move_to(a, 50.0, 0.0, &mut out);
        assert_eq!(out, [ev(a, b, Enter)]);
        out.clear();
        aoi.move_to(a, f32::INFINITY, 0.0, &mut out);
        assert_eq!(out, [ev(a, b, Leave)]);
        assert_eq!(aoi.position(a), (f32::INFINITY, 0.0));
        out.clear();
        // Huge coordinates: far apart cells, and neighbours far from the origin.
        let c = aoi.enter(2, 1e7, 1e7, 100.0, &mut out);
        let d = aoi.enter(3, 1e7 + 100.0, 1e7 - 100.0, 100.0, &mut out);
        let e = aoi.enter(4, -1e7, 1e7, f32::INFINITY, &mut out);
        assert_eq!(
            out,
            [
                ev(d, c, Enter),
                ev(c, d, Enter),
                ev(e, b, Enter),
                ev(e, c, Enter),
                ev(e, d, Enter)
            ]
        );
        out.clear();
        // f32::MAX - (-1e7) rounds to f32::MAX, which an infinite radius covers.
        let f = aoi.enter(5, f32::MAX, -f32::MAX, 1.0, &mut out);
        assert_eq!(out, [ev(e, f, Enter)]);
        out.clear();
        aoi.move_to(e, f32::NAN, f32::NAN, &mut out);
        assert_eq!(
            out,
            [
                ev(e, b, Leave),
                ev(e, c, Leave),
                ev(e, d, Leave),
                ev(e, f, Leave)
            ]
        );
        assert_eq!(aoi.len(), 6);
    }
}
