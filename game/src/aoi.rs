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
//! * `slots[a].rel[b]` has bit `SEES` iff `a` sees `b`, and bit `SEEN` iff `b` sees `a`, by
//!   the rule above evaluated on the stored positions and radii; pairs with neither are
//!   absent. So `slots[b].rel[a]` holds the same bits swapped, and `n_sees` / `n_seen`
//!   count the bits of each kind.
//! * Every placed live entity has exactly one `Item` (repeating its position, radius and
//!   ID) in the chunk and cell of its position (`slots[id].chunk` / `cell`); unplaced
//!   entities and free slots have none. A chunk with no items is not in the chunk map.
//! * `narrow_max` is the largest radius of a *narrow* live entity (radius at most
//!   `WIDE_CELLS` cells; `narrow_radii` counts them per radius), and every *wide* live entity
//!   is in `wide`.
//!
//! # Algorithm
//!
//! A uniform grid of square cells, `(floor(x / cell), floor(z / cell))`, grouped into chunks
//! of 8 × 8 cells. A hash map holds only the chunks that have items, so memory follows the
//! entities and positions may be anywhere (huge coordinates saturate into the outermost
//! cells, which only costs speed). A chunk keeps its items in one vector sorted by cell
//! (row by row) with the start of each cell, so a scan of 3 × 3 cells reads three
//! contiguous runs after one or two hash lookups. Each entity keeps one hash map of the
//! entities it has a relation with, in either direction.
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
//! candidate; only where they differ does it emit an event and touch the relation maps. A
//! move inside one cell is diffed the same way. When the boxes cover more chunks than exist,
//! all chunks are scanned instead, so a huge radius costs O(entities), never O(area). Cell
//! bounds are padded by a relative 1e-6 so that `f32` rounding in the rule can never put a
//! satisfying candidate outside the scanned cells. Leaving needs no scan: the entity's
//! relation map lists every pair involving it.
//!
//! Wide watchers (radius above `WIDE_CELLS` cells) are kept out of `narrow_max`, so one
//! entity with a long view does not make every other move scan its whole square.
//!
//! Cost: a move costs the items in the scanned cells (about `(2·max(r_E, narrow_max) +
//! cell)² × density`) plus the number of wide entities plus O(1) per event; when it changes
//! cell, also a shift of the items of its chunk (a memmove of the same order as the scan).
//! An enter costs the same as a move; a leave costs O(its relations). Scratch buffers,
//! emptied chunks and map capacity are kept and reused, so once they have grown to the
//! load, moves do not allocate.
//!
//! # For the caller
//!
//! * Give [`Aoi::new`] the space's usual AOI distance as the cell size. Radii up to four
//!   cells are cheap; an entity with a larger radius is *wide* and is checked by every
//!   enter and move of every other entity, so keep wide entities few.
//! * Methods taking an [`AoiId`] panic if it is not live (a caller bug).
//! * The IDs are slots: keep your own map from `AoiId` to entity, or use the payload.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::BTreeMap;

use goworld_common::id::FastMap;

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

/// A chunk is `2^CHUNK_BITS` cells on a side.
const CHUNK_BITS: u32 = 3;
const CHUNK_SIDE: i64 = 1 << CHUNK_BITS;
const CHUNK_CELLS: usize = 1 << (2 * CHUNK_BITS);

/// `Slot::chunk` of an entity that is in no chunk (unplaced, or a free slot).
const NO_CHUNK: u32 = u32::MAX;

/// `Slot::wide_at` of a narrow entity.
const NOT_WIDE: u32 = u32::MAX;

/// Relation bits in `Slot::rel`: this entity sees the other one.
const SEES: u8 = 1;
/// The other entity sees this one.
const SEEN: u8 = 2;

/// The same relation seen from the other entity.
fn mirror(bits: u8) -> u8 {
    ((bits & SEES) << 1) | ((bits & SEEN) >> 1)
}

/// An entity as stored in its chunk: what a scan needs, without touching the slot.
#[derive(Debug, Clone, Copy)]
struct Item {
    x: f32,
    z: f32,
    r: f32,
    id: AoiId,
}

