// msgpack encoding and decoding with the protocol's rules (docs/PROTOCOL.md §3.2).
//
// Decoding accepts every msgpack form. Encoding writes what GoWorld's Go client writes:
// every integer as int64 `d3` (a bigint above the int64 range as uint64 `cf`), every other
// number as float64 `cb`, strings/containers with the smallest header that fits.

/** A msgpack extension value (type -128..127 and its raw bytes). */
export class Ext {
  constructor(
    public readonly type: number,
    public readonly data: Uint8Array,
  ) {}
}

/** Wraps a number so that it is encoded as float64 `cb` even when it is an integer (2.0). */
export class Float64 {
  constructor(public readonly value: number) {}
}

/** Shorthand for `new Float64(value)`. */
export function float64(value: number): Float64 {
  return new Float64(value);
}

/** A msgpack map decoded as a plain object (keys are strings). */
export interface ValueMap {
  [key: string]: Value;
}

/**
 * A msgpack value as this library represents it. Integers are numbers, or bigints outside
 * the safe integer range; bin is a Uint8Array; maps are plain objects.
 */
export type Value =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | Ext
  | Value[]
  | ValueMap;

/** What `encode` accepts: a Value, plus Float64 wrappers, `undefined` (as nil) and JS Maps. */
export type Encodable =
  | Value
  | undefined
  | Float64
  | Encodable[]
  | Map<Encodable, Encodable>
  | { [key: string]: Encodable };

/** Malformed msgpack bytes, or a value that cannot be encoded. */
export class MsgpackError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MsgpackError";
  }
}

const utf8Decoder = new TextDecoder("utf-8", { fatal: true });
const utf8Encoder = new TextEncoder();

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

/** Sets `obj[key] = v` without ever touching the prototype (`__proto__` keys included). */
export function setOwn(obj: ValueMap, key: string, v: Value): void {
  if (key === "__proto__") {
    Object.defineProperty(obj, key, { value: v, enumerable: true, writable: true, configurable: true });
  } else {
    obj[key] = v;
  }
}

function bigToValue(b: bigint): number | bigint {
  return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
}

// ---------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------

class Reader {
  pos = 0;
  private readonly view: DataView;
  constructor(private readonly buf: Uint8Array) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  need(n: number): void {
    if (this.pos + n > this.buf.length) {
      throw new MsgpackError(`truncated msgpack: need ${n} bytes at offset ${this.pos}, have ${this.buf.length - this.pos}`);
    }
  }
  u8(): number {
    this.need(1);
    return this.buf[this.pos++];
  }
  u16(): number {
    this.need(2);
    const v = this.view.getUint16(this.pos);
    this.pos += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos);
    this.pos += 4;
    return v;
  }
  bytes(n: number): Uint8Array {
    this.need(n);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  value(depth: number): Value {
    if (depth > 512) throw new MsgpackError("msgpack nested too deeply");
    const tag = this.u8();
    if (tag <= 0x7f) return tag;
    if (tag >= 0xe0) return tag - 0x100;
    if (tag >= 0xa0 && tag <= 0xbf) return this.str(tag & 0x1f);
    if (tag >= 0x90 && tag <= 0x9f) return this.array(tag & 0x0f, depth);
    if (tag >= 0x80 && tag <= 0x8f) return this.map(tag & 0x0f, depth);
    const v = this.view;
    switch (tag) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        return this.bytes(this.u8()).slice();
      case 0xc5:
        return this.bytes(this.u16()).slice();
      case 0xc6:
        return this.bytes(this.u32()).slice();
      case 0xc7:
        return this.ext(this.u8());
      case 0xc8:
        return this.ext(this.u16());
      case 0xc9:
        return this.ext(this.u32());
      case 0xca: {
        this.need(4);
        const f = v.getFloat32(this.pos);
        this.pos += 4;
        return f;
      }
      case 0xcb: {
        this.need(8);
        const f = v.getFloat64(this.pos);
        this.pos += 8;
        return f;
      }
      case 0xcc:
        return this.u8();
      case 0xcd:
        return this.u16();
      case 0xce:
        return this.u32();
      case 0xcf: {
        this.need(8);
        const b = v.getBigUint64(this.pos);
        this.pos += 8;
        return bigToValue(b);
      }
      case 0xd0: {
        this.need(1);
        return v.getInt8(this.pos++);
      }
      case 0xd1: {
        this.need(2);
        const n = v.getInt16(this.pos);
        this.pos += 2;
        return n;
      }
      case 0xd2: {
        this.need(4);
        const n = v.getInt32(this.pos);
        this.pos += 4;
        return n;
      }
      case 0xd3: {
        this.need(8);
        const b = v.getBigInt64(this.pos);
        this.pos += 8;
        return bigToValue(b);
      }
      case 0xd4:
        return this.ext(1);
      case 0xd5:
        return this.ext(2);
      case 0xd6:
        return this.ext(4);
      case 0xd7:
        return this.ext(8);
      case 0xd8:
        return this.ext(16);
      case 0xd9:
        return this.str(this.u8());
      case 0xda:
        return this.str(this.u16());
      case 0xdb:
        return this.str(this.u32());
      case 0xdc:
        return this.array(this.u16(), depth);
      case 0xdd:
        return this.array(this.u32(), depth);
      case 0xde:
        return this.map(this.u16(), depth);
      case 0xdf:
        return this.map(this.u32(), depth);
      default:
        throw new MsgpackError(`invalid msgpack tag 0x${tag.toString(16)} at offset ${this.pos - 1}`);
    }
  }
  str(n: number): string {
    const b = this.bytes(n);
    try {
      return utf8Decoder.decode(b);
    } catch {
      throw new MsgpackError(`msgpack string of ${n} bytes is not UTF-8`);
    }
  }
  ext(n: number): Ext {
    this.need(1 + n);
    const type = this.view.getInt8(this.pos++);
    return new Ext(type, this.bytes(n).slice());
  }
  array(n: number, depth: number): Value[] {
    // Every element takes at least one byte: refuse counts the input cannot hold.
    this.need(n);
    const out: Value[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = this.value(depth + 1);
    return out;
  }
  map(n: number, depth: number): ValueMap {
    this.need(2 * n);
    const out: ValueMap = {};
    for (let i = 0; i < n; i++) {
      const k = this.value(depth + 1);
      let key: string;
      if (typeof k === "string") key = k;
      else if (typeof k === "number" || typeof k === "bigint" || typeof k === "boolean" || k === null) key = String(k);
      else throw new MsgpackError("msgpack map key that is not a string or a scalar");
      setOwn(out, key, this.value(depth + 1));
    }
    return out;
  }
}

