//! The suite every store engine passes, each against its real server: the filesystem and
//! in-memory engines here, Redis against a `redis-server` the test starts
//! ([`goworld_common::testserver::RedisServer`]). An engine is correct when it passes all of it.

use goworld_common::id::EntityId;

use super::backend::{KvdbBackend, StorageBackend};
use super::msg::next_larger_key;
use super::testutil::TempDir;

fn id(n: u32) -> EntityId {
    let s = format!("conformance{n:05}");
    EntityId::parse(&s).expect("16 bytes")
}

/// Save, load, exists, list by type, overwrite, a 1 MB entity, and types kept apart.
pub(crate) fn storage_suite(s: &mut dyn StorageBackend) {
    assert_eq!(s.load("Avatar", &id(1)).unwrap(), None, "never saved");
    assert!(!s.exists("Avatar", &id(1)).unwrap());
    assert_eq!(s.list("Avatar").unwrap(), Vec::<EntityId>::new());
    s.save("Avatar", &id(2), b"\x81\xa1a\x01").unwrap();
    s.save("Avatar", &id(1), b"first").unwrap();
    s.save("Avatar", &id(1), b"second").unwrap();
    s.save("Monster", &id(3), b"m").unwrap();
    assert_eq!(
        s.load("Avatar", &id(1)).unwrap().as_deref(),
        Some(&b"second"[..])
    );
    assert_eq!(
        s.load("Avatar", &id(2)).unwrap().as_deref(),
        Some(&b"\x81\xa1a\x01"[..])
    );
    assert!(s.exists("Avatar", &id(2)).unwrap());
    assert!(
        !s.exists("Monster", &id(2)).unwrap(),
        "types are kept apart"
    );
    assert_eq!(
        s.list("Avatar").unwrap(),
        vec![id(1), id(2)],
        "sorted, no duplicates"
    );
    assert_eq!(s.list("Monster").unwrap(), vec![id(3)]);
    // A type whose name is a prefix of another's lists only its own.
    s.save("Avatar2", &id(4), b"x").unwrap();
    assert_eq!(s.list("Avatar").unwrap(), vec![id(1), id(2)]);
    // 1 MB of every byte value.
    let big: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 256) as u8).collect();
    s.save("Avatar", &id(5), &big).unwrap();
    assert_eq!(s.load("Avatar", &id(5)).unwrap().as_deref(), Some(&big[..]));
    let many: Vec<EntityId> = (100..400).map(id).collect();
    for e in &many {
        s.save("Many", e, b"v").unwrap();
    }
    assert_eq!(
        s.list("Many").unwrap(),
        many,
        "a listing of several hundred"
    );
}

/// Get, put, overwrite, GetOrPut, GetRange order and bounds, unicode and odd keys.
pub(crate) fn kvdb_suite(k: &mut dyn KvdbBackend) {
    assert_eq!(k.get("missing").unwrap(), None);
    k.put("a", "1").unwrap();
    k.put("a", "2").unwrap();
    assert_eq!(k.get("a").unwrap().as_deref(), Some("2"), "overwritten");
    assert_eq!(
        k.get_or_put("a", "3").unwrap().as_deref(),
        Some("2"),
        "kept"
    );
    assert_eq!(k.get_or_put("new", "n").unwrap(), None, "stored");
    assert_eq!(k.get("new").unwrap().as_deref(), Some("n"));
    let odd = [
        "b", "a/b", "日本", "é", "a$", "ab", "$x", "a\0", "/", "a b*?[x]", "\\",
    ];
    for key in odd {
        k.put(key, &format!("v-{key}")).unwrap();
        assert_eq!(k.get(key).unwrap(), Some(format!("v-{key}")), "{key:?}");
    }
    let range = |k: &mut dyn KvdbBackend, b: &str, e: &str| -> Vec<String> {
        let r = k.get_range(b, e).unwrap();
        for (key, v) in &r {
            assert_eq!(*v, k.get(key).unwrap().unwrap(), "{key:?}");
        }
        r.into_iter().map(|(key, _)| key).collect()
    };
    assert_eq!(
        range(k, "a", "b"),
        ["a", "a\0", "a b*?[x]", "a$", "a/b", "ab"],
        "half-open, in byte order"
    );
    assert_eq!(range(k, "a", "a"), Vec::<String>::new());
    assert_eq!(range(k, "b", "a"), Vec::<String>::new());
    assert_eq!(range(k, "a", &next_larger_key("a")), ["a"]);
    assert_eq!(range(k, "é", "\u{10ffff}"), ["é", "日本"]);
    assert_eq!(range(k, "", "$y"), ["$x"]);
}

