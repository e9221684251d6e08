"""User-facing errors.

Anything raised as `S3FTError` is a problem with the user's input or environment (a bad
config key, a missing weight file, an unsupported architecture). The CLI prints its message
as one line and exits non-zero; a traceback is reserved for bugs in this project.
"""


class S3FTError(Exception):
    """A clear, one-line problem the user can fix."""


class ConfigError(S3FTError):
    """A configuration value or key is wrong."""


class ModelError(S3FTError):
    """A checkpoint cannot be loaded or saved as asked."""
