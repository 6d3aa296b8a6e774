"""``scratchpad``: structured notes that survive eviction, rendered as a pinned block.

Tools call :class:`Scratchpad` (``manager.scratchpad``) to write, update, delete and read
notes; each adapter wraps these as the framework's native tools. Optional rule-based
extraction turns tool results into notes without a model.

The notes block is re-rendered at each compaction (it sits at the head of the context,
so changing it between compactions would break the prompt-cache prefix); a note written
in between is visible anyway as the note tool's call and result in the recent history.
Set ``refresh_on_change = true`` to compact as soon as notes change instead.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ctxmgr.errors import CtxmgrError
from ctxmgr.hookspecs import hookimpl
from ctxmgr.messages import Message
from ctxmgr.segments import Segment
from ctxmgr.state import Note, SessionState
from ctxmgr.strategy import Strategy, StrategyOptions
from ctxmgr.window import Injection, Window

__all__ = ["ExtractionRule", "Scratchpad", "ScratchpadNotes"]

NOTES_HEADER = "Scratchpad notes (kept across compactions):\n"


class ExtractionRule(BaseModel):
    """Turn matches in tool results into note facts.

    Attributes:
        tool: tool name glob (``"get_*"``).
        pattern: regular expression searched in the tool result text; each match becomes
            a fact: the named groups as ``name=value``, else the whole match.
        key: note key; ``{tool}`` is replaced by the tool name.
        max_facts: keep at most this many (newest) facts in the note.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    tool: str = "*"
    pattern: str
    key: str = "{tool}"
    max_facts: int = Field(default=20, gt=0)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
        return pattern


class ScratchpadNotesOptions(StrategyOptions):
    """Options of :class:`ScratchpadNotes`.

    Attributes:
        max_note_tokens: budget of the rendered notes block (oldest notes dropped beyond).
        rules: rule-based extraction from tool results (empty: off).
        refresh_on_change: compact when notes change so the block is current at once.
        role: role of the injected notes message; ``"auto"`` (default) takes the
            provider profile's injection role (``user`` for Anthropic and Gemini, which
            reject system messages after the first).
    """

    max_note_tokens: int = Field(default=400, gt=0)
    rules: list[ExtractionRule] = Field(default_factory=list)
    refresh_on_change: bool = False
    role: Literal["auto", "system", "user"] = "auto"


class Scratchpad:
    """The note API for tools and applications, bound to one manager's session state.

    All methods return plain values and raise :class:`~ctxmgr.errors.CtxmgrError` for a
    missing key, so tool wrappers can turn errors into tool messages.
    """

    def __init__(self, manager: Any):
        self._manager = manager

    @property
    def _state(self) -> SessionState:
        return self._manager.state  # type: ignore[no-any-return]

    def _touch(self) -> None:
        self._state.extra.setdefault("scratchpad", {})["dirty"] = True

    def write(self, key: str, facts: str | Sequence[str], pointers: Sequence[str] = ()) -> Note:
        """Create or replace the note ``key``.

        Args:
            key: note name.
            facts: one fact or a list of facts.
            pointers: where details live (``"src/app.py:10-40"``).
        """
        if not key.strip():
            raise CtxmgrError("a note needs a non-empty key")
        facts_list = [facts] if isinstance(facts, str) else list(facts)
        note = Note(key, facts_list, list(pointers), self._state.turn)
        self._state.notes[key] = note
        self._touch()
        return note

    def update(
        self,
        key: str,
        facts: str | Sequence[str] | None = None,
        pointers: Sequence[str] | None = None,
        *,
        append: bool = False,
    ) -> Note:
        """Change facts and/or pointers of an existing note (replace, or ``append``).

        Raises:
            CtxmgrError: no note has this key.
        """
        note = self._state.notes.get(key)
        if note is None:
            raise CtxmgrError(f"no note named {key!r}; existing: {', '.join(self._state.notes)}")
        if facts is not None:
            new = [facts] if isinstance(facts, str) else list(facts)
            note.facts = note.facts + new if append else new
        if pointers is not None:
            note.pointers = note.pointers + list(pointers) if append else list(pointers)
        note.turn = self._state.turn
        self._touch()
        return note

    def delete(self, key: str) -> bool:
        """Delete a note; return whether it existed."""
        existed = self._state.notes.pop(key, None) is not None
        if existed:
            self._touch()
        return existed

    def read(self, key: str | None = None) -> str:
        """Render all notes, or one.

        Raises:
            CtxmgrError: ``key`` is given and missing.
        """
        if key is not None:
            note = self._state.notes.get(key)
            if note is None:
                raise CtxmgrError(f"no note named {key!r}")
            return note.render()
        return "\n".join(n.render() for n in self._state.notes.values()) or "(no notes)"

    def list(self) -> list[Note]:
        """All notes, oldest first."""
        return list(self._state.notes.values())


