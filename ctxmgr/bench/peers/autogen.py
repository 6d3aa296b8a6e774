"""AutoGen peers: buffered, head-and-tail and token-limited model contexts."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ctxmgr.bench.peers._common import (
    _TOKENS_PER_BUFFER_SLOT,
    PeerFitter,
    _peer_message,
    _run,
    _Session,
)
from ctxmgr.messages import Message, ToolCall

if TYPE_CHECKING:
    from ctxmgr.bench.fitter import FitSession
    from ctxmgr.bench.transcript import Transcript
    from ctxmgr.tokens import TokenCounter


# ---------------------------------------------------------------------------------------
# AutoGen
# ---------------------------------------------------------------------------------------
def _autogen_text(message: Message) -> str:
    return message.text


def _to_autogen(message: Message) -> Any:
    """Convert a non-tool message to an AutoGen ``LLMMessage`` (tool results: see below)."""
    from autogen_core import FunctionCall
    from autogen_core.models import AssistantMessage, SystemMessage, UserMessage

    if message.role == "system":
        return SystemMessage(content=_autogen_text(message))
    if message.role == "user":
        return UserMessage(content=_autogen_text(message), source=message.name or "user")
    source = message.name or "assistant"
    if message.tool_calls:
        calls = [
            FunctionCall(id=c.id, arguments=c.arguments, name=c.name) for c in message.tool_calls
        ]
        return AssistantMessage(content=calls, thought=message.text or None, source=source)
    return AssistantMessage(content=_autogen_text(message), source=source)


def _tool_results(messages: Sequence[Message], call_names: dict[str, str]) -> list[Any]:
    from autogen_core.models import FunctionExecutionResult

    return [
        FunctionExecutionResult(
            call_id=m.tool_call_id or "",
            content=_autogen_text(m),
            name=m.name or call_names.get(m.tool_call_id or "", ""),
            is_error=False,
        )
        for m in messages
    ]


def _from_autogen(obj: Any, peer: str) -> list[Message]:
    """Convert an AutoGen message the peer created to new :class:`Message` objects."""
    kind = getattr(obj, "type", "")
    content = obj.content
    if kind == "FunctionExecutionResultMessage":
        return [
            _peer_message(peer, "tool", r.content, tool_call_id=r.call_id, name=r.name or None)
            for r in content
        ]
    if kind == "AssistantMessage" and isinstance(content, list):
        calls = tuple(ToolCall(c.id, c.name, c.arguments) for c in content)
        return [_peer_message(peer, "assistant", obj.thought or "", tool_calls=calls)]
    if not isinstance(content, str):
        content = "\n".join(c for c in content if isinstance(c, str))
    role = {"SystemMessage": "system", "AssistantMessage": "assistant"}.get(kind, "user")
    return [_peer_message(peer, role, content)]


class _AutogenSession(_Session):
    """Shared by the AutoGen peers: ``add_message`` each new message, then ``get_messages()``.

    Consecutive tool messages become one ``FunctionExecutionResultMessage`` (as AutoGen's
    ``AssistantAgent`` adds them); it maps back to all of the original tool messages.
    """

    def __init__(
        self,
        peer: str,
        budget: int,
        counter: TokenCounter,
        factory: Callable[[_AutogenSession], Any],
    ) -> None:
        super().__init__(peer, budget, counter)
        self._factory = factory  # builds the model context for a session
        self._reset()

    def _reset(self) -> None:
        self._context_obj = self._factory(self)
        self._objs: list[Any] = []  # what was added to the context, in order
        self._by_obj: dict[int, tuple[Any, list[Message]]] = {}
        self._tokens: dict[int, int] = {}
        self._call_names: dict[str, str] = {}

    def _register(self, obj: Any, messages: list[Message]) -> Any:
        self._by_obj[id(obj)] = (obj, messages)  # holds obj, so its id stays unique
        return obj

    def count(self, objs: Sequence[Any]) -> int:
        """Shared-counter tokens of a request holding ``objs`` (per-message counts memoized)."""
        count_message = self.counter.count_message
        total = self.counter.reply_priming
        memo = self._tokens
        for obj in objs:
            tokens = memo.get(id(obj))
            if tokens is None:
                tokens = sum(count_message(m) for m in self.expand([obj]))
                if id(obj) in self._by_obj:  # only our own objects: their ids stay reserved
                    memo[id(obj)] = tokens
            total += tokens
        return total

    def expand(self, objs: Iterable[Any]) -> list[Message]:
        """Map AutoGen messages back to ctxmgr messages (a result message to all its tools)."""
        out: list[Message] = []
        for obj in objs:
            entry = self._by_obj.get(id(obj))
            out.extend(entry[1] if entry and entry[0] is obj else _from_autogen(obj, self.peer))
        return out

    def _feed(self, new: list[Message]) -> None:
        from autogen_core.models import FunctionExecutionResultMessage

        added: list[Any] = []
        rebuild = False
        i = 0
        while i < len(new):
            message = new[i]
            if message.role != "tool":
                for call in message.tool_calls:
                    self._call_names[call.id] = call.name
                added.append(self._register(_to_autogen(message), [message]))
                i += 1
                continue
            j = i
            while j < len(new) and new[j].role == "tool":
                j += 1
            run = new[i:j]
            results = _tool_results(run, self._call_names)
            previous = self._objs[-1] if self._objs and not added else None
            if (
                i == 0
                and self._fed
                and self._fed[-1].role == "tool"
                and isinstance(previous, FunctionExecutionResultMessage)
            ):
                # The tool results of one step were split across two fits: AutoGen adds them
                # as one message, so replace the previous result message with the merged one.
                self._objs.pop()
                earlier = self._by_obj.pop(id(previous))[1]
                self._tokens.pop(id(previous), None)
                merged = FunctionExecutionResultMessage(content=[*previous.content, *results])
                added.append(self._register(merged, [*earlier, *run]))
                rebuild = True
            else:
                result = FunctionExecutionResultMessage(content=results)
                added.append(self._register(result, list(run)))
            i = j
        self._objs.extend(added)
        context = self._context_obj

        async def add(objs: list[Any]) -> None:
            if rebuild:
                await context.clear()
            for obj in objs:
                await context.add_message(obj)

        _run(add(self._objs if rebuild else added))

    def _context(self) -> list[Message]:
        return self.expand(_run(self._context_obj.get_messages()))

    def _clone(self) -> _Session:
        # Same message objects in a fresh context (deepcopy would change their ids).
        clone = _AutogenSession(self.peer, self.budget, self.counter, self._factory)
        clone._objs = list(self._objs)
        clone._by_obj = dict(self._by_obj)
        clone._tokens = dict(self._tokens)
        clone._call_names = dict(self._call_names)
        context = clone._context_obj

        async def add_all() -> None:
            for obj in clone._objs:
                await context.add_message(obj)

        _run(add_all())
        return clone


def _buffer_size(budget: int) -> int:
    return max(1, budget // _TOKENS_PER_BUFFER_SLOT)


_AUTOGEN_SYSTEM_NOTE = (
    "The transcript's system message is added to the context as a SystemMessage so its "
    "retention can be measured, although AssistantAgent keeps system messages outside its "
    "model context."
)


class AutogenBuffered(PeerFitter):
    """AutoGen's ``BufferedChatCompletionContext`` (last N messages)."""

    name = "autogen.BufferedChatCompletionContext"
    extra = "autogen"
    notes = (
        "BufferedChatCompletionContext(buffer_size=budget//200), i.e. 10 / 20 / 40 messages "
        "at budgets 2000 / 4000 / 8000 (about 200 tokens per message); it counts messages, "
        "not tokens, so it can exceed the budget or leave it unused. The parallel tool "
        "results of one step are one AutoGen message (FunctionExecutionResultMessage), "
        f"counted as one buffer slot. {_AUTOGEN_SYSTEM_NOTE}"
    )

    def _open(self, transcript: Transcript, budget: int, counter: TokenCounter) -> FitSession:
        from autogen_core.model_context import BufferedChatCompletionContext

        size = _buffer_size(budget)
        return _AutogenSession(
            self.name, budget, counter, lambda _: BufferedChatCompletionContext(buffer_size=size)
        )


