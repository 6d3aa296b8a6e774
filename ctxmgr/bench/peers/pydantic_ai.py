"""pydantic-ai peer: the history processor recipe its documentation gives for long chats."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ctxmgr.bench.peers._common import _TOKENS_PER_BUFFER_SLOT, PeerFitter, _Session
from ctxmgr.messages import Message

if TYPE_CHECKING:
    from ctxmgr.bench.fitter import FitSession
    from ctxmgr.bench.transcript import Transcript
    from ctxmgr.tokens import TokenCounter


def _history(messages: list[Message]) -> tuple[list[Any], list[list[int]]]:
    """pydantic-ai messages for ``messages`` and, per message, the indices it came from.

    Consecutive system/user/tool messages form one ``ModelRequest`` (as in a pydantic-ai run,
    where parallel tool returns share one request); an assistant message is a
    ``ModelResponse``. Parts are built with the pydantic-ai adapter's converters.
    """
    from pydantic_ai.messages import ModelRequest

    from ctxmgr.adapters.pydantic_ai import from_messages

    out: list[Any] = []
    owners: list[list[int]] = []
    for index, message in enumerate(messages):
        (converted,) = from_messages([message])
        last = out[-1] if out else None
        if isinstance(converted, ModelRequest) and isinstance(last, ModelRequest):
            out[-1] = ModelRequest(parts=[*last.parts, *converted.parts])
            owners[-1].append(index)
        else:
            out.append(converted)
            owners.append([index])
    return out, owners


class _KeepRecentSession(_Session):
    def __init__(self, peer: str, budget: int, counter: TokenCounter, keep: int) -> None:
        super().__init__(peer, budget, counter)
        self.keep = keep

    def _reset(self) -> None:
        pass

    def _feed(self, new: list[Message]) -> None:
        pass  # stateless: the processor sees the whole history on every request

    def _context(self) -> list[Message]:
        history, owners = _history(self._fed)
        position = {id(m): i for i, m in enumerate(history)}

        def keep_recent(messages: list[Any]) -> list[Any]:
            return messages[-self.keep :] if len(messages) > self.keep else messages

        kept = keep_recent(history)
        return [self._fed[i] for m in kept for i in owners[position[id(m)]]]

    def _clone(self) -> _Session:
        return _KeepRecentSession(self.peer, self.budget, self.counter, self.keep)


class PydanticAIKeepRecent(PeerFitter):
    """pydantic-ai's documented ``ProcessHistory(keep_recent)`` recipe."""

    name = "pydantic_ai.keep_recent"
    extra = "pydantic-ai"
    notes = (
        "The history processor from pydantic-ai's docs, keep_recent(messages) = "
        "messages[-N:], with N = budget // 200 ModelMessages (the docs use 10) over a "
        "pydantic-ai history (consecutive system/user/tool messages in one ModelRequest). "
        "pydantic-ai repairs the result before sending (drops orphaned tool returns, "
        "synthesizes missing ones); that repair is not applied here, so a broken pair "
        "counted here is one pydantic-ai sends with a dropped or invented result."
    )

    def _open(self, transcript: Transcript, budget: int, counter: TokenCounter) -> FitSession:
        import pydantic_ai.messages  # noqa: F401

        keep = max(1, budget // _TOKENS_PER_BUFFER_SLOT)
        return _KeepRecentSession(self.name, budget, counter, keep)
