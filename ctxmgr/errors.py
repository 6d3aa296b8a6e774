"""Exceptions raised by ctxmgr.

Hierarchy::

    CtxmgrError                      base of everything ctxmgr raises on purpose
    ├── ConfigError                  a config is invalid (names the key and allowed values)
    ├── InvalidHistoryError          a message history is malformed (names the message index)
    ├── InvalidStateError            saved session state cannot be loaded (names the key path)
    ├── ContextOverflowError         pinned content alone exceeds the effective token limit
    ├── StrategyError                a strategy failed (carries ``.strategy``)
    ├── AgentLoopError               the agent repeats the same tool call (``loop_guard``)
    ├── TranscriptError              a recorded transcript cannot be loaded (file, record, field)
    └── DatasetError                 a dataset cannot be fetched or fails its checksum

Every message names the cause and, where there is one, the fix. The CLI prints
``str(error)`` on one line and exits non-zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "AgentLoopError",
    "ConfigError",
    "ContextOverflowError",
    "CtxmgrError",
    "DatasetError",
    "InvalidHistoryError",
    "InvalidStateError",
    "StrategyError",
    "TranscriptError",
]


class CtxmgrError(Exception):
    """Base class of every error ctxmgr raises on purpose."""


class ConfigError(CtxmgrError, ValueError):
    """A configuration is invalid.

    Attributes:
        key: dotted path of the offending key (``"strategies[1].name"``), or ``None``.
        allowed: the allowed values for that key, when they form a finite set.
    """

    def __init__(self, message: str, *, key: str | None = None, allowed: Sequence[str] = ()):
        self.key = key
        self.allowed = tuple(allowed)
        text = message
        if key:
            text = f"{key}: {message}"
        if self.allowed:
            text += f" (allowed: {', '.join(self.allowed)})"
        super().__init__(text)


class InvalidHistoryError(CtxmgrError, ValueError):
    """A message history is malformed (raised under the ``strict`` repair policy).

    Attributes:
        index: 0-based index of the offending message in the input list (oldest first).
        problem: short machine-readable code, e.g. ``"orphan_tool_result"``.
    """

    def __init__(self, message: str, *, index: int | None = None, problem: str = "invalid"):
        self.index = index
        self.problem = problem
        prefix = f"message {index}: " if index is not None else ""
        super().__init__(f"{prefix}{message}")


class InvalidStateError(CtxmgrError, ValueError):
    """Saved session state is malformed; nothing was loaded.

    Attributes:
        key: path of the offending value (``"archive[3].message.content"``), or ``None``.
    """

    def __init__(self, message: str, *, key: str | None = None):
        self.key = key
        prefix = f"state {key}: " if key else "state: "
        super().__init__(prefix + message)


class ContextOverflowError(CtxmgrError):
    """What must be sent cannot fit the effective token limit, even after compaction.

    Raised before any request is sent. All numbers are tokens.

    Attributes:
        projected_tokens: tokens of the smallest context ctxmgr could build.
        max_context_tokens: the model's context window.
        headroom: ``effective_limit - projected_tokens`` (negative here).
        effective_limit: ``max_context_tokens - reserve_output_tokens``.
        contributors: the largest unevictable items as ``(description, tokens)``, largest first.
        provider_tokens: the prompt tokens the provider reported when it refused the
            request as too long, if known (``None`` when raised before sending).
        provider_limit: the provider's own limit from that refusal, if known.
        provider_message: the provider's error message, if the provider refused.
    """

    def __init__(
        self,
        *,
        projected_tokens: int,
        max_context_tokens: int,
        effective_limit: int,
        contributors: Sequence[tuple[str, int]] = (),
        provider_tokens: int | None = None,
        provider_limit: int | None = None,
        provider_message: str = "",
    ):
        self.projected_tokens = projected_tokens
        self.max_context_tokens = max_context_tokens
        self.effective_limit = effective_limit
        self.headroom = effective_limit - projected_tokens
        self.contributors = list(contributors)
        self.provider_tokens = provider_tokens
        self.provider_limit = provider_limit
        self.provider_message = provider_message
        top = ", ".join(f"{name} ({tokens} tokens)" for name, tokens in self.contributors[:5])
        if provider_message or provider_tokens is not None:
            numbers = ""
            if provider_tokens is not None:
                numbers = f" ({provider_tokens} tokens"
                numbers += f" > {provider_limit})" if provider_limit is not None else ")"
            super().__init__(
                f"context overflow: the provider refused the request as too long{numbers} "
                f"after ctxmgr compacted and retried once: {provider_message or 'n/a'}. "
                "Lower max_context_tokens or raise reserve_output_tokens so the local count "
                "leaves room for the provider's tokenizer."
            )
            return
        super().__init__(
            f"context overflow: {projected_tokens} tokens must be sent but the effective limit is "
            f"{effective_limit} (max_context_tokens={max_context_tokens}, "
            f"headroom={self.headroom}); largest unevictable parts: {top or 'n/a'}. "
            "Raise max_context_tokens, lower reserve_output_tokens, or unpin content."
        )

    @classmethod
    def from_provider(
        cls,
        message: str,
        provider_tokens: int | None = None,
        provider_limit: int | None = None,
        *,
        max_context_tokens: int | None = None,
        effective_limit: int | None = None,
    ) -> ContextOverflowError:
        """Build the error an adapter raises when the provider refuses a retried request too.

        Args:
            message: the provider's error message (e.g. Anthropic "prompt is too long: 210000
                tokens > 200000 maximum").
            provider_tokens: the prompt tokens the provider counted, if it said.
            provider_limit: the provider's limit, if it said.
            max_context_tokens: the manager's context window (default: ``provider_limit``).
            effective_limit: the manager's effective limit (default: ``provider_limit``).
        """
        limit = provider_limit or 0
        return cls(
            projected_tokens=provider_tokens or 0,
            max_context_tokens=max_context_tokens if max_context_tokens is not None else limit,
            effective_limit=effective_limit if effective_limit is not None else limit,
            provider_tokens=provider_tokens,
            provider_limit=provider_limit,
            provider_message=message or "context length exceeded",
        )


class StrategyError(CtxmgrError):
    """A strategy failed. ``.strategy`` is its config name."""

    def __init__(self, message: str, *, strategy: str):
        self.strategy = strategy
        super().__init__(f"strategy {strategy!r}: {message}")


class AgentLoopError(CtxmgrError):
    """The agent repeated a tool call (or result) too often; raised by ``loop_guard``.

    Repeated means the same tool with the same arguments, or the same result of a tool,
    seen ``raise_after`` times within the strategy's window of turns.

    Raised at the end of a fit, after the context was committed (the one error a fit
    does not roll back), so the manager stays usable: catching it and continuing (with
    a changed plan) works, and ``result`` still holds what the fit built.

    Attributes:
        result: the fit's :class:`~ctxmgr.report.FitResult` (context and report), set by
            the manager; ``None`` when raised elsewhere.
        tool: the tool's name.
        arguments: the repeated arguments (JSON text), or ``None`` for repeated results.
        count: how many times it was seen within the window.
        kind: ``"same_call"`` or ``"same_result"``.
    """

    def __init__(self, *, tool: str, arguments: str | None, count: int, kind: str):
        self.tool = tool
        self.arguments = arguments
        self.count = count
        self.kind = kind
        self.result: Any = None
        what = (
            f"called {tool}({arguments}) {count} times"
            if kind == "same_call"
            else f"got the same result from {tool} {count} times"
        )
        super().__init__(
            f"agent loop: the agent {what} within the loop_guard window. Change the plan or "
            "the prompt, or raise loop_guard's raise_after option."
        )


class TranscriptError(CtxmgrError, ValueError):
    """A recorded transcript cannot be loaded.

    Attributes:
        path: the file.
        record: index of the record (conversation / trajectory) in the file, if known.
        field: the offending field path inside the record, if known.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        record: int | str | None = None,
        field: str | None = None,
    ):
        self.path = path
        self.record = record
        self.field = field
        where = []
        if path:
            where.append(str(path))
        if record is not None:
            where.append(f"record {record}")
        if field:
            where.append(f"field {field!r}")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)


class DatasetError(CtxmgrError):
    """A dataset cannot be fetched, or its sha256 does not match."""
