"""Peer baselines: other frameworks' context policies, run as :class:`Fitter` objects.

Every peer replays the same transcript at the same budget and, wherever the framework lets
us plug one in, counts tokens with the same :class:`~ctxmgr.tokens.TokenCounter` as every
other policy in the run, so differences in the report come from the policies themselves.
Each peer's :attr:`notes` say where that is not possible (e.g. LlamaIndex only takes a
text tokenizer, so it ignores per-message and tool-call overhead).

Peers (see :data:`PEERS`):

* ``langchain.trim_messages``: ``langchain_core.messages.trim_messages`` (stateless).
* ``langchain.summarization``: LangChain's ``SummarizationMiddleware`` driven offline with a
  fake chat model returning a canned summary; stateful like in a real agent.
* ``llamaindex.ChatMemoryBuffer`` and ``llamaindex.Memory``: LlamaIndex memories.
* ``autogen.BufferedChatCompletionContext``, ``autogen.HeadAndTailChatCompletionContext``
  and ``autogen.TokenLimitedChatCompletionContext``: AutoGen model contexts.

Frameworks are imported lazily; a missing one raises :class:`ImportError` naming the
``pip install "ctxmgr[...]"`` command. Every framework message a peer sends back is mapped
to the original :class:`~ctxmgr.messages.Message` object; messages the peer made itself
(summaries, placeholders) become new messages with ``metadata["peer"]`` set to its name.

Sessions are synchronous. The async AutoGen and LlamaIndex ``Memory`` APIs run on one
private event loop per thread, so :meth:`FitSession.fit` must not be called from inside a
running event loop.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import importlib.util
import json
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ctxmgr.errors import ConfigError
from ctxmgr.messages import Message, ToolCall

if TYPE_CHECKING:
    from ctxmgr.bench.fitter import FitSession, Fitter
    from ctxmgr.bench.transcript import Transcript
    from ctxmgr.tokens import TokenCounter

__all__ = [
    "PEERS",
    "AutogenBuffered",
    "AutogenHeadAndTail",
    "AutogenTokenLimited",
    "LangchainSummarization",
    "LangchainTrimMessages",
    "LlamaIndexChatMemoryBuffer",
    "LlamaIndexMemory",
    "PeerFitter",
    "make_peers",
]

_T = TypeVar("_T")

# Modules each extra must provide (checked with find_spec, without importing them).
_EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "langchain": ("langchain_core", "langchain", "langgraph"),
    "llamaindex": ("llama_index.core",),
    "autogen": ("autogen_core", "autogen_ext"),
}

# Messages per AutoGen buffer slot: budget // 200 messages (2000 -> 10, 4000 -> 20, 8000 -> 40).
_TOKENS_PER_BUFFER_SLOT = 200
# LangChain SummarizationMiddleware keeps this fraction of the budget after summarizing.
_SUMMARY_KEEP_FRACTION = 0.6
CANNED_SUMMARY = (
    "[offline stand-in summary: no model was called] Earlier in this conversation the user "
    "explained what they needed and the assistant looked up the relevant records with its "
    "tools, confirmed the details with the user and worked through the request step by step. "
    "The exact identifiers, values and tool results from that part of the conversation are "
    "not reproduced in this summary."
)
"""The fixed summary text the ``langchain.summarization`` peer's fake model returns."""


# ---------------------------------------------------------------------------------------
# Helpers: imports, event loop, identity
# ---------------------------------------------------------------------------------------
def _missing_modules(extra: str) -> list[str]:
    missing = []
    for module in _EXTRA_MODULES[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module)
    return missing


def _install_error(peer: str, extra: str, missing: Iterable[str]) -> ImportError:
    return ImportError(
        f'peer {peer!r} needs {", ".join(missing)} (not installed): pip install "ctxmgr[{extra}]"'
    )


class _LoopHolder:
    """Owns one thread's private event loop and closes it when the thread's data is freed."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: nothing left to do
            self.loop.close()


_LOOPS = threading.local()


def _run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` to completion on this thread's private event loop (created on first use)."""
    holder: _LoopHolder | None = getattr(_LOOPS, "holder", None)
    if holder is None or holder.loop.is_closed():
        holder = _LoopHolder()
        _LOOPS.holder = holder
    return holder.loop.run_until_complete(coro)


