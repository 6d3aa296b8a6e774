"""The ContextManager: fits a growing message history into a token budget.

One manager serves one conversation (use :meth:`ContextManager.fork` per thread or
session). Each :meth:`~ContextManager.fit` receives the *full* history so far, oldest
first, as frameworks pass it, and returns the context to send plus a
:class:`~ctxmgr.report.FitReport`.

Data flow of one fit::

    new messages -> segment (tool-pair-safe) -> measure (cached) -> observe hooks
      under trigger: append-only (previous context is a prefix of the new one)
      otherwise: pin -> reserve -> shrink -> score -> evict to target -> compact -> inject
      -> validate (budget, pairs) -> FitReport

The append-only path costs O(new messages): the previous input is recognised by its
length and the identity of its first and last messages (a value comparison of the whole
prefix when the objects differ; a full refit when the history was edited), and only new
messages are segmented, counted and shown to strategies. A cold fit (a fresh manager
given a long history) counts from the newest message backward only what the window can
use (twice the effective limit); older segments are archived and summarized unread, and
``FitReport.tokens_before_estimated`` says ``tokens_before`` holds estimates.
"""

from __future__ import annotations

import asyncio
import bisect
import copy
import logging
import time
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from typing import Any, cast

from ctxmgr.boundary import PROVIDER_STATE, ProviderBoundary
from ctxmgr.budget import Budget
from ctxmgr.config import CtxmgrConfig, load_config, validate_strategies
from ctxmgr.errors import (
    AgentLoopError,
    ConfigError,
    ContextOverflowError,
    CtxmgrError,
    InvalidHistoryError,
    StrategyError,
)
from ctxmgr.messages import Message
from ctxmgr.models import context_window
from ctxmgr.plugins import get_strategy_types, new_plugin_manager
from ctxmgr.providers import Normalizer, get_profile
from ctxmgr.report import FitReport, FitResult, SegmentRecord, record
from ctxmgr.segments import Segment, Segmenter
from ctxmgr.state import SessionState
from ctxmgr.strategy import Strategy
from ctxmgr.tokens import TiktokenCounter, TokenCounter, get_counter
from ctxmgr.window import Injection, Window

__all__ = ["ContextManager"]

logger = logging.getLogger("ctxmgr")


