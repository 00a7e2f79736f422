// Framing: frames reassembled across any split of the stream, many frames per chunk, limits.

import { test } from "node:test";
import assert from "node:assert/strict";
import { frame, FrameError, FrameReader } from "../dist/index.js";
import { goldenFrames, toHex } from "./golden.js";
import { concat } from "./server.js";

const golden = goldenFrames();
const stream = concat(...[...golden.values()].filter((f) => f.length > 6));
const payloads = [...golden.values()].filter((f) => f.length > 6).map((f) => toHex(f.subarray(4)));

test("a stream split at every byte boundary gives the same frames", () => {
  const sample = stream.subarray(0, 600);
  const whole = new FrameReader().push(sample).map(toHex);
  assert.ok(whole.length >= 5);
  for (let i = 0; i <= sample.length; i++) {
    const r = new FrameReader();
    const got = [...r.push(sample.subarray(0, i)), ...r.push(sample.subarray(i))].map(toHex);
    assert.deepStrictEqual(got, whole, `split at ${i}`);
  }
});

test("byte by byte and all at once", () => {
  const r = new FrameReader();
  const got: string[] = [];
  for (let i = 0; i < stream.length; i++) got.push(...r.push(stream.subarray(i, i + 1)).map(toHex));
  assert.deepStrictEqual(got, payloads);
  assert.equal(r.pending, 0);
  assert.deepStrictEqual(new FrameReader().push(stream).map(toHex), payloads);
});

test("random chunkings of many frames", () => {
  let seed = 12345;
  const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) % n);
  for (let round = 0; round < 50; round++) {
    const r = new FrameReader();
    const got: string[] = [];
    for (let o = 0; o < stream.length; ) {
      const n = 1 + rnd(round % 2 ? 7 : 400);
      got.push(...r.push(stream.subarray(o, o + n)).map(toHex));
      o += n;
    }
    assert.deepStrictEqual(got, payloads);
  }
});

test("payloads are copies and a partial frame stays pending", () => {
  const r = new FrameReader();
  const chunk = frame(new Uint8Array([0xd1, 0x07]));
  const [p] = r.push(chunk);
  chunk.fill(0);
  assert.equal(toHex(p), "d107");
  assert.deepStrictEqual(r.push(new Uint8Array([5, 0, 0])), []);
  assert.equal(r.pending, 3);
  r.reset();
  assert.equal(r.pending, 0);
});

test("a zero-length or oversized frame is a FrameError", () => {
  assert.throws(() => new FrameReader().push(new Uint8Array([0, 0, 0, 0])), FrameError);
  assert.throws(() => new FrameReader(1000).push(new Uint8Array([0xe9, 0x03, 0, 0])), /exceeds the limit of 1000/);
  assert.throws(() => new FrameReader().push(new Uint8Array([0xff, 0xff, 0xff, 0xff])), FrameError);
  // A big frame assembled from many chunks.
  const big = frame(new Uint8Array(200000).fill(9));
  const r = new FrameReader();
  let got: Uint8Array[] = [];
  for (let o = 0; o < big.length; o += 4096) got = got.concat(r.push(big.subarray(o, o + 4096)));
  assert.equal(got.length, 1);
  assert.equal(got[0].length, 200000);
});
