#!/usr/bin/env node
// Drives headless Chromium pages that run the real Sensocto browser client
// (page/index.html) against a call server, and reports what they see as JSON.
//
// One-shot:  node driver.mjs --socket ws://127.0.0.1:4000/socket --room r1 \
//                --user alice [--name Alice] [--wait 10] [--until 'JS expr']
//            prints {ok, exitReason, elapsedMs, peers: [{user, state, errors}]}.
// Control:   node driver.mjs --control
//            reads one JSON command a line on stdin and answers each with one
//            JSON line on stdout ({id, ok, ...}); logs go to stderr.
//   {"id": 1, "cmd": "open", "user": "u", "room": "r", "socket": "ws://...", "name": "U"}
//   {"id": 2, "cmd": "state", "user": "u"}
//   {"id": 3, "cmd": "wait", "user": "u", "until": "JS expr", "timeout": 20}
//   {"id": 4, "cmd": "eval", "user": "u", "expr": "JS expr"}
//   {"id": 5, "cmd": "leave", "user": "u"}      the page leaves the call
//   {"id": 6, "cmd": "close", "user": "u"}      the page is closed
//   {"id": 7, "cmd": "quit"}

import http from "node:http";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CALLBOT_CHROMIUM || "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--use-fake-ui-for-media-stream",
  "--use-fake-device-for-media-stream",
  "--autoplay-policy=no-user-gesture-required",
  "--allow-loopback-in-peer-connection",
];
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".map": "application/json" };

const log = (...args) => process.stderr.write("driver: " + args.join(" ") + "\n");

function parseArgs(argv) {
  const opts = { wait: 10, query: [] };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i];
    const value = () => argv[++i];
    if (key === "--control") opts.control = true;
    else if (key === "--socket") opts.socket = value();
    else if (key === "--room") opts.room = value();
    else if (key === "--user") opts.user = value();
    else if (key === "--name") opts.name = value();
    else if (key === "--wait") opts.wait = Number(value());
    else if (key === "--until") opts.until = value();
    else if (key === "--query") opts.query.push(value());
    else throw new Error("unknown argument " + key);
  }
  return opts;
}

// Serves page/ and dist/ on 127.0.0.1 (a secure context for getUserMedia).
function serve() {
  const roots = { "/dist/": path.join(here, "dist"), "/": path.join(here, "page") };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://127.0.0.1");
    const prefix = url.pathname.startsWith("/dist/") ? "/dist/" : "/";
    const file = path.normalize(path.join(roots[prefix], url.pathname.slice(prefix.length)));
    if (!file.startsWith(roots[prefix]) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": TYPES[path.extname(file)] || "application/octet-stream" });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve({ server, base: `http://127.0.0.1:${server.address().port}` })),
  );
}

class Browser {
  async start() {
    if (!fs.existsSync(path.join(here, "dist", "client.bundle.js"))) {
      throw new Error("dist/client.bundle.js missing: run `npm ci && npm run build` in tests/browser");
    }
    this.started = Date.now();
    const { server, base } = await serve();
    this.server = server;
    this.base = base;
    this.profile = fs.mkdtempSync(path.join(os.tmpdir(), "callbot-chromium-"));
    this.context = await chromium.launchPersistentContext(this.profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      handleSIGTERM: false,
      handleSIGINT: false,
      handleSIGHUP: false,
    });
    for (const page of this.context.pages()) await page.close();
    this.version = this.context.browser()?.version() ?? null;
    this.peers = new Map();
    log("chromium", this.version, "serving", base);
  }

  async open({ user, room, socket, name, query = [] }) {
    if (this.peers.has(user)) throw new Error("page for " + user + " already open");
    const search = new URLSearchParams({ socket, room, user, name: name || user });
    for (const kv of query) {
      const [k, ...v] = kv.split("=");
      search.set(k, v.join("="));
    }
    const page = await this.context.newPage();
    const peer = { user, page, pageErrors: [], console: [] };
    page.on("pageerror", (e) => peer.pageErrors.push(String(e)));
    page.on("console", (m) => {
      if (peer.console.length < 200) peer.console.push(`${m.type()}: ${m.text()}`);
    });
    this.peers.set(user, peer);
    await page.goto(`${this.base}/index.html?${search}`);
    return { url: page.url() };
  }

  peer(user) {
    const peer = this.peers.get(user);
    if (!peer) throw new Error("no page for " + user);
    return peer;
  }

  async state(user) {
    const peer = this.peer(user);
    const [state, errors] = await peer.page.evaluate(() => [window.peerState, window.peerErrors]);
    return { user, state, errors, pageErrors: peer.pageErrors, console: peer.console };
  }

  async wait(user, until, timeout) {
    const page = this.peer(user).page;
    try {
      await page.waitForFunction(until, null, { timeout: timeout * 1000, polling: 100 });
      return true;
    } catch (e) {
      if (e.name === "TimeoutError") return false;
      throw e;
    }
  }

  async close(user) {
    const peer = this.peer(user);
    this.peers.delete(user);
    await peer.page.close();
  }

  async stop() {
    try {
      await this.context?.close();
    } finally {
      this.server?.close();
      if (this.profile) fs.rmSync(this.profile, { recursive: true, force: true });
    }
  }
}

