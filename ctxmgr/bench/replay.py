"""Replay recorded transcripts through context policies and measure every fit.

For each (fitter, budget, transcript) unit, :func:`replay_transcript` opens one
:class:`~ctxmgr.bench.fitter.FitSession` and walks the transcript oldest first:

* before every recorded ``assistant`` message ``i`` (a model call; ``i >= 1``) it fits
  ``messages[:i]`` (the full history so far) and records a *turn fit*;
* an ``"action"`` probe at ``position`` reuses the turn fit of that position when there
  is one, otherwise it fits ``messages[:position]`` on a fork at that point of the walk
  (so a stateful policy is always fed in order);
* after the walk, every ``"qa"`` probe fits ``messages + [Message.user(question)]`` on a
  fork of the session (probes never disturb the session or each other).

Every fit is measured with :mod:`ctxmgr.bench.metrics`; the wall time of each
``fit`` call (``time.perf_counter``, forks excluded) is its overhead. The result of a unit
is a :class:`TranscriptResult` of counts and short per-turn series;
:mod:`ctxmgr.bench.results` folds them into rows.

:class:`Replay` runs many units, in worker processes when ``jobs > 1`` (spawn-safe),
and returns the results in a deterministic order (fitter, budget, transcript, as given)
whatever order the workers finish in.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from multiprocessing.reduction import ForkingPickler
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ctxmgr.bench import metrics as M
from ctxmgr.bench.transcript import Probe, Transcript
from ctxmgr.messages import Message

if TYPE_CHECKING:
    from ctxmgr.bench.fitter import FitSession, Fitter
    from ctxmgr.tokens import TokenCounter

__all__ = ["Replay", "Trace", "TranscriptResult", "replay_transcript"]


# Messages keep their metadata in a read-only ``MappingProxyType``, which plain pickle
# refuses. Worker processes receive transcripts through multiprocessing's own pickler,
# so teach that one (only that one) to send a proxy as a dict and rebuild it.
def _rebuild_mappingproxy(data: dict[str, Any]) -> MappingProxyType[str, Any]:
    return MappingProxyType(data)


def _reduce_mappingproxy(proxy: MappingProxyType[str, Any]) -> tuple[Any, ...]:
    return _rebuild_mappingproxy, (dict(proxy),)


ForkingPickler.register(MappingProxyType, _reduce_mappingproxy)


# ---------------------------------------------------------------------------------------
# Result types
# ---------------------------------------------------------------------------------------
@dataclass
class Trace:
    """Per-turn series of one unit, kept only for the transcripts chosen for plots.

    Attributes:
        history_len: messages in the history of each turn fit.
        tokens: ``count_messages`` of each turn fit's context, in tokens.
        overhead_ms: wall time of each turn fit, in milliseconds.
    """

    history_len: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    overhead_ms: list[float] = field(default_factory=list)


@dataclass
class TranscriptResult:
    """Measurements of one fitter on one transcript at one budget.

    Counts are over *fits*: every turn fit, every qa probe fit, and every action probe
    fit that is not a reuse of a turn fit (so no context is counted twice).

    Attributes:
        config: the fitter's name.
        kind: ``"ctxmgr"`` or ``"peer"``.
        notes: the fitter's notes.
        budget: the effective limit, in tokens.
        dataset: the transcript's dataset.
        transcript_id: the transcript's id.
        error: ``"<transcript id>: <ExceptionType>: <message>"`` when the fitter raised
            (then every count is 0 and the unit is left out of the metrics), else ``None``.
        fits: fits measured.
        turn_fits: turn fits (model calls of the transcript).
        probe_fits: qa probe fits plus action probe fits of their own.
        budget_violations: fits with ``count_messages(context) > budget``.
        tool_pair_violation_fits: fits with at least one broken tool pair.
        broken_tool_pairs: broken pairs summed over fits.
        system_fits: fits of a transcript that has a system message.
        system_kept: of those, fits whose context contains it.
        latest_user_fits: fits whose history has a user message.
        latest_user_kept: of those, fits whose context contains the latest one.
        evidence: ``(kept, considered)`` per answerable qa probe (category != 5, >= 1
            evidence id naming a turn).
        answer_total: qa probes with a gold answer (category != 5, non-empty).
        answer_hits: of those, probes whose answer occurs in the context text.
        action_found: values of the final action probe found in its context.
        action_total: values of the final action probe scored.
        prefix_pairs: turn fits after the first.
        prefix_extends: of those, fits whose context extends the previous turn fit's.
        prefix_common_tokens: tokens of the common prefix of consecutive turn fits, summed.
        prefix_previous_tokens: tokens of the earlier context of each such pair, summed.
        evidence_by_category: ``category -> (kept, considered)`` per answerable qa probe.
        turn_tokens: ``count_messages`` of each turn fit's context, in tokens.
        cached_tokens: input tokens read from the prompt cache, summed over turn fits
            (see :func:`ctxmgr.bench.metrics.cache_tokens`).
        cache_write_tokens: input tokens written to the prompt cache, summed over turn
            fits (billed apart only by presets with a write price).
        overhead_ms: wall time of each turn fit, in milliseconds.
        summarizer_calls: the session's ``summarizer_calls`` after the last turn fit
            (probe forks are not counted).
        elapsed_s: wall time of the whole unit, in seconds.
        cpu_s: CPU time of the whole unit (``time.process_time``), in seconds.
        trace: per-turn series when this transcript was chosen for plots.
    """

    config: str
    kind: str
    notes: str
    budget: int
    dataset: str
    transcript_id: str
    error: str | None = None
    fits: int = 0
    turn_fits: int = 0
    probe_fits: int = 0
    budget_violations: int = 0
    tool_pair_violation_fits: int = 0
    broken_tool_pairs: int = 0
    system_fits: int = 0
    system_kept: int = 0
    latest_user_fits: int = 0
    latest_user_kept: int = 0
    evidence: list[tuple[int, int]] = field(default_factory=list)
    answer_total: int = 0
    answer_hits: int = 0
    action_found: int = 0
    action_total: int = 0
    prefix_pairs: int = 0
    prefix_extends: int = 0
    prefix_common_tokens: int = 0
    prefix_previous_tokens: int = 0
    evidence_by_category: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    turn_tokens: list[int] = field(default_factory=list)
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    overhead_ms: list[float] = field(default_factory=list)
    summarizer_calls: int = 0
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    trace: Trace | None = None


# ---------------------------------------------------------------------------------------
# One unit
# ---------------------------------------------------------------------------------------
class _Meter:
    """Applies the metrics of :mod:`ctxmgr.bench.metrics` to the fits of one unit."""

    def __init__(
        self, transcript: Transcript, budget: int, counter: M.MessageCounter, prices: M.PriceTable
    ):
        self.budget = budget
        self.prices = prices
        self.count = counter  # counters cache per message fingerprint
        self.system = next((m for m in transcript.messages if m.role == "system"), None)
        self.originals: dict[str, str] = {}
        for message in transcript.messages:
            dia_id = message.metadata.get("dia_id")
            if isinstance(dia_id, str):
                self.originals.setdefault(dia_id, message.text)
        self.answer_cache: dict[str, str] = {}
        self.value_cache: dict[str, str] = {}
        self.previous: list[Message] | None = None
        self.previous_tokens = 0

    def fit(self, res: TranscriptResult, history: Sequence[Message], context: list[Message]) -> int:
        """Record the metrics every fit gets; return the context's tokens."""
        tokens = self.count.count_messages(context)
        res.fits += 1
        res.budget_violations += M.is_budget_violation(tokens, self.budget)
        broken = M.broken_tool_pairs(context)
        res.broken_tool_pairs += broken
        res.tool_pair_violation_fits += broken > 0
        if self.system is not None:
            res.system_fits += 1
            res.system_kept += M.contains_message(context, self.system)
        latest = M.latest_user(history)
        if latest is not None:
            res.latest_user_fits += 1
            res.latest_user_kept += M.contains_message(context, latest)
        return tokens

    def turn(self, res: TranscriptResult, context: list[Message], tokens: int) -> None:
        """Record the turn-only metrics (tokens series, prefix stability, caching)."""
        res.turn_fits += 1
        res.turn_tokens.append(tokens)
        common, extends = 0, False
        if self.previous is not None:
            res.prefix_pairs += 1
            extends = M.extends_previous(self.previous, context)
            res.prefix_extends += extends
            common = M.common_prefix_tokens(self.previous, context, self.count)
            res.prefix_common_tokens += common
            res.prefix_previous_tokens += self.previous_tokens
        read, written = M.cache_tokens(
            tokens,
            common,
            self.previous_tokens if self.previous is not None else None,
            extends,
            len(context) - len(self.previous or ()),
            self.prices,
        )
        res.cached_tokens += read
        res.cache_write_tokens += written
        self.previous = context
        self.previous_tokens = sum(self.count.count_message(m) for m in context)

    def qa(self, res: TranscriptResult, probe: Probe, context: list[Message]) -> None:
        """Record evidence recall and answer-in-context for a qa probe."""
        if probe.category == 5:
            return
        if probe.evidence_ids:
            kept, considered = M.evidence_kept(context, probe.evidence_ids, self.originals)
            if considered:
                res.evidence.append((kept, considered))
                by = res.evidence_by_category.setdefault(str(probe.category), [])
                by.append((kept, considered))
        if probe.answer is not None:
            text = M.context_text(context, self.answer_cache, M.normalize_answer)
            hit = M.answer_in_context(text, str(probe.answer))
            if hit is not None:
                res.answer_total += 1
                res.answer_hits += hit

    def action(self, res: TranscriptResult, probe: Probe, context: list[Message]) -> None:
        """Record action-argument recall for the final action probe."""
        text = M.context_text(context, self.value_cache, M.normalize_value)
        found, scored = M.values_found(text, probe.values)
        res.action_found += found
        res.action_total += scored


