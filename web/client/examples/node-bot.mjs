// A one-shot bot on the library, against a live gate (a smoke test of the real server):
//   cd web/client && npm run build
//   node --experimental-websocket examples/node-bot.mjs ws://127.0.0.1:24001/ws [username]
// It logs in, turns client syncing on, says hello on the world channel, waits for its own
// OnSay, enters space kind 7, moves, and exits 0 when all of that happened within 15 s.

import { Client } from "../dist/index.js";

const url = process.argv[2] ?? "ws://127.0.0.1:24001/ws";
const user = process.argv[3] ?? `nodebot${Math.floor(Math.random() * 1e6)}`;
if (typeof WebSocket === "undefined") {
  console.error("no global WebSocket: run with node --experimental-websocket (Node 20) or Node >= 22");
  process.exit(2);
}

const client = new Client({ url, heartbeatMs: 1000, reconnect: false });
const steps = new Set();
const done = (s) => {
  if (!steps.has(s)) console.log(`ok: ${s}`);
  steps.add(s);
};
const fail = (why) => {
  console.error(`FAILED: ${why}; done: ${[...steps].join(", ")}`);
  process.exit(1);
};

client.on("state", ({ state }) => console.log(`state: ${state}`));
client.on("error", (e) => console.log(`error (${e.kind}${e.fatal ? ", fatal" : ""}): ${e.message}`));
client.on("playerChanged", ({ player }) => {
  if (player?.type === "Account") {
    done("boot Account");
    client.callPlayer("Login", user, "123456");
  } else if (player?.type === "Avatar") {
    done(`Avatar ${player.id} (${player.attrs.name}) is the player`);
    client.callPlayer("SetClientSyncing", true);
    client.callPlayer("Say", "world", `hello from ${user}`);
  }
});
client.onMethod("Account", "OnLogin", (_e, ok) => (ok === true ? done("OnLogin(true)") : fail("OnLogin(false)")));
client.onMethod("Avatar", "OnSay", (_e, sender, name, channel, text) => {
  console.log(`chat: [${channel}] ${name}: ${text}`);
  if (sender === client.player?.id) {
    done("own OnSay");
    client.callPlayer("EnterSpace", 7);
  }
});
client.on("spaceChanged", ({ space }) => {
  if (!space) return;
  console.log(`space ${space.id} kind ${space.kind}, ${client.neighbours().length} neighbours`);
  if (space.kind === 7) done("entered kind 7");
});
client.on("position", ({ entity, x, z, local }) => {
  if (entity === client.player && !local && steps.has("entered kind 7")) {
    done(`player at ${x.toFixed(1)}, ${z.toFixed(1)}`);
    client.syncPosition(x + 5, entity.y, z + 5, 0);
    done("sent a 12");
    setTimeout(() => {
      client.close();
      console.log("all done");
      process.exit(0);
    }, 300);
  }
});

client.connect();
setTimeout(() => fail("timeout"), 15000);
