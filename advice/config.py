"""Settings of `pipeline.py score` and `pipeline.py serve`."""
from __future__ import annotations

from dataclasses import dataclass

from pawcore.config import DeviceOptions, RunOptions, check_option, in_range, option


@dataclass
class AdviceOptions(DeviceOptions, RunOptions):
    """What score and serve share: the run whose submission's ensemble they replay, and the crop search."""

    ensemble: str = option("", "ensemble.json written by infer (default: <artifacts-dir>/<run>/ensemble.json; give "
                           "it when infer ran with --out elsewhere).", group="data")
    min_crop: float = option(0.5, "Smallest share of each side a suggested crop keeps, in (0, 1].",
                             check=in_range(0, 1, low_open=True))


def check_min_crop(min_crop: float) -> None:
    """--min-crop's declared check, for callers that pass the value directly (a ConfigError if it fails)."""
    check_option(AdviceOptions, "min_crop", min_crop)


@dataclass
class ScoreConfig(AdviceOptions):
    photos: tuple[str, ...] = option((), "Photo files (JPEG, PNG, WebP...), one or more.", required=True,
                                     positional=True, metavar="PHOTO")
    json: bool = option(False, "Print a JSON list, one object per photo.")
    suggest_crop: bool = option(False, "Search crops; one is suggested only when its held-out gain (scored by the "
                                "half of the folds that did not choose it) is clearly positive, else keep the photo.")
    heatmap: str = option("", "Write the occlusion map of the final score over each photo to DIR (checked, or "
                          "created, before any work), named <stem>-heatmap.png; photos whose stems clash (a/x.jpg, "
                          "b/x.jpg, x.png; case ignored) get -2, -3, ... after the stem, in the order given.",
                          metavar="DIR")


@dataclass
class ServeConfig(AdviceOptions):
    host: str = option("127.0.0.1", "Interface to bind (default: loopback only, so no other machine can reach it).")
    port: int = option(8000, "Port to listen on.", check=in_range(1, 65535))
    max_upload_mb: float = option(20.0, "Largest request accepted, in MB; bigger ones get HTTP 413.",
                                  check=in_range(0, low_open=True))
    max_files: int = option(12, "Most photos in one request.", check=in_range(1))
