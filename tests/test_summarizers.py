"""Tests for ctxmgr.summarizers: the extractive summarizer's budget and termination, transcripts."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxmgr.messages import ContentPart, Message, ToolCall
from ctxmgr.summarizers import (
    SUMMARY_PROMPT,
    AsyncSummarizer,
    ExtractiveSummarizer,
    Summarizer,
    _sentences,
    identifiers,
    render_transcript,
)
from ctxmgr.testing import RecordingSummarizer, chat_history
from ctxmgr.tokens import TiktokenCounter

MARKER = re.compile(r"^\[(\d+) earlier points omitted; see the archive\]$")


@pytest.fixture(scope="module")
def count() -> TiktokenCounter:
    """A real tiktoken counter (offline cl100k data)."""
    return TiktokenCounter()


@pytest.fixture
def summarizer(count: TiktokenCounter) -> ExtractiveSummarizer:
    """An extractive summarizer counting with tiktoken."""
    return ExtractiveSummarizer(count.count_text)


# -- protocols ----------------------------------------------------------------------------------


def test_protocols_are_runtime_checkable() -> None:
    """The extractive and recording summarizers are Summarizers; neither is async."""
    assert isinstance(ExtractiveSummarizer(), Summarizer)
    assert isinstance(RecordingSummarizer(), Summarizer)
    assert not isinstance(ExtractiveSummarizer(), AsyncSummarizer)


def test_summary_prompt_placeholders() -> None:
    """SUMMARY_PROMPT formats with max_tokens, previous and transcript."""
    text = SUMMARY_PROMPT.format(max_tokens=77, previous="PREV", transcript="TRANSCRIPT")
    assert "at most 77 tokens" in text
    assert "PREV" in text
    assert text.rstrip().endswith("Updated summary:")


# -- extraction ---------------------------------------------------------------------------------


def test_extracts_most_salient_sentence(summarizer: ExtractiveSummarizer) -> None:
    """Each message contributes its sentence with the most names, numbers and ids."""
    msg = Message.user("hello there. My flight AF1234 leaves Paris on 2024-06-01. thanks!")
    assert summarizer.summarize(None, [msg], max_tokens=200) == (
        "- user: My flight AF1234 leaves Paris on 2024-06-01."
    )


def test_ties_go_to_the_earliest_sentence(summarizer: ExtractiveSummarizer) -> None:
    """Among equally salient sentences the earliest is kept."""
    msg = Message.assistant("Alice went home. Bob went out. Carol stayed.")
    assert summarizer.summarize(None, [msg], max_tokens=200) == "- assistant: Alice went home."


def test_tool_calls_and_results(summarizer: ExtractiveSummarizer) -> None:
    """Tool calls keep name and arguments; results their salient sentence under the tool name."""
    msgs = [
        Message.assistant("", [ToolCall("c1", "get_order", '{"id": "A12"}')]),
        Message.tool("ok. Order A12 shipped to Berlin.", "c1", name="get_order"),
        Message.user("thanks", name="dana"),
    ]
    assert summarizer.summarize(None, msgs, max_tokens=200).splitlines() == [
        '- assistant called get_order({"id": "A12"})',
        "- result of get_order: Order A12 shipped to Berlin.",
        "- dana: thanks",
    ]


def test_identifiers_are_ids_codes_and_emails_in_order() -> None:
    """Words with a letter and a digit (5+ chars) and emails, first seen first, no repeats.

    JSON keys (``address1``), ISO dates and times, short codes and plain numbers are not
    identifiers.
    """
    text = (
        '{"address1": "281 Spruce", "email": "omar.davis7857@example.com", '
        '"payment_methods": {"credit_card_9525117": {"id": "credit_card_9525117"}}, '
        '"created_at": "2024-05-06T19:53:46", "zip": "92164", "seat": "12A", '
        '"reservations": ["2FBBAH", "X7BYG1"], "flight": "HAT276"}'
    )
    assert identifiers(text, 10) == [
        "omar.davis7857@example.com",
        "credit_card_9525117",
        "2FBBAH",
        "X7BYG1",
        "HAT276",
    ]
    assert identifiers(text, 2) == ["omar.davis7857@example.com", "credit_card_9525117"]
    assert identifiers(text, 0) == []
    assert identifiers("Alice met Bob on 2024-05-06 at 10:00.", 5) == []


def test_tool_result_ids_come_first_and_survive_shortening(count: TiktokenCounter) -> None:
    """A tool result's line leads with its ids, so cutting the line to 12 words keeps them.

    tau-bench's ``get_reservation_details`` puts the payment id at the end of a long JSON
    result; the salient-sentence line alone lost it at the first shortening.
    """
    result = (
        '{"reservation_id": "BOH180", "origin": "SEA", "destination": "IAH", "cabin": '
        '"business", "passengers": [{"first_name": "Omar", "last_name": "Davis"}], '
        '"payment_history": [{"payment_id": "credit_card_9525117", "amount": 5662}]}'
    )
    msgs = [
        Message.assistant("", [ToolCall("c1", "get_reservation_details", '{"id": "BOH180"}')]),
        Message.tool(result, "c1", name="get_reservation_details"),
    ]
    line = ExtractiveSummarizer(count.count_text)._line_for(msgs[1])
    assert line.startswith(
        "- result of get_reservation_details: ids BOH180, credit_card_9525117; "
        '{"reservation_id": "BOH180"'
    )
    summary = ExtractiveSummarizer(count.count_text).summarize(None, msgs, max_tokens=60)
    last = summary.splitlines()[-1]  # cut to 12 words: the JSON's payment_history went
    assert "ids BOH180, credit_card_9525117;" in last and "payment_history" not in last
    without = ExtractiveSummarizer(count.count_text, max_ids=0)
    assert "credit_card_9525117" not in without.summarize(None, msgs, max_tokens=60)


def test_ctxmgr_messages_and_empty_messages_are_skipped(summarizer: ExtractiveSummarizer) -> None:
    """Messages ctxmgr injected (metadata 'ctxmgr') and empty messages add no line."""
    msgs = [
        Message.system("old summary", metadata={"ctxmgr": "summary"}),
        Message.user(""),
        Message.user("   "),
        Message.assistant("Kept."),
    ]
    assert summarizer.summarize(None, msgs, max_tokens=200) == "- assistant: Kept."


def test_long_sentence_is_cut_to_max_words() -> None:
    """A sentence longer than max_words keeps its first max_words words and an ellipsis."""
    summarizer = ExtractiveSummarizer(max_words=5)
    msg = Message.user("one two three four five six seven")
    assert summarizer.summarize(None, [msg], max_tokens=200) == "- user: one two three four five …"


def test_keeps_previous_summary_lines(summarizer: ExtractiveSummarizer) -> None:
    """The previous summary's lines come first, unchanged, then the new points."""
    previous = "- user: My name is Ada.\n- assistant: Booked flight AF1234."
    out = summarizer.summarize(previous, [Message.user("I moved to Lyon in 2023.")], max_tokens=200)
    assert out.splitlines() == [
        "- user: My name is Ada.",
        "- assistant: Booked flight AF1234.",
        "- user: I moved to Lyon in 2023.",
    ]


