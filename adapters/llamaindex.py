"""LlamaIndex adapter: a chat memory that keeps the full history and returns what fits.

Two lines install ctxmgr into a LlamaIndex app: keep the memory, wrap the LLM::

    memory = ContextMemory.from_config("agent")
    engine = SimpleChatEngine.from_defaults(llm=memory.wrap(llm), memory=memory)
    agent = FunctionAgent(tools=tools, llm=memory.wrap(llm))  # AgentWorkflow, ReActAgent too
    await agent.run(user_msg, memory=memory)

The wrapped LLM (:class:`ContextLLM`) fits every request where it is sent, with what the
engine or agent adds after the memory (its ``system_prompt``, the current run's tool calls
and results) and the tool definitions; the window, tokenizer and provider come from
``llm.metadata``; the reply's usage calibrates the next fit; a context-length refusal is
refit and retried once.

:class:`ContextMemory` stores every message in its chat store (nothing is lost);
``get()`` / ``aget()`` return the fitted view. ctxmgr state is kept per session
(``chat_store_key``; :meth:`ContextMemory.for_session` gives a sibling memory for another
session sharing the store).

Without ``wrap``, the memory alone cannot see what the engine or agent adds *outside* it
(their ``system_prompt``; ``FunctionAgent`` / ``AgentWorkflow`` append the current run's tool
calls and results after ``memory.get()``): give the system prompt to the memory
(``system_prompt=``), size it with ``llm=`` or ``max_context_tokens=``, and leave room for one
tool round with ``headroom_tokens=``.

The converters :func:`to_message` / :func:`from_message` map ``ChatMessage`` to ctxmgr's
neutral :class:`~ctxmgr.messages.Message` and back without loss: every content block
(text, image, audio, video, document, thinking, citation, cache point) is kept as a
:class:`~ctxmgr.messages.ContentPart` holding the block's JSON dump, tool calls
(``ToolCallBlock`` or ``additional_kwargs["tool_calls"]``) become
:class:`~ctxmgr.messages.ToolCall`, and ``additional_kwargs`` is restored verbatim.

Requires ``pip install "ctxmgr-llm[llamaindex]"``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ctxmgr.adapters._common import (
    ConfigLike,
    ConversationPool,
    adapter_metadata,
    content_parts,
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
    llamaindex_facts,
    manager_source,
    overflow_error,
    record_response,
)

try:
    from llama_index.core.base.llms.types import (
        AudioBlock,
        ChatMessage,
        ChatResponse,
        ChatResponseAsyncGen,
        ChatResponseGen,
        CompletionResponse,
        CompletionResponseAsyncGen,
        CompletionResponseGen,
        ContentBlock,
        DocumentBlock,
        ImageBlock,
        LLMMetadata,
        MessageRole,
        TextBlock,
        ToolCallBlock,
    )
    from llama_index.core.bridge.pydantic import Field, PrivateAttr, SerializeAsAny
    from llama_index.core.llms.function_calling import FunctionCallingLLM
    from llama_index.core.llms.llm import LLM
    from llama_index.core.memory.types import DEFAULT_CHAT_STORE_KEY, BaseChatStoreMemory
    from llama_index.core.storage.chat_store import BaseChatStore, SimpleChatStore
    from llama_index.core.tools import FunctionTool
    from pydantic import TypeAdapter
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise missing_extra("llamaindex", "LlamaIndex (llama-index-core>=0.12)") from exc

from ctxmgr.messages import ContentPart, Message, ToolCall

if TYPE_CHECKING:
    from ctxmgr import ContextManager
    from ctxmgr.report import FitReport

__all__ = [
    "METADATA_KEY",
    "ContextLLM",
    "ContextMemory",
    "LlamaIndexSummarizer",
    "UnsupportedContentWarning",
    "from_message",
    "from_messages",
    "context_tools",
    "note_tools",
    "to_message",
    "to_messages",
]

METADATA_KEY = "llamaindex"
"""Key of :attr:`Message.metadata` holding what a ``ChatMessage`` needs to be rebuilt."""

FitCallback = Callable[[str, "FitReport"], None]
"""``on_fit(session_key, report)``: called after every fit."""


class UnsupportedContentWarning(UserWarning):
    """A content part has no LlamaIndex block type and was left out (names the part type)."""


# ---------------------------------------------------------------------------------------
# Converters
# ---------------------------------------------------------------------------------------
_BLOCKS: TypeAdapter[Any] = TypeAdapter(ContentBlock)
_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "chatbot": "assistant",
    "model": "assistant",
    "tool": "tool",
    "function": "tool",
}
# neutral part type per block type, chosen so ctxmgr's counter estimates them sensibly
_PART_TYPES = {"image": "image", "audio": "audio", "document": "file", "video": "video"}


def _part_of(block: Any) -> ContentPart:
    dump = block.model_dump(mode="json")
    kind = str(dump.get("block_type", "unknown"))
    text = ""
    if kind == "thinking" and isinstance(dump.get("content"), str):
        text = dump["content"]
    return ContentPart(_PART_TYPES.get(kind, kind), text, dump)


def _getter(obj: Any) -> Callable[[str], Any]:
    if isinstance(obj, Mapping):
        return obj.get
    return lambda key: getattr(obj, key, None)


def _call_from_kwargs(raw: Any, j: int, base: str) -> ToolCall | None:
    """Read one entry of ``additional_kwargs["tool_calls"]`` (OpenAI object/dict, ToolSelection)."""
    get = _getter(raw)
    fn = get("function")
    if fn is not None:
        fget = _getter(fn)
        name, args, call_id = fget("name"), fget("arguments"), get("id")
    else:
        name, args, call_id = get("tool_name"), get("tool_kwargs"), get("tool_id")
    if not name:
        return None
    if not isinstance(args, str):
        args = json.dumps(args or {}, ensure_ascii=False, default=str)
    return ToolCall(str(call_id or f"li-{base}-k{j}"), str(name), args)


def to_message(message: ChatMessage, *, index: int | None = None) -> Message:
    """Convert a LlamaIndex ``ChatMessage`` to a neutral :class:`Message`.

    Text blocks become text (a plain string when the message is one text block), other
    blocks become :class:`ContentPart` s holding the block's JSON dump, ``ToolCallBlock`` s
    and ``additional_kwargs["tool_calls"]`` become tool calls (calls without an id get
    ``"li-<index>-<j>"``), a tool result's ``additional_kwargs["tool_call_id"]`` becomes
    ``tool_call_id`` and ``additional_kwargs["name"]`` the name. The rest (role spelling,
    block order, ``additional_kwargs``) is kept under ``metadata["llamaindex"]``.

    Args:
        message: the message.
        index: its position in the history, used to name synthetic call ids.
    """
    role_value = message.role.value if isinstance(message.role, MessageRole) else str(message.role)
    role = _ROLES.get(role_value, "user")
    base = f"i{index}" if index is not None else "x"
    parts: list[ContentPart] = []
    calls: list[ToolCall] = []
    layout: list[str] = []
    kwargs_calls: list[str] = []
    synthetic: list[str] = []
    raw_kwargs: dict[str, Any] = dict(message.additional_kwargs)
    text_only = True
    for j, block in enumerate(message.blocks):
        if isinstance(block, TextBlock):
            parts.append(ContentPart("text", block.text))
            layout.append("p")
        elif isinstance(block, ToolCallBlock):
            call_id = block.tool_call_id
            if not call_id:
                call_id = f"li-{base}-{j}"
                synthetic.append(call_id)
            args = block.tool_kwargs
            text = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
            calls.append(ToolCall(call_id, block.tool_name, text))
            layout.append("c" if isinstance(args, str) else "cd")
        else:
            text_only = False
            parts.append(_part_of(block))
            layout.append("p")
    known = {c.id for c in calls}
    for j, raw in enumerate(raw_kwargs.get("tool_calls") or ()):
        call = _call_from_kwargs(raw, j, base)
        if call is not None and call.id not in known:
            calls.append(call)
            kwargs_calls.append(call.id)
            known.add(call.id)
    content: str | tuple[ContentPart, ...]
    if text_only and len(parts) == 1:
        content = parts[0].text
    elif text_only and not parts:
        content = ""
    else:
        content = tuple(parts)
    extras: dict[str, Any] = {"role": role_value, "layout": layout, "text_only": text_only}
    if raw_kwargs:
        extras["additional_kwargs"] = raw_kwargs
    if kwargs_calls:
        extras["kwargs_calls"] = kwargs_calls
    if synthetic:
        extras["synthetic_ids"] = synthetic
    tool_call_id = raw_kwargs.get("tool_call_id") if role == "tool" else None
    name = raw_kwargs.get("name")
    return Message(
        role=role,  # type: ignore[arg-type]
        content=content,
        tool_calls=tuple(calls),
        tool_call_id=str(tool_call_id) if tool_call_id is not None else None,
        name=name if isinstance(name, str) and name else None,
        metadata={METADATA_KEY: extras},
    )


def to_messages(messages: Sequence[ChatMessage]) -> list[Message]:
    """Convert ``ChatMessage`` s (oldest first) to neutral messages.

    Ids are derived from content; a repeated message gets a ``"#<n>"`` suffix so ids are
    unique and stay stable as the history grows.
    """
    return _to_messages(messages, None)


_Cache = dict[tuple[int, int], tuple[ChatMessage, Any, Message]]


def _signature(message: ChatMessage) -> Any:
    """What must be unchanged for a cached conversion to be reused (blocks are mutable)."""
    return (
        message.role,
        tuple(id(b) for b in message.blocks),
        tuple(b.text for b in message.blocks if isinstance(b, TextBlock)),
        id(message.additional_kwargs),
        len(message.additional_kwargs),
    )


def _to_messages(messages: Sequence[ChatMessage], cache: _Cache | None) -> list[Message]:
    """:func:`to_messages`, reusing conversions of unchanged objects from ``cache``."""
    out: list[Message] = []
    fresh: _Cache = {}
    for index, item in enumerate(messages):
        key = (id(item), index)
        signature = _signature(item) if cache is not None else None
        hit = cache.get(key) if cache is not None else None
        if hit is not None and hit[0] is item and hit[1] == signature:
            msg = hit[2]
        else:
            msg = to_message(item, index=index)
        if cache is not None:
            fresh[key] = (item, signature, msg)
        out.append(msg)
    if cache is not None:
        cache.clear()
        cache.update(fresh)
    return unique_ids(out)


def _block_of(part: ContentPart) -> Any:
    """Rebuild a LlamaIndex block from a part; ``None`` (with a warning) when impossible."""
    if part.type == "text":
        return TextBlock(text=part.text)
    if "block_type" in part.data:
        return _BLOCKS.validate_python(dict(part.data))
    data = part.data
    if part.type == "image_url" and isinstance(data.get("image_url"), Mapping):
        image = data["image_url"]
        return ImageBlock(url=str(image.get("url")), detail=image.get("detail"))
    if part.type == "input_audio" and isinstance(data.get("input_audio"), Mapping):
        audio = data["input_audio"]
        return AudioBlock(audio=str(audio.get("data", "")).encode(), format=audio.get("format"))
    if part.type == "file" and isinstance(data.get("file"), Mapping):
        file = data["file"]
        raw = file.get("file_data")
        if isinstance(raw, str):
            return DocumentBlock(data=raw.encode(), title=file.get("filename"))
    warnings.warn(
        f"content part of type {part.type!r} has no LlamaIndex block equivalent; "
        "it was left out of the message",
        UnsupportedContentWarning,
        stacklevel=3,
    )
    return None


def from_message(message: Message) -> ChatMessage:
    """Convert a neutral :class:`Message` to a LlamaIndex ``ChatMessage``.

    A message made by :func:`to_message` comes back equal to the original, with any change
    ctxmgr made to its content. Other messages (e.g. a summary ctxmgr injected) map by role;
    their tool calls become ``ToolCallBlock`` s and their ``tool_call_id`` / ``name`` go to
    ``additional_kwargs``. Parts with no block equivalent are left out with an
    :class:`UnsupportedContentWarning` naming the part type.
    """
    extras = adapter_metadata(message, METADATA_KEY)
    role = extras.get("role") or message.role
    parts = content_parts(message.content)
    if (
        isinstance(message.content, str)
        and not message.content
        and extras.get("text_only")
        and "p" not in extras.get("layout", ())
    ):
        parts = []  # the original had no text block (e.g. only tool calls)
    kwargs_calls = set(extras.get("kwargs_calls", ()))
    synthetic = set(extras.get("synthetic_ids", ()))
    call_blocks: list[tuple[str, Any]] = []
    for call in message.tool_calls:
        if call.id in kwargs_calls:
            continue
        call_blocks.append(("call", call))
    layout = list(extras.get("layout", ()))
    n_parts = sum(1 for k in layout if k == "p")
    n_calls = sum(1 for k in layout if k != "p")
    blocks: list[Any] = []
    if layout and n_parts == len(parts) and n_calls == len(call_blocks):
        pi = ci = 0
        for kind in layout:
            if kind == "p":
                blocks.append(_block_of(parts[pi]))
                pi += 1
            else:
                blocks.append(_call_block(call_blocks[ci][1], kind == "cd", synthetic))
                ci += 1
    else:
        blocks = [_block_of(p) for p in parts]
        blocks += [_call_block(c, True, synthetic) for _, c in call_blocks]
    blocks = [b for b in blocks if b is not None]
    additional = dict(extras.get("additional_kwargs") or {})
    if not extras:
        if message.tool_call_id is not None:
            additional["tool_call_id"] = message.tool_call_id
        if message.name:
            additional["name"] = message.name
    return ChatMessage(role=MessageRole(role), blocks=blocks, additional_kwargs=additional)


def _call_block(call: ToolCall, as_dict: bool, synthetic: set[str]) -> ToolCallBlock:
    args: Any = call.arguments
    if as_dict:
        parsed = call.parsed_arguments()
        args = parsed if isinstance(parsed, dict) else call.arguments
    return ToolCallBlock(
        tool_call_id=None if call.id in synthetic else call.id,
        tool_name=call.name,
        tool_kwargs=args,
    )


def from_messages(messages: Sequence[Message]) -> list[ChatMessage]:
    """Convert neutral messages (oldest first) with :func:`from_message`."""
    return [from_message(m) for m in messages]


# ---------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------
class _HeadroomSpec(ManagerSpec):
    """A :class:`ManagerSpec` whose managers keep ``headroom`` more tokens free."""

    headroom = 0

    def build(self, facts: ModelFacts | None = None) -> ContextManager:
        return _with_headroom(super().build(facts), self.headroom)


def _with_headroom(manager: ContextManager, headroom: int) -> ContextManager:
    """Return a manager like ``manager`` whose effective limit is ``headroom`` tokens lower."""
    if headroom <= 0:
        return manager
    from ctxmgr import ContextManager

    return ContextManager.from_config(
        manager.config,
        counter=manager.counter,
        summarizer=manager.summarizer,
        on_report=manager.on_report,
        reserve_output_tokens=manager.budget.reserve_output_tokens + headroom,
        store=getattr(manager, "store", None),
        conversation_id=getattr(manager, "conversation_id", None),
    )


class ContextMemory(BaseChatStoreMemory):
    """A LlamaIndex memory whose ``get()`` is ctxmgr's fitted view of the full history.

    Every message is kept in ``chat_store`` under ``chat_store_key``; ``get_all()`` returns
    them all. ``get()`` / ``aget()`` fit them (plus ``system_prompt``, when set) with the
    session's manager, a ``fork()`` of the template per ``chat_store_key``.

    Fit at the model boundary with :meth:`wrap`: give the agent or chat engine
    ``llm=memory.wrap(llm)`` and every request is fitted where it is sent, including what
    the framework adds after the memory (the agent's ``system_prompt``, ``FunctionAgent`` /
    ``AgentWorkflow`` / ``ReActAgent`` in-run tool calls and results) and the tool
    definitions; ``get()`` then returns the stored history unfitted (the wrapper fits it).

    Build it with :meth:`from_config`.

    Attributes:
        system_prompt: prepended to every fitted view as a system message (pinned, counted).
    """

    system_prompt: str | None = Field(
        default=None, description="System prompt prepended to the fitted view."
    )

    _sessions: ConversationPool | None = PrivateAttr(default=None)
    _on_fit: FitCallback | None = PrivateAttr(default=None)
    _system: ChatMessage | None = PrivateAttr(default=None)
    _wrapped: bool = PrivateAttr(default=False)

    @classmethod
    def class_name(cls) -> str:
        """Get class name."""
        return "ContextMemory"

    @classmethod
    def from_config(
        cls,
        config: ConfigLike | ContextManager = "agent",
        *,
        summarizer: Any = None,
        counter: Any = None,
        system_prompt: str | None = None,
        chat_store: BaseChatStore | None = None,
        chat_store_key: str | None = None,
        session_id: str | None = None,
        chat_history: Sequence[ChatMessage] | None = None,
        headroom_tokens: int = 0,
        on_fit: FitCallback | None = None,
        llm: LLM | None = None,
        **overrides: Any,
    ) -> ContextMemory:
        """Build a memory from a preset name, a TOML/YAML path or a config dict.

        Args:
            config: as for ``ContextManager.from_config`` (or a ready ``ContextManager``).
            summarizer: e.g. ``LlamaIndexSummarizer(llm)``.
            counter: token counter overriding the config's.
            system_prompt: see the class docstring.
            chat_store: where messages are stored (default: a new ``SimpleChatStore``).
            chat_store_key: the session key (default ``"chat_history"``).
            session_id: alias of ``chat_store_key``.
            chat_history: messages to start with.
            headroom_tokens: tokens every fitted view leaves free, on top of the config's
                ``reserve_output_tokens``, for what the engine or agent adds outside the
                memory (``FunctionAgent``'s tool calls and results of the current run, a
                ``system_prompt`` given to the engine). Size it to one tool round.
            on_fit: optional ``on_fit(session_key, report)`` called after each fit.
            llm: the LLM the memory feeds: sizes the window and picks the tokenizer and
                provider where the config leaves them unset (:meth:`wrap` does the same).
            **overrides: config keys to override, e.g. ``max_context_tokens=8000``.

        Raises:
            ConfigError: the config is invalid.
        """
        source = manager_source(config, summarizer, counter, overrides, "ContextMemory")
        if isinstance(source, ManagerSpec):
            spec = _HeadroomSpec(
                source.config,
                source.summarizer,
                source.counter,
                {"store": source.store, "conversation_id": source.conversation_id},
            )
            spec.adapter = (
                "ContextMemory (give the agent or engine llm=memory.wrap(llm), or pass "
                "max_context_tokens=)"
            )
            spec.headroom = headroom_tokens
            manager: ContextManager | ManagerSpec = spec
        else:
            manager = _with_headroom(source, headroom_tokens)
        memory = cls(
            chat_store=chat_store or SimpleChatStore(),
            chat_store_key=chat_store_key or session_id or DEFAULT_CHAT_STORE_KEY,
            system_prompt=system_prompt,
        )
        memory._sessions = ConversationPool(manager)
        memory._on_fit = on_fit
        if llm is not None:
            memory._sessions.resolve(llamaindex_facts(llm))
        if chat_history:
            memory.set(list(chat_history))
        return memory

    @classmethod
    def from_defaults(  # type: ignore[override]
        cls,
        chat_history: list[ChatMessage] | None = None,
        llm: LLM | None = None,
        **kwargs: Any,
    ) -> ContextMemory:
        """LlamaIndex-style constructor: ``from_config(kwargs.pop("config", "agent"), ...)``.

        ``llm``, when given, becomes the summarizer (:class:`LlamaIndexSummarizer`) unless
        ``summarizer`` is passed.
        """
        config = kwargs.pop("config", "agent")
        if llm is not None and kwargs.get("summarizer") is None:
            kwargs["summarizer"] = LlamaIndexSummarizer(llm)
        return cls.from_config(config, chat_history=chat_history, llm=llm, **kwargs)

    def for_session(self, session_id: str) -> ContextMemory:
        """Return a memory for another session: same store, template and callback."""
        other = type(self)(
            chat_store=self.chat_store,
            chat_store_key=session_id,
            system_prompt=self.system_prompt,
        )
        other._sessions = self._pool()
        other._on_fit = self._on_fit
        return other

    def wrap(self, llm: LLM) -> ContextLLM:
        """Return ``llm`` wrapped so every request it sends is fitted with this session.

        Give the result to the agent or chat engine (``FunctionAgent(llm=memory.wrap(llm))``,
        ``SimpleChatEngine.from_defaults(llm=memory.wrap(llm), memory=memory)``) and keep
        this memory as its memory. From then on ``get()`` returns the stored history (plus
        ``system_prompt``) unfitted and the wrapper fits the whole request.

        Args:
            llm: any LlamaIndex LLM (function-calling or not); not mutated.
        """
        self._wrapped = True
        return ContextLLM.around(llm, self)

    # -- manager access ---------------------------------------------------------------------
    def _pool(self) -> ConversationPool:
        if self._sessions is None:  # built directly, not through from_config: preset "agent"
            self._sessions = ConversationPool(ManagerSpec("agent", adapter="ContextMemory"))
        return self._sessions

    @property
    def manager(self) -> ContextManager:
        """The manager holding this session's ctxmgr state."""
        return self._pool().get(self.chat_store_key).manager

    def manager_for(self, session_id: str) -> ContextManager:
        """The manager holding session ``session_id``'s state."""
        return self._pool().get(session_id).manager

    @property
    def last_report(self) -> FitReport | None:
        """The latest FitReport of this session, or ``None``."""
        session = self._pool().peek(self.chat_store_key)
        return session.report if session is not None else None

    # -- fitting ---------------------------------------------------------------------------
    def _history(self, stored: list[ChatMessage]) -> list[ChatMessage]:
        if not self.system_prompt:
            return list(stored)
        system = self._system
        if system is None or system.content != self.system_prompt:
            system = self._system = ChatMessage(role=MessageRole.SYSTEM, content=self.system_prompt)
        return [system, *stored]

    def _finish(self, history: list[ChatMessage], neutral: list[Message], result: Any) -> Any:
        key = self.chat_store_key
        self._pool().get(key).report = result.report
        if self._on_fit is not None:
            self._on_fit(key, result.report)
        return restore_originals(result.messages, neutral, history, from_message)

    def get(self, input: str | None = None, **kwargs: Any) -> list[ChatMessage]:
        """Return the fitted view of this session's history (``input`` ranks relevance).

        After :meth:`wrap`, the stored history unfitted (the wrapped LLM fits the request).

        Raises:
            ConfigError: the window is unknown (no ``llm``, ``wrap`` or ``max_context_tokens``).
        """
        if self._wrapped:
            return self._history(self.get_all())
        history = self._history(self.get_all())
        neutral = _to_messages(history, self._pool().get(self.chat_store_key).cache)
        result = self.manager.fit(neutral, query=input or None)
        return self._finish(history, neutral, result)  # type: ignore[no-any-return]

    async def aget(self, input: str | None = None, **kwargs: Any) -> list[ChatMessage]:
        """Async :meth:`get`; awaits an async summarizer when one is set."""
        if self._wrapped:
            return self._history(await self.aget_all())
        history = self._history(await self.aget_all())
        neutral = _to_messages(history, self._pool().get(self.chat_store_key).cache)
        result = await self.manager.afit(neutral, query=input or None)
        return self._finish(history, neutral, result)  # type: ignore[no-any-return]

    def set(self, messages: list[ChatMessage]) -> None:
        """Replace this session's history (ctxmgr state is kept; the next fit re-reads all)."""
        super().set(messages)

    def reset(self) -> None:
        """Delete this session's history and ctxmgr state."""
        super().reset()
        self._pool().reset(self.chat_store_key)

    async def areset(self) -> None:
        """Async :meth:`reset`."""
        await super().areset()
        self._pool().reset(self.chat_store_key)


