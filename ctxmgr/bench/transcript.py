"""Recorded transcripts and the probes asked of them during a benchmark replay."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ctxmgr.messages import Message

__all__ = ["Probe", "Transcript"]


@dataclass(frozen=True)
class Probe:
    """A question or check evaluated against a fitted context.

    Two kinds:

    * ``"qa"`` (LoCoMo): ``question`` is appended as the latest user message at the end of
      the transcript and the history is fitted; ``evidence_ids`` are the ``dia_id`` values
      of the turns that hold the answer (kept in ``Message.metadata["dia_id"]``), and
      ``answer`` is the gold answer text. ``category`` is LoCoMo's (5 = adversarial,
      no answer; such probes are excluded from evidence recall).
    * ``"action"`` (tau-bench): no question; the history ``messages[:position]`` (the
      context the model saw before it issued the final ground-truth action) is fitted and
      ``values`` are the ground-truth action argument values that appeared in earlier tool
      results, each of which should still be in context.

    Attributes:
        kind: ``"qa"`` or ``"action"``.
        question: the question text (``"qa"``), else ``None``.
        answer: normalized-able gold answer text, or ``None``.
        evidence_ids: ids of evidence turns (``"D1:3"``), possibly empty.
        category: dataset category, or ``None``.
        position: for ``"action"`` probes, the index of the assistant message before which
            to fit (so the history is ``messages[:position]``).
        values: for ``"action"`` probes, the argument values (as strings) to find.
        metadata: anything else (action name, probe id...).
    """

    kind: Literal["qa", "action"]
    question: str | None = None
    answer: str | None = None
    evidence_ids: tuple[str, ...] = ()
    category: int | None = None
    position: int | None = None
    values: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Transcript:
    """One recorded conversation, oldest message first.

    Attributes:
        id: stable id, unique within its dataset (``"locomo/conv-26"``, ``"tau/3-0"``).
        dataset: dataset name (``"locomo"``, ``"tau-bench"``, ``"swe-agent"``,
            ``"toolbench"``, ``"openai"``, ``"langchain"``).
        source: the file it was loaded from.
        messages: the conversation as neutral messages.
        probes: probes asked at the end (``"qa"``) or at a position (``"action"``).
        metadata: dataset-specific extras (session dates, reward, task id...).
    """

    id: str
    dataset: str
    source: str
    messages: list[Message]
    probes: list[Probe] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
