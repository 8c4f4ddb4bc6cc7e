"""The errors a user can fix that the sweep side raises (each says one line); the CLIs print
them through `sweeps.console`."""


class SweepError(RuntimeError):
    """A sweep cannot start or go on for a reason the user can fix; one line."""


class RunFolderError(RuntimeError):
    """A path is not a readable run folder; one line."""
