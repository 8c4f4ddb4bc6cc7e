"""The `analysis` command: tables, learning curves, Grad-CAM and the markdown report of a sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from sweeps.errors import user_errors

app = typer.Typer(help="Read a sweep's run folder: tables, curves, Grad-CAM, the markdown report.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)



@app.callback()
def main() -> None:
    """Read a sweep's run folder: tables, curves, Grad-CAM, the markdown report."""


RunPath = Annotated[str, typer.Argument(help="Run folder (or s3:// / gs:// URI) that `sweep run` printed.")]


@app.command()
def table(run_path: RunPath,
          top: Annotated[Optional[int], typer.Option(help="Only the K best trials.")] = None,
          fmt: Annotated[str, typer.Option("--format", help="md (markdown) or csv.")] = "md",
          out: Annotated[Optional[Path], typer.Option("-o", "--out", help="Write to this file, not stdout.")] = None
          ) -> None:
    """A row per trial: id, status, epochs trained, best metric, and its parameters."""
    from .results import results_table

    with user_errors():
        if fmt not in ("md", "csv"):
            raise typer.BadParameter("--format takes md or csv")
        frame = results_table(run_path, top=top)
        text = frame.to_csv(index=False) if fmt == "csv" else frame.to_markdown(index=False, floatfmt=".4g")
        if out is not None:
            out.write_text(text if text.endswith("\n") else text + "\n")
        else:
            typer.echo(text.rstrip("\n"))


if __name__ == "__main__":
    app()
