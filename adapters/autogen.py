"""AutoGen adapter: a model context that keeps the full history and returns what fits.

Two lines install ctxmgr into an AutoGen (0.4+) agent::

    context = ContextManagerContext.from_config("agent")
    agent = AssistantAgent(
        "assistant", context.wrap(model_client), tools=tools, model_context=context
    )

``context.wrap(model_client)`` fits every request at the model call: the agent's own system
message, the history, the tool round in progress and the tool schemas are all counted; the
window, tokenizer and provider come from the client's model; the reply's ``RequestUsage``
calibrates the next fit; a context-length refusal is refit and retried once.

:class:`ContextManagerContext` is a declarative ``ChatCompletionContext`` component:
``dump_component()`` stores the ctxmgr config as a dict and
``ChatCompletionContext.load_component(...)`` rebuilds it; ``save_state()`` /
``load_state()`` carry the messages *and* ctxmgr's ``SessionState`` (running summary,
notes, archive). Without ``wrap`` the context fits only its own view: the agent's
``system_message`` is prepended outside it, so give the system prompt to the context
(``system_message=``) and ``system_message=None`` to the agent in that case.

For AutoGen 0.2's ``transform_messages`` capability, :class:`ContextTransform` implements
the ``MessageTransform`` protocol on OpenAI-style dicts (no import of the old package).

The converters :func:`to_messages` / :func:`from_messages` map ``LLMMessage`` s to ctxmgr's
neutral :class:`~ctxmgr.messages.Message` and back without loss: a
``FunctionExecutionResultMessage`` becomes one tool message per result (call id, tool name,
``is_error`` kept) and is regrouped on the way back; ``source`` becomes ``name``; images
become ``image_url`` parts (data URIs); an ``AssistantMessage``'s ``thought`` is its text
when it carries function calls (as AutoGen's OpenAI client sends it), else kept in metadata.

Requires ``pip install "ctxmgr-llm[autogen]"``.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ctxmgr.adapters._common import (
    ConfigLike,
    adapter_metadata,
    content_parts,
    load_manager,
    missing_extra,
    note_functions,
    restore_originals,
    summary_prompt,
    unique_ids,
)
from ctxmgr.adapters._provider import (
    ManagerSpec,
    ModelFacts,
    ProviderOverflow,
    autogen_facts,
    context_length_error,
    manager_source,
    overflow_error,
    record_response,
)

try:
    from autogen_core import CancellationToken, Component, ComponentModel, FunctionCall, Image
    from autogen_core.model_context import ChatCompletionContext
    from autogen_core.models import (
        AssistantMessage,
        ChatCompletionClient,
        CreateResult,
        FunctionExecutionResult,
        FunctionExecutionResultMessage,
        LLMMessage,
        ModelInfo,
        RequestUsage,
        SystemMessage,
        UserMessage,
    )
    from autogen_core.tools import FunctionTool
    from pydantic import BaseModel, Field
    from typing_extensions import Self
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise missing_extra(
        "autogen", "AutoGen (autogen-agentchat, autogen-core, autogen-ext >= 0.4)"
    ) from exc

from ctxmgr.messages import (
    ContentPart,
    Message,
    ToolCall,
    messages_from_openai,
    to_openai,
)

if TYPE_CHECKING:
    from ctxmgr import ContextManager
    from ctxmgr.report import FitReport

__all__ = [
    "METADATA_KEY",
    "AutoGenSummarizer",
    "ContextManagerContext",
    "ContextManagerContextConfig",
    "ContextModelClient",
    "ContextTransform",
    "UnsupportedContentWarning",
    "from_messages",
    "context_tools",
    "note_tools",
    "to_messages",
]

METADATA_KEY = "autogen"
"""Key of :attr:`Message.metadata` holding what an ``LLMMessage`` needs to be rebuilt."""

PROVIDER = "ctxmgr.adapters.autogen.ContextManagerContext"
"""Provider path written by ``dump_component()``."""


class UnsupportedContentWarning(UserWarning):
    """A content part has no AutoGen equivalent and was left out (names the part type)."""


# ---------------------------------------------------------------------------------------
# Converters
# ---------------------------------------------------------------------------------------
def to_messages(messages: Sequence[LLMMessage]) -> list[Message]:
    """Convert AutoGen ``LLMMessage`` s (oldest first) to neutral messages.

    A ``FunctionExecutionResultMessage`` expands to one tool message per result. Function
    calls with an empty id (some models send none) get ``"ag-<index>-<j>"``, and results
    with an empty ``call_id`` are paired with the open call of the same name. Ids are
    derived from content; repeats get a ``"#<n>"`` suffix.

    Raises:
        TypeError: an item is not an ``LLMMessage``.
    """
    return _to_messages(messages, None)


_Cache = dict[tuple[int, int], tuple[LLMMessage, Any, list[Message]]]


def _signature(item: LLMMessage) -> Any:
    """What must be unchanged for a cached conversion of ``item`` to be reused."""
    content = item.content
    return (
        content if isinstance(content, str) else (id(content), len(content)),
        getattr(item, "thought", None),
        getattr(item, "source", None),
    )


def _to_messages(messages: Sequence[LLMMessage], cache: _Cache | None) -> list[Message]:
    """:func:`to_messages`, reusing conversions of unchanged objects from ``cache``.

    ``cache`` maps ``(id(obj), index)`` to ``(obj, signature, messages)`` and is updated in
    place to hold exactly this call's items.
    """
    out: list[Message] = []
    open_calls: list[ToolCall] = []
    fresh: _Cache = {}
    for index, item in enumerate(messages):
        key = (id(item), index)
        signature = _signature(item)
        hit = cache.get(key) if cache is not None else None
        if hit is not None and hit[0] is item and hit[1] == signature:
            converted = hit[2]
            for msg in converted:  # replay the bookkeeping of open calls
                open_calls.extend(msg.tool_calls)
                if msg.tool_call_id is not None:
                    open_calls = [c for c in open_calls if c.id != msg.tool_call_id]
            fresh[key] = hit
        else:
            converted = _convert(item, index, open_calls)
            if not any(m.metadata[METADATA_KEY].get("empty_call_id") for m in converted):
                fresh[key] = (item, signature, converted)
        out.extend(converted)
    if cache is not None:
        cache.clear()
        cache.update(fresh)
    return unique_ids(out)


def _convert(item: LLMMessage, index: int, open_calls: list[ToolCall]) -> list[Message]:
    """Convert one LLMMessage; updates ``open_calls`` (unanswered calls) in place."""
    extras: dict[str, Any] = {"type": item.type}
    if isinstance(item, SystemMessage):
        return [Message("system", item.content, metadata={METADATA_KEY: extras})]
    if isinstance(item, UserMessage):
        content: str | tuple[ContentPart, ...]
        if isinstance(item.content, str):
            content = item.content
        else:
            extras["list_content"] = True
            content = tuple(_part_in(p) for p in item.content)
        return [Message("user", content, name=item.source, metadata={METADATA_KEY: extras})]
    if isinstance(item, AssistantMessage):
        if isinstance(item.content, str):
            if item.thought is not None:
                extras["thought"] = item.thought
            return [
                Message(
                    "assistant", item.content, name=item.source, metadata={METADATA_KEY: extras}
                )
            ]
        calls = []
        synthetic = []
        for j, fc in enumerate(item.content):
            call_id = fc.id
            if not call_id:
                call_id = f"ag-{index}-{j}"
                synthetic.append(call_id)
            calls.append(ToolCall(call_id, fc.name, fc.arguments))
        open_calls.extend(calls)
        extras["calls"] = True
        extras["thought_none"] = item.thought is None
        if synthetic:
            extras["synthetic_ids"] = synthetic
        return [
            Message(
                "assistant",
                item.thought or "",
                tool_calls=tuple(calls),
                name=item.source,
                metadata={METADATA_KEY: extras},
            )
        ]
    if isinstance(item, FunctionExecutionResultMessage):
        out = []
        group = f"g{index}"
        for result in item.content:
            call_id = result.call_id
            extras = {"type": item.type, "group": group, "is_error": result.is_error}
            if not call_id:
                match = next((c for c in open_calls if c.name == result.name), None)
                match = match or (open_calls[0] if open_calls else None)
                if match is not None:
                    call_id = match.id
                    extras["empty_call_id"] = True
            open_calls[:] = [c for c in open_calls if c.id != call_id]
            out.append(
                Message(
                    "tool",
                    result.content,
                    tool_call_id=call_id,
                    name=result.name,
                    metadata={METADATA_KEY: extras},
                )
            )
        return out
    raise TypeError(f"not an AutoGen LLMMessage: {type(item).__name__}")


def _part_in(item: str | Image) -> ContentPart:
    if isinstance(item, str):
        return ContentPart("text", item)
    return ContentPart("image_url", "", {"image_url": {"url": item.data_uri}})


def _part_out(part: ContentPart) -> str | Image | None:
    if part.type == "text":
        return part.text
    image = part.data.get("image_url")
    if part.type == "image_url" and isinstance(image, Mapping):
        url = str(image.get("url", ""))
        if url.startswith("data:"):
            return Image.from_uri(url)
    warnings.warn(
        f"content part of type {part.type!r} cannot be sent in an AutoGen UserMessage "
        "(only text and data-URI images can); it was left out",
        UnsupportedContentWarning,
        stacklevel=4,
    )
    return None


def _text_out(message: Message, where: str) -> str:
    if isinstance(message.content, str):
        return message.content
    lost = sorted({p.type for p in message.content if p.type != "text"})
    if lost:
        warnings.warn(
            f"content parts of type {', '.join(map(repr, lost))} cannot be sent in an AutoGen "
            f"{where}; only their text was kept",
            UnsupportedContentWarning,
            stacklevel=4,
        )
    return message.text


def from_messages(messages: Sequence[Message], *, source: str = "ctxmgr") -> list[LLMMessage]:
    """Convert neutral messages (oldest first) to AutoGen ``LLMMessage`` s.

    Consecutive tool messages of one original result message (or, for other messages, any
    consecutive tool messages) are regrouped into one ``FunctionExecutionResultMessage``.
    Messages not made by :func:`to_messages` (e.g. a summary ctxmgr injected) map by role
    with ``source`` as their source. Parts AutoGen cannot hold are left out with an
    :class:`UnsupportedContentWarning` naming the part type.
    """
    out: list[LLMMessage] = []
    group: list[FunctionExecutionResult] = []
    group_key: object = None

    def flush() -> None:
        nonlocal group, group_key
        if group:
            out.append(FunctionExecutionResultMessage(content=group))
        group, group_key = [], None

    for message in messages:
        extras = adapter_metadata(message, METADATA_KEY)
        if message.role == "tool":
            key = extras.get("group", "foreign")
            if group and key != group_key:
                flush()
            group_key = key
            call_id = "" if extras.get("empty_call_id") else (message.tool_call_id or "")
            group.append(
                FunctionExecutionResult(
                    content=_text_out(message, "function result"),
                    name=message.name or "",
                    call_id=call_id,
                    is_error=extras.get("is_error"),
                )
            )
            continue
        flush()
        name = message.name or source
        if message.role == "system":
            out.append(SystemMessage(content=_text_out(message, "SystemMessage")))
        elif message.role == "user":
            if isinstance(message.content, str) and not extras.get("list_content"):
                out.append(UserMessage(content=message.content, source=name))
            else:
                parts = content_parts(message.content)
                items = [x for x in (_part_out(p) for p in parts) if x is not None]
                out.append(UserMessage(content=items, source=name))
        elif message.tool_calls:
            synthetic = set(extras.get("synthetic_ids", ()))
            calls = [
                FunctionCall(
                    id="" if c.id in synthetic else c.id, arguments=c.arguments, name=c.name
                )
                for c in message.tool_calls
            ]
            text = _text_out(message, "AssistantMessage")
            if extras:
                thought = None if (extras.get("thought_none") and not text) else text
            else:
                thought = text or None
            out.append(AssistantMessage(content=calls, thought=thought, source=name))
        else:
            out.append(
                AssistantMessage(
                    content=_text_out(message, "AssistantMessage"),
                    thought=extras.get("thought"),
                    source=name,
                )
            )
    flush()
    return out


def _fitted(result: Any, neutral: list[Message], llm: Sequence[LLMMessage]) -> list[LLMMessage]:
    """Map a fit result back to LLMMessages, reusing the original objects where unchanged."""
    index: dict[Message, int] = {m: i for i, m in enumerate(neutral)}
    # neutral position -> original LLMMessage (for non-expanded messages)
    owner: list[int] = []
    for i, item in enumerate(llm):
        size = len(item.content) if isinstance(item, FunctionExecutionResultMessage) else 1
        owner.extend([i] * size)
    out: list[LLMMessage] = []
    pending: list[Message] = []
    for message in result.messages:
        pos = index.get(message)
        if message.role == "tool" or pos is None:
            pending.append(message)
            continue
        if pending:
            out.extend(from_messages(pending))
            pending = []
        out.append(llm[owner[pos]])
    if pending:
        out.extend(from_messages(pending))
    return out


# ---------------------------------------------------------------------------------------
# Model context
# ---------------------------------------------------------------------------------------
class ContextManagerContextConfig(BaseModel):
    """Declarative config of :class:`ContextManagerContext`.

    Attributes:
        ctxmgr_config: the ctxmgr config as a dict (``mgr.config.model_dump(mode="json")``).
        system_message: the system prompt the context prepends (pinned, counted).
        initial_messages: messages the context starts with.
        summarizer_client: the model client of an :class:`AutoGenSummarizer`, as a component.
            Other summarizers and custom token counters are objects, not config: a loaded
            context uses the config's defaults for them.
    """

    ctxmgr_config: dict[str, Any] = Field(default_factory=dict)
    system_message: str | None = None
    initial_messages: list[LLMMessage] | None = None
    summarizer_client: ComponentModel | None = None


class ContextManagerContext(ChatCompletionContext, Component[ContextManagerContextConfig]):
    """An AutoGen model context whose ``get_messages()`` is ctxmgr's fitted view.

    Every added message is kept (``self._messages``, saved by ``save_state``);
    ``get_messages()`` fits ``[system_message] + messages`` and returns ``LLMMessage`` s.
    Build it with :meth:`from_config`.

    Args:
        manager: the ctxmgr manager for this context (one per agent / conversation).
        system_message: see :class:`ContextManagerContextConfig`.
        initial_messages: messages to start with.
        on_fit: optional callback receiving each FitReport.

    Attributes:
        last_report: the latest FitReport, or ``None``.
    """

    component_config_schema = ContextManagerContextConfig
    component_provider_override = PROVIDER

    def __init__(
        self,
        manager: ContextManager | ManagerSpec,
        *,
        system_message: str | None = None,
        initial_messages: list[LLMMessage] | None = None,
        on_fit: Callable[[FitReport], None] | None = None,
    ) -> None:
        super().__init__(initial_messages)
        self._conversions: _Cache = {}
        self._system: SystemMessage | None = None
        self._spec = manager if isinstance(manager, ManagerSpec) else None
        self._manager: ContextManager | None = None if self._spec is not None else manager  # type: ignore[assignment]
        self._facts: ModelFacts | None = None
        self._wrapped = False
        self._last_request: tuple[list[Message], list[LLMMessage], Any] = ([], [], None)
        self.system_message = system_message
        self.on_fit = on_fit
        self.last_report: FitReport | None = None

    @property
    def manager(self) -> ContextManager:
        """The ctxmgr manager of this context.

        Raises:
            ConfigError: no model client was wrapped yet and the config alone cannot size
                the window (pass ``max_context_tokens``, or use :meth:`wrap`).
        """
        if self._manager is None:
            assert self._spec is not None
            self._manager = self._spec.build(self._facts)
        return self._manager

    @manager.setter
    def manager(self, value: ContextManager) -> None:
        self._manager = value

    def _template(self) -> ContextManager:
        """The manager, or (window still unknown) a stand-in with the same strategies."""
        if self._manager is None and self._spec is not None and not self._spec.sized:
            return self._spec.build(ModelFacts(window=128_000))
        return self.manager

    def resolve(self, facts: ModelFacts) -> None:
        """Build the manager for the model ``facts`` describe, unless it already has state."""
        if self._spec is None or self._facts == facts:
            return
        if self._manager is not None and self._manager.state.turn:
            return
        self._facts = facts
        self._manager = self._spec.build(facts)

    def wrap(self, client: ChatCompletionClient) -> ContextModelClient:
        """Return ``client`` wrapped so every request it sends is fitted with this context.

        Give the result to the agent (``AssistantAgent(..., model_client=context.wrap(client),
        model_context=context)``). From then on :meth:`get_messages` returns the stored
        history unfitted and the wrapper fits the whole request (the agent's system message,
        history, in-progress tool round, tool schemas). The window, tokenizer and provider
        come from ``client``'s model unless the config sets them.

        Args:
            client: any AutoGen ``ChatCompletionClient``. Not mutated, except that an
                autogen-ext Anthropic client's ``AsyncAnthropic`` is replaced once by a
                proxy that merges consecutive user turns (see ``ContextModelClient``).

        Raises:
            ConfigError: the model's window is unknown (pass ``max_context_tokens``).
        """
        self.resolve(autogen_facts(client))
        self.manager  # noqa: B018 - fail now, not at the first call, when the window is unknown
        self._wrapped = True
        return ContextModelClient(client, self)

    @classmethod
    def from_config(
        cls,
        config: ConfigLike | ContextManager = "agent",
        *,
        summarizer: Any = None,
        counter: Any = None,
        system_message: str | None = None,
        initial_messages: list[LLMMessage] | None = None,
        on_fit: Callable[[FitReport], None] | None = None,
        **overrides: Any,
    ) -> ContextManagerContext:
        """Build a context from a preset name, a TOML/YAML path or a config dict.

        Args:
            config: as for ``ContextManager.from_config`` (or a ready ``ContextManager``).
            summarizer: e.g. ``AutoGenSummarizer(model_client)``.
            counter: token counter overriding the config's.
            system_message: the system prompt (pinned, counted).
            initial_messages: messages to start with.
            on_fit: optional callback receiving each FitReport.
            **overrides: config keys to override, e.g. ``max_context_tokens=8000``. Unset
                ``model`` / ``max_context_tokens`` / ``provider`` come from the client given
                to :meth:`wrap`.

        Raises:
            ConfigError: the config is invalid.
        """
        manager = manager_source(config, summarizer, counter, overrides, "ContextManagerContext")
        return cls(
            manager,
            system_message=system_message,
            initial_messages=initial_messages,
            on_fit=on_fit,
        )

    # -- component ---------------------------------------------------------------------------
    def _to_config(self) -> ContextManagerContextConfig:
        if self._manager is None and self._spec is not None:
            summarizer, config = self._spec.summarizer, self._spec.config
        else:
            summarizer, config = self.manager.summarizer, self.manager.config
        client = None
        if isinstance(summarizer, AutoGenSummarizer):
            dump = getattr(summarizer.client, "dump_component", None)
            if dump is not None:
                client = dump()
        return ContextManagerContextConfig(
            ctxmgr_config=config.model_dump(mode="json", exclude_none=True),
            system_message=self.system_message,
            initial_messages=self._initial_messages,
            summarizer_client=client,
        )

    @classmethod
    def _from_config(cls, config: ContextManagerContextConfig) -> Self:
        summarizer = None
        if config.summarizer_client is not None:
            summarizer = AutoGenSummarizer(
                ChatCompletionClient.load_component(config.summarizer_client)
            )
        manager = manager_source(
            config.ctxmgr_config, summarizer, None, None, "ContextManagerContext"
        )
        return cls(
            manager,
            system_message=config.system_message,
            initial_messages=config.initial_messages,
        )

    # -- context -----------------------------------------------------------------------------
    def _history(self) -> list[LLMMessage]:
        if not self.system_message:
            return list(self._messages)
        if self._system is None or self._system.content != self.system_message:
            self._system = SystemMessage(content=self.system_message)
        return [self._system, *self._messages]

    async def get_messages(self) -> list[LLMMessage]:
        """Return the fitted view of the history (system message first, when set).

        After :meth:`wrap`: the history unfitted (the wrapped client fits the request).
        """
        history = self._history()
        if self._wrapped:
            return history
        neutral = _to_messages(history, self._conversions)
        result = await self.manager.afit(neutral)
        return self._done(result, neutral, history)

    def _done(self, result: Any, neutral: list[Message], llm: list[LLMMessage]) -> list[LLMMessage]:
        self.last_report = result.report
        if self.on_fit is not None:
            self.on_fit(result.report)
        return _fitted(result, neutral, llm)

    async def _fit_request(
        self, messages: list[LLMMessage], tools: list[Mapping[str, Any]] | None
    ) -> list[LLMMessage]:
        """Fit one model request (what :class:`ContextModelClient` sends)."""
        neutral = _to_messages(messages, self._conversions)
        self._last_request = (neutral, messages, tools)
        result = await self.manager.afit(neutral, tools=tools)
        return self._done(result, neutral, messages)

    async def _refit_request(self, overflow: ProviderOverflow) -> list[LLMMessage]:
        """Refit the last request after the provider refused it as too long."""
        neutral, messages, tools = self._last_request
        result = await self.manager.arefit_after_overflow(
            neutral,
            tools=tools,
            provider_tokens=overflow.provider_tokens,
            provider_limit=overflow.provider_limit,
            message=overflow.message,
        )
        return self._done(result, neutral, messages)

    @property
    def messages(self) -> list[LLMMessage]:
        """Every stored message (the full history, without the system message)."""
        return list(self._messages)

    async def clear(self) -> None:
        """Clear the history and ctxmgr's state."""
        await super().clear()
        self.manager = self.manager.fork()
        self.last_report = None

    async def save_state(self) -> Mapping[str, Any]:
        """Return the messages and ctxmgr's ``SessionState`` as a JSON-able mapping."""
        state = dict(await super().save_state())
        state["ctxmgr_state"] = self.manager.state.to_dict()
        return state

    async def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore messages and ctxmgr's state saved by :meth:`save_state`."""
        await super().load_state({"messages": state.get("messages", [])})
        if state.get("ctxmgr_state") is not None:
            self.manager.load_state(state["ctxmgr_state"])
        else:
            self.manager = self.manager.fork()


