//! A client entity's attribute tree and the six attribute messages that edit it
//! (1004 map set, 1005 map delete, 1012 map clear, 1006 list set, 1008 list append,
//! 1007 list pop), the way GoWorld's Go client applies them (`ClientEntity.go`).
//!
//! The tree is a msgpack [`Value`]: the root is the map of client-visible attributes that
//! came with CREATE_ENTITY_ON_CLIENT. A path arrives reversed (innermost step first; empty for
//! a root-level attribute) and is walked from its end. Every error (a missing step, a step of
//! the wrong kind, an index out of range, popping an empty list) is an [`AttrError`] for the
//! bot to report; GoWorld's client would panic on each of them.

use goworld_common::msgpack::Value;

use crate::wire::PathKey;

/// Why an attribute message could not be applied to the tree. `path` is the message's path,
/// as on the wire (innermost first); [`show`] renders it.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrError {
    /// A map on the path has no entry `key`.
    NoKey { path: Vec<PathKey>, key: String },
    /// A list on the path has no item `index` (it has `len`).
    NoIndex {
        path: Vec<PathKey>,
        index: i64,
        len: usize,
    },
    /// A step that does not fit the value it steps into: a key into a list, an index into a
    /// map, any step into a scalar.
    BadStep {
        path: Vec<PathKey>,
        step: PathKey,
        found: ValueKind,
    },
    /// The path leads to a `found` where the message needs a `want` (map or list).
    WrongKind {
        path: Vec<PathKey>,
        want: ValueKind,
        found: ValueKind,
    },
    /// 1006 sets item `index` of a list that has `len` items.
    SetOutOfRange {
        path: Vec<PathKey>,
        index: u32,
        len: usize,
    },
    /// 1007 pops from an empty list.
    PopEmpty { path: Vec<PathKey> },
}

impl std::fmt::Display for AttrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttrError::NoKey { path, key } => {
                write!(f, "no key {key:?} on the path {}", show(path))
            }
            AttrError::NoIndex { path, index, len } => write!(
                f,
                "index {index} out of range ({len}) on the path {}",
                show(path)
            ),
            AttrError::BadStep { path, step, found } => {
                write!(f, "path {}: step {step:?} into a {found}", show(path))
            }
            AttrError::WrongKind { path, want, found } => {
                write!(f, "{} is a {found}, not a {want}", show(path))
            }
            AttrError::SetOutOfRange { path, index, len } => write!(
                f,
                "list change at {}[{index}] but the list has {len} items",
                show(path)
            ),
            AttrError::PopEmpty { path } => write!(f, "pop from the empty list {}", show(path)),
        }
    }
}

impl std::error::Error for AttrError {}

/// The kind of a msgpack value, for [`AttrError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Map,
    List,
    Nil,
    Bool,
    Int,
    Float,
    String,
    Binary,
    Ext,
}

impl std::fmt::Display for ValueKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ValueKind::Map => "map",
            ValueKind::List => "list",
            ValueKind::Nil => "nil",
            ValueKind::Bool => "bool",
            ValueKind::Int => "int",
            ValueKind::Float => "float",
            ValueKind::String => "string",
            ValueKind::Binary => "binary",
            ValueKind::Ext => "ext",
        })
    }
}

/// The container at `path` (reversed, innermost first).
fn walk<'a>(root: &'a mut Value, path: &[PathKey]) -> Result<&'a mut Value, AttrError> {
    let mut cur = root;
    for step in path.iter().rev() {
        cur = match (cur, step) {
            (Value::Map(pairs), PathKey::Key(k)) => pairs
                .iter_mut()
                .find(|(pk, _)| pk.as_str() == Some(k))
                .map(|(_, v)| v)
                .ok_or_else(|| AttrError::NoKey {
                    path: path.to_vec(),
                    key: k.clone(),
                })?,
            (Value::Array(items), PathKey::Index(i)) => {
                let len = items.len();
                usize::try_from(*i)
                    .ok()
                    .and_then(|i| items.get_mut(i))
                    .ok_or_else(|| AttrError::NoIndex {
                        path: path.to_vec(),
                        index: *i,
                        len,
                    })?
            }
            (v, step) => {
                return Err(AttrError::BadStep {
                    path: path.to_vec(),
                    step: step.clone(),
                    found: kind(v),
                })
            }
        };
    }
    Ok(cur)
}

