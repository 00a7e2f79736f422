//! Byte layouts of every message (reference §2.3–2.7): encoding into a caller's buffer and
//! strict decoding of one payload.
//!
//! This module owns the field order and primitive encodings of [`Msg`], [`ClientMsg`] and
//! [`ClientBound`]; the enum shapes, type numbers and routing ranges belong to `proto/mod.rs`
//! and are not redefined here. Encoders only append to `out`. Decoders consume every byte,
//! bounds-check every length before slicing or allocating, never panic, and report the message
//! type, the field and the offset of the first problem. No sockets, no clock.
//!
//! Raw msgpack (`Data` fields and RPC args) is carried verbatim, never re-encoded, so what
//! decodes re-encodes to the same bytes (except a bool byte other than 0/1, which reads as true
//! and is written back as 1).

use std::fmt;

use byteorder::{ByteOrder, LittleEndian, WriteBytesExt};

use super::{mt, Args, ClientBound, ClientMsg, FilterOp, Msg, SyncRecord};
use super::{CLIENT_HEADER_LEN, SYNC_CLIENT_RECORD_LEN, SYNC_RECORD_LEN};
use crate::id::{ClientId, EntityId, ID_LEN};

#[path = "golden.rs"]
pub mod golden;

// ---------------------------------------------------------------------------------------------
// Names and errors
// ---------------------------------------------------------------------------------------------

/// GoWorld's constant name of message type `t` (`"MT_SET_GAME_ID"`), or `"unknown"`.
pub fn msg_name(t: u16) -> &'static str {
    match t {
        mt::INVALID => "MT_INVALID",
        mt::SET_GAME_ID => "MT_SET_GAME_ID",
        mt::SET_GATE_ID => "MT_SET_GATE_ID",
        mt::NOTIFY_CREATE_ENTITY => "MT_NOTIFY_CREATE_ENTITY",
        mt::NOTIFY_DESTROY_ENTITY => "MT_NOTIFY_DESTROY_ENTITY",
        mt::KVREG_REGISTER => "MT_KVREG_REGISTER",
        mt::CALL_ENTITY_METHOD => "MT_CALL_ENTITY_METHOD",
        mt::CREATE_ENTITY_SOMEWHERE => "MT_CREATE_ENTITY_SOMEWHERE",
        mt::LOAD_ENTITY_SOMEWHERE => "MT_LOAD_ENTITY_SOMEWHERE",
        mt::NOTIFY_CLIENT_CONNECTED => "MT_NOTIFY_CLIENT_CONNECTED",
        mt::NOTIFY_CLIENT_DISCONNECTED => "MT_NOTIFY_CLIENT_DISCONNECTED",
        mt::CALL_ENTITY_METHOD_FROM_CLIENT => "MT_CALL_ENTITY_METHOD_FROM_CLIENT",
        mt::SYNC_POSITION_YAW_FROM_CLIENT => "MT_SYNC_POSITION_YAW_FROM_CLIENT",
        mt::NOTIFY_GATE_DISCONNECTED => "MT_NOTIFY_GATE_DISCONNECTED",
        mt::START_FREEZE_GAME => "MT_START_FREEZE_GAME",
        mt::START_FREEZE_GAME_ACK => "MT_START_FREEZE_GAME_ACK",
        mt::MIGRATE_REQUEST => "MT_MIGRATE_REQUEST",
        mt::REAL_MIGRATE => "MT_REAL_MIGRATE",
        mt::QUERY_SPACE_GAMEID_FOR_MIGRATE => "MT_QUERY_SPACE_GAMEID_FOR_MIGRATE",
        mt::CANCEL_MIGRATE => "MT_CANCEL_MIGRATE",
        mt::CALL_NIL_SPACES => "MT_CALL_NIL_SPACES",
        mt::SET_GAME_ID_ACK => "MT_SET_GAME_ID_ACK",
        mt::NOTIFY_GAME_CONNECTED => "MT_NOTIFY_GAME_CONNECTED",
        mt::NOTIFY_GAME_DISCONNECTED => "MT_NOTIFY_GAME_DISCONNECTED",
        mt::NOTIFY_DEPLOYMENT_READY => "MT_NOTIFY_DEPLOYMENT_READY",
        mt::GAME_LBC_INFO => "MT_GAME_LBC_INFO",
        mt::NOTIFY_GATE_CONNECTED => "MT_NOTIFY_GATE_CONNECTED",
        mt::MIGRATE_ARRIVED => "MT_MIGRATE_ARRIVED",
        mt::FREEZE_CANCELLED => "MT_FREEZE_CANCELLED",
        mt::GATE_SERVICE_START => "MT_GATE_SERVICE_MSG_TYPE_START",
        mt::REDIRECT_TO_GATEPROXY_START => "MT_REDIRECT_TO_GATEPROXY_MSG_TYPE_START",
        mt::CREATE_ENTITY_ON_CLIENT => "MT_CREATE_ENTITY_ON_CLIENT",
        mt::DESTROY_ENTITY_ON_CLIENT => "MT_DESTROY_ENTITY_ON_CLIENT",
        mt::NOTIFY_MAP_ATTR_CHANGE_ON_CLIENT => "MT_NOTIFY_MAP_ATTR_CHANGE_ON_CLIENT",
        mt::NOTIFY_MAP_ATTR_DEL_ON_CLIENT => "MT_NOTIFY_MAP_ATTR_DEL_ON_CLIENT",
        mt::NOTIFY_LIST_ATTR_CHANGE_ON_CLIENT => "MT_NOTIFY_LIST_ATTR_CHANGE_ON_CLIENT",
        mt::NOTIFY_LIST_ATTR_POP_ON_CLIENT => "MT_NOTIFY_LIST_ATTR_POP_ON_CLIENT",
        mt::NOTIFY_LIST_ATTR_APPEND_ON_CLIENT => "MT_NOTIFY_LIST_ATTR_APPEND_ON_CLIENT",
        mt::CALL_ENTITY_METHOD_ON_CLIENT => "MT_CALL_ENTITY_METHOD_ON_CLIENT",
        mt::SET_CLIENTPROXY_FILTER_PROP => "MT_SET_CLIENTPROXY_FILTER_PROP",
        mt::CLEAR_CLIENTPROXY_FILTER_PROPS => "MT_CLEAR_CLIENTPROXY_FILTER_PROPS",
        mt::KICK_CLIENT => "MT_KICK_CLIENT",
        mt::NOTIFY_MAP_ATTR_CLEAR_ON_CLIENT => "MT_NOTIFY_MAP_ATTR_CLEAR_ON_CLIENT",
        mt::REDIRECT_TO_GATEPROXY_STOP => "MT_REDIRECT_TO_GATEPROXY_MSG_TYPE_STOP",
        mt::CALL_FILTERED_CLIENTS => "MT_CALL_FILTERED_CLIENTS",
        mt::SYNC_POSITION_YAW_ON_CLIENTS => "MT_SYNC_POSITION_YAW_ON_CLIENTS",
        mt::CLIENT_OWNERS_GONE => "MT_CLIENT_OWNERS_GONE",
        mt::GATE_SERVICE_STOP => "MT_GATE_SERVICE_MSG_TYPE_STOP",
        mt::HEARTBEAT_FROM_CLIENT => "MT_HEARTBEAT_FROM_CLIENT",
        _ => "unknown",
    }
}

