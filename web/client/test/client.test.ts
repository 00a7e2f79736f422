// The Client over an in-memory socket: the §10 login transcript, attribute updates, calls
// and handlers, positions, heartbeats, malformed input and reconnection.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ANY_TYPE, Client, ClientError, ClientEvents, ConnectionState, Entity, Value } from "../dist/index.js";
import { goldenFrames, toHex } from "./golden.js";
import { concat, fakeFactory, FakeSocket, S, sleep } from "./server.js";

const golden = goldenFrames();
const g = (name: string) => {
  const f = golden.get(name);
  assert.ok(f, `no golden block ${name}`);
  return f;
};
const ACCOUNT = "awVBNWhsgjH.AAAG";
const AVATAR = "awVBNWhsgjH2AAAN";
const SPACE = "awVBNWhsgjH2AAAQ";

function record<K extends keyof ClientEvents>(c: Client, ...names: K[]): Array<[K, ClientEvents[K]]> {
  const out: Array<[K, ClientEvents[K]]> = [];
  for (const n of names) c.on(n, (p) => out.push([n, p]));
  return out;
}

function setup(opts: Partial<ConstructorParameters<typeof Client>[0]> = {}) {
  const f = fakeFactory();
  const c = new Client({ url: "ws://gate/ws", createSocket: f.create, heartbeatMs: 0, reconnect: false, ...opts });
  const errors: ClientError[] = [];
  c.on("error", (e) => errors.push(e));
  c.connect();
  assert.equal(f.sockets.length, 1);
  const sock = f.sockets[0];
  assert.equal(c.state, "connecting");
  sock.open();
  assert.equal(c.state, "connected");
  assert.equal(sock.binaryType, "arraybuffer");
  return { c, f, sock, errors };
}

/** Plays §10 up to the Avatar's position, the client logging in as the bots do. */
const loggingIn = new WeakSet<Client>();
function login(c: Client, sock: FakeSocket, sizes: number[] = [7, 100, 1, 3, 64]) {
  if (!loggingIn.has(c)) {
    loggingIn.add(c);
    c.on("playerChanged", ({ player }) => {
      if (player?.type === "Account") c.callPlayer("Login", "test3", "123456");
    });
  }
  sock.deliver(g("login_1_create_account"));
  const rest = concat(
    g("login_3_on_login"),
    g("login_4_destroy_account"),
    g("login_5_create_avatar"),
    g("login_6_create_space"),
    g("login_7_sync_on_client"),
  );
  sock.deliverSplit(rest, sizes);
}

