"""How a photo becomes a model's input, by name: the resize modes and the test-time views.

Declared here once (plain Python, so `--help` and the config checks import no image or tensor library)
and used by every stage: the image cache, training, fit-svr's features, infer, score and serve. A run
records both in each fold's config.json, and every later stage replays them from there.

Resize modes (pawcore.images.resize_square does the resizing):

    squash   the whole photo, stretched to a square (the default, and every run before the option)
    pad      the whole photo, aspect ratio kept, centred on a black square
    crop     the central square, the whole shorter side kept

Test-time views (stage1_backbone.predict.view_batch makes them from the square model input; a head's
score is the mean over the photo itself and the views named):

    flip     mirrored left to right
    zoom     the central 7/8 of each side, scaled back up to the full size
    crops    the four corner crops of 7/8 of each side, each scaled back up (4 views)
"""
from __future__ import annotations

from typing import Sequence

RESIZE_MODES = ("squash", "pad", "crop")

IDENTITY = ""  # the photo as it is: always the first view
# name on the command line -> the views it stands for (the names in feature-cache files)
TTA = {"flip": ("flip",), "zoom": ("zoom",), "crops": ("crop-tl", "crop-tr", "crop-bl", "crop-br")}
NO_TTA = ("", "none")
CROP_SHARE = 7 / 8  # side of the zoom and corner crops: mild, as the target depends on the pet's size in frame


def tta_value(text: str) -> str | None:
    """The check of a --tta option: '', none, or comma-separated names from TTA (each once)."""
    try:
        parse_tta(text)
    except ValueError as e:
        return str(e)
    return None


def parse_tta(text: str | bool | Sequence[str]) -> tuple[str, ...]:
    """--tta as given ('flip,zoom', a list, or the old true/false) -> its names in TTA's order; () = none.

    ValueError naming the bad name and the valid ones."""
    if isinstance(text, bool):  # ensemble.json and YAML before views had names: true meant the flip
        return ("flip",) if text else ()
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text)]
    items = [t for t in items if t]
    if len(items) == 1 and items[0] in NO_TTA:
        return ()
    bad = [t for t in items if t not in TTA]
    if bad:
        raise ValueError(f"unknown view(s) {bad}: use none, or comma-separated names from {list(TTA)}, e.g. flip,zoom")
    if len(set(items)) < len(items):
        raise ValueError(f"{items} names a view twice: name each once")
    return tuple(name for name in TTA if name in items)


def tta_views(names: Sequence[str]) -> tuple[str, ...]:
    """The views a head averages over: the photo itself, then each named view's (crops: four)."""
    return (IDENTITY,) + tuple(view for name in parse_tta(list(names)) for view in TTA[name])
