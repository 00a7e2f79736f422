//! Named field accessors for routers: the few fields the dispatcher and the gate read (or
//! rewrite, or append) without decoding a whole message.
//!
//! Routers forward the original bytes (they do not re-encode), so they read a routing key
//! straight from the payload. They do it through these functions, one per message field,
//! so that byte layouts stay in `proto/`: each accessor names the message types it applies to
//! and the field's offset, derived from the field order of the encoder in `codec.rs`
//! (`encode_msg`, `encode_client_body`). `peek_tests.rs` encodes every message with that
//! encoder (and decodes every golden frame) and reads each field back through its accessor,
//! so a layout change in the encoder that leaves an accessor behind fails a test.
//!
//! Every accessor takes a whole payload (from its u16 message type on), never panics, and
//! answers `None` when the payload is too short for the field. None checks the message type:
//! the caller has matched it already (debug builds assert that it is one the accessor
//! applies to).

use byteorder::{ByteOrder, LittleEndian};

use super::{mt, peek_type, route, Route, SyncRecord};
use super::{CLIENT_HEADER_LEN, SYNC_CLIENT_RECORD_LEN, SYNC_RECORD_LEN};
use crate::id::{ClientId, EntityId, ID_LEN};

/// Bytes of the u16 message type that starts every payload.
pub const TYPE_LEN: usize = 2;
/// Bytes of a u16 field (gate, game and dispatcher IDs).
const U16_LEN: usize = 2;
/// Offset of the first field after the message type.
const FIRST: usize = TYPE_LEN;

// Offsets, from the encoder's field order (`codec.rs`, `encode_msg`).
/// CREATE/LOAD_ENTITY_SOMEWHERE: `gameid u16, eid, ...`.
const SOMEWHERE_EID: usize = FIRST + U16_LEN;
/// NOTIFY_CLIENT_CONNECTED: `clientid, bootEid[, gateid]`.
const BOOT_EID: usize = FIRST + ID_LEN;
/// MIGRATE_REQUEST: `eid, spaceid, spaceGameID u16`.
const SPACE_GAME: usize = FIRST + ID_LEN + ID_LEN;
/// REAL_MIGRATE: `eid, targetGame u16, migrateData`.
const TARGET_GAME: usize = FIRST + ID_LEN;
/// 1001–1499: `[gateid u16][clientid]`, then the body.
const HEADER_CLIENT_ID: usize = FIRST + U16_LEN;
/// First body field of a 1001–1499 message (`encode_client_body`).
const BODY: usize = FIRST + CLIENT_HEADER_LEN;
/// CREATE_ENTITY_ON_CLIENT body: `isPlayer bool, eid, typeName, ...`.
const CREATED_IS_PLAYER: usize = BODY;
const CREATED_EID: usize = BODY + 1;
/// SYNC_POSITION_YAW_ON_CLIENTS (game form): `gateid u16`, then the records.
const SYNC_ON_CLIENTS_RECORDS: usize = FIRST + U16_LEN;

/// Length of a NOTIFY_CLIENT_CONNECTED payload as a gate sends it (`clientid, bootEid`), before
/// the dispatcher appends the gateid ([`appended_gate_id`]).
pub const NOTIFY_CLIENT_CONNECTED_FROM_GATE_LEN: usize = FIRST + ID_LEN + ID_LEN;
/// Length of a SYNC_POSITION_YAW_FROM_CLIENT payload as a client sends it: one record.
pub const SYNC_FROM_ONE_CLIENT_LEN: usize = FIRST + SYNC_RECORD_LEN;
/// The head of a SYNC_POSITION_YAW_FROM_CLIENT batch (gate→dispatcher→game): the type alone;
/// [`SyncRecordRef::as_bytes`] records follow, with no count.
pub const SYNC_FROM_CLIENT_HEAD: [u8; TYPE_LEN] = mt::SYNC_POSITION_YAW_FROM_CLIENT.to_le_bytes();
/// The head of SYNC_POSITION_YAW_ON_CLIENTS as a gate sends it to a client
/// ([`super::ClientBound::Sync`]): the type alone; records follow, with no gateid, no client
/// IDs and no count.
pub const SYNC_TO_CLIENT_HEAD: [u8; TYPE_LEN] = mt::SYNC_POSITION_YAW_ON_CLIENTS.to_le_bytes();

