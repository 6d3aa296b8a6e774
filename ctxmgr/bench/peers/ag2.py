"""AG2 peer: the ``MessageHistoryLimiter`` transform of AG2's ``TransformMessages`` capability."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ctxmgr.bench.peers._common import _TOKENS_PER_BUFFER_SLOT, PeerFitter, _Session
from ctxmgr.messages import Message, to_openai

if TYPE_CHECKING:
    from ctxmgr.bench.fitter import FitSession
    from ctxmgr.bench.transcript import Transcript
    from ctxmgr.tokens import TokenCounter

_KEY = "_ctxmgr_index"  # position of the message in the fed history, carried through AG2


class _AG2Session(_Session):
    def __init__(self, peer: str, budget: int, counter: TokenCounter, max_messages: int) -> None:
        super().__init__(peer, budget, counter)
        self.max_messages = max_messages
        self._reset()

    def _reset(self) -> None:
        self._dicts: list[dict[str, Any]] = []

    def _feed(self, new: list[Message]) -> None:
        start = len(self._fed)
        for i, message in enumerate(new):
            self._dicts.append({**to_openai(message), _KEY: start + i})

    def _context(self) -> list[Message]:
        from autogen.agentchat.contrib.capabilities.transform_messages import TransformMessages
        from autogen.agentchat.contrib.capabilities.transforms import MessageHistoryLimiter

        capability = TransformMessages(
            transforms=[MessageHistoryLimiter(max_messages=self.max_messages)], verbose=False
        )
        # what the capability's process_all_messages_before_reply hook runs before each reply:
        # the leading system message set aside, the transforms, the system message put back
        kept = capability._transform_messages(self._dicts)
        # AG2 0.14 puts the oldest kept message second (``insert(1, ...)`` for the last
        # slot); the bench compares kept messages in order, so chronological order is restored
        return [self._fed[i] for i in sorted(d[_KEY] for d in kept)]

    def _clone(self) -> _Session:
        clone = _AG2Session(self.peer, self.budget, self.counter, self.max_messages)
        clone._dicts = list(self._dicts)  # the capability deep-copies; the dicts are not mutated
        return clone


class AG2MessageHistoryLimiter(PeerFitter):
    """AG2's ``MessageHistoryLimiter`` through ``TransformMessages`` (the AutoGen 0.2 line)."""

    name = "ag2.MessageHistoryLimiter"
    extra = "ag2"
    notes = (
        "TransformMessages([MessageHistoryLimiter(max_messages=budget // 200)]) as an agent's "
        "hook runs it (system message set aside and put back); AG2 0.14 puts the oldest kept "
        "message second, the peer restores chronological order. A message count, not a token "
        "budget: AG2's token-based MessageTokenLimiter counts with tiktoken downloads (no "
        "counter hook) and cannot run offline, so it is not a peer here."
    )

    def _open(self, transcript: Transcript, budget: int, counter: TokenCounter) -> FitSession:
        import autogen.agentchat.contrib.capabilities.transform_messages  # noqa: F401

        max_messages = max(1, budget // _TOKENS_PER_BUFFER_SLOT)
        return _AG2Session(self.name, budget, counter, max_messages)
