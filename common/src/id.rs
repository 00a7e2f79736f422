//! Entity and client IDs, and the hashes that choose a dispatcher.
//!
//! An ID is 16 ASCII characters: GoWorld's 12-byte ObjectId-like value (unix seconds, a host
//! hash, the pid and a counter) in base64 over the alphabet `A–Z a–z 0–9 _ .`, without padding.
//! On the wire it is the 16 raw bytes. Generation takes the time as an argument and keeps its
//! counter in an [`IdGen`] value, so component logic stays clock-free and several games can
//! live in one test process without colliding (give each its own `pid` field).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// Length of an entity or client ID on the wire and as text.
pub const ID_LEN: usize = 16;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.";

/// A 16-byte entity ID. Client IDs use the same format (see [`ClientId`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct EntityId(pub [u8; ID_LEN]);

impl Hash for EntityId {
    /// Two words instead of a length prefix and 16 bytes: with [`FastHasher`] that is two
    /// multiplies per lookup.
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (a, b) = self.0.split_at(8);
        state.write_u64(u64::from_le_bytes(a.try_into().expect("8 bytes")));
        state.write_u64(u64::from_le_bytes(b.try_into().expect("8 bytes")));
    }
}

/// A fast hasher for the routing tables: each word is mixed with a folded 128-bit multiply.
///
/// SipHash took a third of the dispatcher's CPU. FxHash-style hashing is no replacement:
/// generated IDs differ only in their last characters, which it spreads badly (ten times the
/// instructions from collisions, measured). The keys come from games, never from clients, so
/// a fixed seed is acceptable; a client can only look IDs up.
#[derive(Debug, Clone, Copy)]
pub struct FastHasher(u64);

impl Default for FastHasher {
    fn default() -> Self {
        FastHasher(0x243f_6a88_85a3_08d3)
    }
}

#[inline]
fn folded_mul(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.0 = folded_mul(self.0 ^ x, 0x9e37_79b9_7f4a_7c15);
    }

    #[inline]
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }

    #[inline]
    fn write_u16(&mut self, x: u16) {
        self.write_u64(u64::from(x));
    }

    #[inline]
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A hash map keyed by IDs (or connections) with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
/// A hash set with [`FastHasher`].
pub type FastSet<K> = HashSet<K, BuildHasherDefault<FastHasher>>;

/// Client IDs are generated like entity IDs; the alias keeps signatures readable.
pub type ClientId = EntityId;

impl EntityId {
    /// The all-zero ID; never generated, used as "no entity".
    pub const NONE: EntityId = EntityId([0; ID_LEN]);

    /// Reads an ID from exactly 16 bytes; any other length is `None`.
    pub fn from_slice(b: &[u8]) -> Option<EntityId> {
        let arr: [u8; ID_LEN] = b.try_into().ok()?;
        Some(EntityId(arr))
    }

    /// Builds an ID from text; `None` unless it is exactly 16 bytes.
    pub fn parse(s: &str) -> Option<EntityId> {
        Self::from_slice(s.as_bytes())
    }

    /// The raw 16 bytes.
    pub fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// True for [`EntityId::NONE`].
    pub fn is_none(&self) -> bool {
        self.0 == [0; ID_LEN]
    }

    /// The ID as text. IDs from the wire may hold any bytes; non-UTF-8 ones show lossily.
    pub fn to_text(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) => f.write_str(s),
            Err(_) => {
                for b in self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntityId({self})")
    }
}

/// Entity IDs travel in entity state (serde) as their 16-character text, like GoWorld's
/// `EntityID` strings.
impl serde::Serialize for EntityId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_text())
    }
}

impl<'de> serde::Deserialize<'de> for EntityId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Ok(EntityId::NONE);
        }
        EntityId::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("entity ID {s:?} is not 16 bytes")))
    }
}

/// Base64 (GoWorld's alphabet, no padding) of 12 bytes: exactly 16 characters.
fn encode12(b: &[u8; 12]) -> EntityId {
    let mut out = [0u8; ID_LEN];
    for (i, chunk) in b.chunks(3).enumerate() {
        let n = (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8) | u32::from(chunk[2]);
        out[i * 4] = ALPHABET[(n >> 18) as usize & 63];
        out[i * 4 + 1] = ALPHABET[(n >> 12) as usize & 63];
        out[i * 4 + 2] = ALPHABET[(n >> 6) as usize & 63];
        out[i * 4 + 3] = ALPHABET[n as usize & 63];
    }
    EntityId(out)
}

