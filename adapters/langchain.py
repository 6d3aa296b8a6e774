"""LangChain adapter: keep a LangChain agent's or chain's context inside a token budget.

One line installs ctxmgr into a LangChain app:

* agents (``langchain.agents.create_agent``)::

      agent = create_agent(model, tools, middleware=[ContextMiddleware.from_config("agent")])

* LCEL chains (the runnable fits the prompt, then calls the model)::

      chain = prompt | ContextRunnable.from_config("agent", model=model)

* ``RunnableWithMessageHistory``::

      get_history = ManagedChatMessageHistory.session_factory("agent", model=model)
      chain = RunnableWithMessageHistory(runnable, get_history)

The model's name, context window (``profile["max_input_tokens"]``) and provider size the
budget unless the config sets ``max_context_tokens`` / ``model`` / ``provider``; the tools
bound to the call are counted; the reply's ``usage_metadata`` calibrates the next fit and
its stop reason grows the reply reserve after a cut; a provider's context-length refusal is
refit and retried once (middleware and ``ContextRunnable(model=...)``).

Every entry point keeps one ctxmgr state per conversation (a ``mgr.fork()`` per
``thread_id`` / ``session_id``), sends the model the fitted view, and leaves the full history
where LangChain keeps it (graph state, the inner chat history).

The converters :func:`to_message` / :func:`from_message` (and the list forms
:func:`to_messages` / :func:`from_messages`) map LangChain messages to ctxmgr's neutral
:class:`~ctxmgr.messages.Message` and back without loss: tool calls (valid and invalid),
tool results, names, ids, every extra field (``additional_kwargs``, ``response_metadata``,
``usage_metadata``, ``artifact``, ``status``...) and multimodal content blocks (kept
verbatim as :class:`~ctxmgr.messages.ContentPart`).

Requires ``pip install "ctxmgr-llm[langchain]"``.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ctxmgr.adapters._common import (
    ConfigLike,
    Conversation,
    ConversationPool,
    fork_for,
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
    context_length_error,
    langchain_facts,
    manager_source,
    overflow_error,
    record_response,
)

try:
    from langchain.agents.middleware import (
        AgentMiddleware,
        ModelRequest,
        ModelResponse,
    )
    from langchain_core.chat_history import BaseChatMessageHistory
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import (
        AIMessage,
        AIMessageChunk,
        BaseMessage,
        ChatMessage,
        ChatMessageChunk,
        FunctionMessage,
        FunctionMessageChunk,
        HumanMessage,
        HumanMessageChunk,
        SystemMessage,
        SystemMessageChunk,
        ToolMessage,
        ToolMessageChunk,
        convert_to_messages,
    )
    from langchain_core.prompt_values import ChatPromptValue, PromptValue
    from langchain_core.runnables import Runnable, RunnableConfig
    from langchain_core.runnables.config import ensure_config
    from langchain_core.tools import BaseTool, StructuredTool
    from langchain_core.utils.function_calling import convert_to_openai_tool
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise missing_extra("langchain", "LangChain (langchain>=1.0, langchain-core>=1.0)") from exc

from ctxmgr.messages import ContentPart, Message, ToolCall

if TYPE_CHECKING:
    from ctxmgr import ContextManager
    from ctxmgr.report import FitReport

__all__ = [
    "METADATA_KEY",
    "ContextMiddleware",
    "ContextRunnable",
    "LangChainSummarizer",
    "ManagedChatMessageHistory",
    "from_message",
    "from_messages",
    "context_tools",
    "note_tools",
    "to_message",
    "to_messages",
]

METADATA_KEY = "langchain"
"""Key of :attr:`Message.metadata` holding what a LangChain message needs to be rebuilt."""

DEFAULT_THREAD = "default"
"""Conversation key used when a call carries no ``thread_id`` / ``session_id``."""

FitCallback = Callable[[str, "FitReport"], None]
"""``on_fit(thread_id, report)``: called after every fit."""

# ---------------------------------------------------------------------------------------
# Converters
# ---------------------------------------------------------------------------------------
_HANDLED_FIELDS = frozenset({"content", "tool_calls", "tool_call_id", "name", "type"})
_CLASSES: dict[str, type[BaseMessage]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        HumanMessage,
        AIMessage,
        SystemMessage,
        ToolMessage,
        FunctionMessage,
        ChatMessage,
        HumanMessageChunk,
        AIMessageChunk,
        SystemMessageChunk,
        ToolMessageChunk,
        FunctionMessageChunk,
        ChatMessageChunk,
    )
}
_CHAT_ROLES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "system": "system",
    "developer": "system",
    "tool": "tool",
    "function": "tool",
}
_ROLE_CLASSES: dict[str, type[BaseMessage]] = {
    "system": SystemMessage,
    "user": HumanMessage,
    "assistant": AIMessage,
    "tool": ToolMessage,
}


def _role_of(message: BaseMessage) -> str:
    if isinstance(message, AIMessage):
        return "assistant"
    if isinstance(message, HumanMessage):
        return "user"
    if isinstance(message, SystemMessage):
        return "system"
    if isinstance(message, (ToolMessage, FunctionMessage)):
        return "tool"
    if isinstance(message, ChatMessage):
        return _CHAT_ROLES.get(str(message.role).lower(), "user")
    raise TypeError(
        f"cannot convert {type(message).__name__} (type {message.type!r}) to a ctxmgr Message"
    )


def _content_in(content: Any) -> tuple[str | tuple[ContentPart, ...], list[int]]:
    """Return neutral content and the indices of list items that were bare strings."""
    if isinstance(content, str):
        return content, []
    parts: list[ContentPart] = []
    bare: list[int] = []
    for i, item in enumerate(content):
        if isinstance(item, str):
            parts.append(ContentPart("text", item))
            bare.append(i)
        elif isinstance(item, Mapping) and isinstance(item.get("type"), str):
            ptype = item["type"]
            if ptype == "text" and isinstance(item.get("text"), str):
                rest = {k: v for k, v in item.items() if k not in ("type", "text")}
                parts.append(ContentPart("text", item["text"], rest))
            else:
                parts.append(ContentPart(ptype, "", {k: v for k, v in item.items() if k != "type"}))
        else:
            # A block without a string "type": keep it whole.
            parts.append(ContentPart("langchain_raw", "", {"block": item}))
    return tuple(parts), bare


def _content_out(content: str | tuple[ContentPart, ...], bare: Sequence[int]) -> Any:
    if isinstance(content, str):
        return content
    out: list[Any] = []
    for i, part in enumerate(content):
        if part.type == "text":
            if i in bare and not part.data:
                out.append(part.text)
            else:
                out.append({"type": "text", "text": part.text, **dict(part.data)})
        elif part.type == "langchain_raw" and "block" in part.data:
            out.append(part.data["block"])
        else:
            out.append({"type": part.type, **dict(part.data)})
    return out


def _arguments(args: Any) -> str:
    if isinstance(args, str):
        return args
    return json.dumps(args if args is not None else {}, ensure_ascii=False)


def to_message(message: BaseMessage, *, index: int | None = None) -> Message:
    """Convert one LangChain message to a neutral :class:`Message`.

    Everything the neutral type has no field for is kept under
    ``metadata["langchain"]``, so :func:`from_message` rebuilds an equal message.
    Invalid tool calls become tool calls too (providers send them, and tool results answer
    them), flagged so they come back as ``invalid_tool_calls``. Calls without an id get a
    synthetic one (``"lc-<message id>-<j>"``), restored to ``None`` on the way back.
    A ``metadata["ctxmgr"]`` marker found in ``response_metadata`` is copied to the
    neutral metadata.

    Args:
        message: any ``BaseMessage`` (chunks included).
        index: position in its list, used to name synthetic call ids.

    Raises:
        TypeError: the message type has no neutral role (e.g. ``RemoveMessage``).
    """
    role = _role_of(message)
    content, bare = _content_in(message.content)
    extras: dict[str, Any] = {
        name: getattr(message, name)
        for name in type(message).model_fields
        if name not in _HANDLED_FIELDS
    }
    extras["type"] = message.type
    if bare:
        extras["bare_text_parts"] = bare
    base_id = message.id or (f"i{index}" if index is not None else "x")
    calls: list[ToolCall] = []
    synthetic: list[str] = []
    if isinstance(message, AIMessage):
        for j, call in enumerate(message.tool_calls):
            call_id = call.get("id")
            if not call_id:
                call_id = f"lc-{base_id}-{j}"
                synthetic.append(call_id)
            calls.append(ToolCall(call_id, call["name"], _arguments(call.get("args"))))
        invalid: list[str] = []
        for j, bad in enumerate(message.invalid_tool_calls):
            call_id = bad.get("id")
            if not call_id:
                call_id = f"lc-{base_id}-invalid-{j}"
                synthetic.append(call_id)
            invalid.append(call_id)
            calls.append(ToolCall(call_id, bad.get("name") or "", bad.get("args") or ""))
        if invalid:
            extras["invalid_ids"] = invalid
        legacy = message.additional_kwargs.get("function_call")
        if not calls and isinstance(legacy, Mapping) and legacy.get("name"):
            call_id = f"fc-{base_id}"
            calls.append(
                ToolCall(call_id, str(legacy["name"]), _arguments(legacy.get("arguments")))
            )
            extras["legacy_function_call"] = call_id
    if synthetic:
        extras["synthetic_ids"] = synthetic
    tool_call_id = getattr(message, "tool_call_id", None) if role == "tool" else None
    metadata: dict[str, Any] = {METADATA_KEY: extras}
    marker = message.response_metadata.get("ctxmgr") if message.response_metadata else None
    if marker is not None:
        metadata["ctxmgr"] = marker
    return Message(
        role=role,  # type: ignore[arg-type]
        content=content,
        tool_calls=tuple(calls),
        tool_call_id=tool_call_id,
        name=message.name,
        id=message.id or "",
        metadata=metadata,
    )


def to_messages(messages: Sequence[BaseMessage | Any]) -> list[Message]:
    """Convert LangChain messages (oldest first) to neutral messages.

    Besides :func:`to_message`: message-like values (tuples, dicts, strings) are first
    converted with ``convert_to_messages``; legacy ``FunctionMessage`` replies are paired
    with the preceding ``function_call``; and messages without a LangChain id whose derived
    ids collide get a ``"#<n>"`` suffix (``n``-th repeat), so ids are unique and stay stable
    as the history grows.
    """
    return _to_messages(messages, None)


_Cache = dict[tuple[int, int], tuple[BaseMessage, Any, Message]]


def _to_messages(messages: Sequence[BaseMessage | Any], cache: _Cache | None) -> list[Message]:
    """:func:`to_messages`, reusing conversions of the same objects from ``cache``.

    ``cache`` maps ``(id(obj), index)`` to ``(obj, obj.content, converted)``; it is updated
    in place to hold exactly this call's messages, so it never outgrows the history.
    """
    items = [m if isinstance(m, BaseMessage) else convert_to_messages([m])[0] for m in messages]
    out: list[Message] = []
    open_legacy: list[ToolCall] = []
    fresh: _Cache = {}
    for index, item in enumerate(items):
        key = (id(item), index)
        hit = cache.get(key) if cache is not None else None
        if hit is not None and hit[0] is item and hit[1] is item.content:
            msg = hit[2]
        else:
            msg = to_message(item, index=index)
        fresh[key] = (item, item.content, msg)
        extras = msg.metadata[METADATA_KEY]
        if extras.get("legacy_function_call"):
            open_legacy.extend(c for c in msg.tool_calls if c.id == extras["legacy_function_call"])
        if isinstance(item, FunctionMessage) and msg.tool_call_id is None and open_legacy:
            match = next((c for c in reversed(open_legacy) if c.name == item.name), None)
            match = match or open_legacy[-1]
            open_legacy.remove(match)
            msg = msg.evolve(tool_call_id=match.id, id=msg.id)
        out.append(msg)
    if cache is not None:
        cache.clear()
        cache.update(fresh)
    return unique_ids(out)


def _copy(value: Any) -> Any:
    try:
        return copy.deepcopy(value)
    except Exception:  # uncopyable artifacts: share them
        return value


def from_message(message: Message) -> BaseMessage:
    """Convert a neutral :class:`Message` to a LangChain message.

    A message made by :func:`to_message` comes back equal to the original (same class, id
    and extra fields), with any changes ctxmgr made to its content. Other messages (e.g. a
    summary ctxmgr injected) map by role to ``SystemMessage`` / ``HumanMessage`` /
    ``AIMessage`` / ``ToolMessage`` with ``id=message.id``; their ``metadata["ctxmgr"]``
    marker goes to ``response_metadata["ctxmgr"]`` (never sent to providers).
    """
    extras = message.metadata.get(METADATA_KEY)
    if not isinstance(extras, Mapping):
        return _from_foreign(message)
    cls = _CLASSES.get(extras.get("type", ""), _ROLE_CLASSES[message.role])
    kwargs: dict[str, Any] = {
        k: _copy(v) for k, v in extras.items() if k in cls.model_fields and k not in _HANDLED_FIELDS
    }
    kwargs["content"] = _content_out(message.content, extras.get("bare_text_parts", ()))
    if message.name is not None or "name" in cls.model_fields:
        kwargs["name"] = message.name
    synthetic = set(extras.get("synthetic_ids", ()))
    if issubclass(cls, AIMessage):
        invalid_ids = set(extras.get("invalid_ids", ()))
        legacy_id = extras.get("legacy_function_call")
        kwargs["tool_calls"] = [
            {
                "name": c.name,
                "args": _parsed_args(c),
                "id": None if c.id in synthetic else c.id,
                "type": "tool_call",
            }
            for c in message.tool_calls
            if c.id not in invalid_ids and c.id != legacy_id
        ]
        present = {c.id for c in message.tool_calls}
        stored_invalid = list(extras.get("invalid_tool_calls") or [])
        kept_invalid = []
        for j, bad in enumerate(stored_invalid):
            bad_id = bad.get("id") or _synthetic_invalid_id(extras, j)
            if bad_id in present:
                kept_invalid.append(_copy(bad))
        kwargs["invalid_tool_calls"] = kept_invalid
    if issubclass(cls, ToolMessage):
        kwargs["tool_call_id"] = message.tool_call_id or ""
    return cls(**kwargs)


def _synthetic_invalid_id(extras: Mapping[str, Any], j: int) -> str:
    for sid in extras.get("synthetic_ids", ()):
        if sid.endswith(f"-invalid-{j}"):
            return str(sid)
    return ""


def _parsed_args(call: ToolCall) -> dict[str, Any]:
    value = call.parsed_arguments()
    return value if isinstance(value, dict) else {"__arg1": value}


def _from_foreign(message: Message) -> BaseMessage:
    content = _content_out(message.content, ())
    response_metadata: dict[str, Any] = {}
    if "ctxmgr" in message.metadata:
        response_metadata["ctxmgr"] = message.metadata["ctxmgr"]
    common: dict[str, Any] = {
        "content": content,
        "id": message.id,
        "name": message.name,
        "response_metadata": response_metadata,
    }
    if message.role == "system":
        return SystemMessage(**common)
    if message.role == "user":
        return HumanMessage(**common)
    if message.role == "assistant":
        return AIMessage(
            **common,
            tool_calls=[
                {"name": c.name, "args": _parsed_args(c), "id": c.id, "type": "tool_call"}
                for c in message.tool_calls
            ],
        )
    return ToolMessage(**common, tool_call_id=message.tool_call_id or "")


def from_messages(messages: Sequence[Message]) -> list[BaseMessage]:
    """Convert neutral messages (oldest first) to LangChain messages with :func:`from_message`."""
    return [from_message(m) for m in messages]


# ---------------------------------------------------------------------------------------
# Per-conversation managers
# ---------------------------------------------------------------------------------------
class _Fitter:
    """Shared fitting machinery: convert, fit on the conversation's fork, convert back.

    Sync fits of one conversation are serialized; async fits of one conversation must
    not overlap (a conversation is one agent loop).
    """

    def __init__(
        self,
        manager: ContextManager | ManagerSpec,
        *,
        max_threads: int | None = 10_000,
        on_fit: FitCallback | None = None,
    ) -> None:
        self.pool = ConversationPool(manager, max_threads)
        self.on_fit = on_fit
        # key -> (neutral, originals, tools) of the conversation's last fit, for a refit
        self._last: dict[str, tuple[list[Message], list[BaseMessage], Any]] = {}
        self._schemas: dict[int, tuple[Any, Mapping[str, Any]]] = {}

    def _finish(
        self,
        key: str,
        conversation: Conversation,
        result: Any,
        neutral: list[Message],
        originals: Sequence[BaseMessage],
    ) -> list[BaseMessage]:
        conversation.report = result.report
        if self.on_fit is not None:
            self.on_fit(key, result.report)
        return restore_originals(result.messages, neutral, originals, from_message)

    def schemas(self, tools: Sequence[Any] | None) -> list[Mapping[str, Any]] | None:
        """Tool definitions as JSON-able mappings (``BaseTool`` s converted once each)."""
        if not tools:
            return None
        out: list[Mapping[str, Any]] = []
        for item in tools:
            if isinstance(item, Mapping):
                out.append(item)
                continue
            hit = self._schemas.get(id(item))
            if hit is None or hit[0] is not item:
                hit = self._schemas[id(item)] = (item, convert_to_openai_tool(item))
            out.append(hit[1])
        return out

    def fit(
        self,
        key: str,
        messages: Sequence[BaseMessage],
        tools: Sequence[Mapping[str, Any]] | None = None,
        facts: ModelFacts | None = None,
    ) -> list[BaseMessage]:
        if facts is not None:
            self.pool.resolve(facts)
        conversation = self.pool.get(key)
        with conversation.lock:
            neutral = _to_messages(messages, conversation.cache)
            result = conversation.manager.fit(neutral, tools=tools)
            self._last[key] = (neutral, list(messages), tools)
            return self._finish(key, conversation, result, neutral, messages)

    async def afit(
        self,
        key: str,
        messages: Sequence[BaseMessage],
        tools: Sequence[Mapping[str, Any]] | None = None,
        facts: ModelFacts | None = None,
    ) -> list[BaseMessage]:
        if facts is not None:
            self.pool.resolve(facts)
        conversation = self.pool.get(key)
        neutral = _to_messages(messages, conversation.cache)
        result = await conversation.manager.afit(neutral, tools=tools)
        self._last[key] = (neutral, list(messages), tools)
        return self._finish(key, conversation, result, neutral, messages)

    def _refit_args(self, overflow: ProviderOverflow) -> dict[str, Any]:
        return {
            "provider_tokens": overflow.provider_tokens,
            "provider_limit": overflow.provider_limit,
            "message": overflow.message,
        }

    def refit(self, key: str, overflow: ProviderOverflow) -> list[BaseMessage]:
        """Refit the conversation's last request after the provider refused it as too long."""
        conversation = self.pool.get(key)
        neutral, originals, tools = self._last[key]
        with conversation.lock:
            result = conversation.manager.refit_after_overflow(
                neutral, tools=tools, **self._refit_args(overflow)
            )
            return self._finish(key, conversation, result, neutral, originals)

    async def arefit(self, key: str, overflow: ProviderOverflow) -> list[BaseMessage]:
        """Async :meth:`refit`."""
        conversation = self.pool.get(key)
        neutral, originals, tools = self._last[key]
        result = await conversation.manager.arefit_after_overflow(
            neutral, tools=tools, **self._refit_args(overflow)
        )
        return self._finish(key, conversation, result, neutral, originals)

    def record(self, key: str, response: Any) -> None:
        """Feed the reply's usage and stop reason to the conversation's manager."""
        reply = _reply_of(response)
        if reply is not None:
            record_response(self.pool.get(key).manager, reply)

    def fail(self, key: str, overflow: ProviderOverflow) -> Exception:
        """The error raised when the retry after an overflow was refused too."""
        return overflow_error(overflow, self.pool.get(key).manager)


