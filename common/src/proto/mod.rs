//! GoWorld's wire protocol: message numbers, layouts and routing ranges (reference §2).
//!
//! A payload (what follows the u32 frame length, see [`crate::frame`]) starts with a u16 LE
//! message type. Routers (the dispatcher and the gate) read only the type ([`peek_type`]) and
//! the routing key (the named per-message accessors of [`peek`]) and forward the original
//! bytes; endpoints decode fully with [`Msg::decode`] (server links) or [`ClientBound::decode`]
//! (what a client receives).
//!
//! This module owns every layout: the dispatcher and the gate read and write payload fields
//! only through it, never by offset. It never touches sockets, files or the clock.
//! docs/PROTOCOL.md documents the same layouts; its hex dumps are the golden bytes of the tests
//! in `codec.rs`.

mod codec;
pub mod peek;

pub use codec::{
    golden, msg_name, push_sync_on_clients, start_sync_on_clients, DecodeError, DecodeErrorKind,
};

use byteorder::{ByteOrder, LittleEndian};

use crate::id::{ClientId, EntityId};

/// Message type numbers, exactly as GoWorld HEAD computes them (`engine/proto/proto.go`).
pub mod mt {
    pub const INVALID: u16 = 0;
    pub const SET_GAME_ID: u16 = 1;
    pub const SET_GATE_ID: u16 = 2;
    pub const NOTIFY_CREATE_ENTITY: u16 = 3;
    pub const NOTIFY_DESTROY_ENTITY: u16 = 4;
    pub const KVREG_REGISTER: u16 = 5;
    pub const CALL_ENTITY_METHOD: u16 = 6;
    pub const CREATE_ENTITY_SOMEWHERE: u16 = 7;
    pub const LOAD_ENTITY_SOMEWHERE: u16 = 8;
    pub const NOTIFY_CLIENT_CONNECTED: u16 = 9;
    pub const NOTIFY_CLIENT_DISCONNECTED: u16 = 10;
    pub const CALL_ENTITY_METHOD_FROM_CLIENT: u16 = 11;
    pub const SYNC_POSITION_YAW_FROM_CLIENT: u16 = 12;
    pub const NOTIFY_GATE_DISCONNECTED: u16 = 13;
    pub const START_FREEZE_GAME: u16 = 14;
    pub const START_FREEZE_GAME_ACK: u16 = 15;
    pub const MIGRATE_REQUEST: u16 = 16;
    pub const REAL_MIGRATE: u16 = 17;
    pub const QUERY_SPACE_GAMEID_FOR_MIGRATE: u16 = 18;
    pub const CANCEL_MIGRATE: u16 = 19;
    pub const CALL_NIL_SPACES: u16 = 20;
    pub const SET_GAME_ID_ACK: u16 = 21;
    pub const NOTIFY_GAME_CONNECTED: u16 = 22;
    pub const NOTIFY_GAME_DISCONNECTED: u16 = 23;
    pub const NOTIFY_DEPLOYMENT_READY: u16 = 24;
    pub const GAME_LBC_INFO: u16 = 25;
    /// goworld-rs extension: a dispatcher tells every game that a gate (re)connected, so a
    /// game can tell a client of a dead gate instance (carried by a migration) from one of
    /// the gate that came back.
    pub const NOTIFY_GATE_CONNECTED: u16 = 26;
    /// goworld-rs extension: a game tells the dispatcher that relayed a REAL_MIGRATE to it
    /// that it took the entity, so the dispatcher can drop the copy it kept in case this game
    /// died first.
    pub const MIGRATE_ARRIVED: u16 = 27;
    /// goworld-rs extension: a game's freeze failed after the dispatchers started holding its
    /// packets; they deliver what they held and stop holding.
    pub const FREEZE_CANCELLED: u16 = 28;