/// GoWorld's `GenFixedUUID`: the bytes left-padded with zeros (or cut) to 12, then encoded.
pub fn fixed_id(b: &[u8]) -> EntityId {
    let mut buf = [0u8; 12];
    if b.len() >= 12 {
        buf.copy_from_slice(&b[..12]);
    } else {
        buf[12 - b.len()..].copy_from_slice(b);
    }
    encode12(&buf)
}

/// The fixed ID of game `game_id`'s nil space (`GetNilSpaceID`): game 1 is `AAAAAAAAAAAAAAAx`.
pub fn nil_space_id(game_id: u16) -> EntityId {
    fixed_id(game_id.to_string().as_bytes())
}

/// Generates IDs the way GoWorld's `GenUUID` does. The time is an argument, the host hash and
/// pid are fields, so tests can make independent, deterministic generators.
#[derive(Debug, Clone)]
pub struct IdGen {
    host: [u8; 3],
    pid: u16,
    counter: u32,
}

impl IdGen {
    /// A generator with GoWorld's layout. `host` is the first three bytes of md5(hostname) in
    /// GoWorld; any three bytes that differ per machine will do.
    pub fn new(host: [u8; 3], pid: u16) -> IdGen {
        IdGen {
            host,
            pid,
            counter: 0,
        }
    }

    /// A generator for this process: a hash of the hostname and the real pid.
    pub fn for_process() -> IdGen {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let h = crate::id::hash_string(host.trim().as_bytes()).to_be_bytes();
        IdGen::new([h[0], h[1], h[2]], std::process::id() as u16)
    }

    /// The next ID, stamped with `unix_secs`. The counter wraps at 24 bits, as in GoWorld.
    pub fn next(&mut self, unix_secs: u32) -> EntityId {
        self.counter = self.counter.wrapping_add(1);
        let t = unix_secs.to_be_bytes();
        let c = self.counter.to_be_bytes();
        let p = self.pid.to_be_bytes();
        let b = [
            t[0],
            t[1],
            t[2],
            t[3],
            self.host[0],
            self.host[1],
            self.host[2],
            p[0],
            p[1],
            c[1],
            c[2],
            c[3],
        ];
        encode12(&b)
    }
}

/// Maps reactor time to unix seconds for ID stamps, from one reading the binary's shell
/// takes at start, so component logic never reads the wall clock itself.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    pub at: std::time::Instant,
    pub unix_secs: u32,
}

impl WallClock {
    /// Unix seconds at reactor time `now`.
    pub fn secs(&self, now: std::time::Instant) -> u32 {
        self.unix_secs
            .wrapping_add(now.saturating_duration_since(self.at).as_secs() as u32)
    }
}

/// GoWorld's `common.HashString`: LevelDB's murmur-like hash (seed `0xbc9f1d34`).
pub fn hash_string(data: &[u8]) -> u32 {
    const M: u32 = 0xc6a4a793;
    const R: u32 = 24;
    let mut h: u32 = 0xbc9f1d34 ^ (data.len() as u32).wrapping_mul(M);
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        h = h.wrapping_add(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        h = h.wrapping_mul(M);
        h ^= h >> 16;
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        if rest.len() == 3 {
            h = h.wrapping_add(u32::from(rest[2]) << 16);
        }
        if rest.len() >= 2 {
            h = h.wrapping_add(u32::from(rest[1]) << 8);
        }
        h = h.wrapping_add(u32::from(rest[0]));
        h = h.wrapping_mul(M);
        h ^= h >> R;
    }
    h
}

/// The shard of a service with `shards` shards that `key` maps to (GoWorld's `shardByKey`:
/// `HashString(key) % shards`).
pub fn shard_by_key(key: &str, shards: u32) -> u32 {
    hash_string(key.as_bytes()) % shards.max(1)
}

/// The dispatcher (1-based) that carries traffic for entity `id` among `n` dispatchers.
pub fn dispatcher_for_entity(id: &EntityId, n: u16) -> u16 {
    let hash = u32::from(id.0[14]) * 256 + u32::from(id.0[15]);
    (hash % u32::from(n.max(1))) as u16 + 1
}

