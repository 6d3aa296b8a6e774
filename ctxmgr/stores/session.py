"""Bind a :class:`~ctxmgr.manager.ContextManager` to one conversation in a store.

:class:`StoredSession` loads the conversation before a fit and saves it after a
successful one with compare-and-swap. **Guarantee**: when several workers (threads,
processes, machines) fit the same conversation at once, each save succeeds only if
nobody saved since that worker loaded; the loser reloads the winner's state and fits
again (bounded retries with jittered backoff). So every committed fit builds on every
earlier committed fit: no archived message, note, summary fold or token count is lost,
and the archive holds each message once. A fit that raised commits nothing, except one
that raised :class:`~ctxmgr.errors.AgentLoopError` (raised after the fit committed),
which is saved before the error propagates.
Notes edited between fits must go through :meth:`StoredSession.transact` (the adapters'
note tools do), which applies the same load / change / compare-and-swap loop.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from ctxmgr._bulk import paused_gc
from ctxmgr.errors import AgentLoopError
from ctxmgr.manager import ContextManager
from ctxmgr.messages import Message
from ctxmgr.report import FitResult
from ctxmgr.state import Archive, ArchivedMessage, SessionState, message_from_dict, message_to_dict
from ctxmgr.stores.base import StoredState, StoreError, VersionConflict
from ctxmgr.stores.snapshot import Codec, HistoryDigest, export_window

__all__ = ["StoredArchive", "StoredContextManager", "StoredSession"]


def _featured(manager: ContextManager) -> list[Any]:
    """The manager's strategies that keep feature rows in a store (``load_features``)."""
    return [s for s in manager.strategies if hasattr(s, "load_features")]


T = TypeVar("T")

FORMAT = 1


def _entry(item: Mapping[str, Any]) -> ArchivedMessage:
    return ArchivedMessage(
        message_from_dict(item["message"]),
        str(item["reason"]),
        int(item["turn"]),
        item.get("strategy"),
    )


def _key(message: Message) -> str:
    return f"{message.id}/{message.fingerprint}"


class StoredArchive(Archive):
    """An archive whose entries live in a store; only entries not yet saved are in memory.

    Reading (iteration, ``get``, ``search``, ``in``) fetches the stored entries; ``len``
    is the stored size plus the unsaved entries. Adding a message the store already has
    is harmless: the store keeps the first entry per key.

    Args:
        fetch: returns the stored entries, oldest first.
        size: returns the number of stored entries.
    """

    def __init__(self, fetch: Callable[[], list[dict[str, Any]]], size: Callable[[], int]):
        super().__init__()
        self._fetch = fetch
        self._size = size
        self._stored_size: int | None = None

    def pending(self) -> list[tuple[str, dict[str, Any]]]:
        """Entries added since the last save, as store rows."""
        return [
            (
                key,
                {
                    "message": message_to_dict(e.message),
                    "reason": e.reason,
                    "turn": e.turn,
                    "strategy": e.strategy,
                },
            )
            for key, e in self._entries.items()
        ]

    def committed(self) -> None:
        """Forget the pending entries: the store has them now."""
        self._entries.clear()
        self._stored_size = None

    def _stored(self) -> dict[str, ArchivedMessage]:
        out: dict[str, ArchivedMessage] = {}
        for item in self._fetch():
            entry = _entry(item)
            out.setdefault(_key(entry.message), entry)
        return out

    def _all(self) -> dict[str, ArchivedMessage]:
        entries = self._stored()
        for key, entry in self._entries.items():
            entries.setdefault(key, entry)
        return entries

    def __len__(self) -> int:
        if not self._entries:
            if self._stored_size is None:
                self._stored_size = self._size()
            return self._stored_size
        return len(self._all())

    def __iter__(self) -> Iterator[ArchivedMessage]:
        return iter(list(self._all().values()))

    def __contains__(self, message: object) -> bool:
        if not isinstance(message, Message):
            return False
        return _key(message) in self._entries or _key(message) in self._stored()

    def get(self, message_id: str) -> Message | None:
        """Return the archived message with this id, or ``None`` (reads the store)."""
        for entry in self._all().values():
            if entry.message.id == message_id:
                return entry.message
        return None

    def search(self, query: str, k: int = 5) -> list[ArchivedMessage]:
        """See :meth:`Archive.search` (reads the store)."""
        arc = Archive()
        arc._entries = self._all()
        return arc.search(query, k)

    def to_list(self) -> list[dict[str, Any]]:
        """Serialize every entry, stored and pending."""
        arc = Archive()
        arc._entries = self._all()
        return arc.to_list()

    def __deepcopy__(self, memo: dict[int, Any]) -> Archive:
        arc = Archive()  # a clone gets an in-memory copy, detached from the store
        arc._entries = dict(self._all())
        return arc


