"""AG2 adapter (the AutoGen 0.2 line, module ``autogen``): fit a ``ConversableAgent``'s context.

One line installs ctxmgr into an AG2 agent::

    ContextTransform.from_config("agent").add_to_agent(assistant)

It registers AG2's ``TransformMessages`` capability with this ``MessageTransform``
(``apply_transform`` / ``get_logs``): before every reply the agent's messages are fitted into
the token budget; the agent's ``chat_messages`` keep the whole history. ``TransformMessages``
removes the system message before calling transforms and puts it back after, so the
transform counts and pins the agent's ``system_message`` itself (read from the agent at each
call; pass ``system_message=`` when the transform is used without :meth:`add_to_agent`), and
counts the agent's tool definitions (``llm_config["tools"]``) in the budget.

AG2 keeps one history per peer agent and gives transforms only the message list, so ctxmgr
state is kept per conversation identified by its first message (a new chat, e.g.
``initiate_chat(clear_history=True)`` with a new first message, starts new state); pass
``key=`` to choose another identity.

The converters :func:`to_messages` / :func:`from_messages` map AG2's OpenAI-style message
dicts to :class:`~ctxmgr.messages.Message` and back without loss: a message carrying
``tool_responses`` (AG2 groups a round's tool results in one message) becomes one tool
message per result (paired by ``tool_call_id``) and is regrouped on the way back; tool calls,
legacy ``function_call`` / role ``function``, names, multimodal content lists and every
other key are kept (the original dict is stored under ``metadata["ag2"]``).

Requires ``pip install "ctxmgr-llm[ag2]"`` (``ag2<1``: ag2 1.x is a rewrite without ``autogen``).
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
    from autogen import ConversableAgent, OpenAIWrapper
    from autogen.agentchat.contrib.capabilities.transform_messages import TransformMessages
    from autogen.tools import Tool
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise missing_extra("ag2", "AG2 (ag2>=0.9,<1, module autogen)") from exc

from ctxmgr.messages import Message, messages_from_openai, to_openai

if TYPE_CHECKING:
    from ctxmgr import ContextManager
    from ctxmgr.report import FitReport

__all__ = [
    "METADATA_KEY",
    "AG2Summarizer",
    "ContextTransform",
    "first_message_key",
    "from_messages",
    "context_tools",
    "note_tools",
    "to_messages",
]

METADATA_KEY = "ag2"
"""Key of :attr:`Message.metadata` holding what an AG2 message dict needs to be rebuilt."""

SYSTEM_ID = "ag2-system-message"
"""Id of the neutral system message built from the agent's ``system_message``."""


# ---------------------------------------------------------------------------------------
# Converters
# ---------------------------------------------------------------------------------------
def to_messages(messages: Sequence[Mapping[str, Any]]) -> list[Message]:
    """Convert AG2 message dicts (oldest first) to neutral messages.

    A dict with ``tool_responses`` expands to one tool message per response, followed by
    the dict itself unless its role is ``tool`` (AG2 sends a ``tool`` parent's content, the
    joined responses, nowhere). Each neutral message stores the original dict (without
    ``tool_responses``) and its position under ``metadata["ag2"]``. The inputs are not
    mutated. Ids are derived from content; repeats get a ``"#<n>"`` suffix.

    Raises:
        InvalidHistoryError: a dict has no valid role or a malformed tool call.
    """
    flat: list[tuple[Mapping[str, Any], dict[str, Any]]] = []
    for index, item in enumerate(messages):
        responses = item.get("tool_responses")
        if not responses:
            flat.append((item, {"index": index, "raw": _plain(item)}))
            continue
        parent = {k: v for k, v in item.items() if k != "tool_responses"}
        for j, response in enumerate(responses):
            meta: dict[str, Any] = {
                "index": index,
                "response": j,
                "size": len(responses),
                "raw": _plain(response),
            }
            if j == 0:
                meta["parent"] = _plain(parent)
            flat.append((response, meta))
        if parent.get("role") != "tool":
            flat.append((parent, {"index": index, "parent_slot": True, "raw": _plain(parent)}))
    neutral = messages_from_openai(item for item, _ in flat)
    names = {c.id: c.name for m in neutral for c in m.tool_calls}
    out = [
        msg.evolve(
            metadata={METADATA_KEY: meta},
            id=msg.id,
            # AG2's tool responses carry no name: the called tool's, for summaries and search
            name=msg.name or (names.get(msg.tool_call_id or "") if msg.role == "tool" else None),
        )
        for msg, (_, meta) in zip(neutral, flat, strict=True)
    ]
    return unique_ids(out)


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(dict(item))


