"""User-facing error types.

Everything a user can cause by bad input (an unknown task, a missing data file, an
impossible config value, a diverging run) raises a subclass of `UserError`. `launch.py`
turns these into a one-line message and a non-zero exit status; any other exception is a
bug and keeps its traceback.
"""


class UserError(Exception):
  """Base class for errors caused by the user's input, not by a bug."""


class ConfigError(UserError, ValueError):
  """A config value is invalid or inconsistent."""


class DataError(UserError, FileNotFoundError):
  """A data file is missing or not in the expected format."""


class NonFiniteLossError(UserError, FloatingPointError):
  """Training produced a NaN or infinite loss."""


class CheckpointError(UserError, FileNotFoundError):
  """A checkpoint needed for evaluation is missing or unreadable."""


class WorkdirError(UserError, OSError):
  """A workdir is busy (another launch holds its lock) or cannot be made or written."""