    pub const GATE_SERVICE_START: u16 = 1000;
    pub const REDIRECT_TO_GATEPROXY_START: u16 = 1001;
    pub const CREATE_ENTITY_ON_CLIENT: u16 = 1002;
    pub const DESTROY_ENTITY_ON_CLIENT: u16 = 1003;
    pub const NOTIFY_MAP_ATTR_CHANGE_ON_CLIENT: u16 = 1004;
    pub const NOTIFY_MAP_ATTR_DEL_ON_CLIENT: u16 = 1005;
    pub const NOTIFY_LIST_ATTR_CHANGE_ON_CLIENT: u16 = 1006;
    pub const NOTIFY_LIST_ATTR_POP_ON_CLIENT: u16 = 1007;
    pub const NOTIFY_LIST_ATTR_APPEND_ON_CLIENT: u16 = 1008;
    pub const CALL_ENTITY_METHOD_ON_CLIENT: u16 = 1009;
    pub const SET_CLIENTPROXY_FILTER_PROP: u16 = 1010;
    pub const CLEAR_CLIENTPROXY_FILTER_PROPS: u16 = 1011;
    pub const NOTIFY_MAP_ATTR_CLEAR_ON_CLIENT: u16 = 1012;
    /// goworld-rs extension: a game asks the gate to close a client (consumed by the gate,
    /// never forwarded). Body: VarStr reason.
    pub const KICK_CLIENT: u16 = 1013;
    pub const REDIRECT_TO_GATEPROXY_STOP: u16 = 1499;
    pub const CALL_FILTERED_CLIENTS: u16 = 1501;
    pub const SYNC_POSITION_YAW_ON_CLIENTS: u16 = 1502;
    /// goworld-rs only (dispatcher→gate, consumed by the gate): game `gameid` died; these
    /// entities of the dispatcher's shard lived there. The gate closes every client whose
    /// owner is among them. `u16 gameid, u32 n, n × EntityID`.
    pub const CLIENT_OWNERS_GONE: u16 = 1503;
    pub const GATE_SERVICE_STOP: u16 = 1999;
    pub const HEARTBEAT_FROM_CLIENT: u16 = 2001;
}

/// Size of the `[u16 gateid][ClientID]` header that 1001–1499 carry after the type.
pub const CLIENT_HEADER_LEN: usize = 2 + 16;
/// One position record: EntityID + f32 x, y, z, yaw.
pub const SYNC_RECORD_LEN: usize = 16 + 16;
/// One game→gate position record: ClientID + [`SYNC_RECORD_LEN`].
pub const SYNC_CLIENT_RECORD_LEN: usize = 16 + SYNC_RECORD_LEN;

/// What a router does with a message type. One function decides it for every component
/// ([`route`]), so the ranges live in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// 1001–1499: carries `[gateid][clientid]`; the gate forwards the whole payload to that
    /// client (except 1010/1011, which the gate consumes).
    ToClient,
    /// 1501 CALL_FILTERED_CLIENTS: the gate forwards it verbatim to every matching client.
    FilteredClients,
    /// 1502 SYNC_POSITION_YAW_ON_CLIENTS: `[gateid]` + 48-byte records, regrouped per client.
    SyncOnClients,
    /// Any other 1000–1999 type: gate-service range, not forwarded.
    GateService,
    /// 2001 HEARTBEAT_FROM_CLIENT.
    Heartbeat,
    /// 1–25: internal game/gate/dispatcher messages.
    Internal,
    /// Anything else: not a GoWorld message.
    Unknown,
}

/// The routing class of message type `t`.
pub fn route(t: u16) -> Route {
    match t {
        mt::REDIRECT_TO_GATEPROXY_START..=mt::REDIRECT_TO_GATEPROXY_STOP => Route::ToClient,
        mt::CALL_FILTERED_CLIENTS => Route::FilteredClients,
        mt::SYNC_POSITION_YAW_ON_CLIENTS => Route::SyncOnClients,
        mt::GATE_SERVICE_START..=mt::GATE_SERVICE_STOP => Route::GateService,
        mt::HEARTBEAT_FROM_CLIENT => Route::Heartbeat,
        mt::SET_GAME_ID..=mt::FREEZE_CANCELLED => Route::Internal,
        _ => Route::Unknown,
    }
}

/// True for the only types a client may send a gate: 11, 12 and 2001 (reference §2.6).
pub fn client_may_send(t: u16) -> bool {
    matches!(
        t,
        mt::CALL_ENTITY_METHOD_FROM_CLIENT
            | mt::SYNC_POSITION_YAW_FROM_CLIENT
            | mt::HEARTBEAT_FROM_CLIENT
    )
}

/// RPC arguments: each element is one raw msgpack value, decoded lazily by the receiver.
pub type Args = Vec<Vec<u8>>;

/// A position/yaw record (`EntitySyncInfo`): 16-byte ID and four f32.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncRecord {
    pub eid: EntityId,
    pub x: f32,
    pub y: f32,
    pub z: f32,
    pub yaw: f32,
}