/** Decodes exactly one msgpack value filling all of `bytes` (trailing bytes are an error). */
export function decode(bytes: Uint8Array): Value {
  const r = new Reader(bytes);
  const v = r.value(0);
  if (r.pos !== bytes.length) {
    throw new MsgpackError(`${bytes.length - r.pos} trailing bytes after a msgpack value`);
  }
  return v;
}

/** Decodes one msgpack value at the start of `bytes`; returns it and the bytes it used. */
export function decodePrefix(bytes: Uint8Array): { value: Value; used: number } {
  const r = new Reader(bytes);
  const value = r.value(0);
  return { value, used: r.pos };
}

// ---------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------

class Writer {
  buf = new Uint8Array(64);
  view = new DataView(this.buf.buffer);
  len = 0;
  reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const nb = new Uint8Array(cap);
    nb.set(this.buf.subarray(0, this.len));
    this.buf = nb;
    this.view = new DataView(nb.buffer);
  }
  u8(v: number): void {
    this.reserve(1);
    this.buf[this.len++] = v;
  }
  u16(v: number): void {
    this.reserve(2);
    this.view.setUint16(this.len, v);
    this.len += 2;
  }
  u32(v: number): void {
    this.reserve(4);
    this.view.setUint32(this.len, v);
    this.len += 4;
  }
  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  header(n: number, fix: [number, number] | null, tags: [number, number, number]): void {
    if (fix && n <= fix[1]) this.u8(fix[0] | n);
    else if (n <= 0xff && tags[0] !== 0) {
      this.u8(tags[0]);
      this.u8(n);
    } else if (n <= 0xffff) {
      this.u8(tags[1]);
      this.u16(n);
    } else if (n <= 0xffffffff) {
      this.u8(tags[2]);
      this.u32(n);
    } else throw new MsgpackError(`msgpack length ${n} too large`);
  }
  int(b: bigint): void {
    this.reserve(9);
    if (b >= INT64_MIN && b <= INT64_MAX) {
      this.buf[this.len++] = 0xd3;
      this.view.setBigInt64(this.len, b);
    } else if (b > INT64_MAX && b <= UINT64_MAX) {
      this.buf[this.len++] = 0xcf;
      this.view.setBigUint64(this.len, b);
    } else throw new MsgpackError(`integer ${b} outside the int64/uint64 range`);
    this.len += 8;
  }
  float(f: number): void {
    this.reserve(9);
    this.buf[this.len++] = 0xcb;
    this.view.setFloat64(this.len, f);
    this.len += 8;
  }
  value(v: Encodable, depth: number): void {
    if (depth > 512) throw new MsgpackError("value nested too deeply (a cycle?)");
    if (v === null || v === undefined) return this.u8(0xc0);
    switch (typeof v) {
      case "boolean":
        return this.u8(v ? 0xc3 : 0xc2);
      case "number":
        if (Number.isInteger(v) && v >= -(2 ** 63) && v < 2 ** 63) return this.int(BigInt(v));
        return this.float(v);
      case "bigint":
        return this.int(v);
      case "string": {
        const b = utf8Encoder.encode(v);
        this.header(b.length, [0xa0, 31], [0xd9, 0xda, 0xdb]);
        return this.bytes(b);
      }
      case "object":
        break;
      default:
        throw new MsgpackError(`cannot encode a ${typeof v}`);
    }
    if (v instanceof Float64) return this.float(v.value);
    if (v instanceof Uint8Array) {
      this.header(v.length, null, [0xc4, 0xc5, 0xc6]);
      return this.bytes(v);
    }
    if (v instanceof Ext) {
      const n = v.data.length;
      const fixed = [1, 2, 4, 8, 16].indexOf(n);
      if (fixed >= 0) this.u8(0xd4 + fixed);
      else this.header(n, null, [0xc7, 0xc8, 0xc9]);
      this.u8(v.type & 0xff);
      return this.bytes(v.data);
    }
    if (Array.isArray(v)) {
      this.header(v.length, [0x90, 15], [0, 0xdc, 0xdd]);
      for (const it of v) this.value(it, depth + 1);
      return;
    }
    if (v instanceof Map) {
      this.header(v.size, [0x80, 15], [0, 0xde, 0xdf]);
      for (const [k, it] of v) {
        this.value(k, depth + 1);
        this.value(it, depth + 1);
      }
      return;
    }
    const keys = Object.keys(v);
    this.header(keys.length, [0x80, 15], [0, 0xde, 0xdf]);
    for (const k of keys) {
      this.value(k, depth + 1);
      this.value((v as { [key: string]: Encodable })[k], depth + 1);
    }
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

/** Encodes `v` as msgpack with the protocol's rules (integers `d3`, floats `cb`). */
export function encode(v: Encodable): Uint8Array {
  const w = new Writer();
  w.value(v, 0);
  return w.result();
}
