//! RPC arguments: typed parameters decoded from msgpack, and values encoded for sending.
//!
//! On the wire each argument is one raw msgpack value (GoWorld's `Args`). A method declares
//! its parameters as a tuple of [`FromArg`] types; [`FromArgs`] decodes the raw values into it.
//! A missing trailing argument takes its type's default (GoWorld passes zero values); too many
//! arguments or a value of the wrong type is an [`ArgError`], and the call is dropped with one
//! warning. Integers of any width and sign decode into any integer type they fit; a float
//! parameter accepts any number. Sending uses [`ToArg`], which follows the client-facing
//! msgpack rules (every integer as int64 `0xd3`, floats as float64, IDs as strings).

use std::collections::BTreeMap;

use goworld_common::id::EntityId;
use goworld_common::msgpack::{self, Value};

/// Why arguments could not be decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgError {
    /// More arguments than the method takes.
    TooMany {
        /// Parameters the method takes.
        expected: usize,
        /// Arguments the call had.
        got: usize,
    },
    /// Argument `index` could not become the parameter's type.
    BadType {
        /// Position of the argument, from 0.
        index: usize,
        /// The parameter's type.
        expected: &'static str,
        /// What the argument was.
        got: String,
    },
}

impl std::fmt::Display for ArgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArgError::TooMany { expected, got } => {
                write!(f, "{got} arguments, the method takes {expected}")
            }
            ArgError::BadType {
                index,
                expected,
                got,
            } => {
                write!(f, "argument {index} is {got}, expected {expected}")
            }
        }
    }
}

/// A short description of a value's type for error messages.
fn kind(v: &Value) -> String {
    match v {
        Value::Nil => "nil".into(),
        Value::Bool(_) => "a bool".into(),
        Value::Int(_) | Value::UInt(_) => "an integer".into(),
        Value::Float(_) => "a float".into(),
        Value::Str(_) => "a string".into(),
        Value::Bin(_) => "binary".into(),
        Value::Array(_) => "a list".into(),
        Value::Map(_) => "a map".into(),
        Value::Ext(..) => "an extension value".into(),
    }
}

/// A parameter type an RPC method can take.
pub trait FromArg: Sized + Default {
    /// The type's name in error messages.
    const NAME: &'static str;
    /// Converts a decoded msgpack value; `None` if it does not fit.
    fn from_value(v: &Value) -> Option<Self>;

    /// Converts one raw argument; the error says what the argument was. The default decodes
    /// the msgpack value and calls [`from_value`](FromArg::from_value).
    fn from_raw(raw: &[u8]) -> Result<Self, String> {
        from_raw_value(raw)
    }
}

macro_rules! int_from_arg {
    ($($t:ty),*) => {$(
        impl FromArg for $t {
            const NAME: &'static str = stringify!($t);
            fn from_value(v: &Value) -> Option<Self> {
                match v {
                    Value::Int(i) => <$t>::try_from(*i).ok(),
                    Value::UInt(u) => <$t>::try_from(*u).ok(),
                    _ => None,
                }
            }
        }
    )*};
}
int_from_arg!(i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);

impl FromArg for f64 {
    const NAME: &'static str = "float";
    fn from_value(v: &Value) -> Option<Self> {
        v.as_f64()
    }
}

impl FromArg for f32 {
    const NAME: &'static str = "float";
    fn from_value(v: &Value) -> Option<Self> {
        v.as_f64().map(|f| f as f32)
    }
}

impl FromArg for bool {
    const NAME: &'static str = "bool";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

impl FromArg for String {
    const NAME: &'static str = "string";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Str(s) => Some(s.clone()),
            Value::Bin(b) => String::from_utf8(b.clone()).ok(),
            _ => None,
        }
    }
    fn from_raw(raw: &[u8]) -> Result<Self, String> {
        // The common case, a string, in one allocation (and no Value).
        match msgpack::str_exact(raw).map(std::str::from_utf8) {
            Some(Ok(s)) => Ok(s.to_owned()),
            _ => from_raw_value(raw),
        }
    }
}

impl FromArg for EntityId {
    const NAME: &'static str = "entity ID";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Str(s) if s.is_empty() => Some(EntityId::NONE),
            Value::Str(s) => EntityId::parse(s),
            Value::Bin(b) => EntityId::from_slice(b),
            _ => None,
        }
    }
    fn from_raw(raw: &[u8]) -> Result<Self, String> {
        match msgpack::str_exact(raw).map(std::str::from_utf8) {
            Some(Ok("")) => Ok(EntityId::NONE),
            Some(Ok(s)) => EntityId::parse(s).ok_or_else(|| "a string".to_string()),
            _ => from_raw_value(raw),
        }
    }
}

/// [`FromArg::from_raw`]'s general path: decode the value, then convert it.
fn from_raw_value<T: FromArg>(raw: &[u8]) -> Result<T, String> {
    let v = msgpack::decode_exact(raw).map_err(|e| format!("undecodable msgpack ({e})"))?;
    T::from_value(&v).ok_or_else(|| kind(&v))
}