def _default_reserve(max_context_tokens: int) -> int:
    return min(4096, max_context_tokens // 10)


class ContextManager(ProviderBoundary):
    """Keeps one conversation's context inside a token budget.

    Build it with :meth:`from_config`. Not thread-safe: use one manager per
    conversation (:meth:`fork`).

    Args:
        config: a validated :class:`~ctxmgr.config.CtxmgrConfig`.
        counter: token counter, ``"tiktoken"`` / ``"approx"``, or a callable; default
            from ``config.tokenizer`` and ``config.model``.
        summarizer: a :class:`~ctxmgr.summarizers.Summarizer` or
            :class:`~ctxmgr.summarizers.AsyncSummarizer` used by the ``summarize``
            strategy (default: the offline extractive summarizer).
        on_report: called with every :class:`~ctxmgr.report.FitReport`.

    Raises:
        ConfigError: no ``max_context_tokens`` and an unknown ``model``, or bad strategies.
    """

    def __init__(
        self,
        config: CtxmgrConfig,
        *,
        counter: TokenCounter | str | Callable[..., int] | None = None,
        summarizer: Any = None,
        on_report: Callable[[FitReport], None] | None = None,
    ):
        self.config = config
        max_tokens = config.max_context_tokens
        if max_tokens is None:
            if not config.model:
                raise ConfigError(
                    "set max_context_tokens (or a known model) to size the context window",
                    key="max_context_tokens",
                )
            max_tokens = context_window(config.model, overrides=config.context_windows)
        reserve = config.reserve_output_tokens
        if reserve is None:
            reserve = _default_reserve(max_tokens)
        if reserve >= max_tokens:
            raise ConfigError(
                f"reserve_output_tokens ({reserve}) must be below "
                f"max_context_tokens ({max_tokens})",
                key="reserve_output_tokens",
            )
        self.budget = Budget(max_tokens, reserve, config.trigger, config.target)
        self._base_budget = self.budget
        self._budget_cache: tuple[tuple[Any, ...], Budget] | None = None
        self.profile = get_profile(config.provider, config.model)
        self._identity = self.profile.is_identity
        self._tools_cache: dict[str, int] = {}
        self._force_reason: str | None = None
        self._overflow_cap: int | None = None
        self._notes: list[str] = []
        self.counter: TokenCounter = get_counter(
            counter if counter is not None else config.tokenizer, model=config.model
        )
        self.summarizer = summarizer
        self.on_report = on_report
        self.strategies: list[Strategy] = self._build_strategies()
        self._pm = new_plugin_manager()
        # pluggy calls implementations LIFO: register in reverse so calls follow config order
        for i, strategy in reversed(list(enumerate(self.strategies))):
            self._pm.register(strategy, name=f"{i}:{strategy.name}")
        self._pm.check_pending()
        policy = config.history_policy
        for strategy in self.strategies:
            override = getattr(strategy.options, "policy", None)
            if strategy.name == "tool_pair_safe" and override:
                policy = override
        self.history_policy = policy
        for strategy in self.strategies:
            strategy.bind(self)
        # strategies with instance state to snapshot at every fit (see _begin)
        self._stateful = [s for s in self.strategies if type(s).snapshot is not Strategy.snapshot]
        self.state = SessionState()
        self._reset_incremental()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(
        cls,
        source: Any = "agent",
        *,
        counter: TokenCounter | str | Callable[..., int] | None = None,
        summarizer: Any = None,
        on_report: Callable[[FitReport], None] | None = None,
        store: Any = None,
        conversation_id: str | None = None,
        **overrides: Any,
    ) -> ContextManager:
        """Build a manager from a preset name, a config file path, a mapping or a config.

        Args:
            source: ``"fifo"``, ``"relevance"``, ``"summary"``, ``"agent"``, a ``.toml`` /
                ``.yaml`` / ``.json`` path, a dict, or a :class:`CtxmgrConfig`.
            counter: see the class docstring.
            summarizer: see the class docstring.
            on_report: see the class docstring.
            store: keep the session state in a store: a URL (``"sqlite:///s.db"``,
                ``"redis://..."``, ``"postgresql://..."``, ``"memory://"``) or a
                :class:`~ctxmgr.stores.SessionStore`. Returns a
                :class:`~ctxmgr.stores.session.StoredContextManager` that loads before and
                saves after every fit (compare-and-swap; see ``docs/stores.md``).
            conversation_id: the conversation's key in ``store`` (default ``"default"``).
            **overrides: top-level config keys (``max_context_tokens=8000``...).

        Raises:
            ConfigError: the config is invalid (naming the key and the allowed values).
        """
        if store is not None:
            from ctxmgr.stores.session import StoredContextManager

            return StoredContextManager(
                load_config(source, **overrides),
                store=store,
                conversation_id=conversation_id or "default",
                counter=counter,
                summarizer=summarizer,
                on_report=on_report,
            )
        return cls(
            load_config(source, **overrides),
            counter=counter,
            summarizer=summarizer,
            on_report=on_report,
        )

    def _build_strategies(self) -> list[Strategy]:
        types = get_strategy_types()
        options = validate_strategies(self.config)
        out = []
        for entry, opts in zip(self.config.strategies, options):
            out.append(types[entry.name](opts, weight=entry.weight))
        return out

    def fork(self) -> ContextManager:
        """Return a manager with the same config, counter and summarizer and a fresh state.

        Use one per thread, session or conversation. The token counter (and its cache)
        is shared.
        """
        return type(self)(
            self.config, counter=self.counter, summarizer=self.summarizer, on_report=self.on_report
        )

    def clone(self) -> ContextManager:
        """Return an independent copy including the current state (for what-if fits)."""
        other = self.fork()
        other.state = copy.deepcopy(self.state)
        for mine, theirs in zip(self.strategies, other.strategies):
            theirs.adopt(mine)
        for name in (
            "_history",
            "_segments",
            "_shrunk",
            "_selected",
            "_output",
            "_segmenter",
        ):
            setattr(other, name, copy.copy(getattr(self, name)))
        other._segmenter = copy.deepcopy(self._segmenter)
        other._shrunk = dict(self._shrunk)
        other._unread = set(self._unread)
        other._estimated = set(self._estimated)
        for name in (
            "_output_tokens",
            "_last_user",
            "_history_total",
            "_history_counted",
        ):
            setattr(other, name, getattr(self, name))
        return other

    @property
    def scratchpad(self) -> Any:
        """The scratchpad note API, or ``None`` when the ``scratchpad`` strategy is off."""
        for strategy in self.strategies:
            if strategy.name == "scratchpad":
                return strategy.api(self)  # type: ignore[attr-defined]
        return None

    def load_state(self, data: Mapping[str, Any]) -> None:
        """Replace the session state by :meth:`SessionState.to_dict` output.

        The whole input is validated before anything is replaced. The incremental caches
        are reset: the next fit re-reads the whole history once.

        Raises:
            InvalidStateError: ``data`` is malformed (naming the key path); the manager
                is unchanged.
        """
        self.state = SessionState.from_dict(data)
        self._reset_incremental()

    def reset(self) -> None:
        """Forget everything: fresh state and caches."""
        self.state = SessionState()
        self._reset_incremental()

    def _reset_incremental(self) -> None:
        self._history: list[Message] = []
        self._segmenter = Segmenter(self.history_policy)
        self._segments: list[Segment] = []
        self._shrunk: dict[int, Segment] = {}
        self._selected: list[int] = []  # positions of committed segments in the output
        self._output: list[Message] = []
        self._output_tokens = 0  # tokens of _output, without reply priming
        self._last_user: int | None = None
        # history positions of user segments, scanned incrementally (see _user_positions)
        self._users: tuple[list[Segment] | None, int, Segment | None, list[int]] = (
            None,
            0,
            None,
            [],
        )
        self._history_total = 0
        self._history_counted = 0
        self._norm: Normalizer | None = None
        self._norm_src: list[Message] | None = None
        # (output list, block position, message before it, normalizer fed up to it)
        self._block_norm: tuple[list[Message], int, Message | None, Normalizer] | None = None
        # a window snapshot from a store, restored at the next fit (ctxmgr.stores.snapshot)
        self._resume: Mapping[str, Any] | None = None
        # cold fit from the tail (see _cold_tail): positions left out of the candidates,
        # and those of them whose tokens are an estimate rather than a count
        self._unread: set[int] = set()
        self._estimated: set[int] = set()
        self._owned: dict[str, Any] = {}  # attributes this fit copied (see _own)

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        messages: Sequence[Message],
        *,
        query: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> FitResult:
        """Fit the history into the budget.

        The output obeys the provider profile's wire rules (``self.profile``, from the
        ``provider`` config key): its ``normalize`` is the last step, and the budget
        check counts the normalized messages.

        Args:
            messages: the full history so far, oldest first (not mutated). Passing the
                previous history plus new messages takes the incremental path.
            query: text to rank relevance against (default: the latest user message).
            tools: the tool definitions sent with this request (OpenAI function-tool dicts
                or any JSON-able mappings, not mutated). Their tokens (each definition
                JSON-serialized and counted with the counter, cached per schema) are
                subtracted from the effective limit for this fit
                (``FitReport.tools_tokens``).

        A fit is transactional: if it raises (any error) the manager (caches, state,
        archive, summary, notes, turn, strategy state) is left exactly as before the
        call, so a retry gives what an uninterrupted manager would. The one exception is
        :class:`~ctxmgr.errors.AgentLoopError` (``loop_guard``), raised after the fit
        committed with the fitted result in ``error.result``.

        Returns:
            ``FitResult(messages, report)``; kept messages are the same objects as given.

        Raises:
            ContextOverflowError: pinned and protected content alone exceeds the
                effective limit.
            InvalidHistoryError: a malformed history under ``history_policy = "strict"``.
            StrategyError: a strategy failed.
        """
        undo = self._begin()
        gen = self._fit(messages, query, use_async=False, tools=tools)
        try:
            awaitable = next(gen)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        except AgentLoopError:  # raised after the fit committed: nothing to undo
            raise
        except BaseException:
            self._rollback(undo)
            raise
        gen.close()
        self._rollback(undo)
        if hasattr(awaitable, "close"):
            awaitable.close()
        raise StrategyError("returned an awaitable from a synchronous fit", strategy="?")

    async def afit(
        self,
        messages: Sequence[Message],
        *,
        query: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> FitResult:
        """Async :meth:`fit`: awaits async summarizers instead of blocking.

        Cancelling the task at any await leaves the manager as it was before the call
        (see :meth:`fit`).
        """
        undo = self._begin()
        gen = self._fit(messages, query, use_async=True, tools=tools)
        try:
            awaitable = next(gen)
            while True:
                await awaitable
                awaitable = gen.send(None)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        except AgentLoopError:  # raised after the fit committed: nothing to undo
            raise
        except BaseException:  # CancelledError included: a cancelled fit is rolled back
            gen.close()
            self._rollback(undo)
            raise

    # ------------------------------------------------------------------ transactions
    def _begin(self) -> tuple[Any, ...]:
        """Record what a fit may change, so a failed or cancelled fit can be undone.

        Cheap (the append path stays O(new messages)): the lists a fit changes only grow
        or are replaced, so their objects and lengths are kept; ``_shrunk`` is copied on
        write in :meth:`_compact`; the state keeps its own checkpoint; each strategy
        snapshots its instance state. A new field a fit mutates must be added here.
        """
        self._owned = {}  # _own copies a kept list or set before its first change
        return (
            self.state,
            self.state.checkpoint(),
            self._history,
            len(self._history),
            self._segments,
            len(self._segments),
            self._selected,
            len(self._selected),
            self._output,
            len(self._output),
            self._segmenter,
            self._segmenter.mark(),
            self._shrunk,
            self._output_tokens,
            self._last_user,
            self._history_total,
            self._history_counted,
            [(strategy, strategy.snapshot()) for strategy in self._stateful],
            self._resume,
            self._unread,  # replaced, never mutated in place
            self._estimated,
            self.budget,
            self._notes[:],
        )

    def _rollback(self, undo: tuple[Any, ...]) -> None:
        """Restore the manager exactly as :meth:`_begin` found it (a fit raised)."""
        (
            self.state,
            checkpoint,
            self._history,
            n_history,
            self._segments,
            n_segments,
            self._selected,
            n_selected,
            self._output,
            n_output,
            self._segmenter,
            mark,
            self._shrunk,
            self._output_tokens,
            self._last_user,
            self._history_total,
            self._history_counted,
            snapshots,
            self._resume,
            self._unread,
            self._estimated,
            self.budget,
            notes,
        ) = undo
        self._notes[:] = notes  # provider notes not yet reported go to the retry's report
        self.state.rollback(checkpoint)
        del self._history[n_history:]
        del self._segments[n_segments:]
        del self._selected[n_selected:]
        del self._output[n_output:]
        self._segmenter.rollback(mark)
        self._norm = None  # the provider normalizer re-reads the restored output
        self._norm_src = None
        for strategy, snapshot in snapshots:
            strategy.restore(snapshot)

    def _ingest(self, messages: Sequence[Message]) -> tuple[int, list[Segment]]:
        """Feed new messages; return (index of first new segment, new segments)."""
        if self._resume is not None:
            from ctxmgr.stores.snapshot import resume_window

            snapshot, self._resume = self._resume, None
            resume_window(self, snapshot, messages)
        n_prev = len(self._history)
        if n_prev and not self._extends(messages, n_prev):
            logger.debug("history is not an extension of the previous one: full refit")
            state = self.state
            self._reset_incremental()
            self.state = state
            n_prev = 0
        elif n_prev and any(
            messages[i] is not self._history[i] for i in (0, n_prev // 2, n_prev - 1)
        ):
            prefix = messages[:n_prev]
            # equal but rebuilt messages: send the caller's objects
            self._adopt(prefix if isinstance(prefix, list) else list(prefix))
        new_msgs = list(messages[n_prev:])
        for offset, msg in enumerate(new_msgs):  # O(new): older ones were checked before
            if not isinstance(msg, Message):
                raise _not_a_message(msg, n_prev + offset)
        self._history.extend(new_msgs)
        n_repairs = len(self._segmenter.repairs)
        new_segs = self._segmenter.feed(new_msgs)
        for repair in self._segmenter.repairs[n_repairs:]:
            if repair.action in ("archived", "dropped_duplicate_call"):  # originals kept
                self.state.archive.add(repair.message, repair.problem, self.state.turn)
        start = len(self._segments)
        count = self.counter.count_message
        measured = []
        tail = self._cold_tail(new_segs) if start == 0 else 0
        unread: set[int] = set()
        estimated: set[int] = set()
        first_user = next((i for i, seg in enumerate(new_segs) if seg.role == "user"), -1)
        for offset, seg in enumerate(new_segs):
            # the first user message (the task) stays a candidate, as pins expect
            estimate = (
                _estimate(seg, self.counter) if offset < tail and offset != first_user else None
            )
            if estimate is not None:
                tokens, exact = estimate
                unread.add(start + offset)
                if not exact:
                    estimated.add(start + offset)
            else:
                tokens = sum(count(m) for m in seg.messages)
            measured.append(Segment(seg.messages, seg.start, tokens))
            if seg.role == "user":
                self._last_user = start + offset
        self._segments.extend(measured)
        if unread:  # sets are replaced, not mutated, so a failed fit rolls back
            self._unread = self._unread | unread
            self._estimated = self._estimated | estimated
        if self._last_user in self._unread:  # core-pinned: always a candidate
            measured[self._last_user - start] = self._exact(self._last_user)
        return start, measured

    def _cold_tail(self, segments: Sequence[Segment]) -> int:
        """Index of the oldest of ``segments`` counted exactly on a cold fit.

        A fresh manager given a long history counts from the newest segment backward until
        twice the effective limit is covered; older segments cannot all be kept, so they
        get an estimate (:func:`_estimate`) instead of being tokenized. They are evicted
        unread unless pinned, recalled or the question of a kept answer, which counts them
        exactly (:meth:`_exact`); system messages, pinned messages and the first user
        message (the task) are always counted and stay candidates.
        """
        if len(segments) < 64 or not isinstance(self.counter, TiktokenCounter):
            return 0
        cap = 2 * self.budget.effective_limit
        count = self.counter.count_message
        total = 0
        for index in range(len(segments) - 1, -1, -1):
            total += sum(count(m) for m in segments[index].messages)
            if total > cap:
                return index
        return 0

    def _exact(self, pos: int) -> Segment:
        """Make segment ``pos`` a candidate again, with its exact token count."""
        seg = self._segments[pos]
        if pos in self._unread:  # copy on write (see _begin): on recall or pinning
            self._own("_unread").discard(pos)
        if pos in self._estimated:
            self._own("_estimated").discard(pos)
            tokens = sum(self.counter.count_message(m) for m in seg.messages)
            if pos < self._history_counted:
                self._history_total += tokens - seg.tokens
            seg = Segment(seg.messages, seg.start, tokens)
            self._own("_segments")[pos] = seg
        return seg

    def _own(self, name: str) -> Any:
        """This fit's own copy of the list or set attribute ``name``, to change in place.

        :meth:`_begin` keeps the objects, so the first change of a fit copies (O(size),
        C-level) and later ones in the same fit reuse that copy: recalling k unread
        segments costs O(history + k), not O(history x k).
        """
        value = getattr(self, name)
        if self._owned.get(name) is not value:
            value = copy.copy(value)
            setattr(self, name, value)
            self._owned[name] = value
        return value

    def _adopt(self, given: list[Message]) -> None:
        """Use the caller's message objects where they equal (not are) the ones held.

        Kept messages are the objects passed on *this* call, so an adapter that rebuilds
        equal messages (with fresh metadata) gets its own back. O(history); only runs
        when the first, middle or last message of the prefix is a new object. New lists
        are built (never mutated in place) so a failed fit still rolls back.
        """
        swap = {id(old): new for old, new in zip(self._history, given) if old is not new}

        def conv(seg: Segment) -> Segment:
            return Segment(tuple(swap.get(id(m), m) for m in seg.messages), seg.start, seg.tokens)

        self._history = list(given)
        self._segments = [conv(seg) for seg in self._segments]
        self._shrunk = {pos: conv(seg) for pos, seg in self._shrunk.items()}
        self._output = [swap.get(id(m), m) for m in self._output]
        self._segmenter.adopt(swap)

    def _extends(self, messages: Sequence[Message], n_prev: int) -> bool:
        """Whether ``messages`` starts with the ``n_prev`` messages of the previous fit.

        O(1) when the caller passes the same message objects as last time (frameworks
        append to one list): the first message and the last 8 previous ones are compared by
        identity. Otherwise the whole prefix is compared by value (O(n), in C). An edit deep
        inside a history whose first and last 8 objects are unchanged is not seen: build
        new message objects for an edited history, or call :meth:`reset`.
        """
        if len(messages) < n_prev:
            return False
        history = self._history
        k = min(n_prev, 8)
        if messages[0] is history[0] and all(
            messages[i] is history[i] for i in range(n_prev - k, n_prev)
        ):
            return True
        prefix = messages[:n_prev]
        if not isinstance(prefix, list):
            prefix = list(prefix)
        return prefix == history

    def _fit(
        self,
        messages: Sequence[Message],
        query: str | None,
        use_async: bool,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> Generator[Awaitable[Any], None, FitResult]:
        t0 = time.perf_counter()
        if type(messages) is not list and (
            isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence)
        ):
            raise InvalidHistoryError(
                "fit() argument 'messages' must be a list of ctxmgr.Message (oldest first), "
                f"got {type(messages).__name__}; convert OpenAI dicts with messages_from_openai",
                problem="bad_argument",
            )
        if query is not None and not isinstance(query, str):
            raise InvalidHistoryError(
                f"fit() argument 'query' must be a str or None, got {type(query).__name__}",
                problem="bad_argument",
            )
        tools_tokens = self._tools_tokens(tools) if tools else 0
        if tools_tokens or PROVIDER_STATE in self.state.extra or self._overflow_cap is not None:
            self.budget = self._active_budget(tools_tokens)
            calibration, reserve_tokens = self.calibration, self.reserve_tokens
        else:  # nothing learned from the provider: the configured budget
            self.budget = self._base_budget
            calibration, reserve_tokens = 1.0, self._base_budget.reserve_output_tokens
        self.state.turn += 1
        n_repairs = len(self._segmenter.repairs)
        start, new_segs = self._ingest(messages)
        repairs = [str(r) for r in self._segmenter.repairs[n_repairs:]]
        if query is None:
            query = self._segments[self._last_user].head.text if self._last_user is not None else ""
        window = Window(
            segments=self._segments,
            history=self._segments,
            budget=self.budget,
            counter=self.counter,
            state=self.state,
            query=query,
            turn=self.state.turn,
            new_start=start,
            context=self._selected,
        )
        hook = self._pm.hook
        arrived = self._arrive(window, start, new_segs)
        new_segs = self._segments[start:]
        self._call("observe", hook.ctxmgr_observe, window=window, new_segments=new_segs)
        reason = self._call(
            "wants_compaction", hook.ctxmgr_wants_compaction, window=window, new_segments=new_segs
        )
        request = self.state.extra.pop("compaction_request", None)
        if request is not None:
            reason = f"requested: {request.get('reason') or 'no reason given'}"
        pending = self._segmenter.pending()
        if pending is not None:
            pending = Segment(pending.messages, pending.start, window.measure(pending.messages))
            repairs.extend(
                f"message {pending.start}: dangling tool call (synthesized result)"
                for m in pending.messages
                if m.metadata.get("ctxmgr") == "synthetic_tool_result"
            )
        priming = self.counter.reply_priming
        new_tokens = sum(s.tokens for s in new_segs)
        pending_tokens = pending.tokens if pending else 0
        projected = self._output_tokens + new_tokens + pending_tokens + priming
        if reason is None and self._force_reason is not None:
            reason = self._force_reason
        if reason is None and projected > self.budget.trigger_tokens:
            reason = f"over trigger ({projected} > {self.budget.trigger_tokens} tokens)"
        report = FitReport(
            effective_limit=self.budget.effective_limit,
            max_context_tokens=self.budget.max_context_tokens,
            repairs=repairs,
            turn=self.state.turn,
            offloaded=arrived,
            tools_tokens=tools_tokens,
            calibration=calibration,
            reserve_tokens=reserve_tokens,
            recovered=self._force_reason is not None,
            provider=self.profile.name,
        )
        if self._notes:
            report.notes.extend(self._notes)
            self._notes.clear()
        # messages strategies append on this fit (system-prompt replay), counted up front;
        # deferred while a tool step is open: they would go before it, and the open step
        # is re-rendered at the next fit, so the context would no longer only grow
        appended = [
            msg
            for batch in (
                self._call("append", hook.ctxmgr_append, window=window) if pending is None else ()
            )
            or ()
            for msg in batch or ()
        ]
        appended_tokens = sum(self.counter.count_message(m) for m in appended)
        if reason is None and projected + appended_tokens > self.budget.trigger_tokens:
            reason = f"appended messages pass the trigger ({projected + appended_tokens} tokens)"
        if reason is None:
            for offset, seg in enumerate(new_segs):
                self._output.extend(seg.messages)
                self._selected.append(start + offset)
                report.kept.append(record(seg, "new"))
            self._output_tokens += new_tokens
            report.kept_count = len(self._selected)
        else:
            target = self._requested_target(request)
            yield from self._compact(window, pending_tokens, reason, report, use_async, target)
        room = self.budget.effective_limit - self._output_tokens - pending_tokens - priming
        for msg in appended:
            tokens = self.counter.count_message(msg)
            if tokens > room:  # never overflow for a reminder; it comes back next time
                continue
            room -= tokens
            self._output.append(msg)
            self._output_tokens += tokens
            tag = str(msg.metadata.get("ctxmgr", "appended"))
            report.injected.append(SegmentRecord((msg.id,), tokens, tag))
        out, total = self._finish(pending, pending_tokens, priming)
        if total > self.budget.effective_limit and not report.compacted:
            # the provider's rules added tokens (a placeholder first user turn): compact
            reason = f"provider rules pass the limit ({total} tokens)"
            report.kept.clear()  # the compaction reports what it keeps and injects
            report.injected.clear()
            yield from self._compact(window, pending_tokens, reason, report, use_async)
            out, total = self._finish(pending, pending_tokens, priming)
        if total <= self.budget.effective_limit:
            out, total = self._place_recall_block(window, out, total, pending, priming, report)
        if total > self.budget.effective_limit:
            raise self._overflow(total, pending)
        if report.recovered:
            report.reason = f"provider refused the context as too long: {self._force_reason}"
        report.tokens_after = total
        report.tokens_before = self._history_tokens(pending_tokens) + priming
        report.tokens_before_estimated = bool(self._estimated)
        report.elapsed_ms = (time.perf_counter() - t0) * 1000
        self.state.last_fit = {
            "turn": report.turn,
            "tokens_after": report.tokens_after,
            "compacted": report.compacted,
            "reason": report.reason,
            "tools_tokens": tools_tokens,
        }
        loop: AgentLoopError | None = None
        try:
            self._call("report", hook.ctxmgr_report, window=window, report=report)
        except AgentLoopError as exc:  # raised after the fit commits, carrying its result
            exc.result = FitResult(out, report)
            loop = exc
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s", report)
        if self.on_report is not None:
            self.on_report(report)
        if loop is not None:
            raise loop
        return FitResult(out, report)

    def request_compaction(
        self,
        reason: str = "",
        *,
        target_tokens: int | None = None,
        target_fraction: float | None = None,
    ) -> None:
        """Ask for a compaction on the next fit, even below the trigger.

        The request is kept in the session state (``state.extra["compaction_request"]``),
        so it survives a session store between the tool call that makes it and the next
        model call. The next fit runs the whole compaction pipeline (shrink, evict,
        summarize, re-render notes) and reports ``reason = "requested: <reason>"``.

        Args:
            reason: why (shown in the FitReport).
            target_tokens: compact down to at most this many tokens instead of the
                budget's target (``None``: the budget's target; the budget's target is
                never exceeded).
            target_fraction: compact down to at most this share of the previous fit's
                context (``0.5``: half), resolved at the next fit from the session state.

        Raises:
            ValueError: ``target_fraction`` is not in (0, 1].
        """
        if target_fraction is not None and not 0 < target_fraction <= 1:
            raise ValueError(f"target_fraction must be in (0, 1], got {target_fraction}")
        self.state.extra["compaction_request"] = {
            "reason": reason,
            "target_tokens": target_tokens,
            "target_fraction": target_fraction,
        }

    def _requested_target(self, request: Mapping[str, Any] | None) -> int | None:
        """The token target of a compaction request (absolute and/or relative), or None."""
        if not request:
            return None
        targets = [request["target_tokens"]] if request.get("target_tokens") is not None else []
        last = (self.state.last_fit or {}).get("tokens_after")
        if request.get("target_fraction") is not None and last:
            targets.append(int(float(request["target_fraction"]) * int(last)))
        return min(targets) if targets else None

    def _arrive(self, window: Window, start: int, new_segs: list[Segment]) -> list[SegmentRecord]:
        """Let ``ctxmgr_arrive`` replace new segments before anything sees them (offload).

        Replacements must keep the segment's shape (checked by ``Window.replace``); the
        originals are archived here. Returns the records of the replaced segments.
        """
        if not new_segs:
            return []
        records: list[SegmentRecord] = []
        for changes in self._call(
            "arrive", self._pm.hook.ctxmgr_arrive, window=window, new_segments=new_segs
        ):
            for offset, (messages, why, strategy) in (changes or {}).items():
                pos = start + int(offset)
                old = self._segments[pos]
                try:
                    window.replace(pos, messages, why, strategy)
                except ValueError as exc:
                    raise StrategyError(f"arrive: {exc}", strategy=strategy or "?") from exc
                window.cleared.pop(pos, None)
                freed = old.tokens - self._segments[pos].tokens
                self._history_total += freed  # tokens_before counts the originals
                records.append(SegmentRecord(old.ids, old.tokens, why, strategy))
                for orig, new in zip(old.messages, messages):
                    if orig is not new:
                        self.state.archive.add(orig, why, self.state.turn, strategy)
        return records

    # ------------------------------------------------------------------ provider boundary
    def _finish(
        self, pending: Segment | None, pending_tokens: int, priming: int
    ) -> tuple[list[Message], int]:
        """The context to send, normalized by the provider profile, and its tokens.

        The committed output is normalized incrementally (only the last normalized
        message can change when messages are appended); an open tool step is normalized
        on top and rolled back, since it is not committed.
        """
        if self._identity:
            out = list(self._output)
            if pending is not None:
                out.extend(pending.messages)
            return out, self._output_tokens + pending_tokens + priming
        src = self._output
        norm = self._norm
        if (
            norm is None
            or self._norm_src is not src
            or len(src) < norm.fed
            or (norm.fed and src[norm.fed - 1] is not norm.last_fed)
        ):
            norm = self._norm = self.profile.normalizer(self.counter.count_message)
            self._norm_src = src
            norm.feed(src)
        elif len(src) > norm.fed:
            norm.feed(src[norm.fed :])
        if pending is None:
            return list(norm.out), norm.tokens + priming
        mark = norm.mark()
        norm.feed(pending.messages)
        out, tokens = list(norm.out), norm.tokens
        norm.rollback(mark)
        return out, tokens + priming

    def refit_after_overflow(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        provider_tokens: int | None = None,
        provider_limit: int | None = None,
        message: str = "",
        query: str | None = None,
    ) -> FitResult:
        """Fit again, smaller, after the provider refused the last fit as too long.

        Call it once, from the adapter, when the provider answered context-length-exceeded
        (OpenAI ``context_length_exceeded``, Anthropic "prompt is too long", Gemini's
        token-limit 400) for the context of the last fit. It learns the calibration from
        the provider's numbers when given (else assumes the local count was 25 % low),
        adopts ``provider_limit`` as the window if it is smaller, and compacts to a
        target scaled by ``provider_limit / provider_tokens`` (x0.95; else 0.8) of the last
        size. The report has ``recovered = True`` and the provider message in ``reason``.
        If the retry is refused too, raise ``ContextOverflowError.from_provider(...)``.

        Args:
            messages: the full history, oldest first, as passed to the last fit (not mutated).
            tools: the tool definitions sent with the request.
            provider_tokens: the prompt tokens the provider counted, if its error said.
            provider_limit: the provider's limit, if its error said.
            message: the provider's error message.
            query: as in :meth:`fit`.

        Raises:
            ContextOverflowError: even the smaller target cannot hold the pinned content.
        """
        self._prepare_overflow(provider_tokens, provider_limit, message)
        try:
            return self.fit(messages, query=query, tools=tools)
        finally:
            self._force_reason = None
            self._overflow_cap = None

    async def arefit_after_overflow(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        provider_tokens: int | None = None,
        provider_limit: int | None = None,
        message: str = "",
        query: str | None = None,
    ) -> FitResult:
        """Async :meth:`refit_after_overflow`."""
        self._prepare_overflow(provider_tokens, provider_limit, message)
        try:
            return await self.afit(messages, query=query, tools=tools)
        finally:
            self._force_reason = None
            self._overflow_cap = None

    def _place_recall_block(
        self,
        window: Window,
        out: list[Message],
        total: int,
        pending: Segment | None,
        priming: int,
        report: FitReport,
    ) -> tuple[list[Message], int]:
        """Insert the ``ctxmgr_recall_block`` segments; return the context and its tokens.

        The block goes just before the latest user message, or before the user message
        at history position ``window.scratch["recall_block_anchor"]`` when a strategy sets
        it and that message is in the context (a block kept from an earlier question), or,
        when a strategy sets ``window.scratch["recall_block_position"] = "after_system"``,
        after the leading system messages; always within the effective limit. It is not
        part of the append-only prefix (``self._output``).
        With a provider profile that rewrites messages the context with the block is
        normalized (the prefix before the block incrementally, see
        :meth:`_prefix_normalizer`); if that would pass the limit the block is left out.

        Args:
            window: the fit's window.
            out: the context without the block (already normalized), not mutated.
            total: its tokens, reply priming included.
            pending: the open tool step, if any (it stays last).
            priming: reply-priming tokens.
            report: the fit's report (recalled segments are listed under ``kept``).
        """
        # the block fills the room left up to the effective limit (recall is what it is
        # for: bounded by the trigger, the agent preset's LoCoMo evidence recall at 4k fell
        # from 0.79 to 0.65); the provider's count is kept by the calibration
        room = self.budget.effective_limit - total
        block = self._call(
            "recall_block",
            self._pm.hook.ctxmgr_recall_block,
            window=window,
            selected=self._selected,
            room=room,
        )
        if not block:
            return out, total
        taken = set(self._selected)
        order = [p for p in dict.fromkeys(block) if p not in taken]
        # exchanges stay whole: a recalled answer brings its question, or stays out when
        # the questions do not fit
        whole = self._whole_exchanges(order, taken)
        if sum(self._segments[p].tokens for p in whole) > room:
            present = taken.union(order)
            asked = self._question_of(set(order))
            whole = [p for p in order if p not in asked or asked[p] in present]
        estimated = not self._estimated.isdisjoint(whole)  # a cold fit's unread segments
        segs = [self._exact(p) for p in whole]
        tokens = sum(s.tokens for s in segs)
        while estimated and segs and tokens > room:  # chosen on estimates: keep what fits
            tokens -= segs.pop().tokens
        if not segs:
            return out, total
        if tokens > room:
            raise StrategyError(
                f"recall block of {tokens} tokens exceeds its room of {room}", strategy="recall"
            )
        raw = list(self._output)
        at = len(raw)
        anchor = window.scratch.get("recall_block_anchor")
        if window.scratch.get("recall_block_position") == "after_system":
            at = next((i for i, m in enumerate(raw) if m.role != "system"), len(raw))
        elif self._last_user is not None:
            # before the user message the block was recalled for (a block kept from an
            # earlier question stays where it was, so the context only grows), else
            # before the latest user message
            for pos in (anchor, self._last_user):
                if not isinstance(pos, int) or not 0 <= pos < len(self._segments):
                    continue
                head = self._segments[pos].head
                at = next((i for i in range(len(raw) - 1, -1, -1) if raw[i] is head), -1)
                if at >= 0:
                    break
            else:
                at = len(raw)
        raw[at:at] = [m for s in segs for m in s.messages]
        if pending is not None:
            raw.extend(pending.messages)
        if self.profile.is_identity:
            new_total = total + tokens
        else:  # the normalized prefix before the block is kept: feed the block and what follows
            norm = self._prefix_normalizer(at)
            mark = norm.mark()
            try:
                norm.feed(raw[at:])
                raw, new_total = list(norm.out), norm.tokens + priming
            finally:
                norm.rollback(mark)
            if new_total > self.budget.effective_limit:
                return out, total
        for seg in segs:
            report.kept.append(record(seg, "recalled for the current question"))
        report.kept_count += len(segs)
        return raw, new_total

    def _prefix_normalizer(self, at: int) -> Normalizer:
        """A provider normalizer fed ``self._output[:at]``, kept while that prefix stays.

        The recall block goes at ``at`` (before the latest user message); in a tool loop
        the prefix before it is the same at every fit, so only the block and what follows
        it are normalized again (``_output`` only grows or is replaced, never edited).
        """
        src = self._output
        last = src[at - 1] if at else None
        kept = self._block_norm
        if kept is not None and kept[0] is src and kept[1] == at and kept[2] is last:
            return kept[3]
        norm = self.profile.normalizer(self.counter.count_message)
        norm.feed(src[:at])
        self._block_norm = (src, at, last, norm)
        return norm

    def _history_tokens(self, pending_tokens: int) -> int:
        # running total of every committed segment, advanced over new segments only
        self._history_total += sum(s.tokens for s in self._segments[self._history_counted :])
        self._history_counted = len(self._segments)
        return self._history_total + pending_tokens

    def _call(self, phase: str, hook: Any, **kwargs: Any) -> Any:
        try:
            return hook(**kwargs)
        except CtxmgrError:
            raise
        except Exception as exc:
            raise StrategyError(f"{phase} hook failed: {exc!r}", strategy=phase) from exc

    # ------------------------------------------------------------------ compaction
    def _core_pins(self, window: Window, positions: list[int]) -> dict[int, str]:
        pins: dict[int, str] = {}
        leading_system = True
        for i, pos in enumerate(positions):
            seg = window.segments[i]
            leading_system = leading_system and seg.role == "system"
            if leading_system:
                pins[i] = "system prompt"
            elif any(m.pinned for m in seg.messages):
                pins[i] = "pinned"
            if pos == self._last_user:
                pins[i] = "latest user message"
        n = len(positions)
        for i in range(max(0, n - self.config.protect_recent), n):
            pins.setdefault(i, "most recent")
        return pins

    def _compact(
        self,
        window: Window,
        pending_tokens: int,
        reason: str,
        report: FitReport,
        use_async: bool,
        target_tokens: int | None = None,
    ) -> Generator[Awaitable[Any], None, None]:
        hook = self._pm.hook
        self._shrunk = dict(self._shrunk)  # copy on write: a failed fit restores the old one
        report.compacted = True
        report.reason = reason
        previous = set(self._selected)
        base = previous.union(range(window.new_start, len(self._segments)))
        unread = base.intersection(self._unread)  # cold fit: older than the window
        base -= unread
        for recalled in self._call(
            "recall", hook.ctxmgr_recall, window=window, history=self._segments, candidates=base
        ):
            base.update(p for p in recalled or () if 0 <= p < len(self._segments))

        # exchanges stay whole: every candidate answer brings its question along
        question_of = self._question_of(base)
        base.update(question_of.values())
        for pos in base.intersection(self._unread):  # recalled or a question: count it
            self._exact(pos)
        unread -= base
        positions = sorted(base)
        history_new_start = window.new_start
        cands = [self._shrunk.get(p, self._segments[p]) for p in positions]
        window = Window(
            segments=cands,
            budget=self.budget,
            counter=self.counter,
            state=self.state,
            query=window.query,
            turn=window.turn,
            new_start=bisect.bisect_left(positions, history_new_start),
            positions=positions,
            history=self._segments,
        )
        window.pinned = self._core_pins(window, positions)
        for pins in self._call("pin", hook.ctxmgr_pin, window=window) or ():
            for i, why in (pins or {}).items():
                window.pinned.setdefault(int(i), why)
        index_of = {p: i for i, p in enumerate(positions)}
        q_of = {index_of[p]: index_of[q] for p, q in question_of.items()}
        for i in [i for i in window.pinned if i in q_of]:
            window.pinned.setdefault(q_of[i], "question of a kept answer")
        reserve = sum(r or 0 for r in self._call("reserve", hook.ctxmgr_reserve, window=window))
        priming = self.counter.reply_priming
        slack = self._profile_slack()
        target = self.budget.target_tokens
        if target_tokens is not None:  # a requested compaction may aim lower
            target = min(target, max(0, int(target_tokens)))
        avail = target - reserve - priming - pending_tokens - slack
        total = sum(s.tokens for s in cands)
        window.reserved = reserve + priming + pending_tokens + slack
        if total > avail:
            self._call("shrink", hook.ctxmgr_shrink, window=window, excess_tokens=total - avail)
        for i in window.cleared:
            self._shrunk[positions[i]] = window.segments[i]
        cands = window.segments
        pinned_tokens = sum(cands[i].tokens for i in window.pinned)
        # score: weighted sum of strategy scores; recency when nobody scores
        n = len(cands)
        scores = [0.0] * n
        scored = False
        # call implementations one by one (config order) to pair each vector with its weight;
        # pluggy's own call would drop None results and lose that pairing
        for impl in reversed(hook.ctxmgr_score.get_hookimpls()):
            strategy = cast(Strategy, impl.plugin)
            try:
                vec = cast("Sequence[float] | None", impl.function(window=window))
            except Exception as exc:
                raise StrategyError(f"score failed: {exc!r}", strategy=strategy.name) from exc
            if vec is None:
                continue
            if len(vec) != n:
                raise StrategyError(
                    f"score returned {len(vec)} values for {n} segments", strategy=strategy.name
                )
            scored = True
            weight = strategy.weight
            for i, v in enumerate(vec):
                scores[i] += weight * float(v)
        if not scored:
            scores = [i / max(1, n - 1) for i in range(n)]
        order = sorted(
            (i for i in range(n) if i not in window.pinned), key=lambda i: (-scores[i], -i)
        )
        # pinned content above the target leaves no room: only pinned segments are kept,
        # and the final check raises ContextOverflowError if even they exceed the limit
        room = max(0, avail - pinned_tokens)
        keep = set(window.pinned)
        orphaned: set[int] = set()  # questions whose answer did not fit: dropped with it
        for i in order:
            if i in keep or i in orphaned:
                continue
            q = q_of.get(i)
            if q is not None and q in keep:
                q = None
            cost = cands[i].tokens + (cands[q].tokens if q is not None else 0)
            if cost <= room:  # an answer is kept with its question, or not at all
                keep.add(i)
                room -= cost
                if q is not None:
                    keep.add(q)
            elif q is not None:
                orphaned.add(q)
        evicted_idx = [i for i in range(n) if i not in keep]
        for i, rec in window.cleared.items():
            if i in keep:  # shrunk and kept; evicted ones are reported as dropped below
                report.cleared.append(rec)
                for msg in self._segments[positions[i]].messages:
                    reason = f"cleared: {rec.reason}"
                    self.state.archive.add(msg, reason, self.state.turn, rec.strategy)
        # archive and report what left the context in this compaction
        newly_evicted = []
        covered = self._covered()
        for pos in sorted(unread):
            seg = self._segments[pos]
            report.dropped.append(record(seg, "evicted unread (cold fit, older than the window)"))
            for msg in seg.messages:
                self.state.archive.add(msg, "evicted", self.state.turn)
            if not covered.issuperset(seg.ids):
                newly_evicted.append(seg)
        for i in evicted_idx:
            pos = positions[i]
            seg = self._segments[pos]
            if pos in previous or pos >= history_new_start:
                report.dropped.append(record(seg, f"evicted (score {scores[i]:.3f})"))
                for msg in seg.messages:
                    self.state.archive.add(msg, "evicted", self.state.turn)
            if not covered.issuperset(seg.ids):
                newly_evicted.append(seg)
        kept_idx = sorted(keep)
        window.scratch["kept"] = kept_idx
        window.scratch["evicted"] = evicted_idx
        if newly_evicted:
            n_before = len(self.state.summary_covers)
            for awaitable in self._call(
                "compact",
                hook.ctxmgr_compact,
                window=window,
                evicted=newly_evicted,
                use_async=use_async,
            ):
                if awaitable is not None:
                    yield awaitable
            if len(self.state.summary_covers) > n_before:
                covered_now = self._covered()
                for seg in newly_evicted:
                    if covered_now.issuperset(seg.ids):
                        why = "folded into running summary"
                        if window.scratch.get("summary_fallback"):
                            why += f" (extractive fallback: {window.scratch['summary_fallback']})"
                        report.summarized.append(record(seg, why))
        injections: list[Injection] = []
        for batch in self._call("inject", hook.ctxmgr_inject, window=window) or ():
            injections.extend(batch or ())
        # build the output: leading pinned run, head injections, the rest, end injections
        head_end = 0
        while (
            head_end < len(kept_idx)
            and kept_idx[head_end] in window.pinned
            and kept_idx[head_end] == head_end
        ):
            head_end += 1
        out: list[Message] = []
        tokens = 0
        selected: list[int] = []

        def add_segment(i: int) -> None:
            nonlocal tokens
            out.extend(cands[i].messages)
            tokens += cands[i].tokens
            selected.append(positions[i])

        def add_injection(inj: Injection) -> None:
            nonlocal tokens
            out.append(inj.message)
            t = self.counter.count_message(inj.message)
            tokens += t
            report.injected.append(SegmentRecord((inj.message.id,), t, inj.reason, inj.strategy))

        for i in kept_idx[:head_end]:
            add_segment(i)
        for inj in injections:
            if inj.position == "head":
                add_injection(inj)
        for i in kept_idx[head_end:]:
            add_segment(i)
        for inj in injections:
            if inj.position == "end":
                add_injection(inj)
        # safety net: injections larger than reserved -> evict more of the lowest scored
        limit = self.budget.effective_limit - priming - pending_tokens - slack
        if tokens > limit:
            victims = [
                i for i in sorted(kept_idx, key=lambda i: (scores[i], i)) if i not in window.pinned
            ]
            drop: set[Message] = set()
            answers: dict[int, list[int]] = {}
            for a, q in q_of.items():
                answers.setdefault(q, []).append(a)
            while tokens > limit and victims:
                i = victims.pop(0)
                if i not in kept_idx:
                    continue
                # a question leaves with its answers (none of them pinned: it would be too)
                for j in [i, *(a for a in answers.get(i, ()) if a in kept_idx)]:
                    kept_idx.remove(j)
                    report.dropped.append(record(cands[j], "evicted to fit injected content"))
                    for msg in self._segments[positions[j]].messages:
                        self.state.archive.add(msg, "evicted", self.state.turn)
                    tokens -= cands[j].tokens
                    drop.update(cands[j].messages)
                    selected.remove(positions[j])
            out = [m for m in out if m not in drop]
        if tokens > limit:
            out, tokens = self._shrink_injections(out, tokens, limit, report)
        for i in kept_idx:
            if i in window.pinned:
                report.pinned.append(record(cands[i], window.pinned[i]))
            elif positions[i] not in self._shrunk:
                report.kept.append(record(cands[i], f"score {scores[i]:.3f}"))
        report.kept_count = len(kept_idx)
        self._output = out
        self._output_tokens = tokens
        self._selected = selected

    def _user_positions(self) -> list[int]:
        """History positions of the user segments, oldest first.

        Scanned incrementally: only segments added since the last call are read, unless
        the segment list was replaced or cut back (a reset, a rolled-back fit), which its
        length and its last scanned segment reveal (segments are new objects after a reset).
        """
        segments = self._segments
        _, n, last, users = self._users
        if len(segments) < n or (n and segments[n - 1] is not last):
            n, users = 0, []
        users.extend(p for p in range(n, len(segments)) if segments[p].role == "user")
        self._users = (segments, len(segments), segments[-1] if segments else None, users)
        return users

    def _whole_exchanges(self, block: list[int], taken: set[int]) -> list[int]:
        """Put the question of each recalled answer just before it (exchanges stay whole).

        ``block`` and the result are history positions in block order; a question already
        in the context (``taken``) or in the block is not repeated.
        """
        question_of = self._question_of(set(block))
        present = taken.union(block)
        if all(q in present for q in question_of.values()):
            return block
        out: list[int] = []
        added: set[int] = set()
        for p in block:
            q = question_of.get(p)
            if q is not None and q not in present and q not in added:
                out.append(q)
                added.add(q)
            out.append(p)
        return out

    def _question_of(self, positions: set[int]) -> dict[int, int]:
        """Map each assistant segment's history position to its question's position.

        The question is the nearest user segment before it; an assistant segment with
        no user segment before it (a greeting) has none.
        """
        users = self._user_positions()
        segments = self._segments
        out: dict[int, int] = {}
        if not users:
            return out
        first = users[0]
        for p in positions:
            if p > first and segments[p].role == "assistant":
                out[p] = users[bisect.bisect_left(users, p) - 1]
        return out

    def _shrink_injections(
        self, out: list[Message], tokens: int, limit: int, report: FitReport
    ) -> tuple[list[Message], int]:
        """Make room by shortening, then removing, injected messages (notes first).

        Injections are re-derived from the session state at every compaction, so removing
        one loses nothing; it is reported under ``dropped``.
        """
        from ctxmgr.summarizers import ExtractiveSummarizer

        fitter = ExtractiveSummarizer(self.counter.count_text)
        for kind in ("notes", "summary"):
            # newest first, so popping one never shifts the index of the next
            for index in [i for i, m in enumerate(out) if m.metadata.get("ctxmgr") == kind][::-1]:
                if tokens <= limit:
                    return out, tokens
                msg = out[index]
                before = self.counter.count_message(msg)
                room = before - (tokens - limit)
                header, _, body = msg.text.partition("\n")
                short = fitter._fit(body.splitlines(), room - self.counter.count_text(header) - 8)
                if room > 24 and short.strip():
                    new = msg.evolve(content=f"{header}\n{short}")
                    after = self.counter.count_message(new)
                    # only a shortening that fits: tokenization of the cut text may not
                    # shrink as planned, and then the injection is removed instead
                    if tokens + after - before <= limit:
                        out[index] = new
                        tokens += after - before
                        continue
                out.pop(index)
                tokens -= before
                report.dropped.append(SegmentRecord((msg.id,), before, f"{kind}: no room"))
                report.injected = [r for r in report.injected if r.ids != (msg.id,)]
        return out, tokens

    def _covered(self) -> set[str]:
        """Ids covered by the running summary (the state's incrementally kept set)."""
        return self.state.covered()

    def _overflow(self, total: int, pending: Segment | None) -> ContextOverflowError:
        contributors: list[tuple[str, int]] = []
        segs = {p: self._shrunk.get(p, self._segments[p]) for p in self._selected}
        for seg in segs.values():
            contributors.append((f"{seg.role} message {seg.start}", seg.tokens))
        if pending is not None:
            contributors.append((f"current tool step (message {pending.start})", pending.tokens))
        contributors.sort(key=lambda c: -c[1])
        return ContextOverflowError(
            projected_tokens=total,
            max_context_tokens=self.budget.max_context_tokens,
            effective_limit=self.budget.effective_limit,
            contributors=contributors[:5],
        )

    def __repr__(self) -> str:
        names = ", ".join(s.name for s in self.strategies)
        return (
            f"ContextManager(max_context_tokens={self.budget.max_context_tokens}, "
            f"effective_limit={self.budget.effective_limit}, strategies=[{names}])"
        )


def _estimate(segment: Segment, counter: TokenCounter) -> tuple[int, bool] | None:
    """``(tokens, exact)`` of ``segment`` without tokenizing, or ``None`` to count it.

    About 4 bytes of UTF-8 text per token (the usual ratio for English under cl100k /
    o200k) plus the per-message and per-call overheads. Only for segments a cold fit evicts
    unread: the estimate feeds ``tokens_before`` (flagged as an estimate) and the report,
    never the budget (a segment that re-enters the context is counted exactly). Counts
    already cached are used as they are; system, pinned and non-text messages are counted.
    """
    cache = getattr(counter, "_cache", None)
    total = 0
    exact = True
    for m in segment.messages:
        if m.role == "system" or m.pinned or not isinstance(m.content, str):
            return None
        cached = cache.get(m.fingerprint) if isinstance(cache, dict) else None
        if cached is not None:
            total += cached
            continue
        exact = False
        size = len(m.content.encode()) + len((m.name or "").encode())
        size += sum(len(c.name) + len(c.arguments.encode()) for c in m.tool_calls)
        total += -(-size // 4) + 4 + 3 * len(m.tool_calls)
    return total, exact


def _not_a_message(item: object, index: int) -> InvalidHistoryError:
    hint = (
        "; convert OpenAI dicts with messages_from_openai"
        if isinstance(item, Mapping)
        else "; build messages with Message.user(...), Message.assistant(...) and so on"
    )
    return InvalidHistoryError(
        f"fit() argument 'messages': item of type {type(item).__name__} is not a ctxmgr.Message"
        + hint,
        index=index,
        problem="not_a_message",
    )


def run_coroutine_sync(awaitable: Awaitable[Any]) -> Any:
    """Run an awaitable to completion from synchronous code.

    Raises:
        RuntimeError: called from inside a running event loop (use ``afit`` there).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await(awaitable))
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()  # never leave a coroutine un-awaited
    raise RuntimeError("cannot block on an async summarizer inside a running event loop (use afit)")


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
