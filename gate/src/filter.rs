//! The gate's filter-property index (reference §2.6, §9.3): GoWorld's `FilterTree`, done right.
//!
//! Games tag clients with string properties (1010 SET_CLIENTPROXY_FILTER_PROP), wipe a
//! client's tags (1011 CLEAR_CLIENTPROXY_FILTER_PROPS) and call every client whose property
//! compares to a value in a given way (1501 CALL_FILTERED_CLIENTS). [`FilterIndex`] answers
//! that last question without looking at clients that do not match: per key it keeps an
//! ordered map from value to the clients holding it, so every operator is one or two range
//! walks, `O(log n + matches)`.
//!
//! Semantics, following GoWorld's `FilterTree.Visit` and `handleCallFilteredClientProxies`:
//!
//! * Values compare bytewise, like Go's `<` on strings. Rust's `str` ordering is bytewise too.
//! * An **empty key** selects every client of the gate, whatever the operator and value.
//! * Otherwise only clients that **have** the key are considered. In particular
//!   [`FilterOp::Ne`] matches clients whose value differs, not clients without the key
//!   (GoWorld's tree only holds clients that set the key, so it never visits the others).
//! * A client holds at most one value per key, so a query yields each client at most once.
//!
//! Unlike GoWorld, the index keeps each client's current properties next to the per-key maps
//! and updates both together: setting a key replaces the old value's entry, clearing removes
//! every entry of the client *and* its property list (GoWorld forgets to empty
//! `cp.filterProps`, §9.3), and a closed client leaves nothing behind. Keys and values no
//! client holds any more are dropped, so the index does not grow with dead keys.

use std::collections::{btree_map, btree_set, BTreeMap, BTreeSet, HashMap};
use std::iter::FusedIterator;
use std::ops::Bound::{self, Excluded, Included, Unbounded};

use goworld_common::proto::FilterOp;
use goworld_common::reactor::ConnId;

/// True if a client whose property has value `have` matches `op val` (bytewise, like Go).
///
/// The plain predicate; [`FilterIndex::query`] gives the same answer without a scan.
pub fn filter_matches(op: FilterOp, have: &str, val: &str) -> bool {
    let (a, b) = (have.as_bytes(), val.as_bytes());
    match op {
        FilterOp::Eq => a == b,
        FilterOp::Ne => a != b,
        FilterOp::Gt => a > b,
        FilterOp::Lt => a < b,
        FilterOp::Gte => a >= b,
        FilterOp::Lte => a <= b,
    }
}

/// Value → clients holding it, for one key.
type ValueTree = BTreeMap<String, BTreeSet<ConnId>>;

/// Clients' filter properties, indexed for range queries. See the module docs.
#[derive(Debug, Default)]
pub struct FilterIndex {
    /// key → value → clients whose property `key` is `value`. No empty sets, no empty trees.
    trees: HashMap<String, ValueTree>,
    /// Every client of the gate with its current properties (possibly none).
    clients: BTreeMap<ConnId, BTreeMap<String, String>>,
}

impl FilterIndex {
    /// An empty index.
    pub fn new() -> FilterIndex {
        FilterIndex::default()
    }

    /// Registers a client with no properties, so an empty-key query reaches it. Does nothing
    /// to a client already registered.
    pub fn add_client(&mut self, conn: ConnId) {
        self.clients.entry(conn).or_default();
    }

    /// Sets property `key` of `conn` to `val`, replacing its old value (registering the client
    /// if needed). An empty key is stored like any other, though a query for it selects every
    /// client anyway, as in GoWorld.
    pub fn set(&mut self, conn: ConnId, key: String, val: String) {
        let props = self.clients.entry(conn).or_default();
        match props.get_mut(&key) {
            Some(old) if *old == val => return,
            Some(old) => {
                let old = std::mem::replace(old, val.clone());
                unindex(&mut self.trees, &key, &old, conn);
            }
            None => {
                props.insert(key.clone(), val.clone());
            }
        }
        self.trees
            .entry(key)
            .or_default()
            .entry(val)
            .or_default()
            .insert(conn);
    }

