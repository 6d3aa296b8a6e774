"""``ctxmgr datasets``: list and download the public benchmark datasets.

Mounted by the main CLI as ``app.add_typer(datasets_cli.app, name="datasets")``.
Errors print one line (``error: ...``) on stderr and exit with status 1.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ctxmgr.bench.datasets import fetch, list_datasets
from ctxmgr.errors import DatasetError

__all__ = ["app"]

app = typer.Typer(
    help="List and download the public benchmark datasets (LoCoMo, tau-bench).",
    no_args_is_help=True,
    add_completion=False,
)


@app.command("list")
def list_command() -> None:
    """Show the known datasets, their licenses and where they are stored locally."""
    table = Table(title="ctxmgr datasets")
    table.add_column("name", style="bold")
    table.add_column("license")
    table.add_column("local copy")
    table.add_column("description")
    table.add_column("url", overflow="fold")
    for info in list_datasets():
        path = info["path"]
        table.add_row(
            info["name"],
            info["license"],
            str(path) if path else "[dim]not fetched[/dim]",
            info["description"],
            info["url"],
        )
    Console().print(table)


@app.command("fetch")
def fetch_command(
    name: Annotated[str, typer.Argument(help="Dataset name, as shown by `ctxmgr datasets list`.")],
    url: Annotated[
        str | None, typer.Option("--url", help="Download from this URL instead (a mirror).")
    ] = None,
    no_verify: Annotated[
        bool,
        typer.Option("--no-verify", help="Accept the file even if its sha256 does not match."),
    ] = False,
) -> None:
    """Download a dataset into the cache (CTXMGR_CACHE_DIR) and print its path."""
    try:
        path = fetch(name, url=url, verify=not no_verify)
    except DatasetError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(str(path))
