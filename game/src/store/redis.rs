//! The Redis engines of entity storage and the KVDB (`type = redis` in `[storage]` or
//! `[kvdb]`), in GoWorld's Redis layout, so a GoWorld deployment's database is read as it is.
//!
//! - Entity storage: one string key per entity, `<Type>$<entity ID>`, holding the msgpack map
//!   of its persistent attributes (what GoWorld's `entity_storage_redis` writes); `list` scans
//!   `<Type>$*`.
//! - KVDB: one string key per entry, `_KV_<key>`, holding the value (GoWorld's
//!   `kvdb_redis`). GoWorld's Redis KVDB refuses GetRange; here every key is also a member of
//!   the sorted set [`KV_INDEX`] (all scores 0, so members sort by bytes), which GetRange
//!   reads with `ZRANGEBYLEX` and then `MGET`s. Put writes the value and the index entry in
//!   one `MULTI`; GetOrPut is one server-side script (get, else set and index), so it is
//!   atomic against every game using the database. A database written by GoWorld has no
//!   index: the first KVDB connection of a process that finds none builds it from a `SCAN` of
//!   `_KV_*`.
//!
//! `db` selects the database (`SELECT`, through the URL). Each worker has its own connection,
//! opened lazily with a connect timeout and used with read and write timeouts; after an I/O
//! error it is dropped and opened again by the next request, so a Redis that restarts costs
//! the requests made while it was down (each reported as failed), not the engine; a
//! connection found closed when it is next used (the server restarted meanwhile) is opened
//! again and the request sent once more.

use std::time::Duration;

use goworld_common::id::EntityId;
use redis::{Client, Connection, RedisResult, Value};

use super::backend::{KvdbBackend, StorageBackend};

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one command may wait for its answer (or to be written).
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Prefix of GoWorld's KVDB keys.
pub const KV_PREFIX: &str = "_KV_";
/// The sorted set of every KVDB key (without the prefix), for GetRange. Not itself a KVDB
/// key: it does not start with [`KV_PREFIX`].
pub const KV_INDEX: &str = "_KVI_";

/// GetOrPut: the stored value, or else store the new one, index its key and answer nil.
const GET_OR_PUT: &str = "local v = redis.call('GET', KEYS[1]) \
if v then return v end \
redis.call('SET', KEYS[1], ARGV[1]) \
redis.call('ZADD', KEYS[2], 0, ARGV[2]) \
return false";

/// One lazily opened connection (to one server, or to a cluster).
struct Lazy<C> {
    open: Box<dyn FnMut() -> RedisResult<C> + Send>,
    conn: Option<C>,
}

type Conn = Lazy<Connection>;

impl Conn {
    /// A connection to `url` (`redis://host:port`) and database `db`.
    fn new(url: &str, db: i64) -> Result<Conn, String> {
        let mut info: redis::ConnectionInfo = redis::IntoConnectionInfo::into_connection_info(url)
            .map_err(|e| format!("bad redis url '{url}': {e}"))?;
        info.redis.db = db;
        let client = Client::open(info).map_err(|e| format!("redis url '{url}': {e}"))?;
        Ok(Lazy {
            open: Box::new(move || {
                let c = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
                c.set_read_timeout(Some(IO_TIMEOUT))?;
                c.set_write_timeout(Some(IO_TIMEOUT))?;
                Ok(c)
            }),
            conn: None,
        })
    }
}

impl<C> Lazy<C> {
    /// Runs `f` on the connection, opening it first if needed; an I/O error drops it. A
    /// connection opened earlier that turns out closed (reset, broken pipe, end of file:
    /// the server restarted since) is opened again and `f` runs once more on the new one.
    /// A timeout is not retried: the server may be running the command.
    fn with<T>(&mut self, mut f: impl FnMut(&mut C) -> RedisResult<T>) -> Result<T, String> {
        let reused = self.conn.is_some();
        match self.once(&mut f) {
            Err((_, true)) if reused => self.once(&mut f).map_err(|(e, _)| e),
            r => r.map_err(|(e, _)| e),
        }
    }