# ---------------------------------------------------------------------------------------
# The model boundary
# ---------------------------------------------------------------------------------------
_OBSERVATION = "Observation:"


def _pin_react_question(messages: list[Message]) -> list[Message]:
    """Pin the question of a ReAct step: its tool results come back as user messages.

    ``ReActAgent`` sends each tool result as a *user* message ``"Observation: ..."``, so the
    core's "latest user message" would be the observation and the question itself could be
    evicted mid-run. When user observations follow the latest real user message, that
    message is returned pinned (``pinned=True``, same id), so it is kept and counted.
    """
    question = None
    observed = False
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if message.role != "user":
            continue
        if message.text.lstrip().startswith(_OBSERVATION):
            observed = True
            continue
        question = i
        break
    if question is None or not observed or messages[question].pinned:
        return messages
    out = list(messages)
    out[question] = messages[question].evolve(pinned=True, id=messages[question].id)
    return out


class ContextLLM(FunctionCallingLLM):
    """A LlamaIndex LLM that fits every chat request before the wrapped LLM sends it.

    Made by :meth:`ContextMemory.wrap`. ``chat`` / ``achat`` / ``stream_chat`` /
    ``astream_chat`` (and the ``*_with_tools`` forms agents use) fit the messages they are
    given, with the tool definitions of the call, using the memory session's manager; the
    window, tokenizer and provider come from the wrapped LLM's ``metadata`` unless the config
    sets them. After each reply the provider's usage and stop reason calibrate the next fit.
    If the provider answers context-length-exceeded, the request is compacted further and
    sent once more (the FitReport says ``recovered``); a second refusal raises
    ``ContextOverflowError`` with the provider's numbers. ``complete`` calls pass through.

    Attributes:
        llm: the wrapped LLM.
    """

    llm: SerializeAsAny[LLM] = Field(description="The wrapped LLM.")

    _memory: Any = PrivateAttr(default=None)
    _last: Any = PrivateAttr(default=None)

    @classmethod
    def around(cls, llm: LLM, memory: ContextMemory) -> ContextLLM:
        """Wrap ``llm`` for ``memory``'s session (use :meth:`ContextMemory.wrap`)."""
        wrapper = cls(llm=llm, callback_manager=llm.callback_manager)
        wrapper._memory = memory
        return wrapper

    @classmethod
    def class_name(cls) -> str:
        """Get class name."""
        return "ContextLLM"

    @property
    def metadata(self) -> LLMMetadata:
        """The wrapped LLM's metadata."""
        return self.llm.metadata

    # -- fitting -------------------------------------------------------------------------
    def _session(self) -> Any:
        pool = self._memory._pool()
        pool.resolve(llamaindex_facts(self.llm))
        return pool.get(self._memory.chat_store_key)

    def _prepare(self, messages: Sequence[ChatMessage], tools: Any) -> tuple[Any, list[Message]]:
        session = self._session()
        neutral = _pin_react_question(_to_messages(list(messages), session.cache))
        self._last = (neutral, list(messages), tools)
        return session, neutral

    def _fit(self, messages: Sequence[ChatMessage], tools: Any) -> list[ChatMessage]:
        session, neutral = self._prepare(messages, tools)
        result = session.manager.fit(neutral, tools=tools)
        return self._memory._finish(list(messages), neutral, result)  # type: ignore[no-any-return]

    async def _afit(self, messages: Sequence[ChatMessage], tools: Any) -> list[ChatMessage]:
        session, neutral = self._prepare(messages, tools)
        result = await session.manager.afit(neutral, tools=tools)
        return self._memory._finish(list(messages), neutral, result)  # type: ignore[no-any-return]

    def _refit(self, overflow: ProviderOverflow) -> list[ChatMessage]:
        neutral, originals, tools = self._last
        result = self._session().manager.refit_after_overflow(
            neutral,
            tools=tools,
            provider_tokens=overflow.provider_tokens,
            provider_limit=overflow.provider_limit,
            message=overflow.message,
        )
        return self._memory._finish(originals, neutral, result)  # type: ignore[no-any-return]

    async def _arefit(self, overflow: ProviderOverflow) -> list[ChatMessage]:
        neutral, originals, tools = self._last
        result = await self._session().manager.arefit_after_overflow(
            neutral,
            tools=tools,
            provider_tokens=overflow.provider_tokens,
            provider_limit=overflow.provider_limit,
            message=overflow.message,
        )
        return self._memory._finish(originals, neutral, result)  # type: ignore[no-any-return]

    def _record(self, response: Any) -> None:
        if response is not None:
            record_response(self._session().manager, response)

    def _fail(self, overflow: ProviderOverflow) -> Exception:
        return overflow_error(overflow, self._session().manager)

    # -- chat --------------------------------------------------------------------------------
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Fit ``messages`` (oldest first; not mutated) and chat with the wrapped LLM."""
        fitted = self._fit(messages, kwargs.get("tools"))
        try:
            response = self.llm.chat(fitted, **kwargs)
        except Exception as exc:
            overflow = context_length_error(exc)
            if overflow is None:
                raise
            try:
                response = self.llm.chat(self._refit(overflow), **kwargs)
            except Exception as again:
                second = context_length_error(again)
                if second is None:
                    raise
                raise self._fail(second) from again
        self._record(response)
        return response

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Async :meth:`chat`."""
        fitted = await self._afit(messages, kwargs.get("tools"))
        try:
            response = await self.llm.achat(fitted, **kwargs)
        except Exception as exc:
            overflow = context_length_error(exc)
            if overflow is None:
                raise
            try:
                response = await self.llm.achat(await self._arefit(overflow), **kwargs)
            except Exception as again:
                second = context_length_error(again)
                if second is None:
                    raise
                raise self._fail(second) from again
        self._record(response)
        return response

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Streaming :meth:`chat` (the request is sent, and retried, at the first chunk)."""
        fitted = self._fit(messages, kwargs.get("tools"))

        def start(msgs: list[ChatMessage]) -> tuple[Any, Any]:
            gen = self.llm.stream_chat(msgs, **kwargs)
            return next(gen, None), gen

        try:
            first, gen = start(fitted)
        except Exception as exc:
            overflow = context_length_error(exc)
            if overflow is None:
                raise
            try:
                first, gen = start(self._refit(overflow))
            except Exception as again:
                second = context_length_error(again)
                if second is None:
                    raise
                raise self._fail(second) from again

        def relay() -> ChatResponseGen:
            last = first
            if first is not None:
                yield first
            for chunk in gen:
                last = chunk
                yield chunk
            self._record(last)

        return relay()

    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        """Async streaming :meth:`chat` (what ``FunctionAgent`` calls by default)."""
        fitted = await self._afit(messages, kwargs.get("tools"))

        async def start(msgs: list[ChatMessage]) -> tuple[Any, Any]:
            gen = await self.llm.astream_chat(msgs, **kwargs)
            try:
                return await gen.__anext__(), gen
            except StopAsyncIteration:
                return None, gen

        try:
            first, gen = await start(fitted)
        except Exception as exc:
            overflow = context_length_error(exc)
            if overflow is None:
                raise
            try:
                first, gen = await start(await self._arefit(overflow))
            except Exception as again:
                second = context_length_error(again)
                if second is None:
                    raise
                raise self._fail(second) from again

        async def relay() -> ChatResponseAsyncGen:
            last = first
            if first is not None:
                yield first
            async for chunk in gen:
                last = chunk
                yield chunk
            self._record(last)

        return relay()

    # -- tools and completion: delegated ------------------------------------------------
    def _prepare_chat_with_tools(
        self,
        tools: Sequence[Any],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        prepare = getattr(self.llm, "_prepare_chat_with_tools_compat", None)
        if prepare is None:
            raise TypeError(f"{type(self.llm).__name__} is not a function-calling LLM")
        return prepare(  # type: ignore[no-any-return]
            tools,
            user_msg=user_msg,
            chat_history=chat_history,
            verbose=verbose,
            allow_parallel_tool_calls=allow_parallel_tool_calls,
            tool_required=tool_required,
            **kwargs,
        )

    def _validate_chat_with_tools_response(
        self,
        response: ChatResponse,
        tools: Sequence[Any],
        allow_parallel_tool_calls: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        validate = getattr(self.llm, "_validate_chat_with_tools_response", None)
        if validate is None:
            return response
        return validate(  # type: ignore[no-any-return]
            response, tools, allow_parallel_tool_calls=allow_parallel_tool_calls, **kwargs
        )

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[Any]:
        """The wrapped LLM's tool-call parsing."""
        return self.llm.get_tool_calls_from_response(  # type: ignore[attr-defined,no-any-return]
            response, error_on_no_tool_call=error_on_no_tool_call, **kwargs
        )

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """The wrapped LLM's ``complete`` (prompts are not fitted)."""
        return self.llm.complete(prompt, formatted=formatted, **kwargs)

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        """The wrapped LLM's ``stream_complete``."""
        return self.llm.stream_complete(prompt, formatted=formatted, **kwargs)

    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        """The wrapped LLM's ``acomplete``."""
        return await self.llm.acomplete(prompt, formatted=formatted, **kwargs)

    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        """The wrapped LLM's ``astream_complete``."""
        return await self.llm.astream_complete(prompt, formatted=formatted, **kwargs)


