"""``summarize``: fold evicted segments into a running summary; a failing summarizer falls back."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from pydantic import Field

from ctxmgr.hookspecs import hookimpl
from ctxmgr.messages import Message
from ctxmgr.segments import Segment
from ctxmgr.strategy import Strategy, StrategyOptions
from ctxmgr.summarizers import ExtractiveSummarizer
from ctxmgr.window import Injection, Window

__all__ = ["Summarize"]

logger = logging.getLogger("ctxmgr.summarize")

SUMMARY_HEADER = "Summary of the earlier conversation (older messages were compacted):\n"


class SummarizeOptions(StrategyOptions):
    """Options of :class:`Summarize`.

    Attributes:
        max_summary_tokens: token budget of the running summary.
        max_summary_fraction: cap on the summary as a fraction of the effective limit.
        summarizer: ``"extractive"`` (offline default), or ``"module:attribute"`` naming a
            summarizer object or a zero-argument factory. A summarizer passed to the
            manager (``summarizer=``) wins over this.
        role: role of the injected summary message; ``"auto"`` (default) takes the
            provider profile's injection role (``system`` for OpenAI, ``user`` for
            Anthropic and Gemini, which allow system content only at the top).
    """

    max_summary_tokens: int = Field(default=512, gt=0)
    max_summary_fraction: float = Field(default=0.15, gt=0, le=0.5)
    summarizer: str = "extractive"
    role: Literal["auto", "system", "user"] = "auto"


def _load(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    return (
        obj() if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "summarize")) else obj
    )


class Summarize(Strategy):
    """Keeps a running summary of what was evicted, folded with the previous summary.

    Each compaction passes the previous summary and the newly evicted segments (those the
    summary does not cover yet) to the summarizer, so earlier facts are carried forward
    instead of being overwritten. If the summarizer raises or returns nothing, the
    offline :class:`~ctxmgr.summarizers.ExtractiveSummarizer` is used instead and the
    failure is logged and counted; the evicted messages are archived either way.
    """

    name = "summarize"
    summary = "folds evicted segments into a running summary (any LLM; offline default)"
    Options = SummarizeOptions
    options: SummarizeOptions

    def bind(self, manager: Any) -> None:
        """Pick the summarizer: the manager's, the configured one, or the extractive one."""
        self._fallback = ExtractiveSummarizer(manager.counter.count_text)
        role = self.options.role
        self._role = manager.profile.injection_role if role == "auto" else role
        if manager.summarizer is not None:
            self._summarizer = manager.summarizer
        elif self.options.summarizer == "extractive":
            self._summarizer = self._fallback
        else:
            self._summarizer = _load(self.options.summarizer)
        self._limit = min(
            self.options.max_summary_tokens,
            int(manager.budget.effective_limit * self.options.max_summary_fraction),
        )

    def _data(self, window: Window) -> dict[str, Any]:
        return window.state.extra.setdefault(self.name, {"calls": 0, "failures": 0})

    @hookimpl
    def ctxmgr_reserve(self, window: Window) -> int | None:
        """Reserve the summary budget plus the message overhead."""
        return self._limit + 16

    def _apply(self, window: Window, evicted: Sequence[Segment], text: str | None) -> None:
        data = self._data(window)
        messages = [m for seg in evicted for m in seg.messages]
        if not text or not text.strip():
            data["failures"] += 1
            text = self._fallback.summarize(window.state.summary, messages, max_tokens=self._limit)
        if window.counter.count_text(text) > self._limit:
            text = self._fallback._fit(text.splitlines(), self._limit)
        window.state.summary = text
        covers = window.state.summary_covers
        seen = set(covers)
        covers.extend(m.id for m in messages if m.id not in seen)

    @hookimpl
    def ctxmgr_compact(
        self, window: Window, evicted: Sequence[Segment], use_async: bool
    ) -> Awaitable[None] | None:
        """Fold ``evicted`` into the running summary (awaitable in ``afit``)."""
        messages = [m for seg in evicted for m in seg.messages]
        data = self._data(window)
        data["calls"] += 1
        previous = window.state.summary
        summarizer = self._summarizer
        if use_async and hasattr(summarizer, "asummarize"):

            async def run() -> None:
                try:
                    text = await summarizer.asummarize(previous, messages, max_tokens=self._limit)
                except Exception as exc:
                    logger.warning("summarizer failed, falling back to extractive: %r", exc)
                    text = None
                self._apply(window, evicted, text)

            return run()
        text: str | None
        try:
            if hasattr(summarizer, "summarize"):
                text = summarizer.summarize(previous, messages, max_tokens=self._limit)
            elif hasattr(summarizer, "asummarize"):
                from ctxmgr.manager import run_coroutine_sync

                text = run_coroutine_sync(
                    summarizer.asummarize(previous, messages, max_tokens=self._limit)
                )
            else:
                text = summarizer(previous, messages, max_tokens=self._limit)
        except Exception as exc:
            logger.warning("summarizer failed, falling back to extractive: %r", exc)
            text = None
        self._apply(window, evicted, text)
        return None

    @hookimpl
    def ctxmgr_inject(self, window: Window) -> Sequence[Injection] | None:
        """Inject the running summary after the leading pinned messages."""
        if not window.state.summary:
            return None
        message = Message(
            getattr(self, "_role", "system"),
            SUMMARY_HEADER + window.state.summary,
            metadata={"ctxmgr": "summary"},
        )
        return [Injection(message, "head", "running summary", self.name)]


@hookimpl
def ctxmgr_register_strategies(register: Callable[[type[Any]], None]) -> None:
    """Register :class:`Summarize`."""
    register(Summarize)
