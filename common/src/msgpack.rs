//! msgpack values and GoWorld's encoding rules (reference §2.4).
//!
//! Everything a client decodes is written by [`Value::encode`]: every integer as int64 `0xd3`
//! (even 0 and 1; GoWorld's Go client indexes attribute paths with `.(int64)`), every float as
//! float64 `0xcb`, strings as fixstr/str8/str16/str32, empty lists and maps as `0x90`/`0x80`,
//! never nil. Decoding accepts every msgpack form (fixint, uint8…, float32, bin, ext, …).
//! No sockets, no clock.

/// A decoded msgpack value. Maps keep their order (GoWorld's are unordered; ours are stable).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Nil,
    Bool(bool),
    /// Any signed or unsigned integer that fits i64.
    Int(i64),
    /// An unsigned integer above i64::MAX.
    UInt(u64),
    /// float32 or float64; encoded as float64.
    Float(f64),
    Str(String),
    Bin(Vec<u8>),
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
    Ext(i8, Vec<u8>),
}

impl Default for Value {
    /// Nil: what a missing RPC argument of type `Value` becomes.
    fn default() -> Self {
        Value::Nil
    }
}

/// Why a msgpack value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The input ended inside a value.
    Truncated,
    /// A byte that starts no msgpack value (0xc1).
    Reserved(u8),
    /// A string that is not UTF-8.
    BadUtf8,
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Bytes left after the value where exactly one value was expected.
    Trailing(usize),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Truncated => f.write_str("msgpack value truncated"),
            Error::Reserved(b) => write!(f, "reserved msgpack byte 0x{b:02x}"),
            Error::BadUtf8 => f.write_str("msgpack string is not UTF-8"),
            Error::TooDeep => write!(f, "msgpack nesting deeper than {MAX_DEPTH}"),
            Error::Trailing(n) => write!(f, "{n} bytes after the msgpack value"),
        }
    }
}

impl std::error::Error for Error {}

/// Deepest nesting the decoder accepts, so hostile input cannot exhaust the stack.
pub const MAX_DEPTH: usize = 64;

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------
//
// The rmp writers return `Result`s whose error can only come from the sink. Our sink is a
// `Vec<u8>`, whose `Write` never fails (allocation failure aborts), so the results are
// discarded on purpose.

/// Appends msgpack nil (`0xc0`).
pub fn write_nil(out: &mut Vec<u8>) {
    let _ = rmp::encode::write_nil(out);
}

/// Appends a msgpack bool (`0xc2`/`0xc3`).
pub fn write_bool(out: &mut Vec<u8>, b: bool) {
    let _ = rmp::encode::write_bool(out, b);
}

/// Appends an integer the way GoWorld's Go `int` encodes: always int64 `0xd3` + 8 bytes BE.
pub fn write_int(out: &mut Vec<u8>, v: i64) {
    let _ = rmp::encode::write_i64(out, v);
}

/// Appends a float64 (`0xcb` + 8 bytes BE).
pub fn write_float(out: &mut Vec<u8>, v: f64) {
    let _ = rmp::encode::write_f64(out, v);
}

/// Appends a string as fixstr/str8/str16/str32, whichever is smallest.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    write_str_bytes(out, s.as_bytes());
}

/// [`write_str`] for bytes the caller knows to be UTF-8. One reservation, then the header
/// and the bytes (rmp's writer grows the vector once per piece).
pub fn write_str_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let n = b.len();
    out.reserve(
        n + match n {
            0..=31 => 1,
            32..=0xff => 2,
            0x100..=0xffff => 3,
            _ => 5,
        },
    );
    match n {
        0..=31 => out.push(0xa0 | n as u8),
        32..=0xff => out.extend_from_slice(&[0xd9, n as u8]),
        0x100..=0xffff => {
            out.push(0xda);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdb);
            out.extend_from_slice(&len32(n).to_be_bytes());
        }
    }
    out.extend_from_slice(b);
}

