"""pydantic-ai adapter: fit every model request of an ``Agent`` into the token budget.

One line installs ctxmgr into a pydantic-ai agent::

    agent = Agent(model, capabilities=[ContextProcessor.from_config("agent").capability()])

The capability is a ``before_model_request`` hook (``Hooks``) that replaces only the request's
messages (``request_context.messages``) with the fitted view: the run's history
(``ctx.messages``, ``result.all_messages()``) stays whole, as pydantic-ai documents for
request-only changes. State (ctxmgr manager) is kept per ``ctx.conversation_id``, which
pydantic-ai carries over from ``message_history``. Instructions (``ModelRequest.instructions``
of the latest request, which is what pydantic-ai sends) are counted and pinned as a system
message; the request's tool definitions are counted. Set ``provider=`` to the model's provider:
pydantic-ai frames a mid-conversation system part as ``<system>`` user text for models
without inline system messages, which the anthropic/gemini profiles avoid by injecting in
the user role.

:meth:`ContextProcessor.process` (sync) and :meth:`ContextProcessor.aprocess` (async) are
history processors, ``(ctx: RunContext, messages) -> messages``, for ``ProcessHistory(...)``
(pydantic-ai 2.x removed ``history_processors=``; 1.x took the same signature, only 2.x is
tested). A processor's output replaces the run's history, so the processor keeps the full
history itself: new messages are those after the view it returned last;
:meth:`ContextProcessor.history` returns every message up to the latest model request.

The converters :func:`to_messages` / :func:`from_messages` map ``ModelRequest`` /
``ModelResponse`` to :class:`~ctxmgr.messages.Message` and back without loss: a request
becomes one message per part (``SystemPromptPart`` -> system, ``UserPromptPart`` -> user with
multimodal parts, ``ToolReturnPart`` (``outcome="retried"`` too) and the deprecated tool
``RetryPromptPart`` -> tool result paired by ``tool_call_id``, ``RetryFeedbackPart`` -> user),
a response one assistant message (``TextPart`` -> text part, ``ThinkingPart`` ->
``"reasoning"`` part, ``ToolCallPart`` -> tool call, any other part kept as a part of its
``part_kind``). Each message stores its original in pydantic-ai's own JSON form
(``ModelMessagesTypeAdapter``) under ``metadata["pydantic_ai"]``.

Requires ``pip install "ctxmgr-llm[pydantic-ai]"`` (pydantic-ai-slim 2.x).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ctxmgr.adapters._common import (
    ConfigLike,
    ConversationPool,
    load_manager,
    missing_extra,
    note_functions,
    summary_prompt,
    unique_ids,
)

try:
    from pydantic_ai import Agent, RunContext
    from pydantic_ai.messages import (
        CompactionPart,
        ModelMessage,
        ModelMessagesTypeAdapter,
        ModelRequest,
        ModelResponse,
        RetryPromptPart,
        SystemPromptPart,
        TextPart,
        ThinkingPart,
        ToolCallPart,
        ToolReturnPart,
        UserPromptPart,
    )
    from pydantic_ai.tools import Tool
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise missing_extra("pydantic-ai", "pydantic-ai (pydantic-ai-slim>=2.0)") from exc

from ctxmgr.messages import ContentPart, Message, ToolCall

if TYPE_CHECKING:
    from ctxmgr import ContextManager
    from ctxmgr.report import FitReport

__all__ = [
    "METADATA_KEY",
    "ContextProcessor",
    "PydanticAISummarizer",
    "from_messages",
    "context_tools",
    "note_tools",
    "to_messages",
]

METADATA_KEY = "pydantic_ai"
"""Key of :attr:`Message.metadata` holding what a pydantic-ai message needs to be rebuilt."""

INSTRUCTIONS_ID = "pydantic-ai-instructions"
"""Id of the neutral system message that stands for the latest request's instructions."""

DEFAULT_CONVERSATION = "default"

_MEDIA_TYPES = {"image-url": "image_url", "audio-url": "input_audio", "document-url": "file"}


