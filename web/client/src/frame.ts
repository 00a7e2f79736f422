// Length-prefixed framing (docs/PROTOCOL.md §2): a u32 little-endian payload length, then
// the payload. The WebSocket carries these frames as one byte stream: a message may hold
// several frames or part of one, so FrameReader reassembles on the length alone.

/** The stream broke the framing rules (a frame over the limit, an empty payload). */
export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FrameError";
  }
}

/** Default limit on a frame from the server: 32 MiB, the server links' own limit. */
export const DEFAULT_MAX_FRAME = 32 << 20;

/** Prefixes `payload` with its u32 LE length: the bytes to put on the wire. */
export function frame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + payload.length);
  new DataView(out.buffer).setUint32(0, payload.length, true);
  out.set(payload, 4);
  return out;
}

/** Reassembles payloads from chunks of the byte stream. */
export class FrameReader {
  private buf = new Uint8Array(0);
  private start = 0;
  private end = 0;

  constructor(private readonly maxFrame: number = DEFAULT_MAX_FRAME) {}

  /** Bytes received but not yet part of a whole frame. */
  get pending(): number {
    return this.end - this.start;
  }

  /**
   * Adds `chunk` and returns every payload it completed, in order (each a fresh copy).
   * Throws FrameError on a length over the limit or a zero-length payload; the reader is
   * unusable after that (the connection must close).
   */
  push(chunk: Uint8Array): Uint8Array[] {
    this.append(chunk);
    const out: Uint8Array[] = [];
    for (;;) {
      const avail = this.end - this.start;
      if (avail < 4) break;
      const b = this.buf;
      const s = this.start;
      const n = (b[s] | (b[s + 1] << 8) | (b[s + 2] << 16) | (b[s + 3] << 24)) >>> 0;
      if (n === 0) throw new FrameError("frame of 0 bytes has no message type");
      if (n > this.maxFrame) throw new FrameError(`frame of ${n} bytes exceeds the limit of ${this.maxFrame}`);
      if (avail < 4 + n) break;
      out.push(b.slice(s + 4, s + 4 + n));
      this.start += 4 + n;
    }
    if (this.start === this.end) this.start = this.end = 0;
    return out;
  }

  /** Drops buffered bytes (for a new connection). */
  reset(): void {
    this.buf = new Uint8Array(0);
    this.start = this.end = 0;
  }

  private append(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (this.end + chunk.length > this.buf.length) {
      const live = this.end - this.start;
      let cap = Math.max(1024, this.buf.length);
      while (cap < live + chunk.length) cap *= 2;
      if (cap === this.buf.length) {
        this.buf.copyWithin(0, this.start, this.end);
      } else {
        const nb = new Uint8Array(cap);
        nb.set(this.buf.subarray(this.start, this.end), 0);
        this.buf = nb;
      }
      this.start = 0;
      this.end = live;
    }
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
  }
}
