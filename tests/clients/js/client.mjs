// Drives a running trawl with the official socket.io-client v4 and prints
// what it receives as JSON lines; the Rust tests make the assertions.
// Usage: node client.mjs SCENARIO BASE_URL [ARGS...]
import { io } from "socket.io-client";

const [scenario, base, ...args] = process.argv.slice(2);
const t0 = Date.now();
const out = (kind, fields) => console.log(JSON.stringify({ kind, t: Date.now() - t0, ...fields }));
const EVENTS = ["crawl_progress", "crawl:stopping", "crawl:stopped", "crawls_update", "error"];

// `tag` names the socket in its output lines when a scenario has several.
function connect(token, tag, url = base) {
  const socket = io(url, {
    transports: ["websocket"],
    reconnection: false,
    forceNew: true,
    auth: token ? { token } : {},
  });
  for (const name of EVENTS) socket.on(name, (data) => out("event", { name, data, ...(tag ? { socket: tag } : {}) }));
  return socket;
}

const connected = (socket) =>
  new Promise((resolve) => {
    socket.once("connect", () => resolve(true));
    socket.once("connect_error", (err) => {
      out("connect_error", { message: err.message });
      resolve(false);
    });
  });

const ack = async (socket, step, event, ...payload) => {
  const data = await socket.timeout(5000).emitWithAck(event, ...payload);
  out("ack", { step, data });
  return data;
};

const isEnd = (name, data) =>
  name === "crawl:stopped" || (name === "crawl_progress" && ["completed", "failed"].includes(data.status));

const until = (socket, pred, ms = 30000) =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("timed out waiting")), ms);
    const check = (name) => (data) => {
      if (pred(name, data)) {
        clearTimeout(timer);
        for (const n of EVENTS) socket.off(n, handlers[n]);
        resolve(data);
      }
    };
    const handlers = Object.fromEntries(EVENTS.map((n) => [n, check(n)]));
    for (const n of EVENTS) socket.on(n, handlers[n]);
  });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const scenarios = {
  // Subscribe and follow a crawl to its end.
  async watch(id, token) {
    const s = connect(token);
    if (!(await connected(s))) return;
    const end = until(s, isEnd);
    await ack(s, "subscribe", "crawl_subscribe", { progress_id: id });
    await end;
    s.disconnect();
  },
  // Subscribe, stop once it runs, and listen a while after crawl:stopped.
  async stop(id) {
    const s = connect();
    if (!(await connected(s))) return;
    const running = until(s, (n, d) => n === "crawl_progress" && d.status === "running" && d.pagesCrawled >= 3);
    await ack(s, "subscribe", "subscribe_progress", { progressId: id });
    await running;
    const stopped = until(s, (n) => n === "crawl:stopped");
    await ack(s, "stop", "crawl_stop", { progress_id: id });
    await stopped;
    await sleep(500);
    s.disconnect();
  },
  // Subscribe on this instance and on another; once the crawl runs, stop it
  // here, and listen on both a while after crawl:stopped reached both.
  async stop_across(id, otherBase) {
    // One socket after the other: with both connecting at once, in about a
    // third of the runs the second one's engine opened and its namespace
    // CONNECT was never answered (seen before and after issue 13's change;
    // cause not found yet).
    const a = connect(undefined, "a");
    if (!(await connected(a))) return;
    const b = connect(undefined, "b", otherBase);
    if (!(await connected(b))) return;
    const running = until(a, (n, d) => n === "crawl_progress" && d.status === "running" && d.pagesCrawled >= 3);
    await ack(a, "subscribe_a", "crawl_subscribe", { progress_id: id });
    await ack(b, "subscribe_b", "crawl_subscribe", { progress_id: id });
    await running;
    const stopped = Promise.all([a, b].map((s) => until(s, (n) => n === "crawl:stopped")));
    await ack(a, "stop", "crawl_stop", { progress_id: id });
    await stopped;
    await sleep(500);
    a.disconnect();
    b.disconnect();
  },
  // Subscribe, drop the connection mid-crawl, come back and subscribe again.
  async reconnect(id) {
    let s = connect();
    if (!(await connected(s))) return;
    const two = until(s, (n, d) => n === "crawl_progress" && d.pagesCrawled >= 3);
    await ack(s, "subscribe", "crawl_subscribe", { progress_id: id });
    await two;
    s.disconnect();
    out("mark", { step: "disconnected" });
    await sleep(300);
    s = connect();
    if (!(await connected(s))) return;
    out("mark", { step: "reconnected" });
    const end = until(s, isEnd);
    await ack(s, "resubscribe", "crawl_subscribe", { progress_id: id });
    await end;
    s.disconnect();
  },
  // Tenant B tries to see and stop tenant A's crawl; a bad key is refused.
  async tenants(id, tokenB, badToken) {
    const b = connect(tokenB);
    if (!(await connected(b))) return;
    await ack(b, "subscribe_other", "crawl_subscribe", { progress_id: id });
    await ack(b, "stop_other", "crawl_stop", { progress_id: id });
    await ack(b, "list", "subscribe_crawls");
    b.disconnect();
    const bad = connect(badToken);
    await connected(bad);
    bad.disconnect();
    const none = connect();
    await connected(none);
    none.disconnect();
  },
  // Watch the crawl list while a crawl starts and ends.
  async list(url) {
    const s = connect();
    if (!(await connected(s))) return;
    await ack(s, "subscribe_crawls", "subscribe_crawls");
    const resp = await fetch(`${base}/api/crawls`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ url, crawlType: "page" }),
    });
    const { progressId } = await resp.json();
    out("mark", { step: "started", progressId });
    await until(s, (n, d) => n === "crawls_update" && d.crawls.some((c) => c.progressId === progressId && c.status === "completed"));
    await ack(s, "unsubscribe_crawls", "unsubscribe_crawls");
    s.disconnect();
  },
  // Malformed payloads, with and without acks; then the connection still works.
  async malformed(id) {
    const s = connect();
    if (!(await connected(s))) return;
    await ack(s, "no_payload", "crawl_subscribe");
    await ack(s, "string_payload", "crawl_subscribe", "just a string");
    await ack(s, "number_payload", "crawl_stop", 42);
    await ack(s, "array_payload", "crawl_subscribe", [1, 2]);
    await ack(s, "missing_id", "crawl_subscribe", {});
    await ack(s, "numeric_id", "crawl_subscribe", { progress_id: 5 });
    await ack(s, "unknown_id", "crawl_subscribe", { progress_id: "no-such-crawl" });
    await ack(s, "unknown_stop", "crawl_stop", { progress_id: "no-such-crawl" });
    await ack(s, "unknown_event", "crawl_explode", { progress_id: id });
    await ack(s, "oversized", "crawl_subscribe", { progress_id: "x".repeat(100 * 1024) });
    const errorEvent = until(s, (n) => n === "error", 5000);
    s.emit("crawl_subscribe", "no ack asked");
    await errorEvent;
    await ack(s, "still_usable", "crawl_subscribe", { progress_id: id });
    out("mark", { step: "connected", connected: s.connected });
    s.disconnect();
  },
};

try {
  await scenarios[scenario](...args);
  out("done", {});
  process.exit(0);
} catch (e) {
  out("failure", { message: String(e && e.message ? e.message : e) });
  process.exit(1);
}