# ---------------------------------------------------------------------------------------
# Converters
# ---------------------------------------------------------------------------------------
def _dump(message: ModelMessage) -> dict[str, Any]:
    return ModelMessagesTypeAdapter.dump_python([message], mode="json")[0]  # type: ignore[no-any-return]


def _load(data: Mapping[str, Any]) -> ModelMessage:
    return ModelMessagesTypeAdapter.validate_python([data])[0]


def _user_parts(content: Any) -> str | tuple[ContentPart, ...]:
    if isinstance(content, str):
        return content
    parts: list[ContentPart] = []
    for item in content:
        if isinstance(item, str):
            parts.append(ContentPart("text", item))
            continue
        kind = str(getattr(item, "kind", type(item).__name__))
        text = getattr(item, "content", None)
        if isinstance(text, str) and kind in ("text-content", "structured-content"):
            parts.append(ContentPart("text", text))
            continue
        media = str(getattr(item, "media_type", "") or "")
        if kind in _MEDIA_TYPES:
            ptype = _MEDIA_TYPES[kind]
        elif media.startswith("image/"):
            ptype = "image_url"
        elif media.startswith("audio/"):
            ptype = "input_audio"
        else:
            ptype = "file"
        url = getattr(item, "url", None)
        parts.append(ContentPart(ptype, "", {"kind": kind, "media_type": media, "url": url}))
    return tuple(parts)


def _request_part(part: Any) -> tuple[str, Any, str | None, str | None]:
    """(role, content, tool_call_id, name) of one request part."""
    if isinstance(part, SystemPromptPart):
        return "system", part.content, None, None
    if isinstance(part, UserPromptPart):
        return "user", _user_parts(part.content), None, None
    if isinstance(part, ToolReturnPart):
        return "tool", part.model_response_str(), part.tool_call_id, part.tool_name
    if isinstance(part, RetryPromptPart):
        if part.tool_name is not None:
            return "tool", part.model_response(), part.tool_call_id, part.tool_name
        return "user", part.model_response(), None, None
    if getattr(part, "part_kind", None) == "retry-feedback":  # RetryFeedbackPart (2.x)
        return "user", part.model_response(), None, None
    text = getattr(part, "content", None)
    return "system", text if isinstance(text, str) else "", None, None


def _response_message(message: ModelResponse, raw: dict[str, Any]) -> Message:
    parts: list[ContentPart] = []
    calls: list[ToolCall] = []
    for part in message.parts:
        if isinstance(part, ToolCallPart):
            calls.append(ToolCall(part.tool_call_id, part.tool_name, part.args_as_json_str()))
        elif isinstance(part, TextPart):
            parts.append(ContentPart("text", part.content))
        elif isinstance(part, ThinkingPart):
            parts.append(ContentPart("reasoning", part.content))
        else:
            text = getattr(part, "content", None)
            parts.append(ContentPart(str(part.part_kind), text if isinstance(text, str) else ""))
    content: str | tuple[ContentPart, ...] = tuple(parts)
    if len(parts) == 1 and parts[0].type == "text":
        content = parts[0].text
    return Message(
        role="assistant",
        content=content,
        tool_calls=tuple(calls),
        id=message.provider_response_id or "",
        metadata={METADATA_KEY: {"raw": raw}},
    )


def to_messages(messages: Sequence[ModelMessage]) -> list[Message]:
    """Convert pydantic-ai messages (oldest first) to neutral messages.

    A ``ModelRequest`` becomes one message per part, each recording the request's index;
    a ``ModelResponse`` becomes one assistant message. The inputs are not mutated. Ids are
    derived from content (a response's ``provider_response_id`` when it has one); repeats
    get a ``"#<n>"`` suffix.

    Raises:
        TypeError: an item is neither a ``ModelRequest`` nor a ``ModelResponse``.
    """
    return unique_ids(m for i, item in enumerate(messages) for m in _convert(item, i))