def test_empty_input_gives_empty_summary(summarizer: ExtractiveSummarizer) -> None:
    """No previous summary and no messages give an empty summary."""
    assert summarizer.summarize(None, [], max_tokens=100) == ""


# -- budget -------------------------------------------------------------------------------------


def test_respects_max_tokens_and_counts_omissions(
    summarizer: ExtractiveSummarizer, count: TiktokenCounter
) -> None:
    """Over budget, old points are dropped with a marker; the result fits max_tokens."""
    history = chat_history(40)
    out = summarizer.summarize(None, history, max_tokens=120)
    assert count.count_text(out) <= 120
    lines = out.splitlines()
    found = MARKER.match(lines[0])
    assert found is not None
    assert int(found.group(1)) + len(lines) - 1 == len(history)
    assert lines[-1].startswith("- assistant: Answer 39:")


def test_marker_count_accumulates_across_calls(
    summarizer: ExtractiveSummarizer, count: TiktokenCounter
) -> None:
    """A previous summary's omission marker is carried forward and increased."""
    first = summarizer.summarize(None, chat_history(20), max_tokens=100)
    first_omitted = int(MARKER.match(first.splitlines()[0]).group(1))  # type: ignore[union-attr]
    second = summarizer.summarize(first, chat_history(20, seed=1)[1:], max_tokens=100)
    second_omitted = int(MARKER.match(second.splitlines()[0]).group(1))  # type: ignore[union-attr]
    assert second_omitted > first_omitted
    assert count.count_text(second) <= 100
    assert sum(1 for ln in second.splitlines() if MARKER.match(ln)) == 1