async function handle(browser, msg) {
  switch (msg.cmd) {
    case "open":
      return await browser.open(msg);
    case "state":
      return await browser.state(msg.user);
    case "wait":
      return { met: await browser.wait(msg.user, msg.until, msg.timeout ?? 10) };
    case "eval":
      return { value: await browser.peer(msg.user).page.evaluate(msg.expr) };
    case "leave":
      await browser.peer(msg.user).page.evaluate(() => window.leaveCall());
      return {};
    case "close":
      await browser.close(msg.user);
      return {};
    case "info":
      return { chromium: browser.version, chromiumArgs: CHROMIUM_ARGS, base: browser.base };
    default:
      throw new Error("unknown command " + msg.cmd);
  }
}

async function control(browser) {
  const write = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
  write({ id: 0, ok: true, ready: true, chromium: browser.version });
  const lines = readline.createInterface({ input: process.stdin });
  const pending = new Set();
  for await (const line of lines) {
    if (!line.trim()) continue;
    let msg;
    try {
      msg = JSON.parse(line);
    } catch (e) {
      write({ id: null, ok: false, error: "bad JSON: " + e.message });
      continue;
    }
    if (msg.cmd === "quit") break;
    // Commands run concurrently (a wait on one page must not block another).
    const job = handle(browser, msg)
      .then((result) => write({ id: msg.id, ok: true, ...result }))
      .catch((e) => write({ id: msg.id, ok: false, error: String(e && e.message ? e.message : e) }))
      .finally(() => pending.delete(job));
    pending.add(job);
  }
  await Promise.allSettled([...pending]);
}

async function oneShot(browser, opts) {
  await browser.open({ ...opts });
  let exitReason = "waited";
  let met = true;
  if (opts.until) {
    met = await browser.wait(opts.user, opts.until, opts.wait);
    exitReason = met ? "until-met" : "until-timeout";
  } else {
    await new Promise((r) => setTimeout(r, opts.wait * 1000));
  }
  const peer = await browser.state(opts.user);
  const errors = peer.errors.length + peer.pageErrors.length;
  const ok = met && errors === 0;
  process.stdout.write(
    JSON.stringify({
      ok,
      exitReason,
      chromium: browser.version,
      chromiumArgs: CHROMIUM_ARGS,
      elapsedMs: Date.now() - browser.started,
      peers: [peer],
    }) + "\n",
  );
  return !met ? 3 : errors ? 1 : 0;
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
    if (!opts.control && !(opts.socket && opts.room && opts.user)) {
      throw new Error("--socket, --room and --user are required (or --control)");
    }
  } catch (e) {
    log(e.message);
    return 2;
  }
  const browser = new Browser();
  let code = 0;
  process.on("SIGTERM", () => browser.stop().finally(() => process.exit(143)));
  try {
    await browser.start();
  } catch (e) {
    log("launch failed:", e.message);
    await browser.stop();
    return 2;
  }
  try {
    code = opts.control ? (await control(browser), 0) : await oneShot(browser, opts);
  } finally {
    await browser.stop();
  }
  return code;
}

process.exitCode = await main();
