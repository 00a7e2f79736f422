// The golden frames of docs/PROTOCOL.md as fixtures: every frame a client receives decodes
// to the fields the document's tables give; every frame a client sends is encoded byte for
// byte as its dump.

import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeServerMessage, encodeCall, encodeHeartbeat, encodeSyncPosition, frame, ServerMessage } from "../dist/index.js";
import { goldenFrames, msgTypeOf, payloadOf, toHex, docGoldenBlocks, hexDecode } from "./golden.js";

const CLIENT_BOUND = new Set([1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009, 1012, 1501, 1502]);
// Frames of a client-bound type in the form they take between servers (§7).
const SERVER_FORMS = new Set(["sync_position_yaw_on_clients_game"]);

// The values of the document's field tables and prose for each frame a client receives.
const RECEIVED: Record<string, ServerMessage> = {
  create_entity_on_client_space: {
    kind: "create", msgType: 1002, isPlayer: false, id: "awVBNWhsgjH2AAAP", typeName: "__space__",
    x: 0, y: 0, z: 0, yaw: 0, clientData: { _K: 100 },
  },
  create_entity_on_client_aoitester: {
    kind: "create", msgType: 1002, isPlayer: false, id: "awVBPWhsgjH2AAA6", typeName: "AOITester",
    x: -190, y: 0, z: -33, yaw: 0, clientData: {},
  },
  login_1_create_account: {
    kind: "create", msgType: 1002, isPlayer: true, id: "awVBNWhsgjH.AAAG", typeName: "Account",
    x: 0, y: 0, z: 0, yaw: 0, clientData: {},
  },
  login_5_create_avatar: {
    kind: "create", msgType: 1002, isPlayer: true, id: "awVBNWhsgjH2AAAN", typeName: "Avatar",
    x: 0, y: 0, z: 0, yaw: 0,
    clientData: { exp: 0, prof: 1, testListField: [], name: "无名", mails: {}, level: 1 },
  },
  login_6_create_space: {
    kind: "create", msgType: 1002, isPlayer: false, id: "awVBNWhsgjH2AAAQ", typeName: "__space__",
    x: 0, y: 0, z: 0, yaw: 0, clientData: { _K: 98 },
  },
  destroy_entity_on_client: { kind: "destroy", msgType: 1003, typeName: "__space__", id: "awVBNWhsgjH2AAAP" },
  login_4_destroy_account: { kind: "destroy", msgType: 1003, typeName: "Account", id: "awVBNWhsgjH.AAAG" },
  notify_map_attr_change_on_client: {
    kind: "mapSet", msgType: 1004, id: "awVBNWhsgjH2AAAN",
    // wire path [0, 1, "key2", "key1", "complexAttr"], innermost first
    path: ["complexAttr", "key1", "key2", 1, 0], key: "finalkey", value: "iamhere",
  },
  notify_list_attr_change_on_client: {
    kind: "listSet", msgType: 1006, id: "awVB02hsgjNPAAAE", path: ["testListField"], index: 0, value: 1,
  },
  notify_list_attr_pop_on_client: { kind: "listPop", msgType: 1007, id: "awVBNWhsgjH2AAAM", path: ["testListField"] },
  notify_list_attr_append_on_client: {
    kind: "listAppend", msgType: 1008, id: "awVBNWhsgjH2AAAL", path: ["testListField"], value: 64,
  },
  call_entity_method_on_client: {
    kind: "call", msgType: 1009, id: "awVBNWhsgjH2AAAL", method: "OnTestListField", args: [[64]],
  },
  call_entity_method_on_client_str: {
    kind: "call", msgType: 1009, id: "awVBNWhsgjH2AAAM", method: "TestCallAllPlzEcho", args: ["awVBNWhsgjH2AAAM"],
  },
  login_3_on_login: { kind: "call", msgType: 1009, id: "awVBNWhsgjH.AAAG", method: "OnLogin", args: [true] },
  notify_map_attr_clear_on_client: { kind: "mapClear", msgType: 1012, id: "awVBNWhsgjH2AAAN", path: ["complexAttr"] },
  call_filtered_clients: {
    kind: "filteredCall", msgType: 1501, op: 0, key: "", value: "", method: "OnSay",
    args: ["awVBNWhsgjH2AAAN", "无名", "world", "this is a message in world channel"],
  },
  login_7_sync_on_client: {
    kind: "positions", msgType: 1502, records: [{ id: "awVBNWhsgjH2AAAN", x: -190, y: 0, z: -33, yaw: 0 }],
  },
};

