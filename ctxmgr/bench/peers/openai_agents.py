"""OpenAI Agents SDK peer: a session read with ``SessionSettings(limit=N)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from ctxmgr.bench.peers._common import (
    _TOKENS_PER_BUFFER_SLOT,
    PeerFitter,
    _peer_message,
    _run,
    _Session,
)
from ctxmgr.messages import Message

if TYPE_CHECKING:
    from ctxmgr.bench.fitter import FitSession
    from ctxmgr.bench.transcript import Transcript
    from ctxmgr.tokens import TokenCounter

_KEY = "_ctxmgr_index"  # which fed message an item came from (kept by the SQLite session)


class _LimitSession(_Session):
    def __init__(self, peer: str, budget: int, counter: TokenCounter, limit: int) -> None:
        super().__init__(peer, budget, counter)
        self.limit = limit
        self._reset()

    def _reset(self) -> None:
        from agents import SQLiteSession

        self._session = SQLiteSession(f"peer-{id(self)}")
        self._items: list[dict[str, Any]] = []

    def _feed(self, new: list[Message]) -> None:
        from ctxmgr.adapters.openai_agents import from_messages

        start = len(self._fed)
        items = [
            {**item, _KEY: start + i}
            for i, message in enumerate(new)
            for item in from_messages([message])
        ]
        self._items.extend(items)
        _run(self._session.add_items(items))  # type: ignore[arg-type]

    def _context(self) -> list[Message]:
        read = _run(self._session.get_items(limit=self.limit))
        items = cast("list[dict[str, Any]]", read)
        out: list[Message] = []
        for index in dict.fromkeys(item[_KEY] for item in items):
            message = self._fed[index]
            kept = [i for i in items if i[_KEY] == index]
            calls = {i.get("call_id") for i in kept if i.get("type") == "function_call"}
            whole = len(kept) == sum(1 for i in self._items if i[_KEY] == index)
            if whole or not message.tool_calls:
                out.append(message)
            else:  # the limit cut through the items of one assistant turn
                partial = tuple(c for c in message.tool_calls if c.id in calls)
                out.append(_peer_message(self.peer, "assistant", "", tool_calls=partial))
        return out

    def _clone(self) -> _Session:
        clone = _LimitSession(self.peer, self.budget, self.counter, self.limit)
        clone._items = list(self._items)
        _run(clone._session.add_items(list(self._items)))  # type: ignore[arg-type]
        return clone


class AgentsSessionLimit(PeerFitter):
    """The Agents SDK's session history limit (``SessionSettings(limit=N)``)."""

    name = "openai_agents.SessionSettings.limit"
    extra = "openai-agents"
    notes = (
        "An SQLiteSession read with get_items(limit=N), what SessionSettings(limit=N) does "
        "before each run, N = budget // 200 Responses-API items (each function call and "
        "each output is one item). Items come from the Agents SDK adapter's converters."
    )

    def _open(self, transcript: Transcript, budget: int, counter: TokenCounter) -> FitSession:
        import agents  # noqa: F401

        limit = max(1, budget // _TOKENS_PER_BUFFER_SLOT)
        return _LimitSession(self.name, budget, counter, limit)
