"""The project's own exceptions: each message says what was received, what is valid, and the fix."""


class PipelineError(Exception):
    """Base class: a problem the user can fix. `pipeline.py` prints it without a traceback."""


class ConfigError(PipelineError):
    """A bad option or config-file key."""


class DataError(PipelineError):
    """Problems in the input data (CSV rows, image files); `problems` holds each one's message."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or [message]


class ArtifactError(PipelineError):
    """An upstream stage's output is missing, incomplete or stale."""
