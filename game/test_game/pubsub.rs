//! PublishSubscribeService: subjects and their subscribers (GoWorld's
//! ext/pubsub/PublishSubscribeService.go).
//!
//! RPCs: `Subscribe(eid, subject)` (a trailing `*` makes the subject a prefix: `boss_*`
//! matches `boss_`, `boss_1`, ...), `Unsubscribe(eid, subject)`, `UnsubscribeAll(eid)` and
//! `Publish(subject, content)`, which calls `OnPublish(subject, content)` on every matching
//! subscriber. GoWorld keeps the subjects in a trie; a publish walks the subject's prefixes,
//! which is what the prefix lookups here do. The state is a plain field, so it travels with
//! a hot swap (GoWorld's OnFreeze/OnRestored copy it through attributes).
//!
//! Sharding: callers shard exact subjects by the subject. GoWorld's test_game shards a
//! wildcard subscription by its pattern (`boss_*`) but a publish by the concrete subject
//! (`boss_42`), so the two meet only when they happen to hash to the same shard. Our Avatar
//! subscribes wildcards on every shard instead (see `avatar.rs`): whichever shard a publish
//! goes to has them, and each subscriber still gets each message once.

use std::collections::{BTreeMap, BTreeSet};

use goworld_common::id::EntityId;
use goworld_game::args;
use goworld_game::prelude::*;
use serde::{Deserialize, Serialize};

/// The service's name (GoWorld's `pubsub.ServiceName`).
pub const SERVICE_NAME: &str = "PublishSubscribeService";
/// Its shards in test_game.
pub const SHARDS: u32 = 3;
/// The nil-space method a new shard calls on every game: its Avatars subscribe again.
pub const RESUBSCRIBE: &str = "PubSubResubscribe";

/// The service entity (one per shard).
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PublishSubscribeService {
    /// Exact subject → subscribers.
    subscribers: BTreeMap<String, BTreeSet<EntityId>>,
    /// Subject prefix (without the `*`) → subscribers.
    wildcard_subscribers: BTreeMap<String, BTreeSet<EntityId>>,
    /// Subscriber → its exact subjects (for `UnsubscribeAll`).
    by_subscriber: BTreeMap<EntityId, BTreeSet<String>>,
    /// Subscriber → its prefixes.
    wildcard_by_subscriber: BTreeMap<EntityId, BTreeSet<String>>,
}

impl Entity for PublishSubscribeService {
    fn describe(desc: &mut TypeDesc<Self>) {
        desc.method("Publish", Expose::Server, PublishSubscribeService::publish)
            .method(
                "Subscribe",
                Expose::Server,
                PublishSubscribeService::subscribe,
            )
            .method(
                "Unsubscribe",
                Expose::Server,
                PublishSubscribeService::unsubscribe,
            )
            .method(
                "UnsubscribeAll",
                Expose::Server,
                PublishSubscribeService::unsubscribe_all,
            );
    }

    fn on_created(&mut self, ctx: &mut Ctx) {
        log::info!("Registering {SERVICE_NAME} {} ...", ctx.id());
        // A shard re-created after its game died starts empty: every game's Avatars
        // subscribe again (Subscribe is idempotent; at start-up there are none yet).
        // Beyond GoWorld, whose subscribers stay lost.
        ctx.call_nil_spaces(RESUBSCRIBE, args![]);
    }
}

/// Splits a subscription subject into (subject, wildcard); `None` if a `*` is not last.
fn parse_pattern(subject: &str) -> Option<(&str, bool)> {
    match subject.find('*') {
        None => Some((subject, false)),
        Some(i) if i == subject.len() - 1 => Some((&subject[..i], true)),
        Some(_) => None,
    }
}

impl PublishSubscribeService {
    /// `Publish(subject, content)`: `OnPublish(subject, content)` to the subscribers of
    /// `subject` and of each of its prefixes. A subject with `*` is refused (GoWorld panics).
    fn publish(&mut self, ctx: &mut Ctx, (subject, content): (String, String)) {
        if subject.contains('*') {
            log::warn!("Publish: subject {subject:?} must not contain '*'; dropped");
            return;
        }
        let to = self.matching(&subject);
        ctx.call_many(to, "OnPublish", args![subject, content]);
    }

    /// `Subscribe(eid, subject)`; a trailing `*` subscribes to the prefix.
    fn subscribe(&mut self, _ctx: &mut Ctx, (eid, subject): (EntityId, String)) {
        if !self.add(eid, &subject) {
            log::warn!("Subscribe: '*' may only end the subject: {subject:?}; dropped");
        }
    }

    /// `Unsubscribe(eid, subject)`, the same pattern as subscribed.
    fn unsubscribe(&mut self, _ctx: &mut Ctx, (eid, subject): (EntityId, String)) {
        if !self.remove(eid, &subject) {
            log::warn!("Unsubscribe: '*' may only end the subject: {subject:?}; dropped");
        }
    }

    /// `UnsubscribeAll(eid)`: every subject and prefix of `eid`.
    fn unsubscribe_all(&mut self, _ctx: &mut Ctx, (eid,): (EntityId,)) {
        self.remove_all(eid);
    }

