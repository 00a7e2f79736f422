//! The MongoDB engines of entity storage and the KVDB (`type = mongodb` in `[storage]` or
//! `[kvdb]`), in GoWorld's own document layout, so a GoWorld deployment's database loads
//! unchanged:
//!
//! - Entity storage: database `db` (default `goworld`), one collection per entity type, one
//!   document per entity, `{_id: "<16-char entity ID>", data: {...persistent attributes...}}`,
//!   replaced whole by a save (an upsert by `_id`, as GoWorld's `UpsertId`).
//! - KVDB: one document per key, `{_id: key, "_": value}`, in `[kvdb] collection`; GetRange is
//!   `{_id: {$gte: begin, $lt: end}}` sorted by `_id`; GetOrPut is one `findAndModify` upsert
//!   with `$setOnInsert` answering the document as it was, so it is atomic against every game
//!   using the database.
//!
//! The game hands storage a msgpack map; here it becomes a BSON document and back
//! ([`to_bson`], [`from_bson`]): integers are int64 (an int32 reads back as an integer too),
//! floats doubles, bin `Binary` (msgpack ext is kept as a user-defined binary subtype), maps
//! documents. A whole-number double that a server answers as an integer (the test
//! stand-in does) is read back as a float by the game when its type declares the attribute
//! `f64`.
//!
//! One driver [`Client`] (a connection pool) is shared by every worker of a pool. It is the
//! driver's sync API: the driver runs its own tokio runtime threads inside the game process
//! (see ARCHITECTURE.md), and every call here blocks the calling worker on it. Timeouts:
//! connecting and each server monitor check take at most [`CONNECT_TIMEOUT`]; a request
//! waits at most [`SELECT_TIMEOUT`] for a reachable server; a request on a server that stops
//! answering is interrupted when the monitor's next check fails (the driver has no socket
//! timeout), so within about [`HEARTBEAT`] + [`CONNECT_TIMEOUT`].

use std::time::Duration;

use goworld_common::id::EntityId;
use goworld_common::msgpack::{self, Value};
use mongodb::bson::{doc, spec::BinarySubtype, Binary, Bson, Document};
use mongodb::options::{ClientOptions, ReturnDocument};
use mongodb::sync::{Client, Collection, Database};

use super::backend::{KvdbBackend, StorageBackend};

/// How long connecting (and one monitor check) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a request waits for a server it can use.
pub const SELECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the driver checks the server.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// The database when `db` is empty (GoWorld's default).
pub const DEFAULT_DB: &str = "goworld";
/// The binary subtype that holds a msgpack ext value: its type byte, then its data.
const EXT_SUBTYPE: u8 = 0x80;

/// A client for `url` (`mongodb://host:port/...`) with this engine's timeouts. It connects
/// on first use.
pub fn client(url: &str) -> Result<Client, String> {
    let mut opts = ClientOptions::parse(url)
        .run()
        .map_err(|e| format!("bad mongodb url '{url}': {e}"))?;
    opts.connect_timeout = Some(CONNECT_TIMEOUT);
    opts.server_selection_timeout = Some(SELECT_TIMEOUT);
    opts.heartbeat_freq = Some(HEARTBEAT);
    if opts.app_name.is_none() {
        opts.app_name = Some("goworld-rs game".into());
    }
    Client::with_options(opts).map_err(|e| format!("mongodb url '{url}': {e}"))
}

/// The database `db` of `client`, GoWorld's `goworld` if empty.
fn database(client: &Client, db: &str) -> Database {
    client.database(if db.is_empty() { DEFAULT_DB } else { db })
}

fn err(e: mongodb::error::Error) -> String {
    format!("mongodb: {e}")
}

