"""Question cost, whole-loop flatness and memory at 5,000 to 100,000 messages (issue #8).

Run: ``.venv/bin/python benchmarks/bench_scale.py [--sizes 5000,20000,100000]
[--loop 20000] [--presets fifo,agent]``.

Histories come from :func:`ctxmgr.testing.agent_history` (tool-using agent turns, exact
tiktoken counts, cl100k offline data); the window is 32,000 tokens.

1. **question cost** (CPU time, ``time.process_time``): the manager fits ``n`` messages,
   then 19 times the history grows to the next user message and one fit is timed (the
   new question is scored against the whole history: BM25 postings of its terms plus
   one embedding matrix-vector product). Median in ms.
2. **memory**: ``tracemalloc`` bytes held by the manager after those fits (the history
   list itself is allocated before tracing starts, so it is not counted), in MB; then the
   same with the process-wide part (imported modules, the 33 MB WordLlama embedding
   matrix) loaded before tracing: what one more conversation costs.
3. **whole loop** (``--loop N``): fit before every assistant message of an N-message
   loop; mean ms per turn in each quarter of the loop (flat = the last quarter within
   1.5x of the first).

Targets (issue #8): question <= 10 ms at 20,000 and <= 30 ms at 100,000 messages for
the agent preset; loop last quarter <= 1.5x first; agent memory at 100,000 messages
<= 2x fifo's.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
import tracemalloc

os.environ.setdefault("CTXMGR_TIKTOKEN_OFFLINE", "1")

from ctxmgr import ContextManager, get_counter
from ctxmgr.testing import agent_history

WINDOW = 32_000


def question_cost(
    preset: str, n: int, questions: int = 19, memory: bool = False, warm: bool = False
) -> tuple[float, float, float]:
    """(median CPU ms per question fit, MB held or nan, CPU seconds of the first fit).

    Times are ``time.process_time`` (CPU of this process): the machine these numbers come
    from was shared, and wall time there measured the other tenants. ``memory`` traces
    allocations (slow: timings of that run are not reported). ``warm``: a small
    conversation of the same preset is fitted before tracing starts, so what the process
    loads once for every conversation (modules, the WordLlama model) is not counted: the
    memory one more conversation costs.
    """
    history = agent_history(n + 40 * questions, seed=3)
    users = [i for i in range(n, len(history)) if history[i].role == "user"][:questions]
    counter = get_counter()
    if warm:  # a window it overflows: it compacts, scores and embeds (loads the model)
        small = agent_history(400, seed=5)
        ContextManager.from_config(preset, max_context_tokens=4000, counter=counter).fit(small)
    if memory:
        tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0] if memory else 0
    mgr = ContextManager.from_config(preset, max_context_tokens=WINDOW, counter=counter)
    t0 = time.process_time()
    mgr.fit(history[:n])
    first = time.process_time() - t0
    times = []
    for u in users:
        t0 = time.process_time()
        mgr.fit(history[: u + 1])
        times.append((time.process_time() - t0) * 1000)
    held = float("nan")
    if memory:
        gc.collect()  # bytes held, not garbage waiting for the cycle collector
        held = (tracemalloc.get_traced_memory()[0] - base) / 1e6
        tracemalloc.stop()
    return statistics.median(times), held, first


def loop(preset: str, n: int) -> list[float]:
    """Mean ms per turn fit in each quarter of an ``n``-message agent loop."""
    history = agent_history(n, seed=2)
    mgr = ContextManager.from_config(preset, max_context_tokens=WINDOW, counter=get_counter())
    times: list[tuple[int, float]] = []
    for i in range(1, len(history)):
        if history[i].role != "assistant":
            continue
        t0 = time.process_time()
        mgr.fit(history[:i])
        times.append((i, (time.process_time() - t0) * 1000))
    quarters: list[list[float]] = [[], [], [], []]
    for i, ms in times:
        quarters[min(3, 4 * i // n)].append(ms)
    return [statistics.mean(q) if q else 0.0 for q in quarters]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,20000,100000")
    parser.add_argument("--loop", type=int, default=20000)
    parser.add_argument("--presets", default="fifo,agent")
    parser.add_argument("--memory", default="100000", help="sizes to trace memory at")
    args = parser.parse_args()
    presets = [p for p in args.presets.split(",") if p]
    for n in (int(s) for s in args.sizes.split(",") if s):
        for preset in presets:
            med, _, first = question_cost(preset, n)
            print(
                f"[{preset}] {n:,} messages: question fit median {med:.2f} CPU ms "
                f"(first fit of the {n:,} messages {first:.1f} CPU s)",
                flush=True,
            )
    for n in (int(s) for s in args.memory.split(",") if s):
        for preset in presets:
            _, held, _ = question_cost(preset, n, memory=True)
            print(f"[{preset}] {n:,} messages: {held:.0f} MB held (tracemalloc)", flush=True)
            _, own, _ = question_cost(preset, n, memory=True, warm=True)
            print(
                f"[{preset}] {n:,} messages: {own:.0f} MB held by the conversation "
                "(modules and models loaded before tracing)",
                flush=True,
            )
    if args.loop:
        for preset in presets:
            q = loop(preset, args.loop)
            print(
                f"[{preset}] {args.loop:,}-message loop, mean ms/turn by quarter: "
                + ", ".join(f"{x:.2f}" for x in q)
                + f" (last/first {q[3] / q[0]:.2f}x)",
                flush=True,
            )


if __name__ == "__main__":
    main()