def _same_prefix(fed: Sequence[Message], history: Sequence[Message]) -> bool:
    """Whether ``history`` starts with the messages in ``fed`` (same objects or equal)."""
    if len(history) < len(fed):
        return False
    return all(a is b or a == b for a, b in zip(fed, history))


def _peer_message(peer: str, role: str, content: str, **kw: Any) -> Message:
    """Build a message the peer created itself (summary, placeholder)."""
    return Message(role, content, metadata={"peer": peer}, **kw)  # type: ignore[arg-type]


def _content_dicts(message: Message) -> str | list[dict[str, Any]]:
    if isinstance(message.content, str):
        return message.content
    return [part.to_openai() for part in message.content]


def _arguments_json(args: Any) -> str:
    return args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)


class _TextTokens:
    """A LlamaIndex ``tokenizer_fn`` backed by the shared counter's ``count_text``.

    LlamaIndex only takes ``len()`` of the result, so a ``range`` of the right length is
    returned instead of token ids. Counts are memoized by text (the cache is emptied once
    it holds ``max_chars`` characters).
    """

    def __init__(self, counter: TokenCounter, max_chars: int = 16_000_000) -> None:
        self._count_text = counter.count_text
        self._cache: dict[str, int] = {}
        self._chars = 0
        self._max_chars = max_chars

    def __call__(self, text: str) -> range:
        count = self._cache.get(text)
        if count is None:
            if self._chars + len(text) > self._max_chars:
                self._cache.clear()
                self._chars = 0
            count = self._cache[text] = self._count_text(text)
            self._chars += len(text)
        return range(count)


# ---------------------------------------------------------------------------------------
# Fitter and session base classes
# ---------------------------------------------------------------------------------------
class PeerFitter:
    """Base of every peer: a :class:`~ctxmgr.bench.fitter.Fitter` backed by another framework.

    Attributes:
        name: the peer's row label (``"langchain.trim_messages"``...).
        kind: always ``"peer"``.
        notes: caveats printed in the report.
        extra: the ``ctxmgr[...]`` extra that installs the framework.

    Raises:
        ImportError: at construction, when the framework is not installed; the message names
            the ``pip install "ctxmgr[...]"`` command.
    """

    name: str = ""
    kind: str = "peer"
    notes: str = ""
    extra: str = ""

    def __init__(self) -> None:
        missing = _missing_modules(self.extra)
        if missing:
            raise _install_error(self.name, self.extra, missing)

    def start(self, transcript: Transcript, budget: int, counter: TokenCounter) -> FitSession:
        """Open a session replaying ``transcript`` with a budget of ``budget`` tokens.

        Args:
            transcript: the recorded conversation (its ``id`` names per-session state).
            budget: the effective token limit, in tokens (> 0).
            counter: the token counter every policy in the run is measured with.

        Returns:
            A new :class:`~ctxmgr.bench.fitter.FitSession`.

        Raises:
            ConfigError: ``budget`` is not a positive integer.
            ImportError: the framework cannot be imported (names the pip command).
        """
        if isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0:
            raise ConfigError(f"must be a positive number of tokens, got {budget!r}", key="budget")
        try:
            return self._open(transcript, budget, counter)
        except ImportError as exc:
            raise _install_error(self.name, self.extra, [exc.name or str(exc)]) from exc

    def _open(self, transcript: Transcript, budget: int, counter: TokenCounter) -> FitSession:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class _Session:
    """Feeds each peer only the messages new since the last fit, like a framework sees them.

    The replay passes the full history on every call. When it extends what was fed, only
    the new tail is fed; otherwise (a different or shorter history) the peer's state is
    rebuilt from scratch.
    """

    def __init__(self, peer: str, budget: int, counter: TokenCounter) -> None:
        self.peer = peer
        self.budget = budget
        self.counter = counter
        self.summarizer_calls = 0
        self._fed: list[Message] = []

    def fit(self, history: Sequence[Message]) -> list[Message]:
        """Return the peer's context for ``history`` (oldest first; not mutated)."""
        if not _same_prefix(self._fed, history):
            self._reset()
            self._fed = []
        new = list(history[len(self._fed) :])
        if new:
            self._feed(new)
            self._fed.extend(new)
        return self._context()

    def fork(self) -> _Session:
        """Return an independent copy: fits on it do not change this session, nor the reverse."""
        clone = self._clone()
        clone.summarizer_calls = self.summarizer_calls
        clone._fed = list(self._fed)
        return clone

    # -- implemented by each peer --------------------------------------------------------
    def _reset(self) -> None:
        raise NotImplementedError

    def _feed(self, new: list[Message]) -> None:
        raise NotImplementedError

    def _context(self) -> list[Message]:
        raise NotImplementedError

    def _clone(self) -> _Session:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------