def test_shortens_long_lines_before_dropping(
    summarizer: ExtractiveSummarizer, count: TiktokenCounter
) -> None:
    """Long lines are shortened (ending in …) before any line is dropped."""
    previous = "- user: short fact A.\n- user: " + " ".join(f"word{i}" for i in range(40))
    out = summarizer.summarize(previous, [], max_tokens=60)
    lines = out.splitlines()
    assert lines[0] == "- user: short fact A."
    assert lines[1].endswith(" …")
    assert len(lines[1].split()) < 40
    assert count.count_text(out) <= 60


def test_default_counter_is_four_chars_per_token() -> None:
    """Without a counter, tokens are estimated at four characters each (rounded up)."""
    assert ExtractiveSummarizer().count_tokens("abcde") == 2


def _within_budget(out: str, max_tokens: int, count: TiktokenCounter) -> bool:
    return count.count_text(out) <= max_tokens or MARKER.match(out) is not None


@pytest.mark.parametrize("words", [12, 13, 14, 15, 26, 27])
def test_terminates_on_many_lines_near_the_shortening_threshold(
    summarizer: ExtractiveSummarizer, count: TiktokenCounter, words: int
) -> None:
    """Many lines of 12-27 words (around the 13-word shortening limit) finish within budget."""
    previous = "\n".join("- " + " ".join(f"w{i}x{j}" for j in range(words - 1)) for i in range(400))
    t0 = time.perf_counter()
    out = summarizer.summarize(previous, [], max_tokens=50)
    assert time.perf_counter() - t0 < 5
    assert _within_budget(out, 50, count)


def test_terminates_on_one_giant_line(
    summarizer: ExtractiveSummarizer, count: TiktokenCounter
) -> None:
    """A single giant line without spaces is dropped, leaving only the omission marker."""
    out = summarizer.summarize("- " + "x" * 200_000, [], max_tokens=40)
    assert MARKER.match(out) is not None
    assert count.count_text(out) <= 40


def test_giant_message_with_many_sentences_is_fast(
    summarizer: ExtractiveSummarizer, count: TiktokenCounter
) -> None:
    """A message of 30,000 distinct sentences is summarized in linear time (well under 2 s)."""
    text = " ".join(f"Sentence number {i} here." for i in range(30_000))
    t0 = time.perf_counter()
    out = summarizer.summarize(None, [Message.user(text)], max_tokens=100)
    assert time.perf_counter() - t0 < 2
    assert out == "- user: Sentence number 0 here."


def test_budget_below_the_marker_returns_only_the_marker(summarizer: ExtractiveSummarizer) -> None:
    """With a budget too small even for the marker, the result is the marker alone."""
    out = summarizer.summarize(None, chat_history(3), max_tokens=3)
    assert MARKER.match(out) is not None


_line = st.one_of(
    st.text(alphabet=st.sampled_from("ab .XY1\t\n!?"), max_size=400),
    st.just("[3 earlier points omitted; see the archive]"),
    st.lists(st.sampled_from(["alpha", "Beta", "42", "ID_7", "x" * 60]), max_size=40).map(" ".join),
)


@settings(
    max_examples=60,
    deadline=3000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    previous=st.one_of(st.none(), st.lists(_line, max_size=30).map("\n".join)),
    texts=st.lists(_line, max_size=30),
    max_tokens=st.integers(min_value=1, max_value=400),
)
def test_always_within_budget_or_only_marker(
    summarizer: ExtractiveSummarizer,
    count: TiktokenCounter,
    previous: str | None,
    texts: list[str],
    max_tokens: int,
) -> None:
    """For any input the summary fits max_tokens, or is only the omission marker."""
    messages = [Message.user(t) for t in texts]
    out = summarizer.summarize(previous, messages, max_tokens=max_tokens)
    assert _within_budget(out, max_tokens, count)


# -- render_transcript ----------------------------------------------------------------------------


def test_render_transcript_formats_each_kind() -> None:
    """Text, named, tool-call and tool-result messages render one line each."""
    msgs = [
        Message.user("Where is my order?"),
        Message.user("me again", name="dana"),
        Message.assistant(
            "", [ToolCall("c1", "get_order", '{"id": 7}'), ToolCall("c2", "f", "{}")]
        ),
        Message.assistant("Checking.", [ToolCall("c3", "g", "{}")]),
        Message.tool("shipped", "c1", name="get_order"),
        Message.tool("done", "c2"),
    ]
    assert render_transcript(msgs).splitlines() == [
        "user: Where is my order?",
        "dana: me again",
        'assistant: -> get_order({"id": 7}), f({})',
        "assistant: Checking. -> g({})",
        "tool[get_order]: shipped",
        "tool[c2]: done",
    ]


