"""``ctxmgr bench``: replay transcripts through ctxmgr configs and peers, write a report.

Mounted by the main CLI (``app.add_typer(cli.app, name="bench")``: the command is this
Typer app's callback), or call :func:`run_bench` from Python. Errors print one line
(``error: ...``) on stderr and exit with status 1; a transcript file that fails to load
is listed at the end and the run goes on.
"""

from __future__ import annotations

import datetime as _dt
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ctxmgr.bench.ctxmgr_fitter import CtxmgrFitter
from ctxmgr.bench.metrics import DEFAULT_PRICES, PRICE_TABLES, PriceTable, get_prices
from ctxmgr.bench.replay import Replay, TranscriptResult
from ctxmgr.bench.transcript import Transcript
from ctxmgr.errors import ConfigError, CtxmgrError, DatasetError, TranscriptError

__all__ = [
    "DEFAULT_BUDGETS",
    "DEFAULT_DATASETS",
    "DEFAULT_PRESETS",
    "QUICK_PROBES",
    "QUICK_TRANSCRIPTS",
    "BenchRun",
    "app",
    "bench",
    "parse_budgets",
    "run_bench",
]

DEFAULT_PRESETS: tuple[str, ...] = ("fifo", "relevance", "summary", "agent")
"""Configs benchmarked when neither ``--preset`` nor ``--config`` is given."""
DEFAULT_DATASETS: tuple[str, ...] = ("locomo", "tau-bench")
"""Datasets (:func:`ctxmgr.bench.datasets.dataset_path`) replayed when no PATHS are given."""
DEFAULT_BUDGETS = "2000,4000,8000"
QUICK_TRANSCRIPTS = 2
"""``--quick``: transcripts kept per dataset (the first ones, in file order)."""
QUICK_PROBES = 20
"""``--quick``: qa probes kept per transcript (the first ones); action probes are all kept."""

_VERSIONED = (
    "ctxmgr-llm",
    "tiktoken",
    "langchain-core",
    "langchain",
    "llama-index-core",
    "autogen-core",
    "autogen-agentchat",
    "autogen-ext",
    "matplotlib",
)


def parse_budgets(text: str) -> list[int]:
    """Parse ``"N[,N...]"`` into sorted distinct positive token budgets.

    Raises:
        ConfigError: not a comma-separated list of positive integers.
    """
    parts = [p.strip().replace("_", "") for p in str(text).split(",")]
    budgets = []
    for part in parts:
        if not part.isdigit() or int(part) <= 0:
            raise ConfigError(
                f"expected positive integers separated by commas (e.g. 2000,4000,8000), "
                f"got {text!r}",
                key="--budget",
            )
        budgets.append(int(part))
    return sorted(set(budgets))


@dataclass
class BenchRun:
    """What :func:`run_bench` produced.

    Attributes:
        out: the output directory.
        json_path: ``results.json``.
        csv_path: ``results.csv``.
        plots: the PNG files.
        rows: the report rows (see :data:`ctxmgr.bench.results.ROW_KEYS`).
        meta: the run description written under ``"meta"``.
        load_errors: one line per transcript file (or dataset) that failed to load.
        results: the per-transcript results.
    """

    out: Path
    json_path: Path
    csv_path: Path
    plots: list[Path]
    rows: list[dict[str, Any]]
    meta: dict[str, Any]
    load_errors: list[str] = field(default_factory=list)
    results: list[TranscriptResult] = field(default_factory=list)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in _VERSIONED:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def _fitters(presets: Sequence[str], configs: Sequence[Path], peers: str) -> list[Any]:
    from ctxmgr.bench.peers import make_peers
    from ctxmgr.manager import ContextManager

    ctx: list[CtxmgrFitter] = [CtxmgrFitter(p) for p in presets]
    for path in configs:
        if not Path(path).is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist", key="--config")
        ctx.append(CtxmgrFitter(Path(path).stem, Path(path)))
    if not presets and not configs:
        ctx = [CtxmgrFitter(p) for p in DEFAULT_PRESETS]
    names = [f.name for f in ctx]
    for fitter in ctx:
        if names.count(fitter.name) > 1:  # two files with one stem: label by path
            fitter.name = str(fitter.config)
        # fail fast on a bad config, before any replay starts
        ContextManager.from_config(
            fitter.config, max_context_tokens=8000, reserve_output_tokens=0, counter="approx"
        )
    try:
        peer_fitters = make_peers(peers)
    except ImportError as exc:
        raise ConfigError(str(exc), key="--peers") from None
    return [*ctx, *peer_fitters]