# LangChain
# ---------------------------------------------------------------------------------------
def _to_langchain(message: Message, key: str) -> Any:
    """Convert ``message`` to a LangChain message whose ``id`` is ``key``."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    content: Any = _content_dicts(message)
    kw: dict[str, Any] = {"id": key}
    if message.name:
        kw["name"] = message.name
    if message.role == "system":
        return SystemMessage(content=content, **kw)
    if message.role == "user":
        return HumanMessage(content=content, **kw)
    if message.role == "tool":
        return ToolMessage(content=content, tool_call_id=message.tool_call_id or "", **kw)
    calls: list[dict[str, Any]] = []
    invalid: list[dict[str, Any]] = []
    for call in message.tool_calls:
        args = call.parsed_arguments()
        if isinstance(args, dict):
            calls.append({"name": call.name, "args": args, "id": call.id, "type": "tool_call"})
        else:  # not a JSON object: LangChain keeps such calls as invalid_tool_calls
            invalid.append(
                {
                    "name": call.name,
                    "args": call.arguments,
                    "id": call.id,
                    "error": None,
                    "type": "invalid_tool_call",
                }
            )
    return AIMessage(content=content, tool_calls=calls, invalid_tool_calls=invalid, **kw)


def _from_langchain(lc: Any, peer: str) -> Message:
    """Convert a LangChain message the peer created (or altered) to a new :class:`Message`."""
    role = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}.get(
        lc.type, "user"
    )
    content = lc.content if isinstance(lc.content, str) else lc.text
    calls = tuple(
        ToolCall(str(c.get("id") or ""), c["name"], _arguments_json(c.get("args", {})))
        for c in (getattr(lc, "tool_calls", None) or ())
    )
    return _peer_message(
        peer,
        role,
        content,
        tool_calls=calls,
        tool_call_id=getattr(lc, "tool_call_id", None),
        name=lc.name,
    )


class _LangchainBridge:
    """Maps LangChain messages back to the ctxmgr messages they were built from."""

    def __init__(self, peer: str, counter: TokenCounter) -> None:
        self.peer = peer
        self.counter = counter
        self.by_key: dict[str, tuple[Any, Message]] = {}

    def copy(self) -> _LangchainBridge:
        clone = _LangchainBridge(self.peer, self.counter)
        clone.by_key = dict(self.by_key)
        return clone

    def to_lc(self, message: Message, position: int) -> Any:
        # The key is unique per position: equal messages (two "yes" turns) share Message.id.
        key = f"ctxmgr-{position}"
        lc = _to_langchain(message, key)
        self.by_key[key] = (lc, message)
        return lc

    def register(self, lc: Any) -> None:
        """Remember a message the peer created, so it maps to the same Message every time."""
        if lc.id is not None and lc.id not in self.by_key:
            self.by_key[lc.id] = (lc, _from_langchain(lc, self.peer))

    def to_message(self, lc: Any) -> Message:
        entry = self.by_key.get(lc.id) if lc.id is not None else None
        if entry is not None and (entry[0] is lc or entry[0] == lc):
            return entry[1]
        return _from_langchain(lc, self.peer)  # e.g. a partial copy made while summarizing

    def count(self, messages: Iterable[Any]) -> int:
        """LangChain ``token_counter``: the shared counter over the mapped messages."""
        return self.counter.count_messages([self.to_message(m) for m in messages])


class LangchainTrimMessages(PeerFitter):
    """``langchain_core.messages.trim_messages`` with ``strategy="last"``."""

    name = "langchain.trim_messages"
    extra = "langchain"
    notes = (
        'trim_messages(strategy="last", include_system=True, start_on="human", '
        "allow_partial=False, max_tokens=budget), token_counter = the shared counter. "
        "Stateless. It counts the system message and the rest in two calls, so the reply "
        "priming is charged twice and results can fall a few tokens under the budget."
    )

    def _open(self, transcript: Transcript, budget: int, counter: TokenCounter) -> FitSession:
        import langchain_core.messages  # noqa: F401  (fail early when missing)

        return _TrimSession(self.name, budget, counter)


class _TrimSession(_Session):
    def __init__(self, peer: str, budget: int, counter: TokenCounter) -> None:
        super().__init__(peer, budget, counter)
        self._reset()

    def _reset(self) -> None:
        self._bridge = _LangchainBridge(self.peer, self.counter)
        self._lc: list[Any] = []

    def _feed(self, new: list[Message]) -> None:
        start = len(self._fed)
        self._lc.extend(self._bridge.to_lc(m, start + i) for i, m in enumerate(new))

    def _context(self) -> list[Message]:
        from langchain_core.messages import trim_messages

        kept = trim_messages(
            self._lc,
            max_tokens=self.budget,
            token_counter=self._bridge.count,
            strategy="last",
            allow_partial=False,
            start_on="human",
            include_system=True,
        )
        return [self._bridge.to_message(m) for m in kept]

    def _clone(self) -> _Session:
        clone = _TrimSession(self.peer, self.budget, self.counter)
        clone._bridge = self._bridge.copy()
        clone._lc = list(self._lc)
        return clone


class _CannedSummaries(Iterator[Any]):
    """Endless canned summaries for ``GenericFakeChatModel``; counts how many were asked for."""

    def __init__(self, text: str, calls: int = 0) -> None:
        self.text = text
        self.calls = calls

    def __next__(self) -> Any:
        from langchain_core.messages import AIMessage

        self.calls += 1
        return AIMessage(content=self.text)


class LangchainSummarization(PeerFitter):
    """LangChain's ``SummarizationMiddleware``, run offline with a fake summary model."""

    name = "langchain.summarization"
    extra = "langchain"
    notes = (
        "SummarizationMiddleware(trigger=('tokens', B), keep=('tokens', int(0.6*B))), "
        "token_counter = the shared counter, where B = budget minus the tokens of the leading "
        "system message(s): as in create_agent, those are the agent's system_prompt, kept "
        "outside the summarized state and always sent. Its before_model hook is called "
        "directly before every model call and its state update (RemoveMessage(REMOVE_ALL) + "
        "summary + kept messages) is applied with langgraph's add_messages, so summaries "
        "accumulate as in a real agent. Offline: the summary model is GenericFakeChatModel "
        f"returning a fixed canned text ({len(CANNED_SUMMARY)} characters) that carries no "
        "information, so it measures what the policy keeps verbatim, not summary quality."
    )

    def _open(self, transcript: Transcript, budget: int, counter: TokenCounter) -> FitSession:
        import langchain.agents.middleware  # noqa: F401  (fail early when missing)
        import langgraph.graph.message  # noqa: F401

        return _SummarizationSession(self.name, budget, counter)