def _convert(item: ModelMessage, index: int) -> list[Message]:
    raw = _dump(item)
    if isinstance(item, ModelResponse):
        msg = _response_message(item, raw)
        return [msg.evolve(metadata={METADATA_KEY: {"raw": raw, "index": index}}, id=msg.id)]
    if not isinstance(item, ModelRequest):
        raise TypeError(f"messages[{index}] is {type(item).__name__}, not a pydantic-ai message")
    out: list[Message] = []
    for j, part in enumerate(item.parts):
        role, content, call_id, name = _request_part(part)
        meta = {"raw": raw, "index": index, "part": j, "size": len(item.parts)}
        out.append(
            Message(
                role=role,  # type: ignore[arg-type]
                content=content,
                tool_call_id=call_id,
                name=name,
                metadata={METADATA_KEY: meta},
            )
        )
    if not out:  # a request without parts (e.g. only instructions) still round-trips
        meta = {"raw": raw, "index": index, "part": None, "size": 0}
        out.append(Message("user", "", metadata={METADATA_KEY: meta}))
    return out


def _same_content(a: Message, b: Message) -> bool:
    return a.content == b.content and a.tool_calls == b.tool_calls


def _rebuild_request_part(message: Message, raw: Mapping[str, Any], j: int) -> dict[str, Any]:
    """Part ``j`` of stored request ``raw``, with the content ctxmgr gave ``message``."""
    raw_part = dict(raw["parts"][j])
    original = _convert(_load(raw), 0)[j]
    if _same_content(original, message):
        return raw_part
    if raw_part.get("part_kind") == "retry-prompt" and message.role == "tool":
        # a cleared or truncated retry prompt is sent as a plain tool return
        return {
            "part_kind": "tool-return",
            "tool_name": raw_part.get("tool_name") or "",
            "tool_call_id": raw_part.get("tool_call_id"),
            "content": message.text,
        }
    return {**raw_part, "content": message.text}


def _rebuild_response(message: Message) -> ModelMessage:
    raw = dict(message.metadata[METADATA_KEY]["raw"])
    original = _response_message(_load(raw), raw)  # type: ignore[arg-type]
    if _same_content(original, message):
        return _load(raw)
    texts = (
        [ContentPart("text", message.content)]
        if isinstance(message.content, str)
        else list(message.content)
    )
    calls = {c.id: c for c in message.tool_calls}
    parts: list[dict[str, Any]] = []
    t = 0
    for part in raw["parts"]:
        if part.get("part_kind") == "tool-call":
            call = calls.pop(part.get("tool_call_id"), None)
            if call is not None:
                parts.append({**part, "tool_name": call.name, "args": call.arguments})
        elif t < len(texts):
            new = texts[t]
            t += 1
            parts.append({**part, "content": new.text} if "content" in part else part)
    for extra in texts[t:]:
        parts.append({"part_kind": "text", "content": extra.text})
    for call in calls.values():
        parts.append(
            {
                "part_kind": "tool-call",
                "tool_name": call.name,
                "args": call.arguments,
                "tool_call_id": call.id,
            }
        )
    return _load({**raw, "parts": parts})


def _foreign(message: Message) -> ModelMessage:
    """A pydantic-ai message for a message ctxmgr injected (e.g. a running summary)."""
    marker = {"ctxmgr": message.metadata["ctxmgr"]} if "ctxmgr" in message.metadata else None
    if message.role == "assistant":
        parts: list[Any] = [TextPart(message.text)] if message.text else []
        parts += [ToolCallPart(c.name, c.arguments, tool_call_id=c.id) for c in message.tool_calls]
        return ModelResponse(parts=parts, metadata=marker)
    if marker == {"ctxmgr": "summary"} and "ctxmgr_merged" not in message.metadata:
        # pydantic-ai's home for an application-written summary: sent as user-voice text
        # framed as written by a separate summarization model
        return ModelRequest(parts=[CompactionPart(message.text, metadata=marker)])
    if message.role == "system":
        return ModelRequest(parts=[SystemPromptPart(message.text, metadata=marker)])
    if message.role == "tool":
        part = ToolReturnPart(message.name or "", message.text, message.tool_call_id or "")
        return ModelRequest(parts=[part], metadata=marker)
    return ModelRequest(parts=[UserPromptPart(message.text)], metadata=marker)


