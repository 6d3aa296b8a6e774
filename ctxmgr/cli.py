"""The ``ctxmgr`` command line: ``fit``, ``strategies``, ``bench`` and ``datasets``.

Every error prints one line (``error: ...``) on stderr and exits non-zero; no traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ctxmgr.bench.datasets_cli import app as datasets_app
from ctxmgr.errors import CtxmgrError

__all__ = ["app", "main"]

app = typer.Typer(
    help="Keep an LLM agent's context window healthy: fit histories, list strategies, "
    "benchmark strategies on recorded transcripts.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(datasets_app, name="datasets", help="List and fetch the public benchmark datasets.")


def _one_line(message: str) -> str:
    """Collapse a multi-line message (a YAML parser's, say) into one line."""
    return " ".join(message.split())


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {_one_line(message)}", err=True)
    return typer.Exit(1)


@app.command()
def fit(
    path: Path = typer.Argument(..., help="Transcript file (OpenAI chat JSON/JSONL, ...)."),
    preset: str | None = typer.Option(None, help="Preset: fifo, relevance, summary, agent."),
    config: Path | None = typer.Option(None, help="Config file (.toml, .yaml, .json)."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", help="Context window, tokens."),
    reserve: int | None = typer.Option(None, help="Tokens reserved for the reply."),
    model: str | None = typer.Option(None, help="Model name (sets window and tokenizer)."),
    index: int = typer.Option(0, help="Which transcript of a file holding several (0-based)."),
    format: str | None = typer.Option(None, "--format", help="Transcript format (auto)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Fit one transcript and print the fitted messages and the report."""
    from ctxmgr.bench.loaders import load_transcripts
    from ctxmgr.manager import ContextManager
    from ctxmgr.messages import to_openai

    try:
        if preset and config:
            raise CtxmgrError("give --preset or --config, not both")
        transcripts = load_transcripts(path, format=format)
        if not transcripts:
            raise CtxmgrError(f"{path}: no transcript with messages")
        if not 0 <= index < len(transcripts):
            raise CtxmgrError(f"--index {index} out of range: {path} holds {len(transcripts)}")
        transcript = transcripts[index]
        source: Any = config if config is not None else (preset or "agent")
        manager = ContextManager.from_config(
            source, max_context_tokens=max_tokens, reserve_output_tokens=reserve, model=model
        )
        messages, report = manager.fit(transcript.messages)
    except (CtxmgrError, OSError) as exc:
        raise _fail(str(exc)) from None
    except RecursionError:
        raise _fail(
            f"{path}: nested too deeply to read (JSON deeper than Python's limit)"
        ) from None
    if as_json:
        payload = {"messages": [to_openai(m) for m in messages], "report": report.to_dict()}
        typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    console = Console()
    table = Table(title=f"{transcript.id}: {len(messages)} of {len(transcript.messages)} messages")
    table.add_column("#", justify="right")
    table.add_column("role")
    table.add_column("content", overflow="fold")
    for i, m in enumerate(messages):
        text = m.text if len(m.text) < 160 else m.text[:157] + "..."
        if m.tool_calls:
            text += " -> " + ", ".join(f"{c.name}({c.arguments[:60]})" for c in m.tool_calls)
        tag = m.metadata.get("ctxmgr")
        # Text, not markup: transcript text such as "[ctxmgr: no result ...]" is shown as is
        table.add_row(str(i), Text(m.role + (f" [{tag}]" if tag else "")), Text(text))
    console.print(table)
    console.print(Text(str(report)))
    for name in ("pinned", "cleared", "dropped", "summarized", "injected"):
        records = getattr(report, name)
        if records:
            console.print(
                f"[bold]{name}[/bold]: "
                + escape(
                    "; ".join(
                        f"{','.join(r.ids)} ({r.tokens} tok, {r.reason})" for r in records[:8]
                    )
                    + (f" ... (+{len(records) - 8})" if len(records) > 8 else "")
                )
            )


@app.command()
def strategies(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List installed strategies and their options."""
    from ctxmgr.plugins import get_strategy_types

    try:
        types = get_strategy_types()
    except CtxmgrError as exc:
        raise _fail(str(exc)) from None
    rows = []
    for name, cls in types.items():
        options = {
            key: {
                "default": field.get_default(call_default_factory=True),
                "type": getattr(field.annotation, "__name__", None)
                if isinstance(field.annotation, type)
                else str(field.annotation).replace("typing.", ""),
            }
            for key, field in cls.Options.model_fields.items()
        }
        rows.append(
            {
                "name": name,
                "class": cls.__qualname__,
                "module": cls.__module__,
                "summary": cls.summary,
                "options": options,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, default=str, indent=2))
        return
    table = Table(title="ctxmgr strategies")
    table.add_column("name")
    table.add_column("does")
    table.add_column("options (default)", overflow="fold")
    for row in rows:
        opts = ", ".join(f"{k}={v['default']!r}" for k, v in row["options"].items())
        table.add_row(row["name"], row["summary"], opts)
    Console().print(table)


try:  # the bench command lives with the bench package
    from ctxmgr.bench.cli import bench as _bench

    app.command(name="bench")(_bench)
except ImportError:  # pragma: no cover - only while the bench package is incomplete
    pass


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: every failure is one ``error: ...`` line and exit 1.

    Bad command-line values (``--max-tokens abc``, a missing argument) are reported the
    same way instead of with a usage box; ``--help`` and a bare ``ctxmgr`` still print help.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
    """
    try:
        code = app(args=argv, standalone_mode=False)
    except typer.TyperException as exc:  # usage errors: bad option values, missing args
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `ctxmgr` / `ctxmgr datasets`
            typer.echo(exc.format_message())
            sys.exit(0)
        typer.echo(f"error: {_one_line(exc.format_message())}", err=True)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(1)
    except CtxmgrError as exc:
        typer.echo(f"error: {_one_line(str(exc))}", err=True)
        sys.exit(1)
    except RecursionError:
        typer.echo("error: input nested too deeply to read", err=True)
        sys.exit(1)
    except OSError as exc:
        typer.echo(f"error: {_one_line(str(exc))}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
