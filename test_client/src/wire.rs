//! The client side of GoWorld's client protocol (reference §2.3–2.7), written from the
//! protocol description and independent of the server's encoders in `goworld_common::proto`,
//! so a layout bug on one side is not mirrored on the other.
//!
//! * [`ServerMsg::decode`] parses one gate→client payload (1002–1009, 1012, 1501, 1502).
//!   Every field must be present and nothing may follow the last one; a payload that breaks
//!   this is a [`DecodeError`] naming the field.
//! * [`call_entity_method`], [`sync_position_yaw`] and [`heartbeat`] build the payloads a bot
//!   sends (11, 12, 2001). Their msgpack arguments come from [`pack`], which writes every
//!   integer as int64 `0xd3` the way GoWorld's Go client (vmihailenco msgpack, Go `int`) does.
//!
//! msgpack *values* are decoded with the generic [`goworld_common::msgpack::decode`], except
//! attribute paths, which this module reads itself because their form matters: GoWorld's Go
//! client indexes paths with `path[i].(int64)` and would panic on any other integer encoding,
//! so a list index that is not int64 `0xd3` is a decode error here.

use goworld_common::msgpack::{self, Value};

/// Message types the client receives or sends (reference §2.5–2.6).
pub mod mt {
    pub const CALL_ENTITY_METHOD_FROM_CLIENT: u16 = 11;
    pub const SYNC_POSITION_YAW_FROM_CLIENT: u16 = 12;
    pub const REDIRECT_START: u16 = 1001;
    pub const CREATE_ENTITY_ON_CLIENT: u16 = 1002;
    pub const DESTROY_ENTITY_ON_CLIENT: u16 = 1003;
    pub const NOTIFY_MAP_ATTR_CHANGE_ON_CLIENT: u16 = 1004;
    pub const NOTIFY_MAP_ATTR_DEL_ON_CLIENT: u16 = 1005;
    pub const NOTIFY_LIST_ATTR_CHANGE_ON_CLIENT: u16 = 1006;
    pub const NOTIFY_LIST_ATTR_POP_ON_CLIENT: u16 = 1007;
    pub const NOTIFY_LIST_ATTR_APPEND_ON_CLIENT: u16 = 1008;
    pub const CALL_ENTITY_METHOD_ON_CLIENT: u16 = 1009;
    pub const NOTIFY_MAP_ATTR_CLEAR_ON_CLIENT: u16 = 1012;
    pub const REDIRECT_STOP: u16 = 1499;
    pub const CALL_FILTERED_CLIENTS: u16 = 1501;
    pub const SYNC_POSITION_YAW_ON_CLIENTS: u16 = 1502;
    pub const HEARTBEAT_FROM_CLIENT: u16 = 2001;
}

/// A 16-byte entity ID as it travels on the wire (GoWorld IDs are 16 ASCII characters).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Eid(pub [u8; 16]);

impl std::fmt::Debug for Eid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Eid({:?})", String::from_utf8_lossy(&self.0))
    }
}

impl Eid {
    /// The ID of a 16-byte string (tests and arguments); `None` for any other length.
    pub fn from_str_bytes(s: &str) -> Option<Eid> {
        <[u8; 16]>::try_from(s.as_bytes()).ok().map(Eid)
    }
}

impl std::fmt::Display for Eid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

/// One step of an attribute path: a map key or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathKey {
    Key(String),
    Index(i64),
}

/// A position and yaw, as the f32s of the wire.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PosYaw {
    pub x: f32,
    pub y: f32,
    pub z: f32,
    pub yaw: f32,
}