def from_messages(messages: Sequence[Message]) -> list[ModelMessage]:
    """Convert neutral messages (oldest first) to pydantic-ai messages.

    Messages made by :func:`to_messages` come back equal to the originals (with any content
    ctxmgr changed); consecutive parts of one ``ModelRequest`` are regrouped into one request
    holding the parts that were kept. Other messages become a ``ModelRequest`` with a
    ``CompactionPart`` (ctxmgr's running summary, as pydantic-ai recommends for summaries) or a
    ``SystemPromptPart`` / ``UserPromptPart`` / ``ToolReturnPart``, or a ``ModelResponse``,
    carrying ``metadata["ctxmgr"]`` (on the part where it has ``metadata``).
    """
    return _from_messages(messages, {})


def _from_messages(
    messages: Sequence[Message], originals: Mapping[int, tuple[list[Message], ModelMessage]]
) -> list[ModelMessage]:
    out: list[ModelMessage] = []
    i = 0
    while i < len(messages):
        message = messages[i]
        meta = message.metadata.get(METADATA_KEY)
        if not isinstance(meta, Mapping) or "raw" not in meta:
            out.append(_foreign(message))
            i += 1
            continue
        index = meta.get("index")
        if meta["raw"].get("kind") == "response":
            whole = originals.get(index) if index is not None else None
            if whole is not None and whole[0] == [message]:
                out.append(whole[1])
            else:
                out.append(_rebuild_response(message))
            i += 1
            continue
        group: list[Message] = []
        while i < len(messages):
            m = messages[i].metadata.get(METADATA_KEY)
            if not isinstance(m, Mapping) or m.get("index") != index or "part" not in m:
                break
            if m.get("raw") is not meta["raw"] and m.get("raw") != meta["raw"]:
                break
            group.append(messages[i])
            i += 1
        whole = originals.get(index) if index is not None else None
        if whole is not None and whole[0] == group:
            out.append(whole[1])
            continue
        raw = meta["raw"]
        parts = [
            _rebuild_request_part(m, raw, m.metadata[METADATA_KEY]["part"])
            for m in group
            if m.metadata[METADATA_KEY]["part"] is not None
        ]
        out.append(_load({**raw, "parts": parts}))
    return out


def _originals(
    messages: Sequence[ModelMessage], neutral: Sequence[Message]
) -> dict[int, tuple[list[Message], ModelMessage]]:
    groups: dict[int, tuple[list[Message], ModelMessage]] = {}
    for m in neutral:
        index = m.metadata[METADATA_KEY]["index"]
        groups.setdefault(index, ([], messages[index]))[0].append(m)
    return groups


# ---------------------------------------------------------------------------------------
# History processor
# ---------------------------------------------------------------------------------------
def _instructions(messages: Sequence[ModelMessage]) -> str | None:
    """The instructions pydantic-ai sends: those of the most recent request that has them."""
    for item in reversed(messages):
        if isinstance(item, ModelRequest) and item.instructions:
            return item.instructions
    return None


def _tool_definitions(parameters: Any) -> list[dict[str, Any]] | None:
    """The request's function and output tool definitions as OpenAI function-tool dicts."""
    if parameters is None:
        return None
    defs = [*getattr(parameters, "function_tools", ()), *getattr(parameters, "output_tools", ())]
    return [
        {
            "type": "function",
            "function": {
                "name": d.name,
                "description": d.description or "",
                "parameters": d.parameters_json_schema,
            },
        }
        for d in defs
    ] or None


def _new_since(messages: Sequence[ModelMessage], last_out: Sequence[ModelMessage]) -> int | None:
    """Index in ``messages`` of the first message added after ``last_out`` was returned.

    pydantic-ai may merge adjacent requests of a processed history into new objects, so the
    last item of ``messages`` that is one of ``last_out`` (by identity) is found, and the
    requests right after it (merged leftovers of ``last_out``) are skipped: what pydantic-ai
    adds after a processor runs starts with the model's ``ModelResponse``. ``None`` when no
    item of ``last_out`` is present (a different history).
    """
    if not last_out:
        return None
    returned = {id(m) for m in last_out}
    for i in range(len(messages) - 1, -1, -1):
        if id(messages[i]) in returned:
            start = i + 1
            if isinstance(messages[i], ModelResponse):
                while start < len(messages) and isinstance(messages[start], ModelRequest):
                    start += 1
            return start
    return None