class AutogenHeadAndTail(PeerFitter):
    """AutoGen's ``HeadAndTailChatCompletionContext`` (first 2 + last N messages)."""

    name = "autogen.HeadAndTailChatCompletionContext"
    extra = "autogen"
    notes = (
        "HeadAndTailChatCompletionContext(head_size=2, tail_size=budget//200); counts "
        "messages, not tokens. Its 'Skipped N messages.' placeholder is a peer-made user "
        "message. The parallel tool results of one step are one AutoGen message. "
        f"{_AUTOGEN_SYSTEM_NOTE}"
    )

    def _open(self, transcript: Transcript, budget: int, counter: TokenCounter) -> FitSession:
        from autogen_core.model_context import HeadAndTailChatCompletionContext

        tail = _buffer_size(budget)
        return _AutogenSession(
            self.name,
            budget,
            counter,
            lambda _: HeadAndTailChatCompletionContext(head_size=2, tail_size=tail),
        )


@lru_cache(maxsize=1)
def _counting_client_class() -> type:
    """Build (once) a ``ReplayChatCompletionClient`` whose token counts use our counter."""
    from autogen_ext.models.replay import ReplayChatCompletionClient

    class CountingClient(ReplayChatCompletionClient):  # type: ignore[misc, valid-type]
        """Never asked for completions; ``count_tokens`` is the shared counter's."""

        def __init__(self, count: Callable[[Sequence[Any]], int], token_limit: int) -> None:
            super().__init__(chat_completions=[])
            self._count = count
            self._token_limit = token_limit

        def count_tokens(self, messages: Sequence[Any], *, tools: Sequence[Any] = ()) -> int:
            return self._count(messages)

        def remaining_tokens(self, messages: Sequence[Any], *, tools: Sequence[Any] = ()) -> int:
            return self._token_limit - self._count(messages)

    return CountingClient


class AutogenTokenLimited(PeerFitter):
    """AutoGen's ``TokenLimitedChatCompletionContext`` (experimental upstream)."""

    name = "autogen.TokenLimitedChatCompletionContext"
    extra = "autogen"
    notes = (
        "TokenLimitedChatCompletionContext(token_limit=budget) with a "
        "ReplayChatCompletionClient subclass whose count_tokens / remaining_tokens use the "
        "shared counter (tool schemas are not counted). While over the limit it drops the "
        "message in the middle of the list, one at a time, then drops a leading "
        "FunctionExecutionResultMessage; the parallel tool results of one step are one "
        f"AutoGen message, dropped together. {_AUTOGEN_SYSTEM_NOTE}"
    )

    def _open(self, transcript: Transcript, budget: int, counter: TokenCounter) -> FitSession:
        from autogen_core.model_context import TokenLimitedChatCompletionContext

        client_class = _counting_client_class()

        def factory(session: _AutogenSession) -> Any:
            client = client_class(session.count, budget)
            return TokenLimitedChatCompletionContext(client, token_limit=budget)

        return _AutogenSession(self.name, budget, counter, factory)