/// The path outermost first, for messages: `complexAttr.key1.key2[1][0]`.
pub fn show(path: &[PathKey]) -> String {
    let mut s = String::new();
    for step in path.iter().rev() {
        match step {
            PathKey::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            PathKey::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    if s.is_empty() {
        s.push_str("<root>");
    }
    s
}

fn kind(v: &Value) -> ValueKind {
    match v {
        Value::Map(_) => ValueKind::Map,
        Value::Array(_) => ValueKind::List,
        Value::Nil => ValueKind::Nil,
        Value::Bool(_) => ValueKind::Bool,
        Value::Int(_) | Value::UInt(_) => ValueKind::Int,
        Value::Float(_) => ValueKind::Float,
        Value::Str(_) => ValueKind::String,
        Value::Bin(_) => ValueKind::Binary,
        Value::Ext(..) => ValueKind::Ext,
    }
}

fn wrong_kind(path: &[PathKey], want: ValueKind, found: &Value) -> AttrError {
    AttrError::WrongKind {
        path: path.to_vec(),
        want,
        found: kind(found),
    }
}

fn map_at<'a>(
    root: &'a mut Value,
    path: &[PathKey],
) -> Result<&'a mut Vec<(Value, Value)>, AttrError> {
    match walk(root, path)? {
        Value::Map(pairs) => Ok(pairs),
        v => Err(wrong_kind(path, ValueKind::Map, v)),
    }
}

fn list_at<'a>(root: &'a mut Value, path: &[PathKey]) -> Result<&'a mut Vec<Value>, AttrError> {
    match walk(root, path)? {
        Value::Array(items) => Ok(items),
        v => Err(wrong_kind(path, ValueKind::List, v)),
    }
}

/// 1004: `map[key] = val` on the map at `path`.
pub fn map_set(root: &mut Value, path: &[PathKey], key: &str, val: Value) -> Result<(), AttrError> {
    let pairs = map_at(root, path)?;
    match pairs.iter_mut().find(|(k, _)| k.as_str() == Some(key)) {
        Some((_, v)) => *v = val,
        None => pairs.push((Value::Str(key.to_owned()), val)),
    }
    Ok(())
}

/// 1005: deletes `key` (absent is fine, as Go's `delete`) from the map at `path`.
pub fn map_del(root: &mut Value, path: &[PathKey], key: &str) -> Result<(), AttrError> {
    map_at(root, path)?.retain(|(k, _)| k.as_str() != Some(key));
    Ok(())
}

/// 1012: empties the map at `path`.
pub fn map_clear(root: &mut Value, path: &[PathKey]) -> Result<(), AttrError> {
    map_at(root, path)?.clear();
    Ok(())
}

/// 1006: `list[index] = val` on the list at `path`; the index must exist.
pub fn list_set(
    root: &mut Value,
    path: &[PathKey],
    index: u32,
    val: Value,
) -> Result<(), AttrError> {
    let items = list_at(root, path)?;
    let len = items.len();
    let slot = items
        .get_mut(index as usize)
        .ok_or_else(|| AttrError::SetOutOfRange {
            path: path.to_vec(),
            index,
            len,
        })?;
    *slot = val;
    Ok(())
}

/// 1008: appends `val` to the list at `path`.
pub fn list_append(root: &mut Value, path: &[PathKey], val: Value) -> Result<(), AttrError> {
    list_at(root, path)?.push(val);
    Ok(())
}

/// 1007: removes the last item of the list at `path`, which must not be empty.
pub fn list_pop(root: &mut Value, path: &[PathKey]) -> Result<(), AttrError> {
    list_at(root, path)?
        .pop()
        .map(|_| ())
        .ok_or_else(|| AttrError::PopEmpty {
            path: path.to_vec(),
        })
}

