"""Errors a user can act on: one line saying which file, which column, what was expected."""


class SlowfastError(Exception):
    """Base class for errors that the command-line entry points print as one line."""


class ParamsError(SlowfastError):
    """params.yaml is missing a key or holds a value of the wrong kind."""


class StreamError(SlowfastError):
    """A stream on disk does not meet the data contract."""


class CheckpointError(SlowfastError):
    """A saved model or state is missing, truncated or not a checkpoint."""