    /// Removes every property of `conn`; the client stays registered (empty-key queries still
    /// reach it). Leaves no stale entry or property behind.
    pub fn clear(&mut self, conn: ConnId) {
        if let Some(props) = self.clients.get_mut(&conn) {
            for (key, val) in std::mem::take(props) {
                unindex(&mut self.trees, &key, &val, conn);
            }
        }
    }

    /// Forgets `conn` entirely (it closed): no query will yield it again.
    pub fn remove_client(&mut self, conn: ConnId) {
        if let Some(props) = self.clients.remove(&conn) {
            for (key, val) in props {
                unindex(&mut self.trees, &key, &val, conn);
            }
        }
    }

    /// The current properties of `conn`, if it is registered.
    pub fn props(&self, conn: ConnId) -> Option<&BTreeMap<String, String>> {
        self.clients.get(&conn)
    }

    /// Number of registered clients.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// True if some client currently holds property `key`.
    pub fn has_key(&self, key: &str) -> bool {
        self.trees.contains_key(key)
    }

    /// The clients matching `op val` on property `key`, each once: every registered client if
    /// `key` is empty, otherwise only clients holding `key` whose value compares as asked
    /// (bytewise). Costs `O(log n + matches)`; [`FilterOp::Ne`] walks the two ranges either
    /// side of `val`.
    ///
    /// Order: by value, then by connection (all clients in connection order for an empty key).
    pub fn query(&self, op: FilterOp, key: &str, val: &str) -> Matches<'_> {
        if key.is_empty() {
            return Matches(Inner::All(self.clients.keys()));
        }
        let Some(tree) = self.trees.get(key) else {
            return Matches(Inner::Empty);
        };
        let r = |lo: Bound<&str>, hi: Bound<&str>| tree.range::<str, _>((lo, hi));
        let (first, second) = match op {
            FilterOp::Eq => (r(Included(val), Included(val)), None),
            FilterOp::Ne => (
                r(Unbounded, Excluded(val)),
                Some(r(Excluded(val), Unbounded)),
            ),
            FilterOp::Gt => (r(Excluded(val), Unbounded), None),
            FilterOp::Gte => (r(Included(val), Unbounded), None),
            FilterOp::Lt => (r(Unbounded, Excluded(val)), None),
            FilterOp::Lte => (r(Unbounded, Included(val)), None),
        };
        Matches(Inner::Values {
            first,
            second,
            cur: None,
        })
    }

    /// Panics unless the per-key trees and the per-client properties describe the same
    /// entries, with no empty set or tree left over.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let mut from_trees = BTreeSet::new();
        for (key, tree) in &self.trees {
            assert!(!tree.is_empty(), "empty tree left for key {key:?}");
            for (val, set) in tree {
                assert!(!set.is_empty(), "empty set left for {key:?}={val:?}");
                for &c in set {
                    from_trees.insert((c, key.clone(), val.clone()));
                }
            }
        }
        let from_props: BTreeSet<_> = self
            .clients
            .iter()
            .flat_map(|(&c, props)| props.iter().map(move |(k, v)| (c, k.clone(), v.clone())))
            .collect();
        assert_eq!(from_trees, from_props);
    }
}

/// Removes the entry `key = val` of `conn`, dropping the value and key when they empty.
fn unindex(trees: &mut HashMap<String, ValueTree>, key: &str, val: &str, conn: ConnId) {
    let Some(tree) = trees.get_mut(key) else {
        return;
    };
    if let Some(set) = tree.get_mut(val) {
        set.remove(&conn);
        if set.is_empty() {
            tree.remove(val);
        }
    }
    if tree.is_empty() {
        trees.remove(key);
    }
}

/// The clients a [`FilterIndex::query`] selects.
#[derive(Debug)]
pub struct Matches<'a>(Inner<'a>);