test("the §10 login transcript ends with the Avatar as the player, in its space", () => {
  const { c, sock, errors } = setup();
  const events = record(c, "entityCreated", "entityDestroyed", "playerChanged", "spaceChanged", "call", "position");
  let onLogin: Value[] | null = null;
  c.onMethod("Account", "OnLogin", (e, ...args) => {
    assert.equal(e.id, ACCOUNT);
    onLogin = args;
  });
  login(c, sock);
  assert.equal(errors.length, 0, errors.join("; "));
  // The client's Login is the §10 frame byte for byte.
  assert.equal(sock.sent.length, 1);
  assert.equal(toHex(sock.sent[0]), toHex(g("login_2_login")));
  assert.deepStrictEqual(onLogin, [true]);

  const p = c.player;
  assert.ok(p);
  assert.equal(p.id, AVATAR);
  assert.equal(p.type, "Avatar");
  assert.equal(p.isPlayer, true);
  assert.deepStrictEqual([p.x, p.y, p.z, p.yaw], [-190, 0, -33, 0]);
  assert.deepStrictEqual(p.attrs, { exp: 0, prof: 1, testListField: [], name: "无名", mails: {}, level: 1 });
  assert.equal(c.entities.has(ACCOUNT), false);
  assert.equal(c.space?.id, SPACE);
  assert.equal(c.space?.kind, 98);
  assert.equal(c.entities.size, 2);
  assert.deepStrictEqual(c.neighbours(), []);

  const summary = events.map(([n, v]) => {
    const x = v as { id?: string; entity?: Entity; player?: Entity | null; space?: Entity | null; method?: string };
    return `${n}:${x.id ?? x.entity?.id ?? x.player?.id ?? x.space?.id ?? x.method ?? "null"}`;
  });
  assert.deepStrictEqual(summary, [
    `entityCreated:${ACCOUNT}`,
    `playerChanged:${ACCOUNT}`,
    `call:${ACCOUNT}`,
    `entityDestroyed:${ACCOUNT}`,
    `playerChanged:null`,
    `entityCreated:${AVATAR}`,
    `playerChanged:${AVATAR}`,
    `entityCreated:${SPACE}`,
    `spaceChanged:${SPACE}`,
    `position:${AVATAR}`,
  ]);
  const call = events.find(([n]) => n === "call")![1] as ClientEvents["call"];
  assert.equal(call.handled, true);
  assert.equal(call.filtered, false);

  // The client starts reporting its position: §10's frame byte for byte.
  const moves = record(c, "position");
  assert.equal(c.syncPosition(-189.9998016357422, 0, -33.00691604614258, 0.6041659116744995), true);
  assert.equal(toHex(sock.sent[1]), toHex(g("login_8_sync_from_client")));
  assert.equal((moves[0][1] as ClientEvents["position"]).local, true);
  assert.equal(c.player?.x, -189.9998016357422);
});

