"""LlamaIndex peers: ``ChatMemoryBuffer`` and ``Memory``."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

from ctxmgr.bench.peers._common import (
    PeerFitter,
    _peer_message,
    _run,
    _Session,
    _TextTokens,
)
from ctxmgr.messages import Message

if TYPE_CHECKING:
    from ctxmgr.bench.fitter import FitSession
    from ctxmgr.bench.transcript import Transcript
    from ctxmgr.tokens import TokenCounter


# ---------------------------------------------------------------------------------------
# LlamaIndex
# ---------------------------------------------------------------------------------------
def _to_llama(message: Message) -> Any:
    """Convert ``message`` to a LlamaIndex ``ChatMessage`` as its agents build them.

    Tool calls become ``ToolCallBlock`` blocks, tool results carry
    ``additional_kwargs["tool_call_id"]`` (as ``FunctionAgent`` does) and a name goes to
    ``additional_kwargs["name"]`` (passed through to OpenAI by LlamaIndex's OpenAI LLM).
    """
    from llama_index.core.base.llms.types import ChatMessage, ImageBlock, TextBlock, ToolCallBlock

    blocks: list[Any] = []
    if isinstance(message.content, str):
        blocks.append(TextBlock(text=message.content))
    else:
        for part in message.content:
            url = part.data.get("image_url")
            url = url.get("url") if isinstance(url, Mapping) else url
            if part.type == "image_url" and isinstance(url, str):
                blocks.append(ImageBlock(url=url))
            else:
                blocks.append(TextBlock(text=part.text))
    for call in message.tool_calls:
        blocks.append(
            ToolCallBlock(
                tool_call_id=call.id, tool_name=call.name, tool_kwargs=call.parsed_arguments()
            )
        )
    extra: dict[str, Any] = {}
    if message.role == "tool":
        extra["tool_call_id"] = message.tool_call_id
    if message.name:
        extra["name"] = message.name
    return ChatMessage(role=message.role, blocks=blocks, additional_kwargs=extra)


def _from_llama(chat: Any, peer: str) -> Message:
    """Convert a LlamaIndex message the peer created to a new :class:`Message`."""
    role = chat.role.value if chat.role.value in ("system", "user", "assistant", "tool") else "user"
    return _peer_message(peer, role, chat.content or "")


class _LlamaSession(_Session):
    """Shared by the LlamaIndex peers: messages map back by object identity.

    Leading system messages are the agent's system prompt: LlamaIndex agents and chat engines
    keep it outside the memory (``FunctionAgent`` prepends ``system_prompt``; chat engines
    pass ``prefix_messages``), so they are not put, and are always sent first.
    """

    def __init__(self, peer: str, budget: int, counter: TokenCounter, tokenizer: _TextTokens):
        super().__init__(peer, budget, counter)
        self._tokenizer = tokenizer
        self._reset()

    def _reset(self) -> None:
        self._by_obj: dict[int, tuple[Any, Message]] = {}
        self._system: list[Message] = []

    def _take_system(self, new: list[Message]) -> list[Message]:
        """Move leading system messages of ``new`` to the system prompt; return the rest."""
        start = len(self._fed)
        rest = []
        for i, message in enumerate(new):
            if message.role == "system" and start + i == len(self._system):
                self._system.append(message)
            else:
                rest.append(message)
        return rest

    def _copy_into(self, clone: _LlamaSession) -> None:
        clone._by_obj = dict(self._by_obj)
        clone._system = list(self._system)

    def _put_all(self, new: list[Message]) -> list[Any]:
        chats = []
        for message in new:
            chat = _to_llama(message)
            self._by_obj[id(chat)] = (chat, message)  # holds chat, so its id stays unique
            chats.append(chat)
        return chats

    def _map_back(self, chats: Iterable[Any]) -> list[Message]:
        out = []
        for chat in chats:
            entry = self._by_obj.get(id(chat))
            out.append(entry[1] if entry and entry[0] is chat else _from_llama(chat, self.peer))
        return out


class LlamaIndexChatMemoryBuffer(PeerFitter):
    """LlamaIndex's ``ChatMemoryBuffer`` (deprecated upstream in favour of ``Memory``)."""

    name = "llamaindex.ChatMemoryBuffer"
    extra = "llamaindex"
    notes = (
        "ChatMemoryBuffer(token_limit=budget, tokenizer_fn=shared counter's count_text); "
        "messages put as they arrive, then get(initial_token_count=tokens of the system "
        "prompt). As in LlamaIndex's chat engines, leading system messages are prefix "
        "messages kept outside the memory and always sent (initial count capped at the "
        "budget, where get() would raise). Its tokenizer_fn sees only the message texts "
        "joined by spaces: no per-message, role, name or tool-call overhead (tool-call "
        "arguments are not counted at all), so it can exceed the budget as the shared counter "
        "measures it. Its trimming loop re-tokenizes the joined suffix once per dropped "
        "message (quadratic); with a tiktoken counter the same counts are computed "
        "incrementally (exact: BPE pieces never cross a space between non-blank texts). "
        "get(input=...) ignores the input in this version, so a probe's question is simply "
        "the last message put."
    )

    def _open(self, transcript: Transcript, budget: int, counter: TokenCounter) -> FitSession:
        import llama_index.core.memory  # noqa: F401  (fail early when missing)

        return _ChatMemoryBufferSession(self.name, budget, counter, _TextTokens(counter))


class _JoinedCounts:
    """Incremental ``count_text(" ".join(texts[s:]))`` for ChatMemoryBuffer's trimming loop.

    ``ChatMemoryBuffer.get()`` tokenizes the space-joined texts of its candidate suffix once
    per dropped message, which is quadratic in the history length. For a BPE counter
    (tiktoken) no token crosses a joining space that has non-whitespace on both sides,
    because the pre-tokenizer starts a new piece at such a space. So the joined count is
    the sum of the counts of segments split at those spaces, each after the first counted
    with its leading space; texts that are empty or end/start with whitespace stay in one
    segment with their neighbours. Prefix sums over the segments make each call O(log n).
    """

    def __init__(self, tokens: _TextTokens) -> None:
        self.tokens = tokens
        self.chats: list[Any] = []
        self.texts: list[str] = []
        self.starts: list[int] = []  # first text index of each segment
        self.cum: list[int] = [0]  # cum[g] = sum of spaced counts of segments before g

    def copy(self) -> _JoinedCounts:
        clone = _JoinedCounts(self.tokens)
        clone.chats, clone.texts = list(self.chats), list(self.texts)
        clone.starts, clone.cum = list(self.starts), list(self.cum)
        return clone

    def _count(self, text: str) -> int:
        return len(self.tokens(text))

    def append(self, chat: Any) -> None:
        text = str(chat.content)  # exactly what ChatMemoryBuffer joins
        prev = self.texts[-1] if self.texts else ""
        safe = bool(prev) and bool(text) and not prev[-1].isspace() and not text[0].isspace()
        self.chats.append(chat)
        self.texts.append(text)
        if safe or len(self.texts) == 1:
            self.starts.append(len(self.texts) - 1)
            self.cum.append(self.cum[-1])
        first = self.starts[-1]
        self.cum[-1] = self.cum[-2] + self._count(" " + " ".join(self.texts[first:]))

    def joined(self, messages: Sequence[Any]) -> int | None:
        """Tokens of the joined texts of ``messages``, or ``None`` if not a suffix of ours."""
        n, k = len(self.chats), len(messages)
        if not k or k > n or messages[-1] is not self.chats[-1]:
            return None
        s = n - k
        if messages[0] is not self.chats[s]:
            return None
        g = bisect.bisect_right(self.starts, s) - 1
        end = self.starts[g + 1] if g + 1 < len(self.starts) else n
        return self._count(" ".join(self.texts[s:end])) + self.cum[-1] - self.cum[g + 1]


@lru_cache(maxsize=1)
def _chat_memory_buffer_class() -> type:
    """Build (once) a ``ChatMemoryBuffer`` whose trimming loop counts via :class:`_JoinedCounts`."""
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.memory import ChatMemoryBuffer

    class IncrementalChatMemoryBuffer(ChatMemoryBuffer):  # type: ignore[misc, valid-type]
        """``ChatMemoryBuffer`` with the same counts, computed incrementally (tiktoken only)."""

        _joined: Any = PrivateAttr(default=None)

        def _token_count_for_messages(self, messages: list[Any]) -> int:
            count = self._joined.joined(messages) if self._joined is not None else None
            return super()._token_count_for_messages(messages) if count is None else count

    return IncrementalChatMemoryBuffer


class _ChatMemoryBufferSession(_LlamaSession):
    def _new_buffer(self, chats: list[Any], joined: _JoinedCounts | None) -> Any:
        from llama_index.core.storage.chat_store import SimpleChatStore

        cls = _chat_memory_buffer_class()
        buffer = cls(
            token_limit=self.budget,
            tokenizer_fn=self._tokenizer,
            chat_store=SimpleChatStore(store={"chat_history": chats}),
            chat_store_key="chat_history",
        )
        buffer._joined = joined
        return buffer

    def _reset(self) -> None:
        from ctxmgr.tokens import TiktokenCounter

        super()._reset()
        fast = isinstance(self.counter, TiktokenCounter)
        self._joined = _JoinedCounts(self._tokenizer) if fast else None
        self._buffer = self._new_buffer([], self._joined)

    def _feed(self, new: list[Message]) -> None:
        for chat in self._put_all(self._take_system(new)):
            self._buffer.put(chat)
            if self._joined is not None:
                self._joined.append(chat)

    def _context(self) -> list[Message]:
        # As LlamaIndex's chat engines do for their prefix messages (capped: get() raises
        # when the initial count alone exceeds the limit).
        initial = len(self._tokenizer(" ".join(m.text for m in self._system)))
        chats = self._buffer.get(initial_token_count=min(initial, self.budget))
        return [*self._system, *self._map_back(chats)]

    def _clone(self) -> _Session:
        clone = _ChatMemoryBufferSession(self.peer, self.budget, self.counter, self._tokenizer)
        self._copy_into(clone)
        clone._joined = self._joined.copy() if self._joined is not None else None
        clone._buffer = self._new_buffer(list(self._buffer.get_all()), clone._joined)
        return clone


@lru_cache(maxsize=1)
def _in_memory_store_class() -> type:
    """Build (once) an in-process ``AsyncDBChatStore`` for LlamaIndex ``Memory``."""
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.storage.chat_store.base_db import AsyncDBChatStore, MessageStatus

    class InMemoryChatStore(AsyncDBChatStore):  # type: ignore[misc, valid-type]
        """Rows ``[key, status, message]`` in insertion order; same semantics as the SQL store.

        Messages are stored and returned as the same objects (no JSON round trip), which is
        safe because no memory blocks are configured, so ``Memory`` never mutates them.
        """

        _rows: list[list[Any]] = PrivateAttr(default_factory=list)

        def copy_rows(self) -> InMemoryChatStore:
            clone = InMemoryChatStore()
            clone._rows = [list(row) for row in self._rows]
            return clone

        def _select(self, key: str, status: Any) -> list[list[Any]]:
            return [r for r in self._rows if r[0] == key and (status is None or r[1] == status)]

        async def get_messages(
            self,
            key: str,
            status: Any = MessageStatus.ACTIVE,
            limit: int | None = None,
            offset: int | None = None,
        ) -> list[Any]:
            rows = self._select(key, status)[offset or 0 :]
            return [r[2] for r in (rows if limit is None else rows[:limit])]

        async def count_messages(self, key: str, status: Any = MessageStatus.ACTIVE) -> int:
            return len(self._select(key, status))

        async def add_message(
            self, key: str, message: Any, status: Any = MessageStatus.ACTIVE
        ) -> None:
            self._rows.append([key, status, message])

        async def add_messages(
            self, key: str, messages: list[Any], status: Any = MessageStatus.ACTIVE
        ) -> None:
            self._rows.extend([key, status, m] for m in messages)

        async def set_messages(
            self, key: str, messages: list[Any], status: Any = MessageStatus.ACTIVE
        ) -> None:
            await self.delete_messages(key)
            await self.add_messages(key, messages, status)

        async def delete_message(self, key: str, idx: int) -> Any:
            rows = self._select(key, None)
            if not 0 <= idx < len(rows):
                return None
            self._rows.remove(rows[idx])
            return rows[idx][2]

        async def delete_messages(self, key: str, status: Any = None) -> None:
            doomed = {id(r) for r in self._select(key, status)}
            self._rows = [r for r in self._rows if id(r) not in doomed]

        async def delete_oldest_messages(self, key: str, n: int) -> list[Any]:
            oldest = self._select(key, MessageStatus.ACTIVE)[:n]
            doomed = {id(r) for r in oldest}
            self._rows = [r for r in self._rows if id(r) not in doomed]
            return [r[2] for r in oldest]

        async def archive_oldest_messages(self, key: str, n: int) -> list[Any]:
            oldest = self._select(key, MessageStatus.ACTIVE)[:n]
            for row in oldest:
                row[1] = MessageStatus.ARCHIVED
            return [r[2] for r in oldest]

        async def get_keys(self) -> list[str]:
            return list(dict.fromkeys(r[0] for r in self._rows))

    return InMemoryChatStore


class LlamaIndexMemory(PeerFitter):
    """LlamaIndex's ``Memory`` (short-term FIFO queue; no long-term memory blocks)."""

    name = "llamaindex.Memory"
    extra = "llamaindex"
    notes = (
        "Memory.from_defaults(session_id=transcript id, token_limit=L, token_flush_size=L//10, "
        "tokenizer_fn=shared counter's count_text), no memory blocks; aput each message as "
        "it arrives, then aget(). As in FunctionAgent, leading system messages are the "
        "system_prompt, kept outside the memory and always sent, so L = budget minus their "
        "tokens (at least 1). Its FIFO keeps at most chat_history_token_ratio=0.7 of L (the "
        "rest is reserved for memory blocks) and flushes whole turns from the oldest, so the "
        "queue starts on a user message. token_flush_size is 10% of L (the class's own rule) "
        "because from_defaults' fixed 3000 would flush 70% at small budgets. It counts text "
        "blocks and str(additional_kwargs) (tool_call_id, name) with the tokenizer, but no "
        "per-message overhead and no tool-call blocks, so it can exceed the budget as the "
        "shared counter measures it. Its SQLite store is replaced by an in-process "
        "AsyncDBChatStore with the same semantics (the aiosqlite store leaks a connection "
        "thread per session); input= of aget() only feeds memory blocks, so it is unused."
    )

    def _open(self, transcript: Transcript, budget: int, counter: TokenCounter) -> FitSession:
        import llama_index.core.memory  # noqa: F401  (fail early when missing)

        return _MemorySession(self.name, budget, counter, _TextTokens(counter), transcript.id)


class _MemorySession(_LlamaSession):
    def __init__(
        self,
        peer: str,
        budget: int,
        counter: TokenCounter,
        tokenizer: _TextTokens,
        session_id: str,
    ) -> None:
        self._session_id = session_id
        super().__init__(peer, budget, counter, tokenizer)

    def _new_memory(self, store: Any, limit: int) -> Any:
        from llama_index.core.memory import Memory

        return Memory.from_defaults(
            session_id=self._session_id,
            token_limit=limit,
            token_flush_size=max(1, limit // 10),
            tokenizer_fn=cast("Callable[[str], list[Any]]", self._tokenizer),
            chat_store=store,
        )

    def _reset(self) -> None:
        super()._reset()
        self._store = _in_memory_store_class()()
        self._memory: Any = None  # built once the system prompt is known
        self._limit = self.budget

    def _feed(self, new: list[Message]) -> None:
        chats = self._put_all(self._take_system(new))
        if not chats:
            return
        if self._memory is None:
            system_tokens = sum(self.counter.count_message(m) for m in self._system)
            self._limit = max(1, self.budget - system_tokens)
            self._memory = self._new_memory(self._store, self._limit)
        memory = self._memory

        async def put_all() -> None:
            for chat in chats:
                await memory.aput(chat)

        _run(put_all())

    def _context(self) -> list[Message]:
        chats = _run(self._memory.aget()) if self._memory is not None else []
        return [*self._system, *self._map_back(chats)]

    def _clone(self) -> _Session:
        clone = _MemorySession(
            self.peer, self.budget, self.counter, self._tokenizer, self._session_id
        )
        self._copy_into(clone)
        clone._store = self._store.copy_rows()
        clone._limit = self._limit
        if self._memory is not None:
            clone._memory = clone._new_memory(clone._store, self._limit)
        return clone