/// The dispatcher (1-based) that carries position syncs for gate `gate_id`.
pub fn dispatcher_for_gate(gate_id: u16, n: u16) -> u16 {
    (u32::from(gate_id.wrapping_sub(1)) % u32::from(n.max(1))) as u16 + 1
}

/// The dispatcher (1-based) that holds service-registry key `key`.
pub fn dispatcher_for_service(key: &str, n: u16) -> u16 {
    (hash_string(key.as_bytes()) % u32::from(n.max(1))) as u16 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nil_space_ids_match_goworld() {
        assert_eq!(nil_space_id(1).to_string(), "AAAAAAAAAAAAAAAx");
        assert_eq!(nil_space_id(2).to_string(), "AAAAAAAAAAAAAAAy");
        assert_eq!(nil_space_id(3).to_string(), "AAAAAAAAAAAAAAAz");
        assert_eq!(nil_space_id(12).to_string(), "AAAAAAAAAAAAADEy");
    }

    #[test]
    fn generated_ids_have_goworld_layout() {
        let mut g = IdGen::new([1, 2, 3], 0x1234);
        let a = g.next(0x6000_0000);
        let b = g.next(0x6000_0000);
        assert_ne!(a, b);
        assert!(a.0.iter().all(|c| ALPHABET.contains(c)));
        // Same time, host and pid: only the counter (the last 4 chars) differs.
        assert_eq!(a.0[..12], b.0[..12]);
        // The counter (bytes 9..12) is the last base64 group, as in GoWorld's "…AAAC" IDs.
        assert_eq!(&a.0[12..], b"AAAB");
        assert_eq!(&b.0[12..], b"AAAC");
    }

    #[test]
    fn two_generators_with_different_pids_do_not_collide() {
        let mut g1 = IdGen::new([9, 9, 9], 1);
        let mut g2 = IdGen::new([9, 9, 9], 2);
        let ids1: Vec<_> = (0..100).map(|_| g1.next(5)).collect();
        let ids2: Vec<_> = (0..100).map(|_| g2.next(5)).collect();
        assert!(ids1.iter().all(|i| !ids2.contains(i)));
    }

    #[test]
    fn entity_dispatcher_uses_last_two_bytes() {
        let id = EntityId::parse("awVBMmhsgjH.AAAC").unwrap();
        // 'A' = 65, 'C' = 67: 65*256+67 = 16707.
        assert_eq!(dispatcher_for_entity(&id, 1), 1);
        assert_eq!(dispatcher_for_entity(&id, 2), (16707 % 2) as u16 + 1);
        assert_eq!(dispatcher_for_entity(&id, 3), (16707 % 3) as u16 + 1);
        assert_eq!(dispatcher_for_gate(1, 3), 1);
        assert_eq!(dispatcher_for_gate(5, 3), 2);
    }

    #[test]
    fn fast_hasher_spreads_generated_ids() {
        // IDs from one generator differ only in their last characters; the bucket index (low
        // bits) must still spread them.
        let mut g = IdGen::new([1, 2, 3], 7);
        let mut buckets = [0u32; 64];
        for _ in 0..64_000 {
            let id = g.next(1_700_000_000);
            let mut h = FastHasher::default();
            id.hash(&mut h);
            buckets[(h.finish() & 63) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&n| (800..1200).contains(&n)),
            "{buckets:?}"
        );
        let mut m: FastMap<EntityId, u32> = FastMap::default();
        m.insert(g.next(5), 1);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn hash_string_matches_goworld() {
        // The LevelDB hash's published test vectors (seed 0xbc9f1d34), as in GoWorld's hash_test.
        assert_eq!(hash_string(b""), 0xbc9f1d34);
        assert_eq!(hash_string(&[0x62]), 0xef1345c4);
        assert_eq!(hash_string(&[0xc3, 0x97]), 0x5b663814);
        assert_eq!(hash_string(&[0xe2, 0x99, 0xa5]), 0x323c078f);
        assert_eq!(hash_string(&[0xe1, 0x80, 0xb9, 0x32]), 0xed21633a);
        let h = hash_string(b"Service/OnlineService#1");
        assert_eq!(dispatcher_for_service("Service/OnlineService#1", 1), 1);
        assert_eq!(
            dispatcher_for_service("Service/OnlineService#1", 3),
            (h % 3) as u16 + 1
        );
    }
}
