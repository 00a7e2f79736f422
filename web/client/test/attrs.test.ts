// Attribute operations on plain objects/arrays, with nested paths, as GoWorld's client does.

import { test } from "node:test";
import assert from "node:assert/strict";
import { applyAttrOp, AttrError, Entity, showPath, ValueMap } from "../dist/index.js";

test("TestComplexAttr's steps build and clear the nested structure", () => {
  const a: ValueMap = {};
  applyAttrOp(a, { op: "set", path: [], key: "complexAttr", value: {} });
  applyAttrOp(a, { op: "set", path: ["complexAttr"], key: "key1", value: {} });
  applyAttrOp(a, { op: "set", path: ["complexAttr", "key1"], key: "key2", value: [] });
  applyAttrOp(a, { op: "append", path: ["complexAttr", "key1", "key2"], value: true });
  applyAttrOp(a, { op: "append", path: ["complexAttr", "key1", "key2"], value: [] });
  applyAttrOp(a, { op: "append", path: ["complexAttr", "key1", "key2", 1], value: {} });
  applyAttrOp(a, { op: "set", path: ["complexAttr", "key1", "key2", 1, 0], key: "finalkey", value: "iamhere" });
  assert.deepStrictEqual(a, { complexAttr: { key1: { key2: [true, [{ finalkey: "iamhere" }]] } } });
  const e = new Entity("awVBNWhsgjH2AAAN", "Avatar", a);
  assert.equal(e.get(["complexAttr", "key1", "key2", 1, 0, "finalkey"]), "iamhere");
  assert.equal(e.get(["complexAttr", "nope"]), undefined);
  applyAttrOp(a, { op: "clear", path: ["complexAttr"] });
  assert.deepStrictEqual(a, { complexAttr: {} });
});

test("list set, pop and append on a root list; delete and set on the root", () => {
  const a: ValueMap = { testListField: [], name: "无名" };
  applyAttrOp(a, { op: "append", path: ["testListField"], value: 64 });
  applyAttrOp(a, { op: "append", path: ["testListField"], value: 3 });
  assert.equal(applyAttrOp(a, { op: "listSet", path: ["testListField"], index: 0, value: 1 }), 64);
  assert.equal(applyAttrOp(a, { op: "pop", path: ["testListField"] }), 3);
  assert.deepStrictEqual(a.testListField, [1]);
  assert.equal(applyAttrOp(a, { op: "set", path: [], key: "name", value: "Bob" }), "无名");
  assert.equal(applyAttrOp(a, { op: "delete", path: [], key: "name" }), "Bob");
  assert.equal(applyAttrOp(a, { op: "delete", path: [], key: "absent" }), undefined);
  assert.deepStrictEqual(a, { testListField: [1] });
});

test("ops that do not fit the tree throw AttrError and change nothing", () => {
  const a: ValueMap = { m: { k: 1 }, l: [1], s: "x" };
  const before = JSON.stringify(a);
  const bad = [
    { op: "set", path: ["missing"], key: "k", value: 1 },
    { op: "set", path: ["l"], key: "k", value: 1 },
    { op: "set", path: ["m", 0], key: "k", value: 1 },
    { op: "append", path: ["m"], value: 1 },
    { op: "append", path: ["s"], value: 1 },
    { op: "listSet", path: ["l"], index: 1, value: 1 },
    { op: "pop", path: ["l", 5] },
    { op: "clear", path: ["l"] },
    { op: "delete", path: ["s", "x"], key: "k" },
  ] as const;
  for (const op of bad) assert.throws(() => applyAttrOp(a, op as never), AttrError, JSON.stringify(op));
  applyAttrOp(a, { op: "pop", path: ["l"] });
  assert.throws(() => applyAttrOp(a, { op: "pop", path: ["l"] }), /pop from the empty list l/);
  assert.equal(JSON.stringify({ ...a, l: [1] }), before);
});

test("entities: spaces, kinds and path names", () => {
  const s = new Entity("awVBNWhsgjH2AAAQ", "__space__", { _K: 98 });
  assert.equal(s.isSpace, true);
  assert.equal(s.kind, 98);
  const e = new Entity("awVBNWhsgjH2AAAN", "Avatar", { name: "n" });
  assert.equal(e.isSpace, false);
  assert.equal(e.kind, undefined);
  assert.equal(e.attr("name"), "n");
  assert.equal(e.attr("toString"), undefined);
  assert.equal(showPath(["complexAttr", "key1", "key2", 1, 0]), "complexAttr.key1.key2[1][0]");
  assert.equal(showPath([]), "<root>");
});