def test_render_transcript_cuts_long_messages() -> None:
    """Contents longer than max_chars_per_message are cut with a marker."""
    out = render_transcript([Message.user("abcdefghij")], max_chars_per_message=4)
    assert out == "user: abcd [...]"


def test_render_transcript_uses_text_parts() -> None:
    """Multimodal messages render their text parts only."""
    msg = Message.user([ContentPart("text", "caption"), ContentPart("image_url", data={"a": 1})])
    assert render_transcript([msg]) == "user: caption"


def test_render_transcript_empty() -> None:
    """No messages render as an empty string."""
    assert render_transcript([]) == ""


def test_earlier_summary_lines_are_counted_once() -> None:
    """Folding new messages re-fits the earlier lines without re-counting their tokens."""
    calls: list[str] = []

    def count(text: str) -> int:
        calls.append(text)
        return (len(text) + 3) // 4

    summarizer = ExtractiveSummarizer(count)
    summary = summarizer.summarize(
        None, [Message.user(f"Point {i}: Ann paid.") for i in range(30)], max_tokens=400
    )
    calls.clear()
    again = summarizer.summarize(summary, [Message.user("Point 30: Bo paid.")], max_tokens=400)
    assert again == summary + "\n- user: Point 30: Bo paid."
    assert [c for c in calls if "\n" not in c] == ["- user: Point 30: Bo paid."]


def test_identifiers_scan_a_long_unbroken_token() -> None:
    """A base64 blob or a minified dump is one long word: the scan stays linear.

    The email pattern once restarted at every character of such a word (quadratic: a
    20,000-character token took 1 s, this one would take minutes); it now starts only at
    the beginning of a word. No wall-clock assertion: a regression shows as a hung test.
    """
    blob = "QUJD" * 75_000  # 300,000 characters, letters only: no identifier in it
    assert identifiers(blob, 12) == []
    assert identifiers(blob + " id HAT204 " + "9" * 300_000, 12) == ["HAT204"]


# -- lazy fitting: the same summary as building and counting every line ---------------------------

_OLD_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_OLD_SALIENT = re.compile(r"\b(?:[A-Z][a-z]+|\d[\d:/.,-]*|[A-Z]{2,}[A-Z0-9_-]*)\b")
_OLD_IDENTIFIER = re.compile(
    r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
    r"|(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[\w-]{5,}(?![\w-])(?!\"\s*:)"
)