def _load(
    paths: Sequence[Path], format: str | None
) -> tuple[list[Transcript], list[str], list[str]]:
    """Return ``(transcripts, sources, load error lines)``."""
    from ctxmgr.bench.loaders import load_many, load_transcripts

    errors: list[str] = []
    if paths:
        transcripts, failures = load_many(list(paths), format=format)
        return transcripts, [str(p) for p in paths], [str(e) for e in failures]
    from ctxmgr.bench.datasets import dataset_path

    transcripts = []
    sources = []
    for name in DEFAULT_DATASETS:  # --format is for PATHS; datasets are detected
        try:
            path = dataset_path(name)
            transcripts.extend(load_transcripts(path))
            sources.append(str(path))
        except (DatasetError, TranscriptError) as exc:
            errors.append(str(exc))
    return transcripts, sources, errors


def _quick(transcripts: list[Transcript]) -> list[Transcript]:
    kept: list[Transcript] = []
    per_dataset: dict[str, int] = {}
    for t in transcripts:
        if per_dataset.get(t.dataset, 0) >= QUICK_TRANSCRIPTS:
            continue
        per_dataset[t.dataset] = per_dataset.get(t.dataset, 0) + 1
        qa = [p for p in t.probes if p.kind == "qa"][:QUICK_PROBES]
        probes = [p for p in t.probes if p.kind != "qa" or p in qa]
        kept.append(Transcript(t.id, t.dataset, t.source, t.messages, probes, dict(t.metadata)))
    return kept


def _command(
    paths: Sequence[Path],
    presets: Sequence[str],
    configs: Sequence[Path],
    peers: str,
    budget: str,
    out: Path,
    jobs: int,
    format: str | None,
    quick: bool,
    cv: int = 0,
    prices: str = DEFAULT_PRICES.name,
) -> str:
    words = ["ctxmgr", "bench", *(str(p) for p in paths)]
    words += [f"--preset {p}" for p in presets] + [f"--config {c}" for c in configs]
    words += [f"--peers {peers}", f"--budget {budget}", f"--out {out}", f"--jobs {jobs}"]
    if format:
        words.append(f"--format {format}")
    if quick:
        words.append("--quick")
    if cv:
        words.append(f"--cv {cv}")
    if prices != DEFAULT_PRICES.name:
        words.append(f"--prices {prices}")
    return " ".join(words)


_CV_KEYS = (
    "evidence_probes",
    "evidence_recall_all",
    "action_values",
    "action_arg_recall",
    "prefix_stability",  # a choice constrained on cache stability is checked per fold too
    "prefix_reuse",
)


def _cv_rows(
    results: Sequence[Any], datasets: dict[str, list[Transcript]], k: int, prices: PriceTable
) -> dict[str, Any]:
    """Rows of each fold (transcript i of a dataset in fold i mod k): recall and cache metrics."""
    from ctxmgr.bench.results import aggregate

    fold_of = {t.id: i % k for group in datasets.values() for i, t in enumerate(group)}
    rows = []
    for fold in range(k):
        for row in aggregate([r for r in results if fold_of[r.transcript_id] == fold], prices):
            rows.append(
                {
                    "config": row["config"],
                    "dataset": row["dataset"],
                    "budget": row["budget"],
                    "fold": fold,
                    "transcripts": row["transcripts"] + row["errors"],
                    **{key: row[key] for key in _CV_KEYS},
                }
            )
    return {"folds": k, "split": "transcript i of each dataset -> fold i mod K", "rows": rows}


