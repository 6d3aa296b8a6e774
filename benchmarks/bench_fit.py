"""Fit overhead of the ctxmgr core on a 5,000-message tool-using history (issue #2 targets).

Run: ``.venv/bin/python benchmarks/bench_fit.py`` (add ``--peers`` for LangChain
``trim_messages`` and AutoGen ``TokenLimitedChatCompletionContext`` at the same size).

Measures, with exact tiktoken counts (cl100k, offline data):

1. append-only: one fit after appending one message to a 5,000-message history that
   fits the window (gpt-4.1-sized window, 1,047,576 tokens), median over 200 appends;
2. the same with a 128k window, after the history was compacted once;
3. a whole 5,000-message agent loop, fit before every assistant message, compactions
   included (agent preset, 32k window): mean ms per turn, and the number of compactions.

Targets (issue #2): (1) median <= 0.5 ms; (3) mean <= 2 ms per turn.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("CTXMGR_TIKTOKEN_OFFLINE", "1")

from ctxmgr import ContextManager, get_counter
from ctxmgr.testing import agent_history


def append_only(
    preset: str, window: int, n: int = 5000, reps: int = 200, provider: str = "auto"
) -> tuple[float, float]:
    history = agent_history(n + reps + 50, seed=1)
    counter = get_counter()
    mgr = ContextManager.from_config(
        preset, max_context_tokens=window, counter=counter, provider=provider
    )
    mgr.fit(history[:n])  # warm: the history as the app had it
    times = []
    compacted = 0
    for i in range(n, n + reps):
        t0 = time.perf_counter()
        _, report = mgr.fit(history[: i + 1])
        times.append((time.perf_counter() - t0) * 1000)
        compacted += report.compacted
    fast = [t for t, _ in zip(times, range(reps))]
    return statistics.median(fast), compacted


def agent_loop(
    preset: str, window: int, n: int = 5000, provider: str = "auto"
) -> tuple[float, float, int, int, float]:
    history = agent_history(n, seed=2)
    mgr = ContextManager.from_config(
        preset, max_context_tokens=window, counter=get_counter(), provider=provider
    )
    times = []
    compactions = 0
    t_all = time.perf_counter()
    for i in range(1, len(history)):
        if history[i].role != "assistant":
            continue
        t0 = time.perf_counter()
        _, report = mgr.fit(history[:i])
        times.append((time.perf_counter() - t0) * 1000)
        compactions += report.compacted
    total = (time.perf_counter() - t_all) * 1000
    return statistics.mean(times), statistics.median(times), compactions, len(times), total


def peers(n: int = 5000) -> None:
    from langchain_core.messages import trim_messages

    from ctxmgr.bench.peers import _to_langchain

    history = agent_history(n, seed=1)
    counter = get_counter()
    lc = [_to_langchain(m, f"m{i}") for i, m in enumerate(history)]
    t0 = time.perf_counter()
    trim_messages(
        lc,
        max_tokens=32000,
        strategy="last",
        include_system=True,
        token_counter=lambda ms: sum(counter.count_text(str(m.content)) + 3 for m in ms),
    )
    print(f"langchain trim_messages at {n} messages: {(time.perf_counter() - t0) * 1000:.0f} ms")
    fresh = get_counter("tiktoken:cl100k_base")
    t0 = time.perf_counter()
    ContextManager.from_config("agent", max_context_tokens=32000, counter=fresh).fit(history)
    cold = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    ContextManager.from_config("agent", max_context_tokens=32000, counter=fresh).fit(history)
    warm = (time.perf_counter() - t0) * 1000
    print(
        f"ctxmgr agent one-shot fit of {n} messages: cold (tokenizing all) {cold:.0f} ms, "
        f"new manager with the counter cache warm {warm:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", action="store_true")
    parser.add_argument(
        "--provider",
        default="auto",
        choices=("auto", "openai", "anthropic", "gemini"),
        help="provider profile (anthropic/gemini add the wire-rule normalization)",
    )
    args = parser.parse_args()
    provider = args.provider
    for preset in ("fifo", "agent"):
        med, comp = append_only(preset, 1_047_576, provider=provider)
        print(
            f"[{preset}] append-only, 5,000 msgs in a 1M window: median {med:.3f} ms/fit "
            f"({comp} compactions in 200 appends)"
        )
        med, comp = append_only(preset, 128_000, provider=provider)
        print(
            f"[{preset}] append-only, 5,000-msg history, 128k window: median {med:.3f} ms/fit "
            f"({comp} compactions in 200 appends)"
        )
    for preset in ("fifo", "relevance", "summary", "agent"):
        mean, med, comp, turns, total = agent_loop(preset, 32_000, provider=provider)
        print(
            f"[{preset}] 5,000-message agent loop, 32k window: mean {mean:.3f} ms/turn, "
            f"median {med:.3f} ms, {comp} compactions over {turns} turns ({total / 1000:.1f} s)"
        )
    if args.peers:
        peers()


if __name__ == "__main__":
    main()