impl FromArg for Value {
    const NAME: &'static str = "any value";
    fn from_value(v: &Value) -> Option<Self> {
        Some(v.clone())
    }
}

impl<T: FromArg> FromArg for Vec<T> {
    const NAME: &'static str = "list";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Array(items) => items.iter().map(T::from_value).collect(),
            Value::Nil => Some(Vec::new()),
            _ => None,
        }
    }
}

impl<T: FromArg> FromArg for BTreeMap<String, T> {
    const NAME: &'static str = "map";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| Some((String::from_value(k)?, T::from_value(v)?)))
                .collect(),
            Value::Nil => Some(BTreeMap::new()),
            _ => None,
        }
    }
}

/// Decodes argument `index` (or the default when it is missing).
pub fn arg<T: FromArg>(args: &[Vec<u8>], index: usize) -> Result<T, ArgError> {
    let Some(raw) = args.get(index) else {
        return Ok(T::default());
    };
    T::from_raw(raw).map_err(|got| ArgError::BadType {
        index,
        expected: T::NAME,
        got,
    })
}

/// A parameter or argument of any serde type, such as a user struct: GoWorld's clients send
/// structs as msgpack maps keyed by field name, which is what this reads and writes.
/// Sending keeps the client-facing rules (every integer as int64), so it is safe to send to
/// clients.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Serde<T>(pub T);

impl<T: serde::de::DeserializeOwned + Default> FromArg for Serde<T> {
    const NAME: &'static str = "a struct";
    fn from_value(_v: &Value) -> Option<Self> {
        None
    }
    fn from_raw(raw: &[u8]) -> Result<Self, String> {
        rmp_serde::from_slice(raw)
            .map(Serde)
            .map_err(|e| format!("not the struct ({e})"))
    }
}

impl<T: serde::Serialize> ToArg for Serde<T> {
    fn write_arg(&self, out: &mut Vec<u8>) {
        // rmp-serde writes compact integers; re-encode through a Value for the client rules.
        match rmp_serde::to_vec_named(&self.0)
            .ok()
            .and_then(|b| msgpack::decode_exact(&b).ok())
        {
            Some(v) => v.encode(out),
            None => msgpack::write_nil(out),
        }
    }
}

/// A method's whole parameter list: a tuple of [`FromArg`] types (or `()`).
pub trait FromArgs: Sized {
    /// Number of parameters.
    const COUNT: usize;
    /// Decodes raw arguments; missing trailing ones take their default.
    fn from_args(args: &[Vec<u8>]) -> Result<Self, ArgError>;
}

macro_rules! tuple_from_args {
    ($n:expr; $($t:ident $i:tt),*) => {
        impl<$($t: FromArg),*> FromArgs for ($($t,)*) {
            const COUNT: usize = $n;
            #[allow(unused_variables)]
            fn from_args(args: &[Vec<u8>]) -> Result<Self, ArgError> {
                if args.len() > $n {
                    return Err(ArgError::TooMany { expected: $n, got: args.len() });
                }
                Ok(($(arg::<$t>(args, $i)?,)*))
            }
        }
    };
}
tuple_from_args!(0;);
tuple_from_args!(1; A 0);
tuple_from_args!(2; A 0, B 1);
tuple_from_args!(3; A 0, B 1, C 2);
tuple_from_args!(4; A 0, B 1, C 2, D 3);
tuple_from_args!(5; A 0, B 1, C 2, D 3, E 4);
tuple_from_args!(6; A 0, B 1, C 2, D 3, E 4, F 5);

/// A value that can be sent as an argument, encoded with the client-facing msgpack rules.
pub trait ToArg {
    /// Appends this value's msgpack encoding.
    fn write_arg(&self, out: &mut Vec<u8>);
    /// About how many bytes [`ToArg::write_arg`] appends (a capacity hint, not a promise).
    fn size_hint(&self) -> usize {
        9
    }
    /// This value as one raw argument.
    fn to_arg(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.size_hint());
        self.write_arg(&mut v);
        v
    }
}

macro_rules! int_to_arg {
    ($($t:ty),*) => {$(
        impl ToArg for $t {
            fn write_arg(&self, out: &mut Vec<u8>) {
                msgpack::write_int(out, *self as i64);
            }
        }
    )*};
}
int_to_arg!(i8, i16, i32, i64, u8, u16, u32, usize, isize);

impl ToArg for f64 {
    fn write_arg(&self, out: &mut Vec<u8>) {
        msgpack::write_float(out, *self);
    }
}

impl ToArg for f32 {
    fn write_arg(&self, out: &mut Vec<u8>) {
        msgpack::write_float(out, f64::from(*self));
    }
}

impl ToArg for bool {
    fn write_arg(&self, out: &mut Vec<u8>) {
        msgpack::write_bool(out, *self);
    }
}

impl ToArg for str {
    fn write_arg(&self, out: &mut Vec<u8>) {
        msgpack::write_str(out, self);
    }
    fn size_hint(&self) -> usize {
        5 + self.len()
    }
}

impl ToArg for String {
    fn write_arg(&self, out: &mut Vec<u8>) {
        msgpack::write_str(out, self);
    }
    fn size_hint(&self) -> usize {
        5 + self.len()
    }
}

