// The live world page in headless Chromium, against a running deployment (scripts/web-test.sh
// starts it, with bots, and runs this). Two pages, two users: both log in through the page's
// controls, enter the same space kind, are moved next to each other, see each other move when
// the other presses keys, and chat in the world channel; then the games are hot swapped
// (RELOAD_CMD) and both pages must carry on without reloading: the same socket (connects
// stays 1), a marker set on window before the swap still there, movement and chat working.
//
// Environment:
//   PAGE_URL     the page (http://127.0.0.1:<gate http port>/)
//   CHROMIUM     the Chromium (or chromium-headless-shell) executable
//   RELOAD_CMD   the hot swap command, run with sh -c (goworld reload -configfile ...)
//   SCREENSHOT   where to save a screenshot of the first page at the end
//   STEP_TIMEOUT_MS  the longest wait of any one step (default 20000)
//
// Every wait is bounded; a failure prints what was awaited and what each page showed.

import { execFile } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { chromium } from "playwright-core";

const PAGE_URL = need("PAGE_URL");
const CHROMIUM = need("CHROMIUM");
const RELOAD_CMD = need("RELOAD_CMD");
const SCREENSHOT = process.env.SCREENSHOT || "";
const STEP = Number(process.env.STEP_TIMEOUT_MS || 20000);
const KIND = 9; // a space kind the bots (kinds 1..2 at N = 50) never ask for
const started = Date.now();

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`world.test: ${name} is not set`);
    process.exit(2);
  }
  return v;
}

function log(msg) {
  console.log(`world.test: [${((Date.now() - started) / 1000).toFixed(1)} s] ${msg}`);
}

class StepFailed extends Error {}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` (in Node; it may evaluate in pages) until it returns a truthy value. */
async function waitFor(what, probe, timeout = STEP) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (last) return last;
    } catch (e) {
      last = `error: ${e.message}`;
    }
    if (Date.now() > end) {
      throw new StepFailed(`timed out after ${timeout} ms waiting for ${what} (last probe: ${JSON.stringify(last)})`);
    }
    await sleep(100);
  }
}

function run(cmd, timeout) {
  return new Promise((resolve, reject) => {
    execFile("sh", ["-c", cmd], { timeout, killSignal: "SIGKILL" }, (err, stdout, stderr) => {
      if (err) {
        reject(new StepFailed(`${cmd} failed (${err.killed ? `killed after ${timeout} ms` : `exit ${err.code}`}):\n${stdout}${stderr}`));
      } else {
        resolve(stdout + stderr);
      }
    });
  });
}

/** One user's page. */
class User {
  constructor(label, page) {
    this.label = label;
    this.page = page;
    this.console = [];
    page.on("console", (m) => this.console.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => this.console.push(`pageerror: ${e.message}`));
  }

  eval(fn, arg) {
    return this.page.evaluate(fn, arg);
  }

  player() {
    return this.eval(() => window.gwPage?.player() ?? null);
  }

  neighbours() {
    return this.eval(() => window.gwPage?.neighbours() ?? []);
  }

  /** What another user's page shows of entity `id`, or null. */
  async sees(id) {
    return (await this.neighbours()).find((e) => e.id === id) ?? null;
  }

  async state() {
    return this.eval(() => ({
      url: location.href,
      status: document.getElementById("status")?.textContent ?? null,
      connects: window.gwPage?.connects ?? null,
      marker: window.__gwMarker ?? null,
      player: window.gwPage?.player() ?? null,
      space: window.gwPage?.client?.space ? { id: window.gwPage.client.space.id, kind: window.gwPage.client.space.kind } : null,
      neighbours: (window.gwPage?.neighbours() ?? []).slice(0, 10),
      chat: (window.gwPage?.chat() ?? []).slice(-10),
    })).catch((e) => ({ error: e.message }));
  }

  /** Holds `key` down for `ms` (the page moves the player about 100 units a second). */
  async hold(key, ms) {
    await this.page.click("canvas#world");
    await this.page.keyboard.down(key);
    await sleep(ms);
    await this.page.keyboard.up(key);
  }

  async say(text) {
    await this.page.fill("#chat-text", text);
    await this.page.click("#chat-send");
  }

  /** The lines of #chat-log, as shown. */
  chatLog() {
    return this.eval(() => [...document.querySelectorAll("#chat-log > *")].map((e) => e.textContent));
  }
}

const connectedText = /(^|\s)connected\b/i;

async function logIn(u, name) {
  await u.page.fill("#username", name);
  await u.page.click("#login");
  return waitFor(`${u.label}'s page to show "connected" with an Avatar as player`, async () => {
    const status = await u.page.textContent("#status");
    const p = await u.player();
    return connectedText.test(status ?? "") && p?.type === "Avatar" && p;
  });
}