def _reply_of(response: Any) -> AIMessage | None:
    """The AIMessage of a model call's result (``ModelResponse``, a message or a list)."""
    if isinstance(response, AIMessage):
        return response
    items = getattr(response, "result", response)
    if isinstance(items, Sequence):
        for item in reversed(items):
            if isinstance(item, AIMessage):
                return item
    return None


def _bound_tools(model: Any) -> list[Any] | None:
    """The ``tools`` a ``bind_tools`` binding sends with every call, else ``None``."""
    current = model
    for _ in range(5):
        kwargs = getattr(current, "kwargs", None)
        if isinstance(kwargs, Mapping) and kwargs.get("tools"):
            return list(kwargs["tools"])
        nxt = getattr(current, "bound", None)
        if nxt is None or nxt is current:
            break
        current = nxt
    return None


def _call_with_recovery(
    fitter: _Fitter,
    key: str,
    fitted: list[BaseMessage],
    call: Callable[[list[BaseMessage]], Any],
) -> Any:
    """Call the model; on a context-length refusal refit once and retry, else raise."""
    try:
        response = call(fitted)
    except Exception as exc:
        overflow = context_length_error(exc)
        if overflow is None:
            raise
        try:
            response = call(fitter.refit(key, overflow))
        except Exception as again:
            second = context_length_error(again)
            if second is None:
                raise
            raise fitter.fail(key, second) from again
    fitter.record(key, response)
    return response


