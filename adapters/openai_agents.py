"""OpenAI Agents SDK adapter: fit every model call of a ``Runner`` run into the token budget.

One line installs ctxmgr into an Agents SDK app::

    config = RunConfig(call_model_input_filter=ContextFilter.from_config("agent"))
    result = await Runner.run(agent, "question", run_config=config, session=session)

``call_model_input_filter`` runs right before each model call with everything the SDK is
about to send (session history, the run's new items, in-run tool rounds) and the agent's
instructions; the filter returns the fitted items and leaves the instructions as they are
(counted and pinned as the system prompt); the agent's tool definitions are counted too.
The SDK's session and ``result.to_input_list()`` keep the whole history; only the request is
fitted. :class:`ContextSession` is a ``Session`` that stores every item and reads back the
fitted view (a session is read once per run, so it bounds a turn's first model call; the
filter bounds every call).

ctxmgr state (running summary, notes, archive) is kept per conversation: the run context's
``thread_id`` / ``session_id`` / ``conversation_id`` (a key or attribute of the ``context``
passed to ``Runner.run``), else a digest of the first input item; pass ``key=`` to choose.

The converters :func:`to_messages` / :func:`from_messages` map Responses-API input items to
:class:`~ctxmgr.messages.Message` and back without loss. A run of model-output items
(``reasoning``, assistant ``message``, ``function_call`` and other ``*_call`` items) becomes
one assistant message (reasoning as ``"reasoning"`` parts, calls as tool calls, so parallel
calls stay one tool-pair segment); ``function_call_output`` (and other ``*_call_output``)
becomes a tool result paired by ``call_id``; user/system/developer messages keep their parts
(``input_text``, ``input_image``, ``input_file``...). Each message stores its original items
under ``metadata["openai_agents"]``.

Requires ``pip install "ctxmgr-llm[openai-agents]"``.
"""

from __future__ import annotations

import copy
import hashlib
import json
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
    from agents import Agent, FunctionTool, Runner, SQLiteSession, function_tool
    from agents.memory import Session, SessionABC
    from agents.run_config import CallModelData, ModelInputData
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise missing_extra("openai-agents", "the OpenAI Agents SDK (openai-agents)") from exc

from ctxmgr.messages import ContentPart, Message, ToolCall

if TYPE_CHECKING:
    from ctxmgr import ContextManager
    from ctxmgr.report import FitReport

__all__ = [
    "METADATA_KEY",
    "AgentsSummarizer",
    "ContextFilter",
    "ContextSession",
    "from_messages",
    "context_tools",
    "note_tools",
    "to_messages",
]

METADATA_KEY = "openai_agents"
"""Key of :attr:`Message.metadata` holding the Responses-API items a message came from."""

INSTRUCTIONS_ID = "openai-agents-instructions"
"""Id of the neutral system message standing for the agent's instructions."""

_TEXT_TYPES = ("input_text", "output_text", "text", "summary_text", "reasoning_text")
_PART_TYPES = {"input_image": "image_url", "input_audio": "input_audio", "input_file": "file"}


