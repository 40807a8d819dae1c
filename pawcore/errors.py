"""The project's own exceptions: each message says what was received, what is valid, and the fix."""


class PipelineError(Exception):
    """Base class: a problem the user can fix. `pipeline.py` prints it without a traceback."""


class ConfigError(PipelineError):
    """A bad option or config-file key."""


class DataError(PipelineError):
    """A problem in the input data (CSV rows, image files)."""


class ArtifactError(PipelineError):
    """An upstream stage's output is missing, incomplete or stale."""