# ---------------------------------------------------------------------------------------
# The model boundary
# ---------------------------------------------------------------------------------------
def _merged_user_turns(messages: Any) -> Any:
    """Merge consecutive ``user`` messages of an Anthropic request (tool results first)."""
    if not isinstance(messages, list):
        return messages
    out: list[dict[str, Any]] = []
    for message in messages:
        if out and message.get("role") == "user" and out[-1].get("role") == "user":
            blocks = [*_blocks(out[-1]["content"]), *_blocks(message["content"])]
            blocks.sort(key=lambda b: 0 if b.get("type") == "tool_result" else 1)
            out[-1] = {**out[-1], "content": blocks}
        else:
            out.append(message)
    return out


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    return [dict(block) for block in content]


class _MergingMessages:
    """``AsyncAnthropic.messages`` whose ``create`` merges consecutive user turns."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def create(self, **kwargs: Any) -> Any:
        kwargs["messages"] = _merged_user_turns(kwargs.get("messages"))
        return self._inner.create(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _MergingAnthropic:
    """An ``AsyncAnthropic`` proxy whose ``messages.create`` merges consecutive user turns."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.messages = _MergingMessages(inner.messages)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _merge_anthropic_user_turns(client: Any) -> None:
    """Make autogen-ext's Anthropic client send one user turn where it would send two.

    That client sends a ``FunctionExecutionResultMessage`` and the ``UserMessage`` after it
    as two consecutive ``user`` messages, which the Messages API's alternation rule rejects
    (https://docs.anthropic.com/en/api/messages); AutoGen's types cannot hold both in one
    message, so the merge happens on the wire: the client's ``AsyncAnthropic`` is replaced
    by a proxy (installed once) that merges them, ``tool_result`` blocks first.
    """
    inner = getattr(client, "_client", None)
    if (
        "anthropic" in type(client).__module__.lower()
        and inner is not None
        and hasattr(inner, "messages")
        and not isinstance(inner, _MergingAnthropic)
    ):
        client._client = _MergingAnthropic(inner)  # type: ignore[attr-defined]


