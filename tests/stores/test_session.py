"""Tests for StoredSession and StoredContextManager: concurrency, notes, errors, adapters."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ctxmgr import ContextManager, ContextOverflowError, Message
from ctxmgr.stores import MemoryStore, SQLiteStore, StoreError
from ctxmgr.stores.session import StoredContextManager
from ctxmgr.testing import agent_history, check_tool_pairs


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/s.db"
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return str(request.getfixturevalue("postgres_url"))


def stored(url: Any, cid: str, preset: str = "agent", window: int = 2000) -> StoredContextManager:
    mgr = ContextManager.from_config(
        preset, max_context_tokens=window, store=url, conversation_id=cid
    )
    assert isinstance(mgr, StoredContextManager)
    return mgr


def keys(messages: Any) -> set[str]:
    return {f"{m.id}/{m.fingerprint}" for m in messages}


class Interleaving:
    """A store that runs ``before`` once, just before the first save (another worker)."""

    def __init__(self, inner: Any, before: Callable[[], None]) -> None:
        self.inner = inner
        self.before: Callable[[], None] | None = before
        self.ttl = inner.ttl

    def save(self, *args: Any, **kwargs: Any) -> int:
        if self.before is not None:
            run, self.before = self.before, None
            run()
        return int(self.inner.save(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_lost_race_reloads_and_keeps_the_winners_notes_and_archive(url: str) -> None:
    """A worker whose save loses the race reloads and refits: the winner's work survives."""
    cid = f"race-{uuid.uuid4().hex}"
    history = agent_history(160, seed=4)
    a = stored(url, cid)
    a.fit(history[:60])
    a.scratchpad.write("from_a", ["A's fact"])

    def worker_a_turn() -> None:  # A saves between B's load and B's save
        a.fit(history[:100])
        a.scratchpad.write("from_a_later", ["A's later fact"])

    b_store = Interleaving(a.store, worker_a_turn)
    b = StoredContextManager(a.config, store=b_store, conversation_id=cid)
    b.scratchpad.write("from_b", ["B's fact"])  # conflicts once, retried on A's state
    result = b.fit(history[:120])
    assert b.session is not None and b.session.conflicts == 1
    notes = stored(url, cid).scratchpad.read()
    for fact in ("A's fact", "A's later fact", "B's fact"):
        assert fact in notes
    archived = keys(e.message for e in stored(url, cid).state.archive)
    assert keys(history[:120]) <= archived | keys(result.messages)
    assert archived >= keys(e.message for e in a.state.archive)


def test_concurrent_workers_on_one_conversation_lose_nothing(url: str) -> None:
    """Six threads, each its own manager, fit one conversation at once and write notes."""
    cid = f"conc-{uuid.uuid4().hex}"
    history = agent_history(240, seed=6)
    cuts = [60, 110, 160, 200, 240]
    n = 6
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []
    outputs: dict[int, list[Message]] = {}

    def work(i: int) -> None:
        try:
            mgr = stored(url, cid)
            for r, cut in enumerate(cuts):
                barrier.wait(timeout=60)
                result = mgr.fit(history[:cut])
                assert check_tool_pairs(result.messages) == []
                assert result.report.tokens_after <= result.report.effective_limit
                mgr.scratchpad.write(f"w{i}.r{r}", [f"worker {i} round {r}"])
                outputs[i] = result.messages
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    final = stored(url, cid)
    notes = final.scratchpad.read()
    missing = [
        f"w{i}.r{r}" for i in range(n) for r in range(len(cuts)) if f"w{i}.r{r}" not in notes
    ]
    assert missing == []
    rows = final.store.archive(cid)
    row_keys = [f"{r['message']['id']}/{Message(**_plain(r['message'])).fingerprint}" for r in rows]
    assert len(row_keys) == len(set(row_keys))
    lost = keys(history) - set(row_keys) - keys(outputs[0])
    assert lost == set()


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    from ctxmgr.state import message_from_dict

    m = message_from_dict(data)
    return {
        "role": m.role,
        "content": m.content,
        "tool_calls": m.tool_calls,
        "tool_call_id": m.tool_call_id,
        "name": m.name,
        "id": m.id,
        "pinned": m.pinned,
    }


def test_failed_fit_commits_nothing(tmp_path: Path) -> None:
    """A fit that raises saves nothing; the next fit starts from the last committed state."""
    store = SQLiteStore(tmp_path / "f.db")
    cid = "fail"
    mgr = stored(store, cid, "fifo", 400)
    history = agent_history(40, seed=1)
    mgr.fit(history[:20])
    version = store.version(cid)
    huge = Message.user("pinned " + "word " * 2000, pinned=True)
    with pytest.raises(ContextOverflowError):
        mgr.fit([*history[:20], huge])
    assert store.version(cid) == version
    result = mgr.fit(history)
    assert store.version(cid) == version + 1
    assert keys(history) <= keys(result.messages) | keys(e.message for e in mgr.state.archive)