async function enterKind(u, kind) {
  await u.page.selectOption("#space-kind", String(kind));
  await u.page.click("#enter-space");
  return waitFor(`${u.label} to be in a space of kind ${kind}`, () =>
    u.eval((k) => {
      const s = window.gwPage.client.space;
      return s && s.kind === k && window.gwPage.player()?.space === s.id ? s.id : null;
    }, kind),
  );
}

const near = (e, x, z) => e && Math.abs(e.x - x) < 1 && Math.abs(e.z - z) < 1;

/**
 * Puts A at (10, 10) and B at (30, 10) with moveTo, until each is there on its own page and
 * on the other's. Just after entering a space the server's sync of the entry spot (sent
 * before it got the 12) may still reach the page and put the player back there, so the
 * moves are made again (at most 5 times) until the places hold for a while.
 */
async function placeSideBySide(a, b, idA, idB) {
  const placed = async () =>
    near(await a.player(), 10, 10) &&
    near(await b.player(), 30, 10) &&
    near(await b.sees(idA), 10, 10) &&
    near(await a.sees(idB), 30, 10);
  for (let attempt = 1; ; attempt++) {
    await a.eval(() => window.gwPage.moveTo(10, 10));
    await b.eval(() => window.gwPage.moveTo(30, 10));
    try {
      await waitFor("A at (10, 10) and B at (30, 10), on both pages", placed, attempt < 5 ? 3000 : STEP);
      await sleep(500);
      if (await placed()) break;
    } catch (e) {
      if (attempt >= 5) throw e;
    }
    log(`the places did not hold (attempt ${attempt}); moving again`);
  }
  log("each sees the other where moveTo put it");
}

/** `watcher` sees `mover` move after `mover` holds `key`: along `axis`, by more than 5. */
async function seesMove(mover, watcher, moverId, key, axis) {
  const before = await waitFor(`${watcher.label} to see ${mover.label} (${moverId})`, () => watcher.sees(moverId));
  await mover.hold(key, 600);
  const after = await waitFor(
    `${watcher.label} to see ${mover.label} move on ${axis} after ${key} (from ${before[axis].toFixed(1)})`,
    async () => {
      const e = await watcher.sees(moverId);
      return e && Math.abs(e[axis] - before[axis]) > 5 && e;
    },
  );
  log(`${watcher.label} saw ${mover.label} move on ${axis}: ${before[axis].toFixed(1)} -> ${after[axis].toFixed(1)}`);
}

/** Each says a line in the world channel; both pages show both lines with the sender's name
 * (the Avatar's name attribute: test_game names every Avatar 无名 until it is changed). */
async function chatBothWays(a, b, userA, userB, tag) {
  for (const [from, user] of [
    [a, userA],
    [b, userB],
  ]) {
    const name = (await from.player()).name;
    const text = `hello from ${user} ${tag}`;
    await from.say(text);
    for (const to of [a, b]) {
      await waitFor(`${to.label}'s #chat-log to show ${from.label}'s line "${text}" with its name ${name}`, async () =>
        (await to.chatLog()).some((l) => l.includes(name) && l.includes(text)),
      );
    }
  }
  log(`chat: both lines seen on both pages (${tag})`);
}

