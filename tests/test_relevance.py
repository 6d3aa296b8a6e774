"""The relevance strategy: hybrid BM25 + semantic scoring, fallback, the recall block."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from ctxmgr.strategies import relevance
from ctxmgr.strategies.relevance import RelevanceEviction, wordllama_embedder

from ctxmgr import ContextManager, Message, ToolCall
from ctxmgr.report import FitResult
from ctxmgr.segments import Segment

FILLER = 30


def _history() -> list[Message]:
    """A system prompt, one fact early on, then chit-chat that pushes it out of a small window."""
    out = [
        Message.system("You are helpful."),
        Message.user("Let's chat."),
        Message.assistant("Sure."),
    ]
    out.append(Message.user("I adopted a puppy; Biscuit arrived last spring."))
    out.append(Message.assistant("Congratulations on adopting Biscuit!"))
    for i in range(FILLER):
        out.append(Message.user(f"Day {i}: the weather was fine and we discussed football."))
        out.append(Message.assistant(f"Thanks for the update on day {i}, football is fun."))
    return out


def _ids(messages: Sequence[Message]) -> list[str]:
    return [m.id for m in messages]


def _manager(**options: object) -> ContextManager:
    return ContextManager.from_config(
        {
            "max_context_tokens": 700,
            "reserve_output_tokens": 0,
            "trigger": 0.8,
            "target": 0.6,
            "strategies": [
                {"name": "tool_pair_safe"},
                {"name": "pin_and_slide", "weight": 0.3},
                {"name": "relevance", **options},
            ],
        },
        counter="approx",
    )


def test_wordllama_loads_with_the_network_blocked(no_network: None) -> None:
    """The bundled WordLlama weights load and embed with every non-loopback socket blocked."""
    relevance._wordllama.cache_clear()
    vectors = wordllama_embedder(["a dog is a pet", "a puppy is a young dog", "tax forms"])
    assert vectors.shape == (3, 256)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(1.0, rel=1e-4)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2])


def test_empty_texts_embed_to_zero_vectors_without_warnings() -> None:
    """An empty or blank text (an empty system prompt) is a zero row, not NaN or a warning."""
    vectors = wordllama_embedder(["", "   ", "a dog"])
    assert vectors[0].tolist() == [0.0] * 256 and vectors[1].tolist() == [0.0] * 256
    assert np.linalg.norm(vectors[2]) == pytest.approx(1.0, rel=1e-4)


def test_no_network_fixture_blocks_internet_sockets(no_network: None) -> None:
    """The guard really refuses a non-loopback connection (the test above is not vacuous)."""
    import socket

    with socket.socket() as sock, pytest.raises(OSError, match="no_network"):
        sock.connect(("93.184.216.34", 80))


def test_semantic_scorer_is_the_default_when_installed() -> None:
    """Without an embedder option, the strategy scores with WordLlama (installed by make test)."""
    assert RelevanceEviction()._embed is wordllama_embedder
    assert RelevanceEviction(RelevanceEviction.Options(semantic=False))._embed is None


def test_semantic_recalls_a_paraphrase_bm25_misses() -> None:
    """'dog' shares no stem with 'puppy': only the semantic scorer brings the fact back."""
    question = Message.user("Which dog do I own?")
    lexical = _manager(semantic=False, placement="block").fit([*_history(), question])
    hybrid = _manager(placement="block").fit([*_history(), question])
    assert not any("Biscuit" in m.text for m in lexical.messages)
    assert any("Biscuit" in m.text for m in hybrid.messages)


def failing_embedder(texts: list[str]) -> list[list[float]]:
    """An embedding callable that always raises."""
    raise RuntimeError("embedding service down")


def test_failing_embedder_falls_back_to_bm25_with_a_warning() -> None:
    """A raising embedder warns once; the fit equals the BM25-only fit, nothing is lost."""
    history = [*_history(), Message.user("Remind me about the puppy Biscuit")]
    expected = _manager(semantic=False, placement="block").fit(history)
    mgr = _manager(embedder="tests.test_relevance:failing_embedder", placement="block")
    with pytest.warns(RuntimeWarning, match="falls back to BM25"):
        got = mgr.fit(history)
    assert _ids(got.messages) == _ids(expected.messages)
    assert any("Biscuit" in m.text for m in got.messages)
    again = mgr.fit([*history, Message.assistant("ok"), Message.user("And the weather?")])
    assert again.report.tokens_after <= 700


def hashing_embedder(texts: list[str]) -> list[list[float]]:
    """A tiny deterministic embedding callable (bag of hashed words)."""
    out = []
    for text in texts:
        vec = [0.0] * 32
        for word in text.lower().split():
            vec[sum(map(ord, word.strip("?.!,:"))) % 32] += 1.0
        out.append(vec)
    return out


def test_any_embedding_callable_plugs_in() -> None:
    """A ``module:function`` embedder replaces WordLlama and is called once per new segment."""
    mgr = _manager(embedder="tests.test_relevance:hashing_embedder", placement="block")
    strategy = next(s for s in mgr.strategies if isinstance(s, RelevanceEviction))
    history = [*_history(), Message.user("name of the puppy Biscuit?")]
    mgr.fit(history)
    assert strategy._index.embedded == len(strategy._index)
    assert strategy._index.dim == 32


EMBEDDED: list[str] = []


def recording_embedder(texts: list[str]) -> list[list[float]]:
    """:func:`hashing_embedder` that records what it was asked to embed."""
    EMBEDDED.extend(texts)
    return hashing_embedder(texts)


@pytest.mark.parametrize("semantic_text", ["content", "indexed"])
def test_semantic_text_chooses_what_the_embedder_sees(semantic_text: str) -> None:
    """What the embedder sees of each turn.

    ``content``: a turn without its speaker's name or session date; a tool result keeps
    its tool's name and a tool call its name and arguments. ``indexed``: the text BM25
    indexes.
    """
    call = ToolCall(id="c1", name="get_user", arguments='{"user_id": "ann_1"}')
    history = [
        Message.user("I adopted a puppy.", name="Caroline", metadata={"session_date": "8 May"}),
        Message.assistant("", tool_calls=[call]),
        Message.tool('{"dob": "1980-03-27"}', tool_call_id="c1", name="get_user"),
        Message.assistant("What breed?", name="Melanie", metadata={"session_date": "8 May"}),
    ]
    strategy = RelevanceEviction(
        RelevanceEviction.Options(
            embedder="tests.test_relevance:recording_embedder", semantic_text=semantic_text
        )
    )
    segs = [
        Segment((history[0],), 0, 10),
        Segment((history[1], history[2]), 1, 10),
        Segment((history[3],), 3, 10),
    ]
    EMBEDDED.clear()
    strategy._history_scores(SimpleNamespace(history=segs, query="the puppy"))  # type: ignore[arg-type]
    docs = EMBEDDED[:3]
    if semantic_text == "content":
        assert docs[0] == "I adopted a puppy."
        assert docs[1] == 'get_user {"user_id": "ann_1"}\nget_user\n{"dob": "1980-03-27"}'
        assert docs[2] == "What breed?"
    else:
        assert docs == [strategy._doc(seg) for seg in segs]
        assert "Caroline" in docs[0] and "8 May" in docs[0]
    assert EMBEDDED[3] == "the puppy"  # the query, in the same batch
    # a query naming a participant: with "content" the name is not embedded either
    strategy._history_scores(  # type: ignore[arg-type]
        SimpleNamespace(history=segs, query="What did Caroline adopt?")
    )
    expected = "What did   adopt?" if semantic_text == "content" else "What did Caroline adopt?"
    assert EMBEDDED[-1] == expected


def _before_block(result: FitResult) -> list[str]:
    """Ids of the context before its recall block (the cache-stable prefix)."""
    recalled = {
        i
        for r in result.report.kept
        if r.reason == "recalled for the current question"
        for i in r.ids
    }
    ids = _ids(result.messages)
    first = next((k for k, i in enumerate(ids) if i in recalled), len(ids) - 1)
    return ids[:first]


def test_recall_block_sits_before_the_question_and_keeps_the_prefix() -> None:
    """The block goes just before the latest user message, within budget.

    The next question replaces the block and the context before it is still a prefix.
    """
    mgr = _manager(placement="block", semantic=False)
    before = mgr.fit(_history())
    assert not any("Biscuit" in m.text for m in before.messages)
    history = [*_history(), Message.user("What did I tell you about Biscuit the puppy?")]
    first = mgr.fit(history)
    assert not first.report.compacted
    stable = _before_block(before)
    assert _ids(first.messages)[: len(stable)] == stable
    assert first.messages[-1] is history[-1]
    recalled = [r for r in first.report.kept if r.reason == "recalled for the current question"]
    assert recalled
    block_ids = [i for r in recalled for i in r.ids]
    assert history[3].id in block_ids
    assert first.messages[-2].id in (history[3].id, history[4].id)
    assert first.report.tokens_after <= 700
    nxt = [*history, Message.assistant("You adopted Biscuit."), Message.user("football scores?")]
    second = mgr.fit(nxt)
    assert not second.report.compacted
    stable = _before_block(first)
    assert _ids(second.messages)[: len(stable)] == stable
    assert second.messages[-1] is nxt[-1]
    assert len(_before_block(second)) > len(stable)  # the old block is gone, the prefix grew


def test_recall_block_chronological_order_and_after_system() -> None:
    """Options place the block after the system prompt, in history order."""
    mgr = _manager(
        placement="block",
        semantic=False,
        block_order="chronological",
        block_position="after_system",
    )
    mgr.fit(_history())
    history = [*_history(), Message.user("What did I tell you about Biscuit the puppy?")]
    fitted = mgr.fit(history)
    recalled = [r for r in fitted.report.kept if r.reason == "recalled for the current question"]
    n = sum(len(r.ids) for r in recalled)
    assert fitted.messages[0].role == "system"
    block = fitted.messages[1 : 1 + n]
    assert [m.id for m in block] == [i for r in recalled for i in r.ids]
    order = {m.id: i for i, m in enumerate(history)}
    assert [order[m.id] for m in block] == sorted(order[m.id] for m in block)


def _gated(**options: object) -> ContextManager:
    return _manager(placement="block", semantic=False, recall_gate=1, **options)


def test_recall_gate_keeps_the_earlier_block_where_it_was() -> None:
    """A new query the context already covers keeps the earlier block before its question.

    Every fit then extends the previous one (the prompt cache holds); a later query whose
    best match is outside the context recalls a new block before the latest question.
    """
    mgr = _gated()
    mgr.fit(_history())
    history = [*_history(), Message.user("What did I tell you about Biscuit the puppy?")]
    first = mgr.fit(history)
    block = [i for r in first.report.kept if r.reason.startswith("recalled") for i in r.ids]
    assert history[3].id in block
    # "day 29" is in the recent tail: no new recall, the Biscuit block stays in place
    nxt = [*history, Message.assistant("You adopted Biscuit."), Message.user("What about day 29?")]
    second = mgr.fit(nxt)
    assert _ids(second.messages)[: len(first.messages)] == _ids(first.messages)
    assert second.messages[-1] is nxt[-1]
    # an early fact that is neither in the tail nor in the block: a new block, the old goes
    nxt += [Message.assistant("Day 29 was fine."), Message.user("Remind me: what did we chat?")]
    nxt[5] = Message.user("Day 0: I bought gardening tools, a red rake and a spade.")
    mgr2 = _gated()
    mgr2.fit(nxt[:-1])
    third = mgr2.fit([*nxt[:-1], Message.user("Which gardening tools did I mention?")])
    recalled = [i for r in third.report.kept if r.reason.startswith("recalled") for i in r.ids]
    assert nxt[5].id in recalled
    assert third.messages[-1].text.startswith("Which gardening tools")


def test_recall_gate_refills_an_empty_block() -> None:
    """An earlier block that recalled nothing does not stop a later question's recall.

    The first question comes while the whole history fits, so its block is empty. When
    the history has outgrown the window, a question the gate holds (its best match is in
    the recent tail) still recalls into the free room: replacing an empty block removes
    nothing from the context. (Before, the empty block was kept and the room stayed
    unused: tau-bench/9-2 at 8,000 tokens lost a saved passenger's name and birth date.)
    """
    mgr = _gated()
    early = _history()[:5]
    first = mgr.fit([*early, Message.user("How is Biscuit?")])
    assert len(first.messages) == 6  # everything fits: nothing to recall
    assert not [r for r in first.report.kept if r.reason.startswith("recalled")]
    history = [*early, Message.user("How is Biscuit?"), Message.assistant("Fine."), *_history()[5:]]
    history.append(Message.user("What about day 29?"))
    second = mgr.fit(history)
    assert second.report.compacted
    recalled = [i for r in second.report.kept if r.reason.startswith("recalled") for i in r.ids]
    assert recalled  # older "day N" turns the compacted context no longer holds
    assert second.messages[-1] is history[-1]
    assert second.report.tokens_after <= 700


def test_recall_gate_off_recalls_for_every_new_query() -> None:
    """Without the gate each new query replaces the block (the default)."""
    mgr = _manager(placement="block", semantic=False)
    mgr.fit(_history())
    history = [*_history(), Message.user("What did I tell you about Biscuit the puppy?")]
    first = mgr.fit(history)
    nxt = [*history, Message.assistant("You adopted Biscuit."), Message.user("What about day 29?")]
    second = mgr.fit(nxt)
    assert _ids(second.messages)[: len(first.messages)] != _ids(first.messages)


def test_recall_share_compacts_to_make_room_for_a_new_block() -> None:
    """With recall_share, a query that needs recall first compacts the context down."""
    mgr = _gated(recall_share=0.6)
    mgr.fit(_history())
    history = [*_history(), Message.user("What did I tell you about Biscuit the puppy?")]
    fitted = mgr.fit(history)
    assert fitted.report.compacted
    assert "room for the recall block" in (fitted.report.reason or "")
    recalled = [r for r in fitted.report.kept if r.reason.startswith("recalled")]
    assert recalled
    # the context around the block was compacted to at most 40% of the limit
    assert fitted.report.tokens_after - sum(r.tokens for r in recalled) <= 0.4 * 700
    assert fitted.report.tokens_after <= 700
    assert fitted.messages[-1] is history[-1]


def test_speaker_prior_prefers_the_named_speakers_turns() -> None:
    """A question naming a speaker ranks that speaker's turn above an equal match of another."""
    history = [
        Message.user("I went hiking in the mountains last week.", name="Alice"),
        Message.assistant("I went hiking in the mountains last week too.", name="Bob"),
        Message.user("Where did Bob go hiking?", name="Alice"),
    ]
    ratios = []
    for weight in (0.0, 0.5):
        strategy = RelevanceEviction(
            RelevanceEviction.Options(semantic=False, speaker_weight=weight, neighbor_weight=0)
        )
        segs = [Segment((m,), i, 10) for i, m in enumerate(history)]
        window = SimpleNamespace(history=segs, query=history[-1].text)
        scores = strategy._history_scores(window)  # type: ignore[arg-type]
        assert scores[2] == 0  # the question does not match itself
        assert int(np.argmax(scores)) == 1
        ratios.append(scores[0] / scores[1])
    assert ratios[1] == pytest.approx(0.5 * ratios[0])  # Alice's turn is halved


def test_speaker_names_match_whole_words_and_first_names() -> None:
    pattern = relevance._names("Caroline Smith")
    assert pattern.search("When did caroline go?")
    assert pattern.search("What did Caroline Smith say?")
    assert not pattern.search("Carolines are many")
    assert not relevance._names("Al").search("What did Alice say?")


def _bm25s_terms(texts: list[str], stopwords: str | None, stemmer: str | None) -> list[list[str]]:
    import bm25s
    import Stemmer

    out = bm25s.tokenize(
        texts,
        stopwords=stopwords,
        stemmer=Stemmer.Stemmer(stemmer) if stemmer else None,
        return_ids=False,
        show_progress=False,
    )
    return [list(t) for t in out]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("stopwords", "stemmer"), [("en_plus", "english"), ("en", None), (None, "english")]
)
def test_terms_equal_bm25s_tokenize(
    data_dir: Path, stopwords: str | None, stemmer: str | None
) -> None:
    """The strategy's tokenizer gives bm25s.tokenize's terms, batch after batch (stems kept)."""
    import json

    conversation = json.loads((data_dir / "locomo" / "locomo10.json").read_text())[0]
    texts = [
        turn["text"]
        for key, session in conversation["conversation"].items()
        if key.startswith("session_") and isinstance(session, list)
        for turn in session
    ]
    texts += ["", "a", "I'm O'Neil: Ünïcode wörds, ÉCOLE, naïve; 42x a_b", "THE the The", "-- --"]
    strategy = RelevanceEviction(
        RelevanceEviction.Options(stopwords=stopwords, stemmer=stemmer, embedder=None)
    )
    for start in range(0, len(texts), 97):  # the second batch reuses the first one's stems
        batch = texts[start : start + 97]
        assert strategy._tokenize(batch) == _bm25s_terms(batch, stopwords, stemmer)
    assert (len(strategy._stems) > 0) == (stemmer is not None)