class _SummarizationSession(_Session):
    def __init__(self, peer: str, budget: int, counter: TokenCounter, summaries: int = 0) -> None:
        super().__init__(peer, budget, counter)
        self._summaries = _CannedSummaries(CANNED_SUMMARY, summaries)
        self._reset()

    def _reset(self) -> None:
        self._bridge = _LangchainBridge(self.peer, self.counter)
        self._system: list[Any] = []  # the agent's system_prompt: never in the state
        self._state: list[Any] = []
        self._middleware: Any = None
        self._middleware_for = -1

    def _feed(self, new: list[Message]) -> None:
        from langgraph.graph.message import add_messages

        start = len(self._fed)
        added = []
        for i, message in enumerate(new):
            lc = self._bridge.to_lc(message, start + i)
            if message.role == "system" and start + i == len(self._system):
                self._system.append(lc)
            else:
                added.append(lc)
        if added:
            self._state = cast("list[Any]", add_messages(self._state, added))

    def _get_middleware(self) -> Any:
        from langchain.agents.middleware import SummarizationMiddleware
        from langchain_core.language_models.fake_chat_models import GenericFakeChatModel

        system_tokens = sum(
            self.counter.count_message(self._bridge.to_message(m)) for m in self._system
        )
        available = max(1, self.budget - system_tokens)
        if self._middleware is None or self._middleware_for != available:
            self._middleware = SummarizationMiddleware(
                GenericFakeChatModel(messages=self._summaries),
                trigger=("tokens", available),
                keep=("tokens", max(1, int(available * _SUMMARY_KEEP_FRACTION))),
                token_counter=self._bridge.count,
            )
            self._middleware_for = available
        return self._middleware

    def _context(self) -> list[Message]:
        from langgraph.graph.message import add_messages
        from langgraph.runtime import Runtime

        if self._state:
            update = self._get_middleware().before_model({"messages": self._state}, Runtime())
            if update:
                self._state = cast("list[Any]", add_messages(self._state, update["messages"]))
                for lc in self._state:
                    self._bridge.register(lc)
            self.summarizer_calls = self._summaries.calls
        return [self._bridge.to_message(m) for m in [*self._system, *self._state]]

    def _clone(self) -> _Session:
        clone = _SummarizationSession(self.peer, self.budget, self.counter, self._summaries.calls)
        clone._bridge = self._bridge.copy()
        clone._system = list(self._system)
        clone._state = list(self._state)
        return clone


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


