#!/usr/bin/env python3
"""Benchmarks for the README: import throughput, bytes per row, and warm query latency beside
DuckDB reading the same Parquet files, all in one run.

  python3 -m pip install numpy pyarrow duckdb
  python3 benches/compare.py --work /tmp/tv-bench        # everything
  python3 benches/compare.py --work /tmp/tv-bench --skip-import   # queries only

Needs `cargo` (builds the release binary and the `queries` bench) and ../shared/data. The
synthetic set is `gen_bars.py --symbols 50 --start 2021-01-01 --end 2023-12-31 --interval 1m`
(15.2M rows); the real set is the 504 S&P 500 daily files (2.4M rows).
"""
import argparse, json, os, platform, resource, shutil, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
DAILY = os.path.join(SHARED, "data/daily/sp500_alphavantage_daily_adjusted/daily_adjusted")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/tickvault-target"))
BIN = os.path.join(TARGET, "release", "tickvault")

# DuckDB's forms of the same queries (its idioms: arg_min/arg_max for first/last by time).
DUCK = {
    "one_symbol_one_day": "SELECT * FROM bars WHERE symbol = 'AAAK' AND ts >= TIMESTAMPTZ '2022-06-15 00:00:00+00' AND ts < TIMESTAMPTZ '2022-06-16 00:00:00+00' ORDER BY ts",
    "one_symbol_year_daily": "SELECT date_trunc('day', ts) AS day, arg_min(open, ts) AS open, max(high) AS high, min(low) AS low, arg_max(close, ts) AS close, sum(volume) AS volume FROM bars WHERE symbol = 'AAAK' AND ts >= TIMESTAMPTZ '2022-01-01 00:00:00+00' AND ts < TIMESTAMPTZ '2023-01-01 00:00:00+00' GROUP BY 1 ORDER BY 1",
    "last_close_every_symbol_one_day": "SELECT symbol, arg_max(close, ts) AS close FROM bars WHERE ts >= TIMESTAMPTZ '2022-06-15 00:00:00+00' AND ts < TIMESTAMPTZ '2022-06-16 00:00:00+00' GROUP BY symbol ORDER BY symbol",
    "avg_volume_per_symbol": "SELECT symbol, avg(volume) AS avg_volume FROM bars GROUP BY symbol ORDER BY symbol",
    "daily_vwap_one_month": "SELECT symbol, date_trunc('day', ts) AS day, sum((high + low + close) / 3 * volume) / sum(volume) AS vwap FROM bars WHERE ts >= TIMESTAMPTZ '2022-06-01 00:00:00+00' AND ts < TIMESTAMPTZ '2022-07-01 00:00:00+00' GROUP BY 1, 2 ORDER BY 1, 2",
    "latest_ts_per_symbol": "SELECT symbol, max(ts) AS latest FROM bars GROUP BY symbol ORDER BY symbol",
    "load_10_symbols_1_year": "SELECT * FROM bars WHERE symbol IN ('AAAA','AAAB','AAAC','AAAD','AAAE','AAAF','AAAG','AAAH','AAAI','AAAJ') AND ts >= TIMESTAMPTZ '2022-01-01 00:00:00+00' AND ts < TIMESTAMPTZ '2023-01-01 00:00:00+00' ORDER BY ts, symbol",
}


def run(cmd, **kw):
    print("+", " ".join(cmd), file=sys.stderr)
    # Cargo builds where BIN is looked for.
    env = dict(os.environ, CARGO_TARGET_DIR=TARGET)
    return subprocess.run(cmd, check=True, text=True, capture_output=True, env=env, **kw)


def store_bytes_rows(store):
    out = run([BIN, "--store", store, "stats"]).stdout
    total = [l for l in out.splitlines() if l.startswith("total:")][0]
    rows = int(total.split(" rows")[0].split()[-1])
    byts = int(total.split(" bytes")[0].split()[-1])
    return rows, byts


