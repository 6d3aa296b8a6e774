"""Per-fit cost of the agent-facing strategies (``offload``, ``loop_guard``) and recall search.

Run: ``.venv/bin/python benchmarks/bench_agent_tools.py``

On the synthetic 5,000-message tool-using history of ``bench_fit.py``
(``ctxmgr.testing.agent_history``, exact cl100k counts), in one process:

1. append-only fit after one new message, median of 200, for the ``fifo`` pipeline alone and
   with ``offload`` and ``loop_guard`` in front (1M window, nothing compacts): what the new
   ``ctxmgr_arrive`` / ``ctxmgr_report`` hooks and the two strategies add to the hot path;
2. ``search_history`` over an archive of ~4,700 evicted messages: the first search (which
   tokenizes the archive once) and the median of 50 later searches.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

os.environ.setdefault("CTXMGR_TIKTOKEN_OFFLINE", "1")

from ctxmgr import ContextManager, get_counter
from ctxmgr.testing import agent_history
from ctxmgr.tools import search_archive

FIFO = [{"name": "tool_pair_safe"}, {"name": "pin_and_slide"}]
WITH_TOOLS = [{"name": "offload"}, {"name": "loop_guard"}, *FIFO]


def append_only(strategies: list[dict[str, Any]], n: int = 5000, reps: int = 200) -> float:
    history = agent_history(n + reps + 50, seed=1)
    config = {"max_context_tokens": 1_047_576, "strategies": strategies}
    mgr = ContextManager.from_config(config, counter=get_counter())
    mgr.fit(history[:n])
    times = []
    for i in range(n, n + reps):
        t0 = time.perf_counter()
        mgr.fit(history[: i + 1])
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def search_cost() -> tuple[int, float, float]:
    history = agent_history(5000, seed=2)
    mgr = ContextManager.from_config("fifo", max_context_tokens=32_000, counter=get_counter())
    mgr.fit(history)
    archive = mgr.state.archive
    t0 = time.perf_counter()
    search_archive(archive, "read_file flight booking error", k=5)
    first = (time.perf_counter() - t0) * 1000
    times = []
    for q in ["refund policy", "run_tests failure", "seat upgrade payment", "module patch"] * 13:
        t0 = time.perf_counter()
        search_archive(archive, q, k=5)
        times.append((time.perf_counter() - t0) * 1000)
    return len(archive), first, statistics.median(times[:50])


def main() -> None:
    """Print the measurements (milliseconds)."""
    for name, strategies in (("fifo", FIFO), ("offload+loop_guard+fifo", WITH_TOOLS)):
        print(
            f"[{name}] append-only at 5,000 messages: median {append_only(strategies):.3f} ms/fit"
        )
    n, first, later = search_cost()
    print(
        f"[search_history] {n} archived messages: first {first:.0f} ms, then median {later:.2f} ms"
    )


if __name__ == "__main__":
    main()