def _tool_schemas(tools: Sequence[Any]) -> list[Mapping[str, Any]] | None:
    """AutoGen tools (``Tool`` objects or ``ToolSchema`` dicts) as OpenAI function tools."""
    out: list[Mapping[str, Any]] = []
    for tool in tools:
        schema = tool if isinstance(tool, Mapping) else getattr(tool, "schema", None)
        if isinstance(schema, Mapping):
            out.append({"type": "function", "function": dict(schema)})
    return out or None


class ContextModelClient(ChatCompletionClient):
    """An AutoGen model client that fits every request before the wrapped client sends it.

    Made by :meth:`ContextManagerContext.wrap`. ``create`` / ``create_stream`` fit the
    messages they are given (oldest first, not mutated: the agent's system message, the
    model context's history and the in-progress tool round) with the tool schemas of the
    call, using the context's manager. After each reply the ``RequestUsage`` and the
    ``finish_reason`` calibrate the next fit. If the provider answers
    context-length-exceeded, the request is compacted further and sent once more (the
    FitReport says ``recovered``); a second refusal raises ``ContextOverflowError`` with the
    provider's numbers. Everything else (``model_info``, usage totals, token counting,
    ``close``) is the wrapped client's.

    Args:
        client: the wrapped client.
        context: the :class:`ContextManagerContext` whose manager fits the requests.
    """

    def __init__(self, client: ChatCompletionClient, context: ContextManagerContext) -> None:
        self.client = client
        self.context = context
        _merge_anthropic_user_turns(client)

    def _fail(self, overflow: ProviderOverflow) -> Exception:
        return overflow_error(overflow, self.context.manager)

    async def create(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Any] = (),
        tool_choice: Any = "auto",
        json_output: Any = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> CreateResult:
        """Fit ``messages`` with ``tools`` counted, then the wrapped client's ``create``."""
        fitted = await self.context._fit_request(list(messages), _tool_schemas(tools))
        kwargs: dict[str, Any] = {
            "tools": tools,
            "tool_choice": tool_choice,
            "json_output": json_output,
            "extra_create_args": extra_create_args,
            "cancellation_token": cancellation_token,
        }
        try:
            result = await self.client.create(fitted, **kwargs)
        except Exception as exc:
            overflow = context_length_error(exc)
            if overflow is None:
                raise
            try:
                result = await self.client.create(
                    await self.context._refit_request(overflow), **kwargs
                )
            except Exception as again:
                second = context_length_error(again)
                if second is None:
                    raise
                raise self._fail(second) from again
        record_response(self.context.manager, result)
        return result

    async def create_stream(  # type: ignore[override]
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Any] = (),
        tool_choice: Any = "auto",
        json_output: Any = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> AsyncGenerator[str | CreateResult, None]:
        """Streaming :meth:`create` (a refusal before the first chunk is refit and retried)."""
        fitted = await self.context._fit_request(list(messages), _tool_schemas(tools))
        kwargs: dict[str, Any] = {
            "tools": tools,
            "tool_choice": tool_choice,
            "json_output": json_output,
            "extra_create_args": extra_create_args,
            "cancellation_token": cancellation_token,
        }
        retried = False
        while True:
            started = False
            try:
                async for chunk in self.client.create_stream(fitted, **kwargs):
                    started = True
                    if isinstance(chunk, CreateResult):
                        record_response(self.context.manager, chunk)
                    yield chunk
                return
            except Exception as exc:
                overflow = context_length_error(exc)
                if overflow is None or started:
                    raise
                if retried:
                    raise self._fail(overflow) from exc
                retried = True
                fitted = await self.context._refit_request(overflow)

    async def close(self) -> None:
        """Close the wrapped client."""
        await self.client.close()

    def actual_usage(self) -> RequestUsage:
        """The wrapped client's ``actual_usage()``."""
        return self.client.actual_usage()

    def total_usage(self) -> RequestUsage:
        """The wrapped client's ``total_usage()``."""
        return self.client.total_usage()

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Any] = ()) -> int:
        """The wrapped client's ``count_tokens``."""
        return self.client.count_tokens(messages, tools=tools)

    def remaining_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Any] = ()) -> int:
        """The wrapped client's ``remaining_tokens``."""
        return self.client.remaining_tokens(messages, tools=tools)

    @property
    def capabilities(self) -> Any:
        """The wrapped client's (deprecated) ``capabilities``."""
        return self.client.capabilities

    @property
    def model_info(self) -> ModelInfo:
        """The wrapped client's ``model_info``."""
        return self.client.model_info