/// Appends a binary (bin8/bin16/bin32).
pub fn write_bin(out: &mut Vec<u8>, b: &[u8]) {
    let _ = rmp::encode::write_bin(out, b);
}

/// Appends an array header (fixarray/array16/array32); the caller then writes `len` values.
pub fn write_array_len(out: &mut Vec<u8>, len: u32) {
    let _ = rmp::encode::write_array_len(out, len);
}

/// Appends a map header (fixmap/map16/map32); the caller then writes `len` key/value pairs.
pub fn write_map_len(out: &mut Vec<u8>, len: u32) {
    let _ = rmp::encode::write_map_len(out, len);
}

/// Container and string lengths on the wire are u32; longer ones cannot be represented.
fn len32(n: usize) -> u32 {
    debug_assert!(
        u32::try_from(n).is_ok(),
        "msgpack length {n} above u32::MAX"
    );
    n as u32
}

impl Value {
    /// Appends this value with GoWorld's client-facing rules: integers as int64 `0xd3` (an
    /// unsigned value above `i64::MAX` as uint64 `0xcf`), floats as float64 `0xcb`, strings,
    /// binaries, arrays, maps and exts with the smallest header that fits.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Nil => write_nil(out),
            Value::Bool(b) => write_bool(out, *b),
            Value::Int(i) => write_int(out, *i),
            Value::UInt(u) => match i64::try_from(*u) {
                Ok(i) => write_int(out, i),
                Err(_) => {
                    let _ = rmp::encode::write_u64(out, *u);
                }
            },
            Value::Float(f) => write_float(out, *f),
            Value::Str(s) => write_str(out, s),
            Value::Bin(b) => {
                let _ = rmp::encode::write_bin(out, b);
            }
            Value::Array(items) => {
                write_array_len(out, len32(items.len()));
                for v in items {
                    v.encode(out);
                }
            }
            Value::Map(pairs) => {
                write_map_len(out, len32(pairs.len()));
                for (k, v) in pairs {
                    k.encode(out);
                    v.encode(out);
                }
            }
            Value::Ext(ty, data) => {
                let _ = rmp::encode::write_ext_meta(out, len32(data.len()), *ty);
                out.extend_from_slice(data);
            }
        }
    }

    /// This value encoded into a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// The string, if this is a `Str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an `Int` (or a `UInt` that fits i64).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::UInt(u) => i64::try_from(*u).ok(),
            _ => None,
        }
    }

    /// Any number (`Int`, `UInt` or `Float`) as f64.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::UInt(u) => Some(*u as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The bool, if this is a `Bool`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The elements, if this is an `Array`.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The key/value pairs in wire order, if this is a `Map`.
    pub fn as_map(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The value of the first pair whose key is the string `key`, if this is a `Map`.
    pub fn map_get(&self, key: &str) -> Option<&Value> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Str(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// Decodes one value from the start of `buf`; returns it and the number of bytes it used.
///
/// Accepts every msgpack form. Never panics; preallocates at most as many elements as the
/// remaining input could hold, so a hostile length costs nothing before it fails as
/// [`Error::Truncated`]. Nesting deeper than [`MAX_DEPTH`] is [`Error::TooDeep`].
pub fn decode(buf: &[u8]) -> Result<(Value, usize), Error> {
    let mut r = Reader { buf, pos: 0 };
    let v = r.value(0)?;
    Ok((v, r.pos))
}

/// Decodes exactly one value that fills all of `buf`; leftover bytes are [`Error::Trailing`].
/// The bytes of `buf` if it is exactly one msgpack string (any of its four forms), without
/// checking that they are UTF-8; `None` for anything else. A fast path for decoders that
/// would otherwise build a [`Value`] only to take the string out of it.
pub fn str_exact(buf: &[u8]) -> Option<&[u8]> {
    let (&marker, rest) = buf.split_first()?;
    let (len, rest) = match marker {
        0xa0..=0xbf => (usize::from(marker & 0x1f), rest),
        0xd9 => (usize::from(*rest.first()?), rest.get(1..)?),
        0xda => (
            usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)),
            rest.get(2..)?,
        ),
        0xdb => (
            u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize,
            rest.get(4..)?,
        ),
        _ => return None,
    };
    (rest.len() == len).then_some(rest)
}

