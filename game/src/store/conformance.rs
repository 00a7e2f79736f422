//! The suite every store engine passes, each against its real server: the filesystem and
//! in-memory engines here, Redis against a `redis-server` the test starts
//! ([`goworld_common::testserver::RedisServer`]). An engine is correct when it passes all of it.

use goworld_common::id::EntityId;
use goworld_common::msgpack::Value;

use super::backend::{KvdbBackend, StorageBackend};
use super::msg::next_larger_key;
use super::testutil::TempDir;

fn id(n: u32) -> EntityId {
    let s = format!("conformance{n:05}");
    EntityId::parse(&s).expect("16 bytes")
}

/// Entity data as the game writes it: a msgpack map of attributes (here one, `v`).
fn data(v: Value) -> Vec<u8> {
    Value::Map(vec![(Value::Str("v".into()), v)]).to_bytes()
}

/// Save, load, exists, list by type, overwrite, a 1 MB entity, every kind of attribute
/// value, and types kept apart.
pub(crate) fn storage_suite(s: &mut dyn StorageBackend) {
    let text = |t: &str| data(Value::Str(t.into()));
    assert_eq!(s.load("Avatar", &id(1)).unwrap(), None, "never saved");
    assert!(!s.exists("Avatar", &id(1)).unwrap());
    assert_eq!(s.list("Avatar").unwrap(), Vec::<EntityId>::new());
    s.save("Avatar", &id(2), &data(Value::Int(1))).unwrap();
    s.save("Avatar", &id(1), &text("first")).unwrap();
    s.save("Avatar", &id(1), &text("second")).unwrap();
    s.save("Monster", &id(3), &text("m")).unwrap();
    assert_eq!(s.load("Avatar", &id(1)).unwrap(), Some(text("second")));
    assert_eq!(s.load("Avatar", &id(2)).unwrap(), Some(data(Value::Int(1))));
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
    s.save("Avatar2", &id(4), &text("x")).unwrap();
    assert_eq!(s.list("Avatar").unwrap(), vec![id(1), id(2)]);
    // 1 MB of every byte value.
    let big: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 256) as u8).collect();
    s.save("Avatar", &id(5), &data(Value::Bin(big.clone())))
        .unwrap();
    assert_eq!(
        s.load("Avatar", &id(5)).unwrap(),
        Some(data(Value::Bin(big)))
    );
    // Every kind of value an attribute holds, nested, with unicode and odd names.
    let all = Value::Map(vec![
        // Within int32: the MongoDB stand-in answers larger integers as doubles (a real
        // server keeps int64; the game reads such a double back into an i64 attribute).
        (Value::Str("i".into()), Value::Int(-123_456)),
        (Value::Str("f".into()), Value::Float(2.5)),
        (Value::Str("b".into()), Value::Bool(true)),
        (Value::Str("s".into()), Value::Str("日本 é".into())),
        (Value::Str("n".into()), Value::Nil),
        (
            Value::Str("l".into()),
            Value::Array(vec![
                Value::Int(1),
                Value::Str("x".into()),
                Value::Array(vec![]),
            ]),
        ),
        (
            Value::Str("m".into()),
            Value::Map(vec![
                (Value::Str("a b$".into()), Value::Int(3)),
                (Value::Str("名".into()), Value::Map(vec![])),
            ]),
        ),
    ]);
    s.save("Avatar", &id(6), &all.to_bytes()).unwrap();
    assert_eq!(s.load("Avatar", &id(6)).unwrap(), Some(all.to_bytes()));
    let many: Vec<EntityId> = (100..400).map(id).collect();
    for e in &many {
        s.save("Many", e, &text("v")).unwrap();
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
    use goworld_common::testserver::{MongoServer, RedisServer};

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
        // Restarted between two requests: the connections the engines hold are closed, and
        // the next requests open new ones instead of failing.
        drop(_again);
        let _third = RedisServer::start_on(port);
        s.save("Avatar", &id(2), b"fresh").unwrap();
        assert_eq!(k.get("x").unwrap(), None, "a new, empty server");
    }

    fn mongo(url: &str) -> mongodb::sync::Client {
        crate::store::mongo::client(url).unwrap()
    }

    #[test]
    fn mongo_engines_pass_the_suite_against_the_wire_server() {
        use crate::store::mongo::{MongoKvdb, MongoStorage};
        let m = MongoServer::start();
        let c = mongo(&m.url());
        storage_suite(&mut MongoStorage::new(&c, "st"));
        kvdb_suite(&mut MongoKvdb::new(&c, "kv", "__kv__").unwrap());
        // Two clients (connection pools), as two games would have.
        kvdb_get_or_put_race(
            Box::new(MongoKvdb::new(&mongo(&m.url()), "kv", "race").unwrap()),
            Box::new(MongoKvdb::new(&mongo(&m.url()), "kv", "race").unwrap()),
            300,
        );
    }

    /// A database GoWorld wrote (a collection per entity type, `{_id, data}` documents with
    /// int32 numbers as mgo writes Go ints; KVDB `{_id, "_"}` documents) is read as it is.
    #[test]
    fn mongo_reads_a_database_in_goworlds_layout() {
        use crate::store::mongo::{MongoKvdb, MongoStorage};
        use mongodb::bson::{doc, Document};
        let m = MongoServer::start();
        let c = mongo(&m.url());
        let db = c.database("goworld");
        let eid = id(9);
        let sid = std::str::from_utf8(eid.as_bytes()).unwrap();
        db.collection::<Document>("Avatar")
            .insert_one(doc! {
                "_id": sid,
                "data": {
                    "name": "ada",
                    "level": 7_i32,
                    "mails": { "1": { "title": "hi" } },
                    "pos": [1.5_f64, 2_i64],
                },
            })
            .run()
            .unwrap();
        let kv = db.collection::<Document>("__kv__");
        for (k, v) in [("b", "2"), ("a", "1"), ("c", "3")] {
            kv.insert_one(doc! { "_id": k, "_": v }).run().unwrap();
        }
        // `db` empty is GoWorld's default database, `goworld`.
        let mut s = MongoStorage::new(&c, "");
        assert_eq!(s.list("Avatar").unwrap(), vec![eid]);
        let a = Attrs::from_bytes(&s.load("Avatar", &eid).unwrap().unwrap()).unwrap();
        let root = a.as_map();
        assert_eq!(root.get_str("name"), "ada");
        assert_eq!(root.get_int("level"), 7);
        let mails = root.get("mails").and_then(|m| m.as_map()).unwrap();
        assert_eq!(
            mails
                .get("1")
                .and_then(|m| m.as_map())
                .unwrap()
                .get_str("title"),
            "hi"
        );
        let mut k = MongoKvdb::new(&c, "", "__kv__").unwrap();
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            k.get_range("a", "c").unwrap(),
            pairs(&[("a", "1"), ("b", "2")])
        );
        assert_eq!(k.get("c").unwrap().as_deref(), Some("3"));
        // What this engine writes is GoWorld's layout too.
        s.save("Avatar", &id(10), &data(Value::Float(0.5))).unwrap();
        let d = db
            .collection::<Document>("Avatar")
            .find_one(doc! { "_id": std::str::from_utf8(id(10).as_bytes()).unwrap() })
            .run()
            .unwrap()
            .unwrap();
        assert_eq!(d.get_document("data").unwrap(), &doc! { "v": 0.5 });
        k.put("z", "26").unwrap();
        assert_eq!(
            kv.find_one(doc! { "_id": "z" }).run().unwrap().unwrap(),
            doc! { "_id": "z", "_": "26" }
        );
    }

    /// A MongoDB that goes away fails the requests made meanwhile within the timeouts, and
    /// the same engine works again once it is back.
    #[test]
    fn mongo_engines_reconnect_after_the_server_restarts() {
        use crate::store::mongo::{MongoKvdb, MongoStorage};
        let m = MongoServer::start();
        let port = m.port;
        let c = mongo(&m.url());
        let mut s = MongoStorage::new(&c, "");
        let mut k = MongoKvdb::new(&c, "", "kv").unwrap();
        s.save("Avatar", &id(1), &data(Value::Int(1))).unwrap();
        drop(m);
        let t = std::time::Instant::now();
        let err = s.save("Avatar", &id(1), &data(Value::Int(2))).unwrap_err();
        assert!(err.contains("mongodb"), "{err}");
        assert!(k.get("x").is_err());
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "failing took {:?}",
            t.elapsed()
        );
        // Back on the same port (empty: the stand-in keeps nothing).
        let _again = MongoServer::start_on(port);
        s.save("Avatar", &id(1), &data(Value::Int(3))).unwrap();
        assert_eq!(s.load("Avatar", &id(1)).unwrap(), Some(data(Value::Int(3))));
        k.put("x", "2").unwrap();
        assert_eq!(
            k.get_range("x", "y").unwrap(),
            vec![("x".into(), "2".into())]
        );
        // Restarted between two requests: the connections the engines hold are closed, and
        // the next requests open new ones instead of failing.
        drop(_again);
        let _third = MongoServer::start_on(port);
        s.save("Avatar", &id(2), &data(Value::Int(4))).unwrap();
        assert_eq!(k.get("x").unwrap(), None, "a new, empty server");
    }
}