/// Filter operators of CALL_FILTERED_CLIENTS (u8 on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FilterOp {
    Eq = 0,
    Ne = 1,
    Gt = 2,
    Lt = 3,
    Gte = 4,
    Lte = 5,
}

/// A message on a server link (game, gate, dispatcher), decoded. Fields that a router appends
/// on the way (the gate's clientid on 11, the dispatcher's gateid on 9 and gameid on 18) are
/// `Option`s: absent before the router, present after it. `version` on 1 and 2 is goworld-rs's
/// trailing internal-protocol version; GoWorld peers send none.
#[derive(Debug, Clone, PartialEq)]
pub enum Msg {
    SetGameId {
        game_id: u16,
        is_reconnect: bool,
        is_restore: bool,
        is_ban_boot_entity: bool,
        entities: Vec<EntityId>,
        version: Option<u16>,
    },
    SetGateId {
        gate_id: u16,
        version: Option<u16>,
    },
    NotifyCreateEntity {
        eid: EntityId,
    },
    NotifyDestroyEntity {
        eid: EntityId,
    },
    KvregRegister {
        key: String,
        val: String,
        force: bool,
    },
    CallEntityMethod {
        eid: EntityId,
        method: String,
        args: Args,
    },
    CreateEntitySomewhere {
        game_id: u16,
        eid: EntityId,
        type_name: String,
        /// Raw msgpack of the attribute map (or nil).
        attrs: Vec<u8>,
    },
    LoadEntitySomewhere {
        game_id: u16,
        eid: EntityId,
        type_name: String,
    },
    NotifyClientConnected {
        client_id: ClientId,
        boot_eid: EntityId,
        gate_id: Option<u16>,
    },
    NotifyClientDisconnected {
        owner_eid: EntityId,
        client_id: ClientId,
    },
    CallEntityMethodFromClient {
        eid: EntityId,
        method: String,
        args: Args,
        client_id: Option<ClientId>,
    },
    /// From a client: exactly one record. Gate→dispatcher→game: any number, no count field.
    SyncPositionYawFromClient {
        records: Vec<SyncRecord>,
    },
    NotifyGateDisconnected {
        gate_id: u16,
    },
    /// Dispatcher→games: gate `gate_id` completed its handshake (goworld-rs extension, 26).
    NotifyGateConnected {
        gate_id: u16,
    },
    /// Game→the dispatcher that relayed a REAL_MIGRATE: the entity was taken (goworld-rs
    /// extension, 27).
    MigrateArrived {
        eid: EntityId,
    },
    StartFreezeGame,
    /// Game→dispatchers: the freeze failed; deliver what was held (goworld-rs extension, 28).
    FreezeCancelled,
    StartFreezeGameAck {
        disp_id: u16,
    },
    MigrateRequest {
        eid: EntityId,
        space_id: EntityId,
        space_game_id: u16,
    },
    RealMigrate {
        eid: EntityId,
        target_game: u16,
        data: Vec<u8>,
    },
    QuerySpaceGameIdForMigrate {
        space_id: EntityId,
        eid: EntityId,
        game_id: Option<u16>,
    },
    CancelMigrate {
        eid: EntityId,
    },
    CallNilSpaces {
        except_game_id: u16,
        method: String,
        args: Args,
    },
    SetGameIdAck {
        disp_id: u16,
        deployment_ready: bool,
        games: Vec<u16>,
        rejected: Vec<EntityId>,
        kvreg: Vec<(String, String)>,
        /// goworld-rs: this dispatcher declared the game dead (its link was lost) since the
        /// game last connected, so the game's entities in its shard are rejected and the
        /// registry keys it held there are no longer its. On the wire: one trailing bool,
        /// present only when true (GoWorld's ack has no such field).
        declared_dead: bool,
    },
    NotifyGameConnected {
        game_id: u16,
    },
    NotifyGameDisconnected {
        game_id: u16,
    },
    NotifyDeploymentReady,
    GameLbcInfo {
        /// Raw msgpack `{"cp": float64}`.
        data: Vec<u8>,
    },
    /// 1001–1499 on a server link: the client header and the body.
    ToClient {
        gate_id: u16,
        client_id: ClientId,
        msg: ClientMsg,
    },
    CallFilteredClients {
        op: FilterOp,
        key: String,
        val: String,
        method: String,
        args: Args,
    },
    /// Game→dispatcher→gate form: `[gateid]` then 48-byte `[clientid][record]` entries.
    SyncPositionYawOnClients {
        gate_id: u16,
        records: Vec<(ClientId, SyncRecord)>,
    },
    HeartbeatFromClient,
    /// 1503: game `game_id` died; `owners` (this dispatcher's shard) lived there.
    ClientOwnersGone {
        game_id: u16,
        owners: Vec<EntityId>,
    },
}

