"""The working set handed to strategy hooks during one fit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ctxmgr.budget import Budget
from ctxmgr.messages import Message
from ctxmgr.report import SegmentRecord, record
from ctxmgr.segments import Segment
from ctxmgr.state import SessionState

if TYPE_CHECKING:
    from ctxmgr.tokens import TokenCounter

__all__ = ["Injection", "Window"]


@dataclass(frozen=True, slots=True)
class Injection:
    """A message a strategy adds to the context.

    Attributes:
        message: the message (its metadata should say ``{"ctxmgr": "<what>"}``).
        position: ``"head"`` right after the leading pinned messages (system prompt, task),
            or ``"end"`` after everything else.
        reason: shown in the report.
        strategy: the strategy's config name.
    """

    message: Message
    position: Literal["head", "end"]
    reason: str
    strategy: str | None = None


@dataclass
class Window:
    """What hooks see and may change.

    During *observe* (every fit), ``segments`` is the whole committed history and
    ``new_start`` the index of the first new segment; hooks must only look at
    ``segments[new_start:]`` so the append-only path stays O(new messages).

    During *compaction*, ``segments`` are the candidates in history order; ``pinned``
    maps candidate index to the reason it is pinned; ``protected`` holds the indices the
    core never evicts (system prompt, latest user message, current tool step).
    Hooks return vectors or index sets over ``segments``, never one call per message.

    Attributes:
        segments: segments in history order (oldest first).
        budget: the token budget.
        counter: the token counter (``counter.count_message`` is cached per message).
        state: the session state (summary, notes, archive, turn).
        query: text of the latest user message, or the query given to ``fit``.
        turn: the manager's turn number (fits so far, this one included).
        new_start: index in ``segments`` of the first segment added by this fit.
        pinned: candidate index -> reason, filled from ``ctxmgr_pin`` and the core.
        cleared: candidate index -> record of a shrink applied by ``replace``.
        positions: during compaction, the position in the history of each candidate
            (candidates may skip archived segments); empty during observe.
        reserved: during compaction, tokens held back from the effective limit for
            injections, reply priming and an open tool step.
        history: during compaction, every committed segment of the conversation (oldest
            first, originals); hooks that read it must stay within their cost budget.
        context: during observe, the history positions of the committed segments the
            previous fit sent (oldest first; read-only, valid during this fit's observe
            and wants_compaction hooks).
    """

    segments: list[Segment]
    budget: Budget
    counter: TokenCounter
    state: SessionState
    query: str = ""
    turn: int = 0
    new_start: int = 0
    pinned: dict[int, str] = field(default_factory=dict)
    cleared: dict[int, SegmentRecord] = field(default_factory=dict)
    positions: list[int] = field(default_factory=list)
    reserved: int = 0
    history: Sequence[Segment] = ()
    scratch: dict[str, Any] = field(default_factory=dict)
    context: Sequence[int] = ()

    @property
    def new_segments(self) -> Sequence[Segment]:
        """Segments added by this fit."""
        return self.segments[self.new_start :]

    def tokens(self, index: int) -> int:
        """Tokens of candidate ``index``."""
        return self.segments[index].tokens

    def measure(self, messages: Sequence[Message]) -> int:
        """Tokens of ``messages`` (sum of per-message counts, no reply priming)."""
        return sum(self.counter.count_message(m) for m in messages)

    def replace(
        self, index: int, messages: Sequence[Message], reason: str, strategy: str | None = None
    ) -> int:
        """Replace candidate ``index`` by a shrunk form; return the tokens freed.

        The replacement must keep the segment's shape (same roles, same tool-call ids);
        the originals are archived by the manager. Only for use in ``ctxmgr_shrink`` (the
        manager also applies ``ctxmgr_arrive`` replacements with it).

        Raises:
            ValueError: the replacement would break a tool pair.
        """
        old = self.segments[index]
        if len(messages) != len(old.messages) or any(
            (a.role, a.tool_call_id, tuple(c.id for c in a.tool_calls))
            != (b.role, b.tool_call_id, tuple(c.id for c in b.tool_calls))
            for a, b in zip(old.messages, messages)
        ):
            raise ValueError("a shrunk segment must keep its roles and tool-call ids")
        new = Segment(tuple(messages), old.start, self.measure(messages))
        self.segments[index] = new
        if index not in self.cleared:
            self.cleared[index] = record(old, reason, strategy)
        return old.tokens - new.tokens
