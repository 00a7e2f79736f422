// The live world page: logs in to test_game through the gate's /ws with the goworld-client
// library, draws the player's space top-down, moves the player with the keyboard, enters
// spaces and chats on the world channel. Plain ES module, no build step: it imports the
// library's compiled output. window.gwPage is the hook the browser test drives.

import { ANY_TYPE, Client } from "./client/dist/index.js";

const $ = (id) => document.getElementById(id);
const ui = {
  username: $("username"),
  password: $("password"),
  login: $("login"),
  status: $("status"),
  canvas: $("world"),
  spaceKind: $("space-kind"),
  enterSpace: $("enter-space"),
  where: $("where"),
  chatLog: $("chat-log"),
  chatText: $("chat-text"),
  chatSend: $("chat-send"),
};

const SPEED = 100; // world units a second
const SYNC_MS = 100; // a 12 at most this often, while the position changed
const SCALE = 2; // canvas pixels per world unit
const AOI = 100; // test_game's Avatar AOI distance
const SPACE_KINDS = 10; // kinds offered in the select (any kind works)
const MAX_CHAT = 500;

const params = new URLSearchParams(location.search);
const wsUrl = params.get("ws") ?? `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;

const client = new Client({ url: wsUrl });
let credentials = null; // {username, password} once the user asked to log in
let connects = 0;
let moved = false; // the position changed since the last 12
const keys = new Set();
const chatLines = [];

// ---- status -----------------------------------------------------------------------------

function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
}

function isLoggedIn() {
  return client.player?.type === "Avatar";
}

function nameOf(e) {
  const n = e.attrs.name;
  return typeof n === "string" && n !== "" ? n : e.type;
}

function showStatus() {
  const p = client.player;
  switch (client.state) {
    case "connected":
      if (p && p.type === "Avatar") setStatus("connected", `connected as ${nameOf(p)} (${p.id})`);
      else setStatus("logging-in", credentials ? `logging in as ${credentials.username}…` : "logging in…");
      break;
    case "connecting":
      setStatus("connecting", "connecting…");
      break;
    case "reconnecting":
      setStatus("reconnecting", "reconnecting…");
      break;
    default:
      setStatus("disconnected", "disconnected");
  }
}

// ---- the client -------------------------------------------------------------------------

client.on("state", ({ state }) => {
  if (state === "connected") connects++;
  showStatus();
});

// test_game's Account: Login(username, password) loads the user's Avatar, or creates one
// for a new user name (it has no separate Register), then hands the client to it.
client.on("playerChanged", ({ player }) => {
  if (player?.type === "Account" && credentials) {
    client.callPlayer("Login", credentials.username, credentials.password);
  } else if (player?.type === "Avatar") {
    // The server applies our 12s only with client syncing on (GoWorld's demos do this).
    client.callPlayer("SetClientSyncing", true);
    moved = false;
  }
  showStatus();
  showWhere();
});

client.onMethod("Account", "OnLogin", (_account, ok) => {
  if (ok !== true) setStatus("failed", "login failed: wrong password?");
});

// OnSay(senderID, senderName, channel, content) arrives as a 1501 on the player entity.
client.onMethod(ANY_TYPE, "OnSay", (_player, sender, name, channel, content) => {
  addChatLine(String(name), String(channel), String(content), sender === client.player?.id);
});

client.on("attrChanged", ({ entity, name }) => {
  if (entity.isPlayer && name === "name") showStatus();
});

client.on("spaceChanged", showWhere);
client.on("error", (e) => {
  if (e.fatal || e.kind === "socket") console.warn("goworld-client:", e.message);
});

// ---- login ------------------------------------------------------------------------------

function logIn() {
  const username = ui.username.value.trim() || `web${Math.floor(Math.random() * 1e6)}`;
  ui.username.value = username;
  const password = ui.password.value;
  const again = credentials !== null;
  credentials = { username, password };
  if (client.state === "idle" || client.state === "closed") {
    client.connect();
  } else if (client.connected && client.player?.type === "Account") {
    client.callPlayer("Login", username, password);
  } else if (again) {
    // Another user: a new connection gets a new Account, which the handler above logs in.
    client.close();
    client.connect();
  }
  showStatus();
}

ui.login.addEventListener("click", logIn);
for (const input of [ui.username, ui.password]) {
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") logIn();
  });
}

// ---- spaces -----------------------------------------------------------------------------

for (let k = 1; k <= SPACE_KINDS; k++) ui.spaceKind.add(new Option(`kind ${k}`, String(k)));

function showWhere() {
  const s = client.space;
  if (!s) {
    ui.where.textContent = isLoggedIn() ? "in no space" : "";
    return;
  }
  const kind = s.kind ?? 0;
  ui.where.textContent = `in space ${s.id}, kind ${kind}`;
  if (![...ui.spaceKind.options].some((o) => o.value === String(kind))) {
    ui.spaceKind.add(new Option(`kind ${kind}`, String(kind)));
  }
  ui.spaceKind.value = String(kind);
}

ui.enterSpace.addEventListener("click", () => {
  const kind = Number(ui.spaceKind.value);
  if (isLoggedIn() && Number.isInteger(kind)) client.callPlayer("EnterSpace", kind);
});

// ---- chat -------------------------------------------------------------------------------

function addChatLine(name, channel, content, mine) {
  const text = `[${channel}] ${name}: ${content}`;
  chatLines.push(text);
  const div = document.createElement("div");
  div.className = mine ? "line mine" : "line";
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = `[${channel}] ${name}:`;
  div.append(who, ` ${content}`);
  ui.chatLog.append(div);
  while (ui.chatLog.childElementCount > MAX_CHAT) ui.chatLog.firstElementChild.remove();
  if (chatLines.length > MAX_CHAT) chatLines.splice(0, chatLines.length - MAX_CHAT);
  ui.chatLog.scrollTop = ui.chatLog.scrollHeight;
}

function sendChat() {
  const text = ui.chatText.value.trim();
  if (text === "" || !isLoggedIn()) return;
  if (client.callPlayer("Say", "world", text)) ui.chatText.value = "";
}

ui.chatSend.addEventListener("click", sendChat);
ui.chatText.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter") sendChat();
});

// ---- movement ---------------------------------------------------------------------------

const MOVES = {
  ArrowUp: [0, -1], KeyW: [0, -1],
  ArrowDown: [0, 1], KeyS: [0, 1],
  ArrowLeft: [-1, 0], KeyA: [-1, 0],
  ArrowRight: [1, 0], KeyD: [1, 0],
};

function typing(ev) {
  const t = ev.target;
  return t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement;
}

window.addEventListener("keydown", (ev) => {
  if (!(ev.code in MOVES) || typing(ev)) return;
  keys.add(ev.code);
  ev.preventDefault();
});
window.addEventListener("keyup", (ev) => keys.delete(ev.code));
window.addEventListener("blur", () => keys.clear());

let lastStep = performance.now();
setInterval(() => {
  const now = performance.now();
  const dt = Math.min(0.25, (now - lastStep) / 1000);
  lastStep = now;
  const p = client.player;
  if (!p || !isLoggedIn() || keys.size === 0) return;
  let dx = 0;
  let dz = 0;
  for (const k of keys) {
    dx += MOVES[k][0];
    dz += MOVES[k][1];
  }
  const len = Math.hypot(dx, dz);
  if (len === 0) return;
  p.x += (dx / len) * SPEED * dt;
  p.z += (dz / len) * SPEED * dt;
  p.yaw = Math.atan2(dx, dz);
  moved = true;
}, 20);

setInterval(() => {
  const p = client.player;
  if (!moved || !p || !client.connected) return;
  moved = false;
  client.syncPosition(p.x, p.y, p.z, p.yaw);
}, SYNC_MS);

// ---- drawing ----------------------------------------------------------------------------

const ctx = ui.canvas.getContext("2d");

function draw() {
  const { width: w, height: h } = ui.canvas;
  ctx.clearRect(0, 0, w, h);
  const p = client.player;
  const cx = p ? p.x : 0;
  const cz = p ? p.z : 0;
  const sx = (x) => w / 2 + (x - cx) * SCALE;
  const sz = (z) => h / 2 + (z - cz) * SCALE;

  // A grid every 50 units, in world coordinates.
  ctx.strokeStyle = "#1f252d";
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (let gx = Math.ceil((cx - w / 2 / SCALE) / 50) * 50; sx(gx) <= w; gx += 50) {
    ctx.moveTo(Math.round(sx(gx)) + 0.5, 0);
    ctx.lineTo(Math.round(sx(gx)) + 0.5, h);
  }
  for (let gz = Math.ceil((cz - h / 2 / SCALE) / 50) * 50; sz(gz) <= h; gz += 50) {
    ctx.moveTo(0, Math.round(sz(gz)) + 0.5);
    ctx.lineTo(w, Math.round(sz(gz)) + 0.5);
  }
  ctx.stroke();

  ctx.font = "12px system-ui, sans-serif";
  ctx.textAlign = "center";
  if (!p || !client.space) {
    ctx.fillStyle = "#8a93a3";
    ctx.fillText(p ? "not in a space" : "not logged in", w / 2, h / 2);
    return;
  }
  // The AOI circle.
  ctx.strokeStyle = "#2b3a4a";
  ctx.beginPath();
  ctx.arc(w / 2, h / 2, AOI * SCALE, 0, 2 * Math.PI);
  ctx.stroke();

  for (const e of client.entities) {
    if (e.isSpace) continue;
    const x = sx(e.x);
    const y = sz(e.z);
    const me = e === p;
    ctx.fillStyle = me ? "#5fb3f9" : e.type === "Avatar" ? "#8fd18f" : "#c8a2e8";
    ctx.beginPath();
    ctx.arc(x, y, me ? 7 : 5, 0, 2 * Math.PI);
    ctx.fill();
    // Facing: yaw 0 looks down +Z.
    ctx.strokeStyle = ctx.fillStyle;
    ctx.beginPath();
    ctx.moveTo(x, y);
    ctx.lineTo(x + Math.sin(e.yaw) * 12, y + Math.cos(e.yaw) * 12);
    ctx.stroke();
    ctx.fillStyle = "#d8dee9";
    ctx.fillText(nameOf(e), x, y - 10);
  }
  ctx.textAlign = "left";
  ctx.fillStyle = "#8a93a3";
  ctx.fillText(`x ${p.x.toFixed(1)}  z ${p.z.toFixed(1)}  kind ${client.space.kind ?? "?"}`, 8, h - 8);
}

function frame() {
  draw();
  requestAnimationFrame(frame);
}
requestAnimationFrame(frame);

// ---- the test hook ----------------------------------------------------------------------

window.gwPage = {
  client,
  get connects() {
    return connects;
  },
  player() {
    const p = client.player;
    if (!p) return null;
    return { id: p.id, type: p.type, name: nameOf(p), space: client.space?.id ?? null, x: p.x, y: p.y, z: p.z, yaw: p.yaw };
  },
  neighbours() {
    return client.neighbours().map((e) => ({ id: e.id, type: e.type, name: nameOf(e), x: e.x, y: e.y, z: e.z }));
  },
  chat() {
    return chatLines.slice();
  },
  moveTo(x, z) {
    const p = client.player;
    if (!p) return;
    moved = false;
    client.syncPosition(x, p.y, z, p.yaw);
  },
};

showStatus();