/// The body of a 1002–1012 message (after `[gateid][clientid]`).
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMsg {
    CreateEntityOnClient {
        is_player: bool,
        eid: EntityId,
        type_name: String,
        x: f32,
        y: f32,
        z: f32,
        yaw: f32,
        /// Raw msgpack map of the client-visible attributes.
        client_data: Vec<u8>,
    },
    DestroyEntityOnClient {
        type_name: String,
        eid: EntityId,
    },
    NotifyMapAttrChange {
        eid: EntityId,
        /// Raw msgpack path (nil for a root attribute, else innermost key first).
        path: Vec<u8>,
        key: String,
        val: Vec<u8>,
    },
    NotifyMapAttrDel {
        eid: EntityId,
        path: Vec<u8>,
        key: String,
    },
    NotifyListAttrChange {
        eid: EntityId,
        path: Vec<u8>,
        index: u32,
        val: Vec<u8>,
    },
    NotifyListAttrPop {
        eid: EntityId,
        path: Vec<u8>,
    },
    NotifyListAttrAppend {
        eid: EntityId,
        path: Vec<u8>,
        val: Vec<u8>,
    },
    CallEntityMethodOnClient {
        eid: EntityId,
        method: String,
        args: Args,
    },
    SetClientProxyFilterProp {
        key: String,
        val: String,
    },
    ClearClientProxyFilterProps,
    NotifyMapAttrClear {
        eid: EntityId,
        path: Vec<u8>,
    },
    /// goworld-rs extension (1013): the gate closes the client with this reason.
    KickClient {
        reason: String,
    },
}

/// What a client receives from its gate, decoded (the Go client's `handlePacket`).
#[derive(Debug, Clone, PartialEq)]
pub enum ClientBound {
    /// 1002–1009, 1012 with the header the gate passed through.
    Entity {
        gate_id: u16,
        client_id: ClientId,
        msg: ClientMsg,
    },
    /// 1501, forwarded verbatim.
    Filtered {
        op: FilterOp,
        key: String,
        val: String,
        method: String,
        args: Args,
    },
    /// 1502 as rebuilt by the gate: 32-byte records only.
    Sync(Vec<SyncRecord>),
}

impl Msg {
    /// The message type number of this message.
    pub fn msg_type(&self) -> u16 {
        codec::msg_type_of(self)
    }

    /// Appends the payload (type and fields, no frame length) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        codec::encode_msg(self, out)
    }

    /// The payload as a new vector.
    pub fn to_payload(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.size_hint());
        self.encode(&mut v);
        v
    }

    /// About how long the payload is (a capacity hint: the common messages, the ones carrying
    /// arguments, get one allocation instead of a vector grown piece by piece).
    fn size_hint(&self) -> usize {
        let args_len = |a: &Args| a.iter().map(|x| 4 + x.len()).sum::<usize>();
        128 + match self {
            Msg::CallEntityMethod { method, args, .. }
            | Msg::CallEntityMethodFromClient { method, args, .. }
            | Msg::CallNilSpaces { method, args, .. } => method.len() + args_len(args),
            Msg::ToClient {
                msg: ClientMsg::CallEntityMethodOnClient { method, args, .. },
                ..
            } => method.len() + args_len(args),
            _ => 0,
        }
    }

    /// Decodes one payload from a server link. Every byte must be consumed.
    pub fn decode(payload: &[u8]) -> Result<Msg, DecodeError> {
        codec::decode_msg(payload)
    }
}

impl ClientBound {
    /// Decodes one payload a gate sent to a client. Every byte must be consumed.
    pub fn decode(payload: &[u8]) -> Result<ClientBound, DecodeError> {
        codec::decode_client_bound(payload)
    }

    /// Appends the payload exactly as a gate sends it to a client.
    pub fn encode(&self, out: &mut Vec<u8>) {
        codec::encode_client_bound(self, out)
    }
}

/// The message type of a payload, if it has at least two bytes.
pub fn peek_type(payload: &[u8]) -> Option<u16> {
    payload.get(..peek::TYPE_LEN).map(LittleEndian::read_u16)
}