/// Record layout: `EntityID, f32 x, y, z, yaw` (`put_record`).
const REC_X: usize = ID_LEN;
const REC_Y: usize = REC_X + 4;
const REC_Z: usize = REC_Y + 4;
const REC_YAW: usize = REC_Z + 4;
const _: () = assert!(REC_YAW + 4 == SYNC_RECORD_LEN);
const _: () = assert!(SYNC_CLIENT_RECORD_LEN == ID_LEN + SYNC_RECORD_LEN);

fn u16_at(p: &[u8], at: usize) -> Option<u16> {
    p.get(at..at + U16_LEN).map(LittleEndian::read_u16)
}

fn id_at(p: &[u8], at: usize) -> Option<EntityId> {
    EntityId::from_slice(p.get(at..at + ID_LEN)?)
}

/// Debug builds: the payload's type is one `applies` accepts (or it has no type at all).
#[inline]
fn debug_expect(p: &[u8], accessor: &str, applies: fn(u16) -> bool) {
    debug_assert!(
        peek_type(p).is_none_or(applies),
        "proto::peek::{accessor} used on message type {:?}",
        peek_type(p)
    );
}

/// The entity ID that is the first field after the type (offset 2) of
/// NOTIFY_CREATE_ENTITY (3), NOTIFY_DESTROY_ENTITY (4), CALL_ENTITY_METHOD (6),
/// NOTIFY_CLIENT_DISCONNECTED (10, the owner), CALL_ENTITY_METHOD_FROM_CLIENT (11),
/// MIGRATE_REQUEST (16), REAL_MIGRATE (17), CANCEL_MIGRATE (19) and MIGRATE_ARRIVED (27).
pub fn entity_id(p: &[u8]) -> Option<EntityId> {
    debug_expect(p, "entity_id", |t| {
        matches!(
            t,
            mt::NOTIFY_CREATE_ENTITY
                | mt::NOTIFY_DESTROY_ENTITY
                | mt::CALL_ENTITY_METHOD
                | mt::NOTIFY_CLIENT_DISCONNECTED
                | mt::CALL_ENTITY_METHOD_FROM_CLIENT
                | mt::MIGRATE_REQUEST
                | mt::REAL_MIGRATE
                | mt::CANCEL_MIGRATE
                | mt::MIGRATE_ARRIVED
        )
    });
    id_at(p, FIRST)
}

/// QUERY_SPACE_GAMEID_FOR_MIGRATE (18): the space's ID, its first field (offset 2).
pub fn space_id(p: &[u8]) -> Option<EntityId> {
    debug_expect(p, "space_id", |t| t == mt::QUERY_SPACE_GAMEID_FOR_MIGRATE);
    id_at(p, FIRST)
}

/// CREATE_ENTITY_SOMEWHERE (7) and LOAD_ENTITY_SOMEWHERE (8): the game asked for (0: any),
/// the first field (u16, offset 2).
pub fn somewhere_game_id(p: &[u8]) -> Option<u16> {
    debug_expect(p, "somewhere_game_id", is_somewhere);
    u16_at(p, FIRST)
}

/// CREATE_ENTITY_SOMEWHERE (7) and LOAD_ENTITY_SOMEWHERE (8): the entity ID after the game
/// (offset 4).
pub fn somewhere_entity_id(p: &[u8]) -> Option<EntityId> {
    debug_expect(p, "somewhere_entity_id", is_somewhere);
    id_at(p, SOMEWHERE_EID)
}

fn is_somewhere(t: u16) -> bool {
    matches!(t, mt::CREATE_ENTITY_SOMEWHERE | mt::LOAD_ENTITY_SOMEWHERE)
}

