"""Shared pieces of the peer baselines: imports, the event loop, identity, base classes."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import threading
from collections.abc import Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ctxmgr.errors import ConfigError
from ctxmgr.messages import Message

if TYPE_CHECKING:
    from ctxmgr.bench.fitter import FitSession
    from ctxmgr.bench.transcript import Transcript
    from ctxmgr.tokens import TokenCounter

_T = TypeVar("_T")

# Modules each extra must provide (checked with find_spec, without importing them).
_EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "langchain": ("langchain_core", "langchain", "langgraph"),
    "llamaindex": ("llama_index.core",),
    "autogen": ("autogen_core", "autogen_ext"),
    "ag2": ("autogen",),
    "pydantic-ai": ("pydantic_ai",),
    "openai-agents": ("agents",),
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
        f"peer {peer!r} needs {', '.join(missing)} (not installed): "
        f'pip install "ctxmgr-llm[{extra}]"'
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
        extra: the ``ctxmgr-llm[...]`` extra that installs the framework.

    Raises:
        ImportError: at construction, when the framework is not installed; the message names
            the ``pip install "ctxmgr-llm[...]"`` command.
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