/// The BSON form of a msgpack value.
pub fn to_bson(v: &Value) -> Result<Bson, String> {
    Ok(match v {
        Value::Nil => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Int(i) => Bson::Int64(*i),
        Value::UInt(u) => {
            return Err(format!(
                "the integer {u} is above int64 and cannot be stored in MongoDB"
            ))
        }
        Value::Float(f) => Bson::Double(*f),
        Value::Str(s) => Bson::String(s.clone()),
        Value::Bin(b) => Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: b.clone(),
        }),
        Value::Array(items) => Bson::Array(items.iter().map(to_bson).collect::<Result<_, _>>()?),
        Value::Map(_) => Bson::Document(to_document(v)?),
        Value::Ext(t, data) => {
            let mut bytes = Vec::with_capacity(1 + data.len());
            bytes.push(*t as u8);
            bytes.extend_from_slice(data);
            Bson::Binary(Binary {
                subtype: BinarySubtype::UserDefined(EXT_SUBTYPE),
                bytes,
            })
        }
    })
}

/// The BSON document of a msgpack map (its keys must be strings).
pub fn to_document(v: &Value) -> Result<Document, String> {
    let Value::Map(pairs) = v else {
        return Err("entity data is not a map".into());
    };
    let mut d = Document::new();
    for (k, v) in pairs {
        let Value::Str(k) = k else {
            return Err(format!("a map key is not a string: {k:?}"));
        };
        d.insert(k.clone(), to_bson(v)?);
    }
    Ok(d)
}

/// The msgpack form of a BSON value. Types msgpack lacks become their nearest GoWorld
/// value: an ObjectId its hex string, a date its milliseconds, a timestamp its seconds,
/// a decimal its string.
pub fn from_bson(b: &Bson) -> Value {
    match b {
        Bson::Null | Bson::Undefined => Value::Nil,
        Bson::Boolean(b) => Value::Bool(*b),
        Bson::Int32(i) => Value::Int(i64::from(*i)),
        Bson::Int64(i) => Value::Int(*i),
        Bson::Double(f) => Value::Float(*f),
        Bson::String(s) | Bson::Symbol(s) | Bson::JavaScriptCode(s) => Value::Str(s.clone()),
        Bson::Binary(Binary {
            subtype: BinarySubtype::UserDefined(EXT_SUBTYPE),
            bytes,
        }) if !bytes.is_empty() => Value::Ext(bytes[0] as i8, bytes[1..].to_vec()),
        Bson::Binary(bin) => Value::Bin(bin.bytes.clone()),
        Bson::Array(items) => Value::Array(items.iter().map(from_bson).collect()),
        Bson::Document(d) => from_document(d),
        Bson::ObjectId(o) => Value::Str(o.to_hex()),
        Bson::DateTime(t) => Value::Int(t.timestamp_millis()),
        Bson::Timestamp(t) => Value::Int(i64::from(t.time)),
        Bson::Decimal128(d) => Value::Str(d.to_string()),
        other => Value::Str(other.to_string()),
    }
}

/// The msgpack map of a BSON document.
pub fn from_document(d: &Document) -> Value {
    Value::Map(
        d.iter()
            .map(|(k, v)| (Value::Str(k.clone()), from_bson(v)))
            .collect(),
    )
}

/// Entity storage on MongoDB.
pub struct MongoStorage {
    db: Database,
}

impl MongoStorage {
    /// Storage in database `db` (GoWorld's `goworld` if empty) of `client`.
    pub fn new(client: &Client, db: &str) -> MongoStorage {
        MongoStorage {
            db: database(client, db),
        }
    }

    fn coll(&self, type_name: &str) -> Collection<Document> {
        self.db.collection(type_name)
    }
}

/// An entity ID as a document `_id`.
fn id_str(eid: &EntityId) -> Result<&str, String> {
    std::str::from_utf8(eid.as_bytes()).map_err(|_| format!("entity ID {eid:?} is not UTF-8"))
}

impl StorageBackend for MongoStorage {
    fn save(&mut self, type_name: &str, eid: &EntityId, data: &[u8]) -> Result<(), String> {
        let attrs = msgpack::decode_exact(data).map_err(|e| format!("entity data: {e}"))?;
        let id = id_str(eid)?;
        let d = doc! { "_id": id, "data": to_document(&attrs)? };
        self.coll(type_name)
            .replace_one(doc! { "_id": id }, d)
            .upsert(true)
            .run()
            .map_err(err)?;
        Ok(())
    }