# ---------------------------------------------------------------------------------------
# Summarizer
# ---------------------------------------------------------------------------------------
class AutoGenSummarizer:
    """A ctxmgr ``AsyncSummarizer`` (and ``Summarizer``) backed by an AutoGen model client.

    Sends one ``UserMessage`` holding ``prompt`` (default
    ``ctxmgr.summarizers.SUMMARY_PROMPT``) filled with the previous summary, the evicted
    messages and the token budget through ``client.create`` and returns the text.

    Args:
        client: any ``ChatCompletionClient``.
        prompt: a template with ``{previous}``, ``{transcript}`` and ``{max_tokens}``.
    """

    def __init__(self, client: ChatCompletionClient, *, prompt: str | None = None) -> None:
        self.client = client
        self.prompt = prompt

    async def asummarize(
        self, previous: str | None, messages: Sequence[Message], *, max_tokens: int
    ) -> str:
        """Return the running summary updated with ``messages`` (awaits ``client.create``)."""
        text = summary_prompt(self.prompt, previous, messages, max_tokens)
        result = await self.client.create(
            [UserMessage(content=text, source="ctxmgr")],
            cancellation_token=CancellationToken(),
        )
        content = result.content
        return (content if isinstance(content, str) else "").strip()

    def summarize(
        self, previous: str | None, messages: Sequence[Message], *, max_tokens: int
    ) -> str:
        """Blocking :meth:`asummarize`.

        Raises:
            RuntimeError: called from inside a running event loop (use ``afit`` there).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.asummarize(previous, messages, max_tokens=max_tokens))
        raise RuntimeError(
            "AutoGenSummarizer.summarize cannot block inside a running event loop; "
            "fit with `await manager.afit(...)` (ContextManagerContext does)"
        )


# ---------------------------------------------------------------------------------------
# AutoGen 0.2 transform
# ---------------------------------------------------------------------------------------
class ContextTransform:
    """AutoGen 0.2 ``MessageTransform``: fits OpenAI-style message dicts into the budget.

    Use it with 0.2's ``TransformMessages(transforms=[ContextTransform.from_config("agent")])``.
    Kept messages are returned as the dicts given (extra keys intact); changed or injected
    ones are new dicts. Note that 0.2 removes the leading system message before calling
    transforms, so it is not counted: lower ``max_context_tokens`` by its size.

    Args:
        manager: the ctxmgr manager (one per agent / conversation).

    Attributes:
        last_report: the latest FitReport, or ``None``.
    """

    def __init__(self, manager: ContextManager) -> None:
        self.manager = manager
        self.last_report: FitReport | None = None

    @classmethod
    def from_config(
        cls,
        config: ConfigLike | ContextManager = "agent",
        *,
        summarizer: Any = None,
        counter: Any = None,
        **overrides: Any,
    ) -> ContextTransform:
        """Build the transform from a preset name, a TOML/YAML path or a config dict."""
        return cls(load_manager(config, summarizer, counter, overrides))

    def apply_transform(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Return the fitted messages (OpenAI dicts, oldest first)."""
        neutral = unique_ids(messages_from_openai(messages))
        result = self.manager.fit(neutral)
        self.last_report = result.report
        return restore_originals(result.messages, neutral, messages, _openai_dict)

    def get_logs(
        self,
        pre_transform_messages: list[dict[str, Any]],
        post_transform_messages: list[dict[str, Any]],
    ) -> tuple[str, bool]:
        """Return a one-line account of the last transform and whether it changed anything."""
        changed = len(pre_transform_messages) != len(post_transform_messages) or any(
            a is not b and a != b
            for a, b in zip(pre_transform_messages, post_transform_messages, strict=False)
        )
        if not changed:
            return "ctxmgr: no change", False
        report = self.last_report
        detail = f"; {report}" if report is not None else ""
        return (
            f"ctxmgr: {len(pre_transform_messages)} -> {len(post_transform_messages)} "
            f"messages{detail}",
            True,
        )


