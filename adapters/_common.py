"""Framework-free helpers shared by the LangChain, LlamaIndex and AutoGen adapters.

Nothing here imports a framework: ``import ctxmgr.adapters`` stays framework-free, and each
adapter can name its missing extra (:func:`missing_extra`) before importing its framework.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ctxmgr.errors import ConfigError
from ctxmgr.messages import ContentPart, Message

if TYPE_CHECKING:
    from ctxmgr.adapters._provider import ManagerSpec, ModelFacts

    from ctxmgr import ContextManager
    from ctxmgr.report import FitReport

__all__ = [
    "ConfigLike",
    "Conversation",
    "ConversationPool",
    "adapter_metadata",
    "content_parts",
    "fork_for",
    "load_manager",
    "missing_extra",
    "note_functions",
    "restore_originals",
    "scratchpad_of",
    "summary_prompt",
    "unique_ids",
]

ConfigLike = str | Path | Mapping[str, Any]
"""What ``from_config`` accepts: a preset name, a TOML/YAML path or a config mapping."""

T = TypeVar("T")


def missing_extra(extra: str, needs: str) -> ImportError:
    """Return the ``ImportError`` raised when an adapter's framework is not installed.

    Args:
        extra: the adapter module's name, which is also its pip extra (``"langchain"``).
        needs: what is missing, e.g. ``"LlamaIndex (llama-index-core>=0.12)"``.
    """
    return ImportError(f'ctxmgr.adapters.{extra} needs {needs}: pip install "ctxmgr-llm[{extra}]"')


# ---------------------------------------------------------------------------------------
# Managers
# ---------------------------------------------------------------------------------------
def load_manager(
    config: ConfigLike | ContextManager,
    summarizer: Any = None,
    counter: Any = None,
    overrides: Mapping[str, Any] | None = None,
) -> ContextManager:
    """Return ``config`` when it is a ready manager, else build one from it.

    Args:
        config: a ``ContextManager``, or what ``ContextManager.from_config`` accepts.
        summarizer: summarizer overriding the config's.
        counter: token counter overriding the config's.
        overrides: config keys to override.

    Raises:
        ConfigError: ``summarizer``, ``counter`` or ``overrides`` given with a ready manager.
    """
    from ctxmgr import ContextManager

    if isinstance(config, ContextManager):
        if summarizer is not None or counter is not None or overrides:
            raise ConfigError(
                "summarizer/counter/overrides apply to a config, not to a ready ContextManager"
            )
        return config
    kwargs: dict[str, Any] = dict(overrides or {})
    if summarizer is not None:
        kwargs["summarizer"] = summarizer
    if counter is not None:
        kwargs["counter"] = counter
    return ContextManager.from_config(config, **kwargs)


def fork_for(base: ContextManager, key: str) -> ContextManager:
    """Return ``base.fork()`` for conversation ``key``.

    A manager bound to a store (``from_config(..., store=...)``) forks onto the stored
    conversation ``key``, so any worker serving that thread sees its summary, notes,
    archive and token counts; a plain manager forks a fresh in-memory state.
    """
    if getattr(base, "store", None) is not None:
        return base.fork(conversation_id=key)  # type: ignore[call-arg]
    return base.fork()


class Conversation:
    """What one conversation holds: its manager, conversion cache and latest report."""

    __slots__ = ("cache", "lock", "manager", "report")

    def __init__(self, manager: ContextManager) -> None:
        self.manager = manager
        self.cache: dict[Any, Any] = {}
        self.report: FitReport | None = None
        self.lock = threading.Lock()


class ConversationPool:
    """One conversation (a forked manager) per key; least recently used dropped past a bound.

    Args:
        base: the template manager; each new key gets ``base.fork()``. A
            :class:`~ctxmgr.adapters._provider.ManagerSpec` builds it once :meth:`resolve`
            learns the framework's model (window, tokenizer, provider).
        max_threads: at most this many conversations are kept; ``None`` for no bound.

    Raises:
        ValueError: ``max_threads`` is below 1.
    """

    def __init__(self, base: ContextManager | ManagerSpec, max_threads: int | None = None) -> None:
        if max_threads is not None and max_threads < 1:
            raise ValueError(f"max_threads must be >= 1 or None, got {max_threads}")
        from ctxmgr.adapters._provider import ManagerSpec

        self._spec = base if isinstance(base, ManagerSpec) else None
        self._base: ContextManager | None = None if self._spec is not None else base  # type: ignore[assignment]
        self._facts: ModelFacts | None = None
        self._built: dict[ModelFacts, ContextManager] = {}  # one template per model seen
        self.max_threads = max_threads
        self._items: OrderedDict[str, Conversation] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def base(self) -> ContextManager:
        """The template manager (built from the config alone if no model was seen yet).

        Raises:
            ConfigError: built from a config that cannot size the window before the model
                is known; the message says to pass ``max_context_tokens``.
        """
        if self._base is None:
            assert self._spec is not None
            self._base = self._spec.build(self._facts)
        return self._base

    @property
    def spec(self) -> ManagerSpec | None:
        """The spec the template is built from, or ``None`` for a ready manager."""
        return self._spec

    def resolve(self, facts: ModelFacts) -> None:
        """Build the template manager for the model ``facts`` describe (once per model).

        Conversations that have not fitted yet follow the new template; ones with state keep
        their manager. A no-op for a pool built from a ready manager.

        Raises:
            ConfigError: the window is unknown (see ``ManagerSpec.build``).
        """
        if self._spec is None or self._facts == facts:
            return
        built = self._built.get(facts)
        if built is None:
            built = self._built[facts] = self._spec.build(facts)
        with self._lock:
            self._facts = facts
            self._base = built
            for item in self._items.values():
                if item.manager.state.turn == 0 and item.report is None:
                    item.manager = built.fork()

    def get(self, key: str) -> Conversation:
        """Return conversation ``key``, created (with a fresh fork) on first use."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                item = self._items[key] = Conversation(fork_for(self.base, key))
                if self.max_threads is not None and len(self._items) > self.max_threads:
                    self._items.popitem(last=False)
            else:
                self._items.move_to_end(key)
            return item

    def peek(self, key: str) -> Conversation | None:
        """Return conversation ``key`` if it exists, without creating or touching it."""
        with self._lock:
            return self._items.get(key)

    def reset(self, key: str | None = None) -> None:
        """Forget conversation ``key``, or every conversation when ``key`` is ``None``."""
        with self._lock:
            if key is None:
                self._items.clear()
            else:
                self._items.pop(key, None)

    def reports(self) -> dict[str, FitReport]:
        """The latest FitReport of each conversation that has one."""
        with self._lock:
            return {k: c.report for k, c in self._items.items() if c.report is not None}

    def template(self) -> ContextManager:
        """The template manager, or a stand-in with the same strategies while unsized.

        For checks that need only the strategy list (e.g. "has a scratchpad") before the
        framework's model was seen.
        """
        try:
            return self.base
        except ConfigError:
            if self._spec is None:
                raise
            from ctxmgr.adapters._provider import ModelFacts

            return self._spec.build(ModelFacts(window=128_000))

    def keys(self) -> list[str]:
        """Keys of the conversations that currently have state."""
        with self._lock:
            return list(self._items)


