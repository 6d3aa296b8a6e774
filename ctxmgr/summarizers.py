"""Summarizers fold evicted messages into a running summary.

Any LLM plugs in through the :class:`Summarizer` (sync) or :class:`AsyncSummarizer`
protocol; adapters ship ones for LangChain chat models, LlamaIndex LLMs and AutoGen
model clients. The default :class:`ExtractiveSummarizer` needs no model and no network.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from ctxmgr.messages import Message

__all__ = [
    "SUMMARY_PROMPT",
    "AsyncSummarizer",
    "ExtractiveSummarizer",
    "Summarizer",
    "identifiers",
    "render_transcript",
]

SUMMARY_PROMPT = (
    "You maintain the running summary of a conversation whose older messages no longer fit "
    "the model's context window. Fold the new messages into the previous summary. Keep every "
    "fact a later turn may need: names, numbers, dates, ids, decisions, user preferences, "
    "open tasks, tool results that matter and errors seen. Drop chit-chat. Write terse "
    "bullet points, at most {max_tokens} tokens. Never drop a fact from the previous summary "
    "unless a newer message contradicts it.\n\nPrevious summary:\n{previous}\n\n"
    "New messages:\n{transcript}\n\nUpdated summary:"
)


@runtime_checkable
class Summarizer(Protocol):
    """A synchronous summarizer."""

    def summarize(
        self, previous: str | None, messages: Sequence[Message], *, max_tokens: int
    ) -> str:
        """Return the new running summary.

        Args:
            previous: the running summary so far, or ``None``.
            messages: newly evicted messages, oldest first.
            max_tokens: the summary's token budget.
        """
        ...


@runtime_checkable
class AsyncSummarizer(Protocol):
    """An asynchronous summarizer (same contract as :class:`Summarizer`)."""

    async def asummarize(
        self, previous: str | None, messages: Sequence[Message], *, max_tokens: int
    ) -> str:
        """Return the new running summary (see :meth:`Summarizer.summarize`)."""
        ...


def render_transcript(messages: Sequence[Message], *, max_chars_per_message: int = 2000) -> str:
    """Render messages as plain text for a summarization prompt, one line per message.

    Tool calls render as ``assistant -> name(arguments)`` and tool results as
    ``tool[name] result``. Long contents are cut to ``max_chars_per_message``
    characters with a marker.
    """
    lines = []
    for m in messages:
        who = m.name or m.role
        text = m.text
        if len(text) > max_chars_per_message:
            text = text[:max_chars_per_message] + " [...]"
        if m.tool_calls:
            calls = ", ".join(f"{c.name}({c.arguments})" for c in m.tool_calls)
            lines.append(f"{who}: {text} -> {calls}".replace(":  ->", ": ->"))
        elif m.role == "tool":
            lines.append(f"tool[{m.name or m.tool_call_id}]: {text}")
        else:
            lines.append(f"{who}: {text}")
    return "\n".join(lines)


_IDENTIFIER = re.compile(
    r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+"  # an email (from a word start: linear)
    r"|(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{5,}(?![\w-])(?!\"\s*:)"  # not a JSON key
)
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DIGIT_OR_AT = re.compile(r"[\d@]")  # the same (Unicode) \d as in _IDENTIFIER


def identifiers(text: str, limit: int) -> list[str]:
    """The first ``limit`` distinct identifiers of ``text``, in order of first appearance.

    An identifier is an email address or a word (letters, digits, ``_``, ``-``) of at
    least 5 characters with at least one letter and one digit, neither a JSON key nor
    starting with an ISO date (``2024-05-06T19`` is a timestamp, not an id).
    """
    found: dict[str, None] = {}
    if limit <= 0 or not _DIGIT_OR_AT.search(text):  # an id has a digit, an email an @
        return []
    for match in _IDENTIFIER.finditer(text):
        word = match.group(0)
        if word not in found and not _ISO_DATE.match(word):
            found[word] = None
            if len(found) >= limit:
                break
    return list(found)


_SENTENCE_END = re.compile(r"[.!?]\s+")
_MARKER = re.compile(r"^\[(\d+) earlier points omitted")
_SALIENT = re.compile(r"\b(?:[A-Z][a-z]+|\d[\d:/.,-]*|[A-Z]{2,}[A-Z0-9_-]*)\b")


def _sentences(text: str) -> list[str]:
    r"""``text`` split after every ``.``, ``!`` or ``?`` followed by whitespace (dropped).

    The pieces of ``re.split(r"(?<=[.!?])\s+", text)``; a scan for the punctuation
    instead of a look-behind at every character.
    """
    out = []
    start = 0
    for end in _SENTENCE_END.finditer(text):
        out.append(text[start : end.start() + 1])
        start = end.end()
    out.append(text[start:])
    return out


def _salient_sentence(text: str, max_words: int) -> str:
    sentences = [s.strip() for s in _sentences(text.strip()) if s.strip()]
    if not sentences:
        return ""
    if len(sentences) == 1:
        best = sentences[0]  # nothing to compare: no salience to count
    else:
        best = max(sentences, key=lambda s: len(_SALIENT.findall(s)))  # first max = earliest
    words = best.split()
    if len(words) > max_words:
        best = " ".join(words[:max_words]) + " …"
    return best


class ExtractiveSummarizer:
    """Offline summarizer: keeps the most salient sentence of each evicted message.

    Salience is the count of capitalized words, numbers and ALL-CAPS ids in a sentence
    (names, dates, amounts and codes are what later turns ask about). Tool calls keep
    the tool name and arguments; tool results their first ``max_ids`` identifiers
    (:func:`identifiers`: ids, codes, emails, listed first so they survive shortening)
    and their most salient sentence. The previous summary is kept line by line; when the
    total exceeds ``max_tokens``, the longest lines are shortened first and only then the
    oldest dropped, with a marker saying how many points went to the archive.
    Deterministic; no model, no network.

    Args:
        count_tokens: text token counter (default: 4 characters per token).
        max_words: words kept per extracted sentence.
        max_ids: identifiers kept per tool result (0: none). tau-bench airline,
            action_arg_recall of the agent preset at 2,000 / 4,000 / 8,000 tokens:
            0.536 / 0.842 / 0.989 with 0, 0.678 / 0.940 / 1.0 with 6, and
            0.683 / 0.945 / 1.0 with 12 (the default) or 24.
    """

    def __init__(
        self,
        count_tokens: Callable[[str], int] | None = None,
        *,
        max_words: int = 40,
        max_ids: int = 12,
    ) -> None:
        self.count_tokens = count_tokens or (lambda s: (len(s) + 3) // 4)
        self.max_words = max_words
        self.max_ids = max_ids
        # tokens of each summary line seen (a running summary re-fits its earlier lines at
        # every compaction: counted once, not once per compaction)
        self._line_tokens: dict[str, int] = {}
        self._line_counter: Callable[[str], int] | None = None

    def _count_line(self, line: str) -> int:
        if self._line_counter is not self.count_tokens or len(self._line_tokens) > 4096:
            self._line_tokens = {}  # a new counter, or bound the memo
            self._line_counter = self.count_tokens
        tokens = self._line_tokens.get(line)
        if tokens is None:
            tokens = self._line_tokens[line] = self.count_tokens(line)
        return tokens

    def _line_for(self, m: Message) -> str:
        """The summary line of message ``m`` ("" for none: see :meth:`_has_line`)."""
        who = m.name or m.role
        if m.tool_calls:
            calls = ", ".join(f"{c.name}({c.arguments[:200]})" for c in m.tool_calls)
            return f"- {who} called {calls}"
        sentence = _salient_sentence(m.text, self.max_words)
        if not sentence:
            return ""
        if m.role == "tool":
            ids = identifiers(m.text, self.max_ids)
            head = f"ids {', '.join(ids)}; " if ids else ""  # ids first: they survive cuts
            return f"- result of {m.name or 'tool'}: {head}{sentence}"
        return f"- {who}: {sentence}"

    @staticmethod
    def _has_line(m: Message) -> bool:
        """Whether ``m`` gets a summary line, without building it.

        Messages ctxmgr injected get none; a tool call always gets one; any other message
        gets one when its text has a non-whitespace character (then one of its sentences
        is non-empty, and so is the most salient one).
        """
        if m.metadata.get("ctxmgr"):
            return False
        return bool(m.tool_calls) or bool(m.text.strip())

    def summarize(
        self, previous: str | None, messages: Sequence[Message], *, max_tokens: int
    ) -> str:
        """Fold ``messages`` into ``previous``; the result fits ``max_tokens``."""
        lines: list[str | Message] = [ln for ln in (previous or "").splitlines() if ln.strip()]
        # the newest lines are kept first: a message's line is built only if it is needed
        lines.extend(m for m in messages if self._has_line(m))
        return self._fit(lines, max_tokens)

    def _fit(self, lines: Sequence[str | Message], max_tokens: int) -> str:
        """Fit ``lines`` into ``max_tokens``: shorten long lines, then drop the oldest.

        Lines are shortened in whole passes (caps of 40, 24, then 12 words) while their
        total passes the budget, then the longest suffix (newest points) that fits is
        kept; a marker counts the omitted points. Whether a pass is needed, and which
        suffix fits, is decided from the newest lines back: a line older than the kept
        suffix is never built (a :class:`Message` stands for the line
        :meth:`_line_for` gives it) nor counted. O(lines).
        """
        omitted = 0
        first = lines[0] if lines else None
        if isinstance(first, str) and (found := _MARKER.match(first)):
            omitted = int(found.group(1))
            lines = lines[1:]
        # a line can never keep more than this many characters: cut before counting, so
        # fitting a huge line (a runaway LLM summary) stays linear in its length
        max_chars = (max(0, max_tokens) + 1) * 32
        base: dict[int, str] = {}  # built lines, one point per line (no inner newlines)
        cap: int | None = None  # the shortest word cap applied so far (passes 40, 24, 12)

        def line(i: int) -> str:
            text = base.get(i)
            if text is None:
                raw = lines[i]
                ln = raw if isinstance(raw, str) else self._line_for(raw)
                text = base[i] = " ".join(
                    (ln if len(ln) <= max_chars else ln[:max_chars] + " …").split()
                )
            if cap is not None:
                # shortening at 40, then 24, then 12 words keeps the first `cap` words
                words = text.split()
                if len(words) > cap + 1:
                    return " ".join(words[:cap]) + " …"
            return text

        def fitting(budget: int) -> int:
            """How many of the newest lines fit ``budget`` tokens (+1 each: the newline)."""
            running = 0
            for kept, i in enumerate(range(len(lines) - 1, -1, -1)):
                running += self._count_line(line(i)) + 1
                if running > budget:
                    return kept
            return len(lines)

        marker_cost = 16
        budget = max_tokens - marker_cost
        kept = fitting(budget)
        for shorter in (40, 24, 12):
            if kept == len(lines):
                break
            cap = shorter
            kept = fitting(budget)
        omitted += len(lines) - kept
        out = [line(i) for i in range(len(lines) - kept, len(lines))]

        def render() -> str:
            head = [f"[{omitted} earlier points omitted; see the archive]"] if omitted else []
            return "\n".join(head + out)

        while out and self.count_tokens(render()) > max_tokens:
            if len(out) == 1 and len(out[0]) > 80:  # the last point: cut, keep its head
                out[0] = out[0][: len(out[0]) * 2 // 3].rstrip(" …") + " …"
                continue
            out.pop(0)
            omitted += 1
        return render()
