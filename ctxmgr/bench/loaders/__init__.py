"""Load recorded transcripts from files: one registry of loaders, format auto-detected.

Built-in formats (:data:`FORMATS`):

* ``"openai"``: OpenAI Chat Completions messages (``tool_calls`` / role ``tool`` or the
  legacy ``function_call`` / role ``function``) as JSON or JSON Lines: a list of messages,
  an object with ``messages``, a list of such objects (or of message lists), or JSON Lines
  where each line is one conversation (object or list), or each line is one message (the
  whole file is then one conversation).
* ``"locomo"``: LoCoMo (``locomo10.json``): one transcript per sample plus one ``"qa"``
  probe per QA item.
* ``"tau-bench"``: tau-bench historical trajectories: one transcript per run plus at most
  one ``"action"`` probe.
* ``"swe-agent"``: SWE-agent ``.traj`` files (function-calling demonstrations).
* ``"toolbench"``: ToolBench answer files (``answer_generation.train_messages``).
* ``"langchain"``: a JSON list made by ``langchain_core.messages.messages_to_dict``.

Detection: the extension first (``.traj`` is ``"swe-agent"``; ``.jsonl`` / ``.ndjson`` are
``"openai"``), then the shape of the JSON content; anything that looks like OpenAI
messages is ``"openai"``. More formats can be added with :func:`register_loader`.

Loading is all-or-nothing per file: a bad file or record raises :class:`TranscriptError`
naming the file, the record index and the field, and nothing from that file is returned.
Message ids are made unique within each transcript (a repeated id gets ``"#2"``,
``"#3"``... appended) so metrics can trace every message by id, and so are tool-call ids
(some recordings reuse a call id for a later call; see ``_unique_call_ids``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

from ctxmgr.bench.loaders._common import _JSONL_SUFFIXES, Source
from ctxmgr.bench.transcript import Transcript
from ctxmgr.errors import TranscriptError

__all__ = [
    "FORMATS",
    "Detector",
    "LoadFunction",
    "Source",
    "detect_format",
    "load_many",
    "load_transcripts",
    "register_loader",
    "supported_suffixes",
]

# ---------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------
Detector = Callable[[Source], bool]
"""Returns whether a :class:`Source` has the format (may read ``source.data``)."""

LoadFunction = Callable[[Source], list[Transcript]]
"""Loads every transcript of a :class:`Source`; raises :class:`TranscriptError`."""


@dataclass(frozen=True)
class _Entry:
    name: str
    detect: Detector | None
    load: LoadFunction
    extensions: tuple[str, ...]


_REGISTRY: dict[str, _Entry] = {}
_FALLBACK = "openai"

FORMATS: tuple[str, ...] = ()
"""Names of the registered formats (rebound by :func:`register_loader`)."""


@overload
def register_loader(
    name: str,
    detect: Detector | None,
    load: LoadFunction,
    *,
    extensions: Sequence[str] = (),
) -> LoadFunction: ...


@overload
def register_loader(
    name: str,
    detect: Detector | None = None,
    load: None = None,
    *,
    extensions: Sequence[str] = (),
) -> Callable[[LoadFunction], LoadFunction]: ...


def register_loader(
    name: str,
    detect: Detector | None = None,
    load: LoadFunction | None = None,
    *,
    extensions: Sequence[str] = (),
) -> LoadFunction | Callable[[LoadFunction], LoadFunction]:
    """Register a transcript format; usable as a call or as a decorator.

    Example::

        @register_loader("mine", detect=lambda src: isinstance(src.data, dict)
                         and "my_turns" in src.data, extensions=[".mine"])
        def load_mine(src: Source) -> list[Transcript]: ...

    A name already registered is replaced. Files with one of ``extensions`` are given this
    format without looking at their content (later registrations win); otherwise formats
    registered later are tried first, and ``"openai"`` is always tried last.

    Args:
        name: the format name (what ``format=`` and :data:`FORMATS` use).
        detect: ``detect(source) -> bool``, or ``None`` to detect by extension only.
        load: ``load(source) -> list[Transcript]``; omitted when used as a decorator.
        extensions: file suffixes (``".traj"``) that imply this format; also added to the
            suffixes a directory is expanded to by :func:`load_many`.

    Returns:
        ``load`` itself, or a decorator registering the function it decorates.
    """
    exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)

    def add(func: LoadFunction) -> LoadFunction:
        global FORMATS
        _REGISTRY.pop(name, None)
        _REGISTRY[name] = _Entry(name, detect, func, exts)
        FORMATS = tuple(_REGISTRY)
        return func

    if load is not None:
        return add(load)
    return add


def supported_suffixes() -> tuple[str, ...]:
    """Return the suffixes :func:`load_many` expands directories to, sorted.

    That is ``.json`` plus every registered extension (``.jsonl``, ``.ndjson``, ``.traj``).
    """
    suffixes = {".json"}
    for entry in _REGISTRY.values():
        suffixes.update(entry.extensions)
    return tuple(sorted(suffixes))


def _detect(src: Source) -> str:
    suffix = src.path.suffix.lower()
    by_ext = [e.name for e in _REGISTRY.values() if suffix in e.extensions]
    if by_ext:
        return by_ext[-1]
    order = [e for e in reversed(_REGISTRY.values()) if e.name != _FALLBACK]
    if _FALLBACK in _REGISTRY:
        order.append(_REGISTRY[_FALLBACK])
    for entry in order:
        if entry.detect is not None and entry.detect(src):
            return entry.name
    raise src.error(
        f"unrecognised transcript format (known formats: {', '.join(FORMATS)}); "
        "pass the format explicitly"
    )


def detect_format(path: str | Path) -> str:
    """Return the format name of a transcript file.

    Args:
        path: the file.

    Returns:
        One of :data:`FORMATS`.

    Raises:
        TranscriptError: the file cannot be read, is not valid JSON (naming the line), or
            matches no known format (listing :data:`FORMATS`).
    """
    path = Path(path)
    if not path.is_file():
        raise TranscriptError("no such file", path=str(path))
    return _detect(Source(path))


def load_transcripts(path: str | Path, *, format: str | None = None) -> list[Transcript]:
    """Load every transcript in one file, all or nothing.

    Args:
        path: the file.
        format: one of :data:`FORMATS`, or ``None`` to detect it (see :func:`detect_format`).

    Returns:
        The transcripts in file order; ``[]`` for a valid file holding no conversation
        (e.g. a ToolBench answer without messages).

    Raises:
        TranscriptError: the file is missing, unreadable, invalid JSON (naming the line),
            of an unknown format, or a record is malformed (naming record and field).
        ImportError: the ``"langchain"`` format is used without langchain-core installed.
    """
    p = Path(path)
    if not p.is_file():
        what = "is a directory (use load_many)" if p.is_dir() else "no such file"
        raise TranscriptError(what, path=str(p))
    src = Source(p)
    if format is None:
        format = _detect(src)
    entry = _REGISTRY.get(format)
    if entry is None:
        raise src.error(f"unknown format {format!r} (known formats: {', '.join(FORMATS)})")
    try:
        return list(entry.load(src))
    except TranscriptError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise src.error(f"cannot load as {format!r}: {type(e).__name__}: {e}") from e


def _expand(paths: Sequence[str | Path], failures: list[TranscriptError]) -> Iterator[Path]:
    suffixes = supported_suffixes()
    seen: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(
                f
                for f in p.rglob("*")
                if f.is_file()
                and f.suffix.lower() in suffixes
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
            if not files:
                failures.append(
                    TranscriptError(
                        f"directory holds no transcript files ({', '.join(suffixes)})",
                        path=str(p),
                    )
                )
        elif p.exists():
            files = [p]
        else:
            failures.append(TranscriptError("no such file or directory", path=str(p)))
            continue
        for f in files:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                yield f


def load_many(
    paths: Sequence[str | Path], *, format: str | None = None
) -> tuple[list[Transcript], list[TranscriptError]]:
    """Load many files, going on past bad ones.

    Args:
        paths: files and directories; a directory expands recursively (sorted, hidden
            entries skipped) to its files with a :func:`supported_suffixes` suffix. A file
            reached twice is loaded once.
        format: one format for every file, or ``None`` to detect each file's format.

    Returns:
        ``(transcripts, failures)``: the transcripts of every file that loaded, in order,
        and one :class:`TranscriptError` per file (or missing path, or directory without
        transcript files) that did not.

    Raises:
        ImportError: a ``"langchain"`` file is met without langchain-core installed.
    """
    transcripts: list[Transcript] = []
    failures: list[TranscriptError] = []
    for f in _expand(paths, failures):
        try:
            transcripts.extend(load_transcripts(f, format=format))
        except TranscriptError as e:
            failures.append(e)
    return transcripts, failures


# ---------------------------------------------------------------------------------------
# Built-in registrations (FORMATS order)
# ---------------------------------------------------------------------------------------
from ctxmgr.bench.loaders import langchain, locomo, openai, swe, tau, toolbench  # noqa: E402

register_loader("openai", openai._detect_openai, openai._load_openai, extensions=_JSONL_SUFFIXES)
register_loader("locomo", locomo._detect_locomo, locomo._load_locomo)
register_loader("tau-bench", tau._detect_tau, tau._load_tau)
register_loader("swe-agent", swe._detect_swe, swe._load_swe, extensions=[".traj"])
register_loader("toolbench", toolbench._detect_toolbench, toolbench._load_toolbench)
register_loader("langchain", langchain._detect_langchain, langchain._load_langchain)