    /// The subscribers a publish on `subject` reaches: those of each prefix (wildcards),
    /// then the exact ones. Each entity once.
    fn matching(&self, subject: &str) -> Vec<EntityId> {
        let mut to: Vec<EntityId> = Vec::new();
        let mut sources = 0;
        for end in (0..=subject.len()).filter(|&i| subject.is_char_boundary(i)) {
            if let Some(s) = self.wildcard_subscribers.get(&subject[..end]) {
                to.extend(s.iter().copied());
                sources += 1;
            }
        }
        if let Some(s) = self.subscribers.get(subject) {
            to.extend(s.iter().copied());
            sources += 1;
        }
        // One set has no duplicates; with several, an entity in two of them is called once.
        if sources > 1 {
            let mut seen = std::collections::HashSet::with_capacity(to.len());
            to.retain(|e| seen.insert(*e));
        }
        to
    }

    /// Adds a subscription; false if the pattern is invalid.
    fn add(&mut self, eid: EntityId, pattern: &str) -> bool {
        let Some((subject, wildcard)) = parse_pattern(pattern) else {
            return false;
        };
        let (subs, mine) = self.tables(wildcard);
        subs.entry(subject.to_string()).or_default().insert(eid);
        mine.entry(eid).or_default().insert(subject.to_string());
        true
    }

    /// Removes a subscription; false if the pattern is invalid.
    fn remove(&mut self, eid: EntityId, pattern: &str) -> bool {
        let Some((subject, wildcard)) = parse_pattern(pattern) else {
            return false;
        };
        let (subs, mine) = self.tables(wildcard);
        remove_from(subs, subject, &eid);
        remove_from(mine, &eid, subject);
        true
    }

    /// Removes every subscription of `eid`.
    fn remove_all(&mut self, eid: EntityId) {
        for wildcard in [false, true] {
            let (subs, mine) = self.tables(wildcard);
            for subject in mine.remove(&eid).unwrap_or_default() {
                remove_from(subs, &subject, &eid);
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn tables(
        &mut self,
        wildcard: bool,
    ) -> (
        &mut BTreeMap<String, BTreeSet<EntityId>>,
        &mut BTreeMap<EntityId, BTreeSet<String>>,
    ) {
        if wildcard {
            (
                &mut self.wildcard_subscribers,
                &mut self.wildcard_by_subscriber,
            )
        } else {
            (&mut self.subscribers, &mut self.by_subscriber)
        }
    }
}

/// Removes `val` from the set at `key`, and the set once empty.
fn remove_from<K, V, Q, R>(map: &mut BTreeMap<K, BTreeSet<V>>, key: &Q, val: &R)
where
    K: Ord + std::borrow::Borrow<Q>,
    Q: Ord + ?Sized,
    V: Ord + std::borrow::Borrow<R>,
    R: Ord + ?Sized,
{
    if let Some(set) = map.get_mut(key) {
        set.remove(val);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> EntityId {
        EntityId::parse(&format!("awVBNWhsgjH2AAA{}", (b'A' + n) as char)).unwrap()
    }

    #[test]
    fn patterns() {
        assert_eq!(parse_pattern("boss_*"), Some(("boss_", true)));
        assert_eq!(parse_pattern("monster"), Some(("monster", false)));
        assert_eq!(parse_pattern("*"), Some(("", true)));
        assert_eq!(parse_pattern("a*b"), None);
        assert_eq!(parse_pattern("**"), None);
    }

    #[test]
    fn publish_reaches_exact_and_prefix_subscribers_once() {
        let mut s = PublishSubscribeService::default();
        let (a, b, c) = (id(0), id(1), id(2));
        assert!(s.add(a, "monster"));
        assert!(s.add(a, "boss_"));
        assert!(s.add(b, "monster"));
        assert!(s.add(b, "boss_*"));
        assert!(s.add(c, "*"));
        assert!(s.add(c, "monster"));
        assert!(!s.add(c, "a*b"));
        assert_eq!(s.matching("monster"), vec![c, a, b]);
        assert_eq!(s.matching("boss_42"), vec![c, b]);
        assert_eq!(s.matching("boss_"), vec![c, b, a]);
        assert_eq!(s.matching("npc"), vec![c]);
        assert_eq!(s.matching("无名"), vec![c]);

        assert!(s.remove(a, "monster"));
        assert_eq!(s.matching("monster"), vec![c, b]);
        assert!(s.remove(b, "boss_*"));
        assert_eq!(s.matching("boss_1"), vec![c]);
        s.remove_all(c);
        s.remove_all(b);
        assert_eq!(s.matching("monster"), Vec::<EntityId>::new());
        assert_eq!(s.matching("boss_"), vec![a]);
        s.remove_all(a);
        assert!(s.subscribers.is_empty() && s.wildcard_subscribers.is_empty());
        assert!(s.by_subscriber.is_empty() && s.wildcard_by_subscriber.is_empty());
    }
}