def replay_transcript(
    fitter: Fitter,
    transcript: Transcript,
    budget: int,
    counter: TokenCounter,
    *,
    prices: M.PriceTable = M.DEFAULT_PRICES,
    trace: bool = False,
) -> TranscriptResult:
    """Replay one transcript through one fitter at one budget and measure every fit.

    See the module docstring for the walk. An exception raised by the fitter (or by its
    session) ends the unit: the result then carries ``error``, no fit measurements, and
    every probe scored as if nothing had been kept.

    Args:
        fitter: the policy.
        transcript: the recorded conversation and its probes.
        budget: the effective limit, in tokens.
        counter: the one token counter every policy and metric uses.
        prices: price table for the cached-token model.
        trace: keep per-turn series (:class:`Trace`) for plots.
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    res = _empty_result(fitter, transcript, budget)
    res.trace = Trace() if trace else None
    try:
        _walk(fitter, transcript, budget, counter, prices, res)
    except Exception as exc:  # a failing policy is a result, not a crash
        res = _empty_result(fitter, transcript, budget, error=_error_text(transcript, exc))
        _score_zero(res, transcript, budget, counter, prices)
    res.elapsed_s = time.perf_counter() - started
    res.cpu_s = time.process_time() - cpu_started
    return res


def _score_zero(
    res: TranscriptResult,
    transcript: Transcript,
    budget: int,
    counter: TokenCounter,
    prices: M.PriceTable,
) -> None:
    """Score every probe of a transcript as if its context were empty (the fitter raised).

    Errored transcripts stay in the recall metrics with nothing kept, so rows remain
    comparable across configs.
    """
    meter = _Meter(transcript, budget, counter, prices)
    n = len(transcript.messages)
    actions = [
        p
        for p in transcript.probes
        if p.kind == "action" and p.position is not None and 1 <= p.position <= n
    ]
    if actions:
        meter.action(res, max(actions, key=lambda p: p.position or 0), [])
    for probe in transcript.probes:
        if probe.kind == "qa" and probe.question is not None:
            meter.qa(res, probe, [])


def _error_text(transcript: Transcript, exc: BaseException) -> str:
    """``"<transcript id>: <ExceptionType>: <first line of the message>"``."""
    first_line = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{transcript.id}: {type(exc).__name__}: {first_line}".rstrip(": ")


def _empty_result(
    fitter: Any, transcript: Transcript, budget: int, error: str | None = None
) -> TranscriptResult:
    return TranscriptResult(
        config=fitter.name,
        kind=getattr(fitter, "kind", "peer"),
        notes=getattr(fitter, "notes", ""),
        budget=budget,
        dataset=transcript.dataset,
        transcript_id=transcript.id,
        error=error,
    )


def _walk(
    fitter: Fitter,
    transcript: Transcript,
    budget: int,
    counter: TokenCounter,
    prices: M.PriceTable,
    res: TranscriptResult,
) -> None:
    messages = transcript.messages
    n = len(messages)
    meter = _Meter(transcript, budget, counter, prices)
    actions = [
        p
        for p in transcript.probes
        if p.kind == "action" and p.position is not None and 1 <= p.position <= n
    ]
    final_action = max(actions, key=lambda p: p.position or 0) if actions else None
    positions = {p.position for p in actions}
    at_position: dict[int, list[Message]] = {}

    session: FitSession = fitter.start(transcript, budget, counter)
    clock = time.perf_counter
    for i in range(1, n + 1):
        is_turn = i < n and messages[i].role == "assistant"
        if is_turn:
            history = messages[:i]
            t0 = clock()
            context = session.fit(history)
            elapsed_ms = (clock() - t0) * 1000.0
            tokens = meter.fit(res, history, context)
            meter.turn(res, context, tokens)
            res.overhead_ms.append(elapsed_ms)
            if res.trace is not None:
                res.trace.history_len.append(i)
                res.trace.tokens.append(tokens)
                res.trace.overhead_ms.append(elapsed_ms)
            if i in positions:
                at_position[i] = context
        elif i in positions:
            history = messages[:i]
            context = session.fork().fit(history)
            meter.fit(res, history, context)
            res.probe_fits += 1
            at_position[i] = context
    res.summarizer_calls = session.summarizer_calls

    if final_action is not None and final_action.position is not None:
        meter.action(res, final_action, at_position[final_action.position])

    for probe in transcript.probes:
        if probe.kind != "qa" or probe.question is None:
            continue
        history = [*messages, Message.user(probe.question)]
        context = session.fork().fit(history)
        meter.fit(res, history, context)
        res.probe_fits += 1
        meter.qa(res, probe, context)


# ---------------------------------------------------------------------------------------
# Many units, optionally in worker processes
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _PeerRef:
    """Stands for a peer fitter that does not pickle; the worker rebuilds it by name."""

    name: str

    def resolve(self) -> Fitter:
        from ctxmgr.bench.peers import make_peers

        found = [p for p in make_peers(self.name) if p.name == self.name]
        if not found:
            raise LookupError(f"peer {self.name!r} is not available in the worker")
        return found[0]


_WORKER: dict[str, Any] = {}


def _init_worker(
    fitters: list[Any], transcripts: list[Transcript], counter: Any, prices: M.PriceTable
) -> None:
    _WORKER.update(
        fitters=fitters, transcripts=transcripts, counter=counter, prices=prices, resolved={}
    )


def _worker_fitter(index: int) -> Fitter:
    resolved: dict[int, Fitter] = _WORKER["resolved"]
    if index not in resolved:
        item = _WORKER["fitters"][index]
        resolved[index] = item.resolve() if isinstance(item, _PeerRef) else item
    return resolved[index]


def _run_task(task: tuple[int, int, int, bool]) -> tuple[tuple[int, int, int, bool], Any]:
    fi, budget, ti, trace = task
    transcript = _WORKER["transcripts"][ti]
    try:
        fitter = _worker_fitter(fi)
        counter = _worker_counter()
    except Exception as exc:
        item = _WORKER["fitters"][fi]
        return task, _empty_result(item, transcript, budget, error=_error_text(transcript, exc))
    return task, replay_transcript(
        fitter, transcript, budget, counter, prices=_WORKER["prices"], trace=trace
    )


def _worker_counter() -> Any:
    counter = _WORKER["counter"]
    if isinstance(counter, _CounterRef):
        counter = _WORKER["counter"] = counter.resolve()
    return counter


@dataclass(frozen=True)
class _CounterRef:
    """Stands for a token counter that does not pickle; rebuilt by name in the worker."""

    name: str

    def resolve(self) -> Any:
        from ctxmgr.tokens import get_counter

        return get_counter(self.name)


def _picklable(obj: Any) -> bool:
    try:
        ForkingPickler.dumps(obj)
    except Exception:
        return False
    return True


class Replay:
    """Replay transcripts through fitters at several budgets.

    Units are (fitter, budget, transcript) triples. With ``jobs > 1`` they run in a
    ``spawn`` process pool (safe on every platform; fitters, transcripts and the counter
    are sent once per worker). A fitter that does not pickle runs in a worker rebuilt by
    name through :func:`ctxmgr.bench.peers.make_peers` when it is a peer, else in this
    process. Results come back in input order whatever order the units finish in.

    Args:
        fitters: the policies.
        budgets: effective limits, in tokens.
        transcripts: the recorded conversations.
        counter: the token counter every policy and metric uses.
        jobs: worker processes (``<= 1``: run here, no pool).
        prices: price table for the cost model.
        trace_ids: ids of transcripts whose per-turn series are kept for plots.
        progress: show a rich progress bar (on stderr).
    """

    def __init__(
        self,
        fitters: Sequence[Fitter],
        budgets: Sequence[int],
        transcripts: Sequence[Transcript],
        counter: TokenCounter,
        *,
        jobs: int = 1,
        prices: M.PriceTable = M.DEFAULT_PRICES,
        trace_ids: Collection[str] = (),
        progress: bool = False,
    ):
        self.fitters = list(fitters)
        self.budgets = [int(b) for b in budgets]
        self.transcripts = list(transcripts)
        self.counter = counter
        self.jobs = max(1, int(jobs))
        self.prices = prices
        self.trace_ids = set(trace_ids)
        self.progress = progress

    def tasks(self) -> list[tuple[int, int, int, bool]]:
        """All units as ``(fitter index, budget, transcript index, keep trace)``, in order."""
        return [
            (fi, budget, ti, t.id in self.trace_ids)
            for fi in range(len(self.fitters))
            for budget in self.budgets
            for ti, t in enumerate(self.transcripts)
        ]

    def run(self) -> list[TranscriptResult]:
        """Run every unit; return one result per unit in :meth:`tasks` order."""
        tasks = self.tasks()
        done: dict[tuple[int, int, int, bool], TranscriptResult] = {}
        with _progress(self.progress, len(tasks)) as advance:
            if self.jobs <= 1 or len(tasks) <= 1:
                for task in tasks:
                    done[task] = self._run_here(task)
                    advance(task, done[task])
            else:
                self._run_pool(tasks, done, advance)
        return [done[task] for task in tasks]

    def _run_here(self, task: tuple[int, int, int, bool]) -> TranscriptResult:
        fi, budget, ti, trace = task
        return replay_transcript(
            self.fitters[fi],
            self.transcripts[ti],
            budget,
            self.counter,
            prices=self.prices,
            trace=trace,
        )

    def _run_pool(
        self,
        tasks: list[tuple[int, int, int, bool]],
        done: dict[tuple[int, int, int, bool], TranscriptResult],
        advance: Callable[[tuple[int, int, int, bool], TranscriptResult], None],
    ) -> None:
        portable: list[Any] = []
        local: set[int] = set()
        for fi, fitter in enumerate(self.fitters):
            if _picklable(fitter):
                portable.append(fitter)
            else:
                # peers are rebuilt by name in the worker; anything else runs here
                portable.append(_PeerRef(fitter.name))
                if getattr(fitter, "kind", "") != "peer":
                    local.add(fi)
        counter: Any = self.counter
        if not _picklable(counter):
            counter = _CounterRef(getattr(counter, "name", ""))

        # Longest units first: keeps both workers busy until the end.
        def weight(task: tuple[int, int, int, bool]) -> int:
            t = self.transcripts[task[2]]
            calls = sum(1 for m in t.messages if m.role == "assistant") + len(t.probes)
            return len(t.messages) * calls

        remote = sorted((t for t in tasks if t[0] not in local), key=weight, reverse=True)
        ctx = multiprocessing.get_context("spawn")
        pool = cf.ProcessPoolExecutor(
            max_workers=min(self.jobs, max(1, len(remote))),
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(portable, self.transcripts, counter, self.prices),
        )
        try:
            futures = {pool.submit(_run_task, task): task for task in remote}
            for task in tasks:  # fitters that cannot travel run here meanwhile
                if task[0] in local:
                    done[task] = self._run_here(task)
                    advance(task, done[task])
            for future in cf.as_completed(futures):
                task = futures[future]
                try:
                    _, result = future.result()
                except Exception as exc:  # a worker died: record it, keep going
                    result = self._failed(task, exc)
                done[task] = result
                advance(task, result)
        except BaseException:
            # Ctrl-C or a bug here: drop the queued units instead of running them all
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)

    def _failed(self, task: tuple[int, int, int, bool], exc: BaseException) -> TranscriptResult:
        fi, budget, ti, _ = task
        transcript = self.transcripts[ti]
        return _empty_result(
            self.fitters[fi], transcript, budget, error=_error_text(transcript, exc)
        )


class _progress:
    """Context manager yielding ``advance(task, result)``; a rich bar when enabled."""

    def __init__(self, enabled: bool, total: int):
        self.enabled = enabled
        self.total = total
        self._bar: Any = None

    def __enter__(self) -> Callable[[tuple[int, int, int, bool], TranscriptResult], None]:
        if not self.enabled:
            return lambda task, result: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]replay[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.description}"),
            console=Console(stderr=True),
        )
        self._bar.start()
        bar_task = self._bar.add_task("", total=self.total)

        def advance(task: tuple[int, int, int, bool], result: TranscriptResult) -> None:
            label = f"{result.config} @ {result.budget}: {result.transcript_id}"
            self._bar.update(bar_task, advance=1, description=label)

        return advance

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
