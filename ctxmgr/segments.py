"""Segments: the atomic keep-or-drop units of a history.

A segment is one message, or an assistant message with tool calls together with every
one of its tool results (parallel calls included). Strategies only ever see whole
segments, so no strategy can split a tool call from its result: tool-pair safety is
structural.

Malformed histories are handled by policy:

* ``"repair"`` (default): the problem is fixed and reported as a :class:`Repair`.
  An orphan tool result (unknown, already answered or duplicate ``tool_call_id``, or a
  tool message with nothing before it) is removed from the context and archived; a
  dangling call (an assistant tool call never answered before the next non-tool
  message) gets a synthetic tool result saying no result was recorded; a duplicate call
  id inside one assistant message is dropped from that message.
* ``"strict"``: the first problem raises :class:`~ctxmgr.errors.InvalidHistoryError`
  naming the message index.

Provider rules behind this: OpenAI rejects a ``tool`` message that does not answer a
``tool_calls`` entry of the preceding assistant message, and an assistant ``tool_calls``
message not followed by a result for every id (HTTP 400); Anthropic requires every
``tool_use`` block to be answered by a ``tool_result`` in the next user turn.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

from ctxmgr.errors import InvalidHistoryError
from ctxmgr.messages import Message, ToolCall

__all__ = [
    "HistoryPolicy",
    "Repair",
    "Segment",
    "Segmenter",
    "segment_messages",
]

HistoryPolicy = Literal["repair", "strict"]

SYNTHETIC_RESULT = "[ctxmgr: no result was recorded for this tool call]"


@dataclass(frozen=True, slots=True)
class Segment:
    """An atomic unit of history, kept or dropped whole.

    Attributes:
        messages: one message, or an assistant tool-call message followed by its results.
        start: index of the first message in the input history (``-1`` for injected).
        tokens: token count of all messages (0 until measured by the manager).
    """

    messages: tuple[Message, ...]
    start: int
    tokens: int = 0

    @property
    def head(self) -> Message:
        """The first message (the assistant call message for a tool exchange)."""
        return self.messages[0]

    @property
    def role(self) -> str:
        """The role of the head message."""
        return self.messages[0].role

    @property
    def is_tool_exchange(self) -> bool:
        """True for an assistant tool-call message with its results."""
        return bool(self.messages[0].tool_calls)

    @property
    def ids(self) -> tuple[str, ...]:
        """The ids of the messages, in order."""
        return tuple([m.id for m in self.messages])  # a list first: faster than a generator

    @property
    def text(self) -> str:
        """Search text of all messages joined by newlines (for relevance scoring)."""
        return "\n".join(m.search_text for m in self.messages)


@dataclass(frozen=True, slots=True)
class Repair:
    """A problem found in a history and what was done about it.

    Attributes:
        index: index of the offending message in the input history.
        problem: ``"orphan_tool_result"``, ``"duplicate_tool_result"``,
            ``"dangling_tool_call"``, ``"duplicate_tool_call_id"`` or ``"tool_first"``.
        action: what the repair did (``"archived"``, ``"synthesized_result"``, ...).
        message: the offending message (archived when removed).
    """

    index: int
    problem: str
    action: str
    message: Message

    def __str__(self) -> str:
        return f"message {self.index}: {self.problem.replace('_', ' ')} ({self.action})"


@dataclass
class _Open:
    """An assistant tool-call message still collecting its results."""

    start: int
    call: Message
    pending: dict[str, int]  # call id -> position of the call in call.tool_calls
    results: list[Message | None] = field(default_factory=list)


class Segmenter:
    """Incremental segmentation: feed messages as they arrive, O(1) per message.

    ``feed`` returns the segments closed by the new messages. A tool exchange stays
    *open* until a non-tool message arrives (or all results are in); :meth:`pending`
    renders the open exchange, with synthetic results for missing ones under
    ``"repair"``, for a context that must be sent now.

    Args:
        policy: ``"repair"`` or ``"strict"`` (see the module docstring).
    """

    def __init__(self, policy: HistoryPolicy = "repair"):
        if policy not in ("repair", "strict"):
            raise ValueError(f"policy must be 'repair' or 'strict', got {policy!r}")
        self.policy: HistoryPolicy = policy
        self.repairs: list[Repair] = []
        self._open: _Open | None = None
        # answered call ids; a dict (insertion ordered) so :meth:`rollback` can undo by length
        self._answered: dict[str, int] = {}
        self._next_index = 0

    # -- internals ---------------------------------------------------------------------
    def _problem(self, index: int, problem: str, action: str, message: Message, text: str) -> None:
        if self.policy == "strict":
            raise InvalidHistoryError(text, index=index, problem=problem)
        self.repairs.append(Repair(index, problem, action, message))

    def _close(self, out: list[Segment]) -> None:
        op = self._open
        if op is None:
            return
        self._open = None
        results: list[Message] = []
        for call in op.call.tool_calls:
            slot = op.pending.get(call.id)
            got = op.results[slot] if slot is not None else None
            if got is None:
                self._problem(
                    op.start,
                    "dangling_tool_call",
                    "synthesized_result",
                    op.call,
                    f"tool call {call.id!r} ({call.name}) of message {op.start} has no result "
                    "before the next non-tool message",
                )
                got = Message.tool(
                    SYNTHETIC_RESULT,
                    call.id,
                    name=call.name,
                    metadata={"ctxmgr": "synthetic_tool_result"},
                )
            results.append(got)
        out.append(Segment((op.call, *results), op.start))

    # -- transactions ------------------------------------------------------------------
    def mark(self) -> tuple[object, ...]:
        """Return an undo mark for :meth:`rollback`: O(calls of the open exchange).

        Every mutable part of a segmenter only grows between marks (repairs and answered
        ids are appended, the open exchange fills its result slots), so the mark is a
        handful of lengths plus a copy of the open exchange's result slots.
        """
        op = self._open
        results = list(op.results) if op is not None else None
        return (len(self.repairs), op, results, len(self._answered), self._next_index)

    def rollback(self, mark: tuple[object, ...]) -> None:
        """Undo every :meth:`feed` since ``mark`` was taken (used when a fit fails)."""
        n_repairs, op, results, n_answered, next_index = mark
        del self.repairs[cast(int, n_repairs) :]
        self._open = cast("_Open | None", op)
        if self._open is not None:
            self._open.results[:] = cast("list[Message | None]", results)
        while len(self._answered) > cast(int, n_answered):
            self._answered.popitem()
        self._next_index = cast(int, next_index)

    def adopt(self, swap: dict[int, Message]) -> None:
        """Replace held messages by equal ones the caller passed (``id(old) -> new``)."""
        op = self._open
        if op is not None:
            results = [None if r is None else swap.get(id(r), r) for r in op.results]
            call = swap.get(id(op.call), op.call)
            self._open = _Open(op.start, call, op.pending, results)

    # -- public API --------------------------------------------------------------------
    @property
    def consumed(self) -> int:
        """How many messages have been fed so far."""
        return self._next_index

    def feed(self, messages: Iterable[Message]) -> list[Segment]:
        """Consume the next messages of the history; return the segments they close.

        Args:
            messages: messages continuing the history fed so far, oldest first.

        Returns:
            Closed segments in history order. Orphans removed under ``"repair"`` are in
            :attr:`repairs`, not in any segment.

        Raises:
            InvalidHistoryError: under ``"strict"``, at the first malformed message.
        """
        out: list[Segment] = []
        for msg in messages:
            index = self._next_index
            self._next_index += 1
            if msg.role == "tool":
                op = self._open
                cid = msg.tool_call_id
                if op is not None and cid is not None and cid in op.pending:
                    slot = op.pending[cid]
                    if op.results[slot] is None:
                        op.results[slot] = msg
                        if all(r is not None for r in op.results):
                            self._answered.update(op.pending)
                            self._close(out)
                        continue
                    problem = "duplicate_tool_result"
                elif cid is not None and cid in self._answered:
                    problem = "duplicate_tool_result"
                elif index == 0:
                    problem = "tool_first"
                else:
                    problem = "orphan_tool_result"
                self._problem(
                    index,
                    problem,
                    "archived",
                    msg,
                    f"tool result for {cid!r} does not answer an open tool call of the "
                    "preceding assistant message",
                )
                continue
            # any non-tool message closes an open exchange
            if self._open is not None:
                self._answered.update(self._open.pending)
                self._close(out)
            if msg.role == "assistant" and msg.tool_calls:
                seen: dict[str, int] = {}
                calls: list[ToolCall] = []
                for call in msg.tool_calls:
                    if call.id in seen:
                        self._problem(
                            index,
                            "duplicate_tool_call_id",
                            "dropped_duplicate_call",
                            msg,
                            f"tool call id {call.id!r} appears twice in one assistant message",
                        )
                        continue
                    seen[call.id] = len(calls)
                    calls.append(call)
                if len(calls) != len(msg.tool_calls):
                    msg = msg.evolve(tool_calls=tuple(calls), id=msg.id)
                self._open = _Open(index, msg, seen, [None] * len(calls))
            else:
                out.append(Segment((msg,), index))
        return out

    def pending(self) -> Segment | None:
        """Render the open tool exchange as it must be sent now, or ``None``.

        Missing results are synthesized (``"repair"``) without committing them: if the
        real results arrive later they replace the synthetic ones.

        Raises:
            InvalidHistoryError: under ``"strict"`` when a result is missing.
        """
        op = self._open
        if op is None:
            return None
        results: list[Message] = []
        for call, got in zip(op.call.tool_calls, op.results):
            if got is None:
                if self.policy == "strict":
                    raise InvalidHistoryError(
                        f"tool call {call.id!r} ({call.name}) has no result",
                        index=op.start,
                        problem="dangling_tool_call",
                    )
                got = Message.tool(
                    SYNTHETIC_RESULT,
                    call.id,
                    name=call.name,
                    metadata={"ctxmgr": "synthetic_tool_result"},
                )
            results.append(got)
        return Segment((op.call, *results), op.start)

    @property
    def has_open(self) -> bool:
        """True while a tool exchange awaits results."""
        return self._open is not None


def segment_messages(
    messages: Sequence[Message], policy: HistoryPolicy = "repair"
) -> tuple[list[Segment], list[Repair]]:
    """Split a whole history into segments (a one-shot :class:`Segmenter`).

    Args:
        messages: the history, oldest first (not mutated).
        policy: ``"repair"`` or ``"strict"``.

    Returns:
        ``(segments, repairs)``; a trailing open tool exchange is included, completed
        with synthetic results under ``"repair"``.

    Raises:
        InvalidHistoryError: under ``"strict"``, naming the first malformed message.
    """
    seg = Segmenter(policy)
    out = seg.feed(messages)
    tail = seg.pending()
    if tail is not None:
        out.append(tail)
    return out, list(seg.repairs)
