//! Entity saves and loads per second through the game's storage pool (four workers, as a
//! game runs it), on each engine: the embedded filesystem, Redis (a `redis-server` this
//! program starts on a free port and stops) and MongoDB (the tests' in-memory MongoDB-wire
//! stand-in, run by node: tests/mongo/install.sh must have run; its figures measure the
//! engine and the driver, not a real MongoDB).
//!
//! ```sh
//! ./target/release/bench_store -n 2000 -size 1024     # 2 000 entities of 1 KB
//! ./target/release/bench_store -n 200 -size 102400    # 200 entities of 100 KB
//! ```
//!
//! Each phase submits every request at once (as a game's stop or a burst of logins does) and
//! times until the last result is back; saves into a fresh store, then loads of what was saved,
//! each checked byte for byte once the loads are timed. An entity's data is a msgpack map
//! `{"blob": <size bytes of bin>}` on every engine (MongoDB stores a document, so the data
//! must be a map).

use std::time::{Duration, Instant};

use goworld_common::config::StoreConfig;
use goworld_common::id::EntityId;
use goworld_common::msgpack::Value;
use goworld_common::testserver::{MongoServer, RedisServer};
use goworld_game::store::{StorageOutput, StoragePool};
use goworld_tests::procfs::flag;

fn eid(i: u64) -> EntityId {
    EntityId::parse(&format!("benchstore{i:06}")).expect("16 bytes")
}

/// Runs the saves and the loads; returns (saves/s, loads/s).
fn run(cfg: &StoreConfig, n: u64, size: usize) -> (f64, f64) {
    let mut pool = StoragePool::open(cfg, None).unwrap_or_else(|e| panic!("{}: {e}", cfg.kind));
    let blob: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let data = Value::Map(vec![(Value::Str("blob".into()), Value::Bin(blob))]).to_bytes();
    let wait_all = |pool: &mut StoragePool, what: &str| {
        let mut got = 0;
        let mut outs = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(600);
        while got < n {
            for (_, r) in pool.wait_results(Duration::from_secs(1)) {
                outs.push(r.unwrap_or_else(|e| panic!("{what}: {e}")));
                got += 1;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: still waiting after 600 s"
            );
        }
        outs
    };
    let t = Instant::now();
    for i in 0..n {
        pool.save(i, "Avatar", eid(i), data.clone());
    }
    wait_all(&mut pool, "save");
    let saves = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for i in 0..n {
        pool.load(n + i, "Avatar", eid(i));
    }
    let outs = wait_all(&mut pool, "load");
    let loads = n as f64 / t.elapsed().as_secs_f64();
    // Checked after the clock stops: comparing every byte is not the engine's time.
    for out in outs {
        match out {
            StorageOutput::Loaded(Some(b)) => assert!(b == data, "a load differs from its save"),
            other => panic!("load: {other:?}"),
        }
    }
    let _ = pool.shutdown(Duration::from_secs(5));
    (saves, loads)
}

fn main() {
    let n = flag("n", 2000);
    let size = flag("size", 1024) as usize;
    let dir = std::env::temp_dir().join(format!("goworld-rs-bench-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let base = StoreConfig {
        kind: "filesystem".into(),
        directory: dir.join("fs"),
        url: String::new(),
        db: "0".into(),
        collection: String::new(),
        start_nodes: Vec::new(),
    };
    let redis = RedisServer::start();
    let redis_cfg = StoreConfig {
        kind: "redis".into(),
        url: redis.url(),
        ..base.clone()
    };
    let mongo = MongoServer::start();
    let mongo_cfg = StoreConfig {
        kind: "mongodb".into(),
        url: mongo.url(),
        db: "bench".into(),
        ..base.clone()
    };
    println!("bench_store: {n} entities of {size} bytes, 4 workers");
    println!("| engine | saves/s | loads/s |");
    println!("| --- | --- | --- |");
    for cfg in [&base, &redis_cfg, &mongo_cfg] {
        let (s, l) = run(cfg, n, size);
        println!("| {} | {s:.0} | {l:.0} |", cfg.kind);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