/// One decoded gate→client message. Attribute paths are as on the wire: innermost step first,
/// empty for a root-level attribute (wire nil).
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMsg {
    /// 1002.
    CreateEntity {
        is_player: bool,
        eid: Eid,
        type_name: String,
        pos: PosYaw,
        client_data: Value,
    },
    /// 1003.
    DestroyEntity { type_name: String, eid: Eid },
    /// 1004.
    MapAttrChange {
        eid: Eid,
        path: Vec<PathKey>,
        key: String,
        val: Value,
    },
    /// 1005.
    MapAttrDel {
        eid: Eid,
        path: Vec<PathKey>,
        key: String,
    },
    /// 1006.
    ListAttrChange {
        eid: Eid,
        path: Vec<PathKey>,
        index: u32,
        val: Value,
    },
    /// 1007.
    ListAttrPop { eid: Eid, path: Vec<PathKey> },
    /// 1008.
    ListAttrAppend {
        eid: Eid,
        path: Vec<PathKey>,
        val: Value,
    },
    /// 1009.
    CallMethod {
        eid: Eid,
        method: String,
        args: Vec<Value>,
    },
    /// 1012.
    MapAttrClear { eid: Eid, path: Vec<PathKey> },
    /// 1501: the filter (op, key, val) is the gate's business; the method goes to the player.
    CallFiltered {
        op: u8,
        key: String,
        val: String,
        method: String,
        args: Vec<Value>,
    },
    /// 1502: 32-byte records, no count.
    SyncPositions(Vec<(Eid, PosYaw)>),
}