/// GetOrPut from two connections at once: for every key exactly one of them stores, and
/// both read the value that was stored.
pub(crate) fn kvdb_get_or_put_race(
    mut a: Box<dyn KvdbBackend>,
    mut b: Box<dyn KvdbBackend>,
    keys: usize,
) {
    let run = move |k: &mut Box<dyn KvdbBackend>, me: &str| {
        (0..keys)
            .map(|i| k.get_or_put(&format!("race/{i:04}"), me).unwrap())
            .collect::<Vec<_>>()
    };
    let t = std::thread::spawn(move || (run(&mut b, "B"), b));
    let got_a = run(&mut a, "A");
    let (got_b, mut b) = t.join().unwrap();
    for i in 0..keys {
        let key = format!("race/{i:04}");
        let stored = a.get(&key).unwrap().unwrap();
        assert_eq!(b.get(&key).unwrap().unwrap(), stored);
        match (&got_a[i], &got_b[i]) {
            (None, Some(v)) => assert_eq!((v.as_str(), stored.as_str()), ("A", "A")),
            (Some(v), None) => assert_eq!((v.as_str(), stored.as_str()), ("B", "B")),
            other => panic!("{key}: both or neither stored: {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::Attrs;
    use crate::store::fs_kvdb::FilesystemKvdb;
    use crate::store::fs_storage::FilesystemStorage;
    use crate::store::mem::{MemKvdb, MemStorage};
    use crate::store::redis::{RedisKvdb, RedisStorage, KV_INDEX};
    use goworld_common::msgpack::Value;
    use goworld_common::testserver::RedisServer;

    #[test]
    fn memory_engines_pass_the_suite() {
        storage_suite(&mut MemStorage::default());
        kvdb_suite(&mut MemKvdb::default());
    }

    #[test]
    fn filesystem_engines_pass_the_suite() {
        let d = TempDir::new("conformance-fs");
        storage_suite(&mut FilesystemStorage::new(d.0.join("s")).unwrap());
        kvdb_suite(&mut FilesystemKvdb::new(d.0.join("k")).unwrap());
        kvdb_get_or_put_race(
            Box::new(FilesystemKvdb::new(d.0.join("race")).unwrap()),
            Box::new(FilesystemKvdb::new(d.0.join("race")).unwrap()),
            200,
        );
    }

    #[test]
    fn redis_engines_pass_the_suite_against_a_real_server() {
        let r = RedisServer::start();
        storage_suite(&mut RedisStorage::new(&r.url(), 0).unwrap());
        kvdb_suite(&mut RedisKvdb::new(&r.url(), 1).unwrap());
        kvdb_get_or_put_race(
            Box::new(RedisKvdb::new(&r.url(), 2).unwrap()),
            Box::new(RedisKvdb::new(&r.url(), 2).unwrap()),
            500,
        );
    }

    #[test]
    fn redis_cluster_kvdb_passes_the_suite_against_a_real_cluster() {
        use crate::store::redis::RedisClusterKvdb;
        let cluster = goworld_common::testserver::RedisCluster::start();
        let nodes = cluster.start_nodes();
        // A key GoWorld wrote before (no index yet) is found by ranges.
        let mut c = redis::cluster::ClusterClient::new(
            nodes
                .iter()
                .map(|n| format!("redis://{n}"))
                .collect::<Vec<_>>(),
        )
        .unwrap()
        .get_connection()
        .unwrap();
        redis::cmd("SET")
            .arg("_KV_old")
            .arg("o")
            .query::<()>(&mut c)
            .unwrap();
        let mut k = RedisClusterKvdb::new(&nodes).unwrap();
        assert_eq!(
            k.get_range("o", "p").unwrap(),
            vec![("old".to_string(), "o".to_string())]
        );
        kvdb_suite(&mut k);
        kvdb_get_or_put_race(
            Box::new(RedisClusterKvdb::new(&nodes).unwrap()),
            Box::new(RedisClusterKvdb::new(&nodes[3..]).unwrap()),
            300,
        );
    }

    /// A database GoWorld wrote (entities as `Type$ID` msgpack maps, KVDB keys `_KV_key`, no
    /// index) is read as it is, ranges included; `db` selects the database.
    #[test]
    fn redis_reads_a_database_in_goworlds_layout() {
        let r = RedisServer::start();
        let mut c = redis::Client::open(format!("{}/4", r.url()))
            .unwrap()
            .get_connection()
            .unwrap();
        let attrs = Value::Map(vec![
            (Value::Str("name".into()), Value::Str("ada".into())),
            (Value::Str("level".into()), Value::Int(7)),
        ]);
        let eid = id(9);
        let key = [&b"Avatar$"[..], eid.as_bytes()].concat();
        redis::cmd("SET")
            .arg(&key)
            .arg(attrs.to_bytes())
            .query::<()>(&mut c)
            .unwrap();
        for (k, v) in [("_KV_b", "2"), ("_KV_a", "1"), ("_KV_c", "3")] {
            redis::cmd("SET").arg(k).arg(v).query::<()>(&mut c).unwrap();
        }
        let mut s = RedisStorage::new(&r.url(), 4).unwrap();
        assert_eq!(s.list("Avatar").unwrap(), vec![eid]);
        let bytes = s.load("Avatar", &eid).unwrap().unwrap();
        let a = Attrs::from_bytes(&bytes).unwrap();
        assert_eq!(a.as_map().get_str("name"), "ada");
        assert_eq!(a.as_map().get_int("level"), 7);
        let mut k = RedisKvdb::new(&r.url(), 4).unwrap();
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            k.get_range("a", "c").unwrap(),
            pairs(&[("a", "1"), ("b", "2")]),
            "the index is built from GoWorld's keys"
        );
        assert_eq!(k.get("c").unwrap().as_deref(), Some("3"));
        // Nothing of it is in database 0.
        let mut other = RedisStorage::new(&r.url(), 0).unwrap();
        assert!(!other.exists("Avatar", &eid).unwrap());
        let n: usize = redis::cmd("ZCARD").arg(KV_INDEX).query(&mut c).unwrap();
        assert_eq!(n, 3);
    }

    /// A Redis that goes away fails the requests made meanwhile, and the same engine works
    /// again once it is back, without being rebuilt.
    #[test]
    fn redis_engines_reconnect_after_the_server_restarts() {
        let r = RedisServer::start();
        let url = r.url();
        let port = r.port;
        let mut s = RedisStorage::new(&url, 0).unwrap();
        let mut k = RedisKvdb::new(&url, 0).unwrap();
        s.save("Avatar", &id(1), b"before").unwrap();
        k.put("x", "1").unwrap();
        drop(r);
        let err = s.save("Avatar", &id(1), b"during").unwrap_err();
        assert!(err.contains("redis"), "{err}");
        assert!(k.get("x").is_err());
        // Back on the same port (empty: it keeps nothing on disk).
        let _again = RedisServer::start_on(port);
        s.save("Avatar", &id(1), b"after").unwrap();
        assert_eq!(
            s.load("Avatar", &id(1)).unwrap().as_deref(),
            Some(&b"after"[..])
        );
        k.put("x", "2").unwrap();
        assert_eq!(
            k.get_range("x", "y").unwrap(),
            vec![("x".into(), "2".into())]
        );
    }
}