pub fn decode_exact(buf: &[u8]) -> Result<Value, Error> {
    let (v, n) = decode(buf)?;
    if n == buf.len() {
        Ok(v)
    } else {
        Err(Error::Trailing(buf.len() - n))
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if n > self.remaining() {
            return Err(Error::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<usize, Error> {
        Ok(u16::from_be_bytes(self.array()?) as usize)
    }

    fn u32(&mut self) -> Result<usize, Error> {
        // usize is at least 32 bits on every target we build for.
        Ok(u32::from_be_bytes(self.array()?) as usize)
    }

    fn str(&mut self, len: usize) -> Result<Value, Error> {
        let b = self.take(len)?;
        let s = std::str::from_utf8(b).map_err(|_| Error::BadUtf8)?;
        Ok(Value::Str(s.to_owned()))
    }

    fn bin(&mut self, len: usize) -> Result<Value, Error> {
        Ok(Value::Bin(self.take(len)?.to_vec()))
    }

    fn ext(&mut self, len: usize) -> Result<Value, Error> {
        let ty = self.u8()? as i8;
        Ok(Value::Ext(ty, self.take(len)?.to_vec()))
    }

    fn seq(&mut self, len: usize, depth: usize) -> Result<Value, Error> {
        if depth >= MAX_DEPTH {
            return Err(Error::TooDeep);
        }
        // Every element takes at least one byte.
        let mut items = Vec::with_capacity(len.min(self.remaining()));
        for _ in 0..len {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, len: usize, depth: usize) -> Result<Value, Error> {
        if depth >= MAX_DEPTH {
            return Err(Error::TooDeep);
        }
        // Every pair takes at least two bytes.
        let mut pairs = Vec::with_capacity(len.min(self.remaining() / 2));
        for _ in 0..len {
            let k = self.value(depth + 1)?;
            let v = self.value(depth + 1)?;
            pairs.push((k, v));
        }
        Ok(Value::Map(pairs))
    }

    /// One value; `depth` is the number of containers around it.
    fn value(&mut self, depth: usize) -> Result<Value, Error> {
        let m = self.u8()?;
        Ok(match m {
            0x00..=0x7f => Value::Int(i64::from(m)),
            0x80..=0x8f => return self.map(usize::from(m & 0x0f), depth),
            0x90..=0x9f => return self.seq(usize::from(m & 0x0f), depth),
            0xa0..=0xbf => return self.str(usize::from(m & 0x1f)),
            0xc0 => Value::Nil,
            0xc1 => return Err(Error::Reserved(m)),
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4 => {
                let n = usize::from(self.u8()?);
                return self.bin(n);
            }
            0xc5 => {
                let n = self.u16()?;
                return self.bin(n);
            }
            0xc6 => {
                let n = self.u32()?;
                return self.bin(n);
            }
            0xc7 => {
                let n = usize::from(self.u8()?);
                return self.ext(n);
            }
            0xc8 => {
                let n = self.u16()?;
                return self.ext(n);
            }
            0xc9 => {
                let n = self.u32()?;
                return self.ext(n);
            }
            0xca => Value::Float(f64::from(f32::from_be_bytes(self.array()?))),
            0xcb => Value::Float(f64::from_be_bytes(self.array()?)),
            0xcc => Value::Int(i64::from(self.u8()?)),
            0xcd => Value::Int(i64::from(u16::from_be_bytes(self.array()?))),
            0xce => Value::Int(i64::from(u32::from_be_bytes(self.array()?))),
            0xcf => {
                let u = u64::from_be_bytes(self.array()?);
                match i64::try_from(u) {
                    Ok(i) => Value::Int(i),
                    Err(_) => Value::UInt(u),
                }
            }
            0xd0 => Value::Int(i64::from(i8::from_be_bytes(self.array()?))),
            0xd1 => Value::Int(i64::from(i16::from_be_bytes(self.array()?))),
            0xd2 => Value::Int(i64::from(i32::from_be_bytes(self.array()?))),
            0xd3 => Value::Int(i64::from_be_bytes(self.array()?)),
            0xd4 => return self.ext(1),
            0xd5 => return self.ext(2),
            0xd6 => return self.ext(4),
            0xd7 => return self.ext(8),
            0xd8 => return self.ext(16),
            0xd9 => {
                let n = usize::from(self.u8()?);
                return self.str(n);
            }
            0xda => {
                let n = self.u16()?;
                return self.str(n);
            }
            0xdb => {
                let n = self.u32()?;
                return self.str(n);
            }
            0xdc => {
                let n = self.u16()?;
                return self.seq(n, depth);
            }
            0xdd => {
                let n = self.u32()?;
                return self.seq(n, depth);
            }
            0xde => {
                let n = self.u16()?;
                return self.map(n, depth);
            }
            0xdf => {
                let n = self.u32()?;
                return self.map(n, depth);
            }
            0xe0..=0xff => Value::Int(i64::from(m as i8)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn enc(v: &Value) -> String {
        v.to_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn dec(h: &str) -> Value {
        decode_exact(&hex(h)).unwrap()
    }

    #[test]
    fn every_scalar_form_decodes() {
        assert_eq!(dec("00"), Value::Int(0));
        assert_eq!(dec("7f"), Value::Int(127));
        assert_eq!(dec("ff"), Value::Int(-1));
        assert_eq!(dec("e0"), Value::Int(-32));
        assert_eq!(dec("ccff"), Value::Int(255));
        assert_eq!(dec("cdffff"), Value::Int(65535));
        assert_eq!(dec("ceffffffff"), Value::Int(4294967295));
        assert_eq!(dec("cf7fffffffffffffff"), Value::Int(i64::MAX));
        assert_eq!(dec("cfffffffffffffffff"), Value::UInt(u64::MAX));
        assert_eq!(dec("d080"), Value::Int(-128));
        assert_eq!(dec("d18000"), Value::Int(-32768));
        assert_eq!(dec("d280000000"), Value::Int(i64::from(i32::MIN)));
        assert_eq!(dec("d38000000000000000"), Value::Int(i64::MIN));
        assert_eq!(dec("d30000000000000001"), Value::Int(1));
        assert_eq!(dec("ca3fc00000"), Value::Float(1.5));
        assert_eq!(dec("cb4002666666666666"), Value::Float(2.3));
        assert_eq!(dec("c0"), Value::Nil);
        assert_eq!(dec("c2"), Value::Bool(false));
        assert_eq!(dec("c3"), Value::Bool(true));
    }

    #[test]
    fn every_str_bin_ext_form_decodes() {
        let s = |n: usize| Value::Str("x".repeat(n));
        assert_eq!(dec("a0"), s(0));
        assert_eq!(dec("a6e697a0e5908d"), Value::Str("无名".into()));
        assert_eq!(dec(&format!("d903{}", "78".repeat(3))), s(3));
        assert_eq!(dec(&format!("da0003{}", "78".repeat(3))), s(3));
        assert_eq!(dec(&format!("db00000003{}", "78".repeat(3))), s(3));
        assert_eq!(dec("c4020102"), Value::Bin(vec![1, 2]));
        assert_eq!(dec("c500020102"), Value::Bin(vec![1, 2]));
        assert_eq!(dec("c6000000020102"), Value::Bin(vec![1, 2]));
        assert_eq!(dec("d4ff01"), Value::Ext(-1, vec![1]));
        assert_eq!(dec("d5010102"), Value::Ext(1, vec![1, 2]));
        assert_eq!(dec("d60101020304"), Value::Ext(1, vec![1, 2, 3, 4]));
        assert_eq!(
            dec(&format!("d701{}", "00".repeat(8))),
            Value::Ext(1, vec![0; 8])
        );
        assert_eq!(
            dec(&format!("d801{}", "00".repeat(16))),
            Value::Ext(1, vec![0; 16])
        );
        assert_eq!(dec("c70305010203"), Value::Ext(5, vec![1, 2, 3]));
        assert_eq!(dec("c8000305010203"), Value::Ext(5, vec![1, 2, 3]));
        assert_eq!(dec("c90000000305010203"), Value::Ext(5, vec![1, 2, 3]));
    }

    #[test]
    fn every_container_form_decodes() {
        let arr = Value::Array(vec![Value::Int(1), Value::Nil]);
        assert_eq!(dec("9201c0"), arr);
        assert_eq!(dec("dc000201c0"), arr);
        assert_eq!(dec("dd0000000201c0"), arr);
        let map = Value::Map(vec![(Value::Str("a".into()), Value::Int(1))]);
        assert_eq!(dec("81a16101"), map);
        assert_eq!(dec("de0001a16101"), map);
        assert_eq!(dec("df00000001a16101"), map);
        assert_eq!(dec("90"), Value::Array(vec![]));
        assert_eq!(dec("80"), Value::Map(vec![]));
        assert_eq!(map.map_get("a"), Some(&Value::Int(1)));
        assert_eq!(map.map_get("b"), None);
    }

    #[test]
    fn decode_reports_consumed_bytes() {
        assert_eq!(decode(&hex("a161ff")).unwrap(), (Value::Str("a".into()), 2));
        assert_eq!(decode_exact(&hex("a161ff")), Err(Error::Trailing(1)));
    }

    #[test]
    fn encode_follows_goworld_rules() {
        assert_eq!(enc(&Value::Int(0)), "d30000000000000000");
        assert_eq!(enc(&Value::Int(1)), "d30000000000000001");
        assert_eq!(enc(&Value::Int(-1)), "d3ffffffffffffffff");
        assert_eq!(enc(&Value::UInt(5)), "d30000000000000005");
        assert_eq!(enc(&Value::UInt(u64::MAX)), "cfffffffffffffffff");
        assert_eq!(enc(&Value::Float(2.3)), "cb4002666666666666");
        assert_eq!(enc(&Value::from("无名")), "a6e697a0e5908d");
        assert_eq!(enc(&Value::Map(vec![])), "80");
        assert_eq!(enc(&Value::Array(vec![])), "90");
        assert_eq!(enc(&Value::Nil), "c0");
        assert_eq!(enc(&Value::Bool(true)), "c3");
        assert_eq!(enc(&Value::Bin(vec![1])), "c40101");
        assert_eq!(enc(&Value::Ext(-1, vec![0; 4])), "d6ff00000000");
        assert_eq!(enc(&Value::Ext(3, vec![0; 3])), "c70303000000");
        let long = "x".repeat(33);
        assert!(enc(&Value::from(long.as_str())).starts_with("d921"));
        assert!(enc(&Value::from("x".repeat(300))).starts_with("da012c"));
        assert!(enc(&Value::Array(vec![Value::Nil; 16])).starts_with("dc0010"));
        let m = Value::Map(vec![(Value::from("cp"), Value::from(0.9769360487663536))]);
        assert_eq!(enc(&m), "81a26370cb3fef430f637784b6");
    }

    #[test]
    fn writers_match_value_encode() {
        let mut out = Vec::new();
        write_map_len(&mut out, 2);
        write_str(&mut out, "a");
        write_int(&mut out, 1);
        write_str(&mut out, "b");
        write_array_len(&mut out, 3);
        write_nil(&mut out);
        write_bool(&mut out, false);
        write_float(&mut out, 0.5);
        let v = Value::Map(vec![
            ("a".into(), 1i64.into()),
            (
                "b".into(),
                Value::Array(vec![Value::Nil, false.into(), 0.5.into()]),
            ),
        ]);
        assert_eq!(out, v.to_bytes());
        assert_eq!(decode_exact(&out).unwrap(), v);
    }

    #[test]
    fn accessors() {
        assert_eq!(Value::Int(3).as_f64(), Some(3.0));
        assert_eq!(Value::UInt(u64::MAX).as_i64(), None);
        assert_eq!(Value::Float(1.5).as_i64(), None);
        assert_eq!(Value::from(String::from("s")).as_str(), Some("s"));
        assert_eq!(Value::from(true).as_bool(), Some(true));
        assert_eq!(Value::Array(vec![]).as_array().map(<[_]>::len), Some(0));
        assert!(Value::Nil.as_map().is_none());
    }

    #[test]
    fn round_trips_through_decode() {
        let v = Value::Map(vec![
            ("T".into(), "Avatar".into()),
            (
                "n".into(),
                Value::Array(vec![Value::Int(-5), Value::UInt(u64::MAX)]),
            ),
            ("b".into(), Value::Bin(vec![9; 300])),
            ("e".into(), Value::Ext(7, vec![1; 70000])),
        ]);
        assert_eq!(decode_exact(&v.to_bytes()).unwrap(), v);
    }

    #[test]
    fn truncated_input_is_an_error_at_every_length() {
        let full = hex("82a154a6417661746172a14193d3000000000000000190cb4002666666666666");
        decode_exact(&full).unwrap();
        for n in 0..full.len() {
            assert_eq!(decode(&full[..n]), Err(Error::Truncated), "cut at {n}");
        }
    }

    #[test]
    fn hostile_lengths_fail_without_allocating() {
        // Declared lengths of 4 GiB with nothing behind them.
        for h in [
            "dbffffffff",
            "c6ffffffff",
            "c9ffffffff01",
            "ddffffffff",
            "dfffffffff",
        ] {
            assert_eq!(decode(&hex(h)), Err(Error::Truncated), "{h}");
        }
        // A huge array of nils that is cut short allocates at most the input length.
        let mut b = hex("ddffffffff");
        b.resize(b.len() + 1000, 0xc0);
        assert_eq!(decode(&b), Err(Error::Truncated));
        assert_eq!(decode(&[0xc1]), Err(Error::Reserved(0xc1)));
        assert_eq!(decode(&hex("a2c328")), Err(Error::BadUtf8));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let ok = [vec![0x91; MAX_DEPTH], vec![0xc0]].concat();
        assert!(decode_exact(&ok).is_ok());
        let deep = [vec![0x91; MAX_DEPTH + 1], vec![0xc0]].concat();
        assert_eq!(decode(&deep), Err(Error::TooDeep));
        let deep_maps = [0x81u8, 0xc0].repeat(100_000);
        assert_eq!(decode(&deep_maps), Err(Error::TooDeep));
        let huge = vec![0x91; 1_000_000];
        assert_eq!(decode(&huge), Err(Error::TooDeep));
    }

    #[test]
    fn strings_encode_as_rmp_does_and_str_exact_reads_them_back() {
        for n in [0usize, 1, 31, 32, 255, 256, 65_535, 65_536, 70_000] {
            let text = "x".repeat(n);
            let mut ours = Vec::new();
            write_str(&mut ours, &text);
            let mut theirs = Vec::new();
            rmp::encode::write_str(&mut theirs, &text).unwrap();
            assert_eq!(ours, theirs, "length {n}");
            assert_eq!(str_exact(&ours), Some(text.as_bytes()), "length {n}");
            assert_eq!(decode_exact(&ours), Ok(Value::Str(text.clone())));
            // Anything but exactly one string is not one.
            let mut longer = ours.clone();
            longer.push(0xc0);
            assert_eq!(str_exact(&longer), None);
            assert_eq!(str_exact(&ours[..ours.len() - 1]), None, "length {n} cut");
        }
        assert_eq!(str_exact(&[0xc0]), None);
        assert_eq!(str_exact(&[]), None);
        assert_eq!(str_exact(&[0xd3, 0, 0, 0, 0, 0, 0, 0, 1]), None);
    }
}
