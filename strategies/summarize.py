"""``summarize``: fold evicted segments into a running summary; a failing summarizer falls back."""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from pydantic import Field

from ctxmgr.errors import ConfigError
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
        timeout_s: seconds a summarizer call may take before the extractive summary is
            used instead (``None``: wait as long as it takes). A synchronous summarizer
            runs in a worker thread for the timeout; the thread is abandoned, not killed,
            when it times out.
    """

    max_summary_tokens: int = Field(default=512, gt=0)
    max_summary_fraction: float = Field(default=0.15, gt=0, le=0.5)
    summarizer: str = "extractive"
    role: Literal["auto", "system", "user"] = "auto"
    timeout_s: float | None = Field(default=None, gt=0)


# a summary longer than this many characters per token of its budget is cut by characters
# before it is counted (no cl100k/o200k token is longer than this in practice)
_MAX_CHARS_PER_TOKEN = 32


def _call_with_timeout(call: Callable[[], object], timeout: float) -> object:
    """Run ``call`` in a daemon worker thread; raise TimeoutError after ``timeout`` seconds."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=work, name="ctxmgr-summarizer", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TimeoutError(f"summarizer did not return within {timeout} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _load(spec: str) -> Any:
    """Import ``"module:attribute"``; build it when it is a class or a factory.

    Raises:
        ConfigError: malformed spec, missing module or attribute (naming the key).
    """
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ConfigError(f"expected 'module:attribute', got {spec!r}", key="summarize.summarizer")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load {spec!r}: {exc}", key="summarize.summarizer") from None
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

    def _apply(
        self, window: Window, evicted: Sequence[Segment], text: object, failure: str | None
    ) -> None:
        data = self._data(window)
        messages = [m for seg in evicted for m in seg.messages]
        if failure is None and not isinstance(text, str):
            failure = f"summarizer returned {type(text).__name__}, not str"
        if failure is None and isinstance(text, str) and not text.strip():
            failure = "summarizer returned an empty summary"
        if failure is not None or not isinstance(text, str):
            logger.warning("summarizer failed, falling back to extractive: %s", failure)
            data["failures"] += 1
            window.scratch["summary_fallback"] = failure
            text = self._fallback.summarize(window.state.summary, messages, max_tokens=self._limit)
        # a huge summary is cut by characters first: counting it whole would cost more
        # than the cut (tiktoken on millions of characters takes seconds)
        if len(text) > self._limit * _MAX_CHARS_PER_TOKEN or (
            window.counter.count_text(text) > self._limit
        ):
            text = self._fallback._fit(text.splitlines(), self._limit)
        window.state.summary = text
        covers = window.state.summary_covers
        seen = window.state.covered()  # one set per session, shared with the manager
        for m in messages:
            if m.id not in seen:
                seen.add(m.id)
                covers.append(m.id)

    @hookimpl
    def ctxmgr_compact(
        self, window: Window, evicted: Sequence[Segment], use_async: bool
    ) -> Awaitable[None] | None:
        """Fold ``evicted`` into the running summary (awaitable in ``afit``).

        A summarizer that raises, returns something other than a non-empty string, or
        exceeds ``timeout_s`` is replaced by the extractive summary for this compaction;
        the failure is logged, counted in ``state.extra["summarize"]["failures"]`` and
        named in the fit report's ``summarized`` reasons.
        """
        messages = [m for seg in evicted for m in seg.messages]
        data = self._data(window)
        data["calls"] += 1
        previous = window.state.summary
        summarizer = self._summarizer
        timeout = self.options.timeout_s
        limit = self._limit
        if use_async and hasattr(summarizer, "asummarize"):

            async def run() -> None:
                failure = None
                text: object = None
                try:
                    call = summarizer.asummarize(previous, messages, max_tokens=limit)
                    text = await asyncio.wait_for(call, timeout)
                except asyncio.TimeoutError:
                    failure = f"summarizer timed out after {timeout} s"
                except Exception as exc:
                    failure = f"summarizer raised {exc!r}"
                self._apply(window, evicted, text, failure)

            return run()

        def call() -> object:
            if hasattr(summarizer, "summarize"):
                return summarizer.summarize(previous, messages, max_tokens=limit)
            if hasattr(summarizer, "asummarize"):
                from ctxmgr.manager import run_coroutine_sync

                async def bounded() -> object:
                    call = summarizer.asummarize(previous, messages, max_tokens=limit)
                    return await asyncio.wait_for(call, timeout)

                return run_coroutine_sync(bounded())
            return summarizer(previous, messages, max_tokens=limit)

        failure = None
        text: object = None
        try:
            text = call() if timeout is None else _call_with_timeout(call, timeout)
        except (TimeoutError, asyncio.TimeoutError):
            failure = f"summarizer timed out after {timeout} s"
        except Exception as exc:
            failure = f"summarizer raised {exc!r}"
        self._apply(window, evicted, text, failure)
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
