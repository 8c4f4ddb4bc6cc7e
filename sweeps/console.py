"""What both command lines (`sweep`, `analysis`) say of a problem: one `error:` line and an
exit code for every error a user can fix, usage errors included, and resweep's warnings as
`warning:` lines."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from typer.core import TyperGroup

try:  # typer 0.2x carries its own copy of click
    from typer._click import exceptions as usage
    from typer._click.termui import echo
except ImportError:  # older typer: click itself
    from click import echo
    from click import exceptions as usage  # type: ignore[no-redef]

from sweeps.errors import RunFolderError, SweepError
from sweeps.presets import PresetError
from sweeps.runfolder.storage import StoreError
from trainer.config import ConfigError
from trainer.errors import DataError, TrainerError

USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, PresetError, DataError, TrainerError, SweepError,
                                            RunFolderError, StoreError)

@contextmanager
def user_errors(extra: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Print `error: <message>` on stderr and exit 2 for the errors a user can fix."""
    try:
        yield
    except (*USER_ERRORS, *extra) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        typer.echo(f"error: {message}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None

def show_warnings() -> None:
    """resweep's own warnings (skipped images, ...) as `warning: ...` lines on stderr."""
    logger = logging.getLogger("resweep")
    if not logger.handlers:
        handler = _StderrNow()
        handler.setFormatter(logging.Formatter("warning: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)

class _StderrNow(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a warning comes (a test runner swaps it per command)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass

class OneLineErrors(TyperGroup):
    """A command group whose usage errors (a missing argument, a value out of range, an unknown
    command) are one `error:` line naming the fix, as every other bad input is, instead of
    click's usage block; `sweep` alone still prints the help."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except usage.NoArgsIsHelpError:
            code = 0  # the help, which typer has printed while building this error
        except usage.UsageError as err:
            command = err.ctx.command_path if err.ctx is not None else (prog_name or self.name)
            message = err.format_message().replace("\n", " ").rstrip(".")
            echo(f"error: {message}; see `{command} --help`", err=True)
            code = err.exit_code
        except typer.Abort:
            echo("interrupted", err=True)
            code = 130
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code