def test_ascii_words_equal_the_token_pattern() -> None:
    """The byte-table split of ASCII text finds what bm25s's token pattern finds."""
    import random
    import re

    pattern = re.compile(r"(?u)\b\w\w+\b")
    rnd = random.Random(11)
    alphabet = "aZ_9 .,;'\"-\t\n\x0b\x1c\x7f(){}"
    texts = ["", "a", "ab", "a_b c9 __ x", "TEST test-case O'Neil", "x\x1cy zz\x7fww"]
    texts += ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 40))) for _ in range(3000)]
    for text in texts:
        assert list(relevance._words(text)) == pattern.findall(text.lower())
    assert list(relevance._words("Ünïcode wörds")) == ["ünïcode", "wörds"]  # the pattern


def test_unknown_stopword_list_is_a_config_error() -> None:
    """A stop-word list bm25s does not have is refused when the strategy is built."""
    from ctxmgr.errors import ConfigError

    with pytest.raises(ConfigError, match="stopwords"):
        RelevanceEviction(RelevanceEviction.Options(stopwords="klingon", embedder=None))


def test_stopwords_without_bm25s_private_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bm25s without ``_infer_stopwords`` still gives the same English lists."""
    import bm25s.tokenization

    from ctxmgr.errors import ConfigError

    expected = {n: list(relevance._bm25s_stopwords(n)) for n in ("en", "en_plus", None)}
    monkeypatch.delattr(bm25s.tokenization, "_infer_stopwords")
    for name, words in expected.items():
        assert list(relevance._bm25s_stopwords(name)) == words
    assert len(expected["en_plus"]) > len(expected["en"]) > 0
    with pytest.raises(ConfigError, match="klingon"):
        relevance._bm25s_stopwords("klingon")
