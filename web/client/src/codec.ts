// The client's messages (docs/PROTOCOL.md §4-§6): decoding every payload a client receives
// (1002-1009, 1012 after their 18-byte gateid+clientid header, 1501, 1502) and encoding the
// three a client sends (11, 12, 2001). Payloads here start with the u16 message type; the
// 4-byte length prefix is frame.ts's business.

import { decode, encode, Encodable, MsgpackError, Value } from "./msgpack.js";

/** Message type numbers a client deals with. */
export const MsgType = {
  CALL_ENTITY_METHOD_FROM_CLIENT: 11,
  SYNC_POSITION_YAW_FROM_CLIENT: 12,
  CREATE_ENTITY_ON_CLIENT: 1002,
  DESTROY_ENTITY_ON_CLIENT: 1003,
  NOTIFY_MAP_ATTR_CHANGE_ON_CLIENT: 1004,
  NOTIFY_MAP_ATTR_DEL_ON_CLIENT: 1005,
  NOTIFY_LIST_ATTR_CHANGE_ON_CLIENT: 1006,
  NOTIFY_LIST_ATTR_POP_ON_CLIENT: 1007,
  NOTIFY_LIST_ATTR_APPEND_ON_CLIENT: 1008,
  CALL_ENTITY_METHOD_ON_CLIENT: 1009,
  NOTIFY_MAP_ATTR_CLEAR_ON_CLIENT: 1012,
  CALL_FILTERED_CLIENTS: 1501,
  SYNC_POSITION_YAW_ON_CLIENTS: 1502,
  HEARTBEAT_FROM_CLIENT: 2001,
} as const;

/** Types 1001-1499 carry `[u16 gateid][16-byte clientid]` after the type, which a client skips. */
export const CLIENT_HEADER_FIRST = 1001;
export const CLIENT_HEADER_LAST = 1499;
/** Entity and client IDs are 16 bytes. */
export const ID_LENGTH = 16;

/** A step of an attribute path: a map key or a list index. */
export type PathStep = string | number;

/** A position and yaw, as the f32s of the wire. */
export interface PosYaw {
  x: number;
  y: number;
  z: number;
  yaw: number;
}

/**
 * A decoded message from the server. Attribute `path`s are **root first** (the reverse of
 * the wire's innermost-first order): `[]` for an attribute at the root of the entity,
 * `["testListField"]` for a root list, `["complexAttr", "key1", "key2", 1, 0]` for a nested
 * container.
 */
export type ServerMessage =
  | ({ kind: "create"; msgType: 1002; isPlayer: boolean; id: string; typeName: string; clientData: Value } & PosYaw)
  | { kind: "destroy"; msgType: 1003; typeName: string; id: string }
  | { kind: "mapSet"; msgType: 1004; id: string; path: PathStep[]; key: string; value: Value }
  | { kind: "mapDelete"; msgType: 1005; id: string; path: PathStep[]; key: string }
  | { kind: "listSet"; msgType: 1006; id: string; path: PathStep[]; index: number; value: Value }
  | { kind: "listPop"; msgType: 1007; id: string; path: PathStep[] }
  | { kind: "listAppend"; msgType: 1008; id: string; path: PathStep[]; value: Value }
  | { kind: "call"; msgType: 1009; id: string; method: string; args: Value[] }
  | { kind: "mapClear"; msgType: 1012; id: string; path: PathStep[] }
  | { kind: "filteredCall"; msgType: 1501; op: number; key: string; value: string; method: string; args: Value[] }
  | { kind: "positions"; msgType: 1502; records: Array<{ id: string } & PosYaw> };

/** A payload from the server that does not decode. `msgType` is 0 when even that is missing. */
export class ProtocolError extends Error {
  constructor(
    message: string,
    public readonly msgType: number = 0,
  ) {
    super(message);
    this.name = "ProtocolError";
  }
}

/** A payload of a type a client does not expect (it may be skipped). */
export class UnknownMessageError extends ProtocolError {
  constructor(msgType: number) {
    super(`unexpected message type ${msgType} from the server`, msgType);
    this.name = "UnknownMessageError";
  }
}

const utf8Decoder = new TextDecoder("utf-8", { fatal: true });
const utf8Encoder = new TextEncoder();

