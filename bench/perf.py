"""The performance bench (`just bench`): this server against a bare gRPC echo and three Python
job queues, one table, with the ratios the performance targets are written in.

Columns: this server Standalone (all-in-one) and Scalable (1 grpc-front + 1 worker on Redis +
MariaDB, scratch database and key prefix); a bare grpclib echo server (one unary RPC per call:
the ceiling of one RPC per job) and the same echo served on this server's stack ("trio echo":
trio, the asyncio bridge, the front's connection protocol; the ceiling for this design); arq,
dramatiq (Redis broker + results middleware) and taskiq (taskiq-redis) on the same Redis, in their
own database (--redis-db, flushed before and after).

Rows, each measured for --seconds after a warm-up, every caller running one job after another:
- (a) no-op jobs/s at 1 and at 50 callers. This server: a DIRECT worker on the `hello` plugin,
  one Enqueue RPC per job that answers with the result; concurrency 50. Peers: their no-op task,
  enqueued and its result awaited with their per-job API; worker concurrency 50.
- CPU ms per no-op job at 50 callers: the servers' process trees (runner hosts, peer worker
  processes) plus the client process, over the measured part. Redis and MariaDB are not counted.
- round trip p50 / p99 at 1 caller (this server: the DIRECT Enqueue).
- (c) 10 ms jobs/s at concurrency 100: the `sleep` plugin (ms=10) with WORKER_DEFAULT_CONCURRENCY=100,
  the peers' async 10 ms sleep at concurrency 100; 2 callers per slot keep every slot busy (this
  server's driver spreads its calls over connections of at most 100 open calls, the default stream cap).
- RSS (and PSS) of the trees, the peak sampled during (c).
- This server only: (a) at 50 callers again with concurrency 2 and 100, to see whether more slots
  cost throughput.
- This server only: (a) with bulk enqueue: --bulk-callers callers each send EnqueueBatch calls of
  --batch no-op jobs to a LISTEN_AFTER worker (concurrency 50) and wait until every job of the batch
  has its result on the ListenStreamByWorker stream the driver holds (results are stored, as
  LISTEN_AFTER requires). Jobs/s counts jobs whose result arrived.

Usage: python bench/perf.py [--quick] [--only standalone,echo,...] [--rows noop,sleep] [--seconds 10] [--json PATH]
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from perfkit import columns as cols
from perfkit.measure import Load, RowFailed, measure
from perfkit.report import COLUMNS, ECHOES, PEERS, render

NOOP_CONCURRENCY = 50
ROW_GROUPS = ("noop", "sleep", "slots", "bulk")
SLEEP_CONCURRENCY = 100
DEFAULT_ARQ_PYTHON = cols.ROOT / ".venv-arq" / "bin" / "python"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 s rows, short warm-ups: a smoke run")
    parser.add_argument("--seconds", type=float, help="measured seconds per row (default 10; --quick 1)")
    parser.add_argument("--only", default=",".join(COLUMNS), help=f"columns, comma-separated: {','.join(COLUMNS)}")
    parser.add_argument("--rows", default=",".join(ROW_GROUPS),
                        help="row groups, comma-separated: noop ((a) at 1 and --callers callers, CPU ms per job, "
                             "p50/p99), sleep ((c) and memory at concurrency 100), slots (this server's (a) at "
                             "concurrency 2 and 100); e.g. `--only standalone --rows "
                             "noop` for this server's no-op rows alone; bulk (this server's (a) with "
                             "EnqueueBatch)")
    parser.add_argument("--callers", type=int, default=50, help="callers of the (a) 50-caller row")
    parser.add_argument("--bulk-callers", type=int, default=4, help="callers of the bulk row")
    parser.add_argument("--batch", type=int, default=200,
                        help="jobs per EnqueueBatch call of the bulk row (callers x batch stays under "
                             "LISTEN_STREAM_MAX_BUFFERED, 1000 by default)")
    parser.add_argument("--sleep-callers", type=int, default=2 * SLEEP_CONCURRENCY, help="callers of row (c)")
    parser.add_argument("--poll-ms", type=float, default=5, help="result/queue poll interval of arq and taskiq")
    parser.add_argument("--redis-db", type=int, default=13, help="Redis database of the peers (flushed)")
    parser.add_argument("--arq-python", default=str(DEFAULT_ARQ_PYTHON),
                        help="interpreter with arq (arq pins redis<6, this project redis 8: `just bench-arq-venv`)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure each row group this many times, the columns taking turns, and report "
                             "each row's median (the machine's speed drifts: 3 makes the ratios steadier)")
    parser.add_argument("--json", type=Path, help="where to write the results (default: a file under .bench/)")
    args = parser.parse_args()
    args.seconds = args.seconds or (1.0 if args.quick else 10.0)
    # At least twice as many jobs as callers are run in a warm-up, however short: every runner host
    # or worker slot has started before the measured part.
    args.warmup = 0.3 if args.quick else 2.0
    args.only = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = set(args.only) - set(COLUMNS)
    if unknown:
        parser.error(f"unknown columns: {', '.join(sorted(unknown))}")
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = set(args.rows) - set(ROW_GROUPS)
    if unknown:
        parser.error(f"unknown row groups: {', '.join(sorted(unknown))}")
    return args


def run_column(name: str, opts: cols.Options, args: argparse.Namespace, raw: dict[str, Any],
               groups: list[str]) -> dict[str, Any]:
    """Measure the rows of `groups` that apply to the column; a failure fills the rows it took down."""
    if name in PEERS:
        missing = cols.missing_peer(name, opts)
        if missing:
            return {row: f"{name}: {missing}" for row in ("noop_1", "noop_50", "cpu_ms", "p50_ms", "p99_ms",
                                                          "sleep_100", "rss_mb", "pss_mb")}
        start = cols.peer_column(name, opts)
    else:
        start = {"standalone": cols.standalone, "scalable": cols.scalable, "echo": cols.echo,
                 "echo_stack": cols.echo_stack}[name]
    out: dict[str, Any] = {}
    if "noop" in groups:
        out.update(_rows(("noop_1", "noop_50", "cpu_ms", "p50_ms", "p99_ms"), name, raw,
                         lambda: _noop(start, opts, args)))
    # the echo servers run no jobs: (c) and memory at concurrency 100 do not apply
    if name not in ECHOES and "sleep" in groups:
        out.update(_rows(("sleep_100", "rss_mb", "pss_mb"), name, raw, lambda: _sleep(start, opts, args)))
    if name in ("standalone", "scalable") and "slots" in groups:
        for concurrency in (2, 100):
            key = f"noop_c{concurrency}"
            out.update(_rows((key,), name, raw, functools.partial(_noop_at, start, opts, args, concurrency, key)))
    if name in ("standalone", "scalable") and "bulk" in groups:
        out.update(_rows(("noop_bulk",), name, raw, lambda: _bulk(start, opts, args)))
    return out


def _rows(keys: tuple[str, ...], name: str, raw: dict[str, Any],
          run: Callable[[], tuple[dict[str, float], dict[str, Any]]]) -> dict[str, Any]:
    try:
        values, details = run()
        raw.update(details)
        return values
    except RowFailed as e:
        reason = f"{name}: {e}"
    except Exception as e:  # a column that cannot start must not end the whole bench
        traceback.print_exc()
        reason = f"{name}: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    return {k: reason for k in keys}


def _noop(start: cols.Start, opts: cols.Options, args: argparse.Namespace
          ) -> tuple[dict[str, float], dict[str, Any]]:
    with start(opts, NOOP_CONCURRENCY) as running:
        one = measure(running, Load("noop", 1, args.seconds, args.warmup), opts)
        many = measure(running, Load("noop", args.callers, args.seconds, args.warmup), opts)
    values = {"noop_1": one["jobs_per_s"], "noop_50": many["jobs_per_s"], "cpu_ms": many["cpu_ms_per_job"],
              "p50_ms": one["p50_ms"], "p99_ms": one["p99_ms"]}
    return values, {"noop_1_caller": one, f"noop_{args.callers}_callers": many}


def _noop_at(start: cols.Start, opts: cols.Options, args: argparse.Namespace, concurrency: int, key: str
             ) -> tuple[dict[str, float], dict[str, Any]]:
    with start(opts, concurrency) as running:
        many = measure(running, Load("noop", args.callers, args.seconds, args.warmup), opts)
    return {key: many["jobs_per_s"]}, {f"noop_{args.callers}_callers_concurrency_{concurrency}": many}


def _bulk(start: cols.Start, opts: cols.Options, args: argparse.Namespace
          ) -> tuple[dict[str, float], dict[str, Any]]:
    with start(opts, NOOP_CONCURRENCY) as running:
        load = Load("bulk", args.bulk_callers, args.seconds, args.warmup, batch=args.batch)
        result = measure(running, load, opts)
    return {"noop_bulk": result["jobs_per_s"]}, {f"noop_bulk_{args.bulk_callers}x{args.batch}": result}


def _sleep(start: cols.Start, opts: cols.Options, args: argparse.Namespace
           ) -> tuple[dict[str, float], dict[str, Any]]:
    with start(opts, SLEEP_CONCURRENCY) as running:
        load = Load("sleep", args.sleep_callers, args.seconds, args.warmup, sample_memory=True)
        result = measure(running, load, opts)
    values = {"sleep_100": result["jobs_per_s"], "rss_mb": result["rss_mb"], "pss_mb": result["pss_mb"]}
    return values, {"sleep_10ms_concurrency_100": result}


def medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each row's median over the rounds that measured it; a row no round measured keeps the
    first round's reason (a string)."""
    out: dict[str, Any] = {}
    for row in dict.fromkeys(key for measured in rounds for key in measured):
        values = [m[row] for m in rounds if isinstance(m.get(row), int | float)]
        out[row] = statistics.median(values) if values else next(m[row] for m in rounds if row in m)
    return out


