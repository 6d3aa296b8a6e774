"""``offload``: a huge tool result is replaced by a preview the moment it arrives.

A tool result above ``offload_over_tokens`` never enters the context: at the fit that
first sees it, it is replaced by its head and tail plus a line naming its archive id, and
the full text is archived (``get_message(id)`` reads it back, in pages). This is the
practice of LangChain Deep Agents' filesystem middleware (large tool results evicted to a
file, a preview and the path left behind) and of the OpenAI Agents SDK's
``ToolOutputTrimmer``; it differs from ``tool_pair_safe``'s truncation in acting at
arrival, so the prompt-cache prefix never contains the full text.

Open tool steps (a parallel call still waiting for some results) are offloaded once they
close. A result marked ``pinned=True`` is never offloaded (pinned means verbatim).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import Field

from ctxmgr.hookspecs import hookimpl
from ctxmgr.messages import Message
from ctxmgr.segments import Segment
from ctxmgr.strategy import Strategy, StrategyOptions
from ctxmgr.window import Window

__all__ = ["Offload"]


class OffloadOptions(StrategyOptions):
    """Options of :class:`Offload`.

    Attributes:
        offload_over_tokens: offload a tool result larger than this many tokens.
        per_tool: tool name glob -> threshold in tokens, overriding
            ``offload_over_tokens``. First match wins.
        preview_tokens: tokens of head and tail kept in the preview (split evenly).
        exclude_tools: tool name globs never offloaded. The default excludes the recall
            tools: ``get_message`` pages its output itself, and offloading it would loop.
    """

    offload_over_tokens: int = Field(default=4000, gt=0)
    per_tool: dict[str, int] = Field(default_factory=dict)
    preview_tokens: int = Field(default=300, ge=0)
    exclude_tools: list[str] = Field(default_factory=lambda: ["get_message", "search_history"])


def preview(result: Message, tool: str, keep_tokens: int, counter: Any) -> Message:
    """Return the offload preview of ``result``: a notice naming its id, head and tail.

    Args:
        result: the tool result (not mutated).
        tool: the tool's name, for the notice.
        keep_tokens: tokens of head plus tail text to keep (estimated from the text's
            characters per token).
        counter: the token counter.
    """
    text = result.text
    total = counter.count_text(text)
    ratio = len(text) / max(1, total)
    half = int(keep_tokens * ratio / 2)
    notice = (
        f"[ctxmgr: the result of {tool} was offloaded ({total} tokens, {len(text)} characters). "
        f'Read it in full with get_message("{result.id}"); head and tail follow.]'
    )
    body = notice
    if half:
        body += f"\n{text[:half]}\n[... {len(text) - 2 * half} characters omitted ...]\n"
        body += text[-half:]
    meta = dict(result.metadata)
    meta.update({"ctxmgr": "offloaded_tool_result", "original_id": result.id})
    return Message.tool(body, result.tool_call_id or "", name=result.name, metadata=meta)


class Offload(Strategy):
    """Replaces tool results over a token threshold by a preview plus archive id on arrival."""

    name = "offload"
    summary = "replaces huge tool results by a head/tail preview and archive id as they arrive"
    Options = OffloadOptions
    options: OffloadOptions

    def threshold(self, tool: str) -> int | None:
        """The offload threshold for ``tool`` in tokens, or ``None`` to never offload it."""
        if any(fnmatch.fnmatchcase(tool, pat) for pat in self.options.exclude_tools):
            return None
        for pattern, limit in self.options.per_tool.items():
            if fnmatch.fnmatchcase(tool, pattern):
                return limit
        return self.options.offload_over_tokens

    @hookimpl
    def ctxmgr_arrive(
        self, window: Window, new_segments: Sequence[Segment]
    ) -> Mapping[int, tuple[Sequence[Message], str, str | None]] | None:
        """Offload the new tool results above their tool's threshold."""
        out: dict[int, tuple[Sequence[Message], str, str | None]] = {}
        count = window.counter.count_message
        for i, seg in enumerate(new_segments):
            if not seg.is_tool_exchange:
                continue
            names = {c.id: c.name for c in seg.head.tool_calls}
            new = list(seg.messages)
            changed = False
            for j, msg in enumerate(seg.messages[1:], start=1):
                if msg.metadata.get("ctxmgr") or msg.pinned:  # pinned means verbatim
                    continue
                tool = names.get(msg.tool_call_id or "", msg.name or "tool")
                limit = self.threshold(tool)
                if limit is None or count(msg) <= limit:
                    continue
                small = preview(msg, tool, self.options.preview_tokens, window.counter)
                if count(small) < count(msg):
                    new[j] = small
                    changed = True
            if changed:
                out[i] = (new, "offloaded on arrival", self.name)
        return out or None


@hookimpl
def ctxmgr_register_strategies(register: Callable[[type[Any]], None]) -> None:
    """Register :class:`Offload`."""
    register(Offload)
