"""A multi-process load test of a store: many workers, many conversations, random routing.

Used by ``tests/stores/test_load.py`` (small) and ``benchmarks/bench_stores.py`` (200
conversations x 50 turns, 8 processes). Each conversation is a synthetic tool-using
history (:func:`ctxmgr.testing.agent_history`); turn ``t`` fits its first ``cut_t``
messages. A conversation's turns are submitted in order, each to whichever worker process
is free; with ``race`` > 0 a turn is sometimes submitted twice at once, so two workers fit
the same conversation concurrently and one of them loses the compare-and-swap. Each
worker keeps the managers it has used (stale ones reload), like an adapter's pool.

Checked: every turn is within the budget with valid tool pairs; at the end every history
message is in the last fitted context or in the stored archive; no archive key is stored
twice.
"""

from __future__ import annotations

import functools
import multiprocessing
import random
import statistics
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from ctxmgr.messages import Message
from ctxmgr.stores.session import StoredContextManager
from ctxmgr.testing import agent_history, check_tool_pairs

__all__ = ["LoadResult", "history_for", "run_load"]

_BASES: dict[tuple[str, str, int], StoredContextManager] = {}
_CONVERSATIONS: dict[str, Any] = {}


@dataclass
class LoadResult:
    """What :func:`run_load` measured and checked.

    Attributes:
        fits: fits made (turns, plus raced duplicates).
        seconds: wall time of the whole run.
        latencies_ms: per-fit wall time inside the worker, store round trips included.
        lost: history messages neither in the final context nor in the stored archive.
        violations: turns over the budget or with broken tool pairs (descriptions).
        duplicated: archive keys stored more than once.
        conflicts: compare-and-swap conflicts the workers retried.
        archived: archive entries stored, all conversations.
    """

    fits: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    conflicts: int = 0
    archived: int = 0

    @property
    def throughput(self) -> float:
        """Fits per second."""
        return self.fits / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        """Latency percentile in milliseconds (``q`` in 0..100)."""
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else 0.0
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q) - 1]


@functools.lru_cache(maxsize=512)
def history_for(seed: int, turns: int, per_turn: int = 6) -> tuple[list[Message], list[int]]:
    """Return conversation ``seed``'s history and the cut of each turn (increasing)."""
    history = agent_history(turns * per_turn + 4, seed=seed)
    n = len(history)
    cuts = [min(n, 2 + round((t + 1) * (n - 2) / turns)) for t in range(turns)]
    return history, cuts


def _manager(url: str, preset: str, window: int, cid: str) -> Any:
    from ctxmgr.config import load_config

    key = (url, preset, window)
    base = _BASES.get(key)
    if base is None:
        config = load_config(preset, max_context_tokens=window)
        base = _BASES[key] = StoredContextManager(config, store=url, conversation_id="_base")
    mgr = _CONVERSATIONS.get(cid)
    if mgr is None:
        mgr = _CONVERSATIONS[cid] = base.fork(conversation_id=cid)
    return mgr


def _turn(url: str, preset: str, window: int, cid: str, seed: int, turns: int, t: int) -> dict:
    history, cuts = history_for(seed, turns)
    mgr = _manager(url, preset, window, cid)
    before = mgr.session.conflicts
    t0 = time.perf_counter()
    result = mgr.fit(history[: cuts[t]])
    ms = (time.perf_counter() - t0) * 1000
    report = result.report
    problems = check_tool_pairs(result.messages)
    if report.tokens_after > report.effective_limit:
        problems.append(f"{report.tokens_after} tokens > limit {report.effective_limit}")
    return {
        "cid": cid,
        "t": t,
        "ms": ms,
        "problems": problems,
        "conflicts": mgr.session.conflicts - before,
        "version": mgr.session.version,
        "output": [f"{m.id}/{m.fingerprint}" for m in result.messages],
    }


def run_load(
    url: str,
    *,
    processes: int = 4,
    conversations: int = 20,
    turns: int = 10,
    preset: str = "agent",
    window: int = 4000,
    race: float = 0.1,
    seed: int = 0,
    prefix: str = "load",
) -> LoadResult:
    """Run the load test against the store at ``url`` and check its invariants.

    Args:
        url: a store URL every worker process opens (``redis://...``, ``postgresql://...``,
            ``sqlite:///file``); ``memory://`` is per process and would not be shared.
        processes: worker processes (fork start method).
        conversations: conversations, each with ids ``<prefix>-<n>``; deleted first.
        turns: fits per conversation, in order.
        preset: the ctxmgr preset.
        window: ``max_context_tokens`` (small, so conversations compact).
        race: probability that a turn is also submitted to a second worker at once.
        seed: routing and race randomness.
        prefix: conversation id prefix.

    Returns:
        A :class:`LoadResult`; a correct store has empty ``lost``, ``violations`` and
        ``duplicated``.
    """
    from ctxmgr.stores import open_store

    rng = random.Random(seed)
    store = open_store(url)
    cids = [f"{prefix}-{i}" for i in range(conversations)]
    for cid in cids:
        store.delete(cid)
    result = LoadResult()
    last_output: dict[str, list[str]] = {}
    next_turn = dict.fromkeys(cids, 0)
    outstanding: dict[Future[dict], str] = {}
    ctx = multiprocessing.get_context("fork")
    t_start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=processes, mp_context=ctx) as pool:

        def submit(cid: str) -> None:
            t = next_turn[cid]
            n = 2 if rng.random() < race else 1
            for _ in range(n):
                args = (url, preset, window, cid, int(cid.rsplit("-", 1)[1]), turns, t)
                outstanding[pool.submit(_turn, *args)] = cid

        for cid in cids:
            submit(cid)
        pending_same: dict[str, int] = {}
        while outstanding:
            done, _ = wait(list(outstanding), return_when=FIRST_COMPLETED)
            for fut in done:
                cid = outstanding.pop(fut)
                out = fut.result()
                result.fits += 1
                result.latencies_ms.append(out["ms"])
                result.conflicts += out["conflicts"]
                result.violations += [f"{cid} turn {out['t']}: {p}" for p in out["problems"]]
                if out["t"] == turns - 1:
                    last_output[cid] = out["output"]
                if any(c == cid for c in outstanding.values()):
                    pending_same[cid] = pending_same.get(cid, 0) + 1
                    continue  # its raced twin is still running
                next_turn[cid] += 1
                if next_turn[cid] < turns:
                    submit(cid)
    result.seconds = time.perf_counter() - t_start
    for cid in cids:
        history, cuts = history_for(int(cid.rsplit("-", 1)[1]), turns)
        rows = store.archive(cid)
        keys = [f"{r['message']['id']}/{_fingerprint(r['message'])}" for r in rows]
        result.archived += len(keys)
        seen: set[str] = set()
        for key in keys:
            if key in seen:
                result.duplicated.append(f"{cid}: {key}")
            seen.add(key)
        present = seen | set(last_output.get(cid, ()))
        result.lost += [
            f"{cid}: message {i} ({m.role})"
            for i, m in enumerate(history[: cuts[-1]])
            if f"{m.id}/{m.fingerprint}" not in present
        ]
    store.close()
    return result


def _fingerprint(data: Mapping[str, Any]) -> str:
    from ctxmgr.state import message_from_dict

    return message_from_dict(data).fingerprint