# ---------------------------------------------------------------------------------------
# Converters
# ---------------------------------------------------------------------------------------
def _plain(item: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        return copy.deepcopy(dict(item))
    if hasattr(item, "model_dump"):
        return item.model_dump(exclude_unset=True)  # type: ignore[no-any-return]
    raise TypeError(f"not a Responses-API input item: {type(item).__name__}")


def _kind(item: Mapping[str, Any]) -> str:
    kind = item.get("type")
    if kind in (None, "message") and "role" in item:
        return "assistant" if item["role"] == "assistant" else "message"
    if kind == "reasoning":
        return "assistant"
    if isinstance(kind, str) and kind.endswith("_call_output") and "call_id" in item:
        return "output"
    return "assistant"  # function_call, other *_call items, anything the model produced


def _parts_of(content: Any) -> list[ContentPart]:
    if isinstance(content, str):
        return [ContentPart("text", content)]
    parts: list[ContentPart] = []
    for block in content or ():
        if not isinstance(block, Mapping):
            parts.append(ContentPart("text", str(block)))
            continue
        btype = str(block.get("type", ""))
        rest = {k: v for k, v in block.items() if k not in ("type", "text")}
        if btype in _TEXT_TYPES and isinstance(block.get("text"), str):
            parts.append(ContentPart("text", block["text"], {"block_type": btype, **rest}))
        elif btype == "refusal":
            parts.append(ContentPart("refusal", "", {"refusal": block.get("refusal", "")}))
        else:
            parts.append(ContentPart(_PART_TYPES.get(btype, btype), "", {"block": dict(block)}))
    return parts


def _content(content: Any) -> str | tuple[ContentPart, ...]:
    if isinstance(content, str):
        return content
    return tuple(_parts_of(content))


def _output_text(output: Any) -> str | tuple[ContentPart, ...]:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return tuple(_parts_of(output))
    return json.dumps(output, ensure_ascii=False, default=str)


def _call_of(item: Mapping[str, Any]) -> ToolCall | None:
    call_id = item.get("call_id")
    if not isinstance(call_id, str) or not str(item.get("type", "")).endswith("_call"):
        return None
    name = str(item.get("name") or item.get("type"))
    arguments = item.get("arguments")
    if not isinstance(arguments, str):
        arguments = json.dumps(item.get("action", item.get("input", {})), default=str)
    return ToolCall(call_id, name, arguments)


def _assistant(raws: list[dict[str, Any]], indices: list[int]) -> Message:
    parts: list[ContentPart] = []
    calls: list[ToolCall] = []
    sizes: list[int] = []
    for raw in raws:
        call = _call_of(raw)
        if call is not None:
            calls.append(call)
            sizes.append(0)
            continue
        if raw.get("type") == "reasoning":
            texts = [s.get("text", "") for s in raw.get("summary") or () if isinstance(s, Mapping)]
            texts += [c.get("text", "") for c in raw.get("content") or () if isinstance(c, Mapping)]
            item_parts = [ContentPart("reasoning", "\n".join(t for t in texts if t))]
        elif "role" in raw:
            item_parts = _parts_of(raw.get("content"))
        else:
            item_parts = [ContentPart(str(raw.get("type", "item")), "")]
        parts.extend(item_parts)
        sizes.append(len(item_parts))
    meta = {"items": raws, "indices": indices, "sizes": sizes}
    return Message(
        role="assistant",
        content=tuple(parts),
        tool_calls=tuple(calls),
        metadata={METADATA_KEY: meta},
    )


def _single(raw: dict[str, Any], index: int, names: Mapping[str, str] | None = None) -> Message:
    meta = {"items": [raw], "indices": [index]}
    if _kind(raw) == "output":
        return Message(
            role="tool",
            content=_output_text(raw.get("output")),
            tool_call_id=raw["call_id"],
            name=(names or {}).get(raw["call_id"]),  # the called tool, for summaries and search
            metadata={METADATA_KEY: meta},
        )
    role = raw.get("role")
    if role == "developer":
        role = "system"
    if role not in ("user", "system"):
        role = "user"
    return Message(
        role=role,  # type: ignore[arg-type]
        content=_content(raw.get("content")),
        name=raw.get("name"),
        metadata={METADATA_KEY: meta},
    )


def to_messages(items: Sequence[Any]) -> list[Message]:
    """Convert Responses-API input items (oldest first) to neutral messages.

    Items may be dicts (``TResponseInputItem``) or the SDK's pydantic output items; they are
    not mutated. Consecutive model-output items form one assistant message. Ids are derived
    from content; repeats get a ``"#<n>"`` suffix.

    Raises:
        TypeError: an item is neither a mapping nor a pydantic model.
    """
    out: list[Message] = []
    group: list[dict[str, Any]] = []
    indices: list[int] = []
    names: dict[str, str] = {}
    for index, item in enumerate(items):
        raw = _plain(item)
        if _kind(raw) == "assistant":
            call = _call_of(raw)
            if call is not None:
                names[call.id] = call.name
            group.append(raw)
            indices.append(index)
            continue
        if group:
            out.append(_assistant(group, indices))
            group, indices = [], []
        out.append(_single(raw, index, names))
    if group:
        out.append(_assistant(group, indices))
    return unique_ids(out)


def _block_out(part: ContentPart, original: Mapping[str, Any] | None) -> dict[str, Any]:
    if "block" in part.data:
        return dict(part.data["block"])
    if part.type == "refusal":
        return {"type": "refusal", "refusal": part.data.get("refusal", "")}
    data = dict(part.data)
    btype = data.pop("block_type", None) or (original or {}).get("type", "input_text")
    return {"type": btype, "text": part.text, **data}


def _content_out(content: str | tuple[ContentPart, ...], original: Any) -> Any:
    if isinstance(content, str):
        return content
    first = original[0] if isinstance(original, list) and original else None
    return [_block_out(p, first if isinstance(first, Mapping) else None) for p in content]


def _items_of(message: Message) -> list[dict[str, Any]]:
    """The Responses-API items for ``message``: its originals, with ctxmgr's changes applied."""
    meta = message.metadata.get(METADATA_KEY)
    if not isinstance(meta, Mapping) or not meta.get("items"):
        return _foreign(message)
    raws = [copy.deepcopy(dict(r)) for r in meta["items"]]
    if message.role == "assistant":
        original = _assistant(raws, list(meta["indices"]))
        if original.content == message.content and original.tool_calls == message.tool_calls:
            return raws
        return _changed_assistant(message, raws, list(meta.get("sizes", ())))
    original = _single(raws[0], 0)
    if original.content == message.content:
        return raws
    raw = raws[0]
    if message.role == "tool":
        as_list = isinstance(raw.get("output"), list) and not isinstance(message.content, str)
        raw["output"] = _content_out(message.content, raw["output"]) if as_list else message.text
    else:
        raw["content"] = _content_out(message.content, raw.get("content"))
    return [raw]


def _changed_assistant(
    message: Message, raws: list[dict[str, Any]], sizes: list[int]
) -> list[dict[str, Any]]:
    calls = {c.id: c for c in message.tool_calls}
    parts = list(message.content) if not isinstance(message.content, str) else None
    aligned = parts is not None and len(parts) == sum(sizes)
    out: list[dict[str, Any]] = []
    pos = 0
    text_done = False
    for raw, size in zip(raws, sizes, strict=False):
        call = _call_of(raw)
        if call is not None:
            new = calls.pop(call.id, None)
            if new is not None:
                if raw.get("type") == "function_call":
                    raw = {**raw, "name": new.name, "arguments": new.arguments}
                out.append(raw)
            continue
        if aligned and parts is not None:
            mine = parts[pos : pos + size]
            pos += size
            if raw.get("type") == "reasoning":
                if mine and mine[0].text:
                    out.append(raw)
            elif "role" in raw:
                raw = {**raw, "content": _content_out(tuple(mine), raw.get("content"))}
                out.append(raw)
            else:
                out.append(raw)
        elif "role" in raw and not text_done:
            out.append({**raw, "content": [{"type": "output_text", "text": message.text}]})
            text_done = True
    for call in calls.values():
        out.append(
            {
                "type": "function_call",
                "call_id": call.id,
                "name": call.name,
                "arguments": call.arguments,
            }
        )
    return out


def _foreign(message: Message) -> list[dict[str, Any]]:
    """Input items for a message ctxmgr made (e.g. a running summary, a merged turn)."""
    if message.role == "tool":
        output = {
            "type": "function_call_output",
            "call_id": message.tool_call_id or "",
            "output": message.text,
        }
        return [output]
    items: list[dict[str, Any]] = []
    if message.text or not message.tool_calls:
        items.append({"role": message.role, "content": message.text})
    items.extend(
        {"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments}
        for c in message.tool_calls
    )
    return items


def from_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Convert neutral messages (oldest first) to Responses-API input items (dicts).

    Messages made by :func:`to_messages` come back as their original items (with any
    content ctxmgr changed; a cleared reasoning item is left out, a dropped call's item
    too); other messages become ``{"role": ..., "content": ...}`` or
    ``function_call_output`` items.
    """
    return [item for m in messages for item in _items_of(m)]


# ---------------------------------------------------------------------------------------
# call_model_input_filter
# ---------------------------------------------------------------------------------------
KeyFunction = Callable[[CallModelData[Any]], str]
"""Maps a model call's data to a conversation key."""


def default_key(data: CallModelData[Any]) -> str:
    """The context's ``thread_id`` / ``session_id`` / ``conversation_id``, else a digest.

    The digest (BLAKE2b) is of the first input item, so one conversation keeps one key.
    """
    context = data.context
    for name in ("thread_id", "session_id", "conversation_id"):
        value = context.get(name) if isinstance(context, Mapping) else getattr(context, name, None)
        if value is not None:
            return str(value)
    items = data.model_data.input
    first = _plain(items[0]) if items else {}
    text = json.dumps(first, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


class ContextFilter:
    """A ``RunConfig.call_model_input_filter`` that fits each model call into the budget.

    Called by the SDK with a ``CallModelData`` (input items oldest first, the agent's
    instructions); returns a ``ModelInputData`` with the fitted items and the same
    instructions, which are counted and pinned. The SDK's input list is not mutated; kept
    items are the objects given. Async (the SDK awaits it), so an async summarizer is awaited.

    Args:
        manager: the template manager; each conversation gets ``manager.fork()``.
        key: maps a call to its conversation key (default :func:`default_key`).
        max_threads: at most this many conversations keep state; ``None`` for no bound.
        on_fit: optional ``on_fit(key, report)`` called after each fit.
    """

    def __init__(
        self,
        manager: ContextManager,
        *,
        key: KeyFunction = default_key,
        max_threads: int | None = 10_000,
        on_fit: Callable[[str, FitReport], None] | None = None,
    ) -> None:
        self.pool = ConversationPool(manager, max_threads)
        self.key = key
        self.on_fit = on_fit

    @classmethod
    def from_config(
        cls,
        config: ConfigLike | ContextManager = "agent",
        *,
        summarizer: Any = None,
        counter: Any = None,
        key: KeyFunction = default_key,
        max_threads: int | None = 10_000,
        on_fit: Callable[[str, FitReport], None] | None = None,
        **overrides: Any,
    ) -> ContextFilter:
        """Build the filter from a preset name, a TOML/YAML path or a config dict.

        Args:
            config: as for ``ContextManager.from_config`` (or a ready ``ContextManager``).
            summarizer: e.g. ``AgentsSummarizer(model)``.
            counter: token counter overriding the config's.
            key: see the class docstring.
            max_threads: see the class docstring.
            on_fit: see the class docstring.
            **overrides: config keys to override, e.g. ``max_context_tokens=8000``.
        """
        manager = load_manager(config, summarizer, counter, overrides)
        return cls(manager, key=key, max_threads=max_threads, on_fit=on_fit)

    @property
    def manager(self) -> ContextManager:
        """The template manager; each conversation gets a ``fork()`` of it."""
        return self.pool.base

    @property
    def last_reports(self) -> dict[str, FitReport]:
        """The latest FitReport per conversation key."""
        return self.pool.reports()

    def manager_for(self, key: str) -> ContextManager:
        """Return the manager holding conversation ``key``'s ctxmgr state."""
        return self.pool.get(key).manager

    def reset(self, key: str | None = None) -> None:
        """Forget one conversation's state, or every conversation's (``None``)."""
        self.pool.reset(key)

    async def __call__(self, data: CallModelData[Any]) -> ModelInputData:
        """Return the fitted model input for one model call."""
        instructions = data.model_data.instructions
        key = self.key(data)
        items = list(data.model_data.input)
        tools = _tool_definitions(data.agent)
        fitted = await _afit(self.pool, key, items, instructions, self.on_fit, tools)
        return ModelInputData(input=fitted, instructions=instructions)


def _tool_definitions(agent: Any) -> list[dict[str, Any]] | None:
    """The agent's function tools (and handoffs) as Responses-API tool definitions."""
    out: list[dict[str, Any]] = []
    for tool in getattr(agent, "tools", None) or ():
        schema = getattr(tool, "params_json_schema", None)
        if schema is not None:
            description = getattr(tool, "description", "") or ""
            out.append(
                {
                    "type": "function",
                    "name": tool.name,
                    "description": description,
                    "parameters": schema,
                }
            )
        else:
            out.append({"type": str(getattr(tool, "name", type(tool).__name__))})
    for handoff in getattr(agent, "handoffs", None) or ():
        name = getattr(handoff, "tool_name", None) or getattr(handoff, "name", "handoff")
        out.append({"type": "function", "name": str(name)})
    return out or None


async def _afit(
    pool: ConversationPool,
    key: str,
    items: list[Any],
    instructions: str | None,
    on_fit: Callable[[str, FitReport], None] | None,
    tools: list[dict[str, Any]] | None = None,
) -> list[Any]:
    """Fit ``items`` (oldest first) on conversation ``key``; kept items are the objects given."""
    conversation = pool.get(key)
    neutral = to_messages(items)
    head = [Message.system(instructions, id=INSTRUCTIONS_ID)] if instructions else []
    result = await conversation.manager.afit([*head, *neutral], tools=tools)
    conversation.report = result.report
    if on_fit is not None:
        on_fit(key, result.report)
    by_message = {m: [items[i] for i in m.metadata[METADATA_KEY]["indices"]] for m in neutral}
    fitted: list[Any] = []
    for message in result.messages:
        if message.id == INSTRUCTIONS_ID:
            continue
        original = by_message.get(message)
        fitted.extend(original if original is not None else _items_of(message))
    return fitted


# ---------------------------------------------------------------------------------------
# Session
# ---------------------------------------------------------------------------------------
class ContextSession(SessionABC):
    """An Agents SDK ``Session`` that stores every item and reads back the fitted view.

    ``add_items`` / ``pop_item`` / ``clear_session`` go to ``inner`` (default: an in-memory
    ``SQLiteSession``), which keeps the whole history (:meth:`all_items`); ``get_items``
    returns it fitted into the budget (oldest first). A session is read once per run, before
    the run's own items and tool rounds: to bound every model call, also set
    ``RunConfig(call_model_input_filter=ContextFilter...)`` or leave room for one tool round
    (e.g. with the config's ``reserve_output_tokens``).

    Args:
        session_id: the conversation id (also the ctxmgr state key).
        manager: the template manager; this session uses ``manager.fork()``.
        inner: where items are stored.
        instructions: the agent's instructions, counted and pinned (not returned).
        on_fit: optional ``on_fit(session_id, report)`` called after each fit.
    """

    def __init__(
        self,
        session_id: str,
        manager: ContextManager,
        *,
        inner: Session | None = None,
        instructions: str | None = None,
        on_fit: Callable[[str, FitReport], None] | None = None,
    ) -> None:
        self.session_id = session_id
        self.inner: Session = inner if inner is not None else SQLiteSession(session_id)
        self.session_settings = self.inner.session_settings
        self.instructions = instructions
        self.on_fit = on_fit
        self._pool = ConversationPool(manager, 1)

    @classmethod
    def from_config(
        cls,
        session_id: str,
        config: ConfigLike | ContextManager = "agent",
        *,
        inner: Session | None = None,
        instructions: str | None = None,
        summarizer: Any = None,
        counter: Any = None,
        on_fit: Callable[[str, FitReport], None] | None = None,
        **overrides: Any,
    ) -> ContextSession:
        """Build a session from a preset name, a TOML/YAML path or a config dict.

        Args:
            session_id: see the class docstring.
            config: as for ``ContextManager.from_config`` (or a ready ``ContextManager``).
            inner: see the class docstring.
            instructions: see the class docstring.
            summarizer: e.g. ``AgentsSummarizer(model)``.
            counter: token counter overriding the config's.
            on_fit: see the class docstring.
            **overrides: config keys to override, e.g. ``max_context_tokens=8000``.
        """
        manager = load_manager(config, summarizer, counter, overrides)
        return cls(session_id, manager, inner=inner, instructions=instructions, on_fit=on_fit)

    @property
    def manager(self) -> ContextManager:
        """This session's manager (holds its running summary, notes and archive)."""
        return self._pool.get(self.session_id).manager

    @property
    def last_report(self) -> FitReport | None:
        """The latest FitReport, or ``None`` before the first read."""
        return self._pool.reports().get(self.session_id)

    async def get_items(self, limit: int | None = None) -> list[Any]:
        """The fitted view of the stored items (its latest ``limit`` items when given)."""
        items = await self.inner.get_items()
        fitted = await _afit(self._pool, self.session_id, items, self.instructions, self.on_fit)
        return fitted[-limit:] if limit else fitted

    async def all_items(self, limit: int | None = None) -> list[Any]:
        """Every stored item (oldest first), unfitted; the latest ``limit`` when given."""
        return await self.inner.get_items(limit)

    async def add_items(self, items: list[Any]) -> None:
        """Store items in the inner session."""
        await self.inner.add_items(items)

    async def pop_item(self) -> Any:
        """Remove and return the most recent stored item."""
        return await self.inner.pop_item()

    async def clear_session(self) -> None:
        """Clear the stored items and this session's ctxmgr state."""
        await self.inner.clear_session()
        self._pool.reset()


# ---------------------------------------------------------------------------------------
# Summarizer
# ---------------------------------------------------------------------------------------
class AgentsSummarizer:
    """A ctxmgr ``AsyncSummarizer`` (and ``Summarizer``) backed by an Agents SDK model.

    Runs a tool-less agent on ``prompt`` (default ``ctxmgr.summarizers.SUMMARY_PROMPT``)
    filled with the previous summary, the evicted messages and the token budget.

    Args:
        model: a model name or an ``agents.Model`` instance.
        prompt: a template with ``{previous}``, ``{transcript}`` and ``{max_tokens}``.
    """

    def __init__(self, model: Any, *, prompt: str | None = None) -> None:
        self.agent: Agent[Any] = Agent(
            name="ctxmgr-summarizer", instructions="You write terse summaries.", model=model
        )
        self.prompt = prompt

    def summarize(
        self, previous: str | None, messages: Sequence[Message], *, max_tokens: int
    ) -> str:
        """Return the running summary updated with ``messages`` (``Runner.run_sync``)."""
        text = summary_prompt(self.prompt, previous, messages, max_tokens)
        return str(Runner.run_sync(self.agent, text).final_output).strip()

    async def asummarize(
        self, previous: str | None, messages: Sequence[Message], *, max_tokens: int
    ) -> str:
        """Async :meth:`summarize` (``await Runner.run``)."""
        text = summary_prompt(self.prompt, previous, messages, max_tokens)
        return str((await Runner.run(self.agent, text)).final_output).strip()


# ---------------------------------------------------------------------------------------
# Scratchpad tools
# ---------------------------------------------------------------------------------------
def note_tools(
    manager: ContextManager | ContextFilter, key: str | None = None
) -> list[FunctionTool]:
    """Return the scratchpad tools ``write_note``, ``update_note``, ``delete_note``, ``read_notes``.

    Agents SDK ``FunctionTool`` s (``function_tool``), for ``Agent(tools=[...])``.

    Args:
        manager: a ``ContextManager`` whose ``scratchpad`` the tools act on, or a
            :class:`ContextFilter` with ``key``: the scratchpad of conversation ``key``.
        key: the conversation key when ``manager`` is a :class:`ContextFilter`.

    Raises:
        ConfigError: the manager has no ``scratchpad`` strategy configured.
        ValueError: a :class:`ContextFilter` was given without ``key``.
    """
    if isinstance(manager, ContextFilter):
        if key is None:
            raise ValueError("note_tools(filter, key=...) needs the conversation key")
        flt, conv = manager, key
        functions = note_functions(lambda: flt.manager_for(conv), flt.manager)
    else:
        functions = note_functions(lambda: manager)
    return [function_tool(fn) for fn in functions]


def context_tools(
    manager: ContextManager | ContextFilter, key: str | None = None
) -> list[FunctionTool]:
    """Return the context tools ``search_history``, ``get_message`` and ``compact_context``.

    Agents SDK ``FunctionTool`` s. ``search_history`` ranks archived (evicted, cleared,
    offloaded) messages by BM25, ``get_message`` reads one by id in pages,
    ``compact_context`` requests a compaction on the next fit (:mod:`ctxmgr.tools`).

    Args:
        manager: a ``ContextManager``, or a :class:`ContextFilter` with ``key``: the
            manager of conversation ``key``.
        key: the conversation key when ``manager`` is a :class:`ContextFilter`.

    Raises:
        ValueError: a :class:`ContextFilter` was given without ``key``.
    """
    from ctxmgr.tools import compaction_function, recall_functions

    if isinstance(manager, ContextFilter):
        if key is None:
            raise ValueError("context_tools(filter, key=...) needs the conversation key")
        flt, conv = manager, key

        def current() -> ContextManager:
            return flt.manager_for(conv)
    else:
        fixed = manager

        def current() -> ContextManager:
            return fixed

    functions = [*recall_functions(current), compaction_function(current)]
    return [function_tool(fn) for fn in functions]