def _eager_summary(
    count: Callable[[str], int], previous: str | None, messages: list[Message], max_tokens: int
) -> str:
    """The extractive summary as it was built before lines were built lazily (the oracle).

    Every message's line is built (look-behind sentence split, a full identifier scan),
    every line is counted, and each shortening pass goes over all lines.
    """

    def salient(text: str) -> str:
        sentences = [s.strip() for s in _OLD_SENTENCE.split(text.strip()) if s.strip()]
        if not sentences:
            return ""
        best = max(sentences, key=lambda s: len(_OLD_SALIENT.findall(s)))
        words = best.split()
        return " ".join(words[:40]) + " …" if len(words) > 40 else best

    def ids(text: str) -> list[str]:
        found: dict[str, None] = {}
        for match in _OLD_IDENTIFIER.finditer(text):
            word = match.group(0)
            if word not in found and not re.match(r"\d{4}-\d{2}-\d{2}", word):
                found[word] = None
                if len(found) >= 12:
                    break
        return list(found)

    lines = [ln for ln in (previous or "").splitlines() if ln.strip()]
    for m in messages:
        if m.metadata.get("ctxmgr"):
            continue
        who = m.name or m.role
        if m.tool_calls:
            calls = ", ".join(f"{c.name}({c.arguments[:200]})" for c in m.tool_calls)
            lines.append(f"- {who} called {calls}")
            continue
        sentence = salient(m.text)
        if not sentence:
            continue
        if m.role == "tool":
            found = ids(m.text)
            head = f"ids {', '.join(found)}; " if found else ""
            lines.append(f"- result of {m.name or 'tool'}: {head}{sentence}")
        else:
            lines.append(f"- {who}: {sentence}")
    omitted = 0
    if lines and (marker := re.match(r"^\[(\d+) earlier points omitted", lines[0])):
        omitted = int(marker.group(1))
        lines = lines[1:]
    max_chars = (max(0, max_tokens) + 1) * 32
    lines = [
        " ".join((ln if len(ln) <= max_chars else ln[:max_chars] + " …").split()) for ln in lines
    ]
    costs = [count(ln) + 1 for ln in lines]
    total = sum(costs)
    for cap in (40, 24, 12):
        if total + 16 <= max_tokens:
            break
        for i, line in enumerate(lines):
            words = line.split()
            if len(words) > cap + 1:
                lines[i] = " ".join(words[:cap]) + " …"
                new = count(lines[i]) + 1
                total += new - costs[i]
                costs[i] = new
    if total + 16 > max_tokens:
        kept, running = 0, 0
        for cost in reversed(costs):
            if running + cost > max_tokens - 16:
                break
            running += cost
            kept += 1
        omitted += len(lines) - kept
        lines = lines[len(lines) - kept :]

    def render() -> str:
        head = [f"[{omitted} earlier points omitted; see the archive]"] if omitted else []
        return "\n".join(head + lines)

    while lines and count(render()) > max_tokens:
        if len(lines) == 1 and len(lines[0]) > 80:
            lines[0] = lines[0][: len(lines[0]) * 2 // 3].rstrip(" …") + " …"
            continue
        lines.pop(0)
        omitted += 1
    return render()


_word = st.sampled_from(
    [
        "alpha",
        "Beta",
        "42",
        "HAT204",
        "a.b@mail.com",
        "2024-05-06T19",
        "ID_7",
        "x" * 70,
        "end.",
        "why?",
        "so!",
        '"key123": 1,',
        "é9",
        "٣abc12",
        "\t",
        "\n",
        "…",
        "",
    ]
)
_text = st.lists(_word, max_size=70).map(" ".join)
_message = st.one_of(
    _text.map(Message.user),
    _text.map(lambda t: Message.assistant(t)),
    st.tuples(_text, st.sampled_from(["lookup", None])).map(
        lambda a: Message.tool(a[0], "call_1", name=a[1])
    ),
    _text.map(lambda t: Message.assistant(tool_calls=[ToolCall("c1", "search", t)])),
    _text.map(lambda t: Message.user(t, metadata={"ctxmgr": "summary"})),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    previous=st.one_of(
        st.none(),
        st.lists(st.one_of(_text.map(lambda t: "- " + t), _line), max_size=30).map("\n".join),
    ),
    messages=st.lists(_message, max_size=40),
    max_tokens=st.integers(min_value=1, max_value=600),
)
def test_lazy_summary_equals_building_every_line(
    count: TiktokenCounter, previous: str | None, messages: list[Message], max_tokens: int
) -> None:
    """Building only the lines the summary keeps gives the summary building all of them gave."""
    fresh = ExtractiveSummarizer(count.count_text)  # no line counts memoized from other runs
    expected = _eager_summary(count.count_text, previous, messages, max_tokens)
    assert fresh.summarize(previous, messages, max_tokens=max_tokens) == expected
    # again with the line counts memoized by the first call
    assert fresh.summarize(previous, messages, max_tokens=max_tokens) == expected


def test_lines_older_than_the_kept_points_are_never_built(count: TiktokenCounter) -> None:
    """Of 200 evicted tool results only the newest few are summarized (and counted)."""
    built: list[str] = []
    summarizer = ExtractiveSummarizer(count.count_text)
    real = summarizer._line_for

    def spy(m: Message) -> str:
        built.append(m.text)
        return real(m)

    summarizer._line_for = spy  # type: ignore[method-assign]
    messages = [Message.tool(f"Result {i}: seat 12A held for HAT{i:03d}.", "c") for i in range(200)]
    out = summarizer.summarize(None, messages, max_tokens=200)
    assert out == _eager_summary(count.count_text, None, messages, 200)
    assert out.splitlines()[-1].startswith("- result of tool: ids HAT199; Result 199")
    assert 0 < len(built) < 30
    assert built[0] == messages[-1].text  # newest first


def test_sentence_split_equals_the_look_behind_split() -> None:
    """_sentences gives the pieces of the look-behind sentence split, on tricky input."""
    texts = ["", "a", "a. b", "a..  b! c?", "end.", ". lead", "a.\n\tb", "x?!  y", "3.5 m. ok"]
    for text in texts:
        assert _sentences(text) == _OLD_SENTENCE.split(text)


def test_identifiers_need_a_digit_or_an_at_sign() -> None:
    """Text without any (Unicode) digit or @ has no identifier; with one, the scan runs."""
    assert identifiers("Booking reservation policy agent " * 50, 12) == []
    assert identifiers("code ABC\u0663\u0664\u0665 here", 12) == ["ABC\u0663\u0664\u0665"]
    assert identifiers("mail ann.lee@example.com now", 12) == ["ann.lee@example.com"]
