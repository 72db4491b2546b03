# The embedded store under load: N crawls at once (default 100) on one SQLite
# file, each a recursive crawl of a 400-page loopback site; prints how many
# ended completed, the pages and pages/s. Usage: bench/sqlite-concurrency.py BIN_DIR [N]
import json, subprocess, sys, time, urllib.request, os, signal, tempfile
binr = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 100
d = tempfile.mkdtemp()
site = subprocess.Popen([f"{binr}/fixture-server", "--pages", "400", "--fanout", "8", "--port", "18181"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
env = dict(os.environ, TRAWL_ALLOW_PRIVATE_NETWORKS="1", TRAWL_MAX_CRAWLS="128", RUST_LOG="warn")
srv = subprocess.Popen([f"{binr}/trawl", "serve", "--bind", "127.0.0.1:18180", "--database", f"{d}/t.db"], env=env, stdout=subprocess.DEVNULL, stderr=open(f"{d}/log", "w"))
def req(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request("http://127.0.0.1:18180" + path, data=data, method=method, headers={"content-type": "application/json"})
    return json.load(urllib.request.urlopen(r, timeout=30))
for _ in range(100):
    try:
        req("GET", "/healthz"); break
    except Exception: time.sleep(0.1)
t0 = time.time()
ids = [req("POST", "/api/crawls", {"url": f"http://127.0.0.1:18181/?c={i}", "crawlType": "recursive", "maxDepth": 5, "maxPages": 400, "respectRobots": False})["progressId"] for i in range(n)]
done = {}
while len(done) < n and time.time() - t0 < 600:
    for i in ids:
        if i in done: continue
        s = req("GET", f"/api/crawls/{i}")
        if s["status"] in ("completed", "failed", "cancelled"): done[i] = s
    time.sleep(0.5)
el = time.time() - t0
pages = sum(s["pagesCrawled"] for s in done.values())
from collections import Counter
print("statuses", Counter(s["status"] for s in done.values()), "pages", pages, f"{el:.1f}s", f"{pages/el:.0f} pages/s")
for s in done.values():
    if s["status"] != "completed": print(" ", s["status"], s.get("error"))
srv.send_signal(signal.SIGTERM); srv.wait(); site.kill()
