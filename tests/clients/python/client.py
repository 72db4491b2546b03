"""Drives a running trawl with python-socketio and prints what it receives as
JSON lines; the Rust tests make the assertions.

Usage: python client.py SCENARIO BASE_URL [ARGS...]
"""

import json
import sys
import threading
import time

import socketio

T0 = time.monotonic()
EVENTS = ["crawl_progress", "crawl:stopping", "crawl:stopped", "crawls_update", "error"]
LOCK = threading.Lock()


def out(kind, **fields):
    with LOCK:
        print(json.dumps({"kind": kind, "t": int((time.monotonic() - T0) * 1000), **fields}), flush=True)


class Client:
    """One socket that records every server event and can wait for one."""

    def __init__(self, base, token=None):
        self.sio = socketio.Client(reconnection=False)
        self.cond = threading.Condition()
        self.seen = []
        for name in EVENTS:
            self.sio.on(name, self._recorder(name))
        refusal = []
        self.sio.on("connect_error", lambda data=None: refusal.append(data))
        self.ok = True
        try:
            self.sio.connect(base, transports=["websocket"], auth={"token": token} if token else {}, wait_timeout=10)
        except socketio.exceptions.ConnectionError as e:
            # The server's reason comes with the connect_error event.
            reason = refusal[0] if refusal else str(e)
            if isinstance(reason, dict):
                reason = reason.get("message", json.dumps(reason))
            out("connect_error", message=str(reason))
            self.ok = False

    def _recorder(self, name):
        def handler(data=None):
            out("event", name=name, data=data)
            with self.cond:
                self.seen.append((name, data))
                self.cond.notify_all()

        return handler

    def ack(self, step, event, *payload):
        data = self.sio.call(event, payload[0] if payload else None, timeout=5) if payload else self.sio.call(event, timeout=5)
        out("ack", step=step, data=data)
        return data

    def until(self, pred, start=0, timeout=30):
        """Waits for an event after index `start` that satisfies pred; returns its index."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(start, len(self.seen)):
                    if pred(*self.seen[i]):
                        return i
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("timed out waiting")
                self.cond.wait(left)

    def mark(self):
        with self.cond:
            return len(self.seen)

    def close(self):
        if self.ok:
            self.sio.disconnect()


def is_end(name, data):
    return name == "crawl:stopped" or (name == "crawl_progress" and data.get("status") in ("completed", "failed"))


def watch(base, pid):
    c = Client(base)
    c.ack("subscribe", "crawl_subscribe", {"progress_id": pid})
    c.until(is_end)
    c.close()


def stop(base, pid):
    c = Client(base)
    c.ack("subscribe", "subscribe_progress", {"progressId": pid})
    c.until(lambda n, d: n == "crawl_progress" and d.get("status") == "running" and d.get("pagesCrawled", 0) >= 3)
    c.ack("stop", "crawl_stop", {"progress_id": pid})
    c.until(lambda n, d: n == "crawl:stopped")
    time.sleep(0.5)
    c.close()


def reconnect(base, pid):
    c = Client(base)
    c.ack("subscribe", "crawl_subscribe", {"progress_id": pid})
    c.until(lambda n, d: n == "crawl_progress" and d.get("pagesCrawled", 0) >= 3)
    c.close()
    out("mark", step="disconnected")
    time.sleep(0.3)
    c = Client(base)
    out("mark", step="reconnected")
    c.ack("resubscribe", "crawl_subscribe", {"progress_id": pid})
    c.until(is_end)
    c.close()


def tenants(base, pid, token_b, bad_token):
    b = Client(base, token_b)
    if b.ok:
        b.ack("subscribe_other", "crawl_subscribe", {"progress_id": pid})
        b.ack("stop_other", "crawl_stop", {"progress_id": pid})
        b.ack("list", "subscribe_crawls")
        b.close()
    Client(base, bad_token).close()
    Client(base).close()


def malformed(base, pid):
    c = Client(base)
    c.ack("no_payload", "crawl_subscribe")
    c.ack("string_payload", "crawl_subscribe", "just a string")
    c.ack("number_payload", "crawl_stop", 42)
    c.ack("array_payload", "crawl_subscribe", [1, 2])
    c.ack("missing_id", "crawl_subscribe", {})
    c.ack("numeric_id", "crawl_subscribe", {"progress_id": 5})
    c.ack("unknown_id", "crawl_subscribe", {"progress_id": "no-such-crawl"})
    c.ack("unknown_stop", "crawl_stop", {"progress_id": "no-such-crawl"})
    c.ack("unknown_event", "crawl_explode", {"progress_id": pid})
    c.ack("oversized", "crawl_subscribe", {"progress_id": "x" * (100 * 1024)})
    start = c.mark()
    c.sio.emit("crawl_subscribe", "no ack asked")
    c.until(lambda n, d: n == "error", start=start, timeout=5)
    c.ack("still_usable", "crawl_subscribe", {"progress_id": pid})
    out("mark", step="connected", connected=c.sio.connected)
    c.close()


if __name__ == "__main__":
    scenario, base, *args = sys.argv[1:]
    try:
        {"watch": watch, "stop": stop, "reconnect": reconnect, "tenants": tenants, "malformed": malformed}[scenario](base, *args)
        out("done")
    except Exception as e:  # the test reads the failure line
        out("failure", message=repr(e))
        sys.exit(1)