class ScratchpadNotes(Strategy):
    """Structured notes (key, facts, pointers) rendered as a pinned block after compaction."""

    name = "scratchpad"
    summary = "structured notes (facts, pointers) that survive eviction; note tools for agents"
    Options = ScratchpadNotesOptions
    options: ScratchpadNotesOptions

    def __init__(self, options: StrategyOptions | None = None, *, weight: float = 1.0):
        super().__init__(options, weight=weight)
        self._rules = [(rule, re.compile(rule.pattern)) for rule in self.options.rules]

    def bind(self, manager: Any) -> None:
        """Resolve ``role = "auto"`` from the manager's provider profile."""
        role = self.options.role
        self._role = manager.profile.injection_role if role == "auto" else role

    def api(self, manager: Any) -> Scratchpad:
        """Return the note API bound to ``manager``'s state."""
        return Scratchpad(manager)

    def _render(self, window: Window) -> str | None:
        notes = list(window.state.notes.values())
        if not notes:
            return None
        lines = [n.render() for n in notes]
        while len(lines) > 1 and window.counter.count_text("\n".join(lines)) > (
            self.options.max_note_tokens
        ):
            lines.pop(0)
        return NOTES_HEADER + "\n".join(lines)

    @hookimpl
    def ctxmgr_observe(self, window: Window, new_segments: Sequence[Segment]) -> None:
        """Apply extraction rules to new tool results."""
        if not self._rules:
            return
        for seg in new_segments:
            if not seg.is_tool_exchange:
                continue
            names = {c.id: c.name for c in seg.head.tool_calls}
            for msg in seg.messages[1:]:
                tool = names.get(msg.tool_call_id or "", msg.name or "")
                for rule, regex in self._rules:
                    if not fnmatch.fnmatchcase(tool, rule.tool):
                        continue
                    facts = []
                    for match in regex.finditer(msg.text):
                        groups = match.groupdict()
                        if groups:
                            facts.append(", ".join(f"{k}={v}" for k, v in groups.items() if v))
                        else:
                            facts.append(match.group(0))
                    if not facts:
                        continue
                    key = rule.key.replace("{tool}", tool)
                    note = window.state.notes.get(key) or Note(key)
                    merged = [f for f in note.facts if f not in facts] + facts
                    note.facts = merged[-rule.max_facts :]
                    pointer = f"tool result {msg.id}"
                    note.pointers = [*note.pointers[-4:], pointer]
                    note.turn = window.turn
                    window.state.notes[key] = note
                    window.state.extra.setdefault(self.name, {})["dirty"] = True

    @hookimpl
    def ctxmgr_wants_compaction(
        self, window: Window, new_segments: Sequence[Segment]
    ) -> str | None:
        """With ``refresh_on_change``, compact when notes changed since the last render."""
        data = window.state.extra.get(self.name, {})
        if self.options.refresh_on_change and data.get("dirty"):
            return "scratchpad notes changed"
        return None

    @hookimpl
    def ctxmgr_reserve(self, window: Window) -> int | None:
        """Reserve the rendered notes block."""
        text = self._render(window)
        return window.counter.count_message(Message.system(text)) if text else None

    @hookimpl
    def ctxmgr_inject(self, window: Window) -> Sequence[Injection] | None:
        """Inject the notes block after the leading pinned messages (and the summary)."""
        window.state.extra.setdefault(self.name, {})["dirty"] = False
        text = self._render(window)
        if text is None:
            return None
        message = Message(getattr(self, "_role", "system"), text, metadata={"ctxmgr": "notes"})
        return [Injection(message, "head", "scratchpad notes", self.name)]


@hookimpl
def ctxmgr_register_strategies(register: Callable[[type[Any]], None]) -> None:
    """Register :class:`ScratchpadNotes`."""
    register(ScratchpadNotes)