/// What is wrong with a payload (see [`DecodeError`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// The payload is shorter than its 2-byte message type.
    NoType { len: usize },
    /// Not a message type this side decodes.
    UnknownType,
    /// A valid type that a gate never sends to a client (for [`ClientBound::decode`]).
    NotClientBound,
    /// A fixed-size field runs past the end.
    Truncated {
        field: &'static str,
        need: usize,
        have: usize,
    },
    /// A u32 length prefix (`VarStr`/`VarBytes`/`Data`) points past the end.
    LengthPastEnd { field: &'static str, len: u32 },
    /// A count whose elements cannot fit in what is left (each needs `min_each` bytes).
    CountPastEnd {
        field: &'static str,
        count: u32,
        min_each: usize,
    },
    /// A string field that is not UTF-8.
    BadUtf8 { field: &'static str },
    /// A CALL_FILTERED_CLIENTS operator above 5.
    BadFilterOp(u8),
    /// Position records whose total length is not a multiple of the record size (or empty
    /// where at least one record is required).
    BadRecords { len: usize, record: usize },
    /// Bytes left after the last field.
    Trailing { count: usize },
}

/// Why a payload did not decode: the message type, the payload offset of the offending field
/// (0 is the first byte of the message type) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    msg_type: u16,
    offset: usize,
    kind: DecodeErrorKind,
}

impl DecodeError {
    /// The message type of the payload (0 if it had none).
    pub fn msg_type(&self) -> u16 {
        self.msg_type
    }

    /// Offset in the payload where the bad field starts.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// What is wrong.
    pub fn kind(&self) -> &DecodeErrorKind {
        &self.kind
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DecodeErrorKind as K;
        if let K::NoType { len } = self.kind {
            return write!(f, "payload of {len} bytes has no message type");
        }
        write!(f, "{}({}): ", msg_name(self.msg_type), self.msg_type)?;
        match &self.kind {
            K::NoType { .. } => Ok(()),
            K::UnknownType => f.write_str("unknown message type"),
            K::NotClientBound => f.write_str("not a message a gate sends to a client"),
            K::Truncated { field, need, have } => write!(
                f,
                "{field} needs {need} bytes, {have} left at offset {}",
                self.offset
            ),
            K::LengthPastEnd { field, len } => {
                write!(f, "{field} length {len} past the end at offset {}", self.offset)
            }
            K::CountPastEnd {
                field,
                count,
                min_each,
            } => write!(
                f,
                "{field} count {count} (at least {min_each} bytes each) past the end at offset {}",
                self.offset
            ),
            K::BadUtf8 { field } => write!(f, "{field} is not UTF-8 at offset {}", self.offset),
            K::BadFilterOp(op) => write!(f, "unknown filter op {op} at offset {}", self.offset),
            K::BadRecords { len, record } => write!(
                f,
                "{len} bytes of position records is not a non-zero multiple of {record} at offset {}",
                self.offset
            ),
            K::Trailing { count } => {
                write!(f, "{count} trailing bytes at offset {}", self.offset)
            }
        }
    }
}

impl std::error::Error for DecodeError {}

impl FilterOp {
    /// The operator with wire value `v` (0–5).
    pub fn from_u8(v: u8) -> Option<FilterOp> {
        Some(match v {
            0 => FilterOp::Eq,
            1 => FilterOp::Ne,
            2 => FilterOp::Gt,
            3 => FilterOp::Lt,
            4 => FilterOp::Gte,
            5 => FilterOp::Lte,
            _ => return None,
        })
    }
}