    /// One attempt; the error's text, and whether an open connection turned out closed.
    fn once<T>(
        &mut self,
        f: &mut impl FnMut(&mut C) -> RedisResult<T>,
    ) -> Result<T, (String, bool)> {
        if self.conn.is_none() {
            let c = (self.open)().map_err(|e| (format!("connecting to redis: {e}"), false))?;
            self.conn = Some(c);
        }
        f(self.conn.as_mut().expect("opened above")).map_err(|e| {
            if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                self.conn = None;
            }
            (format!("redis: {e}"), e.is_connection_dropped())
        })
    }
}

/// The `db` of a Redis store: an index (GoWorld's `dbindex`); empty is 0.
pub fn parse_db(db: &str) -> Result<i64, String> {
    if db.is_empty() {
        return Ok(0);
    }
    db.parse::<i64>()
        .ok()
        .filter(|d| *d >= 0)
        .ok_or_else(|| format!("redis db '{db}' is not a database index"))
}

/// Escapes the glob characters of `s` for `SCAN MATCH`.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Every key matching `pattern`, by `SCAN`.
fn scan(c: &mut impl redis::ConnectionLike, pattern: &str) -> RedisResult<Vec<Vec<u8>>> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query(c)?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// Entity storage on Redis.
pub struct RedisStorage {
    conn: Conn,
}

impl RedisStorage {
    /// Storage in database `db` of the Redis at `url`. Connects on first use.
    pub fn new(url: &str, db: i64) -> Result<RedisStorage, String> {
        Ok(RedisStorage {
            conn: Conn::new(url, db)?,
        })
    }
}

fn entity_key(type_name: &str, eid: &EntityId) -> Vec<u8> {
    let mut k = Vec::with_capacity(type_name.len() + 1 + 16);
    k.extend_from_slice(type_name.as_bytes());
    k.push(b'$');
    k.extend_from_slice(eid.as_bytes());
    k
}

impl StorageBackend for RedisStorage {
    fn save(&mut self, type_name: &str, eid: &EntityId, data: &[u8]) -> Result<(), String> {
        let key = entity_key(type_name, eid);
        self.conn
            .with(|c| redis::cmd("SET").arg(&key).arg(data).query::<()>(c))
    }

    fn load(&mut self, type_name: &str, eid: &EntityId) -> Result<Option<Vec<u8>>, String> {
        let key = entity_key(type_name, eid);
        self.conn.with(|c| redis::cmd("GET").arg(&key).query(c))
    }

    fn exists(&mut self, type_name: &str, eid: &EntityId) -> Result<bool, String> {
        let key = entity_key(type_name, eid);
        self.conn.with(|c| redis::cmd("EXISTS").arg(&key).query(c))
    }

    fn list(&mut self, type_name: &str) -> Result<Vec<EntityId>, String> {
        let pattern = format!("{}$*", glob_escape(type_name));
        let keys = self.conn.with(|c| scan(c, &pattern))?;
        let prefix = type_name.len() + 1;
        let mut ids: Vec<EntityId> = (keys.iter())
            .filter_map(|k| EntityId::from_slice(k.get(prefix..)?))
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}

/// The KVDB on Redis.
pub struct RedisKvdb {
    conn: Conn,
    /// The index was checked (and built if missing) on this connection's database.
    indexed: bool,
}

impl RedisKvdb {
    /// The KVDB in database `db` of the Redis at `url`. Connects on first use.
    pub fn new(url: &str, db: i64) -> Result<RedisKvdb, String> {
        Ok(RedisKvdb {
            conn: Conn::new(url, db)?,
            indexed: false,
        })
    }