/// The items of 8 × 8 cells.
#[derive(Debug)]
struct Chunk {
    /// Sorted by cell index (`z` row × 8 + `x` column, local to the chunk).
    items: Vec<Item>,
    /// Cell `c` holds `items[start[c]..start[c + 1]]`.
    start: [u32; CHUNK_CELLS + 1],
}

/// One entity (or a free slot when `payload` is `None`).
#[derive(Debug)]
struct Slot<T> {
    payload: Option<T>,
    x: f32,
    z: f32,
    r: f32,
    /// Index of its chunk in `Aoi::chunks`, or `NO_CHUNK`.
    chunk: u32,
    /// Its cell in that chunk.
    cell: u32,
    /// Index in `Aoi::wide`, or `NOT_WIDE`.
    wide_at: u32,
    /// `SEES` / `SEEN` bits per related entity.
    rel: FastMap<AoiId, u8>,
    /// Entities with `SEES`, and with `SEEN`, in `rel`.
    n_sees: u32,
    n_seen: u32,
}

impl<T> Slot<T> {
    /// Flips `bits` of the relation with `other` and keeps the counts.
    fn toggle(&mut self, other: AoiId, bits: u8) {
        let now = match self.rel.entry(other) {
            MapEntry::Occupied(mut o) => {
                let b = *o.get() ^ bits;
                if b == 0 {
                    o.remove();
                } else {
                    *o.get_mut() = b;
                }
                b
            }
            MapEntry::Vacant(v) => *v.insert(bits),
        };
        if bits & SEES != 0 {
            if now & SEES != 0 {
                self.n_sees += 1;
            } else {
                self.n_sees -= 1;
            }
        }
        if bits & SEEN != 0 {
            if now & SEEN != 0 {
                self.n_seen += 1;
            } else {
                self.n_seen -= 1;
            }
        }
    }
}

/// An inclusive rectangle of cell (or chunk) coordinates.
#[derive(Debug, Clone, Copy)]
struct CellBox {
    x0: i64,
    x1: i64,
    z0: i64,
    z1: i64,
}