def _content_out(message: Message) -> Any:
    if isinstance(message.content, str):
        return message.content
    return [p.to_openai() for p in message.content]


def _dict_of(message: Message) -> dict[str, Any]:
    """One AG2 dict for ``message``: its stored original, with ctxmgr's changes applied."""
    meta = message.metadata.get(METADATA_KEY)
    if not isinstance(meta, Mapping) or not isinstance(meta.get("raw"), Mapping):
        data = to_openai(message)
        data.pop("pinned", None)
        return data
    raw = copy.deepcopy(dict(meta["raw"]))
    original = messages_from_openai([raw])[0]
    if original.content != message.content:
        raw["content"] = _content_out(message)
    if original.tool_calls != message.tool_calls and "function_call" not in raw:
        raw["tool_calls"] = to_openai(message).get("tool_calls", [])
    return raw


def from_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Convert neutral messages (oldest first) to AG2 message dicts.

    Messages made by :func:`to_messages` come back as copies of the original dicts (with any
    content ctxmgr changed); consecutive tool messages that came from one ``tool_responses``
    group are regrouped into one dict (its parent's ``content`` re-joined when a response
    changed or was dropped). Other messages (e.g. an injected summary) become plain OpenAI
    dicts.
    """
    return _from_messages(messages, {}, {})


def _from_messages(
    messages: Sequence[Message],
    originals: Mapping[Message, dict[str, Any]],
    groups: Mapping[int, tuple[list[Message], dict[str, Any]]],
) -> list[dict[str, Any]]:
    """:func:`from_messages`, returning ``originals[m]`` / whole ``groups[index]`` unchanged."""
    out: list[dict[str, Any]] = []
    i = 0
    while i < len(messages):
        message = messages[i]
        meta = message.metadata.get(METADATA_KEY)
        if not isinstance(meta, Mapping) or "response" not in meta:
            original = originals.get(message)
            out.append(original if original is not None else _dict_of(message))
            i += 1
            continue
        index = meta["index"]
        group: list[Message] = []
        while i < len(messages):
            m = messages[i].metadata.get(METADATA_KEY)
            if not isinstance(m, Mapping) or m.get("index") != index or "response" not in m:
                break
            group.append(messages[i])
            i += 1
        parent_slot = None
        if i < len(messages):
            m = messages[i].metadata.get(METADATA_KEY)
            if isinstance(m, Mapping) and m.get("index") == index and m.get("parent_slot"):
                parent_slot = messages[i]
                i += 1
        whole = groups.get(index)
        members = [*group, *([parent_slot] if parent_slot is not None else [])]
        if whole is not None and whole[0] == members:
            out.append(whole[1])
        else:
            out.append(_regroup(group, parent_slot))
    return out


def _regroup(group: list[Message], parent_slot: Message | None) -> dict[str, Any]:
    first = group[0].metadata[METADATA_KEY]
    responses = [_dict_of(m) for m in group]
    if parent_slot is not None:
        parent = _dict_of(parent_slot)
    else:
        stored = first.get("parent") if first.get("response") == 0 else None
        parent = copy.deepcopy(dict(stored)) if isinstance(stored, Mapping) else {"role": "tool"}
    raws = [m.metadata[METADATA_KEY].get("raw") for m in group]
    complete = raws == responses and first.get("size") == len(group)
    if parent.get("role") == "tool" and not complete:
        parent["content"] = "\n\n".join(str(r.get("content", "")) for r in responses)
    return {**parent, "tool_responses": responses}


def _origins(
    messages: Sequence[dict[str, Any]], neutral: Sequence[Message]
) -> tuple[dict[Message, dict[str, Any]], dict[int, tuple[list[Message], dict[str, Any]]]]:
    """Map neutral messages (and whole tool-response groups) back to the dicts given."""
    originals: dict[Message, dict[str, Any]] = {}
    groups: dict[int, tuple[list[Message], dict[str, Any]]] = {}
    for message in neutral:
        meta = message.metadata[METADATA_KEY]
        index = meta["index"]
        if "response" in meta or meta.get("parent_slot"):
            groups.setdefault(index, ([], messages[index]))[0].append(message)
        else:
            originals[message] = messages[index]
    return originals, groups


# ---------------------------------------------------------------------------------------
# MessageTransform
# ---------------------------------------------------------------------------------------
KeyFunction = Callable[[Sequence[Mapping[str, Any]]], str]
"""Maps the messages a transform receives to a conversation key."""


def first_message_key(messages: Sequence[Mapping[str, Any]]) -> str:
    """The default conversation key: a BLAKE2b digest of the first message's role and content.

    Returns ``"empty"`` for an empty list.
    """
    if not messages:
        return "empty"
    first = messages[0]
    text = json.dumps([first.get("role"), first.get("content")], default=str, sort_keys=True)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


class ContextTransform:
    """AG2 ``MessageTransform`` that fits an agent's messages into the token budget.

    Args:
        manager: the template manager; each conversation gets ``manager.fork()``.
        system_message: the system prompt to count and pin when no agent is attached
            (``TransformMessages`` hides it from transforms); ignored after
            :meth:`add_to_agent`, which reads ``agent.system_message`` at each call.
        key: maps the messages to a conversation key (default :func:`first_message_key`).
        max_threads: at most this many conversations keep state; ``None`` for no bound.
        on_fit: optional ``on_fit(key, report)`` called after each fit.

    Attributes:
        last_report: the latest FitReport of any conversation, or ``None``.
    """

    def __init__(
        self,
        manager: ContextManager,
        *,
        system_message: str | None = None,
        key: KeyFunction = first_message_key,
        max_threads: int | None = 10_000,
        on_fit: Callable[[str, FitReport], None] | None = None,
    ) -> None:
        self.pool = ConversationPool(manager, max_threads)
        self.system_message = system_message
        self.key = key
        self.on_fit = on_fit
        self.agent: ConversableAgent | None = None
        self.last_report: FitReport | None = None

    @classmethod
    def from_config(
        cls,
        config: ConfigLike | ContextManager = "agent",
        *,
        summarizer: Any = None,
        counter: Any = None,
        system_message: str | None = None,
        key: KeyFunction = first_message_key,
        max_threads: int | None = 10_000,
        on_fit: Callable[[str, FitReport], None] | None = None,
        **overrides: Any,
    ) -> ContextTransform:
        """Build the transform from a preset name, a TOML/YAML path or a config dict.

        Args:
            config: as for ``ContextManager.from_config`` (or a ready ``ContextManager``).
            summarizer: e.g. ``AG2Summarizer(llm_config)``.
            counter: token counter overriding the config's.
            system_message: see the class docstring.
            key: see the class docstring.
            max_threads: see the class docstring.
            on_fit: see the class docstring.
            **overrides: config keys to override, e.g. ``max_context_tokens=8000``.
        """
        manager = load_manager(config, summarizer, counter, overrides)
        return cls(
            manager, system_message=system_message, key=key, max_threads=max_threads, on_fit=on_fit
        )

    @property
    def manager(self) -> ContextManager:
        """The template manager; each conversation gets a ``fork()`` of it."""
        return self.pool.base

    def manager_for(self, messages: Sequence[Mapping[str, Any]]) -> ContextManager:
        """Return the manager holding the ctxmgr state of the conversation of ``messages``."""
        return self.pool.get(self.key(messages)).manager

    def add_to_agent(self, agent: ConversableAgent) -> TransformMessages:
        """Register this transform on ``agent`` (``TransformMessages``, not verbose).

        Returns:
            The registered ``TransformMessages`` capability.
        """
        self.agent = agent
        capability = TransformMessages(transforms=[self], verbose=False)
        capability.add_to_agent(agent)
        return capability

    def _tools(self) -> list[dict[str, Any]] | None:
        """The agent's tool definitions (``llm_config["tools"]``), counted in the budget."""
        config = getattr(self.agent, "llm_config", None)
        if not config:
            return None
        tools = config.get("tools") if hasattr(config, "get") else getattr(config, "tools", None)
        return [dict(t) for t in tools] if tools else None

    def _system(self) -> str | None:
        if self.agent is not None:
            return self.agent.system_message or None
        return self.system_message

    def apply_transform(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Return the fitted messages (AG2 dicts, oldest first; the input is not mutated).

        Kept messages are the dicts given; changed or regrouped ones are new dicts.
        """
        key = self.key(messages)
        conversation = self.pool.get(key)
        neutral = to_messages(messages)
        system = self._system()
        head = [Message.system(system, id=SYSTEM_ID)] if system else []
        with conversation.lock:
            result = conversation.manager.fit([*head, *neutral], tools=self._tools())
        conversation.report = self.last_report = result.report
        if self.on_fit is not None:
            self.on_fit(key, result.report)
        fitted = [m for m in result.messages if m.id != SYSTEM_ID]
        return _from_messages(fitted, *_origins(messages, neutral))

    def get_logs(
        self,
        pre_transform_messages: list[dict[str, Any]],
        post_transform_messages: list[dict[str, Any]],
    ) -> tuple[str, bool]:
        """Return a one-line account of the last transform and whether it changed anything."""
        changed = pre_transform_messages != post_transform_messages
        if not changed:
            return "ctxmgr: no change", False
        detail = f"; {self.last_report}" if self.last_report is not None else ""
        return (
            f"ctxmgr: {len(pre_transform_messages)} -> {len(post_transform_messages)} "
            f"messages{detail}",
            True,
        )


# ---------------------------------------------------------------------------------------
# Summarizer
# ---------------------------------------------------------------------------------------
class AG2Summarizer:
    """A ctxmgr ``Summarizer`` backed by an AG2 ``OpenAIWrapper`` (any configured client).

    Sends one user message holding ``prompt`` (default ``ctxmgr.summarizers.SUMMARY_PROMPT``)
    filled with the previous summary, the evicted messages and the token budget, and
    returns the reply's text.

    Args:
        client: an ``OpenAIWrapper``, or an ``llm_config`` (dict or ``LLMConfig``) to build one.
        prompt: a template with ``{previous}``, ``{transcript}`` and ``{max_tokens}``.
    """

    def __init__(
        self, client: OpenAIWrapper | Mapping[str, Any] | Any, *, prompt: str | None = None
    ):
        if not isinstance(client, OpenAIWrapper):
            config = dict(client) if isinstance(client, Mapping) else client.model_dump()
            client = OpenAIWrapper(**config)
        self.client = client
        self.prompt = prompt

    def summarize(
        self, previous: str | None, messages: Sequence[Message], *, max_tokens: int
    ) -> str:
        """Return the running summary updated with ``messages`` (one ``client.create`` call)."""
        text = summary_prompt(self.prompt, previous, messages, max_tokens)
        response = self.client.create(messages=[{"role": "user", "content": text}], cache=None)
        reply = self.client.extract_text_or_completion_object(response)[0]
        if isinstance(reply, Mapping):
            reply = reply.get("content") or ""
        elif not isinstance(reply, str):
            reply = getattr(reply, "content", "") or ""
        return str(reply).strip()


# ---------------------------------------------------------------------------------------
# Scratchpad tools
# ---------------------------------------------------------------------------------------
def note_tools(manager: ContextManager | ContextTransform) -> list[Tool]:
    """Return the scratchpad tools ``write_note``, ``update_note``, ``delete_note``, ``read_notes``.

    AG2 ``Tool`` s: register each with ``tool.register_for_llm(assistant)`` and
    ``tool.register_for_execution(executor)`` (or ``register_tool``).

    Args:
        manager: a ``ContextManager`` whose ``scratchpad`` the tools act on, or a
            :class:`ContextTransform`, meaning the scratchpad of the conversation it fitted
            last (tools run between two fits of the same conversation).

    Raises:
        ConfigError: the manager has no ``scratchpad`` strategy configured.
    """
    if isinstance(manager, ContextTransform):
        transform = manager

        def current() -> Any:
            keys = transform.pool.keys()
            return transform.pool.get(keys[-1]).manager if keys else transform.manager

        functions = note_functions(current, transform.manager)
    else:
        functions = note_functions(lambda: manager)
    return [Tool(name=fn.__name__, func_or_tool=fn) for fn in functions]


def context_tools(manager: ContextManager | ContextTransform) -> list[Tool]:
    """Return the context tools ``search_history``, ``get_message`` and ``compact_context``.

    AG2 ``Tool`` s (register them as the note tools). ``search_history`` ranks archived
    (evicted, cleared, offloaded) messages by BM25, ``get_message`` reads one by id in
    pages, ``compact_context`` requests a compaction on the next fit (:mod:`ctxmgr.tools`).

    Args:
        manager: a ``ContextManager``, or a :class:`ContextTransform`, meaning the
            manager of the conversation it fitted last (tools run between two fits of
            the same conversation).
    """
    from ctxmgr.tools import compaction_function, recall_functions

    def current() -> ContextManager:
        if isinstance(manager, ContextTransform):
            keys = manager.pool.keys()
            return manager.pool.get(keys[-1]).manager if keys else manager.manager
        return manager

    functions = [*recall_functions(current), compaction_function(current)]
    return [Tool(name=fn.__name__, func_or_tool=fn) for fn in functions]
