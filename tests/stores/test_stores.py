"""Tests for ctxmgr.stores: the SessionStore contract on every backend, against real servers.

Memory and SQLite run everywhere; Redis and PostgreSQL run against the servers
``conftest.py`` starts (skipped with the reason locally when they cannot start, failed on CI).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxmgr import ConfigError, ContextManager, ContextOverflowError, Message
from ctxmgr.stores import (
    AsyncPostgresStore,
    MemoryStore,
    PostgresStore,
    RedisStore,
    SessionStore,
    SQLiteStore,
    StoredSession,
    VersionConflict,
    open_store,
)
from ctxmgr.testing import agent_history, histories

BACKENDS = ["memory", "sqlite", "redis", "postgres"]


def _open(kind: str, request: pytest.FixtureRequest, tmp: Path, ttl: float | None = None) -> Any:
    if kind == "memory":
        return MemoryStore(ttl=ttl)
    if kind == "sqlite":
        return SQLiteStore(tmp / f"{uuid.uuid4().hex}.db", ttl=ttl)
    if kind == "redis":
        return RedisStore(request.getfixturevalue("redis_url"), ttl=ttl)
    return PostgresStore(request.getfixturevalue("postgres_url"), ttl=ttl)


@pytest.fixture(scope="session", params=BACKENDS)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    s = _open(request.param, request, tmp_path_factory.mktemp("sqlite"))
    yield s
    s.close()


def cid() -> str:
    return f"t-{uuid.uuid4().hex}"


def _row(message: Message, reason: str = "evicted", turn: int = 1) -> tuple[str, dict[str, Any]]:
    from ctxmgr.state import message_to_dict

    entry = {"message": message_to_dict(message), "reason": reason, "turn": turn, "strategy": None}
    return f"{message.id}/{message.fingerprint}", entry


# -- the contract -------------------------------------------------------------------------------


def test_store_satisfies_protocol(store: Any) -> None:
    """Every backend is a SessionStore."""
    assert isinstance(store, SessionStore)


def test_missing_conversation(store: Any) -> None:
    """An unknown conversation has version 0, no state, no archive, no counts."""
    c = cid()
    assert (store.version(c), store.load(c), store.archive(c), store.counts(c)) == (0, None, [], {})
    assert store.archive_size(c) == 0
    assert store.delete(c) is False


def test_save_load_round_trip_and_versions(store: Any) -> None:
    """Saves bump the version by one; load returns the last document exactly."""
    c = cid()
    doc = {"state": {"summary": "s", "notes": [{"key": "k"}]}, "n": [1, 2.5, None, "é"]}
    assert store.save(c, doc, expected_version=0) == 1
    assert store.save(c, {**doc, "n": [3]}, expected_version=1) == 2
    loaded = store.load(c)
    assert (loaded.version, loaded.data) == (2, {**doc, "n": [3]})
    assert store.version(c) == 2


def test_compare_and_swap_rejects_stale_writer(store: Any) -> None:
    """A save with an old version raises VersionConflict and writes nothing."""
    c = cid()
    store.save(c, {"v": 1}, expected_version=0)
    store.save(c, {"v": 2}, expected_version=1)
    with pytest.raises(VersionConflict) as info:
        store.save(c, {"v": "stale"}, expected_version=1, archive=[_row(Message.user("x"))])
    assert (info.value.expected, info.value.actual) == (1, 2)
    assert store.load(c).data == {"v": 2}
    assert store.archive(c) == []
    with pytest.raises(VersionConflict):
        store.save(c, {"v": "create"}, expected_version=0)


def test_archive_is_append_only_ordered_and_deduplicated(store: Any) -> None:
    """Archive rows keep insertion order across saves; a key is stored once (first wins)."""
    c = cid()
    a, b, d = Message.user("a"), Message.assistant("b"), Message.user("d")
    store.save(c, {}, expected_version=0, archive=[_row(a, "first"), _row(b)])
    store.save(c, {}, expected_version=1, archive=[_row(a, "again"), _row(d)])
    rows = store.archive(c)
    assert [r["message"]["content"] for r in rows] == ["a", "b", "d"]
    assert rows[0]["reason"] == "first"
    assert store.archive_size(c) == 3


def test_counts_are_kept(store: Any) -> None:
    """Token counts saved in several saves are all returned."""
    c = cid()
    store.save(c, {}, expected_version=0, counts={"tiktoken:cl100k_base|aa": 5})
    store.save(c, {}, expected_version=1, counts={"tiktoken:cl100k_base|bb": 7})
    assert store.counts(c) == {"tiktoken:cl100k_base|aa": 5, "tiktoken:cl100k_base|bb": 7}


def test_features_are_kept_first_wins_and_cas_guarded(store: Any) -> None:
    """Feature rows of several saves are all returned, a key keeps its first value.

    A save that lost the compare-and-swap writes none.
    """
    c = cid()
    assert store.features(c) == {}
    store.save(c, {}, expected_version=0, features={"relevance:x|t|aa": '[["a"], [2]]'})
    store.save(c, {}, expected_version=1, features={"relevance:x|t|aa": "other", "r|v|bb": "é"})
    with pytest.raises(VersionConflict):
        store.save(c, {}, expected_version=1, features={"r|v|cc": "stale"})
    assert store.features(c) == {"relevance:x|t|aa": '[["a"], [2]]', "r|v|bb": "é"}
    assert store.features(c, ["r|v|bb", "missing"]) == {"r|v|bb": "é"}
    assert store.features(c, []) == {}


def test_delete_removes_everything(store: Any) -> None:
    """delete() removes the document, archive, counts and features; the id can be reused."""
    c = cid()
    store.save(
        c,
        {"x": 1},
        expected_version=0,
        archive=[_row(Message.user("a"))],
        counts={"k": 1},
        features={"f": "v"},
    )
    assert store.delete(c) is True
    assert (store.version(c), store.archive(c), store.counts(c)) == (0, [], {})
    assert store.features(c) == {}
    assert store.save(c, {"x": 2}, expected_version=0) == 1


@pytest.mark.parametrize("kind", BACKENDS)
def test_ttl_expires_state_archive_and_counts(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """With a TTL, a conversation not saved for that long is gone (and can start over)."""
    s = _open(kind, request, tmp_path, ttl=0.3)
    c = cid()
    s.save(
        c,
        {"x": 1},
        expected_version=0,
        archive=[_row(Message.user("a"))],
        counts={"k": 1},
        features={"f": "v"},
    )
    assert s.version(c) == 1
    time.sleep(0.6)
    assert (s.version(c), s.load(c), s.archive(c), s.counts(c)) == (0, None, [], {})
    assert s.features(c) == {}
    assert s.save(c, {"x": 2}, expected_version=0) == 1
    assert s.archive(c) == []
    s.close()


# -- open_store ---------------------------------------------------------------------------------


def test_open_store_urls(tmp_path: Path, redis_url: str, postgres_url: str) -> None:
    """Each URL scheme opens its backend; ttl comes from the query or the argument."""
    assert isinstance(open_store("memory://"), MemoryStore)
    sq = open_store(f"sqlite:///{tmp_path}/a.db?ttl=60")
    assert isinstance(sq, SQLiteStore)
    assert (sq.path, sq.ttl) == (tmp_path / "a.db", 60.0)
    rs = open_store(redis_url + "?ttl=5")
    assert isinstance(rs, RedisStore)
    assert rs.ttl == 5.0
    assert rs.version(cid()) == 0
    pg = open_store(postgres_url, ttl=9)
    assert isinstance(pg, PostgresStore)
    assert pg.ttl == 9
    assert pg.version(cid()) == 0
    for s in (sq, rs, pg):
        s.close()
    mem = MemoryStore()
    assert open_store(mem) is mem


def test_open_store_unknown_scheme() -> None:
    """An unknown scheme is a ConfigError listing the supported ones."""
    with pytest.raises(ConfigError, match="sqlite:///path"):
        open_store("mongodb://x")


def test_sqlite_store_is_wal_and_refuses_memory(tmp_path: Path) -> None:
    """The SQLite file is in WAL mode; ':memory:' is refused with the fix."""
    s = SQLiteStore(tmp_path / "w.db")
    assert s._con().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(Exception, match="MemoryStore"):
        SQLiteStore(":memory:")


@pytest.mark.parametrize(
    ("module", "factory", "extra"),
    [
        ("redis", lambda: RedisStore("redis://127.0.0.1:1/0"), "ctxmgr-llm[redis]"),
        ("psycopg", lambda: PostgresStore("postgresql://x@127.0.0.1:1/x"), "ctxmgr-llm[postgres]"),
    ],
)
def test_missing_client_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, factory: Any, extra: str
) -> None:
    """Without redis-py / psycopg the store raises ImportError naming the pip extra."""
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=extra.replace("[", r"\[").replace("]", r"\]")):
        factory()


def test_unreachable_server_raises_store_error() -> None:
    """A server that is not there raises StoreError naming the URL."""
    from ctxmgr.stores import StoreError

    with pytest.raises(StoreError, match=r"127\.0\.0\.1:1"):
        RedisStore("redis://127.0.0.1:1/0").version("x")
    with pytest.raises(StoreError, match=r"127\.0\.0\.1"):
        PostgresStore("postgresql://x@127.0.0.1:1/x")


# -- sessions on every store: save, load elsewhere, continue -----------------------------------


def _same_next_fits(store: Any, preset: str, history: list[Message], cuts: list[int]) -> None:
    """A fresh stored manager per turn fits exactly as one uninterrupted manager."""
    c = cid()
    reference = ContextManager.from_config(preset, max_context_tokens=2500)
    for cut in cuts:
        worker = ContextManager.from_config(
            preset, max_context_tokens=2500, store=store, conversation_id=c
        )
        try:
            expected = reference.fit(history[:cut])
        except ContextOverflowError:  # pinned content alone is over the limit
            with pytest.raises(ContextOverflowError):
                worker.fit(history[:cut])
            return
        got = worker.fit(history[:cut])
        assert [(m.id, m.fingerprint) for m in expected.messages] == [
            (m.id, m.fingerprint) for m in got.messages
        ]
        assert expected.messages == got.messages
        assert expected.report.tokens_after == got.report.tokens_after
    assert store.archive_size(c) == len(reference.state.archive)
    stored = {(e.message.id, e.message.fingerprint) for e in worker.state.archive}
    assert stored == {(e.message.id, e.message.fingerprint) for e in reference.state.archive}
    assert worker.state.summary == reference.state.summary


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    history=histories(max_steps=25),
    preset=st.sampled_from(["fifo", "summary", "agent"]),
    data=st.data(),
)
def test_property_resume_on_any_worker_gives_the_same_fit(
    store: Any, history: list[Message], preset: str, data: st.DataObject
) -> None:
    """Property, per store: save, load in a fresh manager, continue == never interrupted."""
    n = len(history)
    cuts = sorted(
        data.draw(st.lists(st.integers(min_value=1, max_value=n), min_size=1, max_size=5))
    )
    _same_next_fits(store, preset, history, cuts)


def test_resume_long_agent_history_all_presets(tmp_path: Path) -> None:
    """A 300-message agent history compacting many times resumes identically, every preset."""
    store = SQLiteStore(tmp_path / "long.db")
    history = agent_history(300, seed=5)
    cuts = list(range(40, len(history) + 1, 37))
    for preset in ("fifo", "summary", "relevance", "agent"):
        _same_next_fits(store, preset, history, cuts)


def test_state_document_is_json_and_archive_is_rows(store: Any) -> None:
    """The document holds no archive; the archive is rows, the counts are rows."""
    c = cid()
    mgr = ContextManager.from_config("fifo", max_context_tokens=600, store=store, conversation_id=c)
    history = agent_history(60, seed=1)
    mgr.fit(history)
    loaded = store.load(c)
    assert loaded.data["state"]["archive"] == []
    json.dumps(loaded.data)
    assert store.archive_size(c) == len(mgr.state.archive) > 0
    counts = store.counts(c)
    assert len(counts) == len({m.fingerprint for m in history})
    assert all(k.startswith(mgr.counter.name + "|") for k in counts)


async def test_async_postgres_store_session(postgres_url: str) -> None:
    """AsyncPostgresStore: the same contract as coroutines, and StoredSession.afit uses it."""
    s = await AsyncPostgresStore.open(postgres_url)
    c = cid()
    assert await s.version(c) == 0
    assert await s.save(c, {"a": 1}, expected_version=0, archive=[_row(Message.user("q"))]) == 1
    with pytest.raises(VersionConflict):
        await s.save(c, {"a": 2}, expected_version=0)
    assert (await s.load(c)).data == {"a": 1}
    assert await s.save(c, {"a": 1}, expected_version=1, features={"f|t|x": "v"}) == 2
    assert await s.features(c) == {"f|t|x": "v"}
    assert len(await s.archive(c)) == await s.archive_size(c) == 1
    assert await s.delete(c) is True
    history = agent_history(80, seed=2)
    reference = ContextManager.from_config("agent", max_context_tokens=1500)
    for cut in (30, 55, 80):
        session = StoredSession(ContextManager.from_config("agent", max_context_tokens=1500), s, c)
        got = await session.afit(history[:cut])
        assert got.messages == (await reference.afit(history[:cut])).messages
    assert await s.archive_size(c) == len(reference.state.archive)
    await s.close()


async def test_async_store_archive_reads_from_a_worker_thread(postgres_url: str) -> None:
    """The synchronous recall tool reads an AsyncPostgresStore archive from a worker thread.

    Frameworks run synchronous tools in a worker thread: the read goes to the session's
    event loop. On the loop's own thread it would block the loop, so it raises saying
    what to do instead.
    """
    from ctxmgr.stores import StoreError
    from ctxmgr.tools import recall_functions

    s = await AsyncPostgresStore.open(postgres_url)
    c = cid()
    history = agent_history(80, seed=2)
    try:
        await StoredSession(
            ContextManager.from_config("agent", max_context_tokens=1500), s, c
        ).afit(history)
        session = StoredSession(ContextManager.from_config("agent", max_context_tokens=1500), s, c)
        sent = await session.afit(history)  # a second worker: it holds none of the archive
        evicted = [m for m in history if m.id not in {x.id for x in sent.messages} and m.text]
        assert evicted
        _, get_message = recall_functions(lambda: session.manager)
        text = await asyncio.to_thread(get_message, evicted[0].id)
        assert evicted[0].text[:200] in text
        with pytest.raises(StoreError, match="worker thread"):
            get_message(evicted[0].id)
    finally:
        await s.delete(c)
        await s.close()