async def _acall_with_recovery(
    fitter: _Fitter,
    key: str,
    fitted: list[BaseMessage],
    call: Callable[[list[BaseMessage]], Awaitable[Any]],
) -> Any:
    """Async :func:`_call_with_recovery`."""
    try:
        response = await call(fitted)
    except Exception as exc:
        overflow = context_length_error(exc)
        if overflow is None:
            raise
        try:
            response = await call(await fitter.arefit(key, overflow))
        except Exception as again:
            second = context_length_error(again)
            if second is None:
                raise
            raise fitter.fail(key, second) from again
    fitter.record(key, response)
    return response


class _PerThread:
    """Per-thread manager access of :class:`ContextMiddleware` and :class:`ContextRunnable`."""

    _fitter: _Fitter

    @property
    def manager(self) -> ContextManager:
        """The template manager; each thread (conversation) gets a ``fork()`` of it.

        Raises:
            ConfigError: no model call was seen yet and the config alone cannot size the
                window (pass ``max_context_tokens`` or ``model``).
        """
        return self._fitter.pool.base

    def _template(self) -> ContextManager:
        """The template, or (window still unknown) a stand-in with the same strategies."""
        return self._fitter.pool.template()

    @property
    def last_reports(self) -> dict[str, FitReport]:
        """The latest FitReport per thread id (conversation key)."""
        return self._fitter.pool.reports()

    def manager_for(self, thread_id: str | None = None) -> ContextManager:
        """Return the manager holding thread ``thread_id``'s ctxmgr state."""
        return self._fitter.pool.get(thread_id or DEFAULT_THREAD).manager

    def manager_for_config(self, config: RunnableConfig | None = None) -> ContextManager:
        """Return the manager of the thread named by ``config`` (default: the current run)."""
        return self.manager_for(_thread_from_config(config))

    def reset(self, thread_id: str | None = None) -> None:
        """Forget one thread's ctxmgr state, or every thread's (``None``)."""
        self._fitter.pool.reset(thread_id)