def run_bench(
    paths: Sequence[Path] = (),
    preset: Sequence[str] = (),
    config: Sequence[Path] = (),
    peers: str = "all",
    budget: str = DEFAULT_BUDGETS,
    out: Path = Path("bench-results"),
    jobs: int = 2,
    format: str | None = None,
    quick: bool = False,
    cv: int = 0,
    *,
    prices: PriceTable = DEFAULT_PRICES,
    counter: Any = None,
    console: Console | None = None,
    progress: bool = True,
) -> BenchRun:
    """Run the benchmark and write ``results.json``, ``results.csv`` and three PNGs.

    Args:
        paths: transcript files or directories; empty: the default datasets
            (:data:`DEFAULT_DATASETS`, found with :func:`ctxmgr.bench.datasets.dataset_path`).
        preset: ctxmgr preset names; with ``config`` empty too: :data:`DEFAULT_PRESETS`.
        config: ctxmgr config files (row label: the file's stem).
        peers: ``"all"``, ``"none"`` or comma-separated peer names.
        budget: ``"N[,N...]"``, effective limits in tokens.
        out: output directory (created).
        jobs: worker processes.
        format: transcript format for every file of ``paths``, or ``None`` to detect it.
        quick: keep :data:`QUICK_TRANSCRIPTS` transcripts per dataset and
            :data:`QUICK_PROBES` qa probes per transcript (for tests and smoke runs).
        cv: with K >= 2, also score every config on K folds of each dataset's
            transcripts, split by file entry (transcript i of a dataset is in fold i mod K,
            as ``benchmarks/tune_relevance.py`` splits when it tunes), in
            ``meta["cv"]``: a fold is a held-out figure for a tuned config when its
            parameters were chosen on the other folds.
        prices: price table for the cost columns (a :data:`~ctxmgr.bench.metrics.PRICE_TABLES`
            preset, ``get_prices(name)``, or your own); recorded in ``meta["prices"]``.
        counter: the token counter (default: ``get_counter()``, tiktoken ``cl100k_base``).
        console: where the table and messages go (default: stdout).
        progress: show a progress bar on stderr.

    Raises:
        CtxmgrError: bad options, an unknown preset/peer, or no transcript could be loaded.
    """
    from ctxmgr.bench.plots import plot_all
    from ctxmgr.bench.results import aggregate, print_table, write_results
    from ctxmgr.tokens import get_counter

    if console is None:
        console = Console()
        if not console.is_terminal:  # piped/redirected: do not squeeze tables to 80 columns
            console = Console(width=160)
    if progress:
        progress = Console(stderr=True).is_terminal
    started = time.perf_counter()
    if jobs < 1:
        raise ConfigError(f"must be >= 1, got {jobs}", key="--jobs")
    if cv == 1 or cv < 0:
        raise ConfigError(f"must be 0 (off) or >= 2, got {cv}", key="--cv")
    budgets = parse_budgets(budget)
    fitters = _fitters(list(preset), list(config), peers)
    if not fitters:
        raise ConfigError("nothing to benchmark: no config and --peers none", key="--peers")
    transcripts, sources, load_errors = _load(list(paths), format)
    if quick:
        transcripts = _quick(transcripts)
    if not transcripts:
        detail = f": {load_errors[0]}" if load_errors else ""
        raise TranscriptError(f"no transcripts to replay{detail}")
    counter = get_counter(counter)

    datasets: dict[str, list[Transcript]] = {}
    for t in transcripts:
        datasets.setdefault(t.dataset, []).append(t)
    trace_ids = [group[0].id for group in datasets.values()]
    replay = Replay(
        fitters,
        budgets,
        transcripts,
        counter,
        jobs=jobs,
        prices=prices,
        trace_ids=trace_ids,
        progress=progress,
    )
    results = replay.run()
    rows = aggregate(results, prices)
    meta: dict[str, Any] = {
        "command": _command(
            paths, preset, config, peers, budget, out, jobs, format, quick, cv, prices.name
        ),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "counter": counter.name,
        "budgets": budgets,
        "configs": [{"name": f.name, "kind": f.kind, "notes": f.notes} for f in fitters],
        "datasets": {name: len(group) for name, group in datasets.items()},
        "sources": sources,
        "quick": quick,
        "jobs": jobs,
        "prices": asdict(prices),
        "traced_transcripts": trace_ids,
        "load_errors": load_errors,
        "elapsed_s": None,
    }
    if cv:
        meta["cv"] = _cv_rows(results, datasets, cv, prices)
    out = Path(out)
    json_path, csv_path = write_results(rows, meta, out)  # written again below with timing
    plots = plot_all(rows, results, out)
    meta["elapsed_s"] = round(time.perf_counter() - started, 1)
    write_results(rows, meta, out)

    print_table(rows, console)
    failed = [r for r in rows if r["errors"]]
    for row in failed:
        console.print(
            f"[yellow]{row['config']} @ {row['budget']} on {row['dataset']}: "
            f"{row['errors']} transcript(s) failed; first: {row['first_error']}[/]",
            soft_wrap=True,
        )
    if load_errors:
        console.print(f"[yellow]{len(load_errors)} transcript file(s) failed to load:[/]")
        for line in load_errors:
            console.print(f"  {line}", soft_wrap=True, markup=False)
    console.print(
        f"Report: {json_path} (also {csv_path.name}, {', '.join(p.name for p in plots)}) "
        f"in {meta['elapsed_s']} s",
        soft_wrap=True,
        markup=False,
    )
    return BenchRun(out, json_path, csv_path, plots, rows, meta, load_errors, results)


