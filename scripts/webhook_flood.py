#!/usr/bin/env python3
"""Webhook flood against `paybridge serve` (issue 11): forged webhooks with a known public key.

Starts `paybridge serve` on a copy of paybridge.example.toml (quiet hours off, its own SQLite
file on disk, one extra `psp = "unzer"` method whose `api_host` is a counting fake on loopback),
waits until the example orders are imported, then posts N webhooks to /webhooks/unzer that
carry the configured public key and a distinct forged `retrieveUrl` each (payments paybridge
does not know), and afterwards genuine webhooks for imported orders. Prints the answers by
status, the events stored, and the requests that reached the fake Unzer host (PSP reads).
Exit code 0 when stored events stay within the budget, no PSP read was made for a forged
payment, and every genuine webhook was accepted.

    cargo build -p paybridge
    python3 scripts/webhook_flood.py --binary target/debug/paybridge --requests 10000

Standard library only.
"""

import argparse
import http.client
import http.server
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
UNZER_KEY = "s-pub-2a10FLOOD000000000000000flood"
MEMORY_KEY = "s-pub-2a10DEMO0000000000000000demo"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeUnzer(http.server.BaseHTTPRequestHandler):
    """Counts every request; answers 404 (no such payment) the way Unzer's API does."""

    hits = Counter()

    def _any(self):
        FakeUnzer.hits[self.command] += 1
        body = b'{"errors":[{"code":"API.310.100.003","merchantMessage":"not found"}]}'
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _any

    def log_message(self, *args):
        pass


def config_text(port, unzer_port, db, budget):
    example = open(os.path.join(ROOT, "paybridge.example.toml")).read()
    text = example.replace('quiet_hours = "00:00-04:00"', 'quiet_hours = "off"')
    text = text.replace('listen = "127.0.0.1:8080"', f'listen = "127.0.0.1:{port}"')
    text = text.replace('database = "./paybridge.db"', f'database = "{db}"')
    text = text.replace(
        'fixtures = "examples/orders.json"',
        f'fixtures = "{os.path.join(ROOT, "examples", "orders.json")}"',
    )
    text = text.replace("poll_interval_secs = 10", "poll_interval_secs = 2")
    if budget is not None:
        text = text.replace(
            "[server]", f"unverified_events_per_hour = {budget}\n\n[server]", 1
        )
    text += f"""
[[method]]
erp = "demo"
mandant = "01"
erp_method = "FLOOD_UNZER"
psp = "unzer"
mode = "expert"
invoice_event = "ZE"
return_event = "RE"
public_key = "{UNZER_KEY}"
private_key = "plain:s-priv-2a10FLOOD-not-a-real-key"
api_host = "http://127.0.0.1:{unzer_port}"
"""
    return text


def post(port, path, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        return r.status
    except OSError as e:
        return f"io:{type(e).__name__}"
    finally:
        c.close()


def count(db, sql):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


def wait_for(what, test, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if test():
                return
        except (OSError, sqlite3.Error):
            pass
        time.sleep(0.2)
    sys.exit(f"timed out waiting for {what}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "debug", "paybridge"))
    ap.add_argument("--requests", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--budget", type=int, default=None,
                    help="unverified_events_per_hour for the tenant (default: paybridge's)")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="flood-", dir=os.path.expanduser("~"))
    db = os.path.join(work, "flood.db")
    port, unzer_port = free_port(), free_port()
    fake = http.server.ThreadingHTTPServer(("127.0.0.1", unzer_port), FakeUnzer)
    threading.Thread(target=fake.serve_forever, daemon=True).start()
    cfg = os.path.join(work, "flood.toml")
    with open(cfg, "w") as f:
        f.write(config_text(port, unzer_port, db, args.budget))
    log = open(os.path.join(work, "serve.log"), "w")
    serve = subprocess.Popen([args.binary, "serve", "--config", cfg, "--no-check"],
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for("/health", lambda: post_health(port), 60)
        wait_for("the example orders", lambda: count(
            db, "SELECT count(*) FROM items WHERE sk = 'ORDER' AND pk LIKE '%#PAY#%'") >= 3, 60)
        events_before = count(db, "SELECT count(*) FROM items WHERE sk LIKE 'EV#%'")

        def forged(i):
            return post(port, "/webhooks/unzer", {
                "event": "payment.completed",
                "publicKey": UNZER_KEY,
                "retrieveUrl": f"https://sbx-api.unzer.com/v1/payments/s-pay-forged{i}/charges/s-chg-{i}",
            })

        started = time.time()
        with ThreadPoolExecutor(args.threads) as pool:
            answers = Counter(pool.map(forged, range(args.requests)))
        took = time.time() - started
        genuine = [
            post(port, "/webhooks/memory", {"event": "payment.completed",
                                            "publicKey": MEMORY_KEY, "paymentId": "s-pay-10003"}),
            post(port, "/webhooks/unzer", {"event": "payment.completed", "publicKey": UNZER_KEY,
                                           "retrieveUrl": "https://sbx-api.unzer.com/v1/payments/s-pay-10001"}),
        ]
        time.sleep(3)  # the worker applies the genuine events
        stored = count(db, "SELECT count(*) FROM items WHERE sk LIKE 'EV#%'") - events_before
        budget_used = count(db, "SELECT coalesce(sum(json_extract(body, '$.used')), 0) FROM items "
                                "WHERE pk LIKE '%#BUDGET' AND sk LIKE 'UNVERIFIED#%'")
        psp_reads = sum(FakeUnzer.hits.values())
        print(f"forged webhooks sent: {args.requests} in {took:.1f} s "
              f"({args.requests / took:.0f}/s, {args.threads} threads)")
        print("answers: " + ", ".join(f"{k}: {v}" for k, v in sorted(answers.items(), key=str)))
        print(f"genuine webhooks (known payments) answered: {genuine}")
        print(f"events stored: {stored} (budget units used: {budget_used})")
        print(f"requests that reached the Unzer host: {psp_reads}")
        ok = (stored <= budget_used + len(genuine) and psp_reads == 0
              and all(g == 200 for g in genuine))
        print("ok" if ok else "NOT OK")
        return 0 if ok else 1
    finally:
        serve.terminate()
        serve.wait(timeout=40)
        fake.shutdown()


def post_health(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    c.request("GET", "/health")
    return c.getresponse().status == 200


if __name__ == "__main__":
    sys.exit(main())
