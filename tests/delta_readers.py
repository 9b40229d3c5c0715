#!/usr/bin/env python3
"""Reads tickvault's `bars` table with an engine other than tickvault and prints, per symbol,
the row count, sum(close), min(ts) and max(ts) (µs since the epoch, UTC) as one JSON object.

    delta_readers.py read TABLE_URI VERSION READER
        TABLE_URI  <store>/bars, a local path or s3://bucket/prefix/bars
        VERSION    a table version, or `latest`
        READER     deltalake | polars | polars-native | duckdb | glob

`glob` reads every `*.parquet` under the table directory with pyarrow (hive partitions from the
paths, no log): what an engine sees when it ignores the log. It has no versions.

For S3 the usual variables are read: AWS_ENDPOINT_URL (a custom endpoint such as moto or
MinIO, plain http allowed), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION.

Exit status 0 with the JSON on stdout; otherwise a message on stderr and status 1 (2 when a
Python package is missing, so the caller can install it and retry).
"""

import glob as globmod
import json
import os
import sys
from urllib.parse import urlparse


def fail(message, status=1):
    print(message, file=sys.stderr)
    sys.exit(status)


def need(module):
    try:
        return __import__(module)
    except ImportError as e:
        fail(f"missing Python package for this reader: {e}", 2)


def s3_options():
    """object_store (delta-rs, polars) options from the environment."""
    opts = {}
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        if os.environ.get(key):
            opts[key] = os.environ[key]
    endpoint = opts.get("AWS_ENDPOINT_URL", "")
    if endpoint.startswith("http://"):
        opts["AWS_ALLOW_HTTP"] = "true"
    if endpoint:
        # A custom endpoint (moto, MinIO) is addressed by path, not by bucket host name.
        opts["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
    return opts


def is_s3(uri):
    return uri.startswith("s3://")


def summary(rows):
    """rows: iterable of (symbol, count, sum_close, min_ts, max_ts)."""
    out = {}
    for symbol, count, total, lo, hi in rows:
        out[symbol] = {
            "count": int(count),
            "sum_close": float(total),
            "min_ts": int(lo),
            "max_ts": int(hi),
        }
    return out


def arrow_summary(table):
    """Per-symbol aggregates of a pyarrow table with symbol, ts, close."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = table.set_column(
        table.schema.get_field_index("ts"),
        "ts",
        pc.cast(pc.cast(table["ts"], pa.timestamp("us")), pa.int64()),
    )
    grouped = table.group_by("symbol").aggregate(
        [([], "count_all"), ("close", "sum"), ("ts", "min"), ("ts", "max")]
    )
    g = grouped.to_pydict()
    return summary(
        zip(g["symbol"], g["count_all"], g["close_sum"], g["ts_min"], g["ts_max"])
    )


def read_deltalake(uri, version):
    deltalake = need("deltalake")
    need("pyarrow")
    opts = s3_options() if is_s3(uri) else None
    dt = deltalake.DeltaTable(uri, version=version, storage_options=opts)
    return arrow_summary(dt.to_pyarrow_table(columns=["symbol", "ts", "close"]))


def read_polars(uri, version, native=False):
    """`use_pyarrow=True`: polars' native Delta scan takes partition values from `key=value`
    directories and refuses tickvault's `year=` directory, which is no partition column
    (polars 2.1: "path contains column not present in the given Hive schema: year"); through
    pyarrow the values come from the log's `partitionValues`."""
    pl = need("polars")
    opts = s3_options() if is_s3(uri) else None
    frame = (
        pl.scan_delta(uri, version=version, storage_options=opts, use_pyarrow=not native)
        .group_by("symbol")
        .agg(
            pl.len().alias("count"),
            pl.col("close").sum().alias("sum_close"),
            pl.col("ts").dt.epoch("us").min().alias("min_ts"),
            pl.col("ts").dt.epoch("us").max().alias("max_ts"),
        )
        .collect()
    )
    return summary(frame.iter_rows())


def duckdb_extension_path(name):
    """The extension file inside the PyPI wheel `duckdb-extension-<name>`: DuckDB would fetch it
    from extensions.duckdb.org, which a locked-down machine cannot reach."""
    module = need(f"duckdb_extension_{name}")
    found = globmod.glob(
        os.path.join(os.path.dirname(module.__file__), "extensions", "*", f"{name}.duckdb_extension")
    )
    if not found:
        fail(f"duckdb-extension-{name} holds no {name}.duckdb_extension")
    return found[0]


def duckdb_connect(s3):
    duckdb = need("duckdb")
    con = duckdb.connect()
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    if s3:
        # The S3 secret type belongs to httpfs.
        con.execute(f"LOAD '{duckdb_extension_path('httpfs')}'")
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
        parsed = urlparse(endpoint) if endpoint else None
        params = {
            "KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", ""),
            "SECRET": os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
            "REGION": os.environ.get("AWS_REGION", "us-east-1"),
        }
        clauses = [f"{k} '{v}'" for k, v in params.items()]
        if parsed:
            clauses.append(f"ENDPOINT '{parsed.netloc}'")
            clauses.append("URL_STYLE 'path'")
            clauses.append(f"USE_SSL {'true' if parsed.scheme == 'https' else 'false'}")
        con.execute(f"CREATE SECRET tv (TYPE S3, {', '.join(clauses)})")
    con.execute(f"LOAD '{duckdb_extension_path('delta')}'")
    return con


def read_duckdb(uri, version):
    con = duckdb_connect(is_s3(uri))
    if not is_s3(uri):
        uri = os.path.abspath(uri)
    at = "" if version is None else f", version => {int(version)}"
    rows = con.execute(
        f"""SELECT symbol, count(*), sum(close), min(epoch_us(ts)), max(epoch_us(ts))
            FROM delta_scan('{uri}'{at}) GROUP BY symbol"""
    ).fetchall()
    return summary(rows)


def read_glob(uri, version):
    if version is not None:
        fail("the glob reader has no versions")
    need("pyarrow")
    import pyarrow.dataset as ds

    fs, root = filesystem(uri)
    # Hive partitions from the paths (percent-decoded); `_delta_log` and other `_`/`.` names are
    # skipped by default, as every glob-based engine does.
    data = ds.dataset(root, filesystem=fs, format="parquet", partitioning="hive")
    return arrow_summary(data.to_table(columns=["symbol", "ts", "close"]))


def filesystem(uri):
    import pyarrow.fs as pafs

    if not is_s3(uri):
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    parsed = urlparse(endpoint) if endpoint else None
    fs = pafs.S3FileSystem(
        access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        region=os.environ.get("AWS_REGION", "us-east-1"),
        endpoint_override=parsed.netloc if parsed else None,
        scheme=parsed.scheme if parsed else "https",
        force_virtual_addressing=False,
    )
    return fs, uri[len("s3://"):]


READERS = {
    "deltalake": read_deltalake,
    "polars": read_polars,
    "polars-native": lambda uri, version: read_polars(uri, version, native=True),
    "duckdb": read_duckdb,
    "glob": read_glob,
}

def main(argv):
    if len(argv) != 5 or argv[1] != "read" or argv[4] not in READERS:
        fail(__doc__)
    uri, version, reader = argv[2], argv[3], argv[4]
    version = None if version == "latest" else int(version)
    try:
        result = READERS[reader](uri.rstrip("/"), version)
    except SystemExit:
        raise
    except Exception as e:  # the reader's own message, whatever its type
        fail(f"{reader} could not read {uri} at version {version}: {type(e).__name__}: {e}")
    print(json.dumps({"reader": reader, "version": version, "symbols": result}, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv)
