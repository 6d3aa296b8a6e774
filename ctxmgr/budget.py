"""The token budget: context window, output reserve and the compaction hysteresis."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Budget"]


@dataclass(frozen=True, slots=True)
class Budget:
    """Token budget of one manager. All numbers are tokens except the two fractions.

    Below ``trigger * effective_limit`` a fit is append-only (the previous context is a
    prefix of the new one, so provider prompt caches keep hitting); above it the context is
    compacted down to ``target * effective_limit``. The gap between the two is the
    hysteresis that keeps compactions rare. Defaults 0.8 / 0.6 follow the common
    "compact at ~80 %" practice of agent frameworks (e.g. LangChain's summarization
    middleware and Claude Code's auto-compact) with room for several turns after each
    compaction.

    Attributes:
        max_context_tokens: the model's context window.
        reserve_output_tokens: tokens kept free for the reply.
        trigger: fraction of the effective limit above which a fit compacts, in (0, 1].
        target: fraction of the effective limit a compaction aims for, in (0, trigger].
    """

    max_context_tokens: int
    reserve_output_tokens: int = 0
    trigger: float = 0.8
    target: float = 0.6

    def __post_init__(self) -> None:
        if self.max_context_tokens <= 0:
            raise ValueError("max_context_tokens must be positive")
        if not 0 <= self.reserve_output_tokens < self.max_context_tokens:
            raise ValueError("reserve_output_tokens must be in [0, max_context_tokens)")
        if not 0 < self.target <= self.trigger <= 1:
            raise ValueError("need 0 < target <= trigger <= 1")

    @property
    def effective_limit(self) -> int:
        """``max_context_tokens - reserve_output_tokens``: never exceeded."""
        return self.max_context_tokens - self.reserve_output_tokens

    @property
    def trigger_tokens(self) -> int:
        """Context size above which a fit compacts."""
        return int(self.effective_limit * self.trigger)

    @property
    def target_tokens(self) -> int:
        """Context size a compaction aims for."""
        return int(self.effective_limit * self.target)