class ContextProcessor:
    """Fits each pydantic-ai model request into the token budget.

    Use :meth:`capability` (a ``before_model_request`` hook; the run's history stays whole),
    or pass :meth:`process` / :meth:`aprocess` to ``ProcessHistory`` (the history becomes the
    fitted view; the processor keeps the full one, :meth:`history`). Message lists are oldest
    first; input lists are not mutated. State is kept per ``ctx.conversation_id``.

    Args:
        manager: the template manager; each conversation gets ``manager.fork()``.
        max_threads: at most this many conversations keep state; ``None`` for no bound.
        on_fit: optional ``on_fit(conversation_id, report)`` called after each fit.
    """

    def __init__(
        self,
        manager: ContextManager,
        *,
        max_threads: int | None = 10_000,
        on_fit: Callable[[str, FitReport], None] | None = None,
    ) -> None:
        self.pool = ConversationPool(manager, max_threads)
        self.on_fit = on_fit

    @classmethod
    def from_config(
        cls,
        config: ConfigLike | ContextManager = "agent",
        *,
        summarizer: Any = None,
        counter: Any = None,
        max_threads: int | None = 10_000,
        on_fit: Callable[[str, FitReport], None] | None = None,
        **overrides: Any,
    ) -> ContextProcessor:
        """Build the processor from a preset name, a TOML/YAML path or a config dict.

        Args:
            config: as for ``ContextManager.from_config`` (or a ready ``ContextManager``).
            summarizer: e.g. ``PydanticAISummarizer(agent_or_model)``.
            counter: token counter overriding the config's.
            max_threads: see the class docstring.
            on_fit: see the class docstring.
            **overrides: config keys to override, e.g. ``max_context_tokens=8000``.
        """
        manager = load_manager(config, summarizer, counter, overrides)
        return cls(manager, max_threads=max_threads, on_fit=on_fit)

    def capability(self) -> Any:
        """Return the capability for ``Agent(capabilities=[...])``.

        ``Hooks(before_model_request=self.before_model_request)``: each model request gets the
        fitted view, the run's history (``ctx.messages``, ``result.all_messages()``) stays
        whole. (``ProcessHistory(self.aprocess)`` would replace the history with the view.)
        """
        from pydantic_ai.capabilities import Hooks

        return Hooks(before_model_request=self.before_model_request)

    async def before_model_request(self, ctx: RunContext[Any], request_context: Any) -> Any:
        """A ``before_model_request`` hook: fit ``request_context.messages`` only.

        The run's persistent history is not changed; the request sent is the fitted view.
        The request's tool definitions are counted in the budget.
        """
        key, conversation, full, neutral = self._prepare(ctx, request_context.messages, False)
        tools = _tool_definitions(getattr(request_context, "model_request_parameters", None))
        result = await conversation.manager.afit(neutral, tools=tools)
        request_context.messages = self._finish(key, conversation, full, result)
        return request_context

    @property
    def manager(self) -> ContextManager:
        """The template manager; each conversation gets a ``fork()`` of it."""
        return self.pool.base

    @property
    def last_reports(self) -> dict[str, FitReport]:
        """The latest FitReport per conversation id."""
        return self.pool.reports()

    def manager_for(self, conversation_id: str | None = None) -> ContextManager:
        """Return the manager holding conversation ``conversation_id``'s ctxmgr state."""
        return self.pool.get(conversation_id or DEFAULT_CONVERSATION).manager

    def history(self, conversation_id: str | None = None) -> list[ModelMessage]:
        """Every message of the conversation seen so far (oldest first), unfitted."""
        conversation = self.pool.peek(conversation_id or DEFAULT_CONVERSATION)
        return list(conversation.cache.get("full", ())) if conversation else []

    def reset(self, conversation_id: str | None = None) -> None:
        """Forget one conversation's state, or every conversation's (``None``)."""
        self.pool.reset(conversation_id)

    def _prepare(
        self, ctx: RunContext[Any] | None, messages: list[ModelMessage], track: bool = True
    ) -> tuple[str, Any, list[ModelMessage], list[Message]]:
        """Conversation key and state, the full history and its neutral form (+instructions).

        With ``track``, ``messages`` is the view returned last plus new messages (a history
        processor's output replaces the history), so the full history is rebuilt from state.
        """
        key = str(getattr(ctx, "conversation_id", None) or DEFAULT_CONVERSATION)
        conversation = self.pool.get(key)
        cache = conversation.cache
        start = _new_since(messages, cache.get("last_out", [])) if track else None
        full = list(messages) if start is None else [*cache["full"], *messages[start:]]
        cache["full"] = full
        neutral = self._neutral(cache, full)
        instructions = _instructions(full)
        head = [Message.system(instructions, id=INSTRUCTIONS_ID)] if instructions else []
        return key, conversation, full, [*head, *neutral]

    @staticmethod
    def _neutral(cache: dict[Any, Any], full: list[ModelMessage]) -> list[Message]:
        """Convert ``full``, reusing the conversions of messages converted before."""
        seen: dict[int, tuple[ModelMessage, list[Message]]] = cache.setdefault("converted", {})
        fresh: dict[int, tuple[ModelMessage, list[Message]]] = {}
        out: list[Message] = []
        for index, item in enumerate(full):
            hit = seen.get(index)
            converted = hit[1] if hit is not None and hit[0] is item else _convert(item, index)
            fresh[index] = (item, converted)
            out.extend(converted)
        cache["converted"] = fresh
        cache["neutral"] = unique_ids(out)
        return list(cache["neutral"])

    def _finish(
        self, key: str, conversation: Any, full: list[ModelMessage], result: Any
    ) -> list[ModelMessage]:
        conversation.report = result.report
        if self.on_fit is not None:
            self.on_fit(key, result.report)
        fitted = [m for m in result.messages if m.id != INSTRUCTIONS_ID]
        out = _from_messages(fitted, _originals(full, conversation.cache["neutral"]))
        if out and not isinstance(out[0], ModelRequest):
            out.insert(0, ModelRequest(parts=[]))  # a history must start with a request
        conversation.cache["last_out"] = out
        return list(out)

    def process(self, ctx: RunContext[Any], messages: list[ModelMessage]) -> list[ModelMessage]:
        """Return the fitted history for the next model request (sync processor)."""
        key, conversation, full, neutral = self._prepare(ctx, messages)
        with conversation.lock:
            result = conversation.manager.fit(neutral)
        return self._finish(key, conversation, full, result)

    async def aprocess(
        self, ctx: RunContext[Any], messages: list[ModelMessage]
    ) -> list[ModelMessage]:
        """Async :meth:`process`; awaits an async summarizer when one is set."""
        key, conversation, full, neutral = self._prepare(ctx, messages)
        result = await conversation.manager.afit(neutral)
        return self._finish(key, conversation, full, result)