class StoredSession:
    """A manager bound to conversation ``conversation_id`` of ``store``.

    Args:
        manager: the manager to fit with; its state is replaced by the stored one.
        store: a :class:`~ctxmgr.stores.base.SessionStore` (or ``AsyncPostgresStore`` for
            :meth:`afit`).
        conversation_id: the conversation (thread, session) key.
        max_retries: fits attempted per call before giving up on version conflicts.

    Raises:
        StoreError: from fit/afit when ``max_retries`` saves in a row lost the race, or
            the store failed.
    """

    def __init__(
        self,
        manager: ContextManager,
        store: Any,
        conversation_id: str,
        *,
        max_retries: int = 20,
    ) -> None:
        self.manager = manager
        self.store = store
        self.conversation_id = conversation_id
        self.max_retries = max_retries
        self.version = 0
        self.conflicts = 0
        self._synced = False
        self._digest = HistoryDigest()
        self._counted = 0  # history messages whose counts the store has
        self._config_key = manager.config.model_dump_json()
        self._archive_size: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # an async store's event loop
        self._encoded: Codec = {}
        self._window_rows: set[str] = set()  # shrunk-message rows the store has
        self._new_window_rows: dict[str, str] = {}  # written by the save in progress

    # ------------------------------------------------------------------ loading
    def _apply(self, *args: Any, **kwargs: Any) -> None:
        with paused_gc():  # decoding the stored state is a burst of small allocations
            self._load(*args, **kwargs)

    def _load(
        self,
        stored: StoredState | None,
        counts: Mapping[str, int] | None,
        archive_size: int | None = None,
        features: Mapping[str, str] | None = None,
        window_rows: Mapping[str, str] | None = None,
    ) -> None:
        mgr = self.manager
        mgr.reset()
        self._window_rows = set(window_rows or ())
        for strategy in _featured(mgr):
            strategy.load_features(features or {})
        cid, store = self.conversation_id, self.store
        if archive_size is None:
            archive = StoredArchive(lambda: store.archive(cid), lambda: store.archive_size(cid))
        else:  # an async store: the size is known, the entries need ``await store.archive``
            self._archive_size = archive_size
            archive = StoredArchive(self._async_entries, lambda: self._archive_size or 0)
        self._digest = HistoryDigest()
        self._counted = 0
        if stored is None:
            self.version = 0
            mgr.state.archive = archive
            self._synced = True
            return
        data = stored.data
        state = SessionState.from_dict({**data["state"], "archive": []})
        state.archive = archive
        mgr.state = state
        if counts:
            cache = getattr(mgr.counter, "_cache", None)
            prefix = f"{mgr.counter.name}|"
            if isinstance(cache, dict):
                for key, tokens in counts.items():
                    if key.startswith(prefix):
                        cache[key[len(prefix) :]] = tokens
        window = data.get("window")
        if window and data.get("config") == self._config_key:
            mgr._resume = {**window, "_rows": window_rows} if window_rows else window
            self._counted = int(window["history_len"]) if counts is not None else 0
        self.version = stored.version
        self._synced = True

    def sync(self) -> None:
        """Make the manager reflect the stored conversation (a no-op when up to date)."""
        if self._synced and self.store.version(self.conversation_id) == self.version:
            return
        with paused_gc():  # reading and decoding the stored state: a burst of allocations
            stored = self.store.load(self.conversation_id)
            counts = self.store.counts(self.conversation_id) if stored is not None else None
            features = rows = None
            if stored is not None and self._features_wanted():
                features = self.store.features(self.conversation_id)
            keys = self._row_keys(stored)
            if keys:  # read with the relevance rows when those were read (all of them)
                rows = (
                    {k: features[k] for k in keys if k in features}
                    if features is not None
                    else self.store.features(self.conversation_id, keys)
                )
            self._apply(stored, counts, features=features, window_rows=rows)

    def _row_keys(self, stored: StoredState | None) -> list[str]:
        """Keys of the feature rows the stored window refers to (its shrunk messages)."""
        if stored is None or not hasattr(self.store, "features"):
            return []
        window = stored.data.get("window") or {}
        return [
            x["k"]
            for item in (window.get("shrunk") or {}).values()
            for x in item["messages"]
            if "k" in x
        ]

    def _features_wanted(self) -> bool:
        return hasattr(self.store, "features") and bool(_featured(self.manager))

    async def async_sync(self) -> None:
        """:meth:`sync` for a store whose methods are coroutines (or plain ones)."""
        cid = self.conversation_id
        if self._synced and await _maybe(self.store.version(cid)) == self.version:
            return
        stored = await _maybe(self.store.load(cid))
        counts = await _maybe(self.store.counts(cid)) if stored is not None else None
        size: int | None = None  # a plain store's archive is read on demand, as by sync
        if inspect.iscoroutinefunction(self.store.archive):
            size = int(await self.store.archive_size(cid)) if stored is not None else 0
            self._loop = asyncio.get_running_loop()  # where the archive can be read
        features = rows = None
        if stored is not None and self._features_wanted():
            features = await _maybe(self.store.features(cid))
        keys = self._row_keys(stored)
        if keys:
            rows = (
                {k: features[k] for k in keys if k in features}
                if features is not None
                else await _maybe(self.store.features(cid, keys))
            )
        self._apply(stored, counts, size, features, rows)

    def _async_entries(self) -> list[dict[str, Any]]:
        """Read an async store's archive from synchronous code (the recall tools).

        The read runs on the event loop the session was synced on, and this thread waits
        for it (at most 60 s): that works from any other thread, which is where
        frameworks run synchronous tools (LangChain, LlamaIndex and AutoGen run them in a
        worker thread). On the loop's own thread it cannot wait without blocking the
        loop, so it raises.

        Raises:
            StoreError: called on the event loop's thread, or the loop has stopped, or
                the read failed or took longer than 60 s.
        """
        loop, cid = self._loop, self.conversation_id
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or loop.is_closed() or not loop.is_running() or running is loop:
            raise StoreError(
                f"the archive of {cid!r} is in an async store and this code runs on its "
                "event loop (or the loop has stopped): read it with "
                "`await store.archive(conversation_id)`, or call the synchronous recall "
                "tools from a worker thread (e.g. `await asyncio.to_thread(...)`)"
            )
        future = asyncio.run_coroutine_threadsafe(self.store.archive(cid), loop)
        try:
            return list(future.result(timeout=60))
        except Exception as exc:
            future.cancel()
            raise StoreError(f"reading the archive of {cid!r} failed: {exc!r}") from exc

    # ------------------------------------------------------------------ saving
    def _features(self) -> dict[str, Any]:
        """The ``features=`` keyword of a save (none for a store without features)."""
        if not hasattr(self.store, "features"):
            return {}
        rows: dict[str, str] = dict(self._new_window_rows)
        for strategy in _featured(self.manager):
            rows.update(strategy.pending_features())
        return {"features": rows}

    def _payload(self) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]], dict[str, int]]:
        mgr = self.manager
        state = mgr.state
        archive = state.archive
        state_dict = copy.copy(state)
        state_dict.archive = Archive()
        history = mgr._history
        digest = self._digest.follow(history)
        cache = getattr(mgr.counter, "_cache", None)
        counts: dict[str, int] = {}
        if isinstance(cache, dict):
            prefix = f"{mgr.counter.name}|"
            for msg in history[min(self._counted, len(history)) :]:
                tokens = cache.get(msg.fingerprint)
                if tokens is not None:
                    counts[prefix + msg.fingerprint] = tokens
        self._new_window_rows = {}
        if mgr._resume is not None:  # loaded, not yet resumed by a fit (notes edited first)
            window = {k: v for k, v in mgr._resume.items() if k != "_rows"}
        elif hasattr(self.store, "features"):  # shrunk messages as rows: O(new) saves
            window = export_window(
                mgr,
                digest,
                self._codec(mgr),
                stored_rows=self._window_rows,
                new_rows=self._new_window_rows,
            )
        else:
            window = export_window(mgr, digest, self._codec(mgr))
        data = {
            "format": FORMAT,
            "state": state_dict.to_dict(),
            "counter": mgr.counter.name,
            "config": self._config_key,
            "window": window,
        }
        rows = (
            archive.pending()
            if isinstance(archive, StoredArchive)
            else [
                (f"{e['message']['id']}/{message_from_dict(e['message']).fingerprint}", e)
                for e in archive.to_list()
            ]
        )
        return data, rows, counts

    def _codec(self, mgr: ContextManager) -> Codec:
        """Encoded window messages, reused across saves (seeded by a resumed window)."""
        seeded = mgr.__dict__.pop("_snapshot_codec", None)
        if seeded is not None:
            self._encoded = seeded
        return self._encoded

    def _committed(self, version: int) -> None:
        self.version = version
        self._counted = len(self.manager._history)
        for strategy in _featured(self.manager):
            strategy.features_saved()
        self._window_rows.update(self._new_window_rows)
        self._new_window_rows = {}
        archive = self.manager.state.archive
        if isinstance(archive, StoredArchive):
            archive.committed()
        elif self._archive_size is None:  # a state loaded in memory (load_state): now stored
            cid, store = self.conversation_id, self.store
            self.manager.state.archive = StoredArchive(
                lambda: store.archive(cid), lambda: store.archive_size(cid)
            )

    def save(self) -> int:
        """Save the manager's state now (after edits outside a fit).

        Raises:
            VersionConflict: another worker saved first (use :meth:`transact`).
        """
        data, rows, counts = self._payload()
        version = int(
            self.store.save(
                self.conversation_id,
                data,
                expected_version=self.version,
                archive=rows,
                counts=counts,
                **self._features(),
            )
        )
        self._committed(version)
        return version

    async def asave(self) -> int:
        """:meth:`save` for a store whose methods are coroutines."""
        data, rows, counts = self._payload()
        version = int(
            await _maybe(
                self.store.save(
                    self.conversation_id,
                    data,
                    expected_version=self.version,
                    archive=rows,
                    counts=counts,
                    **self._features(),
                )
            )
        )
        self._committed(version)
        if getattr(self, "_archive_size", None) is not None:
            self._archive_size = int(await _maybe(self.store.archive_size(self.conversation_id)))
        return version

    def _conflict(self, attempt: int) -> float:
        self._synced = False
        self.conflicts += 1
        return random.uniform(0, min(0.05, 0.002 * 2**attempt))

    def _give_up(self) -> StoreError:
        return StoreError(
            f"conversation {self.conversation_id!r}: {self.max_retries} saves in a row lost "
            "the race to other writers; raise max_retries or route a conversation's turns "
            "to fewer workers"
        )

    # ------------------------------------------------------------------ transactions
    def transact(self, change: Callable[[ContextManager], T]) -> T:
        """Load, apply ``change(manager)``, save with compare-and-swap; retry on conflict.

        Args:
            change: edits the manager's state (notes...); called again after a conflict,
                so it must be repeatable.

        Returns:
            What ``change`` returned on the attempt that was saved.

        Raises:
            StoreError: every attempt lost the race.
        """
        for attempt in range(self.max_retries):
            self.sync()
            loop: AgentLoopError | None = None
            try:
                result = change(self.manager)
            except AgentLoopError as exc:  # raised after the fit committed: save it too
                loop = exc
            except BaseException:
                self._synced = False
                raise
            try:
                self.save()
            except VersionConflict:
                time.sleep(self._conflict(attempt))
                continue
            if loop is not None:
                raise loop
            return result
        raise self._give_up()

    def fit(
        self,
        messages: Sequence[Message],
        *,
        query: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> FitResult:
        """:meth:`ContextManager.fit` on the stored conversation, then save it.

        Args:
            messages: the full history so far, oldest first (not mutated).
            query: see :meth:`ContextManager.fit`.
            tools: see :meth:`ContextManager.fit`.

        Raises:
            StoreError: the store failed, or every attempt lost the race.
            ContextOverflowError, InvalidHistoryError, StrategyError: as the manager; nothing
                is saved and the next fit reloads.
        """
        return self.transact(
            lambda mgr: ContextManager.fit(mgr, messages, query=query, tools=tools)
        )

    async def afit(
        self,
        messages: Sequence[Message],
        *,
        query: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> FitResult:
        """Async :meth:`fit`: awaits async summarizers and async stores."""
        for attempt in range(self.max_retries):
            await self.async_sync()
            loop: AgentLoopError | None = None
            try:
                result = await ContextManager.afit(self.manager, messages, query=query, tools=tools)
            except AgentLoopError as exc:  # raised after the fit committed: save it too
                loop = exc
            except BaseException:
                self._synced = False
                raise
            try:
                await self.asave()
            except VersionConflict:
                await _sleep(self._conflict(attempt))
                continue
            if loop is not None:
                raise loop
            return result
        raise self._give_up()

    def __repr__(self) -> str:
        return (
            f"StoredSession({self.conversation_id!r}, store={self.store!r}, version={self.version})"
        )


async def _maybe(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


_STORES: dict[tuple[int, str], Any] = {}
_STORES_LOCK = threading.Lock()


def _shared_store(url: str) -> Any:
    """One store per URL and process, shared by every manager given that URL."""
    from ctxmgr.stores import open_store

    key = (os.getpid(), url)
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            store = _STORES[key] = open_store(url)
        return store


class StoredContextManager(ContextManager):
    """A :class:`~ctxmgr.manager.ContextManager` whose state lives in a store.

    Built by ``ContextManager.from_config(..., store=..., conversation_id=...)``; every
    :meth:`fit` / :meth:`afit` runs through a :class:`StoredSession` (load, fit, save with
    compare-and-swap, retry on conflict), and :attr:`scratchpad` edits are transactions,
    so notes written by a tool between fits survive a concurrent fit on another worker.
    :meth:`fork` keeps the store (the adapters' per-thread pools fork one per thread id).

    Args:
        config: a validated config.
        store: a :class:`~ctxmgr.stores.base.SessionStore`, or a store URL
            (:func:`~ctxmgr.stores.open_store`; one store per URL and process is opened
            and shared by every manager given that URL); ``None`` for a detached manager.
        conversation_id: the conversation's key in the store.
        max_retries: see :class:`StoredSession`.
        **kwargs: ``counter``, ``summarizer``, ``on_report`` as for ``ContextManager``.

    Raises:
        ConfigError: as ``ContextManager``, or an unknown store URL scheme.
    """

    def __init__(
        self,
        config: Any,
        *,
        store: Any,
        conversation_id: str = "default",
        max_retries: int = 20,
        **kwargs: Any,
    ) -> None:
        super().__init__(config, **kwargs)
        self.store = _shared_store(store) if isinstance(store, str) else store
        self.conversation_id = conversation_id
        self.max_retries = max_retries
        self.session: StoredSession | None = (
            StoredSession(self, self.store, conversation_id, max_retries=max_retries)
            if self.store is not None
            else None
        )
        self.refresh()

    def refresh(self) -> None:
        """Load the stored conversation now (fits and note edits load it themselves).

        A no-op for an async store, which loads at the first :meth:`afit`.

        Raises:
            StoreError: the store failed.
        """
        if self.session is not None and not inspect.iscoroutinefunction(self.store.version):
            self.session.sync()  # an async store loads at the first afit

    def fit(
        self,
        messages: Sequence[Message],
        *,
        query: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> FitResult:
        """:meth:`ContextManager.fit` on the stored conversation (load, fit, CAS save).

        Raises:
            StoreError: the store failed, or ``max_retries`` saves lost the race.
        """
        if self.session is None:
            return ContextManager.fit(self, messages, query=query, tools=tools)
        return self.session.transact(
            lambda mgr: ContextManager.fit(mgr, messages, query=query, tools=tools)
        )

    async def afit(
        self,
        messages: Sequence[Message],
        *,
        query: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> FitResult:
        """Async :meth:`fit` (awaits async summarizers and ``AsyncPostgresStore``)."""
        if self.session is None:
            return await ContextManager.afit(self, messages, query=query, tools=tools)
        return await self.session.afit(messages, query=query, tools=tools)

    def record_usage(self, *, input_tokens: int, local_tokens: int | None = None) -> float:
        """:meth:`ContextManager.record_usage` as a store transaction (load, learn, CAS save).

        The calibration is per conversation, so it is saved at once: the next fit may run
        on another worker. ``local_tokens`` defaults to this worker's last fit.

        Raises:
            StoreError: the store failed, or every attempt lost the race.
        """
        if local_tokens is None:
            last = self.state.last_fit or {}
            local_tokens = int(last.get("tokens_after", 0)) + int(last.get("tools_tokens", 0))
        if self.session is None:
            return ContextManager.record_usage(
                self, input_tokens=input_tokens, local_tokens=local_tokens
            )
        local = local_tokens
        return self.session.transact(
            lambda mgr: ContextManager.record_usage(
                mgr, input_tokens=input_tokens, local_tokens=local
            )
        )

    def record_stop(self, reason: str | None) -> None:
        """:meth:`ContextManager.record_stop` as a store transaction (a grown reserve is saved).

        Raises:
            StoreError: the store failed, or every attempt lost the race.
        """
        if self.session is None or not reason:
            ContextManager.record_stop(self, reason)
            return
        self.session.transact(lambda mgr: ContextManager.record_stop(mgr, reason))

    def fork(self, conversation_id: str | None = None) -> StoredContextManager:
        """Return a manager on the same store for ``conversation_id`` (default: the same)."""
        return type(self)(
            self.config,
            store=self.store,
            conversation_id=conversation_id or self.conversation_id,
            max_retries=self.max_retries,
            counter=self.counter,
            summarizer=self.summarizer,
            on_report=self.on_report,
        )

    def clone(self) -> ContextManager:
        """Return a detached in-memory copy (what-if fits never write to the store)."""
        store, self.store = self.store, None
        try:
            return super().clone()
        finally:
            self.store = store

    def forget(self) -> None:
        """Delete the conversation from the store and start fresh."""
        if self.store is not None:
            self.store.delete(self.conversation_id)
        self.reset()
        if self.session is not None:
            self.session._synced = False

    def request_compaction(
        self,
        reason: str = "",
        *,
        target_tokens: int | None = None,
        target_fraction: float | None = None,
    ) -> None:
        """:meth:`ContextManager.request_compaction` as a store transaction.

        So a ``compact_context`` tool call on one worker reaches the next fit on any.

        Raises:
            ValueError: ``target_fraction`` is not in (0, 1].
            StoreError: the store failed, or ``max_retries`` saves lost the race.
        """
        kw: dict[str, Any] = {"target_tokens": target_tokens, "target_fraction": target_fraction}
        if self.session is None:
            ContextManager.request_compaction(self, reason, **kw)
            return
        self.session.transact(lambda mgr: ContextManager.request_compaction(mgr, reason, **kw))

    @property
    def scratchpad(self) -> Any:
        """The scratchpad note API; writes are store transactions. ``None`` when off."""
        pad = ContextManager.scratchpad.fget(self)  # type: ignore[attr-defined]
        if pad is None or self.session is None:
            return pad
        return _TransactionalScratchpad(self.session)


class _TransactionalScratchpad:
    """The scratchpad API of a stored manager: reads load first, edits are transactions."""

    def __init__(self, session: StoredSession) -> None:
        self._session = session

    @staticmethod
    def _pad(mgr: ContextManager) -> Any:
        return ContextManager.scratchpad.fget(mgr)  # type: ignore[attr-defined]

    def write(self, key: str, facts: Any, pointers: Sequence[str] = ()) -> Any:
        """See :meth:`ctxmgr.strategies.scratchpad.Scratchpad.write` (a transaction)."""
        return self._session.transact(lambda mgr: self._pad(mgr).write(key, facts, pointers))

    def update(
        self, key: str, facts: Any = None, pointers: Any = None, *, append: bool = False
    ) -> Any:
        """See :meth:`ctxmgr.strategies.scratchpad.Scratchpad.update` (a transaction)."""
        return self._session.transact(
            lambda mgr: self._pad(mgr).update(key, facts, pointers, append=append)
        )

    def delete(self, key: str) -> bool:
        """See :meth:`ctxmgr.strategies.scratchpad.Scratchpad.delete` (a transaction)."""
        return bool(self._session.transact(lambda mgr: self._pad(mgr).delete(key)))

    def read(self, key: str | None = None) -> str:
        """See :meth:`ctxmgr.strategies.scratchpad.Scratchpad.read` (loads first)."""
        self._session.sync()
        return str(self._pad(self._session.manager).read(key))

    def list(self) -> Any:
        """See :meth:`ctxmgr.strategies.scratchpad.Scratchpad.list` (loads first)."""
        self._session.sync()
        return self._pad(self._session.manager).list()