def test_too_many_conflicts_raise_store_error() -> None:
    """When every save loses, fit gives up after max_retries with a StoreError."""
    inner = MemoryStore()

    class AlwaysBehind(Interleaving):
        def save(self, cid: str, data: Any, **kwargs: Any) -> int:
            inner.save(cid, data, expected_version=inner.version(cid))  # another worker
            return int(inner.save(cid, data, **kwargs))

    mgr = StoredContextManager(
        ContextManager.from_config("fifo", max_context_tokens=500).config,
        store=AlwaysBehind(inner, lambda: None),
        conversation_id="c",
        max_retries=3,
    )
    with pytest.raises(StoreError, match="3 saves in a row"):
        mgr.fit([Message.user("hi")])


def test_clone_is_detached_and_fork_keeps_the_store(tmp_path: Path) -> None:
    """clone() never writes to the store; fork(conversation_id) opens another conversation."""
    store = SQLiteStore(tmp_path / "c.db")
    mgr = stored(store, "one", "fifo", 500)
    mgr.fit(agent_history(30, seed=2))
    version = store.version("one")
    copy = mgr.clone()
    copy.fit(agent_history(50, seed=2))
    assert store.version("one") == version
    other = mgr.fork(conversation_id="two")
    other.fit([Message.user("x")])
    assert (other.store, store.version("two")) == (store, 1)
    mgr.forget()
    assert store.version("one") == 0


# -- adapters -----------------------------------------------------------------------------------


def test_langchain_runnable_workers_share_the_conversation(url: str) -> None:
    """Two ContextRunnable 'workers' on one store serve alternate turns as one would."""
    pytest.importorskip("langchain_core")
    from ctxmgr.adapters.langchain import ContextMiddleware, ContextRunnable
    from langchain_core.messages import convert_to_messages

    from ctxmgr.messages import messages_to_openai

    history = convert_to_messages(messages_to_openai(agent_history(120, seed=8)))
    thread = f"lc-{uuid.uuid4().hex}"
    cfg: Any = {"configurable": {"thread_id": thread}}
    workers = [
        ContextRunnable.from_config("agent", max_context_tokens=1500, store=url) for _ in "ab"
    ]
    reference = ContextRunnable.from_config("agent", max_context_tokens=1500)
    for turn, cut in enumerate(range(20, len(history) + 1, 10)):
        got = workers[turn % 2].invoke(history[:cut], cfg)
        expected = reference.invoke(history[:cut], cfg)
        assert [(m.type, m.text) for m in got] == [(m.type, m.text) for m in expected]
    shared = workers[0].manager_for(thread)
    assert isinstance(shared, StoredContextManager) and shared.conversation_id == thread
    assert shared.store.version(thread) == len(range(20, len(history) + 1, 10))
    middleware = ContextMiddleware.from_config("agent", max_context_tokens=1500, store=url)
    assert middleware.manager_for("t9").conversation_id == "t9"  # type: ignore[attr-defined]


def test_langchain_note_tools_reach_every_worker(tmp_path: Path) -> None:
    """A note written through one worker's tool is read by another worker's tool."""
    pytest.importorskip("langchain_core")
    from ctxmgr.adapters.langchain import ContextMiddleware

    url = f"sqlite:///{tmp_path}/n.db"
    a, b = (
        ContextMiddleware.from_config("agent", max_context_tokens=2000, store=url) for _ in "ab"
    )
    cfg: Any = {"configurable": {"thread_id": "notes"}}
    write = {t.name: t for t in a.note_tools()}["write_note"]
    read = {t.name: t for t in b.note_tools()}["read_notes"]
    write.invoke({"key": "prefs", "facts": ["aisle seat"]}, cfg)
    assert "aisle seat" in read.invoke({}, cfg)


