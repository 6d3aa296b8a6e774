"""Pause the cyclic garbage collector around a burst of allocations (a cold start).

Restoring a stored conversation decodes tens of thousands of small containers (message
dicts, segments, index term lists) in a few milliseconds. CPython runs a young-generation
collection every 700 container allocations and a full one after ten of those when enough
objects survived (https://devguide.python.org/internals/garbage-collector/); with a large
heap (the caller's history, the framework) a full collection costs tens of milliseconds,
so a cold fit paid for one about every other time. Paused, the survivors are promoted
once when the burst ends. Only short sections use it (reading a conversation from its
store and decoding it, resuming the window, decoding index rows; never around a model or
summarizer call), and the collector is re-enabled only if it was enabled before.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["paused_gc"]


@contextmanager
def paused_gc() -> Iterator[None]:
    """Disable the cyclic garbage collector inside the block (reference counting goes on)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