# ---------------------------------------------------------------------------------------
# Converters
# ---------------------------------------------------------------------------------------
def unique_ids(messages: Iterable[Message]) -> list[Message]:
    """Return ``messages`` with repeated ids made unique: the n-th repeat gets ``"#<n>"``."""
    seen: dict[str, int] = {}
    out: list[Message] = []
    for msg in messages:
        repeat = seen.get(msg.id, 0)
        seen[msg.id] = repeat + 1
        out.append(msg.evolve(id=f"{msg.id}#{repeat}") if repeat else msg)
    return out


def adapter_metadata(message: Message, key: str) -> Mapping[str, Any]:
    """Return what an adapter stored under ``message.metadata[key]`` (empty when none)."""
    extras = message.metadata.get(key)
    return extras if isinstance(extras, Mapping) else {}


def content_parts(content: str | tuple[ContentPart, ...]) -> list[ContentPart]:
    """Return message content as a list of parts (a string is one text part)."""
    return [ContentPart("text", content)] if isinstance(content, str) else list(content)


def restore_originals(
    fitted: Iterable[Message],
    neutral: Sequence[Message],
    originals: Sequence[T],
    convert: Callable[[Message], T],
) -> list[T]:
    """Map fitted messages back to framework objects.

    Args:
        fitted: the fit result's messages.
        neutral: the messages that were fitted, converted from ``originals``.
        originals: the framework objects, one per item of ``neutral``.
        convert: builds a framework object for a message the fit changed or injected.

    Returns:
        The original object for every message the fit kept unchanged, else ``convert(m)``.
    """
    lookup = dict(zip(neutral, originals, strict=True))
    return [lookup[m] if m in lookup else convert(m) for m in fitted]


