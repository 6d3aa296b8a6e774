"""The protocol every benchmarked context policy implements: ctxmgr configs and peers alike.

A :class:`Fitter` describes a policy; :meth:`Fitter.start` opens a :class:`FitSession` for
one transcript at one budget. The replay calls :meth:`FitSession.fit` with the history so
far (oldest first, the full history every time, as frameworks do) before each model call,
and :meth:`FitSession.fork` to ask a probe without disturbing the session.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ctxmgr.bench.transcript import Transcript
from ctxmgr.messages import Message
from ctxmgr.tokens import TokenCounter

__all__ = ["FitSession", "Fitter"]


@runtime_checkable
class FitSession(Protocol):
    """One policy running over one transcript at one budget.

    Attributes:
        summarizer_calls: how many times the policy has called a summarizer so far.
    """

    summarizer_calls: int

    def fit(self, history: Sequence[Message]) -> list[Message]:
        """Return the context to send for ``history`` (oldest first, not mutated).

        Kept messages are returned as the same :class:`Message` objects (or equal ones
        with the same ``id`` and ``metadata``) so metrics can trace them; summaries and
        other injected messages are new messages.
        """
        ...

    def fork(self) -> FitSession:
        """Return an independent copy whose fits do not affect this session."""
        ...


@runtime_checkable
class Fitter(Protocol):
    """A benchmarked context policy.

    Attributes:
        name: row label in results (``"agent"``, ``"langchain.trim_messages"``).
        kind: ``"ctxmgr"`` or ``"peer"``.
        notes: caveats printed in the report (e.g. how a peer's token counter is backed).
    """

    name: str
    kind: str
    notes: str

    def start(self, transcript: Transcript, budget: int, counter: TokenCounter) -> FitSession:
        """Open a session for ``transcript`` with an effective limit of ``budget`` tokens.

        ``counter`` is the one token counter every policy in the run is measured with.
        """
        ...