# ---------------------------------------------------------------------------------------
# AutoGen
# ---------------------------------------------------------------------------------------
def _autogen_text(message: Message) -> str:
    return message.text


def _to_autogen(message: Message) -> Any:
    """Convert a non-tool message to an AutoGen ``LLMMessage`` (tool results: see below)."""
    from autogen_core import FunctionCall
    from autogen_core.models import AssistantMessage, SystemMessage, UserMessage

    if message.role == "system":
        return SystemMessage(content=_autogen_text(message))
    if message.role == "user":
        return UserMessage(content=_autogen_text(message), source=message.name or "user")
    source = message.name or "assistant"
    if message.tool_calls:
        calls = [
            FunctionCall(id=c.id, arguments=c.arguments, name=c.name) for c in message.tool_calls
        ]
        return AssistantMessage(content=calls, thought=message.text or None, source=source)
    return AssistantMessage(content=_autogen_text(message), source=source)


def _tool_results(messages: Sequence[Message], call_names: dict[str, str]) -> list[Any]:
    from autogen_core.models import FunctionExecutionResult

    return [
        FunctionExecutionResult(
            call_id=m.tool_call_id or "",
            content=_autogen_text(m),
            name=m.name or call_names.get(m.tool_call_id or "", ""),
            is_error=False,
        )
        for m in messages
    ]


def _from_autogen(obj: Any, peer: str) -> list[Message]:
    """Convert an AutoGen message the peer created to new :class:`Message` objects."""
    kind = getattr(obj, "type", "")
    content = obj.content
    if kind == "FunctionExecutionResultMessage":
        return [
            _peer_message(peer, "tool", r.content, tool_call_id=r.call_id, name=r.name or None)
            for r in content
        ]
    if kind == "AssistantMessage" and isinstance(content, list):
        calls = tuple(ToolCall(c.id, c.name, c.arguments) for c in content)
        return [_peer_message(peer, "assistant", obj.thought or "", tool_calls=calls)]
    if not isinstance(content, str):
        content = "\n".join(c for c in content if isinstance(c, str))
    role = {"SystemMessage": "system", "AssistantMessage": "assistant"}.get(kind, "user")
    return [_peer_message(peer, role, content)]


