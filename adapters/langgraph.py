"""LangGraph prebuilt adapter: fit every model call of ``create_react_agent``.

One line installs ctxmgr into a LangGraph prebuilt ReAct agent::

    hook = ContextHook.from_config("agent", system_prompt="You are ...")
    agent = create_react_agent(model, tools, pre_model_hook=hook, checkpointer=saver)

The hook runs before every model call and returns ``{"llm_input_messages": fitted}``: the
graph state (``messages``) keeps the whole history, the model receives the fitted view.
Give the system prompt to the hook, not as ``prompt=`` to ``create_react_agent``: LangGraph
adds ``prompt`` after the hook, so a prompt given there is neither counted nor pinned.
ctxmgr state (running summary, notes, archive) is kept per ``thread_id`` of the run's
config, as in :class:`ctxmgr.adapters.langchain.ContextRunnable`, which the hook extends.

For ``langchain.agents.create_agent`` use
:class:`ctxmgr.adapters.langchain.ContextMiddleware` instead. The converters are LangChain's
(:func:`to_messages` / :func:`from_messages`, re-exported here), as are
:class:`LangChainSummarizer` and :func:`note_tools`.

Requires ``pip install "ctxmgr-llm[langchain]"`` (LangChain brings ``langgraph``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ctxmgr.adapters._common import ConfigLike, load_manager, missing_extra

try:
    import langgraph.prebuilt  # noqa: F401  (the framework this adapter targets)
    from langchain_core.messages import BaseMessage, SystemMessage
    from langchain_core.runnables import RunnableConfig
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise missing_extra("langchain", "LangGraph (langgraph, langchain-core>=1.0)") from exc

from ctxmgr.adapters.langchain import (
    ContextRunnable,
    FitCallback,
    LangChainSummarizer,
    _thread_from_config,
    from_message,
    from_messages,
    note_tools,
    to_message,
    to_messages,
)

if TYPE_CHECKING:
    from ctxmgr import ContextManager

__all__ = [
    "ContextHook",
    "LangChainSummarizer",
    "from_message",
    "from_messages",
    "note_tools",
    "to_message",
    "to_messages",
]


def _state_messages(state: Any) -> list[BaseMessage]:
    """The ``messages`` of a graph state (a dict, or a pydantic state schema)."""
    messages = (
        state.get("messages") if isinstance(state, Mapping) else getattr(state, "messages", None)
    )
    if messages is None:
        raise ValueError(f"pre_model_hook expected a state with 'messages', got {state!r}")
    return list(messages)


class ContextHook(ContextRunnable):
    """A ``pre_model_hook`` for ``langgraph.prebuilt.create_react_agent``.

    Input: the graph state (oldest-first ``messages``); output:
    ``{"llm_input_messages": fitted}``, so the state is not changed (LangGraph's documented
    way to trim only what the model sees). The system prompt, when given, is put first and
    is part of what is fitted (counted, pinned). The state is never mutated. State is kept
    per ``config["configurable"]["thread_id"]`` (else ``"default"``); ``invoke`` /
    ``ainvoke`` serve sync and async graphs (the async path awaits an async summarizer).

    Args:
        manager: the template manager; each thread gets ``manager.fork()``.
        system_prompt: the agent's system prompt (text or a ``SystemMessage``), or ``None``
            when the state's messages already start with one.
        max_threads: at most this many threads keep state; ``None`` for no bound.
        on_fit: optional ``on_fit(thread_id, report)`` called after each fit.
    """

    def __init__(
        self,
        manager: ContextManager,
        *,
        system_prompt: str | SystemMessage | None = None,
        max_threads: int | None = 10_000,
        on_fit: FitCallback | None = None,
    ) -> None:
        super().__init__(manager, max_threads=max_threads, on_fit=on_fit)
        if isinstance(system_prompt, str):
            system_prompt = SystemMessage(system_prompt, id="ctxmgr-system-prompt")
        self.system_prompt = system_prompt

    @classmethod
    def from_config(  # type: ignore[override]
        cls,
        config: ConfigLike | ContextManager = "agent",
        *,
        system_prompt: str | SystemMessage | None = None,
        summarizer: Any = None,
        counter: Any = None,
        max_threads: int | None = 10_000,
        on_fit: FitCallback | None = None,
        **overrides: Any,
    ) -> ContextHook:
        """Build the hook from a preset name, a TOML/YAML path or a config dict.

        Args:
            config: as for ``ContextManager.from_config`` (or a ready ``ContextManager``).
            system_prompt: see the class docstring.
            summarizer: e.g. ``LangChainSummarizer(model)``.
            counter: token counter overriding the config's.
            max_threads: see the class docstring.
            on_fit: see the class docstring.
            **overrides: config keys to override, e.g. ``max_context_tokens=8000``.
        """
        manager = load_manager(config, summarizer, counter, overrides)
        return cls(manager, system_prompt=system_prompt, max_threads=max_threads, on_fit=on_fit)

    def threads(self) -> list[str]:
        """Thread ids that currently have ctxmgr state."""
        return self._fitter.pool.keys()

    def _with_system(self, state: Any) -> list[BaseMessage]:
        messages = _state_messages(state)
        if self.system_prompt is None:
            return messages
        return [self.system_prompt, *messages]

    def invoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, list[BaseMessage]]:
        """Return ``{"llm_input_messages": <fitted messages>}`` for graph state ``input``."""
        key = _thread_from_config(config)

        def run(state: Any) -> dict[str, list[BaseMessage]]:
            return {"llm_input_messages": self._fitter.fit(key, self._with_system(state))}

        return self._call_with_config(run, input, config, run_type="prompt")  # type: ignore[no-any-return]

    async def ainvoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, list[BaseMessage]]:
        """Async :meth:`invoke`; awaits an async summarizer when one is set."""
        key = _thread_from_config(config)

        async def run(state: Any) -> dict[str, list[BaseMessage]]:
            fitted = await self._fitter.afit(key, self._with_system(state))
            return {"llm_input_messages": fitted}

        return await self._acall_with_config(run, input, config, run_type="prompt")  # type: ignore[no-any-return]
