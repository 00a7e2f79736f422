//! Entity attributes: GoWorld's `MapAttr` / `ListAttr` with change tracking (reference §3.2)
//! and the exact client messages 1004–1008 and 1012 each change becomes (§2.6).
//!
//! This module owns the attribute tree of one entity ([`Attrs`]: a root [`MapAttr`] plus a
//! log of [`AttrChange`]s), the plain values ([`AttrValue`], [`MapAttr`], [`ListAttr`]), their
//! msgpack conversions (client data, persistent data, migration/freeze bytes) and the
//! encoding of attribute paths. It does not decide who receives a change: the engine takes
//! the log with [`Attrs::take_changes`], looks up the flags of [`AttrChange::root_key`]
//! (`AllClients`: own client + interested clients; `Client`: own client; none: nobody) and
//! sends [`AttrChange::to_client_msg`] to each recipient.
//!
//! Mutation goes through cursors: [`Attrs::root`] gives a [`MapMut`], whose
//! [`map`](MapMut::map)/[`list`](MapMut::list) descend (creating a missing container and
//! recording that, as GoWorld's `GetMapAttr`/`GetListAttr` do). Every mutation appends one
//! change, in order, exactly as GoWorld sends one packet per mutation. Reading works on the
//! plain types; cursors dereference to them.
//!
//! Choices where GoWorld panics (documented on each item): map getters return the zero value
//! for a missing key *or* a value of another type (use [`MapAttr::get`] to tell); list access
//! out of range, a type mismatch when descending, and clearing the root are [`AttrError`]s;
//! typed pops leave a value of another type in place. msgpack nil is not an attribute value:
//! [`AttrValue::from_value`] rejects it (GoWorld's `uniformAttrType` panics on it).
//!
//! Differences from GoWorld that a client cannot tell apart: map keys are kept sorted (Go's
//! are in random order), and changes deep inside a map appended to a list are always
//! recorded (GoWorld loses the owner there and may not sync them).
//!
//! No sockets, files, clock or globals.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;

use goworld_common::id::EntityId;
use goworld_common::msgpack::{self, Value};
use goworld_common::proto::ClientMsg;

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/// One attribute value, uniformed like GoWorld's `uniformAttrType`: every integer is an
/// `i64`, every float an `f64`.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// Any integer (GoWorld `int64`; encoded as msgpack int64 `0xd3`).
    Int(i64),
    /// Any float (GoWorld `float64`; float32 is widened; encoded as `0xcb`).
    Float(f64),
    /// A bool.
    Bool(bool),
    /// A string.
    Str(String),
    /// A nested map attribute.
    Map(MapAttr),
    /// A nested list attribute.
    List(ListAttr),
}