async function main() {
  const root = process.getuid?.() === 0;
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    timeout: STEP,
    args: [
      ...(root ? ["--no-sandbox"] : []),
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const users = [];
  try {
    log(`Chromium ${browser.version()} at ${CHROMIUM}`);
    for (const label of ["A", "B"]) {
      const ctx = await browser.newContext({ viewport: { width: 1100, height: 800 } });
      const u = new User(label, await ctx.newPage());
      u.page.setDefaultTimeout(STEP);
      users.push(u);
    }
    const [a, b] = users;
    const nonce = Math.floor(Math.random() * 1e6);
    const nameA = `webA${nonce}`;
    const nameB = `webB${nonce}`;
    for (const u of users) {
      const res = await u.page.goto(PAGE_URL, { waitUntil: "load" });
      if (!res || res.status() !== 200) throw new StepFailed(`${u.label}: GET ${PAGE_URL}: ${res?.status()}`);
      await waitFor(`${u.label}'s page to set window.gwPage`, () => u.eval(() => !!window.gwPage));
    }
    log(`both pages loaded ${PAGE_URL}`);

    const pa = await logIn(a, nameA);
    const pb = await logIn(b, nameB);
    if (pa.id === pb.id) throw new StepFailed(`both pages have the same player ${pa.id}`);
    log(`logged in: ${nameA} = ${pa.id}, ${nameB} = ${pb.id}`);
    const marker = `m${nonce}`;
    for (const u of users) await u.eval((m) => (window.__gwMarker = m), marker);

    // One space: A first, so SpaceService knows the space when B asks for the kind.
    const space = await enterKind(a, KIND);
    const spaceB = await enterKind(b, KIND);
    if (space !== spaceB) throw new StepFailed(`A is in space ${space}, B in ${spaceB}: not one space`);
    log(`both in space ${space} (kind ${KIND})`);

    await placeSideBySide(a, b, pa.id, pb.id);
    await seesMove(a, b, pa.id, "ArrowRight", "x");
    await seesMove(b, a, pb.id, "ArrowDown", "z");
    await chatBothWays(a, b, nameA, nameB, "before the swap");

    log(`hot swap: ${RELOAD_CMD}`);
    const t0 = Date.now();
    const out = await run(RELOAD_CMD, 90000);
    if (!/reloaded 2 games/.test(out)) throw new StepFailed(`the hot swap did not say "reloaded 2 games":\n${out}`);
    log(`hot swap done in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${out.trim().split("\n").slice(-2).join(" | ")}`);

    for (const u of users) {
      const st = await u.state();
      if (st.connects !== 1) throw new StepFailed(`${u.label}: gwPage.connects is ${st.connects} after the swap, not 1`);
      if (st.marker !== marker) throw new StepFailed(`${u.label}: the window marker is ${st.marker} after the swap: the page reloaded`);
    }
    log("after the swap: connects 1 and the marker on both pages");
    await seesMove(a, b, pa.id, "ArrowLeft", "x");
    await seesMove(b, a, pb.id, "ArrowUp", "z");
    await chatBothWays(a, b, nameA, nameB, "after the swap");
    for (const u of users) {
      const st = await u.state();
      if (st.connects !== 1) throw new StepFailed(`${u.label}: gwPage.connects is ${st.connects} at the end, not 1`);
    }
    if (SCREENSHOT) {
      mkdirSync(dirname(SCREENSHOT), { recursive: true });
      await a.page.screenshot({ path: SCREENSHOT, fullPage: true });
      log(`screenshot: ${SCREENSHOT}`);
    }
    log("passed");
  } catch (e) {
    console.error(`world.test: FAILED: ${e instanceof StepFailed ? e.message : e.stack}`);
    for (const u of users) {
      console.error(`world.test: page ${u.label}: ${JSON.stringify(await u.state())}`);
      if (u.console.length) console.error(`world.test: page ${u.label} console (last 20):\n  ${u.console.slice(-20).join("\n  ")}`);
    }
    if (SCREENSHOT && users[0]) {
      const failed = SCREENSHOT.replace(/\.png$/, "-failed.png");
      mkdirSync(dirname(failed), { recursive: true });
      const saved = await users[0].page.screenshot({ path: failed, fullPage: true }).then(() => true, () => false);
      if (saved) console.error(`world.test: screenshot of page A at the failure: ${failed}`);
    }
    process.exitCode = 1;
  } finally {
    await browser.close().catch(() => {});
  }
}

await main();