def cpu_ticks():
    """(all, steal) clock ticks of every CPU since boot, from /proc/stat. On a VM, steal is time
    the host ran something else while we wanted the CPU: it stretches every time measured."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    return sum(ticks), ticks[7]


def steal_since(start):
    total, steal = cpu_ticks()
    return 100.0 * (steal - start[1]) / max(1, total - start[0])


def bench_import(name, store, args):
    shutil.rmtree(store, ignore_errors=True)
    # Write the deletion back first, so that I/O does not run during the timed import.
    os.sync()
    ticks, usage = cpu_ticks(), resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = run([BIN, "--store", store, "import"] + args).stdout
    secs = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    rows, byts = store_bytes_rows(store)
    print(out.strip(), file=sys.stderr)
    return {"set": name, "rows": rows, "seconds": secs, "rows_per_s": rows / secs,
            "bytes": byts, "bytes_per_row": byts / rows, "cpu_s": cpu, "steal": steal_since(ticks)}


def duck_times(store, runs):
    import duckdb
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    glob = os.path.join(store, "bars/timeframe=1m/*/*/*.parquet")
    con.execute(f"CREATE VIEW bars AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true)")
    res = {}
    for name, sql in DUCK.items():
        times, rows = [], 0
        for i in range(runs + 1):
            t = time.perf_counter()
            cur = con.execute(sql)
            tbl = cur.to_arrow_table() if hasattr(cur, "to_arrow_table") else cur.fetch_arrow_table()
            dt = (time.perf_counter() - t) * 1e3
            rows = tbl.num_rows
            if i:
                times.append(dt)
        res[name] = {"median_ms": statistics.median(times), "min_ms": min(times), "rows": rows}
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/tv-bench")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--skip-import", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    csv_dir = os.path.join(a.work, "synthetic_1m_csv")
    if not os.path.isdir(csv_dir):
        run([sys.executable, os.path.join(SHARED, "tools/gen_bars.py"), "--symbols", "50", "--start", "2021-01-01",
             "--end", "2023-12-31", "--interval", "1m", "--format", "csv", "--out", csv_dir])
    # One build: benches build the binary too, with the same (bench) profile.
    # The same targets as benches/serve_bench.py: a different set resolves features differently
    # and rebuilds DataFusion.
    run(["cargo", "bench", "--no-run", "--bench", "queries", "--bench", "http_load"], cwd=ROOT)
    minute_store = os.path.join(a.work, "store_1m")
    imports = []
    if not a.skip_import:
        # --bad-events skip: three of the files carry vendor dividends at or above the previous
        # close (JCI 2007-07-02, KSU 2000-07-13, LDOS 2013-09-30), which would refuse the import;
        # those three are left out (and listed), the bars and every other event are stored.
        imports.append(bench_import("real daily S&P 500 (504 files)", os.path.join(a.work, "store_daily"),
                                    ["--timeframe", "1d", "--symbol-pattern", "DA-(.+)-T-", "--bad-events", "skip", DAILY]))
        imports.append(bench_import("synthetic 1m (50 symbols x 3 years)", minute_store,
                                    ["--timeframe", "1m", csv_dir]))
    ticks = cpu_ticks()
    bench = run(["cargo", "bench", "--bench", "queries", "--bench", "http_load", "--", "--store", minute_store, "--runs", str(a.runs), "--json"],
                cwd=ROOT).stdout
    ours = {r["query"]: r for r in (json.loads(l) for l in bench.splitlines() if l.startswith("{"))}
    duck = duck_times(minute_store, a.runs)
    steal = steal_since(ticks)
    import duckdb
    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}; "
          f"DuckDB {duckdb.__version__}; warm, median of {a.runs} runs\n")
    if imports:
        print("| data set | rows | import time | rows/s | CPU (user+sys) | bytes/row | steal |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for i in imports:
            print(f"| {i['set']} | {i['rows']:,} | {i['seconds']:.2f} s | {i['rows_per_s']:,.0f} | "
                  f"{i['cpu_s']:.2f} s | {i['bytes_per_row']:.1f} | {i['steal']:.0f}% |")
        print()
    print(f"Queries: CPU steal {steal:.0f}% while both engines ran\n")
    print("| query (15.2M-row 1m set) | rows | tickvault | DuckDB | DuckDB / tickvault |")
    print("|---|---:|---:|---:|---:|")
    for name in DUCK:
        o, d = ours[name], duck[name]
        flag = "" if o["rows"] == d["rows"] else f" (row counts differ: {o['rows']} vs {d['rows']})"
        print(f"| {name} | {o['rows']:,} | {o['median_ms']:.2f} ms | {d['median_ms']:.2f} ms | "
              f"{d['median_ms'] / o['median_ms']:.1f}x{flag} |")
    # The same SQL made to go through DataFusion's planner (what the range read saves).
    for name, o in ours.items():
        base = name.removesuffix("_planned")
        if base != name and base in duck:
            d = duck[base]
            print(f"| {base}, through the planner | {o['rows']:,} | {o['median_ms']:.2f} ms | "
                  f"{d['median_ms']:.2f} ms | {d['median_ms'] / o['median_ms']:.1f}x |")


if __name__ == "__main__":
    main()