# ---------------------------------------------------------------------------------------
# Summarizer
# ---------------------------------------------------------------------------------------
class PydanticAISummarizer:
    """A ctxmgr ``Summarizer`` / ``AsyncSummarizer`` backed by a pydantic-ai model or agent.

    Runs a plain-text agent on ``prompt`` (default ``ctxmgr.summarizers.SUMMARY_PROMPT``)
    filled with the previous summary, the evicted messages and the token budget.

    Args:
        model: a pydantic-ai ``Model`` (or model name), or an ``Agent`` with text output.
        prompt: a template with ``{previous}``, ``{transcript}`` and ``{max_tokens}``.
    """

    def __init__(self, model: Any, *, prompt: str | None = None) -> None:
        self.agent: Agent[Any, Any] = model if isinstance(model, Agent) else Agent(model)
        self.prompt = prompt

    def summarize(
        self, previous: str | None, messages: Sequence[Message], *, max_tokens: int
    ) -> str:
        """Return the running summary updated with ``messages`` (``agent.run_sync``)."""
        text = summary_prompt(self.prompt, previous, messages, max_tokens)
        return str(self.agent.run_sync(text).output).strip()

    async def asummarize(
        self, previous: str | None, messages: Sequence[Message], *, max_tokens: int
    ) -> str:
        """Async :meth:`summarize` (``await agent.run``)."""
        text = summary_prompt(self.prompt, previous, messages, max_tokens)
        return str((await self.agent.run(text)).output).strip()


