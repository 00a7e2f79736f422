// The contract's static parts: dist/ loads unbundled in a browser (relative `.js` imports,
// no Node modules), and the page has the DOM ids and test hook the browser test drives.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";

const dist = new URL("../dist/", import.meta.url);
const web = new URL("../../", import.meta.url);

test("dist/ is ES modules with relative .js imports only", () => {
  const files = readdirSync(dist).filter((f) => f.endsWith(".js"));
  assert.ok(files.includes("index.js"), "dist/index.js");
  assert.ok(files.length >= 6, `${files.length} modules`);
  for (const f of files) {
    const src = readFileSync(new URL(f, dist), "utf8");
    assert.doesNotMatch(src, /\brequire\(|process\.|\bBuffer\b|"node:/, f);
    const specs = [...src.matchAll(/(?:import|export)[^;]*?from\s+"([^"]+)"/g)].map((m) => m[1]);
    for (const s of specs) assert.match(s, /^\.\/[\w-]+\.js$/, `${f} imports ${s}`);
  }
});

test("the page has the contract's DOM ids and window.gwPage hook", () => {
  const html = readFileSync(new URL("index.html", web), "utf8");
  for (const id of ["username", "password", "login", "status", "world", "space-kind", "enter-space", "chat-text", "chat-send", "chat-log"]) {
    assert.match(html, new RegExp(`id="${id}"`), id);
  }
  assert.match(html, /<canvas id="world"/);
  assert.match(html, /<select id="space-kind"/);
  assert.match(html, /<script type="module" src="app.js">/);
  const app = readFileSync(new URL("app.js", web), "utf8");
  assert.match(app, /from "\.\/client\/dist\/index\.js"/);
  assert.match(app, /window\.gwPage = \{/);
  for (const k of ["client,", "get connects()", "player()", "neighbours()", "chat()", "moveTo(x, z)"]) assert.ok(app.includes(k), k);
});
