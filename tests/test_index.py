"""ctxmgr.index: incremental BM25 postings and vectors against bm25s and a full rebuild."""

from __future__ import annotations

import bm25s
import numpy as np
import pytest
from ctxmgr.strategies.relevance import RelevanceEviction

from ctxmgr import index as index_mod
from ctxmgr.index import HistoryIndex, TermCounts
from ctxmgr.messages import Message
from ctxmgr.segments import Segment

DOCS = [
    "the cat sat on the mat",
    "dogs chase cats in the park every morning",
    "a bird sings",
    "cat cat cat food for the hungry cat",
    "Caroline went to the LGBTQ support group yesterday",
    "the park was full of birds and a hungry dog",
    "support for the group came from Caroline's mother",
]


def _segments(texts: list[str]) -> list[Segment]:
    return [
        Segment((Message.user(t, metadata={"session": i // 3}),), i, 10)
        for i, t in enumerate(texts)
    ]


def _index(strategy: RelevanceEviction) -> HistoryIndex:
    return HistoryIndex(strategy._tokenize, strategy._doc, strategy._session)


@pytest.mark.parametrize("chunk", [2, 3, 4096])
@pytest.mark.parametrize(("k1", "b"), [(1.5, 0.75), (1.2, 0.3), (2.0, 1.0)])
@pytest.mark.parametrize("query", ["cat food", "support group", "bird morning park"])
def test_bm25_equals_bm25s_lucene(
    monkeypatch: pytest.MonkeyPatch, chunk: int, k1: float, b: float, query: str
) -> None:
    """Postings (sealed chunks and the open one) give bm25s.BM25(method="lucene") scores."""
    monkeypatch.setattr(index_mod, "CHUNK", chunk)
    strategy = RelevanceEviction(RelevanceEviction.Options(k1=k1, b=b, semantic=False))
    idx = _index(strategy)
    segs = _segments(DOCS)
    idx.add(segs[:3])
    idx.add(segs[3:])
    terms = strategy._tokenize([query])[0]
    ours = idx.bm25(terms, k1, b)
    retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
    retriever.index(strategy._tokenize(DOCS), show_progress=False)
    known = sorted({t for t in terms if t in retriever.vocab_dict})
    expected = retriever.get_scores(known)
    assert ours == pytest.approx(expected, rel=1e-5)
    assert ours.max() > 0


@pytest.mark.parametrize("chunk", [2, 4096])
def test_truncate_and_fork_match_a_fresh_build(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """A divergent history cuts back to the common prefix; a fork does not touch its parent."""
    monkeypatch.setattr(index_mod, "CHUNK", chunk)
    strategy = RelevanceEviction(RelevanceEviction.Options(semantic=False))
    segs = _segments(DOCS)
    idx = _index(strategy)
    assert idx.sync(segs) == list(range(len(DOCS)))
    idx.add_vectors(np.eye(len(DOCS), 8, dtype=np.float32))
    other = _segments(["hungry birds in the park", "a cat"])
    fork = idx.fork()
    fork.sync([*segs[:3], *other])  # diverges after three segments
    fresh = _index(strategy)
    fresh.sync([*segs[:3], *other])
    for terms in (["cat"], ["park", "bird"], ["support"]):
        assert fork.bm25(terms, 1.5, 0.75) == pytest.approx(fresh.bm25(terms, 1.5, 0.75))
    assert fork.embedded == 3
    assert idx.embedded == len(DOCS)
    assert len(idx) == len(DOCS)
    parent = _index(strategy)
    parent.sync(segs)
    assert idx.bm25(["cat"], 1.5, 0.75) == pytest.approx(parent.bm25(["cat"], 1.5, 0.75))


def test_smoothing_stays_inside_a_session() -> None:
    """A neighbour in another session adds nothing; one in the same session adds weight x score."""
    strategy = RelevanceEviction(RelevanceEviction.Options(semantic=False))
    idx = _index(strategy)
    idx.sync(_segments(DOCS))  # sessions 0,0,0,1,1,1,2
    scores = np.zeros(len(DOCS))
    scores[2] = 1.0
    out = idx.smooth(scores, 0.5, 1, 1.0)
    assert out.tolist() == [0.0, 0.5, 1.0, 0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("chunk", [2, 3, 4096])
def test_a_repeated_query_reads_only_what_is_new_and_scores_the_same(
    monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """The last query's postings and cosines are reused as the history grows (a tool loop).

    Bit-identical to a fresh index at every step: across sealed chunks, a cut-back
    (rolled-back fit), a query switch and back, and a dimension change of the vectors.
    """
    monkeypatch.setattr(index_mod, "CHUNK", chunk)
    strategy = RelevanceEviction(RelevanceEviction.Options(semantic=False))
    rng = np.random.default_rng(3)
    texts = DOCS * 3
    segs = _segments(texts)
    vectors = rng.standard_normal((len(texts), 8)).astype(np.float32)
    idx = _index(strategy)
    query, other = strategy._tokenize(["cat park hungry", "support group"])
    qvec = rng.standard_normal(8).astype(np.float32)
    steps = [*range(1, len(texts) + 1), 5, 9, len(texts)]  # grows, cuts back, grows again
    for step, n in enumerate(steps):
        idx.sync(segs[:n])
        if idx.embedded < n:
            idx.add_vectors(vectors[idx.embedded : n])
        fresh = _index(strategy)
        fresh.sync(segs[:n])
        fresh.add_vectors(vectors[:n])
        terms = other if step == 7 else query
        assert np.array_equal(idx.bm25(terms, 1.5, 0.75), fresh.bm25(terms, 1.5, 0.75))
        assert np.array_equal(idx.cosine(qvec), fresh.cosine(qvec))
    ids = np.asarray(sorted({idx.vocab[t] for t in query}), dtype=np.int32)
    assert idx._bm25_memo is not None and idx._bm25_memo[0] == ids.tobytes()
    idx.drop_vectors()
    idx.add_vectors(rng.standard_normal((len(texts), 4)).astype(np.float32))
    assert idx.cosine(np.ones(4, dtype=np.float32)).shape == (len(texts),)


def test_quantized_vectors_stay_within_half_a_step() -> None:
    """int16 rows x float32 scale give each component within max|x| / 65,534 of the input.

    Unit rows (what the relevance strategy stores), a non-unit row, an all-zero row and a
    row with non-finite values (stored as zeros); the index's cosines stay within
    ``||q||_1`` x that step of the float32 products, and ``vectors()`` returns the stored rows.
    """
    rng = np.random.default_rng(7)
    rows = rng.standard_normal((40, 128)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    rows[3] *= 9.5  # not unit
    rows[4] = 0.0
    rows[5, :2] = [np.nan, np.inf]
    ints, scales = index_mod.quantize(rows)
    assert ints.dtype == np.int16 and scales.dtype == np.float32
    clean = np.nan_to_num(rows, nan=0.0, posinf=0.0, neginf=0.0)
    step = np.abs(clean).max(axis=1) / 65534
    error = np.abs(ints.astype(np.float64) * scales[:, None] - clean).max(axis=1)
    assert np.all(error <= step * 1.001 + 1e-12)
    assert not ints[4].any() and scales[4] == 0
    assert ints[5, 0] == 0 and ints[5, 1] == 0
    idx = HistoryIndex(lambda texts: [t.split() for t in texts], lambda s: s.head.text, lambda s: 0)
    idx.add_vectors(rows)
    stored = idx.vectors()
    assert stored is not None and np.array_equal(stored, ints.astype(np.float32) * scales[:, None])
    q = rows[0]
    exact = clean.astype(np.float64) @ q.astype(np.float64)
    bound = np.abs(q).sum() * step * 1.001 + 1e-6
    assert np.all(np.abs(idx.cosine(q) - exact) <= bound)
    assert abs(idx.cosine(q)[0] - 1.0) < 1e-4


@pytest.mark.parametrize("chunk", [3, 4096])
def test_cosine_equals_float32_products_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """The cosines are einsum's float32 products over the widened rows, to the bit.

    Sealed chunks and the open one, a repeated query reading only new rows, several
    dimensions: every value equals ``einsum(int16 rows as float32, q) * scale``.
    """
    monkeypatch.setattr(index_mod, "CHUNK", chunk)
    rng = np.random.default_rng(5)
    for dim in (8, 128, 256):
        idx = HistoryIndex(lambda texts: [t.split() for t in texts], lambda s: "", lambda s: 0)
        rows = rng.standard_normal((11, dim)).astype(np.float32)
        idx.add_vectors(rows[:7])
        q = rng.standard_normal(dim).astype(np.float32)
        q /= np.linalg.norm(q)
        first = idx.cosine(q)
        idx.add_vectors(rows[7:])  # the same query again: only the new rows are multiplied
        for got in (idx.cosine(q), first):
            ints, scales = index_mod.quantize(rows[: len(got)])
            want = np.einsum("ij,j->i", ints.astype(np.float32), q) * scales
            assert got.tobytes() == want.astype(np.float64).tobytes()


@pytest.mark.parametrize("chunk", [2, 4096])
def test_sealed_chunks_keep_large_counts_exactly(
    monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """A count above 65,535 keeps its chunk's tf float32; sealed doc offsets map back.

    BM25 of a sealed index equals the same index with every posting still open (no
    narrowing), bit for bit, with small and huge term counts.
    """
    counts = {
        "a": TermCounts(["x", "y"], [3, 1]),
        "b": TermCounts(["x"], [70_000]),
        "c": TermCounts(["y", "z"], [2, 65_535]),
        "d": TermCounts(["z", "x"], [1, 1]),
        "e": TermCounts(["x"], [5]),
    }
    segs = _segments(list(counts))
    monkeypatch.setattr(index_mod, "CHUNK", chunk)
    sealed = HistoryIndex(
        lambda texts: [counts[t] for t in texts], lambda s: s.head.text, lambda s: 0
    )
    sealed.add(segs)
    monkeypatch.setattr(index_mod, "CHUNK", 4096)
    opened = HistoryIndex(
        lambda texts: [counts[t] for t in texts], lambda s: s.head.text, lambda s: 0
    )
    opened.add(segs)
    if chunk == 2:
        assert [c.tf.dtype for c in sealed._sealed] == [np.float32, np.uint16]
        assert all(c.docs.dtype == np.uint16 for c in sealed._sealed)
        docs, _, tf = sealed._sealed[1].coo()
        assert docs.tolist() == [2, 2, 3, 3] and tf.tolist() == [2.0, 65_535.0, 1.0, 1.0]
    for terms in (["x"], ["y", "z"], ["x", "y", "z"]):
        assert np.array_equal(sealed.bm25(terms, 1.5, 0.75), opened.bm25(terms, 1.5, 0.75))


@pytest.mark.parametrize("chunk", [3, 4096])
def test_a_query_of_more_than_256_terms_scores_every_term(
    monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """Query-term slots past 255 (uint16 slots) score as the Lucene BM25 formula says."""
    monkeypatch.setattr(index_mod, "CHUNK", chunk)
    docs = [[f"t{(3 * d + j) % 300}" for j in range(d % 5 + 3)] * (d % 3 + 1) for d in range(120)]
    by_text = {" ".join(toks): toks for toks in docs}
    idx = HistoryIndex(
        lambda texts: [by_text[t] for t in texts], lambda s: s.head.text, lambda s: 0
    )
    idx.add(_segments(list(by_text)))
    query = [f"t{i}" for i in range(300)]
    k1, b = 1.5, 0.75
    n, avgdl = len(docs), sum(map(len, docs)) / len(docs)
    expected = []
    for toks in docs:
        score = 0.0
        for term in sorted(set(toks), key=lambda t: idx.vocab[t]):
            df = sum(term in d for d in docs)
            tf = toks.count(term)
            idf = np.log1p((n - df + 0.5) / (df + 0.5))
            score += idf * tf / (tf + k1 * (1 - b + b * len(toks) / avgdl))
        expected.append(score)
    assert idx.bm25(query, k1, b) == pytest.approx(expected, rel=1e-12)
    assert len({t for d in docs for t in d}) > 256
