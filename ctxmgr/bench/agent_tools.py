"""SWE-agent replay for the agent-facing context tools: tokens, cache cost, needed outputs.

Each assistant message of a recorded trajectory is one model call; its request is the
history before it, fitted by a ctxmgr config. Per config and run this measures:

* **tokens sent**: the sum over calls of the fitted request's tokens;
* **cost** without a prompt cache (every input token at the base price) and with one
  (the longest message prefix shared with the previous request read from the cache at
  0.1x, the rest written at 1.25x), the ``claude-sonnet-4`` preset of
  :data:`ctxmgr.bench.metrics.PRICE_TABLES` (Anthropic's prompt-caching multipliers at
  $3 per million input tokens; no minimum prompt length applied here);
* **needed tool outputs**: a call *needs* an earlier tool result when one of its tool
  call's argument words (identifiers, paths, numbers of 6+ characters not in the system
  prompt or task) occurs in that result, the evidence the agent acted on. For each such
  pair: was the result in the request whole, cleared to a placeholder, offloaded to a
  preview, or dropped; and for those not whole, would ``search_history`` with those
  words return it among the top 5 (``recallable``).

No model is called. Run it::

    python -m ctxmgr.bench.agent_tools ../shared/data/swe-agent/*.traj
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ctxmgr.bench.metrics import PRICE_TABLES
from ctxmgr.manager import ContextManager
from ctxmgr.messages import Message
from ctxmgr.tokens import get_counter
from ctxmgr.tools import search_archive

__all__ = ["CONFIGS", "RunMetrics", "main", "replay_run"]

_PRICES = PRICE_TABLES["claude-sonnet-4"]  # the one documented table (ctxmgr.bench.metrics)
PRICE_PER_TOKEN = _PRICES.input_per_mtok / 1_000_000  # USD per input token
CACHE_READ = 0.1  # x base: _PRICES.cached_input_per_mtok / _PRICES.input_per_mtok
CACHE_WRITE = 1.25  # x base: _PRICES.cache_write_per_mtok / _PRICES.input_per_mtok
_WORD = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]{5,}")


def _cfg(budget: int, *strategies: dict[str, Any]) -> dict[str, Any]:
    return {
        "max_context_tokens": budget,
        "reserve_output_tokens": 1000,
        "strategies": list(strategies),
    }


#: The configs compared: no management, observation masking (keep the last tool results),
#: masking that clears in batches of at least 2,000 tokens, and offload at arrival.
CONFIGS: dict[str, dict[str, Any]] = {
    "raw": _cfg(1_000_000, {"name": "pin_and_slide"}),
    "masking": _cfg(
        8000, {"name": "tool_pair_safe", "keep_recent_tool_results": 3}, {"name": "pin_and_slide"}
    ),
    "masking+clear_at_least": _cfg(
        8000,
        {"name": "tool_pair_safe", "keep_recent_tool_results": 3, "clear_at_least": 2000},
        {"name": "pin_and_slide"},
    ),
    "offload": _cfg(
        8000,
        {"name": "offload", "offload_over_tokens": 800, "preview_tokens": 200},
        {"name": "tool_pair_safe", "keep_recent_tool_results": 3},
        {"name": "pin_and_slide"},
    ),
}


@dataclass
class RunMetrics:
    """What one config did on one trajectory. Tokens as the cl100k counter counts them."""

    calls: int = 0
    tokens_sent: int = 0
    cached_tokens: int = 0
    cost_no_cache: float = 0.0
    cost_cache: float = 0.0
    needed: dict[str, int] = field(
        default_factory=lambda: {"whole": 0, "cleared": 0, "offloaded": 0, "dropped": 0}
    )
    recallable: int = 0

    def add(self, other: RunMetrics) -> None:
        """Add ``other``'s counts to this one (for totals over runs)."""
        self.calls += other.calls
        self.tokens_sent += other.tokens_sent
        self.cached_tokens += other.cached_tokens
        self.cost_no_cache += other.cost_no_cache
        self.cost_cache += other.cost_cache
        for k, v in other.needed.items():
            self.needed[k] += v
        self.recallable += other.recallable


def _anchors(message: Message, known: str) -> set[str]:
    words: set[str] = set()
    for call in message.tool_calls:
        words.update(w.strip("./-") for w in _WORD.findall(call.arguments))
    return {w for w in words if len(w) >= 6 and w not in known}


def replay_run(messages: Sequence[Message], config: Mapping[str, Any]) -> RunMetrics:
    """Replay one trajectory (oldest first, not mutated) through ``config``.

    Returns:
        The run's :class:`RunMetrics`.

    Raises:
        ContextOverflowError: the config cannot fit a request.
    """
    counter = get_counter()
    mgr = ContextManager.from_config(dict(config), counter=counter)
    known = " ".join(m.text for m in messages if m.role in ("system", "user"))
    out = RunMetrics()
    previous: list[Message] = []
    for i, msg in enumerate(messages):
        if msg.role != "assistant" or i == 0:
            continue
        fitted, report = mgr.fit(messages[:i])
        out.calls += 1
        out.tokens_sent += report.tokens_after
        shared = 0
        for a, b in zip(previous, fitted):
            if a is not b and (a.id, a.fingerprint) != (b.id, b.fingerprint):
                break
            shared += counter.count_message(b)
        previous = fitted
        out.cached_tokens += shared
        out.cost_no_cache += report.tokens_after * PRICE_PER_TOKEN
        fresh = report.tokens_after - shared
        out.cost_cache += (shared * CACHE_READ + fresh * CACHE_WRITE) * PRICE_PER_TOKEN
        words = _anchors(msg, known)
        if not words:
            continue
        present = {m.id for m in fitted}
        shrunk = {str(m.metadata.get("original_id")): m.metadata.get("ctxmgr") for m in fitted}
        for earlier in messages[:i]:
            if earlier.role != "tool" or not any(w in earlier.text for w in words):
                continue
            if earlier.id in present:
                out.needed["whole"] += 1
                continue
            kind = shrunk.get(earlier.id)
            status = {"cleared_tool_result": "cleared", "offloaded_tool_result": "offloaded"}
            out.needed[status.get(str(kind), "dropped")] += 1
            hits = search_archive(mgr.state.archive, " ".join(sorted(words)), k=5)
            out.recallable += any(h.entry.message.id == earlier.id for h in hits)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Print a Markdown table of every config over the given ``.traj`` files."""
    from ctxmgr.bench.loaders import load_transcripts

    paths = list(sys.argv[1:] if argv is None else argv)
    runs = [t.messages for p in paths for t in load_transcripts(p)]
    print(f"{len(runs)} SWE-agent runs, {sum(len(r) for r in runs)} messages\n")
    print(
        "| config | tokens sent / run | cached share | $ / run no cache | $ / run cache "
        "| needed outputs | whole | cleared | offloaded | dropped | recallable@5 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, config in CONFIGS.items():
        total = RunMetrics()
        for run in runs:
            total.add(replay_run(run, config))
        n = max(1, len(runs))
        needed = sum(total.needed.values())
        gone = needed - total.needed["whole"]
        share = total.cached_tokens / max(1, total.tokens_sent)
        cells = [
            name,
            f"{total.tokens_sent / n:,.0f}",
            f"{share:.0%}",
            f"{total.cost_no_cache / n:.4f}",
            f"{total.cost_cache / n:.4f}",
            str(needed),
            *(str(total.needed[k]) for k in ("whole", "cleared", "offloaded", "dropped")),
            f"{total.recallable}/{gone}",
        ]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