# ---------------------------------------------------------------------------------------
# Summarizers
# ---------------------------------------------------------------------------------------
def summary_prompt(
    template: str | None, previous: str | None, messages: Sequence[Message], max_tokens: int
) -> str:
    """Return the text a summarizer sends its model.

    Args:
        template: a prompt with ``{previous}``, ``{transcript}`` and ``{max_tokens}``
            (default ``ctxmgr.summarizers.SUMMARY_PROMPT``).
        previous: the running summary so far, if any.
        messages: the evicted messages to fold in (rendered with ``render_transcript``).
        max_tokens: the summary's token budget.
    """
    from ctxmgr.summarizers import SUMMARY_PROMPT, render_transcript

    return (template or SUMMARY_PROMPT).format(
        previous=previous or "(none)",
        transcript=render_transcript(messages),
        max_tokens=max_tokens,
    )


# ---------------------------------------------------------------------------------------
# Scratchpad tools
# ---------------------------------------------------------------------------------------
def scratchpad_of(manager: Any) -> Any:
    """Return ``manager.scratchpad``.

    Raises:
        ConfigError: the manager has no ``scratchpad`` strategy configured.
    """
    pad = manager.scratchpad
    if pad is None:
        raise ConfigError(
            "this manager has no scratchpad; add the 'scratchpad' strategy to the config",
            key="strategies",
        )
    return pad


def note_functions(current: Callable[[], Any], template: Any = None) -> list[Callable[..., str]]:
    """Return ``[write_note, update_note, delete_note, read_notes]``, the note tools' bodies.

    Each call acts on the scratchpad of ``current()``, the manager at call time. Their
    names, signatures and Google docstrings are what frameworks build tool schemas from.

    Args:
        current: returns the manager whose scratchpad a call acts on.
        template: the manager checked for a scratchpad up front; ``None`` to check
            ``current()``.

    Raises:
        ConfigError: the manager has no ``scratchpad`` strategy configured.
    """
    scratchpad_of(current() if template is None else template)  # fail early

    def pad() -> Any:
        return scratchpad_of(current())

    def write_note(key: str, facts: list[str], pointers: list[str] | None = None) -> str:
        """Save facts under a key in the scratchpad, replacing any note with that key.

        Args:
            key: short unique name for the note, e.g. "user-prefs".
            facts: the facts to remember, one per item.
            pointers: where more detail lives (file paths, URLs, tool call ids).
        """
        note = pad().write(key, facts, list(pointers or ()))
        return f"saved note {getattr(note, 'key', key)!r}"

    def update_note(
        key: str,
        facts: list[str] | None = None,
        pointers: list[str] | None = None,
        append: bool = False,
    ) -> str:
        """Update an existing scratchpad note.

        Args:
            key: the note's key.
            facts: new facts (replace the old ones, or are added when append is true).
            pointers: new pointers (same rule).
            append: add to the existing facts/pointers instead of replacing them.
        """
        pad().update(key, facts=facts, pointers=pointers, append=append)
        return f"updated note {key!r}"

    def delete_note(key: str) -> str:
        """Delete a scratchpad note.

        Args:
            key: the note's key.
        """
        return f"deleted note {key!r}" if pad().delete(key) else f"no note {key!r}"

    def read_notes(key: str | None = None) -> str:
        """Read scratchpad notes: all of them, or the one with this key.

        Args:
            key: a note's key; omit to read every note.
        """
        return str(pad().read(key)) or "(no notes)"

    return [write_note, update_note, delete_note, read_notes]
