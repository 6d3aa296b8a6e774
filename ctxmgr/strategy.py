"""Base class for strategies: a config name, typed options, and hook implementations."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

__all__ = ["Strategy", "StrategyOptions"]


class StrategyOptions(BaseModel):
    """Options of a strategy; subclasses declare fields. Unknown options are errors.

    Validation is strict: a boolean is not a number and a string is not an int.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Strategy:
    """A context-management strategy: a set of ``ctxmgr_*`` hook implementations.

    Subclasses set :attr:`name` (the snake_case config name), :attr:`Options` (a
    :class:`StrategyOptions` subclass) and implement hooks from
    :mod:`ctxmgr.hookspecs` decorated with :data:`ctxmgr.hookspecs.hookimpl`. One
    instance lives in one :class:`~ctxmgr.manager.ContextManager`; per-conversation data
    belongs in ``window.state`` (so it is saved with the session), not on the instance.

    Args:
        options: validated options.
        weight: multiplier for this strategy's ``ctxmgr_score`` results.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Options: ClassVar[type[StrategyOptions]] = StrategyOptions

    def __init__(self, options: StrategyOptions | None = None, *, weight: float = 1.0):
        self.options = options if options is not None else self.Options()
        self.weight = weight

    def bind(self, manager: Any) -> None:
        """Called once by the manager that owns this instance (counter, summarizer...)."""

    def adopt(self, other: Strategy) -> None:
        """Take over caches from ``other`` (same type and options) when a manager is cloned.

        Only caches that are safe to share (keyed by message content) may be shared;
        per-conversation decisions must be copied, not shared. Default: nothing.
        """

    def snapshot(self) -> Any:
        """Return what :meth:`restore` needs to undo this fit's changes to the instance.

        Called at the start of every fit, so it must be cheap (O(1), never a copy of the
        history). Only state kept on the instance matters; ``window.state`` is rolled
        back by the manager. Stateless strategies keep the default (``None``).
        """
        return None

    def restore(self, snapshot: Any) -> None:
        """Undo the changes since :meth:`snapshot` returned ``snapshot``: the fit failed.

        A fit that raises or is cancelled is rolled back, so a retry gives what an
        uninterrupted manager would. Caches keyed by content may stay; caches keyed by
        history positions must be dropped or restored. Default: nothing.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options!r}, weight={self.weight})"
