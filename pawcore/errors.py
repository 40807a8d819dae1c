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


def summarise(problems: list[str], where: str, limit: int = 30) -> str:
    """'N problem(s) in WHERE:' and the first `limit` problems, one per line."""
    shown = "\n  ".join(problems[:limit])
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{len(problems)} problem(s) in {where}:\n  {shown}{more}"


class ArtifactError(PipelineError):
    """An upstream stage's output is missing, incomplete or stale."""
