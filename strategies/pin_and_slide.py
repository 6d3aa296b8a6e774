"""``pin_and_slide``: pin the system prompt, the first task and pinned messages; FIFO the rest."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import Field

from ctxmgr.hookspecs import hookimpl
from ctxmgr.strategy import Strategy, StrategyOptions
from ctxmgr.window import Window

__all__ = ["PinAndSlide"]


class PinAndSlideOptions(StrategyOptions):
    """Options of :class:`PinAndSlide`.

    Attributes:
        pin_first_user: pin the first user message (the task), so a long agent loop never
            forgets what it was asked to do.
        pin_first_user_max_tokens: do not pin a first user message larger than this.
    """

    pin_first_user: bool = True
    pin_first_user_max_tokens: int = Field(default=4000, gt=0)


class PinAndSlide(Strategy):
    """Pins and a sliding window: the newest unpinned segments are kept first (FIFO eviction).

    The core already protects the leading system prompt, messages with ``pinned=True``,
    the latest user message and the newest segment; this strategy adds the first user
    message (the task) and scores every candidate by recency, ``i / (n - 1)``, so that
    with no other scorer the oldest are evicted first.
    """

    name = "pin_and_slide"
    summary = "pins system prompt, first task and pinned messages; FIFO over the rest"
    Options = PinAndSlideOptions
    options: PinAndSlideOptions

    @hookimpl
    def ctxmgr_pin(self, window: Window) -> Mapping[int, str] | None:
        """Pin the first user message (the task)."""
        if not self.options.pin_first_user:
            return None
        for i, seg in enumerate(window.segments):
            if seg.role == "user":
                if seg.tokens <= self.options.pin_first_user_max_tokens:
                    return {i: "first user task"}
                return None
        return None

    @hookimpl
    def ctxmgr_score(self, window: Window) -> Sequence[float] | None:
        """Recency in [0, 1]: 0 for the oldest candidate, 1 for the newest."""
        n = len(window.segments)
        scale = 1.0 / max(1, n - 1)
        return [i * scale for i in range(n)]


@hookimpl
def ctxmgr_register_strategies(register: Callable[[type[Any]], None]) -> None:
    """Register :class:`PinAndSlide`."""
    register(PinAndSlide)