impl CellBox {
    fn area(&self) -> u128 {
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

    /// The chunks that hold these cells.
    fn chunks(&self) -> CellBox {
        CellBox {
            x0: self.x0 >> CHUNK_BITS,
            x1: self.x1 >> CHUNK_BITS,
            z0: self.z0 >> CHUNK_BITS,
            z1: self.z1 >> CHUNK_BITS,
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
    /// Chunks with items: packed chunk coordinates to an index in `chunks`.
    chunk_index: FastMap<u64, u32>,
    /// The free ones (listed in `free_chunks`) are empty and keep their capacity.
    chunks: Vec<Chunk>,
    /// The packed coordinates of each chunk.
    chunk_keys: Vec<u64>,
    free_chunks: Vec<u32>,
    /// Live narrow entities per radius (by `f32` bits: radii are `>= +0.0`, so bits order
    /// like values).
    narrow_radii: BTreeMap<u32, u32>,
    narrow_max: f32,
    /// Live wide entities.
    wide: Vec<AoiId>,
    /// Scratch: the events of the current operation where its entity is the watcher, and
    /// where it is the target; the relation bits that change, per other entity.
    as_watcher: Vec<AoiEvent>,
    as_target: Vec<AoiEvent>,
    changes: Vec<(AoiId, u8)>,
}

fn placed(x: f32, z: f32) -> bool {
    x.is_finite() && z.is_finite()
}

/// The rule: a watcher at `(wx, wz)` with radius `wr` sees a target at `(tx, tz)`.
#[inline]
fn sees(wx: f32, wz: f32, wr: f32, tx: f32, tz: f32) -> bool {
    (tx - wx).abs() <= wr && (tz - wz).abs() <= wr
}

/// A hash key from two coordinates in the `i32` range.
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

fn kind(now: bool) -> AoiEventKind {
    if now {
        AoiEventKind::Enter
    } else {
        AoiEventKind::Leave
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
            chunk_index: FastMap::default(),
            chunks: Vec::new(),
            chunk_keys: Vec::new(),
            free_chunks: Vec::new(),
            narrow_radii: BTreeMap::new(),
            narrow_max: 0.0,
            wide: Vec::new(),
            as_watcher: Vec::new(),
            as_target: Vec::new(),
            changes: Vec::new(),
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
                    chunk: NO_CHUNK,
                    cell: 0,
                    wide_at: NOT_WIDE,
                    rel: FastMap::default(),
                    n_sees: 0,
                    n_seen: 0,
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
        let (chunk, cell) = (s.chunk, s.cell);
        if chunk != NO_CHUNK && new.is_some() {
            let (key, to_cell) = self.locate(x, z);
            if self.chunk_keys[chunk as usize] == key && to_cell == cell {
                let ch = &mut self.chunks[chunk as usize];
                let (a, b) = cell_range(ch, cell);
                let it = ch.items[a..b]
                    .iter_mut()
                    .find(|it| it.id == id)
                    .expect("aoi: an entity is in its cell");
                it.x = x;
                it.z = z;
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
        let mut changes = std::mem::take(&mut self.changes);
        let s = &mut self.slots[id as usize];
        for (&other, &bits) in &s.rel {
            if bits & SEEN != 0 {
                as_target.push(AoiEvent {
                    watcher: other,
                    target: id,
                    kind: AoiEventKind::Leave,
                });
            }
            if bits & SEES != 0 {
                as_watcher.push(AoiEvent {
                    watcher: id,
                    target: other,
                    kind: AoiEventKind::Leave,
                });
            }
            changes.push((other, bits));
        }
        s.rel.clear();
        s.n_sees = 0;
        s.n_seen = 0;
        for (other, bits) in changes.drain(..) {
            self.slots[other as usize].toggle(id, mirror(bits));
        }
        as_target.sort_unstable_by_key(|e| e.watcher);
        as_watcher.sort_unstable_by_key(|e| e.target);
        out.append(&mut as_target);
        out.append(&mut as_watcher);
        self.as_watcher = as_watcher;
        self.as_target = as_target;
        self.changes = changes;

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
        self.related(id, SEES)
    }

    /// The entities that see `id`, in no particular (but deterministic) order.
    ///
    /// # Panics
    /// If `id` is not live.
    pub fn interested_by(&self, id: AoiId) -> impl Iterator<Item = AoiId> + '_ {
        self.related(id, SEEN)
    }

    /// How many entities `id` sees.
    ///
    /// # Panics
    /// If `id` is not live.
    pub fn interested_in_len(&self, id: AoiId) -> usize {
        self.slot(id).n_sees as usize
    }

    /// How many entities see `id`.
    ///
    /// # Panics
    /// If `id` is not live.
    pub fn interested_by_len(&self, id: AoiId) -> usize {
        self.slot(id).n_seen as usize
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

    fn related(&self, id: AoiId, bit: u8) -> impl Iterator<Item = AoiId> + '_ {
        self.slot(id)
            .rel
            .iter()
            .filter(move |(_, &b)| b & bit != 0)
            .map(|(&other, _)| other)
    }

    /// The cell coordinate of `v`: monotonic in `v`, saturating at the `i32` range.
    fn cell_coord(&self, v: f64) -> i64 {
        i64::from((v * self.inv_cell).floor() as i32)
    }

    /// The chunk key and the cell in that chunk of a placed position.
    fn locate(&self, x: f32, z: f32) -> (u64, u32) {
        let cx = self.cell_coord(f64::from(x));
        let cz = self.cell_coord(f64::from(z));
        let mask = CHUNK_SIDE - 1;
        let cell = ((cz & mask) << CHUNK_BITS) | (cx & mask);
        (pack(cx >> CHUNK_BITS, cz >> CHUNK_BITS), cell as u32)
    }

    /// The cells that hold every entity within `reach` of `(x, z)` by the rule.
    fn cell_box(&self, x: f32, z: f32, reach: f32) -> CellBox {
        let (x, z, reach) = (f64::from(x), f64::from(z), f64::from(reach));
        let px = (x.abs() + reach) * PAD;
        let pz = (z.abs() + reach) * PAD;
        CellBox {
            x0: self.cell_coord(x - reach - px),
            x1: self.cell_coord(x + reach + px),
            z0: self.cell_coord(z - reach - pz),
            z1: self.cell_coord(z + reach + pz),
        }
    }

    /// Appends to `out` the events of `id` going from `old` to `new` (a placed position or
    /// `None`), in the documented order, and updates the relation maps. `id` must not be in
    /// a chunk at a position other than `old` (scans skip it by ID).
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
        let mut changes = std::mem::take(&mut self.changes);
        let wide_limit = self.wide_limit;
        // An unplaced side is at NaN, where the rule is false.
        let (ox, oz) = old.unwrap_or((f32::NAN, f32::NAN));
        let (nx, nz) = new.unwrap_or((f32::NAN, f32::NAN));
        let visit = |it: &Item| {
            if it.id == id {
                return;
            }
            let mut bits = 0;
            let now = sees(nx, nz, r, it.x, it.z);
            if sees(ox, oz, r, it.x, it.z) != now {
                as_watcher.push(AoiEvent {
                    watcher: id,
                    target: it.id,
                    kind: kind(now),
                });
                bits |= SEES;
            }
            if it.r <= wide_limit {
                let now = sees(it.x, it.z, it.r, nx, nz);
                if sees(it.x, it.z, it.r, ox, oz) != now {
                    as_target.push(AoiEvent {
                        watcher: it.id,
                        target: id,
                        kind: kind(now),
                    });
                    bits |= SEEN;
                }
            }
            if bits != 0 {
                changes.push((it.id, bits));
            }
        };
        self.scan(&boxes, visit);
        for &w in &self.wide {
            let s = &self.slots[w as usize];
            if w == id || !placed(s.x, s.z) {
                continue;
            }
            let now = sees(s.x, s.z, s.r, nx, nz);
            if sees(s.x, s.z, s.r, ox, oz) != now {
                as_target.push(AoiEvent {
                    watcher: w,
                    target: id,
                    kind: kind(now),
                });
                changes.push((w, SEEN));
            }
        }
        for (other, bits) in changes.drain(..) {
            self.slots[id as usize].toggle(other, bits);
            self.slots[other as usize].toggle(id, mirror(bits));
        }
        // Leave before Enter, then by the other party's ID.
        as_watcher.sort_unstable_by_key(|e| (e.kind == AoiEventKind::Enter, e.target));
        as_target.sort_unstable_by_key(|e| (e.kind == AoiEventKind::Enter, e.watcher));
        out.append(&mut as_watcher);
        out.append(&mut as_target);
        self.as_watcher = as_watcher;
        self.as_target = as_target;
        self.changes = changes;
    }

    /// Calls `f` on every item in the given (disjoint) boxes of cells, or on every item when
    /// the boxes cover more chunks than exist; each item at most once.
    fn scan(&self, boxes: &[Option<CellBox>; 2], mut f: impl FnMut(&Item)) {
        let area: u128 = boxes.iter().flatten().map(|b| b.chunks().area()).sum();
        if area > self.chunk_index.len() as u128 {
            for ch in &self.chunks {
                ch.items.iter().for_each(&mut f);
            }
            return;
        }
        for b in boxes.iter().flatten() {
            let c = b.chunks();
            for kz in c.z0..=c.z1 {
                for kx in c.x0..=c.x1 {
                    let Some(&ci) = self.chunk_index.get(&pack(kx, kz)) else {
                        continue;
                    };
                    let ch = &self.chunks[ci as usize];
                    let (bx, bz) = (kx * CHUNK_SIDE, kz * CHUNK_SIDE);
                    let lx0 = (b.x0 - bx).max(0) as usize;
                    let lx1 = (b.x1 - bx).min(CHUNK_SIDE - 1) as usize;
                    let lz0 = (b.z0 - bz).max(0) as usize;
                    let lz1 = (b.z1 - bz).min(CHUNK_SIDE - 1) as usize;
                    for lz in lz0..=lz1 {
                        let row = lz << CHUNK_BITS;
                        let from = ch.start[row + lx0] as usize;
                        let to = ch.start[row + lx1 + 1] as usize;
                        ch.items[from..to].iter().for_each(&mut f);
                    }
                }
            }
        }
    }

    /// Puts a live entity into the chunk and cell of its position, if it is placed.
    fn place(&mut self, id: AoiId) {
        let s = &self.slots[id as usize];
        debug_assert_eq!(s.chunk, NO_CHUNK);
        if !placed(s.x, s.z) {
            return;
        }
        let item = Item {
            x: s.x,
            z: s.z,
            r: s.r,
            id,
        };
        let (key, cell) = self.locate(s.x, s.z);
        let ci = match self.chunk_index.get(&key) {
            Some(&ci) => ci,
            None => {
                let ci = self.free_chunks.pop().unwrap_or_else(|| {
                    self.chunks.push(Chunk {
                        items: Vec::new(),
                        start: [0; CHUNK_CELLS + 1],
                    });
                    self.chunk_keys.push(0);
                    (self.chunks.len() - 1) as u32
                });
                self.chunk_keys[ci as usize] = key;
                self.chunk_index.insert(key, ci);
                ci
            }
        };
        let ch = &mut self.chunks[ci as usize];
        ch.items.insert(ch.start[cell as usize + 1] as usize, item);
        for s in &mut ch.start[cell as usize + 1..] {
            *s += 1;
        }
        let s = &mut self.slots[id as usize];
        s.chunk = ci;
        s.cell = cell;
    }

    /// Takes an entity out of its chunk, if it is in one.
    fn unplace(&mut self, id: AoiId) {
        let s = &mut self.slots[id as usize];
        let (ci, cell) = (s.chunk as usize, s.cell);
        if s.chunk == NO_CHUNK {
            return;
        }
        s.chunk = NO_CHUNK;
        let ch = &mut self.chunks[ci];
        let (a, b) = cell_range(ch, cell);
        let at = a + ch.items[a..b]
            .iter()
            .position(|it| it.id == id)
            .expect("aoi: an entity is in its cell");
        ch.items.remove(at);
        for s in &mut ch.start[cell as usize + 1..] {
            *s -= 1;
        }
        if ch.items.is_empty() {
            self.chunk_index.remove(&self.chunk_keys[ci]);
            self.free_chunks.push(ci as u32);
        }
    }
}

/// The item indices of `cell` in `ch`.
fn cell_range(ch: &Chunk, cell: u32) -> (usize, usize) {
    (
        ch.start[cell as usize] as usize,
        ch.start[cell as usize + 1] as usize,
    )
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

    /// Checks the grid, the wide list and the radius counts against the slots.
    fn check_structure<T: Copy>(aoi: &Aoi<T>) {
        let mut items = 0;
        for (&key, &ci) in &aoi.chunk_index {
            assert_eq!(aoi.chunk_keys[ci as usize], key);
            let ch = &aoi.chunks[ci as usize];
            assert!(!ch.items.is_empty(), "an empty chunk is unlisted");
            assert_eq!(ch.start[0], 0);
            assert_eq!(ch.start[CHUNK_CELLS] as usize, ch.items.len());
            for cell in 0..CHUNK_CELLS as u32 {
                let (a, b) = cell_range(ch, cell);
                assert!(a <= b);
                for it in &ch.items[a..b] {
                    let s = &aoi.slots[it.id as usize];
                    assert!(s.payload.is_some());
                    assert_eq!((s.chunk, s.cell), (ci, cell));
                    assert_eq!(aoi.locate(it.x, it.z), (key, cell));
                    assert!(s.x.to_bits() == it.x.to_bits() && s.z.to_bits() == it.z.to_bits());
                    assert_eq!(s.r, it.r);
                }
            }
            items += ch.items.len();
        }
        for &ci in &aoi.free_chunks {
            assert!(aoi.chunks[ci as usize].items.is_empty());
            assert!(aoi.chunks[ci as usize].start.iter().all(|&v| v == 0));
        }
        let mut narrow = BTreeMap::new();
        let mut placed_live = 0;
        for (id, s) in aoi.slots.iter().enumerate() {
            if s.payload.is_none() {
                assert!(s.rel.is_empty() && s.chunk == NO_CHUNK && s.wide_at == NOT_WIDE);
                continue;
            }
            if placed(s.x, s.z) {
                placed_live += 1;
                assert_ne!(s.chunk, NO_CHUNK);
            } else {
                assert_eq!(s.chunk, NO_CHUNK);
            }
            if s.r > aoi.wide_limit {
                assert_eq!(aoi.wide[s.wide_at as usize] as usize, id);
            } else {
                assert_eq!(s.wide_at, NOT_WIDE);
                *narrow.entry(s.r.to_bits()).or_insert(0) += 1;
            }
            for (&o, &bits) in &s.rel {
                assert_ne!(bits, 0);
                assert_eq!(
                    aoi.slots[o as usize].rel.get(&(id as AoiId)),
                    Some(&mirror(bits))
                );
            }
        }
        assert_eq!(items, placed_live);
        assert_eq!(narrow, aoi.narrow_radii);
        let max = narrow
            .last_key_value()
            .map_or(0.0, |(&b, _)| f32::from_bits(b));
        assert_eq!(aoi.narrow_max, max);
        assert_eq!(
            aoi.wide.len() + narrow.values().sum::<u32>() as usize,
            aoi.len()
        );
    }

    /// Compares every live entity's relations with the relation recomputed from scratch.
    fn check_all(aoi: &Aoi<u64>, m: &Model, payloads: &BTreeMap<AoiId, u64>) {
        check_structure(aoi);
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
            assert_eq!(aoi.payload(id), payloads[&id]);
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
        let mut payloads = BTreeMap::new();
        let symmetric = s.radii.len() == 1;
        for step in 0..s.ops {
            out.clear();
            let roll = rng.below(100);
            let (want, id) = if live.is_empty() || (live.len() < s.max_live && roll < 30) {
                let (x, z) = (coord(&mut rng, s), coord(&mut rng, s));
                let r = s.radii[rng.below(s.radii.len() as u64) as usize];
                let next = aoi.free.last().copied();
                let id = aoi.enter(step as u64, x, z, r, &mut out);
                if let Some(n) = next {
                    assert_eq!(id, n, "the last freed slot is reused first");
                }
                payloads.insert(id, step as u64);
                live.push(id);
                (m.apply(Op::Enter, id, Some((x, z, sanitize_radius(r)))), id)
            } else if roll < 40 {
                let i = rng.below(live.len() as u64) as usize;
                let id = live.swap_remove(i);
                assert_eq!(aoi.leave(id, &mut out), payloads.remove(&id).unwrap());
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
            if step % 64 == 0 {
                check_all(&aoi, &m, &payloads);
            }
        }
        check_all(&aoi, &m, &payloads);
        for id in live {
            out.clear();
            aoi.leave(id, &mut out);
            assert_eq!(out, m.apply(Op::Leave, id, None));
        }
        check_structure(&aoi);
        assert!(aoi.is_empty() && aoi.chunk_index.is_empty() && aoi.wide.is_empty());
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
    fn rounding_in_the_rule_never_hides_a_candidate_in_the_next_cell() {
        // 1.0 - (-5e-8) rounds to 1.0 in f32, so w sees t, although w.x + r is in cell 0
        // and t in cell 1: the scanned cells are padded. Both orders of entering.
        for w_first in [true, false] {
            let mut aoi = Aoi::new(1.0);
            let mut out = Vec::new();
            // Far-away chunks, so that the scan uses its box and not every chunk.
            for k in 1..=8 {
                aoi.enter(9, 1000.0 * k as f32, 0.0, 0.0, &mut out);
            }
            let (w, t) = if w_first {
                let w = aoi.enter(0, -5e-8, 0.0, 1.0, &mut out);
                (w, aoi.enter(1, 1.0, 0.0, 0.0, &mut out))
            } else {
                let t = aoi.enter(1, 1.0, 0.0, 0.0, &mut out);
                (aoi.enter(0, -5e-8, 0.0, 1.0, &mut out), t)
            };
            assert_eq!(out, [ev(w, t, Enter)], "w first: {w_first}");
        }
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
