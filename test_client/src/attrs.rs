//! A client entity's attribute tree and the six attribute messages that edit it
//! (1004 map set, 1005 map delete, 1012 map clear, 1006 list set, 1008 list append,
//! 1007 list pop), the way GoWorld's Go client applies them (`ClientEntity.go`).
//!
//! The tree is a msgpack [`Value`]: the root is the map of client-visible attributes that
//! came with CREATE_ENTITY_ON_CLIENT. A path arrives reversed (innermost step first; empty for
//! a root-level attribute) and is walked from its end. Every error (a missing step, a step of
//! the wrong kind, an index out of range, popping an empty list) is a message for the bot to
//! report; GoWorld's client would panic on each of them.

use goworld_common::msgpack::Value;

use crate::wire::PathKey;

/// The container at `path` (reversed, innermost first).
fn walk<'a>(root: &'a mut Value, path: &[PathKey]) -> Result<&'a mut Value, String> {
    let mut cur = root;
    for step in path.iter().rev() {
        cur = match (cur, step) {
            (Value::Map(pairs), PathKey::Key(k)) => pairs
                .iter_mut()
                .find(|(pk, _)| pk.as_str() == Some(k))
                .map(|(_, v)| v)
                .ok_or_else(|| format!("no key {k:?} on the path {}", show(path)))?,
            (Value::Array(items), PathKey::Index(i)) => {
                let len = items.len();
                usize::try_from(*i)
                    .ok()
                    .and_then(|i| items.get_mut(i))
                    .ok_or_else(|| {
                        format!("index {i} out of range ({len}) on the path {}", show(path))
                    })?
            }
            (v, step) => {
                return Err(format!(
                    "path {}: step {step:?} into a {}",
                    show(path),
                    kind(v)
                ))
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

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Map(_) => "map",
        Value::Array(_) => "list",
        Value::Nil => "nil",
        Value::Bool(_) => "bool",
        Value::Int(_) | Value::UInt(_) => "int",
        Value::Float(_) => "float",
        Value::Str(_) => "string",
        Value::Bin(_) => "binary",
        Value::Ext(..) => "ext",
    }
}

fn map_at<'a>(
    root: &'a mut Value,
    path: &[PathKey],
) -> Result<&'a mut Vec<(Value, Value)>, String> {
    match walk(root, path)? {
        Value::Map(pairs) => Ok(pairs),
        v => Err(format!("{} is a {}, not a map", show(path), kind(v))),
    }
}

fn list_at<'a>(root: &'a mut Value, path: &[PathKey]) -> Result<&'a mut Vec<Value>, String> {
    match walk(root, path)? {
        Value::Array(items) => Ok(items),
        v => Err(format!("{} is a {}, not a list", show(path), kind(v))),
    }
}

/// 1004: `map[key] = val` on the map at `path`.
pub fn map_set(root: &mut Value, path: &[PathKey], key: &str, val: Value) -> Result<(), String> {
    let pairs = map_at(root, path)?;
    match pairs.iter_mut().find(|(k, _)| k.as_str() == Some(key)) {
        Some((_, v)) => *v = val,
        None => pairs.push((Value::Str(key.to_owned()), val)),
    }
    Ok(())
}

/// 1005: deletes `key` (absent is fine, as Go's `delete`) from the map at `path`.
pub fn map_del(root: &mut Value, path: &[PathKey], key: &str) -> Result<(), String> {
    map_at(root, path)?.retain(|(k, _)| k.as_str() != Some(key));
    Ok(())
}

/// 1012: empties the map at `path`.
pub fn map_clear(root: &mut Value, path: &[PathKey]) -> Result<(), String> {
    map_at(root, path)?.clear();
    Ok(())
}

/// 1006: `list[index] = val` on the list at `path`; the index must exist.
pub fn list_set(root: &mut Value, path: &[PathKey], index: u32, val: Value) -> Result<(), String> {
    let items = list_at(root, path)?;
    let len = items.len();
    let slot = items.get_mut(index as usize).ok_or_else(|| {
        format!(
            "list change at {}[{index}] but the list has {len} items",
            show(path)
        )
    })?;
    *slot = val;
    Ok(())
}

/// 1008: appends `val` to the list at `path`.
pub fn list_append(root: &mut Value, path: &[PathKey], val: Value) -> Result<(), String> {
    list_at(root, path)?.push(val);
    Ok(())
}

/// 1007: removes the last item of the list at `path`, which must not be empty.
pub fn list_pop(root: &mut Value, path: &[PathKey]) -> Result<(), String> {
    list_at(root, path)?
        .pop()
        .map(|_| ())
        .ok_or_else(|| format!("pop from the empty list {}", show(path)))
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
        assert!(list_pop(&mut r, &p).unwrap_err().contains("empty"));
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
}