/// NOTIFY_CLIENT_CONNECTED (9): the boot entity's ID, after the client ID (offset 18).
pub fn boot_entity_id(p: &[u8]) -> Option<EntityId> {
    debug_expect(p, "boot_entity_id", |t| t == mt::NOTIFY_CLIENT_CONNECTED);
    id_at(p, BOOT_EID)
}

/// NOTIFY_CLIENT_CONNECTED (9): the trailing u16 gateid a dispatcher appends to what the gate
/// sent ([`NOTIFY_CLIENT_CONNECTED_FROM_GATE_LEN`] bytes).
pub fn appended_gate_id(gate: u16) -> [u8; U16_LEN] {
    gate.to_le_bytes()
}

/// QUERY_SPACE_GAMEID_FOR_MIGRATE (18): the trailing u16 gameid (the space's game) a
/// dispatcher appends before answering.
pub fn appended_game_id(game: u16) -> [u8; U16_LEN] {
    game.to_le_bytes()
}

/// CALL_ENTITY_METHOD_FROM_CLIENT (11): the trailing client ID a gate appends to what the
/// client sent.
pub fn appended_client_id(client: &ClientId) -> &[u8; ID_LEN] {
    client.as_bytes()
}

/// MIGRATE_REQUEST (16): the game of the space the entity goes to (`spaceGameID`, u16 after
/// the entity and space IDs, offset 34).
pub fn migrate_request_space_game(p: &[u8]) -> Option<u16> {
    debug_expect(p, "migrate_request_space_game", |t| {
        t == mt::MIGRATE_REQUEST
    });
    u16_at(p, SPACE_GAME)
}

/// REAL_MIGRATE (17): the target game (`targetGame`, u16 after the entity ID, offset 18).
pub fn real_migrate_target_game(p: &[u8]) -> Option<u16> {
    debug_expect(p, "real_migrate_target_game", |t| t == mt::REAL_MIGRATE);
    u16_at(p, TARGET_GAME)
}

/// REAL_MIGRATE (17): rewrites the target game in place (offset 18); the rest of the payload
/// is untouched. `None` (and nothing written) if the payload is too short.
pub fn set_real_migrate_target_game(p: &mut [u8], game: u16) -> Option<()> {
    debug_expect(p, "set_real_migrate_target_game", |t| t == mt::REAL_MIGRATE);
    LittleEndian::write_u16(p.get_mut(TARGET_GAME..TARGET_GAME + U16_LEN)?, game);
    Some(())
}

/// CALL_NIL_SPACES (20): the game that does not take the call (`exceptGameID`, u16 first
/// field, offset 2; 0: none).
pub fn except_game_id(p: &[u8]) -> Option<u16> {
    debug_expect(p, "except_game_id", |t| t == mt::CALL_NIL_SPACES);
    u16_at(p, FIRST)
}

/// The gate a game's message for clients goes to: the u16 first field (offset 2) of every
/// 1001–1499 message (the gateid of `[gateid][clientid]`) and of SYNC_POSITION_YAW_ON_CLIENTS
/// (1502) in its game form.
pub fn gate_id(p: &[u8]) -> Option<u16> {
    debug_expect(p, "gate_id", |t| {
        route(t) == Route::ToClient || t == mt::SYNC_POSITION_YAW_ON_CLIENTS
    });
    u16_at(p, FIRST)
}

/// The `[gateid][clientid]` header (offsets 2 and 4, [`CLIENT_HEADER_LEN`] bytes) of a
/// 1001–1499 message.
pub fn client_header(p: &[u8]) -> Option<(u16, ClientId)> {
    debug_expect(p, "client_header", |t| route(t) == Route::ToClient);
    Some((u16_at(p, FIRST)?, id_at(p, HEADER_CLIENT_ID)?))
}