#[derive(Debug)]
enum Inner<'a> {
    Empty,
    All(btree_map::Keys<'a, ConnId, BTreeMap<String, String>>),
    Values {
        first: btree_map::Range<'a, String, BTreeSet<ConnId>>,
        second: Option<btree_map::Range<'a, String, BTreeSet<ConnId>>>,
        cur: Option<btree_set::Iter<'a, ConnId>>,
    },
}

impl Iterator for Matches<'_> {
    type Item = ConnId;

    fn next(&mut self) -> Option<ConnId> {
        match &mut self.0 {
            Inner::Empty => None,
            Inner::All(keys) => keys.next().copied(),
            Inner::Values { first, second, cur } => loop {
                if let Some(&c) = cur.as_mut().and_then(Iterator::next) {
                    return Some(c);
                }
                // Both ranges are fused, so asking an exhausted one again is fine.
                let (_, set) = first
                    .next()
                    .or_else(|| second.as_mut().and_then(Iterator::next))?;
                *cur = Some(set.iter());
            },
        }
    }
}

impl FusedIterator for Matches<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use goworld_common::rng::Rng;

    const OPS: [FilterOp; 6] = [
        FilterOp::Eq,
        FilterOp::Ne,
        FilterOp::Gt,
        FilterOp::Lt,
        FilterOp::Gte,
        FilterOp::Lte,
    ];

    fn conn(slot: u32) -> ConnId {
        ConnId { slot, gen: 1 }
    }

    /// Sorted, and checked for duplicates.
    fn run(ix: &FilterIndex, op: FilterOp, key: &str, val: &str) -> Vec<ConnId> {
        let got: Vec<ConnId> = ix.query(op, key, val).collect();
        let set: BTreeSet<ConnId> = got.iter().copied().collect();
        assert_eq!(set.len(), got.len(), "duplicate in {op:?} {key:?} {val:?}");
        set.into_iter().collect()
    }

    /// The brute-force answer from a plain model of every client's properties.
    fn reference(
        model: &BTreeMap<ConnId, BTreeMap<String, String>>,
        op: FilterOp,
        key: &str,
        val: &str,
    ) -> Vec<ConnId> {
        model
            .iter()
            .filter(|(_, props)| {
                key.is_empty() || props.get(key).is_some_and(|h| filter_matches(op, h, val))
            })
            .map(|(&c, _)| c)
            .collect()
    }

    /// Values whose bytewise order differs from numeric or char-count order, plus prefixes,
    /// the empty string and multi-byte UTF-8.
    const VALUES: [&str; 10] = ["", "1", "10", "2", "9", "a", "ab", "b", "é", "\u{7f}"];
    const KEYS: [&str; 4] = ["", "level", "team", "zone"];

    #[test]
    fn every_operator_matches_a_brute_force_reference_under_random_updates() {
        for seed in 0..20 {
            let mut rng = Rng::new(seed);
            let mut ix = FilterIndex::new();
            let mut model: BTreeMap<ConnId, BTreeMap<String, String>> = BTreeMap::new();
            let pick = |rng: &mut Rng, xs: &[&'static str]| xs[rng.below(xs.len() as u64) as usize];
            for step in 0..600 {
                let c = conn(rng.below(24) as u32);
                match rng.below(20) {
                    0 => {
                        ix.clear(c);
                        if let Some(p) = model.get_mut(&c) {
                            p.clear();
                        }
                    }
                    1 => {
                        ix.remove_client(c);
                        model.remove(&c);
                    }
                    2 => {
                        ix.add_client(c);
                        model.entry(c).or_default();
                    }
                    _ => {
                        let (k, v) = (pick(&mut rng, &KEYS), pick(&mut rng, &VALUES));
                        ix.set(c, k.into(), v.into());
                        model.entry(c).or_default().insert(k.into(), v.into());
                    }
                }
                if step % 7 == 0 {
                    ix.check_invariants();
                }
                assert_eq!(ix.client_count(), model.len());
                for op in OPS {
                    let (k, v) = (pick(&mut rng, &KEYS), pick(&mut rng, &VALUES));
                    assert_eq!(
                        run(&ix, op, k, v),
                        reference(&model, op, k, v),
                        "seed {seed} step {step}: {op:?} {k:?} {v:?}"
                    );
                }
            }
            // Every operator on every key/value pair at the end, too.
            for op in OPS {
                for k in KEYS {
                    for v in VALUES {
                        assert_eq!(run(&ix, op, k, v), reference(&model, op, k, v));
                    }
                }
            }
        }
    }

    #[test]
    fn empty_key_selects_every_client_whatever_the_op() {
        let mut ix = FilterIndex::new();
        ix.add_client(conn(1));
        ix.set(conn(2), "level".into(), "5".into());
        ix.add_client(conn(3));
        ix.clear(conn(3));
        for op in OPS {
            assert_eq!(run(&ix, op, "", "zzz"), vec![conn(1), conn(2), conn(3)]);
        }
    }

    #[test]
    fn ne_ignores_clients_without_the_key_like_goworld() {
        let mut ix = FilterIndex::new();
        ix.set(conn(1), "team".into(), "red".into());
        ix.set(conn(2), "team".into(), "blue".into());
        ix.set(conn(3), "zone".into(), "x".into());
        ix.add_client(conn(4));
        assert_eq!(run(&ix, FilterOp::Ne, "team", "red"), vec![conn(2)]);
        assert!(run(&ix, FilterOp::Ne, "nobody", "red").is_empty());
    }

    #[test]
    fn set_replaces_the_old_value() {
        let mut ix = FilterIndex::new();
        ix.set(conn(1), "level".into(), "3".into());
        ix.set(conn(1), "level".into(), "7".into());
        ix.set(conn(1), "level".into(), "7".into());
        assert!(run(&ix, FilterOp::Eq, "level", "3").is_empty());
        assert_eq!(run(&ix, FilterOp::Eq, "level", "7"), vec![conn(1)]);
        assert_eq!(run(&ix, FilterOp::Gte, "level", ""), vec![conn(1)]);
        ix.check_invariants();
    }

    #[test]
    fn clear_leaves_no_stale_state() {
        // GoWorld's bug (§9.3): CLEAR removed the tree entries but kept cp.filterProps.
        let mut ix = FilterIndex::new();
        ix.set(conn(1), "level".into(), "3".into());
        ix.set(conn(1), "team".into(), "red".into());
        ix.set(conn(2), "team".into(), "red".into());
        ix.clear(conn(1));
        assert_eq!(ix.props(conn(1)).map(BTreeMap::len), Some(0));
        assert!(!ix.has_key("level"));
        for op in OPS {
            for v in VALUES {
                assert!(!run(&ix, op, "level", v).contains(&conn(1)));
                assert!(!run(&ix, op, "team", v).contains(&conn(1)));
            }
        }
        assert_eq!(run(&ix, FilterOp::Eq, "team", "red"), vec![conn(2)]);
        // A later set starts from scratch.
        ix.set(conn(1), "level".into(), "4".into());
        assert_eq!(run(&ix, FilterOp::Lte, "level", "9"), vec![conn(1)]);
        ix.check_invariants();
    }

    #[test]
    fn a_removed_client_is_never_matched_again() {
        let mut ix = FilterIndex::new();
        ix.set(conn(1), "level".into(), "3".into());
        ix.set(conn(2), "level".into(), "3".into());
        ix.remove_client(conn(1));
        ix.remove_client(conn(1));
        assert_eq!(ix.props(conn(1)), None);
        for op in OPS {
            for k in KEYS {
                for v in VALUES {
                    assert!(!run(&ix, op, k, v).contains(&conn(1)));
                }
            }
        }
        ix.remove_client(conn(2));
        assert!(!ix.has_key("level"));
        ix.check_invariants();
    }
}
