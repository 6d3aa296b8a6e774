"""LangChain peers: ``trim_messages`` and ``SummarizationMiddleware``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, cast

from ctxmgr.bench.peers._common import (
    _SUMMARY_KEEP_FRACTION,
    CANNED_SUMMARY,
    PeerFitter,
    _arguments_json,
    _content_dicts,
    _peer_message,
    _Session,
)
from ctxmgr.messages import Message, ToolCall

if TYPE_CHECKING:
    from ctxmgr.bench.fitter import FitSession
    from ctxmgr.bench.transcript import Transcript
    from ctxmgr.tokens import TokenCounter


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