/// Why a gate→client payload (or an attribute path in one) could not be decoded. Fields are
/// named as in the protocol description (`eid`, `typeName`, `clientData`, …).
#[derive(Debug, Clone, PartialEq)]
pub enum DecodeError {
    /// The payload ended inside `field`: `needed` bytes were due, `left` remained.
    Truncated {
        field: &'static str,
        needed: usize,
        left: usize,
    },
    /// A string field that is not UTF-8.
    NotUtf8 { field: &'static str },
    /// A `Data` field that is not exactly one msgpack value.
    BadData {
        field: &'static str,
        source: msgpack::Error,
    },
    /// Argument `index` of a call that is not exactly one msgpack value.
    BadArg { index: u16, source: msgpack::Error },
    /// An attribute path whose `Data` is empty.
    PathEmpty,
    /// An attribute path that is neither msgpack nil nor an array; `tag` is its first byte.
    PathNotArray { tag: u8 },
    /// Step `index` of an attribute path is not a msgpack value (or the array ends early).
    PathStep {
        index: usize,
        source: msgpack::Error,
    },
    /// Step `index` is an integer not encoded as int64 `0xd3` (`tag` is its first byte):
    /// GoWorld's Go client would panic on it.
    PathIndexNotInt64 { index: usize, tag: u8 },
    /// Step `index` is neither a string (map key) nor an integer (list index).
    PathStepNotKey { index: usize, found: Value },
    /// Bytes after an attribute path's array.
    PathTrailing { bytes: usize },
    /// SYNC_POSITION_YAW_ON_CLIENTS (1502) whose body is not whole 32-byte records.
    PartialSyncRecord { bytes: usize },
    /// A message type a client never receives.
    UnexpectedType { msgtype: u16 },
    /// Bytes left after the last field of a message.
    Trailing { msgtype: u16, bytes: usize },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Truncated {
                field,
                needed,
                left,
            } => write!(
                f,
                "truncated at {field}: {left} bytes left, {needed} needed"
            ),
            DecodeError::NotUtf8 { field } => write!(f, "{field} is not UTF-8"),
            DecodeError::BadData { field, source } => write!(f, "{field}: {source}"),
            DecodeError::BadArg { index, source } => write!(f, "arg{index}: {source}"),
            DecodeError::PathEmpty => f.write_str("path: empty Data"),
            DecodeError::PathNotArray { tag } => {
                write!(f, "path: not nil or an array (0x{tag:02x})")
            }
            DecodeError::PathStep { index, source } => write!(f, "path[{index}]: {source}"),
            DecodeError::PathIndexNotInt64 { index, tag } => write!(
                f,
                "path[{index}]: list index not encoded as int64 0xd3 (0x{tag:02x}); \
                 GoWorld clients would panic"
            ),
            DecodeError::PathStepNotKey { index, found } => {
                write!(f, "path[{index}]: neither string nor int: {found:?}")
            }
            DecodeError::PathTrailing { bytes } => {
                write!(f, "path: {bytes} bytes after the array")
            }
            DecodeError::PartialSyncRecord { bytes } => {
                write!(f, "sync records: {bytes} bytes is not a multiple of 32")
            }
            DecodeError::UnexpectedType { msgtype } => {
                write!(f, "unexpected message type {msgtype} for a client")
            }
            DecodeError::Trailing { msgtype, bytes } => {
                write!(f, "{bytes} bytes after message type {msgtype}")
            }
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DecodeError::BadData { source, .. }
            | DecodeError::BadArg { source, .. }
            | DecodeError::PathStep { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A little-endian field reader over one payload.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() - self.pos < n {
            return Err(DecodeError::Truncated {
                field: what,
                needed: n,
                left: self.buf.len() - self.pos,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn fixed<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.fixed::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.fixed(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.fixed(what)?))
    }

    fn f32(&mut self, what: &'static str) -> Result<f32, DecodeError> {
        Ok(f32::from_le_bytes(self.fixed(what)?))
    }

    fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        Ok(self.u8(what)? != 0)
    }

    fn eid(&mut self, what: &'static str) -> Result<Eid, DecodeError> {
        Ok(Eid(self.fixed(what)?))
    }

    fn var_bytes(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }

    fn var_str(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let b = self.var_bytes(what)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::NotUtf8 { field: what })
    }

    /// `Data(x)`: VarBytes holding exactly one msgpack value.
    fn data(&mut self, what: &'static str) -> Result<Value, DecodeError> {
        let b = self.var_bytes(what)?;
        msgpack::decode_exact(b).map_err(|source| DecodeError::BadData {
            field: what,
            source,
        })
    }

    /// `Args`: u16 count, then each argument as `Data`.
    fn args(&mut self) -> Result<Vec<Value>, DecodeError> {
        let n = self.u16("args count")?;
        (0..n)
            .map(|i| {
                let b = self.var_bytes("an argument")?;
                msgpack::decode_exact(b).map_err(|source| DecodeError::BadArg { index: i, source })
            })
            .collect()
    }

    fn path(&mut self) -> Result<Vec<PathKey>, DecodeError> {
        let b = self.var_bytes("path")?;
        decode_path(b)
    }

    fn pos_yaw(&mut self) -> Result<PosYaw, DecodeError> {
        Ok(PosYaw {
            x: self.f32("x")?,
            y: self.f32("y")?,
            z: self.f32("z")?,
            yaw: self.f32("yaw")?,
        })
    }

    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// A call to a client method, read in place: what a bot needs to tell whether a chat line or
/// a published message is its own, without decoding (and allocating) the rest. With world
/// chat every client gets every line, so this runs for N² messages a second.
#[derive(Debug, PartialEq, Eq)]
pub struct PeekedCall<'a> {
    /// The target entity (1009); `None` for a filtered call (1501), which goes to the player.
    pub eid: Option<Eid>,
    pub method: &'a [u8],
    /// How many arguments, and the first one's raw msgpack (empty if there is none).
    pub nargs: u16,
    pub first_arg: &'a [u8],
}

/// Reads a 1009 CALL_ENTITY_METHOD_ON_CLIENT or 1501 CALL_FILTERED_CLIENTS payload in place,
/// checking that its fields and arguments fill it exactly (the arguments' msgpack is not
/// decoded); `None` for other types or a malformed payload, which [`ServerMsg::decode`]
/// then reports.
pub fn peek_call(payload: &[u8]) -> Option<PeekedCall<'_>> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    let t = r.u16("msgtype").ok()?;
    let eid = match t {
        mt::CALL_ENTITY_METHOD_ON_CLIENT => {
            r.take(2 + 16, "gateid and clientid").ok()?;
            Some(r.eid("eid").ok()?)
        }
        mt::CALL_FILTERED_CLIENTS => {
            r.u8("op").ok()?;
            r.var_bytes("key").ok()?;
            r.var_bytes("val").ok()?;
            None
        }
        _ => return None,
    };
    let method = r.var_bytes("method").ok()?;
    let nargs = r.u16("args count").ok()?;
    let mut first_arg: &[u8] = &[];
    for i in 0..nargs {
        let a = r.var_bytes("an argument").ok()?;
        if i == 0 {
            first_arg = a;
        }
    }
    (r.left() == 0).then_some(PeekedCall {
        eid,
        method,
        nargs,
        first_arg,
    })
}