# ---------------------------------------------------------------------------------------
# Scratchpad tools
# ---------------------------------------------------------------------------------------
def note_tools(manager: ContextManager | ContextProcessor) -> list[Tool[Any]]:
    """Return the scratchpad tools ``write_note``, ``update_note``, ``delete_note``, ``read_notes``.

    pydantic-ai ``Tool`` s for ``Agent(tools=[...])``; their schemas come from the
    functions' signatures and Google docstrings.

    Args:
        manager: a ``ContextManager`` whose ``scratchpad`` the tools act on, or a
            :class:`ContextProcessor`, in which case each call acts on the scratchpad of the
            calling run's conversation (``ctx.conversation_id``).

    Raises:
        ConfigError: the manager has no ``scratchpad`` strategy configured.
    """
    if not isinstance(manager, ContextProcessor):
        return [Tool(fn, takes_ctx=False) for fn in note_functions(lambda: manager)]
    processor = manager
    tools: list[Tool[Any]] = []
    for name in ("write_note", "update_note", "delete_note", "read_notes"):
        tools.append(Tool(_bound_note(processor, name), takes_ctx=True, name=name))
    return tools


def _bound_note(processor: ContextProcessor, name: str) -> Callable[..., str]:
    """A note tool taking ``ctx`` first, acting on that run's conversation's scratchpad."""
    current: list[ContextManager] = [processor.manager]
    functions = {fn.__name__: fn for fn in note_functions(lambda: current[0], processor.manager)}
    body = functions[name]

    def tool(ctx: RunContext[Any], **kwargs: Any) -> str:
        current[0] = processor.manager_for(ctx.conversation_id)
        return body(**kwargs)

    tool.__name__ = name
    tool.__doc__ = body.__doc__
    tool.__signature__ = _with_ctx(body)  # type: ignore[attr-defined]
    tool.__annotations__ = {"ctx": RunContext[Any], **body.__annotations__}
    return tool


def _with_ctx(fn: Callable[..., Any]) -> Any:
    import inspect

    sig = inspect.signature(fn)
    ctx = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=RunContext)
    return sig.replace(parameters=[ctx, *sig.parameters.values()])


def context_tools(manager: ContextManager | ContextProcessor) -> list[Tool[Any]]:
    """Return the context tools ``search_history``, ``get_message`` and ``compact_context``.

    pydantic-ai ``Tool`` s. ``search_history`` ranks archived (evicted, cleared,
    offloaded) messages by BM25, ``get_message`` reads one by id in pages,
    ``compact_context`` requests a compaction on the next fit (:mod:`ctxmgr.tools`).

    Args:
        manager: a ``ContextManager``, or a :class:`ContextProcessor`, in which case each
            call acts on the calling run's conversation (``ctx.conversation_id``).
    """
    from ctxmgr.tools import compaction_function, recall_functions

    if not isinstance(manager, ContextProcessor):
        fixed = manager
        bodies = [*recall_functions(lambda: fixed), compaction_function(lambda: fixed)]
        return [Tool(fn, takes_ctx=False) for fn in bodies]
    processor = manager
    current: list[ContextManager] = [processor.manager]
    bodies = [*recall_functions(lambda: current[0]), compaction_function(lambda: current[0])]
    return [
        Tool(_bound_context(processor, current, body), takes_ctx=True, name=body.__name__)
        for body in bodies
    ]


def _bound_context(
    processor: ContextProcessor, current: list[ContextManager], body: Callable[..., str]
) -> Callable[..., str]:
    """A context tool taking ``ctx`` first, acting on that run's conversation's manager."""

    def tool(ctx: RunContext[Any], **kwargs: Any) -> str:
        current[0] = processor.manager_for(ctx.conversation_id)
        return body(**kwargs)

    tool.__name__ = body.__name__
    tool.__doc__ = body.__doc__
    tool.__signature__ = _with_ctx(body)  # type: ignore[attr-defined]
    tool.__annotations__ = {"ctx": RunContext[Any], **body.__annotations__}
    return tool
