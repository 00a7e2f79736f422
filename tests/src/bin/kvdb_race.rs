//! One side of a GetOrPut race between processes: opens the KVDB a game would (the same
//! pool and engine, from the arguments), waits until the wall clock reaches `-at` (unix
//! milliseconds, so two processes start together; the connection is opened before), then
//! runs GetOrPut(`race/<i>`, `-me`) for `-keys` keys, one at a time, in ascending order or
//! with `-down` in descending order (so two processes meet on the same keys whatever their
//! speeds), and prints one line per key: `<i> stored` or `<i> found <value>`. The e2e test
//! runs two at once against every KVDB engine.
//!
//! `kvdb_race -type redis -url redis://127.0.0.1:6379 -me A -keys 500 -at <ms>`
//! (`-type filesystem -directory D`, `-type redis_cluster -nodes h:p,h:p`,
//! `-type mongodb -url U -collection C`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use goworld_common::config::StoreConfig;
use goworld_game::store::{KvdbOutput, KvdbPool};
use goworld_tests::procfs::flag;

fn arg(name: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a.trim_start_matches('-') == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_default()
}

fn main() {
    let cfg = StoreConfig {
        kind: arg("type"),
        directory: arg("directory").into(),
        url: arg("url"),
        db: String::new(),
        collection: arg("collection"),
        start_nodes: arg("nodes")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    };
    let me = arg("me");
    let keys = flag("keys", 500);
    let at = flag("at", 0);
    let mut pool = KvdbPool::open(&cfg, None)
        .unwrap_or_else(|e| panic!("kvdb_race: {}: {e}", cfg.kind))
        .expect("a KVDB type");
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // Connected before the start.
    pool.get(u64::MAX, "race/warm-up");
    while pool.wait_results(Duration::from_secs(30)).is_empty() {}
    let now_ms = now_ms.max(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
    );
    std::thread::sleep(Duration::from_millis(at.saturating_sub(now_ms)));
    let down = std::env::args().any(|a| a == "-down");
    let order: Vec<u64> = if down {
        (0..keys).rev().collect()
    } else {
        (0..keys).collect()
    };
    let mut lines = vec![String::new(); keys as usize];
    for i in order {
        pool.get_or_put(i, &format!("race/{i:05}"), &me);
        let mut got = Vec::new();
        while got.is_empty() {
            got = pool.wait_results(Duration::from_secs(30));
        }
        for (token, r) in got {
            lines[token as usize] = match r {
                Ok(KvdbOutput::Value(None)) => format!("{token} stored"),
                Ok(KvdbOutput::Value(Some(v))) => format!("{token} found {v}"),
                other => panic!("kvdb_race: key {token}: {other:?}"),
            };
        }
    }
    for l in lines {
        println!("{l}");
    }
}