/// Reads an attribute path: msgpack nil (root) or an array of strings (map keys) and int64
/// `0xd3` integers (list indices), innermost first.
pub fn decode_path(b: &[u8]) -> Result<Vec<PathKey>, DecodeError> {
    let (&first, rest) = b.split_first().ok_or(DecodeError::PathEmpty)?;
    let (n, mut body) = match first {
        0xc0 => (0, rest),
        0x90..=0x9f => (usize::from(first & 0x0f), rest),
        0xdc if rest.len() >= 2 => (
            usize::from(u16::from_be_bytes([rest[0], rest[1]])),
            &rest[2..],
        ),
        0xdd if rest.len() >= 4 => (
            u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize,
            &rest[4..],
        ),
        _ => return Err(DecodeError::PathNotArray { tag: first }),
    };
    let mut path = Vec::with_capacity(n.min(body.len()));
    for i in 0..n {
        match body.first() {
            Some(0xd3) => {
                let v: [u8; 8] = body.get(1..9).and_then(|s| s.try_into().ok()).ok_or(
                    DecodeError::PathStep {
                        index: i,
                        source: msgpack::Error::Truncated,
                    },
                )?;
                path.push(PathKey::Index(i64::from_be_bytes(v)));
                body = &body[9..];
            }
            Some(_) => {
                let (v, used) = msgpack::decode(body)
                    .map_err(|source| DecodeError::PathStep { index: i, source })?;
                match v {
                    Value::Str(s) => path.push(PathKey::Key(s)),
                    Value::Int(_) | Value::UInt(_) => {
                        return Err(DecodeError::PathIndexNotInt64 {
                            index: i,
                            tag: body[0],
                        })
                    }
                    found => return Err(DecodeError::PathStepNotKey { index: i, found }),
                }
                body = &body[used..];
            }
            None => {
                return Err(DecodeError::PathStep {
                    index: i,
                    source: msgpack::Error::Truncated,
                })
            }
        }
    }
    if !body.is_empty() {
        return Err(DecodeError::PathTrailing { bytes: body.len() });
    }
    Ok(path)
}

