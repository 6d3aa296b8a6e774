"""Agent-facing context tools, framework-neutral: recall from the archive, request compaction.

The agent cannot see what ctxmgr evicted, cleared or offloaded; these functions let it
reach it again. They are views of the session state:

* :func:`search_archive` ranks archived messages against a query with BM25 (Lucene
  variant, as ``bm25s`` computes it; Robertson & Zaragoza, "The Probabilistic Relevance
  Framework: BM25 and Beyond", 2009) using ``bm25s``'s tokenizer, English stop words and
  the Snowball stemmer, the same text pipeline as the ``relevance`` strategy; blended with
  cosine similarity when the manager's ``relevance`` strategy has an ``embedder``;
* :func:`read_archived` returns one archived message by id, paged by characters so a
  50,000-character tool result can be read in parts;
* :func:`recall_functions` and :func:`compaction_function` wrap them as plain Python
  functions with Google docstrings (``search_history``, ``get_message``,
  ``compact_context``), from which each adapter builds its framework's native tools.

Placeholders left by ``tool_pair_safe`` (clearing) and ``offload`` name the archive id
to pass to ``get_message``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ctxmgr.segments import Segment
from ctxmgr.state import Archive, ArchivedMessage

__all__ = [
    "ArchiveHit",
    "compaction_function",
    "read_archived",
    "recall_functions",
    "search_archive",
]

#: Characters ``get_message`` returns per call unless told otherwise.
PAGE_CHARS = 8000

_K1 = 1.5
_B = 0.75


@dataclass(frozen=True)
class ArchiveHit:
    """One search result.

    Attributes:
        entry: the archived message with its reason and turn.
        score: BM25 score (higher is better; only comparable within one search).
    """

    entry: ArchivedMessage
    score: float

    def render(self, snippet_chars: int = 240) -> str:
        """One line per hit: id, role, tool name, turn, reason, and the start of the text."""
        msg = self.entry.message
        who = msg.role + (f" {msg.name}" if msg.name else "")
        text = " ".join(msg.search_text.split())
        if len(text) > snippet_chars:
            text = text[: snippet_chars - 3] + "..."
        return (
            f"- id={msg.id} ({who}, archived at turn {self.entry.turn}: "
            f"{self.entry.reason}; {len(msg.text)} chars): {text}"
        )


class _Index:
    """Archived messages in a :class:`~ctxmgr.index.HistoryIndex` (one document each).

    Extended as the archive grows (append-only); the BM25 postings are the same chunked
    inverted index the ``relevance`` strategy keeps over the history.
    """

    def __init__(self) -> None:
        from ctxmgr.index import HistoryIndex

        self.entries: list[ArchivedMessage] = []
        self.bm25 = HistoryIndex(_tokenize, lambda seg: seg.head.search_text, lambda seg: None)
        self.vectors: list[Any] = []  # embeddings, filled on the first hybrid search


_INDEXES: weakref.WeakKeyDictionary[Archive, _Index] = weakref.WeakKeyDictionary()
_STEMMER: Any = None


def _tokenize(texts: list[str]) -> list[list[str]]:
    import bm25s

    global _STEMMER
    if _STEMMER is None:
        import Stemmer

        _STEMMER = Stemmer.Stemmer("english")
    out = bm25s.tokenize(
        texts, stopwords="en", stemmer=_STEMMER, return_ids=False, show_progress=False
    )
    return [list(t) for t in out]  # type: ignore[union-attr]


def _key(entry: ArchivedMessage) -> tuple[str, str]:
    return entry.message.id, entry.message.fingerprint


def _index(archive: Archive) -> _Index:
    index = _INDEXES.get(archive)
    if index is None:
        index = _INDEXES[archive] = _Index()
    entries = list(archive)
    n = len(index.entries)
    if len(entries) < n or (n and _key(entries[n - 1]) != _key(index.entries[-1])):
        # the archive was rolled back (a failed fit) or replaced: start over
        index = _INDEXES[archive] = _Index()
    new = entries[len(index.entries) :]
    if new:
        start = len(index.entries)
        index.entries.extend(new)
        index.bm25.add([Segment((e.message,), start + i) for i, e in enumerate(new)])
    return index


def search_archive(
    archive: Archive,
    query: str,
    k: int = 5,
    *,
    embed: Callable[[list[str]], Any] | None = None,
    semantic_weight: float = 0.5,
) -> list[ArchiveHit]:
    """Rank archived messages by BM25 relevance to ``query``, optionally hybrid.

    Each archived message is tokenized once into an inverted index kept per archive (the
    archive only grows), so a BM25 search costs O(postings of the query terms). With
    ``embed``, the score is ``(1 - w) * bm25 / max(bm25) + w * max(0, cosine)``, each
    message embedded once (O(archive) vector work per search).

    Args:
        archive: the session's archive (not mutated).
        query: free text; stop words are ignored and words stemmed.
        k: at most this many hits (k <= 0 returns none).
        embed: ``f(texts) -> vectors``, e.g. the ``relevance`` strategy's ``embedder``.
        semantic_weight: ``w`` above, in [0, 1].

    Returns:
        Hits, best first; ties go to the most recently archived. Messages scoring 0 (no
        shared term and, with ``embed``, no positive similarity) are left out.
    """
    if k <= 0 or not query.strip():
        return []
    terms = set(_tokenize([query])[0])
    index = _index(archive)
    n = len(index.entries)
    if n == 0 or (not terms and embed is None):
        return []
    dense = index.bm25.bm25(sorted(terms), _K1, _B)
    scores = {int(doc): float(dense[doc]) for doc in dense.nonzero()[0]}
    if embed is not None:
        scores = _hybrid(index, query, scores, embed, semantic_weight)
    best = sorted(scores.items(), key=lambda t: (-t[1], -t[0]))[:k]
    return [ArchiveHit(index.entries[doc], score) for doc, score in best if score > 0]


def _hybrid(
    index: _Index,
    query: str,
    bm25: dict[int, float],
    embed: Callable[[list[str]], Any],
    weight: float,
) -> dict[int, float]:
    import numpy as np

    todo = [e.message.search_text for e in index.entries[len(index.vectors) :]]
    if todo:
        index.vectors.extend(np.asarray(v, dtype=float) for v in embed(todo))
    matrix = np.stack(index.vectors)
    qvec = np.asarray(embed([query])[0], dtype=float)
    norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(qvec) or 1.0)
    cosine = np.maximum(0.0, matrix @ qvec / np.where(norms == 0, 1.0, norms))
    top = max(bm25.values(), default=0.0) or 1.0
    return {
        doc: (1 - weight) * bm25.get(doc, 0.0) / top + weight * float(cosine[doc])
        for doc in range(len(index.entries))
    }


def _entry(archive: Archive, message_id: str) -> ArchivedMessage | None:
    return next((e for e in archive if e.message.id == message_id), None)


def read_archived(
    archive: Archive, message_id: str, offset: int = 0, max_chars: int = PAGE_CHARS
) -> str:
    """Render one archived message for the agent: a header, its tool calls, a text page.

    Args:
        archive: the session's archive (not mutated).
        message_id: the id named by a placeholder, a preview or a search hit.
        offset: first character of the text to return.
        max_chars: at most this many characters of text (a footer says how to read on).

    Returns:
        The rendering, or a message saying no archived message has this id.
    """
    entry = _entry(archive, message_id.strip())
    if entry is None:
        return (
            f"no archived message has id {message_id!r}; use search_history to find ids "
            "(ids look like 'm-0123456789abcdef' or the framework's message id)"
        )
    msg = entry.message
    head = f"id={msg.id} role={msg.role}"
    if msg.name:
        head += f" name={msg.name}"
    if msg.tool_call_id:
        head += f" tool_call_id={msg.tool_call_id}"
    head += f" (archived at turn {entry.turn}: {entry.reason})"
    lines = [head]
    lines.extend(f"tool call {c.id}: {c.name}({c.arguments})" for c in msg.tool_calls)
    text = msg.text
    offset = max(0, int(offset))
    page = text[offset : offset + max(1, int(max_chars))]
    end = offset + len(page)
    if offset or end < len(text):
        lines.append(f"[characters {offset}-{end} of {len(text)}]")
    lines.append(page)
    if end < len(text):
        lines.append(f'[{len(text) - end} more characters: get_message("{msg.id}", offset={end})]')
    return "\n".join(lines)


def recall_functions(
    current: Callable[[], Any], *, page_chars: int = PAGE_CHARS
) -> list[Callable[..., str]]:
    """Return ``[search_history, get_message]``, the recall tools' bodies.

    Each call acts on the archive of ``current()``, the manager at call time. Their
    names, signatures and Google docstrings are what frameworks build tool schemas from.

    Args:
        current: returns the manager whose archive a call reads.
        page_chars: default page size of ``get_message``, in characters.
    """

    def search_history(query: str, k: int = 5) -> str:
        """Search messages that were removed from your context (evicted, cleared or offloaded).

        Args:
            query: words to look for, e.g. a file name, an error message or a topic.
            k: how many results to return, best first.
        """
        manager = current()
        hits = search_archive(manager.state.archive, query, k, embed=_embedder(manager))
        if not hits:
            return f"no archived message matches {query!r}"
        body = "\n".join(h.render() for h in hits)
        return f"{len(hits)} archived messages match (read one with get_message(id)):\n{body}"

    def get_message(id: str, offset: int = 0) -> str:
        """Read the full text of a message removed from your context, by its id.

        Args:
            id: the id named in a placeholder, a preview or a search_history result.
            offset: character offset to continue reading a long message from.
        """
        return read_archived(current().state.archive, id, offset, page_chars)

    return [search_history, get_message]


def _embedder(manager: Any) -> Callable[[list[str]], Any] | None:
    """The embedding function of the manager's ``relevance`` strategy, if it has one."""
    for strategy in getattr(manager, "strategies", ()):
        embed = getattr(strategy, "_embed", None) if strategy.name == "relevance" else None
        if embed is not None:
            return embed  # type: ignore[no-any-return]
    return None


def compaction_function(current: Callable[[], Any]) -> Callable[..., str]:
    """Return ``compact_context``, the body of the compaction-request tool.

    The request asks the next fit to compact down to half of the last fitted context (at
    most the budget's target), via :meth:`ctxmgr.ContextManager.request_compaction` with
    ``target_fraction=0.5`` (resolved at that fit, so it holds on any worker of a store).

    Args:
        current: returns the manager the request goes to.
    """

    def compact_context(reason: str) -> str:
        """Ask for your context to be compacted before your next step.

        Old content is summarized or archived; search_history and get_message still
        reach it.

        Args:
            reason: why compaction helps now, e.g. "finished exploring; starting the fix".
        """
        current().request_compaction(reason, target_fraction=0.5)
        return (
            f"compaction requested ({reason}); your next step will see about half of the "
            "current context"
        )

    return compact_context
