"""The :class:`~ctxmgr.bench.fitter.Fitter` for ctxmgr's own configs (presets and files)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctxmgr.messages import Message

if TYPE_CHECKING:
    from ctxmgr.bench.transcript import Transcript
    from ctxmgr.tokens import TokenCounter

__all__ = ["CtxmgrFitter", "CtxmgrSession"]

ConfigSource = str | Path | Mapping[str, Any]


class CtxmgrSession:
    """One :class:`~ctxmgr.manager.ContextManager` replaying one transcript.

    Attributes:
        manager: the manager (its state is this session's state).
        summarizer_calls: summarizer calls so far: the ``summarize`` strategy's own
            counter (``manager.state.extra["summarize"]["calls"]``) when the config has
            that strategy, else the number of fits whose report lists summarized segments.
    """

    def __init__(self, manager: Any, summarized_fits: int = 0):
        self.manager = manager
        self._summarized_fits = summarized_fits
        self.summarizer_calls = self._calls()

    def _calls(self) -> int:
        data = self.manager.state.extra.get("summarize")
        if isinstance(data, Mapping) and isinstance(data.get("calls"), int):
            return int(data["calls"])
        return self._summarized_fits

    def fit(self, history: Sequence[Message]) -> list[Message]:
        """Return ``manager.fit(history).messages`` and update :attr:`summarizer_calls`."""
        result = self.manager.fit(history)
        if result.report.summarized:
            self._summarized_fits += 1
        self.summarizer_calls = self._calls()
        return list(result.messages)

    def fork(self) -> CtxmgrSession:
        """Return a session over ``manager.clone()`` (a deep copy of the current state)."""
        return CtxmgrSession(self.manager.clone(), self._summarized_fits)


class CtxmgrFitter:
    """A ctxmgr config under benchmark.

    The config is a preset name (``"fifo"``, ``"relevance"``, ``"summary"``, ``"agent"``),
    a path to a ``.toml``/``.yaml`` config file, or a config dict, exactly as
    :meth:`ContextManager.from_config` accepts. The manager is only built in
    :meth:`start`, so a fitter is cheap to create and pickles (for worker processes).

    Each session's manager gets ``max_context_tokens=budget`` and
    ``reserve_output_tokens=0``: the benchmark budget IS the effective limit (ctxmgr's
    ``max_context_tokens - reserve_output_tokens``), the same number every peer is given,
    so budget violations are comparable. It also gets the run's token counter.

    Attributes:
        name: row label (the preset name, or the config file's stem).
        kind: ``"ctxmgr"``.
        notes: caveats for the report (default :attr:`DEFAULT_NOTES`).
        config: the config source.
    """

    kind = "ctxmgr"
    DEFAULT_NOTES = (
        "max_context_tokens=budget, reserve_output_tokens=0: the budget is the effective "
        "limit. A summarize strategy uses the config's summarizer (offline extractive by "
        "default), so summaries are extracts, not LLM summaries."
    )

    def __init__(self, name: str, config: ConfigSource | None = None, notes: str | None = None):
        self.name = name
        self.config: ConfigSource = name if config is None else config
        if isinstance(self.config, Mapping):
            self.config = dict(self.config)
        self.notes = self.DEFAULT_NOTES if notes is None else notes

    @classmethod
    def from_source(cls, source: str | Path) -> CtxmgrFitter:
        """Build from a preset name or a config path (named after the file's stem)."""
        if isinstance(source, Path) or any(sep in str(source) for sep in "/\\."):
            path = Path(source)
            return cls(path.stem, path)
        return cls(str(source))

    def start(self, transcript: Transcript, budget: int, counter: TokenCounter) -> CtxmgrSession:
        """Open a session: a fresh manager with the budget as its effective limit."""
        from ctxmgr.manager import ContextManager  # imported late: keeps the import cheap

        manager = ContextManager.from_config(
            self.config,
            max_context_tokens=budget,
            reserve_output_tokens=0,
            counter=counter,
        )
        return CtxmgrSession(manager)

    def __repr__(self) -> str:
        return f"CtxmgrFitter({self.name!r}, {self.config!r})"
