"""A/B of the append-only fit cost between two checkouts (per-fit overhead of a change).

Run the same script against the base tree and against this one, alternating::

    git archive <base-commit> | tar -x -C /tmp/ctxmgr_base
    ln -s ../strategies /tmp/ctxmgr_base/ctxmgr/strategies
    ln -s ../adapters /tmp/ctxmgr_base/ctxmgr/adapters
    (cd /tmp && PYTHONPATH=/tmp/ctxmgr_base $PWD/.venv/bin/python $PWD/benchmarks/bench_ab.py)
    .venv/bin/python benchmarks/bench_ab.py

Each line is three medians (200 appends to a 5,000-message history in a 1M window, as
``bench_fit.py`` case 1) and their median, for the code found first on the path.
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("CTXMGR_TIKTOKEN_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_fit import append_only

import ctxmgr


def main() -> None:
    """Print the append-only medians of the fifo and agent presets."""
    where = Path(ctxmgr.__file__).resolve().parent.parent
    for preset in ("fifo", "agent"):
        medians = [append_only(preset, 1_047_576)[0] for _ in range(3)]
        runs = " ".join(f"{m:.4f}" for m in medians)
        print(f"{where} {preset}: {runs} ms, median {statistics.median(medians):.4f} ms")


if __name__ == "__main__":
    main()