impl ClientMsg {
    /// The message type number (1002–1012) of this body.
    pub fn msg_type(&self) -> u16 {
        match self {
            ClientMsg::CreateEntityOnClient { .. } => mt::CREATE_ENTITY_ON_CLIENT,
            ClientMsg::DestroyEntityOnClient { .. } => mt::DESTROY_ENTITY_ON_CLIENT,
            ClientMsg::NotifyMapAttrChange { .. } => mt::NOTIFY_MAP_ATTR_CHANGE_ON_CLIENT,
            ClientMsg::NotifyMapAttrDel { .. } => mt::NOTIFY_MAP_ATTR_DEL_ON_CLIENT,
            ClientMsg::NotifyListAttrChange { .. } => mt::NOTIFY_LIST_ATTR_CHANGE_ON_CLIENT,
            ClientMsg::NotifyListAttrPop { .. } => mt::NOTIFY_LIST_ATTR_POP_ON_CLIENT,
            ClientMsg::NotifyListAttrAppend { .. } => mt::NOTIFY_LIST_ATTR_APPEND_ON_CLIENT,
            ClientMsg::CallEntityMethodOnClient { .. } => mt::CALL_ENTITY_METHOD_ON_CLIENT,
            ClientMsg::SetClientProxyFilterProp { .. } => mt::SET_CLIENTPROXY_FILTER_PROP,
            ClientMsg::ClearClientProxyFilterProps => mt::CLEAR_CLIENTPROXY_FILTER_PROPS,
            ClientMsg::KickClient { .. } => mt::KICK_CLIENT,
            ClientMsg::NotifyMapAttrClear { .. } => mt::NOTIFY_MAP_ATTR_CLEAR_ON_CLIENT,
        }
    }
}

