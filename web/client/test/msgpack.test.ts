// msgpack: every form decodes, the encoder writes the protocol's forms, values round-trip.

import { test } from "node:test";
import assert from "node:assert/strict";
import { decode, decodePrefix, encode, Ext, float64, MsgpackError, Value } from "../dist/index.js";
import { hexDecode, toHex } from "./golden.js";

const h = (s: string) => hexDecode(s);

test("decodes every msgpack form", () => {
  const cases: Array<[string, Value]> = [
    ["00", 0], ["7f", 127], ["ff", -1], ["e0", -32],
    ["cc80", 128], ["cdffff", 65535], ["ceffffffff", 4294967295],
    ["cf0000000000000001", 1], ["cfffffffffffffffff", 2n ** 64n - 1n],
    ["d080", -128], ["d1ff00", -256], ["d2ffff0000", -65536],
    ["d3ffffffffffffffff", -1], ["d30000000000000001", 1], ["d38000000000000000", -(2n ** 63n)],
    ["d3001fffffffffffff", Number.MAX_SAFE_INTEGER], ["d30020000000000000", 2n ** 53n],
    ["ca3fc00000", 1.5], ["cb4002666666666666", 2.3],
    ["c0", null], ["c2", false], ["c3", true],
    ["a0", ""], ["a3616263", "abc"], ["d903616263", "abc"], ["da0003616263", "abc"], ["db00000003616263", "abc"],
    ["a6e697a0e5908d", "无名"],
    ["c403010203", new Uint8Array([1, 2, 3])], ["c5000101", new Uint8Array([1])], ["c60000000101", new Uint8Array([1])],
    ["90", []], ["9201a161", [1, "a"]], ["dc000101", [1]], ["dd0000000101", [1]],
    ["80", {}], ["81a16101", { a: 1 }], ["de0001a16101", { a: 1 }], ["df00000001a16101", { a: 1 }],
    ["d40501", new Ext(5, new Uint8Array([1]))], ["d5050102", new Ext(5, new Uint8Array([1, 2]))],
    ["d6ff01020304", new Ext(-1, new Uint8Array([1, 2, 3, 4]))],
    ["d7050102030405060708", new Ext(5, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]))],
    ["d805" + "00".repeat(16), new Ext(5, new Uint8Array(16))],
    ["c70305010203", new Ext(5, new Uint8Array([1, 2, 3]))], ["c8000105aa", new Ext(5, new Uint8Array([0xaa]))],
    ["c90000000105aa", new Ext(5, new Uint8Array([0xaa]))],
    ["8201a1610ba162", { "1": "a", "11": "b" }],
  ];
  for (const [hex, want] of cases) assert.deepStrictEqual(decode(h(hex)), want, hex);
});

test("the encoder writes Go's forms: ints d3, floats cb, smallest headers", () => {
  const cases: Array<[Parameters<typeof encode>[0], string]> = [
    [0, "d30000000000000000"], [1, "d30000000000000001"], [-1, "d3ffffffffffffffff"],
    [2n ** 63n, "cf8000000000000000"], [2.3, "cb4002666666666666"], [float64(2), "cb4000000000000000"],
    [null, "c0"], [undefined, "c0"], [true, "c3"], [false, "c2"],
    ["无名", "a6e697a0e5908d"], ["x".repeat(31), "bf" + "78".repeat(31)], ["x".repeat(32), "d920" + "78".repeat(32)],
    ["x".repeat(256), "da0100" + "78".repeat(256)],
    [[], "90"], [{}, "80"], [[1], "91d30000000000000001"], [{ _K: 98 }, "81a25f4bd30000000000000062"],
    [new Uint8Array([1, 2]), "c4020102"], [new Ext(3, new Uint8Array([9])), "d40309"],
    [new Ext(3, new Uint8Array([1, 2, 3])), "c7030301 0203".replace(" ", "")],
    [new Map<string | number, number>([[1, 2]]), "81d30000000000000001d30000000000000002"],
  ];
  for (const [v, hex] of cases) assert.equal(toHex(encode(v)), hex, JSON.stringify(String(v)));
  assert.equal(toHex(encode(new Array(16).fill(true))), "dc0010" + "c3".repeat(16));
  assert.equal(toHex(encode(new Uint8Array(300))).slice(0, 6), "c5012c");
  assert.throws(() => encode(2n ** 64n), MsgpackError);
  assert.throws(() => encode((() => 1) as never), MsgpackError);
});

test("values round-trip through encode and decode", () => {
  const values: Value[] = [
    0, 1, -1, 127, -33, 65536, -(2 ** 40), Number.MAX_SAFE_INTEGER, 2n ** 62n, -(2n ** 63n), 2n ** 64n - 1n,
    0.5, -2.25, 1e300, Number.POSITIVE_INFINITY, true, false, null, "", "hello", "无名", "x".repeat(70000),
    new Uint8Array(0), new Uint8Array(70000).fill(7), new Ext(-1, new Uint8Array(12)), new Ext(1, new Uint8Array(300)),
    [], [1, [2, [3, {}]]], new Array(70000).fill(1), { a: { b: [1, 2, { c: "d" }] }, e: null },
  ];
  for (const v of values) assert.deepStrictEqual(decode(encode(v)), v);
  const big: Record<string, number> = {};
  for (let i = 0; i < 70000; i++) big[`k${i}`] = i;
  assert.deepStrictEqual(decode(encode(big)), big);
  assert.ok(Number.isNaN(decode(encode(NaN))));
});

test("a __proto__ key is data, not a prototype", () => {
  const v = decode(h("81a95f5f70726f746f5f5f81a178d30000000000000001")) as Record<string, Value>;
  assert.equal(Object.getPrototypeOf(v), Object.prototype);
  assert.deepStrictEqual(Object.keys(v), ["__proto__"]);
  assert.equal((v as { x?: unknown }).x, undefined);
});

test("malformed msgpack is a MsgpackError", () => {
  for (const hex of ["", "c1", "d3000000", "a3616263ff", "92d3", "dd ffffffff".replace(" ", ""), "a2c328", "81c401ff01", "c70105"]) {
    assert.throws(() => decode(h(hex)), MsgpackError, hex);
  }
  assert.deepStrictEqual(decodePrefix(h("01ff")), { value: 1, used: 1 });
  let deep = "";
  for (let i = 0; i < 600; i++) deep += "91";
  assert.throws(() => decode(h(deep + "c0")), /deeply/);
});