impl AttrValue {
    /// The integer, if this is an `Int`.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            AttrValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// Any number as `f64` (`Int` is converted), like GoWorld's float getters should be.
    pub fn as_float(&self) -> Option<f64> {
        match self {
            AttrValue::Float(f) => Some(*f),
            AttrValue::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The bool, if this is a `Bool`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            AttrValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The string, if this is a `Str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The map, if this is a `Map`.
    pub fn as_map(&self) -> Option<&MapAttr> {
        match self {
            AttrValue::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The list, if this is a `List`.
    pub fn as_list(&self) -> Option<&ListAttr> {
        match self {
            AttrValue::List(l) => Some(l),
            _ => None,
        }
    }

    /// The name of this value's type, for error messages: `int`, `float`, `bool`, `str`,
    /// `map` or `list`.
    pub fn type_name(&self) -> &'static str {
        match self {
            AttrValue::Int(_) => "int",
            AttrValue::Float(_) => "float",
            AttrValue::Bool(_) => "bool",
            AttrValue::Str(_) => "str",
            AttrValue::Map(_) => "map",
            AttrValue::List(_) => "list",
        }
    }

    /// This value as plain msgpack (GoWorld's `ToMap`/`ToList` for containers).
    pub fn to_value(&self) -> Value {
        match self {
            AttrValue::Int(i) => Value::Int(*i),
            AttrValue::Float(f) => Value::Float(*f),
            AttrValue::Bool(b) => Value::Bool(*b),
            AttrValue::Str(s) => Value::Str(s.clone()),
            AttrValue::Map(m) => m.to_value(),
            AttrValue::List(l) => l.to_value(),
        }
    }

    /// Converts a decoded msgpack value (GoWorld's `AssignMap`/`AssignList` rules): maps
    /// with string keys become [`MapAttr`] (a repeated key: the last wins), arrays become
    /// [`ListAttr`], integers of any width become `Int` (an unsigned value above `i64::MAX`
    /// wraps, as Go's `int64(uint64)` does), float32/float64 become `Float`.
    ///
    /// Rejected (GoWorld panics on all of them): nil, binary, ext, and maps with a key that
    /// is not a string.
    pub fn from_value(v: &Value) -> Result<AttrValue, ValueError> {
        Ok(match v {
            Value::Int(i) => AttrValue::Int(*i),
            Value::UInt(u) => AttrValue::Int(*u as i64),
            Value::Float(f) => AttrValue::Float(*f),
            Value::Bool(b) => AttrValue::Bool(*b),
            Value::Str(s) => AttrValue::Str(s.clone()),
            Value::Map(_) => AttrValue::Map(MapAttr::from_value(v)?),
            Value::Array(_) => AttrValue::List(ListAttr::from_value(v)?),
            Value::Nil | Value::Bin(_) | Value::Ext(..) => {
                return Err(ValueError::NotAValue {
                    path: String::new(),
                    found: value_kind(v),
                })
            }
        })
    }
}

impl From<i64> for AttrValue {
    fn from(v: i64) -> AttrValue {
        AttrValue::Int(v)
    }
}

impl From<i32> for AttrValue {
    fn from(v: i32) -> AttrValue {
        AttrValue::Int(i64::from(v))
    }
}

impl From<u32> for AttrValue {
    fn from(v: u32) -> AttrValue {
        AttrValue::Int(i64::from(v))
    }
}

impl From<f64> for AttrValue {
    fn from(v: f64) -> AttrValue {
        AttrValue::Float(v)
    }
}

impl From<f32> for AttrValue {
    fn from(v: f32) -> AttrValue {
        AttrValue::Float(f64::from(v))
    }
}

impl From<bool> for AttrValue {
    fn from(v: bool) -> AttrValue {
        AttrValue::Bool(v)
    }
}

impl From<&str> for AttrValue {
    fn from(v: &str) -> AttrValue {
        AttrValue::Str(v.to_owned())
    }
}

impl From<String> for AttrValue {
    fn from(v: String) -> AttrValue {
        AttrValue::Str(v)
    }
}

impl From<MapAttr> for AttrValue {
    fn from(v: MapAttr) -> AttrValue {
        AttrValue::Map(v)
    }
}

impl From<ListAttr> for AttrValue {
    fn from(v: ListAttr) -> AttrValue {
        AttrValue::List(v)
    }
}

/// Why bytes or a msgpack value are not attributes (GoWorld panics on all of these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueError {
    /// Not msgpack, or bytes after the value.
    Msgpack(String),
    /// A value attributes cannot hold (nil, binary, ext), at `path`.
    NotAValue {
        /// Where, from the root: `key`, `key[2].inner` (empty: the value itself).
        path: String,
        /// What was found (`nil`, `binary`, `ext`).
        found: &'static str,
    },
    /// A map key that is not a string, in the map at `path`.
    KeyNotString {
        /// Where the map is.
        path: String,
        /// The key's kind.
        found: &'static str,
    },
    /// Another kind of value where a map or an array belongs, at `path`.
    Expected {
        /// Where.
        path: String,
        /// `map` or `array`.
        expected: &'static str,
        /// What was found.
        found: &'static str,
    },
}

impl ValueError {
    /// The same error, one level down: `seg` (a key or `[i]`) goes in front of its path.
    fn within(mut self, seg: &str) -> ValueError {
        if let ValueError::NotAValue { path, .. }
        | ValueError::KeyNotString { path, .. }
        | ValueError::Expected { path, .. } = &mut self
        {
            let sep = if path.is_empty() || path.starts_with('[') {
                ""
            } else {
                "."
            };
            *path = format!("{seg}{sep}{path}");
        }
        self
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |path: &str| {
            if path.is_empty() {
                String::new()
            } else {
                format!("{path}: ")
            }
        };
        match self {
            ValueError::Msgpack(e) => write!(f, "not msgpack: {e}"),
            ValueError::NotAValue { path, found } => {
                write!(f, "{}{found} is not an attribute value", at(path))
            }
            ValueError::KeyNotString { path, found } => {
                write!(f, "{}map key {found} is not a string", at(path))
            }
            ValueError::Expected {
                path,
                expected,
                found,
            } => write!(f, "{}expected {expected}, got {found}", at(path)),
        }
    }
}

impl std::error::Error for ValueError {}

/// Why an attribute operation failed (where GoWorld panics). Nothing is changed and nothing
/// is recorded when an operation fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrError {
    /// A list index at or past the end.
    OutOfRange {
        /// The index asked for.
        index: usize,
        /// The list's length.
        len: usize,
    },
    /// Pop from an empty list.
    Empty,
    /// The value is not of the type asked for.
    TypeMismatch {
        /// The type asked for (see [`AttrValue::type_name`]).
        expected: &'static str,
        /// The type found.
        found: &'static str,
    },
    /// `clear()` on the root map (GoWorld: "outmost e.Attrs can not be cleared").
    ClearRoot,
    /// A msgpack value that cannot become an attribute (see [`AttrValue::from_value`]).
    Invalid(String),
}

impl fmt::Display for AttrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrError::OutOfRange { index, len } => {
                write!(f, "list index {index} out of range (size {len})")
            }
            AttrError::Empty => f.write_str("pop from an empty list"),
            AttrError::TypeMismatch { expected, found } => {
                write!(f, "attribute is {found}, not {expected}")
            }
            AttrError::ClearRoot => f.write_str("the root attributes can not be cleared"),
            AttrError::Invalid(e) => write!(f, "invalid attribute value: {e}"),
        }
    }
}

impl std::error::Error for AttrError {}

/// True if `v` is of type `expected` ([`AttrValue::type_name`]); "float" accepts integers.
fn kind_is(v: &AttrValue, expected: &str) -> bool {
    v.type_name() == expected || (expected == "float" && matches!(v, AttrValue::Int(_)))
}

fn mismatch(expected: &'static str, found: &AttrValue) -> AttrError {
    AttrError::TypeMismatch {
        expected,
        found: found.type_name(),
    }
}

// ---------------------------------------------------------------------------------------------
// MapAttr / ListAttr (plain values; reading and building, no change tracking)
// ---------------------------------------------------------------------------------------------

/// A map attribute: string keys, kept sorted so encodings are reproducible.
///
/// A detached `MapAttr` is a plain value: build it with [`insert`](MapAttr::insert) /
/// [`with`](MapAttr::with) and attach it with [`MapMut::set_map`] or
/// [`ListMut::append_map`]; changes are only recorded through cursors.
///
/// Typed getters follow GoWorld: a missing key gives the zero value. A value of another
/// type also gives the zero value (GoWorld panics); use [`get`](MapAttr::get) to tell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MapAttr {
    items: BTreeMap<String, AttrValue>,
}

impl MapAttr {
    /// An empty map.
    pub fn new() -> MapAttr {
        MapAttr::default()
    }

    /// Sets `key` (no change is recorded: this map is detached); returns the old value.
    pub fn insert(&mut self, key: &str, v: impl Into<AttrValue>) -> Option<AttrValue> {
        self.items.insert(key.to_owned(), v.into())
    }

    /// Builder form of [`insert`](MapAttr::insert).
    pub fn with(mut self, key: &str, v: impl Into<AttrValue>) -> MapAttr {
        self.insert(key, v);
        self
    }

    /// The value at `key`.
    pub fn get(&self, key: &str) -> Option<&AttrValue> {
        self.items.get(key)
    }

    /// The integer at `key`; 0 if missing or not an integer.
    pub fn get_int(&self, key: &str) -> i64 {
        self.get(key).and_then(AttrValue::as_int).unwrap_or(0)
    }

    /// The number at `key` as `f64` (integers are converted); 0.0 if missing or not a number.
    pub fn get_float(&self, key: &str) -> f64 {
        self.get(key).and_then(AttrValue::as_float).unwrap_or(0.0)
    }

    /// The bool at `key`; false if missing or not a bool.
    pub fn get_bool(&self, key: &str) -> bool {
        self.get(key).and_then(AttrValue::as_bool).unwrap_or(false)
    }

    /// The string at `key`; "" if missing or not a string.
    pub fn get_str(&self, key: &str) -> &str {
        self.get(key).and_then(AttrValue::as_str).unwrap_or("")
    }

    /// The map at `key`, if it holds one (reading never creates; see [`MapMut::map`]).
    pub fn get_map(&self, key: &str) -> Option<&MapAttr> {
        self.get(key).and_then(AttrValue::as_map)
    }

    /// The list at `key`, if it holds one (reading never creates; see [`MapMut::list`]).
    pub fn get_list(&self, key: &str) -> Option<&ListAttr> {
        self.get(key).and_then(AttrValue::as_list)
    }

    /// True if `key` is set.
    pub fn has_key(&self, key: &str) -> bool {
        self.items.contains_key(key)
    }

    /// The keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.items.keys().map(String::as_str)
    }

    /// The key/value pairs, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &AttrValue)> {
        self.items.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Calls `f` on every key/value pair, sorted by key (GoWorld's `ForEach`).
    pub fn for_each(&self, mut f: impl FnMut(&str, &AttrValue)) {
        for (k, v) in self.iter() {
            f(k, v);
        }
    }

    /// Number of keys (GoWorld's `Size`).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True if there are no keys.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// This map as a plain msgpack map with string keys, recursively (GoWorld's `ToMap`).
    pub fn to_value(&self) -> Value {
        self.filtered_value(|_| true)
    }

    /// The keys for which `include(key)` is true, as a msgpack map (GoWorld's
    /// `ToMapWithFilter`; the filter applies to this level only).
    pub fn filtered_value(&self, include: impl Fn(&str) -> bool) -> Value {
        Value::Map(
            self.items
                .iter()
                .filter(|(k, _)| include(k))
                .map(|(k, v)| (Value::Str(k.clone()), v.to_value()))
                .collect(),
        )
    }

    /// Converts a msgpack map (see [`AttrValue::from_value`] for the rules).
    pub fn from_value(v: &Value) -> Result<MapAttr, ValueError> {
        let pairs = v.as_map().ok_or(ValueError::Expected {
            path: String::new(),
            expected: "map",
            found: value_kind(v),
        })?;
        let mut m = MapAttr::new();
        for (k, v) in pairs {
            let key = k.as_str().ok_or(ValueError::KeyNotString {
                path: String::new(),
                found: value_kind(k),
            })?;
            let val = AttrValue::from_value(v).map_err(|e| e.within(key))?;
            m.items.insert(key.to_owned(), val);
        }
        Ok(m)
    }
}

/// A list attribute.
///
/// A detached `ListAttr` is a plain value: build it with [`push`](ListAttr::push) /
/// [`with`](ListAttr::with). Indexed getters return [`AttrError::OutOfRange`] past the end
/// and [`AttrError::TypeMismatch`] for a value of another type (GoWorld panics on both).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListAttr {
    items: Vec<AttrValue>,
}

impl ListAttr {
    /// An empty list.
    pub fn new() -> ListAttr {
        ListAttr::default()
    }

    /// Appends (no change is recorded: this list is detached).
    pub fn push(&mut self, v: impl Into<AttrValue>) {
        self.items.push(v.into());
    }

    /// Builder form of [`push`](ListAttr::push).
    pub fn with(mut self, v: impl Into<AttrValue>) -> ListAttr {
        self.push(v);
        self
    }

    /// The value at `i`, if in range.
    pub fn get(&self, i: usize) -> Option<&AttrValue> {
        self.items.get(i)
    }

    fn at(&self, i: usize) -> Result<&AttrValue, AttrError> {
        self.items.get(i).ok_or(AttrError::OutOfRange {
            index: i,
            len: self.items.len(),
        })
    }

    /// The integer at `i`.
    pub fn get_int(&self, i: usize) -> Result<i64, AttrError> {
        let v = self.at(i)?;
        v.as_int().ok_or_else(|| mismatch("int", v))
    }

    /// The number at `i` as `f64` (integers are converted).
    pub fn get_float(&self, i: usize) -> Result<f64, AttrError> {
        let v = self.at(i)?;
        v.as_float().ok_or_else(|| mismatch("float", v))
    }

    /// The bool at `i`.
    pub fn get_bool(&self, i: usize) -> Result<bool, AttrError> {
        let v = self.at(i)?;
        v.as_bool().ok_or_else(|| mismatch("bool", v))
    }

    /// The string at `i`.
    pub fn get_str(&self, i: usize) -> Result<&str, AttrError> {
        let v = self.at(i)?;
        v.as_str().ok_or_else(|| mismatch("str", v))
    }

    /// The map at `i`.
    pub fn get_map(&self, i: usize) -> Result<&MapAttr, AttrError> {
        let v = self.at(i)?;
        v.as_map().ok_or_else(|| mismatch("map", v))
    }

    /// The list at `i`.
    pub fn get_list(&self, i: usize) -> Result<&ListAttr, AttrError> {
        let v = self.at(i)?;
        v.as_list().ok_or_else(|| mismatch("list", v))
    }

    /// The items in order.
    pub fn iter(&self) -> impl Iterator<Item = &AttrValue> {
        self.items.iter()
    }

    /// Number of items (GoWorld's `Size`).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True if there are no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// This list as a plain msgpack array, recursively (GoWorld's `ToList`).
    pub fn to_value(&self) -> Value {
        Value::Array(self.items.iter().map(AttrValue::to_value).collect())
    }

    /// Converts a msgpack array (see [`AttrValue::from_value`] for the rules).
    pub fn from_value(v: &Value) -> Result<ListAttr, ValueError> {
        let items = v.as_array().ok_or(ValueError::Expected {
            path: String::new(),
            expected: "array",
            found: value_kind(v),
        })?;
        let items = items
            .iter()
            .enumerate()
            .map(|(i, v)| AttrValue::from_value(v).map_err(|e| e.within(&format!("[{i}]"))))
            .collect::<Result<_, _>>()?;
        Ok(ListAttr { items })
    }
}

fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Bool(_) => "bool",
        Value::Int(_) | Value::UInt(_) => "int",
        Value::Float(_) => "float",
        Value::Str(_) => "str",
        Value::Bin(_) => "bin",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        Value::Ext(..) => "ext",
    }
}

// ---------------------------------------------------------------------------------------------
// Changes and their client messages
// ---------------------------------------------------------------------------------------------

/// One step of a container's path from the root map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    /// A map key.
    Key(String),
    /// A list index.
    Index(u32),
}

/// Encodes a container path the way GoWorld's clients expect it: nil (`0xc0`) for the root
/// map (empty path), otherwise an array with the innermost segment first and the root key
/// last; keys as strings, list indices as int64 `0xd3`.
pub fn encode_path(path: &[PathSeg]) -> Vec<u8> {
    let mut out = Vec::new();
    if path.is_empty() {
        msgpack::write_nil(&mut out);
        return out;
    }
    msgpack::write_array_len(&mut out, path.len() as u32);
    for seg in path.iter().rev() {
        match seg {
            PathSeg::Key(k) => msgpack::write_str(&mut out, k),
            PathSeg::Index(i) => msgpack::write_int(&mut out, i64::from(*i)),
        }
    }
    out
}

/// One recorded mutation. `path` is the path of the mutated container from the root (empty =
/// the root map); `val` is the new value as plain msgpack (a container is sent whole).
#[derive(Debug, Clone, PartialEq)]
pub enum AttrChange {
    /// A map key was set (1004 MT_NOTIFY_MAP_ATTR_CHANGE_ON_CLIENT).
    MapSet {
        /// Path of the map.
        path: Vec<PathSeg>,
        /// The key set.
        key: String,
        /// The new value.
        val: Value,
    },
    /// A map key was deleted (1005 MT_NOTIFY_MAP_ATTR_DEL_ON_CLIENT).
    MapDel {
        /// Path of the map.
        path: Vec<PathSeg>,
        /// The key deleted.
        key: String,
    },
    /// A (non-root) map was cleared (1012 MT_NOTIFY_MAP_ATTR_CLEAR_ON_CLIENT).
    MapClear {
        /// Path of the map.
        path: Vec<PathSeg>,
    },
    /// A list item was replaced (1006 MT_NOTIFY_LIST_ATTR_CHANGE_ON_CLIENT).
    ListSet {
        /// Path of the list.
        path: Vec<PathSeg>,
        /// The index set.
        index: u32,
        /// The new value.
        val: Value,
    },
    /// An item was appended to a list (1008 MT_NOTIFY_LIST_ATTR_APPEND_ON_CLIENT).
    ListAppend {
        /// Path of the list.
        path: Vec<PathSeg>,
        /// The appended value.
        val: Value,
    },
    /// The last item of a list was removed (1007 MT_NOTIFY_LIST_ATTR_POP_ON_CLIENT).
    ListPop {
        /// Path of the list.
        path: Vec<PathSeg>,
    },
}

impl AttrChange {
    /// The path of the mutated container from the root.
    pub fn path(&self) -> &[PathSeg] {
        match self {
            AttrChange::MapSet { path, .. }
            | AttrChange::MapDel { path, .. }
            | AttrChange::MapClear { path }
            | AttrChange::ListSet { path, .. }
            | AttrChange::ListAppend { path, .. }
            | AttrChange::ListPop { path } => path,
        }
    }

    /// The root attribute this change is under: the first path segment, or the key itself
    /// for a root-level set/delete. Its flags (Client / AllClients / none) pick the
    /// recipients. ("" cannot happen for changes made through [`Attrs`].)
    pub fn root_key(&self) -> &str {
        match (self.path().first(), self) {
            (Some(PathSeg::Key(k)), _) => k,
            (None, AttrChange::MapSet { key, .. } | AttrChange::MapDel { key, .. }) => key,
            _ => "",
        }
    }

    /// GoWorld's client message for this change, for entity `eid`: 1004, 1005, 1006, 1007,
    /// 1008 or 1012, with `path` as [`encode_path`] gives it and `val` encoded by
    /// [`Value::encode`] (int64, float64, `0x80`/`0x90` for empty containers).
    pub fn to_client_msg(&self, eid: EntityId) -> ClientMsg {
        let path = encode_path(self.path());
        match self {
            AttrChange::MapSet { key, val, .. } => ClientMsg::NotifyMapAttrChange {
                eid,
                path,
                key: key.clone(),
                val: val.to_bytes(),
            },
            AttrChange::MapDel { key, .. } => ClientMsg::NotifyMapAttrDel {
                eid,
                path,
                key: key.clone(),
            },
            AttrChange::MapClear { .. } => ClientMsg::NotifyMapAttrClear { eid, path },
            AttrChange::ListSet { index, val, .. } => ClientMsg::NotifyListAttrChange {
                eid,
                path,
                index: *index,
                val: val.to_bytes(),
            },
            AttrChange::ListAppend { val, .. } => ClientMsg::NotifyListAttrAppend {
                eid,
                path,
                val: val.to_bytes(),
            },
            AttrChange::ListPop { .. } => ClientMsg::NotifyListAttrPop { eid, path },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Attrs (the entity's tree + change log)
// ---------------------------------------------------------------------------------------------

/// An entity's attributes: the root map and the log of changes not yet taken.
///
/// Reading: `Attrs` dereferences to the root [`MapAttr`] (`get_int`, `get`, `keys`, …).
/// Writing: [`root`](Attrs::root) and the shortcuts [`map`](Attrs::map) /
/// [`list`](Attrs::list).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attrs {
    root: MapAttr,
    changes: Vec<AttrChange>,
}

impl Attrs {
    /// Empty attributes, no changes.
    pub fn new() -> Attrs {
        Attrs::default()
    }

    /// Gives loaded root numbers their declared type, recording no change: an integer in
    /// an attribute named in `floats` becomes a float, a whole float in one named in `ints`
    /// an integer. A store may answer a whole-number float as an integer, or a large
    /// integer as a float (msgpack writers that shorten numbers; the MongoDB stand-in).
    pub fn numbers_as_declared(&mut self, floats: &[String], ints: &[String]) {
        for k in floats {
            if let Some(v) = self.root.items.get_mut(k) {
                if let AttrValue::Int(i) = *v {
                    *v = AttrValue::Float(i as f64);
                }
            }
        }
        for k in ints {
            if let Some(v) = self.root.items.get_mut(k) {
                if let AttrValue::Float(f) = *v {
                    // Whole and within i64 (2^63 itself is not).
                    if f.fract() == 0.0 && f >= -(2f64.powi(63)) && f < 2f64.powi(63) {
                        *v = AttrValue::Int(f as i64);
                    }
                }
            }
        }
    }

    /// Attributes holding `root`, no changes recorded (loading, migration, restore).
    pub fn from_map(root: MapAttr) -> Attrs {
        Attrs {
            root,
            changes: Vec::new(),
        }
    }

    /// The root map.
    pub fn as_map(&self) -> &MapAttr {
        &self.root
    }

    /// A cursor on the root map, for mutation.
    pub fn root(&mut self) -> MapMut<'_> {
        MapMut {
            node: &mut self.root,
            changes: &mut self.changes,
            path: Vec::new(),
        }
    }

    /// The map at root key `key`, created (and recorded) if missing: `root().into_map(key)`.
    pub fn map(&mut self, key: &str) -> Result<MapMut<'_>, AttrError> {
        self.root().into_map(key)
    }

    /// The list at root key `key`, created (and recorded) if missing: `root().into_list(key)`.
    pub fn list(&mut self, key: &str) -> Result<ListMut<'_>, AttrError> {
        self.root().into_list(key)
    }

    /// Takes the changes recorded since the last call, oldest first.
    pub fn take_changes(&mut self) -> Vec<AttrChange> {
        std::mem::take(&mut self.changes)
    }

    /// True if changes are waiting to be taken.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// The client data of CREATE_ENTITY_ON_CLIENT: the root keys for which `include(key)` is
    /// true, encoded as a msgpack map with the client rules (`0x80` when none).
    pub fn client_data(&self, include: impl Fn(&str) -> bool) -> Vec<u8> {
        self.root.filtered_value(include).to_bytes()
    }

    /// The root keys for which `include(key)` is true, as a msgpack map (persistent data).
    pub fn filtered_value(&self, include: impl Fn(&str) -> bool) -> Value {
        self.root.filtered_value(include)
    }

    /// The whole root as a msgpack map (migration and freeze carry every attribute).
    pub fn to_value(&self) -> Value {
        self.root.to_value()
    }

    /// The whole root encoded as msgpack (storage, migration, freeze).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_value().to_bytes()
    }

    /// Attributes from [`to_bytes`](Attrs::to_bytes) output (or any msgpack map of
    /// attributes), no changes recorded. Fails on bad msgpack, trailing bytes, a non-map
    /// root, or a value [`AttrValue::from_value`] rejects.
    pub fn from_bytes(b: &[u8]) -> Result<Attrs, ValueError> {
        let v = msgpack::decode_exact(b).map_err(|e| ValueError::Msgpack(e.to_string()))?;
        Ok(Attrs::from_map(MapAttr::from_value(&v)?))
    }
}

impl Deref for Attrs {
    type Target = MapAttr;

    fn deref(&self) -> &MapAttr {
        &self.root
    }
}

// ---------------------------------------------------------------------------------------------
// Cursors
// ---------------------------------------------------------------------------------------------

/// A mutable cursor on one map of an [`Attrs`] tree: every mutation through it is recorded
/// with the map's path. Dereferences to [`MapAttr`] for reading.
///
/// Descending: [`map`](MapMut::map) / [`list`](MapMut::list) borrow this cursor;
/// [`into_map`](MapMut::into_map) / [`into_list`](MapMut::into_list) consume it (for
/// `let mut m = attrs.root().into_map("a")?;`).
#[derive(Debug)]
pub struct MapMut<'a> {
    node: &'a mut MapAttr,
    changes: &'a mut Vec<AttrChange>,
    path: Vec<PathSeg>,
}

impl Deref for MapMut<'_> {
    type Target = MapAttr;

    fn deref(&self) -> &MapAttr {
        self.node
    }
}

fn child_path(path: &[PathSeg], seg: PathSeg) -> Vec<PathSeg> {
    let mut p = Vec::with_capacity(path.len() + 1);
    p.extend_from_slice(path);
    p.push(seg);
    p
}

impl<'a> MapMut<'a> {
    /// This map's path from the root (empty for the root).
    pub fn path(&self) -> &[PathSeg] {
        &self.path
    }

    fn record_set(&mut self, key: &str, val: Value) {
        self.changes.push(AttrChange::MapSet {
            path: self.path.clone(),
            key: key.to_owned(),
            val,
        });
    }

    /// Sets `key` to `v` and records it (1004 with the whole value). Setting a container
    /// replaces whatever was there.
    pub fn set(&mut self, key: &str, v: impl Into<AttrValue>) {
        let v = v.into();
        let val = v.to_value();
        self.node.items.insert(key.to_owned(), v);
        self.record_set(key, val);
    }

    /// Sets an integer.
    pub fn set_int(&mut self, key: &str, v: i64) {
        self.set(key, v);
    }

    /// Sets a float.
    pub fn set_float(&mut self, key: &str, v: f64) {
        self.set(key, v);
    }

    /// Sets a bool.
    pub fn set_bool(&mut self, key: &str, v: bool) {
        self.set(key, v);
    }

    /// Sets a string.
    pub fn set_str(&mut self, key: &str, v: &str) {
        self.set(key, v);
    }

    /// Sets a map (the change carries its whole content).
    pub fn set_map(&mut self, key: &str, v: MapAttr) {
        self.set(key, v);
    }

    /// Sets a list (the change carries its whole content).
    pub fn set_list(&mut self, key: &str, v: ListAttr) {
        self.set(key, v);
    }

    /// Sets `key` only if it is missing; true (and one change recorded) if it set.
    pub fn set_default(&mut self, key: &str, v: impl Into<AttrValue>) -> bool {
        if self.node.has_key(key) {
            return false;
        }
        self.set(key, v);
        true
    }

    /// [`set_default`](MapMut::set_default) for an integer.
    pub fn set_default_int(&mut self, key: &str, v: i64) -> bool {
        self.set_default(key, v)
    }

    /// [`set_default`](MapMut::set_default) for a float.
    pub fn set_default_float(&mut self, key: &str, v: f64) -> bool {
        self.set_default(key, v)
    }

    /// [`set_default`](MapMut::set_default) for a bool.
    pub fn set_default_bool(&mut self, key: &str, v: bool) -> bool {
        self.set_default(key, v)
    }

    /// [`set_default`](MapMut::set_default) for a string.
    pub fn set_default_str(&mut self, key: &str, v: &str) -> bool {
        self.set_default(key, v)
    }

    /// [`set_default`](MapMut::set_default) for a map.
    pub fn set_default_map(&mut self, key: &str, v: MapAttr) -> bool {
        self.set_default(key, v)
    }

    /// [`set_default`](MapMut::set_default) for a list.
    pub fn set_default_list(&mut self, key: &str, v: ListAttr) -> bool {
        self.set_default(key, v)
    }

    /// Removes `key` and returns its value; records a delete (1005) only if it was there.
    pub fn del(&mut self, key: &str) -> Option<AttrValue> {
        let v = self.node.items.remove(key)?;
        self.changes.push(AttrChange::MapDel {
            path: self.path.clone(),
            key: key.to_owned(),
        });
        Some(v)
    }

    /// Removes `key` if it holds a value of type `expected` (see [`kind_is`]); other types
    /// stay in place.
    fn pop_if<T>(
        &mut self,
        key: &str,
        expected: &'static str,
        take: impl Fn(AttrValue) -> Option<T>,
    ) -> Option<T> {
        if !kind_is(self.node.get(key)?, expected) {
            return None;
        }
        self.del(key).and_then(take)
    }

    /// Removes and returns the integer at `key`. `None` if missing or of another type (then
    /// nothing is removed or recorded; GoWorld returns 0 / panics).
    pub fn pop_int(&mut self, key: &str) -> Option<i64> {
        self.pop_if(key, "int", |v| v.as_int())
    }

    /// Removes and returns the number at `key` as `f64`, like [`pop_int`](MapMut::pop_int).
    pub fn pop_float(&mut self, key: &str) -> Option<f64> {
        self.pop_if(key, "float", |v| v.as_float())
    }

    /// Removes and returns the bool at `key`, like [`pop_int`](MapMut::pop_int).
    pub fn pop_bool(&mut self, key: &str) -> Option<bool> {
        self.pop_if(key, "bool", |v| v.as_bool())
    }

    /// Removes and returns the string at `key`, like [`pop_int`](MapMut::pop_int).
    pub fn pop_str(&mut self, key: &str) -> Option<String> {
        self.pop_if(key, "str", |v| match v {
            AttrValue::Str(s) => Some(s),
            _ => None,
        })
    }

    /// Removes and returns the map at `key`, like [`pop_int`](MapMut::pop_int).
    pub fn pop_map(&mut self, key: &str) -> Option<MapAttr> {
        self.pop_if(key, "map", |v| match v {
            AttrValue::Map(m) => Some(m),
            _ => None,
        })
    }

    /// Removes and returns the list at `key`, like [`pop_int`](MapMut::pop_int).
    pub fn pop_list(&mut self, key: &str) -> Option<ListAttr> {
        self.pop_if(key, "list", |v| match v {
            AttrValue::List(l) => Some(l),
            _ => None,
        })
    }

    /// Removes every key and records a clear (1012). An empty map records nothing (as in
    /// GoWorld). The root map cannot be cleared: [`AttrError::ClearRoot`], nothing changed.
    pub fn clear(&mut self) -> Result<(), AttrError> {
        if self.path.is_empty() {
            return Err(AttrError::ClearRoot);
        }
        if self.node.items.is_empty() {
            return Ok(());
        }
        self.node.items.clear();
        self.changes.push(AttrChange::MapClear {
            path: self.path.clone(),
        });
        Ok(())
    }

    /// Sets every key of the msgpack map `doc` (GoWorld's `AssignMap`): nested maps and
    /// arrays become [`MapAttr`]/[`ListAttr`], scalars are uniformed; one 1004 per key, in
    /// `doc`'s order. `doc` is checked whole first: on an error nothing is changed.
    pub fn assign(&mut self, doc: &Value) -> Result<(), AttrError> {
        let pairs = doc.as_map().ok_or_else(|| {
            AttrError::Invalid(format!("expected a map, got {}", value_kind(doc)))
        })?;
        let mut conv = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            let key = k.as_str().ok_or_else(|| {
                AttrError::Invalid(format!("map key {} is not a string", value_kind(k)))
            })?;
            let val = AttrValue::from_value(v)
                .map_err(|e| AttrError::Invalid(e.within(key).to_string()))?;
            conv.push((key, val));
        }
        for (k, v) in conv {
            self.set(k, v);
        }
        Ok(())
    }

    /// The map at `key`; if missing, an empty one is created and recorded (1004 with `{}`),
    /// as GoWorld's `GetMapAttr` does. A value of another type is a
    /// [`AttrError::TypeMismatch`] (nothing changed).
    pub fn map(&mut self, key: &str) -> Result<MapMut<'_>, AttrError> {
        child_map(self.node, self.changes, &self.path, key)
    }

    /// The list at `key`; if missing, an empty one is created and recorded (1004 with `[]`),
    /// as GoWorld's `GetListAttr` does. A value of another type is a
    /// [`AttrError::TypeMismatch`] (nothing changed).
    pub fn list(&mut self, key: &str) -> Result<ListMut<'_>, AttrError> {
        child_list(self.node, self.changes, &self.path, key)
    }

    /// [`map`](MapMut::map), consuming this cursor.
    pub fn into_map(self, key: &str) -> Result<MapMut<'a>, AttrError> {
        child_map(self.node, self.changes, &self.path, key)
    }

    /// [`list`](MapMut::list), consuming this cursor.
    pub fn into_list(self, key: &str) -> Result<ListMut<'a>, AttrError> {
        child_list(self.node, self.changes, &self.path, key)
    }
}

fn ensure_child(
    node: &mut MapAttr,
    changes: &mut Vec<AttrChange>,
    path: &[PathSeg],
    key: &str,
    empty: fn() -> AttrValue,
) {
    if !node.items.contains_key(key) {
        let v = empty();
        changes.push(AttrChange::MapSet {
            path: path.to_vec(),
            key: key.to_owned(),
            val: v.to_value(),
        });
        node.items.insert(key.to_owned(), v);
    }
}

fn child_map<'b>(
    node: &'b mut MapAttr,
    changes: &'b mut Vec<AttrChange>,
    path: &[PathSeg],
    key: &str,
) -> Result<MapMut<'b>, AttrError> {
    if let Some(v) = node.items.get(key) {
        if v.as_map().is_none() {
            return Err(mismatch("map", v));
        }
    }
    ensure_child(node, changes, path, key, || AttrValue::Map(MapAttr::new()));
    match node.items.get_mut(key) {
        Some(AttrValue::Map(m)) => Ok(MapMut {
            node: m,
            changes,
            path: child_path(path, PathSeg::Key(key.to_owned())),
        }),
        _ => Err(AttrError::Invalid(format!("{key}: not a map"))),
    }
}

fn child_list<'b>(
    node: &'b mut MapAttr,
    changes: &'b mut Vec<AttrChange>,
    path: &[PathSeg],
    key: &str,
) -> Result<ListMut<'b>, AttrError> {
    if let Some(v) = node.items.get(key) {
        if v.as_list().is_none() {
            return Err(mismatch("list", v));
        }
    }
    ensure_child(
        node,
        changes,
        path,
        key,
        || AttrValue::List(ListAttr::new()),
    );
    match node.items.get_mut(key) {
        Some(AttrValue::List(l)) => Ok(ListMut {
            node: l,
            changes,
            path: child_path(path, PathSeg::Key(key.to_owned())),
        }),
        _ => Err(AttrError::Invalid(format!("{key}: not a list"))),
    }
}

/// A mutable cursor on one list of an [`Attrs`] tree: every mutation through it is recorded
/// with the list's path. Dereferences to [`ListAttr`] for reading (`len`, `get_int(i)`, …).
/// An index past the end is [`AttrError::OutOfRange`], never a panic.
#[derive(Debug)]
pub struct ListMut<'a> {
    node: &'a mut ListAttr,
    changes: &'a mut Vec<AttrChange>,
    path: Vec<PathSeg>,
}

impl Deref for ListMut<'_> {
    type Target = ListAttr;

    fn deref(&self) -> &ListAttr {
        self.node
    }
}

impl<'a> ListMut<'a> {
    /// This list's path from the root.
    pub fn path(&self) -> &[PathSeg] {
        &self.path
    }

    fn check(&self, i: usize) -> Result<(), AttrError> {
        if i < self.node.items.len() {
            Ok(())
        } else {
            Err(AttrError::OutOfRange {
                index: i,
                len: self.node.items.len(),
            })
        }
    }

    /// Replaces item `i` and records it (1006 with the whole value).
    pub fn set(&mut self, i: usize, v: impl Into<AttrValue>) -> Result<(), AttrError> {
        self.check(i)?;
        let v = v.into();
        let val = v.to_value();
        self.node.items[i] = v;
        self.changes.push(AttrChange::ListSet {
            path: self.path.clone(),
            index: i as u32,
            val,
        });
        Ok(())
    }

    /// Replaces item `i` with an integer.
    pub fn set_int(&mut self, i: usize, v: i64) -> Result<(), AttrError> {
        self.set(i, v)
    }

    /// Replaces item `i` with a float.
    pub fn set_float(&mut self, i: usize, v: f64) -> Result<(), AttrError> {
        self.set(i, v)
    }

    /// Replaces item `i` with a bool.
    pub fn set_bool(&mut self, i: usize, v: bool) -> Result<(), AttrError> {
        self.set(i, v)
    }

    /// Replaces item `i` with a string.
    pub fn set_str(&mut self, i: usize, v: &str) -> Result<(), AttrError> {
        self.set(i, v)
    }

    /// Replaces item `i` with a map.
    pub fn set_map(&mut self, i: usize, v: MapAttr) -> Result<(), AttrError> {
        self.set(i, v)
    }

    /// Replaces item `i` with a list.
    pub fn set_list(&mut self, i: usize, v: ListAttr) -> Result<(), AttrError> {
        self.set(i, v)
    }

    /// Appends and records it (1008 with the whole value).
    pub fn append(&mut self, v: impl Into<AttrValue>) {
        let v = v.into();
        let val = v.to_value();
        self.node.items.push(v);
        self.changes.push(AttrChange::ListAppend {
            path: self.path.clone(),
            val,
        });
    }

    /// Appends an integer.
    pub fn append_int(&mut self, v: i64) {
        self.append(v);
    }

    /// Appends a float.
    pub fn append_float(&mut self, v: f64) {
        self.append(v);
    }

    /// Appends a bool.
    pub fn append_bool(&mut self, v: bool) {
        self.append(v);
    }

    /// Appends a string.
    pub fn append_str(&mut self, v: &str) {
        self.append(v);
    }

    /// Appends a map.
    pub fn append_map(&mut self, v: MapAttr) {
        self.append(v);
    }

    /// Appends a list.
    pub fn append_list(&mut self, v: ListAttr) {
        self.append(v);
    }

    /// Removes and returns the last item; records a pop (1007). [`AttrError::Empty`] if
    /// the list is empty.
    pub fn pop(&mut self) -> Result<AttrValue, AttrError> {
        let v = self.node.items.pop().ok_or(AttrError::Empty)?;
        self.changes.push(AttrChange::ListPop {
            path: self.path.clone(),
        });
        Ok(v)
    }

    /// Pops the last item if it is of type `expected` (see [`kind_is`]); otherwise it stays
    /// and this is an error.
    fn pop_if<T>(
        &mut self,
        expected: &'static str,
        want: impl Fn(AttrValue) -> Option<T>,
    ) -> Result<T, AttrError> {
        let last = self.node.items.last().ok_or(AttrError::Empty)?;
        if !kind_is(last, expected) {
            return Err(mismatch(expected, last));
        }
        let v = self.pop()?;
        want(v).ok_or(AttrError::Empty)
    }

    /// Pops the last item as an integer; a last item of another type stays in place
    /// ([`AttrError::TypeMismatch`]).
    pub fn pop_int(&mut self) -> Result<i64, AttrError> {
        self.pop_if("int", |v| v.as_int())
    }

    /// Pops the last item as a number (`f64`), like [`pop_int`](ListMut::pop_int).
    pub fn pop_float(&mut self) -> Result<f64, AttrError> {
        self.pop_if("float", |v| v.as_float())
    }

    /// Pops the last item as a bool, like [`pop_int`](ListMut::pop_int).
    pub fn pop_bool(&mut self) -> Result<bool, AttrError> {
        self.pop_if("bool", |v| v.as_bool())
    }

    /// Pops the last item as a string, like [`pop_int`](ListMut::pop_int).
    pub fn pop_str(&mut self) -> Result<String, AttrError> {
        self.pop_if("str", |v| match v {
            AttrValue::Str(s) => Some(s),
            _ => None,
        })
    }

    /// Pops the last item as a map, like [`pop_int`](ListMut::pop_int).
    pub fn pop_map(&mut self) -> Result<MapAttr, AttrError> {
        self.pop_if("map", |v| match v {
            AttrValue::Map(m) => Some(m),
            _ => None,
        })
    }

    /// Pops the last item as a list, like [`pop_int`](ListMut::pop_int).
    pub fn pop_list(&mut self) -> Result<ListAttr, AttrError> {
        self.pop_if("list", |v| match v {
            AttrValue::List(l) => Some(l),
            _ => None,
        })
    }

    /// The map at index `i` (never created: out of range or another type is an error).
    pub fn map(&mut self, i: usize) -> Result<MapMut<'_>, AttrError> {
        item_map(self.node, self.changes, &self.path, i)
    }

    /// The list at index `i` (never created: out of range or another type is an error).
    pub fn list(&mut self, i: usize) -> Result<ListMut<'_>, AttrError> {
        item_list(self.node, self.changes, &self.path, i)
    }

    /// [`map`](ListMut::map), consuming this cursor.
    pub fn into_map(self, i: usize) -> Result<MapMut<'a>, AttrError> {
        item_map(self.node, self.changes, &self.path, i)
    }

    /// [`list`](ListMut::list), consuming this cursor.
    pub fn into_list(self, i: usize) -> Result<ListMut<'a>, AttrError> {
        item_list(self.node, self.changes, &self.path, i)
    }
}

fn item_map<'b>(
    node: &'b mut ListAttr,
    changes: &'b mut Vec<AttrChange>,
    path: &[PathSeg],
    i: usize,
) -> Result<MapMut<'b>, AttrError> {
    let len = node.items.len();
    match node.items.get_mut(i) {
        Some(AttrValue::Map(m)) => Ok(MapMut {
            node: m,
            changes,
            path: child_path(path, PathSeg::Index(i as u32)),
        }),
        Some(other) => Err(mismatch("map", other)),
        None => Err(AttrError::OutOfRange { index: i, len }),
    }
}

fn item_list<'b>(
    node: &'b mut ListAttr,
    changes: &'b mut Vec<AttrChange>,
    path: &[PathSeg],
    i: usize,
) -> Result<ListMut<'b>, AttrError> {
    let len = node.items.len();
    match node.items.get_mut(i) {
        Some(AttrValue::List(l)) => Ok(ListMut {
            node: l,
            changes,
            path: child_path(path, PathSeg::Index(i as u32)),
        }),
        Some(other) => Err(mismatch("list", other)),
        None => Err(AttrError::OutOfRange { index: i, len }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use goworld_common::proto::golden;
    use goworld_common::proto::Msg;

    fn h(s: &str) -> Vec<u8> {
        golden::hex_decode(s).expect("hex")
    }

    fn eid() -> EntityId {
        EntityId::parse("awVBNWhsgjH2AAAN").expect("eid")
    }

    /// Loaded numbers take the type their attribute is declared with; nothing else changes
    /// and no change is recorded.
    #[test]
    fn loaded_numbers_take_their_declared_type() {
        let mut m = MapAttr::new();
        m.insert("f", 2i64);
        m.insert("i", 5.0);
        m.insert("half", 0.5);
        m.insert("huge", 1e300);
        m.insert("other", 3i64);
        let mut a = Attrs::from_map(m);
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        a.numbers_as_declared(&names(&["f", "missing"]), &names(&["i", "half", "huge"]));
        let root = a.as_map();
        assert_eq!(root.get("f"), Some(&AttrValue::Float(2.0)));
        assert_eq!(root.get("i"), Some(&AttrValue::Int(5)));
        assert_eq!(root.get("half"), Some(&AttrValue::Float(0.5)), "not whole");
        assert_eq!(
            root.get("huge"),
            Some(&AttrValue::Float(1e300)),
            "beyond i64"
        );
        assert_eq!(root.get("other"), Some(&AttrValue::Int(3)), "undeclared");
        assert!(a.take_changes().is_empty());
    }

    /// What is not an attribute tree is a typed error that says where.
    #[test]
    fn value_errors_name_the_path() {
        let s = |x: &str| Value::Str(x.into());
        let doc = Value::Map(vec![(
            s("a"),
            Value::Map(vec![(
                s("b"),
                Value::Array(vec![Value::Int(1), Value::Nil]),
            )]),
        )]);
        let err = Attrs::from_bytes(&doc.to_bytes()).unwrap_err();
        assert_eq!(
            err,
            ValueError::NotAValue {
                path: "a.b[1]".into(),
                found: "nil"
            }
        );
        assert_eq!(err.to_string(), "a.b[1]: nil is not an attribute value");
        let bad_key = Value::Map(vec![(Value::Int(1), Value::Int(2))]);
        assert!(matches!(
            Attrs::from_bytes(&bad_key.to_bytes()),
            Err(ValueError::KeyNotString { found: "int", .. })
        ));
        assert!(matches!(
            Attrs::from_bytes(&Value::Int(3).to_bytes()),
            Err(ValueError::Expected {
                expected: "map",
                found: "int",
                ..
            })
        ));
        assert!(matches!(
            Attrs::from_bytes(&[0xc1]),
            Err(ValueError::Msgpack(_))
        ));
    }

    /// The body of a golden 1004–1012 frame and its entity.
    fn golden_client_msg(name: &str) -> ClientMsg {
        let p = golden::payload(name).expect("golden frame");
        match Msg::decode(&p).expect("decodes") {
            Msg::ToClient { msg, .. } => msg,
            other => panic!("{name}: not a client message: {other:?}"),
        }
    }

    fn msg_eid(m: &ClientMsg) -> EntityId {
        match m {
            ClientMsg::NotifyMapAttrChange { eid, .. }
            | ClientMsg::NotifyMapAttrDel { eid, .. }
            | ClientMsg::NotifyListAttrChange { eid, .. }
            | ClientMsg::NotifyListAttrPop { eid, .. }
            | ClientMsg::NotifyListAttrAppend { eid, .. }
            | ClientMsg::NotifyMapAttrClear { eid, .. } => *eid,
            other => panic!("not an attr message: {other:?}"),
        }
    }

    const P_COMPLEX: &str = "91ab636f6d706c657841747472";
    const P_KEY1: &str = "92a46b657931ab636f6d706c657841747472";
    const P_KEY2: &str = "93a46b657932a46b657931ab636f6d706c657841747472";
    const P_IDX1: &str = "94d30000000000000001a46b657932a46b657931ab636f6d706c657841747472";
    const P_IDX0: &str =
        "95d30000000000000000d30000000000000001a46b657932a46b657931ab636f6d706c657841747472";

    #[test]
    fn test_complex_attr_sequence() {
        let mut a = Attrs::new();
        {
            let mut complex = a.map("complexAttr").unwrap();
            let mut key1 = complex.map("key1").unwrap();
            let mut key2 = key1.list("key2").unwrap();
            key2.append_bool(true);
            key2.append_list(ListAttr::new());
            let mut idx1 = key2.list(1).unwrap();
            idx1.append_map(MapAttr::new());
            idx1.map(0).unwrap().set_str("finalkey", "iamhere");
        }
        let step1 = a.take_changes();
        a.map("complexAttr").unwrap().clear().unwrap();
        let clear = a.take_changes();

        let id = eid();
        let msgs: Vec<ClientMsg> = step1
            .iter()
            .chain(clear.iter())
            .map(|c| c.to_client_msg(id))
            .collect();
        let ms = |path: &str, key: &str, val: &str| ClientMsg::NotifyMapAttrChange {
            eid: id,
            path: h(path),
            key: key.into(),
            val: h(val),
        };
        let la = |path: &str, val: &str| ClientMsg::NotifyListAttrAppend {
            eid: id,
            path: h(path),
            val: h(val),
        };
        let want = vec![
            ms("c0", "complexAttr", "80"),
            ms(P_COMPLEX, "key1", "80"),
            ms(P_KEY1, "key2", "90"),
            la(P_KEY2, "c3"),
            la(P_KEY2, "90"),
            la(P_IDX1, "80"),
            ms(P_IDX0, "finalkey", "a769616d68657265"),
            ClientMsg::NotifyMapAttrClear {
                eid: id,
                path: h(P_COMPLEX),
            },
        ];
        assert_eq!(msgs, want);
        assert!(step1
            .iter()
            .chain(&clear)
            .all(|c| c.root_key() == "complexAttr"));
        assert_eq!(
            a.get_map("complexAttr").map(MapAttr::len),
            Some(0),
            "cleared"
        );

        // The captured frames: the final 1004 and the 1012 of TestComplexAttr.
        let g = golden_client_msg("notify_map_attr_change_on_client");
        assert_eq!(step1[6].to_client_msg(msg_eid(&g)), g);
        let g = golden_client_msg("notify_map_attr_clear_on_client");
        assert_eq!(clear[0].to_client_msg(msg_eid(&g)), g);
    }

    #[test]
    fn golden_list_frames() {
        // testListField at the root, as test_game's Avatar uses it.
        let mut a = Attrs::new();
        assert!(a
            .root()
            .set_default_list("testListField", ListAttr::new().with(5).with(6)));
        a.take_changes();
        let mut l = a.list("testListField").unwrap();
        l.set_int(0, 1).unwrap();
        assert_eq!(l.pop_int(), Ok(6));
        l.append_int(64);
        let ch = a.take_changes();
        assert_eq!(ch.len(), 3);
        for (c, name) in ch.iter().zip([
            "notify_list_attr_change_on_client",
            "notify_list_attr_pop_on_client",
            "notify_list_attr_append_on_client",
        ]) {
            let g = golden_client_msg(name);
            assert_eq!(c.to_client_msg(msg_eid(&g)), g, "{name}");
            assert_eq!(c.root_key(), "testListField");
        }
        assert_eq!(a.get_list("testListField").unwrap().get_int(1), Ok(64));
    }

    #[test]
    fn root_set_and_del_messages() {
        let mut a = Attrs::new();
        let mut r = a.root();
        r.set_int("exp", 5);
        r.set_float("speed", 1.5);
        r.set_bool("online", true);
        r.set_str("name", "bob");
        assert_eq!(r.del("exp"), Some(AttrValue::Int(5)));
        assert_eq!(r.del("exp"), None, "deleting a missing key records nothing");
        let id = eid();
        let m: Vec<ClientMsg> = a
            .take_changes()
            .iter()
            .map(|c| c.to_client_msg(id))
            .collect();
        assert_eq!(
            m,
            vec![
                ClientMsg::NotifyMapAttrChange {
                    eid: id,
                    path: h("c0"),
                    key: "exp".into(),
                    val: h("d30000000000000005"),
                },
                ClientMsg::NotifyMapAttrChange {
                    eid: id,
                    path: h("c0"),
                    key: "speed".into(),
                    val: h("cb3ff8000000000000"),
                },
                ClientMsg::NotifyMapAttrChange {
                    eid: id,
                    path: h("c0"),
                    key: "online".into(),
                    val: h("c3"),
                },
                ClientMsg::NotifyMapAttrChange {
                    eid: id,
                    path: h("c0"),
                    key: "name".into(),
                    val: h("a3626f62"),
                },
                ClientMsg::NotifyMapAttrDel {
                    eid: id,
                    path: h("c0"),
                    key: "exp".into(),
                },
            ]
        );
        assert!(!a.has_key("exp"));
    }

    #[test]
    fn nested_del_set_container_and_root_key() {
        let mut a = Attrs::new();
        let sub = MapAttr::new()
            .with("a", 1)
            .with("b", ListAttr::new().with("x"));
        a.root().set_map("subattr", sub);
        let ch = a.take_changes();
        assert_eq!(ch.len(), 1);
        let ClientMsg::NotifyMapAttrChange { val, path, .. } = ch[0].to_client_msg(eid()) else {
            panic!()
        };
        assert_eq!(path, h("c0"));
        // {"a": 1, "b": ["x"]}, whole content, sorted keys.
        assert_eq!(val, h("82a161d30000000000000001a16291a178"));
        a.map("subattr").unwrap().del("a");
        let ch = a.take_changes();
        assert_eq!(ch[0].root_key(), "subattr");
        assert_eq!(
            ch[0].to_client_msg(eid()),
            ClientMsg::NotifyMapAttrDel {
                eid: eid(),
                path: h("91a773756261747472"),
                key: "a".into(),
            }
        );
        assert_eq!(ch[0].root_key(), "subattr");
        // A list set inside a nested list: index as u32 in the message, int64 in the path.
        a.map("subattr")
            .unwrap()
            .list("b")
            .unwrap()
            .set_str(0, "y")
            .unwrap();
        let ch = a.take_changes();
        assert_eq!(
            ch[0].to_client_msg(eid()),
            ClientMsg::NotifyListAttrChange {
                eid: eid(),
                path: h("92a162a773756261747472"),
                index: 0,
                val: h("a179"),
            }
        );
    }

    #[test]
    fn set_default_records_only_when_it_sets() {
        let mut a = Attrs::new();
        let mut r = a.root();
        assert!(r.set_default_int("level", 1));
        assert!(!r.set_default_int("level", 9));
        assert!(!r.set_default_str("level", "x"));
        assert!(r.set_default_float("f", 2.0));
        assert!(r.set_default_bool("b", false));
        assert!(r.set_default_str("s", "v"));
        assert!(r.set_default_map("m", MapAttr::new()));
        assert!(!r.set_default_map("m", MapAttr::new().with("k", 1)));
        assert!(r.set_default_list("l", ListAttr::new()));
        assert!(!r.set_default_list("l", ListAttr::new().with(1)));
        assert_eq!(a.take_changes().len(), 6);
        assert_eq!(a.get_int("level"), 1);
        assert!(a.get_map("m").unwrap().is_empty());
    }

    #[test]
    fn auto_create_once_and_type_mismatch() {
        let mut a = Attrs::new();
        a.map("m").unwrap();
        a.map("m").unwrap();
        a.list("l").unwrap();
        a.list("l").unwrap();
        let ch = a.take_changes();
        assert_eq!(
            ch,
            vec![
                AttrChange::MapSet {
                    path: vec![],
                    key: "m".into(),
                    val: Value::Map(vec![]),
                },
                AttrChange::MapSet {
                    path: vec![],
                    key: "l".into(),
                    val: Value::Array(vec![]),
                },
            ]
        );
        a.root().set_int("n", 3);
        a.take_changes();
        assert_eq!(
            a.map("n").err(),
            Some(AttrError::TypeMismatch {
                expected: "map",
                found: "int"
            })
        );
        assert!(a.list("m").is_err());
        assert!(a.map("l").is_err());
        assert!(!a.has_changes());
        assert_eq!(a.get_int("n"), 3);
    }

    #[test]
    fn getters_zero_values_and_float_accepts_int() {
        let mut a = Attrs::new();
        a.root().set_int("i", 7);
        a.root().set_str("s", "x");
        assert_eq!(a.get_int("missing"), 0);
        assert_eq!(a.get_str("missing"), "");
        assert!(!a.get_bool("missing"));
        assert_eq!(a.get_float("missing"), 0.0);
        assert_eq!(a.get_float("i"), 7.0);
        assert_eq!(a.get_int("s"), 0, "mismatch gives the zero value");
        assert_eq!(a.get("s"), Some(&AttrValue::Str("x".into())));
        assert!(a.get_map("i").is_none());
        let keys: Vec<&str> = a.keys().collect();
        assert_eq!(keys, vec!["i", "s"]);
        assert_eq!(a.len(), 2);
        let mut seen = Vec::new();
        a.root()
            .for_each(|k, v| seen.push((k.to_owned(), v.clone())));
        assert_eq!(seen.len(), 2);
        assert_eq!(a.root().get_int("i"), 7, "cursors read too");
    }

    #[test]
    fn map_pops() {
        let mut a = Attrs::new();
        let mut r = a.root();
        r.set_int("i", 1);
        r.set_float("f", 2.5);
        r.set_bool("b", true);
        r.set_str("s", "x");
        r.set_map("m", MapAttr::new());
        r.set_list("l", ListAttr::new());
        r.set_int("keep", 3);
        a.take_changes();
        let mut r = a.root();
        assert_eq!(r.pop_str("keep"), None, "another type stays");
        assert_eq!(r.pop_int("nope"), None);
        assert_eq!(r.pop_int("i"), Some(1));
        assert_eq!(r.pop_float("f"), Some(2.5));
        assert_eq!(r.pop_bool("b"), Some(true));
        assert_eq!(r.pop_str("s"), Some("x".into()));
        assert_eq!(r.pop_map("m"), Some(MapAttr::new()));
        assert_eq!(r.pop_list("l"), Some(ListAttr::new()));
        let ch = a.take_changes();
        let keys: Vec<&str> = ch.iter().map(AttrChange::root_key).collect();
        assert_eq!(keys, vec!["i", "f", "b", "s", "m", "l"]);
        assert!(ch.iter().all(|c| matches!(c, AttrChange::MapDel { .. })));
        assert_eq!(a.keys().collect::<Vec<_>>(), vec!["keep"]);
    }

    #[test]
    fn clear_rules() {
        let mut a = Attrs::new();
        a.root().set_int("x", 1);
        assert_eq!(a.root().clear(), Err(AttrError::ClearRoot));
        assert_eq!(a.get_int("x"), 1);
        a.take_changes();
        a.map("m").unwrap().clear().unwrap();
        assert_eq!(
            a.take_changes().len(),
            1,
            "only the creation; empty clear is silent"
        );
        a.map("m").unwrap().set_int("k", 1);
        a.map("m").unwrap().clear().unwrap();
        let ch = a.take_changes();
        assert_eq!(
            ch[1],
            AttrChange::MapClear {
                path: vec![PathSeg::Key("m".into())]
            }
        );
        assert_eq!(ch[1].root_key(), "m");
    }

    #[test]
    fn list_ops_and_errors() {
        let mut a = Attrs::new();
        let mut l = a.list("l").unwrap();
        l.append_int(1);
        l.append_float(2.5);
        l.append_bool(true);
        l.append_str("s");
        l.append_map(MapAttr::new().with("k", "v"));
        l.append_list(ListAttr::new().with(1));
        assert_eq!(l.len(), 6);
        assert_eq!(l.get_int(0), Ok(1));
        assert_eq!(l.get_float(0), Ok(1.0));
        assert_eq!(l.get_float(1), Ok(2.5));
        assert_eq!(l.get_bool(2), Ok(true));
        assert_eq!(l.get_str(3), Ok("s"));
        assert_eq!(l.get_map(4).unwrap().get_str("k"), "v");
        assert_eq!(l.get_list(5).unwrap().len(), 1);
        assert_eq!(
            l.get_int(6),
            Err(AttrError::OutOfRange { index: 6, len: 6 })
        );
        assert_eq!(
            l.get_int(3),
            Err(AttrError::TypeMismatch {
                expected: "int",
                found: "str"
            })
        );
        assert!(l.set_int(6, 0).is_err());
        assert!(l.map(6).is_err());
        assert!(l.list(0).is_err());
        assert!(l.map(5).is_err());
        l.set_float(1, 3.0).unwrap();
        l.set_bool(2, false).unwrap();
        l.set_map(0, MapAttr::new()).unwrap();
        l.set_list(3, ListAttr::new()).unwrap();
        l.map(0).unwrap().set_int("z", 1);
        l.list(3).unwrap().append_int(9);
        assert_eq!(
            l.pop_int().err().map(|e| e.to_string()),
            Some("attribute is list, not int".into())
        );
        assert_eq!(l.len(), 6, "a mismatched pop leaves the item");
        assert_eq!(l.pop_list(), Ok(ListAttr::new().with(1)));
        assert_eq!(l.pop_map(), Ok(MapAttr::new().with("k", "v")));
        assert_eq!(l.pop_list(), Ok(ListAttr::new().with(9)));
        assert_eq!(l.pop_bool(), Ok(false));
        assert_eq!(l.pop_float(), Ok(3.0));
        assert_eq!(l.pop_map(), Ok(MapAttr::new().with("z", 1)));
        assert_eq!(l.pop(), Err(AttrError::Empty));
        assert_eq!(l.pop_str(), Err(AttrError::Empty));
        let ch = a.take_changes();
        // 1 create + 6 appends + 4 sets + 2 nested + 6 pops.
        assert_eq!(ch.len(), 19);
        let id = eid();
        // The nested set inside list item 0: path [0, "l"].
        assert_eq!(
            ch[11].to_client_msg(id),
            ClientMsg::NotifyMapAttrChange {
                eid: id,
                path: h("92d30000000000000000a16c"),
                key: "z".into(),
                val: h("d30000000000000001"),
            }
        );
        assert_eq!(
            ch[12].to_client_msg(id),
            ClientMsg::NotifyListAttrAppend {
                eid: id,
                path: h("92d30000000000000003a16c"),
                val: h("d30000000000000009"),
            }
        );
        assert_eq!(
            ch[18].to_client_msg(id),
            ClientMsg::NotifyListAttrPop {
                eid: id,
                path: h("91a16c"),
            }
        );
        assert_eq!(
            ch[7].to_client_msg(id),
            ClientMsg::NotifyListAttrChange {
                eid: id,
                path: h("91a16c"),
                index: 1,
                val: h("cb4008000000000000"),
            }
        );
        assert!(ch.iter().all(|c| c.root_key() == "l"));
    }

    #[test]
    fn value_round_trip_and_rules() {
        let m = MapAttr::new()
            .with("i", -3)
            .with("f", 0.5f32)
            .with("b", true)
            .with("s", "str")
            .with("m", MapAttr::new().with("x", ListAttr::new()))
            .with("l", ListAttr::new().with(MapAttr::new()).with(1.25));
        let v = m.to_value();
        assert_eq!(MapAttr::from_value(&v), Ok(m.clone()));
        let bytes = v.to_bytes();
        assert_eq!(bytes[0], 0x86);
        // Other integer widths and float32 are uniformed.
        let odd = h("83a16101a162ca3fc00000a163cf8000000000000000");
        let o = MapAttr::from_value(&msgpack::decode_exact(&odd).unwrap()).unwrap();
        assert_eq!(o.get("a"), Some(&AttrValue::Int(1)));
        assert_eq!(o.get("b"), Some(&AttrValue::Float(1.5)));
        assert_eq!(o.get("c"), Some(&AttrValue::Int(i64::MIN)));
        // Rejected: nil, bin, non-string keys, non-map roots.
        for bad in [
            "81a161c0",
            "81a161c40100",
            "8101d30000000000000001",
            "90",
            "91c0",
        ] {
            let v = msgpack::decode_exact(&h(bad)).unwrap();
            assert!(MapAttr::from_value(&v).is_err(), "{bad}");
        }
        assert!(AttrValue::from_value(&Value::Nil).is_err());
        assert!(ListAttr::from_value(&Value::Map(vec![])).is_err());
    }

    #[test]
    fn assign_sets_each_key_or_nothing() {
        let mut a = Attrs::new();
        let doc = Value::Map(vec![
            (Value::from("a"), Value::Int(1)),
            (
                Value::from("m"),
                Value::Map(vec![(Value::from("k"), Value::Array(vec![Value::Int(2)]))]),
            ),
        ]);
        a.root().assign(&doc).unwrap();
        assert_eq!(a.get_int("a"), 1);
        assert_eq!(
            a.get_map("m").unwrap().get_list("k").unwrap().get_int(0),
            Ok(2)
        );
        let ch = a.take_changes();
        assert_eq!(ch.len(), 2);
        assert_eq!(ch[1].root_key(), "m");
        let bad = Value::Map(vec![
            (Value::from("z"), Value::Int(1)),
            (Value::from("n"), Value::Nil),
        ]);
        assert!(matches!(a.root().assign(&bad), Err(AttrError::Invalid(_))));
        assert!(!a.has_key("z"));
        assert!(!a.has_changes());
        assert!(a.root().assign(&Value::Int(1)).is_err());
    }

    #[test]
    fn client_data_and_filtered_value() {
        let mut a = Attrs::new();
        let mut r = a.root();
        r.set_str("name", "n");
        r.set_int("level", 2);
        r.set_bool("secret", true);
        r.set_list("mails", ListAttr::new());
        let own = a.client_data(|k| matches!(k, "name" | "level" | "mails"));
        // {"level": 2, "mails": [], "name": "n"}
        assert_eq!(
            own,
            h("83a56c6576656cd30000000000000002a56d61696c7390a46e616d65a16e")
        );
        assert_eq!(a.client_data(|_| false), h("80"));
        let p = a.filtered_value(|k| k == "secret");
        assert_eq!(
            p,
            Value::Map(vec![(Value::from("secret"), Value::Bool(true))])
        );
    }

    #[test]
    fn bytes_round_trip() {
        let mut a = Attrs::new();
        a.root().set_int("i", 1);
        a.map("m").unwrap().list("l").unwrap().append_float(1.0);
        let b = a.to_bytes();
        let back = Attrs::from_bytes(&b).unwrap();
        assert!(!back.has_changes());
        assert_eq!(back.as_map(), a.as_map());
        assert_eq!(back.to_bytes(), b);
        assert!(Attrs::from_bytes(&h("90")).is_err());
        assert!(Attrs::from_bytes(&h("8081")).is_err());
        assert!(Attrs::from_bytes(&h("81")).is_err());
        assert_eq!(Attrs::from_bytes(&h("80")).unwrap(), Attrs::new());
    }

    #[test]
    fn into_cursors_outlive_the_temporary() {
        let mut a = Attrs::new();
        let mut inner = a.root().into_map("a").unwrap().into_list("b").unwrap();
        inner.append_list(ListAttr::new());
        let mut deep = inner.into_list(0).unwrap();
        deep.append_int(1);
        assert_eq!(
            deep.path(),
            &[
                PathSeg::Key("a".into()),
                PathSeg::Key("b".into()),
                PathSeg::Index(0)
            ]
        );
        assert_eq!(encode_path(deep.path()), h("93d30000000000000000a162a161"));
        assert_eq!(a.take_changes().len(), 4);
    }
}
