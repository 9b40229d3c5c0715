#!/usr/bin/env python3
"""Ingest figures for the README (release build, loopback, WAL fsync on):

  python3 benches/ingest_bench.py [--work /tmp/tv-ingest] [--seconds 5]

- ingest throughput over HTTP, Arrow IPC and NDJSON, batches of 1,000 and 10,000 bars, 1 and 8
  concurrent writers (benches/http_load --write), with the server's default live-tier settings,
  so transfers into Parquet run during the measurement as they would in production;
- write-to-visible latency: one bar written, then queried right after the acknowledgement;
- transfer: a 1M-row live tier moved into Parquet by POST /v1/sync/transfer;
- recovery: a server killed with SIGKILL holding 1M rows only in the WAL, restarted until /ready.
"""
import argparse, json, os, platform, shutil, signal, subprocess, sys, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/tickvault-target"))
BIN = os.path.join(TARGET, "release", "tickvault")
PORT = 18090
BASE = f"http://127.0.0.1:{PORT}"


def load(*args):
    cmd = ["cargo", "bench", "--bench", "queries", "--bench", "http_load", "--", *args]
    out = subprocess.run(cmd, cwd=ROOT, check=True, text=True, capture_output=True,
                         env={**os.environ, "CARGO_TARGET_DIR": TARGET}).stdout
    return json.loads([l for l in out.splitlines() if l.startswith("{")][0])


def wait_ready(timeout=120):
    t = time.perf_counter()
    while time.perf_counter() - t < timeout:
        try:
            with urllib.request.urlopen(f"{BASE}/ready") as r:
                if r.status == 200:
                    return time.perf_counter() - t
        except Exception:
            pass
        time.sleep(0.002)
    raise RuntimeError("server not ready")


def start(work, *extra):
    proc = subprocess.Popen([BIN, "--store", os.path.join(work, "data"), "serve", "--listen",
                             f"127.0.0.1:{PORT}", "--max-body", "64MiB", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc


def stop(proc, sig=signal.SIGTERM):
    proc.send_signal(sig)
    proc.wait(timeout=300)


def post(path, body=b""):
    req = urllib.request.Request(f"{BASE}{path}", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def get(path):
    with urllib.request.urlopen(f"{BASE}{path}") as r:
        return json.loads(r.read())


def fresh(work):
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/tv-ingest")
    ap.add_argument("--seconds", type=float, default=5)
    a = ap.parse_args()
    subprocess.run(["cargo", "bench", "--no-run", "--bench", "queries", "--bench", "http_load"],
                   cwd=ROOT, check=True, env={**os.environ, "CARGO_TARGET_DIR": TARGET})
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    results = {"throughput": []}

    for fmt in ["arrow", "ndjson"]:
        for batch in [1000, 10000]:
            for clients in [1, 8]:
                fresh(a.work)
                proc = start(a.work)
                wait_ready()
                rate = "4.5e6" if fmt == "arrow" else "2.2e6"
                r = load("--write", fmt, "--base", BASE, "--batch", str(batch), "--clients",
                         str(clients), "--seconds", str(a.seconds), "--expect-rate", rate)
                status = get("/v1/status")
                r["transfers_during_run"] = status["jobs"]["transfer"]["runs"]
                r["group_commits"] = status["live"]["ingest"]["group_commits"]
                stop(proc)
                print(json.dumps(r), flush=True)
                results["throughput"].append(r)

    fresh(a.work)
    proc = start(a.work)
    wait_ready()
    results["visible"] = load("--visible", "--base", BASE, "--seconds", str(a.seconds))
    print(json.dumps(results["visible"]), flush=True)
    stop(proc)

    # Transfer and recovery of a 1M-row live tier (no transfer until asked).
    hold = ["--transfer-interval", "1h", "--transfer-threshold", "1GiB", "--live-max-memory", "2GiB"]
    fresh(a.work)
    proc = start(a.work, *hold)
    wait_ready()
    load("--write", "arrow", "--base", BASE, "--batch", "10000", "--clients", "1", "--bodies", "100",
         "--seconds", "600")
    assert get("/v1/status")["live"]["rows"] == 1_000_000
    t = time.perf_counter()
    tr = post("/v1/sync/transfer")
    wall = time.perf_counter() - t
    results["transfer"] = {"rows": tr["rows"], "seconds": wall, "rows_per_s": tr["rows"] / wall,
                           "files": tr["files_added"], "bytes": tr["bytes_written"]}
    print(json.dumps(results["transfer"]), flush=True)
    stop(proc)

    fresh(a.work)
    proc = start(a.work, *hold)
    wait_ready()
    load("--write", "arrow", "--base", BASE, "--batch", "10000", "--clients", "1", "--bodies", "100",
         "--seconds", "600")
    wal = get("/v1/status")["live"]["wal"]
    stop(proc, signal.SIGKILL)
    t = time.perf_counter()
    proc = start(a.work, *hold)
    ready = wait_ready()
    status = get("/v1/status")
    results["recovery"] = {"wal_bytes": wal["bytes"], "rows": status["live"]["rows"],
                           "until_ready_s": ready,
                           "replay_ms": status["live"]["recovery"]["duration_ms"]}
    print(json.dumps(results["recovery"]), flush=True)
    stop(proc)
    with open(a.work.rstrip("/") + ".json", "w") as f:
        json.dump(results, f, indent=1)
    print(f"results in {a.work.rstrip('/')}.json")


if __name__ == "__main__":
    main()