def _thread_from_config(config: RunnableConfig | None) -> str:
    cfg = ensure_config(config)
    configurable = cfg.get("configurable") or {}
    for key in ("thread_id", "session_id"):
        value = configurable.get(key)
        if value is not None:
            return str(value)
    return DEFAULT_THREAD


def _thread_from_runtime(runtime: Any) -> str:
    info = getattr(runtime, "execution_info", None)
    thread_id = getattr(info, "thread_id", None)
    if thread_id is not None:
        return str(thread_id)
    key = _thread_from_config(None)
    if key != DEFAULT_THREAD:
        return key
    context = getattr(runtime, "context", None)
    value = (
        context.get("thread_id")
        if isinstance(context, Mapping)
        else getattr(context, "thread_id", None)
    )
    return str(value) if value is not None else DEFAULT_THREAD


# ---------------------------------------------------------------------------------------
# Agent middleware
# ---------------------------------------------------------------------------------------
class ContextMiddleware(_PerThread, AgentMiddleware):  # type: ignore[type-arg]
    """Fits every model request of a ``create_agent`` agent into the token budget.

    The graph state keeps the full history; only the request handed to the model is
    fitted (``wrap_model_call`` / ``awrap_model_call``). The system prompt
    (``request.system_message``) is part of what is fitted, so it is counted and always
    kept. ctxmgr state (running summary, notes, ...) is kept per conversation: the thread
    id comes from the run's ``execution_info``, else ``config["configurable"]["thread_id"]``,
    else ``runtime.context.thread_id``, else ``"default"``. Put it last in ``middleware=``
    (innermost, next to the model) so it sees the request other middleware produced.

    Example::

        agent = create_agent(model, tools, middleware=[ContextMiddleware.from_config("agent")])
        agent.invoke({"messages": [...]}, {"configurable": {"thread_id": "t1"}})

    Args:
        manager: the template manager; each thread gets ``manager.fork()``.
        max_threads: at most this many threads keep state (least recently used forgotten);
            ``None`` for no bound.
        on_fit: optional ``on_fit(thread_id, report)`` called after each fit.
        register_note_tools: add ``write_note`` / ``update_note`` / ``delete_note`` /
            ``read_notes`` to the agent's tools, acting on the calling thread's scratchpad
            (the config must have the ``scratchpad`` strategy).
        register_context_tools: add ``search_history`` / ``get_message`` (recall from
            the archive) and ``compact_context`` (see :func:`context_tools`), acting on
            the calling thread's manager.

    Attributes:
        last_reports: the latest :class:`~ctxmgr.report.FitReport` per thread id.
    """

    def __init__(
        self,
        manager: ContextManager | ManagerSpec,
        *,
        max_threads: int | None = 10_000,
        on_fit: FitCallback | None = None,
        register_note_tools: bool = False,
        register_context_tools: bool = False,
    ) -> None:
        super().__init__()
        self._fitter = _Fitter(manager, max_threads=max_threads, on_fit=on_fit)
        self.tools = note_tools(self) if register_note_tools else []
        if register_context_tools:
            self.tools = [*self.tools, *context_tools(self)]

    @classmethod
    def from_config(
        cls,
        config: ConfigLike | ContextManager = "agent",
        *,
        summarizer: Any = None,
        counter: Any = None,
        max_threads: int | None = 10_000,
        on_fit: FitCallback | None = None,
        register_note_tools: bool = False,
        register_context_tools: bool = False,
        **overrides: Any,
    ) -> ContextMiddleware:
        """Build the middleware from a preset name, a TOML/YAML path or a config dict.

        Args:
            config: as for ``ContextManager.from_config`` (or a ready ``ContextManager``).
            summarizer: e.g. ``LangChainSummarizer(model)``; the config's default otherwise.
            counter: token counter (object or name) overriding the config's.
            max_threads: see the class docstring.
            on_fit: see the class docstring.
            register_note_tools: see the class docstring.
            register_context_tools: see the class docstring.
            **overrides: config keys to override, e.g. ``max_context_tokens=8000``. Unset
                ``model`` / ``max_context_tokens`` / ``provider`` are taken from the agent's
                chat model at its first call.
        """
        manager = manager_source(config, summarizer, counter, overrides, "ContextMiddleware")
        return cls(
            manager,
            max_threads=max_threads,
            on_fit=on_fit,
            register_note_tools=register_note_tools,
            register_context_tools=register_context_tools,
        )

    def threads(self) -> list[str]:
        """Thread ids that currently have ctxmgr state."""
        return self._fitter.pool.keys()

    def note_tools(self) -> list[BaseTool]:
        """Scratchpad tools bound to the calling thread's manager (see :func:`note_tools`)."""
        return note_tools(self)

    @staticmethod
    def _split(request: ModelRequest) -> list[BaseMessage]:
        head = [request.system_message] if request.system_message is not None else []
        return [*head, *request.messages]

    @staticmethod
    def _rebuild(request: ModelRequest, fitted: list[BaseMessage]) -> ModelRequest:
        system = None
        if request.system_message is not None and fitted and isinstance(fitted[0], SystemMessage):
            system, fitted = fitted[0], fitted[1:]
        return request.override(messages=fitted, system_message=system)  # type: ignore[arg-type]

    def wrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], ModelResponse],
    ) -> Any:
        """Fit the request (system prompt and tool definitions counted), call the model.

        The window, tokenizer and provider come from ``request.model`` unless the config
        sets them. The reply's usage and stop reason calibrate the next fit. If the provider
        answers context-length-exceeded, the request is compacted further and sent once
        more (the FitReport says ``recovered``); a second refusal raises
        ``ContextOverflowError`` with the provider's numbers.
        """
        key = _thread_from_runtime(request.runtime)
        tools = self._fitter.schemas(request.tools)
        facts = langchain_facts(request.model)
        fitted = self._fitter.fit(key, self._split(request), tools, facts)
        return _call_with_recovery(
            self._fitter, key, fitted, lambda msgs: handler(self._rebuild(request, msgs))
        )

    async def awrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> Any:
        """Async :meth:`wrap_model_call`; awaits an async summarizer when one is set."""
        key = _thread_from_runtime(request.runtime)
        tools = self._fitter.schemas(request.tools)
        facts = langchain_facts(request.model)
        fitted = await self._fitter.afit(key, self._split(request), tools, facts)
        return await _acall_with_recovery(
            self._fitter, key, fitted, lambda msgs: handler(self._rebuild(request, msgs))
        )


