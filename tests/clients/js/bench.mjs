// Load driver for trawl's realtime benchmark (not a test).
//   node bench.mjs load BASE ROOMS(comma-separated) CLIENTS SECONDS
//     CLIENTS websocket clients spread over the rooms; measures delivered
//     crawl_progress events per second and emit-to-receipt latency.
//   node bench.mjs idle BASE CLIENTS SECONDS
//     CLIENTS connections held open; counts how many stay connected.
//   node bench.mjs stops BASE SITE_URL STOPS
//     STOPS times: starts a crawl through BASE, subscribes on BASE, stops it
//     there once it runs, and times stop → crawl:stopping and
//     stop → crawl:stopped as this client receives them.
// Prints one JSON line with the figures.
import { io } from "socket.io-client";

const [mode, base, ...rest] = process.argv.slice(2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function openAll(n, onSocket) {
  const sockets = [];
  let errors = 0;
  let connected = 0;
  const batch = 250;
  for (let i = 0; i < n; i += batch) {
    const wave = [];
    for (let j = i; j < Math.min(n, i + batch); j++) {
      const s = io(base, { transports: ["websocket"], reconnection: false, forceNew: true, timeout: 20000 });
      sockets.push(s);
      wave.push(
        new Promise((resolve) => {
          s.once("connect", () => {
            connected++;
            onSocket(s, j);
            resolve();
          });
          s.once("connect_error", () => {
            errors++;
            resolve();
          });
        }),
      );
    }
    await Promise.all(wave);
  }
  return { sockets, connected, errors };
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.round((p / 100) * (sorted.length - 1)))];
}

if (mode === "load") {
  const [roomList, clientsArg, secondsArg] = rest;
  const rooms = roomList.split(",");
  const clients = Number(clientsArg);
  const seconds = Number(secondsArg);
  let measuring = false;
  let events = 0;
  const latencies = [];
  const { sockets, connected, errors } = await openAll(clients, (s, i) => {
    s.on("crawl_progress", (d) => {
      if (!measuring) return;
      events++;
      latencies.push(Date.now() - Date.parse(d.emittedAt));
    });
    s.emit("crawl_subscribe", { progress_id: rooms[i % rooms.length] });
  });
  await sleep(1000);
  measuring = true;
  const started = Date.now();
  await sleep(seconds * 1000);
  measuring = false;
  const elapsed = (Date.now() - started) / 1000;
  let disconnected = sockets.filter((s) => !s.connected).length;
  latencies.sort((a, b) => a - b);
  console.log(
    JSON.stringify({
      mode,
      clients,
      rooms: rooms.length,
      connected,
      connectErrors: errors,
      disconnectedAtEnd: disconnected,
      events,
      seconds: elapsed,
      eventsPerSecond: events / elapsed,
      latencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies.at(-1) ?? null },
    }),
  );
  for (const s of sockets) s.disconnect();
  process.exit(0);
} else if (mode === "idle") {
  const [clientsArg, secondsArg] = rest;
  const clients = Number(clientsArg);
  const t0 = Date.now();
  let dropped = 0;
  const { sockets, connected, errors } = await openAll(clients, (s) => s.on("disconnect", () => dropped++));
  const openSeconds = (Date.now() - t0) / 1000;
  await sleep(Number(secondsArg) * 1000);
  const still = sockets.filter((s) => s.connected).length;
  console.log(JSON.stringify({ mode, clients, connected, connectErrors: errors, droppedWhileIdle: dropped, stillConnected: still, openSeconds }));
  for (const s of sockets) s.disconnect();
  process.exit(0);
} else if (mode === "stops") {
  const [siteUrl, stopsArg] = rest;
  const stopping = [];
  const stopped = [];
  const s = io(base, { transports: ["websocket"], reconnection: false });
  await new Promise((resolve, reject) => {
    s.once("connect", resolve);
    s.once("connect_error", reject);
  });
  for (let i = 0; i < Number(stopsArg); i++) {
    const resp = await fetch(`${base}/api/crawls`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ url: siteUrl, crawlType: "recursive", maxDepth: 50, concurrency: 4 }),
    });
    const { progressId } = await resp.json();
    let t0 = 0;
    let onRunning;
    const running = new Promise((r) => (onRunning = r));
    const done = new Promise((resolve) => {
      s.on("crawl_progress", (d) => {
        if (d.progressId === progressId && d.status === "running" && d.pagesCrawled >= 20) onRunning();
      });
      s.on("crawl:stopping", (d) => {
        if (d.progressId === progressId && t0) stopping.push(performance.now() - t0);
      });
      s.on("crawl:stopped", (d) => {
        if (d.progressId === progressId) {
          stopped.push(performance.now() - t0);
          resolve();
        }
      });
    });
    await s.timeout(5000).emitWithAck("crawl_subscribe", { progress_id: progressId });
    await running;
    t0 = performance.now();
    s.emit("crawl_stop", { progress_id: progressId });
    await done;
    s.off("crawl_progress");
    s.off("crawl:stopping");
    s.off("crawl:stopped");
    await s.timeout(5000).emitWithAck("crawl_unsubscribe", { progress_id: progressId });
  }
  const pcts = (v) => {
    v.sort((a, b) => a - b);
    return { p50: percentile(v, 50), p99: percentile(v, 99), max: v.at(-1) ?? null };
  };
  console.log(JSON.stringify({ mode, stops: stopped.length, stoppingMs: pcts(stopping), stoppedMs: pcts(stopped) }));
  s.disconnect();
  process.exit(0);
} else {
  console.error("usage: node bench.mjs load|idle|stops ...");
  process.exit(2);
}
