"""What a fit did: kept, cleared, dropped, summarized, injected and pinned, with reasons."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ctxmgr.messages import Message
from ctxmgr.segments import Segment

__all__ = ["FitReport", "FitResult", "SegmentRecord"]


@dataclass(frozen=True, slots=True)
class SegmentRecord:
    """One decision about one segment.

    Attributes:
        ids: ids of the segment's messages.
        tokens: tokens of the segment as it was before the decision.
        reason: why (``"system prompt"``, ``"evicted: lowest score 0.12"``...).
        strategy: config name of the strategy responsible, or ``None`` for the core.
    """

    ids: tuple[str, ...]
    tokens: int
    reason: str
    strategy: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return {
            "ids": list(self.ids),
            "tokens": self.tokens,
            "reason": self.reason,
            "strategy": self.strategy,
        }


@dataclass
class FitReport:
    """The account of one fit. Token numbers are tokens as the manager's counter bills them.

    Attributes:
        tokens_before: tokens of the full input history (what would be sent untouched).
        tokens_after: tokens of the fitted context.
        effective_limit: ``max_context_tokens - reserve_output_tokens``.
        max_context_tokens: the context window.
        compacted: whether this fit compacted (``False`` on the append-only path).
        kept: segments kept unchanged. On the append-only path only the newly appended
            segments are listed; ``kept_count`` counts them all.
        cleared: segments kept in a shrunk form (old tool results cleared or truncated).
        dropped: segments evicted to the archive.
        summarized: evicted segments folded into the running summary.
        injected: messages ctxmgr added (summary, notes, system-prompt replay).
        pinned: segments kept because they are pinned or protected.
        repairs: problems repaired in the input (``"message 3: orphan tool result ..."``).
        reason: why the fit compacted (``"over trigger 0.80"``), or ``"append-only"``.
        elapsed_ms: wall time of the fit in milliseconds.
        turn: the manager's turn number for this fit.
        tools_tokens: tokens of the tool definitions sent with the request (``fit(...,
            tools=...)``), subtracted from the limit; not part of ``tokens_after``.
        calibration: the per-conversation correction factor (provider tokens per local
            token) the budget was scaled by; ``1.0`` = none (see
            :meth:`ContextManager.record_usage`).
        reserve_tokens: tokens kept free for the reply in this fit (grows after a reply
            cut for length, :meth:`ContextManager.record_stop`).
        recovered: this fit was a retry after the provider answered
            context-length-exceeded (:meth:`ContextManager.refit_after_overflow`).
        provider: the provider profile the output obeys (``"openai"``...).
        notes: notable events of this fit (calibration learned, reserve grown...).
        offloaded: segments replaced at arrival by a preview (``offload`` strategy); the
            originals are archived and ``tokens`` is their size before.
        loops: repeated tool calls or results noticed (``loop_guard`` strategy), as dicts
            with ``kind`` (``"same_call"`` / ``"same_result"``), ``tool``, ``arguments``,
            ``count`` and ``turns``.
    """

    tokens_before: int = 0
    tokens_after: int = 0
    effective_limit: int = 0
    max_context_tokens: int = 0
    compacted: bool = False
    kept: list[SegmentRecord] = field(default_factory=list)
    kept_count: int = 0
    cleared: list[SegmentRecord] = field(default_factory=list)
    dropped: list[SegmentRecord] = field(default_factory=list)
    summarized: list[SegmentRecord] = field(default_factory=list)
    injected: list[SegmentRecord] = field(default_factory=list)
    pinned: list[SegmentRecord] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    reason: str = "append-only"
    elapsed_ms: float = 0.0
    turn: int = 0
    tools_tokens: int = 0
    calibration: float = 1.0
    reserve_tokens: int = 0
    recovered: bool = False
    provider: str = "openai"
    notes: list[str] = field(default_factory=list)
    offloaded: list[SegmentRecord] = field(default_factory=list)
    loops: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if isinstance(value, list) and value and isinstance(value[0], SegmentRecord):
                out[key] = [r.to_dict() for r in value]
            else:
                out[key] = value
        return out

    def __str__(self) -> str:
        def n(items: Sequence[SegmentRecord]) -> int:
            return sum(len(r.ids) for r in items)

        return (
            f"ctxmgr fit turn {self.turn}: {self.tokens_before} -> {self.tokens_after} tokens "
            f"(limit {self.effective_limit}, {self.reason}); kept {self.kept_count} segments, "
            f"cleared {n(self.cleared)}, dropped {n(self.dropped)}, summarized "
            f"{n(self.summarized)}, injected {len(self.injected)}, repairs {len(self.repairs)}"
            + (f", offloaded {n(self.offloaded)}" if self.offloaded else "")
            + (f", loops {len(self.loops)}" if self.loops else "")
            + f"; {self.elapsed_ms:.2f} ms"
            + (f"; tools {self.tools_tokens} tokens" if self.tools_tokens else "")
            + (f"; calibration x{self.calibration:.3f}" if self.calibration != 1.0 else "")
            + ("; recovered from a provider overflow" if self.recovered else "")
        )


class FitResult(NamedTuple):
    """The fitted context and its report.

    Attributes:
        messages: the context to send, oldest first.
        report: what the fit did.
    """

    messages: list[Message]
    report: FitReport


def record(segment: Segment, reason: str, strategy: str | None = None) -> SegmentRecord:
    """Build a :class:`SegmentRecord` for ``segment``."""
    return SegmentRecord(segment.ids, segment.tokens, reason, strategy)