class _AutogenSession(_Session):
    """Shared by the AutoGen peers: ``add_message`` each new message, then ``get_messages()``.

    Consecutive tool messages become one ``FunctionExecutionResultMessage`` (as AutoGen's
    ``AssistantAgent`` adds them); it maps back to all of the original tool messages.
    """

    def __init__(
        self,
        peer: str,
        budget: int,
        counter: TokenCounter,
        factory: Callable[[_AutogenSession], Any],
    ) -> None:
        super().__init__(peer, budget, counter)
        self._factory = factory  # builds the model context for a session
        self._reset()

    def _reset(self) -> None:
        self._context_obj = self._factory(self)
        self._objs: list[Any] = []  # what was added to the context, in order
        self._by_obj: dict[int, tuple[Any, list[Message]]] = {}
        self._tokens: dict[int, int] = {}
        self._call_names: dict[str, str] = {}

    def _register(self, obj: Any, messages: list[Message]) -> Any:
        self._by_obj[id(obj)] = (obj, messages)  # holds obj, so its id stays unique
        return obj

    def count(self, objs: Sequence[Any]) -> int:
        """Shared-counter tokens of a request holding ``objs`` (per-message counts memoized)."""
        count_message = self.counter.count_message
        total = self.counter.reply_priming
        memo = self._tokens
        for obj in objs:
            tokens = memo.get(id(obj))
            if tokens is None:
                tokens = sum(count_message(m) for m in self.expand([obj]))
                if id(obj) in self._by_obj:  # only our own objects: their ids stay reserved
                    memo[id(obj)] = tokens
            total += tokens
        return total

    def expand(self, objs: Iterable[Any]) -> list[Message]:
        """Map AutoGen messages back to ctxmgr messages (a result message to all its tools)."""
        out: list[Message] = []
        for obj in objs:
            entry = self._by_obj.get(id(obj))
            out.extend(entry[1] if entry and entry[0] is obj else _from_autogen(obj, self.peer))
        return out

    def _feed(self, new: list[Message]) -> None:
        from autogen_core.models import FunctionExecutionResultMessage

        added: list[Any] = []
        rebuild = False
        i = 0
        while i < len(new):
            message = new[i]
            if message.role != "tool":
                for call in message.tool_calls:
                    self._call_names[call.id] = call.name
                added.append(self._register(_to_autogen(message), [message]))
                i += 1
                continue
            j = i
            while j < len(new) and new[j].role == "tool":
                j += 1
            run = new[i:j]
            results = _tool_results(run, self._call_names)
            previous = self._objs[-1] if self._objs and not added else None
            if (
                i == 0
                and self._fed
                and self._fed[-1].role == "tool"
                and isinstance(previous, FunctionExecutionResultMessage)
            ):
                # The tool results of one step were split across two fits: AutoGen adds them
                # as one message, so replace the previous result message with the merged one.
                self._objs.pop()
                earlier = self._by_obj.pop(id(previous))[1]
                self._tokens.pop(id(previous), None)
                merged = FunctionExecutionResultMessage(content=[*previous.content, *results])
                added.append(self._register(merged, [*earlier, *run]))
                rebuild = True
            else:
                result = FunctionExecutionResultMessage(content=results)
                added.append(self._register(result, list(run)))
            i = j
        self._objs.extend(added)
        context = self._context_obj

        async def add(objs: list[Any]) -> None:
            if rebuild:
                await context.clear()
            for obj in objs:
                await context.add_message(obj)

        _run(add(self._objs if rebuild else added))

    def _context(self) -> list[Message]:
        return self.expand(_run(self._context_obj.get_messages()))

    def _clone(self) -> _Session:
        # Same message objects in a fresh context (deepcopy would change their ids).
        clone = _AutogenSession(self.peer, self.budget, self.counter, self._factory)
        clone._objs = list(self._objs)
        clone._by_obj = dict(self._by_obj)
        clone._tokens = dict(self._tokens)
        clone._call_names = dict(self._call_names)
        context = clone._context_obj

        async def add_all() -> None:
            for obj in clone._objs:
                await context.add_message(obj)

        _run(add_all())
        return clone