/** The 16 raw bytes of an ID as a string (one char per byte). */
export function idFromBytes(b: Uint8Array): string {
  return String.fromCharCode(...b);
}

/** An ID string back to its 16 bytes; throws on anything else. */
export function idToBytes(id: string): Uint8Array {
  if (typeof id !== "string" || id.length !== ID_LENGTH) {
    throw new TypeError(`an entity ID is ${ID_LENGTH} characters, got ${JSON.stringify(id)}`);
  }
  const out = new Uint8Array(ID_LENGTH);
  for (let i = 0; i < ID_LENGTH; i++) {
    const c = id.charCodeAt(i);
    if (c > 0x7f) throw new TypeError(`entity ID ${JSON.stringify(id)} is not ASCII`);
    out[i] = c;
  }
  return out;
}

class PayloadReader {
  pos = 0;
  private readonly view: DataView;
  constructor(
    private readonly buf: Uint8Array,
    public msgType: number,
  ) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  get left(): number {
    return this.buf.length - this.pos;
  }
  fail(what: string): never {
    throw new ProtocolError(`message ${this.msgType}: ${what}`, this.msgType);
  }
  take(n: number, what: string): Uint8Array {
    if (n > this.left) this.fail(`${what}: need ${n} bytes at offset ${this.pos}, have ${this.left}`);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  u8(what: string): number {
    return this.take(1, what)[0];
  }
  u16(what: string): number {
    const p = this.pos;
    this.take(2, what);
    return this.view.getUint16(p, true);
  }
  u32(what: string): number {
    const p = this.pos;
    this.take(4, what);
    return this.view.getUint32(p, true);
  }
  f32(what: string): number {
    const p = this.pos;
    this.take(4, what);
    return this.view.getFloat32(p, true);
  }
  bool(what: string): boolean {
    return this.u8(what) !== 0;
  }
  id(what: string): string {
    return idFromBytes(this.take(ID_LENGTH, what));
  }
  varStr(what: string): string {
    const b = this.take(this.u32(`${what} length`), what);
    try {
      return utf8Decoder.decode(b);
    } catch {
      this.fail(`${what} is not UTF-8`);
    }
  }
  data(what: string): Value {
    const b = this.take(this.u32(`${what} length`), what);
    try {
      return decode(b);
    } catch (e) {
      if (e instanceof MsgpackError) this.fail(`${what}: ${e.message}`);
      throw e;
    }
  }
  args(): Value[] {
    const n = this.u16("args count");
    const out: Value[] = [];
    for (let i = 0; i < n; i++) out.push(this.data(`arg${i}`));
    return out;
  }
  posYaw(): PosYaw {
    return { x: this.f32("x"), y: this.f32("y"), z: this.f32("z"), yaw: this.f32("yaw") };
  }
  /** nil (a root attribute) or an array of keys and indices, innermost first; returned root first. */
  path(): PathStep[] {
    const v = this.data("path");
    if (v === null) return [];
    if (!Array.isArray(v)) this.fail("path is neither nil nor an array");
    const out: PathStep[] = [];
    for (let i = v.length - 1; i >= 0; i--) {
      const s = v[i];
      if (typeof s === "string") out.push(s);
      else if (typeof s === "number" && Number.isInteger(s) && s >= 0) out.push(s);
      else this.fail(`path step ${i} is not a string or a list index`);
    }
    return out;
  }
}

const KNOWN = new Set([1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009, 1012, 1501, 1502]);

/** Decodes one payload from the server (starting with its u16 message type). */
export function decodeServerMessage(payload: Uint8Array): ServerMessage {
  if (payload.length < 2) throw new ProtocolError(`frame of ${payload.length} bytes has no message type`);
  const r = new PayloadReader(payload, 0);
  const t = r.u16("msgtype");
  r.msgType = t;
  if (!KNOWN.has(t)) throw new UnknownMessageError(t);
  if (t >= CLIENT_HEADER_FIRST && t <= CLIENT_HEADER_LAST) r.take(2 + ID_LENGTH, "gateid and clientid");
  let m: ServerMessage;
  switch (t) {
    case 1002: {
      const isPlayer = r.bool("isPlayer");
      const id = r.id("eid");
      const typeName = r.varStr("typeName");
      const p = r.posYaw();
      m = { kind: "create", msgType: t, isPlayer, id, typeName, ...p, clientData: r.data("clientData") };
      break;
    }
    case 1003: {
      const typeName = r.varStr("typeName");
      m = { kind: "destroy", msgType: t, typeName, id: r.id("eid") };
      break;
    }
    case 1004: {
      const id = r.id("eid");
      const path = r.path();
      const key = r.varStr("key");
      m = { kind: "mapSet", msgType: t, id, path, key, value: r.data("val") };
      break;
    }
    case 1005: {
      const id = r.id("eid");
      const path = r.path();
      m = { kind: "mapDelete", msgType: t, id, path, key: r.varStr("key") };
      break;
    }
    case 1006: {
      const id = r.id("eid");
      const path = r.path();
      const index = r.u32("index");
      m = { kind: "listSet", msgType: t, id, path, index, value: r.data("val") };
      break;
    }
    case 1007: {
      const id = r.id("eid");
      m = { kind: "listPop", msgType: t, id, path: r.path() };
      break;
    }
    case 1008: {
      const id = r.id("eid");
      const path = r.path();
      m = { kind: "listAppend", msgType: t, id, path, value: r.data("val") };
      break;
    }
    case 1009: {
      const id = r.id("eid");
      const method = r.varStr("method");
      m = { kind: "call", msgType: t, id, method, args: r.args() };
      break;
    }
    case 1012: {
      const id = r.id("eid");
      m = { kind: "mapClear", msgType: t, id, path: r.path() };
      break;
    }
    case 1501: {
      const op = r.u8("op");
      const key = r.varStr("key");
      const value = r.varStr("val");
      const method = r.varStr("method");
      m = { kind: "filteredCall", msgType: t, op, key, value, method, args: r.args() };
      break;
    }
    case 1502: {
      if (r.left % 32 !== 0) r.fail(`${r.left} bytes of records, not a multiple of 32`);
      const records: Array<{ id: string } & PosYaw> = [];
      while (r.left > 0) {
        const id = r.id("eid");
        records.push({ id, ...r.posYaw() });
      }
      m = { kind: "positions", msgType: t, records };
      break;
    }
    default:
      throw new UnknownMessageError(t);
  }
  if (r.left !== 0) r.fail(`${r.left} trailing bytes`);
  return m;
}

class PayloadWriter {
  private parts: Uint8Array[] = [];
  private len = 0;
  raw(b: Uint8Array): this {
    this.parts.push(b);
    this.len += b.length;
    return this;
  }
  u16(v: number): this {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, v, true);
    return this.raw(b);
  }
  u32(v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    return this.raw(b);
  }
  f32(v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    return this.raw(b);
  }
  result(): Uint8Array {
    const out = new Uint8Array(this.len);
    let p = 0;
    for (const b of this.parts) {
      out.set(b, p);
      p += b.length;
    }
    return out;
  }
}

