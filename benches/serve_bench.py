#!/usr/bin/env python3
"""HTTP figures for the README, on the 15.2M-row 1-minute store that benches/compare.py builds:

  python3 benches/compare.py --work /tmp/tv-bench      # once: builds the store
  python3 benches/serve_bench.py --work /tmp/tv-bench

- GET /v1/bars, 10 symbols x 1 year as Arrow IPC: time and MB/s, beside DuckDB producing the
  same rows as Arrow from the same files;
- one-symbol-one-day SQL as JSON: p50/p99 latency at 1 and 32 concurrent clients
  (benches/http_load.rs), with the result cache (the default) and without it (a second server
  with --query-cache 0);
- the server's peak RSS while streaming all 15.2M rows as CSV.
"""
import argparse, json, os, platform, statistics, subprocess, sys, time, urllib.parse, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/tickvault-target"))
BIN = os.path.join(TARGET, "release", "tickvault")
PORT = 18080
BASE = f"http://127.0.0.1:{PORT}"
TEN = ["AAAA", "AAAB", "AAAC", "AAAD", "AAAE", "AAAF", "AAAG", "AAAH", "AAAI", "AAAJ"]
# The same query as the `queries` bench's one_symbol_one_day.
ONE_DAY_SQL = ("SELECT * FROM bars WHERE symbol = 'AAAK' AND timeframe = '1m' "
               "AND ts >= '2022-06-15T00:00:00Z' AND ts < '2022-06-16T00:00:00Z' ORDER BY ts")


def run(cmd, **kw):
    print("+", " ".join(cmd), file=sys.stderr)
    # Cargo builds where BIN is looked for.
    env = dict(os.environ, CARGO_TARGET_DIR=TARGET)
    return subprocess.run(cmd, check=True, text=True, capture_output=True, env=env, **kw)


def fetch(url):
    """Reads a whole response; returns (bytes, seconds)."""
    t = time.perf_counter()
    n = 0
    with urllib.request.urlopen(url) as r:
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            n += len(chunk)
    return n, time.perf_counter() - t


def peak_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024


def start_server(store, port, extra=()):
    server = subprocess.Popen([BIN, "--store", store, "serve", "--listen", f"127.0.0.1:{port}",
                               "--query-timeout", "600s", "--max-concurrent-queries", "64", *extra],
                              stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ready")
            break
        except Exception:
            time.sleep(0.1)
    return server


def load(clients, seconds, base=BASE):
    url = f"{base}/v1/sql?" + urllib.parse.urlencode({"q": ONE_DAY_SQL, "format": "json"})
    out = run(["cargo", "bench", "--bench", "queries", "--bench", "http_load", "--", "--url", url, "--clients", str(clients),
               "--seconds", str(seconds)], cwd=ROOT).stdout
    return json.loads([l for l in out.splitlines() if l.startswith("{")][0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/tv-bench")
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--seconds", type=float, default=10)
    a = ap.parse_args()
    store = os.path.join(a.work, "store_1m")
    run(["cargo", "bench", "--no-run", "--bench", "queries", "--bench", "http_load"], cwd=ROOT)
    server = start_server(store, PORT)
    try:
        # 1. The backtest loader over HTTP beside DuckDB.
        url = f"{BASE}/v1/bars?" + urllib.parse.urlencode(
            {"symbols": ",".join(TEN), "timeframe": "1m", "start": "2022-01-01", "end": "2023-01-01", "format": "arrow"})
        runs = [fetch(url) for _ in range(a.runs + 1)][1:]
        size = runs[0][0]
        ours = statistics.median(s for _, s in runs)
        import duckdb, pyarrow as pa
        with urllib.request.urlopen(url) as r:
            rows = pa.ipc.open_stream(r.read()).read_all().num_rows
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        glob = os.path.join(store, "bars/timeframe=1m/*/*/*.parquet")
        con.execute(f"CREATE VIEW bars AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true)")
        inlist = ",".join(f"'{s}'" for s in TEN)
        duck_sql = (f"SELECT * FROM bars WHERE symbol IN ({inlist}) AND ts >= TIMESTAMPTZ '2022-01-01 00:00:00+00' "
                    "AND ts < TIMESTAMPTZ '2023-01-01 00:00:00+00' ORDER BY ts, symbol")
        duck = []
        for i in range(a.runs + 1):
            t = time.perf_counter()
            rel = con.sql(duck_sql)
            tbl = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
            if i:
                duck.append(time.perf_counter() - t)
        duck_rows = tbl.num_rows
        # 2. Latency under load.
        lat = [load(c, a.seconds) for c in (1, 32)]
        # 3. Memory while streaming everything as CSV.
        before = peak_rss(server.pid)
        csv_bytes, csv_secs = fetch(f"{BASE}/v1/sql?" + urllib.parse.urlencode(
            {"q": "SELECT * FROM bars", "format": "csv"}))
        after = peak_rss(server.pid)
    finally:
        server.terminate()
        server.wait()
    uncached_port = PORT + 1
    server = start_server(store, uncached_port, ["--query-cache", "0"])
    try:
        uncached = [load(c, a.seconds, f"http://127.0.0.1:{uncached_port}") for c in (1, 32)]
    finally:
        server.terminate()
        server.wait()
    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}; "
          f"release build, loopback; DuckDB {duckdb.__version__}; median of {a.runs} runs\n")
    print("| GET /v1/bars, 10 symbols x 2022, Arrow IPC | rows | time | MB/s |")
    print("|---|---:|---:|---:|")
    print(f"| tickvault over HTTP | {rows:,} | {ours * 1e3:.0f} ms | {size / ours / 1e6:.0f} |")
    print(f"| DuckDB in-process to Arrow, same files | {duck_rows:,} | {statistics.median(duck) * 1e3:.0f} ms | - |")
    print()
    print("| one-symbol-one-day SQL as JSON | requests | req/s | p50 | p90 | p99 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, runs in (("result cache on (default)", lat), ("result cache off", uncached)):
        for l in runs:
            print(f"| {l['clients']} client(s), {name} | {l['requests']:,} | {l['rps']:,} | "
                  f"{l['p50_ms']:.2f} ms | {l['p90_ms']:.2f} ms | {l['p99_ms']:.2f} ms |")
    print()
    print(f"Streaming all 15.2M rows as CSV: {csv_bytes / 1e6:,.0f} MB in {csv_secs:.1f} s "
          f"({csv_bytes / csv_secs / 1e6:.0f} MB/s); server peak RSS {before / 2**20:.0f} MiB before, "
          f"{after / 2**20:.0f} MiB after.")


if __name__ == "__main__":
    main()