impl ClientBound {
    /// The message type number of this message.
    pub fn msg_type(&self) -> u16 {
        match self {
            ClientBound::Entity { msg, .. } => msg.msg_type(),
            ClientBound::Filtered { .. } => mt::CALL_FILTERED_CLIENTS,
            ClientBound::Sync(_) => mt::SYNC_POSITION_YAW_ON_CLIENTS,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

// Writing into a `Vec` cannot fail: the `expect`s below never fire.

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.write_u16::<LittleEndian>(v).expect("Vec write");
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.write_u32::<LittleEndian>(v).expect("Vec write");
}

fn put_len32(out: &mut Vec<u8>, n: usize) {
    debug_assert!(u32::try_from(n).is_ok(), "length {n} does not fit u32");
    put_u32(out, n as u32);
}

fn put_bool(out: &mut Vec<u8>, v: bool) {
    out.push(u8::from(v));
}

fn put_f32(out: &mut Vec<u8>, v: f32) {
    out.write_f32::<LittleEndian>(v).expect("Vec write");
}

fn put_id(out: &mut Vec<u8>, id: &EntityId) {
    out.extend_from_slice(id.as_bytes());
}

/// `VarStr`, `VarBytes` and `Data`: u32 length + bytes.
fn put_var(out: &mut Vec<u8>, b: &[u8]) {
    put_len32(out, b.len());
    out.extend_from_slice(b);
}

fn put_args(out: &mut Vec<u8>, args: &Args) {
    debug_assert!(args.len() <= usize::from(u16::MAX), "more than 65535 args");
    put_u16(out, args.len() as u16);
    for a in args {
        put_var(out, a);
    }
}

/// Starts a SYNC_POSITION_YAW_ON_CLIENTS payload for gate `gate_id` in `out` (cleared), to
/// which a game appends records one by one with [`push_sync_on_clients`]: the same bytes as
/// encoding [`Msg::SyncPositionYawOnClients`], without building its record list first.
pub fn start_sync_on_clients(out: &mut Vec<u8>, gate_id: u16) {
    out.clear();
    put_u16(out, mt::SYNC_POSITION_YAW_ON_CLIENTS);
    put_u16(out, gate_id);
}

/// Appends one `[clientid][record]` entry to a payload begun by [`start_sync_on_clients`].
pub fn push_sync_on_clients(out: &mut Vec<u8>, client: &ClientId, r: &SyncRecord) {
    put_id(out, client);
    put_record(out, r);
}

fn put_record(out: &mut Vec<u8>, r: &SyncRecord) {
    put_id(out, &r.eid);
    put_f32(out, r.x);
    put_f32(out, r.y);
    put_f32(out, r.z);
    put_f32(out, r.yaw);
}

/// The message type number of `m`.
pub(super) fn msg_type_of(m: &Msg) -> u16 {
    match m {
        Msg::SetGameId { .. } => mt::SET_GAME_ID,
        Msg::SetGateId { .. } => mt::SET_GATE_ID,
        Msg::NotifyCreateEntity { .. } => mt::NOTIFY_CREATE_ENTITY,
        Msg::NotifyDestroyEntity { .. } => mt::NOTIFY_DESTROY_ENTITY,
        Msg::KvregRegister { .. } => mt::KVREG_REGISTER,
        Msg::CallEntityMethod { .. } => mt::CALL_ENTITY_METHOD,
        Msg::CreateEntitySomewhere { .. } => mt::CREATE_ENTITY_SOMEWHERE,
        Msg::LoadEntitySomewhere { .. } => mt::LOAD_ENTITY_SOMEWHERE,
        Msg::NotifyClientConnected { .. } => mt::NOTIFY_CLIENT_CONNECTED,
        Msg::NotifyClientDisconnected { .. } => mt::NOTIFY_CLIENT_DISCONNECTED,
        Msg::CallEntityMethodFromClient { .. } => mt::CALL_ENTITY_METHOD_FROM_CLIENT,
        Msg::SyncPositionYawFromClient { .. } => mt::SYNC_POSITION_YAW_FROM_CLIENT,
        Msg::NotifyGateDisconnected { .. } => mt::NOTIFY_GATE_DISCONNECTED,
        Msg::NotifyGateConnected { .. } => mt::NOTIFY_GATE_CONNECTED,
        Msg::MigrateArrived { .. } => mt::MIGRATE_ARRIVED,
        Msg::StartFreezeGame => mt::START_FREEZE_GAME,
        Msg::FreezeCancelled => mt::FREEZE_CANCELLED,
        Msg::StartFreezeGameAck { .. } => mt::START_FREEZE_GAME_ACK,
        Msg::MigrateRequest { .. } => mt::MIGRATE_REQUEST,
        Msg::RealMigrate { .. } => mt::REAL_MIGRATE,
        Msg::QuerySpaceGameIdForMigrate { .. } => mt::QUERY_SPACE_GAMEID_FOR_MIGRATE,
        Msg::CancelMigrate { .. } => mt::CANCEL_MIGRATE,
        Msg::CallNilSpaces { .. } => mt::CALL_NIL_SPACES,
        Msg::SetGameIdAck { .. } => mt::SET_GAME_ID_ACK,
        Msg::NotifyGameConnected { .. } => mt::NOTIFY_GAME_CONNECTED,
        Msg::NotifyGameDisconnected { .. } => mt::NOTIFY_GAME_DISCONNECTED,
        Msg::NotifyDeploymentReady => mt::NOTIFY_DEPLOYMENT_READY,
        Msg::GameLbcInfo { .. } => mt::GAME_LBC_INFO,
        Msg::ToClient { msg, .. } => msg.msg_type(),
        Msg::CallFilteredClients { .. } => mt::CALL_FILTERED_CLIENTS,
        Msg::SyncPositionYawOnClients { .. } => mt::SYNC_POSITION_YAW_ON_CLIENTS,
        Msg::ClientOwnersGone { .. } => mt::CLIENT_OWNERS_GONE,
        Msg::HeartbeatFromClient => mt::HEARTBEAT_FROM_CLIENT,
    }
}

/// Appends the payload of `m` (type and fields) to `out`.
pub(super) fn encode_msg(m: &Msg, out: &mut Vec<u8>) {
    put_u16(out, msg_type_of(m));
    match m {
        Msg::SetGameId {
            game_id,
            is_reconnect,
            is_restore,
            is_ban_boot_entity,
            entities,
            version,
        } => {
            put_u16(out, *game_id);
            put_bool(out, *is_reconnect);
            put_bool(out, *is_restore);
            put_bool(out, *is_ban_boot_entity);
            put_len32(out, entities.len());
            for e in entities {
                put_id(out, e);
            }
            if let Some(v) = version {
                put_u16(out, *v);
            }
        }
        Msg::SetGateId { gate_id, version } => {
            put_u16(out, *gate_id);
            if let Some(v) = version {
                put_u16(out, *v);
            }
        }
        Msg::NotifyCreateEntity { eid }
        | Msg::NotifyDestroyEntity { eid }
        | Msg::CancelMigrate { eid }
        | Msg::MigrateArrived { eid } => put_id(out, eid),
        Msg::KvregRegister { key, val, force } => {
            put_var(out, key.as_bytes());
            put_var(out, val.as_bytes());
            put_bool(out, *force);
        }
        Msg::CallEntityMethod { eid, method, args } => {
            put_id(out, eid);
            put_var(out, method.as_bytes());
            put_args(out, args);
        }
        Msg::CreateEntitySomewhere {
            game_id,
            eid,
            type_name,
            attrs,
        } => {
            put_u16(out, *game_id);
            put_id(out, eid);
            put_var(out, type_name.as_bytes());
            put_var(out, attrs);
        }
        Msg::LoadEntitySomewhere {
            game_id,
            eid,
            type_name,
        } => {
            put_u16(out, *game_id);
            put_id(out, eid);
            put_var(out, type_name.as_bytes());
        }
        Msg::NotifyClientConnected {
            client_id,
            boot_eid,
            gate_id,
        } => {
            put_id(out, client_id);
            put_id(out, boot_eid);
            if let Some(g) = gate_id {
                put_u16(out, *g);
            }
        }
        Msg::NotifyClientDisconnected {
            owner_eid,
            client_id,
        } => {
            put_id(out, owner_eid);
            put_id(out, client_id);
        }
        Msg::CallEntityMethodFromClient {
            eid,
            method,
            args,
            client_id,
        } => {
            put_id(out, eid);
            put_var(out, method.as_bytes());
            put_args(out, args);
            if let Some(c) = client_id {
                put_id(out, c);
            }
        }
        Msg::SyncPositionYawFromClient { records } => {
            out.reserve(records.len() * SYNC_RECORD_LEN);
            for r in records {
                put_record(out, r);
            }
        }
        Msg::NotifyGateDisconnected { gate_id } | Msg::NotifyGateConnected { gate_id } => {
            put_u16(out, *gate_id)
        }
        Msg::StartFreezeGame
        | Msg::FreezeCancelled
        | Msg::NotifyDeploymentReady
        | Msg::HeartbeatFromClient => {}
        Msg::StartFreezeGameAck { disp_id } => put_u16(out, *disp_id),
        Msg::MigrateRequest {
            eid,
            space_id,
            space_game_id,
        } => {
            put_id(out, eid);
            put_id(out, space_id);
            put_u16(out, *space_game_id);
        }
        Msg::RealMigrate {
            eid,
            target_game,
            data,
        } => {
            put_id(out, eid);
            put_u16(out, *target_game);
            put_var(out, data);
        }
        Msg::QuerySpaceGameIdForMigrate {
            space_id,
            eid,
            game_id,
        } => {
            put_id(out, space_id);
            put_id(out, eid);
            if let Some(g) = game_id {
                put_u16(out, *g);
            }
        }
        Msg::CallNilSpaces {
            except_game_id,
            method,
            args,
        } => {
            put_u16(out, *except_game_id);
            put_var(out, method.as_bytes());
            put_args(out, args);
        }
        Msg::SetGameIdAck {
            disp_id,
            deployment_ready,
            games,
            rejected,
            kvreg,
            declared_dead,
        } => {
            put_u16(out, *disp_id);
            put_bool(out, *deployment_ready);
            debug_assert!(games.len() <= usize::from(u16::MAX), "too many games");
            put_u16(out, games.len() as u16);
            for g in games {
                put_u16(out, *g);
            }
            put_len32(out, rejected.len());
            for e in rejected {
                put_id(out, e);
            }
            put_len32(out, kvreg.len());
            for (k, v) in kvreg {
                put_var(out, k.as_bytes());
                put_var(out, v.as_bytes());
            }
            if *declared_dead {
                put_bool(out, true);
            }
        }
        Msg::NotifyGameConnected { game_id } | Msg::NotifyGameDisconnected { game_id } => {
            put_u16(out, *game_id)
        }
        Msg::GameLbcInfo { data } => put_var(out, data),
        Msg::ToClient {
            gate_id,
            client_id,
            msg,
        } => {
            put_u16(out, *gate_id);
            put_id(out, client_id);
            encode_client_body(msg, out);
        }
        Msg::CallFilteredClients {
            op,
            key,
            val,
            method,
            args,
        } => encode_filtered(*op, key, val, method, args, out),
        Msg::SyncPositionYawOnClients { gate_id, records } => {
            put_u16(out, *gate_id);
            out.reserve(records.len() * SYNC_CLIENT_RECORD_LEN);
            for (c, r) in records {
                put_id(out, c);
                put_record(out, r);
            }
        }
        Msg::ClientOwnersGone { game_id, owners } => {
            put_u16(out, *game_id);
            put_len32(out, owners.len());
            for e in owners {
                put_id(out, e);
            }
        }
    }
}

fn encode_filtered(
    op: FilterOp,
    key: &str,
    val: &str,
    method: &str,
    args: &Args,
    out: &mut Vec<u8>,
) {
    out.push(op as u8);
    put_var(out, key.as_bytes());
    put_var(out, val.as_bytes());
    put_var(out, method.as_bytes());
    put_args(out, args);
}

/// The fields of a 1002–1012 body (after `[gateid][clientid]`).
fn encode_client_body(m: &ClientMsg, out: &mut Vec<u8>) {
    match m {
        ClientMsg::CreateEntityOnClient {
            is_player,
            eid,
            type_name,
            x,
            y,
            z,
            yaw,
            client_data,
        } => {
            put_bool(out, *is_player);
            put_id(out, eid);
            put_var(out, type_name.as_bytes());
            put_f32(out, *x);
            put_f32(out, *y);
            put_f32(out, *z);
            put_f32(out, *yaw);
            put_var(out, client_data);
        }
        ClientMsg::DestroyEntityOnClient { type_name, eid } => {
            put_var(out, type_name.as_bytes());
            put_id(out, eid);
        }
        ClientMsg::NotifyMapAttrChange {
            eid,
            path,
            key,
            val,
        } => {
            put_id(out, eid);
            put_var(out, path);
            put_var(out, key.as_bytes());
            put_var(out, val);
        }
        ClientMsg::NotifyMapAttrDel { eid, path, key } => {
            put_id(out, eid);
            put_var(out, path);
            put_var(out, key.as_bytes());
        }
        ClientMsg::NotifyListAttrChange {
            eid,
            path,
            index,
            val,
        } => {
            put_id(out, eid);
            put_var(out, path);
            put_u32(out, *index);
            put_var(out, val);
        }
        ClientMsg::NotifyListAttrPop { eid, path }
        | ClientMsg::NotifyMapAttrClear { eid, path } => {
            put_id(out, eid);
            put_var(out, path);
        }
        ClientMsg::NotifyListAttrAppend { eid, path, val } => {
            put_id(out, eid);
            put_var(out, path);
            put_var(out, val);
        }
        ClientMsg::CallEntityMethodOnClient { eid, method, args } => {
            put_id(out, eid);
            put_var(out, method.as_bytes());
            put_args(out, args);
        }
        ClientMsg::SetClientProxyFilterProp { key, val } => {
            put_var(out, key.as_bytes());
            put_var(out, val.as_bytes());
        }
        ClientMsg::ClearClientProxyFilterProps => {}
        ClientMsg::KickClient { reason } => put_var(out, reason.as_bytes()),
    }
}

/// Appends `m` exactly as a gate sends it to a client.
pub(super) fn encode_client_bound(m: &ClientBound, out: &mut Vec<u8>) {
    put_u16(out, m.msg_type());
    match m {
        ClientBound::Entity {
            gate_id,
            client_id,
            msg,
        } => {
            put_u16(out, *gate_id);
            put_id(out, client_id);
            encode_client_body(msg, out);
        }
        ClientBound::Filtered {
            op,
            key,
            val,
            method,
            args,
        } => encode_filtered(*op, key, val, method, args, out),
        ClientBound::Sync(records) => {
            out.reserve(records.len() * SYNC_RECORD_LEN);
            for r in records {
                put_record(out, r);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

/// A cursor over one payload that knows its message type for error reports.
struct Rd<'a> {
    b: &'a [u8],
    pos: usize,
    t: u16,
}

type Res<T> = Result<T, DecodeError>;

impl<'a> Rd<'a> {
    /// Reads the message type; the cursor then stands on the first field.
    fn new(b: &'a [u8]) -> Res<Rd<'a>> {
        match super::peek_type(b) {
            Some(t) => Ok(Rd {
                b,
                pos: super::peek::TYPE_LEN,
                t,
            }),
            None => Err(DecodeError {
                msg_type: 0,
                offset: 0,
                kind: DecodeErrorKind::NoType { len: b.len() },
            }),
        }
    }

    fn err_at(&self, offset: usize, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            msg_type: self.t,
            offset,
            kind,
        }
    }

    fn rem(&self) -> usize {
        self.b.len() - self.pos
    }

    fn take(&mut self, n: usize, field: &'static str) -> Res<&'a [u8]> {
        if n > self.rem() {
            let have = self.rem();
            return Err(self.err_at(
                self.pos,
                DecodeErrorKind::Truncated {
                    field,
                    need: n,
                    have,
                },
            ));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn arr<const N: usize>(&mut self, field: &'static str) -> Res<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }

    fn u8(&mut self, field: &'static str) -> Res<u8> {
        Ok(self.arr::<1>(field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Res<u16> {
        Ok(LittleEndian::read_u16(self.take(2, field)?))
    }

    fn u32(&mut self, field: &'static str) -> Res<u32> {
        Ok(LittleEndian::read_u32(self.take(4, field)?))
    }

    fn bool(&mut self, field: &'static str) -> Res<bool> {
        Ok(self.u8(field)? != 0)
    }

    fn f32(&mut self, field: &'static str) -> Res<f32> {
        Ok(LittleEndian::read_f32(self.take(4, field)?))
    }

    fn id(&mut self, field: &'static str) -> Res<EntityId> {
        Ok(EntityId(self.arr::<ID_LEN>(field)?))
    }

    /// `VarBytes`: u32 length + bytes, the length checked against what is left.
    fn var(&mut self, field: &'static str) -> Res<&'a [u8]> {
        let start = self.pos;
        let len = self.u32(field)?;
        if len as usize > self.rem() {
            return Err(self.err_at(start, DecodeErrorKind::LengthPastEnd { field, len }));
        }
        self.take(len as usize, field)
    }

    /// `VarStr`, which must be UTF-8.
    fn var_str(&mut self, field: &'static str) -> Res<String> {
        let start = self.pos + 4;
        let b = self.var(field)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(self.err_at(start, DecodeErrorKind::BadUtf8 { field })),
        }
    }

    /// `Data`: raw msgpack bytes, kept verbatim.
    fn data(&mut self, field: &'static str) -> Res<Vec<u8>> {
        Ok(self.var(field)?.to_vec())
    }

    /// Checks that `count` elements of at least `min_each` bytes can fit in what is left, so a
    /// hostile count cannot make us allocate.
    fn check_count(
        &self,
        start: usize,
        field: &'static str,
        count: u32,
        min_each: usize,
    ) -> Res<()> {
        if (count as usize).saturating_mul(min_each) > self.rem() {
            return Err(self.err_at(
                start,
                DecodeErrorKind::CountPastEnd {
                    field,
                    count,
                    min_each,
                },
            ));
        }
        Ok(())
    }

    /// `Args`: u16 count, then each argument as `Data`.
    fn args(&mut self) -> Res<Args> {
        let start = self.pos;
        let n = self.u16("args count")?;
        self.check_count(start, "args", u32::from(n), 4)?;
        let mut args = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            args.push(self.data("arg")?);
        }
        Ok(args)
    }

    /// `EntityIDSet`: u32 count, then the IDs.
    fn ids(&mut self, field: &'static str) -> Res<Vec<EntityId>> {
        let start = self.pos;
        let n = self.u32(field)?;
        self.check_count(start, field, n, ID_LEN)?;
        (0..n).map(|_| self.id(field)).collect()
    }

    fn opt_u16(&mut self, field: &'static str) -> Res<Option<u16>> {
        if self.rem() == 0 {
            Ok(None)
        } else {
            self.u16(field).map(Some)
        }
    }

    fn opt_id(&mut self, field: &'static str) -> Res<Option<EntityId>> {
        if self.rem() == 0 {
            Ok(None)
        } else {
            self.id(field).map(Some)
        }
    }

    fn record(&mut self) -> Res<SyncRecord> {
        Ok(SyncRecord {
            eid: self.id("record eid")?,
            x: self.f32("record x")?,
            y: self.f32("record y")?,
            z: self.f32("record z")?,
            yaw: self.f32("record yaw")?,
        })
    }

    /// Everything left must be whole records of `size` bytes (and at least one if `non_empty`).
    fn check_records(&self, size: usize, non_empty: bool) -> Res<usize> {
        let len = self.rem();
        let n = len / size;
        if n * size != len || (non_empty && n == 0) {
            return Err(self.err_at(self.pos, DecodeErrorKind::BadRecords { len, record: size }));
        }
        Ok(n)
    }

    fn records(&mut self, non_empty: bool) -> Res<Vec<SyncRecord>> {
        let n = self.check_records(SYNC_RECORD_LEN, non_empty)?;
        (0..n).map(|_| self.record()).collect()
    }

    fn filter_op(&mut self) -> Res<FilterOp> {
        let at = self.pos;
        let v = self.u8("filter op")?;
        FilterOp::from_u8(v).ok_or_else(|| self.err_at(at, DecodeErrorKind::BadFilterOp(v)))
    }

    fn finish(&self) -> Res<()> {
        match self.rem() {
            0 => Ok(()),
            count => Err(self.err_at(self.pos, DecodeErrorKind::Trailing { count })),
        }
    }

    fn unknown(&self) -> DecodeError {
        self.err_at(0, DecodeErrorKind::UnknownType)
    }

    fn client_header(&mut self) -> Res<(u16, ClientId)> {
        Ok((self.u16("gateid")?, self.id("clientid")?))
    }

    /// The body of a 1002–1012 message.
    fn client_body(&mut self) -> Res<ClientMsg> {
        Ok(match self.t {
            mt::CREATE_ENTITY_ON_CLIENT => ClientMsg::CreateEntityOnClient {
                is_player: self.bool("isPlayer")?,
                eid: self.id("eid")?,
                type_name: self.var_str("typeName")?,
                x: self.f32("x")?,
                y: self.f32("y")?,
                z: self.f32("z")?,
                yaw: self.f32("yaw")?,
                client_data: self.data("clientData")?,
            },
            mt::DESTROY_ENTITY_ON_CLIENT => ClientMsg::DestroyEntityOnClient {
                type_name: self.var_str("typeName")?,
                eid: self.id("eid")?,
            },
            mt::NOTIFY_MAP_ATTR_CHANGE_ON_CLIENT => ClientMsg::NotifyMapAttrChange {
                eid: self.id("eid")?,
                path: self.data("path")?,
                key: self.var_str("key")?,
                val: self.data("val")?,
            },
            mt::NOTIFY_MAP_ATTR_DEL_ON_CLIENT => ClientMsg::NotifyMapAttrDel {
                eid: self.id("eid")?,
                path: self.data("path")?,
                key: self.var_str("key")?,
            },
            mt::NOTIFY_LIST_ATTR_CHANGE_ON_CLIENT => ClientMsg::NotifyListAttrChange {
                eid: self.id("eid")?,
                path: self.data("path")?,
                index: self.u32("index")?,
                val: self.data("val")?,
            },
            mt::NOTIFY_LIST_ATTR_POP_ON_CLIENT => ClientMsg::NotifyListAttrPop {
                eid: self.id("eid")?,
                path: self.data("path")?,
            },
            mt::NOTIFY_LIST_ATTR_APPEND_ON_CLIENT => ClientMsg::NotifyListAttrAppend {
                eid: self.id("eid")?,
                path: self.data("path")?,
                val: self.data("val")?,
            },
            mt::CALL_ENTITY_METHOD_ON_CLIENT => ClientMsg::CallEntityMethodOnClient {
                eid: self.id("eid")?,
                method: self.var_str("method")?,
                args: self.args()?,
            },
            mt::SET_CLIENTPROXY_FILTER_PROP => ClientMsg::SetClientProxyFilterProp {
                key: self.var_str("key")?,
                val: self.var_str("val")?,
            },
            mt::CLEAR_CLIENTPROXY_FILTER_PROPS => ClientMsg::ClearClientProxyFilterProps,
            mt::KICK_CLIENT => ClientMsg::KickClient {
                reason: self.var_str("reason")?,
            },
            mt::NOTIFY_MAP_ATTR_CLEAR_ON_CLIENT => ClientMsg::NotifyMapAttrClear {
                eid: self.id("eid")?,
                path: self.data("path")?,
            },
            _ => return Err(self.unknown()),
        })
    }

    /// The fields of 1501 after the type.
    fn filtered(&mut self) -> Res<(FilterOp, String, String, String, Args)> {
        Ok((
            self.filter_op()?,
            self.var_str("key")?,
            self.var_str("val")?,
            self.var_str("method")?,
            self.args()?,
        ))
    }
}

/// Decodes one server-link payload; every byte must be consumed.
pub(super) fn decode_msg(payload: &[u8]) -> Result<Msg, DecodeError> {
    let mut r = Rd::new(payload)?;
    let m = match r.t {
        mt::SET_GAME_ID => Msg::SetGameId {
            game_id: r.u16("gameid")?,
            is_reconnect: r.bool("isReconnect")?,
            is_restore: r.bool("isRestore")?,
            is_ban_boot_entity: r.bool("isBanBootEntity")?,
            entities: r.ids("entity IDs")?,
            version: r.opt_u16("version")?,
        },
        mt::SET_GATE_ID => Msg::SetGateId {
            gate_id: r.u16("gateid")?,
            version: r.opt_u16("version")?,
        },
        mt::NOTIFY_CREATE_ENTITY => Msg::NotifyCreateEntity { eid: r.id("eid")? },
        mt::NOTIFY_DESTROY_ENTITY => Msg::NotifyDestroyEntity { eid: r.id("eid")? },
        mt::KVREG_REGISTER => Msg::KvregRegister {
            key: r.var_str("key")?,
            val: r.var_str("val")?,
            force: r.bool("force")?,
        },
        mt::CALL_ENTITY_METHOD => Msg::CallEntityMethod {
            eid: r.id("eid")?,
            method: r.var_str("method")?,
            args: r.args()?,
        },
        mt::CREATE_ENTITY_SOMEWHERE => Msg::CreateEntitySomewhere {
            game_id: r.u16("gameid")?,
            eid: r.id("eid")?,
            type_name: r.var_str("typeName")?,
            attrs: r.data("attrs")?,
        },
        mt::LOAD_ENTITY_SOMEWHERE => Msg::LoadEntitySomewhere {
            game_id: r.u16("gameid")?,
            eid: r.id("eid")?,
            type_name: r.var_str("typeName")?,
        },
        mt::NOTIFY_CLIENT_CONNECTED => Msg::NotifyClientConnected {
            client_id: r.id("clientid")?,
            boot_eid: r.id("bootEid")?,
            gate_id: r.opt_u16("gateid")?,
        },
        mt::NOTIFY_CLIENT_DISCONNECTED => Msg::NotifyClientDisconnected {
            owner_eid: r.id("ownerEid")?,
            client_id: r.id("clientid")?,
        },
        mt::CALL_ENTITY_METHOD_FROM_CLIENT => Msg::CallEntityMethodFromClient {
            eid: r.id("eid")?,
            method: r.var_str("method")?,
            args: r.args()?,
            client_id: r.opt_id("clientid")?,
        },
        mt::SYNC_POSITION_YAW_FROM_CLIENT => Msg::SyncPositionYawFromClient {
            records: r.records(true)?,
        },
        mt::NOTIFY_GATE_DISCONNECTED => Msg::NotifyGateDisconnected {
            gate_id: r.u16("gateid")?,
        },
        mt::START_FREEZE_GAME => Msg::StartFreezeGame,
        mt::FREEZE_CANCELLED => Msg::FreezeCancelled,
        mt::START_FREEZE_GAME_ACK => Msg::StartFreezeGameAck {
            disp_id: r.u16("dispid")?,
        },
        mt::MIGRATE_REQUEST => Msg::MigrateRequest {
            eid: r.id("eid")?,
            space_id: r.id("spaceid")?,
            space_game_id: r.u16("spaceGameID")?,
        },
        mt::REAL_MIGRATE => Msg::RealMigrate {
            eid: r.id("eid")?,
            target_game: r.u16("targetGame")?,
            data: r.data("migrateData")?,
        },
        mt::QUERY_SPACE_GAMEID_FOR_MIGRATE => Msg::QuerySpaceGameIdForMigrate {
            space_id: r.id("spaceid")?,
            eid: r.id("eid")?,
            game_id: r.opt_u16("gameid")?,
        },
        mt::CANCEL_MIGRATE => Msg::CancelMigrate { eid: r.id("eid")? },
        mt::CALL_NIL_SPACES => Msg::CallNilSpaces {
            except_game_id: r.u16("exceptGameID")?,
            method: r.var_str("method")?,
            args: r.args()?,
        },
        mt::SET_GAME_ID_ACK => {
            let disp_id = r.u16("dispid")?;
            let deployment_ready = r.bool("deploymentReady")?;
            let start = r.pos;
            let n = r.u16("game count")?;
            r.check_count(start, "games", u32::from(n), 2)?;
            let games = (0..n).map(|_| r.u16("gameid")).collect::<Res<Vec<u16>>>()?;
            let rejected = r.ids("rejected entity IDs")?;
            let start = r.pos;
            let n = r.u32("kvreg count")?;
            r.check_count(start, "kvreg", n, 8)?;
            let mut kvreg = Vec::with_capacity(n as usize);
            for _ in 0..n {
                kvreg.push((r.var_str("kvreg key")?, r.var_str("kvreg val")?));
            }
            let declared_dead = r.rem() > 0 && r.bool("declaredDead")?;
            Msg::SetGameIdAck {
                disp_id,
                deployment_ready,
                games,
                rejected,
                kvreg,
                declared_dead,
            }
        }
        mt::NOTIFY_GAME_CONNECTED => Msg::NotifyGameConnected {
            game_id: r.u16("gameid")?,
        },
        mt::NOTIFY_GAME_DISCONNECTED => Msg::NotifyGameDisconnected {
            game_id: r.u16("gameid")?,
        },
        mt::NOTIFY_DEPLOYMENT_READY => Msg::NotifyDeploymentReady,
        mt::GAME_LBC_INFO => Msg::GameLbcInfo {
            data: r.data("lbcinfo")?,
        },
        mt::NOTIFY_GATE_CONNECTED => Msg::NotifyGateConnected {
            gate_id: r.u16("gateid")?,
        },
        mt::MIGRATE_ARRIVED => Msg::MigrateArrived { eid: r.id("eid")? },
        mt::CREATE_ENTITY_ON_CLIENT..=mt::KICK_CLIENT => {
            let (gate_id, client_id) = r.client_header()?;
            Msg::ToClient {
                gate_id,
                client_id,
                msg: r.client_body()?,
            }
        }
        mt::CALL_FILTERED_CLIENTS => {
            let (op, key, val, method, args) = r.filtered()?;
            Msg::CallFilteredClients {
                op,
                key,
                val,
                method,
                args,
            }
        }
        mt::SYNC_POSITION_YAW_ON_CLIENTS => {
            let gate_id = r.u16("gateid")?;
            let n = r.check_records(SYNC_CLIENT_RECORD_LEN, false)?;
            let mut records = Vec::with_capacity(n);
            for _ in 0..n {
                let c = r.id("record clientid")?;
                records.push((c, r.record()?));
            }
            Msg::SyncPositionYawOnClients { gate_id, records }
        }
        mt::HEARTBEAT_FROM_CLIENT => Msg::HeartbeatFromClient,
        mt::CLIENT_OWNERS_GONE => Msg::ClientOwnersGone {
            game_id: r.u16("gameid")?,
            owners: r.ids("owner IDs")?,
        },
        _ => return Err(r.unknown()),
    };
    r.finish()?;
    Ok(m)
}

/// Decodes one payload as a client receives it from its gate; every byte must be consumed.
pub(super) fn decode_client_bound(payload: &[u8]) -> Result<ClientBound, DecodeError> {
    let mut r = Rd::new(payload)?;
    let m = match r.t {
        mt::CREATE_ENTITY_ON_CLIENT..=mt::CALL_ENTITY_METHOD_ON_CLIENT
        | mt::NOTIFY_MAP_ATTR_CLEAR_ON_CLIENT => {
            let (gate_id, client_id) = r.client_header()?;
            ClientBound::Entity {
                gate_id,
                client_id,
                msg: r.client_body()?,
            }
        }
        mt::CALL_FILTERED_CLIENTS => {
            let (op, key, val, method, args) = r.filtered()?;
            ClientBound::Filtered {
                op,
                key,
                val,
                method,
                args,
            }
        }
        mt::SYNC_POSITION_YAW_ON_CLIENTS => ClientBound::Sync(r.records(false)?),
        t if msg_name(t) != "unknown" => return Err(r.err_at(0, DecodeErrorKind::NotClientBound)),
        _ => return Err(r.unknown()),
    };
    r.finish()?;
    Ok(m)
}

// Keep the header-size constant of mod.rs honest: gateid + clientid.
const _: () = assert!(CLIENT_HEADER_LEN == 2 + ID_LEN);

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