# ---------------------------------------------------------------------------------------
# Summarizer
# ---------------------------------------------------------------------------------------
class LlamaIndexSummarizer:
    """A ctxmgr ``Summarizer`` / ``AsyncSummarizer`` backed by a LlamaIndex LLM.

    Sends one user ``ChatMessage`` holding ``prompt`` (default
    ``ctxmgr.summarizers.SUMMARY_PROMPT``) filled with the previous summary, the evicted
    messages and the token budget (``llm.chat`` / ``llm.achat``) and returns the reply text.

    Args:
        llm: any LlamaIndex ``LLM``.
        prompt: a template with ``{previous}``, ``{transcript}`` and ``{max_tokens}``.
    """

    def __init__(self, llm: LLM, *, prompt: str | None = None) -> None:
        self.llm = llm
        self.prompt = prompt

    def _messages(
        self, previous: str | None, messages: Sequence[Message], max_tokens: int
    ) -> list[ChatMessage]:
        text = summary_prompt(self.prompt, previous, messages, max_tokens)
        return [ChatMessage(role=MessageRole.USER, content=text)]

    def summarize(
        self, previous: str | None, messages: Sequence[Message], *, max_tokens: int
    ) -> str:
        """Return the running summary updated with ``messages`` (calls ``llm.chat``)."""
        response = self.llm.chat(self._messages(previous, messages, max_tokens))
        return (response.message.content or "").strip()

    async def asummarize(
        self, previous: str | None, messages: Sequence[Message], *, max_tokens: int
    ) -> str:
        """Async :meth:`summarize` (calls ``llm.achat``)."""
        response = await self.llm.achat(self._messages(previous, messages, max_tokens))
        return (response.message.content or "").strip()


