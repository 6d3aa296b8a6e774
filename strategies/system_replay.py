"""``system_replay``: re-insert the system prompt near the end every N turns."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import Field

from ctxmgr.hookspecs import hookimpl
from ctxmgr.messages import Message
from ctxmgr.strategy import Strategy, StrategyOptions
from ctxmgr.window import Window

__all__ = ["SystemReplay"]


class SystemReplayOptions(StrategyOptions):
    """Options of :class:`SystemReplay`.

    Attributes:
        every: replay after this many turns (fits) since the last replay.
        short_form: text to replay instead of the full system prompt.
        prefix: text put before the replayed prompt.
        role: role of the replay message; ``"auto"`` (default) takes the provider
            profile's injection role (``user`` for Anthropic and Gemini).
    """

    every: int = Field(default=12, ge=1)
    short_form: str | None = None
    prefix: str = "Reminder of your instructions:\n"
    role: Literal["auto", "system", "user"] = "auto"


class SystemReplay(Strategy):
    """Appends the system prompt (or a short form) at the end of the context every N turns.

    Long runs drift away from instructions given once at the top ("lost in the middle",
    Liu et al. 2023, arXiv:2307.03172). The replay is *appended*, so the context still
    extends the previous one and provider prompt caches keep hitting. A turn is one fit
    (one model call). The replay is a message of the configured role with metadata
    ``{"ctxmgr": "system_replay"}``; old replays are dropped at the next compaction.
    """

    name = "system_replay"
    summary = "re-inserts the system prompt (or a short form) near the end every N turns"
    Options = SystemReplayOptions
    options: SystemReplayOptions

    def bind(self, manager: Any) -> None:
        """Resolve ``role = "auto"`` from the manager's provider profile."""
        role = self.options.role
        self._role = manager.profile.injection_role if role == "auto" else role

    @hookimpl
    def ctxmgr_append(self, window: Window) -> Sequence[Message] | None:
        """Return the replay message when ``every`` turns have passed."""
        data = window.state.extra.setdefault(self.name, {"last": 0, "count": 0})
        if window.turn - int(data["last"]) < self.options.every:
            return None
        if not window.segments or window.segments[0].role != "system":
            return None
        text = self.options.short_form or window.segments[0].head.text
        data["last"] = window.turn
        data["count"] = int(data["count"]) + 1
        return [
            Message(
                getattr(self, "_role", "system"),
                self.options.prefix + text,
                id=f"ctxmgr-replay-{window.turn}",
                metadata={"ctxmgr": "system_replay"},
            )
        ]


@hookimpl
def ctxmgr_register_strategies(register: Callable[[type[Any]], None]) -> None:
    """Register :class:`SystemReplay`."""
    register(SystemReplay)