impl ToArg for EntityId {
    fn write_arg(&self, out: &mut Vec<u8>) {
        let b = self.as_bytes();
        if b.is_ascii() {
            msgpack::write_str_bytes(out, b);
        } else {
            msgpack::write_str(out, &self.to_text());
        }
    }
    fn size_hint(&self) -> usize {
        17
    }
}

impl ToArg for Value {
    fn write_arg(&self, out: &mut Vec<u8>) {
        self.encode(out);
    }
}

impl<T: ToArg> ToArg for [T] {
    fn write_arg(&self, out: &mut Vec<u8>) {
        msgpack::write_array_len(out, self.len() as u32);
        for x in self {
            x.write_arg(out);
        }
    }
}

impl<T: ToArg> ToArg for Vec<T> {
    fn write_arg(&self, out: &mut Vec<u8>) {
        self.as_slice().write_arg(out);
    }
}

impl<T: ToArg + ?Sized> ToArg for &T {
    fn write_arg(&self, out: &mut Vec<u8>) {
        (**self).write_arg(out);
    }
    fn size_hint(&self) -> usize {
        (**self).size_hint()
    }
}

/// Builds an argument list: `args![user, 3, true]`.
#[macro_export]
macro_rules! args {
    ($($x:expr),* $(,)?) => {
        vec![$($crate::args::ToArg::to_arg(&$x)),*]
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(v: Value) -> Vec<u8> {
        let mut out = Vec::new();
        v.encode(&mut out);
        out
    }

    #[test]
    fn decodes_each_type_from_any_integer_width() {
        // fixint, uint8 and int64 forms all become an i32 parameter.
        for bytes in [
            vec![0x05],
            vec![0xcc, 0x05],
            vec![0xd3, 0, 0, 0, 0, 0, 0, 0, 5],
        ] {
            assert_eq!(<(i32,)>::from_args(&[bytes]).unwrap(), (5,));
        }
        let args = vec![
            raw(Value::Str("x".into())),
            raw(Value::Float(1.5)),
            raw(Value::Bool(true)),
        ];
        assert_eq!(
            <(String, f64, bool)>::from_args(&args).unwrap(),
            ("x".into(), 1.5, true)
        );
        // A float parameter takes an integer too.
        assert_eq!(<(f64,)>::from_args(&[raw(Value::Int(2))]).unwrap(), (2.0,));
        let id = EntityId::parse("awVBNWhsgjH.AAAH").unwrap();
        assert_eq!(<(EntityId,)>::from_args(&[id.to_arg()]).unwrap(), (id,));
        let list = raw(Value::Array(vec![Value::Int(1), Value::Int(2)]));
        assert_eq!(<(Vec<i64>,)>::from_args(&[list]).unwrap(), (vec![1, 2],));
    }

    #[test]
    fn missing_arguments_default_and_extra_or_wrong_ones_are_errors() {
        assert_eq!(<(String, i64)>::from_args(&[]).unwrap(), (String::new(), 0));
        assert_eq!(
            <(i64,)>::from_args(&[vec![1], vec![2]]),
            Err(ArgError::TooMany {
                expected: 1,
                got: 2
            })
        );
        let err = <(i64,)>::from_args(&[raw(Value::Str("x".into()))]).unwrap_err();
        assert_eq!(
            err,
            ArgError::BadType {
                index: 0,
                expected: "i64",
                got: "a string".into()
            }
        );
        // Out of range for the parameter's width.
        assert!(<(u8,)>::from_args(&[raw(Value::Int(300))]).is_err());
        assert!(<(i64,)>::from_args(&[vec![0xc1]]).is_err());
    }

    #[test]
    fn user_structs_travel_as_maps_with_the_client_rules() {
        #[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Mail {
            title: String,
            gold: i64,
        }
        let a = args![Serde(Mail {
            title: "hi".into(),
            gold: 1
        })];
        // {"title": "hi", "gold": 1 as int64}
        let mut want = vec![0x82, 0xa5];
        want.extend_from_slice(b"title");
        want.extend_from_slice(&[0xa2, b'h', b'i', 0xa4]);
        want.extend_from_slice(b"gold");
        want.extend_from_slice(&[0xd3, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(a[0], want);
        let (m,) = <(Serde<Mail>,)>::from_args(&a).unwrap();
        assert_eq!(
            m.0,
            Mail {
                title: "hi".into(),
                gold: 1
            }
        );
        assert!(<(Serde<Mail>,)>::from_args(&[vec![0xc3]]).is_err());
    }

    #[test]
    fn sending_uses_the_client_rules() {
        let a = args![1i64, "abc", true, 2.3f64];
        assert_eq!(a[0], vec![0xd3, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(a[1], vec![0xa3, b'a', b'b', b'c']);
        assert_eq!(a[2], vec![0xc3]);
        assert_eq!(
            a[3],
            vec![0xcb, 0x40, 0x02, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66]
        );
        assert_eq!(args![Vec::<i64>::new()][0], vec![0x90]);
    }
}