def test_llamaindex_memory_workers_share_the_session(url: str) -> None:
    """Two ContextMemory 'workers' (one chat store) fit one session as one memory would."""
    pytest.importorskip("llama_index.core")
    from ctxmgr.adapters.llamaindex import ContextMemory, from_messages
    from llama_index.core.storage.chat_store import SimpleChatStore

    chat_store = SimpleChatStore()
    key = f"li-{uuid.uuid4().hex}"
    workers = [
        ContextMemory.from_config(
            "agent",
            chat_store=chat_store,
            session_id=key,
            max_context_tokens=1500,
            store=url,
            headroom_tokens=100,
        )
        for _ in "ab"
    ]
    reference = ContextMemory.from_config(
        "agent", session_id=key, max_context_tokens=1500, headroom_tokens=100
    )
    history = from_messages(agent_history(100, seed=9))
    done = 0
    for turn, cut in enumerate(range(20, len(history) + 1, 20)):
        for msg in history[done:cut]:
            workers[0].put(msg)
            reference.put(msg)
        done = cut
        got = workers[turn % 2].get()
        assert [(m.role, m.content) for m in got] == [(m.role, m.content) for m in reference.get()]
    assert isinstance(workers[1].manager, StoredContextManager)
    assert workers[1].manager.store.version(key) == 5


async def test_autogen_context_resumes_on_another_worker(tmp_path: Path) -> None:
    """An AutoGen context on a second worker continues the stored conversation."""
    pytest.importorskip("autogen_core")
    from ctxmgr.adapters.autogen import ContextManagerContext, from_messages

    url = f"sqlite:///{tmp_path}/ag.db"
    history = from_messages(agent_history(90, seed=10)[1:])
    first = ContextManagerContext.from_config(
        "agent", max_context_tokens=1500, store=url, conversation_id="ag"
    )
    reference = ContextManagerContext.from_config("agent", max_context_tokens=1500)
    for msg in history[:50]:
        await first.add_message(msg)
        await reference.add_message(msg)
    await first.get_messages()
    await reference.get_messages()
    second = ContextManagerContext.from_config(
        "agent", max_context_tokens=1500, store=url, conversation_id="ag"
    )
    for msg in history:
        await second.add_message(msg)
    for msg in history[50:]:
        await reference.add_message(msg)
    got, expected = await second.get_messages(), await reference.get_messages()
    assert [str(m.content) for m in got] == [str(m.content) for m in expected]
    assert second.manager.state.turn == 2


def test_langchain_session_factory_binds_each_session(tmp_path: Path) -> None:
    """ManagedChatMessageHistory.session_factory(store=...) stores each session under its id."""
    pytest.importorskip("langchain_core")
    from ctxmgr.adapters.langchain import ManagedChatMessageHistory
    from langchain_core.messages import AIMessage, HumanMessage

    url = f"sqlite:///{tmp_path}/f.db"
    factory = ManagedChatMessageHistory.session_factory("fifo", store=url, max_context_tokens=2000)
    alpha, beta = factory("alpha"), factory("beta")
    assert (alpha.manager.conversation_id, beta.manager.conversation_id) == ("alpha", "beta")  # type: ignore[attr-defined]
    alpha.add_messages([HumanMessage("hi from alpha"), AIMessage("hello alpha")])
    assert [m.text for m in alpha.messages] == ["hi from alpha", "hello alpha"]
    store = alpha.manager.store  # type: ignore[attr-defined]
    assert store.version("alpha") >= 1 and store.version("beta") == 0


def test_state_loaded_in_memory_is_stored_once(tmp_path: Path) -> None:
    """load_state() on a stored manager: the next save stores its archive, then only new rows."""
    source = ContextManager.from_config("fifo", max_context_tokens=500)
    history = agent_history(60, seed=3)
    source.fit(history)
    mgr = stored(SQLiteStore(tmp_path / "l.db"), "loaded", "fifo", 500)
    mgr.load_state(source.state.to_dict())
    mgr.fit(history)
    assert mgr.store.archive_size("loaded") == len(source.state.archive) > 0
    assert mgr.session is not None
    _data, rows, _counts = mgr.session._payload()
    assert rows == []  # nothing pending: the archive is read from the store now


def test_calibration_and_grown_reserve_reach_the_next_worker(tmp_path: Path) -> None:
    """record_usage / record_stop on one worker are saved: another worker's fit uses them."""
    url = f"sqlite:///{tmp_path}/s.db"
    history = agent_history(40, seed=9)
    first = stored(url, "calib", preset="fifo", window=4000)
    _, report = first.fit(history[:20])
    factor = first.record_usage(input_tokens=report.tokens_after * 13 // 10)
    first.record_stop("max_tokens")
    assert factor == pytest.approx(1.3, abs=0.01)
    second = stored(url, "calib", preset="fifo", window=4000)
    _, again = second.fit(history[:21])
    assert again.calibration == pytest.approx(factor)
    assert again.reserve_tokens == first.reserve_tokens > report.reserve_tokens
    assert again.effective_limit < report.effective_limit
