"""Incremental history index: BM25 postings and embedding vectors grown in chunks.

One :class:`HistoryIndex` holds, for every committed segment of a conversation (oldest
first), what relevance scoring needs and nothing more:

* an inverted index of term ids: the open chunk as flat ``array`` buffers (document,
  term, term frequency), each full chunk of :data:`CHUNK` documents sealed into
  term-sorted numpy arrays (a compressed sparse column layout over the chunk's own
  terms), so a query reads only the postings of its own terms (BM25 in
  O(matching postings), not O(history));
* the document frequency of every term and the length (in index terms) of every
  document, in growable numpy arrays;
* a session label per document (for neighbour smoothing) and a speaker label (the
  ``name`` of the segment's first message; for the speaker prior of a question that names
  a participant);
* optionally one unit-normalized embedding vector per document, stored in chunks of
  :data:`CHUNK` rows as int16 with one float32 scale per row (see :func:`quantize`), so a
  question costs one matrix-vector product per chunk and the vectors take half the bytes
  of float32.

Memory (issue #8, 100,000-message agent history): a sealed chunk keeps its document
numbers as uint16 offsets from its first document and its term frequencies as uint16
(float32 only if a count exceeds 65,535), 4 bytes per posting instead of 8; the last
question's kept postings hold uint8 query-term slots and uint16 tf and document lengths
(same rule; widened exactly to float64 when scored), 9 bytes per posting instead of 24.

Nothing is recomputed: a segment is tokenized and embedded once, when it is added. The
index follows the manager's history by segment identity: a history that extends the
indexed one costs O(new segments); a shorter or divergent one (a rolled-back fit, a reset)
truncates back to the common prefix first. :meth:`fork` gives a clone that shares the
sealed chunks (immutable) and copies the small mutable parts, for what-if fits on
:meth:`~ctxmgr.manager.ContextManager.clone`.

BM25 is the Lucene variant as in ``bm25s`` (Lù, "BM25S: Orders of magnitude faster
lexical search via eager sparse scoring", 2024): idf = ln(1 + (N - df + 0.5) / (df + 0.5)),
term score = idf * tf / (tf + k1 * (1 - b + b * dl / avgdl)).
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import chain
from typing import Any, NamedTuple

import numpy as np

from ctxmgr.segments import Segment

__all__ = ["CHUNK", "HistoryIndex", "TermCounts", "quantize"]

CHUNK = 4096
"""Documents per sealed postings chunk and rows per embedding chunk."""


class TermCounts(NamedTuple):
    """A document's distinct terms in order of first occurrence, with their counts.

    What a tokenizer may return for a document instead of its term list (a store's
    feature row): the index reads only term counts and first occurrences, so both build
    the same index.
    """

    terms: list[str]
    counts: list[int]


class _Grow:
    """A 1-d numpy array with amortized O(1) append (capacity doubling)."""

    __slots__ = ("data", "n")

    def __init__(self, dtype: Any, capacity: int = 1024) -> None:
        self.data = np.zeros(capacity, dtype=dtype)
        self.n = 0

    def reserve(self, n: int) -> None:
        if n > len(self.data):
            bigger = np.zeros(max(n, 2 * len(self.data)), dtype=self.data.dtype)
            bigger[: self.n] = self.data[: self.n]
            self.data = bigger

    def extend(self, values: Sequence[float] | np.ndarray) -> None:
        k = len(values)
        self.reserve(self.n + k)
        self.data[self.n : self.n + k] = values
        self.n += k

    def view(self) -> np.ndarray:
        return self.data[: self.n]

    def copy(self) -> _Grow:
        out = _Grow(self.data.dtype, 1)
        out.data = self.data.copy()
        out.n = self.n
        return out


def _narrow_tf(tf: np.ndarray) -> np.ndarray:
    """``tf`` (counts) as uint16 when every value is a count below 65,536, else float32."""
    tf = np.asarray(tf, dtype=np.float32)
    small = tf.astype(np.uint16)
    return small if np.array_equal(small, tf) else tf


def _slot_dtype(n_terms: int) -> Any:
    """The smallest unsigned dtype that numbers ``n_terms`` query-term slots."""
    return np.uint8 if n_terms <= 256 else np.uint16 if n_terms <= 65536 else np.int32


class _Sealed:
    """Postings of one full chunk, sorted by term: ``terms[i]`` owns ``lo[i]:lo[i+1]``.

    ``docs`` holds each posting's document as an offset from ``base`` (uint16 while the
    chunk spans fewer than 65,536 documents, as :data:`CHUNK` does), ``tf`` the term
    frequency as :func:`_narrow_tf` gives it: 4 bytes per posting where int32 documents
    and float32 frequencies took 8.
    """

    __slots__ = ("base", "docs", "lo", "terms", "tf")

    def __init__(self, docs: np.ndarray, terms: np.ndarray, tf: np.ndarray) -> None:
        order = np.argsort(terms, kind="stable")
        t = terms[order]
        self.terms, first = np.unique(t, return_index=True)
        self.lo = np.append(first, len(t)).astype(np.int32)
        self.base = int(docs.min()) if len(docs) else 0
        local = docs[order].astype(np.int64) - self.base
        narrow = len(local) == 0 or int(local.max()) <= np.iinfo(np.uint16).max
        self.docs = local.astype(np.uint16 if narrow else np.int32)
        self.tf = _narrow_tf(tf[order])

    def doc_ids(self, part: np.ndarray) -> np.ndarray:
        """Global document numbers (int32) of the offsets ``part`` of :attr:`docs`."""
        out = part.astype(np.int32)
        out += self.base
        return out

    def postings(self, term_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query-term slot, doc, tf) of every posting of ``term_ids`` in this chunk.

        Slots as :func:`_slot_dtype` of ``len(term_ids)``, documents int32, tf as stored.
        """
        slot_dtype = _slot_dtype(len(term_ids))
        pos = np.searchsorted(self.terms, term_ids)
        pos = np.minimum(pos, max(0, len(self.terms) - 1))
        hit = (len(self.terms) > 0) & (self.terms[pos] == term_ids)
        slots, docs, tfs = [], [], []
        for slot in np.flatnonzero(hit):
            a, b = self.lo[pos[slot]], self.lo[pos[slot] + 1]
            slots.append(np.full(b - a, slot, dtype=slot_dtype))
            docs.append(self.docs[a:b])
            tfs.append(self.tf[a:b])
        if not docs:
            return np.zeros(0, slot_dtype), np.zeros(0, np.int32), np.zeros(0, np.uint16)
        return np.concatenate(slots), self.doc_ids(np.concatenate(docs)), np.concatenate(tfs)

    def coo(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(doc, term, tf) of every posting, in doc order (int32, int32, float32)."""
        terms = np.repeat(self.terms, np.diff(self.lo))
        order = np.argsort(self.docs, kind="stable")
        return self.doc_ids(self.docs[order]), terms[order], self.tf[order].astype(np.float32)


class HistoryIndex:
    """BM25 postings, lengths, session labels and embeddings of a segment history.

    Args:
        tokenize: ``tokenize(texts)``: one term list (or :class:`TermCounts`) per text.
        document: the text indexed for a segment.
        session: the session label of a segment (hashable).
        vocab: a term -> id map shared with forks (ids are never reassigned).
    """

    def __init__(
        self,
        tokenize: Callable[[list[str]], Sequence[list[str] | TermCounts]],
        document: Callable[[Segment], str],
        session: Callable[[Segment], Any],
        vocab: dict[str, int] | None = None,
    ) -> None:
        self._tokenize = tokenize
        self._document = document
        self._session = session
        self.vocab: dict[str, int] = vocab if vocab is not None else {}
        self._labels_map: dict[Any, int] = {}
        self.speaker_ids: dict[str, int] = {}  # speaker name -> label (-1: no name)
        self.segments: list[Segment] = []
        self._sealed: list[_Sealed] = []
        self._open_docs = array("i")
        self._open_terms = array("i")
        self._open_tf = array("f")
        self.df = _Grow(np.int32)
        self.lengths = _Grow(np.float32)
        self.labels = _Grow(np.int32)
        self.speakers = _Grow(np.int32)
        self.question = _Grow(np.int32)  # position of the latest user segment before, or -1
        self._last_user = -1
        self.total_length = 0.0
        # quantized rows (int16) and their scales (float32), see quantize
        self._vec_chunks: list[tuple[np.ndarray, np.ndarray]] = []
        self._vec_open = np.zeros((0, 0), dtype=np.int16)  # CHUNK rows once dim is known
        self._scale_open = np.zeros(0, dtype=np.float32)
        self._vec_n = 0  # rows of _vec_open in use
        self.dim = 0
        # per-query memos (a tool loop asks the same question at every fit): see bm25/cosine
        self._bm25_memo: tuple[Any, ...] | None = None
        self._cos_memo: tuple[Any, ...] | None = None

    # ------------------------------------------------------------------ maintenance
    def __len__(self) -> int:
        return len(self.segments)

    @property
    def last_user(self) -> int:
        """Position of the latest indexed user segment, or -1."""
        return self._last_user

    def fork(self) -> HistoryIndex:
        """Return an independent index with the same content (sealed chunks shared)."""
        other = HistoryIndex(self._tokenize, self._document, self._session, self.vocab)
        other._labels_map = dict(self._labels_map)
        other.speaker_ids = dict(self.speaker_ids)
        other.segments = list(self.segments)
        other._sealed = list(self._sealed)
        other._open_docs = array("i", self._open_docs)
        other._open_terms = array("i", self._open_terms)
        other._open_tf = array("f", self._open_tf)
        other.df = self.df.copy()
        other.lengths = self.lengths.copy()
        other.labels = self.labels.copy()
        other.speakers = self.speakers.copy()
        other.question = self.question.copy()
        other._last_user = self._last_user
        other.total_length = self.total_length
        other._vec_chunks = list(self._vec_chunks)
        other._vec_open = self._vec_open.copy()
        other._scale_open = self._scale_open.copy()
        other._vec_n = self._vec_n
        other.dim = self.dim
        return other

    def sync(self, history: Sequence[Segment]) -> list[int]:
        """Follow ``history`` (oldest first, not mutated); return the positions added.

        O(new segments) when ``history`` extends what is indexed (checked by identity of
        the last indexed segment); otherwise the index is first cut back to the longest
        common prefix.
        """
        n = len(self.segments)
        if n and (len(history) < n or history[n - 1] is not self.segments[-1]):
            k = min(n, len(history))
            while k and history[k - 1] is not self.segments[k - 1]:
                k -= 1
            self.truncate(k)
            n = k
        if len(history) > n:
            self.add(history[n:])
        return list(range(n, len(history)))

    def add(self, segments: Sequence[Segment]) -> None:
        """Index ``segments`` (appended after the documents already indexed).

        Vectorized: one pass over the terms in C (new terms get ids in order of first
        occurrence, as a term-by-term loop would give them) and numpy for the per-document
        term frequencies, so a cold worker indexes thousands of segments in milliseconds.
        """
        if not segments:
            return
        base = len(self.segments)
        token_lists = self._tokenize([self._document(s) for s in segments])
        if any(isinstance(t, TermCounts) for t in token_lists):
            docs, terms, tf, sizes = self._counted(base, token_lists)
        else:
            docs, terms, tf, sizes = self._terms(base, token_lists)  # type: ignore[arg-type]
        if len(terms):
            width = int(terms.max()) + 1
            if width > self.df.n:
                self.df.reserve(width)
                self.df.n = width
            self.df.data[:width] += np.bincount(terms, minlength=width).astype(np.int32)
        lengths = [float(n) for n in sizes.tolist()]
        labels: list[int] = []
        speakers: list[int] = []
        questions: list[int] = []
        for offset, seg in enumerate(segments):
            label = self._session(seg)
            labels.append(self._labels_map.setdefault(label, len(self._labels_map)))
            name = seg.head.name if seg.role != "tool" else None  # a tool's name is no speaker
            speakers.append(
                self.speaker_ids.setdefault(name, len(self.speaker_ids)) if name else -1
            )
            questions.append(self._last_user)
            if seg.role == "user":
                self._last_user = base + offset
        # postings go to the open chunk, which is sealed at every CHUNK documents
        end = base + len(segments)
        lo = base
        while lo < end:
            hi = min(end, (lo // CHUNK + 1) * CHUNK)
            a, b = np.searchsorted(docs, [lo, hi])
            self._open_docs.frombytes(docs[a:b].astype(np.int32).tobytes())
            self._open_terms.frombytes(terms[a:b].astype(np.int32).tobytes())
            self._open_tf.frombytes(tf[a:b].astype(np.float32).tobytes())
            self.segments.extend(segments[lo - base : hi - base])
            if hi % CHUNK == 0:
                self._seal()
            lo = hi
        self.lengths.extend(lengths)
        self.labels.extend(labels)
        self.speakers.extend(speakers)
        self.question.extend(questions)
        self.total_length += sum(lengths)

    def _new_terms(self, flat: list[str]) -> np.ndarray:
        """Ids of ``flat``; new terms get the next ids in order of first occurrence."""
        vocab = self.vocab
        for term in dict.fromkeys(flat):  # deduplicated in C, first-occurrence order
            if term not in vocab:
                vocab[term] = len(vocab)
        return np.fromiter(map(vocab.__getitem__, flat), dtype=np.int64, count=len(flat))

    def _terms(
        self, base: int, token_lists: Sequence[list[str]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(doc, term id, tf) of every posting, and each document's length, from terms."""
        flat = list(chain.from_iterable(token_lists))
        sizes = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(token_lists))
        if not flat:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty, sizes
        ids = self._new_terms(flat)
        width = int(ids.max()) + 1
        # one posting per (document, term), in order of first occurrence in the document
        keys = np.repeat(np.arange(len(token_lists), dtype=np.int64), sizes) * width + ids
        uniq, first, tf = np.unique(keys, return_index=True, return_counts=True)
        order = np.argsort(first, kind="stable")
        return uniq[order] // width + base, uniq[order] % width, tf[order], sizes

    def _counted(
        self, base: int, token_lists: Sequence[list[str] | TermCounts]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_terms` when some documents come as :class:`TermCounts`."""
        counted = [t if isinstance(t, TermCounts) else _count(t) for t in token_lists]
        flat = [t for c in counted for t in c.terms]
        n = len(counted)
        distinct = np.fromiter((len(c.terms) for c in counted), dtype=np.int64, count=n)
        tf = np.fromiter(
            chain.from_iterable(c.counts for c in counted), dtype=np.int64, count=len(flat)
        )
        sizes = np.fromiter((sum(c.counts) for c in counted), dtype=np.int64, count=n)
        docs = np.repeat(np.arange(base, base + n, dtype=np.int64), distinct)
        return docs, self._new_terms(flat), tf, sizes

    def _seal(self) -> None:
        docs = np.frombuffer(self._open_docs, dtype=np.int32).copy()
        terms = np.frombuffer(self._open_terms, dtype=np.int32).copy()
        tf = np.frombuffer(self._open_tf, dtype=np.float32).copy()
        self._sealed.append(_Sealed(docs, terms, tf))
        self._open_docs, self._open_terms, self._open_tf = array("i"), array("i"), array("f")

    def truncate(self, k: int) -> None:
        """Keep the first ``k`` documents only."""
        if k >= len(self.segments):
            return
        keep_chunks = k // CHUNK
        parts = [c.coo() for c in self._sealed[keep_chunks:]]
        parts.append(
            (
                np.frombuffer(self._open_docs, dtype=np.int32),
                np.frombuffer(self._open_terms, dtype=np.int32),
                np.frombuffer(self._open_tf, dtype=np.float32),
            )
        )
        docs = np.concatenate([p[0] for p in parts])
        terms = np.concatenate([p[1] for p in parts])
        tf = np.concatenate([p[2] for p in parts])
        gone = docs >= k
        np.subtract.at(self.df.data, terms[gone], 1)
        self._sealed = self._sealed[:keep_chunks]
        self._open_docs = array("i", docs[~gone].tolist())
        self._open_terms = array("i", terms[~gone].tolist())
        self._open_tf = array("f", tf[~gone].tolist())
        self.total_length -= float(self.lengths.view()[k:].sum())
        self.lengths.n = k
        self.labels.n = k
        self.speakers.n = k
        self.question.n = k
        if k == 0:
            self._last_user = -1
        else:
            self._last_user = (
                k - 1 if self.segments[k - 1].role == "user" else int(self.question.data[k - 1])
            )
        del self.segments[k:]
        if self.embedded > k:
            rows, scales = self._quantized()
            self.drop_vectors()
            self._add_quantized(rows[:k], scales[:k])

    # ------------------------------------------------------------------ embeddings
    @property
    def embedded(self) -> int:
        """Number of documents with a vector (always a prefix of the history)."""
        return len(self._vec_chunks) * CHUNK + self._vec_n

    def add_vectors(self, vectors: np.ndarray) -> None:
        """Append unit-normalized vectors for the next documents (rows, oldest first).

        Each row is stored quantized (:func:`quantize`); ``vectors`` is not mutated.
        """
        rows, scales = quantize(vectors)
        self._add_quantized(rows, scales)

    def _add_quantized(self, rows: np.ndarray, scales: np.ndarray) -> None:
        if not len(rows):
            return
        if self._vec_open.shape[1] != rows.shape[1]:
            self._cos_memo = None
            self.dim = rows.shape[1]
            self._vec_open = np.zeros((CHUNK, self.dim), dtype=np.int16)
            self._scale_open = np.zeros(CHUNK, dtype=np.float32)
            self._vec_n = 0
        while len(rows):
            take = min(len(rows), CHUNK - self._vec_n)
            self._vec_open[self._vec_n : self._vec_n + take] = rows[:take]
            self._scale_open[self._vec_n : self._vec_n + take] = scales[:take]
            self._vec_n += take
            rows, scales = rows[take:], scales[take:]
            if self._vec_n == CHUNK:
                self._vec_chunks.append((self._vec_open, self._scale_open))
                self._vec_open = np.zeros((CHUNK, self.dim), dtype=np.int16)
                self._scale_open = np.zeros(CHUNK, dtype=np.float32)
                self._vec_n = 0

    def drop_vectors(self) -> None:
        """Forget every vector (the embedder failed: scoring falls back to BM25)."""
        self._cos_memo = None
        self._vec_chunks, self._vec_n, self.dim = [], 0, 0
        self._vec_open = np.zeros((0, 0), dtype=np.int16)
        self._scale_open = np.zeros(0, dtype=np.float32)

    def _vec_parts(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(int16 rows, float32 scales) per chunk, the open chunk's used rows last."""
        return [*self._vec_chunks, (self._vec_open[: self._vec_n], self._scale_open[: self._vec_n])]

    def _quantized(self) -> tuple[np.ndarray, np.ndarray]:
        """(int16 rows, float32 scales) of every stored vector, oldest first."""
        chunks = self._vec_parts()
        return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])

    def vectors(self) -> np.ndarray | None:
        """All vectors as one float32 (documents x dim) matrix, or ``None`` when there are none.

        The stored (quantized) vectors: each within half a quantization step of the row
        given to :meth:`add_vectors` (see :func:`quantize`).
        """
        if not self.embedded:
            return None
        rows, scales = self._quantized()
        return rows.astype(np.float32) * scales[:, np.newaxis]

    def cosine(self, query: np.ndarray) -> np.ndarray:
        """Cosine of a unit query vector with every (quantized) document vector, in order.

        Per chunk: the int16 rows widened to float32, one float32 matrix-vector product,
        times each row's scale. The result for the last query is kept: asked again with
        more documents (a tool loop keeps its question), only the new rows are multiplied.
        Each row's product is independent of the others, so the values are the same to the
        bit.
        """
        q = np.asarray(query, dtype=np.float32)
        key = q.tobytes()
        memo = self._cos_memo
        done = memo[1] if memo is not None and memo[0] == key else 0
        n = self.embedded
        if done > n:
            done = 0
        # einsum, not BLAS: a matrix-vector product is memory-bound, and a threaded BLAS
        # spins its idle threads (twice the CPU for nothing on a busy machine)
        parts = [memo[2]] if done and memo is not None else []
        chunks = self._vec_parts()
        for c, (chunk, scale) in enumerate(chunks):
            lo = c * CHUNK
            if lo + len(chunk) > done and len(chunk):
                first = max(0, done - lo)
                # the int16 rows cast to float32 inside einsum's buffered loop: the same
                # products and sums as einsum over a float32 copy, without the copy
                dots = np.einsum("ij,j->i", chunk[first:], q, dtype=np.float32, casting="unsafe")
                dots *= scale[first:]
                parts.append(dots.astype(np.float64))
        out = np.concatenate(parts) if parts else np.zeros(0)
        self._cos_memo = (key, n, out)
        return out

    # ------------------------------------------------------------------ scoring
    def bm25(self, terms: Sequence[str], k1: float, b: float) -> np.ndarray:
        """BM25 (Lucene variant) of every document for the query ``terms``.

        Reads only the postings of the query's terms: O(matching postings) plus one
        O(documents) allocation for the dense result. The postings of the last query are
        kept (see :meth:`_query_postings`), so asking it again costs the arithmetic over
        its postings, not the search.
        """
        n = len(self.segments)
        scores = np.zeros(n)
        ids = sorted({self.vocab[t] for t in terms if t in self.vocab})
        if not n or not ids:
            return scores
        q = np.asarray(ids, dtype=np.int32)
        df_all = self.df.view()
        df = np.where(q < len(df_all), df_all[np.minimum(q, len(df_all) - 1)], 0)
        idf = np.log1p((n - df + 0.5) / (df + 0.5))
        avgdl = self.total_length / n or 1.0
        for slot, doc, tf, dl in self._query_postings(q):
            if len(doc):
                # idf * tf / (tf + k1 * (1 - b + b * dl / avgdl)), the same IEEE operations
                # on the same operands (in place: + and * commute exactly; tf and dl, uint16
                # or float32, widen to float64 exactly)
                den = np.multiply(dl, b, dtype=np.float64)
                den /= avgdl
                den += 1 - b
                den *= k1
                den += tf
                vals = idf[slot]
                vals *= tf
                vals /= den
                # a document's postings are all in one part: adding the parts adds 0.0
                scores += np.bincount(doc, weights=vals, minlength=n)
        return scores

    def _query_postings(
        self, q: np.ndarray
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """(query-term slot, doc, tf, dl) of every posting of the sorted term ids ``q``.

        Slots as :func:`_slot_dtype`, documents int32, tf and dl (the document's length in
        terms) uint16, or float32 once a value does not fit (:func:`_narrow_tf`). Two
        parts: the sealed chunks (in chunk order, each chunk's postings by term), then the
        open chunk (in (doc, term) order). Both are kept for the last query: asked
        again (a tool loop keeps its question), only chunks sealed since and postings
        added since are read.
        """
        key = q.tobytes()
        memo = self._bm25_memo
        slot_dtype = _slot_dtype(len(q))
        if memo is None or memo[0] != key:
            empty = self._empty_part(slot_dtype)
            memo = (key, [], empty, None, 0, empty)
        _, chunks, sealed, open_terms, scanned, opened = memo
        sealed_now = self._sealed
        k = 0
        while k < len(chunks) and k < len(sealed_now) and chunks[k] is sealed_now[k]:
            k += 1
        if k < len(chunks) or k < len(sealed_now):
            if k < len(chunks):  # cut back (a truncated index): read the kept chunks again
                chunks, sealed, k = [], self._empty_part(slot_dtype), 0
            new = [chunk.postings(q) for chunk in sealed_now[k:]]
            chunks = [*chunks, *sealed_now[k:]]
            sealed = self._join(sealed, new)
        if open_terms is not self._open_terms or scanned > len(self._open_terms):
            open_terms, scanned, opened = self._open_terms, 0, self._empty_part(slot_dtype)
        if scanned < len(self._open_terms):
            terms_open = np.frombuffer(self._open_terms, dtype=np.int32)
            # np.isin(terms, q) and each hit's query-term slot (its index in the sorted
            # q) by one lookup table over the term ids (every id, indexed or asked, comes
            # from the vocabulary): no sort, no binary search
            slot_of = np.full(max(len(self.vocab), int(q[-1]) + 1), -1, dtype=np.int32)
            slot_of[q] = np.arange(len(q), dtype=np.int32)
            slots = slot_of[terms_open[scanned:]]
            hits = np.flatnonzero(slots >= 0)
            new_open = (
                slots[hits].astype(slot_dtype),
                np.frombuffer(self._open_docs, dtype=np.int32)[hits + scanned],
                _narrow_tf(np.frombuffer(self._open_tf, dtype=np.float32)[hits + scanned]),
            )
            scanned = len(terms_open)
            del terms_open
            opened = self._join(opened, [new_open])
        self._bm25_memo = (key, chunks, sealed, open_terms, scanned, opened)
        return [sealed, opened]

    @staticmethod
    def _empty_part(slot_dtype: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        counts = np.zeros(0, dtype=np.uint16)
        return np.zeros(0, dtype=slot_dtype), np.zeros(0, dtype=np.int32), counts, counts

    def _join(
        self,
        part: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        new: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``part`` followed by the (slot, doc, tf) postings ``new``, with each one's dl."""
        if not new:
            return part
        slot = np.concatenate([part[0], *(x[0] for x in new)])
        doc = np.concatenate([part[1], *(x[1] for x in new)])
        tf = np.concatenate([part[2], *(x[2] for x in new)])
        dl = _narrow_tf(self.lengths.view()[doc[len(part[1]) :]])  # the new postings' docs
        return slot, doc, tf, np.concatenate([part[3], dl])

    def smooth(self, scores: np.ndarray, weight: float, span: int, decay: float) -> np.ndarray:
        """Add ``weight * decay**(d-1)`` x the score of each same-session neighbour at d.

        Answers in a dialogue sit next to the turn that matches the question. O(history x
        span) numpy work.
        """
        if weight <= 0 or span <= 0 or len(scores) < 2:
            return scores
        labels = self.labels.view()[: len(scores)]
        out = scores.copy()
        for d in range(1, span + 1):
            w = weight * decay ** (d - 1)
            same = labels[d:] == labels[:-d]
            out[:-d] += w * np.where(same, scores[d:], 0.0)
            out[d:] += w * np.where(same, scores[:-d], 0.0)
        return out


def quantize(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``vectors`` as int16 and one float32 scale each: row ~= int16 row x scale.

    The scale is the row's largest magnitude / 32,767, so each component is within half a
    step (max|x| / 65,534; about 5e-6 for a unit 128-dimension embedding) of the float32
    value, and a cosine within ``||q||_1`` times that. Zero (and non-finite) components
    stay zero. Halves the bytes of float32 rows; numpy's float16 would too, but widening
    float16 back to float32 costs ~7x more CPU than int16 on the question path.

    Args:
        vectors: (rows x dim) array-like of floats; not mutated.

    Returns:
        (int16 rows x dim, float32 rows).
    """
    rows = np.nan_to_num(np.asarray(vectors, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if rows.ndim != 2:
        raise ValueError(f"expected a 2-d array of vectors, got shape {rows.shape}")
    top = np.abs(rows).max(axis=1) if rows.shape[1] else np.zeros(len(rows), dtype=np.float32)
    scales = (top / np.float32(32767)).astype(np.float32)
    safe = np.where(scales > 0, scales, np.float32(1))
    ints = np.rint(rows / safe[:, np.newaxis])
    np.clip(ints, -32767, 32767, out=ints)
    return ints.astype(np.int16), scales


def _count(terms: Sequence[str]) -> TermCounts:
    counts = Counter(terms)  # first-occurrence order
    return TermCounts(list(counts), list(counts.values()))


def zscore(x: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` (zeros when ``x`` is constant)."""
    if not len(x):
        return x
    std = float(x.std())
    return (x - float(x.mean())) / std if std > 0 and math.isfinite(std) else np.zeros(len(x))
