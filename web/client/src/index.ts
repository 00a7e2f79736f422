// goworld-client: a dependency-free client for the goworld-rs / GoWorld client protocol over
// WebSocket. This module re-exports the public API; docs/CLIENT-TS.md describes it.

export { Client, ANY_TYPE } from "./client.js";
export type { ClientOptions, MethodHandler, ReconnectOptions, SocketFactory, WebSocketLike } from "./client.js";
export {
  MsgType,
  ProtocolError,
  UnknownMessageError,
  decodeServerMessage,
  encodeCall,
  encodeHeartbeat,
  encodeSyncPosition,
  idFromBytes,
  idToBytes,
  ID_LENGTH,
} from "./codec.js";
export type { PathStep, PosYaw, ServerMessage } from "./codec.js";
export { Entity, EntityTable, AttrError, SPACE_TYPE, applyAttrOp, showPath } from "./entity.js";
export type { AttrOp } from "./entity.js";
export { ClientError, Emitter } from "./events.js";
export type { AttrChange, CallEvent, ClientErrorKind, ClientEvents, ConnectionState, EventName, Listener } from "./events.js";
export { FrameError, FrameReader, frame, DEFAULT_MAX_FRAME } from "./frame.js";
export { Ext, Float64, MsgpackError, decode, decodePrefix, encode, float64 } from "./msgpack.js";
export type { Encodable, Value, ValueMap } from "./msgpack.js";