/// An integer as GoWorld's `typeconv.Int` reads one: any integer, or a float truncated.
pub fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Float(f) => Some(*f as i64),
        v => v.as_i64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> PathKey {
        PathKey::Key(s.into())
    }

    fn root() -> Value {
        Value::Map(vec![("testListField".into(), Value::Array(vec![]))])
    }

    #[test]
    fn builds_and_clears_the_complex_attr_like_test_game() {
        // The sequence of goworld-frames.md §2 ("Attr paths").
        let mut r = root();
        map_set(&mut r, &[], "complexAttr", Value::Map(vec![])).unwrap();
        map_set(&mut r, &[k("complexAttr")], "key1", Value::Map(vec![])).unwrap();
        let p2 = [k("key1"), k("complexAttr")];
        map_set(&mut r, &p2, "key2", Value::Array(vec![])).unwrap();
        let p3 = [k("key2"), k("key1"), k("complexAttr")];
        list_append(&mut r, &p3, Value::Bool(true)).unwrap();
        list_append(&mut r, &p3, Value::Array(vec![])).unwrap();
        let p4 = [PathKey::Index(1), k("key2"), k("key1"), k("complexAttr")];
        list_append(&mut r, &p4, Value::Map(vec![])).unwrap();
        let p5 = [
            PathKey::Index(0),
            PathKey::Index(1),
            k("key2"),
            k("key1"),
            k("complexAttr"),
        ];
        map_set(&mut r, &p5, "finalkey", "iamhere".into()).unwrap();
        assert_eq!(show(&p5), "complexAttr.key1.key2[1][0]");
        let fin = r
            .map_get("complexAttr")
            .and_then(|c| c.map_get("key1"))
            .and_then(|c| c.map_get("key2"))
            .and_then(|c| c.as_array()?.get(1)?.as_array()?.first())
            .and_then(|c| c.map_get("finalkey"));
        assert_eq!(fin.and_then(Value::as_str), Some("iamhere"));
        map_clear(&mut r, &[k("complexAttr")]).unwrap();
        assert_eq!(r.map_get("complexAttr"), Some(&Value::Map(vec![])));
    }

    #[test]
    fn list_ops_and_their_errors() {
        let mut r = root();
        let p = [k("testListField")];
        assert!(list_pop(&mut r, &p)
            .unwrap_err()
            .to_string()
            .contains("empty"));
        assert!(list_set(&mut r, &p, 0, Value::Int(1)).is_err());
        list_append(&mut r, &p, Value::Int(5)).unwrap();
        list_append(&mut r, &p, Value::Int(6)).unwrap();
        list_set(&mut r, &p, 0, Value::Int(7)).unwrap();
        list_pop(&mut r, &p).unwrap();
        assert_eq!(
            r.map_get("testListField"),
            Some(&Value::Array(vec![Value::Int(7)]))
        );
        // Wrong kinds and missing steps.
        assert!(map_set(&mut r, &p, "x", Value::Nil).is_err());
        assert!(list_append(&mut r, &[], Value::Nil).is_err());
        assert!(list_append(&mut r, &[k("nope")], Value::Nil).is_err());
        assert!(map_clear(&mut r, &[PathKey::Index(0)]).is_err());
        assert!(list_pop(&mut r, &[PathKey::Index(-1), k("testListField")]).is_err());
        // Map delete and replace.
        map_set(&mut r, &[], "a", Value::Int(1)).unwrap();
        map_set(&mut r, &[], "a", Value::Int(2)).unwrap();
        assert_eq!(r.map_get("a"), Some(&Value::Int(2)));
        map_del(&mut r, &[], "a").unwrap();
        map_del(&mut r, &[], "a").unwrap();
        assert_eq!(r.map_get("a"), None);
        assert_eq!(as_int(&Value::Float(3.9)), Some(3));
        assert_eq!(as_int(&Value::Str("3".into())), None);
    }

    #[test]
    fn errors_are_typed_and_name_the_path() {
        let mut r = root();
        let p = vec![k("testListField")];
        let e = list_pop(&mut r, &p).unwrap_err();
        assert_eq!(e, AttrError::PopEmpty { path: p.clone() });
        assert_eq!(e.to_string(), "pop from the empty list testListField");
        let e = list_set(&mut r, &p, 2, Value::Nil).unwrap_err();
        assert_eq!(
            e,
            AttrError::SetOutOfRange {
                path: p.clone(),
                index: 2,
                len: 0
            }
        );
        assert_eq!(
            e.to_string(),
            "list change at testListField[2] but the list has 0 items"
        );
        let e = map_set(&mut r, &p, "x", Value::Nil).unwrap_err();
        assert_eq!(
            e,
            AttrError::WrongKind {
                path: p.clone(),
                want: ValueKind::Map,
                found: ValueKind::List
            }
        );
        assert_eq!(e.to_string(), "testListField is a list, not a map");
        assert_eq!(
            list_append(&mut r, &[], Value::Nil).unwrap_err(),
            AttrError::WrongKind {
                path: vec![],
                want: ValueKind::List,
                found: ValueKind::Map
            }
        );
        let e = map_clear(&mut r, &[k("b"), k("nope")]).unwrap_err();
        assert_eq!(
            e,
            AttrError::NoKey {
                path: vec![k("b"), k("nope")],
                key: "nope".into()
            }
        );
        assert_eq!(e.to_string(), "no key \"nope\" on the path nope.b");
        let deep = [PathKey::Index(3), k("testListField")];
        let e = list_pop(&mut r, &deep).unwrap_err();
        assert_eq!(
            e,
            AttrError::NoIndex {
                path: deep.to_vec(),
                index: 3,
                len: 0
            }
        );
        assert_eq!(
            e.to_string(),
            "index 3 out of range (0) on the path testListField[3]"
        );
        let e = map_del(&mut r, &[k("x"), PathKey::Index(0)], "y").unwrap_err();
        assert_eq!(
            e,
            AttrError::BadStep {
                path: vec![k("x"), PathKey::Index(0)],
                step: PathKey::Index(0),
                found: ValueKind::Map
            }
        );
        assert_eq!(e.to_string(), "path [0].x: step Index(0) into a map");
    }
}