def versions(opts: cols.Options) -> dict[str, str]:
    found: dict[str, str] = {"python": sys.version.split()[0]}
    for dist in ("jobworkerp", "grpclib", "dramatiq", "taskiq", "taskiq-redis", "redis"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    probe = subprocess.run([opts.arq_python, "-c", "import importlib.metadata as m; print(m.version('arq'), "
                            "m.version('redis'))"], capture_output=True, text=True) if Path(opts.arq_python).exists() \
        else None
    if probe is not None and probe.returncode == 0:
        arq, redis = probe.stdout.split()
        found["arq"], found["redis (arq venv)"] = arq, redis
    else:
        found["arq"] = "not installed"
    return found


def main() -> None:
    args = parse_args()
    started = datetime.datetime.now(datetime.UTC)
    json_path: Path = args.json or cols.ROOT / ".bench" / f"perf-{started:%Y%m%d-%H%M%S}.json"
    with tempfile.TemporaryDirectory(prefix="jw-perf-") as tmp:
        opts = cols.Options(Path(tmp), args.redis_db, args.poll_ms, args.arq_python)
        raw: dict[str, dict[str, Any]] = {}
        # Row group by row group, every column in turn: the machine's speed drifts over a run
        # (several-fold between days, tens of percent within an hour on a shared host), so the
        # columns a ratio compares are measured minutes apart at most, not a whole run apart.
        columns = [c for c in COLUMNS if c in args.only]
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in columns}
        for group in args.rows:
            for turn in range(args.repeat):
                for name in columns:
                    print(f"... {group}{f' ({turn + 1}/{args.repeat})' if args.repeat > 1 else ''}: "
                          f"{COLUMNS[name]}", file=sys.stderr, flush=True)
                    details = raw.setdefault(name, {}).setdefault(f"{group} {turn + 1}", {})
                    began = time.monotonic()
                    rounds[name].append(run_column(name, opts, args, details, [group]))
                    raw[name]["column_wall_s"] = raw[name].get("column_wall_s", 0.0) + time.monotonic() - began
        results: dict[str, dict[str, Any]] = {name: medians(rounds[name]) for name in columns}
        found = versions(opts)
    table = render(results, [c for c in COLUMNS if c in args.only])
    print(f"jobworkerp perf bench, {os.cpu_count()} CPUs, {args.seconds:g} s per row, "
          f"{'--quick' if args.quick else 'full'} ({started:%Y-%m-%d %H:%M} UTC)")
    print(table)
    print("versions: " + ", ".join(f"{k} {v}" for k, v in found.items()))
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"started": started.isoformat(), "cpus": os.cpu_count(),
                                     "options": {k: str(v) for k, v in vars(args).items()},
                                     "versions": found, "results": results, "details": raw}, indent=2))
    print(f"JSON: {json_path}")


if __name__ == "__main__":
    main()
