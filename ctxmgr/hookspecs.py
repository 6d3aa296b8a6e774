"""Hook specifications: the contract between the ctxmgr core and its strategies.

Every hook is prefixed ``ctxmgr_`` and is called with keyword arguments. Hooks take the
whole window at once (vectors of scores, maps of indices), never one call per message,
so a fit stays O(new messages) between compactions.

Phases of one fit, in order::

    registration   ctxmgr_register_strategies          (once per process)
    arrive         ctxmgr_arrive                        (every fit, new segments only)
    observe        ctxmgr_observe, ctxmgr_wants_compaction, ctxmgr_append   (every fit)
    compaction     ctxmgr_recall -> ctxmgr_pin -> ctxmgr_reserve -> ctxmgr_shrink ->
                   ctxmgr_score -> (evict) ->
                   ctxmgr_compact -> ctxmgr_inject     (only above the trigger, or on request)
    recall block   ctxmgr_recall_block                 (every fit, after the above)
    report         ctxmgr_report                        (every fit, after the context is built)

Within a phase, strategies are called in config order (the manager registers them so
that pluggy's LIFO call order equals the config list).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from ctxmgr.messages import Message
    from ctxmgr.report import FitReport
    from ctxmgr.segments import Segment
    from ctxmgr.window import Injection, Window

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("ctxmgr")
hookimpl = pluggy.HookimplMarker("ctxmgr")


# ---------------------------------------------------------------------------------------
# Registration (process-wide, on the strategy *types* plugin manager)
# ---------------------------------------------------------------------------------------
@hookspec
def ctxmgr_register_strategies(register: Callable[[type[Any]], None]) -> None:
    """Register strategy classes so configs can name them.

    Implemented at module level by plugin modules (built-ins in ``DEFAULT_PLUGINS`` and
    third-party packages in the ``ctxmgr`` entry-point group).

    :param register: call with a :class:`ctxmgr.strategy.Strategy` subclass; its
        ``name`` attribute is the config name. Registering a name twice raises
        :class:`~ctxmgr.errors.ConfigError`.
    """


# ---------------------------------------------------------------------------------------
# Arrive: every fit, on the new segments only, before anything else sees them
# ---------------------------------------------------------------------------------------
@hookspec
def ctxmgr_arrive(
    window: Window, new_segments: Sequence[Segment]
) -> Mapping[int, tuple[Sequence[Message], str, str | None]] | None:
    """Replace new segments the moment they arrive (offload a huge tool result).

    The replacement enters the context stream in place of the original from this fit on,
    so the original is never sent. It must keep the segment's shape (same roles, same
    tool-call ids; :meth:`ctxmgr.window.Window.replace` checks it). The manager archives
    every replaced message with the reason and reports the segment under
    ``FitReport.offloaded``. Must cost O(len(new_segments)).

    :param window: the committed history, as for :func:`ctxmgr_observe`.
    :param new_segments: the segments added by this fit, oldest first.
    :return: index in ``new_segments`` -> ``(messages, reason, strategy name)``, or
        ``None`` to change nothing.
    """


# ---------------------------------------------------------------------------------------
# Observe: every fit, on the new segments only
# ---------------------------------------------------------------------------------------
@hookspec
def ctxmgr_observe(window: Window, new_segments: Sequence[Segment]) -> None:
    """See the segments this fit added, before anything is decided.

    Use it to update incremental state: index new text, extract notes from tool results,
    count turns. Must cost O(len(new_segments)).

    :param window: the committed history (``window.segments``), ``window.new_start``
        marks the first new segment.
    :param new_segments: the segments added by this fit, oldest first.
    """


@hookspec(firstresult=True)
def ctxmgr_wants_compaction(window: Window, new_segments: Sequence[Segment]) -> str | None:
    """Ask for a compaction even though the context is below the trigger.

    Stops at the first non-None result.

    :param window: as for :func:`ctxmgr_observe`.
    :param new_segments: the segments added by this fit.
    :return: a reason (shown in the report), or ``None`` to let the budget decide.
    """


@hookspec
def ctxmgr_append(window: Window) -> Sequence[Message] | None:
    """Messages to append at the end of the context on this fit (append-only path).

    Appended messages become part of the context stream, so the next fit's context
    still extends this one (prompt caches keep hitting). Used by system-prompt replay.

    :param window: as for :func:`ctxmgr_observe`.
    :return: messages to append, or ``None``.
    """


# ---------------------------------------------------------------------------------------
# Compaction: pin -> shrink -> score -> evict -> compact -> inject
# ---------------------------------------------------------------------------------------
@hookspec
def ctxmgr_recall(
    window: Window, history: Sequence[Segment], candidates: AbstractSet[int]
) -> Iterable[int] | None:
    """Bring archived history back as candidates for this compaction.

    Candidates are normally the current context plus the new segments, so a compaction
    costs O(context), not O(history). A strategy that can tell which evicted segments
    matter now (relevance to a new question) returns their positions in ``history``.

    :param window: the fit's window (``window.query`` is the current query).
    :param history: every committed segment of the conversation, oldest first.
    :param candidates: positions in ``history`` that are already candidates.
    :return: positions in ``history`` to add, or ``None``.
    """


@hookspec
def ctxmgr_pin(window: Window) -> Mapping[int, str] | None:
    """Pin candidates so they are never evicted.

    The core always protects leading system messages, messages with ``pinned=True``,
    the latest user message and the current tool step; this hook adds more.

    :param window: candidates in ``window.segments``.
    :return: candidate index -> reason, or ``None``.
    """


@hookspec
def ctxmgr_reserve(window: Window) -> int | None:
    """Tokens to hold back from the target for this strategy's injections.

    Called before eviction so that, for example, the running summary and the notes
    block fit beside the kept segments.

    :param window: candidates.
    :return: tokens to reserve, or ``None`` for none.
    """


@hookspec
def ctxmgr_shrink(window: Window, excess_tokens: int) -> None:
    """Shrink candidates before anything is dropped (clear or truncate tool results).

    Called in config order while the candidates still exceed the target. Shrink with
    :meth:`ctxmgr.window.Window.replace`, which keeps tool pairs intact and records
    what was cleared; the manager archives the originals.

    :param window: candidates; ``window.pinned`` is already filled.
    :param excess_tokens: tokens above the target at the time of the call.
    """


@hookspec
def ctxmgr_score(window: Window) -> Sequence[float] | None:
    """Score every candidate for keeping; the lowest are evicted first.

    Scores should lie in [0, 1]. The manager sums them weighted by each strategy's
    ``weight``; with no scores at all, recency decides (FIFO).

    :param window: candidates.
    :return: one float per candidate (``len(window.segments)``), or ``None`` to abstain.
    """


@hookspec
def ctxmgr_compact(
    window: Window, evicted: Sequence[Segment], use_async: bool
) -> Awaitable[None] | None:
    """Fold the newly evicted segments into the running summary (``window.state``).

    A failing summarizer must fall back (e.g. to the extractive summarizer) and lose
    nothing: the evicted messages are archived by the core either way.

    :param window: the kept candidates.
    :param evicted: segments evicted by this compaction, oldest first.
    :param use_async: True inside ``afit``: an implementation may return an awaitable,
        which the manager awaits. In ``fit`` it must finish synchronously.
    :return: ``None``, or an awaitable when ``use_async`` is true.
    """


@hookspec
def ctxmgr_inject(window: Window) -> Sequence[Injection] | None:
    """Messages to add to the compacted context (running summary, notes block).

    :param window: the kept candidates.
    :return: injections, or ``None``.
    """


# ---------------------------------------------------------------------------------------
# Recall block (every fit, once the append-only context is settled)
# ---------------------------------------------------------------------------------------
@hookspec(firstresult=True)
def ctxmgr_recall_block(window: Window, selected: Sequence[int], room: int) -> Sequence[int] | None:
    """Segments recalled for the current question, placed as one block (stops at first non-None).

    The context stays an append-only prefix (cache-stable); the block is inserted just
    before the latest user message (or after the leading system messages) and is not part
    of that prefix: it is asked for again on every fit and may change when the question
    does. Its tokens come out of ``room``, never out of the prefix.

    :param window: the fit's window (``window.query``, ``window.history`` = every
        committed segment, oldest first).
    :param selected: positions in ``window.history`` already in the context.
    :param room: tokens the block may use (the trigger minus everything else).
    :return: positions in ``window.history``, in the order they are to appear (none of
        ``selected``, at most ``room`` tokens in total), or ``None``.
    """


# ---------------------------------------------------------------------------------------
# Report: every fit, after the context is built
# ---------------------------------------------------------------------------------------
@hookspec
def ctxmgr_report(window: Window, report: FitReport) -> None:
    """Add to the fit's report (loop detections...) once the context is built.

    Called on every fit after the context is final and committed, so raising here (for
    example :class:`~ctxmgr.errors.AgentLoopError`) leaves the manager consistent: the
    next fit continues from this one. Must cost O(1) or O(new segments).

    :param window: the fit's observe window (``window.new_start`` marks the new segments).
    :param report: the :class:`~ctxmgr.report.FitReport` to annotate in place.
    """