# ---------------------------------------------------------------------------------------
# Scratchpad tools
# ---------------------------------------------------------------------------------------
def note_tools(manager: ContextManager | ContextMemory) -> list[FunctionTool]:
    """Return ``write_note``, ``update_note``, ``delete_note`` and ``read_notes`` tools.

    Args:
        manager: a ``ContextManager`` whose ``scratchpad`` the tools act on, or a
            :class:`ContextMemory`, in which case they act on the scratchpad of the memory's
            current session (``chat_store_key`` at call time).

    Raises:
        ConfigError: the manager has no ``scratchpad`` strategy configured.
    """
    functions = note_functions(
        lambda: manager.manager if isinstance(manager, ContextMemory) else manager,
        manager._pool().template() if isinstance(manager, ContextMemory) else manager,
    )
    return [FunctionTool.from_defaults(fn=fn) for fn in functions]


def context_tools(manager: ContextManager | ContextMemory) -> list[FunctionTool]:
    """Return the ``search_history``, ``get_message`` and ``compact_context`` tools.

    ``search_history`` ranks archived (evicted, cleared, offloaded) messages by BM25,
    ``get_message`` reads one by id in pages, ``compact_context`` requests a compaction
    on the next fit (see :mod:`ctxmgr.tools`).

    Args:
        manager: a ``ContextManager``, or a :class:`ContextMemory`, in which case they act
            on the manager of the memory's current session (``chat_store_key`` at call
            time).
    """
    from ctxmgr.tools import compaction_function, recall_functions

    def current() -> ContextManager:
        return manager.manager if isinstance(manager, ContextMemory) else manager

    functions = [*recall_functions(current), compaction_function(current)]
    return [FunctionTool.from_defaults(fn=fn) for fn in functions]
