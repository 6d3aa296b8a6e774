"""``loop_guard``: notice an agent repeating the same tool call or getting the same result.

The same tool called with the same arguments again and again is the commonest way an
agent burns its context window. Every new tool call is keyed by (tool name, arguments
as canonical JSON) and every tool result by (tool name, text digest); a key seen
``repeats`` times or more within the last ``window_turns`` turns (fits) is reported in
``FitReport.loops`` at each further repeat. Optionally a short note is appended to the
context for the model (``inject_note``), and :class:`~ctxmgr.errors.AgentLoopError` is
raised once a key reaches ``raise_after`` (after the fit is committed, so the manager
stays usable). By default it only reports.

State (the events of the window, one JSON batch per fit) lives in
``state.extra["loop_guard"]``, so it is saved with the session. Cost: O(new tool calls +
expired events) per fit.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import Field

from ctxmgr.errors import AgentLoopError
from ctxmgr.hookspecs import hookimpl
from ctxmgr.messages import Message, Role
from ctxmgr.report import FitReport
from ctxmgr.segments import Segment
from ctxmgr.strategy import Strategy, StrategyOptions
from ctxmgr.window import Window

__all__ = ["LoopGuard"]


class LoopGuardOptions(StrategyOptions):
    """Options of :class:`LoopGuard`.

    Attributes:
        repeats: report a call (or result) seen this many times within the window.
        window_turns: how many recent turns (fits) count.
        same_results: also report identical results of the same tool (even with
            different arguments). Tools whose normal answer is a short constant
            (``"OK"``) repeat it legitimately; turn this off for them.
        inject_note: append a short note to the context when a loop is reported.
        note_role: role of that note; ``"auto"`` (default) takes the provider profile's
            injection role (``user`` for Anthropic and Gemini, ``system`` for OpenAI).
        raise_after: raise :class:`~ctxmgr.errors.AgentLoopError` when a key is seen this
            many times within the window (``None``: never); reported from then on even
            below ``repeats``.
    """

    repeats: int = Field(default=3, ge=2)
    window_turns: int = Field(default=20, ge=1)
    same_results: bool = True
    inject_note: bool = False
    note_role: Literal["auto", "system", "user"] = "auto"
    raise_after: int | None = Field(default=None, ge=2)


def _canonical(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return arguments.strip()


def _count(
    groups: dict[tuple[str, str, str], int | list[int]], key: tuple[str, str, str], turn: int
) -> list[int] | None:
    """Add ``turn`` to the turns of ``key``; return them once there are two or more."""
    group = groups.get(key)
    if group is None:
        groups[key] = turn  # one int, not a list: most keys are never repeated
        return None
    if isinstance(group, int):
        group = groups[key] = [group]
    group.append(turn)
    return group


class LoopGuard(Strategy):
    """Reports (and optionally interrupts) repeated identical tool calls or results."""

    name = "loop_guard"
    summary = "reports repeated identical tool calls/results; optional note or AgentLoopError"
    Options = LoopGuardOptions
    options: LoopGuardOptions
    # (batches, their count, the last batch, event ids, turns by key)
    _memo: tuple[Any, ...] | None = None

    def bind(self, manager: Any) -> None:
        """Resolve ``note_role = "auto"`` from the manager's provider profile."""
        role = self.options.note_role
        self._role = manager.profile.injection_role if role == "auto" else role

    def _data(self, window: Window) -> dict[str, Any]:
        data: dict[str, Any] = window.state.extra.setdefault(self.name, {})
        seen = data.setdefault("seen", [])  # [turn, JSON [[kind, tool, key, event id]...]]
        if seen and len(seen[0]) == 5:  # rows [turn, kind, tool, key, event id] (older state)
            batches: dict[int, list[list[Any]]] = {}
            for row in seen:
                batches.setdefault(row[0], []).append(row[1:])
            data["seen"] = [[t, json.dumps(rows)] for t, rows in batches.items()]
        return data

    def _index(
        self, seen: list[list[Any]], turn: int, cutoff: int
    ) -> tuple[set[str], dict[tuple[str, str, str], int | list[int]], bool]:
        """Drop the batches at or before ``cutoff``; return the window's index.

        Returns (event ids, turns by (kind, tool, key) oldest first (a bare int for a key
        seen once: most are), whether the batches are in turn order). O(expired events)
        when ``seen`` is the list this instance left after its last fit (checked by
        identity); otherwise rebuilt in O(events in the window), e.g. after a rollback, a
        store load or a clone.
        """
        memo = self._memo
        groups: dict[tuple[str, str, str], int | list[int]]
        if (
            memo is not None
            and memo[0] is seen
            and memo[1] == len(seen)
            and (not seen or (seen[-1] is memo[2] and seen[-1][0] <= turn))
        ):
            known, groups = memo[3], memo[4]
            while seen and seen[0][0] <= cutoff:  # in turn order: expired batches lead
                for kind, tool, key, event_id in json.loads(seen[0][1]):
                    known.discard(event_id)
                    group = groups[(kind, tool, key)]
                    if isinstance(group, int) or len(group) == 1:
                        del groups[(kind, tool, key)]
                    else:
                        del group[0]  # the group's oldest turn is this event's
                del seen[0]
            return known, groups, True
        seen[:] = [batch for batch in seen if batch[0] > cutoff]
        known = set()
        groups = {}
        for t, events in seen:
            for kind, tool, key, event_id in json.loads(events):
                known.add(event_id)
                _count(groups, (kind, tool, key), t)
        ordered = all(a[0] <= b[0] for a, b in itertools.pairwise(seen)) and (
            not seen or seen[-1][0] <= turn
        )
        return known, groups, ordered

    @hookimpl
    def ctxmgr_observe(self, window: Window, new_segments: Sequence[Segment]) -> None:
        """Record the new calls and results; find the keys repeated within the window.

        O(new tool calls and results + expired events) per fit; the events within the
        window are kept in ``state.extra["loop_guard"]["seen"]``, one JSON string per fit
        (a checkpoint or a store copies a string, not one list per event).
        """
        data = self._data(window)
        turn = window.turn
        seen: list[list[Any]] = data["seen"]
        known, groups, ordered = self._index(seen, turn, turn - self.options.window_turns)
        batch: list[list[str]] = []
        found: dict[tuple[str, str, str], list[int]] = {}
        threshold = min(self.options.repeats, self.options.raise_after or self.options.repeats)
        exchanges = [s for s in new_segments if s.is_tool_exchange]
        if len(exchanges) > self.options.window_turns:
            # a history loaded at once (a cold fit): each tool step took at least one model
            # call, so only the last window_turns of them can lie within the window; the
            # older ones are neither counted nor kept (a warm manager had let them expire)
            exchanges = exchanges[-self.options.window_turns :]
        for seg in exchanges:
            names = {c.id: c.name for c in seg.head.tool_calls}
            events = [
                (f"{seg.head.id}/{c.id}", "same_call", c.name, _canonical(c.arguments))
                for c in seg.head.tool_calls
            ]
            if self.options.same_results:
                for msg in seg.messages[1:]:
                    if msg.metadata.get("ctxmgr") == "synthetic_tool_result":
                        continue
                    digest = hashlib.blake2b(msg.text.encode(), digest_size=8).hexdigest()
                    tool = names.get(msg.tool_call_id or "", "")
                    events.append((msg.id, "same_result", tool, digest))
            fresh = []
            for event_id, kind, tool, key in events:
                if event_id in known:  # seen before (a full refit re-observes the history)
                    continue
                fresh.append(event_id)
                batch.append([kind, tool, key, event_id])
                group = _count(groups, (kind, tool, key), turn)
                if group is not None and len(group) >= threshold:
                    found[(kind, tool, key)] = group  # grows on: read once, after the loop
            known.update(fresh)
        if batch:
            seen.append([turn, json.dumps(batch, separators=(",", ":"))])
        self._memo = (seen, len(seen), seen[-1] if seen else None, known, groups)
        if not ordered:
            self._memo = None
        data["found"] = {
            "turn": turn,
            "loops": [
                {
                    "kind": kind,
                    "tool": tool,
                    "arguments": key if kind == "same_call" else None,
                    "count": len(group),
                    "turns": list(group),
                }
                for (kind, tool, key), group in found.items()
            ],
        }

    def _found(self, window: Window) -> list[dict[str, Any]]:
        found = self._data(window).get("found") or {}
        return list(found.get("loops", ())) if found.get("turn") == window.turn else []

    @hookimpl
    def ctxmgr_append(self, window: Window) -> Sequence[Message] | None:
        """With ``inject_note``, append one short note naming the repeated call."""
        loops = self._found(window)
        if not self.options.inject_note or not loops:
            return None
        top = max(loops, key=lambda d: d["count"])
        if top["kind"] == "same_call":
            what = f"called {top['tool']} with the same arguments {top['count']} times"
        else:
            what = f"received the same result from {top['tool']} {top['count']} times"
        text = (
            f"[ctxmgr loop guard: you have {what} in the last {self.options.window_turns} "
            "turns. Repeating it will not give new information; try a different approach.]"
        )
        role: Role = getattr(self, "_role", "user")  # unbound (no manager): user
        return [Message(role, text, metadata={"ctxmgr": "loop_note"})]

    @hookimpl
    def ctxmgr_report(self, window: Window, report: FitReport) -> None:
        """Copy this fit's detections into the report; raise past ``raise_after``."""
        loops = self._found(window)
        report.loops.extend(loops)
        limit = self.options.raise_after
        if limit is not None:
            for loop in loops:
                if loop["count"] >= limit:
                    raise AgentLoopError(
                        tool=loop["tool"],
                        arguments=loop["arguments"],
                        count=loop["count"],
                        kind=loop["kind"],
                    )


@hookimpl
def ctxmgr_register_strategies(register: Callable[[type[Any]], None]) -> None:
    """Register :class:`LoopGuard`."""
    register(LoopGuard)
