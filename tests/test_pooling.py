"""ctxmgr.pooling: the cached, length-batched WordLlama pooling equals WordLlama.embed."""

from __future__ import annotations

import random

import numpy as np
import pytest

from ctxmgr.testing import agent_history

pytest.importorskip("wordllama")


def test_pooled_embeddings_equal_wordllama_embed_bit_for_bit() -> None:
    """Token ids and normalized vectors are identical to WordLlama's for every text.

    Texts of mixed lengths in one call (WordLlama pads them to the longest), runs of
    spaces, tabs, newlines, non-ASCII and emoji (byte fallback), texts with no token.
    """
    from ctxmgr.strategies.relevance import _wordllama

    from ctxmgr.pooling import PooledEmbedder

    model = _wordllama()
    rnd = random.Random(7)
    texts = [m.text[:2000] for m in agent_history(400, seed=5)]
    texts += ["", " ", "  a", "a  ", "a  b", " a b ", "\tx y\n z", "héllo wörld 日本語 テスト"]
    texts += ["a\u00a0b c", "x" * 2000, "  ".join(["w"] * 50), "😀 emoji 😀😀", "end. Start"]
    texts += [
        "".join(rnd.choice("ab c  \n\t.,'é日😀-_") for _ in range(rnd.randint(0, 60)))
        for _ in range(200)
    ]
    pooled = PooledEmbedder(model)
    assert pooled.split  # the Llama-2 vocabulary: inner word-boundary marks only in runs
    encodings = model.tokenize(texts)
    expected_ids = [e.ids[: sum(e.attention_mask)] for e in encodings]
    assert expected_ids == pooled.token_ids(texts)
    with np.errstate(invalid="ignore", divide="ignore"):  # no-token texts: NaN rows in both
        expected = model.embed(texts, norm=True)
    for got in (pooled(texts), pooled(texts[::-1])[::-1]):  # cached pieces, other batches
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert np.array_equal(expected, got, equal_nan=True)


def test_pieces_equal_the_boundary_split() -> None:
    """_pieces splits like the single-space boundary pattern, on the fast path and off it."""
    from ctxmgr.pooling import _BOUNDARY, _pieces

    rnd = random.Random(3)
    texts = ["", " ", "a", "a b", " a b", "a b ", "a  b", "a\tb c", "a \u00a0b", "\u3000a b"]
    texts += [
        "".join(rnd.choice("ab  \t\n\u00a0.") for _ in range(rnd.randint(0, 30)))
        for _ in range(3000)
    ]
    for text in texts:
        assert _pieces(text) == _BOUNDARY.split(text)
