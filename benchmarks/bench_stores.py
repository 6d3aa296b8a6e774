"""Durable session stores and cold fits (issue #9 targets).

Run: ``.venv/bin/python benchmarks/bench_stores.py`` (starts its own redis-server and
PostgreSQL on 127.0.0.1 unless ``--redis-url`` / ``--postgres-url`` are given; the Debian
packages come from ``make services``). ``--quick`` runs a small load test only.

Measures, with exact tiktoken counts (cl100k, offline data):

1. cold fit of a 5,000-message tool-using history, 128k window, a fresh manager and a
   fresh token counter each time (median of 7, wall and CPU time): with no stored counts,
   and as a cold worker resuming from the SQLite store (token counts, window snapshot and
   the relevance index's feature rows; one new message; construction, load, fit and save
   timed); presets fifo and agent. Targets: fifo <= 300 ms with none, <= 50 ms with the
   store's counts; agent <= 300 ms with the store's counts and indexes;
2. a warm stored worker appending one message per fit (fit + save, and the bytes of the
   state document a save writes), fifo and agent, 5,000 messages, 128k;
   one fit after appending one message to a 100,000-message history, fifo, 8k window,
   the application appending to one list (median of 300). Target <= 0.2 ms;
3. start-up: ``import ctxmgr`` and ``ctxmgr fit --preset fifo`` wall time (median of 5),
   and whether bm25s / numpy were imported;
4. the load test of :mod:`ctxmgr.stores.loadtest` against real Redis, PostgreSQL and
   SQLite: 8 worker processes, 200 conversations x 50 turns, each turn on whichever worker
   is free, 10% of turns raced on two workers: throughput, p50 / p95 fit latency, CAS
   conflicts, and the checks (lost messages, budget / tool-pair violations, duplicated
   archive entries: all must be 0).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("CTXMGR_TIKTOKEN_OFFLINE", "1")

from ctxmgr import ContextManager, get_counter
from ctxmgr.stores import SQLiteStore
from ctxmgr.stores.loadtest import run_load
from ctxmgr.stores.servers import local_postgres, local_redis
from ctxmgr.testing import agent_history

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    """Wall and CPU (process) milliseconds of repeated runs; medians of each.

    On a shared machine the wall time includes waiting for a core; the CPU time is what
    the fit itself costs.
    """

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    @contextlib.contextmanager
    def run(self) -> Iterator[None]:
        """Time the block."""
        w0, c0 = time.perf_counter(), time.process_time()
        yield
        self.cpu.append((time.process_time() - c0) * 1000)
        self.wall.append((time.perf_counter() - w0) * 1000)

    def __str__(self) -> str:
        wall, cpu = statistics.median(self.wall), statistics.median(self.cpu)
        return f"{wall:.1f} ms wall, {cpu:.1f} ms CPU (medians of {len(self.wall)})"


def cold_fits(reps: int = 7) -> dict[str, Clock]:
    history = agent_history(5001, seed=1)
    get_counter()  # the tokenizer's data is loaded once per process, not per fit
    out: dict[str, Clock] = {}
    for preset in ("fifo", "agent"):
        clock = out[f"{preset}, no stored counts"] = Clock()
        for _ in range(reps):
            mgr = ContextManager.from_config(
                preset, max_context_tokens=128_000, counter=get_counter()
            )
            with clock.run():
                mgr.fit(history)
        with tempfile.TemporaryDirectory() as tmp:
            store = SQLiteStore(Path(tmp) / "s.db")
            for rep in range(reps):  # what a previous worker left in the store
                ContextManager.from_config(
                    preset, max_context_tokens=128_000, store=store, conversation_id=f"c{rep}"
                ).fit(history[:5000])
            clock = out[f"{preset}, cold worker from the SQLite store"] = Clock()
            for rep in range(reps):
                with clock.run():
                    worker = ContextManager.from_config(
                        preset,
                        max_context_tokens=128_000,
                        store=store,
                        conversation_id=f"c{rep}",
                        counter=get_counter(),
                    )
                    worker.fit(history)
    return out


def steady_saves(turns: int = 40) -> dict[str, tuple[Clock, int]]:
    """A warm stored worker (SQLite) appending one message per fit to a 5,000-message history.

    Per preset, 128k window: fit + compare-and-swap save, and the size of the state
    document each save writes (bytes of JSON).
    """
    source = agent_history(5000 + turns, seed=1)
    out: dict[str, tuple[Clock, int]] = {}
    for preset in ("fifo", "agent"):
        with tempfile.TemporaryDirectory() as tmp:
            store = SQLiteStore(Path(tmp) / "s.db")
            worker = ContextManager.from_config(
                preset, max_context_tokens=128_000, store=store, conversation_id="c"
            )
            history = source[:5000]
            worker.fit(history)
            clock = Clock()
            for msg in source[5000:]:
                history.append(msg)
                with clock.run():
                    worker.fit(history)
            loaded = store.load("c")
            assert loaded is not None
            out[preset] = (clock, len(json.dumps(loaded.data)))
            store.close()
    return out


def cold_tail_ab(reps: int = 7) -> dict[str, float]:
    """The fifo cold fit with and without the tail rule, interleaved (no stored counts)."""
    history = agent_history(5000, seed=1)
    tail = ContextManager._cold_tail
    times: dict[str, list[float]] = {"from the tail": [], "counting everything": []}
    try:
        for _ in range(reps):
            for label in times:
                ContextManager._cold_tail = (  # type: ignore[method-assign]
                    tail if label == "from the tail" else (lambda self, segments: 0)
                )
                mgr = ContextManager.from_config(
                    "fifo", max_context_tokens=128_000, counter=get_counter()
                )
                t0 = time.perf_counter()
                mgr.fit(history)
                times[label].append((time.perf_counter() - t0) * 1000)
    finally:
        ContextManager._cold_tail = tail  # type: ignore[method-assign]
    return {label: statistics.median(v) for label, v in times.items()}


def append_at(n: int = 100_000, reps: int = 300) -> float:
    source = agent_history(n + reps, seed=1)
    history = source[:n]
    mgr = ContextManager.from_config("fifo", max_context_tokens=8000, counter=get_counter())
    mgr.fit(history)
    times = []
    for msg in source[n : n + reps]:
        history.append(msg)
        t0 = time.perf_counter()
        mgr.fit(history)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def startup(reps: int = 5) -> dict[str, object]:
    py = sys.executable
    ctxmgr_bin = str(Path(py).parent / "ctxmgr")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([{"role": "user", "content": "hi"}], f)
    probe = (
        f"import sys; sys.argv=['ctxmgr','fit',{f.name!r},'--preset','fifo','--max-tokens','1000']"
        "\nfrom ctxmgr.cli import main\ntry: main()\nexcept SystemExit: pass\n"
        "print(sorted(m for m in ('bm25s','numpy','Stemmer','matplotlib') if m in sys.modules),"
        " file=sys.stderr)"
    )
    out: dict[str, object] = {}
    for label, cmd in (
        ("import ctxmgr", [py, "-c", "import ctxmgr"]),
        (
            "ctxmgr fit --preset fifo",
            [ctxmgr_bin, "fit", f.name, "--preset", "fifo", "--max-tokens", "1000"],
        ),
    ):
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append((time.perf_counter() - t0) * 1000)
        out[label] = statistics.median(times)
    res = subprocess.run([py, "-c", probe], check=True, capture_output=True, text=True)
    out["heavy modules imported by ctxmgr fit --preset fifo"] = res.stderr.strip().splitlines()[-1]
    return out


def load(url: str, args: argparse.Namespace) -> dict[str, object]:
    r = run_load(
        url,
        processes=args.processes,
        conversations=args.conversations,
        turns=args.turns,
        race=0.1,
        prefix=f"bench-{int(time.time())}",
    )
    return {
        "fits": r.fits,
        "seconds": round(r.seconds, 1),
        "fits/s": round(r.throughput, 1),
        "p50 ms": round(r.percentile(50), 1),
        "p95 ms": round(r.percentile(95), 1),
        "conflicts retried": r.conflicts,
        "archived": r.archived,
        "lost": len(r.lost),
        "violations": len(r.violations),
        "duplicated": len(r.duplicated),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url")
    parser.add_argument("--postgres-url")
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--stores", default="redis,postgresql,sqlite")
    parser.add_argument("--skip-fits", action="store_true", help="only the load test")
    parser.add_argument("--skip-load", action="store_true", help="no load test")
    parser.add_argument("--quick", action="store_true", help="4 processes x 20 x 10")
    args = parser.parse_args()
    if args.quick:
        args.processes, args.conversations, args.turns = 4, 20, 10
    if not args.skip_fits:
        for label, clock in cold_fits().items():
            print(f"cold fit, 5,000 messages, 128k, {label}: {clock}")
        for preset, (clock, size) in steady_saves().items():
            print(
                f"steady stored worker, {preset}, 5,000 messages, 128k, one message appended,"
                f" fit + save: {clock}; state document {size / 1000:.0f} KB"
            )
        for label, ms in cold_tail_ab().items():
            print(f"cold fit A/B, fifo, 5,000 messages, 128k, no counts, {label}: {ms:.1f} ms")
        print(f"append one message at 100,000 messages, fifo, 8k: {append_at():.3f} ms (median)")
        for label, value in startup().items():
            shown = f"{value:.0f} ms (median)" if isinstance(value, float) else value
            print(f"start-up, {label}: {shown}")
    if args.skip_load:
        return
    with contextlib.ExitStack() as stack:
        urls = {}
        wanted = args.stores.split(",")
        if "redis" in wanted:
            urls["redis"] = args.redis_url or stack.enter_context(local_redis())
        if "postgresql" in wanted:
            urls["postgresql"] = args.postgres_url or stack.enter_context(local_postgres())
        if "sqlite" in wanted:
            tmp = stack.enter_context(tempfile.TemporaryDirectory())
            urls["sqlite"] = f"sqlite:///{tmp}/load.db"
        for name, url in urls.items():
            result = load(url, args)
            print(
                f"load, {name}: {args.processes} processes, {args.conversations} conversations"
                f" x {args.turns} turns: " + json.dumps(result)
            )


if __name__ == "__main__":
    main()
