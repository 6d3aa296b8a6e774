"""The provider side of a conversation: tool definitions, calibration, reply reserve, overflow.

:class:`ProviderBoundary` is mixed into :class:`~ctxmgr.manager.ContextManager`. It turns
what the provider reports (usage, stop reasons, context-length errors) into the budget of
the next fit, kept per conversation in ``SessionState.extra["ctxmgr.provider"]``:

* ``calibration``: provider tokens per local token, learned by :meth:`record_usage`;
* ``samples``: the last ratios it is learned from;
* ``reserve``: the reply reserve, grown by :meth:`record_stop`;
* ``window``: a provider limit smaller than the configured window, adopted after an
  overflow.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ctxmgr.budget import Budget
from ctxmgr.errors import ContextOverflowError
from ctxmgr.messages import Message

if TYPE_CHECKING:
    from ctxmgr.config import CtxmgrConfig
    from ctxmgr.providers import ProviderProfile
    from ctxmgr.state import SessionState
    from ctxmgr.tokens import TokenCounter

__all__ = ["PROVIDER_STATE", "ProviderBoundary"]

logger = logging.getLogger("ctxmgr")

#: Key of the provider-side state (calibration, grown reserve) in ``SessionState.extra``.
PROVIDER_STATE = "ctxmgr.provider"
#: Stop reasons that mean the reply was cut for length (OpenAI ``finish_reason``,
#: Anthropic ``stop_reason``, Gemini ``finishReason``), compared lower-cased.
LENGTH_STOPS = frozenset({"length", "max_tokens", "model_context_window_exceeded"})
#: Calibration: ratios kept, samples needed to go below 1.0, clamp of one ratio, and the
#: smallest local count a ratio is learned from (tokens).
CALIBRATION_WINDOW = 8
CALIBRATION_AGREE_BELOW_ONE = 5
CALIBRATION_CLAMP = (0.5, 4.0)
CALIBRATION_MIN_TOKENS = 32


class ProviderBoundary:
    """Tool definitions, calibration, reply reserve and overflow recovery of one manager.

    A mixin of :class:`~ctxmgr.manager.ContextManager`, which sets the attributes below.
    """

    config: CtxmgrConfig
    state: SessionState
    counter: TokenCounter
    profile: ProviderProfile
    _base_budget: Budget
    _budget_cache: tuple[tuple[Any, ...], Budget] | None
    _tools_cache: dict[str, int]
    _force_reason: str | None
    _overflow_cap: int | None
    _notes: list[str]

    def _profile_slack(self) -> int:
        """Tokens the profile may add to a compacted context (a placeholder first user turn)."""
        if not self.profile.first_message_user:
            return 0
        from ctxmgr.providers import PLACEHOLDER_TEXT

        return self.counter.count_message(Message.user(PLACEHOLDER_TEXT))

    def _tools_tokens(self, tools: Sequence[Mapping[str, Any]]) -> int:
        """Tokens of tool definitions: each JSON-serialized and counted, cached per schema.

        No provider publishes an exact formula for definitions (OpenAI renders them in an
        internal format); the compact JSON text is a close, usually higher, estimate and
        the calibration from provider usage absorbs the difference.
        """
        total = 0
        cache = self._tools_cache
        for tool in tools:
            key = json.dumps(tool, sort_keys=True, separators=(",", ":"), default=str)
            n = cache.get(key)
            if n is None:
                n = cache[key] = self.counter.count_text(key)
            total += n
        return total

    def _provider_state(self) -> dict[str, Any]:
        return self.state.extra.setdefault(PROVIDER_STATE, {})  # type: ignore[no-any-return]

    @property
    def calibration(self) -> float:
        """Provider tokens per local token for this conversation (1.0: none learned).

        See :meth:`record_usage` for the rule.
        """
        data = self.state.extra.get(PROVIDER_STATE)
        return float(data.get("calibration", 1.0)) if data else 1.0

    @property
    def reserve_tokens(self) -> int:
        """Tokens kept free for the reply (the configured reserve, grown by :meth:`record_stop`)."""
        data = self.state.extra.get(PROVIDER_STATE)
        if data and "reserve" in data:
            return int(data["reserve"])
        return self._base_budget.reserve_output_tokens

    def _active_budget(self, tools_tokens: int) -> Budget:
        """The budget of this fit, in local tokens.

        ``effective_limit = floor((window - reply reserve) / calibration) - tools_tokens``,
        further capped once after a provider overflow; ``max_context_tokens`` stays the
        configured window and ``reserve_output_tokens`` is everything held back.

        Raises:
            ContextOverflowError: the tool definitions alone leave no room.
        """
        base = self._base_budget
        data = self.state.extra.get(PROVIDER_STATE)
        if not tools_tokens and not data and self._overflow_cap is None:
            return base
        data = data or {}
        factor = float(data.get("calibration", 1.0))
        reserve = int(data.get("reserve", base.reserve_output_tokens))
        window = min(base.max_context_tokens, int(data.get("window") or base.max_context_tokens))
        key = (tools_tokens, factor, reserve, window, self._overflow_cap)
        cached = self._budget_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        limit = int((window - reserve) / factor) - tools_tokens
        if self._overflow_cap is not None:
            limit = min(limit, self._overflow_cap)
        if limit <= 0:
            raise ContextOverflowError(
                projected_tokens=tools_tokens,
                max_context_tokens=base.max_context_tokens,
                effective_limit=int((window - reserve) / factor),
                contributors=[("tool definitions", tools_tokens)],
            )
        budget = Budget(
            base.max_context_tokens, base.max_context_tokens - limit, base.trigger, base.target
        )
        self._budget_cache = (key, budget)
        return budget

    def record_usage(self, *, input_tokens: int, local_tokens: int | None = None) -> float:
        """Learn the provider's count of the request just sent; return the new calibration.

        The rule (conservative: a budget that is too small costs a little context, one
        that is too large costs a refused request):

        1. the sample is ``input_tokens / local_tokens``, clamped to [0.5, 4.0]
           (``CALIBRATION_CLAMP``; a larger ratio means usage summed over several calls);
           local counts under 32 tokens teach nothing;
        2. the last 8 samples are kept (``CALIBRATION_WINDOW``), in the session state;
        3. the factor is the largest kept sample, never below 1.0, unless the last 5
           samples all lie below 1.0 (the local tokenizer over-counts consistently): then
           it is the largest of those 5.

        From the next fit on, the budget is kept in provider tokens: local counts are
        scaled by the factor (``effective_limit = (window - reserve) / factor - tools``).

        Args:
            input_tokens: prompt (input) tokens the provider reported for the request
                (OpenAI ``usage.prompt_tokens``, Anthropic ``usage.input_tokens`` plus cache
                reads and writes, Gemini ``usageMetadata.promptTokenCount``).
            local_tokens: ctxmgr's count of that request; default the last fit's
                ``tokens_after + tools_tokens``.

        Returns:
            The calibration factor now in force (provider tokens per local token).
        """
        if local_tokens is None:
            last = self.state.last_fit or {}
            local_tokens = int(last.get("tokens_after", 0)) + int(last.get("tools_tokens", 0))
        if input_tokens <= 0 or local_tokens < CALIBRATION_MIN_TOKENS:
            return self.calibration
        return self._learn(input_tokens / local_tokens)

    def _learn(self, ratio: float) -> float:
        lo, hi = CALIBRATION_CLAMP
        if ratio > hi:
            logger.warning(
                "provider usage is %.1fx the local count; clamped to %.1f "
                "(pass the usage of one request, not a running total)",
                ratio,
                hi,
            )
        ratio = min(hi, max(lo, ratio))
        data = self._provider_state()
        samples = [float(x) for x in data.get("samples", [])]
        samples.append(round(ratio, 4))
        samples = samples[-CALIBRATION_WINDOW:]
        data["samples"] = samples
        recent = samples[-CALIBRATION_AGREE_BELOW_ONE:]
        if len(recent) == CALIBRATION_AGREE_BELOW_ONE and max(recent) < 1.0:
            factor = max(recent)
        else:
            factor = max(1.0, max(samples))
        old = float(data.get("calibration", 1.0))
        data["calibration"] = factor
        if abs(factor - old) > 1e-9:
            self._notes.append(
                f"calibration {old:.3f} -> {factor:.3f} from provider usage "
                f"({len(samples)} samples)"
            )
        return factor

    def record_stop(self, reason: str | None) -> None:
        """Record the provider's stop reason for the reply to the last fit.

        A reply cut for length (``"length"``, ``"max_tokens"``,
        ``"model_context_window_exceeded"``, any case) grows the reply reserve by
        ``reserve_growth`` (from at least 256 tokens, capped at half the context window)
        for the following fits, kept in the session state; the next FitReport says so in
        ``notes`` and shows ``reserve_tokens``. Other reasons are ignored.
        """
        if not reason or str(reason).lower() not in LENGTH_STOPS:
            return
        old = self.reserve_tokens
        growth = self.config.reserve_growth
        window = self._base_budget.max_context_tokens
        new = old
        if growth > 1.0:
            new = max(old, min(math.ceil(max(old, 256) * growth), window // 2))
        self._provider_state()["reserve"] = new
        self._notes.append(f"reply cut for length ({reason}): reply reserve {old} -> {new} tokens")

    def _prepare_overflow(
        self, provider_tokens: int | None, provider_limit: int | None, message: str
    ) -> None:
        last = self.state.last_fit or {}
        local = int(last.get("tokens_after", 0)) + int(last.get("tools_tokens", 0))
        if provider_limit and provider_limit < self._base_budget.max_context_tokens:
            self._provider_state()["window"] = int(provider_limit)
            self._notes.append(f"provider limit {provider_limit} tokens adopted as the window")
        if provider_tokens and local >= CALIBRATION_MIN_TOKENS:
            self._learn(provider_tokens / local)
        else:
            self._learn(self.calibration / 0.8)
        scale = 0.8
        if provider_tokens and provider_limit:
            scale = min(0.95, 0.95 * provider_limit / provider_tokens)
        size = int(last.get("tokens_after", 0))
        if size > 0:
            self._overflow_cap = max(1, int(size * scale))
        self._force_reason = message or "context length exceeded"
