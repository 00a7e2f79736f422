// Test helper: frames as the gate sends them to a client (built independently of the
// library's decoder, with its msgpack encoder for values), and an in-memory fake socket.

import { encode, Encodable, WebSocketLike } from "../dist/index.js";

const enc = new TextEncoder();
const CLIENT_ID = "awVBNWhsgjH.AAAD";

class Bytes {
  parts: number[] = [];
  u8(v: number): this {
    this.parts.push(v & 0xff);
    return this;
  }
  u16(v: number): this {
    return this.u8(v).u8(v >> 8);
  }
  u32(v: number): this {
    return this.u16(v & 0xffff).u16(v >>> 16);
  }
  f32(v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    return this.raw(b);
  }
  raw(b: Uint8Array | number[]): this {
    for (const x of b) this.parts.push(x);
    return this;
  }
  str(s: string): this {
    const b = enc.encode(s);
    return this.u32(b.length).raw(b);
  }
  id(s: string): this {
    if (s.length !== 16) throw new Error(`bad id ${s}`);
    return this.raw(enc.encode(s));
  }
  data(v: Encodable): this {
    const b = encode(v);
    return this.u32(b.length).raw(b);
  }
  frame(): Uint8Array {
    const p = new Bytes().u32(this.parts.length).raw(this.parts);
    return new Uint8Array(p.parts);
  }
}

function toClient(t: number): Bytes {
  return new Bytes().u16(t).u16(1).id(CLIENT_ID);
}

/** Wire path: innermost first, nil for the root. */
type WirePath = Array<string | number> | null;

export const S = {
  create(id: string, type: string, isPlayer: boolean, pos: [number, number, number, number], data: Encodable = {}): Uint8Array {
    const b = toClient(1002).u8(isPlayer ? 1 : 0).id(id).str(type);
    for (const f of pos) b.f32(f);
    return b.data(data).frame();
  },
  destroy(id: string, type: string): Uint8Array {
    return toClient(1003).str(type).id(id).frame();
  },
  mapSet(id: string, path: WirePath, key: string, val: Encodable): Uint8Array {
    return toClient(1004).id(id).data(path).str(key).data(val).frame();
  },
  mapDel(id: string, path: WirePath, key: string): Uint8Array {
    return toClient(1005).id(id).data(path).str(key).frame();
  },
  listSet(id: string, path: WirePath, index: number, val: Encodable): Uint8Array {
    return toClient(1006).id(id).data(path).u32(index).data(val).frame();
  },
  listPop(id: string, path: WirePath): Uint8Array {
    return toClient(1007).id(id).data(path).frame();
  },
  listAppend(id: string, path: WirePath, val: Encodable): Uint8Array {
    return toClient(1008).id(id).data(path).data(val).frame();
  },
  mapClear(id: string, path: WirePath): Uint8Array {
    return toClient(1012).id(id).data(path).frame();
  },
  call(id: string, method: string, args: Encodable[]): Uint8Array {
    const b = toClient(1009).id(id).str(method).u16(args.length);
    for (const a of args) b.data(a);
    return b.frame();
  },
  filtered(method: string, args: Encodable[]): Uint8Array {
    const b = new Bytes().u16(1501).u8(0).str("").str("").str(method).u16(args.length);
    for (const a of args) b.data(a);
    return b.frame();
  },
  positions(records: Array<[string, number, number, number, number]>): Uint8Array {
    const b = new Bytes().u16(1502);
    for (const [id, x, y, z, yaw] of records) b.id(id).f32(x).f32(y).f32(z).f32(yaw);
    return b.frame();
  },
  raw(payload: number[]): Uint8Array {
    return new Bytes().raw(payload).frame();
  },
};

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** An in-memory WebSocket: the test plays the gate. */
export class FakeSocket implements WebSocketLike {
  binaryType = "blob";
  readyState = 0;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code?: number; reason?: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  sent: Uint8Array[] = [];
  closedByClient: { code?: number; reason?: string } | null = null;

  constructor(readonly url: string) {}

  send(data: Uint8Array): void {
    if (this.readyState !== 1) throw new Error("send on a socket that is not open");
    this.sent.push(data.slice());
  }
  close(code?: number, reason?: string): void {
    this.closedByClient = { code, reason };
    this.readyState = 3;
  }
  // The gate's side:
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  /** Delivers `bytes` as one binary message (an ArrayBuffer, as with binaryType arraybuffer). */
  deliver(bytes: Uint8Array): void {
    const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    this.onmessage?.({ data: ab });
  }
  /** Delivers `bytes` split into messages of the given sizes (the rest in a last one). */
  deliverSplit(bytes: Uint8Array, sizes: number[]): void {
    let o = 0;
    for (const n of sizes) {
      if (o >= bytes.length) break;
      this.deliver(bytes.subarray(o, o + n));
      o += n;
    }
    if (o < bytes.length) this.deliver(bytes.subarray(o));
  }
  serverClose(): void {
    this.readyState = 3;
    this.onclose?.({ code: 1006, reason: "" });
  }
}

/** A socket factory that records the sockets it made. */
export function fakeFactory(): { sockets: FakeSocket[]; create: (url: string) => FakeSocket } {
  const sockets: FakeSocket[] = [];
  return {
    sockets,
    create: (url: string) => {
      const s = new FakeSocket(url);
      sockets.push(s);
      return s;
    },
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