// The frames a client sends, as this library encodes them from the document's values.
const SENT: Record<string, () => Uint8Array> = {
  call_entity_method_from_client: () => encodeCall("awVBNWhsgjH.AAAH", "Login", ["test2", "123456"]),
  login_2_login: () => encodeCall("awVBNWhsgjH.AAAG", "Login", ["test3", "123456"]),
  sync_position_yaw_from_client: () =>
    encodeSyncPosition("awVBNWhsgjH2AAAL", { x: -150.998978, y: 0, z: 397.990417, yaw: 1.26646602 }),
  // §10 gives no table for this one: -189.9998, 0, -33.006916, 0.60416591 as f32.
  login_8_sync_from_client: () =>
    encodeSyncPosition("awVBNWhsgjH2AAAN", { x: -189.9998016357422, y: 0, z: -33.00691604614258, yaw: 0.6041659116744995 }),
  heartbeat_from_client: () => encodeHeartbeat(),
};

const golden = goldenFrames();

test("PROTOCOL.md has the golden blocks this suite expects", () => {
  const blocks = docGoldenBlocks("x\n```hex golden a\n0102\n 03\n```\n```hex golden b\n```\n");
  assert.deepEqual(blocks, [["a", "010203"], ["b", ""]]);
  assert.ok(golden.size >= 40, `only ${golden.size} distinct golden blocks in PROTOCOL.md`);
  for (const name of [...Object.keys(RECEIVED), ...Object.keys(SENT)]) {
    assert.ok(golden.has(name), `golden block ${name} is missing from PROTOCOL.md`);
  }
});

test("every client-bound golden frame has expected values here", () => {
  let n = 0;
  for (const [name, f] of golden) {
    if (!CLIENT_BOUND.has(msgTypeOf(f)) || SERVER_FORMS.has(name)) continue;
    n++;
    assert.ok(name in RECEIVED, `client-bound golden frame ${name} (type ${msgTypeOf(f)}) has no expectation`);
  }
  assert.equal(n, Object.keys(RECEIVED).length);
});

for (const [name, want] of Object.entries(RECEIVED)) {
  test(`decodes golden ${name}`, () => {
    const f = golden.get(name);
    assert.ok(f, `no golden block ${name}`);
    const m = decodeServerMessage(payloadOf(f));
    assert.deepStrictEqual(m, want);
  });
}

for (const [name, make] of Object.entries(SENT)) {
  test(`encodes golden ${name} byte for byte`, () => {
    const f = golden.get(name);
    assert.ok(f, `no golden block ${name}`);
    assert.equal(toHex(frame(make())), toHex(f));
  });
}

test("the 1001-1499 header is skipped and 1501/1502 have none", () => {
  // 1005 of the §6 example: delete root attribute "k".
  const p = hexDecode("ed030100" + "41".repeat(16) + toHex(new TextEncoder().encode("awVBNWhsgjH2AAAN")) + "01000000c0010000006b");
  assert.deepStrictEqual(decodeServerMessage(p), {
    kind: "mapDelete", msgType: 1005, id: "awVBNWhsgjH2AAAN", path: [], key: "k",
  });
  // A 1502 with the header would not be whole records.
  const sync = payloadOf(golden.get("login_7_sync_on_client")!);
  const withHeader = new Uint8Array([...sync.subarray(0, 2), ...new Uint8Array(18), ...sync.subarray(2)]);
  assert.throws(() => decodeServerMessage(withHeader), /multiple of 32/);
});

test("server-internal golden frames are not client messages", () => {
  for (const name of ["set_game_id_game1", "call_entity_method", "kvreg_register", "sync_position_yaw_on_clients_game"]) {
    const f = golden.get(name);
    assert.ok(f, name);
    assert.throws(() => decodeServerMessage(payloadOf(f)), /unexpected message type|multiple of 32|trailing|need/);
  }
});
