// Test helper: the golden frames of docs/PROTOCOL.md, extracted at test time exactly as
// common/src/proto/codec_tests.rs `doc_golden_blocks` does (every fenced block whose info
// string is `hex golden <name>`; a name may appear more than once, with the same bytes).

import { readFileSync } from "node:fs";

export const PROTOCOL_MD = new URL("../../../docs/PROTOCOL.md", import.meta.url);

export function docGoldenBlocks(doc: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const lines = doc.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const t = lines[i].trim();
    if (!t.startsWith("```hex golden ")) continue;
    const name = t.slice("```hex golden ".length).trim();
    let hex = "";
    for (i++; i < lines.length; i++) {
      if (lines[i].trimStart().startsWith("```")) break;
      hex += lines[i].trim();
    }
    out.push([name, hex]);
  }
  return out;
}

export function hexDecode(hex: string): Uint8Array {
  const clean = hex.replace(/\s+/g, "");
  if (clean.length % 2 !== 0 || /[^0-9a-fA-F]/.test(clean)) throw new Error(`bad hex: ${hex}`);
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function toHex(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

/** Every golden block of PROTOCOL.md, name -> frame bytes (length prefix included). */
export function goldenFrames(): Map<string, Uint8Array> {
  const doc = readFileSync(PROTOCOL_MD, "utf8");
  const m = new Map<string, Uint8Array>();
  for (const [name, hex] of docGoldenBlocks(doc)) {
    const b = hexDecode(hex);
    const prev = m.get(name);
    if (prev && toHex(prev) !== toHex(b)) throw new Error(`golden block ${name} appears twice with different bytes`);
    m.set(name, b);
  }
  return m;
}

/** The payload of a frame, checking that its length prefix is right. */
export function payloadOf(frameBytes: Uint8Array): Uint8Array {
  const n = new DataView(frameBytes.buffer, frameBytes.byteOffset).getUint32(0, true);
  if (n !== frameBytes.length - 4) throw new Error(`length prefix ${n} but ${frameBytes.length - 4} payload bytes`);
  return frameBytes.subarray(4);
}

/** The u16 message type of a frame. */
export function msgTypeOf(frameBytes: Uint8Array): number {
  return frameBytes[4] | (frameBytes[5] << 8);
}
