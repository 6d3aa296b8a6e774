"""Worker processes against real Redis and PostgreSQL: a small load test and SIGKILL faults.

The full-size load test (8 processes, 200 conversations x 50 turns) is
``benchmarks/bench_stores.py``; this one runs 4 processes x 20 conversations x 10 turns.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from ctxmgr import ContextManager, Message
from ctxmgr.stores import open_store
from ctxmgr.stores.loadtest import run_load
from ctxmgr.stores.session import StoredContextManager
from ctxmgr.testing import agent_history, check_tool_pairs


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/load.db"
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return str(request.getfixturevalue("postgres_url"))


def test_small_load_loses_nothing(url: str) -> None:
    """4 worker processes, 20 conversations x 10 turns, random routing and raced turns."""
    result = run_load(
        url,
        processes=4,
        conversations=20,
        turns=10,
        race=0.2,
        prefix=f"small-{uuid.uuid4().hex[:8]}",
    )
    assert result.fits >= 200
    assert result.lost == []
    assert result.violations == []
    assert result.duplicated == []
    assert result.archived > 0


# -- SIGKILL ------------------------------------------------------------------------------------


class StallingSummarizer:
    """Signals through a file, then hangs: the worker is 'mid-fit' until it is killed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def summarize(self, previous: str | None, messages: Sequence[Message], max_tokens: int) -> str:
        self.marker.write_text("in fit")
        time.sleep(120)
        return "never"


def _fit_and_hang(url: str, cid: str, cut: int, marker: str) -> None:
    mgr = ContextManager.from_config(
        "summary",
        max_context_tokens=1500,
        store=url,
        conversation_id=cid,
        summarizer=StallingSummarizer(Path(marker)),
    )
    mgr.fit(agent_history(200, seed=11)[:cut])


def _kill_when(proc: Any, marker: Path) -> None:
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.is_alive(), "the worker died before reaching the fault point"
        assert time.monotonic() < deadline, "the worker never reached the fault point"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout=30)
    assert proc.exitcode == -signal.SIGKILL


def _committed(url: str, cid: str) -> tuple[int, set[str], Any]:
    store = open_store(url)  # a new connection, as a restarted worker opens
    version = store.version(cid)
    rows = {f"{r['message']['id']}/{r['reason']}" for r in store.archive(cid)}
    return version, rows, store


def test_sigkill_mid_fit_loses_nothing_committed(url: str, tmp_path: Path) -> None:
    """A worker killed inside a fit commits nothing; committed state is intact; next fit works."""
    cid = f"kill-{uuid.uuid4().hex}"
    history = agent_history(200, seed=11)
    first = ContextManager.from_config(
        "summary", max_context_tokens=1500, store=url, conversation_id=cid
    )
    first.fit(history[:80])
    first.fit(history[:120])
    version, rows, _ = _committed(url, cid)
    assert version == 2 and rows
    marker = tmp_path / "mid-fit"
    proc = multiprocessing.get_context("fork").Process(
        target=_fit_and_hang, args=(url, cid, 180, str(marker))
    )
    proc.start()
    _kill_when(proc, marker)
    after, rows_after, store = _committed(url, cid)
    assert (after, rows_after) == (version, rows)
    worker = StoredContextManager(first.config, store=store, conversation_id=cid)
    result = worker.fit(history[:180])
    assert check_tool_pairs(result.messages) == []
    archived = {f"{r['message']['id']}" for r in store.archive(cid)}
    assert {m.id for m in history[:180]} <= archived | {m.id for m in result.messages}
    assert store.version(cid) == version + 1
    store.close()


class _StallingCounts(Mapping[str, int]):
    """Counts whose iteration hangs: read inside the store's save transaction."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __getitem__(self, key: str) -> int:
        raise KeyError(key)

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[str]:
        Path(self.marker).write_text("in save")
        time.sleep(120)
        return iter(())


def _save_and_hang(url: str, cid: str, version: int, marker: str) -> None:
    store = open_store(url)
    store.save(
        cid,
        {"state": {"summary": "half-written"}},
        expected_version=version,
        archive=[("x/y", {"message": {"role": "user", "content": "partial", "id": "x"}})],
        counts=_StallingCounts(marker),
    )


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_sigkill_inside_a_save_transaction(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Killed while holding the write transaction: nothing is half-written, the lock is freed."""
    url = (
        f"sqlite:///{tmp_path}/tx.db"
        if kind == "sqlite"
        else str(request.getfixturevalue("postgres_url"))
    )
    cid = f"tx-{uuid.uuid4().hex}"
    history = agent_history(120, seed=12)
    first = ContextManager.from_config(
        "fifo", max_context_tokens=800, store=url, conversation_id=cid
    )
    first.fit(history[:60])
    version, rows, _ = _committed(url, cid)
    marker = tmp_path / "mid-save"
    proc = multiprocessing.get_context("fork").Process(
        target=_save_and_hang, args=(url, cid, version, str(marker))
    )
    proc.start()
    _kill_when(proc, marker)
    after, rows_after, store = _committed(url, cid)
    assert (after, rows_after) == (version, rows)
    assert "half-written" not in str(store.load(cid).data)
    worker = StoredContextManager(first.config, store=store, conversation_id=cid)
    result = worker.fit(history)
    assert store.version(cid) == version + 1
    archived = {r["message"]["id"] for r in store.archive(cid)}
    assert "x" not in archived
    assert {m.id for m in history} <= archived | {m.id for m in result.messages}
    store.close()