app = typer.Typer(
    help="Replay recorded transcripts through ctxmgr configs and peer libraries.",
    add_completion=False,
    # the command is the app's callback (so `add_typer(app, name="bench")` gives
    # `ctxmgr bench ...`); let options follow the PATHS as with a plain command
    context_settings={"allow_interspersed_args": True},
)


@app.callback(invoke_without_command=True)
def bench(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Transcript files or directories (default: the LoCoMo and tau-bench datasets).",
            show_default=False,
        ),
    ] = None,
    preset: Annotated[
        list[str] | None,
        typer.Option(
            "--preset",
            help="ctxmgr preset to benchmark (repeatable; default: fifo, relevance, summary, "
            "agent unless --config is given).",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        list[Path] | None,
        typer.Option(
            "--config", help="ctxmgr config file to benchmark (repeatable).", show_default=False
        ),
    ] = None,
    peers: Annotated[
        str, typer.Option("--peers", help="Peer policies: all, none, or comma-separated names.")
    ] = "all",
    budget: Annotated[
        str, typer.Option("--budget", help="Token budgets (effective limits): N[,N...].")
    ] = DEFAULT_BUDGETS,
    out: Annotated[
        Path, typer.Option("--out", help="Output directory for results and plots.")
    ] = Path("bench-results"),
    jobs: Annotated[int, typer.Option("--jobs", help="Worker processes.")] = 2,
    format: Annotated[
        str | None,
        typer.Option(
            "--format", help="Transcript format for every file in PATHS (default: detect)."
        ),
    ] = None,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help=f"Smoke run: {QUICK_TRANSCRIPTS} transcripts per dataset, {QUICK_PROBES} qa "
            "probes per transcript.",
        ),
    ] = False,
    prices: Annotated[
        str,
        typer.Option(
            "--prices",
            help="Price table for cost_usd / cost_cached_usd: "
            + ", ".join(PRICE_TABLES)
            + " (provider prompt-cache rules included; docs/bench.md).",
        ),
    ] = DEFAULT_PRICES.name,
    cv: Annotated[
        int,
        typer.Option(
            "--cv",
            help="Also report recall on K folds of each dataset (transcript i -> fold i mod K) "
            "in results.json meta.cv: held-out figures for configs tuned on the other folds.",
        ),
    ] = 0,
) -> None:
    """Replay transcripts through context policies and report what each keeps, loses and costs.

    Writes results.json, results.csv and three PNG plots into --out. No LLM is called.
    """
    try:
        run_bench(
            paths or [],
            preset or [],
            config or [],
            peers,
            budget,
            out,
            jobs,
            format,
            quick,
            cv,
            prices=get_prices(prices),
        )
    except (CtxmgrError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        raise typer.Exit(130) from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