    /// Builds the key index from the keys if there is none (a database GoWorld wrote).
    fn ensure_index(&mut self) -> Result<(), String> {
        if self.indexed {
            return Ok(());
        }
        self.conn.with(|c| {
            let exists: bool = redis::cmd("EXISTS").arg(KV_INDEX).query(c)?;
            if !exists {
                let keys = scan(c, &format!("{}*", glob_escape(KV_PREFIX)))?;
                for chunk in keys.chunks(500) {
                    let mut z = redis::cmd("ZADD");
                    z.arg(KV_INDEX);
                    for k in chunk {
                        z.arg(0).arg(&k[KV_PREFIX.len()..]);
                    }
                    z.query::<()>(c)?;
                }
            }
            Ok(())
        })?;
        self.indexed = true;
        Ok(())
    }
}

fn kv_key(key: &str) -> String {
    format!("{KV_PREFIX}{key}")
}

impl KvdbBackend for RedisKvdb {
    fn get(&mut self, key: &str) -> Result<Option<String>, String> {
        let k = kv_key(key);
        self.conn.with(|c| redis::cmd("GET").arg(&k).query(c))
    }

    fn put(&mut self, key: &str, val: &str) -> Result<(), String> {
        self.ensure_index()?;
        let k = kv_key(key);
        self.conn.with(|c| {
            redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(&k)
                .arg(val)
                .ignore()
                .cmd("ZADD")
                .arg(KV_INDEX)
                .arg(0)
                .arg(key)
                .ignore()
                .query::<()>(c)
        })
    }

    fn get_or_put(&mut self, key: &str, val: &str) -> Result<Option<String>, String> {
        self.ensure_index()?;
        let k = kv_key(key);
        self.conn.with(|c| {
            let v: Value = redis::cmd("EVAL")
                .arg(GET_OR_PUT)
                .arg(2)
                .arg(&k)
                .arg(KV_INDEX)
                .arg(val)
                .arg(key)
                .query(c)?;
            redis::from_redis_value(&v)
        })
    }

    fn get_range(&mut self, begin: &str, end: &str) -> Result<Vec<(String, String)>, String> {
        if begin >= end {
            return Ok(Vec::new());
        }
        self.ensure_index()?;
        self.conn.with(|c| {
            let keys: Vec<String> = redis::cmd("ZRANGEBYLEX")
                .arg(KV_INDEX)
                .arg(format!("[{begin}"))
                .arg(format!("({end}"))
                .query(c)?;
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let mut mget = redis::cmd("MGET");
            for k in &keys {
                mget.arg(kv_key(k));
            }
            let vals: Vec<Option<String>> = mget.query(c)?;
            // An indexed key without a value was deleted outside the KVDB: left out.
            Ok((keys.into_iter().zip(vals))
                .filter_map(|(k, v)| Some((k, v?)))
                .collect())
        })
    }
}

/// The KVDB on a Redis Cluster (`[kvdb] type = redis_cluster`, nodes in `start_nodes_N`).
///
/// GoWorld's keys (`_KV_<key>`) hash to every slot, so no multi-key command or script can
/// span them. The choice made here: each entry stays a plain key in GoWorld's layout (a
/// GoWorld cluster's data is read as it is), and the key index is one sorted set,
/// [`KV_INDEX`], in one slot. The index entry is written *before* the value, so the index
/// never misses a key that has a value (an entry whose value is not written yet is left out
/// of ranges). GetOrPut is `SET key val NX GET`, atomic on its one key against every game
/// (Redis 7). GetRange reads the index with `ZRANGEBYLEX` and then each value.
pub struct RedisClusterKvdb {
    conn: Lazy<redis::cluster::ClusterConnection>,
    nodes: Vec<String>,
    indexed: bool,
}

impl RedisClusterKvdb {
    /// The KVDB on the cluster reachable through `nodes` (`host:port` or `redis://...`).
    pub fn new(nodes: &[String]) -> Result<RedisClusterKvdb, String> {
        if nodes.is_empty() {
            return Err("redis_cluster needs start_nodes_1 (and more)".into());
        }
        let urls: Vec<String> = (nodes.iter())
            .map(|n| {
                if n.contains("://") {
                    n.clone()
                } else {
                    format!("redis://{n}")
                }
            })
            .collect();
        let client = redis::cluster::ClusterClient::builder(urls.clone())
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(IO_TIMEOUT)
            .build()
            .map_err(|e| format!("redis cluster {nodes:?}: {e}"))?;
        Ok(RedisClusterKvdb {
            conn: Lazy {
                open: Box::new(move || client.get_connection()),
                conn: None,
            },
            nodes: urls,
            indexed: false,
        })
    }