    fn load(&mut self, type_name: &str, eid: &EntityId) -> Result<Option<Vec<u8>>, String> {
        let Some(d) = self
            .coll(type_name)
            .find_one(doc! { "_id": id_str(eid)? })
            .run()
            .map_err(err)?
        else {
            return Ok(None);
        };
        match d.get("data") {
            Some(Bson::Document(data)) => Ok(Some(from_document(data).to_bytes())),
            // GoWorld reads a missing or null `data` as no attributes.
            None | Some(Bson::Null) => Ok(Some(Value::Map(Vec::new()).to_bytes())),
            Some(other) => Err(format!(
                "{type_name} {eid}: `data` is a {:?}, not a document",
                other.element_type()
            )),
        }
    }

    fn exists(&mut self, type_name: &str, eid: &EntityId) -> Result<bool, String> {
        Ok(self
            .coll(type_name)
            .find_one(doc! { "_id": id_str(eid)? })
            .projection(doc! { "_id": 1 })
            .run()
            .map_err(err)?
            .is_some())
    }

    fn list(&mut self, type_name: &str) -> Result<Vec<EntityId>, String> {
        let cursor = self
            .coll(type_name)
            .find(doc! {})
            .projection(doc! { "_id": 1 })
            .run()
            .map_err(err)?;
        let mut ids = Vec::new();
        let mut odd = 0usize;
        for d in cursor {
            let d = d.map_err(err)?;
            match d.get("_id") {
                Some(Bson::String(s)) => match EntityId::parse(s) {
                    Some(id) => ids.push(id),
                    None => odd += 1,
                },
                _ => odd += 1,
            }
        }
        if odd > 0 {
            log::warn!(
                "mongodb: {odd} document(s) in collection {type_name} have an _id that is not an entity ID; not listed"
            );
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}

/// The KVDB on MongoDB.
pub struct MongoKvdb {
    coll: Collection<Document>,
}

impl MongoKvdb {
    /// The KVDB in `collection` of database `db` (GoWorld's `goworld` if empty).
    pub fn new(client: &Client, db: &str, collection: &str) -> Result<MongoKvdb, String> {
        if collection.is_empty() {
            return Err("the mongodb kvdb needs a collection".into());
        }
        Ok(MongoKvdb {
            coll: database(client, db).collection(collection),
        })
    }
}

/// The value of a KVDB document.
fn kv_value(key: &str, d: &Document) -> Result<String, String> {
    match d.get("_") {
        Some(Bson::String(s)) => Ok(s.clone()),
        other => Err(format!(
            "kvdb key {key:?}: the value is {:?}, not a string",
            other.map(Bson::element_type)
        )),
    }
}

impl KvdbBackend for MongoKvdb {
    fn get(&mut self, key: &str) -> Result<Option<String>, String> {
        let d = self.coll.find_one(doc! { "_id": key }).run().map_err(err)?;
        d.map(|d| kv_value(key, &d)).transpose()
    }

    fn put(&mut self, key: &str, val: &str) -> Result<(), String> {
        self.coll
            .replace_one(doc! { "_id": key }, doc! { "_id": key, "_": val })
            .upsert(true)
            .run()
            .map_err(err)?;
        Ok(())
    }

    fn get_or_put(&mut self, key: &str, val: &str) -> Result<Option<String>, String> {
        let before = self
            .coll
            .find_one_and_update(doc! { "_id": key }, doc! { "$setOnInsert": { "_": val } })
            .upsert(true)
            .return_document(ReturnDocument::Before)
            .run()
            .map_err(err)?;
        before.map(|d| kv_value(key, &d)).transpose()
    }

    fn get_range(&mut self, begin: &str, end: &str) -> Result<Vec<(String, String)>, String> {
        if begin >= end {
            return Ok(Vec::new());
        }
        let cursor = self
            .coll
            .find(doc! { "_id": { "$gte": begin, "$lt": end } })
            .sort(doc! { "_id": 1 })
            .run()
            .map_err(err)?;
        let mut out = Vec::new();
        for d in cursor {
            let d = d.map_err(err)?;
            let Some(Bson::String(key)) = d.get("_id") else {
                continue;
            };
            let v = kv_value(key, &d)?;
            out.push((key.clone(), v));
        }
        // Byte order, whatever the server's string order is.
        out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        Ok(out)
    }
}