def _openai_dict(message: Message) -> dict[str, Any]:
    """An OpenAI dict for a message the fit changed or injected, extra keys restored."""
    data = to_openai(message)
    known = {"openai_legacy_function", "ctxmgr"}
    data.update({k: v for k, v in message.metadata.items() if k not in known})
    return data


# ---------------------------------------------------------------------------------------
# Scratchpad tools
# ---------------------------------------------------------------------------------------
_NOTE_DESCRIPTIONS = {
    "write_note": "Save facts (one per item) under a short key in the scratchpad, replacing any "
    "note with that key; pointers say where more detail lives (paths, URLs, call ids).",
    "update_note": "Update a scratchpad note: new facts/pointers replace the old ones, or are "
    "added when append is true.",
    "delete_note": "Delete the scratchpad note with this key.",
    "read_notes": "Read scratchpad notes: all of them, or the one with this key.",
}


def note_tools(manager: ContextManager | ContextManagerContext) -> list[FunctionTool]:
    """Return ``write_note``, ``update_note``, ``delete_note`` and ``read_notes`` tools.

    Args:
        manager: a ``ContextManager`` (or a :class:`ContextManagerContext`, meaning its
            manager) whose ``scratchpad`` the tools act on.

    Raises:
        ConfigError: the manager has no ``scratchpad`` strategy configured.
    """
    functions = note_functions(
        lambda: manager.manager if isinstance(manager, ContextManagerContext) else manager,
        manager._template() if isinstance(manager, ContextManagerContext) else manager,
    )
    return [FunctionTool(fn, _NOTE_DESCRIPTIONS[fn.__name__], name=fn.__name__) for fn in functions]


def context_tools(manager: ContextManager | ContextManagerContext) -> list[FunctionTool]:
    """Return the ``search_history``, ``get_message`` and ``compact_context`` tools.

    ``search_history`` ranks archived (evicted, cleared, offloaded) messages by BM25,
    ``get_message`` reads one by id in pages, ``compact_context`` requests a compaction
    on the next fit (see :mod:`ctxmgr.tools`).

    Args:
        manager: a ``ContextManager`` (or a :class:`ContextManagerContext`, meaning its
            manager) the tools act on.
    """
    from ctxmgr.tools import compaction_function, recall_functions

    def current() -> ContextManager:
        return manager.manager if isinstance(manager, ContextManagerContext) else manager

    functions = [*recall_functions(current), compaction_function(current)]
    return [
        FunctionTool(fn, (fn.__doc__ or fn.__name__).strip().splitlines()[0], name=fn.__name__)
        for fn in functions
    ]