# ---------------------------------------------------------------------------------------
# LCEL runnable
# ---------------------------------------------------------------------------------------
def _input_messages(value: Any) -> list[BaseMessage]:
    if isinstance(value, PromptValue):
        return value.to_messages()
    if isinstance(value, str):
        return [HumanMessage(content=value)]
    if isinstance(value, BaseMessage):
        return [value]
    return convert_to_messages(value)


class ContextRunnable(_PerThread, Runnable[Any, Any]):
    """An LCEL step that fits a prompt into the token budget: ``prompt | this | model``.

    Input: a ``PromptValue`` (what a prompt template emits), a list of messages (or
    message-likes), or a string. State is kept per
    ``config["configurable"]["thread_id"]`` (or ``session_id``), else ``"default"``.

    With ``model=`` (recommended: ``prompt | ContextRunnable.from_config("agent",
    model=model)``) the runnable is the model boundary: it fits the prompt with the tool
    definitions the model is bound to (``model.bind_tools(...)``), calls the model and
    returns its ``AIMessage``; the window, tokenizer and provider come from the model, the
    reply's usage and stop reason calibrate the next fit, and a context-length refusal is
    refit and retried once (a second one raises ``ContextOverflowError``).

    Without ``model`` it is a fitting step (``prompt | runnable | model``) returning a
    ``ChatPromptValue`` when the input was a ``PromptValue``, else a list of messages; the
    config must then size the window (``max_context_tokens`` or ``model``).

    Args:
        manager: the template manager; each conversation gets ``manager.fork()``.
        max_threads: at most this many conversations keep state; ``None`` for no bound.
        on_fit: optional ``on_fit(thread_id, report)`` called after each fit.
        model: the chat model (or ``bind_tools`` binding) to call; see above.

    Attributes:
        last_reports: the latest FitReport per conversation key.
    """

    def __init__(
        self,
        manager: ContextManager | ManagerSpec,
        *,
        max_threads: int | None = 10_000,
        on_fit: FitCallback | None = None,
        model: Runnable[Any, Any] | None = None,
    ) -> None:
        self._fitter = _Fitter(manager, max_threads=max_threads, on_fit=on_fit)
        self.model = model
        if model is not None:
            self._fitter.pool.resolve(langchain_facts(model))

    @classmethod
    def from_config(
        cls,
        config: ConfigLike | ContextManager = "agent",
        *,
        summarizer: Any = None,
        counter: Any = None,
        max_threads: int | None = 10_000,
        on_fit: FitCallback | None = None,
        model: Runnable[Any, Any] | None = None,
        **overrides: Any,
    ) -> ContextRunnable:
        """Build the runnable from a preset name, a TOML/YAML path or a config dict.

        Args:
            config: as for ``ContextManager.from_config`` (or a ready ``ContextManager``).
            summarizer: e.g. ``LangChainSummarizer(model)``.
            counter: token counter overriding the config's.
            max_threads: see the class docstring.
            on_fit: see the class docstring.
            model: see the class docstring.
            **overrides: config keys to override.

        Raises:
            ConfigError: the config is invalid, or (with ``model``) the model's window is
                unknown: pass ``max_context_tokens``.
        """
        manager = manager_source(config, summarizer, counter, overrides, "ContextRunnable")
        return cls(manager, max_threads=max_threads, on_fit=on_fit, model=model)

    def _tools(self) -> list[Mapping[str, Any]] | None:
        return self._fitter.schemas(_bound_tools(self.model))

    @staticmethod
    def _output(value: Any, fitted: list[BaseMessage]) -> Any:
        if isinstance(value, PromptValue):
            return ChatPromptValue(messages=fitted)
        return fitted

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Return the fitted messages for ``input`` (with ``model``: the model's reply)."""
        key = _thread_from_config(config)
        model = self.model

        def run(value: Any, config: RunnableConfig) -> Any:
            if model is None:
                return self._output(value, self._fitter.fit(key, _input_messages(value)))
            tools = self._tools()
            fitted = self._fitter.fit(key, _input_messages(value), tools, langchain_facts(model))
            return _call_with_recovery(
                self._fitter, key, fitted, lambda msgs: model.invoke(msgs, config)
            )

        run_type = "prompt" if model is None else "chain"
        return self._call_with_config(run, input, config, run_type=run_type)  # type: ignore[arg-type]

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Async :meth:`invoke`; awaits an async summarizer when one is set."""
        key = _thread_from_config(config)
        model = self.model

        async def run(value: Any, config: RunnableConfig) -> Any:
            if model is None:
                fitted = await self._fitter.afit(key, _input_messages(value))
                return self._output(value, fitted)
            tools = self._tools()
            fitted = await self._fitter.afit(
                key, _input_messages(value), tools, langchain_facts(model)
            )
            return await _acall_with_recovery(
                self._fitter, key, fitted, lambda msgs: model.ainvoke(msgs, config)
            )

        run_type = "prompt" if model is None else "chain"
        return await self._acall_with_config(run, input, config, run_type=run_type)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------
# Chat message history
# ---------------------------------------------------------------------------------------
class _ListHistory(BaseChatMessageHistory):
    """A plain in-memory history (``InMemoryChatMessageHistory`` warns as deprecated)."""

    def __init__(self) -> None:
        self.messages: list[BaseMessage] = []

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        self.messages.extend(messages)

    def clear(self) -> None:
        self.messages = []


class ManagedChatMessageHistory(BaseChatMessageHistory):
    """A chat history whose ``messages`` is the fitted view of another history.

    Every message is stored in ``inner`` (nothing is lost); reading ``messages`` returns
    what fits the budget. Use it with ``RunnableWithMessageHistory`` (see
    :meth:`session_factory` for the one-liner). The view is cached while the inner history
    is unchanged, so reading it twice in one run fits once.

    Args:
        inner: where messages are stored (default: a plain in-memory list).
        manager: the manager for this conversation (use ``mgr.fork()`` per session).
        on_fit: optional ``on_fit(session_id, report)`` called after each fit.
        session_id: name passed to ``on_fit``.

    Attributes:
        last_report: the latest FitReport, or ``None`` before the first read.
    """

    def __init__(
        self,
        inner: BaseChatMessageHistory | None = None,
        *,
        manager: ContextManager,
        on_fit: FitCallback | None = None,
        session_id: str = DEFAULT_THREAD,
    ) -> None:
        self.inner = inner if inner is not None else _ListHistory()
        self.manager = manager
        self.on_fit = on_fit
        self.session_id = session_id
        self.last_report: FitReport | None = None
        self._cache_key: tuple[int, ...] | None = None
        self._cache: list[BaseMessage] = []
        self._conversions: _Cache = {}

    @classmethod
    def from_config(
        cls,
        config: ConfigLike | ContextManager = "agent",
        inner: BaseChatMessageHistory | None = None,
        *,
        summarizer: Any = None,
        counter: Any = None,
        on_fit: FitCallback | None = None,
        model: Any = None,
        **overrides: Any,
    ) -> ManagedChatMessageHistory:
        """Build one managed history (one conversation) from a config.

        ``model`` (the chat model the history feeds) sizes the window and picks the
        tokenizer and provider where the config leaves them unset; its bound tools are not
        seen here (fit at the model with :class:`ContextRunnable` for that).

        Raises:
            ConfigError: the window is unknown (no ``model`` nor ``max_context_tokens``).
        """
        manager = _history_manager(config, summarizer, counter, overrides, model).fork()
        return cls(inner, manager=manager, on_fit=on_fit)

    @classmethod
    def session_factory(
        cls,
        config: ConfigLike | ContextManager = "agent",
        inner_factory: Callable[[str], BaseChatMessageHistory] | None = None,
        *,
        summarizer: Any = None,
        counter: Any = None,
        on_fit: FitCallback | None = None,
        model: Any = None,
        **overrides: Any,
    ) -> Callable[[str], ManagedChatMessageHistory]:
        """Return a ``get_session_history(session_id)`` for ``RunnableWithMessageHistory``.

        Each session id gets one managed history (its own ``fork()`` of the manager) around
        ``inner_factory(session_id)`` (default: a plain in-memory list), created on
        first use and reused after. ``model``: as for :meth:`from_config`.

        Raises:
            ConfigError: the window is unknown (no ``model`` nor ``max_context_tokens``).
        """
        base = _history_manager(config, summarizer, counter, overrides, model)
        sessions: dict[str, ManagedChatMessageHistory] = {}
        lock = threading.Lock()

        def get_session_history(session_id: str) -> ManagedChatMessageHistory:
            with lock:
                history = sessions.get(session_id)
                if history is None:
                    inner = inner_factory(session_id) if inner_factory else None
                    history = cls(
                        inner,
                        manager=fork_for(base, session_id),
                        on_fit=on_fit,
                        session_id=session_id,
                    )
                    sessions[session_id] = history
                return history

        return get_session_history

    def _key(self, stored: Sequence[BaseMessage]) -> tuple[int, ...]:
        return tuple(id(m) for m in stored)

    def _done(self, stored: list[BaseMessage], neutral: list[Message], result: Any) -> None:
        self.last_report = result.report
        if self.on_fit is not None:
            self.on_fit(self.session_id, result.report)
        self._cache = restore_originals(result.messages, neutral, stored, from_message)
        self._cache_key = self._key(stored)

    @property  # type: ignore[override]
    def messages(self) -> list[BaseMessage]:
        """The fitted view of the stored history (a new list each read)."""
        stored = list(self.inner.messages)
        if self._cache_key != self._key(stored):
            neutral = _to_messages(stored, self._conversions)
            self._done(stored, neutral, self.manager.fit(neutral))
        return list(self._cache)

    @messages.setter
    def messages(self, value: list[BaseMessage]) -> None:
        self.inner.clear()
        self.inner.add_messages(value)

    async def aget_messages(self) -> list[BaseMessage]:
        """Async :attr:`messages`; awaits an async summarizer when one is set."""
        stored = list(await self.inner.aget_messages())
        if self._cache_key != self._key(stored):
            neutral = _to_messages(stored, self._conversions)
            self._done(stored, neutral, await self.manager.afit(neutral))
        return list(self._cache)

    @property
    def all_messages(self) -> list[BaseMessage]:
        """Every stored message (the inner history), unfitted."""
        return list(self.inner.messages)

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Store messages in the inner history."""
        self.inner.add_messages(messages)

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Store messages in the inner history (async)."""
        await self.inner.aadd_messages(messages)

    def clear(self) -> None:
        """Clear the inner history and this conversation's ctxmgr state."""
        self.inner.clear()
        self.manager = self.manager.fork()
        self._cache_key = None

    async def aclear(self) -> None:
        """Async :meth:`clear`."""
        await self.inner.aclear()
        self.manager = self.manager.fork()
        self._cache_key = None


def _history_manager(
    config: Any, summarizer: Any, counter: Any, overrides: Mapping[str, Any], model: Any
) -> ContextManager:
    source = manager_source(config, summarizer, counter, overrides, "ManagedChatMessageHistory")
    if isinstance(source, ManagerSpec):
        return source.build(langchain_facts(model) if model is not None else None)
    return source


# ---------------------------------------------------------------------------------------
# Summarizer
# ---------------------------------------------------------------------------------------
class LangChainSummarizer:
    """A ctxmgr ``Summarizer`` / ``AsyncSummarizer`` backed by a LangChain chat model.

    Sends one ``HumanMessage`` holding ``prompt`` (default
    ``ctxmgr.summarizers.SUMMARY_PROMPT``) filled with the previous summary, the evicted
    messages (``render_transcript``) and the token budget, and returns the reply's text.

    Args:
        model: any ``BaseChatModel``.
        prompt: a template with ``{previous}``, ``{transcript}`` and ``{max_tokens}``.
        pass_max_tokens: also bind ``max_tokens=<budget>`` to the call (only for models
            that accept that parameter).
    """

    def __init__(
        self,
        model: BaseChatModel,
        *,
        prompt: str | None = None,
        pass_max_tokens: bool = False,
    ) -> None:
        self.model = model
        self.prompt = prompt
        self.pass_max_tokens = pass_max_tokens

    def _messages(
        self, previous: str | None, messages: Sequence[Message], max_tokens: int
    ) -> list[BaseMessage]:
        return [HumanMessage(content=summary_prompt(self.prompt, previous, messages, max_tokens))]

    def _runnable(self, max_tokens: int) -> Runnable[Any, Any]:
        return self.model.bind(max_tokens=max_tokens) if self.pass_max_tokens else self.model

    def summarize(
        self, previous: str | None, messages: Sequence[Message], *, max_tokens: int
    ) -> str:
        """Return the running summary updated with ``messages`` (calls ``model.invoke``)."""
        prompt = self._messages(previous, messages, max_tokens)
        return _text_of(self._runnable(max_tokens).invoke(prompt)).strip()

    async def asummarize(
        self, previous: str | None, messages: Sequence[Message], *, max_tokens: int
    ) -> str:
        """Async :meth:`summarize` (calls ``model.ainvoke``)."""
        prompt = self._messages(previous, messages, max_tokens)
        return _text_of(await self._runnable(max_tokens).ainvoke(prompt)).strip()


def _text_of(reply: Any) -> str:
    if isinstance(reply, BaseMessage):
        return reply.text if isinstance(reply.text, str) else str(reply.text)
    return str(reply)


# ---------------------------------------------------------------------------------------
# Scratchpad tools
# ---------------------------------------------------------------------------------------
def note_tools(manager: ContextManager | ContextMiddleware | ContextRunnable) -> list[BaseTool]:
    """Return the scratchpad tools ``write_note``, ``update_note``, ``delete_note``, ``read_notes``.

    Args:
        manager: a ``ContextManager`` whose ``scratchpad`` the tools act on, or a
            :class:`ContextMiddleware` / :class:`ContextRunnable`, in which case each call
            acts on the scratchpad of the calling thread (from the run's config).

    Raises:
        ConfigError: the manager has no ``scratchpad`` strategy configured.
    """
    if isinstance(manager, (ContextMiddleware, ContextRunnable)):
        functions = note_functions(lambda: manager.manager_for_config(None), manager._template())
    else:
        functions = note_functions(lambda: manager)
    return [StructuredTool.from_function(fn, parse_docstring=True) for fn in functions]


def context_tools(
    manager: ContextManager | ContextMiddleware | ContextRunnable,
) -> list[BaseTool]:
    """Return the context tools ``search_history``, ``get_message`` and ``compact_context``.

    ``search_history`` ranks archived (evicted, cleared, offloaded) messages by BM25,
    ``get_message`` reads one by id in pages, ``compact_context`` requests a compaction
    on the next model call (see :mod:`ctxmgr.tools`).

    Args:
        manager: a ``ContextManager``, or a :class:`ContextMiddleware` /
            :class:`ContextRunnable`, in which case each call acts on the calling thread's
            manager (from the run's config).
    """
    from ctxmgr.tools import compaction_function, recall_functions

    if isinstance(manager, (ContextMiddleware, ContextRunnable)):
        source = manager

        def current() -> ContextManager:
            return source.manager_for_config(None)
    else:
        fixed = manager

        def current() -> ContextManager:
            return fixed

    functions = [*recall_functions(current), compaction_function(current)]
    return [StructuredTool.from_function(fn, parse_docstring=True) for fn in functions]
