"""Provider profiles: the wire rules of each model API, enforced as the last step of a fit.

A :class:`ProviderProfile` says where system content may go, whether consecutive turns
of one role must be merged, whether the first turn must come from the user, and which
role injected content (running summary, scratchpad notes, system-prompt replay) takes.
The manager runs :meth:`ProviderProfile.normalize` on every fitted context, so whatever
the strategies chose, what is sent obeys the provider's rules.

The rules, with the documentation they come from:

* **openai** — Chat Completions (https://platform.openai.com/docs/api-reference/chat/create)
  and Responses (https://platform.openai.com/docs/api-reference/responses/create): every
  ``tool`` message (``function_call_output`` item) answers a ``tool_calls`` id
  (``call_id``) of the preceding assistant message, and every call is answered. System
  (developer) messages may appear anywhere. Segmentation already guarantees the pairs,
  so the profile's ``normalize`` returns its input unchanged.
* **anthropic** — Messages API (https://docs.anthropic.com/en/api/messages): system
  content is the top-level ``system`` parameter only (LangChain raises "Received multiple
  non-consecutive system messages" otherwise); the first message comes from the user;
  user and assistant turns alternate (consecutive turns of one role are merged); each
  ``tool_result`` sits in the user turn right after the assistant turn holding its
  ``tool_use`` (https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use),
  tool results first in that turn. Thinking blocks must stay with their tool turn: a
  merge keeps the metadata of the message that carries the tool calls.
* **gemini** — ``generateContent`` (https://ai.google.dev/api/generate-content): the
  system instruction is a separate field; a function-call turn must follow a user turn
  or a function-response turn, and the function responses come right after their call
  turn (https://ai.google.dev/gemini-api/docs/function-calling); ``user`` and ``model``
  turns alternate.

In ctxmgr's neutral format a ``tool`` message belongs to the *user* wire turn for
Anthropic and Gemini: ``[assistant(calls), tool, tool, user]`` is one assistant turn then
one user turn holding the tool results followed by the text. Adapters whose client does
not merge a tool result with the following user text must do that in their converter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ctxmgr.errors import ConfigError
from ctxmgr.messages import ContentPart, Message

__all__ = [
    "PLACEHOLDER_TEXT",
    "PROVIDERS",
    "ProviderProfile",
    "Normalizer",
    "get_profile",
    "merge_messages",
    "provider_for_model",
]

#: Provider names accepted by ``provider`` in the config (besides ``"auto"``).
PROVIDERS: tuple[str, ...] = ("openai", "anthropic", "gemini")

#: Text of the user turn inserted when a profile needs the first turn from the user and
#: the fitted context starts with an assistant turn (e.g. a greeting-first chat).
PLACEHOLDER_TEXT = "(conversation continues)"

_MERGE_SEPARATOR = "\n\n"
_THINKING = frozenset({"thinking", "redacted_thinking"})


def provider_for_model(model: str | None) -> str:
    """Return the provider a model name belongs to (the ``"auto"`` rule).

    ``claude*`` (also ``anthropic/claude...``, Bedrock ``us.anthropic.claude...``) is
    ``"anthropic"``, ``gemini*`` (``models/gemini...``) is ``"gemini"``, anything else
    (or no model) ``"openai"``.
    """
    name = (model or "").lower()
    if "claude" in name:
        return "anthropic"
    if "gemini" in name:
        return "gemini"
    return "openai"


def _parts(message: Message) -> tuple[ContentPart, ...]:
    if isinstance(message.content, str):
        return (ContentPart("text", message.content),) if message.content else ()
    return message.content


def merge_messages(first: Message, second: Message) -> Message:
    """Merge two consecutive messages of one role into one message of that role.

    Text contents are joined by a blank line; if either is multimodal the parts are
    concatenated, the later message's thinking blocks first (Anthropic requires an
    assistant turn with ``tool_use`` to start with its thinking blocks when extended
    thinking is on). The tool calls of both are kept in order (in a fitted context only the
    second can carry calls, since calls are followed by their results). ``pinned`` is
    true if either is pinned. Metadata is taken from the message carrying tool calls
    (else the second), plus ``ctxmgr_merged``: the ids of the merged originals (a merged
    message is merged again as a whole). Neither input is mutated.

    Args:
        first: the earlier message.
        second: the later message, same role.

    Returns:
        A new message (a new id derived from its content).
    """
    if isinstance(first.content, str) and isinstance(second.content, str):
        if first.content and second.content:
            content: str | tuple[ContentPart, ...] = (
                first.content + _MERGE_SEPARATOR + second.content
            )
        else:
            content = first.content or second.content
    else:
        head, tail = _parts(first), _parts(second)
        # Anthropic: an assistant turn with tool_use starts with its thinking blocks
        thinking = tuple(p for p in tail if p.type in _THINKING)
        if thinking:
            tail = tuple(p for p in tail if p.type not in _THINKING)
        content = thinking + head + tail
    ids = list(first.metadata.get("ctxmgr_merged", (first.id,)))
    ids.extend(second.metadata.get("ctxmgr_merged", (second.id,)))
    base = first if first.tool_calls and not second.tool_calls else second
    meta = dict(base.metadata)
    meta["ctxmgr_merged"] = tuple(ids)
    return Message(
        first.role,
        content,
        tool_calls=first.tool_calls + second.tool_calls,
        name=second.name or first.name,
        metadata=meta,
        pinned=first.pinned or second.pinned,
    )


@dataclass(frozen=True)
class ProviderProfile:
    """The wire rules of one provider API (see the module docstring for the sources).

    Attributes:
        name: ``"openai"``, ``"anthropic"`` or ``"gemini"``.
        docs_url: the API reference the rules come from.
        injection_role: role of the content strategies inject with ``role = "auto"``
            (summary, notes, system-prompt replay): ``"system"`` where system messages may
            appear anywhere, else ``"user"``.
        system_only_at_top: system messages are allowed only as the leading run; later
            ones are re-roled to ``user`` (and merged with their neighbours).
        requires_alternation: consecutive ``user`` (or ``assistant``) messages are
            merged into one.
        first_message_user: the first non-system message must be a user message; a short
            placeholder user turn (:data:`PLACEHOLDER_TEXT`) is inserted otherwise.
    """

    name: str
    docs_url: str
    injection_role: Literal["system", "user"] = "system"
    system_only_at_top: bool = False
    requires_alternation: bool = False
    first_message_user: bool = False
    extra_docs: tuple[str, ...] = field(default=())

    @property
    def is_identity(self) -> bool:
        """True when :meth:`normalize` never changes a segmented context (OpenAI)."""
        return not (self.system_only_at_top or self.requires_alternation or self.first_message_user)

    def normalizer(self, count: Callable[[Message], int] | None = None) -> Normalizer:
        """Return an incremental :class:`Normalizer` for this profile."""
        return Normalizer(self, count)

    def normalize(self, messages: Sequence[Message]) -> list[Message]:
        """Return ``messages`` rewritten to obey this provider's wire rules.

        Applied by the manager as the last step of every fit. Leading system messages are
        kept as they are; later system messages become user messages (when
        ``system_only_at_top``, keeping only the ``ctxmgr`` marker of their metadata plus
        ``ctxmgr_role = "system"``, so adapters convert them by role); consecutive
        same-role user/assistant messages are merged (:func:`merge_messages`, when
        ``requires_alternation``); a placeholder user turn
        is inserted before a leading assistant turn (when ``first_message_user``). Tool
        pairs are not touched (segmentation keeps them valid). Kept messages are the same
        objects; ``messages`` (oldest first) is not mutated.
        """
        if self.is_identity:
            return list(messages)
        norm = Normalizer(self)
        norm.feed(messages)
        return norm.out

    def violations(self, messages: Sequence[Message]) -> list[str]:
        """Return every way ``messages`` break this provider's rules (empty: valid).

        Checks tool pairs (every result answers a call of the preceding assistant message,
        every call is answered) for all providers, and for profiles that require them: a
        system message after the leading run, a first non-system message that is not from
        the user, and two consecutive user (or assistant) messages.
        """
        from ctxmgr.testing import check_tool_pairs

        problems = check_tool_pairs(messages)
        leading = True
        previous: str | None = None
        for i, m in enumerate(messages):
            if m.role == "system" and leading:
                continue
            if leading:
                leading = False
                if self.first_message_user and m.role != "user":
                    problems.append(f"message {i}: first non-system message is {m.role!r}")
            if m.role == "system" and self.system_only_at_top:
                problems.append(f"message {i}: system message after the first non-system one")
            if self.requires_alternation and m.role in ("user", "assistant") and m.role == previous:
                problems.append(f"message {i}: two {m.role} messages in a row")
            previous = m.role
        return problems


class Normalizer:
    """Streaming form of :meth:`ProviderProfile.normalize`, with a running token count.

    Feed messages oldest first; :attr:`out` holds the normalized context so far and
    :attr:`tokens` its tokens (when a ``count`` function is given). Only the last output
    message can change when more messages arrive, so the manager normalizes the
    append-only path in O(new messages) and rolls back what it fed for an uncommitted
    tool step with :meth:`mark` / :meth:`rollback`.

    Args:
        profile: the provider profile.
        count: tokens of one message (the manager's cached ``count_message``).
    """

    def __init__(self, profile: ProviderProfile, count: Callable[[Message], int] | None = None):
        self.profile = profile
        self.count = count
        self.out: list[Message] = []
        self.tokens = 0
        self.fed = 0
        self.last_fed: Message | None = None
        self._started = False

    def _emit(self, message: Message) -> None:
        self.out.append(message)
        if self.count is not None:
            self.tokens += self.count(message)

    def feed(self, messages: Sequence[Message]) -> None:
        """Normalize and append ``messages`` (oldest first; not mutated)."""
        p = self.profile
        for m in messages:
            self.fed += 1
            self.last_fed = m
            role = m.role
            if role == "system":
                if not self._started:
                    self._emit(m)
                    continue
                if p.system_only_at_top:
                    # adapters' own metadata would rebuild a system message: keep only
                    # ctxmgr's marker, so the message converts back by its new role
                    meta = {k: v for k, v in m.metadata.items() if k == "ctxmgr"}
                    meta["ctxmgr_role"] = "system"
                    m = m.evolve(role="user", metadata=meta, id=m.id)
                    role = "user"
            if not self._started:
                self._started = True
                if p.first_message_user and role != "user":
                    self._emit(
                        Message.user(
                            PLACEHOLDER_TEXT,
                            id="ctxmgr-placeholder",
                            metadata={"ctxmgr": "placeholder"},
                        )
                    )
            out = self.out
            if (
                p.requires_alternation
                and out
                and role in ("user", "assistant")
                and out[-1].role == role
            ):
                last = out[-1]
                merged = merge_messages(last, m)
                out[-1] = merged
                if self.count is not None:
                    self.tokens += self.count(merged) - self.count(last)
                continue
            self._emit(m)

    def mark(self) -> tuple[int, Message | None, int, int, Message | None, bool]:
        """Return a checkpoint for :meth:`rollback`."""
        last = self.out[-1] if self.out else None
        return (len(self.out), last, self.tokens, self.fed, self.last_fed, self._started)

    def rollback(self, mark: tuple[int, Message | None, int, int, Message | None, bool]) -> None:
        """Undo everything fed since :meth:`mark` returned ``mark``."""
        n, last, self.tokens, self.fed, self.last_fed, self._started = mark
        del self.out[n:]
        if n and last is not None:
            self.out[n - 1] = last


_PROFILES: dict[str, ProviderProfile] = {
    "openai": ProviderProfile(
        name="openai",
        docs_url="https://platform.openai.com/docs/api-reference/chat/create",
        injection_role="system",
        extra_docs=("https://platform.openai.com/docs/api-reference/responses/create",),
    ),
    "anthropic": ProviderProfile(
        name="anthropic",
        docs_url="https://docs.anthropic.com/en/api/messages",
        injection_role="user",
        system_only_at_top=True,
        requires_alternation=True,
        first_message_user=True,
        extra_docs=(
            "https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use",
        ),
    ),
    "gemini": ProviderProfile(
        name="gemini",
        docs_url="https://ai.google.dev/api/generate-content",
        injection_role="user",
        system_only_at_top=True,
        requires_alternation=True,
        first_message_user=True,
        extra_docs=("https://ai.google.dev/gemini-api/docs/function-calling",),
    ),
}


def get_profile(provider: str = "auto", model: str | None = None) -> ProviderProfile:
    """Return the profile of ``provider``; ``"auto"`` picks it from ``model``.

    See :func:`provider_for_model` for the ``"auto"`` rule.

    Args:
        provider: ``"auto"``, ``"openai"``, ``"anthropic"`` or ``"gemini"`` (case-insensitive).
        model: model name used by ``"auto"``.

    Raises:
        ConfigError: unknown provider name.
    """
    key = (provider or "auto").strip().lower()
    if key == "auto":
        key = provider_for_model(model)
    profile = _PROFILES.get(key)
    if profile is None:
        raise ConfigError(
            f"unknown provider {provider!r}", key="provider", allowed=("auto", *PROVIDERS)
        )
    return profile
