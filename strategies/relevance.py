"""``relevance``: score segments against the current query (BM25 + embeddings) plus recency.

Lexical: BM25 (Robertson & Zaragoza, "The Probabilistic Relevance Framework: BM25 and
Beyond", 2009), Lucene variant as in the ``bm25s`` library, with ``bm25s``'s tokenizer,
English stop words and the Snowball stemmer (``PyStemmer``). Semantic: cosine similarity
of embeddings, by default the static WordLlama model bundled in the ``wordllama`` wheel
(``pip install "ctxmgr-llm[semantic]"``; loaded offline, no download), or any embedding
callable (``embedder = "module:function"``). The two are fused by a z-scored blend or by
reciprocal rank fusion (Cormack, Clarke & Buettcher, SIGIR 2009), smoothed over
neighbouring turns and normalized to [0, 1]. The query is the latest user message unless
``fit(query=...)`` gives one.

Cost: each segment is tokenized and embedded once, when it first reaches the strategy,
into a :class:`~ctxmgr.index.HistoryIndex` (inverted index and vector matrix grown in
chunks). A new question reads only the postings of its own terms plus one vectorized
matrix-vector product over the history (no Python loop over the history).

Placement of what a new question recalls (``placement``):

* ``"block"``: cache-stable. The context stays an append-only prefix (pinned messages,
  summary, recent tail); the segments recalled for the current question form one block
  just before the latest user message, replaced on the next question (with
  ``recall_gate``, only when that question needs turns the context does not hold, as in
  the ``agent`` preset), ordered so the most relevant sits nearest the question (Liu et
  al., "Lost in the Middle", TACL 2024).
* ``"inline"``: a new question re-selects the whole context (recalled segments in
  chronological order); higher recall, a prompt-cache miss on every new question.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib
import importlib.util
import json
import math
import os
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from itertools import filterfalse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ctxmgr._bulk import paused_gc
from ctxmgr.errors import ConfigError
from ctxmgr.hookspecs import hookimpl
from ctxmgr.segments import Segment
from ctxmgr.strategy import Strategy, StrategyOptions
from ctxmgr.window import Window

__all__ = ["RelevanceEviction", "wordllama_embedder"]

if TYPE_CHECKING:
    import bm25s
    import numpy as np

    from ctxmgr.index import HistoryIndex, TermCounts, zscore
else:  # heavy: imported when the strategy is first configured (``import ctxmgr`` stays light)
    bm25s = np = HistoryIndex = TermCounts = zscore = None


def _import_deps() -> None:
    global bm25s, np, HistoryIndex, TermCounts, zscore
    if np is None:
        import bm25s as _bm25s
        import numpy as _np

        from ctxmgr.index import HistoryIndex as _HistoryIndex
        from ctxmgr.index import TermCounts as _TermCounts
        from ctxmgr.index import zscore as _zscore

        bm25s, np, HistoryIndex, zscore = _bm25s, _np, _HistoryIndex, _zscore  # type: ignore[misc]
        TermCounts = _TermCounts  # type: ignore[misc]


_BM25_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # bm25s.tokenize's default token_pattern
_STEM_MEMO = 200_000  # words whose stem a strategy keeps (emptied when it grows past)
_ASCII_WORD_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"  # \w
_ASCII_SPLIT = bytes(c if chr(c) in _ASCII_WORD_CHARS else 32 for c in range(256))  # else " "
_ONE_CHAR_WORDS = frozenset(_ASCII_WORD_CHARS.lower())  # lower-cased; the pattern needs two


def _words(text: str) -> Iterable[str]:
    r"""``_BM25_TOKEN.findall(text.lower())``: the runs of 2 or more word characters.

    ASCII text (``\w`` is ``[A-Za-z0-9_]`` there) is split by a byte table in C instead
    of the regular expression, and its one-character words are dropped in C.
    """
    if text.isascii():
        split = text.lower().encode().translate(_ASCII_SPLIT).decode().split()
        return filterfalse(_ONE_CHAR_WORDS.__contains__, split)
    return _BM25_TOKEN.findall(text.lower())


_PUBLIC_STOPWORDS = {  # name -> bm25s.stopwords list, for a bm25s without the helper below
    "en": "STOPWORDS_EN",
    "english": "STOPWORDS_EN",
    "en_plus": "STOPWORDS_EN_PLUS",
    "english_plus": "STOPWORDS_EN_PLUS",
}


def _bm25s_stopwords(name: str | None) -> Sequence[str]:
    """The stop words ``bm25s.tokenize(stopwords=name)`` drops.

    Raises:
        ConfigError: bm25s has no list of that name.
    """
    try:  # bm25s's own name -> list mapping (a private helper, so guarded)
        from bm25s.tokenization import _infer_stopwords
    except ImportError:
        import bm25s.stopwords

        if name is None:
            return []
        found = getattr(bm25s.stopwords, _PUBLIC_STOPWORDS.get(name, ""), None)
        if found is None:
            raise ConfigError(
                f"unknown bm25s stop-word list {name!r} (known here: "
                f"{', '.join(sorted(_PUBLIC_STOPWORDS))}, or None)",
                key="relevance.stopwords",
            ) from None
        return found  # type: ignore[no-any-return]
    try:
        return _infer_stopwords(name)  # type: ignore[no-any-return]
    except ValueError as exc:
        raise ConfigError(str(exc), key="relevance.stopwords") from None


@functools.lru_cache(maxsize=1)
def _wordllama() -> Any:
    # small batches: the tokenizer's thread pool costs more than it saves
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import wordllama
    from wordllama import WordLlama

    # the weights and tokenizer config ship inside the wheel; never download
    return WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)


@functools.lru_cache(maxsize=1)
def _pooled() -> Any:
    from ctxmgr.pooling import PooledEmbedder

    return PooledEmbedder(_wordllama())  # WordLlama.embed(norm=True), bit for bit, faster


_EMBED_CHARS = 2000


def wordllama_embedder(texts: list[str]) -> np.ndarray:
    """Embed ``texts`` with the WordLlama model bundled in the ``wordllama`` wheel.

    256-dimension static token embeddings, mean-pooled (Miller, "WordLlama", 2024,
    https://github.com/dleemiller/WordLlama); about 10,000 short turns per second on one
    core, no network.

    Args:
        texts: the texts (not mutated); only the first 2,000 characters of each count.

    Returns:
        A float32 array of shape (len(texts), 256), rows L2-normalized (all zeros for a
        text with no token).

    Raises:
        ImportError: ``wordllama`` is not installed (``pip install "ctxmgr-llm[semantic]"``).
    """
    _import_deps()
    try:
        model = _wordllama()
        pooled = _pooled()
    except ImportError as exc:
        raise ImportError(
            'the semantic scorer needs wordllama: pip install "ctxmgr-llm[semantic]"'
        ) from exc
    # batches are padded to their longest text: embed in order of length, cut very long
    # texts (the mean of static embeddings over 2,000 characters has settled)
    # texts with no word (empty tool results, an empty system prompt) get a zero vector
    order = sorted((i for i in range(len(texts)) if texts[i].strip()), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.embedding.shape[1]), dtype=np.float32)
    if order:
        with np.errstate(invalid="ignore", divide="ignore"):  # a text of unknown tokens only
            rows = pooled([texts[i][:_EMBED_CHARS] for i in order])
        out[order] = np.nan_to_num(rows, nan=0.0, posinf=0.0, neginf=0.0)
    return out


@functools.lru_cache(maxsize=1024)
def _names(name: str) -> re.Pattern[str]:
    """Whole-word, case-insensitive pattern for a speaker's name or its first word."""
    first = name.split()[0] if name.split() else name
    forms = {name.strip(), first} if len(first) >= 3 else {name.strip()}
    alt = "|".join(sorted((re.escape(f) for f in forms if f), key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alt})(?!\w)", re.IGNORECASE)


def _semantic_available() -> bool:
    return importlib.util.find_spec("wordllama") is not None


class RelevanceOptions(StrategyOptions):
    """Options of :class:`RelevanceEviction`.

    Attributes:
        embedder: ``"module:function"`` naming a callable
            ``f(texts: list[str]) -> list[list[float]]``, ``"wordllama"``, or ``None``:
            WordLlama when ``semantic`` is on and ``wordllama`` is installed, else BM25
            alone. An embedder that raises is dropped with a warning (BM25 goes on).
        semantic: use the bundled WordLlama scorer when ``embedder`` is ``None``.
        semantic_weight: share of the semantic score in the fusion, in [0, 1].
        semantic_text: what the embedder sees of a turn. ``"content"`` (default): its
            text, tool calls and a tool result's tool name, without a participant's
            ``name`` or the ``index_metadata`` values; ``"indexed"``: the text BM25
            indexes (name, content, metadata). With ``"content"`` the query is embedded
            without the participants' names too. A static embedding is a mean of word
            vectors: words shared by every turn of a speaker or a session pull those
            turns' vectors together and flatten the contrast between them (speakers are
            the speaker prior's job, dates BM25's). LoCoMo ranking test
            (``benchmarks/tune_relevance.py --grid semantic_text``), see
            ``benchmarks/README.md``.
        semantic_dim: keep only the first this many embedding dimensions (re-normalized),
            or ``None`` for all. WordLlama is trained Matryoshka-style (Kusupati et al.,
            NeurIPS 2022), so a prefix of its 256 dimensions is itself an embedding; fewer
            dimensions cost proportionally less memory and time per question. Default 128:
            LoCoMo evidence recall at 4,000 tokens is the same with 64, 128 or 256
            (``benchmarks/README.md``); 128 halves the matrix.
        fusion: ``"zscore"`` (blend of z-scored BM25 and cosine, clipped at 0) or
            ``"rrf"`` (reciprocal rank fusion, 1 / (rrf_k + rank)).
        rrf_k: the RRF constant (60 in Cormack et al. 2009).
        recency_weight: share of recency in the blended score, in [0, 1].
        neighbor_weight: each segment gains this times the relevance of its neighbours
            (``neighbor_span`` on each side, same session only): answers in a dialogue sit
            next to the turn that matches the question.
        neighbor_span: neighbours counted on each side, in history segments.
        neighbor_decay: the weight of a neighbour at distance d is
            ``neighbor_weight * neighbor_decay ** (d - 1)``.
        session_key: metadata key whose value delimits sessions for smoothing.
        index_metadata: metadata keys whose values are indexed with the text (dates).
        placement: ``"block"`` (cache-stable recall block before the latest user message)
            or ``"inline"`` (see the module docstring).
        block_order: ``"relevance"`` (most relevant nearest the question) or
            ``"chronological"`` inside the recall block.
        block_position: ``"before_question"`` (just before the latest user message) or
            ``"after_system"`` (right after the leading system messages).
        rerank_on_new_query: with ``placement = "inline"``, re-select on every new user
            message, recalling relevant archived segments, even below the trigger (a
            prompt-cache miss then). Off by default (a context below the trigger only grows
            by appending); the ``relevance`` preset turns it on.
        speaker_weight: speaker prior. When the query names some of the conversation's
            speakers (the ``name`` of user/assistant messages, matched as a whole word,
            case-insensitive; a first name alone also matches), the scores of the other
            speakers' segments are multiplied by ``1 - speaker_weight``. Dormant in chats
            without named speakers. On LoCoMo, 96% of the evidence turns of a question that
            names one participant are that participant's own turns.
        recall_gate: with ``placement = "block"``, a new query recalls a new block only
            when one of its ``recall_gate`` best matches in the history (fused, smoothed
            scores; the query's own message excluded) is not in the context (the earlier
            block included); otherwise the earlier block stays where it was, so the
            context only grows and the prompt cache holds. An earlier block that is empty
            (or absent) is replaced anyway: that removes nothing, and the new block uses
            the free room. ``None``: every new query recalls a new block.
        recall_share: with ``placement = "block"``, when a new block is to be recalled and
            the context holds more than ``1 - recall_share`` of the effective limit, the
            context is first compacted down to that, so the block gets at least this share.
            ``None``: the block gets what room is left.
        block_headroom: share of the effective limit left free when a new block is
            chosen, so the conversation can grow by that much before the block must go.
        max_recall: at most this many segments recalled per new query.
        k1: BM25 term-frequency saturation.
        b: BM25 length normalization.
        stemmer: Snowball stemmer language, or ``None``.
        stopwords: a ``bm25s`` stop-word list (``"en"``, ``"en_plus"``) or ``None``.

    Defaults (k1 = 1.5, ``en_plus`` stop words, English stemmer, speaker and session date
    indexed, neighbour smoothing 0.4 over 2 turns, recency 0.1, z-scored fusion with
    semantic weight 0.5, speaker prior 0.7) were chosen on LoCoMo (Maharana et al. 2024)
    evidence recall with 2-fold cross-validation by dialogue (``benchmarks/README.md``,
    ``benchmarks/tune_relevance.py --grid fusion`` and ``--grid speaker``).
    """

    embedder: str | None = None
    semantic: bool = True
    semantic_weight: float = Field(default=0.5, ge=0, le=1)
    semantic_text: Literal["content", "indexed"] = "content"
    semantic_dim: int | None = Field(default=128, ge=8)
    fusion: Literal["zscore", "rrf"] = "zscore"
    rrf_k: int = Field(default=60, ge=1)
    recency_weight: float = Field(default=0.1, ge=0, le=1)
    neighbor_weight: float = Field(default=0.4, ge=0, le=1)
    neighbor_span: int = Field(default=2, ge=0)
    neighbor_decay: float = Field(default=1.0, gt=0, le=1)
    session_key: str = "session"
    index_metadata: list[str] = Field(default_factory=lambda: ["session_date"])
    placement: Literal["block", "inline"] = "inline"
    block_order: Literal["relevance", "chronological"] = "relevance"
    block_position: Literal["before_question", "after_system"] = "before_question"
    rerank_on_new_query: bool = False
    speaker_weight: float = Field(default=0.7, ge=0, le=1)
    recall_gate: int | None = Field(default=None, ge=1)
    recall_share: float | None = Field(default=None, gt=0, le=1)
    block_headroom: float = Field(default=0.0, ge=0, lt=1)
    max_recall: int = Field(default=256, ge=0)
    k1: float = Field(default=1.5, gt=0)
    b: float = Field(default=0.75, ge=0, le=1)
    stemmer: str | None = "english"
    stopwords: str | None = "en_plus"


class RelevanceEviction(Strategy):
    """Evicts the segments least relevant to the current query first; recalls the most."""

    name = "relevance"
    summary = "scores segments by BM25 + embeddings against the current query, plus recency"
    Options = RelevanceOptions
    options: RelevanceOptions

    def __init__(self, options: StrategyOptions | None = None, *, weight: float = 1.0):
        super().__init__(options, weight=weight)
        _import_deps()
        self._stemmer: Any = None
        if self.options.stemmer:
            import Stemmer

            self._stemmer = Stemmer.Stemmer(self.options.stemmer)
        self._dropped = frozenset(_bm25s_stopwords(self.options.stopwords))  # stop words
        self._stems: dict[str, str] = {}  # word -> its stem (see _tokenize)
        self._embed: Callable[[list[str]], Any] | None = self._resolve_embedder()
        self._index = HistoryIndex(self._tokenize_docs, self._doc, self._session)
        # feature rows of a store (see load_features): loaded, and derived since the save
        o = self.options
        spec = [o.stopwords, o.stemmer, o.embedder, o.semantic, o.semantic_dim]
        self._feature_key = (
            "relevance:" + hashlib.blake2b(json.dumps(spec).encode(), digest_size=6).hexdigest()
        )
        self._stored_features: dict[str, str] = {}
        self._new_features: dict[str, str] | None = None  # None: not bound to a store
        self._cache: tuple[tuple[str, int], np.ndarray] | None = None
        self._qvec: tuple[str, np.ndarray] | None = None

    def _resolve_embedder(self) -> Callable[[list[str]], Any] | None:
        name = self.options.embedder
        if name == "wordllama" or (
            name is None and self.options.semantic and _semantic_available()
        ):
            return wordllama_embedder
        if name:
            module, _, attr = name.partition(":")
            try:
                return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
            except (ImportError, AttributeError, ValueError) as exc:
                raise ConfigError(
                    f"cannot load {name!r} ('module:function'): {exc}",
                    key="relevance.embedder",
                ) from None
        return None

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        """The terms of each text, as ``bm25s.tokenize(texts, return_ids=False)`` gives them.

        bm25s's steps (lower-case, its token pattern, stop words dropped, each word
        stemmed), with the stop-word set built once instead of once per text and each
        word's stem kept (Snowball stems a word alone: the same stem for it in any batch).
        """
        stemmer = self._stemmer
        stems = self._stems
        if len(stems) > _STEM_MEMO:
            stems.clear()
        out = []
        for text in texts:
            words = list(filterfalse(self._dropped.__contains__, _words(text)))
            if stemmer is None:
                out.append(words)
                continue
            try:  # every word stemmed before: one pass in C
                out.append(list(map(stems.__getitem__, words)))
            except KeyError:
                terms = list(map(stems.get, words))
                for i, term in enumerate(terms):
                    if term is None:
                        terms[i] = stems[words[i]] = stemmer.stemWord(words[i])
                out.append(terms)  # type: ignore[arg-type]
        return out

    # ------------------------------------------------------------------ stored features
    # A segment's index terms and embedding depend only on its indexed text and these
    # options, so a store keeps them as rows keyed by a digest of that text
    # (ctxmgr.stores.base): a cold worker rebuilds the index without re-tokenizing or
    # re-embedding the history. StoredSession calls these three methods.
    def load_features(self, rows: Mapping[str, str]) -> None:
        """Take a stored conversation's feature rows and record new ones from now on.

        Args:
            rows: ``{"<key>|<kind>|<digest>": text}`` from the store (not mutated); rows of
                other strategies or options are ignored.
        """
        prefix = self._feature_key + "|"
        self._stored_features = {k: v for k, v in rows.items() if k.startswith(prefix)}
        self._new_features = {}

    def pending_features(self) -> dict[str, str]:
        """Return the feature rows derived since the last :meth:`features_saved`."""
        return dict(self._new_features or {})

    def features_saved(self) -> None:
        """Forget the pending rows: the store has them now."""
        if self._new_features is not None:
            self._new_features = {}

    def _feature(self, kind: str, text: str) -> str:
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()
        return f"{self._feature_key}|{kind}|{digest}"

    def _tokenize_docs(self, texts: list[str]) -> list[list[str] | TermCounts]:
        """:meth:`_tokenize` for indexed segments, reusing and recording stored terms.

        A row holds each distinct term once with its count, in order of first occurrence
        (:class:`~ctxmgr.index.TermCounts`, from which the index is built exactly as from
        the term list).
        """
        new = self._new_features
        if new is None:
            return self._tokenize(texts)  # type: ignore[return-value]
        keys = [self._feature("t", t) for t in texts]
        stored = self._stored_features
        out: list[list[str] | TermCounts] = [[] for _ in texts]
        missing = []
        with paused_gc():  # a cold start decodes thousands of rows at once
            for i, key in enumerate(keys):
                row = stored.pop(key, None)
                if row is None:
                    missing.append(i)
                else:
                    out[i] = TermCounts(*json.loads(row))
        if missing:
            for i, terms in zip(missing, self._tokenize([texts[i] for i in missing])):
                out[i] = terms
                counted = Counter(terms)  # first-occurrence order
                new[keys[i]] = json.dumps([list(counted), list(counted.values())])
        return out

    def _doc_vectors(self, texts: list[str], query: str | None) -> np.ndarray | None:
        """:meth:`_embed_rows` of ``texts`` (then ``query``), reusing stored vectors.

        Returns ``None`` when the embedder failed.
        """
        new = self._new_features
        batch = [*texts, query] if query is not None else texts
        if new is None:
            return self._embed_rows(batch)
        keys = [self._feature("v", t) for t in texts]
        stored = self._stored_features
        found: dict[int, np.ndarray] = {}
        for i, key in enumerate(keys):
            row = stored.pop(key, None)
            if row is not None:
                found[i] = np.frombuffer(base64.b64decode(row), dtype=np.float32)
        missing = [i for i in range(len(batch)) if i not in found]
        rows = self._embed_rows([batch[i] for i in missing]) if missing else None
        if missing and rows is None:
            return None
        dim = rows.shape[1] if rows is not None else len(next(iter(found.values())))
        out = np.zeros((len(batch), dim), dtype=np.float32)
        for i, vec in found.items():
            out[i] = vec
        for j, i in enumerate(missing):
            assert rows is not None
            out[i] = rows[j]
            if i < len(texts):
                new[keys[i]] = base64.b64encode(out[i].tobytes()).decode()
        return out

    def adopt(self, other: Strategy) -> None:
        """Fork the history index of ``other`` and copy its recall decisions (a clone)."""
        if isinstance(other, RelevanceEviction):
            self._index = other._index.fork()
            self._index._tokenize = self._tokenize_docs  # not the original's stored rows
            self._embed = other._embed
            self._qvec = other._qvec

    def snapshot(self) -> Any:
        """Nothing to keep: the recall decisions (last query, block) live in the session state."""
        return None

    def restore(self, snapshot: Any) -> None:
        """Drop the per-query score cache (a failed fit)."""
        self._cache = None

    def _doc(self, seg: Segment) -> str:
        extra = [
            str(seg.head.metadata[k]) for k in self.options.index_metadata if k in seg.head.metadata
        ]
        return " ".join([seg.text, *extra])

    def _semantic_doc(self, seg: Segment) -> str:
        """What the embedder sees of a segment (option ``semantic_text``)."""
        if self.options.semantic_text == "indexed":
            return self._doc(seg)
        parts: list[str] = []
        for m in seg.messages:
            if m.role == "tool" and m.name:
                parts.append(m.name)
            if m.text:
                parts.append(m.text)
            parts.extend(f"{c.name} {c.arguments}" for c in m.tool_calls)
        return "\n".join(parts)

    def _semantic_query(self, query: str) -> str:
        """What the embedder sees of the query (option ``semantic_text``).

        With ``"content"``: the query without the conversation's participant names, as
        turns are embedded without them (a question naming a speaker is the speaker
        prior's job).
        """
        if self.options.semantic_text != "content":
            return query
        for name in self._index.speaker_ids:
            query = _names(name).sub(" ", query)
        return query

    def _session(self, seg: Segment) -> Any:
        value = seg.head.metadata.get(self.options.session_key)
        return value if value is None or isinstance(value, (str, int, float)) else str(value)

    # ------------------------------------------------------------------ scoring
    def _embed_rows(self, texts: list[str]) -> np.ndarray | None:
        """Unit-normalized embeddings of ``texts``; ``None`` (and BM25 only) on failure."""
        assert self._embed is not None
        try:
            rows = np.asarray(self._embed(texts), dtype=np.float32)
            if rows.ndim != 2 or len(rows) != len(texts):
                raise ValueError(f"expected {len(texts)} vectors, got shape {rows.shape}")
        except Exception as exc:
            warnings.warn(
                f"relevance: the embedder failed ({exc!r}); scoring falls back to BM25 alone "
                "for this conversation (set embedder = None to silence)",
                RuntimeWarning,
                stacklevel=2,
            )
            self._embed = None
            self._index.drop_vectors()
            return None
        rows = np.nan_to_num(rows, nan=0.0, posinf=0.0, neginf=0.0)
        if self.options.semantic_dim is not None:
            rows = rows[:, : self.options.semantic_dim]
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return rows / np.where(norms == 0, 1.0, norms)

    def _semantic(self, query: str, n: int) -> np.ndarray | None:
        """Cosine of ``query`` with every history segment, or ``None`` (no embedder)."""
        if self._embed is None:
            return None
        index = self._index
        texts = [self._semantic_doc(s) for s in index.segments[index.embedded : n]]
        fresh_query = self._qvec is None or self._qvec[0] != query
        if texts or fresh_query:
            asked = self._semantic_query(query) if fresh_query else None
            rows = self._doc_vectors(texts, asked)  # one batch
            if rows is None:
                return None
            index.add_vectors(rows[: len(texts)])
            if fresh_query:
                self._qvec = (query, rows[-1])
        assert self._qvec is not None
        return index.cosine(self._qvec[1])[:n]

    def _fuse(self, lex: np.ndarray, sem: np.ndarray | None) -> np.ndarray:
        if sem is None:
            return lex
        w = self.options.semantic_weight
        if self.options.fusion == "zscore":
            return np.maximum(0.0, (1 - w) * zscore(lex) + w * zscore(sem))
        k = float(self.options.rrf_k)
        out = np.zeros(len(lex))
        for weight, vec, mask in ((1 - w, lex, lex > 0), (w, sem, None)):
            ranks = np.empty(len(vec))
            ranks[np.argsort(-vec, kind="stable")] = np.arange(1, len(vec) + 1)
            part = weight / (k + ranks)
            out += part if mask is None else np.where(mask, part, 0.0)
        return out

    def _history_scores(self, window: Window) -> np.ndarray:
        """Fused, smoothed relevance of every history segment to ``window.query``, in [0, 1].

        Cached per (query, history length). New segments are indexed (and embedded) once.
        """
        history = window.history
        key = (window.query, len(history))
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        n = len(history)
        self._index.sync(history)
        top = 0.0
        if not window.query.strip() or n == 0:
            scores = np.zeros(n)
        else:
            o = self.options
            lex = self._index.bm25(self._tokenize([window.query])[0], o.k1, o.b)
            scores = self._fuse(lex, self._semantic(window.query, n))
            own = self._index.last_user
            scores = self._index.smooth(
                scores, o.neighbor_weight, o.neighbor_span, o.neighbor_decay
            )
            self_match = 0.0
            if 0 <= own < n and history[own].head.text.strip() == window.query.strip():
                # the question matches itself: not evidence (it is in the context anyway,
                # and its neighbours keep the boost of sitting next to it), but the scale
                # of a perfect match, so a weak best match stays weak
                self_match, scores[own] = float(scores[own]), 0.0
            scores = self._speaker_prior(scores, window.query)
            top = max(float(scores.max()), self_match)
        scores = scores / top if top > 0 and math.isfinite(top) else np.zeros(n)
        self._cache = (key, scores)
        return scores

    def _speaker_prior(self, scores: np.ndarray, query: str) -> np.ndarray:
        """Down-weight the segments of speakers the query does not name (``speaker_weight``)."""
        w = self.options.speaker_weight
        ids = self._index.speaker_ids
        if w <= 0 or len(ids) < 2:
            return scores
        named = [label for name, label in ids.items() if _names(name).search(query)]
        if not named or len(named) == len(ids):
            return scores
        speakers = self._index.speakers.view()[: len(scores)]
        return np.where(np.isin(speakers, named), scores, scores * (1.0 - w))

    def _needs_recall(self, window: Window, context: Iterable[int]) -> bool:
        """Whether the current query needs a new recall block (``recall_gate``).

        True when one of the query's ``recall_gate`` best history matches is not among
        the ``context`` positions; False when nothing in the history matches at all.
        """
        scores = self._history_scores(window)
        top = self._ranked(scores, frozenset(), self.options.recall_gate or 1)
        if not top:
            return False
        if self.options.recall_gate is None:
            return True
        ctx = set(context)
        return any(p not in ctx for p in top)

    def _ranked(self, scores: np.ndarray, exclude: AbstractSet[int], limit: int) -> list[int]:
        """Positions with a positive score, best first, skipping ``exclude``: O(n) + top-k."""
        k = min(len(scores), limit + len(exclude))
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        positive: list[int] = top[scores[top] > 0].tolist()
        return [p for p in positive if p not in exclude][:limit]

    # ------------------------------------------------------------------ hooks
    @hookimpl
    def ctxmgr_recall(
        self, window: Window, history: Sequence[Segment], candidates: AbstractSet[int]
    ) -> Iterable[int] | None:
        """Inline placement: on a new query, return the archived segments most relevant to it.

        Takes the best-scoring segments not already candidates, up to the target token
        budget (at most ``max_recall``); the eviction step then ranks them with the rest.
        """
        if self.options.placement != "inline" or not self.options.rerank_on_new_query:
            return None
        query = window.query.strip()
        # per conversation, so it is saved with the session (stores, clones, rollbacks)
        data = window.state.extra.setdefault(self.name, {})
        if not query or query == data.get("recalled_for"):
            return None
        data["recalled_for"] = query
        scores = self._history_scores(window)
        budget = window.budget.target_tokens
        out: list[int] = []
        for pos in self._ranked(scores, candidates, self.options.max_recall):
            if budget <= 0:
                break
            out.append(pos)
            budget -= history[pos].tokens
        return out

    @hookimpl
    def ctxmgr_recall_block(
        self, window: Window, selected: Sequence[int], room: int
    ) -> Sequence[int] | None:
        """Block placement: the segments recalled for the current query, in block order.

        The same block is returned while the query stays the same and it still fits in
        ``room`` (so a tool loop keeps the prompt cache). A new query replaces it, unless
        ``recall_gate`` finds the context already covers the query: then the earlier block
        stays before the user message it was recalled for (or there is none).
        """
        if self.options.placement != "block":
            return None
        window.scratch["recall_block_position"] = self.options.block_position
        query = window.query.strip()
        if not query or room <= 0 or not window.history:
            return []
        taken = set(selected)
        # per conversation, in the session state: any worker continues the same block
        data = window.state.extra.setdefault(self.name, {})
        block = data.get("block")
        fire = True  # without a gate every new query recalls a new block
        if block is not None and block[0] != query and self.options.recall_gate is not None:
            gate = data.get("gate")  # decided when the question arrived (_make_room)
            if gate is not None and gate[0] == query:
                fire = bool(gate[1])
            else:
                fire = self._needs_recall(window, [*selected, *block[1]])
        if block is not None and (block[0] == query or not fire):
            kept = self._keep(window, block[1], taken, room)
            if kept is not None and (kept or block[0] == query):
                if len(block) > 2:
                    window.scratch["recall_block_anchor"] = block[2]
                data["block"] = [query, kept, *block[2:]]
                return kept
            # an earlier block with nothing left to keep removes nothing when replaced: a
            # new question then recalls into the free room even when the gate holds (the
            # block goes before it, so the context still only grows)
            fire = fire or kept == []
        if not fire:
            data.pop("block", None)
            return []
        headroom = int(self.options.block_headroom * window.budget.effective_limit)
        picked = self._choose(window, taken, room - headroom)
        anchor = self._index.last_user
        data["block"] = [query, picked, anchor]
        window.scratch["recall_block_anchor"] = anchor
        return picked

    def _keep(
        self, window: Window, block: Sequence[int], taken: AbstractSet[int], room: int
    ) -> list[int] | None:
        """The earlier block minus what the context now holds, or None if it must go."""
        history = window.history
        kept = [p for p in block if p < len(history) and p not in taken]
        self._index.sync(history)
        question = self._index.question.view()
        whole = all(
            history[p].role != "assistant"
            or p >= len(question)
            or question[p] < 0
            or int(question[p]) in taken
            or int(question[p]) in kept
            for p in kept
        )  # the prefix may have dropped a question since: then choose again
        if whole and sum(history[p].tokens for p in kept) <= room:
            return kept
        return None

    def _choose(self, window: Window, taken: AbstractSet[int], room: int) -> list[int]:
        """A new block of at most ``room`` tokens: best units first, then block order."""
        history = window.history
        scores = self._history_scores(window)
        question = self._index.question.view()
        units: list[list[int]] = []  # an answer comes with its question, or not at all
        chosen: set[int] = set()
        budget = room
        ranked = self._ranked(scores, taken, self.options.max_recall + 64)
        at = np.asarray(ranked, dtype=np.int64)
        known = at < len(question)
        questions = np.full(len(at), -1, dtype=np.int64)
        questions[known] = question[at[known]]
        max_recall = self.options.max_recall
        for pos, q in zip(ranked, questions.tolist()):
            if budget <= 0:
                break
            if pos in chosen:
                continue
            seg = history[pos]
            tokens = seg.tokens
            if q >= 0 and q not in taken and q not in chosen and seg.role == "assistant":
                unit = [q, pos]
                tokens += history[q].tokens
            else:
                unit = [pos]
            if tokens <= budget:
                units.append(unit)
                chosen.update(unit)
                budget -= tokens
                if len(chosen) >= max_recall:
                    break
        if self.options.block_order == "chronological":
            units.sort()
        elif self.options.block_position == "before_question":
            units.reverse()  # most relevant last, nearest the question
        return [p for unit in units for p in unit]

    @hookimpl
    def ctxmgr_wants_compaction(
        self, window: Window, new_segments: Sequence[Segment]
    ) -> str | None:
        """Ask for room (block) or a re-selection (inline) when a new user message arrives.

        Block placement with ``recall_share``: when the new query needs a recall block
        (``recall_gate``) and the context leaves the block less than ``recall_share`` of
        the effective limit, request a compaction down to ``1 - recall_share`` of it.
        """
        if self.options.placement == "block":
            self._make_room(window, new_segments)
            return None
        if not self.options.rerank_on_new_query:
            return None
        if len(window.state.archive) == 0:
            return None
        if any(s.role == "user" for s in new_segments):
            return "new query: re-rank by relevance"
        return None

    def _make_room(self, window: Window, new_segments: Sequence[Segment]) -> None:
        o = self.options
        if (o.recall_gate is None and o.recall_share is None) or not any(
            s.role == "user" for s in new_segments
        ):
            return
        query = window.query.strip()
        data = window.state.extra.setdefault(self.name, {})
        block = data.get("block")
        if not query or (block is not None and block[0] == query):
            return
        context = [*window.context, *range(window.new_start, len(window.segments))]
        fire = self._needs_recall(window, [*context, *(block[1] if block else ())])
        data["gate"] = [query, fire]
        if not fire or o.recall_share is None or "compaction_request" in window.state.extra:
            return
        limit = window.budget.effective_limit
        target = int((1.0 - o.recall_share) * limit)
        tokens = sum(window.segments[p].tokens for p in context)
        if tokens > target:
            window.state.extra["compaction_request"] = {
                "reason": f"room for the recall block of a new question ({o.recall_share:.0%})",
                "target_tokens": target,
                "target_fraction": None,
            }

    @hookimpl
    def ctxmgr_score(self, window: Window) -> Sequence[float] | None:
        """Blend history-wide relevance (looked up per candidate) with recency, in [0, 1]."""
        n = len(window.segments)
        if n == 0:
            return None
        if window.history and window.positions:
            rel = self._history_scores(window)[np.asarray(window.positions)]
        else:  # no history view (direct use): score the candidates on a throwaway index
            probe = Window(
                segments=window.segments,
                budget=window.budget,
                counter=window.counter,
                state=window.state,
                query=window.query,
                history=window.segments,
            )
            saved = (self._index, self._cache)
            self._index = HistoryIndex(self._tokenize, self._doc, self._session, self._index.vocab)
            self._cache = None
            try:
                rel = self._history_scores(probe)
            finally:
                self._index, self._cache = saved
        rw = self.options.recency_weight
        recency = np.arange(n, dtype=float) / max(1, n - 1)
        return list((1 - rw) * rel + rw * recency)


@hookimpl
def ctxmgr_register_strategies(register: Callable[[type[Any]], None]) -> None:
    """Register :class:`RelevanceEviction`."""
    register(RelevanceEviction)