impl ServerMsg {
    /// Decodes one gate→client payload (starting with its u16 msgtype).
    pub fn decode(payload: &[u8]) -> Result<ServerMsg, DecodeError> {
        let mut r = Reader {
            buf: payload,
            pos: 0,
        };
        let t = r.u16("msgtype")?;
        if (mt::REDIRECT_START..=mt::REDIRECT_STOP).contains(&t) {
            // u16 gateid + clientid, forwarded verbatim by the gate; the client skips them.
            r.take(2 + 16, "gateid and clientid")?;
        }
        let msg = match t {
            mt::CREATE_ENTITY_ON_CLIENT => ServerMsg::CreateEntity {
                is_player: r.bool("isPlayer")?,
                eid: r.eid("eid")?,
                type_name: r.var_str("typeName")?,
                pos: r.pos_yaw()?,
                client_data: r.data("clientData")?,
            },
            mt::DESTROY_ENTITY_ON_CLIENT => ServerMsg::DestroyEntity {
                type_name: r.var_str("typeName")?,
                eid: r.eid("eid")?,
            },
            mt::NOTIFY_MAP_ATTR_CHANGE_ON_CLIENT => ServerMsg::MapAttrChange {
                eid: r.eid("eid")?,
                path: r.path()?,
                key: r.var_str("key")?,
                val: r.data("val")?,
            },
            mt::NOTIFY_MAP_ATTR_DEL_ON_CLIENT => ServerMsg::MapAttrDel {
                eid: r.eid("eid")?,
                path: r.path()?,
                key: r.var_str("key")?,
            },
            mt::NOTIFY_LIST_ATTR_CHANGE_ON_CLIENT => ServerMsg::ListAttrChange {
                eid: r.eid("eid")?,
                path: r.path()?,
                index: r.u32("index")?,
                val: r.data("val")?,
            },
            mt::NOTIFY_LIST_ATTR_POP_ON_CLIENT => ServerMsg::ListAttrPop {
                eid: r.eid("eid")?,
                path: r.path()?,
            },
            mt::NOTIFY_LIST_ATTR_APPEND_ON_CLIENT => ServerMsg::ListAttrAppend {
                eid: r.eid("eid")?,
                path: r.path()?,
                val: r.data("val")?,
            },
            mt::CALL_ENTITY_METHOD_ON_CLIENT => ServerMsg::CallMethod {
                eid: r.eid("eid")?,
                method: r.var_str("method")?,
                args: r.args()?,
            },
            mt::NOTIFY_MAP_ATTR_CLEAR_ON_CLIENT => ServerMsg::MapAttrClear {
                eid: r.eid("eid")?,
                path: r.path()?,
            },
            mt::CALL_FILTERED_CLIENTS => ServerMsg::CallFiltered {
                op: r.u8("op")?,
                key: r.var_str("key")?,
                val: r.var_str("val")?,
                method: r.var_str("method")?,
                args: r.args()?,
            },
            mt::SYNC_POSITION_YAW_ON_CLIENTS => {
                if !r.left().is_multiple_of(32) {
                    return Err(DecodeError::PartialSyncRecord { bytes: r.left() });
                }
                let mut recs = Vec::with_capacity(r.left() / 32);
                while r.left() > 0 {
                    recs.push((r.eid("eid")?, r.pos_yaw()?));
                }
                ServerMsg::SyncPositions(recs)
            }
            other => return Err(DecodeError::UnexpectedType { msgtype: other }),
        };
        if r.left() != 0 {
            return Err(DecodeError::Trailing {
                msgtype: t,
                bytes: r.left(),
            });
        }
        Ok(msg)
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding: what a bot sends, and the msgpack of its arguments.
// ---------------------------------------------------------------------------------------------

/// Appends `v` as msgpack the way GoWorld's Go client encodes Go values: integers as int64
/// `0xd3` (a u64 above `i64::MAX` as `0xcf`), floats as float64 `0xcb`, strings and
/// containers with the smallest header that fits.
pub fn pack(v: &Value, out: &mut Vec<u8>) {
    fn header(out: &mut Vec<u8>, n: usize, fix: Option<(u8, usize)>, tags: [u8; 3]) {
        match fix {
            Some((base, max)) if n <= max => out.push(base | n as u8),
            _ if n <= 0xff && tags[0] != 0 => out.extend_from_slice(&[tags[0], n as u8]),
            _ if n <= 0xffff => {
                out.push(tags[1]);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            _ => {
                out.push(tags[2]);
                out.extend_from_slice(&(n as u32).to_be_bytes());
            }
        }
    }
    match v {
        Value::Nil => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Int(i) => {
            out.push(0xd3);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Value::UInt(u) => match i64::try_from(*u) {
            Ok(i) => pack(&Value::Int(i), out),
            Err(_) => {
                out.push(0xcf);
                out.extend_from_slice(&u.to_be_bytes());
            }
        },
        Value::Float(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_be_bytes());
        }
        Value::Str(s) => {
            header(out, s.len(), Some((0xa0, 31)), [0xd9, 0xda, 0xdb]);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bin(b) => {
            header(out, b.len(), None, [0xc4, 0xc5, 0xc6]);
            out.extend_from_slice(b);
        }
        Value::Array(items) => {
            header(out, items.len(), Some((0x90, 15)), [0, 0xdc, 0xdd]);
            for it in items {
                pack(it, out);
            }
        }
        Value::Map(pairs) => {
            header(out, pairs.len(), Some((0x80, 15)), [0, 0xde, 0xdf]);
            for (k, v) in pairs {
                pack(k, out);
                pack(v, out);
            }
        }
        Value::Ext(ty, data) => {
            header(out, data.len(), None, [0xc7, 0xc8, 0xc9]);
            out.push(*ty as u8);
            out.extend_from_slice(data);
        }
    }
}

/// 11 MT_CALL_ENTITY_METHOD_FROM_CLIENT: eid, VarStr method, Args (u16 count, each
/// u32 length + msgpack).
pub fn call_entity_method(eid: &Eid, method: &str, args: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + 16 + 4 + method.len() + 2 + args.len() * 16);
    out.extend_from_slice(&mt::CALL_ENTITY_METHOD_FROM_CLIENT.to_le_bytes());
    out.extend_from_slice(&eid.0);
    out.extend_from_slice(&(method.len() as u32).to_le_bytes());
    out.extend_from_slice(method.as_bytes());
    out.extend_from_slice(&(args.len() as u16).to_le_bytes());
    let mut buf = Vec::new();
    for a in args {
        buf.clear();
        pack(a, &mut buf);
        out.extend_from_slice(&(buf.len() as u32).to_le_bytes());
        out.extend_from_slice(&buf);
    }
    out
}

/// 12 MT_SYNC_POSITION_YAW_FROM_CLIENT: eid, f32 x, y, z, yaw (34 bytes).
pub fn sync_position_yaw(eid: &Eid, p: PosYaw) -> Vec<u8> {
    let mut out = Vec::with_capacity(34);
    out.extend_from_slice(&mt::SYNC_POSITION_YAW_FROM_CLIENT.to_le_bytes());
    out.extend_from_slice(&eid.0);
    for f in [p.x, p.y, p.z, p.yaw] {
        out.extend_from_slice(&f.to_le_bytes());
    }
    out
}

/// 2001 MT_HEARTBEAT_FROM_CLIENT (no body).
pub fn heartbeat() -> Vec<u8> {
    mt::HEARTBEAT_FROM_CLIENT.to_le_bytes().to_vec()
}

/// Bytes of a hex string (whitespace ignored), for tests.
#[cfg(test)]
pub(crate) fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(v: Value) -> Vec<u8> {
        let mut out = Vec::new();
        pack(&v, &mut out);
        out
    }

    #[test]
    fn pack_writes_go_forms() {
        assert_eq!(packed(Value::Int(2)), unhex("d30000000000000002"));
        assert_eq!(packed(Value::Int(-1)), unhex("d3ffffffffffffffff"));
        assert_eq!(packed("123456".into()), unhex("a6313233343536"));
        assert_eq!(packed(Value::Float(2.3)), unhex("cb4002666666666666"));
        let long = "this is a message in world channel";
        assert_eq!(&packed(long.into())[..2], &[0xd9, 34]);
        assert_eq!(packed(Value::Array(vec![])), vec![0x90]);
        assert_eq!(packed(Value::Map(vec![])), vec![0x80]);
        assert_eq!(packed(Value::Nil), vec![0xc0]);
        assert_eq!(packed(Value::Bool(true)), vec![0xc3]);
        let s300 = "x".repeat(300);
        assert_eq!(&packed(s300.as_str().into())[..3], &[0xda, 0x01, 0x2c]);
        let arr: Vec<Value> = (0..16).map(Value::Int).collect();
        assert_eq!(&packed(Value::Array(arr))[..3], &[0xdc, 0, 16]);
        // Everything packed decodes back to itself with the generic decoder.
        let v = Value::Map(vec![
            (
                "a".into(),
                Value::Array(vec![Value::Int(1), Value::Bool(false)]),
            ),
            ("b".into(), Value::Bin(vec![1, 2, 3])),
            ("c".into(), Value::Ext(5, vec![9; 20])),
        ]);
        assert_eq!(msgpack::decode_exact(&packed(v.clone())).unwrap(), v);
    }

    #[test]
    fn paths_accept_nil_and_reject_non_int64_indices() {
        assert_eq!(decode_path(&[0xc0]).unwrap(), vec![]);
        let p = unhex(
            "95d30000000000000000d30000000000000001a46b657932a46b657931ab636f6d706c657841747472",
        );
        assert_eq!(
            decode_path(&p).unwrap(),
            vec![
                PathKey::Index(0),
                PathKey::Index(1),
                PathKey::Key("key2".into()),
                PathKey::Key("key1".into()),
                PathKey::Key("complexAttr".into()),
            ]
        );
        assert!(decode_path(&[0x91, 0x01])
            .unwrap_err()
            .to_string()
            .contains("0xd3"));
        assert!(decode_path(&[0x91, 0xc3]).is_err());
        assert!(decode_path(&[0x92, 0xa1, b'a']).is_err());
        assert!(decode_path(&[0xc0, 0xc0]).is_err());
        assert!(decode_path(&[]).is_err());
        assert!(decode_path(&[0x80]).is_err());
    }

    #[test]
    fn decodes_captured_frames_of_every_kind() {
        // goworld-frames.md §3, 1006 (capture B), without the u32 length prefix.
        let f = unhex(
            "ee0301006177564230326873676a4e65414141466177564230326873676a4e50414141450f000000\
             91ad746573744c6973744669656c640000000009000000d30000000000000001",
        );
        assert_eq!(
            ServerMsg::decode(&f).unwrap(),
            ServerMsg::ListAttrChange {
                eid: Eid::from_str_bytes("awVB02hsgjNPAAAE").unwrap(),
                path: vec![PathKey::Key("testListField".into())],
                index: 0,
                val: Value::Int(1),
            }
        );
        // 1007.
        let f = unhex(
            "ef0301006177564258326873676a482e4141414a617756424e576873676a48324141414d0f000000\
             91ad746573744c6973744669656c64",
        );
        assert!(matches!(
            ServerMsg::decode(&f).unwrap(),
            ServerMsg::ListAttrPop { path, .. } if path == vec![PathKey::Key("testListField".into())]
        ));
        // 1501 OnSay.
        let f = unhex(
            "dd05000000000000000000050000004f6e536179040011000000b0617756424e576873676a483241\
             41414e07000000a6e697a0e5908d06000000a5776f726c6424000000d92274686973206973206120\
             6d65737361676520696e20776f726c64206368616e6e656c",
        );
        match ServerMsg::decode(&f).unwrap() {
            ServerMsg::CallFiltered {
                op,
                key,
                method,
                args,
                ..
            } => {
                assert_eq!((op, key.as_str(), method.as_str()), (0, "", "OnSay"));
                assert_eq!(args.len(), 4);
                assert_eq!(args[1].as_str(), Some("无名"));
                assert_eq!(args[3].as_str(), Some("this is a message in world channel"));
            }
            other => panic!("{other:?}"),
        }
        // 1003 of a space.
        let f = unhex(
            "eb030100617756424e576873676a482e41414146090000005f5f73706163655f5f617756424e5768\
             73676a483241414150",
        );
        assert_eq!(
            ServerMsg::decode(&f).unwrap(),
            ServerMsg::DestroyEntity {
                type_name: "__space__".into(),
                eid: Eid::from_str_bytes("awVBNWhsgjH2AAAP").unwrap(),
            }
        );
    }

    #[test]
    fn rejects_truncation_trailing_bytes_and_foreign_types() {
        // 1012 from the capture, then cut and padded.
        let f = unhex(
            "f4030100617756424e576873676a482e41414144617756424e576873676a48324141414e0d000000\
             91ab636f6d706c657841747472",
        );
        assert!(ServerMsg::decode(&f).is_ok());
        for cut in 0..f.len() {
            assert!(ServerMsg::decode(&f[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = f.clone();
        long.push(0);
        assert!(ServerMsg::decode(&long)
            .unwrap_err()
            .to_string()
            .contains("1 bytes after"));
        // 1010 and 1011 are the gate's; a client must never see them.
        assert!(ServerMsg::decode(&unhex("f3030100617756424d6d6873676a482e41414142")).is_err());
        assert!(ServerMsg::decode(&unhex("0b00")).is_err());
        // 1502 records must be whole.
        let mut sync = vec![0xde, 0x05];
        sync.extend_from_slice(&[0u8; 33]);
        assert!(ServerMsg::decode(&sync).is_err());
        sync.truncate(2 + 32);
        assert!(matches!(
            ServerMsg::decode(&sync).unwrap(),
            ServerMsg::SyncPositions(v) if v.len() == 1
        ));
    }

    #[test]
    fn errors_are_typed() {
        use DecodeError as E;
        // Paths.
        assert_eq!(decode_path(&[]), Err(E::PathEmpty));
        assert_eq!(decode_path(&[0x80]), Err(E::PathNotArray { tag: 0x80 }));
        assert_eq!(
            decode_path(&[0x92, 0xa1, b'a', 0x01]),
            Err(E::PathIndexNotInt64 {
                index: 1,
                tag: 0x01
            })
        );
        assert_eq!(
            decode_path(&[0x91, 0xc3]),
            Err(E::PathStepNotKey {
                index: 0,
                found: Value::Bool(true)
            })
        );
        let truncated = |index| {
            Err(E::PathStep {
                index,
                source: msgpack::Error::Truncated,
            })
        };
        assert_eq!(decode_path(&[0x92, 0xa1, b'a']), truncated(1));
        assert_eq!(decode_path(&[0x91, 0xd3, 0, 0]), truncated(0));
        assert_eq!(decode_path(&[0x91, 0xa2, b'a']), truncated(0));
        assert_eq!(
            decode_path(&[0xc0, 0xc0]),
            Err(E::PathTrailing { bytes: 1 })
        );
        // Messages: 1003 DESTROY_ENTITY_ON_CLIENT is u16 type, 18 bytes of redirect, VarStr
        // typeName, eid.
        let mut m = unhex("eb03");
        m.extend_from_slice(&[0; 18]);
        m.extend_from_slice(&unhex("02000000 4142"));
        assert_eq!(
            ServerMsg::decode(&m),
            Err(E::Truncated {
                field: "eid",
                needed: 16,
                left: 0
            })
        );
        m.extend_from_slice(b"0123456789abcdef");
        assert!(ServerMsg::decode(&m).is_ok());
        m.extend_from_slice(&[7, 7]);
        assert_eq!(
            ServerMsg::decode(&m),
            Err(E::Trailing {
                msgtype: mt::DESTROY_ENTITY_ON_CLIENT,
                bytes: 2
            })
        );
        m[2 + 18 + 4] = 0xff;
        assert_eq!(ServerMsg::decode(&m), Err(E::NotUtf8 { field: "typeName" }));
        // 1009 with a reserved msgpack byte as its only argument.
        let mut c = unhex("f103");
        c.extend_from_slice(&[0; 18 + 16]);
        c.extend_from_slice(&unhex("01000000 41 0100 01000000 c1"));
        assert_eq!(
            ServerMsg::decode(&c),
            Err(E::BadArg {
                index: 0,
                source: msgpack::Error::Reserved(0xc1)
            })
        );
        assert_eq!(
            ServerMsg::decode(&unhex("0b00")),
            Err(E::UnexpectedType { msgtype: 11 })
        );
        let mut sync = vec![0xde, 0x05];
        sync.extend_from_slice(&[0u8; 40]);
        assert_eq!(
            ServerMsg::decode(&sync),
            Err(E::PartialSyncRecord { bytes: 40 })
        );
        // The msgpack error is the source, and is in the message.
        use std::error::Error as _;
        let e = ServerMsg::decode(&c).unwrap_err();
        assert_eq!(e.to_string(), "arg0: reserved msgpack byte 0xc1");
        assert!(e.source().is_some());
    }

    #[test]
    fn encodes_sync_and_heartbeat_like_the_capture() {
        // goworld-frames.md §4 frame 8 (client→gate 12), without the length prefix.
        let eid = Eid::from_str_bytes("awVBNWhsgjH2AAAN").unwrap();
        let p = sync_position_yaw(
            &eid,
            PosYaw {
                x: f32::from_le_bytes(unhex("f3ff3dc3").try_into().unwrap()),
                y: 0.0,
                z: f32::from_le_bytes(unhex("150704c2").try_into().unwrap()),
                yaw: f32::from_le_bytes(unhex("9eaa1a3f").try_into().unwrap()),
            },
        );
        assert_eq!(
            p,
            unhex("0c00617756424e576873676a48324141414ef3ff3dc300000000150704c29eaa1a3f")
        );
        assert_eq!(heartbeat(), unhex("d107"));
        // EnterSpace(2) as the Go client sends it: the int argument is int64 0xd3.
        let c = call_entity_method(&eid, "EnterSpace", &[Value::Int(2)]);
        assert!(c.ends_with(&unhex("0100 09000000 d30000000000000002")));
    }
}
