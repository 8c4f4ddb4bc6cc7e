"""One place that turns a user-facing error into a one-line message and an exit code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from trainer.config import ConfigError
from trainer.errors import DataError, TrainerError

from .presets import PresetError


class SweepError(RuntimeError):
    """A sweep cannot start or go on for a reason the user can fix; one line."""


class RunFolderError(RuntimeError):
    """A path is not a readable run folder; one line."""


USER_ERRORS = (ConfigError, PresetError, DataError, TrainerError, SweepError, RunFolderError)


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