def _buffer_size(budget: int) -> int:
    return max(1, budget // _TOKENS_PER_BUFFER_SLOT)


_AUTOGEN_SYSTEM_NOTE = (
    "The transcript's system message is added to the context as a SystemMessage so its "
    "retention can be measured, although AssistantAgent keeps system messages outside its "
    "model context."
)


class AutogenBuffered(PeerFitter):
    """AutoGen's ``BufferedChatCompletionContext`` (last N messages)."""

    name = "autogen.BufferedChatCompletionContext"
    extra = "autogen"
    notes = (
        "BufferedChatCompletionContext(buffer_size=budget//200), i.e. 10 / 20 / 40 messages "
        "at budgets 2000 / 4000 / 8000 (about 200 tokens per message); it counts messages, "
        "not tokens, so it can exceed the budget or leave it unused. The parallel tool "
        "results of one step are one AutoGen message (FunctionExecutionResultMessage), "
        f"counted as one buffer slot. {_AUTOGEN_SYSTEM_NOTE}"
    )

    def _open(self, transcript: Transcript, budget: int, counter: TokenCounter) -> FitSession:
        from autogen_core.model_context import BufferedChatCompletionContext

        size = _buffer_size(budget)
        return _AutogenSession(
            self.name, budget, counter, lambda _: BufferedChatCompletionContext(buffer_size=size)
        )


class AutogenHeadAndTail(PeerFitter):
    """AutoGen's ``HeadAndTailChatCompletionContext`` (first 2 + last N messages)."""

    name = "autogen.HeadAndTailChatCompletionContext"
    extra = "autogen"
    notes = (
        "HeadAndTailChatCompletionContext(head_size=2, tail_size=budget//200); counts "
        "messages, not tokens. Its 'Skipped N messages.' placeholder is a peer-made user "
        "message. The parallel tool results of one step are one AutoGen message. "
        f"{_AUTOGEN_SYSTEM_NOTE}"
    )

    def _open(self, transcript: Transcript, budget: int, counter: TokenCounter) -> FitSession:
        from autogen_core.model_context import HeadAndTailChatCompletionContext

        tail = _buffer_size(budget)
        return _AutogenSession(
            self.name,
            budget,
            counter,
            lambda _: HeadAndTailChatCompletionContext(head_size=2, tail_size=tail),
        )


@lru_cache(maxsize=1)
def _counting_client_class() -> type:
    """Build (once) a ``ReplayChatCompletionClient`` whose token counts use our counter."""
    from autogen_ext.models.replay import ReplayChatCompletionClient

    class CountingClient(ReplayChatCompletionClient):  # type: ignore[misc, valid-type]
        """Never asked for completions; ``count_tokens`` is the shared counter's."""

        def __init__(self, count: Callable[[Sequence[Any]], int], token_limit: int) -> None:
            super().__init__(chat_completions=[])
            self._count = count
            self._token_limit = token_limit

        def count_tokens(self, messages: Sequence[Any], *, tools: Sequence[Any] = ()) -> int:
            return self._count(messages)

        def remaining_tokens(self, messages: Sequence[Any], *, tools: Sequence[Any] = ()) -> int:
            return self._token_limit - self._count(messages)

    return CountingClient


class AutogenTokenLimited(PeerFitter):
    """AutoGen's ``TokenLimitedChatCompletionContext`` (experimental upstream)."""

    name = "autogen.TokenLimitedChatCompletionContext"
    extra = "autogen"
    notes = (
        "TokenLimitedChatCompletionContext(token_limit=budget) with a "
        "ReplayChatCompletionClient subclass whose count_tokens / remaining_tokens use the "
        "shared counter (tool schemas are not counted). While over the limit it drops the "
        "message in the middle of the list, one at a time, then drops a leading "
        "FunctionExecutionResultMessage; the parallel tool results of one step are one "
        f"AutoGen message, dropped together. {_AUTOGEN_SYSTEM_NOTE}"
    )

    def _open(self, transcript: Transcript, budget: int, counter: TokenCounter) -> FitSession:
        from autogen_core.model_context import TokenLimitedChatCompletionContext

        client_class = _counting_client_class()

        def factory(session: _AutogenSession) -> Any:
            client = client_class(session.count, budget)
            return TokenLimitedChatCompletionContext(client, token_limit=budget)

        return _AutogenSession(self.name, budget, counter, factory)


# ---------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------
PEERS: dict[str, Callable[[], Fitter]] = {
    LangchainTrimMessages.name: LangchainTrimMessages,
    LangchainSummarization.name: LangchainSummarization,
    LlamaIndexChatMemoryBuffer.name: LlamaIndexChatMemoryBuffer,
    LlamaIndexMemory.name: LlamaIndexMemory,
    AutogenBuffered.name: AutogenBuffered,
    AutogenHeadAndTail.name: AutogenHeadAndTail,
    AutogenTokenLimited.name: AutogenTokenLimited,
}
"""Peer name -> factory building its :class:`~ctxmgr.bench.fitter.Fitter`."""


def make_peers(spec: str) -> list[Fitter]:
    """Build the peers named by ``spec``.

    Args:
        spec: ``"all"``, ``"none"`` (or empty), or comma-separated peer names from
            :data:`PEERS` (surrounding spaces ignored, duplicates dropped, order kept).

    Returns:
        The peers as fitters, in the order given (``"all"``: the order of :data:`PEERS`).

    Raises:
        ConfigError: a name is unknown; the message lists the allowed names.
        ImportError: a named peer's framework is not installed (names the pip command).
    """
    text = spec.strip()
    if text.lower() == "all":
        names = list(PEERS)
    elif text.lower() in ("", "none"):
        names = []
    else:
        names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
        for name in names:
            if name not in PEERS:
                raise ConfigError(
                    f"unknown peer {name!r}", key="peers", allowed=[*PEERS, "all", "none"]
                )
    return [PEERS[name]() for name in names]