    /// Builds the index from a `SCAN` of every master if there is none.
    fn ensure_index(&mut self) -> Result<(), String> {
        if self.indexed {
            return Ok(());
        }
        let exists: bool = self
            .conn
            .with(|c| redis::cmd("EXISTS").arg(KV_INDEX).query(c))?;
        if !exists {
            let mut keys = Vec::new();
            for master in self.masters()? {
                let mut c = Client::open(master.as_str())
                    .and_then(|cl| cl.get_connection_with_timeout(CONNECT_TIMEOUT))
                    .map_err(|e| format!("redis {master}: {e}"))?;
                keys.extend(
                    scan(&mut c, &format!("{}*", glob_escape(KV_PREFIX)))
                        .map_err(|e| format!("redis {master}: {e}"))?,
                );
            }
            for chunk in keys.chunks(500) {
                let mut z = redis::cmd("ZADD");
                z.arg(KV_INDEX);
                for k in chunk {
                    z.arg(0).arg(&k[KV_PREFIX.len()..]);
                }
                self.conn.with(|c| z.query::<()>(c))?;
            }
        }
        self.indexed = true;
        Ok(())
    }

    /// The masters' URLs, from `CLUSTER NODES` of the first start node that answers.
    fn masters(&self) -> Result<Vec<String>, String> {
        let mut last = String::new();
        for n in &self.nodes {
            let r = Client::open(n.as_str())
                .and_then(|cl| cl.get_connection_with_timeout(CONNECT_TIMEOUT))
                .and_then(|mut c| redis::cmd("CLUSTER").arg("NODES").query::<String>(&mut c));
            match r {
                Ok(text) => {
                    return Ok((text.lines())
                        .filter(|l| l.split(' ').nth(2).is_some_and(|f| f.contains("master")))
                        .filter_map(|l| l.split(' ').nth(1))
                        .map(|addr| format!("redis://{}", addr.split('@').next().unwrap_or(addr)))
                        .collect());
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!("no start node answered CLUSTER NODES: {last}"))
    }

    fn index(&mut self, key: &str) -> Result<(), String> {
        self.conn.with(|c| {
            redis::cmd("ZADD")
                .arg(KV_INDEX)
                .arg(0)
                .arg(key)
                .query::<()>(c)
        })
    }
}

impl KvdbBackend for RedisClusterKvdb {
    fn get(&mut self, key: &str) -> Result<Option<String>, String> {
        let k = kv_key(key);
        self.conn.with(|c| redis::cmd("GET").arg(&k).query(c))
    }

    fn put(&mut self, key: &str, val: &str) -> Result<(), String> {
        self.ensure_index()?;
        self.index(key)?;
        let k = kv_key(key);
        self.conn
            .with(|c| redis::cmd("SET").arg(&k).arg(val).query::<()>(c))
    }

    fn get_or_put(&mut self, key: &str, val: &str) -> Result<Option<String>, String> {
        self.ensure_index()?;
        self.index(key)?;
        let k = kv_key(key);
        self.conn.with(|c| {
            redis::cmd("SET")
                .arg(&k)
                .arg(val)
                .arg("NX")
                .arg("GET")
                .query(c)
        })
    }

    fn get_range(&mut self, begin: &str, end: &str) -> Result<Vec<(String, String)>, String> {
        if begin >= end {
            return Ok(Vec::new());
        }
        self.ensure_index()?;
        let keys: Vec<String> = self.conn.with(|c| {
            redis::cmd("ZRANGEBYLEX")
                .arg(KV_INDEX)
                .arg(format!("[{begin}"))
                .arg(format!("({end}"))
                .query(c)
        })?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(v) = self.get(&key)? {
                out.push((key, v));
            }
        }
        Ok(out)
    }
}