/// CREATE_ENTITY_ON_CLIENT (1002): whether the entity is the client's player (`isPlayer`, the
/// first body byte after the header, offset 20). True only for the byte 1, which is what the
/// encoder writes for true (the full decoder reads any non-zero byte as true).
pub fn created_is_player(p: &[u8]) -> Option<bool> {
    debug_expect(p, "created_is_player", |t| t == mt::CREATE_ENTITY_ON_CLIENT);
    p.get(CREATED_IS_PLAYER).map(|&b| b == 1)
}

/// CREATE_ENTITY_ON_CLIENT (1002): the created entity's ID, after `isPlayer` (offset 21).
pub fn created_entity_id(p: &[u8]) -> Option<EntityId> {
    debug_expect(p, "created_entity_id", |t| t == mt::CREATE_ENTITY_ON_CLIENT);
    id_at(p, CREATED_EID)
}

/// Bytes after the message type (0 for a payload without one). HEARTBEAT_FROM_CLIENT (2001)
/// and the other type-only messages have none.
pub fn body_len(p: &[u8]) -> usize {
    p.len().saturating_sub(TYPE_LEN)
}

// ---- position records -------------------------------------------------------------------

/// One position record inside a payload ([`SYNC_RECORD_LEN`] bytes): the entity ID, then f32
/// x, y, z, yaw (what [`SyncRecord`] decodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncRecordRef<'a>(&'a [u8; SYNC_RECORD_LEN]);

impl<'a> SyncRecordRef<'a> {
    /// The entity the record moves (its first 16 bytes).
    pub fn entity_id(&self) -> EntityId {
        let (id, _) = self
            .0
            .split_first_chunk::<ID_LEN>()
            .expect("a record holds an ID");
        EntityId(*id)
    }

    /// The record's bytes, as they are copied into a batch or kept for later.
    pub fn as_bytes(&self) -> &'a [u8; SYNC_RECORD_LEN] {
        self.0
    }

    /// The record decoded.
    pub fn decode(&self) -> SyncRecord {
        let f = |at: usize| LittleEndian::read_f32(&self.0[at..at + 4]);
        SyncRecord {
            eid: self.entity_id(),
            x: f(REC_X),
            y: f(REC_Y),
            z: f(REC_Z),
            yaw: f(REC_YAW),
        }
    }
}

/// One game→gate record of SYNC_POSITION_YAW_ON_CLIENTS ([`SYNC_CLIENT_RECORD_LEN`] bytes): the
/// client ID, then a [`SyncRecordRef`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSyncRecordRef<'a>(&'a [u8; SYNC_CLIENT_RECORD_LEN]);

impl<'a> ClientSyncRecordRef<'a> {
    /// The client the record goes to (its first 16 bytes).
    pub fn client_id(&self) -> ClientId {
        let (id, _) = self
            .0
            .split_first_chunk::<ID_LEN>()
            .expect("a record holds an ID");
        EntityId(*id)
    }

    /// The position record after the client ID, as the gate forwards it to that client.
    pub fn record(&self) -> SyncRecordRef<'a> {
        let (_, rec) = self
            .0
            .split_last_chunk::<SYNC_RECORD_LEN>()
            .expect("a client record holds a record");
        SyncRecordRef(rec)
    }
}

/// The records of a SYNC_POSITION_YAW_FROM_CLIENT payload, in order (see [`sync_records`]).
#[derive(Debug, Clone)]
pub struct SyncRecords<'a>(std::slice::ChunksExact<'a, u8>);

fn record(c: &[u8]) -> SyncRecordRef<'_> {
    SyncRecordRef(c.try_into().expect("chunks are whole records"))
}

impl<'a> Iterator for SyncRecords<'a> {
    type Item = SyncRecordRef<'a>;

    fn next(&mut self) -> Option<SyncRecordRef<'a>> {
        self.0.next().map(record)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl DoubleEndedIterator for SyncRecords<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(record)
    }
}

impl ExactSizeIterator for SyncRecords<'_> {}