test("the transcript gives the same result however the stream is split", () => {
  for (const sizes of [[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [400], [17, 33, 2, 90, 5], [2, 2, 2, 200]]) {
    const { c, sock, errors } = setup();
    login(c, sock, sizes);
    assert.equal(errors.length, 0, errors.join("; "));
    assert.equal(c.player?.id, AVATAR);
    assert.equal(c.space?.kind, 98);
    assert.equal(c.player?.z, -33);
  }
});

test("attribute updates keep the player's attrs in sync and fire attrChanged", () => {
  const { c, sock, errors } = setup();
  login(c, sock);
  const changes = record(c, "attrChanged");
  sock.deliver(
    concat(
      S.mapSet(AVATAR, null, "complexAttr", {}),
      S.mapSet(AVATAR, ["complexAttr"], "key1", {}),
      S.mapSet(AVATAR, ["key1", "complexAttr"], "key2", []),
      S.listAppend(AVATAR, ["key2", "key1", "complexAttr"], true),
      S.listAppend(AVATAR, ["key2", "key1", "complexAttr"], []),
      S.listAppend(AVATAR, [1, "key2", "key1", "complexAttr"], {}),
      g("notify_map_attr_change_on_client"),
    ),
  );
  assert.deepStrictEqual(c.player?.attrs.complexAttr, { key1: { key2: [true, [{ finalkey: "iamhere" }]] } });
  const last = changes[changes.length - 1][1] as ClientEvents["attrChanged"];
  assert.deepStrictEqual(
    { op: last.op, path: last.path, key: last.key, value: last.value, name: last.name },
    { op: "set", path: ["complexAttr", "key1", "key2", 1, 0], key: "finalkey", value: "iamhere", name: "complexAttr" },
  );
  sock.deliver(g("notify_map_attr_clear_on_client"));
  assert.deepStrictEqual(c.player?.attrs.complexAttr, {});

  sock.deliver(S.listAppend(AVATAR, ["testListField"], 64));
  sock.deliver(S.listAppend(AVATAR, ["testListField"], 5));
  sock.deliver(S.listSet(AVATAR, ["testListField"], 0, 1));
  sock.deliver(S.listPop(AVATAR, ["testListField"]));
  sock.deliver(S.mapSet(AVATAR, null, "level", 2));
  sock.deliver(S.mapDel(AVATAR, null, "exp"));
  assert.deepStrictEqual(c.player?.attrs, {
    prof: 1, testListField: [1], name: "无名", mails: {}, level: 2, complexAttr: {},
  });
  const ops = changes.map(([, v]) => {
    const x = v as ClientEvents["attrChanged"];
    return `${x.op} ${x.name} ${String(x.key)} ${JSON.stringify(x.old)}`;
  });
  assert.deepStrictEqual(ops.slice(-7), [
    "clear complexAttr undefined undefined",
    "append testListField 0 undefined",
    "append testListField 1 undefined",
    "listSet testListField 0 64",
    "pop testListField undefined 5",
    "set level level 1",
    "delete exp exp 0",
  ]);
  assert.equal(errors.length, 0, errors.join("; "));
});

test("neighbours, positions, destroys and a change of space", () => {
  const { c, sock, errors } = setup();
  login(c, sock);
  const N = "awVBPWhsgjH2AAA6";
  sock.deliver(S.create(N, "Avatar", false, [10, 0, 20, 1], { name: "Bob", level: 3 }));
  sock.deliver(g("create_entity_on_client_aoitester"));
  assert.deepStrictEqual(c.neighbours().map((e) => e.id), [N]); // the AOITester replaced Bob (same ID)
  sock.deliver(S.create("awVBNWhsgjH2AAAB", "Monster", false, [1, 2, 3, 0]));
  sock.deliver(S.positions([["awVBNWhsgjH2AAAB", 5, 6, 7, 0.5], ["zzzzzzzzzzzzzzzz", 1, 1, 1, 1], [AVATAR, 9, 0, 9, 0]]));
  const m = c.entities.get("awVBNWhsgjH2AAAB")!;
  assert.deepStrictEqual([m.x, m.y, m.z, m.yaw], [5, 6, 7, 0.5]);
  assert.deepStrictEqual([c.player?.x, c.player?.z], [9, 9]);
  assert.deepStrictEqual(c.neighbours("Monster").map((e) => e.type), ["Monster"]);

  const spaces = record(c, "spaceChanged");
  sock.deliver(concat(S.destroy(N, "AOITester"), S.destroy("awVBNWhsgjH2AAAB", "Monster"), S.destroy(SPACE, "__space__")));
  assert.equal(c.space, null);
  sock.deliver(g("create_entity_on_client_space"));
  assert.equal((c.space as Entity | null)?.kind, 100);
  assert.deepStrictEqual(spaces.map(([, v]) => (v as ClientEvents["spaceChanged"]).space?.kind ?? null), [null, 100]);
  assert.equal(c.player?.id, AVATAR);
  assert.equal(errors.length, 0, errors.join("; "));
  // A destroy of an unknown entity is reported, not fatal.
  sock.deliver(S.destroy("qqqqqqqqqqqqqqqq", "X"));
  assert.equal(errors.length, 1);
  assert.equal(errors[0].kind, "unknown-entity");
  assert.equal(errors[0].fatal, false);
  assert.equal(c.state, "connected");
});

test("calls from the server reach per-type handlers, ANY_TYPE handlers and the call event", () => {
  const { c, sock, errors } = setup();
  login(c, sock);
  const says: string[] = [];
  c.onMethod("Avatar", "OnSay", (e, id, name, channel, text) => says.push(`${e.id} ${id} ${name} ${channel} ${text}`));
  const any: string[] = [];
  const off = c.registerMethods(ANY_TYPE, { OnTestAOI: (e, t) => any.push(`${e.type} ${t}`) });
  const calls = record(c, "call");
  sock.deliver(g("call_filtered_clients"));
  assert.deepStrictEqual(says, [`${AVATAR} ${AVATAR} 无名 world this is a message in world channel`]);
  const ev = calls[0][1] as ClientEvents["call"];
  assert.equal(ev.filtered, true);
  assert.equal(ev.entity?.id, AVATAR);
  sock.deliver(S.call(AVATAR, "OnTestAOI", ["awVBNWhsgjH2AAAB"]));
  assert.deepStrictEqual(any, ["Avatar awVBNWhsgjH2AAAB"]);
  off();
  sock.deliver(S.call(AVATAR, "OnTestAOI", ["x"]));
  assert.equal(any.length, 1);
  assert.equal((calls[2][1] as ClientEvents["call"]).handled, false);
  // A call to an entity the client does not know still fires 'call', with entity null.
  sock.deliver(g("call_entity_method_on_client"));
  assert.equal((calls[3][1] as ClientEvents["call"]).entity, null);
  // A handler that throws is reported and the stream goes on.
  c.onMethod("Avatar", "Boom", () => {
    throw new Error("boom");
  });
  sock.deliver(concat(S.call(AVATAR, "Boom", []), S.mapSet(AVATAR, null, "level", 9)));
  assert.equal(errors.length, 1);
  assert.equal(errors[0].kind, "handler");
  assert.equal(c.player?.attrs.level, 9);
  // A listener that throws too.
  c.on("attrChanged", () => {
    throw new Error("ui bug");
  });
  sock.deliver(S.mapSet(AVATAR, null, "level", 10));
  assert.equal(errors.length, 2);
  assert.equal(errors[1].kind, "handler");
  assert.equal(c.state, "connected");
});

test("malformed input is an error event and a close, never a throw", () => {
  const bad: Array<[string, Uint8Array | string]> = [
    ["truncated 1002", S.raw([0xea, 0x03, 1, 0, 1, 2, 3])],
    ["bad msgpack in clientData", S.raw([0xea, 0x03, ...new Array(18).fill(0x41), 1, ...new Array(16).fill(0x41), 1, 0, 0, 0, 0x41, ...new Array(16).fill(0), 1, 0, 0, 0, 0xc1])],
    ["clientData not a map", S.create("awVBNWhsgjH2AAAB", "X", false, [0, 0, 0, 0], [1])],
    ["trailing bytes", concat(S.raw([0xdd, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7]))],
    ["partial 1502", S.raw([0xde, 0x05, 1, 2, 3])],
    ["bad path", S.mapSet(AVATAR, ["nope"], "k", 1)],
    ["path of a wrong type", S.mapSet(AVATAR, 5 as never, "k", 1)],
    ["empty frame", new Uint8Array([0, 0, 0, 0])],
    ["a one-byte payload", new Uint8Array([1, 0, 0, 0, 9])],
    ["a text message", "hello"],
  ];
  for (const [what, bytes] of bad) {
    const { c, sock, errors } = setup();
    login(c, sock);
    const resets = record(c, "reset", "state");
    assert.doesNotThrow(() => {
      if (typeof bytes === "string") sock.onmessage?.({ data: bytes });
      else sock.deliver(concat(bytes, S.mapSet(AVATAR, null, "level", 5)));
    }, what);
    assert.equal(errors.length, 1, what);
    assert.equal(errors[0].fatal, true, what);
    assert.ok(["protocol", "attr"].includes(errors[0].kind), what);
    assert.ok(sock.closedByClient, `${what}: socket closed`);
    assert.equal(c.state, "closed", what);
    assert.equal(c.player, null, what);
    assert.equal(c.entities.size, 0, what);
    assert.equal(resets[0][0], "reset", what);
  }
});

test("an unknown message type is reported and skipped", () => {
  const { c, sock, errors } = setup();
  login(c, sock);
  sock.deliver(concat(S.raw([0xf5, 0x03, 1, 2, 3]), S.mapSet(AVATAR, null, "level", 5)));
  assert.equal(errors.length, 1);
  assert.equal(errors[0].kind, "unknown-message");
  assert.equal(errors[0].fatal, false);
  assert.equal(c.player?.attrs.level, 5);
  assert.equal(c.state, "connected");
});

test("sending without a connection or a player fails softly", () => {
  const f = fakeFactory();
  const c = new Client({ url: "ws://gate/ws", createSocket: f.create, heartbeatMs: 0, reconnect: false });
  const errors: ClientError[] = [];
  c.on("error", (e) => errors.push(e));
  assert.equal(c.call(AVATAR, "Say", "world", "hi"), false);
  assert.equal(c.callPlayer("Say"), false);
  assert.equal(c.syncPosition(1, 2, 3), false);
  assert.deepStrictEqual(errors.map((e) => e.kind), ["send", "send", "send"]);
  c.connect();
  f.sockets[0].open();
  assert.equal(c.call("short", "X"), false);
  assert.equal(errors[3].kind, "send");
  assert.equal(c.call(AVATAR, "EnterSpace", 7), true);
  assert.equal(toHex(f.sockets[0].sent[0]).slice(-18), "d30000000000000007");
});

test("heartbeats go out every heartbeatMs while connected", async () => {
  const { c, sock } = setup({ heartbeatMs: 10 });
  await sleep(55);
  const n = sock.sent.length;
  assert.ok(n >= 2, `${n} heartbeats`);
  for (const b of sock.sent) assert.equal(toHex(b), toHex(g("heartbeat_from_client")));
  c.close();
  await sleep(30);
  assert.equal(sock.sent.length, n);
});

test("a dropped connection clears the world and reconnects with backoff", async () => {
  const { c, f, sock } = setup({ reconnect: { minDelayMs: 5, maxDelayMs: 20, factor: 2 } });
  login(c, sock);
  const states: ConnectionState[] = [];
  c.on("state", ({ state }) => states.push(state));
  const events = record(c, "entityDestroyed", "playerChanged", "spaceChanged", "reset");
  sock.serverClose();
  assert.equal(c.state, "reconnecting");
  assert.equal(c.player, null);
  assert.equal(c.space, null);
  assert.equal(c.entities.size, 0);
  assert.deepStrictEqual(
    events.map(([n, v]) => `${n}:${(v as { reason?: string }).reason ?? ""}`),
    ["entityDestroyed:reset", "entityDestroyed:reset", "playerChanged:", "spaceChanged:", "reset:"],
  );
  // Two failed attempts (closed before opening), then one that opens.
  await sleep(40);
  assert.equal(f.sockets.length, 2);
  f.sockets[1].serverClose();
  await sleep(60);
  assert.equal(f.sockets.length, 3);
  f.sockets[2].serverClose();
  // The delay doubled to 20 ms (timers never fire early, so this cannot flake).
  await sleep(8);
  assert.equal(f.sockets.length, 3);
  await sleep(80);
  assert.equal(f.sockets.length, 4);
  f.sockets[3].open();
  assert.equal(c.state, "connected");
  assert.deepStrictEqual(states, ["reconnecting", "connected"]);
  // A fresh world on the new connection; a late message on the old socket is ignored.
  sock.onmessage?.({ data: new Uint8Array(g("login_1_create_account")).buffer });
  assert.equal(c.entities.size, 0);
  login(c, f.sockets[3]);
  assert.equal((c.player as Entity | null)?.id, AVATAR);
  assert.equal(f.sockets[3].sent.length, 1);
  // close() is final.
  c.close();
  assert.equal(c.state, "closed");
  assert.equal(c.entities.size, 0);
  await sleep(30);
  assert.equal(f.sockets.length, 4);
});

test("a socket factory that throws is an error event and a retry", async () => {
  let n = 0;
  const f = fakeFactory();
  const c = new Client({
    url: "ws://gate/ws",
    heartbeatMs: 0,
    reconnect: { minDelayMs: 5 },
    createSocket: (url) => {
      if (n++ === 0) throw new Error("refused");
      return f.create(url);
    },
  });
  const errors: ClientError[] = [];
  c.on("error", (e) => errors.push(e));
  c.connect();
  assert.equal(errors[0].kind, "socket");
  assert.equal(c.state, "connecting");
  await sleep(20);
  assert.equal(f.sockets.length, 1);
  f.sockets[0].open();
  assert.equal(c.state, "connected");
  c.close();
});