/** Payload of 11 MT_CALL_ENTITY_METHOD_FROM_CLIENT: eid, VarStr method, Args. */
export function encodeCall(id: string, method: string, args: readonly Encodable[]): Uint8Array {
  if (args.length > 0xffff) throw new RangeError(`${args.length} arguments: at most 65535`);
  const w = new PayloadWriter().u16(MsgType.CALL_ENTITY_METHOD_FROM_CLIENT).raw(idToBytes(id));
  const m = utf8Encoder.encode(method);
  w.u32(m.length).raw(m).u16(args.length);
  for (const a of args) {
    const b = encode(a);
    w.u32(b.length).raw(b);
  }
  return w.result();
}

/** Payload of 12 MT_SYNC_POSITION_YAW_FROM_CLIENT: eid and four f32 (34 bytes). */
export function encodeSyncPosition(id: string, p: PosYaw): Uint8Array {
  return new PayloadWriter()
    .u16(MsgType.SYNC_POSITION_YAW_FROM_CLIENT)
    .raw(idToBytes(id))
    .f32(p.x)
    .f32(p.y)
    .f32(p.z)
    .f32(p.yaw)
    .result();
}

/** Payload of 2001 MT_HEARTBEAT_FROM_CLIENT (no body). */
export function encodeHeartbeat(): Uint8Array {
  return new PayloadWriter().u16(MsgType.HEARTBEAT_FROM_CLIENT).result();
}