/// The records of a SYNC_POSITION_YAW_FROM_CLIENT (12) payload: `[type]` then records of
/// [`SYNC_RECORD_LEN`] bytes from offset 2, with no count (one from a client, any number in a
/// gate's or a dispatcher's batch; an empty batch has none). `None` if the payload has no type
/// or what follows it is not a whole number of records.
pub fn sync_records(p: &[u8]) -> Option<SyncRecords<'_>> {
    debug_expect(p, "sync_records", |t| {
        t == mt::SYNC_POSITION_YAW_FROM_CLIENT
    });
    let body = p.get(FIRST..)?;
    if !body.len().is_multiple_of(SYNC_RECORD_LEN) {
        return None;
    }
    Some(SyncRecords(body.chunks_exact(SYNC_RECORD_LEN)))
}

/// SYNC_POSITION_YAW_FROM_CLIENT (12) as a client sends it: its one record (offset 2).
/// `None` unless the payload is exactly [`SYNC_FROM_ONE_CLIENT_LEN`] bytes.
pub fn client_sync_record(p: &[u8]) -> Option<SyncRecordRef<'_>> {
    debug_expect(p, "client_sync_record", |t| {
        t == mt::SYNC_POSITION_YAW_FROM_CLIENT
    });
    if p.len() != SYNC_FROM_ONE_CLIENT_LEN {
        return None;
    }
    p.get(FIRST..).map(record)
}

/// Keeps, in order and in place, the records of a SYNC_POSITION_YAW_FROM_CLIENT (12) batch for
/// which `keep` is true; the head stays. Returns how many records are left, or `None` (and
/// nothing changed) if `batch` is not a whole batch (see [`sync_records`]).
pub fn retain_sync_records(
    batch: &mut Vec<u8>,
    mut keep: impl FnMut(SyncRecordRef<'_>) -> bool,
) -> Option<usize> {
    let n = sync_records(batch)?.len();
    let mut write = FIRST;
    for i in 0..n {
        let read = FIRST + i * SYNC_RECORD_LEN;
        if keep(record(&batch[read..read + SYNC_RECORD_LEN])) {
            if write != read {
                batch.copy_within(read..read + SYNC_RECORD_LEN, write);
            }
            write += SYNC_RECORD_LEN;
        }
    }
    batch.truncate(write);
    Some((write - FIRST) / SYNC_RECORD_LEN)
}

/// The records of a SYNC_POSITION_YAW_ON_CLIENTS payload (see [`sync_on_clients_records`]).
#[derive(Debug, Clone)]
pub struct ClientSyncRecords<'a>(std::slice::ChunksExact<'a, u8>);

impl<'a> Iterator for ClientSyncRecords<'a> {
    type Item = ClientSyncRecordRef<'a>;

    fn next(&mut self) -> Option<ClientSyncRecordRef<'a>> {
        let c = self.0.next()?;
        Some(ClientSyncRecordRef(
            c.try_into().expect("chunks are whole records"),
        ))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for ClientSyncRecords<'_> {}

/// SYNC_POSITION_YAW_ON_CLIENTS (1502) in its game form: after the gateid ([`gate_id`]),
/// records of [`SYNC_CLIENT_RECORD_LEN`] bytes from offset 4, with no count. `None` if the
/// payload is shorter than its gateid or what follows is not a whole number of records.
pub fn sync_on_clients_records(p: &[u8]) -> Option<ClientSyncRecords<'_>> {
    debug_expect(p, "sync_on_clients_records", |t| {
        t == mt::SYNC_POSITION_YAW_ON_CLIENTS
    });
    let body = p.get(SYNC_ON_CLIENTS_RECORDS..)?;
    if !body.len().is_multiple_of(SYNC_CLIENT_RECORD_LEN) {
        return None;
    }
    Some(ClientSyncRecords(body.chunks_exact(SYNC_CLIENT_RECORD_LEN)))
}

#[cfg(test)]
#[path = "peek_tests.rs"]
mod tests;
